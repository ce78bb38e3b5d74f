//! The DataFusion session Freshet binds SQL with: Postgres dialect, lower-cased
//! identifiers, UTC as the time zone, and the catalog's relations registered as tables.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::sqlparser::ast::Statement;
use crate::PlannerError;

/// A fresh session. Relations are registered per statement with [`register`].
pub fn new_session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(true);
    let opts = config.options_mut();
    opts.execution.time_zone = Some("+00:00".to_string());
    opts.sql_parser.enable_ident_normalization = true;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_query_planner(Arc::new(crate::window::WindowQueryPlanner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    // approx_count_distinct (alias approx_distinct) with the HyperLogLog views use.
    ctx.register_udaf(crate::hll_udaf::approx_count_distinct());
    ctx
}

/// Registers `name` with the given rows (none when only planning).
pub fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(), PlannerError> {
    let table = MemTable::try_new(schema, vec![batches])?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Binds a parsed statement into DataFusion's logical plan (unoptimized).
pub async fn bind(ctx: &SessionContext, stmt: &Statement) -> Result<LogicalPlan, PlannerError> {
    let mut stmt = stmt.clone();
    crate::window::rewrite_windows(ctx, &mut stmt).await?;
    let stmt = datafusion::sql::parser::Statement::Statement(Box::new(stmt));
    Ok(ctx.state().statement_to_plan(stmt).await?)
}

/// The names of the relations a statement reads or writes, identifiers folded as Postgres
/// does, qualified names joined with `.` (`public.` dropped).
pub fn referenced_tables(stmt: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    let _ = crate::sqlparser::ast::visit_relations(stmt, |name| {
        let parts: Option<Vec<String>> = name
            .0
            .iter()
            .map(|p| {
                p.as_ident().map(|i| {
                    if i.quote_style.is_some() {
                        i.value.clone()
                    } else {
                        i.value.to_lowercase()
                    }
                })
            })
            .collect();
        if let Some(mut parts) = parts {
            if parts.len() == 2 && parts[0] == "public" {
                parts.remove(0);
            }
            let n = parts.join(".");
            if !out.contains(&n) {
                out.push(n);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let windows = crate::window::window_relations(stmt);
    if !windows.is_empty() {
        out.retain(|n| n != "tumble" && n != "hop" && n != "session");
        for w in windows {
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// Registers a table in a schema other than the default one (e.g. `freshet_catalog`).
pub fn register_in_schema(
    ctx: &SessionContext,
    schema_name: &str,
    table: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(), PlannerError> {
    let catalog_name = ctx.state().config_options().catalog.default_catalog.clone();
    let catalog = ctx
        .catalog(&catalog_name)
        .ok_or_else(|| PlannerError::Internal("no default catalog".into()))?;
    if catalog.schema(schema_name).is_none() {
        catalog.register_schema(
            schema_name,
            Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
        )?;
    }
    let table_ref = datafusion::common::TableReference::partial(schema_name, table);
    ctx.register_table(
        table_ref,
        Arc::new(MemTable::try_new(schema, vec![batches])?),
    )?;
    Ok(())
}
