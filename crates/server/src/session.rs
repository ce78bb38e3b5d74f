//! Statement execution: one [`Session`] per connection over the shared [`Db`].
//!
//! - `SELECT` (and `EXPLAIN`) run in DataFusion over one consistent snapshot of the
//!   committed rows of the relations they name;
//! - `INSERT`/`UPDATE`/`DELETE` compute the rows to delete and insert (DataFusion again),
//!   then hand them to the engine's coordinator, which validates them, updates every
//!   dependent view and commits; a write that raced with another one is recomputed;
//! - DDL builds the new catalog and lets the coordinator apply it in one commit.
//!
//! This file holds the [`Session`], what a statement produced ([`Output`]) and the
//! dispatch of each statement (`execute`, `run`, `execute_sql`) to the module that
//! answers it:
//!
//! - `db`: the shared [`Db`]: opening it, source readers and their supervision, the
//!   catalog, views that failed at start-up, `FLUSH` and shutdown;
//! - `query`: `SELECT`, `EXPLAIN` and `describe` (parameter types, result columns), and
//!   the DataFusion session a statement runs in (`Db::context_for`);
//! - `system_tables`: the computed relations of `freshet_catalog` (`sinks`,
//!   `source_status`, `watermarks`, `view_state`);
//! - `dml`: `INSERT`, `UPDATE` and `DELETE`;
//! - `ddl`: `CREATE`/`DROP` of tables, materialized views, sinks and sources, and
//!   `EXPLAIN CREATE MATERIALIZED VIEW`;
//! - `vars`: session variables (`SET`, `SHOW`) and what they set (memory limit,
//!   `statement_timeout`, `implicit_flush`);
//! - `access`: users, privileges and the check every statement passes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use freshet_engine::chunk::rows_to_batch;
use freshet_planner::catalog::{Catalog, RelationKind};
use freshet_planner::parser::Stmt;
use freshet_planner::sqlparser::ast::{self, ObjectName, Statement};

use crate::error::{Result, ServerError};

mod access;
mod alter_view;
mod copy;
mod create_table_as;
mod cursor;
mod db;
mod ddl;
mod defaults;
mod dml;
mod index;
mod notices;
mod ops_tables;
mod plain_view;
mod rename;
mod schema;
mod setting_names;
mod sink_into;
pub(crate) use ops_tables::series as ops_series;
mod pg;
mod query;
mod subscribe;
mod system_tables;
mod transaction;
mod upsert;

/// `name` as a quoted identifier, for SQL the server writes itself.
fn quoted_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
pub(crate) mod vars;

pub use db::Db;
pub use transaction::TxStatus;
use vars::VARIABLES;

/// What the server says it is (`server_version`).
pub const SERVER_VERSION: &str = "15.0 (Freshet)";

/// A query's batches as the engine produces them.
pub type BatchStream = futures::stream::BoxStream<'static, Result<RecordBatch>>;
/// The lines of a `COPY … TO STDOUT`.
pub type LineStream = futures::stream::BoxStream<'static, Result<String>>;

/// What a statement produced.
pub enum Output {
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A query's rows, produced as the client takes them.
    Stream {
        schema: SchemaRef,
        batches: BatchStream,
    },
    /// Rows a `FETCH` returns (tagged `FETCH n`).
    Fetched {
        schema: SchemaRef,
        batches: BatchStream,
    },
    Command {
        tag: String,
        rows: Option<usize>,
    },
    /// A transaction starts (or, after `ROLLBACK TO SAVEPOINT`, goes on); the tag.
    TxStart(String),
    /// A transaction ends; the tag (`COMMIT`, or `ROLLBACK`).
    TxEnd(String),
    Empty,
    /// `COPY … FROM STDIN` waits for its data: how many columns a line has.
    CopyIn {
        columns: usize,
    },
    /// `COPY … TO STDOUT`: the lines, produced as the client takes them.
    CopyOut {
        columns: usize,
        lines: LineStream,
    },
}

