//! Postgres functions and operators DataFusion lacks: `width_bucket`, `num_nulls`,
//! `num_nonnulls`, `justify_hours`, `justify_days`, `justify_interval`, `age`,
//! `make_timestamp`, `make_timestamptz`, `make_time`, `make_interval`,
//! `quote_nullable`, `isfinite`, `string_to_table`, `regexp_split_to_array`, `format`,
//! `gen_random_uuid` and the bitwise not `~`, computed as Postgres computes them; `mod`,
//! `ceiling`, `variance` and `every` are DataFusion's `%`, `ceil`, `var_samp` and
//! `bool_and`; `extract(century | millennium | decade …)` are computed from the year,
//! `date_trunc(field, x, zone)` truncates in the zone, `regexp_split_to_table` is the
//! `unnest` of `regexp_split_to_array`. Each
//! was an error before, so no view depends on another meaning (no dialect level),
//! except `make_time`, DataFusion's of whole seconds before level 8.
//!
//! The functions run row by row over typed values ([`RowFn`]); their arguments are
//! coerced to the types they take, as Postgres resolves a call. Some are rewritten in
//! the statement first ([`rewrite`]): `~x` is `-1 - x`; `age(x)` is `age(current_date,
//! x)`; `make_timestamptz(…)` reads `make_timestamp(…)` in the session's zone (or `AT
//! TIME ZONE` the zone given); `format`'s arguments are cast to text (Postgres' text of
//! each value).

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::array::{new_empty_array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::dialect::Wrapped;
use crate::pg_catalog::rewrite::call;
use crate::pg_catalog::SqlStateError;
use crate::sqlparser::ast::{
    CastKind, DataType as SqlType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Statement, TimezoneInfo, UnaryOperator,
};

/// A function's value for one row of typed arguments.
pub(crate) type Body = fn(&[ScalarValue]) -> Result<ScalarValue>;

/// The types a function takes for `n` arguments (`None`: no such call); the
/// arguments' own types when it takes any.
pub(crate) type Takes = fn(&[DataType]) -> Option<Vec<DataType>>;

/// A function computed row by row (see the module).
struct RowFn {
    name: &'static str,
    signature: Signature,
    takes: Takes,
    returns: DataType,
    body: Body,
}

impl std::fmt::Debug for RowFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for RowFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowFn {}

impl std::hash::Hash for RowFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for RowFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        (self.takes)(arg_types).ok_or_else(|| {
            let types: Vec<String> = arg_types.iter().map(|t| t.to_string()).collect();
            DataFusionError::Plan(format!(
                "function {}({}) does not exist",
                self.name,
                types.join(", ")
            ))
        })
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            let values = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => Ok(s.clone()),
                    ColumnarValue::Array(array) => ScalarValue::try_from_array(array, i),
                })
                .collect::<Result<Vec<_>>>()?;
            let v = (self.body)(&values)?;
            out.push(if v.is_null() {
                ScalarValue::try_from(&self.returns)?
            } else {
                v
            });
        }
        if all_scalar {
            return Ok(ColumnarValue::Scalar(
                out.pop()
                    .map_or_else(|| ScalarValue::try_from(&self.returns), Ok)?,
            ));
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(new_empty_array(&self.returns)));
        }
        let array: ArrayRef = ScalarValue::iter_to_array(out)?;
        Ok(ColumnarValue::Array(array))
    }
}

pub(crate) fn define(
    ctx: &SessionContext,
    name: &'static str,
    takes: Takes,
    returns: DataType,
    body: Body,
) {
    define_with(ctx, name, takes, returns, Volatility::Immutable, body);
}

fn define_with(
    ctx: &SessionContext,
    name: &'static str,
    takes: Takes,
    returns: DataType,
    volatility: Volatility,
    body: Body,
) {
    ctx.register_udf(ScalarUDF::new_from_impl(RowFn {
        name,
        signature: Signature::user_defined(volatility),
        takes,
        returns,
        body,
    }));
}

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);
const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

