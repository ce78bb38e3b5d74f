//! `to_char(timestamp | timestamptz | date, format)` with Postgres' template patterns
//! (`YYYY-MM-DD HH24:MI:SS`, `Mon`, `FMDay`, `Q`, `IW`, `"quoted"` text …).
//!
//! DataFusion's `to_char` reads a chrono `strftime` format (`%Y-%m`), so a Postgres
//! pattern came back unchanged: `to_char(ts, 'YYYY-MM')` was `YYYY-MM` for every row, and
//! a `GROUP BY` over it made one group. This function formats dates and timestamps as
//! Postgres does; other arguments (intervals, numbers) go to DataFusion's. A
//! `timestamptz` is formatted in the zone its type names: UTC, or the session's
//! (`crate::session_zone`). From dialect level 6 on (`crate::dialect`): a view
//! from before keeps the values its rows were stored with. From level 9 on the era
//! (`AD`, `B.C.` …) and the Roman month (`RM`) are written, and a year before 1 AD is
//! written as Postgres writes it (`0044` with `BC`; before, `YYYY AD` wrote `2024 A2`
//! and 44 BC's `YYYY` was `-0043`).

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::dialect::Wrapped;
use crate::pg_text::Zone;

/// Replaces `ctx`'s `to_char` (see the module).
pub fn register(ctx: &SessionContext) {
    if let Some(to_char) = Wrapped::new(ctx, "to_char", 6) {
        ctx.register_udf(ScalarUDF::new_from_impl(PgToChar {
            signature: Signature::user_defined(Volatility::Immutable),
            to_char,
        }));
    }
}

/// From dialect level 6 on (`crate::dialect`): a view from before keeps the values its
/// rows were stored with.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgToChar {
    signature: Signature,
    to_char: Wrapped,
}

impl PgToChar {
    fn postgres(&self) -> bool {
        self.to_char.on()
    }

    /// Level 9: eras, Roman months and years before 1 AD (see the module).
    fn eras(&self) -> bool {
        self.to_char.level() >= 9
    }
}

fn is_datetime(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
    )
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        self.to_char.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.to_char.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t, f] if self.postgres() && is_datetime(t) && (is_text(f) || f.is_null()) => {
                Ok(vec![t.clone(), DataType::Utf8])
            }
            _ => crate::dialect::coerce_as(&self.to_char.inner, arg_types),
        }
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t) if self.postgres() && is_datetime(t) => Ok(DataType::Utf8),
            _ => self.to_char.inner.return_type(arg_types),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let first = args.args.first().map(ColumnarValue::data_type);
        if !self.postgres() || !first.as_ref().is_some_and(is_datetime) {
            return self.to_char.inner.invoke_with_args(args);
        }
        let [value, format] = args.args.as_slice() else {
            return Err(DataFusionError::Plan("to_char takes two arguments".into()));
        };
        // A timestamptz is shown in the zone its type names (UTC, or the session's:
        // `crate::session_zone`).
        let zone = match &first {
            Some(DataType::Timestamp(_, Some(tz))) => Some(Zone::parse(tz).unwrap_or(Zone::Utc)),
            _ => None,
        };
        let n = args.number_rows;
        let micros = |v: &ColumnarValue| -> Result<ArrayRef> {
            let a = v.to_array(n)?;
            let a = if matches!(a.data_type(), DataType::Date32 | DataType::Date64) {
                datafusion::arrow::compute::cast(
                    &a,
                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                )?
            } else {
                a
            };
            Ok(datafusion::arrow::compute::cast(
                &a,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?)
        };
        let values = micros(value)?;
        let values = values.as_primitive::<TimestampMicrosecondType>();
        let formats = datafusion::arrow::compute::cast(&format.to_array(n)?, &DataType::Utf8)?;
        let formats = formats.as_string::<i32>();
        let eras = self.eras();
        // The format is usually one constant: parsed once.
        let constant = match format {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(f))) => Some(parse(f, eras)),
            _ => None,
        };
        let mut out = StringBuilder::new();
        for i in 0..n {
            if values.is_null(i) || formats.is_null(i) {
                out.append_null();
                continue;
            }
            let Some(t) = DateTime::from_timestamp_micros(values.value(i)) else {
                out.append_null();
                continue;
            };
            let owned;
            let tokens = match &constant {
                Some(t) => t,
                None => {
                    owned = parse(formats.value(i), eras);
                    &owned
                }
            };
            let utc = t.naive_utc();
            match &zone {
                Some(z) => {
                    let shown = Shown::at(z, &utc);
                    // At the end of chrono's range the local time may not exist: NULL.
                    match utc.checked_add_signed(chrono::Duration::seconds(i64::from(shown.offset)))
                    {
                        Some(local) => out.append_value(render(tokens, &local, Some(&shown), eras)),
                        None => out.append_null(),
                    }
                }
                None => out.append_value(render(tokens, &utc, None, eras)),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(match (value, format) {
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            }
            _ => ColumnarValue::Array(array),
        })
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Text(String),
    /// A pattern, with `FM` (no padding) and a `TH`/`th` ordinal suffix.
    Field {
        pattern: &'static str,
        fill: bool,
        ordinal: Option<bool>,
    },
}

