//! `ceil`, `floor` and one-argument `trunc` of a `numeric` as Postgres computes them: an
//! integral `numeric` of scale 0 (`ceil(2.1)` is `3`, not `3.0`), with room for the digit
//! it may gain (`ceil(9.95)` is `10`; DataFusion kept the argument's type and failed with
//! "Decimal overflow"). Other arguments go to DataFusion's. From dialect level 7 on
//! (`crate::dialect`): a view from before keeps the type its rows were stored in.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

use crate::dialect::Wrapped;

/// The first dialect level with these types.
const LEVEL: u32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rounding {
    Ceil,
    Floor,
    Trunc,
}

/// Replaces `ctx`'s `ceil`, `floor` and `trunc`.
pub fn register(ctx: &SessionContext) {
    for (name, rounding) in [
        ("ceil", Rounding::Ceil),
        ("floor", Rounding::Floor),
        ("trunc", Rounding::Trunc),
    ] {
        if let Some(inner) = Wrapped::new(ctx, name, LEVEL) {
            ctx.register_udf(ScalarUDF::new_from_impl(PgCeil {
                signature: inner.inner.signature().clone(),
                inner,
                rounding,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgCeil {
    signature: Signature,
    inner: Wrapped,
    rounding: Rounding,
}

impl PgCeil {
    /// The integral type of a call on `args`, if it is one computed here.
    fn integral(&self, args: &[DataType]) -> Option<DataType> {
        match args {
            [DataType::Decimal128(p, s)] if self.inner.on() && *s > 0 => {
                let digits = (*p as i16 - *s as i16).max(0) as u8;
                // ceil and floor may carry into one more digit (9.95 to 10).
                let extra = u8::from(self.rounding != Rounding::Trunc);
                Some(DataType::Decimal128((digits + extra).clamp(1, 38), 0))
            }
            _ => None,
        }
    }
}

impl PgCeil {
    /// The type of `trunc(numeric, s)` with a constant `s` from level 8 on: scale `s`
    /// (at least 0), as Postgres gives (`trunc(2.7001, 1)` is `2.7` and `trunc(2.7, 3)`
    /// is `2.700`, where DataFusion kept the argument's scale).
    fn truncated(&self, args: &[DataType], scalars: &[Option<&ScalarValue>]) -> Option<DataType> {
        if self.rounding != Rounding::Trunc || self.inner.level() < 8 {
            return None;
        }
        let [DataType::Decimal128(p, s), places] = args else {
            return None;
        };
        if !places.is_integer() {
            return None;
        }
        let k = scalars
            .get(1)
            .copied()
            .flatten()?
            .cast_to(&DataType::Int64)
            .ok()?;
        let ScalarValue::Int64(Some(k)) = k else {
            return None;
        };
        let scale = k.clamp(0, 38) as i8;
        if scale == *s {
            return None;
        }
        let digits = (i16::from(*p) - i16::from(*s) + i16::from(scale)).max(1);
        // Past 38 digits the places stay the argument's (a decimal has no more).
        let digits = u8::try_from(digits).ok().filter(|d| *d <= 38)?;
        Some(DataType::Decimal128(digits, scale))
    }
}

/// `v` (of scale `scale`) rounded to an integer as `rounding` rounds.
fn integral(v: i128, scale: i8, rounding: Rounding) -> i128 {
    let unit = 10i128.pow(u32::from(scale.unsigned_abs()));
    match rounding {
        Rounding::Floor => v.div_euclid(unit),
        Rounding::Ceil => -(-v).div_euclid(unit),
        Rounding::Trunc => v / unit,
    }
}

impl ScalarUDFImpl for PgCeil {
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
        match self.integral(arg_types) {
            Some(t) => Ok(t),
            None => self.inner.inner.return_type(arg_types),
        }
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        if let Some(t) = self.truncated(&types, args.scalar_arguments) {
            let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
            return Ok(Arc::new(Field::new(self.name(), t, nullable)));
        }
        match self.integral(&types) {
            Some(t) => {
                let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
                Ok(Arc::new(Field::new(self.name(), t, nullable)))
            }
            None => self.inner.inner.return_field_from_args(args),
        }
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(ColumnarValue::data_type).collect();
        // `trunc(x, s)` planned with scale `s`: DataFusion's truncation (in the argument's
        // type), in that scale (exact: the digits past it are zeros).
        if let (to @ DataType::Decimal128(..), [from @ DataType::Decimal128(..), _]) =
            (args.return_field.data_type().clone(), types.as_slice())
        {
            if &to != from {
                let n = args.number_rows;
                let scalar = args
                    .args
                    .iter()
                    .all(|a| matches!(a, ColumnarValue::Scalar(_)));
                let inner_field = Arc::new(Field::new(self.name(), from.clone(), true));
                let truncated = self
                    .inner
                    .inner
                    .invoke_with_args(ScalarFunctionArgs {
                        return_field: inner_field,
                        ..args
                    })?
                    .to_array(n)?;
                let out = datafusion::arrow::compute::cast(&truncated, &to)?;
                return Ok(if scalar {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
                } else {
                    ColumnarValue::Array(out)
                });
            }
        }
        let (Some(DataType::Decimal128(p, s)), [DataType::Decimal128(_, scale)]) =
            (self.integral(&types), types.as_slice())
        else {
            return self.inner.inner.invoke_with_args(args);
        };
        let value = &args.args[0];
        let array = value.to_array(args.number_rows)?;
        let rounded: Decimal128Array = array
            .as_primitive::<Decimal128Type>()
            .unary(|v| integral(v, *scale, self.rounding));
        let out: ArrayRef = Arc::new(rounded.with_precision_and_scale(p, s)?);
        Ok(match value {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_as_postgres() {
        // 2.15, -2.15, 9.95 at scale 2.
        let cases = [(215, [3, 2, 2]), (-215, [-2, -3, -2]), (995, [10, 9, 9])];
        for (v, [ceil, floor, trunc]) in cases {
            assert_eq!(integral(v, 2, Rounding::Ceil), ceil, "ceil {v}");
            assert_eq!(integral(v, 2, Rounding::Floor), floor, "floor {v}");
            assert_eq!(integral(v, 2, Rounding::Trunc), trunc, "trunc {v}");
        }
    }
}
