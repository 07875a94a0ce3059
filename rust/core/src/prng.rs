//! A small pseudo-random generator (xorshift64*) for values that must differ, not be secret:
//! SSRCs, initial sequence numbers, ICE tie-breakers in the load generator.

/// Advances `state` (must be non-zero) and returns 32 well-mixed bits.
pub fn next_u32(state: &mut u64) -> u32 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_from_call_to_call_and_is_repeatable() {
        let (mut a, mut b) = (0x9E37_79B9u64, 0x9E37_79B9u64);
        let first: Vec<u32> = (0..100).map(|_| next_u32(&mut a)).collect();
        let again: Vec<u32> = (0..100).map(|_| next_u32(&mut b)).collect();
        assert_eq!(first, again);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
    }
}
