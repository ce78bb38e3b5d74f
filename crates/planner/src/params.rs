//! Types of `$n` parameters DataFusion leaves open, inferred as Postgres infers them:
//!
//! - `$1::int[]`, `CAST($1 AS date)`: the cast's type;
//! - `x = ANY($1)`: an array of `x`'s type.
//!
//! A client that prepares such a statement (psycopg, node-postgres, pgjdbc) then learns
//! the type from ParameterDescription and sends a value of it, and the server decodes
//! what it gets (an array literal `{1,2,3}`) into that type.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{Cast, Placeholder, ScalarFunction, TryCast};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

/// `plan` with the types above given to its untyped placeholders.
pub fn infer_placeholder_types(plan: LogicalPlan) -> Result<LogicalPlan> {
    if !has_untyped(&plan)? {
        return Ok(plan);
    }
    plan.transform_up_with_subqueries(|node| {
        let schema = merge_schema(&node.inputs());
        node.map_expressions(|e| e.transform_up(|e| infer(e, &schema)))
    })
    .map(|t| t.data)
}

fn has_untyped(plan: &LogicalPlan) -> Result<bool> {
    Ok(plan.get_parameter_types()?.values().any(Option::is_none))
}

fn untyped(e: &Expr) -> bool {
    matches!(e, Expr::Placeholder(Placeholder { field: None, .. }))
}

fn typed(e: Expr, t: DataType) -> Expr {
    match e {
        Expr::Placeholder(Placeholder { id, .. }) => Expr::Placeholder(Placeholder {
            id,
            field: Some(Arc::new(Field::new("", t, true))),
        }),
        other => other,
    }
}

fn infer(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    Ok(match e {
        Expr::Cast(Cast { expr, field }) if untyped(&expr) => {
            let t = field.data_type().clone();
            Transformed::yes(Expr::Cast(Cast {
                expr: Box::new(typed(*expr, t)),
                field,
            }))
        }
        Expr::TryCast(TryCast { expr, field }) if untyped(&expr) => {
            let t = field.data_type().clone();
            Transformed::yes(Expr::TryCast(TryCast {
                expr: Box::new(typed(*expr, t)),
                field,
            }))
        }
        // `x = ANY($1)` is planned as `array_has($1, x)`.
        Expr::ScalarFunction(mut f)
            if f.name() == "array_has"
                && f.args.len() == 2
                && untyped(&f.args[0])
                && !untyped(&f.args[1]) =>
        {
            match f.args[1].get_type(schema) {
                Ok(elem) => {
                    let list = DataType::List(Arc::new(Field::new("item", elem, true)));
                    let arr = std::mem::replace(
                        &mut f.args[0],
                        Expr::Literal(datafusion::common::ScalarValue::Null, None),
                    );
                    f.args[0] = typed(arr, list);
                    Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                        func: f.func,
                        args: f.args,
                    }))
                }
                Err(_) => Transformed::no(Expr::ScalarFunction(f)),
            }
        }
        other => Transformed::no(other),
    })
}
