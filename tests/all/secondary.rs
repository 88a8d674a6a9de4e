//! Secondary limits: rotation, cooldowns, reworded messages and retry storms.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use tokenfleet::client::ClientBuilder;
use tokenfleet::{ClientError, Clock, LimitKind, ManualClock, Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::{AccountLimits, GithubSimulator};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{
    self, dated, github, id, is_exhausted, rate_limit_body, snapshot, warm_up, with_limits, HOUR,
    START_MS,
};

const MINUTE_MS: u64 = 60_000;

/// Starts a simulator with accounts alice and bob, one token each, where
/// bob has spent more so that the pool tries alice first.
async fn alice_and_bob(clock: &ManualClock) -> GithubSimulator {
    let sim = support::simulator(clock).await;
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default());
        sim.add_token(&format!("ghp_{login}"), login);
    }
    sim.set_remaining("bob", "core", 4000);
    sim.set_remaining("bob", "search", 20);
    sim
}

fn both_tokens() -> Vec<Token> {
    vec![
        Token::new("ghp_alice").with_account("alice"),
        Token::new("ghp_bob").with_account("bob"),
    ]
}

fn secondary_until(until_ms: u64) -> TokenStatus {
    TokenStatus::RateLimited {
        until_ms,
        bucket: None,
        kind: LimitKind::Secondary,
    }
}

#[tokio::test]
async fn secondary_rotates_to_other_account() {
    let clock = support::clock();
    let sim = alice_and_bob(&clock).await;
    let fleet = support::fleet(&sim.uri(), both_tokens(), &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.inject_secondary_limit("alice", 1, Some(30));

    let response = github(&fleet).get("/user").await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.token(), Some(&id("ghp_bob")));
    assert_eq!(response.attempts(), 2);
    assert_eq!(clock.now_ms(), START_MS, "the pool slept");
    assert_eq!(sim.secondary_limit_responses(), 1);
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, secondary_until(START_MS + 30_000));
}

#[tokio::test]
async fn secondary_429_cools_for_retry_after() {
    let clock = support::clock();
    let sim = GithubSimulator::builder()
        .clock(Arc::new(clock.clone()))
        .primary_status(429)
        .start()
        .await;
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default());
        sim.add_token(&format!("ghp_{login}"), login);
    }
    sim.set_remaining("bob", "core", 4000);
    let fleet = support::fleet(&sim.uri(), both_tokens(), &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.inject_secondary_limit("alice", 1, Some(30));

    let response = github(&fleet).get("/user").await.unwrap();

    assert_eq!(response.token(), Some(&id("ghp_bob")));
    assert_eq!(sim.over_limit_responses(), 0);
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, secondary_until(START_MS + 30_000));
}

#[tokio::test]
async fn lone_token_waits_out_retry_after() {
    let clock = support::clock();
    let sim = alice_and_bob(&clock).await;
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let wait = WaitPolicy::UpTo(Duration::from_secs(600));
    let fleet = support::fleet(&sim.uri(), tokens, &clock, wait);
    warm_up(&fleet).await;
    sim.inject_secondary_limit("alice", 1, Some(30));
    let before = sim.requests_by_token("ghp_alice");

    let response = github(&fleet).get("/user").await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(sim.requests_by_token("ghp_alice"), before + 2);
    let waited = clock.now_ms() - START_MS;
    assert!(waited >= 30_000, "retried after {waited} ms");
    assert!(waited < MINUTE_MS, "retried after {waited} ms");
}

#[tokio::test]
async fn secondary_without_retry_after_cools_a_minute() {
    let clock = support::clock();
    let sim = alice_and_bob(&clock).await;
    let fleet = support::fleet(&sim.uri(), both_tokens(), &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.inject_secondary_limit("alice", 1, None);

    let response = github(&fleet).get("/search/issues?q=bug").await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.token(), Some(&id("ghp_bob")));
    assert_eq!(clock.now_ms(), START_MS, "the pool slept");
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    let TokenStatus::RateLimited { until_ms, kind, .. } = alice.status else {
        panic!("alice is not cooling down: {:?}", alice.status);
    };
    assert_eq!(kind, LimitKind::Secondary);
    assert!(
        until_ms >= START_MS + MINUTE_MS,
        "cooldown ends at {until_ms}"
    );
}

