//! Request handling of the Gitea simulator: credentials, the proxy's
//! limit, routing and pagination.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokenfleet_core::clock::{format_epoch_ms, Clock};
use wiremock::http::Method;
use wiremock::{Request, Respond, ResponseTemplate};

use super::state::{OwnerView, State};

/// The API root below the server root.
pub(crate) const API_ROOT: &str = "/api/v1";

const JSON: &str = "application/json;charset=utf-8";
const HTML: &str = "text/html";

/// The version `GET /api/v1/version` reports.
const VERSION: &str = "1.22.0";

/// The scope message of the 403 a forbidden path returns.
const MISSING_SCOPE: &str =
    "token does not have at least one of required scope(s): [read:repository]";

/// Simulator settings fixed when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) invalid_tokens_as_anonymous: bool,
    pub(crate) rate_headers: bool,
    pub(crate) retry_after_as_date: bool,
    pub(crate) default_paging: usize,
    pub(crate) max_response_items: usize,
}

/// State shared between the simulator handle and the responder on wiremock's thread.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    pub(crate) state: Mutex<State>,
    /// `host:port` the server listens on, used when a request has no usable `Host` header.
    pub(crate) listen_address: String,
}

/// The wiremock responder that plays Gitea and the proxy in front of it.
pub(crate) struct GiteaResponder(pub(crate) Arc<Shared>);

impl Respond for GiteaResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let shared = &self.0;
        let now_ms = shared.clock.now_ms();

        let reply = {
            let mut state = shared.state.lock();
            shared.handle(&mut state, request, now_ms)
        };

        let mut template = ResponseTemplate::new(reply.status)
            .set_body_raw(reply.body, reply.content_type)
            .insert_header("date", format_epoch_ms(now_ms));
        for (name, value) in reply.headers {
            template = template.insert_header(name, value);
        }
        template
    }
}

/// A response before the `Date` header is added.
#[derive(Debug)]
struct Reply {
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

    /// Gitea's error body: a message and the API documentation URL.
    fn message(status: u16, message: &str, web: &str) -> Self {
        Self::json(
            status,
            &json!({"message": message, "url": format!("{web}/api/swagger")}),
        )
    }

    fn not_found(web: &str) -> Self {
        Self::json(
            404,
            &json!({
                "errors": [],
                "message": "The target couldn't be found.",
                "url": format!("{web}/api/swagger")
            }),
        )
    }

    /// Builds the HTML error page an nginx proxy serves for `status`.
    fn proxy_page(status: u16, reason: &str) -> Self {
        let body = format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
             <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
             </body>\r\n</html>\r\n"
        );
        Self {
            status,
            body: body.into_bytes(),
            content_type: HTML,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// The credential a request carries.
enum Credential {
    Anonymous,
    Token { secret: String, scheme: String },
}

impl Credential {
    /// Reads `Authorization: token <t>` or `Bearer <t>`, either word in any
    /// case. Gitea ignores any other scheme, so such a request is anonymous.
    fn from_request(request: &Request) -> Self {
        let Some(value) = request
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
        else {
            return Self::Anonymous;
        };
        match value.trim().split_once(' ') {
            Some((scheme, secret))
                if (scheme.eq_ignore_ascii_case("token")
                    || scheme.eq_ignore_ascii_case("bearer"))
                    && !secret.trim().is_empty() =>
            {
                Self::Token {
                    secret: secret.trim().to_owned(),
                    scheme: scheme.to_ascii_lowercase(),
                }
            }
            _ => Self::Anonymous,
        }
    }
}

/// Endpoints the simulator implements, below the API root.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    User,
    Repositories { owner: String, organization: bool },
    SettingsApi,
    Version,
    NotFound,
}

impl Shared {
    /// Runs one request through the injected failures, the credential, the
    /// proxy's limit and the routes.
    fn handle(&self, state: &mut State, request: &Request, now_ms: u64) -> Reply {
        state.counters.total += 1;
        let credential = Credential::from_request(request);
        match &credential {
            Credential::Token { secret, scheme } => {
                *state.counters.by_token.entry(secret.clone()).or_insert(0) += 1;
                state.last_credential = Some(secret.clone());
                state.last_scheme = Some(scheme.clone());
            }
            Credential::Anonymous => {
                state.last_credential = None;
                state.last_scheme = None;
            }
        }
        let web = self.web_root(request);

        if state.server_errors > 0 {
            state.server_errors -= 1;
            state.counters.server_errors += 1;
            return Reply::proxy_page(502, "Bad Gateway");
        }

        let account_key = match &credential {
            Credential::Anonymous => None,
            Credential::Token { secret, .. } => match state.tokens.get(secret) {
                Some(entry) if !entry.revoked => Some(entry.account.clone()),
                // Gitea 1.17 to 1.19 served such a request as anonymous.
                _ if self.settings.invalid_tokens_as_anonymous => None,
                _ => {
                    state.counters.unauthorized += 1;
                    return Reply::message(401, "token is required", &web);
                }
            },
        };

        if let Some(key) = &account_key {
            if let Some(reply) = self.proxy_limit(state, key, now_ms) {
                return self.with_rate_headers(state, key, now_ms, reply);
            }
        }

        let reply = self.route(state, request, account_key.as_deref(), &web);
        if (200..300).contains(&reply.status) {
            state.counters.successful += 1;
        }
        if reply.status == 401 {
            state.counters.unauthorized += 1;
        }
        match &account_key {
            Some(key) => self.with_rate_headers(state, key, now_ms, reply),
            None => reply,
        }
    }

