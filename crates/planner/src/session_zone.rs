//! The session's time zone where Postgres reads one (`SET TIME ZONE`, the `TimeZone`
//! a driver sends at startup).
//!
//! A `timestamptz` is an instant; Postgres turns it into calendar fields, and calendar
//! text into it, in the session's zone. In a session at `America/New_York`:
//!
//! - `'2024-03-10 00:00'::timestamptz` (and a `timestamp` or `date` made a `timestamptz`,
//!   also by a comparison with a `timestamptz` column) is New York's midnight, 05:00 UTC;
//! - `ts::date`, `ts::timestamp`, `date_trunc('day', ts)`, `extract(hour FROM ts)`,
//!   `to_char(ts, …)` and `current_date` read New York's calendar and clock;
//! - `ts + interval '1 day'` keeps the wall-clock time across a change to summer time.
//!
//! DataFusion does all of these in UTC. The analyzer rule [`SessionZone`] (after type
//! coercion) moves each into the zone: Arrow reads text, dates and `timestamp`s cast to a
//! timestamp type with a zone in that zone, and computes calendar fields, `date_trunc`
//! and interval arithmetic of such a value in it; each result is cast back to the type it
//! had, so no column's type changes. In UTC the rule does nothing.
//!
//! A query is planned in its session's zone, and a materialized view in the zone of the
//! session that created it ([`crate::catalog::ViewDef::time_zone`]; UTC for views from
//! before): its rows do not depend on who reads them, and equal its query run in that
//! zone. The zone a context plans in is its [`PlanZone`] ([`set`]).

use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type, IntervalUnit, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

use crate::pg_text::Zone;
use crate::sqlparser::ast::{visit_expressions_mut, VisitMut};

/// The zone a context plans in (a config extension), shared with its rules.
#[derive(Debug)]
pub struct PlanZone(Arc<RwLock<Zone>>);

impl Default for PlanZone {
    fn default() -> Self {
        PlanZone(Arc::new(RwLock::new(Zone::Utc)))
    }
}

impl PlanZone {
    /// The zone, shared with what reads it (it changes with [`set`]).
    pub fn handle(&self) -> Arc<RwLock<Zone>> {
        self.0.clone()
    }
}

/// `ctx`'s plan zone, shared (UTC for a context without one).
pub fn handle(ctx: &SessionContext) -> Arc<RwLock<Zone>> {
    ctx.state()
        .config()
        .get_extension::<PlanZone>()
        .map(|z| z.handle())
        .unwrap_or_else(|| Arc::new(RwLock::new(Zone::Utc)))
}

/// Makes `ctx` plan in `zone`.
pub fn set(ctx: &SessionContext, zone: Zone) {
    write(&handle(ctx), zone);
}

/// The zone in `handle`.
pub fn read(handle: &RwLock<Zone>) -> Zone {
    match handle.read() {
        Ok(z) => *z,
        Err(poisoned) => *poisoned.into_inner(),
    }
}

fn write(handle: &RwLock<Zone>, zone: Zone) {
    match handle.write() {
        Ok(mut z) => *z = zone,
        Err(poisoned) => *poisoned.into_inner() = zone,
    }
}

/// The wall-clock times in `zone` of timestamps (instants): `timestamp`s in their unit.
fn wall_clock_in(array: &ArrayRef, zone: &Zone) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return Err(DataFusionError::Internal(format!(
            "a wall clock of {}",
            array.data_type()
        )));
    };
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let ticks = datafusion::arrow::compute::cast(array, &DataType::Int64)?;
    let local: datafusion::arrow::array::Int64Array =
        ticks.as_primitive::<Int64Type>().unary(|v| {
            let utc = chrono::DateTime::from_timestamp(v.div_euclid(per_second), 0)
                .map(|t| t.naive_utc());
            let offset = utc.map_or(0, |t| i64::from(zone.offset_at(&t)));
            v.saturating_add(offset.saturating_mul(per_second))
        });
    Ok(datafusion::arrow::compute::cast(
        &(Arc::new(local) as ArrayRef),
        &DataType::Timestamp(*unit, None),
    )?)
}

