//! `generate_series` and `unnest` as Postgres names and runs them.
//!
//! - In `FROM`, a call of one column is named after the function (`generate_series`,
//!   `unnest`), or after the call's alias when the alias lists no columns: in
//!   `SELECT g FROM generate_series(1, 3) g`, `g` is the column. DataFusion names the
//!   column `value` (or after the unnested expression) and would refuse `g`.
//! - In a select list, `generate_series(…)` returns a set, a row per value, as in
//!   Postgres; DataFusion's function of that name returns one array. The call is rewritten
//!   into `unnest(generate_series(…))`, named `generate_series`. An `unnest` already
//!   around the call is kept as the one unnest.
//!
//! Both when a statement is bound, from dialect level 5 on (`crate::dialect`): views
//! created before keep DataFusion's names and arrays.

use std::ops::ControlFlow;

use crate::naming::ident_name;
use crate::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, TableAlias,
    TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};

/// The one-column table functions named as Postgres names them.
const ONE_COLUMN: &[&str] = &["generate_series", "unnest"];

/// Rewrites `node`'s `generate_series` and `unnest` calls in place (see the module).
pub fn normalize<T: VisitMut>(node: &mut T) {
    let _ = node.visit(&mut NameColumns);
    crate::naming::keep_call_names(node, series_call);
    let _ = crate::sqlparser::ast::visit_expressions_mut(node, |e| {
        if let Some(inner) = unnest_of_unnest(e) {
            *e = inner;
        } else if series_call(e).is_some() {
            *e = unnest(e.clone());
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The call `e` is, if it is `generate_series(…)` outside any window.
fn series_call(e: &Expr) -> Option<&Function> {
    match e {
        Expr::Function(f) if f.over.is_none() && last_name(&f.name) == "generate_series" => Some(f),
        _ => None,
    }
}

/// `unnest(unnest(x))` as `unnest(x)` (and `unnest_outer(unnest(x))` as
/// `unnest_outer(x)`), when `x` is a `generate_series` call: the inner unnest is the one
/// this rewrite added, around a call that was already unnested.
fn unnest_of_unnest(e: &Expr) -> Option<Expr> {
    let inner = unnest_arg(e, &["unnest", "unnest_outer"])?;
    let series = unnest_arg(inner, &["unnest"])?;
    series_call(series)?;
    let mut outer = e.clone();
    if let Expr::Function(f) = &mut outer {
        if let FunctionArguments::List(list) = &mut f.args {
            list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(series.clone()))];
        }
    }
    Some(outer)
}

/// The one argument of a call of one of `names` (`unnest(…)`).
fn unnest_arg<'e>(e: &'e Expr, names: &[&str]) -> Option<&'e Expr> {
    let Expr::Function(f) = e else {
        return None;
    };
    if f.over.is_some() || !names.contains(&last_name(&f.name).as_str()) {
        return None;
    }
    match &f.args {
        FunctionArguments::List(list) => match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => Some(arg),
            _ => None,
        },
        _ => None,
    }
}

fn unnest(arg: Expr) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("unnest")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(crate::sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))],
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// A name's last part, folded (`pg_catalog.generate_series` → `generate_series`).
fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default()
}

/// Names the column of each one-column table function in `FROM`.
struct NameColumns;

impl VisitorMut for NameColumns {
    type Break = ();

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        let (function, alias) = match tf {
            TableFactor::Table {
                name,
                args: Some(_),
                alias,
                with_ordinality: false,
                ..
            }
            | TableFactor::Function {
                name,
                alias,
                with_ordinality: false,
                ..
            } => (last_name(name), alias),
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_ordinality: false,
                ..
            } if array_exprs.len() == 1 => ("unnest".to_string(), alias),
            _ => return ControlFlow::Continue(()),
        };
        if !ONE_COLUMN.contains(&function.as_str()) {
            return ControlFlow::Continue(());
        }
        let named = |name: &Ident| TableAliasColumnDef {
            name: name.clone(),
            data_type: None,
        };
        match alias {
            Some(a) if a.columns.is_empty() => a.columns = vec![named(&a.name)],
            Some(_) => {}
            None => {
                let name = Ident::new(function);
                *alias = Some(TableAlias {
                    explicit: true,
                    name: name.clone(),
                    columns: vec![named(&name)],
                    at: None,
                });
            }
        }
        ControlFlow::Continue(())
    }
}
