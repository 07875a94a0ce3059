//! trackyard's sans-IO media core: parsers, crypto and forwarding state for the media node.
//!
//! Nothing here owns a socket or reads a clock: callers pass packets and times in and get
//! packets, events and deadlines out, so every piece is testable with a simulated clock.
//! Times are plain `u64` microseconds on a caller-chosen monotonic clock.
//!
//! | module | what it models | specification |
//! |---|---|---|
//! | [`rtp`] | zero-copy RTP header view, header extensions, in-place rewrites | RFC 3550, RFC 8285 |
//! | [`rtcp`] | compound walker, SR/RR/SDES/BYE, NACK, PLI, FIR, REMB, TWCC | RFC 3550, 4585, 5104, transport-cc draft |
//! | [`srtp`] | SRTP/SRTCP protect and unprotect, KDF, ROC, replay window | RFC 3711, RFC 7714, RFC 5764 |
//! | [`stun`] | ICE-lite binding requests and responses | RFC 8489 (5389), RFC 8445 |
//! | [`framing`] | packets on a TCP stream (ICE-TCP): length-prefixed frames | RFC 4571, RFC 6544 |
//! | [`munger`] | per-down-track sequence number and timestamp rewriting | — |
//! | [`nack`] | retransmission cache and receive-side loss tracker | RFC 4585 |
//! | [`codec`] | keyframe detection for VP8, VP9, H.264 and AV1 payloads | RFC 7741, 9628, 6184, AV1 RTP |
//! | [`seq`] | wrap-aware sequence number arithmetic shared by the above | — |
//! | [`forwarder`] | simulcast layer activity, selection and switching; keyframe request pacing | — |
//! | [`downtrack`] | one subscriber's step: layer verdict, continuous numbering, header rewrite | RFC 8285 |
//! | [`sequencer`] | per-down-track map from output numbers to source packets (retransmissions) | — |
//! | [`prng`] | xorshift64* for SSRCs and initial numbers (not secrets) | — |
//! | [`reports`] | RTCP SR/RR state: jitter, loss, LSR/DLSR, round-trip time | RFC 3550 §6.4, A.3, A.8 |
//! | [`congestion`] | transport-wide congestion control feedback from arrivals | transport-cc draft |
//! | [`allocator`] | subscriber bandwidth: simulcast layer caps from receive-side estimates (REMB) | REMB draft |
//! | [`audio_level`] | smoothed audio levels and voice activity | RFC 6464 |
//!
//! Every parser takes `&[u8]` and returns a `Result`; none panics on any input (a fixed-seed
//! random-input test in `fuzz_tests` holds them to it).
#![forbid(unsafe_code)]

pub mod allocator;
pub mod audio_level;
pub mod codec;
pub mod congestion;
pub mod downtrack;
pub mod forwarder;
pub mod framing;
pub mod munger;
pub mod nack;
pub mod prng;
pub mod reports;
pub mod rtcp;
pub mod rtp;
pub mod seq;
pub mod sequencer;
pub mod srtp;
pub mod stun;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod testutil;
