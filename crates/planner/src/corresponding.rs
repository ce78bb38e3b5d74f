//! `UNION | INTERSECT | EXCEPT [ALL | DISTINCT] CORRESPONDING [BY (c, …)]` (SQL's F301,
//! as RisingWave takes it): the two sides are matched by column name, not position. The
//! result has the columns named on both sides, in the left side's order, or the `BY`
//! list's columns in its order (each must be on both sides).
//!
//! sqlparser has no such syntax, and which columns correspond is known only once the
//! sides are typed, so it is done in three steps:
//! - [`mark`], on the tokens: `CORRESPONDING [BY (…)]` becomes DuckDB's `BY NAME`, which
//!   sqlparser parses, and its position and list are kept;
//! - [`place`], on the parsed statement: the set operation that has one of those
//!   positions between its sides gets its right side wrapped as
//!   `SELECT __freshet_corresponding(c, …) FROM (right) AS __freshet_corresponding`, a form
//!   that prints and parses back as itself (stored SQL), and that DataFusion refuses if it
//!   ever met it;
//! - [`resolve`], before binding: each side is planned for its column names and wrapped
//!   in a projection of the corresponding columns, and the operation loses its `BY NAME`.
//!
//! A `BY NAME` written as such stays DuckDB's (DataFusion plans it: every column of both
//! sides, NULL where one side has none).

use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;

use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, SelectItem, SetExpr,
    SetQuantifier, Spanned, Statement, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::Parser;
use crate::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Whitespace};
use crate::PlannerError;

/// The call (and alias) marking a right side to be matched by name.
const MARK: &str = "__freshet_corresponding";

/// A `CORRESPONDING` found by [`mark`]: where it was and its `BY` list.
#[derive(Debug, Clone)]
pub struct Marker {
    at: Location,
    by: Option<Vec<Ident>>,
}

/// `CORRESPONDING [BY (c, …)]` after a set operator → `BY NAME`; the markers to
/// [`place`]. A malformed `BY` list is left for the parser to refuse.
pub fn mark(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Vec<Marker>) {
    let word = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
    let significant = |tokens: &[TokenWithSpan], from: usize| {
        (from..tokens.len()).find(|&k| !matches!(tokens[k].token, Token::Whitespace(_)))
    };
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut markers = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_operator = || {
            let mut before = (0..out.len())
                .rev()
                .filter(|&k| !matches!(out[k].token, Token::Whitespace(_)));
            let prev = before.next();
            let prev = match prev {
                Some(k) if word(&out[k], Keyword::ALL) || word(&out[k], Keyword::DISTINCT) => {
                    before.next()
                }
                p => p,
            };
            prev.is_some_and(|k| {
                [Keyword::UNION, Keyword::INTERSECT, Keyword::EXCEPT]
                    .iter()
                    .any(|&op| word(&out[k], op))
            })
        };
        if !word(&tokens[i], Keyword::CORRESPONDING) || !after_operator() {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let span = tokens[i].span;
        let mut next = i + 1;
        let mut by = None;
        if let Some(b) = significant(&tokens, i + 1).filter(|&k| word(&tokens[k], Keyword::BY)) {
            match by_list(&tokens, b + 1) {
                Some((list, end)) => {
                    by = Some(list);
                    next = end;
                }
                None => {
                    out.push(tokens[i].clone());
                    i += 1;
                    continue;
                }
            }
        }
        let t = |token: Token| TokenWithSpan { token, span };
        out.push(t(Token::make_keyword("BY")));
        out.push(t(Token::Whitespace(Whitespace::Space)));
        out.push(t(Token::make_keyword("NAME")));
        markers.push(Marker { at: span.start, by });
        i = next;
    }
    (out, markers)
}

/// `( c [, …] )` from `from` (whitespace skipped): the names and the index after `)`.
fn by_list(tokens: &[TokenWithSpan], from: usize) -> Option<(Vec<Ident>, usize)> {
    let mut rest =
        (from..tokens.len()).filter(|&k| !matches!(tokens[k].token, Token::Whitespace(_)));
    if tokens[rest.next()?].token != Token::LParen {
        return None;
    }
    let mut names = Vec::new();
    loop {
        let k = rest.next()?;
        let Token::Word(w) = &tokens[k].token else {
            return None;
        };
        names.push(w.clone().into_ident(tokens[k].span));
        let k = rest.next()?;
        match tokens[k].token {
            Token::Comma => continue,
            Token::RParen => return Some((names, k + 1)),
            _ => return None,
        }
    }
}

