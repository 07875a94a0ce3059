//! The per-session cryptographic transforms of SRTP/SRTCP and the key derivation function.
//!
//! - AES-CM (RFC 3711 §4.1.1): keystream block `i` is `AES(k_e, IV + i)` with
//!   `IV = (k_s · 2^16) XOR (SSRC · 2^64) XOR (index · 2^16)`; HMAC-SHA1 (§4.2.1) over the
//!   authenticated portion and, for SRTP, the 32-bit ROC, truncated to 80 bits.
//! - AEAD AES-GCM (RFC 7714 §8, §9): 12-byte IV `salt XOR (0 0 | SSRC | ROC | SEQ)` for SRTP and
//!   `salt XOR (0 0 | SSRC | 0 0 | 0 | SRTCP index)` for SRTCP, 16-byte tag; the RTP header
//!   (or the first 8 RTCP bytes plus the E|index word) is additional authenticated data.
//! - The KDF (RFC 3711 §4.3.1 with key_derivation_rate 0, RFC 7714 §11): AES-CM keyed with the
//!   master key, IV = `(master_salt XOR (label · 2^48)) · 2^16`, with a 12-byte AEAD master
//!   salt zero-padded to 14 bytes on the right, as libsrtp does.
//!
//! Every transform is built once per session: the AES key schedules, the HMAC inner/outer
//! states and the GHASH key live in the [`Transform`]; per packet only a stack copy of the
//! HMAC state is made. Nothing here allocates.

use aes::{Aes128, Aes256};
use aes_gcm::{AeadInOut, Aes128Gcm, Aes256Gcm};
use cipher::consts::U16;
use cipher::{Block, BlockCipherEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::{SrtpError, SrtpProfile};

/// Length of the HMAC-SHA1-80 tag.
pub const HMAC_TAG_LEN: usize = 10;
/// Length of the GCM tag.
pub const GCM_TAG_LEN: usize = 16;

/// KDF labels (RFC 3711 §4.3.1).
pub(crate) const LABEL_RTP_KEY: u8 = 0;
pub(crate) const LABEL_RTP_AUTH: u8 = 1;
pub(crate) const LABEL_RTP_SALT: u8 = 2;
pub(crate) const LABEL_RTCP_KEY: u8 = 3;
pub(crate) const LABEL_RTCP_AUTH: u8 = 4;
pub(crate) const LABEL_RTCP_SALT: u8 = 5;

/// XORs the AES counter-mode keystream starting at `iv` into `data`, eight blocks at a time
/// (so AES-NI can pipeline them).
pub(crate) fn aes_cm_xor<C: BlockCipherEncrypt<BlockSize = U16>>(
    cipher: &C,
    iv: [u8; 16],
    data: &mut [u8],
) {
    const PAR: usize = 8;
    let mut counter = u128::from_be_bytes(iv);
    let mut blocks: [Block<C>; PAR] = Default::default();
    for chunk in data.chunks_mut(16 * PAR) {
        let n = chunk.len().div_ceil(16);
        for b in blocks.iter_mut().take(n) {
            b.copy_from_slice(&counter.to_be_bytes());
            counter = counter.wrapping_add(1);
        }
        cipher.encrypt_blocks(&mut blocks[..n]);
        for (d, k) in chunk.chunks_mut(16).zip(blocks.iter()) {
            if let (Ok(d16), Ok(k16)) = (
                <&mut [u8; 16]>::try_from(&mut *d),
                <&[u8; 16]>::try_from(&k[..]),
            ) {
                // whole block: one 128-bit XOR instead of 16 byte XORs
                *d16 = (u128::from_ne_bytes(*d16) ^ u128::from_ne_bytes(*k16)).to_ne_bytes();
            } else {
                for (x, y) in d.iter_mut().zip(k.iter()) {
                    *x ^= y;
                }
            }
        }
    }
}

/// The AES-CM PRF of RFC 3711 §4.3.3: fills `out` with session key material for `label`.
pub(crate) fn kdf<C: BlockCipherEncrypt<BlockSize = U16>>(
    master: &C,
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) {
    let mut iv = [0u8; 16];
    iv[..master_salt.len().min(14)].copy_from_slice(&master_salt[..master_salt.len().min(14)]);
    iv[7] ^= label;
    out.fill(0);
    aes_cm_xor(master, iv, out);
}

/// Derives (key, salt, auth key) for one of SRTP or SRTCP.
fn derive(
    profile: SrtpProfile,
    master_key: &[u8],
    master_salt: &[u8],
    labels: [u8; 3],
) -> ([u8; 32], [u8; 14], [u8; 20]) {
    let (mut key, mut salt, mut auth) = ([0u8; 32], [0u8; 14], [0u8; 20]);
    let (kl, sl) = (profile.key_len(), profile.salt_len());
    if master_key.len() == 32 {
        let c = Aes256::new_from_slice(master_key).expect("checked key length");
        kdf(&c, master_salt, labels[0], &mut key[..kl]);
        kdf(&c, master_salt, labels[2], &mut salt[..sl]);
    } else {
        let c = Aes128::new_from_slice(master_key).expect("checked key length");
        kdf(&c, master_salt, labels[0], &mut key[..kl]);
        kdf(&c, master_salt, labels[1], &mut auth);
        kdf(&c, master_salt, labels[2], &mut salt[..sl]);
    }
    (key, salt, auth)
}

/// One direction's cipher state for SRTP or for SRTCP.
///
/// Built once per context and never moved on the packet path, so the size difference between
/// the inline AES-CM state and the boxed GCM states does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transform {
    /// AES_CM_128_HMAC_SHA1_80.
    CmSha1 {
        aes: Aes128,
        salt: [u8; 14],
        mac: Hmac<Sha1>,
    },
    /// AEAD_AES_128_GCM.
    Gcm128 {
        aead: Box<Aes128Gcm>,
        salt: [u8; 12],
    },
    /// AEAD_AES_256_GCM.
    Gcm256 {
        aead: Box<Aes256Gcm>,
        salt: [u8; 12],
    },
}

