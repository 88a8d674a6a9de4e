//! The generic provider's settings, as a config file names them.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// The header that carries the token unless `auth_header` names another.
pub const DEFAULT_AUTH_HEADER: &str = "Authorization";
/// The word written before the token unless `auth_scheme` sets another.
pub const DEFAULT_AUTH_SCHEME: &str = "Bearer";
/// The header that states the budget of one window, by default.
pub const DEFAULT_LIMIT_HEADER: &str = "X-RateLimit-Limit";
/// The header that states the budget left, by default.
pub const DEFAULT_REMAINING_HEADER: &str = "X-RateLimit-Remaining";
/// The header that states the end of the window, by default.
pub const DEFAULT_RESET_HEADER: &str = "X-RateLimit-Reset";
/// The header of a throttled response that states the wait, by default.
pub const DEFAULT_RETRY_AFTER_HEADER: &str = "Retry-After";
/// The bucket of requests that no `buckets` rule matches, by default.
pub const DEFAULT_BUCKET: &str = "default";

/// The format in which a reset header writes the end of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetFormat {
    /// Seconds since the Unix epoch, such as `1700003640`.
    #[default]
    EpochSeconds,
    /// Milliseconds since the Unix epoch, such as `1700003640000`.
    EpochMilliseconds,
    /// Seconds from the response's `Date` (or from its arrival, when the
    /// response has no `Date`), such as `3600`.
    SecondsFromNow,
    /// An HTTP date, such as `Tue, 14 Nov 2023 23:14:00 GMT`.
    HttpDate,
}

impl ResetFormat {
    /// Every format, in the order the documentation lists them.
    pub const ALL: [ResetFormat; 4] = [
        ResetFormat::EpochSeconds,
        ResetFormat::EpochMilliseconds,
        ResetFormat::SecondsFromNow,
        ResetFormat::HttpDate,
    ];

    /// Returns the name a config file uses for the format.
    pub fn name(self) -> &'static str {
        match self {
            ResetFormat::EpochSeconds => "epoch_seconds",
            ResetFormat::EpochMilliseconds => "epoch_milliseconds",
            ResetFormat::SecondsFromNow => "seconds_from_now",
            ResetFormat::HttpDate => "http_date",
        }
    }
}

/// The part of a status response that states the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFormat {
    /// In the same headers as every other response.
    #[default]
    Headers,
}

/// A rule that charges matching requests to a named bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BucketRule {
    /// The path below the base URL that the rule matches, such as
    /// `/search`. It matches whole segments: `/search` matches `/search`
    /// and `/search/code`, not `/searches`.
    pub path_prefix: String,
    /// The HTTP method the rule matches, such as `POST`; any method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The bucket the matching requests are charged to.
    pub bucket: String,
}

impl BucketRule {
    /// Creates a rule that charges every request below `path_prefix` to `bucket`.
    pub fn new(path_prefix: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self {
            path_prefix: path_prefix.into(),
            method: None,
            bucket: bucket.into(),
        }
    }

    /// Limits the rule to one HTTP method.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
}

/// The settings of a `type = "http"` provider: where the API lives, how a
/// token is sent, and which headers and statuses carry its limits.
///
/// Only `base_url` is required. Unknown keys are rejected, so a misspelt
/// key fails loudly instead of falling back to a default. The values are
/// checked when a [`Http`](crate::Http) provider is built from them.
///
/// Header names are matched case-insensitively.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpSettings {
    /// The API base, such as `https://api.example.com/v2`. Tokens are sent
    /// only to this URL's host. It has no default, because the provider
    /// serves no particular API.
    pub base_url: Url,

    /// The request header that carries the token (default `Authorization`).
    /// Not allowed together with `auth_query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// The word written before the token in `auth_header` (default
    /// `Bearer`). An empty string sends the token alone. Not allowed
    /// together with `auth_query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_scheme: Option<String>,
    /// The query parameter that carries the token, for APIs that accept
    /// no header. The token then appears in every request URL, where
    /// proxies and server logs may record it, so prefer a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_query: Option<String>,

    /// The response header with the budget of one window.
    #[serde(default = "default_limit_header")]
    pub limit_header: String,
    /// The response header with the budget left in the window.
    #[serde(default = "default_remaining_header")]
    pub remaining_header: String,
    /// The response header with the end of the window, in `reset_format`.
    #[serde(default = "default_reset_header")]
    pub reset_header: String,
    /// The response header with the budget spent in the window, when the
    /// API sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_header: Option<String>,
    /// The response header of a throttled response with the wait, in
    /// seconds or as an HTTP date.
    #[serde(default = "default_retry_after_header")]
    pub retry_after_header: String,
    /// The response header that names the bucket a response was charged
    /// to, when the API sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_header: Option<String>,
    /// The format in which `reset_header` writes the end of the window.
    #[serde(default)]
    pub reset_format: ResetFormat,

    /// The statuses of a throttled response (default `[429]`).
    #[serde(default = "default_throttle_statuses")]
    pub throttle_statuses: Vec<u16>,
    /// The statuses of a rejected token (default `[401]`).
    #[serde(default = "default_invalid_statuses")]
    pub invalid_statuses: Vec<u16>,
    /// The statuses of a refusal that is not a rate limit (default `[403]`).
    #[serde(default = "default_forbidden_statuses")]
    pub forbidden_statuses: Vec<u16>,

    /// The bucket of requests that no rule in `buckets` matches.
    #[serde(default = "default_bucket")]
    pub default_bucket: String,
    /// Rules that charge requests to other buckets; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<BucketRule>,

    /// A path below the base URL that the probe requests before a token's
    /// first use, to read its limits from the response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_endpoint: Option<String>,
    /// The part of the status response that states the limits.
    #[serde(default)]
    pub status_format: StatusFormat,
    /// Whether a status request costs no budget. By default it costs one
    /// request of the default bucket, like any other request.
    #[serde(default)]
    pub status_endpoint_free: bool,
    /// A path below the base URL whose JSON body names the token's account,
    /// so that tokens of one account share one budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_endpoint: Option<String>,
    /// The JSON pointer (RFC 6901) to the account in the body of
    /// `account_endpoint`, such as `/login` or `/user/id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_pointer: Option<String>,

    /// The path of an owner's first page of repositories, with `{owner}`
    /// where the owner goes, such as `/users/{owner}/repos?per_page=100`.
    /// Later pages follow the `Link` header's `rel="next"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories_path: Option<String>,
    /// The JSON pointer to the array of repositories in a page, such as
    /// `/items`. The whole body is the array when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_pointer: Option<String>,
    /// The field of a repository object with its name.
    #[serde(default = "default_name_field")]
    pub name_field: String,
    /// The field of a repository object with its owner and name.
    #[serde(default = "default_full_name_field")]
    pub full_name_field: String,
    /// The field of a repository object with its web page.
    #[serde(default = "default_url_field")]
    pub url_field: String,
}

