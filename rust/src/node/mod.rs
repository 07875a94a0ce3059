//! The media node's worker: one thread that owns the UDP socket and the forwarding graph (its
//! datagrams are handed to the kernel by a send thread, see `trackyard_net::SendPipeline`).
//!
//! Per datagram (demultiplexed by first byte, RFC 7983):
//! - STUN (0–3): ICE-lite binding requests (see `ice`).
//! - DTLS (20–63): handed up to Python (aiortc runs the handshake and SCTP).
//! - SRTP/SRTCP (128–191): unprotected with the transport's keys; RTP goes to the track it is
//!   bound to and from there to every down-track (see `forward`); RTCP is read for NACKs,
//!   keyframe requests and reports (see `rtcp`). An SSRC without a route is reported once so
//!   Python can bind it.
//! - anything else, or from an unknown address: dropped and counted.
//!
//! The same packets may arrive framed on ICE-TCP connections (see `tcp`); they go through
//! the same demultiplexing, and what the node sends to such a peer goes out on its connection.
//!
//! Timers (see `timers`) run between receive batches: NACKs and keyframe requests to
//! publishers every 20 ms; layer activity, transport-wide feedback and a tenth of the
//! sender/receiver reports every 100 ms; audio levels every 250 ms; statistics every 2 s.
//!
//! Python sends commands through a channel and wakes the worker with an eventfd; the worker
//! never calls into Python. Every datagram, command and timer runs under `catch_unwind`: a
//! panic drops that one input and is counted, the node goes on. Close cascade (see
//! `commands`): removing a transport removes its streams and the down-tracks that send to
//! it; removing a track removes its down-tracks.

mod commands;
mod forward;
mod ice;
mod rtcp;
mod state;
mod tcp;
mod timers;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use trackyard_core::codec::Codec;
use trackyard_core::srtp::SrtpProfile;

use crate::events::{Event, EventQueue, Notifier};
use crate::stats::Stats;
use crate::udp::{RecvBatch, MAX_DATAGRAM};

pub use state::{ExtIds, Kind};
use state::{IdMap, Route, Track, Transport};
use tcp::Egress;

/// Without a valid ICE check for this long, the peer has withdrawn consent (RFC 7675).
pub const CONSENT_TIMEOUT_US: u64 = 30_000_000;

pub enum Command {
    AddTransport { id: u32, ufrag: String, pwd: String },
    RemoveTransport { id: u32 },
    RestartIce { id: u32, ufrag: String, pwd: String },
    InjectFault { id: u32 },
    SendDtls { id: u32, data: Vec<u8> },
    SetSrtp { id: u32, profile: SrtpProfile, local: Vec<u8>, remote: Vec<u8> },
    SetExtensions { id: u32, ext: ExtIds },
    AddTrack { id: u32, clock_rate: u32, kind: Kind, codec: Codec },
    RemoveTrack { id: u32 },
    MuteTrack { id: u32, muted: bool },
    BindStream { track: u32, transport: u32, ssrc: u32, layer: u8, repair: bool },
    AddDownTrack { id: u32, track: u32, transport: u32, ssrc: u32, payload_type: u8, max_layer: u8, cname: String },
    RemoveDownTrack { id: u32 },
    PauseDownTrack { id: u32, paused: bool },
    SetDownTrackLayer { id: u32, max_layer: u8 },
    RequestKeyframe { id: u32 },
    Shutdown,
}

/// Next due times of the periodic work (µs on the node clock).
#[derive(Default)]
struct Timers {
    fast: u64,
    slow: u64,
    slow_ticks: u64,
    levels: u64,
    stats: u64,
    consent: u64,
    /// A transport-wide recorder filled up since the last feedback round: report it early.
    twcc_full: bool,
}

