//! SRTP and SRTCP (RFC 3711) with the AES-CM/HMAC-SHA1-80 and AEAD AES-GCM (RFC 7714)
//! profiles negotiated by DTLS-SRTP (RFC 5764).
//!
//! One [`SrtpContext`] holds one direction's master key: the context for packets a peer sends
//! us (unprotect) or for packets we send to it (protect). It derives the session keys once,
//! builds the cipher and HMAC states once, and keeps per-SSRC state:
//!
//! - the rollover counter, estimated per RFC 3711 §3.3.1 from the highest sequence number seen
//!   (on both sides: a forwarder that retransmits an old packet gets the old ROC back);
//! - a 1024-packet replay window over the 48-bit SRTP index and another over the 31-bit SRTCP
//!   index (§3.3.2), updated only after authentication succeeds;
//! - the outbound SRTCP index counter.
//!
//! Protect and unprotect work in place on caller buffers and never allocate per packet: a new
//! SSRC costs one push into a small vector (bounded by [`SrtpContext::max_streams`]), and only
//! after the packet authenticated, so forged packets cannot grow the table.
//!
//! ```
//! use trackyard_core::srtp::{SrtpContext, SrtpProfile};
//! let (key, salt) = ([7u8; 16], [9u8; 12]);
//! let mut tx = SrtpContext::new(SrtpProfile::AeadAes128Gcm, &key, &salt).unwrap();
//! let mut rx = SrtpContext::new(SrtpProfile::AeadAes128Gcm, &key, &salt).unwrap();
//! let mut pkt = Vec::with_capacity(1500);
//! pkt.extend_from_slice(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42, 0xde, 0xad]);
//! tx.protect_rtp_vec(&mut pkt).unwrap();
//! let n = rx.unprotect_rtp(&mut pkt).unwrap();
//! assert_eq!(&pkt[12..n], &[0xde, 0xad]);
//! ```

mod replay;
#[cfg(test)]
mod tests;
mod transform;

use std::fmt;

pub use replay::ReplayWindow;
use transform::Transform;

use crate::rtp;

/// An SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// SRTP_AES128_CM_HMAC_SHA1_80 (0x0001).
    Aes128CmHmacSha1_80,
    /// SRTP_AEAD_AES_128_GCM (0x0007).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (0x0008).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Master (and session) key length.
    pub fn key_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes256Gcm => 32,
            _ => 16,
        }
    }
    /// Master (and session) salt length.
    pub fn salt_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => 14,
            _ => 12,
        }
    }
    /// Bytes added to an RTP packet.
    pub fn rtp_overhead(self) -> usize {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => transform::HMAC_TAG_LEN,
            _ => transform::GCM_TAG_LEN,
        }
    }
    /// Bytes added to an RTCP packet (tag and E|index word).
    pub fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + 4
    }
    /// The profile for a DTLS `use_srtp` protection profile id.
    pub fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(SrtpProfile::Aes128CmHmacSha1_80),
            0x0007 => Some(SrtpProfile::AeadAes128Gcm),
            0x0008 => Some(SrtpProfile::AeadAes256Gcm),
            _ => None,
        }
    }
    /// The OpenSSL/RFC name, e.g. `SRTP_AEAD_AES_128_GCM`.
    pub fn name(self) -> &'static str {
        match self {
            SrtpProfile::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_SHA1_80",
            SrtpProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            SrtpProfile::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        }
    }
    /// Parses an OpenSSL/RFC profile name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            SrtpProfile::Aes128CmHmacSha1_80,
            SrtpProfile::AeadAes128Gcm,
            SrtpProfile::AeadAes256Gcm,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    /// Master key or salt length does not match the profile.
    BadKeyLength,
    /// The RTP header is invalid.
    BadRtpHeader(rtp::RtpError),
    /// The packet is shorter than its header plus the tag (and SRTCP index).
    TooShort,
    /// The buffer has no room for the tag.
    BufferTooSmall,
    /// The authentication tag does not match.
    AuthFailed,
    /// The index was seen before.
    Replayed,
    /// The index is older than the replay window.
    TooOld,
    /// The context already tracks [`SrtpContext::max_streams`] SSRCs.
    TooManyStreams,
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for SrtpError {}

