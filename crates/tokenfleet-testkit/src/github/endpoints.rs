//! Data endpoints of the GitHub simulator: the user, repository listings, search and GraphQL.

use serde_json::{json, Value};
use wiremock::Request;

use super::reply::Reply;
use super::repos::{self, OwnerIdentity, PageRequest, Urls, SEARCH_RESULT_CAP};
use super::state::{State, Usage};

fn query_pairs(request: &Request) -> Vec<(String, String)> {
    request
        .url
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// Serves `GET /user` with the caller's simple-user object.
pub(crate) fn user(login: &str, id: u64, urls: &Urls) -> Reply {
    let identity = OwnerIdentity {
        login,
        id,
        is_user: true,
    };
    Reply::json(200, &repos::owner_json(identity, urls))
}

/// Serves `GET /users/{owner}/repos` and `GET /orgs/{owner}/repos`; `None` means not found.
///
/// An account is a user, so `/orgs/{login}/repos` does not find it.
pub(crate) fn owner_repositories(
    state: &State,
    request: &Request,
    api_path: &str,
    urls: &Urls,
    owner: &str,
    organization: bool,
) -> Option<Reply> {
    let key = owner.to_lowercase();
    let account = state.accounts.get(&key);
    let entry = state.owners.get(&key);

    let identity = match (account, entry) {
        (Some(_), _) if organization => None,
        (Some(account), _) => Some(OwnerIdentity {
            login: &account.login,
            id: account.id,
            is_user: true,
        }),
        (None, Some(entry)) => Some(OwnerIdentity {
            login: &entry.login,
            id: entry.org_id,
            is_user: false,
        }),
        (None, None) => None,
    };
    let identity = identity?;

    let repositories = entry.map_or(&[][..], |entry| &entry.repositories[..]);
    let query = query_pairs(request);
    let page = PageRequest::from_query(&query);
    let items: Vec<Value> = repositories[page.range(repositories.len())]
        .iter()
        .map(|repo| repos::repository_json(identity, repo, urls))
        .collect();

    let endpoint = format!("{}{api_path}", urls.api);
    let reply = Reply::json(200, &Value::Array(items));
    Some(
        match page.link_header(&endpoint, &query, repositories.len()) {
            Some(link) => reply.header("link", link),
            None => reply,
        },
    )
}

/// Serves `GET /search/repositories`, matching repository names against `q`.
pub(crate) fn search_repositories(
    state: &State,
    request: &Request,
    api_path: &str,
    urls: &Urls,
) -> Reply {
    let query = query_pairs(request);
    let Some(q) = search_query(&query) else {
        return search_validation_failed();
    };

    let mut owner_keys: Vec<&String> = state.owners.keys().collect();
    owner_keys.sort();

    let mut matches = Vec::new();
    for key in owner_keys {
        let entry = &state.owners[key];
        let identity = match state.accounts.get(key) {
            Some(account) => OwnerIdentity {
                login: &account.login,
                id: account.id,
                is_user: true,
            },
            None => OwnerIdentity {
                login: &entry.login,
                id: entry.org_id,
                is_user: false,
            },
        };
        for repo in &entry.repositories {
            if repos::matches_query(q, identity.login, &repo.name) {
                matches.push((identity, repo));
            }
        }
    }

    let available = matches.len().min(SEARCH_RESULT_CAP);
    let page = PageRequest::from_query(&query);
    let items: Vec<Value> = matches[page.range(available)]
        .iter()
        .map(|(identity, repo)| {
            let mut item = repos::repository_json(*identity, repo, urls);
            item["score"] = json!(1.0);
            item
        })
        .collect();

    let body = json!({
        "total_count": matches.len(),
        "incomplete_results": false,
        "items": items,
    });
    let endpoint = format!("{}{api_path}", urls.api);
    let reply = Reply::json(200, &body);
    match page.link_header(&endpoint, &query, available) {
        Some(link) => reply.header("link", link),
        None => reply,
    }
}

/// Serves a search kind that the simulator stores nothing for with an empty result.
pub(crate) fn search_empty(request: &Request) -> Reply {
    if search_query(&query_pairs(request)).is_none() {
        return search_validation_failed();
    }
    let body = json!({"total_count": 0, "incomplete_results": false, "items": []});
    Reply::json(200, &body)
}

fn search_query(query: &[(String, String)]) -> Option<&str> {
    query
        .iter()
        .find(|(name, _)| name == "q")
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.trim().is_empty())
}

fn search_validation_failed() -> Reply {
    let body = json!({
        "message": "Validation Failed",
        "errors": [{"resource": "Search", "field": "q", "code": "missing"}],
        "documentation_url": "https://docs.github.com/rest/search/search",
        "status": "422",
    });
    Reply::json(422, &body)
}

/// Serves `POST /graphql` with the query's cost and the bucket after spending it.
pub(crate) fn graphql(request: &Request, cost: u64, usage: Usage) -> Reply {
    let has_query = request
        .body_json::<Value>()
        .ok()
        .is_some_and(|body| body.get("query").is_some_and(Value::is_string));
    if !has_query {
        return Reply::message(
            400,
            "Problems parsing JSON",
            "https://docs.github.com/graphql",
        );
    }

    let body = json!({
        "data": {
            "rateLimit": {
                "cost": cost,
                "limit": usage.limit,
                "used": usage.used,
                "remaining": usage.remaining,
                "resetAt": repos::format_iso8601(usage.reset),
            }
        }
    });
    Reply::json(200, &body)
}
