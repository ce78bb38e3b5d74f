//! Queries: `SELECT` and `EXPLAIN` (`Session::query`, with the point-lookup shortcut),
//! `describe` (a statement's parameter types and result columns, without running it),
//! the SELECTs that writes compute their rows with (`Session::select`), and the
//! DataFusion session a statement is planned and run in (`Db::context_for`: the relations
//! it names, with their committed rows from one snapshot). Also the helpers they share:
//! result column names, `$n` parameters, and casting batches to the promised types.

use std::sync::Arc;

use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use freshet_engine::chunk::{column_types, rows_to_batch};
use freshet_engine::coordinator::{
    late_events_schema, source_errors_schema, TableWrite, LATE_EVENTS, SOURCE_ERRORS,
};
use freshet_planner::catalog::Catalog;
use freshet_planner::context::{
    bind, new_session_with, referenced_tables, register, register_in_schema, reserve_loaded, Limits,
};
use freshet_planner::hidden_columns;
use freshet_planner::naming::{display_name, name_select_items};
use freshet_planner::parser::{self, Stmt};
use freshet_planner::pg_values;
use freshet_planner::sqlparser::ast::{self, Statement};
use freshet_planner::PlannerError;
use freshet_storage::{decode_relation, keys, prefix_end, RowLayout};

use super::ddl::query_plan_schema;
use super::system_tables::{COMPUTED, LATE_EVENTS_NAME, SOURCE_ERRORS_NAME};
use super::{names_schema, Db, Output, Session};
use crate::error::{Result, ServerError};
use crate::stored::{memory_budget, relation_batches, scan_within, StoredRelation};

