//! Repository listings: the first page of an owner's repositories and the
//! mapping of GitHub's repository objects into the shared model.

use serde_json::Value;
use tokenfleet_core::link::next_link;
use tokenfleet_core::{ListingError, PageView, Repository, RepositoryPage};
use url::Url;

use crate::GITHUB;

/// GitHub's maximum page size.
const PER_PAGE: u32 = 100;

/// Returns true for a GitHub login: 1 to 100 letters, digits, `-` (and
/// `_`, which managed-user logins contain). Anything else could change the
/// request path once the URL parser normalises it (`..`, `%2e`, `\`).
pub(crate) fn is_login(owner: &str) -> bool {
    (1..=100).contains(&owner.len())
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Builds `GET /users/{owner}/repos?per_page=100&type=owner` under `base`.
/// The users endpoint also lists an organization's repositories.
pub(crate) fn first_page(base: &Url, owner: &str) -> Result<Url, ListingError> {
    if !is_login(owner) {
        return Err(ListingError::InvalidOwner {
            owner: owner.to_owned(),
            reason: "expected a user or organization login of letters, digits, `-` and `_`, \
                     such as \"octocat\""
                .to_owned(),
        });
    }
    let joined = format!(
        "{}/users/{owner}/repos?per_page={PER_PAGE}&type=owner",
        base.as_str().trim_end_matches('/')
    );
    Url::parse(&joined).map_err(|e| ListingError::InvalidOwner {
        owner: owner.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads a page of repository objects and its `Link` next page.
pub(crate) fn parse_page(page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
    let items: Vec<Value> = serde_json::from_slice(page.body)
        .map_err(|e| ListingError::Parse(format!("expected a JSON array of repositories: {e}")))?;
    let repositories = items
        .into_iter()
        .map(repository)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RepositoryPage {
        repositories,
        next: next_link(page.headers, page.url),
    })
}

/// Maps one GitHub repository object.
pub(crate) fn repository(raw: Value) -> Result<Repository, ListingError> {
    let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
    let flag = |key: &str| raw.get(key).and_then(Value::as_bool).unwrap_or(false);

    let (Some(name), Some(full_name)) = (text("name"), text("full_name")) else {
        return Err(ListingError::Parse(
            "a repository object lacks `name` or `full_name`".to_owned(),
        ));
    };
    let owner = raw
        .pointer("/owner/login")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| full_name.split_once('/').map(|(owner, _)| owner.to_owned()))
        .unwrap_or_default();

    let mut repository = Repository::new(
        GITHUB,
        owner,
        name,
        full_name,
        text("html_url").unwrap_or_default(),
    );
    repository.description = text("description");
    repository.fork = flag("fork");
    repository.archived = flag("archived");
    repository.default_branch = text("default_branch");
    repository.language = text("language");
    repository.created_at = text("created_at");
    repository.updated_at = text("updated_at");
    repository.raw = raw;
    Ok(repository)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use serde_json::json;

    use super::*;

    #[test]
    fn login_accepts_github_names() {
        for login in ["octocat", "rust-lang", "a", "user_emu", "yyx990803"] {
            assert!(is_login(login), "{login}");
        }
    }

    #[test]
    fn login_rejects_path_changes() {
        for owner in [
            "", "..", "%2e%2e", "a\\b", "..\\..", "a/b", "a?b", "a#b", "a b", "é",
        ] {
            assert!(!is_login(owner), "{owner}");
        }
        assert!(!is_login(&"a".repeat(101)));
    }

    #[test]
    fn first_page_names_owner_and_page_size() {
        let base = Url::parse("https://ghe.example/api/v3/").unwrap();
        let url = first_page(&base, "octocat").unwrap();
        assert_eq!(
            url.as_str(),
            "https://ghe.example/api/v3/users/octocat/repos?per_page=100&type=owner"
        );
        let error = first_page(&base, "../admin").unwrap_err();
        assert!(error.to_string().contains("\"../admin\""), "{error}");
    }

    #[test]
    fn page_maps_fields_and_keeps_raw() {
        let body = json!([{
            "id": 1, "name": "hello", "full_name": "octocat/hello",
            "owner": {"login": "octocat", "id": 7},
            "html_url": "https://github.com/octocat/hello",
            "description": null, "fork": true, "archived": false,
            "default_branch": "main", "language": "Rust",
            "created_at": "2020-01-01T00:00:00Z", "updated_at": "2021-01-01T00:00:00Z",
            "stargazers_count": 3
        }])
        .to_string();
        let url = Url::parse("https://api.github.com/users/octocat/repos").unwrap();
        let headers = HeaderMap::new();
        let page = parse_page(&PageView {
            url: &url,
            headers: &headers,
            body: body.as_bytes(),
        })
        .unwrap();
        assert_eq!(page.next, None);
        let repository = &page.repositories[0];
        assert_eq!(repository.provider, "github");
        assert_eq!(repository.owner, "octocat");
        assert_eq!(repository.full_name, "octocat/hello");
        assert_eq!(repository.url, "https://github.com/octocat/hello");
        assert!(repository.fork);
        assert!(!repository.archived);
        assert_eq!(repository.default_branch.as_deref(), Some("main"));
        assert_eq!(repository.language.as_deref(), Some("Rust"));
        assert_eq!(repository.raw["stargazers_count"], 3);
    }

    #[test]
    fn page_that_is_not_a_list_is_a_parse_error() {
        let url = Url::parse("https://api.github.com/users/octocat/repos").unwrap();
        let headers = HeaderMap::new();
        let error = parse_page(&PageView {
            url: &url,
            headers: &headers,
            body: br#"{"message":"Not Found"}"#,
        })
        .unwrap_err();
        assert!(matches!(error, ListingError::Parse(_)), "{error}");
    }
}
