//! Parsing the CLI's values: durations (`90s`, `5m`, `12h`, `2d`), event
//! type lists, times (`2026-01-01T00:00:00Z` or `2h`, meaning that long
//! ago), formats, signature schemes and rates, with errors that clap prints
//! next to the flag's name. Values that may be secret (signing keys, header
//! values) are not parsed by clap, whose errors repeat the value: `--header`
//! is split here ([`header`]) and checked by the CLI with errors of its own.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::registry::EventType;
use crate::registry::model::{Format, Scheme};
use crate::store::deliveries::Status;

/// A duration: a whole number with an optional unit (`s`, `m`, `h`, `d`;
/// seconds without one).
pub fn duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 90s, 5m, 12h or 2d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{value:?} has an unknown unit {unit:?}: use s, m, h or d"
            ));
        }
    };
    n.checked_mul(scale)
        .filter(|secs| *secs <= 10 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{value:?} is longer than ten years"))
}

/// Event types, comma-separated; each must be one the daemon knows.
pub fn event_type(value: &str) -> Result<EventType, String> {
    EventType::parse(value.trim()).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        format!(
            "unknown event type {value:?}; expected one of {}",
            known.join(", ")
        )
    })
}

/// A delivery status: pending, succeeded or failed.
pub fn status(value: &str) -> Result<Status, String> {
    Status::parse(value)
        .ok_or_else(|| format!("unknown status {value:?}; expected pending, succeeded or failed"))
}

/// A point in time: RFC 3339, or a duration meaning that long ago.
pub fn time(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = duration(value).map_err(|_| {
        format!(
            "{value:?} is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor a duration ago (2h)"
        )
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    Ok(Utc::now() - ago)
}

/// A message format: standard, slack or discord.
pub fn format(value: &str) -> Result<Format, String> {
    Format::parse(value.trim())
        .ok_or_else(|| format!("unknown format {value:?}; expected standard, slack or discord"))
}

/// A signature scheme (of a comma-separated list): v1 or v1a.
pub fn scheme(value: &str) -> Result<Scheme, String> {
    Scheme::parse(value.trim())
        .ok_or_else(|| format!("unknown signature scheme {value:?}; expected v1, v1a or v1,v1a"))
}

/// `--max-per-minute`: a number, or `none` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMinute(pub Option<i32>);

pub fn per_minute(value: &str) -> Result<PerMinute, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(PerMinute(None));
    }
    value
        .parse()
        .map(|n| PerMinute(Some(n)))
        .map_err(|_| format!("{value:?} is neither a number of requests nor none"))
}

/// `--header 'Name: value'` as its name and value (blanks around either
/// taken off). The error never repeats the value.
pub fn header(value: &str) -> Result<(String, String), String> {
    let Some((name, value)) = value.split_once(':') else {
        return Err("--header must be given as \"Name: value\"".into());
    };
    let blank = |c: char| c == ' ' || c == '\t';
    Ok((
        name.trim_matches(blank).to_string(),
        value.trim_matches(blank).to_string(),
    ))
}

/// A duration as a whole number of `unit_secs` (minutes for 60) that fits
/// an `i32`, for the columns that store one; `flag` names it in the error.
pub fn whole(flag: &str, value: Duration, unit_secs: u64, unit: &str) -> Result<i32, String> {
    let secs = value.as_secs();
    if !secs.is_multiple_of(unit_secs) {
        return Err(format!("{flag} must be a whole number of {unit}"));
    }
    i32::try_from(secs / unit_secs).map_err(|_| format!("{flag} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(duration("5 minutes").is_err());
        assert!(duration("-5m").is_err());
        assert!(duration("").is_err());
        assert!(duration("99999999999999999999d").is_err());
        assert!(duration("5000d").is_err());
    }

    #[test]
    fn whole_units() {
        assert_eq!(
            whole("--spike-window", Duration::from_secs(300), 60, "minutes"),
            Ok(5)
        );
        assert_eq!(
            whole("--spike-window", Duration::from_secs(90), 60, "minutes"),
            Err("--spike-window must be a whole number of minutes".into())
        );
    }

    #[test]
    fn times() {
        assert_eq!(
            time("2026-01-01T00:00:00Z").unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        let ago = Utc::now() - time("2h").unwrap();
        assert!((ago.num_seconds() - 7200).abs() < 5);
        assert!(time("yesterday").is_err());
    }

    #[test]
    fn receiver_options() {
        assert_eq!(format("slack"), Ok(Format::Slack));
        assert!(format("teams").is_err());
        assert_eq!(scheme("v1a"), Ok(Scheme::V1a));
        assert!(scheme("v2").is_err());
        assert_eq!(per_minute("none"), Ok(PerMinute(None)));
        assert_eq!(per_minute("60"), Ok(PerMinute(Some(60))));
        assert!(per_minute("lots").is_err());
        assert_eq!(
            header("Authorization: Bearer a:b"),
            Ok(("Authorization".into(), "Bearer a:b".into()))
        );
        assert_eq!(header("X-Empty:"), Ok(("X-Empty".into(), String::new())));
        let e = header("no colon SECRET").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn event_types() {
        assert_eq!(event_type("goal.completed"), Ok(EventType::GoalCompleted));
        assert!(
            event_type("goal.done")
                .unwrap_err()
                .contains("traffic.spike")
        );
    }
}
