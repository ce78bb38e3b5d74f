//! Values in Postgres' text forms: what psql shows and what `::text` gives. Used by the
//! wire encoder (text format) and by `pg_text`, which `::text` of a date/time value is
//! planned as in client queries (see `pg_values`).
//!
//! - floats: shortest round-trip digits, exponent form outside [1e-4, 1e15);
//! - `numeric`: with its scale;
//! - `timestamp`: `2026-01-01 10:00:00.25` (no `T`, trailing zeros of the fraction
//!   dropped); `timestamptz` in the session's time zone with its offset (`+00`,
//!   `+05:30`);
//! - `interval`: the `postgres` style, `1 year 2 mons 3 days 04:05:06.5`;
//! - `time`: `10:11:12.5`.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Float32Type, Float64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};

/// A session's time zone (`SET TIME ZONE`): UTC, a fixed offset, or an IANA zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Zone {
    Utc,
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// A zone as `SET TIME ZONE` takes it: `UTC`, an IANA name (`Europe/Paris`), an
    /// offset in hours (`2`, `-3.5`) or `+05:30`. Like Postgres, a POSIX-style `UTC+2`
    /// is not taken (its sign is backwards).
    pub fn parse(s: &str) -> Option<Zone> {
        let t = s.trim();
        if t.is_empty() {
            return None;
        }
        let upper = t.to_ascii_uppercase();
        if matches!(
            upper.as_str(),
            "UTC" | "GMT" | "Z" | "ZULU" | "UCT" | "UNIVERSAL" | "ETC/UTC" | "ETC/GMT"
        ) {
            return Some(Zone::Utc);
        }
        if let Ok(hours) = t.parse::<f64>() {
            let secs = (hours * 3600.0).round();
            if secs.abs() > 15.0 * 3600.0 {
                return None;
            }
            return fixed(secs as i32);
        }
        if let Some(rest) = t.strip_prefix('+').or_else(|| t.strip_prefix('-')) {
            let sign = if t.starts_with('-') { -1 } else { 1 };
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            let (h, m) = (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?);
            if h > 15 || m >= 60 {
                return None;
            }
            return fixed(sign * (h * 3600 + m * 60));
        }
        t.parse::<chrono_tz::Tz>()
            .ok()
            .or_else(|| {
                // Postgres' zone names are case-insensitive.
                chrono_tz::TZ_VARIANTS
                    .iter()
                    .find(|z| z.name().eq_ignore_ascii_case(t))
                    .copied()
            })
            .map(Zone::Named)
    }

    /// A zone as `SET TIME ZONE` (and a driver's `TimeZone` at startup) takes it, as
    /// Postgres reads it: a number is hours east (`5`, `'-3.5'`); a signed offset or
    /// `UTC`/`GMT` with one is POSIX, hours *west* (`'+05:30'` is 5½ hours west,
    /// `'GMT-05:30'`, which pgjdbc sends for a JVM at +05:30, east); else as [`Zone::parse`].
    pub fn from_setting(s: &str) -> Option<Zone> {
        let t = s.trim();
        if t.parse::<f64>().is_ok() {
            return Zone::parse(t);
        }
        let upper = t.to_ascii_uppercase();
        let posix = ["UTC", "GMT", ""].iter().find_map(|prefix| {
            let rest = upper.strip_prefix(prefix)?;
            rest.starts_with(['+', '-']).then_some(rest)
        });
        match posix {
            Some(offset) => match Zone::parse(offset)? {
                Zone::Fixed(o) => fixed(-o.local_minus_utc()),
                other => Some(other),
            },
            None => Zone::parse(t),
        }
    }

    /// The name `SHOW TIME ZONE` gives back.
    pub fn name(&self) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Fixed(o) => {
                // Postgres shows a numeric zone as `<+02>-02`; the offset is clearer.
                offset_text(o.local_minus_utc())
            }
            Zone::Named(z) => z.name().into(),
        }
    }

    /// The zone as an Arrow timestamp type names it (`America/New_York`, `+05:30`);
    /// `None` for UTC.
    pub fn arrow_tz(&self) -> Option<std::sync::Arc<str>> {
        match self {
            Zone::Utc => None,
            Zone::Fixed(o) => {
                let secs = o.local_minus_utc();
                let sign = if secs < 0 { '-' } else { '+' };
                let minutes = secs.unsigned_abs() / 60;
                Some(format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60).into())
            }
            Zone::Named(z) => Some(z.name().into()),
        }
    }

    /// The zone's abbreviation at the instant `utc` (`EST`, `CEST`; its offset where
    /// it has none, as `+05:30`), as `to_char`'s `TZ` shows it.
    pub fn abbreviation_at(&self, utc: &NaiveDateTime) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Fixed(o) => offset_text(o.local_minus_utc()),
            Zone::Named(z) => {
                use chrono_tz::OffsetName;
                let offset = z.offset_from_utc_datetime(utc);
                match offset.abbreviation() {
                    Some(a) if !a.starts_with(['+', '-']) => a.to_string(),
                    _ => offset_text(offset.fix().local_minus_utc()),
                }
            }
        }
    }

    /// The offset from UTC at the instant `utc`, in seconds.
    pub fn offset_at(&self, utc: &NaiveDateTime) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Fixed(o) => o.local_minus_utc(),
            Zone::Named(z) => z.offset_from_utc_datetime(utc).fix().local_minus_utc(),
        }
    }
}

