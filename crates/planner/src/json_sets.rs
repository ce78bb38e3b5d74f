//! Postgres' set-returning `jsonb` functions in a select list, and the functions that
//! change a document:
//!
//! - `jsonb_array_elements(j)`, `jsonb_array_elements_text(j)` and `jsonb_object_keys(j)`
//!   (and their `json_` names) are rewritten when a statement is parsed into
//!   `unnest(<the elements as an array>)`, which queries and views both run: a row per
//!   element, none for a NULL document. A select item that is such a call keeps the
//!   function's name as its column name, as in Postgres.
//! - `jsonb_set(j, path, value [, create_missing])`, `jsonb_strip_nulls(j)`, and the
//!   operators `j - key`, `j - index` and `j #- path` (see `crate::jsonb`).

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use freshet_storage::jsonb as canonical;
use serde_json::Value;

use crate::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, VisitMut,
};

/// The internal functions that list a document's elements or keys as an array.
pub const ELEMENTS: &str = "jsonb_elements_array";
pub const ELEMENTS_TEXT: &str = "jsonb_elements_text_array";
pub const KEYS: &str = "jsonb_keys_array";
pub const VALUES: &str = "jsonb_values_array";
pub const VALUES_TEXT: &str = "jsonb_values_text_array";

/// The array function a set-returning JSON function `e` unnests, if it is one.
fn set_function(e: &Expr) -> Option<(&'static str, &crate::sqlparser::ast::Function)> {
    let Expr::Function(f) = e else {
        return None;
    };
    if f.name.0.len() != 1 || f.over.is_some() {
        return None;
    }
    let name = f.name.0[0].as_ident()?.value.to_ascii_lowercase();
    let inner = match name.as_str() {
        "jsonb_array_elements" | "json_array_elements" => ELEMENTS,
        "jsonb_array_elements_text" | "json_array_elements_text" => ELEMENTS_TEXT,
        "jsonb_object_keys" | "json_object_keys" => KEYS,
        "jsonb_path_query" => crate::jsonpath::QUERY_LIST,
        _ => return None,
    };
    Some((inner, f))
}

fn rewrite(e: &Expr) -> Option<Expr> {
    let (inner, f) = set_function(e)?;
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    // The path query takes a path, and perhaps vars and silent, after the document.
    let arity = if inner == crate::jsonpath::QUERY_LIST {
        2..=4
    } else {
        1..=1
    };
    if !arity.contains(&list.args.len()) {
        return None;
    }
    let call = |name: &str, args: FunctionArguments| {
        Expr::Function(crate::sqlparser::ast::Function {
            name: ObjectName::from(vec![Ident::new(name)]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args,
            filter: None,
            null_treatment: None,
            over: None,
            within_group: Vec::new(),
        })
    };
    let array = call(inner, f.args.clone());
    Some(call(
        "unnest",
        FunctionArguments::List(crate::sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(array))],
            clauses: Vec::new(),
        }),
    ))
}

