//! Settings of a [`RedisStore`](crate::RedisStore) and the errors of
//! building one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// The key prefix used when none is set.
pub const DEFAULT_PREFIX: &str = "tokenfleet";

/// The store's behaviour when Redis cannot be reached or does not respond
/// within the command timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnUnavailable {
    /// Fail the operation with an error naming the store and its URL.
    #[default]
    Fail,
    /// Keep working on an estimate local to this process, and go back to
    /// Redis once it responds again.
    Local,
}

impl OnUnavailable {
    /// Returns the name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Local => "local",
        }
    }
}

/// Settings of a Redis store.
///
/// `Debug` shows the URL with its password replaced by `***` and never the
/// `password` field's value.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server, such as `redis://127.0.0.1:6379/`. It may contain a
    /// user name and password, and a database number as its path.
    pub url: String,
    /// The password, when it is not in the URL. It replaces one that is.
    pub password: Option<SecretString>,
    /// The start of every key, so that several pools or programs can share
    /// one database.
    pub prefix: String,
    /// A PEM file of certificate authorities to trust for `rediss://`, in
    /// addition to the system's, for a server with a private certificate.
    pub ca_file: Option<PathBuf>,
    /// The behaviour when Redis is unavailable.
    pub on_unavailable: OnUnavailable,
    /// How long one command, including connecting, may take before it
    /// counts as failed.
    pub command_timeout: Duration,
    /// How long a reservation counts after it was made, unless its lease
    /// ends sooner. A process that crashes with reservations in flight
    /// keeps their budget reserved until then.
    pub lease_ttl: Duration,
    /// How long a token marked invalid stays marked for other processes.
    pub invalid_ttl: Duration,
    /// How long `OnUnavailable::Local` keeps to the local estimate after a
    /// failure before it tries Redis again.
    pub retry_interval: Duration,
    /// The maximum age of a cached budget view. An older one is read from
    /// Redis again, and zero (the default) reads it for every snapshot.
    ///
    /// Every reservation and settlement of this process refreshes the view
    /// it touched, so only changes made by other processes show late, by
    /// at most this long. Other processes' invalid-token marks are read
    /// with the same delay. Reservations stay atomic on the server whatever
    /// the age, so a late view can delay a choice but never overshoot a
    /// budget.
    pub view_max_age: Duration,
}

impl RedisConfig {
    /// Creates settings for the server at `url` with the defaults. They are
    /// the prefix `tokenfleet`, failing when Redis is unavailable, a 1 s
    /// command timeout and 2 min leases. Invalid marks are kept for a day,
    /// an unreachable server is tried again after 1 s, and every snapshot
    /// reads its views from Redis.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            ca_file: None,
            on_unavailable: OnUnavailable::Fail,
            command_timeout: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(120),
            invalid_ttl: Duration::from_secs(24 * 3600),
            retry_interval: Duration::from_secs(1),
            view_max_age: Duration::ZERO,
        }
    }

    /// Sets the password, replacing one in the URL.
    pub fn password(mut self, password: SecretString) -> Self {
        self.password = Some(password);
        self
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets a PEM file of certificate authorities to trust for `rediss://`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets what happens when Redis is unavailable.
    pub fn on_unavailable(mut self, mode: OnUnavailable) -> Self {
        self.on_unavailable = mode;
        self
    }

    /// Sets the command timeout.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets how long a reservation counts at most.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets how long an invalid mark is kept.
    pub fn invalid_ttl(mut self, ttl: Duration) -> Self {
        self.invalid_ttl = ttl;
        self
    }

    /// Sets how old a cached view may be; zero turns the cache off.
    pub fn view_max_age(mut self, age: Duration) -> Self {
        self.view_max_age = age;
        self
    }

    /// Sets the wait before Redis is tried again after a failure.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &scrub_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("prefix", &self.prefix)
            .field("ca_file", &self.ca_file)
            .field("on_unavailable", &self.on_unavailable)
            .field("command_timeout", &self.command_timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("invalid_ttl", &self.invalid_ttl)
            .field("retry_interval", &self.retry_interval)
            .field("view_max_age", &self.view_max_age)
            .finish_non_exhaustive()
    }
}

/// An error building a Redis store. Its messages show the URL with the
/// password replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL is not a valid Redis URL.
    #[error("invalid Redis URL {url}: {reason}; write it like redis://127.0.0.1:6379/")]
    InvalidUrl {
        /// The URL without its password.
        url: String,
        /// The problem.
        reason: String,
    },
    /// The URL requests TLS, which this build does not include.
    #[error(
        "the Redis URL {url} asks for TLS (rediss://), which this build does not include; \
         enable the `tls` feature of tokenfleet-redis (the `redis-tls` feature of tokenfleet), \
         or use redis:// on a trusted network"
    )]
    TlsUnsupported {
        /// The URL without its password.
        url: String,
    },
    /// The certificate authority file cannot be read.
    #[error("cannot read the Redis CA file {path}: {reason}; name a readable PEM file")]
    CaFile {
        /// The file.
        path: String,
        /// The reason it cannot be read.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid Redis store setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// The problem and the valid values.
        reason: String,
    },
}

/// Returns `url` with its password replaced by `***`. Text that does not
/// parse as a URL is not shown at all, because it may be a password.
pub fn scrub_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Setting a password fails only for URLs that cannot have
                // one, and this one has one.
                let _ = parsed.set_password(Some("***"));
            }
            // A unix-socket URL carries its password in the query (`?pass=`).
            if parsed.query().is_some() {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(name, value)| {
                        let secret = ["pass", "password", "user"]
                            .iter()
                            .any(|key| name.eq_ignore_ascii_case(key));
                        let value = if secret {
                            "***".to_owned()
                        } else {
                            value.into_owned()
                        };
                        (name.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "(an unparsable URL, not shown)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_unix_socket_password() {
        let shown = scrub_url("redis+unix:///run/redis.sock?db=2&pass=UnixPWleak99");
        assert!(!shown.contains("UnixPWleak99"), "{shown}");
        assert!(shown.contains("db=2"), "{shown}");
    }

    #[test]
    fn scrub_hides_password() {
        let shown = scrub_url("redis://user:hunter2@127.0.0.1:6379/0");
        assert_eq!(shown, "redis://user:***@127.0.0.1:6379/0");
    }

    #[test]
    fn scrub_keeps_url_without_password() {
        assert_eq!(
            scrub_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }

    #[test]
    fn scrub_hides_unparsable_text() {
        assert!(!scrub_url("hunter2 not a url").contains("hunter2"));
    }

    #[test]
    fn debug_hides_password() {
        let config = RedisConfig::new("redis://:hunter2@127.0.0.1/")
            .password(SecretString::from("swordfish"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("swordfish"), "{shown}");
    }
}