/// The patterns whose case tells how a name is written, matched exactly.
const NAMES: &[&str] = &[
    "A.M.", "a.m.", "P.M.", "p.m.", "AM", "am", "PM", "pm", "MONTH", "Month", "month", "MON",
    "Mon", "mon", "DAY", "Day", "day", "DY", "Dy", "dy", "TZH", "TZM", "TZ", "tz", "OF",
];

/// The numeric patterns, matched in any case (`yyyy-mm-dd`), longest first where one is
/// a prefix of another.
const NUMBERS: &[&str] = &[
    "HH24", "HH12", "SSSSS", "SSSS", "Y,YYY", "YYYY", "IYYY", "IDDD", "FF1", "FF2", "FF3", "FF4",
    "FF5", "FF6", "YYY", "IYY", "DDD", "HH", "MI", "SS", "MS", "US", "YY", "IY", "ID", "IW", "MM",
    "DD", "WW", "CC", "Y", "I", "D", "W", "J", "Q",
];

/// The pattern `body` starts with, and its length.
pub(crate) fn pattern_at(body: &str) -> Option<&'static str> {
    if let Some(p) = NAMES.iter().find(|p| body.starts_with(**p)) {
        return Some(p);
    }
    NUMBERS.iter().copied().find(|p| {
        body.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    })
}

/// The era and the month in Roman numerals, matched exactly as written: read by
/// `to_date` (`crate::pg_to_date`) and, from dialect level 9 on, written by `to_char`.
pub(crate) const ERAS: &[&str] = &[
    "A.D.", "a.d.", "B.C.", "b.c.", "AD", "ad", "BC", "bc", "RM", "rm",
];

/// The era or Roman-month pattern `body` starts with.
pub(crate) fn era_at(body: &str) -> Option<&'static str> {
    ERAS.iter().copied().find(|p| body.starts_with(p))
}

/// `format` read as Postgres reads a template; `eras`: with the patterns of [`ERAS`].
fn parse(format: &str, eras: bool) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    let flush = |text: &mut String, tokens: &mut Vec<Token>| {
        if !text.is_empty() {
            tokens.push(Token::Text(std::mem::take(text)));
        }
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            // Quoted text is copied; `\"` inside it is a quote.
            let mut chars = r.char_indices();
            let mut end = r.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, c)) = chars.next() {
                            text.push(c);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => text.push(c),
                }
            }
            rest = &r[end.min(r.len())..];
            continue;
        }
        if let Some(r) = rest.strip_prefix('\\') {
            let mut chars = r.chars();
            if let Some(c) = chars.next() {
                text.push(c);
            }
            rest = chars.as_str();
            continue;
        }
        let (fill, body) = match rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            Some(b) => (true, b),
            None => (false, rest),
        };
        if let Some(p) = pattern_at(body).or_else(|| era_at(body).filter(|_| eras)) {
            flush(&mut text, &mut tokens);
            let mut after = &body[p.len()..];
            let ordinal = if let Some(a) = after.strip_prefix("TH") {
                after = a;
                Some(true)
            } else if let Some(a) = after.strip_prefix("th") {
                after = a;
                Some(false)
            } else {
                None
            };
            tokens.push(Token::Field {
                pattern: p,
                fill,
                ordinal,
            });
            rest = after;
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            text.push(c);
        }
        rest = chars.as_str();
    }
    flush(&mut text, &mut tokens);
    tokens
}

