//! The window table functions `TUMBLE(rel, time_col, size [, offset])`,
//! `HOP(rel, time_col, slide, size [, offset])` and `SESSION(rel, time_col, gap [, key, …])`.
//!
//! Before DataFusion binds a statement, each call in a FROM clause is replaced by a
//! generated relation name whose table provider holds the logical plan
//! `WindowNode(scan of rel)`; DataFusion inlines that plan where the name is used. The
//! streaming planner turns a `WindowNode` into the engine's window operator, and batch
//! queries run it through [`WindowExec`]: both call the same
//! `freshet_engine::operators::window::expand`, so a view and its query agree.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, LogicalPlanBuilder, TableType, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use freshet_engine::operators::window::expand;
use freshet_engine::plan::WindowSpec;

use crate::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Statement,
    TableFactor, VisitMut, VisitorMut,
};
use crate::PlannerError;

/// `TUMBLE`/`HOP` over a relation: the input's columns, then `window_start`, `window_end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowNode {
    pub input: LogicalPlan,
    pub time_col: usize,
    /// For a session window, the gap is `spec.size`.
    pub spec: WindowSpec,
    /// `SESSION`: the key columns sessions are per.
    pub session: Option<Vec<usize>>,
    schema: DFSchemaRef,
}

impl Hash for WindowNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.time_col.hash(state);
        self.spec.hash(state);
        self.session.hash(state);
    }
}

impl PartialOrd for WindowNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.input.partial_cmp(&other.input)? {
            Ordering::Equal => (
                self.time_col,
                self.spec.size,
                self.spec.slide,
                self.spec.offset,
                &self.session,
            )
                .partial_cmp(&(
                    other.time_col,
                    other.spec.size,
                    other.spec.slide,
                    other.spec.offset,
                    &other.session,
                )),
            o => Some(o),
        }
    }
}

impl WindowNode {
    pub fn try_new(
        input: LogicalPlan,
        time_col: usize,
        spec: WindowSpec,
        session: Option<Vec<usize>>,
    ) -> Result<WindowNode, PlannerError> {
        let in_schema = input.schema();
        let time_type = in_schema.field(time_col).data_type().clone();
        let mut fields: Vec<_> = in_schema
            .iter()
            .map(|(q, f)| (q.cloned(), f.clone()))
            .collect();
        for name in ["window_start", "window_end"] {
            if in_schema.fields().iter().any(|f| f.name() == name) {
                return Err(PlannerError::DuplicateColumn(name.into()));
            }
            fields.push((None, Arc::new(Field::new(name, time_type.clone(), true))));
        }
        let schema = DFSchema::new_with_metadata(fields, in_schema.metadata().clone())?;
        Ok(WindowNode {
            input,
            time_col,
            spec,
            session,
            schema: Arc::new(schema),
        })
    }
}

impl UserDefinedLogicalNodeCore for WindowNode {
    fn name(&self) -> &str {
        "Window"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(keys) = &self.session {
            return write!(
                f,
                "SessionWindow: time={} gap={}us keys={keys:?}",
                self.input.schema().field(self.time_col).name(),
                self.spec.size
            );
        }
        write!(
            f,
            "Window: time={} size={}us slide={}us offset={}us",
            self.input.schema().field(self.time_col).name(),
            self.spec.size,
            self.spec.slide,
            self.spec.offset
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| datafusion::common::DataFusionError::Internal("no input".into()))?;
        // The new input may have fewer columns (projection push-down, see
        // `necessary_children_exprs`): find the time and key columns by name.
        let remap = |i: usize| -> datafusion::common::Result<usize> {
            let (qualifier, field) = self.input.schema().qualified_field(i);
            input
                .schema()
                .index_of_column(&datafusion::common::Column::new(
                    qualifier.cloned(),
                    field.name(),
                ))
        };
        let time_col = remap(self.time_col)?;
        let session = match &self.session {
            Some(keys) => Some(keys.iter().map(|&k| remap(k)).collect::<Result<_, _>>()?),
            None => None,
        };
        WindowNode::try_new(input, time_col, self.spec, session)
            .map_err(|e| datafusion::common::DataFusionError::Plan(e.to_string()))
    }

    /// The input columns that `output_columns` need, plus the time column and a session
    /// window's keys: the optimizer then prunes the rest below the window, down to the
    /// source, whose reader may leave them out (`PlannedView::source_columns`).
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let n = self.input.schema().fields().len();
        let mut need: Vec<usize> = output_columns.iter().copied().filter(|&c| c < n).collect();
        need.push(self.time_col);
        if let Some(keys) = &self.session {
            need.extend(keys.iter().copied());
        }
        need.sort_unstable();
        need.dedup();
        Some(vec![need])
    }
}

