//! RTCP: a compound-packet walker with zero-copy parsers, and builders into caller buffers.
//!
//! - RFC 3550 §6: sender report (SR, PT 200), receiver report (RR, 201) with report blocks,
//!   source description (SDES, 202: skipped, plus a CNAME builder), goodbye (BYE, 203).
//! - RFC 4585: transport-layer feedback (RTPFB, 205) generic NACK (FMT 1); payload-specific
//!   feedback (PSFB, 206) picture loss indication (FMT 1). See [`feedback`].
//! - RFC 5104 §4.3.1: full intra request (PSFB FMT 4). See [`feedback`].
//! - draft-alvestrand-rmcat-remb: receiver estimated max bitrate (PSFB FMT 15). See [`feedback`].
//! - draft-holmer-rmcat-transport-wide-cc-extensions-01: transport-wide congestion control
//!   feedback (RTPFB FMT 15). See [`twcc`].
//!
//! [`RtcpIter`] walks a compound packet (after SRTCP unprotect) and yields one
//! [`RtcpPacket`] per sub-packet; a malformed sub-packet yields one error and ends the walk.
//! Builders write into `&mut [u8]` and return the number of bytes written, or
//! [`RtcpError::BufferTooSmall`]; several builders in a row produce a compound packet.

pub mod feedback;
pub mod twcc;

use std::fmt;

pub use feedback::{write_fir, write_nack, write_pli, write_remb, Fir, Nack, Pli, Remb};
pub use twcc::{write_twcc, TwccFeedback, TwccPacket};

/// Sender report.
pub const PT_SR: u8 = 200;
/// Receiver report.
pub const PT_RR: u8 = 201;
/// Source description.
pub const PT_SDES: u8 = 202;
/// Goodbye.
pub const PT_BYE: u8 = 203;
/// Application-defined.
pub const PT_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585).
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585).
pub const PT_PSFB: u8 = 206;

