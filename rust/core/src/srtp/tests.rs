//! SRTP known-answer tests (RFC 3711 Appendix B, RFC 7714 §16–§17), a libsrtp cross-check
//! from a pylibsrtp-generated fixture, and behaviour tests (rollover, replay, tampering).

use super::transform::{
    aes_cm_xor, kdf, Transform, LABEL_RTCP_KEY, LABEL_RTCP_SALT, LABEL_RTP_AUTH, LABEL_RTP_KEY,
    LABEL_RTP_SALT,
};
use super::*;
use crate::testutil::hex;
use aes::{Aes128, Aes256};
use cipher::KeyInit;

const PROFILES: [SrtpProfile; 3] = [
    SrtpProfile::Aes128CmHmacSha1_80,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
];

/// RFC 3711 Appendix B.2: AES-CM keystream for session key 2B7E…, salt F0F1…FCFD, SSRC 0,
/// index 0 (the IV is `salt || 0000`).
#[test]
fn rfc3711_b2_keystream() {
    let aes = Aes128::new_from_slice(&hex("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap();
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"));
    let mut ks = vec![0u8; 48];
    aes_cm_xor(&aes, iv, &mut ks);
    assert_eq!(
        ks,
        hex("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0")
    );
    // RFC B.2 also lists the block at counter 0xFEFF: check the counter arithmetic
    let mut far = vec![0u8; 16 * 0xff00];
    aes_cm_xor(&aes, iv, &mut far);
    assert_eq!(
        &far[16 * 0xfeff..],
        &hex("EC8CDF7398607CB0F2D21675EA9EA1E4")[..]
    );
}

/// RFC 3711 Appendix B.3: key derivation.
#[test]
fn rfc3711_b3_key_derivation() {
    let master = Aes128::new_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139")).unwrap();
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut key = [0u8; 16];
    kdf(&master, &salt, LABEL_RTP_KEY, &mut key);
    assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut s = [0u8; 14];
    kdf(&master, &salt, LABEL_RTP_SALT, &mut s);
    assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0u8; 94];
    kdf(&master, &salt, LABEL_RTP_AUTH, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex(
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
        )
    );
}

/// RFC 6188 §7.2: the same KDF with AES-256 (used for the AEAD_AES_256_GCM master key).
#[test]
fn rfc6188_aes256_key_derivation() {
    let master = Aes256::new_from_slice(&hex(
        "F0F04914B513F2763A1B1FA130F10E2998F6F6E43E4309D1E622A0E332B9F1B6",
    ))
    .unwrap();
    let salt = hex("3B04803DE51EE7C96423AB5B78D2");
    let mut key = [0u8; 32];
    kdf(&master, &salt, LABEL_RTP_KEY, &mut key);
    assert_eq!(
        key.to_vec(),
        hex("5BA1064E30EC51613CAD926C5A28EF731EC7FB397F70A960653CAF06554CD8C4")
    );
    let mut s = [0u8; 14];
    kdf(&master, &salt, LABEL_RTP_SALT, &mut s);
    assert_eq!(s.to_vec(), hex("FA31791685CA444A9E07C6C64E93"));
    // the labels differ only in byte 7
    let (mut a, mut b) = ([0u8; 16], [0u8; 12]);
    kdf(&master, &salt[..12], LABEL_RTCP_KEY, &mut a);
    kdf(&master, &salt[..12], LABEL_RTCP_SALT, &mut b);
    assert_ne!(a[..12], b[..]);
}

/// A context over RFC 7714's *session* key and salt (its vectors skip the KDF).
fn gcm_session(profile: SrtpProfile) -> SrtpContext {
    let key = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let mut salt = [0u8; 14];
    salt[..12].copy_from_slice(&hex("517569642070726f2071756f"));
    let k = &key[..profile.key_len()];
    SrtpContext::from_transforms(
        profile,
        Transform::from_session_keys(profile, k, &salt, &[0; 20]),
        Transform::from_session_keys(profile, k, &salt, &[0; 20]),
    )
}

const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
                           69736120 696e2070 61727465 73207472 6573";
const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
                            deadbeef deadbeef deadbeef deadbeef deadbeef";

fn protect_vec(ctx: &mut SrtpContext, plain: &[u8], rtcp: bool, encrypt: bool) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 32, 0);
    let n = if rtcp {
        ctx.protect_rtcp_with(&mut buf, plain.len(), encrypt)
    } else {
        ctx.protect_rtp(&mut buf, plain.len())
    };
    buf.truncate(n.unwrap());
    buf
}

