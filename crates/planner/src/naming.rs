//! Postgres' names for unaliased select-list expressions.
//!
//! DataFusion names `count(*)` "count(*)" and `2 + 3` "Int64(2) + Int64(3)", and refuses
//! two expressions that print alike (`2+3*4, (2+3)*4`). Postgres calls them `count` and
//! `?column?` and allows duplicates. Before binding, the outermost SELECT's unaliased
//! expressions get an alias: in queries a unique one that carries the Postgres name
//! (restored by [`display_name`] when the result is sent), in views the Postgres name
//! itself (a view's columns must be unique anyway).

use crate::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr};

/// Separates the Postgres name from the uniquifying suffix in a query alias.
pub(crate) const MARK: char = '\u{0}';

/// Postgres' name for an expression in a select list.
pub fn pg_column_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name).unwrap_or_else(unnamed),
        // An internal function (`__freshet_…`, a rewrite of an operator) has no name.
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(ident_name)
            .filter(|n| !n.starts_with("__freshet_"))
            .unwrap_or_else(unnamed),
        // A cast is named after what it casts, or after its type when that has no name
        // of its own or is a cast itself (`2.5::float8::int` is `int4`).
        Expr::Cast {
            expr, data_type, ..
        } => match pg_column_name(expr) {
            n if n == "?column?" || is_cast(expr) => pg_type_name(data_type),
            n => n,
        },
        Expr::Nested(inner) => pg_column_name(inner),
        // A typed literal is named after its type (`date '2024-01-01'` is `date`).
        Expr::TypedString(ts) => pg_type_name(&ts.data_type),
        Expr::Interval(_) => "interval".into(),
        // `(s).f` and `(s).f[1]` are named `f`, `a[1]` after `a`.
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain
            .iter()
            .rev()
            .find(|a| matches!(a, crate::sqlparser::ast::AccessExpr::Dot(_)))
        {
            Some(crate::sqlparser::ast::AccessExpr::Dot(field)) => match field {
                Expr::Identifier(i) => ident_name(i),
                Expr::CompoundIdentifier(parts) => {
                    parts.last().map(ident_name).unwrap_or_else(unnamed)
                }
                Expr::Value(v) => match &v.value {
                    crate::sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                    _ => unnamed(),
                },
                _ => unnamed(),
            },
            _ => pg_column_name(root),
        },
        // A scalar subquery is named after its one column.
        Expr::Subquery(q) => match q.body.as_ref() {
            crate::sqlparser::ast::SetExpr::Select(s) => match s.projection.as_slice() {
                [SelectItem::ExprWithAlias { alias, .. }] => ident_name(alias),
                [SelectItem::UnnamedExpr(e)] => pg_column_name(e),
                _ => unnamed(),
            },
            _ => unnamed(),
        },
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::Trim { .. } => "btrim".into(),
        _ => unnamed(),
    }
}

/// The name Postgres gives a cast to `t` in a select list: the type's own name (`int4`
/// for `INT`, `float8` for `DOUBLE PRECISION`, `varchar`, `timestamptz`), the element
/// type's for an array.
fn pg_type_name(t: &crate::sqlparser::ast::DataType) -> String {
    let text = t.to_string().to_uppercase();
    let text = text.trim_end_matches("[]");
    let base = text.split(['(', '<']).next().unwrap_or(text).trim();
    let name = match base {
        "INT" | "INTEGER" | "INT4" => "int4",
        "BIGINT" | "INT8" => "int8",
        "SMALLINT" | "INT2" => "int2",
        "REAL" | "FLOAT4" => "float4",
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" | "FLOAT" => "float8",
        "BOOLEAN" | "BOOL" => "bool",
        "CHARACTER VARYING" | "VARCHAR" => "varchar",
        "CHARACTER" | "CHAR" => "bpchar",
        "DECIMAL" | "NUMERIC" | "DEC" => "numeric",
        "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => "timestamptz",
        "TIMESTAMP" | "TIMESTAMP WITHOUT TIME ZONE" => "timestamp",
        "TIME WITH TIME ZONE" | "TIMETZ" => "timetz",
        "TIME" | "TIME WITHOUT TIME ZONE" => "time",
        other => return other.split(' ').next().unwrap_or("?column?").to_lowercase(),
    };
    name.to_string()
}

fn is_cast(e: &Expr) -> bool {
    match e {
        Expr::Cast { .. } => true,
        Expr::Nested(inner) => is_cast(inner),
        _ => false,
    }
}

fn unnamed() -> String {
    "?column?".into()
}

