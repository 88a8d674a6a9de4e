//! The `tokenfleet` command: list repositories and token statuses through a token pool.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokenfleet::Repository;
use tokenfleet::{ClientError, Fleet, TokenSnapshot, WaitPolicy};

mod output;
mod vault;

/// Spread API calls over a pool of tokens, with rate-limit tracking.
#[derive(Debug, Parser)]
#[command(
    name = "tokenfleet",
    version,
    about,
    after_help = "Exit status: 0 on success, 1 when a request or the configuration failed, \
                  2 for invalid arguments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
struct Source {
    /// The TOML configuration; without it, GITHUB_TOKENS (comma-separated)
    /// or GITHUB_TOKEN is used against api.github.com.
    #[arg(long, value_name = "FILE", conflicts_with = "simulate")]
    config: Option<PathBuf>,
    /// Run against built-in simulators of GitHub, GitLab, Bitbucket and Gitea on 127.0.0.1, with demo tokens.
    #[arg(long)]
    simulate: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// The provider to use, by its name in the configuration. `repos`
    /// defaults to the only provider, or else the one named "github";
    /// `status` defaults to every provider.
    #[arg(long, value_name = "NAME")]
    provider: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every repository of one or more owners (users or organizations).
    Repos {
        #[command(flatten)]
        source: Source,
        /// The owners whose repositories to list.
        #[arg(required = true, value_name = "OWNER")]
        owners: Vec<String>,
    },
    /// Show every token with its limits and status.
    Status {
        #[command(flatten)]
        source: Source,
    },
    /// List the provider and strategy `type` names compiled into this program.
    Plugins {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Manage the encrypted credential vault.
    Vault {
        #[command(subcommand)]
        command: vault::VaultCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A fleet and, in simulation, the simulator that must outlive it.
struct Session {
    fleet: Fleet,
    _simulators: Option<tokenfleet_testkit::demo::ForgeDemo>,
}

impl Session {
    /// Returns the providers a command works on: the one `--provider`
    /// names, else every provider.
    fn selected(&self, source: &Source) -> Result<Vec<String>, String> {
        let names = self.fleet.providers();
        if names.is_empty() {
            return Err("the configuration has no `[[providers]]` table".to_owned());
        }
        match &source.provider {
            Some(name) if names.contains(&name.as_str()) => Ok(vec![name.clone()]),
            Some(name) => Err(format!(
                "no provider named {name:?}; the configuration has {}",
                quote_names(&names)
            )),
            None => Ok(names.iter().map(|n| (*n).to_owned()).collect()),
        }
    }

    /// Returns the one provider `repos` uses: the `--provider`, else the
    /// only one, else the one named "github".
    fn single(&self, source: &Source) -> Result<String, String> {
        let mut selected = self.selected(source)?;
        match selected.len() {
            1 => Ok(selected.remove(0)),
            _ if selected.iter().any(|n| n == "github") => Ok("github".to_owned()),
            _ => Err(format!(
                "the configuration has several providers ({}); choose one with --provider NAME",
                quote_names(&self.fleet.providers())
            )),
        }
    }
}

fn quote_names(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn open(source: &Source, owners: &[String]) -> Result<Session, String> {
    if source.simulate {
        let demo = tokenfleet_testkit::demo::ForgeDemo::start(owners).await;
        let mut builder = Fleet::builder().wait(WaitPolicy::UpTo(Duration::from_secs(120)));
        for provider in demo.providers() {
            let table = provider.provider_toml();
            let plugin: Box<dyn tokenfleet::Provider> =
                toml::from_str(&table).map_err(|e| e.to_string())?;
            let tokens = provider
                .secrets
                .iter()
                .map(tokenfleet::Token::new)
                .collect();
            builder = builder.named_provider(provider.kind, Arc::from(plugin), tokens);
        }
        let fleet = builder.build().map_err(|e| e.to_string())?;
        eprintln!(
            "running on simulators on 127.0.0.1 with demo tokens: {}",
            demo.providers()
                .iter()
                .map(|p| format!("{} at {}", p.kind, p.base_url))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(Session {
            fleet,
            _simulators: Some(demo),
        });
    }

    let fleet = match &source.config {
        Some(path) => Fleet::from_config_file(path).map_err(|e| e.to_string())?,
        None => {
            let tokens = tokens_from_env().ok_or_else(|| {
                "no token configured: set GITHUB_TOKENS (comma-separated) or GITHUB_TOKEN, pass --config FILE, or try --simulate".to_owned()
            })?;
            Fleet::builder()
                .provider(Arc::new(tokenfleet::github::Github::new()), tokens)
                .build()
                .map_err(|e| e.to_string())?
        }
    };
    Ok(Session {
        fleet,
        _simulators: None,
    })
}

fn tokens_from_env() -> Option<Vec<tokenfleet::Token>> {
    for var in ["GITHUB_TOKENS", "GITHUB_TOKEN"] {
        if let Ok(list) = std::env::var(var) {
            let tokens: Vec<_> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(tokenfleet::Token::new)
                .collect();
            if !tokens.is_empty() {
                return Some(tokens);
            }
        }
    }
    None
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Repos { source, owners } => repos(&source, &owners).await,
        Command::Status { source } => status(&source).await,
        Command::Plugins { format } => {
            let plugins = tokenfleet::plugins();
            match format {
                Format::Json => output::print_plugins_json(&plugins),
                Format::Table => output::print_plugins_table(&plugins),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Vault { command } => vault::run(command),
    }
}

async fn repos(source: &Source, owners: &[String]) -> Result<ExitCode, String> {
    let session = open(source, owners).await?;
    let provider = session.single(source)?;
    let client = session
        .fleet
        .client(&provider)
        .ok_or_else(|| format!("no provider named {provider:?}"))?;
    let mut failed = false;
    let mut pool_error = None;
    let mut all: Vec<(String, Repository)> = Vec::new();
    for owner in owners {
        match client.repositories(owner).await {
            Ok(repositories) => {
                if matches!(source.format, Format::Json) {
                    for repository in &repositories {
                        output::print_json_line(owner, repository);
                    }
                } else {
                    all.extend(repositories.into_iter().map(|r| (owner.clone(), r)));
                }
            }
            Err(ClientError::Pool(error)) => {
                // No token can serve the next owners either; print what was
                // listed so far, then the reason.
                pool_error = Some(format!("listing repositories of {owner} failed: {error}"));
                break;
            }
            Err(error) => {
                eprintln!("error: listing repositories of {owner} failed: {error}");
                failed = true;
            }
        }
    }
    if matches!(source.format, Format::Table) {
        output::print_repository_table(&all);
    }
    if let Some(message) = pool_error {
        return Err(message);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn status(source: &Source) -> Result<ExitCode, String> {
    let session = open(source, &[]).await?;
    let mut code = ExitCode::SUCCESS;
    let mut rows: Vec<(String, TokenSnapshot)> = Vec::new();
    for name in session.selected(source)? {
        let client = session
            .fleet
            .client(&name)
            .ok_or_else(|| format!("no provider named {name:?}"))?;
        let tokens =
            client.pool().refresh_limits().await.map_err(|error| {
                format!("reading the limits of the {name} tokens failed: {error}")
            })?;
        if let Some(problem) = pool_problem(&name, &tokens) {
            eprintln!("error: {problem}");
            code = ExitCode::FAILURE;
        }
        rows.extend(tokens.into_iter().map(|t| (name.clone(), t)));
    }
    match source.format {
        Format::Json => output::print_status_json(&rows),
        Format::Table => output::print_status_table(&rows),
    }
    Ok(code)
}

/// Describes why a provider's pool cannot serve any request, if it cannot.
fn pool_problem(name: &str, tokens: &[TokenSnapshot]) -> Option<String> {
    if tokens.is_empty() {
        return Some(format!(
            "the {name} pool has no tokens; add `tokens` or `tokens_env` to its configuration"
        ));
    }
    if tokens
        .iter()
        .all(|t| t.status == tokenfleet::TokenStatus::Invalid)
    {
        return Some(format!("every {name} token was rejected as invalid"));
    }
    // Every valid token's status request failed: the provider is unreachable
    // or is not the API the configuration names.
    let valid: Vec<&TokenSnapshot> = tokens
        .iter()
        .filter(|t| t.status != tokenfleet::TokenStatus::Invalid)
        .collect();
    if !valid.is_empty() && valid.iter().all(|t| t.probe_error.is_some()) {
        let reason = valid[0].probe_error.as_deref().unwrap_or_default();
        return Some(format!(
            "no {name} token's limits could be read ({reason}); check the provider's \
             base_url and the network"
        ));
    }
    None
}
