//! A stored table or view as a DataFusion table that reads only the key range a query's
//! filters allow.
//!
//! Rows are stored under memcomparable keys (see `freshet_storage::codec`): a view's (and
//! a key-less table's) key is the whole row, a keyed table's is its primary key. So
//! equality filters on the leading key columns, then a range on the next one, bound the
//! RocksDB scan: `SELECT … FROM v WHERE k = 42` reads the rows of `k = 42` only, not the
//! whole view. The filters stay inexact (DataFusion applies them again), so a bound only
//! ever narrows what is read, never what is returned.
//!
//! Every scan of one query reads the query's one RocksDB snapshot (`scan::Snapshot`,
//! taken by `Db::context_for`), so that it sees every relation at the same checkpoint.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::ExecutionPlan;
use freshet_engine::chunk::rows_to_batch;
use freshet_storage::{codec, keys, prefix_end, Reader, RowLayout, Store};

use crate::index_scan::IndexInfo;

pub struct StoredRelation {
    store: Store,
    id: u64,
    schema: SchemaRef,
    layout: RowLayout,
    /// The columns the stored key is made of, in key order.
    key_columns: Vec<usize>,
    /// The statement's `statement_timeout`, if it has one.
    deadline: Option<Instant>,
    /// The server's scan threads (see `scan`).
    scans: Arc<crate::scan::Scans>,
    /// The snapshot every scan of the query reads (`None`: each its own).
    snapshot: Option<crate::scan::Snapshot>,
    /// Its name, and the indexes a scan may read instead of it.
    name: String,
    indexes: Vec<IndexInfo>,
}

impl std::fmt::Debug for StoredRelation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRelation")
            .field("id", &self.id)
            .field("key_columns", &self.key_columns)
            .finish()
    }
}

impl StoredRelation {
    pub fn new(store: Store, id: u64, schema: SchemaRef, layout: RowLayout, pk: &[usize]) -> Self {
        let key_columns = match layout {
            RowLayout::Keyed => pk.to_vec(),
            RowLayout::Multiset => (0..schema.fields().len()).collect(),
        };
        StoredRelation {
            store,
            id,
            schema,
            layout,
            key_columns,
            deadline: None,
            scans: Arc::default(),
            snapshot: None,
            name: String::new(),
            indexes: Vec::new(),
        }
    }

    /// Reads through `indexes` when its filters bound their columns better (see
    /// `index_scan`); `name` is its own, for `EXPLAIN`.
    pub fn with_indexes(mut self, name: &str, indexes: Vec<IndexInfo>) -> Self {
        self.name = name.to_string();
        self.indexes = indexes;
        self
    }

    /// Reads from `snapshot`, shared with the query's other relations.
    pub fn with_snapshot(mut self, snapshot: crate::scan::Snapshot) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// Counts its scan threads among the server's.
    pub fn with_scans(mut self, scans: Arc<crate::scan::Scans>) -> Self {
        self.scans = scans;
        self
    }

    /// Makes scans fail with [`Canceled`] once `deadline` passes.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The key range `[start, end)` the filters allow (the whole relation without usable
    /// filters).
    #[cfg(test)]
    fn key_range(&self, filters: &[Expr]) -> (Vec<u8>, Option<Vec<u8>>) {
        let b = bound(self.id, &self.schema, &self.key_columns, filters);
        (b.start, b.end)
    }

    /// The relation's columns a scan with `projection` and `filters` needs.
    fn needed_columns(&self, projection: Option<&Vec<usize>>, filters: &[Expr]) -> Vec<usize> {
        let mut needed: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        for f in filters {
            for c in f.column_refs() {
                if let Ok(i) = self.schema.index_of(&c.name) {
                    if !needed.contains(&i) {
                        needed.push(i);
                    }
                }
            }
        }
        needed
    }
}

/// A key range of a stored relation, and how much of its key the filters fix: two per
/// leading column bound by an equality, one more for a range on the next one.
struct Bound {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    score: usize,
}

/// The key range `[start, end)` of relation `id` (columns `schema`, stored under keys
/// made of `key_columns`) that the filters allow: the whole relation without usable
/// filters.
fn bound(id: u64, schema: &SchemaRef, key_columns: &[usize], filters: &[Expr]) -> Bound {
    let mut prefix = keys::rows_prefix(id);
    let mut score = 0;
    for &c in key_columns {
        let name = schema.field(c).name();
        let ty = schema.field(c).data_type();
        let mut eq = None;
        let (mut lo, mut hi) = (None, None);
        for f in filters {
            for (op, v) in comparisons(f, name, ty) {
                match op {
                    Operator::Eq => eq = Some(v),
                    Operator::Gt | Operator::GtEq => lo = Some(v),
                    Operator::Lt | Operator::LtEq => hi = Some((v, op == Operator::LtEq)),
                    _ => {}
                }
            }
        }
        if let Some(v) = eq {
            if codec::encode_value(&v, &mut prefix).is_err() {
                break;
            }
            score += 2;
            continue;
        }
        // A range on this column ends the bound (later columns are not ordered
        // within it).
        let mut start = prefix.clone();
        let mut end = prefix_end(&prefix);
        let mut ranged = false;
        if let Some(v) = lo {
            let mut s = prefix.clone();
            if codec::encode_value(&v, &mut s).is_ok() {
                start = s;
                ranged = true;
            }
        }
        if let Some((v, inclusive)) = hi {
            let mut e = prefix.clone();
            if codec::encode_value(&v, &mut e).is_ok() {
                end = if inclusive { prefix_end(&e) } else { Some(e) };
                ranged = true;
            }
        }
        return Bound {
            start,
            end,
            score: score + usize::from(ranged),
        };
    }
    let end = prefix_end(&prefix);
    Bound {
        start: prefix,
        end,
        score,
    }
}

