//! Tests of the rtp module: header fields, RFC 8285 one- and two-byte extensions, padding,
//! malformed input, in-place rewrites.

use super::*;
use crate::testutil::hex;

/// V=2 X=1 CC=1, M=1 PT=111, seq 0x1234, ts 0xdeadbeef, ssrc 0x11223344, csrc 0x55667788,
/// one-byte block: id1 len1 [aa bb], padding byte, id3 len3 [01 02 03 04], pad to 12 bytes.
fn one_byte_packet() -> Vec<u8> {
    hex("91ef1234 deadbeef 11223344 55667788
         bede0003 11aabb00 3301020304 000000
         cafe")
}

#[test]
fn parses_fields_and_one_byte_extensions() {
    let p = one_byte_packet();
    let h = RtpHeader::parse(&p).unwrap();
    assert!(h.marker());
    assert_eq!(h.payload_type(), 111);
    assert_eq!(h.sequence(), 0x1234);
    assert_eq!(h.timestamp(), 0xdead_beef);
    assert_eq!(h.ssrc(), 0x1122_3344);
    assert_eq!(h.csrcs().collect::<Vec<_>>(), vec![0x5566_7788]);
    assert_eq!(h.csrc(1), None);
    assert_eq!(h.extension_form(), Some(ExtensionForm::OneByte));
    let exts: Vec<_> = h.extensions().map(|e| (e.id, e.data.to_vec())).collect();
    assert_eq!(exts, vec![(1, vec![0xaa, 0xbb]), (3, vec![1, 2, 3, 4])]);
    assert_eq!(h.extension(3), Some(&[1u8, 2, 3, 4][..]));
    assert_eq!(h.extension(2), None);
    assert_eq!(h.header_len(), 32);
    assert_eq!(header_len(&p), Ok(32));
    assert_eq!(h.payload(), &[0xca, 0xfe]);
}

#[test]
fn two_byte_extensions_and_zero_length_element() {
    // X=1, profile 0x1000, 2 words: id 7 len 0, id 200 len 2 [ab cd], padding
    let p = hex("90600001 00000001 00000002 10000002 0700c802 abcd0000 ff");
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.extension_form(), Some(ExtensionForm::TwoByte));
    let exts: Vec<_> = h.extensions().map(|e| (e.id, e.data.len())).collect();
    assert_eq!(exts, vec![(7, 0), (200, 2)]);
    assert_eq!(h.extension(200), Some(&[0xab, 0xcd][..]));
    assert_eq!(h.payload(), &[0xff]);
}

#[test]
fn one_byte_id_15_stops_processing() {
    let p = hex("90600001 00000001 00000002 bede0001 f0 21 aabb");
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.extensions().count(), 0);
}

#[test]
fn padding_is_removed_and_checked() {
    let p = hex("a0600001 00000001 00000002 0102 000003");
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(h.payload(), &[1, 2]);
    assert_eq!(h.padding_len(), 3);
    let mut bad = p.clone();
    *bad.last_mut().unwrap() = 0;
    assert_eq!(RtpHeader::parse(&bad).unwrap_err(), RtpError::BadPadding);
    *bad.last_mut().unwrap() = 6;
    assert_eq!(RtpHeader::parse(&bad).unwrap_err(), RtpError::BadPadding);
}

#[test]
fn errors_on_bad_input() {
    assert_eq!(
        RtpHeader::parse(&[0x80; 11]).unwrap_err(),
        RtpError::TooShort
    );
    assert_eq!(
        RtpHeader::parse(&[0x40; 12]).unwrap_err(),
        RtpError::BadVersion
    );
    let mut csrc = vec![0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_eq!(RtpHeader::parse(&csrc).unwrap_err(), RtpError::TooShort);
    csrc.extend_from_slice(&[5, 6, 7, 8]);
    assert!(RtpHeader::parse(&csrc).is_ok());
    // extension header says 2 words, only 1 present
    let p = hex("90600001 00000001 00000002 bede0002 10aa0000");
    assert_eq!(
        RtpHeader::parse(&p).unwrap_err(),
        RtpError::ExtensionTruncated
    );
    // element length runs past the block
    let p = hex("90600001 00000001 00000002 bede0001 13aabbcc dd");
    assert_eq!(RtpHeader::parse(&p).unwrap_err(), RtpError::BadExtension);
    let p = hex("90600001 00000001 00000002 10000001 0105aabb");
    assert_eq!(RtpHeader::parse(&p).unwrap_err(), RtpError::BadExtension);
    // header_len ignores bad elements (SRTP only needs the length)
    assert_eq!(header_len(&p), Ok(20));
}

#[test]
fn setters_rewrite_in_place() {
    let mut p = one_byte_packet();
    let mut h = RtpHeaderMut::parse(&mut p).unwrap();
    h.set_marker(false);
    h.set_payload_type(96);
    h.set_sequence(0xfffe);
    h.set_timestamp(7);
    h.set_ssrc(0xabcdef01);
    h.extension_mut(1).unwrap().copy_from_slice(&[0x12, 0x34]);
    h.rewrite_extension_ids(|id| id + 4).unwrap();
    assert_eq!(
        h.rewrite_extension_ids(|_| 15),
        Err(RtpError::BadExtensionId)
    );
    h.payload_mut()[0] = 0x11;
    let h = RtpHeader::parse(&p).unwrap();
    assert!(!h.marker());
    assert_eq!(h.payload_type(), 96);
    assert_eq!(h.sequence(), 0xfffe);
    assert_eq!(h.timestamp(), 7);
    assert_eq!(h.ssrc(), 0xabcd_ef01);
    assert_eq!(h.extension(5), Some(&[0x12, 0x34][..]));
    assert_eq!(h.extension(7), Some(&[1, 2, 3, 4][..]));
    assert_eq!(h.payload(), &[0x11, 0xfe]);
}

#[test]
fn two_byte_id_rewrite() {
    let mut p = hex("90600001 00000001 00000002 10000002 0700c802 abcd0000");
    let mut h = RtpHeaderMut::parse(&mut p).unwrap();
    h.rewrite_extension_ids(|id| if id == 200 { 20 } else { id })
        .unwrap();
    assert_eq!(
        h.rewrite_extension_ids(|_| 0),
        Err(RtpError::BadExtensionId)
    );
    assert_eq!(
        RtpHeader::parse(&p).unwrap().extension(20),
        Some(&[0xab, 0xcd][..])
    );
}

#[test]
fn write_header_round_trips() {
    let mut b = [0u8; 12];
    write_header(&mut b, 100, true, 9, 10, 11).unwrap();
    let h = RtpHeader::parse(&b).unwrap();
    assert_eq!(
        (
            h.payload_type(),
            h.marker(),
            h.sequence(),
            h.timestamp(),
            h.ssrc()
        ),
        (100, true, 9, 10, 11)
    );
    assert_eq!(
        write_header(&mut [0u8; 4], 0, false, 0, 0, 0),
        Err(RtpError::BufferTooSmall)
    );
}
