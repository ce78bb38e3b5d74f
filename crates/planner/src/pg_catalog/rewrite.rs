//! What Postgres tools write that DataFusion does not take as is, rewritten before a
//! statement is planned:
//!
//! - `x OPERATOR(pg_catalog.~) y` → `x ~ y` (any operator so spelled);
//! - `expr COLLATE "C"` → `expr` (Freshet compares strings bytewise, as "C" does);
//! - `pg_catalog.f(…)` → `f(…)`, `::pg_catalog.text` → `::text`, `::name`, `::"char"` →
//!   `::text`, `::oid` → an unsigned 32-bit integer;
//! - `current_user`, `session_user`, `user` (no parentheses) → the functions;
//! - `::regclass`, `::regtype`, `::regnamespace`, `::regrole`: a literal or parameter
//!   becomes the OID it names (`freshet_regclass_in`), a value shown in the select list
//!   or cast on to text becomes the name the OID stands for (`freshet_regclass_out`), and
//!   elsewhere an OID stays an OID — Postgres' `reg*` types are OIDs that print as names;
//! - `pg_class` and the other `pg_catalog` relations, unqualified, → `pg_catalog.pg_class`
//!   (Postgres searches `pg_catalog` first), unless a relation of the user has the name;
//! - a scalar subquery, `EXISTS` or `IN (subquery)` over a catalog that Freshet keeps
//!   empty (column defaults, collations, triggers, policies, sequences, …) → `NULL`,
//!   `false`, `false`: their result, known without running them;
//! - in statements over the catalogs, a scalar subquery of one plain column → its `max`
//!   (equal, as it returns at most one row), which DataFusion can decorrelate;
//! - `ARRAY(SELECT x …)` → `coalesce((SELECT array_agg(x) …), make_array())` (`{}` over no rows);
//! - `generate_subscripts(arr, 1)` → `unnest(generate_series(1, array_length(arr, 1)))`
//!   (unnested in step with `unnest(arr)` beside it, as Postgres does);
//! - `information_schema._pg_expandarray(arr)` (pgjdbc's and Metabase's key queries), a
//!   set of `(x, n)` records: `(…).x` → `unnest(arr)`, `(…).n` → the subscripts as
//!   above, the record itself → `unnest(arr)` and `(record).x` → the record;
//! - a scalar function in FROM (`string_to_array(…) s`, Grafana's search-path list) →
//!   a one-row subquery whose column takes the alias; in statements over the catalogs,
//!   `generate_series(…) AS i` names its column `i`, as Postgres does for a function
//!   returning one column (elsewhere the column stays `value`, as in views).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, Value, VisitMut, VisitorMut,
};

use super::{find, is_pg_catalog_name, INFORMATION_SCHEMA, PG_CATALOG};

/// Rewrites `stmt` in place; `user_relation` tells whether a name is one of the user's
/// relations (which then shadows a `pg_catalog` relation of that name only when
/// unqualified... as Postgres would not: Postgres searches pg_catalog first).
pub fn rewrite(stmt: &mut Statement, user_relation: &dyn Fn(&str) -> bool) {
    let catalog_query = references_catalog(stmt);
    let _ = ast::visit_relations_mut(stmt, |name| {
        qualify(name, user_relation);
        ControlFlow::<()>::Continue(())
    });
    let expands_arrays =
        catalog_query && stmt.to_string().to_lowercase().contains("_pg_expandarray");
    let mut v = Rewriter {
        catalog_query,
        expands_arrays,
    };
    let _ = stmt.visit(&mut v);
}

/// Scalar functions Postgres tools call in FROM (a one-row relation there).
const SCALAR_IN_FROM: &[&str] = &[
    "string_to_array",
    "regexp_split_to_array",
    "current_schemas",
    "current_setting",
    "current_schema",
    "current_database",
    "current_user",
    "version",
];

