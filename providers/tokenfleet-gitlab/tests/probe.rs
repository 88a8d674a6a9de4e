//! The probe against the GitLab simulator: when it sends `GET /user`, and
//! what it learns from the response.

mod support;

use tokenfleet_client::{default_http, ReqwestTransport};
use tokenfleet_core::{Probe, ProbeError, Provider, Token};
use tokenfleet_gitlab::{buckets, AuthScheme, Gitlab};
use tokenfleet_testkit::gitlab::Throttle;
use tokenfleet_testkit::{GitlabSimulator, GitlabSimulatorBuilder};

use support::{provider, simulator};

/// 2023-11-14T22:14:00Z, the start of a minute window.
const START_MS: u64 = 1_700_000_040_000;

const CANARY: &str = "glpat-CANARY0000000000000000";

/// Starts a simulator with user alice, whose token is [`CANARY`].
async fn start(builder: GitlabSimulatorBuilder) -> GitlabSimulator {
    let (sim, _clock) = simulator(builder, START_MS).await;
    sim.add_account("alice", Throttle::default());
    sim.add_token(CANARY, "alice");
    sim
}

async fn probe(gitlab: &Gitlab, learn_account: bool) -> Result<Probe, ProbeError> {
    let transport = ReqwestTransport::new(default_http().expect("the HTTP client builds"));
    gitlab
        .probe(&Token::new(CANARY), &transport, learn_account)
        .await
}

#[tokio::test]
async fn probe_learns_user_and_budget() {
    let sim = start(GitlabSimulator::builder()).await;
    let gitlab = provider(&sim).learn_account(true);

    let probe = probe(&gitlab, true).await.expect("the probe succeeds");

    assert_eq!(probe.account.as_deref(), Some("gitlab-user:1000"));
    assert!(!probe.account_deferred);
    assert_eq!(probe.server_date_ms, Some(START_MS));
    assert_eq!(probe.observations.len(), 1);
    let observation = &probe.observations[0];
    assert_eq!(observation.bucket, Some(buckets::API));
    assert_eq!(observation.limit, 2000);
    assert_eq!(observation.remaining, 1999);
    assert_eq!(observation.used, Some(1));
    assert_eq!(observation.reset_ms, START_MS + 60_000);
    assert_eq!(sim.remaining("alice"), 1999);
}

#[tokio::test]
async fn probe_with_bearer_auth() {
    let sim = start(GitlabSimulator::builder()).await;
    let gitlab = provider(&sim).learn_account(true).auth(AuthScheme::Bearer);

    let probe = probe(&gitlab, true).await.expect("the probe succeeds");

    assert_eq!(probe.account.as_deref(), Some("gitlab-user:1000"));
    assert_eq!(sim.last_credential().as_deref(), Some(CANARY));
}

#[tokio::test]
async fn probe_without_learning_sends_nothing() {
    let sim = start(GitlabSimulator::builder()).await;

    let off = probe(&provider(&sim), true).await;
    assert!(matches!(off, Err(ProbeError::Unsupported)), "{off:?}");

    let not_requested = probe(&provider(&sim).learn_account(true), false).await;
    assert!(
        matches!(not_requested, Err(ProbeError::Unsupported)),
        "{not_requested:?}"
    );

    assert_eq!(sim.total_requests(), 0);
}

#[tokio::test]
async fn probe_rejects_revoked_and_expired() {
    let sim = start(GitlabSimulator::builder()).await;
    let gitlab = provider(&sim).learn_account(true);

    sim.revoke_token(CANARY);
    match probe(&gitlab, true).await {
        Err(ProbeError::InvalidToken(reason)) => assert_eq!(reason, "401 Unauthorized"),
        other => panic!("expected an invalid token, got {other:?}"),
    }

    sim.expire_token(CANARY);
    match probe(&gitlab, true).await {
        Err(ProbeError::InvalidToken(reason)) => {
            assert!(reason.contains("Token is expired"), "{reason}");
            assert!(!reason.contains("CANARY"), "{reason}");
        }
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn probe_defers_spent_user() {
    let sim = start(GitlabSimulator::builder()).await;
    sim.drain("alice");
    let gitlab = provider(&sim).learn_account(true);

    let probe = probe(&gitlab, true).await.expect("the probe succeeds");

    assert_eq!(probe.account, None);
    assert!(probe.account_deferred);
    assert_eq!(probe.observations[0].remaining, 0);
    assert_eq!(probe.observations[0].reset_ms, START_MS + 60_000);
}

#[tokio::test]
async fn probe_survives_application_limit() {
    let sim = start(GitlabSimulator::builder()).await;
    sim.inject_application_limit("alice", 1);
    let gitlab = provider(&sim).learn_account(true);

    let probe = probe(&gitlab, true).await.expect("the probe succeeds");

    // No reset is stated, so waiting for one would never end: the token
    // is its own account instead.
    assert_eq!(probe.account, None);
    assert!(!probe.account_deferred);
    assert!(probe.observations.is_empty());
}

#[tokio::test]
async fn probe_survives_server_error() {
    let sim = start(GitlabSimulator::builder()).await;
    sim.inject_server_errors(1);
    let gitlab = provider(&sim).learn_account(true);

    let probe = probe(&gitlab, true).await.expect("the probe succeeds");

    assert_eq!(probe.account, None);
    assert!(!probe.account_deferred);
}
