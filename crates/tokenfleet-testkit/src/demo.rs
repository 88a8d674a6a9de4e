//! A ready-made GitHub simulation with small budgets, for the examples and
//! the command line's `--simulate`: rotation, an invalid token and a wait
//! for a reset all happen within a minute.

use std::sync::Arc;
use std::time::Duration;

use tokenfleet_core::Clock;

use crate::github::{AccountLimits, GithubSimulator};

/// The core budget window of the demo accounts.
pub const DEMO_WINDOW: Duration = Duration::from_secs(30);

/// Owners whose repositories the demo serves when none are named, with
/// their repository counts.
pub const DEMO_OWNERS: [(&str, usize); 5] = [
    ("octocat", 8),
    ("torvalds", 130),
    ("gvanrossum", 250),
    ("kennethreitz", 90),
    ("yyx990803", 320),
];

/// A running GitHub simulator with demo accounts, tokens and repositories.
#[derive(Debug)]
pub struct GithubDemo {
    /// The simulator; it stops when this is dropped.
    pub simulator: GithubSimulator,
    secrets: Vec<String>,
}

impl GithubDemo {
    /// Starts the demo on the system clock. `owners` get generated
    /// repositories in addition to [`DEMO_OWNERS`].
    pub async fn start(owners: &[String]) -> Self {
        Self::start_with_clock(owners, Arc::new(tokenfleet_core::SystemClock)).await
    }

    /// Starts the demo on `clock`.
    pub async fn start_with_clock(owners: &[String], clock: Arc<dyn Clock>) -> Self {
        let simulator = GithubSimulator::builder().clock(clock).start().await;

        // Two tokens of one user share one budget; a third user has its own.
        simulator.add_account("demo-alice", AccountLimits::default().core(6, DEMO_WINDOW));
        simulator.add_account("demo-bob", AccountLimits::default().core(4, DEMO_WINDOW));
        let secrets = vec![
            "ghp_demoAlice000000000000000000000000001".to_owned(),
            "ghp_demoAlice000000000000000000000000002".to_owned(),
            "ghp_demoBob00000000000000000000000000003".to_owned(),
            // Never registered, so the simulator rejects it as invalid.
            "ghp_demoRevoked0000000000000000000000004".to_owned(),
        ];
        simulator.add_token(&secrets[0], "demo-alice");
        simulator.add_token(&secrets[1], "demo-alice");
        simulator.add_token(&secrets[2], "demo-bob");

        for (owner, count) in DEMO_OWNERS {
            simulator.add_repositories(owner, count);
        }
        for owner in owners {
            if !DEMO_OWNERS.iter().any(|(known, _)| known == owner) {
                simulator.add_repositories(owner, repository_count(owner));
            }
        }
        Self { simulator, secrets }
    }

    /// Returns the API base URL of the simulator.
    pub fn base_url(&self) -> String {
        self.simulator.uri()
    }

    /// Returns the demo tokens' secrets; the last one is invalid.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

/// Derives a stable repository count between 20 and 399 from an owner name.
fn repository_count(owner: &str) -> usize {
    let sum: usize = owner.bytes().map(usize::from).sum();
    20 + sum % 380
}