/// Table functions of one column, whose column Postgres names after the alias.
const ONE_COLUMN_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// `f(args) [AS] alias[(col)]` in FROM, for a scalar `f`: `(SELECT f(args) AS col) AS
/// alias`; for a one-column table function without column names: `AS alias(alias)`.
fn function_in_from(tf: &mut TableFactor, catalog_query: bool) {
    let TableFactor::Table {
        name,
        alias,
        args: Some(args),
        ..
    } = tf
    else {
        return;
    };
    let Some(fname) = parts(name).last().cloned() else {
        return;
    };
    if fname == "pg_get_keywords" && args.args.is_empty() {
        let alias = alias.take();
        *tf = TableFactor::Table {
            name: ObjectName(vec![
                ObjectNamePart::Identifier(Ident::new(PG_CATALOG)),
                ObjectNamePart::Identifier(Ident::new("pg_get_keywords")),
            ]),
            alias,
            args: None,
            with_hints: vec![],
            version: None,
            with_ordinality: false,
            partitions: vec![],
            json_path: None,
            sample: None,
            index_hints: vec![],
        };
        return;
    }
    // Renaming the column only in statements over the catalogs (Grafana's): elsewhere
    // it stays `value`, as materialized views (which are not rewritten) name it.
    if ONE_COLUMN_FUNCTIONS.contains(&fname.as_str()) {
        if !catalog_query {
            return;
        }
        match alias {
            Some(a) if a.columns.is_empty() => {
                a.columns = vec![ast::TableAliasColumnDef::from_name(a.name.value.clone())]
            }
            // Without an alias the column stays DataFusion's `value` (Postgres names it
            // after the function), which queries written for Freshet read.
            _ => {}
        }
        return;
    }
    if !SCALAR_IN_FROM.contains(&fname.as_str()) {
        return;
    }
    let (table, column) = match alias {
        Some(a) => (
            a.name.clone(),
            a.columns
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_else(|| a.name.clone()),
        ),
        None => (Ident::new(&fname), Ident::new(&fname)),
    };
    let call: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
    let sql = format!(
        "(SELECT {fname}({}) AS {column}) AS {table}",
        call.join(", ")
    );
    let dialect = crate::sql_dialect::FreshetDialect {};
    if let Ok(derived) = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_table_factor())
    {
        *tf = derived;
    }
}

/// Whether an expression holds a subquery (`IN (SELECT …)`, `(SELECT …)`, `EXISTS`).
fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        found |= matches!(
            x,
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
        );
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `SELECT a AS x, … FROM … ORDER BY <expr with a subquery>` (Grafana's table picker),
/// which DataFusion cannot sort by, as `SELECT x, … FROM (SELECT a AS x, …, <expr> AS
/// __freshet_sort_1 FROM …) ORDER BY __freshet_sort_1`: the subquery is then in a
/// projection, where DataFusion takes it.
fn sort_keys_out_of_subqueries(q: &mut Query) {
    let Some(order_by) = &q.order_by else {
        return;
    };
    let ast::OrderByKind::Expressions(keys) = &order_by.kind else {
        return;
    };
    if !keys.iter().any(|k| has_subquery(&k.expr)) {
        return;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return;
    };
    if s.distinct.is_some() {
        return;
    }
    let mut names = Vec::new();
    for item in &s.projection {
        let name = match item {
            SelectItem::ExprWithAlias { alias, .. } => alias.clone(),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => i.clone(),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => match p.last() {
                Some(i) => i.clone(),
                None => return,
            },
            _ => return,
        };
        names.push(Ident::with_quote('"', name.value));
    }
    let mut inner = q.clone();
    inner.order_by = None;
    inner.limit_clause = None;
    let mut outer_keys = Vec::new();
    let SetExpr::Select(si) = inner.body.as_mut() else {
        return;
    };
    for (k, key) in keys.iter().enumerate() {
        let mut key = key.clone();
        if has_subquery(&key.expr) {
            let alias = Ident::new(format!("__freshet_sort_{}", k + 1));
            si.projection.push(SelectItem::ExprWithAlias {
                expr: key.expr.clone(),
                alias: alias.clone(),
            });
            key.expr = Expr::Identifier(alias);
        }
        outer_keys.push(key.to_string());
    }
    let limit = q
        .limit_clause
        .as_ref()
        .map(|l| format!(" {l}"))
        .unwrap_or_default();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let sql = format!(
        "SELECT {} FROM ({inner}) AS __freshet_sorted ORDER BY {}{limit}",
        names.join(", "),
        outer_keys.join(", ")
    );
    let dialect = crate::sql_dialect::FreshetDialect {};
    if let Ok(rewritten) = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
    {
        *q = *rewritten;
    }
}

/// The array of `information_schema._pg_expandarray(arr)`, if `e` is that call.
fn expandarray_arg(e: &Expr) -> Option<Expr> {
    match e {
        Expr::Nested(inner) => expandarray_arg(inner),
        Expr::Function(f) if function_name(f) == "_pg_expandarray" => match &f.args {
            FunctionArguments::List(l) => match l.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(arr))] => Some(arr.clone()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// `unnest(generate_series(1, array_length(arr, 1)))`: the subscripts of `arr`, in step
/// with `unnest(arr)`.
fn subscripts(arr: Expr) -> Expr {
    let one = || Expr::value(Value::Number("1".into(), false));
    let len = call("array_length", vec![arr, one()]);
    call("unnest", vec![call("generate_series", vec![one(), len])])
}

/// Whether a statement reads `pg_catalog` or `information_schema` relations.
pub fn references_catalog(stmt: &Statement) -> bool {
    let mut found = false;
    let _ = ast::visit_relations(stmt, |name| {
        let parts = parts(name);
        found |= match parts.as_slice() {
            [schema, _] => schema == PG_CATALOG || schema == INFORMATION_SCHEMA,
            [name] => is_pg_catalog_name(name),
            _ => false,
        };
        ControlFlow::<()>::Continue(())
    });
    found
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_lowercase()
            }),
            _ => None,
        })
        .collect()
}

