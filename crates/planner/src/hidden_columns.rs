//! The hidden `_row_id` of a table without a primary key (RisingWave's): a statement that
//! names it reads it; `*` never shows it.
//!
//! Such a table is registered twice in a statement's context: under its name with its
//! columns, and in the schema `pg_row_ids` (reserved: no user relation can be there)
//! with its stored columns (its columns, then `_row_id`: the rows as stored, keyed by
//! it). A statement that does not name `_row_id` is left
//! alone and reads the first. One that does is rewritten before planning:
//!
//! - each such table it reads (not a CTE of its name) reads its stored columns under its
//!   own name (`FROM t` becomes `FROM "pg_row_ids"."t" AS t`, an alias kept, a column
//!   list given one more name);
//! - `*` over those leaves `_row_id` out: `t.*` becomes `t.* EXCLUDE (_row_id)`, and `*`
//!   over one relation `* EXCLUDE (_row_id)`, over several the qualified wildcards of each
//!   relation in order;
//! - what cannot be written out so is refused (`0A000`), never answered with `_row_id`
//!   among the columns: `*` over a join `USING`/`NATURAL` (one column per pair), `*` with
//!   options over several relations, a NATURAL join of two such tables (it would join on
//!   `_row_id`).
//!
//! Whole-row references (`SELECT t FROM t`) in such a statement include `_row_id`.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;

use crate::catalog::ROW_ID;
use crate::naming::ident_name;
use crate::natural_joins::constraint;
use crate::sqlparser::ast::{
    ExcludeSelectItem, Expr, Ident, JoinConstraint, ObjectName, ObjectNamePart, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor,
    TableWithJoins, Visit, VisitMut, Visitor, VisitorMut, WildcardAdditionalOptions,
};
use crate::PlannerError;

/// The schema a table's stored columns are registered in, under the table's name: no
/// user can create a relation there (the prefix `pg_` is reserved for system schemas).
pub const STORED_SCHEMA: &str = "pg_row_ids";

/// The name (as `crate::schemas` names relations) table `name`'s stored columns (with
/// `_row_id`) are registered under.
pub fn stored_name(name: &str) -> String {
    format!("{STORED_SCHEMA}.{name}")
}

/// The table a `stored_name` names.
pub fn stored_target(name: &str) -> Option<&str> {
    name.strip_prefix(STORED_SCHEMA)?.strip_prefix('.')
}

/// The table whose stored columns a `FROM` item's name reads, if it reads them.
fn stored_table(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [schema, table] => {
            let schema = schema.as_ident().map(ident_name)?;
            (schema == STORED_SCHEMA).then(|| table.as_ident().map(ident_name))?
        }
        _ => None,
    }
}

/// The name (as `crate::schemas` names relations) a `FROM` item reads: a table's
/// stored columns, or a relation the catalog names.
pub fn relation_of(name: &ObjectName) -> Option<String> {
    match stored_table(name) {
        Some(t) => Some(stored_name(&t)),
        None => crate::schemas::catalog_name(name),
    }
}