/// Registers the functions in `ctx`.
pub fn register(ctx: &SessionContext) {
    use DataType::{Float64, Int32, Utf8};
    define(
        ctx,
        "width_bucket",
        |a| (a.len() == 4).then(|| vec![Float64, Float64, Float64, Int32]),
        Int32,
        width_bucket,
    );
    define(
        ctx,
        "num_nulls",
        |a| Some(a.to_vec()),
        Int32,
        |a| {
            Ok(ScalarValue::Int32(Some(
                a.iter().filter(|v| v.is_null()).count() as i32,
            )))
        },
    );
    define(
        ctx,
        "num_nonnulls",
        |a| Some(a.to_vec()),
        Int32,
        |a| {
            Ok(ScalarValue::Int32(Some(
                a.iter().filter(|v| !v.is_null()).count() as i32,
            )))
        },
    );
    for (name, body) in [
        ("justify_hours", justify_hours as Body),
        ("justify_days", justify_days as Body),
        ("justify_interval", justify_interval as Body),
    ] {
        define(
            ctx,
            name,
            |a| (a.len() == 1).then(|| vec![INTERVAL]),
            INTERVAL,
            body,
        );
    }
    define(
        ctx,
        "age",
        |a| (a.len() == 2).then(|| vec![TIMESTAMP, TIMESTAMP]),
        INTERVAL,
        age,
    );
    define(
        ctx,
        "make_timestamp",
        |a| (a.len() == 6).then(|| vec![Int32, Int32, Int32, Int32, Int32, Float64]),
        TIMESTAMP,
        make_timestamp,
    );
    ctx.register_udf(ScalarUDF::new_from_impl(BitwiseNot {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
    define(
        ctx,
        "quote_nullable",
        |a| (a.len() == 1).then(|| vec![Utf8]),
        Utf8,
        |a| {
            Ok(ScalarValue::Utf8(Some(match text(&a[0]) {
                None => "NULL".to_string(),
                Some(v) => quote_literal(v),
            })))
        },
    );
    // No date, timestamp or interval is infinite here.
    define(
        ctx,
        "isfinite",
        |a| (a.len() == 1).then(|| a.to_vec()),
        DataType::Boolean,
        |a| Ok(ScalarValue::Boolean((!a[0].is_null()).then_some(true))),
    );
    define(
        ctx,
        MAKE_INTERVAL,
        |a| (a.len() == 7).then(|| vec![Int32, Int32, Int32, Int32, Int32, Int32, Float64]),
        INTERVAL,
        make_interval,
    );
    define(
        ctx,
        "regexp_split_to_array",
        |a| matches!(a.len(), 2 | 3).then(|| vec![Utf8; a.len()]),
        DataType::List(Arc::new(Field::new_list_field(Utf8, true))),
        regexp_split_to_array,
    );
    define(
        ctx,
        "format",
        |a| (!a.is_empty()).then(|| vec![Utf8; a.len()]),
        Utf8,
        format,
    );
}

/// Registers the functions that replace DataFusion's from a dialect level on
/// (`crate::dialect`): `make_time` with fractional seconds, a `time` in microseconds
/// (DataFusion's takes whole seconds and gives seconds), from level 8.
pub(crate) fn register_wrapped(ctx: &SessionContext) {
    if let Some(inner) = Wrapped::new(ctx, "make_time", 8) {
        use DataType::{Float64, Int32};
        ctx.register_udf(ScalarUDF::new_from_impl(Levelled {
            signature: Signature::user_defined(Volatility::Immutable),
            inner,
            row: RowFn {
                name: "make_time",
                signature: Signature::user_defined(Volatility::Immutable),
                takes: |a| (a.len() == 3).then(|| vec![Int32, Int32, Float64]),
                returns: DataType::Time64(TimeUnit::Microsecond),
                body: make_time,
            },
        }));
    }
}

/// A [`RowFn`] in place of DataFusion's function of one name, from a dialect level on.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Levelled {
    signature: Signature,
    inner: Wrapped,
    row: RowFn,
}

impl ScalarUDFImpl for Levelled {
    fn name(&self) -> &str {
        self.row.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if self.inner.on() {
            return self.row.coerce_types(arg_types);
        }
        crate::dialect::coerce_as(&self.inner.inner, arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if self.inner.on() {
            self.row.return_type(arg_types)
        } else {
            self.inner.inner.return_type(arg_types)
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if self.inner.on() {
            self.row.invoke_with_args(args)
        } else {
            self.inner.inner.invoke_with_args(args)
        }
    }
}

/// The function `~x` is planned as.
const BITWISE_NOT: &str = "__freshet_bitwise_not";

/// `~x` of an integer, in its type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BitwiseNot {
    signature: Signature,
}

impl ScalarUDFImpl for BitwiseNot {
    fn name(&self) -> &str {
        BITWISE_NOT
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if t.is_integer() => Ok(vec![t.clone()]),
            [DataType::Null] => Ok(vec![DataType::Int32]),
            [t] => Err(DataFusionError::Plan(format!(
                "operator does not exist: ~ {}",
                match t {
                    DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
                    DataType::Float64 => "double precision",
                    DataType::Float32 => "real",
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
                    DataType::Boolean => "boolean",
                    _ => "this type",
                }
            ))),
            _ => Err(DataFusionError::Plan("~ takes one operand".into())),
        }
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int32))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::compute::kernels::bitwise::bitwise_not;
        use datafusion::arrow::datatypes::{
            Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
            UInt8Type,
        };
        let [value] = args.args.as_slice() else {
            return Err(DataFusionError::Plan("~ takes one operand".into()));
        };
        let array = value.to_array(args.number_rows)?;
        let out: ArrayRef = match array.data_type() {
            DataType::Int8 => Arc::new(bitwise_not(array.as_primitive::<Int8Type>())?),
            DataType::Int16 => Arc::new(bitwise_not(array.as_primitive::<Int16Type>())?),
            DataType::Int32 => Arc::new(bitwise_not(array.as_primitive::<Int32Type>())?),
            DataType::Int64 => Arc::new(bitwise_not(array.as_primitive::<Int64Type>())?),
            DataType::UInt8 => Arc::new(bitwise_not(array.as_primitive::<UInt8Type>())?),
            DataType::UInt16 => Arc::new(bitwise_not(array.as_primitive::<UInt16Type>())?),
            DataType::UInt32 => Arc::new(bitwise_not(array.as_primitive::<UInt32Type>())?),
            DataType::UInt64 => Arc::new(bitwise_not(array.as_primitive::<UInt64Type>())?),
            other => {
                return Err(DataFusionError::Plan(format!(
                    "operator does not exist: ~ {other}"
                )))
            }
        };
        Ok(match value {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

/// An error with Postgres' SQLSTATE.
fn pg_error(code: &'static str, message: impl Into<String>) -> DataFusionError {
    SqlStateError::raise(code, message, None)
}

fn float(v: &ScalarValue) -> Option<f64> {
    match v {
        ScalarValue::Float64(f) => *f,
        _ => None,
    }
}

fn int(v: &ScalarValue) -> Option<i32> {
    match v {
        ScalarValue::Int32(i) => *i,
        _ => None,
    }
}

fn text(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s) => s.as_deref(),
        _ => None,
    }
}

fn interval(v: &ScalarValue) -> Option<IntervalMonthDayNano> {
    match v {
        ScalarValue::IntervalMonthDayNano(i) => *i,
        _ => None,
    }
}

/// `width_bucket(operand, low, high, count)`: the bucket of `count` equal ones between
/// `low` and `high` that `operand` falls in; 0 below, `count + 1` above.
fn width_bucket(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(operand), Some(low), Some(high), Some(count)) =
        (float(&a[0]), float(&a[1]), float(&a[2]), int(&a[3]))
    else {
        return Ok(ScalarValue::Int32(None));
    };
    const INVALID: &str = "2201G";
    if count <= 0 {
        return Err(pg_error(INVALID, "count must be greater than zero"));
    }
    if operand.is_nan() || low.is_nan() || high.is_nan() {
        return Err(pg_error(
            INVALID,
            "operand, lower bound, and upper bound cannot be NaN",
        ));
    }
    if !low.is_finite() || !high.is_finite() {
        return Err(pg_error(INVALID, "lower and upper bounds must be finite"));
    }
    let above = || {
        count
            .checked_add(1)
            .ok_or_else(|| pg_error("22003", "integer out of range"))
    };
    let inside = |fraction: f64| ((fraction * f64::from(count)) as i32).min(count - 1) + 1;
    let bucket = if low < high {
        if operand < low {
            0
        } else if operand >= high {
            above()?
        } else {
            inside((operand - low) / (high - low))
        }
    } else if low > high {
        if operand > low {
            0
        } else if operand <= high {
            above()?
        } else {
            inside((low - operand) / (low - high))
        }
    } else {
        return Err(pg_error(INVALID, "lower bound cannot equal upper bound"));
    };
    Ok(ScalarValue::Int32(Some(bucket)))
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

fn interval_value(months: i32, days: i32, nanos: i64) -> ScalarValue {
    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos)))
}

