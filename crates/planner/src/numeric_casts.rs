//! Casts between `numeric` and floats, as Postgres computes them.
//!
//! Arrow's kernels scale through a float: `numeric → double precision` divided the
//! unscaled integer, as a float, by 10^scale, so a `numeric` literal inserted into a
//! `double precision` column was stored off by its last digits (`1e15` became
//! `999999999999999.9`); `double precision → numeric` multiplied by 10^scale and kept
//! the float's noise (`1e15::float8::numeric` was `1000000000000000.0905969664`).
//! Postgres reads a `numeric` as the float nearest its decimal value, and a float as the
//! decimal of its 15 significant digits (`float8_numeric`), rounded half away from zero
//! to the type's scale. This rule, after type coercion, replaces those casts (the ones a
//! statement writes and the ones coercion adds) with functions that do so. From dialect
//! level 9 on (`crate::dialect`): a view from before keeps its casts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Builder, Float64Builder};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::pg_catalog::SqlStateError;
use freshet_engine::numeric_special::Special;

/// The first dialect level with these casts.
const LEVEL: u32 = 9;

/// The analyzer rule (see the module); it runs after type coercion.
#[derive(Debug)]
pub struct NumericCasts {
    level: Arc<AtomicU32>,
}

impl NumericCasts {
    /// The rule for a context whose dialect level is `level`.
    pub fn new(level: Arc<AtomicU32>) -> Self {
        NumericCasts { level }
    }
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float64)
}

impl AnalyzerRule for NumericCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if self.level.load(Ordering::SeqCst) < LEVEL {
            return Ok(plan);
        }
        crate::expr_rules::rewrite_expressions(
            plan,
            |_| false,
            |x| {
                matches!(x, Expr::Cast(c)
                    if is_float(c.field.data_type())
                        || matches!(c.field.data_type(), DataType::Decimal128(..)))
            },
            |e, schema| {
                let Expr::Cast(Cast { expr, field }) = &e else {
                    return Ok(Transformed::no(e));
                };
                let data_type = field.data_type();
                let from = expr.get_type(schema)?;
                let call = |f: ScalarUDF| {
                    Expr::ScalarFunction(ScalarFunction::new_udf(
                        Arc::new(f),
                        vec![expr.as_ref().clone()],
                    ))
                };
                Ok(match (&from, data_type) {
                    (DataType::Decimal128(..), to) if is_float(to) => {
                        let double = call(ScalarUDF::new_from_impl(NumericToFloat::new()));
                        Transformed::yes(match to {
                            DataType::Float64 => double,
                            _ => Expr::Cast(Cast::new(Box::new(double), to.clone())),
                        })
                    }
                    (from, &DataType::Decimal128(p, s)) if is_float(from) => {
                        // float4_numeric reads FLT_DIG (6) digits, float8_numeric 15.
                        let digits = if *from == DataType::Float32 { 6 } else { 15 };
                        Transformed::yes(call(ScalarUDF::new_from_impl(FloatToNumeric::new(
                            p, s, digits,
                        ))))
                    }
                    _ => Transformed::no(e),
                })
            },
        )
    }

    fn name(&self) -> &str {
        "freshet_numeric_casts"
    }
}

/// `numeric → double precision`: the float nearest the decimal value.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericToFloat {
    signature: Signature,
}

impl NumericToFloat {
    fn new() -> Self {
        NumericToFloat {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// The powers of ten a double holds exactly.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The float nearest `unscaled / 10^scale`.
fn decimal_to_f64(unscaled: i128, scale: i8) -> f64 {
    // Both operands exact: one IEEE division (or product) rounds once, to the nearest.
    if unscaled.unsigned_abs() <= 1 << 53 {
        let power = EXACT_POWERS.get(usize::from(scale.unsigned_abs()));
        match (power, scale >= 0) {
            (Some(p), true) => return unscaled as f64 / p,
            (Some(p), false) => return unscaled as f64 * p,
            (None, _) => {}
        }
    }
    let text = if scale > 0 {
        format!("{unscaled}e-{scale}")
    } else {
        format!("{unscaled}e{}", -i32::from(scale))
    };
    text.parse().unwrap_or(f64::NAN)
}

impl ScalarUDFImpl for NumericToFloat {
    fn name(&self) -> &str {
        "__freshet_numeric_to_float"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("one argument expected".into()));
        };
        let array = arg.to_array(args.number_rows)?;
        let DataType::Decimal128(_, scale) = array.data_type() else {
            return Err(DataFusionError::Internal("a numeric expected".into()));
        };
        let scale = *scale;
        let decimals = array.as_primitive::<Decimal128Type>();
        let mut out = Float64Builder::with_capacity(decimals.len());
        for i in 0..decimals.len() {
            if decimals.is_null(i) {
                out.append_null();
            } else {
                let v = decimals.value(i);
                out.append_value(match Special::of(v) {
                    Some(s) => s.to_f64(),
                    None => decimal_to_f64(v, scale),
                });
            }
        }
        finish(arg, Arc::new(out.finish()))
    }
}

/// `double precision | real → numeric(p, s)`: the decimal of the float's 15 (a `real`'s
/// 6) significant digits, rounded half away from zero to scale `s`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FloatToNumeric {
    signature: Signature,
    precision: u8,
    scale: i8,
    digits: usize,
}