/// An identifier as Postgres folds it: unquoted names are lower-cased.
pub fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Aliases the unaliased expressions of the outermost SELECT. With `unique`, aliases are
/// made unique and must be shown through [`display_name`].
pub fn name_select_items(query: &mut Query, unique: bool) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    // Beside a `*`, a column may be named twice (DBeaver's `SELECT n.oid, n.* FROM
    // pg_namespace n`): then columns get a unique alias too.
    let wildcard = unique
        && select.projection.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _)
            )
        });
    // Postgres allows two result columns of one name (`SELECT 1 AS a, 2 AS a`, `SELECT
    // a, a FROM t`); DataFusion does not: in queries, each of them gets a unique alias.
    let names: Vec<Option<String>> = select.projection.iter().map(item_name).collect();
    let repeated = |i: usize| {
        unique
            && names[i]
                .as_ref()
                .is_some_and(|n| names.iter().filter(|m| m.as_ref() == Some(n)).count() > 1)
    };
    for (i, item) in select.projection.iter_mut().enumerate() {
        if let SelectItem::ExprWithAlias { alias, .. } = item {
            if repeated(i) {
                *alias = Ident::with_quote('"', format!("{}{MARK}{i}", ident_name(alias)));
            }
            continue;
        }
        if let SelectItem::UnnamedExpr(e) = item {
            if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                && !wildcard
                && !repeated(i)
            {
                continue;
            }
            // `(s).*` names its columns after the fields; in queries, a marked alias
            // tells the expansion to make them unique.
            if crate::structs::is_fields_call(e) {
                if unique {
                    *item = SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::with_quote('"', format!("{MARK}{i}")),
                    };
                }
                continue;
            }
            let name = pg_column_name(e);
            let alias = if unique {
                format!("{name}{MARK}{i}")
            } else {
                name
            };
            *item = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', alias),
            };
        }
    }
}

/// The name a select-list item gives its column, if it is one column with a name of its
/// own (an alias or a column reference).
fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(ident_name(i)),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(ident_name),
        _ => None,
    }
}

/// Gives the unaliased expressions of each subquery in `FROM` and each `WITH` query the
/// name Postgres gives them, so the query around can read them by it: `SELECT max(count)
/// FROM (SELECT k, count(*) FROM t GROUP BY k) AS x`, and `SELECT *` over it shows
/// `count`, not DataFusion's `count(*)`. A name already used in the same select list is
/// not given again, nor are names beside a `*` (DataFusion refuses a subquery's two
/// columns of one name).
pub fn name_subquery_items<T: crate::sqlparser::ast::VisitMut>(node: &mut T) {
    struct Subqueries;
    impl crate::sqlparser::ast::VisitorMut for Subqueries {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            tf: &mut crate::sqlparser::ast::TableFactor,
        ) -> std::ops::ControlFlow<()> {
            if let crate::sqlparser::ast::TableFactor::Derived { subquery, .. } = tf {
                name_items(subquery.body.as_mut());
            }
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, query: &mut Query) -> std::ops::ControlFlow<()> {
            if let Some(with) = &mut query.with {
                for cte in &mut with.cte_tables {
                    name_items(cte.query.body.as_mut());
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    fn name_items(body: &mut SetExpr) {
        match body {
            // Beside a `*` a name could repeat one of the columns it stands for.
            SetExpr::Select(select)
                if !select.projection.iter().any(|i| {
                    matches!(
                        i,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _)
                    )
                }) =>
            {
                let mut taken: Vec<String> =
                    select.projection.iter().filter_map(item_name).collect();
                for item in &mut select.projection {
                    let SelectItem::UnnamedExpr(e) = item else {
                        continue;
                    };
                    if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                        || crate::structs::is_fields_call(e)
                    {
                        continue;
                    }
                    let name = pg_column_name(e);
                    if taken.contains(&name) {
                        continue;
                    }
                    *item = SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::with_quote('"', name.clone()),
                    };
                    taken.push(name);
                }
            }
            SetExpr::SetOperation { left, .. } => name_items(left),
            SetExpr::Query(q) => name_items(q.body.as_mut()),
            _ => {}
        }
    }
    let _ = node.visit(&mut Subqueries);
}

/// The name to show for a result column named by [`name_select_items`].
pub fn display_name(field: &str) -> &str {
    match field.split_once(MARK) {
        Some((name, _)) => name,
        None => field,
    }
}

/// Names each unaliased select item of `node` that `call` recognizes as a call to be
/// rewritten after the function it calls, so the rewrite keeps Postgres' column name.
pub fn keep_call_names<T: crate::sqlparser::ast::VisitMut>(
    node: &mut T,
    call: fn(&Expr) -> Option<&crate::sqlparser::ast::Function>,
) {
    keep_names(node, |e| {
        call(e).map(|f| pg_column_name(&Expr::Function(f.clone())))
    });
}

/// Names each unnamed select item `name` gives a name for (an item about to be
/// rewritten into an expression DataFusion would name otherwise), in every query of
/// `node` (a set operation's names are its first SELECT's).
pub fn keep_names<T: crate::sqlparser::ast::VisitMut>(
    node: &mut T,
    name: impl Fn(&Expr) -> Option<String>,
) {
    struct KeepNames<F>(F);
    impl<F: Fn(&Expr) -> Option<String>> crate::sqlparser::ast::VisitorMut for KeepNames<F> {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> std::ops::ControlFlow<()> {
            let mut body = query.body.as_mut();
            while let SetExpr::SetOperation { left, .. } = body {
                body = left.as_mut();
            }
            if let SetExpr::Select(select) = body {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) = item {
                        if let Some(name) = (self.0)(e) {
                            *item = SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: Ident::with_quote('"', name),
                            };
                        }
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut KeepNames(name));
}
