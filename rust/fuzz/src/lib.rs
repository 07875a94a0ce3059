//! Shared by the fuzz targets and the seed generator: the fixed keys the targets use and the
//! valid packets the committed seed corpora were made from.
//!
//! Regenerate the seeds (after changing a key or adding a packet) with
//! `cargo run --example gen_seeds` in this directory; it rewrites `corpus/<target>/seed-*`.

use trackyard_core::rtcp::{self, ReportBlock, SenderInfo};
use trackyard_core::srtp::{SrtpContext, SrtpProfile};
use trackyard_core::stun::{self, StunWriter};

/// The short-term ICE password `stun_parse` verifies MESSAGE-INTEGRITY with (RFC 5769 §2's).
pub const STUN_KEY: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// Every SRTP profile, in the order `srtp_unprotect` tries them.
pub const PROFILES: [SrtpProfile; 3] = [
    SrtpProfile::Aes128CmHmacSha1_80,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
];

/// The fixed master key and salt of a profile (same bytes on both sides).
pub fn srtp_context(profile: SrtpProfile) -> SrtpContext {
    let key: Vec<u8> = (0..profile.key_len() as u8).map(|i| 0x11 ^ i).collect();
    let salt: Vec<u8> = (0..profile.salt_len() as u8).map(|i| 0xa0 ^ i).collect();
    SrtpContext::new(profile, &key, &salt).expect("valid key lengths")
}

/// Decodes hex, ignoring whitespace; panics on bad input (seed tables only).
pub fn hex(s: &str) -> Vec<u8> {
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    clean
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Plain RTP packets: CSRCs, one- and two-byte extensions, padding, an opaque profile, codec
/// payloads (VP8 keyframe descriptor, H.264 STAP-A with SPS, Opus-sized audio).
pub fn rtp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "csrc-onebyte-ext",
            hex("91ef1234 deadbeef 11223344 55667788 bede0003 11aabb00 3301020304 000000 cafe"),
        ),
        (
            "twobyte-ext",
            hex("90600001 00000001 00000002 10000002 0700c802 abcd0000 ff"),
        ),
        ("padding", hex("a0600001 00000001 00000002 0102 000003")),
        (
            "opaque-ext-profile",
            hex("9060000a 00000010 00000003 abcd0001 01020304 05060708"),
        ),
        (
            "vp8-keyframe",
            hex("90e08123 00000bb8 0000000a bede0001 10ff0000 90e0812305401002009d012a80026801"),
        ),
        (
            "h264-stapa-sps",
            hex("80e61234 00000064 0000000b 78000267 42000268 ce"),
        ),
        (
            "opus-audio-level",
            hex("906f4000 0003c000 0000000c bede0001 10ff0000 fcfffe010203"),
        ),
    ]
}

/// RTCP compound packets of every type the walker decodes.
pub fn rtcp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        (
            "sr-block",
            hex(
                "81c8000c 00000001 01020304 05060708 00000009 0000000a 0000000b
                 00000005 0cfffffd 00010005 0000004d aabbccdd 00010000",
            ),
        ),
        (
            "rr-sdes-bye",
            hex(
                "81c90007 00000001 00000002 00000003 00000004 00000005 00000006 00000007
                 81ca0002 00000001 01017800 82cb0003 00000001 00000002 03627965",
            ),
        ),
        (
            "nack-pli-fir",
            hex(
                "81cd0003 00000001 00000002 00648005 81ce0002 00000001 00000002
                 84ce0004 00000003 00000000 00000004 05000000",
            ),
        ),
        (
            "remb",
            hex("8fce0005 00000001 00000000 52454d42 0117ffff 12345678"),
        ),
        (
            "twcc",
            hex("afcd0006 00000001 00000002 00640005 00000207 d250 04 fff8 01 02 01"),
        ),
        ("app", hex("83cc0002 00000001 6e616d65")),
    ];
    // built by the crate's own writers: SR+SDES, a multi-entry NACK, a TWCC with run and vector chunks
    let mut buf = [0u8; 512];
    let info = SenderInfo {
        ssrc: 7,
        ntp_time: 0xe000_0000_8000_0000,
        rtp_time: 90_000,
        packet_count: 100,
        octet_count: 120_000,
    };
    let block = ReportBlock {
        ssrc: 9,
        fraction_lost: 3,
        cumulative_lost: 17,
        highest_seq: 0x1_0010,
        jitter: 40,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 6553,
    };
    let mut n = rtcp::write_sr(&mut buf, &info, &[block]).unwrap();
    n += rtcp::write_sdes_cname(&mut buf[n..], 7, b"trackyard-cname").unwrap();
    out.push(("built-sr-sdes", buf[..n].to_vec()));
    let n = rtcp::write_nack(&mut buf, 1, 2, &[65530, 65531, 65535, 0, 9, 10, 40, 300]).unwrap();
    out.push(("built-nack", buf[..n].to_vec()));
    let received: Vec<(u16, u64)> = [(10u16, 1_000u64), (11, 1_250), (14, 2_000), (15, 90_000)]
        .into_iter()
        .chain((16..40).map(|s| (s, 90_000 + u64::from(s) * 500)))
        .collect();
    let (n, _) = rtcp::write_twcc(&mut buf, 1, 2, 5, &received).unwrap();
    out.push(("built-twcc", buf[..n].to_vec()));
    out
}

