//! GitHub App installations as a token source: an RS256 JWT signed with the
//! app's private key is exchanged for an installation token that expires
//! after an hour.

use std::fmt;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokenfleet_core::{Provider, SourceError, SourcedSecret, Token, TokenSource, Transport};

use crate::config::Github;

/// GitHub accepts app JWTs that live at most ten minutes; nine leaves room
/// for clock drift.
const JWT_LIFETIME_S: u64 = 9 * 60;

/// The JWT's issue time is set this far back, as GitHub recommends against
/// clock drift.
const JWT_BACKDATE_S: u64 = 60;

/// A GitHub App installation whose tokens a pool fetches and refreshes.
///
/// Each installation token is charged to the installation, which has a
/// budget of its own, so the token's account is `installation:{id}`.
pub struct GithubApp {
    github: Github,
    app_id: String,
    installation_id: u64,
    key: EncodingKey,
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

#[derive(Deserialize)]
struct InstallationToken {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

impl GithubApp {
    /// Creates the source for one installation. `app_id` is the app's id or
    /// client id, `private_key_pem` its private key as GitHub issues it (an
    /// RSA key in PEM form), and `github` the API the installation lives on.
    ///
    /// # Errors
    ///
    /// Returns a [`SourceError`] when the key is not an RSA private key in
    /// PEM form. The message never contains the key.
    pub fn new(
        github: Github,
        app_id: impl Into<String>,
        installation_id: u64,
        private_key_pem: &[u8],
    ) -> Result<Self, SourceError> {
        let app_id = app_id.into();
        let key = EncodingKey::from_rsa_pem(private_key_pem).map_err(|_| SourceError {
            source_name: describe(&app_id, installation_id),
            message: "the private key is not an RSA private key in PEM form; use the \
                      `.pem` file GitHub generated for the app"
                .to_owned(),
        })?;
        Ok(Self {
            github,
            app_id,
            installation_id,
            key,
        })
    }

    /// Returns the account the installation's tokens are charged to.
    pub fn account(&self) -> String {
        format!("installation:{}", self.installation_id)
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError {
            source_name: self.describe(),
            message: message.into(),
        }
    }

    fn jwt(&self, now_ms: u64) -> Result<String, SourceError> {
        let now_s = now_ms / 1000;
        let claims = Claims {
            iat: now_s.saturating_sub(JWT_BACKDATE_S),
            exp: now_s.saturating_add(JWT_LIFETIME_S),
            iss: &self.app_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| self.error(format!("signing the app JWT failed: {e}")))
    }
}

impl fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubApp")
            .field("base_url", &self.github.base_url().as_str())
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

fn describe(app_id: &str, installation_id: u64) -> String {
    format!("GitHub App {app_id}, installation {installation_id}")
}

#[tokenfleet_core::async_trait]
impl TokenSource for GithubApp {
    fn describe(&self) -> String {
        describe(&self.app_id, self.installation_id)
    }

