//! trackyard's media engine, exposed to Python as `trackyard._engine`.
//!
//! `Engine` owns the media node's UDP port on a worker thread (see `node`): ICE-lite,
//! DTLS relay to Python, SRTP and RTP forwarding. Python drives it with commands that return
//! at once and receives events in batches through an eventfd (see `events`). The worker
//! never takes the GIL. Python imports this module in exactly one place:
//! `trackyard/engine.py`.

mod events;
mod loadgen;
mod node;
mod stats;
mod worker;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use trackyard_core::codec::Codec;
use trackyard_core::forwarder::MAX_LAYERS;
use trackyard_core::srtp::SrtpProfile;
use trackyard_net as udp;

use events::{Event, EventQueue, Notifier, StatValue};
use node::{Command, ExtIds, Kind, Node};
use stats::Stats;
use worker::WorkerHandle;

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
    worker: WorkerHandle<Command>,
    events: Arc<EventQueue>,
    stats: Arc<Stats>,
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    next_id: AtomicU32,
}

impl Engine {
    fn send(&self, cmd: Command) -> PyResult<()> {
        self.worker.send(cmd)
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
        Event::Fault { transport } => ("fault", transport).into_pyobject(py),
        Event::NewStream { transport, ssrc, payload_type, mid, rid, rrid } => {
            ("new_stream", transport, ssrc, payload_type, mid, rid, rrid).into_pyobject(py)
        }
        Event::Layers { track, layers } => ("layers", track, layers).into_pyobject(py),
        Event::DownTrackLayer { downtrack, layer } => ("downtrack_layer", downtrack, layer).into_pyobject(py),
        Event::AudioLevels(levels) => ("audio_levels", levels).into_pyobject(py),
        Event::Stats(entries) => {
            let list = PyList::empty(py);
            for entry in entries {
                let d = PyDict::new(py);
                for (k, v) in entry.0 {
                    match v {
                        StatValue::Int(i) => d.set_item(k, i)?,
                        StatValue::Float(f) => d.set_item(k, f)?,
                        StatValue::Str(s) => d.set_item(k, s)?,
                    }
                }
                list.append(d)?;
            }
            ("stats", list).into_pyobject(py)
        }
    }
}

fn check_layer(layer: u8) -> PyResult<u8> {
    if layer < MAX_LAYERS {
        Ok(layer)
    } else {
        Err(PyValueError::new_err(format!("layer must be 0..{}", MAX_LAYERS - 1)))
    }
}

/// (kind, codec) of a new track from what the caller said (see `Engine.add_track`).
fn track_kind(clock_rate: u32, kind: Option<&str>, mime: Option<&str>) -> PyResult<(Kind, Codec)> {
    let mime_kind = mime.map(|m| {
        let lower = m.to_ascii_lowercase();
        if lower.starts_with("audio/") {
            Kind::Audio
        } else if lower.starts_with("video/") || Codec::from_mime(m).is_video() {
            Kind::Video
        } else {
            Kind::Audio
        }
    });
    let explicit = kind.is_some();
    let kind = match kind {
        Some("audio") => Kind::Audio,
        Some("video") => Kind::Video,
        Some(other) => return Err(PyValueError::new_err(format!("kind must be audio or video, not {other}"))),
        None => mime_kind.unwrap_or(if clock_rate == 90_000 { Kind::Video } else { Kind::Audio }),
    };
    let codec = match (mime, kind) {
        (Some(m), _) => Codec::from_mime(m),
        (None, Kind::Audio) => Codec::Opus,
        // "video" without a codec name: VP8; neither (the old signature): no keyframe gating
        (None, Kind::Video) if explicit => Codec::Vp8,
        (None, Kind::Video) => Codec::Other,
    };
    Ok((kind, codec))
}

/// The SRTP profile named `name`, checking that `local` and `remote` are its key‖salt.
fn srtp_profile(name: &str, local: &[u8], remote: &[u8]) -> PyResult<SrtpProfile> {
    let profile = SrtpProfile::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unsupported SRTP profile {name}")))?;
    let want = profile.key_len() + profile.salt_len();
    if local.len() != want || remote.len() != want {
        return Err(PyValueError::new_err(format!("{} needs {want}-byte key+salt", profile.name())));
    }
    Ok(profile)
}

