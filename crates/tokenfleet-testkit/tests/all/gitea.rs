use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::Value;
use tokenfleet_core::clock::{format_epoch_ms, ManualClock};
use tokenfleet_testkit::{GiteaSimulator, GiteaSimulatorBuilder};

/// 2023-11-14T22:13:20Z, a whole second so that window ends are easy to predict.
const START_MS: u64 = 1_700_000_000_000;

const WINDOW: Duration = Duration::from_secs(60);

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// Starts a simulator on a manual clock with account `alice` (token `t-alice`).
async fn start_with(builder: GiteaSimulatorBuilder) -> (GiteaSimulator, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let sim = builder.clock(Arc::new(clock.clone())).start().await;
    sim.add_account("alice");
    sim.add_token("t-alice", "alice");
    (sim, clock)
}

async fn start() -> (GiteaSimulator, ManualClock) {
    start_with(GiteaSimulator::builder()).await
}

async fn get(sim: &GiteaSimulator, token: Option<&str>, path: &str) -> Response {
    let mut request = client().get(format!("{}{path}", sim.uri()));
    if let Some(token) = token {
        request = request.header("authorization", format!("token {token}"));
    }
    request.send().await.unwrap()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn gitea_uri_names_api_root() {
    let (sim, _clock) = start().await;
    assert!(sim.uri().starts_with("http://127.0.0.1:"), "{}", sim.uri());
    assert!(sim.uri().ends_with("/api/v1"), "{}", sim.uri());
}

#[tokio::test]
async fn gitea_user_returns_login() {
    let (sim, _clock) = start().await;

    let response = get(&sim, Some("t-alice"), "/user").await;

    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "date"), Some(format_epoch_ms(START_MS)));
    assert_eq!(header(&response, "x-ratelimit-remaining"), None);
    assert_eq!(header(&response, "ratelimit-remaining"), None);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["login"], "alice");
    assert_eq!(body["id"], 1000);
    assert_eq!(sim.successful_requests(), 1);
}

#[tokio::test]
async fn gitea_accepts_both_auth_schemes() {
    let (sim, _clock) = start().await;
    for (value, scheme) in [
        ("token t-alice", "token"),
        ("Bearer t-alice", "bearer"),
        ("TOKEN t-alice", "token"),
        ("bearer t-alice", "bearer"),
    ] {
        let response = client()
            .get(format!("{}/user", sim.uri()))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{value}");
        assert_eq!(sim.last_credential().as_deref(), Some("t-alice"));
        assert_eq!(sim.last_scheme().as_deref(), Some(scheme));
    }
}

#[tokio::test]
async fn gitea_anonymous_user_is_unauthorized() {
    let (sim, _clock) = start().await;

    let response = get(&sim, None, "/user").await;

    assert_eq!(response.status(), 401);
    assert_eq!(sim.last_credential(), None);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "token is required");
    assert!(body["url"].as_str().unwrap().ends_with("/api/swagger"));
    assert_eq!(sim.unauthorized_responses(), 1);
}

#[tokio::test]
async fn gitea_unknown_scheme_is_anonymous() {
    let (sim, _clock) = start().await;

    let response = client()
        .get(format!("{}/user", sim.uri()))
        .header("authorization", "Basic dDphbGljZQ==")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    assert_eq!(sim.last_credential(), None);
}

#[tokio::test]
async fn gitea_revoked_token_is_unauthorized() {
    let (sim, _clock) = start().await;
    sim.add_repositories("alice", 2);
    sim.revoke_token("t-alice");

    for path in ["/user", "/users/alice/repos"] {
        let response = get(&sim, Some("t-alice"), path).await;
        assert_eq!(response.status(), 401, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], "token is required");
    }
    assert_eq!(sim.requests_by_token("t-alice"), 2);

    sim.add_token("t-alice", "alice");
    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
}

#[tokio::test]
async fn gitea_invalid_token_as_anonymous() {
    let (sim, _clock) =
        start_with(GiteaSimulator::builder().invalid_tokens_as_anonymous(true)).await;
    sim.add_repositories("alice", 2);

    let listing = get(&sim, Some("t-unknown"), "/users/alice/repos").await;
    assert_eq!(listing.status(), 200);
    let items: Vec<Value> = listing.json().await.unwrap();
    assert_eq!(items.len(), 2);

    let user = get(&sim, Some("t-unknown"), "/user").await;
    assert_eq!(user.status(), 401);
}

