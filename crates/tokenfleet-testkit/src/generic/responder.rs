//! Request handling of the generic simulator: authentication, metering and routing.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokenfleet_core::clock::{format_epoch_ms, Clock};
use tokenfleet_http::{HttpSettings, ResetFormat};
use wiremock::http::Method;
use wiremock::{Request, Respond, ResponseTemplate};

use super::state::{State, Usage};

/// Content type of every JSON response.
const JSON: &str = "application/json";

/// Page size when `per_page` is missing or invalid.
const DEFAULT_PER_PAGE: usize = 30;

/// Largest page size the simulator serves.
const MAX_PER_PAGE: usize = 100;

/// Simulator settings fixed when it starts.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) settings: HttpSettings,
    /// Path of the API root below the server root, without a trailing `/`.
    pub(crate) api_root: String,
    pub(crate) throttle_status: u16,
    pub(crate) invalid_status: u16,
    pub(crate) forbidden_status: u16,
    pub(crate) retry_after_on_throttle: bool,
    /// Whether `Link` URLs repeat the token's query parameter.
    pub(crate) token_in_links: bool,
}

/// State shared between the simulator handle and the responder.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
    pub(crate) state: Mutex<State>,
    /// `host:port` the server listens on, used when a request has no usable `Host` header.
    pub(crate) listen_address: String,
}

/// The wiremock responder that plays the configured API.
pub(crate) struct GenericResponder(pub(crate) Arc<Shared>);

impl Respond for GenericResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let shared = &self.0;
        let now_ms = shared.clock.now_ms();
        let reply = {
            let mut state = shared.state.lock();
            shared.handle(&mut state, request, now_ms)
        };
        shared.finish(reply, now_ms)
    }
}

/// A response before the common headers are added.
struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    /// The bucket usage reported in the limit headers.
    usage: Option<(String, Usage)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            body: body.to_string().into_bytes(),
            content_type: JSON,
            headers: Vec::new(),
            usage: None,
        }
    }

    fn message(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "message": message }))
    }

    fn header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }

    fn usage(mut self, bucket: &str, usage: Usage) -> Self {
        self.usage = Some((bucket.to_owned(), usage));
        self
    }
}

/// The credential a request carries, read in the configured auth form.
enum Credential {
    Missing,
    Token(String),
    /// A header with another scheme or no token.
    Malformed,
}

