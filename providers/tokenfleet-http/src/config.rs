//! Checks [`HttpSettings`] and turns them into the [`Http`] provider.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderName, Method};
use serde::{Deserialize, Serialize};
use tokenfleet_core::Bucket;
use url::Url;

use crate::settings::{HttpSettings, ResetFormat, DEFAULT_AUTH_HEADER};

/// A setting of a `type = "http"` provider that is invalid, with the key
/// it belongs to and what a valid value looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Returns the key of the invalid setting, such as `limit_header` or `buckets[0].bucket`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The place of the token on a request.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// In a header, after `scheme` and a space, or alone when `scheme` is empty.
    Header { name: HeaderName, scheme: String },
    /// In a query parameter.
    Query { name: String },
}

/// The response headers that carry limits, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct LimitHeaders {
    pub(crate) limit: HeaderName,
    pub(crate) remaining: HeaderName,
    pub(crate) reset: HeaderName,
    pub(crate) used: Option<HeaderName>,
    pub(crate) retry_after: HeaderName,
    pub(crate) bucket: Option<HeaderName>,
    pub(crate) reset_format: ResetFormat,
}

/// A `buckets` rule, checked.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// The path prefix, without a trailing `/`.
    pub(crate) prefix: String,
    pub(crate) method: Option<Method>,
    pub(crate) bucket: Bucket,
}

/// The class a status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    Throttle,
    Invalid,
    Forbidden,
}

/// The generic provider for any API that states its rate limits in
/// response headers, built from checked [`HttpSettings`].
///
/// It registers under the `type` name [`HTTP`](crate::HTTP). Deserializing
/// it runs the same checks as [`Http::new`], so an invalid config file
/// fails with the key and the valid choices.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "HttpSettings", into = "HttpSettings")]
pub struct Http {
    settings: HttpSettings,
    pub(crate) auth: Auth,
    pub(crate) headers: LimitHeaders,
    pub(crate) statuses: BTreeMap<u16, StatusClass>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) default_bucket: Bucket,
}

impl Http {
    /// Checks the settings and builds the provider.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] naming the first invalid key. Examples: a
    /// base URL that is not plain `http` or `https`, an empty or invalid
    /// header name, a status outside 100–599 or in two status lists, a
    /// path that does not start with `/`, or two settings that contradict
    /// each other.
    pub fn new(settings: HttpSettings) -> Result<Self, ConfigError> {
        check_base_url(&settings.base_url)?;
        let auth = check_auth(&settings)?;

        let headers = LimitHeaders {
            limit: header_name("limit_header", &settings.limit_header)?,
            remaining: header_name("remaining_header", &settings.remaining_header)?,
            reset: header_name("reset_header", &settings.reset_header)?,
            used: optional_header_name("used_header", settings.used_header.as_deref())?,
            retry_after: header_name("retry_after_header", &settings.retry_after_header)?,
            bucket: optional_header_name("bucket_header", settings.bucket_header.as_deref())?,
            reset_format: settings.reset_format,
        };

        let statuses = check_statuses(&settings)?;
        let default_bucket = bucket_name("default_bucket", &settings.default_bucket)?;
        let rules = check_rules(&settings)?;
        check_endpoints(&settings)?;

        Ok(Self {
            settings,
            auth,
            headers,
            statuses,
            rules,
            default_bucket,
        })
    }

    /// Returns the settings the provider was built from.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Returns the class of a status, when it is in one of the status lists.
    pub(crate) fn status_class(&self, status: u16) -> Option<StatusClass> {
        self.statuses.get(&status).copied()
    }

    /// Returns the URL of `path_and_query` below the base URL, keeping the
    /// base path. `path_and_query` starts with `/`.
    pub(crate) fn endpoint(&self, path_and_query: &str) -> Result<Url, url::ParseError> {
        let base = self.settings.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path_and_query}"))
    }
}

impl TryFrom<HttpSettings> for Http {
    type Error = ConfigError;

    fn try_from(settings: HttpSettings) -> Result<Self, Self::Error> {
        Self::new(settings)
    }
}

