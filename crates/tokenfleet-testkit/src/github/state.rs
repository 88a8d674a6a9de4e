//! Accounts, tokens, rate-limit windows and counters of the GitHub simulator.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::repos::{Catalog, Owner};

/// Login under which requests without an `Authorization` header are metered.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// First numeric id handed out by [`State::add_account`].
const FIRST_USER_ID: u64 = 1000;

/// Quota of one rate-limit bucket: points per window and the window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLimit {
    /// Points available in one window.
    pub limit: u64,
    /// Length of one window, counted from the bucket's first use.
    pub window: Duration,
}

impl BucketLimit {
    /// Creates a quota of `limit` points per `window`.
    pub const fn new(limit: u64, window: Duration) -> Self {
        Self { limit, window }
    }
}

/// Primary rate-limit quotas of one account, one per bucket.
///
/// The default matches a github.com user token: `core` 5000 per hour,
/// `search` 30 per minute, `code_search` 10 per minute and `graphql` 5000
/// points per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    /// Quota of the `core` bucket, which most REST endpoints spend.
    pub core: BucketLimit,
    /// Quota of the `search` bucket, spent by `/search/*` except code search.
    pub search: BucketLimit,
    /// Quota of the `code_search` bucket, spent by `/search/code`.
    pub code_search: BucketLimit,
    /// Quota of the `graphql` bucket, in points, spent by `POST /graphql`.
    pub graphql: BucketLimit,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            core: BucketLimit::new(5000, Duration::from_secs(3600)),
            search: BucketLimit::new(30, Duration::from_secs(60)),
            code_search: BucketLimit::new(10, Duration::from_secs(60)),
            graphql: BucketLimit::new(5000, Duration::from_secs(3600)),
        }
    }
}

impl AccountLimits {
    /// Returns the quotas of an unauthenticated caller on github.com.
    ///
    /// `core` allows 60 requests per hour and `search` 10 per minute. Code
    /// search and GraphQL require authentication, so the simulator rejects
    /// them with 401 before these quotas matter.
    pub fn anonymous() -> Self {
        Self::default()
            .core(60, Duration::from_secs(3600))
            .search(10, Duration::from_secs(60))
            .graphql(0, Duration::from_secs(3600))
    }

    /// Sets the `core` quota.
    pub fn core(mut self, limit: u64, window: Duration) -> Self {
        self.core = BucketLimit::new(limit, window);
        self
    }

    /// Sets the `search` quota.
    pub fn search(mut self, limit: u64, window: Duration) -> Self {
        self.search = BucketLimit::new(limit, window);
        self
    }

    /// Sets the `code_search` quota.
    pub fn code_search(mut self, limit: u64, window: Duration) -> Self {
        self.code_search = BucketLimit::new(limit, window);
        self
    }

    /// Sets the `graphql` quota, in points.
    pub fn graphql(mut self, limit: u64, window: Duration) -> Self {
        self.graphql = BucketLimit::new(limit, window);
        self
    }

    fn get(&self, resource: Resource) -> BucketLimit {
        match resource {
            Resource::Core => self.core,
            Resource::Search => self.search,
            Resource::CodeSearch => self.code_search,
            Resource::Graphql => self.graphql,
        }
    }
}

/// A primary rate-limit bucket, named as in `x-ratelimit-resource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Core,
    Search,
    CodeSearch,
    Graphql,
}

impl Resource {
    pub(crate) const ALL: [Resource; 4] = [
        Resource::Core,
        Resource::Search,
        Resource::CodeSearch,
        Resource::Graphql,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Resource::Core => "core",
            Resource::Search => "search",
            Resource::CodeSearch => "code_search",
            Resource::Graphql => "graphql",
        }
    }

    /// Parses a bucket name; panics on an unknown one because only test code calls this.
    pub(crate) fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|resource| resource.name() == name)
            .unwrap_or_else(|| {
                panic!("unknown bucket {name:?}: expected core, search, code_search or graphql")
            })
    }

    fn index(self) -> usize {
        match self {
            Resource::Core => 0,
            Resource::Search => 1,
            Resource::CodeSearch => 2,
            Resource::Graphql => 3,
        }
    }
}

