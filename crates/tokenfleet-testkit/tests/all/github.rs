use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use tokenfleet_core::clock::{format_epoch_ms, Clock, ManualClock};
use tokenfleet_testkit::{AccountLimits, GithubSimulator};

/// 2023-11-14T22:13:20Z, a whole second so that window ends are easy to predict.
const START_MS: u64 = 1_700_000_000_000;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn client_without_redirects() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts a simulator on a manual clock with account `alice` (token `t-alice`).
async fn start_with_alice(limits: AccountLimits) -> (GithubSimulator, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let sim = GithubSimulator::builder()
        .clock(Arc::new(clock.clone()))
        .start()
        .await;
    sim.add_account("alice", limits);
    sim.add_token("t-alice", "alice");
    (sim, clock)
}

async fn get(sim: &GithubSimulator, token: Option<&str>, path: &str) -> Response {
    let mut request = client().get(format!("{}{path}", sim.uri()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn post_graphql(sim: &GithubSimulator, token: &str) -> Response {
    client()
        .post(sim.graphql_uri())
        .bearer_auth(token)
        .json(&json!({"query": "{ rateLimit { cost remaining } }"}))
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

fn header_u64(response: &Response, name: &str) -> u64 {
    header(response, name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .parse()
        .unwrap()
}

fn assert_rate_headers_consistent(response: &Response) {
    let limit = header_u64(response, "x-ratelimit-limit");
    let remaining = header_u64(response, "x-ratelimit-remaining");
    let used = header_u64(response, "x-ratelimit-used");
    assert_eq!(used + remaining, limit, "used + remaining != limit");
    assert!(header(response, "x-ratelimit-reset").is_some());
    assert!(header(response, "x-ratelimit-resource").is_some());
}

/// Returns the URL of each `rel` in a `link` header.
fn link_rels(response: &Response) -> Vec<(String, String)> {
    let Some(link) = header(response, "link") else {
        return Vec::new();
    };
    link.split(", ")
        .map(|part| {
            let (url, rel) = part.split_once("; ").unwrap();
            let url = url.trim_start_matches('<').trim_end_matches('>');
            let rel = rel.trim_start_matches("rel=\"").trim_end_matches('"');
            (rel.to_owned(), url.to_owned())
        })
        .collect()
}

fn rel_url(response: &Response, rel: &str) -> Option<String> {
    link_rels(response)
        .into_iter()
        .find(|(name, _)| name == rel)
        .map(|(_, url)| url)
}

#[tokio::test]
async fn every_response_carries_common_headers() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 3);
    let token = Some("t-alice");

    let responses = vec![
        get(&sim, token, "/user").await,
        get(&sim, token, "/rate_limit").await,
        get(&sim, token, "/users/alice/repos").await,
        get(&sim, token, "/search/repositories?q=a").await,
        get(&sim, token, "/no/such/path").await,
        get(&sim, Some("unknown"), "/user").await,
        get(&sim, None, "/users/alice/repos").await,
        post_graphql(&sim, "t-alice").await,
    ];

    for response in &responses {
        assert_rate_headers_consistent(response);
        assert_eq!(
            header(response, "date").unwrap(),
            format_epoch_ms(START_MS),
            "date of {}",
            response.url()
        );
        assert_eq!(
            header(response, "content-type").unwrap(),
            "application/json; charset=utf-8"
        );
        assert!(header(response, "x-github-request-id").is_some());
    }
}

#[tokio::test]
async fn user_endpoint_spends_core() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;

    let response = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_u64(&response, "x-ratelimit-limit"), 5000);
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4999);
    assert_eq!(header_u64(&response, "x-ratelimit-used"), 1);
    assert_eq!(
        header_u64(&response, "x-ratelimit-reset"),
        START_MS / 1000 + 3600
    );
    assert_eq!(header(&response, "x-ratelimit-resource").unwrap(), "core");

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["login"], "alice");
    assert_eq!(body["id"], 1000);
    assert_eq!(body["type"], "User");
    assert!(body["node_id"].is_string());
    assert_eq!(sim.successful_requests(), 1);
    assert_eq!(sim.remaining("alice", "core"), 4999);
}

#[tokio::test]
async fn account_ids_count_up() {
    let sim = GithubSimulator::start().await;
    assert_eq!(sim.add_account("a", AccountLimits::default()), 1000);
    assert_eq!(sim.add_account("b", AccountLimits::default()), 1001);
}

