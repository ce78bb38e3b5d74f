//! `JOIN … USING (c)` as Postgres defines it: the join has one column `c`, the left
//! side's for an inner or left join, the right side's for a right join, and
//! `COALESCE(left.c, right.c)` for a full join; an unqualified `c` anywhere in the
//! SELECT (list, WHERE, GROUP BY, HAVING) means that column.
//!
//! DataFusion keeps both sides' columns and resolves an unqualified `c` to the left one:
//! a right or full join then answers NULL where the row came from the right side only,
//! and in WHERE it refuses `c` as ambiguous. Before planning, each SELECT over such a
//! join is rewritten: its unqualified references to `c` become the column above, and
//! `*` over a right or full USING join of two relations becomes `<c>, l.* EXCLUDE (c),
//! r.* EXCLUDE (c)`, Postgres' column order. A right or full USING join whose sides are
//! not plain relations, read with `*` or with its column named, or a right or full
//! NATURAL join, is refused (`0A000`) rather than answered wrongly.

use std::collections::HashMap;
use std::ops::ControlFlow;

use crate::sqlparser::ast::{
    self, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, VisitMut, VisitorMut,
    WildcardAdditionalOptions,
};
use crate::PlannerError;

/// Rewrites every SELECT of `stmt` that reads a USING join (see the module docs).
pub fn rewrite(stmt: &mut Statement) -> Result<(), PlannerError> {
    match stmt.visit(&mut Rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = PlannerError;

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<PlannerError> {
        match rewrite_body(&mut q.body) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// The selects of one query body (not those of nested queries: the visitor reaches them).
fn rewrite_body(body: &mut SetExpr) -> Result<(), PlannerError> {
    match body {
        SetExpr::Select(s) => rewrite_select(s),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_body(left)?;
            rewrite_body(right)
        }
        _ => Ok(()),
    }
}

/// How a USING join combines its sides' columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Left,
    Right,
    Full,
}

/// What one side of a join (or a whole FROM item) exposes.
#[derive(Default)]
struct Side {
    /// The qualifiers of its relations (`None`: one whose name is unknown here).
    rels: Vec<Option<String>>,
    /// Its USING columns, by name: the expression each stands for.
    merged: HashMap<String, Expr>,
    /// A right or full USING join whose column could not be written out.
    unsafe_join: bool,
    /// A right or full USING join, for `*` (left and right qualifiers, the columns).
    star: Vec<(String, String, Vec<String>)>,
    /// A right or full USING join whose sides are not single relations (`*` over it
    /// cannot be written out).
    star_blocked: bool,
}

fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn qualified(q: &str, col: &str) -> Expr {
    Expr::CompoundIdentifier(vec![Ident::with_quote('"', q), Ident::with_quote('"', col)])
}

fn coalesce(a: Expr, b: Expr) -> Expr {
    let arg = |e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("coalesce"))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![arg(a), arg(b)],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn factor(tf: &TableFactor) -> Side {
    let one = |q: Option<String>| Side {
        rels: vec![q],
        ..Side::default()
    };
    match tf {
        TableFactor::Table {
            name, alias, args, ..
        } => match (alias, args) {
            (Some(a), _) => one(Some(ident_name(&a.name))),
            (None, None) => one(name
                .0
                .last()
                .and_then(ObjectNamePart::as_ident)
                .map(ident_name)),
            (None, Some(_)) => one(None),
        },
        TableFactor::Derived { alias, .. } => one(alias.as_ref().map(|a| ident_name(&a.name))),
        TableFactor::NestedJoin {
            table_with_joins,
            alias,
        } => match alias {
            Some(a) => one(Some(ident_name(&a.name))),
            None => fold(table_with_joins),
        },
        _ => one(None),
    }
}

/// The expression of column `col` of `side`: its USING column, or the column of its
/// one relation.
fn column_of(side: &Side, col: &str) -> Option<Expr> {
    if let Some(e) = side.merged.get(col) {
        return Some(e.clone());
    }
    match side.rels.as_slice() {
        [Some(q)] => Some(qualified(q, col)),
        _ => None,
    }
}

fn fold(twj: &TableWithJoins) -> Side {
    let mut side = factor(&twj.relation);
    for join in &twj.joins {
        let right = factor(&join.relation);
        let (kind, constraint) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (Some(Kind::Left), Some(c)),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (Some(Kind::Left), Some(c)),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (Some(Kind::Right), Some(c)),
            JoinOperator::FullOuter(c) => (Some(Kind::Full), Some(c)),
            _ => (None, None),
        };
        let mut merged = HashMap::new();
        match (kind, constraint) {
            (Some(kind), Some(JoinConstraint::Using(cols))) => {
                let names: Vec<String> = cols
                    .iter()
                    .filter_map(|c| {
                        c.0.last()
                            .and_then(ObjectNamePart::as_ident)
                            .map(ident_name)
                    })
                    .collect();
                for col in &names {
                    let (l, r) = (column_of(&side, col), column_of(&right, col));
                    let e = match (kind, l, r) {
                        (Kind::Left, Some(l), _) => Some(l),
                        (Kind::Right, _, Some(r)) => Some(r),
                        (Kind::Full, Some(l), Some(r)) => Some(coalesce(l, r)),
                        _ => None,
                    };
                    match e {
                        Some(e) => {
                            merged.insert(col.clone(), e);
                        }
                        None if kind != Kind::Left => side.unsafe_join = true,
                        None => {}
                    }
                }
                if kind != Kind::Left {
                    match (side.rels.as_slice(), right.rels.as_slice()) {
                        ([Some(l)], [Some(r)])
                            if side.merged.is_empty() && right.merged.is_empty() =>
                        {
                            side.star.push((l.clone(), r.clone(), names));
                        }
                        _ => side.star_blocked = true,
                    }
                }
            }
            (Some(Kind::Right | Kind::Full), Some(JoinConstraint::Natural)) => {
                side.unsafe_join = true;
            }
            _ => {}
        }
        side.unsafe_join |= right.unsafe_join;
        side.star_blocked |= right.star_blocked;
        side.star.extend(right.star);
        side.rels.extend(right.rels);
        side.merged.extend(right.merged);
        side.merged.extend(merged);
    }
    side
}

