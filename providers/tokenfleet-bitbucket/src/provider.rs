//! The [`Provider`] implementation: the bucket, request headers, and the
//! hooks into the classifier, the account probe and the listing.

use async_trait::async_trait;
use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Method};
use tokenfleet_core::{
    Bucket, ListingError, PageView, Probe, ProbeError, Provider, RepositoryPage, ResponseView,
    Token, Transport, Verdict,
};
use url::Url;

use crate::auth::{self, TokenFormatError};
use crate::classify::classify;
use crate::config::{AuthScheme, Bitbucket};
use crate::{buckets, repos, BITBUCKET};

impl Bitbucket {
    /// Checks that `token` can be sent in the configured auth form: for
    /// `basic`, that it is written `username:secret`.
    ///
    /// # Errors
    ///
    /// Returns a [`TokenFormatError`] that names the token by its public id
    /// and explains how to write it.
    pub fn check_token(&self, token: &Token) -> Result<(), TokenFormatError> {
        auth::authorization(self.auth, token).map(|_| ())
    }

    /// Returns the account a token's requests are charged to, when the
    /// token itself names it: the lower-case username of a basic-auth
    /// token. Access tokens have an allowance of their own, so they name
    /// no shared account.
    pub fn account_of(&self, token: &Token) -> Option<String> {
        match self.auth {
            AuthScheme::Basic => auth::basic_account(token).ok(),
            AuthScheme::Bearer => None,
        }
    }
}

tokenfleet_core::register_plugin!(
    provider "bitbucket",
    "Bitbucket Cloud; no remaining or reset headers, so the budget is an estimate from its own counts"
);

#[typetag::serde(name = "bitbucket")]
#[async_trait]
impl Provider for Bitbucket {
    fn kind(&self) -> &'static str {
        BITBUCKET
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    fn default_bucket(&self) -> Bucket {
        buckets::API
    }

    /// Charges every request to `api`: the estimate keeps one log per account.
    ///
    /// NOTE: Bitbucket documents separate hourly budgets for a few resources
    /// (raw file and archive downloads, webhooks, application properties).
    /// Requests to them are counted in `api` here, which makes the estimate
    /// of `api` lower than the server's, never higher.
    fn bucket_for(&self, _method: &Method, _url: &Url) -> Bucket {
        buckets::API
    }

    /// Sets `Authorization` in the configured form, marked sensitive so
    /// that the header map's `Debug` hides it, and replaces any value
    /// already present. `Accept: application/json` is set unless the
    /// request carries an `Accept` of its own.
    ///
    /// A token that cannot be sent in that form (a basic-auth token without
    /// `username:`) goes without `Authorization`, with a warning that names
    /// the token by its id. The probe rejects such tokens before first use.
    fn authorize(&self, headers: &mut HeaderMap, token: &Token) {
        match auth::authorization(self.auth, token) {
            Ok(value) => {
                headers.insert(AUTHORIZATION, value);
            }
            Err(error) => {
                headers.remove(AUTHORIZATION);
                tracing::warn!(
                    provider = BITBUCKET,
                    token = %token.id(),
                    %error,
                    "request sent without authorization"
                );
            }
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
    }

    fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        classify(self, response)
    }

    /// Rejects a token that cannot be sent in the configured form, such as
    /// a basic-auth token without `username:`.
    fn validate_token(&self, token: &Token) -> Result<(), String> {
        self.check_token(token).map_err(|error| error.to_string())
    }

    /// Learns the account of a basic-auth token from its username, without
    /// a request, and rejects a token that cannot be sent in the configured
    /// form.
    ///
    /// Bitbucket has no status endpoint, so access tokens, and basic-auth
    /// tokens whose account is not asked for, get
    /// [`ProbeError::Unsupported`] and learn their budget from responses.
    async fn probe(
        &self,
        token: &Token,
        _transport: &dyn Transport,
        learn_account: bool,
    ) -> Result<Probe, ProbeError> {
        if let Err(error) = self.check_token(token) {
            return Err(ProbeError::InvalidToken(error.to_string()));
        }
        match (self.auth, learn_account) {
            (AuthScheme::Basic, true) => Ok(Probe {
                account: self.account_of(token),
                ..Probe::default()
            }),
            _ => Err(ProbeError::Unsupported),
        }
    }

    fn repositories_url(&self, owner: &str) -> Result<Url, ListingError> {
        repos::first_page(&self.base_url, owner)
    }

