//! Postgres' `numeric` NaN, Infinity and -Infinity in Arrow's 128-bit decimal.
//!
//! A `numeric` here is a `Decimal128`, whose values (precision at most 38) are below
//! 10^38 in magnitude, while an `i128` reaches 1.7·10^38. Three values beyond 10^38 stand
//! for the special values: [`NAN`] (`i128::MAX`), [`INFINITY`] (one less) and
//! [`NEG_INFINITY`] (its negation). As integers they are in Postgres' order (-Infinity,
//! the numbers, Infinity, NaN; NaN equal to itself), so comparisons, sorting, grouping,
//! joins, `min`/`max` and index keys take them as they are. What computes with a
//! numeric's value must look for them first: the casts here ([`cast`]), the planner's
//! arithmetic and functions (`freshet_planner::numeric_special`), sums, and the text and
//! binary forms on the wire. As in Postgres, only an unconstrained `numeric` (precision
//! 38 here) holds the infinities; a `numeric(p, s)` holds NaN.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float32Array, Float64Array, StringArray,
};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float32Type, Float64Type};
use datafusion::error::{DataFusionError, Result};

/// NaN.
pub const NAN: i128 = i128::MAX;
/// Infinity.
pub const INFINITY: i128 = i128::MAX - 1;
/// -Infinity (so Arrow's negation and `abs` of the infinities are right).
pub const NEG_INFINITY: i128 = -INFINITY;

/// A numeric that is not a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    NaN,
    Infinity,
    NegInfinity,
}

impl Special {
    /// The special value `v` stands for, if any.
    pub fn of(v: i128) -> Option<Special> {
        match v {
            NAN => Some(Special::NaN),
            INFINITY => Some(Special::Infinity),
            NEG_INFINITY => Some(Special::NegInfinity),
            _ => None,
        }
    }

    /// Its unscaled decimal value (the same at every scale).
    pub fn value(self) -> i128 {
        match self {
            Special::NaN => NAN,
            Special::Infinity => INFINITY,
            Special::NegInfinity => NEG_INFINITY,
        }
    }

    /// Postgres' text of it.
    pub fn text(self) -> &'static str {
        match self {
            Special::NaN => "NaN",
            Special::Infinity => "Infinity",
            Special::NegInfinity => "-Infinity",
        }
    }

    /// The special value text `s` names, as Postgres reads it (case and surrounding
    /// blanks ignored; `inf` for `infinity`).
    pub fn parse(s: &str) -> Option<Special> {
        let s = s.trim();
        let (negative, word) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if word.eq_ignore_ascii_case("infinity") || word.eq_ignore_ascii_case("inf") {
            return Some(match negative {
                true => Special::NegInfinity,
                false => Special::Infinity,
            });
        }
        (s.eq_ignore_ascii_case("nan")).then_some(Special::NaN)
    }

    /// The special value a float is, if it is not finite.
    pub fn of_f64(v: f64) -> Option<Special> {
        match v {
            _ if v.is_nan() => Some(Special::NaN),
            f64::INFINITY => Some(Special::Infinity),
            f64::NEG_INFINITY => Some(Special::NegInfinity),
            _ => None,
        }
    }

    /// It as a float.
    pub fn to_f64(self) -> f64 {
        match self {
            Special::NaN => f64::NAN,
            Special::Infinity => f64::INFINITY,
            Special::NegInfinity => f64::NEG_INFINITY,
        }
    }

    /// `-self`.
    pub fn negated(self) -> Special {
        match self {
            Special::NaN => Special::NaN,
            Special::Infinity => Special::NegInfinity,
            Special::NegInfinity => Special::Infinity,
        }
    }
}

/// What a sum with `counts` special inputs (NaN, Infinity, -Infinity) is, if they
/// decide it, as in Postgres: NaN with any NaN or both infinities, else the infinity
/// there is.
pub fn sum_of(counts: [i64; 3]) -> Option<Special> {
    match (counts[0] > 0, counts[1] > 0, counts[2] > 0) {
        (true, _, _) | (_, true, true) => Some(Special::NaN),
        (_, true, _) => Some(Special::Infinity),
        (_, _, true) => Some(Special::NegInfinity),
        _ => None,
    }
}

