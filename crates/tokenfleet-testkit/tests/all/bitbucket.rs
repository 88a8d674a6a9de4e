use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::Value;
use tokenfleet_core::clock::{format_epoch_ms, ManualClock};
use tokenfleet_testkit::bitbucket::Allowance;
use tokenfleet_testkit::BitbucketSimulator;

/// 2023-11-14T22:13:20Z, a whole second so that `Date` matches the clock.
const START_MS: u64 = 1_700_000_000_000;

const HOUR: Duration = Duration::from_secs(3_600);
const HOUR_MS: u64 = 3_600_000;

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// Starts a simulator on a manual clock with the user `alice` (secret
/// `app-pass`) and the access token `repo-token` (secret `at-secret`).
async fn start(limit: u64) -> (BitbucketSimulator, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let sim = BitbucketSimulator::builder()
        .clock(Arc::new(clock.clone()))
        .start()
        .await;
    sim.add_user("alice", Allowance::new(limit, HOUR));
    sim.add_api_token("alice", "app-pass");
    sim.add_access_token("repo-token", "at-secret", Allowance::new(limit, HOUR));
    (sim, clock)
}

async fn bearer(sim: &BitbucketSimulator, token: &str, path: &str) -> Response {
    client()
        .get(format!("{}{path}", sim.uri()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn basic(sim: &BitbucketSimulator, user: &str, secret: &str, path: &str) -> Response {
    client()
        .get(format!("{}{path}", sim.uri()))
        .basic_auth(user, Some(secret))
        .send()
        .await
        .unwrap()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn uri_ends_in_api_version() {
    let (sim, _clock) = start(10).await;
    assert!(sim.uri().starts_with("http://127.0.0.1:"), "{}", sim.uri());
    assert!(sim.uri().ends_with("/2.0"), "{}", sim.uri());
}

#[tokio::test]
async fn user_endpoint_names_caller() {
    let (sim, _clock) = start(10).await;

    let response = basic(&sim, "alice", "app-pass", "/user").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "date").unwrap(),
        format_epoch_ms(START_MS)
    );
    assert_eq!(header(&response, "x-ratelimit-limit"), None);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    assert_eq!(sim.last_credential().as_deref(), Some("alice:app-pass"));

    let response = bearer(&sim, "at-secret", "/user").await;
    assert_eq!(response.status(), 200);
    assert_eq!(sim.last_credential().as_deref(), Some("at-secret"));
}

#[tokio::test]
async fn window_is_rolling() {
    let (sim, clock) = start(2).await;
    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        200
    );
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        200
    );

    let throttled = basic(&sim, "alice", "app-pass", "/user").await;
    assert_eq!(throttled.status(), 429);
    assert!(header(&throttled, "content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(header(&throttled, "retry-after"), None);
    assert_eq!(header(&throttled, "x-ratelimit-remaining"), None);
    assert_eq!(
        throttled.text().await.unwrap(),
        "Rate limit for this resource has been exceeded"
    );
    assert_eq!(sim.over_limit_responses(), 1);
    assert_eq!(sim.reset_at("alice"), START_MS + HOUR_MS);

    // The first request leaves the window; the second is still in it.
    clock.advance_to(START_MS + HOUR_MS);
    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        200
    );
    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        429
    );
    assert_eq!(sim.reset_at("alice"), START_MS + 600_000 + HOUR_MS);
}

#[tokio::test]
async fn secrets_of_one_user_share_window() {
    let (sim, _clock) = start(2).await;
    sim.add_api_token("alice", "second-pass");

    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        200
    );
    assert_eq!(
        basic(&sim, "alice", "second-pass", "/user").await.status(),
        200
    );
    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        429
    );
    assert_eq!(sim.remaining("alice"), 0);
    assert_eq!(
        sim.remaining("repo-token"),
        2,
        "the access token has its own"
    );
    assert_eq!(sim.requests_by_token("alice:app-pass"), 2);
    assert_eq!(sim.requests_by_token("alice:second-pass"), 1);
}

