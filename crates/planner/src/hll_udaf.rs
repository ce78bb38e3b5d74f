//! `approx_count_distinct` (and DataFusion's name for it, `approx_distinct`) for batch
//! queries, with Freshet's HyperLogLog (`freshet_engine::hll`), so that a query returns
//! the same estimate as a view over the same rows.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use freshet_engine::hll::Hll;

#[derive(Debug, PartialEq, Eq, Hash)]
struct ApproxCountDistinct {
    signature: Signature,
    aliases: Vec<String>,
}

impl AggregateUDFImpl for ApproxCountDistinct {
    fn name(&self) -> &str {
        "approx_count_distinct"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[hll]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(HllAccumulator(Hll::default())))
    }

    fn default_value(&self, _: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

#[derive(Debug)]
struct HllAccumulator(Hll);

fn external(e: freshet_engine::EngineError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl Accumulator for HllAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(arr) = values.first() else {
            return Ok(());
        };
        for i in 0..arr.len() {
            self.0
                .add(&ScalarValue::try_from_array(arr, i)?)
                .map_err(external)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(arr) = states.first() else {
            return Ok(());
        };
        let bin = arr
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(|| DataFusionError::Internal("hll state is not binary".into()))?;
        for b in bin.iter().flatten() {
            self.0.merge(&Hll::from_bytes(b));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.0.registers.clone()))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0.estimate())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.registers.len()
    }
}

/// The UDAF to register in a session.
pub fn approx_count_distinct() -> AggregateUDF {
    AggregateUDF::new_from_impl(ApproxCountDistinct {
        signature: Signature::any(1, Volatility::Immutable),
        aliases: vec!["approx_distinct".to_string()],
    })
}