/// A generated relation standing for one window call: DataFusion inlines its plan.
#[derive(Debug)]
struct WindowTable {
    plan: LogicalPlan,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for WindowTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Err(datafusion::common::DataFusionError::Internal(
            "window relations are inlined, never scanned".into(),
        ))
    }
}

/// A window call as written.
struct Call {
    kind: &'static str,
    relation: String,
    time_col: String,
    intervals: Vec<SqlExpr>,
    /// `SESSION`'s key columns.
    keys: Vec<String>,
    generated: String,
}

fn window_kind(name: &ObjectName) -> Option<&'static str> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] if i.value.eq_ignore_ascii_case("tumble") => Some("TUMBLE"),
        [ObjectNamePart::Identifier(i)] if i.value.eq_ignore_ascii_case("hop") => Some("HOP"),
        [ObjectNamePart::Identifier(i)] if i.value.eq_ignore_ascii_case("session") => {
            Some("SESSION")
        }
        _ => None,
    }
}

fn ident_text(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn arg_name(arg: &FunctionArg) -> Option<String> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(i))) => Some(ident_text(i)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::CompoundIdentifier(parts))) => {
            let mut names: Vec<String> = parts.iter().map(ident_text).collect();
            if names.len() == 2 && names[0] == "public" {
                names.remove(0);
            }
            Some(names.join("."))
        }
        _ => None,
    }
}

struct Rewriter {
    calls: Vec<Call>,
    error: Option<PlannerError>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let (Some(kind), Some(call_args)) = (window_kind(name), args.as_ref()) else {
            return ControlFlow::Continue(());
        };
        let fn_args = &call_args.args;
        let (n_intervals, usage) = match kind {
            "TUMBLE" => (1..=2, "TUMBLE(relation, time_column, size [, offset])"),
            "HOP" => (2..=3, "HOP(relation, time_column, slide, size [, offset])"),
            _ => (
                1..=1,
                "SESSION(relation, time_column, gap [, key_column, …])",
            ),
        };
        let (Some(relation), Some(time_col)) = (
            fn_args.first().and_then(arg_name),
            fn_args.get(1).and_then(arg_name),
        ) else {
            self.error = Some(PlannerError::InvalidParameter(format!("usage: {usage}")));
            return ControlFlow::Break(());
        };
        let mut intervals = Vec::new();
        let mut keys = Vec::new();
        for (n, a) in fn_args[2..].iter().enumerate() {
            if kind == "SESSION" && n > 0 {
                match arg_name(a) {
                    Some(k) => keys.push(k),
                    None => {
                        self.error =
                            Some(PlannerError::InvalidParameter(format!("usage: {usage}")));
                        return ControlFlow::Break(());
                    }
                }
                continue;
            }
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => intervals.push(e.clone()),
                _ => {
                    self.error = Some(PlannerError::InvalidParameter(format!("usage: {usage}")));
                    return ControlFlow::Break(());
                }
            }
        }
        if !n_intervals.contains(&intervals.len()) {
            self.error = Some(PlannerError::InvalidParameter(format!("usage: {usage}")));
            return ControlFlow::Break(());
        }
        // Unique per process: one session may bind several statements (views at startup).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let generated = format!(
            "__freshet_window_{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let alias_name = relation.rsplit('.').next().unwrap_or(&relation).to_string();
        *name = ObjectName::from(vec![Ident::new(generated.clone())]);
        if alias.is_none() {
            *alias = Some(crate::sqlparser::ast::TableAlias {
                explicit: false,
                at: None,
                name: Ident::new(alias_name),
                columns: Vec::new(),
            });
        }
        // The call becomes a plain reference to the generated relation.
        *args = None;
        self.calls.push(Call {
            kind,
            relation,
            time_col,
            intervals,
            keys,
            generated,
        });
        ControlFlow::Continue(())
    }
}

/// The relations window calls in `stmt` read (`TUMBLE(plays, …)` reads `plays`).
pub fn window_relations(stmt: &Statement) -> Vec<String> {
    let mut stmt = stmt.clone();
    let mut r = Rewriter {
        calls: Vec::new(),
        error: None,
    };
    let _ = stmt.visit(&mut r);
    r.calls.into_iter().map(|c| c.relation).collect()
}

/// An interval literal in microseconds (no months: a window has a fixed length).
pub fn interval_micros(ctx: &SessionContext, e: &SqlExpr) -> Result<i64, PlannerError> {
    let bad = || {
        PlannerError::InvalidParameter(format!(
            "expected an interval literal without months or years, not {e}"
        ))
    };
    let expr = ctx.parse_sql_expr(&e.to_string(), &DFSchema::empty())?;
    let v = match expr {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => match *c.expr {
            Expr::Literal(v, _) => v.cast_to(&c.field.data_type().clone())?,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            Ok(i64::from(i.days) * 86_400_000_000 + i.nanoseconds / 1000)
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            Ok(i64::from(i.days) * 86_400_000_000 + i64::from(i.milliseconds) * 1000)
        }
        _ => Err(bad()),
    }
}

