//! Token statuses and the snapshots the pool reports.

use std::fmt;

use crate::clock::format_epoch_ms;
use crate::token::TokenId;
use crate::verdict::Bucket;

/// The kind of limit that stops a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The bucket's budget is spent until its window resets.
    Primary,
    /// The provider's secondary (abuse, concurrency) limit cools the account down.
    Secondary,
    /// The remaining budget is the token's configured reserve, which the pool does not spend.
    Reserve,
}

/// The status of a token, as GitFleet users know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStatus {
    /// The token is valid and has budget.
    Available,
    /// The token cannot be used until `until_ms` (local epoch milliseconds).
    RateLimited {
        /// When budget returns.
        until_ms: u64,
        /// The bucket that is spent, `None` for an account-wide cooldown.
        bucket: Option<Bucket>,
        /// The limit that applies.
        kind: LimitKind,
    },
    /// The provider rejected the token; it is never chosen again.
    Invalid,
    /// The token's secret comes from a source and is not available: the
    /// source is fetching it, or its last fetch failed.
    Unavailable {
        /// Why, naming the source and never the secret.
        reason: String,
        /// When the pool fetches again after a failure, in local epoch milliseconds.
        retry_at_ms: Option<u64>,
    },
}

impl TokenStatus {
    /// Returns true for [`TokenStatus::Available`].
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available)
    }
}

impl fmt::Display for TokenStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Available => f.write_str("available"),
            Self::Invalid => f.write_str("invalid"),
            Self::Unavailable {
                reason,
                retry_at_ms: Some(at),
            } => write!(f, "unavailable until {}: {reason}", format_epoch_ms(*at)),
            Self::Unavailable {
                reason,
                retry_at_ms: None,
            } => write!(f, "unavailable: {reason}"),
            Self::RateLimited {
                until_ms,
                bucket,
                kind,
            } => {
                let what = match kind {
                    LimitKind::Primary => "rate-limited",
                    LimitKind::Secondary => "cooling down from a secondary limit",
                    LimitKind::Reserve => "down to its reserve",
                };
                match bucket {
                    Some(bucket) => {
                        write!(f, "{what} in {bucket} until {}", format_epoch_ms(*until_ms))
                    }
                    None => write!(f, "{what} until {}", format_epoch_ms(*until_ms)),
                }
            }
        }
    }
}

/// The limits of one bucket of a token's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSnapshot {
    /// The bucket.
    pub bucket: Bucket,
    /// The budget of one window, when known.
    pub limit: Option<u64>,
    /// The estimate of what is left, when known.
    pub remaining: Option<u64>,
    /// The end of the window in local epoch milliseconds, when known.
    pub reset_ms: Option<u64>,
    /// Reservations in flight.
    pub in_flight: u32,
    /// The provider applies no limit to this bucket.
    pub unlimited: bool,
}

/// One token of a pool, for display and queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSnapshot {
    /// The token's public id.
    pub id: TokenId,
    /// The account the token is charged to.
    pub account: String,
    /// The configured priority.
    pub priority: u32,
    /// The configured reserve.
    pub reserve: u64,
    /// The status in the provider's default bucket.
    pub status: TokenStatus,
    /// The reason the pool uses this token last, when there is one.
    pub degraded: Option<String>,
    /// Why the last status request for this token failed, when it did
    /// (the provider unreachable, an unexpected response).
    pub probe_error: Option<String>,
    /// Every bucket the pool has seen for this token's account.
    pub buckets: Vec<BucketSnapshot>,
}

impl TokenSnapshot {
    /// Returns the snapshot of `bucket`, if the pool has seen it.
    pub fn bucket(&self, bucket: &str) -> Option<&BucketSnapshot> {
        self.buckets.iter().find(|b| b.bucket.as_str() == bucket)
    }
}
