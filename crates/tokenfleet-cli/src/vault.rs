//! The `tokenfleet vault` commands: create a credential vault, add,
//! list, rename and remove entries, and export them to a shell.

use std::error::Error as _;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use tokenfleet::vault::secrecy::{ExposeSecret, SecretString};
use tokenfleet::vault::{
    read_passphrase, Confirm, Credential, CredentialInfo, Vault, VaultError, DEFAULT_PASSPHRASE_ENV,
};

/// The maximum size of a secret read from standard input, in bytes.
const MAX_SECRET_LEN: u64 = 64 * 1024;

/// The vault file and its passphrase source, shared by every subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct VaultFile {
    /// The vault file [default: $XDG_CONFIG_HOME/tokenfleet/vault.age, else
    /// ~/.config/tokenfleet/vault.age].
    #[arg(long = "vault", value_name = "PATH")]
    path: Option<PathBuf>,
    /// The environment variable that contains the passphrase. When it is
    /// unset, the passphrase is prompted for on the terminal.
    #[arg(long, value_name = "VAR", default_value = DEFAULT_PASSPHRASE_ENV)]
    passphrase_env: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Create an empty vault file, encrypted with a new passphrase.
    Init {
        #[command(flatten)]
        file: VaultFile,
        /// The scrypt work factor as log2(N), from 1 to 22 [default: the
        /// value that takes about one second on this machine].
        #[arg(long, value_name = "LOG2_N")]
        work_factor: Option<u8>,
    },
    /// Add a credential, with its secret typed at a prompt or piped in.
    ///
    /// The secret is prompted for without echo on a terminal, or read from
    /// standard input when that is not a terminal. It is never an argument,
    /// because arguments show in the process list and shell history.
    Add {
        #[command(flatten)]
        file: VaultFile,
        /// The entry's name, unique in the vault, such as "work-bot".
        name: String,
        /// The provider's `type` name.
        #[arg(long, default_value = "github")]
        provider: String,
        /// The account (quota group) the provider charges the token to.
        #[arg(long)]
        account: Option<String>,
        /// The priority; lower is used first by the priority strategy.
        #[arg(long, default_value_t = 0)]
        priority: u32,
        /// A note, such as what the token is for.
        #[arg(long)]
        note: Option<String>,
    },
    /// List names, providers, fingerprints and notes; never secrets.
    List {
        #[command(flatten)]
        file: VaultFile,
        /// Output format: an aligned table, or one JSON object per line.
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Remove a credential.
    Remove {
        #[command(flatten)]
        file: VaultFile,
        /// The entry's name.
        name: String,
    },
    /// Rename a credential; the new name must not be in use.
    Rename {
        #[command(flatten)]
        file: VaultFile,
        /// The current name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Print `export NAME='SECRET'` lines for a shell to evaluate.
    ///
    /// This prints secrets on purpose, to standard output only, for
    /// `eval "$(tokenfleet vault export-env work-bot)"`. The variable is
    /// the entry's name in upper case with `-` and `.` replaced by `_`.
    /// A terminal as standard output is rejected unless --force is given.
    ExportEnv {
        #[command(flatten)]
        file: VaultFile,
        /// The entries to export.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Export every entry.
        #[arg(long)]
        all: bool,
        /// Print even when standard output is a terminal.
        #[arg(long)]
        force: bool,
    },
}

/// Runs one `tokenfleet vault` subcommand.
pub(crate) fn run(command: VaultCommand) -> Result<ExitCode, String> {
    match command {
        VaultCommand::Init { file, work_factor } => init(&file, work_factor),
        VaultCommand::Add {
            file,
            name,
            provider,
            account,
            priority,
            note,
        } => add(&file, name, provider, account, priority, note),
        VaultCommand::List { file, format } => list(&file, format),
        VaultCommand::Remove { file, name } => change(&file, |vault| {
            vault.remove(&name)?;
            Ok(format!("removed {name:?}"))
        }),
        VaultCommand::Rename { file, from, to } => change(&file, |vault| {
            vault.rename(&from, &to)?;
            Ok(format!("renamed {from:?} to {to:?}"))
        }),
        VaultCommand::ExportEnv {
            file,
            names,
            all,
            force,
        } => export_env(&file, &names, all, force),
    }
    .map(|()| ExitCode::SUCCESS)
}

impl VaultFile {
    fn path(&self) -> Result<PathBuf, String> {
        match &self.path {
            Some(path) => Ok(path.clone()),
            None => tokenfleet::vault::default_path().ok_or_else(|| {
                "no vault path: pass --vault PATH, or set HOME or XDG_CONFIG_HOME".to_owned()
            }),
        }
    }

    fn passphrase(&self, confirm: Confirm) -> Result<SecretString, String> {
        read_passphrase(&self.passphrase_env, confirm).map_err(describe)
    }

    fn open(&self) -> Result<Vault, String> {
        Vault::open(self.path()?, self.passphrase(Confirm::Once)?).map_err(describe)
    }

    fn open_locked(&self) -> Result<Vault, String> {
        Vault::open_locked(self.path()?, self.passphrase(Confirm::Once)?).map_err(describe)
    }
}

/// Formats an error with its causes, such as the operating system's reason
/// for a failed write.
fn describe(error: VaultError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

fn init(file: &VaultFile, work_factor: Option<u8>) -> Result<(), String> {
    let path = file.path()?;
    if path.exists() {
        return Err(describe(VaultError::AlreadyExists { path }));
    }
    let passphrase = file.passphrase(Confirm::Twice)?;
    let vault = match work_factor {
        Some(log_n) => Vault::create_with_work_factor(&path, passphrase, log_n),
        None => Vault::create(&path, passphrase),
    }
    .map_err(describe)?;
    eprintln!("created vault {}", vault.path().display());
    Ok(())
}

fn add(
    file: &VaultFile,
    name: String,
    provider: String,
    account: Option<String>,
    priority: u32,
    note: Option<String>,
) -> Result<(), String> {
    let path = file.path()?;
    if !path.exists() {
        return Err(describe(VaultError::NotFound { path }));
    }
    let passphrase = file.passphrase(Confirm::Once)?;
    let secret = read_secret(&name)?;

    let mut credential = Credential::new(name.clone(), provider, secret)
        .map_err(describe)?
        .with_priority(priority);
    if let Some(account) = account {
        credential = credential.with_account(account).map_err(describe)?;
    }
    if let Some(note) = note {
        credential = credential.with_note(note).map_err(describe)?;
    }
    let fingerprint = credential.fingerprint();

    // Hold the writers' lock from reading to saving, so a concurrent `add`
    // waits instead of overwriting this one.
    let mut vault = Vault::open_locked(&path, passphrase).map_err(describe)?;
    vault.add(credential).map_err(describe)?;
    vault.save().map_err(describe)?;
    eprintln!("added {name:?} ({fingerprint}) to {}", path.display());
    Ok(())
}

/// Reads a secret: prompted for without echo on a terminal, else the whole
/// of standard input, trimmed.
fn read_secret(name: &str) -> Result<SecretString, String> {
    if std::io::stdin().is_terminal() {
        let secret = rpassword::prompt_password(format!("secret for {name:?}: "))
            .map_err(|error| format!("reading the secret from the terminal failed: {error}"))?;
        return Ok(SecretString::from(secret));
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_SECRET_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("reading the secret from standard input failed: {error}"))?;
    if bytes.len() as u64 > MAX_SECRET_LEN {
        return Err(format!(
            "standard input is longer than {MAX_SECRET_LEN} bytes; pipe only the secret"
        ));
    }
    let secret = String::from_utf8(bytes)
        .map_err(|_| "the secret on standard input is not UTF-8 text".to_owned())?;
    if secret.trim().is_empty() {
        return Err(
            "standard input is empty; pipe the secret in, or run on a terminal to be prompted"
                .to_owned(),
        );
    }
    Ok(SecretString::from(secret))
}

/// Opens the vault under the writers' lock, applies `edit` and saves.
fn change(
    file: &VaultFile,
    edit: impl FnOnce(&mut Vault) -> Result<String, VaultError>,
) -> Result<(), String> {
    let mut vault = file.open_locked()?;
    let done = edit(&mut vault).map_err(describe)?;
    vault.save().map_err(describe)?;
    eprintln!("{done} in {}", vault.path().display());
    Ok(())
}

fn list(file: &VaultFile, format: ListFormat) -> Result<(), String> {
    let vault = file.open()?;
    let entries = vault.list();
    let mut out = std::io::stdout().lock();
    let written = match format {
        ListFormat::Json => entries
            .iter()
            .try_for_each(|entry| writeln!(out, "{}", json_line(entry))),
        ListFormat::Table => write_table(&mut out, &entries),
    };
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing to standard output failed: {error}"))
        }
        _ => Ok(()),
    }
}