/// An error with its SQLSTATE (and Postgres' detail and hint), raised by a function.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SqlStateError {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl SqlStateError {
    /// A DataFusion error carrying Postgres' `code`, `message` and `detail`.
    pub fn raise(
        code: &'static str,
        message: impl Into<String>,
        detail: Option<String>,
    ) -> DataFusionError {
        DataFusionError::External(Box::new(SqlStateError {
            code,
            message: message.into(),
            detail,
            hint: None,
        }))
    }
}

/// Whether a `numeric(precision, _)` holds the infinities: only an unconstrained one.
pub fn holds_infinity(precision: u8) -> bool {
    precision >= 38
}

/// Postgres' error for an infinity in a `numeric(precision, scale)`.
pub fn infinite_overflow(precision: u8, scale: i8) -> DataFusionError {
    SqlStateError::raise(
        "22003",
        "numeric field overflow",
        Some(format!(
            "A field with precision {precision}, scale {scale} cannot hold an infinite value."
        )),
    )
}

/// Whether a decimal array may hold a special value (a NULL's slot may count).
pub fn has_specials(array: &dyn Array) -> bool {
    array
        .as_primitive_opt::<Decimal128Type>()
        .is_some_and(|d| d.values().iter().any(|v| Special::of(*v).is_some()))
}

/// The special values of `array` by row (`None` for numbers and NULLs), and the array
/// with them replaced by 0; `None` if it has none.
pub fn split(array: &Decimal128Array) -> Option<(Vec<Option<Special>>, Decimal128Array)> {
    if !has_specials(array) {
        return None;
    }
    let specials: Vec<Option<Special>> = (0..array.len())
        .map(|i| match array.is_valid(i) {
            true => Special::of(array.value(i)),
            false => None,
        })
        .collect();
    if specials.iter().all(Option::is_none) {
        return None;
    }
    let values: Vec<i128> = array
        .values()
        .iter()
        .map(|v| if Special::of(*v).is_some() { 0 } else { *v })
        .collect();
    let clean = Decimal128Array::new(values.into(), array.nulls().cloned())
        .with_data_type(array.data_type().clone());
    Some((specials, clean))
}

/// `out` (a cast of numbers that stood in for specials) with `specials` put back, as
/// type `to` holds them: a `numeric` keeps them (of any precision), a
/// float is NaN or infinite, text is Postgres' text; other types fail as Postgres does.
pub fn put_back(out: ArrayRef, specials: &[Option<Special>], to: &DataType) -> Result<ArrayRef> {
    let at = |i: usize| specials.get(i).copied().flatten();
    Ok(match to {
        // Any precision keeps them: a type an expression derives (`ceil(x)` is
        // `numeric(29, 0)` here, unconstrained in Postgres) holds the infinities; a
        // `numeric(p, s)` column refuses them when written (`crate::write_check`).
        DataType::Decimal128(..) => {
            let d = out.as_primitive::<Decimal128Type>();
            let values: Vec<i128> = (0..d.len())
                .map(|i| at(i).map_or(d.values()[i], Special::value))
                .collect();
            Arc::new(
                Decimal128Array::new(values.into(), d.nulls().cloned()).with_data_type(to.clone()),
            )
        }
        DataType::Float64 => {
            let f = out.as_primitive::<Float64Type>();
            let values: Vec<f64> = (0..f.len())
                .map(|i| at(i).map_or(f.values()[i], Special::to_f64))
                .collect();
            Arc::new(Float64Array::new(values.into(), f.nulls().cloned()))
        }
        DataType::Float32 => {
            let f = out.as_primitive::<Float32Type>();
            let values: Vec<f32> = (0..f.len())
                .map(|i| at(i).map_or(f.values()[i], |s| s.to_f64() as f32))
                .collect();
            Arc::new(Float32Array::new(values.into(), f.nulls().cloned()))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast_with_options(&out, &DataType::Utf8, &CastOptions::default())?;
            let text = text.as_string::<i32>();
            let strings: StringArray = (0..text.len())
                .map(|i| match at(i) {
                    Some(s) => Some(s.text()),
                    None => text.is_valid(i).then(|| text.value(i)),
                })
                .collect();
            let strings: ArrayRef = Arc::new(strings);
            match to {
                DataType::Utf8 => strings,
                _ => cast_with_options(&strings, to, &CastOptions::default())?,
            }
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            let Some(s) = specials.iter().flatten().next() else {
                return Ok(out);
            };
            return Err(to_integer_error(*s, to));
        }
        _ => {
            let Some(s) = specials.iter().flatten().next() else {
                return Ok(out);
            };
            return Err(SqlStateError::raise(
                "0A000",
                format!("cannot cast numeric {} to {to}", s.text()),
                None,
            ));
        }
    })
}

