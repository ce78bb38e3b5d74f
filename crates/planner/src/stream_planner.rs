//! From DataFusion's optimized logical plan of a view's query to the engine's streaming plan.
//!
//! DataFusion binds the query (names, types, coercions) and optimizes it (projection
//! pruning, predicate push-down, join key extraction, DISTINCT aggregates rewritten into
//! two-level grouping). Each remaining logical node maps to one incremental operator;
//! anything without an incremental operator yet is refused with a clear "not supported"
//! error instead of being computed wrongly.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, NullEquality, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, JoinType, LogicalPlan};
use datafusion::prelude::SessionContext;
use freshet_engine::plan::{
    AggCall, AggKind, JoinKind, PhysExpr, RankKind, SortKey, StreamNode, UnnestNulls,
};
use freshet_storage::codec::storable_type;

use crate::catalog::{Catalog, RelationKind};
use crate::window::WindowNode;
use crate::PlannerError;

mod grouping_sets;
mod over_window;
mod scalar_subqueries;

/// A planned view: its streaming plan, output schema and the relations it reads.
pub struct PlannedView {
    pub plan: StreamNode,
    pub schema: SchemaRef,
    pub depends_on: Vec<u64>,
    /// Output columns that follow the watermark: `(column, lag)`.
    pub watermark_cols: Vec<(usize, i64)>,
    /// The view's rows are only ever inserted.
    pub append_only: bool,
    /// Per source it reads, the columns it uses (see [`source_columns`]); a source not
    /// listed is read whole.
    pub source_columns: Vec<(u64, Vec<usize>)>,
}

/// Plans a view's query. `plan` is DataFusion's bound (unoptimized) plan of the query in a
/// session where the catalog's relations are registered.
pub fn plan_view(
    ctx: &SessionContext,
    catalog: &Catalog,
    plan: &LogicalPlan,
    emit_on_close: bool,
) -> Result<PlannedView, PlannerError> {
    let plan = crate::temporal::prepare_view_plan(plan.clone())?;
    let optimized = ctx.state().optimize(&plan)?;
    let optimized = scalar_subqueries::scalar_subqueries_to_joins(optimized)?;
    let planner = StreamPlanner {
        ctx,
        catalog,
        emit_on_close,
        rank_limits: RefCell::new(HashMap::new()),
        pending_limit: Cell::new(None),
    };
    let mut node = planner.node(&optimized)?;
    if emit_on_close && !has_closing_agg(&node) {
        // No aggregate emits final rows: hold each output row until the watermark makes
        // it final by a column that follows it.
        let Some((col, lag)) = node
            .watermark_columns()
            .iter()
            .enumerate()
            .find_map(|(c, lag)| lag.map(|l| (c, l)))
        else {
            return Err(PlannerError::Unsupported(
                "EMIT ON WINDOW CLOSE needs an output column the watermark closes: \
                 window_start or window_end of TUMBLE/HOP, a source's watermark column, or \
                 an aggregate grouped by one (a top-N or window function must be \
                 partitioned by one and output it; window functions that look back only, \
                 without lead or a frame ending after the current row, may instead be \
                 ordered by one)"
                    .into(),
            ));
        };
        if !final_by_watermark(&node) {
            return Err(PlannerError::Unsupported(
                "EMIT ON WINDOW CLOSE over a join, a session window, a temporal filter or \
                 an aggregate not grouped by a window column (their rows can change after \
                 the watermark passes them)"
                    .into(),
            ));
        }
        node = StreamNode::EmitOnClose {
            input: Box::new(node),
            col,
            lag,
        };
    }
    // Output columns: unqualified names, unique, storable types.
    let df_schema = optimized.schema();
    let mut seen = HashSet::new();
    let mut fields = Vec::new();
    let mut casts = Vec::new();
    let mut needs_cast = false;
    for (i, f) in df_schema.fields().iter().enumerate() {
        if !seen.insert(f.name().clone()) {
            return Err(PlannerError::DuplicateColumn(f.name().clone()));
        }
        let target = storable_type(f.data_type()).ok_or_else(|| {
            PlannerError::Unsupported(format!(
                "column \"{}\" has type {}, which a materialized view cannot store yet",
                f.name(),
                f.data_type()
            ))
        })?;
        needs_cast |= &target != f.data_type();
        let col: PhysExpr = Arc::new(datafusion::physical_expr::expressions::Column::new(
            f.name(),
            i,
        ));
        casts.push(if &target != f.data_type() {
            datafusion::physical_expr::expressions::cast(col, &node.schema(), target.clone())?
        } else {
            col
        });
        fields.push(Field::new(f.name(), target, true));
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    if needs_cast
        || node
            .schema()
            .fields()
            .iter()
            .zip(schema.fields())
            .any(|(a, b)| a.name() != b.name())
    {
        node = StreamNode::Project {
            input: Box::new(node),
            exprs: casts,
            schema: schema.clone(),
        };
    }
    let mut depends_on = node.sources();
    depends_on.sort_unstable();
    depends_on.dedup();
    let watermark_cols = node
        .watermark_columns()
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|l| (i, l)))
        .collect();
    let append_only = planner.append_only(&node);
    let source_columns = source_columns(&optimized, catalog)?;
    Ok(PlannedView {
        plan: node,
        schema,
        depends_on,
        watermark_cols,
        append_only,
        source_columns,
    })
}

/// The columns of each source a plan reads: the union over its scans of each scan's
/// projection and the columns of its pushed-down filters. A source with a scan that
/// reads every column is left out (read whole). The reader of a source may leave the
/// other columns NULL: nothing in the plan reads them.
fn source_columns(
    plan: &LogicalPlan,
    catalog: &Catalog,
) -> Result<Vec<(u64, Vec<usize>)>, PlannerError> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use std::collections::{BTreeMap, BTreeSet};
    // `None`: every column.
    let mut used: BTreeMap<u64, Option<BTreeSet<usize>>> = BTreeMap::new();
    plan.apply_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let Some(src) = catalog.source(&crate::schemas::relation_key(&scan.table_name)) else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let full = scan.source.schema();
        let cols = scan.projection.as_ref().and_then(|p| {
            let mut cols: BTreeSet<usize> = p.iter().copied().collect();
            for f in &scan.filters {
                for c in f.column_refs() {
                    cols.insert(full.index_of(&c.name).ok()?);
                }
            }
            Some(cols)
        });
        let entry = used.entry(src.id).or_insert_with(|| Some(BTreeSet::new()));
        match (entry.as_mut(), cols) {
            (Some(have), Some(cols)) => have.extend(cols),
            (Some(_), None) => *entry = None,
            (None, _) => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(used
        .into_iter()
        .filter_map(|(id, cols)| Some((id, cols?.into_iter().collect())))
        .collect())
}

