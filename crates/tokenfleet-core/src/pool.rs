//! The token pool: one provider's tokens, a strategy and a state store.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Exhausted};
use crate::provider::{Probe, ProbeError, Provider, Transport};
use crate::status::{LimitKind, TokenStatus};
use crate::store::{
    Admission, BudgetKey, BudgetView, Knowledge, LocalObservation, MemoryStore, Settlement,
    StateStore,
};
use crate::strategy::{Candidate, ChoiceContext, RotationStrategy};
use crate::token::Token;
use crate::verdict::{Bucket, Observation, Outcome, Verdict};

/// Calls the in-memory store directly, or the store trait with `.await`.
macro_rules! store_call {
    ($inner:expr, $sync:ident($($sync_args:expr),*), $async:ident($($async_args:expr),*)) => {
        match $inner.store.as_memory() {
            Some(memory) => memory.$sync($($sync_args),*),
            None => $inner.store.$async($($async_args),*).await?,
        }
    };
}

mod lease;
mod local;
mod probe;
mod snapshot;

pub use lease::Lease;

/// How long a wait for a reset lasts past the reset itself, so that the
/// first request of the new window does not arrive a moment early.
const RESET_MARGIN_MS: u64 = 500;

/// How long a task whose candidates are all busy waits before looking again
/// when no settlement wakes it.
const BUSY_RECHECK: Duration = Duration::from_millis(200);

/// How far a new `Date`-based skew measurement must move from the current
/// one to replace it. `Date` has one-second resolution, so smaller moves
/// are noise.
const SKEW_TOLERANCE_MS: i64 = 2_000;

/// How long a token waits after a primary limit whose reset time is unknown.
const UNKNOWN_RESET_WAIT_MS: u64 = 60_000;

/// The pool's wait policy when no token has budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Fail at once with [`Error::Exhausted`].
    #[default]
    Fail,
    /// Wait for the earliest reset when it comes within this long, else fail.
    UpTo(Duration),
}

/// A pool of one provider's tokens.
///
/// Cloning is cheap and every clone shares the same state. Tasks call
/// [`TokenPool::acquire`] concurrently; each lease reserves one unit of its
/// account's budget, and the reservations never add up past a known
/// budget.
#[derive(Debug, Clone)]
pub struct TokenPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: Arc<dyn Provider>,
    strategy: Arc<dyn RotationStrategy>,
    clock: Arc<dyn Clock>,
    transport: Option<Arc<dyn Transport>>,
    store: Arc<dyn StateStore>,
    wait: WaitPolicy,
    default_bucket: Bucket,
    state: Mutex<PoolState>,
    ready: AtomicBool,
    probe_gate: tokio::sync::Mutex<()>,
    settled: Notify,
    /// Tasks registered on `settled`; settling skips `Notify` when zero.
    waiters: AtomicUsize,
    random: AtomicU64,
    /// Server time minus local time in milliseconds; `i64::MIN` until measured.
    skew_ms: AtomicI64,
}

#[derive(Debug)]
struct PoolState {
    tokens: Vec<TokenEntry>,
    accounts: Vec<Arc<str>>,
    buckets: Vec<Bucket>,
    /// Buffers reused by every `acquire`, so the in-memory path does not allocate.
    scratch: local::Scratch,
}

#[derive(Debug)]
struct TokenEntry {
    token: Arc<Token>,
    account: usize,
    account_declared: bool,
    invalid: bool,
    degraded: Option<String>,
    probed: bool,
    last_used_ms: u64,
}

/// One token as `acquire` considers it, copied out of the pool state.
#[derive(Debug, Clone)]
struct Row {
    token_index: usize,
    token: Arc<Token>,
    account: usize,
    account_name: Arc<str>,
    degraded: bool,
    last_used_ms: u64,
}

impl PoolState {
    fn bucket_index(&mut self, bucket: &Bucket) -> usize {
        match self.buckets.iter().position(|b| b == bucket) {
            Some(index) => index,
            None => {
                self.buckets.push(bucket.clone());
                self.buckets.len() - 1
            }
        }
    }

    fn account_index(&mut self, name: &str) -> usize {
        match self.accounts.iter().position(|a| &**a == name) {
            Some(index) => index,
            None => {
                self.accounts.push(Arc::from(name));
                self.accounts.len() - 1
            }
        }
    }

