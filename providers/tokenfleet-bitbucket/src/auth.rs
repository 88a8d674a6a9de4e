//! The `Authorization` header forms and the checks of basic-auth tokens.

use std::fmt;

use http::HeaderValue;
use tokenfleet_core::{Token, TokenId};

use crate::config::AuthScheme;

/// The reason a token cannot be sent in the configured auth form.
///
/// It names the token by its public id; the secret never appears.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenFormatError {
    /// The public id of the token.
    pub token: TokenId,
    /// The problem found in the token.
    pub problem: TokenProblem,
}

/// The problem [`TokenFormatError`] reports about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenProblem {
    /// A basic-auth token has no `:` between the username and the secret.
    MissingColon,
    /// A basic-auth token has nothing before its first `:`.
    EmptyUsername,
    /// A basic-auth token has nothing after its first `:`.
    EmptySecret,
    /// The token contains characters an HTTP header cannot carry.
    Unsendable,
}

impl fmt::Display for TokenFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = &self.token;
        match self.problem {
            TokenProblem::MissingColon => write!(
                f,
                "invalid basic-auth token {token}: it has no `:`; write it as `username:secret`, \
                 a Bitbucket username or Atlassian email, a colon, then the API token or app \
                 password, or set `auth = \"bearer\"` for access tokens"
            ),
            TokenProblem::EmptyUsername => write!(
                f,
                "invalid basic-auth token {token}: the username before the first `:` is empty; \
                 write it as `username:secret`"
            ),
            TokenProblem::EmptySecret => write!(
                f,
                "invalid basic-auth token {token}: the secret after the first `:` is empty; \
                 write it as `username:secret`"
            ),
            TokenProblem::Unsendable => write!(
                f,
                "invalid token {token}: it contains control characters an HTTP header cannot \
                 carry; copy the token again without them"
            ),
        }
    }
}

impl std::error::Error for TokenFormatError {}

/// Splits a basic-auth token at its first `:` into username and secret.
pub(crate) fn split_basic(token: &Token) -> Result<(&str, &str), TokenFormatError> {
    let error = |problem| TokenFormatError {
        token: token.id().clone(),
        problem,
    };
    let (username, secret) = token
        .secret()
        .split_once(':')
        .ok_or_else(|| error(TokenProblem::MissingColon))?;
    if username.trim().is_empty() {
        return Err(error(TokenProblem::EmptyUsername));
    }
    if secret.is_empty() {
        return Err(error(TokenProblem::EmptySecret));
    }
    Ok((username, secret))
}

/// Returns the account a basic-auth token is charged to: its username in
/// lower case, because Bitbucket usernames and Atlassian emails ignore case.
pub(crate) fn basic_account(token: &Token) -> Result<String, TokenFormatError> {
    let (username, _) = split_basic(token)?;
    Ok(username.trim().to_lowercase())
}

/// Builds the sensitive `Authorization` value for `token` in `scheme`.
pub(crate) fn authorization(
    scheme: AuthScheme,
    token: &Token,
) -> Result<HeaderValue, TokenFormatError> {
    let mut bytes = Vec::new();
    match scheme {
        AuthScheme::Bearer => {
            bytes.extend_from_slice(b"Bearer ");
            bytes.extend_from_slice(token.secret().as_bytes());
        }
        AuthScheme::Basic => {
            let (username, secret) = split_basic(token)?;
            if has_control(username) || has_control(secret) {
                return Err(TokenFormatError {
                    token: token.id().clone(),
                    problem: TokenProblem::Unsendable,
                });
            }
            let pair = format!("{}:{secret}", username.trim());
            bytes.extend_from_slice(b"Basic ");
            bytes.extend_from_slice(base64(pair.as_bytes()).as_bytes());
        }
    }

    let mut value = HeaderValue::from_bytes(&bytes).map_err(|_| TokenFormatError {
        token: token.id().clone(),
        problem: TokenProblem::Unsendable,
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Encodes bytes in standard base64 with padding (RFC 4648, section 4), the
/// form HTTP basic authentication uses.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut output = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let group = match *chunk {
            [a] => u32::from(a) << 16,
            [a, b] => (u32::from(a) << 16) | (u32::from(b) << 8),
            [a, b, c] => (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c),
            _ => unreachable!("chunks(3) yields one to three bytes"),
        };
        for position in 0..4 {
            if position <= chunk.len() {
                let index = (group >> (18 - 6 * position)) & 0x3f;
                output.push(char::from(ALPHABET[index as usize]));
            } else {
                output.push('=');
            }
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "ATBB_CANARY0000000000000000000000000000";

    #[test]
    fn base64_matches_rfc_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn bearer_header_carries_token() {
        let value = authorization(AuthScheme::Bearer, &Token::new(CANARY)).unwrap();
        assert_eq!(value.to_str().unwrap(), format!("Bearer {CANARY}"));
        assert!(value.is_sensitive());
    }

    #[test]
    fn basic_header_encodes_pair() {
        let token = Token::new("alice:app-pass");
        let value = authorization(AuthScheme::Basic, &token).unwrap();
        // base64("alice:app-pass")
        assert_eq!(value.to_str().unwrap(), "Basic YWxpY2U6YXBwLXBhc3M=");
        assert!(value.is_sensitive());
    }

    #[test]
    fn basic_splits_at_first_colon() {
        let token = Token::new("alice@example.com:se:cret");
        assert_eq!(
            split_basic(&token).unwrap(),
            ("alice@example.com", "se:cret")
        );
        assert_eq!(basic_account(&token).unwrap(), "alice@example.com");
    }

    #[test]
    fn basic_account_ignores_case() {
        let upper = Token::new("Alice:one");
        let lower = Token::new("alice:two");
        assert_eq!(
            basic_account(&upper).unwrap(),
            basic_account(&lower).unwrap()
        );
    }

    #[test]
    fn malformed_basic_tokens_are_rejected() {
        let cases = [
            (CANARY.to_owned(), TokenProblem::MissingColon),
            (format!(":{CANARY}"), TokenProblem::EmptyUsername),
            ("alice:".to_owned(), TokenProblem::EmptySecret),
            (format!("al\u{1}ice:{CANARY}"), TokenProblem::Unsendable),
        ];
        for (secret, problem) in cases {
            let token = Token::new(secret);
            let error = authorization(AuthScheme::Basic, &token).unwrap_err();
            assert_eq!(error.problem, problem);
            assert_eq!(&error.token, token.id());

            let message = format!("{error} {error:?}");
            assert!(!message.contains("CANARY"), "{message}");
            assert!(message.contains(token.id().as_str()), "{message}");
        }
    }

    #[test]
    fn missing_colon_message_names_fix() {
        let error = split_basic(&Token::new(CANARY)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("username:secret"), "{message}");
        assert!(message.contains("auth = \"bearer\""), "{message}");
    }

    #[test]
    fn unsendable_bearer_is_rejected() {
        let error = authorization(AuthScheme::Bearer, &Token::new("bad\u{7f}token")).unwrap_err();
        assert_eq!(error.problem, TokenProblem::Unsendable);
    }
}
