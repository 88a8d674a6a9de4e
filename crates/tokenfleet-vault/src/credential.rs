//! Credentials, their public summaries and the checks on their fields.

use std::fmt;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};
use tokenfleet_core::TokenId;

use crate::VaultError;

/// The maximum length of a name, provider or account, in bytes.
const MAX_NAME_LEN: usize = 64;
/// The maximum length of a note, in bytes.
const MAX_NOTE_LEN: usize = 200;

/// One stored credential: a provider's token under a unique name.
///
/// `Debug` shows every field but the secret.
#[derive(Clone)]
pub struct Credential {
    pub(crate) name: String,
    pub(crate) provider: String,
    pub(crate) secret: SecretString,
    pub(crate) account: Option<String>,
    pub(crate) priority: u32,
    pub(crate) note: Option<String>,
    pub(crate) created: Option<SystemTime>,
}

impl Credential {
    /// Creates a credential created now, with priority 0.
    ///
    /// Surrounding white space is trimmed from the secret.
    ///
    /// # Errors
    ///
    /// [`VaultError::InvalidField`] for a name or provider that is not 1 to
    /// 64 letters, digits, `-`, `_` or `.` starting with a letter or digit;
    /// [`VaultError::InvalidSecret`] for an empty secret or one with white
    /// space inside.
    pub fn new(
        name: impl Into<String>,
        provider: impl Into<String>,
        secret: SecretString,
    ) -> Result<Self, VaultError> {
        let name = name.into();
        let provider = provider.into();
        check_identifier("name", &name)?;
        check_identifier("provider", &provider)?;
        let secret = SecretString::from(secret.expose_secret().trim().to_owned());
        check_secret(&name, &secret)?;
        Ok(Self {
            name,
            provider,
            secret,
            account: None,
            priority: 0,
            note: None,
            created: Some(SystemTime::now()),
        })
    }

    /// Sets the account (quota group) the provider charges this token to.
    ///
    /// # Errors
    ///
    /// [`VaultError::InvalidField`] for an empty account, one longer than
    /// 64 bytes, or one with control characters.
    pub fn with_account(mut self, account: impl Into<String>) -> Result<Self, VaultError> {
        let account = account.into();
        check_text("account", &account, MAX_NAME_LEN)?;
        self.account = Some(account);
        Ok(self)
    }

    /// Sets the priority: lower numbers are used first by the priority strategy.
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets a free-text note, such as what the token is for.
    ///
    /// # Errors
    ///
    /// [`VaultError::InvalidField`] for an empty note, one longer than 200
    /// bytes, or one with control characters.
    pub fn with_note(mut self, note: impl Into<String>) -> Result<Self, VaultError> {
        let note = note.into();
        check_text("note", &note, MAX_NOTE_LEN)?;
        self.note = Some(note);
        Ok(self)
    }

    /// Returns the name, unique within its vault.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the provider's `type` name, such as `github`.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Returns the secret.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// Returns the declared account, if any.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// Returns the priority.
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Returns the note, if any.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Returns when the credential was added, when the vault records it.
    pub fn created(&self) -> Option<SystemTime> {
        self.created
    }

    /// Returns the public fingerprint of the secret, as the token pool shows it.
    pub fn fingerprint(&self) -> TokenId {
        TokenId::fingerprint(self.secret.expose_secret())
    }

    /// Returns the summary that [`Vault::list`](crate::Vault::list) shows.
    pub fn info(&self) -> CredentialInfo {
        CredentialInfo {
            name: self.name.clone(),
            provider: self.provider.clone(),
            fingerprint: self.fingerprint(),
            account: self.account.clone(),
            priority: self.priority,
            note: self.note.clone(),
            created: self.created,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("fingerprint", &self.fingerprint())
            .field("account", &self.account)
            .field("priority", &self.priority)
            .field("note", &self.note)
            .finish_non_exhaustive()
    }
}

/// The public part of a credential: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialInfo {
    /// The name, unique within its vault.
    pub name: String,
    /// The provider's `type` name.
    pub provider: String,
    /// The fingerprint of the secret.
    pub fingerprint: TokenId,
    /// The declared account.
    pub account: Option<String>,
    /// The priority.
    pub priority: u32,
    /// The note.
    pub note: Option<String>,
    /// When the credential was added.
    pub created: Option<SystemTime>,
}

