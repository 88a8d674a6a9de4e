//! The Gitea simulator's state: accounts, tokens, the proxy's budgets,
//! generated repositories and counters.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};
use tokenfleet_core::clock::format_epoch_ms;

/// The first id handed to a user account.
const FIRST_USER_ID: u64 = 1_000;

/// The first id handed to an organization.
const FIRST_ORGANIZATION_ID: u64 = 500_000;

/// The first repository id.
const FIRST_REPOSITORY_ID: u64 = 10_000;

/// 2020-01-01T00:00:00Z in epoch milliseconds, the earliest generated creation time.
const EARLIEST_CREATED_MS: u64 = 1_577_836_800_000;

const LANGUAGES: [&str; 6] = ["Go", "Rust", "Python", "", "TypeScript", "C"];

/// A fixed-window budget that a proxy in front of the server applies to
/// one account. A window opens at the first request after the previous
/// one ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyMeter {
    budget: u64,
    window_ms: u64,
    /// The start of the open window, or `None` before the first request.
    window_start_ms: Option<u64>,
    used: u64,
}

impl ProxyMeter {
    pub(crate) fn new(budget: u64, window_ms: u64) -> Self {
        Self {
            budget,
            window_ms,
            window_start_ms: None,
            used: 0,
        }
    }

    /// Returns the end of the window open at `now_ms`, if one is open.
    fn open_window_end(&self, now_ms: u64) -> Option<u64> {
        let end = self.window_start_ms?.saturating_add(self.window_ms);
        (now_ms < end).then_some(end)
    }

    /// Opens a new window at `now_ms` unless one is open.
    fn open(&mut self, now_ms: u64) {
        if self.open_window_end(now_ms).is_none() {
            self.window_start_ms = Some(now_ms);
            self.used = 0;
        }
    }

    /// Spends one request, or returns the end of the spent window.
    pub(crate) fn try_spend(&mut self, now_ms: u64) -> Result<(), u64> {
        self.open(now_ms);
        if self.used >= self.budget {
            return Err(self.window_end());
        }
        self.used += 1;
        Ok(())
    }

    /// Leaves `remaining` requests in the window, opening one if needed.
    pub(crate) fn set_remaining(&mut self, now_ms: u64, remaining: u64) {
        self.open(now_ms);
        self.used = self.budget.saturating_sub(remaining);
    }

    /// Returns the requests of one window.
    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// Returns the requests left at `now_ms`.
    pub(crate) fn remaining(&self, now_ms: u64) -> u64 {
        match self.open_window_end(now_ms) {
            Some(_) => self.budget.saturating_sub(self.used),
            None => self.budget,
        }
    }

    /// Returns when the budget is whole again: the end of the open window,
    /// or one window from `now_ms` when none is open.
    pub(crate) fn reset_ms(&self, now_ms: u64) -> u64 {
        self.open_window_end(now_ms)
            .unwrap_or(now_ms.saturating_add(self.window_ms))
    }

    fn window_end(&self) -> u64 {
        self.window_start_ms
            .unwrap_or(0)
            .saturating_add(self.window_ms)
    }
}

/// A user that tokens belong to.
#[derive(Debug)]
pub(crate) struct Account {
    pub(crate) login: String,
    pub(crate) id: u64,
    /// The proxy's budget, when the account is limited.
    pub(crate) proxy: Option<ProxyMeter>,
    /// Injected 429 responses without headers still to be sent.
    pub(crate) injected_throttles: u32,
}

/// A registered token.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    /// The lower-case login of the account the token belongs to.
    pub(crate) account: String,
    pub(crate) revoked: bool,
}

/// One generated repository. Its URLs are built per request from the
/// caller's host.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    id: u64,
    pub(crate) name: String,
    description: String,
    language: &'static str,
    fork: bool,
    archived: bool,
    empty: bool,
    created_ms: u64,
}

/// A user or organization with repositories.
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) login: String,
    pub(crate) id: u64,
    pub(crate) organization: bool,
    pub(crate) repositories: Vec<Repository>,
}

/// Request and response counts of the simulator.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) total: u64,
    pub(crate) by_token: HashMap<String, u64>,
    pub(crate) successful: u64,
    pub(crate) over_limit: u64,
    pub(crate) throttled: u64,
    pub(crate) unauthorized: u64,
    pub(crate) server_errors: u64,
}

