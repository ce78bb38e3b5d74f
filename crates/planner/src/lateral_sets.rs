//! A set-returning function over the columns of the relation before it in `FROM` (a
//! lateral call), which DataFusion cannot plan:
//!
//! ```sql
//! SELECT t.id, e ->> 'title' FROM impressions t, jsonb_array_elements(t.doc -> 'items') AS e
//! SELECT id, tag FROM plays CROSS JOIN LATERAL unnest(plays.tags) AS tag
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
//! The function's rows are one column, named by the alias's column (`AS e(v)`), else by
//! the alias itself (Postgres lets `e` stand for that column), else as Postgres names it
//! (`value`, `unnest`); `e.value` (`e.v`) reads it too. Rewritten when `FROM` is exactly
//! one named relation followed by the call: `FROM t, f(…)` or `FROM t CROSS JOIN [LATERAL]
//! f(…)`. Other shapes are left for DataFusion, which refuses them.

use std::ops::ControlFlow;

use crate::naming::ident_name;
use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    ExcludeSelectItem, Expr, FunctionArg, Ident, JoinOperator, ObjectName, Query, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor, TableWithJoins,
    VisitMut, VisitorMut,
};
use crate::sqlparser::parser::Parser;

/// The single-column set-returning functions, with Postgres' name for their column.
const FUNCTIONS: &[(&str, &str)] = &[
    ("unnest", "unnest"),
    ("jsonb_array_elements", "value"),
    ("json_array_elements", "value"),
    ("jsonb_array_elements_text", "value"),
    ("json_array_elements_text", "value"),
    ("jsonb_object_keys", "jsonb_object_keys"),
    ("json_object_keys", "json_object_keys"),
];

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
/// column.
struct Rewritten {
    from: TableWithJoins,
    /// The call's alias and the column name that `alias.<name>` reads the column by.
    qualifier: Option<(Ident, String)>,
    column: Ident,
}

fn rewrite_from(left: &TableFactor, call: Call) -> Option<Rewritten> {
    let left_alias = relation_alias(left)?;
    let default_column = FUNCTIONS.iter().find(|(f, _)| *f == call.name)?.1;
    // The column's name, and what `alias.<name>` reads it by.
    let folded = |i: &Ident| Ident::with_quote('"', ident_name(i));
    let (column, qualifier) = match &call.alias {
        Some(a) if a.columns.len() == 1 => (
            folded(&a.columns[0].name),
            Some((folded(&a.name), ident_name(&a.columns[0].name))),
        ),
        Some(a) if a.columns.is_empty() => (
            folded(&a.name),
            Some((folded(&a.name), default_column.to_string())),
        ),
        Some(_) => return None,
        None => (Ident::new(default_column), None),
    };
    let sql = format!(
        "SELECT * FROM (SELECT {}.*, {}({}) AS {} FROM {}) AS {}",
        quoted(&left_alias),
        call.name,
        call.args,
        quoted(&column),
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
        column,
    })
}

struct Lateral;

impl VisitorMut for Lateral {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        rewrite_query(query);
        ControlFlow::Continue(())
    }
}

/// Rewrites `query`'s SELECT if its FROM is a relation and a lateral call.
fn rewrite_query(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    // `FROM t, f(…)` or `FROM t CROSS JOIN [LATERAL] f(…)`.
    let (left, call) = match select.from.as_slice() {
        [a, b] if a.joins.is_empty() && b.joins.is_empty() => match lateral_call(&b.relation) {
            Some(call) => (a.relation.clone(), call),
            None => return,
        },
        [a] if a.joins.len() == 1
            && matches!(a.joins[0].join_operator, JoinOperator::CrossJoin(_)) =>
        {
            match lateral_call(&a.joins[0].relation) {
                Some(call) => (a.relation.clone(), call),
                None => return,
            }
        }
        _ => return,
    };
    let Some(left_alias) = relation_alias(&left) else {
        return;
    };
    let Some(Rewritten {
        from,
        qualifier,
        column,
    }) = rewrite_from(&left, call)
    else {
        return;
    };
    select.from = vec![from];
    // `t.*` is t's columns, without the element the derived table adds.
    for item in select.projection.iter_mut() {
        if let SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), opts) =
            item
        {
            let is_left = matches!(n.0.as_slice(), [p] if p.as_ident().is_some_and(|i| ident_name(i) == ident_name(&left_alias)));
            if is_left && opts.opt_exclude.is_none() {
                opts.opt_exclude = Some(ExcludeSelectItem::Single(ObjectName::from(vec![
                    column.clone()
                ])));
            }
        }
    }
    let Some((alias, name)) = qualifier else {
        return;
    };
    // `e.value` → `e`: the alias named the function's rows, which are now a column; in
    // the select and in the query's ORDER BY.
    let rename = |e: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = e {
            if let [q, c] = parts.as_slice() {
                if ident_name(q) == ident_name(&alias) && ident_name(c) == name {
                    *e = Expr::Identifier(column.clone());
                }
            }
        }
        ControlFlow::<()>::Continue(())
    };
    let _ = crate::sqlparser::ast::visit_expressions_mut(select.as_mut(), rename);
    if let Some(order) = query.order_by.as_mut() {
        let _ = crate::sqlparser::ast::visit_expressions_mut(order, rename);
    }
}

/// Rewrites the lateral set-returning calls of `node` in place.
pub fn normalize<T: VisitMut>(node: &mut T) {
    let _ = node.visit(&mut Lateral);
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        let mut stmt =
            crate::sqlparser::parser::Parser::new(&crate::sql_dialect::FreshetDialect {})
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_statement())
                .expect("parses");
        super::normalize(&mut stmt);
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
