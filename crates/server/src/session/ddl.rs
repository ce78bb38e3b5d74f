//! DDL: `CREATE TABLE` (written by DML, or fed by a topic), `CREATE SOURCE`,
//! `CREATE MATERIALIZED VIEW`, `CREATE SINK`, `EXPLAIN CREATE MATERIALIZED VIEW` and
//! `DROP` of each. Each builds the next catalog under the DDL lock and lets the engine's
//! coordinator apply it in one commit, then starts or stops the source readers.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_engine::chunk::rows_to_batch;
use freshet_engine::coordinator::{Ddl, ViewDesc};
use freshet_planner::catalog::{
    Catalog, ColumnDef, RelationKind, SinkDef, SqlType, TableDef, ViewDef,
};
use freshet_planner::context::bind;
use freshet_planner::naming::name_select_items;
use freshet_planner::parser::{self, Stmt};
use freshet_planner::sqlparser::ast::{
    self, ColumnOption, ObjectName, ObjectType, TableConstraint,
};
use freshet_planner::stream_planner::plan_view;
use freshet_planner::PlannerError;

use super::db::{table_desc, view_output};
use super::query::{param_types, reject_sinks};
use super::{command, ident_name, object_name, relation_name, Db, Output, Session};
use crate::error::{Result, ServerError};

impl Session {
    pub(super) async fn create_table(&self, ct: &ast::CreateTable) -> Result<Output> {
        if let Some(query) = &ct.query {
            return self.create_table_as(ct, query).await;
        }
        self.create_dml_table(
            &ct.name,
            ct.if_not_exists,
            &ct.columns,
            &ct.constraints,
            None,
        )
        .await
    }

    /// `CREATE TABLE … (…, WATERMARK FOR …) APPEND ONLY`: a DML table with a watermark.
    pub(super) async fn create_ext_table(&self, cs: &parser::CreateSource) -> Result<Output> {
        self.create_dml_table(
            &cs.name,
            cs.if_not_exists,
            &cs.columns,
            &cs.constraints,
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
        ext: Option<&parser::CreateSource>,
    ) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, name)?;
        if self.skip_existing(&catalog, &name, if_not_exists)? {
            return Ok(command("CREATE TABLE"));
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
        let on_conflict = ext.and_then(|cs| cs.on_conflict);
        if on_conflict.is_some() && (pk.is_empty() || append_only) {
            return Err(ServerError::Unsupported(
                "ON CONFLICT on a table without a PRIMARY KEY or APPEND ONLY (no key can \
                 conflict)"
                    .into(),
            ));
        }
        let version_columns = match ext {
            Some(cs) => version_columns(&columns, on_conflict, &cs.version_columns)?,
            None => Vec::new(),
        };
        let mut next = (*catalog).clone();
        let id = next.allocate_id();
        let def = TableDef {
            id,
            name,
            columns,
            row_id: pk.is_empty(),
            pk,
            feed: None,
            watermark,
            append_only,
            on_conflict,
            version_columns,
        };
        self.add_table(next, def).await
    }

