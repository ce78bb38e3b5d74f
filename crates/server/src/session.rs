//! Statement execution: one [`Session`] per connection over the shared [`Db`].
//!
//! - `SELECT` (and `EXPLAIN`) run in DataFusion over one consistent snapshot of the
//!   committed rows of the relations they name;
//! - `INSERT`/`UPDATE`/`DELETE` compute the rows to delete and insert (DataFusion again),
//!   then hand them to the engine's coordinator, which validates them, updates every
//!   dependent view and commits; a write that raced with another one is recomputed;
//! - DDL builds the new catalog and lets the coordinator apply it in one commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use freshet_engine::chunk::{column_types, rows_to_batch};
use freshet_engine::coordinator::{
    late_events_schema, source_errors_schema, stored_watermark, LATE_EVENTS, SOURCE_ERRORS,
};
use freshet_engine::coordinator::{
    sink_counts, Ddl, Engine, EngineConfig, Output as ViewOutput, TableDesc, TableWrite, ViewDesc,
};
use freshet_engine::plan::StreamNode;
use freshet_engine::EngineError;
use freshet_planner::catalog::{
    Catalog, ColumnDef, RelationKind, SinkDef, SqlType, TableDef, ViewDef,
};
use freshet_planner::context::{
    bind, new_session_with, referenced_tables, register, register_in_schema, reserve_loaded, Limits,
};
use freshet_planner::naming::{display_name, name_select_items};
use freshet_planner::parser::{self, Stmt};
use freshet_planner::sqlparser::ast::{
    self, AssignmentTarget, ColumnOption, FromTable, ObjectName, ObjectType, Statement,
    TableConstraint, TableFactor,
};
use freshet_planner::stream_planner::plan_view;
use freshet_planner::PlannerError;
use freshet_storage::{decode_relation, keys, prefix_end, RowLayout, Store};

use crate::readers::{Owner, Readers};
use crate::stored::{memory_budget, relation_batches, scan_within, StoredRelation};

use crate::error::{Result, ServerError};

mod access;

/// What the server says it is (`server_version`).
pub const SERVER_VERSION: &str = "15.0 (Freshet)";

/// The database shared by all sessions.
pub struct Db {
    store: Store,
    engine: Engine,
    catalog: RwLock<Arc<Catalog>>,
    /// Output schemas of views (derived by planning their queries).
    view_schemas: RwLock<BTreeMap<u64, SchemaRef>>,
    /// Serializes DDL (the catalog is read, changed and written back).
    ddl_lock: tokio::sync::Mutex<()>,
    /// Statements hold a read lock; shutdown takes the write lock to let them finish.
    pub inflight: tokio::sync::RwLock<()>,
    /// Source readers by the relation they feed, supervised.
    readers: Readers,
    /// The server's limits on a statement (a session may lower the memory limit).
    limits: Limits,
    /// Views that could not be planned at start-up, with the reason.
    failed: Mutex<BTreeMap<u64, String>>,
    /// Dead-letter retention per source, kept in step with the catalog.
    dead_letters: Arc<freshet_engine::dead_letters::Policies>,
    /// Where queries run (see [`crate::query_pool`]).
    queries: crate::query_pool::QueryPool,
}

impl crate::auth::Users for Db {
    fn user(&self, name: &str) -> Option<freshet_planner::users::UserDef> {
        self.catalog().user(name).cloned()
    }
}

fn table_desc(t: &TableDef) -> TableDesc {
    TableDesc {
        id: t.id,
        name: t.name.clone(),
        schema: t.schema(),
        pk: t.pk.clone(),
        not_null: t.columns.iter().map(|c| c.not_null).collect(),
        watermark: t.watermark.as_ref().and_then(|w| {
            let col = t.columns.iter().position(|c| c.name == w.column)?;
            Some((col, w.delay_micros))
        }),
    }
}

