//! Node-wide counters, readable from Python at any time (`Engine.stats()`).
//!
//! The worker bumps them with relaxed atomic adds (no locks); Python reads a snapshot.
//! The snapshot also carries the forwarding-delay histogram (`DelayHistogram`): per-bucket
//! counts named `forward_delay_le_<bound>us` (and `forward_delay_le_inf`) plus
//! `forward_delay_sum_us`, which the metrics endpoint turns into a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// Counters since the engine started.
        #[derive(Default)]
        pub struct Stats {
            $(#[doc = $doc] pub $name: AtomicU64,)*
            /// Time from a receive batch to each forwarded copy of its RTP packets being queued
            /// (rewritten and encrypted) for sending to a subscriber.
            pub forward_delay: DelayHistogram,
        }

        impl Stats {
            /// (name, value) of every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                let mut out = vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*];
                self.forward_delay.snapshot_into(&mut out);
                out
            }
        }
    };
}

counters! {
    rx_packets: "Datagrams received.",
    rx_bytes: "Bytes received.",
    tx_packets: "Datagrams sent.",
    tx_bytes: "Bytes sent.",
    stun_requests: "STUN messages received.",
    stun_rejected: "STUN messages refused (unparseable, unknown user, bad integrity).",
    dtls_packets: "DTLS datagrams relayed to Python.",
    rtp_packets: "SRTP packets decrypted.",
    rtcp_packets: "SRTCP packets decrypted.",
    forwarded: "RTP packets sent to subscribers (first transmissions).",
    srtp_failures: "SRTP/SRTCP packets refused (auth tag, replay, no keys) or not protectable.",
    unknown_source: "Datagrams from addresses no transport is bound to.",
    malformed: "Datagrams or packets that do not parse.",
    events_dropped: "Events dropped because Python did not drain the queue.",
    send_failures: "Datagrams the kernel refused.",
    send_syscalls: "Send system calls (sendmmsg, and sendto after a refused GSO message).",
    gso_messages: "Sent messages that carried several datagrams to one peer (UDP GSO).",
    nacks_received: "NACK messages from subscribers.",
    nacked_packets: "Sequence numbers asked for in those NACKs.",
    retransmitted: "Packets resent to subscribers from the cache.",
    rtx_missed: "NACKed packets not resent (unknown, expired, too soon).",
    nacks_sent: "NACK messages sent to publishers.",
    plis_sent: "PLIs sent to publishers.",
    plis_received: "PLIs from subscribers.",
    firs_received: "FIRs from subscribers.",
    sr_sent: "Sender reports sent to subscribers.",
    rr_sent: "Receiver reports sent to publishers.",
    twcc_sent: "Transport-wide congestion control feedback messages sent to publishers.",
    rtx_received: "RFC 4588 retransmission packets from publishers.",
    layer_switches: "Simulcast layer changes of down-tracks.",
    padding_dropped: "Padding-only packets not forwarded.",
    panics: "Panics caught in the worker (the datagram or timer was dropped, the node goes on).",
    tcp_accepted: "ICE-TCP connections accepted.",
    tcp_closed: "ICE-TCP connections closed (by the peer, on errors, garbage, timeouts, removed transports).",
    tcp_rejected: "ICE-TCP connections refused at once (too many pending or open).",
    tcp_garbage: "ICE-TCP connections closed for garbage (bad framing, unknown packet kind, not STUN first).",
    tcp_timeouts: "ICE-TCP connections closed without a valid binding request in time.",
    tcp_frames_sent: "Packets queued as frames on ICE-TCP connections.",
    tcp_dropped: "Packets for ICE-TCP connections dropped (write buffer full, connection gone).",
    remb_received: "REMB bandwidth estimates from subscribers.",
    bwe_downgrades: "Subscriber transports whose layer caps were lowered to fit their bandwidth estimate.",
    bwe_upgrades: "Layer caps raised one step because the bandwidth estimate had room.",
    bwe_probes: "Layer caps raised one step to probe whether the subscriber's path carries it.",
}

/// Upper bounds (µs) of the forwarding-delay buckets; one more bucket takes everything above.
pub const DELAY_BOUNDS_US: [u64; 12] = [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000];
const DELAY_BUCKETS: usize = DELAY_BOUNDS_US.len() + 1;
const DELAY_NAMES: [&str; DELAY_BUCKETS] = [
    "forward_delay_le_25us", "forward_delay_le_50us", "forward_delay_le_100us", "forward_delay_le_250us",
    "forward_delay_le_500us", "forward_delay_le_1000us", "forward_delay_le_2500us", "forward_delay_le_5000us",
    "forward_delay_le_10000us", "forward_delay_le_25000us", "forward_delay_le_50000us",
    "forward_delay_le_100000us", "forward_delay_le_inf",
];

/// A histogram of delays in µs with fixed buckets (`DELAY_BOUNDS_US`): per-bucket counts
/// (not cumulative) and the sum. The worker observes, Python reads at any time.
#[derive(Default)]
pub struct DelayHistogram {
    buckets: [AtomicU64; DELAY_BUCKETS],
    sum_us: AtomicU64,
}

impl DelayHistogram {
    /// Counts `n` observations of `delay_us`.
    #[inline]
    pub fn observe(&self, delay_us: u64, n: u64) {
        let i = DELAY_BOUNDS_US.partition_point(|&bound| bound < delay_us);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.sum_us.fetch_add(delay_us.saturating_mul(n), Ordering::Relaxed);
    }

    fn snapshot_into(&self, out: &mut Vec<(&'static str, u64)>) {
        for (name, bucket) in DELAY_NAMES.iter().zip(&self.buckets) {
            out.push((name, bucket.load(Ordering::Relaxed)));
        }
        out.push(("forward_delay_sum_us", self.sum_us.load(Ordering::Relaxed)));
    }
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_land_in_the_bucket_of_their_upper_bound() {
        let h = DelayHistogram::default();
        h.observe(0, 1);
        h.observe(25, 2); // on the bound: that bucket
        h.observe(26, 1);
        h.observe(1_000_000, 3); // above the last bound
        let mut out = Vec::new();
        h.snapshot_into(&mut out);
        let get = |name: &str| out.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap();
        assert_eq!(get("forward_delay_le_25us"), 3);
        assert_eq!(get("forward_delay_le_50us"), 1);
        assert_eq!(get("forward_delay_le_inf"), 3);
        assert_eq!(get("forward_delay_sum_us"), 50 + 26 + 3_000_000);
        assert_eq!(out.len(), DELAY_BUCKETS + 1);
    }

    #[test]
    fn bucket_names_follow_the_bounds() {
        for (bound, name) in DELAY_BOUNDS_US.iter().zip(DELAY_NAMES) {
            assert_eq!(name, format!("forward_delay_le_{bound}us"));
        }
        assert_eq!(DELAY_NAMES[DELAY_BUCKETS - 1], "forward_delay_le_inf");
    }

    #[test]
    fn the_snapshot_carries_counters_and_the_histogram() {
        let stats = Stats::default();
        Stats::bump(&stats.forwarded);
        stats.forward_delay.observe(120, 4);
        let snap = stats.snapshot();
        assert!(snap.contains(&("forwarded", 1)));
        assert!(snap.contains(&("forward_delay_le_250us", 4)));
        assert!(snap.contains(&("forward_delay_sum_us", 480)));
    }
}
