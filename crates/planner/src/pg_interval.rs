//! Interval arithmetic and comparison as Postgres defines them.
//!
//! - `interval * number`, `number * interval` and `interval / number` (DataFusion refuses
//!   them): Postgres' `interval_mul`: the months scaled, their fraction carried into days
//!   (30 to a month), the days scaled, their fraction carried into the time of day.
//! - From dialect level 2 (`crate::dialect`), `=`, `<>`, `<`, `<=`, `>`, `>=` between two
//!   intervals compare their spans, a month being 30 days and a day 24 hours:
//!   `interval '24 hours' = interval '1 day'` is true, as in Postgres (DataFusion compared
//!   months, days and time one by one). Views created before keep the old comparison,
//!   which their stored rows were filtered with.
//!   From level 9 a duration (a difference of timestamps) compares with an interval by
//!   its span too.
//! - From level 6, `date + interval`, `interval + date` and `date - interval` are
//!   `timestamp`s, as in Postgres (DataFusion's is a date, without the interval's time).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Decimal128Array, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, IntervalMonthDayNano, IntervalUnit, TimeUnit,
};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

const NANOS_PER_DAY: f64 = 86_400e9;
const NANOS_PER_MICRO: f64 = 1e3;

/// The planner that rewrites interval operations (see the module documentation).
#[derive(Debug)]
pub struct IntervalPlanner {
    mul: Arc<ScalarUDF>,
    div: Arc<ScalarUDF>,
    span: Arc<ScalarUDF>,
    level: Arc<std::sync::atomic::AtomicU32>,
}

impl IntervalPlanner {
    pub fn new(level: Arc<std::sync::atomic::AtomicU32>) -> IntervalPlanner {
        IntervalPlanner {
            mul: Arc::new(ScalarUDF::new_from_impl(IntervalMul::new(false))),
            div: Arc::new(ScalarUDF::new_from_impl(IntervalMul::new(true))),
            span: Arc::new(ScalarUDF::new_from_impl(IntervalSpan::new())),
            level,
        }
    }
}

fn is_interval(t: &DataType) -> bool {
    matches!(t, DataType::Interval(_))
}

fn is_duration(t: &DataType) -> bool {
    matches!(t, DataType::Duration(_))
}

fn is_number(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Decimal128(..))
}

fn call(f: &Arc<ScalarUDF>, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(f.clone(), args))
}

fn is_date(t: &DataType) -> bool {
    matches!(t, DataType::Date32 | DataType::Date64)
}

fn cast(e: Expr, t: DataType) -> Expr {
    Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(e), t))
}

fn as_mdn(e: Expr, t: &DataType) -> Expr {
    match t {
        DataType::Interval(IntervalUnit::MonthDayNano) => e,
        _ => cast(e, DataType::Interval(IntervalUnit::MonthDayNano)),
    }
}

impl ExprPlanner for IntervalPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (Ok(lt), Ok(rt)) = (expr.left.get_type(schema), expr.right.get_type(schema)) else {
            return Ok(PlannerResult::Original(expr));
        };
        let (left, right) = (expr.left.clone(), expr.right.clone());
        let factor = |e: Expr| cast(e, DataType::Float64);
        let planned = match &expr.op {
            BinaryOperator::Multiply if is_interval(&lt) && is_number(&rt) => {
                call(&self.mul, vec![as_mdn(left, &lt), factor(right)])
            }
            BinaryOperator::Multiply if is_number(&lt) && is_interval(&rt) => {
                call(&self.mul, vec![as_mdn(right, &rt), factor(left)])
            }
            BinaryOperator::Divide if is_interval(&lt) && is_number(&rt) => {
                call(&self.div, vec![as_mdn(left, &lt), factor(right)])
            }
            // `date ± interval` is a `timestamp` in Postgres (DataFusion's is a date,
            // dropping the interval's time: `date '2024-01-31' + interval '1 hour'`).
            op @ (BinaryOperator::Plus | BinaryOperator::Minus)
                if self.level.load(std::sync::atomic::Ordering::SeqCst) >= 6
                    && ((is_date(&lt) && is_interval(&rt))
                        || (is_interval(&lt) && is_date(&rt) && *op == BinaryOperator::Plus)) =>
            {
                let ts = |e: Expr, t: &DataType| {
                    if is_date(t) {
                        cast(e, DataType::Timestamp(TimeUnit::Microsecond, None))
                    } else {
                        e
                    }
                };
                let op = match op {
                    BinaryOperator::Plus => datafusion::logical_expr::Operator::Plus,
                    _ => datafusion::logical_expr::Operator::Minus,
                };
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    Box::new(ts(left, &lt)),
                    op,
                    Box::new(ts(right, &rt)),
                ))
            }
            op @ (BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq)
                if (is_interval(&lt)
                    && is_interval(&rt)
                    && self.level.load(std::sync::atomic::Ordering::SeqCst) >= 2)
                    // From level 9, a difference of timestamps (a duration here) with an
                    // interval: DataFusion compared the duration with the interval's
                    // fields one by one (`tstz - tstz = interval '1 day'` was false).
                    || (self.level.load(std::sync::atomic::Ordering::SeqCst) >= 9
                        && ((is_duration(&lt) && is_interval(&rt))
                            || (is_interval(&lt) && is_duration(&rt)))) =>
            {
                let l = call(&self.span, vec![as_mdn(left, &lt)]);
                let r = call(&self.span, vec![as_mdn(right, &rt)]);
                let op = match op {
                    BinaryOperator::Eq => datafusion::logical_expr::Operator::Eq,
                    BinaryOperator::NotEq => datafusion::logical_expr::Operator::NotEq,
                    BinaryOperator::Lt => datafusion::logical_expr::Operator::Lt,
                    BinaryOperator::LtEq => datafusion::logical_expr::Operator::LtEq,
                    BinaryOperator::Gt => datafusion::logical_expr::Operator::Gt,
                    _ => datafusion::logical_expr::Operator::GtEq,
                };
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    Box::new(l),
                    op,
                    Box::new(r),
                ))
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

