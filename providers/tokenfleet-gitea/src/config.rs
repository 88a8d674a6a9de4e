//! The Gitea provider's settings, as a config file names them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

/// The default API base: Gitea's own hosted instance.
///
/// Gitea and Forgejo are mostly self-hosted, so no single host fits
/// everyone; set `base_url` to `https://HOST/api/v1` for any other
/// instance, such as `https://codeberg.org/api/v1`.
pub const DEFAULT_BASE_URL: &str = "https://gitea.com/api/v1";

/// The scheme word of the `Authorization` header that carries the token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuthScheme {
    /// `Authorization: token <secret>`, the form every Gitea and Forgejo
    /// version accepts.
    #[default]
    Token,
    /// `Authorization: Bearer <secret>`, accepted by current Gitea and
    /// Forgejo and needed for OAuth2 access tokens.
    Bearer,
}

impl AuthScheme {
    /// Returns the scheme word that precedes the secret in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Bearer => "Bearer",
        }
    }
}

/// The Gitea provider: a Gitea or Forgejo instance.
///
/// Every field has a default, so a config table needs only `type = "gitea"`:
///
/// ```toml
/// type = "gitea"
/// base_url = "https://git.example.com/api/v1"   # optional
/// auth = "bearer"                               # optional: "token" (default) or "bearer"
/// ```
///
/// Unknown keys are rejected, so a misspelt key fails loudly instead of
/// falling back to a default.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Gitea {
    /// The API base, `https://HOST/api/v1`. Tokens are sent only to this
    /// URL's host.
    #[serde(
        default = "default_base_url",
        deserialize_with = "deserialize_base_url"
    )]
    pub base_url: Url,
    /// The `Authorization` scheme.
    #[serde(default)]
    pub auth: AuthScheme,
    /// The `User-Agent` sent on every request that does not set its own.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
}

impl fmt::Debug for Gitea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gitea")
            .field("base_url", &redacted(&self.base_url).as_str())
            .field("auth", &self.auth)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl Gitea {
    /// Creates the provider for gitea.com with `token` authorization.
    pub fn new() -> Self {
        Self {
            base_url: default_base_url(),
            auth: AuthScheme::default(),
            user_agent: default_user_agent(),
        }
    }

    /// Creates the provider for another instance, such as
    /// `https://codeberg.org/api/v1` or a local simulator.
    pub fn with_base_url(base_url: Url) -> Self {
        Self {
            base_url,
            ..Self::new()
        }
    }

    /// Sets the `Authorization` scheme.
    pub fn auth(mut self, auth: AuthScheme) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the `User-Agent` header value.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Returns the URL of `path` under the base URL, keeping the base path
    /// (`/api/v1`). `path` starts with `/`.
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        let joined = format!("{}{path}", self.base_url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url.set_query(None);
        url.set_fragment(None);
        url
    }
}

impl Default for Gitea {
    fn default() -> Self {
        Self::new()
    }
}

/// Returns `url` without the user name and password of its user-info part.
pub(crate) fn redacted(url: &Url) -> Url {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean
}

fn default_base_url() -> Url {
    Url::parse(DEFAULT_BASE_URL).expect("the default base URL is valid")
}

fn default_user_agent() -> String {
    format!("tokenfleet/{}", env!("CARGO_PKG_VERSION"))
}

/// Reads `base_url`, which must be an absolute `http` or `https` URL.
fn deserialize_base_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_base_url(&text).map_err(serde::de::Error::custom)
}

fn parse_base_url(text: &str) -> Result<Url, String> {
    const EXAMPLE: &str = "such as https://codeberg.org/api/v1";
    // Text with `@` may carry a user name and password that a URL parser
    // cannot separate, so it is not repeated in the error.
    let quoted = if text.contains('@') {
        "(hidden because it contains `@`)".to_owned()
    } else {
        format!("{text:?}")
    };
    let url = Url::parse(text.trim()).map_err(|error| {
        format!("invalid base_url {quoted}: {error}; expected an absolute URL {EXAMPLE}")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "invalid base_url {quoted}: expected an http or https URL with a host, {EXAMPLE}"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "gta_CANARY0000000000000000000000000000";

    #[test]
    fn defaults_target_gitea_com() {
        let gitea = Gitea::new();
        assert_eq!(gitea.base_url.as_str(), "https://gitea.com/api/v1");
        assert_eq!(gitea.auth, AuthScheme::Token);
        assert_eq!(
            gitea.user_agent,
            format!("tokenfleet/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(gitea, Gitea::default());
    }

    #[test]
    fn endpoint_keeps_base_path() {
        let codeberg = Gitea::with_base_url(Url::parse("https://codeberg.org/api/v1").unwrap());
        assert_eq!(
            codeberg.endpoint("/user").as_str(),
            "https://codeberg.org/api/v1/user"
        );

        let slash = Gitea::with_base_url(Url::parse("https://git.example/gitea/api/v1/").unwrap());
        assert_eq!(
            slash.endpoint("/user").as_str(),
            "https://git.example/gitea/api/v1/user"
        );
    }

    #[test]
    fn setters_replace_fields() {
        let gitea = Gitea::new().auth(AuthScheme::Bearer).user_agent("ci-bot/2");
        assert_eq!(gitea.auth, AuthScheme::Bearer);
        assert_eq!(gitea.user_agent, "ci-bot/2");
    }

    #[test]
    fn auth_scheme_words() {
        assert_eq!(AuthScheme::Token.as_str(), "token");
        assert_eq!(AuthScheme::Bearer.as_str(), "Bearer");
    }

    #[test]
    fn debug_hides_userinfo() {
        let url = format!("https://bot:{CANARY}@git.example/api/v1");
        let gitea = Gitea::with_base_url(Url::parse(&url).unwrap());
        let debug = format!("{gitea:?}");

        assert!(!debug.contains(CANARY), "{debug}");
        assert!(!debug.contains("bot"), "{debug}");
        assert!(debug.contains("https://git.example/api/v1"), "{debug}");
    }

    #[test]
    fn base_url_error_hides_userinfo() {
        for url in [
            format!("ftp://bot:{CANARY}@git.example/api/v1"),
            format!("bot:{CANARY}@git.example/api/v1"),
            format!("//bot:{CANARY}@git.example/api/v1"),
        ] {
            let error = parse_base_url(&url).unwrap_err();
            assert!(!error.contains(CANARY), "{error}");
            assert!(error.contains("invalid base_url"), "{error}");
        }
    }

    #[test]
    fn base_url_accepts_http_and_https() {
        for text in [
            "http://127.0.0.1:3000/api/v1",
            "https://codeberg.org/api/v1",
            " https://git.example/api/v1 ",
        ] {
            assert!(parse_base_url(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn base_url_rejects_other_forms() {
        for text in [
            "",
            "codeberg.org/api/v1",
            "file:///tmp/x",
            "unix:/run/gitea.sock",
        ] {
            let error = parse_base_url(text).unwrap_err();
            assert!(error.contains("invalid base_url"), "{text}: {error}");
        }
    }
}
