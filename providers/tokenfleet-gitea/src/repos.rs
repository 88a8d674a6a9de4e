//! Repository listings: the first page of a user's or organization's
//! repositories, and the mapping of Gitea's repository objects into the
//! shared model.

use http::HeaderMap;
use serde_json::Value;
use tokenfleet_core::link::next_link;
use tokenfleet_core::{ListingError, PageView, Repository, RepositoryPage};
use url::Url;

use crate::GITEA;

/// The page size asked for: Gitea's default `MAX_RESPONSE_ITEMS`. A
/// server configured lower returns fewer items per page, and the `Link`
/// header then still leads to every page.
const PAGE_LIMIT: u32 = 50;

/// The maximum length of an owner name. Gitea limits user and
/// organization names to 40 characters; the margin admits instances that
/// allow longer ones.
const MAX_OWNER_LEN: usize = 255;

/// The header with the total number of items of a listing.
const TOTAL_COUNT: &str = "x-total-count";

/// Returns true for a Gitea user or organization name: letters, digits,
/// `-`, `_` and `.`, not starting with `.`. Anything else could change the
/// request path once the URL parser normalises it (`..`, `%2e`, `\`, `/`).
pub(crate) fn is_owner_name(owner: &str) -> bool {
    (1..=MAX_OWNER_LEN).contains(&owner.len())
        && !owner.starts_with('.')
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Builds `GET /users/{owner}/repos?limit=50&page=1` under `base`.
pub(crate) fn first_page(base: &Url, owner: &str) -> Result<Url, ListingError> {
    owner_page(base, "users", owner)
}

/// Builds `GET /orgs/{owner}/repos?limit=50&page=1` under `base`, for an
/// owner the users path does not know.
pub(crate) fn organization_page(base: &Url, owner: &str) -> Option<Url> {
    owner_page(base, "orgs", owner).ok()
}

fn owner_page(base: &Url, kind: &str, owner: &str) -> Result<Url, ListingError> {
    if !is_owner_name(owner) {
        return Err(ListingError::InvalidOwner {
            owner: owner.to_owned(),
            reason: "expected a user or organization name of letters, digits, `-`, `_` and `.` \
                     that does not start with `.`, such as \"forgejo\""
                .to_owned(),
        });
    }
    let joined = format!(
        "{}/{kind}/{owner}/repos?limit={PAGE_LIMIT}&page=1",
        base.as_str().trim_end_matches('/')
    );
    Url::parse(&joined).map_err(|e| ListingError::InvalidOwner {
        owner: owner.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads a page of repository objects and finds the next page.
///
/// The next page is the `Link` header's `rel="next"`. A response without
/// any `Link` header continues by `page` number while `X-Total-Count`
/// states more items exist than `page` pages of this page's size hold. That
/// count is a lower bound after a short last page, which costs one more
/// request, but an empty page always ends the listing.
pub(crate) fn parse_page(page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
    let items: Vec<Value> = serde_json::from_slice(page.body)
        .map_err(|e| ListingError::Parse(format!("expected a JSON array of repositories: {e}")))?;
    let count = items.len();
    let repositories = items
        .into_iter()
        .map(repository)
        .collect::<Result<Vec<_>, _>>()?;

    let next = if count == 0 {
        None
    } else if page.headers.contains_key(http::header::LINK) {
        next_link(page.headers, page.url)
    } else {
        next_by_total(page.headers, page.url, count)
    };
    Ok(RepositoryPage { repositories, next })
}

/// Returns the next page by number when `X-Total-Count` states that items remain
/// after `page` pages of `count` items each.
fn next_by_total(headers: &HeaderMap, url: &Url, count: usize) -> Option<Url> {
    let total: u64 = headers
        .get(TOTAL_COUNT)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let page: u64 = url
        .query_pairs()
        .find(|(key, _)| key == "page")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(1);
    if page.saturating_mul(count as u64) >= total {
        return None;
    }

    let mut next = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "page")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("page", &(page + 1).to_string());
    Some(next)
}

/// Maps one Gitea repository object.
pub(crate) fn repository(raw: Value) -> Result<Repository, ListingError> {
    let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
    let non_empty = |key: &str| text(key).filter(|value| !value.trim().is_empty());
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
        GITEA,
        owner,
        name,
        full_name,
        text("html_url").unwrap_or_default(),
    );
    repository.description = non_empty("description");
    repository.fork = flag("fork");
    repository.archived = flag("archived");
    repository.default_branch = non_empty("default_branch");
    repository.language = non_empty("language");
    repository.created_at = non_empty("created_at");
    repository.updated_at = non_empty("updated_at");
    repository.raw = raw;
    Ok(repository)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn base() -> Url {
        Url::parse("https://codeberg.org/api/v1").unwrap()
    }

    fn parse(url: &str, headers: &HeaderMap, body: &str) -> Result<RepositoryPage, ListingError> {
        let url = Url::parse(url).unwrap();
        parse_page(&PageView {
            url: &url,
            headers,
            body: body.as_bytes(),
        })
    }

    fn sample(name: &str) -> Value {
        json!({
            "id": 7, "name": name, "full_name": format!("forgejo/{name}"),
            "owner": {"id": 2, "login": "forgejo", "username": "forgejo"},
            "html_url": format!("https://codeberg.org/forgejo/{name}"),
            "description": "", "empty": false, "private": false,
            "fork": false, "archived": true, "mirror": false,
            "default_branch": "forgejo", "language": "",
            "created_at": "2022-10-14T10:00:00Z", "updated_at": "2024-05-01T08:30:00Z",
            "stars_count": 12
        })
    }

    #[test]
    fn owner_name_accepts_gitea_names() {
        for owner in ["forgejo", "Codeberg-e.V.", "a", "user_1", "x.y", "9lives"] {
            assert!(is_owner_name(owner), "{owner}");
        }
    }

    #[test]
    fn owner_name_rejects_path_changes() {
        for owner in [
            "", ".", "..", ".hidden", "%2e%2e", "a/b", "a\\b", "a?b", "a#b", "a b", "é", "a%2fb",
        ] {
            assert!(!is_owner_name(owner), "{owner}");
        }
        assert!(!is_owner_name(&"a".repeat(MAX_OWNER_LEN + 1)));
    }

    #[test]
    fn first_page_names_owner_and_limit() {
        let url = first_page(&base(), "forgejo").unwrap();
        assert_eq!(
            url.as_str(),
            "https://codeberg.org/api/v1/users/forgejo/repos?limit=50&page=1"
        );
        let slash = Url::parse("https://git.example/api/v1/").unwrap();
        assert_eq!(
            first_page(&slash, "bot").unwrap().as_str(),
            "https://git.example/api/v1/users/bot/repos?limit=50&page=1"
        );
    }

    #[test]
    fn organization_page_uses_orgs_path() {
        let url = organization_page(&base(), "forgejo").unwrap();
        assert_eq!(
            url.as_str(),
            "https://codeberg.org/api/v1/orgs/forgejo/repos?limit=50&page=1"
        );
        assert_eq!(organization_page(&base(), "../admin"), None);
    }

    #[test]
    fn invalid_owner_error_names_value_and_fix() {
        let error = first_page(&base(), "../admin").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("\"../admin\""), "{message}");
        assert!(message.contains("letters, digits"), "{message}");
    }

    #[test]
    fn page_maps_fields_and_keeps_raw() {
        let body = json!([sample("forgejo")]).to_string();
        let page = parse(
            "https://codeberg.org/api/v1/orgs/forgejo/repos?limit=50&page=1",
            &HeaderMap::new(),
            &body,
        )
        .unwrap();

        let repository = &page.repositories[0];
        assert_eq!(repository.provider, "gitea");
        assert_eq!(repository.owner, "forgejo");
        assert_eq!(repository.name, "forgejo");
        assert_eq!(repository.full_name, "forgejo/forgejo");
        assert_eq!(repository.url, "https://codeberg.org/forgejo/forgejo");
        assert_eq!(repository.description, None);
        assert!(!repository.fork);
        assert!(repository.archived);
        assert_eq!(repository.default_branch.as_deref(), Some("forgejo"));
        assert_eq!(repository.language, None);
        assert_eq!(
            repository.created_at.as_deref(),
            Some("2022-10-14T10:00:00Z")
        );
        assert_eq!(
            repository.updated_at.as_deref(),
            Some("2024-05-01T08:30:00Z")
        );
        assert_eq!(repository.raw["stars_count"], 12);
    }

    #[test]
    fn set_description_and_language_are_kept() {
        let mut raw = sample("tea");
        raw["description"] = json!("A command line tool");
        raw["language"] = json!("Go");
        raw["fork"] = json!(true);
        let repository = repository(raw).unwrap();

        assert_eq!(
            repository.description.as_deref(),
            Some("A command line tool")
        );
        assert_eq!(repository.language.as_deref(), Some("Go"));
        assert!(repository.fork);
    }

    #[test]
    fn owner_falls_back_to_full_name() {
        let raw = json!({"name": "x", "full_name": "someone/x"});
        let repository = repository(raw).unwrap();
        assert_eq!(repository.owner, "someone");
        assert_eq!(repository.url, "");
        assert_eq!(repository.default_branch, None);
    }

    #[test]
    fn object_without_name_is_a_parse_error() {
        let error = repository(json!({"id": 1})).unwrap_err();
        assert!(matches!(error, ListingError::Parse(_)), "{error}");
    }

    #[test]
    fn link_next_is_followed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::LINK,
            HeaderValue::from_static(
                "<https://codeberg.org/api/v1/users/bot/repos?limit=50&page=2>; rel=\"next\",\
                 <https://codeberg.org/api/v1/users/bot/repos?limit=50&page=3>; rel=\"last\"",
            ),
        );
        headers.insert(TOTAL_COUNT, HeaderValue::from_static("120"));
        let body = json!([sample("a")]).to_string();
        let page = parse(
            "https://codeberg.org/api/v1/users/bot/repos?limit=50&page=1",
            &headers,
            &body,
        )
        .unwrap();
        assert_eq!(
            page.next.unwrap().as_str(),
            "https://codeberg.org/api/v1/users/bot/repos?limit=50&page=2"
        );
    }

    #[test]
    fn link_without_next_ends_listing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::LINK,
            HeaderValue::from_static(
                "<https://codeberg.org/api/v1/users/bot/repos?limit=50&page=1>; rel=\"first\",\
                 <https://codeberg.org/api/v1/users/bot/repos?limit=50&page=2>; rel=\"prev\"",
            ),
        );
        headers.insert(TOTAL_COUNT, HeaderValue::from_static("500"));
        let body = json!([sample("a")]).to_string();
        let page = parse(
            "https://codeberg.org/api/v1/users/bot/repos?limit=50&page=3",
            &headers,
            &body,
        )
        .unwrap();
        assert_eq!(page.next, None);
    }

    #[test]
    fn empty_page_ends_listing_despite_next() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::LINK,
            HeaderValue::from_static(
                "<https://codeberg.org/api/v1/users/bot/repos?limit=50&page=9>; rel=\"next\"",
            ),
        );
        let page = parse(
            "https://codeberg.org/api/v1/users/bot/repos?limit=50&page=8",
            &headers,
            "[]",
        )
        .unwrap();
        assert!(page.repositories.is_empty());
        assert_eq!(page.next, None);
    }

    #[test]
    fn total_count_continues_without_link() {
        let mut headers = HeaderMap::new();
        headers.insert(TOTAL_COUNT, HeaderValue::from_static("3"));
        let body = json!([sample("a"), sample("b")]).to_string();
        let page = parse(
            "https://codeberg.org/api/v1/users/bot/repos?limit=2&page=1",
            &headers,
            &body,
        )
        .unwrap();
        assert_eq!(
            page.next.unwrap().as_str(),
            "https://codeberg.org/api/v1/users/bot/repos?limit=2&page=2"
        );

        // A short last page cannot tell how long the earlier pages were, so
        // the count it implies is a lower bound and one more page is asked for.
        let short = parse(
            "https://codeberg.org/api/v1/users/bot/repos?limit=2&page=2",
            &headers,
            &json!([sample("c")]).to_string(),
        )
        .unwrap();
        assert_eq!(
            short.next.unwrap().as_str(),
            "https://codeberg.org/api/v1/users/bot/repos?limit=2&page=3"
        );

        let mut full = HeaderMap::new();
        full.insert(TOTAL_COUNT, HeaderValue::from_static("4"));
        let last = parse(
            "https://codeberg.org/api/v1/users/bot/repos?limit=2&page=2",
            &full,
            &body,
        )
        .unwrap();
        assert_eq!(last.next, None);
    }

    #[test]
    fn no_link_and_no_total_ends_listing() {
        let body = json!([sample("a")]).to_string();
        let page = parse(
            "https://codeberg.org/api/v1/users/bot/repos?limit=50&page=1",
            &HeaderMap::new(),
            &body,
        )
        .unwrap();
        assert_eq!(page.next, None);
    }

    #[test]
    fn page_that_is_not_a_list_is_a_parse_error() {
        let error = parse(
            "https://codeberg.org/api/v1/users/bot/repos",
            &HeaderMap::new(),
            r#"{"message":"token is required"}"#,
        )
        .unwrap_err();
        assert!(matches!(error, ListingError::Parse(_)), "{error}");
    }
}