#[tokio::test]
async fn gitea_unlimited_by_default() {
    let (sim, _clock) = start().await;
    for _ in 0..200 {
        assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
    }
    assert_eq!(sim.remaining("alice"), None);
    assert_eq!(sim.reset_at_ms("alice"), None);
    assert_eq!(sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn gitea_proxy_throttles_with_retry_after() {
    let (sim, clock) = start().await;
    sim.limit_account("alice", 3, WINDOW);
    assert_eq!(sim.remaining("alice"), Some(3));

    clock.advance(Duration::from_secs(5));
    for _ in 0..3 {
        assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
    }
    clock.advance(Duration::from_secs(10));
    let response = get(&sim, Some("t-alice"), "/user").await;

    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("50"));
    assert_eq!(header(&response, "x-ratelimit-remaining"), None);
    assert_eq!(header(&response, "ratelimit-limit"), None);
    assert!(header(&response, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("429 Too Many Requests"));
    assert_eq!(sim.over_limit_responses(), 1);
    assert_eq!(sim.successful_requests(), 3);
    assert_eq!(sim.reset_at_ms("alice"), Some(START_MS + 65_000));

    // The window opened at the first request and ends a minute later.
    clock.advance_to(START_MS + 65_000);
    assert_eq!(sim.remaining("alice"), Some(3));
    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
    assert_eq!(sim.reset_at_ms("alice"), Some(START_MS + 125_000));
}

#[tokio::test]
async fn gitea_retry_after_as_date() {
    let (sim, clock) = start_with(GiteaSimulator::builder().retry_after_as_date(true)).await;
    sim.limit_account("alice", 1, WINDOW);

    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
    clock.advance(Duration::from_millis(1_500));
    let response = get(&sim, Some("t-alice"), "/user").await;

    assert_eq!(response.status(), 429);
    assert_eq!(
        header(&response, "retry-after"),
        Some(format_epoch_ms(START_MS + 60_000))
    );
}

#[tokio::test]
async fn gitea_proxy_counts_every_response() {
    let (sim, _clock) = start().await;
    sim.limit_account("alice", 3, WINDOW);
    sim.forbid("/repos/alice/x/hooks");

    assert_eq!(
        get(&sim, Some("t-alice"), "/repos/alice/x/hooks")
            .await
            .status(),
        403
    );
    assert_eq!(
        get(&sim, Some("t-alice"), "/users/nobody/repos")
            .await
            .status(),
        404
    );

    assert_eq!(sim.remaining("alice"), Some(1));
    assert_eq!(sim.successful_requests(), 0);
}

#[tokio::test]
async fn gitea_drain_and_set_remaining() {
    let (sim, _clock) = start().await;
    sim.limit_account("alice", 10, WINDOW);

    sim.set_remaining("alice", 1);
    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 429);

    sim.set_remaining("alice", 4);
    assert_eq!(sim.remaining("alice"), Some(4));
    sim.drain("alice");
    assert_eq!(sim.remaining("alice"), Some(0));
    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 429);
    assert_eq!(sim.reset_at_ms("alice"), Some(START_MS + 60_000));
}

#[tokio::test]
async fn gitea_injected_throttle_has_no_headers() {
    let (sim, _clock) = start().await;
    sim.inject_throttle("alice", 1);

    let response = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(sim.throttled_responses(), 1);
    assert_eq!(sim.over_limit_responses(), 0);

    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
}

#[tokio::test]
async fn gitea_injected_server_error() {
    let (sim, _clock) = start().await;
    sim.inject_server_errors(1);

    let response = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("Bad Gateway"));
    assert_eq!(sim.server_error_responses(), 1);

    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);
    assert_eq!(sim.total_requests(), 2);
}

#[tokio::test]
async fn gitea_forbidden_path_names_scope() {
    let (sim, _clock) = start().await;
    sim.forbid("/admin/users");

    let response = get(&sim, Some("t-alice"), "/admin/users").await;

    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["message"],
        "token does not have at least one of required scope(s): [read:repository]"
    );
}

#[tokio::test]
async fn gitea_pages_with_link_and_total() {
    let (sim, _clock) = start().await;
    sim.add_repositories("alice", 120);

    let first = get(&sim, Some("t-alice"), "/users/alice/repos?limit=50&page=1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-total-count").as_deref(), Some("120"));
    let link = header(&first, "link").unwrap();
    let root = sim.uri();
    assert_eq!(
        link,
        format!(
            "<{root}/users/alice/repos?limit=50&page=2>; rel=\"next\",\
             <{root}/users/alice/repos?limit=50&page=3>; rel=\"last\""
        )
    );
    let items: Vec<Value> = first.json().await.unwrap();
    assert_eq!(items.len(), 50);
    assert_eq!(items[0]["full_name"], "alice/alice-0000");
    assert_eq!(items[0]["owner"]["login"], "alice");

    let middle = get(&sim, Some("t-alice"), "/users/alice/repos?limit=50&page=2").await;
    let link = header(&middle, "link").unwrap();
    for rel in ["next", "last", "first", "prev"] {
        assert!(link.contains(&format!("rel=\"{rel}\"")), "{rel}: {link}");
    }

    let last = get(&sim, Some("t-alice"), "/users/alice/repos?limit=50&page=3").await;
    let link = header(&last, "link").unwrap();
    assert!(!link.contains("rel=\"next\""), "{link}");
    assert!(link.contains("page=2>; rel=\"prev\""), "{link}");
    let items: Vec<Value> = last.json().await.unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(items[19]["name"], "alice-0119");

    let beyond = get(&sim, Some("t-alice"), "/users/alice/repos?limit=50&page=9").await;
    let items: Vec<Value> = beyond.json().await.unwrap();
    assert!(items.is_empty());
}

