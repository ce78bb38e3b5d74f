//! A set-returning function over the columns of the relation before it in `FROM` (a
//! lateral call), which DataFusion cannot plan:
//!
//! ```sql
//! SELECT t.id, e ->> 'title' FROM impressions t, jsonb_array_elements(t.doc -> 'items') AS e
//! SELECT id, tag FROM plays CROSS JOIN LATERAL unnest(plays.tags) AS tag
//! SELECT t.id, e.key, e.value FROM impressions t, jsonb_each(t.doc) AS e
//! SELECT id, tag FROM plays LEFT JOIN LATERAL unnest(plays.tags) AS tag ON true
//! SELECT s.id, h FROM sessions s, generate_series(s.first_hour, s.last_hour) AS h
//! ```
//!
//! is rewritten when the statement is parsed into the same call in a select list, which
//! queries and views both run (a row per element, none for an empty array or NULL):
//!
//! ```sql
//! SELECT t.id, e ->> 'title'
//! FROM (SELECT t.*, jsonb_array_elements(t.doc -> 'items') AS e FROM impressions t) AS t
//! ```
//!
//! `LEFT JOIN LATERAL f(…) ON true` keeps a row with NULL for an empty array or a NULL
//! one (`unnest_outer`). `jsonb_each` (`jsonb_each_text`) is two unnests side by side,
//! of the keys and of the values in the same order.
//!
//! A one-column function's column is named by the alias's column (`AS e(v)`), else by the
//! alias itself (Postgres lets `e` stand for that column), else as Postgres names it
//! (`value`, `unnest`); `e.value` (`e.v`) reads it too. `jsonb_each`'s are `key` and
//! `value` (or the alias's columns), read as `e.key` too. Rewritten when `FROM` is exactly
//! one named relation followed by the call: `FROM t, f(…)`, `FROM t CROSS JOIN [LATERAL]
//! f(…)` or `FROM t {LEFT | INNER} JOIN [LATERAL] f(…) ON true`. Other shapes are left for
//! DataFusion, which refuses them.

use std::ops::ControlFlow;

use crate::naming::ident_name;
use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    ExcludeSelectItem, Expr, FunctionArg, Ident, JoinConstraint, JoinOperator, ObjectName, Query,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor,
    TableWithJoins, Value, VisitMut, VisitorMut,
};
use crate::sqlparser::parser::Parser;
use crate::PlannerError;

/// The set-returning functions taken, with Postgres' names for their columns.
const FUNCTIONS: &[(&str, &[&str])] = &[
    ("unnest", &["unnest"]),
    ("generate_series", &["generate_series"]),
    ("jsonb_array_elements", &["value"]),
    ("json_array_elements", &["value"]),
    ("jsonb_array_elements_text", &["value"]),
    ("json_array_elements_text", &["value"]),
    ("jsonb_object_keys", &["jsonb_object_keys"]),
    ("json_object_keys", &["json_object_keys"]),
    ("jsonb_each", &["key", "value"]),
    ("json_each", &["key", "value"]),
    ("jsonb_each_text", &["key", "value"]),
    ("json_each_text", &["key", "value"]),
    ("jsonb_path_query", &["jsonb_path_query"]),
];

/// The select-list expressions of call `name(args)`'s columns: the call itself (the
/// JSON ones are unnests after `json_sets`), or for an outer call (`LEFT JOIN LATERAL`)
/// `unnest_outer` of the array the call unnests.
fn column_exprs(name: &str, args: &str, outer: bool) -> Vec<String> {
    use crate::json_sets::{ELEMENTS, ELEMENTS_TEXT, KEYS, VALUES, VALUES_TEXT};
    let unnest = if outer { "unnest_outer" } else { "unnest" };
    let array = match name {
        "unnest" => return vec![format!("{unnest}({args})")],
        "generate_series" => return vec![format!("{unnest}(generate_series({args}))")],
        "jsonb_each" | "json_each" => {
            return vec![
                format!("{unnest}({KEYS}({args}))"),
                format!("{unnest}({VALUES}({args}))"),
            ]
        }
        "jsonb_each_text" | "json_each_text" => {
            return vec![
                format!("{unnest}({KEYS}({args}))"),
                format!("{unnest}({VALUES_TEXT}({args}))"),
            ]
        }
        "jsonb_array_elements" | "json_array_elements" => ELEMENTS,
        "jsonb_array_elements_text" | "json_array_elements_text" => ELEMENTS_TEXT,
        "jsonb_path_query" => crate::jsonpath::QUERY_LIST,
        _ => KEYS,
    };
    if outer {
        vec![format!("unnest_outer({array}({args}))")]
    } else {
        vec![format!("{name}({args})")]
    }
}

