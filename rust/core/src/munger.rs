//! Per-down-track RTP sequence number and timestamp rewriting.
//!
//! A subscriber sees one RTP stream per down-track, with its own SSRC, while the forwarder
//! feeds it packets from whichever source is selected: a simulcast layer with its own SSRC,
//! sequence numbers and timestamp base; nothing while paused or muted; another layer after a
//! switch. The [`Munger`] keeps the output continuous:
//!
//! - sequence numbers: `out = source + offset` (64-bit extended on both sides, emitted mod
//!   2^16). A source packet the forwarder drops at the head of the stream (padding-only, a
//!   filtered temporal layer) lowers the offset by one, so no hole appears. A source switch or
//!   a resume re-bases the offset so the next output number is the last one plus one.
//! - timestamps: `out = source + offset` mod 2^32. On a source switch the offset is chosen so
//!   that the first output timestamp of the new source is the last one plus the wall-clock
//!   time elapsed (in clock-rate units, at least 1), so timestamps stay monotonic.
//! - reordering and retransmission: a window of the last [`Munger::WINDOW`] source numbers
//!   remembers the output number each got (or reserved for it, when it was missing); a late
//!   or retransmitted source packet gets the same output number again, and one older than the
//!   window, from before a switch, or dropped earlier is refused.
//!
//! Time is passed in by the caller (`now_us`, µs on any monotonic clock).

use crate::seq::SeqUnwrapper;

/// What to do with a source packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Munged {
    /// Send it with these values.
    Forward {
        /// Output sequence number.
        seq: u16,
        /// Output timestamp.
        timestamp: u32,
        /// True when this source packet was already forwarded once (a duplicate).
        duplicate: bool,
    },
    /// Do not send it.
    Drop(DropReason),
}

/// Why a packet is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Older than the mapping window, or from before a source switch or resume.
    TooOld,
    /// The forwarder dropped this source packet before; its number was given away.
    Dropped,
    /// The packet is from an SSRC that is neither the current source nor the one named in
    /// [`Munger::switch_source`].
    NotSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Empty,
    Reserved,
    Forwarded,
    Dropped,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    src: u64,
    out: u64,
    state: SlotState,
}

const EMPTY: Slot = Slot {
    src: 0,
    out: 0,
    state: SlotState::Empty,
};

/// Sequence number and timestamp rewriter for one down-track.
#[derive(Debug, Clone)]
pub struct Munger {
    clock_rate: u64,
    source: Option<u32>,
    pending: Option<u32>,
    unwrap: SeqUnwrapper,
    seq_offset: u64,
    ts_offset: u32,
    /// Highest output extended sequence number used.
    out_highest: u64,
    /// Timestamp and wall-clock time of the newest output packet.
    out_ts: u32,
    out_time_us: u64,
    resume: bool,
    ring: Box<[Slot]>,
}

impl Munger {
    /// Source numbers remembered for reordering and retransmissions.
    pub const WINDOW: u64 = 512;
    /// A forward jump larger than this in source numbers is treated as a discontinuity
    /// (re-based like a switch) instead of leaving a hole of that size in the output.
    pub const MAX_GAP: u64 = Self::WINDOW;

    /// A munger for a stream with this RTP clock rate whose first output packet will carry
    /// `initial_seq` and `initial_ts` (pick them at random, RFC 3550 §5.1).
    pub fn new(clock_rate: u32, initial_seq: u16, initial_ts: u32) -> Self {
        Munger {
            clock_rate: u64::from(clock_rate.max(1)),
            source: None,
            pending: None,
            unwrap: SeqUnwrapper::new(),
            seq_offset: 0,
            ts_offset: 0,
            out_highest: (1 << 16) + u64::from(initial_seq) - 1,
            out_ts: initial_ts,
            out_time_us: 0,
            resume: false,
            ring: vec![EMPTY; Self::WINDOW as usize].into_boxed_slice(),
        }
    }

    /// The SSRC currently forwarded, if any.
    pub fn source(&self) -> Option<u32> {
        self.source
    }

    /// The last output (sequence number, timestamp), once something was forwarded.
    pub fn last_output(&self) -> Option<(u16, u32)> {
        self.source.map(|_| (self.out_highest as u16, self.out_ts))
    }

    fn slot(&mut self, src: u64) -> &mut Slot {
        &mut self.ring[(src % Self::WINDOW) as usize]
    }

