//! Loads the plugins from TOML by `type` and sends requests through the
//! pool to a Lighthouse server on 127.0.0.1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lighthouse_plugin::{LEAST_RECENTLY_USED, LIGHTHOUSE};
use tokenfleet::{ClientError, Error, Fleet, TokenStatus};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Returns the end of every quota window the server reports, in epoch
/// milliseconds: an hour after the test starts, on the real clock the pool
/// uses.
fn reset_ms() -> u64 {
    static RESET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RESET.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_millis() as u64 + 3_600_000
    })
}

/// A Lighthouse server: a quota per token and the order tokens arrived in.
#[derive(Clone, Default)]
struct Lighthouse {
    left: Arc<Mutex<HashMap<String, u64>>>,
    arrivals: Arc<Mutex<Vec<String>>>,
    over_quota: Arc<Mutex<u64>>,
}

impl Lighthouse {
    const LIMIT: u64 = 5;

    fn add_token(&self, token: &str) {
        self.left
            .lock()
            .unwrap()
            .insert(token.to_owned(), Self::LIMIT);
    }

    /// Spends a token's quota out of the pool's sight.
    fn drain(&self, token: &str) {
        self.left.lock().unwrap().insert(token.to_owned(), 0);
    }

    fn arrivals(&self) -> Vec<String> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Respond for Lighthouse {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Some(token) = request
            .headers
            .get("x-lighthouse-key")
            .and_then(|v| v.to_str().ok())
        else {
            return ResponseTemplate::new(401);
        };
        self.arrivals.lock().unwrap().push(token.to_owned());
        let mut quotas = self.left.lock().unwrap();
        let Some(left) = quotas.get_mut(token) else {
            return ResponseTemplate::new(401);
        };
        let status = if *left == 0 {
            *self.over_quota.lock().unwrap() += 1;
            503
        } else {
            *left -= 1;
            200
        };
        ResponseTemplate::new(status)
            .insert_header("x-quota-limit", Lighthouse::LIMIT.to_string().as_str())
            .insert_header("x-quota-left", left.to_string().as_str())
            .insert_header("x-quota-reset", reset_ms().to_string().as_str())
            .set_body_string("{}")
    }
}

async fn start(tokens: &[&str]) -> (MockServer, Lighthouse, Fleet) {
    let server = MockServer::start().await;
    let lighthouse = Lighthouse::default();
    for token in tokens {
        lighthouse.add_token(token);
    }
    Mock::given(any())
        .respond_with(lighthouse.clone())
        .mount(&server)
        .await;

    let token_list: Vec<String> = tokens
        .iter()
        .map(|t| format!("{{ value = \"{t}\" }}"))
        .collect();
    let text = format!(
        "[strategy]\ntype = \"{LEAST_RECENTLY_USED}\"\n\n\
         [[providers]]\ntype = \"{LIGHTHOUSE}\"\nbase_url = \"{}/api\"\n\
         tokens = [{}]\n",
        server.uri(),
        token_list.join(", ")
    );
    let fleet = Fleet::from_toml_str(&text, "lighthouse.toml").expect("the config loads");
    (server, lighthouse, fleet)
}

#[tokio::test]
async fn config_names_both_plugins() {
    let listed = tokenfleet::plugins();
    for name in [LIGHTHOUSE, LEAST_RECENTLY_USED] {
        let plugin = listed
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed"));
        assert!(plugin.description.is_some(), "{name} has no description");
    }

    let (_server, _lighthouse, fleet) = start(&["lh-a"]).await;
    let pool = fleet
        .pool(LIGHTHOUSE)
        .expect("the pool is named by its type");
    assert_eq!(pool.provider().kind(), LIGHTHOUSE);
    assert_eq!(pool.strategy().name(), LEAST_RECENTLY_USED);
}

#[tokio::test]
async fn strategy_uses_each_token_in_turn() {
    let (_server, lighthouse, fleet) = start(&["lh-a", "lh-b", "lh-c"]).await;
    let client = fleet.client(LIGHTHOUSE).expect("the client exists");

    for _ in 0..6 {
        let response = client.get("/items").await.expect("the request succeeds");
        assert_eq!(response.status(), 200);
    }

    assert_eq!(
        lighthouse.arrivals(),
        ["lh-a", "lh-b", "lh-c", "lh-a", "lh-b", "lh-c"]
    );
}

#[tokio::test]
async fn verdicts_spend_quota_and_rotate() {
    let (_server, lighthouse, fleet) = start(&["lh-a", "lh-b"]).await;
    let client = fleet.client(LIGHTHOUSE).expect("the client exists");
    lighthouse.drain("lh-b");

    // lh-a serves, then lh-b's 503 marks it limited and the request goes
    // to lh-a again; after that only lh-a serves until its quota ends.
    let mut served = 0;
    let error = loop {
        match client.get("/items").await {
            Ok(response) => {
                assert_eq!(response.status(), 200);
                served += 1;
            }
            Err(error) => break error,
        }
    };

    assert_eq!(served, Lighthouse::LIMIT);
    assert_eq!(
        *lighthouse.over_quota.lock().unwrap(),
        1,
        "one 503 revealed lh-b"
    );
    let arrivals = lighthouse.arrivals();
    assert_eq!(arrivals.iter().filter(|t| *t == "lh-b").count(), 1);

    let ClientError::Pool(Error::Exhausted(exhausted)) = &error else {
        panic!("expected exhaustion, got {error}");
    };
    // The pool moves server times by the offset between the server's
    // `Date` header, in whole seconds, and the local clock.
    let near_reset = |at: u64| at.abs_diff(reset_ms()) < 1_000;
    let reported = exhausted
        .earliest_reset_ms
        .expect("the error names the reset");
    assert!(near_reset(reported), "reported reset {reported}");
    for token in fleet.tokens(LIGHTHOUSE).await {
        assert!(
            matches!(token.status, TokenStatus::RateLimited { until_ms, .. } if near_reset(until_ms)),
            "{}: {}",
            token.id,
            token.status
        );
    }
}
