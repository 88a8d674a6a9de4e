//! The TOML configuration: valid files build the expected fleet, and every
//! invalid one is reported with its file, line, key and a valid alternative,
//! without ever showing a token's secret.
//!
//! Tests that set environment variables use names no other test uses,
//! because the tests of this binary run in parallel threads. Every test
//! needs a provider plugin, so the module needs the `github` feature.

#![cfg(feature = "github")]

use tokenfleet::config::{self, ConfigError, TokenSource};
use tokenfleet::{Fleet, FleetError, TokenPool, TokenSnapshot, WaitPolicy};

/// A secret that must never appear in an error, a `Debug` output or a log.
const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

/// Returns the strategy `type` names this build enables through features.
fn enabled_strategies() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "priority") {
        names.push("priority");
    }
    if cfg!(feature = "rate-aware") {
        names.push("rate_aware");
    }
    if cfg!(feature = "round-robin") {
        names.push("round_robin");
    }
    names
}

/// Returns the provider `type` names this build enables through features.
fn enabled_providers() -> Vec<&'static str> {
    let mut names = vec!["github"];
    if cfg!(feature = "gitlab") {
        names.push("gitlab");
    }
    if cfg!(feature = "bitbucket") {
        names.push("bitbucket");
    }
    if cfg!(feature = "gitea") {
        names.push("gitea");
    }
    names
}

fn parse_error(text: &str) -> ConfigError {
    match config::parse(text, "test.toml") {
        Ok(parsed) => panic!("expected an error, parsed {parsed:?}"),
        Err(error) => error,
    }
}

fn fleet_error(text: &str) -> ConfigError {
    match Fleet::from_toml_str(text, "test.toml") {
        Ok(fleet) => panic!("expected an error, built {fleet:?}"),
        Err(FleetError::Config(error)) => error,
        Err(other) => panic!("expected a config error, got {other:?}"),
    }
}

/// Checks the place of an error, its hints, and that it hides the canary.
fn assert_error(error: &ConfigError, line: usize, key: &str, hints: &[&str]) {
    let display = error.to_string();
    assert_eq!(error.file, "test.toml", "{display}");
    assert_eq!(error.line, Some(line), "{display}");
    assert_eq!(error.key, key, "{display}");
    assert!(
        display.starts_with(&format!("test.toml:{line}: {key}: ")),
        "{display}"
    );
    for hint in hints {
        assert!(error.message.contains(hint), "{hint:?} missing: {display}");
    }
    assert!(!error.message.contains('\n'), "{display}");
    assert!(!display.contains(CANARY), "{display}");
    assert!(!format!("{error:?}").contains(CANARY), "{error:?}");
}

#[cfg(feature = "rate-aware")]
fn snapshot<'a>(tokens: &'a [TokenSnapshot], id_prefix: &str) -> &'a TokenSnapshot {
    tokens
        .iter()
        .find(|t| t.id.as_str().starts_with(id_prefix))
        .unwrap_or_else(|| panic!("no token {id_prefix:?} in {tokens:?}"))
}

fn pool<'a>(fleet: &'a Fleet, name: &str) -> &'a TokenPool {
    fleet
        .pool(name)
        .unwrap_or_else(|| panic!("no provider {name:?} in {:?}", fleet.providers()))
}

