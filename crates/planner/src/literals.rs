//! Literals and calls Postgres reads that DataFusion does not, rewritten when a statement
//! is parsed (so queries, views, sinks and DML all see the same value):
//!
//! - a timestamp without seconds (`TIMESTAMP '2024-01-01 10:00'`,
//!   `'2024-01-01 10:00'::timestamptz`) gets `:00`: Postgres reads it as that minute,
//!   DataFusion refused it;
//! - `date_trunc('decade' | 'century' | 'millennium', t)`: the year truncated, less the
//!   years since the decade (century, millennium) began, Postgres' centuries and
//!   millennia beginning with a year 1 (`2001-01-01` for both, of 2024);
//!
//! A string that becomes a timestamp only by its place (a value inserted into a timestamp
//! column, `WHERE at > '2024-01-01 10:00'`) is cast by type coercion, after parsing:
//! [`TimestampStrings`], an analyzer rule, completes those casts' strings the same way.

use std::ops::ControlFlow;

use crate::sqlparser::ast::{
    visit_expressions_mut, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
    VisitMut,
};
use crate::PlannerError;

use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

/// `strings` as they are to be cast to `to`: if that is a timestamp and they are text,
/// each completed as a timestamp literal is (`with_seconds`), if an interval, in units
/// Arrow reads (`crate::interval_input`); else `strings` itself. For the casts DML, COPY
/// and parameters make themselves.
pub fn timestamp_strings(
    strings: &datafusion::arrow::array::ArrayRef,
    to: &ArrowType,
) -> datafusion::arrow::array::ArrayRef {
    use datafusion::arrow::array::{Array, StringArray};
    if !matches!(to, ArrowType::Timestamp(..) | ArrowType::Interval(_)) {
        return strings.clone();
    }
    let Some(text) = strings.as_any().downcast_ref::<StringArray>() else {
        return strings.clone();
    };
    let naive = matches!(to, ArrowType::Timestamp(_, None));
    let interval = matches!(to, ArrowType::Interval(_));
    let fix = |s: &str| -> Option<String> {
        if interval {
            return crate::interval_input::arrow_text(s);
        }
        let stripped = if naive { without_zone(s) } else { None };
        let s2 = stripped.as_deref().unwrap_or(s);
        with_seconds(s2).or(stripped)
    };
    if !text.iter().flatten().any(|s| fix(s).is_some()) {
        return strings.clone();
    }
    let completed: StringArray = text
        .iter()
        .map(|s| s.map(|s| fix(s).unwrap_or_else(|| s.to_string())))
        .collect();
    std::sync::Arc::new(completed)
}

