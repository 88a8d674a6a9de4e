//! The `Link` response header (RFC 8288), as providers use it for pagination.

use http::HeaderMap;
use url::Url;

/// Returns the `rel="next"` target of the `Link` headers, resolved against `base`.
pub fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for part in split_links(text) {
            let Some((target, params)) = parse_link(part) else {
                continue;
            };
            let is_next = params.split(';').any(|param| {
                let param = param.trim();
                let Some(rel) = param.strip_prefix("rel=") else {
                    return false;
                };
                rel.trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return base.join(target).ok();
            }
        }
    }
    None
}

/// Splits a `Link` header on the commas between links, not those inside `<...>`.
fn split_links(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, ch) in text.char_indices() {
        match ch {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_link(part: &str) -> Option<(&str, &str)> {
    let part = part.trim();
    let rest = part.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(link: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(http::header::LINK, HeaderValue::from_str(link).unwrap());
        map
    }

    #[test]
    fn finds_next_among_rels() {
        let base = Url::parse("http://127.0.0.1:1/users/a/repos").unwrap();
        let map = headers(
            r#"<http://127.0.0.1:1/users/a/repos?page=2&per_page=100>; rel="next", <http://127.0.0.1:1/users/a/repos?page=5&per_page=100>; rel="last""#,
        );
        let next = next_link(&map, &base).unwrap();
        assert_eq!(next.query(), Some("page=2&per_page=100"));
    }

    #[test]
    fn no_next_on_last_page() {
        let base = Url::parse("http://127.0.0.1:1/").unwrap();
        let map = headers(
            r#"<http://127.0.0.1:1/x?page=1>; rel="first", <http://127.0.0.1:1/x?page=4>; rel="prev""#,
        );
        assert_eq!(next_link(&map, &base), None);
    }

    #[test]
    fn relative_target_resolves() {
        let base = Url::parse("http://127.0.0.1:1/api/v3/users/a/repos").unwrap();
        let map = headers(r#"</api/v3/users/a/repos?page=2>; rel="next""#);
        assert_eq!(
            next_link(&map, &base).unwrap().as_str(),
            "http://127.0.0.1:1/api/v3/users/a/repos?page=2"
        );
    }

    #[test]
    fn garbled_header_is_ignored() {
        let base = Url::parse("http://127.0.0.1:1/").unwrap();
        assert_eq!(next_link(&headers("garbage, <unterminated"), &base), None);
    }
}
