//! Inserts that meet an existing key: Postgres' `INSERT … ON CONFLICT [(key)] DO NOTHING |
//! DO UPDATE SET … [WHERE …]`, and RisingWave's tables declared `ON CONFLICT {OVERWRITE |
//! IGNORE | DO UPDATE IF NOT NULL}`, whose plain INSERTs (and COPY) resolve conflicts so.
//!
//! The statement reads the current rows of the keys it inserts (through the session's
//! reads, so a transaction sees its own writes), decides each row, and writes the
//! replaced rows as deletes and the results as inserts. Like an UPDATE, it is recomputed
//! if another writer changed one of those rows in between (`EngineError::Conflict`).

use std::collections::HashMap;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::prelude::SessionContext;
use freshet_engine::chunk::{batch_rows, rows_to_batch, Row};
use freshet_engine::conflict::{merge_non_null, not_older};
use freshet_engine::EngineError;
use freshet_planner::catalog::{OnConflictMode, TableDef};
use freshet_planner::sqlparser::ast;
use freshet_planner::PlannerError;

use super::query::cast_column;
use super::{object_name, Session};
use crate::error::{Result, ServerError};

/// Keys looked up per query.
const LOOKUP_BATCH: usize = 500;

/// What an insert does with a row whose key exists.
pub(super) enum OnConflict {
    /// `DO NOTHING` / `IGNORE`: the existing row stays.
    Nothing,
    /// RisingWave's `OVERWRITE`: the new row replaces it, unless the version columns
    /// (`WITH VERSION COLUMN`, may be none) say it is older.
    Overwrite(Vec<usize>),
    /// RisingWave's `DO UPDATE IF NOT NULL`: the new row's non-NULL values replace, unless
    /// its version columns say it is older.
    UpdateNonNull(Vec<usize>),
    /// `DO UPDATE SET col = expr, … [WHERE cond]` over the existing row (by the table's
    /// name or alias) and `excluded`.
    Update(Box<DoUpdate>),
}

/// `DO UPDATE SET col = expr, … [WHERE cond]`.
pub(super) struct DoUpdate {
    alias: String,
    assignments: Vec<(usize, ast::Expr)>,
    selection: Option<ast::Expr>,
    /// The statement's parameters (`$n` in the expressions).
    params: Vec<ScalarValue>,
}

impl OnConflict {
    /// The table's own `ON CONFLICT` clause (what its plain INSERTs and COPY do).
    pub(super) fn of_table(table: &TableDef) -> Option<OnConflict> {
        let versions = table.version_columns.clone();
        Some(match table.on_conflict? {
            OnConflictMode::Overwrite => OnConflict::Overwrite(versions),
            OnConflictMode::Ignore => OnConflict::Nothing,
            OnConflictMode::UpdateNonNull => OnConflict::UpdateNonNull(versions),
        })
    }

    /// Whether `new` may replace (or merge into) `old`.
    fn replaces(&self, old: &Row, new: &Row) -> bool {
        match self {
            OnConflict::Overwrite(v) | OnConflict::UpdateNonNull(v) => not_older(old, new, v),
            _ => true,
        }
    }

