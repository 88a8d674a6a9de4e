//! The TOML configuration: providers with their tokens, the strategy, the
//! wait policy and the state store.
//!
//! Every error names the file, the line and the key path, and states what
//! would be valid. Plugin tables are deserialized by typetag, which loses
//! the position of keys inside them, so this module keeps the key path
//! itself (with `serde_path_to_error`) and maps it back to a line through
//! the parsed document's spans.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::de::value::MapDeserializer;
use tokenfleet_core::{Provider, RotationStrategy, Token, WaitPolicy};
use toml::Value;

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
    /// The line of `tokens_env`, for errors found when it is read.
    pub(crate) tokens_env_line: Option<usize>,
}

/// The source of a token's secret.
pub enum TokenSource {
    /// An environment variable.
    Env(String),
    /// A literal secret written in the file.
    Value(SecretString),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Self::Value(_) => f.write_str("Value(..)"),
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

const TOP_KEYS: [&str; 4] = ["strategy", "providers", "wait", "store"];
const PROVIDER_KEYS: [&str; 3] = ["name", "tokens", "tokens_env"];
const TOKEN_KEYS: [&str; 7] = [
    "env", "value", "priority", "weight", "account", "reserve", "label",
];
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
    parse(&text, &file)
}

/// Parses configuration text; `origin` names it in errors.
///
/// # Errors
///
/// Returns a [`ConfigError`] naming the line and key of the first problem.
pub fn parse(text: &str, origin: &str) -> Result<FleetConfig, ConfigError> {
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
    };
    parser.config(root)
}

struct Parser<'a> {
    text: &'a str,
    origin: &'a str,
    document: &'a toml_edit::ImDocument<&'a str>,
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

        let providers = match root.get("providers") {
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

        Ok(ProviderConfig {
            named: name.is_some(),
            name: name.unwrap_or_else(|| provider.kind().to_owned()),
            provider: std::sync::Arc::from(provider),
            tokens,
            tokens_env,
            index,
            tokens_env_line: self.line(&child(&path, "tokens_env")),
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

        let source = match (table.get("env"), table.get("value")) {
            (Some(_), Some(_)) => {
                return Err(self.error(path, "give either `env` or `value`, not both"))
            }
            (None, None) => {
                return Err(self.error(
                    path,
                    "missing the secret's source: add `env = \"VARIABLE\"` (recommended) or `value = \"...\"`",
                ))
            }
            (Some(Value::String(var)), None) if looks_like_token(var) => {
                return Err(self.error(&child(path, "env"), TOKEN_AS_ENV_NAME))
            }
            (Some(Value::String(var)), None) if is_env_name(var) => TokenSource::Env(var.clone()),
            (Some(_), None) => {
                return Err(self.error(
                    &child(path, "env"),
                    "expected the name of an environment variable such as \"GITHUB_TOKEN\"",
                ))
            }
            (None, Some(Value::String(secret))) if !secret.trim().is_empty() => {
                TokenSource::Value(SecretString::from(secret.clone()))
            }
            (None, Some(_)) => {
                return Err(self.error(&child(path, "value"), "expected a non-empty string"))
            }
        };

        let source_key = match source {
            TokenSource::Env(_) => "env",
            TokenSource::Value(_) => "value",
        };
        Ok(TokenConfig {
            line: self.line(&child(path, source_key)),
            source,
            priority: self.small_integer(table, path, "priority", 0)? as u32,
            weight: self.small_integer(table, path, "weight", 1)? as u32,
            reserve: self.integer(table, path, "reserve", 0)?,
            account: self.optional_string(table, path, "account")?,
            label: self.optional_string(table, path, "label")?,
        })
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

impl ProviderConfig {
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
        for (position, entry) in self.tokens.iter().enumerate() {
            let key = format!("{prefix}.tokens[{position}]");
            let secret = match &entry.source {
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
            };
            let mut token = Token::new(secret)
                .with_priority(entry.priority)
                .with_weight(entry.weight)
                .with_reserve(entry.reserve);
            if let Some(account) = &entry.account {
                token = token.with_account(account.clone());
            }
            if let Some(label) = &entry.label {
                token = token.with_label(label.clone());
            }
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

/// Recognizes a secret written in place of a variable name: a known token
/// prefix (GitHub's `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and
/// `github_pat_`), or 32 characters or more without an underscore, as in
/// GitHub's older 40-character hex tokens. Variable names are rarely that long
/// without one.
fn looks_like_token(name: &str) -> bool {
    const PREFIXES: [&str; 6] = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || (name.len() >= 32 && !name.contains('_'))
}

/// Replaces every word of `text` that looks like a token with `[redacted]`.
fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_like_token(word) {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == '-' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
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
