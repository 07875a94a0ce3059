//! The load generator's worker thread: every simulated transport's UDP socket (one each, on
//! the load machine's address), watched with one epoll; publishers' media on a timer heap.
//!
//! Per transport: ICE as the client (see `ice`), DTLS datagrams relayed to and from Python
//! (aiortc does the handshake and exports the SRTP keys), then SRTP both ways:
//! - sending: the transport's synthetic streams (see `synth`) when due, protected and sent;
//!   sender reports (with SDES CNAME) about once a second; PLI/FIR from the server make the
//!   next video frame a key frame;
//! - receiving: every RTP packet is unprotected and counted per SSRC (sequence-number loss,
//!   RFC 3550 jitter, bytes, first/last arrival, end-to-end latency from the payload tag);
//!   receiver reports about once a second.
//!
//! Nothing here blocks on Python; commands arrive through a channel and an eventfd.

use std::collections::{BinaryHeap, HashMap};
use std::cmp::Reverse;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use trackyard_core::congestion::TwccRecorder;
use trackyard_core::reports::{ntp_from_unix_us, ReceiverStats};
use trackyard_core::rtcp::{parse_compound, write_rr, write_sdes_cname, write_sr, RtcpPacket, SenderInfo};
use trackyard_core::rtp::RtpHeader;
use trackyard_core::srtp::{SrtpContext, SrtpProfile};

use super::histogram::Histogram;
use super::ice::{IceAgent, IceState, StunOutcome};
use super::synth::{read_tag, Extensions, PacketContext, SendStream, MAX_CHUNK, MAX_HEADER, TAG_LEN};
use super::{LgEvent, LgEvents};
use crate::events::Notifier;
use crate::udp::{RecvBatch, MAX_DATAGRAM};

const TIMER_US: u64 = 10_000;
const REPORT_INTERVAL_US: u64 = 1_000_000;
/// Transport-wide congestion control feedback about what we receive, this often.
const TWCC_INTERVAL_US: u64 = 100_000;
/// Receive batches drained per socket per loop turn (fairness between sockets).
const RECV_ROUNDS: usize = 4;
const MAX_EVENTS: usize = 256;

pub enum Command {
    AddTransport { id: u32, socket: UdpSocket, ufrag: String, pwd: String },
    SetRemote { id: u32, ufrag: String, pwd: String, controlling: bool },
    AddCandidate { id: u32, addr: SocketAddr },
    SendDtls { id: u32, data: Vec<u8> },
    SetSrtp { id: u32, profile: SrtpProfile, local: Vec<u8>, remote: Vec<u8> },
    SetExtensions { id: u32, ext: Extensions },
    SetClock { id: u32, payload_type: u8, clock_rate: u32, video: bool },
    AddStream { id: u32, stream: Box<SendStream>, cname: String },
    RequestKeyframe { id: u32, ssrc: u32 },
    SetSending { sending: bool },
    /// Open (true) or close the measurement window: packets sent by each stream in between
    /// are matched exactly by their tags on the receiving side.
    MarkWindow { open: bool },
    RemoveTransport { id: u32 },
    Snapshot { reply: Sender<Snapshot>, histograms: bool },
    /// Run-wide sums only (cheap, for the per-second progress line).
    Totals { reply: Sender<Totals> },
    Shutdown,
}

/// One received stream, as reported to Python.
#[derive(Debug, Clone, Default)]
pub struct RxReport {
    pub ssrc: u32,
    pub payload_type: u8,
    /// "audio", "video", or "other" (a payload type the offer did not name, e.g. probing).
    pub kind: &'static str,
    pub packets: u64,
    pub bytes: u64,
    pub expected: u64,
    pub lost: i64,
    pub jitter_us: u64,
    pub first_unix_us: u64,
    pub last_unix_us: u64,
    pub untagged: u64,
    pub latency: Vec<(u64, u32)>,
    pub latency_count: u64,
    /// Per publisher SSRC (from the payload tags): packets received in all, and of those
    /// the ones the publisher sent inside the measurement window.
    pub sources: Vec<(u32, u64, u64)>,
}

