//! Equi-join of two changelogs: inner, left/right/full outer, semi and anti.
//!
//! State: one table per side, `join key | encoded row → multiplicity`, so that the rows
//! matching a key are one prefix scan. A change on one side is first applied to that
//! side's state and then joined with the other side's current rows:
//! `Δ(L ⋈ R) = ΔL ⋈ R + L' ⋈ ΔR`, processed one input chunk at a time, which is exact
//! even when both inputs read the same relation (a self-join). Rows with a NULL key never
//! match (SQL equality) and are not stored.
//!
//! Outer, semi and anti joins also keep, for each row of a side whose unmatched (or
//! matched) rows are emitted, its *degree*: how many rows of the other side it matches
//! (ON condition included). A row's NULL-padded (or lone) output appears and disappears
//! exactly when its degree crosses zero, which a change on the other side detects by
//! updating the degrees of the rows it matches.
//!
//! A side whose input is a set (an aggregate's output: one row per group) updates a row's
//! multiplicity without reading it, since an insert finds the row absent and a delete
//! finds it present (Nexmark q5 joins two aggregates whose rows change with every bid).
//!
//! A side that only ever inserts (a source, an APPEND ONLY table, views over them) stores
//! each inserted row under its own key, `join key | encoded row | sequence number →
//! multiplicity` (see [`RowSeq`]; the next number is in state table 6): a blind write,
//! where reading the old multiplicity of a row that almost never exists yet was most of a
//! stream-to-window join's time (Nexmark q7).
//!
//! Such a side of an interval join bounded both ways (the other side's times lie within
//! `[lo, hi]` of its own), whose degrees are not tracked, is stored by time bucket instead:
//! `bucket | join key | encoded row | sequence number`, with buckets as wide as the
//! interval. A probe reads its key in the (at most two) buckets its interval covers, and the
//! watermark frees whole buckets with one range scan of the row table, so storing and
//! freeing a row is one write and one delete with no time index (four writes and a read
//! with it).

use std::collections::BTreeSet;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;

use freshet_storage::Txn;

use super::{
    change_count, decode_count, encode_count, eval_all, FastMap, FastSet, RowSeq, StateTable,
};
use crate::chunk::{arc_schema, Chunk, Row, RowFormat};
use crate::operator::Operator;
use crate::plan::{IntervalBounds, JoinKind, PhysExpr};
use crate::EngineError;

pub struct HashJoin {
    kind: JoinKind,
    /// A lookup join: see `StreamNode::Join::lookup`.
    lookup: bool,
    /// An interval join: rows are also indexed by event time (`time | key | row → key
    /// length`) so the watermark can free the ones no later row can match.
    interval: Option<IntervalBounds>,
    /// A window join whose first key is the window on both sides (`lo = hi = 0`): rows
    /// are stored in time order already, so they are freed by a range of the row tables
    /// and need no time index.
    time_leads: bool,
    /// Per side, whether it only inserts: rows are stored under a sequence number (see
    /// the module documentation) and a delete is an internal error.
    insert_only: [bool; 2],
    /// Per side, whether its input is a set (`StreamNode::unique_key`): a row's
    /// multiplicity is written without being read (see `change_count`).
    distinct: [bool; 2],
    seq: RowSeq,
    time_index: [StateTable; 2],
    /// Per side, a time below which the time index holds nothing (everything below was
    /// freed, and no row since had an earlier time): where the next freeing scan starts,
    /// so it does not walk over what earlier ones deleted. `None` (and after a restart):
    /// from the beginning. On a side stored by time bucket, probes and whole reads also
    /// start at its bucket, so storing a row with an earlier time must lower it.
    freed_below: [Option<i64>; 2],
    /// Per side whose input updates (interval joins only), the horizon of the last
    /// watermark: rows with an earlier time are final and freed, so a change to one can
    /// only come from an input that broke its watermark promise (a closed window's row
    /// updated through a join with a table); it is ignored, as a windowed aggregate
    /// ignores changes to closed windows, instead of failing on a missing row.
    final_below: [Option<i64>; 2],
    /// The transaction generation `freed_below` agrees with (`Txn::generation`): if a
    /// statement that freed rows rolls back, the rows are back, and the next freeing scan
    /// starts from the beginning, as after a restart. (`final_below` stays: the dataflow
    /// counts the rolled-back watermark as passed, so changes to those rows are still
    /// ignored.)
    generation: Option<u64>,
    keys: [Vec<PhysExpr>; 2],
    formats: [RowFormat; 2],
    tables: [StateTable; 2],
    degrees: [StateTable; 2],
    filter: Option<PhysExpr>,
    /// Per side, the format of its encoded join keys (to split stored keys); `None` if the
    /// key types could not be derived (then every probe seeks).
    key_formats: [Option<RowFormat>; 2],
    /// When a chunk probes many distinct keys, the other side is first read whole if it is
    /// small (see [`ProbeScan`]), instead of one seek per key.
    probe_scan: ProbeScan,
    /// Per probing side, chunks to wait before reading the other side whole again after it
    /// was found too big.
    scan_backoff: [u32; 2],
    /// Left columns then right columns: what the ON condition is evaluated over.
    pair_schema: SchemaRef,
    /// Each side's columns (as in `pair_schema`): the batch of a chunk's candidates.
    side_schemas: [SchemaRef; 2],
    schema: SchemaRef,
}

/// The narrowest time bucket of a side stored by bucket (µs): an interval of a few
/// microseconds should not make a probe read thousands of buckets.
const MIN_BUCKET: i64 = 1_000_000;

/// When a chunk probes at least `min_keys` distinct keys, the other side is read whole
/// if it holds at most `distinct keys * mul / div` rows (a window's maximum in Nexmark
/// q7, probed by every bid's price), and the chunk's keys are matched in memory.
#[derive(Clone, Copy, Debug)]
pub struct ProbeScan {
    pub min_keys: usize,
    pub mul: usize,
    pub div: usize,
}

impl Default for ProbeScan {
    fn default() -> Self {
        ProbeScan {
            min_keys: 64,
            mul: 1,
            div: 4,
        }
    }
}

/// Rows of one side by encoded join key.
type CandidatesByKey = FastMap<Vec<u8>, Vec<Candidate>>;

/// A row of the other side that shares a key: its encoding, value and multiplicity.
/// While a chunk is joined, its value has moved into the batch of the chunk's candidates,
/// at row `idx`.
struct Candidate {
    bytes: Vec<u8>,
    row: Row,
    count: i64,
    idx: u32,
}

