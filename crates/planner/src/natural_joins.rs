//! `NATURAL JOIN` as Postgres defines it: `JOIN … USING (the columns of the same name on
//! both sides, in the left side's order)`.
//!
//! DataFusion joins on those columns too, but `*` keeps the left side's columns in place
//! (`id, a, b, id2, name`), where Postgres puts the common columns first (`a, id, b,
//! id2, name`); and a RIGHT or FULL NATURAL JOIN was refused (`crate::using_join` cannot
//! tell its columns). So, before the USING rewrite, a NATURAL join whose sides' columns
//! are known — stored relations (not a CTE of their name), subqueries (not LATERAL, as
//! DataFusion plans them alone), joins of them, aliases with column lists — is written as the USING join it means, which `crate::using_join` then
//! shapes as Postgres does. Others are left to DataFusion. A table's hidden `_row_id`
//! (`crate::hidden_columns`) is not a common column.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;

use crate::naming::ident_name;
use crate::sqlparser::ast::{
    Expr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SetExpr,
    Statement, TableAlias, TableFactor, TableWithJoins, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};

/// The dialect level from which NATURAL joins are rewritten (a view's `*` over one
/// changes its column order).
pub const LEVEL: u32 = 10;

/// Rewrites the NATURAL joins of `stmt` whose columns are known.
pub async fn rewrite(ctx: &SessionContext, stmt: &mut Statement) {
    let (names, ctes) = relations(stmt);
    if names.is_empty() {
        return;
    }
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    for name in names.into_iter().filter(|n| !ctes.contains(n)) {
        if let Some(query) = name.strip_prefix(DERIVED) {
            if !ctes.is_empty() {
                // Planned alone, it would read a relation where the statement reads a CTE
                // of its name.
                continue;
            }
            // A subquery's columns, as DataFusion plans it alone (it is not LATERAL).
            let Ok(stmt) = crate::parser::parse(query) else {
                continue;
            };
            let Some(crate::parser::Stmt::Sql(stmt)) = stmt.into_iter().next() else {
                continue;
            };
            let planned = ctx
                .state()
                .statement_to_plan(datafusion::sql::parser::Statement::Statement(stmt))
                .await;
            if let Ok(plan) = planned {
                let cols = plan
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                columns.insert(name, cols);
            }
            continue;
        }
        if let Ok(p) = ctx.table_provider(crate::schemas::table_ref(&name)).await {
            let cols = p
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            columns.insert(name, cols);
        }
    }
    struct Naturals<'a>(&'a HashMap<String, Vec<String>>);
    impl VisitorMut for Naturals<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            for s in selects_mut(q.body.as_mut()) {
                for twj in &mut s.from {
                    fold(twj, self.0);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Naturals(&columns));
}

/// The SELECTs of a query's body (those of a UNION too; nested queries are visited on
/// their own).
fn selects_mut(body: &mut SetExpr) -> Vec<&mut Select> {
    match body {
        SetExpr::Select(s) => vec![s.as_mut()],
        SetExpr::SetOperation { left, right, .. } => {
            let mut out = selects_mut(left);
            out.extend(selects_mut(right));
            out
        }
        _ => Vec::new(),
    }
}

fn selects(body: &SetExpr) -> Vec<&Select> {
    match body {
        SetExpr::Select(s) => vec![s.as_ref()],
        SetExpr::SetOperation { left, right, .. } => {
            let mut out = selects(left);
            out.extend(selects(right));
            out
        }
        _ => Vec::new(),
    }
}

