//! Generic provider for tokenfleet: any HTTP API that states its rate limits in response headers.
//!
//! [`Http`] implements [`tokenfleet_core::Provider`] from [`HttpSettings`]
//! alone and registers under the `type` name [`HTTP`], so a config file
//! can pool tokens for an API that tokenfleet has no provider for:
//!
//! ```toml
//! type = "http"
//! base_url = "https://api.example.com/v2"
//! auth_header = "X-Api-Key"
//! auth_scheme = ""
//! remaining_header = "X-Quota-Left"
//! reset_format = "epoch_milliseconds"
//! throttle_statuses = [429, 503]
//! ```
//!
//! # Classification
//!
//! Statuses are read by the lists they are configured in; a status may be
//! in one list only. The first matching row decides:
//!
//! | Response | Outcome |
//! |---|---|
//! | a status in `invalid_statuses` (default 401) | `InvalidToken` |
//! | a status in `forbidden_statuses` (default 403) | `Forbidden` |
//! | a status in `throttle_statuses` (default 429), with remaining 0 or not stated, and a readable reset | `PrimaryLimit` until the reset |
//! | a status in `throttle_statuses` with a readable retry-after header | `SecondaryLimit` for that wait |
//! | any other status in `throttle_statuses` | `SecondaryLimit` without a wait, so the pool picks the cooldown |
//! | any other 5xx | `ServerError` |
//! | anything else | `Answered` |
//!
//! Every response's limit, remaining and reset headers become the
//! observation when all three are readable. A missing or garbled header
//! gives no observation, never a budget of zero. The reset is read in the
//! configured [`ResetFormat`]; the retry-after header may hold seconds or
//! an HTTP date.
//!
//! # Probe
//!
//! With `status_endpoint` set, the probe requests it before a token's
//! first use and reads its headers like any response; with
//! `account_endpoint` and `account_pointer`, it learns the token's
//! account, so that tokens of one account share one budget. Without
//! either, the pool sends one request per unknown account until a
//! response states the budget.
//!
//! # Limitations
//!
//! Listing is kept small: one path template, `Link` pagination, and three
//! configurable fields. Limits stated only in a response body are not read.

#![deny(missing_docs)]

mod classify;
mod config;
mod probe;
mod provider;
mod repos;
mod settings;

pub use config::{ConfigError, Http};
pub use settings::{
    BucketRule, HttpSettings, ResetFormat, StatusFormat, DEFAULT_AUTH_HEADER, DEFAULT_AUTH_SCHEME,
    DEFAULT_BUCKET, DEFAULT_LIMIT_HEADER, DEFAULT_REMAINING_HEADER, DEFAULT_RESET_HEADER,
    DEFAULT_RETRY_AFTER_HEADER,
};

/// The `type` name the generic provider registers under.
pub const HTTP: &str = "http";

#[cfg(test)]
mod tests {
    use super::*;
    use tokenfleet_core::Provider;

