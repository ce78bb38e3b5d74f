//! Postgres' catalogs and information functions for a statement (the relations and
//! functions themselves are in `freshet_planner::pg_catalog`): what a session's
//! [`Snapshot`] holds, the rewrite of Postgres spellings, and registering what a
//! statement uses in its DataFusion session.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use freshet_planner::catalog::Catalog;
use freshet_planner::context::{referenced_tables, register_in_schema};
use freshet_planner::pg_catalog::{self, functions, rewrite, Snapshot};
use freshet_planner::sqlparser::ast::{self, Statement};

use super::system_tables::{
    sinks_rows, source_status_rows, view_state_rows, watermarks_rows, ComputedRelation, SINKS_NAME,
    SOURCE_STATUS_NAME, VIEW_STATE_NAME, WATERMARKS_NAME,
};
use super::{Session, SERVER_VERSION};
use crate::error::Result;

/// What `version()` says: tools (SQLAlchemy, Grafana, DBeaver) read the Postgres version
/// from it.
pub(super) fn version_string() -> String {
    format!(
        "PostgreSQL {} (Freshet {}) on {}-unknown-linux-gnu, compiled by rustc, 64-bit",
        SERVER_VERSION.split_whitespace().next().unwrap_or("15.0"),
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// Whether a statement calls one of Postgres' information functions.
fn calls_pg_functions(stmt: &Statement) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(stmt, |e| {
        if let ast::Expr::Function(f) = e {
            if let Some(ast::ObjectNamePart::Identifier(i)) = f.name.0.last() {
                found |= functions::NAMES.contains(&i.value.to_lowercase().as_str());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

impl Session {
    /// `stmt` with Postgres' spellings made DataFusion's (see `pg_catalog::rewrite`).
    pub(super) fn pg_compatible(&self, catalog: &Catalog, stmt: &Statement) -> Statement {
        let mut s = stmt.clone();
        rewrite::rewrite(&mut s, &|name| catalog.kind_of(name).is_some());
        s
    }

    /// What the session's catalog functions and relations answer from.
    fn snapshot(&self, catalog: &Catalog) -> Snapshot {
        let db = &self.db;
        let freshet_catalog = [
            (WATERMARKS_NAME, watermarks_rows as ComputedRelation),
            (VIEW_STATE_NAME, view_state_rows as ComputedRelation),
            (SINKS_NAME, sinks_rows as ComputedRelation),
            (SOURCE_STATUS_NAME, source_status_rows as ComputedRelation),
        ]
        .into_iter()
        .filter_map(|(name, f)| {
            let (schema, _) = f(db, &Catalog::default()).ok()?;
            Some((
                name.trim_start_matches("freshet_catalog.").to_string(),
                schema,
            ))
        })
        .chain([
            (
                "source_errors".to_string(),
                freshet_engine::coordinator::source_errors_schema(),
            ),
            (
                "late_events".to_string(),
                freshet_engine::coordinator::late_events_schema(),
            ),
        ])
        .collect();
        Snapshot {
            catalog: Arc::new(catalog.clone()),
            view_schemas: db
                .view_schemas
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            user: self.user_name(),
            settings: self.settings(),
            version: version_string(),
            backend_pid: self.pid,
            freshet_catalog,
        }
    }

    /// Registers in `ctx` the `pg_catalog` and `information_schema` relations `stmt`
    /// names, and Postgres' information functions if it calls any.
    pub(super) fn register_pg(
        &self,
        ctx: &SessionContext,
        catalog: &Catalog,
        stmt: &Statement,
    ) -> Result<()> {
        let wanted: Vec<&'static pg_catalog::Relation> = referenced_tables(stmt)
            .iter()
            .filter_map(|n| {
                let (schema, name) = n.split_once('.')?;
                pg_catalog::find(schema, name)
            })
            .collect();
        if wanted.is_empty() && !calls_pg_functions(stmt) {
            return Ok(());
        }
        let snap = Arc::new(self.snapshot(catalog));
        for rel in wanted {
            let (schema, batches) = pg_catalog::build(rel, &snap)?;
            register_in_schema(ctx, rel.schema, rel.name, schema, batches)?;
        }
        functions::register(ctx, snap);
        Ok(())
    }
}

/// The columns of a query that provably returns no rows (it joins a catalog Freshet keeps
/// empty: triggers, policies, publications, …), named as its select list names them and
/// typed text: answered without planning (psql's `\d` sends many such queries, some with
/// Postgres-only expressions over those catalogs).
pub(super) fn empty_result(stmt: &Statement) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let Statement::Query(q) = stmt else {
        return None;
    };
    if !rewrite::provably_empty(q) {
        return None;
    }
    let mut body = q.body.as_ref();
    while let ast::SetExpr::SetOperation { left, .. } = body {
        body = left;
    }
    let ast::SetExpr::Select(s) = body else {
        return None;
    };
    let mut fields = Vec::new();
    for item in &s.projection {
        let name = match item {
            ast::SelectItem::ExprWithAlias { alias, .. } => {
                freshet_planner::naming::display_name(&alias.value).to_string()
            }
            ast::SelectItem::UnnamedExpr(ast::Expr::Identifier(i)) => i.value.clone(),
            ast::SelectItem::UnnamedExpr(ast::Expr::CompoundIdentifier(parts)) => {
                parts.last().map(|i| i.value.clone()).unwrap_or_default()
            }
            ast::SelectItem::UnnamedExpr(_) => "?column?".to_string(),
            _ => return None,
        };
        fields.push(Field::new(name, DataType::Utf8, true));
    }
    Some(Arc::new(Schema::new(fields)))
}
