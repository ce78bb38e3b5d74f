//! `jsonb`: a column type whose values are stored as their canonical text in a `LargeUtf8`
//! column (`freshet_storage::jsonb`), Postgres' operators on it (`->`, `->>`, `#>`, `#>>`,
//! `@>`, `<@`, `?`) and its functions (`jsonb_typeof`, `jsonb_array_length`,
//! `jsonb_build_object`, `jsonb_build_array`, `jsonb_extract_path[_text]`, `to_jsonb`).
//!
//! A string becomes `jsonb` by `::jsonb` (rewritten to the `jsonb()` function when the
//! statement is parsed), or by its place (a value written into a `jsonb` column, a
//! comparison with one): every cast to `LargeUtf8` validates and normalizes its text
//! ([`crate::pg_input`]). `->`/`->>` also take JSON in a text column, as a convenience.
//! Functions evaluate row by row with serde_json.

use std::sync::Arc;

use datafusion::arrow::array::new_empty_array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;
use freshet_storage::jsonb as canonical;
use serde_json::Value;

type RowFn = fn(&[ScalarValue]) -> Result<ScalarValue, String>;

/// A function of `jsonb` evaluated row by row (named uniquely: equal by name).
#[derive(Debug)]
struct JsonFn {
    name: &'static str,
    signature: Signature,
    ret: DataType,
    f: RowFn,
}

impl PartialEq for JsonFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for JsonFn {}

impl std::hash::Hash for JsonFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for JsonFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let eval = |row: &[ScalarValue]| (self.f)(row).map_err(DataFusionError::Execution);
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            let row: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => ScalarValue::Null,
                })
                .collect();
            return Ok(ColumnarValue::Scalar(eval(&row)?));
        }
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let row = arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, i))
                .collect::<Result<Vec<_>>>()?;
            out.push(eval(&row)?);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(new_empty_array(&self.ret)));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

fn udf(name: &'static str, args: Option<usize>, ret: DataType, f: RowFn) -> Arc<ScalarUDF> {
    let signature = match args {
        Some(n) => Signature::any(n, Volatility::Immutable),
        None => Signature::variadic_any(Volatility::Immutable),
    };
    Arc::new(ScalarUDF::new_from_impl(JsonFn {
        name,
        signature,
        ret,
        f,
    }))
}

/// A list type of `elem`s, as `ScalarValue::new_list` builds them.
fn list_of(elem: DataType) -> DataType {
    DataType::List(Arc::new(
        datafusion::arrow::datatypes::Field::new_list_field(elem, true),
    ))
}

fn jsonb(v: Option<Value>) -> ScalarValue {
    ScalarValue::LargeUtf8(v.map(|v| canonical::text(&v)))
}

/// `->>`'s result: a string's contents, other values' text, SQL NULL for JSON null.
fn text(v: Option<&Value>) -> ScalarValue {
    ScalarValue::Utf8(v.and_then(|v| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(canonical::text(other)),
    }))
}

fn str_of(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

/// The JSON document of a `jsonb` (or text) argument; `None` for NULL.
fn doc(v: &ScalarValue) -> Result<Option<Value>, String> {
    match str_of(v) {
        Some(s) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| format!("invalid input syntax for type json: \"{s}\" ({e})")),
        None if v.is_null() => Ok(None),
        None => Err(format!("a {} is not json", v.data_type())),
    }
}

