//! A view's dataflow: its operators, wired as the plan's tree, with a [`Materialize`] at
//! the root that keeps the view's rows.
//!
//! Operators are numbered in pre-order (the root is 0), and an operator's state tables get
//! ids derived from the view id and that number, so rebuilding the dataflow from the same
//! plan after a restart finds its state again.
//!
//! Equal subplans are built once and feed every place that uses them (a node can have
//! several parents): a self-join of one filtered stream, or Nexmark q5, whose two
//! subqueries compute the same per-auction HOP count (grouped in a different column
//! order: an aggregate whose groups are a permutation of an earlier one's is that one,
//! followed by a projection that reorders its columns). A shared node passes each output
//! chunk to its parents in plan order, each all the way up before the next, which is
//! what the unshared copies did one after the other: a join with the shared node below
//! both inputs still sees its left change, then its right one.

use std::collections::HashMap;

use datafusion::arrow::datatypes::SchemaRef;
use freshet_storage::{keys, Txn};

use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::operators::agg_fold;
use crate::operators::filter::Filter;
use crate::operators::hash_agg::HashAgg;
use crate::operators::hash_join::HashJoin;
use crate::operators::materialize::{Materialize, Output};
use crate::operators::over_window::OverWindow;
use crate::operators::project::Project;
use crate::operators::session::Session;
use crate::operators::temporal_filter::TemporalFilter;
use crate::operators::top_n::TopN;
use crate::operators::union::Union;
use crate::operators::window::Window;
use crate::plan::{PhysExpr, RelationId, StreamNode};
use crate::shards::{Sharded, MAX_TABLES};
use crate::two_phase::{LocalAgg, TwoPhaseAgg};
use crate::EngineError;

struct Node {
    op: Box<dyn Operator>,
    /// The nodes this one feeds, and which of their inputs (in plan order; none for the
    /// root, several for a shared subplan).
    parents: Vec<(usize, usize)>,
    /// Per input: whether it carries a watermark, and the latest one it brought.
    input_wms: Vec<(bool, Option<i64>)>,
    /// The watermark last passed to the operator.
    wm: Option<i64>,
}

impl Node {
    fn new(op: Box<dyn Operator>, parent: Option<(usize, usize)>, inputs: Vec<bool>) -> Node {
        Node {
            op,
            parents: parent.into_iter().collect(),
            input_wms: inputs.into_iter().map(|w| (w, None)).collect(),
            wm: None,
        }
    }
}

/// Whether a plan's output carries a watermark (some source below it has one).
fn has_watermark(plan: &StreamNode) -> bool {
    match plan {
        StreamNode::Source { watermark_cols, .. } => !watermark_cols.is_empty(),
        other => other.inputs().into_iter().any(has_watermark),
    }
}

/// How a view's dataflow uses threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallelism {
    /// The shards (vnodes) its keyed stateful operators' state is split into (see
    /// `crate::shards`): the view's `streaming_max_parallelism`. It decides where their
    /// state is, so a view keeps the count it was created with.
    pub shards: usize,
    /// The most threads the shards run on at once: the view's parallelism (`SET
    /// streaming_parallelism` before `CREATE`, `ALTER MATERIALIZED VIEW … SET
    /// PARALLELISM` after), at most `shards`. It can change while the view runs.
    pub threads: usize,
    /// With several shards, aggregates whose partials combine run in two phases (see
    /// `crate::two_phase`): RisingWave's `rw_enable_two_phase_agg`. Their state is the
    /// same either way.
    pub two_phase_agg: bool,
}

impl From<usize> for Parallelism {
    /// `shards` shards on as many threads, two-phase aggregation on.
    fn from(shards: usize) -> Parallelism {
        Parallelism {
            shards,
            threads: shards,
            two_phase_agg: true,
        }
    }
}

pub struct Dataflow {
    view: RelationId,
    nodes: Vec<Node>,
    /// Where each source relation enters: (relation, node, input of that node).
    sources: Vec<(RelationId, usize, usize)>,
    /// Per source entry: whether it is a lookup join's table (backfilled first, so the
    /// stream side's existing rows find it).
    lookup_entries: Vec<bool>,
    /// Its series in the metrics (see [`Dataflow::metered`]).
    meters: Option<Meters>,
    /// The shards each keyed stateful operator runs as (see `shards`).
    shards: usize,
    /// The most threads they run on (see [`Parallelism::threads`]).
    threads: usize,
    /// Whether aggregates whose partials combine run in two phases (see `two_phase`).
    two_phase_agg: bool,
    /// Whether it emitted changes since the last checkpoint.
    dirty: bool,
    /// Refuse changes with a `numeric` NaN or infinity (`ViewDesc::refuses_specials`).
    refuses_specials: bool,
}