/// Replaces the window calls of `stmt` by generated relations registered in `ctx`.
pub async fn rewrite_windows(
    ctx: &SessionContext,
    stmt: &mut Statement,
) -> Result<(), PlannerError> {
    let mut r = Rewriter {
        calls: Vec::new(),
        error: None,
    };
    let _ = stmt.visit(&mut r);
    if let Some(e) = r.error {
        return Err(e);
    }
    for call in r.calls {
        let provider = ctx
            .table_provider(crate::schemas::table_ref(&call.relation))
            .await
            .map_err(|_| PlannerError::UndefinedTable(call.relation.clone()))?;
        let scan = LogicalPlanBuilder::scan(
            crate::schemas::table_ref(&call.relation),
            provider_as_source(provider),
            None,
        )?
        .build()?;
        let time_col = scan
            .schema()
            .fields()
            .iter()
            .position(|f| f.name() == &call.time_col)
            .ok_or_else(|| PlannerError::UndefinedColumn(call.time_col.clone()))?;
        if !matches!(
            scan.schema().field(time_col).data_type(),
            DataType::Timestamp(_, _)
        ) {
            return Err(PlannerError::InvalidParameter(format!(
                "the time column of {} must be a timestamp, and \"{}\" is {}",
                call.kind,
                call.time_col,
                scan.schema().field(time_col).data_type()
            )));
        }
        let mut v = Vec::new();
        for e in &call.intervals {
            v.push(interval_micros(ctx, e)?);
        }
        let spec = match (call.kind, v.as_slice()) {
            ("SESSION", [gap]) => WindowSpec {
                size: *gap,
                slide: *gap,
                offset: 0,
            },
            ("TUMBLE", [size]) => WindowSpec {
                size: *size,
                slide: *size,
                offset: 0,
            },
            ("TUMBLE", [size, offset]) => WindowSpec {
                size: *size,
                slide: *size,
                offset: *offset,
            },
            (_, [slide, size]) => WindowSpec {
                size: *size,
                slide: *slide,
                offset: 0,
            },
            (_, [slide, size, offset]) => WindowSpec {
                size: *size,
                slide: *slide,
                offset: *offset,
            },
            _ => return Err(PlannerError::Internal("window arguments".into())),
        };
        if spec.size <= 0 || spec.slide <= 0 {
            return Err(PlannerError::InvalidParameter(format!(
                "{} window size and slide must be positive",
                call.kind
            )));
        }
        // Positive, checked above.
        let windows = (spec.size as u64).div_ceil(spec.slide as u64);
        let max = crate::context::limits_of(ctx).max_hop_windows;
        if call.kind == "HOP" && windows > max {
            return Err(PlannerError::InvalidParameter(format!(
                "HOP window size is {windows} times its slide, so every row would fall \
                 into {windows} windows; at most {max} are allowed (the server setting \
                 max_hop_windows)"
            )));
        }
        if spec.offset.abs() >= spec.slide {
            return Err(PlannerError::InvalidParameter(format!(
                "{} window offset must be smaller than the {}",
                call.kind,
                if call.kind == "TUMBLE" {
                    "window size"
                } else {
                    "slide"
                }
            )));
        }
        let session = if call.kind == "SESSION" {
            let mut idx = Vec::new();
            for k in &call.keys {
                idx.push(
                    scan.schema()
                        .fields()
                        .iter()
                        .position(|f| f.name() == k)
                        .ok_or_else(|| PlannerError::UndefinedColumn(k.clone()))?,
                );
            }
            Some(idx)
        } else {
            None
        };
        let node = WindowNode::try_new(scan, time_col, spec, session)?;
        let schema: SchemaRef = Arc::new(node.schema.as_arrow().clone());
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        });
        ctx.register_table(
            TableReference::bare(call.generated.as_str()),
            Arc::new(WindowTable { plan, schema }),
        )?;
    }
    Ok(())
}

/// Plans [`WindowNode`]s for batch queries.
#[derive(Debug)]
pub struct WindowQueryPlanner;

#[async_trait]
impl datafusion::execution::context::QueryPlanner for WindowQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(WindowPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}

struct WindowPlanner;

