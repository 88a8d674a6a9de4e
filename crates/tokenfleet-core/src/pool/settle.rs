//! Settlement: a response's verdict applied to the pool and its store.

use std::sync::Arc;

use super::lease::LeaseKey;
use super::refresh::Rejection;
use super::{millis, shift, Inner, UNKNOWN_RESET_WAIT_MS};
use crate::error::Error;
use crate::store::{BudgetKey, Settlement};
use crate::token::Token;
use crate::verdict::{Outcome, Verdict};

/// Applies a verdict's outcome to the pool. Used by leases.
pub(super) async fn apply_verdict(
    inner: &Inner,
    lease: &LeaseKey,
    sent_token: &Arc<Token>,
    verdict: &Verdict,
) -> Result<(), Error> {
    let now_ms = inner.clock.now_ms();
    let skew_ms = inner.observe_server_date(verdict.server_date_ms, now_ms);
    let observation = verdict.observation.as_ref();
    let observed_bucket = observation.and_then(|o| o.bucket.as_ref());
    let own_bucket = observed_bucket.is_none_or(|b| *b == lease.bucket_name);
    let local = observation.map(|o| inner.to_local(o, skew_ms, now_ms));
    let key = lease.key();

    let mut settlement = Settlement {
        sent: true,
        observation: if own_bucket { local } else { None },
        exhausted_until_ms: None,
        answered_without_limits: false,
        success: false,
    };
    match &verdict.outcome {
        Outcome::Answered => {
            settlement.success = true;
            settlement.answered_without_limits =
                observation.is_none() && inner.provider.headerless_means_unlimited();
        }
        Outcome::Forbidden => settlement.success = true,
        Outcome::ServerError => {}
        Outcome::PrimaryLimit { reset_ms } => {
            if own_bucket {
                // A reset that is not in the future (stale, zero, garbled
                // into the past) gives no time at which budget returns, so
                // it counts as unknown rather than "available now".
                let until = reset_ms
                    .map(|r| shift(r, skew_ms))
                    .or(local.map(|l| l.reset_ms))
                    .filter(|until| *until > now_ms)
                    .unwrap_or(now_ms.saturating_add(UNKNOWN_RESET_WAIT_MS));
                let until = inner.bound_wait(until, now_ms);
                settlement.exhausted_until_ms = Some(until);
            }
        }
        Outcome::SecondaryLimit { retry_after } => {
            let until = match (retry_after, local) {
                (Some(wait), _) => {
                    Some(inner.bound_wait(now_ms.saturating_add(millis(*wait)), now_ms))
                }
                (None, Some(l)) if l.remaining == 0 => Some(l.reset_ms.max(now_ms)),
                _ => None,
            };
            let until = store_call!(
                inner,
                cool_down_now(key, until, now_ms),
                cool_down(key, until, now_ms)
            );
            tracing::debug!(
                provider = inner.provider.kind(),
                account = %lease.account_name,
                wait_ms = until.saturating_sub(now_ms),
                "secondary rate limit, account cooling down"
            );
        }
        Outcome::InvalidToken => {
            // A rejected request spends no budget of the token's account.
            settlement.sent = false;
            let token = {
                let mut state = inner.state.lock();
                match state.tokens.get_mut(lease.token_index) {
                    Some(entry) if !entry.invalid => {
                        let current = Arc::clone(&entry.token);
                        let rejection = match entry.source.as_mut() {
                            Some(slot) => slot.reject(sent_token, &current, now_ms),
                            None => Rejection::Invalid,
                        };
                        match rejection {
                            Rejection::Ignore => None,
                            Rejection::Refetch => {
                                tracing::warn!(
                                    provider = inner.provider.kind(),
                                    token = %entry.token.id(),
                                    "token rejected; fetching a fresh secret from its source"
                                );
                                None
                            }
                            Rejection::Invalid => {
                                entry.invalid = true;
                                tracing::warn!(
                                    provider = inner.provider.kind(),
                                    token = %entry.token.id(),
                                    "token rejected as invalid; it is not used again"
                                );
                                Some(current)
                            }
                        }
                    }
                    _ => None,
                }
            };
            // Other processes sharing the store skip the token from now on.
            if let (Some(token), None) = (token, inner.store.as_memory()) {
                inner.store.mark_invalid(token.id(), now_ms).await?;
            }
        }
    }
    store_call!(
        inner,
        settle_now(key, &settlement, now_ms),
        settle(key, &settlement, now_ms)
    );

    if let (Some(local), Some(bucket), false) = (local, observed_bucket, own_bucket) {
        let bucket_index = inner.bucket_index(bucket);
        let other = BudgetKey {
            bucket: bucket_index,
            bucket_name: bucket.as_str(),
            ..key
        };
        store_call!(
            inner,
            observe_now(other, &local),
            observe(other, &local, now_ms)
        );
    }
    inner.wake_waiters();
    Ok(())
}
