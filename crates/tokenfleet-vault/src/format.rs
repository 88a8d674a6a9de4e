//! The plaintext inside the encrypted file: TOML with a format version.
//!
//! ```toml
//! version = 1
//!
//! [[credentials]]
//! name = "work-bot"                 # unique in the vault
//! provider = "github"               # the provider's `type` name
//! secret = "ghp_..."
//! account = "ci-bot"                # optional
//! priority = 0                      # optional, 0 when absent
//! note = "CI for the docs site"     # optional
//! created = 2026-12-04T18:30:00Z    # optional
//! ```

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use toml::value::{Date, Datetime, Offset, Time};
use zeroize::{Zeroize, Zeroizing};

use crate::credential::{check_identifier, check_secret, Credential};
use crate::VaultError;

/// The format version this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainVault {
    version: u32,
    #[serde(default)]
    credentials: Vec<PlainCredential>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainCredential {
    name: String,
    provider: String,
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(default)]
    priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<Datetime>,
}

impl Drop for PlainCredential {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// Writes the credentials as the plaintext of a vault file.
pub(crate) fn encode(credentials: &[Credential]) -> Zeroizing<String> {
    let plain = PlainVault {
        version: FORMAT_VERSION,
        credentials: credentials
            .iter()
            .map(|credential| PlainCredential {
                name: credential.name.clone(),
                provider: credential.provider.clone(),
                secret: credential.secret.expose_secret().to_owned(),
                account: credential.account.clone(),
                priority: credential.priority,
                note: credential.note.clone(),
                created: credential.created.map(to_datetime),
            })
            .collect(),
    };
    // Every field is a string, an integer or a datetime, which TOML can
    // always represent.
    Zeroizing::new(toml::to_string(&plain).expect("a vault serializes to TOML"))
}

/// Reads the plaintext of a vault file.
pub(crate) fn decode(path: &Path, text: &str) -> Result<Vec<Credential>, VaultError> {
    let invalid = |line: Option<usize>, message: String| VaultError::InvalidPlaintext {
        path: path.to_owned(),
        line,
        message,
    };

    let plain: PlainVault = toml::from_str(text).map_err(|error| {
        let line = error.span().map(|span| line_of(text, span.start));
        invalid(line, remove_quoted(error.message()))
    })?;
    if plain.version != FORMAT_VERSION {
        return Err(invalid(
            None,
            format!(
                "format version {} is not supported; this build reads version {FORMAT_VERSION}",
                plain.version
            ),
        ));
    }

    let mut credentials: Vec<Credential> = Vec::with_capacity(plain.credentials.len());
    for (index, mut entry) in plain.credentials.into_iter().enumerate() {
        let at = format!("credentials[{index}]");
        let checked = check_identifier("name", &entry.name)
            .and_then(|()| check_identifier("provider", &entry.provider))
            .and_then(|()| {
                let secret = SecretString::from(entry.secret.trim().to_owned());
                check_secret(&entry.name, &secret).map(|()| secret)
            });
        let secret = checked.map_err(|error| invalid(None, format!("{at}: {error}")))?;
        if credentials.iter().any(|c| c.name == entry.name) {
            return Err(invalid(
                None,
                format!(
                    "{at}: a second entry is named {:?}; names must be unique",
                    entry.name
                ),
            ));
        }
        let created = match entry.created {
            None => None,
            Some(datetime) => Some(from_datetime(&datetime).ok_or_else(|| {
                invalid(
                    None,
                    format!(
                        "{at}.created: {datetime} is not a full date and time; \
                         write it like 2026-12-04T18:30:00Z"
                    ),
                )
            })?),
        };
        credentials.push(Credential {
            name: std::mem::take(&mut entry.name),
            provider: std::mem::take(&mut entry.provider),
            secret,
            account: entry.account.take(),
            priority: entry.priority,
            note: entry.note.take(),
            created,
        });
    }
    Ok(credentials)
}

/// The keys of the plaintext format, the only words kept in backquotes.
const KNOWN_KEYS: [&str; 9] = [
    "version",
    "credentials",
    "name",
    "provider",
    "secret",
    "account",
    "priority",
    "note",
    "created",
];

/// Replaces quoted values in a parser message with `...`. serde quotes the
/// offending value, as in `invalid type: string "...", expected u32`, or a
/// key in backquotes, as in ``unknown field `...` ``, and a secret written
/// in the wrong place would show there. Backquoted keys of the format stay.
fn remove_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<(char, String)> = None;
    for ch in message.trim().trim_end_matches('.').chars() {
        match &mut quote {
            Some((open, text)) if ch == *open => {
                let kept = ch == '`' && KNOWN_KEYS.contains(&text.as_str());
                out.push(ch);
                out.push_str(if kept { text } else { "..." });
                out.push(ch);
                quote = None;
            }
            Some((_, text)) => text.push(ch),
            None if ch == '"' || ch == '`' => quote = Some((ch, String::new())),
            None => out.push(if ch == '\n' { ' ' } else { ch }),
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn to_datetime(time: SystemTime) -> Datetime {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    Datetime {
        date: Some(Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        }),
        time: Some(Time {
            hour: (second_of_day / 3600) as u8,
            minute: (second_of_day % 3600 / 60) as u8,
            second: (second_of_day % 60) as u8,
            nanosecond: 0,
        }),
        offset: Some(Offset::Z),
    }
}

/// Converts a TOML datetime with a date, a time and an offset; a local
/// datetime without an offset is read as UTC.
fn from_datetime(datetime: &Datetime) -> Option<SystemTime> {
    let date = datetime.date?;
    let time = datetime.time?;
    let offset_minutes = match datetime.offset {
        None | Some(Offset::Z) => 0,
        Some(Offset::Custom { minutes }) => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::new(seconds, time.nanosecond))
}

/// Counts days since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil` algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Converts days since 1970-01-01 to (year, month, day), the inverse of
/// [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "ghp_CANARY0000000000000000000000000000";

    fn decode_text(text: &str) -> Result<Vec<Credential>, VaultError> {
        decode(Path::new("/vault.age"), text)
    }

    #[test]
    fn encode_decode_round_trip() {
        let credential = Credential::new("work-bot", "github", CANARY.to_owned().into())
            .unwrap()
            .with_account("ci")
            .unwrap()
            .with_priority(3)
            .with_note("docs site")
            .unwrap();
        let text = encode(std::slice::from_ref(&credential));
        assert!(text.starts_with("version = 1\n"), "{}", text.as_str());

        let decoded = decode_text(&text).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].info().name, "work-bot");
        assert_eq!(decoded[0].secret().expose_secret(), CANARY);
        assert_eq!(decoded[0].account(), Some("ci"));
        assert_eq!(decoded[0].priority(), 3);
        assert_eq!(decoded[0].note(), Some("docs site"));
        let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            seconds(decoded[0].created().unwrap()),
            seconds(credential.created().unwrap())
        );
    }

    #[test]
    fn decode_reads_offsets() {
        let text = format!(
            "version = 1\n[[credentials]]\nname = \"a\"\nprovider = \"github\"\n\
             secret = \"{CANARY}\"\ncreated = 2026-12-04T20:30:00+02:00\n"
        );
        let decoded = decode_text(&text).unwrap();
        let created = decoded[0].created().unwrap();
        assert_eq!(
            created.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_409_000
        );
    }

    #[test]
    fn dates_convert_both_ways() {
        for days in [-1, 0, 59, 365, 11_016, 20_791, 47_482] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(20_791), (2026, 12, 4));
    }

    #[test]
    fn decode_errors_hide_secret() {
        let cases = [
            format!("version = 1\n[[credentials]]\nname = \"a\"\nprovider = \"github\"\nsecret = \"{CANARY}\"\npriority = \"{CANARY}\"\n"),
            format!("version = 1\n[[credentials]]\nname = \"a\"\nprovider = \"github\"\nsecret = 7\nnote = \"{CANARY}\"\nsecrets = 1\n"),
            format!("version = 1\n[[credentials]]\nname = \"a b\"\nprovider = \"github\"\nsecret = \"{CANARY}\"\n"),
            format!("version = 2\n[[credentials]]\nname = \"a\"\nprovider = \"github\"\nsecret = \"{CANARY}\"\n"),
            format!("version = 1\nsecret = {CANARY}\n"),
            format!("version = 1\n{CANARY} = 1\n"),
            format!("version = 1\n[[credentials]]\nname = \"a\"\nprovider = \"github\"\nsecret = \"{CANARY} x\"\n"),
        ];
        for text in cases {
            let error = decode_text(&text).unwrap_err();
            assert!(
                matches!(error, VaultError::InvalidPlaintext { .. }),
                "{error}"
            );
            let message = error.to_string();
            assert!(!message.contains("CANARY"), "{message}");
        }
    }

    #[test]
    fn decode_rejects_duplicate_names() {
        let entry = format!(
            "[[credentials]]\nname = \"a\"\nprovider = \"github\"\nsecret = \"{CANARY}\"\n"
        );
        let error = decode_text(&format!("version = 1\n{entry}{entry}")).unwrap_err();
        assert!(
            error.to_string().contains("a second entry is named \"a\""),
            "{error}"
        );
    }

    #[test]
    fn decode_keeps_known_keys() {
        let error = decode_text("version = 1\nsecrets = 1\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("unknown field `...`"), "{message}");
        assert!(message.contains("`credentials`"), "{message}");
    }

    #[test]
    fn decode_reports_line() {
        let error = decode_text("version = 1\n\n[[credentials]]\nname = 5\n").unwrap_err();
        assert!(
            matches!(error, VaultError::InvalidPlaintext { line: Some(4), .. }),
            "{error}"
        );
    }
}