fn fixed(secs: i32) -> Option<Zone> {
    if secs == 0 {
        return Some(Zone::Utc);
    }
    FixedOffset::east_opt(secs).map(Zone::Fixed)
}

/// `+00`, `+05:30`, `-03`: an offset as Postgres prints it after a `timestamptz`.
fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, (a / 60) % 60, a % 60);
    match (m, s) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

/// Postgres' float output: shortest round-trip digits, exponent form outside
/// [1e-4, 1e15) (1e6 for real).
pub fn float(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    let upper = if single { 1e6 } else { 1e15 };
    let body = if single {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    };
    if a != 0.0 && !(1e-4..upper).contains(&a) {
        let s = if single {
            format!("{:e}", v as f32)
        } else {
            format!("{v:e}")
        };
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        body
    }
}

/// A `numeric` from its unscaled value and scale.
pub fn decimal(v: i128, scale: i8) -> String {
    if let Some(s) = freshet_engine::numeric_special::Special::of(v) {
        return s.text().into();
    }
    if scale <= 0 {
        let mut s = v.to_string();
        for _ in 0..(-scale) {
            s.push('0');
        }
        return s;
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let (int, frac) = if digits.len() > scale {
        let (a, b) = digits.split_at(digits.len() - scale);
        (a.to_string(), b.to_string())
    } else {
        ("0".to_string(), format!("{digits:0>scale$}"))
    };
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

/// `.25` for 250000 µs (nothing for 0).
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let f = format!(".{micros:06}");
    f.trim_end_matches('0').to_string()
}

/// The calendar part of a date as Postgres writes it: year 0 is `0001` (followed by
/// ` BC`, see [`era`]), and a year past 9999 has no sign (chrono writes `+10000`).
fn calendar(d: &chrono::NaiveDate) -> String {
    use chrono::Datelike;
    let year = if d.year() <= 0 {
        1 - d.year()
    } else {
        d.year()
    };
    format!("{year:04}-{:02}-{:02}", d.month(), d.day())
}

/// ` BC` after a date or timestamp before year 1, as Postgres writes it.
fn era(d: &chrono::NaiveDate) -> &'static str {
    use chrono::Datelike;
    if d.year() <= 0 {
        " BC"
    } else {
        ""
    }
}

/// A `date` as Postgres writes it (`2024-01-05`, `0001-05-01 BC`).
pub fn date(d: &chrono::NaiveDate) -> String {
    format!("{}{}", calendar(d), era(d))
}

/// The date and time of `t`, without the era.
fn date_time(t: &NaiveDateTime) -> String {
    let mut s = format!("{} {}", calendar(&t.date()), t.format("%H:%M:%S"));
    s.push_str(&fraction(t.and_utc().timestamp_subsec_micros()));
    s
}

