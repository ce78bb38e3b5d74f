//! `x [NOT] IN (SELECT y …)` and `[NOT] EXISTS (SELECT …)` in a select list. DataFusion
//! turns these into joins only inside `WHERE`; in a select list it fails ("physical plan
//! does not support logical expression InSubquery"). There they are written as
//! correlated `count(*)` subqueries, which DataFusion decorrelates, with SQL's
//! three-valued `IN`:
//!
//! ```text
//! CASE WHEN (SELECT count(*) FROM f WHERE w AND y = x) > 0 THEN true
//!      WHEN x IS NULL AND (SELECT count(*) FROM f WHERE w) > 0 THEN NULL
//!      WHEN (SELECT count(*) FROM f WHERE w AND y IS NULL) > 0 THEN NULL
//!      ELSE false END
//! ```
//!
//! Only a plain subquery (one `SELECT` without `DISTINCT`, grouping, `LIMIT`, set
//! operations or `WITH`) is rewritten, and only in a select over one relation: `x`'s
//! columns are qualified with that relation's name, so that a column of the subquery's
//! own relation with the same name cannot capture them. In a select without `FROM` any
//! subquery is rewritten (it cannot be correlated), over the subquery as a derived
//! table. Anything else is left as it is.

use std::ops::ControlFlow;

use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    visit_expressions_mut, Expr, GroupByExpr, Ident, Query, Select, SelectItem, SetExpr,
    TableFactor, VisitMut, VisitorMut,
};
use crate::sqlparser::parser::Parser;

