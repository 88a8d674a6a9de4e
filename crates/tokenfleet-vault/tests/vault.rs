//! The vault against real files, and against the `age` command-line tool.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use secrecy::{ExposeSecret, SecretString};
use tokenfleet_vault::{Credential, Vault, VaultError};

/// A secret that must never appear in an error, a listing or `Debug` output.
const CANARY: &str = "ghp_CANARY0000000000000000000000000000";
const OTHER_SECRET: &str = "ghp_other00000000000000000000000000000001";
const PASSPHRASE: &str = "correct horse battery staple";
/// A low scrypt work factor keeps each test fast; the file format is the same.
const FAST: u8 = 10;

fn passphrase(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

fn credential(name: &str, secret: &str) -> Credential {
    Credential::new(name, "github", passphrase(secret)).unwrap()
}

/// Creates a vault holding the canary as "work-bot".
fn vault_with_canary(dir: &Path) -> PathBuf {
    let path = dir.join("vault.age");
    let mut vault = Vault::create_with_work_factor(&path, passphrase(PASSPHRASE), FAST).unwrap();
    let entry = credential("work-bot", CANARY)
        .with_account("ci")
        .unwrap()
        .with_note("docs site")
        .unwrap();
    vault.add(entry).unwrap();
    vault.save().unwrap();
    path
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Returns true, after printing why, when the `age` tool is missing and the
/// run does not require it (CI sets `TOKENFLEET_REQUIRE_TOOLS`), so a
/// fresh machine can run the tests without it.
fn skip_without_age(test: &str) -> bool {
    if std::env::var_os("TOKENFLEET_REQUIRE_TOOLS").is_some() {
        return false;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v age && command -v script"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        eprintln!(
            "skipping {test}: the age tool or `script` is missing (Debian: apt-get install \
             age bsdutils); set TOKENFLEET_REQUIRE_TOOLS=1 to make this a failure"
        );
    }
    !found
}

/// Runs `age` with `input` typed on a terminal. age reads passphrases only
/// from a terminal, so `script` gives it a pseudo-terminal.
fn age_on_terminal(arguments: &str, input: &str) {
    let age = Command::new("sh")
        .args(["-c", "command -v age"])
        .output()
        .unwrap();
    assert!(
        age.status.success(),
        "the age command-line tool is missing; install it with `apt-get install age`"
    );
    let mut child = Command::new("script")
        .args(["-qec", &format!("age {arguments}"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs age on a pseudo-terminal; install bsdutils");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "age {arguments} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    assert_eq!(mode(&path), 0o600);

    let mut vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    let entry = vault.get("work-bot").unwrap();
    assert_eq!(entry.secret().expose_secret(), CANARY);
    assert_eq!(entry.provider(), "github");
    assert_eq!(entry.account(), Some("ci"));
    assert_eq!(entry.note(), Some("docs site"));
    assert!(entry.created().is_some());

    vault
        .add(credential("second", OTHER_SECRET).with_priority(2))
        .unwrap();
    vault.rename("work-bot", "docs-bot").unwrap();
    vault.save().unwrap();

    let mut vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    let names: Vec<String> = vault.list().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["docs-bot", "second"]);
    assert_eq!(vault.get("second").unwrap().priority(), 2);

    let removed = vault.remove("docs-bot").unwrap();
    assert_eq!(removed.secret().expose_secret(), CANARY);
    vault.save().unwrap();
    let vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    assert_eq!(vault.len(), 1);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn save_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".vault.age.lock", "vault.age"]);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn list_and_debug_hide_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    let vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();

    let listing = format!("{:?} {:?}", vault.list(), vault);
    assert!(!listing.contains(CANARY), "{listing}");
    assert!(!listing.contains(PASSPHRASE), "{listing}");
    let info = &vault.list()[0];
    assert_eq!(
        info.fingerprint,
        tokenfleet_core::TokenId::fingerprint(CANARY)
    );
    assert_eq!(info.note.as_deref(), Some("docs site"));
}

#[test]
fn names_stay_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    let mut vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    vault.add(credential("other", OTHER_SECRET)).unwrap();

    let error = vault.add(credential("other", CANARY)).unwrap_err();
    assert!(matches!(error, VaultError::DuplicateName { .. }), "{error}");
    let error = vault.rename("work-bot", "other").unwrap_err();
    assert!(matches!(error, VaultError::DuplicateName { .. }), "{error}");
    assert!(error.to_string().contains("\"other\""), "{error}");
    let error = vault.rename("missing", "fresh").unwrap_err();
    assert!(matches!(error, VaultError::EntryNotFound { .. }), "{error}");
    let error = vault.remove("missing").unwrap_err();
    assert!(matches!(error, VaultError::EntryNotFound { .. }), "{error}");
    let error = vault.rename("work-bot", "bad name").unwrap_err();
    assert!(matches!(error, VaultError::InvalidField { .. }), "{error}");

    assert_eq!(vault.len(), 2);
    assert!(vault.get("work-bot").is_some());
}