impl HashJoin {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: JoinKind,
        left_keys: Vec<PhysExpr>,
        right_keys: Vec<PhysExpr>,
        left_schema: &SchemaRef,
        right_schema: &SchemaRef,
        filter: Option<PhysExpr>,
        schema: SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> HashJoin {
        let pair_schema = arc_schema(
            left_schema
                .fields()
                .iter()
                .chain(right_schema.fields())
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect(),
        );
        let key_format = |keys: &[PhysExpr], schema: &SchemaRef| {
            keys.iter()
                .map(|e| e.data_type(schema))
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .map(RowFormat::new)
        };
        HashJoin {
            key_formats: [
                key_format(&left_keys, left_schema),
                key_format(&right_keys, right_schema),
            ],
            probe_scan: ProbeScan::default(),
            scan_backoff: [0, 0],
            kind,
            lookup: false,
            interval: None,
            time_leads: false,
            insert_only: [false, false],
            distinct: [false, false],
            seq: RowSeq::new(table_id(6)),
            time_index: [StateTable::new(table_id(4)), StateTable::new(table_id(5))],
            freed_below: [None, None],
            final_below: [None, None],
            generation: None,
            keys: [left_keys, right_keys],
            formats: [RowFormat::of(left_schema), RowFormat::of(right_schema)],
            tables: [StateTable::new(table_id(0)), StateTable::new(table_id(1))],
            degrees: [StateTable::new(table_id(2)), StateTable::new(table_id(3))],
            filter,
            side_schemas: {
                let (l, r) = pair_schema.fields().split_at(left_schema.fields().len());
                let half = |fs: &[datafusion::arrow::datatypes::FieldRef]| {
                    arc_schema(fs.iter().map(|f| f.as_ref().clone()).collect())
                };
                [half(l), half(r)]
            },
            pair_schema,
            schema,
        }
    }

    /// Sets when probes read the other side whole (tests make it happen on small chunks).
    pub fn probe_scan(mut self, probe_scan: ProbeScan) -> HashJoin {
        self.probe_scan = probe_scan;
        self
    }

    /// The rows of side `other` by key, if a chunk probing `n` distinct keys should read
    /// that side whole and it is small enough; `None`: probe key by key.
    fn other_side_whole(
        &mut self,
        state: &Txn,
        other: usize,
        n: usize,
    ) -> Result<Option<CandidatesByKey>, EngineError> {
        let side = 1 - other;
        if n < self.probe_scan.min_keys {
            return Ok(None);
        }
        if self.scan_backoff[side] > 0 {
            self.scan_backoff[side] -= 1;
            return Ok(None);
        }
        let Some(kf) = &self.key_formats[other] else {
            return Ok(None);
        };
        let limit = n * self.probe_scan.mul / self.probe_scan.div.max(1);
        let prefix = self.tables[other].key(&[]);
        let end = freshet_storage::prefix_end(&prefix);
        // Start past what the watermark freed: not over its tombstones.
        let start = match (self.bucket_width(other), self.freed_below[other]) {
            (Some(w), _) => {
                self.tables[other].key(&super::order_key(self.first_live_bucket(other, w)))
            }
            (None, Some(f)) if self.time_leads => self.time_key(other, f)?,
            (None, _) => prefix.clone(),
        };
        let mut entries = Vec::new();
        let mut complete = true;
        state.walk(&start, end.as_deref(), false, |k, v| {
            if entries.len() >= limit {
                complete = false;
                return false;
            }
            entries.push((k[prefix.len()..].to_vec(), v.to_vec()));
            true
        })?;
        if !complete {
            self.scan_backoff[side] = 16;
            return Ok(None);
        }
        let skip = if self.bucket_width(other).is_some() {
            8
        } else {
            0
        };
        let mut all = CandidatesByKey::default();
        for (rest, v) in entries {
            let rest = rest.get(skip..).unwrap_or(&[]);
            let (kbytes, rbytes) = rest.split_at(kf.encoded_len(rest)?);
            all.entry(kbytes.to_vec()).or_default().push(Candidate {
                bytes: rbytes.to_vec(),
                row: self.decode_stored(other, rbytes)?,
                count: decode_count(&v)?,
                idx: 0,
            });
        }
        Ok(Some(all))
    }

    /// Makes this a lookup join (the right side is the looked-up table).
    pub fn lookup(mut self, lookup: bool) -> HashJoin {
        self.lookup = lookup;
        self
    }

    /// Marks the sides that only insert (the right side of a lookup join is never one).
    pub fn insert_only(mut self, insert_only: [bool; 2]) -> HashJoin {
        self.insert_only = [insert_only[0], insert_only[1] && !self.lookup];
        self
    }

    /// Marks the sides whose input is a set (no row is ever present twice).
    pub fn distinct_rows(mut self, distinct: [bool; 2]) -> HashJoin {
        self.distinct = distinct;
        self
    }

    /// A stored row's value: its encoding, less the sequence number on an insert-only
    /// side.
    fn decode_stored(&self, side: usize, bytes: &[u8]) -> Result<Row, EngineError> {
        let bytes = if self.insert_only[side] {
            RowSeq::strip(bytes)?
        } else {
            bytes
        };
        self.formats[side].decode(bytes)
    }

    /// Makes this an interval join whose state the watermark frees.
    pub fn interval(mut self, interval: Option<IntervalBounds>) -> HashJoin {
        self.interval = interval;
        let first = |side: usize| self.keys[side].first().and_then(crate::plan::column_index);
        self.time_leads = interval.is_some_and(|b| {
            b.lo == Some(0)
                && b.hi == Some(0)
                && first(0) == Some(b.left_col)
                && first(1) == Some(b.right_col)
        });
        self
    }

    /// Forgets where freeing stopped if the transaction dropped writes since (see
    /// `generation`).
    fn sync(&mut self, state: &Txn) {
        if self.generation != Some(state.generation()) {
            self.generation = Some(state.generation());
            self.freed_below = [None, None];
        }
    }

    /// The bucket width (µs) if `side` is stored by time bucket (see the module
    /// documentation).
    fn bucket_width(&self, side: usize) -> Option<i64> {
        let b = self.interval?;
        let (lo, hi) = (b.lo?, b.hi?);
        let bucketed =
            self.insert_only[side] && !self.lookup && !self.time_leads && !self.tracked(side);
        bucketed.then(|| hi.saturating_sub(lo).max(MIN_BUCKET))
    }

    /// The first bucket of side `side` (stored by buckets of `width`) that may hold rows:
    /// the earlier ones were freed. Scans start there instead of seeking over the
    /// tombstones of freed rows.
    fn first_live_bucket(&self, side: usize, width: i64) -> i64 {
        self.freed_below[side].map_or(i64::MIN, |f| f.div_euclid(width))
    }

    /// The buckets of side `other` (bucket width `width`, at least the interval's) that a
    /// row of the other side with time `t` can match: at most two. `None`: none.
    fn probe_buckets(&self, other: usize, width: i64, t: i64) -> Option<(i64, i64)> {
        let b = self.interval?;
        let (lo, hi) = (b.lo?, b.hi?);
        // `lo <= t_right - t_left <= hi`.
        let (from, to) = if other == 1 {
            (t.saturating_add(lo), t.saturating_add(hi))
        } else {
            (t.saturating_sub(hi), t.saturating_sub(lo))
        };
        let (b0, b1) = (
            from.div_euclid(width)
                .max(self.first_live_bucket(other, width)),
            to.div_euclid(width),
        );
        (b0 <= b1).then_some((b0, b1))
    }

