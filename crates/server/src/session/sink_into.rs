//! `CREATE SINK name INTO table [(columns)] {FROM relation | AS query}`: RisingWave's sink
//! into a table. The sink's query is planned as a view whose rows are the table's
//! columns, in order (the listed columns from the query's, the others NULL); the engine
//! writes its changes into the table, which other views read (see the engine's
//! `coordinator::sink_into`). Several sinks may write into one table, beside its DML.

use datafusion::arrow::datatypes::DataType;
use freshet_planner::catalog::{Catalog, TableDef};
use freshet_planner::parser::{self, Stmt};
use freshet_planner::sink_def::SinkDef;
use freshet_planner::sqlparser::ast::{self, Ident, ObjectName};
use freshet_planner::PlannerError;

use super::ddl::ViewKind;
use super::{command, quoted_ident, relation_name, Output, Session};
use crate::error::{Result, ServerError};

impl Session {
    pub(super) async fn create_sink_into(
        &self,
        cs: &parser::CreateSink,
        target: &ObjectName,
        columns: &[Ident],
    ) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, &cs.name)?;
        if self.skip_existing(&catalog, &name, cs.if_not_exists)? {
            return Ok(command("CREATE SINK"));
        }
        let table = target_table(&catalog, &relation_name(&catalog, target)?)?;
        let mapping = column_mapping(table, columns)?;
        // The query as written (its columns named apart: only their positions count):
        // its columns, and whether it ever deletes.
        let mut query = (*cs.query).clone();
        freshet_planner::naming::name_select_items(&mut query, true);
        let (_, planned) = self
            .plan_new_view(&catalog, &query, &[], cs.emit_on_window_close)
            .await?;
        let given = planned.schema.fields().len();
        let wanted = mapping.iter().filter(|m| m.is_some()).count();
        if given != wanted {
            return Err(PlannerError::Syntax {
                message: format!(
                    "the sink's query gives {given} columns, and {wanted} columns of table \
                     \"{}\" are written",
                    table.name
                ),
                position: None,
            }
            .into());
        }
        for (col, from) in table.columns.iter().zip(&mapping) {
            let Some(i) = from else { continue };
            let given = planned.schema.field(*i).data_type();
            if !assignable(given, &col.ty.to_arrow()) {
                return Err(ServerError::DatatypeMismatch(format!(
                    "column \"{}\" is of type {} but the sink's expression is of type {}",
                    col.name,
                    col.ty.pg_name(),
                    type_name(given)
                )));
            }
        }
        if table.row_id && !planned.append_only {
            // Its rows are known by their hidden row ids, which a sink's delete cannot
            // name (RisingWave takes only append-only sinks here too).
            return Err(ServerError::Unsupported(format!(
                "a sink whose query can delete rows into table \"{}\", which has no \
                 primary key: declare one, or sink an append-only query",
                table.name
            )));
        }
        if table.append_only && !planned.append_only {
            return Err(ServerError::Unsupported(format!(
                "a sink whose query can delete rows into APPEND ONLY table \"{}\"",
                table.name
            )));
        }
        if reads(&catalog, &planned.depends_on, table.id) {
            return Err(ServerError::Unsupported(format!(
                "a sink into table \"{}\" whose query reads that table (a cycle)",
                table.name
            )));
        }
        let query = table_rows_query(table, &mapping, &query)?;
        let (query_sql, planned) = self
            .plan_new_view(&catalog, &query, &[], cs.emit_on_window_close)
            .await?;
        let sink = SinkDef {
            connector: "table".into(),
            drop_deletes: false,
            options: Vec::new(),
            kafka: None,
            into_table: Some(table.id),
        };
        self.install_view(
            &catalog,
            name,
            query_sql,
            planned,
            cs.emit_on_window_close,
            ViewKind::Sink(sink),
        )
        .await?;
        Ok(command("CREATE SINK"))
    }
}

