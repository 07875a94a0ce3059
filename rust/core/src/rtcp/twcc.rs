//! Transport-wide congestion control feedback (RTPFB FMT 15),
//! draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1.
//!
//! Layout after the common feedback header: base sequence number (16), packet status count
//! (16), reference time (24, units of 64 ms), feedback packet count (8), packet status chunks
//! (16 bits each), receive deltas, zero padding. A chunk is either a run-length chunk
//! (`0 | symbol:2 | run:13`) or a status vector (`1 | 0 | 14 one-bit symbols` or
//! `1 | 1 | 7 two-bit symbols`). Symbols: 0 not received, 1 received with a one-byte delta
//! (0..=63.75 ms), 2 received with a two-byte signed delta, 3 reserved. Deltas count 250 µs.
//!
//! Parsing (through [`super::parse_compound`]) validates the whole packet, every chunk and
//! every delta, so [`TwccFeedback::packets`] iterates without errors. [`write_twcc`] builds
//! feedback from the arrival times of received packets.

use super::{be16, RtcpError, Writer, PT_RTPFB};

/// One packet's status in a feedback message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccPacket {
    /// Transport-wide sequence number.
    pub seq: u16,
    /// Arrival time in µs on the feedback sender's clock (reference time × 64 ms plus the
    /// accumulated deltas), or `None` when not received.
    pub arrival_us: Option<i64>,
}

/// A validated TWCC feedback message.
#[derive(Debug, Clone)]
pub struct TwccFeedback<'a> {
    /// SSRC of the feedback sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source (often unused).
    pub media_ssrc: u32,
    /// First sequence number covered.
    pub base_seq: u16,
    /// Number of sequence numbers covered.
    pub status_count: u16,
    /// Reference time in 64 ms units (24 bits, wraps).
    pub reference_time: u32,
    /// Feedback packet counter (wraps at 256).
    pub fb_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

/// Decodes status symbols from a chunk list, limited to `remaining` symbols.
#[derive(Debug, Clone)]
struct Symbols<'a> {
    chunks: &'a [u8],
    chunk: u16,
    left_in_chunk: u16,
    index_in_chunk: u16,
    remaining: u16,
}

impl<'a> Symbols<'a> {
    fn new(chunks: &'a [u8], count: u16) -> Self {
        Symbols {
            chunks,
            chunk: 0,
            left_in_chunk: 0,
            index_in_chunk: 0,
            remaining: count,
        }
    }

    /// Bytes of chunk data consumed so far.
    fn consumed(&self, total: usize) -> usize {
        total - self.chunks.len()
    }

    fn next_symbol(&mut self) -> Option<Result<u8, RtcpError>> {
        if self.remaining == 0 {
            return None;
        }
        // empty run chunks are legal but pointless: skip them (in a loop, not by recursion)
        while self.left_in_chunk == 0 {
            if self.chunks.len() < 2 {
                return Some(Err(RtcpError::Malformed));
            }
            self.chunk = be16(self.chunks, 0);
            self.chunks = &self.chunks[2..];
            self.index_in_chunk = 0;
            self.left_in_chunk = match self.chunk >> 14 {
                0 | 1 => self.chunk & 0x1FFF,
                2 => 14,
                _ => 7,
            };
        }
        let i = self.index_in_chunk;
        let sym = match self.chunk >> 14 {
            0 | 1 => ((self.chunk >> 13) & 0x3) as u8,
            2 => ((self.chunk >> (13 - i)) & 0x1) as u8,
            _ => ((self.chunk >> (12 - 2 * i)) & 0x3) as u8,
        };
        self.index_in_chunk += 1;
        self.left_in_chunk -= 1;
        self.remaining -= 1;
        if sym == 3 {
            return Some(Err(RtcpError::Malformed));
        }
        Some(Ok(sym))
    }
}

impl<'a> TwccFeedback<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 16 {
            return Err(RtcpError::Malformed);
        }
        let status_count = be16(body, 10);
        let rest = &body[16..];
        let mut symbols = Symbols::new(rest, status_count);
        let mut delta_bytes = 0usize;
        while let Some(s) = symbols.next_symbol() {
            delta_bytes += usize::from(s?);
        }
        // a run chunk can cover more than the remaining count; any unused chunk is not ours
        let chunk_len = symbols.consumed(rest.len());
        let deltas = rest
            .get(chunk_len..chunk_len + delta_bytes)
            .ok_or(RtcpError::Malformed)?;
        Ok(TwccFeedback {
            sender_ssrc: super::be32(body, 0),
            media_ssrc: super::be32(body, 4),
            base_seq: be16(body, 8),
            status_count,
            reference_time: super::be32(body, 12) >> 8,
            fb_count: body[15],
            chunks: &rest[..chunk_len],
            deltas,
        })
    }

    /// Every covered sequence number with its arrival time, in order.
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            symbols: Symbols::new(self.chunks, self.status_count),
            deltas: self.deltas,
            seq: self.base_seq,
            time_us: i64::from(self.reference_time) * 64_000,
        }
    }
}

