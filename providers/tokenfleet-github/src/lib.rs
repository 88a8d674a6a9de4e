//! GitHub provider for tokenfleet: buckets, headers, response classification and the status probe.
//!
//! [`Github`] implements [`tokenfleet_core::Provider`] for github.com and
//! for GitHub Enterprise Server, and registers under the `type` name
//! [`GITHUB`], so a config file selects it with:
//!
//! ```toml
//! type = "github"
//! base_url = "https://api.github.com"   # optional; GitHub Enterprise Server: https://HOST/api/v3
//! ```
//!
//! # Buckets
//!
//! GitHub keeps separate budgets per resource. Requests are charged to
//! `code_search` (`/search/code`), `search` (the other `/search/...`
//! endpoints), `graphql` (`POST /graphql`) or `core` (everything else).
//! The `x-ratelimit-resource` header of each response names the bucket the
//! server actually charged.
//!
//! # Classification
//!
//! GitHub signals a rate limit with 403 or 429. Only the headers and the
//! message text distinguish the primary limit (budget spent until
//! `x-ratelimit-reset`) from the secondary limit (a per-account abuse
//! limit, with an optional `retry-after`). The checks run in this order, and the first
//! match decides:
//!
//! | Response | Outcome |
//! |---|---|
//! | 401 | `InvalidToken` |
//! | 403/429 whose message names a secondary limit ("secondary rate", "abuse detection", "temporarily blocked from content creation") | `SecondaryLimit`, with `retry-after` |
//! | 403/429 with `x-ratelimit-remaining: 0` | `PrimaryLimit` until `x-ratelimit-reset` |
//! | 403/429 with `retry-after` | `SecondaryLimit`, with `retry-after` |
//! | 403 "Maximum number of login attempts exceeded" | `SecondaryLimit` without a wait, because the account is locked out for an unstated time |
//! | 403/429 "API rate limit exceeded" without a readable remaining count | `PrimaryLimit` with no known reset |
//! | any other 429 | `SecondaryLimit` without a wait |
//! | any other 403 (SAML SSO, missing permission, budget left) | `Forbidden` |
//! | 200 on the `graphql` bucket with an error of type `RATE_LIMITED` | `PrimaryLimit` |
//! | 5xx | `ServerError` |
//! | anything else | `Answered` |
//!
//! Messages are matched case-insensitively against the JSON `message`
//! field, or against the raw body when it is not JSON. The observation
//! comes from the `x-ratelimit-*` headers of every response. Missing or
//! garbled headers give no observation, never a budget of zero.
//!
//! Sources: GitHub's REST docs on
//! [exceeding the rate limit](https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit)
//! and [troubleshooting](https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api).
//!
//! # Probe
//!
//! The probe reads every bucket from `GET /rate_limit`, which costs no
//! primary budget. A 404 there means a GitHub Enterprise Server with rate
//! limiting turned off, reported as unlimited. When asked, the probe
//! learns the user id behind the token from `GET /user`, because tokens of
//! one user share one budget.

#![deny(missing_docs)]

mod app;
mod classify;
mod config;
mod probe;
mod provider;
mod repos;

pub use app::{read_private_key, GithubApp};
pub use config::{Github, DEFAULT_API_VERSION, DEFAULT_BASE_URL};

/// The `type` name the GitHub provider registers under.
pub const GITHUB: &str = "github";

/// The buckets GitHub keeps separate budgets for, as this provider names them.
pub mod buckets {
    use tokenfleet_core::Bucket;

    /// Most REST requests, and `GET /rate_limit`.
    pub const CORE: Bucket = Bucket::from_static("core");
    /// The search endpoints other than code search, counted per minute.
    pub const SEARCH: Bucket = Bucket::from_static("search");
    /// `GET /search/code`, counted per minute.
    pub const CODE_SEARCH: Bucket = Bucket::from_static("code_search");
    /// GraphQL queries, counted in points.
    pub const GRAPHQL: Bucket = Bucket::from_static("graphql");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenfleet_core::Provider;

    #[test]
    fn toml_table_builds_provider() {
        let text = r#"
            type = "github"
            base_url = "http://127.0.0.1:8080/api/v3"
        "#;
        let provider: Box<dyn Provider> = toml::from_str(text).unwrap();

        assert_eq!(provider.kind(), GITHUB);
        assert_eq!(provider.base_url().as_str(), "http://127.0.0.1:8080/api/v3");
        assert_eq!(provider.default_bucket(), buckets::CORE);
    }

    #[test]
    fn toml_type_alone_uses_defaults() {
        let provider: Box<dyn Provider> = toml::from_str(r#"type = "github""#).unwrap();
        assert_eq!(provider.base_url().as_str(), "https://api.github.com/");
    }

    #[test]
    fn json_table_builds_provider() {
        let text = r#"{"type": "github", "user_agent": "ci/1", "api_version": "2026-03-10"}"#;
        let provider: Box<dyn Provider> = serde_json::from_str(text).unwrap();

        let round_trip = serde_json::to_value(&provider).unwrap();
        let expected = serde_json::json!({
            "type": "github",
            "base_url": "https://api.github.com/",
            "user_agent": "ci/1",
            "api_version": "2026-03-10"
        });
        assert_eq!(round_trip, expected);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = r#"
            type = "github"
            base_uri = "http://127.0.0.1:8080"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("unknown field `base_uri`"), "{message}");
        for key in ["base_url", "user_agent", "api_version"] {
            assert!(message.contains(key), "{key} missing from: {message}");
        }
    }

    #[test]
    fn invalid_base_url_is_rejected() {
        let text = r#"
            type = "github"
            base_url = "not a url"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        assert!(error.to_string().contains("relative URL"), "{error}");
    }
}
