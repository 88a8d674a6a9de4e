//! Status requests before a token's first use.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};

use super::{Inner, TokenPool};
use crate::error::Error;
use crate::provider::{Probe, ProbeError};
use crate::status::TokenSnapshot;
use crate::store::BudgetKey;
use crate::token::Token;

/// How many status requests run at once.
const PROBE_CONCURRENCY: usize = 16;

/// How long one status request may take, in real time, before the pool
/// gives up on it and learns the budget from responses.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl TokenPool {
    /// Reads the limits of every token that has not been probed yet, once:
    /// concurrent callers wait for the same round of status requests.
    pub(super) async fn ensure_ready(&self) {
        if self.inner.ready.load(Ordering::Acquire) {
            return;
        }
        let _gate = self.inner.probe_gate.lock().await;
        if self.inner.ready.load(Ordering::Acquire) {
            return;
        }
        let pending: Vec<(usize, Arc<Token>, bool)> = {
            let state = self.inner.state.lock();
            state
                .tokens
                .iter()
                .enumerate()
                .filter(|(_, e)| (!e.probed || e.account_pending) && !e.invalid)
                .filter(|(_, e)| e.source.as_ref().is_none_or(|s| s.has_secret()))
                .map(|(i, e)| (i, Arc::clone(&e.token), !e.account_declared))
                .collect()
        };
        if let Err(error) = self.probe_tokens(&pending).await {
            tracing::warn!(%error, "status requests failed to update the store");
        }
        self.inner.ready.store(true, Ordering::Release);
    }

    /// Reads the current limits of every valid token from the provider's
    /// status endpoint (free on GitHub), then returns every token's snapshot.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Store`] when a shared store fails.
    pub async fn refresh_limits(&self) -> Result<Vec<TokenSnapshot>, Error> {
        if !self.inner.ready.load(Ordering::Acquire) {
            // The first round also learns each token's account.
            self.ensure_ready().await;
            return Ok(self.tokens().await);
        }
        let _gate = self.inner.probe_gate.lock().await;
        let all: Vec<(usize, Arc<Token>, bool)> = {
            let state = self.inner.state.lock();
            state
                .tokens
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.invalid)
                .filter(|(_, e)| e.source.as_ref().is_none_or(|s| s.has_secret()))
                .map(|(i, e)| (i, Arc::clone(&e.token), false))
                .collect()
        };
        self.probe_tokens(&all).await?;
        drop(_gate);
        Ok(self.tokens().await)
    }

    /// Probes each `(index, token, learn_account)`; the flag is true for a
    /// first probe of a token whose account was not declared.
    async fn probe_tokens(&self, tokens: &[(usize, Arc<Token>, bool)]) -> Result<(), Error> {
        let inner = &self.inner;
        let Some(transport) = inner.transport.as_deref() else {
            let mut state = inner.state.lock();
            for (index, _, _) in tokens {
                state.tokens[*index].probed = true;
            }
            return Ok(());
        };
        let owned: Vec<(usize, Arc<Token>, bool)> = tokens.to_vec();
        let probes = owned
            .into_iter()
            .map(|(index, token, learn_account)| async move {
                let probe = inner.provider.probe(&token, transport, learn_account);
                // A provider plugin that panics or never returns fails only
                // this status request; the pool learns from responses instead.
                let guarded = AssertUnwindSafe(probe).catch_unwind();
                let result = match tokio::time::timeout(PROBE_TIMEOUT, guarded).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err(ProbeError::Failed(format!(
                        "the {} provider panicked while reading the token's limits",
                        inner.provider.kind()
                    ))),
                    Err(_) => Err(ProbeError::Failed(format!(
                        "the {} provider's status request did not finish within {} s",
                        inner.provider.kind(),
                        PROBE_TIMEOUT.as_secs()
                    ))),
                };
                (index, result)
            });
        // Bounded, so a pool of a thousand tokens does not open a thousand
        // connections to one host at start.
        let results: Vec<_> = futures::stream::iter(probes)
            .buffer_unordered(PROBE_CONCURRENCY)
            .collect()
            .await;
        for (index, result) in &results {
            apply_probe_result(inner, *index, result);
            match result {
                Ok(probe) => apply_probe_limits(inner, *index, probe).await?,
                Err(ProbeError::InvalidToken(_)) if inner.store.as_memory().is_none() => {
                    // Other processes sharing the store skip the token too.
                    let token = Arc::clone(&inner.state.lock().tokens[*index].token);
                    let now_ms = inner.clock.now_ms();
                    inner.store.mark_invalid(token.id(), now_ms).await?;
                }
                Err(_) => {}
            }
        }
        inner.wake_waiters();
        Ok(())
    }
}

/// Stores the limits a probe read, under the token's (possibly just learned) account.
async fn apply_probe_limits(inner: &Inner, token_index: usize, probe: &Probe) -> Result<(), Error> {
    let now_ms = inner.clock.now_ms();
    let skew_ms = inner.observe_server_date(probe.server_date_ms, now_ms);
    let (account, account_name, default_bucket) = {
        let state = inner.state.lock();
        let account = state.tokens[token_index].account;
        (account, Arc::clone(&state.accounts[account]), 0usize)
    };
    if probe.unlimited {
        let key = BudgetKey {
            account,
            account_name: &account_name,
            bucket: default_bucket,
            bucket_name: inner.default_bucket.as_str(),
        };
        store_call!(inner, mark_unlimited_now(key), mark_unlimited(key));
    }
    for observation in &probe.observations {
        let bucket = observation
            .bucket
            .clone()
            .unwrap_or_else(|| inner.default_bucket.clone());
        let bucket_index = inner.bucket_index(&bucket);
        let key = BudgetKey {
            account,
            account_name: &account_name,
            bucket: bucket_index,
            bucket_name: bucket.as_str(),
        };
        let local = inner.to_local(observation, skew_ms, now_ms);
        store_call!(
            inner,
            observe_now(key, &local),
            observe(key, &local, now_ms)
        );
    }
    Ok(())
}

/// Result of probing one token, applied under the pool lock.
fn apply_probe_result(inner: &Inner, token_index: usize, result: &Result<Probe, ProbeError>) {
    let mut state = inner.state.lock();
    let Some(entry) = state.tokens.get_mut(token_index) else {
        return;
    };
    entry.probed = true;
    entry.probe_error = match result {
        Err(ProbeError::Failed(message)) => Some(message.clone()),
        _ => None,
    };
    let id = entry.token.id().clone();
    match result {
        Ok(probe) => {
            entry.account_pending =
                probe.account_deferred && probe.account.is_none() && !entry.account_declared;
            if entry.account_pending {
                tracing::debug!(
                    provider = inner.provider.kind(),
                    token = %id,
                    "account not learned yet; the token waits for its budget to reset"
                );
            }
            if let Some(reason) = &probe.degraded {
                tracing::warn!(provider = inner.provider.kind(), token = %id, reason = %reason, "token degraded; it is used last");
                entry.degraded = Some(reason.clone());
            }
            if let (Some(account), false) = (&probe.account, entry.account_declared) {
                let account = account.clone();
                let index = state.account_index(&account);
                state.tokens[token_index].account = index;
            }
        }
        Err(ProbeError::InvalidToken(reason)) => {
            entry.invalid = true;
            tracing::warn!(provider = inner.provider.kind(), token = %id, reason = %reason, "token rejected as invalid at start; it is not used");
        }
        Err(ProbeError::Unsupported) => {}
        Err(error) => {
            tracing::warn!(provider = inner.provider.kind(), token = %id, error = %error, "status request failed; the budget is learned from responses");
        }
    }
}