    fn push_token(&mut self, token: Token) {
        let declared = token.account().map(str::to_owned);
        let account = match &declared {
            Some(name) => self.account_index(name),
            // Until the provider names the account, the token is its own.
            None => self.account_index(&format!("token:{}", token.id())),
        };
        self.tokens.push(TokenEntry {
            token: Arc::new(token),
            account,
            account_declared: declared.is_some(),
            invalid: false,
            degraded: None,
            probed: false,
            last_used_ms: 0,
        });
    }
}

/// Builds a [`TokenPool`].
#[derive(Debug)]
pub struct TokenPoolBuilder {
    provider: Arc<dyn Provider>,
    tokens: Vec<Token>,
    strategy: Option<Arc<dyn RotationStrategy>>,
    clock: Arc<dyn Clock>,
    transport: Option<Arc<dyn Transport>>,
    store: Option<Arc<dyn StateStore>>,
    wait: WaitPolicy,
    seed: Option<u64>,
}

impl TokenPoolBuilder {
    /// Adds a token.
    pub fn token(mut self, token: Token) -> Self {
        self.tokens.push(token);
        self
    }

    /// Adds tokens.
    pub fn tokens(mut self, tokens: impl IntoIterator<Item = Token>) -> Self {
        self.tokens.extend(tokens);
        self
    }

    /// Sets the rotation strategy. Without one, `build` fails.
    pub fn strategy(mut self, strategy: Arc<dyn RotationStrategy>) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Sets the clock; the system clock by default.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the transport for status requests. Without one the pool learns
    /// budgets from responses only.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Sets the state store; an in-memory store by default.
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets what `acquire` does when no token has budget.
    pub fn wait(mut self, wait: WaitPolicy) -> Self {
        self.wait = wait;
        self
    }

    /// Fixes the seed of the random words strategies use to break ties.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Builds the pool.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Strategy`] when no strategy was set.
    pub fn build(self) -> Result<TokenPool, Error> {
        let strategy = self.strategy.ok_or_else(|| Error::Strategy {
            strategy: "(none)".to_owned(),
            message: "no rotation strategy was set; call `strategy` on the builder".to_owned(),
        })?;
        let default_bucket = self.provider.default_bucket();
        let mut state = PoolState {
            tokens: Vec::with_capacity(self.tokens.len()),
            accounts: Vec::new(),
            buckets: vec![default_bucket.clone()],
            scratch: local::Scratch::default(),
        };
        for token in self.tokens {
            state.push_token(token);
        }
        let inner = Inner {
            provider: self.provider,
            strategy,
            clock: self.clock,
            transport: self.transport,
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            wait: self.wait,
            default_bucket,
            state: Mutex::new(state),
            ready: AtomicBool::new(false),
            probe_gate: tokio::sync::Mutex::new(()),
            settled: Notify::new(),
            waiters: AtomicUsize::new(0),
            random: AtomicU64::new(self.seed.unwrap_or_else(rand::random)),
            skew_ms: AtomicI64::new(i64::MIN),
        };
        Ok(TokenPool {
            inner: Arc::new(inner),
        })
    }
}

/// The result of one pass of `acquire`.
enum Attempt {
    Leased(Lease),
    /// No candidate now. `until_ms` is the earliest time a token gets budget
    /// back; `busy` means a request in flight may free one sooner.
    Wait {
        until_ms: Option<u64>,
        busy: bool,
    },
}

impl TokenPool {
    /// Starts building a pool for `provider`.
    pub fn builder(provider: Arc<dyn Provider>) -> TokenPoolBuilder {
        TokenPoolBuilder {
            provider,
            tokens: Vec::new(),
            strategy: None,
            clock: Arc::new(SystemClock),
            transport: None,
            store: None,
            wait: WaitPolicy::Fail,
            seed: None,
        }
    }

