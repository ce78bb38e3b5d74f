//! `INTERSECT ALL` and `EXCEPT ALL` as Postgres counts them. DataFusion plans both as a
//! semi (anti) join on every column without counting, so `INTERSECT ALL` would keep every
//! copy of a left row that has a match (Postgres keeps `min(m, n)` copies) and `EXCEPT
//! ALL` would drop every copy that has one (Postgres keeps `m - n`). [`count_copies`]
//! numbers the copies of each row on both sides (`row_number() OVER (PARTITION BY every
//! column)`) and joins on the number too: the k-th copy of a row is in both sides
//! exactly when k ≤ min(m, n), and in the left only when n < k ≤ m.
//!
//! Materialized views and sinks refuse both ([`check`]): a view has no `row_number()`
//! over a whole partition. `INTERSECT` and `EXCEPT` (distinct) are exact everywhere.

use std::ops::ControlFlow;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality};
use datafusion::logical_expr::{Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder};

use crate::sqlparser::ast::{Query, SetExpr, SetOperator, SetQuantifier, Visit, Visitor};
use crate::PlannerError;

/// `plan` with every `INTERSECT ALL` and `EXCEPT ALL` join counting copies.
pub fn count_copies(plan: LogicalPlan) -> Result<LogicalPlan, PlannerError> {
    Ok(plan
        .transform_up(|p| match counted_join(&p) {
            Some(join_type) => rewrite(p, join_type).map(Transformed::yes),
            None => Ok(Transformed::no(p)),
        })?
        .data)
}

/// The join type of a join DataFusion made for `INTERSECT ALL` / `EXCEPT ALL`: a semi or
/// anti join on every column, in order, with NULLs equal, no other condition, and a left
/// side that is not `DISTINCT` (the plain forms' is).
fn counted_join(p: &LogicalPlan) -> Option<JoinType> {
    let LogicalPlan::Join(j) = p else {
        return None;
    };
    if !matches!(j.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
        || j.null_equality != NullEquality::NullEqualsNull
        || j.filter.is_some()
        || matches!(j.left.as_ref(), LogicalPlan::Distinct(_))
    {
        return None;
    }
    let (l, r) = (j.left.schema(), j.right.schema());
    if l.fields().len() != r.fields().len() || j.on.len() != l.fields().len() {
        return None;
    }
    let all = j.on.iter().enumerate().all(|(i, (a, b))| {
        matches!(a, Expr::Column(c) if c.name == *l.field(i).name())
            && matches!(b, Expr::Column(c) if c.name == *r.field(i).name())
    });
    all.then_some(j.join_type)
}

fn rewrite(p: LogicalPlan, join_type: JoinType) -> datafusion::common::Result<LogicalPlan> {
    let LogicalPlan::Join(j) = p else {
        return Ok(p);
    };
    let columns =
        |side: &LogicalPlan| -> Vec<Column> { side.schema().iter().map(Column::from).collect() };
    // A side with the number of each row's copy (1, 2, …) after its columns; the columns
    // the join matches on.
    let numbered = |side: &LogicalPlan, name: &str| {
        let cols = columns(side);
        let n = datafusion::functions_window::expr_fn::row_number()
            .partition_by(cols.iter().cloned().map(Expr::Column).collect())
            .build()?
            .alias(name);
        let plan = LogicalPlanBuilder::from(side.clone())
            .window(vec![n])?
            .build()?;
        let mut keys = cols;
        keys.push(Column::from_name(name));
        Ok::<_, datafusion::error::DataFusionError>((plan, keys))
    };
    let (left, lkeys) = numbered(&j.left, "__freshet_left_copy")?;
    let (right, rkeys) = numbered(&j.right, "__freshet_right_copy")?;
    let left_cols = columns(&j.left);
    LogicalPlanBuilder::from(left)
        .join_detailed(
            right,
            join_type,
            (lkeys, rkeys),
            None,
            NullEquality::NullEqualsNull,
        )?
        .project(left_cols.into_iter().map(Expr::Column))?
        .build()
}

/// An error naming the first `INTERSECT ALL` or `EXCEPT ALL` in `node`, if any.
pub fn check<T: Visit>(node: &T) -> Result<(), PlannerError> {
    struct Find;
    impl Visitor for Find {
        type Break = &'static str;
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<&'static str> {
            match counted(&q.body) {
                Some(op) => ControlFlow::Break(op),
                None => ControlFlow::Continue(()),
            }
        }
    }
    match node.visit(&mut Find) {
        ControlFlow::Break(op) => Err(PlannerError::Unsupported(format!(
            "{op}: it would not keep Postgres' count of each row; use {} (distinct rows)",
            op.trim_end_matches(" ALL")
        ))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn counted(body: &SetExpr) -> Option<&'static str> {
    let SetExpr::SetOperation {
        op,
        set_quantifier,
        left,
        right,
    } = body
    else {
        return None;
    };
    let all = matches!(
        set_quantifier,
        SetQuantifier::All | SetQuantifier::AllByName
    );
    match op {
        SetOperator::Intersect if all => Some("INTERSECT ALL"),
        SetOperator::Except | SetOperator::Minus if all => Some("EXCEPT ALL"),
        _ => counted(left).or_else(|| counted(right)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sql(sql: &str) -> Result<(), PlannerError> {
        let stmts = crate::sqlparser::parser::Parser::parse_sql(
            &crate::sql_dialect::FreshetDialect {},
            sql,
        )
        .expect("parses");
        check(&stmts)
    }

    #[test]
    fn refuses_counted_intersect_and_except_in_views_only() {
        assert!(check_sql("SELECT a FROM t INTERSECT ALL SELECT a FROM u").is_err());
        assert!(check_sql("SELECT a FROM t UNION (SELECT a FROM u EXCEPT ALL SELECT 1)").is_err());
        assert!(check_sql("SELECT * FROM (SELECT a FROM t EXCEPT ALL SELECT a FROM u) s").is_err());
        assert!(check_sql("SELECT a FROM t INTERSECT SELECT a FROM u").is_ok());
        assert!(check_sql("SELECT a FROM t EXCEPT SELECT a FROM u UNION ALL SELECT 2").is_ok());
    }
}
