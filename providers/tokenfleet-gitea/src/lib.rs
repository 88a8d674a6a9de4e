//! Gitea and Forgejo provider for tokenfleet: authentication, response classification, token validation and repository listings.
//!
//! [`Gitea`] implements [`tokenfleet_core::Provider`] for Gitea and its
//! fork Forgejo (Codeberg runs Forgejo), and registers under the `type`
//! name [`GITEA`], so a config file selects it with:
//!
//! ```toml
//! type = "gitea"
//! base_url = "https://codeberg.org/api/v1"   # optional; the default is https://gitea.com/api/v1
//! auth = "token"                             # optional; "token" (default) or "bearer"
//! ```
//!
//! # Limits
//!
//! Neither Gitea nor Forgejo has a built-in API rate limiter, and neither
//! sends rate-limit headers or has a status endpoint. A response without
//! limit headers therefore means "no known limit", and the pool lets
//! requests through without counting. Hosted instances may put a proxy
//! in front that answers 429. Every request is charged to one bucket,
//! [`buckets::API`].
//!
//! # Classification
//!
//! The checks run in this order, and the first match decides:
//!
//! | Response | Outcome |
//! |---|---|
//! | 401 (`token is required`, `user does not exist`) | `InvalidToken` |
//! | 429 with a remaining count of 0 and a reset | `PrimaryLimit` until the reset |
//! | 429 with `Retry-After` (seconds or an HTTP date) | `SecondaryLimit` for that long |
//! | any other 429 | `SecondaryLimit` without a wait: the pool backs off 60 s, doubling on repeats up to 15 min |
//! | 403 (missing scope, public-only token, missing permission) | `Forbidden`, no rotation |
//! | 5xx | `ServerError` |
//! | anything else | `Answered` |
//!
//! A throttle without a stated limit belongs to the token's account, so
//! it is read as a secondary limit: the account cools down, and the
//! budget it had (usually "no known limit") stays as it was.
//!
//! Limit headers are read when a proxy adds them, in either the
//! `X-RateLimit-{Limit,Remaining,Reset,Used}` or the
//! `RateLimit-{Limit,Remaining,Reset}` spelling. A reset is read as delta
//! seconds below 10^9, as epoch milliseconds from 10^11 and as epoch
//! seconds in between. Missing or garbled headers give no observation,
//! never a budget of zero.
//!
//! # Token validation
//!
//! Gitea 1.17 to 1.19 answer a request with an invalid token as if it were
//! anonymous (200 with public data or an empty list) instead of 401. The
//! probe therefore validates every token with `GET /user` before its first
//! use: 401 rejects the token, and 200 names the login, which becomes the
//! token's account unless the config declares one.
//!
//! NOTE: the probe needs the pool's transport. A pool built without one
//! sends no probe and cannot tell an invalid token from an anonymous
//! caller on those versions.

#![deny(missing_docs)]

mod classify;
mod config;
mod probe;
mod provider;
mod repos;

pub use config::{AuthScheme, Gitea, DEFAULT_BASE_URL};

/// The `type` name the Gitea provider registers under.
pub const GITEA: &str = "gitea";

/// The bucket every Gitea request is charged to.
pub mod buckets {
    use tokenfleet_core::Bucket;

    /// Every API request: Gitea keeps no separate budgets.
    pub const API: Bucket = Bucket::from_static("api");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenfleet_core::Provider;

    #[test]
    fn toml_table_builds_provider() {
        let text = r#"
            type = "gitea"
            base_url = "http://127.0.0.1:3000/api/v1"
            auth = "bearer"
        "#;
        let provider: Box<dyn Provider> = toml::from_str(text).unwrap();

        assert_eq!(provider.kind(), GITEA);
        assert_eq!(provider.base_url().as_str(), "http://127.0.0.1:3000/api/v1");
        assert_eq!(provider.default_bucket(), buckets::API);
    }

    #[test]
    fn toml_type_alone_uses_defaults() {
        let provider: Box<dyn Provider> = toml::from_str(r#"type = "gitea""#).unwrap();
        assert_eq!(provider.base_url().as_str(), "https://gitea.com/api/v1");
    }

    #[test]
    fn json_round_trip_names_every_field() {
        let text = r#"{"type": "gitea", "auth": "bearer", "user_agent": "ci/1"}"#;
        let provider: Box<dyn Provider> = serde_json::from_str(text).unwrap();

        let round_trip = serde_json::to_value(&provider).unwrap();
        let expected = serde_json::json!({
            "type": "gitea",
            "base_url": "https://gitea.com/api/v1",
            "auth": "bearer",
            "user_agent": "ci/1"
        });
        assert_eq!(round_trip, expected);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = r#"
            type = "gitea"
            base_uri = "http://127.0.0.1:3000/api/v1"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("unknown field `base_uri`"), "{message}");
        for key in ["base_url", "auth", "user_agent"] {
            assert!(message.contains(key), "{key} missing from: {message}");
        }
    }

    #[test]
    fn unknown_auth_scheme_is_rejected() {
        let text = r#"
            type = "gitea"
            auth = "basic"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("unknown variant `basic`"), "{message}");
        assert!(message.contains("token"), "{message}");
        assert!(message.contains("bearer"), "{message}");
    }

    #[test]
    fn base_url_without_http_scheme_is_rejected() {
        let text = r#"
            type = "gitea"
            base_url = "ftp://127.0.0.1/api/v1"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("ftp://127.0.0.1/api/v1"), "{message}");
        assert!(message.contains("http"), "{message}");
    }

    #[test]
    fn relative_base_url_is_rejected() {
        let text = r#"
            type = "gitea"
            base_url = "codeberg.org/api/v1"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        assert!(error.to_string().contains("codeberg.org/api/v1"), "{error}");
    }
}
