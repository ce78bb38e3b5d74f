//! Two-phase aggregation: a chunk's rows are first folded into partial accumulators per
//! group, on several threads at once (each a contiguous part of the chunk), and only the
//! partials go on to the aggregate, which merges them into its groups.
//!
//! Shards alone cannot spread an aggregate whose groups are few, such as a count grouped
//! by window only (`GROUP BY window_end`): every row of a chunk has the same key and goes
//! to one shard. The first phase keeps no state, so it can run on any thread; the second
//! (the aggregate, as one operator or as shards) sees a handful of rows per group instead
//! of every row. RisingWave and Flink (local-global aggregation) do the same.
//!
//! - **When.** The view runs with more than one shard, and every aggregate keeps only its
//!   accumulator and does not sum floating-point numbers (`agg_fold::combinable`): the
//!   merged result is then exactly the sequential one, whatever the parts.
//! - **Which chunks.** A chunk too small for two threads goes to the aggregate as rows
//!   (its input 0). After a chunk whose partials were nearly as many as its rows (groups
//!   with one row each: the first phase only added work), the next chunks go as rows too,
//!   then partials are tried again.
//! - **State.** The aggregate's state is the same either way (the accumulators), so a
//!   view's state does not depend on which chunks took which path.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use freshet_storage::{codec, Txn};

use crate::chunk::{arc_schema, rows_to_batch, Chunk, Row};
use crate::operator::Operator;
use crate::operators::hash_agg::{HashAgg, PARTIALS};
use crate::operators::{agg_fold, eval_all, FastMap};
use crate::plan::{AggCall, PhysExpr};
use crate::shards::{cores, on_threads, ROWS_PER_THREAD};
use crate::EngineError;

/// After a chunk whose partials were more than this share of its rows, ...
const POOR_REDUCTION: f64 = 0.75;
/// ... this many chunks go to the aggregate as rows before partials are tried again.
const ROWS_AFTER_POOR_REDUCTION: usize = 16;

/// A part of a chunk folded: its groups, in order of first appearance, each with its
/// values and its partial accumulator; and the group columns' types.
type Folded = (Vec<(Row, Row)>, Vec<DataType>);

/// The first phase: folds rows into partial accumulators per group.
pub(crate) struct LocalAgg {
    group: Vec<PhysExpr>,
    aggs: Vec<AggCall>,
    offsets: Vec<usize>,
    acc_types: Vec<DataType>,
    /// A group's accumulator before any row.
    initial: Row,
}

impl LocalAgg {
    pub(crate) fn new(group: Vec<PhysExpr>, aggs: Vec<AggCall>) -> Result<LocalAgg, EngineError> {
        if !agg_fold::combinable(&aggs) {
            return Err(EngineError::Internal(
                "two-phase aggregation of aggregates that do not combine".into(),
            ));
        }
        let (offsets, acc_types) = agg_fold::layout(&aggs)?;
        let initial = HashAgg::empty_acc(&aggs, &offsets, &acc_types)?;
        Ok(LocalAgg {
            group,
            aggs,
            offsets,
            acc_types,
            initial,
        })
    }

    /// How many group columns partials start with.
    pub(crate) fn groups(&self) -> usize {
        self.group.len()
    }

    /// `chunk`'s rows folded.
    fn fold(&self, chunk: &Chunk) -> Result<Folded, EngineError> {
        let n = chunk.len();
        let gcols = eval_all(&self.group, &chunk.batch)?;
        let types = gcols.iter().map(|c| c.data_type().clone()).collect();
        let acols: Vec<Option<ArrayRef>> = self
            .aggs
            .iter()
            .map(|a| match &a.arg {
                Some(e) => Ok(Some(e.evaluate(&chunk.batch)?.into_array(n)?)),
                None => Ok(None),
            })
            .collect::<Result<_, EngineError>>()?;
        let keys = codec::encode_rows(&gcols, n)?;
        let mut index: FastMap<&[u8], usize> = FastMap::default();
        let mut groups: Vec<(Row, Row)> = Vec::new();
        for r in 0..n {
            let at = match index.get(keys.row(r)) {
                Some(&at) => at,
                None => {
                    let gvals = gcols
                        .iter()
                        .map(|c| ScalarValue::try_from_array(c, r))
                        .collect::<Result<Row, _>>()?;
                    index.insert(keys.row(r), groups.len());
                    groups.push((gvals, self.initial.clone()));
                    groups.len() - 1
                }
            };
            let w = chunk.weights[r];
            let acc = &mut groups[at].1;
            acc[0] = ScalarValue::Int64(Some(agg_fold::count(acc, 0) + w));
            for ((a, &off), col) in self.aggs.iter().zip(&self.offsets).zip(&acols) {
                let arg = match col {
                    Some(c) => Some(ScalarValue::try_from_array(c, r)?),
                    None => None,
                };
                agg_fold::fold(a, off, &self.acc_types, acc, arg.as_ref(), w)?;
            }
        }
        Ok((groups, types))
    }