    /// `chunk` without the changes to final rows of `side` (see `final_below`).
    fn drop_final(&self, side: usize, chunk: Chunk) -> Result<Chunk, EngineError> {
        let (Some(f), Some(b)) = (self.final_below[side], self.interval) else {
            return Ok(chunk);
        };
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
        let col = chunk
            .batch
            .column(if side == 0 { b.left_col } else { b.right_col });
        if !matches!(col.data_type(), DataType::Timestamp(..)) {
            return Ok(chunk); // no event time: nothing is final
        }
        // The whole column at once, in microseconds (rows without a time are kept).
        let micros = datafusion::arrow::compute::cast(
            col,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| EngineError::DataFusion(e.into()))?;
        let keep: BooleanArray = micros
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|t| Some(t.is_none_or(|t| t >= f)))
            .collect();
        if keep.true_count() == keep.len() {
            return Ok(chunk);
        }
        chunk.filter(&keep)
    }

    /// Frees the rows of `side` with a time in `[from, to)` in a join whose keys start
    /// with the time (`time_leads`): one range of the row table (keys are memcomparable).
    fn free_leading(
        &self,
        side: usize,
        from: i64,
        to: i64,
        state: &mut Txn,
    ) -> Result<(), EngineError> {
        let start = if from == i64::MIN {
            self.tables[side].key(&[])
        } else {
            self.time_key(side, from)?
        };
        self.free_range(side, &start, &self.time_key(side, to)?, state)
    }

    /// The first key of `side`'s rows with time `t` in a join whose keys start with the
    /// time (`time_leads`).
    fn time_key(&self, side: usize, t: i64) -> Result<Vec<u8>, EngineError> {
        let v = ScalarValue::TimestampMicrosecond(Some(t), None);
        Ok(self.tables[side].key(&freshet_storage::codec::encode_row(&[v])?))
    }

    /// Frees the rows of `side` stored by buckets of `width` whose buckets end at or
    /// before `to`, from the one holding `from` on.
    fn free_buckets(
        &self,
        side: usize,
        width: i64,
        from: i64,
        to: i64,
        state: &mut Txn,
    ) -> Result<(), EngineError> {
        let bucket = |t: i64| self.tables[side].key(&super::order_key(t.div_euclid(width)));
        let start = if from == i64::MIN {
            self.tables[side].key(&[])
        } else {
            bucket(from)
        };
        self.free_range(side, &start, &bucket(to), state)
    }

    /// Deletes the stored rows of `side` with keys in `[start, end)`, and their degrees
    /// (stored under the same keys in the degree table): a range deletion each.
    fn free_range(
        &self,
        side: usize,
        start: &[u8],
        end: &[u8],
        state: &mut Txn,
    ) -> Result<(), EngineError> {
        state.delete_range(start, end)?;
        if self.tracked(side) {
            let plen = self.tables[side].prefix_len();
            let (s, e) = (
                self.degrees[side].key(&start[plen..]),
                self.degrees[side].key(&end[plen..]),
            );
            state.delete_range(&s, &e)?;
        }
        Ok(())
    }

    /// The time-index key of a stored row.
    fn index_key(&self, side: usize, t: i64, kbytes: &[u8], rbytes: &[u8]) -> Vec<u8> {
        let mut k = self.time_index[side].key(&super::order_key(t));
        k.extend_from_slice(kbytes);
        k.extend_from_slice(rbytes);
        k
    }

    /// The left and right halves of `picks` (rows of a chunk of `side` and of `cands`,
    /// its candidate rows of the other side).
    fn halves<'a>(
        side: usize,
        chunk: &'a Chunk,
        cands: &'a RecordBatch,
        picks: Picks,
    ) -> [(&'a RecordBatch, UInt32Array); 2] {
        let mine = (&chunk.batch, UInt32Array::from(picks.mine));
        let theirs = (cands, UInt32Array::from(picks.theirs));
        if side == 0 {
            [mine, theirs]
        } else {
            [theirs, mine]
        }
    }

    /// The output of a chunk of `side` joined with `cands` (its candidate rows of the
    /// other side): one row per entry of `picks`, each a row of the chunk and/or of
    /// `cands` (`None`: the NULL padding of an outer join). A semi or anti join emits
    /// only the rows of the side it outputs. Built column by column, with no row values.
    fn output_batch(
        &self,
        side: usize,
        chunk: &Chunk,
        cands: &RecordBatch,
        picks: Picks,
    ) -> Result<RecordBatch, EngineError> {
        let [left, right] = Self::halves(side, chunk, cands, picks);
        if self.kind.emits_pairs() {
            return gather(&self.schema, &[left, right]);
        }
        let alone = if self.kind.unmatched()[0] || self.kind.matched_alone()[0] {
            left
        } else {
            right
        };
        if alone.1.null_count() > 0 {
            return Err(EngineError::Internal(
                "a semi or anti join output a row of the side it does not emit".into(),
            ));
        }
        gather(&self.schema, &[alone])
    }

    /// The event time (µs) of each row of a chunk of `side` in an interval join (`None`
    /// for every row otherwise).
    fn event_times(&self, side: usize, chunk: &Chunk) -> Result<Vec<Option<i64>>, EngineError> {
        let Some(b) = self.interval else {
            return Ok(vec![None; chunk.len()]);
        };
        let col = chunk
            .batch
            .column(if side == 0 { b.left_col } else { b.right_col });
        (0..chunk.len())
            .map(|r| {
                Ok(crate::chunk::timestamp_micros(
                    &ScalarValue::try_from_array(col, r)?,
                ))
            })
            .collect()
    }

    /// Whether `side`'s rows need their degree tracked (never in a lookup join, whose
    /// output is not revisited).
    fn tracked(&self, side: usize) -> bool {
        !self.lookup && (self.kind.unmatched()[side] || self.kind.matched_alone()[side])
    }

    /// How many times a row of `side` appears alone in the output (0 or 1), given its
    /// degree.
    fn alone_weight(&self, side: usize, degree: i64) -> i64 {
        let shown = (self.kind.unmatched()[side] && degree == 0)
            || (self.kind.matched_alone()[side] && degree > 0);
        i64::from(shown)
    }

    /// The encoded join key of each row of a chunk of `side` (`None` where a key value is
    /// NULL: such rows match nothing).
    fn key_bytes(&self, side: usize, chunk: &Chunk) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let cols = eval_all(&self.keys[side], &chunk.batch)?;
        let encoded = RowFormat::of_arrays(&cols).encode_columns(&cols, chunk.len())?;
        // A NULL in the key matches nothing.
        let nulls: Vec<_> = cols.iter().filter_map(|c| c.logical_nulls()).collect();
        Ok((0..chunk.len())
            .map(|r| (!nulls.iter().any(|n| n.is_null(r))).then(|| encoded.row(r).to_vec()))
            .collect())
    }

    /// Rows of `side` stored under `kbytes` (in `buckets` if the side is stored by time
    /// bucket).
    fn rows_of(
        &self,
        state: &Txn,
        side: usize,
        kbytes: &[u8],
        buckets: Option<&BTreeSet<i64>>,
    ) -> Result<Vec<Candidate>, EngineError> {
        let mut out = Vec::new();
        let mut read = |prefix: Vec<u8>| -> Result<(), EngineError> {
            for (k, v) in state.scan_prefix(&prefix)? {
                let bytes = k[prefix.len()..].to_vec();
                let row = self.decode_stored(side, &bytes)?;
                out.push(Candidate {
                    bytes,
                    row,
                    count: decode_count(&v)?,
                    idx: 0,
                });
            }
            Ok(())
        };
        match (self.bucket_width(side), buckets) {
            (None, _) => read(self.tables[side].key(kbytes))?,
            (Some(_), None) => {}
            (Some(_), Some(buckets)) => {
                for b in buckets {
                    read(self.tables[side].key2(&super::order_key(*b), kbytes))?;
                }
            }
        }
        Ok(out)
    }
}

