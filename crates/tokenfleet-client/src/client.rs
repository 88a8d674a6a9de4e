//! Sending requests through a pool: acquire, authorize, send, classify, complete.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokenfleet_core::provider::same_origin;
use tokenfleet_core::random::SharedRng;
use tokenfleet_core::{Outcome, ResponseView, TokenId, TokenPool, Verdict};
use url::Url;

use crate::error::ClientError;
use crate::response::Response;
use crate::scrub_url;
use crate::transport::ReqwestTransport;

/// How many times a transient failure of an idempotent request is retried.
const DEFAULT_MAX_RETRIES: u32 = 4;
/// How many rate-limit or invalid-token responses one request may meet
/// before it fails. Each one rotates to another token or waits.
const DEFAULT_MAX_ROTATIONS: u32 = 16;
const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: u32 = 5;

/// Sends requests through a [`TokenPool`].
///
/// Cloning is cheap and every clone shares the pool and the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    pool: TokenPool,
    max_retries: u32,
    max_rotations: u32,
    backoff: Duration,
    jitter: Arc<SharedRng>,
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    http: Option<reqwest::Client>,
    max_retries: u32,
    max_rotations: u32,
    backoff: Duration,
    seed: Option<u64>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            http: None,
            max_retries: DEFAULT_MAX_RETRIES,
            max_rotations: DEFAULT_MAX_ROTATIONS,
            backoff: DEFAULT_BACKOFF,
            seed: None,
        }
    }
}

impl ClientBuilder {
    /// Uses this reqwest client. It must not follow redirects
    /// (`redirect::Policy::none()`), because the client follows them itself
    /// so that a token never goes to another host.
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Sets how many times a transient failure of an idempotent request is
    /// retried (default 4).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets how many rate-limit or invalid-token responses one request may
    /// meet before it fails (default 16).
    pub fn max_rotations(mut self, rotations: u32) -> Self {
        self.max_rotations = rotations;
        self
    }

    /// Sets the first backoff after a transient failure (default 500 ms);
    /// it doubles on each retry up to 30 s, with jitter.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Fixes the seed of the backoff jitter.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Builds a client for `pool`.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::InvalidRequest`] when the HTTP client cannot be built.
    pub fn build(self, pool: TokenPool) -> Result<Client, ClientError> {
        let http = match self.http {
            Some(http) => http,
            None => default_http()?,
        };
        Ok(Client {
            http,
            pool,
            max_retries: self.max_retries,
            max_rotations: self.max_rotations,
            backoff: self.backoff,
            jitter: Arc::new(SharedRng::new(self.seed.unwrap_or_else(rand::random))),
        })
    }
}

/// Builds the reqwest client the crate uses by default: no redirects,
/// bounded connect and request times.
///
/// # Errors
///
/// Returns [`ClientError::InvalidRequest`] when reqwest cannot build it.
pub fn default_http() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ClientError::InvalidRequest(format!("building the HTTP client failed: {e}")))
}

impl Client {
    /// Builds a client with default settings for `pool`.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::InvalidRequest`] when the HTTP client cannot be built.
    pub fn new(pool: TokenPool) -> Result<Self, ClientError> {
        ClientBuilder::default().build(pool)
    }

    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Returns a transport for the pool's status requests that shares this
    /// client's connections.
    pub fn transport(&self) -> ReqwestTransport {
        ReqwestTransport::new(self.http.clone())
    }

    /// Returns the pool.
    pub fn pool(&self) -> &TokenPool {
        &self.pool
    }

    /// Resolves `path` (such as `/users/octocat/repos`) against the
    /// provider's base URL.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::InvalidRequest`] when the result is not a URL.
    pub fn url(&self, path: &str) -> Result<Url, ClientError> {
        let base = self.pool.provider().base_url();
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        Url::parse(&joined)
            .map_err(|e| ClientError::InvalidRequest(format!("invalid path {path:?}: {e}")))
    }