#[derive(Debug, Clone, Default)]
pub struct TxReport {
    pub ssrc: u32,
    pub rid: String,
    pub video: bool,
    pub packets: u64,
    pub payload_bytes: u64,
    pub frames: u64,
    pub keyframes: u64,
    /// Packets sent inside the measurement window (so far, if it is still open).
    pub window_packets: u64,
}

#[derive(Debug, Clone, Default)]
pub struct TransportReport {
    pub id: u32,
    pub ice: &'static str,
    pub ice_checks: u64,
    pub srtp: bool,
    pub plis_received: u64,
    pub firs_received: u64,
    pub nacks_received: u64,
    pub rtcp_received: u64,
    pub srtp_failures: u64,
    pub rtcp_sent: u64,
    pub tx: Vec<TxReport>,
    pub rx: Vec<RxReport>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Datagrams sent (media, RTCP, STUN, DTLS).
    pub sent_packets: u64,
    /// RTP packets received on all streams, and expected from their sequence numbers.
    pub rx_packets: u64,
    pub rx_expected: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub now_unix_us: u64,
    pub transports: Vec<TransportReport>,
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub send_failures: u64,
    pub received_packets: u64,
    pub received_bytes: u64,
    pub unknown_packets: u64,
    pub loop_turns: u64,
}

struct RxStream {
    payload_type: u8,
    kind: &'static str,
    stats: ReceiverStats,
    latency: Histogram,
    first_unix_us: u64,
    last_unix_us: u64,
    untagged: u64,
    sources: Vec<(u32, u64, u64)>,
}

struct Transport {
    socket: UdpSocket,
    ice: IceAgent,
    tx_srtp: Option<SrtpContext>,
    rx_srtp: Option<SrtpContext>,
    ext: Extensions,
    clocks: Vec<(u8, u32, bool)>,
    streams: Vec<SendStream>,
    cname: Vec<u8>,
    rx: HashMap<u32, RxStream>,
    twcc_seq: u16,
    /// Arrivals for transport-wide feedback (a subscriber whose server stamps the extension).
    twcc_rx: Option<TwccRecorder>,
    twcc_media_ssrc: u32,
    next_twcc_us: u64,
    rtcp_ssrc: u32,
    next_report_us: u64,
    scheduled: bool,
    plis: u64,
    firs: u64,
    nacks: u64,
    rtcp_rx: u64,
    srtp_failures: u64,
    rtcp_sent: u64,
    /// SRTP that arrived before this side's keys were installed (the server finishes DTLS one
    /// flight before we do, and may forward at once), with its arrival time; replayed on SetSrtp.
    early: Vec<(u64, Vec<u8>)>,
}

/// How many early SRTP packets a transport holds until its keys are set; more count as unknown.
const EARLY_MAX: usize = 64;

impl Transport {
    fn media_ready(&self) -> bool {
        self.ice.selected.is_some() && self.tx_srtp.is_some()
    }
}

