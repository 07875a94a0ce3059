//! Loss repair with generic NACKs (RFC 4585 §6.2.1): both sides of it.
//!
//! - [`RtxCache`] keeps the last N packets of one stream in preallocated slots (one
//!   allocation at creation, none per packet) so a NACK can be answered by resending them.
//!   Entries expire after a maximum age, and a packet is not resent twice within a minimum
//!   interval (several subscribers, or a repeated NACK, asking for the same packet).
//! - [`NackTracker`] watches a received stream's sequence numbers and says which missing ones
//!   to NACK now: not before a short reorder delay, again only after about one RTT, at most
//!   `max_retries` times and not after `max_age`; a large forward jump resets it rather than
//!   NACKing thousands of packets. [`NackTracker::next_deadline`] tells the caller when to
//!   poll next (sans-IO: no timers here).

use std::collections::VecDeque;

use crate::seq::SeqUnwrapper;

/// Why a packet cannot be resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtxMiss {
    /// Never stored, or overwritten by newer packets.
    NotFound,
    /// Stored longer ago than the cache's maximum age.
    Expired,
    /// Resent less than the minimum interval ago.
    TooSoon,
}

#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    ext: u64,
    len: u16,
    valid: bool,
    stored_us: u64,
    resent_us: Option<u64>,
}

/// A ring of the last packets of one stream, by sequence number.
#[derive(Debug, Clone)]
pub struct RtxCache {
    slot_size: usize,
    data: Box<[u8]>,
    meta: Box<[Meta]>,
    unwrap: SeqUnwrapper,
    max_age_us: u64,
}

