//! GitHub App installation tokens: fetched with a signed JWT, charged to
//! the installation, and refreshed before they expire mid-run.

use std::sync::Arc;
use std::time::Duration;

use tokenfleet::github::{Github, GithubApp};
use tokenfleet::{Clock, Fleet, Token, TokenStatus, WaitPolicy};
use tokenfleet_testkit::github::{TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY};
use tokenfleet_testkit::AccountLimits;

use crate::support::{clock, simulator};

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;

/// An RSA key for tests only, which the simulator does not know for the app.
const OTHER_KEY: &str = include_str!("other_app_key.pem");

fn app_fleet(base: &str, clock: &tokenfleet::ManualClock, key: &[u8]) -> Fleet {
    let github = Github::with_base_url(base.parse().unwrap());
    let app = GithubApp::new(github.clone(), APP_ID.to_string(), INSTALLATION, key)
        .expect("the test key parses");
    let pool_token = Token::sourced("app-bot");
    Fleet::builder()
        .provider(Arc::new(github), Vec::new())
        .sourced_token("github", pool_token, Arc::new(app))
        .clock(Arc::new(clock.clone()))
        .wait(WaitPolicy::Fail)
        .seed(7)
        .build()
        .expect("the fleet builds")
}

#[tokio::test]
async fn installation_token_refreshes_during_long_run() {
    let clock = clock();
    let sim = simulator(&clock).await;
    sim.add_app(APP_ID, TEST_APP_PUBLIC_KEY);
    let login = sim.add_installation(APP_ID, INSTALLATION, AccountLimits::default());
    sim.add_repositories("octo-org", 30);
    let fleet = app_fleet(&sim.uri(), &clock, TEST_APP_PRIVATE_KEY.as_bytes());
    let client = fleet.client("github").unwrap();

    // 200 listings 30 s apart span 100 minutes, past the first token's
    // hour, so the pool must fetch a new token without failing a request.
    for _ in 0..200 {
        let repositories = client
            .repositories("octo-org")
            .await
            .expect("every listing succeeds");
        assert_eq!(repositories.len(), 30);
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(30));
    }

    assert_eq!(
        sim.unauthorized_responses(),
        0,
        "a request used an expired token"
    );
    assert!(sim.installation_tokens_issued() >= 2);
    assert_eq!(sim.successful_requests(), 200);
    // The installation's hour-long window reset once during the run.
    assert!(sim.remaining(&login, "core") > 4800);
    let tokens = fleet.tokens("github").await;
    assert_eq!(tokens[0].id.as_str(), "app-bot");
    assert_eq!(tokens[0].account, format!("installation:{INSTALLATION}"));
    assert!(tokens[0].status.is_available(), "{}", tokens[0].status);
}

#[tokio::test]
async fn wrong_key_names_app_and_spares_other_tokens() {
    let clock = clock();
    let sim = simulator(&clock).await;
    sim.add_app(APP_ID, TEST_APP_PUBLIC_KEY);
    sim.add_installation(APP_ID, INSTALLATION, AccountLimits::default());
    sim.add_account("alice", AccountLimits::default());
    sim.add_token("ghp_alice00000000000000000000000000000", "alice");

    // A key of the right form that GitHub does not know for this app.
    let other_key = OTHER_KEY.as_bytes();
    let github = Github::with_base_url(sim.uri().parse().unwrap());
    let app = GithubApp::new(github.clone(), APP_ID.to_string(), INSTALLATION, other_key)
        .expect("the key parses");
    let fleet = Fleet::builder()
        .provider(
            Arc::new(github),
            vec![Token::new("ghp_alice00000000000000000000000000000").with_account("alice")],
        )
        .sourced_token("github", Token::sourced("app-bot"), Arc::new(app))
        .clock(Arc::new(clock.clone()))
        .seed(7)
        .build()
        .unwrap();
    let client = fleet.client("github").unwrap();

    for _ in 0..3 {
        let response = client.get("/user").await.expect("alice's token serves");
        assert_eq!(response.status(), 200);
        tokio::task::yield_now().await;
    }

    let app_bot = fleet
        .tokens("github")
        .await
        .into_iter()
        .find(|t| t.id.as_str() == "app-bot")
        .unwrap();
    let TokenStatus::Unavailable { reason, .. } = &app_bot.status else {
        panic!("expected unavailable, got {}", app_bot.status);
    };
    assert!(
        reason.contains("GitHub App 4242, installation 77"),
        "{reason}"
    );
    assert!(reason.contains("check `app_id`"), "{reason}");
    assert!(!reason.contains("PRIVATE KEY"), "{reason}");
}

