//! Wrap-aware arithmetic on RTP sequence numbers (16 bit) and timestamps (32 bit).
//!
//! RTP counters wrap; comparing them needs "serial number arithmetic" (RFC 1982): `a` is newer
//! than `b` when the forward distance from `b` to `a` is less than half the number space.
//! [`SeqUnwrapper`] turns a stream of 16-bit numbers into monotonic 64-bit "extended" numbers
//! (the same idea as the RFC 3550 extended highest sequence number and the RFC 3711 index).

/// True when `a` comes after `b` in 16-bit serial number order.
#[inline]
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// True when `a` comes after `b` in 32-bit serial number order (RTP timestamps).
#[inline]
pub fn ts_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// Extends 16-bit sequence numbers to `u64`, relative to the highest one seen.
///
/// The first value maps to `1 << 16 | seq` so that a packet slightly older than the first one
/// still has a non-negative extended number.
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

impl SeqUnwrapper {
    /// A fresh unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value `seq` would get, without recording it.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1 << 16) | u64::from(seq),
            Some(h) => {
                let delta = seq.wrapping_sub(h as u16);
                if delta < 0x8000 {
                    h + u64::from(delta)
                } else {
                    // older: step back; saturate rather than underflow
                    h.saturating_sub(u64::from(delta.wrapping_neg()))
                }
            }
        }
    }

    /// Extends `seq` and records it when it is the new highest.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The highest extended value seen so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_wraps() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, 65535));
        assert!(!seq_newer(65535, 0));
        assert!(!seq_newer(5, 5));
        assert!(ts_newer(0, u32::MAX));
        assert!(!ts_newer(u32::MAX, 0));
    }

    #[test]
    fn unwrapper_crosses_wrap_and_handles_reorder() {
        let mut u = SeqUnwrapper::new();
        let a = u.unwrap(65534);
        assert_eq!(u.unwrap(65535), a + 1);
        assert_eq!(u.unwrap(1), a + 3);
        assert_eq!(u.unwrap(0), a + 2); // late packet
        assert_eq!(u.highest(), Some(a + 3));
        assert_eq!(u.unwrap(2), a + 4);
    }
}