fn salt12(s: &[u8; 14]) -> [u8; 12] {
    let mut o = [0u8; 12];
    o.copy_from_slice(&s[..12]);
    o
}

impl Transform {
    /// Builds the SRTP (`rtcp == false`) or SRTCP transform from master key and salt.
    pub(crate) fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        rtcp: bool,
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let labels = if rtcp {
            [LABEL_RTCP_KEY, LABEL_RTCP_AUTH, LABEL_RTCP_SALT]
        } else {
            [LABEL_RTP_KEY, LABEL_RTP_AUTH, LABEL_RTP_SALT]
        };
        let (key, salt, auth) = derive(profile, master_key, master_salt, labels);
        Ok(Self::from_session_keys(
            profile,
            &key[..profile.key_len()],
            &salt,
            &auth,
        ))
    }

    /// Builds a transform from session keys directly (what the RFC test vectors give).
    pub(crate) fn from_session_keys(
        profile: SrtpProfile,
        key: &[u8],
        salt: &[u8; 14],
        auth: &[u8; 20],
    ) -> Self {
        match profile {
            SrtpProfile::Aes128CmHmacSha1_80 => Transform::CmSha1 {
                aes: Aes128::new_from_slice(key).expect("16-byte key"),
                salt: *salt,
                mac: <Hmac<Sha1> as KeyInit>::new_from_slice(auth).expect("any HMAC key length"),
            },
            SrtpProfile::AeadAes128Gcm => Transform::Gcm128 {
                aead: Box::new(Aes128Gcm::new_from_slice(key).expect("16-byte key")),
                salt: salt12(salt),
            },
            SrtpProfile::AeadAes256Gcm => Transform::Gcm256 {
                aead: Box::new(Aes256Gcm::new_from_slice(key).expect("32-byte key")),
                salt: salt12(salt),
            },
        }
    }

    fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(salt);
        for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *d ^= s;
        }
        iv
    }

    fn gcm_iv(salt: &[u8; 12], ssrc: u32, high: u32, low: u16) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&high.to_be_bytes());
        iv[10..12].copy_from_slice(&low.to_be_bytes());
        for (d, s) in iv.iter_mut().zip(salt) {
            *d ^= s;
        }
        iv
    }

    fn hmac(mac: &Hmac<Sha1>, data: &[u8], roc: Option<u32>) -> [u8; 20] {
        let mut m = mac.clone();
        m.update(data);
        if let Some(roc) = roc {
            m.update(&roc.to_be_bytes());
        }
        m.finalize().into_bytes().into()
    }

    /// Bytes the transform adds to an RTP packet.
    pub(crate) fn rtp_overhead(&self) -> usize {
        match self {
            Transform::CmSha1 { .. } => HMAC_TAG_LEN,
            _ => GCM_TAG_LEN,
        }
    }

    /// Encrypts and authenticates `buf[..len]` (RTP header of `header_len` bytes + payload);
    /// `buf` must have room for the tag. Returns the protected length.
    pub(crate) fn protect_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> usize {
        let index = (u64::from(roc) << 16) | u64::from(seq);
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                aes_cm_xor(
                    aes,
                    Self::cm_iv(salt, ssrc, index),
                    &mut buf[header_len..len],
                );
                let tag = Self::hmac(mac, &buf[..len], Some(roc));
                buf[len..len + HMAC_TAG_LEN].copy_from_slice(&tag[..HMAC_TAG_LEN]);
                len + HMAC_TAG_LEN
            }
            Transform::Gcm128 { aead, salt } => gcm_seal(
                &**aead,
                &Self::gcm_iv(salt, ssrc, roc, seq),
                buf,
                header_len,
                len,
            ),
            Transform::Gcm256 { aead, salt } => gcm_seal(
                &**aead,
                &Self::gcm_iv(salt, ssrc, roc, seq),
                buf,
                header_len,
                len,
            ),
        }
    }

    /// Verifies and decrypts a protected RTP packet of `len` bytes. Returns the plain length.
    pub(crate) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<usize, SrtpError> {
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let body = len
            .checked_sub(self.rtp_overhead())
            .filter(|&b| b >= header_len)
            .ok_or(SrtpError::TooShort)?;
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                let tag = Self::hmac(mac, &buf[..body], Some(roc));
                if !bool::from(tag[..HMAC_TAG_LEN].ct_eq(&buf[body..len])) {
                    return Err(SrtpError::AuthFailed);
                }
                aes_cm_xor(
                    aes,
                    Self::cm_iv(salt, ssrc, index),
                    &mut buf[header_len..body],
                );
                Ok(body)
            }
            Transform::Gcm128 { aead, salt } => gcm_open(
                &**aead,
                &Self::gcm_iv(salt, ssrc, roc, seq),
                buf,
                header_len,
                len,
            ),
            Transform::Gcm256 { aead, salt } => gcm_open(
                &**aead,
                &Self::gcm_iv(salt, ssrc, roc, seq),
                buf,
                header_len,
                len,
            ),
        }
    }

    /// Bytes the transform adds to an RTCP packet (tag plus the E|index word).
    pub(crate) fn rtcp_overhead(&self) -> usize {
        self.rtp_overhead() + 4
    }

    /// Protects `buf[..len]` (a compound RTCP packet) with SRTCP index `index`; encrypts unless
    /// `encrypt` is false (E flag clear). Returns the protected length.
    pub(crate) fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
        encrypt: bool,
    ) -> usize {
        let e_index = (index & 0x7FFF_FFFF) | if encrypt { 0x8000_0000 } else { 0 };
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                if encrypt {
                    aes_cm_xor(
                        aes,
                        Self::cm_iv(salt, ssrc, u64::from(index & 0x7FFF_FFFF)),
                        &mut buf[8..len],
                    );
                }
                buf[len..len + 4].copy_from_slice(&e_index.to_be_bytes());
                let tag = Self::hmac(mac, &buf[..len + 4], None);
                buf[len + 4..len + 4 + HMAC_TAG_LEN].copy_from_slice(&tag[..HMAC_TAG_LEN]);
                len + 4 + HMAC_TAG_LEN
            }
            Transform::Gcm128 { aead, salt } => {
                gcm_seal_rtcp(&**aead, salt, buf, len, ssrc, e_index)
            }
            Transform::Gcm256 { aead, salt } => {
                gcm_seal_rtcp(&**aead, salt, buf, len, ssrc, e_index)
            }
        }
    }

    /// Reads the E|index word of a protected RTCP packet (not yet authenticated).
    pub(crate) fn rtcp_e_index(&self, buf: &[u8]) -> Result<u32, SrtpError> {
        let at = match self {
            Transform::CmSha1 { .. } => buf.len().checked_sub(4 + HMAC_TAG_LEN),
            _ => buf.len().checked_sub(4),
        }
        .filter(|&at| {
            at >= 8 + if matches!(self, Transform::CmSha1 { .. }) {
                0
            } else {
                GCM_TAG_LEN
            }
        })
        .ok_or(SrtpError::TooShort)?;
        Ok(u32::from_be_bytes([
            buf[at],
            buf[at + 1],
            buf[at + 2],
            buf[at + 3],
        ]))
    }

    /// Verifies and decrypts a protected RTCP packet (the whole of `buf`). Returns the plain
    /// length.
    pub(crate) fn unprotect_rtcp(&self, buf: &mut [u8], ssrc: u32) -> Result<usize, SrtpError> {
        let e_index = self.rtcp_e_index(buf)?;
        let (encrypted, index) = (e_index & 0x8000_0000 != 0, e_index & 0x7FFF_FFFF);
        let len = buf.len();
        match self {
            Transform::CmSha1 { aes, salt, mac } => {
                let body = len - 4 - HMAC_TAG_LEN;
                let tag = Self::hmac(mac, &buf[..body + 4], None);
                if !bool::from(tag[..HMAC_TAG_LEN].ct_eq(&buf[body + 4..])) {
                    return Err(SrtpError::AuthFailed);
                }
                if encrypted {
                    aes_cm_xor(
                        aes,
                        Self::cm_iv(salt, ssrc, u64::from(index)),
                        &mut buf[8..body],
                    );
                }
                Ok(body)
            }
            Transform::Gcm128 { aead, salt } => gcm_open_rtcp(&**aead, salt, buf, ssrc, e_index),
            Transform::Gcm256 { aead, salt } => gcm_open_rtcp(&**aead, salt, buf, ssrc, e_index),
        }
    }
}