    /// Starts forwarding from `ssrc` at source number `seq` / timestamp `ts`.
    fn switch_to(&mut self, ssrc: u32, seq: u16, ts: u32, now_us: u64) {
        let first = self.source.is_none();
        self.unwrap = SeqUnwrapper::new();
        let src = self.unwrap.unwrap(seq);
        self.seq_offset = (self.out_highest + 1).wrapping_sub(src);
        let out_ts = if first {
            self.out_ts
        } else {
            let elapsed = now_us.saturating_sub(self.out_time_us);
            let ticks = (u128::from(elapsed) * u128::from(self.clock_rate) / 1_000_000).max(1);
            self.out_ts.wrapping_add(ticks as u32)
        };
        self.ts_offset = out_ts.wrapping_sub(ts);
        self.ring.fill(EMPTY);
        self.source = Some(ssrc);
        self.pending = None;
        self.resume = false;
    }

    /// Announces a source switch (a simulcast layer change, decided on a keyframe): the next
    /// packet forwarded from `ssrc` starts the new source; until then the current source's
    /// packets still pass.
    pub fn switch_source(&mut self, ssrc: u32) {
        if self.source != Some(ssrc) {
            self.pending = Some(ssrc);
        }
    }

    /// Advances the source to a new highest number `src`, reserving output numbers for the
    /// source numbers skipped (packets not yet arrived). Re-bases on a huge jump or a resume.
    fn advance(&mut self, src: u64, prev_highest: u64) {
        let gap = src - prev_highest - 1;
        if self.resume || gap >= Self::MAX_GAP {
            self.seq_offset = (self.out_highest + 1).wrapping_sub(src);
            self.resume = false;
            return;
        }
        for s in prev_highest + 1..src {
            let out = s.wrapping_add(self.seq_offset);
            *self.slot(s) = Slot {
                src: s,
                out,
                state: SlotState::Reserved,
            };
        }
    }

    /// Maps a source packet the forwarder wants to send.
    pub fn forward(&mut self, ssrc: u32, seq: u16, ts: u32, now_us: u64) -> Munged {
        if self.source != Some(ssrc) {
            if self.source.is_some() && self.pending != Some(ssrc) {
                return Munged::Drop(DropReason::NotSource);
            }
            self.switch_to(ssrc, seq, ts, now_us);
            return self.emit_new(self.unwrap.highest().unwrap_or(0), ts, now_us);
        }
        let prev = self.unwrap.highest().unwrap_or(0);
        let src = self.unwrap.unwrap(seq);
        if src > prev {
            self.advance(src, prev);
            return self.emit_new(src, ts, now_us);
        }
        let timestamp = ts.wrapping_add(self.ts_offset);
        let slot = self.slot(src);
        if slot.src != src || slot.state == SlotState::Empty {
            return Munged::Drop(DropReason::TooOld);
        }
        match slot.state {
            SlotState::Dropped => Munged::Drop(DropReason::Dropped),
            state => {
                slot.state = SlotState::Forwarded;
                Munged::Forward {
                    seq: slot.out as u16,
                    timestamp,
                    duplicate: state == SlotState::Forwarded,
                }
            }
        }
    }

    fn emit_new(&mut self, src: u64, ts: u32, now_us: u64) -> Munged {
        let out = src.wrapping_add(self.seq_offset);
        *self.slot(src) = Slot {
            src,
            out,
            state: SlotState::Forwarded,
        };
        let timestamp = ts.wrapping_add(self.ts_offset);
        self.out_highest = out;
        self.out_ts = timestamp;
        self.out_time_us = now_us;
        Munged::Forward {
            seq: out as u16,
            timestamp,
            duplicate: false,
        }
    }

    /// Records a source packet the forwarder chose not to send (padding only, a filtered
    /// layer) so that the output has no hole for it. Packets from another SSRC than the
    /// current source are ignored.
    pub fn drop_packet(&mut self, ssrc: u32, seq: u16) {
        if self.source != Some(ssrc) {
            return;
        }
        let prev = self.unwrap.highest().unwrap_or(0);
        let src = self.unwrap.unwrap(seq);
        if src > prev {
            self.advance(src, prev);
            // the next packet takes this packet's output number
            self.seq_offset = self.seq_offset.wrapping_sub(1);
            *self.slot(src) = Slot {
                src,
                out: 0,
                state: SlotState::Dropped,
            };
            return;
        }
        let slot = self.slot(src);
        if slot.src == src && slot.state == SlotState::Reserved {
            // too late to renumber: the reserved number stays a hole
            slot.state = SlotState::Dropped;
        }
    }

