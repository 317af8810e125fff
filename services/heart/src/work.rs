//! The CPU work done per beat: xorshift32 steps over independent lanes.
//!
//! The lanes are independent so the compiler can keep them in vector registers: one iteration
//! (one xorshift step of one lane) costs a fraction of a nanosecond, and the contract's default of
//! 20 000 iterations is a few microseconds. The iteration count and the result pass through
//! [`std::hint::black_box`], so the work is never folded away at compile time or skipped.

use std::hint::black_box;

const LANES: usize = 16;

/// Runs `iterations` xorshift steps (rounded up to a multiple of 16) from `seed` and returns a
/// digest of the final state.
pub fn beat_work(iterations: u64, seed: u32) -> u32 {
    let iterations = black_box(iterations);
    let mut lanes = [0u32; LANES];
    for (i, lane) in (0u32..).zip(lanes.iter_mut()) {
        // Never zero: zero is xorshift's fixed point.
        *lane = (seed ^ 0x9E37_79B9u32.wrapping_mul(i + 1)) | 1;
    }
    for _ in 0..iterations.div_ceil(LANES as u64) {
        for x in &mut lanes {
            *x ^= *x << 13;
            *x ^= *x >> 17;
            *x ^= *x << 5;
        }
    }
    black_box(lanes.iter().fold(0u32, |acc, x| acc.rotate_left(5) ^ x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_the_work_done() {
        assert_eq!(beat_work(20_000, 7), beat_work(20_000, 7));
        assert_ne!(beat_work(20_000, 7), beat_work(40_000, 7));
        assert_ne!(beat_work(20_000, 7), beat_work(20_000, 8));
        assert_ne!(beat_work(0, 7), beat_work(16, 7));
    }

    #[test]
    fn more_iterations_take_longer() {
        let time = |n| {
            let start = std::time::Instant::now();
            for _ in 0..5 {
                beat_work(n, 1);
            }
            start.elapsed()
        };
        let (small, large) = (time(1_000), time(2_000_000));
        assert!(
            large > small * 20,
            "{small:?} vs {large:?}: is the work optimised away?"
        );
    }
}
