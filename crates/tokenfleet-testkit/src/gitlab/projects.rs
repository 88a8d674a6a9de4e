//! Namespaces and projects of the GitLab simulator, their JSON, and
//! GitLab's offset pagination headers.

use serde_json::{json, Value};

/// The listing size above which GitLab leaves out `x-total`,
/// `x-total-pages` and the `rel="last"` link, to spare counting.
pub(crate) const COUNT_LIMIT: usize = 10_000;

/// The number of projects that offset pagination reaches. A page that
/// starts beyond it is rejected, and the rest needs keyset pagination.
pub(crate) const MAX_OFFSET: usize = 50_000;

/// GitLab's default and maximum page sizes.
const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;

/// 2020-01-01T00:00:00Z, the creation time of the first project.
const FIRST_CREATED_AT: u64 = 1_577_836_800;

/// A user's or group's namespace and its projects, in the order they were added.
#[derive(Debug)]
pub(crate) struct Namespace {
    /// The full path as first given, such as `gitlab-org/ci`.
    pub(crate) full_path: String,
    pub(crate) id: u64,
    pub(crate) is_user: bool,
    pub(crate) projects: Vec<Project>,
}

/// One generated project.
#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub(crate) id: u64,
    /// The position in its namespace, from 1.
    pub(crate) number: usize,
    pub(crate) path: String,
}

impl Namespace {
    pub(crate) fn user(username: &str, id: u64) -> Self {
        Self {
            full_path: username.to_owned(),
            id,
            is_user: true,
            projects: Vec::new(),
        }
    }

    pub(crate) fn group(full_path: &str, id: u64) -> Self {
        Self {
            full_path: full_path.to_owned(),
            id,
            is_user: false,
            projects: Vec::new(),
        }
    }

    /// Adds `count` projects named `project-00001` and so on, with ids
    /// from `next_id`.
    pub(crate) fn generate(&mut self, count: usize, next_id: &mut u64) {
        for _ in 0..count {
            let number = self.projects.len() + 1;
            self.projects.push(Project {
                id: *next_id,
                number,
                path: format!("project-{number:05}"),
            });
            *next_id += 1;
        }
    }

    /// Returns the last segment of the full path.
    fn path(&self) -> &str {
        self.full_path.rsplit('/').next().unwrap_or(&self.full_path)
    }

    fn json(&self, web: &str, parent_id: Option<u64>) -> Value {
        json!({
            "id": self.id,
            "name": self.path(),
            "path": self.path(),
            "kind": if self.is_user { "user" } else { "group" },
            "full_path": self.full_path,
            "parent_id": parent_id,
            "avatar_url": null,
            "web_url": format!("{web}/{}", self.full_path),
        })
    }
}

/// Builds the full project object of a listing, as GitLab returns it to
/// an authenticated caller without `simple=true`.
///
/// Every seventh project is a fork, every eleventh is archived, and
/// projects with an odd number have no description.
pub(crate) fn project_json(
    namespace: &Namespace,
    parent_id: Option<u64>,
    project: &Project,
    web: &str,
) -> Value {
    let full_path = format!("{}/{}", namespace.full_path, project.path);
    let web_url = format!("{web}/{full_path}");
    let host = web.trim_start_matches("http://");
    let created_at = format_iso8601(FIRST_CREATED_AT + project.id * 3600);
    let updated_at = format_iso8601(FIRST_CREATED_AT + project.id * 3600 + 86_400);
    let name = format!("Project {:05}", project.number);
    let description = (project.number % 2 == 0).then(|| format!("Generated project {full_path}"));
    let forked_from = (project.number % 7 == 0).then(|| {
        json!({
            "id": 1,
            "name": "Upstream",
            "path": "upstream",
            "path_with_namespace": "upstream-group/upstream",
            "web_url": format!("{web}/upstream-group/upstream"),
        })
    });

    let mut object = json!({
        "id": project.id,
        "description": description,
        "name": name,
        "name_with_namespace": format!("{} / {name}", namespace.path()),
        "path": project.path,
        "path_with_namespace": full_path,
        "created_at": created_at,
        "updated_at": updated_at,
        "default_branch": "main",
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": format!("git@{host}:{full_path}.git"),
        "http_url_to_repo": format!("{web_url}.git"),
        "web_url": web_url,
        "readme_url": format!("{web_url}/-/blob/main/README.md"),
        "avatar_url": null,
        "forks_count": 0,
        "star_count": project.number % 5,
        "last_activity_at": updated_at,
        "namespace": namespace.json(web, parent_id),
        "visibility": "public",
        "archived": project.number % 11 == 0,
        "empty_repo": false,
        "open_issues_count": 0,
    });
    if let Some(parent) = forked_from {
        object["forked_from_project"] = parent;
    }
    object
}