impl From<Http> for HttpSettings {
    fn from(http: Http) -> Self {
        http.settings
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn check_base_url(url: &Url) -> Result<(), ConfigError> {
    const KEY: &str = "base_url";
    if !url.username().is_empty() || url.password().is_some() {
        // The URL is not quoted, because its user-info may be a secret.
        return Err(ConfigError::new(
            KEY,
            "the URL contains a user name or password; remove them and list the \
             secret under `tokens`",
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            KEY,
            format!(
                "{:?} has scheme `{}`; expected an http or https URL such as \
                 \"https://api.example.com\"",
                url.as_str(),
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(
            KEY,
            format!("{:?} has no host", url.as_str()),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            KEY,
            format!(
                "{:?} has a query or fragment; expected a base such as \
                 \"https://api.example.com/v2\"",
                url.as_str()
            ),
        ));
    }
    Ok(())
}

fn check_auth(settings: &HttpSettings) -> Result<Auth, ConfigError> {
    if let Some(name) = &settings.auth_query {
        if settings.auth_header.is_some() || settings.auth_scheme.is_some() {
            return Err(ConfigError::new(
                "auth_query",
                "set either `auth_query` or `auth_header`/`auth_scheme`, not both",
            ));
        }
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !valid {
            return Err(ConfigError::new(
                "auth_query",
                format!(
                    "{name:?} is not a query parameter name; use letters, digits, \
                     `-`, `.`, `_` or `~`, such as \"api_key\""
                ),
            ));
        }
        return Ok(Auth::Query { name: name.clone() });
    }

    let name = header_name(
        "auth_header",
        settings
            .auth_header
            .as_deref()
            .unwrap_or(DEFAULT_AUTH_HEADER),
    )?;
    let scheme = settings.effective_auth_scheme();
    if !scheme.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "auth_scheme",
            format!(
                "{scheme:?} is not a scheme word; use visible ASCII without spaces, \
                 such as \"Bearer\" or \"token\", or \"\" to send the token alone"
            ),
        ));
    }
    Ok(Auth::Header {
        name,
        scheme: scheme.to_owned(),
    })
}

fn header_name(key: &str, name: &str) -> Result<HeaderName, ConfigError> {
    if name.trim().is_empty() {
        return Err(ConfigError::new(
            key,
            "the header name is empty; name a header such as \"X-RateLimit-Remaining\"",
        ));
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        ConfigError::new(
            key,
            format!(
                "{name:?} is not a valid header name; use letters, digits and `-`, \
                 such as \"X-RateLimit-Remaining\""
            ),
        )
    })
}

fn optional_header_name(key: &str, name: Option<&str>) -> Result<Option<HeaderName>, ConfigError> {
    name.map(|name| header_name(key, name)).transpose()
}

fn check_statuses(settings: &HttpSettings) -> Result<BTreeMap<u16, StatusClass>, ConfigError> {
    let lists = [
        (
            "throttle_statuses",
            &settings.throttle_statuses,
            StatusClass::Throttle,
        ),
        (
            "invalid_statuses",
            &settings.invalid_statuses,
            StatusClass::Invalid,
        ),
        (
            "forbidden_statuses",
            &settings.forbidden_statuses,
            StatusClass::Forbidden,
        ),
    ];

    let mut classes: BTreeMap<u16, (StatusClass, &str)> = BTreeMap::new();
    for (key, statuses, class) in lists {
        for &status in statuses {
            if !(100..=599).contains(&status) {
                return Err(ConfigError::new(
                    key,
                    format!("{status} is not an HTTP status; expected a number from 100 to 599"),
                ));
            }
            // A success or redirect in these lists would retire or throttle
            // every token that is served normally.
            if status < 400 {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "{status} is not an error status; list 4xx or 5xx statuses such as \
                         429 or 503"
                    ),
                ));
            }
            match classes.get(&status) {
                Some((other, other_key)) if *other != class => {
                    return Err(ConfigError::new(
                        key,
                        format!(
                            "status {status} is also in `{other_key}`; a status may \
                             belong to one list only"
                        ),
                    ));
                }
                _ => {
                    classes.insert(status, (class, key));
                }
            }
        }
    }
    Ok(classes
        .into_iter()
        .map(|(status, (class, _))| (status, class))
        .collect())
}

