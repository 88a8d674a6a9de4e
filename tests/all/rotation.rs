//! Choosing tokens: invalid, degraded, shared and reserved tokens.

use std::time::Duration;

use tokenfleet::{Clock, Error, LimitKind, Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::AccountLimits;

use crate::support::{self, github, id, is_exhausted, pool_error, snapshot, HOUR, START_MS};

#[tokio::test]
async fn bad_token_is_tried_once() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default());
        sim.add_token(&format!("ghp_{login}"), login);
    }
    let tokens = vec![
        Token::new("ghp_alice"),
        Token::new("ghp_unregistered"),
        Token::new("ghp_bob"),
    ];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    for _ in 0..20 {
        let response = github(&fleet).get("/user").await.unwrap();
        assert_eq!(response.status(), 200);
        assert_ne!(response.token(), Some(&id("ghp_unregistered")));
    }

    assert!(sim.requests_by_token("ghp_unregistered") <= 1);
    let bad = snapshot(&fleet, &id("ghp_unregistered")).await;
    assert_eq!(bad.status, TokenStatus::Invalid);
    assert_eq!(fleet.available_count("github").await, 2);
}

#[tokio::test]
async fn invalid_only_pool_names_tokens() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    let labelled = Token::new("ghp_unknown_1").with_label("ci-bot");
    let labelled_id = labelled.id().clone();
    let tokens = vec![labelled, Token::new("ghp_unknown_2")];
    // A wait policy that would allow a long sleep, to show that none happens.
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::UpTo(HOUR));

    let error = github(&fleet).get("/user").await.unwrap_err();

    let Error::AllInvalid { tokens, .. } = pool_error(&error) else {
        panic!("expected every token to be invalid, got {error:?}");
    };
    assert_eq!(tokens, &vec![labelled_id.clone(), id("ghp_unknown_2")]);
    let message = error.to_string();
    assert!(message.contains("ci-bot"), "{message}");
    assert!(message.contains(labelled_id.as_str()), "{message}");
    assert!(message.contains(id("ghp_unknown_2").as_str()), "{message}");
    assert!(!message.contains("remaining"), "{message}");
    assert!(!message.contains("budget returns"), "{message}");
    assert_eq!(clock.now_ms(), START_MS, "the pool slept");
    assert_eq!(sim.requests_by_token("ghp_unknown_1"), 1);
    assert_eq!(sim.requests_by_token("ghp_unknown_2"), 1);
    assert_eq!(fleet.earliest_reset_ms("github").await, None);
}

#[test]
fn revoked_token_is_never_chosen_again() {
    let (_, logs) = support::with_logs(async {
        let clock = support::clock();
        let sim = support::simulator(&clock).await;
        for login in ["alice", "bob"] {
            sim.add_account(login, AccountLimits::default());
            sim.add_token(&format!("ghp_{login}"), login);
        }
        // Alice has more budget left, so the pool prefers her token.
        sim.set_remaining("bob", "core", 4000);
        let tokens = vec![
            Token::new("ghp_alice").with_account("alice"),
            Token::new("ghp_bob").with_account("bob"),
            Token::new("ghp_never_valid"),
        ];
        let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

        let first = github(&fleet).get("/user").await.unwrap();
        assert_eq!(first.token(), Some(&id("ghp_alice")));

        sim.revoke_token("ghp_alice");
        let alice_before = sim.requests_by_token("ghp_alice");
        let second = github(&fleet).get("/user").await.unwrap();
        assert_eq!(second.status(), 200);
        assert_eq!(second.token(), Some(&id("ghp_bob")));
        assert_eq!(second.attempts(), 2);
        assert_eq!(sim.requests_by_token("ghp_alice"), alice_before + 1);

        // Past the old reset, the revoked token stays out.
        clock.advance(2 * HOUR);
        for _ in 0..5 {
            let response = github(&fleet).get("/user").await.unwrap();
            assert_eq!(response.token(), Some(&id("ghp_bob")));
        }
        assert_eq!(sim.requests_by_token("ghp_alice"), alice_before + 1);
        assert_eq!(sim.requests_by_token("ghp_never_valid"), 1);

        let alice = snapshot(&fleet, &id("ghp_alice")).await;
        assert_eq!(alice.status, TokenStatus::Invalid);
        let never_valid = snapshot(&fleet, &id("ghp_never_valid")).await;
        assert_eq!(never_valid.status, TokenStatus::Invalid);
    });

    let warning = logs
        .lines()
        .find(|line| line.contains("WARN") && line.contains(id("ghp_never_valid").as_str()));
    assert!(warning.is_some(), "no warning names the token:\n{logs}");
}

