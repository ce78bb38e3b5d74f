//! Column defaults (`CREATE TABLE t (…, status VARCHAR DEFAULT 'new', at TIMESTAMPTZ
//! DEFAULT now())`), as Postgres applies them: to the columns an `INSERT` (or `COPY`)
//! leaves out, to the `DEFAULT` keyword in a `VALUES` row, and to the columns after a
//! `VALUES` row shorter than the table (`INSERT INTO t VALUES (1)`). A column without a
//! default gets NULL.
//!
//! A default is kept as its SQL text. In `INSERT … VALUES` (and `UPDATE … SET c =
//! DEFAULT`) it is written into the statement, so it is evaluated with it (`now()` is the
//! statement's time); for `INSERT … SELECT`, `COPY` and `DEFAULT VALUES` it is evaluated
//! once per statement (a volatile default such as `random()` is one value for all rows).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use freshet_planner::catalog::{ColumnDef, TableDef};
use freshet_planner::sql_dialect::FreshetDialect;
use freshet_planner::sqlparser::ast::{self, Expr, Ident, ObjectName, SetExpr, Statement};
use freshet_planner::sqlparser::parser::Parser;
use freshet_planner::PlannerError;

use crate::error::{Result, ServerError};

/// The default of `column` as written (`DEFAULT expr`), checked: it reads no column and
/// no subquery, and evaluates to the column's type.
pub(super) fn checked(
    column: &str,
    ty: &freshet_planner::catalog::SqlType,
    e: &Expr,
) -> Result<String> {
    let session = freshet_planner::context::new_session();
    let state = session.state();
    let aggregates = state.aggregate_functions();
    let reads = ast::visit_expressions(e, |x| match x {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break("a column"),
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            ControlFlow::Break("a subquery")
        }
        Expr::Function(f)
            if f.over.is_some()
                || aggregates.contains_key(&f.name.to_string().to_ascii_lowercase()) =>
        {
            ControlFlow::Break("an aggregate or window function")
        }
        _ => ControlFlow::Continue(()),
    });
    if let ControlFlow::Break(what) = reads {
        return Err(ServerError::Unsupported(format!(
            "the DEFAULT of column \"{column}\" reads {what}: a default is a constant or a \
             function of none (now())"
        )));
    }
    let text = e.to_string();
    evaluate(&text, ty).map_err(|err| {
        ServerError::Planner(PlannerError::Syntax {
            message: format!("invalid DEFAULT for column \"{column}\": {err}"),
            position: None,
        })
    })?;
    Ok(text)
}

