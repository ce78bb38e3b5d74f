//! Temporal filters: `now()` in a view's WHERE clause.
//!
//! In a query, `now()` is the statement's start time, and DataFusion folds it into a
//! constant while optimizing. In a view that would freeze the filter at creation time, so
//! before optimizing a view's plan Freshet replaces `now()` in filters with
//! [`NOW_NAME`], a volatile function the optimizer leaves alone, and the stream planner
//! turns each comparison `time_expr <op> now() ± interval` into a [`TemporalBound`] that
//! the engine's temporal filter re-evaluates as processing time passes.
//!
//! `now()` anywhere else in a view (its select list, a join condition) is refused: its
//! value would be frozen at whichever instant a row happened to be computed.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use freshet_engine::plan::TemporalBound;

use crate::PlannerError;

/// The name `now()` takes inside a view's filters.
pub const NOW_NAME: &str = "__freshet_now";

const NOW_TZ: &str = "+00:00";

#[derive(Debug, PartialEq, Eq, Hash)]
struct ViewNow {
    signature: Signature,
}

impl ScalarUDFImpl for ViewNow {
    fn name(&self) -> &str {
        NOW_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(now_type())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        datafusion::common::plan_err!("{}", NOW_ELSEWHERE)
    }
}

const NOW_ELSEWHERE: &str = "now() in a materialized view is supported only in WHERE \
    comparisons with a time column, such as `WHERE ts > now() - INTERVAL '1 hour'` \
    (a temporal filter)";

fn now_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from(NOW_TZ)))
}

fn view_now() -> Expr {
    let udf = ScalarUDF::new_from_impl(ViewNow {
        signature: Signature::nullary(Volatility::Volatile),
    });
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), vec![]))
}

fn is_fn(e: &Expr, names: &[&str]) -> bool {
    matches!(e, Expr::ScalarFunction(f) if names.contains(&f.func.name()))
}

/// Whether `e` calls `now()` (as bound) or its view form.
pub fn contains_now(e: &Expr) -> bool {
    e.exists(|e| Ok(is_fn(e, &["now", NOW_NAME])))
        .unwrap_or(false)
}

