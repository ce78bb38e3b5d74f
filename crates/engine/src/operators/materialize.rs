//! Materialize: keeps a view's rows, as a multiset (`encoded row → multiplicity`) under
//! the view's relation id, where queries read them. Passes its input through, so views
//! over this view see the same changelog.

use freshet_storage::{codec, keys, Txn};

use super::add_count;
use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::EngineError;

pub struct Materialize {
    relation: u64,
}

impl Materialize {
    pub fn new(relation: u64) -> Materialize {
        Materialize { relation }
    }
}

impl Operator for Materialize {
    fn name(&self) -> &'static str {
        "materialize"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let encoded = codec::encode_columns(chunk.batch.columns(), chunk.len())?;
        for (row, w) in encoded.iter().zip(&chunk.weights) {
            let key = keys::row_key(self.relation, row);
            let (_, new) = add_count(state, key, *w)?;
            if new < 0 {
                return Err(EngineError::Internal(format!(
                    "view {} would hold a row {} times",
                    self.relation, new
                )));
            }
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;
    use freshet_storage::{decode_relation, keys, RowLayout, Store, Txn};

    use super::*;
    use crate::chunk::arc_schema;

    #[test]
    fn keeps_rows_as_a_multiset() {
        let schema = arc_schema(vec![Field::new("a", DataType::Utf8, true)]);
        let s = |v: &str| vec![ScalarValue::Utf8(Some(v.into()))];
        let mut m = Materialize::new(9);
        let mut txn = Txn::new(Store::memory());
        let c = Chunk::from_rows(schema.clone(), &[s("x"), s("x"), s("y")], vec![1, 1, 1]).unwrap();
        let out = m.process(0, c, &mut txn).unwrap();
        assert_eq!(out.len(), 3, "input passes through");
        let c = Chunk::from_rows(schema.clone(), &[s("x"), s("y")], vec![-1, -1]).unwrap();
        m.process(0, c, &mut txn).unwrap();
        let prefix = keys::rows_prefix(9);
        let rows = decode_relation(
            txn.scan_prefix(&prefix).unwrap(),
            prefix.len(),
            &[DataType::Utf8],
            RowLayout::Multiset,
        )
        .unwrap();
        assert_eq!(rows, vec![(s("x"), 1)]);
        // Deleting a row that is not there is an internal error, not a silent negative count.
        let c = Chunk::from_rows(schema, &[s("z")], vec![-1]).unwrap();
        assert!(m.process(0, c, &mut txn).is_err());
    }
}
