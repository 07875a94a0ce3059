//! A fixed-size log-linear histogram of µs values (end-to-end latency of received packets).
//!
//! Values below 32 µs have their own bucket; above, each power of two is split into 16
//! buckets (at most 1/16 ≈ 6 % relative width). Values beyond about 18 minutes land in the
//! last bucket. Recording is an index computation and one add; nothing allocates after the
//! first value.

const LINEAR: u64 = 32;
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXP: u32 = 30;
/// Number of buckets.
pub const BUCKETS: usize = LINEAR as usize + (MAX_EXP as usize - 4) * SUB;

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u32>,
    total: u64,
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= 5
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((v >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    LINEAR as usize + (exp as usize - 5) * SUB + sub
}

/// The smallest value of a bucket.
fn lower(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let exp = ((i - LINEAR as usize) / SUB + 5) as u32;
    let sub = ((i - LINEAR as usize) % SUB) as u64;
    (1u64 << exp) + (sub << (exp - SUB_BITS))
}

/// A bucket's representative value: its midpoint.
pub fn value_of(i: usize) -> u64 {
    let lo = lower(i);
    let hi = if i + 1 < BUCKETS { lower(i + 1) } else { lo + 1 };
    lo + (hi - lo - 1) / 2
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        let c = &mut self.counts[index(v)];
        *c = c.saturating_add(1);
        self.total += 1;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Non-empty buckets as (representative value, count), ascending.
    pub fn buckets(&self) -> Vec<(u64, u32)> {
        self.counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| (value_of(i), c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_with_bounded_error() {
        for v in [0u64, 1, 31, 32, 33, 100, 1_000, 12_345, 999_999, 60_000_000] {
            let i = index(v);
            assert!(lower(i) <= v && (i + 1 == BUCKETS || v < lower(i + 1)), "value {v} bucket {i}");
            let mid = value_of(i) as f64;
            assert!((mid - v as f64).abs() <= (v as f64 / 16.0).max(0.0) + 1.0, "{v} → {mid}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        // buckets are contiguous and increasing
        for i in 1..BUCKETS {
            assert!(lower(i) > lower(i - 1));
        }
    }

    #[test]
    fn recorded_values_come_back_as_bucket_midpoints() {
        let mut h = Histogram::default();
        assert!(h.buckets().is_empty());
        for v in 1..=100u64 {
            h.record(v * 100); // 100 µs .. 10 ms
        }
        for _ in 0..300 {
            h.record(50_000);
        }
        assert_eq!(h.total(), 400);
        let b = h.buckets();
        assert_eq!(b.iter().map(|&(_, c)| u64::from(c)).sum::<u64>(), 400);
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
        let (top, count) = *b.last().unwrap();
        assert_eq!(count, 300);
        assert!((top as f64 - 50_000.0).abs() / 50_000.0 < 1.0 / 16.0);
    }
}
