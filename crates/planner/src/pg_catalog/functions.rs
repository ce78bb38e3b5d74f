//! Postgres' information functions, as DataFusion scalar functions over a [`Snapshot`]:
//! `version()`, `current_setting`, `format_type`, `pg_get_userbyid`, `pg_get_indexdef`,
//! `pg_get_constraintdef`, `obj_description`, `has_table_privilege`, `quote_ident`, …
//! and the casts `::regclass`, `::regtype`, `::regnamespace` (see [`super::rewrite`]).
//!
//! They evaluate row by row: catalog queries are small.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::objects::{self, Rel};
use super::{oids, types, Snapshot};
use crate::users::Privilege;

type Body = dyn Fn(&[ScalarValue]) -> Result<ScalarValue> + Send + Sync;

/// A function of fixed arities over scalar values.
struct PgFn {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: Arc<Body>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for PgFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.body, &other.body)
    }
}

impl Eq for PgFn {}

impl Hash for PgFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { n };
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            let vals = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => Ok(s.clone()),
                    ColumnarValue::Array(arr) => ScalarValue::try_from_array(arr, i),
                })
                .collect::<Result<Vec<_>>>()?;
            let v = (self.body)(&vals)?;
            out.push(if v.is_null() {
                ScalarValue::try_from(&self.returns)?
            } else {
                v.cast_to(&self.returns)?
            });
        }
        if all_scalar {
            return Ok(ColumnarValue::Scalar(
                out.pop().unwrap_or(ScalarValue::try_from(&self.returns)?),
            ));
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&self.returns),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

/// Registers `name` taking each of `arities` arguments (of any type).
fn def(
    ctx: &SessionContext,
    name: &'static str,
    arities: &[usize],
    returns: DataType,
    body: impl Fn(&[ScalarValue]) -> Result<ScalarValue> + Send + Sync + 'static,
) {
    def_with(ctx, name, arities, returns, Volatility::Stable, body)
}

/// [`def`] with a volatility: `Volatile` for functions with effects, which must run when
/// the statement runs (not when it is planned, or described).
fn def_with(
    ctx: &SessionContext,
    name: &'static str,
    arities: &[usize],
    returns: DataType,
    volatility: Volatility,
    body: impl Fn(&[ScalarValue]) -> Result<ScalarValue> + Send + Sync + 'static,
) {
    let sigs: Vec<TypeSignature> = arities
        .iter()
        .map(|&n| {
            if n == 0 {
                TypeSignature::Nullary
            } else {
                TypeSignature::Any(n)
            }
        })
        .collect();
    let signature = if sigs.len() == 1 {
        Signature::new(
            sigs.into_iter().next().unwrap_or(TypeSignature::Nullary),
            volatility,
        )
    } else {
        Signature::one_of(sigs, volatility)
    };
    ctx.register_udf(ScalarUDF::new_from_impl(PgFn {
        name,
        signature,
        returns,
        body: Arc::new(body),
    }));
}

/// The length of `a[0]` if `a[1]` is dimension 1, for `array_lower`/`array_upper`.
fn array_bounds(a: &[ScalarValue]) -> Option<i32> {
    let dim = match a.get(1)? {
        ScalarValue::Int64(Some(d)) => *d,
        ScalarValue::Int32(Some(d)) => i64::from(*d),
        ScalarValue::Int16(Some(d)) => i64::from(*d),
        _ => return None,
    };
    if dim != 1 {
        return None;
    }
    use datafusion::arrow::array::Array;
    let len = match a.first()? {
        ScalarValue::List(l) if !l.is_null(0) => l.value_length(0) as usize,
        ScalarValue::LargeList(l) if !l.is_null(0) => l.value_length(0) as usize,
        ScalarValue::FixedSizeList(l) if !l.is_null(0) => l.value_length() as usize,
        _ => return None,
    };
    i32::try_from(len).ok()
}

