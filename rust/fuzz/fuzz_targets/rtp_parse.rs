//! RTP as the forwarder sees it after SRTP unprotect: `header_len`, `RtpHeader::parse`, every
//! accessor, the RFC 8285 extension walk, codec keyframe detection on the payload, then the
//! per-down-track rewrites (`RtpHeaderMut`: ids, extension data, seq/ts/SSRC via a `Munger`)
//! on a copy, checking that the rewritten packet still parses with the same layout.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use trackyard_core::codec::{self, Codec};
use trackyard_core::munger::{Munged, Munger};
use trackyard_core::rtp::{self, ExtensionForm, RtpHeader, RtpHeaderMut};

fuzz_target!(|data: &[u8]| {
    let base = rtp::header_len(data);
    let Ok(h) = RtpHeader::parse(data) else {
        return;
    };
    assert_eq!(base, Ok(h.header_len()), "header_len disagrees with parse");
    assert_eq!(
        h.header_len() + h.payload_len() + h.padding_len(),
        data.len(),
        "layout does not add up"
    );
    assert_eq!(h.csrcs().count(), h.csrc_count());
    for i in 0..h.csrc_count() {
        assert!(h.csrc(i).is_some());
    }
    assert!(h.csrc(h.csrc_count()).is_none());
    let exts: Vec<(u8, usize)> = h.extensions().map(|e| (e.id, e.data.len())).collect();
    for &(id, _) in &exts {
        assert!(h.extension(id).is_some());
        match h.extension_form() {
            Some(ExtensionForm::OneByte) => assert!((1..=14).contains(&id)),
            Some(ExtensionForm::TwoByte) => assert!(id >= 1),
            _ => panic!("elements from an opaque or absent block"),
        }
    }
    black_box((
        h.marker(),
        h.payload_type(),
        h.has_padding(),
        h.has_extension(),
        h.as_bytes().len(),
    ));
    let payload = h.payload();
    assert_eq!(payload.len(), h.payload_len());
    for c in [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
        let _ = black_box(codec::is_keyframe(c, payload));
    }
    let _ = black_box((
        codec::vp8_descriptor(payload),
        codec::vp8_keyframe_size(payload),
    ));

    // what a down-track does to its own copy
    let mut copy = data.to_vec();
    let mut munger = Munger::new(90_000, 1000, 5000);
    let Munged::Forward { seq, timestamp, .. } =
        munger.forward(h.ssrc(), h.sequence(), h.timestamp(), 0)
    else {
        panic!("the first packet of a down-track is always forwarded");
    };
    assert_eq!((seq, timestamp), (1000, 5000));
    {
        let mut m =
            RtpHeaderMut::parse(&mut copy).expect("RtpHeaderMut accepts what RtpHeader does");
        assert_eq!(m.header_len(), h.header_len());
        let two_byte = m.extension_form() == Some(ExtensionForm::TwoByte);
        m.rewrite_extension_ids(|id| {
            if two_byte {
                id.wrapping_add(100).max(1)
            } else {
                id % 14 + 1
            }
        })
        .expect("ids mapped into the valid range are accepted");
        if let Some(&(id, _)) = exts.first() {
            let new_id = if two_byte {
                id.wrapping_add(100).max(1)
            } else {
                id % 14 + 1
            };
            if let Some(d) = m.extension_mut(new_id) {
                d.fill(0xA5);
            }
        }
        m.set_sequence(seq);
        m.set_timestamp(timestamp);
        m.set_ssrc(0x5EED_0001);
        m.set_marker(!h.marker());
        m.set_payload_type(h.payload_type() ^ 1);
        black_box(m.payload_mut().len());
        black_box(m.as_header().sequence());
    }
    let r = RtpHeader::parse(&copy).expect("a rewritten packet still parses");
    assert_eq!(
        (r.header_len(), r.payload_len(), r.padding_len()),
        (h.header_len(), h.payload_len(), h.padding_len())
    );
    assert_eq!(
        (r.sequence(), r.timestamp(), r.ssrc()),
        (1000, 5000, 0x5EED_0001)
    );
    assert_eq!(r.marker(), !h.marker());
    assert_eq!(
        r.payload(),
        h.payload(),
        "rewrites must not touch the payload"
    );
    let lens: Vec<usize> = r.extensions().map(|e| e.data.len()).collect();
    let want: Vec<usize> = exts.iter().map(|&(_, l)| l).collect();
    assert_eq!(lens, want, "rewrites changed the extension layout");
});
