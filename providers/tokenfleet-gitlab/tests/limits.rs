//! End-to-end behaviour of GitLab throttles through a pool and client.

mod support;

use std::time::Duration;

use futures::future::join_all;
use http::StatusCode;
use tokenfleet_client::ClientError;
use tokenfleet_core::{Clock, Error, LimitKind, Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::gitlab::Throttle;
use tokenfleet_testkit::GitlabSimulator;

use support::{client, provider, simulator, snapshot};

/// 2023-11-14T22:14:00Z, the start of a minute window.
const MINUTE_START_MS: u64 = 1_700_000_040_000;

/// 22:50:00Z, 600 s before the hour window ends at 23:00:00Z.
const HOUR_END_MINUS_600_MS: u64 = 1_700_002_200_000;

/// 23:00:00Z, when the hour window of [`HOUR_END_MINUS_600_MS`] ends.
const HOUR_END_MS: u64 = 1_700_002_800_000;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn concurrent_tasks_spend_exact_budget() {
    const BUDGET: u64 = 10;
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let secret = format!("glpat-{name}");
        sim.add_account(name, Throttle::new(BUDGET, MINUTE));
        sim.add_token(&secret, name);
        tokens.push(Token::new(secret));
    }
    let client = client(&clock, provider(&sim), tokens, WaitPolicy::Fail);

    let results = join_all((0..64).map(|_| client.get("/user"))).await;

    let served = results
        .iter()
        .filter(|result| matches!(result, Ok(response) if response.status() == StatusCode::OK))
        .count();
    assert_eq!(served as u64, 2 * BUDGET);
    for result in &results {
        if let Err(error) = result {
            assert!(
                matches!(error, ClientError::Pool(Error::Exhausted(_))),
                "unexpected error {error}"
            );
        }
    }
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(sim.total_requests(), 2 * BUDGET);
}

#[tokio::test]
async fn learned_accounts_share_budget() {
    const BUDGET: u64 = 10;
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    sim.add_account("alice", Throttle::new(BUDGET, MINUTE));
    sim.add_account("bob", Throttle::new(BUDGET, MINUTE));
    sim.add_token("glpat-alice-1", "alice");
    sim.add_token("glpat-alice-2", "alice");
    sim.add_token("glpat-bob", "bob");
    let tokens = vec![
        Token::new("glpat-alice-1"),
        Token::new("glpat-alice-2"),
        Token::new("glpat-bob"),
    ];
    let provider = provider(&sim).learn_account(true);
    let client = client(&clock, provider, tokens.clone(), WaitPolicy::Fail);

    let results = join_all((0..64).map(|_| client.get("/user"))).await;

    // Each of the three probes spent one request of its user's budget.
    let served = results.iter().filter(|result| result.is_ok()).count() as u64;
    assert_eq!(served, 2 * BUDGET - 3);
    assert_eq!(sim.successful_requests(), 2 * BUDGET);
    assert_eq!(sim.over_limit_responses(), 0);

    let first = snapshot(&client, &tokens[0]).await;
    let second = snapshot(&client, &tokens[1]).await;
    let third = snapshot(&client, &tokens[2]).await;
    assert_eq!(first.account, "gitlab-user:1000");
    assert_eq!(second.account, "gitlab-user:1000");
    assert_eq!(third.account, "gitlab-user:1001");
}

#[tokio::test]
async fn unlearned_tokens_probe_nothing() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    sim.add_account("alice", Throttle::default());
    sim.add_token("glpat-alice", "alice");
    let client = client(
        &clock,
        provider(&sim),
        vec![Token::new("glpat-alice")],
        WaitPolicy::Fail,
    );

    let response = client.get("/user").await.expect("the request succeeds");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.total_requests(), 1);
}

/// Starts the simulator 600 s before its hour window ends, without
/// `Retry-After` on throttled responses, with users alice and bob.
async fn hour_window_without_retry_after() -> (GitlabSimulator, tokenfleet_core::ManualClock) {
    let builder = GitlabSimulator::builder().omit_header("retry-after");
    let (sim, clock) = simulator(builder, HOUR_END_MINUS_600_MS).await;
    for name in ["alice", "bob"] {
        sim.add_account(name, Throttle::self_managed());
        sim.add_token(&format!("glpat-{name}"), name);
    }
    (sim, clock)
}

