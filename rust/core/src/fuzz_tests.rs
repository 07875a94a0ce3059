//! No parser may panic on any input. This feeds ~100k fixed-seed inputs to every entry point
//! that reads network data: pure random bytes, and valid packets of each kind truncated,
//! bit-flipped and byte-overwritten (which reaches far deeper than random bytes do). It also
//! drives the stateful pieces (SRTP contexts, munger, NACK tracker, builders) with random
//! arguments. In a debug build arithmetic overflow panics too, so this catches that as well.
//! The `cargo fuzz` targets are the open-ended version of this test.

use std::hint::black_box;

use crate::audio_level::AudioLevelMeter;
use crate::codec::{self, Codec};
use crate::congestion::TwccRecorder;
use crate::forwarder::{Forwarder, KeyframeRequester, LayerActivity};
use crate::munger::Munger;
use crate::nack::{NackConfig, NackTracker, RtxCache};
use crate::reports::{ReceiverStats, SenderStats};
use crate::rtcp::{self, RtcpPacket};
use crate::rtp::{self, RtpHeader, RtpHeaderMut};
use crate::sequencer::{SentPacket, Sequencer};
use crate::srtp::{SrtpContext, SrtpProfile};
use crate::stun::{self, StunMessage};
use crate::testutil::{hex, XorShift};

const ITERATIONS: usize = 100_000;

fn seeds(contexts: &mut [SrtpContext]) -> Vec<Vec<u8>> {
    let mut v = vec![
        // RTP: CSRC + one-byte extensions, two-byte extensions, padding
        hex("91ef1234 deadbeef 11223344 55667788 bede0003 11aabb00 3301020304 000000 cafe"),
        hex("90600001 00000001 00000002 10000002 0700c802 abcd0000 ff"),
        hex("a0600001 00000001 00000002 0102 000003"),
        // RTCP: SR with a block, RR, SDES, BYE, NACK, PLI, FIR, REMB, TWCC
        hex("81c8000c 00000001 01020304 05060708 00000009 0000000a 0000000b
             00000005 0cfffffd 00010005 0000004d aabbccdd 00010000"),
        hex("81c90007 00000001 00000002 00000003 00000004 00000005 00000006 00000007
             81ca0002 00000001 01017800 82cb0003 00000001 00000002 03627965"),
        hex("81cd0003 00000001 00000002 00648005 81ce0002 00000001 00000002
             84ce0004 00000003 00000000 00000004 05000000"),
        hex("8fce0005 00000001 00000000 52454d42 0117ffff 12345678"),
        hex("afcd0006 00000001 00000002 00640005 00000207 d250 04 fff8 01 02 01"),
        // STUN: RFC 5769 request and IPv6 response
        hex("000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"),
        hex("010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c"),
        // codec payloads
        hex("90e0812305401002009d012a80026801"),
        hex("a8923400 00"),
        hex("78000267 42000268 ce"),
        hex("7c8500"),
        hex("20021200 0a0b00"),
        hex("000132020a00"),
    ];
    // SRTP and SRTCP packets protected by each context (so flips land on real ciphertext)
    for ctx in contexts.iter_mut() {
        let mut p = hex("90600007 00000001 00000002 bede0001 10aa0000 0102030405060708");
        ctx.protect_rtp_vec(&mut p).unwrap();
        v.push(p);
        let mut r = hex("81c90001 00000002 81ce0002 00000002 00000001");
        ctx.protect_rtcp_vec(&mut r).unwrap();
        v.push(r);
    }
    v
}

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.below(4) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len() as u64) as usize;
        match rng.below(3) {
            0 => b[i] ^= 1 << rng.below(8),
            1 => b[i] = rng.next_u64() as u8,
            _ => b[i] = [0, 0xff, 0x7f, 0x80, 1][rng.below(5) as usize],
        }
    }
    if rng.chance(40) {
        b.truncate(rng.below(b.len() as u64 + 1) as usize);
    }
    if rng.chance(5) {
        let extra = rng.below(16) as usize;
        b.extend((0..extra).map(|_| rng.next_u64() as u8));
    }
    b
}

/// How many inputs each parser accepted: proof the mangled seeds reach past the first checks.
#[derive(Default, Debug)]
struct Depth {
    rtp: usize,
    rtcp: usize,
    stun: usize,
    keyframes: usize,
}

fn exercise_rtp(b: &[u8], d: &mut Depth) {
    let _ = black_box(rtp::header_len(b));
    if let Ok(h) = RtpHeader::parse(b) {
        d.rtp += 1;
        black_box((
            h.sequence(),
            h.timestamp(),
            h.ssrc(),
            h.marker(),
            h.payload_type(),
            h.padding_len(),
        ));
        black_box(h.csrcs().count() + h.extensions().count() + h.payload().len());
        black_box(h.extension(1));
    }
    let mut m = b.to_vec();
    if let Ok(mut h) = RtpHeaderMut::parse(&mut m) {
        let _ = h.rewrite_extension_ids(|id| (id % 14) + 1);
        if let Some(e) = h.extension_mut(2) {
            e.fill(0);
        }
        h.set_sequence(1);
        h.set_marker(true);
        black_box(h.remap_extensions(|id| id.wrapping_mul(7) % 16));
    }
    let mut m = b.to_vec();
    let len = m.len();
    if let Ok(n) = rtp::unwrap_rtx(&mut m, len, 7, 96) {
        assert!(n + 2 <= len);
        black_box(RtpHeader::parse(&m[..n]).is_ok());
    }
}

