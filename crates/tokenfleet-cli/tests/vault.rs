//! The `tokenfleet vault` commands, run as processes on vault files in
//! temporary directories.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A secret that must never appear in a listing, a message or a log.
const CANARY: &str = "ghp_CANARY0000000000000000000000000000";
const PASSPHRASE: &str = "correct horse battery staple";
const PASSPHRASE_VAR: &str = "TEST_VAULT_PASSPHRASE";

/// Builds a command for the binary, with the passphrase in its own variable
/// and the home directories pointed at `dir` so no real vault is touched.
fn tokenfleet(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenfleet"));
    command
        .args(args)
        .args(["--vault", &vault_path(dir).display().to_string()])
        .args(["--passphrase-env", PASSPHRASE_VAR])
        .env(PASSPHRASE_VAR, PASSPHRASE)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env_remove("TOKENFLEET_VAULT_PASSPHRASE")
        .env_remove("TOKENFLEET_VAULT_TEST_PAUSE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

fn vault_path(dir: &Path) -> PathBuf {
    dir.join("vault.age")
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("tokenfleet could not be started");
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// Runs `vault add` with `secret` on standard input.
fn spawn_add(dir: &Path, name: &str, secret: &str, pause: Option<&str>) -> Child {
    let mut command = tokenfleet(dir, &["vault", "add", name, "--note", "added by test"]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(point) = pause {
        command.env("TOKENFLEET_VAULT_TEST_PAUSE", point);
    }
    let mut child = command.spawn().expect("tokenfleet could not be started");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{secret}\n").as_bytes()).unwrap();
    drop(stdin);
    child
}

fn add(dir: &Path, name: &str, secret: &str) -> Output {
    let output = spawn_add(dir, name, secret, None)
        .wait_with_output()
        .unwrap();
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Creates a vault with a fast work factor and the canary as "work-bot".
fn vault_with_canary(dir: &Path) {
    let output = run(tokenfleet(dir, &["vault", "init", "--work-factor", "10"]));
    assert!(output.status.success());
    let output = add(dir, "work-bot", CANARY);
    assert!(output.status.success());
}

fn listed_names(dir: &Path) -> Vec<String> {
    let output = run(tokenfleet(dir, &["vault", "list", "--format", "json"]));
    assert!(output.status.success());
    let mut names: Vec<String> = text(&output.stdout)
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            entry["name"].as_str().unwrap().to_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());

    let output = run(tokenfleet(dir.path(), &["vault", "list"]));
    let table = text(&output.stdout);
    assert!(output.status.success());
    assert!(table.contains("work-bot"), "{table}");
    assert!(table.contains("added by test"), "{table}");
    assert!(table.contains("tok-"), "{table}");

    let output = run(tokenfleet(
        dir.path(),
        &["vault", "rename", "work-bot", "docs-bot"],
    ));
    assert!(output.status.success());
    assert_eq!(listed_names(dir.path()), ["docs-bot"]);

    let output = run(tokenfleet(dir.path(), &["vault", "remove", "docs-bot"]));
    assert!(output.status.success());
    assert!(listed_names(dir.path()).is_empty());
}

#[test]
fn list_never_prints_secret() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());
    for format in ["table", "json"] {
        let output = run(tokenfleet(
            dir.path(),
            &["vault", "list", "--format", format],
        ));
        assert!(output.status.success());
        assert!(!text(&output.stdout).contains("CANARY"), "{format}");
        assert!(!text(&output.stderr).contains("CANARY"), "{format}");
    }
    let output = run(tokenfleet(
        dir.path(),
        &["vault", "list", "--format", "json"],
    ));
    let entry: Value = serde_json::from_str(text(&output.stdout).trim()).unwrap();
    assert_eq!(entry["provider"], "github");
    assert_eq!(entry["note"], "added by test");
    assert!(entry["fingerprint"].as_str().unwrap().starts_with("tok-"));
}

#[test]
fn add_rejects_duplicate_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());

    let output = add(
        dir.path(),
        "work-bot",
        "ghp_second000000000000000000000000000000",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("\"work-bot\" already exists"));

    let output = add(dir.path(), "empty", "");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("standard input is empty"));
    assert_eq!(listed_names(dir.path()), ["work-bot"]);
}

