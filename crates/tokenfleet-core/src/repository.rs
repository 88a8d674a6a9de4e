//! One repository model for every provider, and the page a provider parses it from.

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use url::Url;

/// A repository as any provider lists it.
///
/// Fields a provider does not report are `None` (or `false`). The
/// provider's own JSON object stays reachable in [`raw`](Self::raw).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Repository {
    /// The `type` name of the provider that listed it, such as `gitlab`.
    pub provider: String,
    /// The owner: a user, organization, group path or workspace.
    pub owner: String,
    /// The name without the owner.
    pub name: String,
    /// The owner and name as the provider writes them (`owner/name`,
    /// or a GitLab group path such as `group/subgroup/name`).
    pub full_name: String,
    /// The web page of the repository.
    pub url: String,
    /// The description, when set.
    pub description: Option<String>,
    /// Whether the repository is a fork.
    pub fork: bool,
    /// Whether the repository is archived.
    pub archived: bool,
    /// The default branch, when the repository has one.
    pub default_branch: Option<String>,
    /// The main language, when the provider reports one.
    pub language: Option<String>,
    /// Creation time as the provider wrote it (ISO 8601).
    pub created_at: Option<String>,
    /// Last update time as the provider wrote it (ISO 8601).
    pub updated_at: Option<String>,
    /// The provider's JSON object for the repository.
    pub raw: serde_json::Value,
}

impl Repository {
    /// Creates a repository with the required fields; the rest start empty.
    pub fn new(
        provider: impl Into<String>,
        owner: impl Into<String>,
        name: impl Into<String>,
        full_name: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.into(),
            owner: owner.into(),
            name: name.into(),
            full_name: full_name.into(),
            url: url.into(),
            description: None,
            fork: false,
            archived: false,
            default_branch: None,
            language: None,
            created_at: None,
            updated_at: None,
            raw: serde_json::Value::Null,
        }
    }
}

/// One page of a repository listing.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryPage {
    /// The repositories on this page.
    pub repositories: Vec<Repository>,
    /// The next page, or `None` on the last one.
    pub next: Option<Url>,
}

/// A successful listing response, as a provider parses it.
#[derive(Debug, Clone, Copy)]
pub struct PageView<'a> {
    /// The URL the page was fetched from, for resolving relative links.
    pub url: &'a Url,
    /// The response headers.
    pub headers: &'a HeaderMap,
    /// The response body.
    pub body: &'a [u8],
}

/// The reason a repository listing could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListingError {
    /// The provider does not list repositories.
    #[error("the {provider} provider does not list repositories")]
    Unsupported {
        /// The provider's `type` name.
        provider: &'static str,
    },
    /// The owner name cannot be a user, group or workspace of the provider.
    #[error("invalid owner {owner:?}: {reason}")]
    InvalidOwner {
        /// The owner as given.
        owner: String,
        /// What a valid owner looks like.
        reason: String,
    },
    /// The response body is not a page of repositories.
    #[error("unreadable repository page: {0}")]
    Parse(String),
}