fn qualify(name: &mut ObjectName, user_relation: &dyn Fn(&str) -> bool) {
    let p = parts(name);
    match p.as_slice() {
        [n] if is_pg_catalog_name(n) && !user_relation(n) => {
            name.0
                .insert(0, ObjectNamePart::Identifier(Ident::new(PG_CATALOG)));
        }
        // `pg_catalog.unnest(…)`, `pg_catalog.generate_series(…)`: table functions.
        [schema, n] if schema == PG_CATALOG && super::find(PG_CATALOG, n).is_none() => {
            name.0.remove(0);
        }
        _ => {}
    }
}

/// Catalog columns Freshet never fills (options and access lists): `unnest` (or
/// `pg_options_to_table`) of one yields nothing.
const ALWAYS_NULL: &[&str] = &[
    "reloptions",
    "relacl",
    "attacl",
    "attoptions",
    "attfdwoptions",
    "datacl",
    "nspacl",
    "proacl",
    "proconfig",
    "spcacl",
    "spcoptions",
    "rolconfig",
    "useconfig",
    "ftoptions",
    "srvoptions",
    "fdwoptions",
    "srvacl",
    "fdwacl",
];

fn unnest_of_null(f: &TableFactor) -> bool {
    let TableFactor::Table {
        name,
        args: Some(args),
        ..
    } = f
    else {
        return false;
    };
    if !matches!(
        parts(name).last().map(String::as_str),
        Some("unnest" | "pg_options_to_table")
    ) {
        return false;
    }
    args.args.iter().all(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => match e {
            Expr::Identifier(i) => ALWAYS_NULL.contains(&i.value.as_str()),
            Expr::CompoundIdentifier(p) => p
                .last()
                .is_some_and(|i| ALWAYS_NULL.contains(&i.value.as_str())),
            _ => false,
        },
        _ => false,
    })
}

