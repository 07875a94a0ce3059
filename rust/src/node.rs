//! The media node's worker: one thread that owns the UDP socket and the forwarding graph.
//!
//! Per datagram (demultiplexed by first byte, RFC 7983):
//! - STUN (0–3): ICE-lite binding requests are checked against the transport named by the
//!   USERNAME (MESSAGE-INTEGRITY with its local password, FINGERPRINT), answered, and the
//!   sender's address is bound to the transport (on USE-CANDIDATE, or the first valid check).
//! - DTLS (20–63): handed up to Python (aiortc runs the handshake and SCTP).
//! - SRTP/SRTCP (128–191): unprotected with the transport's keys; RTP is forwarded to every
//!   down-track of the track it belongs to (own SSRC, rewritten seq/ts, protected with the
//!   subscriber's keys); an SSRC without a route is reported once so Python can bind it.
//! - anything else, or from an unknown address: dropped and counted.
//!
//! Python sends commands through a channel and wakes the worker with an eventfd; the worker
//! never calls into Python. Close cascade: removing a transport removes its streams and the
//! down-tracks that send to it; removing a track removes its down-tracks.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use trackyard_core::munger::{Munged, Munger};
use trackyard_core::rtp::{RtpHeader, RtpHeaderMut};
use trackyard_core::srtp::{SrtpContext, SrtpProfile};
use trackyard_core::stun::{self, StunError, StunMessage};

use crate::events::{Event, EventQueue, Notifier};
use crate::udp::{RecvBatch, SendQueue};

/// Without a valid ICE check for this long, the peer has withdrawn consent (RFC 7675).
pub const CONSENT_TIMEOUT_US: u64 = 30_000_000;

pub enum Command {
    AddTransport { id: u32, ufrag: String, pwd: String },
    RemoveTransport { id: u32 },
    SendDtls { id: u32, data: Vec<u8> },
    SetSrtp { id: u32, profile: SrtpProfile, local: Vec<u8>, remote: Vec<u8> },
    SetExtensions { id: u32, mid: u8, rid: u8, rrid: u8 },
    AddTrack { id: u32, clock_rate: u32 },
    RemoveTrack { id: u32 },
    BindStream { track: u32, transport: u32, ssrc: u32 },
    AddDownTrack { id: u32, track: u32, transport: u32, ssrc: u32, payload_type: u8 },
    RemoveDownTrack { id: u32 },
    PauseDownTrack { id: u32, paused: bool },
    Shutdown,
}

/// Counters readable from Python at any time.
#[derive(Default)]
pub struct Stats {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub stun_requests: AtomicU64,
    pub stun_rejected: AtomicU64,
    pub dtls_packets: AtomicU64,
    pub rtp_packets: AtomicU64,
    pub rtcp_packets: AtomicU64,
    pub forwarded: AtomicU64,
    pub srtp_failures: AtomicU64,
    pub unknown_source: AtomicU64,
    pub malformed: AtomicU64,
    pub events_dropped: AtomicU64,
    pub send_failures: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("rx_packets", c(&self.rx_packets)),
            ("rx_bytes", c(&self.rx_bytes)),
            ("tx_packets", c(&self.tx_packets)),
            ("tx_bytes", c(&self.tx_bytes)),
            ("stun_requests", c(&self.stun_requests)),
            ("stun_rejected", c(&self.stun_rejected)),
            ("dtls_packets", c(&self.dtls_packets)),
            ("rtp_packets", c(&self.rtp_packets)),
            ("rtcp_packets", c(&self.rtcp_packets)),
            ("forwarded", c(&self.forwarded)),
            ("srtp_failures", c(&self.srtp_failures)),
            ("unknown_source", c(&self.unknown_source)),
            ("malformed", c(&self.malformed)),
            ("events_dropped", c(&self.events_dropped)),
            ("send_failures", c(&self.send_failures)),
        ]
    }
}

struct Transport {
    ufrag: String,
    pwd: Vec<u8>,
    addr: Option<SocketAddr>,
    nominated: bool,
    last_check_us: u64,
    consent_lost: bool,
    rx: Option<SrtpContext>,
    tx: Option<SrtpContext>,
    ext_mid: u8,
    ext_rid: u8,
    ext_rrid: u8,
    reported: Vec<u32>, // SSRCs already reported as new streams
}

struct Track {
    sources: Vec<(u32, u32)>, // (transport, ssrc)
    downtracks: Vec<u32>,
    clock_rate: u32,
}

struct DownTrack {
    track: u32,
    transport: u32,
    ssrc: u32,
    payload_type: u8,
    munger: Munger,
    paused: bool,
}

