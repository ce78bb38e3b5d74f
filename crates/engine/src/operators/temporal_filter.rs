//! Temporal filter: `WHERE ts > now() - INTERVAL '1 hour'` (and `ts <= now()`, and several
//! such bounds together) in a view.
//!
//! Each row is visible while processing time `now` lies in `[from, until)`, where `from`
//! and `until` come from the row's bounds. The operator keeps its own `now`, moved forward
//! only by [`Operator::on_tick`] (the coordinator ticks at every checkpoint), so a row and
//! its retraction are judged at the same instant between ticks.
//!
//! State: every row that will still change visibility, keyed by the instant it next does
//! (`pending`: order-preserving instant ++ encoded row → count, from, until), so a tick is
//! one range scan up to the new `now`. A row that has left for good is forgotten; a delete
//! of such a row emits nothing, as the filter would drop it anyway. State is therefore
//! bounded by the rows currently visible or waiting to become so.

use datafusion::arrow::array::{Array, BooleanArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use freshet_storage::Txn;

use super::{decode_count, StateTable};
use crate::chunk::{Chunk, Row, RowFormat};
use crate::operator::Operator;
use crate::plan::TemporalBound;
use crate::EngineError;

pub struct TemporalFilter {
    bounds: Vec<TemporalBound>,
    schema: SchemaRef,
    format: RowFormat,
    pending: StateTable,
    meta: StateTable,
    now: Option<i64>,
    /// The transaction generation `now` agrees with (`Txn::generation`).
    generation: Option<u64>,
}

/// The interval of processing time in which a row is visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    from: i64,
    until: i64,
}

impl Span {
    fn visible(&self, now: i64) -> bool {
        self.from <= now && now < self.until
    }

    /// The next instant after `now` at which visibility changes, if any.
    fn next_change(&self, now: i64) -> Option<i64> {
        if self.from >= self.until {
            None
        } else if now < self.from {
            Some(self.from)
        } else if now < self.until && self.until != i64::MAX {
            Some(self.until)
        } else {
            None
        }
    }
}

