//! Scalar aggregate subqueries correlated by something other than equality, which
//! DataFusion cannot turn into joins:
//!
//! ```sql
//! SELECT t.ts, (SELECT sum(v) FROM t AS u WHERE u.ts <= t.ts) AS running FROM t
//! ```
//!
//! become a left join with the aggregate computed once per distinct combination of the
//! outer columns the subquery reads (the outer relation keeps its name inside, its columns
//! renamed in the condition):
//!
//! ```sql
//! SELECT t.ts, __sq1.agg AS running FROM t LEFT JOIN (
//!     SELECT t.o0 AS c0, sum(v) AS agg FROM (SELECT DISTINCT t.ts AS o0 FROM t) AS t, t AS u
//!     WHERE u.ts <= t.o0 GROUP BY t.o0
//! ) AS __sq1 ON (t.ts IS NOT DISTINCT FROM __sq1.c0)
//! ```
//!
//!
//! (`__sq1`, `o0`, `c0` and `agg` are `__freshet_` names, which no query's own columns
//! have, so that its unqualified columns stay unambiguous.)
//!
//! Each outer row meets at most one row of the join, so its multiplicity is kept; an outer
//! row the condition matches nothing for gets NULL, or 0 for `count`, as the subquery
//! would give. Rewritten in a select list and in `WHERE`, when the query reads one
//! relation without grouping, the subquery is one `SELECT` of one `count`, `sum`, `min`,
//! `max` or `avg` (no `DISTINCT`, grouping, `LIMIT`, set operations or `WITH`), and reads
//! the outer relation only through columns qualified by its name, at least once outside
//! an equality (equalities alone DataFusion decorrelates itself). Anything else is left
//! as it is.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use crate::naming::ident_name;
use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, Expr, FunctionArguments, GroupByExpr,
    Ident, Query, Select, SelectItem, SetExpr, TableFactor, VisitMut, VisitorMut,
};
use crate::sqlparser::parser::Parser;

/// Rewrites the inequality-correlated aggregate subqueries of every query in `node`.
pub fn rewrite<T: VisitMut>(node: &mut T) {
    struct R;
    impl VisitorMut for R {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            selects(q.body.as_mut());
            ControlFlow::Continue(())
        }
    }
    /// The SELECTs of a query body, the sides of its set operations included.
    fn selects(body: &mut SetExpr) {
        match body {
            SetExpr::Select(s) => rewrite_select(s),
            SetExpr::SetOperation { left, right, .. } => {
                selects(left);
                selects(right);
            }
            _ => {}
        }
    }
    let _ = node.visit(&mut R);
}

/// The outer relation: the name its columns are qualified by, and its FROM text.
struct Outer {
    name: Ident,
    from: String,
}

fn outer_relation(s: &Select) -> Option<Outer> {
    let [from] = s.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let name = match &from.relation {
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
        TableFactor::Derived { alias: Some(a), .. } if a.columns.is_empty() => a.name.clone(),
        _ => return None,
    };
    Some(Outer {
        name,
        from: from.relation.to_string(),
    })
}

/// A subquery this module rewrites: its aggregate, FROM, WHERE, and the outer columns it
/// reads.
struct Correlated {
    aggregate: Expr,
    count: bool,
    from: String,
    condition: String,
    columns: Vec<Ident>,
}

