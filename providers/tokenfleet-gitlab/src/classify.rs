//! Classifies GitLab responses: reads the `RateLimit-*` headers and decides
//! whether each response is a normal one, a throttle, an invalid token or
//! a refusal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{DATE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use tokenfleet_core::{Bucket, Observation, Outcome, ResponseView, Verdict};

const NAME: &str = "ratelimit-name";
const LIMIT: &str = "ratelimit-limit";
const OBSERVED: &str = "ratelimit-observed";
const REMAINING: &str = "ratelimit-remaining";
const RESET: &str = "ratelimit-reset";
const RESET_TIME: &str = "ratelimit-resettime";

/// The smallest `RateLimit-Reset` read as milliseconds rather than seconds:
/// 10^11 seconds is past the year 5000, but 10^11 milliseconds is in 1973.
const MILLISECOND_RESET_FLOOR: u64 = 100_000_000_000;

/// The largest `RateLimit-Reset` read as a number of seconds to wait
/// rather than an epoch instant: 10^9 seconds is 31 years of waiting, and
/// as an instant it lies in 2001. GitLab documents epoch seconds, and a
/// server that sends the wait instead still gives the right instant.
const DELAY_RESET_CEILING: u64 = 1_000_000_000;

/// Classifies one GitLab response with the checks listed, in order, under
/// "Classification" in the crate documentation.
pub(crate) fn classify(response: &ResponseView<'_>) -> Verdict {
    let headers = response.headers;
    let server_date_ms = parse_date_ms(headers);
    let anchor_ms = server_date_ms.unwrap_or(response.now_ms);

    // GitLab treats a request with a rejected token as unauthenticated, so
    // the headers of a 401 describe the caller's IP address, not the user.
    if response.status == StatusCode::UNAUTHORIZED {
        return Verdict::new(Outcome::InvalidToken).with_server_date(server_date_ms);
    }

    let observation = parse_observation(headers, anchor_ms);
    let outcome = classify_outcome(response.status, headers, server_date_ms, anchor_ms);

    Verdict::new(outcome)
        .with_observation(observation)
        .with_server_date(server_date_ms)
}

fn classify_outcome(
    status: StatusCode,
    headers: &HeaderMap,
    server_date_ms: Option<u64>,
    anchor_ms: u64,
) -> Outcome {
    if status == StatusCode::FORBIDDEN {
        return Outcome::Forbidden;
    }

    if status == StatusCode::TOO_MANY_REQUESTS {
        let end_ms = throttle_end_ms(headers, server_date_ms, anchor_ms);

        // The remaining count alone decides, even when the other headers
        // are garbled and the observation is therefore missing.
        if parse_u64(headers, REMAINING) == Some(0) {
            return Outcome::PrimaryLimit { reset_ms: end_ms };
        }

        // A wait with budget left, or no headers at all: an application
        // limit (Projects, Users or Groups API, search) rather than the
        // user's throttle. Without a wait, the pool's cooldown grows on
        // repeats.
        let retry_after = end_ms.map(|end| Duration::from_millis(end.saturating_sub(anchor_ms)));
        return Outcome::SecondaryLimit { retry_after };
    }

    if status.is_server_error() {
        return Outcome::ServerError;
    }

    Outcome::Answered
}

/// Returns when a throttle ends, in server epoch milliseconds: from
/// `Retry-After` counted from the `Date` header, else `RateLimit-Reset`,
/// else `RateLimit-ResetTime`, else `Retry-After` counted from the local
/// time. GitLab sends all of them for one instant.
fn throttle_end_ms(
    headers: &HeaderMap,
    server_date_ms: Option<u64>,
    anchor_ms: u64,
) -> Option<u64> {
    let retry_after = parse_retry_after(headers, server_date_ms);
    if let (Some(wait), Some(date_ms)) = (retry_after, server_date_ms) {
        return Some(date_ms.saturating_add(millis(wait)));
    }
    parse_reset_ms(headers, anchor_ms)
        .or_else(|| parse_reset_time_ms(headers))
        .or_else(|| retry_after.map(|wait| anchor_ms.saturating_add(millis(wait))))
}

/// The owner of the throttle a `RateLimit-Name` names.
#[derive(Debug, PartialEq, Eq)]
enum ThrottleName {
    /// A throttle of the token's user, mapped to this bucket.
    Bucket(Bucket),
    /// A throttle of the caller's IP address.
    Unauthenticated,
}

