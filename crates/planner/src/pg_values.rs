//! Values as Postgres gives them, for queries clients run.
//!
//! DataFusion types every integer literal `bigint` and every fractional one `double
//! precision`; Postgres types `1` as `integer` (node-postgres and Metabase read `SELECT
//! 1` as a number only then) and `0.908` as `numeric` (so `2.5 * 2` prints `5.0`, and
//! `0.1 + 0.2` is `0.3`). For ad-hoc queries (and the values DML and `CREATE TABLE … AS`
//! write, computed as the same query computes them) Freshet follows Postgres:
//!
//! - a select-list item that is an integer literal in `integer`'s range is `integer`
//!   (inside expressions literals stay `bigint`: DataFusion's integer arithmetic wraps
//!   on overflow where Postgres raises an error, so narrower types would turn results
//!   wrong rather than failed);
//! - fractional literals are `numeric`, and a `numeric` division keeps at least 16
//!   fractional digits (DataFusion's keeps the dividend's scale plus 4: `1/3.0` would be
//!   `0.3333`);
//! - a date, time, timestamp, interval or float cast to text (`ts::text`, `'at ' || ts`,
//!   `x::text`) reads as Postgres prints it, `timestamptz` in the session's time zone
//!   ([`pg_text`]).
//!
//! Materialized views keep DataFusion's types (a view's stored state is encoded in what
//! it was planned with, and it is planned again at every start) but cast to text as
//! client queries do, in the zone of the session that created it ([`view_text_forms`],
//! [`crate::session_zone`]): a view equals its query run ad hoc there.
//!
//! [`pg_text`]: crate::pg_text

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr as DfExpr, ExprSchemable, LogicalPlan, Operator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

use crate::pg_text::{self, Zone};

use crate::sqlparser::ast::{
    CastKind, DataType, Expr, Query, SelectItem, SetExpr, Statement, UnaryOperator, Value,
    VisitMut, VisitorMut,
};

/// Makes `ctx` plan a client's query with Postgres' values (see the module's
/// documentation); `zone` is the session's time zone.
pub fn client_query(ctx: &SessionContext, zone: Zone) {
    numeric_literals(ctx);
    crate::session_zone::set(ctx, zone);
    ctx.add_analyzer_rule(Arc::new(PgValues {
        zone: crate::session_zone::handle(ctx),
        divisions: true,
        level: None,
        enabled: None,
    }));
    crate::numeric_special::run_last(ctx);
}

/// Makes `ctx` plan a materialized view's casts to text as a client's query does (in
/// its plan zone, `crate::session_zone`), so that a view and the same query run ad hoc
/// give the same text; its literals keep DataFusion's types (its state is stored in
/// them), and so do its divisions in views from before dialect level 3 (from it on they
/// are widened as in queries: a `numeric` quotient has the query's scale).
///
/// Returns the rule's switch (on): a context that plans stored views turns it off for
/// those created before these casts.
pub fn view_text_forms(ctx: &SessionContext) -> Arc<AtomicBool> {
    let on = Arc::new(AtomicBool::new(true));
    ctx.add_analyzer_rule(Arc::new(PgValues {
        zone: crate::session_zone::handle(ctx),
        divisions: false,
        level: ctx
            .state()
            .config()
            .get_extension::<crate::dialect::Level>()
            .map(|l| l.handle()),
        enabled: Some(on.clone()),
    }));
    crate::numeric_special::run_last(ctx);
    on
}

/// Makes `ctx` plan fractional literals as `numeric` (Decimal128).
fn numeric_literals(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let mut state = state.write();
    state
        .config_mut()
        .options_mut()
        .sql_parser
        .parse_float_as_decimal = true;
}

/// Types the integer literals that are whole select-list items as `integer` (see the
/// module's documentation). Run after the result columns are named.
pub fn int4_select_literals(stmt: &mut Statement) {
    if let Statement::Query(q) = stmt {
        let _ = q.visit(&mut Int4Items);
    }
}

struct Int4Items;

impl VisitorMut for Int4Items {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        retype_body(q.body.as_mut());
        ControlFlow::Continue(())
    }
}

