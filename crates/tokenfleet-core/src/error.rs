//! The error type of the pool.

use std::fmt;

use crate::clock::format_epoch_ms;
use crate::status::TokenSnapshot;
use crate::store::StoreError;
use crate::token::TokenId;
use crate::verdict::Bucket;

/// No token of a pool has budget for a request.
#[derive(Debug, Clone)]
pub struct Exhausted {
    /// The provider's `type` name.
    pub provider: String,
    /// The bucket of the request.
    pub bucket: Bucket,
    /// When the first token gets budget back, in local epoch milliseconds.
    pub earliest_reset_ms: Option<u64>,
    /// The current time when the pool gave up, in local epoch milliseconds.
    pub now_ms: u64,
    /// Every token of the pool with its status.
    pub tokens: Vec<TokenSnapshot>,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no {} token has budget left in bucket {}",
            self.provider, self.bucket
        )?;
        match self.earliest_reset_ms {
            Some(reset) => {
                let seconds = reset.saturating_sub(self.now_ms).div_ceil(1000);
                write!(
                    f,
                    "; budget returns at {} (in {seconds} s)",
                    format_epoch_ms(reset)
                )?;
            }
            None => f.write_str("; no reset time is known")?,
        }
        let states: Vec<String> = self
            .tokens
            .iter()
            .map(|t| format!("{}: {}", t.id, t.status))
            .collect();
        if !states.is_empty() {
            write!(f, " [{}]", states.join(", "))?;
        }
        Ok(())
    }
}

/// An error of the token pool.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No token has budget and the wait policy does not allow waiting
    /// (long enough).
    #[error("{0}")]
    Exhausted(Box<Exhausted>),
    /// Every token of the pool was rejected by the provider.
    #[error("every {provider} token was rejected as invalid ({}); add a valid token", join_ids(.tokens))]
    AllInvalid {
        /// The provider's `type` name.
        provider: String,
        /// The rejected tokens.
        tokens: Vec<TokenId>,
    },
    /// The pool has no tokens.
    #[error("the {provider} pool has no tokens; add one in code, in the config's `tokens`, or through `tokens_env`")]
    NoTokens {
        /// The provider's `type` name.
        provider: String,
    },
    /// A strategy plugin misbehaved.
    #[error("rotation strategy {strategy} failed: {message}")]
    Strategy {
        /// The strategy's `type` name.
        strategy: String,
        /// The failure.
        message: String,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// Returns when budget returns, for an exhausted pool.
    pub fn earliest_reset_ms(&self) -> Option<u64> {
        match self {
            Self::Exhausted(exhausted) => exhausted.earliest_reset_ms,
            _ => None,
        }
    }
}

fn join_ids(ids: &[TokenId]) -> String {
    ids.iter()
        .map(|id| id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
