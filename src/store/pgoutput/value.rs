//! A datum read as a Rust value: by the column's type OID for integer
//! widths and timestamps, in the text format or the binary one.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use postgres_protocol::types;

use super::{Datum, PG_EPOCH_OFFSET_MICROS, RelationColumn};

const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;

/// Why a column's datum is not the value asked for. Never shows the value.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("an unchanged TOAST value, which the message does not carry")]
    UnchangedToast,
    #[error("its type (OID {found}) is not {wanted}")]
    Type { found: u32, wanted: &'static str },
    #[error("its text is not UTF-8")]
    NotUtf8,
    #[error("its text is not {0}")]
    Text(&'static str),
    #[error("its binary value is not {wanted}: {source}")]
    Binary {
        wanted: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("it is infinity or -infinity")]
    Infinite,
    #[error("it is outside the range of times this daemon holds")]
    OutOfRange,
}

/// The bytes of a datum with a value, None for Null.
enum Sent<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
}

fn sent(datum: &Datum) -> Result<Option<Sent<'_>>, ValueError> {
    match datum {
        Datum::Null => Ok(None),
        Datum::UnchangedToast => Err(ValueError::UnchangedToast),
        Datum::Text(b) => Ok(Some(Sent::Text(b))),
        Datum::Binary(b) => Ok(Some(Sent::Binary(b))),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, ValueError> {
    std::str::from_utf8(bytes).map_err(|_| ValueError::NotUtf8)
}

fn binary(
    wanted: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> ValueError {
    move |source| ValueError::Binary { wanted, source }
}

pub(super) fn i64(column: &RelationColumn, datum: &Datum) -> Result<Option<i64>, ValueError> {
    const WANTED: &str = "an integer";
    if !matches!(column.type_oid, INT2 | INT4 | INT8) {
        return Err(ValueError::Type {
            found: column.type_oid,
            wanted: "int2, int4 or int8",
        });
    }
    let Some(sent) = sent(datum)? else {
        return Ok(None);
    };
    let value = match sent {
        Sent::Text(b) => utf8(b)?
            .parse::<i64>()
            .map_err(|_| ValueError::Text(WANTED))?,
        Sent::Binary(b) => match column.type_oid {
            INT2 => types::int2_from_sql(b).map(i64::from),
            INT4 => types::int4_from_sql(b).map(i64::from),
            _ => types::int8_from_sql(b),
        }
        .map_err(binary(WANTED))?,
    };
    Ok(Some(value))
}

pub(super) fn text(datum: &Datum) -> Result<Option<&str>, ValueError> {
    match sent(datum)? {
        None => Ok(None),
        Some(Sent::Text(b) | Sent::Binary(b)) => utf8(b).map(Some),
    }
}

pub(super) fn bool(column: &RelationColumn, datum: &Datum) -> Result<Option<bool>, ValueError> {
    if column.type_oid != BOOL {
        return Err(ValueError::Type {
            found: column.type_oid,
            wanted: "bool",
        });
    }
    match sent(datum)? {
        None => Ok(None),
        Some(Sent::Text(b"t")) => Ok(Some(true)),
        Some(Sent::Text(b"f")) => Ok(Some(false)),
        Some(Sent::Text(_)) => Err(ValueError::Text("t or f")),
        Some(Sent::Binary(b)) => types::bool_from_sql(b).map(Some).map_err(binary("a bool")),
    }
}

pub(super) fn timestamp(
    column: &RelationColumn,
    datum: &Datum,
) -> Result<Option<DateTime<Utc>>, ValueError> {
    let with_zone = match column.type_oid {
        TIMESTAMPTZ => true,
        TIMESTAMP => false,
        found => {
            return Err(ValueError::Type {
                found,
                wanted: "timestamptz or timestamp",
            });
        }
    };
    match sent(datum)? {
        None => Ok(None),
        Some(Sent::Text(b)) => parse_iso(utf8(b)?, with_zone).map(Some),
        Some(Sent::Binary(b)) => {
            let micros = types::timestamp_from_sql(b).map_err(binary("a timestamp"))?;
            from_pg_micros(micros).map(Some)
        }
    }
}

fn from_pg_micros(micros: i64) -> Result<DateTime<Utc>, ValueError> {
    if micros == i64::MAX || micros == i64::MIN {
        return Err(ValueError::Infinite);
    }
    micros
        .checked_add(PG_EPOCH_OFFSET_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(ValueError::OutOfRange)
}

const NOT_ISO: ValueError =
    ValueError::Text("an ISO timestamp (the sender's DateStyle must be ISO)");

/// Postgres's ISO output: `2026-12-02 04:10:30.123456+05:30`, the offset
/// (`+hh`, `+hh:mm` or `+hh:mm:ss`) only with a zone, ` BC` for years
/// before 1.
fn parse_iso(text: &str, with_zone: bool) -> Result<DateTime<Utc>, ValueError> {
    if text == "infinity" || text == "-infinity" {
        return Err(ValueError::Infinite);
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let (date, time) = text.split_once(' ').ok_or(NOT_ISO)?;
    let (clock, offset_secs) = if with_zone {
        let at = time.rfind(['+', '-']).ok_or(NOT_ISO)?;
        let (clock, offset) = time.split_at_checked(at).ok_or(NOT_ISO)?;
        (clock, parse_offset(offset)?)
    } else {
        (time, 0)
    };
    let local = NaiveDateTime::new(parse_date(date, bc)?, parse_clock(clock)?);
    local
        .checked_sub_signed(TimeDelta::seconds(offset_secs))
        .map(|utc| utc.and_utc())
        .ok_or(ValueError::OutOfRange)
}

/// ASCII digits only (`str::parse` would take a sign), `min..=max` of them.
fn digits(text: &str, min: usize, max: usize) -> Result<u32, ValueError> {
    if text.len() < min || text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NOT_ISO);
    }
    text.parse().map_err(|_| NOT_ISO)
}

fn parse_date(date: &str, bc: bool) -> Result<NaiveDate, ValueError> {
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NOT_ISO);
    };
    let year = i32::try_from(digits(y, 4, 7)?).map_err(|_| NOT_ISO)?;
    // 1 BC is year 0.
    let year = if bc { 1 - year } else { year };
    NaiveDate::from_ymd_opt(year, digits(m, 2, 2)?, digits(d, 2, 2)?).ok_or(ValueError::OutOfRange)
}

