//! Rate-aware rotation: picks the token with the highest sustainable rate until its window resets.
//!
//! Select it in a config file with:
//!
//! ```toml
//! [strategy]
//! type = "rate_aware"
//! ```

#![deny(missing_docs)]

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use tokenfleet_core::{Candidate, ChoiceContext, RotationStrategy};

/// The `type` name the rate-aware strategy registers under.
pub const RATE_AWARE: &str = "rate_aware";

/// The shortest window a score divides by, so that a reset due now (or
/// already past) does not divide by zero or inflate a score without bound.
const MIN_WINDOW_MS: u64 = 1_000;

/// The window assumed when a candidate's reset is unknown: one hour, the
/// longest window of the common GitHub buckets.
const UNKNOWN_WINDOW_MS: u64 = 3_600_000;

/// Picks the token with the highest sustainable rate: budget left divided
/// by the time until its window resets.
///
/// Budget that resets soon is spent first, because whatever is left at
/// the reset is lost. At equal resets the token with more budget wins. A
/// candidate with no known limit (unlimited, or not yet learned) beats
/// every known budget. Ties are broken uniformly at random with the
/// context's random word.
///
/// The reset time is clamped to at least one second, and an unknown reset
/// counts as one hour.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateAware {}

impl RateAware {
    /// Creates the strategy.
    pub const fn new() -> Self {
        Self {}
    }
}

tokenfleet_core::register_plugin!(
    strategy "rate_aware",
    "the token that can sustain the highest rate until its reset (the default)"
);

#[typetag::serde(name = "rate_aware")]
impl RotationStrategy for RateAware {
    fn name(&self) -> &'static str {
        RATE_AWARE
    }

    fn choose(&self, candidates: &[Candidate], context: &ChoiceContext) -> Option<usize> {
        // First pass: the best score and how many candidates share it.
        let mut best = Score::of(candidates.first()?);
        let mut ties: u64 = 1;
        for candidate in &candidates[1..] {
            let score = Score::of(candidate);
            match score.compare(best) {
                Ordering::Greater => {
                    best = score;
                    ties = 1;
                }
                Ordering::Equal => ties += 1,
                Ordering::Less => {}
            }
        }

        // Second pass: the chosen one among the tied candidates.
        let mut skip = context.random % ties;
        candidates.iter().position(|candidate| {
            if Score::of(candidate).compare(best) != Ordering::Equal {
                return false;
            }
            if skip == 0 {
                return true;
            }
            skip -= 1;
            false
        })
    }
}

/// A candidate's sustainable rate, `remaining / window_ms`, kept as a
/// fraction so that equal rates compare equal exactly.
#[derive(Debug, Clone, Copy)]
enum Score {
    Rate { remaining: u64, window_ms: u64 },
    Unlimited,
}

impl Score {
    fn of(candidate: &Candidate) -> Self {
        let Some(remaining) = candidate.remaining else {
            return Self::Unlimited;
        };
        let window_ms = candidate
            .reset_in_ms
            .unwrap_or(UNKNOWN_WINDOW_MS)
            .max(MIN_WINDOW_MS);
        Self::Rate {
            remaining,
            window_ms,
        }
    }

