//! Keyframe detection from RTP payloads, for switching simulcast layers and for answering
//! "has the subscriber got a decodable picture yet".
//!
//! - VP8 (RFC 7741 §4.2, §4.3): the payload descriptor (X/N/S/PID, then I/L/T/K extensions),
//!   then on the first packet of partition 0 the frame tag's inverse key frame bit P; a key
//!   frame header also carries the width and height ([`vp8_keyframe_size`]).
//! - VP9 (RFC 9628 §4.2): descriptor bits P (inter-picture predicted) and B (start of frame);
//!   a keyframe is an unpredicted start of frame in spatial layer 0.
//! - H.264 (RFC 6184 §5.6–§5.8): NAL unit type 5 (IDR slice) or 7 (SPS), in a single NAL unit
//!   packet, inside a STAP-A/STAP-B aggregate, or at the start of an FU-A/FU-B fragment.
//! - AV1 (AV1 RTP payload format §4.4): the aggregation header's N bit (first packet of a coded
//!   video sequence), or an OBU_SEQUENCE_HEADER among the OBU elements that start in this
//!   packet.
//!
//! Every function takes the payload after the RTP header and never panics.

use std::fmt;

/// Codecs trackyard forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus (and RED carrying Opus): every packet stands alone.
    Opus,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// H.264.
    H264,
    /// AV1.
    Av1,
    /// Anything else: never reports a keyframe.
    Other,
}

impl Codec {
    /// From an SDP/MIME name such as `video/VP8`, `VP8`, `audio/opus` (case-insensitive).
    pub fn from_mime(mime: &str) -> Codec {
        let name = mime.rsplit('/').next().unwrap_or(mime);
        match name.to_ascii_lowercase().as_str() {
            "opus" | "red" => Codec::Opus,
            "vp8" => Codec::Vp8,
            "vp9" => Codec::Vp9,
            "h264" => Codec::H264,
            "av1" => Codec::Av1,
            _ => Codec::Other,
        }
    }

    /// True for video codecs.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1)
    }
}

/// Why a payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// The payload ends inside a descriptor or header.
    TooShort,
    /// A length or field is inconsistent.
    Malformed,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for CodecError {}

/// Whether this packet starts (or, for H.264 aggregates, contains) a keyframe.
/// Audio always answers true.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> Result<bool, CodecError> {
    match codec {
        Codec::Opus => Ok(true),
        Codec::Vp8 => vp8_is_keyframe(payload),
        Codec::Vp9 => vp9_is_keyframe(payload),
        Codec::H264 => h264_is_keyframe(payload),
        Codec::Av1 => av1_is_keyframe(payload),
        Codec::Other => Ok(false),
    }
}

fn byte(p: &[u8], i: usize) -> Result<u8, CodecError> {
    p.get(i).copied().ok_or(CodecError::TooShort)
}

/// The VP8 payload descriptor (RFC 7741 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// S: this packet starts a partition.
    pub start_of_partition: bool,
    /// PID: the partition index.
    pub partition_id: u8,
    /// PictureID (7 or 15 bits).
    pub picture_id: Option<u16>,
    /// TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer index.
    pub tid: Option<u8>,
    /// Y: layer sync.
    pub layer_sync: bool,
    /// KEYIDX.
    pub key_idx: Option<u8>,
    /// Descriptor length: where the VP8 payload starts.
    pub len: usize,
}

/// Parses the VP8 payload descriptor.
pub fn vp8_descriptor(p: &[u8]) -> Result<Vp8Descriptor, CodecError> {
    let b0 = byte(p, 0)?;
    let mut d = Vp8Descriptor {
        non_reference: b0 & 0x20 != 0,
        start_of_partition: b0 & 0x10 != 0,
        partition_id: b0 & 0x0F,
        ..Default::default()
    };
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = byte(p, 1)?;
        i = 2;
        if x & 0x80 != 0 {
            let m = byte(p, i)?;
            if m & 0x80 != 0 {
                d.picture_id = Some((u16::from(m & 0x7F) << 8) | u16::from(byte(p, i + 1)?));
                i += 2;
            } else {
                d.picture_id = Some(u16::from(m));
                i += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0_pic_idx = Some(byte(p, i)?);
            i += 1;
        }
        if x & 0x30 != 0 {
            let t = byte(p, i)?;
            if x & 0x20 != 0 {
                d.tid = Some(t >> 6);
                d.layer_sync = t & 0x20 != 0;
            }
            if x & 0x10 != 0 {
                d.key_idx = Some(t & 0x1F);
            }
            i += 1;
        }
    }
    d.len = i;
    Ok(d)
}

/// VP8: true on the first packet of a key frame.
pub fn vp8_is_keyframe(p: &[u8]) -> Result<bool, CodecError> {
    let d = vp8_descriptor(p)?;
    if !d.start_of_partition || d.partition_id != 0 {
        return Ok(false);
    }
    Ok(byte(p, d.len)? & 0x01 == 0)
}

