//! The queries GitFleet users know: tokens with limits and statuses,
//! available count, earliest reset.

use std::sync::Arc;

use super::TokenPool;
use crate::status::{BucketSnapshot, LimitKind, TokenSnapshot, TokenStatus};
use crate::store::{BudgetKey, BudgetView, Knowledge};
use crate::verdict::Bucket;

impl TokenPool {
    /// Returns every token with its account, status and the limits of every
    /// bucket seen so far.
    pub async fn tokens(&self) -> Vec<TokenSnapshot> {
        struct Entry {
            id: crate::token::TokenId,
            account: usize,
            account_name: Arc<str>,
            priority: u32,
            reserve: u64,
            invalid: bool,
            degraded: Option<String>,
            probe_error: Option<String>,
            unavailable: Option<TokenStatus>,
        }
        let now_ms = self.inner.clock.now_ms();
        let (entries, buckets) = {
            let state = self.inner.state.lock();
            let entries: Vec<Entry> = state
                .tokens
                .iter()
                .map(|e| Entry {
                    id: e.token.id().clone(),
                    account: e.account,
                    account_name: Arc::clone(&state.accounts[e.account]),
                    priority: e.token.priority(),
                    reserve: e.token.reserve(),
                    invalid: e.invalid,
                    degraded: e.degraded.clone(),
                    probe_error: e.probe_error.clone(),
                    unavailable: e.source.as_ref().and_then(|slot| {
                        let missing = matches!(
                            slot.state(now_ms),
                            super::refresh::SecretState::Missing { .. }
                        );
                        missing.then(|| TokenStatus::Unavailable {
                            reason: slot.reason(),
                            retry_at_ms: slot.retry_at_ms(),
                        })
                    }),
                })
                .collect();
            (entries, state.buckets.clone())
        };

        let mut keys = Vec::with_capacity(entries.len() * buckets.len());
        for entry in &entries {
            for (bucket_index, bucket) in buckets.iter().enumerate() {
                keys.push(BudgetKey {
                    account: entry.account,
                    account_name: &entry.account_name,
                    bucket: bucket_index,
                    bucket_name: bucket.as_str(),
                });
            }
        }
        let mut views = Vec::with_capacity(keys.len());
        let viewed = match self.inner.store.as_memory() {
            Some(memory) => {
                memory.view_now(&keys, &mut views);
                Ok(())
            }
            None => self.inner.store.view(&keys, &mut views).await,
        };
        if let Err(error) = viewed {
            tracing::warn!(%error, "failed to read token states");
        }

        entries
            .into_iter()
            .enumerate()
            .map(|(position, entry)| {
                let start = position * buckets.len();
                let own = views.get(start..start + buckets.len()).unwrap_or(&[]);
                let status = match (own.first(), entry.unavailable) {
                    (_, Some(unavailable)) if !entry.invalid => unavailable,
                    (Some(view), _) => {
                        status_of(entry.invalid, entry.reserve, view, &buckets[0], now_ms)
                    }
                    (None, _) if entry.invalid => TokenStatus::Invalid,
                    (None, _) => TokenStatus::Available,
                };
                let bucket_snapshots = own
                    .iter()
                    .zip(&buckets)
                    .filter(|(view, _)| view.knowledge != Knowledge::Unknown)
                    .map(|(view, bucket)| bucket_snapshot(bucket, view.knowledge, view.in_flight))
                    .collect();
                TokenSnapshot {
                    id: entry.id,
                    account: entry.account_name.to_string(),
                    priority: entry.priority,
                    reserve: entry.reserve,
                    status,
                    degraded: entry.degraded,
                    probe_error: entry.probe_error,
                    buckets: bucket_snapshots,
                }
            })
            .collect()
    }

    /// Returns how many tokens are available in the provider's default bucket.
    pub async fn available_count(&self) -> usize {
        self.tokens()
            .await
            .iter()
            .filter(|t| t.status.is_available())
            .count()
    }

    /// Returns the earliest time a rate-limited token gets budget back, in
    /// local epoch milliseconds, or `None` when no token is rate-limited.
    pub async fn earliest_reset_ms(&self) -> Option<u64> {
        self.tokens()
            .await
            .iter()
            .filter_map(|t| match t.status {
                TokenStatus::RateLimited { until_ms, .. } => Some(until_ms),
                _ => None,
            })
            .min()
    }
}

fn bucket_snapshot(bucket: &Bucket, knowledge: Knowledge, in_flight: u32) -> BucketSnapshot {
    match knowledge {
        Knowledge::Known {
            limit,
            remaining,
            reset_ms,
        } => BucketSnapshot {
            bucket: bucket.clone(),
            limit: Some(limit),
            remaining: Some(remaining),
            reset_ms: Some(reset_ms),
            in_flight,
            unlimited: false,
        },
        Knowledge::Unlimited | Knowledge::Unknown => BucketSnapshot {
            bucket: bucket.clone(),
            limit: None,
            remaining: None,
            reset_ms: None,
            in_flight,
            unlimited: knowledge == Knowledge::Unlimited,
        },
    }
}

/// Returns the status of a token from the view of its default bucket.
pub(super) fn status_of(
    invalid: bool,
    reserve: u64,
    view: &BudgetView,
    bucket: &Bucket,
    now_ms: u64,
) -> TokenStatus {
    if invalid {
        return TokenStatus::Invalid;
    }
    if view.cooldown_until_ms > now_ms {
        return TokenStatus::RateLimited {
            until_ms: view.cooldown_until_ms,
            bucket: None,
            kind: LimitKind::Secondary,
        };
    }
    if let Knowledge::Known {
        remaining,
        reset_ms,
        ..
    } = view.knowledge
    {
        if now_ms < reset_ms {
            if remaining == 0 {
                return TokenStatus::RateLimited {
                    until_ms: reset_ms,
                    bucket: Some(bucket.clone()),
                    kind: LimitKind::Primary,
                };
            }
            if reserve > 0 && remaining <= reserve {
                return TokenStatus::RateLimited {
                    until_ms: reset_ms,
                    bucket: Some(bucket.clone()),
                    kind: LimitKind::Reserve,
                };
            }
        }
    }
    TokenStatus::Available
}
