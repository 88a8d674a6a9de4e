//! A GitLab REST API simulator with per-user Rack::Attack throttles, application limits and project listings.
//!
//! The simulator is a wiremock server on `127.0.0.1` that serves the API
//! under `/api/v4`. It counts every request against the throttle of the
//! user who owns the token, in fixed windows aligned to the Unix epoch,
//! and sends GitLab's `RateLimit-*` headers with GitLab's arithmetic:
//!
//! | Header | Value |
//! |---|---|
//! | `RateLimit-Name` | `throttle_authenticated_api`, or `throttle_unauthenticated_api` without a token |
//! | `RateLimit-Limit` | the limit normalized to 60 s, rounded up: `ceil(limit * 60 / period)` |
//! | `RateLimit-Observed` | requests counted in the window, throttled ones included |
//! | `RateLimit-Remaining` | `max(limit - observed, 0)` with the raw limit |
//! | `RateLimit-Reset` | the end of the window, in epoch seconds |
//! | `RateLimit-ResetTime` (429 only) | the same instant as an HTTP date |
//! | `Retry-After` (429 only) | seconds to the end of the window |
//!
//! Window arithmetic and the `Date` header follow the [`Clock`] given to
//! the builder, so a test sharing a
//! [`ManualClock`](tokenfleet_core::ManualClock) with the code under test
//! can skip a window at once.
//!
//! # Endpoints
//!
//! | Request | Response |
//! |---|---|
//! | `GET /api/v4/user` | the caller's user object; 401 without a token |
//! | `GET /api/v4/users/:id` | a user by id or username; 404 `404 User Not Found` |
//! | `GET /api/v4/users/:id/projects` | the user's projects; 404 `404 User Not Found` |
//! | `GET /api/v4/groups/:id/projects` | a group's projects, by id or `%2F`-encoded path, with `include_subgroups=true` also those of nested groups; 404 `404 Group Not Found` |
//! | anything else | 404 `{"error":"404 Not Found"}` |
//!
//! Listings are in project id order and paginated with `page` and
//! `per_page` (default 20, maximum 100). Every page carries `x-page`,
//! `x-per-page`, `x-next-page`, `x-prev-page` and a `Link` header. Up to
//! 10,000 projects, `x-total`, `x-total-pages` and `rel="last"` are sent
//! too, and above that they are left out, as GitLab does.
//!
//! # Order of checks
//!
//! 1. an injected 500;
//! 2. the token: 401 `{"message":"401 Unauthorized"}` for an unknown or
//!    revoked one, 401 `invalid_token` for an expired one;
//! 3. the throttle, which counts the request and returns 429 `Retry later`
//!    (text/plain) once the window's limit is passed;
//! 4. an injected application limit: 429 with a JSON body and no
//!    `RateLimit-*` headers, like the responses of GitLab's Projects,
//!    Users and Groups API limits;
//! 5. a forbidden path (403 `{"message":"403 Forbidden"}`), then the endpoint.
//!
//! # Limitations
//!
//! Only the authenticated and unauthenticated API throttles are simulated.
//! Offset pagination reaches the first 50,000 projects, as on GitLab, and
//! a page past them returns 400. Keyset pagination, which GitLab offers
//! for the rest, is not supported.

mod projects;
mod responder;
mod state;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use tokenfleet_core::clock::{Clock, SystemClock};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use self::responder::{GitlabResponder, Settings, Shared, API_ROOT};
pub use self::state::Throttle;
use self::state::{State, TokenEntry, TokenState};

/// A running GitLab simulator bound to a loopback port.
///
/// The server stops when the value is dropped. All methods lock the shared
/// state briefly and may be called while requests are being served.
pub struct GitlabSimulator {
    server: MockServer,
    shared: Arc<Shared>,
}

/// Settings of a [`GitlabSimulator`] before it starts.
#[derive(Debug, Clone)]
pub struct GitlabSimulatorBuilder {
    clock: Arc<dyn Clock>,
    headers_on_every_response: bool,
    link_headers: bool,
    omitted_headers: HashSet<String>,
    unauthenticated: Throttle,
}

