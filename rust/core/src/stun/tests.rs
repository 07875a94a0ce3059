//! Tests of the stun module: the RFC 5769 sample request and responses (parsed, verified and
//! rebuilt byte for byte), binding responses, ICE attributes, malformed input.

use super::*;
use crate::testutil::{hex, XorShift};

const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
/// RFC 5769 §2.1 sample request.
const REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
/// RFC 5769 §2.2 sample IPv4 response.
const RESPONSE_V4: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";
/// RFC 5769 §2.3 sample IPv6 response.
const RESPONSE_V6: &str = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c";

#[test]
fn rfc5769_sample_request() {
    let b = hex(REQUEST);
    assert!(is_stun(&b));
    let m = StunMessage::parse(&b).unwrap();
    assert!(m.is_binding_request());
    assert_eq!(m.username, Some(&b"evtj:h6vY"[..]));
    assert_eq!(m.username_parts(), Some((&b"evtj"[..], &b"h6vY"[..])));
    assert_eq!(m.priority, Some(0x6e00_01ff));
    assert_eq!(m.ice_controlled, Some(0x932f_f9b1_5126_3b36));
    assert_eq!(m.ice_controlling, None);
    assert!(!m.use_candidate);
    assert_eq!(
        m.attributes().find(|a| a.0 == attr::SOFTWARE).unwrap().1,
        b"STUN test client"
    );
    assert_eq!(m.verify_integrity(PASSWORD), Ok(()));
    assert_eq!(m.verify_fingerprint(), Ok(()));
    assert_eq!(
        m.verify_integrity(b"wrong"),
        Err(StunError::IntegrityMismatch)
    );
    let mut bad = b.clone();
    bad[65] ^= 1; // inside USERNAME
    let m = StunMessage::parse(&bad).unwrap();
    assert_eq!(
        m.verify_integrity(PASSWORD),
        Err(StunError::IntegrityMismatch)
    );
    assert_eq!(m.verify_fingerprint(), Err(StunError::FingerprintMismatch));
}

