//! Discrete percentiles, in batch (a DataFusion aggregate here) and in views (the hash
//! aggregate's `PercentileDisc`, over the same rule):
//!
//! - `percentile_disc(f) WITHIN GROUP (ORDER BY x [DESC])`, Postgres' ordered-set
//!   aggregate: of the non-NULL values in that order, the first whose position `k`
//!   (from 1) reaches `f` of them, `k = max(1, ceil(f · n))`; NULL over no values.
//! - `approx_percentile(f [, e]) WITHIN GROUP (ORDER BY x [DESC])`, RisingWave's: the
//!   discrete percentile of the values rounded by [`approx_bucket`] (relative error
//!   `e`, 0.01 if not given), as `double precision`. Rounding keeps the order, so the
//!   result is the rounded exact percentile: within `e` of it, relatively. The values
//!   kept are the distinct rounded ones, a few thousand at most for any range of
//!   doubles: that is the sketch, the same in batch and in views.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Query, SelectItem,
    SetExpr, VisitMut, VisitorMut,
};

/// The scalar function that rounds a value to its sketch bucket.
pub const BUCKET_FUNCTION: &str = "approx_percentile_bucket";

/// RisingWave's default relative error of `approx_percentile`.
const DEFAULT_RELATIVE_ERROR: f64 = 0.01;

