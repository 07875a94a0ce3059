//! The benchmark's load generator (`trackyard bench`), exposed to Python as `LoadGen`.
//!
//! Simulated participants are light: Python does their signaling and DTLS handshakes; this
//! module owns their UDP sockets (one per simulated peer connection, on the load machine's
//! address) on one worker thread, runs ICE as the client, and after DTLS sends and receives
//! SRTP itself: synthetic Opus-like audio and simulcast VP8-like video with a send timestamp
//! in every payload, sender/receiver reports, key frames on PLI. Received media is counted
//! per SSRC (loss from sequence numbers, jitter, bitrate, end-to-end latency histogram).
//! Python never touches a media packet; it polls `snapshot()` for the numbers.

mod histogram;
mod ice;
mod synth;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::events::{EventQueue, Notifier};
use crate::worker::WorkerHandle;
use synth::{Extensions, SendStream, StreamKind};
use worker::{Command, Snapshot, Worker};

/// Events from the worker to Python.
pub enum LgEvent {
    IceConnected { transport: u32, addr: SocketAddr },
    IceFailed { transport: u32 },
    Dtls { transport: u32, data: Vec<u8> },
}

pub type LgEvents = EventQueue<LgEvent>;

/// Hard limit of simulated transports in one load generator.
pub const MAX_TRANSPORTS: u32 = 20_000;

#[pyclass(module = "trackyard._engine")]
pub struct LoadGen {
    worker: WorkerHandle<Command>,
    events: Arc<LgEvents>,
    next_id: AtomicU32,
}

impl LoadGen {
    fn send(&self, cmd: Command) -> PyResult<()> {
        self.worker.send(cmd)
    }
}

fn parse_ip(ip: &str) -> PyResult<IpAddr> {
    ip.parse().map_err(|e| PyValueError::new_err(format!("bad IP address {ip}: {e}")))
}

fn check_ext_id(id: u8) -> PyResult<u8> {
    if id <= 14 {
        Ok(id)
    } else {
        Err(PyValueError::new_err("header extension ids must be 0..14 (one-byte form)"))
    }
}

fn snapshot_to_py<'py>(py: Python<'py>, s: Snapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("now_unix_us", s.now_unix_us)?;
    d.set_item("sent_packets", s.sent_packets)?;
    d.set_item("sent_bytes", s.sent_bytes)?;
    d.set_item("send_failures", s.send_failures)?;
    d.set_item("received_packets", s.received_packets)?;
    d.set_item("received_bytes", s.received_bytes)?;
    d.set_item("unknown_packets", s.unknown_packets)?;
    d.set_item("loop_turns", s.loop_turns)?;
    let transports = PyList::empty(py);
    for t in s.transports {
        let td = PyDict::new(py);
        td.set_item("id", t.id)?;
        td.set_item("ice", t.ice)?;
        td.set_item("ice_checks", t.ice_checks)?;
        td.set_item("srtp", t.srtp)?;
        td.set_item("plis_received", t.plis_received)?;
        td.set_item("firs_received", t.firs_received)?;
        td.set_item("nacks_received", t.nacks_received)?;
        td.set_item("rtcp_received", t.rtcp_received)?;
        td.set_item("rtcp_sent", t.rtcp_sent)?;
        td.set_item("srtp_failures", t.srtp_failures)?;
        let tx = PyList::empty(py);
        for s in t.tx {
            let sd = PyDict::new(py);
            sd.set_item("ssrc", s.ssrc)?;
            sd.set_item("rid", s.rid)?;
            sd.set_item("kind", if s.video { "video" } else { "audio" })?;
            sd.set_item("packets", s.packets)?;
            sd.set_item("payload_bytes", s.payload_bytes)?;
            sd.set_item("frames", s.frames)?;
            sd.set_item("keyframes", s.keyframes)?;
            sd.set_item("window_packets", s.window_packets)?;
            tx.append(sd)?;
        }
        td.set_item("tx", tx)?;
        let rx = PyList::empty(py);
        for r in t.rx {
            let rd = PyDict::new(py);
            rd.set_item("ssrc", r.ssrc)?;
            rd.set_item("payload_type", r.payload_type)?;
            rd.set_item("kind", r.kind)?;
            rd.set_item("packets", r.packets)?;
            rd.set_item("bytes", r.bytes)?;
            rd.set_item("expected", r.expected)?;
            rd.set_item("lost", r.lost)?;
            rd.set_item("jitter_us", r.jitter_us)?;
            rd.set_item("first_unix_us", r.first_unix_us)?;
            rd.set_item("last_unix_us", r.last_unix_us)?;
            rd.set_item("untagged", r.untagged)?;
            rd.set_item("latency_count", r.latency_count)?;
            rd.set_item("latency", r.latency)?;
            rd.set_item("sources", r.sources)?;
            rx.append(rd)?;
        }
        td.set_item("rx", rx)?;
        transports.append(td)?;
    }
    d.set_item("transports", transports)?;
    Ok(d)
}