    /// Returns the provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.inner.provider
    }

    /// Returns the rotation strategy.
    pub fn strategy(&self) -> &Arc<dyn RotationStrategy> {
        &self.inner.strategy
    }

    /// Returns the clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Returns the wait policy.
    pub fn wait_policy(&self) -> WaitPolicy {
        self.inner.wait
    }

    /// Returns the number of tokens, valid or not.
    pub fn len(&self) -> usize {
        self.inner.state.lock().tokens.len()
    }

    /// Returns true when the pool has no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a token at run time. It is probed before its first use.
    pub fn add_token(&self, token: Token) {
        self.inner.state.lock().push_token(token);
        self.inner.ready.store(false, Ordering::Release);
        self.inner.wake_waiters();
    }

    /// Reserves one unit of budget in `bucket` on the token the strategy
    /// chooses.
    ///
    /// # Errors
    ///
    /// [`Error::Exhausted`] when no token has budget and the wait policy
    /// does not cover the earliest reset; [`Error::AllInvalid`] and
    /// [`Error::NoTokens`] when no token can ever serve; [`Error::Strategy`]
    /// when the strategy misbehaves; [`Error::Store`] when the store fails.
    pub async fn acquire(&self, bucket: &Bucket) -> Result<Lease, Error> {
        self.ensure_ready().await;

        // The common case takes a token at once and never registers for
        // wake-ups, which costs a lock in `Notify`.
        if let Attempt::Leased(lease) = self.try_acquire(bucket).await? {
            return Ok(lease);
        }
        let deadline_ms = match self.inner.wait {
            WaitPolicy::Fail => None,
            WaitPolicy::UpTo(max) => Some(self.inner.clock.now_ms() + max.as_millis() as u64),
        };
        let _waiting = WaiterGuard::register(&self.inner.waiters);
        loop {
            // Register first, then look again, so a settlement between the
            // two cannot be missed.
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();

            let (until_ms, busy) = match self.try_acquire(bucket).await? {
                Attempt::Leased(lease) => return Ok(lease),
                Attempt::Wait { until_ms, busy } => (until_ms, busy),
            };

            let now_ms = self.inner.clock.now_ms();
            let wake_ms = until_ms.map(|until| until + RESET_MARGIN_MS);
            let within_policy = match (wake_ms, deadline_ms) {
                (Some(wake), Some(deadline)) => wake <= deadline,
                _ => false,
            };
            if !busy && !within_policy {
                return Err(self.exhausted(bucket, until_ms, now_ms).await);
            }

            match wake_ms {
                Some(wake) if within_policy && !busy => {
                    tracing::debug!(
                        provider = self.inner.provider.kind(),
                        bucket = %bucket,
                        wait_ms = wake.saturating_sub(now_ms),
                        "waiting for a rate-limit reset"
                    );
                    tokio::select! {
                        _ = &mut settled => {}
                        _ = self.inner.clock.sleep(Duration::from_millis(wake.saturating_sub(now_ms))) => {}
                    }
                }
                _ => {
                    // A request in flight will settle soon and may free budget.
                    tokio::select! {
                        _ = &mut settled => {}
                        _ = tokio::time::sleep(BUSY_RECHECK) => {}
                    }
                }
            }
        }
    }

    async fn try_acquire(&self, bucket: &Bucket) -> Result<Attempt, Error> {
        if let Some(memory) = self.inner.store.as_memory() {
            return self.try_acquire_local(memory, bucket);
        }
        let now_ms = self.inner.clock.now_ms();
        let (rows, bucket_index) = self.rows(bucket)?;
        let keys: Vec<BudgetKey<'_>> = rows
            .iter()
            .map(|row| BudgetKey {
                account: row.account,
                account_name: &row.account_name,
                bucket: bucket_index,
                bucket_name: bucket.as_str(),
            })
            .collect();
        let mut views = Vec::with_capacity(rows.len());
        match self.inner.store.as_memory() {
            Some(memory) => memory.view_now(&keys, &mut views),
            None => self.inner.store.view(&keys, &mut views).await?,
        }

        let mut candidates = Vec::with_capacity(rows.len());
        let mut until_ms: Option<u64> = None;
        let mut busy = false;
        for (position, (row, view)) in rows.iter().zip(&views).enumerate() {
            let floor = row.token.reserve();
            match view.admits(floor, now_ms) {
                Admission::Admit => candidates.push((position, candidate(row, view, now_ms))),
                Admission::Busy => busy = true,
                Admission::Exhausted(at) | Admission::CoolingDown(at) => {
                    until_ms = Some(until_ms.map_or(at, |u| u.min(at)));
                }
            }
        }
        if candidates.iter().any(|(p, _)| !rows[*p].degraded) {
            candidates.retain(|(p, _)| !rows[*p].degraded);
        }

        let mut offered: Vec<Candidate> = candidates.iter().map(|(_, c)| *c).collect();
        while !offered.is_empty() {
            let chosen = self.choose(&offered, now_ms)?;
            let position = candidates[chosen].0;
            let row = &rows[position];
            let key = keys[position];
            let admission = match self.inner.store.as_memory() {
                Some(memory) => memory.try_reserve_now(key, row.token.reserve(), now_ms),
                None => {
                    self.inner
                        .store
                        .try_reserve(key, row.token.reserve(), now_ms)
                        .await?
                }
            };
            if admission == Admission::Admit {
                self.touch(row.token_index, now_ms);
                return Ok(Attempt::Leased(Lease::new(
                    Arc::clone(&self.inner),
                    row,
                    bucket_index,
                    bucket.clone(),
                )));
            }
            // Another task or process took this budget first: choose again.
            if let Admission::Exhausted(at) | Admission::CoolingDown(at) = admission {
                until_ms = Some(until_ms.map_or(at, |u| u.min(at)));
            } else {
                busy = true;
            }
            offered.remove(chosen);
            candidates.remove(chosen);
        }
        Ok(Attempt::Wait { until_ms, busy })
    }

    fn no_tokens(&self) -> Error {
        Error::NoTokens {
            provider: self.inner.provider.kind().to_owned(),
        }
    }

    fn all_invalid(&self, tokens: &[TokenEntry]) -> Error {
        Error::AllInvalid {
            provider: self.inner.provider.kind().to_owned(),
            tokens: tokens.iter().map(|e| e.token.id().clone()).collect(),
        }
    }

    /// Copies out the valid tokens and interns `bucket`.
    fn rows(&self, bucket: &Bucket) -> Result<(Vec<Row>, usize), Error> {
        let mut state = self.inner.state.lock();
        let bucket_index = state.bucket_index(bucket);
        if state.tokens.is_empty() {
            return Err(self.no_tokens());
        }
        let rows: Vec<Row> = state
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, entry)| !entry.invalid)
            .map(|(token_index, entry)| Row {
                token_index,
                token: Arc::clone(&entry.token),
                account: entry.account,
                account_name: Arc::clone(&state.accounts[entry.account]),
                degraded: entry.degraded.is_some(),
                last_used_ms: entry.last_used_ms,
            })
            .collect();
        if rows.is_empty() {
            return Err(self.all_invalid(&state.tokens));
        }
        Ok((rows, bucket_index))
    }

    fn choose(&self, offered: &[Candidate], now_ms: u64) -> Result<usize, Error> {
        let context = ChoiceContext {
            now_ms,
            random: self.next_random(),
        };
        let strategy = &self.inner.strategy;
        let choice = catch_unwind(AssertUnwindSafe(|| strategy.choose(offered, &context)));
        let failure = |message: String| Error::Strategy {
            strategy: strategy.name().to_owned(),
            message,
        };
        match choice {
            Ok(Some(position)) if position < offered.len() => Ok(position),
            Ok(Some(position)) => Err(failure(format!(
                "it chose position {position} among {} candidates",
                offered.len()
            ))),
            Ok(None) => Err(failure(format!(
                "it declined all {} candidates that have budget",
                offered.len()
            ))),
            Err(_) => Err(failure("it panicked while choosing a token".to_owned())),
        }
    }

    fn next_random(&self) -> u64 {
        // SplitMix64 over an atomic counter: lock-free and seedable.
        let mut z = self
            .inner
            .random
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn touch(&self, token_index: usize, now_ms: u64) {
        if let Some(entry) = self.inner.state.lock().tokens.get_mut(token_index) {
            entry.last_used_ms = now_ms;
        }
    }

    async fn exhausted(&self, bucket: &Bucket, until_ms: Option<u64>, now_ms: u64) -> Error {
        let tokens = self.tokens().await;
        Error::Exhausted(Box::new(Exhausted {
            provider: self.inner.provider.kind().to_owned(),
            bucket: bucket.clone(),
            earliest_reset_ms: until_ms,
            now_ms,
            tokens,
        }))
    }
}

