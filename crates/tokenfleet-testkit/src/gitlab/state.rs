//! Users, tokens, throttle windows and counters of the GitLab simulator.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::projects::Namespace;

/// The first numeric id handed out to users.
const FIRST_USER_ID: u64 = 1000;

/// The first numeric id handed out to groups.
const FIRST_GROUP_ID: u64 = 5000;

/// A Rack::Attack throttle: requests per period, in windows aligned to the
/// Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Requests allowed in one window.
    pub limit: u64,
    /// The window length, in whole seconds.
    pub period: Duration,
}

impl Default for Throttle {
    /// Returns gitlab.com's authenticated API throttle: 2,000 requests per
    /// minute per user.
    fn default() -> Self {
        Self::new(2000, Duration::from_secs(60))
    }
}

impl Throttle {
    /// Creates a throttle of `limit` requests per `period`.
    ///
    /// # Panics
    ///
    /// Panics if `period` is shorter than one second, because GitLab counts
    /// windows in whole seconds.
    pub fn new(limit: u64, period: Duration) -> Self {
        assert!(
            period.as_secs() >= 1,
            "invalid throttle period {period:?}: use at least one second"
        );
        Self { limit, period }
    }

    /// Returns gitlab.com's unauthenticated API throttle: 500 requests per
    /// minute per IP address.
    pub fn unauthenticated() -> Self {
        Self::new(500, Duration::from_secs(60))
    }

    /// Returns the default of a self-managed instance once an admin turns
    /// the authenticated API throttle on: 7,200 requests per hour.
    pub fn self_managed() -> Self {
        Self::new(7200, Duration::from_secs(3600))
    }

    fn period_secs(&self) -> u64 {
        self.period.as_secs().max(1)
    }
}

/// The state of one throttle at one instant, as the `RateLimit-*` headers state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// The limit normalized to 60 seconds and rounded up, as in `RateLimit-Limit`.
    pub(crate) normalized_limit: u64,
    pub(crate) observed: u64,
    /// `max(limit - observed, 0)` with the raw limit.
    pub(crate) remaining: u64,
    /// The end of the window, in epoch seconds.
    pub(crate) reset: u64,
    /// Seconds from now to the end of the window.
    pub(crate) retry_after: u64,
    /// Whether this request went over the limit.
    pub(crate) throttled: bool,
}

/// One throttle of one user or of the anonymous caller.
#[derive(Debug)]
pub(crate) struct Meter {
    throttle: Throttle,
    /// The start of the current window, in epoch seconds.
    window_start: u64,
    observed: u64,
}

impl Meter {
    pub(crate) fn new(throttle: Throttle) -> Self {
        Self {
            throttle,
            window_start: 0,
            observed: 0,
        }
    }

    /// Moves to the window that contains `now`, starting it empty.
    fn roll(&mut self, now: u64) {
        let start = now - now % self.throttle.period_secs();
        if start != self.window_start {
            self.window_start = start;
            self.observed = 0;
        }
    }

    /// Reports the throttle at `now` (epoch seconds) without counting a request.
    pub(crate) fn usage(&mut self, now: u64) -> Usage {
        self.roll(now);
        let limit = self.throttle.limit;
        let period = self.throttle.period_secs();
        let reset = self.window_start + period;
        Usage {
            normalized_limit: (limit.saturating_mul(60)).div_ceil(period),
            observed: self.observed,
            remaining: limit.saturating_sub(self.observed),
            reset,
            retry_after: reset - now,
            throttled: self.observed > limit,
        }
    }

    /// Counts one request, throttled or not, as Rack::Attack does, and
    /// reports whether it went over the limit.
    pub(crate) fn hit(&mut self, now: u64) -> Usage {
        self.roll(now);
        self.observed += 1;
        self.usage(now)
    }

    /// Leaves `remaining` requests in the current window.
    pub(crate) fn set_remaining(&mut self, now: u64, remaining: u64) {
        self.roll(now);
        self.observed = self.throttle.limit - remaining.min(self.throttle.limit);
    }
}

/// One user: its id, its throttle and its injected application limits.
#[derive(Debug)]
pub(crate) struct Account {
    pub(crate) username: String,
    pub(crate) id: u64,
    pub(crate) meter: Meter,
    /// Coming requests that get an application-level 429 without headers.
    pub(crate) application_limits: u32,
}

/// The validity of a registered token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenState {
    Active,
    Revoked,
    Expired,
}

/// A registered token and the user it belongs to.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    /// Lowercase username.
    pub(crate) account: String,
    pub(crate) state: TokenState,
}

/// Request and response counts since the simulator started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) total: u64,
    pub(crate) successful: u64,
    pub(crate) over_limit: u64,
    pub(crate) application_limited: u64,
    pub(crate) unauthorized: u64,
    /// Requests per presented token secret, known or not.
    pub(crate) by_token: HashMap<String, u64>,
}

