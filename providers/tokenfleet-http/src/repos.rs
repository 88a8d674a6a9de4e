//! Repository listings: the first page from the `repositories_path`
//! template, later pages from `Link` headers, and the mapping of the
//! configured fields into the shared model.

use serde_json::Value;
use tokenfleet_core::link::next_link;
use tokenfleet_core::{ListingError, PageView, Repository, RepositoryPage};
use url::Url;

use crate::config::{Auth, Http};
use crate::provider::set_query_param;
use crate::HTTP;

/// The maximum length of an owner name, in bytes.
const MAX_OWNER_LEN: usize = 200;

/// Returns true for an owner name that stays one path segment: letters,
/// digits, `-`, `_` and `.`, and not `.` or `..`.
fn is_owner(owner: &str) -> bool {
    (1..=MAX_OWNER_LEN).contains(&owner.len())
        && owner != "."
        && owner != ".."
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Builds the first page's URL from the `repositories_path` template.
pub(crate) fn first_page(http: &Http, owner: &str) -> Result<Url, ListingError> {
    let Some(template) = http.settings().repositories_path.as_deref() else {
        return Err(ListingError::Unsupported { provider: HTTP });
    };
    if !is_owner(owner) {
        return Err(ListingError::InvalidOwner {
            owner: owner.to_owned(),
            reason: format!(
                "expected 1 to {MAX_OWNER_LEN} letters, digits, `-`, `_` or `.`, such as \"octocat\""
            ),
        });
    }

    let path = template.replace("{owner}", owner);
    http.endpoint(&path)
        .map_err(|error| ListingError::InvalidOwner {
            owner: owner.to_owned(),
            reason: error.to_string(),
        })
}

/// Reads a page of repository objects and its `Link` next page.
///
/// In query mode the token parameter is removed from the next page's URL
/// if the server copied it there, so that the URL can be logged. The
/// client adds the token again when it sends the request.
pub(crate) fn parse_page(http: &Http, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
    let settings = http.settings();
    let body: Value = serde_json::from_slice(page.body)
        .map_err(|error| ListingError::Parse(format!("expected a JSON body: {error}")))?;

    let items = match settings.items_pointer.as_deref() {
        Some(pointer) => body.pointer(pointer).ok_or_else(|| {
            ListingError::Parse(format!(
                "the body has nothing at `items_pointer` {pointer:?}"
            ))
        })?,
        None => &body,
    };
    let Some(items) = items.as_array() else {
        return Err(ListingError::Parse(
            "expected a JSON array of repositories; set `items_pointer` when the array is \
             inside an object"
                .to_owned(),
        ));
    };

    let repositories = items
        .iter()
        .map(|item| repository(http, item))
        .collect::<Result<Vec<_>, _>>()?;

    let mut next = next_link(page.headers, page.url);
    if let (Some(url), Auth::Query { name }) = (next.as_mut(), &http.auth) {
        set_query_param(url, name, None);
    }
    Ok(RepositoryPage { repositories, next })
}

/// Maps one repository object by the configured field names.
///
/// The name field is required. A missing full name is the name alone, and
/// the owner is the part of the full name before its last `/`.
fn repository(http: &Http, raw: &Value) -> Result<Repository, ListingError> {
    let settings = http.settings();
    let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);

    let Some(name) = text(&settings.name_field) else {
        return Err(ListingError::Parse(format!(
            "a repository object has no string field `{}` (set by `name_field`)",
            settings.name_field
        )));
    };
    let full_name = text(&settings.full_name_field).unwrap_or_else(|| name.clone());
    let owner = full_name
        .rsplit_once('/')
        .map(|(owner, _)| owner.to_owned())
        .unwrap_or_default();
    let url = text(&settings.url_field).unwrap_or_default();

    let mut repository = Repository::new(HTTP, owner, name, full_name, url);
    repository.description = text("description");
    repository.fork = raw.get("fork").and_then(Value::as_bool).unwrap_or(false);
    repository.archived = raw
        .get("archived")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    repository.default_branch = text("default_branch");
    repository.language = text("language");
    repository.created_at = text("created_at");
    repository.updated_at = text("updated_at");
    repository.raw = raw.clone();
    Ok(repository)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use serde_json::json;

    use super::*;
    use crate::settings::HttpSettings;

    fn http_with(change: impl FnOnce(&mut HttpSettings)) -> Http {
        let mut settings = HttpSettings::new(Url::parse("https://api.example.test/v2").unwrap());
        settings.repositories_path = Some("/users/{owner}/repos?per_page=100".to_owned());
        change(&mut settings);
        Http::new(settings).unwrap()
    }

    fn parse(
        http: &Http,
        body: &Value,
        link: Option<&str>,
    ) -> Result<RepositoryPage, ListingError> {
        let url = Url::parse("https://api.example.test/v2/users/octo/repos").unwrap();
        let mut headers = HeaderMap::new();
        if let Some(link) = link {
            headers.insert("link", HeaderValue::from_str(link).unwrap());
        }
        let body = body.to_string();
        parse_page(
            http,
            &PageView {
                url: &url,
                headers: &headers,
                body: body.as_bytes(),
            },
        )
    }

    #[test]
    fn first_page_fills_template() {
        let http = http_with(|_| {});
        assert_eq!(
            first_page(&http, "octo").unwrap().as_str(),
            "https://api.example.test/v2/users/octo/repos?per_page=100"
        );
        for owner in ["", "..", ".", "a/b", "a?b", "a b", "%2e%2e", "é"] {
            let error = first_page(&http, owner).unwrap_err();
            assert!(
                matches!(error, ListingError::InvalidOwner { .. }),
                "{owner}: {error}"
            );
        }
    }

    #[test]
    fn listing_without_template_is_unsupported() {
        let http = http_with(|settings| settings.repositories_path = None);
        let error = first_page(&http, "octo").unwrap_err();
        assert_eq!(error, ListingError::Unsupported { provider: "http" });
    }

    #[test]
    fn page_maps_default_fields_and_keeps_raw() {
        let http = http_with(|_| {});
        let body = json!([{
            "name": "hello", "full_name": "octo/hello",
            "html_url": "https://example.test/octo/hello",
            "description": "greets", "fork": true, "archived": false,
            "default_branch": "main", "language": "Rust", "stars": 3
        }]);
        let page = parse(&http, &body, None).unwrap();
        assert_eq!(page.next, None);

        let repository = &page.repositories[0];
        assert_eq!(repository.provider, "http");
        assert_eq!(repository.owner, "octo");
        assert_eq!(repository.name, "hello");
        assert_eq!(repository.full_name, "octo/hello");
        assert_eq!(repository.url, "https://example.test/octo/hello");
        assert_eq!(repository.description.as_deref(), Some("greets"));
        assert!(repository.fork);
        assert_eq!(repository.default_branch.as_deref(), Some("main"));
        assert_eq!(repository.raw["stars"], 3);
    }

    #[test]
    fn page_maps_configured_fields_under_pointer() {
        let http = http_with(|settings| {
            settings.items_pointer = Some("/data/projects".to_owned());
            settings.name_field = "slug".to_owned();
            settings.full_name_field = "path".to_owned();
            settings.url_field = "web_url".to_owned();
        });
        let body = json!({"data": {"projects": [
            {"slug": "tool", "path": "group/sub/tool", "web_url": "https://example.test/group/sub/tool"},
            {"slug": "bare"}
        ]}});
        let page = parse(&http, &body, None).unwrap();
        let first = &page.repositories[0];
        assert_eq!(first.name, "tool");
        assert_eq!(first.owner, "group/sub");
        assert_eq!(first.full_name, "group/sub/tool");
        assert_eq!(first.url, "https://example.test/group/sub/tool");
        let second = &page.repositories[1];
        assert_eq!(second.full_name, "bare");
        assert_eq!(second.owner, "");
    }

    #[test]
    fn page_errors_name_the_setting() {
        let http = http_with(|settings| settings.items_pointer = Some("/items".to_owned()));
        let error = parse(&http, &json!({"values": []}), None).unwrap_err();
        assert!(error.to_string().contains("items_pointer"), "{error}");

        let plain = http_with(|_| {});
        let error = parse(&plain, &json!({"items": []}), None).unwrap_err();
        assert!(error.to_string().contains("items_pointer"), "{error}");

        let error = parse(&plain, &json!([{"title": "x"}]), None).unwrap_err();
        assert!(error.to_string().contains("name_field"), "{error}");
    }

    #[test]
    fn next_link_is_followed() {
        let http = http_with(|_| {});
        let page = parse(
            &http,
            &json!([]),
            Some(r#"</v2/users/octo/repos?per_page=100&page=2>; rel="next""#),
        )
        .unwrap();
        assert_eq!(
            page.next.unwrap().as_str(),
            "https://api.example.test/v2/users/octo/repos?per_page=100&page=2"
        );
    }

    #[test]
    fn next_link_loses_query_token() {
        let http = http_with(|settings| settings.auth_query = Some("api_key".to_owned()));
        let page = parse(
            &http,
            &json!([]),
            Some(r#"<https://api.example.test/v2/users/octo/repos?page=2&api_key=tok_CANARY>; rel="next""#),
        )
        .unwrap();
        let next = page.next.unwrap();
        assert!(!next.as_str().contains("CANARY"), "{next}");
        assert_eq!(next.query(), Some("page=2"));
    }
}
