//! Forwarding rewrites beyond the fixed header: mapping a publisher's header extensions onto a
//! subscriber's (blanking the ones the subscriber must not see), and unwrapping RFC 4588
//! retransmission packets back into the media packets they repair.

use super::{layout, next_element, ExtensionForm, RtpError, RtpHeaderMut};

impl RtpHeaderMut<'_> {
    /// Maps every extension element's id through `map`; an element mapped to 0 (or to an id
    /// its block's form cannot carry) is blanked: its header and data bytes become padding
    /// (zero bytes, RFC 8285 §4.2/§4.3), so the packet keeps its length. Returns how many
    /// elements were blanked. Opaque (non-RFC 8285) blocks are left alone.
    pub fn remap_extensions(&mut self, mut map: impl FnMut(u8) -> u8) -> usize {
        let Some((form, s, e)) = self.layout.ext else {
            return 0;
        };
        let mut blanked = 0;
        let mut pos = 0;
        while let Some(Ok((id, ds, de))) = next_element(form, &self.buf[s..e], &mut pos) {
            let new = map(id);
            let head = match form {
                ExtensionForm::OneByte => 1,
                ExtensionForm::TwoByte => 2,
                ExtensionForm::Other(_) => return blanked,
            };
            let fits = match form {
                ExtensionForm::OneByte => (1..=14).contains(&new),
                _ => new != 0,
            };
            let at = s + ds - head;
            if !fits {
                self.buf[at..s + de].fill(0);
                blanked += 1;
            } else if head == 1 {
                self.buf[at] = (new << 4) | (self.buf[at] & 0x0F);
            } else {
                self.buf[at] = new;
            }
        }
        blanked
    }
}

/// Turns the RFC 4588 retransmission packet in `buf[..len]` back into the media packet it
/// carries, in place: the original sequence number (the payload's first two bytes) replaces
/// the RTX sequence number, `ssrc` and `payload_type` (the media stream's) replace the RTX
/// ones, the payload moves up two bytes and any padding is removed. Returns the new length.
/// Fails (leaving `buf` unchanged) for a malformed packet or one without an OSN (padding-only
/// probes carry none).
pub fn unwrap_rtx(
    buf: &mut [u8],
    len: usize,
    ssrc: u32,
    payload_type: u8,
) -> Result<usize, RtpError> {
    let packet = buf.get(..len).ok_or(RtpError::TooShort)?;
    let l = layout(packet)?;
    if l.payload_end < l.header_len + 2 {
        return Err(RtpError::TooShort);
    }
    let osn = [buf[l.header_len], buf[l.header_len + 1]];
    buf.copy_within(l.header_len + 2..l.payload_end, l.header_len);
    buf[0] &= !0x20; // padding dropped
    buf[1] = (buf[1] & 0x80) | (payload_type & 0x7F);
    buf[2..4].copy_from_slice(&osn);
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(l.payload_end - 2)
}

#[cfg(test)]
mod tests {
    use super::super::RtpHeader;
    use super::*;
    use crate::testutil::hex;

    #[test]
    fn remaps_and_blanks_one_byte_elements() {
        // mid (id 1, "0"), audio level (id 3), rid (id 4, "hi"), id 9 unknown
        let mut p = hex("90ef0001 00000002 00000003 bede0003 1030 3085 4168 6990 0100 0000 cafe");
        let mut h = RtpHeaderMut::parse(&mut p).unwrap();
        let blanked = h.remap_extensions(|id| match id {
            3 => 10,
            6 => 15, // no one-byte form for 15: blanked
            _ => 0,
        });
        assert_eq!(blanked, 3);
        let h = RtpHeader::parse(&p).unwrap();
        let exts: Vec<_> = h.extensions().map(|e| (e.id, e.data.to_vec())).collect();
        assert_eq!(exts, vec![(10, vec![0x85])]);
        assert_eq!(h.payload(), &[0xca, 0xfe]);
        assert_eq!(&p[16..28], &hex("0000 a085 000000 0000 00 0000")[..]);
    }

    #[test]
    fn remaps_two_byte_elements_and_ignores_no_block() {
        let mut p = hex("90ef0001 00000002 00000003 10000002 0102abcd 0500 0000 ff");
        let mut h = RtpHeaderMut::parse(&mut p).unwrap();
        assert_eq!(h.remap_extensions(|id| if id == 1 { 200 } else { 0 }), 1);
        let h = RtpHeader::parse(&p).unwrap();
        let exts: Vec<_> = h.extensions().map(|e| (e.id, e.data.to_vec())).collect();
        assert_eq!(exts, vec![(200, vec![0xab, 0xcd])]);
        let mut plain = hex("80ef0001 00000002 00000003 ff");
        assert_eq!(
            RtpHeaderMut::parse(&mut plain)
                .unwrap()
                .remap_extensions(|_| 0),
            0
        );
    }

    #[test]
    fn unwraps_rtx_with_padding() {
        // RTX: pt 97, seq 7, ssrc 0xAAAA, one-byte ext, OSN 0x1234, payload "abc", 2 padding
        let mut p = hex("b0610007 00000064 0000aaaa bede0001 41727200 1234 616263 0002");
        let len = p.len();
        let n = unwrap_rtx(&mut p, len, 0xBBBB, 96).unwrap();
        let h = RtpHeader::parse(&p[..n]).unwrap();
        assert_eq!(
            (h.sequence(), h.ssrc(), h.payload_type()),
            (0x1234, 0xBBBB, 96)
        );
        assert_eq!(h.timestamp(), 100);
        assert_eq!(h.payload(), b"abc");
        assert!(!h.has_padding());
        assert_eq!(h.extension(4), Some(&b"rr"[..]));
        // a padding-only probe has no OSN
        let mut probe = hex("a0610008 00000064 0000aaaa 00000004");
        assert_eq!(unwrap_rtx(&mut probe, 16, 1, 96), Err(RtpError::TooShort));
        assert_eq!(unwrap_rtx(&mut probe, 99, 1, 96), Err(RtpError::TooShort));
        assert_eq!(probe[2..4], [0, 8], "unchanged");
    }
}
