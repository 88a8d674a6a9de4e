//! The [`Provider`] implementation: buckets, the auth header, and the hooks
//! into the classifier, the probe and the project listings.

use async_trait::async_trait;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokenfleet_core::{
    Bucket, ListingError, PageView, Probe, ProbeError, Provider, RepositoryPage, ResponseView,
    Token, Transport, Verdict,
};
use url::Url;

use crate::buckets;
use crate::classify::classify;
use crate::config::{AuthScheme, Gitlab};
use crate::repos;
use crate::GITLAB;

/// The header of personal, project and group access tokens.
pub(crate) static PRIVATE_TOKEN: HeaderName = HeaderName::from_static("private-token");

tokenfleet_core::register_plugin!(
    provider "gitlab",
    "GitLab.com and self-managed GitLab, with RateLimit-* headers"
);

#[typetag::serde(name = "gitlab")]
#[async_trait]
impl Provider for Gitlab {
    fn kind(&self) -> &'static str {
        GITLAB
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    fn default_bucket(&self) -> Bucket {
        buckets::API
    }

    /// Maps package registry paths (`/packages/...`,
    /// `/projects/:id/packages/...`, `/groups/:id/-/packages/...`) to
    /// `packages_api`, repository file paths to `files_api` and everything
    /// else to `api`, the buckets that GitLab's `RateLimit-Name` reports
    /// for them when those throttles are on.
    ///
    /// NOTE: GitLab also throttles deprecated API endpoints, Git LFS and
    /// protected paths separately. Those requests are charged to `api`
    /// here, and their responses name the real throttle.
    fn bucket_for(&self, _method: &Method, url: &Url) -> Bucket {
        let base_path = self.base_url.path().trim_end_matches('/');
        let Some(relative) = url
            .path()
            .strip_prefix(base_path)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        else {
            return buckets::API;
        };

        let segments: Vec<&str> = relative.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["packages", ..]
            | ["projects", _, "packages", ..]
            | ["groups", _, "packages", ..]
            | ["groups", _, "-", "packages", ..] => buckets::PACKAGES_API,
            ["projects", _, "repository", "files", ..] => buckets::FILES_API,
            _ => buckets::API,
        }
    }

    /// Sets `PRIVATE-TOKEN: <secret>` or `Authorization: Bearer <secret>`,
    /// as configured, marked sensitive so that the header map's `Debug`
    /// hides it. The other auth header is removed, so a request never
    /// carries two credentials.
    fn authorize(&self, headers: &mut HeaderMap, token: &Token) {
        headers.remove(&PRIVATE_TOKEN);
        headers.remove(AUTHORIZATION);

        let (name, value) = match self.auth {
            AuthScheme::PrivateToken => (&PRIVATE_TOKEN, sensitive_value("", token.secret())),
            AuthScheme::Bearer => (&AUTHORIZATION, sensitive_value("Bearer ", token.secret())),
        };
        match value {
            Some(value) => {
                headers.insert(name.clone(), value);
            }
            None => {
                tracing::warn!(
                    provider = GITLAB,
                    token = %token.id(),
                    "token is not a valid header value; request sent without authorization"
                );
            }
        }
    }

    fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        classify(response)
    }

    /// Older GitLab versions state limits on 429 responses only, and a
    /// garbled header reads as none, so a response without limits does not
    /// mean the throttle is off.
    fn headerless_means_unlimited(&self) -> bool {
        false
    }

    /// Learns the user behind a token from `GET /user`, only when
    /// `learn_account` is set in the config and the pool requests it.
    /// That request costs one request of the user's budget. GitLab has no
    /// status endpoint, so otherwise the probe is
    /// [`ProbeError::Unsupported`].
    async fn probe(
        &self,
        token: &Token,
        transport: &dyn Transport,
        learn_account: bool,
    ) -> Result<Probe, ProbeError> {
        if !(self.learn_account && learn_account) {
            return Err(ProbeError::Unsupported);
        }
        crate::probe::learn_user(self, token, transport).await
    }

    fn repositories_url(&self, owner: &str) -> Result<Url, ListingError> {
        repos::first_page(self, owner)
    }

    fn repositories_fallback_url(&self, owner: &str) -> Option<Url> {
        repos::group_fallback(self, owner)
    }

    fn parse_repositories(&self, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
        repos::parse_page(page)
    }
}

