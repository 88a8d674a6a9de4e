//! The Bitbucket provider's settings, as a config file names them.

use std::fmt;
use std::num::NonZeroU64;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

use crate::estimate::Estimator;

/// The API base of Bitbucket Cloud.
pub const DEFAULT_BASE_URL: &str = "https://api.bitbucket.org/2.0";

/// The requests per window assumed when the config sets no `limit`: the
/// documented hourly budget of authenticated REST calls.
pub const DEFAULT_LIMIT: u64 = 1_000;

/// The length of Bitbucket's rolling rate-limit window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3_600);

/// The largest `limit` accepted. Bitbucket documents at most 10,000 requests
/// per hour, and the estimate keeps one timestamp per request of the window.
pub const MAX_LIMIT: u64 = 100_000;

/// The largest `window` accepted: one day.
const MAX_WINDOW_SECS: u64 = 86_400;

/// The form in which a token is sent on a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>`: repository, project and workspace
    /// access tokens and OAuth access tokens. Each token has a budget of
    /// its own.
    #[default]
    Bearer,
    /// `Authorization: Basic`, with the token written as `username:secret`:
    /// a Bitbucket username or Atlassian email, a colon, then an API token
    /// or app password. The budget belongs to the user, so the tokens of
    /// one user share it.
    Basic,
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer => f.write_str("bearer"),
            Self::Basic => f.write_str("basic"),
        }
    }
}

/// The Bitbucket Cloud provider.
///
/// Every field has a default, so a config table needs only
/// `type = "bitbucket"`:
///
/// ```toml
/// type = "bitbucket"
/// base_url = "https://api.bitbucket.org/2.0"   # optional
/// auth = "basic"                               # "bearer" (default) or "basic"
/// limit = 1000                                 # requests per window, optional
/// window = "1h"                                # optional: seconds, or "90s", "60m", "1h"
/// ```
///
/// Unknown keys are rejected, so a misspelt key fails loudly instead of
/// falling back to a default.
///
/// Bitbucket sends no remaining budget or reset time, so the provider keeps
/// its own estimate: a log of the requests it classified per account within
/// the last `window`. That log lives in this value, so every pool that
/// should share an estimate must share one provider value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Bitbucket {
    /// The REST API base. Tokens are sent only to this URL's host.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// The form in which tokens are sent: `bearer` or `basic`.
    #[serde(default)]
    pub auth: AuthScheme,
    /// The requests one account may make per window, until a response's
    /// `X-RateLimit-Limit` states another figure for that account.
    #[serde(default = "default_limit", deserialize_with = "deserialize_limit")]
    pub limit: NonZeroU64,
    /// The length of the rolling window, written as whole seconds or as a
    /// number with the unit `s`, `m` or `h`.
    #[serde(
        default = "default_window",
        serialize_with = "serialize_window",
        deserialize_with = "deserialize_window"
    )]
    pub window: Duration,
    /// The per-account request logs behind the budget estimate.
    #[serde(skip)]
    pub(crate) estimate: Estimator,
}

impl fmt::Debug for Bitbucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A base URL may carry credentials in its user-info part; leave them out.
        let mut base_url = self.base_url.clone();
        let _ = base_url.set_username("");
        let _ = base_url.set_password(None);
        f.debug_struct("Bitbucket")
            .field("base_url", &base_url.as_str())
            .field("auth", &self.auth)
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Bitbucket {
    /// Creates the provider for Bitbucket Cloud with bearer tokens and the
    /// default budget of 1,000 requests per rolling hour.
    pub fn new() -> Self {
        Self {
            base_url: default_base_url(),
            auth: AuthScheme::default(),
            limit: default_limit(),
            window: DEFAULT_WINDOW,
            estimate: Estimator::default(),
        }
    }

    /// Creates the provider for another API base, such as a local simulator.
    pub fn with_base_url(base_url: Url) -> Self {
        Self {
            base_url,
            ..Self::new()
        }
    }

    /// Sets how tokens are put on requests.
    pub fn auth(mut self, auth: AuthScheme) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the requests one account may make per window.
    pub fn limit(mut self, limit: NonZeroU64) -> Self {
        self.limit = limit;
        self
    }

    /// Sets the length of the rolling window. A window under one second is
    /// raised to one second.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.max(Duration::from_secs(1));
        self
    }

    /// Returns the window in milliseconds.
    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for Bitbucket {
    fn default() -> Self {
        Self::new()
    }
}