#[tokio::test]
async fn primary_limit_exhausts_then_recovers() {
    let limits = AccountLimits::default().core(3, HOUR);
    let (sim, clock) = start_with_alice(limits).await;

    for expected_remaining in [2, 1, 0] {
        let response = get(&sim, Some("t-alice"), "/user").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header_u64(&response, "x-ratelimit-remaining"),
            expected_remaining
        );
    }

    let limited = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(limited.status(), 403);
    assert_eq!(header_u64(&limited, "x-ratelimit-remaining"), 0);
    assert_eq!(header_u64(&limited, "x-ratelimit-used"), 3);
    let reset = header_u64(&limited, "x-ratelimit-reset");
    assert_eq!(reset, START_MS / 1000 + 3600);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["message"], "API rate limit exceeded for user ID 1000.");
    assert_eq!(
        body["documentation_url"],
        "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    );
    assert_eq!(sim.over_limit_responses(), 1);
    assert_eq!(sim.successful_requests(), 3);

    clock.advance_to(reset * 1000 - 1);
    let still_limited = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(still_limited.status(), 403);
    assert_eq!(sim.over_limit_responses(), 2);

    clock.advance_to(reset * 1000);
    let recovered = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(header_u64(&recovered, "x-ratelimit-remaining"), 2);
    assert_eq!(header_u64(&recovered, "x-ratelimit-reset"), reset + 3600);
}

#[tokio::test]
async fn tokens_of_one_account_share_budget() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_token("t-alice-2", "alice");

    let first = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(header_u64(&first, "x-ratelimit-remaining"), 4999);
    let second = get(&sim, Some("t-alice-2"), "/user").await;
    assert_eq!(header_u64(&second, "x-ratelimit-remaining"), 4998);

    assert_eq!(sim.remaining("alice", "core"), 4998);
    assert_eq!(sim.requests_by_token("t-alice"), 1);
    assert_eq!(sim.requests_by_token("t-alice-2"), 1);
}

#[tokio::test]
async fn accounts_have_separate_budgets() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_account("bob", AccountLimits::default());
    sim.add_token("t-bob", "bob");
    sim.set_remaining("alice", "core", 0);

    let alice = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(alice.status(), 403);
    let bob = get(&sim, Some("t-bob"), "/user").await;
    assert_eq!(bob.status(), 200);
    assert_eq!(header_u64(&bob, "x-ratelimit-remaining"), 4999);
}

#[tokio::test]
async fn rate_limit_endpoint_is_free() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    get(&sim, Some("t-alice"), "/user").await;
    sim.set_remaining("alice", "search", 12);

    for _ in 0..3 {
        let response = get(&sim, Some("t-alice"), "/rate_limit").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4999);
        assert_eq!(header(&response, "x-ratelimit-resource").unwrap(), "core");

        let body: Value = response.json().await.unwrap();
        let core = &body["resources"]["core"];
        assert_eq!(core["limit"], 5000);
        assert_eq!(core["used"], 1);
        assert_eq!(core["remaining"], 4999);
        assert_eq!(core["reset"], START_MS / 1000 + 3600);
        assert_eq!(body["rate"], *core);

        let search = &body["resources"]["search"];
        assert_eq!(search["limit"], 30);
        assert_eq!(search["remaining"], 12);
        assert_eq!(search["used"], 18);
        assert_eq!(body["resources"]["code_search"]["limit"], 10);
        assert_eq!(body["resources"]["graphql"]["remaining"], 5000);
    }

    assert_eq!(sim.remaining("alice", "core"), 4999);
    assert_eq!(sim.successful_requests(), 1);
    assert_eq!(sim.total_requests(), 4);
}

#[tokio::test]
async fn unknown_token_gets_bad_credentials() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;

    let response = get(&sim, Some("nobody"), "/user").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
    );

    let rate_limit = get(&sim, Some("nobody"), "/rate_limit").await;
    assert_eq!(rate_limit.status(), 401);

    assert_eq!(sim.unauthorized_responses(), 2);
    assert_eq!(sim.requests_by_token("nobody"), 2);
    assert_eq!(sim.remaining("anonymous", "core"), 60);
}