/// Whether a row of `node`'s output is final once the watermark passes one of its
/// watermark columns: plans of windows, filters, projections, and top-N or window
/// functions (whose watermark columns are their partitions'). Joins, sessions, temporal
/// filters and other aggregates can change a row after that.
fn final_by_watermark(node: &StreamNode) -> bool {
    match node {
        StreamNode::Source { .. } | StreamNode::Values { .. } => true,
        StreamNode::Filter { .. }
        | StreamNode::Project { .. }
        | StreamNode::Window { .. }
        | StreamNode::Unnest { .. }
        | StreamNode::TopN { .. }
        | StreamNode::OverWindow { .. }
        | StreamNode::Union { .. } => node.inputs().into_iter().all(final_by_watermark),
        _ => false,
    }
}

/// Whether some aggregate in the plan closes its groups by the watermark (and so emits
/// each group once, final, under `EMIT ON WINDOW CLOSE`).
fn has_closing_agg(node: &StreamNode) -> bool {
    if matches!(node, StreamNode::Aggregate { .. }) && node.window_key().is_some() {
        return true;
    }
    node.inputs().into_iter().any(has_closing_agg)
}

/// A top-N node over `input`; its schema is the input's (plus the rank) unless given.
#[allow(clippy::too_many_arguments)]
fn top_n(
    input: StreamNode,
    partition: Vec<PhysExpr>,
    order: Vec<SortKey>,
    kind: RankKind,
    skip: u64,
    limit: u64,
    with_rank: bool,
    schema: Option<SchemaRef>,
) -> StreamNode {
    let schema = schema.unwrap_or_else(|| input.schema());
    StreamNode::TopN {
        input: Box::new(input),
        partition,
        order,
        kind,
        skip,
        limit,
        with_rank,
        schema,
    }
}

/// `LIMIT` (and `OFFSET`) without an order: the first rows by their encoding.
fn limit_only(input: StreamNode, skip: u64, limit: u64) -> StreamNode {
    top_n(
        input,
        Vec::new(),
        Vec::new(),
        RankKind::RowNumber,
        skip,
        limit,
        false,
        None,
    )
}

/// The ranking window function whose result is column `idx` of `plan`'s output, if the
/// column is one (through projections and aliases).
fn ranked_window(plan: &LogicalPlan, idx: usize) -> Option<&datafusion::logical_expr::Window> {
    match plan {
        LogicalPlan::Projection(p) => {
            let mut e = p.expr.get(idx)?;
            while let Expr::Alias(a) = e {
                e = a.expr.as_ref();
            }
            let Expr::Column(c) = e else { return None };
            let i = p.input.schema().index_of_column(c).ok()?;
            ranked_window(&p.input, i)
        }
        LogicalPlan::SubqueryAlias(s) => ranked_window(&s.input, idx),
        LogicalPlan::Filter(f) => ranked_window(&f.input, idx),
        LogicalPlan::Window(w)
            if w.window_expr.len() == 1 && idx == w.input.schema().fields().len() =>
        {
            Some(w)
        }
        _ => None,
    }
}

/// Whether `plan` reads a table marked `FOR SYSTEM_TIME AS OF PROCTIME()` (through
/// projections, filters and aliases only).
fn reads_lookup(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => {
            crate::parser::lookup_target(&crate::schemas::relation_key(&scan.table_name)).is_some()
        }
        LogicalPlan::Projection(p) => reads_lookup(&p.input),
        LogicalPlan::Filter(f) => reads_lookup(&f.input),
        LogicalPlan::SubqueryAlias(s) => reads_lookup(&s.input),
        _ => false,
    }
}

/// `node` with its columns cast to `schema`'s types where they differ.
fn cast_to(node: StreamNode, schema: &SchemaRef) -> Result<StreamNode, PlannerError> {
    let from = node.schema();
    if from
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(node);
    }
    let exprs = from
        .fields()
        .iter()
        .zip(schema.fields())
        .enumerate()
        .map(|(i, (a, b))| {
            let col: PhysExpr = Arc::new(datafusion::physical_expr::expressions::Column::new(
                a.name(),
                i,
            ));
            if a.data_type() == b.data_type() {
                Ok(col)
            } else {
                Ok(datafusion::physical_expr::expressions::cast(
                    col,
                    &from,
                    b.data_type().clone(),
                )?)
            }
        })
        .collect::<Result<_, PlannerError>>()?;
    Ok(StreamNode::Project {
        input: Box::new(node),
        exprs,
        schema: schema.clone(),
    })
}

/// All fields nullable: operators build rows that may hold NULLs anywhere (outer parts
/// of expressions, aggregates over empty groups).
fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

struct StreamPlanner<'a> {
    ctx: &'a SessionContext,
    catalog: &'a Catalog,
    emit_on_close: bool,
    /// Rank limits found in filters over ranking window functions, by the address of
    /// their `Window` node: `WHERE rn <= 10` over `row_number() OVER (…) AS rn`.
    rank_limits: RefCell<HashMap<usize, u64>>,
    /// A `LIMIT` (skip, fetch) waiting for the `ORDER BY` below it.
    pending_limit: Cell<Option<(u64, u64)>>,
}

fn unsupported(what: impl std::fmt::Display) -> PlannerError {
    PlannerError::Unsupported(format!(
        "{what} is not supported in a materialized view yet"
    ))
}

