//! STUN (RFC 8489, formerly RFC 5389) as an ICE-lite agent needs it (RFC 8445 §2.5, §7.3).
//!
//! - [`StunMessage::parse`] validates a datagram: header (leading zero bits, magic cookie,
//!   length equal to the datagram, multiple of 4) and every attribute's length, and picks out
//!   USERNAME, PRIORITY, USE-CANDIDATE, ICE-CONTROLLING, ICE-CONTROLLED, XOR-MAPPED-ADDRESS,
//!   MESSAGE-INTEGRITY and FINGERPRINT. Attributes after MESSAGE-INTEGRITY other than
//!   FINGERPRINT are ignored (§14.5); anything after FINGERPRINT is an error.
//! - [`StunMessage::verify_integrity`] checks the HMAC-SHA1 MESSAGE-INTEGRITY with the
//!   short-term credential (the local ICE password), [`StunMessage::verify_fingerprint`] the
//!   CRC-32 FINGERPRINT (XOR 0x5354554e).
//! - [`StunWriter`] builds messages into a caller buffer; [`write_binding_success`] is the
//!   ICE-lite answer: XOR-MAPPED-ADDRESS (IPv4 or IPv6), MESSAGE-INTEGRITY, FINGERPRINT.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Binding request.
pub const BINDING_REQUEST: u16 = 0x0001;
/// Binding success response.
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Binding error response.
pub const BINDING_ERROR: u16 = 0x0111;
/// Binding indication (used for keepalives).
pub const BINDING_INDICATION: u16 = 0x0011;

/// Attribute types.
pub mod attr {
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445).
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

const HEADER_LEN: usize = 20;
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Why a datagram is not an acceptable STUN message, or a message cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunError {
    /// Shorter than a header, or than its length field says.
    TooShort,
    /// Leading bits set, wrong magic cookie, or a length that is not a multiple of 4 or does
    /// not match the datagram.
    NotStun,
    /// An attribute runs past the message or has the wrong length for its type.
    BadAttribute,
    /// An attribute follows FINGERPRINT.
    TrailingAttribute,
    /// MESSAGE-INTEGRITY (or FINGERPRINT) is absent.
    Missing,
    /// MESSAGE-INTEGRITY does not match.
    IntegrityMismatch,
    /// FINGERPRINT does not match.
    FingerprintMismatch,
    /// The output buffer is too small, or an attribute value is longer than 65535 bytes.
    BufferTooSmall,
}

impl fmt::Display for StunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for StunError {}

