//! Token sources that read a secret from outside the config file: a file,
//! a program's output, or an entry of the encrypted vault.
//!
//! Every error names the source (the file, the program or the vault entry)
//! and never contains the secret.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The default time a `command` source may run.
pub(crate) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The maximum size of a token file or a command's output, in bytes.
const MAX_SECRET_LEN: u64 = 64 * 1024;
/// The part of a failed command's standard error kept for the message.
const MAX_STDERR_SUMMARY: usize = 120;

/// Reads a token from a file that only its owner can access, trimmed.
pub(crate) fn read_file(path: &Path) -> Result<String, String> {
    let name = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "file {name} not found; write the token into it, or fix the path"
            ))
        }
        Err(error) => return Err(format!("reading file {name} failed: {error}")),
    };
    if !metadata.is_file() {
        return Err(format!(
            "{name} is not a regular file; point `file` at the token file"
        ));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "file {name} is accessible by group or others (mode {mode:03o}); run `chmod 600 {name}`"
        ));
    }

    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_LEN + 1).read_to_end(&mut bytes))
        .map_err(|error| format!("reading file {name} failed: {error}"))?;
    if bytes.len() as u64 > MAX_SECRET_LEN {
        return Err(format!(
            "file {name} is larger than {MAX_SECRET_LEN} bytes; it must contain only the token"
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("file {name} is not UTF-8 text; it must contain only the token"))?;
    check_single_word(text.trim(), || format!("file {name}"))
}

/// Runs a program without a shell and returns its standard output, trimmed.
///
/// Standard input is closed, so a program that reads input fails
/// instead of waiting for the timeout.
pub(crate) fn run_command(
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => {
                format!("command `{program}` not found; check the program name and PATH")
            }
            _ => format!("command `{program}` could not be started: {error}"),
        })?;

    // Both pipes are read on threads so that a full pipe never blocks the
    // program while this thread waits for it to exit.
    let (stdout_sender, stdout_receiver) = mpsc::channel();
    let (stderr_sender, stderr_receiver) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || stdout_sender.send(read_capped(stdout, MAX_SECRET_LEN)));
    }
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || stderr_sender.send(read_capped(stderr, 4096)));
    }

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // An error here means the program exited meanwhile.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "command `{program}` timed out after {}; raise `timeout` (such as \
                     timeout = \"30s\"), or check that it does not wait for input",
                    humantime::format_duration(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => return Err(format!("waiting for command `{program}` failed: {error}")),
        }
    };

    // A child of the program may keep the pipes open after it exits, so
    // the output is collected only until the deadline, or for one second
    // when the program exited just before it.
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    };
    let stderr = stderr_receiver
        .recv_timeout(remaining())
        .unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "command `{program}` {}{}",
            describe_status(status),
            stderr_summary(&stderr)
        ));
    }
    let stdout = stdout_receiver.recv_timeout(remaining()).map_err(|_| {
        format!(
            "command `{program}` exited, but its standard output stayed open past the \
             timeout; make sure no background process inherits it"
        )
    })?;
    if stdout.len() as u64 > MAX_SECRET_LEN {
        return Err(format!(
            "command `{program}` printed more than {MAX_SECRET_LEN} bytes; it must print only the token"
        ));
    }
    let text = String::from_utf8(stdout).map_err(|_| {
        format!("command `{program}` printed text that is not UTF-8; it must print only the token")
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "command `{program}` printed nothing on standard output; it must print the token"
        ));
    }
    check_single_word(trimmed, || format!("the output of command `{program}`"))
}

/// Reads up to `cap` bytes plus one, then discards the rest so the writer
/// never blocks on a full pipe.
fn read_capped(reader: impl Read, cap: u64) -> Vec<u8> {
    let mut reader = reader;
    let mut bytes = Vec::new();
    let _ = (&mut reader).take(cap + 1).read_to_end(&mut bytes);
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    bytes
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("failed with exit status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("failed ({status})"),
    }
}

/// Summarizes standard error as its first line, shortened, with anything
/// that looks like a token replaced, because a failing helper may print
/// the secret there.
fn stderr_summary(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let Some(line) = text.lines().map(str::trim).find(|line| !line.is_empty()) else {
        return String::new();
    };
    let mut summary = crate::config::redact_tokens(line);
    if let Some((end, _)) = summary.char_indices().nth(MAX_STDERR_SUMMARY) {
        summary.truncate(end);
        summary.push_str("...");
    }
    format!(" (stderr: {summary})")
}

