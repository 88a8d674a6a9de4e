//! The [`Provider`] implementation: buckets, request headers, and the hooks
//! into the classifier and the status probe.

use async_trait::async_trait;
use http::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokenfleet_core::{
    Bucket, ListingError, PageView, Probe, ProbeError, Provider, RepositoryPage, ResponseView,
    Token, Transport, Verdict,
};
use url::Url;

use crate::buckets;
use crate::classify::classify;
use crate::config::Github;
use crate::repos;
use crate::GITHUB;

/// The media type GitHub recommends for REST requests.
const GITHUB_JSON: &str = "application/vnd.github+json";

/// The header that selects the REST API version.
static API_VERSION: HeaderName = HeaderName::from_static("x-github-api-version");

tokenfleet_core::register_plugin!(
    provider GITHUB,
    "GitHub REST and GraphQL APIs, on github.com and Enterprise Server"
);

#[typetag::serde(name = "github")]
#[async_trait]
impl Provider for Github {
    fn kind(&self) -> &'static str {
        GITHUB
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    fn default_bucket(&self) -> Bucket {
        buckets::CORE
    }

    /// Maps search requests to `search` or `code_search`, GraphQL queries
    /// to `graphql` and everything else to `core`.
    ///
    /// The path is read relative to the base path, so `/api/v3/search/code`
    /// on GitHub Enterprise Server is code search. GraphQL lives beside the
    /// REST base there (`/api/graphql`), and at `/graphql` on github.com.
    ///
    /// NOTE: the rarer buckets GitHub documents (`integration_manifest`,
    /// `dependency_snapshots`, `code_scanning_upload` and others) are
    /// charged to `core` here. Their responses still name the real bucket
    /// in `x-ratelimit-resource`.
    fn bucket_for(&self, method: &Method, url: &Url) -> Bucket {
        let base_path = self.base_url.path().trim_end_matches('/');
        let path = url.path().trim_end_matches('/');
        let relative = path
            .strip_prefix(base_path)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'));

        if method == Method::POST && is_graphql_path(base_path, path, relative) {
            return buckets::GRAPHQL;
        }
        let Some(relative) = relative else {
            return buckets::CORE;
        };

        let mut segments = relative.trim_start_matches('/').split('/');
        match (segments.next(), segments.next()) {
            (Some("search"), Some("code")) => buckets::CODE_SEARCH,
            (Some("search"), _) => buckets::SEARCH,
            _ => buckets::CORE,
        }
    }

    /// Sets `Authorization: Bearer <secret>`, marked sensitive so that the
    /// header map's `Debug` hides it, and replaces any `Authorization`
    /// already present.
    ///
    /// `Accept`, `User-Agent` and `X-GitHub-Api-Version` are set only when
    /// the request does not carry them, so a caller can ask for another
    /// media type or API version on one request.
    fn authorize(&self, headers: &mut HeaderMap, token: &Token) {
        match bearer_value(token.secret()) {
            Some(value) => {
                headers.insert(AUTHORIZATION, value);
            }
            None => {
                headers.remove(AUTHORIZATION);
                tracing::warn!(
                    provider = GITHUB,
                    token = %token.id(),
                    "token is not a valid header value; request sent without authorization"
                );
            }
        }

        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static(GITHUB_JSON));
        }
        insert_if_absent(headers, &API_VERSION, &self.api_version, "api_version");
        insert_if_absent(headers, &USER_AGENT, &self.user_agent, "user_agent");
    }

    fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        classify(response)
    }

    /// Reads every bucket from `GET /rate_limit`, which costs no primary
    /// budget, and learns the account from `GET /user`, which costs one
    /// `core` request.
    async fn probe(
        &self,
        token: &Token,
        transport: &dyn Transport,
        learn_account: bool,
    ) -> Result<Probe, ProbeError> {
        crate::probe::probe(self, token, transport, learn_account).await
    }

    fn repositories_url(&self, owner: &str) -> Result<Url, ListingError> {
        repos::first_page(&self.base_url, owner)
    }

    fn parse_repositories(&self, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
        repos::parse_page(page)
    }
}

/// Returns true when `path` is the GraphQL endpoint that belongs to the
/// REST base at `base_path`: `/graphql` on github.com, `/api/graphql`
/// beside `/api/v3` on GitHub Enterprise Server. `relative` is `path`
/// below the base path, if it lies there.
fn is_graphql_path(base_path: &str, path: &str, relative: Option<&str>) -> bool {
    if relative == Some("/graphql") {
        return true;
    }
    match base_path.rsplit_once('/') {
        Some((parent, _)) => path.strip_prefix(parent) == Some("/graphql"),
        None => false,
    }
}