/// A value as JSON (`to_jsonb`, `jsonb_build_*`): numbers, booleans and strings as
/// themselves, `jsonb` as its document, arrays element by element, others as their text.
fn to_json(v: &ScalarValue) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(match v {
        ScalarValue::LargeUtf8(Some(_)) => doc(v)?.unwrap_or(Value::Null),
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Value::String(s.clone()),
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(_))
        | ScalarValue::Int16(Some(_))
        | ScalarValue::Int32(Some(_))
        | ScalarValue::Int64(Some(_))
        | ScalarValue::UInt8(Some(_))
        | ScalarValue::UInt16(Some(_))
        | ScalarValue::UInt32(Some(_))
        | ScalarValue::UInt64(Some(_))
        | ScalarValue::Float32(Some(_))
        | ScalarValue::Float64(Some(_))
        | ScalarValue::Decimal128(Some(_), _, _) => {
            // A numeric NaN or infinity is Postgres' text, as a JSON string.
            if let ScalarValue::Decimal128(Some(d), ..) = v {
                if let Some(s) = freshet_engine::numeric_special::Special::of(*d) {
                    return Ok(Value::String(s.text().into()));
                }
            }
            serde_json::from_str(&v.to_string()).unwrap_or(Value::String(v.to_string()))
        }
        ScalarValue::List(a) => {
            let values = a.value(0);
            let items = (0..values.len())
                .map(|i| {
                    ScalarValue::try_from_array(&values, i)
                        .map_err(|e| e.to_string())
                        .and_then(|e| to_json(&e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        }
        // Arrow's ISO form is Postgres' in JSON: `"2026-01-01T10:00:00"`, with the offset
        // for `timestamptz`.
        ScalarValue::TimestampSecond(..)
        | ScalarValue::TimestampMillisecond(..)
        | ScalarValue::TimestampMicrosecond(..)
        | ScalarValue::TimestampNanosecond(..)
        | ScalarValue::Date32(_)
        | ScalarValue::Date64(_) => {
            let a = v.to_array().map_err(|e| e.to_string())?;
            Value::String(
                datafusion::arrow::util::display::array_value_to_string(&a, 0)
                    .map_err(|e| e.to_string())?,
            )
        }
        other => Value::String(other.to_string()),
    })
}

/// `j -> k`: the field `k` of an object, or element `k` of an array (negative from the
/// end).
fn get<'a>(j: &'a Value, k: &ScalarValue) -> Option<&'a Value> {
    match (j, str_of(k)) {
        (Value::Object(m), Some(key)) => m.get(key),
        (Value::Array(items), None) => {
            let i = match k {
                ScalarValue::Int64(Some(i)) => *i,
                ScalarValue::Int32(Some(i)) => i64::from(*i),
                ScalarValue::Int16(Some(i)) => i64::from(*i),
                _ => return None,
            };
            let i = if i < 0 { items.len() as i64 + i } else { i };
            usize::try_from(i).ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

/// The steps of a path argument (`'{a,0}'` or an array of text).
fn path(p: &ScalarValue) -> Result<Option<Vec<String>>, String> {
    if p.is_null() {
        return Ok(None);
    }
    if let Some(s) = str_of(p) {
        return crate::pg_input::parse_array_text(s)?
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| format!("path element at position {} is null", i + 1)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some);
    }
    match p {
        ScalarValue::List(a) => {
            let values = a.value(0);
            (0..values.len())
                .map(|i| {
                    ScalarValue::try_from_array(&values, i)
                        .map(|v| str_of(&v).unwrap_or_default().to_string())
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        other => Err(format!(
            "a json path must be text[], not {}",
            other.data_type()
        )),
    }
}

fn walk<'a>(mut j: &'a Value, steps: &[String]) -> Option<&'a Value> {
    for s in steps {
        j = match j {
            Value::Object(m) => m.get(s)?,
            Value::Array(items) => {
                let i: i64 = s.parse().ok()?;
                let i = if i < 0 { items.len() as i64 + i } else { i };
                items.get(usize::try_from(i).ok()?)?
            }
            _ => return None,
        };
    }
    Some(j)
}

/// `a @> b`, as Postgres defines jsonb containment: a bare scalar is contained in an
/// array holding it only at the top level.
fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), v) if !v.is_object() && !v.is_array() => x.iter().any(|av| av == v),
        _ => contained(a, b),
    }
}

fn contained(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => y
            .iter()
            .all(|(k, v)| x.get(k).is_some_and(|av| contained(av, v))),
        (Value::Array(x), Value::Array(y)) => y.iter().all(|v| {
            x.iter().any(|av| {
                // Containers match containers, scalars equal scalars.
                (av.is_array() || av.is_object()) == (v.is_array() || v.is_object())
                    && contained(av, v)
            })
        }),
        (x, y) => x == y,
    }
}

fn f_jsonb(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    match str_of(&a[0]) {
        Some(s) => Ok(ScalarValue::LargeUtf8(Some(canonical::normalize(s)?))),
        None if a[0].is_null() => Ok(ScalarValue::LargeUtf8(None)),
        None => Ok(jsonb(Some(to_json(&a[0])?))),
    }
}

fn f_to_jsonb(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    if a[0].is_null() {
        return Ok(ScalarValue::LargeUtf8(None));
    }
    Ok(jsonb(Some(to_json(&a[0])?)))
}

fn f_get(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    Ok(jsonb(
        doc(&a[0])?.as_ref().and_then(|j| get(j, &a[1])).cloned(),
    ))
}

fn f_get_text(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    Ok(text(doc(&a[0])?.as_ref().and_then(|j| get(j, &a[1]))))
}

