//! `to_date(text, text)` and `to_timestamp(text, text)` read text by Postgres' template
//! patterns (`YYYY-MM-DD HH24:MI:SS`, `DD Mon YYYY`, `IYYY-IW-ID`, `J`, `TZH:TZM` …),
//! the way Postgres' `to_timestamp` reads them: a separator in the template matches any
//! one separator or none, blanks around fields are skipped, a number runs to the next
//! non-digit unless a digit pattern follows (`YYYYMMDD`), names are matched in any case,
//! trailing input is ignored, and fields a template leaves out default to January 1 of
//! year 0 (1 BC). `to_timestamp` reads the time in the session's zone
//! (`crate::session_zone` gives each call its zone) unless `TZH` names an offset.
//!
//! DataFusion's `to_date`/`to_timestamp` read a chrono format (`%Y-%m-%d`), so a
//! Postgres template failed on every row. From dialect level 8 on (`crate::dialect`): a
//! view from before keeps the function it was planned with. One argument, or a format
//! that is not text, goes to DataFusion's.

use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::dialect::Wrapped;
use crate::pg_catalog::SqlStateError;
use crate::pg_text::Zone;
use crate::pg_to_char::{era_at, pattern_at, DAYS, MONTHS};

/// The first dialect level that reads Postgres' templates.
const LEVEL: u32 = 8;

/// Replaces `ctx`'s `to_date` and `to_timestamp` (see the module).
pub fn register(ctx: &SessionContext) {
    for (name, timestamp) in [("to_date", false), ("to_timestamp", true)] {
        if let Some(inner) = Wrapped::new(ctx, name, LEVEL) {
            ctx.register_udf(ScalarUDF::new_from_impl(PgToDate {
                signature: Signature::user_defined(Volatility::Immutable),
                inner,
                timestamp,
                zone: None,
            }));
        }
    }
}

/// `func`, a `to_timestamp` that reads Postgres' templates from arguments of
/// `types`, reading wall-clock times in `zone` (an Arrow time zone name); `None` for
/// any other function or call (and for one given its zone already).
pub(crate) fn in_zone(func: &ScalarUDF, types: &[DataType], zone: &str) -> Option<Arc<ScalarUDF>> {
    let f = func.inner().downcast_ref::<PgToDate>()?;
    if !f.timestamp || f.zone.is_some() || !f.postgres(types) {
        return None;
    }
    Some(Arc::new(ScalarUDF::new_from_impl(PgToDate {
        signature: f.signature.clone(),
        inner: f.inner.clone(),
        timestamp: true,
        zone: Some(zone.to_string()),
    })))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgToDate {
    signature: Signature,
    inner: Wrapped,
    /// `to_timestamp`, else `to_date`.
    timestamp: bool,
    /// The zone a `to_timestamp` reads wall-clock times in (UTC when `None`).
    zone: Option<String>,
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null
    )
}

impl PgToDate {
    /// Whether a call on `args` reads a Postgres template.
    fn postgres(&self, args: &[DataType]) -> bool {
        self.inner.on() && matches!(args, [v, f] if is_text(v) && is_text(f))
    }
    /// Whether a call on `args` is `to_timestamp(double precision)` (`crate::pg_epoch`,
    /// from dialect level 9 on).
    fn epoch(&self, args: &[DataType]) -> bool {
        self.timestamp
            && self.inner.level() >= 9
            && matches!(args, [t] if t.is_numeric() || *t == DataType::Null)
    }
    fn result(&self) -> DataType {
        if self.timestamp {
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        } else {
            DataType::Date32
        }
    }
}

impl ScalarUDFImpl for PgToDate {
    fn name(&self) -> &str {
        self.inner.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner.documentation()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if self.postgres(arg_types) {
            return Ok(vec![DataType::Utf8, DataType::Utf8]);
        }
        if self.epoch(arg_types) {
            return Ok(vec![DataType::Float64]);
        }
        crate::dialect::coerce_as(&self.inner.inner, arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if self.postgres(arg_types) || self.epoch(arg_types) {
            Ok(self.result())
        } else {
            self.inner.inner.return_type(arg_types)
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(ColumnarValue::data_type).collect();
        if let (true, [seconds]) = (self.epoch(&types), args.args.as_slice()) {
            return crate::pg_epoch::to_timestamp(seconds, args.number_rows);
        }
        if !self.postgres(&types) {
            return self.inner.inner.invoke_with_args(args);
        }
        let [value, format] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(
                "to_date takes two arguments".into(),
            ));
        };
        let n = args.number_rows;
        let text = |v: &ColumnarValue| -> Result<ArrayRef> {
            Ok(datafusion::arrow::compute::cast(
                &v.to_array(n)?,
                &DataType::Utf8,
            )?)
        };
        let (values, formats) = (text(value)?, text(format)?);
        let (values, formats) = (values.as_string::<i32>(), formats.as_string::<i32>());
        // The format is usually one constant: parsed once.
        let constant = match format {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(f))) => Some(parse(f)),
            _ => None,
        };
        let zone = match &self.zone {
            Some(z) => Zone::parse(z).unwrap_or(Zone::Utc),
            None => Zone::Utc,
        };
        let read = |i: usize| -> Result<Option<(NaiveDateTime, Option<i32>)>> {
            if values.is_null(i) || formats.is_null(i) {
                return Ok(None);
            }
            let owned;
            let nodes = match &constant {
                Some(nodes) => nodes,
                None => {
                    owned = parse(formats.value(i));
                    &owned
                }
            };
            let input = values.value(i);
            let fields = read(input, nodes).map_err(|e| e.into_datafusion())?;
            Ok(Some(
                resolve(&fields, input).map_err(|e| e.into_datafusion())?,
            ))
        };
        let out: ArrayRef = if self.timestamp {
            let mut out = TimestampMicrosecondBuilder::with_capacity(n);
            for i in 0..n {
                match read(i)? {
                    None => out.append_null(),
                    Some((local, offset)) => {
                        let micros = local.and_utc().timestamp_micros();
                        let utc = match offset {
                            Some(east) => micros - i64::from(east) * 1_000_000,
                            None => crate::pg_at_time_zone::from_local(micros, &zone),
                        };
                        out.append_value(utc);
                    }
                }
            }
            Arc::new(out.finish().with_timezone("+00:00"))
        } else {
            let mut out = Date32Builder::with_capacity(n);
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            for i in 0..n {
                match read(i)? {
                    None => out.append_null(),
                    Some((local, _)) => {
                        let days = local.date().signed_duration_since(epoch).num_days();
                        let days = i32::try_from(days).map_err(|_| {
                            FromCharError::DateOutOfRange(values.value(i).to_string())
                                .into_datafusion()
                        })?;
                        out.append_value(days);
                    }
                }
            }
            Arc::new(out.finish())
        };
        Ok(match (value, format) {
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            _ => ColumnarValue::Array(out),
        })
    }
}

