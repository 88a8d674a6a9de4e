//! The token pool: one provider's tokens, a strategy and a state store.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Exhausted};
use crate::provider::{Provider, Transport};
use crate::random::SharedRng;
use crate::source::TokenSource;
use crate::store::{
    Admission, BudgetKey, BudgetView, Knowledge, LocalObservation, MemoryStore, StateStore,
};
use crate::strategy::{Candidate, ChoiceContext, RotationStrategy};
use crate::token::{Token, TokenId};
use crate::verdict::{Bucket, Observation};

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
mod refresh;
mod settle;
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

/// The largest `Date` offset taken as clock skew.
const MAX_SKEW_MS: i64 = 24 * 3_600_000;

/// The maximum time a token waits for a reset or a retry time, seven days: longer
/// than any documented window (GitLab's project-creation limit counts a day).
const MAX_WAIT_MS: u64 = 7 * 24 * 3_600_000;

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
    random: SharedRng,
    /// Server time minus local time in milliseconds; `i64::MIN` until measured.
    skew_ms: AtomicI64,
}

#[derive(Debug)]
struct PoolState {
    tokens: Vec<TokenEntry>,
    /// How many tokens have a source, so pools without any skip the checks.
    sourced: usize,
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
    /// The provider could not name the token's account yet. Such a token
    /// may share a budget with another token without the pool knowing, so
    /// it is not used until a later probe learns its account.
    account_pending: bool,
    last_used_ms: u64,
    /// The source of the secret, for a token whose secret is fetched.
    source: Option<refresh::SourceSlot>,
    /// The failure of the last status request, when it failed.
    probe_error: Option<String>,
}

/// One token as `acquire` considers it, copied out of the pool state.
#[derive(Debug, Clone)]
struct Row {
    token_index: usize,
    token: Arc<Token>,
    account: usize,
    account_name: Arc<str>,
    degraded: bool,
    account_pending: bool,
    last_used_ms: u64,
    secret: refresh::SecretState,
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
            account_pending: false,
            last_used_ms: 0,
            source: None,
            probe_error: None,
        });
    }

    fn push_sourced(&mut self, token: Token, source: Arc<dyn TokenSource>) {
        self.push_token(token);
        if let Some(entry) = self.tokens.last_mut() {
            entry.source = Some(refresh::SourceSlot::new(source));
        }
        self.sourced += 1;
    }
}

/// Builds a [`TokenPool`].
#[derive(Debug)]
pub struct TokenPoolBuilder {
    provider: Arc<dyn Provider>,
    tokens: Vec<Token>,
    sourced: Vec<(Token, Arc<dyn TokenSource>)>,
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

    /// Adds a token whose secret `source` fetches before its first use and
    /// again ahead of its expiry. `token` carries the id and settings; make
    /// it with [`Token::sourced`].
    pub fn sourced_token(mut self, token: Token, source: Arc<dyn TokenSource>) -> Self {
        self.sourced.push((token, source));
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
            tokens: Vec::with_capacity(self.tokens.len() + self.sourced.len()),
            sourced: 0,
            accounts: Vec::new(),
            buckets: vec![default_bucket.clone()],
            scratch: local::Scratch::default(),
        };
        for token in self.tokens {
            state.push_token(token);
        }
        for (token, source) in self.sourced {
            state.push_sourced(token, source);
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
            random: SharedRng::new(self.seed.unwrap_or_else(rand::random)),
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
            sourced: Vec::new(),
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
        self.acquire_avoiding(bucket, &[]).await
    }