#[test]
fn errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(tokenfleet(dir.path(), &["vault", "list"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("not found"), "missing vault");
    assert!(text(&output.stderr).contains("tokenfleet vault init"));

    vault_with_canary(dir.path());
    let before = fs::read(vault_path(dir.path())).unwrap();
    let mut command = tokenfleet(dir.path(), &["vault", "list"]);
    command.env(PASSPHRASE_VAR, "wrong");
    let output = run(command);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("wrong passphrase"));

    let mut command = tokenfleet(dir.path(), &["vault", "list"]);
    command.env_remove(PASSPHRASE_VAR);
    let output = run(command);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains(PASSPHRASE_VAR));
    assert_eq!(fs::read(vault_path(dir.path())).unwrap(), before);
}

#[test]
fn export_env_prints_shell_lines() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());
    let output = run(tokenfleet(dir.path(), &["vault", "export-env", "work-bot"]));
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout),
        format!("export WORK_BOT='{CANARY}'\n")
    );
    assert!(!text(&output.stderr).contains("CANARY"));

    let output = run(tokenfleet(dir.path(), &["vault", "export-env", "missing"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).is_empty());
}

#[test]
fn export_env_rejects_terminal() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());
    // `script` runs the command with a pseudo-terminal as standard output.
    let inner = format!(
        "{} vault export-env work-bot --vault {} --passphrase-env {PASSPHRASE_VAR}",
        env!("CARGO_BIN_EXE_tokenfleet"),
        vault_path(dir.path()).display()
    );
    let output = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env(PASSPHRASE_VAR, PASSPHRASE)
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) provides the terminal; install bsdutils");
    let combined_output = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "{combined_output}");
    assert!(!combined_output.contains("CANARY"), "{combined_output}");
    assert!(combined_output.contains("--force"), "{combined_output}");
}

/// Waits until the child prints `line` on standard error.
fn wait_for_line(child: &mut Child, line: &str) {
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let expected = line.to_owned();
    std::thread::spawn(move || {
        for read in BufReader::new(stderr).lines() {
            let Ok(read) = read else { break };
            if read.contains(&expected) {
                let _ = sender.send(());
            }
        }
    });
    receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("tokenfleet did not reach the pause");
}

fn temporary_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[test]
fn add_killed_before_rename_keeps_old_vault() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());
    let before = fs::read(vault_path(dir.path())).unwrap();

    let mut child = spawn_add(
        dir.path(),
        "killed",
        "ghp_killed00000000000000000000000000000",
        Some("before-rename"),
    );
    wait_for_line(&mut child, "paused before-rename");
    assert_eq!(temporary_files(dir.path()).len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(fs::read(vault_path(dir.path())).unwrap(), before);
    assert_eq!(listed_names(dir.path()), ["work-bot"]);

    // The next save removes the dead writer's temporary file.
    assert!(add(
        dir.path(),
        "later",
        "ghp_later000000000000000000000000000000"
    )
    .status
    .success());
    assert!(temporary_files(dir.path()).is_empty());
    assert_eq!(listed_names(dir.path()), ["later", "work-bot"]);
}

#[test]
fn add_killed_after_rename_keeps_new_vault() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());

    let mut child = spawn_add(
        dir.path(),
        "renamed",
        "ghp_renamed0000000000000000000000000000",
        Some("after-rename"),
    );
    wait_for_line(&mut child, "paused after-rename");
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(listed_names(dir.path()), ["renamed", "work-bot"]);
}

#[test]
fn concurrent_adds_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    vault_with_canary(dir.path());

    let started = Instant::now();
    let children: Vec<Child> = (0..6)
        .map(|index| {
            let secret = format!("ghp_concurrent{index:026}");
            spawn_add(dir.path(), &format!("writer-{index}"), &secret, None)
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!("six concurrent adds took {:?}", started.elapsed());

    let names = listed_names(dir.path());
    assert_eq!(names.len(), 7, "{names:?}");
    for index in 0..6 {
        assert!(names.contains(&format!("writer-{index}")), "{names:?}");
    }
}
