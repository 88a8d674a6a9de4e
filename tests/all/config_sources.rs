//! Token sources outside the config file: token files, helper programs and
//! vault entries, read from real files and real processes.
//!
//! Tests that set environment variables use names no other test uses,
//! because the tests of this binary run in parallel threads.

#![cfg(feature = "github")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokenfleet::config::{self, ConfigError};
use tokenfleet::{Token, TokenId};

/// A secret that must never appear in an error or a `Debug` output.
const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

/// Writes `config.toml` with one GitHub provider and these `tokens`
/// entries (plus `extra` after them) into `dir`.
fn write_config(dir: &Path, tokens: &str, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[[providers]]\ntype = \"github\"\nbase_url = \"http://127.0.0.1:9/\"\ntokens = [\n  {tokens},\n]\n{extra}"
    );
    fs::write(&path, text).unwrap();
    path
}

fn write_private(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn resolve(path: &Path) -> Result<Vec<Token>, ConfigError> {
    let parsed = config::load(path)?;
    parsed.providers[0].resolve_tokens(&path.display().to_string())
}

fn resolve_error(path: &Path) -> ConfigError {
    match resolve(path) {
        Ok(tokens) => panic!("expected an error, read {tokens:?}"),
        Err(error) => error,
    }
}

/// Checks the key and hints of an error read from `config.toml`, and that
/// the canary appears neither in it nor in its `Debug` output.
fn assert_source_error(error: &ConfigError, key: &str, hints: &[&str]) {
    let display = error.to_string();
    assert_eq!(error.key, key, "{display}");
    assert_eq!(error.line, Some(5), "{display}");
    assert!(error.file.ends_with("config.toml"), "{display}");
    for hint in hints {
        assert!(display.contains(hint), "{hint:?} missing: {display}");
    }
    assert!(!display.contains("CANARY"), "{display}");
    assert!(!format!("{error:?}").contains("CANARY"), "{error:?}");
}

fn assert_canary(tokens: &[Token]) {
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].secret(), CANARY);
    assert_eq!(tokens[0].id(), &TokenId::fingerprint(CANARY));
}

#[test]
fn file_source_reads_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    write_private(
        &dir.path().join("github.token"),
        &format!("\n  {CANARY}  \n"),
        0o600,
    );
    let path = write_config(dir.path(), "{ file = \"github.token\" }", "");

    assert_canary(&resolve(&path).unwrap());
}

#[test]
fn file_source_rejects_group_readable() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("github.token");
    write_private(&token, CANARY, 0o640);
    let path = write_config(dir.path(), "{ file = \"github.token\" }", "");

    let error = resolve_error(&path);
    let fix = format!("chmod 600 {}", token.display());
    assert_source_error(&error, "providers[0].tokens[0].file", &[&fix, "mode 640"]);
}

#[test]
fn file_source_errors_name_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("missing.token", None, "not found"),
        ("empty.token", Some("  \n"), "is empty"),
        (
            "two.token",
            Some("ghp_CANARY1 ghp_CANARY2\n"),
            "more than one word",
        ),
    ];
    for (name, content, hint) in cases {
        if let Some(content) = content {
            write_private(&dir.path().join(name), content, 0o600);
        }
        let path = write_config(dir.path(), &format!("{{ file = \"{name}\" }}"), "");
        let error = resolve_error(&path);
        let file = dir.path().join(name).display().to_string();
        assert_source_error(&error, "providers[0].tokens[0].file", &[&file, hint]);
    }
}

#[test]
fn file_with_control_byte_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_private(
        &dir.path().join("ctl.token"),
        &format!("{CANARY}\u{1}x\n"),
        0o600,
    );
    let path = write_config(dir.path(), "{ file = \"ctl.token\" }", "");

    let error = resolve_error(&path);

    assert_source_error(
        &error,
        "providers[0].tokens[0].file",
        &["control character", "holds the token alone"],
    );
}

#[test]
fn command_source_reads_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let entry = format!("{{ command = [\"printf\", \"%s\\n\", \"{CANARY}\"] }}");
    let path = write_config(dir.path(), &entry, "");
    assert_canary(&resolve(&path).unwrap());

    let debug = format!("{:?}", config::load(&path).unwrap());
    assert!(debug.contains("printf"), "{debug}");
    assert!(!debug.contains(CANARY), "{debug}");
}

