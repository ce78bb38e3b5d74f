//! `generate_series` in `FROM` with Postgres' argument types.
//!
//! DataFusion's table function takes `bigint`s, dates and timestamps of literal values,
//! typed exactly. Postgres also takes:
//! - `numeric` and `double precision` bounds and steps (`generate_series(1.5, 3.5, 0.5)`);
//! - untyped string bounds and steps beside a typed first bound
//!   (`generate_series('2024-01-01'::timestamp, '2024-01-02', '1 hour')`);
//! - `date` bounds with an interval step, as `timestamp with time zone` values.
//!
//! [`PgGenerateSeries`] turns these into what DataFusion's function takes, or computes
//! the numeric series itself, and names a call over a column of an outer query (which no
//! table function can take) instead of leaking DataFusion's expression. From dialect
//! level 6 on (`crate::dialect`): a view from before keeps its column types.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Decimal128Array, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, Schema, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

/// The most values a series computed here holds (they are held in memory).
const MAX_NUMERIC_VALUES: usize = 10_000_000;

/// Wraps DataFusion's `generate_series` in `ctx` (see the module).
pub fn register(ctx: &SessionContext) {
    let Ok(inner) = ctx.table_function("generate_series") else {
        return;
    };
    ctx.register_udtf(
        "generate_series",
        Arc::new(PgGenerateSeries {
            inner: inner.function().clone(),
            level: crate::dialect::handle(ctx),
            zone: crate::session_zone::handle(ctx),
        }),
    );
}

#[derive(Debug)]
struct PgGenerateSeries {
    inner: Arc<dyn TableFunctionImpl>,
    /// From dialect level 6 on (`crate::dialect`): a view from before keeps its types.
    level: Arc<AtomicU32>,
    /// The plan zone (`crate::session_zone`): untyped `timestamptz` bounds are read in it.
    zone: Arc<std::sync::RwLock<crate::pg_text::Zone>>,
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn is_text(v: &ScalarValue) -> bool {
    matches!(
        v,
        ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_)
    )
}

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
}

/// `e` cast to `to` if it is a literal (a NULL stays NULL); a timestamp's text as
/// Postgres reads it (`'2024-01-01 02:00'`, without seconds; a `timestamptz` in `zone`).
fn cast(e: &Expr, to: &DataType, zone: &crate::pg_text::Zone) -> Result<Expr> {
    match e {
        Expr::Literal(v, meta) if !v.is_null() && v.data_type() != *to => {
            let v = match v {
                ScalarValue::Utf8(Some(s)) if matches!(to, DataType::Timestamp(..)) => {
                    ScalarValue::Utf8(Some(
                        crate::literals::with_seconds(s).unwrap_or_else(|| s.clone()),
                    ))
                }
                other => other.clone(),
            };
            if matches!(v, ScalarValue::Utf8(_) | ScalarValue::Date32(_)) {
                if let Some(read) = crate::session_zone::read_text(&v.to_array()?, to, zone, false)
                {
                    return Ok(Expr::Literal(
                        ScalarValue::try_from_array(&read?, 0)?,
                        meta.clone(),
                    ));
                }
            }
            Ok(Expr::Literal(v.cast_to(to)?, meta.clone()))
        }
        other => Ok(other.clone()),
    }
}