/// Checks a name or provider: 1 to 64 ASCII letters, digits, `-`, `_` or
/// `.`, starting with a letter or digit, so that it is safe in file
/// names, shell words and environment variable names.
pub(crate) fn check_identifier(field: &'static str, value: &str) -> Result<(), VaultError> {
    let valid_start = value.starts_with(|c: char| c.is_ascii_alphanumeric());
    let valid_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if value.len() > MAX_NAME_LEN || !valid_start || !valid_chars {
        return Err(VaultError::InvalidField {
            field,
            value: printable(value),
            reason: "use 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
        });
    }
    if looks_like_token(value) {
        // The value is left out of the error because it is probably a secret.
        return Err(VaultError::InvalidField {
            field,
            value: "[redacted]".to_owned(),
            reason: "this looks like a token; give the secret at the prompt or on \
                     standard input, and a short name here",
        });
    }
    Ok(())
}

/// Recognizes a secret pasted in place of a name: a known token prefix
/// (GitHub's `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`, GitLab's
/// `glpat-`), or 32 characters or more without `-` or `_`, as in GitHub's
/// older 40-character hex tokens.
fn looks_like_token(value: &str) -> bool {
    const PREFIXES: [&str; 7] = [
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
    ];
    PREFIXES.iter().any(|prefix| value.starts_with(prefix))
        || (value.len() >= 32 && !value.contains(['-', '_']))
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), VaultError> {
    let reason = if value.trim().is_empty() {
        "it is empty; leave it out instead"
    } else if value.len() > max {
        "it is too long; keep it under 64 bytes for an account and 200 for a note"
    } else if value.chars().any(char::is_control) {
        "it contains control characters such as a newline; write it on one line"
    } else {
        return Ok(());
    };
    Err(VaultError::InvalidField {
        field,
        value: printable(value),
        reason,
    })
}

pub(crate) fn check_secret(name: &str, secret: &SecretString) -> Result<(), VaultError> {
    let secret = secret.expose_secret();
    let reason = if secret.is_empty() {
        "it is empty"
    } else if secret.chars().any(char::is_whitespace) {
        "it contains white space; a token is a single word"
    } else if secret.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(VaultError::InvalidSecret {
        name: name.to_owned(),
        reason,
    })
}

/// Shortens a rejected value for an error message.
fn printable(value: &str) -> String {
    const KEEP: usize = 80;
    match value.char_indices().nth(KEEP) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

    #[test]
    fn debug_hides_secret() {
        let credential = Credential::new("work-bot", "github", CANARY.to_owned().into())
            .unwrap()
            .with_note("ci")
            .unwrap();
        let debug = format!("{credential:?} {:?}", credential.info());
        assert!(!debug.contains(CANARY), "{debug}");
        assert!(debug.contains("work-bot"));
        assert!(debug.contains(credential.fingerprint().as_str()));
    }

    #[test]
    fn new_trims_secret() {
        let credential = Credential::new("a", "github", format!("  {CANARY}\n").into()).unwrap();
        assert_eq!(credential.secret().expose_secret(), CANARY);
    }

    #[test]
    fn new_rejects_bad_names() {
        for name in ["", "-x", "a b", "a/b", "ä", &"x".repeat(65), CANARY] {
            let error = Credential::new(name, "github", CANARY.to_owned().into()).unwrap_err();
            assert!(
                matches!(error, VaultError::InvalidField { field: "name", .. }),
                "{name:?}: {error}"
            );
            assert!(!error.to_string().contains("CANARY"), "{error}");
        }
    }

    #[test]
    fn new_rejects_bad_secrets() {
        for secret in ["", "   ", "ghp_a b"] {
            let error = Credential::new("a", "github", secret.to_owned().into()).unwrap_err();
            assert!(matches!(error, VaultError::InvalidSecret { .. }), "{error}");
            assert!(!error.to_string().contains("ghp_a"), "{error}");
        }
    }

    #[test]
    fn note_rejects_newline() {
        let credential = Credential::new("a", "github", CANARY.to_owned().into()).unwrap();
        let error = credential.with_note("line\nbreak").unwrap_err();
        assert!(matches!(
            error,
            VaultError::InvalidField { field: "note", .. }
        ));
    }
}