/// A dataflow's series: changes in and out, and when a checkpoint last held its changes.
struct Meters {
    rows_in: prometheus::IntCounter,
    rows_out: prometheus::IntCounter,
    last_checkpoint: prometheus::Gauge,
}

/// What [`Dataflow::build`] has built so far, to share equal subplans (see the module
/// documentation).
#[derive(Default)]
struct Built {
    /// Nodes by subplan fingerprint.
    nodes: HashMap<String, usize>,
    /// Aggregates by input, calls and emit mode, with their group expressions and output
    /// schema, to share one whose groups are permuted.
    aggs: HashMap<String, (usize, Vec<String>, SchemaRef)>,
}

/// A node index as an operator number (state table ids hold 16 bits of it).
fn op_no(idx: usize) -> Result<u16, EngineError> {
    u16::try_from(idx).map_err(|_| EngineError::Internal("too many operators in one view".into()))
}

/// An equal subplan's identity: its whole description (expressions, types, names), and
/// whether it is a lookup join's table.
fn fingerprint(plan: &StreamNode, lookup: bool) -> String {
    format!("{lookup}{plan:?}")
}

/// An aggregate's identity up to the order of its groups (input, calls and emit mode), its
/// group expressions and its output schema; `None` for other nodes.
fn aggregate_identity(plan: &StreamNode, lookup: bool) -> Option<(String, Vec<String>, SchemaRef)> {
    let StreamNode::Aggregate {
        input,
        group,
        aggs,
        schema,
        emit_on_close,
    } = plan
    else {
        return None;
    };
    let key = format!("{}|{aggs:?}|{emit_on_close}", fingerprint(input, lookup));
    let group = group.iter().map(|e| format!("{e:?}")).collect();
    Some((key, group, schema.clone()))
}

/// The operator of a plan node other than a source; `table_id(n)` gives the id of its
/// state table number `n`.
fn make_operator(
    plan: &StreamNode,
    table_id: &dyn Fn(u16) -> u64,
) -> Result<Box<dyn Operator>, EngineError> {
    Ok(match plan {
        StreamNode::Source { .. } => {
            return Err(EngineError::Internal("a source is not an operator".into()))
        }
        StreamNode::Values { schema, rows } => Box::new(crate::operators::constant::Constant::new(
            schema.clone(),
            rows.clone(),
        )),
        StreamNode::Filter { predicate, .. } => Box::new(Filter::new(predicate.clone())),
        StreamNode::TemporalFilter { bounds, input } => Box::new(TemporalFilter::new(
            bounds.clone(),
            input.schema(),
            table_id,
        )),
        StreamNode::Project { exprs, schema, .. } => {
            Box::new(Project::new(exprs.clone(), schema.clone()))
        }
        StreamNode::Window {
            time_col,
            spec,
            schema,
            ..
        } => Box::new(Window::new(*time_col, *spec, schema.clone())),
        StreamNode::Aggregate {
            group,
            aggs,
            schema,
            emit_on_close,
            ..
        } => Box::new(
            HashAgg::new(group.clone(), aggs.clone(), schema.clone(), table_id)?
                .windowed(plan.window_key(), *emit_on_close),
        ),
        StreamNode::TopN {
            input,
            partition,
            order,
            kind,
            skip,
            limit,
            with_rank,
            schema,
        } => Box::new(
            TopN::new(
                partition.clone(),
                order.clone(),
                *kind,
                *skip,
                *limit,
                *with_rank,
                &input.schema(),
                schema.clone(),
                table_id,
            )
            .windowed(plan.window_key(), &input.schema())?,
        ),
        StreamNode::OverWindow {
            input,
            partition,
            order,
            funcs,
            schema,
            ..
        } => Box::new(
            OverWindow::new(
                partition.clone(),
                order.clone(),
                funcs.clone(),
                &input.schema(),
                schema.clone(),
                table_id,
            )
            .windowed(plan.window_key())?,
        ),
        StreamNode::Unnest {
            lists,
            deps,
            nulls,
            schema,
            ..
        } => Box::new(crate::operators::unnest::Unnest::new(
            lists.clone(),
            deps.clone(),
            *nulls,
            schema.clone(),
        )),
        StreamNode::Union { schema, .. } => Box::new(Union::new(schema.clone())),
        StreamNode::EmitOnClose { input, col, lag } => {
            Box::new(crate::operators::emit_on_close::EmitOnClose::new(
                &input.schema(),
                *col,
                *lag,
                table_id,
            )?)
        }
        StreamNode::Session {
            input,
            time_col,
            gap,
            keys,
            schema,
        } => Box::new(Session::new(
            *time_col,
            *gap,
            keys.clone(),
            input.watermark_columns().get(*time_col).copied().flatten(),
            &input.schema(),
            schema.clone(),
            table_id,
        )),
        StreamNode::Join {
            kind,
            lookup,
            interval,
            insert_only,
            left,
            right,
            left_keys,
            right_keys,
            filter,
            schema,
        } => Box::new(
            HashJoin::new(
                *kind,
                left_keys.clone(),
                right_keys.clone(),
                &left.schema(),
                &right.schema(),
                filter.clone(),
                schema.clone(),
                table_id,
            )
            .lookup(*lookup)
            .interval(*interval)
            .insert_only(*insert_only)
            .distinct_rows([left.unique_key().is_some(), right.unique_key().is_some()]),
        ),
    })
}

