//! End-to-end throughput against the GitHub simulator on 127.0.0.1: the
//! pool's client next to plain reqwest, both with 64 requests in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tokenfleet::{Fleet, Token};
use tokenfleet_github::Github;
use tokenfleet_testkit::{AccountLimits, GithubSimulator};

const IN_FLIGHT: usize = 64;
const ACCOUNTS: usize = 8;

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (simulator, secrets) = runtime.block_on(async {
        let simulator = GithubSimulator::builder()
            .concurrency_cap(10_000)
            .start()
            .await;
        let limits = AccountLimits::default().core(u32::MAX as u64, Duration::from_secs(3600));
        let mut secrets = Vec::new();
        for account in 0..ACCOUNTS {
            let login = format!("bench-{account}");
            simulator.add_account(&login, limits);
            let secret = format!("ghp_bench{account:031}");
            simulator.add_token(&secret, &login);
            secrets.push(secret);
        }
        (simulator, secrets)
    });
    let base = simulator.uri();

    let fleet = runtime.block_on(async {
        let fleet = Fleet::builder()
            .provider(
                Arc::new(Github::with_base_url(base.parse().unwrap())),
                secrets.iter().map(Token::new).collect(),
            )
            .build()
            .unwrap();
        // Probe every token before timing.
        fleet.client("github").unwrap().get("/user").await.unwrap();
        fleet
    });
    let client = fleet.client("github").unwrap().clone();
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();

    let mut group = c.benchmark_group("throughput_64_in_flight");
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("tokenfleet_client", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(run(iterations, |i| {
                let client = client.clone();
                async move {
                    let _ = i;
                    let response = client.get("/user").await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            }))
        });
    });
    group.bench_function("plain_reqwest", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(run(iterations, |i| {
                let plain = plain.clone();
                let url = format!("{base}/user");
                let secret = secrets[i % secrets.len()].clone();
                async move {
                    let response = plain
                        .get(url)
                        .bearer_auth(secret)
                        .header("user-agent", "bench")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                }
            }))
        });
    });
    group.finish();
    drop(simulator);
}

/// Runs `iterations` requests with `IN_FLIGHT` of them at a time.
async fn run<F, Fut>(iterations: u64, request: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..iterations as usize {
        if set.len() >= IN_FLIGHT {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(request(i));
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, throughput);
criterion_main!(benches);
