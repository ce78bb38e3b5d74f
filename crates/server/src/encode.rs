//! Arrow values → Postgres wire values, in text or binary format.
//!
//! Text output follows Postgres' own formats (booleans `t`/`f`, shortest round-trip
//! floats, `numeric` with its scale, `timestamptz` in UTC with `+00`, `postgres`-style
//! intervals), so psql output looks like Postgres'.

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, IntervalMonthDayNanoType, IntervalUnit, Schema, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormatOptions};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

/// The Postgres type a column of `dt` is sent as.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(_, _) => Type::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::VARCHAR,
        DataType::Date32 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) => Type::INTERVAL,
        _ => Type::TEXT,
    }
}

/// Row description for a schema; `format(i)` gives column i's requested format.
pub fn field_infos(schema: &Schema, format: impl Fn(usize) -> FieldFormat) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format(i),
            )
        })
        .collect()
}

/// One value on its way to the wire.
#[derive(Debug)]
pub enum PgValue {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// Unscaled value and scale.
    Numeric(i128, i8),
    Text(String),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
}

impl ToSqlText for PgValue {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _opts: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let s = match self {
            PgValue::Null => return Ok(IsNull::Yes),
            PgValue::Bool(b) => (if *b { "t" } else { "f" }).to_string(),
            PgValue::I16(v) => v.to_string(),
            PgValue::I32(v) => v.to_string(),
            PgValue::I64(v) => v.to_string(),
            PgValue::F32(v) => format_float(*v as f64, true),
            PgValue::F64(v) => format_float(*v, false),
            PgValue::Numeric(v, s) => format_decimal(*v, *s),
            PgValue::Text(s) => s.clone(),
            PgValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            PgValue::Timestamp(t) => format_timestamp(t),
            PgValue::TimestampTz(t) => format!("{}+00", format_timestamp(&t.naive_utc())),
            PgValue::Interval {
                months,
                days,
                micros,
            } => format_interval(*months, *days, *micros),
        };
        out.put_slice(s.as_bytes());
        Ok(IsNull::No)
    }
}

