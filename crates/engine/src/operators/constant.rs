//! Constant rows (`VALUES`, a `SELECT` without `FROM`): a leaf with no input that emits
//! its rows once, when the view is created (`Dataflow::init`), and never changes them.
//! Stateless: after a restart the view's stored rows already hold them.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::ScalarValue;
use freshet_storage::Txn;

use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::EngineError;

pub struct Constant {
    schema: SchemaRef,
    rows: Vec<Vec<ScalarValue>>,
}

impl Constant {
    pub fn new(schema: SchemaRef, rows: Vec<Vec<ScalarValue>>) -> Constant {
        Constant { schema, rows }
    }
}

impl Operator for Constant {
    fn name(&self) -> &'static str {
        "constant"
    }

    fn process(&mut self, input: usize, _chunk: Chunk, _: &mut Txn) -> Result<Chunk, EngineError> {
        Err(EngineError::Internal(format!(
            "constant rows have no input {input}"
        )))
    }

    fn initial_output(&mut self, _state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let weights = vec![1; self.rows.len()];
        if self.schema.fields().is_empty() {
            // A SELECT without FROM: rows without columns.
            let options = RecordBatchOptions::new().with_row_count(Some(self.rows.len()));
            let batch = RecordBatch::try_new_with_options(self.schema.clone(), vec![], &options)?;
            return Ok(Some(Chunk::new(batch, weights)));
        }
        Ok(Some(Chunk::from_rows(
            self.schema.clone(),
            &self.rows,
            weights,
        )?))
    }
}
