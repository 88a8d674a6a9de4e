//! Priority rotation: uses the lowest priority number first, and the most budget within it.
//!
//! Select it in a config file with:
//!
//! ```toml
//! [strategy]
//! type = "priority"
//! ```

#![deny(missing_docs)]

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use tokenfleet_core::{Candidate, ChoiceContext, RotationStrategy};

/// The `type` name the priority strategy registers under.
pub const PRIORITY: &str = "priority";

/// Picks a candidate of the lowest `priority` number, and within that tier
/// the one with the most budget left.
///
/// The pool passes only tokens that have budget, so a higher tier is used
/// only once every token of the lower tiers is out of budget, cooling down
/// or invalid. A candidate with no known limit counts as having the most
/// budget. Ties are broken uniformly at random with the context's random word.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Priority {}

impl Priority {
    /// Creates the strategy.
    pub const fn new() -> Self {
        Self {}
    }
}

tokenfleet_core::register_plugin!(
    strategy "priority",
    "the token with the lowest priority number, then the most budget"
);

#[typetag::serde(name = "priority")]
impl RotationStrategy for Priority {
    fn name(&self) -> &'static str {
        PRIORITY
    }

    fn choose(&self, candidates: &[Candidate], context: &ChoiceContext) -> Option<usize> {
        // First pass: the best candidate and how many tie with it.
        let mut best = candidates.first()?;
        let mut ties: u64 = 1;
        for candidate in &candidates[1..] {
            match compare(candidate, best) {
                Ordering::Greater => {
                    best = candidate;
                    ties = 1;
                }
                Ordering::Equal => ties += 1,
                Ordering::Less => {}
            }
        }

        // Second pass: the chosen one among the tied candidates.
        let mut skip = context.random % ties;
        candidates.iter().position(|candidate| {
            if compare(candidate, best) != Ordering::Equal {
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

/// Orders candidates by preference: `Greater` is preferred.
fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| budget_rank(a.remaining).cmp(&budget_rank(b.remaining)))
}

/// Ranks a remaining budget so that no known limit ranks above any number.
fn budget_rank(remaining: Option<u64>) -> (bool, u64) {
    match remaining {
        None => (true, 0),
        Some(remaining) => (false, remaining),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(token_index: usize, priority: u32, remaining: Option<u64>) -> Candidate {
        Candidate {
            token_index,
            priority,
            weight: 1,
            remaining,
            limit: Some(5000),
            reset_in_ms: Some(60_000),
            last_used_ms: 0,
        }
    }

    fn choose(candidates: &[Candidate], random: u64) -> Option<usize> {
        let context = ChoiceContext {
            now_ms: 1_700_000_000_000,
            random,
        };
        Priority::new().choose(candidates, &context)
    }

    /// Returns the token index chosen for every random word in `0..rounds`.
    fn picks(candidates: &[Candidate], rounds: u64) -> Vec<usize> {
        (0..rounds)
            .map(|random| candidates[choose(candidates, random).unwrap()].token_index)
            .collect()
    }

    #[test]
    fn lowest_tier_wins() {
        let candidates = [
            candidate(0, 1, Some(5000)),
            candidate(1, 0, Some(10)),
            candidate(2, 2, None),
        ];
        assert!(picks(&candidates, 8).iter().all(|&index| index == 1));
    }

    #[test]
    fn next_tier_when_lower_tier_absent() {
        // Tier 0 tokens are out of budget, so the pool left them out.
        let candidates = [
            candidate(2, 2, Some(5000)),
            candidate(3, 1, Some(20)),
            candidate(4, 1, Some(30)),
        ];
        assert!(picks(&candidates, 8).iter().all(|&index| index == 4));
    }

    #[test]
    fn most_remaining_within_tier() {
        let candidates = [
            candidate(0, 0, Some(100)),
            candidate(1, 0, Some(4000)),
            candidate(2, 0, Some(3999)),
        ];
        assert!(picks(&candidates, 8).iter().all(|&index| index == 1));
    }

    #[test]
    fn unknown_limit_counts_as_most() {
        let candidates = [
            candidate(0, 0, Some(u64::MAX)),
            candidate(1, 0, None),
            candidate(2, 1, None),
        ];
        assert!(picks(&candidates, 8).iter().all(|&index| index == 1));
    }

    #[test]
    fn ties_spread_within_tier() {
        let candidates = [
            candidate(0, 0, Some(500)),
            candidate(1, 1, Some(9000)),
            candidate(2, 0, Some(500)),
            candidate(3, 0, Some(500)),
        ];
        let picks = picks(&candidates, 300);
        for index in [0, 2, 3] {
            let count = picks.iter().filter(|&&pick| pick == index).count();
            assert_eq!(count, 100, "token {index}");
        }
        assert!(!picks.contains(&1));
    }

    #[test]
    fn single_and_empty_candidates() {
        assert_eq!(choose(&[candidate(4, 9, Some(0))], 3), Some(0));
        assert_eq!(choose(&[], 3), None);
    }

    #[test]
    fn toml_table_builds_strategy() {
        let strategy: Box<dyn RotationStrategy> = toml::from_str(r#"type = "priority""#).unwrap();
        assert_eq!(strategy.name(), PRIORITY);

        let text = toml::to_string(&strategy).unwrap();
        assert_eq!(text.trim(), r#"type = "priority""#);
        let again: Box<dyn RotationStrategy> = toml::from_str(&text).unwrap();
        assert_eq!(again.name(), PRIORITY);

        let json = serde_json::to_value(&strategy).unwrap();
        assert_eq!(json, serde_json::json!({"type": "priority"}));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = "type = \"priority\"\norder = \"desc\"\n";
        let error = toml::from_str::<Box<dyn RotationStrategy>>(text).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `order`"),
            "{error}"
        );
    }
}