#[test]
fn save_through_symlink_keeps_link() {
    let dir = tempfile::tempdir().unwrap();
    let target = vault_with_canary(dir.path());
    let link = dir.path().join("link.age");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let mut vault = Vault::open_locked(&link, passphrase(PASSPHRASE)).unwrap();
    vault.add(credential("through-link", OTHER_SECRET)).unwrap();
    vault.save().unwrap();
    drop(vault);

    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let vault = Vault::open(&target, passphrase(PASSPHRASE)).unwrap();
    assert!(vault.get("through-link").is_some());
}

#[test]
fn create_rejects_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    let before = fs::read(&path).unwrap();
    let error = Vault::create(&path, passphrase("other")).unwrap_err();
    assert!(matches!(error, VaultError::AlreadyExists { .. }), "{error}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn create_rejects_empty_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.age");
    let error = Vault::create(&path, passphrase("")).unwrap_err();
    assert!(
        matches!(error, VaultError::EmptyPassphrase { .. }),
        "{error}"
    );
    assert!(!path.exists());
}

#[test]
fn create_makes_private_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config/tokenfleet/vault.age");
    Vault::create_with_work_factor(&path, passphrase(PASSPHRASE), FAST).unwrap();
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
}

/// One way to break a vault file, and the error it must produce.
struct Damage {
    label: &'static str,
    apply: fn(&Path),
    expected: fn(&VaultError) -> bool,
    passphrase: &'static str,
}

fn cut_to(path: &Path, length: usize) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..length]).unwrap();
}

fn header_end(bytes: &[u8]) -> usize {
    let at = bytes.windows(4).position(|w| w == b"\n---").unwrap();
    at + bytes[at + 1..].iter().position(|&b| b == b'\n').unwrap() + 2
}

#[test]
fn damaged_files_give_distinct_errors_and_stay_unchanged() {
    let cases = [
        Damage {
            label: "wrong passphrase",
            apply: |_| {},
            expected: |e| matches!(e, VaultError::WrongPassphrase { .. }),
            passphrase: "not the passphrase",
        },
        Damage {
            label: "cut inside the header",
            apply: |path| cut_to(path, 40),
            expected: |e| matches!(e, VaultError::Truncated { .. }),
            passphrase: PASSPHRASE,
        },
        Damage {
            label: "cut after the header",
            apply: |path| {
                let end = header_end(&fs::read(path).unwrap());
                cut_to(path, end + 16);
            },
            expected: |e| matches!(e, VaultError::Truncated { .. }),
            passphrase: PASSPHRASE,
        },
        Damage {
            label: "payload byte flipped",
            apply: |path| {
                let mut bytes = fs::read(path).unwrap();
                let last = bytes.len() - 20;
                bytes[last] ^= 0x01;
                fs::write(path, bytes).unwrap();
            },
            expected: |e| matches!(e, VaultError::Tampered { .. }),
            passphrase: PASSPHRASE,
        },
        Damage {
            label: "header MAC flipped",
            apply: |path| {
                let mut bytes = fs::read(path).unwrap();
                let mac = header_end(&bytes) - 3;
                bytes[mac] = if bytes[mac] == b'A' { b'B' } else { b'A' };
                fs::write(path, bytes).unwrap();
            },
            expected: |e| matches!(e, VaultError::Tampered { .. }),
            passphrase: PASSPHRASE,
        },
        Damage {
            label: "readable by others",
            apply: |path| fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap(),
            expected: |e| matches!(e, VaultError::Permissions { mode: 0o644, .. }),
            passphrase: PASSPHRASE,
        },
        Damage {
            label: "missing",
            apply: |path| fs::remove_file(path).unwrap(),
            expected: |e| matches!(e, VaultError::NotFound { .. }),
            passphrase: PASSPHRASE,
        },
        Damage {
            label: "not an age file",
            apply: |path| fs::write(path, "version = 1\n").unwrap(),
            expected: |e| matches!(e, VaultError::NotVault { .. }),
            passphrase: PASSPHRASE,
        },
    ];

    let mut messages = Vec::new();
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = vault_with_canary(dir.path());
        (case.apply)(&path);
        let before = fs::read(&path).ok();

        for open in [Vault::open, Vault::open_locked] {
            let error = open(&path, passphrase(case.passphrase)).unwrap_err();
            let message = error.to_string();
            assert!((case.expected)(&error), "{}: {message}", case.label);
            assert!(!message.contains(CANARY), "{}: {message}", case.label);
            assert!(
                !message.contains(case.passphrase),
                "{}: {message}",
                case.label
            );
            assert!(
                message.contains(&path.display().to_string()),
                "{}: {message}",
                case.label
            );
            assert_eq!(
                fs::read(&path).ok(),
                before,
                "{} changed the file",
                case.label
            );
            messages.push(message.replace(&path.display().to_string(), "PATH"));
        }
    }
    messages.dedup();
    let mut distinct = messages.clone();
    distinct.sort();
    distinct.dedup();
    // Both truncations and both tamperings share a message.
    assert_eq!(distinct.len(), 6, "{messages:#?}");
}

