//! The fleet: the pools and clients of every configured provider, the
//! equivalent of GitFleet's `TokenManager`.

use std::path::Path;
use std::sync::Arc;

use tokenfleet_client::{default_http, Client, ClientBuilder, ClientError, ReqwestTransport};
use tokenfleet_core::{
    Clock, Provider, RotationStrategy, StateStore, SystemClock, Token, TokenPool, TokenSnapshot,
    TokenSource, WaitPolicy,
};

use crate::config::{self, ConfigError, FleetConfig};

/// An error building a fleet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No rotation strategy is available.
    #[error(
        "no rotation strategy: set `[strategy] type = ...` or enable the `rate-aware` feature"
    )]
    NoStrategy,
    /// A pool could not be built.
    #[error(transparent)]
    Pool(#[from] tokenfleet_core::Error),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A token was added to a provider name the fleet does not have.
    #[error("no provider named {0:?}; add the provider before its sourced tokens")]
    UnknownProvider(String),
}

#[derive(Debug)]
struct Member {
    name: String,
    client: Client,
}

/// The pools and clients of every provider, by name.
#[derive(Debug, Clone)]
pub struct Fleet {
    members: Arc<Vec<Member>>,
}

type StrategyFactory = Arc<dyn Fn() -> Box<dyn RotationStrategy> + Send + Sync>;

/// Builds the state store of one pool from the provider's name and the
/// fleet's clock.
type StoreFactory = Arc<dyn Fn(&str, &Arc<dyn Clock>) -> Arc<dyn StateStore> + Send + Sync>;

struct ProviderEntry {
    name: String,
    provider: Arc<dyn Provider>,
    tokens: Vec<Token>,
    sourced: Vec<(Token, Arc<dyn TokenSource>)>,
    strategy: Option<Box<dyn RotationStrategy>>,
}

/// Builds a [`Fleet`] in code.
pub struct FleetBuilder {
    providers: Vec<ProviderEntry>,
    /// Provider names given to `sourced_token` that matched no provider.
    unmatched_sources: Vec<String>,
    strategy: Option<StrategyFactory>,
    clock: Arc<dyn Clock>,
    wait: WaitPolicy,
    seed: Option<u64>,
    client: Option<ClientBuilder>,
    store: Option<StoreFactory>,
}

impl std::fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("FleetBuilder")
            .field("providers", &names)
            .field("clock", &self.clock)
            .field("wait", &self.wait)
            .field("shared_store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for FleetBuilder {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            unmatched_sources: Vec::new(),
            strategy: None,
            clock: Arc::new(SystemClock),
            wait: WaitPolicy::Fail,
            seed: None,
            client: None,
            store: None,
        }
    }
}

impl FleetBuilder {
    /// Adds a provider with its tokens, named by its `type`.
    pub fn provider(self, provider: Arc<dyn Provider>, tokens: Vec<Token>) -> Self {
        let name = provider.kind().to_owned();
        self.named_provider(name, provider, tokens)
    }

    /// Adds a provider under a name of its own, for a second provider of one type.
    pub fn named_provider(
        mut self,
        name: impl Into<String>,
        provider: Arc<dyn Provider>,
        tokens: Vec<Token>,
    ) -> Self {
        self.providers.push(ProviderEntry {
            name: name.into(),
            provider,
            tokens,
            sourced: Vec::new(),
            strategy: None,
        });
        self
    }

    /// Adds a token whose secret `source` fetches (and refreshes before it
    /// expires) to the provider named `provider`, which must be added first.
    /// `token` carries the id and settings; make it with [`Token::sourced`].
    ///
    /// A name that matches no provider is reported by [`FleetBuilder::build`].
    pub fn sourced_token(
        mut self,
        provider: &str,
        token: Token,
        source: Arc<dyn TokenSource>,
    ) -> Self {
        match self.providers.iter_mut().find(|p| p.name == provider) {
            Some(entry) => entry.sourced.push((token, source)),
            None => self.unmatched_sources.push(provider.to_owned()),
        }
        self
    }

    /// Sets a factory for the strategy; each pool gets its own instance.
    /// Rate-aware rotation is the default.
    pub fn strategy<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> Box<dyn RotationStrategy> + Send + Sync + 'static,
    {
        self.strategy = Some(Arc::new(factory));
        self
    }

    /// Sets the clock of every pool.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the wait policy of every pool.
    pub fn wait(mut self, wait: WaitPolicy) -> Self {
        self.wait = wait;
        self
    }

    /// Fixes the random seed of every pool and client.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets a factory for the state store of each pool, called with the
    /// provider's name and the fleet's clock. Each pool keeps its state in
    /// memory by default.
    ///
    /// A store shared between processes, such as a Redis store, should
    /// give each provider its own key space, because two providers may
    /// have accounts of the same name.
    pub fn store<F>(mut self, factory: F) -> Self
    where
        F: Fn(&str, &Arc<dyn Clock>) -> Arc<dyn StateStore> + Send + Sync + 'static,
    {
        self.store = Some(Arc::new(factory));
        self
    }

