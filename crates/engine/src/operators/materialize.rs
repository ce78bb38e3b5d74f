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
        for (row, w) in chunk.rows()?.iter().zip(&chunk.weights) {
            let key = keys::row_key(self.relation, &codec::encode_row(row)?);
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