/// A master key and salt for one direction.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// The key (16 or 32 bytes).
    pub key: Vec<u8>,
    /// The salt (14 or 12 bytes).
    pub salt: Vec<u8>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Splits DTLS-SRTP exported keying material (RFC 5764 §4.2:
/// `client_key | server_key | client_salt | server_salt`) into (client, server) master keys.
/// The client writes with the client key; a DTLS server protects with the server key.
pub fn split_keying_material(
    profile: SrtpProfile,
    material: &[u8],
) -> Result<(MasterKey, MasterKey), SrtpError> {
    let (k, s) = (profile.key_len(), profile.salt_len());
    if material.len() != 2 * (k + s) {
        return Err(SrtpError::BadKeyLength);
    }
    let client = MasterKey {
        key: material[..k].to_vec(),
        salt: material[2 * k..2 * k + s].to_vec(),
    };
    let server = MasterKey {
        key: material[k..2 * k].to_vec(),
        salt: material[2 * k + s..].to_vec(),
    };
    Ok((client, server))
}

/// Replay and index state of one SSRC.
#[derive(Debug, Clone)]
struct Stream {
    ssrc: u32,
    /// Highest SRTP index seen/sent (48 bits); None before the first packet.
    rtp_highest: Option<u64>,
    rtp_window: ReplayWindow,
    rtcp_window: ReplayWindow,
    /// Next outbound SRTCP index.
    rtcp_next: u32,
}

impl Stream {
    fn new(ssrc: u32) -> Self {
        Stream {
            ssrc,
            rtp_highest: None,
            rtp_window: ReplayWindow::new(),
            rtcp_window: ReplayWindow::new(),
            rtcp_next: 1,
        }
    }
}

/// Estimates the ROC of `seq` from the highest index seen (RFC 3711 §3.3.1). `None` when the
/// packet would precede index 0.
fn estimate_roc(highest: Option<u64>, seq: u16) -> Option<u32> {
    let Some(h) = highest else { return Some(0) };
    let roc = (h >> 16) as u32;
    let s_l = h as u16;
    if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            return roc.checked_sub(1);
        }
    } else if s_l - 0x8000 > seq {
        return roc.checked_add(1);
    }
    Some(roc)
}