/// The page a listing request names with `page` and `per_page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// The page number, from 1.
    pub(crate) page: usize,
    pub(crate) per_page: usize,
}

impl PageRequest {
    /// Reads `page` and `per_page`, falling back to GitLab's defaults for
    /// missing or invalid values and capping `per_page` at 100.
    pub(crate) fn from_query(query: &[(String, String)]) -> Self {
        let number = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.parse::<usize>().ok())
                .filter(|value| *value > 0)
        };
        Self {
            page: number("page").unwrap_or(1),
            per_page: number("per_page")
                .unwrap_or(DEFAULT_PER_PAGE)
                .min(MAX_PER_PAGE),
        }
    }

    /// Returns the position of this page's first item.
    pub(crate) fn offset(self) -> usize {
        self.page.saturating_sub(1).saturating_mul(self.per_page)
    }

    /// Returns the positions of this page's items in a listing of `total`.
    pub(crate) fn range(self, total: usize) -> std::ops::Range<usize> {
        let start = self.offset().min(total);
        let end = start.saturating_add(self.per_page).min(total);
        start..end
    }

    /// Builds the pagination headers of this page: `x-page`, `x-per-page`,
    /// `x-next-page` and `x-prev-page`, plus `x-total` and `x-total-pages`
    /// up to [`COUNT_LIMIT`] items. When `links` is true, a `Link` header
    /// adds `first`, `prev`, `next` and, up to the count limit, `last`.
    ///
    /// `endpoint` is the listing URL without a query, and `query` the
    /// request's parameters, which the links repeat except `page` and `per_page`.
    pub(crate) fn headers(
        self,
        endpoint: &str,
        query: &[(String, String)],
        total: usize,
        links: bool,
    ) -> Vec<(&'static str, String)> {
        let pages = total.div_ceil(self.per_page).max(1);
        let has_next = self.page < pages;
        let counted = total <= COUNT_LIMIT;
        let number_or_empty = |condition: bool, number: usize| {
            if condition {
                number.to_string()
            } else {
                String::new()
            }
        };

        let mut headers = vec![
            ("x-page", self.page.to_string()),
            ("x-per-page", self.per_page.to_string()),
            ("x-next-page", number_or_empty(has_next, self.page + 1)),
            ("x-prev-page", number_or_empty(self.page > 1, self.page - 1)),
        ];
        if counted {
            headers.push(("x-total", total.to_string()));
            headers.push(("x-total-pages", pages.to_string()));
        }
        if !links {
            return headers;
        }

        let other_parameters: Vec<String> = query
            .iter()
            .filter(|(key, _)| key != "page" && key != "per_page")
            .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
            .collect();
        let link = |page: usize, rel: &str| {
            let mut parameters = other_parameters.clone();
            parameters.push(format!("page={page}"));
            parameters.push(format!("per_page={}", self.per_page));
            format!("<{endpoint}?{}>; rel=\"{rel}\"", parameters.join("&"))
        };
        let mut parts = Vec::new();
        if self.page > 1 {
            parts.push(link(self.page - 1, "prev"));
        }
        if has_next {
            parts.push(link(self.page + 1, "next"));
        }
        parts.push(link(1, "first"));
        if counted {
            parts.push(link(pages, "last"));
        }
        headers.push(("link", parts.join(", ")));
        headers
    }
}

