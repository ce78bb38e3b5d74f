//! Postgres' text input for the types DataFusion reads differently: arrays (`'{1,2,NULL}'`,
//! which Arrow's cast would take as one element), `bytea` (`'\\x0102'` hex, or the
//! escape format) and `jsonb` (validated and normalized, `freshet_storage::jsonb`),
//! wherever a string becomes one: a literal cast (`'{a,b}'::text[]`, a value inserted into
//! an array column, by the analyzer rule [`PgTextInput`]), and the casts DML, COPY and
//! parameters make themselves ([`text_to`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

/// The elements of a one-dimensional array literal (`{1,2,NULL,"a b","q\"x"}`); `None`
/// for NULL.
pub fn parse_array_text(s: &str) -> Result<Vec<Option<String>>, String> {
    let bad = || format!("malformed array literal: \"{s}\"");
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(bad)?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => item.push(chars.next().ok_or_else(bad)?),
                    Some('"') => break,
                    None => return Err(bad()),
                    Some(c) => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '"' {
                    return Err(if c == '{' {
                        "multidimensional arrays are not supported as parameters".into()
                    } else {
                        bad()
                    });
                }
                chars.next();
                if c == '\\' {
                    item.push(chars.next().ok_or_else(bad)?);
                } else {
                    item.push(c);
                }
            }
            item = item.trim_end().to_string();
            if item.is_empty() {
                return Err(bad());
            }
        }
        out.push(if !quoted && item.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return Err(bad()),
        }
    }
    Ok(out)
}

/// An array of `elem` from its text (`{1,2,NULL}`).
pub fn array_from_text(s: &str, elem: &DataType) -> Result<ScalarValue, String> {
    let items = parse_array_text(s)?
        .into_iter()
        .map(|item| match item {
            None => ScalarValue::try_from(elem).map_err(|e| e.to_string()),
            Some(t)
                if matches!(
                    elem,
                    DataType::Binary | DataType::LargeUtf8 | DataType::Struct(_)
                ) =>
            {
                value_from_text(&t, elem).unwrap_or_else(|| Err(String::new()))
            }
            Some(t) => ScalarValue::Utf8(Some(t.clone()))
                .cast_to(elem)
                .map_err(|_| {
                    let name =
                        crate::pg_catalog::types::by_oid(crate::pg_catalog::types::oid_of(elem))
                            .map_or("text", |t| t.sql_name);
                    format!("invalid input syntax for type {name}: \"{t}\" (in array \"{s}\")")
                }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &items, elem,
    )))
}

/// The fields of a record's text (`(1,,"a b","q""x")`, Postgres' `record_in`): `None`
/// for an empty unquoted field (NULL); inside quotes `""` is a quote, and a backslash
/// takes the next character anywhere.
pub fn parse_record_text(s: &str) -> Result<Vec<Option<String>>, String> {
    let bad = || format!("malformed record literal: \"{s}\"");
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(bad)?;
    let mut out = Vec::new();
    let (mut item, mut present, mut quoted) = (String::new(), false, false);
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                item.push('"');
            }
            '"' => {
                quoted = !quoted;
                present = true;
            }
            '\\' => {
                item.push(chars.next().ok_or_else(bad)?);
                present = true;
            }
            ',' if !quoted => {
                out.push(present.then(|| std::mem::take(&mut item)));
                present = false;
            }
            c => {
                item.push(c);
                present = true;
            }
        }
    }
    if quoted {
        return Err(bad());
    }
    out.push(present.then_some(item));
    Ok(out)
}