#[tokio::test]
async fn throttle_reset_rotates_to_other_user() {
    let (sim, clock) = hour_window_without_retry_after().await;
    let alice = Token::new("glpat-alice");
    let bob = Token::new("glpat-bob");
    let client = client(&clock, provider(&sim), vec![bob.clone()], WaitPolicy::Fail);
    client
        .get("/users/1000")
        .await
        .expect("bob's first request");

    // Alice is spent out of sight. As an unknown budget, she is tried first.
    sim.drain("alice");
    client.pool().add_token(alice.clone());
    let response = client.get("/users/1000").await.expect("bob serves");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.token(), Some(bob.id()));
    assert_eq!(sim.requests_by_token("glpat-alice"), 1);
    assert_eq!(sim.over_limit_responses(), 1);
    match snapshot(&client, &alice).await.status {
        TokenStatus::RateLimited { until_ms, kind, .. } => {
            assert_eq!(until_ms, HOUR_END_MS);
            assert_eq!(kind, LimitKind::Primary);
        }
        other => panic!("alice is {other}, expected rate-limited"),
    }
}

#[tokio::test]
async fn throttle_reset_is_waited_for() {
    let (sim, clock) = hour_window_without_retry_after().await;
    sim.drain("alice");
    let wait = WaitPolicy::UpTo(Duration::from_secs(15 * 60));
    let client = client(
        &clock,
        provider(&sim),
        vec![Token::new("glpat-alice")],
        wait,
    );

    let response = client
        .get("/users/1000")
        .await
        .expect("the request succeeds after the reset");

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        clock.now_ms() >= HOUR_END_MS,
        "served before the window ended"
    );
    assert_eq!(sim.requests_by_token("glpat-alice"), 2);
    assert_eq!(sim.over_limit_responses(), 1);
}

#[tokio::test]
async fn throttle_reset_is_named_when_failing() {
    let (sim, clock) = hour_window_without_retry_after().await;
    sim.drain("alice");
    let alice = Token::new("glpat-alice");
    let client = client(
        &clock,
        provider(&sim),
        vec![alice.clone()],
        WaitPolicy::Fail,
    );

    let error = client.get("/users/1000").await.expect_err("alice is spent");

    assert_eq!(error_reset(&error), Some(HOUR_END_MS));
    assert!(matches!(
        snapshot(&client, &alice).await.status,
        TokenStatus::RateLimited { .. }
    ));

    clock.advance_to(HOUR_END_MS + 1_000);
    let response = client.get("/users/1000").await.expect("budget is back");
    assert_eq!(response.status(), StatusCode::OK);
}

fn error_reset(error: &ClientError) -> Option<u64> {
    match error {
        ClientError::Pool(error @ Error::Exhausted(_)) => error.earliest_reset_ms(),
        other => panic!("expected an exhaustion error, got {other}"),
    }
}

#[tokio::test]
async fn reset_time_date_alone_suffices() {
    // Both users are spent 5 s before the minute ends, and throttled
    // responses state the reset only as an HTTP date.
    let start_ms = MINUTE_START_MS + 55_000;
    let reset_ms = MINUTE_START_MS + 60_000;
    let builder = GitlabSimulator::builder()
        .omit_header("retry-after")
        .omit_header("ratelimit-reset");
    let (sim, clock) = simulator(builder, start_ms).await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        sim.add_account(name, Throttle::default());
        sim.add_token(&format!("glpat-{name}"), name);
        sim.drain(name);
        tokens.push(Token::new(format!("glpat-{name}")));
    }
    let client = client(&clock, provider(&sim), tokens.clone(), WaitPolicy::Fail);

    let error = client.get("/user").await.expect_err("both users are spent");

    assert_eq!(error_reset(&error), Some(reset_ms));
    for token in &tokens {
        let status = snapshot(&client, token).await.status;
        assert!(
            matches!(status, TokenStatus::RateLimited { .. }),
            "{status}"
        );
    }

    clock.advance_to(start_ms + 7_000);
    let response = client.get("/user").await.expect("the pool serves again");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.over_limit_responses(), 2);
}

