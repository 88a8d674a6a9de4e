//! The provider plugin contract and the transport a provider uses for its status requests.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use url::Url;

use crate::repository::{ListingError, PageView, RepositoryPage};
use crate::token::Token;
use crate::verdict::{Bucket, Observation, Verdict};

/// The head and body of a response, as a provider classifies it.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: &'a HeaderMap,
    /// The response body, or its first part.
    pub body: &'a [u8],
    /// The bucket the pool charged the request to.
    pub bucket: &'a Bucket,
    /// The account the pool charged the request to.
    pub account: &'a str,
    /// The pool clock's time when the response arrived, in epoch
    /// milliseconds. Providers whose responses state no budget use it to
    /// keep their own estimate.
    pub now_ms: u64,
}

/// A failure to send a request or to read its response.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// The failure, without any secret or token-bearing URL.
    pub message: String,
}

/// Sends HTTP requests for the pool's own calls (status endpoints).
///
/// The pool lives in a crate without an HTTP client, so the client crate
/// supplies one through this trait.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends one request and returns the whole response.
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError>;
}

/// What a status request found out about a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// The account the provider charges the token to, when it could be learned.
    pub account: Option<String>,
    /// The limits of every bucket the status endpoint lists.
    pub observations: Vec<Observation>,
    /// The provider has rate limiting turned off, so no budget is known or needed.
    pub unlimited: bool,
    /// The reason to use the token last (for example it only gets the
    /// anonymous budget), when there is one.
    pub degraded: Option<String>,
    /// The server's `Date`, in epoch milliseconds.
    pub server_date_ms: Option<u64>,
    /// The account could not be learned now (learning it costs budget that
    /// is spent), so the pool keeps the token out of use and probes it
    /// again once its default bucket resets.
    pub account_deferred: bool,
}

/// The reason a status request did not produce a [`Probe`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The provider rejected the token as invalid, expired or revoked.
    #[error("the provider rejected the token: {0}")]
    InvalidToken(String),
    /// The provider has no status endpoint; budgets are learned from responses.
    #[error("the provider has no status endpoint")]
    Unsupported,
    /// The status request failed for another reason.
    #[error("status request failed: {0}")]
    Failed(String),
}

