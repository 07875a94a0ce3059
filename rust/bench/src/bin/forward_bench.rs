//! Forwarding micro-benchmark of trackyard-core, no WebRTC, no Python.
//!
//! `cargo run --release --bin forward_bench` (from rust/bench; `--quick` for a smoke run,
//! `--out PATH` for the JSON, default `<repo>/bench/out/forward_bench.json`; `--sections`
//! picks among a–d, `--paced join-storm` runs only (d)'s rows for that preset).
//!
//! - (a) crypto floor: SRTP protect and unprotect of one packet, in place, keys set once,
//!   per profile and size. Nothing cheaper per egress packet is possible with this SRTP code.
//! - (b) fan-out without IO: the engine's RTP path (rust/src/node/forward.rs) from
//!   trackyard-core's pieces; the per-subscriber step is the engine's own
//!   (`trackyard_core::downtrack::{select, rewrite_rtp}`). Per ingress packet, once: SRTP unprotect, header parse,
//!   receive statistics, NACK loss tracking (video), a copy into the retransmission cache,
//!   keyframe detection. Then per subscriber: layer verdict (`Forwarder`), SSRC/seq/timestamp
//!   from its `Munger`, copy into a send slot, header rewrite (SSRC, seq, ts, payload type,
//!   extension ids remapped with mid blanked, transport-wide seq, abs-send-time), SRTP protect
//!   with the subscriber's own context, `Sequencer` record (for NACKs) and sender
//!   statistics. Reported per egress packet, the per-ingress work amortised over N.
//! - (c) the same with real batched IO on 127.0.0.1: a sender thread (the "publisher")
//!   protects and sends ingress with sendmmsg to the forwarder's socket; the forwarder thread
//!   receives with recvmmsg, does (b), and sends to N sink sockets through the engine's own
//!   send queue (trackyard-net: sendmmsg, and with GSO on, each sink's datagrams of one
//!   receive batch coalesced into UDP_SEGMENT messages); a sink
//!   thread drains the sinks with epoll + recvmmsg. All three threads share this machine's
//!   cores, and on loopback the sending thread also pays the kernel's receive path, so the
//!   CPU per egress packet is pessimistic against a real NIC. The sender keeps at most
//!   `WINDOW` packets in flight (no loss from overrunning the forwarder's socket).
//!
//! Every loop is bounded by a packet count and a wall-clock limit; traffic stays on loopback.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use trackyard_core::codec::{self, Codec};
use trackyard_core::downtrack::{rewrite_rtp, select, ExtIds, Rewrite, Selected};
use trackyard_core::forwarder::Forwarder;
use trackyard_core::munger::Munger;
use trackyard_core::nack::{NackConfig, NackTracker, RtxCache};
use trackyard_core::reports::{ReceiverStats, SenderStats};
use trackyard_core::rtp::RtpHeader;
use trackyard_core::sequencer::{SentPacket, Sequencer};
use trackyard_core::srtp::{SrtpContext, SrtpProfile};
use trackyard_net::SendQueue;

/// Packets per sendmmsg/recvmmsg call.
const BATCH: usize = 64;
/// Most ingress packets in flight between the sender and the forwarder in (c).
const WINDOW: u64 = 512;
/// Repetitions of each (a)/(b) measurement; the median is reported, the spread recorded.
const REPS: usize = 3;
/// The publisher's one-byte header extension ids (as a browser would negotiate them).
const PUB_ABS_SEND_TIME: u8 = 2;
const PUB_TWCC: u8 = 3;
const PUB_MID: u8 = 4;
/// The subscribers' ids: abs-send-time and transport-wide seq move, mid is blanked.
const SUB_ABS_SEND_TIME: u8 = 3;
const SUB_TWCC: u8 = 5;
const PUB_SSRC: u32 = 0x0A0B_0C0D;
/// The engine's largest datagram (rust/src/udp.rs) and cache/sequencer sizes (node/state.rs).
const MAX_DATAGRAM: usize = 1500;
const CACHE_MAX_AGE_US: u64 = 2_000_000;

struct Config {
    quick: bool,
    out: String,
    sections: String,
    /// (d) only for these `trackyard bench` presets (empty: every row)
    paced: Vec<String>,
}

// ---------------------------------------------------------------- helpers

fn profile_short(p: SrtpProfile) -> &'static str {
    match p {
        SrtpProfile::Aes128CmHmacSha1_80 => "AES-CM-128/HMAC-SHA1-80",
        SrtpProfile::AeadAes128Gcm => "AEAD-AES-128-GCM",
        SrtpProfile::AeadAes256Gcm => "AEAD-AES-256-GCM",
    }
}

fn context(profile: SrtpProfile, seed: u32) -> SrtpContext {
    let key: Vec<u8> = (0..profile.key_len())
        .map(|i| (seed as usize * 31 + i * 7) as u8)
        .collect();
    let salt: Vec<u8> = (0..profile.salt_len())
        .map(|i| (seed as usize * 17 + i * 3 + 1) as u8)
        .collect();
    SrtpContext::new(profile, &key, &salt).expect("key lengths match the profile")
}

/// Bytes before the payload in [`plain_packet`].
const HEADER_LEN: usize = 28;
/// Offset of the transport-wide sequence number in [`plain_packet`].
const TWCC_AT: usize = 17;

/// A plain RTP packet of `size` bytes (header included) shaped like a browser's: a one-byte
/// extension block with transport-wide seq (2 bytes), abs-send-time (3) and mid ("0"), then
/// a VP8-like payload (non-key frames; [`Source`] treats the first packet as the keyframe).
fn plain_packet(size: usize, seq: u16, ts: u32) -> Vec<u8> {
    assert!(size >= HEADER_LEN + 4);
    let mut p = vec![0u8; size];
    p[0] = 0x90; // V=2, X=1
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&PUB_SSRC.to_be_bytes());
    p[12..16].copy_from_slice(&[0xBE, 0xDE, 0x00, 0x03]);
    p[16] = (PUB_TWCC << 4) | 1;
    p[TWCC_AT..TWCC_AT + 2].copy_from_slice(&seq.to_be_bytes());
    p[19] = (PUB_ABS_SEND_TIME << 4) | 2;
    p[20..23].copy_from_slice(&[0x12, 0x34, 0x56]);
    p[23] = PUB_MID << 4;
    p[24] = b'0';
    // 25..28: padding; then a VP8 payload descriptor and a non-key frame header (P=1)
    p[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0x90, 0x80, 0x12, 0x01]);
    for (i, b) in p[HEADER_LEN + 4..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(seq as u8);
    }
    p
}

