//! The streaming plan: what the planner hands the engine to build a view's dataflow.
//!
//! Expressions are DataFusion physical expressions over the input's columns (by index), so
//! they evaluate vectorized on a chunk's Arrow batch.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

pub type PhysExpr = Arc<dyn PhysicalExpr>;

/// Id of a table or a view: the `relation id` in storage keys.
pub type RelationId = u64;

#[derive(Clone, Debug)]
pub enum StreamNode {
    /// Constant rows (`VALUES`, a `SELECT` without `FROM`): emitted once, when the view is
    /// created, and never changed.
    Values {
        schema: SchemaRef,
        rows: Vec<Vec<datafusion::common::ScalarValue>>,
    },
    /// The changelog of a table or another view.
    Source {
        relation: RelationId,
        schema: SchemaRef,
        /// Columns that follow the relation's watermark: `(column, lag)` (see
        /// [`StreamNode::watermark_columns`]).
        watermark_cols: Vec<(usize, i64)>,
    },
    /// `TUMBLE`/`HOP`: each row once per window its time falls in, with `window_start` and
    /// `window_end` appended.
    Window {
        input: Box<StreamNode>,
        time_col: usize,
        spec: WindowSpec,
        schema: SchemaRef,
    },
    /// `SESSION`: each row with `window_start` and `window_end` of its key's session
    /// (times chained by gaps shorter than `gap`, µs).
    Session {
        input: Box<StreamNode>,
        time_col: usize,
        gap: i64,
        keys: Vec<usize>,
        schema: SchemaRef,
    },
    /// Keeps the rows for which `predicate` is true.
    Filter {
        input: Box<StreamNode>,
        predicate: PhysExpr,
    },
    /// Computes `exprs` over each row; `schema` is the output.
    Project {
        input: Box<StreamNode>,
        exprs: Vec<PhysExpr>,
        schema: SchemaRef,
    },
    /// Grouped aggregation; output columns are the group values then the aggregates.
    Aggregate {
        input: Box<StreamNode>,
        group: Vec<PhysExpr>,
        aggs: Vec<AggCall>,
        schema: SchemaRef,
        /// `EMIT ON WINDOW CLOSE`: a group's row is emitted once, when the watermark makes
        /// it final, instead of being updated as rows arrive.
        emit_on_close: bool,
    },
    /// A temporal filter (`WHERE ts > now() - INTERVAL '1 hour'`): each row is in the
    /// output while processing time lies between its bounds, so rows leave (and enter)
    /// the output as time passes, and the view stays bounded on an endless stream.
    TemporalFilter {
        input: Box<StreamNode>,
        bounds: Vec<TemporalBound>,
    },
    /// The first ranks of each group (`row_number() … WHERE rn <= N`, `ORDER BY … LIMIT`):
    /// the input rows with `skip < rank <= limit`, the rank appended when `with_rank`.
    TopN {
        input: Box<StreamNode>,
        partition: Vec<PhysExpr>,
        order: Vec<SortKey>,
        kind: RankKind,
        skip: u64,
        limit: u64,
        with_rank: bool,
        schema: SchemaRef,
    },
    /// Window functions (`sum(x) OVER (PARTITION BY … ORDER BY … [frame])`, `lag`, …):
    /// each input row with the functions' values appended. Every function has the same
    /// partition and order (`partition`, `order`); `funcs` are DataFusion's evaluators,
    /// over the input's columns.
    OverWindow {
        input: Box<StreamNode>,
        partition: Vec<PhysExpr>,
        order: Vec<SortKey>,
        funcs: Vec<Arc<dyn datafusion::physical_plan::WindowExpr>>,
        schema: SchemaRef,
        /// Every function's value for a row depends only on the rows ordered before it
        /// and its peers (frames that end at the current row or before; no `lead`,
        /// `ntile`, `percent_rank`, `cume_dist`): a row is final once no row can arrive
        /// ordered at or before it, which an ascending first `ORDER BY` column that
        /// follows the watermark tells (see [`StreamNode::watermark_columns`]).
        looks_back: bool,
    },
    /// `unnest(array)`: each input row once per element of the `lists` columns (in lock
    /// step); output column `j` comes from input column `deps[j]` (an element where that
    /// is one of `lists`).
    Unnest {
        input: Box<StreamNode>,
        lists: Vec<usize>,
        deps: Vec<usize>,
        nulls: UnnestNulls,
        schema: SchemaRef,
    },
    /// `EMIT ON WINDOW CLOSE` over a plan without a closing aggregate (plain windowed
    /// selects, top-N and window functions per window): each row is held until the
    /// watermark makes it final by its column `col` (lag `lag`: see
    /// [`StreamNode::watermark_columns`]), then emitted once; the output only inserts.
    EmitOnClose {
        input: Box<StreamNode>,
        col: usize,
        lag: i64,
    },
    /// `UNION ALL`: every input's changes, passed on.
    Union {
        inputs: Vec<StreamNode>,
        schema: SchemaRef,
    },
    /// Equi-join; output columns are the left columns then the right columns (only one
    /// side's for semi and anti joins).
    Join {
        kind: JoinKind,
        /// A lookup join (`FOR SYSTEM_TIME AS OF PROCTIME()`): each left row is joined
        /// with the right side as it is when the row arrives; right-side changes update
        /// the lookup state only and never revisit earlier output; left rows are not kept.
        lookup: bool,
        /// An interval join: the ON condition bounds the distance between an event-time
        /// column of each side, so the watermark frees rows that can match no later row.
        interval: Option<IntervalBounds>,
        /// Per side, whether it only ever inserts rows (the right side of a lookup join
        /// never counts as such): its rows are then stored without reading their old
        /// multiplicity (see `HashJoin::insert_only`).
        insert_only: [bool; 2],
        left: Box<StreamNode>,
        right: Box<StreamNode>,
        left_keys: Vec<PhysExpr>,
        right_keys: Vec<PhysExpr>,
        /// A residual condition over the joined row.
        filter: Option<PhysExpr>,
        schema: SchemaRef,
    },
}

