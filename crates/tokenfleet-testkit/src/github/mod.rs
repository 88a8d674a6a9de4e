//! A GitHub REST and GraphQL simulator with per-account primary and secondary rate limits.
//!
//! The simulator is a wiremock server on `127.0.0.1`. It meters every
//! request against the buckets of the account that owns the token, sends
//! GitHub's `x-ratelimit-*` headers, and responds as GitHub does once a
//! bucket is empty. All window arithmetic and the `date` header follow the
//! [`Clock`] given to the builder, so a test sharing a
//! [`ManualClock`](tokenfleet_core::ManualClock) with the code under test
//! can skip an hour-long window at once.
//!
//! # Endpoints
//!
//! | Request | Bucket | Response |
//! |---|---|---|
//! | `GET /rate_limit` | none | usage of every bucket of the caller |
//! | `GET /user` | `core` | the caller's user object |
//! | `GET /users/{owner}/repos`, `GET /orgs/{owner}/repos` | `core` | generated repositories |
//! | `GET /search/repositories?q=` | `search` | repositories whose name contains `q` |
//! | `GET /search/code?q=` | `code_search` | an empty result |
//! | `GET /search/{commits,issues,labels,topics,users}?q=` | `search` | an empty result |
//! | `POST /graphql` | `graphql` | `rateLimit { cost limit used remaining resetAt }` |
//! | anything else | `core` | 404 `Not Found` |
//!
//! # Order of checks
//!
//! Each request goes through these checks in order, and the first one that
//! responds wins:
//!
//! 1. an injected 502;
//! 2. the token (401 `Bad credentials`);
//! 3. endpoints that need a token (401 for anonymous callers);
//! 4. an injected secondary limit, then the concurrency cap;
//! 5. `/rate_limit`, then a registered redirect;
//! 6. the primary limit, and then the endpoint itself.
//!
//! # Limitations
//!
//! The per-minute points limit of GitHub's secondary limits is not
//! simulated. Only the concurrency cap and injected failures produce
//! secondary-limit responses.

mod app;
mod endpoints;
mod reply;
mod repos;
mod responder;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokenfleet_core::clock::{Clock, SystemClock};
use wiremock::http::HeaderValue;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

pub use self::app::{TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY};
use self::responder::{GithubResponder, Settings, Shared};
pub use self::state::{AccountLimits, BucketLimit};
use self::state::{Resource, State, TokenEntry};

/// Default maximum of requests one account may have in flight.
const DEFAULT_CONCURRENCY_CAP: usize = 100;

/// A running GitHub simulator bound to a loopback port.
///
/// The server stops when the value is dropped. All methods lock the shared
/// state briefly and may be called while requests are being served.
pub struct GithubSimulator {
    server: MockServer,
    shared: Arc<Shared>,
}

/// Settings of a [`GithubSimulator`] before it starts.
#[derive(Debug, Clone)]
pub struct GithubSimulatorBuilder {
    clock: Arc<dyn Clock>,
    enterprise: bool,
    primary_status: u16,
    concurrency_cap: usize,
    latency: Duration,
    anonymous_limits: AccountLimits,
}

impl Default for GithubSimulatorBuilder {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            enterprise: false,
            primary_status: 403,
            concurrency_cap: DEFAULT_CONCURRENCY_CAP,
            latency: Duration::ZERO,
            anonymous_limits: AccountLimits::anonymous(),
        }
    }
}

impl GithubSimulatorBuilder {
    /// Sets the clock used for rate-limit windows and the `date` header.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Switches to GitHub Enterprise Server with rate limiting disabled.
    ///
    /// The REST API then lives under `/api/v3` and GraphQL at
    /// `/api/graphql`. No response carries `x-ratelimit-*` headers, no
    /// budget is spent, and `/rate_limit` returns 404. Secondary limits
    /// still apply.
    pub fn enterprise(mut self, enabled: bool) -> Self {
        self.enterprise = enabled;
        self
    }

    /// Sets the status of primary- and secondary-limit responses: 403 (the default) or 429.
    ///
    /// # Panics
    ///
    /// Panics if `status` is neither 403 nor 429.
    pub fn primary_status(mut self, status: u16) -> Self {
        assert!(
            status == 403 || status == 429,
            "invalid primary_status {status}: GitHub throttles with 403 or 429"
        );
        self.primary_status = status;
        self
    }

    /// Sets how many requests of one account may be in flight at once (default 100).
    ///
    /// A request over the cap gets a secondary-limit response with
    /// `retry-after: 60`. A request is in flight from its arrival until the
    /// configured [`latency`](Self::latency) has passed in real time, so the
    /// cap never triggers while the latency is zero.
    pub fn concurrency_cap(mut self, cap: usize) -> Self {
        self.concurrency_cap = cap;
        self
    }

    /// Sets the real-time delay before each response is sent (default none).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the quotas of requests without a token (default [`AccountLimits::anonymous`]).
    pub fn anonymous_limits(mut self, limits: AccountLimits) -> Self {
        self.anonymous_limits = limits;
        self
    }

