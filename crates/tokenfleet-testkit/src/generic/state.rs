//! State of the generic simulator: accounts, fixed-window meters, tokens and counters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// The budget of one bucket: `limit` requests per fixed `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Requests allowed in one window.
    pub limit: u64,
    /// Length of a window, which opens at the first request after the
    /// previous one ended.
    pub window: Duration,
}

impl Budget {
    /// Creates a budget of `limit` requests per `window`.
    pub fn new(limit: u64, window: Duration) -> Self {
        Self { limit, window }
    }
}

impl Default for Budget {
    /// 5,000 requests per hour.
    fn default() -> Self {
        Self::new(5000, Duration::from_secs(3600))
    }
}

/// The state of one bucket at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) limit: u64,
    pub(crate) used: u64,
    pub(crate) remaining: u64,
    /// End of the window in epoch milliseconds.
    pub(crate) reset_ms: u64,
}

/// One bucket of one account: a fixed window that opens at first use.
#[derive(Debug)]
pub(crate) struct Meter {
    budget: Budget,
    used: u64,
    /// End of the open window in epoch milliseconds; `None` while unused.
    reset_ms: Option<u64>,
}

impl Meter {
    pub(crate) fn new(budget: Budget) -> Self {
        Self {
            budget,
            used: 0,
            reset_ms: None,
        }
    }

    fn expire(&mut self, now_ms: u64) {
        if self.reset_ms.is_some_and(|reset_ms| now_ms >= reset_ms) {
            self.reset_ms = None;
            self.used = 0;
        }
    }

    fn window_end(&self, now_ms: u64) -> u64 {
        let window_ms = u64::try_from(self.budget.window.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_add(window_ms)
    }

    /// Reports the bucket without spending; an unused bucket resets one window from now.
    pub(crate) fn usage(&mut self, now_ms: u64) -> Usage {
        self.expire(now_ms);
        let reset_ms = self.reset_ms.unwrap_or_else(|| self.window_end(now_ms));
        Usage {
            limit: self.budget.limit,
            used: self.used,
            remaining: self.budget.limit.saturating_sub(self.used),
            reset_ms,
        }
    }

    /// Spends one request, or returns the unchanged usage as `Err` when none is left.
    pub(crate) fn try_spend(&mut self, now_ms: u64) -> Result<Usage, Usage> {
        let usage = self.usage(now_ms);
        if usage.remaining == 0 {
            return Err(usage);
        }
        if self.reset_ms.is_none() {
            self.reset_ms = Some(self.window_end(now_ms));
        }
        self.used += 1;
        Ok(self.usage(now_ms))
    }

    /// Opens a window if none is open and leaves `remaining` requests in it.
    pub(crate) fn set_remaining(&mut self, now_ms: u64, remaining: u64) {
        self.expire(now_ms);
        if self.reset_ms.is_none() {
            self.reset_ms = Some(self.window_end(now_ms));
        }
        self.used = self.budget.limit - remaining.min(self.budget.limit);
    }
}

/// One account: a budget for every bucket, created on first use.
#[derive(Debug)]
pub(crate) struct Account {
    pub(crate) name: String,
    budget: Budget,
    overrides: HashMap<String, Budget>,
    meters: BTreeMap<String, Meter>,
}

impl Account {
    pub(crate) fn new(name: &str, budget: Budget) -> Self {
        Self {
            name: name.to_owned(),
            budget,
            overrides: HashMap::new(),
            meters: BTreeMap::new(),
        }
    }

    /// Returns the meter of a bucket, creating it with the bucket's budget.
    pub(crate) fn meter(&mut self, bucket: &str) -> &mut Meter {
        let budget = self.overrides.get(bucket).copied().unwrap_or(self.budget);
        self.meters
            .entry(bucket.to_owned())
            .or_insert_with(|| Meter::new(budget))
    }

    /// Gives one bucket its own budget, starting a fresh window.
    pub(crate) fn set_budget(&mut self, bucket: &str, budget: Budget) {
        self.overrides.insert(bucket.to_owned(), budget);
        self.meters.insert(bucket.to_owned(), Meter::new(budget));
    }
}

/// A registered token and the account it is charged to.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    pub(crate) account: String,
    pub(crate) revoked: bool,
}