/// Gives each set operation of `node` that a marker of `markers` lies between the sides
/// of its marked right side (see the module documentation); placed markers are removed.
pub fn place<T: VisitMut>(node: &mut T, markers: &mut Vec<Marker>) -> Result<(), PlannerError> {
    struct Place<'a>(&'a mut Vec<Marker>, Option<PlannerError>);
    impl VisitorMut for Place<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            match place_in(q.body.as_mut(), self.0) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    self.1 = Some(e);
                    ControlFlow::Break(())
                }
            }
        }
    }
    if markers.is_empty() {
        return Ok(());
    }
    let mut p = Place(markers, None);
    let _ = node.visit(&mut p);
    p.1.map_or(Ok(()), Err)
}

fn place_in(body: &mut SetExpr, markers: &mut Vec<Marker>) -> Result<(), PlannerError> {
    let SetExpr::SetOperation {
        set_quantifier,
        left,
        right,
        ..
    } = body
    else {
        return Ok(());
    };
    // Before the sides are placed: a placed side's spans are its wrapper's.
    let (end, start) = (left.span().end, right.span().start);
    place_in(left, markers)?;
    place_in(right, markers)?;
    if !matches!(
        set_quantifier,
        SetQuantifier::ByName | SetQuantifier::AllByName | SetQuantifier::DistinctByName
    ) {
        return Ok(());
    }
    let Some(k) = markers.iter().position(|m| end <= m.at && m.at <= start) else {
        return Ok(());
    };
    let marker = markers.remove(k);
    let args = marker
        .by
        .iter()
        .flatten()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let side = (**right).clone();
    **right = wrap(
        &format!("SELECT {MARK}({args}) FROM (SELECT 1) AS {MARK}"),
        side,
    )?;
    Ok(())
}

/// The `SELECT … FROM (SELECT 1) AS alias` of `template` with `side` as its subquery.
fn wrap(template: &str, side: SetExpr) -> Result<SetExpr, PlannerError> {
    let internal = |what: &str| PlannerError::Internal(format!("CORRESPONDING: {what}"));
    let mut q = Parser::new(&FreshetDialect {})
        .try_with_sql(template)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| internal(&e.to_string()))?;
    let SetExpr::Select(select) = q.body.as_mut() else {
        return Err(internal("template is not a SELECT"));
    };
    let Some(TableFactor::Derived { subquery, .. }) =
        select.from.first_mut().map(|t| &mut t.relation)
    else {
        return Err(internal("template reads no subquery"));
    };
    match side {
        SetExpr::Query(inner) => *subquery = inner,
        other => *subquery.body = other,
    }
    Ok(*q.body)
}

/// The `BY` list of a marked right side (`Some(empty)` for none) and the side itself.
fn marked(right: &SetExpr) -> Option<(Vec<Ident>, &Query)> {
    let SetExpr::Select(select) = right else {
        return None;
    };
    let [SelectItem::UnnamedExpr(Expr::Function(f))] = select.projection.as_slice() else {
        return None;
    };
    if f.name.to_string() != MARK || select.from.len() != 1 {
        return None;
    }
    let TableFactor::Derived {
        subquery,
        alias: Some(alias),
        ..
    } = &select.from[0].relation
    else {
        return None;
    };
    if alias.name.value != MARK {
        return None;
    }
    let by = match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i))) => Some(i.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        FunctionArguments::None => Vec::new(),
        FunctionArguments::Subquery(_) => return None,
    };
    Some((by, subquery))
}

fn has_marks<T: Visit>(node: &T) -> bool {
    struct Find;
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if any_marked(&q.body) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    node.visit(&mut Find).is_break()
}

/// Whether a side holds a marked operation (at its top, or in a query inside it).
fn side_has_marks(s: &SetExpr) -> bool {
    any_marked(s) || has_marks(s)
}

/// Whether a set operation tree has a marked right side (not looking into queries).
fn any_marked(s: &SetExpr) -> bool {
    match s {
        SetExpr::SetOperation { left, right, .. } => {
            marked(right).is_some() || any_marked(left) || any_marked(right)
        }
        _ => false,
    }
}

/// One marked operation whose sides hold no other: the `WITH` of its query, its sides.
struct Job {
    with: Option<crate::sqlparser::ast::With>,
    left: SetExpr,
    right: Query,
}

