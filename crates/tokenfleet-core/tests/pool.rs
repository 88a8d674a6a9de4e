//! Pool behaviour with an in-test "server": a counter per account that
//! responds like a provider would, so no HTTP is involved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokenfleet_core::store::{
    Admission, BudgetKey, BudgetView, LocalObservation, Settlement, StoreError,
};
use tokenfleet_core::{
    Bucket, Candidate, ChoiceContext, Clock, Error, LimitKind, ManualClock, Observation, Outcome,
    Provider, ResponseView, RotationStrategy, Token, TokenPool, TokenStatus, Verdict, WaitPolicy,
};
use url::Url;

const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

#[derive(Debug, Serialize, Deserialize)]
struct PlainProvider {
    base_url: Url,
}

#[typetag::serde(name = "plain_test")]
#[async_trait::async_trait]
impl Provider for PlainProvider {
    fn kind(&self) -> &'static str {
        "plain_test"
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

/// Picks the first candidate, or panics / misbehaves on request.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FirstStrategy {
    #[serde(default)]
    mode: u8,
}

#[typetag::serde(name = "first_test")]
impl RotationStrategy for FirstStrategy {
    fn name(&self) -> &'static str {
        "first_test"
    }
    fn choose(&self, candidates: &[Candidate], _: &ChoiceContext) -> Option<usize> {
        match self.mode {
            1 => panic!("broken strategy"),
            2 => Some(candidates.len() + 3),
            _ => Some(0),
        }
    }
}

/// A provider-side budget: the numbers a real server would keep.
#[derive(Debug)]
struct Server {
    clock: ManualClock,
    accounts: Mutex<Vec<(String, u64, u64)>>, // (account, remaining, reset_ms)
    served: AtomicU64,
    over_limit: AtomicU64,
}

impl Server {
    fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            accounts: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
            over_limit: AtomicU64::new(0),
        }
    }

    fn add(&self, account: &str, remaining: u64, reset_ms: u64) {
        self.accounts
            .lock()
            .push((account.to_owned(), remaining, reset_ms));
    }

    /// Responds to one request charged to `account`.
    fn answer(&self, account: &str, limit: u64) -> Verdict {
        let mut accounts = self.accounts.lock();
        let entry = accounts
            .iter_mut()
            .find(|(name, _, _)| name == account)
            .expect("account registered");
        let now = self.clock.now_ms();
        if now >= entry.2 {
            entry.1 = limit;
            entry.2 = now + 3_600_000;
        }
        let observation = |remaining| Observation {
            bucket: Some(Bucket::from_static("core")),
            limit,
            remaining,
            used: Some(limit - remaining),
            reset_ms: entry.2,
        };
        if entry.1 == 0 {
            self.over_limit.fetch_add(1, Ordering::SeqCst);
            return Verdict::new(Outcome::PrimaryLimit {
                reset_ms: Some(entry.2),
            })
            .with_observation(Some(observation(0)));
        }
        entry.1 -= 1;
        self.served.fetch_add(1, Ordering::SeqCst);
        Verdict::new(Outcome::Answered).with_observation(Some(observation(entry.1)))
    }
}

fn provider() -> Arc<dyn Provider> {
    Arc::new(PlainProvider {
        base_url: Url::parse("http://127.0.0.1:9").unwrap(),
    })
}

fn core() -> Bucket {
    Bucket::from_static("core")
}

