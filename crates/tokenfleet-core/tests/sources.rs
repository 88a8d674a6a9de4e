//! Tokens whose secret a source fetches: first use, refresh ahead of
//! expiry in the background, failures that take out only that token.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokenfleet_core::{
    Bucket, Candidate, ChoiceContext, Clock, Error, ManualClock, Outcome, Provider, ResponseView,
    RotationStrategy, SourceError, SourcedSecret, Token, TokenPool, TokenSource, TokenStatus,
    Transport, TransportError, Verdict, WaitPolicy,
};
use url::Url;

const START_MS: u64 = 1_700_000_000_000;
const HOUR_MS: u64 = 3_600_000;

#[derive(Debug, Serialize, Deserialize)]
struct QuietProvider {
    base_url: Url,
}

#[typetag::serde(name = "quiet_source_test")]
#[async_trait::async_trait]
impl Provider for QuietProvider {
    fn kind(&self) -> &'static str {
        "quiet_source_test"
    }
    fn base_url(&self) -> &Url {
        &self.base_url
    }
    fn default_bucket(&self) -> Bucket {
        Bucket::from_static("core")
    }
    fn bucket_for(&self, _: &Method, _: &Url) -> Bucket {
        Bucket::from_static("core")
    }
    fn authorize(&self, _: &mut HeaderMap, _: &Token) {}
    fn classify(&self, _: &ResponseView<'_>) -> Verdict {
        Verdict::new(Outcome::Answered)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FirstStrategy {}

#[typetag::serde(name = "first_source_test")]
impl RotationStrategy for FirstStrategy {
    fn name(&self) -> &'static str {
        "first_source_test"
    }
    fn choose(&self, _: &[Candidate], _: &ChoiceContext) -> Option<usize> {
        Some(0)
    }
}

/// A transport the sources below never use.
#[derive(Debug)]
struct NoTransport;

#[async_trait::async_trait]
impl Transport for NoTransport {
    async fn send(&self, _: http::Request<Bytes>) -> Result<http::Response<Bytes>, TransportError> {
        Err(TransportError {
            message: "no network in this test".to_owned(),
        })
    }
}

/// Hands out `secret-1`, `secret-2`, … each valid for an hour from the
/// fetch, or fails while `failing` is set.
#[derive(Debug)]
struct CountingSource {
    fetches: AtomicU32,
    failing: AtomicBool,
    /// How long each secret lives from its fetch, in milliseconds.
    lifetime_ms: std::sync::atomic::AtomicU64,
}

impl CountingSource {
    fn new(failing: bool) -> Arc<Self> {
        Arc::new(Self {
            fetches: AtomicU32::new(0),
            failing: AtomicBool::new(failing),
            lifetime_ms: std::sync::atomic::AtomicU64::new(HOUR_MS),
        })
    }
}

#[async_trait::async_trait]
impl TokenSource for CountingSource {
    fn describe(&self) -> String {
        "counting source".to_owned()
    }

    async fn fetch(&self, _: &dyn Transport, now_ms: u64) -> Result<SourcedSecret, SourceError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SourceError {
                source_name: self.describe(),
                message: "the key was rejected".to_owned(),
            });
        }
        let number = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(SourcedSecret {
            secret: SecretString::from(format!("secret-{number}")),
            expires_at_ms: Some(now_ms + self.lifetime_ms.load(Ordering::SeqCst)),
            account: Some("installation-7".to_owned()),
        })
    }
}

fn pool(clock: &ManualClock, fixed: Option<Token>, source: Arc<CountingSource>) -> TokenPool {
    let mut builder = TokenPool::builder(Arc::new(QuietProvider {
        base_url: Url::parse("http://127.0.0.1:9").unwrap(),
    }))
    .strategy(Arc::new(FirstStrategy {}))
    .clock(Arc::new(clock.clone()))
    .transport(Arc::new(NoTransport))
    .sourced_token(Token::sourced("app"), source)
    .wait(WaitPolicy::Fail);
    if let Some(token) = fixed {
        builder = builder.token(token);
    }
    builder.build().unwrap()
}

fn core() -> Bucket {
    Bucket::from_static("core")
}