/// RFC 7714 §16.1 (AEAD_AES_128_GCM) and §16.2 (AEAD_AES_256_GCM) SRTP encryption and
/// decryption.
#[test]
fn rfc7714_srtp_vectors() {
    let cases = [
        (SrtpProfile::AeadAes128Gcm, "f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce"),
        (SrtpProfile::AeadAes256Gcm, "32b1de78 a822fe12 ef9f78fa 332e33aa b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13"),
    ];
    let plain = hex(RFC7714_RTP);
    for (profile, ct) in cases {
        let want = [&plain[..12], &hex(ct)[..]].concat();
        assert_eq!(
            protect_vec(&mut gcm_session(profile), &plain, false, true),
            want,
            "{profile:?}"
        );
        let mut rx = gcm_session(profile);
        let mut buf = want.clone();
        let n = rx.unprotect_rtp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..]);
        let mut again = want.clone();
        assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
        let mut bad = want.clone();
        bad[20] ^= 1;
        assert_eq!(
            gcm_session(profile).unprotect_rtp(&mut bad),
            Err(SrtpError::AuthFailed)
        );
    }
}

/// RFC 7714 §17.1–§17.4: SRTCP with and without encryption, both key sizes.
#[test]
fn rfc7714_srtcp_vectors() {
    let cases = [
        (SrtpProfile::AeadAes128Gcm, true, "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4"),
        (SrtpProfile::AeadAes256Gcm, true, "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50 a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c b26ac3be 800005d4"),
        (SrtpProfile::AeadAes128Gcm, false, "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790 125f62b3 000005d4"),
        (SrtpProfile::AeadAes256Gcm, false, "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef 91db4afb feee5a97 8fab4393 ed2615fe 000005d4"),
    ];
    let plain = hex(RFC7714_RTCP);
    for (profile, encrypt, wire) in cases {
        let want = hex(wire);
        let mut tx = gcm_session(profile);
        tx.set_srtcp_index(0x4d61_7273, 0x5d4).unwrap();
        assert_eq!(
            protect_vec(&mut tx, &plain, true, encrypt),
            want,
            "{profile:?} E={encrypt}"
        );
        let mut rx = gcm_session(profile);
        let mut buf = want.clone();
        let n = rx.unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(&buf[..n], &plain[..]);
        let mut again = want.clone();
        assert_eq!(rx.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));
        let mut bad = want.clone();
        bad[9] ^= 0x40;
        assert_eq!(
            gcm_session(profile).unprotect_rtcp(&mut bad),
            Err(SrtpError::AuthFailed)
        );
    }
}

/// libsrtp's AES_CM_128_HMAC_SHA1_80 self-test packet: master key in, so KDF, AES-CM and
/// HMAC-SHA1 are all exercised.
#[test]
fn libsrtp_aes_cm_sha1_80_packet() {
    let mut ctx = SrtpContext::new(
        SrtpProfile::Aes128CmHmacSha1_80,
        &hex("e1f97a0d3e018be0d64fa32c06de4139"),
        &hex("0ec675ad498afeebb6960b3aabe6"),
    )
    .unwrap();
    let plain = hex("800f1234decafbadcafebabeabababababababababababababababab");
    let want = hex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb");
    assert_eq!(protect_vec(&mut ctx, &plain, false, true), want);
}

fn ctx(profile: SrtpProfile) -> SrtpContext {
    let key: Vec<u8> = (0..profile.key_len() as u8).collect();
    let salt: Vec<u8> = (100..100 + profile.salt_len() as u8).collect();
    SrtpContext::new(profile, &key, &salt).unwrap()
}

fn rtp_packet(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 90).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