fn retype_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(s) => {
            for item in s.projection.iter_mut() {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    if fits_int4(e) {
                        let literal = std::mem::replace(e, Expr::value(Value::Null));
                        *e = Expr::Cast {
                            kind: CastKind::DoubleColon,
                            expr: Box::new(literal),
                            data_type: DataType::Integer(None),
                            array: false,
                            format: None,
                        };
                    }
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            retype_body(left);
            retype_body(right);
        }
        // Nested queries are visited on their own.
        _ => {}
    }
}

/// An integer literal (possibly negated) in `integer`'s range.
fn fits_int4(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<i32>().is_ok(),
            _ => false,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => format!("-{n}").parse::<i32>().is_ok(),
                _ => false,
            },
            _ => false,
        },
        Expr::Nested(inner) => fits_int4(inner),
        _ => false,
    }
}

/// Rewrites, after type coercion: temporal casts to text into [`PgText`], and `numeric`
/// divisions to a wider dividend.
#[derive(Debug)]
struct PgValues {
    /// The plan zone (`crate::session_zone`): `timestamptz` text is in it.
    zone: Arc<std::sync::RwLock<Zone>>,
    /// Widen `numeric` divisions (client queries).
    divisions: bool,
    /// Views: widen them from this dialect level on ([`crate::pg_aggregates::LEVEL`]).
    level: Option<Arc<std::sync::atomic::AtomicU32>>,
    /// A switch (views); `None`: always on.
    enabled: Option<Arc<AtomicBool>>,
}

impl AnalyzerRule for PgValues {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> DfResult<LogicalPlan> {
        if self
            .enabled
            .as_ref()
            .is_some_and(|on| !on.load(Ordering::SeqCst))
        {
            return Ok(plan);
        }
        let text = Arc::new(ScalarUDF::new_from_impl(PgText::new(
            crate::session_zone::read(&self.zone),
        )));
        let level = self.level.as_ref().map(|l| l.load(Ordering::SeqCst));
        let divisions = self.divisions || level.is_some_and(|l| l >= crate::pg_aggregates::LEVEL);
        // Arrays' text: in queries, and in views from dialect level 4 on.
        let arrays = self.level.is_none() || level.is_some_and(|l| l >= ARRAY_TEXT_LEVEL);
        let forms = TextForms { divisions, arrays };
        // Whether a division was widened (the only rewrite that changes a type).
        let widened = std::cell::Cell::new(false);
        plan.transform_up_with_subqueries(|plan| {
            let schema = merge_schema(&plan.inputs());
            let names = NamePreserver::new(&plan);
            let rewritten = plan.map_expressions(|e| {
                let name = names.save(&e);
                let out = e.transform_up(|e| rewrite_expr(e, &schema, &text, forms, &widened))?;
                Ok(if out.transformed {
                    out.update_data(|e| name.restore(e))
                } else {
                    out
                })
            })?;
            // Types below may have changed (a division's scale): recompute this node's.
            rewritten.map_data(|p| p.recompute_schema())
        })
        .and_then(|t| {
            // A widened division changed a type that type coercion had matched others
            // to (`1.0/3*3 = 1`, `greatest(1.0/3, 0.5)`): coerce again.
            if widened.get() {
                datafusion::optimizer::analyzer::type_coercion::TypeCoercion::new()
                    .analyze(t.data, config)
            } else {
                Ok(t.data)
            }
        })
    }

    fn name(&self) -> &str {
        "freshet_pg_values"
    }
}

fn is_text(t: &ArrowType) -> bool {
    matches!(
        t,
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
    )
}

/// The dialect level from which a view's arrays cast to text are Postgres' text.
const ARRAY_TEXT_LEVEL: u32 = 4;

/// What [`rewrite_expr`] rewrites besides dates, times, intervals and floats as text.
#[derive(Clone, Copy)]
struct TextForms {
    /// Widen `numeric` divisions.
    divisions: bool,
    /// Arrays cast to text.
    arrays: bool,
}