fn f_path(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (Some(j), Some(p)) = (doc(&a[0])?, path(&a[1])?) else {
        return Ok(ScalarValue::LargeUtf8(None));
    };
    Ok(jsonb(walk(&j, &p).cloned()))
}

fn f_path_text(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (Some(j), Some(p)) = (doc(&a[0])?, path(&a[1])?) else {
        return Ok(ScalarValue::Utf8(None));
    };
    Ok(text(walk(&j, &p)))
}

/// `jsonb_extract_path(j, VARIADIC steps)`.
fn steps(a: &[ScalarValue]) -> Option<Vec<String>> {
    a.iter().map(|s| str_of(s).map(str::to_string)).collect()
}

fn f_extract(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (Some(j), Some(p)) = (doc(&a[0])?, steps(&a[1..])) else {
        return Ok(ScalarValue::LargeUtf8(None));
    };
    Ok(jsonb(walk(&j, &p).cloned()))
}

fn f_extract_text(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (Some(j), Some(p)) = (doc(&a[0])?, steps(&a[1..])) else {
        return Ok(ScalarValue::Utf8(None));
    };
    Ok(text(walk(&j, &p)))
}

/// `a || b`: objects merged (the right one's keys win), arrays concatenated, a scalar
/// taken as a one-element array.
fn f_concat(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (Some(x), Some(y)) = (doc(&a[0])?, doc(&a[1])?) else {
        return Ok(ScalarValue::LargeUtf8(None));
    };
    Ok(jsonb(Some(match (x, y) {
        (Value::Object(mut l), Value::Object(r)) => {
            l.extend(r);
            Value::Object(l)
        }
        (l, r) => {
            let items = |v: Value| match v {
                Value::Array(items) => items,
                other => vec![other],
            };
            let mut out = items(l);
            out.extend(items(r));
            Value::Array(out)
        }
    })))
}

fn f_contains(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    Ok(ScalarValue::Boolean(match (doc(&a[0])?, doc(&a[1])?) {
        (Some(x), Some(y)) => Some(contains(&x, &y)),
        _ => None,
    }))
}

fn f_exists(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (Some(j), Some(k)) = (doc(&a[0])?, str_of(&a[1])) else {
        return Ok(ScalarValue::Boolean(None));
    };
    Ok(ScalarValue::Boolean(Some(match &j {
        Value::Object(m) => m.contains_key(k),
        Value::Array(items) => items.iter().any(|v| v.as_str() == Some(k)),
        Value::String(s) => s == k,
        _ => false,
    })))
}

fn f_typeof(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    Ok(ScalarValue::Utf8(doc(&a[0])?.map(|j| {
        match j {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Null => "null",
        }
        .to_string()
    })))
}

fn f_array_length(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    match doc(&a[0])? {
        None => Ok(ScalarValue::Int32(None)),
        Some(Value::Array(items)) => Ok(ScalarValue::Int32(Some(items.len() as i32))),
        Some(_) => Err("cannot get array length of a non-array".into()),
    }
}

fn f_build_object(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    if !a.len().is_multiple_of(2) {
        return Err("argument list must have even number of elements".into());
    }
    let mut m = serde_json::Map::new();
    for pair in a.chunks(2) {
        let key = match &pair[0] {
            k if k.is_null() => return Err("argument 1: key must not be null".into()),
            k => str_of(k).map_or_else(|| k.to_string(), str::to_string),
        };
        m.insert(key, to_json(&pair[1])?);
    }
    Ok(jsonb(Some(Value::Object(m))))
}

fn f_build_array(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let items = a.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
    Ok(jsonb(Some(Value::Array(items))))
}

/// `jsonb_object_agg`'s result (see [`crate::json_aggs`]): the `n`-th key with the `n`-th
/// value; a key given twice keeps its last value.
fn f_object_of_arrays(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (ScalarValue::List(keys), ScalarValue::List(values)) = (&a[0], &a[1]) else {
        return Ok(jsonb(None));
    };
    if datafusion::arrow::array::Array::is_null(keys.as_ref(), 0) {
        return Ok(jsonb(None));
    }
    let (keys, values) = (keys.value(0), values.value(0));
    let mut m = serde_json::Map::new();
    for i in 0..keys.len() {
        let k = ScalarValue::try_from_array(&keys, i).map_err(|e| e.to_string())?;
        if k.is_null() {
            return Err("field name must not be null".into());
        }
        let v = if i < values.len() {
            ScalarValue::try_from_array(&values, i).map_err(|e| e.to_string())?
        } else {
            ScalarValue::Null
        };
        let key = str_of(&k).map_or_else(|| k.to_string(), str::to_string);
        m.insert(key, to_json(&v)?);
    }
    Ok(jsonb(Some(Value::Object(m))))
}

