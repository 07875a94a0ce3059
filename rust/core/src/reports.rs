//! RTCP report state (RFC 3550 §6.4, Appendix A.3 and A.8), both directions.
//!
//! - [`ReceiverStats`] (one per received source stream) counts what arrived, estimates the
//!   interarrival jitter and builds the report block of a receiver report to the publisher,
//!   with LSR/DLSR from the publisher's last sender report.
//! - [`SenderStats`] (one per down-track) counts what was sent, builds the sender info of a
//!   sender report to the subscriber (RTP timestamp extrapolated from the last packet to the
//!   report's wall-clock time), and reads the subscriber's report blocks back: fraction and
//!   cumulative loss, jitter, and the round-trip time from LSR/DLSR, measured on the
//!   caller's monotonic clock against the time each sender report went out.
//!
//! Times are µs on the caller's monotonic clock; NTP timestamps come from the caller's wall
//! clock through [`ntp_from_unix_us`].

use crate::rtcp::{ReportBlock, SenderInfo};
use crate::seq::SeqUnwrapper;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// The 64-bit NTP timestamp of a wall-clock time in µs since the Unix epoch.
pub fn ntp_from_unix_us(unix_us: u64) -> u64 {
    let secs = unix_us / 1_000_000 + NTP_UNIX_OFFSET_S;
    let frac = ((unix_us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp (what LSR carries).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

fn units_to_us(units: u64, clock_rate: u32) -> u64 {
    units * 1_000_000 / u64::from(clock_rate.max(1))
}

/// Reception statistics of one source stream.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    unwrap: SeqUnwrapper,
    base: Option<u64>,
    received: u64,
    bytes: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Jitter in timestamp units, ×16 (RFC 3550 A.8 fixed point).
    jitter16: u64,
    last_transit: Option<u32>,
    last_sr: Option<(u32, u64)>,
}

impl ReceiverStats {
    /// Statistics of a stream with this RTP clock rate.
    pub fn new(clock_rate: u32) -> Self {
        ReceiverStats {
            clock_rate: clock_rate.max(1),
            unwrap: SeqUnwrapper::new(),
            base: None,
            received: 0,
            bytes: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter16: 0,
            last_transit: None,
            last_sr: None,
        }
    }

    /// Records a received packet (`bytes`: its size, for bitrates).
    pub fn on_packet(&mut self, seq: u16, timestamp: u32, bytes: usize, now_us: u64) {
        let prev = self.unwrap.highest();
        let ext = self.unwrap.unwrap(seq);
        if self.base.is_none_or(|b| ext < b) {
            self.base = Some(ext);
        }
        self.received += 1;
        self.bytes += bytes as u64;
        // jitter from in-order packets only (retransmissions would skew it)
        if prev.is_none_or(|p| ext > p) {
            let arrival = (u128::from(now_us) * u128::from(self.clock_rate) / 1_000_000) as u32;
            let transit = arrival.wrapping_sub(timestamp);
            if let Some(last) = self.last_transit {
                let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
                // J += (|D| - J) / 16, kept ×16
                self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
            }
            self.last_transit = Some(transit);
        }
    }

    /// Records the publisher's sender report (its NTP time) received at `now_us`.
    pub fn on_sender_report(&mut self, ntp: u64, now_us: u64) {
        self.last_sr = Some((ntp_middle(ntp), now_us));
    }

    /// Packets received (duplicates included).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes received.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Packets expected from the sequence numbers seen.
    pub fn expected(&self) -> u64 {
        match (self.base, self.unwrap.highest()) {
            (Some(b), Some(h)) => h - b + 1,
            _ => 0,
        }
    }

    /// Packets lost so far (negative with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter16 >> 4) as u32
    }

    /// Interarrival jitter in µs.
    pub fn jitter_us(&self) -> u64 {
        units_to_us(self.jitter16 >> 4, self.clock_rate)
    }

    /// The report block about `ssrc` for a receiver report sent at `now_us`; starts a new
    /// interval for the fraction lost.
    pub fn report_block(&mut self, ssrc: u32, now_us: u64) -> ReportBlock {
        let expected = self.expected();
        let interval_expected = expected.saturating_sub(self.expected_prior);
        let interval_received = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost = interval_expected.saturating_sub(interval_received);
        let fraction_lost = (lost << 8)
            .checked_div(interval_expected)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((mid, at)) => {
                let delay = now_us.saturating_sub(at);
                (
                    mid,
                    ((u128::from(delay) << 16) / 1_000_000).min(u128::from(u32::MAX)) as u32,
                )
            }
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: self.unwrap.highest().map_or(0, |h| (h - (1 << 16)) as u32),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// Sending statistics of one down-track, and what its subscriber reports about it.
#[derive(Debug, Clone)]
pub struct SenderStats {
    clock_rate: u32,
    packets: u64,
    octets: u64,
    bytes: u64,
    last: Option<(u32, u64)>,
    sent_srs: [(u32, u64); 4],
    next_sr: usize,
    /// Round-trip time from the last report block with a known LSR.
    pub rtt_us: Option<u64>,
    /// Fraction lost (1/256) in the subscriber's last report.
    pub fraction_lost: u8,
    /// Cumulative lost in the subscriber's last report.
    pub cumulative_lost: i32,
    /// Jitter (timestamp units) in the subscriber's last report.
    pub jitter: u32,
    /// Receiver reports read.
    pub reports: u64,
}

impl SenderStats {
    /// Statistics of a down-track with this RTP clock rate.
    pub fn new(clock_rate: u32) -> Self {
        SenderStats {
            clock_rate: clock_rate.max(1),
            packets: 0,
            octets: 0,
            bytes: 0,
            last: None,
            sent_srs: [(0, 0); 4],
            next_sr: 0,
            rtt_us: None,
            fraction_lost: 0,
            cumulative_lost: 0,
            jitter: 0,
            reports: 0,
        }
    }

    /// Records a packet sent with `timestamp` (`payload_len`: payload octets; `bytes`: the
    /// datagram size).
    pub fn on_packet(&mut self, timestamp: u32, payload_len: usize, bytes: usize, now_us: u64) {
        self.packets += 1;
        self.octets += payload_len as u64;
        self.bytes += bytes as u64;
        self.last = Some((timestamp, now_us));
    }

    /// Records a retransmission (counted in the datagram bytes only).
    pub fn on_resend(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// Packets sent (first transmissions).
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Datagram bytes sent (retransmissions included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The sender info of an SR sent now (wall clock `ntp`), or None before the first
    /// packet. Remembers the report for round-trip times.
    pub fn sender_report(&mut self, ssrc: u32, now_us: u64, ntp: u64) -> Option<SenderInfo> {
        let (ts, at) = self.last?;
        let elapsed = now_us.saturating_sub(at);
        let ticks = u128::from(elapsed) * u128::from(self.clock_rate) / 1_000_000;
        self.sent_srs[self.next_sr] = (ntp_middle(ntp), now_us);
        self.next_sr = (self.next_sr + 1) % self.sent_srs.len();
        Some(SenderInfo {
            ssrc,
            ntp_time: ntp,
            rtp_time: ts.wrapping_add(ticks as u32),
            packet_count: self.packets as u32,
            octet_count: self.octets as u32,
        })
    }

    /// Reads the subscriber's report block about this down-track, received at `now_us`.
    pub fn on_report_block(&mut self, block: &ReportBlock, now_us: u64) {
        self.reports += 1;
        self.fraction_lost = block.fraction_lost;
        self.cumulative_lost = block.cumulative_lost;
        self.jitter = block.jitter;
        if block.last_sr == 0 {
            return;
        }
        if let Some(&(_, sent_us)) = self
            .sent_srs
            .iter()
            .find(|(mid, at)| *mid == block.last_sr && *at != 0)
        {
            let dlsr_us = (u64::from(block.delay_since_last_sr) * 1_000_000) >> 16;
            let rtt = now_us.saturating_sub(sent_us).saturating_sub(dlsr_us);
            self.rtt_us = Some(rtt);
        }
    }

    /// The subscriber's reported jitter in µs.
    pub fn jitter_us(&self) -> u64 {
        units_to_us(u64::from(self.jitter), self.clock_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{parse_compound, write_rr, write_sr, RtcpPacket};

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_from_unix_us(0), NTP_UNIX_OFFSET_S << 32);
        let ntp = ntp_from_unix_us(1_500_000);
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET_S + 1);
        assert_eq!(ntp as u32, 1 << 31);
        assert_eq!(ntp_middle(0x1122_3344_5566_7788), 0x3344_5566);
    }

    #[test]
    fn receiver_report_block_counts_loss_jitter_and_lsr() {
        let mut r = ReceiverStats::new(90_000);
        // 10 packets, 20 ms apart, seq 65530.. (wraps), 3 lost, perfect timing
        for i in 0..10u16 {
            if matches!(i, 2 | 5 | 6) {
                continue;
            }
            r.on_packet(
                65_530u16.wrapping_add(i),
                u32::from(i) * 1800,
                100,
                u64::from(i) * 20_000,
            );
        }
        r.on_sender_report(0x0000_1234_5678_0000, 150_000);
        let b = r.report_block(0xABC, 200_000);
        assert_eq!(b.ssrc, 0xABC);
        assert_eq!(b.cumulative_lost, 3);
        assert_eq!(b.fraction_lost, (3 * 256 / 10) as u8);
        assert_eq!(b.highest_seq, (1 << 16) | 3, "one wrap, then seq 3");
        assert_eq!(b.jitter, 0);
        assert_eq!(b.last_sr, 0x1234_5678);
        assert_eq!(b.delay_since_last_sr, 65536 / 20, "50 ms in 1/65536 s");
        // the next interval: nothing new, nothing lost
        let b = r.report_block(0xABC, 300_000);
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 3));
        // late arrival of a lost packet
        r.on_packet(65_532, 2 * 1800, 100, 310_000);
        assert_eq!(r.cumulative_lost(), 2);
        assert_eq!(r.received(), 8);
        assert_eq!(r.bytes(), 800);
    }

    #[test]
    fn jitter_grows_with_irregular_arrivals() {
        let mut r = ReceiverStats::new(90_000);
        for i in 0..200u64 {
            let wobble = if i % 2 == 0 { 0 } else { 10_000 }; // ±10 ms
            r.on_packet(i as u16, (i * 1800) as u32, 100, i * 20_000 + wobble);
        }
        // |D| is 900 units every packet: J converges to 900 (10 ms)
        assert!((850..=900).contains(&r.jitter()), "{}", r.jitter());
        assert!((9_400..=10_000).contains(&r.jitter_us()));
    }

    #[test]
    fn sender_report_extrapolates_and_rtt_comes_back() {
        let mut s = SenderStats::new(48_000);
        assert!(s.sender_report(7, 0, 0).is_none(), "nothing sent yet");
        s.on_packet(1000, 100, 130, 1_000_000);
        s.on_packet(1960, 120, 150, 1_020_000);
        s.on_resend(150);
        let ntp = ntp_from_unix_us(1_700_000_000_000_000);
        let info = s.sender_report(7, 1_120_000, ntp).unwrap();
        assert_eq!(info.ssrc, 7);
        assert_eq!(
            info.rtp_time,
            1960 + 4800,
            "100 ms at 48 kHz after the last packet"
        );
        assert_eq!((info.packet_count, info.octet_count), (2, 220));
        assert_eq!(s.bytes(), 430);
        // the SR round-trips through the builder and parser
        let mut buf = [0u8; 64];
        let n = write_sr(&mut buf, &info, &[]).unwrap();
        match parse_compound(&buf[..n]).next() {
            Some(Ok(RtcpPacket::SenderReport(sr))) => assert_eq!(sr.info, info),
            p => panic!("{p:?}"),
        }
        // the subscriber answers 30 ms later, after holding the report for 10 ms
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 25,
            cumulative_lost: 4,
            highest_seq: 99,
            jitter: 480,
            last_sr: ntp_middle(ntp),
            delay_since_last_sr: 65536 / 100,
        };
        let n = write_rr(&mut buf, 9, &[block]).unwrap();
        let parsed = match parse_compound(&buf[..n]).next() {
            Some(Ok(RtcpPacket::ReceiverReport(rr))) => rr.blocks.clone().next().unwrap(),
            p => panic!("{p:?}"),
        };
        s.on_report_block(&parsed, 1_150_000);
        let rtt = s.rtt_us.unwrap();
        assert!((19_900..=20_100).contains(&rtt), "{rtt}");
        assert_eq!((s.fraction_lost, s.cumulative_lost, s.reports), (25, 4, 1));
        assert_eq!(s.jitter_us(), 10_000);
        // an unknown LSR leaves the RTT alone
        s.on_report_block(
            &ReportBlock {
                last_sr: 1,
                ..block
            },
            1_200_000,
        );
        assert_eq!(s.rtt_us, Some(rtt));
    }
}
