//! The SRTP/SRTCP replay list (RFC 3711 §3.3.2): a sliding bitmap over packet indices.
//!
//! The window covers the [`ReplayWindow::SIZE`] indices up to and including the highest one
//! authenticated. It is a ring of bits addressed by `index mod SIZE`, so moving forward by one
//! packet clears one bit instead of shifting the whole map.

use super::SrtpError;

const WORDS: usize = 16;

/// Remembers which of the last [`ReplayWindow::SIZE`] indices were received.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// Indices remembered behind the highest one.
    pub const SIZE: u64 = (WORDS * 64) as u64;

    /// An empty window: every index is acceptable.
    pub fn new() -> Self {
        ReplayWindow {
            highest: None,
            bits: [0; WORDS],
        }
    }

    fn bit(index: u64) -> (usize, u64) {
        let slot = (index % Self::SIZE) as usize;
        (slot / 64, 1u64 << (slot % 64))
    }

    /// The highest index committed.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Whether `index` may be accepted (new, or inside the window and not yet seen).
    pub fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(h) = self.highest else { return Ok(()) };
        if index > h {
            return Ok(());
        }
        if h - index >= Self::SIZE {
            return Err(SrtpError::TooOld);
        }
        let (w, m) = Self::bit(index);
        if self.bits[w] & m != 0 {
            Err(SrtpError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records `index` as received (call after authentication succeeded).
    pub fn commit(&mut self, index: u64) {
        match self.highest {
            Some(h) if index > h => {
                let d = index - h;
                if d >= Self::SIZE {
                    self.bits = [0; WORDS];
                } else {
                    for i in h + 1..index {
                        let (w, m) = Self::bit(i);
                        self.bits[w] &= !m;
                    }
                }
                self.highest = Some(index);
            }
            Some(h) if h - index >= Self::SIZE => return,
            Some(_) => {}
            None => {
                self.bits = [0; WORDS];
                self.highest = Some(index);
            }
        }
        let (w, m) = Self::bit(index);
        self.bits[w] |= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_new_rejects_seen_and_old() {
        let mut w = ReplayWindow::new();
        assert!(w.check(5).is_ok());
        w.commit(5);
        assert_eq!(w.check(5), Err(SrtpError::Replayed));
        assert!(w.check(4).is_ok());
        w.commit(4);
        assert_eq!(w.check(4), Err(SrtpError::Replayed));
        w.commit(2000);
        assert_eq!(w.check(2000 - ReplayWindow::SIZE), Err(SrtpError::TooOld));
        assert!(w.check(2000 - ReplayWindow::SIZE + 1).is_ok());
        // the bit of 5 was cleared when the window moved past it; 1000+ still unseen
        assert!(w.check(1500).is_ok());
        w.commit(1500);
        assert_eq!(w.check(1500), Err(SrtpError::Replayed));
    }

    #[test]
    fn ring_slots_are_cleared_when_moving_forward() {
        let mut w = ReplayWindow::new();
        w.commit(10);
        // index 10 + SIZE shares the slot of 10 and must not look replayed
        assert!(w.check(10 + ReplayWindow::SIZE).is_ok());
        w.commit(10 + ReplayWindow::SIZE - 1);
        assert!(w.check(10 + ReplayWindow::SIZE).is_ok());
        w.commit(10 + ReplayWindow::SIZE);
        assert_eq!(w.check(10 + ReplayWindow::SIZE), Err(SrtpError::Replayed));
        assert_eq!(w.check(10), Err(SrtpError::TooOld));
        // every index in the window is tracked separately
        let mut w = ReplayWindow::new();
        for i in 0..3000u64 {
            if i % 3 != 0 {
                w.commit(i);
            }
        }
        for i in 3000 - ReplayWindow::SIZE + 1..3000 {
            assert_eq!(w.check(i).is_ok(), i % 3 == 0, "index {i}");
        }
    }
}
