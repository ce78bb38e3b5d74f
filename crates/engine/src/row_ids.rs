//! Row ids: the hidden `_row_id` of a table without a primary key (RisingWave's), its
//! stored rows' key.
//!
//! One generator serves the process: ids grow, never repeat within a run, and start above
//! both the wall clock (microseconds × 1024, so until the year 2255) and every id a table
//! recorded as given out (its mark, written with the rows that carry the ids, read when
//! the engine starts), so a clock set back does not repeat ids either. The server gives
//! ids to the rows of INSERT and COPY (a transaction's writes must name their rows before
//! they reach the engine); the coordinator to the rows of Kafka feeds and sinks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use freshet_storage::keys;

use crate::EngineError;

/// The next id to give out; 0 until the first use seeds it.
static NEXT: AtomicI64 = AtomicI64::new(0);

/// Ids per microsecond the seed leaves room for.
const PER_MICRO_BITS: u32 = 10;

fn seeded() {
    if NEXT.load(Ordering::Acquire) == 0 {
        let seed = crate::wall_clock_micros().max(1) << PER_MICRO_BITS;
        NEXT.fetch_max(seed, Ordering::AcqRel);
    }
}

/// A new row id.
pub fn next() -> i64 {
    seeded();
    NEXT.fetch_add(1, Ordering::AcqRel)
}

/// `n` new row ids in one step: the first of them, the others following it.
fn next_block(n: usize) -> i64 {
    seeded();
    NEXT.fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::AcqRel)
}

/// Makes every later id larger than `id` (an id given out before, maybe by an earlier
/// run).
pub fn observe(id: i64) {
    seeded();
    NEXT.fetch_max(id.saturating_add(1), Ordering::AcqRel);
}

/// The key of table `table`'s mark: the largest row id its committed rows may carry.
pub fn mark_key(table: u64) -> Vec<u8> {
    let mut k = keys::state_prefix(keys::state_table_id(table, 0, 0));
    k.extend_from_slice(b"row_id");
    k
}

/// A mark as stored.
pub fn decode_mark(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.try_into().ok()?))
}

/// `batch` (a table's columns) with a new row id per row appended, in `stored` (the
/// columns and `_row_id`); a batch that has its ids already is returned as it is.
pub fn with_row_ids(batch: &RecordBatch, stored: &SchemaRef) -> Result<RecordBatch, EngineError> {
    if batch.num_columns() == stored.fields().len() {
        return Ok(batch.clone());
    }
    if batch.num_columns() + 1 != stored.fields().len() {
        return Err(EngineError::Internal(format!(
            "{} columns for a table of {} and a row id",
            batch.num_columns(),
            stored.fields().len() - 1
        )));
    }
    let first = next_block(batch.num_rows());
    let ids: Int64Array = (0..batch.num_rows() as i64)
        .map(|i| Some(first + i))
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(ids));
    RecordBatch::try_new(stored.clone(), columns).map_err(|e| EngineError::Internal(e.to_string()))
}

/// `row` (a table's columns) with a new row id appended, if it has none; whether it got
/// one.
pub fn with_row_id(mut row: Vec<ScalarValue>, width: usize) -> (Vec<ScalarValue>, bool) {
    if row.len() + 1 == width {
        row.push(ScalarValue::Int64(Some(next())));
        return (row, true);
    }
    (row, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_past_what_was_observed() {
        let a = next();
        let b = next();
        assert!(b > a);
        assert!(a > crate::wall_clock_micros() << PER_MICRO_BITS >> 1);
        observe(b + 1_000_000);
        assert!(next() > b + 1_000_000);
        // A block follows its first id, and later ids follow the block.
        let first = next_block(3);
        assert!(first > b + 1_000_000);
        assert_eq!(next(), first + 3);
    }
}
