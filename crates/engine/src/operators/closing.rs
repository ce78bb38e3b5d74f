//! Closing windows by watermark: shared by the operators whose state is keyed by a
//! window (or event-time) column stored first, so that what the watermark makes final
//! is one key range.
//!
//! A value `v` of such a column with lag `lag` (see `StreamNode::watermark_columns`) is
//! final once `v + lag <= watermark`.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;

use crate::chunk::timestamp_micros;
use crate::EngineError;

/// Whether window value `v` is final at watermark `wm`.
pub fn is_closed(v: &ScalarValue, lag: i64, wm: Option<i64>) -> bool {
    match wm {
        Some(wm) => timestamp_micros(v).is_some_and(|v| v.saturating_add(lag) <= wm),
        None => false,
    }
}

/// The smallest window value of type `wtype` still open at watermark `wm`: values below
/// it (v < wm - lag + 1) are closed. Rounded up where the type is coarser than µs.
pub fn open_bound(wtype: &DataType, lag: i64, wm: i64) -> Result<ScalarValue, EngineError> {
    let DataType::Timestamp(unit, tz) = wtype else {
        return Err(EngineError::Internal(format!(
            "window column of type {wtype}"
        )));
    };
    let us = wm.saturating_sub(lag).saturating_add(1);
    let tz = tz.clone();
    Ok(match unit {
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(us), tz),
        TimeUnit::Millisecond => {
            ScalarValue::TimestampMillisecond(Some(us.saturating_add(999).div_euclid(1000)), tz)
        }
        TimeUnit::Second => {
            ScalarValue::TimestampSecond(Some(us.saturating_add(999_999).div_euclid(1_000_000)), tz)
        }
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(us.saturating_mul(1000)), tz),
    })
}

/// The last watermark an operator stored under `meta` (its table `u16::MAX`).
pub fn stored_watermark(
    meta: &super::StateTable,
    state: &freshet_storage::Txn,
) -> Result<Option<i64>, EngineError> {
    match state.get(&meta.key(&[]))? {
        Some(v) => Ok(Some(super::decode_count(&v)?)),
        None => Ok(None),
    }
}

/// The key, in `table` (keyed by the window value first), of the first window still open
/// at watermark `wm`: the closed ones are the range below it.
pub fn open_key(
    table: &super::StateTable,
    wtype: &DataType,
    lag: i64,
    wm: i64,
) -> Result<Vec<u8>, EngineError> {
    let bound = open_bound(wtype, lag, wm)?;
    let mut key = table.key(&[]);
    freshet_storage::codec::encode_value(&bound, &mut key)?;
    Ok(key)
}