fn rewrite_select(s: &mut Select) -> Result<(), PlannerError> {
    let mut all = Side::default();
    for twj in &s.from {
        let side = fold(twj);
        all.unsafe_join |= side.unsafe_join;
        all.star_blocked |= side.star_blocked;
        all.star.extend(side.star);
        all.merged.extend(side.merged);
    }
    if all.merged.is_empty() && !all.unsafe_join && !all.star_blocked {
        return Ok(());
    }
    if all.unsafe_join {
        return Err(PlannerError::Unsupported(
            "a RIGHT or FULL NATURAL JOIN, or a RIGHT or FULL JOIN … USING over a side \
             whose column cannot be told, is not supported: join with ON and name the columns"
                .into(),
        ));
    }
    let merged = &all.merged;
    let mut projection = Vec::with_capacity(s.projection.len());
    for item in std::mem::take(&mut s.projection) {
        match item {
            SelectItem::Wildcard(opts) if !all.star.is_empty() || all.star_blocked => {
                if all.star_blocked || all.star.len() > 1 || !is_plain(&opts) || s.from.len() > 1 {
                    return Err(PlannerError::Unsupported(
                        "SELECT * over a RIGHT or FULL JOIN … USING is supported only for one \
                         join of two relations: name the columns"
                            .into(),
                    ));
                }
                let (l, r, cols) = &all.star[0];
                for c in cols {
                    if let Some(e) = merged.get(c) {
                        projection.push(SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: Ident::with_quote('"', c),
                        });
                    }
                }
                for q in [l, r] {
                    projection.push(SelectItem::QualifiedWildcard(
                        ast::SelectItemQualifiedWildcardKind::ObjectName(ObjectName(vec![
                            ObjectNamePart::Identifier(Ident::with_quote('"', q)),
                        ])),
                        WildcardAdditionalOptions {
                            opt_exclude: Some(ast::ExcludeSelectItem::Multiple(
                                cols.iter()
                                    .map(|c| {
                                        ObjectName(vec![ObjectNamePart::Identifier(
                                            Ident::with_quote('"', c),
                                        )])
                                    })
                                    .collect(),
                            )),
                            ..WildcardAdditionalOptions::default()
                        },
                    ));
                }
            }
            SelectItem::UnnamedExpr(Expr::Identifier(i))
                if merged.contains_key(&ident_name(&i)) =>
            {
                projection.push(SelectItem::ExprWithAlias {
                    expr: merged[&ident_name(&i)].clone(),
                    alias: i,
                });
            }
            SelectItem::UnnamedExpr(mut e) => {
                replace(&mut e, merged);
                projection.push(SelectItem::UnnamedExpr(e));
            }
            SelectItem::ExprWithAlias { mut expr, alias } => {
                replace(&mut expr, merged);
                projection.push(SelectItem::ExprWithAlias { expr, alias });
            }
            other => projection.push(other),
        }
    }
    s.projection = projection;
    if let Some(w) = &mut s.selection {
        replace(w, merged);
    }
    if let Some(h) = &mut s.having {
        replace(h, merged);
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut s.group_by {
        for e in exprs {
            replace(e, merged);
        }
    }
    Ok(())
}

fn is_plain(o: &WildcardAdditionalOptions) -> bool {
    o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_ilike.is_none()
}

/// Replaces the unqualified references to USING columns in `e`, not descending into
/// subqueries (their own scope).
fn replace(e: &mut Expr, merged: &HashMap<String, Expr>) {
    struct R<'a>(&'a HashMap<String, Expr>, usize);
    impl VisitorMut for R<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.1 += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.1 -= 1;
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if self.1 == 0 {
                if let Expr::Identifier(i) = e {
                    if let Some(m) = self.0.get(&ident_name(i)) {
                        *e = m.clone();
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = e.visit(&mut R(merged, 0));
}