pub fn timestamp(t: &NaiveDateTime) -> String {
    format!("{}{}", date_time(t), era(&t.date()))
}

/// A `timestamptz` in `zone`, with the offset there.
pub fn timestamptz(utc: &DateTime<Utc>, zone: &Zone) -> String {
    let naive = utc.naive_utc();
    let offset = zone.offset_at(&naive);
    let local = naive + chrono::Duration::seconds(offset as i64);
    format!(
        "{}{}{}",
        date_time(&local),
        offset_text(offset),
        era(&local.date())
    )
}

/// Postgres' `postgres`-style interval output, e.g. `1 year 2 mons 3 days 04:05:06`.
pub fn interval(months: i32, days: i32, micros: i64) -> String {
    // Postgres' `EncodeInterval` (IntervalStyle postgres): a part after a negative one
    // shows its `+`, and only exactly one of a unit is singular (`-1 days`).
    let mut parts = Vec::new();
    let mut after_negative = false;
    let mut part = |n: i64, unit: &str, parts: &mut Vec<String>| {
        if n == 0 {
            return;
        }
        let plus = if after_negative && n > 0 { "+" } else { "" };
        let s = if n == 1 { "" } else { "s" };
        parts.push(format!("{plus}{n} {unit}{s}"));
        after_negative = n < 0;
    };
    let (years, mons) = (months / 12, months % 12);
    part(years as i64, "year", &mut parts);
    part(mons as i64, "mon", &mut parts);
    part(days as i64, "day", &mut parts);
    if micros != 0 || parts.is_empty() {
        let neg = micros < 0;
        let m = micros.unsigned_abs();
        let secs = m / 1_000_000;
        let sign = if neg {
            "-"
        } else if after_negative {
            "+"
        } else {
            ""
        };
        let mut t = format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        t.push_str(&fraction((m % 1_000_000) as u32));
        parts.push(t);
    }
    parts.join(" ")
}

/// A duration (the difference of two timestamps) as the interval Postgres gives for it:
/// whole days apart, the rest as time.
pub fn duration_parts(micros: i64) -> (i32, i32, i64) {
    const DAY: i64 = 86_400_000_000;
    let days = micros / DAY;
    (0, days as i32, micros - days * DAY)
}

/// A `time` from microseconds since midnight.
pub fn time(micros: i64) -> String {
    let m = micros.rem_euclid(86_400_000_000) as u64;
    let secs = m / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}{}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        fraction((m % 1_000_000) as u32)
    )
}

/// Microseconds from a value in `unit`.
pub fn to_micros(v: i64, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    }
}

/// A date/time instant from a value in `unit` since the epoch.
pub fn datetime(v: i64, unit: &TimeUnit) -> Option<NaiveDateTime> {
    let (secs, nanos) = match unit {
        TimeUnit::Second => (v, 0),
        TimeUnit::Millisecond => (v.div_euclid(1_000), v.rem_euclid(1_000) * 1_000_000),
        TimeUnit::Microsecond => (v.div_euclid(1_000_000), v.rem_euclid(1_000_000) * 1_000),
        TimeUnit::Nanosecond => (v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000)),
    };
    DateTime::from_timestamp(secs, nanos as u32).map(|d| d.naive_utc())
}

/// Whether `dt` is a date/time type [`temporal`] formats.
/// Whether Postgres's text form of `dt` differs from DataFusion's cast to text: dates,
/// times, intervals, floats (`100` not `100.0`, `1e+20` not `1e20`), structs (`(1,a)`) and arrays (`{1,NULL}`
/// not `[1, ]`).
pub fn has_own_text(dt: &DataType) -> bool {
    is_temporal(dt)
        || matches!(
            dt,
            DataType::Float32
                | DataType::Float64
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::Struct(_)
        )
}

