//! The shape the analyzer rules that rewrite single expressions share
//! (`crate::int_casts`, `crate::int_literals`, `crate::checked_arith`): every node of a
//! plan, subqueries included, bottom up; each expression that holds something to rewrite
//! rewritten bottom up, keeping the name it had, so that the plan's schema does not change
//! and the nodes above still find their columns.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// `plan` with `rewrite` applied bottom up to each expression that holds a node for
/// which `wanted` is true (most hold none: they, and their names, which are costly to
/// compute, are left alone). `rewrite` sees the schema of the node's inputs. Nodes for
/// which `skip` is true are left as they are.
pub fn rewrite_expressions(
    plan: LogicalPlan,
    skip: impl Fn(&LogicalPlan) -> bool,
    wanted: impl Fn(&Expr) -> bool,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        if skip(&plan) {
            return Ok(Transformed::no(plan));
        }
        let schema = merge_schema(&plan.inputs());
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|e| {
            if !e.exists(|x| Ok(wanted(x)))? {
                return Ok(Transformed::no(e));
            }
            let name = names.save(&e);
            let out = e.transform_up(|e| rewrite(e, &schema))?;
            Ok(if out.transformed {
                out.update_data(|e| name.restore(e))
            } else {
                out
            })
        })
    })
    .map(|t| t.data)
}
