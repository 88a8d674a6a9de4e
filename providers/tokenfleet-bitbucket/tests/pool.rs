//! End-to-end behaviour of the Bitbucket provider: a token pool and client
//! against the Bitbucket simulator, on a shared manual clock.

use std::io::Write;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use http::StatusCode;
use tokenfleet_bitbucket::{AuthScheme, Bitbucket};
use tokenfleet_client::{Client, ClientError};
use tokenfleet_core::{Clock, Error, ManualClock, Token, TokenPool, TokenStatus, WaitPolicy};
use tokenfleet_testkit::bitbucket::Allowance;
use tokenfleet_testkit::BitbucketSimulator;

/// 2023-11-14T22:14:00Z, a whole second so that `Date` matches the clock.
const START_MS: u64 = 1_700_000_040_000;

const HOUR: Duration = Duration::from_secs(3_600);
const HOUR_MS: u64 = 3_600_000;
const MINUTE_MS: u64 = 60_000;

/// A `Date` of second `S` stands for any instant up to `S + 999` ms, and
/// the provider logs the latest.
const DATE_SLACK_MS: u64 = 999;

const CANARY: &str = "ATBB_CANARY0000000000000000000000000000";

/// The simulator and the clock it shares with the pool.
struct Bench {
    sim: BitbucketSimulator,
    clock: ManualClock,
}

impl Bench {
    async fn start() -> Self {
        let clock = ManualClock::new(START_MS);
        let sim = BitbucketSimulator::builder()
            .clock(Arc::new(clock.clone()))
            .start()
            .await;
        Self { sim, clock }
    }

    fn provider(&self, auth: AuthScheme, limit: u64) -> Bitbucket {
        Bitbucket::with_base_url(self.sim.uri().parse().unwrap())
            .auth(auth)
            .limit(NonZeroU64::new(limit).unwrap())
    }

    fn client(&self, provider: Bitbucket, tokens: Vec<Token>, wait: WaitPolicy) -> Client {
        let pool = TokenPool::builder(Arc::new(provider))
            .tokens(tokens)
            .strategy(Arc::new(tokenfleet_rate_aware::RateAware::default()))
            .clock(Arc::new(self.clock.clone()))
            .transport(Arc::new(tokenfleet_client::ReqwestTransport::new(
                tokenfleet_client::default_http().unwrap(),
            )))
            .wait(wait)
            .seed(7)
            .build()
            .unwrap();
        Client::builder()
            .backoff(Duration::from_millis(10))
            .seed(7)
            .build(pool)
            .unwrap()
    }

    /// Adds access tokens named `token-0`, `token-1`, ... with `limit` each.
    fn access_tokens(&self, count: usize, limit: u64) -> Vec<Token> {
        (0..count)
            .map(|n| {
                let secret = format!("ATCTT3x_pool{n:020}");
                let allowance = Allowance::new(limit, HOUR);
                self.sim
                    .add_access_token(&format!("token-{n}"), &secret, allowance);
                Token::new(secret)
            })
            .collect()
    }
}

/// Sends `tasks` concurrent requests for `path` and returns how many succeeded.
async fn burst(client: &Client, path: &str, tasks: usize) -> usize {
    let requests = (0..tasks).map(|_| client.get(path));
    let results = join_all(requests).await;
    let mut served = 0;
    for result in results {
        match result {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK);
                served += 1;
            }
            Err(ClientError::Pool(Error::Exhausted(_))) => {}
            Err(error) => panic!("unexpected error: {error}"),
        }
    }
    served
}

fn exhausted_reset(error: &ClientError) -> u64 {
    let ClientError::Pool(Error::Exhausted(exhausted)) = error else {
        panic!("expected an exhaustion error, got {error}");
    };
    exhausted
        .earliest_reset_ms
        .expect("the error names the earliest reset")
}

