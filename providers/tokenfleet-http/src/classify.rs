//! Classifies responses by the configured statuses and reads the limits
//! their configured headers state.

use std::time::{Duration, UNIX_EPOCH};

use http::header::DATE;
use http::{HeaderMap, HeaderName};
use tokenfleet_core::{Bucket, Observation, Outcome, ResponseView, Verdict};

use crate::config::{Http, LimitHeaders, StatusClass};
use crate::settings::ResetFormat;

/// Classifies one response with the rules listed under "Classification"
/// in the crate documentation.
pub(crate) fn classify(http: &Http, response: &ResponseView<'_>) -> Verdict {
    let headers = response.headers;
    let server_date_ms = parse_date_ms(headers);
    let observation = parse_observation(&http.headers, headers, server_date_ms, response.now_ms);

    let outcome = match http.status_class(response.status.as_u16()) {
        Some(StatusClass::Invalid) => Outcome::InvalidToken,
        Some(StatusClass::Forbidden) => Outcome::Forbidden,
        Some(StatusClass::Throttle) => {
            throttled(&http.headers, headers, server_date_ms, response.now_ms)
        }
        None if response.status.is_server_error() => Outcome::ServerError,
        None => Outcome::Answered,
    };

    Verdict::new(outcome)
        .with_observation(observation)
        .with_server_date(server_date_ms)
}

/// Reads a throttled response: a primary limit when no budget is stated
/// as left and the window's end is known, else the wait the server asked
/// for, else a cooldown of the pool's choosing.
fn throttled(
    names: &LimitHeaders,
    headers: &HeaderMap,
    server_date_ms: Option<u64>,
    now_ms: u64,
) -> Outcome {
    let remaining =
        header_text(headers, &names.remaining).and_then(|text| text.parse::<u64>().ok());
    let reset_ms = parse_reset_ms(names, headers, server_date_ms, now_ms);

    if let (None | Some(0), Some(reset_ms)) = (remaining, reset_ms) {
        return Outcome::PrimaryLimit {
            reset_ms: Some(reset_ms),
        };
    }
    Outcome::SecondaryLimit {
        retry_after: parse_retry_after(&names.retry_after, headers, server_date_ms, now_ms),
    }
}

/// Reads the limit, remaining and reset headers, and the used and bucket
/// headers when configured. Limit, remaining and reset must all be
/// readable, or there is no observation; a garbled header never reads as
/// a budget of zero.
///
/// Without a used header, `used` is `limit − remaining`, so that the pool
/// can still tell an older response of the same window from a newer one.
pub(crate) fn parse_observation(
    names: &LimitHeaders,
    headers: &HeaderMap,
    server_date_ms: Option<u64>,
    now_ms: u64,
) -> Option<Observation> {
    let number = |name: &HeaderName| header_text(headers, name)?.parse::<u64>().ok();

    let limit = number(&names.limit)?;
    let remaining = number(&names.remaining)?;
    let reset_ms = parse_reset_ms(names, headers, server_date_ms, now_ms)?;
    let used = match &names.used {
        Some(name) => number(name),
        None => limit.checked_sub(remaining),
    };
    let bucket = names
        .bucket
        .as_ref()
        .and_then(|name| header_text(headers, name))
        .filter(|text| !text.is_empty())
        .map(Bucket::from);

    Some(Observation {
        bucket,
        limit,
        remaining,
        used,
        reset_ms,
    })
}

/// Reads the reset header as server epoch milliseconds, in the configured format.
///
/// A relative reset counts from the response's `Date` when it has one,
/// because the pool converts server times with the `Date` offset, and
/// from `now_ms` otherwise.
pub(crate) fn parse_reset_ms(
    names: &LimitHeaders,
    headers: &HeaderMap,
    server_date_ms: Option<u64>,
    now_ms: u64,
) -> Option<u64> {
    let text = header_text(headers, &names.reset)?;
    match names.reset_format {
        ResetFormat::EpochSeconds => seconds_to_ms(text),
        ResetFormat::EpochMilliseconds => text.parse::<u64>().ok(),
        ResetFormat::SecondsFromNow => {
            let base_ms = server_date_ms.unwrap_or(now_ms);
            base_ms.checked_add(seconds_to_ms(text)?)
        }
        ResetFormat::HttpDate => http_date_ms(text),
    }
}