/// Everything the simulator stores, behind one mutex.
///
/// Usernames and namespace paths are keys in lowercase because GitLab
/// matches them case-insensitively. No `Debug` impl, because the maps
/// contain token secrets.
pub(crate) struct State {
    pub(crate) anonymous: Meter,
    pub(crate) accounts: HashMap<String, Account>,
    pub(crate) tokens: HashMap<String, TokenEntry>,
    /// Users' and groups' namespaces by lowercase full path.
    pub(crate) namespaces: HashMap<String, Namespace>,
    /// Paths below `/api/v4` that return 403.
    pub(crate) forbidden: HashSet<String>,
    /// Coming requests that get an injected 500.
    pub(crate) server_errors: u32,
    pub(crate) last_credential: Option<String>,
    pub(crate) counters: Counters,
    next_user_id: u64,
    next_group_id: u64,
    pub(crate) next_project_id: u64,
}

impl State {
    pub(crate) fn new(unauthenticated: Throttle) -> Self {
        Self {
            anonymous: Meter::new(unauthenticated),
            accounts: HashMap::new(),
            tokens: HashMap::new(),
            namespaces: HashMap::new(),
            forbidden: HashSet::new(),
            server_errors: 0,
            last_credential: None,
            counters: Counters::default(),
            next_user_id: FIRST_USER_ID,
            next_group_id: FIRST_GROUP_ID,
            next_project_id: 1,
        }
    }

    /// Registers a user and returns its id; panics if the username is taken.
    pub(crate) fn add_account(&mut self, username: &str, throttle: Throttle) -> u64 {
        let key = username.to_lowercase();
        assert!(
            !self.accounts.contains_key(&key),
            "account {username:?} already exists: choose another username"
        );
        let id = self.next_user_id;
        self.next_user_id += 1;
        let account = Account {
            username: username.to_owned(),
            id,
            meter: Meter::new(throttle),
            application_limits: 0,
        };
        self.accounts.insert(key, account);
        id
    }

    /// Looks up a user by username and panics when it does not exist.
    pub(crate) fn expect_account(&mut self, username: &str) -> &mut Account {
        self.accounts
            .get_mut(&username.to_lowercase())
            .unwrap_or_else(|| panic!("unknown account {username:?}: call add_account first"))
    }

    /// Finds a user by username or numeric id.
    pub(crate) fn find_account(&self, id_or_username: &str) -> Option<&Account> {
        match id_or_username.parse::<u64>() {
            Ok(id) => self.accounts.values().find(|account| account.id == id),
            Err(_) => self.accounts.get(&id_or_username.to_lowercase()),
        }
    }

    /// Returns the namespace of `owner`, creating it: a user's namespace
    /// when a user has that name, else a group.
    pub(crate) fn namespace_mut(&mut self, owner: &str) -> &mut Namespace {
        let key = owner.to_lowercase();
        if !self.namespaces.contains_key(&key) {
            let namespace = match self.accounts.get(&key) {
                Some(account) => Namespace::user(&account.username, account.id),
                None => {
                    let id = self.next_group_id;
                    self.next_group_id += 1;
                    Namespace::group(owner, id)
                }
            };
            self.namespaces.insert(key.clone(), namespace);
        }
        self.namespaces
            .get_mut(&key)
            .expect("the namespace was just inserted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn windows_align_to_epoch() {
        let mut meter = Meter::new(Throttle::new(3, MINUTE));
        let first = meter.hit(1_700_000_010);
        assert_eq!(first.observed, 1);
        assert_eq!(first.remaining, 2);
        assert_eq!(first.reset, 1_700_000_040);
        assert_eq!(first.retry_after, 30);
        assert!(!first.throttled);

        let next_window = meter.hit(1_700_000_040);
        assert_eq!(next_window.observed, 1);
        assert_eq!(next_window.reset, 1_700_000_100);
    }

    #[test]
    fn over_limit_requests_count() {
        let mut meter = Meter::new(Throttle::new(2, MINUTE));
        meter.hit(0);
        meter.hit(1);
        let third = meter.hit(2);
        assert!(third.throttled);
        assert_eq!(third.observed, 3);
        assert_eq!(third.remaining, 0);
    }

    #[test]
    fn limit_is_normalized_to_a_minute() {
        let mut hourly = Meter::new(Throttle::self_managed());
        assert_eq!(hourly.usage(0).normalized_limit, 120);

        let mut odd = Meter::new(Throttle::new(10, Duration::from_secs(7)));
        assert_eq!(odd.usage(0).normalized_limit, 86);
    }

    #[test]
    fn set_remaining_clamps_to_limit() {
        let mut meter = Meter::new(Throttle::new(10, MINUTE));
        meter.set_remaining(5, 3);
        assert_eq!(meter.usage(5).observed, 7);
        meter.set_remaining(5, 50);
        assert_eq!(meter.usage(5).observed, 0);
    }

    #[test]
    #[should_panic(expected = "invalid throttle period")]
    fn subsecond_period_is_rejected() {
        let _ = Throttle::new(1, Duration::from_millis(500));
    }
}