#[tokio::test]
async fn reset_time_date_is_waited_for() {
    let start_ms = MINUTE_START_MS + 55_000;
    let builder = GitlabSimulator::builder()
        .omit_header("retry-after")
        .omit_header("ratelimit-reset");
    let (sim, clock) = simulator(builder, start_ms).await;
    sim.add_account("alice", Throttle::default());
    sim.add_token("glpat-alice", "alice");
    sim.drain("alice");
    let wait = WaitPolicy::UpTo(Duration::from_secs(60));
    let client = client(
        &clock,
        provider(&sim),
        vec![Token::new("glpat-alice")],
        wait,
    );

    let response = client.get("/user").await.expect("served after the reset");

    assert_eq!(response.status(), StatusCode::OK);
    assert!(clock.now_ms() >= MINUTE_START_MS + 60_000);
    assert!(
        clock.now_ms() < MINUTE_START_MS + 120_000,
        "waited a whole extra window"
    );
}

#[tokio::test]
async fn application_limit_cools_down_with_backoff() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    sim.add_account("alice", Throttle::default());
    sim.add_token("glpat-alice", "alice");
    sim.inject_application_limit("alice", 2);
    let alice = Token::new("glpat-alice");
    let wait = WaitPolicy::UpTo(Duration::from_secs(10 * 60));
    let client = client(&clock, provider(&sim), vec![alice.clone()], wait);

    let response = client
        .get("/users/alice/projects")
        .await
        .expect("served in the end");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.application_limit_responses(), 2);
    assert_eq!(sim.requests_by_token("glpat-alice"), 3);
    // A first cooldown of 60 s, then a longer second one.
    let waited_ms = clock.now_ms() - MINUTE_START_MS;
    assert!(waited_ms >= 180_000, "waited only {waited_ms} ms");
    assert!(snapshot(&client, &alice).await.status.is_available());
}

#[tokio::test]
async fn application_limit_rotates_to_other_user() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    for name in ["alice", "bob"] {
        sim.add_account(name, Throttle::default());
        sim.add_token(&format!("glpat-{name}"), name);
    }
    let alice = Token::new("glpat-alice");
    let bob = Token::new("glpat-bob");
    let client = client(&clock, provider(&sim), vec![bob.clone()], WaitPolicy::Fail);
    client.get("/user").await.expect("bob's first request");

    sim.inject_application_limit("alice", 1);
    client.pool().add_token(alice.clone());
    let response = client
        .get("/users/alice/projects")
        .await
        .expect("bob serves");

    assert_eq!(response.token(), Some(bob.id()));
    assert_eq!(clock.now_ms(), MINUTE_START_MS, "the rotation waited");
    match snapshot(&client, &alice).await.status {
        TokenStatus::RateLimited { kind, .. } => assert_eq!(kind, LimitKind::Secondary),
        other => panic!("alice is {other}, expected a cooldown"),
    }
}

#[tokio::test]
async fn revoked_token_rotates_once() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    for name in ["alice", "bob"] {
        sim.add_account(name, Throttle::default());
        sim.add_token(&format!("glpat-{name}"), name);
    }
    let alice = Token::new("glpat-alice");
    let bob = Token::new("glpat-bob");
    let client = client(&clock, provider(&sim), vec![bob.clone()], WaitPolicy::Fail);
    client.get("/user").await.expect("bob's first request");
    sim.expire_token("glpat-alice");
    client.pool().add_token(alice.clone());

    for _ in 0..5 {
        let response = client.get("/user").await.expect("bob serves");
        assert_eq!(response.token(), Some(bob.id()));
    }

    assert_eq!(sim.requests_by_token("glpat-alice"), 1);
    assert_eq!(snapshot(&client, &alice).await.status, TokenStatus::Invalid);
}