pub struct Worker {
    epoll: i32,
    commands: Receiver<Command>,
    wake: Arc<Notifier>,
    events: Arc<LgEvents>,
    pending: Vec<LgEvent>,
    transports: HashMap<u32, Transport>,
    /// The measurement window per sending SSRC: tag indexes [start, end).
    window: HashMap<u32, (u32, u32)>,
    /// (due µs, transport, stream index)
    heap: BinaryHeap<Reverse<(u64, u32, u16)>>,
    recv: RecvBatch,
    buf: Vec<u8>,
    epoch: Instant,
    epoch_unix_us: u64,
    sending: bool,
    next_timer_us: u64,
    seed: u64,
    sent_packets: u64,
    sent_bytes: u64,
    send_failures: u64,
    received_packets: u64,
    received_bytes: u64,
    unknown_packets: u64,
    loop_turns: u64,
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Worker {
    pub fn new(commands: Receiver<Command>, wake: Arc<Notifier>, events: Arc<LgEvents>) -> std::io::Result<Self> {
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: u64::MAX };
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, wake.fd(), &mut ev) };
        let seed = unix_us() | 1;
        Ok(Worker {
            epoll,
            commands,
            wake,
            events,
            pending: Vec::new(),
            transports: HashMap::new(),
            window: HashMap::new(),
            heap: BinaryHeap::new(),
            recv: RecvBatch::new(),
            buf: vec![0u8; MAX_DATAGRAM + 128],
            epoch: Instant::now(),
            epoch_unix_us: unix_us(),
            sending: true,
            next_timer_us: 0,
            seed,
            sent_packets: 0,
            sent_bytes: 0,
            send_failures: 0,
            received_packets: 0,
            received_bytes: 0,
            unknown_packets: 0,
            loop_turns: 0,
        })
    }

    /// Wall-clock µs (Unix epoch), monotonic within the run.
    fn now(&self) -> u64 {
        self.epoch_unix_us + self.epoch.elapsed().as_micros() as u64
    }

    fn random(&mut self) -> u32 {
        trackyard_core::prng::next_u32(&mut self.seed)
    }

    pub fn run(&mut self) {
        let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        loop {
            self.loop_turns += 1;
            let now = self.now();
            let next_media = self.heap.peek().map_or(u64::MAX, |Reverse((due, _, _))| *due);
            let due = next_media.min(self.next_timer_us);
            let wait_ms = if due <= now { 0 } else { (due - now).div_ceil(1000).min(20) as i32 };
            let n = unsafe { libc::epoll_wait(self.epoll, events.as_mut_ptr(), MAX_EVENTS as i32, wait_ms) };
            for ev in events.iter().take(n.max(0) as usize) {
                let key = ev.u64;
                if key == u64::MAX {
                    self.wake.clear();
                } else {
                    self.drain_socket(key as u32);
                }
            }
            if !self.drain_commands() {
                break;
            }
            let now = self.now();
            self.send_due_media(now);
            if now >= self.next_timer_us {
                self.next_timer_us = now + TIMER_US;
                self.on_timer(now);
            }
            if !self.pending.is_empty() {
                self.events.push_all(&mut self.pending);
            }
        }
        unsafe { libc::close(self.epoll) };
    }

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
            Command::AddTransport { id, socket, ufrag, pwd } => {
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: u64::from(id) };
                unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut ev) };
                let seed = (u64::from(self.random()) << 32) | u64::from(self.random());
                let rtcp_ssrc = self.random() | 1;
                self.transports.insert(id, Transport {
                    socket,
                    ice: IceAgent::new(ufrag, pwd, seed),
                    tx_srtp: None,
                    rx_srtp: None,
                    ext: Extensions::default(),
                    clocks: Vec::new(),
                    streams: Vec::new(),
                    cname: Vec::new(),
                    rx: HashMap::new(),
                    twcc_seq: (rtcp_ssrc >> 5) as u16,
                    twcc_rx: None,
                    twcc_media_ssrc: 0,
                    next_twcc_us: 0,
                    rtcp_ssrc,
                    next_report_us: 0,
                    scheduled: false,
                    plis: 0,
                    firs: 0,
                    nacks: 0,
                    rtcp_rx: 0,
                    srtp_failures: 0,
                    rtcp_sent: 0,
                    early: Vec::new(),
                });
            }
            Command::SetRemote { id, ufrag, pwd, controlling } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    t.ice.remote_ufrag = ufrag;
                    t.ice.remote_pwd = pwd;
                    t.ice.controlling = controlling;
                }
            }
            Command::AddCandidate { id, addr } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    t.ice.add_candidate(addr);
                }
            }
            Command::SendDtls { id, data } => {
                if let Some(t) = self.transports.get(&id) {
                    if let Some(addr) = t.ice.selected.or_else(|| t.ice.candidates.first().copied()) {
                        self.send_raw(id, &data, addr);
                    }
                }
            }
            Command::SetSrtp { id, profile, local, remote } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    let (kl, sl) = (profile.key_len(), profile.salt_len());
                    if local.len() == kl + sl && remote.len() == kl + sl {
                        t.tx_srtp = SrtpContext::new(profile, &local[..kl], &local[kl..]).ok();
                        t.rx_srtp = SrtpContext::new(profile, &remote[..kl], &remote[kl..]).ok();
                    }
                }
                self.replay_early(id);
                self.schedule(id);
            }
            Command::SetExtensions { id, ext } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    t.ext = ext;
                    if ext.twcc != 0 && t.twcc_rx.is_none() {
                        t.twcc_rx = Some(TwccRecorder::new(4096));
                    }
                }
            }
            Command::SetClock { id, payload_type, clock_rate, video } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    t.clocks.retain(|c| c.0 != payload_type);
                    t.clocks.push((payload_type, clock_rate, video));
                }
            }
            Command::AddStream { id, stream, cname } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    t.streams.push(*stream);
                    t.cname = cname.into_bytes();
                    t.cname.truncate(255);
                    t.scheduled = false;
                }
                self.schedule(id);
            }
            Command::RequestKeyframe { id, ssrc } => {
                if let Some(s) = self.transports.get_mut(&id).and_then(|t| t.streams.iter_mut().find(|s| s.ssrc == ssrc)) {
                    s.keyframe_wanted = true;
                }
            }
            Command::SetSending { sending } => {
                let was = self.sending;
                self.sending = sending;
                if sending && !was {
                    let ids: Vec<u32> = self.transports.keys().copied().collect();
                    for id in ids {
                        if let Some(t) = self.transports.get_mut(&id) {
                            t.scheduled = false;
                        }
                        self.schedule(id);
                    }
                }
            }
            Command::MarkWindow { open } => {
                for t in self.transports.values_mut() {
                    for s in &t.streams {
                        let at = s.packets as u32;
                        if open {
                            self.window.insert(s.ssrc, (at, u32::MAX));
                        } else if let Some(w) = self.window.get_mut(&s.ssrc) {
                            w.1 = at;
                        }
                    }
                    if open {
                        for r in t.rx.values_mut() {
                            for src in r.sources.iter_mut() {
                                src.2 = 0;
                            }
                        }
                    }
                }
            }
            Command::RemoveTransport { id } => {
                if let Some(t) = self.transports.remove(&id) {
                    unsafe {
                        libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_DEL, t.socket.as_raw_fd(), std::ptr::null_mut())
                    };
                }
            }
            Command::Snapshot { reply, histograms } => {
                let _ = reply.send(self.snapshot(histograms));
            }
            Command::Totals { reply } => {
                let mut totals = Totals { sent_packets: self.sent_packets, ..Totals::default() };
                for r in self.transports.values().flat_map(|t| t.rx.values()) {
                    totals.rx_packets += r.stats.received();
                    totals.rx_expected += r.stats.expected();
                }
                let _ = reply.send(totals);
            }
            Command::Shutdown => {}
        }
    }

    /// Puts a transport's streams on the timer heap once it can send (ICE and keys).
    fn schedule(&mut self, id: u32) {
        let now = self.now();
        let Some(t) = self.transports.get_mut(&id) else { return };
        if t.scheduled || !t.media_ready() || !self.sending {
            return;
        }
        t.scheduled = true;
        for (i, s) in t.streams.iter().enumerate() {
            // spread the first packets of the streams over one interval
            let offset = u64::from(self.seed as u32 % 997) * s.interval_us() / 997;
            self.heap.push(Reverse((now + offset, id, i as u16)));
        }
    }

    fn send_raw(&mut self, id: u32, data: &[u8], addr: SocketAddr) {
        let Some(t) = self.transports.get(&id) else { return };
        match t.socket.send_to(data, addr) {
            Ok(n) => {
                self.sent_packets += 1;
                self.sent_bytes += n as u64;
            }
            Err(_) => self.send_failures += 1,
        }
    }

    fn send_due_media(&mut self, now: u64) {
        let mut frame_buf = vec![0u8; MAX_HEADER + MAX_CHUNK + TAG_LEN + 64];
        while let Some(&Reverse((due, id, idx))) = self.heap.peek() {
            if due > now || !self.sending {
                break;
            }
            self.heap.pop();
            let Some(t) = self.transports.get_mut(&id) else { continue };
            if !t.scheduled {
                continue;
            }
            let (Some(addr), Some(tx)) = (t.ice.selected, t.tx_srtp.as_mut()) else { continue };
            let Some(stream) = t.streams.get_mut(idx as usize) else { continue };
            let mut ctx = PacketContext { now_unix_us: now, twcc_seq: t.twcc_seq };
            let socket = &t.socket;
            let (mut sent, mut bytes, mut failed) = (0u64, 0u64, 0u64);
            stream.next_frame(&t.ext, &mut ctx, &mut frame_buf, |buf, len| {
                match tx.protect_rtp(buf, len) {
                    Ok(n) => match socket.send_to(&buf[..n], addr) {
                        Ok(m) => {
                            sent += 1;
                            bytes += m as u64;
                        }
                        Err(_) => failed += 1,
                    },
                    Err(_) => failed += 1,
                }
            });
            t.twcc_seq = ctx.twcc_seq;
            let interval = stream.interval_us();
            self.sent_packets += sent;
            self.sent_bytes += bytes;
            self.send_failures += failed;
            // keep the schedule (no drift), but do not try to catch up after a long stall
            let next = if due + interval < now { now + interval } else { due + interval };
            self.heap.push(Reverse((next, id, idx)));
        }
    }

    fn on_timer(&mut self, now: u64) {
        let ids: Vec<u32> = self.transports.keys().copied().collect();
        let mut buf = std::mem::take(&mut self.buf);
        for id in ids {
            let Some(t) = self.transports.get_mut(&id) else { continue };
            let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
            let failed = t.ice.poll(now, &mut buf, |addr, p| out.push((addr, p.to_vec())));
            if failed {
                self.pending.push(LgEvent::IceFailed { transport: id });
            }
            if t.media_ready() && now >= t.next_report_us {
                t.next_report_us = now + REPORT_INTERVAL_US;
                if let Some(n) = write_reports(t, now, &mut buf) {
                    out.push((t.ice.selected.unwrap_or(t.ice.candidates[0]), buf[..n].to_vec()));
                    t.rtcp_sent += 1;
                }
            }
            if t.media_ready() && t.twcc_rx.is_some() && now >= t.next_twcc_us {
                t.next_twcc_us = now + TWCC_INTERVAL_US;
                write_twcc_feedback(t, &mut buf, &mut out);
            }
            for (addr, p) in out {
                self.send_raw(id, &p, addr);
            }
        }
        self.buf = buf;
    }

    fn drain_socket(&mut self, id: u32) {
        for _ in 0..RECV_ROUNDS {
            let n = {
                let Some(t) = self.transports.get(&id) else { return };
                match self.recv.recv(&t.socket) {
                    Ok(n) if n > 0 => n,
                    _ => return,
                }
            };
            let now = self.now();
            for i in 0..n {
                let Some((data, from)) = self.recv.get(i) else { continue };
                let len = data.len();
                self.buf[..len].copy_from_slice(data);
                self.received_packets += 1;
                self.received_bytes += len as u64;
                self.on_datagram(id, len, from, now);
            }
        }
    }

    fn on_datagram(&mut self, id: u32, len: usize, from: SocketAddr, now: u64) {
        if len == 0 {
            return;
        }
        match self.buf[0] {
            0..=3 => {
                let Some(t) = self.transports.get_mut(&id) else { return };
                match t.ice.on_stun(&mut self.buf, len, from, now) {
                    StunOutcome::Selected(addr) => {
                        self.pending.push(LgEvent::IceConnected { transport: id, addr });
                        self.schedule(id);
                    }
                    StunOutcome::Reply(n) => {
                        let reply = self.buf[..n].to_vec();
                        self.send_raw(id, &reply, from);
                    }
                    StunOutcome::ReplySelected(n, addr) => {
                        let reply = self.buf[..n].to_vec();
                        self.send_raw(id, &reply, from);
                        self.pending.push(LgEvent::IceConnected { transport: id, addr });
                        self.schedule(id);
                    }
                    StunOutcome::Nothing => {}
                }
            }
            20..=63 => self.pending.push(LgEvent::Dtls { transport: id, data: self.buf[..len].to_vec() }),
            128..=191 => self.on_srtp(id, len, now),
            _ => self.unknown_packets += 1,
        }
    }

    /// Decrypt what arrived before the keys, as of when it arrived; without keys it stays unknown.
    fn replay_early(&mut self, id: u32) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        let early = std::mem::take(&mut t.early);
        if t.rx_srtp.is_none() {
            self.unknown_packets += early.len() as u64;
            return;
        }
        for (at, packet) in early {
            self.buf[..packet.len()].copy_from_slice(&packet);
            self.on_srtp(id, packet.len(), at);
        }
    }

    fn on_srtp(&mut self, id: u32, len: usize, now: u64) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        let Some(rx) = t.rx_srtp.as_mut() else {
            if t.early.len() < EARLY_MAX {
                t.early.push((now, self.buf[..len].to_vec()));
            } else {
                self.unknown_packets += 1;
            }
            return;
        };
        let buf = &mut self.buf[..len];
        if trackyard_core::rtcp::is_rtcp(buf) {
            let Ok(n) = rx.unprotect_rtcp(buf) else {
                t.srtp_failures += 1;
                return;
            };
            t.rtcp_rx += 1;
            on_rtcp(t, &self.buf[..n], now);
            return;
        }
        let Ok(n) = rx.unprotect_rtp(buf) else {
            t.srtp_failures += 1;
            return;
        };
        let Ok(h) = RtpHeader::parse(&self.buf[..n]) else {
            self.unknown_packets += 1;
            return;
        };
        if let (Some(rec), true) = (t.twcc_rx.as_mut(), t.ext.twcc != 0) {
            if let Some(v) = h.extension(t.ext.twcc).filter(|v| v.len() >= 2) {
                rec.record(u16::from_be_bytes([v[0], v[1]]), now);
                if t.twcc_media_ssrc == 0 {
                    t.twcc_media_ssrc = h.ssrc();
                }
            }
        }
        let pt = h.payload_type();
        let stream = t.rx.entry(h.ssrc()).or_insert_with(|| {
            let (clock, kind) = t.clocks.iter().find(|c| c.0 == pt)
                .map_or((90_000, "other"), |c| (c.1, if c.2 { "video" } else { "audio" }));
            RxStream {
                payload_type: pt,
                kind,
                stats: ReceiverStats::new(clock),
                latency: Histogram::default(),
                first_unix_us: now,
                last_unix_us: now,
                untagged: 0,
                sources: Vec::new(),
            }
        });
        stream.stats.on_packet(h.sequence(), h.timestamp(), n, now);
        stream.last_unix_us = now;
        match read_tag(h.payload()) {
            Some(tag) => {
                stream.latency.record(now.saturating_sub(tag.sent_unix_us));
                let inside = u64::from(
                    self.window.get(&tag.source_ssrc).is_some_and(|&(from, to)| from <= tag.index && tag.index < to));
                if let Some(s) = stream.sources.iter_mut().find(|s| s.0 == tag.source_ssrc) {
                    s.1 += 1;
                    s.2 += inside;
                } else if stream.sources.len() < 16 {
                    stream.sources.push((tag.source_ssrc, 1, inside));
                }
            }
            None => stream.untagged += 1,
        }
    }

    fn snapshot(&self, histograms: bool) -> Snapshot {
        let mut transports: Vec<TransportReport> = Vec::with_capacity(self.transports.len());
        for (&id, t) in &self.transports {
            let ice = match t.ice.state {
                IceState::New => "new",
                IceState::Checking => "checking",
                IceState::Connected => "connected",
                IceState::Failed => "failed",
            };
            transports.push(TransportReport {
                id,
                ice,
                ice_checks: t.ice.checks_sent,
                srtp: t.tx_srtp.is_some(),
                plis_received: t.plis,
                firs_received: t.firs,
                nacks_received: t.nacks,
                rtcp_received: t.rtcp_rx,
                srtp_failures: t.srtp_failures,
                rtcp_sent: t.rtcp_sent,
                tx: t.streams.iter().map(|s| TxReport {
                    ssrc: s.ssrc,
                    rid: String::from_utf8_lossy(&s.rid).into_owned(),
                    video: s.is_video(),
                    packets: s.packets,
                    payload_bytes: s.payload_bytes,
                    frames: s.frames,
                    keyframes: s.keyframes,
                    window_packets: self.window.get(&s.ssrc).map_or(0, |&(from, to)| {
                        u64::from((s.packets as u32).min(to).wrapping_sub(from))
                    }),
                }).collect(),
                rx: t.rx.iter().map(|(&ssrc, r)| RxReport {
                    ssrc,
                    payload_type: r.payload_type,
                    kind: r.kind,
                    packets: r.stats.received(),
                    bytes: r.stats.bytes(),
                    expected: r.stats.expected(),
                    lost: r.stats.cumulative_lost(),
                    jitter_us: r.stats.jitter_us(),
                    first_unix_us: r.first_unix_us,
                    last_unix_us: r.last_unix_us,
                    untagged: r.untagged,
                    latency: if histograms { r.latency.buckets() } else { Vec::new() },
                    latency_count: r.latency.total(),
                    sources: r.sources.clone(),
                }).collect(),
            });
        }
        transports.sort_by_key(|t| t.id);
        Snapshot {
            now_unix_us: self.now(),
            transports,
            sent_packets: self.sent_packets,
            sent_bytes: self.sent_bytes,
            send_failures: self.send_failures,
            received_packets: self.received_packets,
            received_bytes: self.received_bytes,
            unknown_packets: self.unknown_packets,
            loop_turns: self.loop_turns,
        }
    }
}

