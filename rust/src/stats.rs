//! Node-wide counters, readable from Python at any time (`Engine.stats()`).
//!
//! The worker bumps them with relaxed atomic adds (no locks); Python reads a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// Counters since the engine started.
        #[derive(Default)]
        pub struct Stats {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        impl Stats {
            /// (name, value) of every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
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
