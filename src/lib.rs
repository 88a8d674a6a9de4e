//! tokenfleet spreads API calls over a pool of access tokens for
//! code-hosting providers, tracks every token's rate limits, rotates away
//! from limited or invalid tokens and reports when budget returns.
//!
//! Start with [`Fleet::from_config_file`] or [`Fleet::builder`]; see the
//! README for the concepts and the configuration keys.

#![deny(missing_docs)]

pub mod config;
mod fleet;
mod sources;

pub use fleet::{Fleet, FleetBuilder, FleetError};

pub use tokenfleet_client as client;
pub use tokenfleet_client::{Client, ClientError, Response};
pub use tokenfleet_core as core;
pub use tokenfleet_core::{
    async_trait, Bucket, Candidate, ChoiceContext, Clock, Error, LimitKind, ManualClock, Outcome,
    Provider, Repository, RotationStrategy, SystemClock, Token, TokenId, TokenPool, TokenSnapshot,
    TokenStatus, Verdict, WaitPolicy,
};

#[cfg(feature = "github")]
pub use tokenfleet_github as github;

#[cfg(feature = "gitlab")]
pub use tokenfleet_gitlab as gitlab;

#[cfg(feature = "bitbucket")]
pub use tokenfleet_bitbucket as bitbucket;

#[cfg(feature = "gitea")]
pub use tokenfleet_gitea as gitea;

#[cfg(feature = "http")]
pub use tokenfleet_http as http;
#[cfg(feature = "priority")]
pub use tokenfleet_priority::Priority;
#[cfg(feature = "rate-aware")]
pub use tokenfleet_rate_aware::RateAware;
#[cfg(feature = "redis")]
pub use tokenfleet_redis as redis;
#[cfg(feature = "round-robin")]
pub use tokenfleet_round_robin::RoundRobin;
#[cfg(feature = "vault")]
pub use tokenfleet_vault as vault;

/// Returns the `type` names of every strategy linked into this program,
/// including ones registered by crates outside this workspace.
pub fn registered_strategies() -> Vec<String> {
    registered_names(|value| {
        serde_path_to_error::deserialize::<_, Box<dyn RotationStrategy>>(value)
            .err()
            .map(|e| e.inner().message().to_owned())
    })
}

/// Returns the `type` names of every provider linked into this program.
pub fn registered_providers() -> Vec<String> {
    registered_names(|value| {
        serde_path_to_error::deserialize::<_, Box<dyn Provider>>(value)
            .err()
            .map(|e| e.inner().message().to_owned())
    })
}

/// One plugin linked into this program, as [`plugins`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginListing {
    /// What the plugin plugs into.
    pub kind: tokenfleet_core::registry::PluginKind,
    /// The `type` name a config file uses.
    pub name: String,
    /// The description the plugin registered with
    /// [`register_plugin!`](tokenfleet_core::register_plugin), if it did.
    pub description: Option<&'static str>,
}

/// Lists every provider and strategy linked into this program: every
/// `type` name typetag accepts, with the description registered for it.
/// Providers come first, each kind sorted by name.
pub fn plugins() -> Vec<PluginListing> {
    use tokenfleet_core::registry::{self, PluginKind};

    let described = registry::plugins();
    let describe = |kind: PluginKind, name: &str| {
        described
            .iter()
            .find(|info| info.kind == kind && info.name == name)
            .map(|info| info.description)
    };
    let listing = |kind: PluginKind, names: Vec<String>| {
        names.into_iter().map(move |name| PluginListing {
            kind,
            description: describe(kind, &name),
            name,
        })
    };
    listing(PluginKind::Provider, registered_providers())
        .chain(listing(PluginKind::Strategy, registered_strategies()))
        .collect()
}

/// Reads typetag's registry through the error it gives for a type name no
/// plugin uses: "unknown variant `x`, expected one of `a`, `b`".
fn registered_names(attempt: impl Fn(toml::Value) -> Option<String>) -> Vec<String> {
    let mut table = toml::Table::new();
    table.insert(
        "type".into(),
        toml::Value::String("\u{1}unregistered".into()),
    );
    let Some(message) = attempt(toml::Value::Table(table)) else {
        return Vec::new();
    };
    let Some((_, expected)) = message.split_once("expected") else {
        return Vec::new();
    };
    let mut names: Vec<String> = expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, name)| name.to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}