#[tokio::test]
async fn lone_token_retries_once_after_cooldown() {
    let clock = support::clock();
    let sim = alice_and_bob(&clock).await;
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let wait = WaitPolicy::UpTo(Duration::from_secs(600));
    let fleet = support::fleet(&sim.uri(), tokens, &clock, wait);
    warm_up(&fleet).await;
    sim.inject_secondary_limit("alice", 1, None);
    let before = sim.requests_by_token("ghp_alice");

    let response = github(&fleet).get("/search/issues?q=bug").await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(sim.requests_by_token("ghp_alice"), before + 2);
    let waited = clock.now_ms() - START_MS;
    assert!(waited >= MINUTE_MS, "retried after {waited} ms");
    assert!(waited < 2 * MINUTE_MS, "retried after {waited} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_secondary_limits_count_once() {
    let clock = support::clock();
    let sim = alice_and_bob(&clock).await;
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.inject_secondary_limit("alice", 10, None);

    let tasks = (0..10).map(|_| {
        let client = github(&fleet).clone();
        tokio::spawn(async move { client.get("/user").await })
    });
    let results = join_all(tasks).await;

    for result in results {
        let error = result.unwrap().unwrap_err();
        assert!(is_exhausted(&error), "unexpected error: {error}");
    }
    assert!(sim.secondary_limit_responses() >= 1);
    // Responses to requests sent before the cooldown began count as one
    // strike, so the first cooldown stays one minute.
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, secondary_until(START_MS + MINUTE_MS));
}

/// Secondary-limit messages GitHub has used, with the documentation URL
/// each came with.
const SECONDARY_BODIES: [&str; 4] = [
    r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#,
    r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:1111 and timestamp 2023-11-14 22:13:20 UTC.","documentation_url":"https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#secondary-rate-limits"}"#,
    r#"{"message":"You have exceeded a secondary rate limit and have been temporarily blocked from content creation. Please retry your request again later.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#,
    r#"{"message":"You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.","documentation_url":"https://developer.github.com/v3/#abuse-rate-limits"}"#,
];

/// Sends `GET /repos/o/r` to a server that responds once with `body` and
/// `retry_after`, then with 200, and returns the status of the token that
/// met the limit.
async fn status_after_secondary(body: &str, retry_after: Option<u64>) -> TokenStatus {
    let clock = support::clock();
    let server = MockServer::start().await;
    let reset_s = START_MS / 1000 + 3600;
    let status = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 5000, reset_s));
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .respond_with(dated(&clock, status))
        .mount(&server)
        .await;
    let mut limited = ResponseTemplate::new(403).set_body_raw(body.to_owned(), "application/json");
    limited = with_limits(limited, "core", 5000, 4000, reset_s);
    if let Some(seconds) = retry_after {
        limited = limited.insert_header("retry-after", seconds.to_string());
    }
    Mock::given(method("GET"))
        .and(path("/repos/o/r"))
        .respond_with(dated(&clock, limited))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let found = with_limits(
        ResponseTemplate::new(200).set_body_json(json!({"full_name": "o/r"})),
        "core",
        5000,
        3999,
        reset_s,
    );
    Mock::given(method("GET"))
        .and(path("/repos/o/r"))
        .respond_with(dated(&clock, found))
        .with_priority(2)
        .mount(&server)
        .await;
    let tokens = vec![
        Token::new("ghp_first").with_account("first"),
        Token::new("ghp_second").with_account("second"),
    ];
    let fleet = support::fleet(&server.uri(), tokens, &clock, WaitPolicy::Fail);

    let response = github(&fleet).get("/repos/o/r").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert_eq!(clock.now_ms(), START_MS, "the pool slept");

    let limited: Vec<TokenStatus> = fleet
        .tokens("github")
        .await
        .into_iter()
        .map(|snapshot| snapshot.status)
        .filter(|status| !status.is_available())
        .collect();
    assert_eq!(limited.len(), 1, "{limited:?}");
    limited[0].clone()
}

#[tokio::test]
async fn reworded_secondary_messages_cool_down() {
    for (position, body) in SECONDARY_BODIES.iter().enumerate() {
        let with_wait = status_after_secondary(body, Some(30)).await;
        assert_eq!(
            with_wait,
            secondary_until(START_MS + 30_000),
            "message {position} with retry-after"
        );

        let without_wait = status_after_secondary(body, None).await;
        let TokenStatus::RateLimited { until_ms, kind, .. } = without_wait else {
            panic!("message {position}: not rate-limited: {without_wait:?}");
        };
        assert_eq!(kind, LimitKind::Secondary, "message {position}");
        assert!(until_ms >= START_MS + MINUTE_MS, "message {position}");
    }
}

/// A server that punishes code searches: any search within a minute of
/// the last secondary-limit response gets another one and extends the
/// block by a minute. With `forever`, every search is refused.
#[derive(Clone)]
struct PenaltyServer {
    clock: ManualClock,
    forever: bool,
    state: Arc<Mutex<Penalty>>,
}