/// What `unnest` gives for a NULL or empty array: no row (`Drop`), a row of NULL for a
/// NULL array (`Preserve`), or for an empty one too (`PreserveAndExpandEmpty`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnnestNulls {
    Drop,
    Preserve,
    PreserveAndExpandEmpty,
}

/// A window function as EXPLAIN shows it: the call and its frame (its partition and
/// order are the node's).
fn window_call(w: &dyn datafusion::physical_plan::WindowExpr) -> String {
    let name = w.name();
    let frame = w.get_window_frame().to_string();
    let call = [" PARTITION BY [", " ORDER BY [", frame.as_str()]
        .iter()
        .filter_map(|cut| name.find(cut))
        .min()
        .map_or(name, |end| &name[..end]);
    format!("{} {frame}", call.trim_end())
}

/// A window of event time, in microseconds: windows start at `offset + k * slide` and last
/// `size` (a tumbling window has `slide == size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd)]
pub struct WindowSpec {
    pub size: i64,
    pub slide: i64,
    pub offset: i64,
}

impl WindowSpec {
    /// The starts of the windows `ts` falls in, latest first. A window whose start or end
    /// would not fit in a timestamp (times near the ends of the range) is left out.
    pub fn starts(&self, ts: i64) -> impl Iterator<Item = i64> + '_ {
        let (size, slide) = (self.size, self.slide);
        let last = ts
            .checked_sub(self.offset)
            .map(|t| t.div_euclid(slide))
            .and_then(|k| k.checked_mul(slide))
            .and_then(|s| s.checked_add(self.offset));
        last.into_iter().flat_map(move |last| {
            (0..)
                .map_while(move |k: i64| k.checked_mul(slide).and_then(|d| last.checked_sub(d)))
                .take_while(move |s| s.checked_add(size).is_some_and(|end| end > ts))
        })
    }
}

/// `right.time - left.time` lies in `[lo, hi]` (µs; a missing side is unbounded) for
/// every joined pair, and future changes of each side (inserts and, for a side that
/// updates, retractions) have times of at least `watermark - lag + 1`, so a left row
/// whose time plus `hi` is below the right side's future times (and a right row whose
/// time minus `lo` is below the left side's) can never match again. A side that updates
/// keeps a row until it is also final itself (its time below its own side's future
/// times), since a retraction of it must still find it.
///
/// A window join (`ON l.window_start = r.window_start` over two windowed aggregates) is
/// the case `lo = hi = 0`: a window's rows are freed once both sides closed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalBounds {
    pub left_col: usize,
    pub right_col: usize,
    pub lo: Option<i64>,
    pub hi: Option<i64>,
    pub left_lag: i64,
    pub right_lag: i64,
    /// Whether the side's input retracts rows (is not insert-only).
    pub left_updates: bool,
    pub right_updates: bool,
}

impl IntervalBounds {
    /// The smallest time a future change of a side with `lag` can have at watermark `wm`.
    fn future(wm: i64, lag: i64) -> i64 {
        wm.saturating_sub(lag).saturating_add(1)
    }

