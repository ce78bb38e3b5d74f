//! Session windows: `SESSION(rel, time_col, gap [, key, …])` adds `window_start` and
//! `window_end` to each row: the rows of one key whose times are chained by gaps shorter
//! than `gap` form a session from its first time to its last time plus `gap`.
//!
//! Sessions are not fixed in advance: an event (a late-but-allowed one included) that
//! falls within `gap` of two sessions merges them, and a deleted row can split one. For
//! each change the operator finds the sessions of the row's key it touches, retracts their
//! rows with the old bounds, recomputes the sessions over that stretch of time and emits
//! the rows with the new bounds.
//!
//! State: `rows` (`key | time | row → count`), `sessions` (`key | start → end`) and an
//! index of sessions by end (`end | key | start → key length`), so the watermark frees
//! every session it makes final (`end + lag - 1 <= watermark`) with one range scan.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_storage::Txn;

use super::{add_count, decode_count, order_from_key, order_key, StateTable};
use crate::chunk::{column_types, timestamp_micros, Chunk, Row, RowFormat};
use crate::operator::Operator;
use crate::EngineError;

/// Splits times (ascending, one entry per distinct time) into sessions; returns each
/// time's session `(start, end)`. The batch query path uses the same function.
pub fn sessions(times: &[i64], gap: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::with_capacity(times.len());
    let mut first = 0;
    for i in 0..=times.len() {
        let split = i == times.len() || (i > 0 && times[i] - times[i - 1] >= gap);
        if split && i > first {
            let (s, e) = (times[first], times[i - 1].saturating_add(gap));
            out.extend(std::iter::repeat_n((s, e), i - first));
            first = i;
        }
    }
    out
}

/// One key's changes in a chunk: the encoded key and (row index, time) per change.
type KeyChanges = (Vec<u8>, Vec<(usize, i64)>);