impl HttpSettings {
    /// Creates settings for the API at `base_url`, with every other value at its default.
    pub fn new(base_url: Url) -> Self {
        Self {
            base_url,
            auth_header: None,
            auth_scheme: None,
            auth_query: None,
            limit_header: default_limit_header(),
            remaining_header: default_remaining_header(),
            reset_header: default_reset_header(),
            used_header: None,
            retry_after_header: default_retry_after_header(),
            bucket_header: None,
            reset_format: ResetFormat::default(),
            throttle_statuses: default_throttle_statuses(),
            invalid_statuses: default_invalid_statuses(),
            forbidden_statuses: default_forbidden_statuses(),
            default_bucket: default_bucket(),
            buckets: Vec::new(),
            status_endpoint: None,
            status_format: StatusFormat::default(),
            status_endpoint_free: false,
            account_endpoint: None,
            account_pointer: None,
            repositories_path: None,
            items_pointer: None,
            name_field: default_name_field(),
            full_name_field: default_full_name_field(),
            url_field: default_url_field(),
        }
    }

    /// Returns the header that carries the token, or `None` when the token
    /// goes in the query parameter `auth_query`.
    pub fn effective_auth_header(&self) -> Option<&str> {
        if self.auth_query.is_some() {
            return None;
        }
        Some(self.auth_header.as_deref().unwrap_or(DEFAULT_AUTH_HEADER))
    }

    /// Returns the word written before the token in the auth header; empty
    /// when the header carries the token alone.
    pub fn effective_auth_scheme(&self) -> &str {
        self.auth_scheme.as_deref().unwrap_or(DEFAULT_AUTH_SCHEME)
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A base URL may carry credentials in its user-info part, which the
        // provider rejects but a caller may still print; leave them out.
        let mut base_url = self.base_url.clone();
        let _ = base_url.set_username("");
        let _ = base_url.set_password(None);
        f.debug_struct("HttpSettings")
            .field("base_url", &base_url.as_str())
            .field("auth_header", &self.auth_header)
            .field("auth_scheme", &self.auth_scheme)
            .field("auth_query", &self.auth_query)
            .field("limit_header", &self.limit_header)
            .field("remaining_header", &self.remaining_header)
            .field("reset_header", &self.reset_header)
            .field("used_header", &self.used_header)
            .field("retry_after_header", &self.retry_after_header)
            .field("bucket_header", &self.bucket_header)
            .field("reset_format", &self.reset_format)
            .field("throttle_statuses", &self.throttle_statuses)
            .field("invalid_statuses", &self.invalid_statuses)
            .field("forbidden_statuses", &self.forbidden_statuses)
            .field("default_bucket", &self.default_bucket)
            .field("buckets", &self.buckets)
            .field("status_endpoint", &self.status_endpoint)
            .field("status_endpoint_free", &self.status_endpoint_free)
            .field("account_endpoint", &self.account_endpoint)
            .field("repositories_path", &self.repositories_path)
            .finish_non_exhaustive()
    }
}

fn default_limit_header() -> String {
    DEFAULT_LIMIT_HEADER.to_owned()
}

fn default_remaining_header() -> String {
    DEFAULT_REMAINING_HEADER.to_owned()
}

fn default_reset_header() -> String {
    DEFAULT_RESET_HEADER.to_owned()
}

fn default_retry_after_header() -> String {
    DEFAULT_RETRY_AFTER_HEADER.to_owned()
}

fn default_throttle_statuses() -> Vec<u16> {
    vec![429]
}

fn default_invalid_statuses() -> Vec<u16> {
    vec![401]
}

fn default_forbidden_statuses() -> Vec<u16> {
    vec![403]
}

fn default_bucket() -> String {
    DEFAULT_BUCKET.to_owned()
}

fn default_name_field() -> String {
    "name".to_owned()
}

fn default_full_name_field() -> String {
    "full_name".to_owned()
}

fn default_url_field() -> String {
    "html_url".to_owned()
}
