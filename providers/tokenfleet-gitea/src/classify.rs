//! Classifies Gitea responses: reads the limits a proxy in front of the
//! server may state, and decides whether each response is a normal one, a
//! throttle, an invalid token or a refusal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{DATE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use tokenfleet_core::{Observation, Outcome, ResponseView, Verdict};

/// The header spellings a proxy may use, tried in this order: the common
/// `X-RateLimit-*` family, then the IETF draft's `RateLimit-*`.
const FAMILIES: [Family; 2] = [
    Family {
        limit: "x-ratelimit-limit",
        remaining: "x-ratelimit-remaining",
        reset: "x-ratelimit-reset",
        used: Some("x-ratelimit-used"),
    },
    Family {
        limit: "ratelimit-limit",
        remaining: "ratelimit-remaining",
        reset: "ratelimit-reset",
        used: None,
    },
];

/// The names of one family of rate-limit headers.
struct Family {
    limit: &'static str,
    remaining: &'static str,
    reset: &'static str,
    used: Option<&'static str>,
}

/// Reset values below this many seconds are a delay, not an instant:
/// 10^9 epoch seconds is September 2001, long before any such header.
const DELTA_RESET_CEILING: u64 = 1_000_000_000;

/// Reset values from this one up are epoch milliseconds: 10^11 seconds is
/// past the year 5000, but 10^11 milliseconds is in 1973.
const MILLISECOND_RESET_FLOOR: u64 = 100_000_000_000;

/// Classifies one Gitea response with the checks listed, in order, under
/// "Classification" in the crate documentation.
pub(crate) fn classify(response: &ResponseView<'_>) -> Verdict {
    let headers = response.headers;
    let server_date_ms = parse_date_ms(headers);
    let now_ms = server_date_ms.unwrap_or(response.now_ms);
    let observation = parse_observation(headers, now_ms);

    let outcome = match response.status {
        StatusCode::UNAUTHORIZED => Outcome::InvalidToken,
        StatusCode::TOO_MANY_REQUESTS => throttled(headers, observation.as_ref(), now_ms),
        StatusCode::FORBIDDEN => Outcome::Forbidden,
        status if status.is_server_error() => Outcome::ServerError,
        _ => Outcome::Answered,
    };

    Verdict::new(outcome)
        .with_observation(observation)
        .with_server_date(server_date_ms)
}

/// Reads a 429: a primary limit when the headers state that the budget is spent
/// until a known reset, else a secondary limit on the token's account.
fn throttled(headers: &HeaderMap, observation: Option<&Observation>, now_ms: u64) -> Outcome {
    if let Some(observation) = observation.filter(|o| o.remaining == 0) {
        return Outcome::PrimaryLimit {
            reset_ms: Some(observation.reset_ms),
        };
    }
    Outcome::SecondaryLimit {
        retry_after: parse_retry_after(headers, now_ms),
    }
}

/// Reads the first family of rate-limit headers whose limit, remaining
/// count and reset are all readable.
pub(crate) fn parse_observation(headers: &HeaderMap, now_ms: u64) -> Option<Observation> {
    FAMILIES
        .iter()
        .find_map(|family| parse_family(headers, family, now_ms))
}

fn parse_family(headers: &HeaderMap, family: &Family, now_ms: u64) -> Option<Observation> {
    let limit = parse_u64(headers, family.limit)?;
    let remaining = parse_u64(headers, family.remaining)?;
    let reset_ms = reset_to_ms(parse_u64(headers, family.reset)?, now_ms);
    let used = family.used.and_then(|name| parse_u64(headers, name));

    Some(Observation {
        bucket: None,
        limit,
        remaining: remaining.min(limit),
        used,
        reset_ms,
    })
}

/// Converts a reset value to epoch milliseconds: a delay in seconds from
/// `now_ms`, epoch seconds or epoch milliseconds, by its size.
pub(crate) fn reset_to_ms(reset: u64, now_ms: u64) -> u64 {
    if reset < DELTA_RESET_CEILING {
        now_ms.saturating_add(reset.saturating_mul(1000))
    } else if reset < MILLISECOND_RESET_FLOOR {
        reset * 1000
    } else {
        reset
    }
}