/// Writes a plain packet with `seq` into `buf` (reusing its payload) and protects it.
fn make_ingress(tx: &mut SrtpContext, template: &[u8], seq: u16, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(template);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    let ts = 90_000u32.wrapping_add(u32::from(seq / 4) * 3000);
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[TWCC_AT..TWCC_AT + 2].copy_from_slice(&seq.to_be_bytes());
    tx.protect_rtp_vec(buf).expect("protect");
}

fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn thread_cpu() -> f64 {
    rusage(libc::RUSAGE_THREAD)
}

/// This thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID): unlike wall time it does not grow
/// while the thread waits for a core, so (a) and (b) stay comparable on a busy machine.
fn cpu_ns() -> u64 {
    // SAFETY: clock_gettime fills the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall and thread-CPU time of a timed section, accumulated.
#[derive(Default, Clone, Copy)]
struct Timer {
    wall: Duration,
    cpu_ns: u64,
}

impl Timer {
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let (w, c) = (Instant::now(), cpu_ns());
        let r = f();
        self.cpu_ns += cpu_ns() - c;
        self.wall += w.elapsed();
        r
    }
    /// (CPU µs, wall µs) per item.
    fn per(&self, items: u64) -> (f64, f64) {
        let n = items.max(1) as f64;
        (
            self.cpu_ns as f64 / 1e3 / n,
            self.wall.as_secs_f64() * 1e6 / n,
        )
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn median_spread(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = v[v.len() / 2];
    let spread = if med > 0.0 {
        (v[v.len() - 1] - v[0]) / med * 100.0
    } else {
        0.0
    };
    (med, spread)
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

// ---------------------------------------------------------------- (a) crypto floor

struct FloorResult {
    profile: SrtpProfile,
    size: usize,
    /// thread-CPU µs per packet (median of REPS)
    protect_us: f64,
    protect_spread: f64,
    protect_wall_us: f64,
    unprotect_us: f64,
    unprotect_spread: f64,
    unprotect_wall_us: f64,
}

/// One timed pass: `n` protects in place, then `n` unprotects of fresh packets (prepared
/// untimed in batches of 256). Returns (protect, unprotect) as (CPU µs, wall µs) per packet.
fn floor_once(
    profile: SrtpProfile,
    size: usize,
    n: usize,
    max: Duration,
) -> ((f64, f64), (f64, f64)) {
    let mut tx = context(profile, 1);
    let template = plain_packet(size, 0, 0);
    let mut buf = vec![0u8; size + 32];
    buf[..size].copy_from_slice(&template);
    let start = Instant::now();
    let mut done = 0usize;
    let mut pt = Timer::default();
    while done < n && start.elapsed() < max {
        pt.time(|| {
            for _ in 0..256 {
                let seq = done as u16;
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                // protect_rtp encrypts the payload in place; re-encrypting the ciphertext of
                // the previous round costs the same
                black_box(tx.protect_rtp(&mut buf, size).expect("protect"));
                done += 1;
            }
        });
    }

    let mut tx = context(profile, 2);
    let mut rx = context(profile, 2);
    let mut ring: Vec<Vec<u8>> = (0..256).map(|_| Vec::with_capacity(size + 32)).collect();
    let mut seq = 0u16;
    let mut ut = Timer::default();
    let mut undone = 0usize;
    let start = Instant::now();
    while undone < n && start.elapsed() < max * 2 {
        for b in ring.iter_mut() {
            make_ingress(&mut tx, &template, seq, b);
            seq = seq.wrapping_add(1);
        }
        ut.time(|| {
            for b in ring.iter_mut() {
                black_box(rx.unprotect_rtp(b).expect("unprotect"));
            }
        });
        undone += ring.len();
    }
    (pt.per(done as u64), ut.per(undone as u64))
}

fn run_floor(cfg: &Config) -> Vec<FloorResult> {
    let n = if cfg.quick { 20_000 } else { 200_000 };
    let max = Duration::from_millis(if cfg.quick { 200 } else { 1500 });
    let mut out = Vec::new();
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        for size in [1200usize, 100] {
            let (mut p, mut pw, mut u, mut uw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..REPS {
                let (a, b) = floor_once(profile, size, n, max);
                p.push(a.0);
                pw.push(a.1);
                u.push(b.0);
                uw.push(b.1);
            }
            let (protect_us, protect_spread) = median_spread(p);
            let (unprotect_us, unprotect_spread) = median_spread(u);
            let protect_wall_us = median_spread(pw).0;
            let unprotect_wall_us = median_spread(uw).0;
            eprintln!(
                "  floor {:<24} {:>5} B: protect {:.3} µs, unprotect {:.3} µs",
                profile_short(profile),
                size,
                protect_us,
                unprotect_us
            );
            out.push(FloorResult {
                profile,
                size,
                protect_us,
                protect_spread,
                protect_wall_us,
                unprotect_us,
                unprotect_spread,
                unprotect_wall_us,
            });
        }
    }
    out
}

// ---------------------------------------------------------------- (b) fan-out, no IO

/// The per-published-stream state the engine updates once per ingress packet.
struct Source {
    rx: ReceiverStats,
    nack: Option<NackTracker>,
    cache: RtxCache,
    video: bool,
    packets: u64,
}

/// What the down-tracks need to know about an ingress packet.
#[derive(Clone, Copy)]
struct Ingress {
    ssrc: u32,
    seq: u16,
    ts: u32,
    payload_len: usize,
    keyframe: bool,
}

impl Source {
    fn new(video: bool) -> Self {
        let (slots, size, clock) = if video {
            (512, MAX_DATAGRAM, 90_000)
        } else {
            (128, 640, 48_000)
        };
        Source {
            rx: ReceiverStats::new(clock),
            nack: video.then(|| NackTracker::new(NackConfig::default())),
            cache: RtxCache::new(slots, size, CACHE_MAX_AGE_US),
            video,
            packets: 0,
        }
    }

    /// The once-per-ingress work after unprotect.
    fn on_packet(&mut self, plain: &[u8], now_us: u64) -> Ingress {
        let h = RtpHeader::parse(plain).expect("valid RTP");
        let (ssrc, seq, ts) = (h.ssrc(), h.sequence(), h.timestamp());
        self.rx.on_packet(seq, ts, plain.len(), now_us);
        if let Some(n) = self.nack.as_mut() {
            n.on_packet(seq, now_us);
        }
        self.cache.insert(seq, plain, now_us);
        let keyframe = if self.video {
            let detected = codec::is_keyframe(Codec::Vp8, h.payload()).unwrap_or(false);
            detected || self.packets == 0
        } else {
            true
        };
        self.packets += 1;
        Ingress {
            ssrc,
            seq,
            ts,
            payload_len: h.payload_len(),
            keyframe,
        }
    }
}

/// One subscriber's down-track state.
struct Sub {
    ctx: SrtpContext,
    fwd: Forwarder,
    munger: Munger,
    seqr: Sequencer,
    stats: SenderStats,
    ssrc: u32,
    twcc: u16,
}

fn subscribers(profile: SrtpProfile, n: usize, video: bool) -> Vec<Sub> {
    let (clock, seq_slots) = if video { (90_000, 1024) } else { (48_000, 128) };
    (0..n)
        .map(|i| {
            let mut fwd = Forwarder::new(2);
            fwd.set_active_layers(0b001);
            Sub {
                ctx: context(profile, 1000 + i as u32),
                fwd,
                munger: Munger::new(clock, (i * 7919) as u16, (i as u32).wrapping_mul(104_729)),
                seqr: Sequencer::new(seq_slots, CACHE_MAX_AGE_US),
                stats: SenderStats::new(clock),
                ssrc: 0x1000_0000 + i as u32,
                twcc: 0,
            }
        })
        .collect()
}

/// The publisher's and the subscribers' extension ids.
const PUB_EXT: ExtIds = ExtIds { mid: PUB_MID, rid: 0, rrid: 0, audio_level: 0, twcc: PUB_TWCC, abs_send_time: PUB_ABS_SEND_TIME };
const SUB_EXT: ExtIds = ExtIds { mid: 0, rid: 0, rrid: 0, audio_level: 0, twcc: SUB_TWCC, abs_send_time: SUB_ABS_SEND_TIME };

/// The per-egress work for one down-track, through the engine's own per-subscriber step
/// (trackyard-core `downtrack`): layer verdict and munger, copy of `plain` into `out` with
/// the header rewritten, then protect, sequencer and statistics. Returns the protected
/// length, or 0 when the packet is not forwarded to this subscriber.
#[inline]
fn egress_one(sub: &mut Sub, src: Ingress, plain: &[u8], now_us: u64, out: &mut [u8]) -> usize {
    let Selected::Send { seq: out_seq, timestamp: out_ts, .. } =
        select(&mut sub.fwd, &mut sub.munger, 0, src.keyframe, src.ssrc, src.seq, src.ts, now_us)
    else {
        return 0;
    };
    let rw = Rewrite { ssrc: sub.ssrc, payload_type: 96, seq: out_seq, timestamp: out_ts, from_ext: &PUB_EXT };
    let len = rewrite_rtp(out, plain, &rw, &SUB_EXT, Some(&mut sub.twcc), now_us).expect("valid RTP");
    let n = sub.ctx.protect_rtp(out, len).expect("protect");
    sub.seqr.record(
        out_seq,
        SentPacket {
            src_ssrc: src.ssrc,
            src_seq: src.seq,
            timestamp: out_ts,
        },
        now_us,
    );
    sub.stats.on_packet(out_ts, src.payload_len, n, now_us);
    n
}

struct FanoutResult {
    profile: SrtpProfile,
    size: usize,
    n: usize,
    /// thread-CPU µs per egress packet (median of REPS)
    us_per_egress: f64,
    spread: f64,
    wall_us_per_egress: f64,
    egress: u64,
}

/// Returns ((CPU µs, wall µs) per egress packet, egress packets).
fn fanout_once(
    profile: SrtpProfile,
    size: usize,
    n: usize,
    target: u64,
    max: Duration,
) -> ((f64, f64), u64) {
    let mut publisher = context(profile, 7);
    let mut rx = context(profile, 7);
    let video = size > 200;
    let mut source = Source::new(video);
    let mut subs = subscribers(profile, n, video);
    let template = plain_packet(size, 0, 0);
    let per_batch = (4096 / n).clamp(4, 256);
    let mut ring: Vec<Vec<u8>> = (0..per_batch)
        .map(|_| Vec::with_capacity(size + 32))
        .collect();
    let mut out: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; size + 32]).collect();
    let mut seq = 0u16;
    let mut ingress = 0u64;
    let mut egress = 0u64;
    let mut slot = 0usize;
    let mut timer = Timer::default();
    let start = Instant::now();
    while egress < target && start.elapsed() < max {
        for b in ring.iter_mut() {
            make_ingress(&mut publisher, &template, seq, b);
            seq = seq.wrapping_add(1);
        }
        timer.time(|| {
            for b in ring.iter_mut() {
                let plain_len = rx.unprotect_rtp(b).expect("unprotect");
                let plain = &b[..plain_len];
                let now_us = ingress * 1000;
                ingress += 1;
                let src = source.on_packet(plain, now_us);
                for sub in subs.iter_mut() {
                    let o = &mut out[slot];
                    slot = (slot + 1) % BATCH;
                    let len = egress_one(sub, src, plain, now_us, o);
                    egress += u64::from(len > 0);
                    black_box(&o[..len]);
                }
            }
        });
    }
    assert_eq!(egress, ingress * n as u64, "a down-track dropped packets");
    (timer.per(egress), egress)
}

fn run_fanout(cfg: &Config) -> Vec<FanoutResult> {
    let target = if cfg.quick { 20_000 } else { 300_000 };
    let max = Duration::from_millis(if cfg.quick { 300 } else { 3000 });
    let mut out = Vec::new();
    for (profile, size) in [
        (SrtpProfile::AeadAes128Gcm, 1200usize),
        (SrtpProfile::Aes128CmHmacSha1_80, 1200),
        (SrtpProfile::AeadAes128Gcm, 100),
        (SrtpProfile::Aes128CmHmacSha1_80, 100),
    ] {
        for n in [1usize, 10, 100, 1000] {
            let (mut v, mut w) = (Vec::new(), Vec::new());
            let mut egress = 0;
            for _ in 0..REPS {
                let (us, e) = fanout_once(profile, size, n, target, max);
                v.push(us.0);
                w.push(us.1);
                egress += e;
            }
            let (us_per_egress, spread) = median_spread(v);
            let wall_us_per_egress = median_spread(w).0;
            eprintln!(
                "  fan-out {:<24} {:>5} B N={:<5}: {:.3} µs/egress",
                profile_short(profile),
                size,
                n,
                us_per_egress
            );
            out.push(FanoutResult {
                profile,
                size,
                n,
                us_per_egress,
                spread,
                wall_us_per_egress,
                egress,
            });
        }
    }
    out
}

// ---------------------------------------------------------------- (c) batched UDP IO

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr = libc::in_addr {
        s_addr: u32::from(*a.ip()).to_be(),
    };
    s
}

