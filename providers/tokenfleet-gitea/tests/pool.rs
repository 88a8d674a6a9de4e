//! End-to-end tests of the Gitea provider: a token pool and client against
//! the Gitea simulator, on a manual clock the two share.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use http::StatusCode;
use tokenfleet_client::{Client, ClientError, ReqwestTransport};
use tokenfleet_core::{
    Clock, Error, LimitKind, ManualClock, Provider, Token, TokenPool, TokenStatus, WaitPolicy,
};
use tokenfleet_gitea::{AuthScheme, Gitea};
use tokenfleet_testkit::{GiteaSimulator, GiteaSimulatorBuilder};

/// 2023-11-14T22:14:00Z, a whole second so `Date` headers match the clock.
const START_MS: u64 = 1_700_000_040_000;

const CANARY: &str = "gta_CANARY0000000000000000000000000000";
const WINDOW: Duration = Duration::from_secs(600);

/// A simulator, a client over a pool of its tokens, and their shared clock.
struct Rig {
    simulator: GiteaSimulator,
    clock: ManualClock,
    client: Client,
}

/// Builds a plain HTTP client that never uses a system proxy.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds")
}

async fn simulator(builder: GiteaSimulatorBuilder, clock: &ManualClock) -> GiteaSimulator {
    builder.clock(Arc::new(clock.clone())).start().await
}

fn pool(
    provider: Gitea,
    tokens: Vec<Token>,
    clock: &ManualClock,
    wait: WaitPolicy,
) -> Result<TokenPool, Error> {
    TokenPool::builder(Arc::new(provider))
        .tokens(tokens)
        .strategy(Arc::new(tokenfleet_rate_aware::RateAware::default()))
        .clock(Arc::new(clock.clone()))
        .transport(Arc::new(ReqwestTransport::new(http())))
        .wait(wait)
        .seed(7)
        .build()
}

fn client(pool: TokenPool) -> Client {
    Client::builder()
        .http(http())
        .backoff(Duration::from_millis(10))
        .seed(7)
        .build(pool)
        .expect("the client builds")
}

fn provider_for(simulator: &GiteaSimulator) -> Gitea {
    Gitea::with_base_url(simulator.uri().parse().expect("the simulator URI parses"))
}

/// Starts a simulator with `accounts` (login, secret, proxy budget) and a
/// client over their tokens.
async fn rig(accounts: &[(&str, &str, Option<u64>)], wait: WaitPolicy) -> Rig {
    rig_with(GiteaSimulator::builder(), accounts, wait).await
}

async fn rig_with(
    builder: GiteaSimulatorBuilder,
    accounts: &[(&str, &str, Option<u64>)],
    wait: WaitPolicy,
) -> Rig {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(builder, &clock).await;
    let mut tokens = Vec::new();
    let mut logins = HashSet::new();
    for (login, secret, budget) in accounts {
        if logins.insert(*login) {
            simulator.add_account(login);
            if let Some(budget) = budget {
                simulator.limit_account(login, *budget, WINDOW);
            }
        }
        simulator.add_token(secret, login);
        tokens.push(Token::new(*secret));
    }
    let pool = pool(provider_for(&simulator), tokens, &clock, wait).expect("the pool builds");
    Rig {
        client: client(pool),
        simulator,
        clock,
    }
}

/// Returns the earliest reset an exhaustion error names.
fn earliest_reset(error: &ClientError) -> Option<u64> {
    match error {
        ClientError::Pool(error) => error.earliest_reset_ms(),
        _ => None,
    }
}

async fn status_of(client: &Client, secret: &str) -> TokenStatus {
    let id = Token::new(secret).id().clone();
    client
        .pool()
        .tokens()
        .await
        .into_iter()
        .find(|snapshot| snapshot.id == id)
        .expect("the token is in the pool")
        .status
}