/// `interval * factor` (or `/ factor`) as Postgres' `interval_mul` computes it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalMul {
    signature: Signature,
    divide: bool,
}

impl IntervalMul {
    fn new(divide: bool) -> IntervalMul {
        IntervalMul {
            signature: Signature::exact(
                vec![
                    DataType::Interval(IntervalUnit::MonthDayNano),
                    DataType::Float64,
                ],
                Volatility::Immutable,
            ),
            divide,
        }
    }
}

/// `i * f` (Postgres' `interval_mul`): months scaled and truncated, their fraction carried
/// into days (30 a month), days scaled and truncated, what is left carried into the time,
/// which is rounded to microseconds.
pub fn interval_mul(i: IntervalMonthDayNano, f: f64) -> Result<IntervalMonthDayNano> {
    let out_of_range = || DataFusionError::Execution("interval out of range".into());
    if !f.is_finite() {
        return Err(out_of_range());
    }
    let months = i.months as f64 * f;
    let whole_months = months.trunc();
    let month_days = (months - whole_months) * 30.0;
    let days = i.days as f64 * f;
    let whole_days = days.trunc() + month_days.trunc();
    let day_fraction = (days - days.trunc()) + (month_days - month_days.trunc());
    let nanos = i.nanoseconds as f64 * f + day_fraction * NANOS_PER_DAY;
    let nanos = (nanos / NANOS_PER_MICRO).round() * NANOS_PER_MICRO;
    let fits32 = |v: f64| (i32::MIN as f64..=i32::MAX as f64).contains(&v);
    if !fits32(whole_months)
        || !fits32(whole_days)
        || !(i64::MIN as f64..i64::MAX as f64).contains(&nanos)
    {
        return Err(out_of_range());
    }
    Ok(IntervalMonthDayNano::new(
        whole_months as i32,
        whole_days as i32,
        nanos as i64,
    ))
}

