//! The `tokenfleet` binary, run as a user runs it, against GitHub
//! simulators on 127.0.0.1.
//!
//! Every run gets a clean environment for tokens and proxies, so no test
//! can reach a host other than the simulator it starts.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tokenfleet_testkit::{AccountLimits, GithubSimulator};

/// A secret that must never appear in the output or the logs.
const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

const ALICE_TOKEN: &str = "ghp_cliAlice00000000000000000000000000001";
const BOB_TOKEN: &str = "ghp_cliBob0000000000000000000000000000002";
const UNKNOWN_TOKEN: &str = "ghp_cliUnknown000000000000000000000000003";

const HOUR: Duration = Duration::from_secs(3600);

/// Variables that would send the binary to GitHub or through a proxy.
const CLEARED: [&str; 9] = [
    "GITHUB_TOKEN",
    "GITHUB_TOKENS",
    "RUST_LOG",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Builds a command for the binary with the token and proxy variables removed.
fn tokenfleet(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenfleet"));
    command.args(args);
    for var in CLEARED {
        command.env_remove(var);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost");
    command.kill_on_drop(true);
    command
}

async fn run(mut command: tokio::process::Command) -> Output {
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("tokenfleet did not finish within 120 s")
        .expect("tokenfleet could not be started");
    eprintln!(
        "stderr of tokenfleet:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line:?}"))
        })
        .collect()
}

/// Writes a config with one GitHub provider at `base_url` and these
/// `tokens` entries, in a directory that lives as long as the result.
fn write_config(base_url: &str, tokens: &[&str], extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[providers]]\ntype = \"github\"\nbase_url = \"{base_url}\"\ntokens = [\n{}]\n{extra}",
        tokens
            .iter()
            .map(|entry| format!("  {entry},\n"))
            .collect::<String>()
    );
    std::fs::write(config_path(&dir), text).unwrap();
    dir
}

fn config_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("tokenfleet.toml")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("the temporary path is UTF-8")
}