#[tokio::test]
async fn concurrent_tasks_spend_exact_budget() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(2, 10);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 10),
        tokens,
        WaitPolicy::Fail,
    );

    let served = burst(&client, "/user", 64).await;

    assert_eq!(served, 20);
    assert_eq!(bench.sim.successful_requests(), 20);
    assert_eq!(bench.sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn tokens_of_one_user_share_budget() {
    let bench = Bench::start().await;
    bench.sim.add_user("alice", Allowance::new(10, HOUR));
    bench.sim.add_api_token("alice", "one");
    bench.sim.add_api_token("alice", "two");
    bench.sim.add_api_token("Alice", "three");
    let tokens = vec![
        Token::new("alice:one"),
        Token::new("alice:two"),
        Token::new("Alice:three"),
    ];
    let client = bench.client(
        bench.provider(AuthScheme::Basic, 10),
        tokens,
        WaitPolicy::Fail,
    );

    let served = burst(&client, "/user", 64).await;

    assert_eq!(served, 10, "three tokens of one user have one budget");
    assert_eq!(bench.sim.over_limit_responses(), 0);
    for snapshot in client.pool().tokens().await {
        assert_eq!(snapshot.account, "alice", "{}", snapshot.id);
    }
}

#[tokio::test]
async fn stated_limit_replaces_configured_one() {
    let bench = Bench::start().await;
    bench.sim.add_repositories("team", 1);

    // The configured limit is too high: the header lowers it.
    let tokens = bench.access_tokens(1, 3);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 50),
        tokens,
        WaitPolicy::Fail,
    );
    assert_eq!(burst(&client, "/repositories/team", 64).await, 3);
    assert_eq!(bench.sim.over_limit_responses(), 0);

    // The configured limit is too low: the header raises it.
    let bench = Bench::start().await;
    bench.sim.add_repositories("team", 1);
    let tokens = bench.access_tokens(1, 25);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 5),
        tokens,
        WaitPolicy::Fail,
    );
    assert_eq!(burst(&client, "/repositories/team", 64).await, 25);
    assert_eq!(bench.sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn limit_stated_mid_window_is_taken() {
    let bench = Bench::start().await;
    bench.sim.add_repositories("team", 1);
    let tokens = bench.access_tokens(1, 6);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 50),
        tokens,
        WaitPolicy::Fail,
    );

    // `/user` states no limit, so the configured 50 applies at first.
    client.get("/user").await.unwrap();

    // The listing states the real limit of 6, of which 5 are left. The
    // requests go one by one, because a burst sent before the first listing
    // response would trust the configured 50.
    let mut served = 0;
    let error = loop {
        match client.get("/repositories/team").await {
            Ok(_) => served += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(served, 5);
    assert_eq!(bench.sim.over_limit_responses(), 0);
    assert!(exhausted_reset(&error) >= bench.sim.reset_at("token-0"));
}

#[tokio::test]
async fn work_continues_after_oldest_request_expires() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(1, 3);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 3),
        tokens,
        WaitPolicy::Fail,
    );

    for minute in [0, 10, 20] {
        bench.clock.advance_to(START_MS + minute * MINUTE_MS);
        client.get("/user").await.expect("the budget has room");
    }
    let error = client.get("/user").await.unwrap_err();
    let reset = exhausted_reset(&error);
    assert_eq!(reset, START_MS + HOUR_MS + DATE_SLACK_MS);
    assert!(
        reset >= bench.sim.reset_at("token-0"),
        "a reset never comes early"
    );

    // The first request leaves the window, which frees exactly one unit.
    bench.clock.advance_to(reset);
    client.get("/user").await.expect("one unit is free again");
    let error = client.get("/user").await.unwrap_err();
    assert_eq!(
        exhausted_reset(&error),
        START_MS + 10 * MINUTE_MS + HOUR_MS + DATE_SLACK_MS
    );

    bench.clock.advance_to(exhausted_reset(&error));
    client.get("/user").await.expect("the next unit is free");
    assert_eq!(bench.sim.successful_requests(), 5);
    assert_eq!(bench.sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn waiting_pool_resumes_when_unit_frees() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(1, 2);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 2),
        tokens,
        WaitPolicy::UpTo(2 * HOUR),
    );

    for _ in 0..5 {
        let response = client
            .get("/user")
            .await
            .expect("the pool waits for budget");
        assert_eq!(response.status(), StatusCode::OK);
    }

    let waited = bench.clock.now_ms() - START_MS;
    assert!(waited >= 2 * HOUR_MS, "waited only {waited} ms");
    assert!(waited < 2 * HOUR_MS + 10_000, "waited {waited} ms");
    assert_eq!(bench.sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn spend_out_of_sight_backs_off() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(1, 10);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 10),
        tokens.clone(),
        WaitPolicy::Fail,
    );
    client
        .get("/user")
        .await
        .expect("the first request succeeds");

    // Another program spends the rest; the first 429 reveals it.
    bench.sim.drain("token-0");
    let error = client.get("/user").await.unwrap_err();
    let first = exhausted_reset(&error);
    assert_eq!(first, START_MS + DATE_SLACK_MS + MINUTE_MS);

    // The next try after the backoff is throttled again, and the wait doubles.
    bench.clock.advance_to(first + 1_000);
    let error = client.get("/user").await.unwrap_err();
    let second = exhausted_reset(&error);
    assert_eq!(second, first + 1_000 + 2 * MINUTE_MS);
    assert_eq!(bench.sim.over_limit_responses(), 2);
    assert_eq!(bench.sim.requests_by_token(tokens[0].secret()), 3);

    // Until the backoff ends, no request goes out.
    bench.clock.advance_to(second - 1_000);
    client.get("/user").await.unwrap_err();
    assert_eq!(bench.sim.requests_by_token(tokens[0].secret()), 3);

    // Once the other program's requests leave the window, work resumes.
    bench
        .clock
        .advance_to(START_MS + HOUR_MS + DATE_SLACK_MS + 1_000);
    for _ in 0..5 {
        client.get("/user").await.expect("the budget is back");
    }
    assert_eq!(bench.sim.over_limit_responses(), 2);
}