/// [`put_back`], but where it fails and the cast is `safe` (`TRY_CAST`), NULL in the
/// rows of special values.
fn put_back_or_null(
    out: ArrayRef,
    specials: &[Option<Special>],
    to: &DataType,
    safe: bool,
) -> Result<ArrayRef> {
    match put_back(out.clone(), specials, to) {
        Err(_) if safe => {
            let mask: datafusion::arrow::array::BooleanArray =
                specials.iter().map(|s| Some(s.is_some())).collect();
            Ok(datafusion::arrow::compute::nullif(&out, &mask)?)
        }
        other => other,
    }
}

/// Postgres' error for a special value cast to an integer type.
pub fn to_integer_error(s: Special, to: &DataType) -> DataFusionError {
    let name = match to {
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => "smallint",
        DataType::Int64 | DataType::UInt64 => "bigint",
        _ => "integer",
    };
    let what = match s {
        Special::NaN => "NaN",
        _ => "infinity",
    };
    SqlStateError::raise("0A000", format!("cannot convert {what} to {name}"), None)
}

/// `array` cast to `to` as Arrow casts it, but for the special values: a `numeric`'s
/// are cast as [`put_back`] says, and text naming one (`'NaN'`, `'-Infinity'`) or a
/// float that is one becomes it in a `numeric`.
pub fn cast(array: &ArrayRef, to: &DataType, options: &CastOptions) -> Result<ArrayRef> {
    match (array.data_type(), to) {
        (DataType::Decimal128(..), _) => {
            match array.as_primitive_opt::<Decimal128Type>().and_then(split) {
                None => Ok(cast_with_options(array, to, options)?),
                Some((specials, clean)) => {
                    let clean: ArrayRef = Arc::new(clean);
                    put_back_or_null(
                        cast_with_options(&clean, to, options)?,
                        &specials,
                        to,
                        options.safe,
                    )
                }
            }
        }
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, DataType::Decimal128(..)) => {
            let text = cast_with_options(array, &DataType::Utf8, options)?;
            let text = text.as_string::<i32>();
            let specials = text.iter().map(|s| s.and_then(Special::parse)).collect();
            cast_around(array, specials, to, options, |specials| {
                let clean: StringArray = text
                    .iter()
                    .zip(specials)
                    .map(|(s, x)| if x.is_some() { Some("0") } else { s })
                    .collect();
                Arc::new(clean)
            })
        }
        (DataType::Float32 | DataType::Float64, DataType::Decimal128(..)) => {
            let floats = cast_with_options(array, &DataType::Float64, options)?;
            let floats = floats.as_primitive::<Float64Type>();
            let specials = floats.iter().map(|v| v.and_then(Special::of_f64)).collect();
            cast_around(array, specials, to, options, |_| {
                let clean: Float64Array = floats
                    .iter()
                    .map(|v| v.map(|f| if f.is_finite() { f } else { 0.0 }))
                    .collect();
                Arc::new(clean)
            })
        }
        _ => Ok(cast_with_options(array, to, options)?),
    }
}

/// `array` cast to `to`, its rows `specials` names by way of the numbers `clean` puts
/// in their place, then put back (see [`cast`]).
fn cast_around(
    array: &ArrayRef,
    specials: Vec<Option<Special>>,
    to: &DataType,
    options: &CastOptions,
    clean: impl FnOnce(&[Option<Special>]) -> ArrayRef,
) -> Result<ArrayRef> {
    if specials.iter().all(Option::is_none) {
        return Ok(cast_with_options(array, to, options)?);
    }
    let out = cast_with_options(&clean(&specials), to, options)?;
    put_back_or_null(out, &specials, to, options.safe)
}