/// Maps a `RateLimit-Name` such as `throttle_authenticated_api` to its
/// bucket (`api`), as the crate documentation lists under "Buckets".
fn throttle_name(name: &str) -> ThrottleName {
    let name = name.trim().to_ascii_lowercase();
    let rest = name.strip_prefix("throttle_").unwrap_or(&name);
    if rest.starts_with("unauthenticated") {
        return ThrottleName::Unauthenticated;
    }
    let rest = rest.strip_prefix("authenticated_").unwrap_or(rest);
    match rest {
        "" | "authenticated" => ThrottleName::Bucket(crate::buckets::API),
        other => ThrottleName::Bucket(Bucket::new(other)),
    }
}

/// Reads the `RateLimit-*` headers. Remaining and reset must be integers,
/// or there is no observation. The limit of the real window is
/// `RateLimit-Observed + RateLimit-Remaining`, because `RateLimit-Limit`
/// is normalized to 60 seconds.
pub(crate) fn parse_observation(headers: &HeaderMap, anchor_ms: u64) -> Option<Observation> {
    let remaining = parse_u64(headers, REMAINING)?;
    let reset_ms = parse_reset_ms(headers, anchor_ms)?;
    let observed = parse_u64(headers, OBSERVED);
    let normalized_limit = parse_u64(headers, LIMIT);

    let bucket = match headers.get(NAME).and_then(|value| value.to_str().ok()) {
        Some(name) if !name.trim().is_empty() => match throttle_name(name) {
            ThrottleName::Bucket(bucket) => Some(bucket),
            ThrottleName::Unauthenticated => return None,
        },
        _ => None,
    };

    let limit = match observed {
        Some(observed) if remaining > 0 => observed.saturating_add(remaining),
        // NOTE: with nothing left, the raw limit is only known to be at
        // most `observed`, because throttled requests count too.
        Some(observed) if observed > 0 => observed,
        _ => normalized_limit.unwrap_or(0).max(remaining),
    };

    Some(Observation {
        bucket,
        limit,
        remaining,
        used: observed,
        reset_ms,
    })
}

/// Reads the `Date` header as epoch milliseconds.
pub(crate) fn parse_date_ms(headers: &HeaderMap) -> Option<u64> {
    parse_http_date_ms(headers.get(DATE)?.to_str().ok()?)
}

/// Reads `RateLimit-Reset` as epoch milliseconds. GitLab sends epoch
/// seconds. A value too large to be seconds is read as milliseconds, and
/// one too small to be a recent instant as seconds to wait from `anchor_ms`.
fn parse_reset_ms(headers: &HeaderMap, anchor_ms: u64) -> Option<u64> {
    let reset = parse_u64(headers, RESET)?;
    Some(if reset >= MILLISECOND_RESET_FLOOR {
        reset
    } else if reset < DELAY_RESET_CEILING {
        anchor_ms.saturating_add(reset * 1000)
    } else {
        reset * 1000
    })
}

/// Reads `RateLimit-ResetTime`, an HTTP date, as epoch milliseconds.
fn parse_reset_time_ms(headers: &HeaderMap) -> Option<u64> {
    parse_http_date_ms(headers.get(RESET_TIME)?.to_str().ok()?)
}

/// Reads `Retry-After` as delay seconds or, measured from the response's
/// `Date`, as an HTTP date. A date in the past gives a zero wait.
fn parse_retry_after(headers: &HeaderMap, server_date_ms: Option<u64>) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let until_ms = parse_http_date_ms(text)?;
    Some(Duration::from_millis(
        until_ms.saturating_sub(server_date_ms?),
    ))
}

fn parse_http_date_ms(text: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    epoch_ms(time)
}

