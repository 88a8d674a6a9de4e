//! A Gitea and Forgejo API simulator, with an optional rate-limiting proxy in front.
//!
//! The simulator is a wiremock server on `127.0.0.1` serving the API under
//! `/api/v1`. Gitea has no built-in rate limiter and sends no rate-limit
//! headers, so by default nothing is limited. A test may put a proxy's
//! fixed-window budget on an account: once it is spent, requests get 429
//! with `Retry-After` and no other rate-limit header. No Gitea or Forgejo
//! documentation describes a hosted instance's throttle response, so this
//! form is an assumption, not a replay. A builder option makes the proxy state
//! the budget in `X-RateLimit-*` headers as well. All windows and the
//! `Date` header follow the [`Clock`] given to the builder.
//!
//! # Endpoints
//!
//! | Request | Response |
//! |---|---|
//! | `GET /api/v1/user` | the caller's user object; 401 `token is required` without a valid token |
//! | `GET /api/v1/users/{user}/repos?page=&limit=` | the user's repositories; 404 for an unknown user or an organization |
//! | `GET /api/v1/orgs/{org}/repos?page=&limit=` | the organization's repositories; 404 for an unknown organization |
//! | `GET /api/v1/settings/api` | the paging settings |
//! | `GET /api/v1/version` | the server version |
//! | anything else | 404 |
//!
//! Listings page like Gitea: `page` is 1-based, `limit` defaults to 30
//! and is capped at 50 (`DEFAULT_PAGING_NUM` and `MAX_RESPONSE_ITEMS`),
//! and each page carries `X-Total-Count` and a `Link` header with `next`,
//! `last`, `first` and `prev` as they apply.
//!
//! # Order of checks
//!
//! Each request goes through these checks in order, and the first one that
//! responds wins:
//!
//! 1. an injected 502 from the proxy;
//! 2. the token: 401 `token is required` for an unknown or revoked one,
//!    unless invalid tokens act as anonymous;
//! 3. the proxy: an injected 429 without headers, then the account's budget;
//! 4. a forbidden path (403 for a missing scope);
//! 5. the endpoint itself.
//!
//! Requests without a valid token pass the proxy unmetered.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! use tokenfleet_testkit::GiteaSimulator;
//!
//! # #[tokio::main]
//! # async fn main() {
//! let sim = GiteaSimulator::start().await;
//! sim.add_account("alice");
//! sim.add_token("gta_example", "alice");
//! sim.limit_account("alice", 1, Duration::from_secs(60));
//!
//! let client = reqwest::Client::builder().no_proxy().build().unwrap();
//! let user = format!("{}/user", sim.uri());
//! let first = client
//!     .get(&user)
//!     .header("authorization", "token gta_example")
//!     .send()
//!     .await
//!     .unwrap();
//! let second = client
//!     .get(&user)
//!     .header("authorization", "token gta_example")
//!     .send()
//!     .await
//!     .unwrap();
//!
//! assert_eq!(first.status(), 200);
//! assert_eq!(second.status(), 429);
//! assert!(second.headers().contains_key("retry-after"));
//! # }
//! ```
//!
//! # Limitations
//!
//! Every repository is public, and no write endpoint exists.
//!
//! NOTE: a real server may also list an organization's repositories under
//! `/users/{org}/repos`, which this simulator does not check against any
//! version. It returns 404 there, so that the `/orgs/{org}/repos`
//! fallback is exercised.

mod responder;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokenfleet_core::clock::{Clock, SystemClock};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use self::responder::{GiteaResponder, Settings, Shared, API_ROOT};
use self::state::{ProxyMeter, State, TokenEntry};

/// Gitea's default page size, `DEFAULT_PAGING_NUM`.
const DEFAULT_PAGING: usize = 30;

/// Gitea's default maximum page size, `MAX_RESPONSE_ITEMS`.
const MAX_RESPONSE_ITEMS: usize = 50;

/// A running Gitea simulator bound to a loopback port.
///
/// The server stops when the value is dropped. All methods lock the shared
/// state briefly and may be called while requests are being served.
pub struct GiteaSimulator {
    server: MockServer,
    shared: Arc<Shared>,
}

/// Settings of a [`GiteaSimulator`] before it starts.
#[derive(Debug, Clone)]
pub struct GiteaSimulatorBuilder {
    clock: Arc<dyn Clock>,
    invalid_tokens_as_anonymous: bool,
    rate_headers: bool,
    retry_after_as_date: bool,
    default_paging: usize,
    max_response_items: usize,
}

impl Default for GiteaSimulatorBuilder {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            invalid_tokens_as_anonymous: false,
            rate_headers: false,
            retry_after_as_date: false,
            default_paging: DEFAULT_PAGING,
            max_response_items: MAX_RESPONSE_ITEMS,
        }
    }
}