/// State of one bucket as reported in headers and by `/rate_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) limit: u64,
    pub(crate) used: u64,
    pub(crate) remaining: u64,
    /// End of the window in epoch seconds.
    pub(crate) reset: u64,
}

/// One bucket of one account: a fixed window that opens at first use.
#[derive(Debug)]
pub(crate) struct Meter {
    quota: BucketLimit,
    used: u64,
    /// End of the open window in epoch milliseconds, a whole second; `None` while unused.
    reset_ms: Option<u64>,
}

impl Meter {
    pub(crate) fn new(quota: BucketLimit) -> Self {
        Self {
            quota,
            used: 0,
            reset_ms: None,
        }
    }

    /// Closes the window once `now_ms` reaches its reset, restoring the full quota.
    fn expire(&mut self, now_ms: u64) {
        if self.reset_ms.is_some_and(|reset_ms| now_ms >= reset_ms) {
            self.reset_ms = None;
            self.used = 0;
        }
    }

    fn open(&mut self, now_ms: u64) {
        if self.reset_ms.is_none() {
            self.reset_ms = Some(window_end_ms(now_ms, self.quota.window));
        }
    }

    /// Reports the bucket without spending; an unused bucket resets one window from now.
    pub(crate) fn usage(&mut self, now_ms: u64) -> Usage {
        self.expire(now_ms);
        let reset_ms = self
            .reset_ms
            .unwrap_or_else(|| window_end_ms(now_ms, self.quota.window));

        Usage {
            limit: self.quota.limit,
            used: self.used,
            remaining: self.quota.limit - self.used,
            reset: reset_ms / 1000,
        }
    }

    /// Spends `cost` points, or returns the unchanged usage as `Err` when fewer remain.
    pub(crate) fn try_spend(&mut self, now_ms: u64, cost: u64) -> Result<Usage, Usage> {
        let usage = self.usage(now_ms);
        if usage.remaining < cost {
            return Err(usage);
        }

        self.open(now_ms);
        self.used += cost;
        Ok(self.usage(now_ms))
    }

    /// Opens a window if none is open and leaves `remaining` points in it.
    pub(crate) fn set_remaining(&mut self, now_ms: u64, remaining: u64) {
        self.expire(now_ms);
        self.open(now_ms);
        self.used = self.quota.limit - remaining.min(self.quota.limit);
    }
}

/// Returns the end of a window that opens at `now_ms`, rounded up to a whole second.
fn window_end_ms(now_ms: u64, window: Duration) -> u64 {
    let end_ms = now_ms.saturating_add(window.as_millis() as u64);
    end_ms.div_ceil(1000).saturating_mul(1000)
}

/// A run of injected secondary-limit responses.
#[derive(Debug, Clone, Copy)]
struct InjectedSecondary {
    count: u32,
    retry_after: Option<u64>,
}

/// One account: its user id, its buckets and its secondary-limit state.
#[derive(Debug)]
pub(crate) struct Account {
    pub(crate) login: String,
    /// Numeric user id; 0 for the anonymous account.
    pub(crate) id: u64,
    meters: [Meter; 4],
    /// Real instants at which admitted requests stop being in flight, oldest first.
    in_flight: VecDeque<Instant>,
    injected: VecDeque<InjectedSecondary>,
}

impl Account {
    pub(crate) fn new(login: &str, id: u64, limits: AccountLimits) -> Self {
        Self {
            login: login.to_owned(),
            id,
            meters: Resource::ALL.map(|resource| Meter::new(limits.get(resource))),
            in_flight: VecDeque::new(),
            injected: VecDeque::new(),
        }
    }

    pub(crate) fn meter(&mut self, resource: Resource) -> &mut Meter {
        &mut self.meters[resource.index()]
    }

    pub(crate) fn inject_secondary(&mut self, count: u32, retry_after: Option<u64>) {
        if count > 0 {
            self.injected
                .push_back(InjectedSecondary { count, retry_after });
        }
    }