#[cfg(feature = "rate-aware")]
#[tokio::test]
async fn full_config_builds_fleet() {
    std::env::set_var(
        "TOKENFLEET_TEST_FULL_CI",
        "ghp_fullConfigCi000000000000000000000001",
    );
    std::env::set_var(
        "TOKENFLEET_TEST_FULL_SPARE",
        "ghp_fullConfigSpare000000000000000000002",
    );
    std::env::set_var(
        "TOKENFLEET_TEST_FULL_LIST",
        " ghp_fullConfigListA00000000000000000003 ,, ghp_fullConfigListB00000000000000000004,",
    );
    let text = format!(
        r#"[strategy]
type = "rate_aware"

[[providers]]
type = "github"
base_url = "http://127.0.0.1:9/"
user_agent = "config-test/1"
api_version = "2022-11-28"
tokens = [
  {{ env = "TOKENFLEET_TEST_FULL_CI", priority = 0, account = "ci-bot", reserve = 100, label = "ci", weight = 3 }},
  {{ env = "TOKENFLEET_TEST_FULL_SPARE", priority = 5, account = "ci-bot", label = "spare" }},
  {{ value = "{CANARY}", priority = 9, label = "literal" }},
]
tokens_env = "TOKENFLEET_TEST_FULL_LIST"

[[providers]]
type = "github"
name = "ghe"
base_url = "http://127.0.0.1:9/api/v3"
tokens = [{{ env = "TOKENFLEET_TEST_FULL_CI", label = "ghe" }}]

[wait]
max = "15m"
"#
    );

    let fleet = Fleet::from_toml_str(&text, "test.toml").unwrap();
    assert_eq!(fleet.providers(), ["github", "ghe"]);

    let github = pool(&fleet, "github");
    assert_eq!(github.provider().kind(), "github");
    assert_eq!(github.provider().base_url().as_str(), "http://127.0.0.1:9/");
    assert_eq!(github.strategy().name(), "rate_aware");
    assert_eq!(
        github.wait_policy(),
        WaitPolicy::UpTo(std::time::Duration::from_secs(15 * 60))
    );
    assert_eq!(github.len(), 5);

    let tokens = github.tokens().await;
    let ci = snapshot(&tokens, "ci (tok-");
    assert_eq!(ci.priority, 0);
    assert_eq!(ci.reserve, 100);
    assert_eq!(ci.account, "ci-bot");
    let spare = snapshot(&tokens, "spare (tok-");
    assert_eq!(spare.priority, 5);
    assert_eq!(spare.reserve, 0);
    assert_eq!(spare.account, "ci-bot");
    let literal = snapshot(&tokens, "literal (tok-");
    assert_eq!(literal.priority, 9);
    assert!(literal.account.starts_with("token:"), "{literal:?}");
    let listed: Vec<_> = tokens
        .iter()
        .filter(|t| t.id.as_str().starts_with("tok-"))
        .collect();
    assert_eq!(listed.len(), 2, "{tokens:?}");
    assert!(listed.iter().all(|t| t.priority == 0), "{listed:?}");

    let ghe = pool(&fleet, "ghe");
    assert_eq!(
        ghe.provider().base_url().as_str(),
        "http://127.0.0.1:9/api/v3"
    );
    assert_eq!(ghe.wait_policy(), github.wait_policy());
    assert_eq!(ghe.len(), 1);

    assert!(!format!("{fleet:?}").contains(CANARY));
}

#[test]
fn parsed_config_keeps_every_key() {
    let text = r#"[[providers]]
type = "github"
tokens = [
  { env = "TOKENFLEET_TEST_PARSED", priority = 2, weight = 4, account = " bot ", reserve = 50, label = "main" },
  { value = "ghp_parsedLiteral0000000000000000000001" },
]
tokens_env = "TOKENFLEET_TEST_PARSED_LIST"
"#;
    let parsed = config::parse(text, "test.toml").unwrap();

    assert!(parsed.wait == WaitPolicy::Fail);
    assert_eq!(parsed.providers.len(), 1);
    let provider = &parsed.providers[0];
    assert_eq!(provider.name, "github");
    assert_eq!(
        provider.provider.base_url().as_str(),
        "https://api.github.com/"
    );
    assert_eq!(
        provider.tokens_env.as_deref(),
        Some("TOKENFLEET_TEST_PARSED_LIST")
    );

    let first = &provider.tokens[0];
    assert!(matches!(&first.source, TokenSource::Env(var) if var == "TOKENFLEET_TEST_PARSED"));
    assert_eq!(first.priority, 2);
    assert_eq!(first.weight, 4);
    assert_eq!(first.account.as_deref(), Some("bot"));
    assert_eq!(first.reserve, 50);
    assert_eq!(first.label.as_deref(), Some("main"));

    let second = &provider.tokens[1];
    assert!(matches!(second.source, TokenSource::Value(_)));
    assert_eq!(second.priority, 0);
    assert_eq!(second.weight, 1);
    assert_eq!(second.account, None);
    assert_eq!(second.reserve, 0);
    assert_eq!(second.label, None);
}

#[test]
fn each_strategy_builds_its_pool() {
    std::env::set_var(
        "TOKENFLEET_TEST_STRATEGIES",
        "ghp_strategies000000000000000000000000001",
    );
    for name in enabled_strategies() {
        let text = format!(
            r#"[strategy]
type = "{name}"

[[providers]]
type = "github"
base_url = "http://127.0.0.1:9/"
tokens = [{{ env = "TOKENFLEET_TEST_STRATEGIES" }}]
"#
        );
        let fleet = Fleet::from_toml_str(&text, "test.toml")
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(pool(&fleet, "github").strategy().name(), name);
    }
}

