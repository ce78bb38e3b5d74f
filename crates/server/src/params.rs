//! Bound parameter values (Bind), text or binary, into the DataFusion values a statement
//! is run with: scalars of the Postgres types clients send, and one-dimensional arrays
//! (`{1,2,3}` in text; Postgres' binary array format), as `x = ANY($1)` takes them.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use freshet_planner::pg_text::Zone;
use pgwire::api::Type;
use postgres_types::{FromSql, Kind};

use crate::encode::pg_type;
pub use freshet_planner::pg_input::parse_array_text;

/// A parameter's value: `raw` (None: NULL) in text or binary format, sent as Postgres type
/// `pg`, for a statement that wants DataFusion type `target` (if it knows).
pub fn decode(
    raw: Option<&[u8]>,
    binary: bool,
    pg: &Type,
    target: Option<&DataType>,
    zone: &Zone,
) -> Result<ScalarValue, String> {
    let Some(bytes) = raw else {
        return Ok(match target {
            Some(t) => ScalarValue::try_from(t).unwrap_or(ScalarValue::Null),
            None => ScalarValue::Null,
        });
    };
    // A struct (or an array of them) in text: Postgres' record text.
    if let (false, Some(t)) = (binary, target) {
        let structs = match t {
            DataType::Struct(_) => true,
            DataType::List(f) => matches!(f.data_type(), DataType::Struct(_)),
            _ => false,
        };
        if structs {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            if let Some(v) = freshet_planner::pg_input::value_from_text(text, t) {
                return v;
            }
        }
    }
    // An array: by the statement's type, or by what the client says it sends.
    let element = match target {
        Some(DataType::List(f)) | Some(DataType::LargeList(f)) => Some(f.data_type().clone()),
        _ => match pg.kind() {
            Kind::Array(e) => Some(arrow_of(e)),
            _ => None,
        },
    };
    let value = match (element, binary) {
        (Some(elem), false) => {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            let items = parse_array_text(text)?
                .into_iter()
                .map(|item| match item {
                    None => ScalarValue::try_from(&elem).map_err(|e| e.to_string()),
                    Some(s) => cast(ScalarValue::Utf8(Some(s)), &elem, zone),
                })
                .collect::<Result<Vec<_>, _>>()?;
            ScalarValue::List(ScalarValue::new_list_nullable(&items, &elem))
        }
        (Some(elem), true) => binary_array(bytes, &elem)?,
        // bytea in text: `\x…` hex or the escape format.
        (None, false) if *pg == Type::BYTEA || target == Some(&DataType::Binary) => {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            ScalarValue::Binary(Some(freshet_planner::pg_input::bytea_from_text(text)?))
        }
        // jsonb: validated and normalized; in binary after a version byte.
        (None, binary)
            if matches!(*pg, Type::JSONB | Type::JSON) || target == Some(&DataType::LargeUtf8) =>
        {
            let bytes = match (binary, *pg == Type::JSONB) {
                (true, true) => bytes
                    .strip_prefix(&[1])
                    .ok_or("unsupported jsonb version")?,
                _ => bytes,
            };
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            ScalarValue::LargeUtf8(Some(freshet_storage::jsonb::normalize(text)?))
        }
        (None, false) => ScalarValue::Utf8(Some(
            String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?,
        )),
        (None, true) if *pg == Type::BYTEA => ScalarValue::Binary(Some(bytes.to_vec())),
        (None, true) => binary_scalar(bytes, pg)?,
    };
    match target {
        Some(t) if &value.data_type() != t => cast(value, t, zone),
        _ => Ok(value),
    }
}