pub struct Node {
    socket: UdpSocket,
    recv: RecvBatch,
    /// UDP send queue and the ICE-TCP connections (see `tcp`).
    send: Egress,
    pollfds: Vec<libc::pollfd>,
    tcp_revents: Vec<i16>,
    commands: Receiver<Command>,
    wake: Arc<Notifier>,
    events: Arc<EventQueue>,
    pending: Vec<Event>,
    stats: Arc<Stats>,
    epoch: Instant,
    transports: IdMap<u32, Transport>,
    by_ufrag: HashMap<String, u32>,
    by_addr: HashMap<SocketAddr, u32>,
    tracks: IdMap<u32, Track>,
    /// (transport, ssrc) → where that incoming stream goes.
    streams: IdMap<(u32, u32), Route>,
    /// (transport, down-track ssrc) → down-track, for the subscriber's RTCP.
    dt_routes: IdMap<(u32, u32), u32>,
    /// down-track → its track.
    dt_track: IdMap<u32, u32>,
    scratch: Vec<u8>,
    seq_scratch: Vec<u16>,
    /// The transport whose datagram is being handled (named in a fault event on a panic).
    current: Option<u32>,
    timers: Timers,
    seed: u64,
}

impl Node {
    pub fn new(socket: UdpSocket, commands: Receiver<Command>, wake: Arc<Notifier>, events: Arc<EventQueue>,
               stats: Arc<Stats>, gso: bool, tcp: Option<TcpListener>) -> std::io::Result<Self> {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64) | 1;
        let send = Egress::new(&socket, gso, tcp)?;
        Ok(Node {
            socket,
            recv: RecvBatch::new(),
            send,
            pollfds: Vec::with_capacity(8),
            tcp_revents: Vec::with_capacity(8),
            commands,
            wake,
            events,
            pending: Vec::with_capacity(64),
            stats,
            epoch: Instant::now(),
            transports: IdMap::default(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            tracks: IdMap::default(),
            streams: IdMap::default(),
            dt_routes: IdMap::default(),
            dt_track: IdMap::default(),
            scratch: vec![0u8; MAX_DATAGRAM + 64],
            current: None,
            seq_scratch: Vec::with_capacity(1024),
            timers: Timers::default(),
            seed,
        })
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A pseudo-random 32-bit value (SSRCs, initial sequence numbers), xorshift64*.
    fn random(&mut self) -> u32 {
        trackyard_core::prng::next_u32(&mut self.seed)
    }

    /// Runs `f`, catching a panic: the input is dropped and counted, the node goes on. When
    /// the panic happened on a peer transport's datagram, that transport is removed (its state
    /// may be inconsistent) and reported as a fault, so that Python closes the one room
    /// involved; every other room keeps forwarding.
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) {
        self.current = None;
        if catch_unwind(AssertUnwindSafe(|| f(self))).is_err() {
            Stats::bump(&self.stats.panics);
            if self.scratch.len() < MAX_DATAGRAM + 64 {
                self.scratch = vec![0u8; MAX_DATAGRAM + 64];
            }
            if let Some(id) = self.current.take() {
                self.remove_transport(id);
                self.pending.push(Event::Fault { transport: id });
            }
        }
        self.current = None;
    }

