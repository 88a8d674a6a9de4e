//! One fleet over four providers: each pool serves its own forge, and no
//! token ever reaches another provider's host.

use std::sync::Arc;

use http::{HeaderMap, Method};
use tokenfleet::{ClientError, Fleet};
use tokenfleet_testkit::demo::ForgeDemo;

use crate::support::clock;

const KINDS: [&str; 4] = ["github", "gitlab", "bitbucket", "gitea"];

async fn demo_fleet() -> (ForgeDemo, Fleet) {
    let clock = clock();
    let demo = ForgeDemo::start_with_clock(&["pairs".to_owned()], Arc::new(clock.clone())).await;
    let mut text = String::new();
    for provider in demo.providers() {
        text.push_str("[[providers]]\n");
        text.push_str(&provider.provider_toml());
        let tokens: Vec<String> = provider
            .secrets
            .iter()
            .map(|s| format!("{{ value = \"{s}\" }}"))
            .collect();
        text.push_str(&format!("tokens = [{}]\n\n", tokens.join(", ")));
    }
    let base = Fleet::builder().clock(Arc::new(clock));
    let config = tokenfleet::config::parse(&text, "four.toml").expect("the config parses");
    let fleet = Fleet::from_config(config, base).expect("the fleet builds");
    (demo, fleet)
}

fn requests_seen(demo: &ForgeDemo, kind: &str, secret: &str) -> u64 {
    match kind {
        "github" => demo.github.simulator.requests_by_token(secret),
        "gitlab" => demo.gitlab.requests_by_token(secret),
        "bitbucket" => demo.bitbucket.requests_by_token(secret),
        _ => demo.gitea.requests_by_token(secret),
    }
}

fn total_requests(demo: &ForgeDemo, kind: &str) -> u64 {
    match kind {
        "github" => demo.github.simulator.total_requests(),
        "gitlab" => demo.gitlab.total_requests(),
        "bitbucket" => demo.bitbucket.total_requests(),
        _ => demo.gitea.total_requests(),
    }
}

#[tokio::test]
async fn each_pool_lists_its_own_forge() {
    let (demo, fleet) = demo_fleet().await;
    assert_eq!(fleet.providers(), KINDS);

    for kind in KINDS {
        let listed = fleet
            .client(kind)
            .unwrap()
            .repositories("pairs")
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(!listed.is_empty(), "{kind} listed nothing");
        assert!(listed.iter().all(|r| r.provider == kind), "{kind}");
        assert_eq!(
            fleet.tokens(kind).await.len(),
            demo.providers()
                .iter()
                .find(|p| p.kind == kind)
                .unwrap()
                .secrets
                .len()
        );
    }

    for (index, provider) in demo.providers().iter().enumerate() {
        for other in demo.providers() {
            if other.kind == provider.kind {
                continue;
            }
            for secret in &other.secrets {
                assert_eq!(
                    requests_seen(&demo, provider.kind, secret),
                    0,
                    "a {} token reached the {} simulator ({index})",
                    other.kind,
                    provider.kind
                );
            }
        }
    }
}

#[tokio::test]
async fn every_pair_refuses_the_other_host() {
    let (demo, fleet) = demo_fleet().await;

    for from in demo.providers() {
        let client = fleet.client(from.kind).unwrap();
        for to in demo.providers() {
            if to.kind == from.kind {
                continue;
            }
            let before = total_requests(&demo, to.kind);
            let url = format!("{}/user", to.base_url).parse().unwrap();
            let error = client
                .send(Method::GET, url, HeaderMap::new(), None)
                .await
                .expect_err("a request to another provider's host is refused");
            assert!(
                matches!(error, ClientError::ForeignHost { .. }),
                "{} -> {}: {error}",
                from.kind,
                to.kind
            );
            assert_eq!(
                total_requests(&demo, to.kind),
                before,
                "{} -> {}",
                from.kind,
                to.kind
            );
        }
    }
}