fn exercise_rtcp(b: &[u8], d: &mut Depth) {
    black_box(rtcp::is_rtcp(b));
    for p in rtcp::parse_compound(b).flatten() {
        d.rtcp += 1;
        match p {
            RtcpPacket::SenderReport(sr) => black_box(sr.blocks.count()),
            RtcpPacket::ReceiverReport(rr) => black_box(rr.blocks.count()),
            RtcpPacket::Bye(bye) => black_box(bye.ssrcs().count()),
            RtcpPacket::Nack(n) => black_box(n.lost().count()),
            RtcpPacket::Fir(f) => black_box(f.entries().count()),
            RtcpPacket::Remb(r) => black_box(r.ssrcs().count()),
            RtcpPacket::Twcc(t) => black_box(t.packets().count()),
            _ => 0,
        };
    }
}

fn exercise_stun(b: &[u8], d: &mut Depth) {
    black_box(stun::is_stun(b));
    if let Ok(m) = StunMessage::parse(b) {
        d.stun += 1;
        let _ = black_box((
            m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"),
            m.verify_fingerprint(),
        ));
        black_box((m.attributes().count(), m.username_parts()));
    }
}

fn exercise_codecs(b: &[u8], d: &mut Depth) {
    for c in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
        d.keyframes += usize::from(codec::is_keyframe(c, b) == Ok(true));
    }
    let _ = black_box((codec::vp8_descriptor(b), codec::vp8_keyframe_size(b)));
}

#[test]
fn parsers_never_panic_on_random_or_mangled_input() {
    let mut rng = XorShift::new(0x7ac4_4a2d);
    let profiles = [
        SrtpProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
    ];
    let mk = |p: SrtpProfile| {
        SrtpContext::new(p, &vec![3; p.key_len()], &vec![4; p.salt_len()]).unwrap()
    };
    let mut tx: Vec<SrtpContext> = profiles.iter().map(|&p| mk(p)).collect();
    let mut rx: Vec<SrtpContext> = profiles.iter().map(|&p| mk(p)).collect();
    let corpus = seeds(&mut tx);
    let mut accepted = 0;
    let mut depth = Depth::default();
    for i in 0..ITERATIONS {
        let b = if rng.chance(30) {
            let mut b = vec![0u8; rng.below(256) as usize];
            rng.fill(&mut b);
            if !b.is_empty() && rng.chance(50) {
                b[0] = [0x80, 0x90, 0xa0, 0x81, 0x00, 0x01][rng.below(6) as usize];
            }
            b
        } else {
            let seed = &corpus[rng.below(corpus.len() as u64) as usize];
            mutate(&mut rng, seed)
        };
        exercise_rtp(&b, &mut depth);
        exercise_rtcp(&b, &mut depth);
        exercise_stun(&b, &mut depth);
        exercise_codecs(&b, &mut depth);
        let ctx = &mut rx[i % 3];
        let mut buf = b.clone();
        if rtcp::is_rtcp(&b) {
            accepted += usize::from(ctx.unprotect_rtcp(&mut buf).is_ok());
        } else {
            accepted += usize::from(ctx.unprotect_rtp(&mut buf).is_ok());
        }
        let mut buf = b.clone();
        buf.resize(b.len() + 64, 0);
        let _ = black_box(tx[i % 3].protect_rtp(&mut buf, b.len()));
        let _ = black_box(tx[i % 3].protect_rtcp(&mut buf, b.len()));
    }
    // unmodified protected seeds get through (once each: replays are refused)
    assert!(accepted > 0 && accepted < ITERATIONS / 100, "{accepted}");
    let min = ITERATIONS / 50;
    assert!(
        depth.rtp > min && depth.rtcp > min && depth.stun > min && depth.keyframes > min,
        "{depth:?}"
    );
}

