//! The point-lookup fast path: `SELECT cols FROM rel WHERE a = v [AND b = w …]` over one
//! stored table or view, answered straight from RocksDB without planning the query in
//! DataFusion.
//!
//! Dashboards and services mostly ask for one key of a view. Planning and executing such a
//! query in DataFusion costs far more than reading the few rows it returns, so a query of
//! exactly this shape (checked by printing back what was recognized and comparing it with
//! the statement: any other clause makes it differ) reads the rows under the key prefix
//! the equalities give (see `stored.rs` for the key layout), keeps those that satisfy every
//! equality, and projects the columns. Anything else, or a value that does not convert
//! exactly to its column's type, takes the general path, which gives the same answer.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_engine::chunk::{column_types, rows_to_batch};
use freshet_planner::naming::ident_name;
use freshet_planner::sqlparser::ast::{
    BinaryOperator, Expr, SelectItem, SetExpr, Statement, TableFactor, Value,
};
use freshet_storage::{codec, decode_relation, keys, RowLayout, Store};

use crate::error::ServerError;
use crate::session::Output;
use crate::stored::exact_cast;

/// A recognized point query.
#[derive(Debug)]
pub struct PointQuery {
    pub table: String,
    /// (column, output name) per output column; `None` for `*`.
    items: Option<Vec<(String, String)>>,
    /// `column = operand`, AND-ed.
    eqs: Vec<(String, Operand)>,
}

#[derive(Debug)]
enum Operand {
    Value(Value),
    /// `$n` (1-based).
    Param(usize),
}