/// Rewrites the set-returning JSON calls of `node` in place.
pub fn normalize<T: VisitMut>(node: &mut T) {
    crate::naming::keep_call_names(node, |e| set_function(e).map(|(_, f)| f));
    let _ = crate::sqlparser::ast::visit_expressions_mut(node, |e| {
        if let Some(call) = rewrite(e) {
            *e = call;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `items` as a list value of `elem`s (one row's array).
fn list(items: Vec<ScalarValue>, elem: &DataType) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list(&items, elem, true))
}

/// A NULL list of `elem`s (the array of a NULL document: no rows).
fn null_list(elem: DataType) -> Result<ScalarValue, String> {
    ScalarValue::try_from(DataType::List(std::sync::Arc::new(
        datafusion::arrow::datatypes::Field::new_list_field(elem, true),
    )))
    .map_err(|e| e.to_string())
}

/// `jsonb_array_elements`' array: the elements of an array document, as `jsonb`.
pub fn elements(doc: Option<Value>, as_text: bool) -> Result<ScalarValue, String> {
    let elem = if as_text {
        DataType::Utf8
    } else {
        DataType::LargeUtf8
    };
    let Some(doc) = doc else {
        return null_list(elem);
    };
    let Value::Array(items) = doc else {
        return Err(format!(
            "cannot extract elements from {}",
            kind_of(&doc).unwrap_or("a scalar")
        ));
    };
    let values = items
        .iter()
        .map(|v| match (as_text, v) {
            (true, Value::Null) => ScalarValue::Utf8(None),
            (true, Value::String(s)) => ScalarValue::Utf8(Some(s.clone())),
            (true, other) => ScalarValue::Utf8(Some(canonical::text(other))),
            (false, other) => ScalarValue::LargeUtf8(Some(canonical::text(other))),
        })
        .collect();
    Ok(list(values, &elem))
}

/// `jsonb_object_keys`' array: an object's keys in Postgres' order (by length, then
/// bytes).
pub fn keys(doc: Option<Value>) -> Result<ScalarValue, String> {
    let Some(doc) = doc else {
        return null_list(DataType::Utf8);
    };
    let Value::Object(map) = doc else {
        return Err(format!(
            "cannot call jsonb_object_keys on {}",
            kind_of(&doc).unwrap_or("a scalar")
        ));
    };
    let mut names: Vec<String> = map.keys().cloned().collect();
    names.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    Ok(list(
        names
            .into_iter()
            .map(|k| ScalarValue::Utf8(Some(k)))
            .collect(),
        &DataType::Utf8,
    ))
}

/// `jsonb_each`'s values (`jsonb_each_text`'s as text), in [`keys`]' order.
pub fn values(doc: Option<Value>, as_text: bool) -> Result<ScalarValue, String> {
    let elem = if as_text {
        DataType::Utf8
    } else {
        DataType::LargeUtf8
    };
    let Some(doc) = doc else {
        return null_list(elem);
    };
    let Value::Object(map) = doc else {
        return Err(format!(
            "cannot call {} on a non-object",
            if as_text {
                "jsonb_each_text"
            } else {
                "jsonb_each"
            }
        ));
    };
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    let values = entries
        .into_iter()
        .map(|(_, v)| match (as_text, v) {
            (true, Value::Null) => ScalarValue::Utf8(None),
            (true, Value::String(s)) => ScalarValue::Utf8(Some(s.clone())),
            (true, other) => ScalarValue::Utf8(Some(canonical::text(other))),
            (false, other) => ScalarValue::LargeUtf8(Some(canonical::text(other))),
        })
        .collect();
    Ok(list(values, &elem))
}

fn kind_of(v: &Value) -> Option<&'static str> {
    match v {
        Value::Object(_) => Some("an object"),
        Value::Array(_) => Some("an array"),
        _ => None,
    }
}

/// `jsonb_set(doc, path, value, create_missing)`: `doc` with the item at `path` replaced
/// by `value` (or added, with `create_missing`, when only the last step is missing), as
/// Postgres does: a path through something that is not there leaves `doc` unchanged.
pub fn set(mut doc: Value, path: &[String], value: Value, create_missing: bool) -> Value {
    let Some((last, steps)) = path.split_last() else {
        return doc;
    };
    let Some(at) = walk_mut(&mut doc, steps) else {
        return doc;
    };
    match at {
        Value::Object(map) if create_missing || map.contains_key(last) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let Ok(i) = last.parse::<i64>() else {
                return doc;
            };
            let n = items.len() as i64;
            let at = if i < 0 { n + i } else { i };
            if (0..n).contains(&at) {
                items[at as usize] = value;
            } else if create_missing {
                if at < 0 {
                    items.insert(0, value);
                } else {
                    items.push(value);
                }
            }
        }
        _ => {}
    }
    doc
}

/// The item `steps` lead to in `doc`, if they all exist.
fn walk_mut<'a>(doc: &'a mut Value, steps: &[String]) -> Option<&'a mut Value> {
    let mut at = doc;
    for step in steps {
        at = match at {
            Value::Object(map) => map.get_mut(step)?,
            Value::Array(items) => {
                let i = index(items.len(), step)?;
                items.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(at)
}

/// An array index step (negative from the end) within `len` items.
fn index(len: usize, step: &str) -> Option<usize> {
    let i: i64 = step.parse().ok()?;
    let i = if i < 0 { len as i64 + i } else { i };
    usize::try_from(i).ok().filter(|&i| i < len)
}

/// `jsonb_strip_nulls`: objects without their null-valued fields, at every depth.
pub fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// `j - key`: an object without `key`, an array without its string elements equal to
/// `key`; `j - n`: an array without element `n` (negative from the end).
pub fn delete(doc: Value, key: &ScalarValue, as_str: Option<&str>) -> Result<Value, String> {
    Ok(match (doc, as_str) {
        (Value::Object(mut map), Some(k)) => {
            map.remove(k);
            Value::Object(map)
        }
        (Value::Array(items), Some(k)) => Value::Array(
            items
                .into_iter()
                .filter(|v| !matches!(v, Value::String(s) if s == k))
                .collect(),
        ),
        (Value::Array(mut items), None) => {
            let n = match key {
                ScalarValue::Int64(Some(i)) => *i,
                ScalarValue::Int32(Some(i)) => i64::from(*i),
                ScalarValue::Int16(Some(i)) => i64::from(*i),
                other => {
                    return Err(format!(
                        "cannot delete from jsonb by a {}",
                        other.data_type()
                    ))
                }
            };
            if let Some(i) = index(items.len(), &n.to_string()) {
                items.remove(i);
            }
            Value::Array(items)
        }
        (Value::Object(_), None) => {
            return Err("cannot delete from object using integer index".into())
        }
        _ => return Err("cannot delete from scalar".into()),
    })
}

/// `j #- path`: `j` without the item at `path` (unchanged if it is not there).
pub fn delete_path(mut doc: Value, path: &[String]) -> Result<Value, String> {
    if !matches!(doc, Value::Object(_) | Value::Array(_)) {
        return Err("cannot delete path in scalar".into());
    }
    let Some((last, steps)) = path.split_last() else {
        return Ok(doc);
    };
    let Some(at) = walk_mut(&mut doc, steps) else {
        return Ok(doc);
    };
    match at {
        Value::Object(map) => {
            map.remove(last);
        }
        Value::Array(items) => {
            if let Some(i) = index(items.len(), last) {
                items.remove(i);
            }
        }
        _ => {}
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_dialect::FreshetDialect;
    use crate::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::new(&FreshetDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .expect("parses");
        normalize(&mut stmt);
        stmt.to_string()
    }

    fn j(s: &str) -> Value {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn set_returning_calls_become_unnests() {
        assert_eq!(
            rewritten("SELECT id, jsonb_array_elements(doc -> 'items') FROM t"),
            "SELECT id, unnest(jsonb_elements_array(doc -> 'items')) AS \"jsonb_array_elements\" FROM t"
        );
        assert_eq!(
            rewritten("SELECT json_object_keys(doc) AS k FROM t"),
            "SELECT unnest(jsonb_keys_array(doc)) AS k FROM t"
        );
    }

    #[test]
    fn set_and_delete_like_postgres() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let doc = j(r#"{"a": [1, 2], "b": {"c": 1}}"#);
        assert_eq!(
            set(doc.clone(), &p(&["a", "0"]), j("9"), true),
            j(r#"{"a": [9, 2], "b": {"c": 1}}"#)
        );
        assert_eq!(
            set(doc.clone(), &p(&["a", "-1"]), j("9"), true),
            j(r#"{"a": [1, 9], "b": {"c": 1}}"#)
        );
        assert_eq!(
            set(doc.clone(), &p(&["a", "5"]), j("9"), true),
            j(r#"{"a": [1, 2, 9], "b": {"c": 1}}"#)
        );
        assert_eq!(
            set(doc.clone(), &p(&["a", "-5"]), j("9"), true),
            j(r#"{"a": [9, 1, 2], "b": {"c": 1}}"#)
        );
        assert_eq!(set(doc.clone(), &p(&["b", "d"]), j("2"), false), doc);
        assert_eq!(set(doc.clone(), &p(&["x", "y"]), j("2"), true), doc);
        assert_eq!(
            set(doc.clone(), &p(&["b", "d"]), j("2"), true),
            j(r#"{"a": [1, 2], "b": {"c": 1, "d": 2}}"#)
        );
        assert_eq!(
            delete_path(doc.clone(), &p(&["a", "0"])).unwrap(),
            j(r#"{"a": [2], "b": {"c": 1}}"#)
        );
        assert_eq!(
            delete(
                j(r#"["a", "b", "a", 1]"#),
                &ScalarValue::Utf8(Some("a".into())),
                Some("a")
            )
            .unwrap(),
            j(r#"["b", 1]"#)
        );
        assert_eq!(
            delete(j("[1, 2, 3]"), &ScalarValue::Int64(Some(-1)), None).unwrap(),
            j("[1, 2]")
        );
        assert_eq!(
            strip_nulls(j(r#"{"a": null, "b": [null, {"c": null}]}"#)),
            j(r#"{"b": [null, {}]}"#)
        );
    }
}
