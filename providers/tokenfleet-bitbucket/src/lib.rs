//! Bitbucket Cloud provider for tokenfleet: auth forms, response
//! classification, a budget estimate of its own, and workspace listings.
//!
//! [`Bitbucket`] implements [`tokenfleet_core::Provider`] for Bitbucket
//! Cloud's REST API 2.0 and registers under the `type` name [`BITBUCKET`],
//! so a config file selects it with:
//!
//! ```toml
//! type = "bitbucket"
//! auth = "bearer"     # access tokens and OAuth; "basic" for `username:secret`
//! limit = 1000        # requests per account per window, optional
//! window = "1h"       # optional
//! ```
//!
//! # Auth forms
//!
//! With `auth = "bearer"` (the default) each token is sent as
//! `Authorization: Bearer <token>`: repository, project and workspace
//! access tokens, and OAuth access tokens. Each access token has its own
//! budget. With `auth = "basic"` each token is written `username:secret`
//! (a Bitbucket username or Atlassian email, then an API token or app
//! password) and sent as HTTP basic authentication. Bitbucket charges those
//! requests to the user, so the pool charges every token of one username
//! to one account. The pool learns that account from the probe, which it
//! runs before first use when it has a transport, as the client's pools
//! do. A pool built without one should declare each token's account, as
//! [`Bitbucket::account_of`] returns it.
//!
//! # Budget estimate
//!
//! Bitbucket counts requests in a rolling one-hour window and sends no
//! remaining budget or reset time. Access tokens on the scaled
//! `/2.0/repositories/*` endpoints get `X-RateLimit-Limit`, and nothing
//! else states a number. The provider therefore keeps a log of the
//! requests it classified per account within the last window. Every
//! verdict carries an estimate made from it:
//!
//! - the limit: `limit` from the config, or the last `X-RateLimit-Limit`;
//! - the remaining budget: the limit minus the logged requests;
//! - the reset: when the oldest logged request leaves the window and frees a unit.
//!
//! # Limitations
//!
//! The estimate is kept per process and per provider value. Requests that
//! other programs send with the same token or user stay invisible until
//! Bitbucket answers 429. The provider then backs the account off: 60 s,
//! doubling on each further 429, up to one window.
//!
//! # Classification
//!
//! | Response | Outcome |
//! |---|---|
//! | 401 (JSON `Token is invalid, expired, or not supported for this endpoint.` for bearer, plain-text `Login failed due to incorrect login credentials or method.` for basic) | `InvalidToken` |
//! | 429 (plain-text `Rate limit for this resource has been exceeded`) | `PrimaryLimit`: until `Retry-After` when sent; else, when the log contains the whole limit, until its oldest request leaves the window; else (another program spent the budget) for a backoff of 60 s that doubles on each further 429, up to one window |
//! | 403 (`{"type":"error","error":{"message":"Forbidden"}}`, a missing scope) | `Forbidden` |
//! | 5xx | `ServerError` |
//! | anything else | `Answered` |
//!
//! Every response except 401 and 429 is logged as a request the server
//! counted and carries the estimate as its observation.
//!
//! The window, the default of 1,000 requests per hour and the scaled limits
//! of 1,000 to 10,000 on `/2.0/repositories/*` are from Atlassian's
//! [API request limits](https://support.atlassian.com/bitbucket-cloud/docs/api-request-limits/).
//! The response bodies are as captured in public bug reports, because
//! Atlassian does not document them.
//!
//! # Probe
//!
//! Bitbucket has no status endpoint, and `GET /2.0/user` would spend a
//! request. The probe sends nothing: it learns a basic-auth token's account
//! from its username, and rejects a basic-auth token without `username:`.

#![deny(missing_docs)]

mod auth;
mod classify;
mod config;
mod estimate;
mod provider;
mod repos;

pub use auth::{TokenFormatError, TokenProblem};
pub use config::{
    AuthScheme, Bitbucket, DEFAULT_BASE_URL, DEFAULT_LIMIT, DEFAULT_WINDOW, MAX_LIMIT,
};

/// The `type` name the Bitbucket provider registers under.
pub const BITBUCKET: &str = "bitbucket";

/// The buckets of the Bitbucket provider.
pub mod buckets {
    use tokenfleet_core::Bucket;

    /// Every request, named after the resource group in `X-RateLimit-Resource`.
    pub const API: Bucket = Bucket::from_static("api");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenfleet_core::Provider;

    #[test]
    fn toml_table_builds_provider() {
        let text = r#"
            type = "bitbucket"
            base_url = "http://127.0.0.1:8080/2.0"
            auth = "basic"
            limit = 2500
            window = "30m"
        "#;
        let provider: Box<dyn Provider> = toml::from_str(text).unwrap();

        assert_eq!(provider.kind(), BITBUCKET);
        assert_eq!(provider.base_url().as_str(), "http://127.0.0.1:8080/2.0");
        assert_eq!(provider.default_bucket(), buckets::API);
        let debug = format!("{provider:?}");
        assert!(debug.contains("Basic"), "{debug}");
        assert!(debug.contains("2500"), "{debug}");
        assert!(debug.contains("1800s"), "{debug}");
    }

    #[test]
    fn toml_type_alone_uses_defaults() {
        let provider: Box<dyn Provider> = toml::from_str(r#"type = "bitbucket""#).unwrap();
        let round_trip = serde_json::to_value(&provider).unwrap();
        let expected = serde_json::json!({
            "type": "bitbucket",
            "base_url": "https://api.bitbucket.org/2.0",
            "auth": "bearer",
            "limit": 1000,
            "window": 3600
        });
        assert_eq!(round_trip, expected);
    }

    #[test]
    fn window_accepts_seconds_and_units() {
        for (written, seconds) in [
            ("60", 60),
            ("\"90s\"", 90),
            ("\"60m\"", 3600),
            ("\"2h\"", 7200),
        ] {
            let text = format!("type = \"bitbucket\"\nwindow = {written}");
            let provider: Box<dyn Provider> = toml::from_str(&text).unwrap();
            let json = serde_json::to_value(&provider).unwrap();
            assert_eq!(json["window"], seconds, "{written}");
        }
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = r#"
            type = "bitbucket"
            auth_scheme = "basic"
        "#;
        let error = toml::from_str::<Box<dyn Provider>>(text).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("unknown field `auth_scheme`"), "{message}");
        for key in ["base_url", "auth", "limit", "window"] {
            assert!(message.contains(key), "{key} missing from: {message}");
        }
    }

    #[test]
    fn invalid_values_are_rejected_with_fix() {
        let cases = [
            ("auth = \"token\"", "unknown variant `token`"),
            ("limit = 0", "invalid limit 0"),
            ("limit = 200000", "invalid limit 200000"),
            ("limit = -1", "invalid value"),
            ("window = 0", "invalid window 0"),
            ("window = \"1d\"", "invalid window \"1d\""),
            ("window = \"2days\"", "such as \"1h\""),
            ("window = -5", "invalid window -5"),
            ("window = 90000", "1 second to 1 day"),
            ("base_url = \"not a url\"", "relative URL"),
        ];
        for (line, expected) in cases {
            let text = format!("type = \"bitbucket\"\n{line}");
            let error = toml::from_str::<Box<dyn Provider>>(&text).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{line}: {message}");
        }
    }
}