/// The table a sink writes into: a table, without a watermark.
fn target_table<'a>(catalog: &'a Catalog, name: &str) -> Result<&'a TableDef> {
    let Some(table) = catalog.table(name) else {
        return Err(match catalog.kind_of(name) {
            Some(_) => ServerError::WrongObjectType(format!("\"{name}\" is not a table")),
            None => PlannerError::UndefinedTable(name.to_string()).into(),
        });
    };
    if table.watermark.is_some() {
        return Err(ServerError::Unsupported(format!(
            "a sink into table \"{name}\", which has a WATERMARK"
        )));
    }
    Ok(table)
}

/// Per table column, the query column written into it (`None`: NULL). Without a column
/// list, every column in order.
fn column_mapping(table: &TableDef, columns: &[Ident]) -> Result<Vec<Option<usize>>> {
    if columns.is_empty() {
        return Ok((0..table.columns.len()).map(Some).collect());
    }
    let mut mapping = vec![None; table.columns.len()];
    for (i, c) in columns.iter().enumerate() {
        let n = freshet_planner::naming::ident_name(c);
        let at = table
            .columns
            .iter()
            .position(|col| col.name == n)
            .ok_or_else(|| PlannerError::UndefinedColumn(n.clone()))?;
        if mapping[at].replace(i).is_some() {
            return Err(PlannerError::DuplicateColumn(n).into());
        }
    }
    Ok(mapping)
}

/// A type's Postgres name, for errors.
fn type_name(t: &DataType) -> String {
    use freshet_planner::pg_catalog::types;
    types::format_type(types::oid_of(t), Some(types::typmod_of(t))).unwrap_or_else(|| t.to_string())
}

/// Whether a value of type `from` goes into a column of type `to` as Postgres assigns
/// it: the same type, numbers into numbers, text into text, timestamps and dates into
/// timestamps, arrays of such; jsonb only from jsonb (`LargeUtf8`).
fn assignable(from: &DataType, to: &DataType) -> bool {
    use DataType as T;
    let text = |t: &DataType| matches!(t, T::Utf8 | T::Utf8View);
    match (from, to) {
        (f, t) if f == t => true,
        (T::Null, _) => true,
        (f, t) if f.is_numeric() && t.is_numeric() => true,
        (f, t) if text(f) && text(t) => true,
        (T::Timestamp(..) | T::Date32 | T::Date64, T::Timestamp(..)) => true,
        (T::List(f), T::List(t)) => assignable(f.data_type(), t.data_type()),
        _ => false,
    }
}

/// Whether a query over `deps` reads relation `id`, directly, through views, or through
/// tables other sinks write into (what they read).
fn reads(catalog: &Catalog, deps: &[u64], id: u64) -> bool {
    let mut seen: Vec<u64> = deps.to_vec();
    let mut at = 0;
    while at < seen.len() {
        let d = seen[at];
        if d == id {
            return true;
        }
        let upstream = catalog
            .views
            .iter()
            .filter(|v| v.id == d || v.sink.as_ref().is_some_and(|s| s.into_table == Some(d)));
        for v in upstream {
            for x in &v.depends_on {
                if !seen.contains(x) {
                    seen.push(*x);
                }
            }
        }
        at += 1;
    }
    false
}

/// `query` as the table's rows: each table column from its query column (by position),
/// or NULL of its type.
fn table_rows_query(
    table: &TableDef,
    mapping: &[Option<usize>],
    query: &ast::Query,
) -> Result<ast::Query> {
    let given = mapping.iter().filter(|m| m.is_some()).count();
    let names: Vec<String> = (0..given).map(|i| format!("__sink_c{i}")).collect();
    let items: Vec<String> = table
        .columns
        .iter()
        .zip(mapping)
        .map(|(c, m)| match m {
            Some(i) => format!("{} AS {}", names[*i], quoted_ident(&c.name)),
            None => format!(
                "CAST(NULL AS {}) AS {}",
                c.ty.pg_name(),
                quoted_ident(&c.name)
            ),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM ({query}) AS __sink_source ({})",
        items.join(", "),
        names.join(", ")
    );
    match parser::parse(&sql)?.into_iter().next() {
        Some(Stmt::Sql(s)) => match *s {
            ast::Statement::Query(q) => Ok(*q),
            _ => Err(ServerError::Internal(
                "a sink's query is not a query".into(),
            )),
        },
        _ => Err(ServerError::Internal("a sink's query vanished".into())),
    }
}
