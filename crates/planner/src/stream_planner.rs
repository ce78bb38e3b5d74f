//! From DataFusion's optimized logical plan of a view's query to the engine's streaming plan.
//!
//! DataFusion binds the query (names, types, coercions) and optimizes it (projection
//! pruning, predicate push-down, join key extraction, DISTINCT aggregates rewritten into
//! two-level grouping). Each remaining logical node maps to one incremental operator;
//! anything without an incremental operator yet is refused with a clear "not supported"
//! error instead of being computed wrongly.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, NullEquality};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, JoinType, LogicalPlan};
use datafusion::prelude::SessionContext;
use freshet_engine::plan::{AggCall, AggKind, PhysExpr, StreamNode};
use freshet_storage::codec::storable_type;

use crate::catalog::{Catalog, RelationKind};
use crate::window::WindowNode;
use crate::PlannerError;

/// A planned view: its streaming plan, output schema and the relations it reads.
pub struct PlannedView {
    pub plan: StreamNode,
    pub schema: SchemaRef,
    pub depends_on: Vec<u64>,
    /// Output columns that follow the watermark: `(column, lag)`.
    pub watermark_cols: Vec<(usize, i64)>,
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
    let planner = StreamPlanner {
        ctx,
        catalog,
        emit_on_close,
    };
    let mut node = planner.node(&optimized)?;
    if emit_on_close && !has_window_agg(&node) {
        return Err(PlannerError::Unsupported(
            "EMIT ON WINDOW CLOSE needs an aggregate grouped by a window column \
             (window_start or window_end of TUMBLE/HOP) or by a source's watermark column"
                .into(),
        ));
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
    Ok(PlannedView {
        plan: node,
        schema,
        depends_on,
        watermark_cols,
    })
}

/// Whether some aggregate in the plan closes its groups by the watermark.
fn has_window_agg(node: &StreamNode) -> bool {
    if node.window_key().is_some() {
        return true;
    }
    node.inputs().into_iter().any(has_window_agg)
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
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                let (kind, id) = self
                    .catalog
                    .kind_of(name)
                    .ok_or_else(|| PlannerError::UndefinedTable(name.to_string()))?;
                let full = scan.source.schema();
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
                };
                let mut node = StreamNode::Source {
                    relation: id,
                    schema: nullable(&full),
                    watermark_cols,
                };
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
                if let Some(proj) = &scan.projection {
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
                let input = self.node(&f.input)?;
                self.filter(input, &f.predicate, f.input.schema())
            }
            LogicalPlan::SubqueryAlias(s) => self.node(&s.input),
            LogicalPlan::Aggregate(a) => {
                let input_schema = a.input.schema();
                let input = self.node(&a.input)?;
                let group = a
                    .group_expr
                    .iter()
                    .map(|e| match e {
                        Expr::GroupingSet(_) => Err(unsupported("GROUPING SETS / ROLLUP / CUBE")),
                        e => self.phys(e, input_schema),
                    })
                    .collect::<Result<_, _>>()?;
                let out_fields = a.schema.fields();
                let mut aggs = Vec::new();
                for (i, e) in a.aggr_expr.iter().enumerate() {
                    let return_type = out_fields[a.group_expr.len() + i].data_type().clone();
                    aggs.push(self.agg_call(e, input_schema, return_type)?);
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
                if j.join_type != JoinType::Inner {
                    return Err(unsupported(format!("{} JOIN", j.join_type)));
                }
                if j.on.is_empty() {
                    return Err(unsupported(
                        "a join without an equality condition (cross join)",
                    ));
                }
                if j.null_equality == NullEquality::NullEqualsNull {
                    return Err(unsupported("a join on IS NOT DISTINCT FROM"));
                }
                let left = self.node(&j.left)?;
                let right = self.node(&j.right)?;
                let left_keys =
                    j.on.iter()
                        .map(|(l, _)| self.phys(l, j.left.schema()))
                        .collect::<Result<_, _>>()?;
                let right_keys =
                    j.on.iter()
                        .map(|(_, r)| self.phys(r, j.right.schema()))
                        .collect::<Result<_, _>>()?;
                let filter = j
                    .filter
                    .as_ref()
                    .map(|f| self.phys(f, &j.schema))
                    .transpose()?;
                Ok(StreamNode::Join {
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
                Ok(StreamNode::Window {
                    input: Box::new(input),
                    time_col: w.time_col,
                    spec: w.spec,
                    schema: nullable(ext.node.schema().as_arrow()),
                })
            }
            LogicalPlan::Sort(_) => Err(unsupported("ORDER BY")),
            LogicalPlan::Limit(_) => Err(unsupported("LIMIT")),
            LogicalPlan::Window(_) => Err(unsupported("a window function (OVER)")),
            LogicalPlan::Union(_) => Err(unsupported("UNION")),
            LogicalPlan::Distinct(_) => Err(unsupported("SELECT DISTINCT")),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Err(unsupported(
                "a view over constant rows (VALUES, or no FROM)",
            )),
            other => Err(unsupported(format!(
                "this query shape ({})",
                other.display()
            ))),
        }
    }

    fn agg_call(
        &self,
        e: &Expr,
        input: &DFSchema,
        return_type: DataType,
    ) -> Result<AggCall, PlannerError> {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
            return Err(unsupported(format!("aggregate expression {e}")));
        };
        if params.filter.is_some() {
            return Err(unsupported("an aggregate FILTER clause"));
        }
        if !params.order_by.is_empty() {
            return Err(unsupported("an ordered aggregate"));
        }
        let name = func.name().to_lowercase();
        let kind = match name.as_str() {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "avg" | "mean" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            other => return Err(unsupported(format!("aggregate function {other}()"))),
        };
        let (arg, arg_type) = match params.args.as_slice() {
            [] if kind == AggKind::Count => (None, None),
            [a] => (Some(self.phys(a, input)?), Some(a.get_type(input)?)),
            _ => return Err(unsupported(format!("{name}() with several arguments"))),
        };
        // count(*) is bound as count(<non-null literal>): count every row.
        let kind = match (&kind, params.args.first()) {
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
            return_type,
        })
    }
}
