//! Filter: keeps the rows (inserts and deletes alike) for which the predicate is true.
//! A row and its retraction evaluate the same predicate, so they are kept or dropped
//! together and no state is needed.

use datafusion::arrow::array::BooleanArray;
use freshet_storage::Txn;

use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::plan::PhysExpr;
use crate::EngineError;

pub struct Filter {
    predicate: PhysExpr,
}

impl Filter {
    pub fn new(predicate: PhysExpr) -> Filter {
        Filter { predicate }
    }
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        _state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        if chunk.is_empty() {
            return Ok(chunk);
        }
        let mask = self
            .predicate
            .evaluate(&chunk.batch)?
            .into_array(chunk.len())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| EngineError::Internal("filter predicate is not boolean".into()))?;
        chunk.filter(mask)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use freshet_storage::{Store, Txn};

    use super::*;
    use crate::chunk::arc_schema;

    #[test]
    fn keeps_matching_inserts_and_deletes() {
        let schema = arc_schema(vec![Field::new("a", DataType::Int64, true)]);
        let pred = binary(
            col("a", &schema).unwrap(),
            BinOp::Gt,
            lit(ScalarValue::Int64(Some(1))),
            &schema,
        )
        .unwrap();
        let mut f = Filter::new(pred);
        let rows: Vec<_> = [1, 2, 3, 2]
            .iter()
            .map(|v| vec![ScalarValue::Int64(Some(*v))])
            .chain([vec![ScalarValue::Int64(None)]])
            .collect();
        let chunk = Chunk::from_rows(schema, &rows, vec![1, 1, 1, -1, 1]).unwrap();
        let mut txn = Txn::new(Store::memory());
        let out = f.process(0, chunk, &mut txn).unwrap();
        assert_eq!(out.weights, vec![1, 1, -1]);
        let vals: Vec<_> = out
            .rows()
            .unwrap()
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(
            vals,
            vec![
                ScalarValue::Int64(Some(2)),
                ScalarValue::Int64(Some(3)),
                ScalarValue::Int64(Some(2))
            ]
        );
        let _ = Arc::new(());
    }
}
