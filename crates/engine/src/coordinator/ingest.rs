//! Ingest: rows read from sources for views and from topics for tables, and every change
//! pushed through the views that read the relation it changed, then the views over those.

use super::positions::watermark_key;
use super::*;

/// The dead letter of a row a view or table refused: where it was read (-1, -1 if
/// unknown), why, and the row as text.
fn rejected(at: Option<&(i32, i64)>, why: String, row: &Row) -> (i32, i64, String, String) {
    let text: Vec<String> = row.iter().map(display_value).collect();
    let (p, o) = at.copied().unwrap_or((-1, -1));
    (p, o, why, format!("({})", text.join(", ")))
}

/// A source batch's bookkeeping, recorded on the coordinator once its rows are applied
/// (see [`Coordinator::record`]).
pub(super) struct Rest {
    pub(super) view: RelationId,
    pub(super) source: RelationId,
    pub(super) source_name: String,
    pub(super) offsets: Vec<(i32, i64)>,
    pub(super) maxima: Vec<(i32, i64)>,
    pub(super) errors: Vec<(i32, i64, String, String)>,
    pub(super) late: Vec<Late>,
}

impl SourceData {
    /// The batch's rows, its watermark, and the bookkeeping recorded after them.
    pub(super) fn split(self) -> (Chunk, Vec<(i32, i64)>, Option<i64>, Rest) {
        let SourceData {
            view,
            source,
            source_name,
            chunk,
            positions,
            offsets,
            errors,
            watermark,
            maxima,
            late,
        } = self;
        let rest = Rest {
            view,
            source,
            source_name,
            offsets,
            maxima,
            errors,
            late,
        };
        (chunk, positions, watermark, rest)
    }
}

/// Pushes `chunk` (read at `positions`) into view `view` with `push` (one statement);
/// if that fails, row by row, each row a statement of its own, and the rows that fail
/// become dead letters in `errors`: one bad event never stops the stream.
pub(super) fn push_rows(
    view: &str,
    chunk: &Chunk,
    positions: &[(i32, i64)],
    errors: &mut Vec<(i32, i64, String, String)>,
    mut push: impl FnMut(&Chunk) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    if push(chunk).is_ok() {
        return Ok(());
    }
    let rows = chunk.rows()?;
    let schema = chunk.schema();
    for (i, (row, w)) in rows.iter().zip(&chunk.weights).enumerate() {
        let one = Chunk::from_rows(schema.clone(), std::slice::from_ref(row), vec![*w])?;
        if let Err(e) = push(&one) {
            let why = format!("view {view} rejected the row: {}", e.row_message());
            errors.push(rejected(positions.get(i), why, row));
        }
    }
    Ok(())
}

impl Coordinator {
    /// View `view`'s name, for messages (its id if it has none here).
    fn view_name(&self, view: RelationId) -> String {
        self.descs
            .iter()
            .find(|d| d.id == view)
            .map_or_else(|| view.to_string(), |d| d.name.clone())
    }

    /// Applies a source batch to one view; rows that make the view fail (say, a division
    /// by zero in its query) are retried one by one and the failing ones become dead
    /// letters, so one bad event never stops the stream.
    pub(super) fn apply_source(&mut self, data: SourceData) -> Result<(), EngineError> {
        let (chunk, positions, watermark, mut rest) = data.split();
        let (view, source) = (rest.view, rest.source);
        if !self.views.iter().any(|d| d.view() == view) {
            return Err(EngineError::UnknownRelation(view));
        }
        let name = self.view_name(view);
        push_rows(&name, &chunk, &positions, &mut rest.errors, |c| {
            self.statement(|co| co.push_source(view, source, c.clone()))
        })?;
        // After the rows: they were on time when read, and may sit in windows that this
        // watermark closes.
        if let Some(wm) = watermark {
            // A view can fail while closing windows (an expression over a closed window's
            // aggregates divides by zero): that is the view's error, not the source's.
            // It becomes a dead letter, and the batch's rows, offsets and watermark still
            // commit together, so the reader goes on and a restart re-reads nothing.
            if let Err(e) = self.statement(|c| c.push_watermark(view, source, wm)) {
                rest.errors
                    .push(window_close_error(&format!("view {name}"), wm, &e));
            }
            self.txn
                .put(watermark_key(view, source), wm.to_be_bytes().to_vec());
        }
        self.record(rest)
    }