/// Why text does not read by a template, in Postgres' words.
#[derive(Debug, thiserror::Error, PartialEq)]
enum FromCharError {
    /// `names`: the field takes names (`Mon`), else digits.
    #[error("invalid value \"{value}\" for \"{field}\"")]
    InvalidValue {
        value: String,
        field: &'static str,
        names: bool,
    },
    #[error("source string too short for \"{field}\" formatting field")]
    TooShort {
        field: &'static str,
        len: usize,
        available: usize,
    },
    /// A fixed-width field whose first `used` of `len` characters are digits.
    #[error("invalid value \"{value}\" for \"{field}\"")]
    Partial {
        value: String,
        field: &'static str,
        len: usize,
        used: usize,
    },
    #[error("value for \"{0}\" in source string is out of range")]
    FieldOutOfRange(&'static str),
    #[error("conflicting values for \"{0}\" field in formatting string")]
    Conflict(&'static str),
    #[error("invalid combination of date conventions")]
    Conventions,
    #[error("invalid input string for \"Y,YYY\"")]
    ThousandsYear,
    #[error("formatting field \"{0}\" is only supported in to_char")]
    OnlyToChar(&'static str),
    #[error("hour \"{0}\" is invalid for the 12-hour clock")]
    Hour12(i32),
    #[error("cannot calculate day of year without year information")]
    DayOfYearWithoutYear,
    #[error("date/time field value out of range: \"{0}\"")]
    OutOfRange(String),
    #[error("date out of range: \"{0}\"")]
    DateOutOfRange(String),
    #[error("time zone displacement out of range: \"{0}\"")]
    Displacement(String),
}

impl FromCharError {
    fn code(&self) -> &'static str {
        match self {
            FromCharError::OnlyToChar(_) => "0A000",
            FromCharError::Displacement(_) => "22009",
            FromCharError::FieldOutOfRange(_)
            | FromCharError::OutOfRange(_)
            | FromCharError::DateOutOfRange(_) => "22008",
            _ => "22007",
        }
    }
    /// Postgres' detail and hint.
    fn explained(&self) -> (Option<String>, Option<&'static str>) {
        const FM: &str = "If your source string is not fixed-width, try using the \"FM\" modifier.";
        match self {
            FromCharError::InvalidValue { names: true, .. } => (
                Some(
                    "The given value did not match any of the allowed values for this field."
                        .into(),
                ),
                None,
            ),
            FromCharError::InvalidValue { .. } => (Some("Value must be an integer.".into()), None),
            FromCharError::TooShort { len, available, .. } => (
                Some(format!(
                    "Field requires {len} characters, but only {available} remain."
                )),
                Some(FM),
            ),
            FromCharError::Partial { len, used, .. } => (
                Some(format!(
                    "Field requires {len} characters, but only {used} could be parsed."
                )),
                Some(FM),
            ),
            FromCharError::FieldOutOfRange(_) => (
                Some("Value must be in the range -2147483648 to 2147483647.".into()),
                None,
            ),
            FromCharError::Conflict(_) => (
                Some("This value contradicts a previous setting for the same field type.".into()),
                None,
            ),
            FromCharError::Conventions => (
                None,
                Some(
                    "Do not mix Gregorian and ISO week date conventions in a formatting template.",
                ),
            ),
            FromCharError::Hour12(_) => (
                None,
                Some("Use the 24-hour clock, or give an hour between 1 and 12."),
            ),
            _ => (None, None),
        }
    }
    fn into_datafusion(self) -> DataFusionError {
        let (detail, hint) = self.explained();
        DataFusionError::External(Box::new(SqlStateError {
            code: self.code(),
            message: self.to_string(),
            detail,
            hint: hint.map(str::to_string),
        }))
    }
}

/// One node of a template, as Postgres' `parse_format` splits it.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A blank: matches one blank or separator of the input, or none.
    Space,
    /// A separator (ASCII punctuation): as a blank.
    Separator,
    /// Other text (also quoted text): skips one character of the input.
    Char(char),
    /// `FX`: from here on, blanks and separators are not skipped.
    Fx,
    /// A pattern, with `FM` (no fixed width) and a `TH`/`th` suffix.
    Field {
        pattern: &'static str,
        fill: bool,
        ordinal: bool,
    },
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// An ASCII printable character that is no letter or digit (Postgres'
/// `is_separator_char`).
fn is_separator(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b.is_ascii_alphanumeric()
}

/// `format` split into nodes as Postgres splits a template for reading.
fn parse(format: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("FX") {
            nodes.push(Node::Fx);
            rest = r;
            continue;
        }
        let mut body = rest;
        let mut fill = false;
        loop {
            if let Some(b) = body.strip_prefix("FM").or_else(|| body.strip_prefix("fm")) {
                fill = true;
                body = b;
            } else if let Some(b) = body.strip_prefix("TM").or_else(|| body.strip_prefix("tm")) {
                body = b;
            } else {
                break;
            }
        }
        if let Some(pattern) = pattern_at(body).or_else(|| era_at(body)) {
            let mut after = &body[pattern.len()..];
            let ordinal = after.starts_with("TH") || after.starts_with("th");
            if ordinal {
                after = &after[2..];
            }
            nodes.push(Node::Field {
                pattern,
                fill,
                ordinal,
            });
            rest = after;
            continue;
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            // Each quoted character skips one of the input; `\` quotes the next.
            let mut chars = quoted.chars();
            loop {
                match chars.next() {
                    None | Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => nodes.push(Node::Char(c)),
                        None => break,
                    },
                    Some(c) => nodes.push(Node::Char(c)),
                }
            }
            rest = chars.as_str();
            continue;
        }
        // Outside quotes, `\` is special only before a quote.
        if let Some(r) = rest.strip_prefix("\\\"") {
            nodes.push(Node::Char('"'));
            rest = r;
            continue;
        }
        nodes.push(if c.is_ascii() && is_separator(c as u8) {
            Node::Separator
        } else if c.is_ascii() && is_blank(c as u8) {
            Node::Space
        } else {
            Node::Char(c)
        });
        rest = &rest[c.len_utf8()..];
    }
    nodes
}

