//! A simulator of any API that states its rate limits in headers.
//!
//! It takes the same [`HttpSettings`] as the generic provider, so a test
//! sets up both from one value.
//!
//! The simulator is a wiremock server on `127.0.0.1`. It reads the token
//! in the configured auth form, meters every request against a fixed
//! window per (account, bucket), and writes exactly the configured limit
//! headers in the configured reset format. All window arithmetic and the
//! `Date` header follow the [`Clock`] given to the builder.
//!
//! # Endpoints
//!
//! Paths are below the path of the settings' `base_url`.
//!
//! | Request | Response |
//! |---|---|
//! | `GET status_endpoint` | the caller's usage of the path's bucket; free when `status_endpoint_free` |
//! | `GET account_endpoint` | the account name at `account_pointer` |
//! | `GET repositories_path` | a page of generated repositories with `Link` pagination (`page`, `per_page`) |
//! | a path passed to [`GenericSimulator::forbid`] | the first status of `forbidden_statuses` |
//! | anything else | 200 with a small JSON object |
//!
//! # Order of checks
//!
//! 1. an injected 502;
//! 2. the token: missing, malformed, unknown or revoked gets the first
//!    status of `invalid_statuses`, without limit headers;
//! 3. an injected throttle, without limit headers;
//! 4. the budget of the request's bucket: when spent, the throttle
//!    status with remaining 0, the reset and (by default) a retry-after;
//! 5. the endpoint, with the limit headers after spending.

mod responder;
mod state;

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use tokenfleet_core::clock::{Clock, SystemClock};
use tokenfleet_http::HttpSettings;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use self::responder::{Config, GenericResponder, Shared};
pub use self::state::Budget;
use self::state::{Account, InjectedThrottle, State, TokenEntry};

/// A running generic simulator bound to a loopback port.
///
/// The server stops when the value is dropped. All methods lock the shared
/// state briefly and may be called while requests are being served.
pub struct GenericSimulator {
    server: MockServer,
    shared: Arc<Shared>,
}

/// Settings of a [`GenericSimulator`] before it starts.
#[derive(Debug, Clone)]
pub struct GenericSimulatorBuilder {
    settings: HttpSettings,
    clock: Arc<dyn Clock>,
    throttle_status: Option<u16>,
    retry_after_on_throttle: bool,
    token_in_links: bool,
}

impl GenericSimulatorBuilder {
    /// Sets the clock used for windows and the `Date` header.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the status of throttled responses (default: the first of the
    /// settings' `throttle_statuses`, or 429 when the list is empty).
    pub fn throttle_status(mut self, status: u16) -> Self {
        self.throttle_status = Some(status);
        self
    }

    /// Sets whether a response to a request over the budget carries the
    /// retry-after header with the seconds until the reset (default true).
    pub fn retry_after_on_throttle(mut self, enabled: bool) -> Self {
        self.retry_after_on_throttle = enabled;
        self
    }

    /// Sets whether `Link` URLs repeat the token's query parameter (default
    /// false), as some servers do, to test that no output shows it.
    pub fn token_in_links(mut self, enabled: bool) -> Self {
        self.token_in_links = enabled;
        self
    }

    /// Starts the simulator on a free port of `127.0.0.1`.
    pub async fn start(self) -> GenericSimulator {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;

        let settings = self.settings;
        let first = |statuses: &[u16], fallback: u16| statuses.first().copied().unwrap_or(fallback);
        let config = Config {
            api_root: settings.base_url.path().trim_end_matches('/').to_owned(),
            throttle_status: self
                .throttle_status
                .unwrap_or_else(|| first(&settings.throttle_statuses, 429)),
            invalid_status: first(&settings.invalid_statuses, 401),
            forbidden_status: first(&settings.forbidden_statuses, 403),
            retry_after_on_throttle: self.retry_after_on_throttle,
            token_in_links: self.token_in_links,
            settings,
        };
        let shared = Arc::new(Shared {
            clock: self.clock,
            config,
            state: Mutex::new(State::new()),
            listen_address: server.address().to_string(),
        });

        Mock::given(any())
            .respond_with(GenericResponder(Arc::clone(&shared)))
            .mount(&server)
            .await;

        GenericSimulator { server, shared }
    }
}

impl GenericSimulator {
    /// Creates a builder for an API described by `settings`, with the
    /// system clock. Only the path of `settings.base_url` is used: it
    /// becomes the API root below the simulator's address.
    pub fn builder(settings: HttpSettings) -> GenericSimulatorBuilder {
        GenericSimulatorBuilder {
            settings,
            clock: Arc::new(SystemClock),
            throttle_status: None,
            retry_after_on_throttle: true,
            token_in_links: false,
        }
    }

    /// Returns the API base URL: `http://127.0.0.1:PORT` and the settings' base path.
    pub fn uri(&self) -> String {
        format!("{}{}", self.server.uri(), self.shared.config.api_root)
    }

    /// Returns the start settings with `base_url` set to [`uri`](Self::uri),
    /// ready for building the provider.
    pub fn settings(&self) -> HttpSettings {
        let mut settings = self.shared.config.settings.clone();
        settings.base_url = self.uri().parse().expect("the simulator URI parses");
        settings
    }

