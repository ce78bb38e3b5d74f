//! `UNION ALL`: passes every input's changes on under the union's schema (the planner has
//! already cast each input to the union's column types). Stateless.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use freshet_storage::Txn;

use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::EngineError;

pub struct Union {
    schema: SchemaRef,
}

impl Union {
    pub fn new(schema: SchemaRef) -> Union {
        Union { schema }
    }
}

impl Operator for Union {
    fn name(&self) -> &'static str {
        "union_all"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        _state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        // With no columns (a `count(*)` over the union needs none) the rows are counted.
        let options = RecordBatchOptions::new().with_row_count(Some(chunk.batch.num_rows()));
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            chunk.batch.columns().to_vec(),
            &options,
        )?;
        Ok(Chunk::new(batch, chunk.weights))
    }
}
