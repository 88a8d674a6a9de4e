//! Primary limits: exhaustion, waiting for resets, separate buckets, the
//! status endpoint, GraphQL points and reset formats.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::json;
use tokenfleet::core::clock::format_epoch_ms;
use tokenfleet::{Clock, Error, LimitKind, ManualClock, Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::{AccountLimits, GithubSimulator};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    self, dated, github, id, is_exhausted, pool_error, rate_limit_body, snapshot, warm_up,
    with_limits, HOUR, START_MS,
};

/// Starts a simulator with account alice (`ghp_alice`) whose core budget is `core` per hour.
async fn alice_alone(clock: &ManualClock, core: u64) -> GithubSimulator {
    let sim = support::simulator(clock).await;
    sim.add_account("alice", AccountLimits::default().core(core, HOUR));
    sim.add_token("ghp_alice", "alice");
    sim
}

fn alice_token() -> Vec<Token> {
    vec![Token::new("ghp_alice").with_account("alice")]
}

#[tokio::test]
async fn exhausted_error_names_reset() {
    let clock = support::clock();
    let sim = alice_alone(&clock, 5).await;
    let fleet = support::fleet(&sim.uri(), alice_token(), &clock, WaitPolicy::Fail);

    for _ in 0..5 {
        github(&fleet).get("/user").await.unwrap();
    }
    let error = github(&fleet).get("/user").await.unwrap_err();

    let reset_ms = sim.reset_at("alice", "core") * 1000;
    let Error::Exhausted(exhausted) = pool_error(&error) else {
        panic!("expected exhaustion, got {error:?}");
    };
    assert_eq!(exhausted.earliest_reset_ms, Some(reset_ms));
    assert_eq!(exhausted.bucket.as_str(), "core");
    let message = error.to_string();
    assert!(message.contains(&format_epoch_ms(reset_ms)), "{message}");
    assert!(message.contains("in 3600 s"), "{message}");
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(fleet.earliest_reset_ms("github").await, Some(reset_ms));
}

#[tokio::test]
async fn waiting_policy_outlasts_reset() {
    let clock = support::clock();
    let sim = alice_alone(&clock, 5).await;
    let wait = WaitPolicy::UpTo(2 * HOUR);
    let fleet = support::fleet(&sim.uri(), alice_token(), &clock, wait);

    for _ in 0..5 {
        github(&fleet).get("/user").await.unwrap();
    }
    let reset_ms = sim.reset_at("alice", "core") * 1000;
    let response = github(&fleet).get("/user").await.unwrap();

    assert_eq!(response.status(), 200);
    assert!(clock.now_ms() >= reset_ms, "served before the reset");
    assert!(clock.now_ms() < reset_ms + 5_000, "waited too long");
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(sim.successful_requests(), 6);
}

#[tokio::test]
async fn short_wait_policy_fails_at_once() {
    let clock = support::clock();
    let sim = alice_alone(&clock, 1).await;
    let wait = WaitPolicy::UpTo(Duration::from_secs(600));
    let fleet = support::fleet(&sim.uri(), alice_token(), &clock, wait);

    github(&fleet).get("/user").await.unwrap();
    let error = github(&fleet).get("/user").await.unwrap_err();

    assert!(is_exhausted(&error), "{error}");
    assert_eq!(clock.now_ms(), START_MS, "the pool slept");
}

#[tokio::test]
async fn primary_429_rotates_to_other_account() {
    let clock = support::clock();
    let sim = GithubSimulator::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .primary_status(429)
        .start()
        .await;
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default());
        sim.add_token(&format!("ghp_{login}"), login);
    }
    sim.set_remaining("bob", "core", 4000);
    let tokens = vec![
        Token::new("ghp_alice").with_account("alice"),
        Token::new("ghp_bob").with_account("bob"),
    ];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;

    // Another program drains alice after the pool read her budget.
    sim.set_remaining("alice", "core", 0);
    let response = github(&fleet).get("/user").await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.token(), Some(&id("ghp_bob")));
    assert_eq!(response.attempts(), 2);
    assert_eq!(sim.over_limit_responses(), 1);
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(
        alice.status,
        TokenStatus::RateLimited {
            until_ms: sim.reset_at("alice", "core") * 1000,
            bucket: Some("core".into()),
            kind: LimitKind::Primary,
        }
    );

    // Alice is known to be empty now, so no request goes to her.
    for _ in 0..5 {
        let response = github(&fleet).get("/user").await.unwrap();
        assert_eq!(response.token(), Some(&id("ghp_bob")));
    }
    assert_eq!(sim.over_limit_responses(), 1);
}

