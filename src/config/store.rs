//! The `[store]` table: where the pools keep their state.
//!
//! ```toml
//! [store]
//! type = "redis"                       # or "memory", the default
//! url = "redis://127.0.0.1:6379/"
//! prefix = "crawler"                   # optional, "tokenfleet" by default
//! password = { env = "REDIS_PASSWORD" } # optional
//! ca_file = "/etc/redis/ca.pem"        # optional, for rediss:// with a private CA
//! on_unavailable = "local"             # optional, "fail" by default
//! command_timeout = "1s"               # optional
//! lease_ttl = "2m"                     # optional
//! view_max_age = "20ms"                # optional, "0s" (exact views) by default
//! ```

#[cfg(feature = "redis")]
use std::time::Duration;

use toml::Value;

use super::{child, describe, quote_list, ConfigError, Parser, Segment};

/// The shortest `lease_ttl` accepted: a request of the client may take a
/// minute before its timeout, and its reservation must not lapse first.
const MIN_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

const STORE_TYPES: [&str; 2] = ["memory", "redis"];
const MEMORY_KEYS: [&str; 1] = ["type"];
#[cfg(feature = "redis")]
const REDIS_KEYS: [&str; 9] = [
    "type",
    "url",
    "prefix",
    "ca_file",
    "password",
    "on_unavailable",
    "command_timeout",
    "lease_ttl",
    "view_max_age",
];

/// The `[store]` table.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum StoreConfig {
    /// Each pool keeps its state in its own process (the default).
    #[default]
    Memory,
    /// The pools keep their state in Redis, shared with every process
    /// that uses the same server and prefix.
    #[cfg(feature = "redis")]
    Redis(Box<RedisStoreConfig>),
}

/// A `[store]` table of `type = "redis"`.
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// The settings, without the password from `password.env`, which is
    /// read when the fleet is built.
    pub settings: tokenfleet_redis::RedisConfig,
    /// The variable named by `password = { env = "..." }`.
    pub password_env: Option<String>,
    /// The line of `password`, for errors found when it is read.
    pub(crate) password_line: Option<usize>,
}

#[cfg(feature = "redis")]
impl RedisStoreConfig {
    /// Builds the store, reading the password from its variable.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] naming `store.password.env` when the
    /// variable is unset or empty.
    pub fn build(&self, origin: &str) -> Result<tokenfleet_redis::RedisStore, ConfigError> {
        let mut settings = self.settings.clone();
        if let Some(var) = &self.password_env {
            let password = match std::env::var(var) {
                Ok(value) if !value.is_empty() => value,
                _ => {
                    return Err(ConfigError {
                        file: origin.to_owned(),
                        line: self.password_line,
                        key: "store.password.env".to_owned(),
                        message: format!(
                            "environment variable {var} is not set or empty; export it with the \
                             Redis password, or remove `password`"
                        ),
                    })
                }
            };
            settings = settings.password(password.into());
        }
        // `parse` built a store from these settings once, so only the
        // password can differ, and a password is not checked here.
        tokenfleet_redis::RedisStore::new(settings).map_err(|error| ConfigError {
            file: origin.to_owned(),
            line: None,
            key: "store.url".to_owned(),
            message: error.to_string(),
        })
    }
}