    /// Sends a GET request to `path` relative to the provider's base URL.
    ///
    /// # Errors
    ///
    /// See [`Client::send`].
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        let url = self.url(path)?;
        self.send(Method::GET, url, HeaderMap::new(), None).await
    }

    /// Sends a request through the pool and returns the provider's response.
    ///
    /// Rate limits and invalid tokens rotate to another token, or wait as
    /// the pool's wait policy allows. Transient failures of idempotent
    /// requests are retried with backoff. Any other response, success or
    /// not, is returned as a [`Response`].
    ///
    /// # Errors
    ///
    /// [`ClientError::ForeignHost`] for a URL off the provider's host,
    /// [`ClientError::Pool`] when no token can serve, and
    /// [`ClientError::Transport`], [`ClientError::Server`] or
    /// [`ClientError::TooManyAttempts`] when the bounds are reached.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response, ClientError> {
        self.send_avoiding(method, url, headers, body, &[]).await
    }

    /// Sends a request like [`Client::send`], preferring tokens not in
    /// `avoid` (see [`TokenPool::acquire_avoiding`]).
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    pub async fn send_avoiding(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        avoid: &[TokenId],
    ) -> Result<Response, ClientError> {
        let provider = Arc::clone(self.pool.provider());
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let mut url = url;
        let mut attempts = 0u32;
        let mut retries = 0u32;
        let mut rotations = 0u32;
        let mut redirects = 0u32;

        loop {
            if !same_origin(provider.base_url(), &url) {
                return Err(ClientError::ForeignHost {
                    provider: provider.kind().to_owned(),
                    url: scrub_url(&url),
                    base: scrub_url(provider.base_url()),
                });
            }
            let bucket = contain(provider.kind(), "choosing a bucket", || {
                provider.bucket_for(&method, &url)
            })?;
            let mut lease = self.pool.acquire_avoiding(&bucket, avoid).await?;
            attempts += 1;

            let mut request_headers = headers.clone();
            // The authorized URL may carry the token, so only `url` is logged.
            let mut request_url = url.clone();
            contain(provider.kind(), "authorizing a request", || {
                provider.authorize(&mut request_headers, lease.token());
                provider.authorize_url(&mut request_url, lease.token());
            })?;
            let mut request = self
                .http
                .request(method.clone(), request_url)
                .headers(request_headers);
            if let Some(body) = &body {
                request = request.body(body.clone());
            }

            lease.mark_sent();
            let sent = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let response_headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(bytes) => Ok((status, response_headers, bytes)),
                        Err(e) => Err(describe_error(e)),
                    }
                }
                Err(e) => Err(describe_error(e)),
            };
            let (status, response_headers, response_body) = match sent {
                Ok(parts) => parts,
                Err(message) => {
                    lease.complete(&Verdict::new(Outcome::ServerError)).await?;
                    if idempotent && retries < self.max_retries {
                        retries += 1;
                        let wait = self.backoff_for(retries, None);
                        tracing::warn!(
                            provider = provider.kind(),
                            url = %scrub_url(&url),
                            attempt = attempts,
                            wait_ms = wait.as_millis() as u64,
                            error = %message,
                            "request failed, retrying"
                        );
                        self.pool.clock().sleep(wait).await;
                        continue;
                    }
                    return Err(ClientError::Transport {
                        url: scrub_url(&url),
                        message,
                        attempts,
                    });
                }
            };

            let token_id = lease.token().id().clone();
            let view = ResponseView {
                status,
                headers: &response_headers,
                body: &response_body,
                bucket: lease.bucket(),
                account: lease.account(),
                now_ms: self.pool.clock().now_ms(),
            };
            // A lease dropped by the early return keeps its unit spent,
            // because the request reached the provider.
            let verdict = contain(provider.kind(), "classifying a response", || {
                provider.classify(&view)
            })?;
            // A redirect may repeat the token in its URL (a query-parameter
            // token), which must not follow it to another host.
            let redirect_token = status.is_redirection().then(|| lease.token().clone());
            lease.complete(&verdict).await?;
            tracing::trace!(
                provider = provider.kind(),
                token = %token_id,
                status = status.as_u16(),
                outcome = ?verdict.outcome,
                "response"
            );

            match &verdict.outcome {
                Outcome::PrimaryLimit { .. }
                | Outcome::SecondaryLimit { .. }
                | Outcome::InvalidToken => {
                    rotations += 1;
                    tracing::debug!(
                        provider = provider.kind(),
                        token = %token_id,
                        outcome = ?verdict.outcome,
                        "rotating to another token"
                    );
                    if rotations > self.max_rotations {
                        return Err(ClientError::TooManyAttempts {
                            url: scrub_url(&url),
                            attempts,
                            message: format!("last response was {status} ({})", verdict.outcome),
                        });
                    }
                    continue;
                }
                Outcome::ServerError => {
                    if idempotent && retries < self.max_retries {
                        retries += 1;
                        let wait = self.backoff_for(retries, retry_after(&response_headers));
                        tracing::warn!(
                            provider = provider.kind(),
                            url = %scrub_url(&url),
                            status = status.as_u16(),
                            attempt = attempts,
                            wait_ms = wait.as_millis() as u64,
                            "server error, retrying"
                        );
                        self.pool.clock().sleep(wait).await;
                        continue;
                    }
                    return Err(ClientError::Server {
                        url: scrub_url(&url),
                        status,
                        attempts,
                    });
                }
                _ => {}
            }

            if status.is_redirection() && redirects < MAX_REDIRECTS {
                if let Some(target) = redirect_target(&url, &response_headers) {
                    redirects += 1;
                    if same_origin(provider.base_url(), &target) {
                        url = target;
                        continue;
                    }
                    let Some(target) = redirect_token
                        .as_ref()
                        .map_or(Some(target.clone()), |token| {
                            without_secret(&target, token.secret())
                        })
                    else {
                        return Err(ClientError::ForeignHost {
                            provider: provider.kind().to_owned(),
                            url: "a redirect URL that repeats the token".to_owned(),
                            base: scrub_url(provider.base_url()),
                        });
                    };
                    return self
                        .follow_foreign(method, target, headers, body, attempts + 1)
                        .await;
                }
            }

            return Ok(Response {
                status,
                headers: response_headers,
                body: response_body,
                url,
                token: Some(token_id),
                attempts,
            });
        }
    }

    /// Follows a redirect to another host without any token.
    async fn follow_foreign(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        attempts: u32,
    ) -> Result<Response, ClientError> {
        tracing::debug!(url = %scrub_url(&url), "redirect to another host; sending without a token");
        let mut clean = headers;
        clean.remove(http::header::AUTHORIZATION);
        clean.remove(http::header::COOKIE);
        clean.remove(http::header::PROXY_AUTHORIZATION);
        let mut request = self.http.request(method, url.clone()).headers(clean);
        if let Some(body) = body {
            request = request.body(body);
        }
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: scrub_url(&url),
            message: describe_error(e),
            attempts,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let response_headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        Ok(Response {
            status,
            headers: response_headers,
            body,
            url,
            token: None,
            attempts,
        })
    }

    fn backoff_for(&self, retry: u32, server_wait: Option<Duration>) -> Duration {
        if let Some(wait) = server_wait {
            return wait.min(MAX_BACKOFF * 4);
        }
        let exponential = self
            .backoff
            .saturating_mul(1 << (retry - 1).min(16))
            .min(MAX_BACKOFF);
        // Equal jitter: half fixed, half random, so retries spread out.
        let half = exponential / 2;
        half + half.mul_f64(self.jitter.next_unit())
    }

    pub(crate) fn status_error(response: &Response) -> ClientError {
        ClientError::Status {
            url: scrub_url(response.url()),
            status: response.status(),
            message: response.message(),
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn redirect_target(url: &Url, headers: &HeaderMap) -> Option<Url> {
    let location = headers.get(http::header::LOCATION)?.to_str().ok()?;
    url.join(location).ok()
}

/// Runs one step of a provider plugin, turning a panic into an error that
/// names the provider, so a faulty plugin fails one request and leaves the
/// pool usable.
fn contain<T>(provider: &str, step: &str, run: impl FnOnce() -> T) -> Result<T, ClientError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|_| ClientError::Plugin {
        plugin: provider.to_owned(),
        message: format!("the provider panicked while {step}"),
    })
}

/// Returns `url` without the query parameters that carry `secret`, or
/// `None` when the secret sits in a part that cannot be dropped (the path,
/// the fragment or the user information).
fn without_secret(url: &Url, secret: &str) -> Option<Url> {
    if secret.is_empty() || !url.as_str().contains(secret) {
        return Some(url.clone());
    }
    let mut clean = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, value)| !name.contains(secret) && !value.contains(secret))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    if kept.is_empty() {
        clean.set_query(None);
    } else {
        clean.query_pairs_mut().clear().extend_pairs(kept);
    }
    (!clean.as_str().contains(secret)).then_some(clean)
}

/// Describes a reqwest error with its causes ("error sending request: client
/// error (Connect): tcp connect error: Connection refused") and notes when it
/// timed out, without the URL, which may carry a token.
fn describe_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() && !text.contains("timed out") {
        text.push_str(" (timed out)");
    }
    text
}