#[tokio::test]
async fn concurrent_requests_without_limiter() {
    let rig = rig(
        &[("alice", "gta_alice", None), ("bob", "gta_bob", None)],
        WaitPolicy::Fail,
    )
    .await;

    let requests = (0..64).map(|_| rig.client.get("/user"));
    let results = join_all(requests).await;

    for result in &results {
        let response = result.as_ref().expect("every request succeeds");
        assert_eq!(response.status(), StatusCode::OK);
    }
    // The two probes and the 64 requests.
    assert_eq!(rig.simulator.successful_requests(), 66);
    assert_eq!(rig.simulator.over_limit_responses(), 0);
    assert_eq!(rig.simulator.throttled_responses(), 0);

    let snapshots = rig.client.pool().tokens().await;
    for snapshot in &snapshots {
        assert!(snapshot.status.is_available(), "{}", snapshot.status);
        assert!(snapshot.buckets.iter().all(|bucket| bucket.unlimited));
    }
}

#[tokio::test]
async fn concurrent_requests_spend_proxy_budget_exactly() {
    const BUDGET: u64 = 10;
    let rig = rig(
        &[
            ("alice", "gta_alice", Some(BUDGET)),
            ("bob", "gta_bob", Some(BUDGET)),
        ],
        WaitPolicy::Fail,
    )
    .await;

    let requests = (0..64).map(|_| rig.client.get("/user"));
    let results = join_all(requests).await;

    let mut served = 0;
    for result in &results {
        match result {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK);
                served += 1;
            }
            Err(ClientError::Pool(Error::Exhausted(exhausted))) => {
                assert_eq!(
                    exhausted.earliest_reset_ms,
                    Some(START_MS + WINDOW.as_millis() as u64)
                );
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    // Each probe spent one unit of its account's budget.
    assert_eq!(served, 2 * BUDGET - 2);
    assert_eq!(rig.simulator.successful_requests(), 2 * BUDGET);
    assert_eq!(rig.simulator.remaining("alice"), Some(0));
    assert_eq!(rig.simulator.remaining("bob"), Some(0));
    // The budget was unknown, so requests in flight when it ran out were
    // throttled, each at most once per account before the pool stopped.
    assert!(rig.simulator.over_limit_responses() <= 2 * 64);
}

#[tokio::test]
async fn stated_proxy_budget_is_never_exceeded() {
    const BUDGET: u64 = 10;
    let rig = rig_with(
        GiteaSimulator::builder().rate_headers(true),
        &[
            ("alice", "gta_alice", Some(BUDGET)),
            ("bob", "gta_bob", Some(BUDGET)),
        ],
        WaitPolicy::Fail,
    )
    .await;

    let requests = (0..64).map(|_| rig.client.get("/user"));
    let results = join_all(requests).await;

    let served = results.iter().filter(|result| result.is_ok()).count() as u64;
    for result in &results {
        if let Err(error) = result {
            assert!(
                matches!(error, ClientError::Pool(Error::Exhausted(_))),
                "{error}"
            );
        }
    }
    // The probes read the budget from the headers, so the pool spent the
    // rest exactly and no request was throttled.
    assert_eq!(served, 2 * BUDGET - 2);
    assert_eq!(rig.simulator.successful_requests(), 2 * BUDGET);
    assert_eq!(rig.simulator.over_limit_responses(), 0);
    let snapshot = &rig.client.pool().tokens().await[0];
    assert_eq!(snapshot.buckets[0].limit, Some(BUDGET));
}

#[tokio::test]
async fn throttled_token_rests_until_retry_after() {
    const BUDGET: u64 = 4;
    let rig = rig(&[("alice", "gta_alice", Some(BUDGET))], WaitPolicy::Fail).await;

    for _ in 0..BUDGET - 1 {
        let response = rig.client.get("/user").await.expect("within the budget");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let snapshot = &rig.client.pool().tokens().await[0];
    assert!(
        snapshot.buckets.iter().all(|bucket| bucket.unlimited),
        "the budget is unlimited before the throttle"
    );

    let error = rig
        .client
        .get("/user")
        .await
        .expect_err("the proxy throttles the request");
    let reset_ms = START_MS + WINDOW.as_millis() as u64;
    assert_eq!(error.status(), None, "{error}");
    let ClientError::Pool(Error::Exhausted(exhausted)) = &error else {
        panic!("expected an exhaustion error, got {error}");
    };
    assert_eq!(exhausted.earliest_reset_ms, Some(reset_ms));
    assert_eq!(rig.simulator.over_limit_responses(), 1);
    let sent = rig.simulator.requests_by_token("gta_alice");

    // Until the wait ends, no request reaches the server.
    rig.clock.advance(Duration::from_secs(300));
    for _ in 0..5 {
        let error = rig
            .client
            .get("/user")
            .await
            .expect_err("still cooling down");
        assert_eq!(error.status(), None);
    }
    assert_eq!(rig.simulator.requests_by_token("gta_alice"), sent);
    assert!(matches!(
        status_of(&rig.client, "gta_alice").await,
        TokenStatus::RateLimited {
            kind: LimitKind::Secondary,
            ..
        }
    ));

    // After the wait the token serves again, and once a request has
    // succeeded, several may be in flight at once.
    rig.clock.advance_to(reset_ms);
    let response = rig.client.get("/user").await.expect("the wait is over");
    assert_eq!(response.status(), StatusCode::OK);
    let results = join_all((0..3).map(|_| rig.client.get("/user"))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(rig.simulator.over_limit_responses(), 1);
    assert!(status_of(&rig.client, "gta_alice").await.is_available());
}

#[tokio::test]
async fn waiting_pool_resumes_after_retry_after() {
    let rig = rig(
        &[("alice", "gta_alice", Some(3))],
        WaitPolicy::UpTo(Duration::from_secs(900)),
    )
    .await;

    for _ in 0..4 {
        let response = rig.client.get("/user").await.expect("the pool waits");
        assert_eq!(response.status(), StatusCode::OK);
    }

    // The fourth request waited out the window on the shared clock.
    assert!(rig.clock.now_ms() >= START_MS + WINDOW.as_millis() as u64);
    assert_eq!(rig.simulator.over_limit_responses(), 1);
    assert_eq!(rig.simulator.successful_requests(), 5);
}

#[tokio::test]
async fn headerless_throttle_backs_off_doubling() {
    let rig = rig(
        &[("alice", "gta_alice", None), ("bob", "gta_bob", None)],
        WaitPolicy::Fail,
    )
    .await;
    rig.client.get("/user").await.expect("warm-up succeeds");
    rig.simulator.inject_throttle("alice", 2);
    rig.simulator.inject_throttle("bob", 2);

    let error = rig
        .client
        .get("/user")
        .await
        .expect_err("both are throttled");
    assert_eq!(earliest_reset(&error), Some(START_MS + 60_000), "{error}");

    rig.clock.advance_to(START_MS + 60_000);
    let error = rig
        .client
        .get("/user")
        .await
        .expect_err("both are throttled again");
    assert_eq!(
        earliest_reset(&error),
        Some(START_MS + 60_000 + 120_000),
        "{error}"
    );
    assert_eq!(rig.simulator.throttled_responses(), 4);

    rig.clock.advance_to(START_MS + 180_000);
    let response = rig.client.get("/user").await.expect("the backoff is over");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn retry_after_date_gives_same_reset() {
    let rig = rig_with(
        GiteaSimulator::builder().retry_after_as_date(true),
        &[("alice", "gta_alice", Some(2))],
        WaitPolicy::Fail,
    )
    .await;

    rig.client.get("/user").await.expect("within the budget");
    let error = rig
        .client
        .get("/user")
        .await
        .expect_err("the budget is spent");

    assert_eq!(
        earliest_reset(&error),
        Some(START_MS + WINDOW.as_millis() as u64),
        "{error}"
    );
}

#[tokio::test]
async fn tokens_of_one_login_share_a_cooldown() {
    let rig = rig(
        &[
            ("alice", "gta_alice_1", Some(5)),
            ("alice", "gta_alice_2", Some(5)),
        ],
        WaitPolicy::Fail,
    )
    .await;

    let mut served = 0;
    while rig.client.get("/user").await.is_ok() {
        served += 1;
        assert!(served <= 5, "served past the shared budget");
    }

    // Two probes and three requests spent the one budget of five.
    assert_eq!(served, 3);
    assert_eq!(rig.simulator.over_limit_responses(), 1);
    let snapshots = rig.client.pool().tokens().await;
    assert_eq!(snapshots[0].account, "alice");
    assert_eq!(snapshots[1].account, "alice");
    for snapshot in &snapshots {
        assert!(!snapshot.status.is_available(), "{}", snapshot.status);
    }
}

#[tokio::test]
async fn token_throttled_at_start_waits_for_window() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(GiteaSimulator::builder(), &clock).await;
    simulator.add_account("alice");
    simulator.limit_account("alice", 5, WINDOW);
    simulator.add_token("gta_alice", "alice");
    simulator.add_account("bob");
    simulator.add_token("gta_bob", "bob");
    simulator.drain("alice");
    let tokens = vec![Token::new("gta_alice"), Token::new("gta_bob")];
    let client = client(pool(provider_for(&simulator), tokens, &clock, WaitPolicy::Fail).unwrap());

    for _ in 0..4 {
        let response = client.get("/user").await.expect("bob serves");
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Only the probe reached the server with alice's token.
    assert_eq!(simulator.requests_by_token("gta_alice"), 1);
    assert!(matches!(
        status_of(&client, "gta_alice").await,
        TokenStatus::RateLimited { .. }
    ));

    // Once the window ends, alice is probed again and then used.
    clock.advance_to(START_MS + WINDOW.as_millis() as u64);
    simulator.inject_throttle("bob", 1);
    let response = client.get("/user").await.expect("alice serves again");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(simulator.requests_by_token("gta_alice") >= 2);
    let snapshots = client.pool().tokens().await;
    assert_eq!(snapshots[0].account, "alice");
}

#[tokio::test]
async fn declared_account_recovers_from_throttle_at_start() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(GiteaSimulator::builder(), &clock).await;
    simulator.add_account("alice");
    simulator.limit_account("alice", 5, WINDOW);
    simulator.add_token("gta_alice", "alice");
    simulator.drain("alice");
    let tokens = vec![Token::new("gta_alice").with_account("alice")];
    let client = client(pool(provider_for(&simulator), tokens, &clock, WaitPolicy::Fail).unwrap());

    let error = client.get("/user").await.expect_err("alice is throttled");
    assert!(
        matches!(error, ClientError::Pool(Error::Exhausted(_))),
        "{error}"
    );
    // The probe and one request were throttled.
    assert_eq!(simulator.over_limit_responses(), 2);

    clock.advance_to(START_MS + WINDOW.as_millis() as u64);
    let response = client.get("/user").await.expect("the window is over");
    assert_eq!(response.status(), StatusCode::OK);

    // With no limit stated, many requests may be in flight again.
    let results = join_all((0..4).map(|_| client.get("/user"))).await;
    assert!(results.iter().all(Result::is_ok));
    let snapshot = &client.pool().tokens().await[0];
    assert!(snapshot.buckets.iter().all(|bucket| bucket.unlimited));
}

#[tokio::test]
async fn invalid_token_excluded_at_start() {
    let rig = rig_with(
        GiteaSimulator::builder().invalid_tokens_as_anonymous(true),
        &[("alice", "gta_alice", None), ("bob", "gta_bob", None)],
        WaitPolicy::Fail,
    )
    .await;
    rig.simulator.add_repositories("alice", 3);
    rig.simulator.revoke_token("gta_bob");

    for _ in 0..6 {
        let response = rig
            .client
            .get("/users/alice/repos")
            .await
            .expect("alice serves");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.token(), Some(Token::new("gta_alice").id()));
    }

    // Bob's token reached only the validating probe, although the server
    // would have served the listing to it as an anonymous caller.
    assert_eq!(rig.simulator.requests_by_token("gta_bob"), 1);
    assert_eq!(
        status_of(&rig.client, "gta_bob").await,
        TokenStatus::Invalid
    );
}

#[tokio::test]
async fn only_invalid_tokens_is_a_clear_error() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(GiteaSimulator::builder(), &clock).await;
    simulator.add_account("alice");
    let tokens = vec![
        Token::new(CANARY).with_label("ci-bot"),
        Token::new("gta_unknown"),
    ];
    let client = client(pool(provider_for(&simulator), tokens, &clock, WaitPolicy::Fail).unwrap());

    let error = client.get("/user").await.expect_err("no token is valid");

    let ClientError::Pool(Error::AllInvalid { provider, tokens }) = &error else {
        panic!("expected every token invalid, got {error}");
    };
    assert_eq!(provider, "gitea");
    assert_eq!(tokens.len(), 2);
    let message = error.to_string();
    assert!(message.contains("ci-bot"), "{message}");
    assert!(message.contains("add a valid token"), "{message}");
    assert!(!message.contains(CANARY), "{message}");
    assert_eq!(simulator.unauthorized_responses(), 2);
}

#[tokio::test]
async fn revoked_token_rotates_once() {
    let rig = rig(
        &[("alice", "gta_alice", None), ("bob", "gta_bob", None)],
        WaitPolicy::Fail,
    )
    .await;
    rig.client.get("/user").await.expect("warm-up succeeds");
    rig.simulator.revoke_token("gta_alice");
    let before = rig.simulator.requests_by_token("gta_alice");

    for _ in 0..6 {
        let response = rig.client.get("/user").await.expect("bob serves");
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert!(rig.simulator.requests_by_token("gta_alice") - before <= 1);
    assert_eq!(
        status_of(&rig.client, "gta_alice").await,
        TokenStatus::Invalid
    );
}

#[tokio::test]
async fn forbidden_scope_is_returned() {
    let rig = rig(
        &[("alice", "gta_alice", None), ("bob", "gta_bob", None)],
        WaitPolicy::Fail,
    )
    .await;
    rig.simulator.forbid("/repos/alice/private/hooks");

    let response = rig
        .client
        .get("/repos/alice/private/hooks")
        .await
        .expect("the refusal is a response");

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response.message().contains("required scope"),
        "{}",
        response.message()
    );
    assert_eq!(response.attempts(), 1);
    assert!(status_of(&rig.client, "gta_alice").await.is_available());
    assert!(status_of(&rig.client, "gta_bob").await.is_available());
}

#[tokio::test]
async fn server_error_is_retried() {
    let rig = rig(&[("alice", "gta_alice", None)], WaitPolicy::Fail).await;
    rig.client.get("/user").await.expect("warm-up succeeds");
    rig.simulator.inject_server_errors(1);

    let response = rig.client.get("/user").await.expect("the retry succeeds");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.attempts(), 2);
    assert_eq!(rig.simulator.server_error_responses(), 1);
}