impl TableFunctionImpl for PgGenerateSeries {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let outer = exprs.iter().any(|e| {
            e.exists(|x| Ok(matches!(x, Expr::OuterReferenceColumn(..))))
                .unwrap_or(false)
        });
        if outer {
            return Err(DataFusionError::NotImplemented(
                "generate_series over a column of an outer query (in a subquery) is not \
                 supported: join it in FROM instead, FROM t, generate_series(1, t.n) AS g(x)"
                    .into(),
            ));
        }
        if self.level.load(Ordering::SeqCst) < 6 {
            return self.inner.call_with_args(args);
        }
        let first = exprs.first().and_then(literal).map(ScalarValue::data_type);
        let numeric = exprs.iter().filter_map(literal).any(|v| {
            matches!(
                v.data_type(),
                DataType::Decimal128(..) | DataType::Float64 | DataType::Float32
            )
        });
        if numeric {
            return numeric_series(exprs);
        }
        let interval = DataType::Interval(IntervalUnit::MonthDayNano);
        let zone = crate::session_zone::read(&self.zone);
        let cast = |e: &Expr, to: &DataType| cast(e, to, &zone);
        let exprs: Vec<Expr> = match first {
            // Postgres runs generate_series(date, date, interval) as timestamptz.
            Some(DataType::Date32) => {
                let mut out = vec![cast(&exprs[0], &timestamptz())?];
                if let Some(end) = exprs.get(1) {
                    out.push(cast(end, &timestamptz())?);
                }
                for step in exprs.iter().skip(2) {
                    out.push(cast(step, &interval)?);
                }
                out
            }
            // Untyped strings take the first bound's type, and an interval step.
            Some(t @ DataType::Timestamp(TimeUnit::Nanosecond, _)) => {
                let mut out = vec![exprs[0].clone()];
                if let Some(end) = exprs.get(1) {
                    out.push(match literal(end) {
                        Some(v) if is_text(v) => cast(end, &t)?,
                        _ => end.clone(),
                    });
                }
                for step in exprs.iter().skip(2) {
                    out.push(match literal(step) {
                        Some(v) if is_text(v) => cast(step, &interval)?,
                        _ => step.clone(),
                    });
                }
                out
            }
            // Integer types other than bigint, as bigint.
            Some(DataType::Int8 | DataType::Int16 | DataType::Int32) => exprs
                .iter()
                .map(|e| cast(e, &DataType::Int64))
                .collect::<Result<_>>()?,
            _ => exprs.to_vec(),
        };
        if let Some(series) = zoned_series(&exprs, &zone)? {
            return Ok(series);
        }
        self.inner
            .call_with_args(TableFunctionArgs::new(&exprs, args.session()))
    }
}

/// A `timestamptz` series stepped by months or days in a session's zone other than UTC,
/// as Postgres steps it: each value the one before plus the step on the zone's calendar
/// (`crate::session_zone::shift`; DataFusion steps in UTC, an hour off after a change
/// to or from summer time). `None` for every other series.
fn zoned_series(
    exprs: &[Expr],
    zone: &crate::pg_text::Zone,
) -> Result<Option<Arc<dyn TableProvider>>> {
    use datafusion::arrow::array::TimestampNanosecondArray;
    if zone.arrow_tz().is_none() {
        return Ok(None);
    }
    let (Some(start), Some(end), Some(step)) = (
        exprs.first().and_then(literal),
        exprs.get(1).and_then(literal),
        exprs.get(2).and_then(literal),
    ) else {
        return Ok(None);
    };
    let (
        ScalarValue::TimestampNanosecond(Some(a), Some(tz)),
        ScalarValue::TimestampNanosecond(Some(b), _),
        ScalarValue::IntervalMonthDayNano(Some(s)),
    ) = (start, end, step)
    else {
        return Ok(None);
    };
    if (s.months == 0 && s.days == 0) || exprs.len() != 3 {
        return Ok(None);
    }
    // Forward if the step is: its months, else its days, else its time.
    let forward = (s.months, s.days, s.nanoseconds) > (0, 0, 0);
    let mut out = Vec::new();
    let mut v = *a;
    while (forward && v <= *b) || (!forward && v >= *b) {
        out.push(v);
        check_size(out.len(), "timestamp")?;
        let next = crate::session_zone::shift(
            v.div_euclid(1_000),
            s.months,
            s.days,
            s.nanoseconds / 1_000,
            zone,
        );
        match next.and_then(|micros| micros.checked_mul(1_000)) {
            Some(n) if n != v => v = n,
            _ => break,
        }
    }
    let t = DataType::Timestamp(TimeUnit::Nanosecond, Some(tz.clone()));
    let schema = Arc::new(Schema::new(vec![Field::new("value", t, false)]));
    let column: ArrayRef = Arc::new(TimestampNanosecondArray::from(out).with_timezone(tz.clone()));
    table(schema, column).map(Some)
}

