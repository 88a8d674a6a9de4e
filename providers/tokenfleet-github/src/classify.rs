//! Classifies GitHub responses: reads the limits their headers state and
//! decides whether each is a normal response, a rate limit, an invalid
//! token or a refusal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{DATE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tokenfleet_core::{Bucket, Observation, Outcome, ResponseView, Verdict};

use crate::buckets;

const LIMIT: &str = "x-ratelimit-limit";
const REMAINING: &str = "x-ratelimit-remaining";
const RESET: &str = "x-ratelimit-reset";
const USED: &str = "x-ratelimit-used";
const RESOURCE: &str = "x-ratelimit-resource";

/// Lower-case fragments of the messages GitHub sends with a secondary
/// rate limit: the current wording, the older "abuse detection
/// mechanism" wording, and the content-creation block.
const SECONDARY_WORDING: [&str; 3] = [
    "secondary rate",
    "abuse detection",
    "temporarily blocked from content creation",
];

/// The message of GitHub's failed-login lockout, which rejects every
/// token of the user for a while, valid ones included.
const LOGIN_LOCKOUT: &str = "maximum number of login attempts exceeded";

/// The message of a primary rate limit, for responses whose headers are lost.
const PRIMARY_WORDING: &str = "api rate limit exceeded";

/// Classifies one GitHub response with the checks listed, in order, under
/// "Classification" in the crate documentation.
pub(crate) fn classify(response: &ResponseView<'_>) -> Verdict {
    let headers = response.headers;
    let observation = parse_observation(headers);
    let server_date_ms = parse_date_ms(headers);

    let outcome = classify_outcome(response, observation.as_ref(), server_date_ms);

    Verdict::new(outcome)
        .with_observation(observation)
        .with_server_date(server_date_ms)
}

fn classify_outcome(
    response: &ResponseView<'_>,
    observation: Option<&Observation>,
    server_date_ms: Option<u64>,
) -> Outcome {
    let status = response.status;
    let headers = response.headers;

    if status == StatusCode::UNAUTHORIZED {
        return Outcome::InvalidToken;
    }

    if status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS {
        let message = error_message(response.body).to_lowercase();
        let retry_after = headers.get(RETRY_AFTER);
        let retry_after_duration = || parse_retry_after(headers, server_date_ms);

        if SECONDARY_WORDING
            .iter()
            .any(|words| message.contains(words))
        {
            return Outcome::SecondaryLimit {
                retry_after: retry_after_duration(),
            };
        }

        // The remaining count alone decides, even when limit or reset are
        // garbled and the observation is therefore missing.
        let remaining = parse_u64(headers, REMAINING);
        if remaining == Some(0) {
            let reset_ms = observation
                .map(|observation| observation.reset_ms)
                .or_else(|| parse_reset_ms(headers));
            return Outcome::PrimaryLimit { reset_ms };
        }

        if retry_after.is_some() {
            return Outcome::SecondaryLimit {
                retry_after: retry_after_duration(),
            };
        }

        if status == StatusCode::FORBIDDEN && message.contains(LOGIN_LOCKOUT) {
            return Outcome::SecondaryLimit { retry_after: None };
        }

        if remaining.is_none() && message.contains(PRIMARY_WORDING) {
            return Outcome::PrimaryLimit { reset_ms: None };
        }

        if status == StatusCode::TOO_MANY_REQUESTS {
            return Outcome::SecondaryLimit { retry_after: None };
        }

        return Outcome::Forbidden;
    }

    if status == StatusCode::OK
        && *response.bucket == buckets::GRAPHQL
        && has_graphql_rate_limit_error(response.body)
    {
        return Outcome::PrimaryLimit {
            reset_ms: observation.map(|observation| observation.reset_ms),
        };
    }

    if status.is_server_error() {
        return Outcome::ServerError;
    }

    Outcome::Answered
}

