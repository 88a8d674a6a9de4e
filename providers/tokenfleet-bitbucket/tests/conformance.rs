//! The provider conformance suite against the Bitbucket simulator, once
//! with access tokens (bearer) and once with API tokens (basic).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenfleet_bitbucket::{AuthScheme, Bitbucket};
use tokenfleet_core::provider::SharedProvider;
use tokenfleet_core::{Clock, Token, TokenId};
use tokenfleet_testkit::bitbucket::Allowance;
use tokenfleet_testkit::conformance::{Capabilities, Harness};
use tokenfleet_testkit::BitbucketSimulator;

const HOUR: Duration = Duration::from_secs(3_600);

/// The workspace that bearer-auth sample requests list.
const SAMPLE_WORKSPACE: &str = "conformance-sample";

/// A Bitbucket simulator driven by the suite. `BASIC` selects API tokens
/// sent as `username:secret`, else access tokens sent as bearer tokens.
struct BitbucketHarness<const BASIC: bool> {
    simulator: BitbucketSimulator,
    provider: Arc<Bitbucket>,
    budget: u64,
    next: AtomicUsize,
    /// The simulator principal of every token the harness added.
    principals: Mutex<HashMap<TokenId, String>>,
}

impl<const BASIC: bool> BitbucketHarness<BASIC> {
    fn principal(&self, token: &Token) -> String {
        self.principals
            .lock()
            .unwrap()
            .get(token.id())
            .cloned()
            .expect("the harness added this token")
    }
}

#[async_trait::async_trait]
impl<const BASIC: bool> Harness for BitbucketHarness<BASIC> {
    async fn start(clock: Arc<dyn Clock>, budget: u64) -> Self {
        let simulator = BitbucketSimulator::builder().clock(clock).start().await;
        simulator.add_repositories(SAMPLE_WORKSPACE, 3);

        let auth = if BASIC {
            AuthScheme::Basic
        } else {
            AuthScheme::Bearer
        };
        let base_url = simulator.uri().parse().expect("the simulator URI parses");
        // The configured limit is the suite's budget, so the budget is
        // known from the first response on.
        let provider = Bitbucket::with_base_url(base_url)
            .auth(auth)
            .limit(NonZeroU64::new(budget).expect("the suite's budget is not zero"));
        Self {
            simulator,
            provider: Arc::new(provider),
            budget,
            next: AtomicUsize::new(0),
            principals: Mutex::new(HashMap::new()),
        }
    }

    fn provider(&self) -> SharedProvider {
        Arc::clone(&self.provider) as SharedProvider
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            budget_known_in_advance: true,
        }
    }

    fn add_token(&self) -> Token {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let allowance = Allowance::new(self.budget, HOUR);
        let (principal, token) = if BASIC {
            let user = format!("conformance-user-{n}");
            let secret = format!("ATATT3x_conformance{n:020}");
            self.simulator.add_user(&user, allowance);
            self.simulator.add_api_token(&user, &secret);
            // The account is learned from the username, not declared.
            (user.clone(), Token::new(format!("{user}:{secret}")))
        } else {
            let name = format!("conformance-{n}");
            let secret = format!("ATCTT3x_conformance{n:020}");
            self.simulator.add_access_token(&name, &secret, allowance);
            (name, Token::new(secret))
        };
        self.principals
            .lock()
            .unwrap()
            .insert(token.id().clone(), principal);
        token
    }

    fn drain(&self, token: &Token) {
        self.simulator.drain(&self.principal(token));
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
            .map(|slug| format!("{owner}/{slug}"))
            .collect()
    }

    fn sample_path(&self) -> String {
        if BASIC {
            "/user".to_owned()
        } else {
            // Access tokens get `X-RateLimit-Limit` here.
            format!("/repositories/{SAMPLE_WORKSPACE}?pagelen=1")
        }
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
        self.simulator.reset_at(&self.principal(token))
    }
}

mod bearer {
    type BearerHarness = super::BitbucketHarness<false>;

    tokenfleet_testkit::conformance_suite!(BearerHarness);
}

mod basic {
    type BasicHarness = super::BitbucketHarness<true>;

    tokenfleet_testkit::conformance_suite!(BasicHarness);
}