#[tokio::test]
async fn listing_user_follows_every_page() {
    let rig = rig(
        &[("alice", "gta_alice", None), ("bob", "gta_bob", None)],
        WaitPolicy::Fail,
    )
    .await;
    rig.simulator.add_repositories("alice", 120);
    let before = rig.simulator.total_requests();

    let listed = rig
        .client
        .repositories("alice")
        .await
        .expect("the listing succeeds");

    let names: Vec<String> = listed.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, rig.simulator.repository_names("alice"));
    // Two probes, then three pages of 50, each with a pool token.
    assert_eq!(rig.simulator.total_requests() - before, 5);
    let with_token =
        rig.simulator.requests_by_token("gta_alice") + rig.simulator.requests_by_token("gta_bob");
    assert_eq!(with_token, 5);

    let first = &listed[0];
    assert_eq!(first.provider, "gitea");
    assert_eq!(first.owner, "alice");
    assert_eq!(first.full_name, "alice/alice-0000");
    assert!(first.url.ends_with("/alice/alice-0000"), "{}", first.url);
    assert_eq!(first.description, None, "an empty description is none");
    assert_eq!(first.language.as_deref(), Some("Go"));
    assert_eq!(first.default_branch.as_deref(), Some("main"));
    assert!(first.created_at.is_some());
    assert_eq!(listed[3].language, None, "an empty language is none");
    assert!(listed[3].fork);
    assert!(listed[5].archived);
    assert!(listed[1].description.is_some());
    assert_eq!(listed[12].default_branch, None, "an empty repository");
}

