//! The error type of the vault.

use std::io;
use std::path::PathBuf;

/// An error opening, changing or saving a vault.
///
/// Messages name the vault file or the entry, and never contain a secret
/// or the passphrase. Every error that concerns an existing file is raised
/// before that file is changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The vault file does not exist.
    #[error("vault file {path} not found; create it with `tokenfleet vault init --vault {path}`")]
    NotFound {
        /// The vault file.
        path: PathBuf,
    },
    /// [`Vault::create`](crate::Vault::create) found a file at the path.
    #[error("vault file {path} already exists; open it, or choose another path")]
    AlreadyExists {
        /// The vault file.
        path: PathBuf,
    },
    /// The file is readable or writable by group or others.
    #[error(
        "vault file {path} is accessible by group or others (mode {mode:03o}); \
         run `chmod 600 {path}`"
    )]
    Permissions {
        /// The vault file.
        path: PathBuf,
        /// The permission bits of the file.
        mode: u32,
    },
    /// The passphrase does not decrypt the file.
    ///
    /// NOTE: age cannot tell this apart from a modified scrypt stanza in the
    /// header, which also fails to decrypt.
    #[error("wrong passphrase for vault file {path}")]
    WrongPassphrase {
        /// The vault file.
        path: PathBuf,
    },
    /// The file ends before the encrypted data does.
    #[error("vault file {path} is truncated; restore it from a backup")]
    Truncated {
        /// The vault file.
        path: PathBuf,
    },
    /// The file failed authentication (a bad MAC or tag): it was modified,
    /// or cut short inside its encrypted payload, after it was written.
    #[error(
        "vault file {path} failed authentication: it was modified or damaged after it \
         was written; restore it from a backup"
    )]
    Tampered {
        /// The vault file.
        path: PathBuf,
    },
    /// The file is not an age file encrypted with a passphrase.
    #[error("{path} is not a vault file: {reason}")]
    NotVault {
        /// The file.
        path: PathBuf,
        /// The problem with the file.
        reason: &'static str,
    },
    /// The file requires a higher scrypt work factor than [`MAX_WORK_FACTOR`](crate::MAX_WORK_FACTOR).
    #[error(
        "vault file {path} requires scrypt work factor {required}, above the maximum {maximum}; \
         re-encrypt it with a lower work factor"
    )]
    ExcessiveWork {
        /// The vault file.
        path: PathBuf,
        /// The work factor (log2 of scrypt's N) of the file.
        required: u8,
        /// The largest work factor read.
        maximum: u8,
    },
    /// The file decrypted, but its plaintext is not a valid vault.
    #[error("vault file {path} decrypted, but its contents are invalid{}: {message}", line_suffix(*line))]
    InvalidPlaintext {
        /// The vault file.
        path: PathBuf,
        /// The 1-based line of the plaintext, when known.
        line: Option<usize>,
        /// The problem, with any quoted value removed.
        message: String,
    },
    /// Another writer saved the file after this vault was opened.
    #[error("vault file {path} changed since it was opened; open it again and repeat the change")]
    Conflict {
        /// The vault file.
        path: PathBuf,
    },
    /// The vault already has an entry with this name.
    #[error("vault entry {name:?} already exists; remove it first or choose another name")]
    DuplicateName {
        /// The entry's name.
        name: String,
    },
    /// The vault has no entry with this name.
    #[error("vault entry {name:?} not found")]
    EntryNotFound {
        /// The requested name.
        name: String,
    },
    /// A name, provider, account or note is invalid.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidField {
        /// The field: `name`, `provider`, `account` or `note`.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// The rule a valid value follows.
        reason: &'static str,
    },
    /// A secret is empty or contains white space.
    #[error("invalid secret for vault entry {name:?}: {reason}")]
    InvalidSecret {
        /// The entry's name.
        name: String,
        /// The problem with the secret.
        reason: &'static str,
    },
    /// No passphrase source is available.
    #[error(
        "no vault passphrase: set the environment variable {var}, or run on a terminal \
         to be prompted"
    )]
    NoPassphrase {
        /// The environment variable that was checked.
        var: String,
    },
    /// The passphrase is empty.
    #[error("the vault passphrase is empty; {hint}")]
    EmptyPassphrase {
        /// The way to supply a non-empty passphrase.
        hint: String,
    },
    /// The two passphrases typed at the prompt differ.
    #[error("the passphrases do not match; try again")]
    PassphraseMismatch,
    /// The scrypt work factor is out of range.
    #[error("invalid scrypt work factor {value}; use a value from 1 to {max}", max = crate::MAX_WORK_FACTOR)]
    InvalidWorkFactor {
        /// The rejected work factor.
        value: u8,
    },
    /// A file operation failed.
    #[error("{operation} {path} failed")]
    Io {
        /// The operation, such as `reading` or `renaming into`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl VaultError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

fn line_suffix(line: Option<usize>) -> String {
    match line {
        Some(line) => format!(" at line {line}"),
        None => String::new(),
    }
}
