//! `array_length(a, dim)` as Postgres computes it: NULL for an empty array (DataFusion
//! says 0). A value change, not a type change: no dialect level (views could not store
//! arrays before this).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::kernels::cmp::neq;
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// Replaces DataFusion's `array_length` in `ctx`.
pub fn register(ctx: &SessionContext) {
    if let Some(inner) = ctx.state().scalar_functions().get("array_length").cloned() {
        ctx.register_udf(ScalarUDF::new_from_impl(PgArrayLength { inner }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgArrayLength {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for PgArrayLength {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> Result<Arc<datafusion::arrow::datatypes::Field>> {
        self.inner.return_field_from_args(args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(match self.inner.invoke_with_args(args)? {
            ColumnarValue::Scalar(ScalarValue::UInt64(Some(0))) => {
                ColumnarValue::Scalar(ScalarValue::UInt64(None))
            }
            ColumnarValue::Array(a) if a.data_type() == &DataType::UInt64 => {
                let lengths = a.as_primitive::<UInt64Type>();
                let zero = datafusion::arrow::array::UInt64Array::new_scalar(0);
                let nonzero = neq(lengths, &zero)?;
                let empty = datafusion::arrow::compute::not(&nonzero)?;
                ColumnarValue::Array(nullif(lengths, &empty)?)
            }
            other => other,
        })
    }
}