#[tokio::test]
async fn listing_organization_falls_back() {
    let rig = rig(&[("alice", "gta_alice", None)], WaitPolicy::Fail).await;
    rig.simulator.add_repositories("forge", 7);

    let listed = rig
        .client
        .repositories("forge")
        .await
        .expect("the listing succeeds");

    assert_eq!(listed.len(), 7);
    assert_eq!(listed[0].full_name, "forge/forge-0000");
    assert_eq!(listed[0].owner, "forge");
}

#[tokio::test]
async fn listing_unknown_owner_is_not_found() {
    let rig = rig(&[("alice", "gta_alice", None)], WaitPolicy::Fail).await;

    let error = rig
        .client
        .repositories("nobody")
        .await
        .expect_err("no such owner");

    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND), "{error}");
}

#[tokio::test]
async fn listing_rejects_path_changing_owner() {
    let rig = rig(&[("alice", "gta_alice", None)], WaitPolicy::Fail).await;

    for owner in ["../admin", "a/b", ".hidden", "%2e%2e"] {
        let error = rig
            .client
            .repositories(owner)
            .await
            .expect_err("invalid owner");
        assert!(
            matches!(error, ClientError::InvalidRequest(_)),
            "{owner}: {error}"
        );
        assert!(error.to_string().contains(owner), "{error}");
    }
    assert_eq!(rig.simulator.total_requests(), 0);
}

