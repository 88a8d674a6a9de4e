//! The TOML configuration: providers with their tokens, the strategy, the
//! wait policy and the state store.
//!
//! Every error names the file, the line and the key path, and states what
//! would be valid. Plugin tables are deserialized by typetag, which loses
//! the position of keys inside them, so this module keeps the key path
//! itself (with `serde_path_to_error`) and maps it back to a line through
//! the parsed document's spans.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::value::MapDeserializer;
use tokenfleet_core::{Provider, RotationStrategy, Token, TokenId, WaitPolicy};
use toml::Value;

use crate::sources::{self, VaultSettings};
mod store;

#[cfg(feature = "redis")]
pub use store::RedisStoreConfig;
pub use store::StoreConfig;

/// The parsed configuration, before tokens are read from their sources.
#[derive(Debug)]
pub struct FleetConfig {
    /// The strategy table, deserialized once per provider so that stateful
    /// strategies do not share state across providers.
    pub(crate) strategy: Option<Value>,
    /// One entry per `[[providers]]` table.
    pub providers: Vec<ProviderConfig>,
    /// The behaviour of `acquire` when no token has budget.
    pub wait: WaitPolicy,
    /// The state store of every pool.
    pub store: StoreConfig,
    pub(crate) origin: String,
}

/// One `[[providers]]` table.
#[derive(Debug)]
pub struct ProviderConfig {
    /// The provider's name in the fleet: `name`, else its `type`.
    pub name: String,
    /// The provider plugin.
    pub provider: std::sync::Arc<dyn Provider>,
    /// The `tokens` entries.
    pub tokens: Vec<TokenConfig>,
    /// The `tokens_env` variable, holding a comma-separated list.
    pub tokens_env: Option<String>,
    pub(crate) index: usize,
    /// Whether the table sets `name`, so a duplicate points at that key.
    pub(crate) named: bool,
    /// The `[vault]` table, shared by every provider.
    pub(crate) vault: Arc<VaultSettings>,
    /// The line of `tokens_env`, for errors found when it is read.
    pub(crate) tokens_env_line: Option<usize>,
}

/// The source of a token's secret.
pub enum TokenSource {
    /// An environment variable.
    Env(String),
    /// A literal secret written in the file.
    Value(SecretString),
    /// A file that contains only the token, accessible by its owner alone.
    File(PathBuf),
    /// A program run without a shell, whose standard output is the token.
    Command {
        /// The program, looked up in `PATH` unless it contains a `/`.
        program: String,
        /// The arguments.
        args: Vec<String>,
        /// The time the program may run before it is killed.
        timeout: Duration,
    },
    /// An entry of the encrypted vault named in the `[vault]` table.
    Vault(String),
    /// A GitHub App installation, whose tokens the pool fetches and
    /// refreshes before they expire.
    GithubApp {
        /// The app's id or client id.
        app_id: String,
        /// The installation's id.
        installation_id: u64,
        /// The app's private key in PEM form, readable by its owner alone.
        private_key_file: PathBuf,
    },
}

impl TokenSource {
    /// Returns the config key that names this source, such as `file`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Env(_) => "env",
            Self::Value(_) => "value",
            Self::File(_) => "file",
            Self::Command { .. } => "command",
            Self::Vault(_) => "vault",
            Self::GithubApp { .. } => "github_app",
        }
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Self::Value(_) => f.write_str("Value(..)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            // Arguments are left out in case one of them is a secret.
            Self::Command {
                program,
                args,
                timeout,
            } => f
                .debug_struct("Command")
                .field("program", program)
                .field("args", &args.len())
                .field("timeout", timeout)
                .finish(),
            Self::Vault(name) => f.debug_tuple("Vault").field(name).finish(),
            Self::GithubApp {
                app_id,
                installation_id,
                private_key_file,
            } => f
                .debug_struct("GithubApp")
                .field("app_id", app_id)
                .field("installation_id", installation_id)
                .field("private_key_file", private_key_file)
                .finish(),
        }
    }
}

/// One entry of `tokens`.
#[derive(Debug)]
pub struct TokenConfig {
    /// The source of the secret.
    pub source: TokenSource,
    /// Priority; lower is used first by the priority strategy.
    pub priority: u32,
    /// Weight for weighted strategies.
    pub weight: u32,
    /// The declared account (quota group).
    pub account: Option<String>,
    /// Budget the pool never spends.
    pub reserve: u64,
    /// A label shown in place of the fingerprint.
    pub label: Option<String>,
    /// The line of the entry's source key, for errors found when it is read.
    pub(crate) line: Option<usize>,
    /// Whether the entry sets `priority`, which then overrides a vault entry's.
    pub(crate) priority_set: bool,
}

/// A configuration error, with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or a description of the text's origin).
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The key path, such as `providers[0].tokens[1].env`.
    pub key: String,
    /// The problem and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One step of a key path.
#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

const TOP_KEYS: [&str; 5] = ["strategy", "providers", "wait", "vault", "store"];
const PROVIDER_KEYS: [&str; 3] = ["name", "tokens", "tokens_env"];
const TOKEN_KEYS: [&str; 12] = [
    "env",
    "value",
    "file",
    "command",
    "vault",
    "github_app",
    "timeout",
    "priority",
    "weight",
    "account",
    "reserve",
    "label",
];
/// The keys that name a token's source; an entry has exactly one.
const SOURCE_KEYS: [&str; 6] = ["env", "value", "file", "command", "vault", "github_app"];
const GITHUB_APP_KEYS: [&str; 3] = ["app_id", "installation_id", "private_key_file"];
const VAULT_KEYS: [&str; 2] = ["path", "passphrase_env"];
const WAIT_KEYS: [&str; 1] = ["max"];