    /// Pauses the down-track (mute, pause, layer off). The next forwarded packet continues the
    /// output sequence without a hole; the timestamp keeps following the source (which runs on
    /// in real time) or, after a switch, the wall clock.
    pub fn pause(&mut self) {
        self.resume = true;
    }

    /// Allocates the next output sequence number for a packet the SFU makes up itself
    /// (padding for probing), with the last output timestamp. Source packets after it shift up.
    pub fn allocate(&mut self) -> (u16, u32) {
        self.out_highest += 1;
        self.seq_offset = self.seq_offset.wrapping_add(1);
        (self.out_highest as u16, self.out_ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::{seq_newer, ts_newer};
    use crate::testutil::XorShift;

    fn fwd(m: &mut Munger, ssrc: u32, seq: u16, ts: u32, now: u64) -> (u16, u32) {
        match m.forward(ssrc, seq, ts, now) {
            Munged::Forward { seq, timestamp, .. } => (seq, timestamp),
            d => panic!("dropped {ssrc}/{seq}: {d:?}"),
        }
    }

    #[test]
    fn continuous_across_simulcast_switch() {
        let mut m = Munger::new(90_000, 1000, 5000);
        assert_eq!(fwd(&mut m, 1, 40, 900_000, 0), (1000, 5000));
        assert_eq!(fwd(&mut m, 1, 41, 903_000, 33_333), (1001, 8000));
        // another layer's packet before the switch is refused
        assert_eq!(
            m.forward(2, 59_999, 0, 50_000),
            Munged::Drop(DropReason::NotSource)
        );
        // switch to a layer with unrelated numbers, 33.333 ms later
        m.switch_source(2);
        assert_eq!(fwd(&mut m, 1, 42, 906_000, 60_000), (1002, 11_000));
        let (s, t) = fwd(&mut m, 2, 60_000, 12, 66_667);
        assert_eq!(s, 1003);
        assert_eq!(t, 11_000 + 600); // 6.667 ms at 90 kHz
        assert_eq!(fwd(&mut m, 2, 60_001, 3012, 100_000), (1004, 11_600 + 3000));
        // a late packet of the old layer is refused
        assert_eq!(
            m.forward(1, 43, 909_000, 100_001),
            Munged::Drop(DropReason::NotSource)
        );
        assert_eq!(m.source(), Some(2));
        // switching back re-bases again
        m.switch_source(1);
        assert_eq!(fwd(&mut m, 1, 50, 930_000, 133_333).0, 1005);
    }

    #[test]
    fn pause_and_resume_leave_no_hole() {
        let mut m = Munger::new(48_000, 65_534, 0);
        assert_eq!(fwd(&mut m, 7, 10, 960, 0), (65_534, 0));
        m.pause();
        // the source ran on for 2 s while nothing was forwarded
        assert_eq!(
            fwd(&mut m, 7, 110, 960 + 100 * 960, 2_000_000),
            (65_535, 96_000)
        );
        assert_eq!(fwd(&mut m, 7, 111, 960 + 101 * 960, 2_020_000), (0, 96_960));
        // a packet from before the pause (outside the resumed range) is dropped
        assert_eq!(
            m.forward(7, 60, 0, 2_020_001),
            Munged::Drop(DropReason::TooOld)
        );
    }

    #[test]
    fn dropped_packets_leave_no_hole_and_allocate_shifts() {
        let mut m = Munger::new(90_000, 0, 0);
        fwd(&mut m, 1, 100, 0, 0);
        m.drop_packet(1, 101); // padding only
        m.drop_packet(1, 102);
        assert_eq!(fwd(&mut m, 1, 103, 3000, 1).0, 1);
        assert_eq!(m.forward(1, 102, 0, 2), Munged::Drop(DropReason::Dropped));
        let (pad_seq, pad_ts) = m.allocate();
        assert_eq!((pad_seq, pad_ts), (2, 3000));
        assert_eq!(fwd(&mut m, 1, 104, 6000, 3).0, 3);
        m.drop_packet(9, 105); // another SSRC: ignored
        assert_eq!(fwd(&mut m, 1, 105, 6000, 4).0, 4);
    }

    #[test]
    fn reordered_and_retransmitted_packets_keep_their_numbers() {
        let mut m = Munger::new(90_000, 500, 0);
        fwd(&mut m, 1, 65_534, 0, 0);
        // 65535 and 0 are missing; 1 arrives first (wrap in the source)
        assert_eq!(fwd(&mut m, 1, 1, 30, 1).0, 503);
        assert_eq!(fwd(&mut m, 1, 0, 20, 2), (502, 20));
        assert_eq!(fwd(&mut m, 1, 65_535, 10, 3), (501, 10));
        // a retransmission gets the same number again, flagged as a duplicate
        assert_eq!(
            m.forward(1, 0, 20, 4),
            Munged::Forward {
                seq: 502,
                timestamp: 20,
                duplicate: true
            }
        );
        // a missing packet dropped late keeps its hole
        fwd(&mut m, 1, 5, 70, 5); // reserves 2, 3, 4
        m.drop_packet(1, 3);
        assert_eq!(m.forward(1, 3, 50, 6), Munged::Drop(DropReason::Dropped));
        assert_eq!(fwd(&mut m, 1, 4, 60, 7).0, 506);
        // far too old
        for s in 6..700u16 {
            fwd(&mut m, 1, s, u32::from(s) * 10, 8);
        }
        assert_eq!(m.forward(1, 2, 0, 9), Munged::Drop(DropReason::TooOld));
    }

    #[test]
    fn output_wraps_at_16_and_32_bits() {
        let mut m = Munger::new(90_000, 65_530, u32::MAX - 5000);
        let mut last = None;
        for i in 0..20u16 {
            let (s, t) = fwd(
                &mut m,
                3,
                1000 + i,
                3000 * u32::from(i),
                u64::from(i) * 33_333,
            );
            if let Some((ls, lt)) = last {
                assert_eq!(s, u16::wrapping_add(ls, 1));
                assert!(ts_newer(t, lt));
            }
            last = Some((s, t));
        }
        assert_eq!(last.unwrap().0, 65_530u16.wrapping_add(19));
        assert!(last.unwrap().1 < 60_000, "timestamp wrapped");
    }

    #[test]
    fn a_huge_jump_is_a_discontinuity() {
        let mut m = Munger::new(90_000, 0, 0);
        fwd(&mut m, 1, 10, 0, 0);
        assert_eq!(fwd(&mut m, 1, 20_000, 100, 1).0, 1);
    }

    /// Random layer switches, pauses, drops, loss and reordering: the output sequence numbers
    /// of new packets always step by one and timestamps never go backwards.
    #[test]
    fn seeded_simulation_stays_continuous() {
        let mut rng = XorShift::new(42);
        let mut m = Munger::new(90_000, 65_000, u32::MAX - 100_000);
        let mut src_seq = [100u16, 30_000, 65_000];
        let mut src_ts = [0u32, 1_000_000, u32::MAX - 10];
        let mut layer = 0usize;
        let (mut last_seq, mut last_ts): (Option<u16>, Option<u32>) = (None, None);
        let mut late: Vec<(usize, u16, u32)> = Vec::new();
        let mut now = 0u64;
        for _ in 0..20_000 {
            now += 5_000;
            for l in 0..3 {
                src_seq[l] = src_seq[l].wrapping_add(1);
                src_ts[l] = src_ts[l].wrapping_add(450);
            }
            if rng.chance(1) {
                layer = rng.below(3) as usize;
                m.switch_source(layer as u32);
            }
            if rng.chance(1) {
                m.pause();
            }
            let (s, t) = (src_seq[layer], src_ts[layer]);
            if rng.chance(5) {
                late.push((layer, s, t));
                continue;
            }
            if rng.chance(3) {
                m.drop_packet(layer as u32, s);
                continue;
            }
            if let Munged::Forward { seq, timestamp, .. } = m.forward(layer as u32, s, t, now) {
                if let (Some(ls), Some(lt)) = (last_seq, last_ts) {
                    assert!(seq_newer(seq, ls) || seq == ls.wrapping_add(1));
                    assert!(seq.wrapping_sub(ls) <= 512, "hole {ls} -> {seq}");
                    assert!(ts_newer(timestamp, lt), "{lt} -> {timestamp}");
                }
                (last_seq, last_ts) = (Some(seq), Some(timestamp));
            }
            if rng.chance(20) {
                if let Some((l, s, t)) = late.pop() {
                    if let Munged::Forward { seq, .. } = m.forward(l as u32, s, t, now) {
                        assert!(
                            !seq_newer(seq, last_seq.unwrap()),
                            "late packet got a new number"
                        );
                    }
                }
            }
        }
    }
}
