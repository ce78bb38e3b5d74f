//! Order-preserving ("memcomparable") encoding of SQL values.
//!
//! A row is encoded as the concatenation of its values; each value is a null flag byte
//! (`0x00` NULL, `0x01` present — NULLs sort first) followed by a type-specific body whose
//! byte order equals the value order. The same encoding serves as RocksDB key (so range
//! scans and prefix seeks follow SQL order) and as stored value. Decoding needs the column
//! types, which the catalog holds.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;

use crate::StorageError;

/// Whether values of `dt` can be stored (and so appear in a table, a view or a key).
pub fn is_storable(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Null
            | DataType::Boolean
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Utf8
            // jsonb (see `crate::jsonb`)
            | DataType::LargeUtf8
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Microsecond, _)
            | DataType::Interval(IntervalUnit::MonthDayNano)
            | DataType::Binary
    ) || matches!(dt, DataType::List(f) if **f == list_field(f.data_type())
        && !matches!(f.data_type(), DataType::List(_))
        && is_storable(f.data_type()))
        || matches!(dt, DataType::Struct(fs) if !fs.is_empty()
            && fs.iter().all(|f| f.is_nullable() && f.metadata().is_empty()
                && is_storable(f.data_type())))
}

/// The element field of a stored array of `elem` (`INT[]`): the one DataFusion's array
/// functions build (named `item`, nullable), so stored and computed arrays have one type.
pub fn list_field(elem: &DataType) -> datafusion::arrow::datatypes::Field {
    datafusion::arrow::datatypes::Field::new_list_field(elem.clone(), true)
}

/// The type a value of `dt` is stored as, if it can be stored.
pub fn storable_type(dt: &DataType) -> Option<DataType> {
    if is_storable(dt) {
        return Some(dt.clone());
    }
    Some(match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::Int8 | DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        // Like Postgres' bigint for row_number() and friends; values above i64::MAX
        // fail the cast instead of wrapping.
        DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Interval(_) => DataType::Interval(IntervalUnit::MonthDayNano),
        DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let elem = storable_type(f.data_type())?;
            if matches!(elem, DataType::List(_)) {
                return None; // arrays of arrays (Postgres' arrays are flat)
            }
            DataType::List(Arc::new(list_field(&elem)))
        }
        // A struct's fields keep their names; each is nullable, as a declared
        // `STRUCT<…>` column's are, so computed and stored structs have one type.
        DataType::Struct(fs) if !fs.is_empty() => DataType::Struct(
            fs.iter()
                .map(|f| {
                    storable_type(f.data_type())
                        .map(|t| datafusion::arrow::datatypes::Field::new(f.name(), t, true))
                })
                .collect::<Option<Vec<_>>>()?
                .into(),
        ),
        _ => return None,
    })
}