    /// Sets the client settings (retries, backoff) of every provider.
    pub fn client(mut self, client: ClientBuilder) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the fleet.
    ///
    /// # Errors
    ///
    /// [`FleetError::NoStrategy`] without a strategy and without the
    /// `rate-aware` feature; [`FleetError::Client`] when the HTTP client
    /// cannot be built.
    pub fn build(self) -> Result<Fleet, FleetError> {
        if let Some(name) = self.unmatched_sources.first() {
            return Err(FleetError::UnknownProvider(name.clone()));
        }
        let http = default_http()?;
        let mut members = Vec::with_capacity(self.providers.len());
        for entry in self.providers {
            let strategy = match (entry.strategy, &self.strategy) {
                (Some(strategy), _) => strategy,
                (None, Some(factory)) => factory(),
                (None, None) => default_strategy().ok_or(FleetError::NoStrategy)?,
            };
            let mut pool = TokenPool::builder(entry.provider).tokens(entry.tokens);
            for (token, source) in entry.sourced {
                pool = pool.sourced_token(token, source);
            }
            let mut pool = pool
                .strategy(Arc::from(strategy))
                .clock(Arc::clone(&self.clock))
                .transport(Arc::new(ReqwestTransport::new(http.clone())))
                .wait(self.wait);
            if let Some(seed) = self.seed {
                pool = pool.seed(seed);
            }
            if let Some(factory) = &self.store {
                pool = pool.store(factory(&entry.name, &self.clock));
            }
            let pool = pool.build()?;
            let mut client = self.client.clone().unwrap_or_default();
            if let Some(seed) = self.seed {
                client = client.seed(seed);
            }
            let client = client.http(http.clone()).build(pool)?;
            members.push(Member {
                name: entry.name,
                client,
            });
        }
        Ok(Fleet {
            members: Arc::new(members),
        })
    }
}

#[allow(unreachable_code)]
fn default_strategy() -> Option<Box<dyn RotationStrategy>> {
    #[cfg(feature = "rate-aware")]
    return Some(Box::new(tokenfleet_rate_aware::RateAware::default()));
    None
}

impl Fleet {
    /// Starts building a fleet in code.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// Builds a fleet from a TOML file, reading tokens from their sources.
    ///
    /// # Errors
    ///
    /// [`FleetError::Config`] naming the file, line and key of an invalid
    /// entry or an unset token variable.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self, FleetError> {
        Self::from_config(config::load(path.as_ref())?, FleetBuilder::default())
    }

    /// Builds a fleet from TOML text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`Fleet::from_config_file`].
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, FleetError> {
        Self::from_config(config::parse(text, origin)?, FleetBuilder::default())
    }

    /// Builds a fleet from a parsed configuration, with the clock, seed and
    /// client settings of `base`.
    ///
    /// # Errors
    ///
    /// As [`Fleet::from_config_file`].
    pub fn from_config(config: FleetConfig, base: FleetBuilder) -> Result<Self, FleetError> {
        let mut builder = base.wait(config.wait);
        #[cfg(feature = "redis")]
        if let config::StoreConfig::Redis(redis) = &config.store {
            let store = Arc::new(redis.build(&config.origin)?);
            builder = builder.store(move |name, clock| {
                Arc::new(store.scoped(name).with_clock(Arc::clone(clock)))
            });
        }
        for provider in &config.providers {
            let tokens = provider.resolve_tokens(&config.origin)?;
            let sourced = provider.resolve_sourced(&config.origin)?;
            builder.providers.push(ProviderEntry {
                name: provider.name.clone(),
                provider: Arc::clone(&provider.provider),
                tokens,
                sourced,
                strategy: config.strategy_for_pool(),
            });
        }
        builder.build()
    }

    /// Returns the names of the providers, in configuration order.
    pub fn providers(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }

    /// Returns the client of a provider by name.
    pub fn client(&self, provider: &str) -> Option<&Client> {
        self.members
            .iter()
            .find(|m| m.name == provider)
            .map(|m| &m.client)
    }

    /// Returns the pool of a provider by name.
    pub fn pool(&self, provider: &str) -> Option<&TokenPool> {
        self.client(provider).map(Client::pool)
    }

    /// Returns the tokens of a provider with their limits and statuses.
    pub async fn tokens(&self, provider: &str) -> Vec<TokenSnapshot> {
        match self.pool(provider) {
            Some(pool) => pool.tokens().await,
            None => Vec::new(),
        }
    }

    /// Returns how many tokens of a provider are available.
    pub async fn available_count(&self, provider: &str) -> usize {
        match self.pool(provider) {
            Some(pool) => pool.available_count().await,
            None => 0,
        }
    }

    /// Returns when the first rate-limited token of a provider gets budget
    /// back, in epoch milliseconds.
    pub async fn earliest_reset_ms(&self, provider: &str) -> Option<u64> {
        self.pool(provider)?.earliest_reset_ms().await
    }
}
