//! Where each view is in each source: the committed offsets and largest event times per
//! partition, the watermarks, and what advancing a watermark releases (windows closed).

use super::*;

/// Prefix of the offsets (with the largest event times) `view` committed for `source`,
/// a key per partition.
pub(super) fn offsets_prefix(view: RelationId, source: RelationId) -> Vec<u8> {
    let mut k = keys::state_prefix(keys::state_table_id(view, u16::MAX, 0));
    k.extend_from_slice(&source.to_be_bytes());
    k
}

/// A partition number as a key suffix (sign bit flipped, so partitions sort in order).
pub(super) fn partition_key(p: i32) -> [u8; 4] {
    ((p as u32) ^ 0x8000_0000).to_be_bytes()
}

pub(super) fn parse_partition_key(b: [u8; 4]) -> i32 {
    (u32::from_be_bytes(b) ^ 0x8000_0000) as i32
}

/// The key of the watermark `view` holds for `source`.
pub(super) fn watermark_key(view: RelationId, source: RelationId) -> Vec<u8> {
    let mut k = keys::state_prefix(keys::state_table_id(view, u16::MAX, 1));
    k.extend_from_slice(&source.to_be_bytes());
    k
}

/// The committed-or-buffered watermark `view` holds for `source` (for a table, `view` is
/// the table itself).
pub(super) fn stored_watermark_in(
    txn: &Txn,
    view: RelationId,
    source: RelationId,
) -> Result<Option<i64>, EngineError> {
    match txn.get(&watermark_key(view, source))? {
        Some(v) => Ok(Some(crate::operators::decode_count(&v)?)),
        None => Ok(None),
    }
}

/// What a view has committed of a source's watermark: the largest event time per
/// partition, and the watermark itself.
pub fn stored_watermark(
    store: &Store,
    view: RelationId,
    source: RelationId,
) -> Result<(std::collections::BTreeMap<i32, i64>, Option<i64>), EngineError> {
    let prefix = offsets_prefix(view, source);
    let pairs = store.read_snapshot(|r| r.scan_prefix(&prefix))?;
    let mut maxima = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        let (Some(p), Some(m)) = (
            k.get(prefix.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok()),
            v.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()),
        ) else {
            continue;
        };
        maxima.insert(parse_partition_key(p), i64::from_be_bytes(m));
    }
    let wm = store
        .read_snapshot(|r| r.get(&watermark_key(view, source)))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(i64::from_be_bytes);
    Ok((maxima, wm))
}

/// The offsets a view has committed for a source: next offset to read per partition.
pub fn stored_offsets(
    store: &Store,
    view: RelationId,
    source: RelationId,
) -> Result<std::collections::BTreeMap<i32, i64>, EngineError> {
    let prefix = offsets_prefix(view, source);
    let pairs = store.read_snapshot(|r| r.scan_prefix(&prefix))?;
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        let p: [u8; 4] = k[prefix.len()..]
            .try_into()
            .map_err(|_| EngineError::Internal("bad offset key".into()))?;
        let o: [u8; 8] = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| EngineError::Internal("bad offset value".into()))?;
        out.insert(parse_partition_key(p), i64::from_be_bytes(o));
    }
    Ok(out)
}

/// The dead letter of a failure to close windows at watermark `wm` (µs) downstream of
/// `what` (a view, or a table's readers).
pub(super) fn window_close_error(
    what: &str,
    wm: i64,
    e: &EngineError,
) -> (i32, i64, String, String) {
    let at = display_value(&ScalarValue::TimestampMicrosecond(
        Some(wm),
        Some("+00:00".into()),
    ));
    (
        -1,
        -1,
        format!(
            "{what} failed to close windows at watermark {at}: {}",
            e.row_message()
        ),
        String::new(),
    )
}

impl Coordinator {
    /// A table's watermark advanced: stores it and passes it to every view over it.
    pub(super) fn table_watermark(
        &mut self,
        table: RelationId,
        wm: i64,
    ) -> Result<(), EngineError> {
        self.txn
            .put(watermark_key(table, table), wm.to_be_bytes().to_vec());
        for v in self.readers_of(table) {
            self.push_watermark(v, table, wm)?;
        }
        Ok(())
    }

    /// Passes a source's watermark to a view, then each view's output watermark to the
    /// views that read it. A view's own output (windows that closed) reaches its readers
    /// before its watermark does.
    pub(super) fn push_watermark(
        &mut self,
        view: RelationId,
        source: RelationId,
        wm: i64,
    ) -> Result<(), EngineError> {
        let mut pending = VecDeque::from([(view, source, wm)]);
        while let Some((v, rel, wm)) = pending.pop_front() {
            let Some(df) = self.views.iter_mut().find(|d| d.view() == v) else {
                continue;
            };
            let (chunks, out_wm) = df.watermark(rel, wm, &mut self.txn)?;
            let queue: VecDeque<(RelationId, Chunk)> = chunks.into_iter().map(|c| (v, c)).collect();
            self.propagate_all(queue)?;
            if let Some(w) = out_wm {
                for d in &self.views {
                    if d.reads(v) {
                        pending.push_back((d.view(), v, w));
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores a reader's offsets (each with its partition's largest event time, for
    /// sources with a watermark) and dead letters in the write buffer.
    pub(super) fn record_progress(
        &mut self,
        owner: RelationId,
        source: RelationId,
        source_name: &str,
        offsets: Vec<(i32, i64)>,
        maxima: &[(i32, i64)],
        errors: Vec<(i32, i64, String, String)>,
    ) -> Result<(), EngineError> {
        for (p, o) in offsets {
            let mut k = offsets_prefix(owner, source);
            k.extend_from_slice(&partition_key(p));
            let mut v = o.to_be_bytes().to_vec();
            if let Some((_, m)) = maxima.iter().find(|(mp, _)| *mp == p) {
                v.extend_from_slice(&m.to_be_bytes());
            }
            self.txn.put(k, v);
        }
        for (p, o, error, payload) in errors {
            self.put_event_row(
                SOURCE_ERRORS,
                vec![
                    ScalarValue::Utf8(Some(source_name.to_string())),
                    ScalarValue::Int32(Some(p)),
                    ScalarValue::Int64(Some(o)),
                    ScalarValue::Utf8(Some(error)),
                    ScalarValue::Utf8(Some(payload)),
                ],
            )?;
        }
        Ok(())
    }
}
