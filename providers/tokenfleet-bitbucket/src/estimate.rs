//! The budget estimate: a sliding log of the requests classified per
//! account, because Bitbucket states neither a remaining budget nor a reset.
//!
//! Times in the log are server epoch milliseconds when responses carry a
//! `Date`, so the resets derived from them are in server time like every
//! other reset the pool reads.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use tokenfleet_core::Observation;

/// The first wait after a 429 that the log cannot explain.
const FIRST_BACKOFF_MS: u64 = 60_000;

/// How far the reset moves when an account's limit changes. The pool takes
/// resets less than 2 s apart for one window, and within one window it
/// reads a drop in the remaining budget as the cost of one request. A
/// lower limit is no spend, so its estimate starts a window of its own.
const NEW_LIMIT_SHIFT_MS: u64 = 5_000;

/// The window settings an estimate is made with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Requests per window, unless a response stated another limit.
    pub(crate) limit: u64,
    /// The window length in milliseconds.
    pub(crate) length_ms: u64,
}

/// The request logs of every account seen, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct Estimator {
    accounts: Mutex<HashMap<String, AccountLog>>,
}

/// The request log and backoff state of one account.
#[derive(Debug, Default)]
struct AccountLog {
    /// The response time of each logged request, oldest first: at most
    /// `limit` entries, all within the last window.
    times: VecDeque<u64>,
    /// The limit the last `X-RateLimit-Limit` header stated, if any.
    stated_limit: Option<u64>,
    /// The limit and reset of the last estimate returned.
    reported: Option<(u64, u64)>,
    /// Throttles the log could not explain: how many in a row.
    strikes: u32,
    /// The end of the current or last backoff.
    backoff_until_ms: u64,
}

impl AccountLog {
    fn limit(&self, window: Window) -> u64 {
        self.stated_limit.unwrap_or(window.limit).max(1)
    }

    /// Drops the entries that left the window by `at_ms`. An entry logged at
    /// `t` counts until `t + length`, exclusive.
    fn prune(&mut self, at_ms: u64, window: Window) {
        while self
            .times
            .front()
            .is_some_and(|&time| time.saturating_add(window.length_ms) <= at_ms)
        {
            self.times.pop_front();
        }
    }

    /// Returns the time the oldest logged request leaves the window.
    fn next_free_ms(&self, at_ms: u64, window: Window) -> u64 {
        self.times
            .front()
            .copied()
            .unwrap_or(at_ms)
            .saturating_add(window.length_ms)
    }
}

impl Estimator {
    /// Logs one request the server counted, whose response arrived at `at_ms`, and
    /// returns the account's estimated budget.
    ///
    /// The observation's `reset_ms` is when the oldest logged request leaves
    /// the window, which is when the next unit frees up. Resets only move
    /// forward from one call to the next, so the pool never takes a newer
    /// estimate for an older one, and a new limit moves the reset a few
    /// seconds later than the log alone would.
    pub(crate) fn record(
        &self,
        account: &str,
        at_ms: u64,
        window: Window,
        stated_limit: Option<u64>,
    ) -> Observation {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let log = log_of(&mut accounts, account, stated_limit);
        let limit = log.limit(window);

        // Times stay sorted even when `Date` headers of concurrent
        // responses arrive out of order.
        let at_ms = log.times.back().map_or(at_ms, |&last| at_ms.max(last));
        log.prune(at_ms, window);
        while log.times.len() as u64 >= limit {
            // The limit went down, or more requests than the limit were
            // served within one window because older entries were logged
            // later than the server counted them. The newest entries stay.
            log.times.pop_front();
        }
        log.times.push_back(at_ms);

        let mut reset_ms = log.next_free_ms(at_ms, window);
        if let Some((reported_limit, reported_reset_ms)) = log.reported {
            reset_ms = reset_ms.max(reported_reset_ms);
            if reported_limit != limit {
                reset_ms = reset_ms.max(reported_reset_ms.saturating_add(NEW_LIMIT_SHIFT_MS));
            }
        }
        log.reported = Some((limit, reset_ms));

        let used = log.times.len() as u64;
        Observation {
            bucket: None,
            limit,
            remaining: limit.saturating_sub(used),
            used: Some(used),
            reset_ms,
        }
    }

