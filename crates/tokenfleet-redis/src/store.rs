//! The [`RedisStore`]: a [`StateStore`] kept in Redis.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError, RedisResult};
use secrecy::ExposeSecret;
use tokenfleet_core::store::{
    Admission, BudgetKey, BudgetView, Knowledge, LocalObservation, MemoryStore, Settlement,
    StoreError, SAME_WINDOW_TOLERANCE_MS, SECONDARY_BASE_COOLDOWN_MS, SECONDARY_MAX_COOLDOWN_MS,
};
use tokenfleet_core::{Clock, StateStore, SystemClock, TokenId};

use crate::config::{scrub_url, OnUnavailable, RedisConfig, RedisStoreError};
use crate::keys::KeySpace;
use crate::scripts::Scripts;

/// How long a known budget's key outlives its reset. Once it is gone the
/// budget reads as unknown, which admits one request at a time, as a
/// window that rolled over does.
const BUDGET_MARGIN_MS: u64 = 60_000;

/// The maximum lifetime of a budget key, however far its reset lies.
const MAX_BUDGET_TTL_MS: u64 = 25 * 3_600_000;

/// How long the "no limit" mark of an account or bucket lives.
const UNLIMITED_TTL_MS: u64 = 24 * 3_600_000;

/// How long an account's secondary-limit strikes are remembered after its
/// cooldown ends, so that a repeat soon after still doubles the wait.
const STRIKE_RETENTION_MS: u64 = 3_600_000;

/// Numbers sent to the scripts stay below this, so that Lua, whose numbers
/// are doubles printed with 14 significant digits, keeps them exact.
const MAX_SCRIPT_NUMBER: u64 = 99_999_999_999_999;

/// A state store in Redis, shared by every process that uses the same
/// server and key prefix.
///
/// Budgets, reservations, cooldowns and invalid-token marks live on the
/// server and change only through Lua scripts, so a reservation is atomic
/// across processes. Keys contain the prefix, account and bucket names and
/// token fingerprints, never a secret, and every key expires by itself.
///
/// A reservation is a member of a sorted set scored by the time it lapses
/// (now + `lease_ttl`). Settling removes it; a process that dies first
/// leaves members that stop counting when they lapse.
///
/// The connection is opened on first use and reopened after failures.
///
/// # Limitations
///
/// Times are epoch milliseconds of each process's clock, so processes on
/// different hosts need clocks synchronised to well within a second (as
/// NTP does). Keys of one (account, bucket) pair are not placed in one
/// cluster slot, so Redis Cluster is not supported.
pub struct RedisStore {
    connection: Arc<Connection>,
    keys: KeySpace,
    /// The estimate used while Redis is unavailable under
    /// [`OnUnavailable::Local`]; it also mirrors every change while Redis is
    /// up, so that it starts from recent numbers.
    local: MemoryStore,
    /// This store's reservations not yet settled, by budget key.
    reservations: Mutex<HashMap<String, VecDeque<Reservation>>>,
    /// Starts the id of each reservation, unique to this store instance.
    lease_tag: String,
    sequence: AtomicU64,
    /// The time `view` counts reservations at, which should be the pool's.
    clock: Arc<dyn Clock>,
    /// Views by budget key, when `view_max_age` is above zero.
    views: Mutex<HashMap<String, CachedView>>,
    /// Invalid marks by key and when they were read, when `view_max_age`
    /// is above zero.
    marks: Mutex<HashMap<String, (Instant, bool)>>,
}

/// A budget's view as Redis last returned it.
#[derive(Debug, Clone, Copy)]
struct CachedView {
    fetched: Instant,
    view: BudgetView,
}

/// One reservation of this store, by the place it was made in.
#[derive(Debug)]
enum Reservation {
    /// In Redis, as this member of the lease set, lapsing at this time.
    Redis { member: String, lapses_ms: u64 },
    /// In the local estimate, while Redis was unavailable.
    Local,
}