#[async_trait]
impl ExtensionPlanner for WindowPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _ctx: &PhysicalPlanningContext,
    ) -> datafusion::common::Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(w) = node.as_any().downcast_ref::<WindowNode>() else {
            return Ok(None);
        };
        let input = physical_inputs
            .first()
            .cloned()
            .ok_or_else(|| datafusion::common::DataFusionError::Internal("no input".into()))?;
        // Sessions need all rows at once: one partition.
        let input: Arc<dyn ExecutionPlan> = if w.session.is_some() {
            Arc::new(
                datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec::new(input),
            )
        } else {
            input
        };
        Ok(Some(Arc::new(WindowExec::new(
            input,
            w.time_col,
            w.spec,
            w.session.clone(),
            Arc::new(w.schema.as_arrow().clone()),
        ))))
    }
}

/// Batch execution of a window call: TUMBLE/HOP batch by batch; SESSION (`session`
/// holds its keys, `spec.size` its gap) over all its input at once, with the kernel the
/// streaming operator uses.
#[derive(Debug)]
struct WindowExec {
    input: Arc<dyn ExecutionPlan>,
    time_col: usize,
    spec: WindowSpec,
    session: Option<Vec<usize>>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl WindowExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        time_col: usize,
        spec: WindowSpec,
        session: Option<Vec<usize>>,
        schema: SchemaRef,
    ) -> WindowExec {
        let (partitioning, emission) = match session {
            Some(_) => (
                datafusion::physical_plan::Partitioning::UnknownPartitioning(1),
                EmissionType::Final,
            ),
            None => (
                input.output_partitioning().clone(),
                EmissionType::Incremental,
            ),
        };
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            partitioning,
            emission,
            Boundedness::Bounded,
        );
        WindowExec {
            input,
            time_col,
            spec,
            session,
            schema,
            props: Arc::new(props),
        }
    }
}

impl DisplayAs for WindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowExec")
    }
}

impl ExecutionPlan for WindowExec {
    fn name(&self) -> &str {
        "WindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// Sessions need all of a key's rows in one place: the whole input, as one partition
    /// (DataFusion coalesces the input's partitions for it). Fixed windows expand each
    /// row on its own, partition by partition.
    fn required_input_distribution(&self) -> Vec<datafusion::physical_plan::Distribution> {
        vec![match self.session {
            Some(_) => datafusion::physical_plan::Distribution::SinglePartition,
            None => datafusion::physical_plan::Distribution::UnspecifiedDistribution,
        }]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![self.session.is_none()]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::common::Result<TreeNodeRecursion>,
    ) -> datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| datafusion::common::DataFusionError::Internal("no input".into()))?;
        Ok(Arc::new(WindowExec::new(
            input,
            self.time_col,
            self.spec,
            self.session.clone(),
            self.schema.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        use futures::StreamExt;
        let input = self.input.execute(partition, context)?;
        let (time_col, spec, schema) = (self.time_col, self.spec, self.schema.clone());
        if let Some(keys) = self.session.clone() {
            let out_schema = schema.clone();
            let stream = futures::stream::once(async move {
                let batches: Vec<_> = input
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<datafusion::common::Result<Vec<_>>>()?;
                sessionize(&batches, time_col, spec.size, &keys, &schema)
                    .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))
            });
            return Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, stream)));
        }
        let stream = input.map(move |b| {
            let b = b?;
            expand(&b, time_col, &spec, schema.clone())
                .map(|(b, _)| b)
                .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// Sessions over whole batches: each row with a time gets its key's session bounds.
fn sessionize(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    time_col: usize,
    gap: i64,
    keys: &[usize],
    schema: &SchemaRef,
) -> Result<datafusion::arrow::record_batch::RecordBatch, freshet_engine::EngineError> {
    use freshet_engine::chunk::{batch_rows, rows_to_batch, timestamp_micros};
    let time_type = schema.field(time_col).data_type().clone();
    let tz = match &time_type {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    let rows: Vec<Vec<ScalarValue>> = batches
        .iter()
        .map(batch_rows)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut by_key: std::collections::BTreeMap<Vec<String>, Vec<(i64, usize)>> =
        std::collections::BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(t) = timestamp_micros(&r[time_col]) {
            let k = keys.iter().map(|&c| format!("{:?}", r[c])).collect();
            by_key.entry(k).or_default().push((t, i));
        }
    }
    let mut out = Vec::new();
    for (_, mut ts) in by_key {
        ts.sort();
        let mut distinct: Vec<i64> = ts.iter().map(|(t, _)| *t).collect();
        distinct.dedup();
        let bounds = freshet_engine::operators::session::sessions(&distinct, gap);
        for (t, i) in ts {
            let (s, e) = bounds[distinct.partition_point(|x| *x < t)];
            let mut r = rows[i].clone();
            for v in [s, e] {
                r.push(ScalarValue::TimestampMicrosecond(Some(v), tz.clone()).cast_to(&time_type)?);
            }
            out.push(r);
        }
    }
    rows_to_batch(schema.clone(), &out)
}
