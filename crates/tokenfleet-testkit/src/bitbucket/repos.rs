//! Generated repositories of the Bitbucket simulator, their JSON form and
//! the body pagination of workspace listings.

use serde_json::{json, Map, Value};

/// Page length used when `pagelen` is missing or invalid.
pub(crate) const DEFAULT_PAGE_LENGTH: usize = 10;

/// The maximum page length Bitbucket accepts.
pub(crate) const MAX_PAGE_LENGTH: usize = 100;

/// 2015-01-01T00:00:00Z in epoch seconds, the earliest generated creation time.
const EARLIEST_CREATED: u64 = 1_420_070_400;

const ADJECTIVES: [&str; 12] = [
    "Amber", "Brisk", "Candid", "Frozen", "Gentle", "Hollow", "Lunar", "Mellow", "Nimble", "Quiet",
    "Rustic", "Solar",
];

const NOUNS: [&str; 12] = [
    "Anvil", "Beacon", "Bridge", "Compass", "Crane", "Engine", "Garden", "Harbor", "Ledger",
    "Meadow", "Parser", "Quill",
];

const LANGUAGES: [&str; 6] = ["python", "java", "javascript", "go", "rust", "c#"];

/// One generated repository. Its links are built per request from the caller's host.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    /// The display name, which may contain spaces and capitals.
    pub(crate) name: String,
    /// The URL-safe name: the display name in lower case with `-` for spaces.
    pub(crate) slug: String,
    position: usize,
}

/// A workspace and its repositories, in listing order.
#[derive(Debug)]
pub(crate) struct Workspace {
    /// The slug as first written.
    pub(crate) slug: String,
    pub(crate) repositories: Vec<Repository>,
}

impl Workspace {
    pub(crate) fn new(slug: &str) -> Self {
        Self {
            slug: slug.to_owned(),
            repositories: Vec::new(),
        }
    }

    /// Generates `count` more repositories. Names depend only on their position.
    pub(crate) fn generate(&mut self, count: usize) {
        for _ in 0..count {
            let position = self.repositories.len();
            let adjective = ADJECTIVES[position % ADJECTIVES.len()];
            let noun = NOUNS[(position / ADJECTIVES.len()) % NOUNS.len()];
            let name = format!("{adjective} {noun} {position}");
            let slug = name.to_lowercase().replace(' ', "-");
            self.repositories.push(Repository {
                name,
                slug,
                position,
            });
        }
    }

    /// Builds one page of the listing. `page` counts from 1, and the
    /// `next` and `previous` links start at `roots.api`.
    pub(crate) fn page(
        &self,
        page: usize,
        page_length: usize,
        include_size: bool,
        roots: &Roots,
    ) -> Value {
        let start = (page - 1).saturating_mul(page_length);
        let values: Vec<Value> = self
            .repositories
            .iter()
            .skip(start)
            .take(page_length)
            .map(|repository| self.repository_json(repository, roots))
            .collect();

        let mut body = Map::new();
        body.insert("pagelen".into(), json!(page_length));
        body.insert("page".into(), json!(page));
        if include_size {
            body.insert("size".into(), json!(self.repositories.len()));
        }
        body.insert("values".into(), Value::Array(values));
        let link = |number: usize| {
            format!(
                "{}/repositories/{}?pagelen={page_length}&page={number}",
                roots.api, self.slug
            )
        };
        if start.saturating_add(page_length) < self.repositories.len() {
            body.insert("next".into(), json!(link(page + 1)));
        }
        if page > 1 {
            body.insert("previous".into(), json!(link(page - 1)));
        }
        Value::Object(body)
    }

    fn repository_json(&self, repository: &Repository, roots: &Roots) -> Value {
        let position = repository.position;
        let full_name = format!("{}/{}", self.slug, repository.slug);
        let html = format!("{}/{full_name}", roots.web);
        let created = EARLIEST_CREATED + position as u64 * 86_400;
        let updated = created + 3_600 * (position as u64 % 48 + 1);

        // Every third repository has an empty description, every fourth no
        // language, every fifth is a fork and every seventh is empty.
        let description = if position % 3 == 0 {
            String::new()
        } else {
            format!("The {} project.", repository.name)
        };
        let language = if position % 4 == 0 {
            ""
        } else {
            LANGUAGES[position % LANGUAGES.len()]
        };
        let mainbranch = if position % 7 == 6 {
            Value::Null
        } else {
            json!({"name": "main", "type": "branch"})
        };

        let mut object = json!({
            "type": "repository",
            "uuid": format!("{{00000000-0000-4000-8000-{position:012x}}}"),
            "full_name": full_name,
            "name": repository.name,
            "slug": repository.slug,
            "is_private": position % 2 == 1,
            "scm": "git",
            "description": description,
            "language": language,
            "size": 1_024 * (position as u64 + 1),
            "mainbranch": mainbranch,
            "fork_policy": "allow_forks",
            "has_issues": position % 2 == 0,
            "has_wiki": false,
            "created_on": iso_8601(created),
            "updated_on": iso_8601(updated),
            "links": {
                "self": {"href": format!("{}/repositories/{full_name}", roots.api)},
                "html": {"href": html},
                "clone": [
                    {"name": "https", "href": format!("{}/{full_name}.git", roots.web)},
                    {"name": "ssh", "href": format!("git@{}:{full_name}.git", roots.host)}
                ]
            },
            "workspace": {
                "type": "workspace",
                "slug": self.slug,
                "name": self.slug,
                "uuid": "{00000000-0000-4000-9000-000000000001}"
            },
            "owner": {
                "type": "team",
                "username": self.slug,
                "display_name": self.slug
            },
            "project": {"type": "project", "key": "PROJ", "name": "Project"}
        });
        if position % 5 == 4 {
            object["parent"] = json!({
                "type": "repository",
                "full_name": format!("upstream/{}", repository.slug),
                "name": repository.name,
                "uuid": format!("{{00000000-0000-4000-a000-{position:012x}}}")
            });
        }
        object
    }
}