/// Whether `pattern` reads digits.
fn is_digit(pattern: &str) -> bool {
    !matches!(
        pattern,
        "A.M."
            | "a.m."
            | "P.M."
            | "p.m."
            | "AM"
            | "am"
            | "PM"
            | "pm"
            | "MONTH"
            | "Month"
            | "month"
            | "MON"
            | "Mon"
            | "mon"
            | "DAY"
            | "Day"
            | "day"
            | "DY"
            | "Dy"
            | "dy"
            | "TZ"
            | "tz"
            | "OF"
            | "A.D."
            | "a.d."
            | "B.C."
            | "b.c."
            | "AD"
            | "ad"
            | "BC"
            | "bc"
            | "RM"
            | "rm"
    )
}

/// The calendar a pattern belongs to (Postgres' `FromCharDateMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    None,
    Gregorian,
    IsoWeek,
}

fn mode_of(pattern: &str) -> Mode {
    match pattern.to_ascii_uppercase().as_str() {
        "IYYY" | "IYY" | "IY" | "I" | "IW" | "ID" | "IDDD" => Mode::IsoWeek,
        "YYYY" | "YYY" | "YY" | "Y" | "Y,YYY" | "MM" | "MONTH" | "MON" | "DD" | "DDD" | "D"
        | "WW" | "W" | "DAY" | "DY" | "RM" => Mode::Gregorian,
        _ => Mode::None,
    }
}

/// What the input gave each field (Postgres' `TmFromChar`; 0 is "not given").
#[derive(Debug, Default)]
struct Fields {
    mode: Mode,
    hh: i32,
    pm: i32,
    clock12: bool,
    mi: i32,
    ss: i32,
    ssss: i32,
    /// Day of the week, Sunday 1.
    d: i32,
    dd: i32,
    ddd: i32,
    mm: i32,
    ms: i32,
    year: i32,
    cc: i32,
    j: i32,
    us: i32,
    /// The digits the year was given in.
    yysz: i32,
    ww: i32,
    w: i32,
    tzsign: i32,
    tzh: i32,
    tzm: i32,
    /// The era is BC.
    bc: i32,
}

/// Sets a field, refusing a second, different value (Postgres' `from_char_set_int`).
fn set(dest: &mut i32, value: i32, field: &'static str) -> Result<(), FromCharError> {
    if *dest != 0 && *dest != value {
        return Err(FromCharError::Conflict(field));
    }
    *dest = value;
    Ok(())
}

