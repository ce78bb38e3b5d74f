//! `x ^ y` and `power(x, y)` of `double precision` (or of integers, which Postgres makes
//! doubles; not of `numeric`) as Postgres' `dpow` computes them.
//!
//! DataFusion's gives `Infinity` where the result overflows (`10::float8 ^ 400`), 0 where
//! it underflows, `NaN` for a negative number to a non-integer power, and fails with an
//! internal error for zero to a negative power. Postgres raises `value out of range:
//! overflow` / `underflow` (`22003`) and `2201F` for the last two, and defines `NaN ^ 0`
//! and `1 ^ NaN` as 1. The analyzer rule [`PgPower`] (before type coercion, which would
//! make a `numeric` a double) replaces each such `power` by `dpow`, from dialect level 10 (`crate::dialect`): a view
//! from before keeps its `Infinity`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::pg_catalog::SqlStateError;

/// The first dialect level with Postgres' `dpow`.
pub const LEVEL: u32 = 10;

/// `x ^ y` of two doubles as Postgres' `dpow` (see the module).
pub fn dpow(x: f64, y: f64) -> Result<f64> {
    if x.is_nan() {
        return Ok(if y == 0.0 { 1.0 } else { f64::NAN });
    }
    if y.is_nan() {
        return Ok(if x == 1.0 { 1.0 } else { f64::NAN });
    }
    if x == 0.0 && y < 0.0 {
        return Err(SqlStateError::raise(
            "2201F",
            "zero raised to a negative power is undefined",
            None,
        ));
    }
    if x < 0.0 && y.floor() != y {
        return Err(SqlStateError::raise(
            "2201F",
            "a negative number raised to a non-integer power yields a complex result",
            None,
        ));
    }
    let r = x.powf(y);
    // Infinite operands follow POSIX, as Rust's `powf` does.
    if x.is_infinite() || y.is_infinite() {
        return Ok(r);
    }
    if r.is_infinite() {
        return Err(SqlStateError::raise(
            "22003",
            "value out of range: overflow",
            None,
        ));
    }
    if r == 0.0 && x != 0.0 {
        return Err(SqlStateError::raise(
            "22003",
            "value out of range: underflow",
            None,
        ));
    }
    Ok(r)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Dpow {
    signature: Signature,
}

impl ScalarUDFImpl for Dpow {
    fn name(&self) -> &str {
        "dpow"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [x, y] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("dpow takes two arguments".into()));
        };
        if let (ColumnarValue::Scalar(a), ColumnarValue::Scalar(b)) = (x, y) {
            let v = match (a, b) {
                (ScalarValue::Float64(Some(a)), ScalarValue::Float64(Some(b))) => {
                    Some(dpow(*a, *b)?)
                }
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Float64(v)));
        }
        let n = args.number_rows;
        let (xs, ys) = (x.to_array(n)?, y.to_array(n)?);
        let (xs, ys) = (
            xs.as_primitive::<Float64Type>(),
            ys.as_primitive::<Float64Type>(),
        );
        let out = (0..n)
            .map(|i| {
                if xs.is_null(i) || ys.is_null(i) {
                    return Ok(None);
                }
                dpow(xs.value(i), ys.value(i)).map(Some)
            })
            .collect::<Result<Float64Array>>()?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The analyzer rule (see the module).
#[derive(Debug)]
pub struct PgPower {
    level: Arc<AtomicU32>,
}

impl PgPower {
    /// The rule for a context whose dialect level is `level`.
    pub fn new(level: Arc<AtomicU32>) -> Self {
        PgPower { level }
    }
}

impl AnalyzerRule for PgPower {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if self.level.load(Ordering::SeqCst) < LEVEL {
            return Ok(plan);
        }
        crate::expr_rules::rewrite_expressions(
            plan,
            |_| false,
            |x| matches!(x, Expr::ScalarFunction(f) if f.func.name() == "power"),
            |e, schema| replace(e, schema),
        )
    }

    fn name(&self) -> &str {
        "freshet_pg_power"
    }
}

/// Before type coercion, where each argument has its own type: a power with a
/// `double precision` argument, or of integers, is Postgres' `dpow`; one of `numeric`
/// (and integers) is Postgres' numeric power, DataFusion's here.
fn replace(e: Expr, schema: &dyn ExprSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(f) = &e else {
        return Ok(Transformed::no(e));
    };
    let [x, y] = f.args.as_slice() else {
        return Ok(Transformed::no(e));
    };
    let (Ok(tx), Ok(ty)) = (x.get_type(schema), y.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    let float =
        |t: &DataType| matches!(t, DataType::Float64 | DataType::Float32 | DataType::Float16);
    let dpow = if float(&tx) || float(&ty) {
        true
    } else {
        tx.is_integer() && ty.is_integer()
    };
    if !dpow {
        return Ok(Transformed::no(e));
    }
    let double = |a: &Expr, t: &DataType| {
        if *t == DataType::Float64 {
            a.clone()
        } else {
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(a.clone()),
                DataType::Float64,
            ))
        }
    };
    let udf = ScalarUDF::new_from_impl(Dpow {
        signature: Signature::exact(
            vec![DataType::Float64, DataType::Float64],
            Volatility::Immutable,
        ),
    });
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(Arc::new(udf), vec![double(x, &tx), double(y, &ty)]),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<f64>) -> String {
        match r {
            Err(DataFusionError::External(e)) => e.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn powers_as_postgres() {
        assert_eq!(dpow(2.0, 10.0).unwrap(), 1024.0);
        assert!(dpow(-8.0, 1.0 / 3.0).is_err());
        assert_eq!(dpow(-2.0, 3.0).unwrap(), -8.0);
        assert_eq!(dpow(f64::NAN, 0.0).unwrap(), 1.0);
        assert_eq!(dpow(1.0, f64::NAN).unwrap(), 1.0);
        assert!(dpow(2.0, f64::NAN).unwrap().is_nan());
        assert_eq!(dpow(f64::INFINITY, -1.0).unwrap(), 0.0);
        assert_eq!(dpow(0.5, f64::INFINITY).unwrap(), 0.0);
        assert!(code(dpow(10.0, 400.0)).contains("overflow"));
        assert!(code(dpow(10.0, -400.0)).contains("underflow"));
        assert!(code(dpow(0.0, -1.0)).contains("zero raised to a negative power"));
        assert!(code(dpow(-8.0, 0.5)).contains("complex result"));
        assert_eq!(dpow(0.0, 0.0).unwrap(), 1.0);
    }
}