impl StreamPlanner<'_> {
    fn phys(&self, e: &Expr, schema: &DFSchema) -> Result<PhysExpr, PlannerError> {
        if crate::temporal::contains_now(e) {
            return Err(crate::temporal::bound(self.ctx, e, schema)
                .err()
                .unwrap_or_else(|| {
                    PlannerError::Unsupported(
                        "now() is supported in a view only as a conjunct of its WHERE clause"
                            .into(),
                    )
                }));
        }
        if e.is_volatile() {
            // random() and the like: recomputing a row (to retract it, or in a second copy
            // of a subplan, which the dataflow shares) would give another value.
            return Err(PlannerError::Unsupported(format!(
                "a materialized view cannot use a volatile function ({e}): its rows must \
                 follow from its inputs alone, so that a change retracts exactly the rows it \
                 added"
            )));
        }
        Ok(self.ctx.state().create_physical_expr(e.clone(), schema)?)
    }

    /// A filter: plain conjuncts become a [`StreamNode::Filter`], comparisons with now()
    /// a [`StreamNode::TemporalFilter`] above it.
    fn filter(
        &self,
        input: StreamNode,
        predicate: &Expr,
        schema: &DFSchema,
    ) -> Result<StreamNode, PlannerError> {
        let (temporal, plain): (Vec<&Expr>, Vec<&Expr>) =
            datafusion::logical_expr::utils::split_conjunction(predicate)
                .into_iter()
                .partition(|e| crate::temporal::contains_now(e));
        let mut node = input;
        if let Some(p) = datafusion::logical_expr::utils::conjunction(plain.into_iter().cloned()) {
            node = StreamNode::Filter {
                input: Box::new(node),
                predicate: self.phys(&p, schema)?,
            };
        }
        if !temporal.is_empty() {
            let bounds = temporal
                .into_iter()
                .map(|e| crate::temporal::bound(self.ctx, e, schema))
                .collect::<Result<_, _>>()?;
            node = StreamNode::TemporalFilter {
                input: Box::new(node),
                bounds,
            };
        }
        Ok(node)
    }

    fn node(&self, plan: &LogicalPlan) -> Result<StreamNode, PlannerError> {
        // A LIMIT passes through projections to the ORDER BY below it; reaching anything
        // else first, it limits that node's output in no particular order.
        let passes_limit = matches!(
            plan,
            LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Sort(_)
        );
        if !passes_limit {
            if let Some((skip, limit)) = self.pending_limit.take() {
                let input = self.node_inner(plan)?;
                return Ok(limit_only(input, skip, limit));
            }
        }
        self.node_inner(plan)
    }

    /// Records the rank limits a filter puts on ranking window functions below it.
    fn note_rank_limits(&self, f: &datafusion::logical_expr::Filter) {
        use datafusion::logical_expr::{BinaryExpr, Operator};
        for c in datafusion::logical_expr::utils::split_conjunction(&f.predicate) {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = c else {
                continue;
            };
            let (col, op, lit) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
                (Expr::Literal(v, _), Expr::Column(c)) => match op.swap() {
                    Some(op) => (c, op, v),
                    None => continue,
                },
                _ => continue,
            };
            let Some(v) = lit.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                ScalarValue::Int64(Some(v)) => Some(v),
                _ => None,
            }) else {
                continue;
            };
            let limit = match op {
                Operator::LtEq | Operator::Eq => v,
                Operator::Lt => v - 1,
                _ => continue,
            };
            let Ok(idx) = f.input.schema().index_of_column(col) else {
                continue;
            };
            if let Some(w) = ranked_window(&f.input, idx) {
                let limit = u64::try_from(limit.max(0)).unwrap_or(0);
                let mut limits = self.rank_limits.borrow_mut();
                let e = limits.entry(w as *const _ as usize).or_insert(limit);
                *e = (*e).min(limit);
            }
        }
    }

    /// Whether `node` only ever inserts rows.
    fn append_only(&self, node: &StreamNode) -> bool {
        match node {
            StreamNode::Source { relation, .. } => {
                self.catalog.source_by_id(*relation).is_some()
                    || self
                        .catalog
                        .tables
                        .iter()
                        .any(|t| t.id == *relation && t.append_only)
                    || self
                        .catalog
                        .views
                        .iter()
                        .any(|v| v.id == *relation && v.append_only)
                    || *relation == freshet_engine::coordinator::LATE_EVENTS
                    || *relation == freshet_engine::coordinator::SOURCE_ERRORS
            }
            // Inserted once, when the view is created.
            StreamNode::Values { .. } => true,
            StreamNode::Filter { input, .. }
            | StreamNode::Project { input, .. }
            | StreamNode::Unnest { input, .. }
            | StreamNode::Window { input, .. } => self.append_only(input),
            // Emitted once, final, when its window closes: insert-only whatever its input.
            StreamNode::EmitOnClose { .. } => true,
            StreamNode::Aggregate { emit_on_close, .. } => {
                *emit_on_close && node.window_key().is_some()
            }
            StreamNode::Union { inputs, .. } => inputs.iter().all(|i| self.append_only(i)),
            StreamNode::Join {
                kind: JoinKind::Inner,
                left,
                right,
                lookup,
                ..
            } => self.append_only(left) && (*lookup || self.append_only(right)),
            StreamNode::Join {
                kind: JoinKind::Left,
                left,
                lookup: true,
                ..
            } => self.append_only(left),
            _ => false,
        }
    }

    /// The interval an inner join's ON condition puts between an event-time column of
    /// each side (`i.t BETWEEN p.t - INTERVAL '30 minutes' AND p.t`), if both columns
    /// follow their side's watermark.
    fn interval_bounds(
        &self,
        filter: &Expr,
        both: &DFSchema,
        left: &StreamNode,
        right: &StreamNode,
    ) -> Result<Option<freshet_engine::plan::IntervalBounds>, PlannerError> {
        use datafusion::logical_expr::{BinaryExpr, Operator};
        let nleft = left.schema().fields().len();
        let (lwm, rwm) = (left.watermark_columns(), right.watermark_columns());
        // One side of a comparison: (column index in `both`, fixed shift in µs).
        let side = |e: &Expr| -> Result<Option<(usize, i64)>, PlannerError> {
            let cols = e.column_refs();
            let [c] = cols.into_iter().collect::<Vec<_>>()[..] else {
                return Ok(None);
            };
            let Ok(idx) = both.index_of_column(c) else {
                return Ok(None);
            };
            let ty = both.field(idx).data_type().clone();
            let target = c.clone();
            let is_col = move |x: &Expr| matches!(x, Expr::Column(y) if *y == target);
            Ok(crate::temporal::linear_shift(self.ctx, e, &is_col, &ty)?.map(|s| (idx, s)))
        };
        let mut cols: Option<(usize, usize)> = None;
        let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
        for c in datafusion::logical_expr::utils::split_conjunction(filter) {
            let Expr::BinaryExpr(BinaryExpr {
                left: a,
                op,
                right: b,
            }) = c
            else {
                continue;
            };
            if !matches!(
                op,
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq
            ) {
                continue;
            }
            let (Some((ia, sa)), Some((ib, sb))) = (side(a)?, side(b)?) else {
                continue;
            };
            // As `r - l <op> k`.
            let (l, r, op, k) = match (ia < nleft, ib < nleft) {
                (true, false) => (ia, ib - nleft, op.swap(), sa - sb),
                (false, true) => (ib, ia - nleft, Some(*op), sb - sa),
                _ => continue,
            };
            let Some(op) = op else { continue };
            // Only a pair of columns that both follow their side's watermark bounds state.
            if lwm.get(l).copied().flatten().is_none() || rwm.get(r).copied().flatten().is_none() {
                continue;
            }
            if *cols.get_or_insert((l, r)) != (l, r) {
                continue;
            }
            match op {
                Operator::Eq => {
                    lo = Some(lo.map_or(k, |x| x.max(k)));
                    hi = Some(hi.map_or(k, |x| x.min(k)));
                }
                Operator::Gt => lo = Some(lo.map_or(k + 1, |x| x.max(k + 1))),
                Operator::GtEq => lo = Some(lo.map_or(k, |x| x.max(k))),
                Operator::Lt => hi = Some(hi.map_or(k - 1, |x| x.min(k - 1))),
                Operator::LtEq => hi = Some(hi.map_or(k, |x| x.min(k))),
                _ => {}
            }
        }
        let Some((l, r)) = cols else { return Ok(None) };
        let (Some(left_lag), Some(right_lag)) =
            (lwm.get(l).copied().flatten(), rwm.get(r).copied().flatten())
        else {
            return Ok(None);
        };
        if lo.is_none() && hi.is_none() {
            return Ok(None);
        }
        Ok(Some(freshet_engine::plan::IntervalBounds {
            left_col: l,
            right_col: r,
            lo,
            hi,
            left_lag,
            right_lag,
            left_updates: !self.append_only(left),
            right_updates: !self.append_only(right),
        }))
    }

    /// A scan's pushed-down filters and projection over its source node.
    /// `width`: the number of columns of the node's rows, which may be more than the
    /// scan's relation has (a table's hidden row id follows its columns).
    fn scan_rest(
        &self,
        scan: &datafusion::logical_expr::TableScan,
        mut node: StreamNode,
        width: usize,
    ) -> Result<StreamNode, PlannerError> {
        let full = scan.source.schema();
        if !scan.filters.is_empty() {
            let df = DFSchema::try_from_qualified_schema(scan.table_name.clone(), &full)?;
            let pred = scan
                .filters
                .iter()
                .cloned()
                .reduce(|a, b| a.and(b))
                .ok_or_else(|| PlannerError::Internal("empty filter list".into()))?;
            node = self.filter(node, &pred, &df)?;
        }
        let identity =
            |p: &Vec<usize>| p.len() == width && p.iter().enumerate().all(|(i, c)| i == *c);
        let all: Vec<usize> = (0..full.fields().len()).collect();
        let projection = scan.projection.as_ref().unwrap_or(&all);
        if let Some(proj) = Some(projection).filter(|p| !identity(p)) {
            let exprs = proj
                .iter()
                .map(|&i| {
                    Arc::new(datafusion::physical_expr::expressions::Column::new(
                        full.field(i).name(),
                        i,
                    )) as PhysExpr
                })
                .collect();
            node = StreamNode::Project {
                input: Box::new(node),
                exprs,
                schema: nullable(scan.projected_schema.as_arrow()),
            };
        }
        if scan.fetch.is_some() {
            return Err(unsupported("LIMIT"));
        }
        Ok(node)
    }

    fn sort_keys(
        &self,
        exprs: &[datafusion::logical_expr::SortExpr],
        schema: &DFSchema,
    ) -> Result<Vec<SortKey>, PlannerError> {
        exprs
            .iter()
            .map(|s| {
                Ok(SortKey {
                    expr: self.phys(&s.expr, schema)?,
                    desc: !s.asc,
                    nulls_first: s.nulls_first,
                })
            })
            .collect()
    }

    fn node_inner(&self, plan: &LogicalPlan) -> Result<StreamNode, PlannerError> {
        match plan {
            LogicalPlan::TableScan(scan) if scan.table_name.schema() == Some("freshet_catalog") => {
                // The dead-letter tables are changelogs too: views can audit them.
                use freshet_engine::coordinator::{LATE_EVENTS, SOURCE_ERRORS};
                let relation = match scan.table_name.table() {
                    "late_events" => LATE_EVENTS,
                    "source_errors" => SOURCE_ERRORS,
                    other => {
                        return Err(unsupported(format!("a view over freshet_catalog.{other}")))
                    }
                };
                let full = scan.source.schema();
                let node = StreamNode::Source {
                    relation,
                    schema: nullable(&full),
                    watermark_cols: Vec::new(),
                };
                self.scan_rest(scan, node, full.fields().len())
            }
            LogicalPlan::TableScan(scan) => {
                let name = crate::schemas::relation_key(&scan.table_name);
                let name = crate::parser::lookup_target(&name).unwrap_or(&name);
                let name = crate::hidden_columns::stored_target(name).unwrap_or(name);
                let Some((kind, id)) = self.catalog.kind_of(name) else {
                    // A table function (`generate_series(…)`, `range(…)`): its arguments
                    // are constants, so are its rows.
                    if name.ends_with("()") && scan.filters.is_empty() {
                        return table_function_rows(self.ctx, scan);
                    }
                    return Err(PlannerError::UndefinedTable(name.to_string()));
                };
                // A table's rows come as stored: with its hidden row id, if it has one.
                let full = match (kind, self.catalog.table(name)) {
                    (RelationKind::Table, Some(t)) if t.row_id => t.stored_schema(),
                    _ => scan.source.schema(),
                };
                let watermark_cols = match kind {
                    RelationKind::Source => self
                        .catalog
                        .source(name)
                        .map(|s| s.watermark_cols())
                        .unwrap_or_default(),
                    RelationKind::View => self
                        .catalog
                        .view(name)
                        .map(|v| v.watermark_cols.clone())
                        .unwrap_or_default(),
                    RelationKind::Table => self
                        .catalog
                        .table(name)
                        .map(|t| t.watermark_cols())
                        .unwrap_or_default(),
                    RelationKind::Sink => {
                        return Err(PlannerError::Unsupported(format!(
                            "cannot read sink \"{name}\": a sink keeps no rows"
                        )))
                    }
                    RelationKind::Index => {
                        return Err(PlannerError::Unsupported(format!(
                            "cannot read index \"{name}\": read the relation it indexes"
                        )))
                    }
                    RelationKind::PlainView => {
                        return Err(PlannerError::Internal(format!(
                            "view \"{name}\" was not expanded"
                        )))
                    }
                };
                let node = StreamNode::Source {
                    relation: id,
                    schema: nullable(&full),
                    watermark_cols,
                };
                self.scan_rest(scan, node, full.fields().len())
            }
            LogicalPlan::Projection(p) => {
                let input = self.node(&p.input)?;
                let exprs = p
                    .expr
                    .iter()
                    .map(|e| self.phys(e, p.input.schema()))
                    .collect::<Result<_, _>>()?;
                Ok(StreamNode::Project {
                    input: Box::new(input),
                    exprs,
                    schema: nullable(p.schema.as_arrow()),
                })
            }
            LogicalPlan::Filter(f) => {
                self.note_rank_limits(f);
                let input = self.node(&f.input)?;
                self.filter(input, &f.predicate, f.input.schema())
            }
            LogicalPlan::SubqueryAlias(s) => self.node(&s.input),
            LogicalPlan::Aggregate(a) => {
                if let [Expr::GroupingSet(gs)] = a.group_expr.as_slice() {
                    return self.grouping_sets(a, gs);
                }
                let input_schema = a.input.schema();
                let input = self.node(&a.input)?;
                let group = a
                    .group_expr
                    .iter()
                    .map(|e| match e {
                        Expr::GroupingSet(_) => Err(unsupported(
                            "GROUPING SETS / ROLLUP / CUBE beside other GROUP BY expressions",
                        )),
                        e => self.phys(e, input_schema),
                    })
                    .collect::<Result<_, _>>()?;
                let out_fields = a.schema.fields();
                let append_only = self.append_only(&input);
                let mut aggs = Vec::new();
                for (i, e) in a.aggr_expr.iter().enumerate() {
                    let return_type = out_fields[a.group_expr.len() + i].data_type().clone();
                    let group: Vec<&Expr> = a.group_expr.iter().collect();
                    aggs.push(self.agg_call(e, input_schema, &group, return_type, append_only)?);
                }
                Ok(StreamNode::Aggregate {
                    input: Box::new(input),
                    group,
                    aggs,
                    schema: nullable(a.schema.as_arrow()),
                    emit_on_close: self.emit_on_close,
                })
            }
            LogicalPlan::Join(j) => {
                let kind = match j.join_type {
                    JoinType::Inner => JoinKind::Inner,
                    JoinType::Left => JoinKind::Left,
                    JoinType::Right => JoinKind::Right,
                    JoinType::Full => JoinKind::Full,
                    JoinType::LeftSemi => JoinKind::LeftSemi,
                    JoinType::LeftAnti => JoinKind::LeftAnti,
                    JoinType::RightSemi => JoinKind::RightSemi,
                    JoinType::RightAnti => JoinKind::RightAnti,
                    other => return Err(unsupported(format!("{other} JOIN"))),
                };
                if j.null_aware {
                    return Err(unsupported(
                        "NOT IN over a subquery (its NULL semantics); use NOT EXISTS",
                    ));
                }
                // `JOIN t FOR SYSTEM_TIME AS OF PROCTIME()`: a lookup join.
                if reads_lookup(&j.left) {
                    return Err(unsupported(
                        "a FOR SYSTEM_TIME AS OF table on the left of a join \
                         (write it on the right: stream JOIN table FOR SYSTEM_TIME …)",
                    ));
                }
                let lookup = reads_lookup(&j.right);
                if lookup && !matches!(kind, JoinKind::Inner | JoinKind::Left) {
                    return Err(unsupported(format!(
                        "a {} JOIN with a FOR SYSTEM_TIME AS OF table (INNER and LEFT are)",
                        j.join_type
                    )));
                }
                let left = self.node(&j.left)?;
                let right = self.node(&j.right)?;
                if lookup && !self.append_only(&left) {
                    return Err(unsupported(
                        "a lookup join (FOR SYSTEM_TIME AS OF PROCTIME()) over a stream that \
                         updates or deletes rows: its output is never revisited, so the \
                         stream side must only insert (a source, an APPEND ONLY table, or \
                         views over them without aggregates other than EMIT ON WINDOW CLOSE)",
                    ));
                }
                // The ON condition is over both sides' columns, whatever the join emits.
                let both = j.left.schema().join(j.right.schema())?;
                let filter = j.filter.as_ref().map(|f| self.phys(f, &both)).transpose()?;
                let interval = match &j.filter {
                    Some(f) if !lookup => self.interval_bounds(f, &both, &left, &right)?,
                    _ => None,
                };
                // A window join (ON l.window_start = r.window_start): the times are equal.
                let interval = match interval {
                    None if !lookup => {
                        let conds = j.on.iter().map(|(l, r)| l.clone().eq(r.clone()));
                        match datafusion::logical_expr::utils::conjunction(conds) {
                            Some(c) => self.interval_bounds(&c, &both, &left, &right)?,
                            None => None,
                        }
                    }
                    other => other,
                };
                // A window join's equal times go first among its keys: both sides' rows
                // are then stored in time order, and the watermark frees them as one range
                // with no time index (`HashJoin::time_leads`).
                let mut on: Vec<&(Expr, Expr)> = j.on.iter().collect();
                if let Some(b) = interval.filter(|b| b.lo == Some(0) && b.hi == Some(0)) {
                    let is_col = |e: &Expr, schema: &DFSchema, idx: usize| matches!(e, Expr::Column(c) if schema.index_of_column(c).ok() == Some(idx));
                    if let Some(p) = on.iter().position(|(l, r)| {
                        is_col(l, j.left.schema(), b.left_col)
                            && is_col(r, j.right.schema(), b.right_col)
                    }) {
                        let time = on.remove(p);
                        on.insert(0, time);
                    }
                }
                let on: Vec<(Expr, Expr)> = match j.null_equality {
                    NullEquality::NullEqualsNull => {
                        null_safe_keys(&on, j.left.schema(), j.right.schema())?
                    }
                    NullEquality::NullEqualsNothing => on.into_iter().cloned().collect(),
                };
                let left_keys = on
                    .iter()
                    .map(|(l, _)| self.phys(l, j.left.schema()))
                    .collect::<Result<_, _>>()?;
                let right_keys = on
                    .iter()
                    .map(|(_, r)| self.phys(r, j.right.schema()))
                    .collect::<Result<_, _>>()?;
                let insert_only = [self.append_only(&left), !lookup && self.append_only(&right)];
                Ok(StreamNode::Join {
                    kind,
                    lookup,
                    interval,
                    insert_only,
                    left: Box::new(left),
                    right: Box::new(right),
                    left_keys,
                    right_keys,
                    filter,
                    schema: nullable(j.schema.as_arrow()),
                })
            }
            LogicalPlan::Extension(ext) => {
                let Some(w) = ext.node.as_any().downcast_ref::<WindowNode>() else {
                    return Err(unsupported(format!(
                        "this query shape ({})",
                        ext.node.name()
                    )));
                };
                let input = self.node(&w.input)?;
                if let Some(keys) = &w.session {
                    return Ok(StreamNode::Session {
                        input: Box::new(input),
                        time_col: w.time_col,
                        gap: w.spec.size,
                        keys: keys.clone(),
                        schema: nullable(ext.node.schema().as_arrow()),
                    });
                }
                Ok(StreamNode::Window {
                    input: Box::new(input),
                    time_col: w.time_col,
                    spec: w.spec,
                    schema: nullable(ext.node.schema().as_arrow()),
                })
            }
            LogicalPlan::Sort(s) => {
                let limit = match (self.pending_limit.take(), s.fetch) {
                    (Some(l), _) => Some(l),
                    (None, Some(n)) => Some((0, n as u64)),
                    // A view's rows have no order: ORDER BY alone changes nothing.
                    (None, None) => None,
                };
                let input = self.node(&s.input)?;
                match limit {
                    None => Ok(input),
                    Some((skip, limit)) => {
                        let order = self.sort_keys(&s.expr, s.input.schema())?;
                        Ok(top_n(
                            input,
                            Vec::new(),
                            order,
                            RankKind::RowNumber,
                            skip,
                            limit,
                            false,
                            None,
                        ))
                    }
                }
            }
            LogicalPlan::Limit(l) => {
                use datafusion::logical_expr::{FetchType, SkipType};
                let skip = match l.get_skip_type()? {
                    SkipType::Literal(n) => n as u64,
                    SkipType::UnsupportedExpr => return Err(unsupported("a computed OFFSET")),
                };
                let fetch = match l.get_fetch_type()? {
                    FetchType::Literal(Some(n)) => n as u64,
                    FetchType::Literal(None) => return Err(unsupported("OFFSET without LIMIT")),
                    FetchType::UnsupportedExpr => return Err(unsupported("a computed LIMIT")),
                };
                if self.pending_limit.take().is_some() {
                    return Err(unsupported("nested LIMITs"));
                }
                self.pending_limit
                    .set(Some((skip, skip.saturating_add(fetch))));
                let input = self.node(&l.input)?;
                match self.pending_limit.take() {
                    Some((skip, limit)) => Ok(limit_only(input, skip, limit)),
                    None => Ok(input),
                }
            }
            LogicalPlan::Window(w) => {
                if let Some(node) = self.ranked_top_n(w)? {
                    return Ok(node);
                }
                self.over_window(w)
            }
            LogicalPlan::Union(u) => {
                let schema = nullable(u.schema.as_arrow());
                let mut inputs = Vec::new();
                for i in &u.inputs {
                    let node = self.node(i)?;
                    inputs.push(cast_to(node, &schema)?);
                }
                Ok(StreamNode::Union { inputs, schema })
            }
            LogicalPlan::Unnest(u) => {
                use datafusion::common::NullHandling;
                if !u.struct_type_columns.is_empty() {
                    return Err(unsupported("unnest of a STRUCT"));
                }
                if u.list_type_columns.iter().any(|(_, l)| l.depth != 1) {
                    return Err(unsupported("unnest of nested arrays"));
                }
                let lists: Vec<usize> = u.list_type_columns.iter().map(|(i, _)| *i).collect();
                let nulls = match u.options.null_handling {
                    NullHandling::Drop => UnnestNulls::Drop,
                    NullHandling::Preserve => UnnestNulls::Preserve,
                    NullHandling::PreserveAndExpandEmpty => UnnestNulls::PreserveAndExpandEmpty,
                };
                Ok(StreamNode::Unnest {
                    input: Box::new(self.node(&u.input)?),
                    lists,
                    deps: u.dependency_indices.clone(),
                    nulls,
                    schema: nullable(u.schema.as_arrow()),
                })
            }
            LogicalPlan::Distinct(_) => Err(unsupported("SELECT DISTINCT")),
            LogicalPlan::Values(v) => {
                let schema = nullable(v.schema.as_arrow());
                let rows = v
                    .values
                    .iter()
                    .map(|row| {
                        row.iter()
                            .zip(schema.fields())
                            .map(|(e, f)| constant(e, f.data_type()))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(StreamNode::Values { schema, rows })
            }
            LogicalPlan::EmptyRelation(e) => Ok(StreamNode::Values {
                schema: nullable(e.schema.as_arrow()),
                rows: if e.produce_one_row {
                    vec![vec![]]
                } else {
                    vec![]
                },
            }),
            other => Err(unsupported(format!(
                "this query shape ({})",
                other.display()
            ))),
        }
    }

    /// The engine's call of aggregate `e` over `input`, grouped by `group`.
    fn agg_call(
        &self,
        e: &Expr,
        input: &DFSchema,
        group: &[&Expr],
        return_type: DataType,
        append_only: bool,
    ) -> Result<AggCall, PlannerError> {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
            return Err(unsupported(format!("aggregate expression {e}")));
        };
        let name = func.name().to_lowercase();
        let mut kind = match name.as_str() {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "avg" | "mean" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "bool_and" | "every" => AggKind::BoolAnd,
            "bool_or" => AggKind::BoolOr,
            "bit_and" => AggKind::BitAnd,
            "bit_or" => AggKind::BitOr,
            "bit_xor" => AggKind::BitXor,
            "string_agg" => AggKind::StringAgg,
            "array_agg" => AggKind::ArrayAgg,
            "first_value" => AggKind::FirstValue,
            "last_value" => AggKind::LastValue,
            "percentile_cont"
            | "quantile_cont"
            | "approx_percentile_cont"
            | "median"
            | "approx_median" => AggKind::Percentile,
            "percentile_disc" => AggKind::PercentileDisc { descending: false },
            "approx_distinct" | "approx_count_distinct" => AggKind::ApproxCountDistinct,
            other => return Err(unsupported(format!("aggregate function {other}()"))),
        };
        // DISTINCT changes nothing for the aggregates a repeated value cannot change
        // (min, max, first_value, last_value, bool_and/or, bit_and/or): it is dropped.
        if params.distinct
            && !matches!(
                kind,
                AggKind::Count
                    | AggKind::Sum
                    | AggKind::Avg
                    | AggKind::Min
                    | AggKind::Max
                    | AggKind::ApproxCountDistinct
                    | AggKind::FirstValue
                    | AggKind::LastValue
                    | AggKind::BoolAnd
                    | AggKind::BoolOr
                    | AggKind::BitAnd
                    | AggKind::BitOr
            )
        {
            return Err(unsupported(format!("{name}(DISTINCT …)")));
        }
        // A constant second argument: string_agg's delimiter, a percentile's fraction.
        let constant = |e: &Expr| -> Result<ScalarValue, PlannerError> {
            let mut e = e;
            while let Expr::Cast(c) = e {
                e = c.expr.as_ref();
            }
            match e {
                Expr::Literal(v, _) => Ok(v.clone()),
                other => Err(unsupported(format!(
                    "{name}() with a non-constant argument {other}"
                ))),
            }
        };
        let (value, param) = match (kind, params.args.as_slice()) {
            (AggKind::Count, []) => (None, None),
            (AggKind::StringAgg, [v, d]) => (Some(v), Some(constant(d)?.cast_to(&DataType::Utf8)?)),
            (AggKind::Percentile, [v]) if name.contains("median") => {
                (Some(v), Some(ScalarValue::Float64(Some(0.5))))
            }
            (AggKind::Percentile | AggKind::PercentileDisc { .. }, [v, p, ..]) => {
                (Some(v), Some(constant(p)?.cast_to(&DataType::Float64)?))
            }
            (_, [a]) => (Some(a), None),
            _ => return Err(unsupported(format!("{name}() with these arguments"))),
        };
        // FILTER (WHERE f): the aggregate sees CASE WHEN f THEN value END, which is NULL
        // for the rows the filter drops, and aggregates skip NULL inputs. count(*)
        // becomes a count of CASE WHEN f THEN 1 END. first_value/last_value and
        // array_agg take NULL inputs: the operator evaluates their filter itself.
        let takes_nulls = matches!(
            kind,
            AggKind::FirstValue | AggKind::LastValue | AggKind::ArrayAgg
        );
        let row_filter = match &params.filter {
            Some(f) if takes_nulls => Some(self.phys(f, input)?),
            _ => None,
        };
        let filtered = match &params.filter {
            Some(_) if takes_nulls => None,
            Some(f) => {
                let v = value
                    .cloned()
                    .unwrap_or_else(|| datafusion::prelude::lit(1i64));
                Some(datafusion::prelude::when(f.as_ref().clone(), v).end()?)
            }
            None => None,
        };
        let (arg, arg_type) = match filtered.as_ref().or(value) {
            Some(a) => (Some(self.phys(a, input)?), Some(a.get_type(input)?)),
            None => (None, None),
        };
        if matches!(kind, AggKind::BitAnd | AggKind::BitOr | AggKind::BitXor)
            && !arg_type.as_ref().is_some_and(DataType::is_integer)
        {
            return Err(unsupported(format!("{name}() over a non-integer")));
        }
        // ORDER BY inside the call: first_value/last_value need one; string_agg may have
        // one; a percentile's WITHIN GROUP (ORDER BY value [DESC]) names its value.
        let mut param = param;
        // Sort keys that are grouping expressions are equal within a group: DISTINCT ON
        // (k) … ORDER BY k, v becomes first_value(… ORDER BY k, v) grouped by k.
        let order_by: Vec<_> = params
            .order_by
            .iter()
            .filter(|o| !group.contains(&&o.expr))
            .collect();
        let order = match (kind, order_by.as_slice()) {
            (_, []) => {
                if matches!(kind, AggKind::FirstValue | AggKind::LastValue) {
                    return Err(unsupported(format!(
                        "{name}() without ORDER BY (its result would depend on arrival order)"
                    )));
                }
                Vec::new()
            }
            (
                AggKind::FirstValue | AggKind::LastValue | AggKind::StringAgg | AggKind::ArrayAgg,
                keys,
            ) => keys
                .iter()
                .map(|o| {
                    Ok(SortKey {
                        expr: self.phys(&o.expr, input)?,
                        desc: !o.asc,
                        nulls_first: o.nulls_first,
                    })
                })
                .collect::<Result<_, PlannerError>>()?,
            (AggKind::Percentile | AggKind::PercentileDisc { .. }, [o]) => {
                let bare = |e: &Expr| {
                    let mut e = e.clone();
                    while let Expr::Cast(c) = e {
                        e = *c.expr;
                    }
                    e
                };
                if Some(bare(&o.expr)) != value.map(bare) {
                    return Err(unsupported(format!(
                        "{name}() ordered by another expression"
                    )));
                }
                if !o.asc {
                    match &mut kind {
                        AggKind::PercentileDisc { descending } => *descending = true,
                        _ => {
                            if let Some(ScalarValue::Float64(Some(p))) = &param {
                                param = Some(ScalarValue::Float64(Some(1.0 - p)));
                            }
                        }
                    }
                }
                Vec::new()
            }
            _ => return Err(unsupported(format!("{name}() with this ORDER BY"))),
        };
        // count(*) is bound as count(<non-null literal>): count every row.
        let kind = match (&kind, params.args.first()) {
            _ if filtered.is_some() => kind,
            (AggKind::Count, None) => AggKind::CountStar,
            (AggKind::Count, Some(Expr::Literal(v, _))) if !v.is_null() && !params.distinct => {
                AggKind::CountStar
            }
            _ => kind,
        };
        Ok(AggCall {
            kind,
            arg: if kind == AggKind::CountStar {
                None
            } else {
                arg
            },
            arg_type: if kind == AggKind::CountStar {
                None
            } else {
                arg_type
            },
            distinct: params.distinct
                && matches!(kind, AggKind::Count | AggKind::Sum | AggKind::Avg),
            param,
            order,
            filter: row_filter,
            sketch: kind == AggKind::ApproxCountDistinct && append_only,
            running: matches!(kind, AggKind::Min | AggKind::Max) && append_only,
            specials: crate::numeric_special::counts_specials(func),
            return_type,
        })
    }
}
/// A constant row's value: a literal of the optimized plan, cast to its column's type.
/// Rows a table function in a view may give: they are computed once, when the view is
/// created (and again at every start), and kept in its plan.
const MAX_FUNCTION_ROWS: usize = 100_000;