/// The bytes a memory pool allows (everything, if it has no limit).
pub(crate) fn memory_budget(limit: MemoryLimit) -> usize {
    match limit {
        MemoryLimit::Finite(n) => n,
        _ => usize::MAX,
    }
}

/// `57014`: a statement ran past its `statement_timeout` while it read stored rows.
#[derive(Debug, thiserror::Error)]
#[error("canceling statement due to statement timeout")]
pub struct Canceled;

/// [`Canceled`] once `deadline` has passed.
pub(crate) fn check_deadline(deadline: Option<Instant>) -> DfResult<()> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(DataFusionError::External(Box::new(Canceled))),
        _ => Ok(()),
    }
}

/// The pairs with `start <= key < end` (no end: to the last key), failing with
/// "resources exhausted" (`53200`) as soon as their keys and values pass `budget` bytes
/// (a query's memory limit; decoded, they take several times as much), and with
/// [`Canceled`] once `deadline` passes.
pub(crate) fn scan_within(
    r: &dyn Reader,
    start: &[u8],
    end: Option<&[u8]>,
    budget: usize,
    deadline: Option<Instant>,
) -> DfResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut late = false;
    r.walk(start, end, false, &mut |k, v| {
        bytes += k.len() + v.len();
        if bytes > budget {
            return false;
        }
        if out.len() % 1024 == 1023 && deadline.is_some_and(|d| Instant::now() >= d) {
            late = true;
            return false;
        }
        out.push((k.to_vec(), v.to_vec()));
        true
    })
    .map_err(|e| DataFusionError::External(Box::new(e)))?;
    if late {
        return Err(DataFusionError::External(Box::new(Canceled)));
    }
    if bytes > budget {
        return Err(DataFusionError::ResourcesExhausted(format!(
            "the stored rows this query reads take more than its memory limit of {budget} bytes"
        )));
    }
    Ok(out)
}

/// A relation's rows (each with its multiplicity) as batches of `schema`, a row that
/// occurs n times repeated n times.
pub(crate) fn relation_batches(
    schema: &SchemaRef,
    rows: Vec<(Vec<ScalarValue>, i64)>,
) -> Result<Vec<RecordBatch>, freshet_engine::EngineError> {
    let mut expanded = Vec::with_capacity(rows.len());
    for (row, n) in rows {
        for _ in 1..n.max(1) {
            expanded.push(row.clone());
        }
        expanded.push(row);
    }
    if expanded.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![rows_to_batch(schema.clone(), &expanded)?])
}

/// The comparisons `column <op> literal` (or `literal <op> column`, flipped) in a filter
/// and its AND-ed parts, with the literal cast exactly to the column's type; comparisons
/// whose literal does not convert without loss are left out.
fn comparisons(e: &Expr, column: &str, ty: &DataType) -> Vec<(Operator, ScalarValue)> {
    let mut out = Vec::new();
    collect(e, column, ty, &mut out);
    out
}

