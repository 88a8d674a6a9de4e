//! The GitHub provider's settings, as a config file names them.

use serde::{Deserialize, Serialize};
use url::Url;

/// The API base of github.com.
pub const DEFAULT_BASE_URL: &str = "https://api.github.com";

/// The REST API version sent in `X-GitHub-Api-Version` unless configured otherwise.
pub const DEFAULT_API_VERSION: &str = "2022-11-28";

/// The GitHub provider: github.com, or a GitHub Enterprise Server.
///
/// Every field has a default, so a config table needs only `type = "github"`:
///
/// ```toml
/// type = "github"
/// base_url = "https://ghe.example.com/api/v3"   # optional, for GitHub Enterprise Server
/// ```
///
/// Unknown keys are rejected, so a misspelt key fails loudly instead of
/// falling back to a default.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Github {
    /// The REST API base: `https://api.github.com`, or `https://HOST/api/v3`
    /// for GitHub Enterprise Server. Tokens are sent only to this URL's host.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// The `User-Agent` sent on every request, because GitHub rejects
    /// requests without one.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// The REST API version sent in `X-GitHub-Api-Version`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
}

impl std::fmt::Debug for Github {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A base URL may carry credentials in its user-info part; leave them out.
        let mut base_url = self.base_url.clone();
        let _ = base_url.set_username("");
        let _ = base_url.set_password(None);
        f.debug_struct("Github")
            .field("base_url", &base_url.as_str())
            .field("user_agent", &self.user_agent)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl Github {
    /// Creates the provider for github.com with the default headers.
    pub fn new() -> Self {
        Self {
            base_url: default_base_url(),
            user_agent: default_user_agent(),
            api_version: default_api_version(),
        }
    }

    /// Creates the provider for another API base, such as a GitHub
    /// Enterprise Server at `https://HOST/api/v3` or a local simulator.
    pub fn with_base_url(base_url: Url) -> Self {
        Self {
            base_url,
            ..Self::new()
        }
    }

    /// Sets the `User-Agent` header value.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sets the `X-GitHub-Api-Version` header value.
    pub fn api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = api_version.into();
        self
    }

    /// Returns the URL of `path` under the base URL, keeping the base path
    /// (`/api/v3` on GitHub Enterprise Server). `path` starts with `/`.
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        let joined = format!("{}{path}", self.base_url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url.set_query(None);
        url.set_fragment(None);
        url
    }
}

impl Default for Github {
    fn default() -> Self {
        Self::new()
    }
}

fn default_base_url() -> Url {
    Url::parse(DEFAULT_BASE_URL).expect("the default base URL is valid")
}

fn default_user_agent() -> String {
    format!("tokenfleet/{}", env!("CARGO_PKG_VERSION"))
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_target_github_com() {
        let github = Github::new();
        assert_eq!(github.base_url.as_str(), "https://api.github.com/");
        assert_eq!(
            github.user_agent,
            format!("tokenfleet/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(github.api_version, "2022-11-28");
        assert_eq!(github, Github::default());
    }

    #[test]
    fn endpoint_keeps_base_path() {
        let ghes = Github::with_base_url(Url::parse("https://ghe.example/api/v3").unwrap());
        assert_eq!(
            ghes.endpoint("/rate_limit").as_str(),
            "https://ghe.example/api/v3/rate_limit"
        );

        let slash = Github::with_base_url(Url::parse("https://ghe.example/api/v3/").unwrap());
        assert_eq!(
            slash.endpoint("/user").as_str(),
            "https://ghe.example/api/v3/user"
        );

        let dotcom = Github::new();
        assert_eq!(
            dotcom.endpoint("/rate_limit").as_str(),
            "https://api.github.com/rate_limit"
        );
    }

    #[test]
    fn setters_replace_headers() {
        let github = Github::new()
            .user_agent("ci-bot/2")
            .api_version("2026-03-10");
        assert_eq!(github.user_agent, "ci-bot/2");
        assert_eq!(github.api_version, "2026-03-10");
    }
}
