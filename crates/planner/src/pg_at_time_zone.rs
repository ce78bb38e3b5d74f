//! `x AT TIME ZONE zone` as Postgres computes it:
//! - a `timestamptz` is the wall-clock time in `zone`, a `timestamp`
//!   (`timestamptz '2024-02-29 13:45+00' AT TIME ZONE 'America/New_York'` is
//!   `2024-02-29 08:45:00`);
//! - a `timestamp` is read as wall-clock time in `zone`, a `timestamptz` (a local time
//!   a clock change skips, or shows twice, is read in standard time, as Postgres reads it).
//!
//! `zone` is an IANA name (`Europe/Paris`), an abbreviation chrono-tz knows (`EST`),
//! `UTC`, or an offset in POSIX style as Postgres takes it here: `'+05'` is five hours
//! *west* of Greenwich. DataFusion only relabelled a `timestamptz` (the instant, shown
//! the same) and refused a `timestamp`. From dialect level 6 on (`crate::dialect`), as an
//! AST rewrite into [`AT_TIME_ZONE`].

use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::pg_text::Zone;
use crate::sqlparser::ast::{
    visit_expressions_mut, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, VisitMut,
};

/// The function `AT TIME ZONE` becomes.
pub const AT_TIME_ZONE: &str = "__freshet_at_time_zone";

/// Registers [`AT_TIME_ZONE`] in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(AtTimeZone {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
}

/// Rewrites every `x AT TIME ZONE zone` in `node` into a call of [`AT_TIME_ZONE`].
pub fn rewrite<T: VisitMut>(node: &mut T) {
    let _ = visit_expressions_mut(node, |e| {
        if let Expr::AtTimeZone {
            timestamp,
            time_zone,
        } = e
        {
            let arg = |x: &Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(x.clone()));
            *e = Expr::Function(Function {
                name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(AT_TIME_ZONE))]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![arg(timestamp), arg(time_zone)],
                    clauses: vec![],
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
        }
        ControlFlow::<()>::Continue(())
    });
}

fn utc() -> Option<Arc<str>> {
    Some("+00:00".into())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AtTimeZone {
    signature: Signature,
}

impl ScalarUDFImpl for AtTimeZone {
    fn name(&self) -> &str {
        AT_TIME_ZONE
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [t, z] = arg_types else {
            return Err(DataFusionError::Plan(
                "AT TIME ZONE takes a timestamp and a zone".into(),
            ));
        };
        let t = match t {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            DataType::Date32 | DataType::Date64 => DataType::Timestamp(TimeUnit::Microsecond, None),
            // An untyped string is a timestamptz, as Postgres resolves it.
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
                DataType::Timestamp(TimeUnit::Microsecond, utc())
            }
            other => {
                return Err(DataFusionError::Plan(format!(
                    "AT TIME ZONE takes a timestamp, timestamptz or date, not {other}"
                )))
            }
        };
        Ok(vec![t, zone_type(z)?])
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match arg_types.first() {
            Some(DataType::Timestamp(_, Some(_))) => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            _ => DataType::Timestamp(TimeUnit::Microsecond, utc()),
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value, zone] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(
                "AT TIME ZONE takes a timestamp and a zone".into(),
            ));
        };
        let zoned = matches!(value.data_type(), DataType::Timestamp(_, Some(_)));
        let n = args.number_rows;
        let values = value.to_array(n)?;
        let values = values.as_primitive::<TimestampMicrosecondType>();
        let zones = datafusion::arrow::compute::cast(&zone.to_array(n)?, &DataType::Utf8)?;
        let zones = zones.as_string::<i32>();
        let mut last: Option<(String, Zone)> = None;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if values.is_null(i) || zones.is_null(i) {
                out.push(None);
                continue;
            }
            let name = zones.value(i);
            let z = match &last {
                Some((n, z)) if n == name => *z,
                _ => {
                    let z = at_zone(name).ok_or_else(|| {
                        DataFusionError::Execution(format!("time zone \"{name}\" not recognized"))
                    })?;
                    last = Some((name.to_string(), z));
                    z
                }
            };
            let v = values.value(i);
            out.push(Some(if zoned {
                to_local(v, &z)
            } else {
                from_local(v, &z)
            }));
        }
        let tz = if zoned { None } else { utc() };
        let array: ArrayRef = Arc::new(TimestampMicrosecondArray::from(out).with_timezone_opt(tz));
        Ok(match (value, zone) {
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            }
            _ => ColumnarValue::Array(array),
        })
    }
}

