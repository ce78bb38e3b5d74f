//! Integer literals in arithmetic typed as Postgres types them.
//!
//! Postgres types an integer literal `integer` when it fits, `bigint` otherwise, so
//! `n + 1` of an `integer` column `n` is an `integer` (and fails past 2147483647, see
//! `crate::checked_arith`), and `2147483647 + 1` fails. DataFusion types every integer
//! literal `bigint`, which made `n + 1` a `bigint`. The analyzer rule [`IntLiterals`]
//! runs before type coercion and types an integer literal that fits as `integer` when it
//! is an operand of `+ - * / %` whose other operand is an `integer` or `smallint` (or
//! another such literal). From dialect level 6 on (`crate::dialect`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The first dialect level with `integer` literals in arithmetic.
const LEVEL: u32 = 6;

/// The analyzer rule (see the module).
#[derive(Debug)]
pub struct IntLiterals {
    level: Arc<AtomicU32>,
}

impl IntLiterals {
    /// The rule for a context whose dialect level is `level`.
    pub fn new(level: Arc<AtomicU32>) -> Self {
        IntLiterals { level }
    }
}

fn arithmetic(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
    )
}

impl AnalyzerRule for IntLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if self.level.load(Ordering::SeqCst) < LEVEL {
            return Ok(plan);
        }
        // `VALUES` keeps the types it was planned with (type coercion does not
        // recompute them), so its literals stay `bigint`. A rewritten expression keeps
        // its name (`n + Int64(1)`), which the nodes above refer to.
        crate::expr_rules::rewrite_expressions(
            plan,
            |p| matches!(p, LogicalPlan::Values(_)),
            |x| matches!(x, Expr::BinaryExpr(BinaryExpr { op, .. }) if arithmetic(op)),
            |e, schema| narrow(e, schema),
        )
    }

    fn name(&self) -> &str {
        "freshet_int_literals"
    }
}

/// `v` as an `integer` literal, if `e` is a `bigint` literal whose value fits.
fn as_int4(e: &Expr) -> Option<Expr> {
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), meta) => i32::try_from(*v)
            .ok()
            .map(|v| Expr::Literal(ScalarValue::Int32(Some(v)), meta.clone())),
        _ => None,
    }
}

/// Whether `e` is, or becomes with [`as_int4`], an `integer` or `smallint` value.
fn small(e: &Expr, schema: &dyn ExprSchema) -> bool {
    as_int4(e).is_some()
        || e.get_type(schema)
            .is_ok_and(|t| matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32))
}

fn narrow(e: Expr, schema: &dyn ExprSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    if !arithmetic(op) {
        return Ok(Transformed::no(e));
    }
    let l = as_int4(left).filter(|_| small(right, schema));
    let r = as_int4(right).filter(|_| small(left, schema));
    if l.is_none() && r.is_none() {
        return Ok(Transformed::no(e));
    }
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
        left: Box::new(l.unwrap_or_else(|| left.as_ref().clone())),
        op: *op,
        right: Box::new(r.unwrap_or_else(|| right.as_ref().clone())),
    })))
}
