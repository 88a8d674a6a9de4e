use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::Value;
use tokenfleet_core::clock::{format_epoch_ms, ManualClock};
use tokenfleet_testkit::gitlab::Throttle;
use tokenfleet_testkit::{GitlabSimulator, GitlabSimulatorBuilder};

/// 2023-11-14T22:13:20Z. The minute window that contains it ends 40 s later.
const START_MS: u64 = 1_700_000_000_000;
const START: u64 = START_MS / 1000;

const MINUTE: Duration = Duration::from_secs(60);

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// Starts a simulator on a manual clock with user `alice` (token `glpat-alice`).
async fn start_with_alice(
    builder: GitlabSimulatorBuilder,
    throttle: Throttle,
) -> (GitlabSimulator, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let sim = builder.clock(Arc::new(clock.clone())).start().await;
    sim.add_account("alice", throttle);
    sim.add_token("glpat-alice", "alice");
    (sim, clock)
}

async fn get(sim: &GitlabSimulator, token: Option<&str>, path: &str) -> Response {
    let mut request = client().get(format!("{}{path}", sim.uri()));
    if let Some(token) = token {
        request = request.header("PRIVATE-TOKEN", token);
    }
    request.send().await.unwrap()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

fn header_u64(response: &Response, name: &str) -> u64 {
    header(response, name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .parse()
        .unwrap()
}

/// Returns the URL of `rel` in a `Link` header.
fn rel_url(response: &Response, rel: &str) -> Option<String> {
    let link = header(response, "link")?;
    link.split(", ").find_map(|part| {
        let (url, name) = part.split_once("; ")?;
        (name == format!("rel=\"{rel}\""))
            .then(|| url.trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

#[tokio::test]
async fn headers_follow_gitlab_arithmetic() {
    let (sim, _clock) =
        start_with_alice(GitlabSimulator::builder(), Throttle::self_managed()).await;
    sim.set_remaining("alice", 201);

    let response = get(&sim, Some("glpat-alice"), "/user").await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "ratelimit-name").as_deref(),
        Some("throttle_authenticated_api")
    );
    assert_eq!(header_u64(&response, "ratelimit-limit"), 120);
    assert_eq!(header_u64(&response, "ratelimit-observed"), 7000);
    assert_eq!(header_u64(&response, "ratelimit-remaining"), 200);
    // The hour window aligned to the epoch ends at 23:00:00.
    assert_eq!(header_u64(&response, "ratelimit-reset"), 1_700_002_800);
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(header(&response, "ratelimit-resettime"), None);
    assert_eq!(
        header(&response, "date").as_deref(),
        Some(format_epoch_ms(START_MS).as_str())
    );
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "alice");
    assert_eq!(user["id"], 1000);
}

#[tokio::test]
async fn throttled_response_states_one_instant() {
    let (sim, _clock) =
        start_with_alice(GitlabSimulator::builder(), Throttle::new(2, MINUTE)).await;
    get(&sim, Some("glpat-alice"), "/user").await;
    get(&sim, Some("glpat-alice"), "/user").await;

    let response = get(&sim, Some("glpat-alice"), "/user").await;

    assert_eq!(response.status(), 429);
    let reset = START + 40;
    assert_eq!(header_u64(&response, "ratelimit-reset"), reset);
    assert_eq!(header_u64(&response, "retry-after"), 40);
    assert_eq!(
        header(&response, "ratelimit-resettime").as_deref(),
        Some(format_epoch_ms(reset * 1000).as_str())
    );
    assert_eq!(header_u64(&response, "ratelimit-remaining"), 0);
    assert_eq!(header_u64(&response, "ratelimit-observed"), 3);
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(response.text().await.unwrap().trim(), "Retry later");
    assert_eq!(sim.over_limit_responses(), 1);
    assert_eq!(sim.successful_requests(), 2);
}

#[tokio::test]
async fn window_resets_on_epoch_boundary() {
    let (sim, clock) = start_with_alice(GitlabSimulator::builder(), Throttle::new(1, MINUTE)).await;
    assert_eq!(sim.reset_at("alice"), START + 40);
    get(&sim, Some("glpat-alice"), "/user").await;
    assert_eq!(sim.remaining("alice"), 0);

    clock.advance(Duration::from_secs(39));
    assert_eq!(get(&sim, Some("glpat-alice"), "/user").await.status(), 429);

    clock.advance(Duration::from_secs(1));
    let response = get(&sim, Some("glpat-alice"), "/user").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_u64(&response, "ratelimit-observed"), 1);
    assert_eq!(header_u64(&response, "ratelimit-reset"), START + 100);
}

#[tokio::test]
async fn older_versions_send_headers_on_429_only() {
    let builder = GitlabSimulator::builder().headers_on_every_response(false);
    let (sim, _clock) = start_with_alice(builder, Throttle::new(1, MINUTE)).await;

    let ok = get(&sim, Some("glpat-alice"), "/user").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "ratelimit-remaining"), None);

    let throttled = get(&sim, Some("glpat-alice"), "/user").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(header_u64(&throttled, "ratelimit-remaining"), 0);
    assert!(header(&throttled, "retry-after").is_some());
}

