//! Receive side of transport-wide congestion control: [`TwccRecorder`] collects the
//! transport-wide sequence number and arrival time of every packet received on a transport
//! and turns them into feedback messages ([`crate::rtcp::write_twcc`]) a few times a second.
//!
//! Storage is preallocated (`capacity` arrivals); when it fills up before the next feedback,
//! the oldest arrivals are reported early by the caller (see [`TwccRecorder::is_full`]) or,
//! failing that, dropped.

use crate::rtcp::{write_twcc, RtcpError};
use crate::seq::SeqUnwrapper;

/// Most packets described in one feedback message (keeps it well under an MTU).
pub const MAX_PER_FEEDBACK: usize = 256;

/// Arrivals awaiting feedback on one transport.
#[derive(Debug, Clone)]
pub struct TwccRecorder {
    unwrap: SeqUnwrapper,
    pending: Vec<(u64, u64)>,
    out: Vec<(u16, u64)>,
    capacity: usize,
    fb_count: u8,
    dropped: u64,
}

impl TwccRecorder {
    /// A recorder holding up to `capacity` arrivals between feedbacks.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        TwccRecorder {
            unwrap: SeqUnwrapper::new(),
            pending: Vec::with_capacity(capacity),
            out: Vec::with_capacity(MAX_PER_FEEDBACK),
            capacity,
            fb_count: 0,
            dropped: 0,
        }
    }

    /// Records the arrival of the packet with transport-wide number `seq`.
    pub fn record(&mut self, seq: u16, now_us: u64) {
        if self.pending.len() == self.capacity {
            self.pending.remove(0);
            self.dropped += 1;
        }
        let ext = self.unwrap.unwrap(seq);
        self.pending.push((ext, now_us));
    }

    /// Nothing to report.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Full: report now rather than lose arrivals.
    pub fn is_full(&self) -> bool {
        self.pending.len() + MAX_PER_FEEDBACK / 2 >= self.capacity
    }

    /// Arrivals dropped for lack of room.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes one feedback message about the oldest pending arrivals into `buf` and forgets
    /// them; `Ok(None)` when nothing is pending. Call again while it returns `Some`.
    pub fn write_feedback(
        &mut self,
        buf: &mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Result<Option<usize>, RtcpError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        // ascending by extended number, duplicates (same number twice) once
        self.pending.sort_unstable_by_key(|p| p.0);
        self.pending.dedup_by_key(|p| p.0);
        self.out.clear();
        self.out.extend(
            self.pending
                .iter()
                .take(MAX_PER_FEEDBACK)
                .map(|&(ext, at)| (ext as u16, at)),
        );
        let (n, consumed) = write_twcc(buf, sender_ssrc, media_ssrc, self.fb_count, &self.out)?;
        self.fb_count = self.fb_count.wrapping_add(1);
        // always make progress, even if the writer could not represent the first one
        self.pending.drain(..consumed.max(1));
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{parse_compound, RtcpPacket};

    fn feedback(buf: &[u8]) -> Vec<(u16, Option<i64>)> {
        match parse_compound(buf).next() {
            Some(Ok(RtcpPacket::Twcc(t))) => t.packets().map(|p| (p.seq, p.arrival_us)).collect(),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn reports_reordered_arrivals_across_a_wrap_with_losses() {
        let mut r = TwccRecorder::new(1024);
        let mut buf = [0u8; 1500];
        assert_eq!(r.write_feedback(&mut buf, 1, 2), Ok(None));
        r.record(65_534, 1_000_000);
        r.record(1, 1_002_000); // 65535 and 0: 0 arrives late, 65535 never
        r.record(0, 1_003_000);
        r.record(1, 1_003_500); // duplicate
        let n = r.write_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let got = feedback(&buf[..n]);
        let base = (1_000_000 / 64_000) * 64_000;
        assert_eq!(
            got,
            vec![
                (65_534, Some(1_000_000 - base + base)),
                (65_535, None),
                (0, Some(1_003_000)),
                (1, Some(1_002_000)),
            ]
        );
        assert!(r.is_empty());
        assert_eq!(r.write_feedback(&mut buf, 1, 2), Ok(None));
    }

    #[test]
    fn splits_large_batches_and_drops_when_full() {
        let mut r = TwccRecorder::new(600);
        for i in 0..700u32 {
            r.record(i as u16, u64::from(i) * 1000);
        }
        assert_eq!(r.dropped(), 100);
        assert!(r.is_full());
        let mut buf = [0u8; 1500];
        let mut messages = 0;
        let mut seen = 0;
        while let Some(n) = r.write_feedback(&mut buf, 1, 2).unwrap() {
            assert!(n < 1200);
            seen += feedback(&buf[..n]).len();
            messages += 1;
        }
        assert_eq!((messages, seen), (3, 600));
    }
}