#[pymethods]
impl Engine {
    /// Bind the media UDP port (e.g. "0.0.0.0:7882"; port 0 picks a free one) and start the worker.
    /// `gso`: coalesce a subscriber's datagrams of one loop turn into one send (UDP GSO).
    /// `tcp`: also listen for ICE-TCP connections there (e.g. "0.0.0.0:7881"; None: no TCP).
    #[new]
    #[pyo3(signature = (bind, *, gso=true, tcp=None))]
    fn new(bind: &str, gso: bool, tcp: Option<&str>) -> PyResult<Self> {
        let addr: SocketAddr = bind.parse().map_err(|e| PyValueError::new_err(format!("bad address {bind}: {e}")))?;
        let listener = match tcp {
            None => None,
            Some(t) => {
                let taddr: SocketAddr = t.parse().map_err(|e| PyValueError::new_err(format!("bad address {t}: {e}")))?;
                let l = TcpListener::bind(taddr)
                    .and_then(|l| l.set_nonblocking(true).map(|_| l))
                    .map_err(|e| PyOSError::new_err(format!("cannot listen on TCP {taddr}: {e}")))?;
                Some(l)
            }
        };
        let tcp_addr = listener.as_ref().map(|l| l.local_addr()).transpose().map_err(|e| PyOSError::new_err(e.to_string()))?;
        let socket = udp::bind(addr).map_err(|e| PyOSError::new_err(format!("cannot bind UDP {addr}: {e}")))?;
        let local_addr = socket.local_addr().map_err(|e| PyOSError::new_err(e.to_string()))?;
        let wake = Arc::new(Notifier::new().map_err(|e| PyOSError::new_err(e.to_string()))?);
        let events = Arc::new(EventQueue::new(65_536).map_err(|e| PyOSError::new_err(e.to_string()))?);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = channel();
        let mut node = Node::new(socket, rx, wake.clone(), events.clone(), stats.clone(), gso, listener)
            .map_err(|e| PyOSError::new_err(format!("cannot start the send thread: {e}")))?;
        let worker = WorkerHandle::spawn("engine", "trackyard-media", tx, wake, || Command::Shutdown, move || node.run())?;
        Ok(Engine { worker, events, stats, local_addr, tcp_addr, next_id: AtomicU32::new(1) })
    }

    /// The bound (ip, port).
    #[getter]
    fn local_address(&self) -> (String, u16) {
        (self.local_addr.ip().to_string(), self.local_addr.port())
    }

    /// The ICE-TCP listener's bound (ip, port), or None without one.
    #[getter]
    fn tcp_address(&self) -> Option<(String, u16)> {
        self.tcp_addr.map(|a| (a.ip().to_string(), a.port()))
    }

    /// The file descriptor that becomes readable when events are waiting.
    fn event_fd(&self) -> i32 {
        self.events.fd()
    }

    /// All waiting events, oldest first, as tuples:
    /// ("bound", transport, ip, port) · ("dtls", transport, bytes) · ("consent_lost", transport) ·
    /// ("new_stream", transport, ssrc, payload_type, mid, rid, rrid) ·
    /// ("layers", track, [active layer, ...]) · ("downtrack_layer", downtrack, layer | None) ·
    /// ("audio_levels", [(track, level, voice), ...]) · ("stats", [dict, ...]).
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

    /// ICE restart: the transport answers checks with new local credentials from now on.
    fn restart_ice(&self, transport: u32, ufrag: String, pwd: String) -> PyResult<()> {
        if ufrag.is_empty() || ufrag.contains(':') || pwd.len() < 22 {
            return Err(PyValueError::new_err("ICE ufrag must be non-empty without ':' and pwd at least 22 chars"));
        }
        self.send(Command::RestartIce { id: transport, ufrag, pwd })
    }

    /// Test hook: make the worker panic on this transport's next SRTP datagram, to check that a
    /// panic removes one transport (and Python closes its room) while the node goes on.
    fn inject_fault(&self, transport: u32) -> PyResult<()> {
        self.send(Command::InjectFault { id: transport })
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
        let profile = srtp_profile(profile, local, remote)?;
        self.send(Command::SetSrtp { id: transport, profile, local: local.to_vec(), remote: remote.to_vec() })
    }

    /// The transport's negotiated RTP header extension ids (0 = not negotiated): mid, rid and
    /// repaired rid (read from publishers' streams, never forwarded), ssrc-audio-level (audio
    /// levels; carried over to subscribers), transport-wide-cc (feedback to publishers; fresh
    /// numbers stamped for subscribers) and abs-send-time (stamped for subscribers).
    #[pyo3(signature = (transport, mid=0, rid=0, rrid=0, *, audio_level=0, twcc=0, abs_send_time=0))]
    #[allow(clippy::too_many_arguments)]
    fn set_extensions(&self, transport: u32, mid: u8, rid: u8, rrid: u8, audio_level: u8, twcc: u8,
                      abs_send_time: u8) -> PyResult<()> {
        let ext = ExtIds { mid, rid, rrid, audio_level, twcc, abs_send_time };
        self.send(Command::SetExtensions { id: transport, ext })
    }

    /// A published track; returns its handle. `kind` is "audio" or "video"; `mime` names the
    /// codec ("video/VP8", "video/H264", "audio/opus", ...) for keyframe detection. Without
    /// `kind`, it follows the mime type, else the clock rate (90 kHz: video). Video named
    /// neither by mime nor by codec-less `kind="video"` (which means VP8) switches layers
    /// without waiting for keyframes.
    #[pyo3(signature = (clock_rate, kind=None, mime=None))]
    fn add_track(&self, clock_rate: u32, kind: Option<&str>, mime: Option<&str>) -> PyResult<u32> {
        let (kind, codec) = track_kind(clock_rate, kind, mime)?;
        let id = self.new_id();
        self.send(Command::AddTrack { id, clock_rate, kind, codec })?;
        Ok(id)
    }