fn day_overflow() -> DataFusionError {
    pg_error("22008", "interval out of range")
}

/// Whole days of the time part moved into the days (Postgres' `justify_hours`).
fn justify_hours(a: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(i) = interval(&a[0]) else {
        return Ok(ScalarValue::IntervalMonthDayNano(None));
    };
    let whole = i.nanoseconds / NANOS_PER_DAY;
    let mut nanos = i.nanoseconds - whole * NANOS_PER_DAY;
    let mut days = i32::try_from(i64::from(i.days) + whole).map_err(|_| day_overflow())?;
    if days > 0 && nanos < 0 {
        nanos += NANOS_PER_DAY;
        days -= 1;
    } else if days < 0 && nanos > 0 {
        nanos -= NANOS_PER_DAY;
        days += 1;
    }
    Ok(interval_value(i.months, days, nanos))
}

/// Each 30 days moved into a month (Postgres' `justify_days`).
fn justify_days(a: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(i) = interval(&a[0]) else {
        return Ok(ScalarValue::IntervalMonthDayNano(None));
    };
    let whole = i.days / 30;
    let mut days = i.days - whole * 30;
    let mut months = i.months.checked_add(whole).ok_or_else(day_overflow)?;
    if months > 0 && days < 0 {
        days += 30;
        months -= 1;
    } else if months < 0 && days > 0 {
        days -= 30;
        months += 1;
    }
    Ok(interval_value(months, days, i.nanoseconds))
}

/// Both, with the signs made to agree (Postgres' `justify_interval`).
fn justify_interval(a: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(i) = interval(&a[0]) else {
        return Ok(ScalarValue::IntervalMonthDayNano(None));
    };
    let (mut months, mut days, mut nanos) = (i64::from(i.months), i64::from(i.days), i.nanoseconds);
    if (days > 0 && nanos > 0) || (days < 0 && nanos < 0) {
        months += days / 30;
        days %= 30;
    }
    days += nanos / NANOS_PER_DAY;
    nanos %= NANOS_PER_DAY;
    months += days / 30;
    days %= 30;
    if months > 0 && (days < 0 || (days == 0 && nanos < 0)) {
        days += 30;
        months -= 1;
    } else if months < 0 && (days > 0 || (days == 0 && nanos > 0)) {
        days -= 30;
        months += 1;
    }
    if days > 0 && nanos < 0 {
        nanos += NANOS_PER_DAY;
        days -= 1;
    } else if days < 0 && nanos > 0 {
        nanos -= NANOS_PER_DAY;
        days += 1;
    }
    let months = i32::try_from(months).map_err(|_| day_overflow())?;
    let days = i32::try_from(days).map_err(|_| day_overflow())?;
    Ok(interval_value(months, days, nanos))
}

fn timestamp(v: &ScalarValue) -> Option<NaiveDateTime> {
    match v {
        ScalarValue::TimestampMicrosecond(Some(us), None) => {
            chrono::DateTime::from_timestamp_micros(*us).map(|t| t.naive_utc())
        }
        _ => None,
    }
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match (NaiveDate::from_ymd_opt(year, month, 1), next) {
        (Some(a), Some(b)) => (b - a).num_days(),
        _ => 30,
    }
}