#[test]
fn degraded_token_is_used_last() {
    let (_, logs) = support::with_logs(async {
        let clock = support::clock();
        let sim = support::simulator(&clock).await;
        sim.add_account("alice", AccountLimits::default().core(100, HOUR));
        sim.add_account("weak", AccountLimits::default().core(60, HOUR));
        sim.add_token("ghp_alice_1", "alice");
        sim.add_token("ghp_alice_2", "alice");
        sim.add_token("ghp_weak", "weak");
        let tokens = vec![
            Token::new("ghp_alice_1"),
            Token::new("ghp_weak"),
            Token::new("ghp_alice_2"),
        ];
        let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

        let mut used = Vec::new();
        for _ in 0..150 {
            let response = github(&fleet).get("/user").await.unwrap();
            assert_eq!(response.status(), 200);
            used.push(response.token().cloned().unwrap());
        }

        // Learning the accounts spent one `GET /user` per token, so alice
        // had 98 requests left and the weak token 59.
        let alice = [id("ghp_alice_1"), id("ghp_alice_2")];
        for (position, token) in used.iter().enumerate() {
            if position < 98 {
                assert!(alice.contains(token), "request {position} used {token}");
            } else {
                assert_eq!(token, &id("ghp_weak"), "request {position}");
            }
        }
        assert_eq!(sim.over_limit_responses(), 0);
        assert_eq!(sim.remaining("alice", "core"), 0);

        let first = snapshot(&fleet, &alice[0]).await;
        let second = snapshot(&fleet, &alice[1]).await;
        let weak = snapshot(&fleet, &id("ghp_weak")).await;
        assert_eq!(first.account, second.account);
        assert_ne!(first.account, weak.account);
        assert!(weak.degraded.is_some());
        assert!(first.degraded.is_none());
        let shared = first.bucket("core").unwrap();
        assert_eq!(shared.limit, Some(100));
        assert_eq!(shared.remaining, Some(0));
        assert_eq!(second.bucket("core").unwrap().remaining, Some(0));
    });

    let warning = logs
        .lines()
        .find(|line| line.contains("WARN") && line.contains(id("ghp_weak").as_str()));
    assert!(warning.is_some(), "no warning names the token:\n{logs}");
}

#[tokio::test]
async fn one_user_never_gets_twice_budget() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("ghp_alice_1", "alice");
    sim.add_token("ghp_alice_2", "alice");
    let tokens = vec![Token::new("ghp_alice_1"), Token::new("ghp_alice_2")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    for _ in 0..500 {
        let response = github(&fleet).get("/user").await.unwrap();
        assert_eq!(response.status(), 200);
    }

    // 500 requests and one `GET /user` per token to learn the account.
    assert_eq!(sim.remaining("alice", "core"), 5000 - 502);
    for snapshot in fleet.tokens("github").await {
        let core = snapshot.bucket("core").unwrap();
        assert_eq!(core.limit, Some(5000), "{}", snapshot.id);
        assert_eq!(core.remaining, Some(5000 - 502), "{}", snapshot.id);
    }
}

#[tokio::test]
async fn reserve_is_never_spent() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    for login in ["alice", "bob"] {
        sim.add_account(login, AccountLimits::default());
        sim.add_token(&format!("ghp_{login}"), login);
    }
    sim.set_remaining("alice", "core", 150);
    sim.set_remaining("bob", "core", 60);
    let tokens = vec![
        Token::new("ghp_alice")
            .with_account("alice")
            .with_reserve(100),
        Token::new("ghp_bob").with_account("bob"),
    ];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let mut served = 0;
    for _ in 0..200 {
        match github(&fleet).get("/user").await {
            Ok(response) => {
                assert_eq!(response.status(), 200);
                served += 1;
            }
            Err(error) => assert!(is_exhausted(&error), "unexpected error: {error}"),
        }
    }

    assert_eq!(served, 110);
    assert_eq!(sim.remaining("alice", "core"), 100);
    assert_eq!(sim.remaining("bob", "core"), 0);
    assert_eq!(sim.over_limit_responses(), 0);
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    let reset_ms = sim.reset_at("alice", "core") * 1000;
    assert_eq!(
        alice.status,
        TokenStatus::RateLimited {
            until_ms: reset_ms,
            bucket: Some("core".into()),
            kind: LimitKind::Reserve,
        }
    );
}

#[tokio::test]
async fn past_reset_serves_without_sleeping() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    let window = Duration::from_secs(20);
    sim.add_account("alice", AccountLimits::default().core(5, window));
    sim.add_token("ghp_alice", "alice");
    let tokens = vec![Token::new("ghp_alice").with_account("alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    // The pool stores remaining 3 and a reset 20 s ahead. Then another
    // program drains the budget and the clock passes the reset.
    github(&fleet).get("/user").await.unwrap();
    github(&fleet).get("/user").await.unwrap();
    sim.set_remaining("alice", "core", 0);
    clock.advance(Duration::from_secs(40));

    let response = github(&fleet).get("/user").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(clock.now_ms(), START_MS + 40_000, "the pool slept");
    let alice = snapshot(&fleet, &id("ghp_alice")).await;
    assert_eq!(alice.status, TokenStatus::Available);
    let core = alice.bucket("core").unwrap();
    assert_eq!(core.remaining, Some(4));
    assert_eq!(core.reset_ms, Some(START_MS + 60_000));

    // A budget the pool itself spent to 0 returns the same way.
    for _ in 0..4 {
        github(&fleet).get("/user").await.unwrap();
    }
    let error = github(&fleet).get("/user").await.unwrap_err();
    assert!(is_exhausted(&error), "{error}");
    clock.advance(Duration::from_secs(25));
    let response = github(&fleet).get("/user").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(clock.now_ms(), START_MS + 65_000, "the pool slept");
    assert_eq!(sim.over_limit_responses(), 0);
}
