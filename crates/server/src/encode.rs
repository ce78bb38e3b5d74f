//! Arrow values → Postgres wire values, in text or binary format.
//!
//! Text output follows Postgres' own formats (booleans `t`/`f`, and the forms of
//! `freshet_planner::pg_text`: shortest round-trip floats, `numeric` with its scale,
//! `timestamptz` in the session's time zone, `postgres`-style intervals), so psql output
//! looks like Postgres'.

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, IntervalMonthDayNanoType, IntervalUnit, Schema, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormatOptions};
use freshet_planner::pg_text::{self, Zone};
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
        DataType::Int64 => Type::INT8,
        // Catalog OIDs (pg_class.oid, …).
        DataType::UInt32 => Type::OID,
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(_, _) => Type::NUMERIC,
        DataType::Utf8 | DataType::Utf8View => Type::VARCHAR,
        DataType::LargeUtf8 => Type::JSONB,
        DataType::Date32 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::List(f) | DataType::LargeList(f) => array_type(&pg_type(f.data_type())),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA,
        DataType::Struct(_) => Type::RECORD,
        _ => Type::TEXT,
    }
}

/// The array type of `elem`.
fn array_type(elem: &Type) -> Type {
    match *elem {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::OID => Type::OID_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::VARCHAR => Type::VARCHAR_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::JSONB => Type::JSONB_ARRAY,
        Type::RECORD => Type::RECORD_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// Row description for a schema; `format(i)` gives column i's requested format.
pub fn field_infos(schema: &Schema, format: impl Fn(usize) -> FieldFormat) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let meta = |key: &str| f.metadata().get(key);
            FieldInfo::new(
                f.name().clone(),
                meta(TABLE_OID).and_then(|v| v.parse().ok()),
                meta(COLUMN_NUMBER).and_then(|v| v.parse().ok()),
                pg_type(f.data_type()),
                format(i),
            )
        })
        .collect()
}

/// Field metadata naming the table column a result column is (RowDescription's table
/// OID and column number, which pgjdbc reads for `isNullable` and `getTableName`).
pub const TABLE_OID: &str = "pg.table_oid";
pub const COLUMN_NUMBER: &str = "pg.attnum";

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
    /// An instant, and the session's time zone its text is in.
    TimestampTz(DateTime<Utc>, Zone),
    /// Microseconds since midnight.
    Time(i64),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Oid(u32),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `jsonb`, as its text.
    Jsonb(String),
    /// A one-dimensional array: the elements' type and values.
    Array(Type, Vec<PgValue>),
    /// A struct, sent as an anonymous record: each field's type and value.
    Record(Vec<(Type, PgValue)>),
}

/// An array element in Postgres' text form: quoted when empty, `NULL`-like, or holding
/// a character that separates or quotes.
fn array_element_text(v: &PgValue, ty: &Type) -> Result<String, Box<dyn Error + Sync + Send>> {
    if matches!(v, PgValue::Null) {
        return Ok("NULL".into());
    }
    let mut b = BytesMut::new();
    v.to_sql_text(ty, &mut b, &FormatOptions::default())?;
    Ok(pg_text::array_element(
        String::from_utf8_lossy(&b).into_owned(),
    ))
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
            PgValue::F32(v) => pg_text::float(*v as f64, true),
            PgValue::F64(v) => pg_text::float(*v, false),
            PgValue::Numeric(v, s) => pg_text::decimal(*v, *s),
            PgValue::Text(s) => s.clone(),
            PgValue::Date(d) => pg_text::date(d),
            PgValue::Timestamp(t) => pg_text::timestamp(t),
            PgValue::TimestampTz(t, zone) => pg_text::timestamptz(t, zone),
            PgValue::Time(us) => pg_text::time(*us),
            PgValue::Interval {
                months,
                days,
                micros,
            } => pg_text::interval(*months, *days, *micros),
            PgValue::Oid(o) => o.to_string(),
            PgValue::Jsonb(s) => s.clone(),
            // Postgres' default `bytea_output = hex`.
            PgValue::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            PgValue::Array(elem, items) => {
                let parts = items
                    .iter()
                    .map(|v| array_element_text(v, elem))
                    .collect::<Result<Vec<_>, _>>()?;
                format!("{{{}}}", parts.join(","))
            }
            // `(a,,"b c")`: a NULL field is empty, others quoted as `record_out` does.
            PgValue::Record(fields) => {
                let mut parts = Vec::with_capacity(fields.len());
                for (ty, v) in fields {
                    let mut b = BytesMut::new();
                    parts.push(match v.to_sql_text(ty, &mut b, _opts)? {
                        IsNull::Yes => String::new(),
                        IsNull::No => {
                            pg_text::record_field(String::from_utf8_lossy(&b).into_owned())
                        }
                    });
                }
                format!("({})", parts.join(","))
            }
        };
        out.put_slice(s.as_bytes());
        Ok(IsNull::No)
    }
}