/// Builds the sensitive `Bearer` header value, or `None` when the secret
/// contains bytes a header cannot carry.
fn bearer_value(secret: &str) -> Option<HeaderValue> {
    let mut bytes = Vec::with_capacity(7 + secret.len());
    bytes.extend_from_slice(b"Bearer ");
    bytes.extend_from_slice(secret.as_bytes());

    let mut value = HeaderValue::from_bytes(&bytes).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn insert_if_absent(headers: &mut HeaderMap, name: &HeaderName, value: &str, field: &str) {
    if headers.contains_key(name) {
        return;
    }
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name.clone(), value);
        }
        Err(_) => {
            tracing::warn!(
                provider = GITHUB,
                field,
                "configured value is not a valid header value; header not sent"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn kind_and_default_bucket() {
        let github = Github::new();
        assert_eq!(github.kind(), "github");
        assert_eq!(github.default_bucket().as_str(), "core");
        assert_eq!(github.base_url().as_str(), "https://api.github.com/");
    }

    #[test]
    fn bucket_for_github_com() {
        let github = Github::new();
        let cases = [
            (
                Method::GET,
                "https://api.github.com/search/code?q=x",
                "code_search",
            ),
            (
                Method::GET,
                "https://api.github.com/search/code/",
                "code_search",
            ),
            (
                Method::GET,
                "https://api.github.com/search/issues?q=x",
                "search",
            ),
            (
                Method::GET,
                "https://api.github.com/search/repositories",
                "search",
            ),
            (
                Method::GET,
                "https://api.github.com/search/commits",
                "search",
            ),
            (Method::GET, "https://api.github.com/search", "search"),
            (Method::GET, "https://api.github.com/searches", "core"),
            (Method::POST, "https://api.github.com/graphql", "graphql"),
            (Method::GET, "https://api.github.com/graphql", "core"),
            (Method::GET, "https://api.github.com/rate_limit", "core"),
            (
                Method::GET,
                "https://api.github.com/users/octo/repos",
                "core",
            ),
            (
                Method::GET,
                "https://api.github.com/repos/o/r/search/code",
                "core",
            ),
            (Method::PATCH, "https://api.github.com/repos/o/r", "core"),
            (Method::GET, "https://api.github.com/", "core"),
        ];
        for (method, text, expected) in cases {
            let bucket = github.bucket_for(&method, &url(text));
            assert_eq!(bucket.as_str(), expected, "{method} {text}");
        }
    }

    #[test]
    fn bucket_for_enterprise_server() {
        let github = Github::with_base_url(url("https://ghe.example/api/v3"));
        let cases = [
            (
                Method::GET,
                "https://ghe.example/api/v3/search/code?q=x",
                "code_search",
            ),
            (
                Method::GET,
                "https://ghe.example/api/v3/search/issues",
                "search",
            ),
            (Method::POST, "https://ghe.example/api/graphql", "graphql"),
            (
                Method::POST,
                "https://ghe.example/api/v3/graphql",
                "graphql",
            ),
            (Method::POST, "https://ghe.example/graphql", "core"),
            (Method::GET, "https://ghe.example/api/v3/rate_limit", "core"),
            (
                Method::GET,
                "https://ghe.example/api/v3/users/octo/repos",
                "core",
            ),
            (
                Method::GET,
                "https://ghe.example/api/v30/search/code",
                "core",
            ),
        ];
        for (method, text, expected) in cases {
            let bucket = github.bucket_for(&method, &url(text));
            assert_eq!(bucket.as_str(), expected, "{method} {text}");
        }
    }

    #[test]
    fn bucket_for_base_with_trailing_slash() {
        let github = Github::with_base_url(url("http://127.0.0.1:8080/api/v3/"));
        let search = url("http://127.0.0.1:8080/api/v3/search/code");
        let graphql = url("http://127.0.0.1:8080/api/graphql");
        assert_eq!(
            github.bucket_for(&Method::GET, &search).as_str(),
            "code_search"
        );
        assert_eq!(
            github.bucket_for(&Method::POST, &graphql).as_str(),
            "graphql"
        );
    }

    #[test]
    fn authorize_sets_headers() {
        let github = Github::new();
        let mut headers = HeaderMap::new();
        github.authorize(&mut headers, &Token::new(CANARY));

        let authorization = &headers[AUTHORIZATION];
        assert_eq!(authorization.to_str().unwrap(), format!("Bearer {CANARY}"));
        assert!(authorization.is_sensitive());
        assert_eq!(headers[ACCEPT], GITHUB_JSON);
        assert_eq!(headers["x-github-api-version"], "2022-11-28");
        assert_eq!(
            headers[USER_AGENT].to_str().unwrap(),
            format!("tokenfleet/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn authorize_debug_hides_secret() {
        let github = Github::new();
        let mut headers = HeaderMap::new();
        github.authorize(&mut headers, &Token::new(CANARY));

        let debug = format!("{headers:?} {github:?}");
        assert!(!debug.contains(CANARY), "{debug}");
        assert!(!debug.contains("CANARY"), "{debug}");
    }

    #[test]
    fn authorize_keeps_caller_headers() {
        let github = Github::new();
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github.raw+json"),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static("my-app/1"));
        headers.insert(API_VERSION.clone(), HeaderValue::from_static("2026-03-10"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer stale"));
        github.authorize(&mut headers, &Token::new(CANARY));

        assert_eq!(headers[ACCEPT], "application/vnd.github.raw+json");
        assert_eq!(headers[USER_AGENT], "my-app/1");
        assert_eq!(headers["x-github-api-version"], "2026-03-10");
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(
            headers[AUTHORIZATION].to_str().unwrap(),
            format!("Bearer {CANARY}")
        );
    }

    #[test]
    fn authorize_drops_unsendable_secret() {
        let github = Github::new();
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        github.authorize(&mut headers, &Token::new("ghp_bad\u{7f}secret"));

        assert!(!headers.contains_key(AUTHORIZATION));
        assert_eq!(headers[ACCEPT], GITHUB_JSON);
    }
}