#[tokio::test]
async fn throttled_account_sends_one_request_per_backoff() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(1, 10);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 10),
        tokens,
        WaitPolicy::Fail,
    );
    client
        .get("/user")
        .await
        .expect("the first request succeeds");
    bench.sim.drain("token-0");
    client.get("/user").await.unwrap_err();
    assert_eq!(bench.sim.over_limit_responses(), 1);

    // After the backoff, concurrent callers share one request.
    bench.clock.advance_to(START_MS + 2 * MINUTE_MS);
    assert_eq!(burst(&client, "/user", 10).await, 0);
    assert_eq!(bench.sim.over_limit_responses(), 2);
}

#[tokio::test]
async fn separate_processes_meet_one_throttle() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(1, 10);

    // Two pools with their own provider values stand for two processes
    // sharing one token: each keeps its own estimate.
    let first = bench.client(
        bench.provider(AuthScheme::Bearer, 10),
        tokens.clone(),
        WaitPolicy::Fail,
    );
    let second = bench.client(
        bench.provider(AuthScheme::Bearer, 10),
        tokens,
        WaitPolicy::Fail,
    );
    for _ in 0..6 {
        first
            .get("/user")
            .await
            .expect("the first process has budget");
    }

    let mut served = 0;
    let error = loop {
        match second.get("/user").await {
            Ok(_) => served += 1,
            Err(error) => break error,
        }
    };

    assert_eq!(served, 4, "the second process gets what is left");
    assert_eq!(
        bench.sim.over_limit_responses(),
        1,
        "one 429 reveals the spend"
    );
    assert_eq!(
        exhausted_reset(&error),
        START_MS + DATE_SLACK_MS + MINUTE_MS
    );
}

#[tokio::test]
async fn throttled_principal_rotates_to_another() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(2, 10);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 10),
        tokens.clone(),
        WaitPolicy::Fail,
    );
    bench.sim.inject_throttles("token-0", 1);

    for _ in 0..4 {
        let response = client.get("/user").await.expect("the other token serves");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.token(), Some(tokens[1].id()));
    }
    assert!(bench.sim.requests_by_token(tokens[0].secret()) <= 1);
}