/// Why a buffer is not valid RTCP, or why a packet cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    /// Shorter than its header or than its length field says.
    TooShort,
    /// The version field is not 2.
    BadVersion,
    /// The padding count is zero or larger than the packet body.
    BadPadding,
    /// The body is inconsistent with its type (counts, lengths, chunk encodings).
    Malformed,
    /// The output buffer is too small.
    BufferTooSmall,
    /// Too many items for one packet (report blocks, SSRCs, statuses).
    TooMany,
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for RtcpError {}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One sub-packet of a compound RTCP packet.
#[derive(Debug, Clone)]
pub enum RtcpPacket<'a> {
    /// RFC 3550 §6.4.1.
    SenderReport(SenderReport<'a>),
    /// RFC 3550 §6.4.2.
    ReceiverReport(ReceiverReport<'a>),
    /// RFC 3550 §6.5, not decoded: the raw chunks.
    Sdes(&'a [u8]),
    /// RFC 3550 §6.6.
    Bye(Bye<'a>),
    /// RFC 4585 §6.2.1 generic NACK.
    Nack(Nack<'a>),
    /// Transport-wide congestion control feedback.
    Twcc(TwccFeedback<'a>),
    /// RFC 4585 §6.3.1 picture loss indication.
    Pli(Pli),
    /// RFC 5104 §4.3.1 full intra request.
    Fir(Fir<'a>),
    /// Receiver estimated maximum bitrate.
    Remb(Remb<'a>),
    /// Anything else (APP, XR, other feedback formats): type, count/FMT field, body.
    Other {
        /// Packet type.
        pt: u8,
        /// The 5-bit count or FMT field.
        count: u8,
        /// The body after the 4-byte header, without padding.
        body: &'a [u8],
    },
}

/// Walks a compound RTCP packet.
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Starts walking a compound RTCP packet.
pub fn parse_compound(buf: &[u8]) -> RtcpIter<'_> {
    RtcpIter { buf, pos: 0 }
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        match split_one(rest) {
            Ok((count, pt, body, used)) => {
                self.pos += used;
                let r = parse_body(pt, count, body);
                if r.is_err() {
                    self.pos = self.buf.len();
                }
                Some(r)
            }
            Err(e) => {
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

/// Splits the first sub-packet off: (count/FMT, PT, body without padding, bytes used).
fn split_one(b: &[u8]) -> Result<(u8, u8, &[u8], usize), RtcpError> {
    if b.len() < 4 {
        return Err(RtcpError::TooShort);
    }
    if b[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion);
    }
    let len = 4 * (usize::from(be16(b, 2)) + 1);
    if b.len() < len {
        return Err(RtcpError::TooShort);
    }
    let mut body = &b[4..len];
    if b[0] & 0x20 != 0 {
        let pad = usize::from(b[len - 1]);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body = &body[..body.len() - pad];
    }
    Ok((b[0] & 0x1F, b[1], body, len))
}

fn parse_body(pt: u8, count: u8, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    Ok(match (pt, count) {
        (PT_SR, _) => RtcpPacket::SenderReport(SenderReport::parse(count, body)?),
        (PT_RR, _) => RtcpPacket::ReceiverReport(ReceiverReport::parse(count, body)?),
        (PT_SDES, _) => RtcpPacket::Sdes(body),
        (PT_BYE, _) => RtcpPacket::Bye(Bye::parse(count, body)?),
        (PT_RTPFB, 1) => RtcpPacket::Nack(Nack::parse(body)?),
        (PT_RTPFB, 15) => RtcpPacket::Twcc(TwccFeedback::parse(body)?),
        (PT_PSFB, 1) => RtcpPacket::Pli(Pli::parse(body)?),
        (PT_PSFB, 4) => RtcpPacket::Fir(Fir::parse(body)?),
        (PT_PSFB, 15) if body.len() >= 12 && &body[8..12] == b"REMB" => {
            RtcpPacket::Remb(Remb::parse(body)?)
        }
        _ => RtcpPacket::Other { pt, count, body },
    })
}

/// True when the second byte of a packet demultiplexed as RTP/RTCP (RFC 5761 §4, RFC 7983)
/// marks it as RTCP (packet types 192..=223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

/// One RFC 3550 reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// Size of one report block.
pub const REPORT_BLOCK_LEN: usize = 24;

impl ReportBlock {
    fn read(b: &[u8]) -> Self {
        let lost = be32(b, 4) & 0x00FF_FFFF;
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost: ((lost << 8) as i32) >> 8,
            highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), RtcpError> {
        w.u32(self.ssrc)?;
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        w.u32((u32::from(self.fraction_lost) << 24) | lost)?;
        w.u32(self.highest_seq)?;
        w.u32(self.jitter)?;
        w.u32(self.last_sr)?;
        w.u32(self.delay_since_last_sr)
    }
}

/// Iterator over report blocks.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        if self.0.len() < REPORT_BLOCK_LEN {
            return None;
        }
        let (b, rest) = self.0.split_at(REPORT_BLOCK_LEN);
        self.0 = rest;
        Some(ReportBlock::read(b))
    }
}

fn blocks(count: u8, body: &[u8]) -> Result<ReportBlocks<'_>, RtcpError> {
    let need = usize::from(count) * REPORT_BLOCK_LEN;
    body.get(..need)
        .map(ReportBlocks)
        .ok_or(RtcpError::Malformed)
}

/// The sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// 64-bit NTP timestamp.
    pub ntp_time: u64,
    /// The RTP timestamp corresponding to `ntp_time`.
    pub rtp_time: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

/// A parsed sender report.
#[derive(Debug, Clone)]
pub struct SenderReport<'a> {
    /// The sender information.
    pub info: SenderInfo,
    /// Its reception report blocks.
    pub blocks: ReportBlocks<'a>,
}

impl<'a> SenderReport<'a> {
    fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 24 {
            return Err(RtcpError::Malformed);
        }
        let info = SenderInfo {
            ssrc: be32(body, 0),
            ntp_time: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
            rtp_time: be32(body, 12),
            packet_count: be32(body, 16),
            octet_count: be32(body, 20),
        };
        Ok(SenderReport {
            info,
            blocks: blocks(count, &body[24..])?,
        })
    }
}

/// A parsed receiver report.
#[derive(Debug, Clone)]
pub struct ReceiverReport<'a> {
    /// The reporter's SSRC.
    pub ssrc: u32,
    /// Its reception report blocks.
    pub blocks: ReportBlocks<'a>,
}

impl<'a> ReceiverReport<'a> {
    fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 4 {
            return Err(RtcpError::Malformed);
        }
        Ok(ReceiverReport {
            ssrc: be32(body, 0),
            blocks: blocks(count, &body[4..])?,
        })
    }
}

