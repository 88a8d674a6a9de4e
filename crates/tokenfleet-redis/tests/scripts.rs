//! The store's Lua scripts against a real redis-server, compared with the
//! in-memory store where both apply.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokenfleet_core::store::{
    Admission, BudgetKey, BudgetView, Knowledge, LocalObservation, MemoryStore, Settlement,
};
use tokenfleet_core::{ManualClock, StateStore, Token};
use tokenfleet_redis::testing::RedisServer;
use tokenfleet_redis::{OnUnavailable, RedisConfig, RedisStore};

const CANARY: &str = "ghp_CANARY0000000000000000000000000000";
const NOW: u64 = 1_700_000_000_000;
const LEASE_TTL: Duration = Duration::from_secs(30);

fn key(account: &'static str) -> BudgetKey<'static> {
    BudgetKey {
        account: 0,
        account_name: account,
        bucket: 0,
        bucket_name: "core",
    }
}

fn observed(remaining: u64, used: u64, reset_ms: u64) -> LocalObservation {
    LocalObservation {
        limit: remaining + used,
        remaining,
        used: Some(used),
        reset_ms,
    }
}

fn answered(observation: Option<LocalObservation>) -> Settlement {
    Settlement {
        sent: true,
        observation,
        exhausted_until_ms: None,
        answered_without_limits: false,
        success: true,
    }
}

/// The command timeout of stores in tests that expect Redis to be up. The
/// default of 1 s can pass on a machine busy with parallel test processes;
/// the fault tests set their own short timeouts.
const TEST_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates a store with its own connection, on `prefix`, with a clock at `NOW`.
fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::new(
        RedisConfig::new(server.url())
            .prefix(prefix)
            .command_timeout(TEST_COMMAND_TIMEOUT)
            .lease_ttl(LEASE_TTL),
    )
    .expect("the store builds")
    .with_clock(Arc::new(ManualClock::new(NOW)))
}

async fn view(store: &dyn StateStore, key: BudgetKey<'_>) -> BudgetView {
    let mut out = Vec::new();
    store.view(&[key], &mut out).await.expect("the view works");
    out[0]
}

async fn connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("the URL parses")
        .get_multiplexed_tokio_connection()
        .await
        .expect("redis answers")
}

async fn keys_under(server: &RedisServer, prefix: &str) -> Vec<String> {
    let mut connection = connection(server).await;
    let mut keys: Vec<String> = connection
        .keys(format!("{prefix}:*"))
        .await
        .expect("KEYS works");
    keys.sort();
    keys
}

