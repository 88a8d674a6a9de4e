//! Shared setup: simulators and fleets on one manual clock, plain wiremock
//! servers that play GitHub, and a log buffer for tracing output.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use serde_json::{json, Value};
use tokenfleet::client::ClientBuilder;
use tokenfleet::core::clock::format_epoch_ms;
use tokenfleet::github::Github;
use tokenfleet::{Client, Clock, Error, Fleet, ManualClock, Token, TokenId, TokenSnapshot};
use tokenfleet::{ClientError, WaitPolicy};
use tokenfleet_testkit::GithubSimulator;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::{Request, Respond, ResponseTemplate};

/// 2023-11-14T22:13:20Z, a whole second, so that `date` headers match the clock exactly.
pub(crate) const START_MS: u64 = 1_700_000_000_000;

/// A recognisable fake secret. Tests check that it never shows.
pub(crate) const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// Starts a manual clock at [`START_MS`].
pub(crate) fn clock() -> ManualClock {
    ManualClock::new(START_MS)
}

/// Starts a github.com simulator on `clock`.
pub(crate) async fn simulator(clock: &ManualClock) -> GithubSimulator {
    GithubSimulator::builder()
        .clock(Arc::new(clock.clone()))
        .start()
        .await
}

/// Builds a fleet with one GitHub pool at `base` on `clock`, with a fixed
/// seed and a 10 ms backoff.
pub(crate) fn fleet(
    base: &str,
    tokens: Vec<Token>,
    clock: &ManualClock,
    wait: WaitPolicy,
) -> Fleet {
    fleet_with(base, tokens, clock, wait, ClientBuilder::default())
}

/// Builds a fleet like [`fleet`], with the caller's client settings.
pub(crate) fn fleet_with(
    base: &str,
    tokens: Vec<Token>,
    clock: &ManualClock,
    wait: WaitPolicy,
    client: ClientBuilder,
) -> Fleet {
    let provider = Github::with_base_url(base.parse().expect("the base URL parses"));
    Fleet::builder()
        .provider(Arc::new(provider), tokens)
        .clock(Arc::new(clock.clone()))
        .wait(wait)
        .seed(7)
        .client(client.backoff(Duration::from_millis(10)))
        .build()
        .expect("the fleet builds")
}

/// Returns the GitHub client of a fleet.
pub(crate) fn github(fleet: &Fleet) -> &Client {
    fleet.client("github").expect("the fleet has a github pool")
}

/// Returns the public id the pool gives a secret without a label.
pub(crate) fn id(secret: &str) -> TokenId {
    Token::new(secret).id().clone()
}

/// Returns the snapshot of the token whose id is `token`.
pub(crate) async fn snapshot(fleet: &Fleet, token: &TokenId) -> TokenSnapshot {
    fleet
        .tokens("github")
        .await
        .into_iter()
        .find(|snapshot| &snapshot.id == token)
        .unwrap_or_else(|| panic!("no snapshot for {token}"))
}

/// Reads the budgets of every token once, so that later injected failures
/// meet real requests rather than the pool's first status requests.
pub(crate) async fn warm_up(fleet: &Fleet) {
    github(fleet)
        .github()
        .rate_limits()
        .await
        .expect("the first status requests succeed");
}

/// Returns the pool error inside a client error, or panics.
pub(crate) fn pool_error(error: &ClientError) -> &Error {
    match error {
        ClientError::Pool(inner) => inner,
        other => panic!("expected a pool error, got {other:?}"),
    }
}

/// Returns true for a client error saying that no token has budget.
pub(crate) fn is_exhausted(error: &ClientError) -> bool {
    matches!(error, ClientError::Pool(Error::Exhausted(_)))
}

/// Builds the body of `GET /rate_limit` with the same numbers in every bucket.
pub(crate) fn rate_limit_body(limit: u64, remaining: u64, reset_s: u64) -> Value {
    let bucket = json!({
        "limit": limit,
        "used": limit - remaining,
        "remaining": remaining,
        "reset": reset_s,
    });
    json!({
        "resources": {
            "core": bucket,
            "search": bucket,
            "code_search": bucket,
            "graphql": bucket,
        },
        "rate": bucket,
    })
}

/// Adds GitHub's `x-ratelimit-*` headers to a response template.
pub(crate) fn with_limits(
    template: ResponseTemplate,
    resource: &str,
    limit: u64,
    remaining: u64,
    reset_s: u64,
) -> ResponseTemplate {
    template
        .insert_header("x-ratelimit-limit", limit.to_string())
        .insert_header("x-ratelimit-remaining", remaining.to_string())
        .insert_header("x-ratelimit-used", (limit - remaining).to_string())
        .insert_header("x-ratelimit-reset", reset_s.to_string())
        .insert_header("x-ratelimit-resource", resource)
}

/// Wraps a wiremock responder so that every response carries a `date`
/// header from the test's clock. Without it the server sends the real
/// date, and the pool would read the gap to the manual clock as skew.
pub(crate) struct Dated<R> {
    pub(crate) clock: ManualClock,
    pub(crate) inner: R,
}

impl<R: Respond> Respond for Dated<R> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.inner
            .respond(request)
            .insert_header("date", format_epoch_ms(self.clock.now_ms()))
    }
}

/// Wraps `template` so that it carries the clock's `date`.
pub(crate) fn dated(clock: &ManualClock, template: ResponseTemplate) -> Dated<ResponseTemplate> {
    Dated {
        clock: clock.clone(),
        inner: template,
    }
}

/// A tracing writer that appends to a shared buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Returns everything written so far.
    pub(crate) fn contents(&self) -> String {
        let bytes = self.0.lock().expect("the log buffer is not poisoned");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut buffer = self.0.lock().expect("the log buffer is not poisoned");
        buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs a global subscriber that accepts every event and drops it.
///
/// `tracing` caches, per call site and for the whole process, whether any
/// subscriber wants its events. A call site first reached on a test thread
/// without a subscriber would be cached as unwanted, and the scoped
/// subscriber of [`with_logs`] on another thread would then miss it.
fn install_global_sink() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only when another global subscriber is set, which serves as well.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
}

/// Runs `future` on a current-thread runtime while a TRACE-level
/// subscriber writes every event and span of this thread to a buffer, and
/// returns the output with the log text.
pub(crate) fn with_logs<F: Future>(future: F) -> (F::Output, String) {
    install_global_sink();
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let output = runtime.block_on(future);
    drop(runtime);
    drop(guard);

    (output, buffer.contents())
}