/// `age(a, b)`: years, months and days between two timestamps, field by field with
/// borrows, as Postgres' `timestamp_age` counts them (`age('2024-03-01', '2024-01-31')`
/// is `1 mon 1 day`).
fn age(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(t1), Some(t2)) = (timestamp(&a[0]), timestamp(&a[1])) else {
        return Ok(ScalarValue::IntervalMonthDayNano(None));
    };
    let flip = t1 < t2;
    let sign = if flip { -1 } else { 1 };
    let field = |x: i64, y: i64| sign * (x - y);
    let mut micros = field(
        i64::from(t1.nanosecond() / 1000),
        i64::from(t2.nanosecond() / 1000),
    );
    let mut sec = field(i64::from(t1.second()), i64::from(t2.second()));
    let mut min = field(i64::from(t1.minute()), i64::from(t2.minute()));
    let mut hour = field(i64::from(t1.hour()), i64::from(t2.hour()));
    let mut day = field(i64::from(t1.day()), i64::from(t2.day()));
    let mut mon = field(i64::from(t1.month()), i64::from(t2.month()));
    let mut year = field(i64::from(t1.year()), i64::from(t2.year()));
    while micros < 0 {
        micros += 1_000_000;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        day -= 1;
    }
    while day < 0 {
        // The days of the earlier timestamp's month.
        let from = if flip { t1 } else { t2 };
        day += days_in_month(from.year(), from.month());
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    let months = sign * (year * 12 + mon);
    let nanos = sign * (((hour * 60 + min) * 60 + sec) * 1_000_000 + micros) * 1000;
    let months = i32::try_from(months).map_err(|_| day_overflow())?;
    let days = i32::try_from(sign * day).map_err(|_| day_overflow())?;
    Ok(interval_value(months, days, nanos))
}

/// Seconds with a fraction as whole seconds and microseconds (rounded), if in
/// `0 ≤ s < 60`.
fn seconds(s: f64) -> Option<(u32, u32)> {
    let micros = (s * 1e6).round();
    if !(0.0..60e6).contains(&micros) {
        return None;
    }
    let micros = micros as u32;
    Some((micros / 1_000_000, micros % 1_000_000))
}

fn make_timestamp(a: &[ScalarValue]) -> Result<ScalarValue> {
    let fields: Option<Vec<i32>> = a[..5].iter().map(int).collect();
    let (Some(f), Some(sec)) = (fields, float(&a[5])) else {
        return Ok(ScalarValue::TimestampMicrosecond(None, None));
    };
    let (year, month, day, hour, minute) = (f[0], f[1], f[2], f[3], f[4]);
    // Year -44 is 44 BC (year -43 in the proleptic calendar); there is no year 0.
    let calendar_year = if year < 0 { year + 1 } else { year };
    let date = (year != 0)
        .then(|| {
            NaiveDate::from_ymd_opt(
                calendar_year,
                u32::try_from(month).ok()?,
                u32::try_from(day).ok()?,
            )
        })
        .flatten()
        .ok_or_else(|| {
            pg_error(
                "22008",
                format!("date field value out of range: {year}-{month:02}-{day:02}"),
            )
        })?;
    let time = time_of(hour, minute, sec)?;
    let micros = NaiveDateTime::new(date, time).and_utc().timestamp_micros();
    Ok(ScalarValue::TimestampMicrosecond(Some(micros), None))
}

fn time_of(hour: i32, minute: i32, sec: f64) -> Result<NaiveTime> {
    seconds(sec)
        .and_then(|(s, us)| {
            NaiveTime::from_hms_micro_opt(
                u32::try_from(hour).ok()?,
                u32::try_from(minute).ok()?,
                s,
                us,
            )
        })
        .ok_or_else(|| {
            pg_error(
                "22008",
                format!("time field value out of range: {hour:02}:{minute:02}:{sec:02}"),
            )
        })
}

fn make_time(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(hour), Some(minute), Some(sec)) = (int(&a[0]), int(&a[1]), float(&a[2])) else {
        return Ok(ScalarValue::Time64Microsecond(None));
    };
    let t = time_of(hour, minute, sec)?;
    let micros =
        i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000);
    Ok(ScalarValue::Time64Microsecond(Some(micros)))
}

fn list_of_text() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// `pattern` compiled with Postgres' regular-expression flags (once per thread): by
/// default `.` matches a newline and `^`/`$` match at the ends only; `n` (and `m`)
/// make matching newline-sensitive, `p` and `w` half of it, `s` undoes them.
fn split_regex(pattern: &str, flags: &str) -> Result<regex::Regex> {
    cached_regex("split", pattern, flags, || {
        build_split_regex(pattern, flags)
    })
}