impl RtxCache {
    /// A cache of `slots` packets of at most `slot_size` bytes each, kept for `max_age_us`.
    pub fn new(slots: usize, slot_size: usize, max_age_us: u64) -> Self {
        let slots = slots.max(1);
        let slot_size = slot_size.min(usize::from(u16::MAX));
        RtxCache {
            slot_size,
            data: vec![0u8; slots * slot_size].into_boxed_slice(),
            meta: vec![Meta::default(); slots].into_boxed_slice(),
            unwrap: SeqUnwrapper::new(),
            max_age_us,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    fn index(&self, ext: u64) -> usize {
        (ext % self.meta.len() as u64) as usize
    }

    /// Stores a packet (copying it into its slot). Returns false when it is larger than a
    /// slot or older than what the slot already holds.
    pub fn insert(&mut self, seq: u16, packet: &[u8], now_us: u64) -> bool {
        if packet.len() > self.slot_size {
            return false;
        }
        let ext = self.unwrap.unwrap(seq);
        let i = self.index(ext);
        if self.meta[i].valid && self.meta[i].ext > ext {
            return false;
        }
        let at = i * self.slot_size;
        self.data[at..at + packet.len()].copy_from_slice(packet);
        self.meta[i] = Meta {
            ext,
            len: packet.len() as u16,
            valid: true,
            stored_us: now_us,
            resent_us: None,
        };
        true
    }

    fn lookup(&self, seq: u16, now_us: u64) -> Result<usize, RtxMiss> {
        if self.unwrap.highest().is_none() {
            return Err(RtxMiss::NotFound);
        }
        let ext = self.unwrap.peek(seq);
        let i = self.index(ext);
        let m = &self.meta[i];
        if !m.valid || m.ext != ext {
            return Err(RtxMiss::NotFound);
        }
        if now_us.saturating_sub(m.stored_us) > self.max_age_us {
            return Err(RtxMiss::Expired);
        }
        Ok(i)
    }

    fn bytes(&self, i: usize) -> &[u8] {
        let at = i * self.slot_size;
        &self.data[at..at + usize::from(self.meta[i].len)]
    }

    /// The stored packet, without recording anything.
    pub fn get(&self, seq: u16, now_us: u64) -> Result<&[u8], RtxMiss> {
        self.lookup(seq, now_us).map(|i| self.bytes(i))
    }

    /// The stored packet for a NACK response, unless it was resent less than
    /// `min_interval_us` ago; records the resend.
    pub fn fetch_for_resend(
        &mut self,
        seq: u16,
        now_us: u64,
        min_interval_us: u64,
    ) -> Result<&[u8], RtxMiss> {
        let i = self.lookup(seq, now_us)?;
        if let Some(t) = self.meta[i].resent_us {
            if now_us.saturating_sub(t) < min_interval_us {
                return Err(RtxMiss::TooSoon);
            }
        }
        self.meta[i].resent_us = Some(now_us);
        Ok(self.bytes(i))
    }
}

/// Tuning of a [`NackTracker`].
#[derive(Debug, Clone, Copy)]
pub struct NackConfig {
    /// Wait this long after a gap appears before the first NACK (reordering).
    pub reorder_delay_us: u64,
    /// Never NACK the same packet again sooner than this, whatever the RTT.
    pub min_interval_us: u64,
    /// NACKs per packet before giving up.
    pub max_retries: u8,
    /// Give up on packets missing for longer than this.
    pub max_age_us: u64,
    /// Most missing packets tracked (the oldest are given up first).
    pub max_tracked: usize,
    /// A forward jump of more sequence numbers than this resets the tracker.
    pub max_gap: u64,
}

impl Default for NackConfig {
    fn default() -> Self {
        NackConfig {
            reorder_delay_us: 10_000,
            min_interval_us: 20_000,
            max_retries: 10,
            max_age_us: 1_000_000,
            max_tracked: 1000,
            max_gap: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    ext: u64,
    detected_us: u64,
    sent_us: Option<u64>,
    retries: u8,
}

/// Counters of a [`NackTracker`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackStats {
    /// Sequence numbers put into NACKs (counting repeats).
    pub nacked: u64,
    /// Missing packets that arrived after being NACKed.
    pub recovered: u64,
    /// Missing packets that arrived before any NACK (reordering).
    pub reordered: u64,
    /// Missing packets given up (retries, age, tracking limit, reset).
    pub given_up: u64,
}

/// Receive-side loss tracker of one stream.
#[derive(Debug, Clone)]
pub struct NackTracker {
    cfg: NackConfig,
    unwrap: SeqUnwrapper,
    missing: VecDeque<Missing>,
    stats: NackStats,
}

impl NackTracker {
    /// A tracker with this configuration.
    pub fn new(cfg: NackConfig) -> Self {
        NackTracker {
            cfg,
            unwrap: SeqUnwrapper::new(),
            missing: VecDeque::new(),
            stats: NackStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> NackStats {
        self.stats
    }

    /// Sequence numbers currently missing.
    pub fn missing(&self) -> impl Iterator<Item = u16> + '_ {
        self.missing.iter().map(|m| m.ext as u16)
    }

    /// Records a received packet. Returns true when it fills a tracked gap.
    pub fn on_packet(&mut self, seq: u16, now_us: u64) -> bool {
        let prev = self.unwrap.highest();
        let ext = self.unwrap.unwrap(seq);
        let Some(prev) = prev else { return false };
        if ext > prev {
            let gap = ext - prev - 1;
            if gap > self.cfg.max_gap {
                self.stats.given_up += self.missing.len() as u64;
                self.missing.clear();
                return false;
            }
            for e in prev + 1..ext {
                self.missing.push_back(Missing {
                    ext: e,
                    detected_us: now_us,
                    sent_us: None,
                    retries: 0,
                });
            }
            while self.missing.len() > self.cfg.max_tracked {
                self.missing.pop_front();
                self.stats.given_up += 1;
            }
            return false;
        }
        match self.missing.binary_search_by_key(&ext, |m| m.ext) {
            Ok(i) => {
                if let Some(m) = self.missing.remove(i) {
                    if m.sent_us.is_some() {
                        self.stats.recovered += 1;
                    } else {
                        self.stats.reordered += 1;
                    }
                }
                true
            }
            Err(_) => false,
        }
    }

    fn interval(&self, rtt_us: u64) -> u64 {
        self.cfg
            .min_interval_us
            .max(rtt_us.saturating_add(rtt_us / 4))
    }

    /// Appends to `out` the sequence numbers to NACK now, given the current RTT estimate,
    /// and drops packets past their retries or age.
    pub fn poll(&mut self, now_us: u64, rtt_us: u64, out: &mut Vec<u16>) {
        let interval = self.interval(rtt_us);
        let (cfg, stats) = (self.cfg, &mut self.stats);
        self.missing.retain_mut(|m| {
            if now_us.saturating_sub(m.detected_us) > cfg.max_age_us || m.retries >= cfg.max_retries
            {
                stats.given_up += 1;
                return false;
            }
            let due = match m.sent_us {
                None => now_us.saturating_sub(m.detected_us) >= cfg.reorder_delay_us,
                Some(t) => now_us.saturating_sub(t) >= interval,
            };
            if due {
                out.push(m.ext as u16);
                m.sent_us = Some(now_us);
                m.retries += 1;
                stats.nacked += 1;
            }
            true
        });
    }

    /// When [`poll`](Self::poll) will next have something to do (a NACK to send or a packet
    /// to give up on), if anything is missing.
    pub fn next_deadline(&self, rtt_us: u64) -> Option<u64> {
        let interval = self.interval(rtt_us);
        self.missing
            .iter()
            .map(|m| {
                let send = match m.sent_us {
                    None => m.detected_us.saturating_add(self.cfg.reorder_delay_us),
                    Some(t) => t.saturating_add(interval),
                };
                send.min(
                    m.detected_us
                        .saturating_add(self.cfg.max_age_us)
                        .saturating_add(1),
                )
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::XorShift;

    #[test]
    fn cache_stores_fetches_and_expires() {
        let mut c = RtxCache::new(4, 8, 1_000_000);
        assert_eq!(c.get(1, 0), Err(RtxMiss::NotFound));
        for s in 65534..=65535u16 {
            assert!(c.insert(s, &[s as u8; 3], 0));
        }
        assert!(c.insert(0, &[9; 8], 10));
        assert!(!c.insert(1, &[0; 9], 10), "larger than a slot");
        assert_eq!(c.get(65535, 20), Ok(&[0xff; 3][..]));
        assert_eq!(c.get(0, 20), Ok(&[9; 8][..]));
        assert_eq!(c.get(7, 20), Err(RtxMiss::NotFound));
        // overwrite the ring: 65534 is gone, its slot holds 2
        for s in 1..=2u16 {
            c.insert(s, &[s as u8], 30);
        }
        assert_eq!(c.get(65534, 40), Err(RtxMiss::NotFound));
        assert_eq!(c.get(2, 40), Ok(&[2][..]));
        assert!(!c.insert(65534, &[1], 40), "older than the slot's packet");
        assert_eq!(c.get(65535, 1_000_001), Err(RtxMiss::Expired));
        assert_eq!(c.fetch_for_resend(2, 50, 100), Ok(&[2][..]));
        assert_eq!(c.fetch_for_resend(2, 100, 100), Err(RtxMiss::TooSoon));
        assert_eq!(c.fetch_for_resend(2, 150, 100), Ok(&[2][..]));
        assert_eq!(c.capacity(), 4);
    }

    #[test]
    fn tracker_waits_for_reorder_then_repeats_after_rtt() {
        let mut t = NackTracker::new(NackConfig::default());
        let mut out = Vec::new();
        t.on_packet(65534, 0);
        t.on_packet(1, 1_000); // 65535 and 0 missing
        assert_eq!(t.missing().collect::<Vec<_>>(), vec![65535, 0]);
        assert_eq!(t.next_deadline(50_000), Some(11_000));
        t.poll(5_000, 50_000, &mut out);
        assert!(out.is_empty(), "still inside the reorder delay");
        assert!(t.on_packet(65535, 6_000), "reordered, not lost");
        t.poll(11_000, 50_000, &mut out);
        assert_eq!(out, vec![0]);
        out.clear();
        t.poll(50_000, 50_000, &mut out);
        assert!(out.is_empty(), "one RTT (plus slack) between repeats");
        assert_eq!(t.next_deadline(50_000), Some(11_000 + 62_500));
        t.poll(73_500, 50_000, &mut out);
        assert_eq!(out, vec![0]);
        assert!(t.on_packet(0, 80_000));
        assert_eq!(t.next_deadline(50_000), None);
        assert_eq!(
            t.stats(),
            NackStats {
                nacked: 2,
                recovered: 1,
                reordered: 1,
                given_up: 0
            }
        );
    }

    #[test]
    fn tracker_gives_up_and_resets() {
        let cfg = NackConfig {
            max_retries: 2,
            max_age_us: 500_000,
            ..Default::default()
        };
        let mut t = NackTracker::new(cfg);
        let mut out = Vec::new();
        t.on_packet(10, 0);
        t.on_packet(12, 0);
        for now in (0..400_000).step_by(10_000) {
            t.poll(now, 10_000, &mut out);
        }
        assert_eq!(out, vec![11, 11]);
        assert_eq!(t.missing().count(), 0);
        assert_eq!(t.stats().given_up, 1);
        t.on_packet(14, 400_000);
        t.on_packet(5000, 400_000); // a jump past max_gap resets
        assert_eq!(t.missing().count(), 0);
        t.on_packet(5002, 400_000);
        t.poll(2_000_000, 10_000, &mut out);
        assert_eq!(t.missing().count(), 0, "too old");
        assert_eq!(t.stats().given_up, 3);
    }

    /// A 5 ms-paced stream over a path with 5 % loss (retransmissions too) and reordering of
    /// up to 3 packets, 40 ms RTT, polling every 5 ms: every lost packet comes back, and no
    /// packet that was only reordered is ever NACKed.
    #[test]
    fn seeded_loss_and_reorder_simulation() {
        let mut rng = XorShift::new(2024);
        let rtt = 40_000u64;
        let mut tracker = NackTracker::new(NackConfig {
            reorder_delay_us: 20_000,
            ..Default::default()
        });
        let mut cache = RtxCache::new(512, 32, 2_000_000);
        // (arrival time, seq, is_retransmission)
        let mut in_flight: Vec<(u64, u16, bool)> = Vec::new();
        let (mut lost, mut reordered_only) = (
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
        );
        let mut received = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut false_nacks = 0;
        let total = 10_000u32;
        let mut now = 0u64;
        for i in 0..total + 400 {
            now = u64::from(i) * 5_000;
            if i < total {
                let seq = (i + 60_000) as u16; // wraps
                cache.insert(seq, &seq.to_be_bytes(), now);
                if rng.chance(5) {
                    lost.insert(seq);
                } else {
                    let delay = if rng.chance(3) { 1 + rng.below(3) } else { 0 };
                    if delay > 0 {
                        reordered_only.insert(seq);
                    }
                    in_flight.push((now + rtt / 2 + delay * 5_000, seq, false));
                }
            }
            in_flight.sort_by_key(|p| p.0);
            while in_flight.first().is_some_and(|p| p.0 <= now) {
                let (_, seq, _) = in_flight.remove(0);
                tracker.on_packet(seq, now);
                received.insert(seq);
            }
            out.clear();
            tracker.poll(now, rtt, &mut out);
            for &seq in &out {
                if reordered_only.contains(&seq) {
                    false_nacks += 1;
                }
                // the NACK reaches the sender after rtt/2; the resend (5 % lost) after rtt
                if let Ok(p) = cache.fetch_for_resend(seq, now + rtt / 2, rtt / 2) {
                    let s = u16::from_be_bytes([p[0], p[1]]);
                    assert_eq!(s, seq);
                    if !rng.chance(5) {
                        in_flight.push((now + rtt, s, true));
                    }
                }
            }
        }
        assert!(now > 0);
        assert!(lost.len() > 400, "{}", lost.len());
        let unrecovered = lost.iter().filter(|s| !received.contains(s)).count();
        assert_eq!(unrecovered, 0);
        assert_eq!(false_nacks, 0);
        let s = tracker.stats();
        assert_eq!(s.recovered as usize, lost.len());
        assert!(s.reordered > 0 && s.reordered as usize <= reordered_only.len());
        assert!(
            s.nacked as usize <= lost.len() * 12 / 10,
            "{s:?} for {} lost",
            lost.len()
        );
        assert_eq!(s.given_up, 0);
    }
}
