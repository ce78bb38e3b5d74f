//! Scalar functions of DataFusion that panic on some inputs, wrapped so that the panic
//! becomes the query's error.
//!
//! `lpad`, `rpad` and `repeat` with a huge length ask for more capacity than a `Vec` can
//! hold and panic ("capacity overflow"; found by `tests/fuzz.rs`). The wrapper delegates
//! everything to the function and catches a panic of its evaluation.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

const GUARDED: &[&str] = &["lpad", "rpad", "repeat"];

#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        catch_unwind(AssertUnwindSafe(|| self.inner.invoke_with_args(args))).unwrap_or_else(|_| {
            Err(DataFusionError::Execution(format!(
                "{}: requested length too large",
                self.inner.name()
            )))
        })
    }
}

/// Replaces the functions of [`GUARDED`] in `ctx` by guarded ones.
pub fn register(ctx: &SessionContext) {
    for name in GUARDED {
        if let Some(f) = ctx.state().scalar_functions().get(*name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(Guarded { inner: f }));
        }
    }
}
