//! Storage for the budget of every (account, bucket) pair: the
//! [`StateStore`] contract and its in-memory implementation.
//!
//! A store keeps numbers only: limits, remaining budgets, resets,
//! reservations in flight and account cooldowns. Secrets never enter it.

use std::fmt;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::token::TokenId;

/// How far apart two resets of one window may be and still name the same
/// window. Resets are converted from server time with a skew estimate
/// that moves by up to a second, so exact equality is too strict.
pub const SAME_WINDOW_TOLERANCE_MS: u64 = 2_000;

/// The first cooldown after a secondary limit that gave no wait.
pub const SECONDARY_BASE_COOLDOWN_MS: u64 = 60_000;

/// The maximum cooldown that repeated secondary limits grow to.
pub const SECONDARY_MAX_COOLDOWN_MS: u64 = 15 * 60_000;

/// Names one (account, bucket) pair, by position for in-process stores and
/// by name for shared ones.
#[derive(Debug, Clone, Copy)]
pub struct BudgetKey<'a> {
    /// The account's position in the pool.
    pub account: usize,
    /// The account's name, stable across processes.
    pub account_name: &'a str,
    /// The bucket's position in the pool.
    pub bucket: usize,
    /// The bucket's name.
    pub bucket_name: &'a str,
}

/// The knowledge the pool has of one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knowledge {
    /// No response has stated this budget yet.
    Unknown,
    /// The provider applies no limit here (for example GitHub Enterprise
    /// Server with rate limiting off).
    Unlimited,
    /// The last observed limits, with the local estimate of what is left.
    Known {
        /// The budget of one window.
        limit: u64,
        /// The estimate of what is left: the last observation minus
        /// requests spent since without an observation.
        remaining: u64,
        /// The end of the window, in local epoch milliseconds.
        reset_ms: u64,
    },
}

/// The state of one (account, bucket) pair as a store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetView {
    /// The pool's knowledge of the budget.
    pub knowledge: Knowledge,
    /// Reservations handed out and not yet settled.
    pub in_flight: u32,
    /// The end of the account's secondary-limit cooldown, 0 when none.
    pub cooldown_until_ms: u64,
    /// The account has hit a secondary limit and has not had a success
    /// since, so only one request may be in flight.
    pub probation: bool,
    /// The budget one request is expected to spend: the smallest spend of
    /// a single request seen in the current window, or 1 before one is
    /// seen. GitHub's GraphQL queries, for example, cost points, not requests.
    pub request_cost: u64,
}

impl BudgetView {
    /// Returns what a new reservation may spend after reservations in
    /// flight and `floor`, or `None` when no limit is known.
    pub fn spendable(&self, floor: u64) -> Option<u64> {
        match self.knowledge {
            Knowledge::Known { remaining, .. } => Some(
                remaining
                    .saturating_sub(u64::from(self.in_flight).saturating_mul(self.request_cost))
                    .saturating_sub(floor),
            ),
            Knowledge::Unknown | Knowledge::Unlimited => None,
        }
    }

    /// Decides whether a reservation may be made now.
    pub fn admits(&self, floor: u64, now_ms: u64) -> Admission {
        if self.cooldown_until_ms > now_ms {
            return Admission::CoolingDown(self.cooldown_until_ms);
        }
        if self.probation && self.in_flight > 0 {
            return Admission::Busy;
        }
        match self.knowledge {
            Knowledge::Unlimited => Admission::Admit,
            Knowledge::Unknown => {
                if self.in_flight == 0 {
                    Admission::Admit
                } else {
                    Admission::Busy
                }
            }
            Knowledge::Known {
                reset_ms,
                remaining,
                ..
            } => {
                if now_ms >= reset_ms {
                    // The window has rolled over, so the budget is probably
                    // back, but only a response can confirm it. One request
                    // at a time is admitted until then.
                    return if self.in_flight == 0 {
                        Admission::Admit
                    } else {
                        Admission::Busy
                    };
                }
                // Budget held by reservations in flight counts as spent:
                // most of those requests will spend it. A lease released
                // unsent wakes waiting tasks, which then look again.
                let cost = self.request_cost.max(1);
                if self.spendable(floor).unwrap_or(0) >= cost {
                    Admission::Admit
                } else if self.in_flight > 0 && remaining.saturating_sub(floor) >= cost {
                    // Requests in flight have reserved the rest. Their
                    // responses state what is really left, because the
                    // last observation may already count some of them.
                    Admission::Busy
                } else {
                    Admission::Exhausted(reset_ms)
                }
            }
        }
    }
}

