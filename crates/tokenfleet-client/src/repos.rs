//! Repository listings of any provider that implements the listing hooks.

use http::{HeaderMap, Method, StatusCode};
use tokenfleet_core::{ListingError, PageView, Repository, TokenId};
use url::Url;

use crate::client::Client;
use crate::error::ClientError;
use crate::response::Response;
use crate::scrub_url;

/// How many tokens a page that returned 404 after a token switch is tried on.
const PAGE_TRIES: u32 = 3;

/// The maximum number of pages one listing follows, so that a provider
/// whose `next` link never ends cannot loop forever.
const MAX_PAGES: usize = 100_000;

impl Client {
    /// Lists every repository of an owner (a user, organization, group or
    /// workspace, as the pool's provider names them), page by page. Each
    /// page may use another token.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidRequest`] when the owner is not a valid name or
    /// the provider does not list repositories, [`ClientError::Status`]
    /// with 404 when the owner does not exist, [`ClientError::Decode`] for
    /// a page that is not a repository list, and the errors of
    /// [`Client::send`].
    pub async fn repositories(&self, owner: &str) -> Result<Vec<Repository>, ClientError> {
        let provider = self.pool().provider();
        let first = provider
            .repositories_url(owner.trim())
            .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;

        let mut all = Vec::new();
        let mut next = Some(first);
        let mut previous_token: Option<TokenId> = None;
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ClientError::Decode {
                    url: scrub_url(&url),
                    message: format!("the listing did not end after {MAX_PAGES} pages"),
                });
            }
            let response = match self.listing_page(&url, previous_token.as_ref()).await {
                Err(error) if pages == 1 && error.status() == Some(StatusCode::NOT_FOUND) => {
                    match provider.repositories_fallback_url(owner.trim()) {
                        Some(fallback) => self.listing_page(&fallback, None).await?,
                        None => return Err(error),
                    }
                }
                other => other?,
            };
            previous_token = response.token().cloned();

            let page = provider
                .parse_repositories(&PageView {
                    url: response.url(),
                    headers: response.headers(),
                    body: response.body(),
                })
                .map_err(|e| match e {
                    ListingError::Parse(message) => ClientError::Decode {
                        url: scrub_url(response.url()),
                        message,
                    },
                    other => ClientError::InvalidRequest(other.to_string()),
                })?;
            all.extend(page.repositories);
            next = page.next;
        }
        Ok(all)
    }

    /// Fetches one page of a listing. A 404 on a later page that another
    /// token served may mean the new token cannot see the resource (a
    /// private organization), so the page is tried again on other tokens
    /// before the 404 counts.
    pub(crate) async fn listing_page(
        &self,
        url: &Url,
        previous_token: Option<&TokenId>,
    ) -> Result<Response, ClientError> {
        let mut tries = 0;
        let mut avoid: Vec<TokenId> = Vec::new();
        loop {
            tries += 1;
            let response = self
                .send_avoiding(Method::GET, url.clone(), HeaderMap::new(), None, &avoid)
                .await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let switched = previous_token.is_some() && response.token() != previous_token;
            if response.status() == StatusCode::NOT_FOUND && switched && tries < PAGE_TRIES {
                tracing::debug!(
                    token = ?response.token(),
                    "page returned 404 after a token switch; trying another token"
                );
                if let Some(token) = response.token() {
                    avoid.push(token.clone());
                }
                continue;
            }
            return Err(Client::status_error(&response));
        }
    }
}