    fn remove_track(&self, track: u32) -> PyResult<()> {
        self.send(Command::RemoveTrack { id: track })
    }

    /// Publisher-side mute: nothing of the track is forwarded until unmuted (no sequence
    /// number hole for subscribers; video resumes on a keyframe).
    fn mute_track(&self, track: u32, muted: bool) -> PyResult<()> {
        self.send(Command::MuteTrack { id: track, muted })
    }

    /// Route an incoming SSRC of a transport to a track as simulcast layer `layer`
    /// (0 = lowest; a track without simulcast has only layer 0). Binding another SSRC to the
    /// same layer replaces the previous one.
    #[pyo3(signature = (track, transport, ssrc, layer=0))]
    fn bind_stream(&self, track: u32, transport: u32, ssrc: u32, layer: u8) -> PyResult<()> {
        let layer = check_layer(layer)?;
        self.send(Command::BindStream { track, transport, ssrc, layer, repair: false })
    }

    /// Route an RFC 4588 retransmission (RTX) SSRC to a layer of a track: its packets are
    /// unwrapped and treated as the layer's own packets arriving again.
    #[pyo3(signature = (track, transport, ssrc, layer=0))]
    fn bind_repair(&self, track: u32, transport: u32, ssrc: u32, layer: u8) -> PyResult<()> {
        let layer = check_layer(layer)?;
        self.send(Command::BindStream { track, transport, ssrc, layer, repair: true })
    }

    /// A subscription: forward the track to a transport with its own SSRC and payload type,
    /// at most simulcast layer `max_layer`; `cname` (optional) goes into its sender reports.
    #[pyo3(signature = (track, transport, ssrc, payload_type, max_layer=2, cname=String::new()))]
    fn add_downtrack(&self, track: u32, transport: u32, ssrc: u32, payload_type: u8, max_layer: u8,
                     cname: String) -> PyResult<u32> {
        let max_layer = check_layer(max_layer)?;
        if cname.len() > 255 {
            return Err(PyValueError::new_err("cname longer than 255 bytes"));
        }
        let id = self.new_id();
        self.send(Command::AddDownTrack { id, track, transport, ssrc, payload_type, max_layer, cname })?;
        Ok(id)
    }

    /// The subscriber's top simulcast layer (from its requested quality or dimensions). The
    /// engine forwards the best layer at or below it that the publisher sends, switching on
    /// keyframes.
    fn set_downtrack_layer(&self, downtrack: u32, max_layer: u8) -> PyResult<()> {
        let max_layer = check_layer(max_layer)?;
        self.send(Command::SetDownTrackLayer { id: downtrack, max_layer })
    }

    /// Ask the publisher for a keyframe of the layer a down-track receives (rate-limited).
    fn request_keyframe(&self, downtrack: u32) -> PyResult<()> {
        self.send(Command::RequestKeyframe { id: downtrack })
    }

    fn remove_downtrack(&self, downtrack: u32) -> PyResult<()> {
        self.send(Command::RemoveDownTrack { id: downtrack })
    }

    fn pause_downtrack(&self, downtrack: u32, paused: bool) -> PyResult<()> {
        self.send(Command::PauseDownTrack { id: downtrack, paused })
    }

    /// Stop the worker and close the port (idempotent).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.worker.stop(py)
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(debug_build, m)?)?;
    m.add_class::<Engine>()?;
    m.add_class::<loadgen::LoadGen>()?;
    m.add("__version__", VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_kind_and_codec_from_the_arguments() {
        let k = |rate, kind, mime| track_kind(rate, kind, mime).unwrap();
        assert_eq!(k(90_000, Some("video"), Some("video/H264")), (Kind::Video, Codec::H264));
        assert_eq!(k(90_000, Some("video"), None), (Kind::Video, Codec::Vp8));
        assert_eq!(k(90_000, None, Some("video/VP9")), (Kind::Video, Codec::Vp9));
        assert_eq!(k(48_000, None, Some("audio/opus")), (Kind::Audio, Codec::Opus));
        assert_eq!(k(8_000, None, Some("audio/PCMU")), (Kind::Audio, Codec::Other));
        // the old signature: kind from the clock rate, no keyframe gating for video
        assert_eq!(k(90_000, None, None), (Kind::Video, Codec::Other));
        assert_eq!(k(48_000, None, None), (Kind::Audio, Codec::Opus));
        assert!(track_kind(90_000, Some("data"), None).is_err());
        assert!(check_layer(2).is_ok() && check_layer(3).is_err());
    }

    #[test]
    fn version_is_semver() {
        let parts: Vec<&str> = VERSION.split('.').collect();
        assert_eq!(parts.len(), 3, "version {VERSION} is not x.y.z");
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
    }
}