fn f_elements(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    crate::json_sets::elements(doc(&a[0])?, false)
}

fn f_elements_text(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    crate::json_sets::elements(doc(&a[0])?, true)
}

fn f_keys(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    crate::json_sets::keys(doc(&a[0])?)
}

fn f_values(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    crate::json_sets::values(doc(&a[0])?, false)
}

fn f_values_text(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    crate::json_sets::values(doc(&a[0])?, true)
}

/// `jsonb_set(doc, path, value [, create_missing])`: NULL if any of the first three is.
fn f_set(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    if !(3..=4).contains(&a.len()) {
        return Err("jsonb_set takes (jsonb, text[], jsonb [, boolean])".into());
    }
    let (Some(target), Some(steps), Some(value)) = (doc(&a[0])?, path(&a[1])?, doc(&a[2])?) else {
        return Ok(jsonb(None));
    };
    let create_missing = match a.get(3) {
        None => true,
        Some(ScalarValue::Boolean(Some(b))) => *b,
        Some(v) if v.is_null() => return Ok(jsonb(None)),
        Some(v) => {
            return Err(format!(
                "create_missing must be a boolean, not {}",
                v.data_type()
            ))
        }
    };
    Ok(jsonb(Some(crate::json_sets::set(
        target,
        &steps,
        value,
        create_missing,
    ))))
}

fn f_strip_nulls(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    Ok(jsonb(doc(&a[0])?.map(crate::json_sets::strip_nulls)))
}

/// `doc - key`, `doc - index`.
fn f_delete(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let Some(d) = doc(&a[0])? else {
        return Ok(jsonb(None));
    };
    if a[1].is_null() {
        return Ok(jsonb(None));
    }
    Ok(jsonb(Some(crate::json_sets::delete(
        d,
        &a[1],
        str_of(&a[1]),
    )?)))
}

/// `doc #- path`.
fn f_delete_path(a: &[ScalarValue]) -> Result<ScalarValue, String> {
    let (Some(d), Some(steps)) = (doc(&a[0])?, path(&a[1])?) else {
        return Ok(jsonb(None));
    };
    Ok(jsonb(Some(crate::json_sets::delete_path(d, &steps)?)))
}

/// The function `::jsonb` is rewritten to (see [`crate::literals`]).
pub const CAST_FUNCTION: &str = "jsonb";

/// Registers the functions and the operators in `ctx`.
pub fn register(ctx: &SessionContext) {
    let json = DataType::LargeUtf8;
    let text = DataType::Utf8;
    let functions = [
        udf(CAST_FUNCTION, Some(1), json.clone(), f_jsonb),
        udf("to_jsonb", Some(1), json.clone(), f_to_jsonb),
        udf("jsonb_typeof", Some(1), text.clone(), f_typeof),
        udf(
            "jsonb_array_length",
            Some(1),
            DataType::Int32,
            f_array_length,
        ),
        udf("jsonb_build_object", None, json.clone(), f_build_object),
        udf("jsonb_build_array", None, json.clone(), f_build_array),
        udf(
            crate::json_aggs::OBJECT_OF_ARRAYS,
            Some(2),
            json.clone(),
            f_object_of_arrays,
        ),
        udf("jsonb_extract_path", None, json.clone(), f_extract),
        udf(
            crate::json_sets::ELEMENTS,
            Some(1),
            list_of(DataType::LargeUtf8),
            f_elements,
        ),
        udf(
            crate::json_sets::ELEMENTS_TEXT,
            Some(1),
            list_of(DataType::Utf8),
            f_elements_text,
        ),
        udf(
            crate::json_sets::KEYS,
            Some(1),
            list_of(DataType::Utf8),
            f_keys,
        ),
        udf(
            crate::json_sets::VALUES,
            Some(1),
            list_of(DataType::LargeUtf8),
            f_values,
        ),
        udf(
            crate::json_sets::VALUES_TEXT,
            Some(1),
            list_of(DataType::Utf8),
            f_values_text,
        ),
        udf("jsonb_set", None, json.clone(), f_set),
        udf("jsonb_strip_nulls", Some(1), json.clone(), f_strip_nulls),
        udf(
            "jsonb_extract_path_text",
            None,
            text.clone(),
            f_extract_text,
        ),
    ];
    for f in functions {
        ctx.register_udf(f.as_ref().clone());
    }
    crate::jsonpath::register(ctx);
    let state = ctx.state();
    let (Some(path_exists), Some(path_match)) = (
        state.scalar_functions().get("jsonb_path_exists").cloned(),
        state.scalar_functions().get("jsonb_path_match").cloned(),
    ) else {
        tracing::warn!("cannot register the jsonb operators: no jsonpath functions");
        return;
    };
    let planner = JsonbOperators {
        path_exists,
        path_match,
        get: udf("jsonb_get", Some(2), json.clone(), f_get),
        get_text: udf("jsonb_get_text", Some(2), text.clone(), f_get_text),
        path: udf("jsonb_get_path", Some(2), json, f_path),
        path_text: udf("jsonb_get_path_text", Some(2), text, f_path_text),
        contains: udf("jsonb_contains", Some(2), DataType::Boolean, f_contains),
        exists: udf("jsonb_exists", Some(2), DataType::Boolean, f_exists),
        concat: udf("jsonb_concat", Some(2), DataType::LargeUtf8, f_concat),
        delete: udf("jsonb_delete", Some(2), DataType::LargeUtf8, f_delete),
        delete_path: udf(
            "jsonb_delete_path",
            Some(2),
            DataType::LargeUtf8,
            f_delete_path,
        ),
    };
    use datafusion::execution::FunctionRegistry;
    if let Err(e) = ctx
        .state_ref()
        .write()
        .register_expr_planner(Arc::new(planner))
    {
        tracing::warn!(error = %e, "cannot register the jsonb operators");
    }
}