/// Reads the input from byte `pos`.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }
    /// Steps over one character (a whole UTF-8 sequence).
    fn skip_char(&mut self) {
        self.pos += 1;
        while self.input.get(self.pos).is_some_and(|b| (b & 0xc0) == 0x80) {
            self.pos += 1;
        }
    }
    /// Skips blanks; how many.
    fn skip_blanks(&mut self) -> i32 {
        let mut n = 0;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
            n += 1;
        }
        n
    }
    /// At most `len` bytes from the cursor, as text (for messages).
    fn copy(&self, len: usize) -> String {
        let end = (self.pos + len).min(self.input.len());
        String::from_utf8_lossy(&self.input[self.pos..end]).into_owned()
    }

    /// An integer of the field `node`, `len` digits wide unless `slurp` (C's `strtol`
    /// rules: blanks, then a sign, then digits). Postgres' `from_char_parse_int_len`;
    /// returns the value and the bytes read (blanks included).
    fn int(
        &mut self,
        len: usize,
        field: &'static str,
        slurp: bool,
    ) -> Result<(i32, usize), FromCharError> {
        let init = self.pos;
        self.skip_blanks();
        let copy = self.copy(len);
        let value = if slurp {
            let (value, end) = strtol(self.input, init);
            self.pos = end;
            value
        } else {
            let available = (self.input.len() - self.pos).min(len);
            if available < len {
                return Err(FromCharError::TooShort {
                    field,
                    len,
                    available,
                });
            }
            let window = &self.input[self.pos..self.pos + len];
            let (value, used) = strtol(window, 0);
            if used > 0 && used < len {
                return Err(FromCharError::Partial {
                    value: copy,
                    field,
                    len,
                    used,
                });
            }
            self.pos += used;
            value
        };
        if self.pos == init {
            return Err(FromCharError::InvalidValue {
                value: copy,
                field,
                names: false,
            });
        }
        let value = value
            .and_then(|v| i32::try_from(v).ok())
            .ok_or(FromCharError::FieldOutOfRange(field))?;
        Ok((value, self.pos - init))
    }

    /// The index of the first of `names` the input starts with, in any case.
    fn name(&mut self, names: &[&str], field: &'static str) -> Result<usize, FromCharError> {
        let rest = &self.input[self.pos..];
        for (i, name) in names.iter().enumerate() {
            let n = name.as_bytes();
            if rest.len() >= n.len() && rest[..n.len()].eq_ignore_ascii_case(n) {
                self.pos += n.len();
                return Ok(i);
            }
        }
        let word = rest
            .iter()
            .position(|b| is_blank(*b))
            .map_or(rest, |end| &rest[..end]);
        Err(FromCharError::InvalidValue {
            value: String::from_utf8_lossy(word).into_owned(),
            field,
            names: true,
        })
    }
}

/// C's `strtol` from `start`: the value (`None` past an `i64`) and where it stopped
/// (`start` itself when there are no digits).
fn strtol(s: &[u8], start: usize) -> (Option<i64>, usize) {
    let mut i = start;
    while s.get(i).copied().is_some_and(is_blank) {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = i;
    let mut value: Option<i64> = Some(0);
    while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(i64::from(d - b'0')));
        i += 1;
    }
    if i == digits {
        return (Some(0), start);
    }
    (value.map(|v| if negative { -v } else { v }), i)
}

/// Whether the node after `nodes[i]` cannot continue a number: the number runs to
/// the first non-digit (Postgres' `is_next_separator`).
fn next_is_separator(nodes: &[Node], i: usize) -> bool {
    if let Some(Node::Field { ordinal: true, .. }) = nodes.get(i) {
        return true;
    }
    match nodes.get(i + 1) {
        None => true,
        Some(Node::Field { pattern, .. }) => !is_digit(pattern),
        Some(Node::Char(c)) => !c.is_ascii_digit(),
        Some(_) => true,
    }
}

const AM_PM: [&str; 4] = ["am", "pm", "AM", "PM"];
const AM_PM_LONG: [&str; 4] = ["a.m.", "p.m.", "A.M.", "P.M."];

