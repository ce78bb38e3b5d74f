//! Inner equi-join of two changelogs.
//!
//! State: one table per side, `join key | encoded row → multiplicity`, so that the rows
//! matching a key are one prefix scan. A change on one side is first applied to that
//! side's state and then joined with the other side's current rows:
//! `Δ(L ⋈ R) = ΔL ⋈ R + L' ⋈ ΔR`, processed one input chunk at a time, which is exact
//! even when both inputs read the same relation (a self-join). Rows with a NULL key never
//! match (SQL equality) and are not stored.

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_storage::codec::{self, Decoder};
use freshet_storage::Txn;

use super::{add_count, decode_count, eval_all, StateTable};
use crate::chunk::{column_types, Chunk, Row};
use crate::operator::Operator;
use crate::plan::PhysExpr;
use crate::EngineError;

pub struct HashJoin {
    keys: [Vec<PhysExpr>; 2],
    types: [Vec<DataType>; 2],
    tables: [StateTable; 2],
    filter: Option<PhysExpr>,
    schema: SchemaRef,
}

impl HashJoin {
    pub fn new(
        left_keys: Vec<PhysExpr>,
        right_keys: Vec<PhysExpr>,
        left_schema: &SchemaRef,
        right_schema: &SchemaRef,
        filter: Option<PhysExpr>,
        schema: SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> HashJoin {
        HashJoin {
            keys: [left_keys, right_keys],
            types: [column_types(left_schema), column_types(right_schema)],
            tables: [StateTable::new(table_id(0)), StateTable::new(table_id(1))],
            filter,
            schema,
        }
    }
}

impl Operator for HashJoin {
    fn name(&self) -> &'static str {
        "hash_join"
    }

    fn process(
        &mut self,
        input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        if input > 1 {
            return Err(EngineError::Internal(format!("join has no input {input}")));
        }
        let other = 1 - input;
        let key_cols = eval_all(&self.keys[input], &chunk.batch)?;
        let rows = chunk.rows()?;
        let mut out_rows: Vec<Row> = Vec::new();
        let mut out_w = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let key: Row = key_cols
                .iter()
                .map(|c| ScalarValue::try_from_array(c, r))
                .collect::<Result<_, _>>()?;
            if key.iter().any(ScalarValue::is_null) {
                continue;
            }
            let kbytes = codec::encode_row(&key)?;
            let w = chunk.weights[r];
            let rbytes = codec::encode_row(row)?;
            let (_, new) = add_count(state, self.tables[input].key2(&kbytes, &rbytes), w)?;
            if new < 0 {
                return Err(EngineError::Internal(
                    "negative join row multiplicity".into(),
                ));
            }
            let prefix = self.tables[other].key(&kbytes);
            for (k, v) in state.scan_prefix(&prefix)? {
                let other_row = Decoder::new(&k[prefix.len()..]).row(&self.types[other])?;
                let c = decode_count(&v)?;
                let joined: Row = if input == 0 {
                    row.iter().chain(other_row.iter()).cloned().collect()
                } else {
                    other_row.iter().chain(row.iter()).cloned().collect()
                };
                out_rows.push(joined);
                out_w.push(w * c);
            }
        }
        let out = Chunk::from_rows(self.schema.clone(), &out_rows, out_w)?;
        match &self.filter {
            Some(f) if !out.is_empty() => {
                let mask = f.evaluate(&out.batch)?.into_array(out.len())?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| EngineError::Internal("join filter is not boolean".into()))?;
                out.filter(mask)
            }
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::col;
    use freshet_storage::Store;

    use super::*;
    use crate::chunk::arc_schema;

    fn i(v: i64) -> ScalarValue {
        ScalarValue::Int64(Some(v))
    }

    #[test]
    fn join_updates_from_both_sides() {
        let l = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
        ]);
        let r = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let out = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
            Field::new("k2", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let mut j = HashJoin::new(
            vec![col("k", &l).unwrap()],
            vec![col("k", &r).unwrap()],
            &l,
            &r,
            None,
            out,
            |n| 50 + n as u64,
        );
        let mut txn = Txn::new(Store::memory());
        let c = Chunk::from_rows(
            l.clone(),
            &[vec![i(1), i(10)], vec![ScalarValue::Int64(None), i(0)]],
            vec![1, 1],
        )
        .unwrap();
        assert!(j.process(0, c, &mut txn).unwrap().is_empty());
        let c =
            Chunk::from_rows(r.clone(), &[vec![i(1), i(7)], vec![i(1), i(7)]], vec![1, 1]).unwrap();
        let o = j.process(1, c, &mut txn).unwrap();
        assert_eq!(o.rows().unwrap(), vec![vec![i(1), i(10), i(1), i(7)]; 2]);
        // deleting the left row retracts both joined rows (one with multiplicity 2)
        let c = Chunk::from_rows(l, &[vec![i(1), i(10)]], vec![-1]).unwrap();
        let o = j.process(0, c, &mut txn).unwrap();
        assert_eq!(o.weights, vec![-2]);
        // a NULL key is never stored
        assert_eq!(
            txn.scan_prefix(&freshet_storage::keys::state_prefix(50))
                .unwrap()
                .len(),
            0
        );
    }
}