    /// Consumes one injected secondary-limit response, returning its `retry-after`.
    pub(crate) fn take_injected(&mut self) -> Option<Option<u64>> {
        let front = self.injected.front_mut()?;
        let retry_after = front.retry_after;
        front.count -= 1;
        if front.count == 0 {
            self.injected.pop_front();
        }
        Some(retry_after)
    }

    /// Admits a request arriving at `now` unless `cap` requests are still in flight.
    ///
    /// An admitted request stays in flight until `now + latency`. Rejected
    /// requests do not count, so a burst over the cap admits exactly `cap`.
    pub(crate) fn admit(&mut self, now: Instant, latency: Duration, cap: usize) -> bool {
        while self.in_flight.front().is_some_and(|&end| end <= now) {
            self.in_flight.pop_front();
        }
        if self.in_flight.len() >= cap {
            return false;
        }

        if !latency.is_zero() {
            self.in_flight.push_back(now + latency);
        }
        true
    }
}

/// A registered token and the account it is charged to.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    /// Lowercase login of the account.
    pub(crate) account: String,
    pub(crate) revoked: bool,
    /// When an installation token stops working, in epoch milliseconds.
    pub(crate) expires_at_ms: Option<u64>,
}

/// Request and response counts since the simulator started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) total: u64,
    pub(crate) over_limit: u64,
    pub(crate) secondary: u64,
    pub(crate) unauthorized: u64,
    pub(crate) successful: u64,
    pub(crate) installation_tokens: u64,
    /// Requests per presented token secret, known or not.
    pub(crate) by_token: HashMap<String, u64>,
}

/// Everything the simulator stores, behind one mutex.
///
/// Logins are keys in lowercase because GitHub treats them case-insensitively.
/// No `Debug` impl, because the maps contain token secrets.
pub(crate) struct State {
    pub(crate) anonymous: Account,
    pub(crate) accounts: HashMap<String, Account>,
    pub(crate) tokens: HashMap<String, TokenEntry>,
    /// Repository owners by lowercase login.
    pub(crate) owners: HashMap<String, Owner>,
    pub(crate) catalog: Catalog,
    /// Redirect targets by request path.
    pub(crate) redirects: HashMap<String, String>,
    /// Number of coming requests that get an injected 502.
    pub(crate) server_errors: u32,
    /// Paths below the API root that answer 403 "Resource not accessible".
    pub(crate) forbidden: HashSet<String>,
    /// The token the last request carried, when it carried one.
    pub(crate) last_credential: Option<String>,
    /// GitHub Apps by app id.
    pub(crate) apps: HashMap<String, super::app::App>,
    /// How long an installation token lives.
    pub(crate) installation_token_ttl_ms: u64,
    pub(crate) next_installation_token: u64,
    /// Points each `POST /graphql` costs.
    pub(crate) graphql_cost: u64,
    pub(crate) counters: Counters,
    next_user_id: u64,
    next_request: u64,
}

impl State {
    pub(crate) fn new(anonymous_limits: AccountLimits) -> Self {
        Self {
            anonymous: Account::new(ANONYMOUS, 0, anonymous_limits),
            accounts: HashMap::new(),
            tokens: HashMap::new(),
            owners: HashMap::new(),
            catalog: Catalog::default(),
            redirects: HashMap::new(),
            forbidden: HashSet::new(),
            last_credential: None,
            apps: HashMap::new(),
            installation_token_ttl_ms: 3_600_000,
            next_installation_token: 0,
            server_errors: 0,
            graphql_cost: 1,
            counters: Counters::default(),
            next_user_id: FIRST_USER_ID,
            next_request: 0,
        }
    }

    /// Registers an account and returns its user id; panics if the login is taken.
    pub(crate) fn add_account(&mut self, login: &str, limits: AccountLimits) -> u64 {
        let key = login.to_lowercase();
        assert!(
            key != ANONYMOUS && !self.accounts.contains_key(&key),
            "account {login:?} already exists"
        );

        let id = self.next_user_id;
        self.next_user_id += 1;
        self.accounts.insert(key, Account::new(login, id, limits));
        id
    }

