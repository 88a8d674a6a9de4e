//! A response read in full.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use tokenfleet_core::TokenId;
use url::Url;

use crate::error::ClientError;
use crate::scrub_url;

/// A response whose body has been read, with the token that fetched it.
///
/// `Debug` shows the URL without token query parameters and only the
/// names of the headers, because a server may put a token into a URL,
/// for example into the `Link` header.
#[derive(Clone)]
pub struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) url: Url,
    pub(crate) token: Option<TokenId>,
    pub(crate) attempts: u32,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(|name| name.as_str()).collect();
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &scrub_url(&self.url))
            .field("token", &self.token)
            .field("attempts", &self.attempts)
            .field("headers", &header_names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Response {
    /// Returns the HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Returns the headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Returns the body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Returns the URL of the response, after redirects.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Returns the id of the token the request carried, or `None` when a
    /// redirect led to another host and the request went without a token.
    pub fn token(&self) -> Option<&TokenId> {
        self.token.as_ref()
    }

    /// Returns how many requests it took, counting retries and rotations.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Parses the body as JSON.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Decode`] when the body is not the expected JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|error| ClientError::Decode {
            url: scrub_url(&self.url),
            message: error.to_string(),
        })
    }

    /// Returns the provider's error message from a JSON body, or the start
    /// of a text body.
    pub fn message(&self) -> String {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&self.body) {
            if let Some(message) = value.get("message").and_then(|m| m.as_str()) {
                return message.to_owned();
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

    #[test]
    fn debug_hides_token_in_url_and_headers() {
        let next = format!("<https://api.github.com/x?page=2&access_token={CANARY}>; rel=\"next\"");
        let mut headers = HeaderMap::new();
        headers.insert(http::header::LINK, next.parse().unwrap());
        let url = format!("https://api.github.com/x?access_token={CANARY}");
        let response = Response {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"[]"),
            url: Url::parse(&url).unwrap(),
            token: None,
            attempts: 1,
        };

        let debug = format!("{response:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(debug.contains("link"), "{debug}");
    }
}