#[test]
fn malformed_key_is_rejected_without_echo() {
    let github = Github::new();
    let error = GithubApp::new(
        github,
        "4242",
        INSTALLATION,
        b"-----BEGIN NOTHING-----\nabc",
    )
    .expect_err("not a key");
    let text = error.to_string();
    assert!(text.contains("GitHub App 4242, installation 77"), "{text}");
    assert!(text.contains("not an RSA private key"), "{text}");
    assert!(!text.contains("abc"), "{text}");
}

/// Writes the test key into a fresh directory with `mode` and returns both.
fn key_file(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.pem");
    std::fs::write(&path, TEST_APP_PRIVATE_KEY).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    (dir, path)
}

#[tokio::test]
async fn app_token_from_config_serves() {
    let clock = clock();
    let sim = simulator(&clock).await;
    sim.add_app(APP_ID, TEST_APP_PUBLIC_KEY);
    sim.add_installation(APP_ID, INSTALLATION, AccountLimits::default());
    let (_dir, key) = key_file(0o600);
    let text = format!(
        "[[providers]]\ntype = \"github\"\nbase_url = \"{}\"\ntokens = [\n  \
         {{ github_app = {{ app_id = {APP_ID}, installation_id = {INSTALLATION}, \
         private_key_file = \"{}\" }}, label = \"app-bot\" }},\n]\n",
        sim.uri(),
        key.display()
    );
    let config = tokenfleet::config::parse(&text, "app.toml").expect("the config parses");
    let base = Fleet::builder().clock(Arc::new(clock.clone()));
    let fleet = Fleet::from_config(config, base).expect("the fleet builds");

    let response = fleet.client("github").unwrap().get("/user").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sim.installation_tokens_issued(), 1);
    let tokens = fleet.tokens("github").await;
    assert_eq!(tokens[0].id.as_str(), "app-bot");
    assert_eq!(tokens[0].account, format!("installation:{INSTALLATION}"));
}

#[tokio::test]
async fn app_config_errors_name_the_fix() {
    let (_dir, shared_key) = key_file(0o644);
    let key = shared_key.display().to_string();
    let cases = [
        (
            format!(
                "[[providers]]\ntype = \"github\"\ntokens = [{{ github_app = {{ app_id = 1, \
                 installation_id = 2, private_key_file = \"{key}\" }} }}]\n"
            ),
            "chmod 600",
        ),
        (
            "[[providers]]\ntype = \"github\"\ntokens = [{ github_app = { app_id = 1, \
             private_key_file = \"k.pem\" } }]\n"
                .to_owned(),
            "missing `installation_id`",
        ),
        (
            "[[providers]]\ntype = \"github\"\ntokens = [{ github_app = { app_id = 1, \
             installation_id = 2, private_key_file = \"k.pem\", secret = \"x\" } }]\n"
                .to_owned(),
            "secret",
        ),
        (
            "[[providers]]\ntype = \"gitlab\"\ntokens = [{ github_app = { app_id = 1, \
             installation_id = 2, private_key_file = \"k.pem\" } }]\n"
                .to_owned(),
            "belongs to a `type = \"github\"` provider",
        ),
    ];
    for (text, expected) in cases {
        if text.contains("gitlab") && !cfg!(feature = "gitlab") {
            continue;
        }
        let error = match tokenfleet::config::parse(&text, "app.toml") {
            Err(error) => error,
            Ok(config) => match Fleet::from_config(config, Fleet::builder()) {
                Err(tokenfleet::FleetError::Config(error)) => error,
                other => panic!("expected a config error for {text}, got {other:?}"),
            },
        };
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("github_app"), "{message}");
        assert!(!message.contains("PRIVATE KEY"), "{message}");
    }
}

#[tokio::test]
async fn app_jwt_survives_fast_local_clock() {
    let server_clock = clock();
    let sim = simulator(&server_clock).await;
    sim.add_app(APP_ID, TEST_APP_PUBLIC_KEY);
    sim.add_installation(APP_ID, INSTALLATION, AccountLimits::default());
    // The local clock runs five minutes ahead of GitHub's, past the JWT's slack.
    let local_clock = tokenfleet::ManualClock::new(server_clock.now_ms() + 300_000);
    let fleet = app_fleet(&sim.uri(), &local_clock, TEST_APP_PRIVATE_KEY.as_bytes());

    for _ in 0..3 {
        let response = fleet.client("github").unwrap().get("/user").await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sim.installation_tokens_issued(), 1);
}
