//! `TUMBLE` / `HOP`: assigns each row to the event-time windows it falls in.
//!
//! Stateless: every input row becomes one output row per window (`window_start`,
//! `window_end` appended), with the input row's weight, so deletes assign to the same
//! windows as the inserts they cancel. A row whose time is NULL belongs to no window.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, TimestampMicrosecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use freshet_storage::Txn;

use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::plan::WindowSpec;
use crate::EngineError;

pub struct Window {
    time_col: usize,
    spec: WindowSpec,
    schema: SchemaRef,
}

impl Window {
    pub fn new(time_col: usize, spec: WindowSpec, schema: SchemaRef) -> Window {
        Window {
            time_col,
            spec,
            schema,
        }
    }
}

/// Expands `batch` into one row per (row, window); returns the expanded batch (input
/// columns, then `window_start`, `window_end`, typed like the time column) and, per output
/// row, the input row it came from. Shared by the streaming operator and batch queries.
pub fn expand(
    batch: &RecordBatch,
    time_col: usize,
    spec: &WindowSpec,
    schema: SchemaRef,
) -> Result<(RecordBatch, Vec<u32>), EngineError> {
    let col = batch.column(time_col);
    let time_type = col.data_type().clone();
    let micros = cast(col, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let micros = micros
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| EngineError::Internal("window time column is not a timestamp".into()))?;
    let mut idx = Vec::with_capacity(batch.num_rows());
    let mut starts = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        if micros.is_null(r) {
            continue;
        }
        for s in spec.starts(micros.value(r)) {
            idx.push(r as u32);
            starts.push(s);
        }
    }
    let indices = UInt32Array::from(idx.clone());
    let mut cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<_, _>>()?;
    let ends: Vec<i64> = starts.iter().map(|s| s + spec.size).collect();
    for v in [starts, ends] {
        let a: ArrayRef = Arc::new(TimestampMicrosecondArray::from(v));
        cols.push(cast(&a, &time_type)?);
    }
    let out = RecordBatch::try_new(schema, cols)?;
    Ok((out, idx))
}

impl Operator for Window {
    fn name(&self) -> &'static str {
        "window"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        _state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let (batch, idx) = expand(&chunk.batch, self.time_col, &self.spec, self.schema.clone())?;
        let weights = idx.iter().map(|&r| chunk.weights[r as usize]).collect();
        Ok(Chunk::new(batch, weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_and_hop_starts() {
        let tumble = WindowSpec {
            size: 60,
            slide: 60,
            offset: 0,
        };
        assert_eq!(tumble.starts(59).collect::<Vec<_>>(), vec![0]);
        assert_eq!(tumble.starts(60).collect::<Vec<_>>(), vec![60]);
        assert_eq!(tumble.starts(-1).collect::<Vec<_>>(), vec![-60]);
        let offset = WindowSpec {
            size: 60,
            slide: 60,
            offset: 15,
        };
        assert_eq!(offset.starts(14).collect::<Vec<_>>(), vec![-45]);
        assert_eq!(offset.starts(15).collect::<Vec<_>>(), vec![15]);
        let hop = WindowSpec {
            size: 30,
            slide: 10,
            offset: 0,
        };
        assert_eq!(hop.starts(25).collect::<Vec<_>>(), vec![20, 10, 0]);
        assert_eq!(hop.starts(30).collect::<Vec<_>>(), vec![30, 20, 10]);
        // A size that is not a multiple of the slide.
        let odd = WindowSpec {
            size: 25,
            slide: 10,
            offset: 0,
        };
        assert_eq!(odd.starts(24).collect::<Vec<_>>(), vec![20, 10, 0]);
        assert_eq!(odd.starts(25).collect::<Vec<_>>(), vec![20, 10]);
    }
}