#[test]
fn round_trips_every_profile_rtp_and_rtcp() {
    for profile in PROFILES {
        let (mut tx, mut rx) = (ctx(profile), ctx(profile));
        for seq in 0..50u16 {
            let plain = rtp_packet(seq, 7, usize::from(seq) * 29 % 1200);
            let mut pkt = Vec::with_capacity(1500);
            pkt.extend_from_slice(&plain);
            let cap = pkt.capacity();
            tx.protect_rtp_vec(&mut pkt).unwrap();
            assert_eq!(pkt.capacity(), cap, "no reallocation");
            assert_eq!(pkt.len(), plain.len() + profile.rtp_overhead());
            if plain.len() > 12 {
                assert_ne!(&pkt[12..plain.len()], &plain[12..]);
            }
            let n = rx.unprotect_rtp(&mut pkt).unwrap();
            assert_eq!(&pkt[..n], &plain[..]);
        }
        let sr = hex("80c80006 00000007 e0000000 12345678 00001092 0000000a 000003e8");
        for _ in 0..3 {
            let mut pkt = sr.clone();
            tx.protect_rtcp_vec(&mut pkt).unwrap();
            assert_eq!(pkt.len(), sr.len() + profile.rtcp_overhead());
            let n = rx.unprotect_rtcp(&mut pkt).unwrap();
            assert_eq!(&pkt[..n], &sr[..]);
        }
    }
}

#[test]
fn sequence_wrap_increments_roc_on_both_sides() {
    for profile in PROFILES {
        let (mut tx, mut rx) = (ctx(profile), ctx(profile));
        let seqs = [65533u16, 65534, 65535, 0, 1, 65532, 2];
        for &seq in &seqs {
            let plain = rtp_packet(seq, 9, 40);
            let mut pkt = plain.clone();
            tx.protect_rtp_vec(&mut pkt).unwrap();
            let n = rx.unprotect_rtp(&mut pkt).unwrap();
            assert_eq!(&pkt[..n], &plain[..], "{profile:?} seq {seq}");
        }
        assert_eq!(tx.roc(9), Some(1));
        assert_eq!(rx.roc(9), Some(1));
        // a receiver that assumes the wrong ROC cannot authenticate
        let mut fresh = ctx(profile);
        let mut pkt = rtp_packet(3, 9, 40);
        tx.protect_rtp_vec(&mut pkt).unwrap();
        assert_eq!(
            fresh.unprotect_rtp(&mut pkt.clone()),
            Err(SrtpError::AuthFailed)
        );
        fresh.set_roc(9, 1).unwrap();
        assert!(fresh.unprotect_rtp(&mut pkt).is_ok());
    }
}

#[test]
fn replays_and_old_packets_are_rejected() {
    for profile in PROFILES {
        let (mut tx, mut rx) = (ctx(profile), ctx(profile));
        let mut sent = Vec::new();
        for seq in 0..1100u16 {
            let mut pkt = rtp_packet(seq, 1, 10);
            tx.protect_rtp_vec(&mut pkt).unwrap();
            sent.push(pkt);
        }
        for pkt in sent.iter().skip(1) {
            assert!(rx.unprotect_rtp(&mut pkt.clone()).is_ok());
        }
        assert_eq!(
            rx.unprotect_rtp(&mut sent[1099].clone()),
            Err(SrtpError::Replayed)
        );
        assert_eq!(
            rx.unprotect_rtp(&mut sent[500].clone()),
            Err(SrtpError::Replayed)
        );
        assert_eq!(
            rx.unprotect_rtp(&mut sent[0].clone()),
            Err(SrtpError::TooOld)
        );
    }
}

#[test]
fn tampering_and_truncation_are_rejected_without_state_change() {
    for profile in PROFILES {
        let (mut tx, mut rx) = (ctx(profile), ctx(profile));
        let mut pkt = rtp_packet(10, 5, 100);
        tx.protect_rtp_vec(&mut pkt).unwrap();
        for i in [1usize, 5, 11, 20, pkt.len() - 1] {
            let mut bad = pkt.clone();
            bad[i] ^= 0x10;
            assert!(rx.unprotect_rtp(&mut bad).is_err(), "{profile:?} flip {i}");
        }
        let mut other_key = SrtpContext::new(
            profile,
            &vec![0xee; profile.key_len()],
            &vec![1; profile.salt_len()],
        )
        .unwrap();
        assert_eq!(
            other_key.unprotect_rtp(&mut pkt.clone()),
            Err(SrtpError::AuthFailed)
        );
        for cut in 0..pkt.len() {
            assert!(
                rx.unprotect_rtp(&mut pkt[..cut].to_vec()).is_err(),
                "{profile:?} cut {cut}"
            );
        }
        // failed attempts left no stream state behind
        assert_eq!(rx.roc(5), None);
        assert!(rx.unprotect_rtp(&mut pkt).is_ok());
        let mut rtcp = hex("80c90001 00000005");
        tx.protect_rtcp_vec(&mut rtcp).unwrap();
        for cut in 0..rtcp.len() {
            assert!(rx.unprotect_rtcp(&mut rtcp[..cut].to_vec()).is_err());
        }
        let mut bad = rtcp.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(rx.unprotect_rtcp(&mut bad), Err(SrtpError::AuthFailed));
        assert_eq!(
            tx.protect_rtp(&mut [0x80; 20], 20),
            Err(SrtpError::BufferTooSmall)
        );
    }
}

