//! Arithmetic that fails where Postgres fails instead of giving a wrong number.
//!
//! DataFusion adds, subtracts and multiplies integers wrapping around (`2147483647::int +
//! 1::int` is -2147483648), and its floats overflow to `Infinity`, underflow to 0 and
//! divide by zero to `Infinity`. Postgres raises `integer out of range` (`bigint`,
//! `smallint`), `value out of range: overflow` / `underflow` (`22003`) and `division by
//! zero` (`22012`). The analyzer rule [`CheckedArith`] turns each `+ - * /` of two
//! integers or of two floats into a function that checks, named as
//! Postgres names its operator functions (`int4pl`, `float8mul`, …). It runs after type
//! coercion, so both sides have one type. From dialect level 6 on (`crate::dialect`):
//! views from before keep wrapping around.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::ExprSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr_common::datum::apply;

/// The first dialect level with checked arithmetic.
const LEVEL: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn of(op: Operator) -> Option<Op> {
        Some(match op {
            Operator::Plus => Op::Add,
            Operator::Minus => Op::Sub,
            Operator::Multiply => Op::Mul,
            // Arrow's integer division fails on overflow and zero already; this names
            // the overflow as Postgres does.
            Operator::Divide => Op::Div,
            _ => return None,
        })
    }

    /// The suffix of Postgres' operator function (`int4pl`).
    fn suffix(self) -> &'static str {
        match self {
            Op::Add => "pl",
            Op::Sub => "mi",
            Op::Mul => "mul",
            Op::Div => "div",
        }
    }

    fn kernel(
        self,
        l: &dyn datafusion::arrow::array::Datum,
        r: &dyn datafusion::arrow::array::Datum,
    ) -> Result<ArrayRef, ArrowError> {
        match self {
            Op::Add => numeric::add(l, r),
            Op::Sub => numeric::sub(l, r),
            Op::Mul => numeric::mul(l, r),
            Op::Div => numeric::div(l, r),
        }
    }
}

/// Postgres' name of type `t` in its operator functions, for the types the rule checks.
fn type_prefix(t: &DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Int16 => "int2",
        DataType::Int32 => "int4",
        DataType::Int64 => "int8",
        DataType::Float32 => "float4",
        DataType::Float64 => "float8",
        _ => return None,
    })
}

/// Postgres' message for an integer result out of `t`'s range.
fn int_out_of_range(t: &DataType) -> &'static str {
    match t {
        DataType::Int16 => "smallint out of range",
        DataType::Int32 => "integer out of range",
        _ => "bigint out of range",
    }
}

/// `l <op> r` in their one type, failing as Postgres fails (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    name: String,
    op: Op,
    signature: Signature,
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("{} takes two arguments", self.name)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [l, r] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes two arguments",
                self.name
            )));
        };
        let t = l.data_type();
        if t.is_integer() {
            return apply(l, r, |a, b| {
                self.op.kernel(a, b).map_err(|e| match e {
                    ArrowError::ArithmeticOverflow(_) => {
                        ArrowError::ArithmeticOverflow(int_out_of_range(&t).into())
                    }
                    other => other,
                })
            });
        }
        if self.op == Op::Div {
            check_divisors(l, r)?;
        }
        let out = apply(l, r, |a, b| self.op.kernel(a, b))?;
        check_float(self.op, l, r, &out)?;
        Ok(out)
    }
}

/// A float value of `v` at row `i` (a scalar at every row), as `f64`; `None` for null.
fn floats(v: &ColumnarValue) -> Result<impl Fn(usize) -> Option<f64>> {
    let (array, scalar) = match v {
        ColumnarValue::Array(a) => (a.clone(), false),
        ColumnarValue::Scalar(s) => (s.to_array()?, true),
    };
    let array = datafusion::arrow::compute::cast(&array, &DataType::Float64)?;
    let array = array.as_primitive::<Float64Type>().clone();
    Ok(move |i: usize| {
        let i = if scalar { 0 } else { i };
        array.is_valid(i).then(|| array.value(i))
    })
}

