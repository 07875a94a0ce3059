//! Zero-copy RTP header view (RFC 3550 §5.1) with RFC 8285 header extensions.
//!
//! [`RtpHeader::parse`] validates a packet once (version, CSRC list, extension block and every
//! extension element, padding) and then answers questions about it without copying:
//! marker, payload type, sequence number, timestamp, SSRC, CSRCs, extensions, payload.
//! [`RtpHeaderMut`] is the same view over `&mut [u8]` with in-place setters, which is what a
//! forwarder needs to rewrite SSRC/sequence/timestamp/payload type and extension ids per
//! subscriber without touching the payload.
//!
//! Extension blocks: profile `0xBEDE` is the one-byte form (4-bit id, 4-bit length-1), profiles
//! `0x1000..=0x100F` are the two-byte form (8-bit id, 8-bit length); id 0 is padding and, in the
//! one-byte form, id 15 stops processing. Any other profile is kept as an opaque block.
//!
//! [`header_len`] only validates the fixed header, CSRCs and extension block length: it is what
//! SRTP needs, since the payload (and so the padding count) is still encrypted.

use std::fmt;

/// The fixed part of an RTP header.
pub const FIXED_HEADER_LEN: usize = 12;
/// The profile value announcing one-byte header extensions (RFC 8285 §4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// The profile value (with the low 4 "appbits" masked off) of two-byte extensions (§4.3).
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Why a buffer is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than the fixed header, the CSRC list or the extension header.
    TooShort,
    /// The version field is not 2.
    BadVersion,
    /// The extension block runs past the end of the packet.
    ExtensionTruncated,
    /// An extension element runs past the end of the extension block.
    BadExtension,
    /// The padding count is zero or larger than the payload.
    BadPadding,
    /// A rewritten extension id does not fit the block's form (1..=14 or 1..=255).
    BadExtensionId,
    /// The target buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for RtpError {}

/// The form of a packet's extension block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionForm {
    /// RFC 8285 one-byte elements (profile 0xBEDE).
    OneByte,
    /// RFC 8285 two-byte elements (profile 0x100X).
    TwoByte,
    /// Some other profile: the block is opaque.
    Other(u16),
}

impl ExtensionForm {
    fn from_profile(profile: u16) -> Self {
        if profile == ONE_BYTE_PROFILE {
            ExtensionForm::OneByte
        } else if profile & 0xFFF0 == TWO_BYTE_PROFILE {
            ExtensionForm::TwoByte
        } else {
            ExtensionForm::Other(profile)
        }
    }
}

/// One RFC 8285 extension element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// Local identifier (1..=14 one-byte, 1..=255 two-byte).
    pub id: u8,
    /// Element data.
    pub data: &'a [u8],
}

/// An extension block: its form and the range of its element data.
type ExtBlock = (ExtensionForm, usize, usize);

/// Offsets computed by validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Bytes before the payload (fixed header, CSRCs, extension block).
    header_len: usize,
    /// Extension form and the range of the element data (after the 4-byte block header).
    ext: Option<ExtBlock>,
    /// Where the payload ends (the packet length minus padding).
    payload_end: usize,
}

/// Validates the fixed header, CSRC list and extension block length, and returns the header
/// length (the payload offset). Does not look at padding or extension elements.
pub fn header_len(buf: &[u8]) -> Result<usize, RtpError> {
    layout_base(buf).map(|(len, _)| len)
}

fn layout_base(buf: &[u8]) -> Result<(usize, Option<ExtBlock>), RtpError> {
    if buf.len() < FIXED_HEADER_LEN {
        return Err(RtpError::TooShort);
    }
    if buf[0] >> 6 != 2 {
        return Err(RtpError::BadVersion);
    }
    let mut len = FIXED_HEADER_LEN + 4 * usize::from(buf[0] & 0x0F);
    if buf.len() < len {
        return Err(RtpError::TooShort);
    }
    let mut ext = None;
    if buf[0] & 0x10 != 0 {
        if buf.len() < len + 4 {
            return Err(RtpError::TooShort);
        }
        let profile = u16::from_be_bytes([buf[len], buf[len + 1]]);
        let words = usize::from(u16::from_be_bytes([buf[len + 2], buf[len + 3]]));
        let start = len + 4;
        let end = start + 4 * words;
        if buf.len() < end {
            return Err(RtpError::ExtensionTruncated);
        }
        ext = Some((ExtensionForm::from_profile(profile), start, end));
        len = end;
    }
    Ok((len, ext))
}