/// SRTP/SRTCP state for one direction of one DTLS-SRTP session.
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: Transform,
    rtcp: Transform,
    streams: Vec<Stream>,
    last: usize,
    max_streams: usize,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl SrtpContext {
    /// Derives the session keys from a master key and salt.
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(Self::from_transforms(
            profile,
            Transform::new(profile, master_key, master_salt, false)?,
            Transform::new(profile, master_key, master_salt, true)?,
        ))
    }

    fn from_transforms(profile: SrtpProfile, rtp: Transform, rtcp: Transform) -> Self {
        SrtpContext {
            profile,
            rtp,
            rtcp,
            streams: Vec::new(),
            last: 0,
            max_streams: 1024,
        }
    }

    /// The profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// The most SSRCs tracked (default 1024).
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// Changes the most SSRCs tracked.
    pub fn set_max_streams(&mut self, n: usize) {
        self.max_streams = n;
    }

    fn find(&mut self, ssrc: u32) -> Option<usize> {
        if self.streams.get(self.last).is_some_and(|s| s.ssrc == ssrc) {
            return Some(self.last);
        }
        let i = self.streams.iter().position(|s| s.ssrc == ssrc)?;
        self.last = i;
        Some(i)
    }

    fn find_or_insert(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        if let Some(i) = self.find(ssrc) {
            return Ok(i);
        }
        if self.streams.len() >= self.max_streams {
            return Err(SrtpError::TooManyStreams);
        }
        self.streams.push(Stream::new(ssrc));
        self.last = self.streams.len() - 1;
        Ok(self.last)
    }

    /// Forgets an SSRC's state.
    pub fn remove_stream(&mut self, ssrc: u32) {
        self.streams.retain(|s| s.ssrc != ssrc);
        self.last = 0;
    }

    /// The rollover counter of an SSRC, if it has been seen.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        self.streams
            .iter()
            .find(|s| s.ssrc == ssrc)
            .and_then(|s| s.rtp_highest)
            .map(|h| (h >> 16) as u32)
    }

    /// Sets the rollover counter of an SSRC (e.g. when joining a stream mid-way, RFC 4568).
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) -> Result<(), SrtpError> {
        let i = self.find_or_insert(ssrc)?;
        let s = &mut self.streams[i];
        let seq = s.rtp_highest.map_or(0, |h| h as u16);
        s.rtp_highest = Some((u64::from(roc) << 16) | u64::from(seq));
        Ok(())
    }

    /// Sets the next outbound SRTCP index of an SSRC.
    pub fn set_srtcp_index(&mut self, ssrc: u32, index: u32) -> Result<(), SrtpError> {
        let i = self.find_or_insert(ssrc)?;
        self.streams[i].rtcp_next = index & 0x7FFF_FFFF;
        Ok(())
    }

    /// Protects the RTP packet in `buf[..len]` in place; `buf` needs
    /// [`SrtpProfile::rtp_overhead`] spare bytes after `len`. Returns the protected length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let plain = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let header_len = rtp::header_len(plain).map_err(SrtpError::BadRtpHeader)?;
        if buf.len() < len + self.rtp.rtp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let i = self.find_or_insert(ssrc)?;
        let stream = &mut self.streams[i];
        let roc = estimate_roc(stream.rtp_highest, seq).unwrap_or(0);
        let index = (u64::from(roc) << 16) | u64::from(seq);
        if stream.rtp_highest.is_none_or(|h| index > h) {
            stream.rtp_highest = Some(index);
        }
        Ok(self.rtp.protect_rtp(buf, header_len, len, ssrc, roc, seq))
    }

    /// [`protect_rtp`](Self::protect_rtp) on a `Vec`, growing it by the tag (no reallocation
    /// when its capacity has room).
    pub fn protect_rtp_vec(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = pkt.len();
        pkt.resize(len + self.rtp.rtp_overhead(), 0);
        match self.protect_rtp(pkt, len) {
            Ok(n) => {
                pkt.truncate(n);
                Ok(())
            }
            Err(e) => {
                pkt.truncate(len);
                Err(e)
            }
        }
    }

    /// Verifies, replay-checks and decrypts the SRTP packet filling `buf`, in place. Returns
    /// the length of the plain RTP packet at the start of `buf`.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let header_len = rtp::header_len(buf).map_err(SrtpError::BadRtpHeader)?;
        if buf.len() < header_len + self.rtp.rtp_overhead() {
            return Err(SrtpError::TooShort);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let known = self.find(ssrc);
        let highest = known.and_then(|i| self.streams[i].rtp_highest);
        let roc = estimate_roc(highest, seq).ok_or(SrtpError::TooOld)?;
        let index = (u64::from(roc) << 16) | u64::from(seq);
        if let Some(i) = known {
            self.streams[i].rtp_window.check(index)?;
        } else if self.streams.len() >= self.max_streams {
            return Err(SrtpError::TooManyStreams);
        }
        let len = buf.len();
        let n = self
            .rtp
            .unprotect_rtp(buf, header_len, len, ssrc, roc, seq)?;
        let i = self.find_or_insert(ssrc)?;
        let stream = &mut self.streams[i];
        stream.rtp_window.commit(index);
        if stream.rtp_highest.is_none_or(|h| index > h) {
            stream.rtp_highest = Some(index);
        }
        Ok(n)
    }

    /// Protects the compound RTCP packet in `buf[..len]` in place with encryption (E flag
    /// set); `buf` needs [`SrtpProfile::rtcp_overhead`] spare bytes. Returns the new length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.protect_rtcp_with(buf, len, true)
    }

    /// Like [`protect_rtcp`](Self::protect_rtcp), choosing whether to encrypt.
    pub fn protect_rtcp_with(
        &mut self,
        buf: &mut [u8],
        len: usize,
        encrypt: bool,
    ) -> Result<usize, SrtpError> {
        if len < 8 || buf.len() < len {
            return Err(SrtpError::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::BadRtpHeader(rtp::RtpError::BadVersion));
        }
        if buf.len() < len + self.rtcp.rtcp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let i = self.find_or_insert(ssrc)?;
        let index = self.streams[i].rtcp_next;
        self.streams[i].rtcp_next = (index + 1) & 0x7FFF_FFFF;
        Ok(self.rtcp.protect_rtcp(buf, len, ssrc, index, encrypt))
    }

    /// [`protect_rtcp`](Self::protect_rtcp) on a `Vec`.
    pub fn protect_rtcp_vec(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = pkt.len();
        pkt.resize(len + self.rtcp.rtcp_overhead(), 0);
        match self.protect_rtcp(pkt, len) {
            Ok(n) => {
                pkt.truncate(n);
                Ok(())
            }
            Err(e) => {
                pkt.truncate(len);
                Err(e)
            }
        }
    }

    /// Verifies, replay-checks and (when the E flag is set) decrypts the SRTCP packet filling
    /// `buf`. Returns the length of the plain compound RTCP packet.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        if buf.len() < 8 + self.rtcp.rtcp_overhead() {
            return Err(SrtpError::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::BadRtpHeader(rtp::RtpError::BadVersion));
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let index = u64::from(self.rtcp.rtcp_e_index(buf)? & 0x7FFF_FFFF);
        let known = self.find(ssrc);
        if let Some(i) = known {
            self.streams[i].rtcp_window.check(index)?;
        } else if self.streams.len() >= self.max_streams {
            return Err(SrtpError::TooManyStreams);
        }
        let n = self.rtcp.unprotect_rtcp(buf, ssrc)?;
        let i = self.find_or_insert(ssrc)?;
        self.streams[i].rtcp_window.commit(index);
        Ok(n)
    }
}
