//! `COPY … FROM STDIN` into tables and `COPY … TO STDOUT` out of tables, views and
//! queries, in text or CSV (see `copy_format`).
//!
//! COPY FROM takes the client's data as it comes (CopyData messages, `Session::copy_data`),
//! then, at CopyDone, reads it all and writes it as one statement: every row or, if one
//! is bad, none (its line is in the error). Inside a transaction it is kept with the
//! transaction's other writes. The data may not outgrow the session's query memory limit
//! (`53200`).

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, StringArray};
use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use freshet_planner::catalog::TableDef;
use freshet_planner::sqlparser::ast::{CopySource, CopyTarget, Statement};
use freshet_planner::PlannerError;

use super::{ident_name, relation_name, BatchStream, Output, Session};
use crate::copy_format::{self, BadLine, CopyFormat};
use crate::error::{Result, ServerError};

/// A `COPY … FROM STDIN` waiting for its data.
pub(super) struct CopyIn {
    table: TableDef,
    /// Table column of each field of a line.
    targets: Vec<usize>,
    format: CopyFormat,
    data: Vec<u8>,
    limit: usize,
}

fn bad_format(message: String) -> ServerError {
    ServerError::BadCopyData(message)
}

impl Session {
    pub(super) async fn copy(&self, stmt: &Statement) -> Result<Output> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return Err(ServerError::Internal("not a COPY".into()));
        };
        let format = CopyFormat::from_options(options, legacy_options)
            .map_err(ServerError::InvalidOption)?;
        match (to, target) {
            (false, CopyTarget::Stdin) => self.copy_from(source, format),
            (true, CopyTarget::Stdout) => self.copy_to(source, format).await,
            _ => Err(ServerError::Unsupported(
                "COPY to or from a file or program is not supported: use COPY … FROM STDIN \
                 or TO STDOUT (psql's \\copy reads and writes files on the client)"
                    .into(),
            )),
        }
    }

    fn copy_from(&self, source: &CopySource, format: CopyFormat) -> Result<Output> {
        let CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(ServerError::Unsupported(
                "COPY (query) FROM is not possible: copy into a table".into(),
            ));
        };
        let table = self.writable_table(table_name)?;
        let targets: Vec<usize> = if columns.is_empty() {
            (0..table.columns.len()).collect()
        } else {
            columns
                .iter()
                .map(|c| table.column_index(&ident_name(c)))
                .collect::<Result<_, _>>()?
        };
        let n = targets.len();
        *self.copy_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(CopyIn {
            table,
            targets,
            format,
            data: Vec::new(),
            limit: self.limits().query_memory_bytes,
        });
        Ok(Output::CopyIn { columns: n })
    }

    /// Data of the running `COPY … FROM STDIN`.
    pub fn copy_data(&self, bytes: &[u8]) -> Result<()> {
        let mut guard = self.copy_in.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = guard.as_mut() else {
            return Err(ServerError::Protocol("COPY data without a COPY".into()));
        };
        if c.data.len() + bytes.len() > c.limit {
            let limit = crate::limits::show_bytes(c.limit);
            *guard = None;
            return Err(ServerError::OutOfMemory(format!(
                "COPY data is larger than the query memory limit ({limit}): load it in parts"
            )));
        }
        c.data.extend_from_slice(bytes);
        Ok(())
    }

    /// The client gave up the running `COPY … FROM STDIN` (CopyFail).
    pub fn copy_fail(&self, message: &str) -> ServerError {
        *self.copy_in.lock().unwrap_or_else(|p| p.into_inner()) = None;
        ServerError::QueryCanceled(format!("COPY from stdin failed: {message}"))
    }

    /// The end of the running `COPY … FROM STDIN`: writes its rows; how many.
    pub async fn copy_done(&self) -> Result<usize> {
        let taken = self
            .copy_in
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(c) = taken else {
            return Err(ServerError::Protocol("COPY done without a COPY".into()));
        };
        let res = self.copy_rows(c).await;
        if res.is_err() {
            self.note_error();
        }
        res
    }

    async fn copy_rows(&self, c: CopyIn) -> Result<usize> {
        let text = String::from_utf8(c.data)
            .map_err(|e| bad_format(format!("invalid byte sequence for encoding \"UTF8\": {e}")))?;
        let records =
            copy_format::parse(&text, &c.format).map_err(|e| bad_format(e.to_string()))?;
        let n = records.len();
        if n == 0 {
            return Ok(0);
        }
        let schema = c.table.schema();
        let mut columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect();
        for (field_no, &col) in c.targets.iter().enumerate() {
            let mut values: Vec<Option<&str>> = Vec::with_capacity(n);
            for (line, fields) in &records {
                if fields.len() != c.targets.len() {
                    let what = if fields.len() < c.targets.len() {
                        format!(
                            "missing data for column \"{}\"",
                            c.table.columns[c.targets[fields.len()]].name
                        )
                    } else {
                        "extra data after last expected column".to_string()
                    };
                    return Err(bad_format(
                        BadLine {
                            line: *line,
                            message: what,
                        }
                        .to_string(),
                    ));
                }
                values.push(fields[field_no].as_deref());
            }
            let ty = schema.field(col).data_type();
            let strings: ArrayRef = Arc::new(StringArray::from(values));
            // Arrays and bytea, read as Postgres reads them.
            if let Some(read) = freshet_planner::pg_input::text_to(&strings, ty) {
                columns[col] = read.map_err(|m| {
                    let bad = records.iter().find(|(_, fields)| {
                        fields[field_no].as_deref().is_some_and(|v| {
                            freshet_planner::pg_input::value_from_text(v, ty)
                                .is_some_and(|r| r.is_err())
                        })
                    });
                    let line = bad.map_or(0, |(line, _)| *line);
                    ServerError::InvalidText(format!(
                        "{m} in column \"{}\" (line {line})",
                        c.table.columns[col].name
                    ))
                })?;
                continue;
            }
            let strings = freshet_planner::literals::timestamp_strings(&strings, ty);
            let strict = CastOptions {
                safe: false,
                ..Default::default()
            };
            // A `timestamptz` without an offset is read in the session's zone.
            let zone = self.time_zone();
            let read = |strings: &ArrayRef, opts: &CastOptions| {
                match freshet_planner::session_zone::read_text(strings, ty, &zone, opts.safe) {
                    Some(read) => read.map_err(ServerError::from),
                    None => Ok(freshet_engine::numeric_special::cast(strings, ty, opts)?),
                }
            };
            columns[col] = match read(&strings, &strict) {
                Ok(a) => a,
                Err(_) => {
                    // Find the first value that does not convert, for its line.
                    let lenient = CastOptions::default();
                    let cast = read(&strings, &lenient)?;
                    let bad = (0..n)
                        .find(|&i| !strings.is_null(i) && cast.is_null(i))
                        .unwrap_or(0);
                    let value = records[bad].1[field_no].clone().unwrap_or_default();
                    return Err(ServerError::InvalidText(format!(
                        "invalid input syntax for type {} of column \"{}\": \"{value}\" (line {})",
                        c.table.columns[col].ty.pg_name(),
                        c.table.columns[col].name,
                        records[bad].0
                    )));
                }
            };
        }
        let batch = RecordBatch::try_new(schema, columns)?;
        let batch = super::defaults::fill(batch, &c.table, &c.targets)?;
        if let Some(on) = super::upsert::OnConflict::of_table(&c.table) {
            return self.upsert(None, &c.table, &[batch], &on).await;
        }
        let late = self.write(&c.table, vec![], vec![batch]).await?;
        Ok(n - late as usize)
    }

    async fn copy_to(&self, source: &CopySource, format: CopyFormat) -> Result<Output> {
        let query = match source {
            CopySource::Table {
                table_name,
                columns,
            } => {
                let cols = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| format!("\"{}\"", ident_name(c).replace('"', "\"\"")))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "SELECT {cols} FROM {}",
                    freshet_planner::schemas::quote_always(&relation_name(
                        &self.db.catalog(),
                        table_name
                    )?)
                )
            }
            CopySource::Query(q) => q.to_string(),
        };
        let stmts = freshet_planner::parser::parse(&query)?;
        let Some(freshet_planner::parser::Stmt::Sql(stmt)) = stmts.into_iter().next() else {
            return Err(PlannerError::Internal("COPY query did not parse".into()).into());
        };
        self.authorize(&freshet_planner::parser::Stmt::Sql(stmt.clone()))?;
        let (schema, batches): (_, BatchStream) = match self.query(&stmt, &[]).await? {
            Output::Stream { schema, batches } => (schema, batches),
            Output::Rows { schema, batches } => (
                schema,
                Box::pin(futures::stream::iter(batches.into_iter().map(Ok))),
            ),
            _ => return Err(ServerError::Internal("COPY query returned no rows".into())),
        };
        Ok(self.copy_lines(schema, batches, format))
    }

    /// `COPY (SUBSCRIBE …) TO STDOUT [options]`: the subscription's rows as lines, as
    /// they come.
    pub(super) async fn copy_subscribe(
        &self,
        sub: &freshet_planner::parser::Subscribe,
        copy: &Statement,
    ) -> Result<Output> {
        let Statement::Copy {
            to: true,
            target: CopyTarget::Stdout,
            options,
            legacy_options,
            ..
        } = copy
        else {
            return Err(ServerError::Unsupported(
                "COPY (SUBSCRIBE …) goes only TO STDOUT".into(),
            ));
        };
        let format = CopyFormat::from_options(options, legacy_options)
            .map_err(ServerError::InvalidOption)?;
        let (schema, batches) = self.subscribe(sub).await?;
        Ok(self.copy_lines(schema, batches, format))
    }

    /// Rows as COPY lines (a header first if the format has one), encoded a batch at a
    /// time as the client takes them.
    fn copy_lines(&self, schema: SchemaRef, batches: BatchStream, format: CopyFormat) -> Output {
        use futures::StreamExt;
        let header = format.header.then(|| {
            let names: Vec<Option<String>> = schema
                .fields()
                .iter()
                .map(|f| Some(freshet_planner::naming::display_name(f.name()).to_string()))
                .collect();
            let mut line = String::new();
            copy_format::format_row(&names, &format, &mut line);
            Ok(line)
        });
        let zone = self.time_zone();
        let body = batches.flat_map(move |b| {
            let lines: Vec<Result<String>> = match b.and_then(|b| {
                crate::encode::text_rows(&b, &zone)
                    .map_err(|e| ServerError::Internal(e.to_string()))
            }) {
                Ok(rows) => rows
                    .iter()
                    .map(|row| {
                        let mut line = String::new();
                        copy_format::format_row(row, &format, &mut line);
                        Ok(line)
                    })
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(lines)
        });
        Output::CopyOut {
            columns: schema.fields().len(),
            lines: Box::pin(futures::stream::iter(header).chain(body)),
        }
    }
}