impl Shared {
    fn handle(&self, state: &mut State, request: &Request, now_ms: u64) -> Reply {
        state.counters.total += 1;
        let credential = self.credential(request);
        if let Credential::Token(secret) = &credential {
            *state.counters.by_token.entry(secret.clone()).or_insert(0) += 1;
        }
        state.last_credential = match &credential {
            Credential::Token(secret) => Some(secret.clone()),
            Credential::Missing | Credential::Malformed => None,
        };

        if state.server_errors > 0 {
            state.server_errors -= 1;
            return Reply {
                status: 502,
                body: b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
                content_type: "text/html",
                headers: Vec::new(),
                usage: None,
            };
        }

        let account_key = match &credential {
            Credential::Token(secret) => match state.tokens.get(secret) {
                Some(entry) if !entry.revoked => entry.account.clone(),
                _ => return self.unauthorized(state, "invalid token"),
            },
            Credential::Missing => return self.unauthorized(state, "authentication required"),
            Credential::Malformed => return self.unauthorized(state, "malformed credentials"),
        };

        let Some(api_path) = self.api_path(request) else {
            return Reply::message(404, "not found");
        };

        if let Some(retry_after) = state.take_throttle() {
            state.counters.injected_throttles += 1;
            let reply = Reply::message(self.config.throttle_status, "too many requests");
            return match retry_after {
                Some(seconds) => reply.header(
                    &self.config.settings.retry_after_header,
                    seconds.to_string(),
                ),
                None => reply,
            };
        }

        let settings = &self.config.settings;
        let bucket = self.bucket_for(&request.method, &api_path);
        let is_get = request.method == Method::GET;
        let is_status =
            is_get && settings.status_endpoint.as_deref().map(path_only) == Some(&api_path);

        let account = state
            .accounts
            .get_mut(&account_key)
            .expect("every token is charged to a registered account");
        let account_name = account.name.clone();
        let meter = account.meter(&bucket);

        if is_status && settings.status_endpoint_free {
            let usage = meter.usage(now_ms);
            return Reply::json(200, &status_body(&bucket, usage)).usage(&bucket, usage);
        }

        let usage = match meter.try_spend(now_ms) {
            Ok(usage) => usage,
            Err(usage) => {
                state.counters.over_limit += 1;
                let mut reply = Reply::message(self.config.throttle_status, "rate limit exceeded");
                if self.config.retry_after_on_throttle {
                    let seconds = usage.reset_ms.saturating_sub(now_ms).div_ceil(1000);
                    reply = reply.header(&settings.retry_after_header, seconds.to_string());
                }
                return reply.usage(&bucket, usage);
            }
        };

        let reply = if state.forbidden.contains(&api_path) {
            Reply::message(
                self.config.forbidden_status,
                "forbidden: missing permission",
            )
        } else if is_status {
            Reply::json(200, &status_body(&bucket, usage))
        } else if is_get && self.is_account_path(&api_path) {
            let pointer = settings.account_pointer.as_deref().unwrap_or_default();
            Reply::json(200, &nest(pointer, Value::String(account_name)))
        } else if let Some(owner) = self.listing_owner(is_get, &api_path) {
            self.listing(state, request, &api_path, &owner)
        } else {
            Reply::json(200, &json!({ "path": api_path, "ok": true }))
        };

        if (200..300).contains(&reply.status) {
            state.counters.successful += 1;
        }
        reply.usage(&bucket, usage)
    }

    /// Reads the token from the configured header (after the configured
    /// scheme, matched case-insensitively) or query parameter.
    fn credential(&self, request: &Request) -> Credential {
        let settings = &self.config.settings;
        if let Some(name) = &settings.auth_query {
            return match request
                .url
                .query_pairs()
                .find(|(key, _)| key == name.as_str())
            {
                Some((_, value)) if !value.is_empty() => Credential::Token(value.into_owned()),
                Some(_) => Credential::Malformed,
                None => Credential::Missing,
            };
        }

        let header = settings.effective_auth_header().unwrap_or_default();
        let Some(value) = request.headers.get(header) else {
            return Credential::Missing;
        };
        let Ok(value) = value.to_str() else {
            return Credential::Malformed;
        };
        let value = value.trim();
        let scheme = settings.effective_auth_scheme();
        if scheme.is_empty() {
            return if value.is_empty() {
                Credential::Malformed
            } else {
                Credential::Token(value.to_owned())
            };
        }
        match value.split_once(' ') {
            Some((given, token))
                if given.eq_ignore_ascii_case(scheme) && !token.trim().is_empty() =>
            {
                Credential::Token(token.trim().to_owned())
            }
            _ => Credential::Malformed,
        }
    }

    fn unauthorized(&self, state: &mut State, message: &str) -> Reply {
        state.counters.unauthorized += 1;
        Reply::message(self.config.invalid_status, message)
    }

    /// Returns the request path below the API root, or `None` outside it.
    fn api_path(&self, request: &Request) -> Option<String> {
        let path = request.url.path();
        let rest = path.strip_prefix(self.config.api_root.as_str())?;
        if rest.is_empty() {
            return Some("/".to_owned());
        }
        rest.starts_with('/').then(|| rest.to_owned())
    }

    /// Returns the bucket of the first configured rule that matches, or the default bucket.
    fn bucket_for(&self, method: &Method, api_path: &str) -> String {
        let settings = &self.config.settings;
        for rule in &settings.buckets {
            let method_matches = rule
                .method
                .as_deref()
                .is_none_or(|name| name.eq_ignore_ascii_case(method.as_str()));
            let prefix = rule.path_prefix.trim_end_matches('/');
            let path_matches = api_path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if method_matches && path_matches {
                return rule.bucket.clone();
            }
        }
        settings.default_bucket.clone()
    }