impl FloatToNumeric {
    fn new(precision: u8, scale: i8, digits: usize) -> Self {
        FloatToNumeric {
            signature: Signature::any(1, Volatility::Immutable),
            precision,
            scale,
            digits,
        }
    }
}

/// `v` as the unscaled value of a `numeric(precision, scale)`, read from its `digits`
/// significant digits.
pub fn f64_to_decimal(v: f64, precision: u8, scale: i8, digits: usize) -> Result<i128> {
    // Kept in any precision: a `numeric(p, s)` column refuses an infinity when written.
    if let Some(s) = Special::of_f64(v) {
        return Ok(s.value());
    }
    let decimals = digits.saturating_sub(1);
    let sci = format!("{v:.decimals$e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let significand: i128 = mantissa
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    // v = digits × 10^(exp - decimals); unscaled = v × 10^scale.
    let shift = exp - decimals as i32 + i32::from(scale);
    let overflow = || {
        SqlStateError::raise(
            "22003",
            "numeric field overflow",
            Some(format!(
                "A field with precision {precision}, scale {scale} must round to an absolute \
                 value less than 10^{}.",
                i32::from(precision) - i32::from(scale)
            )),
        )
    };
    let magnitude = if shift >= 0 {
        let factor = 10i128.checked_pow(shift as u32).ok_or_else(overflow)?;
        significand.checked_mul(factor).ok_or_else(overflow)?
    } else if -shift > 38 {
        0
    } else {
        let divisor = 10i128.pow((-shift) as u32);
        let (q, r) = (significand / divisor, significand % divisor);
        // Half away from zero, as numeric rounds.
        if r * 2 >= divisor {
            q + 1
        } else {
            q
        }
    };
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .unwrap_or(i128::MAX);
    if magnitude >= limit {
        return Err(overflow());
    }
    Ok(if negative { -magnitude } else { magnitude })
}

impl ScalarUDFImpl for FloatToNumeric {
    fn name(&self) -> &str {
        "__freshet_float_to_numeric"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(self.precision, self.scale))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("one argument expected".into()));
        };
        let array =
            datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Float64)?;
        let floats = array.as_primitive::<Float64Type>();
        let mut out = Decimal128Builder::with_capacity(floats.len())
            .with_precision_and_scale(self.precision, self.scale)?;
        for i in 0..floats.len() {
            if floats.is_null(i) {
                out.append_null();
            } else {
                out.append_value(f64_to_decimal(
                    floats.value(i),
                    self.precision,
                    self.scale,
                    self.digits,
                )?);
            }
        }
        finish(arg, Arc::new(out.finish()))
    }
}

fn finish(arg: &ColumnarValue, out: ArrayRef) -> Result<ColumnarValue> {
    Ok(match arg {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from PostgreSQL 15.
    #[test]
    fn converts_as_postgres() {
        assert_eq!(decimal_to_f64(10_000_000_000_000_000_000_000_000, 10), 1e15);
        assert_eq!(
            decimal_to_f64(1_234_567_890_123_456_780_000_000_000, 13),
            "123456789012345.678".parse::<f64>().unwrap()
        );
        assert_eq!(decimal_to_f64(-5, 1), -0.5);
        assert_eq!(decimal_to_f64(12, -2), 1200.0);
        // The exact path and the text path agree.
        for (m, sc) in [
            (1i128, 1i8),
            (3, 1),
            (123_456_789, 4),
            (-7, 22),
            (9_007_199_254_740_993, 3),
        ] {
            let text: f64 = format!("{m}e-{sc}").parse().unwrap();
            assert_eq!(decimal_to_f64(m, sc), text, "{m}e-{sc}");
        }
        // 1e15::float8::numeric(38, 10) is 1000000000000000.0000000000.
        assert_eq!(
            f64_to_decimal(1e15, 38, 10, 15).unwrap(),
            10_000_000_000_000_000_000_000_000
        );
        // 123456789.987 (not …9870000128).
        assert_eq!(
            f64_to_decimal(123_456_789.987, 38, 10, 15).unwrap(),
            1_234_567_899_870_000_000
        );
        assert_eq!(f64_to_decimal(0.1, 10, 2, 15).unwrap(), 10);
        assert_eq!(f64_to_decimal(-2.675, 10, 2, 15).unwrap(), -268);
        assert_eq!(f64_to_decimal(2.5, 10, 0, 15).unwrap(), 3);
        assert_eq!(f64_to_decimal(1e-20, 38, 10, 15).unwrap(), 0);
        assert!(f64_to_decimal(1e20, 10, 2, 15).is_err());
        assert_eq!(f64_to_decimal(f64::NAN, 10, 2, 15).unwrap(), i128::MAX);
        assert_eq!(
            f64_to_decimal(f64::INFINITY, 10, 2, 15).unwrap(),
            i128::MAX - 1
        );
        // A real's 6 digits: 1e15::real is 999999986991104 as a double.
        assert_eq!(
            f64_to_decimal(f64::from(1e15f32), 20, 3, 6).unwrap(),
            1_000_000_000_000_000_000
        );
    }
}
