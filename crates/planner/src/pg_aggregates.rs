//! Dialect level 3 (see [`crate::dialect`]): `sum` and `avg` typed as Postgres types them.
//!
//! - `sum(bigint)` is `numeric`: the sum of `bigint`s that pass 2^63 is computed, not
//!   wrapped around (DataFusion's `sum(Int64)` wraps silently).
//! - `avg` of any integer is `numeric` (not `double precision`), with 10 decimal places
//!   (an unconstrained `numeric`'s here; Postgres shows 16 for ordinary values): the
//!   argument is summed as `numeric(38, 6)`, which holds 32 integer digits.
//!
//! An analyzer rule, run just before DataFusion's type coercion (which would otherwise
//! make `avg(int)`'s argument a double), casts the argument of these calls (grouped
//! aggregates and window aggregates) to `numeric` and keeps each call's output name (so
//! what reads it still finds it); type coercion then types what compares with the new
//! type (`HAVING sum(x) > 5`). An explicit cast (`avg(x::float8)`) is kept.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, LogicalPlan, Window, WindowFunctionDefinition,
};
use datafusion::optimizer::AnalyzerRule;

/// The level from which `sum` and `avg` are typed so.
pub const LEVEL: u32 = 3;

/// The analyzer rule; `level` is the planning context's dialect level.
#[derive(Debug)]
pub struct PgAggregateTypes {
    pub level: Arc<AtomicU32>,
}

/// The type `name`'s argument of type `t` is cast to, if any.
fn numeric_argument(name: &str, t: &DataType) -> Option<DataType> {
    match name {
        "sum" if *t == DataType::Int64 || *t == DataType::UInt64 => {
            Some(DataType::Decimal128(38, 0))
        }
        "avg" | "mean" if t.is_integer() => Some(DataType::Decimal128(38, 6)),
        _ => None,
    }
}

/// `args` with the first cast as `name` wants it, if it does.
fn cast_args(name: &str, args: &[Expr], schema: &DFSchema) -> Result<Option<Vec<Expr>>> {
    let [arg] = args else {
        return Ok(None);
    };
    let t = arg.get_type(schema)?;
    match numeric_argument(name, &t) {
        Some(to) => Ok(Some(vec![arg.clone().cast_to(&to, schema)?])),
        None => Ok(None),
    }
}

/// An aggregate call rewritten, aliased to its old output name.
fn rewrite_aggregate(e: &Expr, schema: &DFSchema) -> Result<Option<Expr>> {
    let (inner, alias) = match e {
        Expr::Alias(a) => (a.expr.as_ref(), a.name.clone()),
        other => (other, other.schema_name().to_string()),
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
        return Ok(None);
    };
    let Some(args) = cast_args(func.name(), &params.args, schema)? else {
        return Ok(None);
    };
    let mut params = params.clone();
    params.args = args;
    let call = Expr::AggregateFunction(AggregateFunction {
        func: func.clone(),
        params,
    });
    Ok(Some(call.alias(alias)))
}

/// A window aggregate rewritten, aliased to its old output name.
fn rewrite_window(e: &Expr, schema: &DFSchema) -> Result<Option<Expr>> {
    let (inner, alias) = match e {
        Expr::Alias(a) => (a.expr.as_ref(), a.name.clone()),
        other => (other, other.schema_name().to_string()),
    };
    let Expr::WindowFunction(w) = inner else {
        return Ok(None);
    };
    let WindowFunctionDefinition::AggregateUDF(f) = &w.fun else {
        return Ok(None);
    };
    let Some(args) = cast_args(f.name(), &w.params.args, schema)? else {
        return Ok(None);
    };
    let mut w: WindowFunction = w.as_ref().clone();
    w.params.args = args;
    Ok(Some(Expr::from(w).alias(alias)))
}

/// `exprs` with each rewritten by `f` where it applies; `None` if none is.
fn rewrite_all(
    exprs: &[Expr],
    schema: &DFSchema,
    f: fn(&Expr, &DFSchema) -> Result<Option<Expr>>,
) -> Result<Option<Vec<Expr>>> {
    let mut changed = false;
    let mut out = Vec::with_capacity(exprs.len());
    for e in exprs {
        match f(e, schema)? {
            Some(n) => {
                changed = true;
                out.push(n);
            }
            None => out.push(e.clone()),
        }
    }
    Ok(changed.then_some(out))
}

impl AnalyzerRule for PgAggregateTypes {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if self.level.load(Ordering::SeqCst) < LEVEL {
            return Ok(plan);
        }
        let mut changed = false;
        let plan = plan
            .transform_up_with_subqueries(|plan| {
                let rewritten = match &plan {
                    LogicalPlan::Aggregate(a) => {
                        match rewrite_all(&a.aggr_expr, a.input.schema(), rewrite_aggregate)? {
                            Some(aggr) => Some(LogicalPlan::Aggregate(Aggregate::try_new(
                                a.input.clone(),
                                a.group_expr.clone(),
                                aggr,
                            )?)),
                            None => None,
                        }
                    }
                    LogicalPlan::Window(w) => {
                        match rewrite_all(&w.window_expr, w.input.schema(), rewrite_window)? {
                            Some(exprs) => Some(LogicalPlan::Window(Window::try_new(
                                exprs,
                                w.input.clone(),
                            )?)),
                            None => None,
                        }
                    }
                    _ => None,
                };
                match rewritten {
                    Some(p) => {
                        changed = true;
                        Ok(Transformed::yes(p))
                    }
                    // Above a rewritten node, types of its columns changed.
                    None if changed => Ok(Transformed::yes(plan.recompute_schema()?)),
                    None => Ok(Transformed::no(plan)),
                }
            })?
            .data;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "freshet_pg_aggregate_types"
    }
}
