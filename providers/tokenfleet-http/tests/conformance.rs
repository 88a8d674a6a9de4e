//! The provider conformance suite against the generic simulator, in four
//! configurations that differ in auth form, header names, reset format,
//! statuses, base path and listing shape.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenfleet_core::provider::SharedProvider;
use tokenfleet_core::{Clock, Token};
use tokenfleet_http::{BucketRule, Http, HttpSettings, ResetFormat};
use tokenfleet_testkit::conformance::{Capabilities, Harness};
use tokenfleet_testkit::{Budget, GenericSimulator};

/// One way to configure the generic provider and its simulator alike.
trait Profile: Send + Sync + 'static {
    /// Returns the settings; the simulator keeps only the path of `base_url`.
    fn settings() -> HttpSettings;
}

fn placeholder(path: &str) -> HttpSettings {
    HttpSettings::new(format!("http://127.0.0.1:1{path}").parse().unwrap())
}

/// The defaults, plus GitHub's used and resource headers.
struct GithubLike;

impl Profile for GithubLike {
    fn settings() -> HttpSettings {
        let mut settings = placeholder("");
        settings.used_header = Some("X-RateLimit-Used".to_owned());
        settings.bucket_header = Some("X-RateLimit-Resource".to_owned());
        settings.repositories_path = Some("/users/{owner}/repos?per_page=100".to_owned());
        settings
    }
}

/// A key header without a scheme, a quota header, millisecond resets, 503
/// as the throttle status and a free status endpoint.
struct QuotaLeft;

impl Profile for QuotaLeft {
    fn settings() -> HttpSettings {
        let mut settings = placeholder("/v2");
        settings.auth_header = Some("X-Api-Key".to_owned());
        settings.auth_scheme = Some(String::new());
        settings.limit_header = "X-Quota-Limit".to_owned();
        settings.remaining_header = "X-Quota-Left".to_owned();
        settings.reset_header = "X-Quota-Reset".to_owned();
        settings.reset_format = ResetFormat::EpochMilliseconds;
        settings.throttle_statuses = vec![503];
        settings.status_endpoint = Some("/quota".to_owned());
        settings.status_endpoint_free = true;
        settings.repositories_path = Some("/owners/{owner}/projects".to_owned());
        settings
    }
}

/// The token in a query parameter, resets in seconds from now, a base
/// path, and repositories inside an object under other field names.
struct QueryToken;

impl Profile for QueryToken {
    fn settings() -> HttpSettings {
        let mut settings = placeholder("/api/v1");
        settings.auth_query = Some("api_key".to_owned());
        settings.reset_format = ResetFormat::SecondsFromNow;
        settings.throttle_statuses = vec![429, 420];
        settings.default_bucket = "core".to_owned();
        settings.buckets = vec![BucketRule::new("/search", "search")];
        settings.repositories_path = Some("/orgs/{owner}/repositories?per_page=50".to_owned());
        settings.items_pointer = Some("/data/items".to_owned());
        settings.name_field = "slug".to_owned();
        settings.full_name_field = "path".to_owned();
        settings.url_field = "web_url".to_owned();
        settings
    }
}

/// `token` as the scheme, HTTP-date resets in GitLab's header, and more
/// statuses for invalid and forbidden responses.
struct HttpDate;

impl Profile for HttpDate {
    fn settings() -> HttpSettings {
        let mut settings = placeholder("");
        settings.auth_scheme = Some("token".to_owned());
        settings.reset_format = ResetFormat::HttpDate;
        settings.reset_header = "RateLimit-ResetTime".to_owned();
        settings.invalid_statuses = vec![401, 498];
        settings.forbidden_statuses = vec![403, 451];
        settings.repositories_path = Some("/users/{owner}/repos".to_owned());
        settings
    }
}

struct GenericHarness<P> {
    simulator: GenericSimulator,
    budget: u64,
    next: AtomicUsize,
    profile: PhantomData<P>,
}

impl<P> GenericHarness<P> {
    fn account(token: &Token) -> &str {
        token
            .account()
            .expect("conformance tokens declare their account")
    }
}

#[async_trait::async_trait]
impl<P: Profile> Harness for GenericHarness<P> {
    async fn start(clock: Arc<dyn Clock>, budget: u64) -> Self {
        let simulator = GenericSimulator::builder(P::settings())
            .clock(clock)
            .start()
            .await;
        Self {
            simulator,
            budget,
            next: AtomicUsize::new(0),
            profile: PhantomData,
        }
    }

    fn provider(&self) -> SharedProvider {
        Arc::new(Http::new(self.simulator.settings()).expect("the profile settings are valid"))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            budget_known_in_advance: true,
        }
    }

    fn add_token(&self) -> Token {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let account = format!("conformance-{n}");
        let secret = format!("key_conformance{n:026}");
        let budget = Budget::new(self.budget, Duration::from_secs(3600));
        self.simulator.add_account(&account, budget);
        self.simulator.add_token(&secret, &account);
        Token::new(secret).with_account(account)
    }

    fn drain(&self, token: &Token) {
        let bucket = P::settings().default_bucket;
        self.simulator.drain(Self::account(token), &bucket);
    }

    fn revoke(&self, token: &Token) {
        self.simulator.revoke_token(token.secret());
    }

    fn forbid(&self, path: &str) {
        self.simulator.forbid(path);
    }

    fn add_repositories(&self, owner: &str, count: usize) {
        self.simulator.add_repositories(owner, count);
    }

    fn repository_names(&self, owner: &str) -> Vec<String> {
        self.simulator.repository_names(owner)
    }

    fn sample_path(&self) -> String {
        "/items?page=1".to_owned()
    }

    fn last_credentials(&self) -> Option<String> {
        self.simulator.last_credential()
    }

    fn requests_by_token(&self, token: &Token) -> u64 {
        self.simulator.requests_by_token(token.secret())
    }

    fn successful_requests(&self) -> u64 {
        self.simulator.successful_requests()
    }

    fn total_requests(&self) -> u64 {
        self.simulator.total_requests()
    }

    fn over_limit_responses(&self) -> u64 {
        self.simulator.over_limit_responses()
    }

    fn reset_ms(&self, token: &Token) -> u64 {
        let bucket = P::settings().default_bucket;
        self.simulator.reset_at(Self::account(token), &bucket)
    }
}

mod github_like {
    use super::*;
    tokenfleet_testkit::conformance_suite!(GenericHarness<GithubLike>);
}

mod quota_left {
    use super::*;
    tokenfleet_testkit::conformance_suite!(GenericHarness<QuotaLeft>);
}

mod query_token {
    use super::*;
    tokenfleet_testkit::conformance_suite!(GenericHarness<QueryToken>);
}

mod http_date {
    use super::*;
    tokenfleet_testkit::conformance_suite!(GenericHarness<HttpDate>);
}
