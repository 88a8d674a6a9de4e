//! The generic provider through a real pool and client against the
//! generic simulator: concurrency, reset formats, throttles without
//! headers, the probe, shared accounts and secrets.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokenfleet_client::{default_http, Client, ClientError, ReqwestTransport};
use tokenfleet_core::{
    Clock, Error, ManualClock, ProbeError, Provider, Token, TokenPool, TokenStatus, WaitPolicy,
};
use tokenfleet_http::{Http, HttpSettings, ResetFormat};
use tokenfleet_testkit::{Budget, GenericSimulator};

/// 2023-11-14T22:14:00Z, a whole second, so `Date` headers match the clock.
const START_MS: u64 = 1_700_000_040_000;
const HOUR: Duration = Duration::from_secs(3600);
const CANARY: &str = "key_CANARY0000000000000000000000000000";

fn base_settings() -> HttpSettings {
    HttpSettings::new("http://127.0.0.1:1".parse().unwrap())
}

/// Returns settings with an API key without a scheme, a quota header,
/// millisecond resets and 503 throttles.
fn quota_settings() -> HttpSettings {
    let mut settings = base_settings();
    settings.auth_header = Some("X-Api-Key".to_owned());
    settings.auth_scheme = Some(String::new());
    settings.remaining_header = "X-Quota-Left".to_owned();
    settings.reset_format = ResetFormat::EpochMilliseconds;
    settings.throttle_statuses = vec![503];
    settings
}

async fn simulator(settings: HttpSettings, clock: &ManualClock) -> GenericSimulator {
    GenericSimulator::builder(settings)
        .clock(Arc::new(clock.clone()))
        .start()
        .await
}

fn provider(simulator: &GenericSimulator) -> Http {
    Http::new(simulator.settings()).expect("the test settings are valid")
}

fn transport() -> ReqwestTransport {
    ReqwestTransport::new(default_http().expect("the HTTP client builds"))
}

/// Registers one account per name with `budget` and one token each.
fn tokens(simulator: &GenericSimulator, names: &[&str], budget: Budget) -> Vec<Token> {
    names
        .iter()
        .map(|name| {
            simulator.add_account(name, budget);
            let secret = format!("key_{name}");
            simulator.add_token(&secret, name);
            Token::new(secret).with_account(*name)
        })
        .collect()
}