/// A value as an OID: from an oid, an integer, or text holding a number.
pub fn as_oid(v: &ScalarValue) -> Option<u32> {
    match v {
        ScalarValue::UInt32(Some(n)) => Some(*n),
        ScalarValue::Int64(Some(n)) => u32::try_from(*n).ok(),
        ScalarValue::Int32(Some(n)) => u32::try_from(*n).ok(),
        ScalarValue::Int16(Some(n)) => u32::try_from(*n).ok(),
        ScalarValue::UInt64(Some(n)) => u32::try_from(*n).ok(),
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(Some(n)) => Some(*n),
        ScalarValue::Int32(Some(n)) => Some(*n as i64),
        ScalarValue::Int16(Some(n)) => Some(*n as i64),
        ScalarValue::UInt32(Some(n)) => Some(*n as i64),
        ScalarValue::Utf8(Some(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        v if v.is_null() => None,
        v => Some(v.to_string()),
    }
}

fn text(s: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(s.into()))
}

const NULL_TEXT: ScalarValue = ScalarValue::Utf8(None);

/// `quote_ident`: quoted unless a plain lower-case identifier.
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !is_keyword(s) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "select"
            | "from"
            | "where"
            | "table"
            | "order"
            | "group"
            | "user"
            | "limit"
            | "offset"
            | "and"
            | "or"
            | "not"
            | "null"
            | "true"
            | "false"
            | "window"
            | "all"
            | "as"
            | "case"
            | "when"
            | "then"
            | "else"
            | "end"
            | "join"
            | "on"
            | "union"
            | "check"
            | "column"
            | "create"
            | "default"
            | "primary"
            | "references"
            | "to"
            | "with"
    )
}

/// `parse_ident`: the parts of a qualified name, unquoted (and folded when unquoted).
pub fn parse_ident(s: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            part = part.trim().to_string();
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => return Some(parts),
            Some(_) => return None,
        }
    }
}