#[test]
fn permission_error_gives_chmod_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let error = Vault::open(&path, passphrase(PASSPHRASE)).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("chmod 600 {}", path.display())),
        "{message}"
    );
}

#[test]
fn invalid_plaintext_is_reported_without_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.age");
    let plaintext = format!(
        "version = 1\n[[credentials]]\nname = \"a\"\nprovider = \"github\"\nsecret = \"{CANARY}\"\npriority = \"{CANARY}\"\n"
    );
    let mut recipient = age::scrypt::Recipient::new(passphrase(PASSPHRASE));
    recipient.set_work_factor(FAST);
    let bytes = age::encrypt(&recipient, plaintext.as_bytes()).unwrap();
    fs::write(&path, &bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

    let error = Vault::open(&path, passphrase(PASSPHRASE)).unwrap_err();
    assert!(
        matches!(error, VaultError::InvalidPlaintext { line: Some(6), .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("CANARY"), "{error}");
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn save_detects_other_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    let mut first = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    let mut second = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();

    first.add(credential("first", OTHER_SECRET)).unwrap();
    first.save().unwrap();
    second.add(credential("second", OTHER_SECRET)).unwrap();
    let error = second.save().unwrap_err();
    assert!(matches!(error, VaultError::Conflict { .. }), "{error}");

    let vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    assert!(vault.get("first").is_some());
    assert!(vault.get("second").is_none());
}

#[test]
fn concurrent_locked_adds_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    let writers: Vec<_> = (0..6)
        .map(|index| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut vault = Vault::open_locked(&path, passphrase(PASSPHRASE)).unwrap();
                let secret = format!("ghp_writer{index:031}");
                vault
                    .add(credential(&format!("writer-{index}"), &secret))
                    .unwrap();
                vault.save().unwrap();
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    assert_eq!(vault.len(), 7);
    for index in 0..6 {
        assert!(
            vault.get(&format!("writer-{index}")).is_some(),
            "writer-{index}"
        );
    }
}

#[test]
fn age_cli_decrypts_vault() {
    if skip_without_age("age_cli_decrypts_vault") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = vault_with_canary(dir.path());
    let plain = dir.path().join("plain.toml");
    age_on_terminal(
        &format!("--decrypt -o {} {}", plain.display(), path.display()),
        &format!("{PASSPHRASE}\n"),
    );
    let text = fs::read_to_string(&plain).unwrap();
    assert!(text.starts_with("version = 1\n"), "{text}");
    assert!(text.contains(&format!("secret = \"{CANARY}\"")), "{text}");
    assert!(text.contains("name = \"work-bot\""), "{text}");
}

#[test]
fn vault_opens_age_cli_file() {
    if skip_without_age("vault_opens_age_cli_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.toml");
    fs::write(
        &plain,
        format!(
            "version = 1\n\n[[credentials]]\nname = \"handmade\"\nprovider = \"github\"\n\
             secret = \"{CANARY}\"\naccount = \"ci\"\n"
        ),
    )
    .unwrap();
    let path = dir.path().join("vault.age");
    age_on_terminal(
        &format!("--passphrase -o {} {}", path.display(), plain.display()),
        &format!("{PASSPHRASE}\n{PASSPHRASE}\n"),
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

    let mut vault = Vault::open(&path, passphrase(PASSPHRASE)).unwrap();
    let entry = vault.get("handmade").unwrap();
    assert_eq!(entry.secret().expose_secret(), CANARY);
    assert_eq!(entry.account(), Some("ci"));
    assert!(entry.created().is_none());

    // A save keeps the file readable by age.
    vault.add(credential("added", OTHER_SECRET)).unwrap();
    vault.save().unwrap();
    let again = dir.path().join("again.toml");
    age_on_terminal(
        &format!("--decrypt -o {} {}", again.display(), path.display()),
        &format!("{PASSPHRASE}\n"),
    );
    assert!(fs::read_to_string(&again)
        .unwrap()
        .contains("name = \"added\""));
}
