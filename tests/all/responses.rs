//! Odd responses: garbled or missing limit headers and HTML error pages.

use serde_json::json;
use tokenfleet::{ClientError, Clock, Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::AccountLimits;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, dated, github, id, rate_limit_body, snapshot, warm_up, START_MS};

/// Header sets of `GET /user` responses that state no usable budget.
fn unreadable_headers() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("no headers", vec![]),
        (
            "garbled numbers",
            vec![
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "abc"),
                ("x-ratelimit-used", "-1"),
                ("x-ratelimit-reset", "soon"),
                ("x-ratelimit-resource", "core"),
            ],
        ),
        (
            "empty values",
            vec![
                ("x-ratelimit-limit", ""),
                ("x-ratelimit-remaining", ""),
                ("x-ratelimit-reset", ""),
            ],
        ),
        (
            "reset as a float",
            vec![
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700003600.5"),
            ],
        ),
    ]
}

#[tokio::test]
async fn unreadable_limit_headers_are_ignored() {
    for (name, headers) in unreadable_headers() {
        let clock = support::clock();
        let server = MockServer::start().await;
        let reset_s = START_MS / 1000 + 3600;
        let status = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 5000, reset_s));
        Mock::given(method("GET"))
            .and(path("/rate_limit"))
            .respond_with(dated(&clock, status))
            .mount(&server)
            .await;
        let mut user = ResponseTemplate::new(200).set_body_json(json!({"id": 1, "login": "a"}));
        for (header, value) in headers {
            user = user.insert_header(header, value);
        }
        Mock::given(method("GET"))
            .and(path("/user"))
            .respond_with(dated(&clock, user))
            .mount(&server)
            .await;
        let tokens = vec![Token::new("ghp_alice").with_account("alice")];
        let fleet = support::fleet(&server.uri(), tokens, &clock, WaitPolicy::Fail);

        for _ in 0..10 {
            let response = github(&fleet).get("/user").await.unwrap();
            assert_eq!(response.status(), 200, "{name}");
        }

        let alice = snapshot(&fleet, &id("ghp_alice")).await;
        assert_eq!(alice.status, TokenStatus::Available, "{name}");
        // Requests without readable headers still count against the budget.
        let core = alice.bucket("core").unwrap();
        assert_eq!(core.remaining, Some(4990), "{name}");
    }
}

#[tokio::test]
async fn html_502_is_retried() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("ghp_alice", "alice");
    let tokens = vec![Token::new("ghp_alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.inject_server_errors(2);

    let response = github(&fleet).get("/user").await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 3);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["login"], "alice");
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, TokenStatus::Available);
}

#[tokio::test]
async fn persistent_502_fails_with_status() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("ghp_alice", "alice");
    let tokens = vec![Token::new("ghp_alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    sim.inject_server_errors(100);

    let error = github(&fleet).get("/user").await.unwrap_err();

    let ClientError::Server {
        status, attempts, ..
    } = &error
    else {
        panic!("expected a server error, got {error:?}");
    };
    assert_eq!(status.as_u16(), 502);
    assert_eq!(*attempts, 5);
    assert!(error.to_string().contains("502"), "{error}");
    assert!(error.is_transient());
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, TokenStatus::Available);
}

#[tokio::test]
async fn failed_status_request_learns_later() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("ghp_alice", "alice");
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    // The first request of all, the status request, meets a 502.
    sim.inject_server_errors(1);

    let response = github(&fleet).get("/user").await.unwrap();

    assert_eq!(response.status(), 200);
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.bucket("core").unwrap().remaining, Some(4999));
}

#[tokio::test]
async fn primary_limit_with_past_reset_cools_down() {
    let clock = support::clock();
    let server = MockServer::start().await;
    let fresh_reset_s = START_MS / 1000 + 3600;
    let status =
        ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 5000, fresh_reset_s));
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .respond_with(dated(&clock, status))
        .mount(&server)
        .await;
    // Every response is a primary limit whose reset lies 100 s in the past.
    let stale_reset_s = START_MS / 1000 - 100;
    let limited = support::with_limits(
        ResponseTemplate::new(403).set_body_json(json!({
            "message": "API rate limit exceeded for user ID 1."
        })),
        "core",
        5000,
        0,
        stale_reset_s,
    );
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(dated(&clock, limited))
        .mount(&server)
        .await;
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet(&server.uri(), tokens, &clock, WaitPolicy::Fail);

    let error = github(&fleet).get("/user").await.unwrap_err();

    assert!(support::is_exhausted(&error), "{error}");
    let sent = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.url.path() == "/user")
        .count();
    assert_eq!(sent, 1, "the stale reset must not read as budget returned");
    let reset = error_reset(&error);
    assert!(reset > clock.now_ms(), "the cooldown lies in the future");
}

fn error_reset(error: &ClientError) -> u64 {
    support::pool_error(error)
        .earliest_reset_ms()
        .expect("an exhausted error names its reset")
}

#[tokio::test]
async fn connection_error_names_its_cause() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clock = support::clock();
    let tokens = vec![tokenfleet::Token::new(support::CANARY).with_account("alice")];
    let base = format!("http://127.0.0.1:{port}");
    let fleet = support::fleet(&base, tokens, &clock, tokenfleet::WaitPolicy::Fail);

    let error = support::github(&fleet)
        .get("/user")
        .await
        .expect_err("nothing listens");

    let text = error.to_string();
    assert!(text.contains("Connection refused"), "{text}");
    assert!(!text.contains(support::CANARY), "{text}");
}