/// Whether `stmt` names `_row_id` (as a column, alone or qualified).
pub fn names_row_id(stmt: &Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let hit = match e {
                Expr::Identifier(i) => ident_name(i) == ROW_ID,
                Expr::CompoundIdentifier(parts) => {
                    parts.last().is_some_and(|i| ident_name(i) == ROW_ID)
                }
                _ => false,
            };
            if hit {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder(false);
    let _ = stmt.visit(&mut f);
    f.0
}

/// Makes the tables `stmt` reads expose `_row_id` if it names it (see the module);
/// whether it does. Before the rewrites that read `FROM` items' names (NATURAL and
/// USING joins).
pub fn expose(ctx: &SessionContext, stmt: &mut Statement) -> Result<bool, PlannerError> {
    if !names_row_id(stmt) {
        return Ok(false);
    }
    let mut ctes = HashSet::new();
    crate::plain_views::collect_ctes(stmt, &mut ctes);
    struct Exposer<'a> {
        ctx: &'a SessionContext,
        ctes: HashSet<String>,
    }
    impl VisitorMut for Exposer<'_> {
        type Break = PlannerError;
        fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<PlannerError> {
            let TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } = tf
            else {
                return ControlFlow::Continue(());
            };
            let Some(key) = crate::schemas::catalog_name(name) else {
                return ControlFlow::Continue(());
            };
            if self.ctes.contains(&key) {
                return ControlFlow::Continue(());
            }
            let stored = stored_name(&key);
            if !self
                .ctx
                .table_exist(crate::schemas::table_ref(&stored))
                .unwrap_or(false)
            {
                return ControlFlow::Continue(());
            }
            match alias {
                None => {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: Ident::with_quote('"', crate::schemas::split(&key).1),
                        columns: Vec::new(),
                        at: None,
                    })
                }
                // Names for its columns: `_row_id` keeps its own.
                Some(a) if !a.columns.is_empty() => {
                    a.columns
                        .push(crate::sqlparser::ast::TableAliasColumnDef::from_name(
                            ROW_ID,
                        ))
                }
                Some(_) => {}
            }
            *name = crate::sqlparser::ast::ObjectName::from(vec![
                Ident::with_quote('"', STORED_SCHEMA),
                Ident::with_quote('"', key),
            ]);
            ControlFlow::Continue(())
        }
    }
    if let ControlFlow::Break(e) = stmt.visit(&mut Exposer { ctx, ctes }) {
        return Err(e);
    }
    Ok(true)
}

/// Leaves `_row_id` out of every `*` over a table that exposes it. After `expose`, and
/// after the rewrites that write `*` out (USING joins).
pub fn hide_in_wildcards(stmt: &mut Statement) -> Result<(), PlannerError> {
    struct Hider;
    impl VisitorMut for Hider {
        type Break = PlannerError;
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<PlannerError> {
            match hide_in_body(q.body.as_mut()) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            }
        }
    }
    match stmt.visit(&mut Hider) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn hide_in_body(body: &mut SetExpr) -> Result<(), PlannerError> {
    match body {
        SetExpr::Select(s) => hide_in_select(s),
        SetExpr::SetOperation { left, right, .. } => {
            hide_in_body(left)?;
            hide_in_body(right)
        }
        _ => Ok(()),
    }
}

/// A `FROM` item of a SELECT: how `*` names it, and whether it exposes `_row_id`.
struct Item {
    qualifier: Option<String>,
    exposes: bool,
}

fn items(from: &[TableWithJoins]) -> (Vec<Item>, bool) {
    let mut out = Vec::new();
    let mut merges = false;
    for twj in from {
        factor_items(&twj.relation, &mut out, &mut merges);
        for j in &twj.joins {
            factor_items(&j.relation, &mut out, &mut merges);
            merges |= matches!(
                constraint(&j.join_operator),
                Some(JoinConstraint::Using(_) | JoinConstraint::Natural)
            );
        }
    }
    (out, merges)
}

fn factor_items(tf: &TableFactor, out: &mut Vec<Item>, merges: &mut bool) {
    match tf {
        TableFactor::NestedJoin {
            table_with_joins,
            alias: None,
        } => {
            let (inner, m) = items(std::slice::from_ref(table_with_joins.as_ref()));
            *merges |= m;
            out.extend(inner);
        }
        TableFactor::NestedJoin {
            table_with_joins,
            alias: Some(a),
        } => {
            let (inner, _) = items(std::slice::from_ref(table_with_joins.as_ref()));
            out.push(Item {
                qualifier: Some(ident_name(&a.name)),
                exposes: inner.iter().any(|i| i.exposes),
            });
        }
        TableFactor::Table { name, alias, .. } => out.push(Item {
            qualifier: alias.as_ref().map(|a| ident_name(&a.name)).or_else(|| {
                name.0
                    .last()
                    .and_then(ObjectNamePart::as_ident)
                    .map(ident_name)
            }),
            exposes: stored_table(name).is_some(),
        }),
        other => out.push(Item {
            qualifier: factor_alias(other),
            exposes: false,
        }),
    }
}