#[tokio::test]
async fn invalid_token_excluded_at_start() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    sim.add_account("alice", Throttle::default());
    sim.add_token("glpat-alice", "alice");
    sim.add_token("glpat-old", "alice");
    sim.revoke_token("glpat-old");
    let old = Token::new("glpat-old");
    let provider = provider(&sim).learn_account(true);
    let client = client(
        &clock,
        provider,
        vec![old.clone(), Token::new("glpat-alice")],
        WaitPolicy::Fail,
    );

    for _ in 0..3 {
        client.get("/user").await.expect("the valid token serves");
    }

    assert_eq!(snapshot(&client, &old).await.status, TokenStatus::Invalid);
    assert_eq!(sim.requests_by_token("glpat-old"), 1);
}

#[tokio::test]
async fn all_invalid_tokens_fail_clearly() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    let provider = provider(&sim).learn_account(true);
    let client = client(
        &clock,
        provider,
        vec![Token::new("glpat-unknown")],
        WaitPolicy::Fail,
    );

    let error = client.get("/user").await.expect_err("no token is valid");

    assert!(
        matches!(error, ClientError::Pool(Error::AllInvalid { .. })),
        "expected every token to be invalid, got {error}"
    );
}

#[tokio::test]
async fn server_error_is_retried() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    sim.add_account("alice", Throttle::default());
    sim.add_token("glpat-alice", "alice");
    sim.inject_server_errors(1);
    let alice = Token::new("glpat-alice");
    let client = client(
        &clock,
        provider(&sim),
        vec![alice.clone()],
        WaitPolicy::Fail,
    );

    let response = client.get("/user").await.expect("the retry succeeds");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.total_requests(), 2);
    assert!(snapshot(&client, &alice).await.status.is_available());
}

#[tokio::test]
async fn forbidden_is_returned_unrotated() {
    let (sim, clock) = simulator(GitlabSimulator::builder(), MINUTE_START_MS).await;
    for name in ["alice", "bob"] {
        sim.add_account(name, Throttle::default());
        sim.add_token(&format!("glpat-{name}"), name);
    }
    sim.forbid("/projects/1/variables");
    let tokens = vec![Token::new("glpat-alice"), Token::new("glpat-bob")];
    let client = client(&clock, provider(&sim), tokens.clone(), WaitPolicy::Fail);

    let response = client
        .get("/projects/1/variables")
        .await
        .expect("the refusal is a response");

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(sim.total_requests(), 1);
    for token in &tokens {
        assert!(snapshot(&client, token).await.status.is_available());
    }
}

#[tokio::test]
async fn older_gitlab_without_headers_serves() {
    // Without headers on unthrottled responses, the budget shows only in
    // the first 429 of each window.
    let builder = GitlabSimulator::builder().headers_on_every_response(false);
    let (sim, clock) = simulator(builder, MINUTE_START_MS).await;
    sim.add_account("alice", Throttle::new(5, MINUTE));
    sim.add_token("glpat-alice", "alice");
    let alice = Token::new("glpat-alice");
    let client = client(
        &clock,
        provider(&sim),
        vec![alice.clone()],
        WaitPolicy::Fail,
    );

    let mut served = 0;
    let error = loop {
        match client.get("/user").await {
            Ok(_) => served += 1,
            Err(error) => break error,
        }
        assert!(served <= 5, "served past the budget");
    };

    assert_eq!(served, 5);
    assert_eq!(sim.over_limit_responses(), 1);
    assert_eq!(error_reset(&error), Some(MINUTE_START_MS + 60_000));
}

#[tokio::test]
async fn older_gitlab_under_concurrency_meets_one_throttle_per_user() {
    // Responses without headers do not mean "no limit": the pool keeps one
    // request per user in flight until a 429 states the budget.
    let builder = GitlabSimulator::builder().headers_on_every_response(false);
    let (sim, clock) = simulator(builder, MINUTE_START_MS).await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let secret = format!("glpat-{name}");
        sim.add_account(name, Throttle::new(2, MINUTE));
        sim.add_token(&secret, name);
        tokens.push(Token::new(secret));
    }
    let client = client(&clock, provider(&sim), tokens, WaitPolicy::Fail);

    let results = join_all((0..20).map(|_| client.get("/user"))).await;

    let served = results
        .iter()
        .filter(|result| matches!(result, Ok(response) if response.status() == StatusCode::OK))
        .count();
    assert_eq!(served, 4);
    assert_eq!(sim.over_limit_responses(), 2, "one discovery 429 per user");
}