/// A `LIKE` pattern escaped with `esc` (none: no escape character) rewritten to escape
/// with a backslash, as DataFusion's `LIKE` does.
pub fn like_escape(pattern: &str, esc: Option<char>) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == esc {
            match chars.next() {
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push(c),
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// `CREATE UNIQUE INDEX t_pkey ON public.t USING btree (a, b)` for index `oid`.
pub fn index_def(rels: &[Rel], namespaces: &[objects::Namespace], oid: u32) -> Option<String> {
    let idx = objects::by_oid(rels, oid)?;
    let table = objects::by_oid(rels, idx.index_of?)?;
    let schema = objects::namespace_name(namespaces, table.namespace).unwrap_or("public");
    let on = format!("{}.{}", quote_ident(schema), quote_ident(&table.name));
    let cols: Vec<String> = idx.columns.iter().map(|c| quote_ident(&c.name)).collect();
    if idx.index_cols.is_empty() {
        return Some(format!(
            "CREATE UNIQUE INDEX {} ON {on} USING btree ({})",
            quote_ident(&idx.name),
            cols.join(", ")
        ));
    }
    let (keys, include) = cols.split_at(idx.index_keys.min(cols.len()));
    let mut def = format!(
        "CREATE INDEX {} ON {on} USING btree ({})",
        quote_ident(&idx.name),
        keys.join(", ")
    );
    if !include.is_empty() {
        def.push_str(&format!(" INCLUDE ({})", include.join(", ")));
    }
    Some(def)
}

/// Every function [`register`] defines (a statement calling none of them need not pay
/// for their registration).
pub const NAMES: &[&str] = &[
    "version",
    "current_database",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_user",
    "session_user",
    "current_role",
    "getpgusername",
    "pg_backend_pid",
    "pg_typeof",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "current_setting",
    "set_config",
    "pg_encoding_to_char",
    "quote_ident",
    "parse_ident",
    "pg_is_in_recovery",
    "pg_relation_is_publishable",
    "pg_partition_ancestors",
    "pg_get_statisticsobjdef_columns",
    "pg_get_triggerdef",
    "pg_get_ruledef",
    "pg_get_function_result",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_sqlbody",
    "shobj_description",
    "pg_describe_object",
    "pg_function_is_visible",
    "pg_table_size",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_size_pretty",
    "pg_get_expr",
    "pg_get_userbyid",
    "format_type",
    "pg_table_is_visible",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_viewdef",
    "obj_description",
    "col_description",
    "freshet_regclass_in",
    "to_regclass",
    "freshet_regclass_out",
    "freshet_regtype_in",
    "to_regtype",
    "freshet_regtype_out",
    "freshet_regnamespace_out",
    "freshet_regnamespace_in",
    "freshet_regrole_out",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
    "has_column_privilege",
    "has_any_column_privilege",
    "has_function_privilege",
    "has_sequence_privilege",
    "pg_has_role",
    "freshet_like_escape",
    "quote_literal",
    "array_lower",
    "array_upper",
    "freshet_regproc_in",
    "pg_get_partkeydef",
    "pg_stat_get_numscans",
    "pg_type_is_visible",
    "pg_tablespace_location",
];

/// Registers every function, answering from `snap`.
pub fn register(ctx: &SessionContext, snap: Arc<Snapshot>) {
    use DataType::{Boolean, Int32, Int64, UInt32, Utf8};
    let rels = Arc::new(objects::relations(&snap));
    let nss = Arc::new(objects::namespaces(&snap.catalog));
    let roles = Arc::new(objects::roles(&snap));

    let s = snap.clone();
    def(ctx, "version", &[0], Utf8, move |_| {
        Ok(text(s.version.clone()))
    });
    def(ctx, "current_database", &[0], Utf8, |_| {
        Ok(text(super::DATABASE_NAME))
    });
    def(ctx, "current_catalog", &[0], Utf8, |_| {
        Ok(text(super::DATABASE_NAME))
    });
    def(ctx, "current_schema", &[0], Utf8, |_| Ok(text("public")));
    def(
        ctx,
        "current_schemas",
        &[1],
        DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
            "item", Utf8, true,
        ))),
        |a| {
            let with_implicit = matches!(a.first(), Some(ScalarValue::Boolean(Some(true))));
            let names: Vec<ScalarValue> = if with_implicit {
                vec![text("pg_catalog"), text("public")]
            } else {
                vec![text("public")]
            };
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &names, &Utf8,
            )))
        },
    );
    for name in [
        "current_user",
        "session_user",
        "current_role",
        "getpgusername",
    ] {
        let s = snap.clone();
        def(ctx, name, &[0], Utf8, move |_| Ok(text(s.user.clone())));
    }
    let s = snap.clone();
    def(ctx, "pg_backend_pid", &[0], Int32, move |_| {
        Ok(ScalarValue::Int32(Some(s.backend_pid)))
    });
    // The type of a value, as Postgres names it (regtype shown as text).
    def(ctx, "pg_typeof", &[1], Utf8, |a| {
        let t = a.first().map(|v| v.data_type()).unwrap_or(DataType::Null);
        Ok(text(
            types::format_type(types::oid_of(&t), None).unwrap_or_else(|| "unknown".into()),
        ))
    });
    for (name, terminate) in [("pg_cancel_backend", false), ("pg_terminate_backend", true)] {
        let s = snap.clone();
        // pg_terminate_backend(pid, timeout): the timeout (to wait for the end) is
        // accepted; the session ends right away here.
        let arities: &[usize] = if terminate { &[1, 2] } else { &[1] };
        def_with(
            ctx,
            name,
            arities,
            Boolean,
            Volatility::Volatile,
            move |a| {
                let pid = match a.first() {
                    Some(v) if v.is_null() => return Ok(ScalarValue::Boolean(None)),
                    Some(v) => as_oid(v).and_then(|p| i32::try_from(p).ok()),
                    None => None,
                };
                let Some(pid) = pid else {
                    return Ok(ScalarValue::Boolean(Some(false)));
                };
                let Some(signals) = &s.signals else {
                    return Ok(ScalarValue::Boolean(Some(false)));
                };
                signals
                    .signal(pid, terminate)
                    .map(|sent| ScalarValue::Boolean(Some(sent)))
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            },
        );
    }
    let s = snap.clone();
    def(ctx, "current_setting", &[1, 2], Utf8, move |a| {
        let name = a.first().and_then(as_text).unwrap_or_default();
        let missing_ok = matches!(a.get(1), Some(ScalarValue::Boolean(Some(true))));
        match s.setting(&name) {
            Some(v) => Ok(text(v)),
            None if missing_ok => Ok(NULL_TEXT),
            None => Err(DataFusionError::Plan(format!(
                "unrecognized configuration parameter \"{name}\""
            ))),
        }
    });
    let s = snap.clone();
    def(ctx, "set_config", &[3], Utf8, move |a| {
        // Unqualified names resolve in public only (as `SET search_path` says).
        let name = a.first().and_then(as_text).unwrap_or_default();
        let value = a.get(1).and_then(as_text);
        let local = matches!(a.get(2), Some(ScalarValue::Boolean(Some(true))));
        if name.eq_ignore_ascii_case("search_path")
            && !value
                .as_deref()
                .is_some_and(crate::schemas::public_only_path)
        {
            return Err(DataFusionError::NotImplemented(format!(
                "search_path {}: unqualified names resolve in schema public; name a \
                 relation in schema s as s.name",
                value.unwrap_or_default()
            )));
        }
        // The session applies the setting when the statement ends.
        if let (Some(calls), Some(v)) = (&s.set_configs, &value) {
            calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((name.clone(), v.clone(), local));
        }
        Ok(value.map_or(NULL_TEXT, text))
    });
    def(ctx, "pg_encoding_to_char", &[1], Utf8, |a| {
        Ok(text(match a.first().and_then(as_i64) {
            Some(6) => "UTF8",
            Some(0) => "SQL_ASCII",
            _ => "",
        }))
    });
    def(ctx, "quote_ident", &[1], Utf8, |a| {
        Ok(a.first()
            .and_then(as_text)
            .map_or(NULL_TEXT, |s| text(quote_ident(&s))))
    });
    def(
        ctx,
        "parse_ident",
        &[1, 2],
        DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
            "item", Utf8, true,
        ))),
        |a| {
            let Some(s) = a.first().and_then(as_text) else {
                return Ok(ScalarValue::Null);
            };
            let parts = parse_ident(&s).ok_or_else(|| {
                DataFusionError::Execution(format!("string is not a valid identifier: \"{s}\""))
            })?;
            let vals: Vec<ScalarValue> = parts.into_iter().map(text).collect();
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &vals, &Utf8,
            )))
        },
    );
    def(ctx, "quote_literal", &[1], Utf8, |a| {
        Ok(a.first().and_then(as_text).map_or(NULL_TEXT, |s| {
            if s.contains('\\') {
                text(format!(
                    "E'{}'",
                    s.replace('\\', "\\\\").replace('\'', "''")
                ))
            } else {
                text(format!("'{}'", s.replace('\'', "''")))
            }
        }))
    });
    // Arrays are one-dimensional and 1-based here: dimension 1 runs from 1 to the
    // length; other dimensions, empty and NULL arrays have no bounds (NULL).
    // bigint, not Postgres' integer: DataFusion's generate_series takes bigint bounds only
    // (pgjdbc's and Grafana's `generate_series(1, array_upper(…, 1))`).
    def(ctx, "array_lower", &[2], Int64, |a| {
        Ok(ScalarValue::Int64(
            array_bounds(a).and_then(|n| (n > 0).then_some(1)),
        ))
    });
    def(ctx, "array_upper", &[2], Int64, |a| {
        Ok(ScalarValue::Int64(
            array_bounds(a).and_then(|n| (n > 0).then_some(i64::from(n))),
        ))
    });
    // `'array_in'::regproc`: the OIDs of the input functions pg_type names.
    def(ctx, "freshet_regproc_in", &[1], UInt32, |a| {
        let Some(v) = a.first() else {
            return Ok(ScalarValue::UInt32(None));
        };
        if let Some(o) = as_oid(v) {
            return Ok(ScalarValue::UInt32(Some(o)));
        }
        let name = as_text(v).unwrap_or_default();
        let bare = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        types::input_function_oid(bare)
            .map(|o| ScalarValue::UInt32(Some(o)))
            .ok_or_else(|| DataFusionError::Plan(format!("function \"{name}\" does not exist")))
    });
    def(ctx, "pg_get_partkeydef", &[1], Utf8, |_| Ok(NULL_TEXT));
    // Every type is in pg_catalog, which is always on the search path.
    def(ctx, "pg_type_is_visible", &[1], Boolean, |a| {
        Ok(ScalarValue::Boolean(
            a.first().and_then(as_oid).map(|_| true),
        ))
    });
    def(ctx, "pg_tablespace_location", &[1], Utf8, |_| Ok(text("")));
    def(ctx, "pg_stat_get_numscans", &[1], Int64, |_| {
        Ok(ScalarValue::Int64(Some(0)))
    });
    def(ctx, "freshet_like_escape", &[2], Utf8, |a| {
        let (Some(p), Some(esc)) = (a.first().and_then(as_text), a.get(1).and_then(as_text)) else {
            return Ok(NULL_TEXT);
        };
        Ok(text(like_escape(&p, esc.chars().next())))
    });
    def(ctx, "pg_is_in_recovery", &[0], Boolean, |_| {
        Ok(ScalarValue::Boolean(Some(false)))
    });
    def(ctx, "pg_relation_is_publishable", &[1], Boolean, |_| {
        Ok(ScalarValue::Boolean(Some(false)))
    });
    // A relation that is no partition is its own only ancestor.
    def(ctx, "pg_partition_ancestors", &[1], UInt32, |a| {
        Ok(ScalarValue::UInt32(a.first().and_then(as_oid)))
    });
    for name in [
        "pg_get_statisticsobjdef_columns",
        "pg_get_triggerdef",
        "pg_get_ruledef",
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
        "pg_get_function_sqlbody",
        "shobj_description",
        "pg_describe_object",
    ] {
        def(ctx, name, &[1, 2, 3], Utf8, |_| Ok(NULL_TEXT));
    }
    def(ctx, "pg_function_is_visible", &[1], Boolean, |_| {
        Ok(ScalarValue::Boolean(Some(true)))
    });
    for name in [
        "pg_table_size",
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_indexes_size",
        "pg_database_size",
    ] {
        def(ctx, name, &[1, 2], Int64, |_| {
            Ok(ScalarValue::Int64(Some(0)))
        });
    }
    def(ctx, "pg_size_pretty", &[1], Utf8, |a| {
        let n = a.first().and_then(as_i64).unwrap_or(0);
        Ok(text(size_pretty(n)))
    });
    // pg_get_expr(expr_text, relation [, pretty]): the only expressions Freshet keeps in
    // the catalogs are column defaults (pg_attrdef.adbin), as their SQL text.
    def(ctx, "pg_get_expr", &[2, 3], Utf8, |a| {
        Ok(match a.first() {
            Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => text(s.clone()),
            _ => NULL_TEXT,
        })
    });

    let r = roles.clone();
    def(ctx, "pg_get_userbyid", &[1], Utf8, move |a| {
        let Some(o) = a.first().and_then(as_oid) else {
            return Ok(NULL_TEXT);
        };
        Ok(text(r.iter().find(|x| x.oid == o).map_or_else(
            || format!("unknown (OID={o})"),
            |x| x.name.clone(),
        )))
    });
    def(ctx, "format_type", &[2], Utf8, |a| {
        let Some(o) = a.first().and_then(as_oid) else {
            return Ok(NULL_TEXT);
        };
        let m = a.get(1).and_then(as_i64).map(|m| m as i32);
        Ok(text(
            types::format_type(o, m).unwrap_or_else(|| "???".into()),
        ))
    });
    let rl = rels.clone();
    def(ctx, "pg_table_is_visible", &[1], Boolean, move |a| {
        let o = a.first().and_then(as_oid);
        Ok(ScalarValue::Boolean(Some(o.is_some_and(|o| {
            objects::by_oid(&rl, o)
                .is_some_and(|r| matches!(r.namespace, oids::NS_PUBLIC | oids::NS_PG_CATALOG))
        }))))
    });
    let rl = rels.clone();
    let ns = nss.clone();
    def(ctx, "pg_get_indexdef", &[1, 3], Utf8, move |a| {
        let Some(o) = a.first().and_then(as_oid) else {
            return Ok(NULL_TEXT);
        };
        // With a column number: that column of the index.
        match a.get(1).and_then(as_i64) {
            Some(col) if col > 0 => Ok(objects::by_oid(&rl, o)
                .and_then(|i| i.columns.get(col as usize - 1))
                .map_or(NULL_TEXT, |c| text(quote_ident(&c.name)))),
            _ => Ok(index_def(&rl, &ns, o).map_or(NULL_TEXT, text)),
        }
    });
    let rl = rels.clone();
    def(ctx, "pg_get_constraintdef", &[1, 2], Utf8, move |a| {
        let Some((id, 2)) = a.first().and_then(as_oid).and_then(oids::object) else {
            return Ok(NULL_TEXT);
        };
        let Some(table) = objects::by_oid(&rl, oids::relation(id)) else {
            return Ok(NULL_TEXT);
        };
        let cols: Vec<String> = table
            .pk
            .iter()
            .filter_map(|&n| table.columns.get(n as usize - 1))
            .map(|c| quote_ident(&c.name))
            .collect();
        Ok(text(format!("PRIMARY KEY ({})", cols.join(", "))))
    });
    let rl = rels.clone();
    let ns = nss.clone();
    def(ctx, "pg_get_viewdef", &[1, 2], Utf8, move |a| {
        let o = a.first().and_then(|v| regclass(&rl, &ns, v));
        Ok(o.and_then(|o| objects::by_oid(&rl, o))
            .and_then(|r| r.definition.clone())
            .map_or(NULL_TEXT, text))
    });
    let rl = rels.clone();
    let ns = nss.clone();
    def(ctx, "obj_description", &[1, 2], Utf8, move |a| {
        let Some(o) = a.first().and_then(as_oid) else {
            return Ok(NULL_TEXT);
        };
        if let Some(n) = ns.iter().find(|n| n.oid == o && !n.comment.is_empty()) {
            return Ok(text(n.comment.clone()));
        }
        Ok(objects::by_oid(&rl, o)
            .and_then(|r| r.comment.clone())
            .map_or(NULL_TEXT, text))
    });
    def(ctx, "col_description", &[2], Utf8, |_| Ok(NULL_TEXT));
    // ::regclass and friends (see rewrite.rs): text → OID, OID → name.
    let rl = rels.clone();
    let ns = nss.clone();
    def(ctx, "freshet_regclass_in", &[1], UInt32, move |a| {
        let Some(v) = a.first() else {
            return Ok(ScalarValue::UInt32(None));
        };
        if v.is_null() {
            return Ok(ScalarValue::UInt32(None));
        }
        match regclass(&rl, &ns, v) {
            Some(o) => Ok(ScalarValue::UInt32(Some(o))),
            None => Err(DataFusionError::Plan(format!(
                "relation \"{}\" does not exist",
                as_text(v).unwrap_or_default()
            ))),
        }
    });
    let rl = rels.clone();
    let ns = nss.clone();
    def(ctx, "to_regclass", &[1], UInt32, move |a| {
        Ok(ScalarValue::UInt32(
            a.first().and_then(|v| regclass(&rl, &ns, v)),
        ))
    });
    let rl = rels.clone();
    let ns = nss.clone();
    def(ctx, "freshet_regclass_out", &[1], Utf8, move |a| {
        let Some(o) = a.first().and_then(as_oid) else {
            return Ok(NULL_TEXT);
        };
        Ok(text(match objects::by_oid(&rl, o) {
            Some(r) if matches!(r.namespace, oids::NS_PUBLIC | oids::NS_PG_CATALOG) => {
                quote_ident(&r.name)
            }
            Some(r) => format!(
                "{}.{}",
                quote_ident(objects::namespace_name(&ns, r.namespace).unwrap_or("public")),
                quote_ident(&r.name)
            ),
            None => o.to_string(),
        }))
    });
    def(ctx, "freshet_regtype_in", &[1], UInt32, |a| {
        let Some(v) = a.first() else {
            return Ok(ScalarValue::UInt32(None));
        };
        if let Some(o) = as_oid(v) {
            return Ok(ScalarValue::UInt32(Some(o)));
        }
        let name = as_text(v).unwrap_or_default();
        types::by_name(&name)
            .map(|t| ScalarValue::UInt32(Some(t.oid)))
            .ok_or_else(|| DataFusionError::Plan(format!("type \"{name}\" does not exist")))
    });
    def(ctx, "to_regtype", &[1], UInt32, |a| {
        let name = a.first().and_then(as_text).unwrap_or_default();
        Ok(ScalarValue::UInt32(types::by_name(&name).map(|t| t.oid)))
    });
    def(ctx, "freshet_regtype_out", &[1], Utf8, |a| {
        Ok(a.first().and_then(as_oid).map_or(NULL_TEXT, |o| {
            text(types::format_type(o, None).unwrap_or_else(|| o.to_string()))
        }))
    });
    let ns = nss.clone();
    def(ctx, "freshet_regnamespace_out", &[1], Utf8, move |a| {
        Ok(a.first().and_then(as_oid).map_or(NULL_TEXT, |o| {
            text(objects::namespace_name(&ns, o).map_or_else(|| o.to_string(), quote_ident))
        }))
    });
    let ns = nss.clone();
    def(ctx, "freshet_regnamespace_in", &[1], UInt32, move |a| {
        let name = a.first().and_then(as_text).unwrap_or_default();
        let unquoted = match parse_ident(&name).as_deref() {
            Some([one]) => one.clone(),
            _ => name.clone(),
        };
        Ok(ScalarValue::UInt32(as_oid(&text(name.clone())).or_else(
            || ns.iter().find(|n| n.name == unquoted).map(|n| n.oid),
        )))
    });
    let r = roles.clone();
    def(ctx, "freshet_regrole_out", &[1], Utf8, move |a| {
        Ok(a.first().and_then(as_oid).map_or(NULL_TEXT, |o| {
            text(
                r.iter()
                    .find(|x| x.oid == o)
                    .map_or_else(|| o.to_string(), |x| x.name.clone()),
            )
        }))
    });
    register_privileges(ctx, &snap, &rels, &nss);
}