/// Reads the `Date` header as epoch milliseconds.
pub(crate) fn parse_date_ms(headers: &HeaderMap) -> Option<u64> {
    let text = headers.get(DATE)?.to_str().ok()?;
    epoch_ms(httpdate::parse_http_date(text.trim()).ok()?)
}

/// Reads `Retry-After` as delay seconds or as an HTTP date measured from
/// `now_ms`. A date in the past gives a zero wait.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now_ms: u64) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let until_ms = epoch_ms(httpdate::parse_http_date(text).ok()?)?;
    Some(Duration::from_millis(until_ms.saturating_sub(now_ms)))
}

fn parse_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn epoch_ms(time: SystemTime) -> Option<u64> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tokenfleet_core::Bucket;

    use crate::buckets;

    /// The server's clock in the tests, in epoch seconds.
    const N: u64 = 1_700_000_000;
    const DATE_TEXT: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    /// The pool's clock in the tests, 5 s behind the server.
    const LOCAL_MS: u64 = (N - 5) * 1000;

    const TOKEN_REQUIRED: &str =
        r#"{"message":"token is required","url":"https://gitea.com/api/swagger"}"#;
    const USER_MISSING: &str = r#"{"message":"user does not exist [uid: 0, name: bot]","url":"https://gitea.com/api/swagger"}"#;
    const SCOPE: &str = r#"{"message":"token does not have at least one of required scope(s): [read:repository]","url":"https://gitea.com/api/swagger"}"#;
    const PUBLIC_ONLY: &str = r#"{"message":"token scope is limited to public repos","url":"https://gitea.com/api/swagger"}"#;
    const SITE_ADMIN: &str =
        r#"{"message":"user should be the site admin","url":"https://gitea.com/api/swagger"}"#;
    const NGINX_429: &str = "<html><head><title>429 Too Many Requests</title></head><body><center><h1>429 Too Many Requests</h1></center></body></html>";
    const NGINX_502: &str = "<html><head><title>502 Bad Gateway</title></head><body></body></html>";
    const REPOS: &str = r#"[{"id":1,"name":"hello","full_name":"bot/hello"}]"#;

    type Pairs = Vec<(&'static str, String)>;

    fn with_date(mut pairs: Pairs) -> Pairs {
        pairs.push(("date", DATE_TEXT.to_owned()));
        pairs
    }

    fn classify_pairs(status: u16, pairs: &[(&'static str, String)], body: &str) -> Verdict {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let bucket: Bucket = buckets::API;
        let view = ResponseView {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body: body.as_bytes(),
            bucket: &bucket,
            account: "bot",
            now_ms: LOCAL_MS,
        };
        classify(&view)
    }

    fn x_limits(limit: u64, remaining: u64, reset: &str) -> Pairs {
        with_date(vec![
            ("x-ratelimit-limit", limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset.to_owned()),
        ])
    }

    fn draft_limits(limit: u64, remaining: u64, reset: &str) -> Pairs {
        with_date(vec![
            ("ratelimit-limit", limit.to_string()),
            ("ratelimit-remaining", remaining.to_string()),
            ("ratelimit-reset", reset.to_owned()),
        ])
    }

    fn secondary(seconds: Option<u64>) -> Outcome {
        Outcome::SecondaryLimit {
            retry_after: seconds.map(Duration::from_secs),
        }
    }

    fn primary_at(reset_s: u64) -> Outcome {
        Outcome::PrimaryLimit {
            reset_ms: Some(reset_s * 1000),
        }
    }

    #[test]
    fn classify_table() {
        let retry_after = |value: &str| with_date(vec![("retry-after", value.to_owned())]);
        let at_reset = (N + 60).to_string();
        let cases: Vec<(&str, u16, Pairs, &str, Outcome)> = vec![
            (
                "401 token is required",
                401,
                with_date(vec![]),
                TOKEN_REQUIRED,
                Outcome::InvalidToken,
            ),
            (
                "401 user does not exist",
                401,
                vec![],
                USER_MISSING,
                Outcome::InvalidToken,
            ),
            (
                "401 with a retry-after",
                401,
                retry_after("30"),
                TOKEN_REQUIRED,
                Outcome::InvalidToken,
            ),
            (
                "429 with remaining 0 and epoch reset",
                429,
                x_limits(100, 0, &at_reset),
                NGINX_429,
                primary_at(N + 60),
            ),
            (
                "429 with remaining 0 beats retry-after",
                429,
                {
                    let mut pairs = x_limits(100, 0, &at_reset);
                    pairs.push(("retry-after", "5".to_owned()));
                    pairs
                },
                "",
                primary_at(N + 60),
            ),
            (
                "429 with draft headers and delta reset",
                429,
                draft_limits(100, 0, "60"),
                "",
                primary_at(N + 60),
            ),
            (
                "429 with remaining left and retry-after",
                429,
                {
                    let mut pairs = x_limits(100, 7, &at_reset);
                    pairs.push(("retry-after", "12".to_owned()));
                    pairs
                },
                "",
                secondary(Some(12)),
            ),
            (
                "429 with retry-after seconds",
                429,
                retry_after("30"),
                NGINX_429,
                secondary(Some(30)),
            ),
            (
                "429 with retry-after date",
                429,
                retry_after("Tue, 14 Nov 2023 22:14:05 GMT"),
                NGINX_429,
                secondary(Some(45)),
            ),
            (
                "429 with retry-after date in the past",
                429,
                retry_after("Tue, 14 Nov 2023 22:13:00 GMT"),
                "",
                secondary(Some(0)),
            ),
            (
                "429 without headers",
                429,
                vec![],
                NGINX_429,
                secondary(None),
            ),
            (
                "429 with garbled retry-after",
                429,
                retry_after("soon"),
                "",
                secondary(None),
            ),
            (
                "429 with garbled remaining",
                429,
                with_date(vec![
                    ("x-ratelimit-limit", "100".to_owned()),
                    ("x-ratelimit-remaining", "none".to_owned()),
                    ("x-ratelimit-reset", at_reset.clone()),
                ]),
                "",
                secondary(None),
            ),
            ("403 missing scope", 403, vec![], SCOPE, Outcome::Forbidden),
            (
                "403 public-only token",
                403,
                vec![],
                PUBLIC_ONLY,
                Outcome::Forbidden,
            ),
            (
                "403 missing permission",
                403,
                vec![],
                SITE_ADMIN,
                Outcome::Forbidden,
            ),
            (
                "403 with retry-after stays a refusal",
                403,
                retry_after("30"),
                SCOPE,
                Outcome::Forbidden,
            ),
            (
                "403 with remaining 0 stays a refusal",
                403,
                x_limits(100, 0, &at_reset),
                SCOPE,
                Outcome::Forbidden,
            ),
            ("500", 500, vec![], "", Outcome::ServerError),
            (
                "502 from a proxy",
                502,
                vec![],
                NGINX_502,
                Outcome::ServerError,
            ),
            ("503", 503, retry_after("10"), "", Outcome::ServerError),
            ("200", 200, with_date(vec![]), REPOS, Outcome::Answered),
            (
                "200 anonymous empty list",
                200,
                vec![],
                "[]",
                Outcome::Answered,
            ),
            ("204", 204, vec![], "", Outcome::Answered),
            (
                "404",
                404,
                vec![],
                r#"{"message":"The target couldn't be found."}"#,
                Outcome::Answered,
            ),
            ("422", 422, vec![], "{}", Outcome::Answered),
        ];

        for (name, status, pairs, body, expected) in cases {
            let verdict = classify_pairs(status, &pairs, body);
            assert_eq!(verdict.outcome, expected, "{name}");
        }
    }

    #[test]
    fn response_without_headers_has_no_observation() {
        let verdict = classify_pairs(200, &with_date(vec![]), REPOS);
        assert_eq!(verdict.observation, None);
        assert_eq!(verdict.server_date_ms, Some(N * 1000));
    }

    #[test]
    fn observation_from_x_headers() {
        let mut pairs = x_limits(100, 40, &(N + 60).to_string());
        pairs.push(("x-ratelimit-used", "60".to_owned()));
        let observation = classify_pairs(200, &pairs, REPOS).observation.unwrap();

        assert_eq!(
            observation,
            Observation {
                bucket: None,
                limit: 100,
                remaining: 40,
                used: Some(60),
                reset_ms: (N + 60) * 1000,
            }
        );
    }

    #[test]
    fn observation_from_draft_headers() {
        let pairs = draft_limits(600, 599, "30");
        let observation = classify_pairs(200, &pairs, REPOS).observation.unwrap();

        assert_eq!(observation.limit, 600);
        assert_eq!(observation.remaining, 599);
        assert_eq!(observation.used, None);
        assert_eq!(observation.reset_ms, (N + 30) * 1000);
    }

    #[test]
    fn x_headers_win_over_draft_headers() {
        let mut pairs = x_limits(100, 10, &(N + 60).to_string());
        pairs.extend(draft_limits(600, 500, "30"));
        let observation = classify_pairs(200, &pairs, REPOS).observation.unwrap();
        assert_eq!(observation.limit, 100);
    }

    #[test]
    fn delta_reset_without_date_uses_local_clock() {
        let pairs = vec![
            ("ratelimit-limit", "10".to_owned()),
            ("ratelimit-remaining", "0".to_owned()),
            ("ratelimit-reset", "20".to_owned()),
        ];
        let verdict = classify_pairs(429, &pairs, "");
        assert_eq!(
            verdict.outcome,
            Outcome::PrimaryLimit {
                reset_ms: Some(LOCAL_MS + 20_000)
            }
        );
    }

    #[test]
    fn reset_units_name_one_instant() {
        let now_ms = N * 1000;
        let instant = (N + 5) * 1000;
        assert_eq!(reset_to_ms(5, now_ms), instant);
        assert_eq!(reset_to_ms(N + 5, now_ms), instant);
        assert_eq!(reset_to_ms((N + 5) * 1000, now_ms), instant);
    }

    #[test]
    fn remaining_above_limit_is_capped() {
        let pairs = x_limits(10, 50, &(N + 60).to_string());
        let observation = classify_pairs(200, &pairs, REPOS).observation.unwrap();
        assert_eq!(observation.remaining, 10);
    }

    #[test]
    fn garbled_headers_give_no_observation() {
        let reset = (N + 60).to_string();
        let garbled: Vec<Pairs> = vec![
            vec![
                ("x-ratelimit-limit", "many".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", reset.clone()),
            ],
            vec![
                ("x-ratelimit-limit", "100".to_owned()),
                ("x-ratelimit-remaining", "-1".to_owned()),
                ("x-ratelimit-reset", reset.clone()),
            ],
            vec![
                ("x-ratelimit-limit", "100".to_owned()),
                ("x-ratelimit-remaining", "4".to_owned()),
                ("x-ratelimit-reset", "tomorrow".to_owned()),
            ],
            vec![
                ("x-ratelimit-limit", "100".to_owned()),
                ("x-ratelimit-remaining", "4".to_owned()),
            ],
            vec![("ratelimit-remaining", "0".to_owned())],
            vec![
                ("ratelimit-limit", "".to_owned()),
                ("ratelimit-remaining", "0".to_owned()),
                ("ratelimit-reset", "10".to_owned()),
            ],
        ];
        for pairs in garbled {
            let verdict = classify_pairs(200, &pairs, REPOS);
            assert_eq!(verdict.observation, None, "{pairs:?}");
            let throttled = classify_pairs(429, &pairs, NGINX_429);
            assert_eq!(throttled.outcome, secondary(None), "{pairs:?}");
        }
    }

    #[test]
    fn non_utf8_header_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        headers.insert("date", HeaderValue::from_bytes(b"\xff").unwrap());
        let bucket = buckets::API;
        let view = ResponseView {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: &headers,
            body: b"",
            bucket: &bucket,
            account: "bot",
            now_ms: LOCAL_MS,
        };
        let verdict = classify(&view);
        assert_eq!(verdict.outcome, secondary(None));
        assert_eq!(verdict.server_date_ms, None);
    }

    #[test]
    fn garbled_date_is_ignored() {
        let pairs = vec![("date", "yesterday".to_owned())];
        assert_eq!(classify_pairs(200, &pairs, REPOS).server_date_ms, None);
    }
}
