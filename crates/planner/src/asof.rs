//! `ASOF [LEFT] JOIN`, as RisingWave writes it: `FROM l ASOF JOIN r ON l.k = r.k AND
//! l.ts >= r.ts` joins each row of `l` with the row of `r` of the same key whose `ts` is
//! the greatest at or before `l.ts` (`>` before it; `<=`/`<` the least at or after it).
//! `LEFT` keeps the rows of `l` without one.
//!
//! There is no ASOF operator: the join is rewritten at parse time into plain joins every
//! engine path runs (queries and views), through the matched time of each distinct left
//! key and time:
//!
//! ```sql
//! FROM l [LEFT] JOIN (SELECT o.k0, o.t, max(r.ts) AS m
//!                     FROM (SELECT DISTINCT l.k AS k0, l.ts AS t FROM l) o
//!                     JOIN r ON r.k = o.k0 AND r.ts <= o.t GROUP BY o.k0, o.t) a
//!          ON a.k0 = l.k AND a.t = l.ts
//!        [LEFT] JOIN r ON l.k = r.k AND r.ts = a.m
//! ```
//!
//! Rows of `r` tied at the matched time all join (RisingWave picks one of them).
//!
//! sqlparser knows only Snowflake's form (`ASOF JOIN r MATCH_CONDITION (…) ON …`, which
//! is taken too): [`mark`] turns RisingWave's into it, with `MATCH_CONDITION (TRUE)` for
//! an inner join and `(FALSE)` for a left one, the inequality staying in `ON`.

use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    BinaryOperator, Expr, Join, JoinConstraint, JoinOperator, Query, SetExpr, TableFactor, Value,
    VisitMut, VisitorMut,
};
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::Parser;
use crate::sqlparser::tokenizer::{Token, TokenWithSpan};
use crate::PlannerError;

/// `ASOF [LEFT [OUTER]] JOIN r … ON` → `ASOF JOIN r … MATCH_CONDITION (TRUE|FALSE) ON`;
/// Snowflake's `ASOF JOIN r MATCH_CONDITION (c) ON …` (an outer join, as Snowflake's is)
/// → `ASOF JOIN r MATCH_CONDITION (FALSE) ON (c) AND …`. An `asof` after `.` or `AS`
/// is a name.
pub fn mark(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let word = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
    let significant = |tokens: &[TokenWithSpan], from: usize| {
        (from..tokens.len()).find(|&k| !matches!(tokens[k].token, Token::Whitespace(_)))
    };
    let mut out = tokens;
    let mut i = 0;
    while i < out.len() {
        if !word(&out[i], Keyword::ASOF) {
            i += 1;
            continue;
        }
        let before = (0..i)
            .rev()
            .find(|&k| !matches!(out[k].token, Token::Whitespace(_)));
        if before.is_some_and(|k| out[k].token == Token::Period || word(&out[k], Keyword::AS)) {
            i += 1;
            continue;
        }
        // `ASOF [LEFT [OUTER]] JOIN`, else a name.
        let mut j = significant(&out, i + 1);
        let mut left = None;
        if let Some(k) = j.filter(|&k| word(&out[k], Keyword::LEFT)) {
            let mut end = k;
            j = significant(&out, k + 1);
            if let Some(o) = j.filter(|&o| word(&out[o], Keyword::OUTER)) {
                end = o;
                j = significant(&out, o + 1);
            }
            left = Some(k..end + 1);
        }
        let Some(join) = j.filter(|&k| word(&out[k], Keyword::JOIN)) else {
            i += 1;
            continue;
        };
        // The first ON (or USING), or Snowflake's MATCH_CONDITION, after the relation,
        // outside parentheses.
        let mut depth = 0usize;
        let mut found = None;
        for (k, t) in out.iter().enumerate().skip(join + 1) {
            match &t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::SemiColon => break,
                Token::Word(w)
                    if depth == 0
                        && matches!(
                            w.keyword,
                            Keyword::ON | Keyword::USING | Keyword::MATCH_CONDITION
                        ) =>
                {
                    found = Some((k, w.keyword));
                    break;
                }
                _ => {}
            }
        }
        let span = out[i].span;
        let t = |token: Token| TokenWithSpan { token, span };
        let space = || {
            t(Token::Whitespace(
                crate::sqlparser::tokenizer::Whitespace::Space,
            ))
        };
        let flag = |outer: bool| {
            [
                t(Token::make_keyword("MATCH_CONDITION")),
                t(Token::LParen),
                t(Token::make_keyword(if outer { "FALSE" } else { "TRUE" })),
                t(Token::RParen),
                space(),
            ]
        };
        match found {
            Some((at, Keyword::MATCH_CONDITION)) => {
                // Its parenthesised condition moves into ON.
                let Some(open) =
                    significant(&out, at + 1).filter(|&k| out[k].token == Token::LParen)
                else {
                    i += 1;
                    continue;
                };
                let mut depth = 0usize;
                let close = (open..out.len()).find(|&k| match out[k].token {
                    Token::LParen => {
                        depth += 1;
                        false
                    }
                    Token::RParen => {
                        depth -= 1;
                        depth == 0
                    }
                    _ => false,
                });
                let Some(close) = close else {
                    i += 1;
                    continue;
                };
                let condition: Vec<TokenWithSpan> = out[open..=close].to_vec();
                let on = significant(&out, close + 1).filter(|&k| word(&out[k], Keyword::ON));
                let mut moved = condition;
                match on {
                    Some(on) => {
                        moved.extend([space(), t(Token::make_keyword("AND")), space()]);
                        out.splice(on + 1..on + 1, std::iter::once(space()).chain(moved));
                    }
                    None => {
                        let mut with_on = vec![space(), t(Token::make_keyword("ON")), space()];
                        with_on.extend(moved);
                        out.splice(close + 1..close + 1, with_on);
                    }
                }
                out.splice(at..=close, flag(true));
            }
            Some((at, _)) => {
                out.splice(at..at, flag(left.is_some()));
            }
            None => {}
        }
        // LEFT [OUTER] out of the way (before the positions above, so removed last).
        if let Some(range) = left {
            out.drain(range);
        }
        i += 1;
    }
    out
}

