//! Round-robin rotation: hands out the pool's tokens in turn, skipping those without budget.
//!
//! Select it in a config file with:
//!
//! ```toml
//! [strategy]
//! type = "round_robin"
//! ```

#![deny(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokenfleet_core::{Candidate, ChoiceContext, RotationStrategy};

/// The `type` name the round-robin strategy registers under.
pub const ROUND_ROBIN: &str = "round_robin";

/// Picks tokens in the order of their pool index, one after the other.
///
/// A cursor stores the index after the last token handed out. Each call
/// picks the candidate with the lowest `token_index` at or above the
/// cursor, and wraps to the lowest index overall when there is none. A
/// token that is not a candidate (no budget, cooling down) is skipped and
/// the turn passes to the next one. With the same candidates every time,
/// each is chosen equally often.
///
/// The cursor is advanced atomically, so concurrent callers never take the
/// same turn. It starts at zero and is not part of the config.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRobin {
    #[serde(skip)]
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// Creates the strategy with its cursor at the first token.
    pub const fn new() -> Self {
        Self {
            cursor: AtomicUsize::new(0),
        }
    }
}

tokenfleet_core::register_plugin!(strategy "round_robin", "each token in turn");

#[typetag::serde(name = "round_robin")]
impl RotationStrategy for RoundRobin {
    fn name(&self) -> &'static str {
        ROUND_ROBIN
    }

    fn choose(&self, candidates: &[Candidate], _context: &ChoiceContext) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }

        let mut chosen = 0;
        // The closure always returns `Some`, so the update cannot fail. It
        // reruns when another thread moved the cursor in between.
        let _ = self
            .cursor
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cursor| {
                chosen = next_turn(candidates, cursor);
                Some(candidates[chosen].token_index.wrapping_add(1))
            });
        Some(chosen)
    }
}

/// Returns the position of the candidate with the lowest token index at
/// or above `cursor`, or of the lowest index overall when none is.
/// It makes one pass and works whatever order `candidates` come in.
fn next_turn(candidates: &[Candidate], cursor: usize) -> usize {
    let mut at_or_after: Option<usize> = None;
    let mut lowest = 0;
    for (position, candidate) in candidates.iter().enumerate() {
        let index = candidate.token_index;
        if index < candidates[lowest].token_index {
            lowest = position;
        }
        if index >= cursor {
            match at_or_after {
                Some(best) if candidates[best].token_index <= index => {}
                _ => at_or_after = Some(position),
            }
        }
    }
    at_or_after.unwrap_or(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const CONTEXT: ChoiceContext = ChoiceContext {
        now_ms: 1_700_000_000_000,
        random: 7,
    };

    fn candidates(indices: &[usize]) -> Vec<Candidate> {
        indices
            .iter()
            .map(|&token_index| Candidate {
                token_index,
                priority: 0,
                weight: 1,
                remaining: Some(100),
                limit: Some(5000),
                reset_in_ms: Some(60_000),
                last_used_ms: 0,
            })
            .collect()
    }

    /// Returns the token index the strategy picks from `indices`.
    fn pick(strategy: &RoundRobin, indices: &[usize]) -> usize {
        let list = candidates(indices);
        let position = strategy.choose(&list, &CONTEXT).unwrap();
        list[position].token_index
    }

    #[test]
    fn cycles_in_index_order() {
        let strategy = RoundRobin::new();
        let picks: Vec<usize> = (0..8).map(|_| pick(&strategy, &[0, 1, 2, 3])).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn cycles_evenly() {
        let strategy = RoundRobin::new();
        let mut counts = [0u32; 5];
        for _ in 0..500 {
            counts[pick(&strategy, &[0, 1, 2, 3, 4])] += 1;
        }
        assert_eq!(counts, [100; 5]);
    }

    #[test]
    fn skips_missing_tokens() {
        let strategy = RoundRobin::new();
        assert_eq!(pick(&strategy, &[0, 1, 2, 3]), 0);
        assert_eq!(pick(&strategy, &[0, 2, 3]), 2);
        assert_eq!(pick(&strategy, &[0, 1, 3]), 3);
        assert_eq!(pick(&strategy, &[1, 2]), 1);
        assert_eq!(pick(&strategy, &[0, 1, 2, 3]), 2);
    }

    #[test]
    fn sparse_indices_wrap() {
        let strategy = RoundRobin::new();
        let picks: Vec<usize> = (0..6).map(|_| pick(&strategy, &[3, 7, 9])).collect();
        assert_eq!(picks, [3, 7, 9, 3, 7, 9]);
    }

    #[test]
    fn single_candidate_repeats() {
        let strategy = RoundRobin::new();
        for _ in 0..3 {
            assert_eq!(pick(&strategy, &[5]), 5);
        }
        assert_eq!(strategy.choose(&[], &CONTEXT), None);
    }

    #[test]
    fn unordered_candidates_keep_index_order() {
        let strategy = RoundRobin::new();
        let picks: Vec<usize> = (0..4).map(|_| pick(&strategy, &[2, 0, 3, 1])).collect();
        assert_eq!(picks, [0, 1, 2, 3]);
    }

    #[test]
    fn cursor_at_max_index_wraps() {
        let strategy = RoundRobin::new();
        assert_eq!(pick(&strategy, &[usize::MAX]), usize::MAX);
        assert_eq!(pick(&strategy, &[1, usize::MAX]), 1);
    }

    #[test]
    fn concurrent_callers_share_turns() {
        let strategy = Arc::new(RoundRobin::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let strategy = Arc::clone(&strategy);
                std::thread::spawn(move || {
                    let mut counts = [0u32; 4];
                    for _ in 0..1000 {
                        counts[pick(&strategy, &[0, 1, 2, 3])] += 1;
                    }
                    counts
                })
            })
            .collect();

        let mut total = [0u32; 4];
        for thread in threads {
            let counts = thread.join().unwrap();
            for (sum, count) in total.iter_mut().zip(counts) {
                *sum += count;
            }
        }
        assert_eq!(total, [1000; 4]);
    }

    #[test]
    fn toml_table_builds_strategy() {
        let strategy: Box<dyn RotationStrategy> =
            toml::from_str(r#"type = "round_robin""#).unwrap();
        assert_eq!(strategy.name(), ROUND_ROBIN);

        // The cursor is runtime state and stays out of the config.
        strategy.choose(&candidates(&[0, 1]), &CONTEXT);
        let text = toml::to_string(&strategy).unwrap();
        assert_eq!(text.trim(), r#"type = "round_robin""#);
        let json = serde_json::to_value(&strategy).unwrap();
        assert_eq!(json, serde_json::json!({"type": "round_robin"}));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = "type = \"round_robin\"\ncursor = 3\n";
        let error = toml::from_str::<Box<dyn RotationStrategy>>(text).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `cursor`"),
            "{error}"
        );
    }
}