fn bucket_name(key: &str, name: &str) -> Result<Bucket, ConfigError> {
    if name.trim().is_empty() {
        return Err(ConfigError::new(
            key,
            "the bucket name is empty; name a bucket such as \"default\" or \"search\"",
        ));
    }
    Ok(Bucket::new(name))
}

fn check_rules(settings: &HttpSettings) -> Result<Vec<Rule>, ConfigError> {
    let mut rules = Vec::with_capacity(settings.buckets.len());
    for (index, rule) in settings.buckets.iter().enumerate() {
        let key = |field: &str| format!("buckets[{index}].{field}");

        check_path(&key("path_prefix"), &rule.path_prefix)?;
        if rule.path_prefix.contains('?') {
            return Err(ConfigError::new(
                key("path_prefix"),
                format!(
                    "{:?} has a query; a prefix matches paths only",
                    rule.path_prefix
                ),
            ));
        }
        let method = match &rule.method {
            Some(name) => Some(http_method(&key("method"), name)?),
            None => None,
        };
        let bucket = bucket_name(&key("bucket"), &rule.bucket)?;

        rules.push(Rule {
            prefix: rule.path_prefix.trim_end_matches('/').to_owned(),
            method,
            bucket,
        });
    }
    Ok(rules)
}

/// Parses a method name in any case, such as `post`.
fn http_method(key: &str, name: &str) -> Result<Method, ConfigError> {
    Method::from_bytes(name.to_ascii_uppercase().as_bytes()).map_err(|_| {
        ConfigError::new(
            key,
            format!("{name:?} is not an HTTP method; use one such as \"GET\" or \"POST\""),
        )
    })
}

/// Checks a path below the base URL: it starts with `/`, and has no
/// `..` segment, fragment or whitespace that could move it elsewhere.
fn check_path(key: &str, path: &str) -> Result<(), ConfigError> {
    let path_only = path.split('?').next().unwrap_or_default();
    let valid = path.starts_with('/')
        && !path.contains('#')
        && !path.chars().any(char::is_whitespace)
        && !path_only.split('/').any(|segment| segment == "..");
    if valid {
        return Ok(());
    }
    Err(ConfigError::new(
        key,
        format!(
            "{path:?} is not a path below the base URL; write one that starts with `/`, \
             such as \"/rate_limit\", without `..`, `#` or spaces"
        ),
    ))
}

fn check_pointer(key: &str, pointer: &str) -> Result<(), ConfigError> {
    if pointer.starts_with('/') {
        return Ok(());
    }
    Err(ConfigError::new(
        key,
        format!("{pointer:?} is not a JSON pointer; write one such as \"/login\" or \"/user/id\""),
    ))
}

fn check_field(key: &str, field: &str) -> Result<(), ConfigError> {
    if field.trim().is_empty() {
        return Err(ConfigError::new(
            key,
            "the field name is empty; name a field of the repository object, such as \"name\"",
        ));
    }
    Ok(())
}

