//! Pools of several fleets and processes sharing one state in Redis,
//! against the GitHub simulator and a real redis-server.
//!
//! Tests use the server named by `TOKENFLEET_TEST_REDIS_URL`, or start
//! `redis-server` themselves; tests that stop the server always start
//! their own.

#![cfg(feature = "github")]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use redis::AsyncCommands;
use tokenfleet::client::ClientBuilder;
use tokenfleet::config::{self, StoreConfig};
use tokenfleet::github::Github;
use tokenfleet::redis::{OnUnavailable, RedisConfig, RedisStore};
use tokenfleet::{
    Bucket, Client, Clock, Fleet, FleetError, SystemClock, Token, TokenStatus, WaitPolicy,
};
use tokenfleet_redis::testing::RedisServer;
use tokenfleet_testkit::{AccountLimits, GithubSimulator};

use crate::support::{self, github, is_exhausted, CANARY, HOUR};

/// The variable that turns the worker test into a worker process.
const WORKER: &str = "TOKENFLEET_REDIS_WORKER";
/// The worker's `view_max_age` in milliseconds.
const WORKER_VIEW_AGE: &str = "TOKENFLEET_REDIS_WORKER_VIEW_AGE_MS";
const WORKERS: usize = 4;
const TASKS_PER_WORKER: usize = 16;

/// Builds a fleet with one GitHub pool at `base` whose state lives in
/// `store`, scoped to the provider.
fn shared_fleet(
    base: &str,
    tokens: Vec<Token>,
    clock: Arc<dyn Clock>,
    store: Arc<RedisStore>,
) -> Fleet {
    let provider = Github::with_base_url(base.parse().expect("the base URL parses"));
    Fleet::builder()
        .provider(Arc::new(provider), tokens)
        .clock(clock)
        .wait(WaitPolicy::Fail)
        .client(ClientBuilder::default().backoff(Duration::from_millis(10)))
        .store(move |name, clock| Arc::new(store.scoped(name).with_clock(Arc::clone(clock))))
        .build()
        .expect("the fleet builds")
}

/// The command timeout of stores in tests that expect Redis to be up. The
/// default of 1 s can pass on a machine busy with parallel test processes;
/// the fault tests set their own short timeouts.
const TEST_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

fn redis_store(config: RedisConfig) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(config).expect("the store builds"))
}

/// Sends `GET /user` until the pool runs out of budget; returns the
/// successes and any error that is not exhaustion.
async fn spend_until_exhausted(client: Client) -> (usize, Vec<String>) {
    let mut successes = 0;
    let mut failures = Vec::new();
    loop {
        match client.get("/user").await {
            Ok(response) if response.status() == 200 => successes += 1,
            Ok(response) => failures.push(format!("status {}", response.status())),
            Err(error) if is_exhausted(&error) => return (successes, failures),
            Err(error) => {
                failures.push(error.to_string());
                return (successes, failures);
            }
        }
    }
}

