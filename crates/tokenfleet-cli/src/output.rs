//! Table and JSON output.

use serde_json::json;
use tokenfleet::core::clock::format_epoch_ms;
use tokenfleet::Repository;
use tokenfleet::{PluginListing, TokenSnapshot};

/// Writes one line to standard output. A closed pipe (`tokenfleet … | head`)
/// ends the program quietly instead of panicking as `println!` does.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing to standard output failed: {error}");
            std::process::exit(1);
        }
    }};
}

/// Prints one repository as one JSON object on one line.
pub(crate) fn print_json_line(owner: &str, repository: &Repository) {
    let line = json!({
        "provider": repository.provider,
        "owner": owner,
        "full_name": repository.full_name,
        "name": repository.name,
        "url": repository.url,
        "description": repository.description,
        "fork": repository.fork,
        "archived": repository.archived,
        "default_branch": repository.default_branch,
        "language": repository.language,
        "created_at": repository.created_at,
        "updated_at": repository.updated_at,
    });
    out!("{line}");
}

/// Returns the width of the widest of `header` and the `values`, in characters.
fn column_width<'a>(header: &str, values: impl Iterator<Item = &'a str>) -> usize {
    values
        .map(|value| value.chars().count())
        .chain(std::iter::once(header.chars().count()))
        .max()
        .unwrap_or(0)
}

/// Prints repositories as an aligned table.
pub(crate) fn print_repository_table(rows: &[(String, Repository)]) {
    let name = column_width("REPOSITORY", rows.iter().map(|(_, r)| r.full_name.as_str()));
    let language = column_width(
        "LANGUAGE",
        rows.iter()
            .map(|(_, r)| r.language.as_deref().unwrap_or("-")),
    );
    out!(
        "{:<name$}  {:<language$}  {:>5}  {:>8}",
        "REPOSITORY",
        "LANGUAGE",
        "FORK",
        "ARCHIVED"
    );
    for (_, repository) in rows {
        out!(
            "{:<name$}  {:<language$}  {:>5}  {:>8}",
            repository.full_name,
            repository.language.as_deref().unwrap_or("-"),
            if repository.fork { "yes" } else { "no" },
            if repository.archived { "yes" } else { "no" },
        );
    }
    out!("{} repositories", rows.len());
}

fn limit_text(token: &TokenSnapshot, bucket: &str) -> String {
    match token.bucket(bucket) {
        Some(b) if b.unlimited => "no limit".to_owned(),
        Some(b) => match (b.remaining, b.limit) {
            (Some(remaining), Some(limit)) => format!("{remaining}/{limit}"),
            _ => "unknown".to_owned(),
        },
        None => "unknown".to_owned(),
    }
}

/// Returns the bucket a token's row shows: GitHub's `core`, else the `api`
/// bucket of GitLab, Bitbucket and Gitea, else the first one seen.
fn main_bucket(token: &TokenSnapshot) -> Option<&str> {
    ["core", "api"]
        .into_iter()
        .find(|name| token.bucket(name).is_some())
        .or_else(|| token.buckets.first().map(|b| b.bucket.as_str()))
}

/// Prints token statuses as an aligned table, one row per token with its
/// main bucket; `--format json` lists every bucket.
pub(crate) fn print_status_table(rows: &[(String, TokenSnapshot)]) {
    let provider_width = column_width("PROVIDER", rows.iter().map(|(p, _)| p.as_str()));
    let token_width = column_width("TOKEN", rows.iter().map(|(_, t)| t.id.as_str()));
    let account_width = column_width("ACCOUNT", rows.iter().map(|(_, t)| t.account.as_str()));
    let bucket_width = column_width(
        "BUCKET",
        rows.iter().map(|(_, t)| main_bucket(t).unwrap_or("-")),
    );
    out!(
        "{:<provider_width$}  {:<token_width$}  {:<account_width$}  {:<bucket_width$}  {:>11}  {:<29}  STATUS",
        "PROVIDER",
        "TOKEN",
        "ACCOUNT",
        "BUCKET",
        "BUDGET",
        "RESETS"
    );
    for (provider, token) in rows {
        let bucket = main_bucket(token);
        let reset = bucket
            .and_then(|name| token.bucket(name))
            .and_then(|b| b.reset_ms)
            .map(format_epoch_ms)
            .unwrap_or_else(|| "-".to_owned());
        let budget = match bucket {
            Some(name) => limit_text(token, name),
            None => "unknown".to_owned(),
        };
        let mut status = token.status.to_string();
        if let Some(reason) = &token.degraded {
            status.push_str(&format!(" (degraded: {reason})"));
        }
        out!(
            "{:<provider_width$}  {:<token_width$}  {:<account_width$}  {:<bucket_width$}  {:>11}  {:<29}  {}",
            provider,
            token.id.as_str(),
            token.account,
            bucket.unwrap_or("-"),
            budget,
            reset,
            status
        );
    }
    let available = rows.iter().filter(|(_, t)| t.status.is_available()).count();
    out!("{} tokens, {available} available", rows.len());
}

/// Prints token statuses as one JSON object per line.
pub(crate) fn print_status_json(rows: &[(String, TokenSnapshot)]) {
    for (provider, token) in rows {
        let buckets: serde_json::Map<String, serde_json::Value> = token
            .buckets
            .iter()
            .map(|b| {
                (
                    b.bucket.to_string(),
                    json!({
                        "limit": b.limit,
                        "remaining": b.remaining,
                        "reset": b.reset_ms.map(|ms| ms / 1000),
                        "unlimited": b.unlimited,
                    }),
                )
            })
            .collect();
        let line = json!({
            "provider": provider,
            "token": token.id.as_str(),
            "account": token.account,
            "status": token.status.to_string(),
            "available": token.status.is_available(),
            "degraded": token.degraded,
            "buckets": buckets,
        });
        out!("{line}");
    }
}

/// Shown for a plugin that registered no description.
const NO_DESCRIPTION: &str = "(no description registered)";

/// Prints the registered plugins as an aligned table.
pub(crate) fn print_plugins_table(plugins: &[PluginListing]) {
    let name = column_width("TYPE", plugins.iter().map(|p| p.name.as_str()));
    out!("{:<8}  {:<name$}  DESCRIPTION", "KIND", "TYPE");
    for plugin in plugins {
        out!(
            "{:<8}  {:<name$}  {}",
            plugin.kind.to_string(),
            plugin.name,
            plugin.description.unwrap_or(NO_DESCRIPTION)
        );
    }
}

/// Prints each registered plugin as one JSON object on one line.
pub(crate) fn print_plugins_json(plugins: &[PluginListing]) {
    for plugin in plugins {
        let line = json!({
            "kind": plugin.kind.to_string(),
            "type": plugin.name,
            "description": plugin.description,
        });
        out!("{line}");
    }
}
