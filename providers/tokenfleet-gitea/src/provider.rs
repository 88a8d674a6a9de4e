//! The [`Provider`] implementation: the bucket, request headers, and the
//! hooks into the classifier, the probe and the listing.

use async_trait::async_trait;
use http::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method};
use tokenfleet_core::{
    Bucket, ListingError, PageView, Probe, ProbeError, Provider, RepositoryPage, ResponseView,
    Token, Transport, Verdict,
};
use url::Url;

use crate::buckets;
use crate::classify::classify;
use crate::config::Gitea;
use crate::repos;
use crate::GITEA;

/// The media type of every Gitea API response.
const JSON: &str = "application/json";

tokenfleet_core::register_plugin!(
    provider GITEA,
    "Gitea and Forgejo (Codeberg); no built-in limit, a proxy's 429 is honoured"
);

#[typetag::serde(name = "gitea")]
#[async_trait]
impl Provider for Gitea {
    fn kind(&self) -> &'static str {
        GITEA
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    fn default_bucket(&self) -> Bucket {
        buckets::API
    }

    /// Charges every request to [`buckets::API`], because Gitea keeps no
    /// separate budgets.
    fn bucket_for(&self, _method: &Method, _url: &Url) -> Bucket {
        buckets::API
    }

    /// Sets `Authorization: token <secret>` (or `Bearer <secret>`, as
    /// configured), marked sensitive so that the header map's `Debug` hides
    /// it, and replaces any `Authorization` already present.
    ///
    /// `Accept` and `User-Agent` are set only when the request does not
    /// carry them.
    fn authorize(&self, headers: &mut HeaderMap, token: &Token) {
        match authorization_value(self.auth.as_str(), token.secret()) {
            Some(value) => {
                headers.insert(AUTHORIZATION, value);
            }
            None => {
                headers.remove(AUTHORIZATION);
                tracing::warn!(
                    provider = GITEA,
                    token = %token.id(),
                    "token is not a valid header value; request sent without authorization"
                );
            }
        }

        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static(JSON));
        }
        if !headers.contains_key(USER_AGENT) {
            match HeaderValue::from_str(&self.user_agent) {
                Ok(value) => {
                    headers.insert(USER_AGENT, value);
                }
                Err(_) => tracing::warn!(
                    provider = GITEA,
                    field = "user_agent",
                    "configured value is not a valid header value; header not sent"
                ),
            }
        }
    }

    fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        classify(response)
    }

    /// Validates the token with `GET /user` and learns its login, which
    /// costs one request of whatever budget a proxy applies.
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

    fn repositories_fallback_url(&self, owner: &str) -> Option<Url> {
        repos::organization_page(&self.base_url, owner)
    }

    fn parse_repositories(&self, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
        repos::parse_page(page)
    }
}

/// Builds the sensitive `<scheme> <secret>` header value, or `None` when
/// the secret contains bytes a header cannot carry.
fn authorization_value(scheme: &str, secret: &str) -> Option<HeaderValue> {
    let mut bytes = Vec::with_capacity(scheme.len() + 1 + secret.len());
    bytes.extend_from_slice(scheme.as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(secret.as_bytes());

    let mut value = HeaderValue::from_bytes(&bytes).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthScheme;

    const CANARY: &str = "gta_CANARY0000000000000000000000000000";

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn kind_and_default_bucket() {
        let gitea = Gitea::new();
        assert_eq!(gitea.kind(), "gitea");
        assert_eq!(gitea.default_bucket().as_str(), "api");
        assert_eq!(gitea.base_url().as_str(), "https://gitea.com/api/v1");
    }

    #[test]
    fn every_request_uses_api_bucket() {
        let gitea = Gitea::new();
        for (method, text) in [
            (Method::GET, "https://gitea.com/api/v1/user"),
            (Method::GET, "https://gitea.com/api/v1/repos/search?q=x"),
            (Method::POST, "https://gitea.com/api/v1/user/repos"),
            (Method::DELETE, "https://gitea.com/api/v1/repos/o/r"),
        ] {
            assert_eq!(gitea.bucket_for(&method, &url(text)), buckets::API);
        }
    }

    #[test]
    fn authorize_uses_token_scheme_by_default() {
        let gitea = Gitea::new();
        let mut headers = HeaderMap::new();
        gitea.authorize(&mut headers, &Token::new(CANARY));

        let authorization = &headers[AUTHORIZATION];
        assert_eq!(authorization.to_str().unwrap(), format!("token {CANARY}"));
        assert!(authorization.is_sensitive());
        assert_eq!(headers[ACCEPT], JSON);
        assert_eq!(
            headers[USER_AGENT].to_str().unwrap(),
            format!("tokenfleet/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn authorize_uses_bearer_when_configured() {
        let gitea = Gitea::new().auth(AuthScheme::Bearer);
        let mut headers = HeaderMap::new();
        gitea.authorize(&mut headers, &Token::new(CANARY));

        assert_eq!(
            headers[AUTHORIZATION].to_str().unwrap(),
            format!("Bearer {CANARY}")
        );
        assert!(headers[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn authorize_debug_hides_secret() {
        let gitea = Gitea::new();
        let mut headers = HeaderMap::new();
        gitea.authorize(&mut headers, &Token::new(CANARY));

        let debug = format!("{headers:?} {gitea:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
    }

    #[test]
    fn authorize_keeps_caller_headers() {
        let gitea = Gitea::new();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/plain"));
        headers.insert(USER_AGENT, HeaderValue::from_static("my-app/1"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("token stale"));
        gitea.authorize(&mut headers, &Token::new(CANARY));

        assert_eq!(headers[ACCEPT], "text/plain");
        assert_eq!(headers[USER_AGENT], "my-app/1");
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(
            headers[AUTHORIZATION].to_str().unwrap(),
            format!("token {CANARY}")
        );
    }

    #[test]
    fn authorize_drops_unsendable_secret() {
        let gitea = Gitea::new();
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("token other"));
        gitea.authorize(&mut headers, &Token::new("gta_bad\u{7f}secret"));

        assert!(!headers.contains_key(AUTHORIZATION));
        assert_eq!(headers[ACCEPT], JSON);
    }

    #[test]
    fn authorize_skips_unsendable_user_agent() {
        let gitea = Gitea::new().user_agent("bad\nagent");
        let mut headers = HeaderMap::new();
        gitea.authorize(&mut headers, &Token::new(CANARY));

        assert!(!headers.contains_key(USER_AGENT));
        assert!(headers.contains_key(AUTHORIZATION));
    }

    #[test]
    fn listing_urls_for_users_then_organizations() {
        let gitea = Gitea::with_base_url(url("http://127.0.0.1:3000/api/v1"));
        assert_eq!(
            gitea.repositories_url("bot").unwrap().as_str(),
            "http://127.0.0.1:3000/api/v1/users/bot/repos?limit=50&page=1"
        );
        assert_eq!(
            gitea.repositories_fallback_url("bot").unwrap().as_str(),
            "http://127.0.0.1:3000/api/v1/orgs/bot/repos?limit=50&page=1"
        );
        assert!(gitea.repositories_url("a/../b").is_err());
        assert_eq!(gitea.repositories_fallback_url("a/../b"), None);
    }
}
