//! The probe: validates a token with `GET /user` and learns its login.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use serde::Deserialize;
use tokenfleet_core::provider::server_reason;
use tokenfleet_core::{Observation, Probe, ProbeError, Provider, Token, Transport};

use crate::classify::{parse_date_ms, parse_observation, parse_retry_after};
use crate::config::Gitea;
use crate::GITEA;

const USER_PATH: &str = "/user";

/// The wait assumed after a 429 that states none, matching the first
/// cooldown the pool gives such a throttle.
const UNSTATED_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// Probes one token. See [`Provider::probe`].
///
/// `GET /user` needs a signed-in caller on every Gitea and Forgejo
/// version, so it rejects an invalid token with 401 even on the versions
/// that serve other endpoints to it as if it were anonymous.
pub(crate) async fn probe(
    gitea: &Gitea,
    token: &Token,
    transport: &dyn Transport,
    learn_account: bool,
) -> Result<Probe, ProbeError> {
    let response = get(gitea, token, transport, USER_PATH)
        .await
        .map_err(ProbeError::Failed)?;
    let status = response.status();
    let headers = response.headers();
    let body = response.body();

    let server_date_ms = parse_date_ms(headers);
    let observation = server_date_ms.and_then(|now_ms| parse_observation(headers, now_ms));
    let mut probe = Probe {
        server_date_ms,
        ..Probe::default()
    };

    match status {
        StatusCode::OK => {
            match observation {
                Some(observation) => probe.observations.push(observation),
                None => probe.unlimited = true,
            }
            if learn_account {
                probe.account = read_login(body, token);
            }
            Ok(probe)
        }
        StatusCode::UNAUTHORIZED => {
            let message =
                server_message(body, token).unwrap_or_else(|| "401 Unauthorized".to_owned());
            Err(ProbeError::InvalidToken(message))
        }
        StatusCode::FORBIDDEN => {
            // The token is valid but may not read its user (a scope
            // without `read:user`). It stays usable, charged to an account
            // of its own.
            tracing::debug!(
                provider = GITEA,
                token = %token.id(),
                message = server_message(body, token).unwrap_or_default(),
                "GET {USER_PATH} forbidden; the token's account is not learned"
            );
            match observation {
                Some(observation) => probe.observations.push(observation),
                None => probe.unlimited = true,
            }
            Ok(probe)
        }
        StatusCode::TOO_MANY_REQUESTS => Ok(throttled(probe, observation, headers, learn_account)),
        StatusCode::NOT_FOUND => Err(ProbeError::Failed(format!(
            "GET {USER_PATH} returned 404 Not Found; check that base_url is the API root, \
             such as https://HOST/api/v1"
        ))),
        _ => {
            let message = match server_message(body, token) {
                Some(message) => format!("GET {USER_PATH} returned {status}: {message}"),
                None => format!("GET {USER_PATH} returned {status}"),
            };
            Err(ProbeError::Failed(message))
        }
    }
}

/// Builds the probe of a token whose `GET /user` a proxy throttled.
///
/// When the account is to be learned, the token is reported spent until
/// the throttle ends and its account as deferred, so the pool keeps it out
/// of use and probes it again then. A token whose account is declared is
/// left unknown instead: the pool then sends one request at a time until
/// a response states more, and a 429 starts the account's cooldown.
fn throttled(
    mut probe: Probe,
    observation: Option<Observation>,
    headers: &http::HeaderMap,
    learn_account: bool,
) -> Probe {
    if !learn_account {
        return probe;
    }
    let Some(now_ms) = probe.server_date_ms else {
        // Without the server's time a wait cannot become an instant.
        return probe;
    };
    let reset_ms = match observation.as_ref() {
        Some(observation) if observation.remaining == 0 => observation.reset_ms,
        _ => {
            let wait = parse_retry_after(headers, now_ms).unwrap_or(UNSTATED_WAIT);
            now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
        }
    };
    probe.account_deferred = true;
    probe.observations.push(Observation {
        bucket: None,
        limit: observation.map_or(0, |observation| observation.limit),
        remaining: 0,
        used: None,
        reset_ms,
    });
    probe
}

/// Reads the login from a `GET /user` body, or `None` (with a debug
/// line) when the body has none.
fn read_login(body: &[u8], token: &Token) -> Option<String> {
    match serde_json::from_slice::<User>(body) {
        Ok(user) if !user.login.trim().is_empty() => Some(user.login),
        Ok(_) => {
            tracing::debug!(provider = GITEA, token = %token.id(), "account not learned: empty login");
            None
        }
        Err(error) => {
            tracing::debug!(
                provider = GITEA,
                token = %token.id(),
                %error,
                "account not learned: GET {USER_PATH} returned an invalid body"
            );
            None
        }
    }
}

