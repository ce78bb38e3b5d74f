//! Postgres rounds a `numeric` or floating-point value cast to an integer type: `1.7::int`
//! is 2, `2.5::int` is 3 and `(-2.5)::int` is -3 (numeric rounds half away from zero),
//! `2.5::float8::int` is 2 (a float rounds half to even, as `rint` does). Arrow's cast
//! truncates. The analyzer rule [`IntCasts`] rounds the value before every such cast in
//! queries and views (also the casts DataFusion adds to store a value in an integer
//! column); [`round_for_int`] does it for the casts DML and COPY make themselves.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::ExprSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The function the rule puts around a value cast to an integer type.
pub const INT_ROUND: &str = "__freshet_int_round";

/// Whether `t` is an integer type.
fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// Whether a cast from `t` to an integer type must round first.
fn rounds(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _)
    )
}

/// `c` rounded as Postgres rounds it on the way to integer type `to`; `None` when the
/// cast needs no rounding (`to` is not an integer type, or `c` holds no fractions).
pub fn round_for_int(c: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
    if !is_integer(to) || !rounds(c.data_type()) {
        return None;
    }
    round(c).ok()
}

/// `c` with each value rounded to a whole number, in its own type: floats half to even
/// (as Postgres' `rint`, which `round(double precision)` is), decimals half away from
/// zero.
pub fn round(c: &ArrayRef) -> Result<ArrayRef> {
    Ok(match c.data_type() {
        DataType::Float64 => Arc::new(
            c.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(f64::round_ties_even),
        ),
        DataType::Float32 => Arc::new(
            c.as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(f32::round_ties_even),
        ),
        DataType::Float16 => {
            let wide = datafusion::arrow::compute::cast(c, &DataType::Float64)?;
            datafusion::arrow::compute::cast(&round(&wide)?, c.data_type())?
        }
        DataType::Decimal128(precision, scale) if *scale > 0 => {
            let unit = 10i128.pow(u32::from(scale.unsigned_abs()));
            let values: &Decimal128Array = c.as_primitive();
            let rounded: Decimal128Array = values.unary(|v| {
                if freshet_engine::numeric_special::Special::of(v).is_some() {
                    return v;
                }
                let (q, r) = (v / unit, v % unit);
                let q = if r.abs() * 2 >= unit {
                    q + v.signum()
                } else {
                    q
                };
                q.checked_mul(unit).unwrap_or(v)
            });
            Arc::new(rounded.with_precision_and_scale(*precision, *scale)?)
        }
        _ => c.clone(),
    })
}

/// Rounds a value to a whole number in its own type (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntRound {
    signature: Signature,
}

impl ScalarUDFImpl for IntRound {
    fn name(&self) -> &str {
        INT_ROUND
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("{INT_ROUND} takes one argument")))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{INT_ROUND} takes one argument"
            )));
        };
        Ok(match arg {
            ColumnarValue::Array(a) => ColumnarValue::Array(round(a)?),
            ColumnarValue::Scalar(s) => {
                let rounded = round(&s.to_array()?)?;
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(
                    &rounded, 0,
                )?)
            }
        })
    }
}

fn int_round() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(IntRound {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

/// The analyzer rule: `CAST(x AS <integer>)` of a float or numeric `x` becomes
/// `CAST(__freshet_int_round(x) AS <integer>)`. Runs after type coercion, so it sees the
/// casts coercion added too. From dialect level 5 on (`crate::dialect`): views from
/// before keep truncating.
#[derive(Debug)]
pub struct IntCasts {
    level: Arc<AtomicU32>,
}

impl IntCasts {
    /// The rule for a context whose dialect level is `level`.
    pub fn new(level: Arc<AtomicU32>) -> Self {
        IntCasts { level }
    }
}

impl AnalyzerRule for IntCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if self.level.load(Ordering::SeqCst) < 5 {
            return Ok(plan);
        }
        let f = int_round();
        // A rewritten expression keeps its name (an unaliased `CAST(x AS INT)` is still
        // named `x`), so the plan's schema does not change.
        crate::expr_rules::rewrite_expressions(
            plan,
            |_| false,
            |x| {
                matches!(x,
                    Expr::Cast(Cast { field, .. }) | Expr::TryCast(TryCast { field, .. })
                        if is_integer(field.data_type()))
            },
            |e, schema| wrap(e, schema, &f),
        )
    }

    fn name(&self) -> &str {
        "freshet_int_casts"
    }
}

fn wrap(e: Expr, schema: &dyn ExprSchema, f: &Arc<ScalarUDF>) -> Result<Transformed<Expr>> {
    let (inner, to) = match &e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr.as_ref(), field.data_type())
        }
        _ => return Ok(Transformed::no(e)),
    };
    if !is_integer(to) || is_rounded(inner, f) {
        return Ok(Transformed::no(e));
    }
    match inner.get_type(schema) {
        Ok(t) if rounds(&t) => {}
        _ => return Ok(Transformed::no(e)),
    }
    let rounded = Expr::ScalarFunction(ScalarFunction::new_udf(f.clone(), vec![inner.clone()]));
    Ok(Transformed::yes(match e {
        Expr::Cast(Cast { field, .. }) => Expr::Cast(Cast {
            expr: Box::new(rounded),
            field,
        }),
        Expr::TryCast(TryCast { field, .. }) => Expr::TryCast(TryCast {
            expr: Box::new(rounded),
            field,
        }),
        other => other,
    }))
}

/// Whether `e` is already rounded by the rule (it may run again over the same plan).
fn is_rounded(e: &Expr, f: &Arc<ScalarUDF>) -> bool {
    matches!(e, Expr::ScalarFunction(sf) if sf.func.name() == f.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    #[test]
    fn rounds_as_postgres() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.7, 2.5, 3.5, -2.5, -1.2]));
        let got = round_for_int(&floats, &DataType::Int32).unwrap();
        let got: Vec<f64> = got.as_primitive::<Float64Type>().values().to_vec();
        assert_eq!(got, vec![2.0, 2.0, 4.0, -2.0, -1.0]);

        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![170, 250, -250, -149, 49])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        let got = round_for_int(&decimals, &DataType::Int64).unwrap();
        let got: Vec<i128> = got
            .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
            .values()
            .to_vec();
        assert_eq!(got, vec![200, 300, -300, -100, 0]);
        assert!(round_for_int(&decimals, &DataType::Utf8).is_none());
    }
}