#[test]
fn command_failure_hides_stderr_secret() {
    let dir = tempfile::tempdir().unwrap();
    let entry = format!(
        "{{ command = [\"sh\", \"-c\", \"echo {CANARY}; echo bad {CANARY} >&2; exit 3\"] }}"
    );
    let path = write_config(dir.path(), &entry, "");

    let error = resolve_error(&path);
    assert_source_error(
        &error,
        "providers[0].tokens[0].command",
        &["command `sh`", "exit status 3", "stderr: bad [redacted]"],
    );
}

#[test]
fn command_killed_by_signal() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "{ command = [\"sh\", \"-c\", \"kill -9 $$\"] }",
        "",
    );
    let error = resolve_error(&path);
    assert_source_error(
        &error,
        "providers[0].tokens[0].command",
        &["killed by signal 9"],
    );
}

#[test]
fn command_timeout_kills_program() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "{ command = [\"sleep\", \"30\"], timeout = \"300ms\" }",
        "",
    );

    let started = Instant::now();
    let error = resolve_error(&path);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_source_error(
        &error,
        "providers[0].tokens[0].command",
        &["command `sleep` timed out after 300ms", "timeout = \"30s\""],
    );
}

#[test]
fn command_output_problems() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[\"true\"]", "printed nothing"),
        ("[\"tokenfleet-test-no-such-program\"]", "not found"),
        (
            "[\"printf\", \"ghp_CANARY1\\nghp_CANARY2\\n\"]",
            "more than one word or line",
        ),
    ];
    for (command, hint) in cases {
        let path = write_config(dir.path(), &format!("{{ command = {command} }}"), "");
        let error = resolve_error(&path);
        assert_source_error(&error, "providers[0].tokens[0].command", &[hint]);
    }
}

#[test]
fn source_keys_are_checked_when_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{ file = \"a\", command = [\"b\"] }".to_owned(),
            "providers[0].tokens[0]",
            "give either `file` or `command`, not both",
        ),
        (
            "{ env = \"A\", timeout = \"5s\" }".to_owned(),
            "providers[0].tokens[0].timeout",
            "applies only to a `command` source",
        ),
        (
            "{ command = \"pass show github\" }".to_owned(),
            "providers[0].tokens[0].command",
            "without a shell",
        ),
        (
            "{ command = [] }".to_owned(),
            "providers[0].tokens[0].command",
            "the command is empty",
        ),
        (
            "{ command = [\"pass\"], timeout = \"soon\" }".to_owned(),
            "providers[0].tokens[0].timeout",
            "invalid duration",
        ),
        (
            format!("{{ file = \"{CANARY}\" }}"),
            "providers[0].tokens[0].file",
            "looks like a token",
        ),
        (
            format!("{{ vault = \"{CANARY}\" }}"),
            "providers[0].tokens[0].vault",
            "looks like a token",
        ),
    ];
    for (entry, key, hint) in cases {
        let path = write_config(dir.path(), &entry, "");
        let error = match config::load(&path) {
            Ok(parsed) => panic!("expected an error for {entry}, parsed {parsed:?}"),
            Err(error) => error,
        };
        let display = error.to_string();
        assert_eq!(error.key, key, "{display}");
        assert!(display.contains(hint), "{hint:?} missing: {display}");
        assert!(!display.contains("CANARY"), "{display}");
    }
}

#[test]
fn vault_table_rejects_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "{ env = \"A\" }",
        "[vault]\npassphrase = \"x\"\n",
    );
    let error = config::load(&path).unwrap_err();
    assert_eq!(error.key, "vault.passphrase", "{error}");
    assert_eq!(error.line, Some(8), "{error}");
    assert!(error.message.contains("`passphrase_env`"), "{error}");
}

#[cfg(not(feature = "vault"))]
#[test]
fn vault_source_needs_feature() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "{ vault = \"work-bot\" }", "");
    let error = config::load(&path).unwrap_err();
    assert_eq!(error.key, "providers[0].tokens[0].vault", "{error}");
    assert!(error.message.contains("`vault` feature"), "{error}");
}

#[cfg(feature = "vault")]
mod vault {
    use super::*;
    use tokenfleet::vault::secrecy::SecretString;
    use tokenfleet::vault::{Credential, Vault};

    const PASSPHRASE: &str = "correct horse battery staple";

    /// Creates `vault.age` in `dir` with the canary as "work-bot" and a
    /// GitLab token as "gitlab-bot".
    fn create_vault(dir: &Path) {
        let passphrase = SecretString::from(PASSPHRASE.to_owned());
        let mut vault =
            Vault::create_with_work_factor(dir.join("vault.age"), passphrase, 10).unwrap();
        let canary = Credential::new("work-bot", "github", CANARY.to_owned().into())
            .unwrap()
            .with_account("ci")
            .unwrap()
            .with_priority(4);
        vault.add(canary).unwrap();
        let other = Credential::new("gitlab-bot", "gitlab", "glpat-CANARY".to_owned().into());
        vault.add(other.unwrap()).unwrap();
        vault.save().unwrap();
    }

