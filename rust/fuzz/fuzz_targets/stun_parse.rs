//! STUN as it arrives on the media port: `is_stun`, `StunMessage::parse`, then everything an
//! ICE-lite agent does with a parsed message (integrity with the ICE password, fingerprint,
//! username split, attribute walk). For an accepted request it also builds the success
//! response the engine would send and checks that it parses and verifies.
#![no_main]

use std::hint::black_box;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use trackyard_core::stun::{self, StunMessage};
use trackyard_fuzz::STUN_KEY;

fuzz_target!(|data: &[u8]| {
    // the RFC 7983 demultiplexer's test (first byte 0..=3); parse itself accepts any type
    // with the two leading zero bits, so the two are not compared
    black_box(stun::is_stun(data));
    let Ok(m) = StunMessage::parse(data) else {
        return;
    };
    let integrity = m.verify_integrity(STUN_KEY);
    let _ = black_box(integrity);
    let _ = black_box(m.verify_fingerprint());
    assert_eq!(integrity.is_err(), m.verify_integrity(STUN_KEY).is_err());
    if m.has_integrity() {
        // a wrong password never verifies a message that the right one does
        if integrity.is_ok() {
            assert!(m.verify_integrity(b"not-the-password").is_err());
        }
    } else {
        assert!(integrity.is_err());
    }
    black_box((
        m.is_binding_request(),
        m.username_parts(),
        m.attributes()
            .map(|(t, v)| usize::from(t) + v.len())
            .sum::<usize>(),
        m.priority,
        m.use_candidate,
        m.ice_controlling,
        m.ice_controlled,
        m.xor_mapped_address,
        m.error_code,
    ));

    if m.is_binding_request() {
        let mapped: SocketAddr = match m.xor_mapped_address {
            Some(a) => a,
            None => "[2001:db8::1]:40000".parse().unwrap(),
        };
        let mut buf = [0u8; 128];
        let n = stun::write_binding_success(&mut buf, &m.transaction_id, mapped, STUN_KEY)
            .expect("a success response fits 128 bytes");
        let r = StunMessage::parse(&buf[..n]).expect("our own response parses");
        r.verify_integrity(STUN_KEY)
            .expect("our own integrity verifies");
        r.verify_fingerprint()
            .expect("our own fingerprint verifies");
        assert_eq!(r.transaction_id, m.transaction_id);
        assert_eq!(r.xor_mapped_address, Some(mapped));
    }
});