/// Completes the strings cast to timestamps in a plan (see the module documentation);
/// from dialect level 6 on, a string cast to a `timestamp` (without time zone) loses
/// the zone after its time, which Postgres ignores there (`'… 10:00+02'::timestamp` is
/// 10:00).
#[derive(Debug)]
pub struct TimestampStrings {
    pub level: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl AnalyzerRule for TimestampStrings {
    fn analyze(
        &self,
        plan: LogicalPlan,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let naive_zones = self.level.load(std::sync::atomic::Ordering::SeqCst) >= 6;
            plan.map_expressions(|e| {
                e.transform_up(|e| Ok(complete_timestamp_string(e, naive_zones)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "freshet_timestamp_strings"
    }
}

/// `e` with its string completed, if it casts a string literal to a timestamp.
fn complete_timestamp_string(e: LogicalExpr, naive_zones: bool) -> Transformed<LogicalExpr> {
    let fixed = |inner: &LogicalExpr, to: &ArrowType| -> Option<LogicalExpr> {
        if !matches!(to, ArrowType::Timestamp(..) | ArrowType::Interval(_)) {
            return None;
        }
        let strip = naive_zones && matches!(to, ArrowType::Timestamp(_, None));
        let LogicalExpr::Literal(v, meta) = inner else {
            return None;
        };
        let s = match v {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s,
            _ => return None,
        };
        if matches!(to, ArrowType::Interval(_)) {
            let done = crate::interval_input::arrow_text(s)?;
            return Some(LogicalExpr::Literal(
                ScalarValue::Utf8(Some(done)),
                meta.clone(),
            ));
        }
        let stripped = if strip { without_zone(s) } else { None };
        let base = stripped.as_deref().unwrap_or(s);
        let done = with_seconds(base).or(stripped)?;
        Some(LogicalExpr::Literal(
            ScalarValue::Utf8(Some(done)),
            meta.clone(),
        ))
    };
    match e {
        LogicalExpr::Cast(Cast { expr, field }) => match fixed(&expr, field.data_type()) {
            Some(lit) => Transformed::yes(LogicalExpr::Cast(Cast {
                expr: Box::new(lit),
                field,
            })),
            None => Transformed::no(LogicalExpr::Cast(Cast { expr, field })),
        },
        LogicalExpr::TryCast(TryCast { expr, field }) => match fixed(&expr, field.data_type()) {
            Some(lit) => Transformed::yes(LogicalExpr::TryCast(TryCast {
                expr: Box::new(lit),
                field,
            })),
            None => Transformed::no(LogicalExpr::TryCast(TryCast { expr, field })),
        },
        other => Transformed::no(other),
    }
}

/// `… WITH ORDINALITY` on a table function: DataFusion would drop the ordinality column
/// without a word, so it is refused.
fn refuse_ordinality<T: VisitMut>(node: &mut T) -> Result<(), PlannerError> {
    struct Ordinality;
    impl crate::sqlparser::ast::VisitorMut for Ordinality {
        type Break = String;
        fn pre_visit_table_factor(
            &mut self,
            tf: &mut crate::sqlparser::ast::TableFactor,
        ) -> ControlFlow<String> {
            use crate::sqlparser::ast::TableFactor as T;
            match tf {
                T::Table {
                    with_ordinality: true,
                    name,
                    ..
                }
                | T::Function {
                    with_ordinality: true,
                    name,
                    ..
                } => ControlFlow::Break(name.to_string()),
                T::UNNEST {
                    with_ordinality: true,
                    ..
                } => ControlFlow::Break("unnest".into()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    match node.visit(&mut Ordinality) {
        ControlFlow::Break(f) => Err(PlannerError::Unsupported(format!(
            "{f}(…) WITH ORDINALITY: number the rows with row_number() OVER () instead"
        ))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Rewrites the literals and calls of `node` (a statement or a query) in place.
pub fn normalize<T: VisitMut>(node: &mut T) -> Result<(), PlannerError> {
    refuse_ordinality(node)?;
    crate::asof::rewrite(node)?;
    crate::json_aggs::normalize(node)?;
    crate::lateral_sets::normalize(node)?;
    crate::json_sets::normalize(node);
    crate::percentile_disc::normalize(node);
    let flow = visit_expressions_mut(node, |e| {
        if let Some(rewritten) = long_date_trunc(e) {
            *e = rewritten;
            return ControlFlow::Continue(());
        }
        if let Some(call) = jsonb_cast(e) {
            *e = call;
            return ControlFlow::Continue(());
        }
        exact_floats(e);
        match e {
            Expr::TypedString(ts) if is_timestamp(&ts.data_type) => {
                with_seconds_in(&mut ts.value.value);
            }
            Expr::Cast {
                expr, data_type, ..
            } if is_timestamp(data_type) => {
                if let Expr::Value(v) = expr.as_mut() {
                    with_seconds_in(&mut v.value);
                }
            }
            // Interval text in Postgres' own forms (`'1 day 02:00:00'`, `'PT1H'`).
            Expr::Interval(iv) if iv.leading_field.is_none() && iv.last_field.is_none() => {
                if let Expr::Value(v) = iv.value.as_mut() {
                    interval_text_in(&mut v.value);
                }
            }
            Expr::Cast {
                expr,
                data_type: DataType::Interval { .. },
                ..
            } => {
                if let Expr::Value(v) = expr.as_mut() {
                    interval_text_in(&mut v.value);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Number literals as doubles where `numeric` cannot take them: a number cast to a
/// floating-point type is read as one from its text (`1e100::float8` is exactly 1e100,
/// not the double nearest a 128-bit decimal), and a number no decimal literal holds
/// (`1e-200`, `1.5e300`) is a double rather than an error.
fn exact_floats(e: &mut Expr) {
    let as_text = |v: &mut crate::sqlparser::ast::ValueWithSpan| {
        if let Value::Number(n, _) = &v.value {
            v.value = Value::SingleQuotedString(n.clone());
        }
    };
    match e {
        Expr::Cast {
            expr, data_type, ..
        } if is_float(data_type) => {
            if let Expr::Value(v) = expr.as_mut() {
                as_text(v);
            }
        }
        Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if !fits_decimal(n)) => {
            let mut text = v.clone();
            as_text(&mut text);
            *e = Expr::Cast {
                kind: crate::sqlparser::ast::CastKind::Cast,
                expr: Box::new(Expr::Value(text)),
                data_type: DataType::DoublePrecision,
                array: false,
                format: None,
            };
        }
        _ => {}
    }
}

fn is_float(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Double(_)
            | DataType::DoublePrecision
            | DataType::Float8
            | DataType::Float4
            | DataType::Float64
            | DataType::Float32
            | DataType::Real
            | DataType::Float(_)
    )
}

/// Whether number literal `n` (`1.5`, `1e-5`, `12E+3`) is within what a decimal literal
/// takes: its exact expansion has at most 76 fractional digits, and a scale no lower
/// than -100 (`1e100`).
fn fits_decimal(n: &str) -> bool {
    let Some((mantissa, exponent)) = n.split_once(['e', 'E']) else {
        return true;
    };
    let Ok(exponent) = exponent.parse::<i64>() else {
        return true;
    };
    let fraction = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i64);
    (-100..=76).contains(&(fraction - exponent))
}

/// `date_trunc` to a decade, century or millennium, as a truncation to the year less
/// the years since it began (see the module documentation).
fn long_date_trunc(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.0.last()?.as_ident()?;
    if !name.value.eq_ignore_ascii_case("date_trunc") || f.name.0.len() > 2 {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(unit)), FunctionArg::Unnamed(FunctionArgExpr::Expr(t))] =
        list.args.as_slice()
    else {
        return None;
    };
    let Expr::Value(v) = unit else {
        return None;
    };
    let Value::SingleQuotedString(unit) = &v.value else {
        return None;
    };
    // The years since the period began: decades begin with a year ending in 0, centuries
    // and millennia with one ending in 1.
    let since = match unit.to_ascii_lowercase().as_str() {
        "decade" | "decades" => "(date_part('year', {t}) % 10)",
        "century" | "centuries" => "((date_part('year', {t}) - 1) % 100)",
        "millennium" | "millennia" => "((date_part('year', {t}) - 1) % 1000)",
        _ => return None,
    };
    let text = format!("date_trunc('year', {{t}}) - INTERVAL '1 year' * {since}")
        .replace("{t}", &format!("({t})"));
    let dialect = crate::sql_dialect::FreshetDialect {};
    crate::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `x::jsonb`, `CAST(x AS JSONB)`, `JSONB '…'` (and `json`) as a call of
/// [`crate::jsonb::CAST_FUNCTION`], which reads and normalizes the text.
fn jsonb_cast(e: &Expr) -> Option<Expr> {
    let is_json = |t: &DataType| matches!(t, DataType::JSONB | DataType::JSON);
    let arg = match e {
        Expr::Cast {
            expr, data_type, ..
        } if is_json(data_type) => expr.as_ref().clone(),
        Expr::TypedString(ts) if is_json(&ts.data_type) => Expr::Value(ts.value.clone()),
        _ => return None,
    };
    let dialect = crate::sql_dialect::FreshetDialect {};
    let mut call = crate::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&format!("{}(NULL)", crate::jsonb::CAST_FUNCTION))
        .and_then(|mut p| p.parse_expr())
        .ok()?;
    if let Expr::Function(f) = &mut call {
        if let FunctionArguments::List(list) = &mut f.args {
            list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))];
        }
    }
    Some(call)
}

fn is_timestamp(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::TimestampNtz(..) | DataType::Datetime(_)
    )
}

fn interval_text_in(v: &mut Value) {
    if let Value::SingleQuotedString(s) = v {
        if let Some(fixed) = crate::interval_input::arrow_text(s) {
            *s = fixed;
        }
    }
}

fn with_seconds_in(v: &mut Value) {
    if let Value::SingleQuotedString(s) = v {
        if let Some(fixed) = with_seconds(s) {
            *s = fixed;
        }
    }
}

/// `s` as DataFusion reads it, if it is a date and a time of day that Postgres reads and
/// DataFusion does not: without seconds (`YYYY-MM-DD HH:MM` gets `:00`) or with a
/// one-digit hour (`9:05` becomes `09:05`); `T` may stand for the space and a zone may
/// follow. `None` if it needs nothing.
pub(crate) fn with_seconds(s: &str) -> Option<String> {
    let b = s.trim_start().as_bytes();
    let lead = s.len() - b.len();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let dashes = b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-');
    if !(digits(0..4) && digits(5..7) && digits(8..10) && dashes) {
        return None;
    }
    if !matches!(b.get(10), Some(b' ' | b'T' | b't')) {
        return None;
    }
    let colon = (12..14).find(|&i| b.get(i) == Some(&b':'))?;
    if !digits(11..colon) || !digits(colon + 1..colon + 3) {
        return None;
    }
    let end = colon + 3;
    let seconds = match b.get(end) {
        Some(b':') => true,
        // A digit of something else: left alone.
        Some(c) if c.is_ascii_digit() || *c == b'.' => return None,
        _ => false,
    };
    if seconds && colon == 13 {
        return None;
    }
    let hour = if colon == 12 { "0" } else { "" };
    let (at, end) = (lead + 11, lead + end);
    let tail = if seconds { "" } else { ":00" };
    Some(format!(
        "{}{hour}{}{tail}{}",
        &s[..at],
        &s[at..end],
        &s[end..]
    ))
}

/// `s` without the time zone after its time of day (`+02`, `-05:30`, `+0530`, `Z`,
/// ` UTC`), if it is a date and time with one: a `timestamp` (without time zone) ignores
/// the zone, as Postgres does. `None` if there is none.
pub(crate) fn without_zone(s: &str) -> Option<String> {
    let t = s.trim();
    let b = t.as_bytes();
    let date = b.len() > 11
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b' ' | b'T' | b't');
    if !date {
        return None;
    }
    // The time of day: digits, colons and a fraction.
    let end = 11
        + b[11..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || matches!(c, b':' | b'.'))
            .count();
    if end == 11 || !b[11..end].contains(&b':') {
        return None;
    }
    let zone = t[end..].trim();
    let upper = zone.to_ascii_uppercase();
    let numeric = |z: &str| {
        let digits: String = z.chars().filter(|c| *c != ':').collect();
        !digits.is_empty() && digits.len() <= 6 && digits.chars().all(|c| c.is_ascii_digit())
    };
    let is_zone = matches!(upper.as_str(), "Z" | "UTC" | "GMT")
        || zone.strip_prefix(['+', '-']).is_some_and(numeric);
    is_zone.then(|| t[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_of_naive_timestamps_go() {
        assert_eq!(
            without_zone("2024-03-05 10:00:00+02").as_deref(),
            Some("2024-03-05 10:00:00")
        );
        assert_eq!(
            without_zone("2024-03-05T10:00:00.5-05:30").as_deref(),
            Some("2024-03-05T10:00:00.5")
        );
        assert_eq!(
            without_zone("2024-03-05 10:00 Z").as_deref(),
            Some("2024-03-05 10:00")
        );
        assert_eq!(without_zone("2024-03-05 10:00:00"), None);
        assert_eq!(without_zone("2024-03-05"), None);
        assert_eq!(without_zone("2024-03-05 10:00 Europe/Paris"), None);
    }

    #[test]
    fn minutes_get_seconds() {
        assert_eq!(
            with_seconds("2024-01-01 10:00").as_deref(),
            Some("2024-01-01 10:00:00")
        );
        assert_eq!(
            with_seconds("2024-01-01T9:05").as_deref(),
            Some("2024-01-01T09:05:00")
        );
        assert_eq!(
            with_seconds(" 2024-01-01 9:05:07.5").as_deref(),
            Some(" 2024-01-01 09:05:07.5")
        );
        assert_eq!(
            with_seconds("2024-01-01 10:00+02").as_deref(),
            Some("2024-01-01 10:00:00+02")
        );
        assert_eq!(
            with_seconds("2024-01-01 10:00 UTC").as_deref(),
            Some("2024-01-01 10:00:00 UTC")
        );
        assert_eq!(with_seconds("2024-01-01 10:00:30"), None);
        assert_eq!(with_seconds("2024-01-01 10:00:30.5"), None);
        assert_eq!(with_seconds("2024-01-01"), None);
        assert_eq!(with_seconds("2024-01-01 10"), None);
        assert_eq!(with_seconds("now"), None);
        assert_eq!(with_seconds("2024-01-01 10:0"), None);
    }

    fn normalized(sql: &str) -> Result<String, PlannerError> {
        let dialect = crate::sql_dialect::FreshetDialect {};
        let mut stmts = crate::sqlparser::parser::Parser::parse_sql(&dialect, sql).expect("parses");
        normalize(&mut stmts[0])?;
        Ok(stmts[0].to_string())
    }

    #[test]
    fn long_periods_truncate_to_years() {
        assert_eq!(
            normalized("SELECT date_trunc('century', ts) FROM t").unwrap(),
            "SELECT date_trunc('year', (ts)) - INTERVAL '1 year' * ((date_part('year', (ts)) - 1) % 100) FROM t"
        );
        // Other units stay.
        assert_eq!(
            normalized("SELECT date_trunc('week', ts) FROM t").unwrap(),
            "SELECT date_trunc('week', ts) FROM t"
        );
    }
}