/// Sets a socket buffer size: the `*FORCE` variant first (root may exceed net.core.*mem_max),
/// then the plain option, capped by the sysctl.
fn set_buf(sock: &UdpSocket, opt: libc::c_int, bytes: libc::c_int) {
    let force = match opt {
        libc::SO_RCVBUF => libc::SO_RCVBUFFORCE,
        _ => libc::SO_SNDBUFFORCE,
    };
    for o in [force, opt] {
        // SAFETY: setsockopt with an int option on a socket we own.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                o,
                &bytes as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// A sendmmsg batch: BATCH buffers with their iovecs and headers, destinations set per send.
struct SendBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    dests: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

impl SendBatch {
    fn new(buf_size: usize) -> Self {
        SendBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; buf_size]).collect(),
            lens: vec![0; BATCH],
            // SAFETY: all-zero sockaddr_in / iovec / mmsghdr are valid placeholders.
            dests: vec![unsafe { std::mem::zeroed() }; BATCH],
            iovs: vec![unsafe { std::mem::zeroed() }; BATCH],
            hdrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            n: 0,
        }
    }

    /// Sends the queued packets; returns how many the kernel took.
    fn flush(&mut self, fd: libc::c_int) -> u64 {
        let count = self.n;
        self.n = 0;
        if count == 0 {
            return 0;
        }
        for i in 0..count {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.lens[i],
            };
            // SAFETY: zeroed msghdr then pointers into vectors that outlive the call.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = &mut self.dests[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            self.hdrs[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        let mut sent = 0usize;
        let mut tries = 0;
        while sent < count && tries < 1000 {
            tries += 1;
            // SAFETY: hdrs[sent..count] point at live buffers, iovecs and addresses.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOBUFS) => continue,
                    _ => panic!("sendmmsg: {e}"),
                }
            }
            sent += r as usize;
        }
        sent as u64
    }
}