#[tokio::test]
async fn reset_in_seconds_serves_after_reset() {
    let clock = support::clock();
    let sim = GithubSimulator::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .primary_status(429)
        .start()
        .await;
    let window = Duration::from_secs(5);
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default().core(5000, window));
        sim.add_token(&format!("ghp_{login}"), login);
    }
    let tokens = vec![
        Token::new("ghp_alice").with_account("alice"),
        Token::new("ghp_bob").with_account("bob"),
    ];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.set_remaining("alice", "core", 0);
    sim.set_remaining("bob", "core", 0);

    let error = github(&fleet).get("/user").await.unwrap_err();

    let reset_ms = START_MS + 5_000;
    assert_eq!(pool_error(&error).earliest_reset_ms(), Some(reset_ms));
    assert!(error.to_string().contains(&format_epoch_ms(reset_ms)));
    assert_eq!(sim.over_limit_responses(), 2);

    clock.advance_to(START_MS + 7_000);
    let response = github(&fleet).get("/user").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(clock.now_ms(), START_MS + 7_000, "the pool slept");
}

/// Serves one token whose `GET /user` is rejected with 429 and a reset
/// written as `reset`, and returns the reset the pool reports.
async fn reported_reset(reset: u64) -> Option<u64> {
    let clock = support::clock();
    let server = MockServer::start().await;
    let hour_s = START_MS / 1000 + 3600;
    let status = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 5000, hour_s));
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .respond_with(dated(&clock, status))
        .mount(&server)
        .await;
    let body = json!({"message": "API rate limit exceeded for user ID 1."});
    let limited = ResponseTemplate::new(429)
        .set_body_json(body)
        .insert_header("x-ratelimit-limit", "5000")
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-used", "5000")
        .insert_header("x-ratelimit-reset", reset.to_string())
        .insert_header("x-ratelimit-resource", "core");
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(dated(&clock, limited))
        .mount(&server)
        .await;
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet(&server.uri(), tokens, &clock, WaitPolicy::Fail);

    let error = github(&fleet).get("/user").await.unwrap_err();
    pool_error(&error).earliest_reset_ms()
}

#[tokio::test]
async fn reset_units_parse_alike() {
    let reset_s = START_MS / 1000 + 5;
    let from_seconds = reported_reset(reset_s).await;
    let from_milliseconds = reported_reset(reset_s * 1000).await;

    assert_eq!(from_seconds, Some(reset_s * 1000));
    assert_eq!(from_milliseconds, Some(reset_s * 1000));
}

#[tokio::test]
async fn search_exhaustion_leaves_core_open() {
    let clock = support::clock();
    let sim = alice_alone(&clock, 5000).await;
    sim.add_repositories("alice", 3);
    sim.set_remaining("alice", "search", 1);
    let fleet = support::fleet(&sim.uri(), alice_token(), &clock, WaitPolicy::Fail);

    let found = github(&fleet)
        .github()
        .search_repositories("user:alice", 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 3);

    let error = github(&fleet)
        .github()
        .search_repositories("user:alice", 10)
        .await
        .unwrap_err();
    let Error::Exhausted(exhausted) = pool_error(&error) else {
        panic!("expected exhaustion, got {error:?}");
    };
    assert_eq!(exhausted.bucket.as_str(), "search");

    for _ in 0..3 {
        let response = github(&fleet).get("/user").await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(clock.now_ms(), START_MS, "the pool slept");
    assert_eq!(sim.over_limit_responses(), 0);
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, TokenStatus::Available);
    assert_eq!(alice.bucket("search").unwrap().remaining, Some(0));
}