    fn compare(self, other: Self) -> Ordering {
        match (self, other) {
            (Self::Unlimited, Self::Unlimited) => Ordering::Equal,
            (Self::Unlimited, Self::Rate { .. }) => Ordering::Greater,
            (Self::Rate { .. }, Self::Unlimited) => Ordering::Less,
            (
                Self::Rate {
                    remaining,
                    window_ms,
                },
                Self::Rate {
                    remaining: other_remaining,
                    window_ms: other_window_ms,
                },
            ) => {
                // Compares a/b with c/d as a·d with c·b, which cannot overflow in u128.
                let left = u128::from(remaining) * u128::from(other_window_ms);
                let right = u128::from(other_remaining) * u128::from(window_ms);
                left.cmp(&right)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(
        token_index: usize,
        remaining: Option<u64>,
        reset_in_ms: Option<u64>,
    ) -> Candidate {
        Candidate {
            token_index,
            priority: 0,
            weight: 1,
            remaining,
            limit: Some(5000),
            reset_in_ms,
            last_used_ms: 0,
        }
    }

    fn choose(candidates: &[Candidate], random: u64) -> Option<usize> {
        let context = ChoiceContext {
            now_ms: 1_700_000_000_000,
            random,
        };
        RateAware::new().choose(candidates, &context)
    }

    /// Counts how often each position is chosen over `rounds` random words.
    fn spread(candidates: &[Candidate], rounds: u64) -> Vec<u64> {
        let mut counts = vec![0; candidates.len()];
        for round in 0..rounds {
            let random = round.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let position = choose(candidates, random).unwrap();
            counts[position] += 1;
        }
        counts
    }

    #[test]
    fn soon_reset_budget_preferred() {
        let candidates = [
            candidate(0, Some(1000), Some(3_600_000)),
            candidate(1, Some(100), Some(10_000)),
        ];
        for random in 0..8 {
            assert_eq!(choose(&candidates, random), Some(1), "random {random}");
        }
    }

    #[test]
    fn higher_remaining_preferred_at_equal_reset() {
        let candidates = [
            candidate(0, Some(300), Some(60_000)),
            candidate(1, Some(301), Some(60_000)),
            candidate(2, Some(299), Some(60_000)),
        ];
        for random in 0..8 {
            assert_eq!(choose(&candidates, random), Some(1), "random {random}");
        }
    }

    #[test]
    fn ties_spread_over_all_tied() {
        // 10/s, 10/s, 10/s and 1/s: the first three tie exactly.
        let candidates = [
            candidate(0, Some(100), Some(10_000)),
            candidate(1, Some(200), Some(20_000)),
            candidate(4, Some(36_000), Some(3_600_000)),
            candidate(7, Some(10), Some(10_000)),
        ];
        let counts = spread(&candidates, 3000);

        assert_eq!(counts[3], 0, "{counts:?}");
        for position in 0..3 {
            assert!(
                (800..=1200).contains(&counts[position]),
                "position {position} chosen {} times: {counts:?}",
                counts[position]
            );
        }
    }

    #[test]
    fn random_word_picks_each_tie() {
        let candidates = [
            candidate(0, Some(50), Some(5_000)),
            candidate(1, Some(50), Some(5_000)),
            candidate(2, Some(50), Some(5_000)),
        ];
        assert_eq!(choose(&candidates, 0), Some(0));
        assert_eq!(choose(&candidates, 1), Some(1));
        assert_eq!(choose(&candidates, 2), Some(2));
        assert_eq!(choose(&candidates, 3), Some(0));
        assert_eq!(choose(&candidates, u64::MAX), Some(0));
    }

    #[test]
    fn unknown_limit_beats_any_budget() {
        let candidates = [
            candidate(0, Some(u64::MAX), Some(1_000)),
            candidate(1, None, None),
            candidate(2, Some(5000), Some(1)),
        ];
        for random in 0..8 {
            assert_eq!(choose(&candidates, random), Some(1), "random {random}");
        }
    }

    #[test]
    fn unknown_limits_tie() {
        let candidates = [
            candidate(0, None, None),
            candidate(1, Some(10), Some(1_000)),
            candidate(2, None, Some(5_000)),
        ];
        let counts = spread(&candidates, 1000);
        assert_eq!(counts[1], 0, "{counts:?}");
        assert!(counts[0] > 400, "{counts:?}");
        assert!(counts[2] > 400, "{counts:?}");
    }

    #[test]
    fn short_reset_is_clamped() {
        // Resets due now, in half a second and in one second all count as one second.
        let due = [
            candidate(0, Some(5), Some(0)),
            candidate(1, Some(5), Some(500)),
            candidate(2, Some(5), Some(1_000)),
        ];
        let counts = spread(&due, 900);
        assert!(counts.iter().all(|&count| count > 200), "{counts:?}");

        let more = [
            candidate(0, Some(5), Some(0)),
            candidate(1, Some(6), Some(1_000)),
        ];
        assert_eq!(choose(&more, 0), Some(1));
    }

    #[test]
    fn unknown_reset_counts_as_hour() {
        let tied = [
            candidate(0, Some(3600), None),
            candidate(1, Some(3600), Some(3_600_000)),
        ];
        let counts = spread(&tied, 400);
        assert!(counts.iter().all(|&count| count > 100), "{counts:?}");

        let better = [
            candidate(0, Some(3599), Some(3_600_000)),
            candidate(1, Some(3600), None),
        ];
        assert_eq!(choose(&better, 0), Some(1));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let candidates = [
            candidate(0, Some(u64::MAX), Some(u64::MAX)),
            candidate(1, Some(u64::MAX), Some(1_000)),
            candidate(2, Some(0), Some(0)),
        ];
        assert_eq!(choose(&candidates, 0), Some(1));
    }

    #[test]
    fn single_and_empty_candidates() {
        assert_eq!(choose(&[candidate(9, Some(0), Some(0))], 42), Some(0));
        assert_eq!(choose(&[], 42), None);
    }

    #[test]
    fn toml_table_builds_strategy() {
        let strategy: Box<dyn RotationStrategy> = toml::from_str(r#"type = "rate_aware""#).unwrap();
        assert_eq!(strategy.name(), RATE_AWARE);

        let text = toml::to_string(&strategy).unwrap();
        assert_eq!(text.trim(), r#"type = "rate_aware""#);
        let again: Box<dyn RotationStrategy> = toml::from_str(&text).unwrap();
        assert_eq!(again.name(), RATE_AWARE);

        let json = serde_json::to_value(&strategy).unwrap();
        assert_eq!(json, serde_json::json!({"type": "rate_aware"}));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = "type = \"rate_aware\"\nwindow = 3\n";
        let error = toml::from_str::<Box<dyn RotationStrategy>>(text).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `window`"),
            "{error}"
        );
    }
}