/// A parsed BYE.
#[derive(Debug, Clone)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    /// The optional reason text.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let n = 4 * usize::from(count);
        let ssrcs = body.get(..n).ok_or(RtcpError::Malformed)?;
        let rest = &body[n..];
        let reason = match rest.first() {
            None => None,
            Some(&len) => Some(
                rest.get(1..1 + usize::from(len))
                    .ok_or(RtcpError::Malformed)?,
            ),
        };
        Ok(Bye { ssrcs, reason })
    }

    /// The SSRCs leaving.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// A cursor writing big-endian values into a caller buffer.
pub(crate) struct Writer<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> Result<(), RtcpError> {
        let end = self.pos + v.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(RtcpError::BufferTooSmall)?
            .copy_from_slice(v);
        self.pos = end;
        Ok(())
    }
    pub(crate) fn u8(&mut self, v: u8) -> Result<(), RtcpError> {
        self.bytes(&[v])
    }
    pub(crate) fn u16(&mut self, v: u16) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes())
    }
    pub(crate) fn u32(&mut self, v: u32) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes())
    }
    /// Writes a header placeholder; [`Writer::finish`] fills in the length.
    pub(crate) fn header(&mut self, count: u8, pt: u8) -> Result<(), RtcpError> {
        self.bytes(&[0x80 | (count & 0x1F), pt, 0, 0])
    }
    /// Pads the packet to a 32-bit boundary (with the P bit when `pad_bit`, else with zeros),
    /// writes the length field, and returns the packet length.
    pub(crate) fn finish(mut self, pad_bit: bool) -> Result<usize, RtcpError> {
        let pad = (4 - self.pos % 4) % 4;
        if pad > 0 {
            for i in 0..pad {
                let last = i == pad - 1;
                self.u8(if pad_bit && last { pad as u8 } else { 0 })?;
            }
            if pad_bit {
                self.buf[0] |= 0x20;
            }
        }
        let words = self.pos / 4 - 1;
        let words = u16::try_from(words).map_err(|_| RtcpError::TooMany)?;
        self.buf[2..4].copy_from_slice(&words.to_be_bytes());
        Ok(self.pos)
    }
}

/// Writes a sender report with up to 31 report blocks.
pub fn write_sr(
    buf: &mut [u8],
    info: &SenderInfo,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    let count = u8::try_from(blocks.len())
        .ok()
        .filter(|&c| c <= 31)
        .ok_or(RtcpError::TooMany)?;
    let mut w = Writer::new(buf);
    w.header(count, PT_SR)?;
    w.u32(info.ssrc)?;
    w.u32((info.ntp_time >> 32) as u32)?;
    w.u32(info.ntp_time as u32)?;
    w.u32(info.rtp_time)?;
    w.u32(info.packet_count)?;
    w.u32(info.octet_count)?;
    for b in blocks {
        b.write(&mut w)?;
    }
    w.finish(false)
}

/// Writes a receiver report with up to 31 report blocks.
pub fn write_rr(buf: &mut [u8], ssrc: u32, blocks: &[ReportBlock]) -> Result<usize, RtcpError> {
    let count = u8::try_from(blocks.len())
        .ok()
        .filter(|&c| c <= 31)
        .ok_or(RtcpError::TooMany)?;
    let mut w = Writer::new(buf);
    w.header(count, PT_RR)?;
    w.u32(ssrc)?;
    for b in blocks {
        b.write(&mut w)?;
    }
    w.finish(false)
}