    /// Starts the simulator on a free port of `127.0.0.1`.
    pub async fn start(self) -> GithubSimulator {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;

        let settings = Settings {
            enterprise: self.enterprise,
            primary_status: self.primary_status,
            concurrency_cap: self.concurrency_cap,
            latency: self.latency,
        };
        let shared = Arc::new(Shared {
            clock: self.clock,
            settings,
            state: Mutex::new(State::new(self.anonymous_limits)),
            listen_address: server.address().to_string(),
        });

        Mock::given(any())
            .respond_with(GithubResponder(Arc::clone(&shared)))
            .mount(&server)
            .await;

        GithubSimulator { server, shared }
    }
}

impl GithubSimulator {
    /// Creates a builder with the defaults: system clock, github.com, 403, cap 100, no latency.
    pub fn builder() -> GithubSimulatorBuilder {
        GithubSimulatorBuilder::default()
    }

    /// Starts a simulator with the builder defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Returns the REST API base URL: `http://127.0.0.1:PORT`, plus `/api/v3` in enterprise mode.
    pub fn uri(&self) -> String {
        if self.shared.settings.enterprise {
            format!("{}/api/v3", self.server.uri())
        } else {
            self.server.uri()
        }
    }

    /// Returns the GraphQL endpoint URL: `/graphql`, or `/api/graphql` in enterprise mode.
    pub fn graphql_uri(&self) -> String {
        if self.shared.settings.enterprise {
            format!("{}/api/graphql", self.server.uri())
        } else {
            format!("{}/graphql", self.server.uri())
        }
    }

    /// Registers an account and returns its numeric user id, counting up from 1000.
    ///
    /// # Panics
    ///
    /// Panics if the login is `anonymous` or already registered, ignoring case.
    pub fn add_account(&self, login: &str, limits: AccountLimits) -> u64 {
        self.shared.state.lock().add_account(login, limits)
    }

    /// Registers a token charged to the account `login`.
    ///
    /// Several tokens may share one account, and then they share its
    /// buckets. Adding a revoked token again makes it valid.
    ///
    /// # Panics
    ///
    /// Panics if no account has that login.
    pub fn add_token(&self, secret: &str, login: &str) {
        let mut state = self.shared.state.lock();
        let key = login.to_lowercase();
        assert!(
            state.accounts.contains_key(&key),
            "unknown account {login:?}: call add_account first"
        );

        let entry = TokenEntry {
            account: key,
            revoked: false,
            expires_at_ms: None,
        };
        state.tokens.insert(secret.to_owned(), entry);
    }

    /// Revokes a token, so later requests with it get 401 `Bad credentials`.
    pub fn revoke_token(&self, secret: &str) {
        if let Some(entry) = self.shared.state.lock().tokens.get_mut(secret) {
            entry.revoked = true;
        }
    }