/// Reads the `x-ratelimit-*` headers. Limit, remaining and reset must all
/// be integers, or there is no observation.
pub(crate) fn parse_observation(headers: &HeaderMap) -> Option<Observation> {
    let limit = parse_u64(headers, LIMIT)?;
    let remaining = parse_u64(headers, REMAINING)?;
    let reset_ms = parse_reset_ms(headers)?;
    let used = parse_u64(headers, USED);
    let bucket = headers
        .get(RESOURCE)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(Bucket::from);

    Some(Observation {
        bucket,
        limit,
        remaining,
        used,
        reset_ms,
    })
}

/// Reads the `Date` header as epoch milliseconds.
pub(crate) fn parse_date_ms(headers: &HeaderMap) -> Option<u64> {
    let text = headers.get(DATE)?.to_str().ok()?;
    let date = httpdate::parse_http_date(text.trim()).ok()?;
    epoch_ms(date)
}

/// Reads `x-ratelimit-reset` as epoch milliseconds.
fn parse_reset_ms(headers: &HeaderMap) -> Option<u64> {
    parse_u64(headers, RESET).map(reset_to_ms)
}

/// The smallest reset value read as milliseconds rather than seconds:
/// 10^11 seconds is past the year 5000, but 10^11 milliseconds is in 1973.
const MILLISECOND_RESET_FLOOR: u64 = 100_000_000_000;

/// Converts a reset instant to epoch milliseconds. GitHub sends epoch
/// seconds, but a value too large to be seconds is taken as milliseconds,
/// so that a server sending milliseconds does not push the reset millennia ahead.
pub(crate) fn reset_to_ms(reset: u64) -> u64 {
    if reset >= MILLISECOND_RESET_FLOOR {
        reset
    } else {
        reset * 1000
    }
}

fn parse_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Reads `retry-after` as delay seconds or, measured from the response's
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

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// Returns the JSON `message` of an error body, or the body as text when
/// it is not JSON or has no message.
fn error_message(body: &[u8]) -> String {
    if let Ok(ErrorBody {
        message: Some(message),
    }) = serde_json::from_slice::<ErrorBody>(body)
    {
        return message;
    }
    String::from_utf8_lossy(body).into_owned()
}

#[derive(Deserialize)]
struct GraphqlBody {
    #[serde(default)]
    errors: Vec<GraphqlError>,
}

#[derive(Deserialize)]
struct GraphqlError {
    #[serde(rename = "type")]
    kind: Option<String>,
}

const RATE_LIMITED: &str = "RATE_LIMITED";