#[test]
fn rfc5769_responses_parse_and_rebuild_byte_exact() {
    let cases = [
        (RESPONSE_V4, "192.0.2.1:32853"),
        (RESPONSE_V6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
    ];
    for (vector, addr) in cases {
        let b = hex(vector);
        let m = StunMessage::parse(&b).unwrap();
        let addr: SocketAddr = addr.parse().unwrap();
        assert_eq!(m.msg_type, BINDING_SUCCESS);
        assert_eq!(m.xor_mapped_address, Some(addr));
        assert_eq!(m.verify_integrity(PASSWORD), Ok(()));
        assert_eq!(m.verify_fingerprint(), Ok(()));
        // rebuild: SOFTWARE is padded with spaces in the RFC's samples
        let mut out = [0u8; 128];
        let mut w = StunWriter::new(&mut out, BINDING_SUCCESS, &m.transaction_id).unwrap();
        w.attribute_padded(attr::SOFTWARE, b"test vector", b' ')
            .unwrap();
        w.xor_mapped_address(addr).unwrap();
        w.message_integrity(PASSWORD).unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        assert_eq!(&out[..n], &b[..]);
    }
}

#[test]
fn binding_success_answers_a_request() {
    let req = hex(REQUEST);
    let m = StunMessage::parse(&req).unwrap();
    for addr in ["10.1.2.3:5000", "[fe80::1:2]:65535"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut out = [0u8; 128];
        let n = write_binding_success(&mut out, &m.transaction_id, addr, PASSWORD).unwrap();
        let r = StunMessage::parse(&out[..n]).unwrap();
        assert_eq!(r.msg_type, BINDING_SUCCESS);
        assert_eq!(r.transaction_id, m.transaction_id);
        assert_eq!(r.xor_mapped_address, Some(addr));
        assert_eq!(r.verify_integrity(PASSWORD), Ok(()));
        assert_eq!(r.verify_fingerprint(), Ok(()));
        assert!(
            write_binding_success(&mut out[..n - 1], &m.transaction_id, addr, PASSWORD).is_err()
        );
    }
    let mut out = [0u8; 128];
    let n = write_binding_error(
        &mut out,
        &m.transaction_id,
        487,
        "Role Conflict",
        Some(PASSWORD),
    )
    .unwrap();
    let r = StunMessage::parse(&out[..n]).unwrap();
    assert_eq!(r.error_code, Some((487, &b"Role Conflict"[..])));
    assert_eq!(r.verify_integrity(PASSWORD), Ok(()));
}

#[test]
fn use_candidate_and_controlling_are_read() {
    let mut out = [0u8; 128];
    let mut w = StunWriter::new(&mut out, BINDING_REQUEST, &[7; 12]).unwrap();
    w.attribute(attr::USERNAME, b"local:remote").unwrap();
    w.attribute(attr::PRIORITY, &1u32.to_be_bytes()).unwrap();
    w.attribute(attr::USE_CANDIDATE, &[]).unwrap();
    w.attribute(attr::ICE_CONTROLLING, &5u64.to_be_bytes())
        .unwrap();
    w.message_integrity(b"pwd").unwrap();
    w.attribute(attr::PRIORITY, &2u32.to_be_bytes()).unwrap(); // after MI: ignored
    w.fingerprint().unwrap();
    let n = w.finish();
    let m = StunMessage::parse(&out[..n]).unwrap();
    assert!(m.use_candidate);
    assert_eq!((m.priority, m.ice_controlling), (Some(1), Some(5)));
    assert_eq!(m.verify_integrity(b"pwd"), Ok(()));
    assert_eq!(m.verify_fingerprint(), Ok(()));
}

#[test]
fn garbage_is_rejected() {
    let req = hex(REQUEST);
    assert_eq!(
        StunMessage::parse(&req[..19]).unwrap_err(),
        StunError::TooShort
    );
    assert_eq!(
        StunMessage::parse(&req[..40]).unwrap_err(),
        StunError::TooShort
    );
    let mut b = req.clone();
    b[4] ^= 1;
    assert_eq!(StunMessage::parse(&b).unwrap_err(), StunError::NotStun);
    let mut b = req.clone();
    b[0] |= 0x80;
    assert_eq!(StunMessage::parse(&b).unwrap_err(), StunError::NotStun);
    let mut b = req.clone();
    b.extend_from_slice(&[0; 4]);
    assert_eq!(StunMessage::parse(&b).unwrap_err(), StunError::NotStun);
    // attribute length past the end
    let mut b = req.clone();
    b[22..24].copy_from_slice(&0x00ffu16.to_be_bytes());
    assert_eq!(StunMessage::parse(&b).unwrap_err(), StunError::BadAttribute);
    // PRIORITY with a wrong length
    let mut out = [0u8; 64];
    let mut w = StunWriter::new(&mut out, BINDING_REQUEST, &[1; 12]).unwrap();
    w.attribute(attr::PRIORITY, &[1, 2]).unwrap();
    let n = w.finish();
    assert_eq!(
        StunMessage::parse(&out[..n]).unwrap_err(),
        StunError::BadAttribute
    );
    // something after FINGERPRINT
    let mut w = StunWriter::new(&mut out, BINDING_REQUEST, &[1; 12]).unwrap();
    w.fingerprint().unwrap();
    w.attribute(attr::USERNAME, b"x").unwrap();
    let n = w.finish();
    assert_eq!(
        StunMessage::parse(&out[..n]).unwrap_err(),
        StunError::TrailingAttribute
    );
    // no integrity
    let n = StunWriter::new(&mut out, BINDING_REQUEST, &[1; 12])
        .unwrap()
        .finish();
    let m = StunMessage::parse(&out[..n]).unwrap();
    assert_eq!(m.verify_integrity(PASSWORD), Err(StunError::Missing));
    let mut rng = XorShift::new(99);
    for _ in 0..2000 {
        let mut b = vec![0u8; rng.below(120) as usize];
        rng.fill(&mut b);
        if let Ok(m) = StunMessage::parse(&b) {
            let _ = (
                m.verify_integrity(PASSWORD),
                m.verify_fingerprint(),
                m.attributes().count(),
            );
        }
    }
}