#[tokio::test]
async fn search_waits_for_its_own_reset() {
    let clock = support::clock();
    let sim = alice_alone(&clock, 5000).await;
    sim.add_repositories("alice", 3);
    sim.set_remaining("alice", "search", 0);
    let wait = WaitPolicy::UpTo(Duration::from_secs(120));
    let fleet = support::fleet(&sim.uri(), alice_token(), &clock, wait);

    let found = github(&fleet)
        .github()
        .search_repositories("user:alice", 10)
        .await
        .unwrap();

    assert_eq!(found.len(), 3);
    assert!(
        clock.now_ms() >= START_MS + 60_000,
        "served before the reset"
    );
    assert!(clock.now_ms() < START_MS + 65_000, "waited too long");
    assert_eq!(sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn status_refresh_ignores_exhausted_core() {
    let clock = support::clock();
    let sim = alice_alone(&clock, 5000).await;
    let fleet = support::fleet(&sim.uri(), alice_token(), &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.set_remaining("alice", "core", 0);
    let error = github(&fleet).get("/user").await.unwrap_err();
    assert!(is_exhausted(&error), "{error}");
    assert_eq!(sim.over_limit_responses(), 1);

    sim.set_remaining("alice", "search", 7);
    let before = sim.total_requests();
    let snapshots = github(&fleet).github().rate_limits().await.unwrap();

    assert_eq!(sim.total_requests(), before + 1);
    let alice = &snapshots[0];
    assert_eq!(alice.bucket("core").unwrap().remaining, Some(0));
    assert_eq!(alice.bucket("search").unwrap().remaining, Some(7));
    assert_eq!(alice.bucket("code_search").unwrap().remaining, Some(10));

    // After the reset, a refresh alone makes the token available again.
    clock.advance(HOUR + Duration::from_secs(1));
    let snapshots = github(&fleet).github().rate_limits().await.unwrap();
    assert_eq!(snapshots[0].bucket("core").unwrap().remaining, Some(5000));
    assert_eq!(snapshots[0].status, TokenStatus::Available);
    assert_eq!(sim.over_limit_responses(), 1);
}

#[tokio::test]
async fn graphql_budget_follows_points() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default());
        sim.add_token(&format!("ghp_{login}"), login);
    }
    sim.set_graphql_cost(101);
    let tokens = vec![
        Token::new("ghp_alice").with_account("alice"),
        Token::new("ghp_bob").with_account("bob"),
    ];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    let url: url::Url = sim.graphql_uri().parse().unwrap();
    let query = Bytes::from(json!({"query": "{ viewer { login } }"}).to_string());

    let mut answered = 0;
    for _ in 0..100 {
        let sent = github(&fleet)
            .send(
                Method::POST,
                url.clone(),
                HeaderMap::new(),
                Some(query.clone()),
            )
            .await;
        match sent {
            Ok(response) => {
                assert_eq!(response.status(), 200);
                let body = String::from_utf8_lossy(response.body());
                assert!(!body.contains("RATE_LIMITED"), "{body}");
                answered += 1;
            }
            Err(error) => assert!(is_exhausted(&error), "unexpected error: {error}"),
        }
    }

    // 5,000 points pay for 49 queries of 101 points per account.
    assert_eq!(answered, 98);
    assert_eq!(sim.remaining("alice", "graphql"), 51);
    assert_eq!(sim.remaining("bob", "graphql"), 51);
    assert_eq!(sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn limit_headers_override_estimate() {
    let clock = support::clock();
    let server = MockServer::start().await;
    let reset_s = START_MS / 1000 + 3600;
    let status = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 5000, reset_s));
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .respond_with(dated(&clock, status))
        .mount(&server)
        .await;
    // Another program spends the same budget, so every response states
    // less than the pool's own count would.
    let user = ResponseTemplate::new(200).set_body_json(json!({"id": 1, "login": "alice"}));
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(dated(&clock, with_limits(user, "core", 5000, 2, reset_s)))
        .mount(&server)
        .await;
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet(&server.uri(), tokens, &clock, WaitPolicy::Fail);

    github(&fleet).get("/user").await.unwrap();
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.bucket("core").unwrap().remaining, Some(2));
}
