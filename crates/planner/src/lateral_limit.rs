//! `LATERAL` subqueries with `ORDER BY … LIMIT n` correlated by equality: the top `n`
//! rows per outer row (RisingWave's top-N per group, written as a join).
//!
//! ```sql
//! FROM a, LATERAL (SELECT w FROM b WHERE b.k = a.k AND b.w > 0 ORDER BY w DESC LIMIT 2) x
//! ```
//!
//! DataFusion decorrelates no subquery with a `LIMIT`. Since the rows a correlated
//! equality selects are those of one partition of the inner relation, the limit becomes
//! a `row_number()` per partition computed before the correlation, which DataFusion
//! then decorrelates as any other equality (and views run as a top-N):
//!
//! ```sql
//! LATERAL (SELECT w FROM (SELECT b.*, row_number() OVER (PARTITION BY b.k ORDER BY w DESC)
//!                           AS __freshet_rn FROM b WHERE b.w > 0) AS b
//!          WHERE b.k = a.k AND __freshet_rn <= 2) x
//! ```
//!
//! Taken when the subquery is one plain `SELECT` (no aggregates, grouping, `DISTINCT` or
//! `WITH`) over one relation, with a literal `LIMIT` (and `OFFSET`), where the outer
//! relations are read only in `WHERE`: by equalities of an inner expression with an outer
//! one, and by terms of the outer row alone (applied after the ranking: they keep all of
//! an outer row's matches or none). Anything else is left as it is (and DataFusion
//! refuses it).

use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;

use crate::naming::ident_name;
use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    visit_expressions, BinaryOperator, ExcludeSelectItem, Expr, GroupByExpr, Ident, LimitClause,
    ObjectName, OrderByKind, Query, SelectItem, SetExpr, Statement, TableFactor, Value, VisitMut,
    VisitorMut,
};
use crate::sqlparser::parser::Parser;

/// The row number column of the rewrite.
const ROW_NUMBER: &str = "__freshet_rn";

/// Rewrites the `LATERAL` subqueries with a limit of `stmt` (see the module
/// documentation).
pub async fn rewrite(ctx: &SessionContext, stmt: &mut Statement) {
    // The column names of each lateral subquery's relations, in the order the rewrite
    // below meets them (the walk cannot await): an unqualified column they do not have is
    // an outer one.
    let mut froms = Vec::new();
    struct Collect<'a>(&'a mut Vec<Option<Vec<crate::sqlparser::ast::TableWithJoins>>>);
    impl crate::sqlparser::ast::Visitor for Collect<'_> {
        type Break = ();
        fn post_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Derived {
                lateral: true,
                subquery,
                ..
            } = t
            {
                self.0.push(crate::subquery_scope::from_of(subquery));
            }
            ControlFlow::Continue(())
        }
    }
    let _ = crate::sqlparser::ast::Visit::visit(&*stmt, &mut Collect(&mut froms));
    if froms.is_empty() {
        return;
    }
    let columns = crate::subquery_scope::columns_of_each(ctx, froms).await;
    struct R<'a> {
        ctx: &'a SessionContext,
        columns: std::vec::IntoIter<Option<Vec<String>>>,
    }
    impl VisitorMut for R<'_> {
        type Break = ();
        fn post_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Derived {
                lateral: true,
                subquery,
                ..
            } = t
            {
                let columns = self.columns.next().flatten();
                if let Some(q) = ranked(self.ctx, subquery, columns.as_deref()) {
                    **subquery = q;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut R {
        ctx,
        columns: columns.into_iter(),
    });
}

/// A literal non-negative integer.
fn count(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The `AND`ed terms of `e`.
fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other.clone()),
    }
}

/// The subquery's own scope: the name its relation goes by, and that relation's columns
/// (when they could be planned).
struct Scope<'a> {
    name: String,
    columns: Option<&'a [String]>,
}

