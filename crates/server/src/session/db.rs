//! The database shared by all sessions ([`Db`]): opening the data directory (the catalog,
//! re-planning every view, starting the engine), the source readers and their
//! supervision, the catalog as sessions read and replace it, views that failed at
//! start-up, `FLUSH`, shutdown, and which stored relation a name reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use freshet_engine::coordinator::{late_events_schema, source_errors_schema};
use freshet_engine::coordinator::{
    Ddl, Engine, EngineConfig, Output as ViewOutput, TableDesc, ViewDesc,
};
use freshet_engine::coordinator::{LATE_EVENTS, SOURCE_ERRORS};
use freshet_engine::plan::StreamNode;
use freshet_planner::catalog::{Catalog, TableDef, ViewDef};
use freshet_planner::context::{
    bind, new_session_with, referenced_tables, register, register_in_schema, Limits,
};
use freshet_planner::parser::{self, Stmt};
use freshet_planner::sqlparser::ast::Statement;
use freshet_planner::stream_planner::plan_view;
use freshet_planner::PlannerError;
use freshet_storage::{keys, RowLayout, Store};

use crate::readers::{Owner, Readers};

use crate::error::{Result, ServerError};

/// The database shared by all sessions.
pub struct Db {
    pub(super) store: Store,
    pub(super) engine: Engine,
    catalog: RwLock<Arc<Catalog>>,
    /// Output schemas of views (derived by planning their queries).
    pub(super) view_schemas: RwLock<BTreeMap<u64, SchemaRef>>,
    /// Serializes DDL (the catalog is read, changed and written back).
    pub(super) ddl_lock: tokio::sync::Mutex<()>,
    /// Statements hold a read lock; shutdown takes the write lock to let them finish.
    pub inflight: tokio::sync::RwLock<()>,
    /// Source readers by the relation they feed, supervised.
    pub(super) readers: Readers,
    /// One reader per Kafka source, shared by the views over it.
    shared_readers: std::sync::Arc<freshet_connectors::kafka_reader::SharedReaders>,
    /// The server's limits on a statement (a session may lower the memory limit).
    pub(super) limits: Limits,
    /// Views that could not be planned at start-up, with the reason.
    pub(super) failed: Mutex<BTreeMap<u64, String>>,
    /// Dead-letter retention per source, kept in step with the catalog.
    dead_letters: Arc<freshet_engine::dead_letters::Policies>,
    /// Where queries run (see [`crate::query_pool`]).
    pub(super) queries: crate::query_pool::QueryPool,
    /// Threads streaming stored rows to queries (see `scan`).
    pub(super) scans: Arc<crate::scan::Scans>,
    /// The sessions, for `pg_stat_activity` and cancel requests.
    pub backends: Arc<crate::backends::Backends>,
    /// The Kafka sinks' delivery threads.
    pub(super) sinks: crate::sinks::Sinks,
    /// Each view's (and sink's) dataflow plan as text, for the status page.
    pub(super) plans: Mutex<BTreeMap<u64, String>>,
    data_dir: std::path::PathBuf,
    /// Long work in progress (`SHOW JOBS`).
    pub jobs: crate::jobs::Jobs,
    /// Rows read per second per source partition, sampled every 2 s.
    pub(super) rates: super::ops_tables::Rates,
    /// This process's share of every topic's partitions (`--node`).
    pub(super) node: Option<crate::node::Node>,
    /// The shards a new view's keyed operators run as unless the session sets
    /// `streaming_parallelism` (`--streaming-parallelism`).
    pub(super) streaming_parallelism: usize,
}

impl crate::auth::Users for Db {
    fn user(&self, name: &str) -> Option<freshet_planner::users::UserDef> {
        self.catalog().user(name).cloned()
    }
}

pub(super) fn table_desc(t: &TableDef) -> TableDesc {
    TableDesc {
        id: t.id,
        name: t.name.clone(),
        schema: t.stored_schema(),
        pk: t.stored_pk(),
        not_null: t
            .columns
            .iter()
            .map(|c| c.not_null)
            .chain(t.row_id.then_some(true))
            .collect(),
        row_id: t.row_id,
        watermark: t.watermark.as_ref().and_then(|w| {
            let col = t.columns.iter().position(|c| c.name == w.column)?;
            Some((col, w.delay_micros))
        }),
        sink_conflict: sink_conflict(t),
        expires: t.watermark.as_ref().is_some_and(|w| w.ttl),
    }
}