/// The rows of a table function's scan, computed now, as constant rows.
fn table_function_rows(
    ctx: &SessionContext,
    scan: &datafusion::logical_expr::TableScan,
) -> Result<StreamNode, PlannerError> {
    use futures::StreamExt;
    let name = scan.table_name.table().to_string();
    let plan = LogicalPlan::TableScan(scan.clone());
    let state = ctx.state();
    let batches = futures::executor::block_on(async {
        let physical = state.create_physical_plan(&plan).await?;
        let mut stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
        let (mut out, mut rows) = (Vec::new(), 0);
        while let Some(b) = stream.next().await {
            let b = b?;
            rows += b.num_rows();
            if rows > MAX_FUNCTION_ROWS {
                return Ok(None);
            }
            out.push(b);
        }
        Ok::<_, datafusion::error::DataFusionError>(Some(out))
    })?;
    let Some(batches) = batches else {
        return Err(unsupported(format!(
            "{name} of more than {MAX_FUNCTION_ROWS} rows"
        )));
    };
    let schema = nullable(scan.projected_schema.as_arrow());
    let mut rows = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, r))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
    }
    Ok(StreamNode::Values { schema, rows })
}

fn constant(e: &Expr, to: &DataType) -> Result<datafusion::common::ScalarValue, PlannerError> {
    let value = match e {
        Expr::Literal(v, _) => v.clone(),
        Expr::Alias(a) => return constant(&a.expr, to),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(v, _) => v.clone(),
            _ => return Err(unsupported("a VALUES row that is not constant")),
        },
        _ => return Err(unsupported("a VALUES row that is not constant")),
    };
    value
        .cast_to(to)
        .map_err(|e| PlannerError::Unsupported(format!("a VALUES row: {e}")))
}