/// Whether a budget admits one more reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A reservation may be made.
    Admit,
    /// Not now, but a request in flight will settle it soon.
    Busy,
    /// The budget is spent until the given local epoch milliseconds.
    Exhausted(u64),
    /// The account cools down from a secondary limit until the given time.
    CoolingDown(u64),
}

/// Limits stated by a response, with the reset already in local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalObservation {
    /// The budget of one window.
    pub limit: u64,
    /// The budget left in the window.
    pub remaining: u64,
    /// The budget spent in the window, when stated.
    pub used: Option<u64>,
    /// The end of the window, in local epoch milliseconds.
    pub reset_ms: u64,
}

/// The end of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// The request reached the provider, so it may have spent budget.
    pub sent: bool,
    /// The limits the response stated for this bucket.
    pub observation: Option<LocalObservation>,
    /// A primary limit: the budget is spent until this local time.
    pub exhausted_until_ms: Option<u64>,
    /// The provider returned a normal response without any limit headers,
    /// which means "no known limit" for a budget that was never stated.
    pub answered_without_limits: bool,
    /// The request succeeded, which ends a secondary-limit probation.
    pub success: bool,
}

/// A failure of a shared store.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store failed: {message}")]
pub struct StoreError {
    /// What failed.
    pub message: String,
}

