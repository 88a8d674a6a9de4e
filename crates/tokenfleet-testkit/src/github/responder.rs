//! Request handling of the GitHub simulator: authentication, limits, metering and routing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokenfleet_core::clock::{format_epoch_ms, Clock};
use wiremock::http::Method;
use wiremock::{Request, Respond, ResponseTemplate};

use super::app;
use super::endpoints;
use super::reply::Reply;
use super::repos::Urls;
use super::state::{Account, Resource, State, Usage};

const DOCS_REST: &str = "https://docs.github.com/rest";
const DOCS_ENTERPRISE: &str = "https://docs.github.com/enterprise-server/rest";
const DOCS_RATE_LIMITS: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
const DOCS_SECONDARY: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";
const DOCS_GRAPHQL_AUTH: &str =
    "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql";
const SECONDARY_MESSAGE: &str =
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

/// Version reported in `x-github-enterprise-version` in enterprise mode.
const ENTERPRISE_VERSION: &str = "enterprise-server@3.14.0";

/// Seconds in the `retry-after` of a concurrency-cap response.
const CONCURRENCY_RETRY_AFTER: u64 = 60;

/// Simulator settings fixed when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) enterprise: bool,
    pub(crate) primary_status: u16,
    pub(crate) concurrency_cap: usize,
    pub(crate) latency: Duration,
}

/// State shared between the simulator handle and the responder on wiremock's thread.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    pub(crate) state: Mutex<State>,
    /// `host:port` the server listens on, used when a request has no usable `Host` header.
    pub(crate) listen_address: String,
}

/// The wiremock responder that plays GitHub.
pub(crate) struct GithubResponder(pub(crate) Arc<Shared>);

impl Respond for GithubResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let shared = &self.0;
        let now_ms = shared.clock.now_ms();

        let mut state = shared.state.lock();
        let reply = shared.handle(&mut state, request, now_ms);
        let request_number = state.next_request_number();
        drop(state);

        shared.finish(reply, now_ms, request_number)
    }
}

/// The credential a request carries.
enum Credential {
    Anonymous,
    Token(String),
    /// An `Authorization` header with an unknown scheme or no token.
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

        match value.trim().split_once(' ') {
            Some((scheme, token))
                if (scheme.eq_ignore_ascii_case("bearer")
                    || scheme.eq_ignore_ascii_case("token"))
                    && !token.trim().is_empty() =>
            {
                Self::Token(token.trim().to_owned())
            }
            _ => Self::Malformed,
        }
    }
}

/// Endpoints the simulator implements.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    RateLimit,
    User,
    OwnerRepositories {
        owner: String,
        organization: bool,
    },
    SearchRepositories,
    /// A search kind that always finds nothing, such as `/search/code`.
    SearchEmpty,
    Graphql,
    NotFound,
}

/// Route of a request and the bucket that pays for it.
#[derive(Debug)]
struct Target {
    route: Route,
    resource: Resource,
    /// Path below the API root, such as `/user`.
    api_path: String,
}

impl Shared {
    /// Runs one request through authentication, secondary limits, the primary limit and routing.
    fn handle(&self, state: &mut State, request: &Request, now_ms: u64) -> Reply {
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
            return Reply::bad_gateway();
        }

        let target = self.locate(request);
        if let Some(installation) = app::installation_request(request, &target.api_path) {
            return app::issue(state, request, installation, now_ms);
        }

        let account_key = match &credential {
            Credential::Anonymous => None,
            Credential::Token(secret) => match state.tokens.get(secret) {
                Some(entry)
                    if !entry.revoked && entry.expires_at_ms.is_none_or(|at| now_ms < at) =>
                {
                    Some(entry.account.clone())
                }
                _ => return Self::bad_credentials(state, now_ms),
            },
            Credential::Malformed => return Self::bad_credentials(state, now_ms),
        };

        if account_key.is_none() {
            if let Some(reply) = Self::require_authentication(state, &target, now_ms) {
                return reply;
            }
        }

        let graphql_cost = state.graphql_cost;
        let account = match &account_key {
            Some(key) => state
                .accounts
                .get_mut(key)
                .expect("every token is charged to a registered account"),
            None => &mut state.anonymous,
        };

        let before = account.meter(target.resource).usage(now_ms);
        if let Some(reply) = self.check_secondary(account) {
            state.counters.secondary += 1;
            return reply.rate(target.resource, before);
        }

        if target.route == Route::RateLimit {
            return self.rate_limit_overview(account, now_ms);
        }