    /// Reserves one unit of budget like [`TokenPool::acquire`], but prefers
    /// tokens not in `avoid`; an avoided token is used only when no other
    /// token has budget. A paginated listing uses this to retry a page on
    /// another token after one could not see it.
    ///
    /// # Errors
    ///
    /// As [`TokenPool::acquire`].
    pub async fn acquire_avoiding(
        &self,
        bucket: &Bucket,
        avoid: &[TokenId],
    ) -> Result<Lease, Error> {
        self.ensure_ready().await;

        // The common case takes a token at once and never registers for
        // wake-ups, which costs a lock in `Notify`.
        if let Attempt::Leased(lease) = self.try_acquire(bucket, avoid).await? {
            return Ok(lease);
        }
        let deadline_ms = match self.inner.wait {
            WaitPolicy::Fail => None,
            WaitPolicy::UpTo(max) => Some(self.inner.clock.now_ms().saturating_add(millis(max))),
        };
        let _waiting = WaiterGuard::register(&self.inner.waiters);
        loop {
            // A token whose account was pending may be ready for its probe.
            self.ensure_ready().await;

            // Register first, then look again, so a settlement between the
            // two cannot be missed.
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();

            let (until_ms, busy) = match self.try_acquire(bucket, avoid).await? {
                Attempt::Leased(lease) => return Ok(lease),
                Attempt::Wait { until_ms, busy } => (until_ms, busy),
            };

            let now_ms = self.inner.clock.now_ms();
            let wake_ms = until_ms.map(|until| until.saturating_add(RESET_MARGIN_MS));
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

    async fn try_acquire(&self, bucket: &Bucket, avoid: &[TokenId]) -> Result<Attempt, Error> {
        if let Some(memory) = self.inner.store.as_memory() {
            return self.try_acquire_local(memory, bucket, avoid);
        }
        let now_ms = self.inner.clock.now_ms();
        let (rows, bucket_index) = self.rows(bucket)?;
        let keys: Vec<BudgetKey<'_>> = rows
            .iter()
            .map(|row| {
                // A token whose account is pending is judged by its default
                // bucket, whose reset is when it can be probed again.
                let (bucket, bucket_name) = if row.account_pending {
                    (0, self.inner.default_bucket.as_str())
                } else {
                    (bucket_index, bucket.as_str())
                };
                BudgetKey {
                    account: row.account,
                    account_name: &row.account_name,
                    bucket,
                    bucket_name,
                }
            })
            .collect();
        let ids: Vec<&TokenId> = rows.iter().map(|row| row.token.id()).collect();
        let mut views = Vec::with_capacity(rows.len());
        let mut invalid = Vec::with_capacity(rows.len());
        // Both reads go out together, so a shared store pays one round trip.
        let (viewed, marked) = futures::join!(
            self.inner.store.view(&keys, &mut views),
            self.inner.store.invalid_tokens(&ids, &mut invalid)
        );
        viewed?;
        marked?;
        if invalid.iter().any(|marked| *marked) {
            self.adopt_invalid(&rows, &invalid)?;
        }

        let mut candidates = Vec::with_capacity(rows.len());
        let mut until_ms: Option<u64> = None;
        let mut busy = false;
        for (position, (row, view)) in rows.iter().zip(&views).enumerate() {
            if let refresh::SecretState::Missing { retry_at_ms } = row.secret {
                match retry_at_ms {
                    Some(at) => keep_earliest(&mut until_ms, at),
                    None => busy = true,
                }
                continue;
            }
            if invalid.get(position).copied().unwrap_or(false) {
                continue;
            }
            if row.account_pending {
                match pending_wait(view, now_ms) {
                    Some(at) => keep_earliest(&mut until_ms, at),
                    None => {
                        self.inner.ready.store(false, Ordering::Release);
                        busy = true;
                    }
                }
                continue;
            }
            let floor = row.token.reserve();
            match view.admits(floor, now_ms) {
                Admission::Admit => candidates.push((position, candidate(row, view, now_ms))),
                Admission::Busy => busy = true,
                Admission::Exhausted(at) | Admission::CoolingDown(at) => {
                    keep_earliest(&mut until_ms, at);
                }
            }
        }
        if candidates.iter().any(|(p, _)| !rows[*p].degraded) {
            candidates.retain(|(p, _)| !rows[*p].degraded);
        }
        let avoided = |p: usize| avoid.contains(rows[p].token.id());
        if !avoid.is_empty() && candidates.iter().any(|(p, _)| !avoided(*p)) {
            candidates.retain(|(p, _)| !avoided(*p));
        }

        let mut offered: Vec<Candidate> = candidates.iter().map(|(_, c)| *c).collect();
        while !offered.is_empty() {
            let chosen = self.choose(&offered, now_ms)?;
            let position = candidates[chosen].0;
            let row = &rows[position];
            let key = keys[position];
            let admission = self
                .inner
                .store
                .try_reserve(key, row.token.reserve(), now_ms)
                .await?;
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
                keep_earliest(&mut until_ms, at);
            } else {
                busy = true;
            }
            offered.remove(chosen);
            candidates.remove(chosen);
        }
        Ok(Attempt::Wait { until_ms, busy })
    }

    /// Marks the tokens another process found invalid as invalid here too.
    ///
    /// # Errors
    ///
    /// Returns [`Error::AllInvalid`] when no valid token is left.
    fn adopt_invalid(&self, rows: &[Row], invalid: &[bool]) -> Result<(), Error> {
        let mut state = self.inner.state.lock();
        for (row, _) in rows.iter().zip(invalid).filter(|(_, marked)| **marked) {
            if let Some(entry) = state.tokens.get_mut(row.token_index) {
                if !entry.invalid {
                    entry.invalid = true;
                    tracing::warn!(
                        provider = self.inner.provider.kind(),
                        token = %entry.token.id(),
                        "token marked invalid by another process sharing the store; it is not used again"
                    );
                }
            }
        }
        if state.tokens.iter().all(|entry| entry.invalid) {
            return Err(self.all_invalid(&state.tokens));
        }
        Ok(())
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
        let now_ms = self.inner.clock.now_ms();
        let mut state = self.inner.state.lock();
        let bucket_index = state.bucket_index(bucket);
        if state.tokens.is_empty() {
            return Err(self.no_tokens());
        }
        if state.sourced > 0 {
            let mut due = Vec::new();
            refresh::collect_due(&mut state.tokens, now_ms, &mut due);
            refresh::spawn_all(&self.inner, &due);
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
                account_pending: entry.account_pending,
                last_used_ms: entry.last_used_ms,
                secret: refresh::secret_state(entry, now_ms),
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
            random: self.inner.random.next_u64(),
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

/// Lowers `until_ms` to `at` when `at` is earlier or nothing is set yet.
fn keep_earliest(until_ms: &mut Option<u64>, at: u64) {
    *until_ms = Some(until_ms.map_or(at, |until| until.min(at)));
}

/// Returns when a token whose account is still unknown can be probed
/// again: its default bucket's reset, or `None` when that has passed (or
/// no reset is known) and a probe can go out now.
fn pending_wait(default_view: &BudgetView, now_ms: u64) -> Option<u64> {
    match default_view.knowledge {
        Knowledge::Known { reset_ms, .. } if reset_ms > now_ms => Some(reset_ms),
        _ => None,
    }
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
            let measured = (date as i64).saturating_sub(now_ms as i64);
            // A gap of more than a day is a broken `Date` header, not a
            // skewed clock; trusting it would move every reset by as much.
            let plausible = measured.abs() <= MAX_SKEW_MS;
            if plausible && (current == i64::MIN || (measured - current).abs() > SKEW_TOLERANCE_MS)
            {
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

    /// Converts an observation to local time. A remaining budget above the
    /// limit, which no provider means, is read as the limit, and a reset
    /// beyond [`MAX_WAIT_MS`] is brought back to it.
    fn to_local(&self, observation: &Observation, skew_ms: i64, now_ms: u64) -> LocalObservation {
        LocalObservation {
            limit: observation.limit,
            remaining: observation.remaining.min(observation.limit),
            used: observation.used,
            reset_ms: self.bound_wait(shift(observation.reset_ms, skew_ms), now_ms),
        }
    }

    /// Returns `until_ms`, or the latest time the pool waits for when it lies
    /// further ahead: a reset years away is a unit mistake (milliseconds read
    /// as seconds), not a reason to retire a token for good.
    fn bound_wait(&self, until_ms: u64, now_ms: u64) -> u64 {
        let latest = now_ms.saturating_add(MAX_WAIT_MS);
        if until_ms > latest {
            tracing::warn!(
                provider = self.provider.kind(),
                wait_ms = until_ms.saturating_sub(now_ms),
                max_wait_ms = MAX_WAIT_MS,
                "a reset or retry time lies too far ahead; waiting the maximum instead"
            );
            return latest;
        }
        until_ms
    }

    fn bucket_index(&self, bucket: &Bucket) -> usize {
        self.state.lock().bucket_index(bucket)
    }
}

/// Converts a duration to whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Converts a server time to local time.
fn shift(server_ms: u64, skew_ms: i64) -> u64 {
    (server_ms as i64).saturating_sub(skew_ms).max(0) as u64
}
