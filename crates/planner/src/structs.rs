//! `STRUCT` values at the SQL level, where DataFusion reads them differently from
//! Postgres and RisingWave:
//! - a field access `(s).f` names the field by an identifier, which DataFusion takes only
//!   as a string (`(s).'f'`): [`field_names`] rewrites it, folding the name as Postgres
//!   folds identifiers;
//! - a record's text (`'(ann,30)'`) written into a struct column by `INSERT … VALUES` or
//!   `UPDATE … SET`: DataFusion refuses to cast text to a struct before the analyzer
//!   could read it, so [`record_texts`] casts such literals explicitly to the column's
//!   type (which `pg_input::PgTextInput` then reads as `record_in` does).

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;

use crate::pg_catalog::rewrite::call;
use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{
    AccessExpr, AssignmentTarget, Expr, SetExpr, Statement, TableFactor, TableObject, Value,
    ValueWithSpan,
};
use crate::sqlparser::parser::Parser;

/// Rewrites `(s).f` into the string access DataFusion plans (`get_field(s, 'f')`), and
/// a row constructor cast to a struct type (`CAST(ROW(…) AS STRUCT<…>)`) into one with
/// the type's field names.
pub fn field_names(stmt: &mut Statement) {
    let _ = crate::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
        {
            if let Ok(t) = crate::catalog::SqlType::from_ast(data_type) {
                let t = t.to_arrow();
                if holds_struct(&t) {
                    fit(expr, &t);
                }
            }
        }
        // (`a.b[1]`, a column's subscript, is a compound identifier DataFusion reads
        // itself.)
        if let Expr::CompoundFieldAccess { root, access_chain } = e {
            if matches!(
                root.as_ref(),
                Expr::Identifier(_) | Expr::CompoundIdentifier(_)
            ) {
                return ControlFlow::Continue(());
            }
            let chain = std::mem::take(access_chain);
            for access in chain {
                match access {
                    AccessExpr::Dot(Expr::Identifier(id)) => {
                        access_chain.push(dot(crate::naming::ident_name(&id)))
                    }
                    AccessExpr::Dot(Expr::CompoundIdentifier(ids)) => {
                        access_chain.extend(ids.iter().map(|id| dot(crate::naming::ident_name(id))))
                    }
                    // A field named like a niladic function (`user`, `current_date`).
                    AccessExpr::Dot(Expr::Function(f))
                        if matches!(f.args, crate::sqlparser::ast::FunctionArguments::None)
                            && f.name.0.len() == 1 =>
                    {
                        match f.name.0[0].as_ident() {
                            Some(id) => access_chain.push(dot(crate::naming::ident_name(id))),
                            None => access_chain.push(AccessExpr::Dot(Expr::Function(f))),
                        }
                    }
                    other => access_chain.push(other),
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn dot(name: String) -> AccessExpr {
    AccessExpr::Dot(Expr::Value(ValueWithSpan::from(Value::SingleQuotedString(
        name,
    ))))
}

/// Casts string literals that `INSERT … VALUES` or `UPDATE … SET` writes into struct
/// columns (or arrays of structs) to the column's type.
pub async fn record_texts(ctx: &SessionContext, stmt: &mut Statement) {
    match stmt {
        Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return;
            };
            let Some(schema) = schema_of(ctx, name).await else {
                return;
            };
            let Some(SetExpr::Values(values)) = insert.source.as_mut().map(|q| q.body.as_mut())
            else {
                return;
            };
            let targets: Vec<Option<ArrowType>> = if insert.columns.is_empty() {
                schema
                    .fields()
                    .iter()
                    .map(|f| Some(f.data_type().clone()))
                    .collect()
            } else {
                insert
                    .columns
                    .iter()
                    .map(|c| {
                        let name = crate::naming::ident_name(c.0.last()?.as_ident()?);
                        Some(schema.field_with_name(&name).ok()?.data_type().clone())
                    })
                    .collect()
            };
            for row in &mut values.rows {
                for (value, target) in row.iter_mut().zip(&targets) {
                    if let Some(t) = target {
                        fit(value, t);
                    }
                }
            }
        }
        Statement::Update(update) => {
            let TableFactor::Table { name, .. } = &update.table.relation else {
                return;
            };
            let Some(schema) = schema_of(ctx, name).await else {
                return;
            };
            for a in &mut update.assignments {
                let AssignmentTarget::ColumnName(col) = &a.target else {
                    continue;
                };
                let Some(id) = col.0.last().and_then(|p| p.as_ident()) else {
                    continue;
                };
                if let Ok(f) = schema.field_with_name(&crate::naming::ident_name(id)) {
                    fit(&mut a.value, f.data_type());
                }
            }
        }
        _ => {}
    }
}

async fn schema_of(
    ctx: &SessionContext,
    name: &crate::sqlparser::ast::ObjectName,
) -> Option<SchemaRef> {
    let name = crate::schemas::catalog_name(name)?;
    let provider = ctx
        .table_provider(crate::schemas::table_ref(&name))
        .await
        .ok()?;
    Some(provider.schema())
}

/// Fits `value` to a column of type `target` that holds structs: a row constructor
/// (`ROW(…)`, `(a, b)`) takes the field names of the column's struct (DataFusion casts
/// structs by field name, Postgres by position), an array its elements, and a string
/// literal is cast to the type.
fn fit(value: &mut Expr, target: &ArrowType) {
    match (value, target) {
        (Expr::Nested(inner), _) => fit(inner, target),
        (Expr::Array(array), ArrowType::List(f)) => {
            for e in &mut array.elem {
                fit(e, f.data_type());
            }
        }
        (e, ArrowType::Struct(fs)) => {
            if let Some(args) = row_args(e) {
                if args.len() == fs.len() {
                    let mut named = Vec::with_capacity(2 * args.len());
                    for (mut arg, f) in args.into_iter().zip(fs.iter()) {
                        fit(&mut arg, f.data_type());
                        scalar_text(&mut arg, f.data_type());
                        named.push(Expr::Value(ValueWithSpan::from(Value::SingleQuotedString(
                            f.name().clone(),
                        ))));
                        named.push(arg);
                    }
                    *e = call("named_struct", named);
                    return;
                }
            }
            cast_text(e, target);
        }
        (e, _) => cast_text(e, target),
    }
}

/// A string literal written into a struct's `bytea` or `jsonb` field, read as that
/// type's text (`'\\x0102'`, a validated document), as a column of the type reads it.
fn scalar_text(value: &mut Expr, target: &ArrowType) {
    let is_text = is_string_literal(value);
    if !is_text {
        return;
    }
    match target {
        ArrowType::Binary => {
            *value = Expr::Cast {
                kind: crate::sqlparser::ast::CastKind::DoubleColon,
                expr: Box::new(value.clone()),
                data_type: crate::sqlparser::ast::DataType::Bytea,
                array: false,
                format: None,
            }
        }
        ArrowType::LargeUtf8 => {
            *value = call(crate::jsonb::CAST_FUNCTION, vec![value.clone()]);
        }
        _ => {}
    }
}

/// The fields of a row constructor: `ROW(a, b)`, `(a, b)`, `struct(a, b)`.
fn row_args(e: &Expr) -> Option<Vec<Expr>> {
    use crate::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    match e {
        Expr::Tuple(items) => Some(items.clone()),
        Expr::Function(f) => {
            let name = f.name.0.last()?.as_ident()?.value.to_lowercase();
            if !matches!(name.as_str(), "row" | "struct") || f.name.0.len() != 1 {
                return None;
            }
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

/// `value` cast to `target` when it is a string literal and `target` holds structs.
fn cast_text(value: &mut Expr, target: &ArrowType) {
    let is_text = is_string_literal(value);
    if !holds_struct(target) || !is_text {
        return;
    }
    let Some(sql) = sql_type(target) else {
        return;
    };
    let Ok(data_type) = Parser::new(&FreshetDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_data_type())
    else {
        return;
    };
    *value = Expr::Cast {
        kind: crate::sqlparser::ast::CastKind::DoubleColon,
        expr: Box::new(value.clone()),
        data_type,
        array: false,
        format: None,
    };
}

fn is_string_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(_) | Value::EscapedStringLiteral(_),
            ..
        })
    )
}

fn holds_struct(t: &ArrowType) -> bool {
    match t {
        ArrowType::Struct(_) => true,
        ArrowType::List(f) => matches!(f.data_type(), ArrowType::Struct(_)),
        _ => false,
    }
}

/// The SQL spelling of a stored type (`STRUCT<"name" character varying, …>`).
pub fn sql_type(dt: &ArrowType) -> Option<String> {
    use crate::pg_catalog::functions::quote_ident;
    Some(match dt {
        ArrowType::Struct(fs) => format!(
            "STRUCT<{}>",
            fs.iter()
                .map(|f| Some(format!(
                    "{} {}",
                    quote_ident(f.name()),
                    sql_type(f.data_type())?
                )))
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
        ArrowType::List(f) => format!("{}[]", sql_type(f.data_type())?),
        ArrowType::Decimal128(p, s) => format!("numeric({p},{s})"),
        // DataFusion's spellings of the other stored types.
        ArrowType::Boolean => "boolean".into(),
        ArrowType::Int16 => "smallint".into(),
        ArrowType::Int32 => "int".into(),
        ArrowType::Int64 => "bigint".into(),
        ArrowType::Float32 => "real".into(),
        ArrowType::Float64 => "double".into(),
        ArrowType::Utf8 => "varchar".into(),
        ArrowType::Date32 => "date".into(),
        ArrowType::Timestamp(_, None) => "timestamp".into(),
        ArrowType::Timestamp(_, Some(_)) => "timestamptz".into(),
        ArrowType::Interval(_) => "interval".into(),
        ArrowType::Binary => "bytea".into(),
        _ => return None,
    })
}

/// Casts between struct types by position, as Postgres casts records: after type
/// coercion, a cast of `Struct(a, b)` to `Struct(x, y)` whose field names differ (a
/// `ROW(…)` compared with a column, a struct in a `UNION` or `CASE`) builds the target
/// from the source's fields in order (DataFusion casts structs by field name, and finds no
/// names in common). A NULL struct stays NULL.
#[derive(Debug)]
pub struct PositionalCasts;

impl datafusion::optimizer::AnalyzerRule for PositionalCasts {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &datafusion::common::config::ConfigOptions,
    ) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::common::tree_node::TreeNode;
        refuse_struct_min_max(&plan)?;
        plan.transform_up_with_subqueries(|plan| {
            let schema = datafusion::logical_expr::utils::merge_schema(&plan.inputs());
            plan.map_expressions(|e| e.transform_up(|e| positional(e, &schema)))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "freshet_positional_struct_casts"
    }
}

/// `min`/`max` of a struct is refused: Postgres has none, and DataFusion's compares
/// structs otherwise than their stored order.
fn refuse_struct_min_max(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> datafusion::error::Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr as DfExpr, ExprSchemable, LogicalPlan};
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Aggregate(agg) = node {
            let schema = agg.input.schema();
            for e in &agg.aggr_expr {
                e.apply(|x| {
                    if let DfExpr::AggregateFunction(f) = x {
                        let name = f.func.name();
                        if matches!(name, "min" | "max")
                            && f.params
                                .args
                                .iter()
                                .any(|a| matches!(a.get_type(schema), Ok(ArrowType::Struct(_))))
                        {
                            return Err(datafusion::error::DataFusionError::NotImplemented(
                                format!("{name}() of a struct: take it of a field ({name}((s).f))"),
                            ));
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

fn positional(
    e: datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> datafusion::error::Result<
    datafusion::common::tree_node::Transformed<datafusion::logical_expr::Expr>,
> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::expr::Cast;
    use datafusion::logical_expr::{lit, when, Expr as DfExpr, ExprSchemable};
    let DfExpr::Cast(Cast { expr, field }) = &e else {
        return Ok(Transformed::no(e));
    };
    let (ArrowType::Struct(from), ArrowType::Struct(to)) =
        (expr.get_type(schema)?, field.data_type())
    else {
        return Ok(Transformed::no(e));
    };
    // Postgres casts records of the same number of fields only (DataFusion would drop
    // or pad fields by name).
    if from.len() != to.len() {
        return Err(datafusion::error::DataFusionError::NotImplemented(format!(
            "cast of a struct of {} fields to a struct of {} fields",
            from.len(),
            to.len()
        )));
    }
    if from
        .iter()
        .zip(to.iter())
        .all(|(a, b)| a.name() == b.name())
    {
        return Ok(Transformed::no(e));
    }
    let mut args = Vec::with_capacity(2 * to.len());
    for (a, b) in from.iter().zip(to.iter()) {
        args.push(lit(b.name().as_str()));
        let value =
            datafusion::functions::core::expr_fn::get_field((**expr).clone(), a.name().as_str());
        args.push(value.cast_to(b.data_type(), schema)?);
    }
    let built = datafusion::functions::core::expr_fn::named_struct(args);
    let null = DfExpr::Literal(
        datafusion::common::ScalarValue::try_from(field.data_type())?,
        None,
    );
    Ok(Transformed::yes(
        when((**expr).clone().is_null(), null).otherwise(built)?,
    ))
}

/// The call `(s).*` is parsed as: sqlparser has no syntax for it.
pub const FIELDS_CALL: &str = "__freshet_fields";

/// `(x).*` in the token stream becomes `__freshet_fields((x))`, expanded into one column
/// per field by [`expand_fields`]. `).*` begins no other SQL.
pub fn star_fields(
    tokens: Vec<crate::sqlparser::tokenizer::TokenWithSpan>,
) -> Vec<crate::sqlparser::tokenizer::TokenWithSpan> {
    use crate::sqlparser::tokenizer::{Token, TokenWithSpan};
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let star = tokens[i].token == Token::RParen
            && tokens.get(i + 1).is_some_and(|t| t.token == Token::Period)
            && tokens.get(i + 2).is_some_and(|t| t.token == Token::Mul);
        if star {
            // The matching `(` among the tokens already out.
            let mut depth = 0usize;
            let open = (0..out.len()).rev().find(|&k| match out[k].token {
                Token::RParen => {
                    depth += 1;
                    false
                }
                Token::LParen if depth == 0 => true,
                Token::LParen => {
                    depth -= 1;
                    false
                }
                _ => false,
            });
            if let Some(open) = open {
                let call = TokenWithSpan {
                    token: Token::make_word(FIELDS_CALL, None),
                    span: out[open].span,
                };
                let paren = out[open].clone();
                out.insert(open, paren);
                out.insert(open, call);
                out.push(tokens[i].clone());
                out.push(tokens[i].clone());
                i += 3;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// `SELECT (x).* …` written back as its author wrote it (for `SHOW CREATE`).
pub fn show_star_fields(sql: &str) -> String {
    // `__freshet_fields((x))` → `(x).*`: drop the name and the outer parentheses' pair.
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(&format!("{FIELDS_CALL}(")) {
        out.push_str(&rest[..at]);
        let inner = &rest[at + FIELDS_CALL.len() + 1..];
        // The matching `)` of the call (no quotes hold parentheses in a column reference).
        let mut depth = 0usize;
        let close = inner.char_indices().find(|&(_, c)| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' if depth == 0 => true,
            ')' => {
                depth -= 1;
                false
            }
            _ => false,
        });
        let Some((close, _)) = close else {
            out.push_str(&rest[at..]);
            return out;
        };
        out.push_str(&inner[..close]);
        out.push_str(".*");
        rest = &inner[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Expands each select-list `__freshet_fields(x)` (see [`star_fields`]) into `(x).f AS f`
/// for every field `f` of `x`, a column (or a field of one) of a relation the SELECT reads.
pub async fn expand_fields(
    ctx: &SessionContext,
    stmt: &mut Statement,
) -> Result<(), crate::PlannerError> {
    use crate::sqlparser::ast::{SelectItem, TableWithJoins};
    // First each SELECT's relations and the calls it expands (the walk cannot await),
    // then their types, then the expansion, SELECT by SELECT in the same order.
    let mut wanted: Vec<(Vec<TableWithJoins>, Vec<Expr>)> = Vec::new();
    walk_selects(stmt, &mut |select| {
        let args: Vec<Expr> = select
            .projection
            .iter()
            .filter_map(|item| match item {
                // (Named by `naming` before binding: the name is not used.)
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    fields_arg(e).cloned()
                }
                _ => None,
            })
            .collect();
        wanted.push((select.from.clone(), args));
    });
    if wanted.iter().all(|(_, args)| args.is_empty()) {
        return refuse_left_calls(stmt);
    }
    let mut types: Vec<Vec<datafusion::arrow::datatypes::Fields>> = Vec::new();
    for (from, args) in &wanted {
        let mut fields = Vec::with_capacity(args.len());
        for arg in args {
            match type_in(ctx, from, arg).await? {
                ArrowType::Struct(fs) => fields.push(fs),
                _ => {
                    return Err(crate::PlannerError::Unsupported(format!(
                        "({arg}).*: {arg} is not a struct"
                    )))
                }
            }
        }
        types.push(fields);
    }
    let mut types = types.into_iter();
    walk_selects(stmt, &mut |select| {
        let mut fields = types.next().unwrap_or_default().into_iter();
        let mut items = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            let (arg, mark) = match &item {
                SelectItem::UnnamedExpr(e) => (fields_arg(e).cloned(), None),
                // In a query, `naming` marks the call: its columns get unique aliases (a
                // field may share a column's name), shown without the mark.
                SelectItem::ExprWithAlias { expr: e, alias } => (
                    fields_arg(e).cloned(),
                    alias
                        .value
                        .contains(crate::naming::MARK)
                        .then(|| alias.value.clone()),
                ),
                _ => (None, None),
            };
            let Some((arg, fs)) = arg.and_then(|arg| Some((arg, fields.next()?))) else {
                items.push(item);
                continue;
            };
            for (j, f) in fs.iter().enumerate() {
                let alias = match &mark {
                    Some(m) => format!("{}{m}.{j}", f.name()),
                    None => f.name().clone(),
                };
                items.push(SelectItem::ExprWithAlias {
                    expr: Expr::CompoundFieldAccess {
                        root: Box::new(Expr::Nested(Box::new(arg.clone()))),
                        access_chain: vec![dot(f.name().clone())],
                    },
                    alias: crate::sqlparser::ast::Ident::with_quote('"', alias),
                });
            }
        }
        select.projection = items;
    });
    refuse_left_calls(stmt)
}

/// A `(x).*` left after expansion (not in a select list) is refused.
fn refuse_left_calls(stmt: &Statement) -> Result<(), crate::PlannerError> {
    let mut left = None;
    let _ = crate::sqlparser::ast::visit_expressions(stmt, |e| {
        if let Some(arg) = fields_arg(e) {
            left = Some(arg.to_string());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    match left {
        Some(arg) => Err(crate::PlannerError::Unsupported(format!(
            "({arg}).* outside a select list"
        ))),
        None => Ok(()),
    }
}

/// Whether `e` is a `(s).*` (see [`star_fields`]).
pub fn is_fields_call(e: &Expr) -> bool {
    fields_arg(e).is_some()
}

fn fields_arg(e: &Expr) -> Option<&Expr> {
    use crate::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Expr::Function(f) = e else {
        return None;
    };
    if f.name.0.len() != 1 || f.name.0[0].as_ident()?.value != FIELDS_CALL {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Nested(inner)))] => Some(inner),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e),
        _ => None,
    }
}

/// Calls `f` on every SELECT of `stmt` (CTEs, derived tables, set operations), inner
/// ones first, always in the same order.
fn walk_selects(stmt: &mut Statement, f: &mut dyn FnMut(&mut crate::sqlparser::ast::Select)) {
    type F<'a> = &'a mut dyn FnMut(&mut crate::sqlparser::ast::Select);
    fn query(q: &mut crate::sqlparser::ast::Query, f: F) {
        if let Some(with) = &mut q.with {
            for cte in &mut with.cte_tables {
                query(&mut cte.query, f);
            }
        }
        set_expr(&mut q.body, f);
    }
    fn set_expr(s: &mut SetExpr, f: F) {
        match s {
            SetExpr::Select(select) => {
                for t in &mut select.from {
                    factor(&mut t.relation, f);
                    for j in &mut t.joins {
                        factor(&mut j.relation, f);
                    }
                }
                f(select);
            }
            SetExpr::Query(q) => query(q, f),
            SetExpr::SetOperation { left, right, .. } => {
                set_expr(left, f);
                set_expr(right, f);
            }
            _ => {}
        }
    }
    fn factor(t: &mut TableFactor, f: F) {
        if let TableFactor::Derived { subquery, .. } = t {
            query(subquery, f);
        }
    }
    match stmt {
        Statement::Query(q) => query(q, f),
        Statement::CreateView(cv) => query(&mut cv.query, f),
        Statement::Insert(i) => {
            if let Some(q) = &mut i.source {
                query(q, f);
            }
        }
        _ => {}
    }
}

/// The type of `e` (a column, `t.column`, or a field of one) in the relations of `from`.
async fn type_in(
    ctx: &SessionContext,
    from: &[crate::sqlparser::ast::TableWithJoins],
    e: &Expr,
) -> Result<ArrowType, crate::PlannerError> {
    let unsupported = || {
        crate::PlannerError::Unsupported(format!(
            "({e}).* over anything but a column of a table or view the SELECT reads"
        ))
    };
    match e {
        Expr::Nested(inner) => Box::pin(type_in(ctx, from, inner)).await,
        Expr::CompoundFieldAccess { root, access_chain } => {
            let mut t = Box::pin(type_in(ctx, from, root)).await?;
            for access in access_chain {
                let AccessExpr::Dot(Expr::Identifier(id)) = access else {
                    return Err(unsupported());
                };
                let name = crate::naming::ident_name(id);
                t = match &t {
                    ArrowType::Struct(fs) => fs
                        .iter()
                        .find(|f| f.name() == &name)
                        .map(|f| f.data_type().clone())
                        .ok_or_else(unsupported)?,
                    _ => return Err(unsupported()),
                };
            }
            Ok(t)
        }
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            let (qualifier, column) = match e {
                Expr::Identifier(id) => (None, crate::naming::ident_name(id)),
                Expr::CompoundIdentifier(ids) if ids.len() == 2 => (
                    Some(crate::naming::ident_name(&ids[0])),
                    crate::naming::ident_name(&ids[1]),
                ),
                _ => return Err(unsupported()),
            };
            for t in from {
                for relation in
                    std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation))
                {
                    let TableFactor::Table { name, alias, .. } = relation else {
                        continue;
                    };
                    let Some(key) = crate::schemas::catalog_name(name) else {
                        continue;
                    };
                    let called = match alias {
                        Some(a) => crate::naming::ident_name(&a.name),
                        None => crate::schemas::split(&key).1.to_string(),
                    };
                    if qualifier.as_ref().is_some_and(|q| q != &called) {
                        continue;
                    }
                    let Some(schema) = schema_of(ctx, name).await else {
                        continue;
                    };
                    if let Ok(f) = schema.field_with_name(&column) {
                        return Ok(f.data_type().clone());
                    }
                }
            }
            Err(unsupported())
        }
        _ => Err(unsupported()),
    }
}