/// The relations `stmt` names in a NATURAL join's `FROM` item, and its CTEs' names.
fn relations(stmt: &Statement) -> (HashSet<String>, HashSet<String>) {
    struct Names {
        names: HashSet<String>,
        ctes: HashSet<String>,
    }
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.ctes.insert(ident_name(&cte.alias.name));
                }
            }
            for s in selects(q.body.as_ref()) {
                for twj in s.from.iter().filter(|t| has_natural(t)) {
                    collect(&twj.relation, &mut self.names);
                    for j in &twj.joins {
                        collect(&j.relation, &mut self.names);
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut n = Names {
        names: HashSet::new(),
        ctes: HashSet::new(),
    };
    let _ = stmt.visit(&mut n);
    (n.names, n.ctes)
}

fn has_natural(twj: &TableWithJoins) -> bool {
    twj.joins.iter().any(|j| {
        matches!(constraint(&j.join_operator), Some(JoinConstraint::Natural))
            || matches!(&j.relation, TableFactor::NestedJoin { table_with_joins, .. } if has_natural(table_with_joins))
    }) || matches!(&twj.relation, TableFactor::NestedJoin { table_with_joins, .. } if has_natural(table_with_joins))
}

/// The key, among relation names, of a subquery's columns: this, then its SQL.
const DERIVED: &str = "\u{0}derived:";

fn collect(tf: &TableFactor, out: &mut HashSet<String>) {
    match tf {
        TableFactor::Derived {
            lateral: false,
            subquery,
            ..
        } => {
            out.insert(format!("{DERIVED}{subquery}"));
        }
        TableFactor::Table {
            name, args: None, ..
        } => {
            if let Some(n) = crate::hidden_columns::relation_of(name) {
                out.insert(n);
            }
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            collect(&table_with_joins.relation, out);
            for j in &table_with_joins.joins {
                collect(&j.relation, out);
            }
        }
        _ => {}
    }
}

/// Rewrites the NATURAL joins of `twj`; the columns of the whole join, if known.
fn fold(twj: &mut TableWithJoins, known: &HashMap<String, Vec<String>>) -> Option<Vec<String>> {
    let mut left = columns_of(&mut twj.relation, known);
    for join in &mut twj.joins {
        let right = columns_of(&mut join.relation, known);
        let (Some(l), Some(r)) = (left.as_ref(), right.as_ref()) else {
            left = None;
            continue;
        };
        let c = if inner_or_outer(&join.join_operator) {
            constraint_mut(&mut join.join_operator)
        } else {
            None
        };
        let merged: Vec<String> = match c {
            Some(c) if matches!(c, JoinConstraint::Natural) => {
                let common: Vec<String> = l.iter().filter(|n| r.contains(n)).cloned().collect();
                let unique = common
                    .iter()
                    .all(|n| l.iter().filter(|x| *x == n).count() == 1)
                    && common
                        .iter()
                        .all(|n| r.iter().filter(|x| *x == n).count() == 1);
                if !unique {
                    // An ambiguous column: DataFusion's to refuse.
                    left = None;
                    continue;
                }
                if common.is_empty() {
                    // No common column: every pair (a RIGHT or FULL join keeps the rows
                    // of an empty side).
                    *c = JoinConstraint::On(Expr::value(Value::Boolean(true)));
                    left = Some(l.iter().chain(r).cloned().collect());
                    continue;
                }
                *c = JoinConstraint::Using(
                    common
                        .iter()
                        .map(|n| {
                            ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote('"', n))])
                        })
                        .collect(),
                );
                merge(l, r, &common)
            }
            Some(JoinConstraint::Using(cols)) => {
                let common: Vec<String> = cols
                    .iter()
                    .filter_map(|c| {
                        c.0.last()
                            .and_then(ObjectNamePart::as_ident)
                            .map(ident_name)
                    })
                    .collect();
                merge(l, r, &common)
            }
            _ => l.iter().chain(r).cloned().collect(),
        };
        left = Some(merged);
    }
    left
}

/// The columns of a USING join: the common ones, then the left's others, then the
/// right's.
fn merge(l: &[String], r: &[String], common: &[String]) -> Vec<String> {
    common
        .iter()
        .chain(l.iter().filter(|n| !common.contains(n)))
        .chain(r.iter().filter(|n| !common.contains(n)))
        .cloned()
        .collect()
}

fn columns_of(tf: &mut TableFactor, known: &HashMap<String, Vec<String>>) -> Option<Vec<String>> {
    match tf {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let relation = crate::hidden_columns::relation_of(name)?;
            let cols = renamed(known.get(&relation)?, alias.as_ref())?;
            // A table's hidden row id (last, named as such by any alias) is no common
            // column.
            Some(match crate::hidden_columns::stored_target(&relation) {
                Some(_) => cols
                    .into_iter()
                    .filter(|c| c != crate::catalog::ROW_ID)
                    .collect(),
                None => cols,
            })
        }
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => renamed(known.get(&format!("{DERIVED}{subquery}"))?, alias.as_ref()),
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => fold(table_with_joins, known),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            fold(table_with_joins, known);
            None
        }
        _ => None,
    }
}

/// `cols` as `alias` renames them (its column list renames the first ones).
fn renamed(cols: &[String], alias: Option<&TableAlias>) -> Option<Vec<String>> {
    let mut cols = cols.to_vec();
    if let Some(a) = alias {
        if a.columns.len() > cols.len() {
            return None;
        }
        for (c, renamed) in cols.iter_mut().zip(&a.columns) {
            *c = ident_name(&renamed.name);
        }
    }
    Some(cols)
}