/// Replaces `now()` in the plan's filters with the view form; refuses it elsewhere.
pub fn prepare_view_plan(plan: LogicalPlan) -> Result<LogicalPlan, PlannerError> {
    let mut elsewhere = false;
    let out = plan.transform_up(|node| {
        if let LogicalPlan::Filter(f) = &node {
            if contains_now(&f.predicate) {
                let pred = f
                    .predicate
                    .clone()
                    .transform_up(|e| {
                        Ok(if is_fn(&e, &["now"]) {
                            Transformed::yes(view_now())
                        } else {
                            Transformed::no(e)
                        })
                    })?
                    .data;
                let filter = datafusion::logical_expr::Filter::try_new(pred, f.input.clone())?;
                return Ok(Transformed::yes(LogicalPlan::Filter(filter)));
            }
            return Ok(Transformed::no(node));
        }
        node.apply_expressions(|e| {
            if contains_now(e) {
                elsewhere = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(Transformed::no(node))
    })?;
    if elsewhere {
        return Err(PlannerError::Unsupported(NOW_ELSEWHERE.into()));
    }
    Ok(out.data)
}

/// Turns one conjunct of a filter, `e <op> n` where `n` depends only on `now()` and `e`
/// only on the row, into a bound on processing time.
pub fn bound(
    ctx: &SessionContext,
    conjunct: &Expr,
    input: &DFSchema,
) -> Result<TemporalBound, PlannerError> {
    let unsupported = || PlannerError::Unsupported(NOW_ELSEWHERE.into());
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
        return Err(unsupported());
    };
    let (row_side, now_side, op) = match (contains_now(left), contains_now(right)) {
        (false, true) => (left.as_ref(), right.as_ref(), *op),
        (true, false) => (
            right.as_ref(),
            left.as_ref(),
            op.swap().ok_or_else(unsupported)?,
        ),
        _ => return Err(unsupported()),
    };
    if !now_side.column_refs().is_empty() {
        return Err(unsupported());
    }
    // now_side = now() + shift, for a fixed shift.
    let is_now = |e: &Expr| is_fn(e, &["now", NOW_NAME]);
    now_shift(ctx, now_side, 0)?;
    let Some(shift) = linear_shift(ctx, now_side, &is_now, &now_type())? else {
        return Err(PlannerError::Unsupported(
            "a temporal filter's bound must be now() plus or minus a fixed interval \
             (days, hours, minutes, seconds; not months)"
                .into(),
        ));
    };
    // row <op> now + shift, as a span of now:
    //   row >  now + s  ⟺ now <  row - s
    //   row >= now + s  ⟺ now <  row - s + 1µs
    //   row <  now + s  ⟺ now >= row - s + 1µs
    //   row <= now + s  ⟺ now >= row - s
    let (from, offset) = match op {
        Operator::Gt => (false, -shift),
        Operator::GtEq => (false, 1 - shift),
        Operator::Lt => (true, 1 - shift),
        Operator::LtEq => (true, -shift),
        _ => return Err(unsupported()),
    };
    let expr = ctx.state().create_physical_expr(row_side.clone(), input)?;
    match expr.data_type(input.as_arrow())? {
        DataType::Timestamp(_, _) => {}
        other => {
            return Err(PlannerError::Unsupported(format!(
                "a temporal filter compares now() with a timestamp, not {other}"
            )))
        }
    }
    Ok(TemporalBound { expr, offset, from })
}

/// `now_side` evaluated with now() = `at` (µs), minus `at`.
fn now_shift(ctx: &SessionContext, now_side: &Expr, at: i64) -> Result<i64, PlannerError> {
    let is_now = |e: &Expr| is_fn(e, &["now", NOW_NAME]);
    shift_at(ctx, now_side, &is_now, &now_type(), at)?.ok_or_else(|| {
        PlannerError::Unsupported(
            "a temporal filter compares a timestamp with now() ± an interval".into(),
        )
    })
}

/// `expr` evaluated with the sub-expressions `is_var` picks set to the instant `at` (µs,
/// as a value of `var_type`), minus `at`; `None` if the result is not a timestamp.
pub fn shift_at(
    ctx: &SessionContext,
    expr: &Expr,
    is_var: &dyn Fn(&Expr) -> bool,
    var_type: &DataType,
    at: i64,
) -> Result<Option<i64>, PlannerError> {
    let v = eval_at(ctx, expr, is_var, var_type, Some(at))?;
    Ok(freshet_engine::chunk::timestamp_micros(&v).map(|us| us - at))
}

/// `expr` evaluated with the sub-expressions `is_var` picks set to the instant `at` (µs,
/// as a value of `var_type`; `None`: NULL).
fn eval_at(
    ctx: &SessionContext,
    expr: &Expr,
    is_var: &dyn Fn(&Expr) -> bool,
    var_type: &DataType,
    at: Option<i64>,
) -> Result<ScalarValue, PlannerError> {
    let tz = match var_type {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => return Ok(ScalarValue::Null),
    };
    let value = ScalarValue::TimestampMicrosecond(at, tz).cast_to(var_type)?;
    let fixed = expr
        .clone()
        .transform_up(|e| {
            Ok(if is_var(&e) {
                Transformed::yes(Expr::Literal(value.clone(), None))
            } else {
                Transformed::no(e)
            })
        })?
        .data;
    let empty = DFSchema::empty();
    let phys = ctx.state().create_physical_expr(fixed, &empty)?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(|e| PlannerError::Internal(e.to_string()))?;
    let v = phys.evaluate(&batch)?.into_array(1)?;
    Ok(ScalarValue::try_from_array(&v, 0)?)
}

/// The fixed shift of `expr` relative to its variable (`is_var`): checked at instants far
/// apart (so a month interval, whose length varies, gives `None`, and so does a clamp such
/// as `GREATEST(t, '1990-01-01')`), and NULL for a NULL variable (`COALESCE(t, …)` gives
/// `None`: a row without a time would match rows the shift says it cannot).
pub fn linear_shift(
    ctx: &SessionContext,
    expr: &Expr,
    is_var: &dyn Fn(&Expr) -> bool,
    var_type: &DataType,
) -> Result<Option<i64>, PlannerError> {
    // 2000-03-01 and 2000-04-01: the months before and after each differ in length; then
    // 1939 and 2090.
    const T0: i64 = 951_868_800_000_000;
    const T1: i64 = T0 + 31 * 86_400_000_000;
    let a = shift_at(ctx, expr, is_var, var_type, T0)?;
    for t in [T1, -T0, 3 * T0] {
        if shift_at(ctx, expr, is_var, var_type, t)? != a {
            return Ok(None);
        }
    }
    if a.is_some() && !eval_at(ctx, expr, is_var, var_type, None)?.is_null() {
        return Ok(None);
    }
    Ok(a)
}
