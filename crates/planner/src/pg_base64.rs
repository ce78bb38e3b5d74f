//! `encode(bytes, 'base64')` and `decode(text, 'base64')` as Postgres computes them.
//!
//! Postgres' base64 (RFC 2045) pads to a multiple of four characters with `=` and
//! breaks the text into lines of 76 characters; its `decode` skips whitespace, so what
//! `encode` wrote reads back. DataFusion's `base64` has no padding and no line breaks,
//! and its decoder refuses a line break. From dialect level 7 on (`crate::dialect`): a
//! view from before keeps the text it stored.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

use crate::dialect::Wrapped;

/// The first dialect level with Postgres' base64.
const LEVEL: u32 = 7;

/// Postgres' line length in base64 text.
const LINE: usize = 76;

/// Replaces `ctx`'s `encode` and `decode`.
pub fn register(ctx: &SessionContext) {
    for (name, direction) in [("encode", Direction::Encode), ("decode", Direction::Decode)] {
        if let Some(inner) = Wrapped::new(ctx, name, LEVEL) {
            ctx.register_udf(ScalarUDF::new_from_impl(PgBase64 {
                signature: inner.inner.signature().clone(),
                inner,
                direction,
            }));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Encode,
    Decode,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgBase64 {
    signature: Signature,
    inner: Wrapped,
    direction: Direction,
}

/// Whether a call's format is base64 (a constant).
fn is_base64(format: Option<&ColumnarValue>) -> bool {
    match format {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(f))
            | ScalarValue::Utf8View(Some(f))
            | ScalarValue::LargeUtf8(Some(f)),
        )) => f.trim().eq_ignore_ascii_case("base64"),
        _ => false,
    }
}

/// `text` in lines of [`LINE`] characters (base64 is ASCII).
fn in_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / LINE);
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % LINE == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out
}

/// `values` (text) with `f` applied to each, in their type.
fn map_text(
    values: &ColumnarValue,
    rows: usize,
    f: impl Fn(&str) -> String,
) -> Result<ColumnarValue> {
    let array = values.to_array(rows)?;
    let ty = array.data_type().clone();
    let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
    let mapped: StringArray = text.as_string::<i32>().iter().map(|s| s.map(&f)).collect();
    let out: ArrayRef = datafusion::arrow::compute::cast(&(Arc::new(mapped) as ArrayRef), &ty)?;
    Ok(match values {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(out),
    })
}

impl ScalarUDFImpl for PgBase64 {
    fn name(&self) -> &str {
        self.inner.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner.coerce_types(arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.inner.return_field_from_args(args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner.documentation()
    }
    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !self.inner.on() || !is_base64(args.args.get(1)) {
            return self.inner.inner.invoke_with_args(args);
        }
        let rows = args.number_rows;
        match self.direction {
            Direction::Encode => {
                args.args[1] = ColumnarValue::Scalar(ScalarValue::Utf8(Some("base64pad".into())));
                let encoded = self.inner.inner.invoke_with_args(args)?;
                map_text(&encoded, rows, in_lines)
            }
            Direction::Decode => {
                args.args[0] = map_text(&args.args[0], rows, |s| {
                    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
                })?;
                self.inner.inner.invoke_with_args(args)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_76() {
        let lines = in_lines(&"x".repeat(160));
        assert_eq!(
            lines.split('\n').map(str::len).collect::<Vec<_>>(),
            [76, 76, 8]
        );
        assert_eq!(in_lines("abcd"), "abcd");
        let wrapped = in_lines(&"y".repeat(152));
        assert_eq!(
            wrapped.split('\n').map(str::len).collect::<Vec<_>>(),
            [76, 76]
        );
    }
}