/// A recvmmsg batch.
struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new(buf_size: usize) -> Self {
        let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; buf_size]).collect();
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let hdrs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: zeroed msghdr with one iovec we own.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_iov = iov;
                h.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        RecvBatch { bufs, iovs, hdrs }
    }

    /// Receives up to BATCH datagrams; Ok(0) on timeout or nothing pending.
    fn recv(&mut self, fd: libc::c_int, flags: libc::c_int) -> usize {
        for (h, iov) in self.hdrs.iter_mut().zip(self.iovs.iter()) {
            h.msg_len = 0;
            h.msg_hdr.msg_iov = iov as *const _ as *mut _;
        }
        // SAFETY: hdrs point at buffers owned by self.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => 0,
                _ => panic!("recvmmsg: {e}"),
            }
        } else {
            r as usize
        }
    }

    fn len(&self, i: usize) -> usize {
        self.hdrs[i].msg_len as usize
    }
}

struct IoResult {
    pace: Option<Pace>,
    profile: SrtpProfile,
    gso: bool,
    messages: u64,
    size: usize,
    n: usize,
    ingress: u64,
    egress: u64,
    delivered: u64,
    wall_s: f64,
    egress_pps: f64,
    process_cpu_us: f64,
    fwd_cpu_us: f64,
    sender_cpu_s: f64,
    fwd_cpu_s: f64,
    sink_cpu_s: f64,
    process_cpu_s: f64,
    hit_time_limit: bool,
}

/// One kind of ingress stream in a paced load: in every room, `per_room` streams, each sending
/// `burst` packets of `size` bytes `per_s` times a second, forwarded to every sink of its room
/// (`forwarded`) or to none (a simulcast layer nobody asked for: received and processed only).
#[derive(Clone, Copy)]
struct Class {
    per_room: usize,
    size: usize,
    per_s: u32,
    burst: usize,
    forwarded: bool,
}

/// Ingress at a preset's pace instead of as fast as the forwarder takes it (section d): `rooms`
/// rooms, each with its own N sinks and the streams of `classes`, for `secs`.
#[derive(Clone)]
struct Pace {
    label: &'static str,
    /// the `trackyard bench` preset the row stands for (`--paced` selects by it)
    preset: &'static str,
    secs: f64,
    rooms: usize,
    classes: Vec<Class>,
}

/// One ingress stream as the sender and the forwarder see it.
struct StreamPlan {
    size: usize,
    /// bursts per second; 0: unpaced, as fast as the forwarder takes packets (section c)
    per_s: u32,
    burst: usize,
    packets: u64,
    /// the sinks it is forwarded to
    sinks: std::ops::Range<usize>,
}

/// The streams of a run and how many sinks it has: unpaced, one stream to `n` sinks;
/// paced, every class's streams in every room, SSRC `PUB_SSRC + index`.
fn stream_plans(pace: Option<&Pace>, size: usize, n: usize, target_egress: u64) -> (Vec<StreamPlan>, usize) {
    let Some(p) = pace else {
        let packets = target_egress.div_ceil(n as u64).max(50);
        return (vec![StreamPlan { size, per_s: 0, burst: 32, packets, sinks: 0..n }], n);
    };
    let mut plans = Vec::new();
    for room in 0..p.rooms {
        for c in &p.classes {
            for _ in 0..c.per_room {
                plans.push(StreamPlan {
                    size: c.size,
                    per_s: c.per_s,
                    burst: c.burst,
                    packets: (c.per_s as f64 * p.secs) as u64 * c.burst as u64,
                    sinks: if c.forwarded { room * n..(room + 1) * n } else { 0..0 },
                });
            }
        }
    }
    (plans, p.rooms * n)
}

/// The forwarder's state for one ingress stream: its publisher's context, the once-per-ingress
/// state and one down-track per sink it goes to.
struct FwdStream {
    rx: SrtpContext,
    source: Source,
    subs: Vec<Sub>,
    first_sink: usize,
}