/// Rejects a secret with white space inside, such as a second line of
/// output that would otherwise be sent as part of the token.
fn check_single_word(secret: &str, source: impl Fn() -> String) -> Result<String, String> {
    if secret.is_empty() {
        return Err(format!("{} is empty; it must contain the token", source()));
    }
    if secret.chars().any(char::is_whitespace) {
        return Err(format!(
            "{} contains more than one word or line; it must contain only the token",
            source()
        ));
    }
    Ok(secret.to_owned())
}

/// The `[vault]` table: where the vault file is and which variable contains
/// its passphrase. Shared by every provider, so the vault is decrypted
/// once per configuration.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "vault"), allow(dead_code))]
pub(crate) struct VaultSettings {
    /// The vault file; the default path when `None`.
    path: Option<PathBuf>,
    /// The passphrase variable; `TOKENFLEET_VAULT_PASSPHRASE` when `None`.
    passphrase_env: Option<String>,
    #[cfg(feature = "vault")]
    opened: std::sync::OnceLock<Result<tokenfleet_vault::Vault, String>>,
}

/// A vault entry's secret with the settings it carries.
#[cfg_attr(not(feature = "vault"), allow(dead_code))]
pub(crate) struct VaultEntry {
    pub(crate) secret: String,
    pub(crate) account: Option<String>,
    pub(crate) priority: u32,
}

impl VaultSettings {
    pub(crate) fn new(path: Option<PathBuf>, passphrase_env: Option<String>) -> Self {
        Self {
            path,
            passphrase_env,
            #[cfg(feature = "vault")]
            opened: std::sync::OnceLock::new(),
        }
    }

    /// Fails: the parser rejects `vault` sources in a build without the
    /// `vault` feature, so this is not reached.
    #[cfg(not(feature = "vault"))]
    pub(crate) fn entry(&self, name: &str, _provider: &str) -> Result<VaultEntry, String> {
        Err(format!(
            "vault entry {name:?} cannot be read: tokenfleet was built without the `vault` feature"
        ))
    }

    /// Returns the entry `name` of the vault, which must be for `provider`.
    /// The vault is opened on the first call, and its result is kept.
    #[cfg(feature = "vault")]
    pub(crate) fn entry(&self, name: &str, provider: &str) -> Result<VaultEntry, String> {
        use tokenfleet_vault::secrecy::ExposeSecret;

        let vault = self
            .opened
            .get_or_init(|| self.open())
            .as_ref()
            .map_err(Clone::clone)?;
        let credential = vault.get(name).ok_or_else(|| {
            format!(
                "vault entry {name:?} not found in vault file {}; add it with \
                 `tokenfleet vault add {name}`, or fix the name",
                vault.path().display()
            )
        })?;
        if credential.provider() != provider {
            return Err(format!(
                "vault entry {name:?} is for provider {:?}, not {provider:?}; move it to a \
                 {} provider, or use another entry",
                credential.provider(),
                credential.provider()
            ));
        }
        Ok(VaultEntry {
            secret: credential.secret().expose_secret().to_owned(),
            account: credential.account().map(str::to_owned),
            priority: credential.priority(),
        })
    }

    #[cfg(feature = "vault")]
    fn open(&self) -> Result<tokenfleet_vault::Vault, String> {
        use std::error::Error as _;

        let path = match &self.path {
            Some(path) => path.clone(),
            None => tokenfleet_vault::default_path().ok_or_else(|| {
                "no vault path: set `path` in the `[vault]` table, or set HOME".to_owned()
            })?,
        };
        let var = self
            .passphrase_env
            .as_deref()
            .unwrap_or(tokenfleet_vault::DEFAULT_PASSPHRASE_ENV);
        let opened = tokenfleet_vault::read_passphrase(var, tokenfleet_vault::Confirm::Once)
            .and_then(|passphrase| tokenfleet_vault::Vault::open(&path, passphrase));
        opened.map_err(|error| {
            let mut message = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            message
        })
    }
}
