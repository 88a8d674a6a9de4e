//! Generated repositories, their JSON form, and page links of the GitHub simulator.

use serde_json::{json, Value};

/// First id handed to an organization that owns repositories but has no account.
const FIRST_ORG_ID: u64 = 5_000_000;

/// First repository id.
const FIRST_REPOSITORY_ID: u64 = 100_000;

/// Page size used when `per_page` is missing or invalid.
pub(crate) const DEFAULT_PER_PAGE: usize = 30;

/// Largest page size GitHub accepts.
pub(crate) const MAX_PER_PAGE: usize = 100;

/// Number of results GitHub's search returns at most per query.
pub(crate) const SEARCH_RESULT_CAP: usize = 1000;

/// 2012-01-01T00:00:00Z in epoch seconds, the earliest generated creation date.
const EARLIEST_CREATED: u64 = 1_325_376_000;

const ADJECTIVES: [&str; 16] = [
    "quiet", "rapid", "amber", "brisk", "lunar", "hollow", "scarlet", "gentle", "frozen", "silver",
    "nimble", "rustic", "vivid", "candid", "mellow", "solar",
];

const NOUNS: [&str; 16] = [
    "parser", "harbor", "engine", "lantern", "compass", "garden", "beacon", "ledger", "crane",
    "meadow", "socket", "anvil", "thicket", "orbit", "quill", "bridge",
];

const LANGUAGES: [&str; 8] = [
    "Rust",
    "Go",
    "Python",
    "TypeScript",
    "C",
    "Java",
    "Ruby",
    "Shell",
];

/// One generated repository; its URLs are built per request from the caller's host.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    pub(crate) id: u64,
    pub(crate) name: String,
    description: Option<String>,
    language: Option<&'static str>,
    fork: bool,
    archived: bool,
    default_branch: &'static str,
    stargazers_count: u64,
    /// Creation, update and push times in epoch seconds.
    created_at: u64,
    updated_at: u64,
    pushed_at: u64,
}

/// The repositories of one user or organization.
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) login: String,
    /// Id reported when no account has this login, which makes the owner an organization.
    pub(crate) org_id: u64,
    /// Repositories sorted by name, the default order of GitHub's listing.
    pub(crate) repositories: Vec<Repository>,
    /// Number of repositories generated so far, the seed of the next one.
    generated: usize,
}

/// The identity a repository listing reports for its owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnerIdentity<'a> {
    pub(crate) login: &'a str,
    pub(crate) id: u64,
    pub(crate) is_user: bool,
}

/// Generator of owners and repository ids, part of the simulator state.
#[derive(Debug)]
pub(crate) struct Catalog {
    next_org_id: u64,
    next_repository_id: u64,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            next_org_id: FIRST_ORG_ID,
            next_repository_id: FIRST_REPOSITORY_ID,
        }
    }
}

impl Catalog {
    /// Creates the owner entry for `login`.
    pub(crate) fn new_owner(&mut self, login: &str) -> Owner {
        let org_id = self.next_org_id;
        self.next_org_id += 1;
        Owner {
            login: login.to_owned(),
            org_id,
            repositories: Vec::new(),
            generated: 0,
        }
    }