/// The OID a `regclass` input names: an OID, or a (qualified, quoted) relation name.
fn regclass(rels: &[Rel], namespaces: &[objects::Namespace], v: &ScalarValue) -> Option<u32> {
    if let ScalarValue::UInt32(Some(o)) = v {
        return Some(*o);
    }
    let s = as_text(v)?;
    if let Ok(o) = s.trim().parse::<u32>() {
        return Some(o);
    }
    let parts = parse_ident(&s)?;
    let (ns, name) = match parts.as_slice() {
        [name] => (None, name.as_str()),
        [ns, name] => (
            Some(namespaces.iter().find(|n| &n.name == ns)?.oid),
            name.as_str(),
        ),
        _ => return None,
    };
    rels.iter()
        .find(|r| {
            r.name == name
                && match ns {
                    Some(ns) => r.namespace == ns,
                    None => matches!(r.namespace, oids::NS_PUBLIC | oids::NS_PG_CATALOG),
                }
        })
        .map(|r| r.oid)
}

/// `has_table_privilege([user,] table, privilege)` and the others: a superuser may do
/// anything; other users what they were granted; everyone may read the catalogs.
fn register_privileges(
    ctx: &SessionContext,
    snap: &Arc<Snapshot>,
    rels: &Arc<Vec<Rel>>,
    nss: &Arc<Vec<objects::Namespace>>,
) {
    let s = snap.clone();
    let rl = rels.clone();
    let ns = nss.clone();
    def(
        ctx,
        "has_table_privilege",
        &[2, 3],
        DataType::Boolean,
        move |a| {
            let (user, table, what) = match a {
                [t, p] => (s.user.clone(), t, p),
                [u, t, p] => (
                    as_oid(u)
                        .and_then(|o| {
                            objects::roles(&s)
                                .into_iter()
                                .find(|r| r.oid == o)
                                .map(|r| r.name)
                        })
                        .or_else(|| as_text(u))
                        .unwrap_or_default(),
                    t,
                    p,
                ),
                _ => return Ok(ScalarValue::Boolean(None)),
            };
            let Some(oid) = regclass(&rl, &ns, table) else {
                return Err(DataFusionError::Plan(format!(
                    "relation \"{}\" does not exist",
                    as_text(table).unwrap_or_default()
                )));
            };
            let what = as_text(what).unwrap_or_default().to_ascii_lowercase();
            Ok(ScalarValue::Boolean(Some(may(&s, &rl, &user, oid, &what))))
        },
    );
    // Schemas, databases and columns: usable by everyone (privileges are per relation).
    for name in [
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
        "pg_has_role",
    ] {
        def(ctx, name, &[2, 3, 4], DataType::Boolean, |_| {
            Ok(ScalarValue::Boolean(Some(true)))
        });
    }
}

