//! `CREATE SINK … INTO table`: a sink's changes written into a table, in the statement
//! that produced them (so with the same commit as the offsets or DML they came from),
//! and passed on to the views over the table like the table's own changes.
//!
//! Per chunk, the net change of each row is applied, deletes first (within a chunk an
//! update's insert may come before its delete):
//!
//! - a table with a primary key: a delete removes the row of its key if that row is
//!   still the one deleted (another sink, or DML, may have replaced it since); an insert
//!   over an existing key follows the table's `ON CONFLICT` ([`SinkConflict`]:
//!   RisingWave's default for sinks overwrites);
//! - a table without one: a multiset, a delete removing one copy if there is one; one
//!   that numbers its rows (`_row_id`) takes only append-only sinks, each row under a new
//!   id, and keeps its rows when a dead-letter table's retention deletes them upstream.
//!
//! NOT NULL holds (`23502`: the statement fails as a view's error does). The table's own
//! rows and every sink's meet only through these rules: a sink never fails with a
//! conflict, which would make an unrelated writer retry.

use super::*;
use crate::conflict::{merge_non_null, not_older};
use crate::coordinator::SinkConflict;

impl Coordinator {
    /// The table relation `rel` writes into, if it is a built sink into a table.
    pub(super) fn sink_target(&self, rel: RelationId) -> Option<RelationId> {
        self.descs.iter().find_map(|d| match d.output {
            Output::IntoTable {
                table,
                staging: false,
            } if d.id == rel => Some(table),
            _ => None,
        })
    }

    /// Applies a sink's chunk to `table`; returns the table's changes.
    pub(super) fn apply_sink_chunk(
        &mut self,
        table: RelationId,
        chunk: &Chunk,
    ) -> Result<Chunk, EngineError> {
        let desc = self.table(table)?.clone();
        // The table's columns: a hidden row id is given below, to each inserted row.
        let columns = Arc::new(
            desc.schema
                .project(&(0..desc.column_count()).collect::<Vec<_>>())?,
        );
        let batch = cast_to(&chunk.batch, &columns)?;
        let rows = batch_rows(&batch)?;
        // Net change per row, in first-seen order.
        let mut net: Vec<(Row, i64)> = Vec::new();
        let mut at: HashMap<Vec<u8>, usize> = HashMap::new();
        for (row, &w) in rows.into_iter().zip(&chunk.weights) {
            let k = codec::encode_row(&row)?;
            match at.get(&k) {
                Some(&i) => net[i].1 += w,
                None => {
                    at.insert(k, net.len());
                    net.push((row, w));
                }
            }
        }
        let mut out_rows: Vec<Row> = Vec::new();
        let mut out_weights: Vec<i64> = Vec::new();
        // A table that numbers its rows takes only append-only sinks, whose deletes can
        // come only from the dead-letter tables' retention: the rows written stay (an
        // archive of dead letters outlives their retention).
        for (row, w) in net.iter().filter(|(_, w)| *w < 0 && !desc.row_id) {
            for _ in 0..w.unsigned_abs() {
                if self.sink_delete(&desc, row)? {
                    out_rows.push(row.clone());
                    out_weights.push(-1);
                }
            }
        }
        let mut mark = None;
        for (row, w) in net.iter().filter(|(_, w)| *w > 0) {
            for _ in 0..*w {
                let (row, fresh) = super::dml::numbered(&desc, row.clone(), &mut mark);
                self.sink_insert(&desc, &row, fresh, &mut out_rows, &mut out_weights)?;
            }
        }
        self.put_mark(&desc, mark)?;
        Chunk::from_rows(desc.schema.clone(), &out_rows, out_weights)
    }

    /// Deletes `row` if the table holds it; whether it did.
    fn sink_delete(&mut self, desc: &TableDesc, row: &Row) -> Result<bool, EngineError> {
        if desc.pk.is_empty() {
            let key = keys::row_key(desc.id, &codec::encode_row(row)?);
            let held = match self.txn.get(&key)? {
                Some(v) => crate::operators::decode_count(&v)?,
                None => 0,
            };
            if held <= 0 {
                return Ok(false);
            }
            add_count(&mut self.txn, key, -1)?;
            return Ok(true);
        }
        let key = pk_row_key(desc, row)?;
        match self.txn.get(&key)? {
            Some(cur) if cur == codec::encode_row(row)? => {
                self.txn.delete(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Inserts `row` as the table's `ON CONFLICT` says, recording the changes made;
    /// `fresh`: its key is a row id given out just now.
    fn sink_insert(
        &mut self,
        desc: &TableDesc,
        row: &Row,
        fresh: bool,
        rows: &mut Vec<Row>,
        weights: &mut Vec<i64>,
    ) -> Result<(), EngineError> {
        check_row(desc, row)?;
        if desc.pk.is_empty() {
            let key = keys::row_key(desc.id, &codec::encode_row(row)?);
            add_count(&mut self.txn, key, 1)?;
            rows.push(row.clone());
            weights.push(1);
            return Ok(());
        }
        let key = pk_row_key(desc, row)?;
        let old = if fresh { None } else { self.txn.get(&key)? };
        let Some(old) = old else {
            self.txn.put(key, codec::encode_row(row)?);
            rows.push(row.clone());
            weights.push(1);
            return Ok(());
        };
        let old = codec::decode_row(&old, &column_types(&desc.schema))?;
        let new = match &desc.sink_conflict {
            SinkConflict::Ignore => return Ok(()),
            SinkConflict::Overwrite => row.clone(),
            SinkConflict::UpdateNonNull => merge_non_null(&old, row),
            SinkConflict::Versioned { merge, columns } => {
                if !not_older(&old, row, columns) {
                    return Ok(());
                }
                if *merge {
                    merge_non_null(&old, row)
                } else {
                    row.clone()
                }
            }
        };
        if new == old {
            return Ok(());
        }
        self.txn.put(key, codec::encode_row(&new)?);
        rows.push(old);
        weights.push(-1);
        rows.push(new);
        weights.push(1);
        Ok(())
    }
}

/// `batch` with its columns cast to `schema`'s types (a sink's query gives the table's
/// columns, in order, in types that may differ in precision).
fn cast_to(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    schema: &SchemaRef,
) -> Result<datafusion::arrow::record_batch::RecordBatch, EngineError> {
    use datafusion::arrow::compute::CastOptions;
    if batch.num_columns() != schema.fields().len() {
        return Err(EngineError::Internal(format!(
            "a sink gives {} columns to a table of {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                Ok(crate::numeric_special::cast(c, f.data_type(), &options)?)
            }
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
        .with_row_count(Some(batch.num_rows()));
    Ok(
        datafusion::arrow::record_batch::RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &options,
        )?,
    )
}