    fn is_account_path(&self, api_path: &str) -> bool {
        self.config
            .settings
            .account_endpoint
            .as_deref()
            .map(path_only)
            == Some(api_path)
    }

    /// Returns the owner when the path matches the `repositories_path` template.
    fn listing_owner(&self, is_get: bool, api_path: &str) -> Option<String> {
        let template = path_only(self.config.settings.repositories_path.as_deref()?);
        if !is_get {
            return None;
        }
        let expected: Vec<&str> = template.split('/').collect();
        let actual: Vec<&str> = api_path.split('/').collect();
        if expected.len() != actual.len() {
            return None;
        }
        let mut owner = None;
        for (pattern, segment) in expected.iter().zip(&actual) {
            if *pattern == "{owner}" {
                owner = Some((*segment).to_owned());
            } else if pattern != segment {
                return None;
            }
        }
        owner
    }

    /// Serves one page of an owner's repositories with `Link` pagination.
    fn listing(&self, state: &State, request: &Request, api_path: &str, owner: &str) -> Reply {
        let Some(names) = state.repositories.get(owner) else {
            return Reply::message(404, "owner not found");
        };
        let settings = &self.config.settings;
        let query: Vec<(String, String)> = request
            .url
            .query_pairs()
            .filter(|(key, _)| {
                self.config.token_in_links || Some(key.as_ref()) != settings.auth_query.as_deref()
            })
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        let read = |key: &str| {
            query
                .iter()
                .find(|(name, _)| name == key)
                .and_then(|(_, value)| value.parse::<usize>().ok())
                .filter(|&value| value > 0)
        };
        let page = read("page").unwrap_or(1);
        let per_page = read("per_page").map_or(DEFAULT_PER_PAGE, |n| n.min(MAX_PER_PAGE));

        let web = format!("http://{}", self.host(request));
        let start = (page - 1).saturating_mul(per_page).min(names.len());
        let end = start.saturating_add(per_page).min(names.len());
        let items: Vec<Value> = names[start..end]
            .iter()
            .enumerate()
            .map(|(offset, name)| {
                let full_name = format!("{owner}/{name}");
                let mut object = serde_json::Map::new();
                object.insert("id".to_owned(), json!(start + offset + 1));
                object.insert("description".to_owned(), json!(format!("{name} for tests")));
                object.insert("fork".to_owned(), json!(false));
                object.insert("archived".to_owned(), json!(false));
                object.insert("default_branch".to_owned(), json!("main"));
                object.insert(settings.name_field.clone(), json!(name));
                object.insert(settings.full_name_field.clone(), json!(full_name));
                object.insert(
                    settings.url_field.clone(),
                    json!(format!("{web}/{full_name}")),
                );
                Value::Object(object)
            })
            .collect();

        let body = match settings.items_pointer.as_deref() {
            Some(pointer) => nest(pointer, Value::Array(items)),
            None => Value::Array(items),
        };
        let mut reply = Reply::json(200, &body);

        let last_page = names.len().div_ceil(per_page).max(1);
        if page < last_page {
            let endpoint = format!("{web}{}{api_path}", self.config.api_root);
            let link = |page: usize, rel: &str| {
                let mut serializer = url::form_urlencoded::Serializer::new(String::new());
                for (name, value) in &query {
                    if name != "page" && name != "per_page" {
                        serializer.append_pair(name, value);
                    }
                }
                serializer.append_pair("per_page", &per_page.to_string());
                serializer.append_pair("page", &page.to_string());
                format!("<{endpoint}?{}>; rel=\"{rel}\"", serializer.finish())
            };
            let header = format!("{}, {}", link(page + 1, "next"), link(last_page, "last"));
            reply = reply.header("link", header);
        }
        reply
    }

