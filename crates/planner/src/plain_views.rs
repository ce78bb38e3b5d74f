//! Plain views (`CREATE VIEW`): a statement that names one reads its query instead, as a
//! subquery under the view's name (or the alias the statement gives it), with the view's
//! column names. This is done on the statement's syntax tree before anything plans it,
//! so queries, DML, `EXPLAIN`, cursors, and materialized views and sinks over plain
//! views all see ordinary SQL. A view's own query had the plain views it named expanded
//! when it was created, so one pass expands everything.
//!
//! A name that a `WITH` clause of the statement defines is left alone (the CTE hides the
//! view), as is a name with arguments (a table function).

use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::catalog::{Catalog, PlainViewDef};
use crate::naming::ident_name;
use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    ObjectName, Query, SetExpr, Statement, TableFactor, VisitMut, VisitorMut,
};
use crate::sqlparser::parser::Parser;
use crate::PlannerError;

/// Expands every plain view `node` names; whether it named any.
pub fn expand<T: VisitMut + crate::sqlparser::ast::Visit>(
    node: &mut T,
    catalog: &Catalog,
) -> Result<bool, PlannerError> {
    if catalog.plain_views.is_empty() {
        return Ok(false);
    }
    let mut ctes = HashSet::new();
    collect_ctes(node, &mut ctes);
    let mut x = Expander {
        catalog,
        ctes,
        expanded: false,
    };
    match node.visit(&mut x) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(x.expanded),
    }
}

/// The names `WITH` clauses in `node` define.
/// The names of every CTE `node` defines, at any depth.
pub(crate) fn collect_ctes<T: crate::sqlparser::ast::Visit>(node: &T, out: &mut HashSet<String>) {
    struct Ctes<'a>(&'a mut HashSet<String>);
    impl crate::sqlparser::ast::Visitor for Ctes<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.0.insert(ident_name(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Ctes(out));
}

struct Expander<'a> {
    catalog: &'a Catalog,
    ctes: HashSet<String>,
    expanded: bool,
}

impl VisitorMut for Expander<'_> {
    type Break = PlannerError;

    fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<PlannerError> {
        let TableFactor::Table {
            name, alias, args, ..
        } = tf
        else {
            return ControlFlow::Continue(());
        };
        if args.is_some() {
            return ControlFlow::Continue(());
        }
        let Some(view) = view_named(self.catalog, name) else {
            return ControlFlow::Continue(());
        };
        if self.ctes.contains(&view.name) {
            return ControlFlow::Continue(());
        }
        let (alias_name, alias_columns) = match alias {
            Some(a) => (
                ident_name(&a.name),
                a.columns.iter().map(|c| ident_name(&c.name)).collect(),
            ),
            // A view in a schema is named by its name there (`long_plays.id`).
            None => (crate::schemas::split(&view.name).1.to_string(), Vec::new()),
        };
        let columns = if alias_columns.is_empty() {
            view.columns.clone()
        } else {
            alias_columns
        };
        match derived(view, &alias_name, &columns) {
            Ok(d) => {
                *tf = d;
                self.expanded = true;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// The plain view `name` refers to: `v`, `public.v` or `s.v`.
fn view_named<'a>(catalog: &'a Catalog, name: &ObjectName) -> Option<&'a PlainViewDef> {
    catalog.plain_view(&crate::schemas::catalog_name(name)?)
}

/// `(view query) AS alias (columns)` as a table factor.
fn derived(
    view: &PlainViewDef,
    alias: &str,
    columns: &[String],
) -> Result<TableFactor, PlannerError> {
    let cols = if columns.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        format!(" ({})", quoted.join(", "))
    };
    let sql = format!("SELECT * FROM ({}) AS {}{cols}", view.sql, quote(alias));
    let stmt = Parser::new(&FreshetDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_statement())
        .map_err(|e| {
            PlannerError::Internal(format!(
                "the query of view \"{}\" does not parse: {e}",
                view.name
            ))
        })?;
    let Statement::Query(q) = stmt else {
        return Err(PlannerError::Internal(
            "view expansion is not a query".into(),
        ));
    };
    match *q.body {
        SetExpr::Select(mut s) if s.from.len() == 1 => Ok(s.from.remove(0).relation),
        _ => Err(PlannerError::Internal("view expansion has no FROM".into())),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.plain_views.push(PlainViewDef {
            id: 1,
            name: "v".into(),
            sql: "SELECT a, b FROM t WHERE a > 0".into(),
            columns: vec!["x".into(), "y".into()],
        });
        c
    }

    fn expanded(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&FreshetDialect {}, sql).expect("parses");
        expand(&mut stmts, &catalog()).expect("expands");
        stmts[0].to_string()
    }

    #[test]
    fn names_become_subqueries_with_the_views_columns() {
        assert_eq!(
            expanded("SELECT x FROM v WHERE y = 1"),
            "SELECT x FROM (SELECT a, b FROM t WHERE a > 0) AS \"v\" (\"x\", \"y\") WHERE y = 1"
        );
        assert_eq!(
            expanded("SELECT q.x FROM public.v AS q JOIN t ON q.x = t.a"),
            "SELECT q.x FROM (SELECT a, b FROM t WHERE a > 0) AS \"q\" (\"x\", \"y\") JOIN t ON q.x = t.a"
        );
        // A CTE of that name hides the view; other names are left alone.
        let cte = "WITH v AS (SELECT 1 AS x) SELECT x FROM v";
        assert_eq!(expanded(cte), cte);
        assert_eq!(expanded("SELECT * FROM w"), "SELECT * FROM w");
    }
}