fn layout(buf: &[u8]) -> Result<Layout, RtpError> {
    let (header_len, ext) = layout_base(buf)?;
    if let Some((form, start, end)) = ext {
        validate_elements(form, &buf[start..end])?;
    }
    let mut payload_end = buf.len();
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(buf[buf.len() - 1]);
        if pad == 0 || pad > buf.len() - header_len {
            return Err(RtpError::BadPadding);
        }
        payload_end -= pad;
    }
    Ok(Layout {
        header_len,
        ext,
        payload_end,
    })
}

/// Walks the elements of an extension block, returning (id, data start, data end) triples.
/// Stops (returning `None`) at the end, at one-byte id 15, or at a malformed element.
fn next_element(
    form: ExtensionForm,
    block: &[u8],
    pos: &mut usize,
) -> Option<Result<(u8, usize, usize), RtpError>> {
    loop {
        let i = *pos;
        if i >= block.len() {
            return None;
        }
        match form {
            ExtensionForm::OneByte => {
                let id = block[i] >> 4;
                if id == 0 {
                    *pos = i + 1;
                    continue;
                }
                if id == 15 {
                    *pos = block.len();
                    return None;
                }
                let len = usize::from(block[i] & 0x0F) + 1;
                let (s, e) = (i + 1, i + 1 + len);
                if e > block.len() {
                    *pos = block.len();
                    return Some(Err(RtpError::BadExtension));
                }
                *pos = e;
                return Some(Ok((id, s, e)));
            }
            ExtensionForm::TwoByte => {
                let id = block[i];
                if id == 0 {
                    *pos = i + 1;
                    continue;
                }
                if i + 2 > block.len() {
                    *pos = block.len();
                    return Some(Err(RtpError::BadExtension));
                }
                let len = usize::from(block[i + 1]);
                let (s, e) = (i + 2, i + 2 + len);
                if e > block.len() {
                    *pos = block.len();
                    return Some(Err(RtpError::BadExtension));
                }
                *pos = e;
                return Some(Ok((id, s, e)));
            }
            ExtensionForm::Other(_) => return None,
        }
    }
}

fn validate_elements(form: ExtensionForm, block: &[u8]) -> Result<(), RtpError> {
    let mut pos = 0;
    while let Some(r) = next_element(form, block, &mut pos) {
        r?;
    }
    Ok(())
}

/// Iterator over the RFC 8285 elements of a validated extension block.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    form: ExtensionForm,
    block: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Extension<'a>;
    fn next(&mut self) -> Option<Extension<'a>> {
        match next_element(self.form, self.block, &mut self.pos)? {
            Ok((id, s, e)) => Some(Extension {
                id,
                data: &self.block[s..e],
            }),
            Err(_) => None,
        }
    }
}

/// A validated, read-only view of an RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpHeader<'a> {
    buf: &'a [u8],
    layout: Layout,
}

macro_rules! read_accessors {
    () => {
        /// The padding bit.
        pub fn has_padding(&self) -> bool {
            self.buf[0] & 0x20 != 0
        }
        /// The extension bit.
        pub fn has_extension(&self) -> bool {
            self.buf[0] & 0x10 != 0
        }
        /// Number of CSRCs.
        pub fn csrc_count(&self) -> usize {
            usize::from(self.buf[0] & 0x0F)
        }
        /// The marker bit.
        pub fn marker(&self) -> bool {
            self.buf[1] & 0x80 != 0
        }
        /// The 7-bit payload type.
        pub fn payload_type(&self) -> u8 {
            self.buf[1] & 0x7F
        }
        /// The sequence number.
        pub fn sequence(&self) -> u16 {
            u16::from_be_bytes([self.buf[2], self.buf[3]])
        }
        /// The RTP timestamp.
        pub fn timestamp(&self) -> u32 {
            u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
        }
        /// The synchronisation source.
        pub fn ssrc(&self) -> u32 {
            u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
        }
        /// The i-th contributing source, if present.
        pub fn csrc(&self, i: usize) -> Option<u32> {
            (i < self.csrc_count()).then(|| {
                let o = FIXED_HEADER_LEN + 4 * i;
                u32::from_be_bytes([
                    self.buf[o],
                    self.buf[o + 1],
                    self.buf[o + 2],
                    self.buf[o + 3],
                ])
            })
        }
        /// The payload offset: fixed header + CSRCs + extension block.
        pub fn header_len(&self) -> usize {
            self.layout.header_len
        }
        /// Bytes of padding at the end (0 without the padding bit).
        pub fn padding_len(&self) -> usize {
            self.buf.len() - self.layout.payload_end
        }
        /// The payload length (without padding).
        pub fn payload_len(&self) -> usize {
            self.layout.payload_end - self.layout.header_len
        }
        /// The extension block's form, if the packet has one.
        pub fn extension_form(&self) -> Option<ExtensionForm> {
            self.layout.ext.map(|(f, _, _)| f)
        }
        /// The RFC 8285 elements (empty for no block or an opaque profile).
        pub fn extensions(&self) -> Extensions<'_> {
            match self.layout.ext {
                Some((form, s, e)) => Extensions {
                    form,
                    block: &self.buf[s..e],
                    pos: 0,
                },
                None => Extensions {
                    form: ExtensionForm::Other(0),
                    block: &[],
                    pos: 0,
                },
            }
        }
        /// The data of the first element with this id.
        pub fn extension(&self, id: u8) -> Option<&[u8]> {
            self.extensions().find(|e| e.id == id).map(|e| e.data)
        }
    };
}