    /// `chunk`'s partial accumulators, its rows split into `parts` contiguous parts
    /// folded on as many threads: rows of the group values, then the accumulator slots,
    /// each of weight 1 (the aggregate's input [`PARTIALS`]).
    pub(crate) fn partials(&self, chunk: &Chunk, parts: usize) -> Result<Chunk, EngineError> {
        let folded = on_threads(&chunk.split(parts), |part| self.fold(part));
        let mut rows = Vec::new();
        let mut types = Vec::new();
        for part in folded {
            let (groups, t) = part?;
            types = t;
            rows.extend(groups.into_iter().map(|(mut g, acc)| {
                g.extend(acc);
                g
            }));
        }
        let fields = types
            .into_iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("group_{i}"), t, true))
            .chain(
                self.acc_types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Field::new(format!("acc_{i}"), t.clone(), true)),
            )
            .collect();
        // Not `Chunk::from_rows`: the group values stay exactly as the rows' evaluate
        // (no -0.0 made 0.0), so both encode alike for the exchange and the state.
        let weights = vec![1; rows.len()];
        let batch = rows_to_batch(arc_schema(fields), &rows)?;
        Ok(Chunk { batch, weights })
    }
}

/// An aggregate run in two phases (see the module documentation): `global` takes rows on
/// input 0 and partial accumulators on input [`PARTIALS`].
pub(crate) struct TwoPhaseAgg {
    local: LocalAgg,
    global: Box<dyn Operator>,
    /// The most threads the first phase runs on (the view's parallelism).
    threads: usize,
    /// Chunks to pass on as rows before partials are tried again.
    as_rows: usize,
}

impl TwoPhaseAgg {
    pub(crate) fn new(local: LocalAgg, global: Box<dyn Operator>, threads: usize) -> TwoPhaseAgg {
        TwoPhaseAgg {
            local,
            global,
            threads,
            as_rows: 0,
        }
    }
}

impl Operator for TwoPhaseAgg {
    fn name(&self) -> &'static str {
        self.global.name()
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let n = chunk.len();
        let parts = self.threads.min(n / ROWS_PER_THREAD).min(cores());
        if parts < 2 || self.as_rows > 0 {
            self.as_rows = self.as_rows.saturating_sub(1);
            return self.global.process(0, chunk, state);
        }
        let partials = self.local.partials(&chunk, parts)?;
        if partials.len() as f64 > POOR_REDUCTION * n as f64 {
            self.as_rows = ROWS_AFTER_POOR_REDUCTION;
        }
        self.global.process(PARTIALS, partials, state)
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        state: &mut Txn,
    ) -> Result<Option<Chunk>, EngineError> {
        self.global.on_watermark(watermark, state)
    }

    fn on_tick(&mut self, now: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        self.global.on_tick(now, state)
    }

    fn set_threads(&mut self, threads: usize) {
        self.threads = threads;
        self.global.set_threads(threads);
    }

    fn uses_time(&self) -> bool {
        self.global.uses_time()
    }

    fn initial_output(&mut self, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        self.global.initial_output(state)
    }
}

