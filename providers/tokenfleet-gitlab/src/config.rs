//! The GitLab provider's settings, as a config file names them.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// The API base of gitlab.com.
pub const DEFAULT_BASE_URL: &str = "https://gitlab.com/api/v4";

/// The header a token travels in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthScheme {
    /// `PRIVATE-TOKEN: <token>`, for personal, project and group access tokens.
    #[default]
    PrivateToken,
    /// `Authorization: Bearer <token>`, which OAuth access tokens need and
    /// access tokens also accept.
    Bearer,
}

/// The GitLab provider: gitlab.com, or a self-managed instance.
///
/// Every field has a default, so a config table needs only `type = "gitlab"`:
///
/// ```toml
/// type = "gitlab"
/// base_url = "https://gitlab.example.com/api/v4"   # optional, for self-managed GitLab
/// auth = "bearer"                                  # optional: "private_token" (default) or "bearer"
/// learn_account = true                             # optional: spend one request per token on GET /user
/// ```
///
/// Unknown keys are rejected, so a misspelt key fails loudly instead of
/// falling back to a default.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Gitlab {
    /// The REST API base, `https://HOST/api/v4`. Tokens are sent only to
    /// this URL's host.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// The header a token travels in.
    #[serde(default)]
    pub auth: AuthScheme,
    /// Whether the probe learns the user behind a token that declares no
    /// `account`, with one `GET /user` per token. That request counts
    /// against the user's budget. Without it, each such token is its own
    /// account, so two tokens of one user are not known to share a budget.
    #[serde(default)]
    pub learn_account: bool,
}

impl fmt::Debug for Gitlab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A base URL may carry credentials in its user-info part; leave them out.
        let mut base_url = self.base_url.clone();
        let _ = base_url.set_username("");
        let _ = base_url.set_password(None);
        f.debug_struct("Gitlab")
            .field("base_url", &base_url.as_str())
            .field("auth", &self.auth)
            .field("learn_account", &self.learn_account)
            .finish()
    }
}

impl Gitlab {
    /// Creates the provider for gitlab.com with `PRIVATE-TOKEN` auth.
    pub fn new() -> Self {
        Self {
            base_url: default_base_url(),
            auth: AuthScheme::default(),
            learn_account: false,
        }
    }

    /// Creates the provider for another API base, such as a self-managed
    /// instance at `https://HOST/api/v4` or a local simulator.
    pub fn with_base_url(base_url: Url) -> Self {
        Self {
            base_url,
            ..Self::new()
        }
    }

    /// Sets the header a token travels in.
    pub fn auth(mut self, auth: AuthScheme) -> Self {
        self.auth = auth;
        self
    }

    /// Sets whether the probe learns each token's user with `GET /user`.
    pub fn learn_account(mut self, learn: bool) -> Self {
        self.learn_account = learn;
        self
    }

    /// Returns the URL of `path` under the base URL, keeping the base path
    /// (`/api/v4`). `path` starts with `/` and may contain percent-escapes,
    /// which are kept as written.
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        let joined = format!("{}{path}", self.base_url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url.set_query(None);
        url.set_fragment(None);
        url
    }
}

impl Default for Gitlab {
    fn default() -> Self {
        Self::new()
    }
}

fn default_base_url() -> Url {
    Url::parse(DEFAULT_BASE_URL).expect("the default base URL is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_target_gitlab_com() {
        let gitlab = Gitlab::new();
        assert_eq!(gitlab.base_url.as_str(), "https://gitlab.com/api/v4");
        assert_eq!(gitlab.auth, AuthScheme::PrivateToken);
        assert!(!gitlab.learn_account);
        assert_eq!(gitlab, Gitlab::default());
    }

    #[test]
    fn endpoint_keeps_base_path() {
        let managed = Gitlab::with_base_url(Url::parse("https://git.example/api/v4").unwrap());
        assert_eq!(
            managed.endpoint("/user").as_str(),
            "https://git.example/api/v4/user"
        );

        let slash = Gitlab::with_base_url(Url::parse("https://git.example/api/v4/").unwrap());
        assert_eq!(
            slash.endpoint("/groups/a%2Fb/projects").as_str(),
            "https://git.example/api/v4/groups/a%2Fb/projects"
        );
    }

    #[test]
    fn setters_replace_fields() {
        let gitlab = Gitlab::new().auth(AuthScheme::Bearer).learn_account(true);
        assert_eq!(gitlab.auth, AuthScheme::Bearer);
        assert!(gitlab.learn_account);
    }

    #[test]
    fn debug_hides_url_credentials() {
        let url =
            Url::parse("https://bot:glpat-CANARY0000000000000000@git.example/api/v4").unwrap();
        let gitlab = Gitlab::with_base_url(url);
        let debug = format!("{gitlab:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(!debug.contains("bot"), "{debug}");
        assert!(debug.contains("git.example/api/v4"), "{debug}");
    }

    #[test]
    fn auth_schemes_parse_from_snake_case() {
        let bearer: AuthScheme = serde_json::from_str(r#""bearer""#).unwrap();
        let private: AuthScheme = serde_json::from_str(r#""private_token""#).unwrap();
        assert_eq!(bearer, AuthScheme::Bearer);
        assert_eq!(private, AuthScheme::PrivateToken);
    }
}
