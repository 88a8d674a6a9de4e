//! The token never appears in the log lines of a Gitea pool, at any level.
//!
//! This is its own test binary because `tracing` caches per call site
//! whether anyone listens, which a test running in parallel on another
//! thread without a subscriber can settle first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenfleet_client::{Client, ReqwestTransport};
use tokenfleet_core::{ManualClock, Token, TokenPool, WaitPolicy};
use tokenfleet_gitea::Gitea;
use tokenfleet_testkit::GiteaSimulator;

/// 2023-11-14T22:14:00Z, a whole second so `Date` headers match the clock.
const START_MS: u64 = 1_700_000_040_000;

const CANARY: &str = "gta_CANARY0000000000000000000000000000";
const WINDOW: Duration = Duration::from_secs(600);

/// Collects formatted log lines in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds")
}

#[tokio::test]
async fn canary_absent_from_trace_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = ManualClock::new(START_MS);
    let simulator = GiteaSimulator::builder()
        .clock(Arc::new(clock.clone()))
        .start()
        .await;
    simulator.add_account("alice");
    simulator.limit_account("alice", 3, WINDOW);
    simulator.add_token(CANARY, "alice");
    simulator.add_account("bob");
    simulator.add_token("gta_bob", "bob");
    simulator.add_repositories("alice", 60);
    let provider = Gitea::with_base_url(simulator.uri().parse().unwrap());
    let pool = TokenPool::builder(Arc::new(provider))
        .tokens([
            Token::new(CANARY),
            Token::new("gta_bob"),
            Token::new("gta_unregistered").with_label("stranger"),
        ])
        .strategy(Arc::new(tokenfleet_rate_aware::RateAware::default()))
        .clock(Arc::new(clock.clone()))
        .transport(Arc::new(ReqwestTransport::new(http())))
        .wait(WaitPolicy::Fail)
        .seed(7)
        .build()
        .unwrap();
    let client = Client::builder()
        .http(http())
        .backoff(Duration::from_millis(10))
        .seed(7)
        .build(pool)
        .unwrap();

    // A token rejected at start, a listing, a 502 and its retry, a 429 on
    // the canary's account, then a 401 for the canary once its window is over.
    client
        .repositories("alice")
        .await
        .expect("the listing succeeds");
    simulator.inject_server_errors(1);
    client.get("/user").await.expect("the retry succeeds");
    simulator.drain("alice");
    for _ in 0..4 {
        client.get("/user").await.expect("bob serves");
    }
    let reset_ms = simulator.reset_at_ms("alice").expect("alice is limited");
    simulator.revoke_token(CANARY);
    // `Retry-After` counts whole seconds, so the pool may wait up to one more.
    clock.advance_to(reset_ms + 1_000);
    // Both tokens are unlimited now, so the strategy picks either.
    for _ in 0..20 {
        if simulator.unauthorized_responses() > 1 {
            break;
        }
        client.get("/user").await.expect("bob serves");
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(simulator.over_limit_responses() >= 1, "{text}");
    // The unregistered token at start, and the canary once revoked.
    assert_eq!(simulator.unauthorized_responses(), 2, "{text}");
    assert!(text.contains("rejected as invalid at start"), "{text}");
    assert!(text.contains("stranger"), "{text}");
    assert!(text.contains("rotating to another token"), "{text}");
    assert!(text.contains("retrying"), "{text}");
    assert!(!text.contains("CANARY"), "{text}");
}
