//! End-to-end tests of the facade against the GitHub simulator and plain
//! wiremock servers on 127.0.0.1.

mod app;
mod concurrency;
mod config;
mod config_sources;
mod enterprise;
mod limits;
// Needs every forge provider; `cargo test --workspace` enables them all.
#[cfg(all(feature = "gitlab", feature = "bitbucket", feature = "gitea"))]
mod multi;
mod pagination;
mod plugins;
mod redirects;
mod redis;
mod responses;
mod rotation;
mod secondary;
mod secrets;
mod support;
