//! A Bitbucket Cloud REST 2.0 simulator with rolling one-hour windows per principal.
//!
//! The simulator is a wiremock server on `127.0.0.1`. It counts every
//! request in a sliding log of the principal it is charged to: the access
//! token, the user behind basic credentials, or anonymous callers. Once the
//! log contains the principal's limit, it responds with 429 and Bitbucket's
//! plain-text body. As on Bitbucket, no response states the remaining
//! budget or a reset time. All window arithmetic and the `date` header
//! follow the [`Clock`] given to the builder, so a test sharing a
//! [`ManualClock`](tokenfleet_core::ManualClock) with the code under test
//! can skip an hour at once.
//!
//! # Endpoints
//!
//! Paths are below [`uri`](BitbucketSimulator::uri), which ends in `/2.0`.
//!
//! | Request | Response |
//! |---|---|
//! | `GET /user` | the caller's user object; 401 for anonymous callers |
//! | `GET /repositories/{workspace}?pagelen=&page=` | a page of generated repositories, with `next` on every page but the last; 404 for an unknown workspace |
//! | anything else | 404 with Bitbucket's error envelope |
//!
//! Requests of access tokens to `/repositories/*` carry `X-RateLimit-Limit`,
//! `X-RateLimit-Resource: api` and `X-RateLimit-NearLimit` (true once less
//! than a fifth of the limit is left, a threshold Bitbucket does not
//! document). No other response carries rate-limit headers.
//!
//! # Order of checks
//!
//! Each request goes through these checks in order, and the first one that
//! responds wins:
//!
//! 1. an injected 500;
//! 2. the credential: 401 with `{"type":"error","error":{"message":"Token is
//!    invalid, expired, or not supported for this endpoint."}}` for bearer
//!    tokens, 401 with the plain-text `Login failed due to incorrect login
//!    credentials or method.` and `www-authenticate: Basic realm="Bitbucket.org HTTP"`
//!    for basic credentials;
//! 3. a path outside `/2.0` (404);
//! 4. `GET /user` without credentials (401, basic form);
//! 5. an injected 429, which spends nothing;
//! 6. the principal's window: 429 `Rate limit for this resource has been
//!    exceeded` when full, else the request is counted;
//! 7. a forbidden path (403 `{"type":"error","error":{"message":"Forbidden"}}`),
//!    then the endpoint itself.
//!
//! Responses from steps 1 to 5, and the 429 of step 6, spend nothing. Every
//! request that passes step 6 counts, whatever its response.

mod repos;
mod responder;
mod state;

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use tokenfleet_core::clock::{Clock, SystemClock};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use self::repos::Workspace;
use self::responder::{BitbucketResponder, Settings, Shared, API_PREFIX};
pub use self::state::Allowance;
use self::state::{CredentialEntry, Principal, PrincipalKind, Scheme, State, ANONYMOUS};

/// A running Bitbucket Cloud simulator bound to a loopback port.
///
/// The server stops when the value is dropped. All methods lock the shared
/// state briefly and may be called while requests are being served.
pub struct BitbucketSimulator {
    server: MockServer,
    shared: Arc<Shared>,
}

/// Settings of a [`BitbucketSimulator`] before it starts.
#[derive(Debug, Clone)]
pub struct BitbucketSimulatorBuilder {
    clock: Arc<dyn Clock>,
    anonymous: Allowance,
    report_size: bool,
}

impl Default for BitbucketSimulatorBuilder {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            anonymous: Allowance::anonymous(),
            report_size: true,
        }
    }
}

impl BitbucketSimulatorBuilder {
    /// Sets the clock used for windows and the `date` header.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the allowance of requests without credentials (default 60 per hour).
    pub fn anonymous_allowance(mut self, allowance: Allowance) -> Self {
        self.anonymous = allowance;
        self
    }

    /// Sets whether listings state the total count in `size` (default
    /// true). Bitbucket may leave `size` out because it is costly to compute.
    pub fn report_size(mut self, enabled: bool) -> Self {
        self.report_size = enabled;
        self
    }

