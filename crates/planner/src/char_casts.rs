//! An explicit cast to `varchar(n)` or `char(n)` cuts the text to `n` characters, as in
//! Postgres (`'abcdef'::varchar(3)` is `abc`); the length was ignored. From dialect level
//! 10 (`crate::dialect`): a view from before keeps whole strings.
//!
//! The cast becomes `left(CAST(x AS varchar), n)`; `char` alone is `char(1)`. A
//! `char(n)` is not padded with blanks (Postgres pads, and ignores the blanks when
//! comparing, in `||` and `length`; here it is the text without them).

use crate::sqlparser::ast::{CharacterLength, DataType as SqlType, Expr, Statement, Value};

/// The first dialect level that cuts.
pub const LEVEL: u32 = 10;

/// Rewrites the casts of `stmt` to a character type of a length (see the module). A
/// select item that is one keeps its Postgres name (`x::varchar(3)` is `x`).
pub fn rewrite(stmt: &mut Statement) {
    crate::naming::keep_names(stmt, |e| {
        is_cut(e).then(|| crate::naming::pg_column_name(e))
    });
    let _ = crate::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Cast {
            expr,
            data_type,
            array: false,
            format: None,
            kind,
        } = e
        {
            if let Some(n) = length(data_type) {
                let text = Expr::Cast {
                    kind: kind.clone(),
                    expr: expr.clone(),
                    data_type: SqlType::Varchar(None),
                    array: false,
                    format: None,
                };
                *e = left(text, n);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Whether `e` is (in parentheses) a cast this module rewrites.
fn is_cut(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_cut(inner),
        Expr::Cast {
            data_type,
            array: false,
            format: None,
            ..
        } => length(data_type).is_some(),
        _ => false,
    }
}

/// The length of a `varchar(n)` / `char(n)` type (`char` alone is `char(1)`).
fn length(t: &SqlType) -> Option<u64> {
    let l = match t {
        SqlType::Char(None) | SqlType::Character(None) => return Some(1),
        SqlType::Varchar(l)
        | SqlType::CharacterVarying(l)
        | SqlType::CharVarying(l)
        | SqlType::Char(l)
        | SqlType::Character(l) => l.as_ref()?,
        _ => return None,
    };
    match l {
        CharacterLength::IntegerLength { length, .. } => Some(*length),
        CharacterLength::Max => None,
    }
}

fn left(text: Expr, n: u64) -> Expr {
    crate::pg_catalog::rewrite::call(
        "left",
        vec![text, Expr::value(Value::Number(n.to_string(), false))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_dialect::FreshetDialect;
    use crate::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&FreshetDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn casts_to_a_length_cut() {
        assert_eq!(
            rewritten("SELECT 'abc'::varchar(2), CAST(x AS CHAR(3)), upper(x::char(2))"),
            "SELECT left('abc'::VARCHAR, 2) AS \"varchar\", left(CAST(x AS VARCHAR), 3) AS \"x\", \
             upper(left(x::VARCHAR, 2))"
        );
        assert_eq!(
            rewritten("SELECT x::varchar, x::text, x::char"),
            "SELECT x::VARCHAR, x::TEXT, left(x::VARCHAR, 1) AS \"x\""
        );
    }
}