    /// Looks up an account by login, the anonymous one included.
    pub(crate) fn account_mut(&mut self, login: &str) -> Option<&mut Account> {
        let key = login.to_lowercase();
        if key == ANONYMOUS {
            return Some(&mut self.anonymous);
        }
        self.accounts.get_mut(&key)
    }

    /// Looks up an account by login and panics when it does not exist.
    pub(crate) fn expect_account(&mut self, login: &str) -> &mut Account {
        self.account_mut(login)
            .unwrap_or_else(|| panic!("unknown account {login:?}: call add_account first"))
    }

    /// Returns the next value of the request sequence used in request ids.
    pub(crate) fn next_request_number(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn window_end_rounds_up_to_second() {
        assert_eq!(window_end_ms(1_500, Duration::from_secs(60)), 62_000);
        assert_eq!(window_end_ms(2_000, Duration::from_secs(60)), 62_000);
    }

    #[test]
    fn meter_spends_until_empty() {
        let mut meter = Meter::new(BucketLimit::new(2, HOUR));
        let first = meter.try_spend(0, 1).unwrap();
        assert_eq!(first.used, 1);
        assert_eq!(first.remaining, 1);
        assert_eq!(first.reset, 3600);

        let second = meter.try_spend(10, 1).unwrap();
        assert_eq!(second.remaining, 0);
        assert_eq!(second.reset, 3600);

        let rejected = meter.try_spend(20, 1).unwrap_err();
        assert_eq!(rejected.used, 2);
        assert_eq!(rejected.remaining, 0);
    }

    #[test]
    fn meter_resets_at_window_end() {
        let mut meter = Meter::new(BucketLimit::new(1, HOUR));
        meter.try_spend(0, 1).unwrap();
        assert!(meter.try_spend(3_599_999, 1).is_err());

        let renewed = meter.try_spend(3_600_000, 1).unwrap();
        assert_eq!(renewed.remaining, 0);
        assert_eq!(renewed.reset, 7200);
    }

    #[test]
    fn unused_meter_reports_reset_one_window_ahead() {
        let mut meter = Meter::new(BucketLimit::new(30, Duration::from_secs(60)));
        let usage = meter.usage(100_000);
        assert_eq!(usage.remaining, 30);
        assert_eq!(usage.reset, 160);

        let later = meter.usage(130_000);
        assert_eq!(later.reset, 190);
    }

    #[test]
    fn meter_set_remaining_clamps_to_limit() {
        let mut meter = Meter::new(BucketLimit::new(10, HOUR));
        meter.set_remaining(0, 3);
        assert_eq!(meter.usage(0).used, 7);

        meter.set_remaining(0, 50);
        assert_eq!(meter.usage(0).remaining, 10);
    }

    #[test]
    fn meter_rejects_cost_above_remaining() {
        let mut meter = Meter::new(BucketLimit::new(10, HOUR));
        meter.set_remaining(0, 3);
        let rejected = meter.try_spend(0, 5).unwrap_err();
        assert_eq!(rejected.remaining, 3);
    }

    #[test]
    fn account_admits_up_to_cap() {
        let mut account = Account::new("alice", 1000, AccountLimits::default());
        let start = Instant::now();
        let latency = Duration::from_millis(100);

        assert!(account.admit(start, latency, 2));
        assert!(account.admit(start, latency, 2));
        assert!(!account.admit(start, latency, 2));
        assert!(account.admit(start + latency, latency, 2));
    }

    #[test]
    fn account_without_latency_is_never_capped() {
        let mut account = Account::new("alice", 1000, AccountLimits::default());
        let now = Instant::now();
        for _ in 0..10 {
            assert!(account.admit(now, Duration::ZERO, 1));
        }
    }

    #[test]
    fn injected_secondary_runs_in_order() {
        let mut account = Account::new("alice", 1000, AccountLimits::default());
        account.inject_secondary(2, Some(5));
        account.inject_secondary(1, None);

        assert_eq!(account.take_injected(), Some(Some(5)));
        assert_eq!(account.take_injected(), Some(Some(5)));
        assert_eq!(account.take_injected(), Some(None));
        assert_eq!(account.take_injected(), None);
    }
}