fn rewrite_expr(
    e: DfExpr,
    schema: &DFSchema,
    text: &Arc<ScalarUDF>,
    forms: TextForms,
    widened: &std::cell::Cell<bool>,
) -> DfResult<Transformed<DfExpr>> {
    let own_text = |t: &ArrowType| {
        pg_text::has_own_text(t)
            && (forms.arrays || !matches!(t, ArrowType::List(_) | ArrowType::LargeList(_)))
    };
    match e {
        DfExpr::Cast(Cast { expr, field }) | DfExpr::TryCast(TryCast { expr, field })
            if is_text(field.data_type()) && expr.get_type(schema).is_ok_and(|t| own_text(&t)) =>
        {
            let call = DfExpr::ScalarFunction(ScalarFunction::new_udf(text.clone(), vec![*expr]));
            let call = if field.data_type() == &ArrowType::Utf8 {
                call
            } else {
                call.cast_to(field.data_type(), schema)?
            };
            Ok(Transformed::yes(call))
        }
        DfExpr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Divide,
            right,
        }) if forms.divisions => {
            let (lt, rt) = (left.get_type(schema), right.get_type(schema));
            match (lt, rt) {
                (Ok(ArrowType::Decimal128(p, s)), Ok(ArrowType::Decimal128(_, _))) => {
                    let integer_digits = p as i16 - s as i16;
                    let scale = (s as i16).max(12).min(38 - integer_digits.max(0));
                    if scale > s as i16 {
                        widened.set(true);
                        let precision = (integer_digits + scale).clamp(1, 38) as u8;
                        let wider =
                            left.cast_to(&ArrowType::Decimal128(precision, scale as i8), schema)?;
                        return Ok(Transformed::yes(DfExpr::BinaryExpr(BinaryExpr {
                            left: Box::new(wider),
                            op: Operator::Divide,
                            right,
                        })));
                    }
                    Ok(Transformed::no(DfExpr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Divide,
                        right,
                    })))
                }
                _ => Ok(Transformed::no(DfExpr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Divide,
                    right,
                }))),
            }
        }
        other => Ok(Transformed::no(other)),
    }
}

/// `pg_text(x)`: a date/time value as Postgres prints it (see [`pg_text::temporal`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgText {
    signature: Signature,
    zone: String,
}

impl PgText {
    fn new(zone: Zone) -> PgText {
        PgText {
            // Its zone is fixed at planning: the same value gives the same text.
            signature: Signature::any(1, Volatility::Immutable),
            zone: zone.name(),
        }
    }

    fn zone(&self) -> Zone {
        Zone::parse(&self.zone).unwrap_or(Zone::Utc)
    }
}

impl ScalarUDFImpl for PgText {
    fn name(&self) -> &str {
        "pg_text"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[ArrowType]) -> DfResult<ArrowType> {
        Ok(ArrowType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let zone = self.zone();
        let scalar = matches!(args.args.first(), Some(ColumnarValue::Scalar(_)));
        let array: ArrayRef = match args.args.into_iter().next() {
            Some(ColumnarValue::Array(a)) => a,
            Some(ColumnarValue::Scalar(s)) => s.to_array()?,
            None => return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        };
        let mut out = StringBuilder::with_capacity(array.len(), array.len() * 24);
        for i in 0..array.len() {
            out.append_option(pg_text::temporal(&array, i, &zone));
        }
        let out: ArrayRef = Arc::new(out.finish());
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_dialect::FreshetDialect;
    use crate::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&FreshetDialect {}, sql)
            .unwrap()
            .remove(0);
        int4_select_literals(&mut s);
        s.to_string()
    }

    #[test]
    fn only_whole_items_in_range() {
        assert_eq!(rewritten("SELECT 1"), "SELECT 1::INTEGER");
        assert_eq!(
            rewritten("SELECT -5 AS n, 1 + 2"),
            "SELECT -5::INTEGER AS n, 1 + 2"
        );
        assert_eq!(rewritten("SELECT 3000000000"), "SELECT 3000000000");
        assert_eq!(rewritten("SELECT 1.5"), "SELECT 1.5");
        assert_eq!(
            rewritten("SELECT a FROM (SELECT 1 AS a UNION ALL SELECT 2) t ORDER BY 1 LIMIT 5"),
            "SELECT a FROM (SELECT 1::INTEGER AS a UNION ALL SELECT 2::INTEGER) t ORDER BY 1 LIMIT 5"
        );
    }
}
