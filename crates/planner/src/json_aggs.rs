//! Postgres' JSON aggregates, rewritten when a statement is parsed into calls that both
//! batch queries and views already run:
//!
//! - `jsonb_agg(x [ORDER BY …])` (and `json_agg`) is `to_jsonb(array_agg(x [ORDER BY …]))`:
//!   the values in order, NULLs as JSON `null`, NULL over no rows;
//! - `jsonb_object_agg(k, v)` (and `json_object_agg`) is
//!   `jsonb_object_of_arrays(array_agg(k ORDER BY k), array_agg(v ORDER BY k))`: both
//!   arrays list the rows in key order, so the `n`-th key goes with the `n`-th value (a
//!   key given twice keeps one of its values, as Postgres' `jsonb` keeps the last). With
//!   an `ORDER BY` or `DISTINCT` of its own the two arrays could list rows in different
//!   orders, so those are refused (`0A000`).
//!
//! A select item that is such a call keeps the aggregate's name as its column name.

use std::ops::ControlFlow;

use crate::PlannerError;

use crate::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments, Ident,
    ObjectName, OrderByExpr, OrderByOptions, VisitMut,
};

/// The internal function that pairs the key and value arrays.
pub const OBJECT_OF_ARRAYS: &str = "jsonb_object_of_arrays";

/// Which JSON aggregate `e` calls, if any (the kind, and the name as written).
fn json_aggregate(e: &Expr) -> Option<(&'static str, &crate::sqlparser::ast::Function)> {
    let Expr::Function(f) = e else {
        return None;
    };
    if f.name.0.len() != 1 {
        return None;
    }
    let name = f.name.0[0].as_ident()?.value.to_ascii_lowercase();
    let kind = match name.as_str() {
        "jsonb_agg" | "json_agg" => "jsonb_agg",
        "jsonb_object_agg" | "json_object_agg" => "jsonb_object_agg",
        _ => return None,
    };
    Some((kind, f))
}

/// `e` rewritten, if it is a JSON aggregate.
fn rewrite(e: &Expr) -> Result<Option<Expr>, PlannerError> {
    let Some((kind, f)) = json_aggregate(e) else {
        return Ok(None);
    };
    let FunctionArguments::List(list) = &f.args else {
        return Ok(None);
    };
    let mut inner = f.clone();
    inner.name = ObjectName::from(vec![Ident::new("array_agg")]);
    let call = |name: &str, args: Vec<Expr>| {
        let mut outer = crate::sqlparser::ast::Function {
            name: ObjectName::from(vec![Ident::new(name)]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::None,
            filter: None,
            null_treatment: None,
            over: None,
            within_group: Vec::new(),
        };
        outer.args = FunctionArguments::List(crate::sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        });
        Expr::Function(outer)
    };
    match kind {
        "jsonb_agg" => {
            if list.args.len() != 1 {
                return Ok(None);
            }
            Ok(Some(call("to_jsonb", vec![Expr::Function(inner)])))
        }
        _ => {
            let [key, value] = list.args.as_slice() else {
                return Ok(None);
            };
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(key_expr)) = key else {
                return Ok(None);
            };
            // Both arrays ordered by the key alone: an ORDER BY of its own (which decides
            // which value a repeated key keeps) or DISTINCT could list them in different
            // orders, pairing keys with other keys' values.
            if list.duplicate_treatment.is_some()
                || list
                    .clauses
                    .iter()
                    .any(|c| matches!(c, FunctionArgumentClause::OrderBy(_)))
            {
                return Err(PlannerError::Unsupported(
                    "jsonb_object_agg with an ORDER BY or DISTINCT of its own is not supported"
                        .into(),
                ));
            }
            let mut clauses = list.clauses.clone();
            clauses.push(FunctionArgumentClause::OrderBy(vec![OrderByExpr {
                expr: key_expr.clone(),
                options: OrderByOptions {
                    asc: None,
                    nulls_first: None,
                },
                with_fill: None,
            }]));
            let half = |arg: &FunctionArg| {
                let mut half = inner.clone();
                half.args = FunctionArguments::List(crate::sqlparser::ast::FunctionArgumentList {
                    duplicate_treatment: list.duplicate_treatment,
                    args: vec![arg.clone()],
                    clauses: clauses.clone(),
                });
                Expr::Function(half)
            };
            Ok(Some(call(OBJECT_OF_ARRAYS, vec![half(key), half(value)])))
        }
    }
}

/// Rewrites the JSON aggregates of `node` in place.
pub fn normalize<T: VisitMut>(node: &mut T) -> Result<(), PlannerError> {
    crate::naming::keep_call_names(node, |e| json_aggregate(e).map(|(_, f)| f));
    let flow = crate::sqlparser::ast::visit_expressions_mut(node, |e| match rewrite(e) {
        Ok(Some(call)) => {
            *e = call;
            ControlFlow::Continue(())
        }
        Ok(None) => ControlFlow::Continue(()),
        Err(err) => ControlFlow::Break(err),
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::sql_dialect::FreshetDialect;
    use crate::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::new(&FreshetDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .expect("parses");
        match super::normalize(&mut stmt) {
            Ok(()) => stmt.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn aggregates_become_array_aggs() {
        assert_eq!(
            rewritten("SELECT g, jsonb_agg(v ORDER BY id) FROM t GROUP BY g"),
            "SELECT g, to_jsonb(array_agg(v ORDER BY id)) AS \"jsonb_agg\" FROM t GROUP BY g"
        );
        assert_eq!(
            rewritten("SELECT json_object_agg(k, v) AS o FROM t"),
            "SELECT jsonb_object_of_arrays(array_agg(k ORDER BY k), array_agg(v ORDER BY k)) \
             AS o FROM t"
        );
        // An ORDER BY of its own could pair keys with other keys' values: refused.
        assert!(
            rewritten("SELECT jsonb_object_agg(k, v ORDER BY ts DESC) AS o FROM t")
                .starts_with("error: ")
        );
        assert_eq!(
            rewritten("SELECT json_agg(v) FROM t"),
            "SELECT to_jsonb(array_agg(v)) AS \"json_agg\" FROM t"
        );
    }
}