/// Builds a pool whose budgets are already known, as after a first response.
async fn known_pool(
    clock: &ManualClock,
    server: &Server,
    tokens: Vec<Token>,
    limit: u64,
    wait: WaitPolicy,
) -> TokenPool {
    let pool = TokenPool::builder(provider())
        .tokens(tokens)
        .strategy(Arc::new(FirstStrategy::default()))
        .clock(Arc::new(clock.clone()))
        .wait(wait)
        .seed(7)
        .build()
        .unwrap();
    // One request per account teaches the pool each budget.
    let mut seen = Vec::new();
    for token in pool.tokens().await {
        if seen.contains(&token.account) {
            continue;
        }
        seen.push(token.account.clone());
        let lease = pool.acquire(&core()).await.unwrap();
        let verdict = server.answer(lease.account(), limit);
        lease.complete(&verdict).await.unwrap();
    }
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_never_overshoot_budget() {
    let clock = ManualClock::new(1_000_000);
    let server = Arc::new(Server::new(clock.clone()));
    for account in ["a", "b", "c"] {
        server.add(account, 0, 0);
    }
    let tokens = vec![
        Token::new("t1").with_account("a"),
        Token::new("t2").with_account("b"),
        Token::new("t3").with_account("c"),
    ];
    let pool = known_pool(&clock, &server, tokens, 10, WaitPolicy::Fail).await;
    // 27 units remain after the three learning requests.
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let pool = pool.clone();
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let lease = pool.acquire(&core()).await?;
            tokio::task::yield_now().await;
            let verdict = server.answer(lease.account(), 10);
            lease.complete(&verdict).await?;
            Ok::<_, Error>(())
        }));
    }
    let mut succeeded = 0;
    let mut exhausted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => succeeded += 1,
            Err(Error::Exhausted(_)) => exhausted += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(succeeded, 27);
    assert_eq!(exhausted, 64 - 27);
    assert_eq!(server.over_limit.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tokens_of_one_account_share_budget() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("shared", 0, 0);
    let tokens = vec![
        Token::new("t1").with_account("shared"),
        Token::new("t2").with_account("shared"),
    ];
    let pool = known_pool(&clock, &server, tokens, 5, WaitPolicy::Fail).await;
    let mut served = 0;
    while let Ok(lease) = pool.acquire(&core()).await {
        let verdict = server.answer(lease.account(), 5);
        lease.complete(&verdict).await.unwrap();
        served += 1;
    }
    assert_eq!(served, 4);
    assert_eq!(server.over_limit.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn exhausted_error_names_earliest_reset() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("a", 0, 0);
    let pool = known_pool(
        &clock,
        &server,
        vec![Token::new("t1").with_account("a")],
        1,
        WaitPolicy::Fail,
    )
    .await;
    let error = pool.acquire(&core()).await.unwrap_err();
    let reset = error.earliest_reset_ms().expect("a reset time");
    assert_eq!(reset, 1_000_000 + 3_600_000);
    let Error::Exhausted(exhausted) = &error else {
        panic!("expected exhaustion, got {error}");
    };
    assert_eq!(exhausted.tokens.len(), 1);
    assert!(matches!(
        exhausted.tokens[0].status,
        TokenStatus::RateLimited {
            kind: LimitKind::Primary,
            ..
        }
    ));
    let message = error.to_string();
    assert!(message.contains("budget returns at"), "{message}");
    assert!(message.contains("in 3600 s"), "{message}");
}

#[tokio::test]
async fn wait_policy_waits_for_reset() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("a", 0, 0);
    let wait = WaitPolicy::UpTo(Duration::from_secs(2 * 3600));
    let pool = known_pool(
        &clock,
        &server,
        vec![Token::new("t1").with_account("a")],
        1,
        wait,
    )
    .await;
    let lease = pool.acquire(&core()).await.unwrap();
    assert!(clock.now_ms() >= 1_000_000 + 3_600_000);
    let verdict = server.answer(lease.account(), 1);
    lease.complete(&verdict).await.unwrap();
    assert_eq!(server.over_limit.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wait_beyond_maximum_fails_at_once() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("a", 0, 0);
    let wait = WaitPolicy::UpTo(Duration::from_secs(60));
    let pool = known_pool(
        &clock,
        &server,
        vec![Token::new("t1").with_account("a")],
        1,
        wait,
    )
    .await;
    let before = clock.now_ms();
    assert!(matches!(
        pool.acquire(&core()).await,
        Err(Error::Exhausted(_))
    ));
    assert_eq!(clock.now_ms(), before);
}

#[tokio::test]
async fn invalid_token_is_never_chosen_again() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("b", 0, 0);
    let pool = TokenPool::builder(provider())
        .tokens([Token::new("bad"), Token::new("good").with_account("b")])
        .strategy(Arc::new(FirstStrategy::default()))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let lease = pool.acquire(&core()).await.unwrap();
    assert_eq!(lease.token().secret(), "bad");
    lease
        .complete(&Verdict::new(Outcome::InvalidToken))
        .await
        .unwrap();
    for _ in 0..3 {
        let lease = pool.acquire(&core()).await.unwrap();
        assert_eq!(lease.token().secret(), "good");
        let verdict = server.answer("b", 100);
        lease.complete(&verdict).await.unwrap();
    }
    // Past any reset the invalid token stays out.
    clock.advance(Duration::from_secs(7200));
    let lease = pool.acquire(&core()).await.unwrap();
    assert_eq!(lease.token().secret(), "good");
    let statuses = pool.tokens().await;
    assert_eq!(statuses[0].status, TokenStatus::Invalid);
}

