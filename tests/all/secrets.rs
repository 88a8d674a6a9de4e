//! The secret of a token never shows: not in logs, errors, `Debug` output
//! or snapshots, not even when the server puts it into a URL.

use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::json;
use tokenfleet::{ClientError, Fleet, Token, WaitPolicy};
use tokenfleet_testkit::AccountLimits;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    self, dated, github, id, rate_limit_body, with_limits, CANARY, HOUR, START_MS,
};

const OTHER_1: &str = "ghp_other0000000000000000000000000001";
const OTHER_2: &str = "ghp_other0000000000000000000000000002";
const REJECTED: &str = "ghp_rejected00000000000000000000000003";

const SECONDARY: &str = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#;
const BAD_CREDENTIALS: &str =
    r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}"#;
const HTML_502: &str = "<html><head><title>502 Bad Gateway</title></head><body>502</body></html>";

fn repository(id: u64) -> serde_json::Value {
    json!({
        "id": id,
        "name": format!("repo-{id}"),
        "full_name": format!("x/repo-{id}"),
        "owner": {"login": "x", "id": 7},
        "html_url": format!("https://github.example/x/repo-{id}"),
    })
}

/// Mounts a GitHub stand-in whose listing of `x` meets a secondary limit,
/// a 502 and a 401, and whose `Link` to page 2 carries the canary.
async fn mount_leaky_server(server: &MockServer, clock: &tokenfleet::ManualClock) {
    let reset_s = START_MS / 1000 + 3600;
    let limited = |template: ResponseTemplate| {
        dated(clock, with_limits(template, "core", 5000, 4000, reset_s))
    };

    let rejected = ResponseTemplate::new(401).set_body_raw(BAD_CREDENTIALS, "application/json");
    Mock::given(path("/rate_limit"))
        .and(header(
            "authorization",
            format!("Bearer {REJECTED}").as_str(),
        ))
        .respond_with(dated(clock, rejected))
        .with_priority(1)
        .mount(server)
        .await;
    let status = ResponseTemplate::new(200).set_body_json(rate_limit_body(5000, 5000, reset_s));
    Mock::given(path("/rate_limit"))
        .respond_with(dated(clock, status))
        .with_priority(5)
        .mount(server)
        .await;

    let secondary = ResponseTemplate::new(403)
        .set_body_raw(SECONDARY, "application/json")
        .insert_header("retry-after", "1");
    let bad_gateway = ResponseTemplate::new(502).set_body_raw(HTML_502, "text/html");
    let next = format!(
        "<{}/users/x/repos?per_page=100&page=2&access_token={CANARY}>; rel=\"next\"",
        server.uri()
    );
    let first_page = ResponseTemplate::new(200)
        .set_body_json(json!([repository(1)]))
        .insert_header("link", next.as_str());
    let page_one = [
        (secondary, Some(1)),
        (bad_gateway, Some(1)),
        (first_page, None),
    ];
    for (priority, (template, times)) in page_one.into_iter().enumerate() {
        let mock = Mock::given(method("GET"))
            .and(path("/users/x/repos"))
            .and(query_param_is_missing("page"))
            .respond_with(limited(template))
            .with_priority(priority as u8 + 1);
        let mock = match times {
            Some(times) => mock.up_to_n_times(times),
            None => mock,
        };
        mock.mount(server).await;
    }

    let revoked = ResponseTemplate::new(401).set_body_raw(BAD_CREDENTIALS, "application/json");
    Mock::given(method("GET"))
        .and(path("/users/x/repos"))
        .and(query_param("page", "2"))
        .respond_with(limited(revoked))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    let last_page = ResponseTemplate::new(200).set_body_json(json!([repository(2)]));
    Mock::given(method("GET"))
        .and(path("/users/x/repos"))
        .and(query_param("page", "2"))
        .respond_with(limited(last_page))
        .with_priority(2)
        .mount(server)
        .await;

    // A listing whose second page is missing, so that an error names the
    // token-bearing URL.
    let next = format!(
        "<{}/users/y/repos?page=2&access_token={CANARY}>; rel=\"next\"",
        server.uri()
    );
    let dangling = ResponseTemplate::new(200)
        .set_body_json(json!([repository(3)]))
        .insert_header("link", next.as_str());
    Mock::given(method("GET"))
        .and(path("/users/y/repos"))
        .and(query_param_is_missing("page"))
        .respond_with(limited(dangling))
        .mount(server)
        .await;
}

fn leaky_fleet(server: &MockServer, clock: &tokenfleet::ManualClock) -> Fleet {
    let tokens = vec![
        Token::new(CANARY).with_account("canary-owner"),
        Token::new(OTHER_1).with_account("other-1"),
        Token::new(OTHER_2).with_account("other-2"),
        Token::new(REJECTED),
    ];
    support::fleet(&server.uri(), tokens, clock, WaitPolicy::UpTo(HOUR))
}