    fn from_toml(text: &str) -> Result<Box<dyn Provider>, String> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize::<_, Box<dyn Provider>>(deserializer)
            .map_err(|error| format!("{}: {}", error.path(), error.inner().message()))
    }

    #[test]
    fn toml_with_base_url_only_uses_defaults() {
        let provider = from_toml(
            r#"
            type = "http"
            base_url = "http://127.0.0.1:8080/api"
            "#,
        )
        .unwrap();

        assert_eq!(provider.kind(), HTTP);
        assert_eq!(provider.base_url().as_str(), "http://127.0.0.1:8080/api");
        assert_eq!(provider.default_bucket().as_str(), "default");

        let round_trip = serde_json::to_value(&provider).unwrap();
        let expected = serde_json::json!({
            "type": "http",
            "base_url": "http://127.0.0.1:8080/api",
            "limit_header": "X-RateLimit-Limit",
            "remaining_header": "X-RateLimit-Remaining",
            "reset_header": "X-RateLimit-Reset",
            "retry_after_header": "Retry-After",
            "reset_format": "epoch_seconds",
            "throttle_statuses": [429],
            "invalid_statuses": [401],
            "forbidden_statuses": [403],
            "default_bucket": "default",
            "status_format": "headers",
            "status_endpoint_free": false,
            "name_field": "name",
            "full_name_field": "full_name",
            "url_field": "html_url"
        });
        assert_eq!(round_trip, expected);
    }

    #[test]
    fn toml_full_table_builds_provider() {
        let provider = from_toml(
            r#"
            type = "http"
            base_url = "http://127.0.0.1:8080/v2"
            auth_header = "X-Api-Key"
            auth_scheme = ""
            limit_header = "X-Quota-Limit"
            remaining_header = "X-Quota-Left"
            reset_header = "X-Quota-Reset"
            used_header = "X-Quota-Used"
            retry_after_header = "X-Retry-In"
            bucket_header = "X-Quota-Bucket"
            reset_format = "epoch_milliseconds"
            throttle_statuses = [503]
            invalid_statuses = [401, 407]
            forbidden_statuses = []
            default_bucket = "core"
            status_endpoint = "/quota"
            status_endpoint_free = true
            account_endpoint = "/me"
            account_pointer = "/account/id"
            repositories_path = "/owners/{owner}/projects"
            items_pointer = "/items"
            name_field = "slug"
            full_name_field = "path"
            url_field = "web_url"

            [[buckets]]
            path_prefix = "/search"
            bucket = "search"

            [[buckets]]
            path_prefix = "/graphql"
            method = "POST"
            bucket = "graphql"
            "#,
        )
        .unwrap();
        assert_eq!(provider.default_bucket().as_str(), "core");
        let search = url::Url::parse("http://127.0.0.1:8080/v2/search/x").unwrap();
        assert_eq!(
            provider.bucket_for(&http::Method::GET, &search).as_str(),
            "search"
        );
    }

    #[test]
    fn missing_base_url_is_rejected() {
        let error = from_toml(r#"type = "http""#).unwrap_err();
        assert!(error.contains("missing field `base_url`"), "{error}");
    }

    #[test]
    fn unknown_key_is_rejected_with_choices() {
        let error = from_toml(
            r#"
            type = "http"
            base_url = "http://127.0.0.1:8080"
            remaining = "X-Left"
            "#,
        )
        .unwrap_err();
        assert!(error.contains("unknown field `remaining`"), "{error}");
        assert!(error.contains("remaining_header"), "{error}");
    }

    #[test]
    fn unknown_reset_format_names_choices() {
        let error = from_toml(
            r#"
            type = "http"
            base_url = "http://127.0.0.1:8080"
            reset_format = "unix"
            "#,
        )
        .unwrap_err();
        assert!(error.starts_with("reset_format"), "{error}");
        assert!(error.contains("unknown variant `unix`"), "{error}");
        for format in ResetFormat::ALL {
            assert!(error.contains(format.name()), "{error}");
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("limit_header = \"\"", "limit_header"),
            ("throttle_statuses = [429, 700]", "throttle_statuses"),
            ("invalid_statuses = [200]", "invalid_statuses"),
            ("throttle_statuses = [302]", "throttle_statuses"),
            ("invalid_statuses = [401, 429]", "invalid_statuses"),
            ("status_endpoint = \"quota\"", "status_endpoint"),
            (
                "auth_query = \"api_key\"\nauth_header = \"X-Key\"",
                "auth_query",
            ),
        ];
        for (line, key) in cases {
            let text = format!("type = \"http\"\nbase_url = \"http://127.0.0.1:8080\"\n{line}\n");
            let error = from_toml(&text).unwrap_err();
            assert!(
                error.contains(&format!("invalid `{key}`")),
                "{line}: {error}"
            );
        }
    }

    #[test]
    fn base_url_with_userinfo_or_other_scheme_is_rejected() {
        let error = from_toml(
            r#"
            type = "http"
            base_url = "https://bot:tok_CANARY@api.example.test"
            "#,
        )
        .unwrap_err();
        assert!(error.contains("invalid `base_url`"), "{error}");
        assert!(!error.contains("CANARY"), "{error}");

        let error = from_toml(
            r#"
            type = "http"
            base_url = "file:///etc/api"
            "#,
        )
        .unwrap_err();
        assert!(error.contains("invalid `base_url`"), "{error}");
        assert!(error.contains("scheme `file`"), "{error}");
    }

    #[test]
    fn debug_hides_userinfo() {
        let mut settings = HttpSettings::new(
            url::Url::parse("https://bot:tok_CANARY@api.example.test/v2").unwrap(),
        );
        settings.auth_header = Some("X-Api-Key".to_owned());
        let debug = format!("{settings:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(debug.contains("api.example.test"), "{debug}");
        assert!(debug.contains("X-Api-Key"), "{debug}");
    }
}
