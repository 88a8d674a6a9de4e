//! A conformance suite that every provider passes against its simulator.
//!
//! A provider crate implements [`Harness`] for its simulator and calls
//! [`conformance_suite!`](crate::conformance_suite) in a test file, which
//! generates one test per check:
//!
//! ```ignore
//! struct MyForgeHarness { /* the simulator */ }
//!
//! #[async_trait::async_trait]
//! impl tokenfleet_testkit::conformance::Harness for MyForgeHarness { /* ... */ }
//!
//! tokenfleet_testkit::conformance_suite!(MyForgeHarness);
//! ```
//!
//! Every check runs the provider through a real [`TokenPool`] and
//! [`Client`] against the simulator, on a [`ManualClock`] the simulator
//! shares, so waiting for a window costs no wall-clock time.
//!
//! | Check | What must hold |
//! |---|---|
//! | `auth_header` | the simulator receives the token in the provider's auth form |
//! | `rotates_on_throttle` | a token the server throttles is replaced by another |
//! | `invalid_token` | a rejected token is marked invalid and never used again |
//! | `exhaustion` | the pool stops at the budget, with the earliest reset |
//! | `recovers_after_reset` | the budget returns once the window ends |
//! | `pagination` | a repository listing reaches its last item |
//! | `forbidden_does_not_rotate` | a refusal that is not a limit goes back to the caller |
//! | `foreign_host` | no token is sent off the provider's host |

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, Method, StatusCode};
use tokenfleet_client::{Client, ClientError};
use tokenfleet_core::provider::SharedProvider;
use tokenfleet_core::{
    Clock, Error, ManualClock, Token, TokenPool, TokenSnapshot, TokenStatus, WaitPolicy,
};

/// 2023-11-14T22:14:00Z: a whole second, so `Date` headers match the clock
/// exactly, and a whole minute, so minute-aligned windows start with it.
pub const START_MS: u64 = 1_700_000_040_000;

/// How far a reported reset may lie from the simulator's, in milliseconds.
/// Resets travel in whole seconds on most providers.
pub const RESET_TOLERANCE_MS: u64 = 2_000;

/// What a provider can know about its budgets, which decides how strict a
/// check may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The pool learns a token's budget before the token is throttled
    /// (from headers, a status endpoint or a configured estimate), so the
    /// simulator must never serve a request over the limit.
    pub budget_known_in_advance: bool,
}

/// A provider's simulator, driven by the conformance suite.
///
/// Every token the harness adds is charged to an account of its own, with
/// the budget given to [`Harness::start`] per window.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// Starts a simulator whose windows and `Date` headers follow `clock`,
    /// and whose tokens get `budget` requests per window.
    async fn start(clock: Arc<dyn Clock>, budget: u64) -> Self;

    /// Returns the provider, configured for the simulator's address.
    fn provider(&self) -> SharedProvider;

    /// Returns what the provider can know about budgets.
    fn capabilities(&self) -> Capabilities;

    /// Adds a valid token with an account of its own and returns it.
    fn add_token(&self) -> Token;

    /// Spends the rest of the token's budget on the server, out of the
    /// pool's sight, as another program sharing the token would.
    fn drain(&self, token: &Token);

    /// Revokes the token, so the simulator rejects it as invalid.
    fn revoke(&self, token: &Token);

    /// Makes every request to `path` return the provider's refusal
    /// that is not a rate limit (a missing permission or scope).
    fn forbid(&self, path: &str);

    /// Adds `count` repositories to `owner`.
    fn add_repositories(&self, owner: &str, count: usize);

    /// Returns the full names of the owner's repositories, in listing order.
    fn repository_names(&self, owner: &str) -> Vec<String>;

    /// Returns a path (with query, if needed) relative to the provider's
    /// base URL that any valid token may request, drawing from the
    /// provider's default bucket.
    fn sample_path(&self) -> String;

    /// Returns the secret the simulator read from the last request's
    /// authentication, parsed strictly in the provider's forms, or `None`
    /// when the last request carried none.
    fn last_credentials(&self) -> Option<String>;

    /// Returns how many requests the simulator received with `token`.
    fn requests_by_token(&self, token: &Token) -> u64;

    /// Returns how many requests the simulator served with success and
    /// charged to a budget (free status requests do not count).
    fn successful_requests(&self) -> u64;

    /// Returns how many requests the simulator received in all.
    fn total_requests(&self) -> u64;

    /// Returns how many requests the simulator met with its throttle
    /// response because the budget was spent.
    fn over_limit_responses(&self) -> u64;

    /// Returns when the simulator gives the token budget again, in epoch
    /// milliseconds on the simulator's clock.
    fn reset_ms(&self, token: &Token) -> u64;
}