/// A code-hosting API: how to authenticate, which bucket a request uses
/// and how to read limits and verdicts from responses.
///
/// Implementations register with typetag under their `type` name so that a
/// config file can name them:
///
/// ```ignore
/// #[typetag::serde(name = "my_forge")]
/// #[async_trait::async_trait]
/// impl Provider for MyForge { /* ... */ }
/// ```
#[typetag::serde(tag = "type")]
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// Returns the provider's `type` name, such as `github`.
    fn kind(&self) -> &'static str;

    /// Returns the API base URL. Tokens are sent only to this URL's host.
    fn base_url(&self) -> &Url;

    /// Returns the bucket that token statuses and counts refer to by default.
    fn default_bucket(&self) -> Bucket;

    /// Returns the bucket a request draws from.
    fn bucket_for(&self, method: &Method, url: &Url) -> Bucket;

    /// Puts the token and the provider's recommended headers on a request.
    fn authorize(&self, headers: &mut HeaderMap, token: &Token);

    /// Puts the token into the URL of a request, for providers that take it
    /// as a query parameter. Callers apply it to the URL they send only,
    /// never to one they log or return. The default leaves the URL as it is.
    fn authorize_url(&self, url: &mut Url, token: &Token) {
        let _ = (url, token);
    }

    /// Reads a response into a verdict.
    fn classify(&self, response: &ResponseView<'_>) -> Verdict;

    /// Returns whether a served response without limits, on a budget no
    /// response has stated yet, means the provider applies no limit there.
    ///
    /// True by default: GitHub Enterprise Server with rate limiting off and
    /// Gitea send no limit headers at all. A provider whose limits show only
    /// on some responses (older GitLab states them on 429s only) returns
    /// false, and the pool keeps one request at a time in flight until a
    /// response states the budget.
    fn headerless_means_unlimited(&self) -> bool {
        true
    }

    /// Checks that `token` can be sent in this provider's auth form, so that
    /// a config loader can reject a malformed token before it is used. The
    /// default accepts every token.
    ///
    /// # Errors
    ///
    /// Returns a message that names the token by its public id and explains how
    /// to write it. The message never contains the secret.
    fn validate_token(&self, token: &Token) -> Result<(), String> {
        let _ = token;
        Ok(())
    }

    /// Reads a token's limits without spending budget, and learns its
    /// account when `learn_account` is true.
    ///
    /// # Errors
    ///
    /// Returns [`ProbeError::Unsupported`] when the provider has no status
    /// endpoint (the default), [`ProbeError::InvalidToken`] when the
    /// provider rejects the token.
    async fn probe(
        &self,
        token: &Token,
        transport: &dyn Transport,
        learn_account: bool,
    ) -> Result<Probe, ProbeError> {
        let _ = (token, transport, learn_account);
        Err(ProbeError::Unsupported)
    }

    /// Returns the URL of the first page of an owner's repositories (a
    /// user, organization, group or workspace, as the provider names them).
    ///
    /// # Errors
    ///
    /// Returns [`ListingError::Unsupported`] when the provider does not list
    /// repositories (the default), [`ListingError::InvalidOwner`] when
    /// `owner` cannot name an owner of this provider.
    fn repositories_url(&self, owner: &str) -> Result<Url, ListingError> {
        let _ = owner;
        Err(ListingError::Unsupported {
            provider: self.kind(),
        })
    }

    /// Returns a second place to look for an owner's repositories when the
    /// first page of [`repositories_url`](Self::repositories_url) returns
    /// 404, for providers where users and groups live under different paths
    /// (GitLab's `/users/:id/projects` and `/groups/:id/projects`). `None`
    /// (the default) makes the 404 final.
    fn repositories_fallback_url(&self, owner: &str) -> Option<Url> {
        let _ = owner;
        None
    }

    /// Reads one successful page of a repository listing: its repositories
    /// and the URL of the next page.
    ///
    /// # Errors
    ///
    /// Returns [`ListingError::Unsupported`] when the provider does not list
    /// repositories (the default), [`ListingError::Parse`] when the body is
    /// not a page of repositories.
    fn parse_repositories(&self, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
        let _ = page;
        Err(ListingError::Unsupported {
            provider: self.kind(),
        })
    }
}

/// Returns true when `url` points at the host, port and scheme of `base`,
/// the only place a provider's tokens may be sent.
pub fn same_origin(base: &Url, url: &Url) -> bool {
    base.scheme() == url.scheme()
        && base.host_str() == url.host_str()
        && base.port_or_known_default() == url.port_or_known_default()
}

/// A shared provider.
pub type SharedProvider = Arc<dyn Provider>;

/// The maximum length of a server's reason in an error, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// Prepares a server's error message for an error or a log: trimmed,
/// `secret` replaced by `[redacted]` should the server echo it, and cut to
/// [`MAX_REASON_CHARS`] with an ellipsis. Returns `None` for an empty one.
pub fn server_reason(message: &str, secret: &str) -> Option<String> {
    let message = message.trim();
    if message.is_empty() {
        return None;
    }

    let mut message = if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "[redacted]")
    };
    if let Some((cut, _)) = message.char_indices().nth(MAX_REASON_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Stops compiling if `Provider` stops being usable as a trait object.
    #[allow(dead_code)]
    fn provider_is_object_safe(_: &dyn Provider) {}

    #[test]
    fn server_reason_redacts_and_shortens() {
        let long = format!("bad token ghp_secret {}", "x".repeat(300));
        let reason = server_reason(&long, "ghp_secret").unwrap();
        assert!(reason.starts_with("bad token [redacted] "), "{reason}");
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
        assert!(reason.ends_with('…'));
        assert_eq!(server_reason("  ", "ghp_secret"), None);
    }

    #[test]
    fn same_origin_compares_scheme_host_port() {
        let base = Url::parse("https://api.github.com").unwrap();
        let same = Url::parse("https://api.github.com:443/users/x/repos?page=2").unwrap();
        let other_host = Url::parse("https://evil.example/users").unwrap();
        let other_scheme = Url::parse("http://api.github.com/users").unwrap();
        let other_port = Url::parse("https://api.github.com:8443/users").unwrap();
        assert!(same_origin(&base, &same));
        assert!(!same_origin(&base, &other_host));
        assert!(!same_origin(&base, &other_scheme));
        assert!(!same_origin(&base, &other_port));
    }
}