#[tokio::test]
async fn all_invalid_is_an_error_naming_tokens() {
    let pool = TokenPool::builder(provider())
        .token(Token::new(CANARY).with_label("only"))
        .strategy(Arc::new(FirstStrategy::default()))
        .clock(Arc::new(ManualClock::new(0)))
        .build()
        .unwrap();
    let lease = pool.acquire(&core()).await.unwrap();
    lease
        .complete(&Verdict::new(Outcome::InvalidToken))
        .await
        .unwrap();
    let error = pool.acquire(&core()).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::AllInvalid { .. }), "{message}");
    assert!(message.contains("only (tok-"), "{message}");
    assert!(!message.contains(CANARY), "{message}");
}

#[tokio::test]
async fn broken_strategy_is_named_and_pool_survives() {
    for mode in [1u8, 2] {
        let pool = TokenPool::builder(provider())
            .token(Token::new("t1"))
            .strategy(Arc::new(FirstStrategy { mode }))
            .clock(Arc::new(ManualClock::new(0)))
            .build()
            .unwrap();
        let error = pool.acquire(&core()).await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Strategy { .. }), "{message}");
        assert!(message.contains("first_test"), "{message}");
        // The pool is not poisoned: its queries still work.
        assert_eq!(pool.tokens().await.len(), 1);
        assert_eq!(pool.available_count().await, 1);
    }
}

#[tokio::test]
async fn secondary_limit_cools_whole_account() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("shared", 0, 0);
    server.add("other", 0, 0);
    let tokens = vec![
        Token::new("t1").with_account("shared"),
        Token::new("t2").with_account("shared"),
        Token::new("t3").with_account("other"),
    ];
    let pool = known_pool(&clock, &server, tokens, 100, WaitPolicy::Fail).await;
    let lease = pool.acquire(&core()).await.unwrap();
    assert_eq!(lease.account(), "shared");
    lease
        .complete(&Verdict::new(Outcome::SecondaryLimit {
            retry_after: Some(Duration::from_secs(30)),
        }))
        .await
        .unwrap();
    for _ in 0..5 {
        let lease = pool.acquire(&core()).await.unwrap();
        assert_eq!(lease.account(), "other");
        let verdict = server.answer("other", 100);
        lease.complete(&verdict).await.unwrap();
    }
    let statuses = pool.tokens().await;
    assert!(matches!(
        statuses[1].status,
        TokenStatus::RateLimited {
            kind: LimitKind::Secondary,
            ..
        }
    ));
    clock.advance(Duration::from_secs(31));
    let lease = pool.acquire(&core()).await.unwrap();
    assert_eq!(lease.account(), "shared");
    drop(lease);
}

#[tokio::test]
async fn reserve_is_never_spent() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("a", 0, 0);
    let pool = known_pool(
        &clock,
        &server,
        vec![Token::new("t1").with_account("a").with_reserve(3)],
        10,
        WaitPolicy::Fail,
    )
    .await;
    let mut served = 0;
    while let Ok(lease) = pool.acquire(&core()).await {
        let verdict = server.answer(lease.account(), 10);
        lease.complete(&verdict).await.unwrap();
        served += 1;
    }
    // 10 in the window, 1 spent learning it, 3 kept.
    assert_eq!(served, 6);
    let status = &pool.tokens().await[0].status;
    assert!(
        matches!(
            status,
            TokenStatus::RateLimited {
                kind: LimitKind::Reserve,
                ..
            }
        ),
        "{status}"
    );
}

#[tokio::test]
async fn dropped_unsent_lease_returns_unit() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("a", 0, 0);
    // Two units in the window, one spent learning it: one left.
    let pool = known_pool(
        &clock,
        &server,
        vec![Token::new("t1").with_account("a")],
        2,
        WaitPolicy::Fail,
    )
    .await;
    let lease = pool.acquire(&core()).await.unwrap();
    drop(lease);
    // The unsent lease gave its unit back, so it can be taken again.
    let mut lease = pool.acquire(&core()).await.unwrap();
    lease.mark_sent();
    drop(lease);
    // A sent, dropped lease keeps its unit spent.
    assert!(matches!(
        pool.acquire(&core()).await,
        Err(Error::Exhausted(_))
    ));
}

#[tokio::test]
async fn pool_debug_hides_secrets() {
    let pool = TokenPool::builder(provider())
        .token(Token::new(CANARY))
        .strategy(Arc::new(FirstStrategy::default()))
        .build()
        .unwrap();
    let lease = pool.acquire(&core()).await.unwrap();
    let text = format!("{pool:?} {lease:?} {:?}", pool.tokens().await);
    assert!(!text.contains(CANARY), "{text}");
}

