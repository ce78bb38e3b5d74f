//! `x op ANY(array)` with Postgres' NULLs.
//!
//! Postgres' `x = ANY(a)` is true if `x = e` is true for some element `e`; else NULL if
//! `x` or some element is NULL (and `a` has elements), or `a` is NULL; else false. So
//! `5 = ANY(ARRAY[1, NULL])` is NULL, and `NOT (5 = ANY(…))` filters the row out.
//! DataFusion plans `= ANY` as `array_has`, and `<>`, `<`, `>`, `<=`, `>=` through the
//! array's least or greatest element, which leave the NULLs out: `false`.
//!
//! [`rewrite`] gives each such comparison (over an array, not a subquery) the NULLs:
//!
//! ```sql
//! CASE WHEN x op ANY(a) THEN true    -- DataFusion's, true exactly when Postgres' is
//!      WHEN a IS NULL THEN NULL
//!      WHEN cardinality(a) = 0 THEN false
//!      WHEN x IS NULL THEN NULL
//!      WHEN array_position(a, NULL) IS NOT NULL THEN NULL
//!      ELSE false END
//! ```
//!
//! Where NULL and false mean the same (a comparison that is a conjunct or disjunct of a
//! `WHERE`, `HAVING` or join's `ON`, which keep only true), it is left as it is, so that lookups by
//! `k = ANY(…)` keep their plan. A comparison with a parameter (`x = ANY($1)`) is left
//! too: the parameter's type is inferred from DataFusion's form. From dialect level 7
//! on (`crate::dialect`): a view from before keeps what it computed.

use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, Expr, JoinConstraint, Query,
    SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
};
use crate::sqlparser::parser::Parser;

/// The first dialect level with Postgres' NULLs in `= ANY(array)`.
pub const LEVEL: u32 = 7;

/// Rewrites the comparisons with `ANY(array)` of `stmt` (see the module).
pub fn rewrite(stmt: &mut Statement) {
    let mut filters = Filters::default();
    let _ = stmt.visit(&mut filters);
    keep_names(stmt);
    let _ = visit_expressions_mut(stmt, |e| {
        if !filters.0.contains(&(e as *const Expr)) {
            if let Some(with_nulls) = with_nulls(e) {
                *e = with_nulls;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `e` with Postgres' NULLs, if it is a comparison with `ANY` of an array.
fn with_nulls(e: &Expr) -> Option<Expr> {
    let Expr::AnyOp {
        left,
        compare_op,
        right,
        ..
    } = e
    else {
        return None;
    };
    if matches!(right.as_ref(), Expr::Subquery(_)) || has_parameter(left) || has_parameter(right) {
        return None;
    }
    if !matches!(
        compare_op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    ) {
        return None;
    }
    let sql = format!(
        "CASE WHEN {e} THEN true WHEN ({a}) IS NULL THEN NULL \
         WHEN cardinality({a}) = 0 THEN false WHEN ({x}) IS NULL THEN NULL \
         WHEN array_position({a}, NULL) IS NOT NULL THEN NULL ELSE false END",
        a = right,
        x = left,
    );
    Parser::new(&crate::sql_dialect::FreshetDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

fn has_parameter(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The comparisons in filter places: reached from a `WHERE`, `HAVING` or `ON` through `AND`,
/// `OR` and parentheses only, where NULL and false both drop the row.
#[derive(Default)]
struct Filters(HashSet<*const Expr>);

impl VisitorMut for Filters {
    type Break = ();
    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.body(query.body.as_mut());
        ControlFlow::Continue(())
    }
}

impl Filters {
    fn body(&mut self, body: &mut SetExpr) {
        match body {
            SetExpr::Select(s) => {
                for e in s.selection.iter_mut().chain(s.having.iter_mut()) {
                    self.leaves(e);
                }
                for join in s.from.iter_mut().flat_map(|t| t.joins.iter_mut()) {
                    if let Some(JoinConstraint::On(e)) =
                        crate::natural_joins::constraint_mut(&mut join.join_operator)
                    {
                        self.leaves(e);
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.body(left);
                self.body(right);
            }
            _ => {}
        }
    }

    fn leaves(&mut self, e: &mut Expr) {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
            } => {
                self.leaves(left);
                self.leaves(right);
            }
            Expr::Nested(inner) => self.leaves(inner),
            Expr::AnyOp { .. } => {
                self.0.insert(e as *const Expr);
            }
            _ => {}
        }
    }
}

/// Names each unaliased select item that is such a comparison `?column?`, as Postgres
/// names it (the rewrite would make it a `case`).
fn keep_names(stmt: &mut Statement) {
    struct KeepNames;
    impl VisitorMut for KeepNames {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) = item {
                        if with_nulls(e).is_some() {
                            *item = SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: crate::sqlparser::ast::Ident::with_quote('"', "?column?"),
                            };
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut KeepNames);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::new(&crate::sql_dialect::FreshetDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .expect("parses");
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn select_items_get_nulls_and_filters_keep_their_form() {
        let s =
            rewritten("SELECT 5 = ANY(a) FROM t WHERE k = ANY(ARRAY[1, 2]) AND NOT (x = ANY(a))");
        assert!(
            s.starts_with("SELECT CASE WHEN 5 = ANY(a) THEN true"),
            "{s}"
        );
        assert!(s.contains("AS \"?column?\""), "{s}");
        assert!(
            s.contains("WHERE k = ANY(ARRAY[1, 2]) AND NOT (CASE WHEN x = ANY(a)"),
            "{s}"
        );
        // Subqueries and parameters are left alone.
        let s = rewritten("SELECT 1 FROM t JOIN u ON u.k = ANY(t.a)");
        assert!(!s.contains("CASE"), "{s}");
        let s = rewritten("SELECT x = ANY(SELECT y FROM u), x = ANY($1) FROM t");
        assert!(!s.contains("CASE"), "{s}");
    }
}