impl ScalarUDFImpl for IntervalMul {
    fn name(&self) -> &str {
        if self.divide {
            "freshet_interval_div"
        } else {
            "freshet_interval_mul"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (Some(i), Some(f)) = (arrays.first(), arrays.get(1)) else {
            return Err(DataFusionError::Internal(format!(
                "{} takes 2 arguments",
                self.name()
            )));
        };
        let i = i
            .as_any()
            .downcast_ref::<IntervalMonthDayNanoArray>()
            .ok_or_else(|| DataFusionError::Internal("not an interval".into()))?;
        let f = f
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Float64Array>()
            .ok_or_else(|| DataFusionError::Internal("not a float".into()))?;
        let mut out = Vec::with_capacity(i.len());
        for r in 0..i.len() {
            if i.is_null(r) || f.is_null(r) {
                out.push(None);
                continue;
            }
            let mut by = f.value(r);
            if self.divide {
                if by == 0.0 {
                    return Err(DataFusionError::ArrowError(
                        Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
                        None,
                    ));
                }
                by = 1.0 / by;
            }
            out.push(Some(interval_mul(i.value(r), by)?));
        }
        let array: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(out));
        Ok(
            if args
                .args
                .iter()
                .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            {
                ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}

/// An interval's span in nanoseconds, a month being 30 days and a day 24 hours: what
/// Postgres compares intervals by.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalSpan {
    signature: Signature,
}

impl IntervalSpan {
    fn new() -> IntervalSpan {
        IntervalSpan {
            signature: Signature::exact(
                vec![DataType::Interval(IntervalUnit::MonthDayNano)],
                Volatility::Immutable,
            ),
        }
    }
}

/// `i`'s span (see [`IntervalSpan`]).
pub fn span(i: IntervalMonthDayNano) -> i128 {
    const DAY: i128 = 86_400_000_000_000;
    (i.months as i128 * 30 + i.days as i128) * DAY + i.nanoseconds as i128
}

impl ScalarUDFImpl for IntervalSpan {
    fn name(&self) -> &str {
        "freshet_interval_span"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(38, 0))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Decimal128(38, 0),
            nullable,
        )))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args.first(), Some(ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let i = arrays
            .first()
            .and_then(|a| a.as_any().downcast_ref::<IntervalMonthDayNanoArray>())
            .ok_or_else(|| DataFusionError::Internal("not an interval".into()))?;
        let spans: Decimal128Array = i.iter().map(|v| v.map(span)).collect();
        let array: ArrayRef = Arc::new(spans.with_precision_and_scale(38, 0)?);
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// `x BETWEEN a AND b` over intervals (and differences of timestamps) compares their
/// spans, as `<=` and `>=` do (`IntervalPlanner`); DataFusion compared their fields one
/// by one (`interval '24 hours' BETWEEN interval '1 day' AND interval '1 day'` was
/// false). An analyzer rule before type coercion, from dialect level 9 on.
#[derive(Debug)]
pub struct IntervalBetween {
    level: Arc<std::sync::atomic::AtomicU32>,
}

impl IntervalBetween {
    pub fn new(level: Arc<std::sync::atomic::AtomicU32>) -> IntervalBetween {
        IntervalBetween { level }
    }
}

impl datafusion::optimizer::AnalyzerRule for IntervalBetween {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &datafusion::common::config::ConfigOptions,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        if self.level.load(std::sync::atomic::Ordering::SeqCst) < 9 {
            return Ok(plan);
        }
        let span = Arc::new(ScalarUDF::new_from_impl(IntervalSpan::new()));
        crate::expr_rules::rewrite_expressions(
            plan,
            |p| matches!(p, datafusion::logical_expr::LogicalPlan::Values(_)),
            |x| matches!(x, Expr::Between(_)),
            |e, schema| {
                let Expr::Between(b) = &e else {
                    return Ok(datafusion::common::tree_node::Transformed::no(e));
                };
                let types = [&b.expr, &b.low, &b.high].map(|x| x.get_type(schema).ok());
                let spans = types
                    .iter()
                    .all(|t| t.as_ref().is_some_and(|t| is_interval(t) || is_duration(t)))
                    && types.iter().flatten().any(is_interval);
                if !spans {
                    return Ok(datafusion::common::tree_node::Transformed::no(e));
                }
                let of = |x: &Expr, t: &Option<DataType>| {
                    let t = t.clone().unwrap_or(DataType::Null);
                    Box::new(call(&span, vec![as_mdn(x.clone(), &t)]))
                };
                Ok(datafusion::common::tree_node::Transformed::yes(
                    Expr::Between(datafusion::logical_expr::expr::Between {
                        expr: of(&b.expr, &types[0]),
                        negated: b.negated,
                        low: of(&b.low, &types[1]),
                        high: of(&b.high, &types[2]),
                    }),
                ))
            },
        )
    }

    fn name(&self) -> &str {
        "freshet_interval_between"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, micros: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(months, days, micros * 1000)
    }

    #[test]
    fn multiplies_as_postgres() {
        // interval '1 hour' * 3 = 03:00:00
        assert_eq!(
            interval_mul(iv(0, 0, 3_600_000_000), 3.0).unwrap(),
            iv(0, 0, 10_800_000_000)
        );
        // interval '1 month' * 1.5 = 1 mon 15 days
        assert_eq!(interval_mul(iv(1, 0, 0), 1.5).unwrap(), iv(1, 15, 0));
        // interval '1 day' * 1.5 = 1 day 12:00:00
        assert_eq!(
            interval_mul(iv(0, 1, 0), 1.5).unwrap(),
            iv(0, 1, 43_200_000_000)
        );
        // interval '1 mon 1 day' / 2 = 15 days 12:00:00
        assert_eq!(
            interval_mul(iv(1, 1, 0), 0.5).unwrap(),
            iv(0, 15, 43_200_000_000)
        );
        // negative factors
        assert_eq!(interval_mul(iv(0, 2, 0), -1.0).unwrap(), iv(0, -2, 0));
        assert!(interval_mul(iv(i32::MAX, 0, 0), 2.0).is_err());
        assert!(interval_mul(iv(1, 0, 0), f64::NAN).is_err());
    }

    #[test]
    fn spans_compare_as_postgres() {
        assert_eq!(span(iv(0, 0, 86_400_000_000)), span(iv(0, 1, 0)));
        assert_eq!(span(iv(1, 0, 0)), span(iv(0, 30, 0)));
        assert!(span(iv(0, 1, 1)) > span(iv(0, 0, 86_400_000_000)));
    }
}