/// Rewrites the `IN`/`EXISTS` subqueries of every select list in `node`.
pub fn rewrite<T: VisitMut>(node: &mut T) {
    struct R;
    impl VisitorMut for R {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(s) = q.body.as_mut() {
                rewrite_select(s);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut R);
}

/// A scalar subquery without `FROM` that filters its one row, `(SELECT x WHERE c)`, as
/// `CASE WHEN c THEN x END`: NULL when `c` is not true, as the subquery's empty result
/// is. DataFusion's optimizer took the subquery's row as always there (`(SELECT 1 WHERE
/// false) IS NULL` was false). Only when `x` calls no function (so it holds no
/// aggregate, which would make the one row unconditional) and no subquery.
pub fn from_less_scalars<T: VisitMut>(node: &mut T) {
    let _ = visit_expressions_mut(node, |e| {
        if let Some(new) = from_less_scalar(e) {
            *e = new;
        }
        ControlFlow::<()>::Continue(())
    });
}

fn from_less_scalar(e: &Expr) -> Option<Expr> {
    let Expr::Subquery(q) = e else {
        return None;
    };
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let plain = s.from.is_empty()
        && s.distinct.is_none()
        && s.having.is_none()
        && matches!(&s.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && s.projection.len() == 1;
    let condition = s.selection.as_ref()?;
    if !plain {
        return None;
    }
    let item = match &s.projection[0] {
        SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => x,
        _ => return None,
    };
    let mut calls = false;
    let _ = crate::sqlparser::ast::visit_expressions(item, |x| {
        if matches!(
            x,
            Expr::Function(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) {
            calls = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if calls {
        return None;
    }
    Some(Expr::Case {
        case_token: crate::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        end_token: crate::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![crate::sqlparser::ast::CaseWhen {
            condition: condition.clone(),
            result: item.clone(),
        }],
        else_result: None,
    })
}

fn rewrite_select(s: &mut Select) {
    if s.from.is_empty() {
        return rewrite_items(s, uncorrelated);
    }
    if let Some(outer) = single_relation(s) {
        rewrite_items(s, |x| rewritten(x, &outer));
    }
}

/// Rewrites each expression of `s`'s select list that `rewrite` takes.
fn rewrite_items(s: &mut Select, rewrite: impl Fn(&Expr) -> Option<Expr>) {
    for item in s.projection.iter_mut() {
        let e = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        let _ = visit_expressions_mut(e, |x| {
            if let Some(new) = rewrite(x) {
                *x = new;
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// In a select list without `FROM` (`SELECT EXISTS (SELECT 1 FROM t WHERE …)`, as
/// SQLAlchemy's `exists()` asks), a subquery cannot be correlated: `EXISTS (q)` is
/// `(SELECT count(*) FROM (q LIMIT 1)) > 0`, and `x IN (q)` a count of `q`'s matching
/// rows with SQL's three-valued `IN`.
fn uncorrelated(e: &Expr) -> Option<Expr> {
    let sql = match e {
        Expr::Exists { subquery, negated } => {
            let count = format!(
                "(SELECT count(*) FROM (SELECT * FROM ({subquery}) AS __freshet_q LIMIT 1) \
                 AS __freshet_exists)"
            );
            match negated {
                false => format!("({count} > 0)"),
                true => format!("({count} = 0)"),
            }
        }
        Expr::InSubquery {
            expr,
            subquery,
            negated,
        } => {
            if contains_subquery(expr) {
                return None;
            }
            let count = |w: &str| {
                format!("(SELECT count(*) FROM ({subquery}) AS __freshet_in(y) WHERE {w}) > 0")
            };
            three_valued_in(count, &expr.to_string(), "y", *negated)
        }
        _ => return None,
    };
    parse_expr(&sql)
}

/// `x [NOT] IN (…)` with SQL's three values, from `count(w)`: whether a row of the
/// subquery (whose item is `y`) satisfies `w`. True if one equals `x`; NULL if `x` is
/// NULL and there are rows, or if none equals and one is NULL; else false.
fn three_valued_in(count: impl Fn(&str) -> String, x: &str, y: &str, negated: bool) -> String {
    let case = format!(
        "CASE WHEN {} THEN true \
         WHEN ({x}) IS NULL AND {} THEN CAST(NULL AS BOOLEAN) \
         WHEN {} THEN CAST(NULL AS BOOLEAN) ELSE false END",
        count(&format!("({y}) = ({x})")),
        count("true"),
        count(&format!("({y}) IS NULL")),
    );
    match negated {
        false => format!("({case})"),
        true => format!("(NOT ({case}))"),
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&FreshetDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

fn contains_subquery(x: &Expr) -> bool {
    let mut found = false;
    let _ = crate::sqlparser::ast::visit_expressions(x, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
        ) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// The name the one relation of `s`'s FROM goes by.
fn single_relation(s: &Select) -> Option<Ident> {
    let [from] = s.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    match &from.relation {
        TableFactor::Table { name, alias, .. } => Some(match alias {
            Some(a) => a.name.clone(),
            None => name.0.last()?.as_ident()?.clone(),
        }),
        TableFactor::Derived { alias: Some(a), .. } => Some(a.name.clone()),
        _ => None,
    }
}

/// The parts of a plain subquery: its FROM and WHERE, and its one select item.
fn plain(q: &Query) -> Option<(String, String, Option<String>)> {
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if s.distinct.is_some() || grouped || s.having.is_some() || s.from.is_empty() {
        return None;
    }
    let from = s
        .from
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let cond = s
        .selection
        .as_ref()
        .map_or("true".to_string(), |w| format!("({w})"));
    let item = match s.projection.as_slice() {
        [SelectItem::UnnamedExpr(e)] | [SelectItem::ExprWithAlias { expr: e, .. }] => {
            Some(e.to_string())
        }
        _ => None,
    };
    Some((from, cond, item))
}

/// `x` with its unqualified columns qualified with `outer`; `None` if it holds a
/// subquery.
fn qualified(x: &Expr, outer: &Ident) -> Option<Expr> {
    let mut x = x.clone();
    let mut nested = false;
    let _ = visit_expressions_mut(&mut x, |e| {
        match e {
            Expr::Identifier(i) => {
                *e = Expr::CompoundIdentifier(vec![outer.clone(), i.clone()]);
            }
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => nested = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (!nested).then_some(x)
}

fn rewritten(e: &Expr, outer: &Ident) -> Option<Expr> {
    let sql = match e {
        Expr::Exists { subquery, negated } => {
            let (from, cond, _) = plain(subquery)?;
            let count = format!("(SELECT count(*) FROM {from} WHERE {cond})");
            match negated {
                false => format!("({count} > 0)"),
                true => format!("({count} = 0)"),
            }
        }
        Expr::InSubquery {
            expr,
            subquery,
            negated,
        } => {
            let (from, cond, item) = plain(subquery)?;
            let y = item?;
            let x = qualified(expr, outer)?;
            let count = |w: &str| format!("(SELECT count(*) FROM {from} WHERE {cond} AND {w}) > 0");
            three_valued_in(count, &x.to_string(), &y, *negated)
        }
        _ => return None,
    };
    parse_expr(&sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten_sql(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&FreshetDialect {}, sql).expect("parses");
        rewrite(&mut stmts);
        stmts[0].to_string()
    }

    #[test]
    fn select_list_subqueries_become_counts() {
        let s = rewritten_sql("SELECT id, id IN (SELECT id FROM u WHERE k > 0) AS x FROM t");
        assert!(
            s.contains("(u.id) = (t.id)") || s.contains("(id) = (t.id)"),
            "{s}"
        );
        assert!(!s.contains(" IN (SELECT"), "{s}");
        let s = rewritten_sql("SELECT NOT EXISTS (SELECT 1 FROM u WHERE u.k = t.id) FROM t");
        assert!(s.contains("count(*)") && !s.contains("EXISTS"), "{s}");
        // Without FROM, any subquery: it cannot be correlated.
        let s = rewritten_sql("SELECT EXISTS (SELECT k FROM u GROUP BY k) AS e");
        assert!(s.contains("count(*)") && !s.contains("EXISTS"), "{s}");
        let s = rewritten_sql("SELECT 3 NOT IN (SELECT k FROM u LIMIT 2)");
        assert!(
            s.contains("__freshet_in") && !s.contains(" IN (SELECT"),
            "{s}"
        );
        // WHERE is DataFusion's own business, and so are grouped subqueries and joins.
        for same in [
            "SELECT id FROM t WHERE id IN (SELECT k FROM u)",
            "SELECT id IN (SELECT k FROM u GROUP BY k) FROM t",
            "SELECT t.id IN (SELECT k FROM u) FROM t JOIN v ON t.id = v.id",
        ] {
            assert_eq!(rewritten_sql(same), same);
        }
    }
}