#[tokio::test]
async fn revoked_token_gets_bad_credentials() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    assert_eq!(get(&sim, Some("t-alice"), "/user").await.status(), 200);

    sim.revoke_token("t-alice");
    let response = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");

    assert_eq!(sim.remaining("alice", "core"), 4999);
    assert_eq!(sim.unauthorized_responses(), 1);
    assert_eq!(sim.requests_by_token("t-alice"), 2);
}

#[tokio::test]
async fn token_scheme_is_case_insensitive() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;

    for value in ["token t-alice", "Token t-alice", "BEARER t-alice"] {
        let response = client()
            .get(format!("{}/user", sim.uri()))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{value}");
    }

    let basic = client()
        .get(format!("{}/user", sim.uri()))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(sim.remaining("alice", "core"), 4997);
}

#[tokio::test]
async fn anonymous_requests_use_ip_budget() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 1);

    let response = get(&sim, None, "/users/alice/repos").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_u64(&response, "x-ratelimit-limit"), 60);
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 59);

    sim.set_remaining("anonymous", "core", 0);
    let limited = get(&sim, None, "/users/alice/repos").await;
    assert_eq!(limited.status(), 403);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(
        body["message"],
        "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated \
         requests get a higher rate limit. Check out the documentation for more details.)"
    );
    assert_eq!(sim.remaining("alice", "core"), 5000);
}

#[tokio::test]
async fn anonymous_user_endpoint_requires_authentication() {
    let sim = GithubSimulator::start().await;

    let response = get(&sim, None, "/user").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Requires authentication");
    assert_eq!(sim.unauthorized_responses(), 1);
}

#[tokio::test]
async fn pagination_returns_every_repository_once() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 75);

    let first = get(&sim, Some("t-alice"), "/users/alice/repos?per_page=30").await;
    assert_eq!(first.status(), 200);
    let rels: Vec<String> = link_rels(&first).into_iter().map(|(rel, _)| rel).collect();
    assert_eq!(rels, ["next", "last"]);
    assert_eq!(
        rel_url(&first, "next").unwrap(),
        format!("{}/users/alice/repos?per_page=30&page=2", sim.uri())
    );
    assert_eq!(
        rel_url(&first, "last").unwrap(),
        format!("{}/users/alice/repos?per_page=30&page=3", sim.uri())
    );

    let mut names = Vec::new();
    let mut page_sizes = Vec::new();
    let mut response = first;
    loop {
        let next = rel_url(&response, "next");
        let items: Vec<Value> = response.json().await.unwrap();
        page_sizes.push(items.len());
        names.extend(
            items
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned()),
        );

        let Some(next) = next else { break };
        response = client()
            .get(next)
            .bearer_auth("t-alice")
            .send()
            .await
            .unwrap();
    }

    assert_eq!(page_sizes, [30, 30, 15]);
    assert_eq!(names, sim.repository_names("alice"));
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 75);
    assert_eq!(sim.remaining("alice", "core"), 4997);
}

#[tokio::test]
async fn pagination_middle_and_last_page_links() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 25);

    let middle = get(
        &sim,
        Some("t-alice"),
        "/users/alice/repos?per_page=10&page=2",
    )
    .await;
    let rels: Vec<String> = link_rels(&middle).into_iter().map(|(rel, _)| rel).collect();
    assert_eq!(rels, ["prev", "next", "last", "first"]);
    assert_eq!(
        rel_url(&middle, "first").unwrap(),
        format!("{}/users/alice/repos?per_page=10&page=1", sim.uri())
    );

    let last = get(
        &sim,
        Some("t-alice"),
        "/users/alice/repos?per_page=10&page=3",
    )
    .await;
    let rels: Vec<String> = link_rels(&last).into_iter().map(|(rel, _)| rel).collect();
    assert_eq!(rels, ["prev", "first"]);
    let items: Vec<Value> = last.json().await.unwrap();
    assert_eq!(items.len(), 5);
}

#[tokio::test]
async fn single_page_listing_has_no_link() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 5);

    let response = get(&sim, Some("t-alice"), "/users/alice/repos").await;
    assert!(header(&response, "link").is_none());
    let items: Vec<Value> = response.json().await.unwrap();
    assert_eq!(items.len(), 5);
}

