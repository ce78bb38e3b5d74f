//! Where a set-returning function may stand: Postgres refuses one inside `CASE` or
//! `COALESCE` (`0A000`), whose branches it would otherwise run for every row whether
//! taken or not. DataFusion took them and returned the set's rows for each branch's
//! value, an answer Postgres never gives. From dialect level 9 on (`crate::dialect`): a
//! view from before is planned as it was.

use datafusion::error::DataFusionError;

use crate::pg_catalog::SqlStateError;
use crate::sqlparser::ast::{Expr, Statement, Value};

/// The level the check starts at.
pub const LEVEL: u32 = 9;

/// The functions that return a set of rows in a select list.
const SET_RETURNING: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "unnest",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_object_keys",
    "json_object_keys",
    "jsonb_each",
    "jsonb_each_text",
    "json_each",
    "json_each_text",
    "jsonb_path_query",
    "regexp_matches",
    "regexp_split_to_table",
    "string_to_table",
];

/// `0A000` if `stmt` has a set-returning function inside a `CASE` or a `COALESCE` (not
/// counting those in subqueries there, which are queries of their own).
pub fn check(stmt: &Statement) -> Result<(), DataFusionError> {
    let mut found: Option<&'static str> = None;
    let _ = crate::sqlparser::ast::visit_expressions(stmt, |e| {
        let place = match e {
            Expr::Case { .. } => Some("CASE"),
            Expr::Function(f) if is_named(f, "coalesce") => Some("COALESCE"),
            _ => None,
        };
        if let Some(place) = place {
            if has_set_function(e) {
                found = Some(place);
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    match found {
        None => Ok(()),
        Some(place) => Err(DataFusionError::External(Box::new(SqlStateError {
            code: "0A000",
            message: format!("set-returning functions are not allowed in {place}"),
            detail: None,
            hint: Some(
                "You might be able to move the set-returning function into a LATERAL FROM \
                 item."
                    .into(),
            ),
        }))),
    }
}

fn is_named(f: &crate::sqlparser::ast::Function, name: &str) -> bool {
    f.over.is_none()
        && f.name.0.len() == 1
        && f.name.0[0]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case(name))
}

/// Whether `e` calls a set-returning function outside its subqueries.
fn has_set_function(e: &Expr) -> bool {
    let mut e = e.clone();
    // A subquery is a query of its own: what it returns is one value here.
    let _ = crate::sqlparser::ast::visit_expressions_mut(&mut e, |inner| {
        if matches!(
            inner,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) {
            *inner = Expr::Value(Value::Null.into());
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    crate::sqlparser::ast::visit_expressions(&e, |inner| match inner {
        Expr::Function(f) if SET_RETURNING.iter().any(|n| is_named(f, n)) => {
            std::ops::ControlFlow::Break(())
        }
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(sql: &str) -> Result<(), String> {
        let stmt = crate::parser::parse(sql).expect("parses").remove(0);
        let crate::parser::Stmt::Sql(stmt) = stmt else {
            panic!("{sql}")
        };
        check(stmt.as_ref()).map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_sets_in_case_and_coalesce() {
        for sql in [
            "SELECT CASE WHEN true THEN generate_series(1, 3) END",
            "SELECT CASE x WHEN 1 THEN 0 ELSE unnest(a) END FROM t",
            "SELECT coalesce(unnest(ARRAY[1, 2]), 0)",
            "SELECT 1 + COALESCE(0, jsonb_array_elements(j)::int) FROM t",
        ] {
            let e = checked(sql).expect_err(sql);
            assert!(
                e.contains("set-returning functions are not allowed in"),
                "{e}"
            );
        }
        for sql in [
            "SELECT generate_series(1, 3), CASE WHEN true THEN 1 END",
            "SELECT CASE WHEN true THEN (SELECT max(g) FROM generate_series(1, 3) g) END",
            "SELECT coalesce((SELECT unnest(ARRAY[1]) LIMIT 1), 0)",
            "SELECT coalesce(x, 0) FROM t, unnest(ARRAY[1]) u",
        ] {
            assert_eq!(checked(sql), Ok(()), "{sql}");
        }
    }
}