    /// Adds `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch seconds)
    /// for the proxy budget of the account `key`, when the settings ask
    /// for them and the account has one.
    fn with_rate_headers(&self, state: &State, key: &str, now_ms: u64, reply: Reply) -> Reply {
        if !self.settings.rate_headers {
            return reply;
        }
        let Some(meter) = state.accounts.get(key).and_then(|a| a.proxy.as_ref()) else {
            return reply;
        };
        reply
            .header("x-ratelimit-limit", meter.budget().to_string())
            .header("x-ratelimit-remaining", meter.remaining(now_ms).to_string())
            .header(
                "x-ratelimit-reset",
                meter.reset_ms(now_ms).div_ceil(1000).to_string(),
            )
    }

    /// Applies the proxy in front of the server to the account `key`: an
    /// injected throttle without headers, then the account's budget.
    fn proxy_limit(&self, state: &mut State, key: &str, now_ms: u64) -> Option<Reply> {
        let account = state
            .accounts
            .get_mut(key)
            .expect("every token belongs to a registered account");

        if account.injected_throttles > 0 {
            account.injected_throttles -= 1;
            state.counters.throttled += 1;
            return Some(Reply::proxy_page(429, "Too Many Requests"));
        }

        let meter = account.proxy.as_mut()?;
        let reset_ms = meter.try_spend(now_ms).err()?;
        state.counters.over_limit += 1;
        let retry_after = if self.settings.retry_after_as_date {
            format_epoch_ms(reset_ms.div_ceil(1000) * 1000)
        } else {
            reset_ms.saturating_sub(now_ms).div_ceil(1000).to_string()
        };
        Some(Reply::proxy_page(429, "Too Many Requests").header("retry-after", retry_after))
    }

    fn route(
        &self,
        state: &State,
        request: &Request,
        account_key: Option<&str>,
        web: &str,
    ) -> Reply {
        let Some(api_path) = request
            .url
            .path()
            .strip_prefix(API_ROOT)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        else {
            return Reply {
                status: 404,
                body: b"Not found.\n".to_vec(),
                content_type: "text/plain; charset=utf-8",
                headers: Vec::new(),
            };
        };

        if state.forbidden.contains(api_path) {
            return Reply::message(403, MISSING_SCOPE, web);
        }

        let route = if request.method == Method::GET {
            route_get(api_path)
        } else {
            Route::NotFound
        };
        match route {
            Route::User => match account_key.and_then(|key| state.accounts.get(key)) {
                Some(account) => Reply::json(200, &user_json(&account.login, account.id, web)),
                None => Reply::message(401, "token is required", web),
            },
            Route::Repositories {
                owner,
                organization,
            } => match state.listing_owner(&owner, organization) {
                Some(owner) => self.repository_page(request, owner, web),
                None => Reply::not_found(web),
            },
            Route::SettingsApi => Reply::json(
                200,
                &json!({
                    "max_response_items": self.settings.max_response_items,
                    "default_paging_num": self.settings.default_paging,
                    "default_git_trees_per_page": 1000,
                    "default_max_blob_size": 10_485_760
                }),
            ),
            Route::Version => Reply::json(200, &json!({"version": VERSION})),
            Route::NotFound => Reply::not_found(web),
        }
    }