#[tokio::test]
async fn omitted_headers_are_left_out() {
    let builder = GitlabSimulator::builder()
        .omit_header("Retry-After")
        .omit_header("ratelimit-reset");
    let (sim, _clock) = start_with_alice(builder, Throttle::new(0, MINUTE)).await;

    let response = get(&sim, Some("glpat-alice"), "/user").await;

    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(header(&response, "ratelimit-reset"), None);
    assert!(header(&response, "ratelimit-resettime").is_some());
}

#[tokio::test]
async fn application_limit_has_no_headers() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;
    sim.inject_application_limit("alice", 1);

    let limited = get(&sim, Some("glpat-alice"), "/users/alice/projects").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "ratelimit-remaining"), None);
    assert_eq!(header(&limited, "retry-after"), None);
    let body: Value = limited.json().await.unwrap();
    assert!(body["message"]["error"]
        .as_str()
        .unwrap()
        .contains("too many times"));

    let next = get(&sim, Some("glpat-alice"), "/users/alice/projects").await;
    assert_eq!(next.status(), 200);
    // The throttle counted the limited request too.
    assert_eq!(header_u64(&next, "ratelimit-observed"), 2);
    assert_eq!(sim.application_limit_responses(), 1);
    assert_eq!(sim.over_limit_responses(), 0);
}

#[tokio::test]
async fn rejected_tokens_get_401_bodies() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;
    sim.add_token("glpat-old", "alice");
    sim.add_token("oauth-expired", "alice");
    sim.revoke_token("glpat-old");
    sim.expire_token("oauth-expired");

    let unknown = get(&sim, Some("glpat-unknown"), "/user").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        unknown.text().await.unwrap(),
        r#"{"message":"401 Unauthorized"}"#
    );

    let revoked = get(&sim, Some("glpat-old"), "/user").await;
    assert_eq!(revoked.status(), 401);

    let expired = get(&sim, Some("oauth-expired"), "/user").await;
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");

    let anonymous = get(&sim, None, "/user").await;
    assert_eq!(anonymous.status(), 401);

    assert_eq!(sim.unauthorized_responses(), 4);
    assert_eq!(sim.remaining("alice"), 2000);
}

#[tokio::test]
async fn both_auth_headers_are_read() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;

    let bearer = client()
        .get(format!("{}/user", sim.uri()))
        .bearer_auth("glpat-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    assert_eq!(sim.last_credential().as_deref(), Some("glpat-alice"));

    let private = get(&sim, Some("glpat-alice"), "/user").await;
    assert_eq!(private.status(), 200);
    assert_eq!(sim.last_credential().as_deref(), Some("glpat-alice"));

    let basic = client()
        .get(format!("{}/user", sim.uri()))
        .header("Authorization", "Basic Z2xwYXQtYWxpY2U6")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(sim.last_credential(), None);
    assert_eq!(sim.requests_by_token("glpat-alice"), 2);
}

#[tokio::test]
async fn tokens_of_one_user_share_throttle() {
    let (sim, _clock) =
        start_with_alice(GitlabSimulator::builder(), Throttle::new(3, MINUTE)).await;
    sim.add_token("glpat-alice-2", "alice");

    get(&sim, Some("glpat-alice"), "/user").await;
    let second = get(&sim, Some("glpat-alice-2"), "/user").await;

    assert_eq!(header_u64(&second, "ratelimit-observed"), 2);
    assert_eq!(sim.remaining("alice"), 1);
}

#[tokio::test]
async fn failures_and_refusals() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;
    sim.forbid("/projects/1/variables");
    sim.inject_server_errors(1);

    let error = get(&sim, Some("glpat-alice"), "/user").await;
    assert_eq!(error.status(), 500);

    let forbidden = get(&sim, Some("glpat-alice"), "/projects/1/variables").await;
    assert_eq!(forbidden.status(), 403);
    assert!(header(&forbidden, "ratelimit-remaining").is_some());
    assert_eq!(
        forbidden.text().await.unwrap(),
        r#"{"message":"403 Forbidden"}"#
    );

    let no_user = get(&sim, Some("glpat-alice"), "/users/nobody/projects").await;
    assert_eq!(no_user.status(), 404);
    assert_eq!(
        no_user.text().await.unwrap(),
        r#"{"message":"404 User Not Found"}"#
    );

    let no_group = get(&sim, Some("glpat-alice"), "/groups/nobody/projects").await;
    assert_eq!(no_group.status(), 404);
    assert_eq!(
        no_group.text().await.unwrap(),
        r#"{"message":"404 Group Not Found"}"#
    );

    let no_route = get(&sim, Some("glpat-alice"), "/no/such/route").await;
    assert_eq!(no_route.status(), 404);

    assert_eq!(sim.total_requests(), 5);
    assert_eq!(sim.successful_requests(), 0);
}