impl Output {
    /// The rows of a query's result, all of them (for callers inside the server).
    pub async fn into_batches(self) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
        use futures::TryStreamExt;
        match self {
            Output::Rows { schema, batches } => Ok(Some((schema, batches))),
            Output::Stream { schema, batches } | Output::Fetched { schema, batches } => {
                Ok(Some((schema, batches.try_collect().await?)))
            }
            _ => Ok(None),
        }
    }
}

fn command(tag: &str) -> Output {
    Output::Command {
        tag: tag.to_string(),
        rows: None,
    }
}

/// Per-connection state.
pub struct Session {
    db: Arc<Db>,
    vars: Mutex<BTreeMap<String, String>>,
    /// The user it authenticated as (see `auth`).
    user: Mutex<String>,
    /// Its entry among the server's sessions (process id, activity, cancel).
    backend: crate::backends::Registration,
    /// The transaction block it is in, if any.
    tx: Arc<Mutex<Option<transaction::Transaction>>>,
    /// The `COPY … FROM STDIN` taking data, if any.
    copy_in: Mutex<Option<copy::CopyIn>>,
    /// Its open cursors.
    cursors: Mutex<cursor::Cursors>,
    /// The SQL text being run (for `pg_stat_activity`).
    query_text: Mutex<String>,
    /// A `search_path` the startup packet asked for that Freshet does not follow (not
    /// `public`): every statement fails naming it until `SET search_path` replaces it, so
    /// that unqualified names never silently read `public`'s relations instead.
    refused_search_path: Mutex<Option<String>>,
    /// The notices the running statement left for the client (see `notices`).
    notices: Mutex<Vec<notices::Notice>>,
    /// The `TimeZone` last reported to the client (ParameterStatus).
    reported_zone: Mutex<String>,
    /// The settings as the startup packet left them: what `RESET` goes back to.
    startup_vars: Mutex<BTreeMap<String, String>>,
    /// `set_config(…)` calls the running statement made, applied when it ends.
    set_configs: Arc<Mutex<Vec<(String, String, bool)>>>,
}

