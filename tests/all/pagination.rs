//! Listings over many pages: every page carries a pool token.

use std::collections::HashSet;

use serde_json::json;
use tokenfleet::{Token, WaitPolicy};
use tokenfleet_testkit::AccountLimits;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, dated, github, rate_limit_body, warm_up, with_limits, HOUR, START_MS};

#[tokio::test]
async fn listing_follows_every_page() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    let secrets = ["ghp_alice", "ghp_bob"];
    for (login, secret) in ["alice", "bob"].iter().zip(secrets) {
        sim.add_account(login, AccountLimits::default());
        sim.add_token(secret, login);
    }
    sim.add_repositories("bigorg", 1050);
    let tokens = secrets.iter().map(|secret| Token::new(*secret)).collect();
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
    warm_up(&fleet).await;
    let before: u64 = secrets.iter().map(|s| sim.requests_by_token(s)).sum();
    let total_before = sim.total_requests();

    let repositories = github(&fleet)
        .github()
        .repositories("bigorg")
        .await
        .unwrap();

    let names: Vec<String> = repositories.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, sim.repository_names("bigorg"));
    let ids: HashSet<u64> = repositories
        .iter()
        .map(|r| r.raw["id"].as_u64().expect("a numeric id"))
        .collect();
    assert_eq!(ids.len(), 1050);
    let after: u64 = secrets.iter().map(|s| sim.requests_by_token(s)).sum();
    assert_eq!(after - before, 11, "one request per page of 100");
    assert_eq!(
        sim.total_requests() - total_before,
        11,
        "a page went without a token"
    );
    assert_eq!(sim.remaining("anonymous", "core"), 60);
    assert_eq!(sim.unauthorized_responses(), 0);
}

#[tokio::test]
async fn listing_rotates_across_small_budgets() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    let mut tokens = Vec::new();
    for login in ["alice", "bob", "carol"] {
        sim.add_account(login, AccountLimits::default().core(4, HOUR));
        let secret = format!("ghp_{login}");
        sim.add_token(&secret, login);
        tokens.push(Token::new(secret).with_account(login));
    }
    sim.add_repositories("bigorg", 1050);
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let repositories = github(&fleet)
        .github()
        .repositories("bigorg")
        .await
        .unwrap();

    assert_eq!(repositories.len(), 1050);
    assert_eq!(sim.over_limit_responses(), 0);
    for login in ["alice", "bob", "carol"] {
        assert!(sim.remaining(login, "core") < 4, "{login} served no page");
    }
    assert_eq!(sim.remaining("anonymous", "core"), 60);
}

#[tokio::test]
async fn listing_past_budget_fails_clearly() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default().core(5, HOUR));
    sim.add_token("ghp_alice", "alice");
    sim.add_repositories("bigorg", 1050);
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let error = github(&fleet)
        .github()
        .repositories("bigorg")
        .await
        .unwrap_err();

    assert!(support::is_exhausted(&error), "{error}");
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(sim.remaining("anonymous", "core"), 60);
}

/// Mounts `GET /rate_limit` for one token with `remaining` core requests.
async fn mount_status(
    server: &MockServer,
    clock: &tokenfleet::ManualClock,
    secret: &str,
    remaining: u64,
) {
    let reset_s = START_MS / 1000 + 3600;
    let body = rate_limit_body(5000, remaining, reset_s);
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .and(header("authorization", format!("Bearer {secret}").as_str()))
        .respond_with(dated(clock, ResponseTemplate::new(200).set_body_json(body)))
        .mount(server)
        .await;
}

fn repository(id: u64) -> serde_json::Value {
    json!({
        "id": id,
        "name": format!("repo-{id}"),
        "full_name": format!("private-org/repo-{id}"),
        "owner": {"login": "private-org", "id": 7},
        "html_url": format!("https://github.example/private-org/repo-{id}"),
    })
}

#[tokio::test]
async fn page_404_after_switch_tries_other_token() {
    let clock = support::clock();
    let server = MockServer::start().await;
    let reset_s = START_MS / 1000 + 3600;
    // The pool prefers the token with most budget left: first, then
    // blind (which cannot see the organization), then member (which can).
    mount_status(&server, &clock, "ghp_first", 3000).await;
    mount_status(&server, &clock, "ghp_blind", 2000).await;
    mount_status(&server, &clock, "ghp_member", 1000).await;

    let next = format!(
        "<{}/users/private-org/repos?per_page=100&page=2>; rel=\"next\"",
        server.uri()
    );
    let first_page = ResponseTemplate::new(200)
        .set_body_json(json!([repository(1), repository(2)]))
        .insert_header("link", next.as_str());
    // The first token runs out on page 1.
    Mock::given(method("GET"))
        .and(path("/users/private-org/repos"))
        .and(query_param_is_missing("page"))
        .and(header("authorization", "Bearer ghp_first"))
        .respond_with(dated(
            &clock,
            with_limits(first_page, "core", 5000, 0, reset_s),
        ))
        .mount(&server)
        .await;
    let not_found = ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}));
    Mock::given(method("GET"))
        .and(path("/users/private-org/repos"))
        .and(query_param("page", "2"))
        .and(header("authorization", "Bearer ghp_blind"))
        .respond_with(dated(
            &clock,
            with_limits(not_found, "core", 5000, 1999, reset_s),
        ))
        .mount(&server)
        .await;
    let second_page = ResponseTemplate::new(200).set_body_json(json!([repository(3)]));
    Mock::given(method("GET"))
        .and(path("/users/private-org/repos"))
        .and(query_param("page", "2"))
        .and(header("authorization", "Bearer ghp_member"))
        .respond_with(dated(
            &clock,
            with_limits(second_page, "core", 5000, 999, reset_s),
        ))
        .mount(&server)
        .await;
    let tokens = ["ghp_first", "ghp_blind", "ghp_member"]
        .into_iter()
        .map(|secret| Token::new(secret).with_account(secret.trim_start_matches("ghp_")))
        .collect();
    let fleet = support::fleet(&server.uri(), tokens, &clock, WaitPolicy::Fail);

    let listed = github(&fleet).github().repositories("private-org").await;

    // The blind token's 404 is not taken as the end of the data: the page
    // is tried again on a token that did not return it.
    let repositories = listed.unwrap();
    let ids: Vec<u64> = repositories
        .iter()
        .map(|r| r.raw["id"].as_u64().expect("a numeric id"))
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let received = server.received_requests().await.unwrap();
    for request in &received {
        assert!(
            request.headers.contains_key("authorization"),
            "{}",
            request.url
        );
    }
    let first_pages = received
        .iter()
        .filter(|r| r.url.path() != "/rate_limit" && r.url.query_pairs().all(|(k, _)| k != "page"))
        .count();
    assert_eq!(first_pages, 1, "page 1 was fetched again");
}
