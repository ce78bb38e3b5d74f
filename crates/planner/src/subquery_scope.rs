//! What a subquery's own relations name, for the rewrites that must tell its columns
//! from an outer query's (`single_row`, `lateral_limit`): Postgres resolves an
//! unqualified column to the innermost relation that has it.

use datafusion::prelude::SessionContext;

use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{Query, SetExpr, Statement, TableWithJoins};
use crate::sqlparser::parser::Parser;

/// The column names (folded) of the relations of `from`, or `None` when they cannot be
/// planned on their own (one reads an outer column, say).
pub async fn columns_of(ctx: &SessionContext, from: &[TableWithJoins]) -> Option<Vec<String>> {
    let mut q = Parser::new(&FreshetDialect {})
        .try_with_sql("SELECT * FROM t")
        .and_then(|mut p| p.parse_query())
        .ok()?;
    let SetExpr::Select(s) = q.body.as_mut() else {
        return None;
    };
    s.from = from.to_vec();
    let stmt = datafusion::sql::parser::Statement::Statement(Box::new(Statement::Query(q)));
    let plan = ctx.state().statement_to_plan(stmt).await.ok()?;
    Some(
        plan.schema()
            .fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect(),
    )
}

/// The relations a subquery's own columns come from: its SELECT's FROM, if it has one.
pub fn from_of(q: &Query) -> Option<Vec<TableWithJoins>> {
    match q.body.as_ref() {
        SetExpr::Select(s) if !s.from.is_empty() => Some(s.from.clone()),
        _ => None,
    }
}

/// [`columns_of`] for each subquery's relations, in order (`None` where there are none).
pub async fn columns_of_each(
    ctx: &SessionContext,
    froms: Vec<Option<Vec<TableWithJoins>>>,
) -> Vec<Option<Vec<String>>> {
    let mut columns = Vec::with_capacity(froms.len());
    for from in froms {
        columns.push(match from {
            Some(from) => columns_of(ctx, &from).await,
            None => None,
        });
    }
    columns
}
