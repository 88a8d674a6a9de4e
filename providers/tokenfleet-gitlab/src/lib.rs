//! GitLab provider for tokenfleet: auth headers, throttle buckets, response classification and project listings.
//!
//! [`Gitlab`] implements [`tokenfleet_core::Provider`] for gitlab.com and
//! self-managed GitLab, and registers under the `type` name [`GITLAB`], so a
//! config file selects it with:
//!
//! ```toml
//! type = "gitlab"
//! base_url = "https://gitlab.example.com/api/v4"   # optional; gitlab.com by default
//! auth = "bearer"                                  # optional; "private_token" by default
//! learn_account = true                             # optional; false by default
//! ```
//!
//! # Buckets
//!
//! GitLab's user and IP throttles (Rack::Attack) report the throttle that
//! applied in `RateLimit-Name`, such as `throttle_authenticated_api`. The
//! bucket is that name without the `throttle_` prefix and without the
//! `authenticated_` part, so `throttle_authenticated_api` is [`buckets::API`],
//! `throttle_authenticated_packages_api` is `packages_api` and
//! `throttle_authenticated_files_api` is `files_api`. Requests are charged
//! to `packages_api` (`/packages/...`, `/projects/:id/packages/...`,
//! `/groups/:id/-/packages/...`), `files_api`
//! (`/projects/:id/repository/files/...`) or `api` (everything else).
//!
//! NOTE: when an instance has the package or files throttle off, GitLab
//! counts those requests under `throttle_authenticated_api`. Their
//! responses then update `api`, and the pool sends `packages_api` and
//! `files_api` requests one at a time per account, because no response
//! states those budgets.
//!
//! Observations of an unauthenticated throttle (`throttle_unauthenticated_*`)
//! are dropped, because they count the caller's IP address, not the
//! token's user.
//!
//! # Classification
//!
//! The checks run in this order, and the first match decides:
//!
//! | Response | Outcome |
//! |---|---|
//! | 401 (`401 Unauthorized`, `invalid_token`) | `InvalidToken` |
//! | 403 (`403 Forbidden`, `insufficient_scope`, sudo, an IP block) | `Forbidden` |
//! | 429 with `RateLimit-Remaining: 0` | `PrimaryLimit` until `Retry-After`, else `RateLimit-Reset`, else `RateLimit-ResetTime` |
//! | 429 with a wait but budget left or no remaining count | `SecondaryLimit` with that wait |
//! | 429 without any rate-limit header (an application limit) | `SecondaryLimit` without a wait, so the account cools down with a backoff that grows on repeats |
//! | 5xx | `ServerError` |
//! | anything else | `Answered` |
//!
//! The observation comes from the `RateLimit-*` headers. `RateLimit-Limit`
//! is normalized to a 60-second window, so the budget of the real window
//! is read as `RateLimit-Observed + RateLimit-Remaining`. Missing or
//! garbled headers give no observation, never a budget of zero.
//!
//! Sources: GitLab's docs on
//! [user and IP rate limits](https://docs.gitlab.com/administration/settings/user_and_ip_rate_limits/#response-headers)
//! and [REST API status codes](https://docs.gitlab.com/api/rest/troubleshooting/#status-codes).
//!
//! # Accounts and the probe
//!
//! GitLab counts the authenticated API throttle per user, so two tokens of
//! one user share one budget. GitLab has no status endpoint. When a token
//! declares no `account` and `learn_account` is true, the probe reads the
//! user from `GET /user`, which costs one request of the user's budget and
//! whose headers state that budget. Otherwise each token is its own
//! account, and the pool sends one request at a time for it until a
//! response states the budget.

#![deny(missing_docs)]

mod classify;
mod config;
mod probe;
mod provider;
mod repos;

pub use config::{AuthScheme, Gitlab, DEFAULT_BASE_URL};

/// The `type` name the GitLab provider registers under.
pub const GITLAB: &str = "gitlab";

/// The buckets this provider charges requests to, named after GitLab's throttles.
pub mod buckets {
    use tokenfleet_core::Bucket;

    /// The authenticated API throttle (`throttle_authenticated_api`), which
    /// most requests count against.
    pub const API: Bucket = Bucket::from_static("api");
    /// The package registry throttle (`throttle_authenticated_packages_api`).
    pub const PACKAGES_API: Bucket = Bucket::from_static("packages_api");
    /// The repository files throttle (`throttle_authenticated_files_api`).
    pub const FILES_API: Bucket = Bucket::from_static("files_api");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenfleet_core::Provider;

    #[test]
    fn toml_table_builds_provider() {
        let text = r#"
            type = "gitlab"
            base_url = "http://127.0.0.1:8080/api/v4"
            auth = "bearer"
            learn_account = true
        "#;
        let provider: Box<dyn Provider> = toml::from_str(text).unwrap();

        assert_eq!(provider.kind(), GITLAB);
        assert_eq!(provider.base_url().as_str(), "http://127.0.0.1:8080/api/v4");
        assert_eq!(provider.default_bucket(), buckets::API);
    }

    #[test]
    fn toml_type_alone_uses_defaults() {
        let provider: Box<dyn Provider> = toml::from_str(r#"type = "gitlab""#).unwrap();
        assert_eq!(provider.base_url().as_str(), "https://gitlab.com/api/v4");

        let round_trip = serde_json::to_value(&provider).unwrap();
        let expected = serde_json::json!({
            "type": "gitlab",
            "base_url": "https://gitlab.com/api/v4",
            "auth": "private_token",
            "learn_account": false
        });
        assert_eq!(round_trip, expected);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = r#"
            type = "gitlab"
            learn_accounts = true
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        let message = error.to_string();

        assert!(
            message.contains("unknown field `learn_accounts`"),
            "{message}"
        );
        for key in ["base_url", "auth", "learn_account"] {
            assert!(message.contains(key), "{key} missing from: {message}");
        }
    }

    #[test]
    fn unknown_auth_scheme_is_rejected() {
        let text = r#"
            type = "gitlab"
            auth = "token"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("unknown variant `token`"), "{message}");
        assert!(message.contains("private_token"), "{message}");
        assert!(message.contains("bearer"), "{message}");
    }

    #[test]
    fn invalid_base_url_is_rejected() {
        let text = r#"
            type = "gitlab"
            base_url = "gitlab.example.com"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        assert!(error.to_string().contains("relative URL"), "{error}");
    }
}
