//! Plugins defined outside the library: loaded from TOML by their `type`,
//! and contained when they panic or return nonsense.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use tokenfleet::core::{Candidate, ChoiceContext, ResponseView, Token, Verdict};
use tokenfleet::github::Github;
use tokenfleet::{Bucket, ClientError, Error, Fleet, Provider, RotationStrategy};
use tokenfleet_testkit::AccountLimits;
use url::Url;

use crate::support::{clock, simulator, CANARY};

/// A strategy that fails on its first call, in the way `mode` names, and
/// picks the first candidate after that.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FlakyStrategy {
    mode: String,
    #[serde(skip)]
    failed: AtomicBool,
}

#[typetag::serde(name = "flaky_test")]
impl RotationStrategy for FlakyStrategy {
    fn name(&self) -> &'static str {
        "flaky_test"
    }

    fn choose(&self, candidates: &[Candidate], _context: &ChoiceContext) -> Option<usize> {
        if !self.failed.swap(true, Ordering::SeqCst) {
            match self.mode.as_str() {
                "panic" => panic!("flaky strategy panics on purpose"),
                "out_of_range" => return Some(candidates.len() + 5),
                "decline" => return None,
                _ => {}
            }
        }
        Some(0)
    }
}

/// A GitHub provider that panics when it classifies a 404.
#[derive(Debug, Serialize, Deserialize)]
struct PanickyGithub {
    inner: Github,
}

#[typetag::serde(name = "panicky_github_test")]
#[async_trait::async_trait]
impl Provider for PanickyGithub {
    fn kind(&self) -> &'static str {
        "panicky_github_test"
    }

    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }

    fn default_bucket(&self) -> Bucket {
        self.inner.default_bucket()
    }

    fn bucket_for(&self, method: &Method, url: &Url) -> Bucket {
        self.inner.bucket_for(method, url)
    }

    fn authorize(&self, headers: &mut HeaderMap, token: &Token) {
        self.inner.authorize(headers, token);
    }

    fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        assert_ne!(response.status, 404, "panicky provider panics on purpose");
        self.inner.classify(response)
    }

    async fn probe(
        &self,
        _token: &Token,
        _transport: &dyn tokenfleet::core::Transport,
        _learn_account: bool,
    ) -> Result<tokenfleet::core::Probe, tokenfleet::core::ProbeError> {
        panic!("panicky provider's status request panics on purpose");
    }
}

/// Starts a simulator with one account and builds a fleet from TOML that
/// names `strategy` and `provider_type`.
async fn fleet_from_toml(
    strategy: &str,
    provider_type: &str,
) -> (tokenfleet_testkit::GithubSimulator, Fleet) {
    let clock = clock();
    let sim = simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token(CANARY, "alice");
    let provider_table = if provider_type == "github" {
        format!("type = \"github\"\nbase_url = \"{}\"", sim.uri())
    } else {
        format!(
            "type = \"{provider_type}\"\ninner = {{ base_url = \"{}\" }}",
            sim.uri()
        )
    };
    let text = format!(
        "[strategy]\n{strategy}\n\n[[providers]]\n{provider_table}\n\
         tokens = [{{ value = \"{CANARY}\", account = \"alice\" }}]\n"
    );
    let base = Fleet::builder().clock(Arc::new(clock));
    let config = tokenfleet::config::parse(&text, "plugins.toml").expect("the config parses");
    let fleet = Fleet::from_config(config, base).expect("the fleet builds");
    (sim, fleet)
}

fn client(fleet: &Fleet) -> &tokenfleet::Client {
    let name = fleet.providers()[0].to_owned();
    fleet.client(&name).expect("the fleet has one provider")
}

#[tokio::test]
async fn panicking_strategy_is_named_and_pool_recovers() {
    let (_sim, fleet) = fleet_from_toml("type = \"flaky_test\"\nmode = \"panic\"", "github").await;

    let error = client(&fleet)
        .get("/user")
        .await
        .expect_err("the strategy panics");
    let ClientError::Pool(Error::Strategy { strategy, message }) = &error else {
        panic!("expected a strategy error, got {error}");
    };
    assert_eq!(strategy, "flaky_test");
    assert!(message.contains("panicked"), "{message}");
    assert!(error.to_string().contains("flaky_test"), "{error}");

    let response = client(&fleet)
        .get("/user")
        .await
        .expect("the pool still serves");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn out_of_range_choice_is_named() {
    let (_sim, fleet) =
        fleet_from_toml("type = \"flaky_test\"\nmode = \"out_of_range\"", "github").await;

    let error = client(&fleet)
        .get("/user")
        .await
        .expect_err("the choice is invalid");
    let ClientError::Pool(Error::Strategy { strategy, message }) = &error else {
        panic!("expected a strategy error, got {error}");
    };
    assert_eq!(strategy, "flaky_test");
    assert!(message.contains("position 6 among 1"), "{message}");

    let response = client(&fleet)
        .get("/user")
        .await
        .expect("the pool still serves");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn panicking_provider_is_named_and_pool_recovers() {
    let (sim, fleet) = fleet_from_toml("type = \"rate_aware\"", "panicky_github_test").await;

    let error = client(&fleet)
        .get("/no/such/path")
        .await
        .expect_err("the provider panics on a 404");
    let ClientError::Plugin { plugin, message } = &error else {
        panic!("expected a plugin error, got {error}");
    };
    assert_eq!(plugin, "panicky_github_test");
    assert!(message.contains("classifying a response"), "{message}");
    assert!(!error.to_string().contains(CANARY));

    let response = client(&fleet)
        .get("/user")
        .await
        .expect("the pool still serves");
    assert_eq!(response.status(), 200);
    // The request whose verdict was lost still counts as spent.
    assert_eq!(sim.remaining("alice", "core"), 4998);
    let tokens = fleet.tokens("panicky_github_test").await;
    assert!(tokens[0].status.is_available(), "{}", tokens[0].status);
    // The status request panicked too; that is recorded, not fatal.
    let probe_error = tokens[0].probe_error.as_deref().unwrap_or_default();
    assert!(
        probe_error.contains("panicky_github_test provider panicked"),
        "{probe_error}"
    );
}