impl Db {
    /// Opens the data directory: reads the catalog, re-plans every view and starts the
    /// engine's coordinator.
    pub async fn open(data_dir: &Path, config: EngineConfig, limits: Limits) -> Result<Arc<Db>> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ServerError::Protocol(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let store = Store::open(&data_dir.join("db"))?;
        let catalog = match store.read_snapshot(|r| r.get(keys::CATALOG))? {
            Some(bytes) => Catalog::from_json(&bytes)?,
            None => Catalog::default(),
        };
        let ctx = new_session_with(&limits);
        for t in &catalog.tables {
            register(&ctx, &t.name, t.schema(), vec![])?;
            // Also as a lookup join's table (FOR SYSTEM_TIME AS OF PROCTIME()).
            let lookup = format!("{}{}", parser::LOOKUP_PREFIX, t.name);
            register(&ctx, &lookup, t.schema(), vec![])?;
        }
        for s in &catalog.sources {
            register(&ctx, &s.name, s.schema(), vec![])?;
        }
        // Views may audit the dead-letter tables.
        register_in_schema(
            &ctx,
            "freshet_catalog",
            "late_events",
            late_events_schema(),
            vec![],
        )?;
        register_in_schema(
            &ctx,
            "freshet_catalog",
            "source_errors",
            source_errors_schema(),
            vec![],
        )?;
        let mut views = Vec::new();
        let mut view_schemas = BTreeMap::new();
        let mut failed = BTreeMap::new();
        for v in &catalog.views {
            // A view this build cannot plan (a limit it breaks, a view it reads that
            // failed) must not keep the server from starting: it is marked failed, and
            // everything else runs.
            let (plan, schema) = match plan_stored_view(&ctx, &catalog, v).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(view = %v.name, error = %e, "cannot plan the view: it is marked failed; DROP it and create it again");
                    failed.insert(v.id, e.to_string());
                    continue;
                }
            };
            // A sink cannot be read: its name stays unknown to queries and views.
            if v.sink.is_none() {
                register(&ctx, &v.name, schema.clone(), vec![])?;
                let lookup = format!("{}{}", parser::LOOKUP_PREFIX, v.name);
                register(&ctx, &lookup, schema.clone(), vec![])?;
                view_schemas.insert(v.id, schema.clone());
            }
            views.push(ViewDesc {
                id: v.id,
                name: v.name.clone(),
                schema,
                plan,
                append_only: v.append_only,
                output: view_output(v),
            });
        }
        let tables = catalog.tables.iter().map(table_desc).collect();
        let sources = catalog.sources.iter().map(|s| (s.id, s.schema())).collect();
        let dead_letters = config.dead_letters.clone();
        let engine = Engine::start(store.clone(), tables, sources, views, config)?;
        let db = Arc::new(Db {
            store,
            engine,
            catalog: RwLock::new(Arc::new(catalog.clone())),
            view_schemas: RwLock::new(view_schemas),
            ddl_lock: tokio::sync::Mutex::new(()),
            inflight: tokio::sync::RwLock::new(()),
            readers: Readers::default(),
            limits,
            failed: Mutex::new(failed),
            dead_letters,
            // Twice the cores: a query DataFusion is still winding down after a cancel
            // (it stops at its next yield) leaves threads for the next ones, which the
            // OS then shares the cores with.
            queries: crate::query_pool::QueryPool::new(
                (2 * std::thread::available_parallelism().map_or(2, |n| n.get())).max(4),
            )
            .map_err(|e| ServerError::Internal(format!("cannot start the query threads: {e}")))?,
        });
        db.set_catalog(catalog.clone());
        for t in &catalog.tables {
            db.start_table_reader(t)?;
        }
        for v in &catalog.views {
            if db.failure(v.id).is_some() {
                continue;
            }
            db.start_readers(&catalog, v)?;
        }
        // Restarts failed readers; ends with the database.
        let weak = Arc::downgrade(&db);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let Some(db) = weak.upgrade() else { break };
                let _ = tokio::task::spawn_blocking(move || {
                    // A database closed after a failed write opens again once it can.
                    let _ = db.store.recover();
                    db.supervise(false)
                })
                .await;
            }
        });
        Ok(db)
    }

    /// Restarts the readers that failed (see [`Readers::supervise`]).
    fn supervise(&self, now: bool) {
        let epoch = self.engine.epoch();
        self.readers.supervise(now, epoch, |owner| {
            let catalog = self.catalog();
            match owner {
                Owner::View { view, source } => {
                    let (Some(v), Some(src)) =
                        (catalog.view_by_id(view), catalog.source_by_id(source))
                    else {
                        return Err("its view or source was dropped".into());
                    };
                    let columns = v
                        .source_columns
                        .iter()
                        .find(|(id, _)| *id == source)
                        .map(|(_, c)| c.as_slice());
                    crate::sources::start_reader(&self.engine, &self.store, view, src, columns)
                }
                Owner::Table(id) => {
                    let Some(t) = catalog.tables.iter().find(|t| t.id == id) else {
                        return Err("its table was dropped".into());
                    };
                    crate::sources::start_table_reader(&self.engine, &self.store, t)
                }
            }
            .map_err(|e| e.to_string())
        });
    }

    /// Why view `id` is not running, if it failed.
    fn failure(&self, id: u64) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// An error (`55000`) if `stmt` reads a view that failed at start-up.
    fn reject_failed(&self, catalog: &Catalog, stmt: &Statement) -> Result<()> {
        for name in referenced_tables(stmt) {
            if let Some(v) = catalog.view(&name) {
                if let Some(reason) = self.failure(v.id) {
                    return Err(ServerError::ViewFailed(format!(
                        "materialized view \"{name}\" is not running: it could not be \
                         planned when the server started ({reason}); drop it and create it again"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Starts a reader for every source `view` reads directly.
    fn start_readers(&self, catalog: &Catalog, view: &ViewDef) -> Result<()> {
        let epoch = self.engine.epoch();
        let mut handles = Vec::new();
        for dep in &view.depends_on {
            if let Some(src) = catalog.source_by_id(*dep) {
                let columns = view
                    .source_columns
                    .iter()
                    .find(|(id, _)| id == dep)
                    .map(|(_, c)| c.as_slice());
                let h =
                    crate::sources::start_reader(&self.engine, &self.store, view.id, src, columns)?;
                let owner = Owner::View {
                    view: view.id,
                    source: src.id,
                };
                handles.push((owner, h));
            }
        }
        if !handles.is_empty() {
            self.readers.insert(view.id, epoch, handles);
        }
        Ok(())
    }

    /// Starts the reader of the topic that feeds `table`, if any.
    fn start_table_reader(&self, table: &TableDef) -> Result<()> {
        if table.feed.is_some() {
            let epoch = self.engine.epoch();
            let h = crate::sources::start_table_reader(&self.engine, &self.store, table)?;
            self.readers
                .insert(table.id, epoch, vec![(Owner::Table(table.id), h)]);
        }
        Ok(())
    }

    /// Stops the readers feeding `view` (blocking until their threads end).
    fn stop_readers(&self, view: u64) {
        drop(self.readers.remove(view));
    }

    /// Waits until every source reader has handed over what its topic holds now, then
    /// until all of it is committed.
    pub async fn flush(self: &Arc<Self>) -> Result<()> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            // A reader that just failed (say, after a failed commit) starts again now.
            db.supervise(true);
            db.readers
                .catch_up(std::time::Duration::from_secs(600))
                .map_err(|message| ServerError::Connector {
                    code: "58000",
                    message,
                })
        })
        .await
        .map_err(|e| ServerError::Protocol(format!("flush task failed: {e}")))??;
        Ok(self.engine.flush().await?)
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_catalog(&self, c: Catalog) {
        let retention = c
            .sources
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.dead_letters?)))
            .chain(
                c.tables
                    .iter()
                    .filter_map(|t| Some((t.name.clone(), t.feed.as_ref()?.dead_letters?))),
            )
            .collect();
        self.dead_letters.replace(retention);
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
    }

    /// Stops the source readers, commits everything and stops the engine.
    pub async fn shutdown(&self) -> Result<()> {
        let readers = self.readers.take_all();
        tokio::task::spawn_blocking(move || drop(readers))
            .await
            .map_err(|e| ServerError::Protocol(format!("stopping readers failed: {e}")))?;
        self.engine.shutdown().await?;
        self.store.quiesce();
        Ok(())
    }

    fn relation_schema(
        &self,
        catalog: &Catalog,
        name: &str,
    ) -> Option<(u64, SchemaRef, RowLayout)> {
        // A lookup join's table (`FOR SYSTEM_TIME AS OF PROCTIME()`) reads as the table.
        let name = parser::lookup_target(name).unwrap_or(name);
        if let Some(t) = catalog.table(name) {
            let layout = if t.pk.is_empty() {
                RowLayout::Multiset
            } else {
                RowLayout::Keyed
            };
            return Some((t.id, t.schema(), layout));
        }
        if let Some(s) = catalog.source(name) {
            return Some((s.id, s.schema(), RowLayout::Multiset));
        }
        let v = catalog.view(name)?;
        let schemas = self.view_schemas.read().unwrap_or_else(|p| p.into_inner());
        schemas
            .get(&v.id)
            .map(|s| (v.id, s.clone(), RowLayout::Multiset))
    }

    fn is_source(&self, catalog: &Catalog, name: &str) -> bool {
        catalog.table(name).is_none() && catalog.source(name).is_some()
    }

    /// A DataFusion session where the relations `stmt` names are registered, with their
    /// committed rows (`with_data`) or empty (planning only). All rows come from one
    /// snapshot.
    fn context_for(
        &self,
        limits: &Limits,
        catalog: &Catalog,
        stmt: &Statement,
        with_data: bool,
        deadline: Option<std::time::Instant>,
    ) -> Result<SessionContext> {
        let ctx = new_session_with(limits);
        let names = referenced_tables(stmt);
        let mut rels: Vec<(String, u64, SchemaRef, RowLayout)> = names
            .iter()
            .filter_map(|n| {
                self.relation_schema(catalog, n)
                    .map(|(id, s, l)| (n.clone(), id, s, l))
            })
            .collect();
        if names.iter().any(|n| n == SOURCE_ERRORS_NAME) {
            rels.push((
                SOURCE_ERRORS_NAME.to_string(),
                SOURCE_ERRORS,
                source_errors_schema(),
                RowLayout::Multiset,
            ));
        }
        if names.iter().any(|n| n == LATE_EVENTS_NAME) {
            rels.push((
                LATE_EVENTS_NAME.to_string(),
                LATE_EVENTS,
                late_events_schema(),
                RowLayout::Multiset,
            ));
        }
        for (name, computed) in [
            (WATERMARKS_NAME, watermarks_rows as ComputedRelation),
            (VIEW_STATE_NAME, view_state_rows as ComputedRelation),
            (SINKS_NAME, sinks_rows as ComputedRelation),
            (SOURCE_STATUS_NAME, source_status_rows as ComputedRelation),
        ] {
            if names.iter().any(|n| n == name) {
                let (schema, rows) = if with_data {
                    computed(self, catalog)?
                } else {
                    (computed(self, &Catalog::default())?.0, Vec::new())
                };
                let (schema_name, table) = name.split_once('.').unwrap_or(("", name));
                let batches = if rows.is_empty() {
                    vec![]
                } else {
                    vec![rows_to_batch(schema.clone(), &rows)?]
                };
                register_in_schema(&ctx, schema_name, table, schema, batches)?;
            }
        }
        // A query that reads one stored relation once reads only the key range its
        // filters allow (point lookups and small ranges on views); it has no other
        // relation, or other read of this one, to be consistent with. (Each scan of a
        // `StoredRelation` reads its own snapshot.)
        if let [(name, id, schema, layout)] = rels.as_slice() {
            if with_data
                && !name.contains('.')
                && !self.is_source(catalog, name)
                && reads_each_relation_once(stmt)
            {
                let pk = catalog
                    .table(parser::lookup_target(name).unwrap_or(name))
                    .map(|t| t.pk.clone())
                    .unwrap_or_default();
                let table =
                    StoredRelation::new(self.store.clone(), *id, schema.clone(), *layout, &pk)
                        .with_deadline(deadline);
                ctx.register_table(name.as_str(), Arc::new(table))?;
                return Ok(ctx);
            }
        }
        let data = if with_data {
            let budget = memory_budget(ctx.runtime_env().memory_pool.memory_limit());
            crate::stored::blocking(|| {
                self.store.read_snapshot(|r| {
                    rels.iter()
                        .map(|(_, id, schema, layout)| {
                            let prefix = keys::rows_prefix(*id);
                            let end = prefix_end(&prefix);
                            let pairs = scan_within(r, &prefix, end.as_deref(), budget, deadline)?;
                            let rows = decode_relation(
                                pairs,
                                prefix.len(),
                                &column_types(schema),
                                *layout,
                            )?;
                            crate::stored::check_deadline(deadline)?;
                            Ok(rows)
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })?
        } else {
            vec![Vec::new(); rels.len()]
        };
        for ((name, _, schema, _), rows) in rels.into_iter().zip(data) {
            let batches = relation_batches(&schema, rows)?;
            let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
            let state = ctx.state();
            reserve_loaded(state.config(), state.runtime_env(), bytes)?;
            match name.split_once('.') {
                Some((schema_name, table)) => {
                    register_in_schema(&ctx, schema_name, table, schema, batches)?
                }
                None => register(&ctx, &name, schema, batches)?,
            }
        }
        Ok(ctx)
    }
}

/// The dead-letter table's SQL name.
const SOURCE_ERRORS_NAME: &str = "freshet_catalog.source_errors";
/// Events that arrived below their source's watermark.
const LATE_EVENTS_NAME: &str = "freshet_catalog.late_events";
/// Each view's watermark of each source it reads.
const WATERMARKS_NAME: &str = "freshet_catalog.watermarks";
/// Each view's state size.
const VIEW_STATE_NAME: &str = "freshet_catalog.view_state";
/// Each sink's connector and the rows it sent.
const SINKS_NAME: &str = "freshet_catalog.sinks";
/// Each source reader's state, and the views that failed at start-up.
const SOURCE_STATUS_NAME: &str = "freshet_catalog.source_status";

/// An error if `stmt` reads a sink (which keeps no rows).
fn reject_sinks(catalog: &Catalog, stmt: &Statement) -> Result<()> {
    match referenced_tables(stmt)
        .iter()
        .find(|n| catalog.sink(n).is_some())
    {
        Some(sink)
            if matches!(
                stmt,
                Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
            ) =>
        {
            Err(ServerError::WrongObjectType(format!(
                "cannot change sink \"{sink}\""
            )))
        }
        Some(sink) => Err(ServerError::WrongObjectType(format!(
            "cannot read sink \"{sink}\": a sink sends its rows to its connector and keeps \
             none; read the relation it reads, or its counts in freshet_catalog.sinks"
        ))),
        None => Ok(()),
    }
}

/// The schema of a catalog relation: these columns, all nullable.
fn nullable_schema(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, ty)| Field::new(*name, ty.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Where a stored view's rows go.
fn view_output(v: &ViewDef) -> ViewOutput {
    match &v.sink {
        None => ViewOutput::Table,
        Some(s) => ViewOutput::Blackhole {
            deletes: !s.drop_deletes,
        },
    }
}

/// `freshet_catalog.sinks`: (sink_name, connector, rows_inserted, rows_deleted): the rows
/// each sink sent, with their multiplicity, as committed (with the offsets they came
/// from, so a crash neither loses nor repeats a count).
fn sinks_rows(db: &Db, catalog: &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let store = &db.store;
    let schema = nullable_schema(&[
        ("sink_name", DataType::Utf8),
        ("connector", DataType::Utf8),
        ("rows_inserted", DataType::Int64),
        ("rows_deleted", DataType::Int64),
    ]);
    let mut rows = Vec::new();
    store.read_snapshot(|r| -> Result<()> {
        for v in catalog.sinks() {
            let connector = v.sink.as_ref().map(|s| s.connector.clone());
            let (ins, del) = sink_counts(v.id, |k| Ok(r.get(k)?))?;
            rows.push(vec![
                ScalarValue::Utf8(Some(v.name.clone())),
                ScalarValue::Utf8(connector),
                ScalarValue::Int64(Some(ins)),
                ScalarValue::Int64(Some(del)),
            ]);
        }
        Ok(())
    })?;
    Ok((schema, rows))
}

/// `freshet_catalog.source_status`: (relation_name, source_name, state, restarts,
/// last_error, since) per reader, `state` being `running` or `restarting`; and a row with
/// state `failed` for each view that could not be planned at start-up.
fn source_status_rows(db: &Db, catalog: &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let schema = nullable_schema(&[
        ("relation_name", DataType::Utf8),
        ("source_name", DataType::Utf8),
        ("state", DataType::Utf8),
        ("restarts", DataType::Int64),
        ("last_error", DataType::Utf8),
        ("since", freshet_storage::codec::timestamptz()),
    ]);
    let text = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
    let time = |t: Option<std::time::SystemTime>| {
        ScalarValue::TimestampMicrosecond(
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as i64),
            Some("+00:00".into()),
        )
    };
    let mut rows = Vec::new();
    if catalog.views.is_empty() && catalog.tables.is_empty() {
        return Ok((schema, rows));
    }
    for st in db.readers.status() {
        let (relation, source) = match st.owner {
            Owner::View { view, source } => (
                catalog.view_by_id(view).map(|v| v.name.clone()),
                catalog.source_by_id(source).map(|s| s.name.clone()),
            ),
            Owner::Table(id) => {
                let name = catalog
                    .tables
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| t.name.clone());
                (name.clone(), name)
            }
        };
        rows.push(vec![
            ScalarValue::Utf8(relation),
            ScalarValue::Utf8(source),
            text(st.state),
            ScalarValue::Int64(Some(i64::from(st.restarts))),
            ScalarValue::Utf8(st.last_error),
            time(st.since),
        ]);
    }
    let failed = db.failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (id, reason) in failed {
        if let Some(v) = catalog.view_by_id(id) {
            rows.push(vec![
                text(&v.name),
                ScalarValue::Utf8(None),
                text("failed"),
                ScalarValue::Int64(Some(0)),
                text(&reason),
                ScalarValue::TimestampMicrosecond(None, Some("+00:00".into())),
            ]);
        }
    }
    Ok((schema, rows))
}

type ComputedRelation = fn(&Db, &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)>;

/// `freshet_catalog.watermarks`: (view_name, source_name, watermark), as committed. A
/// source's watermark is tracked per view (each view has its own reader); a table's is
/// the table's own, shared by every view over it, and listed with a NULL view_name.
fn watermarks_rows(db: &Db, catalog: &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let store = &db.store;
    let schema = nullable_schema(&[
        ("view_name", DataType::Utf8),
        ("source_name", DataType::Utf8),
        ("watermark", freshet_storage::codec::timestamptz()),
    ]);
    let mut rows = Vec::new();
    for v in &catalog.views {
        for dep in &v.depends_on {
            let Some(src) = catalog.source_by_id(*dep) else {
                continue;
            };
            if src.watermark.is_none() {
                continue;
            }
            let (_, wm) = stored_watermark(store, v.id, src.id)?;
            rows.push(vec![
                ScalarValue::Utf8(Some(v.name.clone())),
                ScalarValue::Utf8(Some(src.name.clone())),
                ScalarValue::TimestampMicrosecond(wm, Some("+00:00".into())),
            ]);
        }
    }
    for t in catalog.tables.iter().filter(|t| t.watermark.is_some()) {
        let (_, wm) = stored_watermark(store, t.id, t.id)?;
        rows.push(vec![
            ScalarValue::Utf8(None),
            ScalarValue::Utf8(Some(t.name.clone())),
            ScalarValue::TimestampMicrosecond(wm, Some("+00:00".into())),
        ]);
    }
    Ok((schema, rows))
}

/// `freshet_catalog.view_state`: (view_name, view_rows, state_rows, state_bytes): the
/// view's rows (multiplicities summed: an insert-only view stores each inserted row as
/// its own entry) and its operators' state entries and bytes (keys and values).
fn view_state_rows(db: &Db, catalog: &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let store = &db.store;
    let schema = nullable_schema(&[
        ("view_name", DataType::Utf8),
        ("view_rows", DataType::Int64),
        ("state_rows", DataType::Int64),
        ("state_bytes", DataType::Int64),
    ]);
    let mut rows = Vec::new();
    store.read_snapshot(|r| -> Result<()> {
        for v in &catalog.views {
            // Counted as they are read: a view of millions of rows is never held whole.
            let (mut view_rows, mut bad) = (0i64, false);
            r.visit_prefix(&freshet_storage::keys::rows_prefix(v.id), &mut |_, n| {
                match <[u8; 8]>::try_from(n) {
                    Ok(n) => view_rows += i64::from_be_bytes(n),
                    Err(_) => bad = true,
                }
                !bad
            })?;
            if bad {
                return Err(EngineError::Internal(format!(
                    "bad stored multiplicity in view {}",
                    v.name
                ))
                .into());
            }
            let (mut state_rows, mut bytes) = (0i64, 0i64);
            r.visit_prefix(
                &freshet_storage::keys::view_state_prefix(v.id),
                &mut |k, v| {
                    state_rows += 1;
                    bytes += (k.len() + v.len()) as i64;
                    true
                },
            )?;
            rows.push(vec![
                ScalarValue::Utf8(Some(v.name.clone())),
                ScalarValue::Int64(Some(view_rows)),
                ScalarValue::Int64(Some(state_rows)),
                ScalarValue::Int64(Some(bytes)),
            ]);
        }
        Ok(())
    })?;
    Ok((schema, rows))
}

/// Plans a stored view's query (at startup).
async fn plan_stored_view(
    ctx: &SessionContext,
    catalog: &Catalog,
    v: &ViewDef,
) -> Result<(StreamNode, SchemaRef)> {
    let stmts = parser::parse(&v.sql)?;
    let Some(Stmt::Sql(stmt)) = stmts.into_iter().next() else {
        return Err(
            PlannerError::Internal(format!("stored query of view {} is empty", v.name)).into(),
        );
    };
    let plan = bind(ctx, &stmt).await?;
    let planned = plan_view(ctx, catalog, &plan, v.emit_on_window_close)?;
    Ok((planned.plan, planned.schema))
}

/// What a statement produced.
pub enum Output {
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    Command {
        tag: String,
        rows: Option<usize>,
    },
    Begin,
    Commit,
    Rollback,
    Empty,
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
}

/// Session variables Freshet knows, with their defaults. Others that drivers commonly set
/// are accepted and echoed back by `SHOW`.
const VARIABLES: &[(&str, &str)] = &[
    ("implicit_flush", "true"),
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("extra_float_digits", "1"),
    ("intervalstyle", "postgres"),
    ("search_path", "public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("standard_conforming_strings", "on"),
    ("timezone", "UTC"),
    ("transaction_isolation", "serializable"),
    ("statement_timeout", "0"),
];

/// Maximum number of times a write is recomputed after a concurrent change.
const WRITE_RETRIES: usize = 20;

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
        Session {
            db,
            vars: Mutex::new(vars),
            user: Mutex::new(freshet_planner::users::BOOTSTRAP_USER.to_string()),
        }
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

    fn var(&self, name: &str) -> Option<String> {
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The server's limits, with this session's `query_memory_limit` if it set one.
    fn limits(&self) -> Limits {
        let mut l = self.db.limits.clone();
        if let Some(bytes) = self
            .var("query_memory_limit")
            .and_then(|v| crate::limits::parse_bytes(&v))
        {
            l.query_memory_bytes = l.query_memory_bytes.min(bytes);
        }
        l
    }

    /// When the statement starting now must end by (`statement_timeout`), if ever.
    fn deadline(&self) -> Option<std::time::Instant> {
        let ms = self
            .var("statement_timeout")
            .and_then(|v| crate::limits::parse_millis(&v))
            .unwrap_or(0);
        (ms > 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(ms))
    }

    fn implicit_flush(&self) -> bool {
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get("implicit_flush")
            .is_none_or(|v| v == "true")
    }

    /// Executes one statement with the given parameter values (`$1`, `$2`, …). A panic
    /// while it runs becomes this statement's `XX000` error; the session and the server
    /// go on.
    pub async fn execute(&self, stmt: &Stmt, params: &[ScalarValue]) -> Result<Output> {
        use futures::FutureExt;
        let _running = self.db.inflight.read().await;
        match std::panic::AssertUnwindSafe(self.run(stmt, params))
            .catch_unwind()
            .await
        {
            Ok(res) => res,
            Err(panic) => {
                let what = freshet_engine::panic_message(panic.as_ref());
                tracing::error!(panic = %what, "statement panicked");
                Err(ServerError::Internal(format!(
                    "the statement failed with an internal error ({what}); the server goes on"
                )))
            }
        }
    }

    async fn run(&self, stmt: &Stmt, params: &[ScalarValue]) -> Result<Output> {
        self.authorize(stmt)?;
        match stmt {
            Stmt::Empty => Ok(Output::Empty),
            Stmt::CreateUser(u) => self.create_user(u).await,
            Stmt::AlterUser(u) => self.alter_user(u).await,
            Stmt::DropUser { names, if_exists } => self.drop_users(names, *if_exists).await,
            Stmt::Flush => {
                self.db.flush().await?;
                Ok(command("FLUSH"))
            }
            Stmt::CreateSource(cs) => self.create_source(cs).await,
            Stmt::CreateTableWithConnector(cs) => self.create_fed_table(cs).await,
            Stmt::CreateTableExt(cs) => self.create_ext_table(cs).await,
            Stmt::ShowSources => {
                let c = self.db.catalog();
                let mut names: Vec<String> = c.sources.iter().map(|s| s.name.clone()).collect();
                names.sort();
                names_output(names)
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
        }
    }

    async fn execute_sql(&self, stmt: &Statement, params: &[ScalarValue]) -> Result<Output> {
        match stmt {
            Statement::Explain { statement, .. } => match statement.as_ref() {
                Statement::CreateView(cv) => self.explain_view(cv).await,
                _ => self.query(stmt, params).await,
            },
            Statement::Query(_) => self.query(stmt, params).await,
            Statement::Insert(insert) => self.insert(stmt, insert, params).await,
            Statement::Update(update) => self.update(update, params).await,
            Statement::Delete(delete) => self.delete(delete, params).await,
            Statement::CreateTable(ct) => self.create_table(ct).await,
            Statement::CreateView(cv) => self.create_view(cv).await,
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop(*object_type, *if_exists, names, *cascade).await,
            Statement::ShowTables { .. } => {
                let c = self.db.catalog();
                let mut names: Vec<String> = c.tables.iter().map(|t| t.name.clone()).collect();
                names.sort();
                names_output(names)
            }
            Statement::ShowViews { materialized, .. } => {
                if !materialized {
                    return Err(ServerError::Unsupported(
                        "Freshet has only materialized views: use SHOW MATERIALIZED VIEWS".into(),
                    ));
                }
                let c = self.db.catalog();
                let mut names: Vec<String> =
                    c.materialized_views().map(|v| v.name.clone()).collect();
                names.sort();
                names_output(names)
            }
            Statement::Grant(_) | Statement::Revoke(_) => self.grant(stmt).await,
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(variable),
            Statement::StartTransaction { .. } => Ok(Output::Begin),
            Statement::Commit { .. } => Ok(Output::Commit),
            Statement::Rollback { .. } => Ok(Output::Rollback),
            other => Err(ServerError::Unsupported(format!(
                "statement not supported: {}",
                first_words(&other.to_string())
            ))),
        }
    }

    /// Parameter types and result schema of a statement, without running it.
    pub async fn describe(
        &self,
        stmt: &Stmt,
    ) -> Result<(Vec<Option<DataType>>, Option<SchemaRef>)> {
        let s = match stmt {
            Stmt::Sql(s) => s,
            Stmt::ShowSources | Stmt::ShowSinks => return Ok((vec![], Some(names_schema()))),
            _ => return Ok((vec![], None)),
        };
        match s.as_ref() {
            Statement::Explain { statement, .. }
                if matches!(statement.as_ref(), Statement::CreateView(_)) =>
            {
                Ok((vec![], Some(query_plan_schema())))
            }
            Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_) => {
                let s = with_pg_names(s);
                let catalog = self.db.catalog();
                reject_sinks(&catalog, &s)?;
                let ctx = self
                    .db
                    .context_for(&self.limits(), &catalog, &s, false, None)?;
                let plan = match &s {
                    // See `insert`: INSERT … SELECT is planned as its query.
                    Statement::Insert(ast::Insert {
                        source: Some(src), ..
                    }) if !matches!(src.body.as_ref(), ast::SetExpr::Values(_)) => {
                        bind(&ctx, &Statement::Query(src.clone())).await?
                    }
                    _ => bind(&ctx, &s).await?,
                };
                let types = param_types(&plan)?;
                let schema = match s {
                    Statement::Query(_) | Statement::Explain { .. } => {
                        Some(result_schema(&ctx, &plan)?)
                    }
                    _ => None,
                };
                Ok((types, schema))
            }
            Statement::ShowTables { .. } | Statement::ShowViews { .. } => {
                Ok((vec![], Some(names_schema())))
            }
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                Ok((
                    vec![],
                    Some(Arc::new(Schema::new(vec![Field::new(
                        name,
                        DataType::Utf8,
                        true,
                    )]))),
                ))
            }
            _ => Ok((vec![], None)),
        }
    }

    async fn query(&self, stmt: &Statement, params: &[ScalarValue]) -> Result<Output> {
        let catalog = self.db.catalog();
        if let Some(out) = self.point_lookup(&catalog, stmt, params)? {
            return Ok(out);
        }
        let stmt = with_pg_names(stmt);
        if let Some(src) = referenced_tables(&stmt)
            .iter()
            .find(|n| catalog.source(n).is_some())
        {
            return Err(ServerError::Unsupported(format!(
                "cannot query source \"{src}\" directly: a source is a stream, not stored; \
                 create a materialized view over it"
            )));
        }
        reject_sinks(&catalog, &stmt)?;
        self.db.reject_failed(&catalog, &stmt)?;
        let deadline = self.deadline();
        let ctx = self
            .db
            .context_for(&self.limits(), &catalog, &stmt, true, deadline)?;
        let plan = with_params(bind(&ctx, &stmt).await?, params)?;
        let schema = result_schema(&ctx, &plan)?;
        let batches = self
            .db
            .queries
            .run(deadline, async move {
                Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
            })
            .await?;
        // Safety net: send the type the client was told.
        let batches = batches
            .iter()
            .map(|b| {
                let same = b
                    .schema()
                    .fields()
                    .iter()
                    .zip(schema.fields())
                    .all(|(a, f)| a.data_type() == f.data_type());
                if same {
                    Ok(b.clone())
                } else {
                    cast_batch(b, &schema)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Output::Rows { schema, batches })
    }

    /// Answers a plain point query on a stored table or view without DataFusion (see
    /// `lookup.rs`); `None` when the query needs the general path.
    fn point_lookup(
        &self,
        catalog: &Catalog,
        stmt: &Statement,
        params: &[ScalarValue],
    ) -> Result<Option<Output>> {
        let Some(q) = crate::lookup::point_query(stmt) else {
            return Ok(None);
        };
        if parser::lookup_target(&q.table).is_some() || self.db.is_source(catalog, &q.table) {
            return Ok(None);
        }
        let Some((id, schema, layout)) = self.db.relation_schema(catalog, &q.table) else {
            return Ok(None);
        };
        let pk = catalog
            .table(&q.table)
            .map(|t| t.pk.clone())
            .unwrap_or_default();
        q.run(&self.db.store, id, &schema, layout, &pk, params)
    }

    /// Runs a SELECT built from SQL text (with the statement's parameters) over a fresh
    /// snapshot.
    async fn select(&self, sql: &str, params: &[ScalarValue]) -> Result<Vec<RecordBatch>> {
        let stmts = parser::parse(sql)?;
        let Some(Stmt::Sql(stmt)) = stmts.into_iter().next() else {
            return Err(PlannerError::Internal("empty generated query".into()).into());
        };
        let catalog = self.db.catalog();
        let deadline = self.deadline();
        let ctx = self
            .db
            .context_for(&self.limits(), &catalog, &stmt, true, deadline)?;
        let plan = with_params(bind(&ctx, &stmt).await?, params)?;
        self.db
            .queries
            .run(deadline, async move {
                Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
            })
            .await
    }

    fn writable_table(&self, name: &ObjectName) -> Result<TableDef> {
        let name = object_name(name);
        let catalog = self.db.catalog();
        match catalog.kind_of(&name) {
            Some((RelationKind::Table, _)) => Ok(catalog
                .table(&name)
                .cloned()
                .ok_or_else(|| PlannerError::UndefinedTable(name.clone()))?),
            Some((RelationKind::View, _)) => Err(ServerError::WrongObjectType(format!(
                "cannot change materialized view \"{name}\""
            ))),
            Some((RelationKind::Source, _)) => Err(ServerError::WrongObjectType(format!(
                "cannot change source \"{name}\": it is read from Kafka"
            ))),
            Some((RelationKind::Sink, _)) => Err(ServerError::WrongObjectType(format!(
                "cannot change sink \"{name}\""
            ))),
            None => Err(PlannerError::UndefinedTable(name).into()),
        }
    }

    /// A table UPDATE and DELETE may change: not an append-only one.
    fn mutable_table(&self, name: &ObjectName) -> Result<TableDef> {
        let table = self.writable_table(name)?;
        if table.append_only {
            return Err(ServerError::Unsupported(format!(
                "table \"{}\" is append-only: UPDATE and DELETE are not allowed",
                table.name
            )));
        }
        Ok(table)
    }

    /// Sends a write to the engine; returns how many inserted rows were late (below the
    /// table's watermark) and went to `freshet_catalog.late_events` instead.
    async fn write(
        &self,
        table: &TableDef,
        deletes: Vec<RecordBatch>,
        inserts: Vec<RecordBatch>,
    ) -> Result<u64> {
        let write = TableWrite {
            table: table.id,
            deletes,
            inserts,
        };
        Ok(self.db.engine.write(write, self.implicit_flush()).await?)
    }

    async fn insert(
        &self,
        stmt: &Statement,
        insert: &ast::Insert,
        params: &[ScalarValue],
    ) -> Result<Output> {
        if insert.on.is_some() || insert.returning.is_some() {
            return Err(ServerError::Unsupported(
                "INSERT … ON CONFLICT / RETURNING is not supported yet".into(),
            ));
        }
        let ast::TableObject::TableName(name) = &insert.table else {
            return Err(ServerError::Unsupported(
                "INSERT INTO a table function".into(),
            ));
        };
        let table = self.writable_table(name)?;
        let reads_tables = referenced_tables(stmt).len() > 1
            || insert
                .source
                .as_ref()
                .is_some_and(|q| referenced_in_query(q, &table.name));
        if reads_tables {
            // INSERT … SELECT reads the tables as of everything written so far.
            self.db.engine.flush().await?;
        }
        let catalog = self.db.catalog();
        let ctx = self.db.context_for(
            &self.limits(),
            &catalog,
            stmt,
            reads_tables,
            self.deadline(),
        )?;
        let schema = table.schema();
        let batches = match &insert.source {
            // INSERT … VALUES: DataFusion types the values (and `$n`) by the target columns.
            Some(src) if matches!(src.body.as_ref(), ast::SetExpr::Values(_)) => {
                let plan = bind(&ctx, stmt).await?;
                let LogicalPlan::Dml(dml) = plan else {
                    return Err(PlannerError::Internal("INSERT did not plan as DML".into()).into());
                };
                let input = with_params(dml.input.as_ref().clone(), params)?;
                let batches = ctx.execute_logical_plan(input).await?.collect().await?;
                batches
                    .iter()
                    .map(|b| cast_batch(b, &schema))
                    .collect::<Result<Vec<_>>>()?
            }
            // INSERT … SELECT: run the query, then place its columns.
            Some(src) => {
                let query = Statement::Query(src.clone());
                let plan = with_params(bind(&ctx, &query).await?, params)?;
                let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
                let targets: Vec<usize> = if insert.columns.is_empty() {
                    (0..schema.fields().len()).collect()
                } else {
                    insert
                        .columns
                        .iter()
                        .map(|c| {
                            let c = object_name(c);
                            table
                                .columns
                                .iter()
                                .position(|x| x.name == c)
                                .ok_or(PlannerError::UndefinedColumn(c))
                        })
                        .collect::<Result<_, _>>()?
                };
                batches
                    .iter()
                    .map(|b| place_columns(b, &targets, &schema))
                    .collect::<Result<Vec<_>>>()?
            }
            None => {
                return Err(ServerError::Unsupported(
                    "INSERT … DEFAULT VALUES is not supported yet".into(),
                ))
            }
        };
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        let late = self.write(&table, vec![], batches).await?;
        Ok(Output::Command {
            tag: "INSERT 0".into(),
            rows: Some(n.saturating_sub(late as usize)),
        })
    }

    async fn update(&self, update: &ast::Update, params: &[ScalarValue]) -> Result<Output> {
        if update.from.is_some() || update.returning.is_some() || !update.table.joins.is_empty() {
            return Err(ServerError::Unsupported(
                "UPDATE … FROM / RETURNING is not supported yet".into(),
            ));
        }
        let TableFactor::Table { name, .. } = &update.table.relation else {
            return Err(ServerError::Unsupported(
                "UPDATE of something other than a table".into(),
            ));
        };
        let table = self.mutable_table(name)?;
        let schema = table.schema();
        let mut assigned: Vec<(usize, String)> = Vec::new();
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(col) = &a.target else {
                return Err(ServerError::Unsupported("UPDATE of a column tuple".into()));
            };
            let col = object_name(col);
            let idx = table
                .columns
                .iter()
                .position(|c| c.name == col)
                .ok_or_else(|| PlannerError::UndefinedColumn(col.clone()))?;
            if assigned.iter().any(|(i, _)| *i == idx) {
                return Err(ServerError::Unsupported(format!(
                    "multiple assignments to same column \"{col}\""
                )));
            }
            assigned.push((idx, a.value.to_string()));
        }
        let new_exprs: Vec<String> = assigned
            .iter()
            .enumerate()
            .map(|(k, (_, e))| format!(", ({e}) AS \"__freshet_new_{k}\""))
            .collect();
        let sql = format!(
            "SELECT *{} FROM {}{}",
            new_exprs.concat(),
            update.table,
            where_clause(&update.selection)
        );
        let ncols = schema.fields().len();
        self.retrying_write(&table, &sql, params, |batch| {
            let old = batch.project(&(0..ncols).collect::<Vec<_>>())?;
            let mut cols = old.columns().to_vec();
            for (k, (idx, _)) in assigned.iter().enumerate() {
                cols[*idx] = cast_column(batch.column(ncols + k), schema.field(*idx).data_type())?;
            }
            let new = RecordBatch::try_new(schema.clone(), cols)?;
            Ok((cast_batch(&old, &schema)?, new))
        })
        .await
        .map(|n| Output::Command {
            tag: "UPDATE".into(),
            rows: Some(n),
        })
    }

    async fn delete(&self, delete: &ast::Delete, params: &[ScalarValue]) -> Result<Output> {
        let from = match &delete.from {
            FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
        };
        if from.len() != 1
            || delete.using.is_some()
            || delete.returning.is_some()
            || !from[0].joins.is_empty()
        {
            return Err(ServerError::Unsupported(
                "DELETE … USING / RETURNING is not supported yet".into(),
            ));
        }
        let TableFactor::Table { name, .. } = &from[0].relation else {
            return Err(ServerError::Unsupported(
                "DELETE from something other than a table".into(),
            ));
        };
        let table = self.mutable_table(name)?;
        let schema = table.schema();
        let sql = format!(
            "SELECT * FROM {}{}",
            from[0],
            where_clause(&delete.selection)
        );
        self.retrying_write(&table, &sql, params, |batch| {
            let old = cast_batch(batch, &schema)?;
            Ok((old, RecordBatch::new_empty(schema.clone())))
        })
        .await
        .map(|n| Output::Command {
            tag: "DELETE".into(),
            rows: Some(n),
        })
    }

    /// Computes (deleted rows, inserted rows) with `sql` over a fresh snapshot and writes
    /// them; recomputes if another writer changed one of the rows in between.
    async fn retrying_write(
        &self,
        table: &TableDef,
        sql: &str,
        params: &[ScalarValue],
        rows: impl Fn(&RecordBatch) -> Result<(RecordBatch, RecordBatch)>,
    ) -> Result<usize> {
        let mut attempt = 0;
        loop {
            // Reads must see every write made so far, committed or not.
            self.db.engine.flush().await?;
            let batches = self.select(sql, params).await?;
            let mut deletes = Vec::new();
            let mut inserts = Vec::new();
            for b in &batches {
                let (d, i) = rows(b)?;
                deletes.push(d);
                inserts.push(i);
            }
            let n = deletes.iter().map(|b| b.num_rows()).sum();
            match self.write(table, deletes, inserts).await {
                Err(ServerError::Engine(EngineError::Conflict)) if attempt < WRITE_RETRIES => {
                    attempt += 1
                }
                other => return other.map(|_| n),
            }
        }
    }

    async fn create_table(&self, ct: &ast::CreateTable) -> Result<Output> {
        self.create_dml_table(
            &ct.name,
            ct.if_not_exists,
            &ct.columns,
            &ct.constraints,
            ct.query.is_some(),
            None,
        )
        .await
    }

    /// `CREATE TABLE … (…, WATERMARK FOR …) APPEND ONLY`: a DML table with a watermark.
    async fn create_ext_table(&self, cs: &parser::CreateSource) -> Result<Output> {
        self.create_dml_table(
            &cs.name,
            cs.if_not_exists,
            &cs.columns,
            &cs.constraints,
            false,
            Some(cs),
        )
        .await
    }

    /// A table written by DML; `ext` carries Freshet's extensions (WATERMARK, APPEND ONLY).
    async fn create_dml_table(
        &self,
        name: &ObjectName,
        if_not_exists: bool,
        columns: &[ast::ColumnDef],
        constraints: &[ast::TableConstraint],
        as_query: bool,
        ext: Option<&parser::CreateSource>,
    ) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let name = object_name(name);
        let catalog = self.db.catalog();
        if name_taken(&catalog, &name, if_not_exists)? {
            return Ok(command("CREATE TABLE"));
        }
        if as_query {
            return Err(ServerError::Unsupported(
                "CREATE TABLE … AS is not supported yet".into(),
            ));
        }
        let (columns, pk) = table_columns(&name, columns, constraints)?;
        let (watermark, append_only) = match ext {
            Some(cs) => (
                crate::sources::parse_watermark(cs, &columns)?,
                cs.append_only,
            ),
            None => (None, false),
        };
        if watermark.is_some() && !append_only {
            return Err(ServerError::Unsupported(
                "a table with a WATERMARK must be APPEND ONLY: \
                 CREATE TABLE … (…, WATERMARK FOR …) APPEND ONLY"
                    .into(),
            ));
        }
        let mut next = (*catalog).clone();
        let id = next.allocate_id();
        let def = TableDef {
            id,
            name,
            columns,
            pk,
            feed: None,
            watermark,
            append_only,
        };
        self.add_table(next, def).await
    }

    /// Commits a new table into `next` (the catalog with its id allocated) and starts the
    /// reader of its topic, if it has one.
    async fn add_table(&self, mut next: Catalog, def: TableDef) -> Result<Output> {
        let desc = table_desc(&def);
        next.tables.push(def.clone());
        self.db
            .engine
            .ddl(Ddl::CreateTable(desc), next.to_json())
            .await?;
        self.db.set_catalog(next);
        self.db.start_table_reader(&def)?;
        Ok(command("CREATE TABLE"))
    }

    async fn create_view(&self, cv: &ast::CreateView) -> Result<Output> {
        if !cv.materialized {
            return Err(ServerError::Unsupported(
                "only materialized views are supported: CREATE MATERIALIZED VIEW".into(),
            ));
        }
        if cv.or_replace {
            return Err(ServerError::Unsupported(
                "CREATE OR REPLACE MATERIALIZED VIEW".into(),
            ));
        }
        let _ddl = self.db.ddl_lock.lock().await;
        let name = object_name(&cv.name);
        let catalog = self.db.catalog();
        if name_taken(&catalog, &name, cv.if_not_exists)? {
            return Ok(command("CREATE MATERIALIZED VIEW"));
        }
        let eowc = parser::emit_on_window_close(cv);
        let (query_sql, planned) = self
            .plan_new_view(&catalog, &cv.query, &cv.columns, eowc)
            .await?;
        self.install_view(&catalog, name, query_sql, planned, eowc, None)
            .await?;
        Ok(command("CREATE MATERIALIZED VIEW"))
    }

    /// `CREATE SINK`: a view whose rows go to the sink's connector instead of a table.
    async fn create_sink(&self, cs: &parser::CreateSink) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let name = object_name(&cs.name);
        let catalog = self.db.catalog();
        if name_taken(&catalog, &name, cs.if_not_exists)? {
            return Ok(command("CREATE SINK"));
        }
        let (query_sql, planned) = self
            .plan_new_view(&catalog, &cs.query, &[], cs.emit_on_window_close)
            .await?;
        let sink = SinkDef::parse(&cs.options, planned.append_only).map_err(|e| {
            ServerError::Connector {
                code: "22023",
                message: e,
            }
        })?;
        let eowc = cs.emit_on_window_close;
        self.install_view(&catalog, name, query_sql, planned, eowc, Some(sink))
            .await?;
        Ok(command("CREATE SINK"))
    }

    /// Adds a planned view (or, with `sink`, a sink) to the catalog and the engine in one
    /// DDL, then starts its readers.
    async fn install_view(
        &self,
        catalog: &Catalog,
        name: String,
        query_sql: String,
        planned: freshet_planner::stream_planner::PlannedView,
        emit_on_window_close: bool,
        sink: Option<SinkDef>,
    ) -> Result<()> {
        let mut next = catalog.clone();
        let id = next.allocate_id();
        let def = ViewDef {
            id,
            name: name.clone(),
            sql: query_sql,
            depends_on: planned.depends_on.clone(),
            watermark_cols: planned.watermark_cols.clone(),
            emit_on_window_close,
            append_only: planned.append_only,
            source_columns: planned.source_columns.clone(),
            sink,
        };
        let desc = ViewDesc {
            id,
            name,
            schema: planned.schema.clone(),
            plan: planned.plan,
            append_only: planned.append_only,
            output: view_output(&def),
        };
        // Queries read a view's rows with its schema; a sink keeps none.
        let readable = def.sink.is_none();
        next.views.push(def);
        let schemas = || {
            self.db
                .view_schemas
                .write()
                .unwrap_or_else(|p| p.into_inner())
        };
        if readable {
            schemas().insert(id, planned.schema);
        }
        if let Err(e) = self
            .db
            .engine
            .ddl(Ddl::CreateView(desc), next.to_json())
            .await
        {
            if readable {
                schemas().remove(&id);
            }
            return Err(e.into());
        }
        self.db.set_catalog(next.clone());
        if let Some(v) = next.views.last() {
            self.db.start_readers(&next, v)?;
        }
        Ok(())
    }

    /// Plans a view's (or a sink's) query: the SQL to store and the streaming plan.
    async fn plan_new_view(
        &self,
        catalog: &Catalog,
        query: &ast::Query,
        columns: &[ast::ViewColumnDef],
        emit_on_window_close: bool,
    ) -> Result<(String, freshet_planner::stream_planner::PlannedView)> {
        // Renamed columns: `CREATE MATERIALIZED VIEW v (a, b) AS …` is stored as a query
        // that renames them, so re-planning at startup needs nothing else.
        let mut query = query.clone();
        name_select_items(&mut query, false);
        let query_sql = if columns.is_empty() {
            query.to_string()
        } else {
            let cols: Vec<String> = columns.iter().map(|c| c.name.to_string()).collect();
            format!(
                "SELECT * FROM ({query}) AS __freshet_view ({})",
                cols.join(", ")
            )
        };
        let query_stmt = match parser::parse(&query_sql)?.into_iter().next() {
            Some(Stmt::Sql(s)) => s,
            _ => return Err(PlannerError::Internal("view query vanished".into()).into()),
        };
        reject_sinks(catalog, &query_stmt)?;
        let ctx = self
            .db
            .context_for(&self.limits(), catalog, &query_stmt, false, None)?;
        let plan = bind(&ctx, &query_stmt).await?;
        if !param_types(&plan)?.is_empty() {
            return Err(ServerError::Unsupported(
                "parameters in a materialized view".into(),
            ));
        }
        let planned = plan_view(&ctx, catalog, &plan, emit_on_window_close)?;
        Ok((query_sql, planned))
    }

    /// `EXPLAIN CREATE MATERIALIZED VIEW …`: the streaming plan, one line per row.
    async fn explain_view(&self, cv: &ast::CreateView) -> Result<Output> {
        let catalog = self.db.catalog();
        let (_, planned) = self
            .plan_new_view(
                &catalog,
                &cv.query,
                &cv.columns,
                parser::emit_on_window_close(cv),
            )
            .await?;
        let mut text = format!(
            "StreamMaterialize: view={} emit={}\n",
            object_name(&cv.name),
            if parser::emit_on_window_close(cv) {
                "on window close"
            } else {
                "on every change"
            }
        );
        for line in planned.plan.to_string().lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        for id in &planned.depends_on {
            if let Some(name) = catalog.name_of(*id) {
                text.push_str(&format!("relation {id} = {name}"));
                // A source's reader may produce only the columns the view uses.
                let used = planned.source_columns.iter().find(|(s, _)| s == id);
                if let (Some((_, cols)), Some(src)) = (used, catalog.source_by_id(*id)) {
                    let names: Vec<&str> = cols
                        .iter()
                        .filter_map(|&c| src.columns.get(c).map(|c| c.name.as_str()))
                        .collect();
                    text.push_str(&format!(" (reads {})", names.join(", ")));
                }
                text.push('\n');
            }
        }
        let schema = query_plan_schema();
        let rows: Vec<Vec<ScalarValue>> = text
            .lines()
            .map(|l| vec![ScalarValue::Utf8(Some(l.to_string()))])
            .collect();
        let batch = rows_to_batch(schema.clone(), &rows)?;
        Ok(Output::Rows {
            schema,
            batches: vec![batch],
        })
    }

    async fn drop(
        &self,
        object_type: ObjectType,
        if_exists: bool,
        names: &[ObjectName],
        cascade: bool,
    ) -> Result<Output> {
        let expected = match object_type {
            ObjectType::Table => RelationKind::Table,
            ObjectType::MaterializedView | ObjectType::View => RelationKind::View,
            other => return Err(ServerError::Unsupported(format!("DROP {other}"))),
        };
        self.drop_relations(expected, if_exists, names, cascade)
            .await
    }

    async fn drop_relations(
        &self,
        expected: RelationKind,
        if_exists: bool,
        names: &[ObjectName],
        cascade: bool,
    ) -> Result<Output> {
        let (kind_name, tag) = match expected {
            RelationKind::Table => ("table", "DROP TABLE"),
            RelationKind::View => ("materialized view", "DROP MATERIALIZED VIEW"),
            RelationKind::Source => ("source", "DROP SOURCE"),
            RelationKind::Sink => ("sink", "DROP SINK"),
        };
        let _ddl = self.db.ddl_lock.lock().await;
        for n in names {
            let name = object_name(n);
            let catalog = self.db.catalog();
            let id = match catalog.kind_of(&name) {
                None if if_exists => continue,
                None => return Err(PlannerError::UndefinedTable(name).into()),
                Some((kind, _)) if kind != expected => {
                    return Err(PlannerError::WrongObjectType {
                        name,
                        expected: kind_name,
                    }
                    .into())
                }
                Some((_, id)) => id,
            };
            // Everything that reads it, transitively, in creation order.
            let mut doomed = vec![id];
            for v in &catalog.views {
                if v.depends_on.iter().any(|d| doomed.contains(d)) {
                    doomed.push(v.id);
                }
            }
            if doomed.len() > 1 && !cascade {
                let dependents: Vec<String> = catalog
                    .dependents(id)
                    .iter()
                    .map(|v| {
                        let what = if v.sink.is_some() {
                            "sink"
                        } else {
                            "materialized view"
                        };
                        format!("{what} {} depends on {kind_name} {name}", v.name)
                    })
                    .collect();
                return Err(PlannerError::DependentObjects {
                    kind: kind_name,
                    name,
                    detail: dependents.join("\n"),
                }
                .into());
            }
            let mut next = (*catalog).clone();
            for victim in doomed.into_iter().rev() {
                self.db.stop_readers(victim);
                next.tables.retain(|t| t.id != victim);
                next.sources.retain(|s| s.id != victim);
                next.views.retain(|v| v.id != victim);
                if let Err(e) = self.db.engine.ddl(Ddl::Drop(victim), next.to_json()).await {
                    // Not dropped after all (the commit failed): its readers go on.
                    let current = self.db.catalog();
                    if let Some(v) = current.view_by_id(victim) {
                        self.db.start_readers(&current, v)?;
                    } else if let Some(t) = current.tables.iter().find(|t| t.id == victim) {
                        self.db.start_table_reader(t)?;
                    }
                    return Err(e.into());
                }
                self.db
                    .view_schemas
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&victim);
                self.db
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&victim);
                self.db.set_catalog(next.clone());
            }
        }
        Ok(command(tag))
    }

    /// `CREATE TABLE … WITH (connector = 'kafka', …) FORMAT UPSERT|PLAIN ENCODE …`.
    async fn create_fed_table(&self, cs: &parser::CreateSource) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let name = object_name(&cs.name);
        let catalog = self.db.catalog();
        if name_taken(&catalog, &name, cs.if_not_exists)? {
            return Ok(command("CREATE TABLE"));
        }
        if !cs.includes.is_empty() {
            return Err(ServerError::Unsupported(
                "INCLUDE on a table (use a source)".into(),
            ));
        }
        let (columns, pk) = table_columns(&name, &cs.columns, &cs.constraints)?;
        let feed = crate::sources::table_feed(cs, !pk.is_empty())?;
        let watermark = crate::sources::parse_watermark(cs, &columns)?;
        if watermark.is_some() && feed.upsert {
            return Err(ServerError::Unsupported(
                "a table with a WATERMARK must be append-only: use FORMAT PLAIN, not UPSERT".into(),
            ));
        }
        if cs.append_only && feed.upsert {
            return Err(ServerError::InvalidOption(
                "a FORMAT UPSERT table cannot be APPEND ONLY".into(),
            ));
        }
        let mut next = (*catalog).clone();
        let id = next.allocate_id();
        let def = TableDef {
            id,
            name,
            columns,
            pk,
            append_only: !feed.upsert,
            feed: Some(feed),
            watermark,
        };
        let check_def = def.clone();
        tokio::task::spawn_blocking(move || crate::sources::check_table(&check_def))
            .await
            .map_err(|e| ServerError::Protocol(format!("source check failed: {e}")))??;
        self.add_table(next, def).await
    }

    async fn create_source(&self, cs: &parser::CreateSource) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let name = object_name(&cs.name);
        let catalog = self.db.catalog();
        if name_taken(&catalog, &name, cs.if_not_exists)? {
            return Ok(command("CREATE SOURCE"));
        }
        let mut next = (*catalog).clone();
        let id = next.allocate_id();
        let def = crate::sources::source_def(id, cs)?;
        let check_def = def.clone();
        tokio::task::spawn_blocking(move || crate::sources::check(&check_def))
            .await
            .map_err(|e| ServerError::Protocol(format!("source check failed: {e}")))??;
        let schema = def.schema();
        next.sources.push(def);
        self.db
            .engine
            .ddl(Ddl::CreateSource { id, schema }, next.to_json())
            .await?;
        self.db.set_catalog(next);
        Ok(command("CREATE SOURCE"))
    }

    fn set(&self, set: &ast::Set) -> Result<Output> {
        let (name, value) = match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = object_name(variable);
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s)
                            | ast::Value::DoubleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        ast::Expr::Identifier(i) => i.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                (name, value)
            }
            ast::Set::SetTimeZone { value, .. } => (
                "timezone".to_string(),
                value.to_string().trim_matches('\'').to_string(),
            ),
            ast::Set::SetNames { .. } | ast::Set::SetNamesDefault {} => return Ok(command("SET")),
            other => return Err(ServerError::Unsupported(format!("{other}"))),
        };
        let value = match name.as_str() {
            "implicit_flush" => match value.to_lowercase().as_str() {
                "true" | "on" | "1" | "yes" => "true".to_string(),
                "false" | "off" | "0" | "no" => "false".to_string(),
                _ => return Err(ServerError::InvalidParameterValue { name, value }),
            },
            "statement_timeout" => match crate::limits::parse_millis(&value) {
                Some(ms) => crate::limits::show_millis(ms),
                None => return Err(ServerError::InvalidParameterValue { name, value }),
            },
            "query_memory_limit" => match crate::limits::parse_bytes(&value) {
                Some(b) if b > 0 && b <= self.db.limits.query_memory_bytes => {
                    crate::limits::show_bytes(b)
                }
                Some(_) => {
                    return Err(ServerError::InvalidOption(format!(
                        "query_memory_limit must be positive and at most the server's \
                         limit of {} bytes (--query-memory-limit)",
                        self.db.limits.query_memory_bytes
                    )))
                }
                None => return Err(ServerError::InvalidParameterValue { name, value }),
            },
            "timezone" | "time zone" => {
                let v = value.to_uppercase();
                if !["UTC", "GMT", "Z", "+00", "+00:00", "ETC/UTC", "0"].contains(&v.as_str()) {
                    return Err(ServerError::Unsupported(format!(
                        "time zone \"{value}\": Freshet sessions use UTC"
                    )));
                }
                "UTC".to_string()
            }
            _ => value,
        };
        let name = if name == "time zone" {
            "timezone".to_string()
        } else {
            name
        };
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, value);
        Ok(command("SET"))
    }

    fn show(&self, variable: &[ast::Ident]) -> Result<Output> {
        let name = variable
            .iter()
            .map(|i| i.value.to_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let name = if name == "time zone" {
            "timezone".to_string()
        } else {
            name
        };
        let vars = self.vars.lock().unwrap_or_else(|p| p.into_inner());
        if name == "all" {
            let schema: SchemaRef = Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("setting", DataType::Utf8, false),
            ]));
            let rows: Vec<Vec<ScalarValue>> = vars
                .iter()
                .map(|(k, v)| {
                    vec![
                        ScalarValue::Utf8(Some(k.clone())),
                        ScalarValue::Utf8(Some(v.clone())),
                    ]
                })
                .collect();
            let batch = rows_to_batch(schema.clone(), &rows)?;
            return Ok(Output::Rows {
                schema,
                batches: vec![batch],
            });
        }
        let value = vars
            .get(&name)
            .cloned()
            .ok_or(ServerError::UnknownParameter(name.clone()))?;
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new(&name, DataType::Utf8, true)]));
        let batch = rows_to_batch(schema.clone(), &[vec![ScalarValue::Utf8(Some(value))]])?;
        Ok(Output::Rows {
            schema,
            batches: vec![batch],
        })
    }
}