fn io_once(
    profile: SrtpProfile,
    gso: bool,
    size: usize,
    n: usize,
    target_egress: u64,
    max: Duration,
    pace: Option<Pace>,
) -> IoResult {
    let lo = Ipv4Addr::LOCALHOST;
    let fwd_sock = UdpSocket::bind(SocketAddrV4::new(lo, 0)).expect("bind forwarder");
    set_buf(&fwd_sock, libc::SO_RCVBUF, 8 << 20);
    set_buf(&fwd_sock, libc::SO_SNDBUF, 4 << 20);
    fwd_sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let fwd_addr = match fwd_sock.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    let (plans, total_sinks) = stream_plans(pace.as_ref(), size, n, target_egress);
    let sinks: Vec<UdpSocket> = (0..total_sinks)
        .map(|_| {
            let s = UdpSocket::bind(SocketAddrV4::new(lo, 0)).expect("bind sink");
            s.set_nonblocking(true).unwrap();
            set_buf(
                &s,
                libc::SO_RCVBUF,
                if total_sinks <= 10 { 16 << 20 } else { 1 << 20 },
            );
            s
        })
        .collect();
    let sink_addrs: Vec<std::net::SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
    let ingress_target: u64 = plans.iter().map(|p| p.packets).sum();
    let paced = pace.is_some();
    // what the sender needs of the plans (they stay with the forwarder)
    let sends: Vec<(usize, u32, usize, u64)> = plans.iter().map(|p| (p.size, p.per_s, p.burst, p.packets)).collect();
    let processed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(3));
    let deadline_after = max;

    let cpu0 = rusage(libc::RUSAGE_SELF);

    // sender ("publisher"): protects and sends, at most WINDOW packets ahead of the forwarder
    let sender = {
        let processed = processed.clone();
        let stop = stop.clone();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind(SocketAddrV4::new(lo, 0)).expect("bind sender");
            set_buf(&sock, libc::SO_SNDBUF, 4 << 20);
            let fd = sock.as_raw_fd();
            let largest = sends.iter().map(|s| s.0).max().unwrap_or(size);
            // per stream: its publisher's context, its packet template, packets sent so far
            let mut streams: Vec<(SrtpContext, Vec<u8>, u64)> = sends
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut template = plain_packet(s.0, 0, 0);
                    template[8..12].copy_from_slice(&(PUB_SSRC + i as u32).to_be_bytes());
                    (context(profile, 7 + i as u32), template, 0)
                })
                .collect();
            let mut batch = SendBatch::new(largest + 64);
            let mut scratch = Vec::with_capacity(largest + 64);
            let dest = sockaddr(fwd_addr);
            // paced: each stream's next burst, staggered within its period (publishers are
            // not in step); stream 0 starts at once
            let mut due: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>> = sends
                .iter()
                .enumerate()
                .filter(|(_, s)| s.1 > 0)
                .map(|(i, s)| std::cmp::Reverse((((i as f64 * 0.618_034) % 1.0 * 1e9 / s.1 as f64) as u64, i)))
                .collect();
            barrier.wait();
            let c0 = thread_cpu();
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < ingress_target
                && !stop.load(Ordering::Relaxed)
                && start.elapsed() < deadline_after
            {
                batch.n = 0;
                if paced {
                    // paced: the bursts on schedule, whatever the forwarder is doing; those due
                    // together leave in one sendmmsg
                    let Some(&std::cmp::Reverse((at_ns, _))) = due.peek() else { break };
                    let wait = Duration::from_nanos(at_ns).saturating_sub(start.elapsed());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                    let now_ns = start.elapsed().as_nanos() as u64;
                    while let Some(&std::cmp::Reverse((at_ns, i))) = due.peek() {
                        let (_, per_s, burst, packets) = sends[i];
                        if at_ns > now_ns || batch.n + burst > BATCH {
                            break;
                        }
                        due.pop();
                        let (tx, template, done) = &mut streams[i];
                        let k = burst.min((packets - *done) as usize);
                        for j in 0..k {
                            make_ingress(tx, template, (*done + j as u64) as u16, &mut scratch);
                            let b = batch.n + j;
                            batch.bufs[b][..scratch.len()].copy_from_slice(&scratch);
                            batch.lens[b] = scratch.len();
                            batch.dests[b] = dest;
                        }
                        batch.n += k;
                        *done += k as u64;
                        if *done < packets {
                            due.push(std::cmp::Reverse((at_ns + 1_000_000_000 / u64::from(per_s), i)));
                        }
                    }
                } else {
                    let room = (processed.load(Ordering::Acquire) + WINDOW).saturating_sub(sent);
                    if room < 16 {
                        std::thread::sleep(Duration::from_micros(20));
                        continue;
                    }
                    let k = (room as usize).min(32).min((ingress_target - sent) as usize);
                    let (tx, template, done) = &mut streams[0];
                    for i in 0..k {
                        make_ingress(tx, template, (*done + i as u64) as u16, &mut scratch);
                        batch.bufs[i][..scratch.len()].copy_from_slice(&scratch);
                        batch.lens[i] = scratch.len();
                        batch.dests[i] = dest;
                    }
                    batch.n = k;
                    *done += k as u64;
                }
                sent += batch.flush(fd);
            }
            (thread_cpu() - c0, sent)
        })
    };

    // sinks: one thread draining every sink socket via epoll
    let sink = {
        let stop = stop.clone();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            // SAFETY: plain epoll calls on fds owned by `sinks`, which this thread holds.
            let ep = unsafe { libc::epoll_create1(0) };
            assert!(ep >= 0);
            for (i, s) in sinks.iter().enumerate() {
                let mut ev = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: i as u64,
                };
                let rc =
                    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
                assert_eq!(rc, 0);
            }
            let mut rb = RecvBatch::new(2048);
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
            barrier.wait();
            let c0 = thread_cpu();
            let start = Instant::now();
            let mut got = 0u64;
            let mut idle_after_stop = 0;
            while start.elapsed() < deadline_after + Duration::from_secs(1) {
                let k =
                    unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 20) };
                if k <= 0 {
                    if stop.load(Ordering::Acquire) {
                        idle_after_stop += 1;
                        if idle_after_stop >= 2 {
                            break;
                        }
                    }
                    continue;
                }
                for ev in &events[..k as usize] {
                    let fd = sinks[ev.u64 as usize].as_raw_fd();
                    for _ in 0..64 {
                        let r = rb.recv(fd, libc::MSG_DONTWAIT);
                        got += r as u64;
                        if r < BATCH {
                            break;
                        }
                    }
                }
            }
            unsafe { libc::close(ep) };
            (thread_cpu() - c0, got)
        })
    };

    // the forwarder, on this thread
    let fd = fwd_sock.as_raw_fd();
    let mut streams: Vec<FwdStream> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| FwdStream {
            rx: context(profile, 7 + i as u32),
            source: Source::new(p.size > 200),
            subs: subscribers(profile, p.sinks.len(), p.size > 200),
            first_sink: p.sinks.start,
        })
        .collect();
    let mut rb = RecvBatch::new(2048);
    let mut sq = SendQueue::new(gso);
    let mut ingress = 0u64;
    let mut egress = 0u64;
    barrier.wait();
    let c0 = thread_cpu();
    let start = Instant::now();
    let mut hit_time_limit = false;
    while ingress < ingress_target {
        if start.elapsed() >= max {
            hit_time_limit = true;
            break;
        }
        let k = rb.recv(fd, libc::MSG_WAITFORONE);
        for i in 0..k {
            let len = rb.len(i);
            let pkt = &mut rb.bufs[i][..len];
            let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
            let s = &mut streams[ssrc.wrapping_sub(PUB_SSRC) as usize];
            let plain_len = s.rx.unprotect_rtp(pkt).expect("unprotect");
            let now_us = ingress * 1000;
            let src = s.source.on_packet(&rb.bufs[i][..plain_len], now_us);
            for (j, sub) in s.subs.iter_mut().enumerate() {
                let plain = &rb.bufs[i][..plain_len];
                let out_len = egress_one(sub, src, plain, now_us, sq.slot(&fwd_sock));
                if out_len > 0 {
                    sq.push(out_len, &sink_addrs[s.first_sink + j]);
                }
            }
            ingress += 1;
        }
        sq.flush(&fwd_sock);
        egress = sq.sent;
        processed.store(ingress, Ordering::Release);
    }
    let wall_s = start.elapsed().as_secs_f64();
    let fwd_cpu_s = thread_cpu() - c0;
    stop.store(true, Ordering::Release);
    let (sender_cpu_s, _sent) = sender.join().expect("sender");
    let (sink_cpu_s, delivered) = sink.join().expect("sink");
    let process_cpu_s = rusage(libc::RUSAGE_SELF) - cpu0;
    IoResult {
        pace,
        profile,
        gso: sq.gso(),
        messages: sq.messages,
        size,
        n,
        ingress,
        egress,
        delivered,
        wall_s,
        egress_pps: egress as f64 / wall_s,
        process_cpu_us: process_cpu_s * 1e6 / egress.max(1) as f64,
        fwd_cpu_us: fwd_cpu_s * 1e6 / egress.max(1) as f64,
        sender_cpu_s,
        fwd_cpu_s,
        sink_cpu_s,
        process_cpu_s,
        hit_time_limit,
    }
}

