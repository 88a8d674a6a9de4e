//! GitHub App installations: `POST /app/installations/{id}/access_tokens`
//! with an RS256 JWT signed by the app's private key, which returns an
//! installation token that expires.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use wiremock::Request;

use super::reply::Reply;
use super::state::{State, TokenEntry};

/// A private key for tests only, with [`TEST_APP_PUBLIC_KEY`] as its pair.
/// It protects nothing: generated for this simulator and published with it.
pub const TEST_APP_PRIVATE_KEY: &str = include_str!("test_app_key.pem");

/// The public half of [`TEST_APP_PRIVATE_KEY`], for [`super::GithubSimulator::add_app`].
pub const TEST_APP_PUBLIC_KEY: &str = include_str!("test_app_key.pub.pem");

/// GitHub rejects app JWTs that live longer than ten minutes.
const MAX_JWT_LIFETIME_S: u64 = 600;

/// How far a JWT's `iat` may lie in the future, for clock drift.
const ALLOWED_DRIFT_S: u64 = 60;

/// A registered app: its public key and installations.
pub(crate) struct App {
    pub(crate) key: DecodingKey,
    /// Account login by installation id.
    pub(crate) installations: HashMap<u64, String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: serde_json::Value,
}

/// Returns the installation id when `request` requests an installation token.
pub(crate) fn installation_request(request: &Request, api_path: &str) -> Option<u64> {
    if request.method != wiremock::http::Method::POST {
        return None;
    }
    let rest = api_path.strip_prefix("/app/installations/")?;
    let id = rest.strip_suffix("/access_tokens")?;
    id.parse().ok()
}

/// Issues an installation token, or responds as GitHub does to a bad JWT
/// or an unknown installation.
pub(crate) fn issue(state: &mut State, request: &Request, installation: u64, now_ms: u64) -> Reply {
    let jwt = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(jwt) = jwt else {
        return Reply::message(
            401,
            "A JSON web token could not be decoded",
            "https://docs.github.com/rest",
        );
    };
    let Some(app_id) = verify(state, jwt, now_ms) else {
        return Reply::message(
            401,
            "'Expiration time' claim ('exp') is too far in the future",
            "https://docs.github.com/rest",
        );
    };
    let Some(login) = state
        .apps
        .get(&app_id)
        .and_then(|app| app.installations.get(&installation))
        .cloned()
    else {
        return Reply::message(404, "Not Found", "https://docs.github.com/rest");
    };

    state.next_installation_token += 1;
    let secret = format!("ghs_installation{:024}", state.next_installation_token);
    let expires_at_ms = now_ms.saturating_add(state.installation_token_ttl_ms);
    state.tokens.insert(
        secret.clone(),
        TokenEntry {
            account: login,
            revoked: false,
            expires_at_ms: Some(expires_at_ms),
        },
    );
    state.counters.installation_tokens += 1;
    let body = json!({
        "token": secret,
        "expires_at": rfc3339(expires_at_ms),
        "permissions": {"metadata": "read", "contents": "read"},
        "repository_selection": "all",
    });
    Reply::json(201, &body)
}

/// Checks the JWT's signature against every app's key and its times
/// against the simulator clock, and returns the app id it names.
fn verify(state: &State, jwt: &str, now_ms: u64) -> Option<String> {
    let now_s = now_ms / 1000;
    let mut validation = Validation::new(Algorithm::RS256);
    // Expiry is checked below against the simulator clock, not the system's.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    for (app_id, app) in &state.apps {
        let Ok(data) = jsonwebtoken::decode::<Claims>(jwt, &app.key, &validation) else {
            continue;
        };
        let claims = data.claims;
        let issuer = match &claims.iss {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let fresh = claims.iat <= now_s + ALLOWED_DRIFT_S
            && claims.exp > now_s
            && claims.exp.saturating_sub(claims.iat) <= MAX_JWT_LIFETIME_S;
        if issuer == *app_id && fresh {
            return Some(app_id.clone());
        }
    }
    None
}

/// Formats epoch milliseconds as GitHub writes times: `2016-07-11T22:14:10Z`.
fn rfc3339(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_matches_github_form() {
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
