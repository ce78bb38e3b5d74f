//! Statements too deep to plan safely: refused with `54001`, and taken apart without
//! recursion.
//!
//! sqlparser builds chains of infix operators (`1 + 1 + … + 1`, `a OR b OR …`,
//! `x::int::int…`) and of set operations (`SELECT 1 UNION ALL SELECT 1 …`) in a loop, so
//! a statement of a few hundred kilobytes can be a tree tens of thousands of levels deep.
//! Everything after the parser walks that tree recursively: DataFusion's planner (guarded
//! by its `recursive_protection`), Freshet's own walkers, the evaluation of physical
//! expressions and, last, Rust's drop glue. [`check`] bounds the depth before any of them
//! runs, as Postgres' `max_stack_depth` does, and [`dismantle`] frees a refused tree one
//! level at a time.
//!
//! The visits themselves cannot overflow: sqlparser's visitors grow the stack on the heap
//! when it runs low (its `recursive-protection` feature, on through DataFusion's).

use std::ops::ControlFlow;

use crate::sqlparser::ast::{
    Expr, Query, SetExpr, TableFactor, Value, Values, Visit, VisitMut, Visitor, VisitorMut,
};
use crate::PlannerError;

/// The deepest nesting of expressions, subqueries, joins and set operations a statement
/// may have. Postgres, with its default 2 MB `max_stack_depth`, refuses a chain of a few
/// thousand operators; tools generate far shallower ones.
pub const MAX_DEPTH: usize = 1000;

/// `54001` for a statement nested deeper than [`MAX_DEPTH`].
pub fn too_complex() -> PlannerError {
    PlannerError::TooComplex(format!(
        "statement too complex: expressions, subqueries or set operations nest more than \
         {MAX_DEPTH} levels deep"
    ))
}

/// Refuses `node` (a statement, a query) if it nests deeper than [`MAX_DEPTH`].
pub fn check<T: Visit>(node: &T) -> Result<(), PlannerError> {
    let mut d = Depth { now: 0 };
    match node.visit(&mut d) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(too_complex()),
    }
}

struct Depth {
    now: usize,
}

impl Depth {
    fn enter(&mut self, levels: usize) -> ControlFlow<()> {
        self.now += levels;
        if self.now > MAX_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self, levels: usize) -> ControlFlow<()> {
        self.now = self.now.saturating_sub(levels);
        ControlFlow::Continue(())
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // A chain of set operations has no hook of its own: count its depth here, before
        // the visit descends into it.
        self.enter(1 + set_depth(&q.body))
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.leave(1 + set_depth(&q.body))
    }

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<()> {
        self.enter(1)
    }

    fn post_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<()> {
        self.leave(1)
    }

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.enter(1)
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.leave(1)
    }
}

/// How deep the set operations of a query body nest (0 for a plain `SELECT`), without
/// recursion. Parenthesized queries are counted by their own [`Query`].
fn set_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut todo = vec![(body, 0)];
    while let Some((s, d)) = todo.pop() {
        deepest = deepest.max(d);
        if let SetExpr::SetOperation { left, right, .. } = s {
            todo.push((left, d + 1));
            todo.push((right, d + 1));
        }
    }
    deepest
}

/// Drops `node` without recursing deeper than a few levels at a time: every expression is
/// replaced by a leaf once its children have been (post-order), and every chain of set
/// operations is taken apart in a loop.
pub fn dismantle<T: VisitMut>(mut node: T) {
    let _ = VisitMut::visit(&mut node, &mut Dismantle);
}

struct Dismantle;

fn leaf() -> Expr {
    Expr::value(Value::Null)
}

fn empty_body() -> Box<SetExpr> {
    Box::new(SetExpr::Values(Values {
        explicit_row: false,
        value_keyword: false,
        rows: Vec::new(),
    }))
}

impl VisitorMut for Dismantle {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        drop(std::mem::replace(e, leaf()));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        let mut todo = vec![std::mem::replace(&mut q.body, empty_body())];
        while let Some(mut s) = todo.pop() {
            if let SetExpr::SetOperation { left, right, .. } = s.as_mut() {
                todo.push(std::mem::replace(left, empty_body()));
                todo.push(std::mem::replace(right, empty_body()));
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_dialect::FreshetDialect;
    use crate::sqlparser::ast::Statement;
    use crate::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::new(&FreshetDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .expect("parses")
    }

    fn chain(op: &str, n: usize) -> String {
        let mut s = String::from("SELECT 1");
        for _ in 1..n {
            s.push_str(op);
            s.push('1');
        }
        s
    }

    #[test]
    fn shallow_statements_pass() {
        check(&parse(&chain(" + ", 900))).expect("900 terms are fine");
        check(&parse(
            "SELECT a FROM t WHERE b IN (SELECT c FROM u WHERE d > 1)",
        ))
        .expect("ok");
        let unions = vec!["SELECT 1"; 500].join(" UNION ALL ");
        check(&parse(&unions)).expect("500 unions are fine");
    }

    #[test]
    fn deep_chains_are_refused_and_dropped_without_overflow() {
        for sql in [
            chain(" + ", 200_000),
            chain(" OR 1 = ", 100_000),
            vec!["SELECT 1"; 100_000].join(" UNION ALL "),
        ] {
            let stmt = parse(&sql);
            assert!(check(&stmt).is_err());
            dismantle(stmt);
        }
    }
}
