//! Changelog chunks: an Arrow batch plus one signed weight per row.
//!
//! A weight of `+1` inserts the row, `-1` deletes it; an update is a delete of the old row
//! and an insert of the new one. Weights other than ±1 carry multiplicities (a backfill of
//! a view row that occurs three times has weight 3).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use freshet_storage::codec;

use crate::EngineError;

/// One row as scalar values.
pub type Row = Vec<ScalarValue>;

#[derive(Clone, Debug)]
pub struct Chunk {
    pub batch: RecordBatch,
    pub weights: Vec<i64>,
}

impl Chunk {
    /// A chunk of `batch`'s rows; negative zeros become zeros (see [`canonical_floats`]).
    pub fn new(batch: RecordBatch, weights: Vec<i64>) -> Chunk {
        debug_assert_eq!(batch.num_rows(), weights.len());
        Chunk {
            batch: canonical_floats(batch),
            weights,
        }
    }

    pub fn empty(schema: SchemaRef) -> Chunk {
        Chunk {
            batch: RecordBatch::new_empty(schema),
            weights: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    pub fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }

    /// Builds a chunk from rows; `schema` gives the column types.
    pub fn from_rows(
        schema: SchemaRef,
        rows: &[Row],
        weights: Vec<i64>,
    ) -> Result<Chunk, EngineError> {
        let batch = canonical_floats(rows_to_batch(schema, rows)?);
        Ok(Chunk { batch, weights })
    }

    /// The chunk in `parts` contiguous parts of about equal size (fewer if it has fewer
    /// rows; none if it is empty).
    pub fn split(&self, parts: usize) -> Vec<Chunk> {
        let n = self.len();
        let per = n.div_ceil(parts.max(1)).max(1);
        (0..n)
            .step_by(per)
            .map(|at| {
                let len = per.min(n - at);
                Chunk {
                    batch: self.batch.slice(at, len),
                    weights: self.weights[at..at + len].to_vec(),
                }
            })
            .collect()
    }

    /// The rows of the chunk as scalar values.
    pub fn rows(&self) -> Result<Vec<Row>, EngineError> {
        batch_rows(&self.batch)
    }

    /// Keeps the rows where `mask` is true (NULL counts as false).
    pub fn filter(&self, mask: &BooleanArray) -> Result<Chunk, EngineError> {
        let mask = if mask.null_count() > 0 {
            BooleanArray::from_iter(mask.iter().map(|v| Some(v == Some(true))))
        } else {
            mask.clone()
        };
        let batch = filter_record_batch(&self.batch, &mask)?;
        let weights = self
            .weights
            .iter()
            .zip(mask.iter())
            .filter(|(_, m)| *m == Some(true))
            .map(|(w, _)| *w)
            .collect();
        Ok(Chunk { batch, weights })
    }
}

/// `batch` with every `-0.0` in its float columns replaced by `0.0`.
///
/// Stored keys cannot tell the two apart (the codec encodes both as `0.0`, as SQL's
/// equality cannot), so a row read back from storage has `0.0` where the row that was
/// written had `-0.0`. An expression over the two can differ (`concat(-0.0)` is `-0`,
/// `concat(0.0)` is `0`): a view that inserted a row computed from one and later deletes
/// it computed from the other would delete a row it does not hold. Every chunk therefore
/// carries floats as storage gives them back.
pub fn canonical_floats(batch: RecordBatch) -> RecordBatch {
    use datafusion::arrow::array::{Float32Array, Float64Array};
    let negative_zero = |c: &ArrayRef| match c.data_type() {
        DataType::Float64 => c
            .as_any()
            .downcast_ref::<Float64Array>()
            .is_some_and(|a| a.values().iter().any(|x| *x == 0.0 && x.is_sign_negative())),
        DataType::Float32 => c
            .as_any()
            .downcast_ref::<Float32Array>()
            .is_some_and(|a| a.values().iter().any(|x| *x == 0.0 && x.is_sign_negative())),
        _ => false,
    };
    if !batch.columns().iter().any(negative_zero) {
        return batch;
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| -> ArrayRef {
            if !negative_zero(c) {
                return c.clone();
            }
            // x + 0.0 is x for every x but -0.0, which becomes 0.0 (NaN stays NaN).
            if let Some(a) = c.as_any().downcast_ref::<Float64Array>() {
                Arc::new(a.unary::<_, datafusion::arrow::datatypes::Float64Type>(|x| x + 0.0))
            } else if let Some(a) = c.as_any().downcast_ref::<Float32Array>() {
                Arc::new(a.unary::<_, datafusion::arrow::datatypes::Float32Type>(|x| x + 0.0))
            } else {
                c.clone()
            }
        })
        .collect();
    let opts = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(batch.schema(), columns, &opts).unwrap_or(batch)
}

/// The rows of a batch as scalar values.
pub fn batch_rows(batch: &RecordBatch) -> Result<Vec<Row>, EngineError> {
    let cols = batch.columns();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut row = Vec::with_capacity(cols.len());
        for c in cols {
            row.push(ScalarValue::try_from_array(c, i)?);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Builds a batch of `schema` from rows of scalar values.
pub fn rows_to_batch(schema: SchemaRef, rows: &[Row]) -> Result<RecordBatch, EngineError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let array = if rows.is_empty() {
            datafusion::arrow::array::new_empty_array(f.data_type())
        } else {
            // An untyped NULL takes the column's type (iter_to_array types a column by
            // its first value).
            let null = ScalarValue::try_from(f.data_type()).ok();
            let values = rows.iter().map(|r| match (&r[i], &null) {
                (ScalarValue::Null, Some(typed)) => typed.clone(),
                (v, _) => v.clone(),
            });
            let arr = ScalarValue::iter_to_array(values)?;
            if arr.data_type() != f.data_type() {
                crate::numeric_special::cast(&arr, f.data_type(), &Default::default())?
            } else {
                arr
            }
        };
        columns.push(array);
    }
    let opts = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(schema, columns, &opts)?)
}

