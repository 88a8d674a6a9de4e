//! A provider's reading of a response: the observed limits and the class of the response.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The rate-limit resource a request draws from, such as GitHub's `core` or `search`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bucket(Cow<'static, str>);

impl Bucket {
    /// Creates a bucket from a static name, usable in constants.
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// Creates a bucket from a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// Returns the bucket name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Bucket {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

/// The limits of one bucket as a response or a status endpoint stated them.
///
/// `reset_ms` is in the server's time, in milliseconds since the Unix
/// epoch; the pool converts it with the server's `Date` offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The bucket the numbers belong to, when the response names it.
    pub bucket: Option<Bucket>,
    /// The budget of one window.
    pub limit: u64,
    /// The budget left in the current window.
    pub remaining: u64,
    /// The budget spent in the current window, when stated.
    pub used: Option<u64>,
    /// The end of the current window, in server epoch milliseconds.
    pub reset_ms: u64,
}

/// The class of a response, as its provider reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A response that is returned to the caller, whatever its status:
    /// success, not found, a validation error.
    Answered,
    /// The token's budget in a bucket is spent until `reset_ms` (server
    /// epoch milliseconds), when known.
    PrimaryLimit {
        /// The end of the window, when the response states it.
        reset_ms: Option<u64>,
    },
    /// A secondary (abuse or concurrency) limit on the token's account.
    SecondaryLimit {
        /// The wait the server asked for, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The token is invalid, expired or revoked.
    InvalidToken,
    /// A refusal that is not a rate limit (missing permission, SSO): the
    /// response goes back to the caller and no token changes state.
    Forbidden,
    /// A transient server error (5xx, a proxy's HTML error page).
    ServerError,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answered => f.write_str("answered"),
            Self::PrimaryLimit { .. } => f.write_str("primary rate limit"),
            Self::SecondaryLimit {
                retry_after: Some(wait),
            } => write!(f, "secondary rate limit, retry after {} s", wait.as_secs()),
            Self::SecondaryLimit { retry_after: None } => f.write_str("secondary rate limit"),
            Self::InvalidToken => f.write_str("invalid token"),
            Self::Forbidden => f.write_str("forbidden"),
            Self::ServerError => f.write_str("server error"),
        }
    }
}

/// A provider's reading of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The class of the response.
    pub outcome: Outcome,
    /// The limits the response stated, if it carried readable headers.
    pub observation: Option<Observation>,
    /// The server's `Date` header, in epoch milliseconds.
    pub server_date_ms: Option<u64>,
}

impl Verdict {
    /// Creates a verdict with no observation and no server date.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            observation: None,
            server_date_ms: None,
        }
    }

    /// Sets the observed limits.
    pub fn with_observation(mut self, observation: Option<Observation>) -> Self {
        self.observation = observation;
        self
    }

    /// Sets the server's date.
    pub fn with_server_date(mut self, server_date_ms: Option<u64>) -> Self {
        self.server_date_ms = server_date_ms;
        self
    }

    /// Returns true when the request should be retried with another token.
    pub fn rotates(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::PrimaryLimit { .. } | Outcome::SecondaryLimit { .. } | Outcome::InvalidToken
        )
    }
}