    /// Serves one page of an owner's repositories with `Link` and
    /// `X-Total-Count`, as Gitea's paginator does.
    fn repository_page(&self, request: &Request, owner: OwnerView<'_>, web: &str) -> Reply {
        let (page, limit) = self.paging(request);
        let total = owner.repositories.len();
        let start = (page - 1).saturating_mul(limit).min(total);
        let end = start.saturating_add(limit).min(total);

        let items: Vec<Value> = owner.repositories[start..end]
            .iter()
            .map(|repository| repository.to_json(owner, web))
            .collect();

        let mut reply = Reply::json(200, &Value::Array(items))
            .header("x-total-count", total.to_string())
            .header(
                "access-control-expose-headers",
                "Link, X-Total-Count".to_owned(),
            );
        if let Some(link) = link_header(request, web, page, limit, total) {
            reply = reply.header("link", link);
        }
        reply
    }

    /// Reads `page` (1-based, default 1) and `limit` (default and maximum
    /// from the settings) the way Gitea does: values it cannot use fall
    /// back to the defaults.
    fn paging(&self, request: &Request) -> (usize, usize) {
        let mut page = 1;
        let mut limit = self.settings.default_paging;
        for (key, value) in request.url.query_pairs() {
            match key.as_ref() {
                "page" => {
                    page = value.parse::<usize>().ok().filter(|p| *p > 0).unwrap_or(1);
                }
                "limit" => {
                    limit = match value.parse::<usize>() {
                        Ok(0) | Err(_) => self.settings.default_paging,
                        Ok(n) => n.min(self.settings.max_response_items),
                    };
                }
                _ => {}
            }
        }
        (page, limit.max(1))
    }

    /// Returns the server root seen by the caller, such as `http://127.0.0.1:PORT`.
    fn web_root(&self, request: &Request) -> String {
        let host = request
            .headers
            .get("host")
            .and_then(|value| value.to_str().ok())
            .filter(|host| is_plain_host(host))
            .unwrap_or(&self.listen_address);
        format!("http://{host}")
    }
}

/// Maps a `GET` path below the API root to its route.
fn route_get(api_path: &str) -> Route {
    let segments: Vec<&str> = api_path
        .trim_matches('/')
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    match segments.as_slice() {
        ["user"] => Route::User,
        ["users", owner, "repos"] => Route::Repositories {
            owner: (*owner).to_owned(),
            organization: false,
        },
        ["orgs", owner, "repos"] => Route::Repositories {
            owner: (*owner).to_owned(),
            organization: true,
        },
        ["settings", "api"] => Route::SettingsApi,
        ["version"] => Route::Version,
        _ => Route::NotFound,
    }
}

/// Builds the `Link` header of a page: `next` and `last` before the last
/// page, `first` and `prev` after the first, or `None` when there is only
/// one page.
fn link_header(
    request: &Request,
    web: &str,
    page: usize,
    limit: usize,
    total: usize,
) -> Option<String> {
    let last = total.div_ceil(limit).max(1);
    let target = |number: usize| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in request.url.query_pairs() {
            if key != "page" && key != "limit" {
                query.append_pair(&key, &value);
            }
        }
        query.append_pair("limit", &limit.to_string());
        query.append_pair("page", &number.to_string());
        format!("<{web}{}?{}>", request.url.path(), query.finish())
    };

    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", target(page + 1)));
        links.push(format!("{}; rel=\"last\"", target(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", target(1)));
        links.push(format!("{}; rel=\"prev\"", target((page - 1).min(last))));
    }
    (!links.is_empty()).then(|| links.join(","))
}

fn user_json(login: &str, id: u64, web: &str) -> Value {
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": "",
        "email": format!("{}@noreply.localhost", login.to_lowercase()),
        "avatar_url": format!("{web}/avatars/{id}"),
        "html_url": format!("{web}/{login}"),
        "language": "en-US",
        "is_admin": false,
        "last_login": "2023-11-14T22:00:00Z",
        "created": "2020-01-01T00:00:00Z",
        "restricted": false,
        "active": true,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        "username": login
    })
}

/// Returns whether a `Host` header value is safe to put into a URL and a header.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
}