#[tokio::test]
async fn repository_objects_have_minimal_fields() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 40);

    let response = get(&sim, Some("t-alice"), "/users/alice/repos?per_page=100").await;
    let items: Vec<Value> = response.json().await.unwrap();
    assert_eq!(items.len(), 40);

    for item in &items {
        let name = item["name"].as_str().unwrap();
        assert_eq!(item["full_name"], format!("alice/{name}"));
        assert_eq!(item["owner"]["login"], "alice");
        assert_eq!(item["owner"]["id"], 1000);
        assert_eq!(item["owner"]["type"], "User");
        assert_eq!(item["private"], false);
        assert_eq!(item["visibility"], "public");
        assert_eq!(item["url"], format!("{}/repos/alice/{name}", sim.uri()));
        assert!(item["id"].is_u64());
        assert!(item["node_id"].is_string());
        assert!(item["description"].is_string() || item["description"].is_null());
        assert!(item["language"].is_string() || item["language"].is_null());
        assert!(item["fork"].is_boolean());
        assert!(item["archived"].is_boolean());
        assert!(item["stargazers_count"].is_u64());
        assert!(item["clone_url"].as_str().unwrap().ends_with(".git"));
        assert!(item["ssh_url"]
            .as_str()
            .unwrap()
            .starts_with("git@127.0.0.1"));
        for field in ["created_at", "updated_at", "pushed_at"] {
            let timestamp = item[field].as_str().unwrap();
            assert_eq!(timestamp.len(), 20, "{field} = {timestamp}");
            assert!(timestamp.ends_with('Z'));
        }
    }

    assert!(items.iter().any(|item| item["description"].is_null()));
    assert!(items.iter().any(|item| item["language"].is_null()));
}

#[tokio::test]
async fn organization_repositories_are_listed() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("acme", 3);

    for path in ["/orgs/acme/repos", "/users/acme/repos"] {
        let response = get(&sim, Some("t-alice"), path).await;
        assert_eq!(response.status(), 200, "{path}");
        let items: Vec<Value> = response.json().await.unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["owner"]["type"], "Organization");
        assert_eq!(items[0]["owner"]["login"], "acme");
    }
}

#[tokio::test]
async fn unknown_owner_is_not_found_and_spends_core() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;

    let response = get(&sim, Some("t-alice"), "/users/ghost/repos").await;
    assert_eq!(response.status(), 404);
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4999);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Not Found");

    let user_as_org = get(&sim, Some("t-alice"), "/orgs/alice/repos").await;
    assert_eq!(user_as_org.status(), 404);

    let unknown_path = get(&sim, Some("t-alice"), "/repos/alice/missing").await;
    assert_eq!(unknown_path.status(), 404);

    assert_eq!(sim.remaining("alice", "core"), 4997);
    assert_eq!(sim.successful_requests(), 0);
}

#[tokio::test]
async fn search_spends_search_bucket_only() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 50);
    sim.add_repositories("acme", 50);

    let term = "parser";
    let expected = ["alice", "acme"]
        .iter()
        .flat_map(|owner| sim.repository_names(owner))
        .filter(|name| name.contains(term))
        .count();
    assert!(expected > 0, "no generated name contains {term}");

    let response = get(
        &sim,
        Some("t-alice"),
        "/search/repositories?q=parser&per_page=100",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-resource").unwrap(), "search");
    assert_eq!(header_u64(&response, "x-ratelimit-limit"), 30);
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 29);

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["total_count"], expected);
    assert_eq!(body["incomplete_results"], false);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), expected);
    assert!(items
        .iter()
        .all(|item| item["name"].as_str().unwrap().contains(term)));

    assert_eq!(sim.remaining("alice", "core"), 5000);
    assert_eq!(sim.remaining("alice", "search"), 29);
}

#[tokio::test]
async fn search_paginates_with_query_in_links() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_repositories("alice", 30);

    let response = get(
        &sim,
        Some("t-alice"),
        "/search/repositories?q=user:alice&per_page=10",
    )
    .await;
    assert_eq!(
        rel_url(&response, "next").unwrap(),
        format!(
            "{}/search/repositories?q=user%3Aalice&per_page=10&page=2",
            sim.uri()
        )
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["total_count"], 30);
    assert_eq!(body["items"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn search_without_query_is_rejected() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;

    let response = get(&sim, Some("t-alice"), "/search/repositories").await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Validation Failed");
}

#[tokio::test]
async fn code_search_spends_code_search_bucket() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;

    let response = get(&sim, Some("t-alice"), "/search/code?q=fn+main").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-ratelimit-resource").unwrap(),
        "code_search"
    );
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 9);
    assert_eq!(sim.remaining("alice", "search"), 30);
    assert_eq!(sim.remaining("alice", "core"), 5000);

    let anonymous = get(&sim, None, "/search/code?q=fn+main").await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn search_window_resets_after_a_minute() {
    let limits = AccountLimits::default().search(2, MINUTE);
    let (sim, clock) = start_with_alice(limits).await;

    for _ in 0..2 {
        let response = get(&sim, Some("t-alice"), "/search/repositories?q=x").await;
        assert_eq!(response.status(), 200);
    }
    let limited = get(&sim, Some("t-alice"), "/search/repositories?q=x").await;
    assert_eq!(limited.status(), 403);
    assert_eq!(
        header_u64(&limited, "x-ratelimit-reset"),
        START_MS / 1000 + 60
    );

    clock.advance(MINUTE);
    let recovered = get(&sim, Some("t-alice"), "/search/repositories?q=x").await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(header_u64(&recovered, "x-ratelimit-remaining"), 1);
}