fn build_split_regex(pattern: &str, flags: &str) -> Result<regex::Regex> {
    let (mut dot_newline, mut lines, mut insensitive, mut expanded) = (true, false, false, false);
    for flag in flags.chars() {
        match flag {
            'i' => insensitive = true,
            'c' => insensitive = false,
            'n' | 'm' => (dot_newline, lines) = (false, true),
            's' => (dot_newline, lines) = (true, false),
            'p' => (dot_newline, lines) = (false, false),
            'w' => (dot_newline, lines) = (true, true),
            'x' => expanded = true,
            't' => expanded = false,
            'g' => {
                return Err(pg_error(
                    "22023",
                    "regexp_split_to_array() does not support the \"global\" option",
                ))
            }
            other => {
                return Err(pg_error(
                    "22023",
                    format!("invalid regular expression option: \"{other}\""),
                ))
            }
        }
    }
    let re = regex::RegexBuilder::new(pattern)
        .case_insensitive(insensitive)
        .dot_matches_new_line(dot_newline)
        .multi_line(lines)
        .ignore_whitespace(expanded)
        .build()
        .map_err(|e| pg_error("2201B", format!("invalid regular expression: {e}")))?;
    Ok(re)
}

thread_local! {
    /// Compiled patterns: kind, pattern, flags and the expression (at most 64).
    static REGEXES: std::cell::RefCell<Vec<(&'static str, String, String, regex::Regex)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `pattern` with `flags`, as `build` compiles it for `kind`, once per thread: a
/// constant pattern is compiled once, not per row (a lookup allocates nothing).
pub(crate) fn cached_regex<E>(
    kind: &'static str,
    pattern: &str,
    flags: &str,
    build: impl FnOnce() -> std::result::Result<regex::Regex, E>,
) -> std::result::Result<regex::Regex, E> {
    let found = REGEXES.with(|r| {
        r.borrow()
            .iter()
            .find(|(k, p, f, _)| *k == kind && p == pattern && f == flags)
            .map(|(_, _, _, re)| re.clone())
    });
    if let Some(re) = found {
        return Ok(re);
    }
    let re = build()?;
    REGEXES.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() >= 64 {
            r.clear();
        }
        r.push((kind, pattern.to_string(), flags.to_string(), re.clone()));
    });
    Ok(re)
}

/// The pieces of `text` between the matches of `pattern`, skipping empty matches at
/// the start, at the end and right after a match, as Postgres splits.
fn regexp_split_to_array(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(s), Some(pattern)) = (text(&a[0]), text(&a[1])) else {
        return ScalarValue::try_from(&list_of_text());
    };
    let flags = match a.get(2) {
        None => "",
        Some(f) => match text(f) {
            Some(f) => f,
            None => return ScalarValue::try_from(&list_of_text()),
        },
    };
    let re = split_regex(pattern, flags)?;
    let mut pieces = Vec::new();
    let (mut start, mut last_end) = (0, None);
    for m in re.find_iter(s) {
        if m.start() == m.end()
            && (m.start() == 0 || m.start() == s.len() || Some(m.start()) == last_end)
        {
            continue;
        }
        pieces.push(ScalarValue::Utf8(Some(s[start..m.start()].to_string())));
        start = m.end();
        last_end = Some(m.end());
    }
    pieces.push(ScalarValue::Utf8(Some(s[start..].to_string())));
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &pieces,
        &DataType::Utf8,
    )))
}

/// The widest field `format` pads to (Postgres takes up to `INT_MAX`, and a result of
/// up to 1 GB; here a field is kept to a size a row may have).
const MAX_WIDTH: usize = 10_000_000;

/// `format(template, args…)`: `%s` (text, NULL as nothing), `%I` (an identifier,
/// quoted when it must be), `%L` (a literal, `NULL` unquoted), `%%`, with an argument
/// position (`%2$s`), a width and `-` to pad on the right, as Postgres' `format`.
fn format(a: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(template) = text(&a[0]) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let args = &a[1..];
    let invalid = |m: String| pg_error("22023", m);
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // `n$`, then flags and a width.
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let mut width = None;
        if chars.peek() == Some(&'$') {
            chars.next();
            let position: usize = digits.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                invalid("format specifies argument 0, but arguments are numbered from 1".into())
            })?;
            next = position - 1;
            digits.clear();
        } else if !digits.is_empty() {
            width = digits.parse::<usize>().ok();
            digits.clear();
        }
        let mut left = false;
        while chars.peek() == Some(&'-') {
            left = true;
            chars.next();
        }
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if !digits.is_empty() {
            width = digits.parse::<usize>().ok();
        }
        let Some(kind) = chars.next() else {
            return Err(invalid("unterminated format() type specifier".into()));
        };
        if !matches!(kind, 's' | 'I' | 'L') {
            return Err(DataFusionError::External(Box::new(SqlStateError {
                code: "22023",
                message: format!("unrecognized format() type specifier \"{kind}\""),
                detail: None,
                hint: Some("For a single \"%\" use \"%%\".".into()),
            })));
        }
        let value = args
            .get(next)
            .ok_or_else(|| invalid("too few arguments for format()".into()))?;
        next += 1;
        let value = text(value);
        let piece = match kind {
            's' => value.unwrap_or("").to_string(),
            'I' => match value {
                Some(v) => crate::pg_catalog::functions::quote_ident(v),
                None => {
                    return Err(pg_error(
                        "22004",
                        "null values cannot be formatted as an SQL identifier",
                    ))
                }
            },
            _ => match value {
                None => "NULL".to_string(),
                Some(v) => quote_literal(v),
            },
        };
        let width = width.unwrap_or(0);
        if width > MAX_WIDTH {
            return Err(pg_error(
                "54000",
                format!("format() width {width} is larger than {MAX_WIDTH}"),
            ));
        }
        let pad = width.saturating_sub(piece.chars().count());
        if left {
            out.push_str(&piece);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&piece);
        }
    }
    Ok(ScalarValue::Utf8(Some(out)))
}

