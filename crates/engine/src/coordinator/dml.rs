//! Table writes: a statement's rows checked (primary key, NOT NULL, the deleted rows
//! still the current ones) and applied to the table, late rows set aside, and the write
//! buffer committed when a session waits for its write.

use super::*;

impl Coordinator {
    /// Writes the buffer as a checkpoint; see [`Coordinator::commit`].
    pub(super) fn write_buffer(&mut self) -> Result<(), EngineError> {
        let m = crate::metrics::metrics();
        let timer = m.checkpoint_seconds.start_timer();
        let res = self.txn.commit();
        timer.observe_duration();
        match &res {
            Ok(()) => {
                let now = crate::wall_clock_micros() as f64 / 1e6;
                m.checkpoints.inc();
                m.last_checkpoint.set(now);
                for df in &mut self.views {
                    df.checkpointed(now);
                }
                self.committed = None;
                let schemas = &self.schemas;
                self.subscribers
                    .committed(crate::wall_clock_micros() / 1000, |r| {
                        schemas.contains_key(&r)
                    });
            }
            Err(e) => {
                m.checkpoint_failures.inc();
                self.subscribers.discard();
                tracing::error!(error = %e, "checkpoint commit failed: uncommitted work dropped; readers restart from their committed offsets");
                self.epoch.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = self.rewind() {
                    tracing::error!(error = %e, "rebuilding the views after a failed commit failed");
                }
            }
        }
        let res = res.map_err(|e| EngineError::CommitFailed(e.to_string(), e.is_disk_full()));
        for w in self.waiters.drain(..) {
            w(match &res {
                Ok(()) => Ok(()),
                Err(EngineError::CommitFailed(m, full)) => {
                    Err(EngineError::CommitFailed(m.clone(), *full))
                }
                Err(e) => Err(EngineError::Internal(e.to_string())),
            });
        }
        res
    }

    pub(super) fn table(&self, id: RelationId) -> Result<&TableDesc, EngineError> {
        self.tables.get(&id).ok_or(EngineError::UnknownRelation(id))
    }

    /// Applies a DML statement's rows. In a table with a watermark, inserted rows below
    /// it go to `late_events` instead (counted in `late`), and the watermark then moves
    /// to the largest event time minus the delay.
    pub(super) fn apply_write(
        &mut self,
        write: TableWrite,
        late: &mut u64,
    ) -> Result<(), EngineError> {
        let desc = self.table(write.table)?.clone();
        let mut changes: Vec<Row> = Vec::new();
        let mut weights = Vec::new();
        for b in &write.deletes {
            for row in batch_rows(b)? {
                self.delete_row(&desc, &row)?;
                changes.push(row);
                weights.push(-1);
            }
        }
        let wm = match desc.watermark {
            Some(_) => stored_watermark_in(&self.txn, desc.id, desc.id)?,
            None => None,
        };
        let mut max_ts: Option<i64> = None;
        let mut mark = None;
        for b in &write.inserts {
            for row in batch_rows(b)? {
                if let Some((col, _)) = desc.watermark {
                    let ts = row.get(col).and_then(crate::chunk::timestamp_micros);
                    if let (Some(ts), Some(wm)) = (ts, wm) {
                        if ts < wm {
                            *late += 1;
                            // Its columns, without a hidden row id.
                            let text: Vec<String> = row
                                .iter()
                                .take(desc.column_count())
                                .map(display_value)
                                .collect();
                            self.put_late(
                                &desc.name,
                                None,
                                ts,
                                wm,
                                format!("({})", text.join(", ")),
                            )?;
                            continue;
                        }
                    }
                    max_ts = max_ts.max(ts);
                }
                let (row, fresh) = numbered(&desc, row, &mut mark);
                self.insert_row(&desc, &row, fresh)?;
                changes.push(row);
                weights.push(1);
            }
        }
        self.put_mark(&desc, mark)?;
        self.propagate_rows(&desc, &changes, weights)?;
        if let (Some((_, delay)), Some(max_ts)) = (desc.watermark, max_ts) {
            let new = max_ts.saturating_sub(delay);
            if wm.is_none_or(|wm| new > wm) {
                self.table_watermark(desc.id, new)?;
                self.expire_rows(&desc, new)?;
            }
        }
        Ok(())
    }

    /// Records an event that arrived below its watermark; `at` is its partition and
    /// offset (none for rows inserted by DML).
    pub(super) fn put_late(
        &mut self,
        source_name: &str,
        at: Option<(i32, i64)>,
        ts: i64,
        wm: i64,
        payload: String,
    ) -> Result<(), EngineError> {
        let tz = Some(std::sync::Arc::from("+00:00"));
        self.put_event_row(
            LATE_EVENTS,
            vec![
                ScalarValue::Utf8(Some(source_name.to_string())),
                ScalarValue::Int32(at.map(|a| a.0)),
                ScalarValue::Int64(at.map(|a| a.1)),
                ScalarValue::TimestampMicrosecond(Some(ts), tz.clone()),
                ScalarValue::TimestampMicrosecond(Some(wm), tz),
                ScalarValue::Utf8(Some(payload)),
            ],
        )
    }