/// Rows joined from a chunk and its candidates: per row, its row in the chunk (`mine`)
/// and its candidate (`theirs`), `None` where the row has none (NULL padding).
#[derive(Default)]
struct Picks {
    mine: Vec<Option<u32>>,
    theirs: Vec<Option<u32>>,
}

impl Picks {
    fn push(&mut self, mine: Option<u32>, theirs: Option<u32>) {
        self.mine.push(mine);
        self.theirs.push(theirs);
    }
}

/// A batch of `schema` whose columns are those of each `(batch, rows)` part in turn, each
/// taken at `rows` (a NULL index gives NULLs).
fn gather(
    schema: &SchemaRef,
    parts: &[(&RecordBatch, UInt32Array)],
) -> Result<RecordBatch, EngineError> {
    let n = parts.first().map_or(0, |(_, idx)| idx.len());
    let width: usize = parts.iter().map(|(b, _)| b.num_columns()).sum();
    if width != schema.fields().len() {
        return Err(EngineError::Internal(format!(
            "join output of {width} columns for {} fields",
            schema.fields().len()
        )));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
    let columns_in = parts
        .iter()
        .flat_map(|(batch, idx)| batch.columns().iter().map(move |c| (c, idx)));
    for ((c, idx), f) in columns_in.zip(schema.fields()) {
        // Padding only: NULLs, without reading a batch that may have no rows.
        let col = if idx.null_count() == idx.len() {
            new_null_array(f.data_type(), idx.len())
        } else {
            take(c.as_ref(), idx, None)?
        };
        // As `rows_to_batch` does: the schema's type where the input's differs.
        columns.push(if col.data_type() == f.data_type() {
            col
        } else {
            crate::numeric_special::cast(&col, f.data_type(), &Default::default())?
        });
    }
    let opts = RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &opts,
    )?)
}