/// Transport-wide congestion control feedback about the arrivals since the last one (as a
/// real receiver sends it; SFUs estimate a subscriber's bandwidth from it).
fn write_twcc_feedback(t: &mut Transport, buf: &mut [u8], out: &mut Vec<(SocketAddr, Vec<u8>)>) {
    let (Some(addr), Some(rec), Some(tx)) = (t.ice.selected, t.twcc_rx.as_mut(), t.tx_srtp.as_mut()) else { return };
    let room = buf.len() - 64;
    for _ in 0..8 {
        match rec.write_feedback(&mut buf[..room], t.rtcp_ssrc, t.twcc_media_ssrc) {
            Ok(Some(n)) => {
                if let Ok(m) = tx.protect_rtcp(buf, n) {
                    out.push((addr, buf[..m].to_vec()));
                    t.rtcp_sent += 1;
                }
            }
            _ => break,
        }
    }
}

/// Keyframe requests, NACKs and sender reports from the server.
fn on_rtcp(t: &mut Transport, packet: &[u8], now: u64) {
    for item in parse_compound(packet) {
        let Ok(p) = item else { break };
        match p {
            RtcpPacket::Pli(pli) => {
                t.plis += 1;
                if let Some(s) = t.streams.iter_mut().find(|s| s.ssrc == pli.media_ssrc) {
                    s.keyframe_wanted = true;
                }
            }
            RtcpPacket::Fir(fir) => {
                t.firs += 1;
                for (ssrc, _) in fir.entries() {
                    if let Some(s) = t.streams.iter_mut().find(|s| s.ssrc == ssrc) {
                        s.keyframe_wanted = true;
                    }
                }
            }
            RtcpPacket::Nack(_) => t.nacks += 1,
            RtcpPacket::SenderReport(sr) => {
                if let Some(r) = t.rx.get_mut(&sr.info.ssrc) {
                    r.stats.on_sender_report(sr.info.ntp_time, now);
                }
            }
            _ => {}
        }
    }
}

