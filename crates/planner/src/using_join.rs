//! `JOIN … USING (c)` as Postgres defines it: the join has one column `c`, the left
//! side's for an inner or left join, the right side's for a right join, and
//! `COALESCE(left.c, right.c)` for a full join; an unqualified `c` anywhere in the
//! SELECT (list, WHERE, GROUP BY, HAVING, DISTINCT ON, QUALIFY, windows, the query's
//! ORDER BY, later joins' conditions) means that column, and `*` shows it once, first.
//!
//! DataFusion keeps both sides' columns and resolves an unqualified `c` to the left one:
//! a right or full join then answers NULL where the row came from the right side only,
//! in WHERE it refuses `c` as ambiguous, and `*` keeps `c` where the left side has it.
//! Before planning, each SELECT over such a join is rewritten: its unqualified
//! references to `c` become the column above; a later `JOIN … USING (c)` over a right
//! or full join's `c` becomes a join `ON` that column; and `*` over one USING join of two
//! relations becomes `<c>, l.* EXCLUDE (c), r.* EXCLUDE (c)`, Postgres' column order.
//! What cannot be written out this way over a right or full join (`*` over more
//! relations, a side whose column cannot be told, a right or full NATURAL join) is
//! refused (`0A000`) rather than answered wrongly. Not rewritten: references to `c` from
//! inside a subquery (they resolve as DataFusion resolves outer references).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use crate::naming::ident_name;
use crate::sqlparser::ast::{
    self, BinaryOperator, Distinct, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator,
    ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    TableWithJoins, VisitMut, VisitorMut, WildcardAdditionalOptions,
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
        match rewrite_query(q) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// The selects of one query (not those of nested queries: the visitor reaches them), and
/// its ORDER BY when it orders one select.
fn rewrite_query(q: &mut Query) -> Result<(), PlannerError> {
    match q.body.as_mut() {
        SetExpr::Select(s) => {
            let (merged, outputs) = rewrite_select(s)?;
            if let Some(order) = &mut q.order_by {
                // ORDER BY names the select's output columns first.
                let merged: HashMap<String, Merged> = merged
                    .into_iter()
                    .filter(|(name, _)| !outputs.contains(name))
                    .collect();
                replace(order, &merged);
            }
            Ok(())
        }
        body => rewrite_body(body),
    }
}

fn rewrite_body(body: &mut SetExpr) -> Result<(), PlannerError> {
    match body {
        SetExpr::Select(s) => rewrite_select(s).map(|_| ()),
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

/// A USING column: the expression it stands for, and whether it (or one it is made of)
/// is a right or full join's, which DataFusion would read differently.
#[derive(Clone)]
struct Merged {
    expr: Expr,
    outer: bool,
}

/// What one side of a join (or a whole FROM item) exposes.
#[derive(Default)]
struct Side {
    /// The qualifiers of its relations (`None`: one whose name is unknown here).
    rels: Vec<Option<String>>,
    /// Its USING columns, by name.
    merged: HashMap<String, Merged>,
    /// A right or full join whose column could not be written out.
    unsafe_join: bool,
    /// USING joins of two relations, for `*`: kind, left and right qualifiers, columns.
    star: Vec<(Kind, String, String, Vec<String>)>,
    /// A right or full USING join whose sides are not single relations.
    star_blocked: bool,
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

fn qualified(q: &str, col: &str) -> Expr {
    Expr::CompoundIdentifier(vec![quoted(q), quoted(col)])
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

fn factor(tf: &mut TableFactor) -> Side {
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
        } => {
            let inner = fold(table_with_joins);
            match alias {
                Some(a) => Side {
                    unsafe_join: inner.unsafe_join,
                    ..one(Some(ident_name(&a.name)))
                },
                None => inner,
            }
        }
        _ => one(None),
    }
}

/// Column `col` of `side`: its USING column, or the column of its one relation.
fn column_of(side: &Side, col: &str) -> Option<Merged> {
    if let Some(m) = side.merged.get(col) {
        return Some(m.clone());
    }
    match side.rels.as_slice() {
        [Some(q)] => Some(Merged {
            expr: qualified(q, col),
            outer: false,
        }),
        _ => None,
    }
}

fn fold(twj: &mut TableWithJoins) -> Side {
    let mut side = factor(&mut twj.relation);
    for join in &mut twj.joins {
        let right = factor(&mut join.relation);
        let (kind, constraint) = match &mut join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (Some(Kind::Left), Some(c)),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (Some(Kind::Left), Some(c)),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (Some(Kind::Right), Some(c)),
            JoinOperator::FullOuter(c) => (Some(Kind::Full), Some(c)),
            JoinOperator::CrossJoin(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c) => (None, Some(c)),
            _ => (None, None),
        };
        let mut merged = HashMap::new();
        let using = match (kind, constraint.as_deref()) {
            (Some(kind), Some(JoinConstraint::Using(cols))) => Some((kind, using_names(cols))),
            _ => None,
        };
        match (using, constraint) {
            (Some((kind, names)), Some(c)) => {
                let (m, on) = join_using(&mut side, &right, kind, names);
                merged = m;
                if let Some(on) = on {
                    *c = on;
                }
            }
            (None, Some(JoinConstraint::Natural))
                if matches!(kind, Some(Kind::Right | Kind::Full)) =>
            {
                side.unsafe_join = true;
            }
            (None, Some(JoinConstraint::On(e))) => {
                // An unqualified USING column of the joins before means their column.
                replace(e, &side.merged);
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

/// The column names of a `USING (…)` list.
fn using_names(cols: &[ObjectName]) -> Vec<String> {
    cols.iter()
        .filter_map(|c| {
            c.0.last()
                .and_then(ObjectNamePart::as_ident)
                .map(ident_name)
        })
        .collect()
}

/// A USING join of `side` and `right` on `names`: its USING columns, and the `ON`
/// constraint that replaces the USING list where a column is a right or full join's
/// (DataFusion would join on the left relation's column). Marks `side` where the join
/// cannot be written out.
fn join_using(
    side: &mut Side,
    right: &Side,
    kind: Kind,
    names: Vec<String>,
) -> (HashMap<String, Merged>, Option<JoinConstraint>) {
    let mut merged = HashMap::new();
    let mut on = Vec::new();
    let mut reads_outer = false;
    for col in &names {
        let (l, r) = (column_of(side, col), column_of(right, col));
        reads_outer |= l.as_ref().is_some_and(|m| m.outer) || r.as_ref().is_some_and(|m| m.outer);
        if let (Some(l), Some(r)) = (&l, &r) {
            on.push(Expr::BinaryOp {
                left: Box::new(l.expr.clone()),
                op: BinaryOperator::Eq,
                right: Box::new(r.expr.clone()),
            });
        }
        let m = match (kind, l, r) {
            (Kind::Left, Some(l), _) => Some(l),
            (Kind::Right, _, Some(r)) => Some(Merged { outer: true, ..r }),
            (Kind::Full, Some(l), Some(r)) => Some(Merged {
                expr: coalesce(l.expr, r.expr),
                outer: true,
            }),
            _ => None,
        };
        match m {
            Some(m) => {
                merged.insert(col.clone(), m);
            }
            None if kind != Kind::Left => side.unsafe_join = true,
            None => {}
        }
    }
    let mut constraint = None;
    if reads_outer {
        if on.len() == names.len() {
            constraint = on
                .into_iter()
                .reduce(|a, b| Expr::BinaryOp {
                    left: Box::new(a),
                    op: BinaryOperator::And,
                    right: Box::new(b),
                })
                .map(JoinConstraint::On);
        } else {
            side.unsafe_join = true;
        }
    }
    match (side.rels.as_slice(), right.rels.as_slice()) {
        ([Some(l)], [Some(r)]) if side.merged.is_empty() && right.merged.is_empty() => {
            side.star.push((kind, l.clone(), r.clone(), names));
        }
        _ if kind != Kind::Left || reads_outer => side.star_blocked = true,
        _ => {}
    }
    (merged, constraint)
}

/// Rewrites one select; returns its USING columns and the names of its output columns.
fn rewrite_select(
    s: &mut Select,
) -> Result<(HashMap<String, Merged>, HashSet<String>), PlannerError> {
    let mut all = Side::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut twice: HashSet<String> = HashSet::new();
    for twj in &mut s.from {
        let side = fold(twj);
        all.unsafe_join |= side.unsafe_join;
        all.star_blocked |= side.star_blocked;
        all.star.extend(side.star);
        all.rels.extend(side.rels);
        for (name, m) in side.merged {
            if !seen.insert(name.clone()) {
                twice.insert(name.clone());
            }
            all.merged.insert(name, m);
        }
    }
    // A USING column of two FROM items is ambiguous: left for DataFusion to refuse.
    for name in &twice {
        all.merged.remove(name);
    }
    if all.unsafe_join {
        return Err(PlannerError::Unsupported(
            "a RIGHT or FULL NATURAL JOIN, or a RIGHT or FULL JOIN … USING over a side \
             whose column cannot be told, is not supported: join with ON and name the columns"
                .into(),
        ));
    }
    if all.merged.is_empty() && all.star.is_empty() && !all.star_blocked {
        return Ok((HashMap::new(), HashSet::new()));
    }
    let merged = &all.merged;
    let mut projection = Vec::with_capacity(s.projection.len());
    for item in std::mem::take(&mut s.projection) {
        match item {
            SelectItem::Wildcard(opts)
                if all.star.len() == 1 && all.rels.len() == 2 && is_plain(&opts) =>
            {
                let (_, l, r, cols) = &all.star[0];
                for c in cols {
                    if let Some(m) = merged.get(c) {
                        projection.push(SelectItem::ExprWithAlias {
                            expr: m.expr.clone(),
                            alias: quoted(c),
                        });
                    }
                }
                for q in [l, r] {
                    projection.push(SelectItem::QualifiedWildcard(
                        ast::SelectItemQualifiedWildcardKind::ObjectName(ObjectName(vec![
                            ObjectNamePart::Identifier(quoted(q)),
                        ])),
                        WildcardAdditionalOptions {
                            opt_exclude: Some(ast::ExcludeSelectItem::Multiple(
                                cols.iter()
                                    .map(|c| {
                                        ObjectName(vec![ObjectNamePart::Identifier(quoted(c))])
                                    })
                                    .collect(),
                            )),
                            ..WildcardAdditionalOptions::default()
                        },
                    ));
                }
            }
            SelectItem::Wildcard(_)
                if all.star_blocked || all.star.iter().any(|(k, ..)| *k != Kind::Left) =>
            {
                return Err(PlannerError::Unsupported(
                    "SELECT * over a RIGHT or FULL JOIN … USING is supported only for one join \
                     of two relations: name the columns"
                        .into(),
                ));
            }
            SelectItem::UnnamedExpr(Expr::Identifier(i))
                if merged.contains_key(&ident_name(&i)) =>
            {
                projection.push(SelectItem::ExprWithAlias {
                    expr: merged[&ident_name(&i)].expr.clone(),
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
    if let Some(q) = &mut s.qualify {
        replace(q, merged);
    }
    if let Some(Distinct::On(exprs)) = &mut s.distinct {
        for e in exprs {
            replace(e, merged);
        }
    }
    for w in &mut s.named_window {
        replace(w, merged);
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut s.group_by {
        for e in exprs {
            replace(e, merged);
        }
    }
    let outputs = s
        .projection
        .iter()
        .filter_map(|i| match i {
            SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(ident_name(i)),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => p.last().map(ident_name),
            _ => None,
        })
        .collect();
    Ok((all.merged, outputs))
}

fn is_plain(o: &WildcardAdditionalOptions) -> bool {
    o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_ilike.is_none()
}

/// Replaces the unqualified references to USING columns in `node`, not descending into
/// subqueries (their own scope).
fn replace<T: VisitMut>(node: &mut T, merged: &HashMap<String, Merged>) {
    struct R<'a>(&'a HashMap<String, Merged>, usize);
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
                        *e = m.expr.clone();
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    if !merged.is_empty() {
        let _ = node.visit(&mut R(merged, 0));
    }
}
