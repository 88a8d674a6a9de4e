//! The status probe: a token's limits from `GET /rate_limit` and its
//! account from `GET /user`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use serde::Deserialize;
use tokenfleet_core::provider::server_reason;
use tokenfleet_core::{Bucket, Observation, Probe, ProbeError, Provider, Token, Transport};

use crate::classify::{parse_date_ms, parse_observation, reset_to_ms};
use crate::config::Github;
use crate::GITHUB;

const RATE_LIMIT_PATH: &str = "/rate_limit";
const USER_PATH: &str = "/user";

/// GitHub's budget for requests without a valid token, per hour. A token
/// whose `core` limit is no higher gets no more than an anonymous caller.
const ANONYMOUS_LIMIT: u64 = 60;

#[derive(Deserialize)]
struct RateLimitOverview {
    resources: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct BucketLimits {
    limit: u64,
    remaining: u64,
    reset: u64,
    used: Option<u64>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// Probes one token. See [`Provider::probe`].
pub(crate) async fn probe(
    github: &Github,
    token: &Token,
    transport: &dyn Transport,
    learn_account: bool,
) -> Result<Probe, ProbeError> {
    let response = get(github, token, transport, RATE_LIMIT_PATH)
        .await
        .map_err(ProbeError::Failed)?;
    let status = response.status();
    let body = response.body();
    let mut probe = Probe {
        server_date_ms: parse_date_ms(response.headers()),
        ..Probe::default()
    };

    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            return Err(rejected(body, token));
        }
        StatusCode::NOT_FOUND => {
            // GitHub Enterprise Server returns 404 with "Rate limiting is
            // not enabled." (older versions: "No rate limit for white
            // listed users") when rate limiting is off, and then sends no
            // `x-ratelimit-*` headers either.
            let message = server_message(body, token)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if message.contains("not enabled") || message.contains("no rate limit") {
                tracing::debug!(
                    provider = GITHUB,
                    token = %token.id(),
                    "rate limiting is not enabled on this server"
                );
                probe.unlimited = true;
                return Ok(probe);
            }
            // A server without the endpoint: budgets are learned from the
            // headers of responses, one request at a time until then.
            tracing::debug!(
                provider = GITHUB,
                token = %token.id(),
                "GET {RATE_LIMIT_PATH} not found; limits come from response headers"
            );
            if learn_account {
                learn_user(github, token, transport, &mut probe).await?;
            }
            return Ok(probe);
        }
        _ => {
            let message = match server_message(body, token) {
                Some(message) => format!("GET {RATE_LIMIT_PATH} returned {status}: {message}"),
                None => format!("GET {RATE_LIMIT_PATH} returned {status}"),
            };
            return Err(ProbeError::Failed(message));
        }
    }

    let overview: RateLimitOverview = serde_json::from_slice(body).map_err(|error| {
        ProbeError::Failed(format!(
            "GET {RATE_LIMIT_PATH} returned an invalid body: {error}"
        ))
    })?;
    probe.observations = read_buckets(overview, token);

    let core = github.default_bucket();
    let Some(core_limits) = probe
        .observations
        .iter()
        .find(|observation| observation.bucket.as_ref() == Some(&core))
        .cloned()
    else {
        return Err(ProbeError::Failed(format!(
            "GET {RATE_LIMIT_PATH} returned no readable `{core}` bucket"
        )));
    };

    // Only the exact unauthenticated figure counts: an Enterprise Server
    // admin may set other small limits for authenticated users.
    if core_limits.limit == ANONYMOUS_LIMIT {
        probe.degraded = Some(format!(
            "the token gets only the unauthenticated budget of {ANONYMOUS_LIMIT} requests per hour"
        ));
    }

    if learn_account {
        if core_limits.remaining > 0 {
            learn_user(github, token, transport, &mut probe).await?;
        } else {
            // `GET /user` would be rejected because no budget is left. Until
            // it succeeds, two tokens of one user cannot be distinguished.
            probe.account_deferred = true;
        }
    }

    Ok(probe)
}

