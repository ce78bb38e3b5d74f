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
//! relations are read only in `WHERE`, by equalities of an inner expression with an outer
//! one (qualified by an outer name). Anything else is left as it is (and DataFusion
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
pub fn rewrite(ctx: &SessionContext, stmt: &mut Statement) {
    struct R<'a>(&'a SessionContext);
    impl VisitorMut for R<'_> {
        type Break = ();
        fn post_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Derived {
                lateral: true,
                subquery,
                ..
            } = t
            {
                if let Some(q) = ranked(self.0, subquery) {
                    **subquery = q;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut R(ctx));
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

/// Whether `e` reads a column qualified by a name other than `inner`'s.
fn reads_outer(e: &Expr, inner: &str) -> bool {
    visit_expressions(e, |x| match x {
        Expr::CompoundIdentifier(p) if p.len() == 2 && ident_name(&p[0]) != inner => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn ranked(ctx: &SessionContext, q: &Query) -> Option<Query> {
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
    let inner = ident_name(&alias);
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
    // WHERE: the correlation (inner = outer equalities) and the rest (inner only).
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
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = &t
        else {
            return None;
        };
        let key = match (reads_outer(left, &inner), reads_outer(right, &inner)) {
            (false, true) => left,
            (true, false) => right,
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
                    if o.with_fill.is_some() || reads_outer(&o.expr, &inner) {
                        return None;
                    }
                    let mut o = o.clone();
                    if let Some(x) = item_expr(&o.expr) {
                        o.expr = x;
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