/// `v` as an SQL string literal (`E'…'` when it holds a backslash), as Postgres'
/// `quote_literal`.
fn quote_literal(v: &str) -> String {
    if v.contains('\\') {
        format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", v.replace('\'', "''"))
    }
}

/// The positional function `make_interval(…)` is planned as (its arguments are named).
const MAKE_INTERVAL: &str = "__freshet_make_interval";

/// `make_interval`'s arguments, in order, each 0 unless given.
const INTERVAL_PARTS: [&str; 7] = ["years", "months", "weeks", "days", "hours", "mins", "secs"];

fn make_interval(a: &[ScalarValue]) -> Result<ScalarValue> {
    let parts: Option<Vec<i32>> = a[..6].iter().map(int).collect();
    let (Some(p), Some(secs)) = (parts, float(&a[6])) else {
        return Ok(ScalarValue::IntervalMonthDayNano(None));
    };
    let out_of_range = || pg_error("22008", "interval out of range");
    let months = i64::from(p[0]) * 12 + i64::from(p[1]);
    let days = i64::from(p[2]) * 7 + i64::from(p[3]);
    let nanos = (i64::from(p[4]) * 3600 + i64::from(p[5]) * 60) as f64 * 1e9 + secs * 1e9;
    if !nanos.is_finite() || nanos.abs() >= 9.2e18 {
        return Err(out_of_range());
    }
    Ok(interval_value(
        i32::try_from(months).map_err(|_| out_of_range())?,
        i32::try_from(days).map_err(|_| out_of_range())?,
        // Microseconds, as Postgres keeps them.
        (nanos / 1000.0).round() as i64 * 1000,
    ))
}

/// `make_interval(days => 1, hours => 2)` (or positional) as [`MAKE_INTERVAL`]'s seven
/// arguments; `None` for a name it does not take.
fn make_interval_call(f: &Function) -> Option<Expr> {
    if f.name.0.len() != 1 || !f.name.to_string().eq_ignore_ascii_case("make_interval") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return Some(call(MAKE_INTERVAL, zeros()));
    };
    let mut args = zeros();
    for (i, a) in list.args.iter().enumerate() {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => *args.get_mut(i)? = e.clone(),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                let at = INTERVAL_PARTS
                    .iter()
                    .position(|p| name.value.eq_ignore_ascii_case(p))?;
                args[at] = e.clone();
            }
            FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                let at = INTERVAL_PARTS
                    .iter()
                    .position(|p| name.value.eq_ignore_ascii_case(p))?;
                args[at] = e.clone();
            }
            _ => return None,
        }
    }
    Some(call(MAKE_INTERVAL, args))
}

fn zeros() -> Vec<Expr> {
    (0..7)
        .map(|_| Expr::value(crate::sqlparser::ast::Value::Number("0".into(), false)))
        .collect()
}

fn cast(e: Expr, data_type: SqlType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(e),
        data_type,
        array: false,
        format: None,
    }
}

/// `extract(century | millennium | decade FROM x)` as Postgres computes them from the
/// (astronomical) year: the 21st century is 2001–2100, year 1 BC is in century -1,
/// decade 0 is years 0–9; of an interval, its years divided (as an `integer`, the type
/// `extract(year …)` has here).
fn year_part(field: &str, x: &Expr) -> Option<Expr> {
    use crate::sqlparser::ast::{BinaryOperator as B, Value};
    let (span, offset) = match field.trim_matches('\'').to_ascii_lowercase().as_str() {
        "century" | "centuries" | "c" | "cent" => (100, 99),
        "millennium" | "millennia" | "mil" | "mils" | "millenniums" => (1000, 999),
        "decade" | "decades" | "dec" | "decs" => (10, 0),
        _ => return None,
    };
    let n = |v: i64| Expr::value(Value::Number(v.to_string(), false));
    let year = cast(
        call(
            "date_part",
            vec![
                Expr::value(Value::SingleQuotedString("year".into())),
                x.clone(),
            ],
        ),
        SqlType::Int(None),
    );
    let op = |l: Expr, op: B, r: Expr| {
        Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(l),
            op,
            right: Box::new(r),
        }))
    };
    // Postgres: AD `(y + offset) / span` (a decade: `y / 10` from year 0 on); BC
    // `-((offset' - (y - 1)) / span)`, offset' being 8 for decades; an interval's years
    // `/ span`, truncated.
    let (positive, bc_offset) = if span == 10 {
        (op(year.clone(), B::GtEq, n(0)), 8)
    } else {
        (op(year.clone(), B::Gt, n(0)), offset)
    };
    let of_interval = Expr::Like {
        negated: false,
        any: false,
        expr: Box::new(call("arrow_typeof", vec![x.clone()])),
        pattern: Box::new(Expr::value(Value::SingleQuotedString("Interval%".into()))),
        escape_char: None,
    };
    let interval = op(year.clone(), B::Divide, n(span));
    let ad = op(op(year.clone(), B::Plus, n(offset)), B::Divide, n(span));
    let bc = Expr::UnaryOp {
        op: crate::sqlparser::ast::UnaryOperator::Minus,
        expr: Box::new(op(
            op(n(bc_offset), B::Minus, op(year, B::Minus, n(1))),
            B::Divide,
            n(span),
        )),
    };
    Some(Expr::Case {
        case_token: crate::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        end_token: crate::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![
            crate::sqlparser::ast::CaseWhen {
                condition: of_interval,
                result: interval,
            },
            crate::sqlparser::ast::CaseWhen {
                condition: positive,
                result: ad,
            },
        ],
        else_result: Some(Box::new(bc)),
    })
}