/// VP8: the (width, height) in a key frame's first packet (14 bits each, scaling bits dropped).
pub fn vp8_keyframe_size(p: &[u8]) -> Option<(u16, u16)> {
    if !vp8_is_keyframe(p).ok()? {
        return None;
    }
    let f = p.get(vp8_descriptor(p).ok()?.len..)?;
    if f.len() < 10 || f[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    Some((
        u16::from_le_bytes([f[6], f[7]]) & 0x3FFF,
        u16::from_le_bytes([f[8], f[9]]) & 0x3FFF,
    ))
}

/// VP9: true on the first packet of a keyframe in spatial layer 0.
pub fn vp9_is_keyframe(p: &[u8]) -> Result<bool, CodecError> {
    let b0 = byte(p, 0)?;
    let (i_bit, p_bit, l_bit, b_bit) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x08 != 0,
    );
    let mut i = 1;
    if i_bit {
        i += if byte(p, 1)? & 0x80 != 0 { 2 } else { 1 };
    }
    let mut sid = 0;
    if l_bit {
        sid = (byte(p, i)? >> 1) & 0x07;
    }
    Ok(!p_bit && b_bit && sid == 0)
}

fn h264_nal_is_key(nal_type: u8) -> bool {
    nal_type == 5 || nal_type == 7
}

/// H.264: true when the packet carries (the start of) an IDR slice or an SPS.
pub fn h264_is_keyframe(p: &[u8]) -> Result<bool, CodecError> {
    let t = byte(p, 0)? & 0x1F;
    match t {
        1..=23 => Ok(h264_nal_is_key(t)),
        24 | 25 => {
            let mut i = if t == 24 { 1 } else { 3 };
            if i > p.len() {
                return Err(CodecError::TooShort);
            }
            while i < p.len() {
                let size = usize::from(u16::from_be_bytes([byte(p, i)?, byte(p, i + 1)?]));
                i += 2;
                if size == 0 || i + size > p.len() {
                    return Err(CodecError::Malformed);
                }
                if h264_nal_is_key(p[i] & 0x1F) {
                    return Ok(true);
                }
                i += size;
            }
            Ok(false)
        }
        28 | 29 => {
            let fu = byte(p, 1)?;
            Ok(fu & 0x80 != 0 && h264_nal_is_key(fu & 0x1F))
        }
        _ => Ok(false),
    }
}