/// The URL roots links are built from, taken from the request's host.
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    /// `http://HOST/2.0`.
    pub(crate) api: String,
    /// `http://HOST`, standing in for `https://bitbucket.org`.
    pub(crate) web: String,
    /// `HOST`, with the port.
    pub(crate) host: String,
}

/// Formats epoch seconds the way Bitbucket writes times:
/// `2015-01-01T00:00:00.000000+00:00`.
pub(crate) fn iso_8601(epoch_seconds: u64) -> String {
    let days = epoch_seconds / 86_400;
    let seconds_of_day = epoch_seconds % 86_400;
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000+00:00",
        seconds_of_day / 3_600,
        seconds_of_day % 3_600 / 60,
        seconds_of_day % 60
    )
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month, day).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let mut year = 1970;
    let mut remaining = days;
    loop {
        let length = if is_leap(year) { 366 } else { 365 };
        if remaining < length {
            break;
        }
        remaining -= length;
        year += 1;
    }
    let february = if is_leap(year) { 29 } else { 28 };
    let lengths = [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for length in lengths {
        if remaining < length {
            break;
        }
        remaining -= length;
        month += 1;
    }
    (year, month, remaining + 1)
}

fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn roots() -> Roots {
        Roots {
            api: "http://127.0.0.1:1/2.0".into(),
            web: "http://127.0.0.1:1".into(),
            host: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn iso_dates_match_calendar() {
        assert_eq!(iso_8601(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(iso_8601(951_782_400), "2000-02-29T00:00:00.000000+00:00");
        assert_eq!(iso_8601(1_700_000_000), "2023-11-14T22:13:20.000000+00:00");
        assert_eq!(
            iso_8601(EARLIEST_CREATED),
            "2015-01-01T00:00:00.000000+00:00"
        );
    }

    #[test]
    fn names_and_slugs_are_unique() {
        let mut workspace = Workspace::new("team");
        workspace.generate(300);
        let slugs: HashSet<&str> = workspace
            .repositories
            .iter()
            .map(|r| r.slug.as_str())
            .collect();
        assert_eq!(slugs.len(), 300);
        assert_eq!(workspace.repositories[0].name, "Amber Anvil 0");
        assert_eq!(workspace.repositories[0].slug, "amber-anvil-0");
    }

    #[test]
    fn pages_link_forward_and_back() {
        let mut workspace = Workspace::new("team");
        workspace.generate(25);

        let first = workspace.page(1, 10, true, &roots());
        assert_eq!(first["values"].as_array().unwrap().len(), 10);
        assert_eq!(first["size"], 25);
        assert_eq!(
            first["next"],
            "http://127.0.0.1:1/2.0/repositories/team?pagelen=10&page=2"
        );
        assert!(first.get("previous").is_none());

        let last = workspace.page(3, 10, false, &roots());
        assert_eq!(last["values"].as_array().unwrap().len(), 5);
        assert!(last.get("next").is_none(), "the last page has no next");
        assert!(last.get("size").is_none());
        assert_eq!(
            last["previous"],
            "http://127.0.0.1:1/2.0/repositories/team?pagelen=10&page=2"
        );
    }

    #[test]
    fn repository_json_has_bitbucket_fields() {
        let mut workspace = Workspace::new("team");
        workspace.generate(7);
        let page = workspace.page(1, 10, true, &roots());
        let values = page["values"].as_array().unwrap();

        let first = &values[0];
        assert_eq!(first["full_name"], "team/amber-anvil-0");
        assert_eq!(first["slug"], "amber-anvil-0");
        assert_eq!(first["description"], "");
        assert_eq!(first["language"], "");
        assert_eq!(first["mainbranch"]["name"], "main");
        assert_eq!(
            first["links"]["html"]["href"],
            "http://127.0.0.1:1/team/amber-anvil-0"
        );
        assert!(first.get("parent").is_none());

        assert!(values[4].get("parent").is_some(), "every fifth is a fork");
        assert!(values[6]["mainbranch"].is_null(), "every seventh is empty");
        assert_eq!(values[1]["language"], "java");
    }
}
