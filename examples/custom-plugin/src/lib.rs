//! A tokenfleet provider and strategy written outside the tokenfleet
//! workspace, against the facade alone.
//!
//! The provider speaks to Lighthouse, a small fictional API:
//!
//! - a token travels in `X-Lighthouse-Key: <token>`;
//! - every response carries `X-Quota-Limit`, `X-Quota-Left` and
//!   `X-Quota-Reset`, the end of the window in epoch milliseconds;
//! - a spent quota returns 503 with `X-Quota-Left: 0`;
//! - an unknown token returns 401.
//!
//! The strategy hands out the token used longest ago.
//!
//! Both register with typetag, so a config file names them by `type`:
//!
//! ```toml
//! [strategy]
//! type = "least_recently_used"
//!
//! [[providers]]
//! type = "lighthouse"
//! base_url = "https://lighthouse.example/api"
//! tokens_env = "LIGHTHOUSE_TOKENS"
//! ```

use std::sync::Mutex;

use http::header::{HeaderMap, HeaderName, HeaderValue, DATE};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokenfleet::core::{
    Candidate, ChoiceContext, Observation, Outcome, ResponseView, Token, Verdict,
};
use tokenfleet::{Bucket, Provider, RotationStrategy};
use url::Url;

/// The `type` name of the Lighthouse provider.
pub const LIGHTHOUSE: &str = "lighthouse";

/// The `type` name of the least-recently-used strategy.
pub const LEAST_RECENTLY_USED: &str = "least_recently_used";

/// Lighthouse has one quota for every endpoint.
const QUOTA: Bucket = Bucket::from_static("quota");

static KEY_HEADER: HeaderName = HeaderName::from_static("x-lighthouse-key");

/// The Lighthouse API at `base_url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lighthouse {
    /// The API root; tokens are sent to this host only.
    pub base_url: Url,
}

tokenfleet::core::register_plugin!(provider LIGHTHOUSE, "the fictional Lighthouse API");

#[typetag::serde(name = "lighthouse")]
#[async_trait::async_trait]
impl Provider for Lighthouse {
    fn kind(&self) -> &'static str {
        LIGHTHOUSE
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    fn default_bucket(&self) -> Bucket {
        QUOTA
    }

    fn bucket_for(&self, _method: &Method, _url: &Url) -> Bucket {
        QUOTA
    }

    fn authorize(&self, headers: &mut HeaderMap, token: &Token) {
        // A token with bytes a header cannot carry is sent without one;
        // the API then returns 401 and the pool marks the token invalid.
        if let Ok(mut value) = HeaderValue::from_str(token.secret()) {
            value.set_sensitive(true);
            headers.insert(KEY_HEADER.clone(), value);
        }
    }

    fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        let observation = quota(response.headers);
        let outcome = match response.status {
            StatusCode::UNAUTHORIZED => Outcome::InvalidToken,
            StatusCode::SERVICE_UNAVAILABLE if observation.is_some() => Outcome::PrimaryLimit {
                reset_ms: observation.as_ref().map(|o| o.reset_ms),
            },
            StatusCode::FORBIDDEN => Outcome::Forbidden,
            status if status.is_server_error() => Outcome::ServerError,
            _ => Outcome::Answered,
        };
        let server_date_ms = response
            .headers
            .get(DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(epoch_ms);
        Verdict::new(outcome)
            .with_observation(observation)
            .with_server_date(server_date_ms)
    }
}

/// Reads the three quota headers, or `None` when any is missing or garbled.
fn quota(headers: &HeaderMap) -> Option<Observation> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    Some(Observation {
        bucket: None,
        limit: number("x-quota-limit")?,
        remaining: number("x-quota-left")?,
        used: None,
        reset_ms: number("x-quota-reset")?,
    })
}

/// Parses an HTTP date into epoch milliseconds.
fn epoch_ms(text: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Hands out the token whose last use lies furthest back, so every token
/// is used in turn and none sits idle.
///
/// The pool's `last_used_ms` has millisecond resolution, and fast requests
/// share a millisecond, so the strategy also numbers its own choices and
/// breaks ties with that order.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeastRecentlyUsed {
    /// The number of the choice that last picked each token, by token index.
    #[serde(skip)]
    picked: Mutex<Vec<u64>>,
}

tokenfleet::core::register_plugin!(strategy LEAST_RECENTLY_USED, "the token used longest ago");

#[typetag::serde(name = "least_recently_used")]
impl RotationStrategy for LeastRecentlyUsed {
    fn name(&self) -> &'static str {
        LEAST_RECENTLY_USED
    }

    /// Picks the smallest `last_used_ms`, then the token this strategy
    /// picked longest ago; candidates come ordered by token index, so a
    /// token never picked goes first.
    fn choose(&self, candidates: &[Candidate], _context: &ChoiceContext) -> Option<usize> {
        // A poisoned lock only means another call panicked; the numbers in
        // it are still usable.
        let mut picked = self.picked.lock().unwrap_or_else(|e| e.into_inner());
        let order = |index: usize| picked.get(index).copied().unwrap_or(0);
        let (position, chosen) = candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (c.last_used_ms, order(c.token_index)))?;
        let next = picked.iter().copied().max().unwrap_or(0) + 1;
        if picked.len() <= chosen.token_index {
            picked.resize(chosen.token_index + 1, 0);
        }
        picked[chosen.token_index] = next;
        Some(position)
    }
}