/// The body of one worker process: reads its settings from the
/// environment, spends the shared pool with 16 tasks and prints the count.
/// Without the variable it is a test that does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_entry() {
    let Ok(settings) = std::env::var(WORKER) else {
        return;
    };
    let parts: Vec<&str> = settings.split('|').collect();
    let [base, url, prefix, tokens] = parts[..] else {
        panic!("{WORKER} must contain base|url|prefix|tokens");
    };
    let tokens = tokens
        .split(',')
        .map(|entry| {
            let (secret, account) = entry.split_once(':').expect("secret:account");
            Token::new(secret).with_account(account)
        })
        .collect();
    let view_age_ms: u64 = std::env::var(WORKER_VIEW_AGE)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let store = redis_store(
        RedisConfig::new(url)
            .prefix(prefix)
            .command_timeout(TEST_COMMAND_TIMEOUT)
            .view_max_age(Duration::from_millis(view_age_ms)),
    );
    let fleet = shared_fleet(base, tokens, Arc::new(SystemClock), store);

    let tasks = (0..TASKS_PER_WORKER).map(|_| {
        let client = github(&fleet).clone();
        tokio::spawn(spend_until_exhausted(client))
    });
    let mut successes = 0;
    for joined in join_all(tasks).await {
        let (count, failures) = joined.expect("the task does not panic");
        successes += count;
        for failure in failures {
            println!("WORKER_FAILURE {failure}");
        }
    }
    println!("WORKER_SUCCESSES {successes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_spend_exact_budget() {
    if tokenfleet_redis::testing::skip_without_redis("four_processes_spend_exact_budget") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("processes");
    let sim = GithubSimulator::start().await;
    let budgets = [("alice", 40u64), ("bob", 35), ("carol", 25)];
    let mut tokens = Vec::new();
    for (login, budget) in budgets {
        sim.add_account(login, AccountLimits::default().core(budget, HOUR));
        let secret = format!("ghp_{login}_shared");
        sim.add_token(&secret, login);
        tokens.push(format!("{secret}:{login}"));
    }
    let total: u64 = budgets.iter().map(|(_, budget)| budget).sum();
    let settings = format!(
        "{}|{}|{prefix}|{}",
        sim.uri(),
        server.url(),
        tokens.join(",")
    );

    let executable = std::env::current_exe().expect("the test binary has a path");
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            let executable = executable.clone();
            let settings = settings.clone();
            // Half the workers read views through a 20 ms cache.
            let view_age_ms = if index % 2 == 0 { "0" } else { "20" };
            tokio::task::spawn_blocking(move || {
                Command::new(executable)
                    .args(["redis::worker_process_entry", "--exact", "--nocapture"])
                    .env(WORKER, settings)
                    .env(WORKER_VIEW_AGE, view_age_ms)
                    .output()
                    .expect("the worker process starts")
            })
        })
        .collect();

    let mut successes = 0u64;
    for worker in join_all(workers).await {
        let output = worker.expect("the worker thread does not panic");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "worker failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!stdout.contains("WORKER_FAILURE"), "{stdout}");
        let count = stdout
            .lines()
            .find_map(|line| line.strip_prefix("WORKER_SUCCESSES "))
            .unwrap_or_else(|| panic!("the worker printed no count: {stdout}"));
        successes += count.trim().parse::<u64>().expect("a count");
    }

    assert_eq!(successes, total);
    assert_eq!(sim.successful_requests(), total);
    assert_eq!(sim.over_limit_responses(), 0);
    for (login, _) in budgets {
        assert_eq!(sim.remaining(login, "core"), 0, "{login}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_token_is_skipped_by_all() {
    if tokenfleet_redis::testing::skip_without_redis("invalid_token_is_skipped_by_all") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("invalid");
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default().core(100, HOUR));
    sim.add_account("bob", AccountLimits::default().core(100, HOUR));
    sim.add_token("ghp_alice_bad", "alice");
    sim.add_token("ghp_bob_good", "bob");
    let tokens = || {
        vec![
            Token::new("ghp_alice_bad").with_account("alice"),
            Token::new("ghp_bob_good").with_account("bob"),
        ]
    };
    let first = shared_fleet(
        &sim.uri(),
        tokens(),
        Arc::new(clock.clone()),
        redis_store(
            RedisConfig::new(server.url())
                .prefix(&prefix)
                .command_timeout(TEST_COMMAND_TIMEOUT),
        ),
    );
    let second = shared_fleet(
        &sim.uri(),
        tokens(),
        Arc::new(clock.clone()),
        redis_store(
            RedisConfig::new(server.url())
                .prefix(&prefix)
                .command_timeout(TEST_COMMAND_TIMEOUT),
        ),
    );
    // Both fleets read their tokens' limits while every token is valid.
    github(&first).get("/user").await.expect("a token works");
    github(&second).get("/user").await.expect("a token works");

    sim.revoke_token("ghp_alice_bad");
    let only_bad = shared_fleet(
        &sim.uri(),
        vec![Token::new("ghp_alice_bad").with_account("alice")],
        Arc::new(clock.clone()),
        redis_store(
            RedisConfig::new(server.url())
                .prefix(&prefix)
                .command_timeout(TEST_COMMAND_TIMEOUT),
        ),
    );
    let error = github(&only_bad)
        .get("/user")
        .await
        .expect_err("the only token is revoked");
    assert!(!error.to_string().contains("ghp_alice_bad"), "{error}");
    let bad_requests = sim.requests_by_token("ghp_alice_bad");

    for fleet in [&first, &second] {
        for _ in 0..6 {
            let response = github(fleet).get("/user").await.expect("bob's token works");
            assert_eq!(response.status(), 200);
        }
        let snapshots = fleet.tokens("github").await;
        let bad = snapshots
            .iter()
            .find(|snapshot| snapshot.account == "alice")
            .expect("alice's token is listed");
        assert_eq!(bad.status, TokenStatus::Invalid);
    }
    assert_eq!(sim.requests_by_token("ghp_alice_bad"), bad_requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_keys_expire_and_hold_no_secret() {
    if tokenfleet_redis::testing::skip_without_redis("shared_keys_expire_and_hold_no_secret") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("keys");
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default().core(100, HOUR));
    sim.add_token(CANARY, "alice");
    let fleet = shared_fleet(
        &sim.uri(),
        vec![Token::new(CANARY).with_account("alice")],
        Arc::new(clock.clone()),
        redis_store(
            RedisConfig::new(server.url())
                .prefix(&prefix)
                .command_timeout(TEST_COMMAND_TIMEOUT),
        ),
    );
    let client = github(&fleet);
    assert!(github_ok(client).await);
    // A secondary limit writes the account's cooldown.
    sim.inject_secondary_limit("alice", 1, Some(1));
    let _ = client.get("/user").await;
    clock.advance(Duration::from_secs(2));
    assert!(github_ok(client).await);
    // A lease in flight writes the set of reservations.
    let _lease = client
        .pool()
        .acquire(&Bucket::new("core"))
        .await
        .expect("budget is left");

    let mut connection = redis::Client::open(server.url())
        .expect("the URL parses")
        .get_multiplexed_tokio_connection()
        .await
        .expect("redis answers");
    let keys: Vec<String> = connection.keys(format!("{prefix}:*")).await.unwrap();
    for kind in ["budget:alice:core", "leases:alice:core", "account:alice"] {
        let name = format!("{prefix}:github:{kind}");
        assert!(keys.contains(&name), "{name} is missing from {keys:?}");
    }
    for key in &keys {
        assert!(!key.contains(CANARY), "{key}");
        let ttl: i64 = connection.pttl(key).await.unwrap();
        assert!(ttl > 0, "{key} has no expiry");
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        let contents: Vec<String> = match kind.as_str() {
            "hash" => connection.hgetall(key).await.unwrap(),
            "zset" => connection.zrange(key, 0, -1).await.unwrap(),
            _ => vec![connection.get(key).await.unwrap()],
        };
        for value in contents {
            assert!(!value.contains(CANARY), "{key} contains the secret");
        }
    }
}

/// Sends requests until one succeeds through the restarted server, in
/// short steps of real time, because reconnecting takes real time.
async fn until_store_answers(client: &Client, store: &RedisStore) -> usize {
    let mut successes = 0;
    for _ in 0..200 {
        if github_ok(client).await {
            successes += 1;
        }
        if store.is_available() {
            return successes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store did not reach the restarted server");
}

async fn github_ok(client: &Client) -> bool {
    matches!(client.get("/user").await, Ok(response) if response.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_mode_reports_store_clearly() {
    if tokenfleet_redis::testing::skip_without_redis("fail_mode_reports_store_clearly") {
        return;
    }
    let mut server = RedisServer::start_with_password(Some("hunter2"));
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default().core(100, HOUR));
    sim.add_token("ghp_alice", "alice");
    let store = redis_store(
        RedisConfig::new(server.url())
            .prefix(server.unique_prefix("fail"))
            .command_timeout(Duration::from_millis(300)),
    );
    let fleet = shared_fleet(
        &sim.uri(),
        vec![Token::new("ghp_alice").with_account("alice")],
        Arc::new(clock.clone()),
        Arc::clone(&store),
    );
    let client = github(&fleet);
    assert!(github_ok(client).await);
    let expected = format!(
        "redis store at {}",
        server
            .url_without_password()
            .replace("redis://", "redis://:***@")
    );

    server.stop();
    let error = client.get("/user").await.expect_err("redis is down");
    let message = error.to_string();
    assert!(message.contains(&expected), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    // A server that stops responding times out instead of hanging.
    server.restart();
    until_store_answers(client, &store).await;
    let pid = server.pid().expect("this test started the server");
    signal(pid, "-STOP");
    let started = std::time::Instant::now();
    let error = client
        .get("/user")
        .await
        .expect_err("redis does not respond");
    signal(pid, "-CONT");
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = error.to_string();
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("no response within"), "{message}");

    until_store_answers(client, &store).await;
    assert!(github_ok(client).await);
    assert_eq!(sim.over_limit_responses(), 0);
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_survives_restart_and_converges() {
    if tokenfleet_redis::testing::skip_without_redis("local_mode_survives_restart_and_converges") {
        return;
    }
    let mut server = RedisServer::start();
    let prefix = server.unique_prefix("local");
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default().core(100, HOUR));
    sim.add_token("ghp_alice", "alice");
    let store = redis_store(
        RedisConfig::new(server.url())
            .prefix(&prefix)
            .on_unavailable(OnUnavailable::Local)
            .command_timeout(Duration::from_millis(300))
            .retry_interval(Duration::from_millis(100)),
    );
    let fleet = shared_fleet(
        &sim.uri(),
        vec![Token::new("ghp_alice").with_account("alice")],
        Arc::new(clock.clone()),
        Arc::clone(&store),
    );
    let client = github(&fleet);
    for _ in 0..5 {
        assert!(github_ok(client).await);
    }

    server.stop();
    for _ in 0..5 {
        assert!(
            github_ok(client).await,
            "work continues on the local estimate"
        );
    }
    assert!(!store.is_available());

    server.restart();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut successes = 10 + until_store_answers(client, &store).await;
    for _ in 0..3 {
        assert!(github_ok(client).await);
        successes += 1;
    }

    let remaining = sim.remaining("alice", "core");
    assert_eq!(remaining, 100 - successes as u64);
    let mut connection = redis::Client::open(server.url())
        .expect("the URL parses")
        .get_multiplexed_tokio_connection()
        .await
        .expect("redis answers");
    let budget = &store.scoped("github").budget_keys("alice", "core")[0];
    let stored: Option<u64> = connection.hget(budget, "remaining").await.unwrap();
    assert_eq!(stored, Some(remaining));
    let snapshots = fleet.tokens("github").await;
    assert_eq!(snapshots[0].buckets[0].remaining, Some(remaining));

    // The rest of the budget is spent exactly, never overshot.
    let (rest, failures) = spend_until_exhausted(client.clone()).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(rest as u64, remaining);
    assert_eq!(sim.over_limit_responses(), 0);
}

#[test]
fn store_defaults_to_memory() {
    let parsed = config::parse("", "test.toml").expect("an empty file is valid");
    assert!(matches!(parsed.store, StoreConfig::Memory));
}

#[test]
fn redis_store_parses_from_toml() {
    let text = r#"
[store]
type = "redis"
url = "redis://:hunter2@127.0.0.1:6390/"
prefix = "crawler"
on_unavailable = "local"
command_timeout = "250ms"
lease_ttl = "90s"
view_max_age = "20ms"
"#;
    let parsed = config::parse(text, "test.toml").expect("the file is valid");
    let StoreConfig::Redis(redis) = &parsed.store else {
        panic!("expected a redis store, got {:?}", parsed.store);
    };
    assert_eq!(redis.settings.prefix, "crawler");
    assert_eq!(redis.settings.on_unavailable, OnUnavailable::Local);
    assert_eq!(redis.settings.command_timeout, Duration::from_millis(250));
    assert_eq!(redis.settings.lease_ttl, Duration::from_secs(90));
    assert_eq!(redis.settings.view_max_age, Duration::from_millis(20));
    let shown = format!("{parsed:?}");
    assert!(!shown.contains("hunter2"), "{shown}");

    // The store connects on first use, so the fleet builds without a server.
    let with_provider = format!("{text}\n[[providers]]\ntype = \"github\"\n");
    let fleet = Fleet::from_toml_str(&with_provider, "test.toml").expect("the fleet builds");
    let shown = format!("{fleet:?}");
    assert!(shown.contains("RedisStore"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

fn store_error(text: &str) -> tokenfleet::config::ConfigError {
    match Fleet::from_toml_str(text, "test.toml") {
        Ok(fleet) => panic!("expected an error, built {fleet:?}"),
        Err(FleetError::Config(error)) => error,
        Err(other) => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn store_errors_name_line_and_key() {
    let cases = [
        (
            "[store]\ntype = \"disk\"\n",
            2,
            "store.type",
            "`memory`, `redis`",
        ),
        (
            "[store]\ntype = \"redis\"\nurl = \"redis://127.0.0.1/\"\nport = 1\n",
            4,
            "store.port",
            "`on_unavailable`",
        ),
        (
            "[store]\ntype = \"redis\"\nurl = \"redis://127.0.0.1/\"\non_unavailable = \"retry\"\n",
            4,
            "store.on_unavailable",
            "\"fail\" or \"local\"",
        ),
        (
            "[store]\ntype = \"redis\"\nurl = \"redis://127.0.0.1/\"\ncommand_timeout = \"soon\"\n",
            4,
            "store.command_timeout",
            "\"500ms\"",
        ),
        (
            "[store]\ntype = \"redis\"\nurl = \"http://127.0.0.1/\"\n",
            3,
            "store.url",
            "redis://127.0.0.1:6379/",
        ),
        (
            "[store]\ntype = \"redis\"\nurl = \"redis://127.0.0.1/\"\nca_file = 3\n",
            4,
            "store.ca_file",
            "PEM file",
        ),
        (
            "[store]\ntype = \"redis\"\nurl = \"redis://127.0.0.1/\"\npassword = \"hunter2\"\n",
            4,
            "store.password",
            "{ env = \"REDIS_PASSWORD\" }",
        ),
        ("[store]\ntype = \"redis\"\n", 1, "store", "missing `url`"),
    ];
    for (text, line, key, hint) in cases {
        let error = store_error(text);
        let display = error.to_string();
        assert_eq!(error.line, Some(line), "{display}");
        assert_eq!(error.key, key, "{display}");
        assert!(display.contains(hint), "{display}");
        assert!(!display.contains("hunter2"), "{display}");
    }
}

/// Checks a `rediss://` URL: accepted with the `redis-tls` feature, and
/// otherwise rejected with an error naming it.
#[test]
fn tls_url_needs_feature() {
    let text = "[store]\ntype = \"redis\"\nurl = \"rediss://:hunter2@127.0.0.1/\"\n";
    match config::parse(text, "test.toml") {
        Ok(parsed) => {
            let shown = format!("{parsed:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        Err(error) => {
            let display = error.to_string();
            assert_eq!(error.line, Some(3), "{display}");
            assert_eq!(error.key, "store.url", "{display}");
            assert!(display.contains("rediss://:***@127.0.0.1/"), "{display}");
            assert!(display.contains("`redis-tls`"), "{display}");
            assert!(!display.contains("hunter2"), "{display}");
        }
    }
}

#[test]
fn unset_password_variable_names_it() {
    let text = "[store]\ntype = \"redis\"\nurl = \"redis://127.0.0.1/\"\n\
                password = { env = \"TOKENFLEET_TEST_UNSET_REDIS_PASSWORD\" }\n";
    let error = store_error(text);
    assert_eq!(error.line, Some(4), "{error}");
    assert_eq!(error.key, "store.password.env", "{error}");
    assert!(
        error
            .to_string()
            .contains("TOKENFLEET_TEST_UNSET_REDIS_PASSWORD"),
        "{error}"
    );
}

#[tokio::test]
async fn fleet_from_toml_shares_store() {
    if tokenfleet_redis::testing::skip_without_redis("fleet_from_toml_shares_store") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("toml");
    let sim = GithubSimulator::start().await;
    sim.add_account("alice", AccountLimits::default().core(3, HOUR));
    sim.add_token("ghp_alice_toml", "alice");
    std::env::set_var("TOKENFLEET_TEST_REDIS_TOML_TOKEN", "ghp_alice_toml");
    let text = format!(
        "[store]\ntype = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n\n\
         [[providers]]\ntype = \"github\"\nbase_url = \"{}\"\n\
         tokens = [{{ env = \"TOKENFLEET_TEST_REDIS_TOML_TOKEN\", account = \"alice\" }}]\n",
        server.url(),
        sim.uri()
    );
    let first = Fleet::from_toml_str(&text, "test.toml").expect("the file is valid");
    let second = Fleet::from_toml_str(&text, "test.toml").expect("the file is valid");

    let mut successes = 0;
    for _ in 0..3 {
        for fleet in [&first, &second] {
            if github_ok(github(fleet)).await {
                successes += 1;
            }
        }
    }

    assert_eq!(successes, 3);
    assert_eq!(sim.over_limit_responses(), 0);
}

#[test]
fn short_lease_ttl_is_rejected() {
    let text =
        "[store]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/\"\nlease_ttl = \"100ms\"\n\n\
                [[providers]]\ntype = \"github\"\n";
    let error = tokenfleet::config::parse(text, "short.toml").expect_err("the lease is too short");
    let message = error.to_string();
    assert!(message.contains("store.lease_ttl"), "{message}");
    assert!(message.contains("at least \"60s\""), "{message}");
}
