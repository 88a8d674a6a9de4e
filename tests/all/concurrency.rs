//! Many tasks on one pool: the budget is spent exactly, never overshot.

use std::time::Duration;

use futures::future::join_all;
use tokenfleet::{Client, ClientError, Clock, ManualClock, Response, Token, WaitPolicy};
use tokenfleet_testkit::AccountLimits;

use crate::support::{self, github, is_exhausted, HOUR};

const TASKS: usize = 64;

/// Sends `GET /user` from `TASKS` tasks at once.
async fn burst(client: &Client) -> Vec<Result<Response, ClientError>> {
    let tasks = (0..TASKS).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.get("/user").await })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("the task does not panic"))
        .collect()
}

fn successes(results: &[Result<Response, ClientError>]) -> usize {
    results
        .iter()
        .filter(|result| matches!(result, Ok(response) if response.status() == 200))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_spends_exact_total_budget() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    let small = AccountLimits::default().core(20, HOUR);
    let mut tokens = Vec::new();
    for login in ["alice", "bob", "carol"] {
        sim.add_account(login, small);
        let secret = format!("ghp_{login}");
        sim.add_token(&secret, login);
        tokens.push(Token::new(secret).with_account(login));
    }
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let results = burst(github(&fleet)).await;

    assert_eq!(successes(&results), 60);
    for error in results.iter().filter_map(|result| result.as_ref().err()) {
        assert!(is_exhausted(error), "unexpected error: {error}");
    }
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), TASKS - 60);
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(sim.successful_requests(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_on_one_account_shares_budget() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default().core(20, HOUR));
    sim.add_token("ghp_alice_1", "alice");
    sim.add_token("ghp_alice_2", "alice");
    // The accounts are not declared, so the pool learns them from `GET /user`.
    let tokens = vec![Token::new("ghp_alice_1"), Token::new("ghp_alice_2")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let results = burst(github(&fleet)).await;

    for error in results.iter().filter_map(|result| result.as_ref().err()) {
        assert!(is_exhausted(error), "unexpected error: {error}");
    }
    // Each token's first status round spent one request on `GET /user`.
    assert_eq!(successes(&results), 18);
    assert_eq!(sim.successful_requests(), 20);
    assert_eq!(sim.over_limit_responses(), 0);
    assert_eq!(sim.remaining("alice", "core"), 0);
    let snapshots = fleet.tokens("github").await;
    assert_eq!(snapshots[0].account, snapshots[1].account);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_account_is_learned_before_use() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    let window = Duration::from_secs(5);
    sim.add_account("shared", AccountLimits::default().core(3, window));
    sim.add_token("ghp_shared_1", "shared");
    sim.add_token("ghp_shared_2", "shared");
    // The budget is spent before the pool starts, so `GET /user` cannot
    // tell at first that both tokens belong to one user.
    sim.set_remaining("shared", "core", 0);
    let tokens = vec![Token::new("ghp_shared_1"), Token::new("ghp_shared_2")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::UpTo(HOUR));

    let results = burst(github(&fleet)).await;

    assert_eq!(successes(&results), TASKS);
    assert_eq!(sim.over_limit_responses(), 0);
    let snapshots = fleet.tokens("github").await;
    assert_eq!(snapshots[0].account, snapshots[1].account);
    assert!(
        snapshots[0].account.starts_with("github-user:"),
        "{}",
        snapshots[0].account
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_with_waiting_finishes_after_reset() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    let window = Duration::from_secs(60);
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default().core(10, window));
        sim.add_token(&format!("ghp_{login}"), login);
    }
    let tokens = vec![
        Token::new("ghp_alice").with_account("alice"),
        Token::new("ghp_bob").with_account("bob"),
    ];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::UpTo(HOUR));

    let results = burst(github(&fleet)).await;

    assert_eq!(successes(&results), TASKS);
    assert_eq!(sim.over_limit_responses(), 0);
    // 64 requests at 20 per minute need at least three resets.
    assert!(
        clock_elapsed(&clock) >= 3 * window,
        "only {:?} passed",
        clock_elapsed(&clock)
    );
}

fn clock_elapsed(clock: &ManualClock) -> Duration {
    Duration::from_millis(clock.now_ms() - support::START_MS)
}