/// The input read by the template (Postgres' `DCH_from_char`).
fn read(input: &str, nodes: &[Node]) -> Result<Fields, FromCharError> {
    let mut out = Fields::default();
    let mut r = Reader {
        input: input.as_bytes(),
        pos: 0,
    };
    let mut fx = false;
    let mut extra_skip: i32 = 0;
    for (i, node) in nodes.iter().enumerate() {
        if r.at_end() {
            break;
        }
        // Blanks before a field (and at the start) are skipped.
        if !fx && node != &Node::Fx && (matches!(node, Node::Field { .. }) || i == 0) {
            extra_skip += r.skip_blanks();
        }
        let (pattern, fill, ordinal) = match node {
            Node::Space | Node::Separator => {
                if fx {
                    r.skip_char();
                } else {
                    // One blank or separator, or none.
                    extra_skip -= 1;
                    if r.peek().is_some_and(|b| is_blank(b) || is_separator(b)) {
                        r.pos += 1;
                        extra_skip += 1;
                    }
                }
                continue;
            }
            Node::Char(_) => {
                // Skips a character, unless blanks were skipped in its place.
                if !fx && extra_skip > 0 {
                    extra_skip -= 1;
                } else {
                    r.skip_char();
                }
                continue;
            }
            Node::Fx => {
                fx = true;
                continue;
            }
            Node::Field {
                pattern,
                fill,
                ordinal,
            } => (*pattern, *fill, *ordinal),
        };
        let mode = mode_of(pattern);
        if mode != Mode::None {
            if out.mode == Mode::None {
                out.mode = mode;
            } else if out.mode != mode {
                return Err(FromCharError::Conventions);
            }
        }
        let slurp = fill || next_is_separator(nodes, i);
        let width = |p: &str| p.len();
        match pattern.to_ascii_uppercase().as_str() {
            "TZ" | "OF" => return Err(FromCharError::OnlyToChar(pattern)),
            "A.M." | "P.M." => {
                let v = r.name(&AM_PM_LONG, pattern)?;
                set(&mut out.pm, (v % 2) as i32, pattern)?;
                out.clock12 = true;
            }
            "A.D." | "B.C." => {
                let v = r.name(&["a.d.", "b.c.", "A.D.", "B.C."], pattern)?;
                set(&mut out.bc, (v % 2) as i32, pattern)?;
            }
            "AD" | "BC" => {
                let v = r.name(&["ad", "bc", "AD", "BC"], pattern)?;
                set(&mut out.bc, (v % 2) as i32, pattern)?;
            }
            "RM" => {
                const ROMAN: [&str; 12] = [
                    "XII", "XI", "X", "IX", "VIII", "VII", "VI", "V", "IV", "III", "II", "I",
                ];
                let v = r.name(&ROMAN, pattern)?;
                set(&mut out.mm, 12 - v as i32, pattern)?;
            }
            "AM" | "PM" => {
                let v = r.name(&AM_PM, pattern)?;
                set(&mut out.pm, (v % 2) as i32, pattern)?;
                out.clock12 = true;
            }
            "HH" | "HH12" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.hh, v, pattern)?;
                out.clock12 = true;
            }
            "HH24" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.hh, v, pattern)?;
            }
            "MI" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.mi, v, pattern)?;
            }
            "SS" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.ss, v, pattern)?;
            }
            "MS" => {
                let (v, len) = r.int(3, pattern, slurp)?;
                set(&mut out.ms, v, pattern)?;
                // 25 is 0.25 and 250 is 0.25 too; 025 is 0.025.
                out.ms *= match len {
                    1 => 100,
                    2 => 10,
                    _ => 1,
                };
            }
            p @ ("US" | "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6") => {
                let digits = match p {
                    "US" => 6,
                    _ => usize::from(p.as_bytes()[2] - b'0'),
                };
                let (v, len) = r.int(digits, pattern, slurp)?;
                set(&mut out.us, v, pattern)?;
                out.us *= match len {
                    1 => 100_000,
                    2 => 10_000,
                    3 => 1000,
                    4 => 100,
                    5 => 10,
                    _ => 1,
                };
            }
            "SSSS" | "SSSSS" => {
                let (v, _) = r.int(width(pattern), pattern, slurp)?;
                set(&mut out.ssss, v, pattern)?;
            }
            "TZH" => {
                // The sign may have been skipped as a separator.
                match r.peek() {
                    Some(b @ (b'+' | b'-' | b' ')) => {
                        out.tzsign = if b == b'-' { -1 } else { 1 };
                        r.pos += 1;
                    }
                    _ => {
                        out.tzsign =
                            if extra_skip > 0 && r.pos > 0 && r.input.get(r.pos - 1) == Some(&b'-')
                            {
                                -1
                            } else {
                                1
                            };
                    }
                }
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.tzh, v, pattern)?;
            }
            "TZM" => {
                if out.tzsign == 0 {
                    out.tzsign = 1;
                }
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.tzm, v, pattern)?;
            }
            "MONTH" => {
                let v = r.name(&MONTHS, pattern)?;
                set(&mut out.mm, v as i32 + 1, pattern)?;
            }
            "MON" => {
                let short: Vec<&str> = MONTHS.iter().map(|m| &m[..3]).collect();
                let v = r.name(&short, pattern)?;
                set(&mut out.mm, v as i32 + 1, pattern)?;
            }
            "MM" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.mm, v, pattern)?;
            }
            "DAY" => {
                let v = r.name(&DAYS, pattern)?;
                set(&mut out.d, v as i32, pattern)?;
                out.d += 1;
            }
            "DY" => {
                let short: Vec<&str> = DAYS.iter().map(|d| &d[..3]).collect();
                let v = r.name(&short, pattern)?;
                set(&mut out.d, v as i32, pattern)?;
                out.d += 1;
            }
            "DDD" | "IDDD" => {
                let (v, _) = r.int(3, pattern, slurp)?;
                set(&mut out.ddd, v, pattern)?;
            }
            "DD" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.dd, v, pattern)?;
            }
            "D" => {
                let (v, _) = r.int(1, pattern, slurp)?;
                set(&mut out.d, v, pattern)?;
            }
            "ID" => {
                let (v, _) = r.int(1, pattern, slurp)?;
                set(&mut out.d, v, pattern)?;
                // Monday 1 becomes Gregorian numbering, Sunday 1.
                out.d = out.d.saturating_add(1);
                if out.d > 7 {
                    out.d = 1;
                }
            }
            "WW" | "IW" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.ww, v, pattern)?;
            }
            "Q" => {
                // Read and ignored: which date of the quarter would it be?
                r.int(1, pattern, slurp)?;
            }
            "CC" => {
                let (v, _) = r.int(2, pattern, slurp)?;
                set(&mut out.cc, v, pattern)?;
            }
            "Y,YYY" => {
                let (thousands, end) = strtol(r.input, r.pos);
                if end == r.pos || r.input.get(end) != Some(&b',') {
                    return Err(FromCharError::ThousandsYear);
                }
                let mut i = end + 1;
                while r.input.get(i).copied().is_some_and(is_blank) {
                    i += 1;
                }
                let start = i;
                let mut years: i64 = 0;
                while i < start + 3 {
                    match r.input.get(i).filter(|b| b.is_ascii_digit()) {
                        Some(d) => years = years * 10 + i64::from(d - b'0'),
                        None => break,
                    }
                    i += 1;
                }
                if i == start {
                    return Err(FromCharError::ThousandsYear);
                }
                let year = thousands
                    .and_then(|t| t.checked_mul(1000))
                    .and_then(|t| t.checked_add(years))
                    .and_then(|y| i32::try_from(y).ok())
                    .ok_or(FromCharError::FieldOutOfRange(pattern))?;
                set(&mut out.year, year, pattern)?;
                out.yysz = 4;
                r.pos = i;
            }
            "YYYY" | "IYYY" => {
                let (v, _) = r.int(4, pattern, slurp)?;
                set(&mut out.year, v, pattern)?;
                out.yysz = 4;
            }
            p @ ("YYY" | "IYY" | "YY" | "IY" | "Y" | "I") => {
                let (v, len) = r.int(p.len(), pattern, slurp)?;
                set(&mut out.year, v, pattern)?;
                if len < 4 {
                    out.year = near_2020(out.year);
                }
                out.yysz = p.len() as i32;
            }
            "W" => {
                let (v, _) = r.int(1, pattern, slurp)?;
                set(&mut out.w, v, pattern)?;
            }
            "J" => {
                let (v, _) = r.int(1, pattern, slurp)?;
                set(&mut out.j, v, pattern)?;
            }
            _ => {}
        }
        if ordinal {
            // `TH`: the suffix's two letters.
            for _ in 0..2 {
                if !r.at_end() {
                    r.skip_char();
                }
            }
        }
        // Blanks after a field are skipped.
        if !fx {
            extra_skip = r.skip_blanks();
        }
    }
    Ok(out)
}

