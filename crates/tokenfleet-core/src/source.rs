//! Token sources: where a token's secret comes from when it is not fixed,
//! such as a GitHub App installation token that expires after an hour.
//!
//! A pool fetches a sourced token's secret before its first use and again
//! ahead of its expiry, in background tasks, so requests that other tokens
//! can serve do not wait for a refresh. A failed fetch takes only that token out
//! of use, and the pool tries again with a growing delay.

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::provider::Transport;

/// A secret a source fetched.
pub struct SourcedSecret {
    /// The secret.
    pub secret: SecretString,
    /// When the secret stops working, in local epoch milliseconds; `None`
    /// when it does not expire.
    pub expires_at_ms: Option<u64>,
    /// The account the provider charges the secret to, when the source
    /// knows it (a GitHub App installation has a budget of its own).
    pub account: Option<String>,
}

impl fmt::Debug for SourcedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourcedSecret")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// A failed fetch. The message names the source and never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    /// The source, as [`TokenSource::describe`] names it.
    pub source_name: String,
    /// The failure and its fix.
    pub message: String,
}

/// Fetches the secret of a token whose secret is not fixed in the config.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// Names the source for messages and logs, without any secret, such as
    /// `GitHub App 42, installation 7`.
    fn describe(&self) -> String;

    /// Fetches a current secret. `now_ms` is the pool clock's time, for
    /// sources that sign requests with a time (a JWT) or compute expiries.
    ///
    /// # Errors
    ///
    /// Returns a [`SourceError`] that names the source and the fix.
    async fn fetch(
        &self,
        transport: &dyn Transport,
        now_ms: u64,
    ) -> Result<SourcedSecret, SourceError>;
}