/// Parses a configuration file.
///
/// # Errors
///
/// Returns a [`ConfigError`] naming the file, line and key when the file
/// cannot be read or is not a valid configuration.
pub fn load(path: &Path) -> Result<FleetConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: file.clone(),
        line: None,
        key: String::new(),
        message: format!("cannot read the config file: {error}"),
    })?;
    parse_in(&text, &file, path.parent())
}

/// Parses configuration text; `origin` names it in errors. Relative paths
/// in the text are resolved against the current directory.
///
/// # Errors
///
/// Returns a [`ConfigError`] naming the line and key of the first problem.
pub fn parse(text: &str, origin: &str) -> Result<FleetConfig, ConfigError> {
    parse_in(text, origin, None)
}

/// Parses configuration text, resolving relative paths against `base`.
fn parse_in(text: &str, origin: &str, base: Option<&Path>) -> Result<FleetConfig, ConfigError> {
    let document = toml_edit::ImDocument::parse(text).map_err(|error| ConfigError {
        file: origin.to_owned(),
        line: error.span().map(|span| line_of(text, span.start)),
        key: String::new(),
        message: format!("invalid TOML: {}", one_line(error.message())),
    })?;
    let root: toml::Table = toml::from_str(text).map_err(|error| ConfigError {
        file: origin.to_owned(),
        line: error.span().map(|span| line_of(text, span.start)),
        key: String::new(),
        message: format!("invalid TOML: {}", one_line(error.message())),
    })?;
    let parser = Parser {
        text,
        origin,
        document: &document,
        base: base.filter(|dir| !dir.as_os_str().is_empty()),
    };
    parser.config(root)
}

struct Parser<'a> {
    text: &'a str,
    origin: &'a str,
    document: &'a toml_edit::ImDocument<&'a str>,
    /// The config file's directory, for relative paths.
    base: Option<&'a Path>,
}

