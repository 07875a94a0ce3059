//! RTCP feedback messages: generic NACK and PLI (RFC 4585 §6.2.1, §6.3.1), FIR (RFC 5104
//! §4.3.1) and REMB (draft-alvestrand-rmcat-remb-03 §2.2).
//!
//! Every feedback message starts with the sender's SSRC and the media source's SSRC, followed
//! by feedback control information (FCI). Generic NACK FCI entries are a packet id (PID) and
//! a bitmask of the 16 following sequence numbers (BLP); [`Nack::lost`] expands them, and
//! [`write_nack`] packs a list of sequence numbers back into as few entries as it can.

use super::{be16, be32, RtcpError, Writer, PT_PSFB, PT_RTPFB};

fn fb_header(body: &[u8]) -> Result<(u32, u32), RtcpError> {
    if body.len() < 8 {
        return Err(RtcpError::Malformed);
    }
    Ok((be32(body, 0), be32(body, 4)))
}

/// A generic NACK.
#[derive(Debug, Clone)]
pub struct Nack<'a> {
    /// SSRC of the packet sender (the receiver asking).
    pub sender_ssrc: u32,
    /// SSRC of the media source whose packets were lost.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc) = fb_header(body)?;
        let fci = &body[8..];
        if !fci.len().is_multiple_of(4) {
            return Err(RtcpError::Malformed);
        }
        Ok(Nack {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }

    /// The raw (PID, BLP) pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + 'a {
        self.fci.chunks_exact(4).map(|c| (be16(c, 0), be16(c, 2)))
    }

    /// Every sequence number asked for, in FCI order.
    pub fn lost(&self) -> impl Iterator<Item = u16> + 'a {
        self.pairs().flat_map(|(pid, blp)| {
            std::iter::once(pid).chain(
                (0..16u16)
                    .filter(move |i| blp & (1 << i) != 0)
                    .map(move |i| pid.wrapping_add(i + 1)),
            )
        })
    }
}

/// Writes a generic NACK for `seqs` (given in ascending, wrap-aware order; duplicates of the
/// current PID are skipped). Returns the bytes written.
pub fn write_nack(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seqs: &[u16],
) -> Result<usize, RtcpError> {
    let mut w = Writer::new(buf);
    w.header(1, PT_RTPFB)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    let mut current: Option<(u16, u16)> = None;
    for &seq in seqs {
        if let Some((pid, blp)) = current.as_mut() {
            let d = seq.wrapping_sub(*pid);
            if d == 0 {
                continue;
            }
            if (1..=16).contains(&d) {
                *blp |= 1 << (d - 1);
                continue;
            }
            w.u16(*pid)?;
            w.u16(*blp)?;
        }
        current = Some((seq, 0));
    }
    if let Some((pid, blp)) = current {
        w.u16(pid)?;
        w.u16(blp)?;
    }
    w.finish(false)
}

/// A picture loss indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source that should send a keyframe.
    pub media_ssrc: u32,
}

impl Pli {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc) = fb_header(body)?;
        Ok(Pli {
            sender_ssrc,
            media_ssrc,
        })
    }
}

/// Writes a PLI.
pub fn write_pli(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let mut w = Writer::new(buf);
    w.header(1, PT_PSFB)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    w.finish(false)
}

/// A full intra request.
#[derive(Debug, Clone)]
pub struct Fir<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, _media) = fb_header(body)?;
        let fci = &body[8..];
        if !fci.len().is_multiple_of(8) {
            return Err(RtcpError::Malformed);
        }
        Ok(Fir { sender_ssrc, fci })
    }

    /// (media SSRC, command sequence number) per FCI entry.
    pub fn entries(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        self.fci.chunks_exact(8).map(|c| (be32(c, 0), c[4]))
    }
}

/// Writes a FIR with one FCI entry per (media SSRC, command sequence number).
pub fn write_fir(
    buf: &mut [u8],
    sender_ssrc: u32,
    entries: &[(u32, u8)],
) -> Result<usize, RtcpError> {
    let mut w = Writer::new(buf);
    w.header(4, PT_PSFB)?;
    w.u32(sender_ssrc)?;
    w.u32(0)?; // media source SSRC: unused for FIR (RFC 5104 §4.3.1.2)
    for &(ssrc, seq) in entries {
        w.u32(ssrc)?;
        w.bytes(&[seq, 0, 0, 0])?;
    }
    w.finish(false)
}