/// Whether relation `name` (as written in a FROM clause) is a catalog that Freshet
/// always keeps empty.
fn always_empty(name: &ObjectName) -> bool {
    match parts(name).as_slice() {
        [schema, n] => find(schema, n).is_some_and(|r| r.always_empty),
        [n] => find(PG_CATALOG, n).is_some_and(|r| r.always_empty),
        _ => false,
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_object_agg",
];

fn function_name(f: &ast::Function) -> String {
    f.name
        .0
        .last()
        .and_then(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.to_lowercase()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether a select list calls an aggregate (not counting those of its subqueries).
fn has_aggregate(s: &Select) -> bool {
    struct Finder {
        depth: usize,
        found: bool,
    }
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let (0, Expr::Function(f)) = (self.depth, e) {
                self.found |= AGGREGATES.contains(&function_name(f).as_str());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder {
        depth: 0,
        found: false,
    };
    for item in &s.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            let _ = ast::Visit::visit(e, &mut f);
        }
    }
    f.found
}

/// Whether a query returns no rows whatever the data: a plain SELECT (no aggregate
/// without GROUP BY) that joins an always-empty catalog as an inner input.
pub fn provably_empty(q: &Query) -> bool {
    set_empty(&q.body)
}

fn set_empty(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => select_empty(s),
        SetExpr::Query(q) => provably_empty(q),
        SetExpr::SetOperation {
            op, left, right, ..
        } => match op {
            ast::SetOperator::Union => set_empty(left) && set_empty(right),
            ast::SetOperator::Intersect => set_empty(left) || set_empty(right),
            ast::SetOperator::Except | ast::SetOperator::Minus => set_empty(left),
        },
        _ => false,
    }
}

fn select_empty(s: &Select) -> bool {
    if has_aggregate(s) {
        return false;
    }
    let empty_factor = |f: &TableFactor| {
        unnest_of_null(f) || matches!(f, TableFactor::Table { name, .. } if always_empty(name))
    };
    s.from.iter().any(|twj| {
        empty_factor(&twj.relation)
            || twj.joins.iter().any(|j| {
                matches!(
                    j.join_operator,
                    ast::JoinOperator::Join(_)
                        | ast::JoinOperator::Inner(_)
                        | ast::JoinOperator::CrossJoin(_)
                ) && empty_factor(&j.relation)
            })
    })
}

/// A scalar subquery's single plain projection, wrapped in `max(…)`; with `ORDER BY …
/// LIMIT 1` (Grafana's legacy time-column lookup), in `first_value(… ORDER BY …)`.
fn wrap_in_max(q: &mut Query) {
    let first_of = match (&q.limit_clause, &q.order_by) {
        (None, None) => None,
        (
            Some(ast::LimitClause::LimitOffset {
                limit: Some(Expr::Value(v)),
                offset: None,
                limit_by,
            }),
            Some(order),
        ) if limit_by.is_empty() && v.value == Value::Number("1".into(), false) => {
            match &order.kind {
                ast::OrderByKind::Expressions(keys) => Some(keys.clone()),
                _ => return,
            }
        }
        _ => return,
    };
    let SetExpr::Select(s) = q.body.as_mut() else {
        return;
    };
    if s.projection.len() != 1
        || has_aggregate(s)
        || s.distinct.is_some()
        || !matches!(s.group_by, ast::GroupByExpr::Expressions(ref e, _) if e.is_empty())
        || s.having.is_some()
        || !matches!(
            s.projection[0],
            SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
        )
    {
        return;
    }
    let (expr, alias) = match s.projection.remove(0) {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
        _ => return,
    };
    if first_of.is_some() {
        q.limit_clause = None;
        q.order_by = None;
    }
    let SetExpr::Select(s) = q.body.as_mut() else {
        return;
    };
    let wrapped = match first_of {
        None => call("max", vec![expr]),
        Some(keys) => {
            let mut f = call("first_value", vec![expr]);
            if let Expr::Function(ast::Function {
                args: FunctionArguments::List(l),
                ..
            }) = &mut f
            {
                l.clauses.push(ast::FunctionArgumentClause::OrderBy(keys));
            }
            f
        }
    };
    s.projection.push(match alias {
        Some(alias) => SelectItem::ExprWithAlias {
            expr: wrapped,
            alias,
        },
        None => SelectItem::UnnamedExpr(wrapped),
    });
}

/// A call of function `name` on `args`.
pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The `reg*` type a cast is to, if it is one.
fn reg_kind(t: &DataType) -> Option<&'static str> {
    if matches!(t, DataType::Regclass) {
        return Some("regclass");
    }
    let DataType::Custom(name, _) = t else {
        return None;
    };
    match parts(name).last().map(String::as_str) {
        Some("regclass") => Some("regclass"),
        Some("regtype") => Some("regtype"),
        Some("regnamespace") => Some("regnamespace"),
        Some("regrole") => Some("regrole"),
        Some("regproc") | Some("regprocedure") => Some("regproc"),
        _ => None,
    }
}

/// `pg_catalog.`-qualified and Postgres-only type names → the types DataFusion knows.
fn plain_type(t: &DataType) -> Option<DataType> {
    let DataType::Custom(name, mods) = t else {
        return None;
    };
    let p = parts(name);
    let last = p.last()?.as_str();
    Some(match last {
        // A path is read by the functions that take it (`crate::jsonpath`).
        "text" | "name" | "char" | "bpchar" | "varchar" | "jsonpath" => DataType::Text,
        "oid" | "xid" | "cid" => DataType::IntUnsigned(None),
        "int2" | "smallint" => DataType::SmallInt(None),
        "int4" | "integer" | "int" => DataType::Int(None),
        "int8" | "bigint" => DataType::BigInt(None),
        "bool" | "boolean" => DataType::Boolean,
        "float4" => DataType::Real,
        "float8" => DataType::DoublePrecision,
        "numeric" if mods.is_empty() => DataType::Numeric(ast::ExactNumberInfo::None),
        "int2vector" => DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(DataType::SmallInt(None)),
            None,
        )),
        "oidvector" => DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(DataType::IntUnsigned(None)),
            None,
        )),
        _ if p.len() == 2 && p[0] == PG_CATALOG => DataType::Custom(
            ObjectName(vec![ObjectNamePart::Identifier(Ident::new(last))]),
            mods.clone(),
        ),
        _ => return None,
    })
}

fn is_text_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::String(_)
    ) || matches!(plain_type(t), Some(DataType::Text))
}

/// Whether an expression is a literal or parameter (a `reg*` input to look up), as
/// opposed to an OID-valued expression.
fn is_input(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => !matches!(v.value, Value::Number(..) | Value::Null | Value::Boolean(_)),
        Expr::Nested(e) => is_input(e),
        Expr::Cast {
            expr, data_type, ..
        } => is_text_type(data_type) && is_input(expr),
        _ => false,
    }
}