fn default_base_url() -> Url {
    Url::parse(DEFAULT_BASE_URL).expect("the default base URL is valid")
}

fn default_limit() -> NonZeroU64 {
    NonZeroU64::new(DEFAULT_LIMIT).expect("the default limit is not zero")
}

fn default_window() -> Duration {
    DEFAULT_WINDOW
}

fn deserialize_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroU64, D::Error> {
    let limit = u64::deserialize(deserializer)?;
    if limit > MAX_LIMIT {
        return Err(de::Error::custom(format!(
            "invalid limit {limit}: expected at most {MAX_LIMIT} requests per window \
             (Bitbucket documents at most 10000 per hour)"
        )));
    }
    NonZeroU64::new(limit).ok_or_else(|| {
        de::Error::custom(
            "invalid limit 0: expected the requests one account may make per window, \
             such as 1000",
        )
    })
}

fn serialize_window<S: Serializer>(window: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(window.as_secs())
}

fn deserialize_window<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(WindowVisitor)
}

struct WindowVisitor;

impl Visitor<'_> for WindowVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a window in whole seconds, or a string such as \"90s\", \"60m\" or \"1h\"")
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        window_from_secs(seconds, &seconds.to_string())
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        match u64::try_from(seconds) {
            Ok(seconds) => self.visit_u64(seconds),
            Err(_) => Err(E::custom(format!(
                "invalid window {seconds}: expected a positive number of seconds, such as 3600"
            ))),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        let seconds = parse_window_secs(text).ok_or_else(|| {
            E::custom(format!(
                "invalid window {text:?}: expected whole seconds or a number with the unit \
                 s, m or h, such as \"1h\""
            ))
        })?;
        window_from_secs(seconds, &format!("{text:?}"))
    }
}

/// Reads `"90"`, `"90s"`, `"60m"` or `"1h"` as seconds.
fn parse_window_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn window_from_secs<E: de::Error>(seconds: u64, written: &str) -> Result<Duration, E> {
    if seconds == 0 || seconds > MAX_WINDOW_SECS {
        return Err(E::custom(format!(
            "invalid window {written}: expected 1 second to 1 day; Bitbucket's window is \"1h\""
        )));
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_target_bitbucket_cloud() {
        let bitbucket = Bitbucket::new();
        assert_eq!(bitbucket.base_url.as_str(), "https://api.bitbucket.org/2.0");
        assert_eq!(bitbucket.auth, AuthScheme::Bearer);
        assert_eq!(bitbucket.limit.get(), 1_000);
        assert_eq!(bitbucket.window, Duration::from_secs(3_600));
    }

    #[test]
    fn setters_replace_settings() {
        let bitbucket = Bitbucket::new()
            .auth(AuthScheme::Basic)
            .limit(NonZeroU64::new(2_500).unwrap())
            .window(Duration::from_secs(60));
        assert_eq!(bitbucket.auth, AuthScheme::Basic);
        assert_eq!(bitbucket.limit.get(), 2_500);
        assert_eq!(bitbucket.window_ms(), 60_000);
    }

    #[test]
    fn window_setter_raises_zero() {
        let bitbucket = Bitbucket::new().window(Duration::ZERO);
        assert_eq!(bitbucket.window, Duration::from_secs(1));
    }

    #[test]
    fn window_strings_parse() {
        assert_eq!(parse_window_secs("3600"), Some(3_600));
        assert_eq!(parse_window_secs("90s"), Some(90));
        assert_eq!(parse_window_secs("60m"), Some(3_600));
        assert_eq!(parse_window_secs(" 1h "), Some(3_600));
        assert_eq!(parse_window_secs("1 h"), Some(3_600));
        assert_eq!(parse_window_secs("1d"), None);
        assert_eq!(parse_window_secs("h"), None);
        assert_eq!(parse_window_secs("-1h"), None);
        assert_eq!(parse_window_secs(""), None);
    }

    #[test]
    fn debug_hides_url_credentials() {
        let url = Url::parse("https://bot:hunter2@api.bitbucket.org/2.0").unwrap();
        let debug = format!("{:?}", Bitbucket::with_base_url(url));
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("bot"), "{debug}");
        assert!(debug.contains("api.bitbucket.org"), "{debug}");
    }
}