impl Parser<'_> {
    pub(super) fn store(&self, value: &Value) -> Result<StoreConfig, ConfigError> {
        let path = vec![Segment::Key("store".into())];
        let Value::Table(table) = value else {
            return Err(self.error(
                &path,
                "expected a table such as `[store]` with `type = \"redis\"`",
            ));
        };
        let kind = match table.get("type") {
            None => "memory",
            Some(Value::String(kind)) if STORE_TYPES.contains(&kind.as_str()) => kind.as_str(),
            Some(other) => {
                let found = match other {
                    Value::String(kind) => format!("`{kind}`"),
                    other => describe(other).to_owned(),
                };
                return Err(self.error(
                    &child(&path, "type"),
                    format!(
                        "unknown store type {found}; valid types are {}",
                        quote_list(&STORE_TYPES)
                    ),
                ));
            }
        };
        match kind {
            "redis" => self.redis_store(table, &path),
            _ => {
                self.reject_unknown(table, &path, &MEMORY_KEYS, "key of the memory store")?;
                Ok(StoreConfig::Memory)
            }
        }
    }

    #[cfg(not(feature = "redis"))]
    fn redis_store(
        &self,
        _table: &toml::Table,
        path: &[Segment],
    ) -> Result<StoreConfig, ConfigError> {
        Err(self.error(
            &child(path, "type"),
            "the `redis` store needs tokenfleet built with its `redis` feature; enable it \
             in Cargo.toml, or use `type = \"memory\"`",
        ))
    }

    #[cfg(feature = "redis")]
    fn redis_store(
        &self,
        table: &toml::Table,
        path: &[Segment],
    ) -> Result<StoreConfig, ConfigError> {
        use tokenfleet_redis::{OnUnavailable, RedisConfig, RedisStore};

        self.reject_unknown(table, path, &REDIS_KEYS, "key of the redis store")?;
        let url =
            match table.get("url") {
                Some(Value::String(url)) if !url.trim().is_empty() => url.trim().to_owned(),
                Some(other) => {
                    return Err(self.error(
                        &child(path, "url"),
                        format!(
                            "expected a URL string such as \"redis://127.0.0.1:6379/\", found {}",
                            describe(other)
                        ),
                    ))
                }
                None => return Err(self.error(
                    path,
                    "missing `url`; add the server, such as `url = \"redis://127.0.0.1:6379/\"`",
                )),
            };
        let mut settings = RedisConfig::new(url);

        match table.get("prefix") {
            None => {}
            Some(Value::String(prefix)) if !prefix.trim().is_empty() => {
                settings = settings.prefix(prefix.trim());
            }
            Some(other) => {
                return Err(self.error(
                    &child(path, "prefix"),
                    format!(
                        "expected a non-empty string such as \"crawler\", found {}",
                        describe(other)
                    ),
                ))
            }
        }

        match table.get("ca_file") {
            None => {}
            Some(Value::String(path)) if !path.trim().is_empty() => {
                settings = settings.ca_file(path.trim());
            }
            Some(other) => {
                return Err(self.error(
                    &child(path, "ca_file"),
                    format!(
                        "expected the path of a PEM file such as \"/etc/redis/ca.pem\", found {}",
                        describe(other)
                    ),
                ))
            }
        }

        match table.get("on_unavailable") {
            None => {}
            Some(Value::String(mode)) if mode == "fail" => {
                settings = settings.on_unavailable(OnUnavailable::Fail);
            }
            Some(Value::String(mode)) if mode == "local" => {
                settings = settings.on_unavailable(OnUnavailable::Local);
            }
            Some(other) => {
                let found = match other {
                    Value::String(mode) => format!("{mode:?}"),
                    other => describe(other).to_owned(),
                };
                return Err(self.error(
                    &child(path, "on_unavailable"),
                    format!("expected \"fail\" or \"local\", found {found}"),
                ));
            }
        }

        if let Some(timeout) = self.store_duration(table, path, "command_timeout", false)? {
            settings = settings.command_timeout(timeout);
        }
        if let Some(ttl) = self.store_duration(table, path, "lease_ttl", false)? {
            // A reservation that lapses while its request is still out lets
            // another process spend the same unit, so the lease must outlast
            // the slowest request.
            if ttl < MIN_LEASE_TTL {
                return Err(self.error(
                    &child(path, "lease_ttl"),
                    format!(
                        "{} is shorter than a slow request may take; set at least \"{}s\" \
                         (the default is \"2m\")",
                        humantime::format_duration(ttl),
                        MIN_LEASE_TTL.as_secs()
                    ),
                ));
            }
            settings = settings.lease_ttl(ttl);
        }
        if let Some(age) = self.store_duration(table, path, "view_max_age", true)? {
            settings = settings.view_max_age(age);
        }

        let password_env = match table.get("password") {
            None => None,
            Some(Value::Table(source)) => match source.get("env") {
                Some(Value::String(var)) if super::is_env_name(var) && source.len() == 1 => {
                    Some(var.clone())
                }
                _ => {
                    return Err(self.error(
                        &child(path, "password"),
                        "expected `password = { env = \"VARIABLE\" }` naming the environment \
                         variable that contains the password",
                    ))
                }
            },
            // The value is probably the password itself, so it is not repeated.
            Some(_) => {
                return Err(self.error(
                    &child(path, "password"),
                    "write the password in an environment variable and name it here, such as \
                     `password = { env = \"REDIS_PASSWORD\" }`",
                ))
            }
        };

        // Checks the URL and the CA file now, so that an error points at
        // the line of its key.
        RedisStore::new(settings.clone()).map_err(|error| {
            let key = match error {
                tokenfleet_redis::RedisStoreError::CaFile { .. } => "ca_file",
                _ => "url",
            };
            self.error(&child(path, key), error.to_string())
        })?;

        Ok(StoreConfig::Redis(Box::new(RedisStoreConfig {
            settings,
            password_env,
            password_line: self.line(&child(path, "password")),
        })))
    }

    #[cfg(feature = "redis")]
    fn store_duration(
        &self,
        table: &toml::Table,
        path: &[Segment],
        key: &str,
        zero_allowed: bool,
    ) -> Result<Option<Duration>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => match humantime::parse_duration(text.trim()) {
                Ok(duration) if zero_allowed || !duration.is_zero() => Ok(Some(duration)),
                Ok(_) => Err(self.error(
                    &child(path, key),
                    "expected a duration longer than zero, such as \"1s\"",
                )),
                Err(error) => Err(self.error(
                    &child(path, key),
                    format!(
                        "invalid duration {text:?} ({error}); write it like \"500ms\", \"1s\" or \"2m\""
                    ),
                )),
            },
            Some(other) => Err(self.error(
                &child(path, key),
                format!(
                    "expected a duration string such as \"1s\", found {}",
                    describe(other)
                ),
            )),
        }
    }
}