fn parse_clock(clock: &str) -> Result<NaiveTime, ValueError> {
    let mut parts = clock.split(':');
    let (Some(h), Some(m), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NOT_ISO);
    };
    let (secs, micros) = match s.split_once('.') {
        Some((secs, fraction)) => {
            let value = digits(fraction, 1, 6)?;
            let scale = 10u32.pow(6 - u32::try_from(fraction.len()).map_err(|_| NOT_ISO)?);
            (secs, value * scale)
        }
        None => (s, 0),
    };
    NaiveTime::from_hms_micro_opt(
        digits(h, 2, 2)?,
        digits(m, 2, 2)?,
        digits(secs, 2, 2)?,
        micros,
    )
    .ok_or(NOT_ISO)
}

/// `+hh`, `+hh:mm` or `+hh:mm:ss` (or `-`), in seconds east of UTC.
fn parse_offset(offset: &str) -> Result<i64, ValueError> {
    let (sign, rest) = match offset.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(NOT_ISO),
    };
    let mut secs = 0i64;
    let mut unit = 3600;
    for part in rest.split(':') {
        if unit == 0 {
            return Err(NOT_ISO);
        }
        secs += i64::from(digits(part, 2, 2)?) * unit;
        unit /= 60;
    }
    Ok(sign * secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn iso_timestamps_with_any_offset() {
        let cases = [
            (
                "2026-12-02 04:10:30.123456+00",
                "2026-12-02T04:10:30.123456Z",
            ),
            (
                "2026-12-02 09:40:30.123456+05:30",
                "2026-12-02T04:10:30.123456Z",
            ),
            ("2026-12-02 00:40:30.1-03:30", "2026-12-02T04:10:30.1Z"),
            ("2026-12-02 04:10:30+00", "2026-12-02T04:10:30Z"),
            ("1890-01-01 00:53:28+00:53:28", "1890-01-01T00:00:00Z"),
            ("2026-12-02 04:10:30.5-00", "2026-12-02T04:10:30.5Z"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_iso(text, true).unwrap(), utc(want), "{text}");
        }
        assert_eq!(
            parse_iso("0044-03-15 12:00:00+00 BC", true)
                .unwrap()
                .to_rfc3339(),
            "-0043-03-15T12:00:00+00:00"
        );
        assert_eq!(
            parse_iso("2026-12-02 04:10:30", false).unwrap(),
            utc("2026-12-02T04:10:30Z")
        );
    }

    #[test]
    fn other_text_is_refused() {
        for text in [
            "infinity",
            "-infinity",
            "Wed Dec 02 04:10:30.123456 2026 UTC",
            "12/02/2026 04:10:30.123456 UTC",
            "02.12.2026 04:10:30.123456 UTC",
            "2026-12-02T04:10:30+00",
            "2026-12-02 04:10:30",
            "2026-12-02 04:10:30+0",
            "2026-12-02 04:10:30+00:00:00:00",
            "2026-12-02 04:10:30.1234567+00",
            "2026-13-02 04:10:30+00",
            "2026-12-02 +4:10:30+00",
            "",
            " ",
            "+",
            "2026-12-02 04:10:30+é",
        ] {
            assert!(parse_iso(text, true).is_err(), "{text}");
        }
        assert!(matches!(
            parse_iso("infinity", true),
            Err(ValueError::Infinite)
        ));
        assert!(parse_iso("2026-12-02 04:10:30+00", false).is_err());
    }

    #[test]
    fn binary_infinity_and_range() {
        assert!(matches!(
            from_pg_micros(i64::MAX),
            Err(ValueError::Infinite)
        ));
        assert!(matches!(
            from_pg_micros(i64::MIN),
            Err(ValueError::Infinite)
        ));
        assert!(matches!(
            from_pg_micros(i64::MAX - 1),
            Err(ValueError::OutOfRange)
        ));
        assert_eq!(from_pg_micros(0).unwrap(), utc("2000-01-01T00:00:00Z"));
    }
}
