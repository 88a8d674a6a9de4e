//! Redirects: a token never follows one to another host.

use tokenfleet::{Token, WaitPolicy};
use tokenfleet_testkit::AccountLimits;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, github, id};

#[tokio::test]
async fn foreign_redirect_drops_authorization() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("ghp_alice", "alice");
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/archive.tar.gz"))
        .respond_with(ResponseTemplate::new(200).set_body_string("archive"))
        .mount(&elsewhere)
        .await;
    let target = format!("{}/archive.tar.gz", elsewhere.uri());
    sim.add_redirect("/repos/alice/project/tarball", &target);
    let tokens = vec![Token::new("ghp_alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let response = github(&fleet)
        .get("/repos/alice/project/tarball")
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), b"archive");
    assert_eq!(response.token(), None);
    assert_eq!(response.url().as_str(), target);
    let received = elsewhere.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    for request in &received {
        assert!(
            !request.headers.contains_key("authorization"),
            "the token went to another host"
        );
    }
}

#[tokio::test]
async fn same_host_redirect_keeps_token() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("ghp_alice", "alice");
    sim.add_repositories("alice", 3);
    sim.add_redirect("/users/alice-old/repos", "/users/alice/repos");
    let tokens = vec![Token::new("ghp_alice")];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let repositories = github(&fleet)
        .github()
        .repositories("alice-old")
        .await
        .unwrap();

    assert_eq!(repositories.len(), 3);
    assert_eq!(repositories[0].owner, "alice");
    let response = github(&fleet).get("/users/alice-old/repos").await.unwrap();
    assert_eq!(response.token(), Some(&id("ghp_alice")));
    assert_eq!(response.url().path(), "/users/alice/repos");
    assert_eq!(sim.unauthorized_responses(), 0);
}

#[test]
fn foreign_redirect_drops_token_in_query() {
    let ((response, received), logs) = support::with_logs(async {
        let clock = support::clock();
        let sim = support::simulator(&clock).await;
        sim.add_account("alice", AccountLimits::default());
        sim.add_token(support::CANARY, "alice");
        let elsewhere = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/steal"))
            .respond_with(ResponseTemplate::new(200).set_body_string("stolen?"))
            .mount(&elsewhere)
            .await;
        // The provider echoes the token into a redirect to another host.
        let target = format!(
            "{}/steal?page=2&api_key={}",
            elsewhere.uri(),
            support::CANARY
        );
        sim.add_redirect("/repos/alice/project/tarball", &target);
        let tokens = vec![Token::new(support::CANARY)];
        let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);
        let response = github(&fleet).get("/repos/alice/project/tarball").await;
        (response, elsewhere.received_requests().await.unwrap())
    });
    let response = response.unwrap();

    assert_eq!(response.status(), 200);
    assert!(!response.url().as_str().contains(support::CANARY));
    assert_eq!(response.url().query(), Some("page=2"));
    assert_eq!(received.len(), 1);
    assert!(!received[0].url.as_str().contains(support::CANARY));
    assert!(!logs.contains(support::CANARY), "{logs}");
}

#[tokio::test]
async fn foreign_redirect_with_token_in_path_is_refused() {
    let clock = support::clock();
    let sim = support::simulator(&clock).await;
    sim.add_account("alice", AccountLimits::default());
    sim.add_token(support::CANARY, "alice");
    let elsewhere = MockServer::start().await;
    let target = format!("{}/keys/{}", elsewhere.uri(), support::CANARY);
    sim.add_redirect("/repos/alice/project/tarball", &target);
    let tokens = vec![Token::new(support::CANARY)];
    let fleet = support::fleet(&sim.uri(), tokens, &clock, WaitPolicy::Fail);

    let error = github(&fleet)
        .get("/repos/alice/project/tarball")
        .await
        .expect_err("the redirect is not followed");

    assert!(
        matches!(error, tokenfleet::ClientError::ForeignHost { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains(support::CANARY), "{error}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}