#[tokio::test]
async fn huge_durations_saturate() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("a", 0, 0);
    let wait = WaitPolicy::UpTo(Duration::MAX);
    let pool = known_pool(
        &clock,
        &server,
        vec![Token::new("t1").with_account("a")],
        2,
        wait,
    )
    .await;

    // The maximum wait does not overflow: the pool waits for the reset.
    let lease = pool.acquire(&core()).await.unwrap();
    let verdict = server.answer("a", 2);
    lease.complete(&verdict).await.unwrap();
    let lease = pool.acquire(&core()).await.unwrap();
    assert!(clock.now_ms() >= 1_000_000 + 3_600_000);

    // A retry-after past the end of time neither wraps into the past nor
    // retires the token for good: the wait stops at seven days.
    let now = clock.now_ms();
    lease
        .complete(&Verdict::new(Outcome::SecondaryLimit {
            retry_after: Some(Duration::from_secs(u64::MAX)),
        }))
        .await
        .unwrap();
    let statuses = pool.tokens().await;
    let seven_days = 7 * 24 * 3_600_000;
    assert!(
        matches!(
            statuses[0].status,
            TokenStatus::RateLimited {
                kind: LimitKind::Secondary,
                until_ms,
                ..
            } if until_ms == now + seven_days
        ),
        "{}",
        statuses[0].status
    );
}

#[tokio::test]
async fn reset_years_ahead_is_bounded() {
    let clock = ManualClock::new(1_000_000);
    let server = Server::new(clock.clone());
    server.add("a", 5, 0);
    let pool = known_pool(
        &clock,
        &server,
        vec![Token::new("t1").with_account("a")],
        5,
        WaitPolicy::Fail,
    )
    .await;

    // A reset in milliseconds read as seconds lands some 50,000 years ahead.
    let lease = pool.acquire(&core()).await.unwrap();
    let far = Verdict::new(Outcome::PrimaryLimit {
        reset_ms: Some(1_700_000_000_000 * 1000),
    });
    lease.complete(&far).await.unwrap();

    let error = pool
        .acquire(&core())
        .await
        .expect_err("the budget is spent");
    let Error::Exhausted(exhausted) = error else {
        panic!("expected exhaustion");
    };
    assert_eq!(
        exhausted.earliest_reset_ms,
        Some(clock.now_ms() + 7 * 24 * 3_600_000)
    );
}

/// A store that hides its in-memory nature, so the pool takes the path a
/// shared store (such as one in Redis) takes: snapshot, choose, then an
/// awaited `try_reserve` that may lose a race.
#[derive(Debug, Default)]
struct OpaqueStore(tokenfleet_core::MemoryStore);

#[async_trait::async_trait]
impl tokenfleet_core::StateStore for OpaqueStore {
    async fn view(
        &self,
        keys: &[BudgetKey<'_>],
        out: &mut Vec<BudgetView>,
    ) -> Result<(), StoreError> {
        self.0.view(keys, out).await
    }

    async fn try_reserve(
        &self,
        key: BudgetKey<'_>,
        floor: u64,
        now_ms: u64,
    ) -> Result<Admission, StoreError> {
        // Yield first, so concurrent tasks interleave between their
        // snapshot and their reservation.
        tokio::task::yield_now().await;
        self.0.try_reserve(key, floor, now_ms).await
    }

    async fn settle(
        &self,
        key: BudgetKey<'_>,
        settlement: &Settlement,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.0.settle(key, settlement, now_ms).await
    }

    async fn observe(
        &self,
        key: BudgetKey<'_>,
        observation: &LocalObservation,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.0.observe(key, observation, now_ms).await
    }

    async fn mark_unlimited(&self, key: BudgetKey<'_>) -> Result<(), StoreError> {
        self.0.mark_unlimited(key).await
    }

    async fn cool_down(
        &self,
        key: BudgetKey<'_>,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        self.0.cool_down(key, until_ms, now_ms).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_store_path_never_overshoots() {
    let clock = ManualClock::new(1_000_000);
    let server = Arc::new(Server::new(clock.clone()));
    for account in ["a", "b", "c"] {
        server.add(account, 0, 0);
    }
    let pool = TokenPool::builder(provider())
        .tokens(["a", "b", "c"].map(|account| Token::new(account).with_account(account)))
        .strategy(Arc::new(FirstStrategy::default()))
        .clock(Arc::new(clock.clone()))
        .store(Arc::new(OpaqueStore::default()))
        .build()
        .unwrap();

    let mut tasks = Vec::new();
    for _ in 0..64 {
        let pool = pool.clone();
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let lease = pool.acquire(&core()).await?;
            tokio::task::yield_now().await;
            let verdict = server.answer(lease.account(), 10);
            lease.complete(&verdict).await?;
            Ok::<_, Error>(())
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => succeeded += 1,
            Err(Error::Exhausted(_)) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    assert_eq!(succeeded, 30);
    assert_eq!(server.over_limit.load(Ordering::SeqCst), 0);
}