/// Whether `stmt` names every relation once and has no `WITH` (a CTE read twice is
/// scanned twice).
fn reads_each_relation_once(stmt: &Statement) -> bool {
    use freshet_planner::sqlparser::ast::{Visit, Visitor};
    use std::ops::ControlFlow;
    /// Breaks at a `WITH` or at a relation named again.
    struct Reads(Vec<String>);
    impl Visitor for Reads {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
            if q.with.is_some() {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            let n = object_name(name);
            if self.0.contains(&n) {
                return ControlFlow::Break(());
            }
            self.0.push(n);
            ControlFlow::Continue(())
        }
    }
    stmt.visit(&mut Reads(Vec::new())).is_continue()
}

/// The statement with Postgres names for unaliased result columns (see `naming`).
fn with_pg_names(stmt: &Statement) -> Statement {
    let mut stmt = stmt.clone();
    if let Statement::Query(q) = &mut stmt {
        name_select_items(q, true);
    }
    stmt
}

/// A plan's output schema with the names clients should see.
/// The columns a query returns: names as Postgres shows them, types after DataFusion's
/// type coercion (a UNION of INT and BIGINT is BIGINT), as execution produces them.
fn result_schema(ctx: &SessionContext, plan: &LogicalPlan) -> Result<SchemaRef> {
    let state = ctx.state();
    let analyzed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    let schema = analyzed.schema().as_arrow();
    Ok(Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_name(display_name(f.name())))
            .collect::<Vec<_>>(),
    )))
}

