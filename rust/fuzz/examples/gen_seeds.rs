//! Writes the seed corpora: `cargo run --example gen_seeds` (from rust/fuzz).

use std::fs;
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// The seeds must be what they claim: valid, authentic packets (else the fuzzer starts shallow).
fn check() {
    use trackyard_core::{rtcp, rtp, stun};
    for (name, b) in trackyard_fuzz::rtp_seeds() {
        rtp::RtpHeader::parse(&b).unwrap_or_else(|e| panic!("rtp seed {name}: {e}"));
    }
    for (name, b) in trackyard_fuzz::rtcp_seeds() {
        for p in rtcp::parse_compound(&b) {
            p.unwrap_or_else(|e| panic!("rtcp seed {name}: {e}"));
        }
    }
    for (name, b) in trackyard_fuzz::stun_seeds() {
        let m = stun::StunMessage::parse(&b).unwrap_or_else(|e| panic!("stun seed {name}: {e}"));
        m.verify_fingerprint().unwrap();
        m.verify_integrity(trackyard_fuzz::STUN_KEY)
            .unwrap_or_else(|e| panic!("stun seed {name}: {e}"));
    }
    for (i, profile) in trackyard_fuzz::PROFILES.into_iter().enumerate() {
        let mut rx = trackyard_fuzz::srtp_context(profile);
        let seeds = trackyard_fuzz::srtp_seeds();
        let mut p = seeds[2 * i].1.clone();
        rx.unprotect_rtp(&mut p).unwrap();
        let mut r = seeds[2 * i + 1].1.clone();
        rx.unprotect_rtcp(&mut r).unwrap();
    }
}

fn main() {
    check();
    for (name, b) in trackyard_fuzz::rtp_seeds() {
        write("rtp_parse", name, &b);
    }
    for (name, b) in trackyard_fuzz::rtcp_seeds() {
        write("rtcp_parse", name, &b);
    }
    for (name, b) in trackyard_fuzz::stun_seeds() {
        write("stun_parse", name, &b);
    }
    for (name, b) in trackyard_fuzz::srtp_seeds() {
        write("srtp_unprotect", &name, &b);
    }
    println!("seeds written");
}