/// `values` as `to`, across the session's `zone` as Postgres converts: a `timestamp` or
/// `date` made a `timestamptz` read as wall-clock time there, a `timestamptz` made a
/// `timestamp` or `date` its wall-clock time there. For the values parameters and
/// DML carry; `None` when the plain cast is right (other types, or UTC).
pub fn convert(values: &ArrayRef, to: &DataType, zone: &Zone) -> Option<Result<ArrayRef>> {
    zone.arrow_tz()?;
    let from = values.data_type();
    let cast = |a: ArrayRef| Ok(datafusion::arrow::compute::cast(&a, to)?);
    match (utc_unit(from), to) {
        (None, DataType::Timestamp(_, Some(tz)))
            if is_utc(tz) && matches!(from, DataType::Timestamp(_, None) | DataType::Date32) =>
        {
            Some(read_in_zone(values, zone, false).and_then(cast))
        }
        (Some(_), DataType::Timestamp(_, None) | DataType::Date32) => {
            Some(wall_clock_in(values, zone).and_then(cast))
        }
        _ => None,
    }
}

/// `strings` read as `to` in `zone`, for the casts COPY makes itself: `None` unless
/// `to` is a `timestamptz` and `zone` is not UTC (Arrow's cast reads them in UTC then).
/// `safe`: text that is no timestamp is NULL, not an error.
pub fn read_text(
    strings: &ArrayRef,
    to: &DataType,
    zone: &Zone,
    safe: bool,
) -> Option<Result<ArrayRef>> {
    match to {
        DataType::Timestamp(_, Some(tz)) if is_utc(tz) && zone.arrow_tz().is_some() => Some(
            read_in_zone(strings, zone, safe)
                .and_then(|a| Ok(datafusion::arrow::compute::cast(&a, to)?)),
        ),
        _ => None,
    }
}