impl Parser<'_> {
    fn line(&self, path: &[Segment]) -> Option<usize> {
        locate(self.document, path).map(|offset| line_of(self.text, offset))
    }

    fn error(&self, path: &[Segment], message: impl Into<String>) -> ConfigError {
        // A token pasted into the wrong place (a key, a URL, a type name)
        // would otherwise come back in the message that reports it.
        ConfigError {
            file: self.origin.to_owned(),
            line: self.line(path),
            key: redact_tokens(&render(path)),
            message: redact_tokens(&message.into()),
        }
    }

    fn config(&self, root: toml::Table) -> Result<FleetConfig, ConfigError> {
        self.reject_unknown(&root, &[], &TOP_KEYS, "top-level key")?;

        let strategy = match root.get("strategy") {
            None => None,
            Some(value @ Value::Table(_)) => {
                let path = [Segment::Key("strategy".into())];
                self.require_type(value, &path, "strategy", &crate::registered_strategies())?;
                // Deserialize once now to report errors; pools get their own copies.
                self.strategy(value, &path)?;
                Some(value.clone())
            }
            Some(_) => {
                return Err(self.error(
                    &[Segment::Key("strategy".into())],
                    "expected a table such as `[strategy]` with `type = \"rate_aware\"`",
                ))
            }
        };

        let vault = Arc::new(match root.get("vault") {
            None => VaultSettings::default(),
            Some(Value::Table(table)) => self.vault(table)?,
            Some(_) => {
                return Err(self.error(
                    &[Segment::Key("vault".into())],
                    "expected a table such as `[vault]` with `path = \"vault.age\"`",
                ))
            }
        });

        let mut providers = match root.get("providers") {
            None => Vec::new(),
            Some(Value::Array(entries)) => entries
                .iter()
                .enumerate()
                .map(|(index, entry)| self.provider(index, entry))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(self.error(
                    &[Segment::Key("providers".into())],
                    "expected an array of tables: write each provider as `[[providers]]`",
                ))
            }
        };
        let mut names: Vec<&str> = Vec::new();
        for provider in &providers {
            if names.contains(&provider.name.as_str()) {
                let mut at = vec![
                    Segment::Key("providers".into()),
                    Segment::Index(provider.index),
                ];
                if provider.named {
                    at.push(Segment::Key("name".into()));
                }
                return Err(self.error(
                    &at,
                    format!(
                        "a second provider is named {:?}; give one of them a distinct `name`",
                        provider.name
                    ),
                ));
            }
            names.push(&provider.name);
        }
        for provider in &mut providers {
            provider.vault = Arc::clone(&vault);
        }

        let wait = match root.get("wait") {
            None => WaitPolicy::Fail,
            Some(Value::Table(table)) => self.wait(table)?,
            Some(_) => {
                return Err(self.error(
                    &[Segment::Key("wait".into())],
                    "expected a table such as `[wait]` with `max = \"15m\"`",
                ))
            }
        };

        let store = match root.get("store") {
            None => StoreConfig::Memory,
            Some(value) => self.store(value)?,
        };

        Ok(FleetConfig {
            strategy,
            providers,
            wait,
            store,
            origin: self.origin.to_owned(),
        })
    }

    fn reject_unknown(
        &self,
        table: &toml::Table,
        path: &[Segment],
        valid: &[&str],
        what: &str,
    ) -> Result<(), ConfigError> {
        for key in table.keys() {
            if !valid.contains(&key.as_str()) {
                let mut at = path.to_vec();
                at.push(Segment::Key(key.clone()));
                return Err(self.error(
                    &at,
                    format!(
                        "unknown {what} `{key}`; valid keys are {}",
                        quote_list(valid)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn require_type(
        &self,
        value: &Value,
        path: &[Segment],
        what: &str,
        registered: &[String],
    ) -> Result<(), ConfigError> {
        match value.get("type") {
            Some(Value::String(_)) => Ok(()),
            Some(_) => {
                let mut at = path.to_vec();
                at.push(Segment::Key("type".into()));
                Err(self.error(
                    &at,
                    format!(
                        "expected a string; registered {what} types are {}",
                        quote_list(registered)
                    ),
                ))
            }
            None => Err(self.error(
                path,
                format!(
                    "missing `type`; registered {what} types are {}",
                    quote_list(registered)
                ),
            )),
        }
    }

    fn strategy(
        &self,
        value: &Value,
        path: &[Segment],
    ) -> Result<Box<dyn RotationStrategy>, ConfigError> {
        let Value::Table(table) = value else {
            unreachable!("the caller checked that `strategy` is a table");
        };
        serde_path_to_error::deserialize(tag_first(table.clone())).map_err(|error| {
            self.plugin_error(
                path,
                error,
                "strategy",
                &[],
                &crate::registered_strategies(),
            )
        })
    }

    /// Maps a plugin's deserialization error to the key it is about.
    /// `pool_keys` are the keys this module removes from the table before
    /// deserializing the plugin, and they are listed among the valid keys.
    fn plugin_error(
        &self,
        path: &[Segment],
        error: serde_path_to_error::Error<toml::de::Error>,
        what: &str,
        pool_keys: &[&str],
        registered: &[String],
    ) -> ConfigError {
        let mut at = path.to_vec();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => at.push(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => at.push(Segment::Index(*index)),
                _ => {}
            }
        }
        let message = one_line(error.inner().message());

        // typetag reports an unregistered `type` as serde's unknown variant
        // at the `type` key. The same message deeper down comes from an
        // enum inside the plugin and keeps its own path.
        let at_tag = match &at[path.len()..] {
            [] => true,
            [Segment::Key(key)] => key == "type",
            _ => false,
        };
        if message.starts_with("unknown variant") && at_tag {
            at.truncate(path.len());
            at.push(Segment::Key("type".into()));
            let name = backquoted(&message).into_iter().next().unwrap_or_default();
            return self.error(
                &at,
                format!(
                    "unknown {what} type `{name}`; registered {what} types are {}",
                    quote_list(registered)
                ),
            );
        }

        // serde's message for `deny_unknown_fields` names the key and the
        // valid ones in backquotes.
        if message.starts_with("unknown field") {
            let names = backquoted(&message);
            if let Some((key, expected)) = names.split_first() {
                if !matches!(at.last(), Some(Segment::Key(last)) if last == key) {
                    at.push(Segment::Key(key.clone()));
                }
                let mut valid = vec!["type".to_owned()];
                valid.extend(expected.iter().cloned());
                valid.extend(pool_keys.iter().map(|k| (*k).to_owned()));
                return self.error(
                    &at,
                    format!(
                        "unknown {what} key `{key}`; valid keys are {}",
                        quote_list(&valid)
                    ),
                );
            }
        }
        self.error(&at, message)
    }

    fn provider(&self, index: usize, entry: &Value) -> Result<ProviderConfig, ConfigError> {
        let path = vec![Segment::Key("providers".into()), Segment::Index(index)];
        let Value::Table(table) = entry else {
            return Err(self.error(
                &path,
                "expected a table: write each provider as `[[providers]]`",
            ));
        };
        self.require_type(entry, &path, "provider", &crate::registered_providers())?;

        let mut plugin = table.clone();
        let name = match plugin.remove("name") {
            None => None,
            Some(Value::String(name)) if !name.trim().is_empty() => Some(name),
            Some(_) => return Err(self.error(
                &child(&path, "name"),
                "expected a non-empty string naming this provider, such as \"github-enterprise\"",
            )),
        };
        let tokens_value = plugin.remove("tokens");
        let tokens_env = match plugin.remove("tokens_env") {
            None => None,
            Some(Value::String(var)) if looks_like_token(&var) => {
                return Err(self.error(&child(&path, "tokens_env"), TOKEN_AS_ENV_NAME))
            }
            Some(Value::String(var)) if is_env_name(&var) => Some(var),
            Some(_) => {
                return Err(self.error(
                    &child(&path, "tokens_env"),
                    "expected the name of an environment variable such as \"GITHUB_TOKENS\"",
                ))
            }
        };

        let provider: Box<dyn Provider> = serde_path_to_error::deserialize(tag_first(plugin))
            .map_err(|error| {
                let registered = crate::registered_providers();
                let mut error =
                    self.plugin_error(&path, error, "provider", &PROVIDER_KEYS, &registered);
                if error.key == format!("{}.base_url", render(&path)) {
                    error.message.push_str(&base_url_hint(entry));
                }
                error
            })?;

        // Credentials in the URL would show in the provider's `Debug` output
        // and travel with every request, so they are rejected unrepeated.
        let base_url = provider.base_url();
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(self.error(
                &child(&path, "base_url"),
                "the URL contains credentials; remove them and put the token in `tokens` \
                 or `tokens_env`",
            ));
        }

        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(self.error(
                &child(&path, "base_url"),
                format!(
                    "the URL scheme `{}` is not supported; use an http or https URL{}",
                    base_url.scheme(),
                    base_url_hint(entry).trim_start_matches("; write an absolute URL")
                ),
            ));
        }

        let tokens = match tokens_value {
            None => Vec::new(),
            Some(Value::Array(entries)) => entries
                .iter()
                .enumerate()
                .map(|(position, entry)| {
                    let mut at = child(&path, "tokens");
                    at.push(Segment::Index(position));
                    self.token(&at, entry)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(self.error(
                    &child(&path, "tokens"),
                    "expected an array such as `tokens = [{ env = \"GITHUB_TOKEN\" }]`",
                ))
            }
        };

        if provider.kind() != "github" {
            if let Some(position) = tokens
                .iter()
                .position(|t| matches!(t.source, TokenSource::GithubApp { .. }))
            {
                let mut at = child(&path, "tokens");
                at.push(Segment::Index(position));
                return Err(self.error(
                    &child(&at, "github_app"),
                    format!(
                        "a `github_app` token belongs to a `type = \"github\"` provider, not \
                         `{}`",
                        provider.kind()
                    ),
                ));
            }
        }

        Ok(ProviderConfig {
            named: name.is_some(),
            name: name.unwrap_or_else(|| provider.kind().to_owned()),
            provider: std::sync::Arc::from(provider),
            tokens,
            tokens_env,
            index,
            tokens_env_line: self.line(&child(&path, "tokens_env")),
            vault: Arc::default(),
        })
    }

    fn token(&self, path: &[Segment], entry: &Value) -> Result<TokenConfig, ConfigError> {
        let Value::Table(table) = entry else {
            return Err(self.error(
                path,
                "expected a table such as `{ env = \"GITHUB_TOKEN\" }` or `{ value = \"...\" }`",
            ));
        };
        self.reject_unknown(table, path, &TOKEN_KEYS, "token key")?;

        let present: Vec<&str> = SOURCE_KEYS
            .into_iter()
            .filter(|key| table.contains_key(*key))
            .collect();
        let source_key = match present.as_slice() {
            [key] => *key,
            [] => {
                return Err(self.error(
                    path,
                    "missing the secret's source: add `env = \"VARIABLE\"` (recommended), \
                     `file = \"PATH\"`, `command = [\"PROGRAM\", \"ARG\"]`, `vault = \"NAME\"` \
                     or `value = \"...\"`",
                ))
            }
            [first, second] => {
                return Err(self.error(
                    path,
                    format!("give either `{first}` or `{second}`, not both"),
                ))
            }
            _ => return Err(self.error(path, format!("give only one of {}", quote_list(&present)))),
        };
        if table.contains_key("timeout") && source_key != "command" {
            return Err(self.error(
                &child(path, "timeout"),
                "`timeout` applies only to a `command` source; remove it",
            ));
        }
        let source = self.token_source(path, table, source_key)?;

        Ok(TokenConfig {
            line: self.line(&child(path, source_key)),
            source,
            priority: self.small_integer(table, path, "priority", 0)? as u32,
            priority_set: table.contains_key("priority"),
            weight: self.small_integer(table, path, "weight", 1)? as u32,
            reserve: self.integer(table, path, "reserve", 0)?,
            account: self.optional_string(table, path, "account")?,
            label: self.optional_string(table, path, "label")?,
        })
    }

    /// Reads the one source key of a token entry.
    fn token_source(
        &self,
        path: &[Segment],
        table: &toml::Table,
        key: &str,
    ) -> Result<TokenSource, ConfigError> {
        let at = child(path, key);
        let value = &table[key];
        match (key, value) {
            ("env", Value::String(var)) if looks_like_token(var) => {
                Err(self.error(&at, TOKEN_AS_ENV_NAME))
            }
            ("env", Value::String(var)) if is_env_name(var) => Ok(TokenSource::Env(var.clone())),
            ("env", _) => Err(self.error(
                &at,
                "expected the name of an environment variable such as \"GITHUB_TOKEN\"",
            )),
            ("value", Value::String(secret)) if !secret.trim().is_empty() => {
                Ok(TokenSource::Value(SecretString::from(secret.clone())))
            }
            ("value", _) => Err(self.error(&at, "expected a non-empty string")),
            ("file", Value::String(file)) if looks_like_token(file) => Err(self.error(
                &at,
                "this looks like a token, not a path; write the token into a file and put \
                 the file's path here",
            )),
            ("file", Value::String(file)) if !file.trim().is_empty() => {
                Ok(TokenSource::File(self.resolve_path(file)))
            }
            ("file", _) => Err(self.error(
                &at,
                "expected the path of a file that contains the token, such as \"github.token\"",
            )),
            ("command", Value::Array(items)) => self.command_source(path, table, items),
            ("command", _) => Err(self.error(
                &at,
                "expected an array such as `command = [\"pass\", \"show\", \"github/bot\"]`; \
                 the program runs without a shell, so give it and each argument as separate strings",
            )),
            ("vault", Value::String(name)) if looks_like_token(name) => Err(self.error(
                &at,
                "this looks like a token, not a vault entry name; add the token with \
                 `tokenfleet vault add NAME` and write the NAME here",
            )),
            ("vault", Value::String(name)) if !name.trim().is_empty() => {
                if cfg!(feature = "vault") {
                    Ok(TokenSource::Vault(name.clone()))
                } else {
                    Err(self.error(
                        &at,
                        "the `vault` source needs the `vault` feature of tokenfleet; enable it, \
                         or use `env`, `file` or `command`",
                    ))
                }
            }
            ("vault", _) => Err(self.error(
                &at,
                "expected the name of a vault entry such as \"work-bot\"",
            )),
            ("github_app", Value::Table(app)) => self.github_app_source(&at, app),
            _ => Err(self.error(
                &at,
                "expected a table such as `github_app = { app_id = 12345, installation_id = \
                 678, private_key_file = \"app.pem\" }`",
            )),
        }
    }

    fn github_app_source(
        &self,
        at: &[Segment],
        app: &toml::Table,
    ) -> Result<TokenSource, ConfigError> {
        self.reject_unknown(app, at, &GITHUB_APP_KEYS, "github_app key")?;
        let app_id = match app.get("app_id") {
            Some(Value::Integer(id)) if *id > 0 => id.to_string(),
            Some(Value::String(id)) if !id.trim().is_empty() => id.trim().to_owned(),
            Some(_) => {
                return Err(self.error(
                    &child(at, "app_id"),
                    "expected the app's id, such as 12345, or its client id as a string",
                ))
            }
            None => {
                return Err(self.error(at, "missing `app_id`; copy it from the app's settings page"))
            }
        };
        let installation_id = match app.get("installation_id") {
            Some(Value::Integer(id)) if *id > 0 => *id as u64,
            Some(_) => {
                return Err(self.error(
                    &child(at, "installation_id"),
                    "expected a positive number, such as 678",
                ))
            }
            None => {
                return Err(self.error(
                    at,
                    "missing `installation_id`; it is the number at the end of the \
                     installation's settings URL",
                ))
            }
        };
        let private_key_file = match app.get("private_key_file") {
            Some(Value::String(file)) if !file.trim().is_empty() => self.resolve_path(file),
            Some(_) => {
                return Err(self.error(
                    &child(at, "private_key_file"),
                    "expected the path of the app's private key, such as \"app.pem\"",
                ))
            }
            None => {
                return Err(self.error(
                    at,
                    "missing `private_key_file`; point it at the `.pem` file GitHub generated \
                     for the app",
                ))
            }
        };
        Ok(TokenSource::GithubApp {
            app_id,
            installation_id,
            private_key_file,
        })
    }

    fn command_source(
        &self,
        path: &[Segment],
        table: &toml::Table,
        items: &[Value],
    ) -> Result<TokenSource, ConfigError> {
        let mut words = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match item {
                Value::String(word) if index > 0 || !word.trim().is_empty() => {
                    words.push(word.clone())
                }
                _ => {
                    let mut at = child(path, "command");
                    at.push(Segment::Index(index));
                    return Err(self.error(
                        &at,
                        "expected a string; the first one names the program, such as \"pass\"",
                    ));
                }
            }
        }
        if words.is_empty() {
            return Err(self.error(
                &child(path, "command"),
                "the command is empty; name the program and its arguments, such as \
                 `[\"pass\", \"show\", \"github/bot\"]`",
            ));
        }

        let timeout = match table.get("timeout") {
            None => sources::DEFAULT_COMMAND_TIMEOUT,
            Some(Value::String(text)) => match humantime::parse_duration(text.trim()) {
                Ok(duration) if !duration.is_zero() => duration,
                Ok(_) => {
                    return Err(self.error(
                        &child(path, "timeout"),
                        "the timeout must be longer than zero, such as \"30s\"",
                    ))
                }
                Err(error) => {
                    return Err(self.error(
                        &child(path, "timeout"),
                        format!(
                            "invalid duration {text:?} ({error}); write it like \"10s\" or \"1m\""
                        ),
                    ))
                }
            },
            Some(other) => {
                return Err(self.error(
                    &child(path, "timeout"),
                    format!(
                        "expected a duration string such as \"30s\", found {}",
                        describe(other)
                    ),
                ))
            }
        };
        let program = words.remove(0);
        Ok(TokenSource::Command {
            program,
            args: words,
            timeout,
        })
    }

    /// Resolves a path from the file against the config file's directory.
    fn resolve_path(&self, text: &str) -> PathBuf {
        let path = PathBuf::from(text);
        match self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }

    fn vault(&self, table: &toml::Table) -> Result<VaultSettings, ConfigError> {
        let path = [Segment::Key("vault".into())];
        self.reject_unknown(table, &path, &VAULT_KEYS, "vault key")?;
        let file = match table.get("path") {
            None => None,
            Some(Value::String(file)) if !file.trim().is_empty() => Some(self.resolve_path(file)),
            Some(other) => {
                return Err(self.error(
                    &child(&path, "path"),
                    format!(
                        "expected the path of the vault file such as \"vault.age\", found {}",
                        describe(other)
                    ),
                ))
            }
        };
        let passphrase_env = match table.get("passphrase_env") {
            None => None,
            Some(Value::String(var)) if is_env_name(var) && !looks_like_token(var) => {
                Some(var.clone())
            }
            Some(_) => {
                return Err(self.error(
                    &child(&path, "passphrase_env"),
                    "expected the name of the environment variable that contains the \
                     passphrase, such as \"TOKENFLEET_VAULT_PASSPHRASE\"",
                ))
            }
        };
        Ok(VaultSettings::new(file, passphrase_env))
    }

    fn integer(
        &self,
        table: &toml::Table,
        path: &[Segment],
        key: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match table.get(key) {
            None => Ok(default),
            Some(Value::Integer(n)) if *n >= 0 => Ok(*n as u64),
            Some(other) => Err(self.error(
                &child(path, key),
                format!(
                    "expected a whole number of 0 or more, found {}",
                    describe(other)
                ),
            )),
        }
    }

    fn small_integer(
        &self,
        table: &toml::Table,
        path: &[Segment],
        key: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let value = self.integer(table, path, key, default)?;
        if value > u64::from(u32::MAX) {
            return Err(self.error(
                &child(path, key),
                format!("{value} is too large; the maximum is {}", u32::MAX),
            ));
        }
        Ok(value)
    }

    fn optional_string(
        &self,
        table: &toml::Table,
        path: &[Segment],
        key: &str,
    ) -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            Some(other) => Err(self.error(
                &child(path, key),
                format!("expected a non-empty string, found {}", describe(other)),
            )),
        }
    }

    fn wait(&self, table: &toml::Table) -> Result<WaitPolicy, ConfigError> {
        let path = [Segment::Key("wait".into())];
        self.reject_unknown(table, &path, &WAIT_KEYS, "wait key")?;
        match table.get("max") {
            None => Ok(WaitPolicy::Fail),
            Some(Value::String(text)) => match humantime::parse_duration(text.trim()) {
                Ok(duration) if duration.is_zero() => Ok(WaitPolicy::Fail),
                Ok(duration) => Ok(WaitPolicy::UpTo(duration)),
                Err(error) => Err(self.error(
                    &child(&path, "max"),
                    format!("invalid duration {text:?} ({error}); write it like \"90s\", \"15m\" or \"1h\""),
                )),
            },
            Some(other) => Err(self.error(
                &child(&path, "max"),
                format!("expected a duration string such as \"15m\", found {}", describe(other)),
            )),
        }
    }
}

