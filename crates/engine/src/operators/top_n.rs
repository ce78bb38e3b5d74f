//! Top-N per group: `row_number()`, `rank()` or `dense_rank()` over `PARTITION BY … ORDER
//! BY …` filtered to the first N ranks, and `ORDER BY … LIMIT n [OFFSET m]`.
//!
//! State: every input row, keyed `group | sort key | row → count, sort key length`, where
//! the sort key is memcomparable with each column's direction and NULL placement applied,
//! so a group's rows are one ordered prefix scan. For each group a chunk touches, the
//! operator reads the group's top ranks before and after applying the chunk and emits
//! the difference: when a row's count changes, only the rows whose rank changed (or that
//! entered or left the top N) are retracted and re-emitted. Ties under `row_number()` are
//! broken by the encoded row, so the result is deterministic.
//!
//! Over windows (a partition column that follows the watermark, such as `window_start`:
//! see `StreamNode::window_key`) the group key is stored with that column first, and the
//! groups the watermark makes final are deleted as one range, as the windowed aggregate
//! does: state stays bounded on an endless stream. Their rows stay in the view; later
//! changes to a closed group are ignored (a closed window does not change). The last
//! watermark is kept in state table `u16::MAX`, so this holds across restarts.

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_storage::Txn;

use super::{eval_all, StateTable};
use crate::chunk::{Chunk, Row, RowFormat};
use crate::operator::Operator;
use crate::plan::{RankKind, SortKey};
use crate::EngineError;

pub struct TopN {
    partition: Vec<crate::plan::PhysExpr>,
    order: Vec<SortKey>,
    kind: RankKind,
    /// Keep rows with `skip < rank <= limit`.
    skip: u64,
    limit: u64,
    /// Append the rank as a last column (window functions) or not (`LIMIT`).
    with_rank: bool,
    schema: SchemaRef,
    format: RowFormat,
    rows: StateTable,
    /// The partition column groups close by, its lag, and the type it is stored as.
    window: Option<(usize, i64, DataType)>,
    /// Holds the last watermark.
    meta: StateTable,
}

impl TopN {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        partition: Vec<crate::plan::PhysExpr>,
        order: Vec<SortKey>,
        kind: RankKind,
        skip: u64,
        limit: u64,
        with_rank: bool,
        input: &SchemaRef,
        schema: SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> TopN {
        TopN {
            partition,
            order,
            kind,
            skip,
            limit,
            with_rank,
            schema,
            format: RowFormat::of(input),
            rows: StateTable::new(table_id(0)),
            window: None,
            meta: StateTable::new(table_id(u16::MAX)),
        }
    }

    /// Makes the operator free the groups of closed windows: `window` is the partition
    /// column they close by and its lag (`StreamNode::window_key`).
    pub fn windowed(
        mut self,
        window: Option<(usize, i64)>,
        input: &SchemaRef,
    ) -> Result<TopN, EngineError> {
        self.window = match window {
            Some((k, lag)) => {
                let t = self.partition[k].data_type(input)?;
                let stored = freshet_storage::codec::storable_type(&t).unwrap_or(t);
                Some((k, lag, stored))
            }
            None => None,
        };
        Ok(self)
    }

    fn watermark(&self, state: &Txn) -> Result<Option<i64>, EngineError> {
        match state.get(&self.meta.key(&[]))? {
            Some(v) => Ok(Some(super::decode_count(&v)?)),
            None => Ok(None),
        }
    }

    /// The key of the first group still open at watermark `wm`.
    fn open_bound(&self, wtype: &DataType, lag: i64, wm: i64) -> Result<Vec<u8>, EngineError> {
        let bound = super::closing::open_bound(wtype, lag, wm)?;
        let mut key = self.rows.key(&[]);
        freshet_storage::codec::encode_value(&bound, &mut key)?;
        Ok(key)
    }

    /// The sort key of row `i` (see [`super::encode_sort_value`]).
    fn sort_key(
        &self,
        cols: &[datafusion::arrow::array::ArrayRef],
        i: usize,
    ) -> Result<Vec<u8>, EngineError> {
        let mut out = Vec::new();
        for (k, col) in self.order.iter().zip(cols) {
            let v = ScalarValue::try_from_array(col, i)?;
            super::encode_sort_value(&v, k.desc, k.nulls_first, &mut out)?;
        }
        Ok(out)
    }