/// The point query `stmt` is, if it has exactly that shape.
pub fn point_query(stmt: &Statement) -> Option<PointQuery> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let [from] = s.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name,
        args: None,
        with_hints,
        version: None,
        with_ordinality: false,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
        ..
    } = &from.relation
    else {
        return None;
    };
    if !from.joins.is_empty()
        || !with_hints.is_empty()
        || !partitions.is_empty()
        || !index_hints.is_empty()
    {
        return None;
    }
    let [part] = name.0.as_slice() else {
        return None;
    };
    let table = ident_name(part.as_ident()?);
    let items = match s.projection.as_slice() {
        [SelectItem::Wildcard(_)] => None,
        items => Some(
            items
                .iter()
                .map(|i| match i {
                    SelectItem::UnnamedExpr(Expr::Identifier(c)) => {
                        Some((ident_name(c), ident_name(c)))
                    }
                    SelectItem::ExprWithAlias {
                        expr: Expr::Identifier(c),
                        alias,
                    } => Some((ident_name(c), ident_name(alias))),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    let mut eqs = Vec::new();
    collect_eqs(s.selection.as_ref()?, &mut eqs)?;
    // Nothing but what was recognized: the statement prints back the same.
    let projection: Vec<String> = s.projection.iter().map(|p| p.to_string()).collect();
    let canonical = format!(
        "SELECT {} FROM {} WHERE {}",
        projection.join(", "),
        from,
        s.selection.as_ref()?
    );
    (stmt.to_string() == canonical).then_some(PointQuery { table, items, eqs })
}

fn collect_eqs(e: &Expr, out: &mut Vec<(String, Operand)>) -> Option<()> {
    let Expr::BinaryOp { left, op, right } = e else {
        return None;
    };
    match op {
        BinaryOperator::And => {
            collect_eqs(left, out)?;
            collect_eqs(right, out)
        }
        BinaryOperator::Eq => {
            let (c, v) = match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(c), Expr::Value(v)) | (Expr::Value(v), Expr::Identifier(c)) => {
                    (c, &v.value)
                }
                _ => return None,
            };
            let operand = match v {
                Value::Placeholder(p) => Operand::Param(p.strip_prefix('$')?.parse().ok()?),
                Value::Null => return None,
                v => Operand::Value(v.clone()),
            };
            out.push((ident_name(c), operand));
            Some(())
        }
        _ => None,
    }
}

/// A literal as a value of `ty`, where SQL gives it that type without doubt: numbers for
/// numeric columns, strings for text columns, booleans for boolean ones.
fn literal(v: &Value, ty: &DataType) -> Option<ScalarValue> {
    match (v, ty) {
        (
            Value::Number(n, _),
            DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64,
        ) => {
            let exact = ScalarValue::try_from_string(n.to_string(), ty).ok()?;
            // 2.5 against an integer column: not an equality on the column's values.
            (exact.to_string() == *n
                || !matches!(ty, DataType::Int16 | DataType::Int32 | DataType::Int64))
            .then_some(exact)
        }
        (Value::SingleQuotedString(s), DataType::Utf8) => Some(ScalarValue::Utf8(Some(s.clone()))),
        (Value::Boolean(b), DataType::Boolean) => Some(ScalarValue::Boolean(Some(*b))),
        _ => None,
    }
}

impl PointQuery {
    /// Names `SELECT *`'s columns (those of `schema`, in order), so that the query reads
    /// the same from an index that stores them in another order.
    pub fn expand_star(&mut self, schema: &SchemaRef) {
        if self.items.is_none() {
            self.items = Some(
                schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.name().clone()))
                    .collect(),
            );
        }
    }

    /// Answers the query over relation `id` (rows of `schema`, keyed by `key_columns`), or
    /// `None` when it needs the general path.
    pub fn run(
        &self,
        store: &Store,
        id: u64,
        schema: &SchemaRef,
        layout: RowLayout,
        pk: &[usize],
        params: &[ScalarValue],
    ) -> Result<Option<Output>, ServerError> {
        let index = |name: &str| schema.fields().iter().position(|f| f.name() == name);
        // The equalities as (column, value of its type).
        let mut eqs: Vec<(usize, ScalarValue)> = Vec::with_capacity(self.eqs.len());
        for (name, operand) in &self.eqs {
            let Some(c) = index(name) else {
                return Ok(None);
            };
            let ty = schema.field(c).data_type();
            let v = match operand {
                Operand::Value(v) => literal(v, ty),
                Operand::Param(n) => n
                    .checked_sub(1)
                    .and_then(|i| params.get(i))
                    .and_then(|p| exact_cast(p, ty)),
            };
            let Some(v) = v else {
                return Ok(None);
            };
            eqs.push((c, v));
        }
        let out_cols: Vec<(usize, String)> = match &self.items {
            None => schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (i, f.name().clone()))
                .collect(),
            Some(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (c, alias) in items {
                    let Some(i) = index(c) else {
                        return Ok(None);
                    };
                    out.push((i, alias.clone()));
                }
                out
            }
        };
        // The key prefix: the leading key columns with an equality.
        let key_columns: Vec<usize> = match layout {
            RowLayout::Keyed => pk.to_vec(),
            RowLayout::Multiset => (0..schema.fields().len()).collect(),
        };
        let mut prefix = keys::rows_prefix(id);
        for c in key_columns {
            let Some((_, v)) = eqs.iter().find(|(e, _)| *e == c) else {
                break;
            };
            codec::encode_value(v, &mut prefix)?;
        }
        if prefix.len() == keys::rows_prefix(id).len() {
            // No equality on the leading key column: not a lookup. The general path
            // streams the scan (with the memory limit and the statement's deadline)
            // instead of reading the whole relation here.
            return Ok(None);
        }
        let pairs = store.read_snapshot(|r| r.scan_prefix(&prefix))?;
        let rows = decode_relation(
            pairs,
            keys::rows_prefix(id).len(),
            &column_types(schema),
            layout,
        )?;
        let mut out_rows = Vec::new();
        for (row, n) in rows {
            if !eqs.iter().all(|(c, v)| &row[*c] == v) {
                continue;
            }
            let projected: Vec<ScalarValue> =
                out_cols.iter().map(|(i, _)| row[*i].clone()).collect();
            for _ in 0..n.max(1) {
                out_rows.push(projected.clone());
            }
        }
        let out_schema: SchemaRef = Arc::new(Schema::new(
            out_cols
                .iter()
                .map(|(i, name)| Field::new(name, schema.field(*i).data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batches = if out_rows.is_empty() {
            vec![]
        } else {
            vec![rows_to_batch(out_schema.clone(), &out_rows)?]
        };
        Ok(Some(Output::Rows {
            schema: out_schema,
            batches,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        freshet_planner::sqlparser::parser::Parser::parse_sql(
            &freshet_planner::sql_dialect::FreshetDialect {},
            sql,
        )
        .expect("parse")
        .remove(0)
    }

    #[test]
    fn recognizes_only_plain_point_queries() {
        let q =
            point_query(&parse("SELECT bids, top AS t FROM v WHERE auction = $1")).expect("point");
        assert_eq!(q.table, "v");
        assert_eq!(
            q.items,
            Some(vec![
                ("bids".into(), "bids".into()),
                ("top".into(), "t".into())
            ])
        );
        assert!(matches!(q.eqs.as_slice(), [(c, Operand::Param(1))] if c == "auction"));
        assert!(point_query(&parse("SELECT * FROM v WHERE 'x' = k AND n = 3")).is_some());
        for other in [
            "SELECT * FROM v",
            "SELECT * FROM v WHERE a = 1 ORDER BY b",
            "SELECT * FROM v WHERE a = 1 LIMIT 1",
            "SELECT DISTINCT a FROM v WHERE a = 1",
            "SELECT a + 1 FROM v WHERE a = 1",
            "SELECT * FROM v WHERE a = 1 OR b = 2",
            "SELECT * FROM v WHERE a > 1",
            "SELECT * FROM v WHERE a = NULL",
            "SELECT * FROM v, w WHERE a = 1",
            "SELECT * FROM v JOIN w ON true WHERE a = 1",
            "SELECT count(*) FROM v WHERE a = 1",
            "SELECT a FROM v WHERE a = 1 GROUP BY a",
            "SELECT * FROM s.v WHERE a = 1",
            "SELECT * FROM tumble(v, t, INTERVAL '1' MINUTE) WHERE a = 1",
            "WITH x AS (SELECT 1) SELECT * FROM v WHERE a = 1",
            "SELECT * FROM v WHERE a = 1 UNION SELECT * FROM v WHERE a = 2",
        ] {
            assert!(point_query(&parse(other)).is_none(), "{other}");
        }
    }

    #[test]
    fn literals_convert_only_exactly() {
        let n = |s: &str| Value::Number(s.to_string(), false);
        assert_eq!(
            literal(&n("42"), &DataType::Int64),
            Some(ScalarValue::Int64(Some(42)))
        );
        assert_eq!(literal(&n("2.5"), &DataType::Int64), None);
        assert_eq!(literal(&n("42"), &DataType::Utf8), None);
        assert_eq!(
            literal(&Value::SingleQuotedString("42".into()), &DataType::Int64),
            None
        );
    }
}
