//! `to_timestamp(double precision)`: seconds since 1970 as a `timestamptz`, as Postgres'
//! `float8_timestamptz` computes it: rounded to the microsecond (half to even, after
//! moving to Postgres' 2000 epoch), within Postgres' range from 4714 BC (and to the last
//! day chrono can write, 262142 AD), `22008` for NaN and out-of-range seconds.
//!
//! DataFusion's went through nanoseconds: outside 1677–2262 it saturated (`to_timestamp(
//! 1e300)` was `2262-04-11 23:47:16.854775`, NaN was 1970) or failed on its decimal
//! literal (`to_timestamp(-1e10)`). From dialect level 9 on (`crate::pg_to_date` calls
//! this): a view from before keeps DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondBuilder};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;

use crate::pg_catalog::SqlStateError;

/// Postgres' first day, 4714-11-24 BC, in seconds since 1970.
const FIRST_SECOND: f64 = -210_866_803_200.0;

/// Seconds from 1970 to Postgres' epoch, 2000-01-01.
const PG_EPOCH_SECONDS: f64 = 946_684_800.0;

/// The first second past chrono's last day (262142-12-31), which Postgres' range
/// (to 294276 AD) passes: values there could not be written as text.
fn end_second() -> f64 {
    let last = chrono::NaiveDate::MAX.and_hms_opt(23, 59, 59);
    last.map_or(0.0, |t| t.and_utc().timestamp() as f64 + 1.0)
}

fn error(code: &'static str, message: String) -> DataFusionError {
    SqlStateError::raise(code, message, None)
}

/// `seconds` since 1970 as microseconds since 1970, as Postgres computes it.
pub fn epoch_micros(seconds: f64) -> Result<i64> {
    if seconds.is_nan() {
        return Err(error("22008", "timestamp cannot be NaN".into()));
    }
    if seconds.is_infinite() {
        let sign = if seconds < 0.0 { "-" } else { "" };
        return Err(error(
            "0A000",
            format!(
                "infinite timestamps are not supported: to_timestamp of {sign}Infinity is \
                 {sign}infinity in Postgres"
            ),
        ));
    }
    if !(FIRST_SECOND..end_second()).contains(&seconds) {
        return Err(error(
            "22008",
            format!("timestamp out of range: \"{}\"", shortest_g(seconds)),
        ));
    }
    let micros = ((seconds - PG_EPOCH_SECONDS) * 1e6).round_ties_even();
    Ok(micros as i64 + PG_EPOCH_SECONDS as i64 * 1_000_000)
}

/// `to_timestamp(seconds)` over a column or a scalar of a numeric type.
pub fn to_timestamp(arg: &ColumnarValue, rows: usize) -> Result<ColumnarValue> {
    let seconds = datafusion::arrow::compute::cast(&arg.to_array(rows)?, &DataType::Float64)?;
    let seconds = seconds.as_primitive::<Float64Type>();
    let mut out = TimestampMicrosecondBuilder::with_capacity(seconds.len());
    for i in 0..seconds.len() {
        if seconds.is_null(i) {
            out.append_null();
        } else {
            out.append_value(epoch_micros(seconds.value(i))?);
        }
    }
    let out: ArrayRef = Arc::new(out.finish().with_timezone("+00:00"));
    Ok(match arg {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(out),
    })
}

/// `x` as C's `%g` writes it (six significant digits), as Postgres' message shows it.
fn shortest_g(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..6).contains(&exp) {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        trim(&format!("{x:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from PostgreSQL 15.
    #[test]
    fn reads_seconds_as_postgres() {
        assert_eq!(epoch_micros(0.0).unwrap(), 0);
        assert_eq!(
            epoch_micros(1_700_000_000.5).unwrap(),
            1_700_000_000_500_000
        );
        // 1653-02-10 06:13:20
        assert_eq!(epoch_micros(-1e10).unwrap(), -10_000_000_000_000_000);
        assert_eq!(
            epoch_micros(1_700_000_000.123_456_7).unwrap(),
            1_700_000_000_123_457
        );
        let message = |s: f64| match epoch_micros(s) {
            Err(DataFusionError::External(e)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(message(f64::NAN), "timestamp cannot be NaN");
        assert!(message(f64::INFINITY).contains("infinity in Postgres"));
        assert_eq!(message(1e300), "timestamp out of range: \"1e+300\"");
        assert_eq!(
            message(9_224_318_016_000.0),
            "timestamp out of range: \"9.22432e+12\""
        );
        assert_eq!(
            message(-210_866_803_201.0),
            "timestamp out of range: \"-2.10867e+11\""
        );
        assert!(epoch_micros(-210_866_803_200.0).is_ok());
    }

    #[test]
    fn writes_g_as_c() {
        assert_eq!(shortest_g(1e300), "1e+300");
        assert_eq!(shortest_g(123456.0), "123456");
        assert_eq!(shortest_g(1234567.0), "1.23457e+06");
        assert_eq!(shortest_g(0.5), "0.5");
        assert_eq!(shortest_g(0.00001), "1e-05");
        assert_eq!(shortest_g(-2.5), "-2.5");
    }
}