/// Postgres' binary `numeric`: the digit count, the weight of the first base-10000 digit,
/// the sign, the display scale, then the digits. Written from the 128-bit unscaled value
/// directly, so every `numeric(38, s)` goes out (a 96-bit decimal would refuse those past
/// 28 digits).
fn put_numeric(v: i128, scale: i8, out: &mut BytesMut) {
    // NaN and the infinities: no digits, weight 0, their sign word, scale 0.
    if let Some(s) = freshet_engine::numeric_special::Special::of(v) {
        use freshet_engine::numeric_special::Special;
        let sign: u16 = match s {
            Special::NaN => 0xC000,
            Special::Infinity => 0xD000,
            Special::NegInfinity => 0xF000,
        };
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(sign);
        out.put_i16(0);
        return;
    }
    // The decimal digits (no overflow at any scale: a negative scale appends zeros).
    let mut digits = v.unsigned_abs().to_string();
    let scale = if scale < 0 {
        digits.push_str(&"0".repeat(usize::from(scale.unsigned_abs())));
        0usize
    } else {
        scale as usize
    };
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    let (int, frac) = digits.split_at(digits.len() - scale);
    // Whole base-10000 digits: the integer part padded on the left, the fraction on
    // the right.
    let int = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
    let frac = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
    // Four ASCII digits each: base-10000 digits.
    let group = |c: &[u8]| c.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0'));
    let mut groups: Vec<i16> = int.as_bytes().chunks(4).map(group).collect();
    let mut weight = groups.len() as i16 - 1;
    groups.extend(frac.as_bytes().chunks(4).map(group));
    // Leading and trailing zero digits are left out.
    let lead = groups.iter().take_while(|d| **d == 0).count();
    groups.drain(..lead);
    weight -= lead as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if v < 0 && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_i16(scale as i16);
    for d in groups {
        out.put_i16(d);
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
                put_numeric(*v, *s, out);
                Ok(IsNull::No)
            }
            PgValue::Text(s) => s.as_str().to_sql(ty, out),
            PgValue::Date(d) => d.to_sql(ty, out),
            PgValue::Timestamp(t) => t.to_sql(ty, out),
            PgValue::TimestampTz(t, _) => t.to_sql(ty, out),
            PgValue::Time(us) => {
                out.put_i64(*us);
                Ok(IsNull::No)
            }
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
            PgValue::Oid(o) => {
                out.put_u32(*o);
                Ok(IsNull::No)
            }
            PgValue::Bytes(b) => {
                out.put_slice(b);
                Ok(IsNull::No)
            }
            // Binary jsonb: a version byte, then the text.
            PgValue::Jsonb(s) => {
                out.put_u8(1);
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            PgValue::Array(elem, items) => {
                // One dimension, lower bound 1: ndim, has-nulls, element OID, length, lbound,
                // then each element as length + bytes (-1: NULL).
                out.put_i32(1);
                out.put_i32(items.iter().any(|v| matches!(v, PgValue::Null)) as i32);
                out.put_u32(elem.oid());
                out.put_i32(items.len() as i32);
                out.put_i32(1);
                for v in items {
                    put_sized(v, elem, out)?;
                }
                Ok(IsNull::No)
            }
            // Binary record: the field count, then each field's type OID, length (-1:
            // NULL) and bytes.
            PgValue::Record(fields) => {
                out.put_i32(fields.len() as i32);
                for (ty, v) in fields {
                    out.put_u32(ty.oid());
                    put_sized(v, ty, out)?;
                }
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// `v` in binary after its length (-1 for NULL), as array elements and record fields
/// are sent.
fn put_sized(
    v: &PgValue,
    ty: &Type,
    out: &mut BytesMut,
) -> Result<(), Box<dyn Error + Sync + Send>> {
    let mut b = BytesMut::new();
    match v.to_sql(ty, &mut b)? {
        IsNull::Yes => out.put_i32(-1),
        IsNull::No => {
            out.put_i32(b.len() as i32);
            out.put_slice(&b);
        }
    }
    Ok(())
}

/// The value at `row` of `array`.
fn value_at(array: &ArrayRef, row: usize, fallback: &ArrayFormatter<'_>, zone: &Zone) -> PgValue {
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
        DataType::UInt32 => PgValue::Oid(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => {
            PgValue::Numeric(array.as_primitive::<UInt64Type>().value(row) as i128, 0)
        }
        DataType::Float32 => PgValue::F32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => PgValue::F64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, s) => {
            PgValue::Numeric(array.as_primitive::<Decimal128Type>().value(row), *s)
        }
        DataType::Utf8 => PgValue::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::Utf8View => PgValue::Text(array.as_string_view().value(row).to_string()),
        DataType::Date32 => {
            let d = array.as_primitive::<Date32Type>().value(row);
            match NaiveDate::from_num_days_from_ce_opt(d + 719_163) {
                Some(d) => PgValue::Date(d),
                None => PgValue::Text(fallback.value(row).to_string()),
            }
        }
        DataType::Timestamp(unit, tz) => {
            let v = pg_text::timestamp_value(array, row, unit);
            match (pg_text::datetime(v, unit), tz) {
                (Some(t), None) => PgValue::Timestamp(t),
                (Some(t), Some(_)) => PgValue::TimestampTz(t.and_utc(), *zone),
                (None, _) => PgValue::Text(fallback.value(row).to_string()),
            }
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<DurationSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<DurationNanosecondType>().value(row),
            };
            let (months, days, micros) = pg_text::duration_parts(pg_text::to_micros(v, unit));
            PgValue::Interval {
                months,
                days,
                micros,
            }
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            PgValue::Time(array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            PgValue::Time(array.as_primitive::<Time64NanosecondType>().value(row) / 1_000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            PgValue::Interval {
                months: v.months,
                days: v.days,
                micros: v.nanoseconds / 1000,
            }
        }
        DataType::Binary => PgValue::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeUtf8 => PgValue::Jsonb(array.as_string::<i64>().value(row).to_string()),
        DataType::LargeBinary => PgValue::Bytes(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => PgValue::Bytes(array.as_binary_view().value(row).to_vec()),
        DataType::List(f) => {
            let list = array.as_list::<i32>().value(row);
            array_value(&list, f.data_type(), zone)
        }
        DataType::LargeList(f) => {
            let list = array.as_list::<i64>().value(row);
            array_value(&list, f.data_type(), zone)
        }
        DataType::Struct(fs) => {
            let s = array.as_struct();
            let opts = ArrowFormatOptions::default().with_null("");
            let fields = fs
                .iter()
                .zip(s.columns())
                .map(|(f, col)| {
                    let v = match ArrayFormatter::try_new(col.as_ref(), &opts) {
                        Ok(fmt) => value_at(col, row, &fmt, zone),
                        Err(_) => PgValue::Null,
                    };
                    (pg_type(f.data_type()), v)
                })
                .collect();
            PgValue::Record(fields)
        }
        _ => PgValue::Text(fallback.value(row).to_string()),
    }
}

/// The elements of one list value as a Postgres array.
fn array_value(values: &ArrayRef, elem: &DataType, zone: &Zone) -> PgValue {
    let opts = ArrowFormatOptions::default().with_null("");
    let Ok(f) = ArrayFormatter::try_new(values.as_ref(), &opts) else {
        return PgValue::Null;
    };
    let items = (0..values.len())
        .map(|i| value_at(values, i, &f, zone))
        .collect();
    PgValue::Array(pg_type(elem), items)
}

/// Every value of `batch` in Postgres' text format, row by row (`None`: NULL), for `COPY … TO`.
pub fn text_rows(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    zone: &Zone,
) -> Result<Vec<Vec<Option<String>>>, Box<dyn Error + Sync + Send>> {
    let opts = ArrowFormatOptions::default().with_null("");
    let formatters: Vec<ArrayFormatter<'_>> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<Result<_, _>>()?;
    let types: Vec<Type> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| pg_type(f.data_type()))
        .collect();
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut buf = BytesMut::new();
    for r in 0..batch.num_rows() {
        let mut row = Vec::with_capacity(batch.num_columns());
        for ((c, f), ty) in batch.columns().iter().zip(&formatters).zip(&types) {
            buf.clear();
            let v = value_at(c, r, f, zone);
            row.push(
                match v.to_sql_text(ty, &mut buf, &FormatOptions::default())? {
                    IsNull::Yes => None,
                    IsNull::No => Some(String::from_utf8_lossy(&buf).into_owned()),
                },
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Encodes all rows of `batch` for the wire.
pub fn encode_batch(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    fields: &Arc<Vec<FieldInfo>>,
    zone: &Zone,
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
            encoder.encode_field(&value_at(c, r, f, zone))?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_match_postgres_binary() {
        use postgres_types::FromSql;
        let read = |v: i128, s: i8| {
            let mut b = BytesMut::new();
            put_numeric(v, s, &mut b);
            b
        };
        // Within a 96-bit decimal: the same bytes and value rust_decimal reads.
        for (v, s) in [
            (12345i128, 2i8),
            (-12345, 2),
            (1, 4),
            (10000, 0),
            (123_456_789, 0),
            (5, 1),
            (-1_000_000_001, 9),
            (35, 1),
        ] {
            let b = read(v, s);
            let d = rust_decimal::Decimal::from_sql(&Type::NUMERIC, &b).expect("reads");
            assert_eq!(
                d,
                rust_decimal::Decimal::from_i128_with_scale(v, s as u32),
                "{v} {s}"
            );
            assert_eq!(d.scale(), s as u32, "display scale of {v} {s}");
        }
        // Postgres' bytes for 12.34: 2 digits, weight 0, positive, scale 2, 12, 3400.
        assert_eq!(&read(1234, 2)[..], &[0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 13, 72]);
        // Zero keeps its scale.
        assert_eq!(&read(0, 3)[..], &[0, 0, 0, 0, 0, 0, 0, 3]);
        // Fractions only, and the widest scales (no overflow).
        let d = |v: i128, s: i8| {
            rust_decimal::Decimal::from_sql(&Type::NUMERIC, &read(v, s)).expect("reads")
        };
        assert_eq!(d(5, 4).to_string(), "0.0005");
        assert_eq!(d(-12, 5).to_string(), "-0.00012");
        assert_eq!(&read(5, 38)[..], &[0, 1, 0xff, 0xf6, 0, 0, 0, 38, 1, 244]);
        let wide = 34 * 10i128.pow(36); // 0.34 at scale 38
        assert_eq!(
            &read(wide, 38)[..],
            &[0, 1, 0xff, 0xff, 0, 0, 0, 38, 13, 72]
        );
        // A negative scale: 12 × 10^3.
        assert_eq!(d(12, -3).to_string(), "12000");
        // Past 28 digits: 3074457345618258604.0000000000000000 (35 digits).
        let big = 30_744_573_456_182_586_040_000_000_000_000_000i128;
        let b = read(big, 16);
        // 307 4457 3456 1825 8604, weight 4, the zero fraction left out.
        assert_eq!(&b[..8], &[0, 5, 0, 4, 0, 0, 0, 16]);
        assert_eq!(&b[8..], &[1, 51, 17, 105, 13, 128, 7, 33, 33, 156]);
    }

    #[test]
    fn arrays_like_postgres() {
        let mut b = BytesMut::new();
        let a = PgValue::Array(
            Type::VARCHAR,
            vec![
                PgValue::Text("id".into()),
                PgValue::Text("a b".into()),
                PgValue::Text("".into()),
                PgValue::Null,
                PgValue::Text("q\"x".into()),
            ],
        );
        a.to_sql_text(&Type::VARCHAR_ARRAY, &mut b, &FormatOptions::default())
            .expect("text");
        assert_eq!(&b[..], br#"{id,"a b","",NULL,"q\"x"}"#);
    }
}