/// The connection shared by the stores of one server.
struct Connection {
    client: redis::Client,
    /// The URL with its password replaced, for messages.
    url: String,
    mode: OnUnavailable,
    command_timeout: Duration,
    lease_ttl_ms: u64,
    invalid_ttl_ms: u64,
    retry_interval: Duration,
    view_max_age: Duration,
    scripts: Scripts,
    manager: Mutex<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    /// Whether the last command failed.
    down: AtomicBool,
    /// When `Local` mode tries Redis again.
    retry_at: Mutex<Option<Instant>>,
}

impl RedisStore {
    /// Creates a store for the server in `config`. The connection is opened
    /// by the first operation, so this works while Redis is still down.
    ///
    /// # Errors
    ///
    /// Returns [`RedisStoreError::InvalidUrl`] for a URL that is not a
    /// Redis URL, [`RedisStoreError::TlsUnsupported`] for `rediss://`
    /// without the `tls` feature, [`RedisStoreError::CaFile`] for a CA file
    /// that cannot be read, and
    /// [`RedisStoreError::InvalidSetting`] for a zero timeout or lease.
    pub fn new(config: RedisConfig) -> Result<Self, RedisStoreError> {
        let url = scrub_url(&config.url);
        let scheme = config
            .url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        if matches!(scheme.as_deref(), Some("rediss" | "valkeys")) && !cfg!(feature = "tls") {
            return Err(RedisStoreError::TlsUnsupported { url });
        }
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|error| RedisStoreError::InvalidUrl {
                url: url.clone(),
                reason: describe_url_error(&error),
            })?;
        let tls = matches!(info.addr, redis::ConnectionAddr::TcpTls { .. });
        if let Some(password) = &config.password {
            info.redis.password = Some(password.expose_secret().to_owned());
        }
        for (setting, value) in [
            ("command_timeout", config.command_timeout),
            ("lease_ttl", config.lease_ttl),
        ] {
            if value.is_zero() {
                return Err(RedisStoreError::InvalidSetting {
                    setting,
                    reason: "it must be longer than zero, such as \"1s\"".to_owned(),
                });
            }
        }
        let client = open_client(info, tls, config.ca_file.as_deref(), &url)?;

        let connection = Connection {
            client,
            url,
            mode: config.on_unavailable,
            command_timeout: config.command_timeout,
            lease_ttl_ms: millis(config.lease_ttl),
            invalid_ttl_ms: millis(config.invalid_ttl).max(1),
            retry_interval: config.retry_interval,
            view_max_age: config.view_max_age,
            scripts: Scripts::new(),
            manager: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            down: AtomicBool::new(false),
            retry_at: Mutex::new(None),
        };
        Ok(Self::with_connection(
            Arc::new(connection),
            KeySpace::new(&config.prefix),
        ))
    }

    fn with_connection(connection: Arc<Connection>, keys: KeySpace) -> Self {
        Self {
            connection,
            keys,
            local: MemoryStore::new(),
            reservations: Mutex::new(HashMap::new()),
            lease_tag: format!("{}-{:016x}", std::process::id(), rand_word()),
            sequence: AtomicU64::new(0),
            clock: Arc::new(SystemClock),
            views: Mutex::new(HashMap::new()),
            marks: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the clock `view` reads, which must be the clock of the pool
    /// using this store; the system clock by default. The other operations
    /// take their time from the pool.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns a store on the same connection whose keys sit under
    /// `scope` inside this store's prefix. Pools of different providers
    /// use one scope each, so their account names cannot collide.
    pub fn scoped(&self, scope: &str) -> Self {
        Self::with_connection(Arc::clone(&self.connection), self.keys.scoped(scope))
            .with_clock(Arc::clone(&self.clock))
    }

    /// Returns the server URL with its password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.connection.url
    }

    /// Returns the prefix every key of this store starts with.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Returns whether the last command reached Redis.
    pub fn is_available(&self) -> bool {
        !self.connection.down.load(Ordering::Relaxed)
    }

    /// Returns the keys of one (account, bucket) pair: budget hash, lease
    /// set and account hash.
    pub fn budget_keys(&self, account: &str, bucket: &str) -> [String; 3] {
        [
            self.keys.budget(account, bucket),
            self.keys.leases(account, bucket),
            self.keys.account(account),
        ]
    }

    /// Returns the key that marks a token invalid.
    pub fn invalid_key(&self, token: &TokenId) -> String {
        self.keys.invalid(token.fingerprint_part())
    }

    fn next_member(&self) -> String {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{}-{sequence}", self.lease_tag)
    }

    fn mirror(&self) -> bool {
        self.connection.mode == OnUnavailable::Local
    }

    fn caches_views(&self) -> bool {
        !self.connection.view_max_age.is_zero()
    }

    /// Stores the view a script returned for `budget`.
    fn remember(&self, budget: &str, values: &[u64]) {
        if self.caches_views() && values.len() == 8 {
            let cached = CachedView {
                fetched: Instant::now(),
                view: view_of(values),
            };
            self.views.lock().insert(budget.to_owned(), cached);
        }
    }

    /// Returns the cached view of `budget` when it is recent enough.
    fn recent_view(&self, budget: &str, now: Instant) -> Option<BudgetView> {
        let views = self.views.lock();
        let cached = views.get(budget)?;
        (now.duration_since(cached.fetched) < self.connection.view_max_age).then_some(cached.view)
    }

    /// Drops every cached view, after a change that reaches beyond one
    /// budget (a cooldown, an unlimited account) or a failure.
    fn forget_views(&self) {
        if self.caches_views() {
            self.views.lock().clear();
        }
    }
}