pub struct Node {
    socket: UdpSocket,
    recv: RecvBatch,
    send: SendQueue,
    commands: Receiver<Command>,
    wake: Arc<Notifier>,
    events: Arc<EventQueue>,
    pending: Vec<Event>,
    stats: Arc<Stats>,
    epoch: Instant,
    transports: HashMap<u32, Transport>,
    by_ufrag: HashMap<String, u32>,
    by_addr: HashMap<SocketAddr, u32>,
    tracks: HashMap<u32, Track>,
    streams: HashMap<(u32, u32), u32>, // (transport, ssrc) → track
    downtracks: HashMap<u32, DownTrack>,
    scratch: Vec<u8>,
}

impl Node {
    pub fn new(socket: UdpSocket, commands: Receiver<Command>, wake: Arc<Notifier>, events: Arc<EventQueue>,
               stats: Arc<Stats>) -> Self {
        Node {
            socket,
            recv: RecvBatch::new(),
            send: SendQueue::new(),
            commands,
            wake,
            events,
            pending: Vec::with_capacity(64),
            stats,
            epoch: Instant::now(),
            transports: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            tracks: HashMap::new(),
            streams: HashMap::new(),
            downtracks: HashMap::new(),
            scratch: vec![0u8; crate::udp::MAX_DATAGRAM + 64],
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Runs until a Shutdown command (or the command channel closes).
    pub fn run(&mut self) {
        let mut last_sweep = 0u64;
        loop {
            let mut fds = [
                libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.wake.fd(), events: libc::POLLIN, revents: 0 },
            ];
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
            if fds[1].revents != 0 {
                self.wake.clear();
            }
            if !self.drain_commands() {
                break;
            }
            // a bounded number of batches per turn keeps commands and timers responsive
            for _ in 0..16 {
                match self.recv.recv(&self.socket) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        for i in 0..n {
                            self.handle_datagram(i);
                        }
                        self.send.flush(&self.socket);
                    }
                }
            }
            let now = self.now_us();
            if now - last_sweep > 1_000_000 {
                last_sweep = now;
                self.sweep(now);
            }
            self.send.flush(&self.socket);
            self.flush_events();
        }
        self.send.flush(&self.socket);
        self.flush_events();
    }

    fn flush_events(&mut self) {
        Stats::add(&self.stats.tx_packets, 0);
        let dropped = self.events.push_all(&mut self.pending);
        if dropped > 0 {
            Stats::add(&self.stats.events_dropped, dropped as u64);
        }
        let (sent, failed) = (self.send.sent, self.send.failed);
        self.stats.tx_packets.store(sent, Ordering::Relaxed);
        self.stats.send_failures.store(failed, Ordering::Relaxed);
    }

    fn sweep(&mut self, now: u64) {
        for (id, t) in self.transports.iter_mut() {
            if t.addr.is_some() && !t.consent_lost && now.saturating_sub(t.last_check_us) > CONSENT_TIMEOUT_US {
                t.consent_lost = true;
                self.pending.push(Event::ConsentLost { transport: *id });
            }
        }
    }

    // --- commands -----------------------------------------------------------------------
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Ok(cmd) => self.apply(cmd),
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::AddTransport { id, ufrag, pwd } => {
                self.by_ufrag.insert(ufrag.clone(), id);
                self.transports.insert(id, Transport {
                    ufrag, pwd: pwd.into_bytes(), addr: None, nominated: false, last_check_us: self.now_us(),
                    consent_lost: false, rx: None, tx: None, ext_mid: 0, ext_rid: 0, ext_rrid: 0,
                    reported: Vec::new(),
                });
            }
            Command::RemoveTransport { id } => self.remove_transport(id),
            Command::SendDtls { id, data } => {
                if let Some(addr) = self.transports.get(&id).and_then(|t| t.addr) {
                    self.send.send_copy(&self.socket, &data, &addr);
                    Stats::add(&self.stats.tx_bytes, data.len() as u64);
                }
            }
            Command::SetSrtp { id, profile, local, remote } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    let (kl, sl) = (profile.key_len(), profile.salt_len());
                    if local.len() == kl + sl && remote.len() == kl + sl {
                        t.tx = SrtpContext::new(profile, &local[..kl], &local[kl..]).ok();
                        t.rx = SrtpContext::new(profile, &remote[..kl], &remote[kl..]).ok();
                    }
                }
            }
            Command::SetExtensions { id, mid, rid, rrid } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    (t.ext_mid, t.ext_rid, t.ext_rrid) = (mid, rid, rrid);
                }
            }
            Command::AddTrack { id, clock_rate } => {
                self.tracks.entry(id).or_insert(Track { sources: Vec::new(), downtracks: Vec::new(), clock_rate });
            }
            Command::RemoveTrack { id } => self.remove_track(id),
            Command::BindStream { track, transport, ssrc } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.sources.push((transport, ssrc));
                    self.streams.insert((transport, ssrc), track);
                }
            }
            Command::AddDownTrack { id, track, transport, ssrc, payload_type } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.downtracks.push(id);
                    let seed = (id.wrapping_mul(2654435761)) ^ ssrc;
                    self.downtracks.insert(id, DownTrack {
                        track, transport, ssrc, payload_type,
                        munger: Munger::new(t.clock_rate, (seed & 0x7fff) as u16, seed.rotate_left(7)),
                        paused: false,
                    });
                }
            }
            Command::RemoveDownTrack { id } => self.remove_downtrack(id),
            Command::PauseDownTrack { id, paused } => {
                if let Some(d) = self.downtracks.get_mut(&id) {
                    if paused && !d.paused {
                        d.munger.pause();
                    }
                    d.paused = paused;
                }
            }
            Command::Shutdown => {}
        }
    }

    fn remove_transport(&mut self, id: u32) {
        let Some(t) = self.transports.remove(&id) else { return };
        self.by_ufrag.remove(&t.ufrag);
        if let Some(addr) = t.addr {
            self.by_addr.remove(&addr);
        }
        self.streams.retain(|(tr, _), _| *tr != id);
        for track in self.tracks.values_mut() {
            track.sources.retain(|(tr, _)| *tr != id);
        }
        let gone: Vec<u32> = self.downtracks.iter().filter(|(_, d)| d.transport == id).map(|(k, _)| *k).collect();
        for d in gone {
            self.remove_downtrack(d);
        }
    }

    fn remove_track(&mut self, id: u32) {
        if let Some(track) = self.tracks.remove(&id) {
            for key in track.sources {
                self.streams.remove(&key);
            }
            for d in track.downtracks {
                self.downtracks.remove(&d);
            }
        }
    }

    fn remove_downtrack(&mut self, id: u32) {
        if let Some(d) = self.downtracks.remove(&id) {
            if let Some(track) = self.tracks.get_mut(&d.track) {
                track.downtracks.retain(|x| *x != id);
            }
        }
    }

    // --- datagrams ----------------------------------------------------------------------
    fn handle_datagram(&mut self, i: usize) {
        let now = self.now_us();
        let Some((data, from)) = self.recv.get(i) else {
            Stats::add(&self.stats.malformed, 1);
            return;
        };
        Stats::add(&self.stats.rx_packets, 1);
        Stats::add(&self.stats.rx_bytes, data.len() as u64);
        let len = data.len();
        self.scratch[..len].copy_from_slice(data);
        match self.scratch[0] {
            0..=3 => self.handle_stun(len, from, now),
            20..=63 => self.handle_dtls(len, from),
            128..=191 => self.handle_srtp(len, from, now),
            _ => Stats::add(&self.stats.malformed, 1),
        }
    }

    fn handle_stun(&mut self, len: usize, from: SocketAddr, now: u64) {
        Stats::add(&self.stats.stun_requests, 1);
        let buf = &self.scratch[..len];
        let Ok(msg) = StunMessage::parse(buf) else {
            Stats::add(&self.stats.stun_rejected, 1);
            return;
        };
        if !msg.is_binding_request() {
            return; // binding indications (keepalives) need no answer
        }
        let Some(id) = msg.username_parts()
            .and_then(|(local, _)| std::str::from_utf8(local).ok())
            .and_then(|ufrag| self.by_ufrag.get(ufrag).copied()) else {
            Stats::add(&self.stats.stun_rejected, 1);
            return;
        };
        let t = self.transports.get_mut(&id).expect("ufrag index is consistent");
        let fingerprint_ok = matches!(msg.verify_fingerprint(), Ok(()) | Err(StunError::Missing));
        if msg.verify_integrity(&t.pwd).is_err() || !fingerprint_ok {
            Stats::add(&self.stats.stun_rejected, 1);
            return;
        }
        t.last_check_us = now;
        t.consent_lost = false;
        let rebind = t.addr != Some(from) && (msg.use_candidate || t.addr.is_none() || !t.nominated);
        if rebind {
            if let Some(old) = t.addr.replace(from) {
                self.by_addr.remove(&old);
            }
            t.nominated |= msg.use_candidate;
            self.by_addr.insert(from, id);
            self.pending.push(Event::Bound { transport: id, addr: from });
        } else if msg.use_candidate && t.addr == Some(from) {
            t.nominated = true;
        }
        let txid = msg.transaction_id;
        let pwd = t.pwd.clone();
        let slot = self.send.slot(&self.socket);
        if let Ok(n) = stun::write_binding_success(slot, &txid, from, &pwd) {
            self.send.push(n, &from);
        }
    }

    fn handle_dtls(&mut self, len: usize, from: SocketAddr) {
        Stats::add(&self.stats.dtls_packets, 1);
        match self.by_addr.get(&from) {
            Some(&id) => self.pending.push(Event::Dtls { transport: id, data: self.scratch[..len].to_vec() }),
            None => Stats::add(&self.stats.unknown_source, 1),
        }
    }

    fn handle_srtp(&mut self, len: usize, from: SocketAddr, now: u64) {
        let Some(&id) = self.by_addr.get(&from) else {
            Stats::add(&self.stats.unknown_source, 1);
            return;
        };
        let is_rtcp = len > 1 && (192..=223).contains(&self.scratch[1]);
        let t = self.transports.get_mut(&id).expect("addr index is consistent");
        let Some(rx) = t.rx.as_mut() else {
            Stats::add(&self.stats.srtp_failures, 1);
            return;
        };
        let result = if is_rtcp { rx.unprotect_rtcp(&mut self.scratch[..len]) } else { rx.unprotect_rtp(&mut self.scratch[..len]) };
        let Ok(plain) = result else {
            Stats::add(&self.stats.srtp_failures, 1);
            return;
        };
        if is_rtcp {
            Stats::add(&self.stats.rtcp_packets, 1);
            return; // RTCP handling (NACK, PLI, reports) comes with the forwarding work
        }
        Stats::add(&self.stats.rtp_packets, 1);
        self.forward_rtp(id, plain, now);
    }

    fn forward_rtp(&mut self, transport: u32, len: usize, now: u64) {
        let (ssrc, seq, ts) = match RtpHeader::parse(&self.scratch[..len]) {
            Ok(h) => (h.ssrc(), h.sequence(), h.timestamp()),
            Err(_) => {
                Stats::add(&self.stats.malformed, 1);
                return;
            }
        };
        let Some(&track_id) = self.streams.get(&(transport, ssrc)) else {
            self.report_new_stream(transport, len);
            return;
        };
        let Some(track) = self.tracks.get(&track_id) else { return };
        for dt_id in track.downtracks.iter() {
            let Some(dt) = self.downtracks.get_mut(dt_id) else { continue };
            if dt.paused {
                continue;
            }
            if dt.munger.source() != Some(ssrc) {
                dt.munger.switch_source(ssrc);
            }
            let Munged::Forward { seq: out_seq, timestamp: out_ts, .. } = dt.munger.forward(ssrc, seq, ts, now) else {
                continue;
            };
            let Some(sub) = self.transports.get_mut(&dt.transport) else { continue };
            let (Some(addr), Some(tx)) = (sub.addr, sub.tx.as_mut()) else { continue };
            let slot = self.send.slot(&self.socket);
            slot[..len].copy_from_slice(&self.scratch[..len]);
            if let Ok(mut h) = RtpHeaderMut::parse(&mut slot[..len]) {
                h.set_ssrc(dt.ssrc);
                h.set_sequence(out_seq);
                h.set_timestamp(out_ts);
                h.set_payload_type(dt.payload_type);
            } else {
                continue;
            }
            match tx.protect_rtp(slot, len) {
                Ok(n) => {
                    self.send.push(n, &addr);
                    Stats::add(&self.stats.forwarded, 1);
                    Stats::add(&self.stats.tx_bytes, n as u64);
                }
                Err(_) => Stats::add(&self.stats.srtp_failures, 1),
            }
        }
    }

    fn report_new_stream(&mut self, transport: u32, len: usize) {
        let Some(t) = self.transports.get_mut(&transport) else { return };
        let Ok(h) = RtpHeader::parse(&self.scratch[..len]) else { return };
        let ssrc = h.ssrc();
        if t.reported.contains(&ssrc) || t.reported.len() > 64 {
            return;
        }
        t.reported.push(ssrc);
        let text = |id: u8| -> String {
            if id == 0 {
                return String::new();
            }
            h.extension(id).and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("").to_string()
        };
        let event = Event::NewStream {
            transport, ssrc, payload_type: h.payload_type(),
            mid: text(t.ext_mid), rid: text(t.ext_rid), rrid: text(t.ext_rrid),
        };
        self.pending.push(event);
    }
}