/// Columns and primary key of `CREATE TABLE`.
fn table_columns(
    name: &str,
    ast_columns: &[ast::ColumnDef],
    constraints: &[TableConstraint],
) -> Result<(Vec<ColumnDef>, Vec<usize>)> {
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut pk: Vec<usize> = Vec::new();
    for (i, c) in ast_columns.iter().enumerate() {
        let cname = ident_name(&c.name);
        if columns.iter().any(|x| x.name == cname) {
            return Err(PlannerError::DuplicateColumn(cname).into());
        }
        let mut not_null = false;
        for opt in &c.options {
            match &opt.option {
                ColumnOption::NotNull => not_null = true,
                ColumnOption::Null => {}
                ColumnOption::PrimaryKey(_) => {
                    if !pk.is_empty() {
                        return Err(ServerError::Unsupported(format!(
                            "multiple primary keys for table \"{name}\" are not allowed"
                        )));
                    }
                    pk.push(i);
                    not_null = true;
                }
                other => {
                    return Err(ServerError::Unsupported(format!(
                        "column option {other} is not supported yet"
                    )))
                }
            }
        }
        columns.push(ColumnDef {
            name: cname,
            ty: SqlType::from_ast(&c.data_type)?,
            not_null,
        });
    }
    if columns.is_empty() {
        return Err(ServerError::Unsupported(
            "a table needs at least one column".into(),
        ));
    }
    for constraint in constraints {
        match constraint {
            TableConstraint::PrimaryKey(p) => {
                if !pk.is_empty() {
                    return Err(ServerError::Unsupported(format!(
                        "multiple primary keys for table \"{name}\" are not allowed"
                    )));
                }
                for ic in &p.columns {
                    let col = match &ic.column.expr {
                        ast::Expr::Identifier(id) => ident_name(id),
                        other => {
                            return Err(ServerError::Unsupported(format!(
                                "primary key expression {other}"
                            )))
                        }
                    };
                    let idx = columns
                        .iter()
                        .position(|c| c.name == col)
                        .ok_or_else(|| PlannerError::UndefinedColumn(col.clone()))?;
                    if pk.contains(&idx) {
                        return Err(PlannerError::DuplicateColumn(col).into());
                    }
                    pk.push(idx);
                    columns[idx].not_null = true;
                }
            }
            other => {
                return Err(ServerError::Unsupported(format!(
                    "table constraint {other} is not supported yet"
                )))
            }
        }
    }
    Ok((columns, pk))
}