    /// Records a 429 received at `at_ms` and returns when the account's
    /// budget is expected back, in the same time base.
    ///
    /// A `Retry-After` wins. Otherwise, when the log contains the whole limit,
    /// the budget returns when its oldest entry leaves the window. When the
    /// log shows budget left, another program spent it: the wait starts at
    /// 60 s and doubles with each throttle, up to one window. Throttles
    /// that arrive while a backoff runs count once, and a whole window
    /// between the end of a backoff and the next throttle starts the
    /// doubling over.
    pub(crate) fn throttled(
        &self,
        account: &str,
        at_ms: u64,
        window: Window,
        stated_limit: Option<u64>,
        retry_after_ms: Option<u64>,
    ) -> u64 {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let log = log_of(&mut accounts, account, stated_limit);
        if let Some(wait_ms) = retry_after_ms {
            return at_ms.saturating_add(wait_ms);
        }

        log.prune(at_ms, window);
        if log.times.len() as u64 >= log.limit(window) {
            return log.next_free_ms(at_ms, window);
        }

        if at_ms < log.backoff_until_ms {
            // Requests sent before the backoff began answer during it.
            return log.backoff_until_ms;
        }
        if log.backoff_until_ms.saturating_add(window.length_ms) <= at_ms {
            log.strikes = 0;
        }
        log.strikes = log.strikes.saturating_add(1);
        let doublings = (log.strikes - 1).min(16);
        let wait_ms = (FIRST_BACKOFF_MS << doublings).min(window.length_ms);
        log.backoff_until_ms = at_ms.saturating_add(wait_ms);
        log.backoff_until_ms
    }

    /// Returns how many requests of `account` the log contains.
    #[cfg(test)]
    pub(crate) fn logged(&self, account: &str) -> usize {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        accounts.get(account).map_or(0, |log| log.times.len())
    }
}