/// A lateral call: the function's name, its argument list as SQL, and its alias.
struct Call {
    name: String,
    args: String,
    alias: Option<TableAlias>,
}

/// The call `tf` makes, if it is one of [`FUNCTIONS`] over some column.
fn lateral_call(tf: &TableFactor) -> Option<Call> {
    let (name, args, alias): (String, Vec<String>, &Option<TableAlias>) = match tf {
        TableFactor::Table {
            name,
            args: Some(a),
            alias,
            with_ordinality: false,
            ..
        } => (
            name.to_string(),
            a.args.iter().map(FunctionArg::to_string).collect(),
            alias,
        ),
        TableFactor::Function {
            name,
            args,
            alias,
            with_ordinality: false,
            ..
        } => (
            name.to_string(),
            args.iter().map(FunctionArg::to_string).collect(),
            alias,
        ),
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } if array_exprs.len() == 1 => (
            "unnest".to_string(),
            array_exprs.iter().map(Expr::to_string).collect(),
            alias,
        ),
        _ => return None,
    };
    let name = name.to_ascii_lowercase();
    FUNCTIONS.iter().find(|(f, _)| *f == name)?;
    // Over a constant the function is a table function DataFusion runs as it is.
    let mut reads_column = false;
    let _ = crate::sqlparser::ast::visit_expressions(tf, |e| {
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            reads_column = true;
        }
        ControlFlow::<()>::Continue(())
    });
    reads_column.then(|| Call {
        name,
        args: args.join(", "),
        alias: alias.clone(),
    })
}

/// The name `FROM` gives relation `tf`'s columns (its alias, else its last name part).
fn relation_alias(tf: &TableFactor) -> Option<Ident> {
    match tf {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => Some(match alias {
            Some(a) if a.columns.is_empty() => a.name.clone(),
            Some(_) => return None,
            None => name.0.last()?.as_ident()?.clone(),
        }),
        TableFactor::Derived {
            alias: Some(a),
            lateral: false,
            ..
        } if a.columns.is_empty() => Some(a.name.clone()),
        _ => None,
    }
}

/// `i` as Postgres folds it, quoted: `P` → `"p"`, `"P"` → `"P"`.
fn quoted(i: &Ident) -> String {
    format!("\"{}\"", ident_name(i).replace('"', "\"\""))
}

/// The derived table that replaces `FROM left, call`, and how the query reads the call's
/// columns.
struct Rewritten {
    from: TableWithJoins,
    /// The call's alias, if it has one.
    qualifier: Option<Ident>,
    /// Each column: the name `alias.<name>` reads it by, and its name in the derived table.
    columns: Vec<(String, Ident)>,
}

