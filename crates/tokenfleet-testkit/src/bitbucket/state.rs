//! The Bitbucket simulator's state: principals with sliding request logs,
//! credentials, workspaces, injected failures and counters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::repos::Workspace;

/// The principal that unauthenticated requests are charged to.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// The budget of one principal: `limit` requests in any rolling `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Requests allowed within one window.
    pub limit: u64,
    /// The length of the rolling window.
    pub window: Duration,
}

impl Allowance {
    /// Creates an allowance of `limit` requests per rolling `window`.
    pub fn new(limit: u64, window: Duration) -> Self {
        Self { limit, window }
    }

    /// Returns the allowance of unauthenticated callers: 60 requests per hour.
    pub fn anonymous() -> Self {
        Self::new(60, Duration::from_secs(3_600))
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for Allowance {
    /// Returns Bitbucket's budget of authenticated calls: 1,000 requests per hour.
    fn default() -> Self {
        Self::new(1_000, Duration::from_secs(3_600))
    }
}

/// The kind of a principal, which decides the headers its requests get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalKind {
    /// A user, authenticated with basic credentials.
    User,
    /// A repository, project or workspace access token.
    AccessToken,
    /// Unauthenticated callers.
    Anonymous,
}

/// One principal that requests are charged to, with its sliding log.
#[derive(Debug)]
pub(crate) struct Principal {
    pub(crate) name: String,
    pub(crate) kind: PrincipalKind,
    pub(crate) allowance: Allowance,
    /// Arrival times of the requests counted in the current window, oldest first.
    log: VecDeque<u64>,
    /// Coming requests that get a 429 whatever the budget.
    pub(crate) injected_throttles: u32,
}

impl Principal {
    pub(crate) fn new(name: &str, kind: PrincipalKind, allowance: Allowance) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            allowance,
            log: VecDeque::new(),
            injected_throttles: 0,
        }
    }

    /// Drops the requests that left the window by `now_ms`. A request that
    /// arrived at `t` counts until `t + window`, exclusive.
    fn prune(&mut self, now_ms: u64) {
        let window_ms = self.allowance.window_ms();
        while self
            .log
            .front()
            .is_some_and(|&time| time.saturating_add(window_ms) <= now_ms)
        {
            self.log.pop_front();
        }
    }

    /// Returns the requests left in the window at `now_ms`.
    pub(crate) fn remaining(&mut self, now_ms: u64) -> u64 {
        self.prune(now_ms);
        self.allowance.limit.saturating_sub(self.log.len() as u64)
    }

    /// Counts a request arriving at `now_ms`, or returns false when the
    /// window is full.
    pub(crate) fn try_spend(&mut self, now_ms: u64) -> bool {
        if self.remaining(now_ms) == 0 {
            return false;
        }
        self.log.push_back(now_ms);
        true
    }

    /// Returns when the oldest counted request leaves the window, or one
    /// window from `now_ms` when none is counted.
    pub(crate) fn reset_ms(&mut self, now_ms: u64) -> u64 {
        self.prune(now_ms);
        self.log
            .front()
            .copied()
            .unwrap_or(now_ms)
            .saturating_add(self.allowance.window_ms())
    }

    /// Leaves `remaining` requests in the window by counting requests that
    /// arrive now, as another program would, or by forgetting the oldest.
    pub(crate) fn set_remaining(&mut self, now_ms: u64, remaining: u64) {
        let target = self.allowance.limit.saturating_sub(remaining) as usize;
        self.prune(now_ms);
        while self.log.len() > target {
            self.log.pop_front();
        }
        while self.log.len() < target {
            self.log.push_back(now_ms);
        }
    }
}

/// The authentication scheme of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Basic,
}

/// A registered credential and the principal it is charged to.
#[derive(Debug)]
pub(crate) struct CredentialEntry {
    pub(crate) scheme: Scheme,
    /// Key of the principal in [`State::principals`].
    pub(crate) principal: String,
    pub(crate) revoked: bool,
}