fn client(
    simulator: &GenericSimulator,
    tokens: Vec<Token>,
    clock: &ManualClock,
    wait: WaitPolicy,
) -> Client {
    let pool = TokenPool::builder(Arc::new(provider(simulator)))
        .tokens(tokens)
        .strategy(Arc::new(tokenfleet_rate_aware::RateAware::default()))
        .clock(Arc::new(clock.clone()))
        .transport(Arc::new(transport()))
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

/// Sends requests from `tasks` concurrent tasks until the pool is
/// exhausted, and returns how many succeeded.
async fn drain_concurrently(client: &Client, tasks: usize) -> u64 {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut served = 0u64;
                loop {
                    match client.get("/items").await {
                        Ok(response) => {
                            assert_eq!(response.status(), StatusCode::OK);
                            served += 1;
                        }
                        Err(ClientError::Pool(Error::Exhausted(_))) => return served,
                        Err(error) => panic!("unexpected error: {error}"),
                    }
                }
            })
        })
        .collect();

    let mut served = 0;
    for handle in futures::future::join_all(handles).await {
        served += handle.expect("no task panics");
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_drain_serves_exact_budget() {
    let cases = [(quota_settings(), 32, 10), (base_settings(), 64, 7)];
    for (settings, tasks, budget) in cases {
        let clock = ManualClock::new(START_MS);
        let simulator = simulator(settings, &clock).await;
        let tokens = tokens(&simulator, &["a", "b", "c"], Budget::new(budget, HOUR));
        let client = client(&simulator, tokens, &clock, WaitPolicy::Fail);

        let served = drain_concurrently(&client, tasks).await;

        assert_eq!(served, 3 * budget, "{tasks} tasks");
        assert_eq!(simulator.successful_requests(), 3 * budget, "{tasks} tasks");
        assert_eq!(simulator.over_limit_responses(), 0, "{tasks} tasks");
    }
}

/// Two tokens whose budgets end at N+5, stated in each reset format: the
/// pool names N+5 as the earliest reset and serves again at N+7.
#[tokio::test]
async fn reset_formats_recover_at_same_instant() {
    let formats = [
        (ResetFormat::EpochSeconds, "X-RateLimit-Reset"),
        (ResetFormat::EpochMilliseconds, "X-RateLimit-Reset"),
        (ResetFormat::SecondsFromNow, "X-RateLimit-Reset"),
        (ResetFormat::HttpDate, "RateLimit-ResetTime"),
    ];
    for (format, reset_header) in formats {
        let clock = ManualClock::new(START_MS);
        let mut settings = base_settings();
        settings.reset_format = format;
        settings.reset_header = reset_header.to_owned();
        let simulator = simulator(settings, &clock).await;
        let budget = Budget::new(100, Duration::from_secs(5));
        let tokens = tokens(&simulator, &["a", "b"], budget);
        simulator.drain("a", "default");
        simulator.drain("b", "default");
        let client = client(&simulator, tokens, &clock, WaitPolicy::Fail);

        let error = client
            .get("/items")
            .await
            .expect_err("both tokens are spent");
        let ClientError::Pool(Error::Exhausted(exhausted)) = &error else {
            panic!("{}: expected exhaustion, got {error}", format.name());
        };
        assert_eq!(
            exhausted.earliest_reset_ms,
            Some(START_MS + 5_000),
            "{}",
            format.name()
        );
        assert_eq!(simulator.over_limit_responses(), 2, "{}", format.name());

        clock.advance_to(START_MS + 7_000);
        let response = client.get("/items").await.expect("the budget is back");
        assert_eq!(response.status(), StatusCode::OK, "{}", format.name());
    }
}

#[tokio::test]
async fn spent_tokens_wait_until_reset() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(quota_settings(), &clock).await;
    let tokens = tokens(&simulator, &["a"], Budget::new(3, Duration::from_secs(600)));
    simulator.drain("a", "default");
    let client = client(&simulator, tokens, &clock, WaitPolicy::UpTo(HOUR));

    let response = client
        .get("/items")
        .await
        .expect("the wait ends at the reset");

    assert_eq!(response.status(), StatusCode::OK);
    assert!(clock.now_ms() >= START_MS + 600_000, "{}", clock.now_ms());
    assert_eq!(simulator.over_limit_responses(), 1);
}

#[tokio::test]
async fn throttle_without_headers_rotates() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(quota_settings(), &clock).await;
    let tokens = tokens(&simulator, &["a", "b"], Budget::new(50, HOUR));
    let client = client(&simulator, tokens.clone(), &clock, WaitPolicy::Fail);
    simulator.inject_throttles(1, None);

    let response = client.get("/items").await.expect("another token serves");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(simulator.injected_throttle_responses(), 1);
    assert_eq!(simulator.total_requests(), 2);
    let throttled = tokens
        .iter()
        .find(|token| Some(token.id()) != response.token())
        .expect("two tokens");
    let snapshot = client
        .pool()
        .tokens()
        .await
        .into_iter()
        .find(|snapshot| snapshot.id == *throttled.id())
        .expect("every token has a snapshot");
    assert!(
        matches!(snapshot.status, TokenStatus::RateLimited { .. }),
        "{}",
        snapshot.status
    );
}

/// Three throttles without headers on a single token with eleven
/// concurrent callers: the callers share each cooldown, so the throttles
/// come one cooldown apart (at least 60 s each) and no caller fails.
#[tokio::test]
async fn repeated_throttles_back_off() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(base_settings(), &clock).await;
    let tokens = tokens(&simulator, &["a"], Budget::new(50, HOUR));
    let client = client(&simulator, tokens, &clock, WaitPolicy::UpTo(HOUR));
    simulator.inject_throttles(3, None);

    let callers: Vec<_> = (0..11).map(|_| client.get("/items")).collect();
    let results = futures::future::join_all(callers).await;

    for result in results {
        let response = result.expect("every caller is served");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(simulator.injected_throttle_responses(), 3);
    assert_eq!(simulator.total_requests(), 3 + 11);
    let waited_ms = clock.now_ms() - START_MS;
    assert!(waited_ms >= 3 * 60_000, "waited only {waited_ms} ms");
}

#[tokio::test]
async fn retry_after_sets_the_wait() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(base_settings(), &clock).await;
    let tokens = tokens(&simulator, &["a"], Budget::new(50, HOUR));
    let client = client(&simulator, tokens, &clock, WaitPolicy::UpTo(HOUR));
    simulator.inject_throttles(1, Some(30));

    let response = client.get("/items").await.expect("the retry succeeds");

    assert_eq!(response.status(), StatusCode::OK);
    assert!(clock.now_ms() >= START_MS + 30_000, "{}", clock.now_ms());
    assert_eq!(simulator.total_requests(), 2);
}