    /// Appends `count` repositories whose content depends only on the owner's login and position.
    pub(crate) fn generate(&mut self, owner: &mut Owner, count: usize) {
        let seed = fnv1a(owner.login.to_lowercase().as_bytes());
        for _ in 0..count {
            let index = owner.generated;
            owner.generated += 1;

            let id = self.next_repository_id;
            self.next_repository_id += 1;
            owner
                .repositories
                .push(generate_repository(seed, index, id));
        }
        owner.repositories.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

fn generate_repository(owner_seed: u64, index: usize, id: u64) -> Repository {
    let mut rng = SplitMix::new(owner_seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));

    let adjective = ADJECTIVES[rng.below(ADJECTIVES.len() as u64) as usize];
    let noun = NOUNS[rng.below(NOUNS.len() as u64) as usize];
    let name = format!("{adjective}-{noun}-{}", index + 1);

    let description =
        (rng.below(5) != 0).then(|| format!("A {adjective} {noun} written for tests"));
    let language =
        (rng.below(6) != 0).then(|| LANGUAGES[rng.below(LANGUAGES.len() as u64) as usize]);

    let created_at = EARLIEST_CREATED + rng.below(10 * 365 * 86_400);
    let updated_at = created_at + rng.below(2 * 365 * 86_400);
    let pushed_at = updated_at - rng.below(updated_at - created_at + 1);

    Repository {
        id,
        name,
        description,
        language,
        fork: rng.below(8) == 0,
        archived: rng.below(12) == 0,
        default_branch: if created_at < 1_601_510_400 {
            "master"
        } else {
            "main"
        },
        stargazers_count: rng.below(5000),
        created_at,
        updated_at,
        pushed_at,
    }
}

/// Base URLs that responses link to, built from the request's own host.
#[derive(Debug, Clone)]
pub(crate) struct Urls {
    /// REST API root, such as `http://127.0.0.1:8080` or `http://127.0.0.1:8080/api/v3`.
    pub(crate) api: String,
    /// Web root, such as `http://127.0.0.1:8080`.
    pub(crate) web: String,
    /// Host and port, used in SSH clone URLs.
    pub(crate) host: String,
}

/// Returns the simple-user object GitHub nests as a repository's `owner`.
pub(crate) fn owner_json(owner: OwnerIdentity<'_>, urls: &Urls) -> Value {
    let kind = if owner.is_user {
        "User"
    } else {
        "Organization"
    };
    json!({
        "login": owner.login,
        "id": owner.id,
        "node_id": node_id(kind, owner.id),
        "type": kind,
        "html_url": format!("{}/{}", urls.web, owner.login),
    })
}

/// Returns a repository in GitHub's minimal-repository shape.
pub(crate) fn repository_json(owner: OwnerIdentity<'_>, repo: &Repository, urls: &Urls) -> Value {
    let full_name = format!("{}/{}", owner.login, repo.name);
    json!({
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": full_name,
        "owner": owner_json(owner, urls),
        "private": false,
        "html_url": format!("{}/{full_name}", urls.web),
        "description": repo.description,
        "fork": repo.fork,
        "url": format!("{}/repos/{full_name}", urls.api),
        "archived": repo.archived,
        "disabled": false,
        "default_branch": repo.default_branch,
        "language": repo.language,
        "created_at": format_iso8601(repo.created_at),
        "updated_at": format_iso8601(repo.updated_at),
        "pushed_at": format_iso8601(repo.pushed_at),
        "clone_url": format!("{}/{full_name}.git", urls.web),
        "ssh_url": format!("git@{}:{full_name}.git", urls.host),
        "stargazers_count": repo.stargazers_count,
        "visibility": "public",
    })
}

/// A requested page: 1-based number and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    pub(crate) page: usize,
    pub(crate) per_page: usize,
}

impl PageRequest {
    /// Reads `page` and `per_page`, falling back to page 1 and 30 items and capping at 100.
    pub(crate) fn from_query(query: &[(String, String)]) -> Self {
        let read = |key: &str| {
            query
                .iter()
                .find(|(name, _)| name == key)
                .and_then(|(_, value)| value.parse::<usize>().ok())
                .filter(|&value| value > 0)
        };

        Self {
            page: read("page").unwrap_or(1),
            per_page: read("per_page").map_or(DEFAULT_PER_PAGE, |n| n.min(MAX_PER_PAGE)),
        }
    }

    /// Returns the index range of this page within `total` items.
    pub(crate) fn range(self, total: usize) -> std::ops::Range<usize> {
        let start = (self.page - 1).saturating_mul(self.per_page).min(total);
        let end = start.saturating_add(self.per_page).min(total);
        start..end
    }

    /// Builds the `link` header, or `None` when page 1 already contains all `total` items.
    ///
    /// Links repeat every query parameter of the request, with `per_page`
    /// and `page` last. Like GitHub, the first page has no `prev`/`first`
    /// and the last page has no `next`/`last`.
    pub(crate) fn link_header(
        self,
        endpoint: &str,
        query: &[(String, String)],
        total: usize,
    ) -> Option<String> {
        let last_page = total.div_ceil(self.per_page).max(1);
        if self.page == 1 && last_page == 1 {
            return None;
        }

        let link = |page: usize, rel: &str| {
            let mut serializer = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in query {
                if name != "page" && name != "per_page" {
                    serializer.append_pair(name, value);
                }
            }
            serializer.append_pair("per_page", &self.per_page.to_string());
            serializer.append_pair("page", &page.to_string());
            format!("<{endpoint}?{}>; rel=\"{rel}\"", serializer.finish())
        };

        let mut links = Vec::new();
        if self.page > 1 {
            links.push(link(self.page - 1, "prev"));
        }
        if self.page < last_page {
            links.push(link(self.page + 1, "next"));
            links.push(link(last_page, "last"));
        }
        if self.page > 1 {
            links.push(link(1, "first"));
        }
        Some(links.join(", "))
    }
}

/// Returns whether a repository matches a search query.
///
/// Every bare term must occur in the name, ignoring case. The qualifiers
/// `user:` and `org:` restrict the owner.
pub(crate) fn matches_query(query: &str, owner_login: &str, repo_name: &str) -> bool {
    let name = repo_name.to_lowercase();
    query.split_whitespace().all(|term| {
        let term = term.to_lowercase();
        match term.split_once(':') {
            Some(("user" | "org", owner)) => owner_login.eq_ignore_ascii_case(owner),
            _ => name.contains(&term),
        }
    })
}