impl Session {
    pub fn new(db: Arc<Db>) -> Session {
        let mut vars: BTreeMap<String, String> = VARIABLES
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert(
            "query_memory_limit".into(),
            crate::limits::show_bytes(db.limits.query_memory_bytes),
        );
        let backend = db.backends.register();
        let startup_vars = vars.clone();
        Session {
            db,
            vars: Mutex::new(vars),
            user: Mutex::new(freshet_planner::users::BOOTSTRAP_USER.to_string()),
            backend,
            tx: Arc::new(Mutex::new(None)),
            copy_in: Mutex::new(None),
            cursors: Mutex::new(Default::default()),
            query_text: Mutex::new(String::new()),
            refused_search_path: Mutex::new(None),
            notices: Mutex::new(Vec::new()),
            reported_zone: Mutex::new("UTC".into()),
            startup_vars: Mutex::new(startup_vars),
            set_configs: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Its entry among the server's sessions.
    pub fn backend(&self) -> &Arc<crate::backends::Backend> {
        &self.backend.backend
    }

    /// Sets the user the session runs as (once the connection has authenticated).
    pub fn set_user(&self, name: &str) {
        let mut u = self.user.lock().unwrap_or_else(|p| p.into_inner());
        if *u != name {
            *u = name.to_string();
        }
    }

    fn user_name(&self) -> String {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Executes one statement with the given parameter values (`$1`, `$2`, …). A panic
    /// while it runs becomes this statement's `XX000` error; the session and the server
    /// go on.
    ///
    /// A statement that only reads (a query, FETCH, COPY TO, EXPLAIN) stops with `57014`
    /// when canceled (CancelRequest, `pg_cancel_backend`), also while its rows are sent;
    /// one that writes runs to its end, so that what it reports is what happened.
    pub async fn execute(&self, stmt: &Stmt, params: &[ScalarValue]) -> Result<Output> {
        // Notices no client took (a session that never sends them) do not pile up.
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        vars::check_search_path(self, stmt)?;
        // `set_config` calls made while the last statement's rows were sent.
        self.apply_set_configs()?;
        let _inflight = self.db.inflight.read().await;
        let running = self.backend().begin(&self.query_text());
        let kind = statement_kind(stmt);
        let started = std::time::Instant::now();
        let mut res = self.execute_running(stmt, params, &running).await;
        // `set_config` calls the statement made (when it was planned).
        if res.is_ok() {
            if let Err(e) = self.apply_set_configs() {
                res = Err(e);
            }
        } else {
            self.set_configs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        let m = freshet_engine::metrics::metrics();
        m.query_seconds
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        m.queries
            .with_label_values(&[kind, if res.is_ok() { "ok" } else { "error" }])
            .inc();
        self.backend()
            .set_in_transaction(self.tx_status() != TxStatus::Idle);
        match res {
            Err(e) => {
                self.note_error();
                if matches!(e, ServerError::SubscriberTooSlow(_)) {
                    self.backend().end_after_statement();
                }
                Err(e)
            }
            // An error while the client reads the rows aborts the transaction too; a cancel
            // stops it.
            Ok(Output::Stream { schema, batches }) => Ok(Output::Stream {
                schema,
                batches: self.failing_transaction_on_error(cancelable(batches, running)),
            }),
            Ok(Output::Fetched { schema, batches }) => Ok(Output::Fetched {
                schema,
                batches: self.failing_transaction_on_error(cancelable(batches, running)),
            }),
            Ok(Output::CopyOut { columns, lines }) => Ok(Output::CopyOut {
                columns,
                lines: self.failing_transaction_on_error(cancelable(lines, running)),
            }),
            ok => ok,
        }
    }

    async fn execute_running(
        &self,
        stmt: &Stmt,
        params: &[ScalarValue],
        running: &crate::backends::Running,
    ) -> Result<Output> {
        use futures::FutureExt;
        self.check_not_aborted(stmt)?;
        let work = std::panic::AssertUnwindSafe(self.run(stmt, params)).catch_unwind();
        let res = if reads_only(stmt) {
            let res = tokio::select! {
                biased;
                _ = running.canceled() => return Err(self.cancel_error()),
                r = work => r,
            };
            // A statement that canceled itself (`pg_cancel_backend(pg_backend_pid())`).
            if running.is_canceled() {
                return Err(self.cancel_error());
            }
            res
        } else {
            work.await
        };
        res.unwrap_or_else(|panic| {
            let what = freshet_engine::panic_message(panic.as_ref());
            tracing::error!(panic = %what, "statement panicked");
            Err(ServerError::Internal(format!(
                "the statement failed with an internal error ({what}); the server goes on"
            )))
        })
    }

    /// The error a canceled statement ends with.
    fn cancel_error(&self) -> ServerError {
        cancel_error(self.backend())
    }

    /// The SQL text the client sent (for `pg_stat_activity`).
    pub fn set_query_text(&self, sql: &str) {
        let mut q = self.query_text.lock().unwrap_or_else(|p| p.into_inner());
        q.clear();
        q.push_str(sql);
    }

    fn query_text(&self) -> String {
        self.query_text
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn run(&self, stmt: &Stmt, params: &[ScalarValue]) -> Result<Output> {
        let stmt = self.with_plain_views(stmt)?;
        let stmt = stmt.as_ref();
        self.authorize(stmt)?;
        self.check_writable(stmt)?;
        if is_ddl(stmt) {
            self.check_ddl_allowed()?;
        }
        match stmt {
            Stmt::Empty => Ok(Output::Empty),
            Stmt::CreateIndex(ci) => self.create_index(ci).await,
            Stmt::Rename {
                what,
                name,
                new_name,
                if_exists,
            } => self.rename(what, name, new_name, *if_exists).await,
            Stmt::CreateUser(u) => self.create_user(u).await,
            Stmt::AlterUser(u) => self.alter_user(u).await,
            Stmt::DropUser { names, if_exists } => self.drop_users(names, *if_exists).await,
            Stmt::Flush => {
                // Over a large backlog this takes a while: SHOW JOBS shows how far it is.
                let job = self.db.jobs.start("flush", "*", None);
                let res = self.db.flush().await;
                let state = match &res {
                    Ok(()) => crate::jobs::State::Done,
                    Err(e) => crate::jobs::State::Failed(e.to_string()),
                };
                self.db.jobs.finish(job, state, None);
                res?;
                Ok(command("FLUSH"))
            }
            Stmt::AlterParallelism {
                kind,
                name,
                parallelism,
            } => self.alter_parallelism(*kind, name, *parallelism).await,
            Stmt::AlterViewAs { name, query } => self.alter_view_as(name, query).await,
            Stmt::CreateSource(cs) => self.create_source(cs).await,
            Stmt::CreateTableWithConnector(cs) => self.create_fed_table(cs).await,
            Stmt::CreateTableExt(cs) => self.create_ext_table(cs).await,
            Stmt::ShowSources => {
                let c = self.db.catalog();
                let mut names: Vec<String> = c.sources.iter().map(|s| s.name.clone()).collect();
                names.sort();
                names_output(names)
            }
            Stmt::ShowCreate { kind, name } => {
                let catalog = self.db.catalog();
                let name = relation_name(&catalog, name)?;
                let redact = !self.current_user().superuser;
                let sql = freshet_planner::show_create::create_sql(&catalog, *kind, &name, redact)?;
                let schema = show_create_schema();
                let batch = rows_to_batch(
                    schema.clone(),
                    &[vec![
                        ScalarValue::Utf8(Some(name)),
                        ScalarValue::Utf8(Some(sql)),
                    ]],
                )?;
                Ok(Output::Rows {
                    schema,
                    batches: vec![batch],
                })
            }
            Stmt::CreateSink(cs) => self.create_sink(cs).await,
            Stmt::ShowSinks => {
                let c = self.db.catalog();
                let mut names: Vec<String> = c.sinks().map(|s| s.name.clone()).collect();
                names.sort();
                names_output(names)
            }
            Stmt::DropSink { name, if_exists } => {
                self.drop_relations(
                    RelationKind::Sink,
                    *if_exists,
                    std::slice::from_ref(name),
                    false,
                )
                .await
            }
            Stmt::DropSource {
                name,
                if_exists,
                cascade,
            } => {
                self.drop_relations(
                    RelationKind::Source,
                    *if_exists,
                    std::slice::from_ref(name),
                    *cascade,
                )
                .await
            }
            Stmt::Sql(s) => self.execute_sql(s, params).await,
            Stmt::Move(fetch) => self.fetch(fetch, true).await,
            Stmt::Subscribe(sub) => {
                let (schema, batches) = self.subscribe(sub).await?;
                Ok(Output::Stream { schema, batches })
            }
            Stmt::CopySubscribe(c) => self.copy_subscribe(&c.0, &c.1).await,
            Stmt::DeclareSubscribe {
                name,
                hold,
                subscribe,
            } => self.declare_subscribe(name, *hold, subscribe).await,
        }
    }

    async fn execute_sql(&self, stmt: &Statement, params: &[ScalarValue]) -> Result<Output> {
        match stmt {
            Statement::Explain { statement, .. } => match statement.as_ref() {
                Statement::CreateView(cv) => self.explain_view(cv).await,
                _ => self.query(stmt, params).await,
            },
            Statement::Query(_) => self.query(stmt, params).await,
            Statement::Copy { .. } => self.copy(stmt).await,
            Statement::Declare { stmts } => self.declare(stmts).await,
            Statement::Fetch { .. } => self.fetch(stmt, false).await,
            Statement::Close { cursor } => self.close_cursor(cursor),
            Statement::Insert(insert) => self.insert(stmt, insert, params).await,
            Statement::Update(update) => self.update(update, params).await,
            Statement::Delete(delete) => self.delete(delete, params).await,
            Statement::CreateTable(ct) => self.create_table(ct).await,
            Statement::CreateView(cv) => self.create_view(cv).await,
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => self.create_schema(schema_name, *if_not_exists).await,
            Statement::Drop {
                object_type: ast::ObjectType::Schema,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop_schemas(names, *if_exists, *cascade).await,
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop(*object_type, *if_exists, names, *cascade).await,
            Statement::ShowSchemas { .. } => self.show_schemas(),
            Statement::ShowTables { show_options, .. } => {
                let c = self.db.catalog();
                let schema = schema::shown_schema(&c, show_options)?;
                names_output(schema::names_in(&schema, c.tables.iter().map(|t| &t.name)))
            }
            Statement::ShowViews {
                materialized,
                show_options,
                ..
            } => {
                let c = self.db.catalog();
                let schema = schema::shown_schema(&c, show_options)?;
                names_output(if *materialized {
                    schema::names_in(&schema, c.materialized_views().map(|v| &v.name))
                } else {
                    schema::names_in(&schema, c.plain_views.iter().map(|v| &v.name))
                })
            }
            Statement::Grant(_) | Statement::Revoke(_) => self.grant(stmt).await,
            Statement::Set(ast::Set::SetTransaction { modes, session, .. }) => {
                self.set_transaction(modes, *session)
            }
            Statement::Set(set) => self.set(set),
            Statement::Reset(r) => self.reset(r),
            Statement::ShowVariable { variable } => self.show(variable),
            Statement::StartTransaction { modes, .. } => self.begin(modes),
            Statement::Commit { .. } => self.commit().await,
            Statement::Rollback { savepoint, .. } => self.rollback(savepoint.as_ref()),
            Statement::Savepoint { name } => self.savepoint(name),
            Statement::ReleaseSavepoint { name } => self.release(name),
            // Prepared statements live in the protocol (Parse/Close); SQL PREPARE is not
            // supported, so there is nothing else to drop.
            Statement::Deallocate { name, .. } => {
                Ok(command(if name.value.eq_ignore_ascii_case("all") {
                    "DEALLOCATE ALL"
                } else {
                    "DEALLOCATE"
                }))
            }
            Statement::Discard { .. } => {
                self.reset_all();
                self.close_all_cursors();
                Ok(command("DISCARD ALL"))
            }
            other => Err(ServerError::Unsupported(format!(
                "statement not supported: {}",
                first_words(&other.to_string())
            ))),
        }
    }
}

fn names_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("Name", DataType::Utf8, false)]))
}

fn names_output(names: Vec<String>) -> Result<Output> {
    let schema = names_schema();
    let rows: Vec<Vec<ScalarValue>> = names
        .into_iter()
        .map(|n| vec![ScalarValue::Utf8(Some(n))])
        .collect();
    let batch = rows_to_batch(schema.clone(), &rows)?;
    Ok(Output::Rows {
        schema,
        batches: vec![batch],
    })
}

/// `SHOW CREATE`'s columns (RisingWave's names).
pub(super) fn show_create_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("Name", DataType::Utf8, false),
        Field::new("Create Sql", DataType::Utf8, false),
    ]))
}