/// Lets spawned fetch tasks run.
async fn settle_tasks() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn first_acquire_waits_for_the_fetch() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(false);
    let pool = pool(&clock, None, Arc::clone(&source));

    let lease = pool
        .acquire(&core())
        .await
        .expect("the fetched token serves");

    assert_eq!(lease.token().secret(), "secret-1");
    assert_eq!(lease.token().id().as_str(), "app");
    assert_eq!(lease.account(), "installation-7");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn secret_is_refreshed_ahead_of_expiry() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(false);
    let pool = pool(&clock, None, Arc::clone(&source));
    drop(pool.acquire(&core()).await.unwrap());

    // 56 minutes in: within five minutes of expiry, so a refresh starts,
    // but the current secret still serves without waiting for it.
    clock.advance(Duration::from_secs(56 * 60));
    let lease = pool.acquire(&core()).await.unwrap();
    assert_eq!(lease.token().secret(), "secret-1");
    drop(lease);
    settle_tasks().await;

    let lease = pool.acquire(&core()).await.unwrap();
    assert_eq!(lease.token().secret(), "secret-2");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failed_fetch_leaves_other_tokens_serving() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(true);
    let fixed = Token::new("fixed-secret");
    let pool = pool(&clock, Some(fixed.clone()), Arc::clone(&source));

    for _ in 0..3 {
        let lease = pool.acquire(&core()).await.expect("the fixed token serves");
        assert_eq!(lease.token().id(), fixed.id());
        drop(lease);
        settle_tasks().await;
    }

    let snapshots = pool.tokens().await;
    let app = snapshots.iter().find(|t| t.id.as_str() == "app").unwrap();
    let TokenStatus::Unavailable {
        reason,
        retry_at_ms,
    } = &app.status
    else {
        panic!("expected unavailable, got {}", app.status);
    };
    assert!(reason.contains("counting source"), "{reason}");
    assert!(reason.contains("the key was rejected"), "{reason}");
    assert_eq!(*retry_at_ms, Some(START_MS + 30_000));
}

#[tokio::test]
async fn failed_source_alone_names_retry_time() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(true);
    let pool = pool(&clock, None, Arc::clone(&source));

    let error = pool.acquire(&core()).await.expect_err("no secret to use");
    let Error::Exhausted(exhausted) = &error else {
        panic!("expected exhaustion, got {error}");
    };
    assert_eq!(exhausted.earliest_reset_ms, Some(START_MS + 30_000));

    // Once the source works again, the retry after the wait succeeds.
    source.failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(31));
    let lease = pool
        .acquire(&core())
        .await
        .expect("the retry fetches a secret");
    assert_eq!(lease.token().secret(), "secret-1");
}

#[tokio::test]
async fn rejected_secret_is_fetched_again_once() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(false);
    let pool = pool(&clock, None, Arc::clone(&source));

    let lease = pool.acquire(&core()).await.unwrap();
    lease
        .complete(&Verdict::new(Outcome::InvalidToken))
        .await
        .unwrap();
    let lease = pool.acquire(&core()).await.expect("a fresh secret serves");
    assert_eq!(lease.token().secret(), "secret-2");

    // A second rejection shortly after makes the token invalid.
    lease
        .complete(&Verdict::new(Outcome::InvalidToken))
        .await
        .unwrap();
    let error = pool
        .acquire(&core())
        .await
        .expect_err("the token is invalid");
    assert!(matches!(error, Error::AllInvalid { .. }), "{error}");
    assert_eq!(clock.now_ms(), START_MS);
}

#[tokio::test]
async fn short_lived_secret_serves_without_refetch_loop() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(false);
    source.lifetime_ms.store(30_000, Ordering::SeqCst);
    let pool = pool(&clock, None, Arc::clone(&source));

    // Two minutes at one request a second: a 30 s secret is fetched about
    // every 15 s, not once per request.
    for _ in 0..120 {
        let lease = pool.acquire(&core()).await.expect("a secret serves");
        drop(lease);
        settle_tasks().await;
        clock.advance(Duration::from_secs(1));
    }
    let fetches = source.fetches.load(Ordering::SeqCst);
    assert!((5..=12).contains(&fetches), "{fetches} fetches");
}

#[tokio::test]
async fn secret_expired_on_arrival_is_a_failure() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(false);
    source.lifetime_ms.store(0, Ordering::SeqCst);
    let pool = pool(&clock, None, Arc::clone(&source));

    let error = pool.acquire(&core()).await.expect_err("no usable secret");
    assert!(matches!(error, Error::Exhausted(_)), "{error}");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    let status = pool.tokens().await[0].status.to_string();
    assert!(status.contains("expired 0 ms ago"), "{status}");
}

#[tokio::test]
async fn rejections_of_one_secret_count_once() {
    let clock = ManualClock::new(START_MS);
    let source = CountingSource::new(false);
    let pool = pool(&clock, None, Arc::clone(&source));
    // A first request states an unlimited budget, so several may be in flight.
    let warm = pool.acquire(&core()).await.unwrap();
    warm.complete(&Verdict::new(Outcome::Answered))
        .await
        .unwrap();

    // Three requests go out with secret-1, which the provider then revokes.
    let leases = [
        pool.acquire(&core()).await.unwrap(),
        pool.acquire(&core()).await.unwrap(),
        pool.acquire(&core()).await.unwrap(),
    ];
    for lease in leases {
        assert_eq!(lease.token().secret(), "secret-1");
        lease
            .complete(&Verdict::new(Outcome::InvalidToken))
            .await
            .unwrap();
    }

    let lease = pool.acquire(&core()).await.expect("a fresh secret serves");
    assert_eq!(lease.token().secret(), "secret-2");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
}