/// Our periodic RTCP for a transport, one compound packet (SRTCP-protected in `buf`): a
/// sender report per sending stream, or a receiver report about what arrives; then SDES.
/// (Subscribers send no PLI of their own: the SFU asks the publisher when a subscription
/// starts.)
fn write_reports(t: &mut Transport, now: u64, buf: &mut [u8]) -> Option<usize> {
    let room = buf.len() - 64;
    let mut pos = 0;
    let ntp = ntp_from_unix_us(now);
    for s in t.streams.iter().take(8) {
        let info = SenderInfo {
            ssrc: s.ssrc,
            ntp_time: ntp,
            rtp_time: s.rtp_time_at(now),
            packet_count: s.packets as u32,
            octet_count: s.payload_bytes as u32,
        };
        pos += write_sr(&mut buf[pos..room], &info, &[]).ok()?;
    }
    if t.streams.is_empty() {
        let blocks: Vec<_> = t.rx.iter_mut().take(31).map(|(&ssrc, r)| r.stats.report_block(ssrc, now)).collect();
        pos += write_rr(&mut buf[pos..room], t.rtcp_ssrc, &blocks).ok()?;
    }
    let ssrc = t.streams.first().map_or(t.rtcp_ssrc, |s| s.ssrc);
    if !t.cname.is_empty() {
        pos += write_sdes_cname(&mut buf[pos..room], ssrc, &t.cname).ok()?;
    }
    t.tx_srtp.as_mut()?.protect_rtcp(buf, pos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 30] = [7u8; 30];

    fn worker() -> Worker {
        let (_tx, rx) = std::sync::mpsc::channel();
        let w = Worker::new(rx, Arc::new(Notifier::new().unwrap()), Arc::new(LgEvents::new(16).unwrap()));
        let mut w = w.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        w.apply(Command::AddTransport { id: 1, socket, ufrag: "u".into(), pwd: "p".repeat(22) });
        w
    }

    /// An RTP packet as the server would send it, protected with the key our side receives with.
    fn server_packet(seq: u16) -> Vec<u8> {
        let mut pkt = vec![0x80, 111, (seq >> 8) as u8, seq as u8, 0, 0, 0, 1, 0, 0, 0, 42];
        pkt.extend_from_slice(&[0xAB; 60]);
        let mut server = SrtpContext::new(SrtpProfile::Aes128CmHmacSha1_80, &KEY[..16], &KEY[16..]).unwrap();
        server.protect_rtp_vec(&mut pkt).unwrap();
        pkt
    }

    fn deliver(w: &mut Worker, pkt: &[u8], at: u64) {
        w.buf[..pkt.len()].copy_from_slice(pkt);
        w.on_datagram(1, pkt.len(), "127.0.0.1:9".parse().unwrap(), at);
    }

    fn set_keys(w: &mut Worker, remote: &[u8]) {
        let local = vec![9u8; 30];
        w.apply(Command::SetSrtp { id: 1, profile: SrtpProfile::Aes128CmHmacSha1_80, local, remote: remote.to_vec() });
    }

    fn received(w: &Worker) -> u64 {
        w.snapshot(false).transports.iter().flat_map(|t| &t.rx).map(|s| s.packets).sum()
    }

    #[test]
    fn srtp_before_the_keys_is_counted_once_they_are_set() {
        let mut w = worker();
        deliver(&mut w, &server_packet(1), 1_000);
        deliver(&mut w, &server_packet(2), 2_000);
        assert_eq!(received(&w), 0);
        set_keys(&mut w, &KEY);
        deliver(&mut w, &server_packet(3), 3_000);
        let snap = w.snapshot(false);
        let rx = &snap.transports[0].rx;
        assert_eq!((rx.len(), rx[0].packets, rx[0].lost), (1, 3, 0));
        assert_eq!(rx[0].first_unix_us, 1_000, "an early packet keeps its arrival time");
        assert_eq!((snap.unknown_packets, snap.transports[0].srtp_failures), (0, 0));
    }

    #[test]
    fn early_srtp_beyond_the_bound_or_under_wrong_keys_is_not_counted_as_received() {
        let mut w = worker();
        for seq in 0..(EARLY_MAX as u16 + 5) {
            deliver(&mut w, &server_packet(seq), 1_000);
        }
        assert_eq!(w.snapshot(false).unknown_packets, 5);
        set_keys(&mut w, &[1u8; 30]);
        let snap = w.snapshot(false);
        assert_eq!(received(&w), 0);
        assert_eq!(snap.transports[0].srtp_failures, EARLY_MAX as u64);
    }
}