/// Request and response counts since the simulator started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) total: u64,
    pub(crate) successful: u64,
    /// 429 responses because a window was full.
    pub(crate) over_limit: u64,
    /// 429 responses that were injected.
    pub(crate) injected_throttles: u64,
    pub(crate) unauthorized: u64,
    pub(crate) server_errors: u64,
    /// Requests per presented credential: the bearer token, or
    /// `username:secret` for basic credentials, known or not.
    pub(crate) by_credential: HashMap<String, u64>,
}

/// Everything the simulator stores, behind one mutex.
///
/// No `Debug` impl, because the maps contain secrets.
pub(crate) struct State {
    /// Principals by key: the lower-case username, the access token's name,
    /// or [`ANONYMOUS`].
    pub(crate) principals: HashMap<String, Principal>,
    /// Credentials by their text: the bearer token, or `username:secret`.
    pub(crate) credentials: HashMap<String, CredentialEntry>,
    /// Workspaces by lower-case slug.
    pub(crate) workspaces: HashMap<String, Workspace>,
    /// Paths below `/2.0` that respond with 403.
    pub(crate) forbidden: HashSet<String>,
    /// Coming requests that get an injected 500.
    pub(crate) server_errors: u32,
    /// The credential the last request carried, when it carried one.
    pub(crate) last_credential: Option<String>,
    pub(crate) counters: Counters,
}

impl State {
    pub(crate) fn new(anonymous: Allowance) -> Self {
        let mut principals = HashMap::new();
        principals.insert(
            ANONYMOUS.to_owned(),
            Principal::new(ANONYMOUS, PrincipalKind::Anonymous, anonymous),
        );
        Self {
            principals,
            credentials: HashMap::new(),
            workspaces: HashMap::new(),
            forbidden: HashSet::new(),
            server_errors: 0,
            last_credential: None,
            counters: Counters::default(),
        }
    }

    /// Registers a principal; panics if the key is taken.
    pub(crate) fn add_principal(&mut self, key: String, principal: Principal) {
        assert!(
            !self.principals.contains_key(&key),
            "principal {:?} already exists",
            principal.name
        );
        self.principals.insert(key, principal);
    }

    /// Looks up a principal by name and panics when it does not exist.
    pub(crate) fn expect_principal(&mut self, name: &str) -> &mut Principal {
        let key = principal_key(&self.principals, name);
        self.principals.get_mut(&key).unwrap_or_else(|| {
            panic!("unknown principal {name:?}: call add_user or add_access_token first")
        })
    }
}

/// Returns the key of a principal name: as written for access tokens, in
/// lower case for users, whose names ignore case.
fn principal_key(principals: &HashMap<String, Principal>, name: &str) -> String {
    if principals.contains_key(name) {
        name.to_owned()
    } else {
        name.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3_600);
    const HOUR_MS: u64 = 3_600_000;

    fn principal(limit: u64) -> Principal {
        Principal::new("alice", PrincipalKind::User, Allowance::new(limit, HOUR))
    }

    #[test]
    fn window_fills_and_rolls() {
        let mut alice = principal(2);
        assert!(alice.try_spend(0));
        assert!(alice.try_spend(1_000));
        assert!(!alice.try_spend(2_000));
        assert_eq!(alice.reset_ms(2_000), HOUR_MS);

        assert!(!alice.try_spend(HOUR_MS - 1));
        assert!(alice.try_spend(HOUR_MS));
        assert_eq!(alice.reset_ms(HOUR_MS), 1_000 + HOUR_MS);
    }

    #[test]
    fn unused_principal_resets_one_window_ahead() {
        let mut alice = principal(2);
        assert_eq!(alice.reset_ms(500), 500 + HOUR_MS);
        assert_eq!(alice.remaining(500), 2);
    }

    #[test]
    fn set_remaining_spends_and_forgets() {
        let mut alice = principal(10);
        alice.set_remaining(0, 3);
        assert_eq!(alice.remaining(0), 3);
        alice.set_remaining(0, 0);
        assert!(!alice.try_spend(0));
        alice.set_remaining(0, 50);
        assert_eq!(alice.remaining(0), 10);
    }
}