#[test]
fn stream_table_is_bounded() {
    let (mut tx, mut rx) = (
        ctx(SrtpProfile::AeadAes128Gcm),
        ctx(SrtpProfile::AeadAes128Gcm),
    );
    rx.set_max_streams(2);
    for ssrc in 1..=3u32 {
        let mut pkt = rtp_packet(1, ssrc, 10);
        tx.protect_rtp_vec(&mut pkt).unwrap();
        let r = rx.unprotect_rtp(&mut pkt);
        assert_eq!(r.is_ok(), ssrc <= 2);
    }
    rx.remove_stream(1);
    let mut pkt = rtp_packet(2, 3, 10);
    tx.protect_rtp_vec(&mut pkt).unwrap();
    assert!(rx.unprotect_rtp(&mut pkt).is_ok());
}

#[test]
fn keying_material_split_and_profile_names() {
    let material: Vec<u8> = (0..56).collect();
    let (client, server) = split_keying_material(SrtpProfile::AeadAes128Gcm, &material).unwrap();
    assert_eq!(client.key, (0..16).collect::<Vec<u8>>());
    assert_eq!(server.key, (16..32).collect::<Vec<u8>>());
    assert_eq!(client.salt, (32..44).collect::<Vec<u8>>());
    assert_eq!(server.salt, (44..56).collect::<Vec<u8>>());
    assert!(split_keying_material(SrtpProfile::Aes128CmHmacSha1_80, &material).is_err());
    assert!(SrtpContext::new(SrtpProfile::AeadAes256Gcm, &[0; 16], &[0; 12]).is_err());
    for p in PROFILES {
        assert_eq!(SrtpProfile::from_name(p.name()), Some(p));
    }
    assert_eq!(
        SrtpProfile::from_dtls_id(7),
        Some(SrtpProfile::AeadAes128Gcm)
    );
}

/// Packets protected by libsrtp (via pylibsrtp, see testdata/gen_srtp_vectors.py): ours must
/// unprotect them, and protecting the same plain packets must give libsrtp's bytes exactly.
#[test]
fn pylibsrtp_cross_check() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/srtp_pylibsrtp.txt"
    ));
    let mut current: Option<(SrtpContext, SrtpContext)> = None;
    let (mut profiles, mut checked) = (0, 0);
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "profile" => {
                let p = SrtpProfile::from_name(f[1]).unwrap();
                let m = hex(f[2]);
                let (k, s) = m.split_at(p.key_len());
                current = Some((
                    SrtpContext::new(p, k, s).unwrap(),
                    SrtpContext::new(p, k, s).unwrap(),
                ));
                profiles += 1;
            }
            kind => {
                let (tx, rx) = current.as_mut().unwrap();
                let (plain, theirs) = (hex(f[1]), hex(f[2]));
                let rtcp = kind == "rtcp";
                assert_eq!(
                    protect_vec(tx, &plain, rtcp, true),
                    theirs,
                    "{} protect {line}",
                    tx.profile().name()
                );
                let mut buf = theirs.clone();
                let n = if rtcp {
                    rx.unprotect_rtcp(&mut buf)
                } else {
                    rx.unprotect_rtp(&mut buf)
                };
                assert_eq!(
                    &buf[..n.unwrap()],
                    &plain[..],
                    "{} unprotect {line}",
                    rx.profile().name()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(profiles, 3);
    assert!(checked >= 45, "{checked}");
}