/// The plain arguments of a call named `name` (one part, any case).
fn plain_args<'a>(f: &'a Function, name: &str) -> Option<Vec<&'a Expr>> {
    if f.name.0.len() != 1 || !f.name.to_string().eq_ignore_ascii_case(name) || f.over.is_some() {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// The statement's forms of these functions that are other expressions (see the
/// module). Names are kept: a select item is named as Postgres names it.
pub fn rewrite(stmt: &mut Statement) {
    crate::naming::keep_call_names(stmt, rewritten_call);
    // An `extract` computed by `year_part` is still named `extract`.
    crate::naming::keep_names(stmt, |e| match e {
        Expr::Extract { field, expr, .. } if year_part(&field.to_string(), expr).is_some() => {
            Some("extract".to_string())
        }
        _ => None,
    });
    let _ = crate::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        let replaced = match &*e {
            Expr::UnaryOp {
                op: UnaryOperator::BitwiseNot,
                expr,
            } => Some(call(BITWISE_NOT, vec![(**expr).clone()])),
            // Postgres' `@` is `abs` in the operand's type; `|/` and `||/` take and give
            // `double precision`.
            Expr::UnaryOp {
                op: UnaryOperator::PGAbs,
                expr,
            } => Some(call("abs", vec![(**expr).clone()])),
            Expr::UnaryOp {
                op: op @ (UnaryOperator::PGSquareRoot | UnaryOperator::PGCubeRoot),
                expr,
            } => {
                let double = Expr::Cast {
                    kind: crate::sqlparser::ast::CastKind::DoubleColon,
                    expr: Box::new(Expr::Nested(expr.clone())),
                    data_type: crate::sqlparser::ast::DataType::DoublePrecision,
                    array: false,
                    format: None,
                };
                let f = match op {
                    UnaryOperator::PGSquareRoot => "sqrt",
                    _ => "cbrt",
                };
                Some(call(f, vec![double]))
            }
            Expr::Function(f) => rewritten(f),
            Expr::Extract { field, expr, .. } => year_part(&field.to_string(), expr),
            _ => None,
        };
        if let Some(r) = replaced {
            *e = r;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn rewritten_call(e: &Expr) -> Option<&Function> {
    match e {
        Expr::Function(f) if rewritten(f).is_some() => Some(f),
        _ => None,
    }
}

/// Postgres' names of functions DataFusion has under another name (aggregates keep
/// their DISTINCT, ORDER BY and FILTER).
const RENAMED: &[(&str, &str)] = &[
    ("ceiling", "ceil"),
    ("variance", "var_samp"),
    ("every", "bool_and"),
];

fn rewritten(f: &Function) -> Option<Expr> {
    let owned = |args: Vec<&Expr>| args.into_iter().cloned().collect::<Vec<_>>();
    if let [part] = f.name.0.as_slice() {
        let name = part.as_ident().map(crate::naming::ident_name);
        if let Some((_, to)) = RENAMED
            .iter()
            .find(|(from, _)| name.as_deref() == Some(from))
        {
            let mut renamed = f.clone();
            renamed.name =
                crate::sqlparser::ast::ObjectName::from(vec![crate::sqlparser::ast::Ident::new(
                    *to,
                )]);
            return Some(Expr::Function(renamed));
        }
    }
    if let Some([a, b]) = plain_args(f, "mod").as_deref() {
        // Postgres' `mod` is `%`: the sign of the dividend, an error on a zero divisor.
        return Some(Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new((*a).clone()))),
            op: crate::sqlparser::ast::BinaryOperator::Modulo,
            right: Box::new(Expr::Nested(Box::new((*b).clone()))),
        })));
    }
    if let Some(c) = make_interval_call(f) {
        return Some(c);
    }
    if let Some(
        [Expr::Value(crate::sqlparser::ast::ValueWithSpan {
            value: crate::sqlparser::ast::Value::SingleQuotedString(p),
            ..
        }), x],
    ) = plain_args(f, "date_part").as_deref()
    {
        if let Some(e) = year_part(p, x) {
            return Some(cast(e, SqlType::DoublePrecision));
        }
    }
    if let Some([field, x, zone]) = plain_args(f, "date_trunc").as_deref() {
        // Truncated in the zone's wall-clock time, read back as a `timestamptz` (a
        // `timestamp` is read in the session's zone first, as Postgres casts it).
        let wall = Expr::AtTimeZone {
            timestamp: Box::new(cast(
                (*x).clone(),
                SqlType::Timestamp(None, TimezoneInfo::WithTimeZone),
            )),
            time_zone: Box::new((*zone).clone()),
        };
        return Some(Expr::AtTimeZone {
            timestamp: Box::new(call("date_trunc", vec![(*field).clone(), wall])),
            time_zone: Box::new((*zone).clone()),
        });
    }
    if let Some(args) = plain_args(f, "regexp_split_to_table").filter(|a| matches!(a.len(), 2 | 3))
    {
        return Some(call(
            "unnest",
            vec![call("regexp_split_to_array", owned(args))],
        ));
    }
    if let Some(args) = plain_args(f, "string_to_table").filter(|a| matches!(a.len(), 2 | 3)) {
        // A row per piece (`crate::series` keeps the set in the select list).
        return Some(call("unnest", vec![call("string_to_array", owned(args))]));
    }
    if let Some([x]) = plain_args(f, "age").as_deref() {
        // Today's midnight in the session's zone: `now()`, so that a view, whose rows
        // cannot follow the date, refuses it as it refuses `now()`.
        let today = cast(
            cast(call("now", vec![]), SqlType::Date),
            SqlType::Timestamp(None, TimezoneInfo::None),
        );
        return Some(call("age", vec![today, (*x).clone()]));
    }
    if let Some(args) = plain_args(f, "make_timestamptz") {
        return match args.len() {
            6 => Some(cast(
                call("make_timestamp", owned(args)),
                SqlType::Timestamp(None, TimezoneInfo::WithTimeZone),
            )),
            7 => {
                // A numeric offset is ISO here (`'+05:30'` is east), where AT TIME ZONE
                // reads it as POSIX (west): its sign is turned.
                let zone = match args[6] {
                    Expr::Value(v) => match &v.value {
                        crate::sqlparser::ast::Value::SingleQuotedString(z)
                            if z.len() > 1
                                && z.starts_with(['+', '-'])
                                && z[1..].starts_with(|c: char| c.is_ascii_digit()) =>
                        {
                            let turned = if z.starts_with('+') { "-" } else { "+" };
                            Expr::value(crate::sqlparser::ast::Value::SingleQuotedString(format!(
                                "{turned}{}",
                                &z[1..]
                            )))
                        }
                        _ => args[6].clone(),
                    },
                    other => other.clone(),
                };
                Some(Expr::AtTimeZone {
                    timestamp: Box::new(call("make_timestamp", owned(args[..6].to_vec()))),
                    time_zone: Box::new(zone),
                })
            }
            _ => None,
        };
    }
    if let Some(args) = plain_args(f, "format") {
        // Each value as Postgres writes it as text (the template is text already).
        let already = args.iter().skip(1).all(|a| is_text_cast(a));
        if args.len() > 1 && !already {
            let mut out = vec![args[0].clone()];
            out.extend(args[1..].iter().map(|a| cast((*a).clone(), SqlType::Text)));
            return Some(call("format", out));
        }
    }
    if plain_args(f, "gen_random_uuid").is_some_and(|a| a.is_empty()) {
        return Some(call("uuid", vec![]));
    }
    None
}

