use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::{json, Value};
use tokenfleet_core::clock::{format_epoch_ms, ManualClock};
use tokenfleet_http::{BucketRule, HttpSettings, ResetFormat};
use tokenfleet_testkit::{Budget, GenericSimulator};

/// 2023-11-14T22:13:20Z, a whole second so that window ends are easy to predict.
const START_MS: u64 = 1_700_000_000_000;
const MINUTE: Duration = Duration::from_secs(60);

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn settings(path: &str) -> HttpSettings {
    HttpSettings::new(format!("http://127.0.0.1:1{path}").parse().unwrap())
}

/// Starts a simulator on a manual clock with account `alice` (token `t-alice`).
async fn start(settings: HttpSettings, budget: Budget) -> (GenericSimulator, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let sim = GenericSimulator::builder(settings)
        .clock(Arc::new(clock.clone()))
        .start()
        .await;
    sim.add_account("alice", budget);
    sim.add_token("t-alice", "alice");
    (sim, clock)
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn default_headers_count_down() {
    let (sim, _clock) = start(settings(""), Budget::new(3, MINUTE)).await;

    let response = client()
        .get(format!("{}/items", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&response, "x-ratelimit-remaining"), Some("2"));
    assert_eq!(header(&response, "x-ratelimit-reset"), Some("1700000060"));
    assert_eq!(header(&response, "x-ratelimit-used"), None);
    assert_eq!(
        header(&response, "date"),
        Some(format_epoch_ms(START_MS).as_str())
    );
    assert_eq!(sim.remaining("alice", "default"), 2);
    assert_eq!(sim.successful_requests(), 1);
    assert_eq!(sim.last_credential().as_deref(), Some("t-alice"));
}

#[tokio::test]
async fn configured_headers_and_throttle_status() {
    let mut settings = settings("/v2");
    settings.auth_header = Some("X-Api-Key".to_owned());
    settings.auth_scheme = Some(String::new());
    settings.remaining_header = "X-Quota-Left".to_owned();
    settings.used_header = Some("X-Quota-Used".to_owned());
    settings.bucket_header = Some("X-Quota-Bucket".to_owned());
    settings.reset_format = ResetFormat::EpochMilliseconds;
    settings.throttle_statuses = vec![503];
    let (sim, _clock) = start(settings, Budget::new(1, Duration::from_millis(1_500))).await;
    let url = format!("{}/items", sim.uri());
    assert!(sim.uri().ends_with("/v2"), "{}", sim.uri());

    let first = client()
        .get(&url)
        .header("X-Api-Key", "t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-quota-left"), Some("0"));
    assert_eq!(header(&first, "x-quota-used"), Some("1"));
    assert_eq!(header(&first, "x-quota-bucket"), Some("default"));
    assert_eq!(header(&first, "x-ratelimit-reset"), Some("1700000001500"));
    assert_eq!(header(&first, "x-ratelimit-remaining"), None);

    let second = client()
        .get(&url)
        .header("X-Api-Key", "t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(header(&second, "x-quota-left"), Some("0"));
    assert_eq!(header(&second, "retry-after"), Some("2"));
    assert_eq!(sim.over_limit_responses(), 1);
}

#[tokio::test]
async fn reset_formats_write_one_instant() {
    let cases = [
        (ResetFormat::EpochSeconds, "1700000060".to_owned()),
        (ResetFormat::EpochMilliseconds, "1700000060000".to_owned()),
        (ResetFormat::SecondsFromNow, "60".to_owned()),
        (ResetFormat::HttpDate, format_epoch_ms(START_MS + 60_000)),
    ];
    for (format, expected) in cases {
        let mut settings = settings("");
        settings.reset_format = format;
        let (sim, _clock) = start(settings, Budget::new(5, MINUTE)).await;
        let response = client()
            .get(format!("{}/items", sim.uri()))
            .bearer_auth("t-alice")
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&response, "x-ratelimit-reset"),
            Some(expected.as_str()),
            "{}",
            format.name()
        );
    }
}