    async fn fetch(
        &self,
        transport: &dyn Transport,
        now_ms: u64,
    ) -> Result<SourcedSecret, SourceError> {
        match self.exchange(transport, now_ms, now_ms).await {
            // GitHub checks the JWT's times against its own clock. When the
            // local clock is off by more than the JWT's slack, sign again
            // with the server's time from the rejection's `Date` header.
            Err(Rejected::Jwt { server_now_ms, .. })
                if server_now_ms.abs_diff(now_ms) > JWT_BACKDATE_S * 1000 / 2 =>
            {
                tracing::debug!(
                    source = %self.describe(),
                    skew_ms = server_now_ms as i64 - now_ms as i64,
                    "app JWT rejected; signing again with the server's time"
                );
                self.exchange(transport, server_now_ms, now_ms)
                    .await
                    .map_err(|rejected| rejected.into_error(self))
            }
            result => result.map_err(|rejected| rejected.into_error(self)),
        }
    }
}

/// The reason an exchange of a JWT for a token failed.
enum Rejected {
    /// GitHub returned 401 for the JWT, at its time `server_now_ms`.
    Jwt {
        server_now_ms: u64,
        error: SourceError,
    },
    Other(SourceError),
}

impl Rejected {
    fn into_error(self, _app: &GithubApp) -> SourceError {
        match self {
            Self::Jwt { error, .. } | Self::Other(error) => error,
        }
    }
}

impl GithubApp {
    /// Signs a JWT at `sign_ms` (server time when known) and exchanges it
    /// for an installation token; `now_ms` is the pool clock's time.
    async fn exchange(
        &self,
        transport: &dyn Transport,
        sign_ms: u64,
        now_ms: u64,
    ) -> Result<SourcedSecret, Rejected> {
        let jwt = self.jwt(sign_ms).map_err(Rejected::Other)?;
        let path = format!("/app/installations/{}/access_tokens", self.installation_id);
        let uri: Uri = self
            .github
            .endpoint(&path)
            .as_str()
            .parse()
            .map_err(|e| Rejected::Other(self.error(format!("invalid URL for {path}: {e}"))))?;
        let mut request = Request::new(Bytes::new());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        self.github
            .authorize(request.headers_mut(), &Token::new(jwt));

        let response = transport
            .send(request)
            .await
            .map_err(|e| Rejected::Other(self.error(format!("POST {path} failed: {e}"))))?;
        let status = response.status();
        let body = response.body();
        if status != StatusCode::CREATED && status != StatusCode::OK {
            let message = server_message(body).unwrap_or_default();
            let hint = match status {
                StatusCode::UNAUTHORIZED => {
                    "GitHub rejected the app's JWT; check `app_id` and that the private key \
                     belongs to this app"
                }
                StatusCode::NOT_FOUND => {
                    "no such installation of this app; check `installation_id` in the \
                     app's settings"
                }
                StatusCode::FORBIDDEN => "the app may not create tokens for this installation",
                _ => "GitHub did not issue a token",
            };
            let error = self.error(format!("POST {path} returned {status} {message:?}: {hint}"));
            let server_now = crate::classify::parse_date_ms(response.headers());
            return Err(match (status, server_now) {
                (StatusCode::UNAUTHORIZED, Some(server_now_ms)) => Rejected::Jwt {
                    server_now_ms,
                    error,
                },
                _ => Rejected::Other(error),
            });
        }

        let issued: InstallationToken = serde_json::from_slice(body)
            .map_err(|e| Rejected::Other(self.error(format!("unreadable token response: {e}"))))?;
        let expires_at_ms = parse_time_ms(&issued.expires_at).ok_or_else(|| {
            Rejected::Other(self.error(format!(
                "unreadable `expires_at` {:?}: expected a time such as 2016-07-11T22:14:10Z",
                issued.expires_at
            )))
        })?;
        // The expiry is in server time; it is moved onto the local clock
        // by the difference between the two at the moment of the request.
        let local_expiry = match crate::classify::parse_date_ms(response.headers()) {
            Some(server_now) => expires_at_ms
                .saturating_sub(server_now)
                .saturating_add(now_ms),
            None => expires_at_ms,
        };
        Ok(SourcedSecret {
            secret: SecretString::from(issued.token),
            expires_at_ms: Some(local_expiry),
            account: Some(self.account()),
        })
    }
}

/// Parses a time such as `2016-07-11T22:14:10Z` into epoch milliseconds.
fn parse_time_ms(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Returns the JSON `message` of an error body, shortened.
fn server_message(body: &[u8]) -> Option<String> {
    let message = serde_json::from_slice::<ErrorBody>(body).ok()?.message?;
    tokenfleet_core::provider::server_reason(&message, "")
}

/// Reads the private key file of an app, refusing one that others can read.
///
/// # Errors
///
/// Returns a [`SourceError`] naming the file when it is missing, unreadable
/// or readable by group or others.
pub fn read_private_key(
    path: &std::path::Path,
    app_id: &str,
    installation_id: u64,
) -> Result<Vec<u8>, SourceError> {
    let error = |message: String| SourceError {
        source_name: describe(app_id, installation_id),
        message,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path).map_err(|e| {
            error(format!(
                "cannot read the private key file {}: {e}",
                path.display()
            ))
        })?;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(error(format!(
                "the private key file {} is readable by other users (mode {:o}); \
                 run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    std::fs::read(path).map_err(|e| {
        error(format!(
            "cannot read the private key file {}: {e}",
            path.display()
        ))
    })
}