/// Visits the marked operations whose sides hold no other, in a fixed order; `f` returns
/// a replacement for the operation's sides (then the walk stops) or `None`.
fn first_ready(
    stmt: &mut Statement,
    f: &mut dyn FnMut(&Job) -> Option<(SetExpr, SetExpr)>,
) -> bool {
    struct Walk<'a>(&'a mut dyn FnMut(&Job) -> Option<(SetExpr, SetExpr)>);
    impl VisitorMut for Walk<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            let with = q.with.clone();
            if walk(q.body.as_mut(), &with, self.0) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    fn walk(
        s: &mut SetExpr,
        with: &Option<crate::sqlparser::ast::With>,
        f: &mut dyn FnMut(&Job) -> Option<(SetExpr, SetExpr)>,
    ) -> bool {
        let SetExpr::SetOperation {
            set_quantifier,
            left,
            right,
            ..
        } = s
        else {
            return false;
        };
        if walk(left, with, f) || walk(right, with, f) {
            return true;
        }
        let Some((_, inner)) = marked(right) else {
            return false;
        };
        if side_has_marks(left) || has_marks(inner) {
            return false;
        }
        let job = Job {
            with: with.clone(),
            left: (**left).clone(),
            right: inner.clone(),
        };
        let Some((l, r)) = f(&job) else {
            return false;
        };
        **left = l;
        **right = r;
        *set_quantifier = match set_quantifier {
            SetQuantifier::AllByName => SetQuantifier::All,
            SetQuantifier::DistinctByName => SetQuantifier::Distinct,
            _ => SetQuantifier::None,
        };
        true
    }
    stmt.visit(&mut Walk(f)).is_break()
}

