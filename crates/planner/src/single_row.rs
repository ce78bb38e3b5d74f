//! Correlated scalar subqueries that are not aggregates, as Postgres runs them:
//!
//! ```sql
//! SELECT p.id, (SELECT u.name FROM users u WHERE u.id = p.user_id) FROM plays p
//! SELECT p.id, (SELECT i.row_name FROM impressions i WHERE i.user_id = p.user_id
//!               AND i.ts <= p.ts ORDER BY i.ts DESC LIMIT 1) FROM plays p
//! ```
//!
//! DataFusion decorrelates a scalar subquery only when it is an aggregate, so each is
//! written as one before binding (in queries and views alike):
//! - `… ORDER BY o LIMIT 1` → `first_value(e ORDER BY o)` (the first row's value; no row:
//!   NULL), and `… LIMIT 1` without an order → `first_value(e ORDER BY e)` (some row's);
//! - otherwise (no `LIMIT`, or a larger one) → `__freshet_one_row((SELECT
//!   named_struct('n', count(*), 'v', first_value(e ORDER BY e)) …))`: the subquery's
//!   count and value travel together through the join DataFusion makes of it, and the
//!   check after it gives the value, or Postgres' error `21000` "more than one row
//!   returned by a subquery used as an expression" for an outer row more than one row
//!   matched (only for outer rows: a key no outer row has may have many).
//!
//! Only a subquery that reads an outer relation is taken (DataFusion runs an
//! uncorrelated one itself): a column qualified by a name none of its relations goes by,
//! or an unqualified one its relations do not have. It must be one plain `SELECT` of one
//! expression without aggregates, grouping, `DISTINCT`, `OFFSET` or `WITH`. An inequality
//! correlation then goes through [`crate::scalar_subqueries`].

use std::ops::ControlFlow;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::naming::ident_name;
use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    visit_expressions, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, OrderByKind, Query, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins,
    Value, VisitMut, VisitorMut,
};
use crate::sqlparser::parser::Parser;

/// The check a rewritten subquery's value goes through.
pub const ONE_ROW: &str = "__freshet_one_row";

/// Postgres' message for a scalar subquery that returned more than one row.
pub const MORE_THAN_ONE_ROW: &str =
    "more than one row returned by a subquery used as an expression";

/// Registers [`ONE_ROW`] in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(OneRow {
        signature: Signature::any(1, Volatility::Immutable),
    }));
}

/// `__freshet_one_row(s)`: field `v` of struct `s`, or an error where its row count `n`
/// is above one.
#[derive(Debug, PartialEq, Eq, Hash)]
struct OneRow {
    signature: Signature,
}

impl ScalarUDFImpl for OneRow {
    fn name(&self) -> &str {
        ONE_ROW
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::Struct(fields)) => fields
                .iter()
                .find(|f| f.name() == "v")
                .map(|f| f.data_type().clone())
                .ok_or_else(|| DataFusionError::Internal(format!("{ONE_ROW}: no field v"))),
            other => Err(DataFusionError::Internal(format!(
                "{ONE_ROW} of {other:?}: a struct expected"
            ))),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::StructArray;
        use datafusion::arrow::compute::{is_null, nullif};
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{ONE_ROW} takes one argument"
            )));
        };
        let array = arg.to_array(args.number_rows)?;
        let Some(rows) = array.as_any().downcast_ref::<StructArray>() else {
            return Err(DataFusionError::Internal(format!(
                "{ONE_ROW}: not a struct"
            )));
        };
        let (Some(n), Some(v)) = (rows.column_by_name("n"), rows.column_by_name("v")) else {
            return Err(DataFusionError::Internal(format!(
                "{ONE_ROW}: fields n, v expected"
            )));
        };
        let n = datafusion::arrow::compute::cast(n, &DataType::Int64)?;
        let counts = n.as_primitive::<Int64Type>();
        let many =
            (0..rows.len()).any(|i| rows.is_valid(i) && counts.is_valid(i) && counts.value(i) > 1);
        if many {
            return Err(DataFusionError::Execution(MORE_THAN_ONE_ROW.into()));
        }
        // A NULL struct (no row matched) is a NULL value.
        let value = nullif(v, &is_null(&array)?)?;
        Ok(match arg {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&value, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(value),
        })
    }
}

/// Rewrites the correlated non-aggregate scalar subqueries of `stmt` (see the module
/// documentation).
pub async fn rewrite(ctx: &SessionContext, stmt: &mut Statement) {
    // The column names of each scalar subquery's relations, in the order the rewrite
    // below meets the subqueries (the walk cannot await): an unqualified column they do
    // not have is an outer one.
    let mut froms: Vec<Option<Vec<TableWithJoins>>> = Vec::new();
    let _ = crate::sqlparser::ast::visit_expressions(&*stmt, |e| {
        if let Expr::Subquery(q) = e {
            froms.push(crate::subquery_scope::from_of(q));
        }
        ControlFlow::<()>::Continue(())
    });
    if froms.is_empty() {
        return;
    }
    let columns = crate::subquery_scope::columns_of_each(ctx, froms).await;
    struct R<'a> {
        ctx: &'a SessionContext,
        columns: std::vec::IntoIter<Option<Vec<String>>>,
    }
    impl VisitorMut for R<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Subquery(q) = e {
                let columns = self.columns.next().flatten();
                if let Some(rewritten) = aggregated(self.ctx, q, columns.as_deref()) {
                    *e = rewritten;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut R {
        ctx,
        columns: columns.into_iter(),
    });
}