impl FleetConfig {
    /// Builds the strategy for one pool from the `[strategy]` table.
    pub(crate) fn strategy_for_pool(&self) -> Option<Box<dyn RotationStrategy>> {
        let value = self.strategy.clone()?;
        // Parsing succeeded once already, so it succeeds again.
        serde_path_to_error::deserialize::<_, Box<dyn RotationStrategy>>(value).ok()
    }
}

/// A token whose secret the pool fetches, with the source that fetches it.
pub type SourcedToken = (Token, Arc<dyn tokenfleet_core::TokenSource>);

impl ProviderConfig {
    /// Builds the sources of this provider's tokens whose secret the pool
    /// fetches (GitHub App installations), with the token each fills.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] naming the entry when its private key file
    /// is missing, unreadable, readable by others or not an RSA key.
    pub fn resolve_sourced(&self, origin: &str) -> Result<Vec<SourcedToken>, ConfigError> {
        let mut sourced: Vec<SourcedToken> = Vec::new();
        for (position, entry) in self.tokens.iter().enumerate() {
            let TokenSource::GithubApp {
                app_id,
                installation_id,
                private_key_file,
            } = &entry.source
            else {
                continue;
            };
            let key = format!("providers[{}].tokens[{position}].github_app", self.index);
            let fail = |message: String| ConfigError {
                file: origin.to_owned(),
                line: entry.line,
                key: key.clone(),
                message,
            };
            let source = self
                .github_app(app_id, *installation_id, private_key_file)
                .map_err(fail)?;
            let label = entry
                .label
                .clone()
                .unwrap_or_else(|| format!("github-app-{app_id}-{installation_id}"));
            let mut token = Token::sourced(label)
                .with_priority(entry.priority)
                .with_weight(entry.weight)
                .with_reserve(entry.reserve);
            if let Some(account) = &entry.account {
                token = token.with_account(account.clone());
            }
            sourced.push((token, source));
        }
        Ok(sourced)
    }

