//! Request handling of the GitLab simulator: authentication, throttles,
//! injected failures and routing.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokenfleet_core::clock::{format_epoch_ms, Clock};
use wiremock::http::Method;
use wiremock::{Request, Respond, ResponseTemplate};

use super::projects::{project_json, PageRequest, MAX_OFFSET};
use super::state::{State, TokenState, Usage};

/// The path every API route lives under.
pub(crate) const API_ROOT: &str = "/api/v4";

/// The `RateLimit-Name` of a user's API throttle.
const AUTHENTICATED: &str = "throttle_authenticated_api";

/// The `RateLimit-Name` of the per-IP throttle of requests without a token.
const UNAUTHENTICATED: &str = "throttle_unauthenticated_api";

/// GitLab's default body of a throttled response.
const RETRY_LATER: &str = "Retry later\n";

/// Simulator settings fixed when it starts.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Send `RateLimit-*` headers on every response, not only on 429.
    pub(crate) headers_on_every_response: bool,
    /// Send a `Link` header on listings, besides the `x-*` page headers.
    pub(crate) link_headers: bool,
    /// Lowercase names of headers left out of every response.
    pub(crate) omitted_headers: HashSet<String>,
}

/// State shared between the simulator handle and the responder on wiremock's thread.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    pub(crate) state: Mutex<State>,
    /// `host:port` the server listens on, used when a request has no usable `Host` header.
    pub(crate) listen_address: String,
}

/// The wiremock responder that plays GitLab.
pub(crate) struct GitlabResponder(pub(crate) Arc<Shared>);

impl Respond for GitlabResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let shared = &self.0;
        let now_ms = shared.clock.now_ms();
        let mut state = shared.state.lock();
        let reply = shared.handle(&mut state, request, now_ms);
        drop(state);
        shared.finish(reply, now_ms)
    }
}

/// A response before the common headers are added.
#[derive(Debug)]
pub(crate) struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    /// The throttle reported in the `RateLimit-*` headers.
    rate: Option<(&'static str, Usage)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            body: body.to_string().into_bytes(),
            content_type: "application/json",
            headers: Vec::new(),
            rate: None,
        }
    }

    fn message(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "message": message }))
    }

    fn rate(mut self, name: &'static str, usage: Usage) -> Self {
        self.rate = Some((name, usage));
        self
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The credential a request carries.
enum Credential {
    Anonymous,
    Token(String),
    /// An `Authorization` header with another scheme or no token.
    Malformed,
}

impl Credential {
    /// Reads `PRIVATE-TOKEN`, then `Authorization: Bearer`, as GitLab does.
    fn from_request(request: &Request) -> Self {
        if let Some(value) = request.headers.get("private-token") {
            return match value.to_str().map(str::trim) {
                Ok(token) if !token.is_empty() => Self::Token(token.to_owned()),
                _ => Self::Malformed,
            };
        }
        let Some(value) = request.headers.get("authorization") else {
            return Self::Anonymous;
        };
        let Ok(value) = value.to_str() else {
            return Self::Malformed;
        };
        match value.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                let token = token.trim();
                if token.is_empty() {
                    Self::Malformed
                } else {
                    Self::Token(token.to_owned())
                }
            }
            _ => Self::Malformed,
        }
    }
}

/// The endpoints the simulator implements.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    CurrentUser,
    User(String),
    UserProjects(String),
    GroupProjects(String),
    NotFound,
}

