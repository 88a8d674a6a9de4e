//! Project listings: the first page of a user's or group's projects, the
//! next page, and the mapping of GitLab's project objects into the shared
//! model.

use http::HeaderMap;
use serde_json::Value;
use tokenfleet_core::link::next_link;
use tokenfleet_core::{ListingError, PageView, Repository, RepositoryPage};
use url::Url;

use crate::config::Gitlab;
use crate::GITLAB;

/// GitLab's maximum page size.
const PER_PAGE: u32 = 100;

/// The maximum length of one path segment of a user or group.
const MAX_SEGMENT_CHARS: usize = 255;

/// The maximum number of nested groups in an owner path.
const MAX_DEPTH: usize = 20;

/// The page number GitLab sends on every page but the last.
const NEXT_PAGE: &str = "x-next-page";

/// The format of a valid owner, for error messages.
const OWNER_FORMAT: &str = "expected a GitLab username, numeric id or group path of letters, \
    digits, `_`, `-` and `.`, with `/` between nested groups, such as \"gitlab-org/gitlab-runner\"";

/// Returns true for one segment of a GitLab namespace path: letters,
/// digits, `_`, `-` and `.`, but not `.` or `..`, which would change the
/// request path once the URL parser normalises it.
fn is_path_segment(segment: &str) -> bool {
    (1..=MAX_SEGMENT_CHARS).contains(&segment.len())
        && segment != "."
        && segment != ".."
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks an owner: a username or numeric id, or a group path whose
/// segments are separated by `/`.
fn check_owner(owner: &str) -> Result<(), ListingError> {
    let segments: Vec<&str> = owner.split('/').collect();
    if segments.len() <= MAX_DEPTH && segments.iter().all(|segment| is_path_segment(segment)) {
        return Ok(());
    }
    Err(ListingError::InvalidOwner {
        owner: owner.to_owned(),
        reason: OWNER_FORMAT.to_owned(),
    })
}

/// Builds the first page of an owner's projects: `GET /users/:id/projects`
/// for a name without `/`, and `GET /groups/:id/projects` with subgroups
/// for a nested group path, which no user can have.
pub(crate) fn first_page(gitlab: &Gitlab, owner: &str) -> Result<Url, ListingError> {
    check_owner(owner)?;
    if owner.contains('/') {
        return Ok(group_page(gitlab, owner));
    }
    let mut url = gitlab.endpoint(&format!("/users/{owner}/projects"));
    url.set_query(Some(&format!("per_page={PER_PAGE}")));
    Ok(url)
}

/// Builds the group listing to try when the user listing returns 404,
/// or `None` when the first page was already a group listing or the owner
/// is invalid.
pub(crate) fn group_fallback(gitlab: &Gitlab, owner: &str) -> Option<Url> {
    if owner.contains('/') || check_owner(owner).is_err() {
        return None;
    }
    Some(group_page(gitlab, owner))
}

/// Builds `GET /groups/:id/projects?per_page=100&include_subgroups=true`,
/// with the `/` of a nested group path sent as `%2F`, as GitLab requires.
fn group_page(gitlab: &Gitlab, group: &str) -> Url {
    let encoded = group.replace('/', "%2F");
    let mut url = gitlab.endpoint(&format!("/groups/{encoded}/projects"));
    url.set_query(Some(&format!("per_page={PER_PAGE}&include_subgroups=true")));
    url
}

/// Reads a page of project objects and the next page: the `Link`
/// header's `rel="next"`, or else the page `x-next-page` names.
///
/// NOTE: GitLab's offset pagination reaches only the first 50,000
/// projects of a listing. The page past them returns 400, so a longer
/// listing fails with that status, because keyset pagination is not used.
pub(crate) fn parse_page(page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
    let items: Vec<Value> = serde_json::from_slice(page.body)
        .map_err(|e| ListingError::Parse(format!("expected a JSON array of projects: {e}")))?;
    let repositories = items
        .into_iter()
        .map(repository)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_link(page.headers, page.url).or_else(|| next_page(page.headers, page.url));
    Ok(RepositoryPage { repositories, next })
}

/// Builds the next page's URL from `x-next-page`, which is empty on the
/// last page, by replacing the `page` parameter of `url`.
fn next_page(headers: &HeaderMap, url: &Url) -> Option<Url> {
    let text = headers.get(NEXT_PAGE)?.to_str().ok()?.trim();
    let number: u64 = text.parse().ok().filter(|number| *number > 0)?;

    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "page")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let mut next = url.clone();
    {
        let mut query = next.query_pairs_mut();
        query.clear();
        for (name, value) in &pairs {
            query.append_pair(name, value);
        }
        query.append_pair("page", &number.to_string());
    }
    Some(next)
}

