//! A reservation of one unit of budget on one token.

use std::fmt;
use std::sync::Arc;

use super::settle::apply_verdict;
use super::{Inner, Row};
use crate::error::Error;
use crate::store::{BudgetKey, Settlement};
use crate::token::Token;
use crate::verdict::{Bucket, Verdict};

/// Identifies the budget a lease reserved.
#[derive(Debug, Clone)]
pub(super) struct LeaseKey {
    pub(super) token_index: usize,
    pub(super) account: usize,
    pub(super) account_name: Arc<str>,
    pub(super) bucket: usize,
    pub(super) bucket_name: Bucket,
}

impl LeaseKey {
    pub(super) fn key(&self) -> BudgetKey<'_> {
        BudgetKey {
            account: self.account,
            account_name: &self.account_name,
            bucket: self.bucket,
            bucket_name: self.bucket_name.as_str(),
        }
    }
}

/// One unit of budget reserved on a token by [`TokenPool::acquire`](super::TokenPool::acquire).
///
/// Complete it with the response's verdict. A lease dropped without
/// completing gives its unit back if [`Lease::mark_sent`] was not called,
/// and keeps it spent otherwise, until the next response for the account
/// states the real budget.
pub struct Lease {
    inner: Arc<Inner>,
    key: LeaseKey,
    token: Arc<Token>,
    sent: bool,
    settled: bool,
}

impl Lease {
    pub(super) fn new(inner: Arc<Inner>, row: &Row, bucket: usize, bucket_name: Bucket) -> Self {
        Self::from_parts(
            inner,
            LeaseKey {
                token_index: row.token_index,
                account: row.account,
                account_name: Arc::clone(&row.account_name),
                bucket,
                bucket_name,
            },
            Arc::clone(&row.token),
        )
    }

    pub(super) fn from_parts(inner: Arc<Inner>, key: LeaseKey, token: Arc<Token>) -> Self {
        Self {
            inner,
            key,
            token,
            sent: false,
            settled: false,
        }
    }

    /// Returns the token to put on the request.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// Returns the bucket the unit was reserved in.
    pub fn bucket(&self) -> &Bucket {
        &self.key.bucket_name
    }

    /// Returns the account the token is charged to.
    pub fn account(&self) -> &str {
        &self.key.account_name
    }

    /// Records that the request is about to be sent, so a drop keeps the
    /// unit spent.
    pub fn mark_sent(&mut self) {
        self.sent = true;
    }

    /// Ends the lease with the provider's verdict on the response: the
    /// observed limits replace the estimate, and limits or an invalid token
    /// change the token's status.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Store`] when a shared store fails.
    pub async fn complete(mut self, verdict: &Verdict) -> Result<(), Error> {
        self.settled = true;
        apply_verdict(&self.inner, &self.key, &self.token, verdict).await
    }

    /// Ends the lease without a response: the unit is given back unless
    /// the request was sent.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Store`] when a shared store fails.
    pub async fn release(mut self) -> Result<(), Error> {
        self.settled = true;
        let settlement = self.unanswered();
        let now_ms = self.inner.clock.now_ms();
        match self.inner.store.as_memory() {
            Some(memory) => memory.settle_now(self.key.key(), &settlement, now_ms),
            None => {
                self.inner
                    .store
                    .settle(self.key.key(), &settlement, now_ms)
                    .await?
            }
        }
        self.inner.wake_waiters();
        Ok(())
    }

    fn unanswered(&self) -> Settlement {
        Settlement {
            sent: self.sent,
            observation: None,
            exhausted_until_ms: None,
            answered_without_limits: false,
            success: false,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let settlement = self.unanswered();
        let now_ms = self.inner.clock.now_ms();
        if let Some(memory) = self.inner.store.as_memory() {
            memory.settle_now(self.key.key(), &settlement, now_ms);
            self.inner.wake_waiters();
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                account = %self.key.account_name,
                "lease dropped outside a runtime; the shared store keeps its reservation until it expires"
            );
            return;
        };
        let inner = Arc::clone(&self.inner);
        let key = self.key.clone();
        runtime.spawn(async move {
            if let Err(error) = inner.store.settle(key.key(), &settlement, now_ms).await {
                tracing::warn!(%error, "failed to release a dropped lease");
            }
            inner.wake_waiters();
        });
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("token", self.token.id())
            .field("account", &self.key.account_name)
            .field("bucket", &self.key.bucket_name)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}