/// Reads the retry-after header as delay seconds or, measured from the
/// response's `Date` (or `now_ms` without one), as an HTTP date. A date in
/// the past gives a zero wait.
fn parse_retry_after(
    name: &HeaderName,
    headers: &HeaderMap,
    server_date_ms: Option<u64>,
    now_ms: u64,
) -> Option<Duration> {
    let text = header_text(headers, name)?;
    if let Some(ms) = seconds_to_ms(text) {
        return Some(Duration::from_millis(ms));
    }
    let until_ms = http_date_ms(text)?;
    let from_ms = server_date_ms.unwrap_or(now_ms);
    Some(Duration::from_millis(until_ms.saturating_sub(from_ms)))
}

/// Reads the `Date` header as epoch milliseconds.
pub(crate) fn parse_date_ms(headers: &HeaderMap) -> Option<u64> {
    http_date_ms(headers.get(DATE)?.to_str().ok()?.trim())
}

/// The maximum number of seconds a header may state: about 31,700 years,
/// far beyond any window, and small enough to stay exact in milliseconds.
const MAX_SECONDS: f64 = 1e12;

/// Converts whole or fractional non-negative seconds, such as `60` or
/// `1.5`, to milliseconds, rounded up so that a wait never ends early.
fn seconds_to_ms(text: &str) -> Option<u64> {
    if let Ok(seconds) = text.parse::<u64>() {
        return seconds.checked_mul(1000);
    }
    let seconds = text.parse::<f64>().ok()?;
    if !seconds.is_finite() || !(0.0..=MAX_SECONDS).contains(&seconds) {
        return None;
    }
    Some((seconds * 1000.0).ceil() as u64)
}

fn http_date_ms(text: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(text).ok()?;
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok()
}

