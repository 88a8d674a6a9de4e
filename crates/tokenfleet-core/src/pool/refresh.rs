//! Sourced tokens: fetching a secret before first use and ahead of expiry,
//! in background tasks, so other tokens keep serving meanwhile.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::FutureExt;

use super::{Inner, TokenEntry};
use crate::source::{SourceError, TokenSource};
use crate::token::Token;

/// How long before expiry a secret is fetched again.
const REFRESH_AHEAD_MS: u64 = 5 * 60_000;

/// How long before expiry a secret stops being handed out, so that a
/// request sent with it still arrives before it expires.
const EXPIRY_MARGIN_MS: u64 = 60_000;

/// The first wait after a failed fetch; it doubles up to the maximum.
const RETRY_BASE_MS: u64 = 30_000;

/// How long one fetch may take, in real time.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The maximum wait between failed fetches.
const RETRY_MAX_MS: u64 = 10 * 60_000;

/// Two rejections of a sourced token within this long make it invalid; a
/// single one fetches a fresh secret.
const REJECTION_WINDOW_MS: u64 = 10 * 60_000;

/// The source of one token and the state of its secret.
#[derive(Debug)]
pub(super) struct SourceSlot {
    source: Arc<dyn TokenSource>,
    /// When the current secret expires, in local epoch milliseconds:
    /// 0 before the first fetch, `u64::MAX` for a secret that does not expire.
    expires_at_ms: u64,
    fetching: bool,
    failures: u32,
    retry_at_ms: u64,
    last_error: Option<String>,
    /// The last secret the provider rejected, and when.
    rejected: Option<(Arc<Token>, u64)>,
    /// How long the current secret lives from its fetch, in milliseconds.
    lifetime_ms: u64,
}

/// The consequence of a provider's rejection of a sourced token's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// The rejected secret was already rejected or replaced.
    Ignore,
    /// A fresh secret is fetched.
    Refetch,
    /// The token counts as invalid.
    Invalid,
}

/// Whether a token's secret may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SecretState {
    Ready,
    /// Not fetched yet, expired, or failed. A fetch in flight (`None`)
    /// settles soon; after a failure the next fetch is at `retry_at_ms`.
    Missing {
        retry_at_ms: Option<u64>,
    },
}

impl SourceSlot {
    pub(super) fn new(source: Arc<dyn TokenSource>) -> Self {
        Self {
            source,
            expires_at_ms: 0,
            fetching: false,
            failures: 0,
            retry_at_ms: 0,
            last_error: None,
            rejected: None,
            lifetime_ms: u64::MAX,
        }
    }

    /// Returns how long before expiry the secret stops being handed out.
    /// The margins shrink for a short-lived secret, so that it is handed
    /// out for at least half its life before it counts as expiring.
    fn expiry_margin_ms(&self) -> u64 {
        EXPIRY_MARGIN_MS.min(self.lifetime_ms / 4)
    }

    fn refresh_ahead_ms(&self) -> u64 {
        REFRESH_AHEAD_MS.min(self.lifetime_ms / 2)
    }

    pub(super) fn state(&self, now_ms: u64) -> SecretState {
        if self.expires_at_ms > now_ms.saturating_add(self.expiry_margin_ms()) {
            return SecretState::Ready;
        }
        if self.fetching || self.failures == 0 {
            SecretState::Missing { retry_at_ms: None }
        } else {
            SecretState::Missing {
                retry_at_ms: Some(self.retry_at_ms),
            }
        }
    }

    /// Returns true when a secret has been fetched and not given up.
    pub(super) fn has_secret(&self) -> bool {
        self.expires_at_ms > 0
    }

    fn due(&self, now_ms: u64) -> bool {
        !self.fetching
            && now_ms >= self.retry_at_ms
            && self.expires_at_ms <= now_ms.saturating_add(self.refresh_ahead_ms())
    }

    /// Describes why the secret is missing, for the token's status.
    pub(super) fn reason(&self) -> String {
        match &self.last_error {
            Some(error) => format!("fetching its secret failed: {error}"),
            None => format!("fetching its secret from {}", self.source.describe()),
        }
    }

    pub(super) fn retry_at_ms(&self) -> Option<u64> {
        (self.failures > 0 && !self.fetching).then_some(self.retry_at_ms)
    }

    /// Decides what a rejection of `sent` means when `current` is the
    /// token's secret now. Rejections of a secret already rejected or
    /// already replaced change nothing. The first rejection of the current
    /// secret schedules a fresh one; a rejection of that fresh secret
    /// within [`REJECTION_WINDOW_MS`] makes the token invalid.
    pub(super) fn reject(
        &mut self,
        sent: &Arc<Token>,
        current: &Arc<Token>,
        now_ms: u64,
    ) -> Rejection {
        let already = matches!(&self.rejected, Some((token, _)) if Arc::ptr_eq(token, sent));
        if already || !Arc::ptr_eq(sent, current) {
            return Rejection::Ignore;
        }
        let recent = matches!(
            &self.rejected,
            Some((_, at)) if now_ms.saturating_sub(*at) < REJECTION_WINDOW_MS
        );
        self.rejected = Some((Arc::clone(sent), now_ms));
        if recent {
            return Rejection::Invalid;
        }
        self.expires_at_ms = 0;
        self.retry_at_ms = 0;
        self.failures = 0;
        Rejection::Refetch
    }
}

