//! A group's accumulator row and the aggregates that need nothing else: folding a row
//! into it, and merging two of them.
//!
//! The accumulator ([`layout`]) is the group's row count, then per aggregate the running
//! values that inserts and deletes can both update: a count (`count(*)`, `count(x)`), the
//! non-NULL count and the sum (`sum`, `avg`), the non-NULL and true counts (`bool_and`,
//! `bool_or`), the non-NULL count and per bit the count of inputs with it set
//! (`bit_and`, `bit_or`, `bit_xor`), the running extreme (`min`/`max` over an input that
//! only inserts).
//!
//! Aggregates that keep only these ([`stateless`]) can be folded anywhere: a partial
//! accumulator of some of a group's rows, merged into the group's ([`merge`]), gives what
//! folding the rows themselves into it gives. That is what two-phase aggregation
//! (`crate::two_phase`) runs on. The others (DISTINCT, `min`/`max` over deletes, ordered
//! and sketch aggregates) keep values in state tables of the aggregate.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use freshet_storage::codec;

use crate::chunk::Row;
use crate::numeric_special::Special;
use crate::plan::{AggCall, AggKind};
use crate::EngineError;

/// The type sums are accumulated in.
pub(crate) fn sum_type(arg: &DataType) -> Result<DataType, EngineError> {
    Ok(match arg {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => DataType::Int64,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => DataType::Int64,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
        DataType::Decimal128(_, s) => DataType::Decimal128(38, *s),
        DataType::Interval(u) => DataType::Interval(*u),
        other => {
            return Err(EngineError::Internal(format!(
                "sum/avg over {other} is not supported"
            )))
        }
    })
}

/// The accumulator's layout for `aggs`: per aggregate its first slot, and every slot's
/// type (slot 0 is the group's row count).
pub(crate) fn layout(aggs: &[AggCall]) -> Result<(Vec<usize>, Vec<DataType>), EngineError> {
    let mut acc_types = vec![DataType::Int64];
    let mut offsets = Vec::with_capacity(aggs.len());
    for a in aggs {
        offsets.push(acc_types.len());
        match (a.kind, a.distinct) {
            (AggKind::CountStar | AggKind::Count, _) => acc_types.push(DataType::Int64),
            (AggKind::BoolAnd | AggKind::BoolOr, _) => {
                // non-NULL inputs, true inputs
                acc_types.push(DataType::Int64);
                acc_types.push(DataType::Int64);
            }
            (AggKind::BitAnd | AggKind::BitOr | AggKind::BitXor, _) => {
                // non-NULL inputs, then per bit (of 64) the inputs that have it set
                acc_types.extend(std::iter::repeat_n(DataType::Int64, 1 + BITS));
            }
            (AggKind::Sum | AggKind::Avg, false) => {
                let t = a.arg_type.as_ref().ok_or_else(|| {
                    EngineError::Internal("sum/avg without an argument type".into())
                })?;
                acc_types.push(DataType::Int64);
                acc_types.push(sum_type(t)?);
                if a.specials {
                    // NaN, Infinity and -Infinity inputs (`Specials`).
                    acc_types.extend([DataType::Int64, DataType::Int64, DataType::Int64]);
                }
            }
            (AggKind::Min | AggKind::Max, _) if a.running => {
                // The running extreme (NULL until a non-NULL value arrives).
                let t = a.arg_type.as_ref().and_then(codec::storable_type);
                acc_types.push(t.ok_or_else(|| {
                    EngineError::Internal("min/max without a storable argument type".into())
                })?);
            }
            _ => {}
        }
    }
    Ok((offsets, acc_types))
}

/// Whether aggregate `a` keeps nothing but its accumulator slots.
pub(crate) fn stateless(a: &AggCall) -> bool {
    match a.kind {
        AggKind::CountStar => true,
        AggKind::Count | AggKind::Sum | AggKind::Avg => !a.distinct,
        AggKind::BoolAnd | AggKind::BoolOr => !a.distinct,
        AggKind::BitAnd | AggKind::BitOr | AggKind::BitXor => !a.distinct,
        AggKind::Min | AggKind::Max => a.running && !a.distinct,
        _ => false,
    }
}

/// Whether partial accumulators of `aggs` merge into exactly what folding the rows gives:
/// every aggregate is [`stateless`], and none sums floating-point numbers (whose sum
/// depends on the order of the additions).
pub(crate) fn combinable(aggs: &[AggCall]) -> bool {
    aggs.iter().all(|a| {
        let float = matches!(a.kind, AggKind::Sum | AggKind::Avg)
            && a.arg_type.as_ref().is_some_and(|t| {
                matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
            });
        stateless(a) && !float
    })
}

/// Slot `slot` of an accumulator as a count.
pub(crate) fn count(acc: &Row, slot: usize) -> i64 {
    match acc[slot] {
        ScalarValue::Int64(Some(n)) => n,
        _ => 0,
    }
}