/// The keys of a join on `IS NOT DISTINCT FROM` (what `INTERSECT` and `EXCEPT` become),
/// as keys of an ordinary equi-join, in which a NULL matches nothing: each pair `(l, r)`
/// becomes `(l IS NULL, r IS NULL)` and `(coalesce(l, d), coalesce(r, d))`, `d` a value
/// of the key's type. Neither is ever NULL, and both are equal exactly when `l` is not
/// distinct from `r`.
fn null_safe_keys(
    on: &[&(Expr, Expr)],
    left: &DFSchema,
    right: &DFSchema,
) -> Result<Vec<(Expr, Expr)>, PlannerError> {
    use datafusion::logical_expr::{lit, when};
    // `coalesce(e, d)`, written as the CASE DataFusion simplifies it to.
    let coalesce =
        |e: &Expr, d: &ScalarValue| when(e.clone().is_null(), lit(d.clone())).otherwise(e.clone());
    let mut out = Vec::with_capacity(on.len() * 2);
    for (l, r) in on {
        let (lt, rt) = (l.get_type(left)?, r.get_type(right)?);
        if lt != rt {
            return Err(unsupported(format!(
                "a join on IS NOT DISTINCT FROM between {lt} and {rt}"
            )));
        }
        let d = ScalarValue::new_default(&lt)
            .map_err(|_| unsupported(format!("a join on IS NOT DISTINCT FROM over {lt}")))?;
        out.push((l.clone().is_null(), r.clone().is_null()));
        out.push((coalesce(l, &d)?, coalesce(r, &d)?));
    }
    Ok(out)
}