/// Writes the offset into each `timestamptz` literal of `node` that has none
/// (`timestamptz '2024-03-09 00:00'`, `'…'::timestamptz`), read in `zone`. The analyzer
/// rule reads them so too, but DataFusion computes a table function's arguments
/// (`generate_series(timestamptz '…', …)`) before any analyzer rule runs.
pub fn offset_literals<T: VisitMut>(node: &mut T, zone: &Zone) {
    use crate::sqlparser::ast::{Expr as Ast, Value};
    if zone.arrow_tz().is_none() {
        return;
    }
    let local = |micros| crate::pg_at_time_zone::from_local(micros, zone);
    let _ = visit_expressions_mut(node, |e| {
        let literal = match e {
            Ast::TypedString(ts) if is_timestamptz(&ts.data_type) => Some(&mut ts.value.value),
            Ast::Cast {
                expr, data_type, ..
            } if is_timestamptz(data_type) => match expr.as_mut() {
                Ast::Value(v) => Some(&mut v.value),
                _ => None,
            },
            _ => None,
        };
        if let Some(Value::SingleQuotedString(s)) = literal {
            let utc = text_in_zone(s, &local)
                .ok()
                .and_then(chrono::DateTime::from_timestamp_micros);
            if let Some(utc) = utc {
                *s = utc.format("%Y-%m-%d %H:%M:%S%.f+00:00").to_string();
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_timestamptz(t: &crate::sqlparser::ast::DataType) -> bool {
    use crate::sqlparser::ast::{DataType as T, TimezoneInfo};
    matches!(
        t,
        T::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz)
    )
}

/// Moves a plan's zone-dependent expressions into the plan zone (see the module).
#[derive(Debug)]
pub struct SessionZone {
    zone: Arc<RwLock<Zone>>,
}

impl SessionZone {
    pub fn new(zone: Arc<RwLock<Zone>>) -> SessionZone {
        SessionZone { zone }
    }
}

impl AnalyzerRule for SessionZone {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let Some(tz) = read(&self.zone).arrow_tz() else {
            return Ok(plan);
        };
        crate::expr_rules::rewrite_expressions(
            plan,
            |_| false,
            wanted,
            |e, schema| rewrite(e, schema, &tz, config),
        )
    }
    fn name(&self) -> &str {
        "freshet_session_zone"
    }
}

fn wanted(e: &Expr) -> bool {
    match e {
        Expr::Cast(Cast { field, .. }) | Expr::TryCast(TryCast { field, .. }) => {
            matches!(
                field.data_type(),
                DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Time64(_)
                    | DataType::Time32(_)
            )
        }
        Expr::ScalarFunction(f) => ZONED_FUNCTIONS.contains(&f.func.name()),
        Expr::BinaryExpr(b) => matches!(b.op, Operator::Plus | Operator::Minus),
        _ => false,
    }
}

/// The functions whose result depends on the zone they read a `timestamptz` in.
const ZONED_FUNCTIONS: [&str; 5] = [
    "date_trunc",
    "date_part",
    "to_char",
    "current_date",
    "to_timestamp",
];

fn is_utc(tz: &str) -> bool {
    matches!(tz, "+00:00" | "+00" | "+0000" | "UTC" | "Z")
}

/// A `timestamptz` (in its UTC form, as every one is before this rule).
fn utc_unit(t: &DataType) -> Option<TimeUnit> {
    match t {
        DataType::Timestamp(unit, Some(tz)) if is_utc(tz) => Some(*unit),
        _ => None,
    }
}

fn rewrite(
    e: Expr,
    schema: &DFSchema,
    tz: &Arc<str>,
    config: &ConfigOptions,
) -> Result<Transformed<Expr>> {
    let zoned = |unit: TimeUnit| DataType::Timestamp(unit, Some(tz.clone()));
    let out = match &e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            let data_type = field.data_type();
            let try_ = matches!(e, Expr::TryCast(_));
            let cast = |x: Expr, t: DataType| {
                if try_ {
                    Expr::TryCast(TryCast::new(Box::new(x), t))
                } else {
                    Expr::Cast(Cast::new(Box::new(x), t))
                }
            };
            let from = expr.get_type(schema)?;
            match (utc_unit(&from), data_type) {
                // Text, a date or a wall-clock time read in the zone.
                (None, DataType::Timestamp(_, Some(to)))
                    if is_utc(to.as_ref())
                        && (from.is_null()
                            || matches!(
                                from,
                                DataType::Utf8
                                    | DataType::LargeUtf8
                                    | DataType::Utf8View
                                    | DataType::Date32
                                    | DataType::Date64
                                    | DataType::Timestamp(_, None)
                            )) =>
                {
                    let read = Expr::ScalarFunction(ScalarFunction::new_udf(
                        in_zone(tz, try_),
                        vec![(**expr).clone()],
                    ));
                    Some(Expr::Cast(Cast {
                        expr: Box::new(read),
                        field: field.clone(),
                    }))
                }
                // The zone's calendar day.
                (Some(unit), DataType::Date32 | DataType::Date64) => {
                    let local = Expr::Cast(Cast::new(expr.clone(), zoned(unit)));
                    Some(cast(local, data_type.clone()))
                }
                // The zone's wall-clock time (and time of day).
                (
                    Some(unit),
                    DataType::Timestamp(_, None) | DataType::Time64(_) | DataType::Time32(_),
                ) => {
                    let local = Expr::Cast(Cast::new(expr.clone(), zoned(unit)));
                    let wall =
                        Expr::ScalarFunction(ScalarFunction::new_udf(wall_clock(), vec![local]));
                    Some(cast(wall, data_type.clone()))
                }
                _ => None,
            }
        }
        Expr::ScalarFunction(f) => {
            let name = f.func.name();
            let types = f
                .args
                .iter()
                .map(|a| a.get_type(schema))
                .collect::<Result<Vec<_>>>()?;
            if let Some(read) = crate::pg_to_date::in_zone(&f.func, &types, tz) {
                // `to_timestamp(text, template)` reads wall-clock times in the zone.
                Some(Expr::ScalarFunction(ScalarFunction::new_udf(
                    read,
                    f.args.clone(),
                )))
            } else if name == "current_date" && f.args.is_empty() {
                let now = Expr::ScalarFunction(ScalarFunction::new_udf(
                    datafusion::functions::datetime::now(config),
                    vec![],
                ));
                let t = e.get_type(schema)?;
                let local = Expr::Cast(Cast::new(Box::new(now), zoned(TimeUnit::Nanosecond)));
                Some(Expr::Cast(Cast::new(Box::new(local), t)))
            } else {
                // The `timestamptz` argument: the second of date_trunc and date_part,
                // the first of to_char.
                let at = usize::from(name != "to_char");
                match f.args.get(at).map(|a| a.get_type(schema)).transpose()? {
                    Some(t) if utc_unit(&t).is_some() => {
                        let unit = utc_unit(&t).unwrap_or(TimeUnit::Nanosecond);
                        let result = e.get_type(schema)?;
                        let mut args = f.args.clone();
                        args[at] = Expr::Cast(Cast::new(Box::new(args[at].clone()), zoned(unit)));
                        let call =
                            Expr::ScalarFunction(ScalarFunction::new_udf(f.func.clone(), args));
                        // date_trunc's result is in the zone: back to the type it had.
                        Some(if name == "date_trunc" {
                            Expr::Cast(Cast::new(Box::new(call), result))
                        } else {
                            call
                        })
                    }
                    _ => None,
                }
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (lt, rt) = (left.get_type(schema)?, right.get_type(schema)?);
            let interval = |t: &DataType| matches!(t, DataType::Interval(_));
            let naive = |t: &DataType| matches!(t, DataType::Timestamp(_, None));
            // `timestamptz - timestamp`: the timestamp read in the zone (Arrow subtracts
            // the two as they are).
            let read = |x: &Expr, t: &DataType| {
                let read = Expr::ScalarFunction(ScalarFunction::new_udf(
                    in_zone(tz, false),
                    vec![x.clone()],
                ));
                Box::new(Expr::Cast(Cast::new(Box::new(read), t.clone())))
            };
            if *op == Operator::Minus {
                match (utc_unit(&lt), utc_unit(&rt)) {
                    (Some(_), None) if naive(&rt) => {
                        let moved = BinaryExpr::new(left.clone(), *op, read(right, &lt));
                        return Ok(Transformed::yes(Expr::BinaryExpr(moved)));
                    }
                    (None, Some(_)) if naive(&lt) => {
                        let moved = BinaryExpr::new(read(left, &rt), *op, right.clone());
                        return Ok(Transformed::yes(Expr::BinaryExpr(moved)));
                    }
                    _ => {}
                }
            }
            let (at, span, t) = match (utc_unit(&lt), utc_unit(&rt)) {
                (Some(_), None) if interval(&rt) => (left, right, lt),
                (None, Some(_)) if interval(&lt) && *op == Operator::Plus => (right, left, rt),
                _ => return Ok(Transformed::no(e)),
            };
            let span = Expr::Cast(Cast::new(
                span.clone(),
                DataType::Interval(IntervalUnit::MonthDayNano),
            ));
            let shift = zoned_shift(tz, *op == Operator::Minus);
            let call =
                Expr::ScalarFunction(ScalarFunction::new_udf(shift, vec![(**at).clone(), span]));
            Some(Expr::Cast(Cast::new(Box::new(call), t)))
        }
        _ => None,
    };
    Ok(match out {
        Some(x) => Transformed::yes(x),
        None => Transformed::no(e),
    })
}

/// `timestamptz ± interval` in `zone`, as Postgres adds: the months, then the days, to
/// the wall-clock time there (a month's end clamped: 31 January + 1 month is 29
/// February), read back in the zone as text is ([`crate::pg_at_time_zone::from_local`]:
/// a time the clock skips or shows twice in standard time), then the time part as
/// elapsed time. Arrow's arithmetic in a zone fails on a local time the clock skips.
fn zoned_shift(zone: &str, minus: bool) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(ZonedShift {
        zone: zone.to_string(),
        minus,
        signature: Signature::any(2, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ZonedShift {
    zone: String,
    minus: bool,
    signature: Signature,
}

impl ScalarUDFImpl for ZonedShift {
    fn name(&self) -> &str {
        if self.minus {
            "__freshet_zoned_minus"
        } else {
            "__freshet_zoned_plus"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::TimestampMicrosecondArray;
        use datafusion::arrow::datatypes::{IntervalMonthDayNanoType, TimestampMicrosecondType};
        let [at, span] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(
                "a zoned shift takes a timestamp and an interval".into(),
            ));
        };
        let zone = Zone::parse(&self.zone).unwrap_or(Zone::Utc);
        let n = args.number_rows;
        let at = datafusion::arrow::compute::cast(
            &at.to_array(n)?,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        )?;
        let at = at.as_primitive::<TimestampMicrosecondType>();
        let spans = span.to_array(n)?;
        let spans = spans.as_primitive::<IntervalMonthDayNanoType>();
        let sign = if self.minus { -1 } else { 1 };
        let out: TimestampMicrosecondArray = at
            .iter()
            .zip(spans.iter())
            .map(|(t, s)| {
                let (t, s) = (t?, s?);
                shift(
                    t,
                    sign * s.months,
                    sign * s.days,
                    sign as i64 * s.nanoseconds / 1_000,
                    &zone,
                )
            })
            .collect();
        let out: ArrayRef = Arc::new(out.with_timezone("+00:00"));
        Ok(match (&args.args[0], &args.args[1]) {
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            _ => ColumnarValue::Array(out),
        })
    }
}

/// UTC instant `micros` moved by `months` and `days` of `zone`'s calendar, then by
/// `elapsed` microseconds; `None` out of range.
pub(crate) fn shift(micros: i64, months: i32, days: i32, elapsed: i64, zone: &Zone) -> Option<i64> {
    let mut t = micros;
    if months != 0 || days != 0 {
        let utc = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
        let mut local =
            utc.checked_add_signed(chrono::Duration::seconds(i64::from(zone.offset_at(&utc))))?;
        let step = chrono::Months::new(months.unsigned_abs());
        local = if months >= 0 {
            local.checked_add_months(step)?
        } else {
            local.checked_sub_months(step)?
        };
        local = local.checked_add_signed(chrono::Duration::days(i64::from(days)))?;
        t = crate::pg_at_time_zone::from_local(local.and_utc().timestamp_micros(), zone);
    }
    t.checked_add(elapsed)
}

/// Text, a date or a wall-clock `timestamp` read in `zone`, as a `timestamptz`
/// (microseconds); `safe`: text that is no timestamp is NULL (`TRY_CAST`), not an error.
fn in_zone(zone: &str, safe: bool) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(InZone {
        zone: zone.to_string(),
        safe,
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

/// See [`in_zone`]. Arrow's casts read a time that the zone's clock skips or shows
/// twice (on the days it changes) as an error; Postgres reads it in standard time
/// (`crate::pg_at_time_zone::from_local`), and so does this.
#[derive(Debug, PartialEq, Eq, Hash)]
struct InZone {
    zone: String,
    safe: bool,
    signature: Signature,
}

impl ScalarUDFImpl for InZone {
    fn name(&self) -> &str {
        "__freshet_in_zone"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(
                "reading in a zone takes one value".into(),
            ));
        };
        let zone = Zone::parse(&self.zone).unwrap_or(Zone::Utc);
        let out = read_in_zone(&value.to_array(args.number_rows)?, &zone, self.safe)?;
        Ok(match value {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

/// `array` (text, dates or `timestamp`s) read in `zone`: `timestamptz`s in microseconds
/// (see [`in_zone`]).
fn read_in_zone(array: &ArrayRef, zone: &Zone, safe: bool) -> Result<ArrayRef> {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use datafusion::arrow::datatypes::TimestampMicrosecondType;
    let local = |micros| crate::pg_at_time_zone::from_local(micros, zone);
    let out: TimestampMicrosecondArray = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
            let mut out = Vec::with_capacity(text.len());
            for s in text.as_string::<i32>() {
                out.push(match s.map(|s| text_in_zone(s, &local)).transpose() {
                    Ok(v) => v,
                    Err(_) if safe => None,
                    Err(e) => return Err(e.into()),
                });
            }
            out.into()
        }
        DataType::Null => TimestampMicrosecondArray::new_null(array.len()),
        _ => {
            let wall = datafusion::arrow::compute::cast(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?;
            wall.as_primitive::<TimestampMicrosecondType>().unary(local)
        }
    };
    Ok(Arc::new(out.with_timezone("+00:00")))
}

/// Timestamp text as a `timestamptz` (microseconds): at the offset it names, or else
/// read as wall-clock time by `local`.
fn text_in_zone(
    s: &str,
    local: &impl Fn(i64) -> i64,
) -> std::result::Result<i64, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
    let as_utc = string_to_datetime(&chrono::Utc, s)?;
    // Read at another offset too: the same instant both ways means the text named one.
    let Some(east) = chrono::FixedOffset::east_opt(3600) else {
        return Ok(as_utc.timestamp_micros());
    };
    if as_utc == string_to_datetime(&east, s)? {
        Ok(as_utc.timestamp_micros())
    } else {
        Ok(local(as_utc.naive_utc().and_utc().timestamp_micros()))
    }
}

/// The wall-clock time of a timestamp with a zone, in its zone: a `timestamp`.
fn wall_clock() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(WallClock {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WallClock {
    signature: Signature,
}

impl ScalarUDFImpl for WallClock {
    fn name(&self) -> &str {
        "__freshet_wall_clock"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Timestamp(unit, _)] => Ok(DataType::Timestamp(*unit, None)),
            _ => Err(DataFusionError::Internal(
                "the wall clock takes one timestamp".into(),
            )),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(
                "the wall clock takes one timestamp".into(),
            ));
        };
        let DataType::Timestamp(_, tz) = value.data_type() else {
            return Err(DataFusionError::Internal(
                "the wall clock takes one timestamp".into(),
            ));
        };
        let zone = tz.as_deref().and_then(Zone::parse).unwrap_or(Zone::Utc);
        let out = wall_clock_in(&value.to_array(args.number_rows)?, &zone)?;
        Ok(match value {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::display::array_value_to_string;

    fn answer(zone: &str, sql: &str) -> String {
        let ctx = crate::context::new_session();
        set(&ctx, Zone::parse(zone).expect("zone"));
        let batches = futures::executor::block_on(async {
            ctx.sql(sql)
                .await
                .expect("plans")
                .collect()
                .await
                .expect("runs")
        });
        let b = &batches[0];
        (0..b.num_columns())
            .map(|c| array_value_to_string(b.column(c), 0).expect("text"))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    #[test]
    fn calendar_fields_are_the_sessions() {
        let ny = "America/New_York";
        // 02:00 UTC on 10 March is 21:00 on the 9th in New York.
        let ts = "timestamptz '2024-03-10 02:00:00+00'";
        assert_eq!(
            answer(
                ny,
                &format!("SELECT {ts}::date, extract(hour FROM {ts}), date_part('day', {ts})")
            ),
            "2024-03-09 | 21 | 9"
        );
        assert_eq!(
            answer(
                ny,
                &format!("SELECT date_trunc('day', {ts}), {ts}::timestamp")
            ),
            "2024-03-09T05:00:00Z | 2024-03-09T21:00:00"
        );
        assert_eq!(
            answer(
                "UTC",
                &format!("SELECT {ts}::date, extract(hour FROM {ts})")
            ),
            "2024-03-10 | 2"
        );
    }

    #[test]
    fn text_and_wall_clock_times_are_read_in_the_zone() {
        let ny = "America/New_York";
        assert_eq!(
            answer(ny, "SELECT '2024-03-10 00:00:00'::timestamptz, timestamp '2024-07-01 12:00:00'::timestamptz, date '2024-01-02'::timestamptz"),
            "2024-03-10T05:00:00Z | 2024-07-01T16:00:00Z | 2024-01-02T05:00:00Z"
        );
        // An explicit offset stays what it says.
        assert_eq!(
            answer(ny, "SELECT '2024-03-10 00:00:00+01'::timestamptz"),
            "2024-03-09T23:00:00Z"
        );
        // Onto a local time the clock skips: read before the change, as Postgres does.
        assert_eq!(
            answer(ny, "SELECT timestamptz '2024-03-09 07:30:00+00' + interval '1 day', timestamptz '2024-11-02 05:30:00+00' + interval '1 day', timestamptz '2024-01-31 05:00:00+00' + interval '1 month', timestamptz '2024-03-31 04:00:00+00' - interval '1 month 1 hour'"),
            "2024-03-10T07:30:00Z | 2024-11-03T06:30:00Z | 2024-02-29T05:00:00Z | 2024-02-29T04:00:00Z"
        );
        // Across the change to summer time a day is 23 hours.
        assert_eq!(
            answer(
                ny,
                "SELECT timestamptz '2024-03-09 12:00:00+00' + interval '1 day'"
            ),
            "2024-03-10T11:00:00Z"
        );
    }

    #[test]
    fn copy_reads_text_in_the_zone() {
        let ny = Zone::parse("America/New_York").expect("zone");
        let tz = DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()));
        let text: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec![
            Some("2024-11-03 01:30:00"),
            Some("2024-03-10 02:30:00"),
            Some("2024-03-10 02:30:00+00"),
            None,
            Some("nonsense"),
        ]));
        let read = read_text(&text, &tz, &ny, true)
            .expect("zoned")
            .expect("reads");
        let shown: Vec<String> = (0..read.len())
            .map(|i| array_value_to_string(&read, i).expect("text"))
            .collect();
        // Shown twice: standard time; skipped: read before the change, as Postgres does.
        assert_eq!(
            shown,
            [
                "2024-11-03T06:30:00Z",
                "2024-03-10T07:30:00Z",
                "2024-03-10T02:30:00Z",
                "",
                ""
            ]
        );
        assert!(read_text(&text, &tz, &ny, false).expect("zoned").is_err());
        assert!(read_text(&text, &tz, &Zone::Utc, false).is_none());
        let naive = DataType::Timestamp(TimeUnit::Nanosecond, None);
        assert!(read_text(&text, &naive, &ny, false).is_none());
    }

    #[test]
    fn parameters_convert_across_the_zone() {
        use datafusion::arrow::array::{Date32Array, TimestampMicrosecondArray};
        let ny = Zone::parse("America/New_York").expect("zone");
        let tz = DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()));
        let naive = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let show = |a: ArrayRef| array_value_to_string(&a, 0).expect("text");
        // 2024-03-10 12:00 as wall-clock time: 16:00 UTC in New York (summer time).
        let wall: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1_710_072_000_000_000]));
        let read = convert(&wall, &tz, &ny).expect("zoned").expect("converts");
        assert_eq!(show(read), "2024-03-10T16:00:00Z");
        let day: ArrayRef = Arc::new(Date32Array::from(vec![19_792]));
        let read = convert(&day, &tz, &ny).expect("zoned").expect("converts");
        assert_eq!(show(read), "2024-03-10T05:00:00Z");
        // 02:00 UTC on 11 March is the 10th, 22:00, in New York.
        let instant: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![1_710_122_400_000_000]).with_timezone("+00:00"),
        );
        let local = convert(&instant, &naive, &ny)
            .expect("zoned")
            .expect("converts");
        assert_eq!(show(local), "2024-03-10T22:00:00");
        let date = convert(&instant, &DataType::Date32, &ny)
            .expect("zoned")
            .expect("converts");
        assert_eq!(show(date), "2024-03-10");
        assert!(convert(&instant, &naive, &Zone::Utc).is_none());
    }
}