/// Writes an SDES packet with one chunk carrying a CNAME item (RFC 3550 §6.5.1).
pub fn write_sdes_cname(buf: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpError> {
    let len = u8::try_from(cname.len()).map_err(|_| RtcpError::TooMany)?;
    let mut w = Writer::new(buf);
    w.header(1, PT_SDES)?;
    w.u32(ssrc)?;
    w.u8(1)?; // CNAME
    w.u8(len)?;
    w.bytes(cname)?;
    // the item list ends with at least one null octet, then pads to 32 bits
    w.u8(0)?;
    w.finish(false)
}

/// Writes a BYE for up to 31 SSRCs with an optional reason (at most 255 bytes).
pub fn write_bye(buf: &mut [u8], ssrcs: &[u32], reason: Option<&[u8]>) -> Result<usize, RtcpError> {
    let count = u8::try_from(ssrcs.len())
        .ok()
        .filter(|&c| c <= 31)
        .ok_or(RtcpError::TooMany)?;
    let mut w = Writer::new(buf);
    w.header(count, PT_BYE)?;
    for &s in ssrcs {
        w.u32(s)?;
    }
    if let Some(r) = reason {
        w.u8(u8::try_from(r.len()).map_err(|_| RtcpError::TooMany)?)?;
        w.bytes(r)?;
    }
    w.finish(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::hex;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 12,
            cumulative_lost: -3,
            highest_seq: 0x1_0005,
            jitter: 77,
            last_sr: 0xaabb_ccdd,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn sr_rr_sdes_bye_compound_round_trip() {
        let mut buf = [0u8; 256];
        let info = SenderInfo {
            ssrc: 1,
            ntp_time: 0x0102_0304_0506_0708,
            rtp_time: 9,
            packet_count: 10,
            octet_count: 11,
        };
        let mut n = write_sr(&mut buf, &info, &[block(5)]).unwrap();
        assert_eq!(n, 28 + 24);
        n += write_rr(&mut buf[n..], 2, &[block(6), block(7)]).unwrap();
        n += write_sdes_cname(&mut buf[n..], 1, b"abc").unwrap();
        n += write_bye(&mut buf[n..], &[1, 2], Some(b"bye")).unwrap();
        let pkts: Vec<_> = parse_compound(&buf[..n]).collect::<Result<_, _>>().unwrap();
        assert_eq!(pkts.len(), 4);
        match &pkts[0] {
            RtcpPacket::SenderReport(sr) => {
                assert_eq!(sr.info, info);
                assert_eq!(sr.blocks.clone().collect::<Vec<_>>(), vec![block(5)]);
            }
            p => panic!("{p:?}"),
        }
        match &pkts[1] {
            RtcpPacket::ReceiverReport(rr) => {
                assert_eq!(rr.ssrc, 2);
                assert_eq!(
                    rr.blocks.clone().map(|b| b.ssrc).collect::<Vec<_>>(),
                    vec![6, 7]
                );
                assert_eq!(rr.blocks.clone().next().unwrap().cumulative_lost, -3);
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(pkts[2], RtcpPacket::Sdes(b) if b.len() == 12 && &b[6..9] == b"abc"));
        match &pkts[3] {
            RtcpPacket::Bye(b) => {
                assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![1, 2]);
                assert_eq!(b.reason, Some(&b"bye"[..]));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn parses_a_browser_style_rr_and_sdes() {
        // RR (no blocks) + SDES CNAME "x" from a real-world-shaped compound packet
        let b = hex(
            "81c90007 00000001 00000002 00000003 00000004 00000005 00000006 00000007
                     81ca0002 00000001 01017800",
        );
        let pkts: Vec<_> = parse_compound(&b).collect();
        assert_eq!(pkts.len(), 2);
        assert!(
            matches!(&pkts[0], Ok(RtcpPacket::ReceiverReport(rr)) if rr.blocks.clone().count() == 1)
        );
        assert!(is_rtcp(&b));
    }

    #[test]
    fn walker_stops_on_errors() {
        fn first_err(b: &[u8]) -> RtcpError {
            parse_compound(b).next().unwrap().unwrap_err()
        }
        assert_eq!(first_err(&[0x80, 200]), RtcpError::TooShort);
        assert_eq!(first_err(&[0x40, 200, 0, 0]), RtcpError::BadVersion);
        // length says 3 words, only 2 present
        assert_eq!(
            first_err(&[0x80, 201, 0, 2, 0, 0, 0, 1]),
            RtcpError::TooShort
        );
        // RR claims one block but has none
        let mut it = parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1, 0x81, 201, 0, 1, 0, 0, 0, 1]);
        assert_eq!(it.next().unwrap().unwrap_err(), RtcpError::Malformed);
        assert!(it.next().is_none());
        // padding larger than the body
        assert_eq!(
            first_err(&[0xa0, 201, 0, 1, 0, 0, 0, 9]),
            RtcpError::BadPadding
        );
        assert_eq!(
            write_rr(&mut [0u8; 8], 1, &[block(1)]),
            Err(RtcpError::BufferTooSmall)
        );
        assert_eq!(
            write_rr(&mut [0u8; 1024], 1, &[block(1); 32]),
            Err(RtcpError::TooMany)
        );
    }

    #[test]
    fn unknown_types_are_passed_through() {
        let b = [0x80 | 3, PT_APP, 0, 1, 1, 2, 3, 4];
        match parse_compound(&b).next() {
            Some(Ok(RtcpPacket::Other { pt, count, body })) => {
                assert_eq!((pt, count, body), (PT_APP, 3, &[1u8, 2, 3, 4][..]))
            }
            p => panic!("{p:?}"),
        }
    }
}