#[tokio::test]
async fn server_error_is_retried() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(base_settings(), &clock).await;
    let tokens = tokens(&simulator, &["a"], Budget::new(50, HOUR));
    let client = client(&simulator, tokens, &clock, WaitPolicy::Fail);
    simulator.inject_server_errors(1);

    let response = client.get("/items").await.expect("the retry succeeds");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(simulator.total_requests(), 2);
}

#[tokio::test]
async fn probe_reads_free_status_endpoint() {
    let clock = ManualClock::new(START_MS);
    let mut settings = quota_settings();
    settings.status_endpoint = Some("/quota".to_owned());
    settings.status_endpoint_free = true;
    let simulator = simulator(settings, &clock).await;
    let tokens = tokens(&simulator, &["a"], Budget::new(40, HOUR));

    let probe = provider(&simulator)
        .probe(&tokens[0], &transport(), false)
        .await
        .expect("the probe succeeds");

    assert_eq!(probe.observations.len(), 1);
    let observation = &probe.observations[0];
    assert_eq!(observation.remaining, 40);
    assert_eq!(observation.limit, 40);
    assert_eq!(observation.reset_ms, START_MS + 3_600_000);
    assert_eq!(
        observation.bucket.as_ref().map(|b| b.as_str()),
        Some("default")
    );
    assert_eq!(probe.server_date_ms, Some(START_MS));
    assert_eq!(simulator.remaining("a", "default"), 40);
    assert_eq!(simulator.successful_requests(), 0);
}

#[tokio::test]
async fn probe_spends_paid_status_endpoint() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.status_endpoint = Some("/quota".to_owned());
    let simulator = simulator(settings, &clock).await;
    let tokens = tokens(&simulator, &["a"], Budget::new(40, HOUR));

    let probe = provider(&simulator)
        .probe(&tokens[0], &transport(), false)
        .await
        .expect("the probe succeeds");

    assert_eq!(probe.observations[0].remaining, 39);
    assert_eq!(simulator.remaining("a", "default"), 39);
}

#[tokio::test]
async fn probe_learns_account_at_pointer() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.account_endpoint = Some("/me".to_owned());
    settings.account_pointer = Some("/user/login".to_owned());
    let simulator = simulator(settings, &clock).await;
    simulator.add_account("octo", Budget::new(10, HOUR));
    simulator.add_token(CANARY, "octo");

    let http = provider(&simulator);
    let token = Token::new(CANARY);
    let probe = http
        .probe(&token, &transport(), true)
        .await
        .expect("the probe succeeds");
    assert_eq!(probe.account.as_deref(), Some("octo"));
    assert_eq!(probe.observations[0].remaining, 9);

    let without = http
        .probe(&token, &transport(), false)
        .await
        .expect_err("nothing to request");
    assert!(matches!(without, ProbeError::Unsupported), "{without}");
}

#[tokio::test]
async fn probe_defers_account_when_spent() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.status_endpoint = Some("/quota".to_owned());
    settings.status_endpoint_free = true;
    settings.account_endpoint = Some("/me".to_owned());
    settings.account_pointer = Some("/login".to_owned());
    let simulator = simulator(settings, &clock).await;
    simulator.add_account("octo", Budget::new(10, HOUR));
    simulator.add_token(CANARY, "octo");
    simulator.drain("octo", "default");

    let probe = provider(&simulator)
        .probe(&Token::new(CANARY), &transport(), true)
        .await
        .expect("the probe succeeds");

    assert!(probe.account_deferred);
    assert_eq!(probe.account, None);
    assert_eq!(simulator.total_requests(), 1);
}

#[tokio::test]
async fn probe_rejects_revoked_token() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.status_endpoint = Some("/quota".to_owned());
    let simulator = simulator(settings, &clock).await;
    simulator.add_account("octo", Budget::new(10, HOUR));
    simulator.add_token(CANARY, "octo");
    simulator.revoke_token(CANARY);

    let error = provider(&simulator)
        .probe(&Token::new(CANARY), &transport(), false)
        .await
        .expect_err("the token is revoked");

    assert!(matches!(error, ProbeError::InvalidToken(_)), "{error}");
    assert!(!error.to_string().contains("CANARY"), "{error}");
}

