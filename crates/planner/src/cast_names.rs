//! Aggregates and window functions over a column and over a cast of it, side by side:
//! `SELECT max(ts), max(ts::date)`, `sum(n), sum(n::bigint)`, `lag(x) OVER w, lag(x::text)
//! OVER w`.
//!
//! DataFusion names a cast after what it casts, so both aggregates are named
//! `max(t.ts)`, and it refused the query ("duplicate unqualified field name"); Postgres
//! runs it. When a statement fails so, it is planned again with each cast inside an
//! aggregate's (or window function's) arguments wrapped in `__freshet_named(cast, 'its SQL text')`, which
//! returns its first argument as it is and gives the aggregate a name of its own. The
//! result columns keep their names (`crate::naming`). Only statements that failed are
//! planned this way.

use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    Statement, Value,
};

/// The wrapper's name.
const NAMED: &str = "__freshet_named";

/// Registers the wrapper in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Named {
        signature: Signature::any(2, Volatility::Immutable),
    }));
}

/// Whether `e` is DataFusion's refusal of two columns of one name.
pub fn is_duplicate_name(e: &DataFusionError) -> bool {
    use datafusion::common::SchemaError;
    match e {
        DataFusionError::SchemaError(s, _) => matches!(
            s.as_ref(),
            SchemaError::DuplicateUnqualifiedField { .. }
                | SchemaError::DuplicateQualifiedField { .. }
        ),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            is_duplicate_name(inner)
        }
        DataFusionError::Collection(errs) => errs.iter().any(is_duplicate_name),
        // The same, for window functions over a column and a cast of it ("windows" or
        // "Projections require unique expression names").
        DataFusionError::Plan(m) => m.contains("require unique expression names"),
        _ => false,
    }
}

/// Wraps each cast of something other than a literal inside the arguments of an
/// aggregate or window function of `ctx` (see the module); whether there was one.
pub fn name_casts(ctx: &SessionContext, stmt: &mut Statement) -> bool {
    let state = ctx.state();
    let (aggregates, windows) = (state.aggregate_functions(), state.window_functions());
    let is_aggregate = |f: &Function| {
        let name = f.name.to_string().to_lowercase();
        f.name.0.len() == 1
            && (aggregates.contains_key(&name) || (f.over.is_some() && windows.contains_key(&name)))
    };
    let mut changed = false;
    let _ = crate::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Function(f) = e {
            if is_aggregate(f) {
                if let FunctionArguments::List(list) = &mut f.args {
                    for arg in &mut list.args {
                        let (FunctionArg::Unnamed(FunctionArgExpr::Expr(x))
                        | FunctionArg::Named {
                            arg: FunctionArgExpr::Expr(x),
                            ..
                        }) = arg
                        else {
                            continue;
                        };
                        changed |= wrap_casts(x);
                    }
                    // An ORDER BY inside the call names its casts alike (a DISTINCT
                    // aggregate's order must be among its arguments).
                    for clause in &mut list.clauses {
                        if let FunctionArgumentClause::OrderBy(order) = clause {
                            for o in order {
                                changed |= wrap_casts(&mut o.expr);
                            }
                        }
                    }
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

/// Wraps the casts in `e` (not those of a literal); whether there was one.
fn wrap_casts(e: &mut Expr) -> bool {
    let mut changed = false;
    let _ = crate::sqlparser::ast::visit_expressions_mut(e, |x| {
        if let Expr::Cast { expr, .. } = x {
            if !matches!(expr.as_ref(), Expr::Value(_)) {
                let label = x.to_string();
                let cast = std::mem::replace(x, Expr::value(Value::Null));
                *x = named(cast, label);
                changed = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

fn named(e: Expr, label: String) -> Expr {
    crate::pg_catalog::rewrite::call(
        NAMED,
        vec![e, Expr::value(Value::SingleQuotedString(label))],
    )
}

/// `__freshet_named(value, label)`: `value`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Named {
    signature: Signature,
}

impl ScalarUDFImpl for Named {
    fn name(&self) -> &str {
        NAMED
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("{NAMED} takes two arguments")))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal(format!("{NAMED} takes two arguments")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_casts_inside_aggregates_are_wrapped() {
        let ctx = crate::context::new_session();
        let sql = "SELECT n::text, max(ts::date), sum(n::bigint * 2), sum('1'::int), count(*) \
                   FROM t GROUP BY n::text";
        let dialect = crate::sql_dialect::FreshetDialect {};
        let mut stmt = crate::sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .expect("parses")
            .remove(0);
        assert!(name_casts(&ctx, &mut stmt));
        let text = stmt.to_string();
        assert!(
            text.contains("max(__freshet_named(ts::DATE, 'ts::DATE'))"),
            "{text}"
        );
        assert!(
            text.contains("sum(__freshet_named(n::BIGINT, 'n::BIGINT') * 2)"),
            "{text}"
        );
        assert!(text.contains("sum('1'::INT)"), "{text}");
        assert!(text.starts_with("SELECT n::TEXT,"), "{text}");
        assert!(text.ends_with("GROUP BY n::TEXT"), "{text}");
    }

    #[test]
    fn window_functions_over_a_column_and_its_cast_plan() {
        use datafusion::arrow::datatypes::{Field, Schema};
        let ctx = crate::context::new_session();
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("g", DataType::Int32, true),
            Field::new("x", DataType::Int32, true),
        ]));
        crate::context::register(&ctx, "t", schema, vec![]).expect("registers");
        for sql in [
            "SELECT sum(x) OVER (PARTITION BY g), sum(x::bigint) OVER (PARTITION BY g) FROM t",
            "SELECT lag(x) OVER (ORDER BY id), lag(x::text) OVER (ORDER BY id) FROM t",
        ] {
            let stmt = crate::parser::parse(sql).expect("parses").remove(0);
            let crate::parser::Stmt::Sql(stmt) = stmt else {
                panic!("{sql}")
            };
            let plan = futures::executor::block_on(crate::context::bind(&ctx, &stmt));
            assert!(plan.is_ok(), "{sql}: {:?}", plan.err());
        }
    }
}
