//! The status probe: a token's limits from the headers of the configured
//! status endpoint, and its account from the configured account endpoint.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use serde_json::Value;
use tokenfleet_core::{
    Bucket, Observation, Outcome, Probe, ProbeError, Provider, ResponseView, Token, Transport,
};

use crate::config::Http;
use crate::HTTP;

/// Probes one token. See [`Provider::probe`].
///
/// Without a status endpoint, and without an account endpoint or the need
/// to learn the account, there is nothing to request and the probe is
/// [`ProbeError::Unsupported`], so the pool learns budgets from responses.
pub(crate) async fn probe(
    http: &Http,
    token: &Token,
    transport: &dyn Transport,
    learn_account: bool,
) -> Result<Probe, ProbeError> {
    let settings = http.settings();
    let account_path = settings
        .account_endpoint
        .as_deref()
        .filter(|_| learn_account);
    if settings.status_endpoint.is_none() && account_path.is_none() {
        return Err(ProbeError::Unsupported);
    }

    let mut probe = Probe::default();
    if let Some(path) = settings.status_endpoint.as_deref() {
        read_status(http, token, transport, path, &mut probe).await?;
    }

    if let Some(path) = account_path {
        if default_budget_spent(http, &probe) {
            // The account request would be throttled. Until it succeeds, the pool
            // cannot group tokens of one account.
            probe.account_deferred = true;
        } else {
            learn(http, token, transport, path, &mut probe).await?;
        }
    }
    Ok(probe)
}

/// Requests the status endpoint and records the limits its headers state.
async fn read_status(
    http: &Http,
    token: &Token,
    transport: &dyn Transport,
    path: &str,
    probe: &mut Probe,
) -> Result<(), ProbeError> {
    let checked = send(http, token, transport, path).await?;
    probe.server_date_ms = probe.server_date_ms.or(checked.verdict.server_date_ms);
    let status = checked.response.status();

    match &checked.verdict.outcome {
        Outcome::InvalidToken => Err(ProbeError::InvalidToken(format!(
            "GET {path} returned {status}"
        ))),
        Outcome::Answered if status.is_success() => {
            match checked.observation() {
                Some(observation) => probe.observations.push(observation),
                None => tracing::debug!(
                    provider = HTTP,
                    token = %token.id(),
                    path,
                    "status response stated no limits; they come from later responses"
                ),
            }
            Ok(())
        }
        Outcome::PrimaryLimit { .. } => match checked.observation() {
            Some(observation) => {
                probe.observations.push(observation);
                Ok(())
            }
            None => Err(ProbeError::Failed(format!(
                "GET {path} returned {status}, a rate limit, without readable limit headers"
            ))),
        },
        outcome => Err(ProbeError::Failed(format!(
            "GET {path} returned {status} ({outcome})"
        ))),
    }
}

/// Learns the token's account from the JSON body of the account endpoint,
/// and records the limits its headers state, because it spent a request.
///
/// Only a rejected token fails the probe. Any other failure leaves the
/// account unknown.
async fn learn(
    http: &Http,
    token: &Token,
    transport: &dyn Transport,
    path: &str,
    probe: &mut Probe,
) -> Result<(), ProbeError> {
    let checked = match send(http, token, transport, path).await {
        Ok(checked) => checked,
        Err(error) => {
            tracing::debug!(provider = HTTP, token = %token.id(), %error, "account not learned");
            return Ok(());
        }
    };
    let status = checked.response.status();
    if checked.verdict.outcome == Outcome::InvalidToken {
        return Err(ProbeError::InvalidToken(format!(
            "GET {path} returned {status}"
        )));
    }
    if let Some(observation) = checked.observation() {
        probe.observations.push(observation);
    }
    probe.server_date_ms = probe.server_date_ms.or(checked.verdict.server_date_ms);

    if !status.is_success() {
        tracing::debug!(provider = HTTP, token = %token.id(), %status, path, "account not learned");
        return Ok(());
    }

    let pointer = http
        .settings()
        .account_pointer
        .as_deref()
        .unwrap_or_default();
    match account_at(checked.response.body(), pointer) {
        Some(account) => probe.account = Some(account),
        None => tracing::debug!(
            provider = HTTP,
            token = %token.id(),
            path,
            pointer,
            "account not learned: the body has no string or number at the pointer"
        ),
    }
    Ok(())
}

/// Returns the string or number at `pointer` in a JSON body.
fn account_at(body: &[u8], pointer: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match value.pointer(pointer)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Returns true when the probe found no budget left in the default bucket.
fn default_budget_spent(http: &Http, probe: &Probe) -> bool {
    probe.observations.iter().any(|observation| {
        observation.bucket.as_ref() == Some(&http.default_bucket) && observation.remaining == 0
    })
}

/// A status or account response with the provider's verdict on it.
struct Checked {
    response: Response<Bytes>,
    verdict: tokenfleet_core::Verdict,
    /// The bucket the request was charged to.
    bucket: Bucket,
}

impl Checked {
    /// Returns the observation, charged to the request's bucket when the
    /// response does not name one.
    fn observation(&self) -> Option<Observation> {
        let mut observation = self.verdict.observation.clone()?;
        if observation.bucket.is_none() {
            observation.bucket = Some(self.bucket.clone());
        }
        Some(observation)
    }
}

/// Sends an authorized `GET` for `path` below the base URL and classifies
/// the response.
async fn send(
    http: &Http,
    token: &Token,
    transport: &dyn Transport,
    path: &str,
) -> Result<Checked, ProbeError> {
    let failed = |message: String| ProbeError::Failed(redact(&message, token));

    let mut url = http
        .endpoint(path)
        .map_err(|error| failed(format!("GET {path} failed: invalid URL: {error}")))?;
    let bucket = http.bucket_for(&Method::GET, &url);
    http.authorize_url(&mut url, token);
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|error| failed(format!("GET {path} failed: invalid URL: {error}")))?;

    let mut request = Request::new(Bytes::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    http.authorize(request.headers_mut(), token);

    let response = transport
        .send(request)
        .await
        .map_err(|error| failed(format!("GET {path} failed: {error}")))?;

    // NOTE: the probe has no clock of the pool's, so a relative reset in a
    // response without `Date` counts from the system time.
    let verdict = http.classify(&ResponseView {
        status: response.status(),
        headers: response.headers(),
        body: response.body(),
        bucket: &bucket,
        account: "",
        now_ms: system_now_ms(),
    });
    Ok(Checked {
        response,
        verdict,
        bucket,
    })
}

/// Removes the token's secret from a message, because a transport error
/// may quote the request URL, which carries it in query mode.
fn redact(message: &str, token: &Token) -> String {
    if token.secret().is_empty() {
        return message.to_owned();
    }
    message.replace(token.secret(), "[redacted]")
}

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_at_reads_strings_and_numbers() {
        let body = br#"{"login": "octo", "user": {"id": 42}, "empty": " ", "flag": true}"#;
        assert_eq!(account_at(body, "/login").as_deref(), Some("octo"));
        assert_eq!(account_at(body, "/user/id").as_deref(), Some("42"));
        assert_eq!(account_at(body, "/empty"), None);
        assert_eq!(account_at(body, "/flag"), None);
        assert_eq!(account_at(body, "/missing"), None);
        assert_eq!(account_at(b"not json", "/login"), None);
    }

    #[test]
    fn redact_removes_secret() {
        let token = Token::new("tok_CANARY");
        let message = redact("http://127.0.0.1/s?key=tok_CANARY: refused", &token);
        assert_eq!(message, "http://127.0.0.1/s?key=[redacted]: refused");
    }
}