impl GiteaSimulatorBuilder {
    /// Sets the clock used for the proxy's windows and the `Date` header.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Makes unknown and revoked tokens act as anonymous callers, as Gitea
    /// 1.17 to 1.19 did: public endpoints return 200 with public data, and
    /// only endpoints that need a signed-in user (`/user`) return 401.
    pub fn invalid_tokens_as_anonymous(mut self, enabled: bool) -> Self {
        self.invalid_tokens_as_anonymous = enabled;
        self
    }

    /// Makes the proxy state the budget of a limited account on every
    /// response to it, 429 included, in `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds), as
    /// some proxies do. Off by default, because Gitea itself sends none.
    pub fn rate_headers(mut self, enabled: bool) -> Self {
        self.rate_headers = enabled;
        self
    }

    /// Makes the proxy send `Retry-After` as an HTTP date instead of seconds.
    pub fn retry_after_as_date(mut self, enabled: bool) -> Self {
        self.retry_after_as_date = enabled;
        self
    }

    /// Sets the page size without `limit` and the maximum page size
    /// (defaults 30 and 50).
    ///
    /// # Panics
    ///
    /// Panics if either is 0 or the default exceeds the maximum.
    pub fn paging(mut self, default_paging: usize, max_response_items: usize) -> Self {
        assert!(
            default_paging > 0 && default_paging <= max_response_items,
            "invalid paging {default_paging}/{max_response_items}: \
             expected 0 < default page size <= maximum page size"
        );
        self.default_paging = default_paging;
        self.max_response_items = max_response_items;
        self
    }

    /// Starts the simulator on a free port of `127.0.0.1`.
    pub async fn start(self) -> GiteaSimulator {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;

        let settings = Settings {
            invalid_tokens_as_anonymous: self.invalid_tokens_as_anonymous,
            rate_headers: self.rate_headers,
            retry_after_as_date: self.retry_after_as_date,
            default_paging: self.default_paging,
            max_response_items: self.max_response_items,
        };
        let shared = Arc::new(Shared {
            clock: self.clock,
            settings,
            state: Mutex::new(State::default()),
            listen_address: server.address().to_string(),
        });

        Mock::given(any())
            .respond_with(GiteaResponder(Arc::clone(&shared)))
            .mount(&server)
            .await;

        GiteaSimulator { server, shared }
    }
}

impl GiteaSimulator {
    /// Creates a builder with the defaults: system clock, invalid tokens
    /// rejected, no rate-limit headers, `Retry-After` in seconds, pages of
    /// 30 up to 50.
    pub fn builder() -> GiteaSimulatorBuilder {
        GiteaSimulatorBuilder::default()
    }

    /// Starts a simulator with the builder defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Returns the API base URL for the provider config: `http://127.0.0.1:PORT/api/v1`.
    pub fn uri(&self) -> String {
        format!("{}{API_ROOT}", self.server.uri())
    }

    /// Registers a user account without a limit and returns its id,
    /// counting up from 1000.
    ///
    /// # Panics
    ///
    /// Panics if the login is already a user or an organization, ignoring case.
    pub fn add_account(&self, login: &str) -> u64 {
        self.shared.state.lock().add_account(login)
    }

    /// Puts a proxy's budget of `budget` requests per `window` on an
    /// account. Windows are fixed and open at the first request after the
    /// previous one ended.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login or a zero window.
    pub fn limit_account(&self, login: &str, budget: u64, window: Duration) {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        assert!(window_ms > 0, "invalid proxy window of 0 ms for {login:?}");
        let mut state = self.shared.state.lock();
        state.expect_account(login).proxy = Some(ProxyMeter::new(budget, window_ms));
    }

    /// Registers a token of the account `login`. Adding a revoked token
    /// again makes it valid.
    ///
    /// # Panics
    ///
    /// Panics if no account has that login.
    pub fn add_token(&self, secret: &str, login: &str) {
        let mut state = self.shared.state.lock();
        let account = state.expect_account(login).login.to_lowercase();
        let entry = TokenEntry {
            account,
            revoked: false,
        };
        state.tokens.insert(secret.to_owned(), entry);
    }

    /// Revokes a token, so later requests with it get 401, or act as
    /// anonymous when the builder enables that.
    pub fn revoke_token(&self, secret: &str) {
        if let Some(entry) = self.shared.state.lock().tokens.get_mut(secret) {
            entry.revoked = true;
        }
    }

    /// Returns the login of the account a token belongs to.
    pub fn token_account(&self, secret: &str) -> Option<String> {
        let state = self.shared.state.lock();
        let key = &state.tokens.get(secret)?.account;
        state.accounts.get(key).map(|account| account.login.clone())
    }