impl Default for GitlabSimulatorBuilder {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            headers_on_every_response: true,
            link_headers: true,
            omitted_headers: HashSet::new(),
            unauthenticated: Throttle::unauthenticated(),
        }
    }
}

impl GitlabSimulatorBuilder {
    /// Sets the clock used for throttle windows and the `Date` header.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets whether every response carries the `RateLimit-*` headers (the
    /// default, as on current GitLab) or only throttled 429 responses do,
    /// as on older versions.
    pub fn headers_on_every_response(mut self, enabled: bool) -> Self {
        self.headers_on_every_response = enabled;
        self
    }

    /// Sets whether listings carry a `Link` header (default true). Without
    /// it, only the `x-*` page headers name the next page.
    pub fn link_headers(mut self, enabled: bool) -> Self {
        self.link_headers = enabled;
        self
    }

    /// Leaves a header out of every response, such as `retry-after` or
    /// `ratelimit-reset`, to test clients against partial header sets.
    pub fn omit_header(mut self, name: &str) -> Self {
        self.omitted_headers.insert(name.to_ascii_lowercase());
        self
    }

    /// Sets the per-IP throttle of requests without a token (default
    /// [`Throttle::unauthenticated`]).
    pub fn unauthenticated(mut self, throttle: Throttle) -> Self {
        self.unauthenticated = throttle;
        self
    }

    /// Starts the simulator on a free port of `127.0.0.1`.
    pub async fn start(self) -> GitlabSimulator {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;

        let settings = Settings {
            headers_on_every_response: self.headers_on_every_response,
            link_headers: self.link_headers,
            omitted_headers: self.omitted_headers,
        };
        let shared = Arc::new(Shared {
            clock: self.clock,
            settings,
            state: Mutex::new(State::new(self.unauthenticated)),
            listen_address: server.address().to_string(),
        });

        Mock::given(any())
            .respond_with(GitlabResponder(Arc::clone(&shared)))
            .mount(&server)
            .await;

        GitlabSimulator { server, shared }
    }
}

impl GitlabSimulator {
    /// Creates a builder with the defaults: system clock, headers on every
    /// response, `Link` headers, gitlab.com's unauthenticated throttle.
    pub fn builder() -> GitlabSimulatorBuilder {
        GitlabSimulatorBuilder::default()
    }

    /// Starts a simulator with the builder defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Returns the API base URL for the provider config: `http://127.0.0.1:PORT/api/v4`.
    pub fn uri(&self) -> String {
        format!("{}{API_ROOT}", self.server.uri())
    }

    /// Registers a user with its API throttle and returns its numeric id,
    /// counting up from 1000.
    ///
    /// # Panics
    ///
    /// Panics if the username is already registered, ignoring case.
    pub fn add_account(&self, username: &str, throttle: Throttle) -> u64 {
        self.shared.state.lock().add_account(username, throttle)
    }

    /// Registers a token of the user `username`. Several tokens of one user
    /// share its throttle. Adding a revoked or expired token again makes
    /// it valid.
    ///
    /// # Panics
    ///
    /// Panics if no user has that username.
    pub fn add_token(&self, secret: &str, username: &str) {
        let mut state = self.shared.state.lock();
        let key = username.to_lowercase();
        assert!(
            state.accounts.contains_key(&key),
            "unknown account {username:?}: call add_account first"
        );
        let entry = TokenEntry {
            account: key,
            state: TokenState::Active,
        };
        state.tokens.insert(secret.to_owned(), entry);
    }

    /// Revokes a token, so later requests with it get 401 `401 Unauthorized`.
    pub fn revoke_token(&self, secret: &str) {
        self.set_token_state(secret, TokenState::Revoked);
    }

    /// Expires a token, so later requests with it get 401 with the OAuth
    /// error `invalid_token` and "Token is expired".
    pub fn expire_token(&self, secret: &str) {
        self.set_token_state(secret, TokenState::Expired);
    }

    fn set_token_state(&self, secret: &str, token_state: TokenState) {
        if let Some(entry) = self.shared.state.lock().tokens.get_mut(secret) {
            entry.state = token_state;
        }
    }