/// Whether `user` may do `what` (`select`, `insert`, …, possibly several with commas)
/// to relation `oid`.
fn may(s: &Snapshot, rels: &[Rel], user: &str, oid: u32, what: &str) -> bool {
    let Some(rel) = objects::by_oid(rels, oid) else {
        return false;
    };
    let Some(id) = rel.id else {
        // The system catalogs: readable by everyone.
        return what.contains("select");
    };
    let def = if user == crate::users::BOOTSTRAP_USER {
        s.catalog
            .user(user)
            .cloned()
            .unwrap_or_else(crate::users::UserDef::bootstrap)
    } else {
        match s.catalog.user(user) {
            Some(u) => u.clone(),
            None => return false,
        }
    };
    what.split(',').any(|w| {
        let w = w.trim().trim_end_matches(" with grant option");
        Privilege::parse(w).is_some_and(|p| def.may(id, p))
    })
}

fn size_pretty(n: i64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 10240.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", v.round() as i64, units[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("plays"), "plays");
        assert_eq!(quote_ident("Plays"), "\"Plays\"");
        assert_eq!(quote_ident("my table"), "\"my table\"");
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            parse_ident("public.\"My Table\""),
            Some(vec!["public".to_string(), "My Table".to_string()])
        );
        assert_eq!(parse_ident("Plays"), Some(vec!["plays".to_string()]));
        assert_eq!(parse_ident("a..b"), None);
        assert_eq!(size_pretty(123), "123 bytes");
        assert_eq!(like_escape("pg/_%", Some('/')), "pg\\_%");
        assert_eq!(like_escape("a\\b", Some('/')), "a\\\\b");
        assert_eq!(like_escape("a//b", Some('/')), "a\\/b");
        assert_eq!(size_pretty(20480), "20 kB");
    }
}
