//! Top-N per group: `row_number()`, `rank()` or `dense_rank()` over `PARTITION BY … ORDER
//! BY …` filtered to the first N ranks, and `ORDER BY … LIMIT n [OFFSET m]`.
//!
//! State: every input row, ordered per group ([`OrderedGroups`], which also frees the
//! groups of closed windows). For each group a chunk touches, the operator reads the
//! group's top ranks before and after applying the chunk and emits the difference: when
//! a row's count changes, only the rows whose rank changed (or that entered or left the
//! top N) are retracted and re-emitted. Ties under `row_number()` are broken by the
//! encoded row, so the result is deterministic.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use freshet_storage::Txn;

use super::ordered_groups::OrderedGroups;
use crate::chunk::{Chunk, Row};
use crate::operator::Operator;
use crate::plan::{RankKind, SortKey};
use crate::EngineError;

pub struct TopN {
    groups: OrderedGroups,
    kind: RankKind,
    /// Keep rows with `skip < rank <= limit`.
    skip: u64,
    limit: u64,
    /// Append the rank as a last column (window functions) or not (`LIMIT`).
    with_rank: bool,
    schema: SchemaRef,
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
            groups: OrderedGroups::new(partition, order, input, table_id),
            kind,
            skip,
            limit,
            with_rank,
            schema,
        }
    }

    /// Makes the operator free the groups of closed windows: `window` is the partition
    /// column they close by and its lag (`StreamNode::window_key`).
    pub fn windowed(
        mut self,
        window: Option<(usize, i64)>,
        input: &SchemaRef,
    ) -> Result<TopN, EngineError> {
        self.groups = self.groups.windowed(window, input)?;
        Ok(self)
    }

    /// The rows of a group that pass the rank filter, with their ranks, in order.
    fn top(&self, state: &Txn, group: &[u8]) -> Result<Vec<(Vec<u8>, u64)>, EngineError> {
        let mut out = Vec::new();
        let (mut pos, mut rank, mut dense) = (0u64, 0u64, 0u64);
        let mut prev: Option<Vec<u8>> = None;
        // Reads the group in order only as far as the last rank kept.
        self.groups.visit(state, group, |sort, row, count| {
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
        Ok(out)
    }

    fn output_row(&self, row: &[u8], rank: u64) -> Result<Row, EngineError> {
        let mut r = self.groups.format.decode(row)?;
        if self.with_rank {
            r.push(ScalarValue::UInt64(Some(rank)));
        }
        Ok(r)
    }
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
        // Changes of (row, rank).
        let this = &*self;
        let diff = this
            .groups
            .apply_chunk(&chunk, state, |s, g| this.top(s, g))?;
        let mut out_rows = Vec::with_capacity(diff.len());
        let mut weights = Vec::with_capacity(diff.len());
        for ((row, rank), w) in diff {
            out_rows.push(self.output_row(&row, rank)?);
            weights.push(w);
        }
        Chunk::from_rows(self.schema.clone(), &out_rows, weights)
    }

    /// Deletes the groups of the windows the watermark closed (their rows stay in the
    /// view, final).
    fn on_watermark(&mut self, wm: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        self.groups.on_watermark(wm, state)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::col;
    use freshet_storage::Store;

    use std::collections::BTreeMap;

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