    fn parse_repositories(&self, page: &PageView<'_>) -> Result<RepositoryPage, ListingError> {
        repos::parse_page(&self.base_url, page)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use tokenfleet_core::TransportError;

    use super::*;

    const CANARY: &str = "ATBB_CANARY0000000000000000000000000000";

    /// A transport the probe must never use, because it sends no request.
    #[derive(Debug)]
    struct Unused;

    #[async_trait]
    impl Transport for Unused {
        async fn send(
            &self,
            _request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, TransportError> {
            panic!("the probe sent a request");
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn kind_and_default_bucket() {
        let bitbucket = Bitbucket::new();
        assert_eq!(bitbucket.kind(), "bitbucket");
        assert_eq!(bitbucket.default_bucket().as_str(), "api");
        assert_eq!(
            bitbucket.base_url().as_str(),
            "https://api.bitbucket.org/2.0"
        );
    }

    #[test]
    fn every_request_draws_from_api() {
        let bitbucket = Bitbucket::new();
        for (method, text) in [
            (Method::GET, "https://api.bitbucket.org/2.0/user"),
            (Method::GET, "https://api.bitbucket.org/2.0/repositories/ws"),
            (
                Method::POST,
                "https://api.bitbucket.org/2.0/repositories/ws/r/pullrequests",
            ),
        ] {
            assert_eq!(bitbucket.bucket_for(&method, &url(text)), buckets::API);
        }
    }

    #[test]
    fn authorize_bearer() {
        let bitbucket = Bitbucket::new();
        let mut headers = HeaderMap::new();
        bitbucket.authorize(&mut headers, &Token::new(CANARY));

        assert_eq!(
            headers[AUTHORIZATION].to_str().unwrap(),
            format!("Bearer {CANARY}")
        );
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert_eq!(headers[ACCEPT], "application/json");
    }

    #[test]
    fn authorize_basic() {
        let bitbucket = Bitbucket::new().auth(AuthScheme::Basic);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer stale"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/plain"));
        bitbucket.authorize(&mut headers, &Token::new("alice:app-pass"));

        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(headers[AUTHORIZATION], "Basic YWxpY2U6YXBwLXBhc3M=");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert_eq!(headers[ACCEPT], "text/plain");
    }

    #[test]
    fn authorize_debug_hides_secret() {
        for auth in [AuthScheme::Bearer, AuthScheme::Basic] {
            let bitbucket = Bitbucket::new().auth(auth);
            let mut headers = HeaderMap::new();
            bitbucket.authorize(&mut headers, &Token::new(format!("alice:{CANARY}")));

            let debug = format!("{headers:?} {bitbucket:?}");
            assert!(!debug.contains("CANARY"), "{debug}");
        }
    }

    #[test]
    fn authorize_drops_malformed_basic_token() {
        let bitbucket = Bitbucket::new().auth(AuthScheme::Basic);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        bitbucket.authorize(&mut headers, &Token::new(CANARY));

        assert!(!headers.contains_key(AUTHORIZATION));
    }

    #[test]
    fn check_token_by_scheme() {
        let bearer = Bitbucket::new();
        let basic = Bitbucket::new().auth(AuthScheme::Basic);
        assert!(bearer.check_token(&Token::new(CANARY)).is_ok());
        assert!(basic
            .check_token(&Token::new(format!("alice:{CANARY}")))
            .is_ok());

        let error = basic.check_token(&Token::new(CANARY)).unwrap_err();
        assert!(!error.to_string().contains("CANARY"), "{error}");
    }

    #[test]
    fn validate_token_through_trait() {
        let basic: Box<dyn Provider> = Box::new(Bitbucket::new().auth(AuthScheme::Basic));
        assert_eq!(basic.validate_token(&Token::new("alice:secret")), Ok(()));

        let token = Token::new(CANARY);
        let message = basic.validate_token(&token).unwrap_err();
        assert!(message.contains(token.id().as_str()), "{message}");
        assert!(message.contains("username:secret"), "{message}");
        assert!(!message.contains("CANARY"), "{message}");
    }

    #[test]
    fn account_of_basic_is_username() {
        let basic = Bitbucket::new().auth(AuthScheme::Basic);
        let token = Token::new("Alice@Example.com:secret");
        assert_eq!(
            basic.account_of(&token).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(Bitbucket::new().account_of(&token), None);
    }

    #[tokio::test]
    async fn probe_learns_basic_account_without_request() {
        let basic = Bitbucket::new().auth(AuthScheme::Basic);
        let probe = basic
            .probe(&Token::new("alice:secret"), &Unused, true)
            .await
            .unwrap();
        assert_eq!(probe.account.as_deref(), Some("alice"));
        assert!(probe.observations.is_empty());
        assert!(!probe.unlimited);

        let later = basic
            .probe(&Token::new("alice:secret"), &Unused, false)
            .await;
        assert!(matches!(later, Err(ProbeError::Unsupported)));
    }

    #[tokio::test]
    async fn probe_sends_nothing_to_simulator() {
        use tokenfleet_testkit::bitbucket::Allowance;
        use tokenfleet_testkit::BitbucketSimulator;

        let sim = BitbucketSimulator::start().await;
        sim.add_user("alice", Allowance::default());
        sim.add_api_token("alice", "secret");
        sim.add_access_token("repo", CANARY, Allowance::default());
        let transport =
            tokenfleet_client::ReqwestTransport::new(tokenfleet_client::default_http().unwrap());
        let base_url: Url = sim.uri().parse().unwrap();

        let basic = Bitbucket::with_base_url(base_url.clone()).auth(AuthScheme::Basic);
        let probe = basic
            .probe(&Token::new("alice:secret"), &transport, true)
            .await
            .unwrap();
        assert_eq!(probe.account.as_deref(), Some("alice"));

        let bearer = Bitbucket::with_base_url(base_url);
        let result = bearer.probe(&Token::new(CANARY), &transport, true).await;
        assert!(matches!(result, Err(ProbeError::Unsupported)));
        assert_eq!(sim.total_requests(), 0, "the probe costs no request");
    }

    #[tokio::test]
    async fn probe_of_bearer_is_unsupported() {
        let bearer = Arc::new(Bitbucket::new());
        let result = bearer.probe(&Token::new(CANARY), &Unused, true).await;
        assert!(matches!(result, Err(ProbeError::Unsupported)));
    }

    #[tokio::test]
    async fn probe_rejects_malformed_basic_token() {
        let basic = Bitbucket::new().auth(AuthScheme::Basic);
        let token = Token::new(CANARY);
        let error = basic.probe(&token, &Unused, true).await.unwrap_err();

        let ProbeError::InvalidToken(reason) = &error else {
            panic!("expected an invalid token, got {error}");
        };
        assert!(reason.contains(token.id().as_str()), "{reason}");
        assert!(reason.contains("username:secret"), "{reason}");
        assert!(!format!("{error} {error:?}").contains("CANARY"));
    }
}