impl Session {
    /// Parameter types and result schema of a statement, without running it.
    pub async fn describe(
        &self,
        stmt: &Stmt,
    ) -> Result<(Vec<Option<DataType>>, Option<SchemaRef>)> {
        let stmt = self.with_plain_views(stmt)?;
        let stmt = stmt.as_ref();
        let s = match stmt {
            Stmt::Sql(s) => s,
            Stmt::ShowSources | Stmt::ShowSinks => return Ok((vec![], Some(names_schema()))),
            Stmt::ShowCreate { .. } => return Ok((vec![], Some(super::show_create_schema()))),
            Stmt::Subscribe(sub) => {
                return Ok((vec![], Some(Box::pin(self.subscribe_schema(sub)).await?)))
            }
            _ => return Ok((vec![], None)),
        };
        match s.as_ref() {
            Statement::Fetch { name, .. } => {
                Ok((vec![], self.cursor_schema(&super::ident_name(name))))
            }
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
                // The table written is named, and must be writable, as when the statement
                // runs: not a view, source, sink or index.
                if let Some(target) = dml_target(s) {
                    self.writable_table(target)?;
                }
                let catalog = self.db.catalog();
                let s = with_pg_names(&self.pg_compatible(&catalog, s));
                if let Some(schema) = super::pg::empty_result(&s) {
                    return Ok((vec![], Some(schema)));
                }
                reject_sinks(&catalog, &s)?;
                let ctx = self
                    .db
                    .context_for(&self.limits(), &catalog, &s, false, None, &[])?;
                if matches!(s, Statement::Query(_) | Statement::Explain { .. }) {
                    pg_values::client_query(&ctx, self.time_zone());
                }
                self.register_pg(&ctx, &catalog, &s)?;
                let plan = match &s {
                    // See `insert`: INSERT … SELECT is planned as its query.
                    Statement::Insert(ast::Insert {
                        source: Some(src), ..
                    }) if !matches!(src.body.as_ref(), ast::SetExpr::Values(_)) => {
                        bind(&ctx, &super::dml::insert_source(src)).await?
                    }
                    // `SET c = DEFAULT` is the column's default.
                    Statement::Update(_) => {
                        let completed = match dml_target(&s) {
                            Some(target) => {
                                let table = self.writable_table(target)?;
                                if let Statement::Update(u) = &s {
                                    super::dml::no_row_id_assignment(&table, u)?;
                                }
                                super::defaults::complete_update(&s, &table)?
                            }
                            None => None,
                        };
                        bind(&ctx, completed.as_ref().unwrap_or(&s)).await?
                    }
                    // INSERT … DEFAULT VALUES: no parameters, no result.
                    Statement::Insert(ast::Insert { source: None, .. }) => {
                        return Ok((vec![], None));
                    }
                    // See `insert`: the columns INSERT … VALUES leaves out get defaults.
                    Statement::Insert(_) => {
                        let completed = match dml_target(&s) {
                            Some(target) => {
                                let table = self.writable_table(target)?;
                                super::defaults::complete_values(&s, &table)?
                            }
                            None => None,
                        };
                        bind(&ctx, completed.as_ref().unwrap_or(&s)).await?
                    }
                    _ => bind(&ctx, &s).await?,
                };
                let mut types = param_types(&plan)?;
                if let (Statement::Insert(insert), Some(target)) = (&s, dml_target(&s)) {
                    let table = self.writable_table(target)?;
                    super::upsert::add_param_types(insert, &table, &mut types);
                }
                let schema = match s {
                    Statement::Query(_) | Statement::Explain { .. } => Some(
                        self.db
                            .column_origins(&catalog, result_schema(&ctx, &plan)?),
                    ),
                    _ => None,
                };
                Ok((types, schema))
            }
            Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowSchemas { .. } => Ok((vec![], Some(names_schema()))),
            Statement::ShowVariable { variable } => {
                let name = super::vars::variable_name(variable);
                Ok((
                    vec![],
                    Some(Arc::new(Schema::new(vec![Field::new(
                        super::vars::shown_name(&name),
                        DataType::Utf8,
                        true,
                    )]))),
                ))
            }
            _ => Ok((vec![], None)),
        }
    }

    pub(super) async fn query(&self, stmt: &Statement, params: &[ScalarValue]) -> Result<Output> {
        let catalog = self.db.catalog();
        // A transaction's own writes are not in storage yet: the general path shows them.
        let pending = self.pending_writes();
        if pending.is_empty() {
            if let Some(out) = self.point_lookup(&catalog, stmt, params)? {
                return Ok(out);
            }
        }
        let stmt = with_pg_names(&self.pg_compatible(&catalog, stmt));
        if let Some(schema) = super::pg::empty_result(&stmt) {
            return Ok(Output::Rows {
                schema,
                batches: vec![],
            });
        }
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
            .context_for(&self.limits(), &catalog, &stmt, true, deadline, &pending)?;
        pg_values::client_query(&ctx, self.time_zone());
        self.register_pg(&ctx, &catalog, &stmt)?;
        let plan = with_params(bind(&ctx, &stmt).await?, params)?;
        let schema = self
            .db
            .column_origins(&catalog, result_schema(&ctx, &plan)?);
        // Safety net: send the type the client was told.
        let told = schema.clone();
        let zone = self.time_zone();
        let fix = move |b: RecordBatch| -> Result<RecordBatch> {
            let same = b
                .schema()
                .fields()
                .iter()
                .zip(told.fields())
                .all(|(a, f)| a.data_type() == f.data_type());
            if same {
                Ok(b)
            } else {
                cast_batch(&b, &told, &zone)
            }
        };
        let batches = self
            .db
            .queries
            .stream(
                deadline,
                async move {
                    Ok(ctx
                        .execute_logical_plan(plan)
                        .await?
                        .execute_stream()
                        .await?)
                },
                fix,
            )
            .await?;
        Ok(Output::Stream { schema, batches })
    }

    /// Answers a plain point query on a stored table or view without DataFusion (see
    /// `lookup.rs`); `None` when the query needs the general path.
    fn point_lookup(
        &self,
        catalog: &Catalog,
        stmt: &Statement,
        params: &[ScalarValue],
    ) -> Result<Option<Output>> {
        let Some(mut q) = crate::lookup::point_query(stmt) else {
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
        if let Some(out) = q.run(&self.db.store, id, &schema, layout, &pk, params)? {
            return Ok(Some(out));
        }
        // No equality on the relation's leading key column: one on an index's, if an
        // index stores every column the query names.
        let indexes = self.db.indexes_of(catalog, id, &schema);
        q.expand_star(&schema);
        for i in &indexes {
            let out = q.run(
                &self.db.store,
                i.id,
                &i.schema,
                RowLayout::Multiset,
                &[],
                params,
            )?;
            if out.is_some() {
                return Ok(out);
            }
        }
        Ok(None)
    }

    /// Runs a SELECT built from SQL text (with the statement's parameters) over a fresh
    /// snapshot.
    pub(super) async fn select(
        &self,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        let stmts = parser::parse(sql)?;
        let Some(Stmt::Sql(stmt)) = stmts.into_iter().next() else {
            return Err(PlannerError::Internal("empty generated query".into()).into());
        };
        let catalog = self.db.catalog();
        let deadline = self.deadline();
        let ctx = self.db.context_for(
            &self.limits(),
            &catalog,
            &stmt,
            true,
            deadline,
            &self.pending_writes(),
        )?;
        pg_values::client_query(&ctx, self.time_zone());
        let plan = with_params(bind(&ctx, &stmt).await?, params)?;
        self.db
            .queries
            .run(deadline, async move {
                Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
            })
            .await
    }
}