    /// Runs until a Shutdown command (or the command channel closes).
    pub fn run(&mut self) {
        loop {
            let now = self.now_us();
            let wait_ms = (self.timers.fast.saturating_sub(now) / 1000).clamp(1, 20) as i32;
            let mut fds = std::mem::take(&mut self.pollfds);
            fds.clear();
            fds.push(libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            fds.push(libc::pollfd { fd: self.wake.fd(), events: libc::POLLIN, revents: 0 });
            self.send.tcp.poll_fds(&mut fds);
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
            if fds[1].revents != 0 {
                self.wake.clear();
            }
            let mut tcp_events = std::mem::take(&mut self.tcp_revents);
            tcp_events.clear();
            tcp_events.extend(fds[2..].iter().map(|f| f.revents));
            self.pollfds = fds;
            let mut running = self.drain_commands();
            // a bounded number of batches per turn keeps timers responsive
            for _ in 0..16 {
                if !running {
                    break;
                }
                match self.recv.recv(&self.socket) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        // commands are taken again after every batch arrives, so one that
                        // Python sent before a datagram was sent (a layer change, a new
                        // down-track) always applies to that datagram
                        running = self.drain_commands();
                        let now = self.now_us();
                        for i in 0..n {
                            self.guarded(|node| node.handle_datagram(i, now));
                        }
                        self.guarded(|node| node.send_early_twcc(now));
                        self.send.flush();
                    }
                }
            }
            if !running {
                break;
            }
            let now = self.now_us();
            self.service_tcp(&tcp_events, now);
            self.tcp_revents = tcp_events;
            self.guarded(|node| node.on_timers(now));
            self.send.flush();
            self.close_broken_tcp();
            self.flush_events();
        }
        self.send.flush();
        self.flush_events();
    }

    fn flush_events(&mut self) {
        let dropped = self.events.push_all(&mut self.pending);
        if dropped > 0 {
            Stats::add(&self.stats.events_dropped, dropped as u64);
        }
        use std::sync::atomic::Ordering;
        let udp = self.send.udp.totals();
        for (stat, total) in [(&self.stats.tx_packets, &udp.sent), (&self.stats.send_failures, &udp.failed),
                              (&self.stats.send_syscalls, &udp.syscalls), (&self.stats.gso_messages, &udp.gso_messages)] {
            stat.store(total.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let tcp = &self.send.tcp.counters;
        self.stats.tcp_frames_sent.store(tcp.frames_sent, Ordering::Relaxed);
        self.stats.tcp_dropped.store(tcp.dropped, Ordering::Relaxed);
    }

    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Ok(cmd) => self.guarded(|node| node.apply(cmd)),
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    // --- datagrams ----------------------------------------------------------------------
    fn handle_datagram(&mut self, i: usize, now: u64) {
        let Some((data, from)) = self.recv.get(i) else {
            Stats::bump(&self.stats.malformed);
            return;
        };
        let len = data.len();
        self.scratch[..len].copy_from_slice(data);
        self.dispatch(len, from, now);
    }

    /// Handles the packet in `scratch[..len]` from `from` (a UDP peer, or a TCP connection's
    /// stand-in address) by its first byte.
    fn dispatch(&mut self, len: usize, from: SocketAddr, now: u64) {
        Stats::bump(&self.stats.rx_packets);
        Stats::add(&self.stats.rx_bytes, len as u64);
        if len == 0 {
            Stats::bump(&self.stats.malformed);
            return;
        }
        match self.scratch[0] {
            0..=3 => {
                self.handle_stun(len, from, now);
            }
            20..=63 => self.handle_dtls(len, from),
            128..=191 => self.handle_srtp(len, from, now),
            _ => Stats::bump(&self.stats.malformed),
        }
    }

    fn handle_srtp(&mut self, len: usize, from: SocketAddr, now: u64) {
        let Some(&id) = self.by_addr.get(&from) else {
            Stats::bump(&self.stats.unknown_source);
            return;
        };
        let is_rtcp = trackyard_core::rtcp::is_rtcp(&self.scratch[..len]);
        self.current = Some(id);
        if self.transports.get(&id).is_some_and(|t| t.fault_injected) {
            panic!("fault injected on transport {id}");
        }
        let Some(rx) = self.transports.get_mut(&id).and_then(|t| t.rx.as_mut()) else {
            Stats::bump(&self.stats.srtp_failures);
            return;
        };
        let buf = &mut self.scratch[..len];
        let result = if is_rtcp { rx.unprotect_rtcp(buf) } else { rx.unprotect_rtp(buf) };
        let Ok(plain) = result else {
            Stats::bump(&self.stats.srtp_failures);
            return;
        };
        if is_rtcp {
            Stats::bump(&self.stats.rtcp_packets);
            self.handle_rtcp(id, plain, now);
        } else {
            Stats::bump(&self.stats.rtp_packets);
            self.handle_rtp(id, plain, now);
        }
    }
}