    /// Commits a new table into `next` (the catalog with its id allocated) and starts the
    /// reader of its topic, if it has one.
    pub(super) async fn add_table(&self, mut next: Catalog, def: TableDef) -> Result<Output> {
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

    /// `CREATE TABLE … WITH (connector = 'kafka', …) FORMAT UPSERT|PLAIN ENCODE …`.
    pub(super) async fn create_fed_table(&self, cs: &parser::CreateSource) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, &cs.name)?;
        if self.skip_existing(&catalog, &name, cs.if_not_exists)? {
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
            row_id: pk.is_empty(),
            pk,
            append_only: !feed.upsert,
            feed: Some(feed),
            watermark,
            on_conflict: None,
            version_columns: Vec::new(),
        };
        let check_def = def.clone();
        tokio::task::spawn_blocking(move || crate::sources::check_table(&check_def))
            .await
            .map_err(|e| ServerError::Protocol(format!("source check failed: {e}")))??;
        self.add_table(next, def).await
    }

    pub(super) async fn create_source(&self, cs: &parser::CreateSource) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, &cs.name)?;
        if self.skip_existing(&catalog, &name, cs.if_not_exists)? {
            return Ok(command("CREATE SOURCE"));
        }
        let mut next = (*catalog).clone();
        let id = next.allocate_id();
        let def = crate::sources::source_def(id, name.clone(), cs)?;
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

    pub(super) async fn create_view(&self, cv: &ast::CreateView) -> Result<Output> {
        if !cv.materialized {
            return self.create_plain_view(cv).await;
        }
        if cv.or_replace {
            return Err(ServerError::Unsupported(
                "CREATE OR REPLACE MATERIALIZED VIEW".into(),
            ));
        }
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, &cv.name)?;
        if self.skip_existing(&catalog, &name, cv.if_not_exists)? {
            return Ok(command("CREATE MATERIALIZED VIEW"));
        }
        let eowc = parser::emit_on_window_close(cv);
        let (query_sql, planned) = self
            .plan_new_view(&catalog, &cv.query, &cv.columns, eowc)
            .await?;
        if self.background_ddl() && self.tx_status() == super::transaction::TxStatus::Idle {
            // Planned (so a bad query fails here); built by a session of the same user in
            // the background, which plans it again under the DDL lock.
            drop(_ddl);
            self.in_background("create materialized view", &name, {
                let cv = cv.clone();
                move |s| Box::pin(async move { s.create_view(&cv).await.map(|_| ()) })
            });
            return Ok(command("CREATE MATERIALIZED VIEW"));
        }
        self.install_view(
            &catalog,
            name,
            query_sql,
            planned,
            eowc,
            ViewKind::Materialized,
        )
        .await?;
        Ok(command("CREATE MATERIALIZED VIEW"))
    }

    /// Runs `work` on a new session of this session's user, in the background, as a job
    /// (on a thread of its own: a session's futures stay on one thread).
    fn in_background(
        &self,
        kind: &'static str,
        name: &str,
        work: impl FnOnce(
                super::Session,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>>
            + Send
            + 'static,
    ) {
        let user = self.user_name();
        let job = self.db.jobs.start(kind, name, None);
        let db = self.db.clone();
        let name = name.to_string();
        let spawned = std::thread::Builder::new()
            .name("freshet-background-ddl".into())
            .stack_size(crate::STACK_SIZE)
            .spawn(move || {
                let res = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ServerError::Internal(format!("cannot start a runtime: {e}")))
                    .and_then(|rt| {
                        let session = super::Session::new(db.clone());
                        session.set_user(&user);
                        rt.block_on(work(session))
                    });
                let id = db.catalog().view(&name).map(|v| v.id);
                match res {
                    Ok(()) => db.jobs.finish(job, crate::jobs::State::Done, id),
                    Err(e) => {
                        tracing::warn!(relation = %name, error = %e, "background DDL failed");
                        db.jobs
                            .finish(job, crate::jobs::State::Failed(e.to_string()), id)
                    }
                }
            });
        if let Err(e) = spawned {
            self.db.jobs.finish(
                job,
                crate::jobs::State::Failed(format!("cannot start a thread: {e}")),
                None,
            );
        }
    }

    /// `CREATE SINK`: a view whose rows go to the sink's connector instead of a table.
    pub(super) async fn create_sink(&self, cs: &parser::CreateSink) -> Result<Output> {
        if let Some((table, columns)) = &cs.into {
            return self.create_sink_into(cs, table, columns).await;
        }
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, &cs.name)?;
        if self.skip_existing(&catalog, &name, cs.if_not_exists)? {
            return Ok(command("CREATE SINK"));
        }
        let (query_sql, planned) = self
            .plan_new_view(&catalog, &cs.query, &[], cs.emit_on_window_close)
            .await?;
        let columns: Vec<String> = planned
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let sink = SinkDef::parse(
            &cs.options,
            cs.format.as_ref(),
            planned.append_only,
            &columns,
        )
        .map_err(|e| ServerError::Connector {
            code: "22023",
            message: e,
        })?;
        // librdkafka must take the settings before the sink exists.
        let probe = ViewDef {
            id: 0,
            name: name.clone(),
            sql: String::new(),
            depends_on: vec![],
            watermark_cols: vec![],
            emit_on_window_close: false,
            append_only: false,
            sink: Some(sink.clone()),
            source_columns: vec![],
            subscription: false,
            pg_text_casts: true,
            dialect: freshet_planner::dialect::CURRENT,
            parallelism: 1,
            max_parallelism: None,
            adaptive: false,
            two_phase_agg: true,
            index: None,
            time_zone: None,
        };
        if let Some(spec) = crate::sinks::spec(&probe, &planned.schema) {
            freshet_connectors::kafka_sink::check(&spec).map_err(|message| {
                ServerError::Connector {
                    code: "22023",
                    message,
                }
            })?;
        }
        let eowc = cs.emit_on_window_close;
        self.install_view(
            &catalog,
            name,
            query_sql,
            planned,
            eowc,
            ViewKind::Sink(sink),
        )
        .await?;
        Ok(command("CREATE SINK"))
    }

    /// The view of a `SUBSCRIBE TO (query)`, named `name`; its id.
    pub(super) async fn create_subscription_view(
        &self,
        name: &str,
        query: &ast::Query,
    ) -> Result<u64> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        if name_taken(&catalog, name, false)? {
            return Err(ServerError::Internal(format!("{name} exists")));
        }
        let (query_sql, planned) = self.plan_new_view(&catalog, query, &[], false).await?;
        self.install_view(
            &catalog,
            name.to_string(),
            query_sql,
            planned,
            false,
            ViewKind::Subscription,
        )
        .await
    }

    /// Adds a planned view (or a sink, or a subscription's view) to the catalog and the
    /// engine in one DDL, then starts its readers; its id.
    pub(super) async fn install_view(
        &self,
        catalog: &Catalog,
        name: String,
        query_sql: String,
        planned: freshet_planner::stream_planner::PlannedView,
        emit_on_window_close: bool,
        kind: ViewKind,
    ) -> Result<u64> {
        let (sink, subscription, index) = match kind {
            ViewKind::Materialized => (None, false, None),
            ViewKind::Sink(s) => (Some(s), false, None),
            ViewKind::Subscription => (None, true, None),
            ViewKind::Index(i) => (None, false, Some(i)),
        };
        let subscription_view = subscription;
        let (parallelism, shards, adaptive) = self.new_view_parallelism()?;
        let name_for_job = name.clone();
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
            subscription,
            pg_text_casts: true,
            dialect: freshet_planner::dialect::CURRENT,
            parallelism,
            max_parallelism: Some(shards),
            adaptive,
            two_phase_agg: self.two_phase_agg(),
            index,
            time_zone: self.time_zone().arrow_tz().map(|z| z.to_string()),
        };
        let desc_schema = planned.schema.clone();
        let plan_text = planned.plan.to_string();
        let desc = ViewDesc {
            id,
            name,
            schema: planned.schema.clone(),
            plan: planned.plan,
            append_only: planned.append_only,
            output: view_output(&def),
            parallelism: crate::session::db::parallelism(&def, self.db.streaming_parallelism),
            refuses_specials: def.dialect < freshet_planner::numeric_special::LEVEL,
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
        let job =
            (!subscription_view).then(|| self.db.jobs.start("backfill", &name_for_job, Some(id)));
        if let Err(e) = self
            .db
            .engine
            .ddl(Ddl::CreateView(desc), next.to_json())
            .await
        {
            if readable {
                schemas().remove(&id);
            }
            if let Some(j) = job {
                self.db
                    .jobs
                    .finish(j, crate::jobs::State::Failed(e.to_string()), None);
            }
            return Err(e.into());
        }
        if let Some(j) = job {
            self.db.jobs.finish(j, crate::jobs::State::Done, None);
        }
        self.db.set_catalog(next.clone());
        self.db
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, plan_text);
        if let Some(v) = next.views.last() {
            self.db
                .sinks
                .start(&self.db.store, &next, v, &desc_schema)?;
            let reads_kafka = v.depends_on.iter().any(|d| {
                next.source_by_id(*d)
                    .is_some_and(|s| s.connector == freshet_planner::catalog::ConnectorKind::Kafka)
            });
            // Before the readers start, so that it counts every row they read.
            if reads_kafka && !subscription_view {
                self.db.jobs.start("catch up", &v.name, Some(id));
            }
            self.db.start_readers(&next, v)?;
        }
        Ok(id)
    }

    /// Plans a view's (or a sink's) query: the SQL to store and the streaming plan.
    pub(super) async fn plan_new_view(
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
            .context_for(&self.limits(), catalog, &query_stmt, false, None, &[])?;
        freshet_planner::session_zone::set(&ctx, self.time_zone());
        freshet_planner::pg_values::view_text_forms(&ctx);
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
    pub(super) async fn explain_view(&self, cv: &ast::CreateView) -> Result<Output> {
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

    pub(super) async fn drop(
        &self,
        object_type: ObjectType,
        if_exists: bool,
        names: &[ObjectName],
        cascade: bool,
    ) -> Result<Output> {
        let catalog = self.db.catalog();
        let plain = |n: &ObjectName| {
            relation_name(&catalog, n)
                .ok()
                .is_some_and(|n| catalog.plain_view(&n).is_some())
        };
        let expected = match object_type {
            ObjectType::Table => RelationKind::Table,
            // DROP VIEW of a materialized view drops it, as it always has here.
            ObjectType::View if names.iter().all(plain) => RelationKind::PlainView,
            ObjectType::MaterializedView | ObjectType::View => RelationKind::View,
            ObjectType::Index => RelationKind::Index,
            other => return Err(ServerError::Unsupported(format!("DROP {other}"))),
        };
        // `DROP VIEW IF EXISTS` of a name that is nothing: Postgres' notice names a view.
        let mut names = names.to_vec();
        if object_type == ObjectType::View && if_exists {
            names.retain(|n| match relation_name(&catalog, n) {
                Ok(name) if catalog.kind_of(&name).is_none() => {
                    self.notice_missing("view", &name);
                    false
                }
                _ => true,
            });
        }
        let out = self
            .drop_relations(expected, if_exists, &names, cascade)
            .await?;
        Ok(match out {
            // `DROP VIEW` answers `DROP VIEW`, also for a materialized view.
            Output::Command { .. } if object_type == ObjectType::View => command("DROP VIEW"),
            other => other,
        })
    }

    pub(super) async fn drop_relations(
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
            RelationKind::Index => ("index", "DROP INDEX"),
            RelationKind::PlainView => ("view", "DROP VIEW"),
        };
        let _ddl = self.db.ddl_lock.lock().await;
        for n in names {
            let catalog = self.db.catalog();
            let name = match relation_name(&catalog, n) {
                // Postgres skips a name in a schema that does not exist, with a notice.
                Err(ServerError::UndefinedSchema(schema)) if if_exists => {
                    self.notice_missing("schema", &schema);
                    continue;
                }
                other => other?,
            };
            // A primary key's index goes only with its table.
            if expected == RelationKind::Index && catalog.kind_of(&name).is_none() {
                if let Some(t) = catalog
                    .tables
                    .iter()
                    .find(|t| !t.pk.is_empty() && format!("{}_pkey", t.name) == name)
                {
                    return Err(PlannerError::DependentObjects {
                        kind: "index",
                        name: name.clone(),
                        detail: format!("constraint {name} on table {} requires it", t.name),
                    }
                    .into());
                }
            }
            let id = match id_of(&catalog, &name, expected, kind_name)? {
                None if if_exists => {
                    self.notice_missing(kind_name, &name);
                    continue;
                }
                None => return Err(PlannerError::UndefinedTable(name).into()),
                Some(id) => id,
            };
            // Everything that reads it, transitively, in creation order.
            let mut doomed = vec![id];
            for v in &catalog.views {
                if doomed.iter().any(|d| v.needs(*d)) {
                    doomed.push(v.id);
                }
            }
            // A relation's indexes go with it, as in Postgres; whatever else reads it
            // needs CASCADE.
            let indexes_only = doomed[1..].iter().all(|d| {
                catalog
                    .view_by_id(*d)
                    .and_then(|v| v.index.as_ref())
                    .is_some_and(|i| i.on == id)
            });
            // Plain views that read it (by name): dropped with CASCADE, else they stop it.
            let readers = Db::plain_views_reading(&catalog, &name);
            if !readers.is_empty() && !cascade {
                let detail: Vec<String> = readers
                    .iter()
                    .map(|v| format!("view {} depends on {kind_name} {name}", v.name))
                    .collect();
                return Err(PlannerError::DependentObjects {
                    kind: kind_name,
                    name,
                    detail: detail.join("\n"),
                }
                .into());
            }
            for v in &readers {
                self.db.drop_plain_view(v.id).await?;
            }
            if expected == RelationKind::PlainView {
                self.db.drop_plain_view(id).await?;
                continue;
            }
            if !indexes_only && !cascade {
                let dependents: Vec<String> = catalog
                    .dependents(id)
                    .iter()
                    .filter(|v| v.index.is_none())
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
            for victim in doomed.into_iter().rev() {
                self.db.drop_one(victim).await?;
            }
        }
        Ok(command(tag))
    }

    /// `ALTER {MATERIALIZED VIEW | SINK} name SET PARALLELISM …`: the most threads the
    /// view's shards run on from now on (`None`: adaptive, the server's setting at every
    /// start), at most its shards (`max_parallelism`, fixed when it was created). No state
    /// moves: each thread runs whole shards.
    pub(super) async fn alter_parallelism(
        &self,
        expected: RelationKind,
        name: &ObjectName,
        parallelism: Option<usize>,
    ) -> Result<Output> {
        let (kind_name, tag) = match expected {
            RelationKind::Sink => ("sink", "ALTER SINK"),
            _ => ("materialized view", "ALTER MATERIALIZED VIEW"),
        };
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, name)?;
        let Some(id) = id_of(&catalog, &name, expected, kind_name)? else {
            return Err(PlannerError::UndefinedTable(name).into());
        };
        let mut next = (*catalog).clone();
        let def = next
            .views
            .iter_mut()
            .find(|v| v.id == id)
            .ok_or_else(|| PlannerError::UndefinedTable(name.clone()))?;
        let shards = def.shards();
        let threads = match parallelism {
            Some(p) if p > shards => {
                return Err(ServerError::InvalidOption(format!(
                    "parallelism {p} exceeds the max parallelism of {kind_name} \"{name}\" \
                     ({shards}): its state is split into {shards} shards when it is created \
                     (streaming_max_parallelism), and a thread runs whole shards"
                )))
            }
            Some(p) => p,
            None => self.db.streaming_parallelism.min(shards),
        };
        def.max_parallelism = Some(shards);
        def.parallelism = threads;
        def.adaptive = parallelism.is_none();
        self.db
            .engine
            .ddl(Ddl::SetParallelism { view: id, threads }, next.to_json())
            .await?;
        self.db.set_catalog(next);
        Ok(command(tag))
    }
}

