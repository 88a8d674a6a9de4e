//! Repository listings: the first page of a workspace's repositories, the
//! body's `next` link, and the mapping of Bitbucket's repository objects
//! into the shared model.

use serde_json::Value;
use tokenfleet_core::provider::same_origin;
use tokenfleet_core::{ListingError, PageView, Repository, RepositoryPage};
use url::Url;

use crate::BITBUCKET;

/// Bitbucket's maximum page size.
const PAGE_LENGTH: u32 = 100;

/// The maximum length of a workspace slug.
const MAX_SLUG_LENGTH: usize = 100;

/// Returns true for a workspace slug: letters, digits, `-`, `_` and `.`,
/// and not made of dots alone, because `.` and `..` would change the
/// request path once the URL parser normalises it.
pub(crate) fn is_workspace_slug(slug: &str) -> bool {
    (1..=MAX_SLUG_LENGTH).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !slug.chars().all(|c| c == '.')
}

/// Builds `GET /repositories/{workspace}?pagelen=100` under `base`.
pub(crate) fn first_page(base: &Url, workspace: &str) -> Result<Url, ListingError> {
    if !is_workspace_slug(workspace) {
        return Err(ListingError::InvalidOwner {
            owner: workspace.to_owned(),
            reason: format!(
                "expected a workspace slug of 1 to {MAX_SLUG_LENGTH} letters, digits, `-`, `_` \
                 and `.`, such as \"atlassian\""
            ),
        });
    }
    let joined = format!(
        "{}/repositories/{workspace}?pagelen={PAGE_LENGTH}",
        base.as_str().trim_end_matches('/')
    );
    Url::parse(&joined).map_err(|e| ListingError::InvalidOwner {
        owner: workspace.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads one page: its `values` and its `next` link, which is followed as
/// the server wrote it, and only when it stays on `base`'s origin.
pub(crate) fn parse_page(base: &Url, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
    let body: Value = serde_json::from_slice(page.body)
        .map_err(|e| ListingError::Parse(format!("expected a JSON page of repositories: {e}")))?;
    let Some(values) = body.get("values").and_then(Value::as_array) else {
        return Err(ListingError::Parse(
            "expected a JSON page with a `values` array of repositories".to_owned(),
        ));
    };
    let repositories = values
        .iter()
        .cloned()
        .map(repository)
        .collect::<Result<Vec<_>, _>>()?;

    let next = match body.get("next").and_then(Value::as_str) {
        None => None,
        Some(text) => Some(next_page(base, page.url, text)?),
    };
    Ok(RepositoryPage { repositories, next })
}

/// Resolves a `next` link and checks that it stays on the API's origin, so
/// that a token is never sent to a host a page named.
fn next_page(base: &Url, current: &Url, text: &str) -> Result<Url, ListingError> {
    let next = current
        .join(text)
        .map_err(|e| ListingError::Parse(format!("the page's `next` link is not a URL: {e}")))?;
    if !same_origin(base, &next) {
        return Err(ListingError::Parse(format!(
            "the page's `next` link points at {}://{}, not at the API host {}; \
             the listing stops there",
            next.scheme(),
            next.host_str().unwrap_or("(no host)"),
            base.host_str().unwrap_or("(no host)"),
        )));
    }
    Ok(next)
}

/// Maps one Bitbucket repository object.
pub(crate) fn repository(raw: Value) -> Result<Repository, ListingError> {
    let text = |pointer: &str| {
        raw.pointer(pointer)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };

    let full_name = text("/full_name");
    let name = text("/slug").or_else(|| text("/name"));
    let (Some(full_name), Some(name)) = (full_name, name) else {
        return Err(ListingError::Parse(
            "a repository object lacks `full_name`, or both `slug` and `name`".to_owned(),
        ));
    };
    let owner = full_name
        .split_once('/')
        .map(|(workspace, _)| workspace.to_owned())
        .or_else(|| text("/workspace/slug"))
        .unwrap_or_default();

    let mut repository = Repository::new(
        BITBUCKET,
        owner,
        name,
        full_name,
        text("/links/html/href").unwrap_or_default(),
    );
    repository.description = text("/description");
    repository.fork = raw.get("parent").is_some_and(|parent| !parent.is_null());
    repository.archived = raw
        .get("is_archived")
        .or_else(|| raw.get("archived"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    repository.default_branch = text("/mainbranch/name");
    repository.language = text("/language");
    repository.created_at = text("/created_on");
    repository.updated_at = text("/updated_on");
    repository.raw = raw;
    Ok(repository)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use serde_json::json;

    use super::*;

    fn base() -> Url {
        Url::parse("https://api.bitbucket.org/2.0").unwrap()
    }

    fn parse(body: &Value) -> Result<RepositoryPage, ListingError> {
        let url =
            Url::parse("https://api.bitbucket.org/2.0/repositories/atlassian?pagelen=100").unwrap();
        let headers = HeaderMap::new();
        let text = body.to_string();
        parse_page(
            &base(),
            &PageView {
                url: &url,
                headers: &headers,
                body: text.as_bytes(),
            },
        )
    }

    #[test]
    fn slug_accepts_workspace_names() {
        for slug in ["atlassian", "my-team", "team_2", "a.b", "A1", "x"] {
            assert!(is_workspace_slug(slug), "{slug}");
        }
    }

    #[test]
    fn slug_rejects_path_changes() {
        for slug in [
            "", ".", "..", "...", "%2e%2e", "a/b", "a\\b", "a?b", "a#b", "a b", "é", "{uuid}",
        ] {
            assert!(!is_workspace_slug(slug), "{slug}");
        }
        assert!(!is_workspace_slug(&"a".repeat(101)));
    }

    #[test]
    fn first_page_names_workspace_and_page_length() {
        let url = first_page(&base(), "atlassian").unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.bitbucket.org/2.0/repositories/atlassian?pagelen=100"
        );
        let local = Url::parse("http://127.0.0.1:9/2.0/").unwrap();
        assert_eq!(
            first_page(&local, "ws").unwrap().as_str(),
            "http://127.0.0.1:9/2.0/repositories/ws?pagelen=100"
        );
        let error = first_page(&base(), "../admin").unwrap_err();
        assert!(error.to_string().contains("\"../admin\""), "{error}");
    }

    #[test]
    fn page_maps_fields_and_keeps_raw() {
        let body = json!({
            "pagelen": 100, "page": 1, "size": 2,
            "next": "https://api.bitbucket.org/2.0/repositories/atlassian?pagelen=100&page=2",
            "values": [
                {
                    "type": "repository", "uuid": "{1}",
                    "full_name": "atlassian/python-bitbucket", "name": "Python Bitbucket",
                    "slug": "python-bitbucket", "description": "",
                    "language": "python", "is_private": false,
                    "mainbranch": {"name": "master", "type": "branch"},
                    "links": {"html": {"href": "https://bitbucket.org/atlassian/python-bitbucket"}},
                    "workspace": {"slug": "atlassian", "type": "workspace"},
                    "created_on": "2019-01-01T10:00:00.000000+00:00",
                    "updated_on": "2024-02-03T04:05:06.123456+00:00",
                    "parent": {"type": "repository", "full_name": "other/original"}
                },
                {
                    "type": "repository", "full_name": "atlassian/empty", "name": "empty",
                    "description": "Nothing yet", "language": "", "mainbranch": null,
                    "links": {"html": {"href": "https://bitbucket.org/atlassian/empty"}}
                }
            ]
        });
        let page = parse(&body).unwrap();
        assert_eq!(
            page.next.unwrap().as_str(),
            "https://api.bitbucket.org/2.0/repositories/atlassian?pagelen=100&page=2"
        );

        let first = &page.repositories[0];
        assert_eq!(first.provider, "bitbucket");
        assert_eq!(first.owner, "atlassian");
        assert_eq!(first.name, "python-bitbucket");
        assert_eq!(first.full_name, "atlassian/python-bitbucket");
        assert_eq!(
            first.url,
            "https://bitbucket.org/atlassian/python-bitbucket"
        );
        assert_eq!(first.description, None, "an empty description is none");
        assert!(first.fork);
        assert!(!first.archived);
        assert_eq!(first.default_branch.as_deref(), Some("master"));
        assert_eq!(first.language.as_deref(), Some("python"));
        assert_eq!(
            first.created_at.as_deref(),
            Some("2019-01-01T10:00:00.000000+00:00")
        );
        assert_eq!(
            first.updated_at.as_deref(),
            Some("2024-02-03T04:05:06.123456+00:00")
        );
        assert_eq!(first.raw["uuid"], "{1}");

        let second = &page.repositories[1];
        assert_eq!(
            second.name, "empty",
            "the name stands in for a missing slug"
        );
        assert_eq!(second.description.as_deref(), Some("Nothing yet"));
        assert!(!second.fork);
        assert_eq!(second.default_branch, None);
        assert_eq!(second.language, None, "an empty language is none");
    }

    #[test]
    fn owner_falls_back_to_workspace_slug() {
        let raw = json!({
            "full_name": "lonely", "slug": "lonely",
            "workspace": {"slug": "team"}
        });
        assert_eq!(repository(raw).unwrap().owner, "team");
    }

    #[test]
    fn archived_flag_is_read_when_present() {
        let raw = json!({"full_name": "t/r", "slug": "r", "is_archived": true});
        assert!(repository(raw).unwrap().archived);
    }

    #[test]
    fn last_page_has_no_next() {
        let page = parse(&json!({"pagelen": 10, "values": []})).unwrap();
        assert_eq!(page.next, None);
        assert!(page.repositories.is_empty());
    }

    #[test]
    fn relative_next_resolves_against_page() {
        let page =
            parse(&json!({"values": [], "next": "/2.0/repositories/atlassian?page=3"})).unwrap();
        assert_eq!(
            page.next.unwrap().as_str(),
            "https://api.bitbucket.org/2.0/repositories/atlassian?page=3"
        );
    }

    #[test]
    fn foreign_next_is_rejected() {
        for next in [
            "https://evil.example/2.0/repositories/atlassian?page=2",
            "http://api.bitbucket.org/2.0/repositories/atlassian?page=2",
            "https://api.bitbucket.org:8443/2.0/repositories/atlassian?page=2",
        ] {
            let error = parse(&json!({"values": [], "next": next})).unwrap_err();
            assert!(matches!(error, ListingError::Parse(_)), "{next}");
            assert!(!error.to_string().contains("page=2"), "{error}");
        }
    }

    #[test]
    fn bodies_that_are_not_pages_are_parse_errors() {
        for body in [
            json!([{"full_name": "a/b"}]),
            json!({"type": "error", "error": {"message": "Not found"}}),
            json!({"values": [{"description": "no names"}]}),
        ] {
            let error = parse(&body).unwrap_err();
            assert!(matches!(error, ListingError::Parse(_)), "{body}");
        }
    }
}
