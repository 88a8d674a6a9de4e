//! The probe: a token's user from `GET /user`, and the budget that
//! response's headers state.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use serde::Deserialize;
use tokenfleet_core::provider::server_reason;
use tokenfleet_core::{Probe, ProbeError, Provider, Token, Transport};

use crate::classify::{parse_date_ms, parse_observation};
use crate::config::Gitlab;
use crate::GITLAB;

const USER_PATH: &str = "/user";

#[derive(Deserialize)]
struct User {
    id: u64,
}

/// The two error shapes GitLab uses: `{"message": ...}` from the API and
/// `{"error": ..., "error_description": ...}` from the OAuth layer.
#[derive(Deserialize)]
struct ErrorBody {
    message: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Learns the token's user from `GET /user` and returns the budget its
/// headers state, because the request spent one unit of it.
///
/// A 401 fails the probe. A 429 whose headers state a reset defers the
/// account until then. Any other failure leaves the account unknown, and
/// the token is then its own account.
pub(crate) async fn learn_user(
    gitlab: &Gitlab,
    token: &Token,
    transport: &dyn Transport,
) -> Result<Probe, ProbeError> {
    let response = get(gitlab, token, transport, USER_PATH)
        .await
        .map_err(ProbeError::Failed)?;
    let status = response.status();
    let headers = response.headers();
    let body = response.body();

    if status == StatusCode::UNAUTHORIZED {
        let reason = server_message(body, token).unwrap_or_else(|| "401 Unauthorized".to_owned());
        return Err(ProbeError::InvalidToken(reason));
    }

    let server_date_ms = parse_date_ms(headers);
    let mut probe = Probe {
        server_date_ms,
        ..Probe::default()
    };
    // Without a `Date`, a `RateLimit-Reset` sent as a wait cannot be
    // placed in time, so it reads as long past and the pool ignores it.
    let observation = parse_observation(headers, server_date_ms.unwrap_or(0));
    let spent = observation
        .as_ref()
        .is_some_and(|observation| observation.remaining == 0);
    probe.observations.extend(observation);

    if status == StatusCode::TOO_MANY_REQUESTS && spent {
        // The budget is spent, so the user stays unknown until the window
        // resets, and until then two tokens of one user look alike.
        probe.account_deferred = true;
        return Ok(probe);
    }
    if status != StatusCode::OK {
        tracing::debug!(
            provider = GITLAB,
            token = %token.id(),
            %status,
            "account not learned; the token is its own account"
        );
        return Ok(probe);
    }

    match serde_json::from_slice::<User>(body) {
        Ok(user) => probe.account = Some(format!("gitlab-user:{}", user.id)),
        Err(error) => tracing::debug!(
            provider = GITLAB,
            token = %token.id(),
            %error,
            "account not learned: GET {USER_PATH} returned an invalid body"
        ),
    }
    Ok(probe)
}

/// Sends an authorized `GET` for `path` under the base URL.
async fn get(
    gitlab: &Gitlab,
    token: &Token,
    transport: &dyn Transport,
    path: &str,
) -> Result<Response<Bytes>, String> {
    let url = gitlab.endpoint(path);
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|error| format!("GET {path} failed: invalid URL: {error}"))?;

    let mut request = Request::new(Bytes::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    gitlab.authorize(request.headers_mut(), token);

    transport
        .send(request)
        .await
        .map_err(|error| format!("GET {path} failed: {error}"))
}

/// Returns the server's reason from an error body (`message`, or
/// `error_description`, or `error`), shortened to [`MAX_REASON_CHARS`](tokenfleet_core::provider::MAX_REASON_CHARS) and
/// with the token's secret removed should the server echo it.
fn server_message(body: &[u8], token: &Token) -> Option<String> {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok()?;
    let message = match parsed.message {
        Some(serde_json::Value::String(text)) => Some(text),
        Some(other) if !other.is_null() => Some(other.to_string()),
        _ => None,
    };
    let message = message.or(parsed.error_description).or(parsed.error)?;
    server_reason(&message, token.secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "glpat-CANARY0000000000000000";

    #[test]
    fn message_shapes_are_read() {
        let token = Token::new(CANARY);
        let cases = [
            (
                r#"{"message":"401 Unauthorized"}"#,
                Some("401 Unauthorized"),
            ),
            (
                r#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#,
                Some("Token is expired. You can either do re-authorization or token refresh."),
            ),
            (r#"{"error":"invalid_token"}"#, Some("invalid_token")),
            (
                r#"{"message":{"error":"limit"}}"#,
                Some(r#"{"error":"limit"}"#),
            ),
            (r#"{"message":"  "}"#, None),
            ("not json", None),
        ];
        for (body, expected) in cases {
            assert_eq!(
                server_message(body.as_bytes(), &token).as_deref(),
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn echoed_secret_is_redacted() {
        let token = Token::new(CANARY);
        let body = format!(r#"{{"message":"token {CANARY} is unknown"}}"#);
        let message = server_message(body.as_bytes(), &token).unwrap();
        assert!(!message.contains("CANARY"), "{message}");
        assert!(message.contains("[redacted]"), "{message}");
    }

    #[test]
    fn long_message_is_shortened() {
        let token = Token::new(CANARY);
        let body = format!(r#"{{"message":"{}"}}"#, "x".repeat(500));
        let message = server_message(body.as_bytes(), &token).unwrap();
        assert_eq!(
            message.chars().count(),
            tokenfleet_core::provider::MAX_REASON_CHARS + 1
        );
    }
}