    #[cfg(feature = "github")]
    fn github_app(
        &self,
        app_id: &str,
        installation_id: u64,
        private_key_file: &std::path::Path,
    ) -> Result<Arc<dyn tokenfleet_core::TokenSource>, String> {
        let key = tokenfleet_github::read_private_key(private_key_file, app_id, installation_id)
            .map_err(|e| e.to_string())?;
        let github = tokenfleet_github::Github::with_base_url(self.provider.base_url().clone());
        let app = tokenfleet_github::GithubApp::new(github, app_id, installation_id, &key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(app))
    }

    #[cfg(not(feature = "github"))]
    fn github_app(
        &self,
        _app_id: &str,
        _installation_id: u64,
        _private_key_file: &std::path::Path,
    ) -> Result<Arc<dyn tokenfleet_core::TokenSource>, String> {
        Err("`github_app` needs the `github` feature of tokenfleet".to_owned())
    }

    /// Reads every token of this provider from its source.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] naming the line and key of the entry whose
    /// variable is unset, empty or not UTF-8, or whose `tokens_env` list
    /// contains no token.
    pub fn resolve_tokens(&self, origin: &str) -> Result<Vec<Token>, ConfigError> {
        let prefix = format!("providers[{}]", self.index);
        let fail = |line: Option<usize>, key: String, message: String| ConfigError {
            file: origin.to_owned(),
            line,
            key,
            message,
        };
        let mut tokens = Vec::new();
        // Where each secret was first read, by fingerprint.
        let mut seen: std::collections::HashMap<TokenId, String> = std::collections::HashMap::new();
        for (position, entry) in self.tokens.iter().enumerate() {
            let key = format!("{prefix}.tokens[{position}]");
            // A vault entry's account and priority apply unless the config sets them.
            let mut account = entry.account.clone();
            let mut priority = entry.priority;
            let secret = match &entry.source {
                // Fetched by the pool; see `resolve_sourced`.
                TokenSource::GithubApp { .. } => continue,
                TokenSource::Env(var) => match std::env::var(var) {
                    Ok(value) if !value.trim().is_empty() => value,
                    Ok(_) => {
                        return Err(fail(
                            entry.line,
                            format!("{key}.env"),
                            format!("environment variable {var} is empty; set it to the token"),
                        ))
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(fail(
                            entry.line,
                            format!("{key}.env"),
                            format!("environment variable {var} is not valid UTF-8; set it to the token"),
                        ))
                    }
                    Err(std::env::VarError::NotPresent) => {
                        return Err(fail(
                            entry.line,
                            format!("{key}.env"),
                            format!("environment variable {var} is not set; export it with the token, or remove this entry"),
                        ))
                    }
                },
                TokenSource::Value(secret) => {
                    tracing::warn!(
                        file = origin,
                        line = entry.line,
                        key = %key,
                        "a token is written in the config file; prefer `env = \"VARIABLE\"`"
                    );
                    secret.expose_secret().to_owned()
                }
                TokenSource::File(path) => sources::read_file(path)
                    .map_err(|message| fail(entry.line, format!("{key}.file"), message))?,
                TokenSource::Command {
                    program,
                    args,
                    timeout,
                } => sources::run_command(program, args, *timeout)
                    .map_err(|message| fail(entry.line, format!("{key}.command"), message))?,
                TokenSource::Vault(name) => {
                    let found = self.vault.entry(name, self.provider.kind());
                    let found =
                        found.map_err(|message| fail(entry.line, format!("{key}.vault"), message))?;
                    account = account.or(found.account);
                    if !entry.priority_set {
                        priority = found.priority;
                    }
                    found.secret
                }
            };
            let source_key = format!("{key}.{}", entry.source.key());
            check_secret(&secret)
                .map_err(|message| fail(entry.line, source_key.clone(), message))?;
            let fingerprint = TokenId::fingerprint(secret.trim());
            if let Some(first) = seen.get(&fingerprint) {
                return Err(fail(
                    entry.line,
                    source_key,
                    format!(
                        "this is the same token as {first}; remove one, because two entries \
                         would count one budget twice"
                    ),
                ));
            }
            seen.insert(fingerprint, key.clone());
            let mut token = Token::new(secret)
                .with_priority(priority)
                .with_weight(entry.weight)
                .with_reserve(entry.reserve);
            if let Some(account) = account {
                token = token.with_account(account);
            }
            if let Some(label) = &entry.label {
                token = token.with_label(label.clone());
            }
            self.provider
                .validate_token(&token)
                .map_err(|message| fail(entry.line, key.clone(), message))?;
            tokens.push(token);
        }
        if let Some(var) = &self.tokens_env {
            let key = format!("{prefix}.tokens_env");
            let list = match std::env::var(var) {
                Ok(list) => list,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(fail(
                        self.tokens_env_line,
                        key,
                        format!("environment variable {var} is not valid UTF-8; set it to a comma-separated list of tokens"),
                    ))
                }
                Err(std::env::VarError::NotPresent) => {
                    return Err(fail(
                        self.tokens_env_line,
                        key,
                        format!("environment variable {var} is not set; export it as a comma-separated list of tokens"),
                    ))
                }
            };
            let listed: Vec<Token> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Token::new)
                .collect();
            if listed.is_empty() {
                return Err(fail(
                    self.tokens_env_line,
                    key,
                    format!("environment variable {var} contains no token; set it to a comma-separated list of tokens"),
                ));
            }
            for token in &listed {
                check_secret(token.secret())
                    .map_err(|message| fail(self.tokens_env_line, key.clone(), message))?;
                if let Some(first) = seen.get(token.id()) {
                    return Err(fail(
                        self.tokens_env_line,
                        key.clone(),
                        format!(
                            "{var} repeats the token of {first}; remove one, because two \
                             entries would count one budget twice"
                        ),
                    ));
                }
                seen.insert(token.id().clone(), key.clone());
                self.provider
                    .validate_token(token)
                    .map_err(|message| fail(self.tokens_env_line, key.clone(), message))?;
            }
            tokens.extend(listed);
        }
        Ok(tokens)
    }
}