/// A pool and client for the harness's provider on the suite's clock.
#[derive(Debug)]
pub struct Rig {
    /// The clock the simulator and the pool share.
    pub clock: ManualClock,
    /// The client sending through the pool.
    pub client: Client,
}

/// Starts a simulator with `budget` per token, adds `token_count` tokens
/// and builds a client over them.
///
/// # Panics
///
/// Panics when the pool or the client cannot be built, which fails the check.
pub async fn rig<H: Harness>(
    budget: u64,
    token_count: usize,
    wait: WaitPolicy,
) -> (H, Vec<Token>, Rig) {
    let clock = ManualClock::new(START_MS);
    let harness = H::start(Arc::new(clock.clone()), budget).await;
    let tokens: Vec<Token> = (0..token_count).map(|_| harness.add_token()).collect();
    let pool = TokenPool::builder(harness.provider())
        .tokens(tokens.clone())
        .strategy(Arc::new(tokenfleet_rate_aware::RateAware::default()))
        .clock(Arc::new(clock.clone()))
        .transport(Arc::new(tokenfleet_client::ReqwestTransport::new(
            tokenfleet_client::default_http().expect("the HTTP client builds"),
        )))
        .wait(wait)
        .seed(7)
        .build()
        .expect("the pool builds");
    let client = Client::builder()
        .backoff(Duration::from_millis(10))
        .seed(7)
        .build(pool)
        .expect("the client builds");
    (harness, tokens, Rig { clock, client })
}

async fn snapshot(rig: &Rig, token: &Token) -> TokenSnapshot {
    rig.client
        .pool()
        .tokens()
        .await
        .into_iter()
        .find(|snapshot| snapshot.id == *token.id())
        .expect("every token of the pool has a snapshot")
}

/// Checks that the simulator receives the token in the provider's auth form.
pub async fn auth_header<H: Harness>() {
    let (harness, tokens, rig) = rig::<H>(100, 1, WaitPolicy::Fail).await;

    let response = rig
        .client
        .get(&harness.sample_path())
        .await
        .expect("the request succeeds");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        harness.last_credentials().as_deref(),
        Some(tokens[0].secret()),
        "the simulator did not read the token from the request"
    );
}

/// Checks that a token the server throttles is marked and the request goes
/// out on another.
pub async fn rotates_on_throttle<H: Harness>() {
    let (harness, tokens, rig) = rig::<H>(50, 2, WaitPolicy::Fail).await;
    let (drained, healthy) = (&tokens[0], &tokens[1]);
    harness.drain(drained);

    for _ in 0..4 {
        let response = rig
            .client
            .get(&harness.sample_path())
            .await
            .expect("every request succeeds on the healthy token");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.token(), Some(healthy.id()));
    }

    assert!(
        harness.requests_by_token(drained) <= 1,
        "the drained token was tried {} times",
        harness.requests_by_token(drained)
    );
    if harness.requests_by_token(drained) == 1 {
        let status = snapshot(&rig, drained).await.status;
        assert!(
            matches!(status, TokenStatus::RateLimited { .. }),
            "the throttled token is {status}"
        );
    }
}

/// Checks that a rejected token is marked invalid, the request is retried on another,
/// and the invalid token is never chosen again.
pub async fn invalid_token<H: Harness>() {
    let (harness, tokens, rig) = rig::<H>(50, 2, WaitPolicy::Fail).await;
    let (revoked, healthy) = (&tokens[0], &tokens[1]);
    harness.revoke(revoked);

    for _ in 0..6 {
        let response = rig
            .client
            .get(&harness.sample_path())
            .await
            .expect("every request succeeds on the valid token");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.token(), Some(healthy.id()));
    }

    assert!(
        harness.requests_by_token(revoked) <= 1,
        "the revoked token was tried {} times",
        harness.requests_by_token(revoked)
    );
    assert_eq!(snapshot(&rig, revoked).await.status, TokenStatus::Invalid);
}

