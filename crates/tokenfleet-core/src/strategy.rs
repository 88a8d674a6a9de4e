//! The rotation-strategy plugin contract.

use std::fmt;

/// One token that may serve a request, as the pool presents it to a strategy.
///
/// Every candidate is eligible: valid, not cooling down, and with budget
/// left in the request's bucket after in-flight reservations and the
/// token's reserve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The token's position in the pool, stable for the pool's lifetime.
    pub token_index: usize,
    /// The configured priority: lower is preferred by priority strategies.
    pub priority: u32,
    /// The configured weight.
    pub weight: u32,
    /// Budget left for this request after reservations in flight and the
    /// reserve; `None` when no limit is known (unlimited, or not yet learned).
    pub remaining: Option<u64>,
    /// The budget of a whole window, when known.
    pub limit: Option<u64>,
    /// Milliseconds until the window resets, when known.
    pub reset_in_ms: Option<u64>,
    /// When the pool last handed out this token, in epoch milliseconds (0: never).
    pub last_used_ms: u64,
}

/// The context a strategy may read besides the candidates.
#[derive(Debug, Clone, Copy)]
pub struct ChoiceContext {
    /// The current time in epoch milliseconds.
    pub now_ms: u64,
    /// A random word for breaking ties; seeded per pool, so tests can fix it.
    pub random: u64,
}

/// Picks a token for each request.
///
/// The pool may call `choose` while it holds its own state lock (the
/// in-memory store keeps the views and the reservation under one lock, so
/// the chosen candidate is still admissible), and from many tasks at once.
/// Implementations must therefore be cheap, must not block, must not call
/// back into the pool and should not allocate on every call. A panic or a
/// position out of range fails that one acquire with an error naming the
/// strategy; the pool stays usable.
#[typetag::serde(tag = "type")]
pub trait RotationStrategy: Send + Sync + fmt::Debug {
    /// Returns the strategy's `type` name, such as `rate_aware`.
    fn name(&self) -> &'static str;

    /// Returns the position in `candidates` of the token to use, or `None`
    /// to decline every candidate. `candidates` is never empty and is
    /// ordered by `token_index`.
    fn choose(&self, candidates: &[Candidate], context: &ChoiceContext) -> Option<usize>;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Stops compiling if `RotationStrategy` stops being usable as a trait object.
    #[allow(dead_code)]
    fn strategy_is_object_safe(_: &dyn RotationStrategy) {}
}