/// Rewrites every `ASOF` join of `node` into plain joins (see the module documentation).
pub fn rewrite<T: VisitMut>(node: &mut T) -> Result<(), PlannerError> {
    struct Rewriter {
        next: usize,
        error: Option<PlannerError>,
    }
    impl VisitorMut for Rewriter {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut Query) -> std::ops::ControlFlow<()> {
            match set_expr(q.body.as_mut(), &mut self.next) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(e) => {
                    self.error = Some(e);
                    std::ops::ControlFlow::Break(())
                }
            }
        }
    }
    /// The SELECTs of a query body (a set operation's too; nested queries are visited
    /// on their own).
    fn set_expr(s: &mut SetExpr, next: &mut usize) -> Result<(), PlannerError> {
        match s {
            SetExpr::Select(select) => {
                for from in &mut select.from {
                    rewrite_joins(&mut from.relation, &mut from.joins, next)?;
                }
                Ok(())
            }
            SetExpr::SetOperation { left, right, .. } => {
                set_expr(left, next)?;
                set_expr(right, next)
            }
            _ => Ok(()),
        }
    }
    let mut r = Rewriter {
        next: 0,
        error: None,
    };
    let _ = node.visit(&mut r);
    match r.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn unsupported(what: &str) -> PlannerError {
    PlannerError::Unsupported(format!("ASOF JOIN {what}"))
}