fn check_endpoints(settings: &HttpSettings) -> Result<(), ConfigError> {
    if let Some(path) = &settings.status_endpoint {
        check_path("status_endpoint", path)?;
    }

    match (&settings.account_endpoint, &settings.account_pointer) {
        (Some(path), Some(pointer)) => {
            check_path("account_endpoint", path)?;
            check_pointer("account_pointer", pointer)?;
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "account_pointer",
                "it is required with `account_endpoint`; add a JSON pointer to the account, \
                 such as \"/login\"",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "account_endpoint",
                "it is required with `account_pointer`; add the path whose body the pointer \
                 reads, such as \"/user\"",
            ));
        }
        (None, None) => {}
    }

    if let Some(path) = &settings.repositories_path {
        check_path("repositories_path", path)?;
        if !path.contains("{owner}") {
            return Err(ConfigError::new(
                "repositories_path",
                format!(
                    "{path:?} has no `{{owner}}`; write one such as \"/users/{{owner}}/repos\""
                ),
            ));
        }
    }
    if let Some(pointer) = &settings.items_pointer {
        check_pointer("items_pointer", pointer)?;
    }
    check_field("name_field", &settings.name_field)?;
    check_field("full_name_field", &settings.full_name_field)?;
    check_field("url_field", &settings.url_field)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BucketRule;

    fn settings() -> HttpSettings {
        HttpSettings::new(Url::parse("https://api.example.test/v2").unwrap())
    }

    fn error(settings: HttpSettings) -> ConfigError {
        Http::new(settings).expect_err("the settings are invalid")
    }

    #[test]
    fn defaults_build() {
        let http = Http::new(settings()).unwrap();
        assert_eq!(http.default_bucket.as_str(), "default");
        assert_eq!(http.status_class(429), Some(StatusClass::Throttle));
        assert_eq!(http.status_class(401), Some(StatusClass::Invalid));
        assert_eq!(http.status_class(403), Some(StatusClass::Forbidden));
        assert_eq!(http.status_class(404), None);
        assert_eq!(http.headers.limit.as_str(), "x-ratelimit-limit");
        assert_eq!(http.headers.retry_after.as_str(), "retry-after");
        let Auth::Header { name, scheme } = &http.auth else {
            panic!("the default auth is a header");
        };
        assert_eq!(name.as_str(), "authorization");
        assert_eq!(scheme, "Bearer");
    }

    #[test]
    fn base_url_with_userinfo_is_rejected() {
        let mut settings = settings();
        settings.base_url = Url::parse("https://bot:s3cret-CANARY@api.example.test").unwrap();
        let error = error(settings);
        assert_eq!(error.key(), "base_url");
        let text = error.to_string();
        assert!(text.contains("user name or password"), "{text}");
        assert!(!text.contains("CANARY"), "{text}");
    }

    #[test]
    fn base_url_other_scheme_is_rejected() {
        let mut settings = settings();
        settings.base_url = Url::parse("ftp://files.example.test/api").unwrap();
        let error = error(settings);
        assert_eq!(error.key(), "base_url");
        assert!(error.to_string().contains("scheme `ftp`"), "{error}");
    }

    #[test]
    fn base_url_with_query_is_rejected() {
        let mut settings = settings();
        settings.base_url = Url::parse("https://api.example.test/v2?x=1").unwrap();
        assert_eq!(error(settings).key(), "base_url");
    }

    type Change = fn(&mut HttpSettings);

    #[test]
    fn empty_header_names_are_rejected() {
        let cases: [(&str, Change); 6] = [
            ("limit_header", |s| s.limit_header = String::new()),
            ("remaining_header", |s| s.remaining_header = " ".to_owned()),
            ("reset_header", |s| s.reset_header = String::new()),
            ("used_header", |s| s.used_header = Some(String::new())),
            ("retry_after_header", |s| {
                s.retry_after_header = String::new()
            }),
            ("bucket_header", |s| s.bucket_header = Some(String::new())),
        ];
        for (key, change) in cases {
            let mut settings = settings();
            change(&mut settings);
            let error = error(settings);
            assert_eq!(error.key(), key);
            assert!(error.to_string().contains("empty"), "{error}");
        }
    }

    #[test]
    fn invalid_header_name_is_rejected() {
        let mut settings = settings();
        settings.auth_header = Some("X Api Key".to_owned());
        let error = error(settings);
        assert_eq!(error.key(), "auth_header");
        assert!(error.to_string().contains("\"X Api Key\""), "{error}");
    }

    #[test]
    fn status_out_of_range_is_rejected() {
        for status in [0, 99, 600, 1000] {
            let mut settings = settings();
            settings.throttle_statuses = vec![429, status];
            let error = error(settings);
            assert_eq!(error.key(), "throttle_statuses");
            assert!(error.to_string().contains(&status.to_string()), "{error}");
            assert!(error.to_string().contains("100 to 599"), "{error}");
        }
    }

    #[test]
    fn overlapping_statuses_are_rejected() {
        let mut settings = settings();
        settings.invalid_statuses = vec![401, 429];
        let error = error(settings);
        assert_eq!(error.key(), "invalid_statuses");
        let text = error.to_string();
        assert!(text.contains("429"), "{text}");
        assert!(text.contains("throttle_statuses"), "{text}");

        let mut settings = self::settings();
        settings.forbidden_statuses = vec![401];
        assert_eq!(error_key(settings), "forbidden_statuses");
    }

    fn error_key(settings: HttpSettings) -> String {
        error(settings).key().to_owned()
    }

    #[test]
    fn repeated_status_in_one_list_is_allowed() {
        let mut settings = settings();
        settings.throttle_statuses = vec![429, 429, 503];
        let http = Http::new(settings).unwrap();
        assert_eq!(http.status_class(503), Some(StatusClass::Throttle));
    }

    #[test]
    fn auth_query_excludes_auth_header() {
        let mut settings = settings();
        settings.auth_query = Some("api_key".to_owned());
        settings.auth_scheme = Some(String::new());
        assert_eq!(error_key(settings), "auth_query");

        let mut settings = self::settings();
        settings.auth_query = Some("api key".to_owned());
        assert_eq!(error_key(settings), "auth_query");

        let mut settings = self::settings();
        settings.auth_query = Some("api_key".to_owned());
        let http = Http::new(settings).unwrap();
        assert!(matches!(&http.auth, Auth::Query { name } if name == "api_key"));
    }

    #[test]
    fn auth_scheme_with_space_is_rejected() {
        let mut settings = settings();
        settings.auth_scheme = Some("Bearer token".to_owned());
        assert_eq!(error_key(settings), "auth_scheme");
    }

    #[test]
    fn bucket_rules_are_checked() {
        let mut settings = settings();
        settings.buckets = vec![BucketRule::new("search", "search")];
        assert_eq!(error_key(settings), "buckets[0].path_prefix");

        let mut settings = self::settings();
        settings.buckets = vec![
            BucketRule::new("/search", "search"),
            BucketRule::new("/graphql", "graphql").method("PO ST"),
        ];
        assert_eq!(error_key(settings), "buckets[1].method");

        let mut settings = self::settings();
        settings.buckets = vec![BucketRule::new("/search", "")];
        assert_eq!(error_key(settings), "buckets[0].bucket");

        let mut settings = self::settings();
        settings.buckets = vec![BucketRule::new("/search?q=x", "search")];
        assert_eq!(error_key(settings), "buckets[0].path_prefix");

        let mut settings = self::settings();
        settings.buckets = vec![BucketRule::new("/search", "search").method("")];
        assert_eq!(error_key(settings), "buckets[0].method");

        let mut settings = self::settings();
        settings.default_bucket = String::new();
        assert_eq!(error_key(settings), "default_bucket");
    }

    #[test]
    fn endpoint_paths_are_checked() {
        let mut settings = settings();
        settings.status_endpoint = Some("rate_limit".to_owned());
        assert_eq!(error_key(settings), "status_endpoint");

        let mut settings = self::settings();
        settings.status_endpoint = Some("/../admin".to_owned());
        assert_eq!(error_key(settings), "status_endpoint");

        let mut settings = self::settings();
        settings.account_endpoint = Some("/user".to_owned());
        assert_eq!(error_key(settings), "account_pointer");

        let mut settings = self::settings();
        settings.account_pointer = Some("/login".to_owned());
        assert_eq!(error_key(settings), "account_endpoint");

        let mut settings = self::settings();
        settings.account_endpoint = Some("/user".to_owned());
        settings.account_pointer = Some("login".to_owned());
        assert_eq!(error_key(settings), "account_pointer");

        let mut settings = self::settings();
        settings.repositories_path = Some("/users/repos".to_owned());
        assert_eq!(error_key(settings), "repositories_path");

        let mut settings = self::settings();
        settings.items_pointer = Some("items".to_owned());
        assert_eq!(error_key(settings), "items_pointer");

        let mut settings = self::settings();
        settings.url_field = String::new();
        assert_eq!(error_key(settings), "url_field");
    }

    #[test]
    fn endpoint_keeps_base_path() {
        let http = Http::new(settings()).unwrap();
        assert_eq!(
            http.endpoint("/status").unwrap().as_str(),
            "https://api.example.test/v2/status"
        );

        let mut slash = self::settings();
        slash.base_url = Url::parse("https://api.example.test/v2/").unwrap();
        let http = Http::new(slash).unwrap();
        assert_eq!(
            http.endpoint("/users/a/repos?per_page=100")
                .unwrap()
                .as_str(),
            "https://api.example.test/v2/users/a/repos?per_page=100"
        );
    }
}