    /// The views that read `relation` directly.
    pub(super) fn readers_of(&self, relation: RelationId) -> Vec<RelationId> {
        self.views
            .iter()
            .filter(|d| d.reads(relation))
            .map(|d| d.view())
            .collect()
    }

    pub(super) fn delete_row(&mut self, desc: &TableDesc, row: &Row) -> Result<(), EngineError> {
        if desc.pk.is_empty() {
            let key = keys::row_key(desc.id, &codec::encode_row(row)?);
            let (old, _) = add_count(&mut self.txn, key, -1)?;
            if old <= 0 {
                return Err(EngineError::Conflict);
            }
        } else {
            let key = pk_row_key(desc, row)?;
            match self.txn.get(&key)? {
                Some(cur) if cur == codec::encode_row(row)? => self.txn.delete(key),
                _ => return Err(EngineError::Conflict),
            }
        }
        Ok(())
    }

    /// Inserts `row`; `fresh`: its key is a row id given out just now, which no stored
    /// row can have.
    pub(super) fn insert_row(
        &mut self,
        desc: &TableDesc,
        row: &Row,
        fresh: bool,
    ) -> Result<(), EngineError> {
        check_row(desc, row)?;
        let key = if desc.pk.is_empty() {
            let key = keys::row_key(desc.id, &codec::encode_row(row)?);
            add_count(&mut self.txn, key.clone(), 1)?;
            key
        } else {
            let key = pk_row_key(desc, row)?;
            if !fresh && self.txn.get(&key)?.is_some() {
                return Err(duplicate_key(desc, row));
            }
            self.txn.put(key.clone(), codec::encode_row(row)?);
            key
        };
        if let (true, Some((col, _))) = (desc.expires, desc.watermark) {
            // A row without an event time never expires.
            if let Some(ts) = row.get(col).and_then(crate::chunk::timestamp_micros) {
                self.txn
                    .put(keys::expiry_key(desc.id, ts, &key), Vec::new());
            }
        }
        Ok(())
    }

    /// Records the largest row id `desc`'s rows were written with (see
    /// [`crate::row_ids`]), with those rows.
    pub(super) fn put_mark(
        &mut self,
        desc: &TableDesc,
        mark: Option<i64>,
    ) -> Result<(), EngineError> {
        if let (true, Some(mark)) = (desc.row_id, mark) {
            let key = crate::row_ids::mark_key(desc.id);
            let stored = self
                .txn
                .get(&key)?
                .and_then(|v| crate::row_ids::decode_mark(&v));
            if stored.is_none_or(|s| s < mark) {
                self.txn.put(key, mark.to_be_bytes().to_vec());
            }
        }
        Ok(())
    }

    /// `WITH TTL`: deletes the rows of `desc` the watermark `wm` passed (event time below
    /// it), and their expiry keys. The views over the table are not told: their results
    /// keep what the rows contributed, as RisingWave's do.
    pub(super) fn expire_rows(&mut self, desc: &TableDesc, wm: i64) -> Result<(), EngineError> {
        let Some((col, _)) = desc.watermark.filter(|_| desc.expires) else {
            return Ok(());
        };
        let expired = self.txn.scan_range(
            &keys::expiry_prefix(desc.id),
            &keys::expiry_bound(desc.id, wm),
        )?;
        let types = column_types(&desc.schema);
        for (k, _) in expired {
            let row_key = keys::expired_row_key(desc.id, &k);
            if desc.pk.is_empty() {
                // The key is the row, event time included: it is the expired row.
                self.txn.delete(row_key);
            } else if let Some(stored) = self.txn.get(&row_key)? {
                // A feed may have replaced the row of this key since (its own expiry key
                // is newer).
                let row = codec::decode_row(&stored, &types)?;
                let ts = row.get(col).and_then(crate::chunk::timestamp_micros);
                if ts.is_some_and(|ts| ts < wm) {
                    self.txn.delete(row_key);
                }
            }
            self.txn.delete(k);
        }
        Ok(())
    }
}

/// `row` with its row id if `desc` numbers its rows and it has none yet (a feed's, a
/// sink's; the server numbers DML's); whether the id is new. `mark` keeps the largest id
/// written.
pub(super) fn numbered(desc: &TableDesc, row: Row, mark: &mut Option<i64>) -> (Row, bool) {
    if !desc.row_id {
        return (row, false);
    }
    let (row, fresh) = crate::row_ids::with_row_id(row, desc.schema.fields().len());
    if let Some(ScalarValue::Int64(Some(id))) = row.last() {
        *mark = (*mark).max(Some(*id));
    }
    (row, fresh)
}
