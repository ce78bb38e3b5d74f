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
    /// The changelog of a table or another view.
    Source {
        relation: RelationId,
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
    },
    /// Inner equi-join; output columns are the left columns then the right columns.
    Join {
        left: Box<StreamNode>,
        right: Box<StreamNode>,
        left_keys: Vec<PhysExpr>,
        right_keys: Vec<PhysExpr>,
        /// A residual condition over the joined row.
        filter: Option<PhysExpr>,
        schema: SchemaRef,
    },
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
}

#[derive(Clone, Debug)]
pub struct AggCall {
    pub kind: AggKind,
    /// The argument (absent for `count(*)`).
    pub arg: Option<PhysExpr>,
    pub arg_type: Option<DataType>,
    pub distinct: bool,
    pub return_type: DataType,
}

impl StreamNode {
    pub fn schema(&self) -> SchemaRef {
        match self {
            StreamNode::Source { schema, .. }
            | StreamNode::Project { schema, .. }
            | StreamNode::Aggregate { schema, .. }
            | StreamNode::Join { schema, .. } => schema.clone(),
            StreamNode::Filter { input, .. } => input.schema(),
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
            StreamNode::Filter { input, .. }
            | StreamNode::Project { input, .. }
            | StreamNode::Aggregate { input, .. } => input.visit_sources(out),
            StreamNode::Join { left, right, .. } => {
                left.visit_sources(out);
                right.visit_sources(out);
            }
        }
    }

    fn fmt_indent(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        match self {
            StreamNode::Source { relation, .. } => {
                writeln!(f, "{pad}StreamSource: relation={relation}")
            }
            StreamNode::Filter { input, predicate } => {
                writeln!(f, "{pad}StreamFilter: {predicate}")?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Project { input, exprs, .. } => {
                let e: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                writeln!(f, "{pad}StreamProject: [{}]", e.join(", "))?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Aggregate {
                input, group, aggs, ..
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
                    if aggs
                        .iter()
                        .any(|a| a.distinct || matches!(a.kind, AggKind::Min | AggKind::Max))
                    {
                        ", value multisets"
                    } else {
                        ""
                    }
                )?;
                input.fmt_indent(f, depth + 1)
            }
            StreamNode::Join {
                left,
                right,
                left_keys,
                right_keys,
                filter,
                ..
            } => {
                let on: Vec<String> = left_keys
                    .iter()
                    .zip(right_keys)
                    .map(|(l, r)| format!("{l} = {r}"))
                    .collect();
                write!(f, "{pad}StreamHashJoin: on=[{}]", on.join(", "))?;
                if let Some(fl) = filter {
                    write!(f, " filter={fl}")?;
                }
                writeln!(f, " state=(left rows, right rows)")?;
                left.fmt_indent(f, depth + 1)?;
                right.fmt_indent(f, depth + 1)
            }
        }
    }
}

impl fmt::Display for StreamNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_indent(f, 0)
    }
}