#[tokio::test]
async fn user_projects_paginate_with_links() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;
    sim.add_repositories("alice", 45);
    let user_id = sim.add_account("bob", Throttle::default());

    let first = get(&sim, None, "/users/alice/projects?per_page=20").await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-name").as_deref(),
        Some("throttle_unauthenticated_api")
    );
    assert_eq!(header(&first, "x-page").as_deref(), Some("1"));
    assert_eq!(header(&first, "x-next-page").as_deref(), Some("2"));
    assert_eq!(header(&first, "x-prev-page").as_deref(), Some(""));
    assert_eq!(header(&first, "x-total").as_deref(), Some("45"));
    assert_eq!(header(&first, "x-total-pages").as_deref(), Some("3"));
    let next = rel_url(&first, "next").unwrap();
    assert!(
        next.ends_with("/api/v4/users/alice/projects?page=2&per_page=20"),
        "{next}"
    );
    assert!(rel_url(&first, "last").unwrap().contains("page=3"));

    let projects: Vec<Value> = first.json().await.unwrap();
    assert_eq!(projects.len(), 20);
    assert_eq!(projects[0]["path_with_namespace"], "alice/project-00001");
    assert_eq!(projects[0]["namespace"]["kind"], "user");
    assert_eq!(projects[0]["namespace"]["full_path"], "alice");
    assert!(projects[0].get("forked_from_project").is_none());
    assert_eq!(projects[6]["forked_from_project"]["id"], 1);

    let last = get(&sim, None, "/users/1000/projects?per_page=20&page=3").await;
    assert_eq!(header(&last, "x-next-page").as_deref(), Some(""));
    assert_eq!(rel_url(&last, "next"), None);
    let projects: Vec<Value> = last.json().await.unwrap();
    assert_eq!(projects.len(), 5);

    let empty = get(&sim, None, &format!("/users/{user_id}/projects")).await;
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.text().await.unwrap(), "[]");
}

#[tokio::test]
async fn nested_group_listing() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;
    sim.add_repositories("team", 2);
    sim.add_repositories("team/ci", 3);
    sim.add_repositories("teammates", 1);

    let own = get(&sim, Some("glpat-alice"), "/groups/team/projects").await;
    let own: Vec<Value> = own.json().await.unwrap();
    assert_eq!(own.len(), 2);

    let all = get(
        &sim,
        Some("glpat-alice"),
        "/groups/team/projects?include_subgroups=true",
    )
    .await;
    let all: Vec<Value> = all.json().await.unwrap();
    let paths: Vec<&str> = all
        .iter()
        .map(|project| project["path_with_namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "team/project-00001",
            "team/project-00002",
            "team/ci/project-00001",
            "team/ci/project-00002",
            "team/ci/project-00003"
        ]
    );
    assert_eq!(all[2]["namespace"]["parent_id"], all[0]["namespace"]["id"]);

    let nested = get(&sim, Some("glpat-alice"), "/groups/team%2Fci/projects").await;
    let nested: Vec<Value> = nested.json().await.unwrap();
    assert_eq!(nested.len(), 3);
    assert_eq!(sim.repository_names("team/ci").len(), 3);
}

#[tokio::test]
async fn large_listing_drops_totals() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;
    sim.add_repositories("big-group", 10_001);

    let first = get(
        &sim,
        Some("glpat-alice"),
        "/groups/big-group/projects?per_page=100",
    )
    .await;

    assert_eq!(header(&first, "x-total"), None);
    assert_eq!(header(&first, "x-total-pages"), None);
    assert_eq!(rel_url(&first, "last"), None);
    assert!(rel_url(&first, "next").is_some());
    assert_eq!(header(&first, "x-next-page").as_deref(), Some("2"));
}

#[tokio::test]
async fn listing_without_link_header() {
    let builder = GitlabSimulator::builder().link_headers(false);
    let (sim, _clock) = start_with_alice(builder, Throttle::default()).await;
    sim.add_repositories("alice", 30);

    let first = get(&sim, Some("glpat-alice"), "/users/alice/projects").await;

    assert_eq!(header(&first, "link"), None);
    assert_eq!(header(&first, "x-next-page").as_deref(), Some("2"));
    assert_eq!(header(&first, "x-per-page").as_deref(), Some("20"));
}

#[tokio::test]
async fn offset_past_limit_is_rejected() {
    let (sim, _clock) = start_with_alice(GitlabSimulator::builder(), Throttle::default()).await;
    sim.add_repositories("alice", 3);

    let last_reachable = get(
        &sim,
        Some("glpat-alice"),
        "/users/alice/projects?per_page=100&page=500",
    )
    .await;
    assert_eq!(last_reachable.status(), 200);

    let past = get(
        &sim,
        Some("glpat-alice"),
        "/users/alice/projects?per_page=100&page=501",
    )
    .await;
    assert_eq!(past.status(), 400);
    let body: Value = past.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("keyset pagination"));
}