/// Returns a legacy GraphQL node id, the base64 of `<length>:<Type><id>`.
fn node_id(kind: &str, id: u64) -> String {
    let prefix = match kind {
        "User" => "04",
        "Repository" => "010",
        _ => "012",
    };
    base64_encode(format!("{prefix}:{kind}{id}").as_bytes())
}

fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    let mut output = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let bits = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for position in 0..4 {
            if position <= chunk.len() {
                let sextet = (bits >> (18 - 6 * position)) & 0x3F;
                output.push(char::from(ALPHABET[sextet as usize]));
            } else {
                output.push('=');
            }
        }
    }
    output
}

/// Formats epoch seconds as UTC ISO 8601, such as `2015-03-04T05:06:07Z`.
pub(crate) fn format_iso8601(epoch_secs: u64) -> String {
    let days = epoch_secs / 86_400;
    let seconds_of_day = epoch_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60,
        seconds_of_day % 60
    )
}

/// Converts days since 1970-01-01 into a Gregorian (year, month, day).
fn civil_from_days(mut days: u64) -> (u64, u64, u64) {
    let is_leap = |year: u64| (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    let mut year = 1970;
    loop {
        let year_length = if is_leap(year) { 366 } else { 365 };
        if days < year_length {
            break;
        }
        days -= year_length;
        year += 1;
    }

    let february = if is_leap(year) { 29 } else { 28 };
    let month_lengths = [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for length in month_lengths {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    (year, month, days + 1)
}

/// Returns the 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// SplitMix64, a small deterministic generator for repository content.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a value in `0..bound`; the slight modulo bias does not matter here.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_iso8601(1_609_372_800), "2020-12-31T00:00:00Z");
        assert_eq!(format_iso8601(1_609_459_200), "2021-01-01T00:00:00Z");
        assert_eq!(format_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn node_id_matches_github_legacy_format() {
        assert_eq!(node_id("User", 1), "MDQ6VXNlcjE=");
        assert_eq!(
            node_id("Repository", 1296269),
            "MDEwOlJlcG9zaXRvcnkxMjk2MjY5"
        );
    }

    #[test]
    fn page_request_defaults_and_caps() {
        assert_eq!(
            PageRequest::from_query(&[]),
            PageRequest {
                page: 1,
                per_page: 30
            }
        );
        let capped = PageRequest::from_query(&pairs(&[("per_page", "500"), ("page", "0")]));
        assert_eq!(capped.per_page, 100);
        assert_eq!(capped.page, 1);
    }

    #[test]
    fn page_range_stops_at_total() {
        let page = PageRequest {
            page: 3,
            per_page: 10,
        };
        assert_eq!(page.range(25), 20..25);
        assert_eq!(page.range(15), 15..15);
    }

    #[test]
    fn link_header_omitted_for_single_page() {
        let page = PageRequest {
            page: 1,
            per_page: 30,
        };
        assert_eq!(page.link_header("http://h/x", &[], 30), None);
    }

    #[test]
    fn link_header_middle_page_has_all_rels() {
        let page = PageRequest {
            page: 2,
            per_page: 10,
        };
        let query = pairs(&[("q", "a b"), ("page", "2"), ("per_page", "10")]);
        let header = page.link_header("http://h/x", &query, 35).unwrap();
        assert_eq!(
            header,
            "<http://h/x?q=a+b&per_page=10&page=1>; rel=\"prev\", \
             <http://h/x?q=a+b&per_page=10&page=3>; rel=\"next\", \
             <http://h/x?q=a+b&per_page=10&page=4>; rel=\"last\", \
             <http://h/x?q=a+b&per_page=10&page=1>; rel=\"first\""
        );
    }

    #[test]
    fn generation_is_deterministic_per_owner() {
        let mut catalog = Catalog::default();
        let mut first = catalog.new_owner("octo");
        let mut second = catalog.new_owner("OCTO");
        catalog.generate(&mut first, 5);
        catalog.generate(&mut second, 5);

        let names = |owner: &Owner| -> Vec<String> {
            owner.repositories.iter().map(|r| r.name.clone()).collect()
        };
        assert_eq!(names(&first), names(&second));
    }

    #[test]
    fn query_matches_terms_and_owner() {
        assert!(matches_query("Parser", "octo", "quiet-parser-1"));
        assert!(matches_query("parser user:octo", "Octo", "quiet-parser-1"));
        assert!(!matches_query("parser org:other", "octo", "quiet-parser-1"));
        assert!(!matches_query("parser engine", "octo", "quiet-parser-1"));
    }
}