/// A join's constraint (`ON`, `USING`, `NATURAL`), for the join kinds that have one.
pub(crate) fn constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    use JoinOperator as J;
    match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c) => Some(c),
        _ => None,
    }
}

/// [`constraint`], to change.
pub(crate) fn constraint_mut(op: &mut JoinOperator) -> Option<&mut JoinConstraint> {
    use JoinOperator as J;
    match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c) => Some(c),
        _ => None,
    }
}

/// Whether a join is an inner or outer one (a NATURAL semi join is left to DataFusion).
fn inner_or_outer(op: &JoinOperator) -> bool {
    use JoinOperator as J;
    matches!(
        op,
        J::Join(_)
            | J::Inner(_)
            | J::Left(_)
            | J::LeftOuter(_)
            | J::Right(_)
            | J::RightOuter(_)
            | J::FullOuter(_)
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;

    use super::*;
    use crate::sql_dialect::FreshetDialect;
    use crate::sqlparser::parser::Parser;

    fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        for (name, cols) in [
            ("n1", &["id", "a", "b"][..]),
            ("n2", &["id2", "a", "name"][..]),
            ("n3", &["a", "b", "extra"][..]),
            ("pg_row_ids.n4", &["a", "_row_id"][..]),
            ("n5", &["p", "r"][..]),
        ] {
            let schema = Arc::new(Schema::new(
                cols.iter()
                    .map(|c| Field::new(*c, DataType::Int64, true))
                    .collect::<Vec<_>>(),
            ));
            let t = MemTable::try_new(schema, vec![vec![]]).unwrap();
            crate::schemas::register(&ctx, name, Arc::new(t)).unwrap();
        }
        ctx
    }

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&FreshetDialect {}, sql)
            .unwrap()
            .remove(0);
        futures::executor::block_on(rewrite(&ctx(), &mut stmt));
        stmt.to_string()
    }

    #[test]
    fn natural_joins_become_using_joins() {
        assert_eq!(
            rewritten("SELECT * FROM n1 NATURAL FULL JOIN n2"),
            r#"SELECT * FROM n1 FULL JOIN n2 USING("a")"#
        );
        assert_eq!(
            rewritten("SELECT * FROM n1 NATURAL JOIN n3"),
            r#"SELECT * FROM n1 JOIN n3 USING("a", "b")"#
        );
        // Through a nested join, whose columns are the USING join's.
        assert_eq!(
            rewritten("SELECT * FROM (n1 NATURAL JOIN n2) NATURAL JOIN n3"),
            r#"SELECT * FROM (n1 JOIN n2 USING("a")) JOIN n3 USING("a", "b")"#
        );
        // Renamed by an alias's columns.
        assert_eq!(
            rewritten("SELECT * FROM n1 AS x(a, z) NATURAL JOIN n3"),
            r#"SELECT * FROM n1 AS x (a, z) JOIN n3 USING("a", "b")"#
        );
        // A hidden row id is not a common column.
        assert_eq!(
            rewritten(
                r#"SELECT * FROM "pg_row_ids"."n4" AS x NATURAL JOIN "pg_row_ids"."n4" AS y"#
            ),
            r#"SELECT * FROM "pg_row_ids"."n4" AS x JOIN "pg_row_ids"."n4" AS y USING("a")"#
        );
        // No common column: every pair.
        assert_eq!(
            rewritten("SELECT * FROM n2 NATURAL RIGHT JOIN n5"),
            "SELECT * FROM n2 RIGHT JOIN n5 ON true"
        );
        // In each SELECT of a UNION.
        assert_eq!(
            rewritten(
                "SELECT a FROM n1 NATURAL JOIN n2 UNION ALL SELECT a FROM n1 NATURAL JOIN n3"
            ),
            r#"SELECT a FROM n1 JOIN n2 USING("a") UNION ALL SELECT a FROM n1 JOIN n3 USING("a", "b")"#
        );
        // A subquery's columns.
        assert_eq!(
            rewritten("SELECT * FROM n1 NATURAL JOIN (SELECT 1 AS a) AS s"),
            r#"SELECT * FROM n1 JOIN (SELECT 1 AS a) AS s USING("a")"#
        );
        // Unknown columns (a CTE of a table's name) and no common column: left to
        // DataFusion.
        let left = ["WITH n2 AS (SELECT 1 AS a) SELECT * FROM n1 NATURAL JOIN n2"];
        for sql in left {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