    /// An INSERT's `ON CONFLICT` clause, against `table` (written as `alias`).
    pub(super) fn of_insert(
        on: &ast::OnInsert,
        table: &TableDef,
        alias: &str,
        params: &[ScalarValue],
    ) -> Result<OnConflict> {
        let ast::OnInsert::OnConflict(c) = on else {
            return Err(ServerError::Unsupported(
                "ON DUPLICATE KEY UPDATE (MySQL's; write ON CONFLICT … DO UPDATE)".into(),
            ));
        };
        let no_match = || {
            ServerError::InvalidColumnReference(
                "there is no unique or exclusion constraint matching the ON CONFLICT \
                 specification"
                    .into(),
            )
        };
        match &c.conflict_target {
            None => {}
            Some(ast::ConflictTarget::Columns(cols)) => {
                let mut idx = cols
                    .iter()
                    .map(|c| table.column_index(&freshet_planner::naming::ident_name(c)))
                    .collect::<Result<Vec<_>, _>>()?;
                idx.sort_unstable();
                let mut pk = table.pk.clone();
                pk.sort_unstable();
                if idx != pk || pk.is_empty() {
                    return Err(no_match());
                }
            }
            Some(ast::ConflictTarget::OnConstraint(name))
                if table.pk.is_empty()
                    || object_name(name)
                        != format!("{}_pkey", freshet_planner::schemas::split(&table.name).1) =>
            {
                return Err(no_match());
            }
            Some(ast::ConflictTarget::OnConstraint(_)) => {}
        }
        Ok(match &c.action {
            ast::OnConflictAction::DoNothing => OnConflict::Nothing,
            ast::OnConflictAction::DoUpdate(_) if table.append_only => {
                return Err(ServerError::Unsupported(format!(
                    "ON CONFLICT DO UPDATE on the APPEND ONLY table \"{}\" (its rows are never \
                     replaced; DO NOTHING is allowed)",
                    table.name
                )))
            }
            ast::OnConflictAction::DoUpdate(u) => {
                if c.conflict_target.is_none() {
                    return Err(ServerError::Planner(PlannerError::Syntax {
                        message: "ON CONFLICT DO UPDATE requires inference specification or \
                                  constraint name"
                            .into(),
                        position: None,
                    }));
                }
                let mut assignments = Vec::new();
                for a in &u.assignments {
                    let ast::AssignmentTarget::ColumnName(col) = &a.target else {
                        return Err(ServerError::Unsupported(
                            "ON CONFLICT DO UPDATE of a column tuple".into(),
                        ));
                    };
                    let idx = table.column_index(&object_name(col))?;
                    if assignments.iter().any(|(i, _)| *i == idx) {
                        return Err(ServerError::Unsupported(format!(
                            "multiple assignments to same column \"{}\"",
                            table.columns[idx].name
                        )));
                    }
                    if table.pk.contains(&idx) {
                        return Err(ServerError::Unsupported(format!(
                            "ON CONFLICT DO UPDATE of a primary key column \"{}\"",
                            table.columns[idx].name
                        )));
                    }
                    assignments.push((idx, a.value.clone()));
                }
                OnConflict::Update(Box::new(DoUpdate {
                    alias: alias.to_string(),
                    assignments,
                    selection: u.selection.clone(),
                    params: params.to_vec(),
                }))
            }
        })
    }
}

impl Session {
    /// Inserts `batches` (rows of `table`'s schema) resolving key conflicts as `on` says;
    /// returns the rows inserted or updated.
    pub(super) async fn upsert(
        &self,
        ctx: Option<&SessionContext>,
        table: &TableDef,
        batches: &[RecordBatch],
        on: &OnConflict,
    ) -> Result<usize> {
        let schema = table.schema();
        let mut new_rows: Vec<Row> = Vec::new();
        for b in batches {
            new_rows.extend(batch_rows(b)?);
        }
        if table.pk.is_empty() {
            // No key, no conflict.
            let n = new_rows.len();
            let batch = rows_to_batch(schema.clone(), &new_rows)?;
            let late = self.write(table, vec![], vec![batch]).await?;
            return Ok(n.saturating_sub(late as usize));
        }
        let mut attempt = 0;
        loop {
            self.db.engine.flush().await?;
            let existing = self.current_rows(table, &new_rows).await?;
            let (deletes, inserts, n) = self.resolve(ctx, table, &existing, &new_rows, on)?;
            let deletes = rows_to_batch(schema.clone(), &deletes)?;
            let inserts = rows_to_batch(schema.clone(), &inserts)?;
            match self.write(table, vec![deletes], vec![inserts]).await {
                // A row changed, or a key was inserted, since the rows were read.
                Err(ServerError::Engine(
                    EngineError::Conflict | EngineError::DuplicateKey { .. },
                )) if attempt < 20 => attempt += 1,
                Err(e) => return Err(e),
                Ok(late) => return Ok(n.saturating_sub(late as usize)),
            }
        }
    }

    /// The current rows of the keys of `rows`, by encoded key.
    async fn current_rows(&self, table: &TableDef, rows: &[Row]) -> Result<HashMap<Vec<u8>, Row>> {
        let mut out = HashMap::new();
        let keys: Vec<Row> = rows
            .iter()
            .map(|r| table.pk.iter().map(|&i| r[i].clone()).collect::<Row>())
            .filter(|k: &Row| k.iter().all(|v| !v.is_null()))
            .collect();
        if keys.len() > LOOKUP_BATCH {
            // Many keys: one read of the table (an OR of keys is no key range).
            let wanted: std::collections::HashSet<Vec<u8>> = rows
                .iter()
                .map(|r| key_of(table, r))
                .collect::<Result<_>>()?;
            for b in self
                .select(
                    &format!(
                        "SELECT * FROM {}",
                        freshet_planner::schemas::quote_always(&table.name)
                    ),
                    &[],
                )
                .await?
            {
                let b = super::query::cast_batch(&b, &table.schema(), &self.time_zone())?;
                for row in batch_rows(&b)? {
                    let key = key_of(table, &row)?;
                    if wanted.contains(&key) {
                        out.insert(key, row);
                    }
                }
            }
            return Ok(out);
        }
        for chunk in keys.chunks(LOOKUP_BATCH) {
            let mut params = Vec::new();
            let mut conds = Vec::new();
            for key in chunk {
                let mut parts = Vec::new();
                for (k, &i) in table.pk.iter().enumerate() {
                    params.push(key[k].clone());
                    parts.push(format!(
                        "{} = ${}",
                        super::quoted_ident(&table.columns[i].name),
                        params.len()
                    ));
                }
                conds.push(format!("({})", parts.join(" AND ")));
            }
            let sql = format!(
                "SELECT * FROM {} WHERE {}",
                freshet_planner::schemas::quote_always(&table.name),
                conds.join(" OR ")
            );
            for b in self.select(&sql, &params).await? {
                let b = super::query::cast_batch(&b, &table.schema(), &self.time_zone())?;
                for row in batch_rows(&b)? {
                    out.insert(key_of(table, &row)?, row);
                }
            }
        }
        Ok(out)
    }