/// Checks that the pool spends exactly the budget and then fails with the earliest
/// reset, never sending a request it could have known is over the limit.
pub async fn exhaustion<H: Harness>() {
    const BUDGET: u64 = 3;
    let (harness, tokens, rig) = rig::<H>(BUDGET, 2, WaitPolicy::Fail).await;

    let mut served = 0;
    let error = loop {
        match rig.client.get(&harness.sample_path()).await {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK);
                served += 1;
                assert!(served <= 2 * BUDGET, "served past the budget");
            }
            Err(error) => break error,
        }
    };

    // The simulator's count includes requests the provider sent itself
    // (a probe that validates the token spends budget too).
    assert_eq!(
        harness.successful_requests(),
        2 * BUDGET,
        "the pool stopped before the budget ended"
    );
    if harness.capabilities().budget_known_in_advance {
        assert_eq!(
            harness.over_limit_responses(),
            0,
            "a request went over a known limit"
        );
    } else {
        assert!(
            harness.over_limit_responses() <= tokens.len() as u64,
            "more than one throttled request per token: {}",
            harness.over_limit_responses()
        );
    }

    let ClientError::Pool(Error::Exhausted(exhausted)) = &error else {
        panic!("expected an exhaustion error, got {error}");
    };
    let expected = tokens
        .iter()
        .map(|token| harness.reset_ms(token))
        .min()
        .expect("two tokens");
    let reported = exhausted
        .earliest_reset_ms
        .expect("the error names the earliest reset");
    assert!(
        reported.abs_diff(expected) <= RESET_TOLERANCE_MS,
        "reported reset {reported}, simulator resets at {expected}"
    );
    assert_eq!(exhausted.tokens.len(), tokens.len());
}

/// Once the window ends, the budget is back and requests succeed again.
pub async fn recovers_after_reset<H: Harness>() {
    const BUDGET: u64 = 2;
    let (harness, tokens, rig) = rig::<H>(BUDGET, 1, WaitPolicy::Fail).await;

    let mut attempts = 0;
    let error = loop {
        attempts += 1;
        assert!(attempts <= BUDGET + 1, "the pool served past the budget");
        if let Err(error) = rig.client.get(&harness.sample_path()).await {
            break error;
        }
    };
    assert!(
        matches!(error, ClientError::Pool(Error::Exhausted(_))),
        "expected an exhaustion error, got {error}"
    );

    let reset = harness.reset_ms(&tokens[0]);
    rig.clock.advance_to(reset + 1_000);
    let response = rig
        .client
        .get(&harness.sample_path())
        .await
        .expect("the budget returns after the reset");
    assert_eq!(response.status(), StatusCode::OK);
}

/// Checks that a listing of 250 repositories reaches the last one, each once.
pub async fn pagination<H: Harness>() {
    const COUNT: usize = 250;
    let (harness, _tokens, rig) = rig::<H>(1_000, 2, WaitPolicy::Fail).await;
    harness.add_repositories("conformance-owner", COUNT);

    let listed = rig
        .client
        .repositories("conformance-owner")
        .await
        .expect("the listing succeeds");

    let names: Vec<String> = listed.iter().map(|r| r.full_name.clone()).collect();
    assert_eq!(names.len(), COUNT);
    assert_eq!(names, harness.repository_names("conformance-owner"));
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), COUNT, "a repository was listed twice");
    let kind = harness.provider().kind();
    for repository in &listed {
        assert_eq!(repository.provider, kind);
        assert!(!repository.name.is_empty());
        assert!(!repository.url.is_empty());
        assert!(!repository.raw.is_null(), "the provider's JSON is kept");
    }
}

/// Checks that a refusal that is not a rate limit goes back to the caller: one request
/// reaches the server, and no token changes state.
pub async fn forbidden_does_not_rotate<H: Harness>() {
    let (harness, tokens, rig) = rig::<H>(50, 2, WaitPolicy::Fail).await;
    // Learn the budgets first, so that the only requests counted below are
    // the forbidden one.
    rig.client
        .get(&harness.sample_path())
        .await
        .expect("a warm-up request succeeds");
    harness.forbid("/conformance/forbidden");
    let before = harness.total_requests();

    let response = rig
        .client
        .get("/conformance/forbidden")
        .await
        .expect("the refusal is returned as a response");

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        harness.total_requests() - before,
        1,
        "the refusal was retried"
    );
    for token in &tokens {
        let status = snapshot(&rig, token).await.status;
        assert!(status.is_available(), "{} became {status}", token.id());
    }
}

/// Checks that a request to another host is refused before any token leaves.
pub async fn foreign_host<H: Harness>() {
    let (harness, _tokens, rig) = rig::<H>(50, 1, WaitPolicy::Fail).await;
    let foreign = url::Url::parse("http://127.0.0.2:9/elsewhere").expect("a valid URL");

    let error = rig
        .client
        .send(Method::GET, foreign, HeaderMap::new(), None)
        .await
        .expect_err("the request is refused");

    assert!(
        matches!(error, ClientError::ForeignHost { .. }),
        "expected a foreign-host error, got {error}"
    );
    assert_eq!(harness.total_requests(), 0);
}

/// Generates one `#[tokio::test]` per conformance check for a [`Harness`].
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::conformance_suite!(@checks $harness;
            auth_header,
            rotates_on_throttle,
            invalid_token,
            exhaustion,
            recovers_after_reset,
            pagination,
            forbidden_does_not_rotate,
            foreign_host
        );
    };
    (@checks $harness:ty; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                $crate::conformance::$check::<$harness>().await;
            }
        )*
    };
}