    /// Left rows with a time below this are dead at watermark `wm`.
    pub fn left_horizon(&self, wm: i64) -> Option<i64> {
        let h = self
            .hi
            .map(|hi| Self::future(wm, self.right_lag).saturating_sub(hi))?;
        Some(match self.left_updates {
            true => h.min(Self::future(wm, self.left_lag)),
            false => h,
        })
    }

    /// Right rows with a time below this are dead at watermark `wm`.
    pub fn right_horizon(&self, wm: i64) -> Option<i64> {
        let h = self
            .lo
            .map(|lo| Self::future(wm, self.left_lag).saturating_add(lo))?;
        Some(match self.right_updates {
            true => h.min(Self::future(wm, self.right_lag)),
            false => h,
        })
    }
}

/// Which rows a join emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    /// `EXISTS`/`IN`: the left rows with a match.
    LeftSemi,
    /// `NOT EXISTS`: the left rows without a match.
    LeftAnti,
    RightSemi,
    RightAnti,
}

impl JoinKind {
    /// Whether matched pairs are emitted (as opposed to one side's rows alone).
    pub fn emits_pairs(self) -> bool {
        matches!(
            self,
            JoinKind::Inner | JoinKind::Left | JoinKind::Right | JoinKind::Full
        )
    }

    /// Per side: whether its rows without a match are emitted (NULL-padded for outer
    /// joins, alone for anti joins).
    pub fn unmatched(self) -> [bool; 2] {
        match self {
            JoinKind::Left | JoinKind::LeftAnti => [true, false],
            JoinKind::Right | JoinKind::RightAnti => [false, true],
            JoinKind::Full => [true, true],
            _ => [false, false],
        }
    }

    /// Per side: whether its rows with a match are emitted alone (semi joins).
    pub fn matched_alone(self) -> [bool; 2] {
        match self {
            JoinKind::LeftSemi => [true, false],
            JoinKind::RightSemi => [false, true],
            _ => [false, false],
        }
    }
}

/// One column of an ORDER BY.
#[derive(Clone, Debug)]
pub struct SortKey {
    pub expr: PhysExpr,
    pub desc: bool,
    pub nulls_first: bool,
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} NULLS {}",
            self.expr,
            if self.desc { "DESC" } else { "ASC" },
            if self.nulls_first { "FIRST" } else { "LAST" }
        )
    }
}

/// How a top-N numbers rows: `row_number()` (1, 2, 3, 4), `rank()` (1, 2, 2, 4) or
/// `dense_rank()` (1, 2, 2, 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankKind {
    RowNumber,
    Rank,
    DenseRank,
}

/// One side of a row's visibility in processing time: the instant `time + offset`, where
/// `time` is `expr` evaluated over the row (a timestamp).
#[derive(Clone, Debug)]
pub struct TemporalBound {
    pub expr: PhysExpr,
    /// Microseconds added to the row's time.
    pub offset: i64,
    /// `true`: the row is visible from that instant on (`now() >= time + offset`);
    /// `false`: until that instant, exclusive (`now() < time + offset`).
    pub from: bool,
}