impl Shared {
    /// Runs one request through injected failures, authentication, the
    /// throttle, application limits and routing, in that order.
    fn handle(&self, state: &mut State, request: &Request, now_ms: u64) -> Reply {
        let now = now_ms / 1000;
        state.counters.total += 1;
        let credential = Credential::from_request(request);
        if let Credential::Token(secret) = &credential {
            *state.counters.by_token.entry(secret.clone()).or_insert(0) += 1;
        }
        state.last_credential = match &credential {
            Credential::Token(secret) => Some(secret.clone()),
            Credential::Anonymous | Credential::Malformed => None,
        };

        if state.server_errors > 0 {
            state.server_errors -= 1;
            return Reply::message(500, "500 Internal Server Error");
        }

        let account_key = match &credential {
            Credential::Anonymous => None,
            Credential::Token(secret) => match state.tokens.get(secret) {
                Some(entry) if entry.state == TokenState::Active => Some(entry.account.clone()),
                Some(entry) if entry.state == TokenState::Expired => {
                    state.counters.unauthorized += 1;
                    return Reply::json(
                        401,
                        &json!({
                            "error": "invalid_token",
                            "error_description": "Token is expired. You can either do re-authorization or token refresh."
                        }),
                    );
                }
                _ => return Self::unauthorized(state),
            },
            Credential::Malformed => return Self::unauthorized(state),
        };

        // Rack::Attack counts every request before the application handles it.
        let (name, usage) = match &account_key {
            Some(key) => {
                let account = state
                    .accounts
                    .get_mut(key)
                    .expect("every token belongs to a registered account");
                (AUTHENTICATED, account.meter.hit(now))
            }
            None => (UNAUTHENTICATED, state.anonymous.hit(now)),
        };
        if usage.throttled {
            state.counters.over_limit += 1;
            return Reply {
                status: 429,
                body: RETRY_LATER.as_bytes().to_vec(),
                content_type: "text/plain",
                headers: vec![
                    ("retry-after", usage.retry_after.to_string()),
                    ("ratelimit-resettime", format_epoch_ms(usage.reset * 1000)),
                ],
                rate: Some((name, usage)),
            };
        }

        if let Some(key) = &account_key {
            let account = state.accounts.get_mut(key).expect("checked above");
            if account.application_limits > 0 {
                account.application_limits -= 1;
                state.counters.application_limited += 1;
                return Reply::json(
                    429,
                    &json!({"message": {"error": "This endpoint has been requested too many times. Try again later."}}),
                );
            }
        }

        let path = request.url.path();
        let api_path = path
            .strip_prefix(API_ROOT)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'));
        let route = match api_path {
            Some(api_path) if request.method == Method::GET => route_get(api_path),
            _ => Route::NotFound,
        };

        let reply = if api_path.is_some_and(|api_path| state.forbidden.contains(api_path)) {
            Reply::message(403, "403 Forbidden")
        } else {
            match route {
                Route::CurrentUser => match &account_key {
                    Some(key) => user_json(state, key, &self.web(request)),
                    None => {
                        state.counters.unauthorized += 1;
                        Reply::message(401, "401 Unauthorized")
                    }
                },
                Route::User(id) => match state.find_account(&id) {
                    Some(account) => {
                        let key = account.username.to_lowercase();
                        user_json(state, &key, &self.web(request))
                    }
                    None => Reply::message(404, "404 User Not Found"),
                },
                Route::UserProjects(id) => self.user_projects(state, request, &id),
                Route::GroupProjects(id) => self.group_projects(state, request, &id),
                Route::NotFound => Reply::json(404, &json!({"error": "404 Not Found"})),
            }
        };

        if reply.is_success() {
            state.counters.successful += 1;
        }
        reply.rate(name, usage)
    }

    fn unauthorized(state: &mut State) -> Reply {
        state.counters.unauthorized += 1;
        Reply::message(401, "401 Unauthorized")
    }

    /// Serves `GET /users/:id/projects`: the projects of the user's own namespace.
    fn user_projects(&self, state: &State, request: &Request, id: &str) -> Reply {
        let Some(account) = state.find_account(id) else {
            return Reply::message(404, "404 User Not Found");
        };
        let key = account.username.to_lowercase();
        let listed: Vec<(&str, usize)> = match state.namespaces.get(&key) {
            Some(namespace) => (0..namespace.projects.len())
                .map(|index| (key.as_str(), index))
                .collect(),
            None => Vec::new(),
        };
        self.listing(state, request, &listed)
    }

    /// Serves `GET /groups/:id/projects`, where `:id` is a numeric id or a
    /// full path with `/` written as `%2F`, and `include_subgroups=true`
    /// adds the projects of nested groups.
    fn group_projects(&self, state: &State, request: &Request, id: &str) -> Reply {
        let decoded = id.replace("%2F", "/").replace("%2f", "/");
        let found = match decoded.parse::<u64>() {
            Ok(number) => state
                .namespaces
                .iter()
                .find(|(_, namespace)| !namespace.is_user && namespace.id == number),
            Err(_) => state
                .namespaces
                .get_key_value(&decoded.to_lowercase())
                .filter(|(_, namespace)| !namespace.is_user),
        };
        let Some((group_key, _)) = found else {
            return Reply::message(404, "404 Group Not Found");
        };

        let subgroups = request
            .url
            .query_pairs()
            .any(|(key, value)| key == "include_subgroups" && value == "true");
        let prefix = format!("{group_key}/");
        let mut keys: Vec<&String> = state
            .namespaces
            .iter()
            .filter(|(key, namespace)| {
                !namespace.is_user && (*key == group_key || (subgroups && key.starts_with(&prefix)))
            })
            .map(|(key, _)| key)
            .collect();
        keys.sort();

        let mut by_id: Vec<(u64, &str, usize)> = Vec::new();
        for key in keys {
            let projects = &state.namespaces[key].projects;
            by_id.extend(
                projects
                    .iter()
                    .enumerate()
                    .map(|(index, project)| (project.id, key.as_str(), index)),
            );
        }
        by_id.sort_unstable_by_key(|(id, _, _)| *id);
        let listed: Vec<(&str, usize)> = by_id
            .into_iter()
            .map(|(_, key, index)| (key, index))
            .collect();
        self.listing(state, request, &listed)
    }