/// Per input, the key expressions a node's operator can run as shards by: a grouped
/// aggregate's groups, an equi-join's keys, the partition of a top-N or of window
/// functions. `None` for operators whose state is not per key (or that keep no state).
fn shard_keys(plan: &StreamNode) -> Option<Vec<Vec<PhysExpr>>> {
    match plan {
        StreamNode::Aggregate { group, aggs, .. }
            if !group.is_empty() && aggs.len() < usize::from(MAX_TABLES) - 1 =>
        {
            Some(vec![group.clone()])
        }
        StreamNode::Join {
            left_keys,
            right_keys,
            ..
        } if !left_keys.is_empty() && left_keys.len() == right_keys.len() => {
            Some(vec![left_keys.clone(), right_keys.clone()])
        }
        StreamNode::TopN { partition, .. } | StreamNode::OverWindow { partition, .. }
            if !partition.is_empty() =>
        {
            Some(vec![partition.clone()])
        }
        _ => None,
    }
}

impl Dataflow {
    /// `append_only`: the plan never deletes (see `Materialize::insert_only`); `output`:
    /// where the root sends the rows (a view's table, or a sink); `parallelism`: how it
    /// uses threads (a number: that many shards).
    pub fn build(
        view: RelationId,
        plan: &StreamNode,
        append_only: bool,
        output: Output,
        parallelism: impl Into<Parallelism>,
    ) -> Result<Dataflow, EngineError> {
        let parallelism = parallelism.into();
        // The root's own state table (its next row sequence number).
        let seq_table = keys::state_table_id(view, 0, 0);
        let mut df = Dataflow {
            view,
            nodes: vec![Node::new(
                Box::new(
                    Materialize::new(view)
                        .insert_only(append_only && output == Output::Table, seq_table)
                        .distinct(plan.unique_key().is_some())
                        .output(output),
                ),
                None,
                vec![has_watermark(plan)],
            )],
            sources: Vec::new(),
            lookup_entries: Vec::new(),
            meters: None,
            shards: parallelism.shards.max(1),
            threads: parallelism.threads.clamp(1, parallelism.shards.max(1)),
            two_phase_agg: parallelism.two_phase_agg,
            dirty: false,
            refuses_specials: false,
        };
        df.add(plan, (0, 0), false, &mut Built::default())?;
        Ok(df)
    }

    /// Wires `parent` to an already built node equal to `plan`, if there is one (for an
    /// aggregate with permuted groups, through a new projection); returns whether it did.
    fn share(
        &mut self,
        plan: &StreamNode,
        parent: (usize, usize),
        lookup: bool,
        built: &Built,
    ) -> Result<bool, EngineError> {
        if let Some(&idx) = built.nodes.get(&fingerprint(plan, lookup)) {
            self.nodes[idx].parents.push(parent);
            return Ok(true);
        }
        let Some((key, mine, schema)) = aggregate_identity(plan, lookup) else {
            return Ok(false);
        };
        let Some((idx, built_group, built_schema)) = built.aggs.get(&key).cloned() else {
            return Ok(false);
        };
        if mine.len() != built_group.len() || built_schema.fields().len() != schema.fields().len() {
            return Ok(false);
        }
        // Where each of this aggregate's group columns is in the built one's output.
        let mut taken = vec![false; built_group.len()];
        let mut columns = Vec::with_capacity(schema.fields().len());
        for g in &mine {
            let Some(at) = (0..built_group.len()).find(|&i| !taken[i] && built_group[i] == *g)
            else {
                return Ok(false);
            };
            taken[at] = true;
            columns.push(at);
        }
        columns.extend(mine.len()..schema.fields().len());
        let exprs: Vec<crate::plan::PhysExpr> = columns
            .iter()
            .map(|&c| {
                std::sync::Arc::new(datafusion::physical_expr::expressions::Column::new(
                    built_schema.field(c).name(),
                    c,
                )) as crate::plan::PhysExpr
            })
            .collect();
        let project = self.nodes.len();
        op_no(project)?;
        self.nodes.push(Node::new(
            Box::new(Project::new(exprs, schema.clone())),
            Some(parent),
            vec![has_watermark(plan)],
        ));
        self.nodes[idx].parents.push((project, 0));
        Ok(true)
    }

