//! Project listings of users and groups through a pool and client.

mod support;

use std::collections::HashSet;

use http::StatusCode;
use tokenfleet_client::ClientError;
use tokenfleet_core::{Token, WaitPolicy};
use tokenfleet_testkit::gitlab::Throttle;
use tokenfleet_testkit::{GitlabSimulator, GitlabSimulatorBuilder};

use support::{client, provider, simulator};

/// 2023-11-14T22:14:00Z, the start of a minute window.
const START_MS: u64 = 1_700_000_040_000;

/// Starts a simulator with user alice and a client over her token.
async fn start(builder: GitlabSimulatorBuilder) -> (GitlabSimulator, tokenfleet_client::Client) {
    let (sim, clock) = simulator(builder, START_MS).await;
    sim.add_account(
        "alice",
        Throttle::new(100_000, std::time::Duration::from_secs(60)),
    );
    sim.add_token("glpat-alice", "alice");
    let client = client(
        &clock,
        provider(&sim),
        vec![Token::new("glpat-alice")],
        WaitPolicy::Fail,
    );
    (sim, client)
}

fn full_names(owner: &str, sim: &GitlabSimulator) -> Vec<String> {
    sim.repository_names(owner)
        .into_iter()
        .map(|name| format!("{owner}/{name}"))
        .collect()
}

#[tokio::test]
async fn user_listing_needs_no_fallback() {
    let (sim, client) = start(GitlabSimulator::builder()).await;
    sim.add_repositories("alice", 150);

    let listed = client
        .repositories("alice")
        .await
        .expect("the listing succeeds");

    let names: Vec<String> = listed.iter().map(|r| r.full_name.clone()).collect();
    assert_eq!(names, full_names("alice", &sim));
    assert_eq!(sim.total_requests(), 2);
    assert_eq!(listed[0].owner, "alice");
    assert_eq!(listed[0].name, "project-00001");
    assert!(
        listed[0].url.ends_with("/alice/project-00001"),
        "{}",
        listed[0].url
    );
    assert!(listed[6].fork);
    assert!(listed[10].archived);
    assert_eq!(listed[0].language, None);
}

#[tokio::test]
async fn large_group_without_links() {
    const COUNT: usize = 10_050;
    let (sim, client) = start(GitlabSimulator::builder().link_headers(false)).await;
    sim.add_repositories("big-group", COUNT);

    let listed = client
        .repositories("big-group")
        .await
        .expect("the listing follows x-next-page");

    assert_eq!(listed.len(), COUNT);
    let unique: HashSet<&str> = listed.iter().map(|r| r.full_name.as_str()).collect();
    assert_eq!(unique.len(), COUNT, "a project was listed twice");
    assert_eq!(listed[COUNT - 1].full_name, "big-group/project-10050");
    // One 404 for the user listing, then 101 pages of at most 100.
    assert_eq!(sim.total_requests(), 1 + 101);
}

#[tokio::test]
async fn large_group_with_links() {
    const COUNT: usize = 10_001;
    let (sim, client) = start(GitlabSimulator::builder()).await;
    sim.add_repositories("big-group", COUNT);

    let listed = client
        .repositories("big-group")
        .await
        .expect("the listing succeeds");

    assert_eq!(listed.len(), COUNT);
    assert_eq!(listed[COUNT - 1].full_name, "big-group/project-10001");
}

#[tokio::test]
async fn nested_group_includes_subgroups() {
    let (sim, client) = start(GitlabSimulator::builder()).await;
    sim.add_repositories("team/ci", 3);
    sim.add_repositories("team/ci/deep", 2);

    let listed = client
        .repositories("team/ci")
        .await
        .expect("the listing succeeds");

    let names: Vec<&str> = listed.iter().map(|r| r.full_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "team/ci/project-00001",
            "team/ci/project-00002",
            "team/ci/project-00003",
            "team/ci/deep/project-00001",
            "team/ci/deep/project-00002"
        ]
    );
    assert_eq!(listed[3].owner, "team/ci/deep");
    assert_eq!(listed[3].name, "project-00001");
    // A nested path goes to the group listing at once.
    assert_eq!(sim.total_requests(), 1);
}

#[tokio::test]
async fn unknown_owner_is_not_found() {
    let (sim, client) = start(GitlabSimulator::builder()).await;

    let error = client
        .repositories("nobody")
        .await
        .expect_err("no such owner");

    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(sim.total_requests(), 2);
}

#[tokio::test]
async fn invalid_owner_sends_nothing() {
    let (sim, client) = start(GitlabSimulator::builder()).await;

    for owner in ["../admin", "a/../b", "a%2Fb", "a b", "team//ci"] {
        let error = client.repositories(owner).await.expect_err("invalid owner");
        assert!(
            matches!(error, ClientError::InvalidRequest(_)),
            "{owner}: {error}"
        );
        assert!(error.to_string().contains(owner), "{error}");
    }
    assert_eq!(sim.total_requests(), 0);
}