fn candidate(row: &Row, view: &BudgetView, now_ms: u64) -> Candidate {
    candidate_of(row.token_index, &row.token, row.last_used_ms, view, now_ms)
}

/// Describes one admissible token to the strategy.
fn candidate_of(
    token_index: usize,
    token: &Token,
    last_used_ms: u64,
    view: &BudgetView,
    now_ms: u64,
) -> Candidate {
    let (limit, reset_in_ms) = match view.knowledge {
        Knowledge::Known {
            limit, reset_ms, ..
        } if now_ms < reset_ms => (Some(limit), Some(reset_ms - now_ms)),
        _ => (None, None),
    };
    Candidate {
        token_index,
        priority: token.priority(),
        weight: token.weight(),
        remaining: if reset_in_ms.is_some() {
            view.spendable(token.reserve())
        } else {
            None
        },
        limit,
        reset_in_ms,
        last_used_ms,
    }
}

/// Counts a task waiting in `acquire` for as long as it waits.
struct WaiterGuard<'a>(&'a AtomicUsize);

impl<'a> WaiterGuard<'a> {
    fn register(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    /// Wakes the tasks waiting in `acquire`, if any, after a change that
    /// may free budget.
    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.settled.notify_waiters();
        }
    }

    /// Updates the server-time skew from a `Date` header and returns the
    /// current skew (server minus local, in milliseconds).
    fn observe_server_date(&self, server_date_ms: Option<u64>, now_ms: u64) -> i64 {
        let current = self.skew_ms.load(Ordering::Relaxed);
        if let Some(date) = server_date_ms {
            let measured = date as i64 - now_ms as i64;
            if current == i64::MIN || (measured - current).abs() > SKEW_TOLERANCE_MS {
                self.skew_ms.store(measured, Ordering::Relaxed);
                return measured;
            }
        }
        if current == i64::MIN {
            0
        } else {
            current
        }
    }

    fn to_local(observation: &Observation, skew_ms: i64) -> LocalObservation {
        LocalObservation {
            limit: observation.limit,
            remaining: observation.remaining,
            used: observation.used,
            reset_ms: shift(observation.reset_ms, skew_ms),
        }
    }

    fn bucket_index(&self, bucket: &Bucket) -> usize {
        self.state.lock().bucket_index(bucket)
    }
}

