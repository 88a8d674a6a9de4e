//! Classifies Bitbucket responses and attaches the provider's own budget
//! estimate, because Bitbucket's responses state no remaining budget.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{DATE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use tokenfleet_core::{Outcome, ResponseView, Verdict};

use crate::config::{Bitbucket, MAX_LIMIT};
use crate::estimate::Window;

/// The header that states an access token's hourly limit on the scaled
/// `/2.0/repositories/*` endpoints.
const LIMIT: &str = "x-ratelimit-limit";

/// `Date` has one-second resolution: a response dated `D` was sent at or
/// before `D + 999` ms.
const DATE_RESOLUTION_MS: u64 = 1_000;

/// The largest gap between `Date` and the local clock that is taken as
/// clock skew rather than a broken header.
const MAX_SKEW_MS: u64 = 24 * 3_600_000;

/// Classifies one Bitbucket response with the rules listed under
/// "Classification" in the crate documentation, and logs the request in the
/// account's estimate when the server counted it.
pub(crate) fn classify(bitbucket: &Bitbucket, response: &ResponseView<'_>) -> Verdict {
    let headers = response.headers;
    let server_date_ms = parse_date_ms(headers);
    let at_ms = log_time(server_date_ms, response.now_ms);
    let window = Window {
        limit: bitbucket.limit.get(),
        length_ms: bitbucket.window_ms(),
    };
    let estimate = &bitbucket.estimate;

    let status = response.status;
    let verdict = if status == StatusCode::UNAUTHORIZED {
        // A rejected request is charged to no one.
        Verdict::new(Outcome::InvalidToken)
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after_ms = parse_retry_after(headers, server_date_ms).map(millis);
        let reset_ms = estimate.throttled(
            response.account,
            at_ms,
            window,
            parse_limit(headers),
            retry_after_ms,
        );
        Verdict::new(Outcome::PrimaryLimit {
            reset_ms: Some(reset_ms),
        })
    } else {
        let outcome = if status == StatusCode::FORBIDDEN {
            Outcome::Forbidden
        } else if status.is_server_error() {
            Outcome::ServerError
        } else {
            Outcome::Answered
        };
        // Server errors are logged too: the server may have counted them,
        // and an estimate that counts too many only errs on the safe side.
        let observation = estimate.record(response.account, at_ms, window, parse_limit(headers));
        Verdict::new(outcome).with_observation(Some(observation))
    };
    verdict.with_server_date(server_date_ms)
}

/// Returns the time to log a response at: the latest instant its `Date`
/// can stand for, or the local time when `Date` is missing or implausible.
///
/// The server counted the request before it sent the response, so the
/// logged entry never leaves the window before the server's does.
fn log_time(server_date_ms: Option<u64>, now_ms: u64) -> u64 {
    match server_date_ms {
        Some(date_ms) if date_ms.abs_diff(now_ms) <= MAX_SKEW_MS => {
            date_ms.saturating_add(DATE_RESOLUTION_MS - 1)
        }
        _ => now_ms,
    }
}

/// Reads `X-RateLimit-Limit`. Zero, values above [`MAX_LIMIT`] and text
/// that is not an integer are ignored as garbled.
fn parse_limit(headers: &HeaderMap) -> Option<u64> {
    let limit: u64 = headers.get(LIMIT)?.to_str().ok()?.trim().parse().ok()?;
    (1..=MAX_LIMIT).contains(&limit).then_some(limit)
}

/// Reads the `Date` header as epoch milliseconds.
fn parse_date_ms(headers: &HeaderMap) -> Option<u64> {
    let text = headers.get(DATE)?.to_str().ok()?;
    let date = httpdate::parse_http_date(text.trim()).ok()?;
    epoch_ms(date)
}

/// Reads `Retry-After` as delay seconds or, measured from the response's
/// `Date`, as an HTTP date. A date in the past gives a zero wait.
fn parse_retry_after(headers: &HeaderMap, server_date_ms: Option<u64>) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let until_ms = epoch_ms(httpdate::parse_http_date(text).ok()?)?;
    let now_ms = server_date_ms?;
    Some(Duration::from_millis(until_ms.saturating_sub(now_ms)))
}