/// Keeps the budget of every (account, bucket) pair and every account's
/// cooldown, and makes reservations atomically.
///
/// The pool reads a snapshot, lets the strategy choose, then calls
/// `try_reserve`. A store shared by several processes rejects a reservation
/// that another process won first, and the pool chooses again.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Writes the view of every key into `out`, in the same order.
    async fn view(
        &self,
        keys: &[BudgetKey<'_>],
        out: &mut Vec<BudgetView>,
    ) -> Result<(), StoreError>;

    /// Reserves one unit of `key`'s budget unless that would leave less
    /// than `floor`, atomically with respect to every other caller.
    async fn try_reserve(
        &self,
        key: BudgetKey<'_>,
        floor: u64,
        now_ms: u64,
    ) -> Result<Admission, StoreError>;

    /// Ends a reservation of `key`.
    async fn settle(
        &self,
        key: BudgetKey<'_>,
        settlement: &Settlement,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Applies limits observed outside a reservation (a status endpoint, or
    /// a response that named another bucket).
    async fn observe(
        &self,
        key: BudgetKey<'_>,
        observation: &LocalObservation,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Records that the provider applies no limit to `key`.
    async fn mark_unlimited(&self, key: BudgetKey<'_>) -> Result<(), StoreError>;

    /// Starts a secondary-limit cooldown of the account in `key`: until
    /// `until_ms` when given, else for a period that grows on repeats.
    /// Returns the end of the cooldown.
    async fn cool_down(
        &self,
        key: BudgetKey<'_>,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64, StoreError>;

    /// Records that the provider rejected `token`, so that every process
    /// sharing this store stops using it. The pool keeps its own mark
    /// too, so a store that is not shared has nothing to record, and the
    /// default does nothing.
    async fn mark_invalid(&self, token: &TokenId, now_ms: u64) -> Result<(), StoreError> {
        let _ = (token, now_ms);
        Ok(())
    }

    /// Writes into `out`, in the order of `tokens`, whether another process
    /// sharing this store has marked each token invalid. The default
    /// reports none.
    async fn invalid_tokens(
        &self,
        tokens: &[&TokenId],
        out: &mut Vec<bool>,
    ) -> Result<(), StoreError> {
        out.clear();
        out.resize(tokens.len(), false);
        Ok(())
    }

    /// Returns the in-process store, which the pool may call without
    /// awaiting.
    fn as_memory(&self) -> Option<&MemoryStore> {
        None
    }
}

#[derive(Debug, Clone, Copy)]
struct BudgetState {
    knowledge: Knowledge,
    in_flight: u32,
    /// `used` of the newest applied observation, to reject late ones.
    observed_used: Option<u64>,
    /// `remaining` of the newest applied observation.
    observed_remaining: u64,
    /// The smallest spend of a single request seen in the current window.
    request_cost: Option<u64>,
}

impl Default for BudgetState {
    fn default() -> Self {
        Self {
            knowledge: Knowledge::Unknown,
            in_flight: 0,
            observed_used: None,
            observed_remaining: u64::MAX,
            request_cost: None,
        }
    }
}

#[derive(Debug, Default)]
struct AccountState {
    buckets: Vec<BudgetState>,
    unlimited: bool,
    cooldown_until_ms: u64,
    strikes: u32,
}

impl AccountState {
    fn bucket(&mut self, index: usize) -> &mut BudgetState {
        if self.buckets.len() <= index {
            let fill = BudgetState {
                knowledge: if self.unlimited {
                    Knowledge::Unlimited
                } else {
                    Knowledge::Unknown
                },
                ..BudgetState::default()
            };
            self.buckets.resize(index + 1, fill);
        }
        &mut self.buckets[index]
    }
}

/// The in-process store: one mutex over every budget of a pool.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: Mutex<Vec<AccountState>>,
}

impl MemoryStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_account<R>(&self, account: usize, f: impl FnOnce(&mut AccountState) -> R) -> R {
        let mut accounts = self.accounts.lock();
        if accounts.len() <= account {
            accounts.resize_with(account + 1, AccountState::default);
        }
        f(&mut accounts[account])
    }

    /// Locks every budget at once, for the pool's single-lock fast path.
    pub(crate) fn lock(&self) -> LockedBudgets<'_> {
        LockedBudgets {
            accounts: self.accounts.lock(),
        }
    }

    /// Synchronous form of [`StateStore::view`].
    pub fn view_now(&self, keys: &[BudgetKey<'_>], out: &mut Vec<BudgetView>) {
        let mut accounts = self.accounts.lock();
        out.clear();
        for key in keys {
            if accounts.len() <= key.account {
                accounts.resize_with(key.account + 1, AccountState::default);
            }
            let account = &mut accounts[key.account];
            let cooldown_until_ms = account.cooldown_until_ms;
            let probation = account.strikes > 0;
            let budget = account.bucket(key.bucket);
            out.push(BudgetView {
                knowledge: budget.knowledge,
                in_flight: budget.in_flight,
                cooldown_until_ms,
                probation,
                request_cost: budget.request_cost.unwrap_or(1),
            });
        }
    }

    /// Synchronous form of [`StateStore::try_reserve`].
    pub fn try_reserve_now(&self, key: BudgetKey<'_>, floor: u64, now_ms: u64) -> Admission {
        self.with_account(key.account, |account| {
            let cooldown_until_ms = account.cooldown_until_ms;
            let probation = account.strikes > 0;
            let budget = account.bucket(key.bucket);
            let view = BudgetView {
                knowledge: budget.knowledge,
                in_flight: budget.in_flight,
                cooldown_until_ms,
                probation,
                request_cost: budget.request_cost.unwrap_or(1),
            };
            let admission = view.admits(floor, now_ms);
            if admission == Admission::Admit {
                budget.in_flight += 1;
            }
            admission
        })
    }

    /// Synchronous form of [`StateStore::settle`].
    pub fn settle_now(&self, key: BudgetKey<'_>, settlement: &Settlement, now_ms: u64) {
        self.with_account(key.account, |account| {
            if settlement.success {
                account.strikes = 0;
            }
            let budget = account.bucket(key.bucket);
            budget.in_flight = budget.in_flight.saturating_sub(1);

            if let Some(observation) = &settlement.observation {
                let spent = apply_observation(budget, observation);
                // With nothing else in flight, the spend since the last
                // observation is this request's. Another program may have
                // spent some too, so the smallest spend is kept.
                if let (Some(spent @ 1..), 0) = (spent, budget.in_flight) {
                    let cost = budget.request_cost.map_or(spent, |cost| cost.min(spent));
                    budget.request_cost = Some(cost);
                }
            } else if settlement.sent {
                let cost = budget.request_cost.unwrap_or(1);
                match &mut budget.knowledge {
                    Knowledge::Known {
                        remaining,
                        reset_ms,
                        ..
                    } if now_ms < *reset_ms => {
                        // Without headers the request still counted.
                        *remaining = remaining.saturating_sub(cost);
                    }
                    Knowledge::Unknown if settlement.answered_without_limits => {
                        budget.knowledge = Knowledge::Unlimited;
                    }
                    _ => {}
                }
            }

            if let Some(until_ms) = settlement.exhausted_until_ms {
                let limit = match budget.knowledge {
                    Knowledge::Known { limit, .. } => limit,
                    _ => 0,
                };
                budget.knowledge = Knowledge::Known {
                    limit,
                    remaining: 0,
                    reset_ms: until_ms,
                };
                budget.observed_remaining = 0;
            }
        });
    }

    /// Synchronous form of [`StateStore::observe`].
    pub fn observe_now(&self, key: BudgetKey<'_>, observation: &LocalObservation) {
        self.with_account(key.account, |account| {
            let _ = apply_observation(account.bucket(key.bucket), observation);
        });
    }

    /// Synchronous form of [`StateStore::mark_unlimited`].
    pub fn mark_unlimited_now(&self, key: BudgetKey<'_>) {
        self.with_account(key.account, |account| {
            account.unlimited = true;
            for budget in &mut account.buckets {
                budget.knowledge = Knowledge::Unlimited;
            }
            account.bucket(key.bucket).knowledge = Knowledge::Unlimited;
        });
    }

    /// Synchronous form of [`StateStore::cool_down`].
    pub fn cool_down_now(&self, key: BudgetKey<'_>, until_ms: Option<u64>, now_ms: u64) -> u64 {
        self.with_account(key.account, |account| {
            // Responses to requests sent before the current cooldown began
            // count as the same strike, so a burst does not escalate it.
            if account.cooldown_until_ms <= now_ms || account.strikes == 0 {
                account.strikes = account.strikes.saturating_add(1);
            }
            let until = match until_ms {
                Some(until) => until,
                None => {
                    let doublings = (account.strikes - 1).min(8);
                    let wait =
                        (SECONDARY_BASE_COOLDOWN_MS << doublings).min(SECONDARY_MAX_COOLDOWN_MS);
                    now_ms.saturating_add(wait)
                }
            };
            account.cooldown_until_ms = account.cooldown_until_ms.max(until);
            account.cooldown_until_ms
        })
    }
}

/// Every budget of a [`MemoryStore`], locked.
pub(crate) struct LockedBudgets<'a> {
    accounts: parking_lot::MutexGuard<'a, Vec<AccountState>>,
}

impl LockedBudgets<'_> {
    fn account(&mut self, account: usize) -> &mut AccountState {
        if self.accounts.len() <= account {
            self.accounts
                .resize_with(account + 1, AccountState::default);
        }
        &mut self.accounts[account]
    }

    /// Returns the view of one (account, bucket) pair.
    pub(crate) fn view(&mut self, account: usize, bucket: usize) -> BudgetView {
        let state = self.account(account);
        let cooldown_until_ms = state.cooldown_until_ms;
        let probation = state.strikes > 0;
        let budget = state.bucket(bucket);
        BudgetView {
            knowledge: budget.knowledge,
            in_flight: budget.in_flight,
            cooldown_until_ms,
            probation,
            request_cost: budget.request_cost.unwrap_or(1),
        }
    }

    /// Adds one reservation; the caller has checked the view admits it.
    pub(crate) fn reserve(&mut self, account: usize, bucket: usize) {
        self.account(account).bucket(bucket).in_flight += 1;
    }
}

/// Merges observed limits into a budget: the provider's numbers replace the
/// local estimate, except that an observation older than the last applied
/// one (an earlier window, or less spent within the same window) is ignored.
///
/// Returns the budget spent since the last applied observation when both
/// belong to the same window, and `None` otherwise.
fn apply_observation(budget: &mut BudgetState, observation: &LocalObservation) -> Option<u64> {
    let mut spent = None;
    if let Knowledge::Known { reset_ms, .. } = budget.knowledge {
        if observation
            .reset_ms
            .saturating_add(SAME_WINDOW_TOLERANCE_MS)
            < reset_ms
        {
            return None;
        }
        let same_window = observation.reset_ms.abs_diff(reset_ms) <= SAME_WINDOW_TOLERANCE_MS;
        if same_window {
            let stale = match (observation.used, budget.observed_used) {
                (Some(new), Some(old)) => new < old,
                _ => observation.remaining > budget.observed_remaining,
            };
            if stale {
                return None;
            }
            spent = Some(
                budget
                    .observed_remaining
                    .saturating_sub(observation.remaining),
            );
        }
    }
    if spent.is_none() {
        // Each window starts a new estimate, because the workload may have changed.
        budget.request_cost = None;
    }
    budget.knowledge = Knowledge::Known {
        limit: observation.limit,
        remaining: observation.remaining,
        reset_ms: observation.reset_ms,
    };
    budget.observed_used = observation.used;
    budget.observed_remaining = observation.remaining;
    spent
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn view(
        &self,
        keys: &[BudgetKey<'_>],
        out: &mut Vec<BudgetView>,
    ) -> Result<(), StoreError> {
        self.view_now(keys, out);
        Ok(())
    }

    async fn try_reserve(
        &self,
        key: BudgetKey<'_>,
        floor: u64,
        now_ms: u64,
    ) -> Result<Admission, StoreError> {
        Ok(self.try_reserve_now(key, floor, now_ms))
    }

    async fn settle(
        &self,
        key: BudgetKey<'_>,
        settlement: &Settlement,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.settle_now(key, settlement, now_ms);
        Ok(())
    }

    async fn observe(
        &self,
        key: BudgetKey<'_>,
        observation: &LocalObservation,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        self.observe_now(key, observation);
        Ok(())
    }

    async fn mark_unlimited(&self, key: BudgetKey<'_>) -> Result<(), StoreError> {
        self.mark_unlimited_now(key);
        Ok(())
    }

    async fn cool_down(
        &self,
        key: BudgetKey<'_>,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        Ok(self.cool_down_now(key, until_ms, now_ms))
    }

    fn as_memory(&self) -> Option<&MemoryStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: usize) -> BudgetKey<'static> {
        BudgetKey {
            account,
            account_name: "a",
            bucket: 0,
            bucket_name: "core",
        }
    }

    fn observed(remaining: u64, used: u64, reset_ms: u64) -> LocalObservation {
        LocalObservation {
            limit: remaining + used,
            remaining,
            used: Some(used),
            reset_ms,
        }
    }

    fn view(store: &MemoryStore) -> BudgetView {
        let mut out = Vec::new();
        store.view_now(&[key(0)], &mut out);
        out[0]
    }

    #[test]
    fn unknown_budget_admits_one_at_a_time() {
        let store = MemoryStore::new();
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Busy);
    }

    #[test]
    fn known_budget_never_overshoots() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(3, 0, 10_000));
        let admitted = (0..10)
            .filter(|_| store.try_reserve_now(key(0), 0, 0) == Admission::Admit)
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn floor_is_never_spent() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(5, 0, 10_000));
        let admitted = (0..10)
            .filter(|_| store.try_reserve_now(key(0), 2, 0) == Admission::Admit)
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn late_observation_does_not_roll_back() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(10, 90, 10_000));
        store.observe_now(key(0), &observed(20, 80, 10_000));
        assert!(matches!(
            view(&store).knowledge,
            Knowledge::Known { remaining: 10, .. }
        ));
    }

    #[test]
    fn newer_window_replaces_estimate() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(0, 100, 10_000));
        store.observe_now(key(0), &observed(99, 1, 3_610_000));
        assert!(matches!(
            view(&store).knowledge,
            Knowledge::Known {
                remaining: 99,
                reset_ms: 3_610_000,
                ..
            }
        ));
    }

    #[test]
    fn rolled_window_admits_one_probe() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(0, 100, 10_000));
        assert_eq!(
            store.try_reserve_now(key(0), 0, 5_000),
            Admission::Exhausted(10_000)
        );
        assert_eq!(store.try_reserve_now(key(0), 0, 40_000), Admission::Admit);
        assert_eq!(store.try_reserve_now(key(0), 0, 40_000), Admission::Busy);
    }

    #[test]
    fn sent_without_headers_spends_estimate() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(5, 0, 10_000));
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
        let settlement = Settlement {
            sent: true,
            observation: None,
            exhausted_until_ms: None,
            answered_without_limits: false,
            success: true,
        };
        store.settle_now(key(0), &settlement, 0);
        let current = view(&store);
        assert_eq!(current.in_flight, 0);
        assert!(matches!(
            current.knowledge,
            Knowledge::Known { remaining: 4, .. }
        ));
    }

    #[test]
    fn unsent_release_gives_unit_back() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(1, 0, 10_000));
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
        let settlement = Settlement {
            sent: false,
            observation: None,
            exhausted_until_ms: None,
            answered_without_limits: false,
            success: false,
        };
        store.settle_now(key(0), &settlement, 0);
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
    }

    #[test]
    fn secondary_cooldown_grows_on_repeats() {
        let store = MemoryStore::new();
        let first = store.cool_down_now(key(0), None, 0);
        assert_eq!(first, 60_000);
        let second = store.cool_down_now(key(0), None, first);
        assert_eq!(second, first + 120_000);
        assert_eq!(
            store.try_reserve_now(key(0), 0, first + 1),
            Admission::CoolingDown(second)
        );
    }

    #[test]
    fn probation_allows_one_in_flight() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(100, 0, 1_000_000));
        let until = store.cool_down_now(key(0), Some(500), 0);
        assert_eq!(until, 500);
        assert_eq!(store.try_reserve_now(key(0), 0, 600), Admission::Admit);
        assert_eq!(store.try_reserve_now(key(0), 0, 600), Admission::Busy);
    }

    #[test]
    fn burst_of_secondary_limits_is_one_strike() {
        let store = MemoryStore::new();
        let first = store.cool_down_now(key(0), None, 0);
        for _ in 0..9 {
            assert_eq!(store.cool_down_now(key(0), None, 0), first);
        }
        let next = store.cool_down_now(key(0), None, first);
        assert_eq!(next, first + 120_000);
    }

    #[test]
    fn budget_held_in_flight_is_busy() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(2, 0, 10_000));
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Busy);

        // A response that already counts the other request in flight.
        let settlement = Settlement {
            sent: true,
            observation: Some(observed(0, 2, 10_000)),
            exhausted_until_ms: None,
            answered_without_limits: false,
            success: true,
        };
        store.settle_now(key(0), &settlement, 0);
        assert_eq!(
            store.try_reserve_now(key(0), 0, 0),
            Admission::Exhausted(10_000)
        );
    }

    #[test]
    fn request_cost_is_learned_from_spend() {
        let store = MemoryStore::new();
        store.observe_now(key(0), &observed(300, 0, 10_000));
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
        let settlement = Settlement {
            sent: true,
            observation: Some(observed(199, 101, 10_000)),
            exhausted_until_ms: None,
            answered_without_limits: false,
            success: true,
        };
        store.settle_now(key(0), &settlement, 0);
        assert_eq!(view(&store).request_cost, 101);

        // 199 points pay for one more request of 101, not two.
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Admit);
        assert_eq!(store.try_reserve_now(key(0), 0, 0), Admission::Busy);
    }
}