/// A schema's column types.
pub fn column_types(schema: &SchemaRef) -> Vec<DataType> {
    schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

/// How an operator stores rows of some column types in its state: each value cast to the
/// type it can be stored as (see [`codec::storable_type`]; intermediate results may hold
/// types a stored row cannot, such as a nanosecond timestamp), then encoded; decoding
/// casts back.
#[derive(Clone, Debug)]
pub struct RowFormat {
    types: Vec<DataType>,
    stored: Vec<DataType>,
}

impl RowFormat {
    pub fn new(types: Vec<DataType>) -> RowFormat {
        let stored = types
            .iter()
            .map(|t| codec::storable_type(t).unwrap_or_else(|| t.clone()))
            .collect();
        RowFormat { types, stored }
    }

    /// The format of a schema's rows.
    pub fn of(schema: &SchemaRef) -> RowFormat {
        RowFormat::new(column_types(schema))
    }

    /// The format of rows of these columns (key expressions evaluated over a chunk).
    pub fn of_arrays(cols: &[ArrayRef]) -> RowFormat {
        RowFormat::new(cols.iter().map(|c| c.data_type().clone()).collect())
    }

    /// The column types rows have (and are decoded to).
    pub fn types(&self) -> &[DataType] {
        &self.types
    }

    pub fn encode(&self, row: &[ScalarValue]) -> Result<Vec<u8>, EngineError> {
        Ok(codec::encode_row(&cast_row(row, &self.stored)?)?)
    }

    /// Every row of `cols` (columns of this format), encoded as [`RowFormat::encode`]
    /// encodes it, column by column into one buffer.
    pub fn encode_columns(
        &self,
        cols: &[ArrayRef],
        rows: usize,
    ) -> Result<codec::EncodedRows, EngineError> {
        use datafusion::arrow::compute::CastOptions;
        // The same casts as `cast_row` (ScalarValue::cast_to fails instead of nulling).
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let cols = cols
            .iter()
            .zip(&self.stored)
            .map(|(c, t)| {
                if c.data_type() == t {
                    Ok(c.clone())
                } else {
                    Ok(crate::numeric_special::cast(c, t, &options)?)
                }
            })
            .collect::<Result<Vec<ArrayRef>, EngineError>>()?;
        Ok(codec::encode_rows(&cols, rows)?)
    }

    /// The length of the encoded row at the start of `bytes` (other bytes may follow).
    pub fn encoded_len(&self, bytes: &[u8]) -> Result<usize, EngineError> {
        let mut d = codec::Decoder::new(bytes);
        d.row(&self.stored)?;
        Ok(bytes.len() - d.remaining().len())
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<Row, EngineError> {
        cast_row(&codec::decode_row(bytes, &self.stored)?, &self.types)
    }
}

/// `row` cast to `types` where its values' types differ.
fn cast_row(row: &[ScalarValue], types: &[DataType]) -> Result<Row, EngineError> {
    row.iter()
        .zip(types)
        .map(|(v, t)| {
            if &v.data_type() == t {
                Ok(v.clone())
            } else {
                Ok(crate::numeric_special::cast_scalar(v, t)?)
            }
        })
        .collect()
}

/// Shorthand used by tests and operators.
/// A timestamp value in microseconds (`None` for NULL or a non-timestamp).
pub fn timestamp_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampMicrosecond(v, _) => *v,
        ScalarValue::TimestampMillisecond(v, _) => v.map(|v| v.saturating_mul(1000)),
        ScalarValue::TimestampSecond(v, _) => v.map(|v| v.saturating_mul(1_000_000)),
        ScalarValue::TimestampNanosecond(v, _) => v.map(|v| v.div_euclid(1000)),
        _ => None,
    }
}

pub fn arc_schema(fields: Vec<datafusion::arrow::datatypes::Field>) -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}