/// Before binding: a `*` leaves out the columns of the rewrite's matched times (`t.*`
/// names another relation anyway). Not at parse time: stored SQL has no `EXCLUDE`.
pub fn hide_matched_times(stmt: &mut crate::sqlparser::ast::Statement) {
    struct Hide;
    impl VisitorMut for Hide {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut Query) -> std::ops::ControlFlow<()> {
            if let SetExpr::Select(select) = q.body.as_mut() {
                let mut helpers = Vec::new();
                for from in &select.from {
                    matched_columns(&from.relation, &mut helpers);
                    for j in &from.joins {
                        matched_columns(&j.relation, &mut helpers);
                    }
                }
                exclude_from_wildcards(&mut select.projection, &helpers);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Hide);
}

/// The columns of a matched-times relation the rewrite added (alias `__freshet_asof<n>`).
fn matched_columns(t: &TableFactor, out: &mut Vec<String>) {
    use crate::sqlparser::ast::SelectItem;
    match t {
        TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } if alias.name.value.starts_with("__freshet_asof") => {
            if let SetExpr::Select(select) = subquery.body.as_ref() {
                for item in &select.projection {
                    match item {
                        SelectItem::ExprWithAlias { alias, .. } => out.push(alias.value.clone()),
                        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                            if let Some(last) = parts.last() {
                                out.push(last.value.clone());
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            for j in &table_with_joins.joins {
                matched_columns(&j.relation, out);
            }
        }
        _ => {}
    }
}

fn exclude_from_wildcards(
    projection: &mut [crate::sqlparser::ast::SelectItem],
    helpers: &[String],
) {
    use crate::sqlparser::ast::{ExcludeSelectItem, Ident, ObjectName, SelectItem};
    if helpers.is_empty() {
        return;
    }
    for item in projection {
        if let SelectItem::Wildcard(opts) = item {
            let mut names: Vec<ObjectName> = match opts.opt_exclude.take() {
                Some(ExcludeSelectItem::Single(n)) => vec![n],
                Some(ExcludeSelectItem::Multiple(ns)) => ns,
                None => Vec::new(),
            };
            names.extend(
                helpers
                    .iter()
                    .map(|h| ObjectName::from(vec![Ident::new(h)])),
            );
            opts.opt_exclude = Some(ExcludeSelectItem::Multiple(names));
        }
    }
}

fn rewrite_joins(
    relation: &mut TableFactor,
    joins: &mut Vec<Join>,
    next: &mut usize,
) -> Result<(), PlannerError> {
    // Parenthesised joins first.
    for t in std::iter::once(&mut *relation).chain(joins.iter_mut().map(|j| &mut j.relation)) {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = t
        {
            rewrite_joins(
                &mut table_with_joins.relation,
                &mut table_with_joins.joins,
                next,
            )?;
        }
    }
    let Some(at) = joins
        .iter()
        .position(|j| matches!(j.join_operator, JoinOperator::AsOf { .. }))
    else {
        return Ok(());
    };
    if at != 0 {
        return Err(unsupported(
            "must be the first join of its FROM item (join its left side in a subquery)",
        ));
    }
    let join = joins.remove(0);
    let JoinOperator::AsOf {
        match_condition,
        constraint,
    } = join.join_operator
    else {
        return Ok(());
    };
    if matches!(join.relation, TableFactor::Derived { lateral: true, .. }) {
        return Err(unsupported("of a LATERAL subquery"));
    }
    let left_name = factor_name(relation).ok_or_else(|| unsupported("needs a named left side"))?;
    let right_name =
        factor_name(&join.relation).ok_or_else(|| unsupported("needs a named right side"))?;
    let mut conjuncts = Vec::new();
    match constraint {
        JoinConstraint::On(e) => split_and(e, &mut conjuncts),
        JoinConstraint::None => {}
        _ => return Err(unsupported("takes its condition in ON")),
    }
    let outer = match &match_condition {
        Expr::Value(v) if v.value == Value::Boolean(false) => true,
        Expr::Value(v) if v.value == Value::Boolean(true) => false,
        // Snowflake's form: the inequality is the match condition.
        other => {
            conjuncts.push(other.clone());
            false
        }
    };
    let side = |e: &Expr| side_of(e, &left_name, &right_name);
    let mut keys: Vec<(Expr, Expr)> = Vec::new(); // (left, right)
    let mut filters: Vec<Expr> = Vec::new(); // on the right side only
    let mut order: Option<(Expr, BinaryOperator, Expr)> = None; // left op right
    for c in conjuncts {
        let Expr::BinaryOp { left, op, right } = &c else {
            match side(&c) {
                Some(Side::Right) => {
                    filters.push(c);
                    continue;
                }
                _ => return Err(unsupported(&format!("cannot match on {c}"))),
            }
        };
        let (ls, rs) = (side(left), side(right));
        let flipped = |op: &BinaryOperator| match op {
            BinaryOperator::Gt => BinaryOperator::Lt,
            BinaryOperator::GtEq => BinaryOperator::LtEq,
            BinaryOperator::Lt => BinaryOperator::Gt,
            BinaryOperator::LtEq => BinaryOperator::GtEq,
            other => other.clone(),
        };
        match (ls, op, rs) {
            (Some(Side::Left), BinaryOperator::Eq, Some(Side::Right)) => {
                keys.push((*left.clone(), *right.clone()))
            }
            (Some(Side::Right), BinaryOperator::Eq, Some(Side::Left)) => {
                keys.push((*right.clone(), *left.clone()))
            }
            (
                Some(Side::Left),
                BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq,
                Some(Side::Right),
            ) if order.is_none() => order = Some((*left.clone(), op.clone(), *right.clone())),
            (
                Some(Side::Right),
                BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq,
                Some(Side::Left),
            ) if order.is_none() => order = Some((*right.clone(), flipped(op), *left.clone())),
            _ if side(&c) == Some(Side::Right) => filters.push(c),
            _ => {
                return Err(unsupported(&format!(
                    "needs equalities between its sides, one inequality between their \
                     times and filters on its right side; cannot match on {c}"
                )))
            }
        }
    }
    let Some((lt, op, rt)) = order else {
        return Err(unsupported(
            "needs one inequality between the two sides' times (l.ts >= r.ts)",
        ));
    };
    if keys.is_empty() {
        return Err(unsupported("needs at least one equality between its sides"));
    }
    // The matched time: the greatest right time at or before the left one for `>=`, …
    let (agg, cmp) = match op {
        BinaryOperator::GtEq => ("max", "<="),
        BinaryOperator::Gt => ("max", "<"),
        BinaryOperator::LtEq => ("min", ">="),
        _ => ("min", ">"),
    };
    let alias = format!("__freshet_asof{}", *next);
    *next += 1;
    // Column names no other relation has, so that `*` can leave them out by name.
    let key_cols: Vec<String> = (0..keys.len()).map(|i| format!("{alias}_k{i}")).collect();
    let (t_col, m_col) = (format!("{alias}_t"), format!("{alias}_m"));
    let distinct = keys
        .iter()
        .zip(&key_cols)
        .map(|((l, _), k)| format!("{l} AS {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let candidate = keys
        .iter()
        .zip(&key_cols)
        .map(|((_, r), k)| format!("{r} = __o.{k}"))
        .chain(std::iter::once(format!("{rt} {cmp} __o.{t_col}")))
        .chain(filters.iter().map(|f| f.to_string()))
        .collect::<Vec<_>>()
        .join(" AND ");
    let groups = key_cols
        .iter()
        .map(|k| format!("__o.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let matched = format!(
        "(SELECT {groups}, __o.{t_col}, {agg}({rt}) AS {m_col} \
         FROM (SELECT DISTINCT {distinct}, {lt} AS {t_col} FROM {relation}) AS __o \
         JOIN {right} ON {candidate} GROUP BY {groups}, __o.{t_col}) AS {alias}",
        right = join.relation,
    );
    let to_matched = keys
        .iter()
        .zip(&key_cols)
        .map(|((l, _), k)| format!("{alias}.{k} = {l}"))
        .chain(std::iter::once(format!("{alias}.{t_col} = {lt}")))
        .collect::<Vec<_>>()
        .join(" AND ");
    let to_right = keys
        .iter()
        .map(|(l, r)| format!("{l} = {r}"))
        .chain(std::iter::once(format!("{rt} = {alias}.{m_col}")))
        .chain(filters.iter().map(|f| f.to_string()))
        .collect::<Vec<_>>()
        .join(" AND ");
    let kind = if outer { "LEFT JOIN" } else { "JOIN" };
    let sql = format!(
        "SELECT 1 FROM __l {kind} {matched} ON {to_matched} {kind} {right} ON {to_right}",
        right = join.relation
    );
    let parsed = Parser::new(&FreshetDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| PlannerError::Internal(format!("ASOF JOIN rewrite: {e}")))?;
    let SetExpr::Select(select) = *parsed.body else {
        return Err(PlannerError::Internal(
            "ASOF JOIN rewrite: not a SELECT".into(),
        ));
    };
    let Some(from) = select.from.into_iter().next() else {
        return Err(PlannerError::Internal("ASOF JOIN rewrite: no FROM".into()));
    };
    joins.splice(0..0, from.joins);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Left,
    Right,
}

/// The name a FROM item's columns are qualified by: its alias, or its table's name.
fn factor_name(t: &TableFactor) -> Option<String> {
    match t {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            Some(crate::naming::ident_name(&a.name))
        }
        TableFactor::Table { name, .. } => {
            Some(crate::naming::ident_name(name.0.last()?.as_ident()?))
        }
        _ => None,
    }
}

/// Which side the columns of `e` all come from (qualified by the side's name); `None`
/// for both, neither, or an unqualified column.
fn side_of(e: &Expr, left: &str, right: &str) -> Option<Side> {
    let mut sides = Vec::new();
    let mut unqualified = false;
    let _ = crate::sqlparser::ast::visit_expressions(e, |x| {
        match x {
            Expr::Identifier(_) => unqualified = true,
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let q = crate::naming::ident_name(&parts[parts.len() - 2]);
                if q == left {
                    sides.push(Side::Left);
                } else if q == right {
                    sides.push(Side::Right);
                } else {
                    unqualified = true;
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if unqualified || sides.is_empty() {
        return None;
    }
    let first = sides[0];
    sides.iter().all(|s| *s == first).then_some(first)
}

fn split_and(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        Expr::Nested(inner) => split_and(*inner, out),
        other => out.push(other),
    }
}