fn epoch_ms(time: SystemTime) -> Option<u64> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use http::HeaderValue;
    use tokenfleet_core::{Bucket, Observation};

    use super::*;
    use crate::buckets;

    /// 2023-11-14T22:13:20Z.
    const N_MS: u64 = 1_700_000_000_000;
    const DATE_TEXT: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const HOUR_MS: u64 = 3_600_000;
    const LOGGED_AT: u64 = N_MS + 999;

    const THROTTLED: &str = "Rate limit for this resource has been exceeded";
    const BEARER_INVALID: &str = r#"{"type":"error","error":{"message":"Token is invalid, expired, or not supported for this endpoint."}}"#;
    const BEARER_EXPIRED: &str = r#"{"type":"error","error":{"message":"Access token expired."}}"#;
    const BASIC_INVALID: &str = "Login failed due to incorrect login credentials or method. See https://support.atlassian.com/bitbucket-cloud/docs/using-app-passwords/";
    const FORBIDDEN: &str = r#"{"type":"error","error":{"message":"Forbidden"}}"#;
    const NOT_FOUND: &str =
        r#"{"type":"error","error":{"message":"No workspace with identifier 'ghost'."}}"#;
    const PAGE: &str = r#"{"pagelen":10,"values":[],"page":1}"#;
    const HTML_502: &str = "<html><body><h1>502 Bad Gateway</h1></body></html>";

    fn provider(limit: u64) -> Bitbucket {
        Bitbucket::new().limit(NonZeroU64::new(limit).unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn classify_as(
        bitbucket: &Bitbucket,
        account: &str,
        status: u16,
        pairs: &[(&'static str, &str)],
        body: &str,
    ) -> Verdict {
        let headers = headers(pairs);
        let bucket: Bucket = buckets::API;
        let view = ResponseView {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body: body.as_bytes(),
            bucket: &bucket,
            account,
            now_ms: N_MS,
        };
        classify(bitbucket, &view)
    }

    fn observation(limit: u64, used: u64, reset_ms: u64) -> Option<Observation> {
        Some(Observation {
            bucket: None,
            limit,
            remaining: limit - used,
            used: Some(used),
            reset_ms,
        })
    }

    /// Status, headers, body, expected outcome and expected estimate.
    type Row = (
        u16,
        Vec<(&'static str, &'static str)>,
        &'static str,
        Outcome,
        Option<Observation>,
    );

    /// Every row of the decision table, each on a fresh provider with a
    /// limit of 10: status, headers, body, outcome, and the estimate the
    /// verdict carries.
    #[test]
    fn classify_table() {
        let dated: &[(&'static str, &str)] = &[("date", DATE_TEXT)];
        let logged = observation(10, 1, LOGGED_AT + HOUR_MS);
        let cases: Vec<Row> = vec![
            (200, dated.to_vec(), PAGE, Outcome::Answered, logged.clone()),
            (
                200,
                vec![
                    ("date", DATE_TEXT),
                    ("x-ratelimit-limit", "2500"),
                    ("x-ratelimit-resource", "api"),
                    ("x-ratelimit-nearlimit", "false"),
                ],
                PAGE,
                Outcome::Answered,
                observation(2_500, 1, LOGGED_AT + HOUR_MS),
            ),
            (
                404,
                dated.to_vec(),
                NOT_FOUND,
                Outcome::Answered,
                logged.clone(),
            ),
            (
                403,
                dated.to_vec(),
                FORBIDDEN,
                Outcome::Forbidden,
                logged.clone(),
            ),
            (
                500,
                dated.to_vec(),
                "",
                Outcome::ServerError,
                logged.clone(),
            ),
            (
                502,
                dated.to_vec(),
                HTML_502,
                Outcome::ServerError,
                logged.clone(),
            ),
            (
                503,
                dated.to_vec(),
                "",
                Outcome::ServerError,
                logged.clone(),
            ),
            (
                401,
                vec![("date", DATE_TEXT)],
                BEARER_INVALID,
                Outcome::InvalidToken,
                None,
            ),
            (
                401,
                vec![("date", DATE_TEXT)],
                BEARER_EXPIRED,
                Outcome::InvalidToken,
                None,
            ),
            (
                401,
                vec![
                    ("date", DATE_TEXT),
                    ("www-authenticate", "Basic realm=\"Bitbucket.org HTTP\""),
                ],
                BASIC_INVALID,
                Outcome::InvalidToken,
                None,
            ),
            (
                // A 429 the log cannot explain: another program spent the budget.
                429,
                vec![("date", DATE_TEXT), ("content-type", "text/plain")],
                THROTTLED,
                Outcome::PrimaryLimit {
                    reset_ms: Some(LOGGED_AT + 60_000),
                },
                None,
            ),
            (
                429,
                vec![("date", DATE_TEXT), ("retry-after", "30")],
                THROTTLED,
                Outcome::PrimaryLimit {
                    reset_ms: Some(LOGGED_AT + 30_000),
                },
                None,
            ),
            (
                429,
                vec![
                    ("date", DATE_TEXT),
                    ("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT"),
                ],
                THROTTLED,
                Outcome::PrimaryLimit {
                    reset_ms: Some(LOGGED_AT + 120_000),
                },
                None,
            ),
        ];

        for (status, pairs, body, outcome, expected) in cases {
            let bitbucket = provider(10);
            let verdict = classify_as(&bitbucket, "alice", status, &pairs, body);
            assert_eq!(verdict.outcome, outcome, "{status} {body}");
            assert_eq!(verdict.observation, expected, "{status} {body}");
            assert_eq!(verdict.server_date_ms, Some(N_MS), "{status} {body}");
        }
    }

    #[test]
    fn throttle_after_own_spend_waits_for_oldest() {
        let bitbucket = provider(2);
        let dated = [("date", DATE_TEXT)];
        classify_as(&bitbucket, "alice", 200, &dated, PAGE);
        let last = classify_as(&bitbucket, "alice", 200, &dated, PAGE);
        assert_eq!(last.observation, observation(2, 2, LOGGED_AT + HOUR_MS));

        let throttled = classify_as(&bitbucket, "alice", 429, &dated, THROTTLED);
        assert_eq!(
            throttled.outcome,
            Outcome::PrimaryLimit {
                reset_ms: Some(LOGGED_AT + HOUR_MS)
            }
        );
    }

    #[test]
    fn rejected_requests_are_not_logged() {
        let bitbucket = provider(10);
        let dated = [("date", DATE_TEXT)];
        classify_as(&bitbucket, "alice", 401, &dated, BEARER_INVALID);
        classify_as(&bitbucket, "alice", 429, &dated, THROTTLED);
        assert_eq!(bitbucket.estimate.logged("alice"), 0);

        let answered = classify_as(&bitbucket, "alice", 200, &dated, PAGE);
        assert_eq!(answered.observation.unwrap().used, Some(1));
    }

    #[test]
    fn missing_date_uses_local_time() {
        let bitbucket = provider(10);
        let verdict = classify_as(&bitbucket, "alice", 200, &[], PAGE);
        assert_eq!(verdict.server_date_ms, None);
        assert_eq!(verdict.observation, observation(10, 1, N_MS + HOUR_MS));
    }

    #[test]
    fn garbled_headers_fall_back_to_estimate() {
        let cases: [&[(&'static str, &str)]; 6] = [
            &[("date", "yesterday"), ("x-ratelimit-limit", "many")],
            &[("date", ""), ("x-ratelimit-limit", "0")],
            &[("x-ratelimit-limit", "-5")],
            &[("x-ratelimit-limit", "99999999999999999999")],
            &[("x-ratelimit-limit", "1000000")],
            // 1970: a broken `Date`, not a skewed clock.
            &[("date", "Thu, 01 Jan 1970 00:00:00 GMT")],
        ];
        for pairs in cases {
            let bitbucket = provider(10);
            let verdict = classify_as(&bitbucket, "alice", 200, pairs, PAGE);
            assert_eq!(verdict.outcome, Outcome::Answered, "{pairs:?}");
            assert_eq!(
                verdict.observation,
                observation(10, 1, N_MS + HOUR_MS),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn garbled_retry_after_backs_off() {
        let bitbucket = provider(10);
        let pairs = [("date", DATE_TEXT), ("retry-after", "soon")];
        let verdict = classify_as(&bitbucket, "alice", 429, &pairs, THROTTLED);
        assert_eq!(
            verdict.outcome,
            Outcome::PrimaryLimit {
                reset_ms: Some(LOGGED_AT + 60_000)
            }
        );
    }

    #[test]
    fn accounts_keep_separate_estimates() {
        let bitbucket = provider(10);
        let dated = [("date", DATE_TEXT)];
        classify_as(&bitbucket, "alice", 200, &dated, PAGE);
        classify_as(&bitbucket, "alice", 200, &dated, PAGE);
        let bob = classify_as(&bitbucket, "bob", 200, &dated, PAGE);
        assert_eq!(bob.observation.unwrap().used, Some(1));
    }
}