#[tokio::test]
async fn gitea_limit_defaults_and_caps() {
    let (sim, _clock) = start().await;
    sim.add_repositories("alice", 120);

    for (query, expected) in [
        ("", 30),
        ("?limit=0", 30),
        ("?limit=junk", 30),
        ("?limit=10", 10),
        ("?limit=100", 50),
        ("?page=0&limit=10", 10),
    ] {
        let response = get(&sim, Some("t-alice"), &format!("/users/alice/repos{query}")).await;
        let items: Vec<Value> = response.json().await.unwrap();
        assert_eq!(items.len(), expected, "{query}");
    }

    let settings: Value = get(&sim, None, "/settings/api").await.json().await.unwrap();
    assert_eq!(settings["max_response_items"], 50);
    assert_eq!(settings["default_paging_num"], 30);
}

#[tokio::test]
async fn gitea_single_page_has_no_link() {
    let (sim, _clock) = start().await;
    sim.add_repositories("alice", 3);

    let response = get(&sim, Some("t-alice"), "/users/alice/repos").await;

    assert_eq!(header(&response, "link"), None);
    assert_eq!(header(&response, "x-total-count").as_deref(), Some("3"));
}

#[tokio::test]
async fn gitea_organizations_live_under_orgs() {
    let (sim, _clock) = start().await;
    sim.add_repositories("forge", 4);

    assert_eq!(
        get(&sim, Some("t-alice"), "/users/forge/repos")
            .await
            .status(),
        404
    );
    let response = get(&sim, Some("t-alice"), "/orgs/forge/repos").await;
    assert_eq!(response.status(), 200);
    let items: Vec<Value> = response.json().await.unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(
        sim.repository_names("forge"),
        vec!["forge-0000", "forge-0001", "forge-0002", "forge-0003"]
    );

    assert_eq!(
        get(&sim, Some("t-alice"), "/orgs/alice/repos")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn gitea_unknown_owner_is_not_found() {
    let (sim, _clock) = start().await;

    let response = get(&sim, Some("t-alice"), "/users/nobody/repos").await;

    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "The target couldn't be found.");
}

#[tokio::test]
async fn gitea_user_without_repositories_lists_none() {
    let (sim, _clock) = start().await;

    let response = get(&sim, Some("t-alice"), "/users/alice/repos").await;

    assert_eq!(response.status(), 200);
    let items: Vec<Value> = response.json().await.unwrap();
    assert!(items.is_empty());
}

#[tokio::test]
async fn gitea_paths_outside_api_are_not_found() {
    let (sim, _clock) = start().await;
    let root = sim.uri().trim_end_matches("/api/v1").to_owned();

    let response = client()
        .get(format!("{root}/user"))
        .header("authorization", "token t-alice")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 404);
    assert_eq!(get(&sim, Some("t-alice"), "/version").await.status(), 200);
}

#[tokio::test]
async fn gitea_proxy_rate_headers_state_budget() {
    let (sim, _clock) = start_with(GiteaSimulator::builder().rate_headers(true)).await;
    sim.limit_account("alice", 2, WINDOW);
    sim.add_account("bob");
    sim.add_token("t-bob", "bob");
    let reset = (START_MS / 1000 + 60).to_string();

    let first = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(header(&first, "x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(
        header(&first, "x-ratelimit-remaining").as_deref(),
        Some("1")
    );
    assert_eq!(header(&first, "x-ratelimit-reset"), Some(reset.clone()));

    get(&sim, Some("t-alice"), "/user").await;
    let throttled = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(
        header(&throttled, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(header(&throttled, "x-ratelimit-reset"), Some(reset));
    assert_eq!(header(&throttled, "retry-after").as_deref(), Some("60"));

    // An account without a proxy budget gets no headers.
    let unlimited = get(&sim, Some("t-bob"), "/user").await;
    assert_eq!(header(&unlimited, "x-ratelimit-limit"), None);
}