#[tokio::test]
async fn bearer_scheme_reaches_server() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(GiteaSimulator::builder(), &clock).await;
    simulator.add_account("alice");
    simulator.add_token(CANARY, "alice");
    let provider = provider_for(&simulator).auth(AuthScheme::Bearer);
    let client =
        client(pool(provider, vec![Token::new(CANARY)], &clock, WaitPolicy::Fail).unwrap());

    client.get("/user").await.expect("the request succeeds");

    assert_eq!(simulator.last_credential().as_deref(), Some(CANARY));
    assert_eq!(simulator.last_scheme().as_deref(), Some("bearer"));
}

#[tokio::test]
async fn canary_absent_from_output() {
    let rig = rig(&[("alice", CANARY, Some(2))], WaitPolicy::Fail).await;
    rig.client.get("/user").await.expect("within the budget");
    let exhausted = rig
        .client
        .get("/user")
        .await
        .expect_err("the budget is spent");
    rig.simulator.revoke_token(CANARY);
    rig.clock.advance_to(START_MS + WINDOW.as_millis() as u64);
    let invalid = rig
        .client
        .get("/user")
        .await
        .expect_err("the token is revoked");

    let provider: Box<dyn Provider> = Box::new(provider_for(&rig.simulator));
    let outputs = [
        format!("{exhausted} {exhausted:?}"),
        format!("{invalid} {invalid:?}"),
        format!("{:?}", rig.client),
        format!("{:?}", rig.client.pool()),
        format!("{:?}", rig.client.pool().tokens().await),
        format!("{provider:?}"),
        format!("{:?}", Token::new(CANARY)),
        format!("{}", Token::new(CANARY)),
    ];
    for output in outputs {
        assert!(!output.contains("CANARY"), "{output}");
    }
}