/// The key expressions of partial accumulators (their first `groups` columns), for the
/// shards' exchange: typed as the group expressions evaluate, they route a group's
/// partials to the shard its rows go to.
pub(crate) fn partial_keys(groups: usize) -> Vec<PhysExpr> {
    (0..groups)
        .map(|i| {
            Arc::new(datafusion::physical_expr::expressions::Column::new(
                &format!("group_{i}"),
                i,
            )) as PhysExpr
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, SchemaRef};
    use datafusion::physical_expr::expressions::col;
    use freshet_storage::{keys, Store};
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::dataflow::Dataflow;
    use crate::operators::materialize::Output;
    use crate::plan::{AggKind, StreamNode};

    fn call(
        kind: AggKind,
        arg: Option<(&str, &SchemaRef)>,
        ret: DataType,
        running: bool,
    ) -> AggCall {
        AggCall {
            kind,
            arg: arg.map(|(c, s)| col(c, s).unwrap()),
            arg_type: arg.map(|(c, s)| s.field_with_name(c).unwrap().data_type().clone()),
            distinct: false,
            return_type: ret,
            param: None,
            order: Vec::new(),
            filter: None,
            sketch: false,
            running,
            specials: false,
        }
    }

    /// An aggregate over relation 5 (`g`, `x`, `b`) grouped by `g`: count(*), count(x),
    /// sum(x), avg(x), bool_or(b), bit_and/bit_or/bit_xor(x), and with `append_only` a
    /// running max(x).
    fn plan(append_only: bool) -> StreamNode {
        let s = arc_schema(vec![
            Field::new("g", DataType::Int64, true),
            Field::new("x", DataType::Int64, true),
            Field::new("b", DataType::Boolean, true),
        ]);
        let mut aggs = vec![
            AggCall::count_star(),
            call(AggKind::Count, Some(("x", &s)), DataType::Int64, false),
            call(AggKind::Sum, Some(("x", &s)), DataType::Int64, false),
            call(AggKind::Avg, Some(("x", &s)), DataType::Float64, false),
            call(AggKind::BoolOr, Some(("b", &s)), DataType::Boolean, false),
            call(AggKind::BitAnd, Some(("x", &s)), DataType::Int64, false),
            call(AggKind::BitOr, Some(("x", &s)), DataType::Int64, false),
            call(AggKind::BitXor, Some(("x", &s)), DataType::Int64, false),
        ];
        let mut fields = vec![
            Field::new("g", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("nx", DataType::Int64, true),
            Field::new("sx", DataType::Int64, true),
            Field::new("ax", DataType::Float64, true),
            Field::new("bo", DataType::Boolean, true),
            Field::new("band", DataType::Int64, true),
            Field::new("bor", DataType::Int64, true),
            Field::new("bxor", DataType::Int64, true),
        ];
        if append_only {
            aggs.push(call(AggKind::Max, Some(("x", &s)), DataType::Int64, true));
            fields.push(Field::new("mx", DataType::Int64, true));
        }
        StreamNode::Aggregate {
            input: Box::new(StreamNode::Source {
                relation: 5,
                schema: s.clone(),
                watermark_cols: vec![],
            }),
            group: vec![col("g", &s).unwrap()],
            aggs,
            schema: arc_schema(fields),
            emit_on_close: false,
        }
    }

    /// Random chunks (some too small for two threads, most large; a few groups, so the
    /// partials are few, and phases of many groups, so chunks go on as rows), with deletes
    /// unless append-only, in statements kept or rolled back, with commits: an aggregate
    /// with 2 and 3 shards (in two phases) stores after every step what one instance
    /// stores. Its partials path is taken (the view's rows would differ if merging were
    /// wrong: checked by breaking `agg_fold::merge`).
    #[test]
    fn two_phases_store_what_one_phase_stores() {
        for (seed, append_only) in [(1u64, false), (2, true), (3, false), (4, true)] {
            let plan = plan(append_only);
            let input = plan.inputs()[0].schema();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut one = Dataflow::build(9, &plan, false, Output::Table, 1).unwrap();
            let mut many: Vec<(Dataflow, Txn)> = [2, 3]
                .into_iter()
                .map(|s| {
                    let df = Dataflow::build(9, &plan, false, Output::Table, s).unwrap();
                    (df, Txn::new(Store::memory()))
                })
                .collect();
            let mut t1 = Txn::new(Store::memory());
            let mut live: Vec<(Option<i64>, Option<i64>, Option<bool>)> = Vec::new();
            for step in 0..60 {
                let n = match rng.gen_range(0..4) {
                    0 => rng.gen_range(1..50),
                    _ => rng.gen_range(600..3000),
                };
                // Steps 20 to 29 spread rows over many groups.
                let groups = if (20..30).contains(&step) { 100_000 } else { 5 };
                let (mut rows, mut weights) = (Vec::new(), Vec::new());
                let mut kept = live.clone();
                for _ in 0..n {
                    if !append_only && !kept.is_empty() && rng.gen_bool(0.3) {
                        let r = kept.swap_remove(rng.gen_range(0..kept.len()));
                        rows.push(r);
                        weights.push(-1);
                    } else {
                        let r = (
                            Some(rng.gen_range(0..groups)),
                            rng.gen_bool(0.9).then(|| rng.gen_range(-1000..1000)),
                            rng.gen_bool(0.8).then(|| rng.gen_bool(0.1)),
                        );
                        kept.push(r);
                        rows.push(r);
                        weights.push(1);
                    }
                }
                let rows: Vec<Row> = rows
                    .into_iter()
                    .map(|(g, x, b)| {
                        vec![
                            ScalarValue::Int64(g),
                            ScalarValue::Int64(x),
                            ScalarValue::Boolean(b),
                        ]
                    })
                    .collect();
                let c = Chunk::from_rows(input.clone(), &rows, weights).unwrap();
                let roll_back = rng.gen_bool(0.15);
                let all = std::iter::once((&mut one, &mut t1))
                    .chain(many.iter_mut().map(|(d, t)| (d, t)));
                for (df, t) in all {
                    t.begin_statement();
                    df.push(5, &c, t).unwrap();
                    if roll_back {
                        t.rollback_statement();
                    } else {
                        t.end_statement();
                    }
                }
                if !roll_back {
                    live = kept;
                }
                if step % 9 == 8 {
                    t1.commit().unwrap();
                    for (_, t) in &mut many {
                        t.commit().unwrap();
                    }
                }
                let view = keys::rows_prefix(9);
                let expected = t1.scan_prefix(&view).unwrap();
                assert_eq!(
                    expected.is_empty(),
                    live.is_empty(),
                    "seed {seed} step {step}"
                );
                for (i, (_, t)) in many.iter().enumerate() {
                    assert_eq!(
                        expected,
                        t.scan_prefix(&view).unwrap(),
                        "seed {seed} step {step}, {} shards",
                        i + 2
                    );
                }
            }
        }
    }

    /// Partials of a chunk folded in 1, 2 and 5 parts merge to the same accumulators.
    #[test]
    fn partials_in_any_parts_merge_alike() {
        let StreamNode::Aggregate {
            group, aggs, input, ..
        } = plan(true)
        else {
            unreachable!()
        };
        let local = LocalAgg::new(group, aggs.clone()).unwrap();
        let rows: Vec<Row> = (0..1000i64)
            .map(|i| {
                vec![
                    ScalarValue::Int64(Some(i % 3)),
                    ScalarValue::Int64((i % 7 != 0).then_some(i * 37 % 101)),
                    ScalarValue::Boolean(Some(i % 11 == 0)),
                ]
            })
            .collect();
        let chunk = Chunk::from_rows(input.schema(), &rows, vec![1; rows.len()]).unwrap();
        let merged = |parts: usize| {
            let p = local.partials(&chunk, parts).unwrap();
            assert!(p.len() <= 3 * parts, "{} partials", p.len());
            let mut by_group: std::collections::BTreeMap<i64, Row> = Default::default();
            for row in p.rows().unwrap() {
                let ScalarValue::Int64(Some(g)) = row[0] else {
                    panic!("group {:?}", row[0])
                };
                let part: Row = row[1..].to_vec();
                let acc = by_group.entry(g).or_insert_with(|| local.initial.clone());
                acc[0] =
                    ScalarValue::Int64(Some(agg_fold::count(acc, 0) + agg_fold::count(&part, 0)));
                for (a, &off) in aggs.iter().zip(&local.offsets) {
                    agg_fold::merge(a, off, acc, &part).unwrap();
                }
            }
            by_group
        };
        let one = merged(1);
        assert_eq!(one.len(), 3);
        assert_eq!(agg_fold::count(&one[&0], 0), 334);
        for parts in [2, 5] {
            assert_eq!(one, merged(parts), "{parts} parts");
        }
    }
}