#[cfg(feature = "rate-aware")]
#[test]
fn absent_tables_use_defaults() {
    std::env::set_var(
        "TOKENFLEET_TEST_DEFAULTS",
        "ghp_defaults00000000000000000000000000001",
    );
    let text = r#"[[providers]]
type = "github"
base_url = "http://127.0.0.1:9/"
tokens = [{ env = "TOKENFLEET_TEST_DEFAULTS" }]
"#;
    let fleet = Fleet::from_toml_str(text, "test.toml").unwrap();
    let github = pool(&fleet, "github");

    assert_eq!(github.strategy().name(), "rate_aware");
    assert_eq!(github.wait_policy(), WaitPolicy::Fail);
}

#[test]
fn every_enabled_plugin_deserializes() {
    let strategies = tokenfleet::registered_strategies();
    for name in enabled_strategies() {
        assert!(
            strategies.iter().any(|s| s == name),
            "{name}: {strategies:?}"
        );
        let text = format!("[strategy]\ntype = \"{name}\"\n");
        let parsed = config::parse(&text, "test.toml");
        assert!(parsed.is_ok(), "{name}: {parsed:?}");
    }

    let providers = tokenfleet::registered_providers();
    for name in enabled_providers() {
        assert!(providers.iter().any(|p| p == name), "{name}: {providers:?}");
        let text = format!("[[providers]]\ntype = \"{name}\"\n");
        let parsed = config::parse(&text, "test.toml").unwrap();
        assert_eq!(parsed.providers[0].provider.kind(), name);
    }
}

#[test]
fn every_plugin_has_a_description() {
    let plugins = tokenfleet::plugins();
    for name in enabled_providers().into_iter().chain(enabled_strategies()) {
        let listed = plugins
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {plugins:?}"));
        let description = listed.description.unwrap_or_default();
        assert!(!description.is_empty(), "{name} has no description");
    }
}

#[test]
fn unknown_top_level_key() {
    let error = parse_error("[wait]\nmax = \"1m\"\n\n[retry]\nattempts = 3\n");
    assert_error(
        &error,
        4,
        "retry",
        &[
            "unknown top-level key `retry`",
            "valid keys are",
            "`providers`",
        ],
    );
}

#[test]
fn unknown_token_key() {
    let text = r#"[[providers]]
type = "github"
tokens = [
  { env = "A" },
  { env = "B", prio = 1 },
]
"#;
    assert_error(
        &parse_error(text),
        5,
        "providers[0].tokens[1].prio",
        &["unknown token key `prio`", "valid keys are", "`priority`"],
    );
}

#[test]
fn token_with_env_and_value() {
    let text = format!(
        r#"[[providers]]
type = "github"
tokens = [
  {{ env = "A", value = "{CANARY}" }},
]
"#
    );
    assert_error(
        &parse_error(&text),
        4,
        "providers[0].tokens[0]",
        &["either `env` or `value`, not both"],
    );
}

#[test]
fn token_without_source() {
    let text = r#"[[providers]]
type = "github"
tokens = [
  { env = "A" },
  { priority = 1, label = "orphan" },
]
"#;
    assert_error(
        &parse_error(text),
        5,
        "providers[0].tokens[1]",
        &[
            "missing the secret's source",
            "env = \"VARIABLE\"",
            "value = ",
        ],
    );
}

#[test]
fn negative_priority() {
    let text = r#"[[providers]]
type = "github"
tokens = [
  { env = "A", priority = -1 },
]
"#;
    assert_error(
        &parse_error(text),
        4,
        "providers[0].tokens[0].priority",
        &["a whole number of 0 or more", "negative"],
    );
}

#[test]
fn priority_above_u32() {
    let text =
        "[[providers]]\ntype = \"github\"\ntokens = [{ env = \"A\", priority = 4294967296 }]\n";
    assert_error(
        &parse_error(text),
        3,
        "providers[0].tokens[0].priority",
        &["too large", "4294967295"],
    );
}

#[test]
fn unknown_strategy_type() {
    let error = parse_error("[strategy]\ntype = \"fastest\"\n");
    let mut hints = vec![
        "unknown strategy type `fastest`",
        "registered strategy types are",
    ];
    let quoted: Vec<String> = enabled_strategies()
        .iter()
        .map(|name| format!("`{name}`"))
        .collect();
    hints.extend(quoted.iter().map(String::as_str));
    assert_error(&error, 2, "strategy.type", &hints);
}

