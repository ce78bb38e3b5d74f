//! `INTERSECT ALL` and `EXCEPT ALL` are refused (`0A000`) in materialized views and
//! sinks: DataFusion plans them as a semi (anti) join without counting, so `INTERSECT ALL`
//! keeps every copy of a left row that has a match (Postgres keeps `min(m, n)` copies)
//! and `EXCEPT ALL` drops every copy that has one (Postgres keeps `m - n`). Queries still
//! run them as DataFusion does (a known difference, in the README); `INTERSECT` and
//! `EXCEPT` (distinct) are exact.

use std::ops::ControlFlow;

use crate::sqlparser::ast::{Query, SetExpr, SetOperator, SetQuantifier, Visit, Visitor};
use crate::PlannerError;

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
            &crate::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .expect("parses");
        check(&stmts)
    }

    #[test]
    fn refuses_counted_intersect_and_except_only() {
        assert!(check_sql("SELECT a FROM t INTERSECT ALL SELECT a FROM u").is_err());
        assert!(check_sql("SELECT a FROM t UNION (SELECT a FROM u EXCEPT ALL SELECT 1)").is_err());
        assert!(check_sql("SELECT * FROM (SELECT a FROM t EXCEPT ALL SELECT a FROM u) s").is_err());
        assert!(check_sql("SELECT a FROM t INTERSECT SELECT a FROM u").is_ok());
        assert!(check_sql("SELECT a FROM t EXCEPT SELECT a FROM u UNION ALL SELECT 2").is_ok());
    }
}