pub(crate) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
pub(crate) const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// `n` zero-padded to `width` digits (none with `fill`), a minus sign before.
fn number(n: i64, width: usize, fill: bool) -> String {
    if fill {
        n.to_string()
    } else if n < 0 {
        format!("-{:0width$}", -n, width = width)
    } else {
        format!("{n:0width$}")
    }
}

/// `name` in the case the pattern asks for, blank-padded to 9 unless `fill`.
fn name(name: &str, pattern: &str, fill: bool, pad: bool) -> String {
    let upper = pattern.chars().all(|c| c.is_ascii_uppercase());
    let lower = pattern.chars().all(|c| c.is_ascii_lowercase());
    let s = if upper {
        name.to_uppercase()
    } else if lower {
        name.to_lowercase()
    } else {
        name.to_string()
    };
    if pad && !fill {
        format!("{s:<9}")
    } else {
        s
    }
}

fn suffix(n: i64, upper: bool) -> &'static str {
    let s = match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    };
    match (upper, s) {
        (false, s) => s,
        (true, "st") => "ST",
        (true, "nd") => "ND",
        (true, "rd") => "RD",
        (true, _) => "TH",
    }
}

/// The zone a `timestamptz` is shown in, at one instant.
struct Shown {
    /// `TZ`'s abbreviation (`EST`, `UTC`).
    abbreviation: String,
    /// Seconds east of UTC.
    offset: i32,
}

impl Shown {
    fn at(zone: &Zone, utc: &NaiveDateTime) -> Shown {
        Shown {
            abbreviation: zone.abbreviation_at(utc),
            offset: zone.offset_at(utc),
        }
    }
    /// `TZH`: the signed hours.
    fn hours(&self) -> String {
        let sign = if self.offset < 0 { '-' } else { '+' };
        format!("{sign}{:02}", self.offset.unsigned_abs() / 3600)
    }
    /// `TZM`: the minutes.
    fn minutes(&self) -> String {
        format!("{:02}", (self.offset.unsigned_abs() / 60) % 60)
    }
    /// `OF`: the hours, and the minutes if there are any.
    fn offset(&self) -> String {
        match self.offset.unsigned_abs() / 60 % 60 {
            0 => self.hours(),
            _ => format!("{}:{}", self.hours(), self.minutes()),
        }
    }
}

/// The Roman numerals of the months.
const ROMAN_MONTHS: [&str; 12] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
];