fn rewrite_from(left: &TableFactor, call: Call, outer: bool) -> Option<Rewritten> {
    let left_alias = relation_alias(left)?;
    let defaults = FUNCTIONS.iter().find(|(f, _)| *f == call.name)?.1;
    // Each column's name, and what `alias.<name>` reads it by.
    let folded = |i: &Ident| Ident::with_quote('"', ident_name(i));
    let (columns, qualifier): (Vec<(String, Ident)>, _) = match &call.alias {
        Some(a) if a.columns.len() == defaults.len() => (
            a.columns
                .iter()
                .map(|c| (ident_name(&c.name), folded(&c.name)))
                .collect(),
            Some(folded(&a.name)),
        ),
        // One column: the alias names it.
        Some(a) if a.columns.is_empty() && defaults.len() == 1 => (
            vec![(defaults[0].to_string(), folded(&a.name))],
            Some(folded(&a.name)),
        ),
        Some(a) if a.columns.is_empty() => (
            defaults
                .iter()
                .map(|d| (d.to_string(), Ident::new(*d)))
                .collect(),
            Some(folded(&a.name)),
        ),
        Some(_) => return None,
        None => (
            defaults
                .iter()
                .map(|d| (d.to_string(), Ident::new(*d)))
                .collect(),
            None,
        ),
    };
    let items: Vec<String> = column_exprs(&call.name, &call.args, outer)
        .into_iter()
        .zip(&columns)
        .map(|(e, (_, c))| format!("{e} AS {}", quoted(c)))
        .collect();
    let sql = format!(
        "SELECT * FROM (SELECT {}.*, {} FROM {}) AS {}",
        quoted(&left_alias),
        items.join(", "),
        left,
        quoted(&left_alias)
    );
    let stmt = Parser::new(&FreshetDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_statement())
        .ok()?;
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(mut s) = *q.body else {
        return None;
    };
    let from = s.from.pop()?;
    Some(Rewritten {
        from,
        qualifier,
        columns,
    })
}

struct Lateral;