/// A year of fewer than four digits, moved next to 2020 (Postgres'
/// `adjust_partial_year_to_2020`).
fn near_2020(year: i32) -> i32 {
    if year < 70 {
        year + 2000
    } else if year < 100 {
        year + 1900
    } else if year < 520 {
        year + 2000
    } else if year < 1000 {
        year + 1000
    } else {
        year
    }
}

fn leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        2 if leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A date from a year, month and day as Postgres' `date2j` counts (a day past the
/// month's end runs into the next).
fn date(year: i32, month: i32, day: i32) -> Option<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, 1)?;
    let offset = i64::from(day) - 1;
    if offset >= 0 {
        first.checked_add_days(Days::new(offset.unsigned_abs()))
    } else {
        first.checked_sub_days(Days::new(offset.unsigned_abs()))
    }
}

/// The Monday of ISO week 1 of `year`, moved by `days`.
fn iso_day(year: i32, days: i64) -> Option<NaiveDate> {
    let monday = NaiveDate::from_isoywd_opt(year, 1, Weekday::Mon)?;
    if days >= 0 {
        monday.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        monday.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

/// The wall-clock time `fields` name, and the offset east of UTC in seconds that
/// `TZH`/`TZM` gave (Postgres' `do_to_timestamp`). `input` is for messages.
fn resolve(f: &Fields, input: &str) -> Result<(NaiveDateTime, Option<i32>), FromCharError> {
    let out_of_range = || FromCharError::OutOfRange(input.to_string());
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    if f.ssss != 0 {
        hour = f.ssss / 3600;
        minute = f.ssss % 3600 / 60;
        second = f.ssss % 60;
    }
    if f.ss != 0 {
        second = f.ss;
    }
    if f.mi != 0 {
        minute = f.mi;
    }
    if f.hh != 0 {
        hour = f.hh;
    }
    if f.clock12 {
        if !(1..=12).contains(&hour) {
            return Err(FromCharError::Hour12(hour));
        }
        if f.pm != 0 && hour < 12 {
            hour += 12;
        } else if f.pm == 0 && hour == 12 {
            hour = 0;
        }
    }
    // Fields far past any date Postgres takes (4713 BC to 294276 AD) are out of range
    // before any arithmetic on them can overflow.
    const FAR: i32 = 10_000_000;
    if [f.year, f.cc, f.ww, f.w, f.ddd, f.dd, f.mm]
        .iter()
        .any(|v| !(-FAR..=FAR).contains(v))
    {
        return Err(out_of_range());
    }
    if f.tzsign != 0 && (!(0..=15).contains(&f.tzh) || !(0..60).contains(&f.tzm)) {
        return Err(FromCharError::Displacement(input.to_string()));
    }
    let cc = if f.bc != 0 { -f.cc } else { f.cc };
    // Year 0 is 1 BC, as in Postgres' own reckoning.
    let (mut year, mut month, mut day) = (0, 1, 1);
    let (mut has_year, mut has_month, mut has_day) = (false, false, false);
    let mut known: Option<NaiveDate> = None;
    if f.year != 0 {
        if cc != 0 && f.yysz <= 2 {
            // YY within the century CC (the 21st runs 2001–2100; BC counts down).
            year = f.year % 100;
            if year != 0 {
                year = if cc >= 0 {
                    year + (cc - 1) * 100
                } else {
                    (cc + 1) * 100 - year + 1
                };
            } else {
                year = cc * 100 + if cc >= 0 { 0 } else { 1 };
            }
        } else {
            year = if f.bc != 0 { -f.year } else { f.year };
            if year < 0 {
                year += 1;
            }
        }
        has_year = true;
    } else if cc != 0 {
        // The century's first year.
        year = if cc >= 0 {
            (cc - 1) * 100 + 1
        } else {
            cc * 100 + 1
        };
        has_year = true;
    }
    if f.j != 0 {
        let d =
            f.j.checked_sub(1_721_425)
                .and_then(NaiveDate::from_num_days_from_ce_opt)
                .ok_or_else(out_of_range)?;
        known = Some(d);
        (year, month, day) = (d.year(), d.month() as i32, d.day() as i32);
        (has_year, has_month, has_day) = (true, true, true);
    }
    let mut ddd = f.ddd;
    if f.ww != 0 {
        if f.mode == Mode::IsoWeek {
            let weekday = if f.d == 0 {
                0
            } else if f.d > 1 {
                f.d - 2
            } else {
                6
            };
            let d = iso_day(year, i64::from(f.ww - 1) * 7 + i64::from(weekday))
                .ok_or_else(out_of_range)?;
            known = Some(d);
            (year, month, day) = (d.year(), d.month() as i32, d.day() as i32);
            (has_year, has_month, has_day) = (true, true, true);
        } else {
            ddd = (f.ww - 1) * 7 + 1;
        }
    }
    let mut dd = f.dd;
    if f.w != 0 {
        dd = (f.w - 1) * 7 + 1;
    }
    if dd != 0 {
        day = dd;
        has_day = true;
    }
    if f.mm != 0 {
        month = f.mm;
        has_month = true;
    }
    if ddd != 0 && (month <= 1 || day <= 1) {
        if year == 0 {
            return Err(FromCharError::DayOfYearWithoutYear);
        }
        if f.mode == Mode::IsoWeek {
            let d = iso_day(year, i64::from(ddd) - 1).ok_or_else(out_of_range)?;
            known = Some(d);
            (year, month, day) = (d.year(), d.month() as i32, d.day() as i32);
            (has_year, has_month, has_day) = (true, true, true);
        } else {
            let mut m = 1;
            let mut before = 0;
            while m <= 12 && ddd > before + days_in_month(year, m) {
                before += days_in_month(year, m);
                m += 1;
            }
            if month <= 1 {
                month = m;
            }
            if day <= 1 {
                day = ddd - before;
            }
            (has_month, has_day) = (true, true);
        }
    }
    // Postgres' `ValidateDate`.
    if has_month && !(1..=12).contains(&month) {
        return Err(out_of_range());
    }
    if has_day && !(1..=31).contains(&day) {
        return Err(out_of_range());
    }
    if has_year && has_month && has_day && day > days_in_month(year, month) {
        return Err(out_of_range());
    }
    let micros = i64::from(f.ms) * 1000 + i64::from(f.us);
    if !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..60).contains(&second)
        || !(0..1_000_000).contains(&micros)
    {
        return Err(out_of_range());
    }
    let d = match known {
        Some(d) if (d.year(), d.month() as i32, d.day() as i32) == (year, month, day) => d,
        _ => date(year, month, day).ok_or(FromCharError::DateOutOfRange(input.to_string()))?,
    };
    let time =
        NaiveTime::from_hms_micro_opt(hour as u32, minute as u32, second as u32, micros as u32)
            .ok_or_else(out_of_range)?;
    let offset = (f.tzsign != 0).then(|| f.tzsign * (f.tzh * 3600 + f.tzm * 60));
    Ok((NaiveDateTime::new(d, time), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_timestamp(input: &str, format: &str) -> Result<String, FromCharError> {
        let (t, offset) = resolve(&read(input, &parse(format))?, input)?;
        let t = t - chrono::Duration::seconds(i64::from(offset.unwrap_or(0)));
        Ok(t.format("%Y-%m-%d %H:%M:%S%.f").to_string())
    }

    fn to_date(input: &str, format: &str) -> String {
        match to_timestamp(input, format) {
            Ok(t) => t.split(' ').next().unwrap_or_default().to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// Each expectation is PostgreSQL 15's answer to the same call.
    #[test]
    fn reads_as_postgres() {
        assert_eq!(to_date("2024-01-05", "YYYY-MM-DD"), "2024-01-05");
        assert_eq!(to_date("05 Jan 2024", "DD Mon YYYY"), "2024-01-05");
        assert_eq!(to_date("20240105", "YYYYMMDD"), "2024-01-05");
        assert_eq!(to_date("2024/1/5", "YYYY-MM-DD"), "2024-01-05");
        assert_eq!(to_date("  2024 -  01-05", "YYYY-MM-DD"), "2024-01-05");
        assert_eq!(to_date("January 5, 2024", "Month DD, YYYY"), "2024-01-05");
        assert_eq!(
            to_date("5th of March 24", "DDth \"of\" Month YY"),
            "2024-03-05"
        );
        assert_eq!(to_date("2024", "YYYY-MM-DD"), "2024-01-01");
        assert_eq!(to_date("2024 060", "YYYY DDD"), "2024-02-29");
        assert_eq!(to_date("2024-W09-4", "IYYY-\"W\"IW-ID"), "2024-02-29");
        assert_eq!(to_date("2024 10", "IYYY IW"), "2024-03-04");
        assert_eq!(to_date("2460311", "J"), "2024-01-01");
        assert_eq!(to_date("21 24", "CC YY"), "2024-01-01");
        assert_eq!(to_date("99", "YY"), "1999-01-01");
        assert_eq!(to_date("519", "YYY"), "2519-01-01");
        assert_eq!(to_date("2,024 03 01", "Y,YYY MM DD"), "2024-03-01");
        assert_eq!(to_date("2024-01-05 garbage", "YYYY-MM-DD"), "2024-01-05");
        assert_eq!(to_date("Friday 2024-01-05", "Day YYYY-MM-DD"), "2024-01-05");
        assert_eq!(to_date("2024Jan05", "YYYYMonDD"), "2024-01-05");
        assert_eq!(to_date("2024 March", "YYYY MON"), "2024-03-01");
        assert_eq!(to_date("2024x01x05", "YYYYxMMxDD"), "2024-01-05");
        assert_eq!(to_date("2024 1 5", "YYYYxMMxDD"), "2024-01-05");
        assert_eq!(
            to_timestamp("05/01/2024 3:04 PM", "DD/MM/YYYY HH12:MI AM").unwrap(),
            "2024-01-05 15:04:00"
        );
        assert_eq!(
            to_timestamp(
                "2024-01-05 10:11:12 +05:30",
                "YYYY-MM-DD HH24:MI:SS TZH:TZM"
            )
            .unwrap(),
            "2024-01-05 04:41:12"
        );
        assert_eq!(
            to_timestamp("2024-01-05 10:11:12-08", "YYYY-MM-DD HH24:MI:SSTZH").unwrap(),
            "2024-01-05 18:11:12"
        );
        assert_eq!(
            to_timestamp("2024-01-05 10:11:12.5", "YYYY-MM-DD HH24:MI:SS.MS").unwrap(),
            "2024-01-05 10:11:12.500"
        );
        assert_eq!(
            to_timestamp("2024-01-05 10:11:12.1234", "YYYY-MM-DD HH24:MI:SS.FF6").unwrap(),
            "2024-01-05 10:11:12.123400"
        );
        assert_eq!(
            to_timestamp("2024-01-05T10:11:12Z", "YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"").unwrap(),
            "2024-01-05 10:11:12"
        );
    }

    #[test]
    fn reads_eras_and_roman_months() {
        assert_eq!(to_date("0044-03-15 BC", "YYYY-MM-DD BC"), "-0043-03-15");
        assert_eq!(to_date("2024-03-15 AD", "YYYY-MM-DD AD"), "2024-03-15");
        assert_eq!(to_date("2024 xii 05", "YYYY RM DD"), "2024-12-05");
        assert_eq!(
            to_date("42949673 24", "CC YY"),
            "date/time field value out of range: \"42949673 24\""
        );
        assert_eq!(
            to_date("2024 613566758", "YYYY WW"),
            "date/time field value out of range: \"2024 613566758\""
        );
        assert_eq!(
            to_date("-2147483648", "J"),
            "date/time field value out of range: \"-2147483648\""
        );
        assert_eq!(
            to_date("2024-01-01 10:00 +20", "YYYY-MM-DD HH24:MI TZH"),
            "time zone displacement out of range: \"2024-01-01 10:00 +20\""
        );
    }

    #[test]
    fn refuses_as_postgres() {
        assert_eq!(
            to_date("2024-02-30", "YYYY-MM-DD"),
            "date/time field value out of range: \"2024-02-30\""
        );
        assert_eq!(
            to_date("2024-1x-05", "YYYY-MM-DD"),
            "invalid value \"x-\" for \"DD\""
        );
        assert_eq!(
            to_date("Xyz 2024-01-05", "Dy YYYY-MM-DD"),
            "invalid value \"Xyz\" for \"Dy\""
        );
        assert_eq!(
            to_date("2024 2023", "YYYY YYYY"),
            "conflicting values for \"YYYY\" field in formatting string"
        );
        assert_eq!(
            to_date("2024-W09-4 03", "IYYY-\"W\"IW-ID MM"),
            "invalid combination of date conventions"
        );
        assert_eq!(
            to_date("05/01/2024 13:04 PM", "DD/MM/YYYY HH12:MI PM"),
            "hour \"13\" is invalid for the 12-hour clock"
        );
        assert_eq!(
            to_date("2024-01-05 10:11:12 EST", "YYYY-MM-DD HH24:MI:SS TZ"),
            "formatting field \"TZ\" is only supported in to_char"
        );
        assert_eq!(
            to_date("2024 99999999999", "YYYY DD"),
            "value for \"DD\" in source string is out of range"
        );
        assert_eq!(
            to_date("123456", "YYYYMMDD"),
            "date/time field value out of range: \"123456\""
        );
        assert_eq!(
            to_date("2024 -01-05", "FXYYYY-MM-DD"),
            "date/time field value out of range: \"2024 -01-05\""
        );
    }
}