impl Connection {
    /// Runs one Redis operation with the command timeout. Returns `Ok(None)`
    /// when Redis is unavailable and the store falls back to its local
    /// estimate, and an error naming the store when it does not.
    async fn run<T, F, Fut>(&self, operation: &str, call: F) -> Result<Option<T>, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if self.mode == OnUnavailable::Local && self.waiting_to_retry() {
            return Ok(None);
        }
        let attempt = async {
            let manager = self.manager().await?;
            call(manager).await
        };
        let failure = match tokio::time::timeout(self.command_timeout, attempt).await {
            Ok(Ok(value)) => {
                self.note_success();
                return Ok(Some(value));
            }
            Ok(Err(error)) if error.is_timeout() => self.timed_out(),
            Ok(Err(error)) => describe_error(&error),
            Err(_) => self.timed_out(),
        };
        self.note_failure(operation, &failure);
        match self.mode {
            OnUnavailable::Local => Ok(None),
            OnUnavailable::Fail => Err(StoreError {
                message: format!(
                    "redis store at {} failed to {operation}: {failure}; check that the server \
                     runs and is reachable, or set `on_unavailable = \"local\"` to continue on \
                     a per-process estimate",
                    self.url
                ),
            }),
        }
    }

    async fn manager(&self) -> RedisResult<ConnectionManager> {
        if let Some(manager) = self.manager.lock().clone() {
            return Ok(manager);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(manager) = self.manager.lock().clone() {
            return Ok(manager);
        }
        // One attempt per operation: the operation's timeout bounds it, and
        // the manager reconnects by itself once it exists.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.command_timeout)
            .set_response_timeout(self.command_timeout)
            .set_number_of_retries(1)
            .set_max_delay(100);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *self.manager.lock() = Some(manager.clone());
        Ok(manager)
    }

    fn timed_out(&self) -> String {
        format!(
            "no response within the command timeout of {:?}",
            self.command_timeout
        )
    }

    fn waiting_to_retry(&self) -> bool {
        if !self.down.load(Ordering::Relaxed) {
            return false;
        }
        matches!(*self.retry_at.lock(), Some(at) if Instant::now() < at)
    }

    fn note_success(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(store = "redis", url = %self.url, "redis store reachable again");
        }
    }

    fn note_failure(&self, operation: &str, failure: &str) {
        *self.retry_at.lock() = Some(Instant::now() + self.retry_interval);
        // Logged once per outage, not once per operation.
        if !self.down.swap(true, Ordering::Relaxed) {
            let fallback = match self.mode {
                OnUnavailable::Fail => "operations fail until it answers",
                OnUnavailable::Local => "using a per-process estimate until it answers",
            };
            tracing::warn!(
                store = "redis",
                url = %self.url,
                operation,
                error = %failure,
                "redis store unavailable; {fallback}"
            );
        }
    }
}

