//! A lock-free, seedable random source for tie-breaks and jitter.

use std::sync::atomic::{AtomicU64, Ordering};

/// SplitMix64 over an atomic counter: any number of threads draw from it
/// without a lock, and a fixed seed gives a fixed sequence.
#[derive(Debug)]
pub struct SharedRng {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SharedRng {
    /// Creates a source from a seed.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// Returns the next random word.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in [0, 1).
    pub fn next_unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a = SharedRng::new(42);
        let b = SharedRng::new(42);
        for _ in 0..4 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn unit_values_stay_in_range() {
        let rng = SharedRng::new(7);
        for _ in 0..1_000 {
            let value = rng.next_unit();
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }
}
