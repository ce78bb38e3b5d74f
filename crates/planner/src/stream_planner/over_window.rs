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

/// Whether `wf`'s value for a row depends only on rows ordered before it and its peers:
/// its frame ends at the current row or before, and it is not a function of rows after
/// it or of the partition's size (`lead`, `ntile`, `percent_rank`, `cume_dist`).
fn looks_back(wf: &datafusion::logical_expr::expr::WindowFunction) -> bool {
    use datafusion::logical_expr::{WindowFrameBound, WindowFunctionDefinition};
    // A frame that ends at the current row, or at a non-negative distance before it.
    let frame_ends_here = match &wf.params.window_frame.end_bound {
        WindowFrameBound::CurrentRow => true,
        WindowFrameBound::Preceding(v) => v.is_null() || not_negative(v),
        WindowFrameBound::Following(_) => false,
    };
    // lag(x, n) with a negative n reads a later row.
    let lag_backward = wf.params.args.get(1).is_none_or(|n| match n {
        Expr::Literal(v, _) => not_negative(v),
        _ => false,
    });
    let forward = match &wf.fun {
        WindowFunctionDefinition::AggregateUDF(_) => false,
        WindowFunctionDefinition::WindowUDF(f) => matches!(
            f.name().to_ascii_lowercase().as_str(),
            "lead" | "ntile" | "percent_rank" | "cume_dist"
        ),
    };
    // Ranking functions ignore the frame; the others read it.
    let name = wf.fun.to_string().to_ascii_lowercase();
    let ranking = matches!(name.as_str(), "row_number" | "rank" | "dense_rank")
        || (name == "lag" && lag_backward);
    !forward && (ranking || (frame_ends_here && name != "lag"))
}

/// Whether a frame offset or `lag` distance is zero or more (numbers and intervals).
fn not_negative(v: &datafusion::common::ScalarValue) -> bool {
    use datafusion::common::ScalarValue as S;
    match v {
        S::Int8(Some(x)) => *x >= 0,
        S::Int16(Some(x)) => *x >= 0,
        S::Int32(Some(x)) => *x >= 0,
        S::Int64(Some(x)) => *x >= 0,
        S::UInt8(_) | S::UInt16(_) | S::UInt32(_) | S::UInt64(_) => true,
        S::Float32(Some(x)) => *x >= 0.0,
        S::Float64(Some(x)) => *x >= 0.0,
        S::Decimal128(Some(x), _, _) => *x >= 0,
        S::IntervalMonthDayNano(Some(i)) => i.months >= 0 && i.days >= 0 && i.nanoseconds >= 0,
        S::IntervalDayTime(Some(i)) => i.days >= 0 && i.milliseconds >= 0,
        S::IntervalYearMonth(Some(m)) => *m >= 0,
        S::DurationSecond(Some(x))
        | S::DurationMillisecond(Some(x))
        | S::DurationMicrosecond(Some(x))
        | S::DurationNanosecond(Some(x)) => *x >= 0,
        _ => false,
    }
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
        let looks_back = w.window_expr.iter().all(|e| match unaliased(e) {
            Expr::WindowFunction(wf) => looks_back(wf),
            _ => false,
        });
        Ok(StreamNode::OverWindow {
            input: Box::new(self.node(&w.input)?),
            partition,
            order,
            funcs,
            schema: nullable(w.schema.as_arrow()),
            looks_back,
        })
    }
}