fn run_io(cfg: &Config) -> Vec<IoResult> {
    let target = if cfg.quick { 20_000 } else { 400_000 };
    let max = Duration::from_secs(if cfg.quick { 2 } else { 10 });
    let mut out = Vec::new();
    for (profile, size) in [
        (SrtpProfile::AeadAes128Gcm, 1200usize),
        (SrtpProfile::Aes128CmHmacSha1_80, 1200),
        (SrtpProfile::AeadAes128Gcm, 100),
    ] {
        for (n, gso) in [1usize, 10, 100, 1000].into_iter().flat_map(|n| [(n, false), (n, true)]) {
            let r = io_once(profile, gso, size, n, target, max, None);
            eprintln!(
                "  io {:<24} {:>5} B N={:<5} {}: {:.0} egress pkt/s, process {:.2} µs/egress, forwarder {:.2} µs/egress, delivered {:.2}%{}",
                profile_short(profile),
                size,
                n,
                if r.gso { "gso" } else { "mmsg" },
                r.egress_pps,
                r.process_cpu_us,
                r.fwd_cpu_us,
                r.delivered as f64 * 100.0 / r.egress.max(1) as f64,
                if r.hit_time_limit { " (time limit)" } else { "" }
            );
            out.push(r);
        }
    }
    out
}

/// (d): the fan-out at the pace of `trackyard bench` presets, GSO on (the engine's default),
/// with the packet counts and sizes the load generator sends (delta frames; its keyframe every
/// 3 s adds ~2 % of the video packets). The audio room's 10 Opus-like streams of 50 packets/s
/// as one 100 B packet every 2 ms; the livestream's forwarded 720p layer (1.7 Mbit/s at 30 fps:
/// 7 packets of 1200 B per frame); the join storm's one audio stream to 500; the small rooms'
/// 50 rooms of 4 subscribers with 2 audio streams and 2 simulcast publishers each (360p layer
/// forwarded, 180p layer received only); the meeting's 25 audio streams, 1 speaker in 720p and
/// 5 tiles in 180p forwarded to 25 subscribers, the other 69 layers received only. The
/// forwarder thread's CPU per egress packet is the floor for that load: below saturation each
/// receive batch is smaller, so sends coalesce less and wake-ups cost more per packet.
fn run_paced(cfg: &Config) -> Vec<IoResult> {
    let secs = if cfg.quick { 2.0 } else { 10.0 };
    let class = |per_room, size, per_s, burst, forwarded| Class { per_room, size, per_s, burst, forwarded };
    let mix = |label, preset, rooms, classes| Pace { label, preset, secs, rooms, classes };
    let audio = mix("audio room", "audio-room", 1, vec![class(1, 100, 500, 1, true)]);
    let video = mix("livestream", "livestream", 1, vec![class(1, 1200, 30, 7, true)]);
    let storm = mix("join storm", "join-storm", 1, vec![class(1, 100, 50, 1, true)]);
    // the load generator's streams per room: Opus-like audio (100 B, 50/s) and the layers q
    // 180p 150 kbit/s at 15 fps (2 packets of 653 B), h 360p 500 kbit/s at 30 fps (2 of
    // 1069 B), f 720p 1.7 Mbit/s at 30 fps (7 of 1039 B)
    let opus = |n, fwd| class(n, 100, 50, 1, fwd);
    let (q, h, f) = (|n, fwd| class(n, 653, 15, 2, fwd), |n, fwd| class(n, 1069, 30, 2, fwd),
                     |n, fwd| class(n, 1039, 30, 7, fwd));
    let small = mix("small rooms", "small-rooms", 50, vec![opus(2, true), h(2, true), q(2, false)]);
    let meeting = mix("meeting", "meeting", 1, vec![opus(25, true), f(1, true), q(5, true), q(20, false),
                                                    h(25, false), f(24, false)]);
    let mut out = Vec::new();
    let rows = [(audio.clone(), 400usize), (audio, 800), (video.clone(), 500), (video, 1000), (storm, 500),
                (small, 4), (meeting, 25)];
    let chosen = rows.into_iter().filter(|(p, _)| cfg.paced.is_empty() || cfg.paced.iter().any(|k| k == p.preset));
    for (pace, n) in chosen {
        let max = Duration::from_secs_f64(secs + 3.0);
        let (label, size, rooms, streams) = (pace.label, pace.classes[0].size, pace.rooms,
                                             pace.rooms * pace.classes.iter().map(|c| c.per_room).sum::<usize>());
        let r = io_once(SrtpProfile::AeadAes128Gcm, true, size, n, 0, max, Some(pace));
        eprintln!(
            "  paced {:<11} {} stream(s), {} room(s) of N={:<5}: {:.0} egress pkt/s, {:.1} datagrams/message, forwarder {:.2} µs/egress, delivered {:.2}%{}",
            label,
            streams,
            rooms,
            n,
            r.egress_pps,
            r.egress as f64 / r.messages.max(1) as f64,
            r.fwd_cpu_us,
            r.delivered as f64 * 100.0 / r.egress.max(1) as f64,
            if r.hit_time_limit { " (time limit)" } else { "" }
        );
        out.push(r);
    }
    out
}