/// A (non-NULL) struct value of type `Struct(fields)` from its field values.
pub fn struct_value(
    fields: &datafusion::arrow::datatypes::Fields,
    values: Vec<ScalarValue>,
) -> Result<ScalarValue, String> {
    let columns = values
        .iter()
        .map(|v| v.to_array().map_err(|e| format!("struct field: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let a = datafusion::arrow::array::StructArray::try_new(fields.clone(), columns, None)
        .map_err(|e| format!("struct: {e}"))?;
    Ok(ScalarValue::Struct(Arc::new(a)))
}

/// Appends the encoding of `v` to `out`.
pub fn encode_value(v: &ScalarValue, out: &mut Vec<u8>) -> Result<(), StorageError> {
    if v.is_null() {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    match v {
        ScalarValue::Boolean(Some(b)) => out.push(*b as u8),
        ScalarValue::Int16(Some(x)) => out.extend_from_slice(&((*x as u16) ^ 0x8000).to_be_bytes()),
        ScalarValue::Int32(Some(x)) => {
            out.extend_from_slice(&((*x as u32) ^ 0x8000_0000).to_be_bytes())
        }
        ScalarValue::Int64(Some(x)) => encode_i64(*x, out),
        ScalarValue::Float32(Some(x)) => {
            let x = if *x == 0.0 { 0.0f32 } else { *x };
            let bits = x.to_bits();
            let bits = if bits >> 31 == 1 {
                !bits
            } else {
                bits ^ (1 << 31)
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        ScalarValue::Float64(Some(x)) => {
            let x = if *x == 0.0 { 0.0f64 } else { *x };
            let bits = x.to_bits();
            let bits = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        ScalarValue::Decimal128(Some(x), _, _) => {
            out.extend_from_slice(&((*x as u128) ^ (1u128 << 127)).to_be_bytes())
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => encode_bytes(s.as_bytes(), out),
        ScalarValue::Date32(Some(d)) => {
            out.extend_from_slice(&((*d as u32) ^ 0x8000_0000).to_be_bytes())
        }
        ScalarValue::TimestampMicrosecond(Some(t), _) => encode_i64(*t, out),
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            out.extend_from_slice(&((i.months as u32) ^ 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&((i.days as u32) ^ 0x8000_0000).to_be_bytes());
            encode_i64(i.nanoseconds, out);
        }
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b))
        | ScalarValue::FixedSizeBinary(_, Some(b)) => encode_bytes(b, out),
        // An array: each element after a `0x01`, then `0x00`, so an array sorts before
        // the arrays it is a prefix of.
        ScalarValue::List(a) => encode_elements(&a.value(0), out)?,
        ScalarValue::LargeList(a) => encode_elements(&a.value(0), out)?,
        ScalarValue::FixedSizeList(a) => encode_elements(&a.value(0), out)?,
        // A struct: its fields in order (so structs sort field by field, as Postgres
        // orders records).
        // A NULL field is `0x02`, after every value, as Postgres orders records.
        ScalarValue::Struct(a) => {
            for col in a.columns() {
                let v = ScalarValue::try_from_array(col, 0)
                    .map_err(|e| StorageError::Unsupported(e.to_string()))?;
                if v.is_null() {
                    out.push(2);
                } else {
                    encode_value(&v, out)?;
                }
            }
        }
        other => {
            return Err(StorageError::Unsupported(format!(
                "cannot store values of type {}",
                other.data_type()
            )))
        }
    }
    Ok(())
}

/// An array's elements: each present one after `0x01`, each NULL as `0x02` (NULLs sort
/// after values, as Postgres orders array elements), then `0x00`.
fn encode_elements(values: &ArrayRef, out: &mut Vec<u8>) -> Result<(), StorageError> {
    for i in 0..values.len() {
        let v = ScalarValue::try_from_array(values, i)
            .map_err(|e| StorageError::Unsupported(e.to_string()))?;
        if v.is_null() {
            out.push(2);
        } else {
            out.push(1);
            encode_value(&v, out)?;
        }
    }
    out.push(0);
    Ok(())
}

fn encode_i64(x: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&((x as u64) ^ (1 << 63)).to_be_bytes());
}

/// Byte strings: `0x00` is escaped as `0x00 0xFF`; the end is `0x00 0x00`.
fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    for &c in b {
        out.push(c);
        if c == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Encodes a whole row.
pub fn encode_row(row: &[ScalarValue]) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(row.len() * 9);
    for v in row {
        encode_value(v, &mut out)?;
    }
    Ok(out)
}

/// Rows encoded one after another in one buffer (no allocation per row): row `i` is
/// `bytes[ends[i - 1]..ends[i]]`.
pub struct EncodedRows {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedRows {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Row `i`'s encoding (as [`encode_row`] would encode it).
    pub fn row(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.row(i))
    }
}

/// One column's values, downcast once for [`encode_rows`].
enum ColumnValues<'a> {
    Int64(&'a datafusion::arrow::array::Int64Array),
    Int32(&'a datafusion::arrow::array::Int32Array),
    Micros(&'a datafusion::arrow::array::TimestampMicrosecondArray),
    Utf8(&'a datafusion::arrow::array::StringArray),
    Boolean(&'a datafusion::arrow::array::BooleanArray),
    Other(&'a ArrayRef),
}

impl ColumnValues<'_> {
    fn of(col: &ArrayRef) -> ColumnValues<'_> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
        match col.data_type() {
            DataType::Int64 => ColumnValues::Int64(col.as_primitive::<Int64Type>()),
            DataType::Int32 => ColumnValues::Int32(col.as_primitive::<Int32Type>()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                ColumnValues::Micros(col.as_primitive::<TimestampMicrosecondType>())
            }
            DataType::Utf8 => ColumnValues::Utf8(col.as_string::<i32>()),
            DataType::Boolean => ColumnValues::Boolean(col.as_boolean()),
            _ => ColumnValues::Other(col),
        }
    }

    /// Appends value `i` (a null flag, then the value).
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), StorageError> {
        use datafusion::arrow::array::Array;
        let valid = match self {
            ColumnValues::Int64(a) => a.is_valid(i),
            ColumnValues::Int32(a) => a.is_valid(i),
            ColumnValues::Micros(a) => a.is_valid(i),
            ColumnValues::Utf8(a) => a.is_valid(i),
            ColumnValues::Boolean(a) => a.is_valid(i),
            ColumnValues::Other(a) => {
                let v = ScalarValue::try_from_array(a, i)
                    .map_err(|e| StorageError::Unsupported(e.to_string()))?;
                return encode_value(&v, out);
            }
        };
        if !valid {
            out.push(0);
            return Ok(());
        }
        out.push(1);
        match self {
            ColumnValues::Int64(a) => encode_i64(a.value(i), out),
            ColumnValues::Int32(a) => {
                out.extend_from_slice(&((a.value(i) as u32) ^ 0x8000_0000).to_be_bytes())
            }
            ColumnValues::Micros(a) => encode_i64(a.value(i), out),
            ColumnValues::Utf8(a) => encode_bytes(a.value(i).as_bytes(), out),
            ColumnValues::Boolean(a) => out.push(a.value(i) as u8),
            ColumnValues::Other(_) => {}
        }
        Ok(())
    }
}

/// Encodes the rows of some columns (each as [`encode_row`] would encode it) into one
/// buffer, straight from the Arrow arrays for the common types, without building a
/// `ScalarValue` per value or allocating per row.
pub fn encode_rows(cols: &[ArrayRef], rows: usize) -> Result<EncodedRows, StorageError> {
    let values: Vec<ColumnValues> = cols.iter().map(ColumnValues::of).collect();
    let mut bytes = Vec::with_capacity(rows * cols.len() * 9);
    let mut ends = Vec::with_capacity(rows);
    for i in 0..rows {
        for v in &values {
            v.encode(i, &mut bytes)?;
        }
        ends.push(bytes.len());
    }
    Ok(EncodedRows { bytes, ends })
}

/// Reads values from an encoded buffer.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| StorageError::Corrupt("truncated value".into()))?;
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn i64(&mut self) -> Result<i64, StorageError> {
        Ok((u64::from_be_bytes(self.arr()?) ^ (1 << 63)) as i64)
    }

    fn i32(&mut self) -> Result<i32, StorageError> {
        Ok((u32::from_be_bytes(self.arr()?) ^ 0x8000_0000) as i32)
    }

    /// A byte string (see `encode_bytes`).
    fn bytes(&mut self) -> Result<Vec<u8>, StorageError> {
        let mut bytes = Vec::new();
        loop {
            let c = self.take(1)?[0];
            if c == 0 {
                match self.take(1)?[0] {
                    0 => break,
                    0xFF => bytes.push(0),
                    _ => return Err(StorageError::Corrupt("bad string escape".into())),
                }
            } else {
                bytes.push(c);
            }
        }
        Ok(bytes)
    }

    /// Decodes one value of type `dt`.
    pub fn value(&mut self, dt: &DataType) -> Result<ScalarValue, StorageError> {
        let flag = self.take(1)?[0];
        if flag == 0 {
            return ScalarValue::try_from(dt)
                .map_err(|e| StorageError::Corrupt(format!("null of {dt}: {e}")));
        }
        Ok(match dt {
            DataType::Boolean => ScalarValue::Boolean(Some(self.take(1)?[0] != 0)),
            DataType::Int16 => {
                ScalarValue::Int16(Some((u16::from_be_bytes(self.arr()?) ^ 0x8000) as i16))
            }
            DataType::Int32 => ScalarValue::Int32(Some(self.i32()?)),
            DataType::Int64 => ScalarValue::Int64(Some(self.i64()?)),
            DataType::Float32 => {
                let bits = u32::from_be_bytes(self.arr()?);
                let bits = if bits >> 31 == 1 {
                    bits ^ (1 << 31)
                } else {
                    !bits
                };
                ScalarValue::Float32(Some(f32::from_bits(bits)))
            }
            DataType::Float64 => {
                let bits = u64::from_be_bytes(self.arr()?);
                let bits = if bits >> 63 == 1 {
                    bits ^ (1 << 63)
                } else {
                    !bits
                };
                ScalarValue::Float64(Some(f64::from_bits(bits)))
            }
            DataType::Decimal128(p, s) => ScalarValue::Decimal128(
                Some((u128::from_be_bytes(self.arr()?) ^ (1u128 << 127)) as i128),
                *p,
                *s,
            ),
            DataType::Binary => ScalarValue::Binary(Some(self.bytes()?)),
            DataType::List(f) => {
                let mut values = Vec::new();
                loop {
                    match self.take(1)?[0] {
                        0 => break,
                        1 => values.push(self.value(f.data_type())?),
                        2 => values.push(ScalarValue::try_from(f.data_type()).map_err(|e| {
                            StorageError::Corrupt(format!("null of {}: {e}", f.data_type()))
                        })?),
                        _ => return Err(StorageError::Corrupt("bad array element".into())),
                    }
                }
                ScalarValue::List(ScalarValue::new_list(
                    &values,
                    f.data_type(),
                    f.is_nullable(),
                ))
            }
            DataType::Struct(fs) => {
                let mut values = Vec::with_capacity(fs.len());
                for f in fs.iter() {
                    values.push(if self.remaining().first() == Some(&2) {
                        self.pos += 1;
                        ScalarValue::try_from(f.data_type()).map_err(|e| {
                            StorageError::Corrupt(format!("null of {}: {e}", f.data_type()))
                        })?
                    } else {
                        self.value(f.data_type())?
                    });
                }
                struct_value(fs, values).map_err(StorageError::Corrupt)?
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let bytes = self.bytes()?;
                let s = String::from_utf8(bytes)
                    .map_err(|_| StorageError::Corrupt("invalid utf-8 in stored string".into()))?;
                match dt {
                    DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(s)),
                    DataType::Utf8View => ScalarValue::Utf8View(Some(s)),
                    _ => ScalarValue::Utf8(Some(s)),
                }
            }
            DataType::Date32 => ScalarValue::Date32(Some(self.i32()?)),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                ScalarValue::TimestampMicrosecond(Some(self.i64()?), tz.clone())
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let months = self.i32()?;
                let days = self.i32()?;
                let nanoseconds = self.i64()?;
                ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
                    months,
                    days,
                    nanoseconds,
                }))
            }
            other => {
                return Err(StorageError::Unsupported(format!(
                    "cannot decode values of type {other}"
                )))
            }
        })
    }

    /// Decodes a row of the given column types.
    pub fn row(&mut self, types: &[DataType]) -> Result<Vec<ScalarValue>, StorageError> {
        types.iter().map(|t| self.value(t)).collect()
    }
}

/// Decodes a whole row of the given column types.
pub fn decode_row(buf: &[u8], types: &[DataType]) -> Result<Vec<ScalarValue>, StorageError> {
    Decoder::new(buf).row(types)
}

/// Shorthand for a timestamp type with a UTC zone (`timestamptz`).
pub fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columnar encoder writes exactly what the row encoder writes, NULLs included,
    /// for the types it encodes itself and for those it falls back on.
    #[test]
    fn columns_encode_like_rows() {
        let tz = Some(Arc::<str>::from("+00:00"));
        let columns: Vec<Vec<ScalarValue>> = vec![
            vec![
                ScalarValue::Int64(Some(-5)),
                ScalarValue::Int64(None),
                ScalarValue::Int64(Some(i64::MAX)),
            ],
            vec![
                ScalarValue::Int32(Some(7)),
                ScalarValue::Int32(Some(i32::MIN)),
                ScalarValue::Int32(None),
            ],
            vec![
                ScalarValue::TimestampMicrosecond(Some(1_700_000_000_000_000), tz.clone()),
                ScalarValue::TimestampMicrosecond(None, tz.clone()),
                ScalarValue::TimestampMicrosecond(Some(-1), tz),
            ],
            vec![
                ScalarValue::Utf8(Some("a\0b".into())),
                ScalarValue::Utf8(None),
                ScalarValue::Utf8(Some(String::new())),
            ],
            vec![
                ScalarValue::Boolean(Some(true)),
                ScalarValue::Boolean(Some(false)),
                ScalarValue::Boolean(None),
            ],
            vec![
                ScalarValue::Float64(Some(-0.0)),
                ScalarValue::Float64(Some(2.5)),
                ScalarValue::Float64(None),
            ],
            vec![
                ScalarValue::Decimal128(Some(-12345), 10, 2),
                ScalarValue::Decimal128(None, 10, 2),
                ScalarValue::Decimal128(Some(1), 10, 2),
            ],
        ];
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|c| ScalarValue::iter_to_array(c.iter().cloned()).unwrap())
            .collect();
        let encoded = encode_rows(&arrays, 3).unwrap();
        assert_eq!(encoded.len(), 3);
        for (r, got) in encoded.iter().enumerate() {
            let row: Vec<ScalarValue> = columns.iter().map(|c| c[r].clone()).collect();
            assert_eq!(got, encode_row(&row).unwrap().as_slice(), "row {r}");
        }
    }

    fn roundtrip(v: ScalarValue) {
        let dt = v.data_type();
        let mut buf = Vec::new();
        encode_value(&v, &mut buf).unwrap();
        let back = Decoder::new(&buf).value(&dt).unwrap();
        assert_eq!(v, back);
    }

    #[test]
    fn values_roundtrip() {
        roundtrip(ScalarValue::Int64(Some(-5)));
        roundtrip(ScalarValue::Int64(None));
        roundtrip(ScalarValue::Int16(Some(i16::MIN)));
        roundtrip(ScalarValue::Float64(Some(-1.5)));
        roundtrip(ScalarValue::Utf8(Some("a\0b".into())));
        roundtrip(ScalarValue::Decimal128(Some(-12345), 10, 2));
        roundtrip(ScalarValue::TimestampMicrosecond(
            Some(42),
            Some("+00:00".into()),
        ));
        roundtrip(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano {
                months: 1,
                days: -2,
                nanoseconds: 3,
            },
        )));
        roundtrip(ScalarValue::Binary(Some(vec![0, 255, 0, 1])));
        roundtrip(int_list(&[Some(1), None, Some(-3)]));
        roundtrip(int_list(&[]));
        roundtrip(ScalarValue::List(ScalarValue::new_list(
            &[
                ScalarValue::Utf8(Some("a,b".into())),
                ScalarValue::Utf8(None),
            ],
            &DataType::Utf8,
            true,
        )));
        roundtrip(
            ScalarValue::try_from(DataType::List(Arc::new(list_field(&DataType::Int32)))).unwrap(),
        );
    }

    fn person(name: Option<&str>, age: Option<i32>) -> ScalarValue {
        use datafusion::arrow::array::{Int32Array, StringArray};
        use datafusion::arrow::datatypes::Field;
        let a = datafusion::arrow::array::StructArray::new(
            vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("age", DataType::Int32, true),
            ]
            .into(),
            vec![
                Arc::new(StringArray::from(vec![name])) as ArrayRef,
                Arc::new(Int32Array::from(vec![age])),
            ],
            None,
        );
        ScalarValue::Struct(Arc::new(a))
    }

    /// Structs round-trip (NULL fields and a NULL struct too), nest, and sort field by
    /// field.
    #[test]
    fn structs_roundtrip_and_sort() {
        roundtrip(person(Some("ann"), Some(30)));
        roundtrip(person(None, Some(1)));
        roundtrip(ScalarValue::try_from(person(None, None).data_type()).unwrap());
        // A NULL struct first; NULL fields after every value.
        let order = [
            ScalarValue::try_from(person(None, None).data_type()).unwrap(),
            person(Some("ann"), Some(2)),
            person(Some("ann"), Some(10)),
            person(Some("ann"), None),
            person(Some("bob"), Some(1)),
            person(None, Some(1)),
            person(None, None),
        ];
        for w in order.windows(2) {
            assert!(enc(w[0].clone()) < enc(w[1].clone()), "{w:?}");
        }
        let t = person(None, None).data_type();
        assert!(is_storable(&t));
        let DataType::Struct(fs) = &t else {
            unreachable!()
        };
        let view: Vec<_> = fs
            .iter()
            .map(|f| datafusion::arrow::datatypes::Field::new(f.name(), DataType::Utf8View, false))
            .collect();
        let view = DataType::Struct(view.into());
        assert!(!is_storable(&view));
        let DataType::Struct(stored) = storable_type(&view).unwrap() else {
            unreachable!()
        };
        assert!(stored
            .iter()
            .all(|f| f.is_nullable() && f.data_type() == &DataType::Utf8));
        roundtrip(ScalarValue::List(ScalarValue::new_list(
            &[person(Some("x"), None)],
            &t,
            true,
        )));
    }

    fn int_list(v: &[Option<i32>]) -> ScalarValue {
        let values: Vec<ScalarValue> = v.iter().map(|x| ScalarValue::Int32(*x)).collect();
        ScalarValue::List(ScalarValue::new_list(&values, &DataType::Int32, true))
    }

    /// Arrays sort element by element, a prefix first, NULL elements last, as Postgres
    /// orders them.
    #[test]
    fn arrays_keep_their_order_and_types() {
        let arrays: [&[Option<i32>]; 7] = [
            &[],
            &[Some(-1)],
            &[Some(1)],
            &[Some(1), Some(2)],
            &[Some(1), None],
            &[Some(2)],
            &[None],
        ];
        for w in arrays.windows(2) {
            assert!(enc(int_list(w[0])) < enc(int_list(w[1])), "{w:?}");
        }
        let list = DataType::List(Arc::new(list_field(&DataType::Int64)));
        assert!(is_storable(&list));
        assert_eq!(
            int_list(&[Some(1)]).data_type(),
            DataType::List(Arc::new(list_field(&DataType::Int32)))
        );
        let big = DataType::LargeList(Arc::new(list_field(&DataType::Utf8View)));
        assert_eq!(
            storable_type(&big),
            Some(DataType::List(Arc::new(list_field(&DataType::Utf8))))
        );
        let nested = DataType::List(Arc::new(list_field(&list)));
        assert_eq!(storable_type(&nested), None);
    }

    fn enc(v: ScalarValue) -> Vec<u8> {
        let mut b = Vec::new();
        encode_value(&v, &mut b).unwrap();
        b
    }

    #[test]
    fn order_is_preserved() {
        let ints = [i64::MIN, -100, -1, 0, 1, 7, i64::MAX];
        for w in ints.windows(2) {
            assert!(enc(ScalarValue::Int64(Some(w[0]))) < enc(ScalarValue::Int64(Some(w[1]))));
        }
        let floats = [f64::NEG_INFINITY, -2.5, -0.1, 0.0, 0.1, 3.0, f64::INFINITY];
        for w in floats.windows(2) {
            assert!(enc(ScalarValue::Float64(Some(w[0]))) < enc(ScalarValue::Float64(Some(w[1]))));
        }
        assert_eq!(
            enc(ScalarValue::Float64(Some(-0.0))),
            enc(ScalarValue::Float64(Some(0.0)))
        );
        let strs = ["", "a", "a\0", "ab", "b"];
        for w in strs.windows(2) {
            assert!(
                enc(ScalarValue::Utf8(Some(w[0].into())))
                    < enc(ScalarValue::Utf8(Some(w[1].into())))
            );
        }
        assert!(enc(ScalarValue::Int64(None)) < enc(ScalarValue::Int64(Some(i64::MIN))));
    }
}
