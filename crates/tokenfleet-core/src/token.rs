//! Tokens: a secret that never shows in output, and the public id that stands for it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// An access token of one provider.
///
/// The secret is kept in a [`SecretString`]. `Debug` and `Display` show
/// only the public [`TokenId`], so a token can be logged and put in errors.
#[derive(Clone)]
pub struct Token {
    id: TokenId,
    secret: SecretString,
    priority: u32,
    weight: u32,
    account: Option<String>,
    reserve: u64,
}

impl Token {
    /// Creates a token from its secret, with the fingerprint of the secret as its id.
    pub fn new(secret: impl Into<String>) -> Self {
        let secret: String = secret.into();
        let id = TokenId::fingerprint(secret.trim());
        Self {
            id,
            secret: SecretString::from(secret.trim().to_owned()),
            priority: 0,
            weight: 1,
            account: None,
            reserve: 0,
        }
    }

    /// Creates a token whose secret a [`TokenSource`](crate::TokenSource)
    /// fetches later. Its id is `label`, which stays the same when the
    /// secret changes.
    pub fn sourced(label: impl Into<String>) -> Self {
        Self {
            id: TokenId(label.into()),
            secret: SecretString::from(String::new()),
            priority: 0,
            weight: 1,
            account: None,
            reserve: 0,
        }
    }

    /// Returns a copy with another secret and the same id and settings.
    pub(crate) fn with_secret(&self, secret: SecretString) -> Self {
        Self {
            secret,
            ..self.clone()
        }
    }

    /// Sets a label that is shown in place of the fingerprint.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.id = TokenId(format!("{} ({})", label.into(), self.id.fingerprint_part()));
        self
    }

    /// Sets the priority: lower numbers are used first by the priority strategy.
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the weight that weighted strategies read.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Declares the account (quota group) the provider charges this token to.
    pub fn with_account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// Sets a budget the pool never spends, so the token's owner keeps it.
    pub fn with_reserve(mut self, reserve: u64) -> Self {
        self.reserve = reserve;
        self
    }

    /// Returns the public id of this token.
    pub fn id(&self) -> &TokenId {
        &self.id
    }

    /// Returns the secret, for putting on a request.
    pub fn secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// Returns the priority.
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Returns the weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Returns the declared account, if any.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// Returns the reserved budget.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Returns true when the secret is empty or only white space.
    pub fn is_empty(&self) -> bool {
        self.secret.expose_secret().is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("weight", &self.weight)
            .field("account", &self.account)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}

/// The public id of a token: `tok-` and the first 8 hex digits of the
/// SHA-256 of the secret, or a label followed by that fingerprint.
///
/// Eight hex digits of a hash reveal nothing usable about the secret, but
/// are enough to tell the tokens of one pool apart.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

impl TokenId {
    /// Computes the fingerprint id of a secret.
    pub fn fingerprint(secret: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        let mut id = String::with_capacity(12);
        id.push_str("tok-");
        for byte in &digest[..4] {
            id.push_str(&format!("{byte:02x}"));
        }
        Self(id)
    }

    /// Returns the id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the fingerprint alone (`tok-` and 8 hex digits), without
    /// the label, so that processes labelling one token differently still
    /// name it alike.
    pub fn fingerprint_part(&self) -> &str {
        match self.0.rfind("tok-") {
            Some(start) => self.0[start..].trim_end_matches(')'),
            None => &self.0,
        }
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

    #[test]
    fn debug_and_display_hide_secret() {
        let token = Token::new(CANARY).with_label("ci").with_account("bot");
        let debug = format!("{token:?} {:?} {}", token.id(), token);
        assert!(!debug.contains(CANARY), "{debug}");
        assert!(!debug.contains("CANARY"), "{debug}");
    }

    #[test]
    fn fingerprint_is_stable_and_short() {
        let a = TokenId::fingerprint(CANARY);
        assert_eq!(a, TokenId::fingerprint(CANARY));
        assert_eq!(a.as_str().len(), 12);
        assert!(a.as_str().starts_with("tok-"));
    }

    #[test]
    fn label_keeps_fingerprint() {
        let token = Token::new(CANARY).with_label("work-bot");
        let plain = TokenId::fingerprint(CANARY);
        assert_eq!(token.id().as_str(), format!("work-bot ({plain})"));
    }

    #[test]
    fn secret_is_trimmed() {
        let token = Token::new(format!("  {CANARY}\n"));
        assert_eq!(token.secret(), CANARY);
    }
}
