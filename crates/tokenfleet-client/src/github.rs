//! GitHub operations on top of [`Client`]: limits of every token, the
//! repositories of an owner, repository search.

use serde::{Deserialize, Serialize};
use tokenfleet_core::{TokenId, TokenSnapshot};
use url::Url;

use crate::client::Client;
use crate::error::ClientError;
use tokenfleet_core::link::next_link;

/// The owner of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The login (user or organization name).
    pub login: String,
    /// The numeric id.
    #[serde(default)]
    pub id: u64,
}

/// A repository as GitHub lists it (the `minimal-repository` schema, in part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// The numeric id.
    pub id: u64,
    /// The name without the owner.
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    /// The owner.
    pub owner: Owner,
    /// Whether the repository is private.
    #[serde(default)]
    pub private: bool,
    /// The web page.
    pub html_url: String,
    /// The description, when set.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether it is a fork.
    #[serde(default)]
    pub fork: bool,
    /// Whether it is archived.
    #[serde(default)]
    pub archived: bool,
    /// The default branch.
    #[serde(default)]
    pub default_branch: Option<String>,
    /// The main language, when GitHub detected one.
    #[serde(default)]
    pub language: Option<String>,
    /// The star count.
    #[serde(default)]
    pub stargazers_count: Option<u64>,
    /// Creation time (ISO 8601).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time (ISO 8601).
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SearchPage {
    items: Vec<Repository>,
}

/// GitHub's page size maximum.
const PER_PAGE: u32 = 100;
/// GitHub returns at most 1,000 results per search query.
const SEARCH_RESULT_CAP: usize = 1_000;

/// GitHub operations of a [`Client`] whose pool contains GitHub tokens.
#[derive(Debug, Clone, Copy)]
pub struct Github<'a> {
    client: &'a Client,
}

impl Client {
    /// Returns the GitHub operations of this client.
    pub fn github(&self) -> Github<'_> {
        Github { client: self }
    }
}

impl Github<'_> {
    /// Reads the limits of every token from `GET /rate_limit`, which spends
    /// no budget, and returns every token's snapshot.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Pool`] when the pool's store fails.
    pub async fn rate_limits(&self) -> Result<Vec<TokenSnapshot>, ClientError> {
        Ok(self.client.pool().refresh_limits().await?)
    }

    /// Lists every repository of a user or organization, following the
    /// `Link` pagination 100 at a time. Each page may use another token.
    ///
    /// # Errors
    ///
    /// See [`Client::repositories`].
    pub async fn repositories(
        &self,
        owner: &str,
    ) -> Result<Vec<tokenfleet_core::Repository>, ClientError> {
        self.client.repositories(owner).await
    }

    /// Searches repositories (the `search` bucket), up to `max` results.
    ///
    /// # Errors
    ///
    /// The errors of [`Client::send`], and [`ClientError::Status`] for a
    /// rejected query.
    pub async fn search_repositories(
        &self,
        query: &str,
        max: usize,
    ) -> Result<Vec<Repository>, ClientError> {
        let mut url = self.client.url("/search/repositories")?;
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("per_page", &PER_PAGE.to_string());
        self.collect_pages(url, max.min(SEARCH_RESULT_CAP), |page: SearchPage| {
            page.items
        })
        .await
    }

    async fn collect_pages<P, F>(
        &self,
        first: Url,
        max: usize,
        items: F,
    ) -> Result<Vec<Repository>, ClientError>
    where
        P: serde::de::DeserializeOwned,
        F: Fn(P) -> Vec<Repository>,
    {
        let mut all = Vec::new();
        let mut next = Some(first);
        let mut previous_token: Option<TokenId> = None;
        while let Some(url) = next.take() {
            let response = self
                .client
                .listing_page(&url, previous_token.as_ref())
                .await?;
            previous_token = response.token().cloned();
            all.extend(items(response.json::<P>()?));
            if all.len() >= max {
                all.truncate(max);
                break;
            }
            next = next_link(response.headers(), response.url());
        }
        Ok(all)
    }
}