#[tokio::test]
async fn rate_headers_only_for_access_tokens_on_repositories() {
    let (sim, _clock) = start(5).await;
    sim.add_repositories("team", 3);

    let scaled = bearer(&sim, "at-secret", "/repositories/team").await;
    assert_eq!(scaled.status(), 200);
    assert_eq!(header(&scaled, "x-ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(
        header(&scaled, "x-ratelimit-resource").as_deref(),
        Some("api")
    );
    assert_eq!(
        header(&scaled, "x-ratelimit-nearlimit").as_deref(),
        Some("false")
    );

    let user = bearer(&sim, "at-secret", "/user").await;
    assert_eq!(header(&user, "x-ratelimit-limit"), None);

    let basic_listing = basic(&sim, "alice", "app-pass", "/repositories/team").await;
    assert_eq!(basic_listing.status(), 200);
    assert_eq!(header(&basic_listing, "x-ratelimit-limit"), None);

    for _ in 0..3 {
        bearer(&sim, "at-secret", "/repositories/team").await;
    }
    let near = bearer(&sim, "at-secret", "/repositories/team").await;
    assert_eq!(near.status(), 429);
    assert_eq!(
        header(&near, "x-ratelimit-nearlimit").as_deref(),
        Some("true")
    );
}

#[tokio::test]
async fn invalid_credentials_get_both_forms() {
    let (sim, _clock) = start(5).await;

    let bearer_reply = bearer(&sim, "wrong", "/user").await;
    assert_eq!(bearer_reply.status(), 401);
    let body: Value = bearer_reply.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(
        body["error"]["message"],
        "Token is invalid, expired, or not supported for this endpoint."
    );

    let basic_reply = basic(&sim, "alice", "wrong", "/user").await;
    assert_eq!(basic_reply.status(), 401);
    assert_eq!(
        header(&basic_reply, "www-authenticate").as_deref(),
        Some("Basic realm=\"Bitbucket.org HTTP\"")
    );
    assert!(header(&basic_reply, "content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = basic_reply.text().await.unwrap();
    assert!(
        text.starts_with("Login failed due to incorrect login credentials or method."),
        "{text}"
    );

    let anonymous = client()
        .get(format!("{}/user", sim.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(sim.unauthorized_responses(), 3);
    assert_eq!(sim.remaining("alice"), 5, "rejected requests spend nothing");
}

#[tokio::test]
async fn revoked_credentials_are_rejected() {
    let (sim, _clock) = start(5).await;
    sim.revoke_token("alice:app-pass");
    sim.revoke_token("at-secret");
    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        401
    );
    assert_eq!(bearer(&sim, "at-secret", "/user").await.status(), 401);

    sim.add_api_token("alice", "app-pass");
    assert_eq!(
        basic(&sim, "alice", "app-pass", "/user").await.status(),
        200
    );
}

#[tokio::test]
async fn forbidden_path_spends_budget() {
    let (sim, _clock) = start(5).await;
    sim.forbid("/repositories/team/secret/hooks");

    let response = bearer(&sim, "at-secret", "/repositories/team/secret/hooks").await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Forbidden");
    assert_eq!(sim.remaining("repo-token"), 4);
}

#[tokio::test]
async fn listing_pages_by_body() {
    let (sim, _clock) = start(100).await;
    sim.add_repositories("Team", 25);

    let first: Value = bearer(&sim, "at-secret", "/repositories/team")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["pagelen"], 10, "the default page length");
    assert_eq!(first["page"], 1);
    assert_eq!(first["size"], 25);
    assert_eq!(first["values"].as_array().unwrap().len(), 10);

    let mut names = Vec::new();
    let mut next = Some(format!("{}/repositories/team?pagelen=12", sim.uri()));
    while let Some(url) = next {
        let page: Value = client()
            .get(&url)
            .bearer_auth("at-secret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for value in page["values"].as_array().unwrap() {
            names.push(value["slug"].as_str().unwrap().to_owned());
        }
        next = page["next"].as_str().map(str::to_owned);
    }
    assert_eq!(names, sim.repository_names("team"));
    assert_eq!(names.len(), 25);
}

#[tokio::test]
async fn listing_caps_page_length() {
    let (sim, _clock) = start(100).await;
    sim.add_repositories("team", 150);

    let page: Value = bearer(&sim, "at-secret", "/repositories/team?pagelen=500")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["pagelen"], 100);
    assert_eq!(page["values"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn listing_may_omit_size() {
    let clock = ManualClock::new(START_MS);
    let sim = BitbucketSimulator::builder()
        .clock(Arc::new(clock))
        .report_size(false)
        .start()
        .await;
    sim.add_access_token("t", "secret", Allowance::default());
    sim.add_repositories("team", 1);

    let page: Value = bearer(&sim, "secret", "/repositories/team")
        .await
        .json()
        .await
        .unwrap();
    assert!(page.get("size").is_none());
    assert!(page.get("next").is_none());
}

#[tokio::test]
async fn unknown_workspace_is_not_found() {
    let (sim, _clock) = start(10).await;
    let response = bearer(&sim, "at-secret", "/repositories/ghost").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert!(body["error"]["message"].as_str().unwrap().contains("ghost"));
}

#[tokio::test]
async fn drain_spends_out_of_sight() {
    let (sim, _clock) = start(10).await;
    sim.drain("repo-token");
    assert_eq!(sim.remaining("repo-token"), 0);
    assert_eq!(bearer(&sim, "at-secret", "/user").await.status(), 429);

    sim.set_remaining("repo-token", 1);
    assert_eq!(bearer(&sim, "at-secret", "/user").await.status(), 200);
}

#[tokio::test]
async fn injected_failures_come_first() {
    let (sim, _clock) = start(10).await;
    sim.inject_server_errors(1);
    sim.inject_throttles("repo-token", 1);

    assert_eq!(bearer(&sim, "at-secret", "/user").await.status(), 500);
    let throttled = bearer(&sim, "at-secret", "/user").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(bearer(&sim, "at-secret", "/user").await.status(), 200);

    assert_eq!(sim.server_error_responses(), 1);
    assert_eq!(sim.injected_throttle_responses(), 1);
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(
        sim.remaining("repo-token"),
        9,
        "only the answered request counts"
    );
    assert_eq!(sim.total_requests(), 3);
    assert_eq!(sim.successful_requests(), 1);
}