    /// Records what a source batch leaves once its rows are applied: late events, dead
    /// letters and the offsets.
    pub(super) fn record(&mut self, rest: Rest) -> Result<(), EngineError> {
        for (p, o, ts, wm, payload) in rest.late {
            self.put_late(&rest.source_name, Some((p, o)), ts, wm, payload)?;
        }
        self.record_progress(
            rest.view,
            rest.source,
            &rest.source_name,
            rest.offsets,
            &rest.maxima,
            rest.errors,
        )
    }

    /// Applies a topic's rows to the table it feeds, then to every view over the table.
    /// Rows the table or a view rejects become dead letters, one by one.
    pub(super) fn apply_feed(&mut self, data: FeedData) -> Result<(), EngineError> {
        let FeedData {
            table,
            rows,
            positions,
            deletes,
            offsets,
            mut errors,
            watermark,
            maxima,
            late,
        } = data;
        let desc = self.table(table)?.clone();
        let whole = self.statement(|c| c.feed_rows(&desc, &rows, &deletes));
        if whole.is_err() {
            for key in &deletes {
                if let Err(e) = self.statement(|c| {
                    c.feed_rows(
                        &desc,
                        &Chunk::empty(desc.schema.clone()),
                        std::slice::from_ref(key),
                    )
                }) {
                    let why = format!("delete rejected: {}", e.row_message());
                    errors.push((-1, -1, why, format!("{key:?}")));
                }
            }
            for (i, (row, w)) in rows.rows()?.iter().zip(&rows.weights).enumerate() {
                // In the feed's columns (a table's hidden row id is not among them).
                let one =
                    Chunk::from_rows(rows.batch.schema(), std::slice::from_ref(row), vec![*w])?;
                if let Err(e) = self.statement(|c| c.feed_rows(&desc, &one, &[])) {
                    let why = format!("row rejected: {}", e.row_message());
                    errors.push(rejected(positions.get(i), why, row));
                }
            }
        }
        if let Some(wm) = watermark {
            let old = stored_watermark_in(&self.txn, table, table)?;
            if old.is_none_or(|old| wm > old) {
                // As for a source (`apply_source`): a view failing to close windows is a
                // dead letter, not a reason to stop the feed. Each view over the table
                // closes its windows in its own statement, so one view's failure does
                // not hold back the others.
                self.txn
                    .put(watermark_key(table, table), wm.to_be_bytes().to_vec());
                self.expire_rows(&desc, wm)?;
                for v in self.readers_of(table) {
                    if let Err(e) = self.statement(|c| c.push_watermark(v, table, wm)) {
                        let name = self.view_name(v);
                        errors.push(window_close_error(&format!("view {name}"), wm, &e));
                    }
                }
            }
        }
        for (p, o, ts, wm, payload) in late {
            self.put_late(&desc.name, Some((p, o)), ts, wm, payload)?;
        }
        self.record_progress(table, table, &desc.name, offsets, &maxima, errors)
    }

    pub(super) fn feed_rows(
        &mut self,
        desc: &TableDesc,
        rows: &Chunk,
        deletes: &[Row],
    ) -> Result<(), EngineError> {
        let mut changes: Vec<Row> = Vec::new();
        let mut weights = Vec::new();
        for key in deletes {
            let k = keys::row_key(desc.id, &codec::encode_row(key)?);
            if let Some(old) = self.txn.get(&k)? {
                changes.push(codec::decode_row(&old, &column_types(&desc.schema))?);
                weights.push(-1);
                self.txn.delete(k);
            }
        }
        let mut mark = None;
        for row in rows.rows()? {
            let (row, fresh) = super::dml::numbered(desc, row, &mut mark);
            if !desc.pk.is_empty() && !fresh {
                let k = pk_row_key(desc, &row)?;
                if let Some(old) = self.txn.get(&k)? {
                    if old == codec::encode_row(&row)? {
                        continue;
                    }
                    changes.push(codec::decode_row(&old, &column_types(&desc.schema))?);
                    weights.push(-1);
                    self.txn.delete(k);
                }
            }
            self.insert_row(desc, &row, fresh)?;
            changes.push(row);
            weights.push(1);
        }
        self.put_mark(desc, mark)?;
        self.propagate_rows(desc, &changes, weights)
    }