/// Quick RFC 7983 test: does this datagram look like STUN (first byte 0..=3, magic cookie)?
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] < 4 && buf[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// A validated STUN message with the ICE attributes picked out.
#[derive(Debug, Clone)]
pub struct StunMessage<'a> {
    buf: &'a [u8],
    /// Message type (method and class), e.g. [`BINDING_REQUEST`].
    pub msg_type: u16,
    /// Transaction id.
    pub transaction_id: [u8; 12],
    /// USERNAME (`receiver_ufrag:sender_ufrag` in ICE).
    pub username: Option<&'a [u8]>,
    /// PRIORITY.
    pub priority: Option<u32>,
    /// USE-CANDIDATE present.
    pub use_candidate: bool,
    /// ICE-CONTROLLING tie-breaker.
    pub ice_controlling: Option<u64>,
    /// ICE-CONTROLLED tie-breaker.
    pub ice_controlled: Option<u64>,
    /// XOR-MAPPED-ADDRESS, decoded.
    pub xor_mapped_address: Option<SocketAddr>,
    /// ERROR-CODE as (code, reason).
    pub error_code: Option<(u16, &'a [u8])>,
    integrity_at: Option<usize>,
    fingerprint_at: Option<usize>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    (u64::from(be32(b)) << 32) | u64::from(be32(&b[4..]))
}

fn decode_xor_address(v: &[u8], txid: &[u8; 12]) -> Result<SocketAddr, StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttribute);
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(txid);
    let ip = match (v[1], v.len()) {
        (1, 8) => IpAddr::V4(Ipv4Addr::from(be32(&v[4..]) ^ MAGIC_COOKIE)),
        (2, 20) => {
            let mut a = [0u8; 16];
            for i in 0..16 {
                a[i] = v[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return Err(StunError::BadAttribute),
    };
    Ok(SocketAddr::new(ip, port))
}

impl<'a> StunMessage<'a> {
    /// Validates a whole datagram as one STUN message.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::TooShort);
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf[0] & 0xC0 != 0 || be32(&buf[4..]) != MAGIC_COOKIE || !len.is_multiple_of(4) {
            return Err(StunError::NotStun);
        }
        if buf.len() != HEADER_LEN + len {
            return Err(if buf.len() < HEADER_LEN + len {
                StunError::TooShort
            } else {
                StunError::NotStun
            });
        }
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&buf[8..20]);
        let mut m = StunMessage {
            buf,
            msg_type: u16::from_be_bytes([buf[0], buf[1]]),
            transaction_id,
            username: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            xor_mapped_address: None,
            error_code: None,
            integrity_at: None,
            fingerprint_at: None,
        };
        let mut pos = HEADER_LEN;
        while pos < buf.len() {
            if m.fingerprint_at.is_some() {
                return Err(StunError::TrailingAttribute);
            }
            if pos + 4 > buf.len() {
                return Err(StunError::BadAttribute);
            }
            let typ = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
            let vlen = usize::from(u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]));
            let v = buf
                .get(pos + 4..pos + 4 + vlen)
                .ok_or(StunError::BadAttribute)?;
            let fixed = |n: usize| {
                if vlen == n {
                    Ok(())
                } else {
                    Err(StunError::BadAttribute)
                }
            };
            if typ == attr::FINGERPRINT {
                fixed(4)?;
                m.fingerprint_at = Some(pos);
            } else if m.integrity_at.is_none() {
                match typ {
                    attr::MESSAGE_INTEGRITY => {
                        fixed(20)?;
                        m.integrity_at = Some(pos);
                    }
                    attr::USERNAME => m.username = Some(v),
                    attr::PRIORITY => {
                        fixed(4)?;
                        m.priority = Some(be32(v));
                    }
                    attr::USE_CANDIDATE => {
                        fixed(0)?;
                        m.use_candidate = true;
                    }
                    attr::ICE_CONTROLLING => {
                        fixed(8)?;
                        m.ice_controlling = Some(be64(v));
                    }
                    attr::ICE_CONTROLLED => {
                        fixed(8)?;
                        m.ice_controlled = Some(be64(v));
                    }
                    attr::XOR_MAPPED_ADDRESS => {
                        m.xor_mapped_address = Some(decode_xor_address(v, &transaction_id)?)
                    }
                    attr::ERROR_CODE => {
                        if vlen < 4 {
                            return Err(StunError::BadAttribute);
                        }
                        m.error_code =
                            Some((u16::from(v[2] & 0x07) * 100 + u16::from(v[3]), &v[4..]));
                    }
                    _ => {}
                }
            }
            pos += 4 + vlen.div_ceil(4) * 4;
        }
        Ok(m)
    }

    /// True for a Binding request.
    pub fn is_binding_request(&self) -> bool {
        self.msg_type == BINDING_REQUEST
    }

    /// USERNAME split at the first `:` into (receiver's ufrag, sender's ufrag).
    pub fn username_parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        let u = self.username?;
        let i = u.iter().position(|&c| c == b':')?;
        Some((&u[..i], &u[i + 1..]))
    }

    /// Iterates every attribute as (type, value), including those after MESSAGE-INTEGRITY.
    pub fn attributes(&self) -> impl Iterator<Item = (u16, &'a [u8])> + 'a {
        let buf = self.buf;
        let mut pos = HEADER_LEN;
        std::iter::from_fn(move || {
            let h = buf.get(pos..pos + 4)?;
            let vlen = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let v = buf.get(pos + 4..pos + 4 + vlen)?;
            pos += 4 + vlen.div_ceil(4) * 4;
            Some((u16::from_be_bytes([h[0], h[1]]), v))
        })
    }

    /// Whether MESSAGE-INTEGRITY is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    /// Checks MESSAGE-INTEGRITY with a short-term key (the ICE password).
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let at = self.integrity_at.ok_or(StunError::Missing)?;
        let expected = integrity(self.buf, at, key);
        if bool::from(expected.ct_eq(&self.buf[at + 4..at + 24])) {
            Ok(())
        } else {
            Err(StunError::IntegrityMismatch)
        }
    }

    /// Checks FINGERPRINT.
    pub fn verify_fingerprint(&self) -> Result<(), StunError> {
        let at = self.fingerprint_at.ok_or(StunError::Missing)?;
        if fingerprint(self.buf, at) == be32(&self.buf[at + 4..]) {
            Ok(())
        } else {
            Err(StunError::FingerprintMismatch)
        }
    }
}

/// HMAC-SHA1 over `msg[..at]` with the header length field set to end after an integrity
/// attribute at `at`.
fn integrity(msg: &[u8], at: usize, key: &[u8]) -> [u8; 20] {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&msg[..HEADER_LEN]);
    header[2..4].copy_from_slice(&((at + 24 - HEADER_LEN) as u16).to_be_bytes());
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&header);
    mac.update(&msg[HEADER_LEN..at]);
    mac.finalize().into_bytes().into()
}

/// CRC-32 of `msg[..at]` with the length field set to end after a fingerprint at `at`.
fn fingerprint(msg: &[u8], at: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&msg[..2]);
    h.update(&((at + 8 - HEADER_LEN) as u16).to_be_bytes());
    h.update(&msg[4..at]);
    h.finalize() ^ FINGERPRINT_XOR
}