/// Returns a header's value, trimmed, when it is present and readable text.
fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    Some(headers.get(name)?.to_str().ok()?.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::HttpSettings;
    use http::{HeaderValue, StatusCode};
    use url::Url;

    /// 2023-11-14T22:13:20Z.
    const N: u64 = 1_700_000_000;
    const DATE_TEXT: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

    fn http_with(change: impl FnOnce(&mut HttpSettings)) -> Http {
        let mut settings = HttpSettings::new(Url::parse("http://127.0.0.1:9/api").unwrap());
        change(&mut settings);
        Http::new(settings).unwrap()
    }

    fn github_like() -> Http {
        http_with(|settings| {
            settings.used_header = Some("X-RateLimit-Used".to_owned());
            settings.bucket_header = Some("X-RateLimit-Resource".to_owned());
        })
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn verdict(http: &Http, status: u16, pairs: &[(&str, &str)]) -> Verdict {
        let headers = headers(pairs);
        let bucket = Bucket::from("default");
        http.classify_for_test(&ResponseView {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body: b"{}",
            bucket: &bucket,
            account: "a",
            now_ms: N * 1000 + 400,
        })
    }

    impl Http {
        fn classify_for_test(&self, response: &ResponseView<'_>) -> Verdict {
            classify(self, response)
        }
    }

    fn reset_in(seconds: u64) -> String {
        (N + seconds).to_string()
    }

    /// A table row: name, status, headers, expected outcome.
    type Row<'a> = (&'a str, u16, Vec<(&'a str, &'a str)>, Outcome);

    #[test]
    fn decision_table() {
        let http = github_like();
        let reset = reset_in(120);
        let primary = Outcome::PrimaryLimit {
            reset_ms: Some((N + 120) * 1000),
        };
        let cases: Vec<Row<'_>> = vec![
            ("success", 200, vec![], Outcome::Answered),
            ("not found", 404, vec![], Outcome::Answered),
            ("invalid status", 401, vec![], Outcome::InvalidToken),
            (
                "invalid status with budget left",
                401,
                vec![("x-ratelimit-remaining", "10")],
                Outcome::InvalidToken,
            ),
            ("forbidden status", 403, vec![], Outcome::Forbidden),
            (
                "forbidden with budget spent",
                403,
                vec![
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset),
                ],
                Outcome::Forbidden,
            ),
            (
                "throttle, remaining 0 and reset",
                429,
                vec![
                    ("x-ratelimit-limit", "60"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset),
                ],
                primary.clone(),
            ),
            (
                "throttle, no remaining stated, reset",
                429,
                vec![("x-ratelimit-reset", &reset)],
                primary.clone(),
            ),
            (
                "throttle, remaining 0, reset and retry-after",
                429,
                vec![
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset),
                    ("retry-after", "30"),
                ],
                primary,
            ),
            (
                "throttle with retry-after seconds",
                429,
                vec![("retry-after", "30")],
                Outcome::SecondaryLimit {
                    retry_after: Some(Duration::from_secs(30)),
                },
            ),
            (
                "throttle with budget left and retry-after",
                429,
                vec![
                    ("x-ratelimit-remaining", "14"),
                    ("x-ratelimit-reset", &reset),
                    ("retry-after", "5"),
                ],
                Outcome::SecondaryLimit {
                    retry_after: Some(Duration::from_secs(5)),
                },
            ),
            (
                "throttle with retry-after date",
                429,
                vec![
                    ("date", DATE_TEXT),
                    ("retry-after", "Tue, 14 Nov 2023 22:14:05 GMT"),
                ],
                Outcome::SecondaryLimit {
                    retry_after: Some(Duration::from_secs(45)),
                },
            ),
            (
                "throttle with retry-after date in the past",
                429,
                vec![
                    ("date", DATE_TEXT),
                    ("retry-after", "Tue, 14 Nov 2023 22:00:00 GMT"),
                ],
                Outcome::SecondaryLimit {
                    retry_after: Some(Duration::ZERO),
                },
            ),
            (
                "throttle without headers",
                429,
                vec![],
                Outcome::SecondaryLimit { retry_after: None },
            ),
            (
                "throttle with budget left and no wait",
                429,
                vec![
                    ("x-ratelimit-remaining", "14"),
                    ("x-ratelimit-reset", &reset),
                ],
                Outcome::SecondaryLimit { retry_after: None },
            ),
            ("server error", 502, vec![], Outcome::ServerError),
            ("server error 500", 500, vec![], Outcome::ServerError),
            ("redirect", 302, vec![], Outcome::Answered),
        ];

        for (name, status, pairs, expected) in cases {
            let verdict = verdict(&http, status, &pairs);
            assert_eq!(verdict.outcome, expected, "{name}");
        }
    }

    #[test]
    fn configured_throttle_status_replaces_429() {
        let http = http_with(|settings| {
            settings.throttle_statuses = vec![503];
            settings.remaining_header = "X-Quota-Left".to_owned();
            settings.reset_format = ResetFormat::EpochMilliseconds;
        });
        let reset_ms = ((N + 60) * 1000 + 250).to_string();
        let limited = verdict(
            &http,
            503,
            &[("x-quota-left", "0"), ("x-ratelimit-reset", &reset_ms)],
        );
        assert_eq!(
            limited.outcome,
            Outcome::PrimaryLimit {
                reset_ms: Some((N + 60) * 1000 + 250)
            }
        );

        let plain = verdict(&http, 429, &[]);
        assert_eq!(plain.outcome, Outcome::Answered);
        let other = verdict(&http, 502, &[]);
        assert_eq!(other.outcome, Outcome::ServerError);
    }

    #[test]
    fn observation_reads_every_header() {
        let http = github_like();
        let reset = reset_in(3600);
        let verdict = verdict(
            &http,
            200,
            &[
                ("X-RateLimit-Limit", "5000"),
                ("x-ratelimit-remaining", " 4990 "),
                ("X-RATELIMIT-RESET", &reset),
                ("x-ratelimit-used", "10"),
                ("x-ratelimit-resource", "search"),
                ("date", DATE_TEXT),
            ],
        );
        assert_eq!(
            verdict.observation,
            Some(Observation {
                bucket: Some(Bucket::from("search")),
                limit: 5000,
                remaining: 4990,
                used: Some(10),
                reset_ms: (N + 3600) * 1000,
            })
        );
        assert_eq!(verdict.server_date_ms, Some(N * 1000));
    }

    #[test]
    fn used_is_derived_without_used_header() {
        let http = http_with(|_| {});
        let reset = reset_in(60);
        let verdict = verdict(
            &http,
            200,
            &[
                ("x-ratelimit-limit", "100"),
                ("x-ratelimit-remaining", "40"),
                ("x-ratelimit-reset", &reset),
                ("x-ratelimit-used", "3"),
            ],
        );
        let observation = verdict.observation.unwrap();
        assert_eq!(observation.used, Some(60));
        assert_eq!(observation.bucket, None);
    }

    #[test]
    fn garbled_headers_give_no_observation() {
        let http = github_like();
        let reset = reset_in(60);
        let garbled: [&[(&str, &str)]; 6] = [
            &[
                ("x-ratelimit-remaining", "5"),
                ("x-ratelimit-reset", &reset),
            ],
            &[
                ("x-ratelimit-limit", "ten"),
                ("x-ratelimit-remaining", "5"),
                ("x-ratelimit-reset", &reset),
            ],
            &[
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "-1"),
                ("x-ratelimit-reset", &reset),
            ],
            &[
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "5"),
                ("x-ratelimit-reset", "soon"),
            ],
            &[
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "5"),
                ("x-ratelimit-reset", "NaN"),
            ],
            &[
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "5.5"),
                ("x-ratelimit-reset", &reset),
            ],
        ];
        for pairs in garbled {
            let verdict = verdict(&http, 200, pairs);
            assert_eq!(verdict.outcome, Outcome::Answered, "{pairs:?}");
            assert_eq!(verdict.observation, None, "{pairs:?}");
        }
    }

    #[test]
    fn garbled_throttle_is_cooldown() {
        let http = github_like();
        let verdict = verdict(
            &http,
            429,
            &[
                ("x-ratelimit-remaining", "zero"),
                ("x-ratelimit-reset", "later"),
                ("retry-after", "soon"),
            ],
        );
        assert_eq!(
            verdict.outcome,
            Outcome::SecondaryLimit { retry_after: None }
        );
        assert_eq!(verdict.observation, None);
    }

    #[test]
    fn non_text_header_is_ignored() {
        let http = github_like();
        let mut map = HeaderMap::new();
        map.insert("x-ratelimit-limit", HeaderValue::from_static("10"));
        map.insert(
            "x-ratelimit-remaining",
            HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        map.insert("x-ratelimit-reset", HeaderValue::from_static("1700000060"));
        let names = &http.headers;
        assert_eq!(parse_observation(names, &map, None, 0), None);
    }

    /// Every reset format names the same instant: N+5 seconds, written as
    /// epoch seconds, epoch milliseconds, seconds from the response's
    /// `Date`, and an HTTP date.
    #[test]
    fn reset_formats_agree() {
        let expected_ms = (N + 5) * 1000;
        let cases = [
            (ResetFormat::EpochSeconds, (N + 5).to_string()),
            (ResetFormat::EpochMilliseconds, expected_ms.to_string()),
            (ResetFormat::SecondsFromNow, "5".to_owned()),
            (
                ResetFormat::HttpDate,
                "Tue, 14 Nov 2023 22:13:25 GMT".to_owned(),
            ),
        ];
        for (format, text) in cases {
            let http = http_with(|settings| settings.reset_format = format);
            let verdict = verdict(
                &http,
                429,
                &[
                    ("date", DATE_TEXT),
                    ("x-ratelimit-limit", "10"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &text),
                ],
            );
            assert_eq!(
                verdict.outcome,
                Outcome::PrimaryLimit {
                    reset_ms: Some(expected_ms)
                },
                "{}",
                format.name()
            );
            assert_eq!(
                verdict.observation.map(|o| o.reset_ms),
                Some(expected_ms),
                "{}",
                format.name()
            );
        }
    }

    #[test]
    fn seconds_from_now_without_date_counts_from_arrival() {
        let http = http_with(|settings| settings.reset_format = ResetFormat::SecondsFromNow);
        let verdict = verdict(
            &http,
            429,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "2.5")],
        );
        assert_eq!(
            verdict.outcome,
            Outcome::PrimaryLimit {
                reset_ms: Some(N * 1000 + 400 + 2500)
            }
        );
    }

    #[test]
    fn fractional_retry_after_rounds_up() {
        let http = http_with(|_| {});
        let verdict = verdict(&http, 429, &[("retry-after", "0.0015")]);
        assert_eq!(
            verdict.outcome,
            Outcome::SecondaryLimit {
                retry_after: Some(Duration::from_millis(2))
            }
        );
    }

    #[test]
    fn huge_reset_does_not_overflow() {
        let http = http_with(|settings| settings.reset_format = ResetFormat::SecondsFromNow);
        let max = u64::MAX.to_string();
        let verdict = verdict(
            &http,
            429,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &max)],
        );
        assert_eq!(
            verdict.outcome,
            Outcome::SecondaryLimit { retry_after: None }
        );
    }
}