#[tokio::test]
async fn throttled_everywhere_fails_until_backoff_ends() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(2, 10);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 10),
        tokens.clone(),
        WaitPolicy::Fail,
    );
    bench.sim.inject_throttles("token-0", 1);
    bench.sim.inject_throttles("token-1", 1);

    // Each token is throttled once, then the pool names when the backoff ends.
    let error = client.get("/user").await.unwrap_err();
    assert_eq!(
        exhausted_reset(&error),
        START_MS + DATE_SLACK_MS + MINUTE_MS
    );
    assert_eq!(bench.sim.injected_throttle_responses(), 2);
    for token in &tokens {
        assert_eq!(bench.sim.requests_by_token(token.secret()), 1);
    }

    bench.clock.advance_to(START_MS + 2 * MINUTE_MS);
    let served = burst(&client, "/user", 30).await;
    assert_eq!(served, 20, "both budgets are whole");
    assert_eq!(bench.sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn server_errors_are_retried_and_counted() {
    let bench = Bench::start().await;
    let tokens = bench.access_tokens(1, 3);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 3),
        tokens,
        WaitPolicy::Fail,
    );
    bench.sim.inject_server_errors(1);

    let response = client.get("/user").await.expect("the retry succeeds");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(bench.sim.server_error_responses(), 1);

    // The estimate counts the 500 too, which errs on the safe side.
    let served = burst(&client, "/user", 10).await;
    assert_eq!(served, 1);
    assert_eq!(bench.sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn malformed_basic_token_is_excluded_at_start() {
    let bench = Bench::start().await;
    bench.sim.add_user("alice", Allowance::new(10, HOUR));
    bench.sim.add_api_token("alice", "app-pass");
    let malformed = Token::new(CANARY).with_label("no-username");
    let valid = Token::new("alice:app-pass");
    let client = bench.client(
        bench.provider(AuthScheme::Basic, 10),
        vec![malformed.clone(), valid.clone()],
        WaitPolicy::Fail,
    );

    for _ in 0..3 {
        let response = client.get("/user").await.unwrap();
        assert_eq!(response.token(), Some(valid.id()));
    }
    assert_eq!(
        bench.sim.total_requests(),
        3,
        "the malformed token is never sent"
    );

    let snapshots = client.pool().tokens().await;
    let status = snapshots
        .iter()
        .find(|snapshot| snapshot.id == *malformed.id())
        .unwrap()
        .status
        .clone();
    assert_eq!(status, TokenStatus::Invalid);
}

#[tokio::test]
async fn only_malformed_tokens_is_an_error() {
    let bench = Bench::start().await;
    let client = bench.client(
        bench.provider(AuthScheme::Basic, 10),
        vec![Token::new(CANARY)],
        WaitPolicy::Fail,
    );

    let error = client.get("/user").await.unwrap_err();
    assert!(
        matches!(error, ClientError::Pool(Error::AllInvalid { .. })),
        "{error}"
    );
    assert!(!error.to_string().contains("CANARY"), "{error}");
    assert_eq!(bench.sim.total_requests(), 0);
}

#[tokio::test]
async fn listing_follows_body_links() {
    let clock = ManualClock::new(START_MS);
    let sim = BitbucketSimulator::builder()
        .clock(Arc::new(clock.clone()))
        .report_size(false)
        .start()
        .await;
    let bench = Bench { sim, clock };
    bench.sim.add_repositories("team", 230);
    let tokens = bench.access_tokens(1, 100);
    let client = bench.client(
        bench.provider(AuthScheme::Bearer, 100),
        tokens.clone(),
        WaitPolicy::Fail,
    );

    let listed = client.repositories("team").await.unwrap();
    assert_eq!(
        bench.sim.requests_by_token(tokens[0].secret()),
        3,
        "every page carries the token"
    );

    let names: Vec<String> = listed.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, bench.sim.repository_names("team"));
    assert_eq!(bench.sim.total_requests(), 3, "three pages of 100");
    assert!(listed.iter().all(|r| r.owner == "team"));
    assert!(listed.iter().any(|r| r.fork));
    assert!(listed.iter().any(|r| r.default_branch.is_none()));

    let error = client.repositories("../admin").await.unwrap_err();
    assert!(error.to_string().contains("../admin"), "{error}");
    assert_eq!(bench.sim.total_requests(), 3);
}

/// A log writer that keeps every line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn canary_secret_never_appears() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bench = Bench::start().await;
    bench.sim.add_user("alice", Allowance::new(2, HOUR));
    bench.sim.add_api_token("alice", CANARY);
    bench.sim.add_user("bob", Allowance::new(5, HOUR));
    bench.sim.add_api_token("bob", CANARY);
    let provider = bench.provider(AuthScheme::Basic, 2);
    let provider_debug = format!("{provider:?}");
    let tokens = vec![
        Token::new(format!("alice:{CANARY}")),
        Token::new(format!("bob:{CANARY}")),
        Token::new(CANARY),
    ];
    let client = bench.client(provider, tokens, WaitPolicy::Fail);

    // Rotation, a 500, a 429 and a 401 all pass through the pool.
    let mut seen = vec![provider_debug];
    bench.sim.inject_server_errors(1);
    bench.sim.inject_throttles("alice", 1);
    for _ in 0..4 {
        seen.push(format!("{:?}", client.get("/user").await));
    }
    bench.sim.revoke_token(&format!("bob:{CANARY}"));
    for _ in 0..4 {
        seen.push(format!("{:?}", client.get("/user").await));
    }
    if let Err(error) = client.get("/user").await {
        seen.push(format!("{error} {error:?}"));
    }
    seen.push(format!("{client:?} {:?}", client.pool()));
    seen.push(format!("{:?}", client.pool().tokens().await));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "the pool logged nothing");
    assert!(!logs.contains("CANARY"), "{logs}");
    for text in seen {
        assert!(!text.contains("CANARY"), "{text}");
    }
}