impl ToSql for PgValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            PgValue::Null => Ok(IsNull::Yes),
            PgValue::Bool(v) => v.to_sql(ty, out),
            PgValue::I16(v) => v.to_sql(ty, out),
            PgValue::I32(v) => v.to_sql(ty, out),
            PgValue::I64(v) => v.to_sql(ty, out),
            PgValue::F32(v) => v.to_sql(ty, out),
            PgValue::F64(v) => v.to_sql(ty, out),
            PgValue::Numeric(v, s) => {
                let d = rust_decimal::Decimal::try_from_i128_with_scale(*v, (*s).max(0) as u32)
                    .map_err(|e| format!("numeric value out of range for the wire: {e}"))?;
                d.to_sql(ty, out)
            }
            PgValue::Text(s) => s.as_str().to_sql(ty, out),
            PgValue::Date(d) => d.to_sql(ty, out),
            PgValue::Timestamp(t) => t.to_sql(ty, out),
            PgValue::TimestampTz(t) => t.to_sql(ty, out),
            PgValue::Interval {
                months,
                days,
                micros,
            } => {
                out.put_i64(*micros);
                out.put_i32(*days);
                out.put_i32(*months);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// Postgres' float output: shortest round-trip digits, exponent form outside
/// [1e-4, 1e15) (1e6 for real).
pub fn format_float(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    let upper = if single { 1e6 } else { 1e15 };
    let body = if single {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    };
    if a != 0.0 && !(1e-4..upper).contains(&a) {
        let s = if single {
            format!("{:e}", v as f32)
        } else {
            format!("{v:e}")
        };
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        body
    }
}

fn format_decimal(v: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = v.to_string();
        for _ in 0..(-scale) {
            s.push('0');
        }
        return s;
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let (int, frac) = if digits.len() > scale {
        let (a, b) = digits.split_at(digits.len() - scale);
        (a.to_string(), b.to_string())
    } else {
        ("0".to_string(), format!("{digits:0>scale$}"))
    };
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

fn format_timestamp(t: &NaiveDateTime) -> String {
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.and_utc().timestamp_subsec_micros();
    if micros != 0 {
        let f = format!("{micros:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// Postgres' `postgres`-style interval output, e.g. `1 year 2 mons 3 days 04:05:06`.
pub fn format_interval(months: i32, days: i32, micros: i64) -> String {
    let mut parts = Vec::new();
    let plural = |n: i64, one: &str, many: &str| {
        if n == 1 || n == -1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let (years, mons) = (months / 12, months % 12);
    if years != 0 {
        parts.push(plural(years as i64, "year", "years"));
    }
    if mons != 0 {
        parts.push(plural(mons as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let neg = micros < 0;
        let m = micros.unsigned_abs();
        let secs = m / 1_000_000;
        let frac = m % 1_000_000;
        let mut t = format!(
            "{}{:02}:{:02}:{:02}",
            if neg { "-" } else { "" },
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        if frac != 0 {
            let f = format!("{frac:06}");
            t.push('.');
            t.push_str(f.trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

fn ts_from(v: i64, unit: &TimeUnit) -> Option<NaiveDateTime> {
    let (secs, nanos) = match unit {
        TimeUnit::Second => (v, 0),
        TimeUnit::Millisecond => (v.div_euclid(1_000), v.rem_euclid(1_000) * 1_000_000),
        TimeUnit::Microsecond => (v.div_euclid(1_000_000), v.rem_euclid(1_000_000) * 1_000),
        TimeUnit::Nanosecond => (v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000)),
    };
    DateTime::from_timestamp(secs, nanos as u32).map(|d| d.naive_utc())
}

/// The value at `row` of `array`.
fn value_at(array: &ArrayRef, row: usize, fallback: &ArrayFormatter<'_>) -> PgValue {
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return PgValue::Null;
    }
    match array.data_type() {
        DataType::Boolean => PgValue::Bool(array.as_boolean().value(row)),
        DataType::Int8 => PgValue::I16(array.as_primitive::<Int8Type>().value(row) as i16),
        DataType::Int16 => PgValue::I16(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => PgValue::I32(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => PgValue::I64(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => PgValue::I16(array.as_primitive::<UInt8Type>().value(row) as i16),
        DataType::UInt16 => PgValue::I32(array.as_primitive::<UInt16Type>().value(row) as i32),
        DataType::UInt32 => PgValue::I64(array.as_primitive::<UInt32Type>().value(row) as i64),
        DataType::UInt64 => {
            PgValue::Numeric(array.as_primitive::<UInt64Type>().value(row) as i128, 0)
        }
        DataType::Float32 => PgValue::F32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => PgValue::F64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, s) => {
            PgValue::Numeric(array.as_primitive::<Decimal128Type>().value(row), *s)
        }
        DataType::Utf8 => PgValue::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => PgValue::Text(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => PgValue::Text(array.as_string_view().value(row).to_string()),
        DataType::Date32 => {
            let d = array.as_primitive::<Date32Type>().value(row);
            match NaiveDate::from_num_days_from_ce_opt(d + 719_163) {
                Some(d) => PgValue::Date(d),
                None => PgValue::Text(fallback.value(row).to_string()),
            }
        }
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            match (ts_from(v, unit), tz) {
                (Some(t), None) => PgValue::Timestamp(t),
                (Some(t), Some(_)) => PgValue::TimestampTz(t.and_utc()),
                (None, _) => PgValue::Text(fallback.value(row).to_string()),
            }
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            PgValue::Interval {
                months: v.months,
                days: v.days,
                micros: v.nanoseconds / 1000,
            }
        }
        _ => PgValue::Text(fallback.value(row).to_string()),
    }
}

/// Encodes all rows of `batch` for the wire.
pub fn encode_batch(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    fields: &Arc<Vec<FieldInfo>>,
) -> PgWireResult<Vec<DataRow>> {
    let cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Interval(IntervalUnit::YearMonth | IntervalUnit::DayTime) => {
                datafusion::arrow::compute::cast(c, &DataType::Interval(IntervalUnit::MonthDayNano))
                    .unwrap_or_else(|_| c.clone())
            }
            _ => c.clone(),
        })
        .collect();
    let opts = ArrowFormatOptions::default().with_null("");
    let formatters: Vec<ArrayFormatter<'_>> = cols
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<Result<_, _>>()
        .map_err(|e| pgwire::error::PgWireError::ApiError(Box::new(e)))?;
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        for (c, f) in cols.iter().zip(&formatters) {
            encoder.encode_field(&value_at(c, r, f))?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_postgres() {
        assert_eq!(format_float(1.5, false), "1.5");
        assert_eq!(format_float(3.0, false), "3");
        assert_eq!(format_float(1e20, false), "1e+20");
        assert_eq!(format_float(0.1, false), "0.1");
        assert_eq!(format_float(1.0 / 3.0, false), "0.3333333333333333");
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(format_decimal(1250, 2), "12.50");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(7, 0), "7");
    }

    #[test]
    fn intervals_like_postgres() {
        assert_eq!(
            format_interval(14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_000_000),
            "1 year 2 mons 3 days 04:05:06"
        );
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
        assert_eq!(format_interval(0, 1, 0), "1 day");
        assert_eq!(format_interval(0, 0, 5_400_000_000), "01:30:00");
    }
}