/// Statements that change the catalog (not transactional: see `transaction`).
fn cancel_error(backend: &crate::backends::Backend) -> ServerError {
    if backend.is_terminated() {
        ServerError::Terminated
    } else {
        ServerError::QueryCanceled("canceling statement due to user request".into())
    }
}

/// `batches`, ending with `57014` once the statement is canceled. Holds the statement's
/// guard: until the last row is sent, a cancel finds it running.
fn cancelable<T: Send + 'static>(
    batches: futures::stream::BoxStream<'static, Result<T>>,
    running: crate::backends::Running,
) -> futures::stream::BoxStream<'static, Result<T>> {
    use futures::StreamExt;
    Box::pin(futures::stream::unfold(
        Some((batches, running)),
        |state| async move {
            let (mut batches, running) = state?;
            tokio::select! {
                biased;
                _ = running.canceled() => {
                    let e = cancel_error(running.backend());
                    Some((Err(e), None))
                }
                b = batches.next() => b.map(|b| (b, Some((batches, running)))),
            }
        },
    ))
}

/// Statements that only read: a cancel may stop them anywhere.
fn reads_only(stmt: &Stmt) -> bool {
    match stmt {
        // Not SUBSCRIBE: it may create a view, which must not be cut off half-made; its
        // rows stop on a cancel like any stream's.
        Stmt::Move(_) => true,
        Stmt::Sql(s) => match s.as_ref() {
            Statement::Query(_) | Statement::Fetch { .. } | Statement::Explain { .. } => true,
            Statement::Copy { to, .. } => *to,
            _ => false,
        },
        _ => false,
    }
}

