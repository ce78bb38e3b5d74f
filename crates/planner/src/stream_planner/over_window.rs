//! Window functions in views. A single ranking function whose result a filter bounds
//! (`WHERE rank <= 10`) is a top-N, which keeps only the first ranks in view; any other
//! set of window functions over one `PARTITION BY … ORDER BY …` is an over-window node,
//! which evaluates DataFusion's own window functions per partition (`StreamNode::OverWindow`).

use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, Window};
use freshet_engine::plan::{RankKind, StreamNode};

use super::{nullable, top_n, unsupported, StreamPlanner};
use crate::PlannerError;

/// `e` without its aliases.
fn unaliased(mut e: &Expr) -> &Expr {
    while let Expr::Alias(a) = e {
        e = a.expr.as_ref();
    }
    e
}

impl StreamPlanner<'_> {
    /// `row_number()`, `rank()` or `dense_rank()` filtered to its first ranks, as a
    /// top-N; `None` for other window functions.
    pub(super) fn ranked_top_n(&self, w: &Window) -> Result<Option<StreamNode>, PlannerError> {
        let [e] = w.window_expr.as_slice() else {
            return Ok(None);
        };
        let Expr::WindowFunction(wf) = unaliased(e) else {
            return Ok(None);
        };
        let kind = match wf.fun.to_string().to_lowercase().as_str() {
            "row_number" => RankKind::RowNumber,
            "rank" => RankKind::Rank,
            "dense_rank" => RankKind::DenseRank,
            _ => return Ok(None),
        };
        let Some(limit) = self
            .rank_limits
            .borrow()
            .get(&(w as *const _ as usize))
            .copied()
        else {
            return Ok(None);
        };
        let input = self.node(&w.input)?;
        let partition = wf
            .params
            .partition_by
            .iter()
            .map(|e| self.phys(e, w.input.schema()))
            .collect::<Result<_, _>>()?;
        let order = self.sort_keys(&wf.params.order_by, w.input.schema())?;
        Ok(Some(top_n(
            input,
            partition,
            order,
            kind,
            0,
            limit,
            true,
            Some(nullable(w.schema.as_arrow())),
        )))
    }

    /// Window functions sharing one `PARTITION BY … ORDER BY …` (their frames may differ).
    pub(super) fn over_window(&self, w: &Window) -> Result<StreamNode, PlannerError> {
        let schema = w.input.schema();
        let mut first = None;
        let mut funcs = Vec::new();
        for e in &w.window_expr {
            let Expr::WindowFunction(wf) = unaliased(e) else {
                return Err(unsupported(format!("window expression {e}")));
            };
            let p = &wf.params;
            // Arguments and filters: no now(), nothing volatile (as everywhere in a view).
            for a in p.args.iter().chain(p.filter.as_deref()) {
                self.phys(a, schema)?;
            }
            match first {
                None => first = Some(wf),
                Some(f)
                    if f.params.partition_by == p.partition_by
                        && f.params.order_by == p.order_by => {}
                Some(_) => {
                    return Err(unsupported(
                        "window functions over different PARTITION BY or ORDER BY in one \
                         SELECT of a view (compute them in separate subqueries and join)",
                    ))
                }
            }
            funcs.push(datafusion::physical_planner::create_window_expr(
                e,
                schema,
                self.ctx.state().execution_props(),
                &PhysicalPlanningContext::default(),
            )?);
        }
        let Some(first) = first else {
            return Err(unsupported("a window node without window functions"));
        };
        let partition = first
            .params
            .partition_by
            .iter()
            .map(|e| self.phys(e, schema))
            .collect::<Result<_, _>>()?;
        let order = self.sort_keys(&first.params.order_by, schema)?;
        Ok(StreamNode::OverWindow {
            input: Box::new(self.node(&w.input)?),
            partition,
            order,
            funcs,
            schema: nullable(w.schema.as_arrow()),
        })
    }
}
