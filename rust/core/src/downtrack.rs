//! The per-subscriber step of forwarding one RTP packet: should this subscriber get it, with
//! which sequence number and timestamp ([`select`]), and the packet's header rewritten for
//! the subscriber ([`rewrite_rtp`]). The media engine's worker and the forwarding benchmark
//! both go through these, so the benchmark measures the code that ships.

use crate::forwarder::{Forwarder, Verdict};
use crate::munger::{Munged, Munger};
use crate::rtp::RtpHeaderMut;

/// Negotiated RTP header extension ids of one peer connection (0 = not negotiated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtIds {
    pub mid: u8,
    pub rid: u8,
    pub rrid: u8,
    pub audio_level: u8,
    pub twcc: u8,
    pub abs_send_time: u8,
}

impl ExtIds {
    /// The id a subscriber (`to`) uses for this publisher's element `id`, or 0 to blank it:
    /// audio level, abs-send-time and transport-wide seq are carried over; mid, rid, repaired
    /// rid and anything unknown never leak to subscribers.
    pub fn map_to(&self, to: &ExtIds, id: u8) -> u8 {
        if id == 0 {
            0
        } else if id == self.audio_level {
            to.audio_level
        } else if id == self.abs_send_time {
            to.abs_send_time
        } else if id == self.twcc {
            to.twcc
        } else {
            0
        }
    }
}

/// The abs-send-time value (6.18 fixed-point seconds, 24 bits) of a time in µs.
pub fn abs_send_time(now_us: u64) -> u32 {
    (((u128::from(now_us) << 18) / 1_000_000) as u32) & 0x00FF_FFFF
}

/// What a down-track does with a source packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// Not for this subscriber (another layer, paused, waiting for a keyframe, a duplicate).
    Skip,
    /// Send it with these values; `switched` when the down-track moved from one layer to
    /// another with this packet.
    Send { seq: u16, timestamp: u32, switched: bool },
}

/// The layer verdict and the continuous numbering for a source packet of `layer` (stream
/// `ssrc`, numbers `seq`/`ts`) arriving at `now_us`.
#[inline]
pub fn select(fwd: &mut Forwarder, munger: &mut Munger, layer: u8, keyframe: bool, ssrc: u32, seq: u16, ts: u32,
              now_us: u64) -> Selected {
    let mut switched = false;
    match fwd.on_packet(layer, keyframe) {
        Verdict::Drop(_) => return Selected::Skip,
        Verdict::Switch { from } => {
            if munger.source() != Some(ssrc) {
                munger.switch_source(ssrc);
            }
            switched = from.is_some();
        }
        Verdict::Forward => {}
    }
    match munger.forward(ssrc, seq, ts, now_us) {
        // a duplicate: the subscriber has it (or asks for it with a NACK)
        Munged::Forward { seq, timestamp, duplicate: false } => Selected::Send { seq, timestamp, switched },
        _ => Selected::Skip,
    }
}

/// What a down-track puts in the RTP header.
pub struct Rewrite<'a> {
    pub ssrc: u32,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    /// The publisher's extension ids (those the packet carries).
    pub from_ext: &'a ExtIds,
}

