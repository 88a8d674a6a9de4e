//! GitHub Enterprise Server with rate limiting turned off.

use std::sync::Arc;

use tokenfleet::{Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::{AccountLimits, GithubSimulator};

use crate::support::{self, github, id, snapshot};

#[tokio::test]
async fn enterprise_tokens_have_no_known_limit() {
    let clock = support::clock();
    let sim = GithubSimulator::builder()
        .clock(Arc::new(clock.clone()))
        .enterprise(true)
        .start()
        .await;
    sim.add_account("alice", AccountLimits::default().core(5, support::HOUR));
    sim.add_token("ghp_alice", "alice");
    sim.add_repositories("alice", 250);
    sim.add_repositories("bigorg", 120);
    assert!(sim.uri().ends_with("/api/v3"));
    let tokens = vec![Token::new("ghp_alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let mine = github(&fleet).github().repositories("alice").await.unwrap();
    let theirs = github(&fleet)
        .github()
        .repositories("bigorg")
        .await
        .unwrap();
    let found = github(&fleet)
        .github()
        .search_repositories("user:alice", 10)
        .await
        .unwrap();

    assert_eq!(mine.len(), 250);
    assert_eq!(theirs.len(), 120);
    assert_eq!(found.len(), 10);
    // The server enforces no limit, so far more than the account's
    // configured five requests go through.
    for _ in 0..20 {
        let response = github(&fleet).get("/user").await.unwrap();
        assert_eq!(response.status(), 200);
    }

    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, TokenStatus::Available);
    assert!(!alice.buckets.is_empty());
    for bucket in &alice.buckets {
        assert!(bucket.unlimited, "{bucket:?}");
        assert_eq!(bucket.remaining, None, "{bucket:?}");
        assert_eq!(bucket.limit, None, "{bucket:?}");
    }
    assert!(alice.bucket("search").is_some());
    assert_eq!(fleet.available_count("github").await, 1);
    assert_eq!(fleet.earliest_reset_ms("github").await, None);
    assert_eq!(sim.over_limit_responses(), 0);
}