fn add_to_slot(acc: &mut Row, slot: usize, n: i64) -> Result<(), EngineError> {
    let sum = count(acc, slot)
        .checked_add(n)
        .ok_or_else(|| EngineError::OutOfRange("count overflows bigint".into()))?;
    acc[slot] = ScalarValue::Int64(Some(sum));
    Ok(())
}

/// Folds one row's argument `arg` (absent for `count(*)`), with weight `w`, into the
/// slots of [`stateless`] aggregate `a`, which start at `off`.
pub(crate) fn fold(
    a: &AggCall,
    off: usize,
    acc_types: &[DataType],
    acc: &mut Row,
    arg: Option<&ScalarValue>,
    w: i64,
) -> Result<(), EngineError> {
    if a.kind == AggKind::CountStar {
        return add_to_slot(acc, off, w);
    }
    let v = match arg {
        Some(v) if !v.is_null() => v,
        _ => return Ok(()), // aggregates ignore NULL inputs
    };
    match a.kind {
        AggKind::Min | AggKind::Max => {
            if w < 0 {
                return Err(EngineError::Internal(
                    "a running min/max over an input that deletes".into(),
                ));
            }
            let t = &acc_types[off];
            let v = if &v.data_type() == t {
                v.clone()
            } else {
                crate::numeric_special::cast_scalar(v, t)?
            };
            keep_extreme(a.kind, &mut acc[off], v);
        }
        AggKind::BoolAnd | AggKind::BoolOr => {
            add_to_slot(acc, off, w)?;
            if v == &ScalarValue::Boolean(Some(true)) {
                add_to_slot(acc, off + 1, w)?;
            }
        }
        AggKind::BitAnd | AggKind::BitOr | AggKind::BitXor => {
            add_to_slot(acc, off, w)?;
            let bits = as_bits(v)?;
            for b in 0..BITS {
                if bits >> b & 1 == 1 {
                    add_to_slot(acc, off + 1 + b, w)?;
                }
            }
        }
        AggKind::Count => add_to_slot(acc, off, w)?,
        AggKind::Sum | AggKind::Avg => {
            add_to_slot(acc, off, w)?;
            if let (true, ScalarValue::Decimal128(Some(x), ..)) = (a.specials, v) {
                if let Some(s) = Special::of(*x) {
                    return add_to_slot(acc, off + 2 + special_slot(s), w);
                }
            }
            let t = acc[off + 1].data_type();
            acc[off + 1] = add_weighted(
                &acc[off + 1],
                &crate::numeric_special::cast_scalar(v, &t)?,
                w,
            )?;
        }
        other => {
            return Err(EngineError::Internal(format!(
                "{other:?} is not folded in its accumulator"
            )))
        }
    }
    Ok(())
}

/// Merges the slots of [`stateless`] aggregate `a` (from `off`) of the partial
/// accumulator `part` into `acc`.
pub(crate) fn merge(a: &AggCall, off: usize, acc: &mut Row, part: &Row) -> Result<(), EngineError> {
    match a.kind {
        AggKind::CountStar | AggKind::Count => add_to_slot(acc, off, count(part, off)),
        AggKind::BoolAnd | AggKind::BoolOr => {
            add_to_slot(acc, off, count(part, off))?;
            add_to_slot(acc, off + 1, count(part, off + 1))
        }
        AggKind::BitAnd | AggKind::BitOr | AggKind::BitXor => {
            for slot in off..=off + BITS {
                add_to_slot(acc, slot, count(part, slot))?;
            }
            Ok(())
        }
        AggKind::Sum | AggKind::Avg => {
            add_to_slot(acc, off, count(part, off))?;
            if !part[off + 1].is_null() {
                acc[off + 1] = add_weighted(&acc[off + 1], &part[off + 1], 1)?;
            }
            if a.specials {
                for slot in off + 2..off + 5 {
                    add_to_slot(acc, slot, count(part, slot))?;
                }
            }
            Ok(())
        }
        AggKind::Min | AggKind::Max => {
            if !part[off].is_null() {
                keep_extreme(a.kind, &mut acc[off], part[off].clone());
            }
            Ok(())
        }
        other => Err(EngineError::Internal(format!(
            "{other:?} has no partial accumulator"
        ))),
    }
}

/// The bits a bit aggregate counts: an integer's 64, sign-extended.
const BITS: usize = 64;

/// An integer input of a bit aggregate as 64 bits (sign-extended).
fn as_bits(v: &ScalarValue) -> Result<u64, EngineError> {
    Ok(match v {
        ScalarValue::Int8(Some(x)) => i64::from(*x) as u64,
        ScalarValue::Int16(Some(x)) => i64::from(*x) as u64,
        ScalarValue::Int32(Some(x)) => i64::from(*x) as u64,
        ScalarValue::Int64(Some(x)) => *x as u64,
        ScalarValue::UInt8(Some(x)) => u64::from(*x),
        ScalarValue::UInt16(Some(x)) => u64::from(*x),
        ScalarValue::UInt32(Some(x)) => u64::from(*x),
        ScalarValue::UInt64(Some(x)) => *x,
        other => {
            return Err(EngineError::Internal(format!(
                "a bit aggregate over {}",
                other.data_type()
            )))
        }
    })
}

