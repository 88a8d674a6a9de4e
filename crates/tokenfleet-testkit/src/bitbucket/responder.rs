//! Request handling of the Bitbucket simulator: authentication, the
//! sliding-window limit, routing and the common headers.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokenfleet_core::clock::{format_epoch_ms, Clock};
use wiremock::http::Method;
use wiremock::{Request, Respond, ResponseTemplate};

use super::repos::{Roots, DEFAULT_PAGE_LENGTH, MAX_PAGE_LENGTH};
use super::state::{PrincipalKind, Scheme, State, ANONYMOUS};

/// The path every API request starts with.
pub(crate) const API_PREFIX: &str = "/2.0";

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

const THROTTLED: &str = "Rate limit for this resource has been exceeded";
const BEARER_INVALID: &str = "Token is invalid, expired, or not supported for this endpoint.";
const BASIC_INVALID: &str = "Login failed due to incorrect login credentials or method. See \
                             https://support.atlassian.com/bitbucket-cloud/docs/api-tokens/";
const BASIC_REALM: &str = "Basic realm=\"Bitbucket.org HTTP\"";

/// The resource group named in `X-RateLimit-Resource`.
const RESOURCE: &str = "api";

/// `X-RateLimit-NearLimit` turns true once less than this fraction of the
/// limit is left. Bitbucket does not document its threshold.
const NEAR_LIMIT_PERCENT: u64 = 20;

/// Simulator settings fixed when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Listings state the total count in `size`.
    pub(crate) report_size: bool,
}

/// State shared between the simulator handle and the responder on wiremock's thread.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    pub(crate) state: Mutex<State>,
    /// `host:port` the server listens on, used when a request has no usable `Host` header.
    pub(crate) listen_address: String,
}

/// The wiremock responder that plays Bitbucket Cloud.
pub(crate) struct BitbucketResponder(pub(crate) Arc<Shared>);

impl Respond for BitbucketResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let shared = &self.0;
        let now_ms = shared.clock.now_ms();
        let reply = shared.handle(&mut shared.state.lock(), request, now_ms);
        reply.into_template(now_ms)
    }
}

/// The credential a request carries.
#[derive(Debug)]
enum Credential {
    Anonymous,
    Bearer(String),
    /// Basic credentials, decoded to `username:secret`.
    Basic(String),
    /// An `Authorization` header with an unknown scheme or an unreadable value.
    Malformed,
}

impl Credential {
    fn from_request(request: &Request) -> Self {
        let Some(value) = request.headers.get("authorization") else {
            return Self::Anonymous;
        };
        let Ok(value) = value.to_str() else {
            return Self::Malformed;
        };
        let Some((scheme, rest)) = value.trim().split_once(' ') else {
            return Self::Malformed;
        };
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Self::Bearer(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = decode_base64(rest).and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some(pair) = decoded.filter(|pair| pair.contains(':')) {
                return Self::Basic(pair);
            }
        }
        Self::Malformed
    }

    /// Returns the credential's text: the bearer token or `username:secret`.
    fn text(&self) -> Option<&str> {
        match self {
            Self::Bearer(text) | Self::Basic(text) => Some(text),
            Self::Anonymous | Self::Malformed => None,
        }
    }
}

/// A response before the common headers are added.
#[derive(Debug)]
pub(crate) struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            body: body.to_string().into_bytes(),
            content_type: JSON,
            headers: Vec::new(),
        }
    }

    /// Builds Bitbucket's error envelope.
    fn error(status: u16, message: &str) -> Self {
        Self::json(
            status,
            &json!({"type": "error", "error": {"message": message}}),
        )
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.as_bytes().to_vec(),
            content_type: TEXT,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn into_template(self, now_ms: u64) -> ResponseTemplate {
        let mut template = ResponseTemplate::new(self.status)
            .set_body_raw(self.body, self.content_type)
            .insert_header("date", format_epoch_ms(now_ms));
        for (name, value) in self.headers {
            template = template.insert_header(name, value);
        }
        template
    }
}

impl Shared {
    /// Runs one request through authentication, the limit and routing, in
    /// the order the module documentation lists.
    fn handle(&self, state: &mut State, request: &Request, now_ms: u64) -> Reply {
        state.counters.total += 1;
        let credential = Credential::from_request(request);
        if let Some(text) = credential.text() {
            *state
                .counters
                .by_credential
                .entry(text.to_owned())
                .or_insert(0) += 1;
        }
        state.last_credential = credential.text().map(str::to_owned);

        if state.server_errors > 0 {
            state.server_errors -= 1;
            state.counters.server_errors += 1;
            return Reply::error(500, "Internal Server Error");
        }

        let principal_key = match Self::authenticate(state, &credential) {
            Ok(key) => key,
            Err(reply) => {
                state.counters.unauthorized += 1;
                return reply;
            }
        };

        let Some(api_path) = request
            .url
            .path()
            .strip_prefix(API_PREFIX)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(str::to_owned)
        else {
            return Reply::error(404, "Resource not found");
        };
        let segments: Vec<&str> = api_path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();

        if principal_key == ANONYMOUS && segments.as_slice() == ["user"] {
            state.counters.unauthorized += 1;
            return Reply::text(401, BASIC_INVALID).header("www-authenticate", BASIC_REALM);
        }

        let principal = state
            .principals
            .get_mut(&principal_key)
            .expect("every credential is charged to a registered principal");
        let scaled = principal.kind == PrincipalKind::AccessToken
            && segments.first() == Some(&"repositories");
        let limit = principal.allowance.limit;

        if principal.injected_throttles > 0 {
            principal.injected_throttles -= 1;
            state.counters.injected_throttles += 1;
            return Reply::text(429, THROTTLED);
        }
        if !principal.try_spend(now_ms) {
            state.counters.over_limit += 1;
            let reply = Reply::text(429, THROTTLED);
            return if scaled {
                rate_headers(reply, limit, 0)
            } else {
                reply
            };
        }
        let remaining = principal.remaining(now_ms);
        let caller = principal.name.clone();
        let kind = principal.kind;

        let reply = if state.forbidden.contains(&api_path) {
            Reply::error(403, "Forbidden")
        } else if request.method != Method::GET {
            Reply::error(404, "Resource not found")
        } else {
            match segments.as_slice() {
                ["user"] => user(&caller, kind),
                ["repositories", workspace] => self.listing(state, request, workspace),
                _ => Reply::error(404, "Resource not found"),
            }
        };

        if reply.is_success() {
            state.counters.successful += 1;
        }
        if scaled {
            rate_headers(reply, limit, remaining)
        } else {
            reply
        }
    }