/// Returns true when a GraphQL body lists an error of type `RATE_LIMITED`.
///
/// A body that is cut short (the pool may pass only its first part) cannot
/// be parsed, so then any `"RATE_LIMITED"` string in it counts.
fn has_graphql_rate_limit_error(body: &[u8]) -> bool {
    let quoted = b"\"RATE_LIMITED\"";
    if !body.windows(quoted.len()).any(|window| window == quoted) {
        return false;
    }
    match serde_json::from_slice::<GraphqlBody>(body) {
        Ok(parsed) => parsed
            .errors
            .iter()
            .any(|error| error.kind.as_deref() == Some(RATE_LIMITED)),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const N: u64 = 1_700_000_000;
    const DATE_TEXT: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

    const SECONDARY: &str = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#;
    const SECONDARY_SUFFIX: &str = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:1111 and timestamp 2023-11-14 22:13:20 UTC.","documentation_url":"https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#secondary-rate-limits"}"#;
    const SECONDARY_CONTENT: &str = r#"{"message":"You have exceeded a secondary rate limit and have been temporarily blocked from content creation. Please retry your request again later.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#;
    const CONTENT_ONLY: &str = r#"{"message":"You have been temporarily blocked from content creation. Please retry your request again later."}"#;
    const ABUSE: &str = r#"{"message":"You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.","documentation_url":"https://developer.github.com/v3/#abuse-rate-limits"}"#;
    const SECONDARY_UPPER: &str = r#"{"message":"YOU HAVE EXCEEDED A SECONDARY RATE LIMIT."}"#;
    const SECONDARY_TEXT: &str = "You have exceeded a Secondary Rate Limit";
    const PRIMARY: &str = r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#;
    const LOCKOUT: &str = r#"{"message":"Maximum number of login attempts exceeded. Please try again later.","documentation_url":"https://docs.github.com/rest"}"#;
    const SSO: &str = r#"{"message":"Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.","documentation_url":"https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/"}"#;
    const NOT_ACCESSIBLE: &str = r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}"#;
    const BAD_CREDENTIALS: &str =
        r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}"#;
    const HTML_502: &str =
        "<html><head><title>502 Bad Gateway</title></head><body>Unicorn!</body></html>";
    const GRAPHQL_LIMITED: &str = r#"{"errors":[{"type":"RATE_LIMITED","message":"API rate limit exceeded for user ID 1."}]}"#;
    const GRAPHQL_OTHER_ERROR: &str = r#"{"data":null,"errors":[{"type":"NOT_FOUND","message":"Could not resolve to a Repository"}]}"#;
    const GRAPHQL_DATA: &str = r#"{"data":{"viewer":{"login":"RATE_LIMITED"}}}"#;

    /// Header name-value pairs of a test response.
    type Pairs = Vec<(&'static str, String)>;

    /// Builds headers from name-value pairs.
    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// Builds rate-limit headers for `resource` with `remaining` left and a reset at N + 60.
    fn limits(resource: &'static str, limit: u64, remaining: u64) -> Pairs {
        vec![
            (LIMIT, limit.to_string()),
            (REMAINING, remaining.to_string()),
            (USED, (limit - remaining).to_string()),
            (RESET, (N + 60).to_string()),
            (RESOURCE, resource.to_owned()),
        ]
    }

    fn classify_with(
        status: u16,
        pairs: &[(&'static str, String)],
        body: &str,
        bucket: &Bucket,
    ) -> Verdict {
        let borrowed: Vec<(&'static str, &str)> = pairs
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let headers = headers(&borrowed);
        let view = ResponseView {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body: body.as_bytes(),
            bucket,
            account: "octocat",
            now_ms: 0,
        };
        classify(&view)
    }

    fn outcome(status: u16, pairs: &[(&'static str, String)], body: &str) -> Outcome {
        classify_with(status, pairs, body, &buckets::CORE).outcome
    }

    fn with(mut pairs: Pairs, name: &'static str, value: &str) -> Pairs {
        pairs.push((name, value.to_owned()));
        pairs
    }

    fn secondary(seconds: Option<u64>) -> Outcome {
        Outcome::SecondaryLimit {
            retry_after: seconds.map(Duration::from_secs),
        }
    }

    fn primary_at_reset() -> Outcome {
        Outcome::PrimaryLimit {
            reset_ms: Some((N + 60) * 1000),
        }
    }

    #[test]
    fn classify_table() {
        let core_empty = limits("core", 5000, 0);
        let search_left = limits("search", 30, 14);
        let cases: Vec<(&str, u16, Pairs, &str, Outcome)> = vec![
            (
                "primary 403",
                403,
                core_empty.clone(),
                PRIMARY,
                primary_at_reset(),
            ),
            (
                "primary 429",
                429,
                core_empty.clone(),
                PRIMARY,
                primary_at_reset(),
            ),
            (
                "primary with empty body",
                403,
                core_empty.clone(),
                "",
                primary_at_reset(),
            ),
            (
                "secondary",
                403,
                search_left.clone(),
                SECONDARY,
                secondary(None),
            ),
            (
                "secondary with retry-after",
                403,
                with(search_left.clone(), "retry-after", "30"),
                SECONDARY,
                secondary(Some(30)),
            ),
            (
                "secondary 429",
                429,
                with(core_empty.clone(), "retry-after", "30"),
                SECONDARY,
                secondary(Some(30)),
            ),
            (
                "secondary with remaining 0",
                403,
                core_empty.clone(),
                SECONDARY,
                secondary(None),
            ),
            (
                "secondary with request id",
                403,
                search_left.clone(),
                SECONDARY_SUFFIX,
                secondary(None),
            ),
            (
                "content creation block",
                403,
                search_left.clone(),
                SECONDARY_CONTENT,
                secondary(None),
            ),
            (
                "content creation with retry-after",
                403,
                with(search_left.clone(), "retry-after", "60"),
                SECONDARY_CONTENT,
                secondary(Some(60)),
            ),
            (
                "content creation wording alone",
                403,
                search_left.clone(),
                CONTENT_ONLY,
                secondary(None),
            ),
            (
                "abuse detection",
                403,
                search_left.clone(),
                ABUSE,
                secondary(None),
            ),
            (
                "abuse detection with retry-after",
                403,
                with(Vec::new(), "retry-after", "5"),
                ABUSE,
                secondary(Some(5)),
            ),
            (
                "upper-case wording",
                403,
                search_left.clone(),
                SECONDARY_UPPER,
                secondary(None),
            ),
            (
                "plain-text wording",
                429,
                Vec::new(),
                SECONDARY_TEXT,
                secondary(None),
            ),
            (
                "retry-after only",
                403,
                with(limits("core", 5000, 12), "retry-after", "7"),
                "{}",
                secondary(Some(7)),
            ),
            (
                "retry-after only on 429",
                429,
                with(Vec::new(), "retry-after", "7"),
                "",
                secondary(Some(7)),
            ),
            (
                "unreadable retry-after",
                403,
                with(Vec::new(), "retry-after", "soon"),
                "",
                secondary(None),
            ),
            ("login lockout", 403, Vec::new(), LOCKOUT, secondary(None)),
            ("bare 429", 429, Vec::new(), "", secondary(None)),
            (
                "bare 429 with budget left",
                429,
                limits("core", 5000, 12),
                "{}",
                secondary(None),
            ),
            (
                "primary wording without headers",
                403,
                Vec::new(),
                PRIMARY,
                Outcome::PrimaryLimit { reset_ms: None },
            ),
            (
                "primary wording with garbled remaining",
                429,
                with(Vec::new(), REMAINING, "abc"),
                PRIMARY,
                Outcome::PrimaryLimit { reset_ms: None },
            ),
            (
                "remaining 0 without reset",
                403,
                with(Vec::new(), REMAINING, "0"),
                PRIMARY,
                Outcome::PrimaryLimit { reset_ms: None },
            ),
            (
                "remaining 0 with reset only",
                403,
                with(
                    with(Vec::new(), REMAINING, "0"),
                    RESET,
                    &(N + 60).to_string(),
                ),
                "",
                primary_at_reset(),
            ),
            (
                "saml sso",
                403,
                with(
                    limits("core", 5000, 4989),
                    "x-github-sso",
                    "required; url=https://github.com/orgs/o/sso?authorization_request=x",
                ),
                SSO,
                Outcome::Forbidden,
            ),
            (
                "not accessible by integration",
                403,
                limits("core", 5000, 4999),
                NOT_ACCESSIBLE,
                Outcome::Forbidden,
            ),
            (
                "403 without headers",
                403,
                Vec::new(),
                "{}",
                Outcome::Forbidden,
            ),
            (
                "401 bad credentials",
                401,
                Vec::new(),
                BAD_CREDENTIALS,
                Outcome::InvalidToken,
            ),
            (
                "401 with limits",
                401,
                limits("core", 60, 0),
                BAD_CREDENTIALS,
                Outcome::InvalidToken,
            ),
            ("html 502", 502, Vec::new(), HTML_502, Outcome::ServerError),
            (
                "500",
                500,
                limits("core", 5000, 10),
                "{}",
                Outcome::ServerError,
            ),
            ("504", 504, Vec::new(), "", Outcome::ServerError),
            (
                "404",
                404,
                limits("core", 5000, 4999),
                r#"{"message":"Not Found"}"#,
                Outcome::Answered,
            ),
            (
                "422",
                422,
                limits("search", 30, 29),
                r#"{"message":"Validation Failed"}"#,
                Outcome::Answered,
            ),
            (
                "200",
                200,
                limits("core", 5000, 4999),
                "[]",
                Outcome::Answered,
            ),
            (
                "200 with remaining 0",
                200,
                core_empty.clone(),
                "[]",
                Outcome::Answered,
            ),
            (
                "304",
                304,
                limits("core", 5000, 4999),
                "",
                Outcome::Answered,
            ),
        ];

        for (name, status, pairs, body, expected) in cases {
            assert_eq!(outcome(status, &pairs, body), expected, "{name}");
        }
    }

    #[test]
    fn graphql_rate_limited() {
        let pairs = limits("graphql", 5000, 0);
        let verdict = classify_with(200, &pairs, GRAPHQL_LIMITED, &buckets::GRAPHQL);
        assert_eq!(verdict.outcome, primary_at_reset());

        let observation = verdict.observation.unwrap();
        assert_eq!(observation.bucket, Some(buckets::GRAPHQL));
        assert_eq!(observation.remaining, 0);
    }

    #[test]
    fn graphql_other_answers() {
        let pairs = limits("graphql", 5000, 4000);
        let cases = [
            ("other error", GRAPHQL_OTHER_ERROR),
            ("data naming RATE_LIMITED", GRAPHQL_DATA),
            ("no errors", r#"{"data":{}}"#),
        ];
        for (name, body) in cases {
            let verdict = classify_with(200, &pairs, body, &buckets::GRAPHQL);
            assert_eq!(verdict.outcome, Outcome::Answered, "{name}");
        }
    }

    #[test]
    fn graphql_truncated_body() {
        let pairs = limits("graphql", 5000, 0);
        let truncated = &GRAPHQL_LIMITED[..40];
        let verdict = classify_with(200, &pairs, truncated, &buckets::GRAPHQL);
        assert_eq!(verdict.outcome, primary_at_reset());
    }

    #[test]
    fn rate_limited_body_outside_graphql() {
        let pairs = limits("core", 5000, 4000);
        let verdict = classify_with(200, &pairs, GRAPHQL_LIMITED, &buckets::CORE);
        assert_eq!(verdict.outcome, Outcome::Answered);
    }

    #[test]
    fn observation_from_headers() {
        let pairs = limits("search", 30, 14);
        let verdict = classify_with(200, &pairs, "{}", &buckets::SEARCH);
        let expected = Observation {
            bucket: Some(buckets::SEARCH),
            limit: 30,
            remaining: 14,
            used: Some(16),
            reset_ms: (N + 60) * 1000,
        };
        assert_eq!(verdict.observation, Some(expected));
    }

    #[test]
    fn observation_without_used_or_resource() {
        let pairs = vec![
            (LIMIT, "5000".to_owned()),
            (REMAINING, " 4999 ".to_owned()),
            (RESET, N.to_string()),
        ];
        let verdict = classify_with(200, &pairs, "{}", &buckets::CORE);
        let observation = verdict.observation.unwrap();
        assert_eq!(observation.bucket, None);
        assert_eq!(observation.used, None);
        assert_eq!(observation.remaining, 4999);
        assert_eq!(observation.reset_ms, N * 1000);
    }

    #[test]
    fn garbled_headers_give_no_observation() {
        let full = limits("core", 5000, 10);
        let replace = |name: &str, value: &str| -> Pairs {
            full.iter()
                .map(|(key, old)| {
                    let new = if *key == name {
                        value.to_owned()
                    } else {
                        old.clone()
                    };
                    (*key, new)
                })
                .collect()
        };
        let without = |name: &str| -> Pairs {
            full.iter()
                .filter(|(key, _)| *key != name)
                .cloned()
                .collect()
        };
        let cases = [
            ("remaining abc", replace(REMAINING, "abc")),
            ("remaining negative", replace(REMAINING, "-1")),
            ("limit empty", replace(LIMIT, "")),
            ("reset float", replace(RESET, "1700000060.5")),
            (
                "reset in the far future",
                replace(RESET, "99999999999999999999999"),
            ),
            ("reset missing", without(RESET)),
            ("limit missing", without(LIMIT)),
            ("remaining missing", without(REMAINING)),
            ("no headers", Vec::new()),
        ];

        for (name, pairs) in cases {
            for status in [200, 403, 429, 502] {
                let verdict = classify_with(status, &pairs, "", &buckets::CORE);
                assert_eq!(verdict.observation, None, "{name}, status {status}");
            }
            let forbidden = outcome(403, &pairs, "{}");
            assert_ne!(
                forbidden,
                Outcome::PrimaryLimit { reset_ms: None },
                "{name}: garbled headers must not read as an empty budget"
            );
        }
    }

    #[test]
    fn non_utf8_header_is_ignored() {
        let mut map = HeaderMap::new();
        map.insert(LIMIT, HeaderValue::from_static("5000"));
        map.insert(REMAINING, HeaderValue::from_bytes(b"\xff0").unwrap());
        map.insert(RESET, HeaderValue::from_static("1700000060"));
        let view = ResponseView {
            status: StatusCode::FORBIDDEN,
            headers: &map,
            body: b"\xff\xfe",
            bucket: &buckets::CORE,
            account: "octocat",
            now_ms: 0,
        };
        let verdict = classify(&view);
        assert_eq!(verdict.observation, None);
        assert_eq!(verdict.outcome, Outcome::Forbidden);
    }

    #[test]
    fn garbled_used_is_dropped() {
        let pairs = with(
            vec![
                (LIMIT, "5000".to_owned()),
                (REMAINING, "0".to_owned()),
                (RESET, N.to_string()),
            ],
            USED,
            "not a number",
        );
        let observation = classify_with(200, &pairs, "", &buckets::CORE)
            .observation
            .unwrap();
        assert_eq!(observation.used, None);
    }

    #[test]
    fn reset_in_milliseconds_is_kept() {
        let seconds = limits("core", 5000, 10);
        let milliseconds = with(
            vec![(LIMIT, "5000".to_owned()), (REMAINING, "10".to_owned())],
            RESET,
            &((N + 60) * 1000).to_string(),
        );
        let from_seconds = classify_with(200, &seconds, "", &buckets::CORE).observation;
        let from_milliseconds = classify_with(200, &milliseconds, "", &buckets::CORE).observation;

        assert_eq!(from_seconds.unwrap().reset_ms, (N + 60) * 1000);
        assert_eq!(from_milliseconds.unwrap().reset_ms, (N + 60) * 1000);
        assert_eq!(reset_to_ms(0), 0);
        assert_eq!(
            reset_to_ms(MILLISECOND_RESET_FLOOR - 1),
            (MILLISECOND_RESET_FLOOR - 1) * 1000
        );
    }

    #[test]
    fn server_date_is_read() {
        let pairs = with(limits("core", 5000, 10), "date", DATE_TEXT);
        let verdict = classify_with(200, &pairs, "", &buckets::CORE);
        assert_eq!(verdict.server_date_ms, Some(N * 1000));

        let garbled = with(Vec::new(), "date", "yesterday");
        let verdict = classify_with(200, &garbled, "", &buckets::CORE);
        assert_eq!(verdict.server_date_ms, None);
    }

    #[test]
    fn retry_after_as_http_date() {
        let pairs = with(
            with(Vec::new(), "date", DATE_TEXT),
            "retry-after",
            "Tue, 14 Nov 2023 22:14:05 GMT",
        );
        assert_eq!(outcome(429, &pairs, ""), secondary(Some(45)));

        let past = with(
            with(Vec::new(), "date", DATE_TEXT),
            "retry-after",
            "Tue, 14 Nov 2023 22:00:00 GMT",
        );
        assert_eq!(outcome(403, &past, ""), secondary(Some(0)));

        let no_date = with(Vec::new(), "retry-after", "Tue, 14 Nov 2023 22:14:05 GMT");
        assert_eq!(outcome(403, &no_date, ""), secondary(None));
    }
}
