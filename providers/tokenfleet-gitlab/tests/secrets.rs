//! Tokens never appear in logs, errors or `Debug` output, whatever the
//! provider responds.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenfleet_core::{Token, WaitPolicy};
use tokenfleet_gitlab::AuthScheme;
use tokenfleet_testkit::gitlab::Throttle;
use tokenfleet_testkit::GitlabSimulator;
use tracing::Level;

use support::{client, provider, simulator};

/// 2023-11-14T22:14:00Z, the start of a minute window.
const START_MS: u64 = 1_700_000_040_000;

const CANARY_REVOKED: &str = "glpat-CANARY0000000000000000";
const CANARY_LIMITED: &str = "glpat-CANARY1111111111111111";
const CANARY_UNKNOWN: &str = "glpat-CANARY2222222222222222";

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn canary_appears_nowhere() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (sim, clock) = simulator(GitlabSimulator::builder(), START_MS).await;
    sim.add_account("alice", Throttle::new(2, Duration::from_secs(60)));
    sim.add_account("bob", Throttle::default());
    sim.add_token(CANARY_REVOKED, "bob");
    sim.add_token(CANARY_LIMITED, "alice");
    sim.revoke_token(CANARY_REVOKED);
    sim.inject_server_errors(1);
    sim.inject_application_limit("alice", 1);

    // At run time: a 500, a 401, an application limit, a throttle and a wait.
    let tokens = vec![Token::new(CANARY_REVOKED), Token::new(CANARY_LIMITED)];
    let wait = WaitPolicy::UpTo(Duration::from_secs(10 * 60));
    let waiting = client(&clock, provider(&sim), tokens.clone(), wait);
    let mut outputs = Vec::new();
    for _ in 0..4 {
        match waiting.get("/user").await {
            Ok(response) => outputs.push(format!("{response:?}")),
            Err(error) => outputs.push(format!("{error} {error:?}")),
        }
    }
    outputs.push(format!("{waiting:?} {:?}", waiting.pool().tokens().await));

    // At start, with Bearer auth: a probe rejected with 401, then an
    // exhausted pool.
    let bearer = provider(&sim).learn_account(true).auth(AuthScheme::Bearer);
    outputs.push(format!("{bearer:?}"));
    let failing = client(
        &clock,
        bearer,
        vec![Token::new(CANARY_UNKNOWN), Token::new(CANARY_LIMITED)],
        WaitPolicy::Fail,
    );
    for _ in 0..3 {
        if let Err(error) = failing.get("/user").await {
            outputs.push(format!("{error} {error:?}"));
        }
    }
    outputs.push(format!("{tokens:?} {}", tokens[0]));

    let logs = captured.text();
    assert!(
        logs.contains("rotating"),
        "the scenario logged no rotation: {logs}"
    );
    assert!(
        logs.contains("invalid"),
        "the scenario logged no invalid token: {logs}"
    );
    assert!(
        outputs
            .iter()
            .any(|output| output.contains("no gitlab token")),
        "the scenario produced no exhaustion error: {outputs:?}"
    );
    assert!(!logs.contains("CANARY"), "a token leaked into the logs");
    for output in &outputs {
        assert!(!output.contains("CANARY"), "a token leaked: {output}");
    }
}