/// Returns the log of `account`, created empty on first use, with the
/// limit a response stated. The key is copied only for a new account.
fn log_of<'a>(
    accounts: &'a mut HashMap<String, AccountLog>,
    account: &str,
    stated_limit: Option<u64>,
) -> &'a mut AccountLog {
    if !accounts.contains_key(account) {
        accounts.insert(account.to_owned(), AccountLog::default());
    }
    let log = accounts
        .get_mut(account)
        .expect("the log was inserted above");
    if stated_limit.is_some() {
        log.stated_limit = stated_limit;
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;
    const WINDOW: Window = Window {
        limit: 3,
        length_ms: HOUR_MS,
    };

    #[test]
    fn record_counts_down_within_window() {
        let estimator = Estimator::default();
        let first = estimator.record("a", 1_000, WINDOW, None);
        assert_eq!(first.limit, 3);
        assert_eq!(first.remaining, 2);
        assert_eq!(first.used, Some(1));
        assert_eq!(first.reset_ms, 1_000 + HOUR_MS);

        let second = estimator.record("a", 5_000, WINDOW, None);
        assert_eq!(second.remaining, 1);
        assert_eq!(second.used, Some(2));
        assert_eq!(second.reset_ms, 1_000 + HOUR_MS, "the oldest entry decides");
    }

    #[test]
    fn accounts_are_separate() {
        let estimator = Estimator::default();
        estimator.record("a", 0, WINDOW, None);
        estimator.record("a", 0, WINDOW, None);
        let other = estimator.record("b", 0, WINDOW, None);
        assert_eq!(other.remaining, 2);
    }

    #[test]
    fn oldest_entry_leaves_at_window_end() {
        let estimator = Estimator::default();
        estimator.record("a", 0, WINDOW, None);
        estimator.record("a", 10_000, WINDOW, None);
        let before = estimator.record("a", HOUR_MS - 1, WINDOW, None);
        assert_eq!(before.remaining, 0);
        assert_eq!(before.reset_ms, HOUR_MS);

        let after = estimator.record("a", HOUR_MS, WINDOW, None);
        assert_eq!(after.used, Some(3));
        assert_eq!(after.reset_ms, 10_000 + HOUR_MS);
    }

    #[test]
    fn log_never_exceeds_limit() {
        let estimator = Estimator::default();
        for at in 0..10 {
            let observation = estimator.record("a", at, WINDOW, None);
            assert!(observation.used.unwrap() <= 3);
        }
        assert_eq!(estimator.logged("a"), 3);
    }

    #[test]
    fn resets_never_move_back() {
        let estimator = Estimator::default();
        let later = estimator.record("a", 9_000, WINDOW, None);
        let earlier_date = estimator.record("a", 8_000, WINDOW, None);
        assert_eq!(later.reset_ms, earlier_date.reset_ms);
        assert_eq!(earlier_date.used, Some(2));
    }

    #[test]
    fn stated_limit_replaces_configured_one() {
        let estimator = Estimator::default();
        let stated = estimator.record("a", 0, WINDOW, Some(2_500));
        assert_eq!(stated.limit, 2_500);
        assert_eq!(stated.remaining, 2_499);

        // Later responses without the header keep the stated limit.
        let unstated = estimator.record("a", 1, WINDOW, None);
        assert_eq!(unstated.limit, 2_500);
    }

    #[test]
    fn new_limit_moves_reset() {
        let estimator = Estimator::default();
        let configured = estimator.record("a", 0, WINDOW, None);
        let stated = estimator.record("a", 1_000, WINDOW, Some(2));
        assert_eq!(stated.limit, 2);
        assert_eq!(stated.remaining, 0);
        assert_eq!(stated.reset_ms, configured.reset_ms + NEW_LIMIT_SHIFT_MS);

        // The moved reset stays until the log passes it.
        let held = estimator.record("a", HOUR_MS, WINDOW, Some(2));
        assert_eq!(held.reset_ms, configured.reset_ms + NEW_LIMIT_SHIFT_MS);
        let later = estimator.record("a", HOUR_MS + 2_000, WINDOW, Some(2));
        assert_eq!(later.reset_ms, HOUR_MS + HOUR_MS);
    }

    #[test]
    fn throttle_with_full_log_waits_for_oldest() {
        let estimator = Estimator::default();
        for at in [0, 100, 200] {
            estimator.record("a", at, WINDOW, None);
        }
        assert_eq!(estimator.throttled("a", 500, WINDOW, None, None), HOUR_MS);
    }

    #[test]
    fn throttle_with_budget_left_backs_off() {
        let estimator = Estimator::default();
        estimator.record("a", 0, WINDOW, None);

        let first = estimator.throttled("a", 1_000, WINDOW, None, None);
        assert_eq!(first, 61_000);
        let burst = estimator.throttled("a", 1_500, WINDOW, None, None);
        assert_eq!(burst, first, "a throttle during the backoff counts once");

        let second = estimator.throttled("a", first, WINDOW, None, None);
        assert_eq!(second, first + 120_000);
        let third = estimator.throttled("a", second, WINDOW, None, None);
        assert_eq!(third, second + 240_000);
    }

    #[test]
    fn backoff_is_capped_at_window() {
        let estimator = Estimator::default();
        let mut at = 0;
        for _ in 0..10 {
            let until = estimator.throttled("a", at, WINDOW, None, None);
            assert!(until - at <= HOUR_MS, "waited {} ms", until - at);
            at = until;
        }
        assert_eq!(
            estimator.throttled("a", at, WINDOW, None, None),
            at + HOUR_MS
        );
    }

    #[test]
    fn quiet_window_restarts_backoff() {
        let estimator = Estimator::default();
        let first = estimator.throttled("a", 0, WINDOW, None, None);
        let second = estimator.throttled("a", first, WINDOW, None, None);
        assert_eq!(second - first, 120_000);

        let later = second + HOUR_MS;
        assert_eq!(
            estimator.throttled("a", later, WINDOW, None, None),
            later + 60_000
        );
    }

    #[test]
    fn throttle_keeps_stated_limit() {
        let estimator = Estimator::default();
        estimator.record("a", 0, WINDOW, None);
        let until = estimator.throttled("a", 0, WINDOW, Some(1), None);
        assert_eq!(until, HOUR_MS, "the stated limit of 1 is spent");
        assert_eq!(estimator.record("a", HOUR_MS, WINDOW, None).limit, 1);
    }

    #[test]
    fn retry_after_wins() {
        let estimator = Estimator::default();
        assert_eq!(
            estimator.throttled("a", 1_000, WINDOW, None, Some(30_000)),
            31_000
        );
    }
}