/// Returns the state of a token's secret; fixed secrets are always ready.
pub(super) fn secret_state(entry: &TokenEntry, now_ms: u64) -> SecretState {
    match &entry.source {
        Some(slot) => slot.state(now_ms),
        None => SecretState::Ready,
    }
}

/// Marks every sourced token whose secret is due as fetching and pushes
/// its index to `due`.
pub(super) fn collect_due(tokens: &mut [TokenEntry], now_ms: u64, due: &mut Vec<usize>) {
    for (index, entry) in tokens.iter_mut().enumerate() {
        if entry.invalid {
            continue;
        }
        if let Some(slot) = entry.source.as_mut() {
            if slot.due(now_ms) {
                slot.fetching = true;
                due.push(index);
            }
        }
    }
}

/// Starts one background fetch per index.
pub(super) fn spawn_all(inner: &Arc<Inner>, due: &[usize]) {
    for &index in due {
        let inner = Arc::clone(inner);
        tokio::spawn(async move { fetch(&inner, index).await });
    }
}

async fn fetch(inner: &Inner, index: usize) {
    let source = {
        let state = inner.state.lock();
        match state.tokens.get(index).and_then(|e| e.source.as_ref()) {
            Some(slot) => Arc::clone(&slot.source),
            None => return,
        }
    };
    let now_ms = inner.clock.now_ms();
    let result = match inner.transport.as_deref() {
        Some(transport) => {
            // A source that panics or never returns fails this fetch only,
            // so the token does not stay "fetching" forever.
            let guarded = AssertUnwindSafe(source.fetch(transport, now_ms)).catch_unwind();
            match tokio::time::timeout(FETCH_TIMEOUT, guarded).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(SourceError {
                    source_name: source.describe(),
                    message: "the source panicked while fetching".to_owned(),
                }),
                Err(_) => Err(SourceError {
                    source_name: source.describe(),
                    message: format!(
                        "the fetch did not finish within {} s",
                        FETCH_TIMEOUT.as_secs()
                    ),
                }),
            }
        }
        None => Err(SourceError {
            source_name: source.describe(),
            message: "the pool has no transport to fetch with; build it with a transport"
                .to_owned(),
        }),
    };
    let now_ms = inner.clock.now_ms();

    {
        let mut state = inner.state.lock();
        let Some(entry) = state.tokens.get_mut(index) else {
            return;
        };
        let id = entry.token.id().clone();
        let Some(slot) = entry.source.as_mut() else {
            return;
        };
        slot.fetching = false;
        // A secret that has expired on arrival (an expiry in seconds read
        // as milliseconds, a source clock far behind) counts as a failure,
        // so the pool backs off instead of fetching in a loop.
        let result = result.and_then(|fetched| match fetched.expires_at_ms {
            Some(at) if at <= now_ms => Err(SourceError {
                source_name: slot.source.describe(),
                message: format!(
                    "the fetched secret expired {} ms ago; the source must return expiry times \
                     in epoch milliseconds",
                    now_ms - at
                ),
            }),
            _ => Ok(fetched),
        });
        match result {
            Ok(fetched) => {
                let first = slot.expires_at_ms == 0;
                slot.expires_at_ms = fetched.expires_at_ms.unwrap_or(u64::MAX).max(1);
                slot.lifetime_ms = slot.expires_at_ms.saturating_sub(now_ms);
                slot.failures = 0;
                slot.retry_at_ms = 0;
                slot.last_error = None;
                let token = entry.token.with_secret(fetched.secret);
                entry.token = Arc::new(token);
                tracing::debug!(
                    provider = inner.provider.kind(),
                    token = %id,
                    expires_at_ms = slot.expires_at_ms,
                    "fetched a token secret"
                );
                if let Some(account) = fetched.account {
                    let account_index = state.account_index(&account);
                    let entry = &mut state.tokens[index];
                    entry.account = account_index;
                    entry.account_declared = true;
                }
                if first {
                    // The new secret's budget is read before its first use.
                    state.tokens[index].probed = false;
                    inner.ready.store(false, Ordering::Release);
                }
            }
            Err(error) => {
                slot.failures = slot.failures.saturating_add(1);
                let wait = RETRY_BASE_MS
                    .saturating_mul(1 << slot.failures.saturating_sub(1).min(16))
                    .min(RETRY_MAX_MS);
                slot.retry_at_ms = now_ms.saturating_add(wait);
                slot.last_error = Some(error.to_string());
                tracing::warn!(
                    provider = inner.provider.kind(),
                    token = %id,
                    error = %error,
                    retry_in_ms = wait,
                    "fetching a token secret failed; other tokens serve meanwhile"
                );
            }
        }
    }
    inner.wake_waiters();
}