#[tokio::test]
async fn graphql_spends_points() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.set_graphql_cost(5);

    let response = post_graphql(&sim, "t-alice").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-ratelimit-resource").unwrap(),
        "graphql"
    );
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4995);
    assert_eq!(header_u64(&response, "x-ratelimit-used"), 5);

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["rateLimit"]["cost"], 5);
    assert_eq!(body["data"]["rateLimit"]["remaining"], 4995);
    assert_eq!(sim.remaining("alice", "core"), 5000);
}

#[tokio::test]
async fn graphql_exhaustion_answers_rate_limited() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.set_remaining("alice", "graphql", 0);

    let response = post_graphql(&sim, "t-alice").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 0);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["type"], "RATE_LIMITED");
    assert_eq!(
        body["errors"][0]["message"],
        "API rate limit exceeded for user ID 1000."
    );
    assert_eq!(sim.over_limit_responses(), 1);
    assert_eq!(sim.successful_requests(), 0);
}

#[tokio::test]
async fn enterprise_mode_sends_no_rate_headers() {
    let sim = GithubSimulator::builder().enterprise(true).start().await;
    sim.add_account("alice", AccountLimits::default().core(1, HOUR));
    sim.add_token("t-alice", "alice");
    assert!(sim.uri().ends_with("/api/v3"));

    for _ in 0..3 {
        let response = get(&sim, Some("t-alice"), "/user").await;
        assert_eq!(response.status(), 200);
        assert!(header(&response, "x-ratelimit-limit").is_none());
        assert!(header(&response, "x-ratelimit-remaining").is_none());
        assert!(header(&response, "x-github-enterprise-version").is_some());
    }

    let rate_limit = get(&sim, Some("t-alice"), "/rate_limit").await;
    assert_eq!(rate_limit.status(), 404);
    assert!(header(&rate_limit, "x-ratelimit-limit").is_none());
    let body: Value = rate_limit.json().await.unwrap();
    assert_eq!(body["message"], "Rate limiting is not enabled.");

    let graphql = post_graphql(&sim, "t-alice").await;
    assert_eq!(graphql.status(), 200);
    assert!(header(&graphql, "x-ratelimit-resource").is_none());

    let outside_api = client()
        .get(format!("{}/user", sim.uri().trim_end_matches("/api/v3")))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(outside_api.status(), 404);

    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(sim.remaining("alice", "core"), 1);
}

#[tokio::test]
async fn enterprise_links_include_api_prefix() {
    let sim = GithubSimulator::builder().enterprise(true).start().await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("t-alice", "alice");
    sim.add_repositories("alice", 3);

    let response = get(&sim, Some("t-alice"), "/users/alice/repos?per_page=1").await;
    assert_eq!(
        rel_url(&response, "next").unwrap(),
        format!("{}/users/alice/repos?per_page=1&page=2", sim.uri())
    );
}

#[tokio::test]
async fn injected_secondary_limit_with_retry_after() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.inject_secondary_limit("alice", 2, Some(30));

    for _ in 0..2 {
        let response = get(&sim, Some("t-alice"), "/user").await;
        assert_eq!(response.status(), 403);
        assert_eq!(header(&response, "retry-after").unwrap(), "30");
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 5000);
        assert_rate_headers_consistent(&response);

        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["message"],
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        );
        assert_eq!(
            body["documentation_url"],
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
        );
    }

    let after = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(after.status(), 200);
    assert_eq!(sim.secondary_limit_responses(), 2);
    assert_eq!(sim.remaining("alice", "core"), 4999);
}