fn collect(e: &Expr, column: &str, ty: &DataType, out: &mut Vec<(Operator, ScalarValue)>) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
            collect(left, column, ty, out);
            collect(right, column, ty, out);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, v) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (*op, v),
                (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => match op.swap() {
                    Some(op) => (op, v),
                    None => return,
                },
                _ => return,
            };
            if !matches!(
                op,
                Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
            ) || v.is_null()
            {
                return;
            }
            if let Some(v) = exact_cast(v, ty) {
                out.push((op, v));
            }
        }
        Expr::Between(b) if !b.negated => {
            if let Expr::Column(c) = b.expr.as_ref() {
                if c.name == column {
                    if let (Expr::Literal(lo, _), Expr::Literal(hi, _)) =
                        (b.low.as_ref(), b.high.as_ref())
                    {
                        if let (Some(lo), Some(hi)) = (exact_cast(lo, ty), exact_cast(hi, ty)) {
                            out.push((Operator::GtEq, lo));
                            out.push((Operator::LtEq, hi));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// `v` as a value of type `ty`, if the cast loses nothing (casting back gives `v`).
pub(crate) fn exact_cast(v: &ScalarValue, ty: &DataType) -> Option<ScalarValue> {
    let c = v.cast_to(ty).ok()?;
    if c.is_null() || c.cast_to(&v.data_type()).ok()? != *v {
        return None;
    }
    Some(c)
}

/// Runs `f`, which reads storage synchronously, so that the runtime's other tasks do not
/// wait behind it: on a multi-threaded runtime the worker hands its tasks over first.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[async_trait]
impl TableProvider for StoredRelation {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    /// Streams the rows of the key range the filters allow, from one snapshot (see
    /// `scan`): memory stays flat however many rows the range holds.
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let own = bound(self.id, &self.schema, &self.key_columns, filters);
        let needed = match self.indexes.is_empty() {
            true => Vec::new(),
            false => self.needed_columns(projection, filters),
        };
        let best = self
            .indexes
            .iter()
            .filter(|i| i.covers(&needed))
            .map(|i| {
                let all: Vec<usize> = (0..i.base_cols.len()).collect();
                (i, bound(i.id, &i.schema, &all, filters))
            })
            .filter(|(_, b)| b.score > own.score)
            .max_by_key(|(_, b)| b.score);
        if let Some((index, b)) = best {
            let part = crate::scan::ScanPartition {
                store: self.store.clone(),
                schema: index.schema.clone(),
                layout: RowLayout::Multiset,
                start: b.start,
                end: b.end,
                prefix_len: keys::rows_prefix(index.id).len(),
                scans: self.scans.clone(),
                deadline: self.deadline,
                counted_at: None,
                limit,
                snapshot: self.snapshot.clone(),
            };
            let wanted: Vec<usize> = match projection {
                Some(p) => p.clone(),
                None => (0..self.schema.fields().len()).collect(),
            };
            let scan = StreamingTableExec::try_new(
                index.schema.clone(),
                vec![Arc::new(part)],
                Some(&index.positions(&wanted)),
                Vec::<datafusion::physical_expr::LexOrdering>::new(),
                false,
                limit,
            )?;
            return Ok(Arc::new(crate::index_scan::IndexScanExec::new(
                &index.name,
                &self.name,
                Arc::new(scan),
            )));
        }
        let part = crate::scan::ScanPartition {
            store: self.store.clone(),
            schema: self.schema.clone(),
            layout: self.layout,
            start: own.start,
            end: own.end,
            prefix_len: keys::rows_prefix(self.id).len(),
            scans: self.scans.clone(),
            deadline: self.deadline,
            counted_at: None,
            // DataFusion passes a limit only with no filter left above the scan.
            limit,
            snapshot: self.snapshot.clone(),
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema.clone(),
            vec![Arc::new(part)],
            projection,
            Vec::<datafusion::physical_expr::LexOrdering>::new(),
            false,
            limit,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::prelude::{col, lit};

    use super::*;

    fn rel() -> StoredRelation {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int32, true),
        ]));
        StoredRelation::new(Store::memory(), 7, schema, RowLayout::Multiset, &[])
    }

    fn key(vals: &[ScalarValue]) -> Vec<u8> {
        keys::row_key(7, &codec::encode_row(vals).expect("encode"))
    }

    #[test]
    fn equality_then_range_bounds_the_scan() {
        let r = rel();
        let whole = keys::rows_prefix(7);
        assert_eq!(r.key_range(&[]), (whole.clone(), prefix_end(&whole)));
        // a = 5 (an Int32 literal against an Int64 column converts exactly)
        let (s, e) = r.key_range(&[col("a").eq(lit(5i32))]);
        let p = key(&[ScalarValue::Int64(Some(5))]);
        assert_eq!((s, e), (p.clone(), prefix_end(&p)));
        // a = 5 AND b >= 'x' AND b < 'y': the range is on b, within a = 5.
        let f = col("a")
            .eq(lit(5i64))
            .and(col("b").gt_eq(lit("x")))
            .and(col("b").lt(lit("y")));
        let (s, e) = r.key_range(&[f]);
        let five_x = key(&[
            ScalarValue::Int64(Some(5)),
            ScalarValue::Utf8(Some("x".into())),
        ]);
        let five_y = key(&[
            ScalarValue::Int64(Some(5)),
            ScalarValue::Utf8(Some("y".into())),
        ]);
        assert_eq!((s, e), (five_x, Some(five_y)));
        // A literal that does not convert exactly (2.5 against BIGINT) bounds nothing.
        assert_eq!(r.key_range(&[col("a").eq(lit(2.5f64))]).0, whole);
        // An equality on b alone cannot bound a key that starts with a.
        assert_eq!(r.key_range(&[col("b").eq(lit("x"))]).0, whole);
        // 10 > a, flipped: a < 10.
        let (s, e) = r.key_range(&[lit(10i64).gt(col("a"))]);
        assert_eq!((s, e), (whole, Some(key(&[ScalarValue::Int64(Some(10))]))));
    }
}