    fn add(
        &mut self,
        plan: &StreamNode,
        parent: (usize, usize),
        lookup: bool,
        built: &mut Built,
    ) -> Result<(), EngineError> {
        if !matches!(plan, StreamNode::Source { .. }) && self.share(plan, parent, lookup, built)? {
            return Ok(());
        }
        let idx = self.nodes.len();
        let op_no = op_no(idx)?;
        if let StreamNode::Source { relation, .. } = plan {
            self.sources.push((*relation, parent.0, parent.1));
            self.lookup_entries.push(lookup);
            return Ok(());
        }
        let op = self.operator(plan, op_no)?;
        let inputs = plan.inputs();
        self.nodes.push(Node::new(
            op,
            Some(parent),
            inputs.iter().map(|i| has_watermark(i)).collect(),
        ));
        for (n, input) in inputs.into_iter().enumerate() {
            let looked_up = matches!(plan, StreamNode::Join { lookup: true, .. }) && n == 1;
            self.add(input, (idx, n), lookup || looked_up, built)?;
        }
        built.nodes.insert(fingerprint(plan, lookup), idx);
        if let Some((key, group, schema)) = aggregate_identity(plan, lookup) {
            built.aggs.entry(key).or_insert((idx, group, schema));
        }
        Ok(())
    }

    /// Node `plan`'s operator, numbered `op_no`: as shards if it has a key and the view
    /// more than one shard, in two phases if it is an aggregate whose partials combine
    /// (see `crate::two_phase`).
    fn operator(&self, plan: &StreamNode, op_no: u16) -> Result<Box<dyn Operator>, EngineError> {
        let view = self.view;
        let keys = shard_keys(plan).filter(|_| self.shards > 1);
        let two_phase = match plan {
            StreamNode::Aggregate { group, aggs, .. }
                if self.shards > 1 && self.two_phase_agg && agg_fold::combinable(aggs) =>
            {
                Some(LocalAgg::new(group.clone(), aggs.clone())?)
            }
            _ => None,
        };
        let op: Box<dyn Operator> = match keys {
            Some(mut keys) => {
                if let Some(local) = &two_phase {
                    keys.push(crate::two_phase::partial_keys(local.groups()));
                }
                Box::new(Sharded::new(
                    view,
                    op_no,
                    self.shards,
                    self.threads,
                    keys,
                    |table_id| make_operator(plan, table_id),
                )?)
            }
            None => make_operator(plan, &move |n: u16| keys::state_table_id(view, op_no, n))?,
        };
        Ok(match two_phase {
            Some(local) => Box::new(TwoPhaseAgg::new(local, op, self.threads)),
            None => op,
        })
    }

    pub fn view(&self) -> RelationId {
        self.view
    }