#[tokio::test]
async fn last_unit_goes_to_one_connection() {
    if tokenfleet_redis::testing::skip_without_redis("last_unit_goes_to_one_connection") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("last-unit");
    for round in 0..20u64 {
        let first = store(&server, &prefix);
        let second = store(&server, &prefix);
        let account = format!("acct-{round}");
        let key = BudgetKey {
            account_name: &account,
            ..key("unused")
        };
        first
            .observe(key, &observed(1, 99, NOW + 60_000), NOW)
            .await
            .unwrap();

        let (a, b) = tokio::join!(
            first.try_reserve(key, 0, NOW),
            second.try_reserve(key, 0, NOW)
        );
        let admitted = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|admission| **admission == Admission::Admit)
            .count();
        assert_eq!(admitted, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_overshoot() {
    if tokenfleet_redis::testing::skip_without_redis("concurrent_reservations_never_overshoot") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("overshoot");
    let stores: Vec<Arc<RedisStore>> = (0..4).map(|_| Arc::new(store(&server, &prefix))).collect();
    stores[0]
        .observe(key("alice"), &observed(25, 75, NOW + 60_000), NOW)
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for store in &stores {
        for _ in 0..16 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                store.try_reserve(key("alice"), 0, NOW).await.unwrap()
            }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        if task.await.unwrap() == Admission::Admit {
            admitted += 1;
        }
    }

    assert_eq!(admitted, 25);
    assert_eq!(view(stores[1].as_ref(), key("alice")).await.in_flight, 25);
}

#[tokio::test]
async fn newest_observation_wins() {
    if tokenfleet_redis::testing::skip_without_redis("newest_observation_wins") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("newest");
    let store = store(&server, &prefix);
    let reset = NOW + 60_000;

    store
        .observe(key("alice"), &observed(10, 90, reset), NOW)
        .await
        .unwrap();
    // A response sent earlier arrives late: less was used then.
    store
        .observe(key("alice"), &observed(20, 80, reset), NOW)
        .await
        .unwrap();
    assert_eq!(
        view(&store, key("alice")).await.knowledge,
        Knowledge::Known {
            limit: 100,
            remaining: 10,
            reset_ms: reset
        }
    );

    // A newer window replaces the estimate.
    let next = reset + 3_600_000;
    store
        .observe(key("alice"), &observed(99, 1, next), NOW)
        .await
        .unwrap();
    assert_eq!(
        view(&store, key("alice")).await.knowledge,
        Knowledge::Known {
            limit: 100,
            remaining: 99,
            reset_ms: next
        }
    );
}

#[tokio::test]
async fn late_settlement_does_not_roll_back() {
    if tokenfleet_redis::testing::skip_without_redis("late_settlement_does_not_roll_back") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("late-settle");
    let store = store(&server, &prefix);
    let reset = NOW + 60_000;
    store
        .observe(key("alice"), &observed(50, 50, reset), NOW)
        .await
        .unwrap();
    assert_eq!(
        store.try_reserve(key("alice"), 0, NOW).await.unwrap(),
        Admission::Admit
    );
    store
        .observe(key("alice"), &observed(40, 60, reset), NOW)
        .await
        .unwrap();

    store
        .settle(key("alice"), &answered(Some(observed(45, 55, reset))), NOW)
        .await
        .unwrap();

    let current = view(&store, key("alice")).await;
    assert_eq!(current.in_flight, 0);
    assert!(matches!(
        current.knowledge,
        Knowledge::Known { remaining: 40, .. }
    ));
}

#[tokio::test]
async fn scripts_match_memory_store() {
    if tokenfleet_redis::testing::skip_without_redis("scripts_match_memory_store") {
        return;
    }
    compare_with_memory_store(Duration::ZERO).await;
}

#[tokio::test]
async fn cached_views_match_memory_store() {
    if tokenfleet_redis::testing::skip_without_redis("cached_views_match_memory_store") {
        return;
    }
    compare_with_memory_store(Duration::from_secs(60)).await;
}

/// Drives the same operations through Redis and the in-memory store and
/// compares every view and every admission. With a cache, the views come
/// from the scripts' replies.
async fn compare_with_memory_store(view_max_age: Duration) {
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("parity");
    let redis_store = RedisStore::new(
        RedisConfig::new(server.url())
            .prefix(&prefix)
            .command_timeout(TEST_COMMAND_TIMEOUT)
            .lease_ttl(LEASE_TTL)
            .view_max_age(view_max_age),
    )
    .expect("the store builds")
    .with_clock(Arc::new(ManualClock::new(NOW)));
    let memory = MemoryStore::new();
    let reset = NOW + 60_000;

    enum Step {
        Observe(LocalObservation),
        Reserve(u64, u64),
        Settle(Settlement),
        CoolDown(Option<u64>, u64),
    }
    let unsent = Settlement {
        sent: false,
        observation: None,
        exhausted_until_ms: None,
        answered_without_limits: false,
        success: false,
    };
    let steps = vec![
        Step::Reserve(0, NOW),
        Step::Reserve(0, NOW),
        Step::Settle(answered(Some(observed(300, 0, reset)))),
        Step::Reserve(0, NOW),
        Step::Settle(answered(Some(observed(199, 101, reset)))),
        Step::Reserve(0, NOW),
        Step::Reserve(0, NOW),
        Step::Settle(unsent),
        Step::Reserve(150, NOW),
        Step::Reserve(0, NOW),
        Step::Settle(answered(None)),
        Step::Observe(observed(5, 295, reset)),
        Step::Reserve(0, NOW),
        Step::CoolDown(None, NOW),
        Step::Reserve(0, NOW + 1_000),
        Step::CoolDown(None, NOW + 1_000),
        Step::Reserve(0, NOW + 70_000),
        Step::Reserve(0, NOW + 70_000),
        Step::CoolDown(Some(NOW + 500_000), NOW + 70_000),
        Step::Settle(unsent),
        Step::Reserve(0, NOW + 600_000),
        Step::Settle(Settlement {
            sent: true,
            observation: None,
            exhausted_until_ms: Some(NOW + 900_000),
            answered_without_limits: false,
            success: false,
        }),
        Step::Reserve(0, NOW + 600_000),
        Step::Reserve(0, NOW + 900_000),
        Step::Settle(answered(Some(observed(80, 20, NOW + 4_000_000)))),
        Step::Reserve(0, NOW + 900_000),
        Step::Reserve(0, NOW + 900_000),
    ];

    for (number, step) in steps.into_iter().enumerate() {
        let k = key("alice");
        match step {
            Step::Observe(o) => {
                redis_store.observe(k, &o, NOW).await.unwrap();
                memory.observe_now(k, &o);
            }
            Step::Reserve(floor, now) => {
                let remote = redis_store.try_reserve(k, floor, now).await.unwrap();
                let local = memory.try_reserve_now(k, floor, now);
                assert_eq!(remote, local, "step {number}: admission");
            }
            Step::Settle(settlement) => {
                redis_store.settle(k, &settlement, NOW).await.unwrap();
                memory.settle_now(k, &settlement, NOW);
            }
            Step::CoolDown(until, now) => {
                let remote = redis_store.cool_down(k, until, now).await.unwrap();
                let local = memory.cool_down_now(k, until, now);
                assert_eq!(remote, local, "step {number}: cooldown end");
            }
        }
        let mut expected = Vec::new();
        memory.view_now(&[k], &mut expected);
        assert_eq!(
            view(&redis_store, k).await,
            expected[0],
            "step {number}: view"
        );
    }
}

#[tokio::test]
async fn every_key_expires() {
    if tokenfleet_redis::testing::skip_without_redis("every_key_expires") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("ttl");
    let store = store(&server, &prefix);
    let reset = NOW + 60_000;

    store
        .observe(key("alice"), &observed(10, 0, reset), NOW)
        .await
        .unwrap();
    store.try_reserve(key("alice"), 0, NOW).await.unwrap();
    store.cool_down(key("bob"), None, NOW).await.unwrap();
    store.mark_unlimited(key("carol")).await.unwrap();
    store
        .mark_invalid(Token::new(CANARY).id(), NOW)
        .await
        .unwrap();

    let keys = keys_under(&server, &prefix).await;
    assert_eq!(keys.len(), 6, "{keys:?}");
    let mut connection = connection(&server).await;
    for name in &keys {
        let ttl: i64 = connection.pttl(name).await.unwrap();
        assert!(ttl > 0, "{name} has no expiry");
    }
    let budget_ttl: i64 = connection
        .pttl(&store.budget_keys("alice", "core")[0])
        .await
        .unwrap();
    // The reset is 60 s away, and the key lives one minute past it.
    assert!(
        (100_000..=120_000).contains(&budget_ttl),
        "budget ttl {budget_ttl}"
    );
}

#[tokio::test]
async fn keys_hold_no_secret() {
    if tokenfleet_redis::testing::skip_without_redis("keys_hold_no_secret") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("secret");
    let store = store(&server, &prefix);
    let token = Token::new(CANARY).with_label("ci");

    store.mark_invalid(token.id(), NOW).await.unwrap();
    let invalid_key = store.invalid_key(token.id());
    assert!(invalid_key.ends_with(token.id().fingerprint_part()));

    let mut connection = connection(&server).await;
    for name in keys_under(&server, &prefix).await {
        assert!(!name.contains(CANARY), "{name}");
        let value: String = connection.get(&name).await.unwrap();
        assert!(!value.contains(CANARY));
    }
}

#[tokio::test]
async fn crashed_reservations_lapse() {
    if tokenfleet_redis::testing::skip_without_redis("crashed_reservations_lapse") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("lapse");
    let survivor = store(&server, &prefix);
    survivor
        .observe(key("alice"), &observed(1, 0, NOW + 3_600_000), NOW)
        .await
        .unwrap();

    {
        let crashed = store(&server, &prefix);
        assert_eq!(
            crashed.try_reserve(key("alice"), 0, NOW).await.unwrap(),
            Admission::Admit
        );
        // Dropped with its connection and without settling.
    }

    assert_eq!(view(&survivor, key("alice")).await.in_flight, 1);
    assert_eq!(
        survivor.try_reserve(key("alice"), 0, NOW).await.unwrap(),
        Admission::Busy
    );
    let later = NOW + LEASE_TTL.as_millis() as u64 + 1;
    assert_eq!(
        survivor.try_reserve(key("alice"), 0, later).await.unwrap(),
        Admission::Admit
    );
}

#[tokio::test]
async fn invalid_mark_is_shared() {
    if tokenfleet_redis::testing::skip_without_redis("invalid_mark_is_shared") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("invalid");
    let first = store(&server, &prefix);
    let second = store(&server, &prefix);
    let bad = Token::new("ghp_bad").with_label("one");
    let good = Token::new("ghp_good");

    first.mark_invalid(bad.id(), NOW).await.unwrap();

    // Another process may label the same token differently.
    let relabelled = Token::new("ghp_bad").with_label("two");
    let mut marks = Vec::new();
    second
        .invalid_tokens(&[relabelled.id(), good.id()], &mut marks)
        .await
        .unwrap();
    assert_eq!(marks, vec![true, false]);
}

#[tokio::test]
async fn unlimited_covers_new_buckets() {
    if tokenfleet_redis::testing::skip_without_redis("unlimited_covers_new_buckets") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("unlimited");
    let store = store(&server, &prefix);
    store.mark_unlimited(key("alice")).await.unwrap();
    let search = BudgetKey {
        bucket: 1,
        bucket_name: "search",
        ..key("alice")
    };
    assert_eq!(view(&store, search).await.knowledge, Knowledge::Unlimited);
    assert_eq!(
        view(&store, key("alice")).await.knowledge,
        Knowledge::Unlimited
    );
}

#[tokio::test]
async fn cooldown_is_shared() {
    if tokenfleet_redis::testing::skip_without_redis("cooldown_is_shared") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("cooldown");
    let first = store(&server, &prefix);
    let second = store(&server, &prefix);

    let until = first.cool_down(key("alice"), None, NOW).await.unwrap();

    assert_eq!(until, NOW + 60_000);
    assert_eq!(view(&second, key("alice")).await.cooldown_until_ms, until);
    assert_eq!(
        second.try_reserve(key("alice"), 0, NOW + 1).await.unwrap(),
        Admission::CoolingDown(until)
    );
}

#[tokio::test]
async fn unreachable_server_fails_clearly() {
    // A port that was free a moment ago and has nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/");
    let store = RedisStore::new(RedisConfig::new(&url).command_timeout(Duration::from_millis(300)))
        .unwrap();

    let error = store
        .try_reserve(key("alice"), 0, NOW)
        .await
        .expect_err("nothing listens there");

    let message = error.to_string();
    assert!(
        message.contains(&format!("redis store at redis://:***@127.0.0.1:{port}/")),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn unreachable_server_falls_back_locally() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::new(
        RedisConfig::new(format!("redis://127.0.0.1:{port}/"))
            .command_timeout(Duration::from_millis(300))
            .on_unavailable(OnUnavailable::Local),
    )
    .unwrap();

    store
        .observe(key("alice"), &observed(1, 0, NOW + 60_000), NOW)
        .await
        .unwrap();
    assert_eq!(
        store.try_reserve(key("alice"), 0, NOW).await.unwrap(),
        Admission::Admit
    );
    assert_eq!(
        store.try_reserve(key("alice"), 0, NOW).await.unwrap(),
        Admission::Busy
    );
    assert!(!store.is_available());
}

#[cfg(not(feature = "tls"))]
#[test]
fn tls_url_is_rejected_clearly() {
    let error = RedisStore::new(RedisConfig::new("rediss://:hunter2@127.0.0.1:6380/"))
        .expect_err("this build has no TLS");
    let message = error.to_string();
    assert!(
        message.contains("rediss://:***@127.0.0.1:6380/"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn invalid_url_is_rejected_clearly() {
    let error =
        RedisStore::new(RedisConfig::new("http://127.0.0.1:6379/")).expect_err("not a Redis URL");
    assert!(
        error.to_string().contains("redis://127.0.0.1:6379/"),
        "{error}"
    );
}

#[tokio::test]
async fn view_keeps_order_of_repeated_keys() {
    if tokenfleet_redis::testing::skip_without_redis("view_keeps_order_of_repeated_keys") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("repeated");
    let store = store(&server, &prefix);
    let reset = NOW + 60_000;
    store
        .observe(key("alice"), &observed(7, 0, reset), NOW)
        .await
        .unwrap();
    store
        .observe(key("bob"), &observed(9, 0, reset), NOW)
        .await
        .unwrap();

    let mut out = Vec::new();
    store
        .view(&[key("alice"), key("bob"), key("alice")], &mut out)
        .await
        .unwrap();

    let remaining: Vec<Option<u64>> = out.iter().map(|view| view.spendable(0)).collect();
    assert_eq!(remaining, vec![Some(7), Some(9), Some(7)]);
}

#[tokio::test]
async fn cached_marks_refresh_after_max_age() {
    if tokenfleet_redis::testing::skip_without_redis("cached_marks_refresh_after_max_age") {
        return;
    }
    let server = RedisServer::shared_or_start();
    let prefix = server.unique_prefix("cached-marks");
    let age = Duration::from_millis(50);
    let cached = RedisStore::new(
        RedisConfig::new(server.url())
            .prefix(&prefix)
            .command_timeout(TEST_COMMAND_TIMEOUT)
            .view_max_age(age),
    )
    .expect("the store builds");
    let other = store(&server, &prefix);
    let token = Token::new("ghp_cached");
    let mut marks = Vec::new();
    cached
        .invalid_tokens(&[token.id()], &mut marks)
        .await
        .unwrap();
    assert_eq!(marks, vec![false]);

    other.mark_invalid(token.id(), NOW).await.unwrap();
    tokio::time::sleep(age + Duration::from_millis(10)).await;

    cached
        .invalid_tokens(&[token.id()], &mut marks)
        .await
        .unwrap();
    assert_eq!(marks, vec![true]);
}