fn correlated(q: &Query, outer: &Ident) -> Option<Correlated> {
    // Names compare as Postgres folds them (`E.ts` reads `e`).
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
    let aggregate = match s.projection.as_slice() {
        [SelectItem::UnnamedExpr(e)] | [SelectItem::ExprWithAlias { expr: e, .. }] => e.clone(),
        _ => return None,
    };
    let Expr::Function(f) = &aggregate else {
        return None;
    };
    let fname = f.name.to_string().to_ascii_lowercase();
    // (`first_value` and `named_struct` of a count and a value are `single_row`'s.)
    if !matches!(
        fname.as_str(),
        "count" | "sum" | "min" | "max" | "avg" | "first_value" | "named_struct"
    ) || f.over.is_some()
        || f.filter.is_some()
        || matches!(&f.args, FunctionArguments::List(l) if l.duplicate_treatment.is_some())
    {
        return None;
    }
    // The subquery's own relations must not go by the outer name.
    let inner_names: Vec<String> = s
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(|r| match r {
            TableFactor::Table { name, alias, .. } => Some(match alias {
                Some(a) => ident_name(&a.name),
                None => ident_name(name.0.last()?.as_ident()?),
            }),
            TableFactor::Derived { alias: Some(a), .. } => Some(ident_name(&a.name)),
            _ => None,
        })
        .collect();
    let outer = ident_name(outer);
    if inner_names.contains(&outer) {
        return None;
    }
    let condition = s.selection.as_ref()?;
    let is_outer = |e: &Expr| matches!(e, Expr::CompoundIdentifier(p) if p.len() == 2 && ident_name(&p[0]) == outer);
    let mut columns: BTreeSet<String> = BTreeSet::new();
    let mut nested = false;
    let mut unequal = false;
    let _ = visit_expressions(condition, |e| {
        match e {
            Expr::CompoundIdentifier(p) if is_outer(e) => {
                columns.insert(ident_name(&p[1]));
            }
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => nested = true,
            Expr::BinaryOp { left, op, right }
                if !matches!(op, BinaryOperator::Eq | BinaryOperator::And)
                    && (reads(left, &is_outer) || reads(right, &is_outer)) =>
            {
                unequal = true;
            }
            Expr::Between { .. } | Expr::InList { .. } if reads(e, &is_outer) => unequal = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    // The aggregate itself must not read the outer relation.
    if nested || !unequal || columns.is_empty() || reads(&aggregate, &is_outer) {
        return None;
    }
    let from = s
        .from
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // The condition reads the outer columns by names no inner column has, so that an
    // unqualified inner column cannot become ambiguous with them.
    let columns: Vec<String> = columns.into_iter().collect();
    let mut condition = condition.clone();
    let _ = visit_expressions_mut(&mut condition, |e| {
        if let Expr::CompoundIdentifier(p) = e {
            if p.len() == 2 && ident_name(&p[0]) == outer {
                if let Some(i) = columns.iter().position(|c| *c == ident_name(&p[1])) {
                    p[1] = Ident::new(outer_column(i));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Some(Correlated {
        count: fname == "count",
        aggregate,
        from,
        condition: condition.to_string(),
        columns: columns
            .into_iter()
            .map(|c| Ident::with_quote('"', c))
            .collect(),
    })
}

/// The name the `i`-th outer column goes by inside the rewritten subquery.
fn outer_column(i: usize) -> String {
    format!("__freshet_o{i}")
}

/// Whether `e` reads a column `is_outer` recognizes.
fn reads(e: &Expr, is_outer: &dyn Fn(&Expr) -> bool) -> bool {
    let mut found = false;
    let _ = visit_expressions(e, |x| {
        if is_outer(x) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Calls `f` on each expression of `e` that is not inside a nested query, innermost
/// first.
fn at_top_level(e: &mut Expr, f: impl FnMut(&mut Expr)) {
    struct TopLevel<F> {
        depth: usize,
        f: F,
    }
    impl<F: FnMut(&mut Expr)> VisitorMut for TopLevel<F> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if self.depth == 0 {
                (self.f)(e);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = e.visit(&mut TopLevel { depth: 0, f });
}

fn quoted(i: &Ident) -> String {
    format!("\"{}\"", i.value.replace('"', "\"\""))
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&FreshetDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

fn rewrite_select(s: &mut Select) {
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped || s.having.is_some() {
        return;
    }
    let Some(outer) = outer_relation(s) else {
        return;
    };
    // Each rewritten subquery: its replacement, and the join that computes it.
    let mut joins: Vec<String> = Vec::new();
    let replace = |e: &mut Expr, joins: &mut Vec<String>| {
        let Expr::Subquery(q) = e else {
            return;
        };
        let Some(c) = correlated(q, &outer.name) else {
            return;
        };
        let n = joins.len() + 1;
        let name = format!("__freshet_sq{n}");
        let o = quoted(&Ident::new(ident_name(&outer.name)));
        // The outer relation's columns, as the outer query reads them.
        let cols: Vec<String> = c
            .columns
            .iter()
            .map(|col| format!("{o}.{}", quoted(col)))
            .collect();
        // The same columns in the subquery, under names of their own.
        let renamed: Vec<String> = (0..cols.len())
            .map(|i| format!("{o}.{}", outer_column(i)))
            .collect();
        let distinct: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} AS {}", outer_column(i)))
            .collect();
        let keyed: Vec<String> = renamed
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} AS __freshet_c{i}"))
            .collect();
        let on: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, col)| format!("({col} IS NOT DISTINCT FROM {name}.__freshet_c{i})"))
            .collect();
        joins.push(format!(
            "LEFT JOIN (SELECT {}, {} AS __freshet_v FROM (SELECT DISTINCT {} FROM {}) AS {o}, {} \
             WHERE {} GROUP BY {}) AS {name} ON {}",
            keyed.join(", "),
            c.aggregate,
            distinct.join(", "),
            outer.from,
            c.from,
            c.condition,
            renamed.join(", "),
            on.join(" AND ")
        ));
        let value = if c.count {
            format!("coalesce({name}.__freshet_v, 0)")
        } else {
            format!("{name}.__freshet_v")
        };
        if let Some(v) = parse_expr(&value) {
            *e = v;
        } else {
            joins.pop();
        }
    };
    // Only subqueries of this SELECT's own expressions: inside a nested query the outer
    // name may be another relation's.
    for item in s.projection.iter_mut() {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            at_top_level(e, |x| replace(x, &mut joins));
        }
    }
    if let Some(w) = s.selection.as_mut() {
        at_top_level(w, |x| replace(x, &mut joins));
    }
    if joins.is_empty() {
        return;
    }
    // The joined columns are not the query's: `*` stays the outer relation's.
    for item in s.projection.iter_mut() {
        if let SelectItem::Wildcard(opts) = item {
            *item = SelectItem::QualifiedWildcard(
                crate::sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(
                    crate::sqlparser::ast::ObjectName::from(vec![outer.name.clone()]),
                ),
                opts.clone(),
            );
        }
    }
    let sql = format!("SELECT 1 FROM {} {}", outer.from, joins.join(" "));
    let parsed = Parser::new(&FreshetDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query());
    if let Ok(q) = parsed {
        if let SetExpr::Select(mut joined) = *q.body {
            if let Some(from) = joined.from.pop() {
                s.from = vec![from];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        let mut stmts = crate::sqlparser::parser::Parser::parse_sql(
            &crate::sql_dialect::FreshetDialect {},
            sql,
        )
        .expect("parses");
        super::rewrite(&mut stmts);
        stmts[0].to_string()
    }

    #[test]
    fn inequality_correlation_becomes_a_left_join() {
        let s = rewritten("SELECT id, (SELECT count(*) FROM b WHERE b.k < a.k) AS n FROM a");
        assert_eq!(
            s,
            "SELECT id, coalesce(__freshet_sq1.__freshet_v, 0) AS n FROM a LEFT JOIN (SELECT \"a\".__freshet_o0 \
             AS __freshet_c0, count(*) AS __freshet_v FROM (SELECT DISTINCT \"a\".\"k\" AS __freshet_o0 FROM a) AS \"a\", b \
             WHERE b.k < a.__freshet_o0 GROUP BY \"a\".__freshet_o0) AS __freshet_sq1 \
             ON (\"a\".\"k\" IS NOT DISTINCT FROM __freshet_sq1.__freshet_c0)"
        );
        // Equality alone, grouping, LIMIT and unqualified outer columns stay DataFusion's.
        for same in [
            "SELECT id, (SELECT count(*) FROM b WHERE b.k = a.k) FROM a",
            "SELECT g, (SELECT count(*) FROM b WHERE b.k < a.k) FROM a GROUP BY g",
            "SELECT id, (SELECT b.v FROM b WHERE b.k < a.k ORDER BY b.k LIMIT 1) FROM a",
            "SELECT id, (SELECT count(*) FROM b WHERE b.k < k) FROM a",
            // The innermost x.k is the middle query's x, not the outer one.
            "SELECT x.id, (SELECT count(*) FROM x JOIN d ON d.id = x.id WHERE d.id = \
             (SELECT count(*) FROM b WHERE b.k < x.k)) AS n FROM x",
        ] {
            assert_eq!(rewritten(same), same);
        }
    }
}