/// Builds the client, with TLS settings for a `rediss://` URL.
#[cfg(feature = "tls")]
fn open_client(
    info: redis::ConnectionInfo,
    tls: bool,
    ca_file: Option<&std::path::Path>,
    url: &str,
) -> Result<redis::Client, RedisStoreError> {
    let invalid = |error: RedisError| RedisStoreError::InvalidUrl {
        url: url.to_owned(),
        reason: describe_url_error(&error),
    };
    if !tls {
        return redis::Client::open(info).map_err(invalid);
    }
    // rustls needs a crypto provider for the process. Another library may
    // have installed one already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert = match ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|error| RedisStoreError::CaFile {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?,
        ),
        None => None,
    };
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert,
    };
    redis::Client::build_with_tls(info, certificates).map_err(invalid)
}

/// Builds the client; `new` has rejected `rediss://` already.
#[cfg(not(feature = "tls"))]
fn open_client(
    info: redis::ConnectionInfo,
    _tls: bool,
    _ca_file: Option<&std::path::Path>,
    url: &str,
) -> Result<redis::Client, RedisStoreError> {
    redis::Client::open(info).map_err(|error| RedisStoreError::InvalidUrl {
        url: url.to_owned(),
        reason: describe_url_error(&error),
    })
}

/// Describes a Redis error without any part of the connection's password.
fn describe_error(error: &RedisError) -> String {
    if error.is_connection_refusal() {
        "the connection was refused".to_owned()
    } else if error.is_connection_dropped() || error.is_io_error() {
        format!("the connection failed ({error})")
    } else {
        error.to_string()
    }
}

