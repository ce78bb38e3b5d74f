//! `x op ANY (subquery)` and `x op ALL (subquery)` where the subquery reads a relation
//! under a name the outer query uses too: `SELECT id FROM plays WHERE id = ANY (SELECT
//! id FROM plays WHERE id > 12)`.
//!
//! DataFusion plans these comparisons as existence tests with `x op column` inside the
//! subquery; with one name on both sides, the outer `plays.id` was read as the inner
//! one, so the test compared the subquery's column with itself: the query above
//! returned every row, and `b > ALL (SELECT b FROM plays …)` none. Here the subquery's
//! relation of such a name is renamed (`FROM plays AS __freshet_any_1`, its columns
//! qualified by the name requalified), so that the names no longer meet. From dialect
//! level 9 on (`crate::dialect`): a view from before is planned as it was.

use std::collections::HashMap;
use std::ops::ControlFlow;

use crate::sqlparser::ast::{
    Expr, Ident, Query, SetExpr, Statement, TableAlias, TableFactor, Visit, VisitMut, Visitor,
    VisitorMut,
};

/// The level the rewrite starts at.
pub const LEVEL: u32 = 9;

/// Rewrites the statement's `ANY`/`ALL` subqueries whose relation names meet others'
/// (see the module).
pub fn rewrite(stmt: &mut Statement) {
    let mut names = Names::default();
    let _ = Visit::visit(&*stmt, &mut names);
    if !names.0.values().any(|n| *n > 1) {
        return;
    }
    let mut next = 0;
    let _ = crate::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        let right = match e {
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => right,
            _ => return ControlFlow::<()>::Continue(()),
        };
        let Expr::Subquery(query) = right.as_mut() else {
            return ControlFlow::Continue(());
        };
        let query: &mut Query = query;
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let mut renamed: Vec<(String, String)> = Vec::new();
        for t in select.from.iter_mut() {
            let relations =
                std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation));
            for relation in relations {
                let Some(name) = exposed_name(relation) else {
                    continue;
                };
                if names.0.get(&name).is_none_or(|c| *c <= 1) {
                    continue;
                }
                if let TableFactor::Table { alias, .. } = relation {
                    next += 1;
                    let new = format!("__freshet_any_{next}");
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: Ident::new(&new),
                        columns: Vec::new(),
                        at: None,
                    });
                    renamed.push((name, new));
                }
            }
        }
        if !renamed.is_empty() {
            let _ = VisitMut::visit(
                query,
                &mut Requalify {
                    renamed,
                    shadowed: Vec::new(),
                },
            );
        }
        ControlFlow::Continue(())
    });
}

/// Qualifies the columns of a renamed relation by its new name, in the subquery and in
/// the queries nested in it, but not in those that name a relation of the old name
/// themselves (where the old name is theirs).
struct Requalify {
    renamed: Vec<(String, String)>,
    /// Per query entered, per renamed name: whether a relation of the query or of one
    /// around it (inside the subquery) has the old name.
    shadowed: Vec<Vec<bool>>,
}

impl VisitorMut for Requalify {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        let own = own_names(q);
        let outer = self.shadowed.last().cloned();
        let here = self
            .renamed
            .iter()
            .enumerate()
            .map(|(i, (old, _))| outer.as_ref().is_some_and(|o| o[i]) || own.contains(old))
            .collect();
        self.shadowed.push(here);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.shadowed.pop();
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let Expr::CompoundIdentifier(parts) = e else {
            return ControlFlow::Continue(());
        };
        let [qualifier, _] = parts.as_mut_slice() else {
            return ControlFlow::Continue(());
        };
        let q = crate::naming::ident_name(qualifier);
        let Some(i) = self.renamed.iter().position(|(old, _)| *old == q) else {
            return ControlFlow::Continue(());
        };
        if !self.shadowed.last().is_some_and(|s| s[i]) {
            *qualifier = Ident::new(&self.renamed[i].1);
        }
        ControlFlow::Continue(())
    }
}

/// The names of the FROM items of `q`'s own select.
fn own_names(q: &Query) -> Vec<String> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return Vec::new();
    };
    select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(exposed_name)
        .collect()
}

/// The name a FROM item is known by: its alias, or its table's last name part.
fn exposed_name(t: &TableFactor) -> Option<String> {
    match t {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => Some(crate::naming::ident_name(&a.name)),
            None => name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(crate::naming::ident_name),
        },
        TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. } => {
            alias.as_ref().map(|a| crate::naming::ident_name(&a.name))
        }
        _ => None,
    }
}

/// How many FROM items of the statement each name is the name of.
#[derive(Default)]
struct Names(HashMap<String, usize>);

impl Visitor for Names {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let Some(n) = exposed_name(t) {
            *self.0.entry(n).or_default() += 1;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = crate::parser::parse(sql).expect("parses").remove(0);
        let crate::parser::Stmt::Sql(stmt) = &mut stmt else {
            panic!("{sql}")
        };
        rewrite(stmt);
        stmt.to_string()
    }

    #[test]
    fn renames_only_relations_whose_names_meet() {
        assert_eq!(
            rewritten("SELECT id FROM pl WHERE id = ANY (SELECT pl.id FROM pl WHERE id > 2)"),
            "SELECT id FROM pl WHERE id = ANY(SELECT __freshet_any_1.id FROM pl AS \
             __freshet_any_1 WHERE id > 2)"
        );
        let aliased = "SELECT b FROM pl AS p WHERE b > ALL(SELECT b FROM pl WHERE d = 'tv')";
        assert_eq!(rewritten(aliased), aliased);
        assert!(
            rewritten("SELECT b FROM pl WHERE b > ALL (SELECT b FROM pl)")
                .contains("ALL(SELECT b FROM pl AS __freshet_any_1)")
        );
        let untouched = "SELECT id FROM pl AS p WHERE id = ANY(SELECT q.id FROM pl AS q)";
        assert_eq!(rewritten(untouched), untouched);
        // A nested query naming its own `pl` keeps its columns; one that does not reads
        // the renamed relation's; ORDER BY is the subquery's too.
        let nested = rewritten(
            "SELECT id FROM pl WHERE b > ALL (SELECT b FROM pl WHERE EXISTS \
             (SELECT 1 FROM pl WHERE pl.d = 'web') AND EXISTS (SELECT 1 FROM t WHERE t.x = \
             pl.d) ORDER BY pl.id LIMIT 2)",
        );
        assert!(
            nested.contains("(SELECT 1 FROM pl WHERE pl.d = 'web')"),
            "{nested}"
        );
        assert!(nested.contains("t.x = __freshet_any_1.d"), "{nested}");
        assert!(nested.contains("ORDER BY __freshet_any_1.id"), "{nested}");
    }
}
