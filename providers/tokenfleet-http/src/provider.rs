//! The [`Provider`] implementation: buckets, authentication, and the hooks
//! into the classifier, the probe and the listing.

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, Method};
use tokenfleet_core::{
    Bucket, ListingError, PageView, Probe, ProbeError, Provider, RepositoryPage, ResponseView,
    Token, Transport, Verdict,
};
use url::Url;

use crate::classify::classify;
use crate::config::{Auth, Http};
use crate::{repos, HTTP};

tokenfleet_core::register_plugin!(
    provider "http",
    "any HTTP API whose limit headers, reset format and statuses the config names"
);

#[typetag::serde(name = "http")]
#[async_trait]
impl Provider for Http {
    fn kind(&self) -> &'static str {
        HTTP
    }

    fn base_url(&self) -> &Url {
        &self.settings().base_url
    }

    fn default_bucket(&self) -> Bucket {
        self.default_bucket.clone()
    }

    /// Returns the bucket of the first `buckets` rule whose method and
    /// path prefix match, or the default bucket. The path is read below
    /// the base path, and a prefix matches whole segments only.
    fn bucket_for(&self, method: &Method, url: &Url) -> Bucket {
        let base_path = self.base_url().path().trim_end_matches('/');
        let Some(relative) = url
            .path()
            .strip_prefix(base_path)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        else {
            return self.default_bucket.clone();
        };

        for rule in &self.rules {
            if rule.method.as_ref().is_some_and(|m| m != method) {
                continue;
            }
            let matches = match relative.strip_prefix(rule.prefix.as_str()) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            };
            if matches {
                return rule.bucket.clone();
            }
        }
        self.default_bucket.clone()
    }

    /// Sets the configured auth header to the scheme and the token, marked
    /// sensitive so that the header map's `Debug` hides it, and replaces
    /// any value already present. In query mode the header map is left
    /// alone, and [`authorize_url`](Provider::authorize_url) adds the token.
    fn authorize(&self, headers: &mut HeaderMap, token: &Token) {
        let Auth::Header { name, scheme } = &self.auth else {
            return;
        };
        match header_value(scheme, token.secret()) {
            Some(value) => {
                headers.insert(name.clone(), value);
            }
            None => {
                headers.remove(name);
                tracing::warn!(
                    provider = HTTP,
                    token = %token.id(),
                    "token is not a valid header value; request sent without it"
                );
            }
        }
    }

    /// Sets the configured query parameter to the token, replacing any
    /// value the URL already carries. Does nothing in header mode.
    fn authorize_url(&self, url: &mut Url, token: &Token) {
        let Auth::Query { name } = &self.auth else {
            return;
        };
        set_query_param(url, name, Some(token.secret()));
    }

    fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        classify(self, response)
    }

    /// Reads the token's limits from the headers of `status_endpoint`, and
    /// learns its account from `account_endpoint`, when configured.
    async fn probe(
        &self,
        token: &Token,
        transport: &dyn Transport,
        learn_account: bool,
    ) -> Result<Probe, ProbeError> {
        crate::probe::probe(self, token, transport, learn_account).await
    }

    fn repositories_url(&self, owner: &str) -> Result<Url, ListingError> {
        repos::first_page(self, owner)
    }

    fn parse_repositories(&self, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
        repos::parse_page(self, page)
    }
}