/// `t` formatted by `tokens`; `zone`: of a `timestamptz`, `t` being its wall-clock time
/// there; `eras`: years before 1 AD written as Postgres writes them (level 9).
fn render(tokens: &[Token], t: &NaiveDateTime, zone: Option<&Shown>, eras: bool) -> String {
    let mut out = String::new();
    for token in tokens {
        let (pattern, fill, ordinal) = match token {
            Token::Text(s) => {
                out.push_str(s);
                continue;
            }
            Token::Field {
                pattern,
                fill,
                ordinal,
            } => (*pattern, *fill, *ordinal),
        };
        // chrono counts 1 BC as year 0; Postgres writes the year of its era (`0044`
        // with `BC`), as its ADJUST_YEAR does.
        let era_year = |y: i64| if eras && y <= 0 { 1 - y } else { y };
        let astronomical = i64::from(t.year());
        let year = era_year(astronomical);
        let iso_year = era_year(i64::from(t.iso_week().year()));
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => h,
        };
        let pm = t.hour() >= 12;
        let iso = t.iso_week();
        let micros = i64::from(t.nanosecond() / 1000);
        let (value, width): (Option<i64>, usize) = match pattern {
            "HH24" => (Some(i64::from(t.hour())), 2),
            "HH12" | "HH" => (Some(i64::from(hour12)), 2),
            "MI" => (Some(i64::from(t.minute())), 2),
            "SS" => (Some(i64::from(t.second())), 2),
            "SSSS" | "SSSSS" => (Some(i64::from(t.num_seconds_from_midnight())), 0),
            "MS" => (Some(micros / 1000), 3),
            "US" => (Some(micros), 6),
            "FF1" => (Some(micros / 100_000), 1),
            "FF2" => (Some(micros / 10_000), 2),
            "FF3" => (Some(micros / 1000), 3),
            "FF4" => (Some(micros / 100), 4),
            "FF5" => (Some(micros / 10), 5),
            "FF6" => (Some(micros), 6),
            "YYYY" => (Some(year), 4),
            "YYY" => (Some(year.rem_euclid(1000)), 3),
            "YY" => (Some(year.rem_euclid(100)), 2),
            "Y" => (Some(year.rem_euclid(10)), 1),
            "IYYY" => (Some(iso_year), 4),
            "IYY" => (Some(iso_year.rem_euclid(1000)), 3),
            "IY" => (Some(iso_year.rem_euclid(100)), 2),
            "I" => (Some(iso_year.rem_euclid(10)), 1),
            "IW" => (Some(i64::from(iso.week())), 2),
            "ID" => (Some(i64::from(t.weekday().number_from_monday())), 1),
            "IDDD" => {
                let days =
                    i64::from(iso.week() - 1) * 7 + i64::from(t.weekday().number_from_monday());
                (Some(days), 3)
            }
            "MM" => (Some(i64::from(t.month())), 2),
            "DDD" => (Some(i64::from(t.ordinal())), 3),
            "DD" => (Some(i64::from(t.day())), 2),
            "D" => (Some(i64::from(t.weekday().number_from_sunday())), 1),
            "WW" => (Some(i64::from((t.ordinal() - 1) / 7 + 1)), 2),
            "W" => (Some(i64::from((t.day() - 1) / 7 + 1)), 1),
            "Q" => (Some(i64::from((t.month() - 1) / 3 + 1)), 1),
            "CC" => {
                let year = astronomical;
                let cc = if year > 0 {
                    (year + 99) / 100
                } else if eras {
                    // Postgres: 1 BC (year 0) to 100 BC are century -1.
                    year / 100 - 1
                } else {
                    -((99 - year) / 100)
                };
                (Some(cc), 2)
            }
            "J" => (Some(i64::from(t.num_days_from_ce()) + 1_721_425), 0),
            _ => (None, 0),
        };
        if let Some(v) = value {
            out.push_str(&number(v, width, fill));
            if let Some(upper) = ordinal {
                out.push_str(suffix(v, upper));
            }
            continue;
        }
        let month = MONTHS[t.month0() as usize];
        let day = DAYS[t.weekday().num_days_from_sunday() as usize];
        match pattern {
            "Y,YYY" => out.push_str(&format!("{},{:03}", year / 1000, year.rem_euclid(1000))),
            "MONTH" | "Month" | "month" => out.push_str(&name(month, pattern, fill, true)),
            "MON" | "Mon" | "mon" => out.push_str(&name(&month[..3], pattern, fill, false)),
            "DAY" | "Day" | "day" => out.push_str(&name(day, pattern, fill, true)),
            "DY" | "Dy" | "dy" => out.push_str(&name(&day[..3], pattern, fill, false)),
            "AM" | "PM" => out.push_str(if pm { "PM" } else { "AM" }),
            "am" | "pm" => out.push_str(if pm { "pm" } else { "am" }),
            "A.M." | "P.M." => out.push_str(if pm { "P.M." } else { "A.M." }),
            "a.m." | "p.m." => out.push_str(if pm { "p.m." } else { "a.m." }),
            "AD" | "BC" => out.push_str(if astronomical <= 0 { "BC" } else { "AD" }),
            "ad" | "bc" => out.push_str(if astronomical <= 0 { "bc" } else { "ad" }),
            "A.D." | "B.C." => out.push_str(if astronomical <= 0 { "B.C." } else { "A.D." }),
            "a.d." | "b.c." => out.push_str(if astronomical <= 0 { "b.c." } else { "a.d." }),
            "RM" | "rm" => {
                let roman = ROMAN_MONTHS[t.month0() as usize];
                let roman = if pattern == "rm" {
                    roman.to_lowercase()
                } else {
                    roman.to_string()
                };
                match fill {
                    true => out.push_str(&roman),
                    false => out.push_str(&format!("{roman:<4}")),
                }
            }
            "TZ" => out.push_str(zone.map_or("", |z| &z.abbreviation)),
            "tz" => out.push_str(&zone.map_or(String::new(), |z| z.abbreviation.to_lowercase())),
            "OF" => out.push_str(&zone.map_or(String::new(), Shown::offset)),
            "TZH" => out.push_str(&zone.map_or(String::new(), Shown::hours)),
            "TZM" => out.push_str(&zone.map_or(String::new(), Shown::minutes)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: &str, ts: &str) -> String {
        let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        render(&parse(f, true), &t, None, true)
    }

    #[test]
    fn formats_as_postgres() {
        let ts = "2024-02-29 13:45:30.123456";
        assert_eq!(fmt("YYYY-MM-DD HH24:MI:SS", ts), "2024-02-29 13:45:30");
        assert_eq!(fmt("YYYY-MM", ts), "2024-02");
        assert_eq!(fmt("HH12:MI AM", ts), "01:45 PM");
        assert_eq!(fmt("Month", ts), "February ");
        assert_eq!(fmt("FMMonth DDth, YYYY", ts), "February 29th, 2024");
        assert_eq!(fmt("Dy Mon DD", ts), "Thu Feb 29");
        assert_eq!(fmt("DAY", ts), "THURSDAY ");
        assert_eq!(fmt("\"Q\"Q YYYY", ts), "Q1 2024");
        assert_eq!(fmt("IYYY-\"W\"IW-ID", ts), "2024-W09-4");
        assert_eq!(fmt("MS US", ts), "123 123456");
        assert_eq!(fmt("DDD D WW W CC", ts), "060 5 09 5 21");
        assert_eq!(fmt("FMDD/FMMM", "2024-03-05 00:00:00"), "5/3");
        assert_eq!(fmt("HH:MI a.m.", "2024-03-05 00:07:00"), "12:07 a.m.");
        assert_eq!(fmt("J", "2024-01-01 00:00:00"), "2460311");
        assert_eq!(fmt("yyyy-mm-dd hh24:mi:ss", ts), "2024-02-29 13:45:30");
        assert_eq!(fmt("mon dy", ts), "feb thu");
    }

    /// Expected values from PostgreSQL 15.
    #[test]
    fn writes_eras_as_postgres() {
        let at = |y: i32, m: u32, d: u32| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("a date")
        };
        let f = parse(
            "YYYY|YYY|YY|Y|Y,YYY|CC|AD|bc|A.D.|b.c.|RM|rm|FMRM|IYYY",
            true,
        );
        // chrono's year 0 is 1 BC.
        for (t, want) in [
            (
                at(-43, 3, 15),
                "0044|044|44|4|0,044|-01|BC|bc|B.C.|b.c.|III |iii |III|0044",
            ),
            (
                at(-100, 1, 1),
                "0101|101|01|1|0,101|-02|BC|bc|B.C.|b.c.|I   |i   |I|0101",
            ),
            (
                at(-99, 12, 31),
                "0100|100|00|0|0,100|-01|BC|bc|B.C.|b.c.|XII |xii |XII|0099",
            ),
            (
                at(0, 1, 1),
                "0001|001|01|1|0,001|-01|BC|bc|B.C.|b.c.|I   |i   |I|0002",
            ),
            (
                at(1, 1, 1),
                "0001|001|01|1|0,001|01|AD|ad|A.D.|a.d.|I   |i   |I|0001",
            ),
            (
                at(2024, 11, 5),
                "2024|024|24|4|2,024|21|AD|ad|A.D.|a.d.|XI  |xi  |XI|2024",
            ),
            (
                at(12345, 6, 7),
                "12345|345|45|5|12,345|124|AD|ad|A.D.|a.d.|VI  |vi  |VI|12345",
            ),
        ] {
            assert_eq!(render(&f, &t, None, true), want, "{t}");
        }
        assert_eq!(fmt("HEAD ADD BCE", "2024-01-01 00:00:00"), "HEAD AD2 ADE");
        assert_eq!(
            fmt("FMYYYY AD RMth Rm rM", "2024-03-01 10:00:00"),
            "2024 AD III  Rm rM"
        );
        // Before level 9 the patterns were text, and the year astronomical.
        let old = render(&parse("YYYY AD", false), &at(-43, 3, 15), None, false);
        assert_eq!(old, "-0043 A6");
    }
}