/// A receiver estimated maximum bitrate message.
#[derive(Debug, Clone)]
pub struct Remb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// The estimate in bits per second (saturating at `u64::MAX`).
    pub bitrate: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, _media) = fb_header(body)?;
        if body.len() < 16 || &body[8..12] != b"REMB" {
            return Err(RtcpError::Malformed);
        }
        let n = usize::from(body[12]);
        let exp = u32::from(body[13] >> 2);
        let mantissa =
            (u64::from(body[13] & 0x03) << 16) | (u64::from(body[14]) << 8) | u64::from(body[15]);
        let bitrate = if mantissa == 0 {
            0
        } else if exp >= mantissa.leading_zeros() {
            u64::MAX
        } else {
            mantissa << exp
        };
        let ssrcs = body.get(16..16 + 4 * n).ok_or(RtcpError::Malformed)?;
        Ok(Remb {
            sender_ssrc,
            bitrate,
            ssrcs,
        })
    }

    /// The SSRCs the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// Writes a REMB (the bitrate is rounded down to an 18-bit mantissa).
pub fn write_remb(
    buf: &mut [u8],
    sender_ssrc: u32,
    bitrate: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    let n = u8::try_from(ssrcs.len()).map_err(|_| RtcpError::TooMany)?;
    let mut exp = 0u32;
    while (bitrate >> exp) >= (1 << 18) {
        exp += 1;
    }
    let mantissa = (bitrate >> exp) as u32;
    let mut w = Writer::new(buf);
    w.header(15, PT_PSFB)?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.bytes(b"REMB")?;
    w.u8(n)?;
    w.u8(((exp as u8) << 2) | (mantissa >> 16) as u8)?;
    w.u16(mantissa as u16)?;
    for &s in ssrcs {
        w.u32(s)?;
    }
    w.finish(false)
}

#[cfg(test)]
mod tests {
    use super::super::{parse_compound, RtcpPacket};
    use super::*;
    use crate::testutil::hex;

    fn first(b: &[u8]) -> RtcpPacket<'_> {
        parse_compound(b).next().unwrap().unwrap()
    }

    #[test]
    fn nack_expands_pid_and_blp() {
        // PID 100, BLP 0b1000_0000_0000_0101 -> 100, 101, 103, 116
        let b = hex("81cd0003 00000001 00000002 00648005");
        let RtcpPacket::Nack(n) = first(&b) else {
            panic!()
        };
        assert_eq!((n.sender_ssrc, n.media_ssrc), (1, 2));
        assert_eq!(n.lost().collect::<Vec<_>>(), vec![100, 101, 103, 116]);
    }

    #[test]
    fn nack_build_round_trips_across_wrap() {
        let seqs = [65530u16, 65531, 65535, 0, 9, 10, 40, 41, 41, 300];
        let mut buf = [0u8; 64];
        let n = write_nack(&mut buf, 7, 8, &seqs).unwrap();
        let RtcpPacket::Nack(nack) = first(&buf[..n]) else {
            panic!()
        };
        let mut want = seqs.to_vec();
        want.dedup();
        assert_eq!(nack.lost().collect::<Vec<_>>(), want);
        // 65530..=65535,0,9,10 fit one entry (9 = 65530 + 15, 10 = +16); then 40/41, 300
        assert_eq!(nack.pairs().count(), 3);
        assert_eq!(
            write_nack(&mut [0u8; 12], 7, 8, &[1]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn pli_and_fir_round_trip() {
        let mut buf = [0u8; 64];
        let n = write_pli(&mut buf, 1, 2).unwrap();
        assert_eq!(n, 12);
        assert!(matches!(
            first(&buf[..n]),
            RtcpPacket::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 2
            })
        ));
        let n = write_fir(&mut buf, 3, &[(4, 5), (6, 7)]).unwrap();
        let RtcpPacket::Fir(f) = first(&buf[..n]) else {
            panic!()
        };
        assert_eq!(f.sender_ssrc, 3);
        assert_eq!(f.entries().collect::<Vec<_>>(), vec![(4, 5), (6, 7)]);
    }

    #[test]
    fn remb_parses_and_round_trips() {
        // libwebrtc-shaped REMB: 1 SSRC, exp 5, mantissa 0x3ffff -> 8388576 bit/s
        let b = hex("8fce0005 00000001 00000000 52454d42 0117ffff 12345678");
        let RtcpPacket::Remb(r) = first(&b) else {
            panic!()
        };
        assert_eq!(r.bitrate, 0x3ffff << 5);
        assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![0x1234_5678]);
        let mut buf = [0u8; 64];
        let n = write_remb(&mut buf, 9, 2_500_000, &[1, 2]).unwrap();
        let RtcpPacket::Remb(r) = first(&buf[..n]) else {
            panic!()
        };
        assert!(r.bitrate <= 2_500_000 && r.bitrate > 2_499_000);
        assert_eq!(r.ssrcs().count(), 2);
        // huge exponent saturates instead of overflowing
        let b = hex("8fce0004 00000001 00000000 52454d42 00ffffff");
        let RtcpPacket::Remb(r) = first(&b) else {
            panic!()
        };
        assert_eq!(r.bitrate, u64::MAX);
        // SSRC count larger than the body
        let b = hex("8fce0004 00000001 00000000 52454d42 0517ffff");
        assert!(parse_compound(&b).next().unwrap().is_err());
    }
}