/// Collects the `Debug` and `Display` text of everything a caller can print.
struct Shown(Vec<String>);

impl Shown {
    fn debug(&mut self, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{value:?}"));
    }

    fn error(&mut self, error: &ClientError) {
        self.0.push(format!("{error} / {error:?}"));
    }
}

#[test]
fn canary_never_shows() {
    let (shown, logs) = support::with_logs(async {
        let mut shown = Shown(Vec::new());
        let clock = support::clock();
        let server = MockServer::start().await;
        mount_leaky_server(&server, &clock).await;
        let fleet = leaky_fleet(&server, &clock);
        let client = github(&fleet);

        // Rotation after a secondary limit, a retried 502, a `Link` that
        // carries the canary, and a 401 on the page it leads to.
        let repositories = client.github().repositories("x").await.unwrap();
        let ids: Vec<u64> = repositories
            .iter()
            .map(|r| r.raw["id"].as_u64().expect("a numeric id"))
            .collect();
        assert_eq!(ids, vec![1, 2]);
        shown.debug(&repositories);

        let dangling = client.github().repositories("y").await.unwrap_err();
        assert_eq!(dangling.status().map(|s| s.as_u16()), Some(404));
        assert!(dangling.to_string().contains("REDACTED"), "{dangling}");
        shown.error(&dangling);

        let token_url = format!(
            "{}/users/x/repos?page=2&access_token={CANARY}",
            server.uri()
        );
        let response = client
            .send(
                Method::GET,
                token_url.parse().unwrap(),
                HeaderMap::new(),
                None,
            )
            .await
            .unwrap();
        shown.debug(&response);
        let decode = response.json::<Vec<u32>>().unwrap_err();
        shown.error(&decode);

        let elsewhere = MockServer::start().await;
        let foreign = format!("{}/?access_token={CANARY}", elsewhere.uri());
        let refused = client
            .send(
                Method::GET,
                foreign.parse().unwrap(),
                HeaderMap::new(),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(refused, ClientError::ForeignHost { .. }),
            "{refused}"
        );
        shown.error(&refused);
        assert!(elsewhere.received_requests().await.unwrap().is_empty());

        let received = server.received_requests().await.unwrap();
        assert!(received
            .iter()
            .all(|r| r.headers.contains_key("authorization")));
        let followed = received
            .iter()
            .filter(|r| r.url.query().is_some_and(|q| q.contains("access_token")))
            .count();
        assert!(followed > 0, "the token-bearing link was not followed");

        shown.debug(&fleet);
        shown.debug(fleet.pool("github").unwrap());
        shown.debug(&fleet.tokens("github").await);
        shown.debug(&Token::new(CANARY));
        for snapshot in fleet.tokens("github").await {
            shown.0.push(format!("{} {}", snapshot.id, snapshot.status));
        }
        shown.0.push(format!("{}", Token::new(CANARY)));

        pool_errors(&mut shown, &clock).await;
        shown
    });

    assert!(logs.contains(id(REJECTED).as_str()), "no warning: {logs}");
    assert!(logs.contains("status=502"), "no retry logged: {logs}");
    for text in shown.0.iter().chain([&logs]) {
        assert!(!text.contains(CANARY), "the canary shows in: {text}");
        assert!(
            !text.contains("CANARY"),
            "part of the canary shows in: {text}"
        );
    }
}

/// Adds the errors of a pool whose only token is the canary: exhausted,
/// then invalid.
async fn pool_errors(shown: &mut Shown, clock: &tokenfleet::ManualClock) {
    let sim = support::simulator(clock).await;
    sim.add_account("canary-owner", AccountLimits::default().core(1, HOUR));
    sim.add_token(CANARY, "canary-owner");
    let tokens = vec![Token::new(CANARY)
        .with_label("donated")
        .with_account("canary-owner")];
    let fleet = support::fleet(&sim.uri(), tokens, clock, WaitPolicy::Fail);
    let client = github(&fleet);

    client.get("/user").await.unwrap();
    let exhausted = client.get("/user").await.unwrap_err();
    assert!(support::is_exhausted(&exhausted), "{exhausted}");
    shown.error(&exhausted);

    sim.revoke_token(CANARY);
    clock.advance(HOUR + Duration::from_secs(1));
    let invalid = client.get("/user").await.unwrap_err();
    assert!(
        matches!(
            invalid,
            ClientError::Pool(tokenfleet::Error::AllInvalid { .. })
        ),
        "{invalid}"
    );
    shown.error(&invalid);
    shown.debug(&fleet);
}