/// Converts a server time to local time.
fn shift(server_ms: u64, skew_ms: i64) -> u64 {
    (server_ms as i64).saturating_sub(skew_ms).max(0) as u64
}

/// Returns the status of a token from the view of its default bucket.
fn status_of(
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

/// Applies a verdict's outcome to the pool. Used by leases.
async fn apply_verdict(
    inner: &Inner,
    lease: &lease::LeaseKey,
    verdict: &Verdict,
) -> Result<(), Error> {
    let now_ms = inner.clock.now_ms();
    let skew_ms = inner.observe_server_date(verdict.server_date_ms, now_ms);
    let observation = verdict.observation.as_ref();
    let observed_bucket = observation.and_then(|o| o.bucket.as_ref());
    let own_bucket = observed_bucket.is_none_or(|b| *b == lease.bucket_name);
    let local = observation.map(|o| Inner::to_local(o, skew_ms));
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
            settlement.answered_without_limits = observation.is_none();
        }
        Outcome::Forbidden => settlement.success = true,
        Outcome::ServerError => {}
        Outcome::PrimaryLimit { reset_ms } => {
            if own_bucket {
                let until = reset_ms
                    .map(|r| shift(r, skew_ms))
                    .or(local.map(|l| l.reset_ms))
                    .unwrap_or(now_ms + UNKNOWN_RESET_WAIT_MS);
                settlement.exhausted_until_ms = Some(until);
            }
        }
        Outcome::SecondaryLimit { retry_after } => {
            let until = match (retry_after, local) {
                (Some(wait), _) => Some(now_ms + wait.as_millis() as u64),
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
            let mut state = inner.state.lock();
            if let Some(entry) = state.tokens.get_mut(lease.token_index) {
                if !entry.invalid {
                    entry.invalid = true;
                    tracing::warn!(
                        provider = inner.provider.kind(),
                        token = %entry.token.id(),
                        "token rejected as invalid; it is not used again"
                    );
                }
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

/// Result of probing one token, applied under the pool lock.
fn apply_probe_result(inner: &Inner, token_index: usize, result: &Result<Probe, ProbeError>) {
    let mut state = inner.state.lock();
    let Some(entry) = state.tokens.get_mut(token_index) else {
        return;
    };
    entry.probed = true;
    let id = entry.token.id().clone();
    match result {
        Ok(probe) => {
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