#[test]
fn stateful_pieces_never_panic_on_random_arguments() {
    let mut rng = XorShift::new(99);
    let mut munger = Munger::new(90_000, rng.next_u64() as u16, rng.next_u64() as u32);
    let mut tracker = NackTracker::new(NackConfig::default());
    let mut cache = RtxCache::new(64, 64, 1_000_000);
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    for _ in 0..ITERATIONS / 2 {
        let (ssrc, seq, ts) = (
            rng.below(3) as u32,
            rng.next_u64() as u16,
            rng.next_u64() as u32,
        );
        let now = if rng.chance(2) {
            rng.next_u64()
        } else {
            rng.below(10_000_000)
        };
        match rng.below(8) {
            0 => black_box(munger.forward(ssrc, seq, ts, now)),
            1 => {
                munger.drop_packet(ssrc, seq);
                continue;
            }
            2 => {
                munger.switch_source(ssrc);
                munger.pause();
                black_box(munger.allocate());
                continue;
            }
            3 => {
                tracker.on_packet(seq, now);
                continue;
            }
            4 => {
                out.clear();
                let shift = rng.below(64);
                tracker.poll(now, rng.next_u64() >> shift, &mut out);
                black_box(tracker.next_deadline(rng.next_u64()));
                continue;
            }
            5 => {
                let len = rng.below(100) as usize;
                cache.insert(seq, &buf[..len], now);
                let interval = rng.below(1000);
                let _ = black_box(cache.fetch_for_resend(seq ^ 1, now, interval));
                continue;
            }
            6 => {
                let n = rng.below(40);
                let seqs: Vec<u16> = (0..n).map(|_| rng.next_u64() as u16).collect();
                let _ = black_box(rtcp::write_nack(&mut buf, 1, 2, &seqs));
                let _ = black_box(rtcp::write_remb(&mut buf, 1, rng.next_u64(), &[1, 2]));
                continue;
            }
            _ => {
                let n = rng.below(40);
                let pkts: Vec<(u16, u64)> = (0..n)
                    .map(|_| {
                        let seq = rng.next_u64() as u16;
                        let shift = rng.below(64);
                        (seq, rng.next_u64() >> shift)
                    })
                    .collect();
                if let Ok((n, _)) = rtcp::write_twcc(&mut buf, 1, 2, 3, &pkts) {
                    let mut twcc = 0;
                    for p in rtcp::parse_compound(&buf[..n]) {
                        if let Ok(RtcpPacket::Twcc(t)) = p {
                            twcc += t.packets().count();
                        }
                    }
                    assert!(twcc > 0, "a built feedback parses back");
                }
                continue;
            }
        };
    }
}

#[test]
fn forwarding_state_never_panics_on_random_arguments() {
    let mut rng = XorShift::new(7);
    let mut activity = LayerActivity::new(1_500_000);
    let mut fwd = Forwarder::new(2);
    let mut pli = KeyframeRequester::new(500_000);
    let mut seqr = Sequencer::new(64, 1_000_000);
    let mut rx = ReceiverStats::new(90_000);
    let mut tx = SenderStats::new(48_000);
    let mut twcc = TwccRecorder::new(300);
    let mut level = AudioLevelMeter::new();
    let mut buf = [0u8; 1500];
    for _ in 0..ITERATIONS / 2 {
        let (a, b, c) = (rng.next_u64(), rng.next_u64(), rng.next_u64());
        let now = if rng.chance(2) { a } else { a % 100_000_000 };
        let layer = rng.below(5) as u8;
        match rng.below(10) {
            0 => {
                if activity.on_packet(layer, now) || activity.sweep(now) {
                    fwd.set_active_layers(activity.mask());
                }
            }
            1 => {
                fwd.set_max_layer(layer);
                fwd.set_active_layers(b as u8);
                fwd.reset_layer(layer);
                black_box(fwd.set_paused(c & 1 == 0));
            }
            2 => {
                black_box(fwd.on_packet(layer, b & 1 == 0));
                fwd.request_keyframe();
                if let Some(l) = fwd.keyframe_wanted() {
                    if pli.try_request(now) {
                        fwd.keyframe_requested(l);
                    }
                }
            }
            3 => {
                let sent = SentPacket {
                    src_ssrc: b as u32,
                    src_seq: c as u16,
                    timestamp: c as u32,
                };
                seqr.record(b as u16, sent, now);
                let _ = black_box(seqr.lookup_for_resend(c as u16, now, b % 1000));
            }
            4 => rx.on_packet(b as u16, c as u32, (b >> 48) as usize, now),
            5 => {
                rx.on_sender_report(b, now);
                black_box(rx.report_block(1, now));
                black_box((rx.jitter_us(), rx.cumulative_lost()));
            }
            6 => {
                tx.on_packet(b as u32, (c >> 50) as usize, (c >> 40) as usize, now);
                black_box(tx.sender_report(1, now, b));
            }
            7 => {
                let block = crate::rtcp::ReportBlock {
                    ssrc: 1,
                    fraction_lost: b as u8,
                    cumulative_lost: (b >> 8) as i32 >> 8,
                    highest_seq: c as u32,
                    jitter: (c >> 32) as u32,
                    last_sr: if b & 1 == 0 { 0 } else { (b >> 16) as u32 },
                    delay_since_last_sr: (b >> 32) as u32,
                };
                tx.on_report_block(&block, now);
                black_box(tx.jitter_us());
            }
            8 => {
                twcc.record(
                    b as u16,
                    if rng.chance(50) {
                        now
                    } else {
                        now % 10_000_000
                    },
                );
                if rng.chance(10) {
                    while let Ok(Some(n)) = twcc.write_feedback(&mut buf, 1, 2) {
                        black_box(n);
                    }
                }
            }
            _ => {
                level.on_extension(&b.to_be_bytes()[..(c % 3) as usize]);
                black_box(level.take());
            }
        }
    }
}