fn is_ddl(stmt: &Stmt) -> bool {
    match stmt {
        Stmt::CreateUser(_)
        | Stmt::AlterUser(_)
        | Stmt::DropUser { .. }
        | Stmt::CreateSource(_)
        | Stmt::CreateTableWithConnector(_)
        | Stmt::CreateTableExt(_)
        | Stmt::CreateSink(_)
        | Stmt::DropSink { .. }
        | Stmt::AlterParallelism { .. }
        | Stmt::AlterViewAs { .. }
        | Stmt::CreateIndex(_)
        | Stmt::Rename { .. }
        | Stmt::DropSource { .. } => true,
        Stmt::Sql(s) => matches!(
            s.as_ref(),
            Statement::CreateTable(_)
                | Statement::CreateSchema { .. }
                | Statement::CreateView(_)
                | Statement::Drop { .. }
                | Statement::Grant(_)
                | Statement::Revoke(_)
        ),
        _ => false,
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// An identifier as Postgres folds it: unquoted names are lower-cased.
pub use freshet_planner::naming::ident_name;

/// A relation's name for DDL, DML and the statements that name one relation: `t` (in
/// `public`), `public.t`, or `s.t` for schema `s` made by `CREATE SCHEMA` (see
/// [`freshet_planner::schemas`]). A schema that does not exist is refused as Postgres
/// refuses it (`3F000`), a database-qualified name as Postgres refuses cross-database
/// references (`0A000`).
pub fn relation_name(catalog: &Catalog, n: &ObjectName) -> Result<String> {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| {
                p.as_ident()
                    .map(ident_name)
                    .unwrap_or_else(|| p.to_string())
            })
            .collect();
    if parts.iter().any(|p| p.contains('.')) {
        return Err(ServerError::Unsupported(format!(
            "a name containing \".\" ({n}): Freshet writes a relation in schema s as s.name"
        )));
    }
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        [schema, name] if catalog.schema(schema).is_some() => {
            Ok(freshet_planner::schemas::qualified(schema, name))
        }
        [schema, _] => Err(ServerError::UndefinedSchema(schema.clone())),
        _ => Err(ServerError::Unsupported(format!(
            "cross-database references are not implemented: {n}"
        ))),
    }
}