fn rows(values: &[&ColumnarValue]) -> usize {
    values
        .iter()
        .find_map(|v| match v {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// Postgres' `float8div` fails on a zero divisor unless the dividend is NaN.
fn check_divisors(l: &ColumnarValue, r: &ColumnarValue) -> Result<()> {
    let (lf, rf) = (floats(l)?, floats(r)?);
    for i in 0..rows(&[l, r]) {
        if let (Some(a), Some(b)) = (lf(i), rf(i)) {
            if b == 0.0 && !a.is_nan() {
                return Err(ArrowError::DivideByZero.into());
            }
        }
    }
    Ok(())
}

/// Postgres' checks of a float result (`float_overflow_error`, `float_underflow_error`
/// in its `float.h`): an infinite result of finite values, a zero product or quotient of
/// non-zero values.
fn check_float(op: Op, l: &ColumnarValue, r: &ColumnarValue, out: &ColumnarValue) -> Result<()> {
    let (lf, rf, of) = (floats(l)?, floats(r)?, floats(out)?);
    let overflow = || ArrowError::ArithmeticOverflow("value out of range: overflow".into());
    let underflow = || ArrowError::ArithmeticOverflow("value out of range: underflow".into());
    for i in 0..rows(&[l, r, out]) {
        let (Some(a), Some(b), Some(x)) = (lf(i), rf(i), of(i)) else {
            continue;
        };
        match op {
            Op::Add | Op::Sub => {
                if x.is_infinite() && a.is_finite() && b.is_finite() {
                    return Err(overflow().into());
                }
            }
            Op::Mul => {
                if x.is_infinite() && !a.is_infinite() && !b.is_infinite() {
                    return Err(overflow().into());
                }
                if x == 0.0 && a != 0.0 && b != 0.0 {
                    return Err(underflow().into());
                }
            }
            Op::Div => {
                if x.is_infinite() && !a.is_infinite() {
                    return Err(overflow().into());
                }
                if x == 0.0 && a != 0.0 && !b.is_infinite() {
                    return Err(underflow().into());
                }
            }
        }
    }
    Ok(())
}

/// The analyzer rule (see the module).
#[derive(Debug)]
pub struct CheckedArith {
    level: Arc<AtomicU32>,
}

impl CheckedArith {
    /// The rule for a context whose dialect level is `level`.
    pub fn new(level: Arc<AtomicU32>) -> Self {
        CheckedArith { level }
    }
}

impl AnalyzerRule for CheckedArith {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if self.level.load(Ordering::SeqCst) < LEVEL {
            return Ok(plan);
        }
        crate::expr_rules::rewrite_expressions(
            plan,
            |_| false,
            |x| {
                matches!(x, Expr::BinaryExpr(BinaryExpr { op, .. })
                    if matches!(op, Operator::Plus | Operator::Minus
                        | Operator::Multiply | Operator::Divide))
            },
            |e, schema| check(e, schema),
        )
    }

    fn name(&self) -> &str {
        "freshet_checked_arith"
    }
}

fn check(e: Expr, schema: &dyn ExprSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    let (Ok(lt), Ok(rt)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    let (Some(prefix), Some(op)) = (type_prefix(&lt), Op::of(*op)) else {
        return Ok(Transformed::no(e));
    };
    if lt != rt {
        return Ok(Transformed::no(e));
    }
    let f = ScalarUDF::new_from_impl(Checked {
        name: format!("{prefix}{}", op.suffix()),
        op,
        signature: Signature::any(2, Volatility::Immutable),
    });
    let args = vec![left.as_ref().clone(), right.as_ref().clone()];
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(Arc::new(f), args),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array};
    use datafusion::arrow::datatypes::Field;
    use datafusion::common::ScalarValue;

    fn run(op: Op, l: ColumnarValue, r: ColumnarValue) -> Result<ColumnarValue> {
        let t = l.data_type();
        let f = Checked {
            name: "test".into(),
            op,
            signature: Signature::any(2, Volatility::Immutable),
        };
        let field = Arc::new(Field::new("x", t.clone(), true));
        f.invoke_with_args(ScalarFunctionArgs {
            number_rows: 2,
            args: vec![l, r],
            arg_fields: vec![field.clone(), field.clone()],
            return_field: field,
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    fn ints(v: Vec<i32>) -> ColumnarValue {
        ColumnarValue::Array(Arc::new(Int32Array::from(v)))
    }

    fn float_scalar(v: f64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Float64(Some(v)))
    }

    #[test]
    fn integers_fail_out_of_range() {
        let err = run(Op::Add, ints(vec![1, i32::MAX]), ints(vec![1, 1])).unwrap_err();
        assert!(err.to_string().contains("integer out of range"), "{err}");
        let ok = run(Op::Mul, ints(vec![3, -4]), ints(vec![5, 6])).unwrap();
        let ColumnarValue::Array(a) = ok else {
            panic!("an array")
        };
        assert_eq!(
            a.as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .values()
                .to_vec(),
            vec![15, -24]
        );
    }

    #[test]
    fn floats_fail_as_postgres() {
        let big = ColumnarValue::Array(Arc::new(Float64Array::from(vec![1.0, 1e308])));
        let err = run(Op::Mul, big, float_scalar(10.0)).unwrap_err();
        assert!(err.to_string().contains("overflow"), "{err}");
        let tiny = ColumnarValue::Array(Arc::new(Float64Array::from(vec![1e-300, 1.0])));
        let err = run(Op::Mul, tiny, float_scalar(1e-300)).unwrap_err();
        assert!(err.to_string().contains("underflow"), "{err}");
        let err = run(Op::Div, float_scalar(1.0), float_scalar(0.0)).unwrap_err();
        assert!(
            matches!(err, DataFusionError::ArrowError(ref a, _) if matches!(**a, ArrowError::DivideByZero)),
            "{err}"
        );
        // Infinity in, Infinity out; NaN / 0 is NaN.
        assert!(run(Op::Add, float_scalar(f64::INFINITY), float_scalar(1.0)).is_ok());
        assert!(run(Op::Div, float_scalar(f64::NAN), float_scalar(0.0)).is_ok());
    }
}
