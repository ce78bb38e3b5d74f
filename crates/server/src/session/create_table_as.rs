//! `CREATE TABLE name [(column, …)] AS query`: a table of the query's columns (named as
//! Postgres names a select list's, or by the column list), without a primary key, that
//! holds the query's rows as of now. Later changes to what the query read do not reach
//! it: it is a copy, as in Postgres and RisingWave (a materialized view follows them).

use freshet_planner::catalog::{ColumnDef, SqlType, TableDef};
use freshet_planner::context::bind;
use freshet_planner::naming::name_select_items;
use freshet_planner::parser::{self, Stmt};
use freshet_planner::sqlparser::ast::{self, Statement};
use freshet_planner::PlannerError;

use super::{ident_name, relation_name, Output, Session};
use crate::error::{Result, ServerError};

impl Session {
    pub(super) async fn create_table_as(
        &self,
        ct: &ast::CreateTable,
        query: &ast::Query,
    ) -> Result<Output> {
        if !ct.constraints.is_empty() {
            return Err(ServerError::Unsupported(
                "constraints in CREATE TABLE … AS".into(),
            ));
        }
        let mut query = query.clone();
        name_select_items(&mut query, false);
        let columns = {
            let _ddl = self.db.ddl_lock.lock().await;
            let catalog = self.db.catalog();
            let name = relation_name(&catalog, &ct.name)?;
            if self.skip_existing(&catalog, &name, ct.if_not_exists)? {
                return Ok(super::command("CREATE TABLE AS"));
            }
            let mut stmt = Statement::Query(Box::new(query.clone()));
            // `AS SELECT 1 AS a` makes `a` an `integer`, as a query's column is.
            freshet_planner::pg_values::int4_select_literals(&mut stmt);
            let ctx = self.db.context_for(
                &self.limits(),
                &catalog,
                &stmt,
                false,
                self.deadline(),
                &self.pending_writes(),
            )?;
            freshet_planner::pg_values::client_query(&ctx, self.time_zone());
            let plan = freshet_planner::context::analyzed(&ctx, bind(&ctx, &stmt).await?)?;
            let columns = table_columns(ct, plan.schema().fields())?;
            super::ddl::no_row_id_column(&columns)?;
            let mut next = (*catalog).clone();
            let id = next.allocate_id();
            let def = TableDef {
                id,
                name,
                columns: columns.clone(),
                pk: Vec::new(),
                row_id: true,
                feed: None,
                watermark: None,
                append_only: false,
                on_conflict: None,
                version_columns: Vec::new(),
            };
            self.add_table(next, def).await?;
            columns
        };
        // The rows, by the INSERT path (which reads the tables as of every write so far).
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("\"{}\"", c.name.replace('"', "\"\"")))
            .collect();
        let sql = format!("INSERT INTO {} ({}) {query}", ct.name, list.join(", "));
        let inserted = match parser::parse(&sql)?.pop() {
            Some(Stmt::Sql(stmt)) => match stmt.as_ref() {
                Statement::Insert(insert) => self.insert(&stmt, insert, &[]).await,
                _ => Err(PlannerError::Internal("CREATE TABLE AS: not an INSERT".into()).into()),
            },
            _ => Err(PlannerError::Internal("CREATE TABLE AS: not an INSERT".into()).into()),
        };
        match inserted {
            Ok(Output::Command { rows, .. }) => Ok(Output::Command {
                tag: "SELECT".into(),
                rows,
            }),
            Ok(other) => Ok(other),
            Err(e) => {
                // The statement fails as a whole: the table goes again.
                let _ddl = self.db.ddl_lock.lock().await;
                let catalog = self.db.catalog();
                if let Ok(name) = relation_name(&catalog, &ct.name) {
                    if let Some(t) = catalog.tables.iter().find(|t| t.name == name) {
                        let _ = self.db.drop_one(t.id).await;
                    }
                }
                Err(e)
            }
        }
    }
}

/// The table's columns: the query's, named by the column list where there is one.
fn table_columns(
    ct: &ast::CreateTable,
    fields: &datafusion::arrow::datatypes::Fields,
) -> Result<Vec<ColumnDef>> {
    if ct.columns.len() > fields.len() {
        return Err(ServerError::Unsupported(
            "CREATE TABLE AS specifies too many column names".into(),
        ));
    }
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(fields.len());
    for (i, field) in fields.iter().enumerate() {
        let name = match ct.columns.get(i) {
            Some(c) => ident_name(&c.name),
            None => freshet_planner::naming::display_name(field.name()).to_string(),
        };
        if columns.iter().any(|c| c.name == name) {
            return Err(PlannerError::DuplicateColumn(name).into());
        }
        let ty = SqlType::from_arrow(field.data_type()).ok_or_else(|| {
            ServerError::Unsupported(format!(
                "column \"{name}\" of type {} in a table",
                field.data_type()
            ))
        })?;
        columns.push(ColumnDef {
            name,
            ty,
            not_null: false,
            default: None,
        });
    }
    Ok(columns)
}
