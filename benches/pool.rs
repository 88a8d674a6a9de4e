//! Cost of one `acquire` + `complete` on the in-memory pool, for 10 and
//! 1,000 tokens under each strategy, alone and with 8 or 64 tasks
//! contending. No HTTP: the verdict is built in memory, so the figures are
//! the pool's own overhead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tokenfleet::core::Observation;
use tokenfleet::{Bucket, Outcome, RotationStrategy, Token, TokenPool, Verdict};
use tokenfleet_github::Github;
use tokenfleet_priority::Priority;
use tokenfleet_rate_aware::RateAware;
use tokenfleet_round_robin::RoundRobin;

const BUDGET: u64 = 1_000_000_000;

/// Counts the bytes the program holds, to measure memory per token.
struct CountingAllocator;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

type StrategyFactory = fn() -> Arc<dyn RotationStrategy>;

fn strategies() -> Vec<(&'static str, StrategyFactory)> {
    vec![
        ("rate_aware", || Arc::new(RateAware::default())),
        ("round_robin", || Arc::new(RoundRobin::default())),
        ("priority", || Arc::new(Priority::default())),
    ]
}

fn verdict(reset_ms: u64) -> Verdict {
    Verdict::new(Outcome::Answered).with_observation(Some(Observation {
        bucket: Some(Bucket::from_static("core")),
        limit: BUDGET,
        remaining: BUDGET,
        used: None,
        reset_ms,
    }))
}

/// Builds a pool whose every token has a known, practically endless budget.
async fn pool(tokens: usize, strategy: Arc<dyn RotationStrategy>) -> (TokenPool, Verdict) {
    let provider = Arc::new(Github::with_base_url("http://127.0.0.1:9".parse().unwrap()));
    let pool = TokenPool::builder(provider)
        .tokens((0..tokens).map(|i| {
            Token::new(format!("bench-token-{i}"))
                .with_account(format!("account-{i}"))
                .with_priority((i % 3) as u32)
        }))
        .strategy(strategy)
        .seed(1)
        .build()
        .unwrap();
    let reset_ms = pool.clock().now_ms() + 3_600_000;
    let answer = verdict(reset_ms);
    // Unknown budgets admit one request at a time; teach every account first.
    for _ in 0..tokens {
        let lease = pool.acquire(&Bucket::from_static("core")).await.unwrap();
        lease.complete(&answer).await.unwrap();
    }
    (pool, answer)
}

fn single_task(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let core = Bucket::from_static("core");
    let mut group = c.benchmark_group("acquire_complete");
    for tokens in [10usize, 1_000] {
        for (name, make) in strategies() {
            let (pool, answer) = runtime.block_on(pool(tokens, make()));
            group.bench_with_input(BenchmarkId::new(name, tokens), &tokens, |b, _| {
                // One `block_on` per sample, so the runtime's entry cost is
                // not counted in every operation.
                b.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iterations {
                            let lease = pool.acquire(&core).await.unwrap();
                            lease.complete(&answer).await.unwrap();
                        }
                        start.elapsed()
                    })
                });
            });
        }
    }
    group.finish();
}

fn contended(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("acquire_complete_contended");
    group.measurement_time(Duration::from_secs(4));
    for tokens in [10usize, 1_000] {
        for tasks in [8usize, 64] {
            let (pool, answer) = runtime.block_on(pool(tokens, Arc::new(RateAware::default())));
            let id = BenchmarkId::new(format!("rate_aware/{tasks}_tasks"), tokens);
            group.bench_function(id, |b| {
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

/// Prints the heap bytes per token of a 10,000-token pool whose accounts
/// have one known bucket each; criterion times a snapshot of it.
fn memory(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    const TOKENS: usize = 10_000;
    let before = ALLOCATED.load(Ordering::Relaxed);
    let (pool, _) = runtime.block_on(pool(TOKENS, Arc::new(RateAware::default())));
    let after = ALLOCATED.load(Ordering::Relaxed);
    println!(
        "memory: {} bytes per token (10,000 tokens, one account and one known bucket each)",
        (after - before) / TOKENS
    );
    c.bench_function("snapshot_10000_tokens", |b| {
        b.iter(|| runtime.block_on(pool.tokens()).len())
    });
}

criterion_group!(benches, single_task, contended, memory);
criterion_main!(benches);
