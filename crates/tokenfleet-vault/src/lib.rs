//! A credential vault for tokenfleet: tokens kept in one file encrypted
//! with a passphrase, so they stay out of config files and shell history.
//!
//! The file is in the [age](https://age-encryption.org/v1) format with a
//! single scrypt (passphrase) recipient, so the `age` command-line tool
//! reads and writes it too:
//!
//! ```text
//! age --decrypt vault.age            # prints the plaintext
//! age --passphrase -o vault.age plain.toml   # then chmod 600 vault.age
//! ```
//!
//! The plaintext is TOML with a format version:
//!
//! ```toml
//! version = 1
//!
//! [[credentials]]
//! name = "work-bot"                 # unique in the vault
//! provider = "github"               # the provider's `type` name
//! secret = "ghp_..."
//! account = "ci-bot"                # optional
//! priority = 0                      # optional, 0 when absent
//! note = "CI for the docs site"     # optional
//! created = 2026-12-04T18:30:00Z    # optional
//! ```
//!
//! The workflow follows GitFleet's `CredentialManager`: create or open a
//! vault with a passphrase, add credentials per provider, save, and load
//! them later. See [`Vault`].
//!
//! # Guarantees
//!
//! - A save writes a temporary file with mode 0600 beside the vault,
//!   syncs it, renames it over the vault and syncs the directory, so a
//!   crash leaves the old vault or the new one, never a mix.
//! - Writers take an advisory lock on `.NAME.lock` beside the vault, and a
//!   save refuses to overwrite changes saved by another writer since the
//!   vault was read.
//! - A vault file readable or writable by group or others is rejected.
//! - No error message, log line or `Debug` output contains a secret or
//!   the passphrase.
//!
//! # Testing hook
//!
//! With `TOKENFLEET_VAULT_TEST_PAUSE=before-rename` (or `after-rename`) in
//! the environment, a save prints `paused before-rename` to standard error
//! and sleeps for a minute at that point, so that a test can kill the
//! process there and check that the file survives.
//!
//! # Limitations
//!
//! - Unix only: permissions and locking use Unix modes and `flock`.
//! - The lock is advisory: `age` or an editor writing the file directly
//!   does not take it.

#![deny(missing_docs)]

mod credential;
mod error;
mod file;
mod format;
mod passphrase;
mod vault;

pub use credential::{Credential, CredentialInfo};
pub use error::VaultError;
pub use passphrase::{read_passphrase, Confirm, DEFAULT_PASSPHRASE_ENV};
pub use vault::{Vault, MAX_WORK_FACTOR};

/// Re-exported so callers build passphrases and secrets with the same type.
pub use secrecy;

/// Returns the default vault path: `$XDG_CONFIG_HOME/tokenfleet/vault.age`,
/// else `$HOME/.config/tokenfleet/vault.age`, or `None` when neither
/// variable is set to an absolute path.
pub fn default_path() -> Option<std::path::PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let config =
        absolute("XDG_CONFIG_HOME").or_else(|| absolute("HOME").map(|h| h.join(".config")))?;
    Some(config.join("tokenfleet").join("vault.age"))
}
