//! Window functions over `PARTITION BY … ORDER BY … [frame]` in a view (RisingWave's
//! OverWindow): `sum/avg/count/min/max/first_value/last_value/lag/lead/row_number/rank/…
//! OVER (…)`, each input row with the values of the window functions appended.
//!
//! State: every input row, ordered per partition ([`OrderedGroups`]). For each partition
//! a chunk touches, the operator evaluates the window functions over the partition's rows
//! in order before and after applying the chunk, with DataFusion's own window
//! evaluators (so a view computes exactly what the same query computes in batch), and
//! emits the difference: rows whose values did not change are not retracted. The cost
//! of a change is a read of its partition; partitions by a column that follows the
//! watermark (`window_start`) are freed when their window closes.
//!
//! Rows equal in the ORDER BY columns are put in the order of their encoded values, so
//! `ROWS` frames and `row_number()` over ties give the same answer every time.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::WindowExpr;
use freshet_storage::Txn;

use super::ordered_groups::OrderedGroups;
use crate::chunk::{rows_to_batch, Chunk, Row, RowFormat};
use crate::operator::Operator;
use crate::plan::{PhysExpr, SortKey};
use crate::EngineError;

pub struct OverWindow {
    groups: OrderedGroups,
    funcs: Vec<Arc<dyn WindowExpr>>,
    input: SchemaRef,
    schema: SchemaRef,
    out_format: RowFormat,
}

impl OverWindow {
    pub fn new(
        partition: Vec<PhysExpr>,
        order: Vec<SortKey>,
        funcs: Vec<Arc<dyn WindowExpr>>,
        input: &SchemaRef,
        schema: SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> OverWindow {
        OverWindow {
            groups: OrderedGroups::new(partition, order, input, table_id),
            funcs,
            input: input.clone(),
            out_format: RowFormat::of(&schema),
            schema,
        }
    }

    /// Makes the operator free the partitions of closed windows (`StreamNode::window_key`).
    pub fn windowed(mut self, window: Option<(usize, i64)>) -> Result<OverWindow, EngineError> {
        self.groups = self.groups.windowed(window, &self.input)?;
        Ok(self)
    }

    /// A partition's output rows (encoded), in order.
    fn outputs(&self, state: &Txn, group: &[u8]) -> Result<Vec<Vec<u8>>, EngineError> {
        let mut rows: Vec<Row> = Vec::new();
        let mut err = None;
        self.groups.visit(state, group, |_, row, count| {
            match self.groups.format.decode(row) {
                Ok(r) => {
                    for _ in 1..count.max(0) {
                        rows.push(r.clone());
                    }
                    if count > 0 {
                        rows.push(r);
                    }
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = rows_to_batch(self.input.clone(), &rows)?;
        let values = self
            .funcs
            .iter()
            .map(|f| {
                let a = f.evaluate(&batch)?;
                if a.len() != rows.len() {
                    return Err(EngineError::Internal(format!(
                        "window function {} gave {} values for {} rows",
                        f.name(),
                        a.len(),
                        rows.len()
                    )));
                }
                Ok(a)
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        rows.into_iter()
            .enumerate()
            .map(|(i, mut row)| {
                for a in &values {
                    row.push(ScalarValue::try_from_array(a, i)?);
                }
                self.out_format.encode(&row)
            })
            .collect()
    }
}

impl Operator for OverWindow {
    fn name(&self) -> &'static str {
        "over_window"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        if chunk.is_empty() {
            return Ok(Chunk::empty(self.schema.clone()));
        }
        let this = &*self;
        let diff = this
            .groups
            .apply_chunk(&chunk, state, |s, g| this.outputs(s, g))?;
        let mut out_rows = Vec::with_capacity(diff.len());
        let mut weights = Vec::with_capacity(diff.len());
        for (row, w) in diff {
            out_rows.push(self.out_format.decode(&row)?);
            weights.push(w);
        }
        Chunk::from_rows(self.schema.clone(), &out_rows, weights)
    }

    /// Deletes the partitions of the windows the watermark closed (their rows stay in
    /// the view, final).
    fn on_watermark(&mut self, wm: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        self.groups.on_watermark(wm, state)?;
        Ok(None)
    }
}