        if request.method == Method::GET {
            if let Some(location) = state.redirects.get(&target.api_path) {
                let body =
                    json!({"message": "Found", "url": location, "documentation_url": DOCS_REST});
                return Reply::json(302, &body)
                    .header("location", location.clone())
                    .rate(target.resource, before);
            }
        }

        let usage = if self.settings.enterprise {
            before
        } else {
            let cost = if target.resource == Resource::Graphql {
                graphql_cost
            } else {
                1
            };
            match account.meter(target.resource).try_spend(now_ms, cost) {
                Ok(usage) => usage,
                Err(usage) => {
                    let reply = self.primary_limited(&target, account);
                    state.counters.over_limit += 1;
                    return reply.rate(target.resource, usage);
                }
            }
        };

        let caller_login = account.login.clone();
        let caller_id = account.id;
        let urls = self.urls(request);
        let reply = match &target.route {
            _ if state.forbidden.contains(&target.api_path) => Reply::message(
                403,
                "Resource not accessible by personal access token",
                self.docs(),
            ),
            Route::User => endpoints::user(&caller_login, caller_id, &urls),
            Route::OwnerRepositories {
                owner,
                organization,
            } => endpoints::owner_repositories(
                state,
                request,
                &target.api_path,
                &urls,
                owner,
                *organization,
            )
            .unwrap_or_else(|| Reply::message(404, "Not Found", self.docs())),
            Route::SearchRepositories => {
                endpoints::search_repositories(state, request, &target.api_path, &urls)
            }
            Route::SearchEmpty => endpoints::search_empty(request),
            Route::Graphql => endpoints::graphql(request, graphql_cost, usage),
            Route::RateLimit | Route::NotFound => Reply::message(404, "Not Found", self.docs()),
        };