    /// Records a row of a dead-letter table (source errors, late events). Put, not add:
    /// several views reading the same source record the same message once. A new row
    /// goes on to the views over the table (audits).
    pub(super) fn put_event_row(&mut self, table: RelationId, row: Row) -> Result<(), EngineError> {
        let bytes = codec::encode_row(&row)?;
        let key = keys::row_key(table, &bytes);
        if self.txn.get(&key)?.is_some() {
            return Ok(());
        }
        self.txn.put(key, 1i64.to_be_bytes().to_vec());
        let source = match row.first() {
            Some(ScalarValue::Utf8(Some(s))) => s.as_str(),
            _ => "",
        };
        self.dead.record(
            &mut self.txn,
            table,
            source,
            &bytes,
            crate::wall_clock_micros(),
        )?;
        if self.any_reads(table) {
            let schema = self
                .schemas
                .get(&table)
                .cloned()
                .ok_or(EngineError::UnknownRelation(table))?;
            let chunk = Chunk::from_rows(schema, &[row], vec![1])?;
            if self.txn.in_statement() {
                self.propagate(table, chunk)?;
            } else {
                // Views over the event table change all or not at all.
                self.statement(|c| c.propagate(table, chunk))?;
            }
        }
        Ok(())
    }

    pub(super) fn push_source(
        &mut self,
        view: RelationId,
        source: RelationId,
        chunk: Chunk,
    ) -> Result<(), EngineError> {
        let mut queue = VecDeque::new();
        if let Some(df) = self.views.iter_mut().find(|d| d.view() == view) {
            for out in df.push(source, &chunk, &mut self.txn)? {
                queue.push_back((view, out));
            }
        }
        self.propagate_all(queue)
    }

    /// Pushes a table's changed rows (weight −1 deleted, +1 inserted) through its views.
    pub(super) fn propagate_rows(
        &mut self,
        desc: &TableDesc,
        rows: &[Row],
        weights: Vec<i64>,
    ) -> Result<(), EngineError> {
        if rows.is_empty() {
            return Ok(());
        }
        let chunk = Chunk::from_rows(desc.schema.clone(), rows, weights)?;
        self.propagate(desc.id, chunk)
    }

    /// Pushes a relation's changes through every view that reads it, transitively.
    pub(super) fn propagate(
        &mut self,
        relation: RelationId,
        chunk: Chunk,
    ) -> Result<(), EngineError> {
        self.propagate_all(VecDeque::from([(relation, chunk)]))
    }

    pub(super) fn propagate_all(
        &mut self,
        mut queue: VecDeque<(RelationId, Chunk)>,
    ) -> Result<(), EngineError> {
        while let Some((rel, chunk)) = queue.pop_front() {
            if let Some(table) = self.sink_target(rel) {
                // A sink into a table: its changes become the table's.
                let changes = self.apply_sink_chunk(table, &chunk)?;
                if !changes.is_empty() {
                    queue.push_back((table, changes));
                }
                continue;
            }
            if self.subscribers.watches(rel) {
                self.subscribers.capture(rel, &chunk);
            }
            for df in self.views.iter_mut() {
                if df.reads(rel) {
                    for out in df.push(rel, &chunk, &mut self.txn)? {
                        queue.push_back((df.view(), out));
                    }
                }
            }
            if let Some((b, _)) = &mut self.backfill {
                if b.reads(rel) {
                    let inputs = Inputs {
                        schemas: &self.schemas,
                        tables: &self.tables,
                        sources: &self.sources,
                        views: &self.descs,
                    };
                    b.feed(rel, &chunk, &mut self.txn, &inputs)?;
                }
            }
        }
        Ok(())
    }
}