impl Db {
    /// A DataFusion session where the relations `stmt` names are registered, with their
    /// committed rows (`with_data`) or empty (planning only). All rows come from one
    /// snapshot.
    pub(super) fn context_for(
        &self,
        limits: &Limits,
        catalog: &Catalog,
        stmt: &Statement,
        with_data: bool,
        deadline: Option<std::time::Instant>,
        pending: &[TableWrite],
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
        // A table without a primary key also with its hidden row id, for a statement
        // that names it (see `freshet_planner::hidden_columns`).
        let names_row_id = hidden_columns::names_row_id(stmt);
        let stored: Vec<_> = names
            .iter()
            .filter(|_| names_row_id)
            .filter(|n| parser::lookup_target(n).is_none())
            .filter_map(|n| catalog.table(n).filter(|t| t.row_id))
            .map(|t| {
                (
                    hidden_columns::stored_name(&t.name),
                    t.id,
                    t.stored_schema(),
                    RowLayout::Keyed,
                )
            })
            .collect();
        rels.extend(stored);
        // The table `name` is, and the columns its rows are stored in.
        let table_of = |name: &str| {
            let name = parser::lookup_target(name).unwrap_or(name);
            catalog.table(hidden_columns::stored_target(name).unwrap_or(name))
        };
        let stored_types = |name: &str, schema: &SchemaRef| match table_of(name) {
            Some(t) if t.row_id => column_types(&t.stored_schema()),
            _ => column_types(schema),
        };
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
        for (name, computed) in COMPUTED.iter().copied() {
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
        // Stored tables and views stream from one snapshot, each scan reading only the key
        // range its filters allow (point lookups and small ranges on views). Rows a
        // transaction wrote but has not committed, sources and the dead-letter relations
        // are loaded up front instead, from one snapshot too.
        let streams = |(name, id, _, _): &(String, u64, SchemaRef, RowLayout)| {
            !pending.iter().any(|w| w.table == *id)
                && ![SOURCE_ERRORS_NAME, LATE_EVENTS_NAME].contains(&name.as_str())
                && !self.is_source(catalog, name)
        };
        if with_data && !rels.is_empty() && rels.iter().all(streams) {
            let snapshot =
                crate::stored::blocking(|| crate::scan::Snapshot::take(&self.store, &self.scans));
            for (name, id, schema, layout) in &rels {
                let pk = match table_of(name) {
                    Some(t) if hidden_columns::stored_target(name).is_some() => t.stored_pk(),
                    Some(t) => t.pk.clone(),
                    None => Vec::new(),
                };
                let table =
                    StoredRelation::new(self.store.clone(), *id, schema.clone(), *layout, &pk)
                        .with_indexes(name, self.indexes_of(catalog, *id, schema))
                        .with_deadline(deadline)
                        .with_scans(self.scans.clone())
                        .with_snapshot(snapshot.clone());
                freshet_planner::schemas::register(&ctx, name, Arc::new(table))?;
            }
            return Ok(ctx);
        }
        let data = if with_data {
            let budget = memory_budget(ctx.runtime_env().memory_pool.memory_limit());
            crate::stored::blocking(|| {
                self.store.read_snapshot(|r| {
                    rels.iter()
                        .map(|(name, id, schema, layout)| {
                            let prefix = keys::rows_prefix(*id);
                            let end = prefix_end(&prefix);
                            let pairs = scan_within(r, &prefix, end.as_deref(), budget, deadline)?;
                            let rows = decode_relation(
                                pairs,
                                prefix.len(),
                                &stored_types(name, schema),
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
        for ((name, id, schema, _), rows) in rels.into_iter().zip(data) {
            let mut rows = if pending.iter().any(|w| w.table == id) {
                with_pending(rows, pending.iter().filter(|w| w.table == id))?
            } else {
                rows
            };
            // Stored with a hidden row id, read without it.
            let width = schema.fields().len();
            for (row, _) in rows.iter_mut().filter(|(r, _)| r.len() > width) {
                row.truncate(width);
            }
            let batches = relation_batches(&schema, rows)?;
            let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
            let state = ctx.state();
            reserve_loaded(state.config(), state.runtime_env(), bytes)?;
            register(&ctx, &name, schema, batches)?;
        }
        Ok(ctx)
    }
}

/// A table's committed rows (with their multiplicities) with a transaction's writes to
/// it applied in order: what statements inside the transaction see.
fn with_pending<'a>(
    rows: Vec<(Vec<ScalarValue>, i64)>,
    writes: impl Iterator<Item = &'a TableWrite>,
) -> Result<Vec<(Vec<ScalarValue>, i64)>> {
    let mut by_row: std::collections::BTreeMap<Vec<u8>, (Vec<ScalarValue>, i64)> =
        std::collections::BTreeMap::new();
    for (row, n) in rows {
        by_row.insert(freshet_storage::codec::encode_row(&row)?, (row, n));
    }
    for w in writes {
        for (batches, sign) in [(&w.deletes, -1i64), (&w.inserts, 1)] {
            for b in batches {
                for row in freshet_engine::chunk::batch_rows(b)? {
                    let key = freshet_storage::codec::encode_row(&row)?;
                    let e = by_row.entry(key).or_insert((row, 0));
                    e.1 += sign;
                }
            }
        }
    }
    Ok(by_row.into_values().filter(|(_, n)| *n > 0).collect())
}

/// An error if `stmt` reads a sink (which keeps no rows).
pub(super) fn reject_sinks(catalog: &Catalog, stmt: &Statement) -> Result<()> {
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

/// The statement with Postgres names for unaliased result columns (see `naming`).
/// A query as clients expect Postgres to answer it: result columns named as Postgres
/// names them, then whole integer literals in the select list typed `integer`.
fn with_pg_names(stmt: &Statement) -> Statement {
    let mut stmt = stmt.clone();
    match &mut stmt {
        Statement::Query(q) => name_select_items(q, true),
        // `EXPLAIN SELECT a, a …` plans the query as it runs.
        Statement::Explain { statement, .. } => {
            if let Statement::Query(q) = statement.as_mut() {
                name_select_items(q, true);
            }
        }
        _ => {}
    }
    pg_values::int4_select_literals(&mut stmt);
    stmt
}

/// A plan's output schema with the names clients should see.
/// The columns a query returns: names as Postgres shows them, types after DataFusion's
/// type coercion (a UNION of INT and BIGINT is BIGINT), as execution produces them.
/// The result's columns as the client sees them; a column read straight from a stored
/// relation (through projections, filters, sorts, aliases) names it in its metadata:
/// the relation's name and column (see [`Db::column_origins`]).
fn result_schema(ctx: &SessionContext, plan: &LogicalPlan) -> Result<SchemaRef> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let analyzed = freshet_planner::context::analyzed(ctx, plan.clone())?;
    // Aliases of scanned relations (`FROM t AS x`).
    let mut scanned: std::collections::HashMap<String, String> = Default::default();
    // A table read with its hidden row id is that table.
    let table_of = |ts: &datafusion::logical_expr::TableScan| {
        let t = freshet_planner::schemas::relation_key(&ts.table_name);
        match freshet_planner::hidden_columns::stored_target(&t) {
            Some(t) => t.to_string(),
            None => t,
        }
    };
    let _ = analyzed.apply(|node| {
        match node {
            LogicalPlan::TableScan(ts) => {
                let t = table_of(ts);
                scanned.insert(t.clone(), t);
            }
            LogicalPlan::SubqueryAlias(sa) => {
                if let LogicalPlan::TableScan(ts) = sa.input.as_ref() {
                    scanned.insert(
                        freshet_planner::schemas::relation_key(&sa.alias),
                        table_of(ts),
                    );
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let df = analyzed.schema();
    Ok(Arc::new(Schema::new(
        (0..df.fields().len())
            .map(|i| {
                let (qualifier, f) = df.qualified_field(i);
                let mut f = f.as_ref().clone().with_name(display_name(f.name()));
                if let Some(rel) =
                    qualifier.and_then(|q| scanned.get(&freshet_planner::schemas::relation_key(q)))
                {
                    let mut meta = f.metadata().clone();
                    meta.insert(ORIGIN_RELATION.into(), rel.clone());
                    f = f.with_metadata(meta);
                }
                f
            })
            .collect::<Vec<_>>(),
    )))
}

/// Field metadata: the stored relation a result column is read from (by name, resolved
/// into OIDs by [`Db::column_origins`]).
const ORIGIN_RELATION: &str = "freshet.relation";

impl Db {
    /// Turns each result column's origin relation into RowDescription's table OID and
    /// column number (see `encode::TABLE_OID`), for tables and materialized views.
    pub(super) fn column_origins(&self, catalog: &Catalog, schema: SchemaRef) -> SchemaRef {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let mut meta = f.metadata().clone();
                let Some(rel) = meta.remove(ORIGIN_RELATION) else {
                    return f.as_ref().clone();
                };
                let position = if let Some(t) = catalog.table(&rel) {
                    t.columns
                        .iter()
                        .position(|c| c.name == *f.name())
                        .map(|p| (t.id, p))
                } else if let Some(v) = catalog.view(&rel) {
                    self.view_schemas
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&v.id)
                        .and_then(|s| s.index_of(f.name()).ok())
                        .map(|p| (v.id, p))
                } else {
                    None
                };
                if let Some((id, p)) = position {
                    meta.insert(
                        crate::encode::TABLE_OID.into(),
                        freshet_planner::pg_catalog::oids::relation(id).to_string(),
                    );
                    meta.insert(crate::encode::COLUMN_NUMBER.into(), (p + 1).to_string());
                }
                f.as_ref().clone().with_metadata(meta)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// `$1`, `$2`, … types inferred by DataFusion, in order.
pub(super) fn param_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
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

pub(super) fn with_params(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(plan);
    }
    Ok(plan.with_param_values(ParamValues::List(
        params.iter().cloned().map(Into::into).collect(),
    ))?)
}

pub(super) fn cast_column(
    c: &datafusion::arrow::array::ArrayRef,
    t: &DataType,
    zone: &freshet_planner::pg_text::Zone,
) -> Result<datafusion::arrow::array::ArrayRef> {
    if c.data_type() == t {
        return Ok(c.clone());
    }
    // Across the session's zone: a timestamptz written into a timestamp column is its
    // wall-clock time there, a timestamp or date into a timestamptz one read there.
    if let Some(read) = freshet_planner::session_zone::convert(c, t, zone) {
        return Ok(read?);
    }
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    if let Some(read) = freshet_planner::pg_input::text_to(c, t) {
        return read.map_err(ServerError::InvalidText);
    }
    let c = freshet_planner::literals::timestamp_strings(c, t);
    if let Some(read) = freshet_planner::session_zone::read_text(&c, t, zone, false) {
        return Ok(read?);
    }
    // A numeric or float stored in an integer column is rounded, not truncated.
    let c = freshet_planner::int_casts::round_for_int(&c, t).unwrap_or(c);
    freshet_engine::numeric_special::cast(&c, t, &opts).map_err(ServerError::DataFusion)
}

pub(super) fn cast_batch(
    b: &RecordBatch,
    schema: &SchemaRef,
    zone: &freshet_planner::pg_text::Zone,
) -> Result<RecordBatch> {
    let cols = b
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast_column(c, f.data_type(), zone))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// The table an INSERT, UPDATE or DELETE writes.
pub(super) fn dml_target(s: &Statement) -> Option<&ast::ObjectName> {
    fn factor(t: &ast::TableFactor) -> Option<&ast::ObjectName> {
        match t {
            ast::TableFactor::Table { name, .. } => Some(name),
            _ => None,
        }
    }
    match s {
        Statement::Insert(ast::Insert {
            table: ast::TableObject::TableName(n),
            ..
        }) => Some(n),
        Statement::Update(u) => factor(&u.table.relation),
        Statement::Delete(d) => match &d.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => {
                t.first().and_then(|t| factor(&t.relation))
            }
        },
        _ => None,
    }
}
