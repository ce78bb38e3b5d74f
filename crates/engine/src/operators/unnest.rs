//! `unnest(array)` in a view: each input row once per element of its unnested arrays (in
//! lock step when there are several, the shorter ones padded with NULLs, as Postgres
//! runs set-returning functions in a select list), with the other columns repeated.
//! Stateless: a deleted row retracts exactly the rows its insert produced.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use freshet_storage::Txn;

use crate::chunk::{Chunk, Row};
use crate::operator::Operator;
use crate::plan::UnnestNulls;
use crate::EngineError;

pub struct Unnest {
    /// Input columns that are arrays to unnest.
    lists: Vec<usize>,
    /// For each output column, the input column it comes from.
    deps: Vec<usize>,
    nulls: UnnestNulls,
    schema: SchemaRef,
}

impl Unnest {
    pub fn new(
        lists: Vec<usize>,
        deps: Vec<usize>,
        nulls: UnnestNulls,
        schema: SchemaRef,
    ) -> Unnest {
        Unnest {
            lists,
            deps,
            nulls,
            schema,
        }
    }

    /// The elements of an array value (`None`: a NULL array).
    fn elements(v: &ScalarValue) -> Result<Option<Vec<ScalarValue>>, EngineError> {
        let values = match v {
            ScalarValue::List(a) if !v.is_null() => a.value(0),
            ScalarValue::LargeList(a) if !v.is_null() => a.value(0),
            ScalarValue::FixedSizeList(a) if !v.is_null() => a.value(0),
            _ if v.is_null() => return Ok(None),
            other => {
                return Err(EngineError::Internal(format!(
                    "unnest of a {} value",
                    other.data_type()
                )))
            }
        };
        (0..values.len())
            .map(|i| Ok(ScalarValue::try_from_array(&values, i)?))
            .collect::<Result<Vec<_>, EngineError>>()
            .map(Some)
    }
}

impl Operator for Unnest {
    fn name(&self) -> &'static str {
        "unnest"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        _state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let mut rows: Vec<Row> = Vec::new();
        let mut weights = Vec::new();
        for (row, w) in chunk.rows()?.into_iter().zip(&chunk.weights) {
            let mut elements = Vec::with_capacity(self.lists.len());
            for &c in &self.lists {
                elements.push(Self::elements(&row[c])?);
            }
            let longest = elements.iter().flatten().map(Vec::len).max().unwrap_or(0);
            let all_null = elements.iter().all(Option::is_none);
            let n = match self.nulls {
                UnnestNulls::Drop => longest,
                UnnestNulls::Preserve if longest == 0 && all_null => 1,
                UnnestNulls::PreserveAndExpandEmpty if longest == 0 => 1,
                _ => longest,
            };
            for k in 0..n {
                let mut out = Vec::with_capacity(self.deps.len());
                for (j, &d) in self.deps.iter().enumerate() {
                    out.push(match self.lists.iter().position(|&c| c == d) {
                        Some(l) => match elements[l].as_ref().and_then(|e| e.get(k)) {
                            Some(v) => v.clone(),
                            None => ScalarValue::try_from(self.schema.field(j).data_type())?,
                        },
                        None => row[d].clone(),
                    });
                }
                rows.push(out);
                weights.push(*w);
            }
        }
        Chunk::from_rows(self.schema.clone(), &rows, weights)
    }
}