/// A series of `numeric` (or `double precision`, if any bound or step is one) values,
/// computed here: start, start + step, … up to end, as Postgres computes it.
fn numeric_series(exprs: &[Expr]) -> Result<Arc<dyn TableProvider>> {
    let values: Vec<ScalarValue> = exprs
        .iter()
        .map(|e| {
            literal(e).cloned().ok_or_else(|| {
                DataFusionError::NotImplemented(
                    "generate_series over numeric values takes constant bounds and step".into(),
                )
            })
        })
        .collect::<Result<_>>()?;
    let float = values
        .iter()
        .any(|v| matches!(v.data_type(), DataType::Float64 | DataType::Float32));
    let [start, end, rest @ ..] = values.as_slice() else {
        return Err(DataFusionError::Plan(
            "generate_series over numeric values takes a start and an end".into(),
        ));
    };
    let step = rest.first();
    if rest.len() > 1 {
        return Err(DataFusionError::Plan(
            "generate_series takes at most 3 arguments".into(),
        ));
    }
    let field = |t: DataType| Arc::new(Schema::new(vec![Field::new("value", t, false)]));
    if float {
        let f = |v: &ScalarValue| -> Result<Option<f64>> {
            match v.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(x) => Ok(x),
                _ => Ok(None),
            }
        };
        let one = ScalarValue::Float64(Some(1.0));
        let (Some(a), Some(b), Some(s)) = (f(start)?, f(end)?, f(step.unwrap_or(&one))?) else {
            return empty(field(DataType::Float64));
        };
        if s == 0.0 {
            return Err(step_zero());
        }
        let mut out = Vec::new();
        let mut k = 0.0;
        loop {
            let v = a + k * s;
            if (s > 0.0 && v > b) || (s < 0.0 && v < b) || v.is_nan() {
                break;
            }
            out.push(v);
            check_size(out.len(), "numeric")?;
            k += 1.0;
        }
        let schema = field(DataType::Float64);
        let column: ArrayRef = Arc::new(Float64Array::from(out));
        return table(schema, column);
    }
    // Decimals: one scale for all, the largest of the three (as Postgres shows 2.0).
    let scale = values
        .iter()
        .filter_map(|v| match v.data_type() {
            DataType::Decimal128(_, s) => Some(s),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        .max(0);
    let t = DataType::Decimal128(38, scale);
    let d = |v: &ScalarValue| -> Result<Option<i128>> {
        match v.cast_to(&t)? {
            ScalarValue::Decimal128(x, _, _) => Ok(x),
            _ => Ok(None),
        }
    };
    let unit = ScalarValue::Decimal128(Some(1), 1, 0);
    let (Some(a), Some(b), Some(s)) = (d(start)?, d(end)?, d(step.unwrap_or(&unit))?) else {
        return empty(field(t));
    };
    if s == 0 {
        return Err(step_zero());
    }
    let mut out = Vec::new();
    let mut v = a;
    while (s > 0 && v <= b) || (s < 0 && v >= b) {
        out.push(v);
        check_size(out.len(), "numeric")?;
        match v.checked_add(s) {
            Some(next) => v = next,
            None => break,
        }
    }
    let column: ArrayRef =
        Arc::new(Decimal128Array::from(out).with_precision_and_scale(38, scale)?);
    table(field(t), column)
}

fn step_zero() -> DataFusionError {
    DataFusionError::Execution("step size cannot equal zero".into())
}

fn check_size(n: usize, what: &str) -> Result<()> {
    if n > MAX_NUMERIC_VALUES {
        let hint = if what == "numeric" {
            " (use integers and scale them: generate_series(15, 35, 5) / 10.0)"
        } else {
            ""
        };
        return Err(DataFusionError::NotImplemented(format!(
            "generate_series over {what} values of more than {MAX_NUMERIC_VALUES} values{hint}"
        )));
    }
    Ok(())
}

fn empty(schema: Arc<Schema>) -> Result<Arc<dyn TableProvider>> {
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

fn table(schema: Arc<Schema>, column: ArrayRef) -> Result<Arc<dyn TableProvider>> {
    let batch = RecordBatch::try_new(schema.clone(), vec![column])?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
