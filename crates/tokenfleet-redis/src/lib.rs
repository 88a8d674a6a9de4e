//! Shared pool state in Redis: budgets, reservations, cooldowns and
//! invalid-token marks that every process using one server sees alike.
//!
//! A crawl that outgrows one process runs many workers on the same tokens.
//! The provider counts their spending together, so each worker's own
//! estimate would overshoot. A [`RedisStore`] given to every worker's pool
//! keeps one estimate for all of them, and reserves budget atomically on
//! the server, so two workers never both take the last unit.
//!
//! ```no_run
//! # async fn run(pool: tokenfleet_core::TokenPoolBuilder) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tokenfleet_redis::{OnUnavailable, RedisConfig, RedisStore};
//!
//! let config = RedisConfig::new("redis://127.0.0.1:6379/")
//!     .prefix("crawler")
//!     .on_unavailable(OnUnavailable::Local);
//! let store = RedisStore::new(config)?.scoped("github");
//! let pool = pool.store(Arc::new(store)).build()?;
//! # let _ = pool;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod config;
mod keys;
mod scripts;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{scrub_url, OnUnavailable, RedisConfig, RedisStoreError, DEFAULT_PREFIX};
pub use store::RedisStore;