/// Reads every bucket of the `resources` object, skipping entries that
/// lack an integer `limit`, `remaining` or `reset`.
fn read_buckets(overview: RateLimitOverview, token: &Token) -> Vec<Observation> {
    let mut observations = Vec::with_capacity(overview.resources.len());
    for (name, value) in overview.resources {
        match BucketLimits::deserialize(value) {
            Ok(limits) => observations.push(Observation {
                bucket: Some(Bucket::new(name)),
                limit: limits.limit,
                remaining: limits.remaining,
                used: limits.used,
                reset_ms: reset_to_ms(limits.reset),
            }),
            Err(error) => tracing::debug!(
                provider = GITHUB,
                token = %token.id(),
                bucket = %name,
                %error,
                "skipped unreadable bucket in rate limit status"
            ),
        }
    }
    observations
}

/// Learns the token's account from `GET /user`, and records the limits
/// that response states, because it spent one `core` request.
///
/// Only a 401 fails the probe. Any other failure leaves the account
/// unknown, because the limits are already known.
async fn learn_user(
    github: &Github,
    token: &Token,
    transport: &dyn Transport,
    probe: &mut Probe,
) -> Result<(), ProbeError> {
    let response = match get(github, token, transport, USER_PATH).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(provider = GITHUB, token = %token.id(), %error, "account not learned");
            return Ok(());
        }
    };
    let status = response.status();

    if status == StatusCode::UNAUTHORIZED {
        return Err(rejected(response.body(), token));
    }

    if let Some(observation) = parse_observation(response.headers()) {
        probe.observations.push(observation);
    }
    if probe.server_date_ms.is_none() {
        probe.server_date_ms = parse_date_ms(response.headers());
    }

    if status != StatusCode::OK {
        tracing::debug!(
            provider = GITHUB,
            token = %token.id(),
            %status,
            "account not learned"
        );
        return Ok(());
    }

    match serde_json::from_slice::<User>(response.body()) {
        Ok(user) => probe.account = Some(format!("github-user:{}", user.id)),
        Err(error) => tracing::debug!(
            provider = GITHUB,
            token = %token.id(),
            %error,
            "account not learned: GET /user returned an invalid body"
        ),
    }
    Ok(())
}

/// Sends an authorized `GET` for `path` under the base URL.
async fn get(
    github: &Github,
    token: &Token,
    transport: &dyn Transport,
    path: &str,
) -> Result<Response<Bytes>, String> {
    let url = github.endpoint(path);
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|error| format!("GET {path} failed: invalid URL: {error}"))?;

    let mut request = Request::new(Bytes::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    github.authorize(request.headers_mut(), token);

    transport
        .send(request)
        .await
        .map_err(|error| format!("GET {path} failed: {error}"))
}

/// Builds the error for a 401, with the server's message ("Bad credentials").
fn rejected(body: &[u8], token: &Token) -> ProbeError {
    let message = server_message(body, token).unwrap_or_else(|| "401 Unauthorized".to_owned());
    ProbeError::InvalidToken(message)
}