    /// The rows to delete and insert, and how many rows the statement inserted or
    /// updated.
    fn resolve(
        &self,
        ctx: Option<&SessionContext>,
        table: &TableDef,
        existing: &HashMap<Vec<u8>, Row>,
        new_rows: &[Row],
        on: &OnConflict,
    ) -> Result<(Vec<Row>, Vec<Row>, usize)> {
        let mut deletes = Vec::new();
        // Per key, the row this statement leaves (an index into `inserts`).
        let mut placed: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut inserts: Vec<Row> = Vec::new();
        // DO UPDATE pairs (existing, excluded) and where their results go.
        let mut updates: Vec<(Row, Row, usize)> = Vec::new();
        let mut n = 0;
        for row in new_rows {
            if table.pk.iter().any(|&i| row[i].is_null()) {
                // The write refuses it (23502).
                inserts.push(row.clone());
                continue;
            }
            let key = key_of(table, row)?;
            if let Some(&at) = placed.get(&key) {
                // The same key twice in one statement.
                match on {
                    OnConflict::Nothing => continue,
                    OnConflict::Update(_) => {
                        return Err(ServerError::CardinalityViolation(
                            "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
                        ))
                    }
                    _ if !on.replaces(&inserts[at], row) => {}
                    OnConflict::Overwrite(_) => inserts[at] = row.clone(),
                    OnConflict::UpdateNonNull(_) => inserts[at] = merge_non_null(&inserts[at], row),
                }
                continue;
            }
            let Some(old) = existing.get(&key) else {
                placed.insert(key, inserts.len());
                inserts.push(row.clone());
                n += 1;
                continue;
            };
            let result = match on {
                OnConflict::Nothing => continue,
                _ if !on.replaces(old, row) => continue,
                OnConflict::Overwrite(_) => row.clone(),
                OnConflict::UpdateNonNull(_) => merge_non_null(old, row),
                OnConflict::Update(_) => {
                    updates.push((old.clone(), row.clone(), inserts.len()));
                    old.clone()
                }
            };
            n += 1;
            placed.insert(key, inserts.len());
            deletes.push(old.clone());
            inserts.push(result);
        }
        if let OnConflict::Update(u) = on {
            let ctx = ctx.ok_or_else(|| {
                ServerError::Internal("ON CONFLICT DO UPDATE without a planning context".into())
            })?;
            let results = evaluate(ctx, table, u, &updates)?;
            // Rows the WHERE turns away stay as they are: neither deleted nor inserted.
            let mut dropped = Vec::new();
            for ((_, _, at), result) in updates.iter().zip(results) {
                match result {
                    Some(r) => inserts[*at] = r,
                    None => dropped.push(*at),
                }
            }
            if !dropped.is_empty() {
                n -= dropped.len();
                // A dropped row's placeholder is its old row, deleted and inserted again.
                let gone: std::collections::HashSet<usize> = dropped.into_iter().collect();
                let mut unchanged: HashMap<Vec<u8>, usize> = HashMap::new();
                for &at in &gone {
                    *unchanged.entry(key_of(table, &inserts[at])?).or_default() += 1;
                }
                deletes.retain(|d| match key_of(table, d) {
                    Ok(k) => match unchanged.get_mut(&k) {
                        Some(c) if *c > 0 => {
                            *c -= 1;
                            false
                        }
                        _ => true,
                    },
                    Err(_) => true,
                });
                let mut at = 0;
                inserts.retain(|_| {
                    at += 1;
                    !gone.contains(&(at - 1))
                });
            }
        }
        Ok((deletes, inserts, n))
    }
}

/// A row's encoded primary key.
fn key_of(table: &TableDef, row: &Row) -> Result<Vec<u8>> {
    let pk: Row = table.pk.iter().map(|&i| row[i].clone()).collect();
    Ok(freshet_storage::codec::encode_row(&pk).map_err(EngineError::from)?)
}