    /// Runs the shards of its keyed operators on at most `threads` threads from the next
    /// step on (at most its shards; see [`Parallelism::threads`]). Where state is does
    /// not change, so neither does what the view stores.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, self.shards);
        for node in &mut self.nodes {
            node.op.set_threads(self.threads);
        }
    }

    /// The most threads the shards of its keyed operators run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the view reads `relation`.
    pub fn reads(&self, relation: RelationId) -> bool {
        self.sources.iter().any(|(r, _, _)| *r == relation)
    }

    /// The distinct relations the view reads.
    pub fn inputs(&self) -> Vec<RelationId> {
        let mut v: Vec<_> = self.sources.iter().map(|(r, _, _)| *r).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Runs `chunk` up from node `node`'s input `input`; adds the root's output to `out`.
    fn propagate(
        &mut self,
        node: usize,
        input: usize,
        chunk: Chunk,
        txn: &mut Txn,
        out: &mut Vec<Chunk>,
    ) -> Result<(), EngineError> {
        let produced = self.nodes[node].op.process(input, chunk, txn)?;
        self.emit(node, produced, txn, out)
    }

    /// Passes node `node`'s output up to each of its parents in turn (the root's goes to
    /// `out`).
    fn emit(
        &mut self,
        node: usize,
        chunk: Chunk,
        txn: &mut Txn,
        out: &mut Vec<Chunk>,
    ) -> Result<(), EngineError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let parents = self.nodes[node].parents.clone();
        let Some((&(p, i), rest)) = parents.split_last() else {
            out.push(chunk);
            return Ok(());
        };
        for &(q, j) in rest {
            self.propagate(q, j, chunk.clone(), txn, out)?;
        }
        self.propagate(p, i, chunk, txn, out)
    }

    /// The (node, input) pairs where `relation` enters the dataflow.
    fn entries(&self, relation: RelationId) -> Vec<(usize, usize)> {
        self.sources
            .iter()
            .filter(|(r, _, _)| *r == relation)
            .map(|(_, n, i)| (*n, *i))
            .collect()
    }

    /// Counts this dataflow's changes in and out under view (or sink) `name`.
    pub fn metered(mut self, name: &str) -> Dataflow {
        let m = crate::metrics::metrics();
        // Present (at zero) from the start, as alerting on its increase needs.
        let _ = m.view_failures.with_label_values(&[name]);
        self.meters = Some(Meters {
            rows_in: m.view_rows_in.with_label_values(&[name]),
            rows_out: m.view_rows_out.with_label_values(&[name]),
            last_checkpoint: m.view_last_checkpoint.with_label_values(&[name]),
        });
        self
    }

    fn count_out(&mut self, out: &[Chunk]) {
        let n: usize = out.iter().map(Chunk::len).sum();
        self.dirty |= n > 0;
        if let Some(m) = &self.meters {
            m.rows_out.inc_by(n as u64);
        }
    }

    /// A checkpoint committed at `secs` (since the epoch): the view's changes since the
    /// last one are in it.
    pub fn checkpointed(&mut self, secs: f64) {
        if std::mem::take(&mut self.dirty) {
            if let Some(m) = &self.meters {
                m.last_checkpoint.set(secs);
            }
        }
    }

    /// The dataflow of view `v`, metered under its name.
    pub fn for_view(v: &crate::coordinator::ViewDesc) -> Result<Dataflow, EngineError> {
        let mut df = Dataflow::build(v.id, &v.plan, v.append_only, v.output, v.parallelism)?
            .metered(&v.name);
        df.refuses_specials = v.refuses_specials;
        Ok(df)
    }

    /// Fails if this view refuses `numeric` NaN and infinities and `chunk` has one.
    fn check_specials(&self, chunk: &Chunk) -> Result<(), EngineError> {
        if !self.refuses_specials {
            return Ok(());
        }
        let found = chunk.batch.columns().iter().find_map(|c| {
            use datafusion::arrow::array::{Array, AsArray};
            let d = c.as_primitive_opt::<datafusion::arrow::datatypes::Decimal128Type>()?;
            (0..d.len()).find_map(|i| {
                d.is_valid(i)
                    .then(|| crate::numeric_special::Special::of(d.value(i)))
                    .flatten()
            })
        });
        match found {
            Some(s) => Err(EngineError::DataFusion(
                crate::numeric_special::SqlStateError::raise(
                    "0A000",
                    format!(
                        "numeric {} is not supported by a materialized view created before \
                         Freshet supported it: recreate the view",
                        s.text()
                    ),
                    None,
                ),
            )),
            None => Ok(()),
        }
    }

    /// Feeds a change of `relation` to every place the view reads it; returns the view's
    /// own changes (already applied to its stored rows).
    pub fn push(
        &mut self,
        relation: RelationId,
        chunk: &Chunk,
        txn: &mut Txn,
    ) -> Result<Vec<Chunk>, EngineError> {
        self.check_specials(chunk)?;
        let entries = self.entries(relation);
        if let Some(m) = &self.meters {
            m.rows_in.inc_by((chunk.len() * entries.len()) as u64);
        }
        let mut out = Vec::new();
        for (node, input) in entries {
            self.propagate(node, input, chunk.clone(), txn, &mut out)?;
        }
        self.count_out(&out);
        Ok(out)
    }

    /// The watermark of `relation` advanced to `wm`: passes it up from every place the view
    /// reads the relation. Returns the view's own changes (windows that closed) and its
    /// new output watermark, if that advanced.
    pub fn watermark(
        &mut self,
        relation: RelationId,
        wm: i64,
        txn: &mut Txn,
    ) -> Result<(Vec<Chunk>, Option<i64>), EngineError> {
        let entries = self.entries(relation);
        let mut out = Vec::new();
        let mut root_wm = None;
        for (node, input) in entries {
            self.pass_watermark(node, input, wm, txn, &mut out, &mut root_wm)?;
        }
        self.count_out(&out);
        Ok((out, root_wm))
    }

    /// Node `node`'s input `input` brought watermark `wm`: if that advances the node's
    /// own (the least of its inputs'), the operator closes what it can and the watermark
    /// goes on to every parent.
    fn pass_watermark(
        &mut self,
        node: usize,
        input: usize,
        wm: i64,
        txn: &mut Txn,
        out: &mut Vec<Chunk>,
        root_wm: &mut Option<i64>,
    ) -> Result<(), EngineError> {
        let n = &mut self.nodes[node];
        let Some(slot) = n.input_wms.get_mut(input) else {
            return Ok(());
        };
        if slot.1.is_some_and(|old| old >= wm) {
            return Ok(());
        }
        slot.1 = Some(wm);
        let combined = n
            .input_wms
            .iter()
            .filter(|(expects, _)| *expects)
            .map(|(_, w)| *w)
            .min()
            .flatten();
        let Some(combined) = combined else {
            return Ok(());
        };
        if n.wm.is_some_and(|old| old >= combined) {
            return Ok(());
        }
        n.wm = Some(combined);
        if let Some(c) = n.op.on_watermark(combined, txn)? {
            self.emit(node, c, txn, out)?;
        }
        let parents = self.nodes[node].parents.clone();
        if parents.is_empty() {
            *root_wm = Some(combined);
        }
        for (p, i) in parents {
            self.pass_watermark(p, i, combined, txn, out, root_wm)?;
        }
        Ok(())
    }

    /// Processing time advanced to `now` (µs since the epoch): operators that depend on it
    /// (temporal filters) release or retract rows. Returns the view's own changes.
    pub fn tick(&mut self, now: i64, txn: &mut Txn) -> Result<Vec<Chunk>, EngineError> {
        let mut out = Vec::new();
        // Deepest operators first, so a parent sees its input's changes at the old time
        // and then moves to the new one itself.
        for idx in (1..self.nodes.len()).rev() {
            if let Some(c) = self.nodes[idx].op.on_tick(now, txn)? {
                self.emit(idx, c, txn, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Whether some operator depends on processing time.
    pub fn has_timers(&self) -> bool {
        self.nodes.iter().any(|n| n.op.uses_time())
    }

    /// Feeds a change into one source entry only (backfill reads each entry in turn).
    pub fn push_entry(
        &mut self,
        entry: usize,
        chunk: Chunk,
        txn: &mut Txn,
    ) -> Result<Vec<Chunk>, EngineError> {
        self.check_specials(&chunk)?;
        let (_, node, input) = self.sources[entry];
        if let Some(m) = &self.meters {
            m.rows_in.inc_by(chunk.len() as u64);
        }
        let mut out = Vec::new();
        self.propagate(node, input, chunk, txn, &mut out)?;
        self.count_out(&out);
        Ok(out)
    }

    /// The order to backfill source entries in: lookup tables first.
    pub fn backfill_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.sources.len()).collect();
        order.sort_by_key(|&i| !self.lookup_entries[i]);
        order
    }

    /// The source entries, in plan order.
    pub fn source_entries(&self) -> Vec<RelationId> {
        self.sources.iter().map(|(r, _, _)| *r).collect()
    }

    /// Emits the operators' initial output (once, at view creation); returns the root's.
    ///
    /// Constant rows come last, as changes to what the other operators start with (a
    /// global aggregate's row over no rows, which its first change then replaces).
    pub fn init(&mut self, txn: &mut Txn) -> Result<Vec<Chunk>, EngineError> {
        let mut out = Vec::new();
        for constants in [false, true] {
            for idx in (1..self.nodes.len()).rev() {
                // A node without inputs (sources are not nodes) holds constant rows.
                if self.nodes[idx].input_wms.is_empty() != constants {
                    continue;
                }
                if let Some(c) = self.nodes[idx].op.initial_output(txn)? {
                    self.emit(idx, c, txn, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Operator names in pre-order, for EXPLAIN-like output.
    pub fn operator_names(&self) -> Vec<&'static str> {
        self.nodes.iter().map(|n| n.op.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use freshet_storage::Store;

    use super::*;
    use crate::chunk::arc_schema;
    use crate::plan::AggCall;

    fn source(schema: &SchemaRef) -> Box<StreamNode> {
        Box::new(StreamNode::Source {
            relation: 5,
            schema: schema.clone(),
            watermark_cols: vec![],
        })
    }

    /// The rows of the root's output chunks, as text with their weights, sorted.
    fn rows(out: &[Chunk]) -> Vec<String> {
        let mut v: Vec<String> = out
            .iter()
            .flat_map(|c| {
                let rows = c.rows().unwrap();
                rows.into_iter()
                    .zip(c.weights.clone())
                    .map(|(r, w)| format!("{r:?} {w}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    }

    /// A full outer join feeding a grouped count, built unsharded and as 3 shards, and
    /// fed the same random inserts and deletes (chunks small enough to run on one thread
    /// and large enough to run side by side; statements kept, rolled back, committed):
    /// both store the same view rows after every step, and the shards' state is spread.
    #[test]
    fn shards_store_what_one_operator_stores() {
        use rand::{Rng, SeedableRng};
        let s = arc_schema(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let j = arc_schema(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
            Field::new("ra", DataType::Int64, true),
            Field::new("rb", DataType::Int64, true),
        ]);
        let side = |relation| {
            Box::new(StreamNode::Source {
                relation,
                schema: s.clone(),
                watermark_cols: vec![],
            })
        };
        let plan = StreamNode::Aggregate {
            input: Box::new(StreamNode::Join {
                kind: crate::plan::JoinKind::Full,
                lookup: false,
                interval: None,
                insert_only: [false, false],
                left: side(5),
                right: side(6),
                left_keys: vec![col("a", &s).unwrap()],
                right_keys: vec![col("a", &s).unwrap()],
                filter: None,
                schema: j.clone(),
            }),
            group: vec![col("b", &j).unwrap()],
            aggs: vec![AggCall::count_star()],
            schema: arc_schema(vec![
                Field::new("b", DataType::Int64, true),
                Field::new("n", DataType::Int64, true),
            ]),
            emit_on_close: false,
        };
        for seed in 0..3u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut one = Dataflow::build(9, &plan, false, Output::Table, 1).unwrap();
            let mut three = Dataflow::build(9, &plan, false, Output::Table, 3).unwrap();
            // Three shards on a number of threads that changes between steps.
            let threads = Parallelism {
                shards: 3,
                threads: 1,
                two_phase_agg: true,
            };
            let mut varied = Dataflow::build(9, &plan, false, Output::Table, threads).unwrap();
            let (mut t1, mut t3) = (Txn::new(Store::memory()), Txn::new(Store::memory()));
            let mut tv = Txn::new(Store::memory());
            // Rows present per relation, to delete some later.
            let mut live: [Vec<(i64, i64)>; 2] = [Vec::new(), Vec::new()];
            for step in 0..40 {
                let rel = rng.gen_range(0..2usize);
                let n = if rng.gen_bool(0.5) {
                    rng.gen_range(1..20)
                } else {
                    rng.gen_range(300..900)
                };
                let (mut rows, mut weights) = (Vec::new(), Vec::new());
                let mut kept = live[rel].clone();
                for _ in 0..n {
                    if !kept.is_empty() && rng.gen_bool(0.3) {
                        let (a, b) = kept.swap_remove(rng.gen_range(0..kept.len()));
                        rows.push(vec![
                            ScalarValue::Int64(Some(a)),
                            ScalarValue::Int64(Some(b)),
                        ]);
                        weights.push(-1);
                    } else {
                        let (a, b) = (rng.gen_range(0..60), rng.gen_range(0..7));
                        kept.push((a, b));
                        rows.push(vec![
                            ScalarValue::Int64(Some(a)),
                            ScalarValue::Int64(Some(b)),
                        ]);
                        weights.push(1);
                    }
                }
                let c = Chunk::from_rows(s.clone(), &rows, weights).unwrap();
                let roll_back = rng.gen_bool(0.2);
                varied.set_threads(rng.gen_range(1..=4));
                assert!(varied.threads() <= 3);
                for (df, t) in [
                    (&mut one, &mut t1),
                    (&mut three, &mut t3),
                    (&mut varied, &mut tv),
                ] {
                    t.begin_statement();
                    df.push(5 + rel as u64, &c, t).unwrap();
                    if roll_back {
                        t.rollback_statement();
                    } else {
                        t.end_statement();
                    }
                }
                if !roll_back {
                    live[rel] = kept;
                }
                if step % 7 == 6 {
                    t1.commit().unwrap();
                    t3.commit().unwrap();
                    tv.commit().unwrap();
                }
                let view = keys::rows_prefix(9);
                assert_eq!(
                    t1.scan_prefix(&view).unwrap(),
                    t3.scan_prefix(&view).unwrap(),
                    "seed {seed} step {step}"
                );
                // The threads change nothing stored: the view's rows, and every key of its
                // operators' state.
                let all = [keys::rows_prefix(9), keys::view_state_prefix(9)];
                assert_eq!(
                    all.iter()
                        .map(|p| t3.scan_prefix(p).unwrap())
                        .collect::<Vec<_>>(),
                    all.iter()
                        .map(|p| tv.scan_prefix(p).unwrap())
                        .collect::<Vec<_>>(),
                    "seed {seed} step {step}: threads {}",
                    varied.threads()
                );
            }
            // Every shard of the join holds some of its rows (operator 2: the join).
            for shard in 0..3 {
                let table = crate::shards::shard_table_id(9, 2, shard, 0);
                let rows = t3.scan_prefix(&keys::state_prefix(table)).unwrap();
                assert!(!rows.is_empty(), "seed {seed}: shard {shard} holds nothing");
            }
        }
    }

    /// A UNION ALL of one filtered stream with itself builds the filter once, which feeds
    /// both union inputs: every row that passes comes out twice.
    #[test]
    fn equal_subplans_are_built_once() {
        let s = arc_schema(vec![Field::new("a", DataType::Int64, true)]);
        let a = col("a", &s).unwrap();
        let filter = || StreamNode::Filter {
            input: source(&s),
            predicate: binary(a.clone(), BinOp::Gt, lit(1i64), &s).unwrap(),
        };
        let plan = StreamNode::Union {
            inputs: vec![filter(), filter()],
            schema: s.clone(),
        };
        let mut df = Dataflow::build(9, &plan, true, Output::Table, 1).unwrap();
        assert_eq!(df.operator_names(), ["materialize", "union_all", "filter"]);
        let mut txn = Txn::new(Store::memory());
        let i = |v: i64| vec![ScalarValue::Int64(Some(v))];
        let c = Chunk::from_rows(s.clone(), &[i(1), i(2), i(3)], vec![1, 1, 1]).unwrap();
        let out = df.push(5, &c, &mut txn).unwrap();
        assert_eq!(
            rows(&out),
            [
                "[Int64(2)] 1",
                "[Int64(2)] 1",
                "[Int64(3)] 1",
                "[Int64(3)] 1"
            ]
        );
    }

    /// A view planned before numeric NaN and infinities refuses a change that has one
    /// (its expressions would compute with it as with a number); others take it.
    #[test]
    fn views_from_before_refuse_numeric_specials() {
        let s = arc_schema(vec![Field::new("x", DataType::Decimal128(38, 2), true)]);
        let plan = StreamNode::Filter {
            input: source(&s),
            predicate: binary(
                col("x", &s).unwrap(),
                BinOp::Gt,
                lit(ScalarValue::Decimal128(Some(0), 38, 2)),
                &s,
            )
            .unwrap(),
        };
        let d = |v: i128| vec![ScalarValue::Decimal128(Some(v), 38, 2)];
        let nan = Chunk::from_rows(
            s.clone(),
            &[d(150), d(crate::numeric_special::NAN)],
            vec![1, 1],
        )
        .unwrap();
        let finite = Chunk::from_rows(s.clone(), &[d(150)], vec![1]).unwrap();
        let mut txn = Txn::new(Store::memory());
        let mut old = Dataflow::build(9, &plan, true, Output::Table, 1).unwrap();
        old.refuses_specials = true;
        let err = old.push(5, &nan, &mut txn).unwrap_err().to_string();
        assert!(err.contains("numeric NaN is not supported"), "{err}");
        assert_eq!(rows(&old.push(5, &finite, &mut txn).unwrap()).len(), 1);
        let mut new = Dataflow::build(9, &plan, true, Output::Table, 1).unwrap();
        assert_eq!(rows(&new.push(5, &nan, &mut txn).unwrap()).len(), 2);
    }

    /// Two aggregates of the same input and calls whose groups are permuted (Nexmark q5's
    /// two HOP counts) are one aggregate, and a projection reorders its columns for the
    /// second use.
    #[test]
    fn aggregates_with_permuted_groups_are_shared() {
        let s = arc_schema(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let count = AggCall::count_star();
        let agg = |first: &str, second: &str| StreamNode::Aggregate {
            input: source(&s),
            group: vec![col(first, &s).unwrap(), col(second, &s).unwrap()],
            aggs: vec![count.clone()],
            schema: arc_schema(vec![
                Field::new(first, DataType::Int64, true),
                Field::new(second, DataType::Int64, true),
                Field::new("n", DataType::Int64, true),
            ]),
            emit_on_close: false,
        };
        let plan = StreamNode::Union {
            inputs: vec![agg("a", "b"), agg("b", "a")],
            schema: agg("a", "b").schema(),
        };
        let mut df = Dataflow::build(9, &plan, false, Output::Table, 1).unwrap();
        assert_eq!(
            df.operator_names(),
            ["materialize", "union_all", "hash_agg", "project"]
        );
        let mut txn = Txn::new(Store::memory());
        let r = |a: i64, b: i64| vec![ScalarValue::Int64(Some(a)), ScalarValue::Int64(Some(b))];
        let c = Chunk::from_rows(s.clone(), &[r(1, 2), r(1, 2), r(3, 4)], vec![1, 1, 1]).unwrap();
        let out = df.push(5, &c, &mut txn).unwrap();
        assert_eq!(
            rows(&out),
            [
                "[Int64(1), Int64(2), Int64(2)] 1",
                "[Int64(2), Int64(1), Int64(2)] 1",
                "[Int64(3), Int64(4), Int64(1)] 1",
                "[Int64(4), Int64(3), Int64(1)] 1",
            ]
        );
        // Different calls are not shared.
        let mut other = agg("b", "a");
        if let StreamNode::Aggregate { aggs, .. } = &mut other {
            aggs[0].distinct = true;
        }
        let plan = StreamNode::Union {
            inputs: vec![agg("a", "b"), other],
            schema: agg("a", "b").schema(),
        };
        let df = Dataflow::build(9, &plan, false, Output::Table, 1).unwrap();
        assert_eq!(
            df.operator_names(),
            ["materialize", "union_all", "hash_agg", "hash_agg"]
        );
    }
}