fn epoch_ms(time: SystemTime) -> Option<u64> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn parse_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    use crate::buckets;

    /// The server's clock at the start of each case, in epoch seconds.
    const N: u64 = 1_700_000_040;
    /// `N` as an HTTP date.
    const DATE_TEXT: &str = "Tue, 14 Nov 2023 22:14:00 GMT";
    /// `N + 600` as an HTTP date.
    const RESET_TEXT: &str = "Tue, 14 Nov 2023 22:24:00 GMT";

    const UNAUTHORIZED: &str = r#"{"message":"401 Unauthorized"}"#;
    const EXPIRED: &str = r#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#;
    const REVOKED: &str = r#"{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}"#;
    const FORBIDDEN: &str = r#"{"message":"403 Forbidden"}"#;
    const SCOPE: &str = r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_api"}"#;
    const SUDO: &str = r#"{"message":"403 Forbidden - Must be admin to use sudo"}"#;
    const APPLICATION_LIMIT: &str = r#"{"message":{"error":"This endpoint has been requested too many times. Try again later."}}"#;

    /// Header name-value pairs of a test response.
    type Pairs = Vec<(&'static str, String)>;

    /// Builds the headers of a response to the authenticated API throttle
    /// of `limit` per 60 s, `observed` requests in, with the window ending
    /// at N + 60.
    fn limits(limit: u64, observed: u64) -> Pairs {
        vec![
            (NAME, "throttle_authenticated_api".to_owned()),
            (LIMIT, limit.to_string()),
            (OBSERVED, observed.to_string()),
            (REMAINING, limit.saturating_sub(observed).to_string()),
            (RESET, (N + 60).to_string()),
            ("date", DATE_TEXT.to_owned()),
        ]
    }

    /// Adds the headers GitLab puts on a throttled response.
    fn throttled(mut pairs: Pairs) -> Pairs {
        pairs.push((RESET_TIME, "Tue, 14 Nov 2023 22:15:00 GMT".to_owned()));
        pairs.push(("retry-after", "60".to_owned()));
        pairs
    }

    fn with(mut pairs: Pairs, name: &'static str, value: &str) -> Pairs {
        pairs.retain(|(key, _)| *key != name);
        pairs.push((name, value.to_owned()));
        pairs
    }

    fn without(mut pairs: Pairs, name: &str) -> Pairs {
        pairs.retain(|(key, _)| *key != name);
        pairs
    }

    fn classify_with(status: u16, pairs: &[(&'static str, String)], body: &str) -> Verdict {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let view = ResponseView {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body: body.as_bytes(),
            bucket: &buckets::API,
            account: "gitlab-user:1",
            now_ms: N * 1000,
        };
        classify(&view)
    }

    fn outcome(status: u16, pairs: &[(&'static str, String)], body: &str) -> Outcome {
        classify_with(status, pairs, body).outcome
    }

    fn primary_until(epoch_seconds: u64) -> Outcome {
        Outcome::PrimaryLimit {
            reset_ms: Some(epoch_seconds * 1000),
        }
    }

    fn secondary(seconds: Option<u64>) -> Outcome {
        Outcome::SecondaryLimit {
            retry_after: seconds.map(Duration::from_secs),
        }
    }

    #[test]
    fn classify_table() {
        let spent = throttled(limits(2000, 2001));
        let cases: Vec<(&str, u16, Pairs, &str, Outcome)> = vec![
            (
                "429 throttle",
                429,
                spent.clone(),
                "Retry later",
                primary_until(N + 60),
            ),
            (
                "429 throttle with custom text",
                429,
                spent.clone(),
                "Slow down, please",
                primary_until(N + 60),
            ),
            (
                "429 reset only",
                429,
                without(without(spent.clone(), "retry-after"), RESET_TIME),
                "Retry later",
                primary_until(N + 60),
            ),
            (
                "429 reset time only",
                429,
                without(without(spent.clone(), "retry-after"), RESET),
                "Retry later",
                primary_until(N + 60),
            ),
            (
                "429 retry-after only with remaining 0",
                429,
                without(without(spent.clone(), RESET), RESET_TIME),
                "Retry later",
                primary_until(N + 60),
            ),
            (
                "429 remaining 0 without any wait",
                429,
                vec![(REMAINING, "0".to_owned())],
                "Retry later",
                Outcome::PrimaryLimit { reset_ms: None },
            ),
            (
                "429 without headers",
                429,
                Vec::new(),
                APPLICATION_LIMIT,
                secondary(None),
            ),
            (
                "429 with only a date",
                429,
                vec![("date", DATE_TEXT.to_owned())],
                "Retry later",
                secondary(None),
            ),
            (
                "429 with budget left and retry-after",
                429,
                with(limits(2000, 10), "retry-after", "30"),
                APPLICATION_LIMIT,
                secondary(Some(30)),
            ),
            (
                "429 with retry-after only",
                429,
                vec![("retry-after", "45".to_owned())],
                "",
                secondary(Some(45)),
            ),
            ("401", 401, Vec::new(), UNAUTHORIZED, Outcome::InvalidToken),
            (
                "401 with headers",
                401,
                limits(500, 3),
                UNAUTHORIZED,
                Outcome::InvalidToken,
            ),
            (
                "401 expired",
                401,
                Vec::new(),
                EXPIRED,
                Outcome::InvalidToken,
            ),
            (
                "401 revoked",
                401,
                Vec::new(),
                REVOKED,
                Outcome::InvalidToken,
            ),
            ("403", 403, limits(2000, 5), FORBIDDEN, Outcome::Forbidden),
            ("403 scope", 403, limits(2000, 5), SCOPE, Outcome::Forbidden),
            ("403 sudo", 403, Vec::new(), SUDO, Outcome::Forbidden),
            (
                "403 ip block",
                403,
                Vec::new(),
                "Forbidden",
                Outcome::Forbidden,
            ),
            (
                "500",
                500,
                limits(2000, 5),
                r#"{"message":"500 Internal Server Error"}"#,
                Outcome::ServerError,
            ),
            (
                "502",
                502,
                Vec::new(),
                "<html>502</html>",
                Outcome::ServerError,
            ),
            ("503", 503, Vec::new(), "", Outcome::ServerError),
            ("200", 200, limits(2000, 5), "[]", Outcome::Answered),
            (
                "200 with nothing left",
                200,
                limits(2000, 2000),
                "[]",
                Outcome::Answered,
            ),
            (
                "404",
                404,
                limits(2000, 5),
                r#"{"message":"404 User Not Found"}"#,
                Outcome::Answered,
            ),
            (
                "200 without headers",
                200,
                Vec::new(),
                "{}",
                Outcome::Answered,
            ),
        ];

        for (name, status, pairs, body, expected) in cases {
            assert_eq!(outcome(status, &pairs, body), expected, "{name}");
        }
    }

    #[test]
    fn all_reset_formats_give_one_instant() {
        // A 429 whose reset is 600 s away, stated in each format alone.
        let base = vec![
            (NAME, "throttle_authenticated_api".to_owned()),
            (LIMIT, "2000".to_owned()),
            (OBSERVED, "2000".to_owned()),
            (REMAINING, "0".to_owned()),
            ("date", DATE_TEXT.to_owned()),
        ];
        let variants: Vec<(&str, Pairs)> = vec![
            ("retry-after", with(base.clone(), "retry-after", "600")),
            (
                "retry-after as a date",
                with(base.clone(), "retry-after", RESET_TEXT),
            ),
            ("reset", with(base.clone(), RESET, &(N + 600).to_string())),
            (
                "reset in milliseconds",
                with(base.clone(), RESET, &((N + 600) * 1000).to_string()),
            ),
            ("reset as a wait", with(base.clone(), RESET, "600")),
            ("reset time", with(base.clone(), RESET_TIME, RESET_TEXT)),
        ];
        for (name, pairs) in variants {
            assert_eq!(
                outcome(429, &pairs, "Retry later"),
                primary_until(N + 600),
                "{name}"
            );
        }
    }

    #[test]
    fn retry_after_wins_over_reset() {
        let pairs = with(
            with(throttled(limits(2000, 2000)), "retry-after", "5"),
            RESET,
            &(N + 60).to_string(),
        );
        assert_eq!(outcome(429, &pairs, ""), primary_until(N + 5));
    }

    #[test]
    fn retry_after_without_date_counts_from_now() {
        let pairs = vec![(REMAINING, "0".to_owned()), ("retry-after", "7".to_owned())];
        assert_eq!(outcome(429, &pairs, ""), primary_until(N + 7));
    }

    #[test]
    fn observation_uses_raw_window() {
        // 7,200 per hour shows as 120 per minute, and 7,000 spent leaves 200.
        let pairs = vec![
            (NAME, "throttle_authenticated_api".to_owned()),
            (LIMIT, "120".to_owned()),
            (OBSERVED, "7000".to_owned()),
            (REMAINING, "200".to_owned()),
            (RESET, (N + 1800).to_string()),
        ];
        let observation = classify_with(200, &pairs, "[]").observation.unwrap();
        let expected = Observation {
            bucket: Some(buckets::API),
            limit: 7200,
            remaining: 200,
            used: Some(7000),
            reset_ms: (N + 1800) * 1000,
        };
        assert_eq!(observation, expected);
    }

    #[test]
    fn observation_when_spent() {
        let observation = classify_with(429, &throttled(limits(2000, 2003)), "")
            .observation
            .unwrap();
        assert_eq!(observation.remaining, 0);
        assert_eq!(observation.used, Some(2003));
        assert_eq!(observation.limit, 2003);
    }

    #[test]
    fn observation_without_observed_uses_limit() {
        let pairs = without(limits(2000, 10), OBSERVED);
        let observation = classify_with(200, &pairs, "").observation.unwrap();
        assert_eq!(observation.limit, 2000);
        assert_eq!(observation.remaining, 1990);
        assert_eq!(observation.used, None);
    }

    #[test]
    fn throttle_names_map_to_buckets() {
        let cases = [
            ("throttle_authenticated_api", Some("api")),
            ("Throttle_Authenticated_API", Some("api")),
            ("throttle_authenticated_packages_api", Some("packages_api")),
            ("throttle_authenticated_files_api", Some("files_api")),
            ("throttle_authenticated_git_lfs", Some("git_lfs")),
            ("throttle_authenticated_web", Some("web")),
            (
                "throttle_authenticated_deprecated_api",
                Some("deprecated_api"),
            ),
            ("custom_limit", Some("custom_limit")),
            ("throttle_unauthenticated_api", None),
            ("throttle_unauthenticated_packages_api", None),
        ];
        for (name, expected) in cases {
            let pairs = with(limits(2000, 5), NAME, name);
            let verdict = classify_with(200, &pairs, "");
            let bucket = verdict.observation.map(|o| o.bucket);
            match expected {
                Some(bucket_name) => {
                    assert_eq!(bucket, Some(Some(Bucket::from(bucket_name))), "{name}")
                }
                None => assert_eq!(bucket, None, "{name}"),
            }
        }

        let unnamed = without(limits(2000, 5), NAME);
        let observation = classify_with(200, &unnamed, "").observation.unwrap();
        assert_eq!(observation.bucket, None);
    }

    #[test]
    fn garbled_headers_give_no_observation() {
        let full = limits(2000, 10);
        let cases = [
            ("remaining abc", with(full.clone(), REMAINING, "abc")),
            ("remaining negative", with(full.clone(), REMAINING, "-1")),
            ("remaining float", with(full.clone(), REMAINING, "1.5")),
            ("reset empty", with(full.clone(), RESET, "")),
            ("reset as a date", with(full.clone(), RESET, DATE_TEXT)),
            (
                "reset too large",
                with(full.clone(), RESET, "99999999999999999999999"),
            ),
            ("reset missing", without(full.clone(), RESET)),
            ("remaining missing", without(full.clone(), REMAINING)),
            ("no headers", Vec::new()),
        ];
        for (name, pairs) in cases {
            for status in [200, 403, 429, 500] {
                let verdict = classify_with(status, &pairs, "");
                assert_eq!(verdict.observation, None, "{name}, status {status}");
            }
            assert_ne!(
                outcome(429, &pairs, ""),
                Outcome::PrimaryLimit { reset_ms: None },
                "{name}: garbled headers must not read as an empty budget"
            );
        }
    }

    #[test]
    fn garbled_observed_and_limit_are_dropped() {
        let pairs = with(with(limits(2000, 10), OBSERVED, "many"), LIMIT, "lots");
        let observation = classify_with(200, &pairs, "").observation.unwrap();
        assert_eq!(observation.used, None);
        assert_eq!(observation.remaining, 1990);
        assert_eq!(observation.limit, 1990);
    }

    #[test]
    fn non_utf8_headers_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(REMAINING, HeaderValue::from_bytes(b"\xff0").unwrap());
        headers.insert(RESET, HeaderValue::from_static("1700000100"));
        headers.insert(NAME, HeaderValue::from_bytes(b"\xfe").unwrap());
        let view = ResponseView {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: &headers,
            body: b"\xff\xfe",
            bucket: &buckets::API,
            account: "gitlab-user:1",
            now_ms: N * 1000,
        };
        let verdict = classify(&view);
        assert_eq!(verdict.observation, None);
        assert_eq!(verdict.outcome, secondary(Some(60)));
    }

    #[test]
    fn server_date_is_read() {
        let verdict = classify_with(200, &limits(2000, 1), "");
        assert_eq!(verdict.server_date_ms, Some(N * 1000));

        let garbled = vec![("date", "yesterday".to_owned())];
        assert_eq!(classify_with(200, &garbled, "").server_date_ms, None);
    }
}