/// Request and response counts since the simulator started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) total: u64,
    /// Throttle responses to a request that found its bucket spent.
    pub(crate) over_limit: u64,
    /// Throttle responses injected by the test.
    pub(crate) injected_throttles: u64,
    pub(crate) unauthorized: u64,
    /// Successful responses that spent budget.
    pub(crate) successful: u64,
    /// Requests per presented token secret, known or not.
    pub(crate) by_token: HashMap<String, u64>,
}

/// A run of injected throttle responses without limit headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InjectedThrottle {
    pub(crate) count: u32,
    pub(crate) retry_after: Option<u64>,
}

/// Everything the simulator stores, behind one mutex.
///
/// No `Debug` impl, because the maps contain token secrets.
pub(crate) struct State {
    pub(crate) accounts: HashMap<String, Account>,
    pub(crate) tokens: HashMap<String, TokenEntry>,
    /// Repository names per owner, in listing order.
    pub(crate) repositories: HashMap<String, Vec<String>>,
    /// Paths below the API root that return the forbidden status.
    pub(crate) forbidden: HashSet<String>,
    pub(crate) server_errors: u32,
    pub(crate) throttles: Vec<InjectedThrottle>,
    pub(crate) last_credential: Option<String>,
    pub(crate) counters: Counters,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            accounts: HashMap::new(),
            tokens: HashMap::new(),
            repositories: HashMap::new(),
            forbidden: HashSet::new(),
            server_errors: 0,
            throttles: Vec::new(),
            last_credential: None,
            counters: Counters::default(),
        }
    }

    /// Looks up an account and panics when it does not exist, because only test code calls this.
    pub(crate) fn expect_account(&mut self, name: &str) -> &mut Account {
        self.accounts
            .get_mut(name)
            .unwrap_or_else(|| panic!("unknown account {name:?}: call add_account first"))
    }

    /// Consumes one injected throttle response, returning its retry-after seconds.
    pub(crate) fn take_throttle(&mut self) -> Option<Option<u64>> {
        let front = self.throttles.first_mut()?;
        let retry_after = front.retry_after;
        front.count -= 1;
        if front.count == 0 {
            self.throttles.remove(0);
        }
        Some(retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn meter_spends_until_empty_then_resets() {
        let mut meter = Meter::new(Budget::new(2, MINUTE));
        assert_eq!(meter.try_spend(1_000).unwrap().remaining, 1);
        let second = meter.try_spend(2_000).unwrap();
        assert_eq!(second.remaining, 0);
        assert_eq!(second.reset_ms, 61_000);
        assert!(meter.try_spend(60_999).is_err());
        let renewed = meter.try_spend(61_000).unwrap();
        assert_eq!(renewed.remaining, 1);
        assert_eq!(renewed.reset_ms, 121_000);
    }

    #[test]
    fn unused_meter_reports_one_window_ahead() {
        let mut meter = Meter::new(Budget::new(5, MINUTE));
        let usage = meter.usage(10_000);
        assert_eq!(usage.remaining, 5);
        assert_eq!(usage.reset_ms, 70_000);
    }

    #[test]
    fn set_remaining_clamps_to_limit() {
        let mut meter = Meter::new(Budget::new(10, MINUTE));
        meter.set_remaining(0, 3);
        assert_eq!(meter.usage(0).used, 7);
        meter.set_remaining(0, 50);
        assert_eq!(meter.usage(0).remaining, 10);
    }

    #[test]
    fn account_bucket_override() {
        let mut account = Account::new("a", Budget::new(10, MINUTE));
        account.set_budget("search", Budget::new(2, MINUTE));
        assert_eq!(account.meter("search").usage(0).limit, 2);
        assert_eq!(account.meter("default").usage(0).limit, 10);
    }

    #[test]
    fn injected_throttles_run_in_order() {
        let mut state = State::new();
        state.throttles.push(InjectedThrottle {
            count: 2,
            retry_after: Some(5),
        });
        state.throttles.push(InjectedThrottle {
            count: 1,
            retry_after: None,
        });
        assert_eq!(state.take_throttle(), Some(Some(5)));
        assert_eq!(state.take_throttle(), Some(Some(5)));
        assert_eq!(state.take_throttle(), Some(None));
        assert_eq!(state.take_throttle(), None);
    }
}