impl TemporalFilter {
    pub fn new(
        bounds: Vec<TemporalBound>,
        schema: SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> TemporalFilter {
        TemporalFilter {
            bounds,
            format: RowFormat::of(&schema),
            schema,
            pending: StateTable::new(table_id(0)),
            meta: StateTable::new(table_id(1)),
            now: None,
            generation: None,
        }
    }

    /// The operator's current instant: the last tick, as committed (`None` before the
    /// first).
    fn stored_now(&mut self, state: &Txn) -> Result<Option<i64>, EngineError> {
        if self.generation != Some(state.generation()) {
            // A rolled-back statement may have moved `now` (a tick) without its writes.
            self.generation = Some(state.generation());
            self.now = None;
        }
        if self.now.is_none() {
            if let Some(v) = state.get(&self.meta.key(&[]))? {
                self.now = Some(decode_count(&v)?);
            }
        }
        Ok(self.now)
    }

    fn set_now(&mut self, now: i64, state: &mut Txn) {
        self.now = Some(now);
        state.put(self.meta.key(&[]), super::encode_count(now));
    }

    /// The current instant; rows that arrive before the first tick take the wall clock.
    fn now(&mut self, state: &mut Txn) -> Result<i64, EngineError> {
        match self.stored_now(state)? {
            Some(n) => Ok(n),
            None => {
                let n = crate::wall_clock_micros();
                self.set_now(n, state);
                Ok(n)
            }
        }
    }

    /// Each row's span, `None` where a bound's time is NULL (the comparison is NULL, so
    /// the row is never visible).
    fn spans(&self, chunk: &Chunk) -> Result<Vec<Option<Span>>, EngineError> {
        let n = chunk.len();
        let mut spans = vec![
            Some(Span {
                from: i64::MIN,
                until: i64::MAX,
            });
            n
        ];
        for b in &self.bounds {
            let arr = b.expr.evaluate(&chunk.batch)?.into_array(n)?;
            let arr = cast(&arr, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let ts = arr
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or_else(|| EngineError::Internal("temporal bound is not a timestamp".into()))?;
            for (i, span) in spans.iter_mut().enumerate() {
                let Some(s) = span else { continue };
                if ts.is_null(i) {
                    *span = None;
                    continue;
                }
                let t = ts.value(i).saturating_add(b.offset);
                if b.from {
                    s.from = s.from.max(t);
                } else {
                    s.until = s.until.min(t);
                }
            }
        }
        Ok(spans)
    }

    /// Adds `weight` copies of `row` (encoded) with `span` under instant `at`.
    fn add_pending(
        &self,
        state: &mut Txn,
        at: i64,
        row: &[u8],
        span: Span,
        weight: i64,
    ) -> Result<(), EngineError> {
        let key = self.pending.key2(&super::order_key(at), row);
        let old = match state.get(&key)? {
            Some(v) => decode_count(v.get(..8).unwrap_or_default())?,
            None => 0,
        };
        let new = old + weight;
        if new == 0 {
            state.delete(key);
        } else {
            let mut v = new.to_be_bytes().to_vec();
            v.extend_from_slice(&span.from.to_be_bytes());
            v.extend_from_slice(&span.until.to_be_bytes());
            state.put(key, v);
        }
        Ok(())
    }
}

impl Operator for TemporalFilter {
    fn name(&self) -> &'static str {
        "temporal_filter"
    }

    fn uses_time(&self) -> bool {
        true
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        if chunk.is_empty() {
            return Ok(chunk);
        }
        let now = self.now(state)?;
        let spans = self.spans(&chunk)?;
        let mut rows: Option<Vec<Row>> = None;
        let mut mask = Vec::with_capacity(chunk.len());
        for (i, span) in spans.iter().enumerate() {
            let Some(span) = span else {
                mask.push(false);
                continue;
            };
            mask.push(span.visible(now));
            if let Some(at) = span.next_change(now) {
                let rows = match &mut rows {
                    Some(r) => r,
                    None => rows.insert(chunk.rows()?),
                };
                let encoded = self.format.encode(&rows[i])?;
                self.add_pending(state, at, &encoded, *span, chunk.weights[i])?;
            }
        }
        chunk.filter(&BooleanArray::from(mask))
    }

    fn on_tick(&mut self, now: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let Some(old) = self.stored_now(state)? else {
            self.set_now(now, state);
            return Ok(None);
        };
        if now <= old {
            return Ok(None);
        }
        self.set_now(now, state);
        let start = self.pending.key(&super::order_key(i64::MIN));
        let end = self.pending.key(&super::order_key(now.saturating_add(1)));
        let due = state.scan_range(&start, &end)?;
        let mut out_rows = Vec::new();
        let mut weights = Vec::new();
        for (key, val) in due {
            // After the prefix: the instant (8 bytes), then the row.
            let row_bytes = key
                .get(self.pending.prefix_len() + 8..)
                .ok_or_else(|| EngineError::Internal("bad temporal filter key".into()))?;
            let field = |r: std::ops::Range<usize>| -> Result<i64, EngineError> {
                decode_count(val.get(r).unwrap_or_default())
            };
            let count = field(0..8)?;
            let span = Span {
                from: field(8..16)?,
                until: field(16..24)?,
            };
            state.delete(key.clone());
            let (was, is) = (span.visible(old), span.visible(now));
            if was != is {
                out_rows.push(self.format.decode(row_bytes)?);
                weights.push(if is { count } else { -count });
            }
            if let Some(at) = span.next_change(now) {
                self.add_pending(state, at, row_bytes, span, count)?;
            }
        }
        if out_rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Chunk::from_rows(
            self.schema.clone(),
            &out_rows,
            weights,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::col;
    use freshet_storage::{Store, Txn};

    use super::*;
    use crate::chunk::arc_schema;

    const S: i64 = 1_000_000;

    fn schema() -> SchemaRef {
        arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00"))),
                true,
            ),
        ])
    }

    fn row(k: i64, ts: Option<i64>) -> Row {
        vec![
            ScalarValue::Int64(Some(k)),
            ScalarValue::TimestampMicrosecond(ts, Some(Arc::from("+00:00"))),
        ]
    }

    fn keys(c: Option<Chunk>) -> Vec<(i64, i64)> {
        let Some(c) = c else { return vec![] };
        let mut v: Vec<(i64, i64)> = c
            .rows()
            .unwrap()
            .iter()
            .zip(&c.weights)
            .map(|(r, w)| match r[0] {
                ScalarValue::Int64(Some(k)) => (k, *w),
                _ => panic!(),
            })
            .collect();
        v.sort();
        v
    }

    /// `ts > now() - 10 s AND ts <= now()`: visible during [ts, ts + 10 s).
    fn op(s: &SchemaRef) -> TemporalFilter {
        let ts = col("ts", s).unwrap();
        TemporalFilter::new(
            vec![
                TemporalBound {
                    expr: ts.clone(),
                    offset: 10 * S,
                    from: false,
                },
                TemporalBound {
                    expr: ts,
                    offset: 0,
                    from: true,
                },
            ],
            s.clone(),
            |n| n as u64 + 77,
        )
    }