#[derive(Debug, Default)]
struct Penalty {
    blocked_until_ms: u64,
    /// Clock time and status of every search.
    searches: Vec<(u64, u16)>,
}

impl PenaltyServer {
    async fn start(clock: &ManualClock, forever: bool) -> (MockServer, Self) {
        let penalty = Self {
            clock: clock.clone(),
            forever,
            state: Arc::new(Mutex::new(Penalty {
                blocked_until_ms: START_MS + MINUTE_MS,
                searches: Vec::new(),
            })),
        };
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(penalty.clone())
            .mount(&server)
            .await;
        (server, penalty)
    }

    fn searches(&self) -> Vec<(u64, u16)> {
        self.state.lock().unwrap().searches.clone()
    }
}

impl Respond for PenaltyServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now_ms = self.clock.now_ms();
        let reset_s = now_ms / 1000 + 60;
        let date = tokenfleet::core::clock::format_epoch_ms(now_ms);
        if request.url.path() == "/rate_limit" {
            return ResponseTemplate::new(200)
                .set_body_json(rate_limit_body(10, 10, reset_s))
                .insert_header("date", date);
        }

        let mut state = self.state.lock().unwrap();
        let blocked = self.forever || now_ms < state.blocked_until_ms;
        let template = if blocked {
            state.blocked_until_ms = now_ms + MINUTE_MS;
            let body = SECONDARY_BODIES[0];
            ResponseTemplate::new(403).set_body_raw(body.to_owned(), "application/json")
        } else {
            let body = json!({"total_count": 0, "incomplete_results": false, "items": []});
            ResponseTemplate::new(200).set_body_json(body)
        };
        let status = if blocked { 403 } else { 200 };
        state.searches.push((now_ms, status));
        with_limits(template, "code_search", 10, 9, reset_s).insert_header("date", date)
    }
}

/// Sends one search through a client that gives up at the first limit,
/// so that the account starts cooling down without anyone waiting, then
/// ten concurrent searches through the fleet's own client.
async fn storm(
    clock: &ManualClock,
    server: &MockServer,
    client: ClientBuilder,
) -> Vec<Result<tokenfleet::Response, ClientError>> {
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet_with(&server.uri(), tokens, clock, WaitPolicy::UpTo(HOUR), client);
    let pool = fleet.pool("github").unwrap().clone();
    let impatient = ClientBuilder::default()
        .max_rotations(0)
        .build(pool)
        .unwrap();
    let first = impatient.get("/search/code?q=x").await.unwrap_err();
    assert!(
        matches!(first, ClientError::TooManyAttempts { .. }),
        "{first}"
    );

    let tasks = (0..10).map(|_| {
        let client = github(&fleet).clone();
        tokio::spawn(async move { client.get("/search/code?q=x").await })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect()
}

#[tokio::test]
async fn penalty_ends_after_one_probe() {
    let clock = support::clock();
    let (server, penalty) = PenaltyServer::start(&clock, false).await;

    let results = storm(&clock, &server, ClientBuilder::default()).await;

    for result in &results {
        let response = result.as_ref().unwrap();
        assert_eq!(response.status(), 200);
    }
    let searches = penalty.searches();
    assert_eq!(searches[0], (START_MS, 403));
    // The first request after the block is the only one in its window,
    // and it comes after a minute.
    let (probe_ms, probe_status) = searches[1];
    assert!(probe_ms >= START_MS + MINUTE_MS, "probe at {probe_ms}");
    assert!(probe_ms < START_MS + 2 * MINUTE_MS, "probe at {probe_ms}");
    assert_eq!(probe_status, 200);
    assert_eq!(searches.len(), 11);
}

#[tokio::test]
async fn endless_secondary_limits_end_in_error() {
    let clock = support::clock();
    let (server, penalty) = PenaltyServer::start(&clock, true).await;
    let client = ClientBuilder::default().max_rotations(3);

    let results = storm(&clock, &server, client).await;

    for result in &results {
        let error = result.as_ref().unwrap_err();
        let typed = matches!(error, ClientError::TooManyAttempts { .. }) || is_exhausted(error);
        assert!(typed, "unexpected error: {error}");
    }
    let searches = penalty.searches();
    assert!(searches.len() <= 1 + 10 * 4, "{} searches", searches.len());
    let mut gaps = Vec::new();
    for pair in searches.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= MINUTE_MS,
            "two searches {gap} ms apart: {searches:?}"
        );
        gaps.push(gap);
    }
    assert!(gaps[1] > gaps[0], "the cooldown does not grow: {gaps:?}");
    let longest = gaps.iter().max().unwrap();
    assert!(*longest <= 16 * MINUTE_MS, "cooldown of {longest} ms");
}
