//! A token pool and client over the GitLab simulator, on a manual clock.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokenfleet_client::{default_http, Client, ReqwestTransport};
use tokenfleet_core::{ManualClock, Token, TokenPool, TokenSnapshot, WaitPolicy};
use tokenfleet_gitlab::Gitlab;
use tokenfleet_testkit::{GitlabSimulator, GitlabSimulatorBuilder};

/// Starts a simulator whose clock reads `start_ms`.
pub(crate) async fn simulator(
    builder: GitlabSimulatorBuilder,
    start_ms: u64,
) -> (GitlabSimulator, ManualClock) {
    let clock = ManualClock::new(start_ms);
    let sim = builder.clock(Arc::new(clock.clone())).start().await;
    (sim, clock)
}

/// Returns the provider configured for the simulator.
pub(crate) fn provider(sim: &GitlabSimulator) -> Gitlab {
    Gitlab::with_base_url(sim.uri().parse().expect("the simulator URI parses"))
}

/// Builds a client over a rate-aware pool of `tokens` on `clock`.
pub(crate) fn client(
    clock: &ManualClock,
    provider: Gitlab,
    tokens: Vec<Token>,
    wait: WaitPolicy,
) -> Client {
    let pool = TokenPool::builder(Arc::new(provider))
        .tokens(tokens)
        .strategy(Arc::new(tokenfleet_rate_aware::RateAware::default()))
        .clock(Arc::new(clock.clone()))
        .transport(Arc::new(ReqwestTransport::new(
            default_http().expect("the HTTP client builds"),
        )))
        .wait(wait)
        .seed(7)
        .build()
        .expect("the pool builds");
    Client::builder()
        .backoff(Duration::from_millis(10))
        .seed(7)
        .build(pool)
        .expect("the client builds")
}

/// Returns the pool's snapshot of `token`.
pub(crate) async fn snapshot(client: &Client, token: &Token) -> TokenSnapshot {
    client
        .pool()
        .tokens()
        .await
        .into_iter()
        .find(|snapshot| snapshot.id == *token.id())
        .expect("every token of the pool has a snapshot")
}