/// Builds a sensitive header value of `prefix` and `secret`, or `None`
/// when the secret contains bytes a header cannot carry.
fn sensitive_value(prefix: &str, secret: &str) -> Option<HeaderValue> {
    if secret.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(prefix.len() + secret.len());
    bytes.extend_from_slice(prefix.as_bytes());
    bytes.extend_from_slice(secret.as_bytes());

    let mut value = HeaderValue::from_bytes(&bytes).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "glpat-CANARY0000000000000000";

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn kind_and_default_bucket() {
        let gitlab = Gitlab::new();
        assert_eq!(gitlab.kind(), "gitlab");
        assert_eq!(gitlab.default_bucket().as_str(), "api");
        assert_eq!(gitlab.base_url().as_str(), "https://gitlab.com/api/v4");
    }

    #[test]
    fn bucket_for_paths() {
        let gitlab = Gitlab::with_base_url(url("https://git.example/api/v4"));
        let cases = [
            ("https://git.example/api/v4/user", "api"),
            ("https://git.example/api/v4/users/alice/projects", "api"),
            (
                "https://git.example/api/v4/projects/1/packages",
                "packages_api",
            ),
            (
                "https://git.example/api/v4/projects/1/packages/npm/x/-/x-1.0.0.tgz",
                "packages_api",
            ),
            (
                "https://git.example/api/v4/groups/a%2Fb/packages",
                "packages_api",
            ),
            (
                "https://git.example/api/v4/projects/1/repository/files/README.md/raw",
                "files_api",
            ),
            (
                "https://git.example/api/v4/projects/1/repository/tree",
                "api",
            ),
            ("https://git.example/api/v4", "api"),
            (
                "https://git.example/api/v4/groups/7/-/packages/maven/a/b",
                "packages_api",
            ),
            (
                "https://git.example/api/v4/packages/conan/v1/ping",
                "packages_api",
            ),
            ("https://git.example/api/v4/projects/packages/issues", "api"),
            ("https://git.example/other/packages", "api"),
            ("https://git.example/api/v40/projects/1/packages", "api"),
        ];
        for (text, expected) in cases {
            let bucket = gitlab.bucket_for(&Method::GET, &url(text));
            assert_eq!(bucket.as_str(), expected, "{text}");
        }
    }

    #[test]
    fn authorize_private_token() {
        let gitlab = Gitlab::new();
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer stale"));
        gitlab.authorize(&mut headers, &Token::new(CANARY));

        let value = &headers[&PRIVATE_TOKEN];
        assert_eq!(value.to_str().unwrap(), CANARY);
        assert!(value.is_sensitive());
        assert!(!headers.contains_key(AUTHORIZATION));
    }

    #[test]
    fn authorize_bearer() {
        let gitlab = Gitlab::new().auth(AuthScheme::Bearer);
        let mut headers = HeaderMap::new();
        headers.insert(PRIVATE_TOKEN.clone(), HeaderValue::from_static("stale"));
        gitlab.authorize(&mut headers, &Token::new(CANARY));

        let value = &headers[AUTHORIZATION];
        assert_eq!(value.to_str().unwrap(), format!("Bearer {CANARY}"));
        assert!(value.is_sensitive());
        assert!(!headers.contains_key(&PRIVATE_TOKEN));
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
    }

    #[test]
    fn authorize_debug_hides_secret() {
        for auth in [AuthScheme::PrivateToken, AuthScheme::Bearer] {
            let gitlab = Gitlab::new().auth(auth);
            let token = Token::new(CANARY);
            let mut headers = HeaderMap::new();
            gitlab.authorize(&mut headers, &token);

            let debug = format!("{headers:?} {gitlab:?} {token:?} {token}");
            assert!(!debug.contains("CANARY"), "{debug}");
        }
    }

    #[test]
    fn authorize_drops_unsendable_secret() {
        for auth in [AuthScheme::PrivateToken, AuthScheme::Bearer] {
            let gitlab = Gitlab::new().auth(auth);
            let mut headers = HeaderMap::new();
            headers.insert(PRIVATE_TOKEN.clone(), HeaderValue::from_static("other"));
            headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
            gitlab.authorize(&mut headers, &Token::new("glpat-bad\nsecret"));

            assert!(!headers.contains_key(&PRIVATE_TOKEN));
            assert!(!headers.contains_key(AUTHORIZATION));
        }
    }
}
