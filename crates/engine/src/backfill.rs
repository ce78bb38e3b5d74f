//! A new view's backfill: its dataflow is fed the stored rows of the tables and views it
//! reads, a page at a time, between the engine's other work, so that creating a view
//! over a large table does not stop every other view (RisingWave's "snapshot backfill
//! with upstream": the scan and the live changes are merged by key position).
//!
//! The inputs go one after another ([`Dataflow::backfill_order`]: lookup tables first).
//! For the input being read, the scan has fed every stored row whose key is below
//! `next`; a change to that input made meanwhile (by a write, another view, a reader)
//! reaches the new view only if its key is below `next` too, since the scan feeds the
//! rest as they are when it gets there. Changes to inputs already read reach it whole,
//! changes to inputs not yet read not at all. So at every moment the view has seen
//! exactly what it would have seen had it been created with the rows read so far, and
//! once the last input is read it equals its query, as a view built in one step would.
//!
//! Nothing of the view is in the catalog until it is done: its state committed with
//! the checkpoints in between is marked ([`keys::BACKFILL`]) and removed if the
//! backfill fails or the server dies (see `Coordinator::clean_abandoned_backfill`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use freshet_storage::{codec, decode_pair, keys, prefix_end, RowLayout, Txn};

use crate::chunk::{batch_rows, column_types, Chunk, Row};
use crate::coordinator::{Output, TableDesc, ViewDesc};
use crate::dataflow::Dataflow;
use crate::plan::RelationId;
use crate::progress::Progress;
use crate::write_check::pk_row_key;
use crate::EngineError;

/// Rows pushed through the dataflow at a time.
const CHUNK: usize = 4096;
/// Input rows one step reads before the engine goes back to its other work.
pub(crate) const STEP: usize = 16_384;

/// What the engine knows about the relations a backfill reads.
pub(crate) struct Inputs<'a> {
    pub schemas: &'a HashMap<RelationId, SchemaRef>,
    pub tables: &'a HashMap<RelationId, TableDesc>,
    pub sources: &'a HashSet<RelationId>,
    pub views: &'a [ViewDesc],
}

/// How an input's rows are keyed in storage.
enum Keying {
    /// A table with a primary key: the key's columns.
    PrimaryKey(TableDesc),
    /// The encoded row (views, tables without a key, dead-letter tables).
    Row,
    /// The encoded row, then a sequence number above every stored one (insert-only
    /// views).
    RowThenSequence,
}

impl Inputs<'_> {
    fn keying(&self, rel: RelationId) -> Keying {
        if let Some(t) = self.tables.get(&rel) {
            return if t.pk.is_empty() {
                Keying::Row
            } else {
                Keying::PrimaryKey(t.clone())
            };
        }
        let insert_only = self
            .views
            .iter()
            .any(|v| v.id == rel && v.append_only && v.output == Output::Table);
        if insert_only {
            Keying::RowThenSequence
        } else {
            Keying::Row
        }
    }

    fn layout(&self, rel: RelationId) -> RowLayout {
        match self.tables.get(&rel) {
            Some(t) if !t.pk.is_empty() => RowLayout::Keyed,
            _ => RowLayout::Multiset,
        }
    }

    fn schema(&self, rel: RelationId) -> Result<SchemaRef, EngineError> {
        self.schemas
            .get(&rel)
            .cloned()
            .ok_or(EngineError::UnknownRelation(rel))
    }
}

/// A view being built.
pub(crate) struct Backfill {
    pub desc: ViewDesc,
    pub df: Dataflow,
    /// The catalog to commit with the view, once it is built.
    pub catalog: Vec<u8>,
    pub progress: Arc<Progress>,
    /// Per dataflow entry, the relation it reads.
    entries: Vec<RelationId>,
    /// The entries in the order they are read; `order[..pos]` are read.
    order: Vec<usize>,
    pos: usize,
    /// The entry `order[pos]` has been fed every stored row with a key below this.
    next: Vec<u8>,
}

impl Backfill {
    pub fn new(desc: ViewDesc, df: Dataflow, catalog: Vec<u8>, progress: Arc<Progress>) -> Self {
        let entries = df.source_entries();
        let order = df.backfill_order();
        let next = order
            .first()
            .map(|&e| keys::rows_prefix(entries[e]))
            .unwrap_or_default();
        Backfill {
            desc,
            df,
            catalog,
            progress,
            entries,
            order,
            pos: 0,
            next,
        }
    }