impl VisitorMut for Lateral {
    type Break = PlannerError;

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<PlannerError> {
        match rewrite_query(query) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// Rewrites `query`'s SELECT if its FROM is a relation and a lateral call; an outer
/// lateral call joined on anything but `true` is refused.
fn rewrite_query(query: &mut Query) -> Result<(), PlannerError> {
    rewrite_body(query.body.as_mut(), query.order_by.as_mut())
}

/// The SELECTs of a query body, a set operation's sides included (which the query's
/// ORDER BY does not read by their own names).
fn rewrite_body(
    body: &mut SetExpr,
    order_by: Option<&mut crate::sqlparser::ast::OrderBy>,
) -> Result<(), PlannerError> {
    let select = match body {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_body(left, None)?;
            return rewrite_body(right, None);
        }
        _ => return Ok(()),
    };
    // `FROM t, f(…)`, `FROM t CROSS JOIN [LATERAL] f(…)`, or `FROM t {LEFT | INNER} JOIN
    // [LATERAL] f(…) ON true` (outer for LEFT).
    let on_true = |c: &JoinConstraint| matches!(c, JoinConstraint::On(Expr::Value(v)) if v.value == Value::Boolean(true));
    let (left, call, outer) = match select.from.as_slice() {
        [a, b] if a.joins.is_empty() && b.joins.is_empty() => match lateral_call(&b.relation) {
            Some(call) => (a.relation.clone(), call, false),
            None => return Ok(()),
        },
        [a] if a.joins.len() == 1 => {
            let outer = match &a.joins[0].join_operator {
                JoinOperator::CrossJoin(_) => false,
                JoinOperator::Join(c) | JoinOperator::Inner(c) if on_true(c) => false,
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) if on_true(c) => true,
                JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => {
                    if let Some(call) = lateral_call(&a.joins[0].relation) {
                        return Err(PlannerError::Unsupported(format!(
                            "LEFT JOIN LATERAL {}(…) ON a condition: only ON true is taken \
                             (filter the elements in a subquery or WHERE instead)",
                            call.name
                        )));
                    }
                    return Ok(());
                }
                _ => return Ok(()),
            };
            match lateral_call(&a.joins[0].relation) {
                Some(call) => (a.relation.clone(), call, outer),
                None => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    let Some(left_alias) = relation_alias(&left) else {
        return Ok(());
    };
    let Some(Rewritten {
        from,
        qualifier,
        columns,
    }) = rewrite_from(&left, call, outer)
    else {
        return Ok(());
    };
    select.from = vec![from];
    // `t.*` is t's columns, without the ones the derived table adds.
    for item in select.projection.iter_mut() {
        if let SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), opts) =
            item
        {
            let is_left = matches!(n.0.as_slice(), [p] if p.as_ident().is_some_and(|i| ident_name(i) == ident_name(&left_alias)));
            if is_left && opts.opt_exclude.is_none() {
                let mut names: Vec<ObjectName> = columns
                    .iter()
                    .map(|(_, c)| ObjectName::from(vec![c.clone()]))
                    .collect();
                opts.opt_exclude = Some(if names.len() == 1 {
                    ExcludeSelectItem::Single(names.remove(0))
                } else {
                    ExcludeSelectItem::Multiple(names)
                });
            }
        }
    }
    let Some(alias) = qualifier else {
        return Ok(());
    };
    // `e.*` is the function's columns.
    let mut items = Vec::with_capacity(select.projection.len());
    for item in std::mem::take(&mut select.projection) {
        match &item {
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), opts)
                if opts.opt_exclude.is_none()
                    && matches!(n.0.as_slice(), [p] if p.as_ident().is_some_and(|i| ident_name(i) == ident_name(&alias))) =>
            {
                items.extend(
                    columns
                        .iter()
                        .map(|(_, c)| SelectItem::UnnamedExpr(Expr::Identifier(c.clone()))),
                );
            }
            _ => items.push(item),
        }
    }
    select.projection = items;
    // `e.value` → `e`: the alias named the function's rows, which are now columns; in
    // the select and in the query's ORDER BY.
    let rename = |e: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = e {
            if let [q, c] = parts.as_slice() {
                if ident_name(q) == ident_name(&alias) {
                    if let Some((_, column)) = columns.iter().find(|(n, _)| *n == ident_name(c)) {
                        *e = Expr::Identifier(column.clone());
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    };
    let _ = crate::sqlparser::ast::visit_expressions_mut(select.as_mut(), rename);
    if let Some(order) = order_by {
        let _ = crate::sqlparser::ast::visit_expressions_mut(order, rename);
    }
    Ok(())
}

/// Rewrites the lateral set-returning calls of `node` in place.
pub fn normalize<T: VisitMut>(node: &mut T) -> Result<(), PlannerError> {
    match node.visit(&mut Lateral) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        let mut stmt =
            crate::sqlparser::parser::Parser::new(&crate::sql_dialect::FreshetDialect {})
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_statement())
                .expect("parses");
        super::normalize(&mut stmt).expect("rewrites");
        stmt.to_string()
    }

    #[test]
    fn lateral_calls_move_into_the_select_list() {
        assert_eq!(
            rewritten("SELECT t.id, e ->> 'x' FROM imp t, jsonb_array_elements(t.doc) AS e"),
            "SELECT t.id, e ->> 'x' FROM (SELECT \"t\".*, jsonb_array_elements(t.doc) AS \"e\" \
             FROM imp t) AS \"t\""
        );
        assert_eq!(
            rewritten(
                "SELECT id, u.tag FROM plays CROSS JOIN LATERAL unnest(plays.tags) AS u(tag)"
            ),
            "SELECT id, \"tag\" FROM (SELECT \"plays\".*, unnest(plays.tags) AS \"tag\" FROM plays) \
             AS \"plays\""
        );
        // Only the function's column is read through the alias.
        assert_eq!(
            rewritten("SELECT e.value, e.other FROM t, jsonb_array_elements(t.d) AS e"),
            "SELECT \"e\", e.other FROM (SELECT \"t\".*, jsonb_array_elements(t.d) AS \"e\" FROM t) \
             AS \"t\""
        );
        // Mixed case folds as Postgres folds it; t.* leaves the element out; ORDER BY too.
        assert_eq!(
            rewritten("SELECT P.* FROM P, unnest(P.Tags) AS X(TAG) ORDER BY x.tag"),
            "SELECT P.* EXCLUDE \"tag\" FROM (SELECT \"p\".*, unnest(P.Tags) AS \"tag\" FROM P) \
             AS \"p\" ORDER BY \"tag\""
        );
        // Constant arguments stay table functions; other shapes are left alone.
        let constant = "SELECT * FROM t, jsonb_array_elements('[1]') AS e";
        assert_eq!(rewritten(constant), constant);
        let joined = "SELECT * FROM t JOIN u ON t.a = u.a, jsonb_array_elements(t.x) AS e";
        assert_eq!(rewritten(joined), joined);
    }
}