    /// Starts the simulator on a free port of `127.0.0.1`.
    pub async fn start(self) -> BitbucketSimulator {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        let shared = Arc::new(Shared {
            clock: self.clock,
            settings: Settings {
                report_size: self.report_size,
            },
            state: Mutex::new(State::new(self.anonymous)),
            listen_address: server.address().to_string(),
        });
        Mock::given(any())
            .respond_with(BitbucketResponder(Arc::clone(&shared)))
            .mount(&server)
            .await;
        BitbucketSimulator { server, shared }
    }
}

impl BitbucketSimulator {
    /// Creates a builder with the defaults: system clock, 60 anonymous
    /// requests per hour, `size` in listings.
    pub fn builder() -> BitbucketSimulatorBuilder {
        BitbucketSimulatorBuilder::default()
    }

    /// Starts a simulator with the builder defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Returns the API base URL for the provider config: `http://127.0.0.1:PORT/2.0`.
    pub fn uri(&self) -> String {
        format!("{}{API_PREFIX}", self.server.uri())
    }

    /// Registers a user, the principal that basic credentials are charged to.
    ///
    /// # Panics
    ///
    /// Panics if a user of that name exists, ignoring case.
    pub fn add_user(&self, username: &str, allowance: Allowance) {
        let principal = Principal::new(username, PrincipalKind::User, allowance);
        let mut state = self.shared.state.lock();
        state.add_principal(username.to_lowercase(), principal);
    }

    /// Registers basic credentials (`username:secret`, an API token or app
    /// password) charged to the user `username`. Several secrets of one
    /// user share its allowance. Adding revoked credentials again makes
    /// them valid.
    ///
    /// # Panics
    ///
    /// Panics if no user has that name.
    pub fn add_api_token(&self, username: &str, secret: &str) {
        let mut state = self.shared.state.lock();
        let key = username.to_lowercase();
        assert!(
            state.principals.contains_key(&key) && key != ANONYMOUS,
            "unknown user {username:?}: call add_user first"
        );
        let entry = CredentialEntry {
            scheme: Scheme::Basic,
            principal: key,
            revoked: false,
        };
        state
            .credentials
            .insert(format!("{username}:{secret}"), entry);
    }

    /// Registers an access token (bearer) with an allowance of its own,
    /// under `name`, which names it in the other controls.
    ///
    /// # Panics
    ///
    /// Panics if a principal of that name exists.
    pub fn add_access_token(&self, name: &str, secret: &str, allowance: Allowance) {
        let principal = Principal::new(name, PrincipalKind::AccessToken, allowance);
        let mut state = self.shared.state.lock();
        state.add_principal(name.to_owned(), principal);
        let entry = CredentialEntry {
            scheme: Scheme::Bearer,
            principal: name.to_owned(),
            revoked: false,
        };
        state.credentials.insert(secret.to_owned(), entry);
    }

    /// Revokes a credential (a bearer token, or `username:secret`), so later
    /// requests with it get 401.
    pub fn revoke_token(&self, credential: &str) {
        if let Some(entry) = self.shared.state.lock().credentials.get_mut(credential) {
            entry.revoked = true;
        }
    }

    /// Generates `count` more repositories in a workspace, creating it if needed.
    pub fn add_repositories(&self, workspace: &str, count: usize) {
        let mut state = self.shared.state.lock();
        state
            .workspaces
            .entry(workspace.to_lowercase())
            .or_insert_with(|| Workspace::new(workspace))
            .generate(count);
    }

    /// Returns the slugs of a workspace's repositories in listing order.
    pub fn repository_names(&self, workspace: &str) -> Vec<String> {
        let state = self.shared.state.lock();
        state
            .workspaces
            .get(&workspace.to_lowercase())
            .map(|entry| entry.repositories.iter().map(|r| r.slug.clone()).collect())
            .unwrap_or_default()
    }