/// Returns the JSON `message` of an error body, shortened to
/// [`MAX_REASON_CHARS`](tokenfleet_core::provider::MAX_REASON_CHARS) and with the token's secret removed should the
/// server echo it.
fn server_message(body: &[u8], token: &Token) -> Option<String> {
    let message = serde_json::from_slice::<ErrorBody>(body).ok()?.message?;
    server_reason(&message, token.secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use tokenfleet_core::TransportError;
    use url::Url;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const CANARY: &str = "ghp_CANARY0000000000000000000000000000";
    const N: u64 = 1_691_591_000;
    const DATE_TEXT: &str = "Wed, 09 Aug 2023 14:23:20 GMT";

    /// Sends requests with reqwest, to loopback addresses only.
    #[derive(Debug)]
    struct LoopbackTransport {
        client: reqwest::Client,
    }

    impl LoopbackTransport {
        fn new() -> Self {
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a plain HTTP client builds");
            Self { client }
        }
    }

    #[async_trait]
    impl Transport for LoopbackTransport {
        async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
            let host = request.uri().host().unwrap_or_default();
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Err(TransportError {
                    message: format!("test transport rejects non-loopback host {host}"),
                });
            }

            let request = reqwest::Request::try_from(request).map_err(|error| TransportError {
                message: error.without_url().to_string(),
            })?;
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|error| TransportError {
                    message: error.without_url().to_string(),
                })?;

            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|error| TransportError {
                message: error.without_url().to_string(),
            })?;

            let mut converted = Response::new(body);
            *converted.status_mut() = status;
            *converted.headers_mut() = headers;
            Ok(converted)
        }
    }

    /// Fails every request, like a network that is down.
    #[derive(Debug)]
    struct DownTransport;

    #[async_trait]
    impl Transport for DownTransport {
        async fn send(&self, _: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
            Err(TransportError {
                message: "connection refused".to_owned(),
            })
        }
    }

    fn rate_limit_body(core_limit: u64, core_remaining: u64) -> serde_json::Value {
        let core_used = core_limit - core_remaining;
        serde_json::json!({
            "resources": {
                "core": {"limit": core_limit, "used": core_used, "remaining": core_remaining, "reset": N + 3600},
                "search": {"limit": 30, "used": 12, "remaining": 18, "reset": N + 60},
                "graphql": {"limit": 5000, "used": 7, "remaining": 4993, "reset": N + 1800},
                "code_search": {"limit": 10, "remaining": 10, "reset": N + 60},
                "integration_manifest": {"limit": 5000, "used": 1, "remaining": 4999, "reset": N + 3600}
            },
            "rate": {"limit": core_limit, "used": core_used, "remaining": core_remaining, "reset": N + 3600}
        })
    }

    fn observation(
        bucket: &str,
        limit: u64,
        remaining: u64,
        used: Option<u64>,
        reset: u64,
    ) -> Observation {
        Observation {
            bucket: Some(Bucket::new(bucket)),
            limit,
            remaining,
            used,
            reset_ms: reset * 1000,
        }
    }

    fn github_for(server: &MockServer) -> Github {
        Github::with_base_url(Url::parse(&server.uri()).unwrap())
    }

    async fn mount_rate_limit(server: &MockServer, template: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path("/rate_limit"))
            .respond_with(template)
            .expect(1)
            .mount(server)
            .await;
    }

    async fn mount_user(server: &MockServer, template: ResponseTemplate, calls: u64) {
        Mock::given(method("GET"))
            .and(path("/user"))
            .respond_with(template)
            .expect(calls)
            .mount(server)
            .await;
    }

    fn user_response(remaining: u64) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .insert_header("x-ratelimit-limit", "5000")
            .insert_header("x-ratelimit-remaining", remaining.to_string().as_str())
            .insert_header("x-ratelimit-used", (5000 - remaining).to_string().as_str())
            .insert_header("x-ratelimit-reset", (N + 3600).to_string().as_str())
            .insert_header("x-ratelimit-resource", "core")
            .set_body_json(serde_json::json!({"login": "octocat", "id": 583231}))
    }

    #[tokio::test]
    async fn probe_reads_every_bucket() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200)
            .insert_header("date", DATE_TEXT)
            .set_body_json(rate_limit_body(5000, 4999));
        mount_rate_limit(&server, template).await;
        mount_user(&server, user_response(4998), 0).await;

        let probe = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap();

        let expected = vec![
            observation("code_search", 10, 10, None, N + 60),
            observation("core", 5000, 4999, Some(1), N + 3600),
            observation("graphql", 5000, 4993, Some(7), N + 1800),
            observation("integration_manifest", 5000, 4999, Some(1), N + 3600),
            observation("search", 30, 18, Some(12), N + 60),
        ];
        assert_eq!(probe.observations, expected);
        assert_eq!(probe.server_date_ms, Some(N * 1000));
        assert!(!probe.unlimited);
        assert_eq!(probe.degraded, None);
        assert_eq!(probe.account, None);
    }

    #[tokio::test]
    async fn probe_sends_authorized_headers() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/rate_limit"))
            .and(header("authorization", format!("Bearer {CANARY}").as_str()))
            .and(header("accept", "application/vnd.github+json"))
            .and(header("x-github-api-version", "2022-11-28"))
            .and(header("user-agent", "probe-test/1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 5000)))
            .expect(1)
            .mount(&server)
            .await;

        let github = github_for(&server).user_agent("probe-test/1");
        let probe = github
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await;
        assert!(probe.is_ok(), "{probe:?}");
    }

    #[tokio::test]
    async fn probe_learns_account() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 4999));
        mount_rate_limit(&server, template).await;
        mount_user(&server, user_response(4998), 1).await;

        let probe = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(probe.account.as_deref(), Some("github-user:583231"));
        let last = probe.observations.last().unwrap();
        assert_eq!(last, &observation("core", 5000, 4998, Some(2), N + 3600));
        assert_eq!(probe.observations.len(), 6);
    }

    #[tokio::test]
    async fn probe_skips_account_without_budget() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 0));
        mount_rate_limit(&server, template).await;
        mount_user(&server, user_response(0), 0).await;

        let probe = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(probe.account, None);
        assert_eq!(probe.observations.len(), 5);
    }

    #[tokio::test]
    async fn probe_survives_user_forbidden() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 4999));
        mount_rate_limit(&server, template).await;
        let forbidden = ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "message": "Resource not accessible by integration"
        }));
        mount_user(&server, forbidden, 1).await;

        let probe = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(probe.account, None);
        assert_eq!(probe.observations.len(), 5);
    }

    #[tokio::test]
    async fn probe_survives_user_invalid_body() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 4999));
        mount_rate_limit(&server, template).await;
        let no_id = ResponseTemplate::new(200).set_body_json(serde_json::json!({"login": "x"}));
        mount_user(&server, no_id, 1).await;

        let probe = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(probe.account, None);
    }

    #[tokio::test]
    async fn probe_user_unauthorized_is_invalid() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 4999));
        mount_rate_limit(&server, template).await;
        let unauthorized = ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "message": "Bad credentials"
        }));
        mount_user(&server, unauthorized, 1).await;

        let error = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap_err();

        assert!(matches!(error, ProbeError::InvalidToken(_)), "{error:?}");
    }

    #[tokio::test]
    async fn probe_bad_credentials() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest"
        }));
        mount_rate_limit(&server, template).await;
        mount_user(&server, user_response(4998), 0).await;

        let error = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap_err();

        let ProbeError::InvalidToken(message) = &error else {
            panic!("expected an invalid token, got {error:?}");
        };
        assert_eq!(message, "Bad credentials");
        assert_eq!(
            error.to_string(),
            "the provider rejected the token: Bad credentials"
        );
    }

    #[tokio::test]
    async fn probe_errors_hide_echoed_secret() {
        let server = MockServer::start().await;
        let echo = format!("Bad credentials: {CANARY}");
        let template =
            ResponseTemplate::new(401).set_body_json(serde_json::json!({ "message": echo }));
        mount_rate_limit(&server, template).await;

        let error = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap_err();

        let output = format!("{error} {error:?}");
        assert!(!output.contains(CANARY), "{output}");
        assert!(output.contains("[redacted]"), "{output}");
    }

    #[tokio::test]
    async fn probe_plain_404_is_not_unlimited() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/rate_limit"))
            .respond_with(
                ResponseTemplate::new(404)
                    .set_body_json(serde_json::json!({"message": "Not Found"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/user"))
            .respond_with(user_response(4998))
            .expect(1)
            .mount(&server)
            .await;

        let base = Url::parse(&server.uri()).unwrap();
        let probe = Github::with_base_url(base)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert!(!probe.unlimited);
        assert!(probe.account.is_some());
        assert_eq!(probe.observations.len(), 1);
    }

    #[tokio::test]
    async fn probe_unlimited_on_404() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(404)
            .insert_header("date", DATE_TEXT)
            .set_body_json(serde_json::json!({
                "message": "Rate limiting is not enabled.",
                "documentation_url": "https://docs.github.com/enterprise-server/rest"
            }));
        Mock::given(method("GET"))
            .and(path("/api/v3/rate_limit"))
            .respond_with(template)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/api/v3/user"))
            .respond_with(user_response(4998))
            .expect(0)
            .mount(&server)
            .await;

        let base = Url::parse(&format!("{}/api/v3", server.uri())).unwrap();
        let probe = Github::with_base_url(base)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert!(probe.unlimited);
        assert!(probe.observations.is_empty());
        assert_eq!(probe.account, None);
        assert_eq!(probe.degraded, None);
        assert_eq!(probe.server_date_ms, Some(N * 1000));
    }

    #[tokio::test]
    async fn probe_enterprise_base_path() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/v3/rate_limit"))
            .respond_with(ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 4999)))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/v3/user"))
            .respond_with(user_response(4998))
            .expect(1)
            .mount(&server)
            .await;

        let base = Url::parse(&format!("{}/api/v3/", server.uri())).unwrap();
        let probe = Github::with_base_url(base)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(probe.account.as_deref(), Some("github-user:583231"));
    }

    #[tokio::test]
    async fn probe_flags_anonymous_budget() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200).set_body_json(rate_limit_body(60, 59));
        mount_rate_limit(&server, template).await;

        let probe = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap();

        let degraded = probe.degraded.unwrap();
        assert!(degraded.contains("60 requests per hour"), "{degraded}");
    }

    #[tokio::test]
    async fn probe_server_error_fails() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(502)
            .insert_header("content-type", "text/html")
            .set_body_string("<html><body><h1>502 Bad Gateway</h1></body></html>");
        mount_rate_limit(&server, template).await;

        let error = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap_err();

        let ProbeError::Failed(message) = &error else {
            panic!("expected a failure, got {error:?}");
        };
        assert_eq!(message, "GET /rate_limit returned 502 Bad Gateway");
    }

    #[tokio::test]
    async fn probe_forbidden_fails_with_message() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "message": "Maximum number of login attempts exceeded. Please try again later."
        }));
        mount_rate_limit(&server, template).await;

        let error = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap_err();

        let ProbeError::Failed(message) = &error else {
            panic!("expected a failure, got {error:?}");
        };
        assert!(
            message.starts_with("GET /rate_limit returned 403 Forbidden: Maximum"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn probe_invalid_json_fails() {
        let server = MockServer::start().await;
        let template = ResponseTemplate::new(200).set_body_string("{\"resources\": ");
        mount_rate_limit(&server, template).await;

        let error = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap_err();

        let ProbeError::Failed(message) = &error else {
            panic!("expected a failure, got {error:?}");
        };
        assert!(
            message.starts_with("GET /rate_limit returned an invalid body"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn probe_without_core_fails() {
        let server = MockServer::start().await;
        let body = serde_json::json!({
            "resources": {"search": {"limit": 30, "used": 0, "remaining": 30, "reset": N}}
        });
        mount_rate_limit(&server, ResponseTemplate::new(200).set_body_json(body)).await;

        let error = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap_err();

        assert!(
            error.to_string().contains("no readable `core` bucket"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn probe_skips_unreadable_bucket() {
        let server = MockServer::start().await;
        let body = serde_json::json!({
            "resources": {
                "core": {"limit": 5000, "used": 0, "remaining": 5000, "reset": N},
                "search": {"limit": "thirty", "remaining": 30, "reset": N}
            }
        });
        mount_rate_limit(&server, ResponseTemplate::new(200).set_body_json(body)).await;

        let probe = github_for(&server)
            .probe(&Token::new(CANARY), &LoopbackTransport::new(), false)
            .await
            .unwrap();

        assert_eq!(
            probe.observations,
            vec![observation("core", 5000, 5000, Some(0), N)]
        );
    }

    #[tokio::test]
    async fn probe_transport_failure() {
        let github = Github::with_base_url(Url::parse("http://127.0.0.1:9").unwrap());
        let error = github
            .probe(&Token::new(CANARY), &DownTransport, true)
            .await
            .unwrap_err();

        let ProbeError::Failed(message) = &error else {
            panic!("expected a failure, got {error:?}");
        };
        assert_eq!(message, "GET /rate_limit failed: connection refused");
        assert!(!format!("{error:?}").contains(CANARY));
    }
}