/// A bit aggregate's result from its slots (from `off`), of type `t`: NULL over no
/// non-NULL inputs; else per bit, set by every input (`bit_and`), by some (`bit_or`), or
/// by an odd number (`bit_xor`).
pub(crate) fn bits_result(
    kind: AggKind,
    acc: &Row,
    off: usize,
    t: &DataType,
) -> Result<ScalarValue, EngineError> {
    let n = count(acc, off);
    if n == 0 {
        return Ok(ScalarValue::try_from(t)?);
    }
    let mut bits = 0u64;
    for b in 0..BITS {
        let set = count(acc, off + 1 + b);
        let on = match kind {
            AggKind::BitAnd => set == n,
            AggKind::BitOr => set > 0,
            _ => set % 2 != 0,
        };
        if on {
            bits |= 1 << b;
        }
    }
    Ok(ScalarValue::Int64(Some(bits as i64)).cast_to(t)?)
}

/// Sets `slot` to `v` if `v` is beyond it (or it is NULL) in `kind`'s direction.
fn keep_extreme(kind: AggKind, slot: &mut ScalarValue, v: ScalarValue) {
    let better = match v.partial_cmp(slot) {
        _ if slot.is_null() => true,
        Some(o) if kind == AggKind::Min => o.is_lt(),
        Some(o) => o.is_gt(),
        None => false,
    };
    if better {
        *slot = v;
    }
}

/// The slot (after the sum) that counts special value `s`.
fn special_slot(s: Special) -> usize {
    match s {
        Special::NaN => 0,
        Special::Infinity => 1,
        Special::NegInfinity => 2,
    }
}

/// The special value sum/avg `a`'s accumulator (slots from `off`) is, if any.
pub(crate) fn accumulated_special(a: &AggCall, off: usize, acc: &Row) -> Option<Special> {
    if !a.specials {
        return None;
    }
    crate::numeric_special::sum_of([
        count(acc, off + 2),
        count(acc, off + 3),
        count(acc, off + 4),
    ])
}

/// `acc + v * w` for a running sum (both of the sum's accumulation type), overflow-checked.
pub(crate) fn add_weighted(
    acc: &ScalarValue,
    v: &ScalarValue,
    w: i64,
) -> Result<ScalarValue, EngineError> {
    let overflow = || EngineError::OutOfRange("sum overflows its type".into());
    Ok(match (acc, v) {
        (ScalarValue::Int64(Some(a)), ScalarValue::Int64(Some(x))) => ScalarValue::Int64(Some(
            x.checked_mul(w)
                .and_then(|d| a.checked_add(d))
                .ok_or_else(overflow)?,
        )),
        (ScalarValue::Float64(Some(a)), ScalarValue::Float64(Some(x))) => {
            ScalarValue::Float64(Some(a + x * w as f64))
        }
        (ScalarValue::Decimal128(Some(a), p, s), ScalarValue::Decimal128(Some(x), _, _)) => {
            // A view planned before NaN and the infinities (dialect level 11) sums them:
            // fail the row, as its query would not add them as numbers.
            if let Some(special) = crate::numeric_special::Special::of(*x) {
                return Err(EngineError::DataFusion(
                    crate::numeric_special::SqlStateError::raise(
                        "0A000",
                        format!("sum() does not support numeric {}", special.text()),
                        None,
                    ),
                ));
            }
            // Past 38 digits is out of the type (and where special values are).
            let sum = x
                .checked_mul(w as i128)
                .and_then(|d| a.checked_add(d))
                .filter(|v| v.unsigned_abs() < 10u128.pow(38))
                .ok_or_else(overflow)?;
            ScalarValue::Decimal128(Some(sum), *p, *s)
        }
        (
            ScalarValue::IntervalMonthDayNano(Some(a)),
            ScalarValue::IntervalMonthDayNano(Some(x)),
        ) => {
            let w32 = i32::try_from(w).map_err(|_| overflow())?;
            ScalarValue::IntervalMonthDayNano(Some(
                datafusion::arrow::datatypes::IntervalMonthDayNano {
                    months: x
                        .months
                        .checked_mul(w32)
                        .and_then(|d| a.months.checked_add(d))
                        .ok_or_else(overflow)?,
                    days: x
                        .days
                        .checked_mul(w32)
                        .and_then(|d| a.days.checked_add(d))
                        .ok_or_else(overflow)?,
                    nanoseconds: x
                        .nanoseconds
                        .checked_mul(w)
                        .and_then(|d| a.nanoseconds.checked_add(d))
                        .ok_or_else(overflow)?,
                },
            ))
        }
        (a, x) => {
            return Err(EngineError::Internal(format!(
                "cannot add {} to a sum of {}",
                x.data_type(),
                a.data_type()
            )))
        }
    })
}