/// `v` as a `t`; timestamp text as a timestamp literal reads (a time without seconds, a
/// zone a `timestamp` ignores), a `timestamptz` without an offset in the session's `zone`;
/// interval text in Postgres' forms (`1 day 02:00:00`).
fn cast(v: ScalarValue, t: &DataType, zone: &Zone) -> Result<ScalarValue, String> {
    if let (ScalarValue::Utf8(Some(_)), DataType::Timestamp(..) | DataType::Interval(_)) = (&v, t) {
        let text = v.to_array().map_err(|e| e.to_string())?;
        let text = freshet_planner::literals::timestamp_strings(&text, t);
        let read = match freshet_planner::session_zone::read_text(&text, t, zone, false) {
            Some(read) => read.map_err(|e| e.to_string())?,
            None => datafusion::arrow::compute::cast_with_options(
                &text,
                t,
                &datafusion::arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?,
        };
        return ScalarValue::try_from_array(&read, 0).map_err(|e| e.to_string());
    }
    let array = v.to_array().map_err(|e| e.to_string())?;
    if let Some(read) = freshet_planner::session_zone::convert(&array, t, zone) {
        let read = read.map_err(|e| e.to_string())?;
        return ScalarValue::try_from_array(&read, 0).map_err(|e| e.to_string());
    }
    // A date with more after it: Postgres reads the date (pgjdbc's setDate sends
    // '2024-03-10 +05:30').
    if let (ScalarValue::Utf8(Some(s)), DataType::Date32) = (&v, t) {
        if v.cast_to(t).is_err() {
            if let Some(date) = s.split_whitespace().next() {
                return ScalarValue::Utf8(Some(date.to_string()))
                    .cast_to(t)
                    .map_err(|e| e.to_string());
            }
        }
    }
    let read = freshet_engine::numeric_special::cast(
        &array,
        t,
        &datafusion::common::format::DEFAULT_CAST_OPTIONS,
    )
    .map_err(|e| e.to_string())?;
    ScalarValue::try_from_array(&read, 0).map_err(|e| e.to_string())
}

/// The DataFusion type a parameter of Postgres type `t` is read as.
fn arrow_of(t: &Type) -> DataType {
    freshet_planner::pg_catalog::types::arrow_of(t.oid()).unwrap_or(DataType::Utf8)
}

/// One binary value of a scalar type.
fn binary_scalar(bytes: &[u8], pg: &Type) -> Result<ScalarValue, String> {
    fn read<'a, T: FromSql<'a>>(ty: &Type, b: &'a [u8]) -> Result<T, String> {
        T::from_sql(ty, b).map_err(|e| e.to_string())
    }
    Ok(match *pg {
        Type::BOOL => ScalarValue::Boolean(Some(read(pg, bytes)?)),
        Type::INT2 => ScalarValue::Int16(Some(read(pg, bytes)?)),
        Type::INT4 => ScalarValue::Int32(Some(read(pg, bytes)?)),
        Type::INT8 => ScalarValue::Int64(Some(read(pg, bytes)?)),
        Type::OID => ScalarValue::UInt32(Some(read(pg, bytes)?)),
        Type::FLOAT4 => ScalarValue::Float32(Some(read(pg, bytes)?)),
        Type::FLOAT8 => ScalarValue::Float64(Some(read(pg, bytes)?)),
        Type::DATE => {
            let d: NaiveDate = read(pg, bytes)?;
            ScalarValue::Date32(Some((d - NaiveDate::default()).num_days() as i32))
        }
        Type::TIMESTAMP => {
            let t: NaiveDateTime = read(pg, bytes)?;
            ScalarValue::TimestampMicrosecond(Some(t.and_utc().timestamp_micros()), None)
        }
        Type::TIMESTAMPTZ => {
            let t: DateTime<chrono::FixedOffset> = read(pg, bytes)?;
            ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("+00:00".into()))
        }
        // Microseconds, days, months, big-endian (psycopg sends a timedelta so).
        Type::INTERVAL => {
            let field = |at: usize, len: usize| -> Result<&[u8], String> {
                bytes
                    .get(at..at + len)
                    .ok_or_else(|| "a binary interval takes 16 bytes".to_string())
            };
            let micros = i64::from_be_bytes(field(0, 8)?.try_into().map_err(|_| "interval")?);
            let days = i32::from_be_bytes(field(8, 4)?.try_into().map_err(|_| "interval")?);
            let months = i32::from_be_bytes(field(12, 4)?.try_into().map_err(|_| "interval")?);
            ScalarValue::IntervalMonthDayNano(Some(
                datafusion::arrow::datatypes::IntervalMonthDayNano::new(
                    months,
                    days,
                    micros.saturating_mul(1_000),
                ),
            ))
        }
        Type::NUMERIC => {
            // The sign word of NaN and the infinities (no digits follow).
            use freshet_engine::numeric_special::Special;
            let special = match bytes.get(4..6) {
                Some([0xC0, 0]) => Some(Special::NaN),
                Some([0xD0, 0]) => Some(Special::Infinity),
                Some([0xF0, 0]) => Some(Special::NegInfinity),
                _ => None,
            };
            if let Some(s) = special {
                return Ok(ScalarValue::Decimal128(Some(s.value()), 38, 0));
            }
            let d: rust_decimal::Decimal = read(pg, bytes)?;
            ScalarValue::Decimal128(Some(d.mantissa()), 38, d.scale() as i8)
        }
        _ => ScalarValue::Utf8(Some(read::<String>(pg, bytes)?)),
    })
}

/// Postgres' binary array: dimensions, a NULL flag, the element type, each dimension's
/// length and lower bound, then each element as length and bytes (-1: NULL).
fn binary_array(bytes: &[u8], elem: &DataType) -> Result<ScalarValue, String> {
    let mut r = Reader { bytes, at: 0 };
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let elem_oid = r.i32()? as u32;
    if ndim == 0 {
        return Ok(ScalarValue::List(ScalarValue::new_list_nullable(&[], elem)));
    }
    if ndim != 1 {
        return Err("only one-dimensional arrays are supported as parameters".into());
    }
    let len = r.i32()?;
    let _lower = r.i32()?;
    let elem_type = Type::from_oid(elem_oid).unwrap_or(Type::TEXT);
    let mut items = Vec::with_capacity(len.clamp(0, 1 << 16) as usize);
    for _ in 0..len {
        let n = r.i32()?;
        if n < 0 {
            items.push(ScalarValue::try_from(elem).map_err(|e| e.to_string())?);
            continue;
        }
        let value = r.take(n as usize)?;
        items.push(cast(binary_scalar(value, &elem_type)?, elem, &Zone::Utc)?);
    }
    if r.at != bytes.len() {
        return Err("a binary array has bytes after its last element".into());
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &items, elem,
    )))
}