/// A struct of type `Struct(fields)` from its record text, each field read from its text
/// as a value of the field's type would be.
pub fn struct_from_text(
    s: &str,
    fields: &datafusion::arrow::datatypes::Fields,
) -> Result<ScalarValue, String> {
    let items = parse_record_text(s)?;
    if items.len() != fields.len() {
        return Err(format!(
            "malformed record literal: \"{s}\" ({} fields for a struct of {})",
            items.len(),
            fields.len()
        ));
    }
    let values = items
        .into_iter()
        .zip(fields.iter())
        .map(|(item, f)| {
            let dt = f.data_type();
            match item {
                None => ScalarValue::try_from(dt).map_err(|e| e.to_string()),
                Some(t) => value_from_text(&t, dt).unwrap_or_else(|| {
                    ScalarValue::Utf8(Some(t.clone())).cast_to(dt).map_err(|_| {
                        let name = crate::pg_catalog::types::by_oid(
                            crate::pg_catalog::types::oid_of(dt),
                        )
                        .map_or("text", |t| t.sql_name);
                        format!(
                            "invalid input syntax for type {name}: \"{t}\" (field \"{}\" of \"{s}\")",
                            f.name()
                        )
                    })
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    freshet_storage::codec::struct_value(fields, values)
}

/// The bytes of a `bytea` text: `\x` then hex digit pairs (whitespace between pairs
/// allowed), or the escape format (`\\` a backslash, `\ooo` an octal byte, other
/// characters as they are).
pub fn bytea_from_text(s: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("invalid input syntax for type bytea: \"{s}\"");
    if let Some(hex) = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X")) {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(bad());
        }
        return digits
            .chunks(2)
            .map(|p| {
                let d = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
                Ok((d(p[0])? * 16 + d(p[1])?) as u8)
            })
            .collect();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).ok_or_else(bad)?;
            if !oct.iter().all(|c| (b'0'..=b'7').contains(c)) || oct[0] > b'3' {
                return Err(bad());
            }
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

/// The value of text `s` as type `to`, if `to` is one whose text Postgres reads
/// differently from Arrow (an array, `bytea`); `None` for other types.
pub fn value_from_text(s: &str, to: &DataType) -> Option<Result<ScalarValue, String>> {
    match to {
        DataType::List(f) => Some(array_from_text(s, f.data_type())),
        DataType::Struct(fs) => Some(struct_from_text(s, fs)),
        DataType::Binary => Some(bytea_from_text(s).map(|b| ScalarValue::Binary(Some(b)))),
        DataType::LargeUtf8 => {
            Some(freshet_storage::jsonb::normalize(s).map(|j| ScalarValue::LargeUtf8(Some(j))))
        }
        _ => None,
    }
}

/// `strings` read as `to` the way Postgres reads them (see [`value_from_text`]); `None`
/// when they are not strings or `to` is read as Arrow reads it.
pub fn text_to(strings: &ArrayRef, to: &DataType) -> Option<Result<ArrayRef, String>> {
    if !matches!(
        to,
        DataType::List(_) | DataType::Struct(_) | DataType::Binary | DataType::LargeUtf8
    ) {
        return None;
    }
    let cast;
    let strings = match strings.data_type() {
        DataType::Utf8 => strings,
        DataType::Utf8View | DataType::LargeUtf8 => {
            cast = datafusion::arrow::compute::cast(strings, &DataType::Utf8).ok()?;
            &cast
        }
        _ => return None,
    };
    let text = strings.as_any().downcast_ref::<StringArray>()?;
    match to {
        DataType::Binary => Some(
            text.iter()
                .map(|s| s.map(bytea_from_text).transpose())
                .collect::<Result<BinaryArray, _>>()
                .map(|a| Arc::new(a) as ArrayRef),
        ),
        DataType::LargeUtf8 => Some(
            text.iter()
                .map(|s| s.map(freshet_storage::jsonb::normalize).transpose())
                .collect::<Result<datafusion::arrow::array::LargeStringArray, _>>()
                .map(|a| Arc::new(a) as ArrayRef),
        ),
        DataType::List(_) | DataType::Struct(_) => Some((|| {
            let values = (0..text.len())
                .map(|i| match text.is_null(i) {
                    true => ScalarValue::try_from(to).map_err(|e| e.to_string()),
                    false => {
                        value_from_text(text.value(i), to).unwrap_or_else(|| Err(String::new()))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            if values.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(to));
            }
            ScalarValue::iter_to_array(values).map_err(|e| e.to_string())
        })()),
        _ => None,
    }
}

/// Reads string literals cast to an array or `bytea` as Postgres does (see the module
/// documentation).
#[derive(Debug)]
pub struct PgTextInput;

impl AnalyzerRule for PgTextInput {
    fn analyze(
        &self,
        plan: LogicalPlan,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            plan.map_expressions(|e| e.transform_up(read_literal))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "freshet_pg_text_input"
    }
}

/// The literal a cast of a string literal to an array or `bytea` gives.
fn read_literal(e: Expr) -> datafusion::error::Result<Transformed<Expr>> {
    let (inner, to) = match &e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr.as_ref(), field.data_type())
        }
        _ => return Ok(Transformed::no(e)),
    };
    let Expr::Literal(v, meta) = inner else {
        return Ok(Transformed::no(e));
    };
    let s = match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s,
        _ => return Ok(Transformed::no(e)),
    };
    match value_from_text(s, to) {
        None => Ok(Transformed::no(e)),
        Some(Ok(v)) => Ok(Transformed::yes(Expr::Literal(v, meta.clone()))),
        Some(Err(m)) => Err(DataFusionError::Execution(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_text_forms() {
        assert_eq!(bytea_from_text("\\x0aFF").unwrap(), vec![10, 255]);
        assert_eq!(bytea_from_text("\\x0a ff").unwrap(), vec![10, 255]);
        assert_eq!(
            bytea_from_text("ab\\\\c\\001").unwrap(),
            b"ab\\c\x01".to_vec()
        );
        assert!(bytea_from_text("\\x0").is_err());
        assert!(bytea_from_text("\\q").is_err());
        assert!(bytea_from_text("\\400").is_err());
    }

    #[test]
    fn arrays_from_text() {
        let v = array_from_text("{1, NULL ,3}", &DataType::Int32).unwrap();
        let want: Vec<ScalarValue> = vec![
            ScalarValue::Int32(Some(1)),
            ScalarValue::Int32(None),
            ScalarValue::Int32(Some(3)),
        ];
        assert_eq!(
            v,
            ScalarValue::List(ScalarValue::new_list_nullable(&want, &DataType::Int32))
        );
        assert!(array_from_text("{1,x}", &DataType::Int32).is_err());
        assert!(array_from_text("1,2", &DataType::Int32).is_err());
    }

    #[test]
    fn records_from_text() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            parse_record_text(r#"(1,,"a b","q""x\\",)"#).unwrap(),
            vec![some("1"), None, some("a b"), some("q\"x\\"), None]
        );
        assert_eq!(parse_record_text(r#"("")"#).unwrap(), vec![some("")]);
        assert!(parse_record_text("(1,\"2)").is_err());
        assert!(parse_record_text("1,2").is_err());
        use datafusion::arrow::datatypes::Field;
        let fs: datafusion::arrow::datatypes::Fields = vec![
            Field::new("n", DataType::Utf8, true),
            Field::new("tags", DataType::new_list(DataType::Int32, true), true),
        ]
        .into();
        let v = struct_from_text(r#"(ann,"{1,2}")"#, &fs).unwrap();
        assert_eq!(v.data_type(), DataType::Struct(fs.clone()));
        assert!(struct_from_text("(ann)", &fs).is_err());
        assert!(struct_from_text("(ann,{x})", &fs).is_err());
    }
}