/// What a sink's row does to the row of its key in table `t`: the table's `ON CONFLICT`,
/// overwriting without one (RisingWave's default); an APPEND ONLY table keeps its row.
fn sink_conflict(t: &TableDef) -> freshet_engine::coordinator::SinkConflict {
    use freshet_engine::coordinator::SinkConflict;
    use freshet_planner::catalog::OnConflictMode;
    match t.on_conflict {
        // An APPEND ONLY table never replaces a row (its views only insert).
        _ if t.append_only => SinkConflict::Ignore,
        Some(OnConflictMode::Ignore) => SinkConflict::Ignore,
        mode if !t.version_columns.is_empty() => SinkConflict::Versioned {
            merge: mode == Some(OnConflictMode::UpdateNonNull),
            columns: t.version_columns.clone(),
        },
        Some(OnConflictMode::UpdateNonNull) => SinkConflict::UpdateNonNull,
        _ => SinkConflict::Overwrite,
    }
}

/// Where a stored view's rows go.
pub(super) fn view_output(v: &ViewDef) -> ViewOutput {
    match &v.sink {
        None => ViewOutput::Table,
        Some(s) if s.into_table.is_some() => ViewOutput::IntoTable {
            table: s.into_table.unwrap_or_default(),
            staging: false,
        },
        Some(s) if s.kafka.is_some() => ViewOutput::Log {
            deletes: !s.drop_deletes,
        },
        Some(s) => ViewOutput::Blackhole {
            deletes: !s.drop_deletes,
        },
    }
}