    /// Leaves `remaining` requests in a principal's window, as if another
    /// program had spent the rest just now. `principal` is a username, an
    /// access token's name, or `anonymous`.
    ///
    /// # Panics
    ///
    /// Panics on an unknown principal.
    pub fn set_remaining(&self, principal: &str, remaining: u64) {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state
            .expect_principal(principal)
            .set_remaining(now_ms, remaining);
    }

    /// Spends the rest of a principal's window out of the client's sight.
    ///
    /// # Panics
    ///
    /// Panics on an unknown principal.
    pub fn drain(&self, principal: &str) {
        self.set_remaining(principal, 0);
    }

    /// Returns the requests left in a principal's window now.
    ///
    /// # Panics
    ///
    /// Panics on an unknown principal.
    pub fn remaining(&self, principal: &str) -> u64 {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state.expect_principal(principal).remaining(now_ms)
    }

    /// Returns when the oldest request in a principal's window leaves it,
    /// which frees one unit, in epoch milliseconds. With an empty window,
    /// one window from now.
    ///
    /// # Panics
    ///
    /// Panics on an unknown principal.
    pub fn reset_at(&self, principal: &str) -> u64 {
        let now_ms = self.shared.clock.now_ms();
        let mut state = self.shared.state.lock();
        state.expect_principal(principal).reset_ms(now_ms)
    }

    /// Makes every request to `path` (below `/2.0`, such as
    /// `/repositories/ws/repo/hooks`) respond with 403 `Forbidden`, Bitbucket's
    /// refusal for a missing scope. The request still counts against the
    /// window.
    pub fn forbid(&self, path: &str) {
        self.shared.state.lock().forbidden.insert(path.to_owned());
    }

    /// Makes the next `count` requests, whatever their credential, fail with 500.
    pub fn inject_server_errors(&self, count: u32) {
        let mut state = self.shared.state.lock();
        state.server_errors = state.server_errors.saturating_add(count);
    }

    /// Makes the next `count` requests of a principal get 429 with budget
    /// left, as Bitbucket throttles for reasons it does not state.
    ///
    /// # Panics
    ///
    /// Panics on an unknown principal.
    pub fn inject_throttles(&self, principal: &str, count: u32) {
        let mut state = self.shared.state.lock();
        let principal = state.expect_principal(principal);
        principal.injected_throttles = principal.injected_throttles.saturating_add(count);
    }

    /// Returns the credential the last request carried: the bearer token,
    /// or `username:secret` decoded from basic credentials. `None` when it
    /// carried none or a malformed one.
    pub fn last_credential(&self) -> Option<String> {
        self.shared.state.lock().last_credential.clone()
    }

    /// Returns the number of requests that carried `credential` (a bearer
    /// token, or `username:secret`), whatever the response.
    pub fn requests_by_token(&self, credential: &str) -> u64 {
        let state = self.shared.state.lock();
        state
            .counters
            .by_credential
            .get(credential)
            .copied()
            .unwrap_or(0)
    }

    /// Returns the number of requests received.
    pub fn total_requests(&self) -> u64 {
        self.shared.state.lock().counters.total
    }

    /// Returns the number of 2xx responses.
    pub fn successful_requests(&self) -> u64 {
        self.shared.state.lock().counters.successful
    }

    /// Returns the number of 429 responses to requests that found their window full.
    pub fn over_limit_responses(&self) -> u64 {
        self.shared.state.lock().counters.over_limit
    }

    /// Returns the number of injected 429 responses.
    pub fn injected_throttle_responses(&self) -> u64 {
        self.shared.state.lock().counters.injected_throttles
    }

    /// Returns the number of 401 responses.
    pub fn unauthorized_responses(&self) -> u64 {
        self.shared.state.lock().counters.unauthorized
    }

    /// Returns the number of injected 500 responses.
    pub fn server_error_responses(&self) -> u64 {
        self.shared.state.lock().counters.server_errors
    }
}

impl fmt::Debug for BitbucketSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitbucketSimulator")
            .field("uri", &self.uri())
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}