fn zone_type(z: &DataType) -> Result<DataType> {
    match z {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
            Ok(DataType::Utf8)
        }
        other => Err(DataFusionError::Plan(format!(
            "AT TIME ZONE takes a zone name, not {other}"
        ))),
    }
}

/// The zone `AT TIME ZONE name` means: a numeric offset in POSIX style (`+05` is west).
fn at_zone(name: &str) -> Option<Zone> {
    let t = name.trim();
    let numeric = t.starts_with(['+', '-']) || t.parse::<f64>().is_ok();
    match Zone::parse(t)? {
        Zone::Fixed(o) if numeric => {
            chrono::FixedOffset::east_opt(-o.local_minus_utc()).map(Zone::Fixed)
        }
        z => Some(z),
    }
}

/// The wall-clock time in `z` of UTC instant `micros`.
fn to_local(micros: i64, z: &Zone) -> i64 {
    let Some(t) = DateTime::from_timestamp_micros(micros) else {
        return micros;
    };
    let utc = t.naive_utc();
    micros + i64::from(z.offset_at(&utc)) * 1_000_000
}

/// The UTC instant of wall-clock time `micros` in `z`: in standard time where the clock
/// skips or repeats it, as Postgres reads it.
pub(crate) fn from_local(micros: i64, z: &Zone) -> i64 {
    let Some(t) = DateTime::from_timestamp_micros(micros) else {
        return micros;
    };
    let local: NaiveDateTime = t.naive_utc();
    let offset = match z {
        Zone::Utc => 0,
        Zone::Fixed(o) => o.local_minus_utc(),
        Zone::Named(tz) => match tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(d) => d.offset().fix().local_minus_utc(),
            // Shown twice (the clock goes back): the later, standard time.
            chrono::LocalResult::Ambiguous(_, later) => later.offset().fix().local_minus_utc(),
            // Skipped (the clock goes forward): the offset before the change.
            chrono::LocalResult::None => tz
                .from_local_datetime(&(local - Duration::hours(3)))
                .earliest()
                .map_or(0, |d| d.offset().fix().local_minus_utc()),
        },
    };
    micros - i64::from(offset) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn converts_as_postgres() {
        let ny = at_zone("America/New_York").unwrap();
        assert_eq!(
            to_local(micros("2024-01-01 12:00:00"), &ny),
            micros("2024-01-01 07:00:00")
        );
        assert_eq!(
            to_local(micros("2024-01-01 12:00:00"), &at_zone("+05").unwrap()),
            micros("2024-01-01 07:00:00")
        );
        assert_eq!(
            to_local(micros("2024-01-01 12:00:00"), &at_zone("+05:30").unwrap()),
            micros("2024-01-01 06:30:00")
        );
        assert_eq!(
            from_local(micros("2024-01-01 12:00:00"), &ny),
            micros("2024-01-01 17:00:00")
        );
        // Skipped and repeated local times, in standard time.
        assert_eq!(
            from_local(micros("2024-03-10 02:30:00"), &ny),
            micros("2024-03-10 07:30:00")
        );
        assert_eq!(
            from_local(micros("2024-11-03 01:30:00"), &ny),
            micros("2024-11-03 06:30:00")
        );
        assert!(at_zone("Not/AZone").is_none());
    }
}