/// Builds a STUN message into a caller buffer.
#[derive(Debug)]
pub struct StunWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> StunWriter<'a> {
    /// Starts a message with a type and transaction id.
    pub fn new(
        buf: &'a mut [u8],
        msg_type: u16,
        transaction_id: &[u8; 12],
    ) -> Result<Self, StunError> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(StunError::BufferTooSmall)?;
        h[..2].copy_from_slice(&msg_type.to_be_bytes());
        h[2..4].fill(0);
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[8..20].copy_from_slice(transaction_id);
        Ok(StunWriter {
            buf,
            pos: HEADER_LEN,
        })
    }

    fn set_len(&mut self, len: usize) {
        self.buf[2..4].copy_from_slice(&((len - HEADER_LEN) as u16).to_be_bytes());
    }

    /// Appends an attribute, padding its value to 4 bytes with `pad`.
    pub fn attribute_padded(&mut self, typ: u16, value: &[u8], pad: u8) -> Result<(), StunError> {
        let vlen = u16::try_from(value.len()).map_err(|_| StunError::BufferTooSmall)?;
        let total = 4 + value.len().div_ceil(4) * 4;
        let out = self
            .buf
            .get_mut(self.pos..self.pos + total)
            .ok_or(StunError::BufferTooSmall)?;
        out[..2].copy_from_slice(&typ.to_be_bytes());
        out[2..4].copy_from_slice(&vlen.to_be_bytes());
        out[4..4 + value.len()].copy_from_slice(value);
        out[4 + value.len()..].fill(pad);
        self.pos += total;
        self.set_len(self.pos);
        Ok(())
    }

    /// Appends an attribute with zero padding.
    pub fn attribute(&mut self, typ: u16, value: &[u8]) -> Result<(), StunError> {
        self.attribute_padded(typ, value, 0)
    }

    /// Appends XOR-MAPPED-ADDRESS for `addr`.
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<(), StunError> {
        let mut v = [0u8; 20];
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        v[2..4].copy_from_slice(&port.to_be_bytes());
        let n = match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 1;
                v[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
                8
            }
            IpAddr::V6(ip) => {
                v[1] = 2;
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                mask[4..].copy_from_slice(&self.buf[8..20]);
                for (i, b) in ip.octets().iter().enumerate() {
                    v[4 + i] = b ^ mask[i];
                }
                20
            }
        };
        self.attribute(attr::XOR_MAPPED_ADDRESS, &v[..n])
    }

    /// Appends MESSAGE-INTEGRITY computed with `key`.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<(), StunError> {
        let at = self.pos;
        if self.buf.len() < at + 24 {
            return Err(StunError::BufferTooSmall);
        }
        let mac = integrity(self.buf, at, key);
        self.attribute(attr::MESSAGE_INTEGRITY, &mac)
    }

    /// Appends FINGERPRINT; call last.
    pub fn fingerprint(&mut self) -> Result<(), StunError> {
        let at = self.pos;
        if self.buf.len() < at + 8 {
            return Err(StunError::BufferTooSmall);
        }
        let crc = fingerprint(self.buf, at);
        self.attribute(attr::FINGERPRINT, &crc.to_be_bytes())
    }

    /// The message length so far.
    pub fn finish(self) -> usize {
        self.pos
    }
}

/// Writes a Binding success response with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY (with the
/// local ICE password) and FINGERPRINT. Returns the length.
pub fn write_binding_success(
    buf: &mut [u8],
    transaction_id: &[u8; 12],
    mapped: SocketAddr,
    key: &[u8],
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(buf, BINDING_SUCCESS, transaction_id)?;
    w.xor_mapped_address(mapped)?;
    w.message_integrity(key)?;
    w.fingerprint()?;
    Ok(w.finish())
}

/// Writes a Binding error response (e.g. 400 Bad Request, 401 Unauthorized, 487 Role
/// Conflict), with MESSAGE-INTEGRITY when a key is given, and FINGERPRINT.
pub fn write_binding_error(
    buf: &mut [u8],
    transaction_id: &[u8; 12],
    code: u16,
    reason: &str,
    key: Option<&[u8]>,
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(buf, BINDING_ERROR, transaction_id)?;
    let mut v = [0u8; 4 + 128];
    let r = &reason.as_bytes()[..reason.len().min(128)];
    v[2] = ((code / 100) & 0x07) as u8;
    v[3] = (code % 100) as u8;
    v[4..4 + r.len()].copy_from_slice(r);
    w.attribute(attr::ERROR_CODE, &v[..4 + r.len()])?;
    if let Some(k) = key {
        w.message_integrity(k)?;
    }
    w.fingerprint()?;
    Ok(w.finish())
}

#[cfg(test)]
mod tests;
