//! `extract(second FROM ts)` and `date_part('second', ts)` with the fraction, as Postgres
//! gives them (`30.5`, and `30123.456` milliseconds): DataFusion's are whole numbers
//! (`30`). Over timestamps, times and dates, from dialect level 6 on
//! (`crate::dialect`): a view from before keeps its whole seconds. Other parts are
//! DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// `extract(field FROM x)` as `date_part('field', x)`, so that it reaches the registered
/// `date_part` (DataFusion plans `extract` into its own function directly).
pub fn rewrite<T: crate::sqlparser::ast::VisitMut>(node: &mut T) {
    use crate::sqlparser::ast::{
        Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
        Ident, ObjectName, ObjectNamePart, Value,
    };
    let _ = crate::sqlparser::ast::visit_expressions_mut(node, |e| {
        if let Expr::Extract { field, expr, .. } = e {
            let part = field.to_string().to_lowercase();
            if fractional(&part).is_some() {
                let arg = |x: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(x));
                let part = Expr::Value(Value::SingleQuotedString(part).into());
                *e = Expr::Function(Function {
                    name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("date_part"))]),
                    uses_odbc_syntax: false,
                    parameters: FunctionArguments::None,
                    args: FunctionArguments::List(FunctionArgumentList {
                        duplicate_treatment: None,
                        args: vec![arg(part), arg(expr.as_ref().clone())],
                        clauses: vec![],
                    }),
                    filter: None,
                    null_treatment: None,
                    over: None,
                    within_group: vec![],
                });
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Replaces `ctx`'s `date_trunc`: a date is truncated as a `timestamp` of microseconds,
/// the precision Freshet stores. DataFusion made it one of nanoseconds, which no view can
/// store: a view grouping by `date_trunc('month', d)` of a date refused every write to
/// its table. (Postgres gives a `timestamptz`; here it is the wall-clock `timestamp`.)
pub fn register_date_trunc(ctx: &SessionContext) {
    if let Some(inner) = ctx.state().scalar_functions().get("date_trunc").cloned() {
        ctx.register_udf(ScalarUDF::new_from_impl(PgDateTrunc {
            signature: Signature::user_defined(inner.signature().volatility),
            inner,
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgDateTrunc {
    signature: Signature,
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for PgDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let dates = |t: &DataType| matches!(t, DataType::Date32 | DataType::Date64);
        let types: Vec<DataType> = arg_types
            .iter()
            .map(|t| {
                if dates(t) {
                    DataType::Timestamp(TimeUnit::Microsecond, None)
                } else {
                    t.clone()
                }
            })
            .collect();
        crate::dialect::coerce_as(&self.inner, &types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
}

/// Replaces `ctx`'s `date_part` (which `extract` plans into).
pub fn register(ctx: &SessionContext) {
    if let Some(date_part) = crate::dialect::Wrapped::new(ctx, "date_part", 6) {
        ctx.register_udf(ScalarUDF::new_from_impl(PgDatePart {
            signature: date_part.inner.signature().clone(),
            date_part,
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgDatePart {
    signature: Signature,
    date_part: crate::dialect::Wrapped,
}

/// Nanoseconds per unit of a part that has a fraction here: seconds and milliseconds.
fn fractional(part: &str) -> Option<f64> {
    match part.trim().trim_matches('\'').to_ascii_lowercase().as_str() {
        "second" | "seconds" | "s" | "sec" | "secs" => Some(1e9),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "msecond" | "mseconds" => {
            Some(1e6)
        }
        _ => None,
    }
}

fn is_time(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
    )
}

impl PgDatePart {
    /// The unit of the call's part if it gets a fraction here.
    fn unit(&self, part: Option<&ScalarValue>, arg: &DataType) -> Option<f64> {
        if !self.date_part.on() || !is_time(arg) {
            return None;
        }
        match part? {
            ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)) => fractional(p),
            _ => None,
        }
    }
}

impl ScalarUDFImpl for PgDatePart {
    fn name(&self) -> &str {
        self.date_part.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.date_part.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.date_part.inner.coerce_types(arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.date_part.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let part = args.scalar_arguments.first().copied().flatten();
        let arg = args.arg_fields.get(1).map(|f| f.data_type().clone());
        if let Some(arg) = arg {
            if self.unit(part, &arg).is_some() {
                let nullable = args.arg_fields[1].is_nullable();
                return Ok(Arc::new(Field::new(
                    self.name(),
                    DataType::Float64,
                    nullable,
                )));
            }
        }
        self.date_part.inner.return_field_from_args(args)
    }
    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let part = match args.args.first() {
            Some(ColumnarValue::Scalar(s)) => Some(s.clone()),
            _ => None,
        };
        let arg = args.args.get(1).map(ColumnarValue::data_type);
        let unit = arg.and_then(|a| self.unit(part.as_ref(), &a));
        let Some(unit) = unit else {
            return self.date_part.inner.invoke_with_args(args);
        };
        // DataFusion's nanoseconds within the minute, scaled.
        args.args[0] = ColumnarValue::Scalar(ScalarValue::Utf8(Some("nanosecond".into())));
        args.return_field = Arc::new(Field::new(self.name(), DataType::Int64, true));
        let nanos = self.date_part.inner.invoke_with_args(args)?;
        let scale = |a: &ArrayRef| -> ArrayRef {
            let f: Float64Array = a.as_primitive::<Int64Type>().unary(|n| n as f64 / unit);
            Arc::new(f)
        };
        Ok(match nanos {
            ColumnarValue::Array(a) => ColumnarValue::Array(scale(&a)),
            ColumnarValue::Scalar(s) => {
                let a = scale(&s.to_array()?);
                ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?)
            }
        })
    }
}