/// The position (from 0, in the aggregate's order) of the discrete percentile `f` of `n`
/// values.
pub fn disc_position(f: f64, n: usize) -> usize {
    ((f * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1
}

/// `x` rounded to the middle of its bucket: buckets are `(γ^(i-1), γ^i]` with
/// `γ = (1 + e) / (1 - e)`, mirrored for negatives, zero its own; any value in a bucket
/// is within `e` of the middle, relatively.
pub fn approx_bucket(x: f64, e: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let gamma = (1.0 + e) / (1.0 - e);
    let i = (x.abs().ln() / gamma.ln()).ceil();
    let mid = 2.0 * gamma.powf(i) / (gamma + 1.0);
    mid.copysign(x)
}

/// A relative error `e` must be in (0, 1).
pub fn check_relative_error(e: f64) -> Result<(), String> {
    if e > 0.0 && e < 1.0 {
        Ok(())
    } else {
        Err(format!(
            "approx_percentile's relative error must be between 0 and 1, not {e}"
        ))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PercentileDisc {
    signature: Signature,
}

impl AggregateUDFImpl for PercentileDisc {
    fn name(&self) -> &str {
        "percentile_disc"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn supports_within_group_clause(&self) -> bool {
        true
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let t = args.input_fields[0].data_type().clone();
        Ok(vec![Arc::new(Field::new(
            format!("{}[values]", args.name),
            DataType::List(Arc::new(Field::new_list_field(t, true))),
            true,
        ))])
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // A constant evaluates over no rows.
        let empty = datafusion::arrow::record_batch::RecordBatch::new_empty(Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        ));
        let fraction = match args.exprs.get(1).map(|e| e.evaluate(&empty)) {
            Some(Ok(ColumnarValue::Scalar(s))) => Some(s.cast_to(&DataType::Float64)?),
            _ => None,
        };
        let fraction = match fraction {
            Some(ScalarValue::Float64(Some(f))) if (0.0..=1.0).contains(&f) => f,
            Some(ScalarValue::Float64(Some(f))) => {
                return Err(DataFusionError::Execution(format!(
                    "percentile value {f} is not between 0 and 1"
                )))
            }
            _ => {
                return Err(DataFusionError::Plan(
                    "percentile_disc's fraction must be a constant".into(),
                ))
            }
        };
        let descending = args.order_bys.first().is_some_and(|s| s.options.descending);
        Ok(Box::new(DiscAccumulator {
            fraction,
            descending,
            data_type: args.expr_fields[0].data_type().clone(),
            values: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct DiscAccumulator {
    fraction: f64,
    descending: bool,
    data_type: DataType,
    values: Vec<ScalarValue>,
}

impl Accumulator for DiscAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let a = &values[0];
        for i in 0..a.len() {
            if a.is_valid(i) {
                self.values.push(ScalarValue::try_from_array(a, i)?);
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states[0].as_any().downcast_ref::<ListArray>() else {
            return Err(DataFusionError::Internal(
                "percentile_disc state is not a list".into(),
            ));
        };
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.update_batch(&[lists.value(i)])?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &self.values,
            &self.data_type,
        ))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.values.is_empty() {
            return ScalarValue::try_from(&self.data_type);
        }
        let k = disc_position(self.fraction, self.values.len());
        // NaN after every number, as views order it (and Postgres).
        let nan = |v: &ScalarValue| match v {
            ScalarValue::Float64(Some(f)) => f.is_nan(),
            ScalarValue::Float32(Some(f)) => f.is_nan(),
            _ => false,
        };
        let order = |a: &ScalarValue, b: &ScalarValue| {
            a.partial_cmp(b).unwrap_or_else(|| nan(a).cmp(&nan(b)))
        };
        let (_, v, _) = if self.descending {
            self.values.select_nth_unstable_by(k, |a, b| order(b, a))
        } else {
            self.values.select_nth_unstable_by(k, order)
        };
        Ok(v.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }
}

/// `approx_percentile_bucket(x, e)`: [`approx_bucket`] over doubles.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bucket {
    signature: Signature,
}

impl ScalarUDFImpl for Bucket {
    fn name(&self) -> &str {
        BUCKET_FUNCTION
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let e = match &args.args[1] {
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(e)) => e,
                _ => DEFAULT_RELATIVE_ERROR,
            },
            ColumnarValue::Array(_) => {
                return Err(DataFusionError::Plan(
                    "approx_percentile's relative error must be a constant".into(),
                ))
            }
        };
        check_relative_error(e).map_err(DataFusionError::Execution)?;
        let x = args.args[0].to_array(args.number_rows)?;
        let x = datafusion::arrow::compute::cast(&x, &DataType::Float64)?;
        let x = x
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Float64Array>()
            .ok_or_else(|| DataFusionError::Internal("not a double".into()))?;
        let out: datafusion::arrow::array::Float64Array =
            x.iter().map(|v| v.map(|v| approx_bucket(v, e))).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Registers `percentile_disc` and the bucket function in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::new_from_impl(PercentileDisc {
        signature: Signature::any(2, Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Bucket {
        signature: Signature::any(2, Volatility::Immutable),
    }));
}

/// `approx_percentile(f [, e]) WITHIN GROUP (ORDER BY x)` as
/// `CAST(percentile_disc(f) WITHIN GROUP (ORDER BY approx_percentile_bucket(x, e)) AS
/// DOUBLE PRECISION)`, if `e` is one.
fn rewrite(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else {
        return None;
    };
    if !is_approx_percentile(f) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [fraction, rest @ ..] = list.args.as_slice() else {
        return None;
    };
    let error = match rest {
        [] => Expr::value(crate::sqlparser::ast::Value::Number(
            DEFAULT_RELATIVE_ERROR.to_string(),
            false,
        )),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => e.clone(),
        _ => return None,
    };
    let [order] = f.within_group.as_slice() else {
        return None;
    };
    let mut order = order.clone();
    let bucket = format!("{BUCKET_FUNCTION}(({}), ({error}))", order.expr);
    order.expr = crate::sqlparser::parser::Parser::new(&crate::sql_dialect::FreshetDialect {})
        .try_with_sql(&bucket)
        .and_then(|mut p| p.parse_expr())
        .ok()?;
    let mut disc = f.clone();
    disc.name = ObjectName::from(vec![Ident::new("percentile_disc")]);
    if let FunctionArguments::List(l) = &mut disc.args {
        l.args = vec![fraction.clone()];
    }
    disc.within_group = vec![order];
    Some(Expr::Cast {
        kind: crate::sqlparser::ast::CastKind::Cast,
        expr: Box::new(Expr::Function(disc)),
        data_type: crate::sqlparser::ast::DataType::DoublePrecision,
        array: false,
        format: None,
    })
}

fn is_approx_percentile(f: &crate::sqlparser::ast::Function) -> bool {
    f.name.0.len() == 1
        && f.name.0[0]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("approx_percentile"))
}

/// Names the unaliased select items that are `approx_percentile` calls after it.
struct KeepNames;

impl VisitorMut for KeepNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(Expr::Function(f)) = item {
                    if is_approx_percentile(f) {
                        *item = SelectItem::ExprWithAlias {
                            expr: Expr::Function(f.clone()),
                            alias: Ident::with_quote('"', "approx_percentile"),
                        };
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites the `approx_percentile` calls of `node` in place.
pub fn normalize<T: VisitMut>(node: &mut T) {
    let _ = node.visit(&mut KeepNames);
    let _ = crate::sqlparser::ast::visit_expressions_mut(node, |e| {
        if let Some(call) = rewrite(e) {
            *e = call;
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_postgres() {
        // Postgres: percentile_disc(0.5) of 1..4 is 2, of 1..5 is 3; 0 gives the first.
        assert_eq!(disc_position(0.5, 4), 1);
        assert_eq!(disc_position(0.5, 5), 2);
        assert_eq!(disc_position(0.0, 5), 0);
        assert_eq!(disc_position(1.0, 5), 4);
        assert_eq!(disc_position(0.9, 10), 8);
    }

    #[test]
    fn buckets_keep_the_relative_error_and_the_order() {
        let e = 0.01;
        let mut last = f64::NEG_INFINITY;
        for i in -2000..2000 {
            let x = i as f64 * 0.37 + (i as f64).powi(3) * 1e-3;
            let b = approx_bucket(x, e);
            assert!((b - x).abs() <= e * x.abs() + 1e-12, "{x} -> {b}");
            assert!(b >= last, "order kept at {x}");
            last = b;
        }
        assert_eq!(approx_bucket(0.0, e), 0.0);
    }
}