/// Sends an authorized `GET` for `path` under the base URL.
async fn get(
    gitea: &Gitea,
    token: &Token,
    transport: &dyn Transport,
    path: &str,
) -> Result<Response<Bytes>, String> {
    let url = gitea.endpoint(path);
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|error| format!("GET {path} failed: invalid URL: {error}"))?;

    let mut request = Request::new(Bytes::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    gitea.authorize(request.headers_mut(), token);

    transport
        .send(request)
        .await
        .map_err(|error| format!("GET {path} failed: {error}"))
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
    use std::sync::Arc;

    use async_trait::async_trait;
    use tokenfleet_core::{ManualClock, TransportError};
    use tokenfleet_testkit::GiteaSimulator;
    use url::Url;

    use crate::config::AuthScheme;

    const CANARY: &str = "gta_CANARY0000000000000000000000000000";
    const START_MS: u64 = 1_700_000_040_000;

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
            if host != "127.0.0.1" {
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
            let mut built = Response::new(body);
            *built.status_mut() = status;
            *built.headers_mut() = headers;
            Ok(built)
        }
    }

    /// A transport whose every request fails.
    #[derive(Debug)]
    struct FailingTransport;

    #[async_trait]
    impl Transport for FailingTransport {
        async fn send(&self, _: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
            Err(TransportError {
                message: "connection refused".to_owned(),
            })
        }
    }

    async fn simulator() -> (GiteaSimulator, ManualClock) {
        let clock = ManualClock::new(START_MS);
        let simulator = GiteaSimulator::builder()
            .clock(Arc::new(clock.clone()))
            .start()
            .await;
        simulator.add_account("bot");
        simulator.add_token(CANARY, "bot");
        (simulator, clock)
    }

    fn gitea_for(simulator: &GiteaSimulator) -> Gitea {
        Gitea::with_base_url(Url::parse(&simulator.uri()).unwrap())
    }

    #[tokio::test]
    async fn probe_learns_login_and_reports_unlimited() {
        let (simulator, _clock) = simulator().await;
        let gitea = gitea_for(&simulator);

        let probe = probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(probe.account.as_deref(), Some("bot"));
        assert!(probe.unlimited);
        assert!(probe.observations.is_empty());
        assert!(!probe.account_deferred);
        assert_eq!(probe.server_date_ms, Some(START_MS));
        assert_eq!(simulator.requests_by_token(CANARY), 1);
    }

    #[tokio::test]
    async fn probe_without_learning_leaves_account() {
        let (simulator, _clock) = simulator().await;
        let gitea = gitea_for(&simulator);

        let probe = probe(
            &gitea,
            &Token::new(CANARY),
            &LoopbackTransport::new(),
            false,
        )
        .await
        .unwrap();

        assert_eq!(probe.account, None);
        assert!(probe.unlimited);
    }

    #[tokio::test]
    async fn probe_sends_configured_auth_form() {
        for (scheme, expected) in [(AuthScheme::Token, "token"), (AuthScheme::Bearer, "bearer")] {
            let (simulator, _clock) = simulator().await;
            let gitea = gitea_for(&simulator).auth(scheme);

            probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
                .await
                .unwrap();

            assert_eq!(simulator.last_credential().as_deref(), Some(CANARY));
            assert_eq!(simulator.last_scheme().as_deref(), Some(expected));
        }
    }

    #[tokio::test]
    async fn probe_rejects_revoked_token() {
        let (simulator, _clock) = simulator().await;
        simulator.revoke_token(CANARY);
        let gitea = gitea_for(&simulator);

        let error = probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap_err();

        let ProbeError::InvalidToken(message) = &error else {
            panic!("expected an invalid token, got {error}");
        };
        assert_eq!(message, "token is required");
        assert!(!error.to_string().contains(CANARY));
    }

    #[tokio::test]
    async fn probe_rejects_token_the_server_treats_as_anonymous() {
        let clock = ManualClock::new(START_MS);
        let simulator = GiteaSimulator::builder()
            .clock(Arc::new(clock.clone()))
            .invalid_tokens_as_anonymous(true)
            .start()
            .await;
        simulator.add_account("bot");
        simulator.add_repositories("bot", 3);
        let gitea = gitea_for(&simulator);
        let stranger = "gta_not_registered_anywhere";

        // The listing serves the unknown token as if it were anonymous ...
        let listing = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/users/bot/repos", simulator.uri()))
            .header("authorization", format!("token {stranger}"))
            .send()
            .await
            .unwrap();
        assert_eq!(listing.status(), 200);

        // ... but the probe still rejects it.
        let error = probe(
            &gitea,
            &Token::new(stranger),
            &LoopbackTransport::new(),
            true,
        )
        .await
        .unwrap_err();
        assert!(matches!(error, ProbeError::InvalidToken(_)), "{error}");
    }

    #[tokio::test]
    async fn probe_defers_throttled_token() {
        let (simulator, _clock) = simulator().await;
        simulator.limit_account("bot", 10, Duration::from_secs(600));
        simulator.drain("bot");
        let gitea = gitea_for(&simulator);

        let probe = probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert!(probe.account_deferred);
        assert_eq!(probe.account, None);
        assert!(!probe.unlimited);
        assert_eq!(
            probe.observations,
            vec![Observation {
                bucket: None,
                limit: 0,
                remaining: 0,
                used: None,
                reset_ms: START_MS + 600_000,
            }]
        );
        assert_eq!(simulator.over_limit_responses(), 1);
    }

    #[tokio::test]
    async fn probe_of_declared_throttled_token_learns_nothing() {
        let (simulator, _clock) = simulator().await;
        simulator.limit_account("bot", 10, Duration::from_secs(600));
        simulator.drain("bot");
        let gitea = gitea_for(&simulator);

        let probe = probe(
            &gitea,
            &Token::new(CANARY),
            &LoopbackTransport::new(),
            false,
        )
        .await
        .unwrap();

        assert!(!probe.account_deferred);
        assert!(!probe.unlimited);
        assert!(probe.observations.is_empty());
    }

    #[tokio::test]
    async fn probe_defers_headerless_throttle_for_a_minute() {
        let (simulator, _clock) = simulator().await;
        simulator.inject_throttle("bot", 1);
        let gitea = gitea_for(&simulator);

        let probe = probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert!(probe.account_deferred);
        assert_eq!(probe.observations[0].reset_ms, START_MS + 60_000);
    }

    #[tokio::test]
    async fn probe_counts_against_proxy_budget() {
        let (simulator, _clock) = simulator().await;
        simulator.limit_account("bot", 10, Duration::from_secs(600));
        let gitea = gitea_for(&simulator);

        probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(simulator.remaining("bot"), Some(9));
    }

    #[tokio::test]
    async fn probe_survives_forbidden_user() {
        let (simulator, _clock) = simulator().await;
        simulator.forbid("/user");
        let gitea = gitea_for(&simulator);

        let probe = probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap();

        assert_eq!(probe.account, None);
        assert!(probe.unlimited);
    }

    #[tokio::test]
    async fn probe_server_error_fails() {
        let (simulator, _clock) = simulator().await;
        simulator.inject_server_errors(1);
        let gitea = gitea_for(&simulator);

        let error = probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap_err();

        let ProbeError::Failed(message) = &error else {
            panic!("expected a failure, got {error}");
        };
        assert!(message.contains("502"), "{message}");
    }

    #[tokio::test]
    async fn probe_wrong_base_path_names_fix() {
        let (simulator, _clock) = simulator().await;
        let root = simulator.uri().trim_end_matches("/api/v1").to_owned();
        let gitea = Gitea::with_base_url(Url::parse(&root).unwrap());

        let error = probe(&gitea, &Token::new(CANARY), &LoopbackTransport::new(), true)
            .await
            .unwrap_err();

        let message = error.to_string();
        assert!(message.contains("404"), "{message}");
        assert!(message.contains("/api/v1"), "{message}");
    }

    #[tokio::test]
    async fn probe_transport_failure() {
        let gitea = Gitea::with_base_url(Url::parse("http://127.0.0.1:9/api/v1").unwrap());

        let error = probe(&gitea, &Token::new(CANARY), &FailingTransport, true)
            .await
            .unwrap_err();

        let message = error.to_string();
        assert!(message.contains("connection refused"), "{message}");
        assert!(!message.contains(CANARY), "{message}");
    }

    #[test]
    fn server_message_hides_echoed_secret() {
        let body = format!(r#"{{"message":"token {CANARY} is required"}}"#);
        let message = server_message(body.as_bytes(), &Token::new(CANARY)).unwrap();
        assert_eq!(message, "token [redacted] is required");
    }

    #[test]
    fn server_message_is_shortened() {
        let body = format!(r#"{{"message":"{}"}}"#, "x".repeat(500));
        let message = server_message(body.as_bytes(), &Token::new(CANARY)).unwrap();
        assert_eq!(
            message.chars().count(),
            tokenfleet_core::provider::MAX_REASON_CHARS + 1
        );
    }
}
