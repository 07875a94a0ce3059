//! trackyard's media engine, exposed to Python as `trackyard._engine`.
//!
//! `Engine` owns the media node's UDP port on a worker thread (see `node`): ICE-lite,
//! DTLS relay to Python, SRTP and RTP forwarding. Python drives it with commands that return
//! at once and receives events in batches through an eventfd (see `events`). The worker
//! never takes the GIL. Python imports this module in exactly one place:
//! `trackyard/engine.py`.

mod events;
mod node;
mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use trackyard_core::srtp::SrtpProfile;

use events::{Event, EventQueue, Notifier};
use node::{Command, Node, Stats};

/// The engine crate's version, as built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether this build has debug assertions on (a debug build is far slower on the packet path).
pub const fn is_debug_build() -> bool {
    cfg!(debug_assertions)
}

#[pyfunction]
fn version() -> &'static str {
    VERSION
}

#[pyfunction]
fn debug_build() -> bool {
    is_debug_build()
}

/// The media engine of one node: one UDP port, one worker thread.
#[pyclass(module = "trackyard._engine")]
struct Engine {
    commands: Mutex<Sender<Command>>,
    wake: Arc<Notifier>,
    events: Arc<EventQueue>,
    stats: Arc<Stats>,
    local_addr: SocketAddr,
    next_id: AtomicU32,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    fn send(&self, cmd: Command) -> PyResult<()> {
        let sender = self.commands.lock().map_err(|_| PyRuntimeError::new_err("engine lock poisoned"))?;
        sender.send(cmd).map_err(|_| PyRuntimeError::new_err("engine is stopped"))?;
        self.wake.notify();
        Ok(())
    }

    fn new_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn event_to_py<'py>(py: Python<'py>, event: Event) -> PyResult<Bound<'py, PyTuple>> {
    match event {
        Event::Bound { transport, addr } => {
            ("bound", transport, addr.ip().to_string(), addr.port()).into_pyobject(py)
        }
        Event::Dtls { transport, data } => ("dtls", transport, PyBytes::new(py, &data)).into_pyobject(py),
        Event::ConsentLost { transport } => ("consent_lost", transport).into_pyobject(py),
        Event::NewStream { transport, ssrc, payload_type, mid, rid, rrid } => {
            ("new_stream", transport, ssrc, payload_type, mid, rid, rrid).into_pyobject(py)
        }
    }
}

#[pymethods]
impl Engine {
    /// Bind the media UDP port (e.g. "0.0.0.0:7882"; port 0 picks a free one) and start the worker.
    #[new]
    fn new(bind: &str) -> PyResult<Self> {
        let addr: SocketAddr = bind.parse().map_err(|e| PyValueError::new_err(format!("bad address {bind}: {e}")))?;
        let socket = udp::bind(addr).map_err(|e| PyOSError::new_err(format!("cannot bind UDP {addr}: {e}")))?;
        let local_addr = socket.local_addr().map_err(|e| PyOSError::new_err(e.to_string()))?;
        let wake = Arc::new(Notifier::new().map_err(|e| PyOSError::new_err(e.to_string()))?);
        let events = Arc::new(EventQueue::new(65_536).map_err(|e| PyOSError::new_err(e.to_string()))?);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = channel();
        let mut node = Node::new(socket, rx, wake.clone(), events.clone(), stats.clone());
        let worker = std::thread::Builder::new()
            .name("trackyard-media".into())
            .spawn(move || node.run())
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(Engine {
            commands: Mutex::new(tx),
            wake,
            events,
            stats,
            local_addr,
            next_id: AtomicU32::new(1),
            worker: Mutex::new(Some(worker)),
        })
    }

    /// The bound (ip, port).
    #[getter]
    fn local_address(&self) -> (String, u16) {
        (self.local_addr.ip().to_string(), self.local_addr.port())
    }

    /// The file descriptor that becomes readable when events are waiting.
    fn event_fd(&self) -> i32 {
        self.events.fd()
    }