/// Rewrites every marked set operation of `stmt` into a positional one over the
/// corresponding columns (see the module documentation), innermost first.
pub async fn resolve(ctx: &SessionContext, stmt: &mut Statement) -> Result<(), PlannerError> {
    while has_marks(stmt) {
        // The first ready operation, planned outside the walk (which cannot await).
        let mut job = None;
        first_ready(stmt, &mut |j| {
            // The walk goes on after a `None`: keep the first, which the apply pass
            // below stops at.
            if job.is_some() {
                return None;
            }
            job = Some(Job {
                with: j.with.clone(),
                left: j.left.clone(),
                right: j.right.clone(),
            });
            None
        });
        let Some(job) = job else {
            return Err(PlannerError::Internal(
                "CORRESPONDING: no operation is ready".into(),
            ));
        };
        let by = {
            // The list is on the marked side, which the job does not carry.
            let mut by = None;
            let _ = Visit::visit(&*stmt, &mut FindBy(&job.right, &mut by));
            by.unwrap_or_default()
        };
        let left_names = side_names(ctx, &job.with, job.left.clone()).await?;
        let right_names =
            side_names(ctx, &job.with, SetExpr::Query(Box::new(job.right.clone()))).await?;
        let columns = corresponding(&left_names, &right_names, &by)?;
        let (mut left, mut right) = (Some(job.left), Some(job.right));
        let mut error = None;
        first_ready(stmt, &mut |_| {
            let (l, r) = (left.take()?, right.take()?);
            let l = project(&columns, &left_names, l);
            let r = project(&columns, &right_names, SetExpr::Query(Box::new(r)));
            match (l, r) {
                (Ok(l), Ok(r)) => Some((l, r)),
                (Err(e), _) | (_, Err(e)) => {
                    error = Some(e);
                    None
                }
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
    }
    Ok(())
}

/// Finds the `BY` list of the marked side whose subquery is `.0`.
struct FindBy<'a>(&'a Query, &'a mut Option<Vec<Ident>>);
impl Visitor for FindBy<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        fn find(s: &SetExpr, target: &Query) -> Option<Vec<Ident>> {
            let SetExpr::SetOperation { left, right, .. } = s else {
                return None;
            };
            if let Some((by, inner)) = marked(right) {
                if inner == target {
                    return Some(by);
                }
            }
            find(left, target).or_else(|| find(right, target))
        }
        match find(&q.body, self.0) {
            Some(by) => {
                *self.1 = Some(by);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }
}

/// The column names of one side, planned with the `WITH` of its query.
async fn side_names(
    ctx: &SessionContext,
    with: &Option<crate::sqlparser::ast::With>,
    side: SetExpr,
) -> Result<Vec<String>, PlannerError> {
    let mut q = Parser::new(&FreshetDialect {})
        .try_with_sql("SELECT 1")
        .and_then(|mut p| p.parse_query())
        .map_err(|e| PlannerError::Internal(e.to_string()))?;
    q.with = with.clone();
    *q.body = side;
    let stmt = datafusion::sql::parser::Statement::Statement(Box::new(Statement::Query(q)));
    let plan = ctx.state().statement_to_plan(stmt).await?;
    Ok(plan
        .schema()
        .fields()
        .iter()
        .map(|f| crate::naming::display_name(f.name()).to_string())
        .collect())
}

/// The corresponding columns of two sides: the `BY` list, or the left's names the right
/// has too, in the left's order.
fn corresponding(
    left: &[String],
    right: &[String],
    by: &[Ident],
) -> Result<Vec<String>, PlannerError> {
    let syntax = |message: String| PlannerError::Syntax {
        message,
        position: None,
    };
    let count = |side: &[String], n: &str| side.iter().filter(|c| *c == n).count();
    let columns: Vec<String> = if by.is_empty() {
        left.iter()
            .filter(|c| right.contains(c))
            .fold(Vec::new(), |mut out, c| {
                if !out.contains(c) {
                    out.push(c.clone());
                }
                out
            })
    } else {
        let mut out: Vec<String> = Vec::with_capacity(by.len());
        for i in by {
            let n = crate::naming::ident_name(i);
            if out.contains(&n) {
                return Err(syntax(format!(
                    "column \"{n}\" is named twice in CORRESPONDING BY"
                )));
            }
            for (side, which) in [(left, "left"), (right, "right")] {
                if count(side, &n) == 0 {
                    return Err(syntax(format!(
                        "column \"{n}\" of CORRESPONDING BY is not in the {which} side"
                    )));
                }
            }
            out.push(n);
        }
        out
    };
    if columns.is_empty() {
        return Err(syntax(
            "CORRESPONDING: the two sides have no column name in common".into(),
        ));
    }
    for c in &columns {
        for (side, which) in [(left, "left"), (right, "right")] {
            if count(side, c) > 1 {
                return Err(syntax(format!(
                    "CORRESPONDING: column \"{c}\" is named more than once in the {which} side"
                )));
            }
        }
    }
    Ok(columns)
}

/// `SELECT <the side's columns of those names> FROM (side) AS __freshet_corresponding`.
fn project(columns: &[String], names: &[String], side: SetExpr) -> Result<SetExpr, PlannerError> {
    // A side's column is referred to by position through an alias list: its own name may
    // carry a mark, or be an expression's.
    let aliases: Vec<String> = (0..names.len()).map(|i| format!("\"c{i}\"")).collect();
    let items: Vec<String> = columns
        .iter()
        .map(|c| {
            let i = names.iter().position(|n| n == c).unwrap_or_default();
            format!("\"c{i}\" AS {}", Ident::with_quote('"', c))
        })
        .collect();
    wrap(
        &format!(
            "SELECT {} FROM (SELECT 1) AS {MARK}({})",
            items.join(", "),
            aliases.join(", ")
        ),
        side,
    )
}

/// A statement's stored SQL as its author wrote it: `BY NAME SELECT
/// __freshet_corresponding(c, …) FROM (q) AS __freshet_corresponding` → `CORRESPONDING
/// BY (c, …) (q)` (for `SHOW CREATE`).
pub fn show(sql: &str) -> String {
    if !sql.contains(MARK) {
        return sql.to_string();
    }
    let Ok(tokens) = crate::sqlparser::tokenizer::Tokenizer::new(&FreshetDialect {}, sql)
        .with_unescape(false)
        .tokenize()
    else {
        return sql.to_string();
    };
    let is =
        |k: usize, s: &str| matches!(&tokens[k], Token::Word(w) if w.value.eq_ignore_ascii_case(s));
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|&k| !matches!(tokens[k], Token::Whitespace(_)))
        .collect();
    // (first token, token after the last, replacement)
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for s in 0..sig.len() {
        let at = |d: usize| sig.get(s + d).copied();
        let starts = at(0).is_some_and(|k| is(k, "BY"))
            && at(1).is_some_and(|k| is(k, "NAME"))
            && at(2).is_some_and(|k| is(k, "SELECT"))
            && at(3).is_some_and(|k| is(k, MARK))
            && at(4).is_some_and(|k| tokens[k] == Token::LParen);
        if !starts {
            continue;
        }
        let Some(c) = (s + 5..sig.len()).find(|&d| tokens[sig[d]] == Token::RParen) else {
            continue;
        };
        let (Some(from), Some(open)) = (sig.get(c + 1).copied(), sig.get(c + 2).copied()) else {
            continue;
        };
        if !is(from, "FROM") || tokens[open] != Token::LParen {
            continue;
        }
        let mut depth = 0usize;
        let Some(close) = (open..tokens.len()).find(|&k| match tokens[k] {
            Token::LParen => {
                depth += 1;
                false
            }
            Token::RParen => {
                depth -= 1;
                depth == 0
            }
            _ => false,
        }) else {
            continue;
        };
        let after: Vec<usize> = sig.iter().copied().filter(|&k| k > close).take(2).collect();
        if after.len() != 2 || !is(after[0], "AS") || !is(after[1], MARK) {
            continue;
        }
        let list: String = (sig[s + 4] + 1..sig[c])
            .map(|k| tokens[k].to_string())
            .collect();
        let mut head = "CORRESPONDING".to_string();
        if !list.trim().is_empty() {
            head.push_str(&format!(" BY ({})", list.trim()));
        }
        head.push(' ');
        edits.push((sig[s], open, head));
        edits.push((close + 1, after[1] + 1, String::new()));
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(sql.len());
    let mut k = 0;
    for (start, end, text) in edits {
        out.extend(tokens[k..start].iter().map(|t| t.to_string()));
        out.push_str(&text);
        k = end;
    }
    out.extend(tokens[k..].iter().map(|t| t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        let dialect = FreshetDialect {};
        let tokens = crate::sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
            .tokenize_with_location()
            .expect("tokenizes");
        let (tokens, mut markers) = mark(tokens);
        let mut stmt = Parser::new(&dialect)
            .with_tokens_with_locations(tokens)
            .parse_statement()
            .expect("parses");
        place(&mut stmt, &mut markers).expect("places");
        assert!(markers.is_empty(), "unplaced: {markers:?}");
        stmt
    }

    #[test]
    fn marks_and_shows_back() {
        for (sql, shown) in [
            (
                "SELECT a, b FROM t UNION CORRESPONDING SELECT b, a FROM u",
                "SELECT a, b FROM t UNION CORRESPONDING (SELECT b, a FROM u)",
            ),
            (
                "SELECT a, b FROM t UNION ALL CORRESPONDING BY (b) SELECT b, a FROM u",
                "SELECT a, b FROM t UNION ALL CORRESPONDING BY (b) (SELECT b, a FROM u)",
            ),
            (
                "SELECT a FROM t EXCEPT CORRESPONDING BY (\"A\", b) (SELECT b FROM u LIMIT 1) ORDER BY 1",
                "SELECT a FROM t EXCEPT CORRESPONDING BY (\"A\", b) (SELECT b FROM u LIMIT 1) ORDER BY 1",
            ),
            (
                "SELECT 1 AS x UNION CORRESPONDING SELECT 2 AS x UNION ALL CORRESPONDING SELECT 3 AS x",
                "SELECT 1 AS x UNION CORRESPONDING (SELECT 2 AS x) UNION ALL CORRESPONDING (SELECT 3 AS x)",
            ),
        ] {
            let stmt = parse(sql);
            let printed = stmt.to_string();
            assert!(printed.contains(MARK), "{printed}");
            // Stored SQL parses back as itself.
            let again = Parser::parse_sql(&FreshetDialect {}, &printed).expect("reparses");
            assert_eq!(again[0].to_string(), printed);
            assert_eq!(show(&printed), shown, "{printed}");
        }
    }

    #[test]
    fn corresponding_is_a_name_elsewhere() {
        let stmt = parse("SELECT corresponding FROM t UNION SELECT 1");
        assert!(!stmt.to_string().contains(MARK));
        // DuckDB's BY NAME stays DuckDB's.
        let stmt = parse("SELECT a FROM t UNION BY NAME SELECT b FROM u");
        assert!(!stmt.to_string().contains(MARK));
    }

    #[test]
    fn picks_columns_by_name() {
        let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let l = s(&["a", "b", "c"]);
        let r = s(&["c", "d", "a"]);
        assert_eq!(corresponding(&l, &r, &[]).unwrap(), s(&["a", "c"]));
        assert_eq!(
            corresponding(&l, &r, &[Ident::new("C"), Ident::new("a")]).unwrap(),
            s(&["c", "a"])
        );
        assert!(corresponding(&l, &r, &[Ident::new("b")]).is_err());
        assert!(corresponding(&s(&["x"]), &s(&["y"]), &[]).is_err());
        assert!(corresponding(&s(&["a", "a"]), &s(&["a"]), &[]).is_err());
        assert!(corresponding(&l, &r, &[Ident::new("a"), Ident::new("a")]).is_err());
    }
}
