//! `EMIT ON WINDOW CLOSE` for plans without a closing aggregate: plain windowed selects,
//! top-N and window functions per window. The input's changes are held per row until the
//! watermark makes the row final by a column that follows it (`window_start`,
//! `window_end`, an event-time column: see `StreamNode::watermark_columns`); then the
//! rows still present are emitted once, as inserts, and forgotten. Changes that cancel
//! before the window closes (a top-N's row pushed out of its window's top, a running sum
//! recomputed) never leave the operator.
//!
//! State (table 0): `window value | row → count`, so the rows a watermark makes final
//! are one key range, read and deleted together. The last watermark is kept in table
//! `u16::MAX`; a change to a closed window (only a late row could make one, and the
//! operators below drop those) is ignored. Rows whose window column is NULL never close
//! and are never emitted.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use freshet_storage::Txn;

use super::{add_count, closing, decode_count, encode_count, StateTable};
use crate::chunk::{Chunk, Row, RowFormat};
use crate::operator::Operator;
use crate::EngineError;

pub struct EmitOnClose {
    /// The column rows close by, its lag and the type it is stored as.
    col: usize,
    lag: i64,
    wtype: DataType,
    window_format: RowFormat,
    format: RowFormat,
    rows: StateTable,
    meta: StateTable,
    schema: SchemaRef,
}

impl EmitOnClose {
    pub fn new(
        input: &SchemaRef,
        col: usize,
        lag: i64,
        table_id: impl Fn(u16) -> u64,
    ) -> Result<EmitOnClose, EngineError> {
        let t = input
            .fields()
            .get(col)
            .ok_or_else(|| EngineError::Internal("EMIT ON WINDOW CLOSE column".into()))?
            .data_type()
            .clone();
        let wtype = freshet_storage::codec::storable_type(&t).unwrap_or(t.clone());
        Ok(EmitOnClose {
            col,
            lag,
            wtype,
            window_format: RowFormat::new(vec![t]),
            format: RowFormat::of(input),
            rows: StateTable::new(table_id(0)),
            meta: StateTable::new(table_id(u16::MAX)),
            schema: input.clone(),
        })
    }

    fn watermark(&self, state: &Txn) -> Result<Option<i64>, EngineError> {
        closing::stored_watermark(&self.meta, state)
    }

    /// The key of the first row still open at watermark `wm`.
    fn open_bound(&self, wm: i64) -> Result<Vec<u8>, EngineError> {
        closing::open_key(&self.rows, &self.wtype, self.lag, wm)
    }
}

impl Operator for EmitOnClose {
    fn name(&self) -> &'static str {
        "emit_on_close"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        if !chunk.is_empty() {
            let wm = self.watermark(state)?;
            for (row, w) in chunk.rows()?.iter().zip(&chunk.weights) {
                let window = &row[self.col];
                if closing::is_closed(window, self.lag, wm) {
                    continue;
                }
                let mut key = self.window_format.encode(std::slice::from_ref(window))?;
                key.extend_from_slice(&self.format.encode(row)?);
                let (_, new) = add_count(state, self.rows.key(&key), *w)?;
                if new < 0 {
                    return Err(EngineError::Internal(
                        "a row deleted before it was inserted (EMIT ON WINDOW CLOSE)".into(),
                    ));
                }
            }
        }
        Ok(Chunk::empty(self.schema.clone()))
    }

    /// Emits the rows the watermark made final, and forgets them.
    fn on_watermark(&mut self, wm: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let old = self.watermark(state)?;
        if old.is_some_and(|old| old >= wm) {
            return Ok(None);
        }
        state.put(self.meta.key(&[]), encode_count(wm));
        let start = match old {
            Some(old) => self.open_bound(old)?,
            None => self.rows.key(&[1u8]), // present (non-NULL) window values
        };
        let end = self.open_bound(wm)?;
        let plen = self.rows.key(&[]).len();
        let mut out: Vec<Row> = Vec::new();
        let mut weights = Vec::new();
        for (key, value) in state.scan_range(&start, &end)? {
            let rest = &key[plen..];
            let wlen = self.window_format.encoded_len(rest)?;
            out.push(self.format.decode(&rest[wlen..])?);
            weights.push(decode_count(&value)?);
        }
        state.delete_range(&start, &end)?;
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Chunk::from_rows(self.schema.clone(), &out, weights)?))
    }
}
