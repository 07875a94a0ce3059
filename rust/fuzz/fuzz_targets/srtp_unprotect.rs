//! SRTP/SRTCP unprotect of untrusted datagrams with fixed keys, for every profile. The input
//! is tried as SRTP and as SRTCP (a forgery must never authenticate, and nothing may panic).
//! Then, as a round trip, the input is taken as a plain RTP and RTCP packet: protect with one
//! context, unprotect with a peer context, and the plaintext must come back byte for byte; a
//! second unprotect of the same packet must be refused as a replay, and a one-bit change
//! must fail authentication.
//!
//! The contexts are built once (key derivation dominates otherwise) and every SSRC state an
//! input created is removed after it, so each input starts from the same fresh state.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use trackyard_core::rtp;
use trackyard_core::srtp::{SrtpContext, SrtpError, SrtpProfile};
use trackyard_fuzz::{srtp_context, PROFILES};

struct Contexts {
    profile: SrtpProfile,
    rx: SrtpContext,
    tx: SrtpContext,
    peer: SrtpContext,
    fresh: SrtpContext,
}

thread_local! {
    static CONTEXTS: RefCell<Vec<Contexts>> = RefCell::new(
        PROFILES
            .iter()
            .map(|&profile| Contexts {
                profile,
                rx: srtp_context(profile),
                tx: srtp_context(profile),
                peer: srtp_context(profile),
                fresh: srtp_context(profile),
            })
            .collect(),
    );
}

fn ssrc_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn check(c: &mut Contexts, data: &[u8]) {
    let profile = c.profile;
    // 1. untrusted input, as the engine receives it
    let mut buf = data.to_vec();
    if let Ok(n) = c.rx.unprotect_rtp(&mut buf) {
        assert!(n <= data.len());
        // authentic (a seed, or the fuzzer rebuilt a valid tag): a replay is refused
        let mut again = data.to_vec();
        assert_eq!(c.rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
    }
    let mut buf = data.to_vec();
    if let Ok(n) = c.rx.unprotect_rtcp(&mut buf) {
        assert!(n <= data.len());
        let mut again = data.to_vec();
        assert_eq!(c.rx.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));
    }

    // 2. round trip of the input as plaintext
    if rtp::header_len(data).is_ok() {
        let mut pkt = data.to_vec();
        c.tx.protect_rtp_vec(&mut pkt)
            .expect("protect accepts a valid header");
        assert_eq!(pkt.len(), data.len() + profile.rtp_overhead());
        let mut copy = pkt.clone();
        let n = c
            .peer
            .unprotect_rtp(&mut copy)
            .expect("own packet authenticates");
        assert_eq!(&copy[..n], data, "SRTP round trip changed the packet");
        let mut again = pkt.clone();
        assert_eq!(c.peer.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
        // one flipped bit anywhere must fail authentication
        let mut forged = pkt;
        let i = usize::from(data[data.len() - 1]) * 7 % forged.len();
        forged[i] ^= 0x01;
        assert!(
            c.fresh.unprotect_rtp(&mut forged).is_err(),
            "SRTP bit flip at {i} authenticated"
        );
    }
    if data.len() >= 8 && data[0] >> 6 == 2 {
        let mut pkt = data.to_vec();
        c.tx.protect_rtcp_vec(&mut pkt)
            .expect("protect accepts a v2 RTCP header");
        assert_eq!(pkt.len(), data.len() + profile.rtcp_overhead());
        let mut copy = pkt.clone();
        let n = c
            .peer
            .unprotect_rtcp(&mut copy)
            .expect("own SRTCP authenticates");
        assert_eq!(&copy[..n], data, "SRTCP round trip changed the packet");
        let mut again = pkt.clone();
        assert_eq!(c.peer.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));
        let mut forged = pkt;
        let i = usize::from(data[data.len() - 1]) * 7 % forged.len();
        forged[i] ^= 0x01;
        assert!(
            c.fresh.unprotect_rtcp(&mut forged).is_err(),
            "SRTCP bit flip at {i} authenticated"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    CONTEXTS.with(|all| {
        for c in all.borrow_mut().iter_mut() {
            check(c, data);
            // forget what this input created: the RTP SSRC (bytes 8..12) and the RTCP sender
            // SSRC (bytes 4..8) are the only streams it can have added
            for ssrc in [ssrc_at(data, 8), ssrc_at(data, 4)].into_iter().flatten() {
                for ctx in [&mut c.rx, &mut c.tx, &mut c.peer, &mut c.fresh] {
                    ctx.remove_stream(ssrc);
                }
            }
        }
    });
});