    /// The rows of a group that pass the rank filter, with their ranks, in order.
    fn top(&self, state: &Txn, group: &[u8]) -> Result<Vec<(Vec<u8>, u64)>, EngineError> {
        let prefix = self.rows.key(group);
        let mut out = Vec::new();
        let (mut pos, mut rank, mut dense) = (0u64, 0u64, 0u64);
        let mut prev: Option<Vec<u8>> = None;
        let mut err = None;
        // Reads the group in order only as far as the last rank kept.
        state.visit_prefix(&prefix, |key, val| {
            let (count, sort_len) = match decode_value(val) {
                Ok(v) => v,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            };
            let rest = &key[prefix.len()..];
            let Some(sort) = rest.get(..sort_len) else {
                err = Some(EngineError::Internal("bad top-n key".into()));
                return false;
            };
            let row = &rest[sort_len..];
            for _ in 0..count.max(0) {
                pos += 1;
                if prev.as_deref() != Some(sort) {
                    rank = pos;
                    dense += 1;
                    prev = Some(sort.to_vec());
                }
                let r = match self.kind {
                    RankKind::RowNumber => pos,
                    RankKind::Rank => rank,
                    RankKind::DenseRank => dense,
                };
                if r > self.limit {
                    return false;
                }
                if r > self.skip {
                    out.push((row.to_vec(), r));
                }
            }
            true
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn output_row(&self, row: &[u8], rank: u64) -> Result<Row, EngineError> {
        let mut r = self.format.decode(row)?;
        if self.with_rank {
            r.push(ScalarValue::UInt64(Some(rank)));
        }
        Ok(r)
    }
}

/// A change to one stored row: its key after the group (sort key ++ row), the sort
/// key's length, and the weight.
type Change = (Vec<u8>, usize, i64);

fn decode_value(v: &[u8]) -> Result<(i64, usize), EngineError> {
    let bad = || EngineError::Internal("bad top-n state value".into());
    let count = i64::from_be_bytes(v.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?);
    let len = u32::from_be_bytes(
        v.get(8..12)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?,
    );
    Ok((count, len as usize))
}

impl Operator for TopN {
    fn name(&self) -> &'static str {
        "top_n"
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
        let group_cols = eval_all(&self.partition, &chunk.batch)?;
        let order_exprs: Vec<_> = self.order.iter().map(|k| k.expr.clone()).collect();
        let order_cols = eval_all(&order_exprs, &chunk.batch)?;
        let rows = chunk.rows()?;
        let wm = match self.window {
            Some(_) => self.watermark(state)?,
            None => None,
        };
        // Changes per group.
        let mut groups: BTreeMap<Vec<u8>, Vec<Change>> = BTreeMap::new();
        // A windowed group's key: the window value, then the partition values.
        let mut key_cols = Vec::with_capacity(group_cols.len() + 1);
        if let Some((k, _, _)) = &self.window {
            key_cols.push(group_cols[*k].clone());
        }
        key_cols.extend(group_cols.iter().cloned());
        let group_format = RowFormat::of_arrays(&key_cols);
        for (i, row) in rows.iter().enumerate() {
            let g: Row = key_cols
                .iter()
                .map(|c| ScalarValue::try_from_array(c, i))
                .collect::<Result<_, _>>()?;
            if let Some((_, lag, _)) = &self.window {
                if super::closing::is_closed(&g[0], *lag, wm) {
                    continue;
                }
            }
            let g = group_format.encode(&g)?;
            let sort = self.sort_key(&order_cols, i)?;
            let row_bytes = self.format.encode(row)?;
            let mut k = sort.clone();
            k.extend_from_slice(&row_bytes);
            groups
                .entry(g)
                .or_default()
                .push((k, sort.len(), chunk.weights[i]));
        }
        let mut out_rows = Vec::new();
        let mut weights = Vec::new();
        for (g, changes) in groups {
            let before = self.top(state, &g)?;
            for (k, sort_len, w) in changes {
                let key = self.rows.key2(&g, &k);
                let old = match state.get(&key)? {
                    Some(v) => decode_value(&v)?.0,
                    None => 0,
                };
                let new = old + w;
                if new < 0 {
                    return Err(EngineError::Internal(
                        "negative top-n row multiplicity".into(),
                    ));
                }
                if new == 0 {
                    state.delete(key);
                } else {
                    let mut v = new.to_be_bytes().to_vec();
                    v.extend_from_slice(&(sort_len as u32).to_be_bytes());
                    state.put(key, v);
                }
            }
            let after = self.top(state, &g)?;
            // Multiset difference of (row, rank).
            let mut diff: HashMap<(Vec<u8>, u64), i64> = HashMap::new();
            for e in before {
                *diff.entry(e).or_default() -= 1;
            }
            for e in after {
                *diff.entry(e).or_default() += 1;
            }
            let mut diff: Vec<_> = diff.into_iter().filter(|(_, w)| *w != 0).collect();
            diff.sort();
            for ((row, rank), w) in diff {
                out_rows.push(self.output_row(&row, rank)?);
                weights.push(w);
            }
        }
        Chunk::from_rows(self.schema.clone(), &out_rows, weights)
    }

    /// Deletes the groups of the windows the watermark closed (their rows stay in the
    /// view, final).
    fn on_watermark(&mut self, wm: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let Some((_, lag, wtype)) = &self.window else {
            return Ok(None);
        };
        let old = self.watermark(state)?;
        if old.is_some_and(|old| old >= wm) {
            return Ok(None);
        }
        state.put(self.meta.key(&[]), super::encode_count(wm));
        // Groups closed by the previous watermark are gone already.
        let start = match old {
            Some(old) => self.open_bound(wtype, *lag, old)?,
            None => self.rows.key(&[1u8]), // present (non-NULL) window values
        };
        let end = self.open_bound(wtype, *lag, wm)?;
        state.delete_range(&start, &end)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::col;
    use freshet_storage::Store;

    use super::*;
    use crate::chunk::arc_schema;

    fn i(v: i64) -> ScalarValue {
        ScalarValue::Int64(Some(v))
    }

    /// The full output (rows with weights summed), sorted.
    fn apply(acc: &mut BTreeMap<Vec<String>, i64>, c: &Chunk) {
        for (r, w) in c.rows().unwrap().iter().zip(&c.weights) {
            let k: Vec<String> = r.iter().map(|v| v.to_string()).collect();
            *acc.entry(k.clone()).or_default() += w;
            if acc[&k] == 0 {
                acc.remove(&k);
            }
        }
    }

    fn op(kind: RankKind, limit: u64) -> (TopN, SchemaRef) {
        let input = arc_schema(vec![
            Field::new("g", DataType::Int64, true),
            Field::new("x", DataType::Int64, true),
        ]);
        let out = arc_schema(vec![
            Field::new("g", DataType::Int64, true),
            Field::new("x", DataType::Int64, true),
            Field::new("rank", DataType::UInt64, true),
        ]);
        let t = TopN::new(
            vec![col("g", &input).unwrap()],
            vec![SortKey {
                expr: col("x", &input).unwrap(),
                desc: true,
                nulls_first: true,
            }],
            kind,
            0,
            limit,
            true,
            &input,
            out,
            |n| 90 + n as u64,
        );
        (t, input)
    }

    /// A reference: rank every group's rows from scratch.
    fn reference(
        rows: &[(i64, Option<i64>)],
        kind: RankKind,
        limit: u64,
    ) -> BTreeMap<Vec<String>, i64> {
        let mut out = BTreeMap::new();
        let mut groups: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();
        for (g, x) in rows {
            groups.entry(*g).or_default().push(*x);
        }
        for (g, mut xs) in groups {
            // DESC NULLS FIRST: None first, then largest.
            xs.sort_by(|a, b| match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, _) => std::cmp::Ordering::Less,
                (_, None) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => b.cmp(a),
            });
            let (mut rank, mut dense) = (0u64, 0u64);
            for (p, x) in xs.iter().enumerate() {
                let pos = p as u64 + 1;
                if p == 0 || xs[p - 1] != *x {
                    rank = pos;
                    dense += 1;
                }
                let r = match kind {
                    RankKind::RowNumber => pos,
                    RankKind::Rank => rank,
                    RankKind::DenseRank => dense,
                };
                if r <= limit {
                    let k = vec![
                        i(g).to_string(),
                        ScalarValue::Int64(*x).to_string(),
                        ScalarValue::UInt64(Some(r)).to_string(),
                    ];
                    *out.entry(k).or_default() += 1;
                }
            }
        }
        out
    }

    #[test]
    fn incremental_equals_recompute_under_random_changes() {
        let mut rnd = crate::test_rng(0x2545_f491_4f6c_dd1du64);
        for kind in [RankKind::RowNumber, RankKind::Rank, RankKind::DenseRank] {
            for limit in [1, 3] {
                let (mut t, input) = op(kind, limit);
                let mut txn = Txn::new(Store::memory());
                let mut live: Vec<(i64, Option<i64>)> = Vec::new();
                let mut out = BTreeMap::new();
                for _ in 0..60 {
                    let mut rows = Vec::new();
                    let mut ws = Vec::new();
                    for _ in 0..1 + rnd(5) {
                        if !live.is_empty() && rnd(3) == 0 {
                            let r = live.swap_remove(rnd(live.len() as u64) as usize);
                            rows.push(vec![i(r.0), ScalarValue::Int64(r.1)]);
                            ws.push(-1);
                        } else {
                            let x = if rnd(8) == 0 {
                                None
                            } else {
                                Some(rnd(6) as i64)
                            };
                            let r = (rnd(3) as i64, x);
                            live.push(r);
                            rows.push(vec![i(r.0), ScalarValue::Int64(r.1)]);
                            ws.push(1);
                        }
                    }
                    let c = Chunk::from_rows(input.clone(), &rows, ws).unwrap();
                    let o = t.process(0, c, &mut txn).unwrap();
                    apply(&mut out, &o);
                    assert!(out.values().all(|w| *w > 0), "{kind:?} negative output");
                    assert_eq!(out, reference(&live, kind, limit), "{kind:?} limit {limit}");
                }
            }
        }
    }
}
