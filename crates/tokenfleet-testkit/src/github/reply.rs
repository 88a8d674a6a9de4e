//! Responses of the GitHub simulator before the common headers are added.

use serde_json::{json, Value};

use super::state::{Resource, Usage};

/// Content type of every JSON response.
const JSON: &str = "application/json; charset=utf-8";

/// A response before the common headers are added.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Bucket reported in the `x-ratelimit-*` headers.
    pub(crate) rate: Option<(Resource, Usage)>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            body: body.to_string().into_bytes(),
            content_type: JSON,
            headers: Vec::new(),
            rate: None,
        }
    }

    pub(crate) fn message(status: u16, message: &str, documentation_url: &str) -> Self {
        Self::json(
            status,
            &json!({"message": message, "documentation_url": documentation_url}),
        )
    }

    pub(crate) fn bad_gateway() -> Self {
        Self {
            status: 502,
            body: b"<html><head><title>502 Bad Gateway</title></head>\
                <body><h1>502 Bad Gateway</h1><p>The server received an invalid response \
                from an upstream server.</p></body></html>"
                .to_vec(),
            content_type: "text/html",
            headers: Vec::new(),
            rate: None,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn rate(mut self, resource: Resource, usage: Usage) -> Self {
        self.rate = Some((resource, usage));
        self
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}