/// Whether `e` reads an outer column: one qualified by a name other than the inner
/// relation's, or an unqualified one the inner relation does not have.
fn reads_outer(e: &Expr, scope: &Scope) -> bool {
    visit_expressions(e, |x| match x {
        Expr::CompoundIdentifier(p) if p.len() == 2 && ident_name(&p[0]) != scope.name => {
            ControlFlow::Break(())
        }
        Expr::Identifier(i) if scope.columns.is_some_and(|c| !c.contains(&ident_name(i))) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether `e` may read a column of the inner relation: one qualified by its name, or an
/// unqualified one it has (any, when its columns are not known).
fn reads_inner(e: &Expr, scope: &Scope) -> bool {
    visit_expressions(e, |x| match x {
        Expr::CompoundIdentifier(p) if p.len() == 2 && ident_name(&p[0]) == scope.name => {
            ControlFlow::Break(())
        }
        Expr::Identifier(i) if scope.columns.is_none_or(|c| c.contains(&ident_name(i))) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn ranked(ctx: &SessionContext, q: &Query, columns: Option<&[String]>) -> Option<Query> {
    if q.with.is_some() || q.fetch.is_some() {
        return None;
    }
    let (limit, offset) = match &q.limit_clause {
        Some(LimitClause::LimitOffset {
            limit: Some(limit),
            offset,
            limit_by,
        }) if limit_by.is_empty() => (
            count(limit)?,
            match offset {
                Some(o) => count(&o.value)?,
                None => 0,
            },
        ),
        _ => return None,
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if s.distinct.is_some()
        || grouped
        || s.having.is_some()
        || s.qualify.is_some()
        || !s.named_window.is_empty()
    {
        return None;
    }
    let [from] = s.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let alias = match &from.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => match alias {
            Some(a) if a.columns.is_empty() => a.name.clone(),
            Some(_) => return None,
            None => name.0.last()?.as_ident()?.clone(),
        },
        TableFactor::Derived {
            lateral: false,
            alias: Some(a),
            ..
        } if a.columns.is_empty() => a.name.clone(),
        _ => return None,
    };
    let inner = Scope {
        name: ident_name(&alias),
        columns,
    };
    // Aggregates and window functions are not row-wise.
    let state = ctx.state();
    let aggregates = state.aggregate_functions();
    let projection_ok = s.projection.iter().all(|item| {
        let e = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return true,
        };
        !reads_outer(e, &inner)
            && visit_expressions(e, |x| match x {
                Expr::Function(f)
                    if f.over.is_some()
                        || aggregates.contains_key(&f.name.to_string().to_ascii_lowercase()) =>
                {
                    ControlFlow::Break(())
                }
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            })
            .is_continue()
    });
    if !projection_ok {
        return None;
    }
    // WHERE: the correlation (inner = outer equalities, and terms of the outer row alone,
    // which keep all of its rows or none), and the rest (inner only).
    let mut terms = Vec::new();
    if let Some(w) = &s.selection {
        conjuncts(w, &mut terms);
    }
    let (mut keys, mut correlated, mut local) = (Vec::new(), Vec::new(), Vec::new());
    for t in terms {
        if !reads_outer(&t, &inner) {
            local.push(t.to_string());
            continue;
        }
        if !reads_inner(&t, &inner) {
            correlated.push(t.to_string());
            continue;
        }
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = &t
        else {
            return None;
        };
        let one_side = |e: &Expr| (reads_inner(e, &inner), reads_outer(e, &inner));
        let key = match (one_side(left), one_side(right)) {
            ((true, false), (false, true)) => left,
            ((false, true), (true, false)) => right,
            _ => return None,
        };
        keys.push(key.to_string());
        correlated.push(t.to_string());
    }
    if keys.is_empty() {
        return None;
    }
    // ORDER BY, with a select-list alias or position replaced by its expression.
    let item_expr = |e: &Expr| -> Option<Expr> {
        let by_alias = match e {
            Expr::Identifier(i) => s.projection.iter().find_map(|item| match item {
                SelectItem::ExprWithAlias { expr, alias } if ident_name(alias) == ident_name(i) => {
                    Some(expr.clone())
                }
                _ => None,
            }),
            _ => None,
        };
        by_alias.or_else(|| {
            let n = count(e)? as usize;
            match s.projection.get(n.checked_sub(1)?)? {
                SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => {
                    Some(x.clone())
                }
                _ => None,
            }
        })
    };
    let order = match &q.order_by {
        None => String::new(),
        Some(ob) => match &ob.kind {
            OrderByKind::Expressions(exprs) if ob.interpolate.is_none() => {
                let mut out = Vec::with_capacity(exprs.len());
                for o in exprs {
                    let mut o = o.clone();
                    if let Some(x) = item_expr(&o.expr) {
                        o.expr = x;
                    }
                    if o.with_fill.is_some() || reads_outer(&o.expr, &inner) {
                        return None;
                    }
                    out.push(o.to_string());
                }
                format!(" ORDER BY {}", out.join(", "))
            }
            _ => return None,
        },
    };
    let projection: Vec<String> = s.projection.iter().map(|i| i.to_string()).collect();
    let local = if local.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", local.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM (SELECT {alias}.*, row_number() OVER (PARTITION BY {}{order}) AS \
         {ROW_NUMBER} FROM {}{local}) AS {alias} WHERE {} AND {ROW_NUMBER} > {offset} AND \
         {ROW_NUMBER} <= {}",
        projection.join(", "),
        keys.join(", "),
        from.relation,
        correlated.join(" AND "),
        offset.saturating_add(limit),
    );
    let mut out = Parser::new(&FreshetDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .ok()?;
    // A `*` of the subquery leaves the row number out.
    if let SetExpr::Select(sel) = out.body.as_mut() {
        for item in &mut sel.projection {
            if let SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o) = item {
                if o.opt_exclude.is_some() {
                    return None;
                }
                o.opt_exclude = Some(ExcludeSelectItem::Single(ObjectName::from(vec![
                    Ident::new(ROW_NUMBER),
                ])));
            }
        }
    }
    Some(*out)
}
