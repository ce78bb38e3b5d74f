//! An explicit cast to `varchar(n)` or `char(n)` cuts the text to `n` characters, as in
//! Postgres (`'abcdef'::varchar(3)` is `abc`); the length was ignored. From dialect level
//! 10 (`crate::dialect`): a view from before keeps whole strings.
//!
//! The cast becomes `left(CAST(x AS varchar), n)`; `char` alone is `char(1)`. A `char(n)` is not padded with blanks
//! (Postgres pads, and ignores the blanks when comparing, in `||` and `length`; here it
//! is the text without them).

use std::ops::ControlFlow;

use crate::sqlparser::ast::{
    CharacterLength, DataType as SqlType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Query, SelectItem, SetExpr,
    Statement, Value, VisitMut, VisitorMut,
};

/// The first dialect level that cuts.
pub const LEVEL: u32 = 10;

/// Rewrites the casts of `stmt` to a character type of a length (see the module). A
/// select item that is one keeps its Postgres name (`x::varchar(3)` is `x`).
pub fn rewrite(stmt: &mut Statement) {
    keep_names(stmt);
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

/// Names the unnamed select items that are such casts as Postgres names them.
fn keep_names(stmt: &mut Statement) {
    struct Names;
    impl VisitorMut for Names {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            name_items(q.body.as_mut());
            ControlFlow::Continue(())
        }
    }
    fn name_items(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) = item {
                        if is_cut(e) {
                            let name = crate::naming::pg_column_name(e);
                            *item = SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: Ident::with_quote('"', name),
                            };
                        }
                    }
                }
            }
            SetExpr::SetOperation { left, .. } => name_items(left),
            _ => {}
        }
    }
    let _ = stmt.visit(&mut Names);
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
    let arg = |x: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(x));
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("left")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                arg(text),
                arg(Expr::value(Value::Number(n.to_string(), false))),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
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
