//! Project: computes the output columns of each row. Stateless; weights pass through.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use freshet_storage::Txn;

use super::eval_all;
use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::plan::PhysExpr;
use crate::EngineError;

pub struct Project {
    exprs: Vec<PhysExpr>,
    schema: SchemaRef,
}

impl Project {
    pub fn new(exprs: Vec<PhysExpr>, schema: SchemaRef) -> Project {
        Project { exprs, schema }
    }
}

impl Operator for Project {
    fn name(&self) -> &'static str {
        "project"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        _state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let mut cols = eval_all(&self.exprs, &chunk.batch)?;
        for (c, f) in cols.iter_mut().zip(self.schema.fields()) {
            if c.data_type() != f.data_type() {
                *c = crate::numeric_special::cast(c, f.data_type(), &Default::default())?;
            }
        }
        let opts = RecordBatchOptions::new().with_row_count(Some(chunk.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), cols, &opts)?;
        Ok(Chunk::new(batch, chunk.weights))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use freshet_storage::{Store, Txn};

    use super::*;
    use crate::chunk::arc_schema;

    #[test]
    fn computes_columns_and_keeps_weights() {
        let input = arc_schema(vec![Field::new("a", DataType::Int64, true)]);
        let out_schema = arc_schema(vec![Field::new("b", DataType::Int64, true)]);
        let e = binary(
            col("a", &input).unwrap(),
            BinOp::Multiply,
            lit(ScalarValue::Int64(Some(10))),
            &input,
        )
        .unwrap();
        let mut p = Project::new(vec![e], out_schema);
        let rows = vec![
            vec![ScalarValue::Int64(Some(1))],
            vec![ScalarValue::Int64(Some(2))],
        ];
        let chunk = Chunk::from_rows(input, &rows, vec![1, -1]).unwrap();
        let out = p.process(0, chunk, &mut Txn::new(Store::memory())).unwrap();
        assert_eq!(out.weights, vec![1, -1]);
        assert_eq!(
            out.rows().unwrap(),
            vec![
                vec![ScalarValue::Int64(Some(10))],
                vec![ScalarValue::Int64(Some(20))]
            ]
        );
    }
}