/// `DO UPDATE SET …  [WHERE …]` over each (existing, excluded) pair: the updated row, or
/// `None` where the WHERE is not true.
fn evaluate(
    ctx: &SessionContext,
    table: &TableDef,
    update: &DoUpdate,
    pairs: &[(Row, Row, usize)],
) -> Result<Vec<Option<Row>>> {
    let DoUpdate {
        alias,
        assignments,
        selection,
        params,
    } = update;
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let schema = table.schema();
    let both = Schema::new(
        schema
            .fields()
            .iter()
            .chain(schema.fields())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    );
    let both: SchemaRef = std::sync::Arc::new(both);
    let qualified = DFSchema::try_from_qualified_schema(
        datafusion::common::TableReference::bare(alias.as_str()),
        &schema,
    )?
    .join(&DFSchema::try_from_qualified_schema("excluded", &schema)?)?;
    let rows: Vec<Row> = pairs
        .iter()
        .map(|(old, new, _)| old.iter().chain(new).cloned().collect())
        .collect();
    let batch = rows_to_batch(both, &rows)?;
    let state = ctx.state();
    let eval = |e: &ast::Expr, batch: &RecordBatch| -> Result<std::sync::Arc<dyn Array>> {
        let logical = state.create_logical_expr(&e.to_string(), &qualified)?;
        // `$n` take the statement's parameters.
        let logical = logical
            .transform(|e| match &e {
                datafusion::logical_expr::Expr::Placeholder(p) => {
                    let value =
                        p.id.trim_start_matches('$')
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| params.get(n.checked_sub(1)?))
                            .ok_or_else(|| {
                                datafusion::error::DataFusionError::Plan(format!(
                                    "no value for parameter {}",
                                    p.id
                                ))
                            })?;
                    Ok(Transformed::yes(datafusion::logical_expr::lit(
                        value.clone(),
                    )))
                }
                _ => Ok(Transformed::no(e)),
            })?
            .data;
        let phys = state.create_physical_expr(logical, &qualified)?;
        Ok(phys.evaluate(batch)?.into_array(batch.num_rows())?)
    };
    // The WHERE first (NULL is false): SET is evaluated over the rows it keeps only, as
    // Postgres does (a SET that would fail on a row the WHERE turns away does not).
    let keep: Vec<bool> = match selection {
        Some(s) => {
            let a = datafusion::arrow::compute::cast(&eval(s, &batch)?, &DataType::Boolean)?;
            let a = a
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| {
                    ServerError::Planner(PlannerError::Internal(
                        "ON CONFLICT … WHERE is not a boolean".into(),
                    ))
                })?;
            (0..a.len()).map(|i| a.is_valid(i) && a.value(i)).collect()
        }
        None => vec![true; pairs.len()],
    };
    let kept_batch =
        datafusion::arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep.clone()))?;
    let mut kept: Vec<Row> = pairs
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|((old, _, _), _)| old.clone())
        .collect();
    for (idx, e) in assignments {
        let zone = freshet_planner::session_zone::read(&freshet_planner::session_zone::handle(ctx));
        let values = cast_column(
            &eval(e, &kept_batch)?,
            schema.field(*idx).data_type(),
            &zone,
        )?;
        for (i, r) in kept.iter_mut().enumerate() {
            r[*idx] = ScalarValue::try_from_array(&values, i)?;
        }
    }
    let mut kept = kept.into_iter();
    Ok(keep
        .iter()
        .map(|k| if *k { kept.next() } else { None })
        .collect())
}

/// The types of parameters that appear only in an INSERT's `DO UPDATE` clause (which
/// DataFusion does not plan), for Describe: a parameter in `SET col = …` takes `col`'s
/// type; one only in the `WHERE` stays unknown (text).
pub(super) fn add_param_types(
    insert: &ast::Insert,
    table: &TableDef,
    types: &mut Vec<Option<DataType>>,
) {
    let Some(ast::OnInsert::OnConflict(ast::OnConflict {
        action: ast::OnConflictAction::DoUpdate(u),
        ..
    })) = &insert.on
    else {
        return;
    };
    let mut note = |e: &ast::Expr, ty: Option<DataType>| {
        let _ = ast::visit_expressions(e, |e| {
            if let ast::Expr::Value(v) = e {
                if let ast::Value::Placeholder(p) = &v.value {
                    if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                        if n >= 1 {
                            if types.len() < n {
                                types.resize(n, None);
                            }
                            if types[n - 1].is_none() {
                                types[n - 1] = ty.clone();
                            }
                        }
                    }
                }
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    };
    for a in &u.assignments {
        let ty = match &a.target {
            ast::AssignmentTarget::ColumnName(col) => table
                .column_index(&object_name(col))
                .ok()
                .map(|i| table.columns[i].ty.to_arrow()),
            _ => None,
        };
        note(&a.value, ty);
    }
    if let Some(w) = &u.selection {
        note(w, None);
    }
}