/// Everything the simulator keeps, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) accounts: HashMap<String, Account>,
    pub(crate) tokens: HashMap<String, TokenEntry>,
    /// Owners with repositories, by lower-case login.
    pub(crate) owners: HashMap<String, Owner>,
    /// Paths below the API root that return 403.
    pub(crate) forbidden: HashSet<String>,
    /// Injected 502 responses still to be sent.
    pub(crate) server_errors: u32,
    pub(crate) last_credential: Option<String>,
    pub(crate) last_scheme: Option<String>,
    pub(crate) counters: Counters,
    next_organization_id: u64,
    next_repository_id: u64,
}

impl State {
    /// Registers a user account and returns its id.
    pub(crate) fn add_account(&mut self, login: &str) -> u64 {
        let key = login.to_lowercase();
        assert!(
            !self.accounts.contains_key(&key),
            "account {login:?} is already registered"
        );
        assert!(
            !self
                .owners
                .get(&key)
                .is_some_and(|owner| owner.organization),
            "{login:?} is already an organization"
        );
        let id = FIRST_USER_ID + self.accounts.len() as u64;
        self.accounts.insert(
            key,
            Account {
                login: login.to_owned(),
                id,
                proxy: None,
                injected_throttles: 0,
            },
        );
        id
    }

    /// Returns the account of `login`.
    ///
    /// # Panics
    ///
    /// Panics when no account has that login.
    pub(crate) fn expect_account(&mut self, login: &str) -> &mut Account {
        self.accounts
            .get_mut(&login.to_lowercase())
            .unwrap_or_else(|| panic!("unknown account {login:?}: call add_account first"))
    }

    /// Adds `count` generated repositories to `owner`: the user of that
    /// login when one is registered, else an organization.
    pub(crate) fn add_repositories(&mut self, owner: &str, count: usize) {
        let key = owner.to_lowercase();
        if !self.owners.contains_key(&key) {
            let (login, id, organization) = match self.accounts.get(&key) {
                Some(account) => (account.login.clone(), account.id, false),
                None => {
                    let id = FIRST_ORGANIZATION_ID + self.next_organization_id;
                    self.next_organization_id += 1;
                    (owner.to_owned(), id, true)
                }
            };
            let entry = Owner {
                login,
                id,
                organization,
                repositories: Vec::new(),
            };
            self.owners.insert(key.clone(), entry);
        }

        let first_id = FIRST_REPOSITORY_ID + self.next_repository_id;
        self.next_repository_id += count as u64;
        let entry = self.owners.get_mut(&key).expect("inserted above");
        let start = entry.repositories.len();
        for offset in 0..count {
            let index = start + offset;
            entry
                .repositories
                .push(generate(&entry.login, index, first_id + offset as u64));
        }
    }

    /// Returns the user or organization `login` for the listing path
    /// `users` or `orgs`, if it exists there.
    ///
    /// A registered user without repositories is listed with none.
    pub(crate) fn listing_owner(&self, login: &str, organization: bool) -> Option<OwnerView<'_>> {
        let key = login.to_lowercase();
        if let Some(owner) = self.owners.get(&key) {
            return (owner.organization == organization).then_some(OwnerView {
                login: &owner.login,
                id: owner.id,
                repositories: &owner.repositories,
            });
        }
        if organization {
            return None;
        }
        self.accounts.get(&key).map(|account| OwnerView {
            login: &account.login,
            id: account.id,
            repositories: &[],
        })
    }
}

/// An owner as a listing reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnerView<'a> {
    pub(crate) login: &'a str,
    pub(crate) id: u64,
    pub(crate) repositories: &'a [Repository],
}

/// Generates the repository at `index` of `owner`, the same on every run.
fn generate(owner: &str, index: usize, id: u64) -> Repository {
    Repository {
        id,
        name: format!("{}-{index:04}", owner.to_lowercase()),
        description: if index % 3 == 0 {
            String::new()
        } else {
            format!("Generated repository {index} of {owner}")
        },
        language: LANGUAGES[index % LANGUAGES.len()],
        fork: index % 7 == 3,
        archived: index % 11 == 5,
        empty: index % 13 == 12,
        created_ms: EARLIEST_CREATED_MS + index as u64 * 86_400_000,
    }
}