    #[test]
    fn rows_enter_and_leave_with_time() {
        let s = schema();
        let mut f = op(&s);
        let mut txn = Txn::new(Store::memory());
        f.on_tick(100 * S, &mut txn).unwrap();
        assert!(f.now.is_some());
        let rows = vec![
            row(1, Some(95 * S)),  // visible until 105
            row(2, Some(103 * S)), // visible from 103 to 113
            row(3, Some(80 * S)),  // gone already
            row(4, None),          // never
            row(5, Some(95 * S)),  // like 1, twice
            row(5, Some(95 * S)),
        ];
        let c = Chunk::from_rows(s.clone(), &rows, vec![1; 6]).unwrap();
        let out = f.process(0, c, &mut txn).unwrap();
        assert_eq!(keys(Some(out)), vec![(1, 1), (5, 1), (5, 1)]);
        // 103: row 2 enters.
        assert_eq!(keys(f.on_tick(103 * S, &mut txn).unwrap()), vec![(2, 1)]);
        // A tick back in time changes nothing.
        assert_eq!(keys(f.on_tick(50 * S, &mut txn).unwrap()), vec![]);
        // Delete one copy of row 5 while visible: retracted at once.
        let c = Chunk::from_rows(s.clone(), &[row(5, Some(95 * S))], vec![-1]).unwrap();
        assert_eq!(
            keys(Some(f.process(0, c, &mut txn).unwrap())),
            vec![(5, -1)]
        );
        // 105: rows 1 and (the remaining) 5 leave.
        assert_eq!(
            keys(f.on_tick(105 * S, &mut txn).unwrap()),
            vec![(1, -1), (5, -1)]
        );
        // Deleting a row that has left emits nothing.
        let c = Chunk::from_rows(s.clone(), &[row(1, Some(95 * S))], vec![-1]).unwrap();
        assert!(f.process(0, c, &mut txn).unwrap().is_empty());
        // Restart: a fresh operator reads `now` and the pending rows back.
        let mut g = op(&s);
        assert_eq!(keys(g.on_tick(200 * S, &mut txn).unwrap()), vec![(2, -1)]);
        // Nothing left in state.
        let prefix = freshet_storage::keys::state_prefix(77);
        assert!(txn.scan_prefix(&prefix).unwrap().is_empty());
    }

    /// Random inserts, deletes and ticks: the accumulated output always equals the live
    /// rows visible at the operator's current instant.
    #[test]
    fn random_changes_equal_recompute() {
        let s = schema();
        let mut f = op(&s);
        let mut txn = Txn::new(Store::memory());
        let mut rnd = crate::test_rng(0xdead_beef_1234_5678u64);
        let mut now = 1000 * S;
        f.on_tick(now, &mut txn).unwrap();
        let mut live: Vec<(i64, i64)> = Vec::new();
        let mut acc: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let apply = |acc: &mut BTreeMap<(i64, i64), i64>, c: Option<Chunk>| {
            let Some(c) = c else { return };
            for (r, w) in c.rows().unwrap().iter().zip(&c.weights) {
                let k = match (&r[0], &r[1]) {
                    (
                        ScalarValue::Int64(Some(k)),
                        ScalarValue::TimestampMicrosecond(Some(t), _),
                    ) => (*k, *t),
                    _ => panic!(),
                };
                *acc.entry(k).or_default() += w;
            }
            acc.retain(|_, w| *w != 0);
        };
        for step in 0..400 {
            match rnd(5) {
                0 => {
                    now += (rnd(4) as i64) * S;
                    let out = f.on_tick(now, &mut txn).unwrap();
                    apply(&mut acc, out);
                }
                4 => {
                    // A later tick in a statement that rolls back (a view downstream
                    // failed): its output never happened, and time has not moved.
                    txn.begin_statement();
                    f.on_tick(now + (1 + rnd(12) as i64) * S, &mut txn).unwrap();
                    txn.rollback_statement();
                }
                1 if !live.is_empty() => {
                    let r = live.swap_remove(rnd(live.len() as u64) as usize);
                    let c = Chunk::from_rows(s.clone(), &[row(r.0, Some(r.1))], vec![-1]).unwrap();
                    let out = f.process(0, c, &mut txn).unwrap();
                    apply(&mut acc, Some(out));
                }
                _ => {
                    // Times around now: past, visible, and future.
                    let r = (rnd(3) as i64, now + (rnd(30) as i64 - 15) * S);
                    live.push(r);
                    let c = Chunk::from_rows(s.clone(), &[row(r.0, Some(r.1))], vec![1]).unwrap();
                    let out = f.process(0, c, &mut txn).unwrap();
                    apply(&mut acc, Some(out));
                }
            }
            // Visible during [ts, ts + 10 s).
            let mut want: BTreeMap<(i64, i64), i64> = BTreeMap::new();
            for r in &live {
                if r.1 <= now && now < r.1 + 10 * S {
                    *want.entry(*r).or_default() += 1;
                }
            }
            assert_eq!(acc, want, "step {step}");
        }
    }
}