/// The last part of a (possibly schema-qualified) name.
pub fn object_name(n: &ObjectName) -> String {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default()
}

/// A statement's kind, as `freshet_queries_total` and `freshet_query_seconds` label it.
fn statement_kind(stmt: &Stmt) -> &'static str {
    use Statement as S;
    match stmt {
        Stmt::Sql(s) => match s.as_ref() {
            S::Query(_) | S::Explain { .. } | S::Fetch { .. } => "select",
            S::Insert(_) => "insert",
            S::Update { .. } => "update",
            S::Delete(_) => "delete",
            S::Copy { .. } => "copy",
            S::CreateTable(_)
            | S::CreateSchema { .. }
            | S::CreateView { .. }
            | S::Drop { .. }
            | S::AlterTable { .. }
            | S::CreateRole { .. }
            | S::AlterRole { .. }
            | S::Grant { .. }
            | S::Revoke { .. } => "ddl",
            _ => "other",
        },
        Stmt::Subscribe(_) | Stmt::CopySubscribe(_) | Stmt::DeclareSubscribe { .. } => "subscribe",
        Stmt::Move(_) => "select",
        Stmt::CreateSource(_)
        | Stmt::CreateTableWithConnector(_)
        | Stmt::CreateTableExt(_)
        | Stmt::CreateSink(_)
        | Stmt::DropSink { .. }
        | Stmt::DropSource { .. }
        | Stmt::AlterParallelism { .. }
        | Stmt::AlterViewAs { .. }
        | Stmt::CreateIndex(_)
        | Stmt::Rename { .. }
        | Stmt::CreateUser(_)
        | Stmt::AlterUser(_)
        | Stmt::DropUser { .. } => "ddl",
        _ => "other",
    }
}
