//! HTTP client that sends requests through a tokenfleet token pool.
//!
//! [`Client`] acquires a token for every request, sends it with `reqwest`,
//! lets the provider read the response into a verdict and completes the
//! lease. It rotates to another token on rate limits and invalid tokens,
//! backs off with jitter on transient errors of idempotent requests, and
//! never sends a token to a host other than its provider's.

#![deny(missing_docs)]

mod client;
mod error;
pub mod github;
mod repos;
mod response;
mod transport;

pub use client::{default_http, Client, ClientBuilder};
pub use error::ClientError;
pub use response::Response;
pub use tokenfleet_core::link::next_link;
pub use transport::ReqwestTransport;

/// Removes token-bearing query parameters from a URL, for logs and errors.
pub fn scrub_url(url: &url::Url) -> String {
    const SECRET_PARAMS: [&str; 6] = [
        "access_token",
        "token",
        "private_token",
        "client_secret",
        "job_token",
        "password",
    ];
    let mut clean = url.clone();
    let _ = clean.set_password(None);
    let _ = clean.set_username("");
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) {
                    (k.into_owned(), "REDACTED".to_owned())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        clean.query_pairs_mut().clear().extend_pairs(pairs);
    }
    clean.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_url_hides_token_params() {
        let url = url::Url::parse(
            "https://api.github.com/users/x/repos?page=2&access_token=ghp_CANARY0000000000000000000000000000",
        )
        .unwrap();
        let clean = scrub_url(&url);
        assert!(!clean.contains("CANARY"), "{clean}");
        assert!(clean.contains("page=2"), "{clean}");
    }

    #[test]
    fn scrub_url_hides_userinfo() {
        let url = url::Url::parse("https://user:ghp_CANARY@example.test/path").unwrap();
        let clean = scrub_url(&url);
        assert!(!clean.contains("CANARY"), "{clean}");
    }
}