fn describe_url_error(error: &RedisError) -> String {
    // The crate's messages about URLs name the problem, never the URL.
    error
        .detail()
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Clamps a number for a script.
fn num(value: u64) -> u64 {
    value.min(MAX_SCRIPT_NUMBER)
}

/// Draws a random word from the standard library's hasher seed, enough to
/// tell the stores of different processes apart.
fn rand_word() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

fn admission(code: u64, at: u64) -> Admission {
    match code {
        0 => Admission::Admit,
        2 => Admission::Exhausted(at),
        3 => Admission::CoolingDown(at),
        _ => Admission::Busy,
    }
}

/// Returns the view of a budget nothing is known about.
fn unknown_view() -> BudgetView {
    BudgetView {
        knowledge: Knowledge::Unknown,
        in_flight: 0,
        cooldown_until_ms: 0,
        probation: false,
        request_cost: 1,
    }
}

fn view_of(values: &[u64]) -> BudgetView {
    let knowledge = match values[0] {
        1 => Knowledge::Unlimited,
        2 => Knowledge::Known {
            limit: values[1],
            remaining: values[2],
            reset_ms: values[3],
        },
        _ => Knowledge::Unknown,
    };
    BudgetView {
        knowledge,
        in_flight: u32::try_from(values[4]).unwrap_or(u32::MAX),
        cooldown_until_ms: values[5],
        probation: values[6] != 0,
        request_cost: values[7].max(1),
    }
}

/// Formats an optional number for a script, which reads "" as none.
fn optional(value: Option<u64>) -> String {
    value.map(|v| num(v).to_string()).unwrap_or_default()
}

fn flag(value: bool) -> &'static str {
    if value {
        "1"
    } else {
        "0"
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn view(
        &self,
        keys: &[BudgetKey<'_>],
        out: &mut Vec<BudgetView>,
    ) -> Result<(), StoreError> {
        let connection = &self.connection;
        // Tokens of one account share its budgets, so each distinct
        // (account, bucket) pair is read once.
        let mut distinct: Vec<(&str, &str)> = Vec::with_capacity(keys.len());
        let positions: Vec<usize> = keys
            .iter()
            .map(|key| {
                let pair = (key.account_name, key.bucket_name);
                match distinct.iter().position(|seen| *seen == pair) {
                    Some(position) => position,
                    None => {
                        distinct.push(pair);
                        distinct.len() - 1
                    }
                }
            })
            .collect();

        // Budgets whose cached view is recent enough are not read again.
        let budget_names: Vec<String> = distinct
            .iter()
            .map(|(account, bucket)| self.keys.budget(account, bucket))
            .collect();
        let mut views: Vec<Option<BudgetView>> = vec![None; distinct.len()];
        if self.caches_views() {
            let now = Instant::now();
            for (slot, name) in views.iter_mut().zip(&budget_names) {
                *slot = self.recent_view(name, now);
            }
        }
        let missing: Vec<usize> = (0..distinct.len())
            .filter(|position| views[*position].is_none())
            .collect();

        if !missing.is_empty() {
            let mut invocation = connection.scripts.view.prepare_invoke();
            for position in &missing {
                let (account, bucket) = distinct[*position];
                for name in self.budget_keys(account, bucket) {
                    invocation.key(name);
                }
            }
            invocation.arg(num(self.clock.now_ms()));
            let values: Option<Vec<u64>> = connection
                .run("read budgets", |mut manager| async move {
                    invocation.invoke_async(&mut manager).await
                })
                .await?;
            let Some(values) = values else {
                self.forget_views();
                self.local.view_now(keys, out);
                return Ok(());
            };
            if values.len() != missing.len() * 8 {
                return Err(StoreError {
                    message: format!(
                        "redis store at {} returned {} numbers for {} budgets; the view script \
                         and this build disagree",
                        connection.url,
                        values.len(),
                        missing.len()
                    ),
                });
            }
            for (position, numbers) in missing.iter().zip(values.chunks_exact(8)) {
                views[*position] = Some(view_of(numbers));
                self.remember(&budget_names[*position], numbers);
            }
        }

        out.clear();
        out.extend(
            positions
                .iter()
                .map(|position| views[*position].unwrap_or_else(unknown_view)),
        );
        Ok(())
    }

    async fn try_reserve(
        &self,
        key: BudgetKey<'_>,
        floor: u64,
        now_ms: u64,
    ) -> Result<Admission, StoreError> {
        let connection = &self.connection;
        let [budget, leases, account] = self.budget_keys(key.account_name, key.bucket_name);
        let member = self.next_member();
        let lapses_ms = now_ms.saturating_add(connection.lease_ttl_ms);
        let mut invocation = connection.scripts.reserve.prepare_invoke();
        invocation
            .key(&budget)
            .key(&leases)
            .key(&account)
            .arg(num(now_ms))
            .arg(num(floor))
            .arg(&member)
            .arg(num(lapses_ms))
            .arg(num(connection
                .lease_ttl_ms
                .saturating_add(BUDGET_MARGIN_MS)));
        let reply: Option<Vec<u64>> = connection
            .run("reserve budget", |mut manager| async move {
                invocation.invoke_async(&mut manager).await
            })
            .await?;
        let (result, reservation) = match reply {
            Some(numbers) if numbers.len() >= 2 => {
                self.remember(&budget, &numbers[2..]);
                let result = admission(numbers[0], numbers[1]);
                (result, Reservation::Redis { member, lapses_ms })
            }
            Some(numbers) => {
                return Err(StoreError {
                    message: format!(
                        "redis store at {} returned {} numbers for a reservation; the \
                         reservation script and this build disagree",
                        connection.url,
                        numbers.len()
                    ),
                })
            }
            None => {
                self.forget_views();
                let result = self.local.try_reserve_now(key, floor, now_ms);
                (result, Reservation::Local)
            }
        };
        if result == Admission::Admit {
            let mut by_key = self.reservations.lock();
            let queue = by_key.entry(budget).or_default();
            // Reservations that lapsed were dropped without a runtime to
            // settle them; Redis no longer counts them either.
            queue.retain(
                |r| !matches!(r, Reservation::Redis { lapses_ms, .. } if *lapses_ms <= now_ms),
            );
            queue.push_back(reservation);
        }
        Ok(result)
    }

    async fn settle(
        &self,
        key: BudgetKey<'_>,
        settlement: &Settlement,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let connection = &self.connection;
        let [budget, leases, account] = self.budget_keys(key.account_name, key.bucket_name);
        let reservation = {
            let mut by_key = self.reservations.lock();
            let first = by_key.get_mut(&budget).and_then(VecDeque::pop_front);
            if by_key.get(&budget).is_some_and(VecDeque::is_empty) {
                by_key.remove(&budget);
            }
            first
        };
        let member = match &reservation {
            Some(Reservation::Redis { member, .. }) => member.as_str(),
            // A reservation made locally is settled locally; Redis still
            // learns what the response stated.
            Some(Reservation::Local) => {
                self.local.settle_now(key, settlement, now_ms);
                ""
            }
            None => "",
        };
        let observation = settlement.observation.as_ref();
        let mut invocation = connection.scripts.settle.prepare_invoke();
        invocation
            .key(&budget)
            .key(&leases)
            .key(&account)
            .arg(num(now_ms))
            .arg(member)
            .arg(flag(settlement.sent))
            .arg(flag(settlement.success))
            .arg(flag(settlement.answered_without_limits))
            .arg(optional(observation.map(|o| o.limit)))
            .arg(optional(observation.map(|o| o.remaining)))
            .arg(optional(observation.and_then(|o| o.used)))
            .arg(optional(observation.map(|o| o.reset_ms)))
            .arg(optional(settlement.exhausted_until_ms))
            .arg(SAME_WINDOW_TOLERANCE_MS)
            .arg(BUDGET_MARGIN_MS)
            .arg(UNLIMITED_TTL_MS)
            .arg(MAX_BUDGET_TTL_MS);
        let done: Option<Vec<u64>> = connection
            .run("settle a reservation", |mut manager| async move {
                invocation.invoke_async(&mut manager).await
            })
            .await?;
        match &done {
            Some(numbers) => self.remember(&budget, numbers),
            None => self.forget_views(),
        }
        let local_reservation = matches!(reservation, Some(Reservation::Local));
        if !local_reservation && (done.is_none() || self.mirror()) {
            // The local store is the fallback estimate or a mirror of Redis.
            // It contains none of Redis's reservations, so only the response
            // changes it.
            self.local.settle_now(key, settlement, now_ms);
        }
        Ok(())
    }

    async fn observe(
        &self,
        key: BudgetKey<'_>,
        observation: &LocalObservation,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let connection = &self.connection;
        let [budget, leases, account] = self.budget_keys(key.account_name, key.bucket_name);
        let mut invocation = connection.scripts.observe.prepare_invoke();
        invocation
            .key(&budget)
            .key(&leases)
            .key(&account)
            .arg(num(now_ms))
            .arg(num(observation.limit))
            .arg(num(observation.remaining))
            .arg(optional(observation.used))
            .arg(num(observation.reset_ms))
            .arg(SAME_WINDOW_TOLERANCE_MS)
            .arg(BUDGET_MARGIN_MS)
            .arg(UNLIMITED_TTL_MS)
            .arg(MAX_BUDGET_TTL_MS);
        let done: Option<Vec<u64>> = connection
            .run("store observed limits", |mut manager| async move {
                invocation.invoke_async(&mut manager).await
            })
            .await?;
        match &done {
            Some(numbers) => self.remember(&budget, numbers),
            None => self.forget_views(),
        }
        if done.is_none() || self.mirror() {
            self.local.observe_now(key, observation);
        }
        Ok(())
    }

    async fn mark_unlimited(&self, key: BudgetKey<'_>) -> Result<(), StoreError> {
        let connection = &self.connection;
        let [budget, leases, account] = self.budget_keys(key.account_name, key.bucket_name);
        let mut invocation = connection.scripts.mark_unlimited.prepare_invoke();
        invocation
            .key(&budget)
            .key(&leases)
            .key(&account)
            .arg(UNLIMITED_TTL_MS);
        let done: Option<i64> = connection
            .run("mark a budget unlimited", |mut manager| async move {
                invocation.invoke_async(&mut manager).await
            })
            .await?;
        self.forget_views();
        if done.is_none() || self.mirror() {
            self.local.mark_unlimited_now(key);
        }
        Ok(())
    }

    async fn cool_down(
        &self,
        key: BudgetKey<'_>,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let connection = &self.connection;
        let account = self.keys.account(key.account_name);
        let mut invocation = connection.scripts.cool_down.prepare_invoke();
        invocation
            .key(&account)
            .arg(num(now_ms))
            .arg(optional(until_ms))
            .arg(SECONDARY_BASE_COOLDOWN_MS)
            .arg(SECONDARY_MAX_COOLDOWN_MS)
            .arg(STRIKE_RETENTION_MS);
        let until: Option<u64> = connection
            .run("start a cooldown", |mut manager| async move {
                invocation.invoke_async(&mut manager).await
            })
            .await?;
        self.forget_views();
        let local = if until.is_none() || self.mirror() {
            Some(self.local.cool_down_now(key, until_ms, now_ms))
        } else {
            None
        };
        Ok(until.or(local).unwrap_or(now_ms))
    }

    async fn mark_invalid(&self, token: &TokenId, _now_ms: u64) -> Result<(), StoreError> {
        let connection = &self.connection;
        let key = self.invalid_key(token);
        if self.caches_views() {
            self.marks
                .lock()
                .insert(key.clone(), (Instant::now(), true));
        }
        let ttl_ms = connection.invalid_ttl_ms;
        let done: Option<()> = connection
            .run("mark a token invalid", |mut manager| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut manager)
                    .await
            })
            .await?;
        if done.is_none() {
            tracing::debug!(
                store = "redis",
                token = %token,
                "invalid mark kept in this process only while redis is unavailable"
            );
        }
        Ok(())
    }

    async fn invalid_tokens(
        &self,
        tokens: &[&TokenId],
        out: &mut Vec<bool>,
    ) -> Result<(), StoreError> {
        out.clear();
        if tokens.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = tokens.iter().map(|token| self.invalid_key(token)).collect();
        if self.caches_views() {
            // Marks read within `view_max_age` are not read again.
            let now = Instant::now();
            let max_age = self.connection.view_max_age;
            let cached = self.marks.lock();
            let recent: Option<Vec<bool>> = keys
                .iter()
                .map(|key| match cached.get(key) {
                    Some((read, marked)) if now.duration_since(*read) < max_age => Some(*marked),
                    _ => None,
                })
                .collect();
            if let Some(recent) = recent {
                out.extend(recent);
                return Ok(());
            }
        }
        let marks: Option<Vec<Option<String>>> = self
            .connection
            .run("read invalid marks", |mut manager| {
                let command = redis::cmd("MGET").arg(&keys).clone();
                async move { command.query_async(&mut manager).await }
            })
            .await?;
        match marks {
            Some(marks) => {
                out.extend(marks.iter().map(Option::is_some));
                if self.caches_views() {
                    let now = Instant::now();
                    let mut cached = self.marks.lock();
                    for (key, marked) in keys.into_iter().zip(out.iter()) {
                        cached.insert(key, (now, *marked));
                    }
                }
            }
            None => out.resize(tokens.len(), false),
        }
        Ok(())
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.connection.url)
            .field("prefix", &self.keys.prefix())
            .field("on_unavailable", &self.connection.mode)
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}
