//! Token secrets stay out of logs at trace level, errors and `Debug`
//! output, in header and in query mode, through rotation, a rejected
//! token, a throttle, a server error and a listing whose links repeat
//! the token.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenfleet_client::{default_http, Client, ReqwestTransport};
use tokenfleet_core::{ManualClock, PageView, Token, TokenPool, WaitPolicy};
use tokenfleet_http::{Http, HttpSettings};
use tokenfleet_testkit::{Budget, GenericSimulator};

const START_MS: u64 = 1_700_000_040_000;
const SECRET_MARK: &str = "CANARY";

/// A log sink shared by the subscriber and the test.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn client(simulator: &GenericSimulator, tokens: Vec<Token>, clock: &ManualClock) -> Client {
    let provider = Http::new(simulator.settings()).expect("the test settings are valid");
    let transport = ReqwestTransport::new(default_http().expect("the HTTP client builds"));
    let pool = TokenPool::builder(Arc::new(provider))
        .tokens(tokens)
        .strategy(Arc::new(tokenfleet_rate_aware::RateAware::default()))
        .clock(Arc::new(clock.clone()))
        .transport(Arc::new(transport))
        .wait(WaitPolicy::UpTo(Duration::from_secs(600)))
        .seed(7)
        .build()
        .expect("the pool builds");
    Client::builder()
        .backoff(Duration::from_millis(10))
        .seed(7)
        .build(pool)
        .expect("the client builds")
}

/// Runs every path that handles a token and returns the `Debug` and
/// `Display` output it produced.
async fn exercise(mut settings: HttpSettings) -> String {
    settings.repositories_path = Some("/users/{owner}/repos?per_page=10".to_owned());
    settings.status_endpoint = Some("/quota".to_owned());
    settings.status_endpoint_free = true;
    let clock = ManualClock::new(START_MS);
    let simulator = GenericSimulator::builder(settings)
        .clock(Arc::new(clock.clone()))
        .token_in_links(true)
        .start()
        .await;
    let mut output = Vec::new();

    let names = ["a", "b", "c"];
    for name in names {
        simulator.add_account(name, Budget::new(100, Duration::from_secs(3600)));
        simulator.add_token(&format!("key_{SECRET_MARK}_{name}"), name);
    }
    simulator.add_repositories("octo", 15);
    let token = |name: &str| Token::new(format!("key_{SECRET_MARK}_{name}"));

    // A token rejected at start, and one rejected later.
    simulator.revoke_token(&format!("key_{SECRET_MARK}_a"));
    let client = client(&simulator, vec![token("a"), token("b"), token("c")], &clock);
    let response = client.get("/items").await.expect("b or c serves");
    output.push(format!("{client:?} {response:?} {:?}", response.url()));
    simulator.revoke_token(&format!("key_{SECRET_MARK}_b"));
    for _ in 0..4 {
        let response = client.get("/items").await.expect("c serves");
        output.push(format!("{response:?}"));
    }

    // A throttle with a short retry-after, a throttle without headers and a server error.
    simulator.inject_throttles(1, Some(1));
    simulator.inject_throttles(1, None);
    simulator.inject_server_errors(1);
    let response = client
        .get("/items")
        .await
        .expect("c serves after the waits");
    output.push(format!("{response:?}"));

    let listed = client.repositories("octo").await.expect("two pages");
    output.push(format!("{listed:?}"));
    let first = client
        .get("/users/octo/repos?per_page=10")
        .await
        .expect("the first page");
    let page = client
        .pool()
        .provider()
        .parse_repositories(&PageView {
            url: first.url(),
            headers: first.headers(),
            body: first.body(),
        })
        .expect("a page of repositories");
    let next = page.next.expect("a second page");
    output.push(format!("{next} {first:?}"));

    // Errors: a pool whose only token is invalid, and a spent pool.
    let invalid_only = self::client(&simulator, vec![token("a")], &clock);
    let error = invalid_only
        .get("/items")
        .await
        .expect_err("no valid token");
    output.push(format!("{error} {error:?}"));
    simulator.drain("c", "default");
    let spent = self::client(&simulator, vec![token("c")], &clock);
    let error = spent.get("/items").await.expect_err("no budget");
    output.push(format!("{error} {error:?}"));

    let snapshots = client.pool().tokens().await;
    output.push(format!("{snapshots:?} {:?}", client.pool()));
    assert!(simulator.unauthorized_responses() >= 2);
    assert_eq!(simulator.injected_throttle_responses(), 2);
    output.join("\n")
}

async fn assert_no_secret(settings: HttpSettings) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);

    let output = exercise(settings).await;
    drop(guard);

    let logs = capture.text();
    assert!(
        logs.contains("rotating"),
        "the trace logs were not captured"
    );
    assert!(
        !logs.contains(SECRET_MARK),
        "a secret reached the logs:\n{logs}"
    );
    assert!(
        !output.contains(SECRET_MARK),
        "a secret reached the output:\n{output}"
    );
}

#[tokio::test]
async fn header_token_stays_out_of_logs() {
    let mut settings = HttpSettings::new("http://127.0.0.1:1".parse().unwrap());
    settings.auth_header = Some("X-Api-Key".to_owned());
    settings.auth_scheme = Some(String::new());
    assert_no_secret(settings).await;
}

#[tokio::test]
async fn query_token_stays_out_of_logs() {
    let mut settings = HttpSettings::new("http://127.0.0.1:1/api".parse().unwrap());
    settings.auth_query = Some("api_key".to_owned());
    assert_no_secret(settings).await;
}
