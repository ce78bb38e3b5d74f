//! Postgres' catalogs and information functions for a statement (the relations and
//! functions themselves are in `freshet_planner::pg_catalog`): what a session's
//! [`Snapshot`] holds, the rewrite of Postgres spellings, and registering what a
//! statement uses in its DataFusion session.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::prelude::SessionContext;
use freshet_planner::catalog::Catalog;
use freshet_planner::context::{referenced_tables, register_in_schema};
use freshet_planner::pg_catalog::{
    self, functions, rewrite, SessionActivity, Snapshot, SqlStateError,
};
use freshet_planner::sqlparser::ast::{self, Statement};
use freshet_planner::users::{UserDef, BOOTSTRAP_USER};

use super::system_tables::COMPUTED;
use super::{Session, SERVER_VERSION};
use crate::backends::{Backend, Backends};
use crate::error::Result;

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A session as `pg_stat_activity` shows it.
fn activity(b: &Backend) -> SessionActivity {
    let a = b.snapshot();
    SessionActivity {
        pid: b.pid,
        user: a.user,
        application_name: a.application_name,
        client_addr: a.client_addr.map(|s| s.ip().to_canonical().to_string()),
        client_port: a.client_addr.map(|s| i32::from(s.port())),
        backend_start: micros(a.backend_start),
        xact_start: a.xact_start.map(micros),
        query_start: a.query_start.map(micros),
        state_change: micros(a.state_change),
        state: a.state.to_string(),
        query: a.query,
    }
}

/// `pg_cancel_backend` and `pg_terminate_backend` on behalf of one session's user: a
/// superuser may signal any session, another user only sessions of its own that are not
/// a superuser's (Postgres' rules, without `pg_signal_backend`).
struct SessionSignals {
    backends: Arc<Backends>,
    me: UserDef,
    superusers: Vec<String>,
}

impl pg_catalog::Signals for SessionSignals {
    fn signal(&self, pid: i32, terminate: bool) -> std::result::Result<bool, SqlStateError> {
        let Some(target) = self.backends.get(pid) else {
            tracing::warn!(pid, "PID {pid} is not a Freshet session");
            return Ok(false);
        };
        let theirs = target.snapshot().user;
        let what = if terminate {
            "terminate process"
        } else {
            "cancel query"
        };
        if !self.me.superuser && (theirs != self.me.name || self.superusers.contains(&theirs)) {
            return Err(SqlStateError {
                code: "42501",
                message: format!("permission denied to {what}"),
                detail: None,
                hint: None,
            });
        }
        if terminate {
            target.terminate();
        } else {
            target.cancel();
        }
        Ok(true)
    }
}

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
        let freshet_catalog = COMPUTED
            .iter()
            .copied()
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
            backend_pid: self.backend.backend.pid,
            freshet_catalog,
            activity: db.backends.all().iter().map(|b| activity(b)).collect(),
            signals: Some(Arc::new(SessionSignals {
                backends: db.backends.clone(),
                me: self.current_user(),
                superusers: catalog
                    .users
                    .iter()
                    .filter(|u| u.superuser)
                    .map(|u| u.name.clone())
                    .chain([BOOTSTRAP_USER.to_string()])
                    .collect(),
            })),
            set_configs: Some(self.set_config_calls()),
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
