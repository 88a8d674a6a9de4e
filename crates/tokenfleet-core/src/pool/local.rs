//! The in-memory fast path of `acquire`: one pass under the pool's locks,
//! with no allocation and no await.

use std::sync::Arc;

use super::{candidate_of, keep_earliest, pending_wait, refresh, Attempt, TokenPool};
use crate::error::Error;
use crate::pool::lease::{Lease, LeaseKey};
use crate::store::{Admission, MemoryStore};
use crate::strategy::Candidate;
use crate::token::TokenId;
use crate::verdict::Bucket;

/// Buffers for one pass, kept in the pool state between calls.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    candidates: Vec<Candidate>,
    degraded: Vec<bool>,
    /// Tokens whose secret is due for a fetch.
    due: Vec<usize>,
}

impl TokenPool {
    pub(super) fn try_acquire_local(
        &self,
        memory: &MemoryStore,
        bucket: &Bucket,
        avoid: &[TokenId],
    ) -> Result<Attempt, Error> {
        let now_ms = self.inner.clock.now_ms();
        let mut guard = self.inner.state.lock();
        let bucket_index = guard.bucket_index(bucket);
        let state = &mut *guard;
        if state.tokens.is_empty() {
            return Err(self.no_tokens());
        }

        if state.sourced > 0 {
            state.scratch.due.clear();
            refresh::collect_due(&mut state.tokens, now_ms, &mut state.scratch.due);
            refresh::spawn_all(&self.inner, &state.scratch.due);
        }

        let mut budgets = memory.lock();
        let scratch = &mut state.scratch;
        scratch.candidates.clear();
        scratch.degraded.clear();
        let mut until_ms: Option<u64> = None;
        let mut busy = false;
        let mut valid = 0usize;
        let mut healthy = 0usize;
        let mut relearn = false;
        for (token_index, entry) in state.tokens.iter().enumerate() {
            if entry.invalid {
                continue;
            }
            valid += 1;
            if let Some(slot) = &entry.source {
                if let refresh::SecretState::Missing { retry_at_ms } = slot.state(now_ms) {
                    match retry_at_ms {
                        Some(at) => keep_earliest(&mut until_ms, at),
                        None => busy = true,
                    }
                    continue;
                }
            }
            if entry.account_pending {
                // Usable once a probe learns the account, which needs the
                // default bucket's budget back.
                match pending_wait(&budgets.view(entry.account, 0), now_ms) {
                    Some(at) => keep_earliest(&mut until_ms, at),
                    None => {
                        relearn = true;
                        busy = true;
                    }
                }
                continue;
            }
            let view = budgets.view(entry.account, bucket_index);
            let floor = entry.token.reserve();
            match view.admits(floor, now_ms) {
                Admission::Admit => {
                    scratch.candidates.push(candidate_of(
                        token_index,
                        &entry.token,
                        entry.last_used_ms,
                        &view,
                        now_ms,
                    ));
                    scratch.degraded.push(entry.degraded.is_some());
                    healthy += usize::from(entry.degraded.is_none());
                }
                Admission::Busy => busy = true,
                Admission::Exhausted(at) | Admission::CoolingDown(at) => {
                    keep_earliest(&mut until_ms, at);
                }
            }
        }
        if valid == 0 {
            return Err(self.all_invalid(&state.tokens));
        }
        if relearn {
            // The next pass of `acquire` probes the pending tokens again.
            self.inner
                .ready
                .store(false, std::sync::atomic::Ordering::Release);
        }
        if healthy > 0 && healthy < scratch.candidates.len() {
            // Degraded tokens are offered only when nothing else has budget.
            let mut position = 0;
            let degraded = &scratch.degraded;
            scratch.candidates.retain(|_| {
                let keep = !degraded[position];
                position += 1;
                keep
            });
        }
        if !avoid.is_empty() {
            let tokens = &state.tokens;
            let avoided = |c: &Candidate| avoid.contains(tokens[c.token_index].token.id());
            if scratch.candidates.iter().any(|c| !avoided(c)) {
                scratch.candidates.retain(|c| !avoided(c));
            }
        }
        if scratch.candidates.is_empty() {
            return Ok(Attempt::Wait { until_ms, busy });
        }

        // The budgets stay locked from the views to the reservation, so the
        // chosen candidate is still admissible.
        let chosen = self.choose(&scratch.candidates, now_ms)?;
        let token_index = scratch.candidates[chosen].token_index;
        let entry = &mut state.tokens[token_index];
        budgets.reserve(entry.account, bucket_index);
        drop(budgets);
        entry.last_used_ms = now_ms;

        let key = LeaseKey {
            token_index,
            account: entry.account,
            account_name: Arc::clone(&state.accounts[entry.account]),
            bucket: bucket_index,
            bucket_name: bucket.clone(),
        };
        let token = Arc::clone(&entry.token);
        drop(guard);
        Ok(Attempt::Leased(Lease::from_parts(
            Arc::clone(&self.inner),
            key,
            token,
        )))
    }
}