fn gcm_seal<A: AeadInOut>(
    aead: &A,
    iv: &[u8; 12],
    buf: &mut [u8],
    aad_len: usize,
    len: usize,
) -> usize {
    let (aad, rest) = buf.split_at_mut(aad_len);
    let (data, tail) = rest.split_at_mut(len - aad_len);
    let nonce = aes_gcm::Nonce::<A::NonceSize>::try_from(&iv[..]).expect("12-byte nonce");
    let tag = aead
        .encrypt_inout_detached(&nonce, aad, data.into())
        .expect("packet within GCM limits");
    tail[..GCM_TAG_LEN].copy_from_slice(&tag[..GCM_TAG_LEN]);
    len + GCM_TAG_LEN
}

fn gcm_open<A: AeadInOut>(
    aead: &A,
    iv: &[u8; 12],
    buf: &mut [u8],
    aad_len: usize,
    len: usize,
) -> Result<usize, SrtpError> {
    let body = len - GCM_TAG_LEN;
    let (aad, rest) = buf.split_at_mut(aad_len);
    let (data, tail) = rest.split_at_mut(body - aad_len);
    let nonce = aes_gcm::Nonce::<A::NonceSize>::try_from(&iv[..]).expect("12-byte nonce");
    let tag =
        aes_gcm::aead::Tag::<A>::try_from(&tail[..GCM_TAG_LEN]).map_err(|_| SrtpError::TooShort)?;
    aead.decrypt_inout_detached(&nonce, aad, data.into(), &tag)
        .map_err(|_| SrtpError::AuthFailed)?;
    Ok(body)
}