    /// Builds one page of a project listing with its pagination headers.
    fn listing(&self, state: &State, request: &Request, listed: &[(&str, usize)]) -> Reply {
        let query: Vec<(String, String)> = request
            .url
            .query_pairs()
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        let page = PageRequest::from_query(&query);
        if page.offset() >= MAX_OFFSET {
            // NOTE: the wording follows GitLab's error for offsets past
            // the limit as far as known, and may differ between versions.
            return Reply::json(
                400,
                &json!({"message": format!(
                    "Offset pagination has a maximum allowed offset of {MAX_OFFSET} for requests that return objects of type Project. Remaining records can be retrieved using keyset pagination."
                )}),
            );
        }
        let web = self.web(request);

        let items: Vec<Value> = listed[page.range(listed.len())]
            .iter()
            .map(|(key, index)| {
                let namespace = &state.namespaces[*key];
                project_json(
                    namespace,
                    parent_id(state, namespace),
                    &namespace.projects[*index],
                    &web,
                )
            })
            .collect();

        let endpoint = format!("{web}{}", request.url.path());
        let mut reply = Reply::json(200, &Value::Array(items));
        reply.headers = page.headers(&endpoint, &query, listed.len(), self.settings.link_headers);
        reply
    }

    /// Returns `http://HOST:PORT` from the request's `Host` header, or the
    /// listening address when that header is missing or unusable.
    fn web(&self, request: &Request) -> String {
        let host = request
            .headers
            .get("host")
            .and_then(|value| value.to_str().ok())
            .filter(|host| is_plain_host(host))
            .unwrap_or(&self.listen_address);
        format!("http://{host}")
    }

    /// Turns a reply into a wiremock template with the `Date` header and,
    /// where they belong, the `RateLimit-*` headers.
    fn finish(&self, reply: Reply, now_ms: u64) -> ResponseTemplate {
        let mut headers: Vec<(&'static str, String)> = vec![("date", format_epoch_ms(now_ms))];
        if let Some((name, usage)) = reply.rate {
            if reply.status == 429 || self.settings.headers_on_every_response {
                headers.push(("ratelimit-name", name.to_owned()));
                headers.push(("ratelimit-limit", usage.normalized_limit.to_string()));
                headers.push(("ratelimit-observed", usage.observed.to_string()));
                headers.push(("ratelimit-remaining", usage.remaining.to_string()));
                headers.push(("ratelimit-reset", usage.reset.to_string()));
            }
        }
        headers.extend(reply.headers);

        let mut template =
            ResponseTemplate::new(reply.status).set_body_raw(reply.body, reply.content_type);
        for (name, value) in headers {
            if !self.settings.omitted_headers.contains(name) {
                template = template.insert_header(name, value);
            }
        }
        template
    }
}

/// Serves the user object of `GET /user` and `GET /users/:id`.
fn user_json(state: &State, key: &str, web: &str) -> Reply {
    let account = &state.accounts[key];
    Reply::json(
        200,
        &json!({
            "id": account.id,
            "username": account.username,
            "name": account.username,
            "state": "active",
            "locked": false,
            "avatar_url": null,
            "web_url": format!("{web}/{}", account.username),
        }),
    )
}

/// Returns the id of a nested group's parent, when the parent is registered.
fn parent_id(state: &State, namespace: &super::projects::Namespace) -> Option<u64> {
    let (parent, _) = namespace.full_path.rsplit_once('/')?;
    state
        .namespaces
        .get(&parent.to_lowercase())
        .map(|parent| parent.id)
}

/// Maps a `GET` path below `/api/v4` to its route.
fn route_get(api_path: &str) -> Route {
    let segments: Vec<&str> = api_path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["user"] => Route::CurrentUser,
        ["users", id] => Route::User((*id).to_owned()),
        ["users", id, "projects"] => Route::UserProjects((*id).to_owned()),
        ["groups", id, "projects"] => Route::GroupProjects((*id).to_owned()),
        _ => Route::NotFound,
    }
}

/// Returns whether a `Host` header value is safe to put into a URL and a header.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
}