/// Reads an unsigned LEB128 value (at most 8 bytes): (value, bytes used).
fn leb128(p: &[u8]) -> Result<(u64, usize), CodecError> {
    let mut v = 0u64;
    for i in 0..8 {
        let b = byte(p, i)?;
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(CodecError::Malformed)
}

/// OBU type of an OBU sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// AV1: true when the N bit is set or an OBU sequence header starts in this packet.
pub fn av1_is_keyframe(p: &[u8]) -> Result<bool, CodecError> {
    let agg = byte(p, 0)?;
    if agg & 0x08 != 0 {
        return Ok(true);
    }
    let continues = agg & 0x80 != 0;
    let w = usize::from((agg >> 4) & 0x03);
    let mut i = 1;
    let mut element = 1;
    while i < p.len() {
        let size = if w != 0 && element == w {
            p.len() - i
        } else {
            let (len, used) = leb128(&p[i..])?;
            i += used;
            usize::try_from(len)
                .ok()
                .filter(|&l| l <= p.len() - i)
                .ok_or(CodecError::Malformed)?
        };
        if size > 0 && !(element == 1 && continues) && (p[i] >> 3) & 0x0F == OBU_SEQUENCE_HEADER {
            return Ok(true);
        }
        i += size;
        element += 1;
        if w != 0 && element > w {
            break;
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 key frame start: descriptor with X, I (15-bit picture id), L, T; then the frame
    /// tag (P=0) and the key frame header with 640x360.
    fn vp8_key() -> Vec<u8> {
        let mut p = vec![0x90, 0xE0, 0x81, 0x23, 0x05, 0x40];
        p.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
        p
    }

    #[test]
    fn vp8_keyframes_and_descriptor() {
        let p = vp8_key();
        let d = vp8_descriptor(&p).unwrap();
        assert_eq!(d.picture_id, Some(0x123));
        assert_eq!(d.tl0_pic_idx, Some(5));
        assert_eq!(d.tid, Some(1));
        assert_eq!(d.len, 6);
        assert_eq!(vp8_is_keyframe(&p), Ok(true));
        assert_eq!(vp8_keyframe_size(&p), Some((640, 360)));
        assert!(is_keyframe(Codec::from_mime("video/VP8"), &p).unwrap());
        let mut inter = p.clone();
        inter[6] |= 0x01; // P = 1
        assert_eq!(vp8_is_keyframe(&inter), Ok(false));
        let mut middle = p.clone();
        middle[0] &= !0x10; // not a partition start
        assert_eq!(vp8_is_keyframe(&middle), Ok(false));
        // minimal descriptor: one byte, S=1
        assert_eq!(vp8_is_keyframe(&[0x10, 0x00]), Ok(true));
        assert_eq!(vp8_is_keyframe(&[0x10]), Err(CodecError::TooShort));
        assert_eq!(
            vp8_is_keyframe(&[0x90, 0x80, 0x81]),
            Err(CodecError::TooShort)
        );
        assert_eq!(vp8_keyframe_size(&[0x10, 0x00]), None);
    }

    #[test]
    fn vp9_keyframes() {
        // I=1 (7-bit id), B=1, P=0
        assert_eq!(vp9_is_keyframe(&[0x88, 0x12, 0xAA]), Ok(true));
        // P=1
        assert_eq!(vp9_is_keyframe(&[0xC8, 0x12, 0xAA]), Ok(false));
        // B=0 (not a frame start)
        assert_eq!(vp9_is_keyframe(&[0x80, 0x12, 0xAA]), Ok(false));
        // L=1 with SID=1: not the base spatial layer
        assert_eq!(vp9_is_keyframe(&[0xA8, 0x92, 0x34, 0x02, 0x00]), Ok(false));
        assert_eq!(vp9_is_keyframe(&[0xA8, 0x92, 0x34, 0x00, 0x00]), Ok(true));
        assert_eq!(vp9_is_keyframe(&[0xA8, 0x92]), Err(CodecError::TooShort));
    }

    #[test]
    fn h264_keyframes() {
        assert_eq!(h264_is_keyframe(&[0x65, 0x88]), Ok(true)); // IDR
        assert_eq!(h264_is_keyframe(&[0x67, 0x42]), Ok(true)); // SPS
        assert_eq!(h264_is_keyframe(&[0x41, 0x9a]), Ok(false)); // non-IDR slice
        assert_eq!(h264_is_keyframe(&[0x68, 0xce]), Ok(false)); // PPS alone
                                                                // STAP-A: SPS(2 bytes) + PPS(2 bytes)
        let stap = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce];
        assert_eq!(h264_is_keyframe(&stap), Ok(true));
        let stap_p = [0x78, 0x00, 0x02, 0x41, 0x9a, 0x00, 0x02, 0x68, 0xce];
        assert_eq!(h264_is_keyframe(&stap_p), Ok(false));
        assert_eq!(
            h264_is_keyframe(&[0x78, 0x00, 0x09, 0x67]),
            Err(CodecError::Malformed)
        );
        // FU-A start of IDR, middle of IDR, start of non-IDR
        assert_eq!(h264_is_keyframe(&[0x7c, 0x85, 0x00]), Ok(true));
        assert_eq!(h264_is_keyframe(&[0x7c, 0x05, 0x00]), Ok(false));
        assert_eq!(h264_is_keyframe(&[0x7c, 0x81, 0x00]), Ok(false));
        assert_eq!(h264_is_keyframe(&[0x7c]), Err(CodecError::TooShort));
        assert_eq!(h264_is_keyframe(&[]), Err(CodecError::TooShort));
    }

    #[test]
    fn av1_keyframes() {
        // N=1
        assert_eq!(av1_is_keyframe(&[0x18, 0x0a, 0x00]), Ok(true));
        // W=2: first element (length 2) is a temporal delimiter (type 2), second a sequence header
        assert_eq!(
            av1_is_keyframe(&[0x20, 0x02, 0x12, 0x00, 0x0a, 0x0b, 0x00]),
            Ok(true)
        );
        // W=1: one frame OBU (type 6)
        assert_eq!(av1_is_keyframe(&[0x10, 0x32, 0x01, 0x02]), Ok(false));
        // Z=1: the first element continues a fragmented sequence header -> not a new start
        assert_eq!(av1_is_keyframe(&[0x90, 0x0a, 0x00]), Ok(false));
        // W=0: every element length-prefixed; the second is a sequence header
        assert_eq!(
            av1_is_keyframe(&[0x00, 0x01, 0x32, 0x02, 0x0a, 0x00]),
            Ok(true)
        );
        // length past the end, and an endless LEB128
        assert_eq!(
            av1_is_keyframe(&[0x00, 0x05, 0x0a]),
            Err(CodecError::Malformed)
        );
        assert_eq!(
            av1_is_keyframe(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(CodecError::Malformed)
        );
        assert_eq!(av1_is_keyframe(&[]), Err(CodecError::TooShort));
    }

    #[test]
    fn codec_names_and_audio() {
        assert_eq!(Codec::from_mime("audio/opus"), Codec::Opus);
        assert_eq!(Codec::from_mime("H264"), Codec::H264);
        assert_eq!(Codec::from_mime("video/AV1"), Codec::Av1);
        assert_eq!(Codec::from_mime("video/rtx"), Codec::Other);
        assert!(!Codec::Opus.is_video() && Codec::Vp9.is_video());
        assert_eq!(is_keyframe(Codec::Opus, &[]), Ok(true));
        assert_eq!(is_keyframe(Codec::Other, &[1]), Ok(false));
    }
}
