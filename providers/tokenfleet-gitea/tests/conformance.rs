//! The provider conformance suite against the Gitea simulator, with the
//! proxy limiter on so that the suite's budgets apply.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenfleet_core::provider::SharedProvider;
use tokenfleet_core::{Clock, Token};
use tokenfleet_gitea::Gitea;
use tokenfleet_testkit::conformance::{Capabilities, Harness};
use tokenfleet_testkit::GiteaSimulator;

/// The proxy's window in the suite.
const WINDOW: Duration = Duration::from_secs(600);

struct GiteaHarness {
    simulator: GiteaSimulator,
    budget: u64,
    next: AtomicUsize,
}

impl GiteaHarness {
    /// Returns the login of the account a conformance token belongs to.
    fn login(&self, token: &Token) -> String {
        self.simulator
            .token_account(token.secret())
            .expect("conformance tokens are registered")
    }
}

#[async_trait::async_trait]
impl Harness for GiteaHarness {
    async fn start(clock: Arc<dyn Clock>, budget: u64) -> Self {
        let simulator = GiteaSimulator::builder().clock(clock).start().await;
        Self {
            simulator,
            budget,
            next: AtomicUsize::new(0),
        }
    }

    fn provider(&self) -> SharedProvider {
        Arc::new(Gitea::with_base_url(
            self.simulator
                .uri()
                .parse()
                .expect("the simulator URI parses"),
        ))
    }

    fn capabilities(&self) -> Capabilities {
        // The proxy states no budget, so the pool learns it only from a 429.
        Capabilities {
            budget_known_in_advance: false,
        }
    }

    fn add_token(&self) -> Token {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let login = format!("conformance-{n}");
        let secret = format!("gta_conformance{n:026}");
        self.simulator.add_account(&login);
        self.simulator.limit_account(&login, self.budget, WINDOW);
        self.simulator.add_token(&secret, &login);
        // The account is left to the probe, which learns it from `GET /user`.
        Token::new(secret)
    }

    fn drain(&self, token: &Token) {
        self.simulator.drain(&self.login(token));
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
        self.simulator
            .reset_at_ms(&self.login(token))
            .expect("conformance accounts have a proxy limit")
    }
}

tokenfleet_testkit::conformance_suite!(GiteaHarness);