    /// Returns the key of the principal a credential is charged to, or the
    /// 401 Bitbucket sends for it.
    fn authenticate(state: &State, credential: &Credential) -> Result<String, Reply> {
        let valid = |text: &str, scheme: Scheme| {
            state
                .credentials
                .get(text)
                .filter(|entry| entry.scheme == scheme && !entry.revoked)
                .map(|entry| entry.principal.clone())
        };
        match credential {
            Credential::Anonymous => Ok(ANONYMOUS.to_owned()),
            Credential::Bearer(token) => {
                valid(token, Scheme::Bearer).ok_or_else(|| Reply::error(401, BEARER_INVALID))
            }
            Credential::Basic(pair) => valid(pair, Scheme::Basic).ok_or_else(|| {
                Reply::text(401, BASIC_INVALID).header("www-authenticate", BASIC_REALM)
            }),
            Credential::Malformed => Err(Reply::error(401, BEARER_INVALID)),
        }
    }

    /// Serves `GET /2.0/repositories/{workspace}` with `pagelen` and `page`.
    fn listing(&self, state: &State, request: &Request, workspace: &str) -> Reply {
        let Some(entry) = state.workspaces.get(&workspace.to_lowercase()) else {
            return Reply::error(404, &format!("No workspace with identifier '{workspace}'."));
        };

        let query = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.parse::<usize>().ok())
        };
        let page_length = query("pagelen")
            .filter(|&length| length > 0)
            .unwrap_or(DEFAULT_PAGE_LENGTH)
            .min(MAX_PAGE_LENGTH);
        let page = query("page").filter(|&page| page > 0).unwrap_or(1);

        let roots = self.roots(request);
        Reply::json(
            200,
            &entry.page(page, page_length, self.settings.report_size, &roots),
        )
    }

    /// Builds the link roots from the request's `Host` header.
    fn roots(&self, request: &Request) -> Roots {
        let host = request
            .headers
            .get("host")
            .and_then(|value| value.to_str().ok())
            .filter(|host| is_plain_host(host))
            .unwrap_or(&self.listen_address)
            .to_owned();
        let web = format!("http://{host}");
        Roots {
            api: format!("{web}{API_PREFIX}"),
            web,
            host,
        }
    }
}

/// Adds the headers Bitbucket sends to access tokens on scaled endpoints.
fn rate_headers(reply: Reply, limit: u64, remaining: u64) -> Reply {
    let near = remaining.saturating_mul(100) < limit.saturating_mul(NEAR_LIMIT_PERCENT);
    reply
        .header("x-ratelimit-limit", limit.to_string())
        .header("x-ratelimit-resource", RESOURCE)
        .header("x-ratelimit-nearlimit", near.to_string())
}

/// Serves `GET /2.0/user` for the caller.
fn user(name: &str, kind: PrincipalKind) -> Reply {
    let account_type = match kind {
        PrincipalKind::AccessToken => "app_user",
        PrincipalKind::User | PrincipalKind::Anonymous => "user",
    };
    Reply::json(
        200,
        &json!({
            "type": account_type,
            "username": name,
            "display_name": name,
            "nickname": name,
            "account_status": "active"
        }),
    )
}

/// Returns whether a `Host` header value is safe to put into a URL.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
}

/// Decodes standard base64 with optional padding (RFC 4648, section 4),
/// or returns `None` on any other character.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut output = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            output.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_rfc_vectors() {
        let cases = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                decode_base64(input).unwrap(),
                expected.as_bytes(),
                "{input}"
            );
        }
        assert_eq!(decode_base64("Zm9v!"), None);
    }

    #[test]
    fn near_limit_below_a_fifth() {
        let near = |remaining| {
            let reply = rate_headers(Reply::text(200, ""), 100, remaining);
            reply
                .headers
                .iter()
                .find(|(name, _)| *name == "x-ratelimit-nearlimit")
                .map(|(_, value)| value.clone())
                .unwrap()
        };
        assert_eq!(near(20), "false");
        assert_eq!(near(19), "true");
    }
}