    /// Whether the view reads `rel` (directly).
    pub fn reads(&self, rel: RelationId) -> bool {
        self.df.reads(rel)
    }

    pub fn done(&self) -> bool {
        self.pos >= self.order.len()
    }

    /// Reads the next page of the input being read (up to [`STEP`] rows) into the
    /// dataflow, moving to the next input at the end of one.
    pub fn step(&mut self, txn: &mut Txn, inputs: &Inputs<'_>) -> Result<(), EngineError> {
        let Some(&entry) = self.order.get(self.pos) else {
            return Ok(());
        };
        let rel = self.entries[entry];
        if inputs.sources.contains(&rel) {
            // A source's rows come from its reader, once the view runs.
            self.advance();
            return Ok(());
        }
        let schema = inputs.schema(rel)?;
        let types = column_types(&schema);
        let layout = inputs.layout(rel);
        let prefix = keys::rows_prefix(rel);
        let end = prefix_end(&prefix);
        let mut page: Vec<(Row, i64)> = Vec::new();
        let mut more = None;
        let mut bad = None;
        txn.walk(&self.next, end.as_deref(), false, |k, v| {
            match decode_pair(k, v, prefix.len(), &types, layout) {
                Ok(r) => page.push(r),
                Err(e) => {
                    bad = Some(e);
                    return false;
                }
            }
            if page.len() < STEP {
                return true;
            }
            let mut next = k.to_vec();
            next.push(0);
            more = Some(next);
            false
        })?;
        if let Some(e) = bad {
            return Err(e.into());
        }
        let mut rows = page.into_iter().peekable();
        while rows.peek().is_some() {
            let (rs, ws): (Vec<Row>, Vec<i64>) = rows.by_ref().take(CHUNK).unzip();
            let n = rs.len() as u64;
            self.df
                .push_entry(entry, Chunk::from_rows(schema.clone(), &rs, ws)?, txn)?;
            self.progress.done.fetch_add(n, Ordering::Relaxed);
        }
        match more {
            Some(next) => self.next = next,
            None => self.advance(),
        }
        Ok(())
    }

    fn advance(&mut self) {
        self.pos += 1;
        if let Some(&e) = self.order.get(self.pos) {
            self.next = keys::rows_prefix(self.entries[e]);
        }
    }

    /// Passes changes to `rel` made while the view is built on to it, as far as it has
    /// read `rel` (see the module's comment).
    pub fn feed(
        &mut self,
        rel: RelationId,
        chunk: &Chunk,
        txn: &mut Txn,
        inputs: &Inputs<'_>,
    ) -> Result<(), EngineError> {
        for entry in 0..self.entries.len() {
            if self.entries[entry] != rel {
                continue;
            }
            let at = self.order.iter().position(|&e| e == entry).unwrap_or(0);
            if at < self.pos {
                self.df.push_entry(entry, chunk.clone(), txn)?;
            } else if at == self.pos {
                let keying = inputs.keying(rel);
                let rows = batch_rows(&chunk.batch)?;
                let mut keep = Vec::new();
                let mut weights = Vec::new();
                for (row, &w) in rows.into_iter().zip(&chunk.weights) {
                    if self.read_past(rel, &keying, &row)? {
                        keep.push(row);
                        weights.push(w);
                    }
                }
                if !keep.is_empty() {
                    let c = Chunk::from_rows(chunk.batch.schema(), &keep, weights)?;
                    self.df.push_entry(entry, c, txn)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the scan of `rel` has passed where `row` is stored.
    fn read_past(&self, rel: RelationId, keying: &Keying, row: &Row) -> Result<bool, EngineError> {
        Ok(match keying {
            Keying::PrimaryKey(t) => pk_row_key(t, row)? < self.next,
            Keying::Row => keys::row_key(rel, &codec::encode_row(row)?) < self.next,
            Keying::RowThenSequence => {
                // Stored as the row then a sequence number above all stored ones: past
                // `next` if the row sorts below it, but not if `next` is within that
                // row's entries (the new entry comes after them, still to be read).
                let k = keys::row_key(rel, &codec::encode_row(row)?);
                k < self.next && !self.next.starts_with(&k)
            }
        })
    }
}