    /// Generates `count` more repositories for a user or organization.
    ///
    /// An owner with a registered account is listed as a user; any other
    /// owner is an organization. Names and fields depend only on the
    /// owner's login and the repository's position, and ids count up in
    /// the order repositories are added.
    pub fn add_repositories(&self, owner: &str, count: usize) {
        let mut guard = self.shared.state.lock();
        let state = &mut *guard;

        let key = owner.to_lowercase();
        let entry = state
            .owners
            .entry(key)
            .or_insert_with(|| state.catalog.new_owner(owner));
        state.catalog.generate(entry, count);
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

    /// Leaves `remaining` points in a bucket, as if another program had spent the rest.
    ///
    /// Opens the bucket's window if it is not open yet. `bucket` is one of
    /// `core`, `search`, `code_search` and `graphql`; `login` may be
    /// `anonymous`.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login or bucket.
    pub fn set_remaining(&self, login: &str, bucket: &str, remaining: u64) {
        let resource = Resource::from_name(bucket);
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state
            .expect_account(login)
            .meter(resource)
            .set_remaining(now_ms, remaining);
    }

    /// Returns the points left in a bucket at the clock's current time.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login or bucket.
    pub fn remaining(&self, login: &str, bucket: &str) -> u64 {
        let resource = Resource::from_name(bucket);
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state
            .expect_account(login)
            .meter(resource)
            .usage(now_ms)
            .remaining
    }

    /// Returns when a bucket's window ends, in epoch seconds as in `x-ratelimit-reset`.
    ///
    /// An unused bucket reports one window from now.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login or bucket.
    pub fn reset_at(&self, login: &str, bucket: &str) -> u64 {
        let resource = Resource::from_name(bucket);
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state
            .expect_account(login)
            .meter(resource)
            .usage(now_ms)
            .reset
    }

    /// Registers a GitHub App whose JWTs are signed by the private half of
    /// `public_key_pem` (an RSA public key in PEM form), such as
    /// [`TEST_APP_PUBLIC_KEY`].
    ///
    /// # Panics
    ///
    /// Panics when the key is not an RSA public key in PEM form.
    pub fn add_app(&self, app_id: u64, public_key_pem: &str) {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .expect("an RSA public key in PEM form");
        self.shared.state.lock().apps.insert(
            app_id.to_string(),
            app::App {
                key,
                installations: std::collections::HashMap::new(),
            },
        );
    }

    /// Installs an app on an account of its own, named
    /// `installation-{installation_id}`, with `limits`, and returns that login.
    /// `POST /app/installations/{installation_id}/access_tokens` then issues
    /// tokens charged to it.
    ///
    /// # Panics
    ///
    /// Panics when the app is not registered.
    pub fn add_installation(
        &self,
        app_id: u64,
        installation_id: u64,
        limits: AccountLimits,
    ) -> String {
        let login = format!("installation-{installation_id}");
        let mut state = self.shared.state.lock();
        state.add_account(&login, limits);
        state
            .apps
            .get_mut(&app_id.to_string())
            .expect("call add_app first")
            .installations
            .insert(installation_id, login.clone());
        login
    }

    /// Sets how long installation tokens issued from now on stay valid
    /// (an hour by default, as on GitHub).
    pub fn set_installation_token_ttl(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.shared.state.lock().installation_token_ttl_ms = ms;
    }

    /// Returns how many installation tokens the simulator issued.
    pub fn installation_tokens_issued(&self) -> u64 {
        self.shared.state.lock().counters.installation_tokens
    }

    /// Makes every request to `path` (below the API root, such as
    /// `/repos/o/r/hooks`) answer 403 `Resource not accessible by personal
    /// access token`, GitHub's refusal for a missing permission. The
    /// request still spends budget and carries the rate-limit headers.
    pub fn forbid(&self, path: &str) {
        self.shared.state.lock().forbidden.insert(path.to_owned());
    }

    /// Returns the token the last request carried in `Authorization`
    /// (`Bearer` or `token`), or `None` when it carried none or a malformed one.
    pub fn last_credential(&self) -> Option<String> {
        self.shared.state.lock().last_credential.clone()
    }

    /// Makes the next `count` requests of an account fail with a secondary limit.
    ///
    /// The responses carry `retry-after` only when `retry_after` (seconds) is
    /// `Some`. Repeated calls queue up in order.
    ///
    /// # Panics
    ///
    /// Panics on an unknown login.
    pub fn inject_secondary_limit(&self, login: &str, count: u32, retry_after: Option<u64>) {
        let mut state = self.shared.state.lock();
        state
            .expect_account(login)
            .inject_secondary(count, retry_after);
    }

    /// Makes the next `count` requests, whatever their token, fail with 502 and an HTML body.
    pub fn inject_server_errors(&self, count: u32) {
        let mut state = self.shared.state.lock();
        state.server_errors = state.server_errors.saturating_add(count);
    }

    /// Redirects `GET path` with 302 to `location`, which may be absolute or relative.
    ///
    /// `path` is relative to [`uri`](Self::uri), such as `/repos/old/name`,
    /// and the query string is ignored when matching. `location` is sent
    /// as given, so a relative one resolves against the server root, not
    /// against `/api/v3`. Redirects spend no budget.
    ///
    /// # Panics
    ///
    /// Panics if `location` is not a valid header value.
    pub fn add_redirect(&self, path: &str, location: &str) {
        assert!(
            HeaderValue::from_str(location).is_ok(),
            "invalid redirect location {location:?}: not a valid header value"
        );
        let mut state = self.shared.state.lock();
        state.redirects.insert(path.to_owned(), location.to_owned());
    }

    /// Sets the points each `POST /graphql` spends (default 1).
    ///
    /// # Panics
    ///
    /// Panics if `points` is 0, because every GitHub GraphQL query costs at least one point.
    pub fn set_graphql_cost(&self, points: u64) {
        assert!(
            points > 0,
            "invalid GraphQL cost 0: a query costs at least 1 point"
        );
        self.shared.state.lock().graphql_cost = points;
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

    /// Returns the number of primary-limit responses, REST and GraphQL.
    pub fn over_limit_responses(&self) -> u64 {
        self.shared.state.lock().counters.over_limit
    }

    /// Returns the number of secondary-limit responses, injected or from the concurrency cap.
    pub fn secondary_limit_responses(&self) -> u64 {
        self.shared.state.lock().counters.secondary
    }

    /// Returns the number of 401 responses.
    pub fn unauthorized_responses(&self) -> u64 {
        self.shared.state.lock().counters.unauthorized
    }

    /// Returns the number of 2xx responses from metered endpoints, so `/rate_limit` is not counted.
    ///
    /// In enterprise mode these requests spend no budget but still count.
    pub fn successful_requests(&self) -> u64 {
        self.shared.state.lock().counters.successful
    }
}

impl fmt::Debug for GithubSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubSimulator")
            .field("uri", &self.uri())
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}