        if reply.is_success() {
            state.counters.successful += 1;
        }
        reply.rate(target.resource, usage)
    }

    /// Maps a request to a route, its bucket and its path below the API root.
    fn locate(&self, request: &Request) -> Target {
        let path = request.url.path();
        let is_post = request.method == Method::POST;

        let graphql_path = if self.settings.enterprise {
            "/api/graphql"
        } else {
            "/graphql"
        };
        if path == graphql_path && is_post {
            return Target {
                route: Route::Graphql,
                resource: Resource::Graphql,
                api_path: path.to_owned(),
            };
        }

        let api_path = if self.settings.enterprise {
            match path.strip_prefix("/api/v3") {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => {
                    return Target {
                        route: Route::NotFound,
                        resource: Resource::Core,
                        api_path: path.to_owned(),
                    }
                }
            }
        } else {
            path
        };

        let resource = if api_path.starts_with("/search/code") {
            Resource::CodeSearch
        } else if api_path.starts_with("/search/") {
            Resource::Search
        } else {
            Resource::Core
        };

        let route = if request.method == Method::GET {
            route_get(api_path)
        } else {
            Route::NotFound
        };

        Target {
            route,
            resource,
            api_path: api_path.to_owned(),
        }
    }

    /// Rejects anonymous requests to endpoints that need a token with 401, without spending.
    ///
    /// GitHub requires authentication for `/user`, code search and GraphQL.
    fn require_authentication(state: &mut State, target: &Target, now_ms: u64) -> Option<Reply> {
        let reply = if target.route == Route::Graphql {
            Reply::message(
                401,
                "This endpoint requires you to be authenticated.",
                DOCS_GRAPHQL_AUTH,
            )
        } else if target.route == Route::User || target.resource == Resource::CodeSearch {
            Reply::message(401, "Requires authentication", DOCS_REST)
        } else {
            return None;
        };

        state.counters.unauthorized += 1;
        let usage = state.anonymous.meter(Resource::Core).usage(now_ms);
        Some(reply.rate(Resource::Core, usage))
    }

    /// Builds the 401 `Bad credentials` response.
    ///
    /// Its headers report the anonymous `core` bucket without spending it,
    /// so that it carries `x-ratelimit-*` headers like the other JSON responses.
    fn bad_credentials(state: &mut State, now_ms: u64) -> Reply {
        state.counters.unauthorized += 1;
        let usage = state.anonymous.meter(Resource::Core).usage(now_ms);
        Reply::message(401, "Bad credentials", DOCS_REST).rate(Resource::Core, usage)
    }

    /// Returns a secondary-limit response when one is injected or too many requests are in flight.
    fn check_secondary(&self, account: &mut Account) -> Option<Reply> {
        let retry_after = match account.take_injected() {
            Some(retry_after) => retry_after,
            None => {
                let settings = &self.settings;
                if account.admit(Instant::now(), settings.latency, settings.concurrency_cap) {
                    return None;
                }
                Some(CONCURRENCY_RETRY_AFTER)
            }
        };

        let reply = Reply::message(
            self.settings.primary_status,
            SECONDARY_MESSAGE,
            DOCS_SECONDARY,
        );
        Some(match retry_after {
            Some(seconds) => reply.header("retry-after", seconds.to_string()),
            None => reply,
        })
    }

    /// Builds the primary-limit response to a request that found too few points in its bucket.
    fn primary_limited(&self, target: &Target, account: &Account) -> Reply {
        let message = if account.id == 0 {
            "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated \
             requests get a higher rate limit. Check out the documentation for more details.)"
                .to_owned()
        } else {
            format!("API rate limit exceeded for user ID {}.", account.id)
        };

        if target.route == Route::Graphql {
            let body = json!({"errors": [{"type": "RATE_LIMITED", "message": message}]});
            return Reply::json(200, &body);
        }
        Reply::message(self.settings.primary_status, &message, DOCS_RATE_LIMITS)
    }

    /// Serves `GET /rate_limit` for `account` without spending any bucket.
    fn rate_limit_overview(&self, account: &mut Account, now_ms: u64) -> Reply {
        if self.settings.enterprise {
            return Reply::message(404, "Rate limiting is not enabled.", DOCS_ENTERPRISE);
        }

        let mut resources = serde_json::Map::new();
        for resource in Resource::ALL {
            let usage = account.meter(resource).usage(now_ms);
            resources.insert(resource.name().to_owned(), usage_json(usage));
        }
        let core = account.meter(Resource::Core).usage(now_ms);

        let body = json!({"resources": resources, "rate": usage_json(core)});
        Reply::json(200, &body).rate(Resource::Core, core)
    }

    /// Builds the link roots from the request's `Host` header.
    fn urls(&self, request: &Request) -> Urls {
        let host = request
            .headers
            .get("host")
            .and_then(|value| value.to_str().ok())
            .filter(|host| is_plain_host(host))
            .unwrap_or(&self.listen_address)
            .to_owned();

        let web = format!("http://{host}");
        let api = if self.settings.enterprise {
            format!("{web}/api/v3")
        } else {
            web.clone()
        };
        Urls { api, web, host }
    }

    fn docs(&self) -> &'static str {
        if self.settings.enterprise {
            DOCS_ENTERPRISE
        } else {
            DOCS_REST
        }
    }

    /// Turns a reply into a wiremock template with the headers every response carries.
    fn finish(&self, reply: Reply, now_ms: u64, request_number: u64) -> ResponseTemplate {
        let request_id = format!(
            "5A1E:{:04X}:{:06X}:{:06X}:{:08X}",
            request_number % 0x1_0000,
            request_number % 0x100_0000,
            request_number.wrapping_mul(7919) % 0x100_0000,
            now_ms / 1000 % 0x1_0000_0000
        );

        let mut template = ResponseTemplate::new(reply.status)
            .set_body_raw(reply.body, reply.content_type)
            .insert_header("date", format_epoch_ms(now_ms))
            .insert_header("x-github-request-id", request_id);

        if self.settings.enterprise {
            template = template.insert_header("x-github-enterprise-version", ENTERPRISE_VERSION);
        } else if let Some((resource, usage)) = reply.rate {
            template = template
                .insert_header("x-ratelimit-limit", usage.limit.to_string())
                .insert_header("x-ratelimit-remaining", usage.remaining.to_string())
                .insert_header("x-ratelimit-used", usage.used.to_string())
                .insert_header("x-ratelimit-reset", usage.reset.to_string())
                .insert_header("x-ratelimit-resource", resource.name());
        }

        for (name, value) in reply.headers {
            template = template.insert_header(name, value);
        }
        if !self.settings.latency.is_zero() {
            template = template.set_delay(self.settings.latency);
        }
        template
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
        ["rate_limit"] => Route::RateLimit,
        ["user"] => Route::User,
        ["users", owner, "repos"] => Route::OwnerRepositories {
            owner: (*owner).to_owned(),
            organization: false,
        },
        ["orgs", owner, "repos"] => Route::OwnerRepositories {
            owner: (*owner).to_owned(),
            organization: true,
        },
        ["search", "repositories"] => Route::SearchRepositories,
        ["search", "code" | "commits" | "issues" | "labels" | "topics" | "users"] => {
            Route::SearchEmpty
        }
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

fn usage_json(usage: Usage) -> Value {
    json!({
        "limit": usage.limit,
        "used": usage.used,
        "remaining": usage.remaining,
        "reset": usage.reset,
    })
}