/// Iterator over the packets of a [`TwccFeedback`].
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    symbols: Symbols<'a>,
    deltas: &'a [u8],
    seq: u16,
    time_us: i64,
}

impl Iterator for TwccPackets<'_> {
    type Item = TwccPacket;
    fn next(&mut self) -> Option<TwccPacket> {
        let sym = self.symbols.next_symbol()?.ok()?;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let delta = match sym {
            0 => {
                return Some(TwccPacket {
                    seq,
                    arrival_us: None,
                })
            }
            1 => {
                let (&d, rest) = self.deltas.split_first()?;
                self.deltas = rest;
                i64::from(d)
            }
            _ => {
                let d = self.deltas.get(..2)?;
                self.deltas = &self.deltas[2..];
                i64::from(i16::from_be_bytes([d[0], d[1]]))
            }
        };
        self.time_us += delta * 250;
        Some(TwccPacket {
            seq,
            arrival_us: Some(self.time_us),
        })
    }
}

/// Writes a TWCC feedback for `received`: (transport-wide seq, arrival µs) pairs in ascending
/// wrap-aware seq order; missing sequence numbers in between are reported as not received.
///
/// Returns (bytes written, packets consumed). Fewer packets than given are consumed when the
/// next one cannot be represented in this message (a delta beyond ±8.19 s, a backwards or
/// over-long seq step); the caller sends the rest in another feedback. Allocates one scratch
/// vector per call (feedback is sent a few times per second, not per packet).
pub fn write_twcc(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    fb_count: u8,
    received: &[(u16, u64)],
) -> Result<(usize, usize), RtcpError> {
    let Some(&(base_seq, first_us)) = received.first() else {
        return Err(RtcpError::Malformed);
    };
    let reference = first_us / 64_000;
    // symbols and deltas (in 250 µs ticks)
    let mut symbols: Vec<u8> = Vec::with_capacity(received.len() + 16);
    let mut deltas: Vec<i16> = Vec::with_capacity(received.len());
    let mut prev_ticks = (reference * 256) as i64;
    let mut next_seq = base_seq;
    let mut consumed = 0;
    for &(seq, at_us) in received {
        let gap = seq.wrapping_sub(next_seq);
        if gap >= 0x8000 || symbols.len() + usize::from(gap) + 1 > 0xFFFF {
            break;
        }
        let ticks = (at_us / 250) as i64;
        let delta = ticks - prev_ticks;
        let sym = match delta {
            0..=255 => 1,
            -32768..=32767 => 2,
            _ => break,
        };
        symbols.extend(std::iter::repeat_n(0, usize::from(gap)));
        symbols.push(sym);
        deltas.push(delta as i16);
        prev_ticks = ticks;
        next_seq = seq.wrapping_add(1);
        consumed += 1;
    }
    let mut w = Writer::new(buf);
    w.header(15, PT_RTPFB)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    w.u16(base_seq)?;
    w.u16(symbols.len() as u16)?;
    w.u32(((reference as u32 & 0x00FF_FFFF) << 8) | u32::from(fb_count))?;
    write_chunks(&mut w, &symbols)?;
    for &d in &deltas {
        if (0..=255).contains(&d) {
            w.u8(d as u8)?;
        } else {
            w.u16(d as u16)?;
        }
    }
    Ok((w.finish(true)?, consumed))
}