/// Reads a binary array's fields in order.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("a binary array ends early")?;
        let b = self
            .bytes
            .get(self.at..end)
            .ok_or("a binary array ends early")?;
        self.at = end;
        Ok(b)
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The Postgres type a parameter of DataFusion type `t` is described as.
pub fn described_type(t: Option<&DataType>) -> Type {
    t.map(pg_type).unwrap_or(Type::TEXT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn array_literals() {
        assert_eq!(
            parse_array_text("{1, 2,NULL}").unwrap(),
            vec![Some("1".into()), Some("2".into()), None]
        );
        assert_eq!(
            parse_array_text(r#"{"a b","q\"x","NULL",c}"#).unwrap(),
            vec![
                Some("a b".into()),
                Some("q\"x".into()),
                Some("NULL".into()),
                Some("c".into())
            ]
        );
        assert_eq!(
            parse_array_text("{}").unwrap(),
            Vec::<Option<String>>::new()
        );
        assert!(parse_array_text("{{1,2},{3,4}}").is_err());
        assert!(parse_array_text("1,2").is_err());
        assert!(parse_array_text("{\"open}").is_err());
    }

    #[test]
    fn arrays_decode_to_their_target() {
        let list = DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
            "item",
            DataType::Int64,
            true,
        )));
        let v = decode(
            Some(b"{3,5,7}"),
            false,
            &Type::TEXT,
            Some(&list),
            &Zone::Utc,
        )
        .unwrap();
        assert_eq!(v.data_type(), list);
        // Binary int4[] {3,NULL}.
        let mut b = Vec::new();
        for x in [1i32, 1, 23, 2, 1, 4] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        let v = decode(Some(&b), true, &Type::INT4_ARRAY, Some(&list), &Zone::Utc).unwrap();
        let ScalarValue::List(a) = v else {
            panic!("not a list")
        };
        assert_eq!(a.value(0).len(), 2);
        assert!(decode(Some(b"{1,x}"), false, &Type::TEXT, Some(&list), &Zone::Utc).is_err());
    }

    #[test]
    fn timestamp_text_reads_as_a_literal_in_the_session_zone() {
        use datafusion::arrow::datatypes::TimeUnit;
        let tz = DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()));
        let naive = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let ny = Zone::parse("America/New_York").unwrap();
        let micros = |v: ScalarValue| match v {
            ScalarValue::TimestampNanosecond(Some(n), _) => n / 1_000,
            other => panic!("not a timestamp: {other:?}"),
        };
        // Without seconds, in New York: 05:00 UTC.
        let v = decode(
            Some(b"2024-01-01 00:00"),
            false,
            &Type::TEXT,
            Some(&tz),
            &ny,
        )
        .unwrap();
        assert_eq!(micros(v), 1_704_085_200_000_000);
        // An offset is kept; a timestamp ignores it.
        let v = decode(
            Some(b"2024-01-01 00:00+00"),
            false,
            &Type::TEXT,
            Some(&tz),
            &ny,
        )
        .unwrap();
        assert_eq!(micros(v), 1_704_067_200_000_000);
        let v = decode(
            Some(b"2024-01-01 00:00+02"),
            false,
            &Type::TEXT,
            Some(&naive),
            &ny,
        )
        .unwrap();
        assert_eq!(micros(v), 1_704_067_200_000_000);
        assert!(decode(Some(b"tomorrow-ish"), false, &Type::TEXT, Some(&tz), &ny).is_err());
    }

    #[test]
    fn intervals_decode_from_text_and_binary() {
        use datafusion::arrow::datatypes::{IntervalMonthDayNano, IntervalUnit};
        let to = DataType::Interval(IntervalUnit::MonthDayNano);
        let want = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
            0,
            1,
            7_200_500_000_000,
        )));
        let text = decode(
            Some(b"1 day 02:00:00.5"),
            false,
            &Type::TEXT,
            Some(&to),
            &Zone::Utc,
        );
        assert_eq!(text.unwrap(), want);
        let mut b = 7_200_500_000i64.to_be_bytes().to_vec();
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        let binary = decode(Some(&b), true, &Type::INTERVAL, Some(&to), &Zone::Utc);
        assert_eq!(binary.unwrap(), want);
        assert!(decode(Some(&b[..5]), true, &Type::INTERVAL, Some(&to), &Zone::Utc).is_err());
    }
}
