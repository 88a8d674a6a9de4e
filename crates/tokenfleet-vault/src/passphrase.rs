//! Passphrase sources: an environment variable, or a prompt on the
//! terminal. Never from a command-line argument, which other users
//! can read in the process list and which lands in shell history.

use std::io::IsTerminal;

use secrecy::SecretString;

use crate::VaultError;

/// The environment variable read for the passphrase unless another is named.
pub const DEFAULT_PASSPHRASE_ENV: &str = "TOKENFLEET_VAULT_PASSPHRASE";

/// Whether a prompted passphrase is typed once or twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Ask once, to open an existing vault.
    Once,
    /// Ask twice and compare, to create a vault.
    Twice,
}

/// Reads the passphrase from the environment variable `var`, or, when it
/// is unset and standard input is a terminal, prompts for it on the
/// terminal without echo.
///
/// # Errors
///
/// [`VaultError::EmptyPassphrase`] when the variable or the typed
/// passphrase is empty; [`VaultError::NoPassphrase`] when the variable is
/// unset and standard input is not a terminal;
/// [`VaultError::PassphraseMismatch`] when the two typed passphrases
/// differ; [`VaultError::Io`] when the terminal cannot be read.
pub fn read_passphrase(var: &str, confirm: Confirm) -> Result<SecretString, VaultError> {
    match std::env::var(var) {
        Ok(value) if value.is_empty() => {
            return Err(VaultError::EmptyPassphrase {
                hint: format!(
                "set the environment variable {var} to the passphrase, or unset it to be prompted"
            ),
            })
        }
        Ok(value) => return Ok(SecretString::from(value)),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(VaultError::EmptyPassphrase {
                hint: format!(
                    "the environment variable {var} is not valid UTF-8; set it to the passphrase"
                ),
            })
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    if !std::io::stdin().is_terminal() {
        return Err(VaultError::NoPassphrase {
            var: var.to_owned(),
        });
    }

    let first = prompt("vault passphrase: ")?;
    if confirm == Confirm::Twice {
        let second = prompt("repeat the passphrase: ")?;
        if *first != *second {
            return Err(VaultError::PassphraseMismatch);
        }
    }
    if first.is_empty() {
        return Err(VaultError::EmptyPassphrase {
            hint: "type at least one character".to_owned(),
        });
    }
    Ok(SecretString::from(first.to_string()))
}

fn prompt(text: &str) -> Result<zeroize::Zeroizing<String>, VaultError> {
    rpassword::prompt_password(text)
        .map(zeroize::Zeroizing::new)
        .map_err(|error| VaultError::io("reading the passphrase from", "/dev/tty", error))
}
