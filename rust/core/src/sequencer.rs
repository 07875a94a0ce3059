//! What a down-track sent: output sequence number → (source SSRC, source sequence number,
//! output timestamp), in a preallocated ring.
//!
//! Retransmissions are served from the *source* stream's [`crate::nack::RtxCache`] (one copy
//! of each received packet, shared by every subscriber), so a down-track only keeps this
//! small map from the numbers its subscriber knows to the source packet behind each one. It
//! survives layer switches (the entry names the source SSRC), and it refuses to resend the
//! same packet to the same subscriber twice within a minimum interval.

use crate::nack::RtxMiss;

/// One forwarded packet, as the retransmission path needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentPacket {
    /// SSRC of the source stream the packet came from.
    pub src_ssrc: u32,
    /// Its sequence number in the source stream.
    pub src_seq: u16,
    /// The timestamp it was sent with.
    pub timestamp: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    out_seq: u16,
    valid: bool,
    src_ssrc: u32,
    src_seq: u16,
    timestamp: u32,
    sent_us: u64,
    resent_us: Option<u64>,
}

/// The ring of one down-track.
#[derive(Debug, Clone)]
pub struct Sequencer {
    ring: Box<[Entry]>,
    max_age_us: u64,
}

impl Sequencer {
    /// Remembers the last `slots` packets for at most `max_age_us`.
    pub fn new(slots: usize, max_age_us: u64) -> Self {
        Sequencer {
            ring: vec![Entry::default(); slots.max(1)].into_boxed_slice(),
            max_age_us,
        }
    }

    fn index(&self, out_seq: u16) -> usize {
        usize::from(out_seq) % self.ring.len()
    }

    /// Records a packet sent with `out_seq`.
    pub fn record(&mut self, out_seq: u16, sent: SentPacket, now_us: u64) {
        let i = self.index(out_seq);
        self.ring[i] = Entry {
            out_seq,
            valid: true,
            src_ssrc: sent.src_ssrc,
            src_seq: sent.src_seq,
            timestamp: sent.timestamp,
            sent_us: now_us,
            resent_us: None,
        };
    }

    /// The packet behind `out_seq` for a NACK, unless it is unknown, too old, or was resent
    /// less than `min_interval_us` ago; records the resend.
    pub fn lookup_for_resend(
        &mut self,
        out_seq: u16,
        now_us: u64,
        min_interval_us: u64,
    ) -> Result<SentPacket, RtxMiss> {
        let i = self.index(out_seq);
        let e = &mut self.ring[i];
        if !e.valid || e.out_seq != out_seq {
            return Err(RtxMiss::NotFound);
        }
        if now_us.saturating_sub(e.sent_us) > self.max_age_us {
            return Err(RtxMiss::Expired);
        }
        if e.resent_us
            .is_some_and(|t| now_us.saturating_sub(t) < min_interval_us)
        {
            return Err(RtxMiss::TooSoon);
        }
        e.resent_us = Some(now_us);
        Ok(SentPacket {
            src_ssrc: e.src_ssrc,
            src_seq: e.src_seq,
            timestamp: e.timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(ssrc: u32, seq: u16) -> SentPacket {
        SentPacket {
            src_ssrc: ssrc,
            src_seq: seq,
            timestamp: u32::from(seq) * 10,
        }
    }

    #[test]
    fn maps_output_numbers_back_across_a_switch() {
        let mut s = Sequencer::new(8, 1_000_000);
        s.record(65_534, sent(1, 100), 0);
        s.record(65_535, sent(1, 101), 0);
        s.record(0, sent(2, 7), 10); // switched layers, output continuous
        assert_eq!(s.lookup_for_resend(65_535, 20, 100), Ok(sent(1, 101)));
        assert_eq!(s.lookup_for_resend(0, 20, 100), Ok(sent(2, 7)));
        assert_eq!(s.lookup_for_resend(0, 50, 100), Err(RtxMiss::TooSoon));
        assert_eq!(s.lookup_for_resend(0, 130, 100), Ok(sent(2, 7)));
        assert_eq!(s.lookup_for_resend(1, 20, 100), Err(RtxMiss::NotFound));
        // the ring wraps: 65534's slot now holds 6
        s.record(6, sent(2, 13), 30);
        assert_eq!(s.lookup_for_resend(65_534, 40, 100), Err(RtxMiss::NotFound));
        assert_eq!(
            s.lookup_for_resend(6, 1_000_031, 100),
            Err(RtxMiss::Expired)
        );
    }
}
