//! `GROUPING SETS`, `ROLLUP` and `CUBE` in views: one aggregate per grouping set, each
//! projected onto the aggregate's output (its columns, NULL for the expressions the set
//! leaves out, and `__grouping_id` as DataFusion computes it), under a `UNION ALL`. Each
//! branch is an ordinary (sharded) aggregate with state of its own; rows of different
//! sets differ in `__grouping_id`, so the union holds each once (twice for a set written
//! twice, as in Postgres).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Aggregate, Expr, GroupingSet};
use datafusion::physical_expr::expressions::{Column, Literal};
use freshet_engine::plan::{PhysExpr, StreamNode};

use super::{nullable, unsupported, StreamPlanner};
use crate::PlannerError;

/// More sets than this (a `CUBE` of more than 6 expressions) are refused: each is an
/// aggregate with state of its own.
const MAX_SETS: usize = 64;

/// The grouping sets of `gs`, each as a mask over its distinct expressions (`true`:
/// left out, NULL in the output).
fn sets(gs: &GroupingSet, distinct: &[&Expr]) -> Result<Vec<Vec<bool>>, PlannerError> {
    let n = distinct.len();
    Ok(match gs {
        GroupingSet::Rollup(_) => (0..=n)
            .rev()
            .map(|k| (0..n).map(|i| i >= k).collect())
            .collect(),
        GroupingSet::Cube(_) => {
            if n > 6 {
                return Err(unsupported(format!(
                    "CUBE of {n} expressions in a view ({} grouping sets, at most {MAX_SETS})",
                    1u64 << n.min(63)
                )));
            }
            (0..1usize << n)
                .map(|m| (0..n).map(|i| m & (1 << (n - 1 - i)) != 0).collect())
                .collect()
        }
        GroupingSet::GroupingSets(groups) => groups
            .iter()
            .map(|g| distinct.iter().map(|e| !g.contains(e)).collect())
            .collect(),
    })
}

impl StreamPlanner<'_> {
    /// The stream of an aggregate whose one grouping expression is `gs`.
    pub(super) fn grouping_sets(
        &self,
        a: &Aggregate,
        gs: &GroupingSet,
    ) -> Result<StreamNode, PlannerError> {
        let input_schema = a.input.schema();
        let distinct = gs.distinct_expr();
        let masks = sets(gs, &distinct)?;
        if masks.len() > MAX_SETS {
            return Err(unsupported(format!(
                "{} grouping sets in a view (at most {MAX_SETS})",
                masks.len()
            )));
        }
        let out = a.schema.as_arrow();
        let n = distinct.len();
        let id_type = out.field(n).data_type().clone();
        let input = self.node(&a.input)?;
        let append_only = self.append_only(&input);
        let agg_fields: Vec<Field> = (0..a.aggr_expr.len())
            .map(|i| out.field(n + 1 + i).clone())
            .collect();
        let mut branches = Vec::with_capacity(masks.len());
        for (s, mask) in masks.iter().enumerate() {
            // Postgres (and DataFusion) keep a set written twice twice; DataFusion tells
            // the copies apart by an ordinal above the mask's bits.
            let ordinal = masks[..s].iter().filter(|m| *m == mask).count() as u64;
            let bits = mask
                .iter()
                .fold(0u64, |acc, &left_out| (acc << 1) | u64::from(left_out));
            let id = ScalarValue::UInt64(Some(bits | (ordinal << n))).cast_to(&id_type)?;
            let kept: Vec<usize> = (0..n).filter(|&i| !mask[i]).collect();
            let group = kept
                .iter()
                .map(|&i| self.phys(distinct[i], input_schema))
                .collect::<Result<Vec<_>, _>>()?;
            let mut aggs = Vec::with_capacity(a.aggr_expr.len());
            let in_set: Vec<&Expr> = kept.iter().map(|&i| distinct[i]).collect();
            for (e, f) in a.aggr_expr.iter().zip(&agg_fields) {
                let ty = f.data_type().clone();
                aggs.push(self.agg_call(e, input_schema, &in_set, ty, append_only)?);
            }
            let mut fields: Vec<Field> = kept.iter().map(|&i| out.field(i).clone()).collect();
            fields.extend(agg_fields.iter().cloned());
            let agg_schema = nullable(&Schema::new(fields));
            let agg = StreamNode::Aggregate {
                input: Box::new(input.clone()),
                group,
                aggs,
                schema: agg_schema.clone(),
                emit_on_close: self.emit_on_close,
            };
            // The aggregate's output: each distinct expression (or NULL), the set's id,
            // the aggregates.
            let mut exprs: Vec<PhysExpr> = Vec::with_capacity(n + 1 + agg_fields.len());
            for i in 0..n {
                exprs.push(match kept.iter().position(|&k| k == i) {
                    Some(p) => Arc::new(Column::new(agg_schema.field(p).name(), p)),
                    None => Arc::new(Literal::new(ScalarValue::try_from(
                        out.field(i).data_type(),
                    )?)),
                });
            }
            exprs.push(Arc::new(Literal::new(id.clone())));
            for j in 0..agg_fields.len() {
                let p = kept.len() + j;
                exprs.push(Arc::new(Column::new(agg_schema.field(p).name(), p)));
            }
            branches.push(StreamNode::Project {
                input: Box::new(agg),
                exprs,
                schema: nullable(out),
            });
        }
        Ok(StreamNode::Union {
            inputs: branches,
            schema: nullable(out),
        })
    }
}