/// Whether `name` is taken: `Ok(true)` with IF NOT EXISTS (the statement does nothing),
/// an error without it.
fn name_taken(catalog: &Catalog, name: &str, if_not_exists: bool) -> Result<bool> {
    match catalog.kind_of(name) {
        None => Ok(false),
        Some(_) if if_not_exists => Ok(true),
        Some(_) => Err(PlannerError::DuplicateTable(name.to_string()).into()),
    }
}

/// The one column of `EXPLAIN CREATE MATERIALIZED VIEW`.
fn query_plan_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "QUERY PLAN",
        DataType::Utf8,
        false,
    )]))
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

fn where_clause(selection: &Option<ast::Expr>) -> String {
    match selection {
        Some(e) => format!(" WHERE {e}"),
        None => String::new(),
    }
}

/// Whether `query` reads `table` (INSERT INTO t SELECT … FROM t).
fn referenced_in_query(query: &ast::Query, table: &str) -> bool {
    referenced_tables(&Statement::Query(Box::new(query.clone())))
        .iter()
        .any(|n| n == table)
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// An identifier as Postgres folds it: unquoted names are lower-cased.
pub fn ident_name(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The last part of a (possibly schema-qualified) name.
pub fn object_name(n: &ObjectName) -> String {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default()
}

/// `$1`, `$2`, … types inferred by DataFusion, in order.
fn param_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let types = plan.get_parameter_types()?;
    let mut out: Vec<Option<DataType>> = Vec::new();
    for (name, ty) in types {
        let idx: usize = name
            .trim_start_matches('$')
            .parse()
            .map_err(|_| ServerError::Unsupported(format!("parameter {name}")))?;
        if idx == 0 {
            return Err(ServerError::Unsupported(format!("parameter {name}")));
        }
        if out.len() < idx {
            out.resize(idx, None);
        }
        out[idx - 1] = ty;
    }
    Ok(out)
}

fn with_params(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan);
    }
    Ok(plan.with_param_values(ParamValues::List(
        params.iter().cloned().map(Into::into).collect(),
    ))?)
}

fn cast_column(
    c: &datafusion::arrow::array::ArrayRef,
    t: &DataType,
) -> Result<datafusion::arrow::array::ArrayRef> {
    if c.data_type() == t {
        return Ok(c.clone());
    }
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(c, t, &opts).map_err(|e| ServerError::DataFusion(e.into()))
}

/// Builds rows of `schema` from `b`, whose column `i` goes to column `targets[i]`; the
/// other columns are NULL.
fn place_columns(b: &RecordBatch, targets: &[usize], schema: &SchemaRef) -> Result<RecordBatch> {
    if b.num_columns() != targets.len() {
        return Err(PlannerError::Syntax {
            message: format!(
                "INSERT has {} expressions but {} target columns",
                b.num_columns(),
                targets.len()
            ),
            position: None,
        }
        .into());
    }
    let mut cols: Vec<datafusion::arrow::array::ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), b.num_rows()))
        .collect();
    for (src, &dst) in targets.iter().enumerate() {
        cols[dst] = cast_column(b.column(src), schema.field(dst).data_type())?;
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

fn cast_batch(b: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = b
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast_column(c, f.data_type()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

impl From<datafusion::arrow::error::ArrowError> for ServerError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        ServerError::DataFusion(e.into())
    }
}