    /// Returns the request's `Host` when it is safe to put in a URL.
    fn host(&self, request: &Request) -> String {
        request
            .headers
            .get("host")
            .and_then(|value| value.to_str().ok())
            .filter(|host| {
                !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or(&self.listen_address)
            .to_owned()
    }

    /// Turns a reply into a wiremock template with the `Date` and limit headers.
    fn finish(&self, reply: Reply, now_ms: u64) -> ResponseTemplate {
        let settings = &self.config.settings;
        let mut template = ResponseTemplate::new(reply.status)
            .set_body_raw(reply.body, reply.content_type)
            .insert_header("date", format_epoch_ms(now_ms));

        if let Some((bucket, usage)) = reply.usage {
            template = template
                .insert_header(settings.limit_header.as_str(), usage.limit.to_string())
                .insert_header(
                    settings.remaining_header.as_str(),
                    usage.remaining.to_string(),
                )
                .insert_header(
                    settings.reset_header.as_str(),
                    format_reset(settings.reset_format, usage.reset_ms, now_ms),
                );
            if let Some(name) = &settings.used_header {
                template = template.insert_header(name.as_str(), usage.used.to_string());
            }
            if let Some(name) = &settings.bucket_header {
                template = template.insert_header(name.as_str(), bucket);
            }
        }
        for (name, value) in reply.headers {
            template = template.insert_header(name.as_str(), value);
        }
        template
    }
}

/// Writes a window's end in a reset format. Whole-second formats round up,
/// so that a client never returns before the window ends, and a relative
/// reset counts from the `Date` header, which drops the milliseconds of `now_ms`.
pub(crate) fn format_reset(format: ResetFormat, reset_ms: u64, now_ms: u64) -> String {
    match format {
        ResetFormat::EpochSeconds => reset_ms.div_ceil(1000).to_string(),
        ResetFormat::EpochMilliseconds => reset_ms.to_string(),
        ResetFormat::SecondsFromNow => {
            let date_ms = now_ms - now_ms % 1000;
            reset_ms.saturating_sub(date_ms).div_ceil(1000).to_string()
        }
        ResetFormat::HttpDate => format_epoch_ms(reset_ms.div_ceil(1000) * 1000),
    }
}

/// Returns the path of a configured path that may carry a query.
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or_default()
}

/// Builds the JSON value that has `value` at `pointer`, such as
/// `{"user": {"login": value}}` for `/user/login`.
fn nest(pointer: &str, value: Value) -> Value {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect();
    tokens.into_iter().rev().fold(value, |inner, token| {
        let mut object = serde_json::Map::new();
        object.insert(token, inner);
        Value::Object(object)
    })
}

fn status_body(bucket: &str, usage: Usage) -> Value {
    json!({
        "bucket": bucket,
        "limit": usage.limit,
        "remaining": usage.remaining,
        "reset_ms": usage.reset_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_formats_name_one_instant() {
        let now_ms = 1_700_000_000_400;
        let reset_ms = 1_700_000_060_000;
        assert_eq!(
            format_reset(ResetFormat::EpochSeconds, reset_ms, now_ms),
            "1700000060"
        );
        assert_eq!(
            format_reset(ResetFormat::EpochMilliseconds, reset_ms, now_ms),
            "1700000060000"
        );
        assert_eq!(
            format_reset(ResetFormat::SecondsFromNow, reset_ms, now_ms),
            "60"
        );
        assert_eq!(
            format_reset(ResetFormat::HttpDate, reset_ms, now_ms),
            "Tue, 14 Nov 2023 22:14:20 GMT"
        );
    }

    #[test]
    fn whole_second_formats_round_up() {
        let reset_ms = 1_700_000_060_001;
        assert_eq!(
            format_reset(ResetFormat::EpochSeconds, reset_ms, 0),
            "1700000061"
        );
    }

    #[test]
    fn nest_builds_pointer_path() {
        assert_eq!(nest("/login", json!("a")), json!({"login": "a"}));
        assert_eq!(
            nest("/data/user~1x", json!(1)),
            json!({"data": {"user/x": 1}})
        );
    }
}
