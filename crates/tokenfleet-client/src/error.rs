//! Errors of the client.

use http::StatusCode;

/// An error of a request sent through the pool.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The pool could not hand out a token.
    #[error(transparent)]
    Pool(#[from] tokenfleet_core::Error),
    /// The request URL is not on the provider's host, so no token may go there.
    #[error("refusing to send a {provider} token to {url}: requests must go to {base}")]
    ForeignHost {
        /// The provider's `type` name.
        provider: String,
        /// The request URL, without secrets.
        url: String,
        /// The provider's base URL.
        base: String,
    },
    /// The request could not be sent or its response not read.
    #[error("request to {url} failed after {attempts} attempt(s): {message}")]
    Transport {
        /// The request URL, without secrets.
        url: String,
        /// What failed.
        message: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The provider kept returning a server error.
    #[error("{url} answered {status} after {attempts} attempt(s)")]
    Server {
        /// The request URL, without secrets.
        url: String,
        /// The last status.
        status: StatusCode,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The provider kept rate-limiting or rejecting tokens past the retry bound.
    #[error("{url} was still rate-limited after {attempts} attempt(s): {message}")]
    TooManyAttempts {
        /// The request URL, without secrets.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last response.
        message: String,
    },
    /// The provider returned an error status the operation cannot use.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The request URL, without secrets.
        url: String,
        /// The status.
        status: StatusCode,
        /// The provider's message.
        message: String,
    },
    /// A body was not the expected JSON.
    #[error("unexpected response body from {url}: {message}")]
    Decode {
        /// The request URL, without secrets.
        url: String,
        /// The parser's message.
        message: String,
    },
    /// A plugin failed: it panicked or returned something unusable.
    #[error("the {plugin} plugin failed: {message}")]
    Plugin {
        /// The plugin's `type` name.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// The request was not valid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ClientError {
    /// Returns the HTTP status of a provider response, when the error carries one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Server { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Returns true when a retry later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. } | Self::Server { .. } | Self::TooManyAttempts { .. }
        ) || matches!(self, Self::Pool(tokenfleet_core::Error::Exhausted(_)))
    }
}