fn write_chunks(w: &mut Writer<'_>, symbols: &[u8]) -> Result<(), RtcpError> {
    let mut i = 0;
    while i < symbols.len() {
        let rest = &symbols[i..];
        let run = rest
            .iter()
            .take(0x1FFF)
            .take_while(|&&s| s == rest[0])
            .count();
        let small = rest.iter().take(14).all(|&s| s <= 1);
        if run >= 14 || (run >= 7 && !small) {
            w.u16((u16::from(rest[0]) << 13) | run as u16)?;
            i += run;
        } else if small {
            let mut chunk = 0x8000u16;
            for (k, &s) in rest.iter().take(14).enumerate() {
                chunk |= u16::from(s) << (13 - k);
            }
            w.u16(chunk)?;
            i += rest.len().min(14);
        } else {
            let mut chunk = 0xC000u16;
            for (k, &s) in rest.iter().take(7).enumerate() {
                chunk |= u16::from(s) << (12 - 2 * k);
            }
            w.u16(chunk)?;
            i += rest.len().min(7);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{parse_compound, RtcpPacket};
    use super::*;
    use crate::testutil::{hex, XorShift};

    fn parse(b: &[u8]) -> TwccFeedback<'_> {
        match parse_compound(b).next().unwrap().unwrap() {
            RtcpPacket::Twcc(t) => t,
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn parses_hand_built_feedback() {
        // base 100, 5 statuses, ref time 2 (128 ms), fb count 7
        // chunk 1: status vector 2-bit: [1, 0, 2, 1, 1, 0, 0] -> 11 01 00 10 01 01 00 00
        // deltas: 4 (1 ms), -8 (two bytes), 1, 2; one padding byte with the P bit
        let b = hex("afcd0006 00000001 00000002 00640005 00000207 d250 04 fff8 01 02 01");
        let t = parse(&b);
        assert_eq!(
            (t.base_seq, t.status_count, t.reference_time, t.fb_count),
            (100, 5, 2, 7)
        );
        let got: Vec<_> = t.packets().map(|p| (p.seq, p.arrival_us)).collect();
        assert_eq!(
            got,
            vec![
                (100, Some(128_000 + 1000)),
                (101, None),
                (102, Some(128_000 + 1000 - 2000)),
                (103, Some(128_000 - 1000 + 250)),
                (104, Some(128_000 - 750 + 500)),
            ]
        );
    }

    #[test]
    fn rejects_missing_deltas_and_reserved_symbols() {
        // run chunk of 3 "small delta" but only 2 delta bytes
        let b = hex("8fcd0005 00000001 00000002 00000003 00000000 20030102");
        assert!(parse_compound(&b).next().unwrap().is_err());
        // run chunk with reserved symbol 3
        let b = hex("8fcd0005 00000001 00000002 00000001 00000000 60010000");
        assert!(parse_compound(&b).next().unwrap().is_err());
        // no chunk at all for a non-zero count
        let b = hex("8fcd0004 00000001 00000002 00000001 00000000");
        assert!(parse_compound(&b).next().unwrap().is_err());
    }

    #[test]
    fn build_then_parse_round_trips() {
        let mut rng = XorShift::new(7);
        let mut received = Vec::new();
        let mut seq = 65000u16; // crosses the wrap
        let mut t = 5_000_000u64;
        for _ in 0..900 {
            let skip = if rng.chance(10) {
                rng.below(30) as u16
            } else {
                0
            };
            seq = seq.wrapping_add(1 + skip);
            let max_gap = if rng.chance(5) { 200_000 } else { 3000 };
            t += rng.below(max_gap);
            received.push((seq, t));
        }
        let mut buf = vec![0u8; 4000];
        let (n, consumed) = write_twcc(&mut buf, 1, 2, 9, &received).unwrap();
        assert_eq!(consumed, received.len());
        assert_eq!(n % 4, 0);
        let fb = parse(&buf[..n]);
        let mut got = fb
            .packets()
            .filter_map(|p| p.arrival_us.map(|a| (p.seq, a)));
        let base = (received[0].1 / 64_000 * 64_000) as i64;
        for &(s, at) in &received {
            let (gs, ga) = got.next().unwrap();
            assert_eq!(gs, s);
            // times survive to within the 250 µs tick
            let want = at as i64;
            assert!((ga - want).abs() < 250, "{ga} vs {want} (base {base})");
        }
        assert!(got.next().is_none());
        assert_eq!(fb.packets().count(), usize::from(fb.status_count));
    }

    #[test]
    fn build_stops_at_unrepresentable_delta() {
        let received = [
            (1u16, 1_000_000u64),
            (2, 1_001_000),
            (3, 20_000_000),
            (4, 20_000_100),
        ];
        let mut buf = [0u8; 128];
        let (n, consumed) = write_twcc(&mut buf, 1, 2, 0, &received).unwrap();
        assert_eq!(consumed, 2);
        assert_eq!(parse(&buf[..n]).packets().count(), 2);
        let (_, consumed) = write_twcc(&mut buf, 1, 2, 1, &received[2..]).unwrap();
        assert_eq!(consumed, 2);
        assert_eq!(
            write_twcc(&mut buf, 1, 2, 0, &[]),
            Err(RtcpError::Malformed)
        );
        assert_eq!(
            write_twcc(&mut [0u8; 20], 1, 2, 0, &received),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn long_runs_use_run_length_chunks() {
        // 2 received, 5000 lost, 1 received: 3 chunks at most
        let received = [(0u16, 64_000u64), (1, 64_250), (5002, 70_000)];
        let mut buf = [0u8; 64];
        let (n, _) = write_twcc(&mut buf, 1, 2, 0, &received).unwrap();
        assert!(n <= 20 + 2 * 3 + 3 + 3, "{n}");
        let fb = parse(&buf[..n]);
        assert_eq!(fb.status_count, 5003);
        assert_eq!(fb.packets().filter(|p| p.arrival_us.is_some()).count(), 3);
    }
}
