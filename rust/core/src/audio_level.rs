//! Audio levels from the client-to-mixer audio level header extension (RFC 6464): one byte,
//! the voice activity flag V (0x80) and the level in -dBov (0 = loudest, 127 = silence).
//!
//! [`AudioLevelMeter`] smooths the per-packet levels of one track (a short exponential
//! average, so one loud packet is not a speaker) and reports, per reporting interval, the
//! loudest smoothed level and whether any packet had voice activity.

/// The level meaning silence.
pub const SILENCE: u8 = 127;

/// Smoothed audio level of one track.
#[derive(Debug, Clone)]
pub struct AudioLevelMeter {
    /// Smoothed level ×16.
    smoothed16: u32,
    loudest: Option<u8>,
    voice: bool,
}

impl Default for AudioLevelMeter {
    fn default() -> Self {
        AudioLevelMeter {
            smoothed16: u32::from(SILENCE) << 4,
            loudest: None,
            voice: false,
        }
    }
}

impl AudioLevelMeter {
    /// A meter starting from silence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the extension's data (its first byte); ignores empty data.
    pub fn on_extension(&mut self, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        let level = u32::from(b & 0x7F);
        // s += (level - s) / 4
        self.smoothed16 = (self.smoothed16 * 3 + (level << 4)) / 4;
        let s = ((self.smoothed16 + 8) >> 4).min(u32::from(SILENCE)) as u8;
        self.loudest = Some(self.loudest.map_or(s, |l| l.min(s)));
        self.voice |= b & 0x80 != 0;
    }

    /// The loudest smoothed level (-dBov) and voice activity since the last call, if any
    /// packet carried a level; starts a new interval.
    pub fn take(&mut self) -> Option<(u8, bool)> {
        let level = self.loudest.take()?;
        let voice = std::mem::take(&mut self.voice);
        Some((level, voice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooths_and_reports_the_loudest_per_interval() {
        let mut m = AudioLevelMeter::new();
        assert_eq!(m.take(), None);
        m.on_extension(&[]);
        assert_eq!(m.take(), None);
        // a talker at -30 dBov with voice activity, for 20 packets
        for _ in 0..20 {
            m.on_extension(&[0x80 | 30]);
        }
        let (level, voice) = m.take().unwrap();
        assert!(voice);
        assert!((30..=31).contains(&level), "{level}");
        // one loud packet in silence barely moves the smoothed level
        for _ in 0..50 {
            m.on_extension(&[127]);
        }
        m.take();
        m.on_extension(&[0]);
        let (level, voice) = m.take().unwrap();
        assert!(!voice);
        assert!(level > 90, "{level}");
    }
}