/// Presents a plugin table with `type` as its first key. typetag (0.2)
/// streams the keys that follow a leading tag to the plugin, so errors keep
/// their key path, but it buffers a table whose tag comes later and then
/// loses the path. `toml::Table` sorts its keys unless toml's
/// `preserve_order` feature is on, which puts `base_url` before `type`.
fn tag_first(
    mut table: toml::Table,
) -> MapDeserializer<'static, std::vec::IntoIter<(String, Value)>, toml::de::Error> {
    let mut entries = Vec::with_capacity(table.len());
    if let Some(tag) = table.remove("type") {
        entries.push(("type".to_owned(), tag));
    }
    entries.extend(table);
    MapDeserializer::new(entries.into_iter())
}

/// Joins a multi-line parser message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(|line| line.trim().trim_end_matches('.'))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns the names serde puts in backquotes, in order.
fn backquoted(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn child(path: &[Segment], key: &str) -> Vec<Segment> {
    let mut at = path.to_vec();
    at.push(Segment::Key(key.to_owned()));
    at
}

/// The error for a secret written where a variable name belongs. It does
/// not repeat the value, because that value is probably the secret.
const TOKEN_AS_ENV_NAME: &str =
    "this looks like a token, not the name of an environment variable; \
     export the token in a variable and write the variable's name here, such as \"GITHUB_TOKEN\"";

/// Recognizes a secret written in place of a variable name or echoed in a
/// message: a known token prefix (GitHub's `ghp_`, `gho_`, `ghu_`, `ghs_`,
/// `ghr_` and `github_pat_`, GitLab's `glpat-` and its kin, Atlassian's
/// `ATBB`, `ATCTT` and `ATATT`), 32 characters or more without an
/// underscore (GitHub's older 40-character hex tokens, Gitea's tokens), or
/// 20 characters or more mixing letters and digits without an underscore.
/// Variable names are rarely that long without one.
fn looks_like_token(name: &str) -> bool {
    const PREFIXES: [&str; 17] = [
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "gldt-",
        "glrt-",
        "gloas-",
        "glptt-",
        "glcbt-",
        "glimt-",
        "glsoat-",
        "ATBB",
        "ATCTT",
        "ATATT",
    ];
    let mixed =
        name.chars().any(|c| c.is_ascii_digit()) && name.chars().any(|c| c.is_ascii_alphabetic());
    PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || (name.len() >= 32 && !name.contains('_'))
        || (name.len() >= 20 && mixed && !name.contains('_'))
}

/// Checks that a secret can travel in an HTTP header: visible ASCII with no
/// space. A control byte would make the request go out without any
/// authorization, spending the anonymous budget.
fn check_secret(secret: &str) -> Result<(), String> {
    if secret.trim().chars().all(|c| c.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(
            "the token contains a space, a control character or a non-ASCII character, \
             which no provider's tokens do; check that this source holds the token alone"
                .to_owned(),
        )
    }
}

/// Returns true for a word after which a secret usually follows, as in
/// `password=...` or `token: ...`.
fn names_a_secret(word: &str) -> bool {
    const KEYS: [&str; 10] = [
        "password",
        "passwd",
        "pass",
        "token",
        "secret",
        "key",
        "apikey",
        "api_key",
        "private_token",
        "access_token",
    ];
    let lower = word.to_ascii_lowercase();
    KEYS.contains(&lower.as_str())
}

/// Replaces every word of `text` that looks like a token, and the value
/// after `password=`, `token: ` and the like, with `[redacted]`.
pub(crate) fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    // 1 after a word that names a secret, 2 once `=` or `:` followed it.
    let mut expecting = 0u8;
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == '-' {
            word.push(ch);
            continue;
        }
        if !word.is_empty() {
            if expecting == 2 || looks_like_token(&word) {
                out.push_str("[redacted]");
                expecting = 0;
            } else {
                out.push_str(&word);
                expecting = u8::from(names_a_secret(&word));
            }
            word.clear();
        }
        expecting = match (expecting, ch) {
            (1 | 2, '=' | ':') => 2,
            (2, ' ' | '"' | '\'') => 2,
            _ => 0,
        };
        out.push(ch);
    }
    if !word.is_empty() {
        if expecting == 2 || looks_like_token(&word) {
            out.push_str("[redacted]");
        } else {
            out.push_str(&word);
        }
    }
    out
}