#[pymethods]
impl LoadGen {
    #[new]
    fn new() -> PyResult<Self> {
        let wake = Arc::new(Notifier::new().map_err(|e| PyOSError::new_err(e.to_string()))?);
        let events = Arc::new(LgEvents::new(262_144).map_err(|e| PyOSError::new_err(e.to_string()))?);
        let (tx, rx) = channel();
        let mut worker = Worker::new(rx, wake.clone(), events.clone()).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let worker = WorkerHandle::spawn("load generator", "trackyard-loadgen", tx, wake, || Command::Shutdown,
                                         move || worker.run())?;
        Ok(LoadGen { worker, events, next_id: AtomicU32::new(1) })
    }

    /// The file descriptor that becomes readable when events are waiting.
    fn event_fd(&self) -> i32 {
        self.events.fd()
    }

    /// Waiting events, oldest first: ("ice_connected", transport, ip, port) ·
    /// ("ice_failed", transport) · ("dtls", transport, bytes).
    fn take_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for e in self.events.take() {
            match e {
                LgEvent::IceConnected { transport, addr } => {
                    list.append(("ice_connected", transport, addr.ip().to_string(), addr.port()))?
                }
                LgEvent::IceFailed { transport } => list.append(("ice_failed", transport))?,
                LgEvent::Dtls { transport, data } => list.append(("dtls", transport, PyBytes::new(py, &data)))?,
            }
        }
        Ok(list)
    }

    /// A simulated peer connection with its own UDP socket on `local_ip` (port chosen by the
    /// kernel) and our ICE credentials; returns (handle, local port).
    fn add_transport(&self, local_ip: &str, ufrag: String, pwd: String) -> PyResult<(u32, u16)> {
        if ufrag.is_empty() || ufrag.contains(':') || pwd.len() < 22 {
            return Err(PyValueError::new_err("ICE ufrag must be non-empty without ':' and pwd at least 22 chars"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id > MAX_TRANSPORTS {
            return Err(PyValueError::new_err(format!("at most {MAX_TRANSPORTS} transports per load generator")));
        }
        let socket = crate::udp::bind(SocketAddr::new(parse_ip(local_ip)?, 0))
            .map_err(|e| PyOSError::new_err(format!("cannot bind UDP on {local_ip}: {e}")))?;
        let port = socket.local_addr().map_err(|e| PyOSError::new_err(e.to_string()))?.port();
        self.send(Command::AddTransport { id, socket, ufrag, pwd })?;
        Ok((id, port))
    }

    /// The server's ICE credentials; `controlling`: our ICE role (an ICE-lite server is
    /// always controlled, so true there).
    #[pyo3(signature = (transport, ufrag, pwd, controlling=true))]
    fn set_remote(&self, transport: u32, ufrag: String, pwd: String, controlling: bool) -> PyResult<()> {
        self.send(Command::SetRemote { id: transport, ufrag, pwd, controlling })
    }

    /// A server candidate to check (checks start once credentials and a candidate are known).
    fn add_candidate(&self, transport: u32, ip: &str, port: u16) -> PyResult<()> {
        self.send(Command::AddCandidate { id: transport, addr: SocketAddr::new(parse_ip(ip)?, port) })
    }

    /// Send a DTLS datagram to the selected (else the first) server candidate.
    fn send_dtls(&self, transport: u32, data: &[u8]) -> PyResult<()> {
        self.send(Command::SendDtls { id: transport, data: data.to_vec() })
    }

    /// SRTP keys (key‖salt each side) exported from the DTLS session; media starts once the
    /// ICE pair is selected too.
    fn set_srtp(&self, transport: u32, profile: &str, local: &[u8], remote: &[u8]) -> PyResult<()> {
        let profile = crate::srtp_profile(profile, local, remote)?;
        self.send(Command::SetSrtp { id: transport, profile, local: local.to_vec(), remote: remote.to_vec() })
    }

    /// The negotiated one-byte header extension ids we stamp on sent packets (0 = none).
    #[pyo3(signature = (transport, *, mid=0, rid=0, audio_level=0, abs_send_time=0, twcc=0))]
    fn set_extensions(&self, transport: u32, mid: u8, rid: u8, audio_level: u8, abs_send_time: u8, twcc: u8)
                      -> PyResult<()> {
        let ext = Extensions {
            mid: check_ext_id(mid)?,
            rid: check_ext_id(rid)?,
            audio_level: check_ext_id(audio_level)?,
            abs_send_time: check_ext_id(abs_send_time)?,
            twcc: check_ext_id(twcc)?,
        };
        self.send(Command::SetExtensions { id: transport, ext })
    }

    /// The clock rate and kind of a payload type we receive (for jitter and per-kind numbers).
    fn set_payload_clock(&self, transport: u32, payload_type: u8, clock_rate: u32, kind: &str) -> PyResult<()> {
        let video = match kind {
            "audio" => false,
            "video" => true,
            _ => return Err(PyValueError::new_err("kind must be audio or video")),
        };
        self.send(Command::SetClock { id: transport, payload_type, clock_rate, video })
    }

    /// A synthetic Opus-like stream: one `payload`-byte packet every `ptime_ms`.
    #[pyo3(signature = (transport, ssrc, payload_type, mid, *, payload=80, ptime_ms=20, cname=String::new()))]
    #[allow(clippy::too_many_arguments)]
    fn add_audio(&self, transport: u32, ssrc: u32, payload_type: u8, mid: &str, payload: usize, ptime_ms: u64,
                 cname: String) -> PyResult<()> {
        if !(32..=1000).contains(&payload) || !(10..=120).contains(&ptime_ms) {
            return Err(PyValueError::new_err("audio payload must be 32..1000 bytes and ptime 10..120 ms"));
        }
        let kind = StreamKind::Audio { payload, ptime_us: ptime_ms * 1000 };
        let stream = SendStream::new(ssrc, payload_type, 48_000, mid, "", kind, ssrc.rotate_left(11));
        self.send(Command::AddStream { id: transport, stream: Box::new(stream), cname })
    }

    /// A synthetic VP8-like video stream (one simulcast layer if `rid` is set): frames of
    /// bitrate/8/fps bytes (key frames 3×, every `keyframe_interval_ms` and on PLI/FIR).
    #[pyo3(signature = (transport, ssrc, payload_type, mid, rid, *, bitrate, fps, width, height,
                        keyframe_interval_ms=3000, cname=String::new()))]
    #[allow(clippy::too_many_arguments)]
    fn add_video(&self, transport: u32, ssrc: u32, payload_type: u8, mid: &str, rid: &str, bitrate: u64, fps: u32,
                 width: u16, height: u16, keyframe_interval_ms: u64, cname: String) -> PyResult<()> {
        if !(10_000..=50_000_000).contains(&bitrate) || !(1..=120).contains(&fps) {
            return Err(PyValueError::new_err("video bitrate must be 10 kbit/s..50 Mbit/s and fps 1..120"));
        }
        let kind = StreamKind::Video { bitrate, fps, width, height, keyframe_interval_us: keyframe_interval_ms * 1000 };
        let stream = SendStream::new(ssrc, payload_type, 90_000, mid, rid, kind, ssrc.rotate_left(11));
        self.send(Command::AddStream { id: transport, stream: Box::new(stream), cname })
    }

    /// Make the next frame of this stream a key frame.
    fn request_keyframe(&self, transport: u32, ssrc: u32) -> PyResult<()> {
        self.send(Command::RequestKeyframe { id: transport, ssrc })
    }

    /// Pause (false) or resume (true) all media sending (ICE and RTCP go on).
    fn set_sending(&self, sending: bool) -> PyResult<()> {
        self.send(Command::SetSending { sending })
    }

    /// Open (true) or close (false) the measurement window: each received stream then also
    /// counts, per publisher SSRC, the packets that were sent inside it (`sources` entries are
    /// (ssrc, received, received of those sent in the window)); each sent stream reports
    /// `window_packets`.
    fn mark_window(&self, open: bool) -> PyResult<()> {
        self.send(Command::MarkWindow { open })
    }

    fn remove_transport(&self, transport: u32) -> PyResult<()> {
        self.send(Command::RemoveTransport { id: transport })
    }

    /// Counters and per-transport, per-stream numbers; with `histograms`, each received
    /// stream's latency histogram as [(µs, count), ...].
    #[pyo3(signature = (histograms=false))]
    fn snapshot<'py>(&self, py: Python<'py>, histograms: bool) -> PyResult<Bound<'py, PyDict>> {
        let (tx, rx) = channel();
        self.send(Command::Snapshot { reply: tx, histograms })?;
        let snap = py
            .detach(move || rx.recv_timeout(Duration::from_secs(10)))
            .map_err(|_| PyRuntimeError::new_err("load generator did not answer"))?;
        snapshot_to_py(py, snap)
    }

    /// Run-wide sums: {sent_packets, rx_packets, rx_expected} (cheap; for progress lines).
    fn totals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (tx, rx) = channel();
        self.send(Command::Totals { reply: tx })?;
        let t = py
            .detach(move || rx.recv_timeout(Duration::from_secs(10)))
            .map_err(|_| PyRuntimeError::new_err("load generator did not answer"))?;
        let d = PyDict::new(py);
        d.set_item("sent_packets", t.sent_packets)?;
        d.set_item("rx_packets", t.rx_packets)?;
        d.set_item("rx_expected", t.rx_expected)?;
        Ok(d)
    }

    /// Stop the worker and close every socket (idempotent).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.worker.stop(py)
    }
}