    /// Generates `count` more repositories for `owner`: the user of that
    /// login when one is registered, else an organization.
    ///
    /// Names (`{owner}-0000`, `{owner}-0001`, ...) and fields depend only on
    /// the owner and the repository's position.
    pub fn add_repositories(&self, owner: &str, count: usize) {
        self.shared.state.lock().add_repositories(owner, count);
    }

    /// Returns the names of an owner's repositories in listing order.
    pub fn repository_names(&self, owner: &str) -> Vec<String> {
        let state = self.shared.state.lock();
        state
            .owners
            .get(&owner.to_lowercase())
            .map(|entry| entry.repositories.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Leaves `remaining` requests in an account's proxy window, as if
    /// another program had spent the rest, and opens the window if none is open.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login or an account without a proxy limit.
    pub fn set_remaining(&self, login: &str, remaining: u64) {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state
            .expect_account(login)
            .proxy
            .as_mut()
            .unwrap_or_else(|| panic!("account {login:?} has no proxy limit: call limit_account"))
            .set_remaining(now_ms, remaining);
    }

    /// Spends the rest of an account's proxy window out of the pool's sight.
    ///
    /// # Panics
    ///
    /// As [`set_remaining`](Self::set_remaining).
    pub fn drain(&self, login: &str) {
        self.set_remaining(login, 0);
    }

    /// Returns the requests left in an account's proxy window, or `None`
    /// when the account has no limit.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login.
    pub fn remaining(&self, login: &str) -> Option<u64> {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        let meter = state.expect_account(login).proxy.as_ref()?;
        Some(meter.remaining(now_ms))
    }

    /// Returns when an account's proxy budget is whole again, in epoch
    /// milliseconds: the end of the open window, or one window from now
    /// when none is open. `None` when the account has no limit.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login.
    pub fn reset_at_ms(&self, login: &str) -> Option<u64> {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        let meter = state.expect_account(login).proxy.as_ref()?;
        Some(meter.reset_ms(now_ms))
    }

    /// Makes the next `count` requests of an account get the proxy's 429
    /// without `Retry-After` or any other rate-limit header.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login.
    pub fn inject_throttle(&self, login: &str, count: u32) {
        let mut state = self.shared.state.lock();
        let account = state.expect_account(login);
        account.injected_throttles = account.injected_throttles.saturating_add(count);
    }

    /// Makes the next `count` requests, whatever their token, fail with the
    /// proxy's 502 and an HTML body.
    pub fn inject_server_errors(&self, count: u32) {
        let mut state = self.shared.state.lock();
        state.server_errors = state.server_errors.saturating_add(count);
    }

    /// Makes every request to `path` (below the API root, such as
    /// `/repos/o/r/hooks`) return 403 `token does not have at least one of
    /// required scope(s): [read:repository]`. The request still passes the
    /// proxy and spends its budget.
    pub fn forbid(&self, path: &str) {
        self.shared.state.lock().forbidden.insert(path.to_owned());
    }

    /// Returns the token the last request carried in `Authorization`
    /// (`token` or `Bearer`), or `None` when it carried none or another scheme.
    pub fn last_credential(&self) -> Option<String> {
        self.shared.state.lock().last_credential.clone()
    }

    /// Returns the scheme of the last request's `Authorization`, lower-cased
    /// (`token` or `bearer`), or `None` when it carried no token.
    pub fn last_scheme(&self) -> Option<String> {
        self.shared.state.lock().last_scheme.clone()
    }

    /// Returns the number of requests that carried `secret`, whatever the response.
    pub fn requests_by_token(&self, secret: &str) -> u64 {
        let state = self.shared.state.lock();
        state.counters.by_token.get(secret).copied().unwrap_or(0)
    }

    /// Returns the number of requests received.
    pub fn total_requests(&self) -> u64 {
        self.shared.state.lock().counters.total
    }

    /// Returns the number of 2xx responses.
    pub fn successful_requests(&self) -> u64 {
        self.shared.state.lock().counters.successful
    }

    /// Returns the number of 429 responses to accounts whose proxy budget was spent.
    pub fn over_limit_responses(&self) -> u64 {
        self.shared.state.lock().counters.over_limit
    }

    /// Returns the number of injected 429 responses without headers.
    pub fn throttled_responses(&self) -> u64 {
        self.shared.state.lock().counters.throttled
    }

    /// Returns the number of 401 responses.
    pub fn unauthorized_responses(&self) -> u64 {
        self.shared.state.lock().counters.unauthorized
    }

    /// Returns the number of injected 502 responses.
    pub fn server_error_responses(&self) -> u64 {
        self.shared.state.lock().counters.server_errors
    }
}

impl fmt::Debug for GiteaSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GiteaSimulator")
            .field("uri", &self.uri())
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}
