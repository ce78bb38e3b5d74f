//! `CREATE INDEX`: an index is a view over one table or materialized view, `SELECT <index
//! columns>, <included columns> FROM relation`, kept up to date like any view. A view's
//! rows are stored under keys that begin with its first columns, so the index's rows are
//! ordered by the index's columns; queries on the relation read it instead when their
//! filters bound those columns (see `stored::StoredRelation`). It is dropped with its
//! relation, and by `DROP INDEX`.

use freshet_planner::catalog::{Catalog, IndexDef, RelationKind};
use freshet_planner::index_stmt::CreateIndex;
use freshet_planner::parser::{self, Stmt};
use freshet_planner::sqlparser::ast::Statement;
use freshet_planner::PlannerError;

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};

use super::ddl::ViewKind;
use super::{command, relation_name, Db, Output, Session};
use crate::error::{Result, ServerError};
use crate::index_scan::IndexInfo;

impl Session {
    pub(super) async fn create_index(&self, ci: &CreateIndex) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let on = relation_name(&catalog, &ci.on)?;
        let (kind, rel) = catalog
            .kind_of(&on)
            .ok_or_else(|| PlannerError::UndefinedTable(on.clone()))?;
        match kind {
            RelationKind::Table
                if catalog
                    .table(&on)
                    .and_then(|t| t.watermark.as_ref())
                    .is_some_and(|w| w.ttl) =>
            {
                // Expired rows leave the table without a delete reaching the views over
                // it: an index would keep serving them.
                return Err(ServerError::Unsupported(format!(
                    "an index on table \"{on}\", whose WATERMARK has WITH TTL: its expired \
                     rows would stay in the index"
                )));
            }
            RelationKind::Table | RelationKind::View => {}
            RelationKind::Source => {
                return Err(ServerError::Unsupported(format!(
                    "an index on source \"{on}\": a source is not stored; index a \
                     materialized view over it"
                )))
            }
            RelationKind::Sink | RelationKind::Index | RelationKind::PlainView => {
                return Err(PlannerError::WrongObjectType {
                    name: on,
                    expected: "table or materialized view",
                }
                .into())
            }
        }
        let all = self.relation_columns(&catalog, &on)?;
        let mut columns: Vec<String> = Vec::new();
        for c in &ci.columns {
            if !all.contains(c) {
                return Err(PlannerError::UndefinedColumn(c.clone()).into());
            }
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        let include: Vec<String> = match &ci.include {
            Some(inc) => {
                let mut out = Vec::new();
                for c in inc {
                    if !all.contains(c) {
                        return Err(PlannerError::UndefinedColumn(c.clone()).into());
                    }
                    if !columns.contains(c) && !out.contains(c) {
                        out.push(c.clone());
                    }
                }
                out
            }
            None => all
                .iter()
                .filter(|c| !columns.contains(c))
                .cloned()
                .collect(),
        };
        for c in &ci.distributed_by {
            if !columns.contains(c) {
                return Err(ServerError::InvalidOption(format!(
                    "DISTRIBUTED BY column \"{c}\" must be one of the index's columns"
                )));
            }
        }
        let name = match &ci.name {
            // An index is in its relation's schema, as in Postgres.
            Some(n) if n.0.len() == 1 => freshet_planner::schemas::qualified(
                freshet_planner::schemas::split(&on).0.unwrap_or("public"),
                &relation_name(&catalog, n)?,
            ),
            Some(n) => {
                let name = relation_name(&catalog, n)?;
                if freshet_planner::schemas::split(&name).0
                    != freshet_planner::schemas::split(&on).0
                {
                    return Err(ServerError::InvalidOption(format!(
                        "index \"{n}\" must be in the schema of the relation it indexes"
                    )));
                }
                name
            }
            None => generated_name(&catalog, &on, &columns),
        };
        if self.skip_existing(&catalog, &name, ci.if_not_exists)? {
            return Ok(command("CREATE INDEX"));
        }
        let def = IndexDef {
            on: rel,
            columns,
            include,
            distributed_by: ci.distributed_by.clone(),
        };
        let select: Vec<String> = def
            .stored_columns()
            .map(|c| super::quoted_ident(c))
            .collect();
        let sql = format!(
            "SELECT {} FROM {}",
            select.join(", "),
            freshet_planner::schemas::quote_always(&on)
        );
        let query = match parser::parse(&sql)?.into_iter().next() {
            Some(Stmt::Sql(s)) => match *s {
                Statement::Query(q) => q,
                _ => return Err(PlannerError::Internal("index query is not a query".into()).into()),
            },
            _ => return Err(PlannerError::Internal("index query is empty".into()).into()),
        };
        let (query_sql, planned) = self.plan_new_view(&catalog, &query, &[], false).await?;
        self.install_view(
            &catalog,
            name,
            query_sql,
            planned,
            false,
            ViewKind::Index(def),
        )
        .await?;
        Ok(command("CREATE INDEX"))
    }

    /// The column names of table or materialized view `name`, in order.
    fn relation_columns(&self, catalog: &Catalog, name: &str) -> Result<Vec<String>> {
        let (_, schema, _) = self
            .db
            .relation_schema(catalog, name)
            .ok_or_else(|| PlannerError::UndefinedTable(name.to_string()))?;
        Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
    }
}

/// Postgres' name for an index created without one: `<relation>_<column>…_idx`, with a
/// number added until it is free.
fn generated_name(catalog: &Catalog, on: &str, columns: &[String]) -> String {
    // In `on`'s schema; a `.` inside a column's name would read as a schema separator.
    let (schema, rel) = freshet_planner::schemas::split(on);
    let local = format!("{rel}_{}_idx", columns.join("_")).replace('.', "_");
    let base = freshet_planner::schemas::qualified(schema.unwrap_or("public"), &local);
    let mut name = base.clone();
    let mut n = 0;
    while catalog.kind_of(&name).is_some() {
        n += 1;
        name = format!("{base}{n}");
    }
    name
}

impl Db {
    /// The indexes on relation `id` (columns `base`) that a query may read instead of it:
    /// those whose stored columns are the relation's, with the same types.
    pub(super) fn indexes_of(
        &self,
        catalog: &Catalog,
        id: u64,
        base: &SchemaRef,
    ) -> Vec<IndexInfo> {
        let schemas = self.view_schemas.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (v, i) in catalog.indexes_on(id) {
            let Some(stored) = schemas.get(&v.id) else {
                continue;
            };
            let mut base_cols = Vec::new();
            for (name, field) in i.stored_columns().zip(stored.fields()) {
                match base.index_of(name) {
                    Ok(c) if base.field(c).data_type() == field.data_type() => base_cols.push(c),
                    _ => break,
                }
            }
            if base_cols.len() != stored.fields().len() {
                continue;
            }
            let fields: Vec<_> = base_cols.iter().map(|&c| base.field(c).clone()).collect();
            out.push(IndexInfo {
                name: v.name.clone(),
                id: v.id,
                schema: Arc::new(Schema::new(fields)),
                base_cols,
            });
        }
        out
    }
}