    fn vault_table(var: &str) -> String {
        format!("[vault]\npath = \"vault.age\"\npassphrase_env = \"{var}\"\n")
    }

    #[test]
    fn vault_source_reads_entry() {
        let dir = tempfile::tempdir().unwrap();
        create_vault(dir.path());
        std::env::set_var("TF_SOURCES_TEST_VAULT_READ", PASSPHRASE);
        let table = vault_table("TF_SOURCES_TEST_VAULT_READ");

        let path = write_config(dir.path(), "{ vault = \"work-bot\" }", &table);
        let tokens = resolve(&path).unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].secret(), CANARY);
        assert_eq!(tokens[0].account(), Some("ci"));
        assert_eq!(tokens[0].priority(), 4);

        // The config's own settings win over the entry's.
        let entries = "{ vault = \"work-bot\", priority = 1, account = \"own\" }";
        let path = write_config(dir.path(), entries, &table);
        let tokens = resolve(&path).unwrap();
        assert_eq!(tokens[0].account(), Some("own"));
        assert_eq!(tokens[0].priority(), 1);
    }

    #[test]
    fn same_secret_twice_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        create_vault(dir.path());
        std::env::set_var("TF_SOURCES_TEST_VAULT_TWICE", PASSPHRASE);
        let entries = "{ vault = \"work-bot\" },\n  { vault = \"work-bot\", account = \"own\" }";
        let path = write_config(
            dir.path(),
            entries,
            &vault_table("TF_SOURCES_TEST_VAULT_TWICE"),
        );

        let error = resolve(&path).unwrap_err().to_string();
        assert!(error.contains("tokens[1].vault"), "{error}");
        assert!(
            error.contains("same token as providers[0].tokens[0]"),
            "{error}"
        );
        assert!(!error.contains(CANARY), "{error}");
    }

    #[test]
    fn vault_entry_missing_names_it() {
        let dir = tempfile::tempdir().unwrap();
        create_vault(dir.path());
        std::env::set_var("TF_SOURCES_TEST_VAULT_MISSING", PASSPHRASE);
        let path = write_config(
            dir.path(),
            "{ vault = \"nope\" }",
            &vault_table("TF_SOURCES_TEST_VAULT_MISSING"),
        );
        let error = resolve_error(&path);
        assert_source_error(
            &error,
            "providers[0].tokens[0].vault",
            &[
                "vault entry \"nope\" not found",
                "tokenfleet vault add nope",
            ],
        );
    }

    #[test]
    fn vault_entry_for_other_provider() {
        let dir = tempfile::tempdir().unwrap();
        create_vault(dir.path());
        std::env::set_var("TF_SOURCES_TEST_VAULT_PROVIDER", PASSPHRASE);
        let path = write_config(
            dir.path(),
            "{ vault = \"gitlab-bot\" }",
            &vault_table("TF_SOURCES_TEST_VAULT_PROVIDER"),
        );
        let error = resolve_error(&path);
        assert_source_error(
            &error,
            "providers[0].tokens[0].vault",
            &["vault entry \"gitlab-bot\" is for provider \"gitlab\", not \"github\""],
        );
    }

    #[test]
    fn vault_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        create_vault(dir.path());
        std::env::set_var("TF_SOURCES_TEST_VAULT_WRONG", "not the passphrase");
        let path = write_config(
            dir.path(),
            "{ vault = \"work-bot\" }",
            &vault_table("TF_SOURCES_TEST_VAULT_WRONG"),
        );
        let error = resolve_error(&path);
        assert_source_error(
            &error,
            "providers[0].tokens[0].vault",
            &["wrong passphrase"],
        );
        assert!(!error.to_string().contains("not the passphrase"), "{error}");
    }

    #[test]
    fn vault_passphrase_unset() {
        let dir = tempfile::tempdir().unwrap();
        create_vault(dir.path());
        let path = write_config(
            dir.path(),
            "{ vault = \"work-bot\" }",
            &vault_table("TF_SOURCES_TEST_VAULT_UNSET"),
        );
        // With a terminal on standard input the passphrase would be prompted for.
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            eprintln!("skipped: standard input is a terminal");
            return;
        }
        let error = resolve_error(&path);
        assert_source_error(
            &error,
            "providers[0].tokens[0].vault",
            &["TF_SOURCES_TEST_VAULT_UNSET"],
        );
    }
}