/// Intervals `[start, end)` merged where they overlap, sorted.
fn merge_intervals(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

pub struct Session {
    time_col: usize,
    gap: i64,
    keys: Vec<usize>,
    /// The lag of the time column (see `StreamNode::watermark_columns`), if it follows
    /// the watermark.
    lag: Option<i64>,
    time_type: DataType,
    format: RowFormat,
    key_format: RowFormat,
    schema: SchemaRef,
    rows: StateTable,
    sessions: StateTable,
    ends: StateTable,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        time_col: usize,
        gap: i64,
        keys: Vec<usize>,
        lag: Option<i64>,
        input: &SchemaRef,
        schema: SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> Session {
        let input_types = column_types(input);
        Session {
            time_col,
            gap,
            lag,
            time_type: input.field(time_col).data_type().clone(),
            key_format: RowFormat::new(keys.iter().map(|&i| input_types[i].clone()).collect()),
            format: RowFormat::new(input_types),
            keys,
            schema,
            rows: StateTable::new(table_id(0)),
            sessions: StateTable::new(table_id(1)),
            ends: StateTable::new(table_id(2)),
        }
    }

    fn bound(&self, us: i64) -> Result<ScalarValue, EngineError> {
        let tz = match &self.time_type {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        Ok(ScalarValue::TimestampMicrosecond(Some(us), tz).cast_to(&self.time_type)?)
    }

    /// The stored sessions `[start, end)` of key `k` that overlap `[a, b)` (a change at
    /// time `t` touches those overlapping `[t, t + gap)`: it falls within `gap` of them).
    fn overlapping(
        &self,
        state: &Txn,
        k: &[u8],
        a: i64,
        b: i64,
    ) -> Result<Vec<(i64, i64)>, EngineError> {
        let prefix = self.sessions.key(k);
        let end = self.sessions.key2(k, &order_key(b));
        let mut out = Vec::new();
        for (key, val) in state.scan_range(&prefix, &end)? {
            let s = order_from_key(&key[prefix.len()..])?;
            let e = decode_count(&val)?;
            if e > a && s < b {
                out.push((s, e));
            }
        }
        Ok(out)
    }

    /// The rows of key `k` with times in `[from, to)`: (time, row bytes, count).
    fn rows_in(
        &self,
        state: &Txn,
        k: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Vec<u8>, i64)>, EngineError> {
        let start = self.rows.key2(k, &order_key(from));
        let end = self.rows.key2(k, &order_key(to));
        let plen = self.rows.prefix_len() + k.len();
        let mut out = Vec::new();
        for (key, val) in state.scan_range(&start, &end)? {
            let t = order_from_key(&key[plen..])?;
            out.push((t, key[plen + 8..].to_vec(), decode_count(&val)?));
        }
        Ok(out)
    }

    fn output(&self, row: &[u8], s: i64, e: i64) -> Result<Row, EngineError> {
        let mut r = self.format.decode(row)?;
        r.push(self.bound(s)?);
        r.push(self.bound(e)?);
        Ok(r)
    }

    fn put_session(&self, state: &mut Txn, k: &[u8], s: i64, e: i64) {
        state.put(
            self.sessions.key2(k, &order_key(s)),
            e.to_be_bytes().to_vec(),
        );
        let mut ik = self.ends.key(&order_key(e));
        ik.extend_from_slice(k);
        ik.extend_from_slice(&order_key(s));
        state.put(ik, (k.len() as u32).to_be_bytes().to_vec());
    }

    fn delete_session(&self, state: &mut Txn, k: &[u8], s: i64, e: i64) {
        state.delete(self.sessions.key2(k, &order_key(s)));
        let mut ik = self.ends.key(&order_key(e));
        ik.extend_from_slice(k);
        ik.extend_from_slice(&order_key(s));
        state.delete(ik);
    }
}

impl Operator for Session {
    fn name(&self) -> &'static str {
        "session_window"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        // The chunk's rows by key (keys in order of first appearance).
        let rows = chunk.rows()?;
        let mut keys: Vec<KeyChanges> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        for (r, row) in rows.iter().enumerate() {
            let Some(t) = row.get(self.time_col).and_then(timestamp_micros) else {
                continue; // no time, no session
            };
            let key: Row = self.keys.iter().map(|&i| row[i].clone()).collect();
            let k = self.key_format.encode(&key)?;
            let i = *index.entry(k.clone()).or_insert_with(|| {
                keys.push((k, Vec::new()));
                keys.len() - 1
            });
            keys[i].1.push((r, t));
        }
        // Output as (row, start, end) → weight: a row retracted and re-emitted with the
        // same bounds cancels out here.
        let mut out: std::collections::HashMap<(Vec<u8>, i64, i64), i64> = Default::default();
        let mut order: Vec<(Vec<u8>, i64, i64)> = Vec::new();
        let mut emit = |bytes: Vec<u8>, s: i64, e: i64, w: i64| {
            let key = (bytes, s, e);
            match out.get_mut(&key) {
                Some(v) => *v += w,
                None => {
                    order.push(key.clone());
                    out.insert(key, w);
                }
            }
        };
        for (k, changes) in &keys {
            // The stretches of time the key's changes affect, as session-like intervals
            // [start, last time + gap): each change's [t, t + gap), merged with each other
            // and with the stored sessions they overlap until nothing more overlaps (an
            // event within `gap` of two sessions merges them). All of a stretch is
            // retracted and recomputed once per chunk, not once per row.
            let mut times: Vec<i64> = changes.iter().map(|(_, t)| *t).collect();
            times.sort_unstable();
            times.dedup();
            let mut regions: Vec<(i64, i64)> = times
                .iter()
                .map(|&t| (t, t.saturating_add(self.gap)))
                .collect();
            let mut stored: Vec<(i64, i64)> = Vec::new();
            loop {
                regions = merge_intervals(regions);
                let mut grew = false;
                for &(a, b) in &regions.clone() {
                    for sess in self.overlapping(state, k, a, b)? {
                        if !stored.contains(&sess) {
                            stored.push(sess);
                            regions.push(sess);
                            grew = true;
                        }
                    }
                }
                if !grew {
                    break;
                }
            }
            regions = merge_intervals(regions);
            // Retract the stored sessions' rows with their old bounds.
            for &(s, e) in &stored {
                for (_, bytes, n) in self.rows_in(state, k, s, e)? {
                    emit(bytes, s, e, -n);
                }
                self.delete_session(state, k, s, e);
            }
            for &(r, t) in changes {
                let rbytes = self.format.encode(&rows[r])?;
                let (_, new) = add_count(
                    state,
                    self.rows.key2(k, &[&order_key(t)[..], &rbytes].concat()),
                    chunk.weights[r],
                )?;
                if new < 0 {
                    return Err(EngineError::Internal(
                        "negative session row multiplicity".into(),
                    ));
                }
            }
            // Recompute each stretch's sessions and emit its rows with the new bounds.
            for &(a, b) in &regions {
                let live = self.rows_in(state, k, a, b)?;
                let mut ts: Vec<i64> = live.iter().map(|(t, _, _)| *t).collect();
                ts.dedup();
                let bounds = sessions(&ts, self.gap);
                let mut prev: Option<(i64, i64)> = None;
                for (t, bytes, n) in live {
                    let (s, e) = bounds[ts.partition_point(|x| *x < t)];
                    if prev != Some((s, e)) {
                        self.put_session(state, k, s, e);
                        prev = Some((s, e));
                    }
                    emit(bytes, s, e, n);
                }
            }
        }
        let mut out_rows = Vec::new();
        let mut weights = Vec::new();
        for key in order {
            let w = out.get(&key).copied().unwrap_or(0);
            if w != 0 {
                out_rows.push(self.output(&key.0, key.1, key.2)?);
                weights.push(w);
            }
        }
        Chunk::from_rows(self.schema.clone(), &out_rows, weights)
    }

    fn on_watermark(&mut self, wm: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let Some(lag) = self.lag else {
            return Ok(None);
        };
        // Final: end + lag - 1 <= wm, i.e. end < wm - lag + 2.
        let bound = wm.saturating_sub(lag).saturating_add(2);
        let start = self.ends.key(&order_key(i64::MIN));
        let end = self.ends.key(&order_key(bound));
        let plen = self.ends.prefix_len();
        for (ik, v) in state.scan_range(&start, &end)? {
            let e = order_from_key(&ik[plen..])?;
            let klen = u32::from_be_bytes(
                v.get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| EngineError::Internal("bad session index".into()))?,
            ) as usize;
            let k = ik[plen + 8..plen + 8 + klen].to_vec();
            let s = order_from_key(&ik[plen + 8 + klen..])?;
            let from = self.rows.key2(&k, &order_key(s));
            let to = self.rows.key2(&k, &order_key(e));
            for (rk, _) in state.scan_range(&from, &to)? {
                state.delete(rk);
            }
            state.delete(self.sessions.key2(&k, &order_key(s)));
            state.delete(ik);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, TimeUnit};
    use freshet_storage::Store;

    use super::*;
    use crate::chunk::arc_schema;

    #[test]
    fn sessions_split_at_gaps() {
        assert_eq!(
            sessions(&[1, 3, 10, 11, 20], 5),
            vec![(1, 8), (1, 8), (10, 16), (10, 16), (20, 25)]
        );
        assert!(sessions(&[], 5).is_empty());
    }

    /// Random inserts and deletes (out of order), per key: the output equals sessions
    /// computed from scratch over the live rows.
    #[test]
    fn incremental_equals_recompute() {
        let ts_type = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")));
        let input = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", ts_type.clone(), true),
        ]);
        let out_schema = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", ts_type.clone(), true),
            Field::new("window_start", ts_type.clone(), true),
            Field::new("window_end", ts_type.clone(), true),
        ]);
        let mut op = Session::new(1, 10, vec![0], None, &input, out_schema, |n| 300 + n as u64);
        let mut txn = Txn::new(Store::memory());
        let mut rnd = crate::test_rng(0x1234_5678_9abc_def1u64);
        let ts = |t: i64| ScalarValue::TimestampMicrosecond(Some(t), Some(Arc::from("+00:00")));
        let mut live: Vec<(i64, i64)> = Vec::new();
        let mut acc: BTreeMap<(i64, i64, i64, i64), i64> = BTreeMap::new();
        for _ in 0..300 {
            // Chunks of 1 to 8 changes, deletes of rows inserted earlier in the same chunk
            // included.
            let mut rows = Vec::new();
            let mut weights = Vec::new();
            for _ in 0..=rnd(8) {
                let (row, w) = if !live.is_empty() && rnd(4) == 0 {
                    (live.swap_remove(rnd(live.len() as u64) as usize), -1)
                } else {
                    let r = (rnd(2) as i64, rnd(100) as i64);
                    live.push(r);
                    (r, 1)
                };
                rows.push(vec![ScalarValue::Int64(Some(row.0)), ts(row.1)]);
                weights.push(w);
            }
            let c = Chunk::from_rows(input.clone(), &rows, weights).unwrap();
            let o = op.process(0, c, &mut txn).unwrap();
            for (r, w) in o.rows().unwrap().iter().zip(&o.weights) {
                let v = |i: usize| timestamp_micros(&r[i]).unwrap();
                let k = match r[0] {
                    ScalarValue::Int64(Some(k)) => k,
                    _ => panic!(),
                };
                *acc.entry((k, v(1), v(2), v(3))).or_default() += w;
            }
            acc.retain(|_, w| *w != 0);
            // Reference.
            let mut want: BTreeMap<(i64, i64, i64, i64), i64> = BTreeMap::new();
            for key in 0..2 {
                let mut ts: Vec<i64> = live.iter().filter(|r| r.0 == key).map(|r| r.1).collect();
                ts.sort();
                let mut distinct = ts.clone();
                distinct.dedup();
                let b = sessions(&distinct, 10);
                for t in ts {
                    let (s, e) = b[distinct.partition_point(|x| *x < t)];
                    *want.entry((key, t, s, e)).or_default() += 1;
                }
            }
            assert_eq!(acc, want);
        }
    }
}