/// Postgres' jsonb operators, as calls of the functions above.
#[derive(Debug)]
struct JsonbOperators {
    path_exists: Arc<ScalarUDF>,
    path_match: Arc<ScalarUDF>,
    get: Arc<ScalarUDF>,
    get_text: Arc<ScalarUDF>,
    path: Arc<ScalarUDF>,
    path_text: Arc<ScalarUDF>,
    contains: Arc<ScalarUDF>,
    exists: Arc<ScalarUDF>,
    concat: Arc<ScalarUDF>,
    delete: Arc<ScalarUDF>,
    delete_path: Arc<ScalarUDF>,
}

fn call(f: &Arc<ScalarUDF>, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(f.clone(), args))
}

impl ExprPlanner for JsonbOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (Ok(lt), Ok(rt)) = (expr.left.get_type(schema), expr.right.get_type(schema)) else {
            return Ok(PlannerResult::Original(expr));
        };
        let json = |t: &DataType| t == &DataType::LargeUtf8;
        let stringy = |t: &DataType| json(t) || matches!(t, DataType::Utf8 | DataType::Utf8View);
        let (l, r) = (expr.left.clone(), expr.right.clone());
        let planned = match expr.op {
            BinaryOperator::Arrow if stringy(&lt) => call(&self.get, vec![l, r]),
            BinaryOperator::LongArrow if stringy(&lt) => call(&self.get_text, vec![l, r]),
            BinaryOperator::HashArrow if stringy(&lt) => call(&self.path, vec![l, r]),
            BinaryOperator::HashLongArrow if stringy(&lt) => call(&self.path_text, vec![l, r]),
            BinaryOperator::AtArrow if json(&lt) => call(&self.contains, vec![l, r]),
            BinaryOperator::ArrowAt if json(&rt) => call(&self.contains, vec![r, l]),
            BinaryOperator::Question if json(&lt) => call(&self.exists, vec![l, r]),
            // `@?` and `@@` are the path functions, silent (`crate::jsonpath`).
            BinaryOperator::AtQuestion if json(&lt) => call(
                &self.path_exists,
                vec![
                    l,
                    r,
                    Expr::Literal(ScalarValue::LargeUtf8(Some("{}".into())), None),
                    datafusion::prelude::lit(true),
                ],
            ),
            BinaryOperator::AtAt if json(&lt) => call(
                &self.path_match,
                vec![
                    l,
                    r,
                    Expr::Literal(ScalarValue::LargeUtf8(Some("{}".into())), None),
                    datafusion::prelude::lit(true),
                ],
            ),
            BinaryOperator::StringConcat if json(&lt) && (json(&rt) || stringy(&rt)) => {
                call(&self.concat, vec![l, r])
            }
            BinaryOperator::StringConcat if json(&rt) && stringy(&lt) => {
                call(&self.concat, vec![l, r])
            }
            BinaryOperator::Minus
                if json(&lt)
                    && (matches!(rt, DataType::Utf8 | DataType::Utf8View) || rt.is_integer()) =>
            {
                call(&self.delete, vec![l, r])
            }
            BinaryOperator::HashMinus if json(&lt) => call(&self.delete_path, vec![l, r]),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(planned))
    }
}