#[tokio::test]
async fn injected_secondary_limit_without_retry_after() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_account("bob", AccountLimits::default());
    sim.add_token("t-bob", "bob");
    sim.inject_secondary_limit("alice", 1, None);

    let bob = get(&sim, Some("t-bob"), "/user").await;
    assert_eq!(bob.status(), 200);

    let response = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(response.status(), 403);
    assert!(header(&response, "retry-after").is_none());
    let body: Value = response.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("secondary rate limit"));
    assert_eq!(sim.secondary_limit_responses(), 1);
}

#[tokio::test]
async fn concurrency_cap_triggers_secondary_limit() {
    let clock = ManualClock::new(START_MS);
    let sim = GithubSimulator::builder()
        .clock(Arc::new(clock))
        .concurrency_cap(2)
        .latency(Duration::from_millis(1500))
        .start()
        .await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("t-alice", "alice");

    let requests = (0..5).map(|_| get(&sim, Some("t-alice"), "/user"));
    let responses = join_all(requests).await;

    let ok = responses.iter().filter(|r| r.status() == 200).count();
    let limited: Vec<&Response> = responses.iter().filter(|r| r.status() == 403).collect();
    assert_eq!(ok, 2);
    assert_eq!(limited.len(), 3);
    for response in &limited {
        assert_eq!(header(response, "retry-after").unwrap(), "60");
    }
    assert_eq!(sim.secondary_limit_responses(), 3);
    assert_eq!(sim.remaining("alice", "core"), 4998);

    let later = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(later.status(), 200);
}

#[tokio::test]
async fn status_429_mode_for_limits() {
    let clock = ManualClock::new(START_MS);
    let sim = GithubSimulator::builder()
        .clock(Arc::new(clock))
        .primary_status(429)
        .start()
        .await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("t-alice", "alice");

    sim.inject_secondary_limit("alice", 1, Some(5));
    let secondary = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(secondary.status(), 429);
    assert_eq!(header(&secondary, "retry-after").unwrap(), "5");

    sim.set_remaining("alice", "core", 0);
    let primary = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(primary.status(), 429);
    assert_eq!(header_u64(&primary, "x-ratelimit-remaining"), 0);
    assert_eq!(sim.over_limit_responses(), 1);
}

#[tokio::test]
async fn injected_server_errors_spend_nothing() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.inject_server_errors(2);

    for token in [Some("t-alice"), None] {
        let response = get(&sim, token, "/user").await;
        assert_eq!(response.status(), 502);
        assert_eq!(header(&response, "content-type").unwrap(), "text/html");
        assert!(header(&response, "x-ratelimit-limit").is_none());
        let body = response.text().await.unwrap();
        assert!(body.starts_with("<html><head><title>502 Bad Gateway</title></head>"));
    }

    let after = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(after.status(), 200);
    assert_eq!(sim.remaining("alice", "core"), 4999);
    assert_eq!(sim.total_requests(), 3);
    assert_eq!(sim.requests_by_token("t-alice"), 2);
}

#[tokio::test]
async fn redirects_answer_302_without_budget() {
    let (sim, _clock) = start_with_alice(AccountLimits::default()).await;
    sim.add_redirect("/repos/old/name", "/user");
    sim.add_redirect("/legacy", &format!("{}/user", sim.uri()));

    let response = client_without_redirects()
        .get(format!("{}/repos/old/name", sim.uri()))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(header(&response, "location").unwrap(), "/user");
    assert_eq!(sim.remaining("alice", "core"), 5000);

    for path in ["/repos/old/name", "/legacy"] {
        let followed = get(&sim, Some("t-alice"), path).await;
        assert_eq!(followed.status(), 200, "{path}");
        let body: Value = followed.json().await.unwrap();
        assert_eq!(body["login"], "alice");
    }
    assert_eq!(sim.remaining("alice", "core"), 4998);
}

#[tokio::test]
async fn clock_moves_date_header() {
    let (sim, clock) = start_with_alice(AccountLimits::default()).await;
    clock.advance(HOUR);

    let response = get(&sim, Some("t-alice"), "/user").await;
    assert_eq!(
        header(&response, "date").unwrap(),
        format_epoch_ms(START_MS + 3_600_000)
    );
    assert_eq!(clock.now_ms(), START_MS + 3_600_000);
}
