//! Throughput of `acquire` + `complete` through the Redis store on
//! loopback, at 1, 8 and 64 concurrent tasks.
//!
//! Uses the server named by `TOKENFLEET_TEST_REDIS_URL`, or starts
//! `redis-server` on a free loopback port. With exact views each operation
//! runs four commands: the view script, a read of invalid marks, the
//! reservation script and the settlement script. With views cached for
//! 20 ms most operations skip the view script.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokenfleet::core::Observation;
use tokenfleet::redis::{RedisConfig, RedisStore};
use tokenfleet::{Bucket, Outcome, Token, TokenPool, Verdict};
use tokenfleet_github::Github;
use tokenfleet_rate_aware::RateAware;
use tokenfleet_redis::testing::RedisServer;

const BUDGET: u64 = 1_000_000_000;
const TOKENS: usize = 10;

fn verdict(reset_ms: u64) -> Verdict {
    Verdict::new(Outcome::Answered).with_observation(Some(Observation {
        bucket: Some(Bucket::from_static("core")),
        limit: BUDGET,
        remaining: BUDGET,
        used: None,
        reset_ms,
    }))
}

/// Builds a pool of 10 tokens on 10 accounts whose budgets are known and
/// practically endless, with its state in Redis under a fresh prefix.
async fn pool(server: &RedisServer, view_max_age: Duration) -> (TokenPool, Verdict) {
    let provider = Arc::new(Github::with_base_url("http://127.0.0.1:9".parse().unwrap()));
    let config = RedisConfig::new(server.url())
        .prefix(server.unique_prefix("bench"))
        .view_max_age(view_max_age);
    let store = RedisStore::new(config).unwrap().scoped("github");
    let pool =
        TokenPool::builder(provider)
            .tokens((0..TOKENS).map(|i| {
                Token::new(format!("bench-token-{i}")).with_account(format!("account-{i}"))
            }))
            .strategy(Arc::new(RateAware::default()))
            .store(Arc::new(store))
            .seed(1)
            .build()
            .unwrap();
    let reset_ms = pool.clock().now_ms() + 3_600_000;
    let answer = verdict(reset_ms);
    // Unknown budgets admit one request at a time; teach every account first.
    for _ in 0..TOKENS {
        let lease = pool.acquire(&Bucket::from_static("core")).await.unwrap();
        lease.complete(&answer).await.unwrap();
    }
    (pool, answer)
}

fn through_redis(c: &mut Criterion) {
    let server = RedisServer::shared_or_start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("redis_acquire_complete");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for (views, view_max_age) in [
        ("exact_views", Duration::ZERO),
        ("views_20ms", Duration::from_millis(20)),
    ] {
        let (pool, answer) = runtime.block_on(pool(&server, view_max_age));
        for tasks in [1usize, 8, 64] {
            group.bench_function(BenchmarkId::new(views, format!("{tasks}_tasks")), |b| {
                b.iter_custom(|iterations| {
                    // Each task does its share; the figure is time per operation.
                    let per_task = (iterations as usize).div_ceil(tasks);
                    runtime.block_on(async {
                        let start = Instant::now();
                        let handles: Vec<_> = (0..tasks)
                            .map(|_| {
                                let pool = pool.clone();
                                let answer = answer.clone();
                                tokio::spawn(async move {
                                    let core = Bucket::from_static("core");
                                    for _ in 0..per_task {
                                        let lease = pool.acquire(&core).await.unwrap();
                                        lease.complete(&answer).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for handle in handles {
                            handle.await.unwrap();
                        }
                        start
                            .elapsed()
                            .mul_f64(iterations as f64 / (per_task * tasks) as f64)
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, through_redis);
criterion_main!(benches);