impl fmt::Display for TemporalBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.from { ">=" } else { "<" };
        write!(f, "now() {op} {}", self.expr)?;
        match self.offset {
            0 => Ok(()),
            o if o < 0 => write!(f, " - {}", fmt_micros(-o)),
            o => write!(f, " + {}", fmt_micros(o)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// `count(*)`
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    /// `bit_and`, `bit_or`, `bit_xor` over integers: kept as the count of non-NULL inputs
    /// and, per bit, of the inputs that have it set, which deletes can update.
    BitAnd,
    BitOr,
    BitXor,
    /// `string_agg(value, delimiter [ORDER BY …])`; the delimiter is `param`.
    StringAgg,
    /// `array_agg(value [ORDER BY …])`: the values, NULLs included, in the ORDER BY's
    /// order (without one, in value order), as an array.
    ArrayAgg,
    /// `first_value(value ORDER BY …)` / `last_value(…)`.
    FirstValue,
    LastValue,
    /// `percentile_cont(fraction) WITHIN GROUP (ORDER BY value)`, `median`, and
    /// `approx_percentile_cont`, computed exactly; the fraction is `param`.
    Percentile,
    /// `percentile_disc(fraction) WITHIN GROUP (ORDER BY value [DESC])` (also RisingWave's
    /// `approx_percentile`, over rounded values): the fraction is `param`.
    PercentileDisc {
        descending: bool,
    },
    /// `approx_count_distinct` / `approx_distinct`: a HyperLogLog estimate (see
    /// `crate::hll`), from a sketch or from the distinct values.
    ApproxCountDistinct,
}

impl AggKind {
    /// Whether the aggregate keeps a multiset of its input values per group.
    pub fn keeps_values(self) -> bool {
        matches!(
            self,
            AggKind::Min
                | AggKind::Max
                | AggKind::StringAgg
                | AggKind::ArrayAgg
                | AggKind::FirstValue
                | AggKind::LastValue
                | AggKind::Percentile
                | AggKind::PercentileDisc { .. }
                | AggKind::ApproxCountDistinct
        )
    }
}

#[derive(Clone, Debug)]
pub struct AggCall {
    pub kind: AggKind,
    /// The argument (absent for `count(*)`).
    pub arg: Option<PhysExpr>,
    pub arg_type: Option<DataType>,
    pub distinct: bool,
    pub return_type: DataType,
    /// A constant parameter: string_agg's delimiter, a percentile's fraction.
    pub param: Option<datafusion::common::ScalarValue>,
    /// The aggregate's ORDER BY keys (first_value, last_value, string_agg, array_agg),
    /// compared in turn.
    pub order: Vec<SortKey>,
    /// `FILTER (WHERE f)` of an aggregate that takes NULL inputs (first_value,
    /// last_value, array_agg): a row where `f` is not true does not reach it. (The others
    /// see `CASE WHEN f THEN value END` instead, and skip its NULLs.)
    pub filter: Option<PhysExpr>,
    /// approx_count_distinct over an input that only inserts: keep a HyperLogLog sketch
    /// per group (4 KiB) instead of the distinct values.
    pub sketch: bool,
    /// min/max over an input that only inserts: keep the running minimum or maximum in
    /// the group's accumulator instead of a multiset of the values (which only deletes
    /// need, to find the next extreme).
    pub running: bool,
    /// sum/avg of a `numeric` planned at dialect level 11: NaN and the infinities are
    /// counted apart from the sum (so deletes take them out again) and decide the
    /// result as Postgres' do (`crate::numeric_special`).
    pub specials: bool,
}

#[cfg(test)]
impl AggCall {
    /// `count(*)` (operator tests).
    pub(crate) fn count_star() -> AggCall {
        AggCall {
            kind: AggKind::CountStar,
            arg: None,
            arg_type: None,
            distinct: false,
            return_type: DataType::Int64,
            param: None,
            order: Vec::new(),
            filter: None,
            sketch: false,
            running: false,
            specials: false,
        }
    }

    /// `kind(arg)` of a BIGINT argument, returning BIGINT (operator tests).
    pub(crate) fn int64(kind: AggKind, arg: PhysExpr) -> AggCall {
        AggCall {
            kind,
            arg: Some(arg),
            arg_type: Some(DataType::Int64),
            ..AggCall::count_star()
        }
    }
}

impl StreamNode {
    pub fn schema(&self) -> SchemaRef {
        match self {
            StreamNode::Source { schema, .. }
            | StreamNode::Values { schema, .. }
            | StreamNode::Window { schema, .. }
            | StreamNode::Project { schema, .. }
            | StreamNode::Aggregate { schema, .. }
            | StreamNode::TopN { schema, .. }
            | StreamNode::OverWindow { schema, .. }
            | StreamNode::Unnest { schema, .. }
            | StreamNode::Session { schema, .. }
            | StreamNode::Union { schema, .. }
            | StreamNode::Join { schema, .. } => schema.clone(),
            StreamNode::Filter { input, .. }
            | StreamNode::TemporalFilter { input, .. }
            | StreamNode::EmitOnClose { input, .. } => input.schema(),
        }
    }

    /// The node's inputs, left to right.
    pub fn inputs(&self) -> Vec<&StreamNode> {
        match self {
            StreamNode::Source { .. } | StreamNode::Values { .. } => vec![],
            StreamNode::Filter { input, .. }
            | StreamNode::TemporalFilter { input, .. }
            | StreamNode::Window { input, .. }
            | StreamNode::Project { input, .. }
            | StreamNode::Aggregate { input, .. }
            | StreamNode::TopN { input, .. }
            | StreamNode::OverWindow { input, .. }
            | StreamNode::Unnest { input, .. }
            | StreamNode::EmitOnClose { input, .. }
            | StreamNode::Session { input, .. } => vec![input],
            StreamNode::Union { inputs, .. } => inputs.iter().collect(),
            StreamNode::Join { left, right, .. } => vec![left, right],
        }
    }

    /// Output columns whose values identify a row: no two rows of the output present at
    /// the same time agree on them, so the output is a set (no row is ever there twice)
    /// and its changes insert a row that is absent and delete one that is present. An
    /// aggregate's output has one row per group (the global aggregate: one row); filters
    /// keep a subset, and a projection keeps the key if it passes its columns through.
    /// `None` when not known (sources, joins, windows, unions, …).
    pub fn unique_key(&self) -> Option<Vec<usize>> {
        match self {
            StreamNode::Aggregate { group, .. } => Some((0..group.len()).collect()),
            StreamNode::Filter { input, .. } | StreamNode::EmitOnClose { input, .. } => {
                input.unique_key()
            }
            StreamNode::Project { input, exprs, .. } => input
                .unique_key()?
                .into_iter()
                .map(|c| exprs.iter().position(|e| column_index(e) == Some(c)))
                .collect(),
            // Rows of one side, each as often as that side holds it (or not at all).
            StreamNode::Join {
                kind: JoinKind::LeftSemi | JoinKind::LeftAnti,
                left,
                ..
            } => left.unique_key(),
            StreamNode::Join {
                kind: JoinKind::RightSemi | JoinKind::RightAnti,
                right,
                ..
            } => right.unique_key(),
            _ => None,
        }
    }

    /// The relations this plan reads, in plan order (with repeats for self-joins).
    pub fn sources(&self) -> Vec<RelationId> {
        let mut out = Vec::new();
        self.visit_sources(&mut out);
        out
    }

    fn visit_sources(&self, out: &mut Vec<RelationId>) {
        match self {
            StreamNode::Source { relation, .. } => out.push(*relation),
            other => other.inputs().iter().for_each(|i| i.visit_sources(out)),
        }
    }

    /// Output columns that follow the watermark, with their lag: a row whose value `v` in
    /// such a column satisfies `v + lag <= watermark` can no longer change (no later input
    /// row can produce it). A source's event-time column has lag 1 µs (later events have
    /// `event_time >= watermark`); a window's `window_end` has the lag of its time column
    /// minus 1, and `window_start` that plus the window size.
    pub fn watermark_columns(&self) -> Vec<Option<i64>> {
        let width = self.schema().fields().len();
        let mut out = vec![None; width];
        match self {
            // Constant rows follow no watermark.
            StreamNode::Values { .. } => {}
            StreamNode::Source { watermark_cols, .. } => {
                for (c, lag) in watermark_cols {
                    if *c < width {
                        out[*c] = Some(*lag);
                    }
                }
            }
            StreamNode::Filter { input, .. }
            | StreamNode::TemporalFilter { input, .. }
            | StreamNode::EmitOnClose { input, .. } => return input.watermark_columns(),
            StreamNode::Window {
                input,
                time_col,
                spec,
                ..
            } => {
                let inner = input.watermark_columns();
                let n = inner.len();
                out[..n].copy_from_slice(&inner);
                if let Some(lag) = inner.get(*time_col).copied().flatten() {
                    out[n] = Some(spec.size + lag - 1);
                    out[n + 1] = Some(lag - 1);
                }
            }
            StreamNode::Session {
                input, time_col, ..
            } => {
                // A session's end is final once the watermark passes it; its start is not
                // (a later event can extend the session).
                let inner = input.watermark_columns();
                let n = inner.len();
                out[..n].copy_from_slice(&inner);
                if let Some(lag) = inner.get(*time_col).copied().flatten() {
                    out[n + 1] = Some(lag - 1);
                }
            }
            StreamNode::Project { input, exprs, .. } => {
                let inner = input.watermark_columns();
                for (i, e) in exprs.iter().enumerate() {
                    if let Some(c) = column_index(e) {
                        out[i] = inner.get(c).copied().flatten();
                    }
                }
            }
            StreamNode::Aggregate { input, group, .. } => {
                let inner = input.watermark_columns();
                for (i, e) in group.iter().enumerate() {
                    if let Some(c) = column_index(e) {
                        out[i] = inner.get(c).copied().flatten();
                    }
                }
            }
            StreamNode::TopN {
                input, partition, ..
            }
            | StreamNode::OverWindow {
                input, partition, ..
            } => {
                // A group's ranking (or window values) is final once its partition value is; other rows can
                // still push a row out of its group's top, so only partition columns
                // keep following the watermark.
                let inner = input.watermark_columns();
                for e in partition {
                    if let Some(c) = column_index(e) {
                        out[c] = inner.get(c).copied().flatten();
                    }
                }
                // Functions that look back only: a row is final once its first ORDER BY
                // value (ascending) is below the watermark, since a later row is ordered
                // after it (RisingWave's frame-complete emission).
                if let StreamNode::OverWindow {
                    order,
                    looks_back: true,
                    ..
                } = self
                {
                    // Ascending with NULLs last: a later row (NULL times are not late)
                    // is ordered after every row the watermark passed.
                    if let Some(k) = order.first().filter(|k| !k.desc && !k.nulls_first) {
                        if let Some(c) = column_index(&k.expr) {
                            out[c] = inner.get(c).copied().flatten();
                        }
                    }
                }
            }
            StreamNode::Unnest {
                input, lists, deps, ..
            } => {
                let inner = input.watermark_columns();
                for (j, d) in deps.iter().enumerate() {
                    if !lists.contains(d) {
                        out[j] = inner.get(*d).copied().flatten();
                    }
                }
            }
            StreamNode::Union { inputs, .. } => {
                // A column follows the watermark if it does in every input (the combined
                // watermark is the smallest of the inputs'), with the largest lag.
                let all: Vec<_> = inputs.iter().map(|i| i.watermark_columns()).collect();
                for (c, o) in out.iter_mut().enumerate() {
                    *o = all
                        .iter()
                        .map(|w| w.get(c).copied().flatten())
                        .collect::<Option<Vec<i64>>>()
                        .and_then(|lags| lags.into_iter().max());
                }
            }
            StreamNode::Join {
                kind,
                lookup,
                interval,
                left,
                right,
                left_keys,
                right_keys,
                ..
            } => {
                let l = left.watermark_columns();
                let r = right.watermark_columns();
                // Between two sides with watermarks, an output row can come from a new row
                // of either side matching an old row of the other, whose columns may be
                // long below the watermark: a column follows it only where the join
                // bounds the other side's values.
                let mut lw: Vec<Option<i64>> = vec![None; l.len()];
                let mut rw: Vec<Option<i64>> = vec![None; r.len()];
                // A side joined with something without a watermark (a table of titles)
                // keeps its columns: a change of the table to a window the watermark has
                // closed is ignored there, as documented. So does a lookup join's left.
                if *lookup || r.iter().all(Option::is_none) {
                    lw.clone_from(&l);
                }
                if !*lookup && l.iter().all(Option::is_none) {
                    rw.clone_from(&r);
                }
                // An equality of two columns that follow the watermark: a new row of
                // either side brings a key no older than the watermark allows.
                for (a, b) in left_keys.iter().zip(right_keys) {
                    if let (Some(i), Some(j)) = (column_index(a), column_index(b)) {
                        if let (Some(Some(x)), Some(Some(y))) = (l.get(i), r.get(j)) {
                            lw[i] = Some(*x.max(y));
                            rw[j] = Some(*x.max(y));
                        }
                    }
                }
                // An interval join bounds `right time - left time` to [lo, hi].
                if let Some(b) = interval {
                    if let (Some(Some(ll)), Some(Some(rl))) =
                        (l.get(b.left_col), r.get(b.right_col))
                    {
                        if let Some(hi) = b.hi {
                            lw[b.left_col] = Some((*ll).max(rl.saturating_add(hi)));
                        }
                        if let Some(lo) = b.lo {
                            rw[b.right_col] = Some((*rl).max(ll.saturating_sub(lo)));
                        }
                    }
                }
                out = match kind {
                    JoinKind::LeftSemi | JoinKind::LeftAnti => lw,
                    JoinKind::RightSemi | JoinKind::RightAnti => rw,
                    _ => lw.into_iter().chain(rw).collect(),
                };
            }
        }
        out
    }

    /// The group column an aggregate's groups close by, and its lag: the first group
    /// expression that follows the watermark.
    /// For top-N and window functions, the partition column their groups close by.
    pub fn window_key(&self) -> Option<(usize, i64)> {
        let (input, group) = match self {
            StreamNode::Aggregate { input, group, .. } => (input, group),
            StreamNode::TopN {
                input, partition, ..
            }
            | StreamNode::OverWindow {
                input, partition, ..
            } => (input, partition),
            _ => return None,
        };
        let inner = input.watermark_columns();
        group.iter().enumerate().find_map(|(i, e)| {
            let c = column_index(e)?;
            inner.get(c).copied().flatten().map(|lag| (i, lag))
        })
    }

    /// EXPLAIN's line for the partition column a node's groups close by, if any.
    fn fmt_window_key(
        &self,
        f: &mut fmt::Formatter<'_>,
        pad: &str,
        partition: &[PhysExpr],
    ) -> fmt::Result {
        match self.window_key() {
            Some((k, _)) => writeln!(
                f,
                "{pad}  window_key={} (state freed when the watermark passes)",
                partition[k]
            ),
            None => Ok(()),
        }
    }

    fn fmt_indent(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        match self {
            StreamNode::Values { rows, .. } => {
                writeln!(f, "{pad}StreamValues: rows={} (constant)", rows.len())
            }
            StreamNode::Source {
                relation,
                schema,
                watermark_cols,
            } => {
                write!(f, "{pad}StreamSource: relation={relation}")?;
                for (c, _) in watermark_cols {
                    write!(f, " watermark={}", schema.field(*c).name())?;
                }
                writeln!(f)
            }
            StreamNode::Window {
                input,
                time_col,
                spec,
                ..
            } => {
                let kind = if spec.slide == spec.size {
                    format!("tumble size={}", fmt_micros(spec.size))
                } else {
                    format!(
                        "hop slide={} size={}",
                        fmt_micros(spec.slide),
                        fmt_micros(spec.size)
                    )
                };
                let off = if spec.offset != 0 {
                    format!(" offset={}", fmt_micros(spec.offset))
                } else {
                    String::new()
                };
                writeln!(
                    f,
                    "{pad}StreamWindow: {kind}{off} time={} (stateless)",
                    input.schema().field(*time_col).name()
                )?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Session {
                input,
                time_col,
                gap,
                keys,
                ..
            } => {
                let s = input.schema();
                let k: Vec<&str> = keys.iter().map(|&i| s.field(i).name().as_str()).collect();
                writeln!(
                    f,
                    "{pad}StreamSessionWindow: gap={} time={} keys=[{}] \
                     state=(rows and sessions per key, freed when the watermark passes)",
                    fmt_micros(*gap),
                    s.field(*time_col).name(),
                    k.join(", ")
                )?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Filter { input, predicate } => {
                writeln!(f, "{pad}StreamFilter: {predicate}")?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::TemporalFilter { input, bounds } => {
                let b: Vec<String> = bounds.iter().map(|b| b.to_string()).collect();
                writeln!(
                    f,
                    "{pad}StreamTemporalFilter: {} state=(rows until they leave)",
                    b.join(" AND ")
                )?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Project { input, exprs, .. } => {
                let e: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                writeln!(f, "{pad}StreamProject: [{}]", e.join(", "))?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Aggregate {
                input,
                group,
                aggs,
                emit_on_close,
                ..
            } => {
                let g: Vec<String> = group.iter().map(|e| e.to_string()).collect();
                let a: Vec<String> = aggs
                    .iter()
                    .map(|a| match &a.arg {
                        Some(e) => format!(
                            "{:?}({}{e})",
                            a.kind,
                            if a.distinct { "DISTINCT " } else { "" }
                        ),
                        None => format!("{:?}", a.kind),
                    })
                    .collect();
                writeln!(
                    f,
                    "{pad}StreamHashAgg: group=[{}] aggs=[{}] state=(groups{})",
                    g.join(", "),
                    a.join(", "),
                    {
                        let mut parts = String::new();
                        if aggs.iter().any(|a| {
                            a.distinct || (a.kind.keeps_values() && !a.sketch && !a.running)
                        }) {
                            parts.push_str(", value multisets");
                        }
                        if aggs.iter().any(|a| a.sketch) {
                            parts.push_str(", HyperLogLog sketches");
                        }
                        parts
                    }
                )?;
                match self.window_key() {
                    Some((k, _)) => writeln!(
                        f,
                        "{pad}  emit={} window_key={} (state freed when the watermark passes)",
                        if *emit_on_close {
                            "on_window_close"
                        } else {
                            "on_update"
                        },
                        group[k]
                    )?,
                    None => writeln!(f, "{pad}  emit=on_update")?,
                }
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::TopN {
                input,
                partition,
                order,
                kind,
                skip,
                limit,
                ..
            } => {
                let p: Vec<String> = partition.iter().map(|e| e.to_string()).collect();
                let o: Vec<String> = order.iter().map(|k| k.to_string()).collect();
                let range = if *skip > 0 {
                    format!("{} < {kind:?} <= {limit}", skip)
                } else {
                    format!("{kind:?} <= {limit}")
                };
                writeln!(
                    f,
                    "{pad}StreamTopN: partition=[{}] order=[{}] {range} \
                     state=(all input rows, ordered per partition)",
                    p.join(", "),
                    o.join(", ")
                )?;
                self.fmt_window_key(f, &pad, partition)?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::OverWindow {
                input,
                partition,
                order,
                funcs,
                ..
            } => {
                let p: Vec<String> = partition.iter().map(|e| e.to_string()).collect();
                let o: Vec<String> = order.iter().map(|k| k.to_string()).collect();
                let fs: Vec<String> = funcs.iter().map(|w| window_call(w.as_ref())).collect();
                writeln!(
                    f,
                    "{pad}StreamOverWindow: [{}] partition=[{}] order=[{}] \
                     state=(all input rows, ordered per partition)",
                    fs.join(", "),
                    p.join(", "),
                    o.join(", ")
                )?;
                self.fmt_window_key(f, &pad, partition)?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Unnest { input, lists, .. } => {
                let schema = input.schema();
                let cols: Vec<&str> = lists
                    .iter()
                    .map(|c| schema.field(*c).name().as_str())
                    .collect();
                writeln!(f, "{pad}StreamUnnest: [{}] (stateless)", cols.join(", "))?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::EmitOnClose { input, col, .. } => {
                writeln!(
                    f,
                    "{pad}StreamEmitOnClose: by {} state=(rows of open windows)",
                    input.schema().field(*col).name()
                )?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Union { inputs, .. } => {
                writeln!(f, "{pad}StreamUnionAll: (stateless)")?;
                for i in inputs {
                    i.fmt_indent(f, depth + 1)?;
                }
                Ok(())
            }
            StreamNode::Join {
                kind,
                lookup,
                interval,
                left,
                right,
                left_keys,
                right_keys,
                filter,
                ..
            } => {
                if *lookup {
                    let on: Vec<String> = left_keys
                        .iter()
                        .zip(right_keys)
                        .map(|(l, r)| format!("{l} = {r}"))
                        .collect();
                    write!(f, "{pad}StreamLookupJoin: {kind:?} on=[{}]", on.join(", "))?;
                    if let Some(fl) = filter {
                        write!(f, " filter={fl}")?;
                    }
                    writeln!(f, " state=(right rows only; output never revisited)")?;
                    left.fmt_indent(f, depth + 1)?;
                    return right.fmt_indent(f, depth + 1);
                }
                let on: Vec<String> = left_keys
                    .iter()
                    .zip(right_keys)
                    .map(|(l, r)| format!("{l} = {r}"))
                    .collect();
                write!(f, "{pad}StreamHashJoin: {kind:?} on=[{}]", on.join(", "))?;
                if let Some(fl) = filter {
                    write!(f, " filter={fl}")?;
                }
                let degrees = match kind
                    .unmatched()
                    .iter()
                    .zip(kind.matched_alone())
                    .map(|(u, m)| *u || m)
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    [true, true] => ", match counts of both sides",
                    [true, false] => ", match counts of left rows",
                    [false, true] => ", match counts of right rows",
                    _ => "",
                };
                writeln!(f, " state=(left rows, right rows{degrees})")?;
                if let Some(b) = interval {
                    let bound = |v: Option<i64>| match v {
                        Some(v) if v < 0 => format!("-{}", fmt_micros(-v)),
                        Some(v) => fmt_micros(v),
                        None => "unbounded".into(),
                    };
                    writeln!(
                        f,
                        "{pad}  interval: {} - {} in [{}, {}] (state freed when the watermark passes)",
                        right.schema().field(b.right_col).name(),
                        left.schema().field(b.left_col).name(),
                        bound(b.lo),
                        bound(b.hi)
                    )?;
                }
                left.fmt_indent(f, depth + 1)?;
                right.fmt_indent(f, depth + 1)
            }
        }
    }
}

/// The input column a physical expression just passes on.
pub fn column_index(e: &PhysExpr) -> Option<usize> {
    e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
        .map(|c| c.index())
}

/// A duration in microseconds, the way INTERVAL literals read.
pub fn fmt_micros(us: i64) -> String {
    if us == 0 {
        return "0".into();
    }
    const UNITS: [(i64, &str); 5] = [
        (86_400_000_000, "d"),
        (3_600_000_000, "h"),
        (60_000_000, "min"),
        (1_000_000, "s"),
        (1_000, "ms"),
    ];
    for (n, unit) in UNITS {
        if us != 0 && us % n == 0 {
            return format!("{}{unit}", us / n);
        }
    }
    format!("{us}us")
}

impl fmt::Display for StreamNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_indent(f, 0)
    }
}
