//! Reading a relation through one of its indexes (`CREATE INDEX`, see
//! `session::index`). An index is a view whose stored key starts with the index's
//! columns; a scan of the relation whose filters bound those columns better than they
//! bound the relation's own key reads the index's key range instead, provided the index
//! stores every column the query uses. `EXPLAIN` shows it as `IndexScanExec` above the
//! scan it wraps.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// An index a query may read instead of its relation.
#[derive(Clone, Debug)]
pub struct IndexInfo {
    pub name: String,
    /// The index's view id.
    pub id: u64,
    /// Its stored columns, in its order, with the relation's fields (names, types,
    /// nullability): the batches it yields read as the relation's columns.
    pub schema: SchemaRef,
    /// For each of its columns, the relation's column it holds.
    pub base_cols: Vec<usize>,
}

impl IndexInfo {
    /// Whether it stores every one of the relation's columns in `needed`.
    pub fn covers(&self, needed: &[usize]) -> bool {
        needed.iter().all(|c| self.base_cols.contains(c))
    }

    /// `cols` (the relation's) as positions among the index's columns.
    pub fn positions(&self, cols: &[usize]) -> Vec<usize> {
        cols.iter()
            .filter_map(|c| self.base_cols.iter().position(|b| b == c))
            .collect()
    }
}

/// A scan of a relation that reads index `index` instead: the scan itself is its child.
#[derive(Debug)]
pub struct IndexScanExec {
    index: String,
    relation: String,
    input: Arc<dyn ExecutionPlan>,
}

impl IndexScanExec {
    pub fn new(index: &str, relation: &str, input: Arc<dyn ExecutionPlan>) -> Self {
        IndexScanExec {
            index: index.to_string(),
            relation: relation.to_string(),
            input,
        }
    }
}

impl DisplayAs for IndexScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "IndexScanExec: index={} on={}",
            self.index, self.relation
        )
    }
}

impl ExecutionPlan for IndexScanExec {
    fn name(&self) -> &str {
        "IndexScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("IndexScanExec without its scan".into()))?;
        Ok(Arc::new(IndexScanExec::new(
            &self.index,
            &self.relation,
            input,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