    /// Registers an account whose every bucket gets `budget`.
    ///
    /// # Panics
    ///
    /// Panics if the account already exists.
    pub fn add_account(&self, name: &str, budget: Budget) {
        let mut state = self.shared.state.lock();
        assert!(
            !state.accounts.contains_key(name),
            "account {name:?} already exists"
        );
        state
            .accounts
            .insert(name.to_owned(), Account::new(name, budget));
    }

    /// Gives one bucket of an account its own budget, starting a fresh window.
    ///
    /// # Panics
    ///
    /// Panics on an unknown account.
    pub fn set_budget(&self, account: &str, bucket: &str, budget: Budget) {
        self.shared
            .state
            .lock()
            .expect_account(account)
            .set_budget(bucket, budget);
    }

    /// Registers a token charged to `account`. Adding a revoked token again makes it valid.
    ///
    /// # Panics
    ///
    /// Panics on an unknown account.
    pub fn add_token(&self, secret: &str, account: &str) {
        let mut state = self.shared.state.lock();
        state.expect_account(account);
        let entry = TokenEntry {
            account: account.to_owned(),
            revoked: false,
        };
        state.tokens.insert(secret.to_owned(), entry);
    }

    /// Revokes a token, so later requests with it get the invalid status.
    pub fn revoke_token(&self, secret: &str) {
        if let Some(entry) = self.shared.state.lock().tokens.get_mut(secret) {
            entry.revoked = true;
        }
    }

    /// Adds `count` repositories named `repo-N` to an owner's listing.
    pub fn add_repositories(&self, owner: &str, count: usize) {
        let mut state = self.shared.state.lock();
        let names = state.repositories.entry(owner.to_owned()).or_default();
        let first = names.len() + 1;
        names.extend((first..first + count).map(|n| format!("repo-{n:04}")));
    }

    /// Returns the full names (`owner/name`) of an owner's repositories, in listing order.
    pub fn repository_names(&self, owner: &str) -> Vec<String> {
        let state = self.shared.state.lock();
        state
            .repositories
            .get(owner)
            .map(|names| names.iter().map(|name| format!("{owner}/{name}")).collect())
            .unwrap_or_default()
    }

    /// Leaves `remaining` requests in a bucket, as if another program had spent the rest.
    ///
    /// # Panics
    ///
    /// Panics on an unknown account.
    pub fn set_remaining(&self, account: &str, bucket: &str, remaining: u64) {
        let now_ms = self.shared.clock.now_ms();
        self.shared
            .state
            .lock()
            .expect_account(account)
            .meter(bucket)
            .set_remaining(now_ms, remaining);
    }

    /// Spends the rest of a bucket out of the client's sight.
    ///
    /// # Panics
    ///
    /// Panics on an unknown account.
    pub fn drain(&self, account: &str, bucket: &str) {
        self.set_remaining(account, bucket, 0);
    }

    /// Returns the requests left in a bucket at the clock's current time.
    ///
    /// # Panics
    ///
    /// Panics on an unknown account.
    pub fn remaining(&self, account: &str, bucket: &str) -> u64 {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state
            .expect_account(account)
            .meter(bucket)
            .usage(now_ms)
            .remaining
    }

    /// Returns when a bucket's window ends, in epoch milliseconds; an
    /// unused bucket reports one window from now.
    ///
    /// # Panics
    ///
    /// Panics on an unknown account.
    pub fn reset_at(&self, account: &str, bucket: &str) -> u64 {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state
            .expect_account(account)
            .meter(bucket)
            .usage(now_ms)
            .reset_ms
    }

    /// Makes every request to `path` (below the API root) return the
    /// forbidden status. The request still spends budget and carries the
    /// limit headers.
    pub fn forbid(&self, path: &str) {
        self.shared.state.lock().forbidden.insert(path.to_owned());
    }

    /// Makes the next `count` requests, whatever their token, fail with 502 and an HTML body.
    pub fn inject_server_errors(&self, count: u32) {
        let mut state = self.shared.state.lock();
        state.server_errors = state.server_errors.saturating_add(count);
    }

    /// Makes the next `count` requests with a valid token get the throttle
    /// status without limit headers, and with the retry-after header only
    /// when `retry_after` (seconds) is `Some`. Repeated calls queue up.
    pub fn inject_throttles(&self, count: u32, retry_after: Option<u64>) {
        if count > 0 {
            let mut state = self.shared.state.lock();
            state
                .throttles
                .push(InjectedThrottle { count, retry_after });
        }
    }

    /// Returns the token the last request carried in the configured auth
    /// form, or `None` when it carried none or a malformed one.
    pub fn last_credential(&self) -> Option<String> {
        self.shared.state.lock().last_credential.clone()
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

    /// Returns the number of successful responses that spent budget.
    pub fn successful_requests(&self) -> u64 {
        self.shared.state.lock().counters.successful
    }

    /// Returns the number of throttle responses to requests over the budget.
    pub fn over_limit_responses(&self) -> u64 {
        self.shared.state.lock().counters.over_limit
    }

    /// Returns the number of injected throttle responses sent.
    pub fn injected_throttle_responses(&self) -> u64 {
        self.shared.state.lock().counters.injected_throttles
    }

    /// Returns the number of responses with the invalid status.
    pub fn unauthorized_responses(&self) -> u64 {
        self.shared.state.lock().counters.unauthorized
    }
}

impl fmt::Debug for GenericSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericSimulator")
            .field("uri", &self.uri())
            .finish_non_exhaustive()
    }
}