/// Copies the plain RTP packet `src` into `out` and rewrites it for a subscriber whose
/// extension ids are `to`: SSRC, sequence number, timestamp, payload type, extension ids
/// mapped (mid/rid and anything unknown blanked to padding), a fresh transport-wide sequence
/// number from `twcc_seq` (advanced; None: the caller numbers nothing) and abs-send-time for
/// `now_us` when the subscriber negotiated them. Returns the length, or None when `out` is too small or `src` is not RTP.
#[inline]
pub fn rewrite_rtp(out: &mut [u8], src: &[u8], rw: &Rewrite<'_>, to: &ExtIds, twcc_seq: Option<&mut u16>,
                   now_us: u64) -> Option<usize> {
    let len = src.len();
    out.get_mut(..len)?.copy_from_slice(src);
    let mut h = RtpHeaderMut::parse(&mut out[..len]).ok()?;
    h.set_ssrc(rw.ssrc);
    h.set_sequence(rw.seq);
    h.set_timestamp(rw.timestamp);
    h.set_payload_type(rw.payload_type);
    if h.has_extension() {
        h.remap_extensions(|id| rw.from_ext.map_to(to, id));
        if let (true, Some(seq)) = (to.twcc != 0, twcc_seq) {
            if let Some(v) = h.extension_mut(to.twcc).filter(|v| v.len() >= 2) {
                v[..2].copy_from_slice(&seq.to_be_bytes());
                *seq = seq.wrapping_add(1);
            }
        }
        if to.abs_send_time != 0 {
            if let Some(v) = h.extension_mut(to.abs_send_time).filter(|v| v.len() >= 3) {
                v[..3].copy_from_slice(&abs_send_time(now_us).to_be_bytes()[1..]);
            }
        }
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    /// RTP with one-byte extensions: mid (id 4) = "0", abs-send-time (id 2), twcc (id 3).
    fn packet(seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x90, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0xAAAA_AAAAu32.to_be_bytes());
        p.extend_from_slice(&[0xBE, 0xDE, 0, 3]);
        p.extend_from_slice(&[0x40, b'0', 0x22, 1, 2, 3, 0x31, 9, 9, 0, 0, 0]);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn rewrite_maps_ids_blanks_mid_and_stamps_twcc_and_send_time() {
        let from = ExtIds { mid: 4, abs_send_time: 2, twcc: 3, ..Default::default() };
        let to = ExtIds { abs_send_time: 5, twcc: 7, ..Default::default() };
        let src = packet(100, 5000);
        let mut out = [0u8; 200];
        let mut twcc = 41u16;
        let rw = Rewrite { ssrc: 0xB0B, payload_type: 96, seq: 7, timestamp: 9000, from_ext: &from };
        let n = rewrite_rtp(&mut out, &src, &rw, &to, Some(&mut twcc), 1_000_000).unwrap();
        assert_eq!(n, src.len());
        let h = RtpHeader::parse(&out[..n]).unwrap();
        assert_eq!((h.ssrc(), h.sequence(), h.timestamp(), h.payload_type()), (0xB0B, 7, 9000, 96));
        assert_eq!(h.extension(4), None, "mid never leaks");
        assert_eq!(h.extension(7).unwrap(), &41u16.to_be_bytes());
        assert_eq!(h.extension(5).unwrap(), &abs_send_time(1_000_000).to_be_bytes()[1..]);
        assert_eq!(h.payload(), b"payload");
        assert_eq!(twcc, 42);
        // a destination too small is refused, not panicked on
        assert_eq!(rewrite_rtp(&mut out[..10], &src, &rw, &to, Some(&mut twcc), 0), None);
        // without numbering, the transport-wide element is left as the remap made it
        let n = rewrite_rtp(&mut out, &src, &rw, &to, None, 0).unwrap();
        assert_eq!(RtpHeader::parse(&out[..n]).unwrap().extension(7).unwrap(), &[9, 9]);
        assert_eq!(twcc, 42);
    }

    #[test]
    fn select_waits_for_a_keyframe_then_numbers_continuously() {
        let mut fwd = Forwarder::new(0);
        fwd.set_active_layers(0b1);
        let mut munger = Munger::new(90_000, 1000, 0);
        assert_eq!(select(&mut fwd, &mut munger, 0, false, 1, 10, 0, 0), Selected::Skip);
        let Selected::Send { seq: a, switched: false, .. } = select(&mut fwd, &mut munger, 0, true, 1, 11, 0, 0) else {
            panic!("the keyframe starts the down-track")
        };
        let Selected::Send { seq: b, .. } = select(&mut fwd, &mut munger, 0, false, 1, 12, 3000, 33_000) else {
            panic!("then every packet goes")
        };
        assert_eq!(b, a.wrapping_add(1));
        // the same source packet again is a duplicate: skipped
        assert_eq!(select(&mut fwd, &mut munger, 0, false, 1, 12, 3000, 34_000), Selected::Skip);
    }
}