/// `sql`, an expression of no column, evaluated and made a value of `column_type`: text
/// is read as Postgres reads that type's text (a `jsonb` document, a `bytea` escape, an
/// array or record literal), a row's fields are taken by position.
fn evaluate(sql: &str, column_type: &freshet_planner::catalog::SqlType) -> Result<ScalarValue> {
    let ty = &column_type.to_arrow();
    let ctx = freshet_planner::context::new_session();
    let expr = Parser::new(&FreshetDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| PlannerError::Syntax {
            message: e.to_string(),
            position: None,
        })?;
    let state = ctx.state();
    let empty = DFSchema::empty();
    let logical = state.create_logical_expr(&expr.to_string(), &empty)?;
    // `now()` and the like are replaced by the statement's time when simplified.
    let context = datafusion::logical_expr::simplify::SimplifyContext::builder()
        .with_config_options(Arc::new(state.config_options().as_ref().clone()))
        .with_current_time()
        .build();
    let logical = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(context)
        .simplify(logical)?;
    let physical = state.create_physical_expr(logical, &empty)?;
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = match physical.evaluate(&one_row)? {
        ColumnarValue::Scalar(s) => s,
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0)?,
    };
    let text = match &value {
        ScalarValue::Utf8(Some(t))
        | ScalarValue::LargeUtf8(Some(t))
        | ScalarValue::Utf8View(Some(t)) => Some(t.as_str()),
        _ => None,
    };
    if let Some(read) = text.and_then(|t| freshet_planner::pg_input::value_from_text(t, ty)) {
        return read.map_err(ServerError::InvalidText);
    }
    if let (ScalarValue::Struct(row), datafusion::arrow::datatypes::DataType::Struct(fields)) =
        (&value, ty)
    {
        if row.num_columns() == fields.len() {
            let columns = row
                .columns()
                .iter()
                .zip(fields.iter())
                .map(|(c, f)| {
                    freshet_engine::numeric_special::cast(c, f.data_type(), &Default::default())
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let fitted = datafusion::arrow::array::StructArray::try_new(
                fields.clone(),
                columns,
                datafusion::arrow::array::Array::nulls(row.as_ref()).cloned(),
            )?;
            return Ok(ScalarValue::Struct(Arc::new(fitted)));
        }
    }
    Ok(value.cast_to(ty)?)
}

/// The value of `column`'s default (NULL without one), for `rows` rows.
pub(super) fn column_values(column: &ColumnDef, rows: usize) -> Result<ArrayRef> {
    let value = match &column.default {
        Some(d) => evaluate(d, &column.ty)?,
        None => ScalarValue::try_from(&column.ty.to_arrow())?,
    };
    Ok(value.to_array_of_size(rows)?)
}

/// `batch` (all of `table`'s columns, those not in `targets` NULL) with the defaults of the
/// columns not in `targets`.
pub(super) fn fill(batch: RecordBatch, table: &TableDef, targets: &[usize]) -> Result<RecordBatch> {
    let missing: Vec<usize> = (0..table.columns.len())
        .filter(|i| !targets.contains(i) && table.columns[*i].default.is_some())
        .collect();
    if missing.is_empty() || batch.num_rows() == 0 {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    for i in missing {
        columns[i] = column_values(&table.columns[i], batch.num_rows())?;
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Whether `e` is the `DEFAULT` keyword of a `VALUES` row or an `UPDATE … SET`.
pub(super) fn is_default_keyword(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// `INSERT … VALUES` with every column of `table` given: the columns the statement leaves
/// out (after a short row too) and `DEFAULT`s become their defaults, or NULL. `None`
/// when there is nothing to fill (or rows of different lengths, which binding refuses).
pub(super) fn complete_values(stmt: &Statement, table: &TableDef) -> Result<Option<Statement>> {
    let Statement::Insert(insert) = stmt else {
        return Ok(None);
    };
    let Some(source) = &insert.source else {
        return Ok(None);
    };
    let SetExpr::Values(values) = source.body.as_ref() else {
        return Ok(None);
    };
    let width = values.rows.first().map_or(0, |r| r.len());
    if values.rows.iter().any(|r| r.len() != width) {
        return Ok(None);
    }
    // The columns each row gives, in its order.
    let given: Vec<usize> = if insert.columns.is_empty() {
        if width > table.columns.len() {
            return Ok(None);
        }
        (0..width).collect()
    } else {
        let mut out = Vec::with_capacity(insert.columns.len());
        for c in &insert.columns {
            out.push(table.column_index(&super::object_name(c))?);
        }
        if out.len() != width {
            return Ok(None);
        }
        out
    };
    let has_keyword = values
        .rows
        .iter()
        .flat_map(|r| r.iter())
        .any(is_default_keyword);
    let all_given = (0..table.columns.len()).all(|i| given.contains(&i));
    if all_given && !has_keyword {
        return Ok(None);
    }
    let defaults: Vec<Expr> = table
        .columns
        .iter()
        .map(|c| {
            let sql = c.default.as_deref().unwrap_or("NULL");
            Parser::new(&FreshetDialect {})
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| {
                    ServerError::Planner(PlannerError::Internal(format!(
                        "the DEFAULT of column \"{}\": {e}",
                        c.name
                    )))
                })
        })
        .collect::<Result<_>>()?;
    let mut out = insert.clone();
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        let full: Vec<Expr> = (0..table.columns.len())
            .map(|i| match given.iter().position(|&g| g == i) {
                Some(j) if !is_default_keyword(&row[j]) => row[j].clone(),
                _ => defaults[i].clone(),
            })
            .collect();
        let mut parens = row.clone();
        parens.content = full;
        rows.push(parens);
    }
    let mut source = source.clone();
    let mut values = values.clone();
    values.rows = rows;
    source.body = Box::new(SetExpr::Values(values));
    out.source = Some(source);
    out.columns = table
        .columns
        .iter()
        .map(|c| ObjectName::from(vec![Ident::with_quote('"', c.name.clone())]))
        .collect();
    Ok(Some(Statement::Insert(out)))
}

/// `UPDATE … SET c = DEFAULT` with the default (or NULL) written in; `None` when no
/// assignment is `DEFAULT`.
pub(super) fn complete_update(stmt: &Statement, table: &TableDef) -> Result<Option<Statement>> {
    let Statement::Update(update) = stmt else {
        return Ok(None);
    };
    if !update
        .assignments
        .iter()
        .any(|a| is_default_keyword(&a.value))
    {
        return Ok(None);
    }
    let mut out = update.clone();
    for a in &mut out.assignments {
        if !is_default_keyword(&a.value) {
            continue;
        }
        let ast::AssignmentTarget::ColumnName(col) = &a.target else {
            continue;
        };
        let idx = table.column_index(&super::object_name(col))?;
        let sql = table.columns[idx].default.as_deref().unwrap_or("NULL");
        a.value = Parser::new(&FreshetDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| ServerError::Planner(PlannerError::Internal(e.to_string())))?;
    }
    Ok(Some(Statement::Update(out)))
}
