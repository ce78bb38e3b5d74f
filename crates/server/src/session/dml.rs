//! Writes to tables: `INSERT` (VALUES or a query), `UPDATE` and `DELETE`. The rows to
//! delete and insert are computed with DataFusion, then sent to the engine's coordinator
//! (`Session::write`); an UPDATE or DELETE that raced with another writer is recomputed
//! (`Session::retrying_write`).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use freshet_engine::coordinator::TableWrite;
use freshet_engine::EngineError;
use freshet_planner::catalog::{RelationKind, TableDef};
use freshet_planner::context::{bind, referenced_tables};
use freshet_planner::sqlparser::ast::{
    self, AssignmentTarget, FromTable, ObjectName, Statement, TableFactor,
};
use freshet_planner::PlannerError;

use super::query::{cast_batch, cast_column, with_params};
use super::upsert::OnConflict;
use super::{object_name, relation_name, Output, Session};
use crate::error::{Result, ServerError};

/// Maximum number of times a write is recomputed after a concurrent change.
const WRITE_RETRIES: usize = 20;

impl Session {
    pub(super) fn writable_table(&self, name: &ObjectName) -> Result<TableDef> {
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, name)?;
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
            Some((RelationKind::PlainView, _)) => Err(ServerError::WrongObjectType(format!(
                "cannot change view \"{name}\": it is a query over other relations"
            ))),
            Some((RelationKind::Index, _)) => Err(ServerError::WrongObjectType(format!(
                "cannot change index \"{name}\": it follows its relation"
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
    pub(super) async fn write(
        &self,
        table: &TableDef,
        deletes: Vec<RecordBatch>,
        inserts: Vec<RecordBatch>,
    ) -> Result<u64> {
        // A table without a primary key: each new row gets its hidden row id here, so
        // that a transaction's later statements can name it before COMMIT.
        let inserts = if table.row_id {
            let stored = table.stored_schema();
            inserts
                .iter()
                .map(|b| freshet_engine::row_ids::with_row_ids(b, &stored))
                .collect::<std::result::Result<Vec<_>, _>>()?
        } else {
            inserts
        };
        let write = TableWrite {
            table: table.id,
            deletes,
            inserts,
        };
        match self.defer_write(table, write)? {
            Some(write) => Ok(self.db.engine.write(write, self.implicit_flush()).await?),
            // In a transaction: written at COMMIT (late rows are told apart then).
            None => Ok(0),
        }
    }

    pub(super) async fn insert(
        &self,
        stmt: &Statement,
        insert: &ast::Insert,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let zone = self.time_zone();
        if insert.returning.is_some() {
            return Err(ServerError::Unsupported(
                "INSERT … RETURNING is not supported yet".into(),
            ));
        }
        let ast::TableObject::TableName(name) = &insert.table else {
            return Err(ServerError::Unsupported(
                "INSERT INTO a table function".into(),
            ));
        };
        let table = self.writable_table(name)?;
        let mut listed: Vec<String> = Vec::with_capacity(insert.columns.len());
        for c in &insert.columns {
            let c = object_name(c);
            if listed.contains(&c) {
                return Err(PlannerError::DuplicateColumn(c).into());
            }
            listed.push(c);
        }
        let alias = match &insert.table_alias {
            Some(a) => freshet_planner::naming::ident_name(&a.alias),
            None => freshet_planner::schemas::split(&table.name).1.to_string(),
        };
        let on_conflict = match &insert.on {
            Some(on) => Some(OnConflict::of_insert(on, &table, &alias, params)?),
            None => OnConflict::of_table(&table),
        };
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
            &self.pending_writes(),
        )?;
        // The values are computed as the same SELECT computes them.
        freshet_planner::pg_values::client_query(&ctx, self.time_zone());
        let schema = table.schema();
        let batches = match &insert.source {
            // INSERT … VALUES: DataFusion types the values (and `$n`) by the target columns.
            Some(src) if matches!(src.body.as_ref(), ast::SetExpr::Values(_)) => {
                // The columns it leaves out (or gives as DEFAULT) get their defaults.
                let completed = super::defaults::complete_values(stmt, &table)?;
                let plan = bind(&ctx, completed.as_ref().unwrap_or(stmt)).await?;
                let LogicalPlan::Dml(dml) = plan else {
                    return Err(PlannerError::Internal("INSERT did not plan as DML".into()).into());
                };
                let input = with_params(dml.input.as_ref().clone(), params)?;
                let batches = ctx.execute_logical_plan(input).await?.collect().await?;
                batches
                    .iter()
                    .map(|b| cast_batch(b, &schema, &zone))
                    .collect::<Result<Vec<_>>>()?
            }
            // INSERT … SELECT: run the query, then place its columns.
            Some(src) => {
                let query = insert_source(src);
                let plan = with_params(bind(&ctx, &query).await?, params)?;
                // Without a column list, a query of fewer columns fills the first ones
                // (the rest get their defaults), as in Postgres.
                let width = plan.schema().fields().len().min(schema.fields().len());
                let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
                let targets: Vec<usize> = if insert.columns.is_empty() {
                    (0..width).collect()
                } else {
                    insert
                        .columns
                        .iter()
                        .map(|c| table.column_index(&object_name(c)))
                        .collect::<Result<_, _>>()?
                };
                batches
                    .iter()
                    .map(|b| {
                        super::defaults::fill(
                            place_columns(b, &targets, &schema, &zone)?,
                            &table,
                            &targets,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            // INSERT … DEFAULT VALUES: one row of defaults.
            None => {
                let columns = table
                    .columns
                    .iter()
                    .map(|c| super::defaults::column_values(c, 1))
                    .collect::<Result<Vec<_>>>()?;
                vec![RecordBatch::try_new(schema.clone(), columns)?]
            }
        };
        if let Some(on) = &on_conflict {
            let n = self.upsert(Some(&ctx), &table, &batches, on).await?;
            return Ok(Output::Command {
                tag: "INSERT 0".into(),
                rows: Some(n),
            });
        }
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        let late = self.write(&table, vec![], batches).await?;
        Ok(Output::Command {
            tag: "INSERT 0".into(),
            rows: Some(n.saturating_sub(late as usize)),
        })
    }

    pub(super) async fn update(
        &self,
        update: &ast::Update,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let zone = self.time_zone();
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
        no_row_id_assignment(&table, update)?;
        // With the row id of a table without a primary key: the rows are known by it.
        let schema = table.stored_schema();
        let mut assigned: Vec<(usize, String)> = Vec::new();
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(col) = &a.target else {
                return Err(ServerError::Unsupported("UPDATE of a column tuple".into()));
            };
            let col = object_name(col);
            let idx = table.column_index(&col)?;
            if assigned.iter().any(|(i, _)| *i == idx) {
                return Err(ServerError::Unsupported(format!(
                    "multiple assignments to same column \"{col}\""
                )));
            }
            // `SET c = DEFAULT`: the column's default, or NULL.
            let value = if super::defaults::is_default_keyword(&a.value) {
                table.columns[idx]
                    .default
                    .clone()
                    .unwrap_or_else(|| "NULL".into())
            } else {
                a.value.to_string()
            };
            assigned.push((idx, value));
        }
        let new_exprs: Vec<String> = assigned
            .iter()
            .enumerate()
            .map(|(k, (_, e))| format!(", ({e}) AS \"__freshet_new_{k}\""))
            .collect();
        let sql = format!(
            "SELECT *{}{} FROM {}{}",
            row_id_item(&table),
            new_exprs.concat(),
            update.table,
            where_clause(&update.selection)
        );
        let ncols = schema.fields().len();
        self.retrying_write(&table, &sql, params, |batch| {
            let old = batch.project(&(0..ncols).collect::<Vec<_>>())?;
            let mut cols = old.columns().to_vec();
            for (k, (idx, _)) in assigned.iter().enumerate() {
                cols[*idx] = cast_column(
                    batch.column(ncols + k),
                    schema.field(*idx).data_type(),
                    &zone,
                )?;
            }
            let new = RecordBatch::try_new(schema.clone(), cols)?;
            Ok((cast_batch(&old, &schema, &zone)?, new))
        })
        .await
        .map(|n| Output::Command {
            tag: "UPDATE".into(),
            rows: Some(n),
        })
    }

    pub(super) async fn delete(
        &self,
        delete: &ast::Delete,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let zone = self.time_zone();
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
        let schema = table.stored_schema();
        let sql = format!(
            "SELECT *{} FROM {}{}",
            row_id_item(&table),
            from[0],
            where_clause(&delete.selection)
        );
        self.retrying_write(&table, &sql, params, |batch| {
            let old = cast_batch(batch, &schema, &zone)?;
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
}

/// `UPDATE … SET _row_id = …` of a table that numbers its rows: refused as Postgres
/// refuses assigning to a system column.
pub(super) fn no_row_id_assignment(table: &TableDef, update: &ast::Update) -> Result<()> {
    for a in &update.assignments {
        if let AssignmentTarget::ColumnName(col) = &a.target {
            let col = object_name(col);
            if table.row_id && col == freshet_planner::catalog::ROW_ID {
                return Err(ServerError::Unsupported(format!(
                    "cannot assign to system column \"{col}\""
                )));
            }
        }
    }
    Ok(())
}

/// The select item that reads the hidden row id of `table`'s rows, if it has one.
fn row_id_item(table: &TableDef) -> &'static str {
    if table.row_id {
        ", \"_row_id\""
    } else {
        ""
    }
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

/// Builds rows of `schema` from `b`, whose column `i` goes to column `targets[i]`; the
/// other columns are NULL.
fn place_columns(
    b: &RecordBatch,
    targets: &[usize],
    schema: &SchemaRef,
    zone: &freshet_planner::pg_text::Zone,
) -> Result<RecordBatch> {
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
        cols[dst] = cast_column(b.column(src), schema.field(dst).data_type(), zone)?;
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// The query of an INSERT … SELECT, as it is planned. Its columns are placed by
/// position, so two of one name (`SELECT i, i`) are fine, as in Postgres.
pub(super) fn insert_source(source: &ast::Query) -> Statement {
    let mut source = source.clone();
    freshet_planner::naming::name_select_items(&mut source, true);
    Statement::Query(Box::new(source))
}
