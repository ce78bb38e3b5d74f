//! Message payloads (JSON objects, CSV lines) → rows of SQL values.
//!
//! Decoding is per message, so one bad message becomes one dead letter and never stops
//! the stream. A missing JSON field is NULL; a value of the wrong type is an error.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;

/// How payloads are encoded.
#[derive(Clone, Debug)]
pub enum Format {
    Json,
    Csv { delimiter: u8, header: bool },
}

/// Decodes payloads into the payload columns of a source.
#[derive(Clone, Debug)]
pub struct Decoder {
    columns: Vec<(String, DataType)>,
    format: Format,
}

impl Decoder {
    pub fn new(columns: Vec<(String, DataType)>, format: Format) -> Decoder {
        Decoder { columns, format }
    }

    /// Decodes one message. `Ok(None)`: a CSV header line, to be skipped.
    pub fn decode(&self, payload: &[u8]) -> Result<Option<Vec<ScalarValue>>, String> {
        match &self.format {
            Format::Json => self.decode_json(payload).map(Some),
            Format::Csv { delimiter, header } => self.decode_csv(payload, *delimiter, *header),
        }
    }

    fn decode_json(&self, payload: &[u8]) -> Result<Vec<ScalarValue>, String> {
        let v: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| "invalid JSON: expected an object".to_string())?;
        self.columns
            .iter()
            .map(|(name, dt)| match obj.get(name) {
                None | Some(serde_json::Value::Null) => null_of(dt),
                Some(v) => json_value(v, dt).map_err(|e| format!("column \"{name}\": {e}")),
            })
            .collect()
    }

    fn decode_csv(
        &self,
        payload: &[u8],
        delimiter: u8,
        header: bool,
    ) -> Result<Option<Vec<ScalarValue>>, String> {
        let line =
            std::str::from_utf8(payload).map_err(|_| "invalid UTF-8 in CSV line".to_string())?;
        let line = line.trim_end_matches(['\r', '\n']);
        let fields = split_csv(line, delimiter as char)?;
        if header
            && fields.len() == self.columns.len()
            && fields
                .iter()
                .zip(&self.columns)
                .all(|(f, (n, _))| f.trim().eq_ignore_ascii_case(n))
        {
            return Ok(None);
        }
        if fields.len() != self.columns.len() {
            return Err(format!(
                "expected {} CSV fields, found {}",
                self.columns.len(),
                fields.len()
            ));
        }
        fields
            .iter()
            .zip(&self.columns)
            .map(|(f, (name, dt))| {
                if f.is_empty() {
                    null_of(dt)
                } else {
                    parse_text(f, dt).map_err(|e| format!("column \"{name}\": {e}"))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Splits a CSV line; fields may be double-quoted with `""` escapes.
fn split_csv(line: &str, delimiter: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == delimiter {
            out.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err("unterminated quoted CSV field".into());
    }
    out.push(cur);
    Ok(out)
}

fn null_of(dt: &DataType) -> Result<ScalarValue, String> {
    ScalarValue::try_from(dt).map_err(|e| e.to_string())
}

fn json_value(v: &serde_json::Value, dt: &DataType) -> Result<ScalarValue, String> {
    use serde_json::Value as J;
    let wrong = || format!("expected {}, found {v}", type_name(dt));
    Ok(match (dt, v) {
        (DataType::Boolean, J::Bool(b)) => ScalarValue::Boolean(Some(*b)),
        (DataType::Int16, J::Number(n)) => ScalarValue::Int16(Some(
            n.as_i64()
                .and_then(|x| i16::try_from(x).ok())
                .ok_or_else(wrong)?,
        )),
        (DataType::Int32, J::Number(n)) => ScalarValue::Int32(Some(
            n.as_i64()
                .and_then(|x| i32::try_from(x).ok())
                .ok_or_else(wrong)?,
        )),
        (DataType::Int64, J::Number(n)) => ScalarValue::Int64(Some(n.as_i64().ok_or_else(wrong)?)),
        (DataType::Float32, J::Number(n)) => {
            ScalarValue::Float32(Some(n.as_f64().ok_or_else(wrong)? as f32))
        }
        (DataType::Float64, J::Number(n)) => {
            ScalarValue::Float64(Some(n.as_f64().ok_or_else(wrong)?))
        }
        (DataType::Decimal128(_, _), J::Number(n)) => parse_text(&n.to_string(), dt)?,
        (DataType::Timestamp(_, _), J::Number(n)) => {
            // Epoch milliseconds.
            let ms = n.as_i64().ok_or_else(wrong)?;
            timestamp(ms.checked_mul(1000).ok_or_else(wrong)?, dt)
        }
        // jsonb: any JSON value, as its canonical text.
        (DataType::LargeUtf8, v) => ScalarValue::LargeUtf8(Some(freshet_storage::jsonb::text(v))),
        (DataType::Utf8, J::String(s)) => ScalarValue::Utf8(Some(s.clone())),
        (DataType::Utf8, other) => ScalarValue::Utf8(Some(other.to_string())),
        (DataType::List(f), J::Array(items)) => {
            let elem = f.data_type();
            let values = items
                .iter()
                .map(|item| match item {
                    J::Null => null_of(elem),
                    item => json_value(item, elem),
                })
                .collect::<Result<Vec<_>, _>>()?;
            ScalarValue::List(ScalarValue::new_list_nullable(&values, elem))
        }
        // A struct from an object, field by field: a missing field is NULL, others are
        // ignored (as for a row's columns).
        (DataType::Struct(fs), J::Object(obj)) => {
            let values = fs
                .iter()
                .map(|f| match obj.get(f.name()) {
                    None | Some(J::Null) => null_of(f.data_type()),
                    Some(item) => json_value(item, f.data_type())
                        .map_err(|e| format!("field \"{}\": {e}", f.name())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            freshet_storage::codec::struct_value(fs, values)?
        }
        (DataType::Binary, J::String(s)) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| format!("expected base64-encoded bytea, found {v}"))?;
            ScalarValue::Binary(Some(bytes))
        }
        (_, J::String(s))
            if !matches!(dt, DataType::Utf8 | DataType::List(_) | DataType::Struct(_)) =>
        {
            parse_text(s, dt)?
        }
        _ => return Err(wrong()),
    })
}

fn type_name(dt: &DataType) -> &'static str {
    match dt {
        DataType::Boolean => "boolean",
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Decimal128(_, _) => "numeric",
        DataType::Utf8 => "varchar",
        DataType::Date32 => "date",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Interval(_) => "interval",
        DataType::Binary => "bytea (base64)",
        DataType::LargeUtf8 => "jsonb",
        DataType::List(_) => "an array",
        DataType::Struct(_) => "an object",
        _ => "value",
    }
}

fn timestamp(micros: i64, dt: &DataType) -> ScalarValue {
    let tz = match dt {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    ScalarValue::TimestampMicrosecond(Some(micros), tz)
}

/// Parses a text value (CSV field, or a JSON string for a non-text column).
pub fn parse_text(s: &str, dt: &DataType) -> Result<ScalarValue, String> {
    let t = s.trim();
    let bad = || format!("invalid input syntax for type {}: \"{s}\"", type_name(dt));
    Ok(match dt {
        DataType::Boolean => ScalarValue::Boolean(Some(match t.to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => true,
            "f" | "false" | "no" | "off" | "0" => false,
            _ => return Err(bad()),
        })),
        DataType::Int16 => ScalarValue::Int16(Some(t.parse().map_err(|_| bad())?)),
        DataType::Int32 => ScalarValue::Int32(Some(t.parse().map_err(|_| bad())?)),
        DataType::Int64 => ScalarValue::Int64(Some(t.parse().map_err(|_| bad())?)),
        DataType::Float32 => ScalarValue::Float32(Some(t.parse().map_err(|_| bad())?)),
        DataType::Float64 => ScalarValue::Float64(Some(t.parse().map_err(|_| bad())?)),
        DataType::Decimal128(p, scale) => {
            use freshet_engine::numeric_special::{holds_infinity, Special};
            let v = match Special::parse(t) {
                Some(Special::NaN) => Special::NaN.value(),
                Some(_) if !holds_infinity(*p) => {
                    return Err(format!(
                        "numeric field overflow: a field with precision {p}, scale {scale} \
                         cannot hold an infinite value"
                    ))
                }
                Some(special) => special.value(),
                None => parse_decimal(t, *scale).ok_or_else(bad)?,
            };
            ScalarValue::Decimal128(Some(v), *p, *scale)
        }
        DataType::Utf8 => ScalarValue::Utf8(Some(s.to_string())),
        DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(freshet_storage::jsonb::normalize(t)?)),
        DataType::Date32 => {
            let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| bad())?;
            ScalarValue::Date32(Some((d - NaiveDate::default()).num_days() as i32))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = if let Ok(d) = DateTime::parse_from_rfc3339(t) {
                d.timestamp_micros()
            } else if let Ok(d) = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z") {
                d.timestamp_micros()
            } else {
                [
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S",
                    "%Y-%m-%dT%H:%M:%S",
                ]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
                .map(|d| d.and_utc().timestamp_micros())
                .ok_or_else(bad)?
            };
            timestamp(micros, dt)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            return Err("interval columns are not supported in sources yet".into())
        }
        _ => return Err(format!("columns of type {dt} are not supported in sources")),
    })
}

/// `"-12.345"` at scale 2 → `-1235` (rounded half away from zero).
fn parse_decimal(s: &str, scale: i8) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let scale = scale.max(0) as usize;
    let mut v: i128 = 0;
    for c in int
        .chars()
        .chain(frac.chars().chain(std::iter::repeat('0')).take(scale))
    {
        v = v.checked_mul(10)?.checked_add(c as i128 - '0' as i128)?;
    }
    if frac.len() > scale && frac.as_bytes()[scale] >= b'5' {
        v = v.checked_add(1)?;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numeric NaN and infinities from text (a JSON string, a CSV field), as Postgres
    /// reads them; a numeric(p, s) holds NaN only.
    #[test]
    fn numeric_specials() {
        use freshet_engine::numeric_special::{INFINITY, NAN, NEG_INFINITY};
        let read = |s: &str, p: u8| parse_text(s, &DataType::Decimal128(p, 2));
        assert_eq!(
            read("NaN", 38),
            Ok(ScalarValue::Decimal128(Some(NAN), 38, 2))
        );
        assert_eq!(
            read(" -inf", 38),
            Ok(ScalarValue::Decimal128(Some(NEG_INFINITY), 38, 2))
        );
        assert_eq!(
            read("Infinity", 38),
            Ok(ScalarValue::Decimal128(Some(INFINITY), 38, 2))
        );
        assert_eq!(
            read("nan", 10),
            Ok(ScalarValue::Decimal128(Some(NAN), 10, 2))
        );
        assert!(read("Infinity", 10).is_err());
        assert!(read("-nan", 38).is_err());
    }

    fn dec() -> Decoder {
        Decoder::new(
            vec![
                ("id".into(), DataType::Int64),
                ("name".into(), DataType::Utf8),
                ("amount".into(), DataType::Decimal128(10, 2)),
                (
                    "at".into(),
                    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                ),
            ],
            Format::Json,
        )
    }

    #[test]
    fn json_objects() {
        let row = dec()
            .decode(br#"{"id": 7, "name": "x", "amount": "12.345", "at": "2026-11-28T12:00:00Z", "extra": 1}"#)
            .unwrap()
            .unwrap();
        assert_eq!(row[0], ScalarValue::Int64(Some(7)));
        assert_eq!(row[2], ScalarValue::Decimal128(Some(1235), 10, 2));
        assert_eq!(
            row[3],
            ScalarValue::TimestampMicrosecond(Some(1_795_867_200_000_000), Some("+00:00".into()))
        );
        // missing fields are NULL
        let row = dec().decode(br#"{"id": 1}"#).unwrap().unwrap();
        assert!(row[1].is_null() && row[3].is_null());
    }

    /// Nested objects fill struct columns by field name; a missing field is NULL, a
    /// wrong one names its path.
    #[test]
    fn json_objects_into_structs() {
        use datafusion::arrow::datatypes::Field;
        let inner = DataType::Struct(vec![Field::new("city", DataType::Utf8, true)].into());
        let outer = DataType::Struct(
            vec![
                Field::new("age", DataType::Int32, true),
                Field::new("addr", inner.clone(), true),
            ]
            .into(),
        );
        let d = Decoder::new(vec![("who".into(), outer.clone())], Format::Json);
        let row = d
            .decode(br#"{"who": {"addr": {"city": "Oslo", "zip": 1}, "x": true}}"#)
            .unwrap()
            .unwrap();
        let DataType::Struct(fs) = &outer else {
            unreachable!()
        };
        let DataType::Struct(ifs) = &inner else {
            unreachable!()
        };
        let city =
            freshet_storage::codec::struct_value(ifs, vec![ScalarValue::Utf8(Some("Oslo".into()))])
                .unwrap();
        let want =
            freshet_storage::codec::struct_value(fs, vec![ScalarValue::Int32(None), city]).unwrap();
        assert_eq!(row[0], want);
        assert_eq!(row[0].data_type(), outer);
        let err = d
            .decode(br#"{"who": {"addr": {"city": 5}, "age": "old"}}"#)
            .unwrap_err();
        assert!(err.contains("column \"who\": field \"age\""), "{err}");
        let err = d.decode(br#"{"who": [1]}"#).unwrap_err();
        assert!(err.contains("expected an object"), "{err}");
    }

    #[test]
    fn json_arrays_and_base64_bytea() {
        use std::sync::Arc;
        let list = |t: DataType| DataType::List(Arc::new(freshet_storage::codec::list_field(&t)));
        let d = Decoder::new(
            vec![
                ("tags".into(), list(DataType::Utf8)),
                ("ids".into(), list(DataType::Int64)),
                ("raw".into(), DataType::Binary),
            ],
            Format::Json,
        );
        let row = d
            .decode(br#"{"tags": ["a", null, "b"], "ids": [], "raw": "AAH/"}"#)
            .unwrap()
            .unwrap();
        let tags = [
            ScalarValue::Utf8(Some("a".into())),
            ScalarValue::Utf8(None),
            ScalarValue::Utf8(Some("b".into())),
        ];
        assert_eq!(
            row[0],
            ScalarValue::List(ScalarValue::new_list_nullable(&tags, &DataType::Utf8))
        );
        assert_eq!(row[0].data_type(), list(DataType::Utf8));
        assert_eq!(
            row[1],
            ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Int64))
        );
        assert_eq!(row[2], ScalarValue::Binary(Some(vec![0, 1, 255])));
        assert!(d.decode(br#"{"ids": [1, "x"]}"#).is_err());
        assert!(d.decode(br#"{"ids": 1}"#).is_err());
        assert!(d.decode(br#"{"raw": "not base64!"}"#).is_err());
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        assert!(dec().decode(b"{not json").is_err());
        assert!(dec().decode(b"[1,2]").is_err());
        let e = dec().decode(br#"{"id": "abc"}"#).unwrap_err();
        assert!(e.contains("\"id\""), "{e}");
    }

    #[test]
    fn csv_lines() {
        let d = Decoder::new(
            vec![("a".into(), DataType::Int32), ("b".into(), DataType::Utf8)],
            Format::Csv {
                delimiter: b',',
                header: true,
            },
        );
        assert_eq!(d.decode(b"a,b").unwrap(), None);
        assert_eq!(
            d.decode(b"3,\"x, \"\"y\"\"\"").unwrap().unwrap(),
            vec![
                ScalarValue::Int32(Some(3)),
                ScalarValue::Utf8(Some("x, \"y\"".into()))
            ]
        );
        assert!(d.decode(b"1").is_err());
        assert!(d.decode(b"zz,1").is_err());
    }
}