struct Rewriter {
    catalog_query: bool,
    /// The statement calls `_pg_expandarray`: `(record).x` reads its element.
    expands_arrays: bool,
}

impl Rewriter {
    /// `expr::reg*`, in a place where its value is used as an OID.
    fn reg_value(&self, kind: &str, expr: Expr) -> Expr {
        if is_input(&expr) {
            return call(&format!("freshet_{kind}_in"), vec![expr]);
        }
        cast(expr, DataType::IntUnsigned(None))
    }

    /// `expr::reg*` where it is shown: the name.
    fn reg_name(&self, kind: &str, expr: Expr) -> Expr {
        let oid = self.reg_value(kind, expr);
        match kind {
            "regproc" => cast(oid, DataType::Text),
            _ => call(&format!("freshet_{kind}_out"), vec![oid]),
        }
    }
}

fn cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    }
}

/// Splits `expr::reg*` into the kind and the operand.
fn as_reg_cast(e: &Expr) -> Option<(&'static str, &Expr)> {
    match e {
        Expr::Cast {
            expr, data_type, ..
        } => reg_kind(data_type).map(|k| (k, expr.as_ref())),
        Expr::Nested(e) => as_reg_cast(e),
        _ => None,
    }
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if self.catalog_query {
            sort_keys_out_of_subqueries(q);
        }
        // A select list shows `reg*` values as names, and `EXISTS` there becomes an
        // aggregate subquery, which DataFusion decorrelates (it does `EXISTS` in filters
        // only).
        if let SetExpr::Select(s) = q.body.as_mut() {
            if self.catalog_query {
                for item in s.projection.iter_mut() {
                    if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
                        item
                    {
                        let _ = ast::visit_expressions_mut(e, |x| {
                            if let Expr::Exists { subquery, negated } = x {
                                if !provably_empty(subquery) {
                                    *x = exists_as_aggregate(subquery, *negated);
                                }
                            } else if let Expr::InSubquery {
                                expr,
                                subquery,
                                negated,
                            } = x
                            {
                                if !provably_empty(subquery) {
                                    if let Some(e) = in_as_array(expr, subquery, *negated) {
                                        *x = e;
                                    }
                                }
                            }
                            ControlFlow::<()>::Continue(())
                        });
                    }
                }
            }
            for item in s.projection.iter_mut() {
                match item {
                    SelectItem::UnnamedExpr(e) => {
                        if let Some((kind, operand)) = as_reg_cast(e) {
                            let shown = self.reg_name(kind, operand.clone());
                            *item = SelectItem::ExprWithAlias {
                                expr: shown,
                                alias: Ident::new(kind),
                            };
                        }
                    }
                    SelectItem::ExprWithAlias { expr, .. } => {
                        if let Some((kind, operand)) = as_reg_cast(expr) {
                            *expr = self.reg_name(kind, operand.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        function_in_from(tf, self.catalog_query);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if self.expands_arrays {
            if let Expr::CompoundFieldAccess { root, access_chain } = e {
                let key = match access_chain.as_slice() {
                    [ast::AccessExpr::Dot(Expr::Identifier(k))] => k.value.to_lowercase(),
                    _ => String::new(),
                };
                match (expandarray_arg(root), key.as_str()) {
                    (Some(arr), "x") => *e = call("unnest", vec![arr]),
                    (Some(arr), "n") => *e = subscripts(arr),
                    (None, "x") => {
                        let mut base = std::mem::replace(root.as_mut(), Expr::value(Value::Null));
                        while let Expr::Nested(inner) = base {
                            base = *inner;
                        }
                        *e = base;
                    }
                    _ => {}
                }
                return ControlFlow::Continue(());
            }
        }
        // `x::regclass::text`: the name (before the inner cast becomes an OID).
        if let Expr::Cast {
            expr, data_type, ..
        } = e
        {
            if is_text_type(data_type) {
                if let Some((kind, operand)) = as_reg_cast(expr) {
                    *e = self.reg_name(kind, operand.clone());
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        match e {
            // `LIKE p ESCAPE '/'`: DataFusion escapes with a backslash only, so the
            // pattern is rewritten to backslash escapes.
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => {
                if let Some(esc) = escape_char.take() {
                    let c = match &esc.value {
                        Value::SingleQuotedString(c) => c.clone(),
                        other => other.to_string(),
                    };
                    if c == "\\" {
                        *escape_char = Some(esc);
                    } else {
                        let p = std::mem::replace(pattern.as_mut(), Expr::value(Value::Null));
                        **pattern = call(
                            "freshet_like_escape",
                            vec![p, Expr::value(Value::SingleQuotedString(c))],
                        );
                    }
                }
            }
            Expr::Collate { expr, .. } => {
                *e = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
            }
            Expr::BinaryOp { op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(path) = op {
                    let std_op = match path.last().map(String::as_str) {
                        Some("~") => Some(BinaryOperator::PGRegexMatch),
                        Some("~*") => Some(BinaryOperator::PGRegexIMatch),
                        Some("!~") => Some(BinaryOperator::PGRegexNotMatch),
                        Some("!~*") => Some(BinaryOperator::PGRegexNotIMatch),
                        Some("=") => Some(BinaryOperator::Eq),
                        Some("<>") | Some("!=") => Some(BinaryOperator::NotEq),
                        Some("<") => Some(BinaryOperator::Lt),
                        Some("<=") => Some(BinaryOperator::LtEq),
                        Some(">") => Some(BinaryOperator::Gt),
                        Some(">=") => Some(BinaryOperator::GtEq),
                        Some("~~") => Some(BinaryOperator::PGLikeMatch),
                        Some("||") => Some(BinaryOperator::StringConcat),
                        _ => None,
                    };
                    if let Some(o) = std_op {
                        *op = o;
                    }
                }
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                if let Some(kind) = reg_kind(data_type) {
                    *e = self.reg_value(kind, (**expr).clone());
                } else if let Some(t) = plain_type(data_type) {
                    *data_type = t;
                }
            }
            Expr::Function(f) => {
                let name = function_name(f);
                // pg_catalog.f(…) → f(…)
                if f.name.0.len() == 2 {
                    let schema = parts(&f.name).first().cloned().unwrap_or_default();
                    if schema == PG_CATALOG {
                        f.name.0.remove(0);
                    }
                }
                if matches!(f.args, FunctionArguments::None)
                    && matches!(
                        name.as_str(),
                        "current_user"
                            | "session_user"
                            | "user"
                            | "current_role"
                            | "current_catalog"
                            | "current_schema"
                    )
                {
                    let fname = if name == "user" {
                        "current_user"
                    } else {
                        &name
                    };
                    *e = call(fname, vec![]);
                } else if name == "_pg_expandarray" && self.expands_arrays {
                    if let Some(arr) = expandarray_arg(e) {
                        *e = call("unnest", vec![arr]);
                    }
                } else if name == "generate_subscripts" {
                    // In a select list, beside `unnest(arr)`: the subscripts of `arr`,
                    // unnested in step with it.
                    if let FunctionArguments::List(l) = &f.args {
                        if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arr))) =
                            l.args.first()
                        {
                            let len = call(
                                "array_length",
                                vec![arr.clone(), Expr::value(Value::Number("1".into(), false))],
                            );
                            let series = call(
                                "generate_series",
                                vec![Expr::value(Value::Number("1".into(), false)), len],
                            );
                            *e = call("unnest", vec![series]);
                        }
                    }
                } else if name == "array" {
                    if let FunctionArguments::Subquery(q) = &f.args {
                        if let Some(agg) = array_of(q) {
                            *e = agg;
                        }
                    }
                }
            }
            Expr::Subquery(q) => {
                if provably_empty(q) {
                    *e = Expr::value(Value::Null);
                } else if self.catalog_query {
                    wrap_in_max(q);
                    // A condition on the outer row alone (psql's `AND a.atthasdef`), which
                    // DataFusion cannot decorrelate, guards the subquery from outside.
                    if let Some(outer) = take_outer_conditions(q) {
                        *e = Expr::Case {
                            case_token: ast::helpers::attached_token::AttachedToken::empty(),
                            end_token: ast::helpers::attached_token::AttachedToken::empty(),
                            operand: None,
                            conditions: vec![ast::CaseWhen {
                                condition: outer,
                                result: Expr::Subquery(q.clone()),
                            }],
                            else_result: None,
                        };
                    }
                }
            }
            Expr::Exists { subquery, negated } if provably_empty(subquery) => {
                *e = Expr::value(Value::Boolean(*negated));
            }
            Expr::InSubquery {
                subquery, negated, ..
            } if provably_empty(subquery) => {
                *e = Expr::value(Value::Boolean(*negated));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The `AND`ed terms of `q`'s WHERE that read only columns qualified by a name none of
/// its relations go by (an outer row's), removed from it and joined by `AND`.
fn take_outer_conditions(q: &mut Query) -> Option<Expr> {
    let SetExpr::Select(s) = q.body.as_mut() else {
        return None;
    };
    let own: Vec<String> = s
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(|r| match r {
            TableFactor::Table { name, alias, .. } => Some(match alias {
                Some(a) => a.name.value.to_lowercase(),
                None => name.0.last()?.as_ident()?.value.to_lowercase(),
            }),
            TableFactor::Derived { alias: Some(a), .. } => Some(a.name.value.to_lowercase()),
            _ => None,
        })
        .collect();
    fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::And,
                right,
            } => {
                conjuncts(*left, out);
                conjuncts(*right, out);
            }
            other => out.push(other),
        }
    }
    let outer_only = |e: &Expr| {
        let (mut outer, mut other) = (false, false);
        let _ = ast::visit_expressions(e, |x| {
            match x {
                // `rel.col` or `schema.rel.col` (SQLAlchemy writes the latter).
                Expr::CompoundIdentifier(p) if p.len() >= 2 => {
                    if own.contains(&p[p.len() - 2].value.to_lowercase()) {
                        other = true;
                    } else {
                        outer = true;
                    }
                }
                Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } => other = true,
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        outer && !other
    };
    let mut terms = Vec::new();
    conjuncts(s.selection.take()?, &mut terms);
    let (outer, inner): (Vec<Expr>, Vec<Expr>) = terms.into_iter().partition(|t| outer_only(t));
    let and = |terms: Vec<Expr>| {
        terms.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::And,
            right: Box::new(b),
        })
    };
    s.selection = and(inner);
    and(outer)
}

/// `[NOT] EXISTS (SELECT … FROM … WHERE …)` as
/// `coalesce((SELECT max(true) FROM … WHERE …), false) [= false]`.
fn exists_as_aggregate(q: &Query, negated: bool) -> Expr {
    let mut q = q.clone();
    if let SetExpr::Select(s) = q.body.as_mut() {
        s.projection = vec![SelectItem::UnnamedExpr(call(
            "max",
            vec![Expr::value(Value::Boolean(true))],
        ))];
    }
    let found = call(
        "coalesce",
        vec![
            Expr::Subquery(Box::new(q)),
            Expr::value(Value::Boolean(false)),
        ],
    );
    if negated {
        Expr::BinaryOp {
            left: Box::new(found),
            op: BinaryOperator::Eq,
            right: Box::new(Expr::value(Value::Boolean(false))),
        }
    } else {
        found
    }
}

/// `x [NOT] IN (SELECT y FROM …)` in a select list (which DataFusion plans in filters
/// only) as `coalesce(array_has((SELECT array_agg(y) FROM …), x), false)` [`= false`].
fn in_as_array(x: &Expr, q: &Query, negated: bool) -> Option<Expr> {
    let agg = array_of(q)?;
    let found = call(
        "coalesce",
        vec![
            call("array_has", vec![agg, x.clone()]),
            Expr::value(Value::Boolean(false)),
        ],
    );
    Some(if negated {
        Expr::BinaryOp {
            left: Box::new(found),
            op: BinaryOperator::Eq,
            right: Box::new(Expr::value(Value::Boolean(false))),
        }
    } else {
        found
    })
}

/// An empty `text[]`: `ARRAY()` over no rows is `{}`, not NULL.
fn empty_text_array() -> Expr {
    cast(
        call("make_array", vec![]),
        DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(DataType::Text),
            None,
        )),
    )
}

/// `ARRAY(SELECT x FROM …)` as `coalesce((SELECT array_agg(x) FROM …), '{}')`.
fn array_of(q: &Query) -> Option<Expr> {
    if provably_empty(q) {
        return Some(empty_text_array());
    }
    let mut q = q.clone();
    let order = q.order_by.take();
    let SetExpr::Select(s) = q.body.as_mut() else {
        return None;
    };
    if s.projection.len() != 1 || has_aggregate(s) {
        return None;
    }
    let item = s.projection.remove(0);
    let x = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    let mut agg = call("array_agg", vec![x]);
    if let (Expr::Function(f), Some(order)) = (&mut agg, order) {
        if let (FunctionArguments::List(l), ast::OrderByKind::Expressions(exprs)) =
            (&mut f.args, order.kind)
        {
            l.clauses.push(ast::FunctionArgumentClause::OrderBy(exprs));
        }
    }
    s.projection.push(SelectItem::UnnamedExpr(agg));
    Some(call(
        "coalesce",
        vec![Expr::Subquery(Box::new(q)), call("make_array", vec![])],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_dialect::FreshetDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rw(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&FreshetDialect {}, sql).expect("parse");
        let mut s = stmts.remove(0);
        rewrite(&mut s, &|n| n == "mine");
        s.to_string()
    }

    #[test]
    fn tools_set_returning_idioms() {
        assert_eq!(
            rw("SELECT (information_schema._pg_expandarray(i.indkey)).n AS k, information_schema._pg_expandarray(i.indkey) AS keys FROM pg_index i"),
            "SELECT unnest(generate_series(1, array_length(i.indkey, 1))) AS k, unnest(i.indkey) AS keys FROM pg_catalog.pg_index i"
        );
        assert_eq!(
            rw("SELECT * FROM (SELECT information_schema._pg_expandarray(i.indkey) AS keys FROM pg_index i) r WHERE 1 = (r.keys).x"),
            "SELECT * FROM (SELECT unnest(i.indkey) AS keys FROM pg_catalog.pg_index i) r WHERE 1 = r.keys"
        );
        // Over the catalogs (Grafana's search-path list) the alias names the column.
        assert_eq!(
            rw("SELECT s[i] FROM pg_namespace, generate_series(1, 2) AS i"),
            "SELECT s[i] FROM pg_catalog.pg_namespace, generate_series(1, 2) AS i (i)"
        );
        assert_eq!(
            rw("SELECT s[i] FROM generate_series(1, 2) AS i, string_to_array(current_setting('search_path'), ',') s"),
            "SELECT s[i] FROM generate_series(1, 2) AS i, (SELECT string_to_array(current_setting('search_path'), ',') AS s) AS s"
        );
    }

    #[test]
    fn postgres_spellings_become_datafusion_ones() {
        assert_eq!(
            rw("SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$'"
        );
        assert_eq!(
            rw("SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_attribute a"),
            "SELECT format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a"
        );
        // A user's relation keeps its name.
        assert_eq!(rw("SELECT * FROM mine"), "SELECT * FROM mine");
        assert_eq!(rw("SELECT current_user"), "SELECT current_user()");
    }

    #[test]
    fn reg_casts_are_oids_in_conditions_and_names_when_shown() {
        assert_eq!(
            rw("SELECT c.oid::pg_catalog.regclass FROM pg_class c WHERE c.oid = 'public.t'::regclass"),
            "SELECT freshet_regclass_out(CAST(c.oid AS INT UNSIGNED)) AS regclass FROM pg_catalog.pg_class c WHERE c.oid = freshet_regclass_in('public.t')"
        );
        assert_eq!(
            rw("SELECT 1 FROM pg_class c ORDER BY c.oid::pg_catalog.regclass::pg_catalog.text"),
            "SELECT 1 FROM pg_catalog.pg_class c ORDER BY freshet_regclass_out(CAST(c.oid AS INT UNSIGNED))"
        );
    }

    #[test]
    fn subqueries_over_always_empty_catalogs_are_their_results() {
        assert_eq!(
            rw("SELECT (SELECT t.tgname FROM pg_catalog.pg_trigger t WHERE t.tgrelid = a.attrelid), EXISTS (SELECT 1 FROM pg_trigger t) FROM pg_attribute a"),
            "SELECT NULL, false FROM pg_catalog.pg_attribute a"
        );
        assert_eq!(
            rw("SELECT (SELECT pg_catalog.pg_get_expr(pg_catalog.pg_attrdef.adbin, pg_catalog.pg_attrdef.adrelid) FROM pg_catalog.pg_attrdef WHERE pg_catalog.pg_attribute.atthasdef AND pg_catalog.pg_attrdef.adrelid = pg_catalog.pg_attribute.attrelid) FROM pg_catalog.pg_attribute"),
            "SELECT CASE WHEN pg_catalog.pg_attribute.atthasdef THEN (SELECT max(pg_get_expr(pg_catalog.pg_attrdef.adbin, pg_catalog.pg_attrdef.adrelid)) FROM pg_catalog.pg_attrdef WHERE pg_catalog.pg_attrdef.adrelid = pg_catalog.pg_attribute.attrelid) END FROM pg_catalog.pg_attribute"
        );
        // A condition on the outer row alone guards the subquery from outside (psql's
        // column defaults).
        assert_eq!(
            rw("SELECT (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND a.atthasdef) FROM pg_attribute a"),
            "SELECT CASE WHEN a.atthasdef THEN (SELECT max(d.adbin) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) END FROM pg_catalog.pg_attribute a"
        );
        // Over a catalog with rows, a correlated scalar subquery becomes an aggregate.
        assert_eq!(
            rw("SELECT (SELECT t.typcollation FROM pg_type t WHERE t.oid = a.atttypid) FROM pg_attribute a"),
            "SELECT (SELECT max(t.typcollation) FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) FROM pg_catalog.pg_attribute a"
        );
    }
}
