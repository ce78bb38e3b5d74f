//! A view's dataflow: its operators, wired as the plan's tree, with a [`Materialize`] at
//! the root that keeps the view's rows.
//!
//! Operators are numbered in pre-order (the root is 0), and an operator's state tables get
//! ids derived from the view id and that number, so rebuilding the dataflow from the same
//! plan after a restart finds its state again.

use freshet_storage::{keys, Txn};

use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::operators::filter::Filter;
use crate::operators::hash_agg::HashAgg;
use crate::operators::hash_join::HashJoin;
use crate::operators::materialize::Materialize;
use crate::operators::project::Project;
use crate::operators::session::Session;
use crate::operators::temporal_filter::TemporalFilter;
use crate::operators::top_n::TopN;
use crate::operators::union::Union;
use crate::operators::window::Window;
use crate::plan::{RelationId, StreamNode};
use crate::EngineError;

struct Node {
    op: Box<dyn Operator>,
    /// Parent node and which of its inputs this node feeds; `None` for the root.
    parent: Option<(usize, usize)>,
    /// Per input: whether it carries a watermark, and the latest one it brought.
    input_wms: Vec<(bool, Option<i64>)>,
    /// The watermark last passed to the operator.
    wm: Option<i64>,
}

impl Node {
    fn new(op: Box<dyn Operator>, parent: Option<(usize, usize)>, inputs: Vec<bool>) -> Node {
        Node {
            op,
            parent,
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

pub struct Dataflow {
    view: RelationId,
    nodes: Vec<Node>,
    /// Where each source relation enters: (relation, node, input of that node).
    sources: Vec<(RelationId, usize, usize)>,
    /// Per source entry: whether it is a lookup join's table (backfilled first, so the
    /// stream side's existing rows find it).
    lookup_entries: Vec<bool>,
}

impl Dataflow {
    /// `append_only`: the plan never deletes (see `Materialize::insert_only`).
    pub fn build(
        view: RelationId,
        plan: &StreamNode,
        append_only: bool,
    ) -> Result<Dataflow, EngineError> {
        // The root's own state table (its next row sequence number).
        let seq_table = keys::state_table_id(view, 0, 0);
        let mut df = Dataflow {
            view,
            nodes: vec![Node::new(
                Box::new(Materialize::new(view).insert_only(append_only, seq_table)),
                None,
                vec![has_watermark(plan)],
            )],
            sources: Vec::new(),
            lookup_entries: Vec::new(),
        };
        df.add(plan, (0, 0), false)?;
        Ok(df)
    }

    fn add(
        &mut self,
        plan: &StreamNode,
        parent: (usize, usize),
        lookup: bool,
    ) -> Result<(), EngineError> {
        let idx = self.nodes.len();
        let view = self.view;
        let op_no = u16::try_from(idx)
            .map_err(|_| EngineError::Internal("too many operators in one view".into()))?;
        let table_id = move |n: u16| keys::state_table_id(view, op_no, n);
        let op: Box<dyn Operator> = match plan {
            StreamNode::Source { relation, .. } => {
                self.sources.push((*relation, parent.0, parent.1));
                self.lookup_entries.push(lookup);
                return Ok(());
            }
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
            } => Box::new(TopN::new(
                partition.clone(),
                order.clone(),
                *kind,
                *skip,
                *limit,
                *with_rank,
                &input.schema(),
                schema.clone(),
                table_id,
            )),
            StreamNode::Union { schema, .. } => Box::new(Union::new(schema.clone())),
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
                .insert_only(*insert_only),
            ),
        };
        let inputs = plan.inputs();
        self.nodes.push(Node::new(
            op,
            Some(parent),
            inputs.iter().map(|i| has_watermark(i)).collect(),
        ));
        for (n, input) in inputs.into_iter().enumerate() {
            let looked_up = matches!(plan, StreamNode::Join { lookup: true, .. }) && n == 1;
            self.add(input, (idx, n), lookup || looked_up)?;
        }
        Ok(())
    }

    pub fn view(&self) -> RelationId {
        self.view
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

    /// Runs `chunk` up from node `node`'s input `input`; returns the root's output.
    fn propagate(
        &mut self,
        mut node: usize,
        mut input: usize,
        mut chunk: Chunk,
        txn: &mut Txn,
    ) -> Result<Option<Chunk>, EngineError> {
        loop {
            let out = self.nodes[node].op.process(input, chunk, txn)?;
            if out.is_empty() {
                return Ok(None);
            }
            match self.nodes[node].parent {
                Some((p, i)) => {
                    node = p;
                    input = i;
                    chunk = out;
                }
                None => return Ok(Some(out)),
            }
        }
    }

    /// The (node, input) pairs where `relation` enters the dataflow.
    fn entries(&self, relation: RelationId) -> Vec<(usize, usize)> {
        self.sources
            .iter()
            .filter(|(r, _, _)| *r == relation)
            .map(|(_, n, i)| (*n, *i))
            .collect()
    }

    /// Feeds a change of `relation` to every place the view reads it; returns the view's
    /// own changes (already applied to its stored rows).
    pub fn push(
        &mut self,
        relation: RelationId,
        chunk: &Chunk,
        txn: &mut Txn,
    ) -> Result<Vec<Chunk>, EngineError> {
        let entries = self.entries(relation);
        let mut out = Vec::new();
        for (node, input) in entries {
            if let Some(c) = self.propagate(node, input, chunk.clone(), txn)? {
                out.push(c);
            }
        }
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
            let (mut node, mut input, mut wm) = (node, input, wm);
            loop {
                let n = &mut self.nodes[node];
                let Some(slot) = n.input_wms.get_mut(input) else {
                    break;
                };
                if slot.1.is_some_and(|old| old >= wm) {
                    break;
                }
                slot.1 = Some(wm);
                let combined = n
                    .input_wms
                    .iter()
                    .filter(|(expects, _)| *expects)
                    .map(|(_, w)| *w)
                    .min()
                    .flatten();
                let Some(combined) = combined else { break };
                if n.wm.is_some_and(|old| old >= combined) {
                    break;
                }
                n.wm = Some(combined);
                if let Some(c) = n.op.on_watermark(combined, txn)? {
                    if !c.is_empty() {
                        match n.parent {
                            Some((p, i)) => {
                                if let Some(c) = self.propagate(p, i, c, txn)? {
                                    out.push(c);
                                }
                            }
                            None => out.push(c),
                        }
                    }
                }
                match self.nodes[node].parent {
                    Some((p, i)) => {
                        node = p;
                        input = i;
                        wm = combined;
                    }
                    None => {
                        root_wm = Some(combined);
                        break;
                    }
                }
            }
        }
        Ok((out, root_wm))
    }

    /// Processing time advanced to `now` (µs since the epoch): operators that depend on it
    /// (temporal filters) release or retract rows. Returns the view's own changes.
    pub fn tick(&mut self, now: i64, txn: &mut Txn) -> Result<Vec<Chunk>, EngineError> {
        let mut out = Vec::new();
        // Deepest operators first, so a parent sees its input's changes at the old time
        // and then moves to the new one itself.
        for idx in (1..self.nodes.len()).rev() {
            if let Some(c) = self.nodes[idx].op.on_tick(now, txn)? {
                if c.is_empty() {
                    continue;
                }
                if let Some((p, i)) = self.nodes[idx].parent {
                    if let Some(c) = self.propagate(p, i, c, txn)? {
                        out.push(c);
                    }
                }
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
    ) -> Result<Option<Chunk>, EngineError> {
        let (_, node, input) = self.sources[entry];
        self.propagate(node, input, chunk, txn)
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
    pub fn init(&mut self, txn: &mut Txn) -> Result<Vec<Chunk>, EngineError> {
        let mut out = Vec::new();
        for idx in (1..self.nodes.len()).rev() {
            if let Some(c) = self.nodes[idx].op.initial_output(txn)? {
                if let Some((p, i)) = self.nodes[idx].parent {
                    if let Some(c) = self.propagate(p, i, c, txn)? {
                        out.push(c);
                    }
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