/// STUN messages: the RFC 5769 request (integrity under [`STUN_KEY`]) and IPv6 response, and
/// a binding request and success response built by the crate's writer with [`STUN_KEY`].
pub fn stun_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        ("rfc5769-request", hex("000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf")),
        ("rfc5769-response-v6", hex("010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c")),
    ];
    let txid = *b"trackyard-tx";
    let mut buf = [0u8; 256];
    let mut w = StunWriter::new(&mut buf, stun::BINDING_REQUEST, &txid).unwrap();
    w.attribute(stun::attr::USERNAME, b"srvufrag:cliufrag")
        .unwrap();
    w.attribute(stun::attr::PRIORITY, &0x6e00_01ffu32.to_be_bytes())
        .unwrap();
    w.attribute(stun::attr::USE_CANDIDATE, &[]).unwrap();
    w.attribute(
        stun::attr::ICE_CONTROLLING,
        &0x0102_0304_0506_0708u64.to_be_bytes(),
    )
    .unwrap();
    w.message_integrity(STUN_KEY).unwrap();
    w.fingerprint().unwrap();
    let n = w.finish();
    out.push(("built-request", buf[..n].to_vec()));
    let n = stun::write_binding_success(
        &mut buf,
        &txid,
        "192.0.2.1:32853".parse().unwrap(),
        STUN_KEY,
    )
    .unwrap();
    out.push(("built-success-v4", buf[..n].to_vec()));
    let n =
        stun::write_binding_error(&mut buf, &txid, 487, "Role Conflict", Some(STUN_KEY)).unwrap();
    out.push(("built-error", buf[..n].to_vec()));
    out
}

/// SRTP and SRTCP packets protected with each profile's fixed context, so the fuzzer starts
/// from inputs that authenticate; plus plain RTP/RTCP (the target also round-trips its input).
pub fn srtp_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for profile in PROFILES {
        let mut tx = srtp_context(profile);
        let tag = match profile {
            SrtpProfile::Aes128CmHmacSha1_80 => "cm",
            SrtpProfile::AeadAes128Gcm => "gcm128",
            SrtpProfile::AeadAes256Gcm => "gcm256",
        };
        let mut p = hex("90600007 00000001 00000002 bede0001 10aa0000 0102030405060708");
        tx.protect_rtp_vec(&mut p).unwrap();
        out.push((format!("{tag}-rtp"), p));
        let mut r = hex("81c90001 00000002 81ce0002 00000002 00000001");
        tx.protect_rtcp_vec(&mut r).unwrap();
        out.push((format!("{tag}-rtcp"), r));
    }
    out.push(("plain-rtp".into(), rtp_seeds()[0].1.clone()));
    out.push(("plain-rtcp".into(), rtcp_seeds()[1].1.clone()));
    out
}