fn factor_alias(tf: &TableFactor) -> Option<String> {
    match tf {
        TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. } => alias.as_ref().map(|a| ident_name(&a.name)),
        _ => None,
    }
}

fn hide_in_select(s: &mut Select) -> Result<(), PlannerError> {
    let (items, merges) = items(&s.from);
    if !items.iter().any(|i| i.exposes) {
        return Ok(());
    }
    let mut projection = Vec::with_capacity(s.projection.len());
    for item in std::mem::take(&mut s.projection) {
        match item {
            SelectItem::Wildcard(mut opts) if items.len() == 1 => {
                exclude_row_id(&mut opts);
                projection.push(SelectItem::Wildcard(opts));
            }
            SelectItem::Wildcard(opts) => {
                if merges || !plain(&opts) || items.iter().any(|i| i.qualifier.is_none()) {
                    return Err(PlannerError::Unsupported(
                        "SELECT * over a join of a table without a primary key, in a query \
                         that names _row_id, is supported only for joins with ON and without \
                         options: name the columns"
                            .into(),
                    ));
                }
                for i in &items {
                    let mut opts = WildcardAdditionalOptions::default();
                    if i.exposes {
                        exclude_row_id(&mut opts);
                    }
                    let q = i.qualifier.clone().unwrap_or_default();
                    projection.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(ObjectName(vec![
                            ObjectNamePart::Identifier(Ident::with_quote('"', q)),
                        ])),
                        opts,
                    ));
                }
            }
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(q),
                mut opts,
            ) if q
                .0
                .last()
                .and_then(ObjectNamePart::as_ident)
                .map(ident_name)
                .is_some_and(|q| {
                    items
                        .iter()
                        .any(|i| i.exposes && i.qualifier.as_deref() == Some(q.as_str()))
                }) =>
            {
                exclude_row_id(&mut opts);
                projection.push(SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(q),
                    opts,
                ));
            }
            other => projection.push(other),
        }
    }
    s.projection = projection;
    Ok(())
}

fn plain(o: &WildcardAdditionalOptions) -> bool {
    o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_ilike.is_none()
}

/// Adds `_row_id` to a wildcard's `EXCLUDE` list.
fn exclude_row_id(opts: &mut WildcardAdditionalOptions) {
    let row_id = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(ROW_ID))]);
    let mut list = match opts.opt_exclude.take() {
        None => Vec::new(),
        Some(ExcludeSelectItem::Single(one)) => vec![one],
        Some(ExcludeSelectItem::Multiple(many)) => many,
    };
    if !list.iter().any(|n| {
        n.0.last()
            .and_then(ObjectNamePart::as_ident)
            .is_some_and(|i| ident_name(i) == ROW_ID)
    }) {
        list.push(row_id);
    }
    opts.opt_exclude = Some(ExcludeSelectItem::Multiple(list));
}