#[tokio::test]
async fn probe_without_endpoints_is_unsupported() {
    let clock = ManualClock::new(START_MS);
    let simulator = simulator(base_settings(), &clock).await;
    let tokens = tokens(&simulator, &["a"], Budget::new(10, HOUR));

    let error = provider(&simulator)
        .probe(&tokens[0], &transport(), true)
        .await
        .expect_err("nothing to request");

    assert!(matches!(error, ProbeError::Unsupported), "{error}");
    assert_eq!(simulator.total_requests(), 0);
}

/// Tokens A and C belong to one account, which the account endpoint
/// reveals: together they get one budget, not two.
#[tokio::test]
async fn learned_account_shares_one_budget() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.account_endpoint = Some("/me".to_owned());
    settings.account_pointer = Some("/login".to_owned());
    let simulator = simulator(settings, &clock).await;
    simulator.add_account("shared", Budget::new(6, HOUR));
    simulator.add_token("key_a", "shared");
    simulator.add_token("key_c", "shared");
    let tokens = vec![Token::new("key_a"), Token::new("key_c")];
    let client = client(&simulator, tokens, &clock, WaitPolicy::Fail);

    let served = drain_concurrently(&client, 8).await;

    // Learning the account costs one request per token.
    assert_eq!(served, 4);
    assert_eq!(simulator.successful_requests(), 6);
    assert_eq!(simulator.over_limit_responses(), 0);
    let accounts: Vec<String> = client
        .pool()
        .tokens()
        .await
        .into_iter()
        .map(|snapshot| snapshot.account)
        .collect();
    assert_eq!(accounts, ["shared", "shared"]);
}

#[tokio::test]
async fn invalid_token_at_start_is_excluded() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.status_endpoint = Some("/quota".to_owned());
    settings.status_endpoint_free = true;
    let simulator = simulator(settings, &clock).await;
    let tokens = tokens(&simulator, &["a", "c"], Budget::new(10, HOUR));
    simulator.revoke_token(tokens[1].secret());
    let client = client(&simulator, tokens.clone(), &clock, WaitPolicy::Fail);

    for _ in 0..5 {
        let response = client.get("/items").await.expect("token a serves");
        assert_eq!(response.token(), Some(tokens[0].id()));
    }

    assert_eq!(simulator.requests_by_token(tokens[1].secret()), 1);
    let snapshots = client.pool().tokens().await;
    assert_eq!(snapshots[1].status, TokenStatus::Invalid);
}

#[tokio::test]
async fn only_invalid_token_fails_clearly() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.status_endpoint = Some("/quota".to_owned());
    let simulator = simulator(settings, &clock).await;
    simulator.add_account("a", Budget::new(10, HOUR));
    simulator.add_token(CANARY, "a");
    simulator.revoke_token(CANARY);
    let token = Token::new(CANARY).with_label("ci-key");
    let client = client(&simulator, vec![token], &clock, WaitPolicy::Fail);

    let error = client.get("/items").await.expect_err("no valid token");

    assert!(
        matches!(error, ClientError::Pool(Error::AllInvalid { .. })),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains("ci-key"), "{text}");
    assert!(!text.contains("CANARY"), "{text}");
}

/// In query mode the token reaches the server, but never the returned
/// URL, the listing's next links, errors or `Debug` output.
#[tokio::test]
async fn query_token_stays_out_of_output() {
    let clock = ManualClock::new(START_MS);
    let mut settings = base_settings();
    settings.auth_query = Some("api_key".to_owned());
    settings.repositories_path = Some("/users/{owner}/repos?per_page=10".to_owned());
    let simulator = simulator(settings, &clock).await;
    simulator.add_account("a", Budget::new(2, HOUR));
    simulator.add_token(CANARY, "a");
    simulator.add_repositories("octo", 15);
    let token = Token::new(CANARY).with_account("a");
    let client = client(&simulator, vec![token], &clock, WaitPolicy::Fail);

    let listed = client.repositories("octo").await.expect("two pages");
    assert_eq!(listed.len(), 15);
    assert_eq!(simulator.last_credential().as_deref(), Some(CANARY));

    let error = client.get("/items").await.expect_err("the budget is spent");
    let debug = format!("{client:?} {error} {error:?} {listed:?}");
    assert!(!debug.contains("CANARY"), "{debug}");
}