impl Repository {
    /// Builds Gitea's JSON form of the repository. `web` is the server
    /// root, such as `http://127.0.0.1:PORT`.
    pub(crate) fn to_json(&self, owner: OwnerView<'_>, web: &str) -> Value {
        let full_name = format!("{}/{}", owner.login, self.name);
        let html_url = format!("{web}/{full_name}");
        let host = web.trim_start_matches("http://");
        let created = iso_8601(self.created_ms);
        let updated = iso_8601(self.created_ms + 3_600_000);
        json!({
            "id": self.id,
            "owner": {
                "id": owner.id,
                "login": owner.login,
                "login_name": "",
                "full_name": "",
                "email": format!("{}@noreply.localhost", owner.login.to_lowercase()),
                "avatar_url": format!("{web}/avatars/{}", owner.id),
                "username": owner.login
            },
            "name": self.name,
            "full_name": full_name,
            "description": self.description,
            "empty": self.empty,
            "private": false,
            "fork": self.fork,
            "template": false,
            "parent": null,
            "mirror": false,
            "size": 120 + self.id % 900,
            "language": self.language,
            "languages_url": format!("{web}/api/v1/repos/{full_name}/languages"),
            "html_url": html_url,
            "url": format!("{web}/api/v1/repos/{full_name}"),
            "link": "",
            "ssh_url": format!("git@{host}:{full_name}.git"),
            "clone_url": format!("{html_url}.git"),
            "original_url": "",
            "website": "",
            "stars_count": self.id % 40,
            "forks_count": self.id % 5,
            "watchers_count": 1,
            "open_issues_count": 0,
            "open_pr_counter": 0,
            "release_counter": 0,
            "default_branch": if self.empty { "" } else { "main" },
            "archived": self.archived,
            "created_at": created,
            "updated_at": updated,
            "archived_at": if self.archived { updated.clone() } else { "1970-01-01T00:00:00Z".to_owned() },
            "permissions": {"admin": false, "push": false, "pull": true},
            "has_issues": true,
            "has_wiki": true,
            "has_pull_requests": true,
            "internal": false,
            "object_format_name": "sha1"
        })
    }
}

/// Formats epoch milliseconds as an ISO 8601 UTC time, as Gitea writes them.
pub(crate) fn iso_8601(ms: u64) -> String {
    // `format_epoch_ms` gives an HTTP date; rebuild it from its fields so
    // that no date crate is needed.
    let http = format_epoch_ms(ms);
    let fields: Vec<&str> = http.split_whitespace().collect();
    let [_, day, month, year, time, _] = fields.as_slice() else {
        return "1970-01-01T00:00:00Z".to_owned();
    };
    let month = match *month {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        _ => 12,
    };
    format!("{year}-{month:02}-{day}T{time}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_MS: u64 = 1_700_000_000_000;

    #[test]
    fn meter_opens_window_at_first_use() {
        let mut meter = ProxyMeter::new(2, 60_000);
        assert_eq!(meter.remaining(START_MS), 2);
        assert_eq!(meter.reset_ms(START_MS), START_MS + 60_000);

        assert_eq!(meter.try_spend(START_MS + 5_000), Ok(()));
        assert_eq!(meter.try_spend(START_MS + 6_000), Ok(()));
        assert_eq!(meter.try_spend(START_MS + 7_000), Err(START_MS + 65_000));
        assert_eq!(meter.remaining(START_MS + 7_000), 0);
        assert_eq!(meter.reset_ms(START_MS + 7_000), START_MS + 65_000);

        assert_eq!(meter.try_spend(START_MS + 65_000), Ok(()));
        assert_eq!(meter.remaining(START_MS + 65_000), 1);
        assert_eq!(meter.reset_ms(START_MS + 65_000), START_MS + 125_000);
    }

    #[test]
    fn meter_set_remaining_opens_window() {
        let mut meter = ProxyMeter::new(10, 60_000);
        meter.set_remaining(START_MS, 0);
        assert_eq!(meter.remaining(START_MS), 0);
        assert_eq!(meter.try_spend(START_MS + 1), Err(START_MS + 60_000));
        meter.set_remaining(START_MS + 2, 20);
        assert_eq!(meter.remaining(START_MS + 2), 10);
    }

    #[test]
    fn iso_8601_matches_gitea_form() {
        assert_eq!(iso_8601(START_MS), "2023-11-14T22:13:20Z");
        assert_eq!(iso_8601(EARLIEST_CREATED_MS), "2020-01-01T00:00:00Z");
    }

    #[test]
    fn repositories_of_unknown_owner_make_an_organization() {
        let mut state = State::default();
        state.add_account("Alice");
        state.add_repositories("alice", 2);
        state.add_repositories("Forge", 1);

        let user = state.listing_owner("ALICE", false).unwrap();
        assert_eq!(user.login, "Alice");
        assert_eq!(user.repositories.len(), 2);
        assert!(state.listing_owner("alice", true).is_none());

        let organization = state.listing_owner("forge", true).unwrap();
        assert_eq!(organization.repositories[0].name, "forge-0000");
        assert!(state.listing_owner("forge", false).is_none());
        assert!(state.listing_owner("nobody", false).is_none());
    }
}
