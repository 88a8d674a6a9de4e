//! The GitFleet token-manager workflow on tokenfleet: show each token's
//! limits, fetch the repositories of several owners with automatic
//! rotation, print a summary and each token's final status.
//!
//! Reads GITHUB_TOKENS (comma-separated) or GITHUB_TOKEN. With neither set
//! it runs on the built-in GitHub simulator on 127.0.0.1 with small-budget
//! demo tokens, one of them invalid, so rotation, the invalid token and a
//! wait for a reset all show within a minute.
//!
//! Run with `cargo run --example token_manager`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenfleet::core::clock::format_epoch_ms;
use tokenfleet::github::Github;
use tokenfleet::{Fleet, Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::demo::{GithubDemo, DEMO_OWNERS};

const OWNERS: [&str; 5] = [
    "octocat",
    "torvalds",
    "gvanrossum",
    "kennethreitz",
    "yyx990803",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    // Tokens from the environment, or the simulator when there are none.
    let env_tokens = ["GITHUB_TOKENS", "GITHUB_TOKEN"].iter().find_map(|var| {
        let list = std::env::var(var).ok()?;
        let tokens: Vec<Token> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Token::new)
            .collect();
        (!tokens.is_empty()).then_some(tokens)
    });
    let mut demo = None;
    let (provider, tokens) = match env_tokens {
        Some(tokens) => (Github::new(), tokens),
        None => {
            let owners: Vec<String> = DEMO_OWNERS.iter().map(|(o, _)| o.to_string()).collect();
            let started = GithubDemo::start(&owners).await;
            println!(
                "No GITHUB_TOKENS or GITHUB_TOKEN set: running on the GitHub simulator at {}",
                started.base_url()
            );
            let provider = Github::with_base_url(started.base_url().parse()?);
            let tokens = started.secrets().iter().map(Token::new).collect();
            demo = Some(started);
            (provider, tokens)
        }
    };
    println!("Using {} GitHub token(s)", tokens.len());

    let fleet = Fleet::builder()
        .provider(Arc::new(provider), tokens)
        .wait(WaitPolicy::UpTo(Duration::from_secs(120)))
        .build()?;
    let github = fleet
        .client("github")
        .ok_or("the fleet has no github provider")?;

    println!("\nAPI rate limits for all tokens:");
    let tokens = github.github().rate_limits().await?;
    for (number, token) in tokens.iter().enumerate() {
        match token.bucket("core") {
            Some(core) if core.unlimited => {
                println!("Token {} ({}): no rate limit", number + 1, token.id)
            }
            Some(core) => println!(
                "Token {} ({}): {}/{} requests remaining, resets at {}, account {}",
                number + 1,
                token.id,
                core.remaining.unwrap_or(0),
                core.limit.unwrap_or(0),
                core.reset_ms.map(format_epoch_ms).unwrap_or_default(),
                token.account,
            ),
            None => println!("Token {} ({}): limits unknown", number + 1, token.id),
        }
        println!("       Status: {}", token.status);
    }

    println!("\nFetching repositories for {} owners:", OWNERS.len());
    let mut results = Vec::new();
    for owner in OWNERS {
        println!("Fetching repos for {owner} (the pool picks the token)");
        let started = Instant::now();
        match github.github().repositories(owner).await {
            Ok(repositories) => {
                println!("  found {} repositories for {owner}", repositories.len());
                let elapsed = started.elapsed();
                if elapsed > Duration::from_secs(2) {
                    println!(
                        "  took {} s: every token was out of budget, so the pool waited for a reset",
                        elapsed.as_secs()
                    );
                }
                let available = fleet.available_count("github").await;
                println!("  {available}/{} tokens available", tokens.len());
                results.push((owner, repositories.len()));
            }
            Err(error) => {
                println!("  error fetching repos for {owner}: {error}");
                if let Some(reset) = fleet.earliest_reset_ms("github").await {
                    println!("  budget returns at {}", format_epoch_ms(reset));
                }
            }
        }
    }

    println!("\nSummary:");
    let total: usize = results.iter().map(|(_, count)| count).sum();
    println!("Total repositories found: {total}");
    for (owner, count) in &results {
        println!("  {owner}: {count} repositories");
    }

    println!("\nFinal token status:");
    for (number, token) in fleet.tokens("github").await.iter().enumerate() {
        let status = match &token.status {
            TokenStatus::Available => "Available".to_owned(),
            TokenStatus::Invalid => "Invalid".to_owned(),
            limited => format!("{limited}"),
        };
        println!("Token {} ({}): {status}", number + 1, token.id);
    }
    if let Some(demo) = &demo {
        println!(
            "\nThe simulator served {} requests, {} of them over a limit.",
            demo.simulator.total_requests(),
            demo.simulator.over_limit_responses()
        );
    }
    Ok(())
}
