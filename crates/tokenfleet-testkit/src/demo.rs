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

/// One provider of a [`ForgeDemo`]: its `type`, its simulator's address and
/// its demo tokens.
#[derive(Debug, Clone)]
pub struct DemoProvider {
    /// The provider's `type` name, also its name in the fleet.
    pub kind: &'static str,
    /// The simulator's API base URL.
    pub base_url: String,
    /// The demo tokens' secrets.
    pub secrets: Vec<String>,
}

impl DemoProvider {
    /// Returns the provider's `[[providers]]` table without its tokens:
    /// `type` and `base_url`.
    pub fn provider_toml(&self) -> String {
        format!(
            "type = \"{}\"\nbase_url = \"{}\"\n",
            self.kind, self.base_url
        )
    }
}

/// Simulators of all four forges with demo tokens and repositories, for
/// the command line's `--simulate` and multi-provider tests: GitHub as in
/// [`GithubDemo`], GitLab with two users, Bitbucket with two access tokens
/// and Gitea with one user and a token it rejects.
#[derive(Debug)]
pub struct ForgeDemo {
    /// The GitHub part.
    pub github: GithubDemo,
    /// The GitLab simulator.
    pub gitlab: crate::GitlabSimulator,
    /// The Bitbucket Cloud simulator.
    pub bitbucket: crate::BitbucketSimulator,
    /// The Gitea simulator.
    pub gitea: crate::GiteaSimulator,
    providers: Vec<DemoProvider>,
}

impl ForgeDemo {
    /// Starts the four simulators on the system clock; every forge serves
    /// [`DEMO_OWNERS`] and `owners`.
    pub async fn start(owners: &[String]) -> Self {
        Self::start_with_clock(owners, Arc::new(tokenfleet_core::SystemClock)).await
    }

    /// Starts the four simulators on `clock`.
    pub async fn start_with_clock(owners: &[String], clock: Arc<dyn Clock>) -> Self {
        let github = GithubDemo::start_with_clock(owners, Arc::clone(&clock)).await;
        let mut names: Vec<(String, usize)> = DEMO_OWNERS
            .iter()
            .map(|(owner, count)| ((*owner).to_owned(), *count))
            .collect();
        for owner in owners {
            if !names.iter().any(|(known, _)| known == owner) {
                names.push((owner.clone(), repository_count(owner)));
            }
        }

        let gitlab = crate::GitlabSimulator::builder()
            .clock(Arc::clone(&clock))
            .start()
            .await;
        let gitlab_limit = crate::gitlab::Throttle::new(60, Duration::from_secs(60));
        gitlab.add_account("demo-carol", gitlab_limit);
        gitlab.add_account("demo-dave", gitlab_limit);
        let gitlab_secrets = vec![
            "glpat-demoCarol00000000001".to_owned(),
            "glpat-demoDave000000000002".to_owned(),
        ];
        gitlab.add_token(&gitlab_secrets[0], "demo-carol");
        gitlab.add_token(&gitlab_secrets[1], "demo-dave");

        let bitbucket = crate::BitbucketSimulator::builder()
            .clock(Arc::clone(&clock))
            .start()
            .await;
        let allowance = crate::bitbucket::Allowance::new(1000, Duration::from_secs(3600));
        let bitbucket_secrets = vec![
            "ATCTT3xFfGN0demoWorkspace01".to_owned(),
            "ATCTT3xFfGN0demoWorkspace02".to_owned(),
        ];
        bitbucket.add_access_token("demo-workspace-1", &bitbucket_secrets[0], allowance);
        bitbucket.add_access_token("demo-workspace-2", &bitbucket_secrets[1], allowance);

        let gitea = crate::GiteaSimulator::builder()
            .clock(Arc::clone(&clock))
            .start()
            .await;
        gitea.add_account("demo-erin");
        let gitea_secrets = vec![
            "0123456789abcdef0123456789abcdefdemo0001".to_owned(),
            // Never registered, so the simulator rejects it.
            "0123456789abcdef0123456789abcdefdemo0002".to_owned(),
        ];
        gitea.add_token(&gitea_secrets[0], "demo-erin");

        for (owner, count) in &names {
            gitlab.add_repositories(owner, *count);
            bitbucket.add_repositories(&owner.to_lowercase(), *count);
            gitea.add_repositories(owner, *count);
        }

        let providers = vec![
            DemoProvider {
                kind: "github",
                base_url: github.base_url(),
                secrets: github.secrets().to_vec(),
            },
            DemoProvider {
                kind: "gitlab",
                base_url: gitlab.uri(),
                secrets: gitlab_secrets,
            },
            DemoProvider {
                kind: "bitbucket",
                base_url: bitbucket.uri(),
                secrets: bitbucket_secrets,
            },
            DemoProvider {
                kind: "gitea",
                base_url: gitea.uri(),
                secrets: gitea_secrets,
            },
        ];
        Self {
            github,
            gitlab,
            bitbucket,
            gitea,
            providers,
        }
    }

    /// Returns the four providers in the order GitHub, GitLab, Bitbucket, Gitea.
    pub fn providers(&self) -> &[DemoProvider] {
        &self.providers
    }
}