    /// Adds `count` projects named `project-00001` and up to a user's
    /// namespace, when a user has that name, or else to a group, whose
    /// path may be nested (`group/subgroup`).
    pub fn add_repositories(&self, owner: &str, count: usize) {
        let mut guard = self.shared.state.lock();
        let state = &mut *guard;
        let mut next_id = state.next_project_id;
        state.namespace_mut(owner).generate(count, &mut next_id);
        state.next_project_id = next_id;
    }

    /// Returns the paths of the projects in an owner's own namespace, in
    /// listing order.
    pub fn repository_names(&self, owner: &str) -> Vec<String> {
        let state = self.shared.state.lock();
        state
            .namespaces
            .get(&owner.to_lowercase())
            .map(|namespace| namespace.projects.iter().map(|p| p.path.clone()).collect())
            .unwrap_or_default()
    }

    /// Leaves `remaining` requests in the user's current window, as if
    /// another program had spent the rest.
    ///
    /// # Panics
    ///
    /// Panics on an unknown username.
    pub fn set_remaining(&self, username: &str, remaining: u64) {
        let now = self.shared.clock.now_ms() / 1000;
        let mut state = self.shared.state.lock();
        state
            .expect_account(username)
            .meter
            .set_remaining(now, remaining);
    }

    /// Spends the rest of the user's current window out of the pool's sight.
    ///
    /// # Panics
    ///
    /// Panics on an unknown username.
    pub fn drain(&self, username: &str) {
        self.set_remaining(username, 0);
    }

    /// Returns the requests left in the user's current window.
    ///
    /// # Panics
    ///
    /// Panics on an unknown username.
    pub fn remaining(&self, username: &str) -> u64 {
        let now = self.shared.clock.now_ms() / 1000;
        let mut state = self.shared.state.lock();
        state.expect_account(username).meter.usage(now).remaining
    }

    /// Returns when the user's current window ends, in epoch seconds as
    /// in `RateLimit-Reset`.
    ///
    /// # Panics
    ///
    /// Panics on an unknown username.
    pub fn reset_at(&self, username: &str) -> u64 {
        let now = self.shared.clock.now_ms() / 1000;
        let mut state = self.shared.state.lock();
        state.expect_account(username).meter.usage(now).reset
    }

    /// Makes the user's next `count` requests get an application-level 429
    /// without `RateLimit-*` headers, after the throttle counted them.
    ///
    /// # Panics
    ///
    /// Panics on an unknown username.
    pub fn inject_application_limit(&self, username: &str, count: u32) {
        let mut state = self.shared.state.lock();
        let account = state.expect_account(username);
        account.application_limits = account.application_limits.saturating_add(count);
    }

    /// Makes the next `count` requests, whatever their token, fail with 500.
    pub fn inject_server_errors(&self, count: u32) {
        let mut state = self.shared.state.lock();
        state.server_errors = state.server_errors.saturating_add(count);
    }

    /// Makes every request to `path` (below `/api/v4`, such as
    /// `/projects/1/variables`) return 403 `{"message":"403 Forbidden"}`.
    /// The request still counts against the throttle.
    pub fn forbid(&self, path: &str) {
        self.shared.state.lock().forbidden.insert(path.to_owned());
    }

    /// Returns the token the last request carried in `PRIVATE-TOKEN` or
    /// `Authorization: Bearer`, or `None` when it carried none or a
    /// malformed one.
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

    /// Returns the number of 2xx responses.
    pub fn successful_requests(&self) -> u64 {
        self.shared.state.lock().counters.successful
    }

    /// Returns the number of throttled 429 responses, which carry the
    /// `RateLimit-*` headers.
    pub fn over_limit_responses(&self) -> u64 {
        self.shared.state.lock().counters.over_limit
    }

    /// Returns the number of injected application-level 429 responses.
    pub fn application_limit_responses(&self) -> u64 {
        self.shared.state.lock().counters.application_limited
    }

    /// Returns the number of 401 responses.
    pub fn unauthorized_responses(&self) -> u64 {
        self.shared.state.lock().counters.unauthorized
    }
}

impl fmt::Debug for GitlabSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitlabSimulator")
            .field("uri", &self.uri())
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}