/// The expression that replaces subquery `q` (its relations have `columns`, when they
/// could be planned), if it is one this module takes.
fn aggregated(ctx: &SessionContext, q: &Query, columns: Option<&[String]>) -> Option<Expr> {
    if q.with.is_some() || q.fetch.is_some() {
        return None;
    }
    // `LIMIT 1` takes the first row; a larger limit changes nothing (two rows fail).
    let limit_one = match &q.limit_clause {
        None => false,
        Some(LimitClause::LimitOffset {
            limit: Some(Expr::Value(v)),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => match &v.value {
            Value::Number(n, _) => match n.parse::<u64>() {
                Ok(1) => true,
                Ok(n) if n > 1 => false,
                _ => return None,
            },
            _ => return None,
        },
        Some(_) => return None,
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if s.distinct.is_some()
        || grouped
        || s.having.is_some()
        || s.qualify.is_some()
        || !s.named_window.is_empty()
        || s.from.is_empty()
    {
        return None;
    }
    let (e, alias) = match s.projection.as_slice() {
        [SelectItem::UnnamedExpr(e)] => (e, None),
        [SelectItem::ExprWithAlias { expr, alias }] => (expr, Some(alias)),
        _ => return None,
    };
    if has_aggregate(ctx, e) || !reads_outer(q, columns) {
        return None;
    }
    let order: Option<Vec<String>> = match &q.order_by {
        Some(ob) if limit_one => match &ob.kind {
            OrderByKind::Expressions(exprs) if ob.interpolate.is_none() => {
                let mut out = Vec::with_capacity(exprs.len());
                for o in exprs {
                    if o.with_fill.is_some() {
                        return None;
                    }
                    // A select-list alias or position names the expression itself.
                    let names_it = match &o.expr {
                        Expr::Identifier(i) => {
                            alias.is_some_and(|a| ident_name(a) == ident_name(i))
                        }
                        Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n == "1"),
                        _ => false,
                    };
                    let mut o = o.clone();
                    if names_it {
                        o.expr = e.clone();
                    }
                    out.push(o.to_string());
                }
                Some(out)
            }
            _ => return None,
        },
        _ => None,
    };
    let value = match (limit_one, order) {
        (true, Some(order)) => format!("first_value({e} ORDER BY {})", order.join(", ")),
        (true, None) => format!("first_value({e} ORDER BY {e})"),
        (false, _) => format!("named_struct('n', count(*), 'v', first_value({e} ORDER BY {e}))"),
    };
    let mut select = s.clone();
    let expr = Parser::new(&FreshetDialect {})
        .try_with_sql(&value)
        .and_then(|mut p| p.parse_expr())
        .ok()?;
    select.projection = vec![match alias {
        Some(a) => SelectItem::ExprWithAlias {
            expr,
            alias: a.clone(),
        },
        None => SelectItem::UnnamedExpr(expr),
    }];
    let mut out = q.clone();
    out.body = Box::new(SetExpr::Select(select));
    out.order_by = None;
    out.limit_clause = None;
    let subquery = Expr::Subquery(Box::new(out));
    if limit_one {
        return Some(subquery);
    }
    // The check comes after the join: only outer rows' matches count.
    let mut check = Parser::new(&FreshetDialect {})
        .try_with_sql(&format!("{ONE_ROW}(NULL)"))
        .and_then(|mut p| p.parse_expr())
        .ok()?;
    if let Expr::Function(f) = &mut check {
        if let FunctionArguments::List(list) = &mut f.args {
            list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(subquery))];
        }
    }
    Some(check)
}

/// Whether `e` calls an aggregate or window function.
fn has_aggregate(ctx: &SessionContext, e: &Expr) -> bool {
    let state = ctx.state();
    let aggregates = state.aggregate_functions();
    visit_expressions(e, |x| match x {
        Expr::Function(f)
            if f.over.is_some()
                || aggregates.contains_key(&f.name.to_string().to_ascii_lowercase()) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether the subquery reads a column qualified by a name none of its own relations go
/// by, or an unqualified one not among their `columns` (one of an outer query's).
fn reads_outer(q: &Query, columns: Option<&[String]>) -> bool {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return false;
    };
    let mut own: Vec<String> = Vec::new();
    for t in &s.from {
        for r in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            match r {
                TableFactor::Table { name, alias, .. } => {
                    if let Some(a) = alias {
                        own.push(ident_name(&a.name));
                    } else if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                        own.push(ident_name(last));
                    }
                }
                TableFactor::Derived { alias: Some(a), .. }
                | TableFactor::Function { alias: Some(a), .. }
                | TableFactor::UNNEST { alias: Some(a), .. } => own.push(ident_name(&a.name)),
                // A relation whose name is not known: a qualified column may be its.
                _ => return false,
            }
        }
    }
    let mut outer = false;
    let _ = visit_expressions(s.as_ref(), |x| {
        let is_outer = match x {
            Expr::CompoundIdentifier(p) => p.len() == 2 && !own.contains(&ident_name(&p[0])),
            Expr::Identifier(i) => columns.is_some_and(|c| !c.contains(&ident_name(i))),
            _ => false,
        };
        if is_outer {
            outer = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    outer
}