/// Builds the sensitive header value `scheme secret`, or `secret` alone
/// when the scheme is empty; `None` when the secret contains bytes a
/// header cannot carry.
fn header_value(scheme: &str, secret: &str) -> Option<HeaderValue> {
    let mut bytes = Vec::with_capacity(scheme.len() + 1 + secret.len());
    if !scheme.is_empty() {
        bytes.extend_from_slice(scheme.as_bytes());
        bytes.push(b' ');
    }
    bytes.extend_from_slice(secret.as_bytes());

    let mut value = HeaderValue::from_bytes(&bytes).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Removes every `name` parameter from the query, then appends `name=value`
/// when `value` is given. Other parameters keep their order.
pub(crate) fn set_query_param(url: &mut Url, name: &str, value: Option<&str>) {
    let other_pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();

    if other_pairs.is_empty() && value.is_none() {
        url.set_query(None);
        return;
    }
    let mut pairs = url.query_pairs_mut();
    pairs.clear().extend_pairs(other_pairs);
    if let Some(value) = value {
        pairs.append_pair(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{BucketRule, HttpSettings};

    const CANARY: &str = "tok_CANARY0000000000000000000000000000";

    fn http_with(change: impl FnOnce(&mut HttpSettings)) -> Http {
        let mut settings = HttpSettings::new(Url::parse("https://api.example.test/v2").unwrap());
        change(&mut settings);
        Http::new(settings).unwrap()
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn kind_base_and_default_bucket() {
        let http = http_with(|settings| settings.default_bucket = "core".to_owned());
        assert_eq!(http.kind(), "http");
        assert_eq!(http.base_url().as_str(), "https://api.example.test/v2");
        assert_eq!(http.default_bucket().as_str(), "core");
    }

    #[test]
    fn bucket_rules_match_in_order() {
        let http = http_with(|settings| {
            settings.buckets = vec![
                BucketRule::new("/search/code", "code_search"),
                BucketRule::new("/search/", "search"),
                BucketRule::new("/graphql", "graphql").method("post"),
            ];
        });
        let cases = [
            (
                Method::GET,
                "https://api.example.test/v2/search/code?q=x",
                "code_search",
            ),
            (
                Method::GET,
                "https://api.example.test/v2/search/issues",
                "search",
            ),
            (Method::GET, "https://api.example.test/v2/search", "search"),
            (
                Method::GET,
                "https://api.example.test/v2/searches",
                "default",
            ),
            (
                Method::POST,
                "https://api.example.test/v2/graphql",
                "graphql",
            ),
            (
                Method::GET,
                "https://api.example.test/v2/graphql",
                "default",
            ),
            (
                Method::GET,
                "https://api.example.test/v2/users/a",
                "default",
            ),
            (
                Method::GET,
                "https://api.example.test/search/code",
                "default",
            ),
            (
                Method::GET,
                "https://api.example.test/v20/search/code",
                "default",
            ),
        ];
        for (method, text, expected) in cases {
            assert_eq!(
                http.bucket_for(&method, &url(text)).as_str(),
                expected,
                "{method} {text}"
            );
        }
    }

    #[test]
    fn authorize_default_is_bearer() {
        let http = http_with(|_| {});
        let mut headers = HeaderMap::new();
        http.authorize(&mut headers, &Token::new(CANARY));

        let value = &headers["authorization"];
        assert_eq!(value.to_str().unwrap(), format!("Bearer {CANARY}"));
        assert!(value.is_sensitive());
    }

    #[test]
    fn authorize_custom_header_and_scheme() {
        let http = http_with(|settings| {
            settings.auth_header = Some("PRIVATE-TOKEN".to_owned());
            settings.auth_scheme = Some(String::new());
        });
        let mut headers = HeaderMap::new();
        http.authorize(&mut headers, &Token::new(CANARY));
        assert_eq!(headers["private-token"].to_str().unwrap(), CANARY);
        assert!(!headers.contains_key("authorization"));

        let token_scheme = http_with(|settings| settings.auth_scheme = Some("token".to_owned()));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer stale"));
        token_scheme.authorize(&mut headers, &Token::new(CANARY));
        assert_eq!(headers.get_all("authorization").iter().count(), 1);
        assert_eq!(
            headers["authorization"].to_str().unwrap(),
            format!("token {CANARY}")
        );
    }

    #[test]
    fn authorize_query_leaves_headers_alone() {
        let http = http_with(|settings| settings.auth_query = Some("api_key".to_owned()));
        let mut headers = HeaderMap::new();
        http.authorize(&mut headers, &Token::new(CANARY));
        assert!(headers.is_empty());

        let mut target = url("https://api.example.test/v2/items?page=2&api_key=stale");
        http.authorize_url(&mut target, &Token::new(CANARY));
        assert_eq!(
            target.as_str(),
            format!("https://api.example.test/v2/items?page=2&api_key={CANARY}")
        );
    }

    #[test]
    fn authorize_url_in_header_mode_does_nothing() {
        let http = http_with(|_| {});
        let mut target = url("https://api.example.test/v2/items?page=2");
        http.authorize_url(&mut target, &Token::new(CANARY));
        assert_eq!(target.as_str(), "https://api.example.test/v2/items?page=2");
    }

    #[test]
    fn authorize_drops_unsendable_secret() {
        let http = http_with(|_| {});
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer other"));
        http.authorize(&mut headers, &Token::new("bad\u{7f}secret"));
        assert!(!headers.contains_key("authorization"));
    }

    #[test]
    fn debug_hides_secret() {
        let http = http_with(|_| {});
        let mut headers = HeaderMap::new();
        http.authorize(&mut headers, &Token::new(CANARY));
        let debug = format!("{headers:?} {http:?} {:?}", Token::new(CANARY));
        assert!(!debug.contains("CANARY"), "{debug}");
    }

    #[test]
    fn set_query_param_removes_without_value() {
        let mut target = url("https://api.example.test/x?api_key=s&page=3");
        set_query_param(&mut target, "api_key", None);
        assert_eq!(target.as_str(), "https://api.example.test/x?page=3");

        let mut only = url("https://api.example.test/x?api_key=s");
        set_query_param(&mut only, "api_key", None);
        assert_eq!(only.as_str(), "https://api.example.test/x");
    }
}