impl Db {
    /// Opens the data directory: reads the catalog, re-plans every view and starts the
    /// engine's coordinator.
    pub async fn open(
        data_dir: &Path,
        config: EngineConfig,
        limits: Limits,
        node: Option<crate::node::Node>,
        streaming_parallelism: usize,
    ) -> Result<Arc<Db>> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ServerError::Protocol(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let store = Store::open(&data_dir.join("db"))?;
        let mut catalog = match store.read_snapshot(|r| r.get(keys::CATALOG))? {
            Some(bytes) => Catalog::from_json(&bytes)?,
            None => Catalog::default(),
        };
        // Views of subscriptions that were running when the server stopped: they go.
        let leftovers: Vec<u64> = catalog
            .views
            .iter()
            .filter(|v| v.subscription && catalog.dependents(v.id).is_empty())
            .map(|v| v.id)
            .collect();
        catalog.views.retain(|v| !leftovers.contains(&v.id));
        let ctx = new_session_with(&limits);
        let text_casts = freshet_planner::pg_values::view_text_forms(&ctx);
        for t in &catalog.tables {
            register(&ctx, &t.name, t.schema(), vec![])?;
            // Also as a lookup join's table (FOR SYSTEM_TIME AS OF PROCTIME()).
            let lookup = format!("{}{}", parser::LOOKUP_PREFIX, t.name);
            register(&ctx, &lookup, t.schema(), vec![])?;
            if t.row_id {
                let stored = freshet_planner::hidden_columns::stored_name(&t.name);
                register(&ctx, &stored, t.stored_schema(), vec![])?;
            }
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
        let plain_views = catalog.plain_views.clone();
        let mut sink_schemas = Vec::new();
        let mut plans = BTreeMap::new();
        let mut failed = BTreeMap::new();
        for v in &catalog.views {
            // A view this build cannot plan (a limit it breaks, a view it reads that
            // failed) must not keep the server from starting: it is marked failed, and
            // everything else runs.
            text_casts.store(v.pg_text_casts, std::sync::atomic::Ordering::SeqCst);
            freshet_planner::dialect::set_level(&ctx, v.dialect);
            freshet_planner::session_zone::set(&ctx, v.zone());
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
            } else {
                sink_schemas.push((v.id, schema.clone()));
            }
            plans.insert(v.id, plan.to_string());
            views.push(ViewDesc {
                id: v.id,
                name: v.name.clone(),
                schema,
                plan,
                append_only: v.append_only,
                output: view_output(v),
                parallelism: parallelism(v, streaming_parallelism),
                refuses_specials: v.dialect < freshet_planner::numeric_special::LEVEL,
            });
        }
        // Plain views: their columns, for the catalogs (queries expand them).
        for pv in &plain_views {
            match plain_view_columns(&ctx, pv).await {
                Ok(s) => {
                    view_schemas.insert(pv.id, super::plain_view::renamed(&s, &pv.columns));
                }
                Err(e) => {
                    tracing::warn!(view = %pv.name, error = %e, "cannot plan the view's query; the catalogs show it without columns")
                }
            }
        }
        let tables = catalog.tables.iter().map(table_desc).collect();
        let sources = catalog.sources.iter().map(|s| (s.id, s.schema())).collect();
        let dead_letters = config.dead_letters.clone();
        let engine = Engine::start(store.clone(), tables, sources, views, config)?;
        for id in leftovers {
            if let Err(e) = engine.ddl(Ddl::Drop(id), catalog.to_json()).await {
                tracing::warn!(view = id, error = %e, "dropping a subscription's view left from the last run failed; it goes at the next start");
            }
        }
        let db = Arc::new(Db {
            store,
            engine,
            catalog: RwLock::new(Arc::new(catalog.clone())),
            view_schemas: RwLock::new(view_schemas),
            ddl_lock: tokio::sync::Mutex::new(()),
            inflight: tokio::sync::RwLock::new(()),
            readers: Readers::default(),
            shared_readers: Default::default(),
            limits,
            failed: Mutex::new(failed),
            dead_letters,
            // Twice the cores: a query DataFusion is still winding down after a cancel
            // (it stops at its next yield) leaves threads for the next ones, which the
            // OS then shares the cores with.
            scans: Arc::default(),
            backends: Arc::default(),
            sinks: crate::sinks::Sinks::default(),
            plans: Mutex::new(plans),
            data_dir: data_dir.to_path_buf(),
            jobs: crate::jobs::Jobs::default(),
            rates: super::ops_tables::Rates::default(),
            node,
            streaming_parallelism,
            queries: crate::query_pool::QueryPool::new(
                (2 * std::thread::available_parallelism().map_or(2, |n| n.get())).max(4),
            )
            .map_err(|e| ServerError::Internal(format!("cannot start the query threads: {e}")))?,
        });
        db.set_catalog(catalog.clone());
        for t in &catalog.tables {
            db.start_table_reader(t)?;
        }
        for (id, schema) in &sink_schemas {
            if let Some(v) = catalog.view_by_id(*id) {
                // A sink whose delivery cannot start must not keep the server down.
                if let Err(e) = db.sinks.start(&db.store, &catalog, v, schema) {
                    tracing::error!(sink = %v.name, error = %e, "cannot start the sink's delivery");
                    db.failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(v.id, e.to_string());
                }
            }
        }
        for v in &catalog.views {
            if db.failure(v.id).is_some() {
                continue;
            }
            db.start_readers(&catalog, v)?;
        }
        // Restarts failed readers, and samples the source rates; ends with the database.
        let weak = Arc::downgrade(&db);
        tokio::spawn(async move {
            let mut tick = 0u64;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let Some(db) = weak.upgrade() else { break };
                tick += 1;
                let sample = tick.is_multiple_of(8);
                let _ = tokio::task::spawn_blocking(move || {
                    // A database closed after a failed write opens again once it can.
                    let _ = db.store.recover();
                    db.supervise(false);
                    if sample {
                        db.rates.sample();
                    }
                })
                .await;
            }
        });
        Ok(db)
    }

    /// A computed relation of `freshet_catalog` (`views`, `sinks`, …) by its name without
    /// the schema, as a query would read it now.
    pub fn system_relation(
        &self,
        name: &str,
    ) -> Result<Option<(SchemaRef, Vec<Vec<datafusion::common::ScalarValue>>)>> {
        let full = format!("freshet_catalog.{name}");
        let Some((_, f)) = super::system_tables::COMPUTED
            .iter()
            .find(|(n, _)| *n == full)
        else {
            return Ok(None);
        };
        f(self, &self.catalog()).map(Some)
    }

    /// Each view's and sink's name, kind and dataflow plan (as `EXPLAIN` prints it).
    pub fn view_plans(&self) -> Vec<(String, &'static str, String)> {
        let plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        self.catalog()
            .views
            .iter()
            .filter(|v| !v.subscription)
            .map(|v| {
                let kind = if v.sink.is_some() {
                    "sink"
                } else {
                    "materialized view"
                };
                let plan = plans
                    .get(&v.id)
                    .cloned()
                    .unwrap_or_else(|| "(not planned)".into());
                (v.name.clone(), kind, plan)
            })
            .collect()
    }

    /// The most recent dead letters (`source_errors`, then `late_events`), newest first.
    pub fn recent_dead_letters(&self, limit: usize) -> Result<Vec<Vec<String>>> {
        let mut out = Vec::new();
        for (id, schema, what) in [
            (SOURCE_ERRORS, source_errors_schema(), "parse error"),
            (LATE_EVENTS, late_events_schema(), "late event"),
        ] {
            let types: Vec<_> = schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            let prefix = keys::rows_prefix(id);
            self.store.read_snapshot(|r| -> Result<()> {
                let mut n = 0;
                r.visit(&prefix, true, &mut |k, _| {
                    if let Ok(row) = freshet_storage::codec::decode_row(&k[prefix.len()..], &types)
                    {
                        let mut cells = vec![what.to_string()];
                        cells.extend(row.iter().map(|v| {
                            match v {
                                datafusion::common::ScalarValue::TimestampMicrosecond(
                                    Some(t),
                                    _,
                                ) => chrono::DateTime::from_timestamp_micros(*t)
                                    .map_or(t.to_string(), |d| {
                                        d.format("%Y-%m-%d %H:%M:%S%.6fZ").to_string()
                                    }),
                                v if v.is_null() => String::new(),
                                v => v.to_string(),
                            }
                        }));
                        out.push(cells);
                    }
                    n += 1;
                    n < limit
                })?;
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sets each view's row, state entry and byte gauges (its counters, RocksDB's
    /// estimate) and each
    /// sink's backlog.
    pub fn refresh_relation_gauges(&self) {
        let m = freshet_engine::metrics::metrics();
        let catalog = self.catalog();
        let _ = self.store.read_snapshot(|r| -> Result<()> {
            for v in catalog.views.iter().filter(|v| !v.subscription) {
                let name = [v.name.as_str()];
                m.view_state_bytes
                    .with_label_values(&name)
                    .set(super::ops_tables::view_bytes(self, v.id) as i64);
                match freshet_storage::state_entries(r, v.id)? {
                    Some(n) => m.view_state_entries.with_label_values(&name).set(n),
                    // Not counted yet (a view from an older build, unchanged since).
                    None => {
                        let _ = m.view_state_entries.remove_label_values(&name);
                    }
                }
                if v.sink.is_none() {
                    m.view_rows
                        .with_label_values(&name)
                        .set(super::ops_tables::view_rows(r, v.id)?);
                } else if let Some(s) = self.sinks.status(v.id) {
                    let pos = freshet_engine::sink_log::position(r, v.id)?;
                    m.sink_backlog
                        .with_label_values(&name)
                        .set(pos.backlog() as i64);
                    m.sink_paused.with_label_values(&name).set(i64::from(
                        s.paused.load(std::sync::atomic::Ordering::Relaxed),
                    ));
                }
            }
            Ok(())
        });
    }

    /// The database's store (for backups and metrics).
    pub fn store(&self) -> &Store {
        &self.store
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
                    crate::sources::start_reader(
                        self.reader_env(),
                        view,
                        &v.name,
                        src,
                        columns,
                        self.sinks.gate(view),
                    )
                }
                Owner::Table(id) => {
                    let Some(t) = catalog.tables.iter().find(|t| t.id == id) else {
                        return Err("its table was dropped".into());
                    };
                    crate::sources::start_table_reader(self.reader_env(), t, self.sinks.gate(id))
                }
            }
            .map_err(|e| e.to_string())
        });
    }

    /// Why view `id` is not running, if it failed.
    pub(super) fn failure(&self, id: u64) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// An error (`55000`) if `stmt` reads a view that failed at start-up.
    pub(super) fn reject_failed(&self, catalog: &Catalog, stmt: &Statement) -> Result<()> {
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

    /// What the source readers start from.
    fn reader_env(&self) -> crate::sources::ReaderEnv<'_> {
        crate::sources::ReaderEnv {
            engine: &self.engine,
            store: &self.store,
            node: self.node,
            shared: &self.shared_readers,
        }
    }

    /// Starts a reader for every source `view` reads directly.
    pub(super) fn start_readers(&self, catalog: &Catalog, view: &ViewDef) -> Result<()> {
        let epoch = self.engine.epoch();
        let mut handles = Vec::new();
        for dep in &view.depends_on {
            if let Some(src) = catalog.source_by_id(*dep) {
                let columns = view
                    .source_columns
                    .iter()
                    .find(|(id, _)| id == dep)
                    .map(|(_, c)| c.as_slice());
                let h = crate::sources::start_reader(
                    self.reader_env(),
                    view.id,
                    &view.name,
                    src,
                    columns,
                    self.sinks.gate(view.id),
                )?;
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
    pub(super) fn start_table_reader(&self, table: &TableDef) -> Result<()> {
        if table.feed.is_some() {
            let epoch = self.engine.epoch();
            let h = crate::sources::start_table_reader(
                self.reader_env(),
                table,
                self.sinks.gate(table.id),
            )?;
            self.readers
                .insert(table.id, epoch, vec![(Owner::Table(table.id), h)]);
        }
        Ok(())
    }

    /// Stops the readers feeding `view` (blocking until their threads end).
    pub(super) fn stop_readers(&self, view: u64) {
        drop(self.readers.remove(view));
    }

    /// Waits until every source reader has handed over what its topic holds now, then
    /// until all of it is committed.
    pub async fn flush(self: &Arc<Self>) -> Result<()> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            // A reader that just failed (say, after a failed commit) starts again now.
            db.supervise(true);
            let sinks = &db.sinks;
            db.readers
                .catch_up(std::time::Duration::from_secs(600), &|rel| {
                    sinks.held_by(rel)
                })
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

    pub(super) fn set_catalog(&self, c: Catalog) {
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
        // Streams of stored rows end first: they hold snapshots of the database.
        let scans = self.scans.clone();
        let _ = tokio::task::spawn_blocking(move || scans.close(std::time::Duration::from_secs(5)))
            .await;
        let readers = self.readers.take_all();
        let sinks = self.sinks.take_all();
        tokio::task::spawn_blocking(move || {
            // Sinks first: a reader may be waiting for one.
            drop(sinks);
            drop(readers)
        })
        .await
        .map_err(|e| ServerError::Protocol(format!("stopping readers failed: {e}")))?;
        self.engine.shutdown().await?;
        self.store.quiesce();
        Ok(())
    }

    pub(super) fn relation_schema(
        &self,
        catalog: &Catalog,
        name: &str,
    ) -> Option<(u64, SchemaRef, RowLayout)> {
        // A lookup join's table (`FOR SYSTEM_TIME AS OF PROCTIME()`) reads as the table.
        let name = parser::lookup_target(name).unwrap_or(name);
        if let Some(t) = catalog.table(name) {
            // A table without a key stores its rows under their hidden row ids.
            let layout = if t.pk.is_empty() && !t.row_id {
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

    pub(super) fn is_source(&self, catalog: &Catalog, name: &str) -> bool {
        catalog.table(name).is_none() && catalog.source(name).is_some()
    }
}

/// The columns of a plain view's query (at startup).
async fn plain_view_columns(
    ctx: &SessionContext,
    v: &freshet_planner::catalog::PlainViewDef,
) -> Result<SchemaRef> {
    let Some(Stmt::Sql(stmt)) = parser::parse(&v.sql)?.into_iter().next() else {
        return Err(
            PlannerError::Internal(format!("the query of view {} is empty", v.name)).into(),
        );
    };
    let plan = freshet_planner::context::bind(ctx, &stmt).await?;
    let plan = freshet_planner::context::analyzed(ctx, plan)?;
    Ok(Arc::new(plan.schema().as_arrow().clone()))
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

/// How view `v`'s dataflow uses threads, as its definition says (`server`: the server's
/// `streaming_parallelism`, which an adaptive view follows).
pub(crate) fn parallelism(v: &ViewDef, server: usize) -> freshet_engine::dataflow::Parallelism {
    freshet_engine::dataflow::Parallelism {
        shards: v.shards(),
        threads: v.threads(server),
        two_phase_agg: v.two_phase_agg,
    }
}