/// Starts a simulator with two accounts of `budget` core requests per
/// hour, alice and bob, each with one token.
async fn simulator(budget: u64) -> GithubSimulator {
    let sim = GithubSimulator::start().await;
    sim.add_account("alice", AccountLimits::default().core(budget, HOUR));
    sim.add_account("bob", AccountLimits::default().core(budget, HOUR));
    sim.add_token(ALICE_TOKEN, "alice");
    sim.add_token(BOB_TOKEN, "bob");
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repos_json_lists_every_repository() {
    // 250 and 130 repositories take 3 + 2 pages of 100. Each token spends
    // one of its 4 requests on `GET /user` to learn its account, so one
    // token cannot list them alone and the pool has to rotate.
    let sim = simulator(4).await;
    sim.add_repositories("big-org", 250);
    sim.add_repositories("mid-org", 130);
    let dir = write_config(
        &sim.uri(),
        &[
            r#"{ env = "CLI_TEST_ALICE", label = "alice" }"#,
            r#"{ env = "CLI_TEST_BOB", label = "bob" }"#,
        ],
        "",
    );

    let mut command = tokenfleet(&[
        "repos",
        "--config",
        path_arg(&config_path(&dir)),
        "--format",
        "json",
        "big-org",
        "mid-org",
    ]);
    command.env("CLI_TEST_ALICE", ALICE_TOKEN);
    command.env("CLI_TEST_BOB", BOB_TOKEN);
    let output = run(command).await;

    assert!(output.status.success(), "{:?}", output.status);
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 380);
    for owner in ["big-org", "mid-org"] {
        let listed: Vec<&str> = lines
            .iter()
            .filter(|line| line["owner"] == owner)
            .map(|line| line["full_name"].as_str().expect("full_name is a string"))
            .collect();
        let expected: Vec<String> = sim
            .repository_names(owner)
            .iter()
            .map(|name| format!("{owner}/{name}"))
            .collect();
        assert_eq!(listed, expected, "{owner}");
    }
    let unique: HashSet<&str> = lines
        .iter()
        .filter_map(|line| line["full_name"].as_str())
        .collect();
    assert_eq!(unique.len(), 380);
    assert!(sim.requests_by_token(ALICE_TOKEN) > 0);
    assert!(sim.requests_by_token(BOB_TOKEN) > 0);
    assert_eq!(sim.over_limit_responses(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_lists_tokens() {
    let sim = simulator(5000).await;
    let dir = write_config(
        &sim.uri(),
        &[
            r#"{ env = "CLI_TEST_ALICE", label = "alice", account = "alice-account" }"#,
            r#"{ env = "CLI_TEST_BOB", label = "bob" }"#,
            r#"{ env = "CLI_TEST_UNKNOWN", label = "revoked" }"#,
        ],
        "",
    );

    let mut command = tokenfleet(&[
        "status",
        "--config",
        path_arg(&config_path(&dir)),
        "--format",
        "json",
    ]);
    command.env("CLI_TEST_ALICE", ALICE_TOKEN);
    command.env("CLI_TEST_BOB", BOB_TOKEN);
    command.env("CLI_TEST_UNKNOWN", UNKNOWN_TOKEN);
    let output = run(command).await;

    assert!(output.status.success(), "{:?}", output.status);
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let by_label = |label: &str| {
        lines
            .iter()
            .find(|line| {
                line["token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{label} (tok-")))
            })
            .unwrap_or_else(|| panic!("no token {label:?} in {lines:?}"))
    };

    let alice = by_label("alice");
    assert_eq!(alice["provider"], "github");
    assert_eq!(alice["account"], "alice-account");
    assert_eq!(alice["status"], "available");
    assert_eq!(alice["available"], true);
    assert_eq!(alice["buckets"]["core"]["limit"], 5000);
    assert_eq!(alice["buckets"]["core"]["remaining"], 5000);
    assert!(alice["buckets"]["core"]["reset"].is_u64(), "{alice}");

    let bob = by_label("bob");
    assert_eq!(bob["status"], "available");
    assert_eq!(bob["buckets"]["core"]["limit"], 5000);

    let revoked = by_label("revoked");
    assert_eq!(revoked["status"], "invalid");
    assert_eq!(revoked["available"], false);

    // Reading limits spends no core budget of a token with a declared account.
    assert_eq!(sim.remaining("alice", "core"), 5000);
    assert_eq!(sim.over_limit_responses(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_names_reset_time() {
    // Each token spends one of its 2 requests on `GET /user`, which leaves
    // 2 requests for the 3 pages of 250 repositories.
    let sim = simulator(2).await;
    sim.add_repositories("big-org", 250);
    let dir = write_config(
        &sim.uri(),
        &[
            r#"{ env = "CLI_TEST_ALICE" }"#,
            r#"{ env = "CLI_TEST_BOB" }"#,
        ],
        "",
    );

    let mut command = tokenfleet(&[
        "repos",
        "--config",
        path_arg(&config_path(&dir)),
        "--format",
        "json",
        "big-org",
    ]);
    command.env("CLI_TEST_ALICE", ALICE_TOKEN);
    command.env("CLI_TEST_BOB", BOB_TOKEN);
    let output = run(command).await;

    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(
        errors.contains("listing repositories of big-org failed"),
        "{errors}"
    );
    assert!(errors.contains("budget returns at"), "{errors}");
    assert_eq!(sim.over_limit_responses(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_fail_both_commands() {
    let sim = simulator(5000).await;
    sim.add_repositories("small-org", 8);
    let dir = write_config(
        &sim.uri(),
        &[
            r#"{ env = "CLI_TEST_UNKNOWN" }"#,
            r#"{ value = "ghp_cliRevoked00000000000000000000000004" }"#,
        ],
        "",
    );
    let config = config_path(&dir);

    let mut repos = tokenfleet(&["repos", "--config", path_arg(&config), "small-org"]);
    repos.env("CLI_TEST_UNKNOWN", UNKNOWN_TOKEN);
    let output = run(repos).await;
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(
        errors.contains("every github token was rejected as invalid"),
        "{errors}"
    );

    let mut status = tokenfleet(&["status", "--config", path_arg(&config)]);
    status.env("CLI_TEST_UNKNOWN", UNKNOWN_TOKEN);
    let output = run(status).await;
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(
        errors.contains("every github token was rejected as invalid"),
        "{errors}"
    );
    assert_eq!(sim.successful_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_runs_repos_and_status() {
    let output = run(tokenfleet(&["status", "--simulate", "--format", "json"])).await;
    assert!(output.status.success(), "{:?}", output.status);
    assert!(stderr(&output).contains("running on simulators on 127.0.0.1"));
    assert!(stderr(&output).contains("gitlab at http://127.0.0.1:"));
    let lines = json_lines(&output);
    // Four GitHub tokens and two of each other forge.
    assert_eq!(lines.len(), 10, "{lines:?}");
    let github = lines.iter().filter(|l| l["provider"] == "github").count();
    assert_eq!(github, 4, "{lines:?}");
    // One GitHub and one Gitea demo token are unknown to their simulators.
    let invalid = lines.iter().filter(|l| l["status"] == "invalid").count();
    assert_eq!(invalid, 2, "{lines:?}");

    // 8 + 130 repositories take 3 requests, within the demo's budget of
    // 10 per 30 s window, so this run need not wait for a reset.
    let output = run(tokenfleet(&[
        "repos",
        "--simulate",
        "--format",
        "json",
        "octocat",
        "torvalds",
    ]))
    .await;
    assert!(output.status.success(), "{:?}", output.status);
    let lines = json_lines(&output);
    let count = |owner: &str| lines.iter().filter(|l| l["owner"] == owner).count();
    assert_eq!(count("octocat"), 8);
    assert_eq!(count("torvalds"), 130);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tokens_print_hint() {
    // Any attempt to reach api.github.com would connect to this listener,
    // set as the proxy, so the test detects it without leaving the machine.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", trap.local_addr().unwrap());

    for (label, token_env) in [("unset", None), ("blank", Some(" , "))] {
        for args in [&["status"][..], &["repos", "octocat"][..]] {
            let mut command = tokenfleet(args);
            command.env_remove("NO_PROXY");
            command.env("HTTPS_PROXY", &proxy);
            command.env("HTTP_PROXY", &proxy);
            if let Some(value) = token_env {
                command.env("GITHUB_TOKEN", value);
            }
            let output = run(command).await;

            assert_eq!(output.status.code(), Some(1), "{label} {args:?}");
            let errors = stderr(&output);
            assert!(errors.contains("no token configured"), "{errors}");
            assert!(errors.contains("GITHUB_TOKENS"), "{errors}");
            assert!(errors.contains("--config FILE"), "{errors}");
            assert!(errors.contains("--simulate"), "{errors}");
            assert!(stdout(&output).is_empty(), "{label} {args:?}");
        }
    }

    let connection = trap.accept();
    assert!(
        matches!(&connection, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "tokenfleet opened a connection: {connection:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_format_prints_header_and_count() {
    let sim = simulator(5000).await;
    sim.add_repositories("small-org", 8);
    let dir = write_config(&sim.uri(), &[r#"{ env = "CLI_TEST_ALICE" }"#], "");
    let config = config_path(&dir);

    let mut repos = tokenfleet(&["repos", "--config", path_arg(&config), "small-org"]);
    repos.env("CLI_TEST_ALICE", ALICE_TOKEN);
    let output = run(repos).await;
    assert!(output.status.success(), "{:?}", output.status);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "{text}");
    assert!(lines[0].starts_with("REPOSITORY"), "{text}");
    assert!(lines[0].contains("LANGUAGE"), "{text}");
    assert!(
        lines[1..9].iter().all(|l| l.starts_with("small-org/")),
        "{text}"
    );
    assert_eq!(lines[9], "8 repositories");

    let mut status = tokenfleet(&["status", "--config", path_arg(&config)]);
    status.env("CLI_TEST_ALICE", ALICE_TOKEN);
    let output = run(status).await;
    assert!(output.status.success(), "{:?}", output.status);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("PROVIDER"), "{text}");
    assert!(lines[1].contains("/5000"), "{text}");
    assert!(lines[1].ends_with("available"), "{text}");
    assert_eq!(lines[2], "1 tokens, 1 available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let output = run(tokenfleet(&["status", "--config", path_arg(&missing)])).await;
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains(path_arg(&missing)), "{errors}");
    assert!(errors.contains("cannot read the config file"), "{errors}");

    let invalid = dir.path().join("invalid.toml");
    std::fs::write(
        &invalid,
        "[[providers]]\ntype = \"github\"\nbase_uri = \"http://127.0.0.1:9/\"\n",
    )
    .unwrap();
    let output = run(tokenfleet(&["repos", "--config", path_arg(&invalid), "x"])).await;
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    let place = format!("{}:3: providers[0].base_uri: ", path_arg(&invalid));
    assert!(errors.contains(&place), "{errors}");
    assert!(errors.contains("valid keys are"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_without_providers_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "[wait]\nmax = \"1m\"\n").unwrap();

    for args in [&["status"][..], &["repos", "octocat"][..]] {
        let mut command = tokenfleet(args);
        command.args(["--config", path_arg(&config)]);
        let output = run(command).await;

        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let errors = stderr(&output);
        assert!(errors.contains("no `[[providers]]` table"), "{errors}");
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_provider_lists_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("named.toml");
    std::fs::write(
        &config,
        "[[providers]]\ntype = \"github\"\nname = \"ghe\"\nbase_url = \"http://127.0.0.1:9/\"\ntokens = [{ value = \"ghp_cliNamed0000000000000000000000000005\" }]\n",
    )
    .unwrap();

    let output = run(tokenfleet(&[
        "status",
        "--config",
        path_arg(&config),
        "--provider",
        "gitlab",
    ]))
    .await;

    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains("no provider named \"gitlab\""), "{errors}");
    assert!(errors.contains("\"ghe\""), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_provider_is_the_default() {
    let sim = simulator(5000).await;
    sim.add_repositories("small-org", 8);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("named.toml");
    let text = format!(
        "[[providers]]\ntype = \"github\"\nname = \"ghe\"\nbase_url = \"{}\"\ntokens = [{{ env = \"CLI_TEST_ALICE\" }}]\n",
        sim.uri()
    );
    std::fs::write(&config, text).unwrap();

    for args in [
        &["status", "--format", "json"][..],
        &["repos", "--format", "json", "small-org"][..],
    ] {
        let mut command = tokenfleet(args);
        command.args(["--config", path_arg(&config)]);
        command.env("CLI_TEST_ALICE", ALICE_TOKEN);
        let output = run(command).await;
        assert!(output.status.success(), "{args:?}: {:?}", output.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_fails_status() {
    // Nothing listens on a port that was just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = write_config(
        &format!("http://127.0.0.1:{port}/"),
        &[r#"{ env = "CLI_TEST_ALICE" }"#],
        "",
    );

    let mut command = tokenfleet(&["status", "--config", path_arg(&config_path(&dir))]);
    command.env("CLI_TEST_ALICE", ALICE_TOKEN);
    let output = run(command).await;

    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(
        errors.contains("no github token's limits could be read"),
        "{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_log_hides_secret() {
    let sim = simulator(5000).await;
    sim.add_token(CANARY, "alice");
    sim.add_repositories("small-org", 150);
    let dir = write_config(
        &sim.uri(),
        &[
            &format!(r#"{{ value = "{CANARY}", label = "literal" }}"#),
            r#"{ env = "CLI_TEST_BOB" }"#,
        ],
        "[wait]\nmax = \"1m\"\n",
    );
    let config = config_path(&dir);

    for args in [
        &["repos", "--format", "json", "small-org"][..],
        &["status", "--format", "json"][..],
        &["status"][..],
    ] {
        let mut command = tokenfleet(args);
        command.args(["--config", path_arg(&config)]);
        command.env("CLI_TEST_BOB", BOB_TOKEN);
        command.env("RUST_LOG", "trace");
        let output = run(command).await;

        assert!(output.status.success(), "{args:?}: {:?}", output.status);
        let (out, errors) = (stdout(&output), stderr(&output));
        assert!(!out.contains(CANARY), "{args:?} stdout leaks the token");
        assert!(!errors.contains(CANARY), "{args:?} stderr leaks the token");
        assert!(
            !errors.contains(BOB_TOKEN),
            "{args:?} stderr leaks the token"
        );
        assert!(
            errors.contains("a token is written in the config file"),
            "{args:?}"
        );
        assert!(errors.contains("TRACE"), "{args:?}: trace logging is off");
    }
    assert!(sim.requests_by_token(CANARY) > 0);
}

#[tokio::test]
async fn plugins_lists_types_with_descriptions() {
    let output = run(tokenfleet(&["plugins", "--format", "json"])).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    let github = lines
        .iter()
        .find(|line| line["type"] == "github")
        .expect("the GitHub provider is listed");
    assert_eq!(github["kind"], "provider");
    assert!(github["description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    let rate_aware = lines
        .iter()
        .find(|line| line["type"] == "rate_aware")
        .expect("the default strategy is listed");
    assert_eq!(rate_aware["kind"], "strategy");

    let table = run(tokenfleet(&["plugins"])).await;
    let text = stdout(&table);
    assert!(text.starts_with("KIND"), "{text}");
    assert!(text.contains("rate_aware"), "{text}");
}

/// Writes a config naming all four providers of `demo`, each token read
/// from a variable `DEMO_<PROVIDER>_<N>`, and returns it with those variables.
fn four_provider_config(
    demo: &tokenfleet_testkit::demo::ForgeDemo,
) -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let mut vars = Vec::new();
    for provider in demo.providers() {
        text.push_str("[[providers]]\n");
        text.push_str(&provider.provider_toml());
        text.push_str("tokens = [\n");
        for (n, secret) in provider.secrets.iter().enumerate() {
            let var = format!("DEMO_{}_{n}", provider.kind.to_uppercase());
            text.push_str(&format!("  {{ env = \"{var}\" }},\n"));
            vars.push((var, secret.clone()));
        }
        text.push_str("]\n\n");
    }
    std::fs::write(config_path(&dir), text).unwrap();
    (dir, vars)
}

#[tokio::test]
async fn four_providers_list_and_show_status() {
    let demo = tokenfleet_testkit::demo::ForgeDemo::start(&["multi-owner".to_owned()]).await;
    let (dir, vars) = four_provider_config(&demo);
    let config = config_path(&dir);
    let expected = [
        (
            "github",
            demo.github.simulator.repository_names("multi-owner").len(),
        ),
        ("gitlab", demo.gitlab.repository_names("multi-owner").len()),
        (
            "bitbucket",
            demo.bitbucket.repository_names("multi-owner").len(),
        ),
        ("gitea", demo.gitea.repository_names("multi-owner").len()),
    ];

    for (provider, count) in expected {
        assert!(count > 0, "{provider} has no demo repositories");
        let mut command = tokenfleet(&[
            "repos",
            "--config",
            path_arg(&config),
            "--provider",
            provider,
            "--format",
            "json",
            "multi-owner",
        ]);
        command.envs(vars.iter().cloned());
        let output = run(command).await;
        assert!(output.status.success(), "{provider}: {}", stderr(&output));
        let lines = json_lines(&output);
        assert_eq!(lines.len(), count, "{provider} listed a different number");
        let names: HashSet<&str> = lines
            .iter()
            .map(|l| l["full_name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), count, "{provider} listed a repository twice");
        assert!(
            lines.iter().all(|l| l["provider"] == provider),
            "{provider}"
        );
    }

    let mut command = tokenfleet(&["status", "--config", path_arg(&config), "--format", "json"]);
    command.envs(vars.iter().cloned());
    let output = run(command).await;
    let lines = json_lines(&output);
    for provider in demo.providers() {
        let rows = lines
            .iter()
            .filter(|l| l["provider"] == provider.kind)
            .count();
        assert_eq!(
            rows,
            provider.secrets.len(),
            "{} tokens in status",
            provider.kind
        );
    }
    // The demo's GitHub and Gitea pools each hold one token the simulator
    // rejects; the others remain, so status succeeds.
    assert!(output.status.success(), "{}", stderr(&output));
    let invalid = lines.iter().filter(|l| l["status"] == "invalid").count();
    assert_eq!(invalid, 2);

    // No secret of one provider reached another provider's simulator.
    let secrets_of = |kind: &str| {
        demo.providers()
            .iter()
            .find(|p| p.kind == kind)
            .unwrap()
            .secrets
            .clone()
    };
    for kind in ["github", "gitlab", "bitbucket", "gitea"] {
        for other in ["github", "gitlab", "bitbucket", "gitea"] {
            if other == kind {
                continue;
            }
            for secret in secrets_of(other) {
                let seen = match kind {
                    "github" => demo.github.simulator.requests_by_token(&secret),
                    "gitlab" => demo.gitlab.requests_by_token(&secret),
                    "bitbucket" => demo.bitbucket.requests_by_token(&secret),
                    _ => demo.gitea.requests_by_token(&secret),
                };
                assert_eq!(seen, 0, "a {other} token reached the {kind} simulator");
            }
        }
    }
    let combined = format!("{}{}", stdout(&output), stderr(&output));
    for provider in demo.providers() {
        for secret in &provider.secrets {
            assert!(!combined.contains(secret.as_str()), "a secret was printed");
        }
    }
}