/// A one-dimensional array's text as Postgres writes it: `{1,NULL,"a b"}`.
pub fn array_text(values: &ArrayRef, zone: &Zone) -> String {
    let formatter = formatter(values);
    let items: Vec<String> = (0..values.len())
        .map(|i| {
            if values.is_null(i) {
                return "NULL".to_string();
            }
            let text = value_text(values, i, zone, formatter.as_ref());
            // A nested array is written as it is, braces and all.
            match values.data_type() {
                DataType::List(_) | DataType::LargeList(_) => text,
                _ => array_element(text),
            }
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// A struct's text as Postgres writes a record: `(1,,"a b")` (a NULL field is empty).
pub fn record_text(array: &ArrayRef, row: usize, zone: &Zone) -> String {
    let s = array.as_struct();
    let fields: Vec<String> = s
        .columns()
        .iter()
        .map(|col| {
            if col.is_null(row) {
                return String::new();
            }
            record_field(value_text(col, row, zone, formatter(col).as_ref()))
        })
        .collect();
    format!("({})", fields.join(","))
}

fn formatter(values: &ArrayRef) -> Option<datafusion::arrow::util::display::ArrayFormatter<'_>> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default().with_null("");
    ArrayFormatter::try_new(values.as_ref(), &opts).ok()
}

/// Value `i` (not NULL) of `values` as Postgres writes it, unquoted.
fn value_text(
    values: &ArrayRef,
    i: usize,
    zone: &Zone,
    formatter: Option<&datafusion::arrow::util::display::ArrayFormatter<'_>>,
) -> String {
    match values.data_type() {
        DataType::Boolean => (if values.as_boolean().value(i) {
            "t"
        } else {
            "f"
        })
        .to_string(),
        dt if has_own_text(dt) => temporal(values, i, zone).unwrap_or_default(),
        DataType::Decimal128(_, scale) => decimal(
            values
                .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
                .value(i),
            *scale,
        ),
        _ => formatter
            .map(|f| f.value(i).to_string())
            .unwrap_or_default(),
    }
}

/// An array element's text, quoted when it is empty, reads as NULL, or holds a character
/// that separates or quotes.
pub fn array_element(s: String) -> String {
    let plain = !s.is_empty()
        && !s.eq_ignore_ascii_case("null")
        && !s
            .chars()
            .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
    if plain {
        s
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A record field in Postgres' text form (`record_out`): quoted when empty or holding a
/// character that separates or quotes, with `"` and `\` doubled inside the quotes.
pub fn record_field(s: String) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, ',' | '(' | ')' | '"' | '\\') || c.is_whitespace());
    if plain {
        s
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\"\""))
    }
}

pub fn is_temporal(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Interval(_)
            | DataType::Duration(_)
    )
}

/// The text of a date/time value at `row` (`None` for NULL or another type).
/// Row `row` of a timestamp array of `unit`, in that unit since the epoch.
pub fn timestamp_value(array: &ArrayRef, row: usize, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
    }
}