#[tokio::test]
async fn auth_is_parsed_strictly() {
    let mut settings = settings("");
    settings.auth_scheme = Some("token".to_owned());
    settings.invalid_statuses = vec![498];
    let (sim, _clock) = start(settings, Budget::new(5, MINUTE)).await;
    let url = format!("{}/items", sim.uri());

    let cases = [
        (Some("token t-alice"), 200, Some("t-alice")),
        (Some("TOKEN t-alice"), 200, Some("t-alice")),
        (Some("Bearer t-alice"), 498, None),
        (Some("token "), 498, None),
        (Some("token t-unknown"), 498, Some("t-unknown")),
        (None, 498, None),
    ];
    for (value, status, credential) in cases {
        let mut request = client().get(&url);
        if let Some(value) = value {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{value:?}");
        assert_eq!(sim.last_credential().as_deref(), credential, "{value:?}");
    }
    assert_eq!(sim.unauthorized_responses(), 4);
    assert_eq!(sim.requests_by_token("t-alice"), 2);
}

#[tokio::test]
async fn query_auth_reads_parameter() {
    let mut settings = settings("");
    settings.auth_query = Some("api_key".to_owned());
    let (sim, _clock) = start(settings, Budget::new(5, MINUTE)).await;

    let ok = client()
        .get(format!("{}/items?api_key=t-alice", sim.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let header_only = client()
        .get(format!("{}/items", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(header_only.status(), 401);
}

#[tokio::test]
async fn revoked_token_is_rejected() {
    let (sim, _clock) = start(settings(""), Budget::new(5, MINUTE)).await;
    sim.revoke_token("t-alice");

    let response = client()
        .get(format!("{}/items", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "x-ratelimit-remaining"), None);
    assert_eq!(sim.remaining("alice", "default"), 5);
}

#[tokio::test]
async fn window_resets_on_clock() {
    let (sim, clock) = start(settings(""), Budget::new(1, MINUTE)).await;
    let url = format!("{}/items", sim.uri());
    let send = || client().get(&url).bearer_auth("t-alice").send();

    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(send().await.unwrap().status(), 429);
    assert_eq!(sim.reset_at("alice", "default"), START_MS + 60_000);

    clock.advance_to(START_MS + 60_000);
    let renewed = send().await.unwrap();
    assert_eq!(renewed.status(), 200);
    assert_eq!(header(&renewed, "x-ratelimit-reset"), Some("1700000120"));
}

#[tokio::test]
async fn buckets_follow_rules() {
    let mut settings = settings("");
    settings.bucket_header = Some("X-Bucket".to_owned());
    settings.buckets = vec![BucketRule::new("/search", "search").method("GET")];
    let (sim, _clock) = start(settings, Budget::new(5, MINUTE)).await;
    sim.set_budget("alice", "search", Budget::new(2, MINUTE));

    let search = client()
        .get(format!("{}/search/code", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&search, "x-bucket"), Some("search"));
    assert_eq!(header(&search, "x-ratelimit-remaining"), Some("1"));

    let post = client()
        .post(format!("{}/search/code", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&post, "x-bucket"), Some("default"));
    assert_eq!(sim.remaining("alice", "default"), 4);
}

#[tokio::test]
async fn status_endpoint_free_or_paid() {
    for free in [true, false] {
        let mut settings = settings("");
        settings.status_endpoint = Some("/quota".to_owned());
        settings.status_endpoint_free = free;
        let (sim, _clock) = start(settings, Budget::new(5, MINUTE)).await;

        let response = client()
            .get(format!("{}/quota", sim.uri()))
            .bearer_auth("t-alice")
            .send()
            .await
            .unwrap();

        let expected = if free { 5 } else { 4 };
        assert_eq!(response.status(), 200);
        assert_eq!(sim.remaining("alice", "default"), expected, "free: {free}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["remaining"], expected, "free: {free}");
    }
}

#[tokio::test]
async fn account_endpoint_nests_pointer() {
    let mut settings = settings("");
    settings.account_endpoint = Some("/me".to_owned());
    settings.account_pointer = Some("/user/login".to_owned());
    let (sim, _clock) = start(settings, Budget::new(5, MINUTE)).await;

    let body: Value = client()
        .get(format!("{}/me", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(body, json!({"user": {"login": "alice"}}));
}

#[tokio::test]
async fn listing_pages_with_links() {
    let mut settings = settings("/api");
    settings.repositories_path = Some("/orgs/{owner}/repos".to_owned());
    settings.items_pointer = Some("/data".to_owned());
    settings.name_field = "slug".to_owned();
    let (sim, _clock) = start(settings, Budget::new(50, MINUTE)).await;
    sim.add_repositories("acme", 45);

    let first = client()
        .get(format!("{}/orgs/acme/repos", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    let link = header(&first, "link").unwrap().to_owned();
    let body: Value = first.json().await.unwrap();
    let items = body["data"].as_array().unwrap();
    assert_eq!(items.len(), 30);
    assert_eq!(items[0]["slug"], "repo-0001");
    assert_eq!(items[0]["full_name"], "acme/repo-0001");
    assert!(
        link.contains("/api/orgs/acme/repos?per_page=30&page=2>; rel=\"next\""),
        "{link}"
    );

    let last = client()
        .get(format!("{}/orgs/acme/repos?page=2", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&last, "link"), None);
    let body: Value = last.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 15);
    assert_eq!(sim.repository_names("acme").len(), 45);

    let unknown = client()
        .get(format!("{}/orgs/nobody/repos", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn injected_failures_and_forbidden_paths() {
    let mut settings = settings("");
    settings.forbidden_statuses = vec![451];
    let (sim, _clock) = start(settings, Budget::new(10, MINUTE)).await;
    let get = |path: &str| {
        client()
            .get(format!("{}{path}", sim.uri()))
            .bearer_auth("t-alice")
            .send()
    };

    sim.inject_server_errors(1);
    assert_eq!(get("/items").await.unwrap().status(), 502);

    sim.inject_throttles(1, Some(7));
    let throttled = get("/items").await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(header(&throttled, "retry-after"), Some("7"));
    assert_eq!(header(&throttled, "x-ratelimit-remaining"), None);

    sim.inject_throttles(1, None);
    let bare = get("/items").await.unwrap();
    assert_eq!(bare.status(), 429);
    assert_eq!(header(&bare, "retry-after"), None);

    sim.forbid("/admin");
    let forbidden = get("/admin").await.unwrap();
    assert_eq!(forbidden.status(), 451);
    assert_eq!(header(&forbidden, "x-ratelimit-remaining"), Some("9"));

    assert_eq!(sim.injected_throttle_responses(), 2);
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(sim.total_requests(), 4);
    assert_eq!(sim.successful_requests(), 0);
}

#[tokio::test]
async fn set_remaining_spends_out_of_sight() {
    let (sim, _clock) = start(settings(""), Budget::new(10, MINUTE)).await;
    sim.set_remaining("alice", "default", 1);

    let response = client()
        .get(format!("{}/items", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();

    assert_eq!(header(&response, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(sim.remaining("alice", "default"), 0);
}
