//! Provider simulators for testing programs that use tokenfleet.
//!
//! Each simulator is an HTTP server on `127.0.0.1` that responds like the
//! provider's API, including its rate limits, so that a token pool can be
//! tested end to end without network access. Tests control the simulated
//! accounts, tokens and budgets, inject failures, and read counters of what
//! the server sent.
//!
//! # Examples
//!
//! ```
//! use tokenfleet_testkit::{AccountLimits, GithubSimulator};
//!
//! # #[tokio::main]
//! # async fn main() {
//! let sim = GithubSimulator::start().await;
//! sim.add_account("octocat", AccountLimits::default());
//! sim.add_token("ghp_example", "octocat");
//!
//! let client = reqwest::Client::builder().no_proxy().build().unwrap();
//! let response = client
//!     .get(format!("{}/user", sim.uri()))
//!     .bearer_auth("ghp_example")
//!     .send()
//!     .await
//!     .unwrap();
//!
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["x-ratelimit-remaining"], "4999");
//! assert_eq!(sim.remaining("octocat", "core"), 4999);
//! # }
//! ```

#![deny(missing_docs)]

pub mod bitbucket;
pub mod conformance;
pub mod demo;
pub mod generic;
pub mod gitea;
pub mod github;
pub mod gitlab;

pub use bitbucket::BitbucketSimulator;
pub use generic::{Budget, GenericSimulator, GenericSimulatorBuilder};
pub use gitea::{GiteaSimulator, GiteaSimulatorBuilder};
pub use github::{AccountLimits, BucketLimit, GithubSimulator, GithubSimulatorBuilder};
pub use gitlab::{GitlabSimulator, GitlabSimulatorBuilder};