/// Maps one GitLab project object.
pub(crate) fn repository(raw: Value) -> Result<Repository, ListingError> {
    let text = |pointer: &str| {
        raw.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };

    let Some(full_name) = text("/path_with_namespace") else {
        return Err(ListingError::Parse(
            "a project object lacks `path_with_namespace`".to_owned(),
        ));
    };
    let Some(name) = text("/path").or_else(|| text("/name")) else {
        return Err(ListingError::Parse(
            "a project object lacks `path` and `name`".to_owned(),
        ));
    };
    let owner = text("/namespace/full_path")
        .or_else(|| {
            full_name
                .rsplit_once('/')
                .map(|(owner, _)| owner.to_owned())
        })
        .unwrap_or_default();

    let mut repository = Repository::new(
        GITLAB,
        owner,
        name,
        full_name,
        text("/web_url").unwrap_or_default(),
    );
    repository.description = text("/description");
    repository.fork = raw
        .get("forked_from_project")
        .is_some_and(|parent| !parent.is_null());
    repository.archived = raw
        .get("archived")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    repository.default_branch = text("/default_branch");
    repository.language = None;
    repository.created_at = text("/created_at");
    repository.updated_at = text("/updated_at").or_else(|| text("/last_activity_at"));
    repository.raw = raw;
    Ok(repository)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn gitlab() -> Gitlab {
        Gitlab::with_base_url(Url::parse("https://git.example/api/v4").unwrap())
    }

    #[test]
    fn owner_accepts_gitlab_names() {
        for owner in [
            "alice",
            "john.doe",
            "user_1",
            "a-b",
            "42",
            "gitlab-org/gitlab-runner",
            "a/b.c/d_e",
        ] {
            assert!(check_owner(owner).is_ok(), "{owner}");
        }
    }

    #[test]
    fn owner_rejects_path_changes() {
        for owner in [
            "", ".", "..", "a/..", "../admin", "a//b", "/a", "a/", "%2e%2e", "a%2Fb", "a\\b",
            "a?b", "a#b", "a b", "é", "a\nb",
        ] {
            let error = check_owner(owner).unwrap_err();
            assert!(error.to_string().contains(&format!("{owner:?}")), "{error}");
        }
        assert!(check_owner(&"a".repeat(256)).is_err());
        assert!(check_owner(&vec!["g"; 21].join("/")).is_err());
    }

    #[test]
    fn user_page_then_group_fallback() {
        let gitlab = gitlab();
        assert_eq!(
            first_page(&gitlab, "alice").unwrap().as_str(),
            "https://git.example/api/v4/users/alice/projects?per_page=100"
        );
        assert_eq!(
            group_fallback(&gitlab, "alice").unwrap().as_str(),
            "https://git.example/api/v4/groups/alice/projects?per_page=100&include_subgroups=true"
        );
        assert_eq!(group_fallback(&gitlab, "../x"), None);
    }

    #[test]
    fn nested_group_is_encoded() {
        let gitlab = gitlab();
        let url = first_page(&gitlab, "gitlab-org/ci/runner").unwrap();
        assert_eq!(
            url.as_str(),
            "https://git.example/api/v4/groups/gitlab-org%2Fci%2Frunner/projects?per_page=100&include_subgroups=true"
        );
        assert_eq!(group_fallback(&gitlab, "gitlab-org/ci"), None);
    }

    fn page(url: &Url, headers: &HeaderMap, body: &str) -> RepositoryPage {
        parse_page(&PageView {
            url,
            headers,
            body: body.as_bytes(),
        })
        .unwrap()
    }

    #[test]
    fn link_header_wins() {
        let url =
            Url::parse("https://git.example/api/v4/users/alice/projects?per_page=100").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "link",
            HeaderValue::from_static(
                r#"<https://git.example/api/v4/users/alice/projects?page=2&per_page=100>; rel="next""#,
            ),
        );
        headers.insert(NEXT_PAGE, HeaderValue::from_static("9"));
        let next = page(&url, &headers, "[]").next.unwrap();
        assert_eq!(next.query(), Some("page=2&per_page=100"));
    }

    #[test]
    fn next_page_header_without_link() {
        let url = Url::parse(
            "https://git.example/api/v4/groups/a%2Fb/projects?per_page=100&include_subgroups=true&page=3",
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(NEXT_PAGE, HeaderValue::from_static("4"));
        let next = page(&url, &headers, "[]").next.unwrap();
        assert_eq!(
            next.as_str(),
            "https://git.example/api/v4/groups/a%2Fb/projects?per_page=100&include_subgroups=true&page=4"
        );
    }

    #[test]
    fn last_page_has_no_next() {
        let url = Url::parse("https://git.example/api/v4/users/alice/projects").unwrap();
        for value in ["", " ", "0", "x"] {
            let mut headers = HeaderMap::new();
            headers.insert(NEXT_PAGE, HeaderValue::from_str(value).unwrap());
            assert_eq!(page(&url, &headers, "[]").next, None, "{value:?}");
        }
        assert_eq!(page(&url, &HeaderMap::new(), "[]").next, None);
    }

    #[test]
    fn project_maps_fields_and_keeps_raw() {
        let body = json!([{
            "id": 7, "name": "Runner", "path": "runner",
            "path_with_namespace": "gitlab-org/ci/runner",
            "namespace": {"id": 3, "kind": "group", "full_path": "gitlab-org/ci"},
            "web_url": "https://git.example/gitlab-org/ci/runner",
            "description": "Runs jobs", "archived": true, "default_branch": "main",
            "forked_from_project": {"id": 1},
            "created_at": "2020-01-01T00:00:00.000Z",
            "updated_at": "2021-01-01T00:00:00.000Z",
            "last_activity_at": "2022-01-01T00:00:00.000Z",
            "star_count": 5
        }])
        .to_string();
        let url = Url::parse("https://git.example/api/v4/groups/gitlab-org/projects").unwrap();
        let listed = page(&url, &HeaderMap::new(), &body);
        let repository = &listed.repositories[0];

        assert_eq!(repository.provider, "gitlab");
        assert_eq!(repository.owner, "gitlab-org/ci");
        assert_eq!(repository.name, "runner");
        assert_eq!(repository.full_name, "gitlab-org/ci/runner");
        assert_eq!(repository.url, "https://git.example/gitlab-org/ci/runner");
        assert_eq!(repository.description.as_deref(), Some("Runs jobs"));
        assert!(repository.fork);
        assert!(repository.archived);
        assert_eq!(repository.default_branch.as_deref(), Some("main"));
        assert_eq!(repository.language, None);
        assert_eq!(
            repository.created_at.as_deref(),
            Some("2020-01-01T00:00:00.000Z")
        );
        assert_eq!(
            repository.updated_at.as_deref(),
            Some("2021-01-01T00:00:00.000Z")
        );
        assert_eq!(repository.raw["star_count"], 5);
    }

    #[test]
    fn simple_project_falls_back() {
        let body = json!([{
            "id": 8, "name": "Notes",
            "path_with_namespace": "alice/notes",
            "web_url": "https://git.example/alice/notes",
            "description": null, "forked_from_project": null,
            "last_activity_at": "2022-01-01T00:00:00.000Z"
        }])
        .to_string();
        let url = Url::parse("https://git.example/api/v4/users/alice/projects").unwrap();
        let listed = page(&url, &HeaderMap::new(), &body);
        let repository = &listed.repositories[0];

        assert_eq!(repository.owner, "alice");
        assert_eq!(repository.name, "Notes");
        assert_eq!(repository.description, None);
        assert!(!repository.fork);
        assert!(!repository.archived);
        assert_eq!(
            repository.updated_at.as_deref(),
            Some("2022-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn non_list_body_is_parse_error() {
        let url = Url::parse("https://git.example/api/v4/users/alice/projects").unwrap();
        let error = parse_page(&PageView {
            url: &url,
            headers: &HeaderMap::new(),
            body: br#"{"message":"404 User Not Found"}"#,
        })
        .unwrap_err();
        assert!(matches!(error, ListingError::Parse(_)), "{error}");

        let missing = parse_page(&PageView {
            url: &url,
            headers: &HeaderMap::new(),
            body: br#"[{"id": 1}]"#,
        })
        .unwrap_err();
        assert!(
            missing.to_string().contains("path_with_namespace"),
            "{missing}"
        );
    }
}