impl Operator for HashJoin {
    fn name(&self) -> &'static str {
        "hash_join"
    }

    /// An interval join frees the rows of each side that no future change of the other
    /// side can match (their times are below the side's horizon), with their degrees:
    /// their output, padded or joined, is final.
    fn on_watermark(&mut self, wm: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let Some(b) = self.interval else {
            return Ok(None);
        };
        self.sync(state);
        for (side, horizon) in [(0, b.left_horizon(wm)), (1, b.right_horizon(wm))] {
            let Some(h) = horizon else { continue };
            let from = self.freed_below[side].unwrap_or(i64::MIN);
            if from >= h {
                continue;
            }
            self.freed_below[side] = Some(h);
            let updates = if side == 0 {
                b.left_updates
            } else {
                b.right_updates
            };
            if updates {
                self.final_below[side] = Some(h);
            }
            if self.time_leads {
                self.free_leading(side, from, h, state)?;
                continue;
            }
            if let Some(w) = self.bucket_width(side) {
                // Buckets before the one holding `h` end at or before it: all dead.
                self.free_buckets(side, w, from, h, state)?;
                continue;
            }
            let start = self.time_index[side].key(&super::order_key(from));
            let end = self.time_index[side].key(&super::order_key(h));
            let prefix = self.time_index[side].prefix_len() + 8;
            for (k, v) in state.scan_range(&start, &end)? {
                let klen = u32::from_be_bytes(
                    v.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| EngineError::Internal("bad join time index".into()))?,
                ) as usize;
                let rest = &k[prefix..];
                let (kbytes, rbytes) = rest.split_at(klen.min(rest.len()));
                state.delete(self.tables[side].key2(kbytes, rbytes));
                if self.tracked(side) {
                    state.delete(self.degrees[side].key2(kbytes, rbytes));
                }
                state.delete(k);
            }
        }
        Ok(None)
    }

    fn process(
        &mut self,
        input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        if input > 1 {
            return Err(EngineError::Internal(format!("join has no input {input}")));
        }
        let side = input;
        let other = 1 - input;
        self.sync(state);
        if self.lookup && side == 1 {
            // The looked-up table changed: update its state, revisit nothing.
            let keys = self.key_bytes(1, &chunk)?;
            for (r, row) in chunk.rows()?.iter().enumerate() {
                let Some(kbytes) = &keys[r] else { continue };
                let k = self.tables[1].key2(kbytes, &self.formats[1].encode(row)?);
                let (_, new) = change_count(state, k, chunk.weights[r], self.distinct[1])?;
                if new < 0 {
                    return Err(EngineError::Internal(
                        "negative join row multiplicity".into(),
                    ));
                }
            }
            return Ok(Chunk::empty(self.schema.clone()));
        }
        let chunk = self.drop_final(side, chunk)?;
        let times = self.event_times(side, &chunk)?;
        // The other side's state does not change while this chunk is applied: read each
        // key's rows once, and evaluate the ON condition over all candidate pairs at once.
        let keys = self.key_bytes(side, &chunk)?;
        let mut seen = FastSet::default();
        let distinct: Vec<&Vec<u8>> = keys.iter().flatten().filter(|k| seen.insert(*k)).collect();
        let mut whole = self.other_side_whole(state, other, distinct.len())?;
        // Per key, the other side's buckets this chunk's rows can match, if it is stored
        // by bucket (a row without a time matches nothing there).
        let mut buckets: FastMap<&Vec<u8>, BTreeSet<i64>> = FastMap::default();
        if let (Some(w), None) = (self.bucket_width(other), &whole) {
            for (r, k) in keys.iter().enumerate() {
                let (Some(k), Some(t)) = (k, times[r]) else {
                    continue;
                };
                if let Some((b0, b1)) = self.probe_buckets(other, w, t) {
                    buckets.entry(k).or_default().extend(b0..=b1);
                }
            }
        }
        // Every candidate's value goes into one batch of the other side's columns (a
        // candidate refers to its row there), so pairs and output rows are built from
        // columns by index.
        let mut candidates = CandidatesByKey::default();
        let mut cand_rows: Vec<Row> = Vec::new();
        for kbytes in distinct {
            let mut c = match &mut whole {
                Some(all) => all.remove(kbytes).unwrap_or_default(),
                None => self.rows_of(state, other, kbytes, buckets.get(kbytes))?,
            };
            for c in &mut c {
                c.idx = u32::try_from(cand_rows.len())
                    .map_err(|_| EngineError::Internal("too many join candidates".into()))?;
                cand_rows.push(std::mem::take(&mut c.row));
            }
            candidates.insert(kbytes.clone(), c);
        }
        let cands = crate::chunk::rows_to_batch(self.side_schemas[other].clone(), &cand_rows)?;
        drop(cand_rows);
        // Every (chunk row, candidate) pair, in chunk order.
        let mut pairs = Picks::default();
        for (r, k) in keys.iter().enumerate() {
            if let Some(k) = k {
                for c in &candidates[k] {
                    pairs.push(Some(r as u32), Some(c.idx));
                }
            }
        }
        let mask: Option<Vec<bool>> = match &self.filter {
            Some(f) if !pairs.mine.is_empty() => {
                let n = pairs.mine.len();
                // Every pair as the left columns then the right ones.
                let halves = Self::halves(side, &chunk, &cands, pairs);
                let batch = gather(&self.pair_schema, &halves)?;
                let m = f.evaluate(&batch)?.into_array(n)?;
                let m = m
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| EngineError::Internal("join filter is not boolean".into()))?;
                Some((0..n).map(|i| m.is_valid(i) && m.value(i)).collect())
            }
            _ => None,
        };
        // The output rows: a row of the chunk and/or a candidate each.
        let mut out = Picks::default();
        let mut out_w = Vec::new();
        let mut pair_no = 0;
        let width = self.bucket_width(side);
        let encoded = self.formats[side].encode_columns(chunk.batch.columns(), chunk.len())?;
        for r in 0..chunk.len() {
            let w = chunk.weights[r];
            let me = Some(r as u32);
            let lookup_left = self.lookup && side == 0;
            let Some(kbytes) = &keys[r] else {
                // A NULL key matches nothing: degree 0 for good.
                if (self.tracked(side) || lookup_left) && self.alone_weight(side, 0) > 0 {
                    out.push(me, None);
                    out_w.push(w);
                }
                continue;
            };
            // Room for a sequence number (rows of insert-only inputs).
            let mut rbytes = Vec::with_capacity(encoded.row(r).len() + 8);
            rbytes.extend_from_slice(encoded.row(r));
            // A lookup join keeps no stream rows.
            // `old`: the row's multiplicity before; a row that was absent has no degree.
            let (old, new) = if lookup_left {
                (0, 0)
            } else {
                let (old, new) = if self.insert_only[side] {
                    if w <= 0 {
                        return Err(EngineError::Internal(
                            "a delete reached an insert-only join input".into(),
                        ));
                    }
                    // A new sequence number: the row's keys were never written before.
                    self.seq.append(state, &mut rbytes)?;
                    match width {
                        Some(width) => {
                            // A row without a time matches nothing: not stored.
                            if let Some(t) = times[r] {
                                let bucket = super::order_key(t.div_euclid(width));
                                let k = self.tables[side].key3(&bucket, kbytes, &rbytes);
                                state.put_fresh(k, encode_count(w));
                            }
                        }
                        None => {
                            let k = self.tables[side].key2(kbytes, &rbytes);
                            state.put_fresh(k, encode_count(w))
                        }
                    }
                    (0, w)
                } else {
                    let k = self.tables[side].key2(kbytes, &rbytes);
                    change_count(state, k, w, self.distinct[side])?
                };
                if let Some(t) = times[r] {
                    if old <= 0 && new > 0 && self.freed_below[side].is_some_and(|f| t < f) {
                        self.freed_below[side] = Some(t);
                    }
                    if !self.time_leads && width.is_none() {
                        if old <= 0 && new > 0 {
                            let ik = self.index_key(side, t, kbytes, &rbytes);
                            let v = (kbytes.len() as u32).to_be_bytes().to_vec();
                            if self.insert_only[side] {
                                // Its key ends with the row's new sequence number.
                                state.put_fresh(ik, v);
                            } else {
                                state.put(ik, v);
                            }
                        } else if new <= 0 {
                            state.delete(self.index_key(side, t, kbytes, &rbytes));
                        }
                    }
                }
                if new < 0 {
                    return Err(EngineError::Internal(
                        "negative join row multiplicity".into(),
                    ));
                }
                (old, new)
            };
            let mut degree = 0;
            for c in &candidates[kbytes] {
                let passes = mask.as_ref().is_none_or(|m| m[pair_no]);
                pair_no += 1;
                if !passes {
                    continue;
                }
                degree += c.count;
                if self.kind.emits_pairs() {
                    out.push(me, Some(c.idx));
                    out_w.push(w * c.count);
                }
                if self.tracked(other) {
                    let dkey = self.degrees[other].key2(kbytes, &c.bytes);
                    let old = match state.get(&dkey)? {
                        Some(v) => decode_count(&v)?,
                        None => 0,
                    };
                    let new_degree = old + w;
                    let change =
                        self.alone_weight(other, new_degree) - self.alone_weight(other, old);
                    if change != 0 {
                        out.push(None, Some(c.idx));
                        out_w.push(change * c.count);
                    }
                    if new_degree == 0 {
                        state.delete(dkey);
                    } else {
                        state.put(dkey, encode_count(new_degree));
                    }
                }
            }
            if lookup_left {
                let a = self.alone_weight(side, degree);
                if a != 0 {
                    out.push(me, None);
                    out_w.push(w * a);
                }
            } else if self.tracked(side) {
                let a = self.alone_weight(side, degree);
                if a != 0 {
                    out.push(me, None);
                    out_w.push(w * a);
                }
                let dkey = self.degrees[side].key2(kbytes, &rbytes);
                if new == 0 || degree == 0 {
                    if old > 0 {
                        state.delete(dkey);
                    }
                } else {
                    state.put(dkey, encode_count(degree));
                }
            }
        }
        self.seq.save(state);
        let batch = self.output_batch(side, &chunk, &cands, out)?;
        Ok(Chunk::new(batch, out_w))
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

    const KINDS: [JoinKind; 8] = [
        JoinKind::Inner,
        JoinKind::Left,
        JoinKind::Right,
        JoinKind::Full,
        JoinKind::LeftSemi,
        JoinKind::LeftAnti,
        JoinKind::RightSemi,
        JoinKind::RightAnti,
    ];

    /// A row as text: a key for comparing multisets of rows.
    fn text(row: &[ScalarValue]) -> String {
        row.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The left columns, then the right ones.
    fn pair_schema(l: &SchemaRef, r: &SchemaRef) -> SchemaRef {
        arc_schema(
            l.fields()
                .iter()
                .chain(r.fields())
                .map(|f| f.as_ref().clone())
                .collect(),
        )
    }

    /// What a join of `kind` emits: both sides' columns (`pair`), or one side's.
    fn output_schema(kind: JoinKind, l: &SchemaRef, r: &SchemaRef, pair: &SchemaRef) -> SchemaRef {
        match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti => l.clone(),
            JoinKind::RightSemi | JoinKind::RightAnti => r.clone(),
            _ => pair.clone(),
        }
    }

    /// The residual ON condition `a < b` over the joined columns.
    fn a_lt_b(pair: &SchemaRef) -> PhysExpr {
        datafusion::physical_expr::expressions::binary(
            col("a", pair).unwrap(),
            datafusion::logical_expr::Operator::Lt,
            col("b", pair).unwrap(),
            pair,
        )
        .unwrap()
    }

    #[test]
    fn join_updates_from_both_sides() {
        let l = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
        ]);
        let r = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let out = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
            Field::new("k2", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let mut j = HashJoin::new(
            JoinKind::Inner,
            vec![col("k", &l).unwrap()],
            vec![col("k", &r).unwrap()],
            &l,
            &r,
            None,
            out,
            |n| 50 + n as u64,
        );
        let mut txn = Txn::new(Store::memory());
        let c = Chunk::from_rows(
            l.clone(),
            &[vec![i(1), i(10)], vec![ScalarValue::Int64(None), i(0)]],
            vec![1, 1],
        )
        .unwrap();
        assert!(j.process(0, c, &mut txn).unwrap().is_empty());
        let c =
            Chunk::from_rows(r.clone(), &[vec![i(1), i(7)], vec![i(1), i(7)]], vec![1, 1]).unwrap();
        let o = j.process(1, c, &mut txn).unwrap();
        assert_eq!(o.rows().unwrap(), vec![vec![i(1), i(10), i(1), i(7)]; 2]);
        // deleting the left row retracts both joined rows (one with multiplicity 2)
        let c = Chunk::from_rows(l, &[vec![i(1), i(10)]], vec![-1]).unwrap();
        let o = j.process(0, c, &mut txn).unwrap();
        assert_eq!(o.weights, vec![-2]);
        // a NULL key is never stored
        assert_eq!(
            txn.scan_prefix(&freshet_storage::keys::state_prefix(50))
                .unwrap()
                .len(),
            0
        );
    }

    /// Every join kind, under random inserts and deletes on both sides (NULL keys, a
    /// residual ON condition, duplicates), equals a from-scratch join after each change;
    /// also with one or both sides insert-only (rows stored under sequence numbers) or
    /// sets (multiplicities written without reading them).
    #[test]
    fn every_kind_equals_recompute() {
        use std::collections::BTreeMap;

        let l = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
        ]);
        let r = arc_schema(vec![
            Field::new("k2", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let pair = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
            Field::new("k2", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let mut rnd = crate::test_rng(0x9e37_79b9_7f4a_7c15u64);
        const F: bool = false;
        const T: bool = true;
        // (insert-only sides, set sides)
        let layouts = [
            ([F, F], [F, F]),
            ([T, F], [F, F]),
            ([T, T], [F, F]),
            ([F, F], [T, T]),
            ([F, F], [F, T]),
            ([T, F], [F, T]),
        ];
        for (kind, (ins, dis)) in KINDS.into_iter().flat_map(|k| layouts.map(|l| (k, l))) {
            let out_schema = output_schema(kind, &l, &r, &pair);
            // ON l.k = r.k2 AND l.a < r.b
            let make = || {
                HashJoin::new(
                    kind,
                    vec![col("k", &l).unwrap()],
                    vec![col("k2", &r).unwrap()],
                    &l,
                    &r,
                    Some(a_lt_b(&pair)),
                    out_schema.clone(),
                    |n| 60 + n as u64,
                )
                .insert_only(ins)
                .distinct_rows(dis)
                // Read the other side whole whenever it holds at most 8 rows per probed key.
                .probe_scan(ProbeScan {
                    min_keys: 1,
                    mul: 8,
                    div: 1,
                })
            };
            let mut j = make();
            let mut txn = Txn::new(Store::memory());
            let mut live: [Vec<(Option<i64>, i64)>; 2] = [vec![], vec![]];
            let mut acc: BTreeMap<String, i64> = BTreeMap::new();
            for step in 0..150 {
                if step == 75 {
                    // A restart: the operator reloads what it keeps in memory from state
                    // (the next sequence number must not reuse stored rows' numbers).
                    j = make();
                }
                if rnd(9) == 0 {
                    txn.commit().unwrap();
                }
                let side = rnd(2) as usize;
                let mut rows = Vec::new();
                let mut ws = Vec::new();
                for _ in 0..1 + rnd(3) {
                    if !ins[side] && !live[side].is_empty() && rnd(3) == 0 {
                        let at = rnd(live[side].len() as u64) as usize;
                        let (k, v) = live[side].swap_remove(at);
                        rows.push(vec![ScalarValue::Int64(k), i(v)]);
                        ws.push(-1);
                    } else {
                        let k = if rnd(6) == 0 {
                            None
                        } else {
                            Some(rnd(3) as i64)
                        };
                        let v = rnd(4) as i64;
                        if dis[side] && live[side].contains(&(k, v)) {
                            // A set: a row present is not inserted again.
                            continue;
                        }
                        live[side].push((k, v));
                        rows.push(vec![ScalarValue::Int64(k), i(v)]);
                        ws.push(1);
                    }
                }
                let schema = if side == 0 { l.clone() } else { r.clone() };
                let c = Chunk::from_rows(schema, &rows, ws).unwrap();
                let o = j.process(side, c, &mut txn).unwrap();
                for (row, w) in o.rows().unwrap().iter().zip(&o.weights) {
                    let e = acc.entry(text(row)).or_default();
                    *e += w;
                }
                acc.retain(|_, w| *w != 0);
                // Reference.
                let mut want: BTreeMap<String, i64> = BTreeMap::new();
                let matches = |x: &(Option<i64>, i64), y: &(Option<i64>, i64)| {
                    x.0.is_some() && x.0 == y.0 && x.1 < y.1
                };
                let null = ScalarValue::Int64(None);
                let row_of = |x: &(Option<i64>, i64)| vec![ScalarValue::Int64(x.0), i(x.1)];
                for x in &live[0] {
                    let m = live[1].iter().filter(|y| matches(x, y)).count();
                    for y in live[1].iter().filter(|y| matches(x, y)) {
                        if kind.emits_pairs() {
                            let mut p = row_of(x);
                            p.extend(row_of(y));
                            *want.entry(text(&p)).or_default() += 1;
                        }
                    }
                    let alone =
                        (kind.unmatched()[0] && m == 0) || (kind.matched_alone()[0] && m > 0);
                    if alone {
                        let mut p = row_of(x);
                        if kind.emits_pairs() {
                            p.extend([null.clone(), null.clone()]);
                        }
                        *want.entry(text(&p)).or_default() += 1;
                    }
                }
                for y in &live[1] {
                    let m = live[0].iter().filter(|x| matches(x, y)).count();
                    let alone =
                        (kind.unmatched()[1] && m == 0) || (kind.matched_alone()[1] && m > 0);
                    if alone {
                        let mut p = if kind.emits_pairs() {
                            vec![null.clone(), null.clone()]
                        } else {
                            vec![]
                        };
                        p.extend(row_of(y));
                        *want.entry(text(&p)).or_default() += 1;
                    }
                }
                assert_eq!(acc, want, "{kind:?} insert-only {ins:?} sets {dis:?}");
            }
            // Rows of an insert-only side cannot be deleted (the planner only marks sides
            // that never delete, so this is an internal error, not a wrong result).
            let keyed = |s: usize| live[s].iter().find(|x| x.0.is_some()).copied();
            if let Some((side, (k, v))) =
                (0..2).find_map(|s| Some((s, keyed(s)?)).filter(|_| ins[s]))
            {
                let schema = if side == 0 { l.clone() } else { r.clone() };
                let c = Chunk::from_rows(schema, &[vec![ScalarValue::Int64(k), i(v)]], vec![-1])
                    .unwrap();
                assert!(j.process(side, c, &mut txn).is_err());
            }
        }
    }

    /// Interval and window joins over inputs that update (retract rows until their time
    /// is final), every join kind: with the watermark freeing state as it advances, the
    /// output still equals a from-scratch join of every live row (freed ones included),
    /// and once the watermark passes every time the freed sides hold no state.
    #[test]
    fn interval_join_over_updates_frees_state_and_equals_recompute() {
        use std::collections::BTreeMap;

        use datafusion::logical_expr::Operator as BinOp;
        use datafusion::physical_expr::expressions::binary;

        let ts = || DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None);
        let l = arc_schema(vec![
            Field::new("t", ts(), true),
            Field::new("k", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
        ]);
        let r = arc_schema(vec![
            Field::new("t2", ts(), true),
            Field::new("k2", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let pair = pair_schema(&l, &r);
        let tsv = |t: i64| ScalarValue::TimestampMicrosecond(Some(t), None);
        type Live = (i64, Option<i64>, i64);
        // The left side's changes may lag the watermark more than the right side's: its
        // rows stay until final, after no right row can match them anymore.
        const LAG: [i64; 2] = [3, 1];
        // Window joins (times equal) with keys (k, t) = (k2, t2), freed through the time
        // index, and with keys (t, k) = (t2, k2), freed by ranges of the row tables; and
        // an interval join (t2 <= t).
        for config in 0..3u64 {
            let window = config < 2;
            for kind in KINDS {
                let mut rnd = crate::test_rng(0x5eed_0000 + kind as u64 * 3 + config);
                let out_schema = output_schema(kind, &l, &r, &pair);
                let a_lt_b = a_lt_b(&pair);
                let (lkeys, rkeys, filter, lo) = if window {
                    let (mut lk, mut rk) = (
                        vec![col("k", &l).unwrap(), col("t", &l).unwrap()],
                        vec![col("k2", &r).unwrap(), col("t2", &r).unwrap()],
                    );
                    if config == 1 {
                        lk.reverse();
                        rk.reverse();
                    }
                    (lk, rk, a_lt_b, Some(0))
                } else {
                    let t2_le_t = binary(
                        col("t2", &pair).unwrap(),
                        BinOp::LtEq,
                        col("t", &pair).unwrap(),
                        &pair,
                    )
                    .unwrap();
                    (
                        vec![col("k", &l).unwrap()],
                        vec![col("k2", &r).unwrap()],
                        binary(a_lt_b, BinOp::And, t2_le_t, &pair).unwrap(),
                        None,
                    )
                };
                let bounds = IntervalBounds {
                    left_col: 0,
                    right_col: 0,
                    lo,
                    hi: Some(0),
                    left_lag: LAG[0],
                    right_lag: LAG[1],
                    left_updates: true,
                    right_updates: true,
                };
                let mut j =
                    HashJoin::new(kind, lkeys, rkeys, &l, &r, Some(filter), out_schema, |n| {
                        70 + n as u64
                    })
                    .interval(Some(bounds));
                assert_eq!(j.time_leads, config == 1);
                let mut txn = Txn::new(Store::memory());
                let mut live: [Vec<Live>; 2] = [vec![], vec![]];
                let mut acc: BTreeMap<String, i64> = BTreeMap::new();
                let mut wm = 0i64;
                let matches = |x: &Live, y: &Live| {
                    x.1.is_some() && x.1 == y.1 && x.2 < y.2 && {
                        if window {
                            x.0 == y.0
                        } else {
                            y.0 <= x.0
                        }
                    }
                };
                for step in 0..300 {
                    if rnd(4) == 0 {
                        wm += rnd(3) as i64;
                        let o = j.on_watermark(wm, &mut txn).unwrap();
                        assert!(o.is_none());
                    }
                    let side = rnd(2) as usize;
                    let mut rows = Vec::new();
                    let mut ws = Vec::new();
                    for _ in 0..1 + rnd(3) {
                        // Changes only to rows that are not final: time > wm - lag.
                        let first = wm - LAG[side] + 1;
                        let open: Vec<usize> = (0..live[side].len())
                            .filter(|&i| live[side][i].0 >= first)
                            .collect();
                        if !open.is_empty() && rnd(3) == 0 {
                            let at = open[rnd(open.len() as u64) as usize];
                            let (t, k, v) = live[side].swap_remove(at);
                            rows.push(vec![tsv(t), ScalarValue::Int64(k), i(v)]);
                            ws.push(-1);
                        } else {
                            let t = first + rnd(4 + LAG[side] as u64) as i64;
                            let k = if rnd(8) == 0 {
                                None
                            } else {
                                Some(rnd(2) as i64)
                            };
                            let v = rnd(4) as i64;
                            live[side].push((t, k, v));
                            rows.push(vec![tsv(t), ScalarValue::Int64(k), i(v)]);
                            ws.push(1);
                        }
                    }
                    let schema = if side == 0 { l.clone() } else { r.clone() };
                    let c = Chunk::from_rows(schema, &rows, ws).unwrap();
                    let o = j.process(side, c, &mut txn).unwrap();
                    for (row, w) in o.rows().unwrap().iter().zip(&o.weights) {
                        *acc.entry(text(row)).or_default() += w;
                    }
                    acc.retain(|_, w| *w != 0);
                    let mut want: BTreeMap<String, i64> = BTreeMap::new();
                    let null = || ScalarValue::Int64(None);
                    let nts = || ScalarValue::TimestampMicrosecond(None, None);
                    let row_of = |x: &Live| vec![tsv(x.0), ScalarValue::Int64(x.1), i(x.2)];
                    for x in &live[0] {
                        let m = live[1].iter().filter(|y| matches(x, y)).count();
                        if kind.emits_pairs() {
                            for y in live[1].iter().filter(|y| matches(x, y)) {
                                let mut p = row_of(x);
                                p.extend(row_of(y));
                                *want.entry(text(&p)).or_default() += 1;
                            }
                        }
                        if (kind.unmatched()[0] && m == 0) || (kind.matched_alone()[0] && m > 0) {
                            let mut p = row_of(x);
                            if kind.emits_pairs() {
                                p.extend([nts(), null(), null()]);
                            }
                            *want.entry(text(&p)).or_default() += 1;
                        }
                    }
                    for y in &live[1] {
                        let m = live[0].iter().filter(|x| matches(x, y)).count();
                        if (kind.unmatched()[1] && m == 0) || (kind.matched_alone()[1] && m > 0) {
                            let mut p = if kind.emits_pairs() {
                                vec![nts(), null(), null()]
                            } else {
                                vec![]
                            };
                            p.extend(row_of(y));
                            *want.entry(text(&p)).or_default() += 1;
                        }
                    }
                    assert_eq!(acc, want, "{kind:?} config {config} step {step}");
                }
                // Past every time: the freed sides hold nothing (rows, degrees, index).
                j.on_watermark(wm + 10, &mut txn).unwrap();
                let stored = |n: u64| {
                    txn.scan_prefix(&freshet_storage::keys::state_prefix(70 + n))
                        .unwrap()
                        .len()
                };
                let freed: &[u64] = if window {
                    &[0, 1, 2, 3, 4, 5]
                } else {
                    &[0, 2, 4]
                };
                for n in freed {
                    assert_eq!(stored(*n), 0, "{kind:?} config {config} table {n}");
                }
                // A change to a freed (final) row is ignored, not an error.
                let c = Chunk::from_rows(
                    l.clone(),
                    &[vec![tsv(0), ScalarValue::Int64(Some(0)), i(0)]],
                    vec![-1],
                )
                .unwrap();
                assert!(j.process(0, c, &mut txn).unwrap().is_empty());
            }
        }
    }

    /// Insert-only sides of an interval join bounded both ways are stored by time bucket
    /// (the sides whose degrees are not tracked): every join kind, times over many buckets,
    /// probes that read some keys whole and others bucket by bucket, a restart halfway.
    /// The output equals a from-scratch join of every row, and once the watermark passes
    /// every time no side holds anything.
    #[test]
    fn insert_only_interval_sides_by_bucket_equal_recompute() {
        use std::collections::BTreeMap;

        use datafusion::logical_expr::Operator as BinOp;
        use datafusion::physical_expr::expressions::binary;

        const SEC: i64 = 1_000_000;
        // `lo <= t2 - t <= hi`: 3 s wide, so buckets of 3 s. The right rows come 1 to 4 s
        // after their left ones, so a right row on time for its input's lag can be below
        // its side's horizon already (it matches stored left rows, and is freed next).
        const LO: i64 = SEC;
        const HI: i64 = 4 * SEC;
        const LAG: i64 = 2 * SEC;
        let ts = || DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None);
        // The left rows carry `t + LO` and `t + HI`, so the ON condition needs no interval
        // arithmetic.
        let l = arc_schema(vec![
            Field::new("t", ts(), true),
            Field::new("k", DataType::Int64, true),
            Field::new("t_lo", ts(), true),
            Field::new("t_hi", ts(), true),
        ]);
        let r = arc_schema(vec![
            Field::new("t2", ts(), true),
            Field::new("k2", DataType::Int64, true),
        ]);
        let pair = pair_schema(&l, &r);
        let cmp = |a: &str, op, b: &str| {
            binary(col(a, &pair).unwrap(), op, col(b, &pair).unwrap(), &pair).unwrap()
        };
        let tsv = |t: Option<i64>| ScalarValue::TimestampMicrosecond(t, None);
        let left_row = |t: Option<i64>, k: Option<i64>| {
            let shift = |d: i64| tsv(t.map(|t| t + d));
            vec![tsv(t), ScalarValue::Int64(k), shift(LO), shift(HI)]
        };
        let right_row = |t: Option<i64>, k: Option<i64>| vec![tsv(t), ScalarValue::Int64(k)];
        let bounds = IntervalBounds {
            left_col: 0,
            right_col: 0,
            lo: Some(LO),
            hi: Some(HI),
            left_lag: LAG,
            right_lag: LAG,
            left_updates: false,
            right_updates: false,
        };
        for kind in KINDS {
            let mut rnd = crate::test_rng(0xb0c4_0000 + kind as u64);
            let out_schema = output_schema(kind, &l, &r, &pair);
            let build = || {
                let filter = binary(
                    cmp("t2", BinOp::GtEq, "t_lo"),
                    BinOp::And,
                    cmp("t2", BinOp::LtEq, "t_hi"),
                    &pair,
                )
                .unwrap();
                HashJoin::new(
                    kind,
                    vec![col("k", &l).unwrap()],
                    vec![col("k2", &r).unwrap()],
                    &l,
                    &r,
                    Some(filter),
                    out_schema.clone(),
                    |n| 90 + n as u64,
                )
                .insert_only([true, true])
                .interval(Some(bounds))
                // Chunks of 3 or more distinct keys read the other side whole.
                .probe_scan(ProbeScan {
                    min_keys: 3,
                    mul: 8,
                    div: 1,
                })
            };
            let mut j = build();
            for side in 0..2 {
                let tracked = j.tracked(side);
                assert_eq!(j.bucket_width(side).is_some(), !tracked, "{kind:?} {side}");
            }
            let mut txn = Txn::new(Store::memory());
            // Every row ever inserted: (time, key) per side.
            type Stored = (Option<i64>, Option<i64>);
            let mut rows_of: [Vec<Stored>; 2] = [vec![], vec![]];
            let mut acc: BTreeMap<String, i64> = BTreeMap::new();
            // Negative times too: buckets are floored, not truncated toward zero.
            let mut wm = -20 * SEC;
            for step in 0..400 {
                if step == 200 {
                    j = build(); // a restart: only the state in `txn` is kept
                }
                if rnd(9) == 0 {
                    // Rows committed before they are freed need tombstones; rows freed
                    // in the checkpoint that stored them need none.
                    txn.commit().unwrap();
                }
                if rnd(5) == 0 {
                    wm += rnd(3 * SEC as u64) as i64;
                    assert!(j.on_watermark(wm, &mut txn).unwrap().is_none());
                }
                if rnd(12) == 0 {
                    // A later watermark in a statement that rolls back: the rows it freed
                    // are back, and must still be found and freed.
                    txn.begin_statement();
                    j.on_watermark(wm + rnd(6 * SEC as u64) as i64, &mut txn)
                        .unwrap();
                    txn.rollback_statement();
                }
                let side = rnd(2) as usize;
                let mut rows = Vec::new();
                for _ in 0..1 + rnd(4) {
                    // On time for the input's lag, within 8 s of the watermark; sometimes
                    // without a time (such a row matches nothing).
                    let t = (rnd(12) > 0).then(|| wm - LAG + 1 + rnd(8 * SEC as u64) as i64);
                    let k = if rnd(10) == 0 {
                        None
                    } else {
                        Some(rnd(4) as i64)
                    };
                    rows_of[side].push((t, k));
                    rows.push(if side == 0 {
                        left_row(t, k)
                    } else {
                        right_row(t, k)
                    });
                }
                let schema = if side == 0 { l.clone() } else { r.clone() };
                let n = rows.len();
                let c = Chunk::from_rows(schema, &rows, vec![1; n]).unwrap();
                let o = j.process(side, c, &mut txn).unwrap();
                for (row, w) in o.rows().unwrap().iter().zip(&o.weights) {
                    *acc.entry(text(row)).or_default() += w;
                }
                acc.retain(|_, w| *w != 0);
                let matches = |x: &Stored, y: &Stored| {
                    x.1.is_some()
                        && x.1 == y.1
                        && x.0
                            .zip(y.0)
                            .is_some_and(|(a, b)| (LO..=HI).contains(&(b - a)))
                };
                let nts = || ScalarValue::TimestampMicrosecond(None, None);
                let null = || ScalarValue::Int64(None);
                let mut want: BTreeMap<String, i64> = BTreeMap::new();
                for x in &rows_of[0] {
                    let m = rows_of[1].iter().filter(|y| matches(x, y)).count();
                    if kind.emits_pairs() {
                        for y in rows_of[1].iter().filter(|y| matches(x, y)) {
                            let mut p = left_row(x.0, x.1);
                            p.extend(right_row(y.0, y.1));
                            *want.entry(text(&p)).or_default() += 1;
                        }
                    }
                    if (kind.unmatched()[0] && m == 0) || (kind.matched_alone()[0] && m > 0) {
                        let mut p = left_row(x.0, x.1);
                        if kind.emits_pairs() {
                            p.extend([nts(), null()]);
                        }
                        *want.entry(text(&p)).or_default() += 1;
                    }
                }
                for y in &rows_of[1] {
                    let m = rows_of[0].iter().filter(|x| matches(x, y)).count();
                    if (kind.unmatched()[1] && m == 0) || (kind.matched_alone()[1] && m > 0) {
                        let mut p = if kind.emits_pairs() {
                            vec![nts(), null(), nts(), nts()]
                        } else {
                            vec![]
                        };
                        p.extend(right_row(y.0, y.1));
                        *want.entry(text(&p)).or_default() += 1;
                    }
                }
                assert_eq!(acc, want, "{kind:?} step {step}");
            }
            // Past every time: no side holds degrees or index entries, and a side stored by
            // bucket holds no rows (a tracked side keeps its rows without a time, which no
            // watermark frees).
            j.on_watermark(wm + 20 * SEC, &mut txn).unwrap();
            let bucketed = (0..2u64).filter(|&n| j.bucket_width(n as usize).is_some());
            for n in bucketed.chain(2..6) {
                let stored = txn
                    .scan_prefix(&freshet_storage::keys::state_prefix(90 + n))
                    .unwrap()
                    .len();
                assert_eq!(stored, 0, "{kind:?} table {n}");
            }
        }
    }
}