fn json_line(entry: &CredentialInfo) -> serde_json::Value {
    json!({
        "name": entry.name,
        "provider": entry.provider,
        "fingerprint": entry.fingerprint.as_str(),
        "account": entry.account,
        "priority": entry.priority,
        "note": entry.note,
        "created": entry.created.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
    })
}

fn write_table(out: &mut impl Write, entries: &[CredentialInfo]) -> std::io::Result<()> {
    let width = |header: &str, values: Vec<&str>| {
        values
            .into_iter()
            .map(|v| v.chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let name = width("NAME", entries.iter().map(|e| e.name.as_str()).collect());
    let provider = width(
        "PROVIDER",
        entries.iter().map(|e| e.provider.as_str()).collect(),
    );
    let account = width(
        "ACCOUNT",
        entries
            .iter()
            .map(|e| e.account.as_deref().unwrap_or("-"))
            .collect(),
    );
    writeln!(
        out,
        "{:<name$}  {:<provider$}  {:<12}  {:<account$}  {:>8}  NOTE",
        "NAME", "PROVIDER", "FINGERPRINT", "ACCOUNT", "PRIORITY"
    )?;
    for entry in entries {
        writeln!(
            out,
            "{:<name$}  {:<provider$}  {:<12}  {:<account$}  {:>8}  {}",
            entry.name,
            entry.provider,
            entry.fingerprint.as_str(),
            entry.account.as_deref().unwrap_or("-"),
            entry.priority,
            entry.note.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}

fn export_env(file: &VaultFile, names: &[String], all: bool, force: bool) -> Result<(), String> {
    if std::io::stdout().is_terminal() && !force {
        return Err(
            "export-env prints secrets and standard output is a terminal; pipe it to a shell \
             (eval \"$(tokenfleet vault export-env NAME)\"), or pass --force"
                .to_owned(),
        );
    }
    let vault = file.open()?;
    let chosen: Vec<&Credential> = if all {
        vault.credentials().iter().collect()
    } else {
        names
            .iter()
            .map(|name| {
                vault
                    .get(name)
                    .ok_or_else(|| describe(VaultError::EntryNotFound { name: name.clone() }))
            })
            .collect::<Result<_, _>>()?
    };

    let mut lines = Vec::with_capacity(chosen.len());
    let mut variables: Vec<(String, &str)> = Vec::new();
    for credential in chosen {
        let variable = variable_name(credential.name());
        if let Some((_, other)) = variables.iter().find(|(v, _)| *v == variable) {
            return Err(format!(
                "vault entries {other:?} and {:?} both export as {variable}; rename one of them",
                credential.name()
            ));
        }
        lines.push(zeroize::Zeroizing::new(format!(
            "export {variable}={}\n",
            shell_quote(credential.secret().expose_secret())
        )));
        variables.push((variable, credential.name()));
    }

    let mut out = std::io::stdout().lock();
    for line in &lines {
        out.write_all(line.as_bytes())
            .map_err(|error| format!("writing to standard output failed: {error}"))?;
    }
    Ok(())
}

/// Turns an entry name into an environment variable name: upper case, with
/// `-` and `.` as `_`, and a leading `_` before a digit.
fn variable_name(name: &str) -> String {
    let mut variable: String = name
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    if variable.starts_with(|c: char| c.is_ascii_digit()) {
        variable.insert(0, '_');
    }
    variable
}

/// Quotes a value for a POSIX shell: single quotes, with each `'` written as `'\''`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_name_is_shell_safe() {
        assert_eq!(variable_name("work-bot"), "WORK_BOT");
        assert_eq!(variable_name("ci.main_2"), "CI_MAIN_2");
        assert_eq!(variable_name("2nd"), "_2ND");
    }

    #[test]
    fn shell_quote_escapes_quotes() {
        assert_eq!(shell_quote("ab"), "'ab'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