fn gcm_seal_rtcp<A: AeadInOut>(
    aead: &A,
    salt: &[u8; 12],
    buf: &mut [u8],
    len: usize,
    ssrc: u32,
    e_index: u32,
) -> usize {
    let iv = Transform::gcm_iv(salt, ssrc, 0, 0);
    let mut iv = iv;
    for (d, s) in iv[8..12]
        .iter_mut()
        .zip((e_index & 0x7FFF_FFFF).to_be_bytes())
    {
        *d ^= s;
    }
    let nonce = aes_gcm::Nonce::<A::NonceSize>::try_from(&iv[..]).expect("12-byte nonce");
    let tag = if e_index & 0x8000_0000 != 0 {
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&buf[..8]);
        aad[8..].copy_from_slice(&e_index.to_be_bytes());
        aead.encrypt_inout_detached(&nonce, &aad, (&mut buf[8..len]).into())
    } else {
        // the whole packet and the E|index word are AAD; the plaintext is empty
        buf[len..len + 4].copy_from_slice(&e_index.to_be_bytes());
        aead.encrypt_inout_detached(&nonce, &buf[..len + 4], (&mut [][..]).into())
    }
    .expect("packet within GCM limits");
    buf[len..len + GCM_TAG_LEN].copy_from_slice(&tag[..GCM_TAG_LEN]);
    buf[len + GCM_TAG_LEN..len + GCM_TAG_LEN + 4].copy_from_slice(&e_index.to_be_bytes());
    len + GCM_TAG_LEN + 4
}

fn gcm_open_rtcp<A: AeadInOut>(
    aead: &A,
    salt: &[u8; 12],
    buf: &mut [u8],
    ssrc: u32,
    e_index: u32,
) -> Result<usize, SrtpError> {
    let body = buf.len() - 4 - GCM_TAG_LEN;
    let mut iv = Transform::gcm_iv(salt, ssrc, 0, 0);
    for (d, s) in iv[8..12]
        .iter_mut()
        .zip((e_index & 0x7FFF_FFFF).to_be_bytes())
    {
        *d ^= s;
    }
    let nonce = aes_gcm::Nonce::<A::NonceSize>::try_from(&iv[..]).expect("12-byte nonce");
    let tag = aes_gcm::aead::Tag::<A>::try_from(&buf[body..body + GCM_TAG_LEN])
        .map_err(|_| SrtpError::TooShort)?;
    let ok = if e_index & 0x8000_0000 != 0 {
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&buf[..8]);
        aad[8..].copy_from_slice(&e_index.to_be_bytes());
        aead.decrypt_inout_detached(&nonce, &aad, (&mut buf[8..body]).into(), &tag)
    } else {
        // AAD is the packet followed by E|index: put the word where the tag was (saved above)
        buf[body..body + 4].copy_from_slice(&e_index.to_be_bytes());
        aead.decrypt_inout_detached(&nonce, &buf[..body + 4], (&mut [][..]).into(), &tag)
    };
    ok.map_err(|_| SrtpError::AuthFailed)?;
    Ok(body)
}
