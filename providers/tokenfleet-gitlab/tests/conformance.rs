//! The provider conformance suite against the GitLab simulator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenfleet_core::provider::SharedProvider;
use tokenfleet_core::{Clock, Token};
use tokenfleet_gitlab::{AuthScheme, Gitlab};
use tokenfleet_testkit::conformance::{Capabilities, Harness};
use tokenfleet_testkit::gitlab::Throttle;
use tokenfleet_testkit::GitlabSimulator;

/// The simulator, with tokens sent as `Authorization: Bearer` when
/// `BEARER` is true and in `PRIVATE-TOKEN` otherwise.
struct GitlabHarness<const BEARER: bool> {
    simulator: GitlabSimulator,
    budget: u64,
    next: AtomicUsize,
}

impl<const BEARER: bool> GitlabHarness<BEARER> {
    /// Returns the username of the user a conformance token belongs to.
    fn username(token: &Token) -> &str {
        token
            .account()
            .expect("conformance tokens declare their account")
    }
}

#[async_trait::async_trait]
impl<const BEARER: bool> Harness for GitlabHarness<BEARER> {
    async fn start(clock: Arc<dyn Clock>, budget: u64) -> Self {
        let simulator = GitlabSimulator::builder().clock(clock).start().await;
        Self {
            simulator,
            budget,
            next: AtomicUsize::new(0),
        }
    }

    fn provider(&self) -> SharedProvider {
        let auth = if BEARER {
            AuthScheme::Bearer
        } else {
            AuthScheme::PrivateToken
        };
        let base_url = self
            .simulator
            .uri()
            .parse()
            .expect("the simulator URI parses");
        Arc::new(Gitlab::with_base_url(base_url).auth(auth))
    }

    fn capabilities(&self) -> Capabilities {
        // Every response states the budget, and the pool sends one request
        // at a time for an account until the first one does.
        Capabilities {
            budget_known_in_advance: true,
        }
    }

    fn add_token(&self) -> Token {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let username = format!("conformance-{n}");
        let secret = format!("glpat-conformance{n:016}");
        let throttle = Throttle::new(self.budget, Duration::from_secs(60));
        self.simulator.add_account(&username, throttle);
        self.simulator.add_token(&secret, &username);
        Token::new(secret).with_account(username)
    }

    fn drain(&self, token: &Token) {
        self.simulator.drain(Self::username(token));
    }

    fn revoke(&self, token: &Token) {
        self.simulator.revoke_token(token.secret());
    }

    fn forbid(&self, path: &str) {
        self.simulator.forbid(path);
    }

    fn add_repositories(&self, owner: &str, count: usize) {
        self.simulator.add_repositories(owner, count);
    }

    fn repository_names(&self, owner: &str) -> Vec<String> {
        self.simulator
            .repository_names(owner)
            .into_iter()
            .map(|name| format!("{owner}/{name}"))
            .collect()
    }

    fn sample_path(&self) -> String {
        "/user".to_owned()
    }

    fn last_credentials(&self) -> Option<String> {
        self.simulator.last_credential()
    }

    fn requests_by_token(&self, token: &Token) -> u64 {
        self.simulator.requests_by_token(token.secret())
    }

    fn successful_requests(&self) -> u64 {
        self.simulator.successful_requests()
    }

    fn total_requests(&self) -> u64 {
        self.simulator.total_requests()
    }

    fn over_limit_responses(&self) -> u64 {
        self.simulator.over_limit_responses()
    }

    fn reset_ms(&self, token: &Token) -> u64 {
        self.simulator.reset_at(Self::username(token)) * 1000
    }
}

mod private_token {
    tokenfleet_testkit::conformance_suite!(super::GitlabHarness<false>);
}

mod bearer {
    tokenfleet_testkit::conformance_suite!(super::GitlabHarness<true>);
}