/// Suggests a valid `base_url`, taking the example from the provider's
/// default when its table without `base_url` deserializes.
fn base_url_hint(entry: &Value) -> String {
    let mut table = toml::Table::new();
    if let Some(kind) = entry.get("type") {
        table.insert("type".into(), kind.clone());
    }
    match serde_path_to_error::deserialize::<_, Box<dyn Provider>>(tag_first(table)) {
        Ok(provider) => format!(
            "; write an absolute URL such as \"{}\"",
            provider.base_url().as_str().trim_end_matches('/')
        ),
        Err(_) => "; write an absolute URL such as \"https://HOST/api\"".to_owned(),
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(n) if *n < 0 => "a negative number",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn quote_list<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the byte offset of the deepest part of `path` that exists in the
/// document: a key's span when the path ends at a key, else the value's.
fn locate(document: &toml_edit::ImDocument<&str>, path: &[Segment]) -> Option<usize> {
    use toml_edit::{Item, TableLike, Value as EditValue};

    enum Cursor<'a> {
        Item(&'a Item),
        Value(&'a EditValue),
        Table(&'a dyn TableLike),
    }

    fn table_like<'a>(cursor: &Cursor<'a>) -> Option<&'a dyn TableLike> {
        match cursor {
            Cursor::Table(t) => Some(*t),
            Cursor::Item(Item::Table(t)) => Some(t as &dyn TableLike),
            Cursor::Item(Item::Value(EditValue::InlineTable(t)))
            | Cursor::Value(EditValue::InlineTable(t)) => Some(t as &dyn TableLike),
            _ => None,
        }
    }

    let mut cursor = Cursor::Item(document.as_item());
    let mut best: Option<usize> = None;
    for segment in path {
        cursor = match segment {
            Segment::Key(key) => {
                let table = table_like(&cursor)?;
                let Some((found_key, item)) = table.get_key_value(key) else {
                    return best;
                };
                best = found_key
                    .span()
                    .map(|s| s.start)
                    .or(item.span().map(|s| s.start))
                    .or(best);
                Cursor::Item(item)
            }
            Segment::Index(index) => match cursor {
                Cursor::Item(Item::ArrayOfTables(array)) => {
                    let table = array.get(*index)?;
                    best = table.span().map(|s| s.start).or(best);
                    Cursor::Table(table as &dyn TableLike)
                }
                Cursor::Item(Item::Value(EditValue::Array(array)))
                | Cursor::Value(EditValue::Array(array)) => {
                    let value = array.get(*index)?;
                    best = value.span().map(|s| s.start).or(best);
                    Cursor::Value(value)
                }
                _ => return best,
            },
        };
    }
    best
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_tokens;

    #[test]
    fn known_prefixes_are_redacted() {
        for token in [
            "ghp_CANARY0000000000000000000000000000",
            "glpat-AbCdEfGhIjKlMnOpQrSt",
            "ATATT3xFfGF0CANARY",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            let text = redact_tokens(&format!("unknown variant `{token}`, expected"));
            assert!(!text.contains(token), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }

    #[test]
    fn values_after_secret_keys_are_redacted() {
        let text = redact_tokens("login failed: password=CANARYpass123 user=alice");
        assert_eq!(text, "login failed: password=[redacted] user=alice");
        let text = redact_tokens("token: \"abc\"");
        assert_eq!(text, "token: \"[redacted]\"");
    }

    #[test]
    fn ordinary_words_stay() {
        let text = redact_tokens("token is required; set GITHUB_TOKEN_CI_2024 or tokens_env");
        assert_eq!(
            text,
            "token is required; set GITHUB_TOKEN_CI_2024 or tokens_env"
        );
    }
}