/// The id of relation `name` if it is a `expected` (an error naming `kind_name` if it is
/// something else); `None` if nothing has that name.
fn id_of(
    catalog: &Catalog,
    name: &str,
    expected: RelationKind,
    kind_name: &'static str,
) -> Result<Option<u64>> {
    match catalog.kind_of(name) {
        None => Ok(None),
        Some((kind, _)) if kind != expected => Err(PlannerError::WrongObjectType {
            name: name.to_string(),
            expected: kind_name,
        }
        .into()),
        Some((_, id)) => Ok(Some(id)),
    }
}

/// What `install_view` installs.
pub(super) enum ViewKind {
    Materialized,
    Sink(SinkDef),
    Subscription,
    Index(freshet_planner::catalog::IndexDef),
}

impl Db {
    /// Drops relation `victim` (whatever reads it must be gone already): its readers
    /// stop, and the catalog and the engine forget it in one DDL. The caller holds the
    /// DDL lock.
    pub(super) async fn drop_one(&self, victim: u64) -> Result<()> {
        self.drop_one_and(victim, |_| {}).await
    }

    /// [`Db::drop_one`], with `edit` applied to the catalog committed with the drop (in
    /// the same commit).
    pub(super) async fn drop_one_and(
        &self,
        victim: u64,
        edit: impl FnOnce(&mut Catalog),
    ) -> Result<()> {
        let mut next = (*self.catalog()).clone();
        let victim_name = next.view_by_id(victim).map(|v| v.name.clone());
        let sink = match self.sinks.take(victim) {
            Some((spec, handle, upstream)) => {
                // Off the async workers: the delivery may be in a broker call.
                let _ = tokio::task::spawn_blocking(move || drop(handle)).await;
                Some((spec, upstream))
            }
            None => None,
        };
        self.stop_readers(victim);
        next.tables.retain(|t| t.id != victim);
        next.sources.retain(|s| s.id != victim);
        next.views.retain(|v| v.id != victim);
        edit(&mut next);
        if let Err(e) = self.engine.ddl(Ddl::Drop(victim), next.to_json()).await {
            // Not dropped after all (the commit failed): its readers go on.
            let current = self.catalog();
            if let Some((spec, upstream)) = sink {
                self.sinks.start_spec(&self.store, spec, upstream)?;
            }
            if let Some(v) = current.view_by_id(victim) {
                self.start_readers(&current, v)?;
            } else if let Some(t) = current.tables.iter().find(|t| t.id == victim) {
                self.start_table_reader(t)?;
            }
            return Err(e.into());
        }
        self.sinks.forget_relation(victim);
        self.view_schemas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&victim);
        self.plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&victim);
        if let Some(name) = &victim_name {
            freshet_engine::metrics::metrics().forget_relation(name);
        }
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&victim);
        self.set_catalog(next);
        Ok(())
    }

    /// Drops the view of a `SUBSCRIBE TO (query)` that ended (unless a view was built on
    /// it since).
    pub(super) async fn drop_subscription_view(&self, id: u64) -> Result<()> {
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        if catalog.view_by_id(id).is_none() || !catalog.dependents(id).is_empty() {
            return Ok(());
        }
        self.drop_one(id).await
    }
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
        let ty = SqlType::from_ast(&c.data_type)?;
        let mut default = None;
        for opt in &c.options {
            match &opt.option {
                ColumnOption::NotNull => not_null = true,
                ColumnOption::Default(e) => {
                    default = Some(super::defaults::checked(&cname, &ty, e)?);
                }
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
            ty,
            not_null,
            default,
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
    if pk.is_empty() {
        no_row_id_column(&columns)?;
    }
    Ok((columns, pk))
}

/// A table without a primary key has the hidden `_row_id`: none of its columns may be
/// named so (`42701`, as Postgres' system columns).
pub(super) fn no_row_id_column(columns: &[ColumnDef]) -> Result<()> {
    match columns
        .iter()
        .find(|c| c.name == freshet_planner::catalog::ROW_ID)
    {
        Some(c) => Err(ServerError::SystemColumn(c.name.clone())),
        None => Ok(()),
    }
}

/// Whether `name` is taken: `Ok(true)` with IF NOT EXISTS (the statement does nothing),
/// an error without it.
impl Session {
    /// Whether a `CREATE [IF NOT EXISTS] name` does nothing: `name` is taken and the
    /// statement says `IF NOT EXISTS` (with a notice, as Postgres); an error if it is
    /// taken and does not.
    pub(super) fn skip_existing(
        &self,
        catalog: &Catalog,
        name: &str,
        if_not_exists: bool,
    ) -> Result<bool> {
        let skip = name_taken(catalog, name, if_not_exists)?;
        if skip {
            self.notice_exists(name);
        }
        Ok(skip)
    }
}

pub(super) fn name_taken(catalog: &Catalog, name: &str, if_not_exists: bool) -> Result<bool> {
    match catalog.kind_of(name) {
        None => Ok(false),
        Some(_) if if_not_exists => Ok(true),
        Some(_) => Err(PlannerError::DuplicateTable(name.to_string()).into()),
    }
}

/// The one column of `EXPLAIN CREATE MATERIALIZED VIEW`.
pub(super) fn query_plan_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "QUERY PLAN",
        DataType::Utf8,
        false,
    )]))
}

/// The columns of `WITH VERSION COLUMN (…)`, which only OVERWRITE and DO UPDATE IF NOT NULL
/// compare (as RisingWave).
fn version_columns(
    columns: &[freshet_planner::catalog::ColumnDef],
    mode: Option<freshet_planner::catalog::OnConflictMode>,
    names: &[ast::Ident],
) -> Result<Vec<usize>> {
    use freshet_planner::catalog::OnConflictMode;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if !matches!(
        mode,
        Some(OnConflictMode::Overwrite | OnConflictMode::UpdateNonNull)
    ) {
        return Err(ServerError::Unsupported(
            "WITH VERSION COLUMN with ON CONFLICT IGNORE (only OVERWRITE, DO UPDATE FULL and \
             DO UPDATE IF NOT NULL compare versions)"
                .into(),
        ));
    }
    let mut out = Vec::new();
    for n in names {
        let n = freshet_planner::naming::ident_name(n);
        let i = columns
            .iter()
            .position(|c| c.name == n)
            .ok_or_else(|| PlannerError::UndefinedColumn(n.clone()))?;
        if out.contains(&i) {
            return Err(PlannerError::DuplicateColumn(n).into());
        }
        out.push(i);
    }
    Ok(out)
}