#[test]
fn unknown_strategy_key() {
    for name in enabled_strategies() {
        let text = format!("[strategy]\ntype = \"{name}\"\nshuffle = true\n");
        assert_error(
            &parse_error(&text),
            3,
            "strategy.shuffle",
            &["unknown strategy key `shuffle`", "valid keys are `type`"],
        );
    }
}

#[test]
fn unknown_provider_type() {
    let text =
        "[[providers]]\ntype = \"github\"\n\n[[providers]]\nname = \"lab\"\ntype = \"gitlub\"\n";
    let error = parse_error(text);
    let mut hints = vec![
        "unknown provider type `gitlub`",
        "registered provider types are",
    ];
    let quoted: Vec<String> = enabled_providers()
        .iter()
        .map(|name| format!("`{name}`"))
        .collect();
    hints.extend(quoted.iter().map(String::as_str));
    assert_error(&error, 6, "providers[1].type", &hints);
}

#[test]
fn missing_provider_type() {
    let error = parse_error("[[providers]]\nbase_url = \"http://127.0.0.1:9/\"\n");
    assert_error(
        &error,
        1,
        "providers[0]",
        &["missing `type`", "registered provider types are"],
    );
}

#[test]
fn unknown_key_in_github_table() {
    let text = r#"[[providers]]
type = "github"

[[providers]]
name = "ghe"
type = "github"
api_version = "2022-11-28"
base_uri = "http://127.0.0.1:9/"
tokens = [{ env = "A" }]
"#;
    assert_error(
        &parse_error(text),
        8,
        "providers[1].base_uri",
        &[
            "unknown provider key `base_uri`",
            "valid keys are",
            "`base_url`",
            "`tokens_env`",
        ],
    );
}

#[test]
fn unknown_key_in_inline_provider() {
    let text = "providers = [\n  { type = \"github\" },\n  { type = \"github\", name = \"b\", base_uri = \"x\" },\n]\n";
    assert_error(
        &parse_error(text),
        3,
        "providers[1].base_uri",
        &["unknown provider key `base_uri`", "`base_url`"],
    );
}

#[test]
fn wrong_type_in_github_table() {
    let text = "[[providers]]\ntype = \"github\"\nuser_agent = 5\n";
    assert_error(
        &parse_error(text),
        3,
        "providers[0].user_agent",
        &["invalid type", "expected a string"],
    );
}

#[test]
fn invalid_base_url() {
    let text = r#"[[providers]]
type = "github"
api_version = "2022-11-28"
base_url = "api.example.com/v3"
"#;
    assert_error(
        &parse_error(text),
        4,
        "providers[0].base_url",
        &[
            "relative URL",
            "an absolute URL such as \"https://api.github.com\"",
        ],
    );
}

#[test]
fn base_url_needs_http_scheme() {
    let text = "[[providers]]\ntype = \"github\"\nbase_url = \"ftp://127.0.0.1/\"\n";
    assert_error(
        &parse_error(text),
        3,
        "providers[0].base_url",
        &["scheme `ftp` is not supported", "http or https"],
    );
}