pub fn temporal(array: &ArrayRef, row: usize, zone: &Zone) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row), false),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(row) as f64, true),
        DataType::Timestamp(unit, tz) => {
            let t = datetime(timestamp_value(array, row, unit), unit)?;
            match tz {
                None => timestamp(&t),
                Some(_) => timestamptz(&t.and_utc(), zone),
            }
        }
        DataType::Date32 => {
            let d = array.as_primitive::<Date32Type>().value(row);
            date(&chrono::NaiveDate::from_num_days_from_ce_opt(
                d.checked_add(719_163)?,
            )?)
        }
        DataType::Date64 => {
            let ms = array.as_primitive::<Date64Type>().value(row);
            date(&datetime(ms, &TimeUnit::Millisecond)?.date())
        }
        DataType::Time32(TimeUnit::Second) => {
            time(array.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000)
        }
        DataType::Time32(_) => {
            time(array.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1_000)
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            time(array.as_primitive::<Time64NanosecondType>().value(row) / 1_000)
        }
        DataType::Time64(_) => time(array.as_primitive::<Time64MicrosecondType>().value(row)),
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            interval(v.months, v.days, v.nanoseconds / 1_000)
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            interval(0, v.days, v.milliseconds as i64 * 1_000)
        }
        DataType::Interval(IntervalUnit::YearMonth) => interval(
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        DataType::List(_) => array_text(&array.as_list::<i32>().value(row), zone),
        DataType::LargeList(_) => array_text(&array.as_list::<i64>().value(row), zone),
        DataType::Struct(_) => record_text(array, row, zone),
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<DurationSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<DurationNanosecondType>().value(row),
            };
            let (m, d, us) = duration_parts(to_micros(v, unit));
            interval(m, d, us)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_like_postgres() {
        use datafusion::arrow::array::{ListArray, StringArray};
        use datafusion::arrow::datatypes::Int32Type;
        let ints: ArrayRef =
            std::sync::Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1), None, Some(-3)]),
            ]));
        assert_eq!(
            temporal(&ints, 0, &Zone::Utc).as_deref(),
            Some("{1,NULL,-3}")
        );
        let texts: ArrayRef = std::sync::Arc::new(StringArray::from(vec![
            Some("a b"),
            Some(""),
            Some("NULL"),
            Some("q\"x"),
            None,
            Some("plain"),
        ]));
        assert_eq!(
            array_text(&texts, &Zone::Utc),
            r#"{"a b","","NULL","q\"x",NULL,plain}"#
        );
    }

    #[test]
    fn floats_like_postgres() {
        assert_eq!(float(1.5, false), "1.5");
        assert_eq!(float(3.0, false), "3");
        assert_eq!(float(1e20, false), "1e+20");
        assert_eq!(float(0.1, false), "0.1");
        assert_eq!(float(1.0 / 3.0, false), "0.3333333333333333");
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(decimal(1250, 2), "12.50");
        assert_eq!(decimal(-5, 2), "-0.05");
        assert_eq!(decimal(7, 0), "7");
    }

    #[test]
    fn intervals_like_postgres() {
        assert_eq!(
            interval(14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_000_000),
            "1 year 2 mons 3 days 04:05:06"
        );
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(interval(0, 1, 0), "1 day");
        assert_eq!(interval(0, 0, 5_400_000_000), "01:30:00");
        assert_eq!(interval(0, 0, 114_500_000), "00:01:54.5");
        let (m, d, us) = duration_parts(26 * 3_600_000_000);
        assert_eq!(interval(m, d, us), "1 day 02:00:00");
    }

    #[test]
    fn times_and_zones() {
        assert_eq!(time(36_672_500_000), "10:11:12.5");
        let t = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_micro_opt(10, 0, 0, 250_000))
            .expect("date");
        assert_eq!(timestamp(&t), "2026-01-01 10:00:00.25");
        let utc = t.and_utc();
        assert_eq!(timestamptz(&utc, &Zone::Utc), "2026-01-01 10:00:00.25+00");
        let paris = Zone::parse("Europe/Paris").expect("zone");
        assert_eq!(timestamptz(&utc, &paris), "2026-01-01 11:00:00.25+01");
        let kolkata = Zone::parse("asia/kolkata").expect("zone");
        assert_eq!(timestamptz(&utc, &kolkata), "2026-01-01 15:30:00.25+05:30");
        assert_eq!(
            timestamptz(&utc, &Zone::parse("-3").expect("zone")),
            "2026-01-01 07:00:00.25-03"
        );
        assert_eq!(
            Zone::parse("+05:30").map(|z| z.name()).as_deref(),
            Some("+05:30")
        );
        assert!(Zone::parse("Mars/Olympus").is_none());
        // SET TIME ZONE reads signed offsets as POSIX does, numbers as hours east.
        let setting = |s: &str| Zone::from_setting(s).map(|z| z.name());
        assert_eq!(setting("+05:30").as_deref(), Some("-05:30"));
        assert_eq!(setting("GMT-05:30").as_deref(), Some("+05:30"));
        assert_eq!(setting("UTC+2").as_deref(), Some("-02"));
        assert_eq!(setting("5").as_deref(), Some("+05"));
        assert_eq!(setting("-3").as_deref(), Some("-03"));
        assert_eq!(setting("Europe/Paris").as_deref(), Some("Europe/Paris"));
        assert_eq!(setting("utc").as_deref(), Some("UTC"));
    }
}
