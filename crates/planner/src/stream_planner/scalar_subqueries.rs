//! Uncorrelated scalar subqueries in a view (`WHERE x > (SELECT avg(y) FROM t)`, RisingWave's
//! dynamic filter, or one in the select list): each becomes a join without a condition
//! with the subquery's single row, whose value the expression then reads as a column.
//! When that row changes, the join retracts and re-emits the other side's rows, so the
//! filter or expression is re-evaluated against the new value.
//!
//! A subquery that could return more than one row would make the join repeat rows where
//! a query fails, so only subqueries known to return at most one row are rewritten: a
//! global aggregate (exactly one row) or a `LIMIT 1`. A subquery returning no row is
//! NULL, as in a query (the join is a LEFT join).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, NullEquality};
use datafusion::logical_expr::{
    Expr, Filter, Join, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder, Projection,
    Subquery,
};

use super::unsupported;
use crate::PlannerError;

/// `plan` with its uncorrelated scalar subqueries (in filters and projections) joined in.
pub(super) fn scalar_subqueries_to_joins(plan: LogicalPlan) -> Result<LogicalPlan, PlannerError> {
    let next = Cell::new(0usize);
    rewrite(plan, &next)
}

fn rewrite(plan: LogicalPlan, next: &Cell<usize>) -> Result<LogicalPlan, PlannerError> {
    let mut failure = None;
    let out = plan.transform_up(|node| match rewrite_node(node, next) {
        Ok(t) => Ok(t),
        Err(e) => {
            failure = Some(e);
            Err(datafusion::error::DataFusionError::Plan(
                "scalar subquery".into(),
            ))
        }
    });
    match (out, failure) {
        (_, Some(e)) => Err(e),
        (Ok(t), None) => Ok(t.data),
        (Err(e), None) => Err(e.into()),
    }
}

/// Whether `plan` returns at most one row.
fn single_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
        LogicalPlan::Limit(l) => {
            l.fetch.as_deref().is_some_and(
                |f| matches!(f, Expr::Literal(v, _) if matches!(v.to_string().as_str(), "0" | "1")),
            ) || single_row(&l.input)
        }
        LogicalPlan::Projection(p) => single_row(&p.input),
        LogicalPlan::SubqueryAlias(s) => single_row(&s.input),
        LogicalPlan::Sort(s) => s.fetch.is_some_and(|f| f <= 1) || single_row(&s.input),
        LogicalPlan::Filter(f) => single_row(&f.input),
        _ => false,
    }
}

fn rewrite_node(
    node: LogicalPlan,
    next: &Cell<usize>,
) -> Result<Transformed<LogicalPlan>, PlannerError> {
    if !matches!(node, LogicalPlan::Filter(_) | LogicalPlan::Projection(_)) {
        return Ok(Transformed::no(node));
    }
    let mut subqueries: Vec<Subquery> = Vec::new();
    for e in node.expressions() {
        e.apply(|e| {
            if let Expr::ScalarSubquery(s) = e {
                if s.outer_ref_columns.is_empty() && !subqueries.contains(s) {
                    subqueries.push(s.clone());
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    if subqueries.is_empty() {
        return Ok(Transformed::no(node));
    }
    let input = node.inputs()[0].clone();
    let mut joined = input.clone();
    let mut columns: HashMap<Subquery, Expr> = HashMap::new();
    for s in subqueries {
        if !single_row(&s.subquery) {
            return Err(unsupported(
                "a scalar subquery that may return more than one row (a global aggregate \
                 or LIMIT 1 returns one)",
            ));
        }
        let n = next.get();
        next.set(n + 1);
        let alias = format!("__scalar_{n}");
        let sub = rewrite(s.subquery.as_ref().clone(), next)?;
        let [(qualifier, field)] = sub.schema().iter().collect::<Vec<_>>()[..] else {
            return Err(unsupported("a scalar subquery with more than one column"));
        };
        // A name of its own: the subquery's (`max(price)`) may be the outer query's too.
        let value = format!("{alias}_value");
        let own = Expr::Column(Column::from((qualifier, field))).alias(value.as_str());
        let sub = LogicalPlanBuilder::from(sub)
            .project(vec![own])?
            .alias(alias.as_str())?
            .build()?;
        let column = Expr::Column(Column::new(Some(alias.as_str()), value));
        joined = LogicalPlan::Join(Join::try_new(
            Arc::new(joined),
            Arc::new(sub),
            vec![],
            None,
            JoinType::Left,
            JoinConstraint::On,
            NullEquality::NullEqualsNothing,
            false,
        )?);
        columns.insert(s, column);
    }
    // The subqueries read as their join's column.
    let substitute = |e: Expr| -> Result<Transformed<Expr>, PlannerError> {
        Ok(e.transform_up(|e| match &e {
            Expr::ScalarSubquery(s) => match columns.get(s) {
                Some(c) => Ok(Transformed::yes(c.clone())),
                None => Ok(Transformed::no(e)),
            },
            _ => Ok(Transformed::no(e)),
        })?)
    };
    let plan = match node {
        LogicalPlan::Filter(f) => {
            let predicate = substitute(f.predicate)?.data;
            let filtered = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(joined))?);
            // Back to the input's columns.
            let cols = input.schema().columns().into_iter().map(Expr::Column);
            LogicalPlan::Projection(Projection::try_new(cols.collect(), Arc::new(filtered))?)
        }
        LogicalPlan::Projection(p) => {
            let mut exprs = Vec::with_capacity(p.expr.len());
            for e in p.expr {
                // An output column keeps its name.
                let name = e.schema_name().to_string();
                let out = substitute(e)?;
                exprs.push(match out.data {
                    Expr::Alias(a) => Expr::Alias(a),
                    e if out.transformed => e.alias(name),
                    e => e,
                });
            }
            LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(joined))?)
        }
        other => other,
    };
    Ok(Transformed::yes(plan))
}
