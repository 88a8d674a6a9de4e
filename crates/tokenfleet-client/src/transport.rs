//! The reqwest transport the pool uses for status requests.

use async_trait::async_trait;
use bytes::Bytes;
use tokenfleet_core::{Transport, TransportError};

use crate::scrub_url;

/// Sends the pool's status requests with `reqwest`, without following redirects.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    http: reqwest::Client,
}

impl ReqwestTransport {
    /// Wraps a reqwest client. It should not follow redirects, so that a
    /// token never follows one to another host.
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        let (parts, body) = request.into_parts();
        let url = url::Url::parse(&parts.uri.to_string()).map_err(|e| TransportError {
            message: format!("invalid status URL: {e}"),
        })?;
        let safe_url = scrub_url(&url);
        let response = self
            .http
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| TransportError {
                message: format!("{safe_url}: {}", e.without_url()),
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| TransportError {
            message: format!("{safe_url}: reading the body failed: {}", e.without_url()),
        })?;
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}
