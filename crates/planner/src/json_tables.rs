//! `jsonb` set-returning functions in `FROM`, over a constant document:
//! `jsonb_array_elements(j)` and `jsonb_array_elements_text(j)` (column `value`),
//! `jsonb_each(j)` and `jsonb_each_text(j)` (columns `key`, `value`), and
//! `jsonb_object_keys(j)`, also by their `json_` names. Their rows are computed when the
//! statement is planned (in a view: when it is created, as `generate_series`' are). A
//! call whose argument reads a column (a lateral call) is rewritten by
//! [`crate::lateral_sets`] where `FROM` has the shape it takes; elsewhere it is refused
//! naming that shape.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, LargeStringBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use freshet_storage::jsonb as canonical;
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Elements { text: bool },
    Each { text: bool },
    Keys,
}

#[derive(Debug)]
struct JsonTable {
    name: &'static str,
    kind: Kind,
}

/// Registers the functions in `ctx`.
pub fn register(ctx: &SessionContext) {
    let functions = [
        ("jsonb_array_elements", Kind::Elements { text: false }),
        ("json_array_elements", Kind::Elements { text: false }),
        ("jsonb_array_elements_text", Kind::Elements { text: true }),
        ("json_array_elements_text", Kind::Elements { text: true }),
        ("jsonb_each", Kind::Each { text: false }),
        ("json_each", Kind::Each { text: false }),
        ("jsonb_each_text", Kind::Each { text: true }),
        ("json_each_text", Kind::Each { text: true }),
        ("jsonb_object_keys", Kind::Keys),
        ("json_object_keys", Kind::Keys),
    ];
    for (name, kind) in functions {
        ctx.register_udtf(name, Arc::new(JsonTable { name, kind }));
    }
}

/// A text column's builder: `jsonb` values are `LargeUtf8`, text `Utf8`.
enum Column {
    Text(StringBuilder),
    Json(LargeStringBuilder),
}

impl Column {
    fn new(json: bool) -> Column {
        if json {
            Column::Json(LargeStringBuilder::new())
        } else {
            Column::Text(StringBuilder::new())
        }
    }
    fn push(&mut self, v: Option<String>) {
        match self {
            Column::Text(b) => b.append_option(v),
            Column::Json(b) => b.append_option(v),
        }
    }
    fn finish(self) -> ArrayRef {
        match self {
            Column::Text(mut b) => Arc::new(b.finish()),
            Column::Json(mut b) => Arc::new(b.finish()),
        }
    }
}

/// A JSON value's text as `->>` gives it (NULL for JSON null).
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(canonical::text(other)),
    }
}

impl JsonTable {
    fn schema(&self) -> SchemaRef {
        let value = |text: bool| {
            Field::new(
                "value",
                if text {
                    DataType::Utf8
                } else {
                    DataType::LargeUtf8
                },
                true,
            )
        };
        Arc::new(Schema::new(match self.kind {
            Kind::Elements { text } => vec![value(text)],
            Kind::Each { text } => vec![Field::new("key", DataType::Utf8, false), value(text)],
            Kind::Keys => vec![Field::new(self.name, DataType::Utf8, false)],
        }))
    }

    /// The rows of document `doc` (none for NULL).
    fn rows(&self, doc: Option<Value>) -> Result<Vec<ArrayRef>> {
        let err = |what: &str| DataFusionError::Execution(format!("cannot {what}"));
        let mut cols: Vec<Column> = match self.kind {
            Kind::Elements { text } => vec![Column::new(!text)],
            Kind::Each { text } => vec![Column::new(false), Column::new(!text)],
            Kind::Keys => vec![Column::new(false)],
        };
        let value_text = |v: &Value, text: bool| {
            if text {
                as_text(v)
            } else {
                Some(canonical::text(v))
            }
        };
        match (self.kind, doc) {
            (_, None) => {}
            (Kind::Elements { text }, Some(Value::Array(items))) => {
                for v in &items {
                    cols[0].push(value_text(v, text));
                }
            }
            (Kind::Elements { .. }, Some(_)) => {
                return Err(err("extract elements from a value that is not an array"))
            }
            (Kind::Each { text }, Some(Value::Object(map))) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
                for k in keys {
                    cols[0].push(Some(k.clone()));
                    cols[1].push(value_text(&map[k], text));
                }
            }
            (Kind::Each { .. }, Some(_)) => {
                return Err(err("deconstruct a value that is not an object"))
            }
            (Kind::Keys, Some(Value::Object(map))) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
                for k in keys {
                    cols[0].push(Some(k.clone()));
                }
            }
            (Kind::Keys, Some(_)) => {
                return Err(err(&format!(
                    "call {} on a value that is not an object",
                    self.name
                )))
            }
        }
        Ok(cols.into_iter().map(Column::finish).collect())
    }
}

impl TableFunctionImpl for JsonTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [arg] = args.exprs() else {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument",
                self.name
            )));
        };
        if !arg.column_refs().is_empty() {
            return Err(DataFusionError::NotImplemented(format!(
                "{} in FROM over a column (a lateral call) is taken right after one \
                 relation: FROM t, {}(t.column) AS e, or FROM t LEFT JOIN LATERAL {}(t.column) \
                 AS e ON true",
                self.name, self.name, self.name
            )));
        }
        // A constant: evaluated once, on a batch of one row without columns.
        let physical = args
            .session()
            .create_physical_expr(arg.clone(), &DFSchema::empty())?;
        let one_row = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let value = physical.evaluate(&one_row)?.into_array(1)?;
        let doc = match ScalarValue::try_from_array(&value, 0)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Some(serde_json::from_str(&s).map_err(|e| {
                DataFusionError::Execution(format!(
                    "invalid input syntax for type json: \"{s}\" ({e})"
                ))
            })?),
            v if v.is_null() => None,
            other => {
                return Err(DataFusionError::Plan(format!(
                    "{} takes jsonb, not {}",
                    self.name,
                    other.data_type()
                )))
            }
        };
        let schema = self.schema();
        let batch = RecordBatch::try_new(schema.clone(), self.rows(doc)?)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