    /// All waiting events, oldest first, as tuples:
    /// ("bound", transport, ip, port) · ("dtls", transport, bytes) · ("consent_lost", transport) ·
    /// ("new_stream", transport, ssrc, payload_type, mid, rid, rrid).
    fn take_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = self.events.take();
        let items: PyResult<Vec<_>> = events.into_iter().map(|e| event_to_py(py, e)).collect();
        PyList::new(py, items?)
    }

    /// Counters since start, as a dict.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        self.stats.snapshot()
    }

    /// A peer transport, found by its local ICE ufrag in STUN checks; returns its handle.
    fn add_transport(&self, ufrag: String, pwd: String) -> PyResult<u32> {
        if ufrag.is_empty() || ufrag.contains(':') || pwd.len() < 22 {
            return Err(PyValueError::new_err("ICE ufrag must be non-empty without ':' and pwd at least 22 chars"));
        }
        let id = self.new_id();
        self.send(Command::AddTransport { id, ufrag, pwd })?;
        Ok(id)
    }

    fn remove_transport(&self, transport: u32) -> PyResult<()> {
        self.send(Command::RemoveTransport { id: transport })
    }

    /// Send a DTLS datagram to the transport's bound address (dropped if none yet).
    fn send_dtls(&self, transport: u32, data: &[u8]) -> PyResult<()> {
        self.send(Command::SendDtls { id: transport, data: data.to_vec() })
    }

    /// Install SRTP keys (key‖salt for each side) exported from the DTLS session.
    fn set_srtp(&self, transport: u32, profile: &str, local: &[u8], remote: &[u8]) -> PyResult<()> {
        let profile = SrtpProfile::from_name(profile)
            .ok_or_else(|| PyValueError::new_err(format!("unsupported SRTP profile {profile}")))?;
        let want = profile.key_len() + profile.salt_len();
        if local.len() != want || remote.len() != want {
            return Err(PyValueError::new_err(format!("{} needs {want}-byte key+salt", profile.name())));
        }
        self.send(Command::SetSrtp { id: transport, profile, local: local.to_vec(), remote: remote.to_vec() })
    }

    /// The transport's negotiated header extension ids for mid, rid and repaired rid (0 = none).
    fn set_extensions(&self, transport: u32, mid: u8, rid: u8, rrid: u8) -> PyResult<()> {
        self.send(Command::SetExtensions { id: transport, mid, rid, rrid })
    }

    /// A published track; returns its handle.
    fn add_track(&self, clock_rate: u32) -> PyResult<u32> {
        let id = self.new_id();
        self.send(Command::AddTrack { id, clock_rate })?;
        Ok(id)
    }

    fn remove_track(&self, track: u32) -> PyResult<()> {
        self.send(Command::RemoveTrack { id: track })
    }

    /// Route an incoming SSRC of a transport to a track.
    fn bind_stream(&self, track: u32, transport: u32, ssrc: u32) -> PyResult<()> {
        self.send(Command::BindStream { track, transport, ssrc })
    }

    /// A subscription: forward the track to a transport with its own SSRC and payload type.
    fn add_downtrack(&self, track: u32, transport: u32, ssrc: u32, payload_type: u8) -> PyResult<u32> {
        let id = self.new_id();
        self.send(Command::AddDownTrack { id, track, transport, ssrc, payload_type })?;
        Ok(id)
    }

    fn remove_downtrack(&self, downtrack: u32) -> PyResult<()> {
        self.send(Command::RemoveDownTrack { id: downtrack })
    }

    fn pause_downtrack(&self, downtrack: u32, paused: bool) -> PyResult<()> {
        self.send(Command::PauseDownTrack { id: downtrack, paused })
    }

    /// Stop the worker and close the port (idempotent).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let _ = self.send(Command::Shutdown);
        let handle = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            py.detach(|| handle.join()).map_err(|_| PyRuntimeError::new_err("media worker panicked"))?;
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(sender) = self.commands.lock() {
            let _ = sender.send(Command::Shutdown);
        }
        self.wake.notify();
        if let Some(handle) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(debug_build, m)?)?;
    m.add_class::<Engine>()?;
    m.add("__version__", VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_semver() {
        let parts: Vec<&str> = VERSION.split('.').collect();
        assert_eq!(parts.len(), 3, "version {VERSION} is not x.y.z");
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
    }
}