impl<'a> RtpHeader<'a> {
    /// Validates `buf` as a whole RTP packet (header, extension elements and padding).
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        Ok(RtpHeader {
            layout: layout(buf)?,
            buf,
        })
    }

    read_accessors!();

    /// The CSRC list.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let buf = self.buf;
        (0..usize::from(buf[0] & 0x0F)).map(move |i| {
            let o = FIXED_HEADER_LEN + 4 * i;
            u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]])
        })
    }

    /// The payload (without padding).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.layout.header_len..self.layout.payload_end]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// A validated view of an RTP packet with in-place setters.
#[derive(Debug)]
pub struct RtpHeaderMut<'a> {
    buf: &'a mut [u8],
    layout: Layout,
}

impl<'a> RtpHeaderMut<'a> {
    /// Validates `buf` like [`RtpHeader::parse`].
    pub fn parse(buf: &'a mut [u8]) -> Result<Self, RtpError> {
        Ok(RtpHeaderMut {
            layout: layout(buf)?,
            buf,
        })
    }

    read_accessors!();

    /// Sets or clears the marker bit.
    pub fn set_marker(&mut self, marker: bool) {
        self.buf[1] = (self.buf[1] & 0x7F) | if marker { 0x80 } else { 0 };
    }
    /// Sets the payload type (the high bit of `pt` is ignored).
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7F);
    }
    /// Sets the sequence number.
    pub fn set_sequence(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }
    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }
    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// Mutable data of the first element with this id (e.g. to rewrite a transport-wide
    /// sequence number per subscriber).
    pub fn extension_mut(&mut self, id: u8) -> Option<&mut [u8]> {
        let (form, s, e) = self.layout.ext?;
        let mut pos = 0;
        while let Some(Ok((eid, ds, de))) = next_element(form, &self.buf[s..e], &mut pos) {
            if eid == id {
                return Some(&mut self.buf[s + ds..s + de]);
            }
        }
        None
    }

    /// Rewrites every element's id through `map` (the publisher's extmap ids to the
    /// subscriber's). One-byte ids must map into 1..=14 and two-byte ids into 1..=255;
    /// otherwise nothing past the offending element is changed and an error is returned.
    pub fn rewrite_extension_ids(&mut self, mut map: impl FnMut(u8) -> u8) -> Result<(), RtpError> {
        let Some((form, s, e)) = self.layout.ext else {
            return Ok(());
        };
        let mut pos = 0;
        while let Some(Ok((id, ds, _))) = next_element(form, &self.buf[s..e], &mut pos) {
            let new = map(id);
            match form {
                ExtensionForm::OneByte => {
                    if !(1..=14).contains(&new) {
                        return Err(RtpError::BadExtensionId);
                    }
                    let at = s + ds - 1;
                    self.buf[at] = (new << 4) | (self.buf[at] & 0x0F);
                }
                ExtensionForm::TwoByte => {
                    if new == 0 {
                        return Err(RtpError::BadExtensionId);
                    }
                    self.buf[s + ds - 2] = new;
                }
                ExtensionForm::Other(_) => {}
            }
        }
        Ok(())
    }

    /// The payload (without padding), mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.layout.header_len..self.layout.payload_end]
    }

    /// A read-only view of the same packet.
    pub fn as_header(&self) -> RtpHeader<'_> {
        RtpHeader {
            buf: self.buf,
            layout: self.layout,
        }
    }
}

/// Writes a 12-byte header without CSRCs or extensions; returns the bytes written.
pub fn write_header(
    buf: &mut [u8],
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
) -> Result<usize, RtpError> {
    let h = buf
        .get_mut(..FIXED_HEADER_LEN)
        .ok_or(RtpError::BufferTooSmall)?;
    h[0] = 0x80;
    h[1] = (pt & 0x7F) | if marker { 0x80 } else { 0 };
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(FIXED_HEADER_LEN)
}

mod rewrite;
pub use rewrite::unwrap_rtx;

#[cfg(test)]
mod tests;