/// A NATURAL join of two tables that expose `_row_id` would join on it: refused. After
/// `crate::natural_joins` wrote out those it could.
pub fn check_natural_joins(stmt: &Statement) -> Result<(), PlannerError> {
    struct Naturals(bool);
    impl Visitor for Naturals {
        type Break = ();
        fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
            // Every join, parenthesised ones included, is some FROM item's or nested
            // join's list.
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = tf
            {
                self.0 |= joins_on_row_ids(table_with_joins);
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            let mut bodies = vec![q.body.as_ref()];
            while let Some(b) = bodies.pop() {
                match b {
                    SetExpr::Select(s) => {
                        self.0 |= s.from.iter().any(joins_on_row_ids);
                    }
                    SetExpr::SetOperation { left, right, .. } => {
                        bodies.push(left);
                        bodies.push(right);
                    }
                    _ => {}
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut n = Naturals(false);
    let _ = stmt.visit(&mut n);
    if n.0 {
        return Err(PlannerError::Unsupported(
            "a NATURAL JOIN of two tables without a primary key, in a query that names \
             _row_id, whose columns cannot be told (it would join on _row_id): join USING \
             the columns"
                .into(),
        ));
    }
    Ok(())
}

/// Whether a NATURAL join in `twj` has a table exposing `_row_id` on both sides.
fn joins_on_row_ids(twj: &TableWithJoins) -> bool {
    let mut left = Vec::new();
    factor_items(&twj.relation, &mut left, &mut false);
    for j in &twj.joins {
        let mut right = Vec::new();
        factor_items(&j.relation, &mut right, &mut false);
        if matches!(constraint(&j.join_operator), Some(JoinConstraint::Natural))
            && left.iter().any(|i| i.exposes)
            && right.iter().any(|i| i.exposes)
        {
            return true;
        }
        left.extend(right);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_dialect::FreshetDialect;
    use crate::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&FreshetDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    fn hidden(sql: &str) -> Result<String, PlannerError> {
        let mut stmt = parse(sql);
        hide_in_wildcards(&mut stmt)?;
        Ok(stmt.to_string())
    }

    #[test]
    fn finds_row_id_references() {
        assert!(names_row_id(&parse("SELECT _row_id FROM t")));
        assert!(names_row_id(&parse("DELETE FROM t WHERE t._row_id = 1")));
        assert!(!names_row_id(&parse("SELECT a FROM t")));
        assert!(!names_row_id(&parse("SELECT '_row_id' FROM t")));
    }

    #[test]
    fn wildcards_leave_row_id_out() {
        assert_eq!(
            hidden(r#"SELECT *, _row_id FROM "pg_row_ids"."t" AS t"#).unwrap(),
            r#"SELECT * EXCLUDE (_row_id), _row_id FROM "pg_row_ids"."t" AS t"#
        );
        assert_eq!(
            hidden(r#"SELECT t.*, u.* FROM "pg_row_ids"."t" AS t JOIN u ON t.a = u.a"#).unwrap(),
            r#"SELECT t.* EXCLUDE (_row_id), u.* FROM "pg_row_ids"."t" AS t JOIN u ON t.a = u.a"#
        );
        assert_eq!(
            hidden(r#"SELECT * FROM "pg_row_ids"."t" AS x, u WHERE x._row_id = 1"#).unwrap(),
            r#"SELECT "x".* EXCLUDE (_row_id), "u".* FROM "pg_row_ids"."t" AS x, u WHERE x._row_id = 1"#
        );
        // Nested queries each over their own FROM.
        assert_eq!(
            hidden(r#"SELECT * FROM (SELECT * FROM "pg_row_ids"."t" AS t) AS s"#).unwrap(),
            r#"SELECT * FROM (SELECT * EXCLUDE (_row_id) FROM "pg_row_ids"."t" AS t) AS s"#
        );
        assert!(hidden(r#"SELECT * FROM "pg_row_ids"."t" AS t JOIN u USING (a)"#).is_err());
        // Tables that do not expose it are left alone.
        assert_eq!(hidden("SELECT * FROM t").unwrap(), "SELECT * FROM t");
    }

    #[test]
    fn natural_joins_of_two_exposing_tables_are_refused() {
        let stmt =
            parse(r#"SELECT a FROM "pg_row_ids"."t" AS t NATURAL JOIN "pg_row_ids"."u" AS u"#);
        assert!(check_natural_joins(&stmt).is_err());
        let stmt = parse(r#"SELECT a FROM "pg_row_ids"."t" AS t NATURAL JOIN u"#);
        assert!(check_natural_joins(&stmt).is_ok());
    }
}