fn is_text_cast(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Cast {
            data_type: SqlType::Text,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, nanos: i64) -> ScalarValue {
        interval_value(months, days, nanos)
    }

    fn ts(s: &str) -> ScalarValue {
        let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("timestamp");
        ScalarValue::TimestampMicrosecond(Some(t.and_utc().timestamp_micros()), None)
    }

    const HOUR: i64 = 3_600_000_000_000;

    /// Each expectation is PostgreSQL 15's answer to the same call.
    #[test]
    fn computes_as_postgres() {
        let f = |x: f64| ScalarValue::Float64(Some(x));
        let bucket = |a: f64, l: f64, h: f64, n: i32| {
            width_bucket(&[f(a), f(l), f(h), ScalarValue::Int32(Some(n))]).expect("bucket")
        };
        assert_eq!(bucket(5.35, 0.024, 10.06, 5), ScalarValue::Int32(Some(3)));
        assert_eq!(bucket(-1.0, 0.0, 10.0, 5), ScalarValue::Int32(Some(0)));
        assert_eq!(bucket(10.0, 0.0, 10.0, 5), ScalarValue::Int32(Some(6)));
        assert_eq!(bucket(9.0, 10.0, 0.0, 5), ScalarValue::Int32(Some(1)));
        assert_eq!(
            justify_hours(&[iv(0, 0, 27 * HOUR)]).expect("j"),
            iv(0, 1, 3 * HOUR)
        );
        assert_eq!(justify_days(&[iv(0, 35, 0)]).expect("j"), iv(1, 5, 0));
        assert_eq!(
            justify_interval(&[iv(1, 0, -HOUR)]).expect("j"),
            iv(0, 29, 23 * HOUR)
        );
        assert_eq!(
            age(&[ts("2024-03-01 00:00:00"), ts("2024-01-31 00:00:00")]).expect("age"),
            iv(1, 1, 0)
        );
        assert_eq!(
            age(&[ts("2001-04-10 00:00:00"), ts("1957-06-13 00:00:00")]).expect("age"),
            iv(43 * 12 + 9, 27, 0)
        );
        assert_eq!(
            age(&[ts("2024-01-31 00:00:00"), ts("2024-03-01 00:00:00")]).expect("age"),
            iv(-1, -1, 0)
        );
        let t = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
        let split = regexp_split_to_array(&[t("hello"), t("")]).expect("split");
        assert_eq!(split.to_string(), "[h, e, l, l, o]");
        let split = regexp_split_to_array(&[t("a1b22c"), t("\\d+")]).expect("split");
        assert_eq!(split.to_string(), "[a, b, c]");
        assert_eq!(
            format(&[
                t("%s|%5s|%-5s|%I|%L|%L|%%|%2$s"),
                t("a"),
                t("b"),
                t("c"),
                t("A b"),
                t("it's"),
                ScalarValue::Utf8(None)
            ])
            .expect("format"),
            t("a|    b|c    |\"A b\"|'it''s'|NULL|%|b")
        );
    }
}
