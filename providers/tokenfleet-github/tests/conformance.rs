//! The provider conformance suite against the GitHub simulator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenfleet_core::provider::SharedProvider;
use tokenfleet_core::{Clock, Token};
use tokenfleet_github::Github;
use tokenfleet_testkit::conformance::{Capabilities, Harness};
use tokenfleet_testkit::{AccountLimits, GithubSimulator};

struct GithubHarness {
    simulator: GithubSimulator,
    budget: u64,
    next: AtomicUsize,
}

impl GithubHarness {
    /// The login of the account a conformance token belongs to.
    fn login(token: &Token) -> &str {
        token
            .account()
            .expect("conformance tokens declare their account")
    }
}

#[async_trait::async_trait]
impl Harness for GithubHarness {
    async fn start(clock: Arc<dyn Clock>, budget: u64) -> Self {
        let simulator = GithubSimulator::builder().clock(clock).start().await;
        Self {
            simulator,
            budget,
            next: AtomicUsize::new(0),
        }
    }

    fn provider(&self) -> SharedProvider {
        Arc::new(Github::with_base_url(
            self.simulator
                .uri()
                .parse()
                .expect("the simulator URI parses"),
        ))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            budget_known_in_advance: true,
        }
    }

    fn add_token(&self) -> Token {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let login = format!("conformance-{n}");
        let secret = format!("ghp_conformance{n:026}");
        let limits = AccountLimits::default().core(self.budget, Duration::from_secs(3600));
        self.simulator.add_account(&login, limits);
        self.simulator.add_token(&secret, &login);
        // Declaring the account spares the `GET /user` that would learn it.
        Token::new(secret).with_account(login)
    }

    fn drain(&self, token: &Token) {
        self.simulator.set_remaining(Self::login(token), "core", 0);
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
        self.simulator.reset_at(Self::login(token), "core") * 1000
    }
}

tokenfleet_testkit::conformance_suite!(GithubHarness);