/// `v` cast to `to` as [`cast`] casts it.
pub fn cast_scalar(
    v: &datafusion::common::ScalarValue,
    to: &DataType,
) -> Result<datafusion::common::ScalarValue> {
    use datafusion::common::ScalarValue;
    match v {
        ScalarValue::Decimal128(Some(x), ..) if Special::of(*x).is_some() => {
            let out = cast(
                &v.to_array()?,
                to,
                &datafusion::common::format::DEFAULT_CAST_OPTIONS,
            )?;
            ScalarValue::try_from_array(&out, 0)
        }
        ScalarValue::Utf8(Some(t))
        | ScalarValue::LargeUtf8(Some(t))
        | ScalarValue::Utf8View(Some(t))
            if matches!(to, DataType::Decimal128(..)) && Special::parse(t).is_some() =>
        {
            let out = cast(
                &v.to_array()?,
                to,
                &datafusion::common::format::DEFAULT_CAST_OPTIONS,
            )?;
            ScalarValue::try_from_array(&out, 0)
        }
        _ => v.cast_to(to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimals(values: &[Option<i128>], p: u8, s: i8) -> ArrayRef {
        Arc::new(
            values
                .iter()
                .copied()
                .collect::<Decimal128Array>()
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    }

    #[test]
    fn parses_as_postgres() {
        assert_eq!(Special::parse(" NaN "), Some(Special::NaN));
        assert_eq!(Special::parse("inf"), Some(Special::Infinity));
        assert_eq!(Special::parse("+Infinity"), Some(Special::Infinity));
        assert_eq!(Special::parse("-INF"), Some(Special::NegInfinity));
        assert_eq!(Special::parse("-nan"), None);
        assert_eq!(Special::parse("infinite"), None);
        assert_eq!(Special::parse("1.5"), None);
    }

    #[test]
    fn order_is_postgres_order() {
        let big = 10i128.pow(38) - 1;
        assert!(NEG_INFINITY < -big && big < INFINITY && INFINITY < NAN);
        assert_eq!(INFINITY.checked_neg(), Some(NEG_INFINITY));
    }

    #[test]
    fn casts_keep_specials() {
        let a = decimals(&[Some(15), Some(NAN), None, Some(NEG_INFINITY)], 38, 1);
        let opts = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        // TRY_CAST: NULL where the cast fails.
        let tried = cast(&a, &DataType::Int32, &CastOptions::default()).unwrap();
        assert_eq!(tried.null_count(), 3);
        let to = cast(&a, &DataType::Decimal128(38, 3), &opts).unwrap();
        let to = to.as_primitive::<Decimal128Type>();
        assert_eq!(to.value(0), 1500);
        assert_eq!(to.value(1), NAN);
        assert!(to.is_null(2));
        assert_eq!(to.value(3), NEG_INFINITY);
        let text = cast(&a, &DataType::Utf8, &opts).unwrap();
        let text = text.as_string::<i32>();
        assert_eq!(text.value(0), "1.5");
        assert_eq!(text.value(1), "NaN");
        assert_eq!(text.value(3), "-Infinity");
        let f = cast(&a, &DataType::Float64, &opts).unwrap();
        assert!(f.as_primitive::<Float64Type>().value(1).is_nan());
        assert!(cast(&a, &DataType::Int32, &opts).is_err());
        // A derived type of any precision keeps them (columns check when written).
        let narrow = cast(&a, &DataType::Decimal128(10, 2), &opts).unwrap();
        assert_eq!(
            narrow.as_primitive::<Decimal128Type>().value(3),
            NEG_INFINITY
        );
    }

    #[test]
    fn reads_specials_from_text_and_floats() {
        let opts = CastOptions::default();
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("2.5"), Some(" -inf"), None]));
        let d = cast(&text, &DataType::Decimal128(38, 10), &opts).unwrap();
        let d = d.as_primitive::<Decimal128Type>();
        assert_eq!(d.value(0), 25_000_000_000);
        assert_eq!(d.value(1), NEG_INFINITY);
        assert!(d.is_null(2));
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN, 1.0]));
        let d = cast(&floats, &DataType::Decimal128(38, 2), &opts).unwrap();
        assert_eq!(d.as_primitive::<Decimal128Type>().value(0), NAN);
        assert_eq!(d.as_primitive::<Decimal128Type>().value(1), 100);
    }
}