/// The presets (d) has rows for.
const PACED_PRESETS: [&str; 5] = ["audio-room", "livestream", "join-storm", "small-rooms", "meeting"];

// ---------------------------------------------------------------- output

fn main() {
    let mut cfg = Config {
        quick: false,
        out: concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../bench/out/forward_bench.json"
        )
        .into(),
        sections: "abcd".into(),
        paced: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => cfg.quick = true,
            "--out" => cfg.out = args.next().expect("--out PATH"),
            "--sections" => cfg.sections = args.next().expect("--sections abcd"),
            "--paced" => {
                let list = args.next().expect("--paced PRESET[,PRESET]");
                cfg.paced = list.split(',').map(str::to_string).collect();
                if let Some(bad) = cfg.paced.iter().find(|k| !PACED_PRESETS.contains(&k.as_str())) {
                    eprintln!("--paced: no (d) row stands for {bad:?}; one of {}", PACED_PRESETS.join(", "));
                    std::process::exit(2);
                }
            }
            "-h" | "--help" => {
                println!("forward_bench [--quick] [--out PATH] [--sections abcd] [--paced PRESET[,PRESET]]");
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let commit = std::env::var("TRACKYARD_COMMIT").ok().unwrap_or_else(|| {
        std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    });
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = cpu_model();
    let load_before = loadavg();
    eprintln!("forward_bench: commit {commit}, {date}, {model}, {cpus} CPUs, load {load_before}");

    let floor = if cfg.sections.contains('a') {
        run_floor(&cfg)
    } else {
        Vec::new()
    };
    let fanout = if cfg.sections.contains('b') {
        run_fanout(&cfg)
    } else {
        Vec::new()
    };
    let io = if cfg.sections.contains('c') {
        run_io(&cfg)
    } else {
        Vec::new()
    };
    let paced = if cfg.sections.contains('d') {
        run_paced(&cfg)
    } else {
        Vec::new()
    };
    let load_after = loadavg();

    // markdown
    let mut md = String::new();
    let _ = writeln!(md, "commit `{commit}`, {date}, {model} ({cpus} CPUs), load average before/after: {load_before} / {load_after}{}", if cfg.quick { ", **--quick**" } else { "" });
    if !floor.is_empty() {
        let _ = writeln!(md, "\n**(a) Crypto floor** — SRTP protect / unprotect of one RTP packet in place, keys set once, one thread; thread CPU time (median of {REPS}; spread = (max−min)/median; wall time in the JSON)\n");
        let _ = writeln!(
            md,
            "| profile | packet | protect µs/pkt | protect pkt/s | unprotect µs/pkt | spread p/u |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for r in &floor {
            let _ = writeln!(
                md,
                "| {} | {} B | {:.3} | {:.2} M | {:.3} | {:.0}% / {:.0}% |",
                profile_short(r.profile),
                r.size,
                r.protect_us,
                1.0 / r.protect_us,
                r.unprotect_us,
                r.protect_spread,
                r.unprotect_spread
            );
        }
    }
    if !fanout.is_empty() {
        let _ = writeln!(md, "\n**(b) Fan-out without IO** — the engine's RTP path from core pieces: once per ingress packet unprotect, parse, receive stats, NACK tracking (video), RTX-cache copy, keyframe check; per subscriber layer verdict, Munger, copy, header rewrite (SSRC/seq/ts/PT, extension remap, transport-wide seq, abs-send-time), protect with the subscriber's context, sequencer record, sender stats. Thread-CPU µs per egress packet, one thread (median of {REPS}); 1200 B = video, 100 B = audio\n");
        let _ = writeln!(
            md,
            "| profile | packet | N=1 | N=10 | N=100 | N=1000 | N=1000 ÷ protect floor |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        let mut keys: Vec<(SrtpProfile, usize)> = Vec::new();
        for r in &fanout {
            if !keys.contains(&(r.profile, r.size)) {
                keys.push((r.profile, r.size));
            }
        }
        for (p, s) in keys {
            let row: Vec<&FanoutResult> = fanout
                .iter()
                .filter(|r| r.profile == p && r.size == s)
                .collect();
            let cell = |n: usize| {
                row.iter()
                    .find(|r| r.n == n)
                    .map_or("–".to_string(), |r| format!("{:.3}", r.us_per_egress))
            };
            let ratio = floor
                .iter()
                .find(|f| f.profile == p && f.size == s)
                .zip(row.iter().find(|r| r.n == 1000))
                .map_or("–".to_string(), |(f, r)| {
                    format!("{:.2}×", r.us_per_egress / f.protect_us)
                });
            let _ = writeln!(
                md,
                "| {} | {} B | {} | {} | {} | {} | {} |",
                profile_short(p),
                s,
                cell(1),
                cell(10),
                cell(100),
                cell(1000),
                ratio
            );
        }
    }
    if !io.is_empty() {
        let _ = writeln!(md, "\n**(c) Batched UDP IO on 127.0.0.1** — sender thread → forwarder (recvmmsg ×{BATCH}, (b), the engine's send queue: sendmmsg, or sendmmsg of per-sink UDP GSO messages) → N sink sockets drained by one epoll thread. **Sender, forwarder and sinks share the 2 cores**, and on loopback the sending thread also pays the receive path; CPU from getrusage (user+sys)\n");
        let _ = writeln!(md, "| profile | packet | N | send | egress pkt/s | datagrams per message | process CPU µs/egress | forwarder thread CPU µs/egress | CPU s sender / fwd / sinks | delivered |");
        let _ = writeln!(md, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
        for r in &io {
            let _ =
                writeln!(
                md,
                "| {} | {} B | {} | {} | {:.0} k | {:.1} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} | {:.1}%{} |",
                profile_short(r.profile),
                r.size,
                r.n,
                if r.gso { "GSO" } else { "sendmmsg" },
                r.egress_pps / 1e3,
                r.egress as f64 / r.messages.max(1) as f64,
                r.process_cpu_us,
                r.fwd_cpu_us,
                r.sender_cpu_s,
                r.fwd_cpu_s,
                r.sink_cpu_s,
                r.delivered as f64 * 100.0 / r.egress.max(1) as f64,
                if r.hit_time_limit { " (time limit)" } else { "" }
            );
        }
    }
    if !paced.is_empty() {
        let _ = writeln!(md, "\n**(d) Paced like the presets** — (c) with GSO and AEAD-AES-128-GCM, the ingress sent at a `trackyard bench` preset's pace for {:.0} s instead of as fast as the forwarder takes it: audio room = one 100 B packet every 2 ms (10 streams × 50/s), livestream = 7 packets of 1200 B per frame at 30 fps (the forwarded 720p layer), join storm = one 100 B packet every 20 ms, small rooms = 50 rooms of 4 sinks, each fed by 2 audio streams and 2 publishers' 360p (forwarded) and 180p (not) layers, meeting = 25 audio streams, one 720p and five 180p layers to 25 sinks and 69 layers received only. N is per room. The forwarder thread's CPU per egress packet is the floor at that load\n", paced[0].pace.as_ref().map_or(0.0, |p| p.secs));
        let _ = writeln!(md, "| load | packet | N | egress pkt/s | datagrams per message | forwarder thread CPU µs/egress | forwarder CPU % of a core | delivered |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &paced {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} k | {:.1} | {:.2} | {:.0} | {:.1}%{} |",
                r.pace.as_ref().map_or("", |p| p.label),
                r.pace.as_ref().filter(|p| p.classes.len() > 1).map_or(format!("{} B", r.size), |_| "mixed".into()),
                r.n,
                r.egress_pps / 1e3,
                r.egress as f64 / r.messages.max(1) as f64,
                r.fwd_cpu_us,
                r.fwd_cpu_s * 100.0 / r.wall_s.max(1e-9),
                r.delivered as f64 * 100.0 / r.egress.max(1) as f64,
                if r.hit_time_limit { " (time limit)" } else { "" }
            );
        }
    }
    print!("{md}");

    // JSON
    let mut j = String::new();
    let _ = write!(
        j,
        "{{\n  \"commit\": {},\n  \"date\": {},\n  \"cpu_model\": {},\n  \"cpus\": {cpus},\n  \"quick\": {},\n  \"loadavg_before\": {},\n  \"loadavg_after\": {},\n  \"batch\": {BATCH},\n  \"reps\": {REPS},\n",
        json_str(&commit),
        json_str(&date),
        json_str(&model),
        cfg.quick,
        json_str(&load_before),
        json_str(&load_after)
    );
    let rows: Vec<String> = floor
        .iter()
        .map(|r| {
            format!(
                "    {{\"profile\": {}, \"size\": {}, \"protect_us_per_pkt\": {:.4}, \"protect_pps\": {:.0}, \"protect_spread_pct\": {:.1}, \"protect_wall_us_per_pkt\": {:.4}, \"unprotect_us_per_pkt\": {:.4}, \"unprotect_spread_pct\": {:.1}, \"unprotect_wall_us_per_pkt\": {:.4}}}",
                json_str(r.profile.name()), r.size, r.protect_us, 1e6 / r.protect_us, r.protect_spread, r.protect_wall_us, r.unprotect_us, r.unprotect_spread, r.unprotect_wall_us
            )
        })
        .collect();
    let _ = write!(j, "  \"crypto_floor\": [\n{}\n  ],\n", rows.join(",\n"));
    let rows: Vec<String> = fanout
        .iter()
        .map(|r| {
            format!(
                "    {{\"profile\": {}, \"size\": {}, \"subscribers\": {}, \"us_per_egress_pkt\": {:.4}, \"egress_pps_one_core\": {:.0}, \"spread_pct\": {:.1}, \"wall_us_per_egress_pkt\": {:.4}, \"egress_packets\": {}}}",
                json_str(r.profile.name()), r.size, r.n, r.us_per_egress, 1e6 / r.us_per_egress, r.spread, r.wall_us_per_egress, r.egress
            )
        })
        .collect();
    let _ = write!(j, "  \"fanout_no_io\": [\n{}\n  ],\n", rows.join(",\n"));
    let io_json = |io: &[IoResult]| -> Vec<String> { io
        .iter()
        .map(|r| {
            format!(
                "    {{\"pace\": {}, \"profile\": {}, \"gso\": {}, \"messages\": {}, \"size\": {}, \"subscribers\": {}, \"ingress_packets\": {}, \"egress_packets\": {}, \"delivered_packets\": {}, \"wall_s\": {:.3}, \"egress_pps\": {:.0}, \"cpu_us_per_egress_pkt_process\": {:.3}, \"cpu_us_per_egress_pkt_forwarder\": {:.3}, \"cpu_s_sender\": {:.3}, \"cpu_s_forwarder\": {:.3}, \"cpu_s_sinks\": {:.3}, \"cpu_s_process\": {:.3}, \"hit_time_limit\": {}}}",
                r.pace.as_ref().map_or("null".to_string(), |p| {
                    let classes: Vec<String> = p.classes.iter().map(|c| format!(
                        "{{\"streams_per_room\": {}, \"size\": {}, \"bursts_per_s\": {}, \"burst\": {}, \"forwarded\": {}}}",
                        c.per_room, c.size, c.per_s, c.burst, c.forwarded)).collect();
                    format!("{{\"load\": {}, \"preset\": {}, \"secs\": {}, \"rooms\": {}, \"classes\": [{}]}}",
                            json_str(p.label), json_str(p.preset), p.secs, p.rooms, classes.join(", "))
                }),
                json_str(r.profile.name()), r.gso, r.messages, r.size, r.n, r.ingress, r.egress, r.delivered, r.wall_s, r.egress_pps,
                r.process_cpu_us, r.fwd_cpu_us, r.sender_cpu_s, r.fwd_cpu_s, r.sink_cpu_s, r.process_cpu_s, r.hit_time_limit
            )
        })
        .collect() };
    let _ = write!(
        j,
        "  \"fanout_udp_loopback\": [\n{}\n  ],\n  \"fanout_udp_paced\": [\n{}\n  ]\n}}\n",
        io_json(&io).join(",\n"),
        io_json(&paced).join(",\n")
    );
    if let Some(dir) = std::path::Path::new(&cfg.out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&cfg.out, j) {
        Ok(()) => eprintln!("wrote {}", cfg.out),
        Err(e) => eprintln!("could not write {}: {e}", cfg.out),
    }
}
