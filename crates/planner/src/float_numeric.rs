//! Comparisons of a float with a `numeric`, as Postgres makes them: the `numeric` is
//! read as a `double precision` (Postgres has no `float8 = numeric` operator; it casts
//! the `numeric`).
//!
//! DataFusion cast the float to `Decimal(30, 15)` instead: `WHERE watch_secs > 0.5`
//! failed on any row whose float passed 10^15 ("cannot cast to Decimal128(30, 15)"), a
//! `real` against a literal overflowed its decimal, and small or inexact floats compared
//! wrong (`'1e-20'::float8 > 0.0` was false, `0.1::float8 = 0.1` false). This rule casts
//! the `numeric` side (and a `real` side) to `double precision` before type coercion,
//! in comparisons, `BETWEEN` and `IN` lists. From dialect level 9 on
//! (`crate::dialect`): a view from before keeps its comparisons.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::ExprSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Between, InList};
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The first dialect level with these comparisons.
const LEVEL: u32 = 9;

/// The analyzer rule (see the module); it runs before type coercion.
#[derive(Debug)]
pub struct FloatNumeric {
    level: Arc<AtomicU32>,
}

impl FloatNumeric {
    /// The rule for a context whose dialect level is `level`.
    pub fn new(level: Arc<AtomicU32>) -> Self {
        FloatNumeric { level }
    }
}

fn comparison(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

impl AnalyzerRule for FloatNumeric {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if self.level.load(Ordering::SeqCst) < LEVEL {
            return Ok(plan);
        }
        crate::expr_rules::rewrite_expressions(
            plan,
            |p| matches!(p, LogicalPlan::Values(_)),
            |x| match x {
                Expr::BinaryExpr(BinaryExpr { op, .. }) => comparison(op),
                Expr::Between(_) | Expr::InList(_) => true,
                _ => false,
            },
            |e, schema| as_doubles(e, schema),
        )
    }

    fn name(&self) -> &str {
        "freshet_float_numeric"
    }
}

fn kind(e: &Expr, schema: &dyn ExprSchema) -> Option<Kind> {
    match e.get_type(schema).ok()? {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(Kind::Float),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Some(Kind::Numeric),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Float,
    Numeric,
}

/// `e` as a `double precision` unless it is one.
fn double(e: Expr, schema: &dyn ExprSchema) -> Expr {
    match e.get_type(schema) {
        Ok(DataType::Float64) => e,
        _ => Expr::Cast(Cast::new(Box::new(e), DataType::Float64)),
    }
}

/// Whether `operands` mix floats and `numeric`s.
fn mixed(operands: &[&Expr], schema: &dyn ExprSchema) -> bool {
    let kinds: Vec<Option<Kind>> = operands.iter().map(|e| kind(e, schema)).collect();
    kinds.contains(&Some(Kind::Float)) && kinds.contains(&Some(Kind::Numeric))
}

fn as_doubles(e: Expr, schema: &dyn ExprSchema) -> Result<Transformed<Expr>> {
    let doubles = |e: Box<Expr>| -> Box<Expr> {
        match kind(&e, schema) {
            Some(_) => Box::new(double(*e, schema)),
            None => e,
        }
    };
    Ok(match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if comparison(&op) && mixed(&[&left, &right], schema) =>
        {
            Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                left: doubles(left),
                op,
                right: doubles(right),
            }))
        }
        Expr::Between(b) if mixed(&[&b.expr, &b.low, &b.high], schema) => {
            Transformed::yes(Expr::Between(Between {
                expr: doubles(b.expr),
                negated: b.negated,
                low: doubles(b.low),
                high: doubles(b.high),
            }))
        }
        Expr::InList(l)
            if mixed(
                &std::iter::once(l.expr.as_ref())
                    .chain(l.list.iter())
                    .collect::<Vec<_>>(),
                schema,
            ) =>
        {
            Transformed::yes(Expr::InList(InList {
                expr: doubles(l.expr),
                list: l.list.into_iter().map(|x| *doubles(Box::new(x))).collect(),
                negated: l.negated,
            }))
        }
        e => Transformed::no(e),
    })
}