#[test]
fn token_pasted_as_value_is_redacted() {
    let cases = [
        format!("[[providers]]\ntype = \"github\"\nbase_url = \"{CANARY}\"\n"),
        format!("[strategy]\ntype = \"{CANARY}\"\n"),
        format!("[[providers]]\ntype = \"github\"\ntokens = [{{ {CANARY} = 1 }}]\n"),
        format!("[wait]\nmax = \"{CANARY}\"\n"),
    ];
    for text in cases {
        let error = parse_error(&text);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(CANARY), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}

#[test]
fn base_url_with_credentials() {
    let text = format!(
        "[[providers]]\ntype = \"github\"\nbase_url = \"https://bot:{CANARY}@127.0.0.1:9/\"\n"
    );
    assert_error(
        &parse_error(&text),
        3,
        "providers[0].base_url",
        &["contains credentials", "`tokens`"],
    );
}

#[test]
fn invalid_wait_duration() {
    let text = "[wait]\n# how long to wait for a reset\nmax = \"fifteen minutes\"\n";
    assert_error(
        &parse_error(text),
        3,
        "wait.max",
        &["invalid duration \"fifteen minutes\"", "\"15m\""],
    );
}

#[test]
fn wait_duration_of_wrong_type() {
    assert_error(
        &parse_error("[wait]\nmax = 900\n"),
        2,
        "wait.max",
        &["expected a duration string such as \"15m\"", "an integer"],
    );
}

#[test]
fn invalid_toml_syntax() {
    let text = "[strategy]\ntype = \"rate_aware\"\n\n[[providers]\ntype = \"github\"\n";
    let error = parse_error(text);
    let display = error.to_string();

    assert_eq!(error.line, Some(4), "{display}");
    assert_eq!(error.key, "", "{display}");
    assert!(
        display.starts_with("test.toml:4: invalid TOML: "),
        "{display}"
    );
    assert!(error.message.contains("expected `.`, `]]`"), "{display}");
    assert!(!error.message.contains('\n'), "{display}");
}

#[test]
fn syntax_error_hides_secret() {
    let text = format!("[[providers]]\ntype = \"github\"\ntokens = [{{ value = \"{CANARY}\" ]\n");
    let error = parse_error(&text);
    let display = error.to_string();

    assert_eq!(error.line, Some(3), "{display}");
    assert!(display.contains("invalid TOML"), "{display}");
    assert!(!display.contains(CANARY), "{display}");
    assert!(!format!("{error:?}").contains(CANARY), "{error:?}");
}

#[test]
fn unset_env_var() {
    std::env::set_var(
        "TOKENFLEET_TEST_UNSET_PRESENT",
        "ghp_unsetPresent000000000000000000000001",
    );
    std::env::remove_var("TOKENFLEET_TEST_UNSET_MISSING");
    let text = r#"[[providers]]
type = "github"
base_url = "http://127.0.0.1:9/"
tokens = [
  { env = "TOKENFLEET_TEST_UNSET_PRESENT" },
  { env = "TOKENFLEET_TEST_UNSET_MISSING", priority = 1 },
]
"#;
    assert_error(
        &fleet_error(text),
        6,
        "providers[0].tokens[1].env",
        &[
            "environment variable TOKENFLEET_TEST_UNSET_MISSING is not set",
            "export it",
        ],
    );
}

#[test]
fn empty_env_var() {
    std::env::set_var("TOKENFLEET_TEST_EMPTY", "  ");
    let text = "[[providers]]\ntype = \"github\"\nbase_url = \"http://127.0.0.1:9/\"\ntokens = [{ env = \"TOKENFLEET_TEST_EMPTY\" }]\n";
    assert_error(
        &fleet_error(text),
        4,
        "providers[0].tokens[0].env",
        &["TOKENFLEET_TEST_EMPTY is empty", "set it to the token"],
    );
}

#[test]
fn unset_tokens_env() {
    std::env::remove_var("TOKENFLEET_TEST_UNSET_LIST");
    let text = "[[providers]]\ntype = \"github\"\nbase_url = \"http://127.0.0.1:9/\"\n\ntokens_env = \"TOKENFLEET_TEST_UNSET_LIST\"\n";
    assert_error(
        &fleet_error(text),
        5,
        "providers[0].tokens_env",
        &[
            "TOKENFLEET_TEST_UNSET_LIST is not set",
            "comma-separated list",
        ],
    );
}

#[test]
fn tokens_env_without_tokens() {
    std::env::set_var("TOKENFLEET_TEST_BLANK_LIST", " , ,");
    let text = "[[providers]]\ntype = \"github\"\nbase_url = \"http://127.0.0.1:9/\"\ntokens_env = \"TOKENFLEET_TEST_BLANK_LIST\"\n";
    assert_error(
        &fleet_error(text),
        4,
        "providers[0].tokens_env",
        &[
            "TOKENFLEET_TEST_BLANK_LIST contains no token",
            "comma-separated list",
        ],
    );
}

#[test]
fn env_holding_a_token_is_not_echoed() {
    let entry =
        format!("[[providers]]\ntype = \"github\"\ntokens = [\n  {{ env = \"{CANARY}\" }},\n]\n");
    assert_error(
        &parse_error(&entry),
        4,
        "providers[0].tokens[0].env",
        &["looks like a token", "\"GITHUB_TOKEN\""],
    );

    let list = format!("[[providers]]\ntype = \"github\"\ntokens_env = \"{CANARY}\"\n");
    assert_error(
        &parse_error(&list),
        3,
        "providers[0].tokens_env",
        &["looks like a token"],
    );

    let hex = "[[providers]]\ntype = \"github\"\ntokens_env = \"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3\"\n";
    let error = parse_error(hex);
    assert_error(
        &error,
        3,
        "providers[0].tokens_env",
        &["looks like a token"],
    );
    assert!(!error.to_string().contains("a94a8fe5"), "{error}");
}

#[test]
fn duplicate_provider_name() {
    let unnamed = "[[providers]]\ntype = \"github\"\n\n[[providers]]\ntype = \"github\"\n";
    assert_error(
        &parse_error(unnamed),
        4,
        "providers[1]",
        &["a second provider is named \"github\"", "distinct `name`"],
    );

    let named = r#"[[providers]]
type = "github"
name = "work"

[[providers]]
type = "github"
name = "work"
"#;
    assert_error(
        &parse_error(named),
        7,
        "providers[1].name",
        &["a second provider is named \"work\"", "distinct `name`"],
    );
}

#[test]
fn missing_file_names_it() {
    let path = std::env::temp_dir().join("tokenfleet-config-test-missing.toml");
    let error = match Fleet::from_config_file(&path) {
        Ok(fleet) => panic!("expected an error, built {fleet:?}"),
        Err(FleetError::Config(error)) => error,
        Err(other) => panic!("expected a config error, got {other:?}"),
    };

    assert_eq!(error.file, path.display().to_string());
    assert_eq!(error.line, None);
    assert!(
        error.message.contains("cannot read the config file"),
        "{error}"
    );
}

#[test]
fn errors_hide_literal_secrets() {
    // Each file writes the canary as a literal token and breaks elsewhere.
    let broken = [
        format!("[[providers]]\ntype = \"github\"\ntokens = [{{ value = \"{CANARY}\", priority = -3 }}]\n"),
        format!("[[providers]]\ntype = \"github\"\ntokens = [{{ value = \"{CANARY}\", secret = 1 }}]\n"),
        format!("[[providers]]\ntype = \"github\"\nbase_uri = \"x\"\ntokens = [{{ value = \"{CANARY}\" }}]\n"),
        format!("[[providers]]\ntype = \"gitlub\"\ntokens = [{{ value = \"{CANARY}\" }}]\n"),
        format!("[[providers]]\ntype = \"github\"\ntokens = [{{ value = \"{CANARY}\", env = \"A\" }}]\n"),
        format!("[[providers]]\ntype = \"github\"\ntokens = [{{ value = \"{CANARY}\" }}]\n[wait]\nmax = \"soon\"\n"),
        format!("[[providers]]\ntype = \"github\"\ntokens = [{{ value = \"{CANARY}\" }}]\n[[providers]]\ntype = \"github\"\n"),
    ];
    for text in &broken {
        let error = parse_error(text);
        assert!(!error.to_string().contains(CANARY), "{error}");
        assert!(!format!("{error:?}").contains(CANARY), "{error:?}");
    }
}

#[cfg(feature = "rate-aware")]
#[test]
fn debug_hides_literal_secret() {
    let text = format!(
        "[[providers]]\ntype = \"github\"\nbase_url = \"http://127.0.0.1:9/\"\ntokens = [{{ value = \"{CANARY}\", label = \"literal\" }}]\n"
    );
    let parsed = config::parse(&text, "test.toml").unwrap();
    let debug = format!("{parsed:?}");
    assert!(debug.contains("Value(..)"), "{debug}");
    assert!(!debug.contains(CANARY), "{debug}");

    let fleet = Fleet::from_toml_str(&text, "test.toml").unwrap();
    assert!(!format!("{fleet:?}").contains(CANARY));
}

/// A log sink that tests can read back.
#[cfg(feature = "rate-aware")]
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(feature = "rate-aware")]
impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "rate-aware")]
#[test]
fn literal_token_warns_without_secret() {
    let text = format!(
        "[[providers]]\ntype = \"github\"\nbase_url = \"http://127.0.0.1:9/\"\ntokens = [\n  {{ value = \"{CANARY}\" }},\n]\n"
    );
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();

    let built =
        tracing::subscriber::with_default(subscriber, || Fleet::from_toml_str(&text, "test.toml"));
    assert!(built.is_ok(), "{built:?}");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("a token is written in the config file"),
        "{log}"
    );
    assert!(log.contains("providers[0].tokens[0]"), "{log}");
    assert!(log.contains("line=5"), "{log}");
    assert!(!log.contains(CANARY), "{log}");
}