/// Percent-encodes a query component, leaving only unreserved characters.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Formats epoch seconds as GitLab writes times: `2020-01-01T00:00:00.000Z`.
pub(crate) fn format_iso8601(epoch_secs: u64) -> String {
    let days = epoch_secs / 86_400;
    let seconds_of_day = epoch_secs % 86_400;
    let (year, month, day) = date_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60,
        seconds_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) of the
/// proleptic Gregorian calendar, counting in 400-year cycles of 146,097
/// days from 0000-03-01 so that leap days fall at the end of each year.
fn date_from_days(days: u64) -> (u64, u64, u64) {
    // 719,468 days lie between 0000-03-01 and 1970-01-01.
    let shifted = days + 719_468;
    let cycle = shifted / 146_097;
    let day_of_cycle = shifted % 146_097;
    let year_of_cycle =
        (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    // Months counted from March: 0 is March, 11 is February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_cycle + cycle * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso8601(FIRST_CREATED_AT), "2020-01-01T00:00:00.000Z");
        assert_eq!(format_iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_iso8601(1_700_000_000), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn page_request_defaults_and_caps() {
        assert_eq!(
            PageRequest::from_query(&[]),
            PageRequest {
                page: 1,
                per_page: 20
            }
        );
        let capped = PageRequest::from_query(&pairs(&[("page", "3"), ("per_page", "500")]));
        assert_eq!(capped.page, 3);
        assert_eq!(capped.per_page, 100);
        let invalid = PageRequest::from_query(&pairs(&[("page", "0"), ("per_page", "x")]));
        assert_eq!(invalid.page, 1);
        assert_eq!(invalid.per_page, 20);
    }

    #[test]
    fn middle_page_headers() {
        let request = PageRequest {
            page: 2,
            per_page: 100,
        };
        let query = pairs(&[
            ("per_page", "100"),
            ("include_subgroups", "true"),
            ("page", "2"),
        ]);
        let headers = request.headers("http://h/api/v4/groups/g/projects", &query, 250, true);

        assert_eq!(header(&headers, "x-page"), Some("2"));
        assert_eq!(header(&headers, "x-next-page"), Some("3"));
        assert_eq!(header(&headers, "x-prev-page"), Some("1"));
        assert_eq!(header(&headers, "x-total"), Some("250"));
        assert_eq!(header(&headers, "x-total-pages"), Some("3"));
        let link = header(&headers, "link").unwrap();
        assert!(link.contains(
            "<http://h/api/v4/groups/g/projects?include_subgroups=true&page=3&per_page=100>; rel=\"next\""
        ), "{link}");
        assert!(link.contains("rel=\"prev\""), "{link}");
        assert!(link.contains("rel=\"last\""), "{link}");
    }

    #[test]
    fn last_page_has_empty_next() {
        let request = PageRequest {
            page: 3,
            per_page: 100,
        };
        let headers = request.headers("http://h/x", &[], 250, true);
        assert_eq!(header(&headers, "x-next-page"), Some(""));
        assert!(!header(&headers, "link").unwrap().contains("rel=\"next\""));
    }

    #[test]
    fn large_listing_drops_counts() {
        let request = PageRequest {
            page: 1,
            per_page: 100,
        };
        let headers = request.headers("http://h/x", &[], COUNT_LIMIT + 1, true);
        assert_eq!(header(&headers, "x-total"), None);
        assert_eq!(header(&headers, "x-total-pages"), None);
        assert_eq!(header(&headers, "x-next-page"), Some("2"));
        let link = header(&headers, "link").unwrap();
        assert!(!link.contains("rel=\"last\""), "{link}");
        assert!(link.contains("rel=\"next\""), "{link}");
    }

    #[test]
    fn links_can_be_left_out() {
        let request = PageRequest {
            page: 1,
            per_page: 20,
        };
        let headers = request.headers("http://h/x", &[], 50, false);
        assert_eq!(header(&headers, "link"), None);
        assert_eq!(header(&headers, "x-next-page"), Some("2"));
    }

    #[test]
    fn range_stops_at_total() {
        let request = PageRequest {
            page: 3,
            per_page: 100,
        };
        assert_eq!(request.range(250), 200..250);
        assert_eq!(request.range(150), 150..150);
    }
}
