//! Postgres' `numeric` NaN, Infinity and -Infinity through every expression.
//!
//! A special value is a `Decimal128` beyond 10^38 (`freshet_engine::numeric_special`):
//! compared, sorted and grouped as it is, but any computation on it would treat it as a
//! huge number. The analyzer rule [`NumericSpecials`], the last to run (after type
//! coercion and the other cast rules), gives each expression over a `numeric` Postgres'
//! meaning:
//!
//! - casts from `numeric`, and to `numeric` from text and floats, become
//!   [`NumericCast`] (`'NaN'::numeric`, `x::text`, `x::numeric(10, 2)`: an infinity only
//!   fits an unconstrained `numeric`, `22003`; `cannot convert NaN to integer`, `0A000`);
//! - `+ - * / %` become Postgres' `numeric_add` … `numeric_mod` ([`NumericArith`]):
//!   NaN in, NaN out, `Infinity - Infinity` and `Infinity * 0` are NaN, `x / Infinity` is
//!   0, a zero divisor fails but for NaN; a result beyond the type fails (`22003`) where
//!   Arrow wrapped around; unary minus keeps NaN ([`NumericNeg`]);
//! - `round`, `trunc`, `ceil`, `floor` give a special argument back ([`KeepSpecial`]);
//!   `abs`, `greatest`, `least`, `coalesce`, `nullif` and the aggregates and window
//!   functions that only compare (`min`, `max`, `count`, `first_value`, `lag` …) take them
//!   as they are;
//! - `sum` and `avg` count special inputs apart and give Postgres' result: NaN with any
//!   NaN or with both infinities, else the infinity there is
//!   ([`crate::numeric_sums::SpecialSum`]; views count them too);
//! - every other function, aggregate and window function over a `numeric` argument
//!   fails on a special value with `0A000`, naming the function ([`Finite`]), rather than
//!   compute with it. (Functions of floats see a float NaN or infinity: a `numeric`
//!   argument is cast to them.)
//!
//! From dialect level 11 on (`crate::dialect`): views from before keep their plans.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TryCast, Volatility,
};
use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
use datafusion::optimizer::AnalyzerRule;
use freshet_engine::numeric_special::{self as special, Special, SqlStateError};

use crate::numeric_sums::{is_special_sum, SpecialSum};

/// The first dialect level with numeric NaN and infinities.
pub const LEVEL: u32 = 11;

/// Functions that take a special value as it is (they only compare or pass it on).
const AS_IS: &[&str] = &[
    "abs",
    "greatest",
    "least",
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    "ifnull",
    "arrow_typeof",
    "make_array",
    "named_struct",
    "struct",
    // Text and JSON of arrays and records write a special element as Postgres does.
    "pg_text",
    "to_jsonb",
    "jsonb_build_array",
];

/// Functions whose value for a special argument is that argument.
const KEEPS: &[&str] = &[
    "round",
    "trunc",
    "ceil",
    "floor",
    crate::int_casts::INT_ROUND,
];

/// Aggregates and window functions that only compare or pass their argument on.
const AGGREGATES_AS_IS: &[&str] = &[
    "min",
    "max",
    "count",
    "first_value",
    "last_value",
    "nth_value",
    "lag",
    "lead",
    "array_agg",
    "any_value",
    "approx_distinct",
    "approx_count_distinct",
    "percentile_disc",
];

/// Aggregates that count special inputs apart ([`SpecialSum`]).
const SUMS: &[&str] = &["sum", "avg", "mean"];

/// Whether a view's `sum`/`avg` call `func` counts special inputs apart (as
/// [`SpecialSum`] does in queries).
pub fn counts_specials(func: &datafusion::logical_expr::AggregateUDF) -> bool {
    is_special_sum(func)
}

/// The analyzer rule (see the module); it runs after type coercion and the other cast
/// rules, [`crate::pg_values`]' included.
#[derive(Debug)]
pub struct NumericSpecials {
    level: Arc<AtomicU32>,
    /// Set when a later copy of the rule runs instead (see [`run_last`]).
    deferred: Option<Arc<AtomicBool>>,
}

/// A context's switch that hands the rule on to the copy [`run_last`] adds.
#[derive(Debug, Default)]
pub struct Deferral(Arc<AtomicBool>);

impl NumericSpecials {
    /// The rule for a context whose dialect level is `level` and config carries the
    /// [`Deferral`] `deferral`.
    pub fn new(level: Arc<AtomicU32>, deferral: &Deferral) -> Self {
        NumericSpecials {
            level,
            deferred: Some(deferral.0.clone()),
        }
    }
}

/// Makes the rule run after the rules added to `ctx` so far (the ones that rewrite
/// divisions and text casts for clients and views): a copy is added, and the one
/// `crate::context` registered stands down.
pub fn run_last(ctx: &datafusion::prelude::SessionContext) {
    let Some(deferral) = ctx.state().config().get_extension::<Deferral>() else {
        return;
    };
    deferral.0.store(true, Ordering::SeqCst);
    ctx.add_analyzer_rule(Arc::new(NumericSpecials {
        level: crate::dialect::handle(ctx),
        deferred: None,
    }));
}

fn is_numeric(t: &DataType) -> bool {
    matches!(t, DataType::Decimal128(..))
}

/// Whether `t` is a `numeric` or holds one (an array's elements, a record's fields).
fn holds_numeric(t: &DataType) -> bool {
    match t {
        DataType::Decimal128(..) => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            holds_numeric(f.data_type())
        }
        DataType::Struct(fs) => fs.iter().any(|f| holds_numeric(f.data_type())),
        DataType::Map(f, _) => holds_numeric(f.data_type()),
        _ => false,
    }
}

/// The first special value in `a` or its elements or fields, if any.
fn first_special(a: &dyn Array) -> Option<Special> {
    use datafusion::arrow::datatypes::DataType as T;
    match a.data_type() {
        T::Decimal128(..) => special::split(a.as_primitive::<Decimal128Type>())
            .and_then(|(s, _)| s.into_iter().flatten().next()),
        T::List(_) => first_special(a.as_list::<i32>().values().as_ref()),
        T::LargeList(_) => first_special(a.as_list::<i64>().values().as_ref()),
        T::FixedSizeList(..) => first_special(a.as_fixed_size_list().values().as_ref()),
        T::Struct(_) => a
            .as_struct()
            .columns()
            .iter()
            .find_map(|c| first_special(c.as_ref())),
        T::Map(..) => first_special(a.as_map().entries()),
        _ => None,
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn udf(f: impl ScalarUDFImpl + 'static, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(f)),
        args,
    ))
}

/// Whether `e`, a `numeric`, may be a special value: not if it is a cast of an integer
/// or a number.
fn may_be_special(e: &Expr, schema: &DFSchema) -> Result<bool> {
    Ok(match e {
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => {
            !expr.get_type(schema)?.is_integer()
        }
        Expr::Literal(ScalarValue::Decimal128(v, ..), _) => {
            v.is_some_and(|v| Special::of(v).is_some())
        }
        _ => true,
    })
}

/// `args` with each `numeric` one that may be special wrapped in [`Finite`] for
/// `function`.
fn guarded(args: Vec<Expr>, function: &str, schema: &DFSchema) -> Result<(Vec<Expr>, bool)> {
    let mut changed = false;
    let args = args
        .into_iter()
        .map(|a| {
            Ok(
                match holds_numeric(&a.get_type(schema)?) && may_be_special(&a, schema)? {
                    true => {
                        changed = true;
                        udf(Finite::new(function), vec![a])
                    }
                    false => a,
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((args, changed))
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    Ok(match e {
        Expr::Cast(Cast { expr, field }) => rewrite_cast(*expr, field, false, schema)?,
        Expr::TryCast(TryCast { expr, field }) => rewrite_cast(*expr, field, true, schema)?,
        Expr::BinaryExpr(b) => {
            let op = Op::of(b.op);
            let numeric = op.is_some()
                && is_numeric(&b.left.get_type(schema)?)
                && is_numeric(&b.right.get_type(schema)?);
            match op {
                Some(op) if numeric => {
                    let ret = Expr::BinaryExpr(b.clone()).get_type(schema)?;
                    Transformed::yes(udf(NumericArith::new(op, ret), vec![*b.left, *b.right]))
                }
                _ => Transformed::no(Expr::BinaryExpr(b)),
            }
        }
        Expr::Negative(inner) if is_numeric(&inner.get_type(schema)?) => {
            Transformed::yes(udf(NumericNeg::new(), vec![*inner]))
        }
        Expr::ScalarFunction(f) => {
            let name = f.func.name().to_string();
            let any_numeric = f
                .args
                .iter()
                .map(|a| a.get_type(schema).map(|t| holds_numeric(&t)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .any(|n| n);
            if !any_numeric || name.starts_with("__freshet_numeric") || AS_IS.contains(&&*name) {
                return Ok(Transformed::no(Expr::ScalarFunction(f)));
            }
            let first_numeric = match f.args.first() {
                Some(a) => is_numeric(&a.get_type(schema)?),
                None => false,
            };
            if KEEPS.contains(&&*name) && first_numeric {
                let ret = Expr::ScalarFunction(f.clone()).get_type(schema)?;
                return Ok(Transformed::yes(udf(
                    KeepSpecial::new(f.func.clone(), ret),
                    f.args,
                )));
            }
            let (args, changed) = guarded(f.args, &name, schema)?;
            Transformed::new_transformed(
                Expr::ScalarFunction(ScalarFunction::new_udf(f.func, args)),
                changed,
            )
        }
        Expr::AggregateFunction(mut a) => {
            let name = a.func.name().to_string();
            if AGGREGATES_AS_IS.contains(&&*name) || is_special_sum(&a.func) {
                return Ok(Transformed::no(Expr::AggregateFunction(a)));
            }
            if SUMS.contains(&&*name) {
                if let [arg] = a.params.args.as_slice() {
                    if is_numeric(&arg.get_type(schema)?) && may_be_special(arg, schema)? {
                        a.func = SpecialSum::wrap(a.func);
                        return Ok(Transformed::yes(Expr::AggregateFunction(a)));
                    }
                }
            }
            let (args, changed) = guarded(std::mem::take(&mut a.params.args), &name, schema)?;
            a.params.args = args;
            Transformed::new_transformed(Expr::AggregateFunction(a), changed)
        }
        Expr::WindowFunction(mut w) => {
            let name = w.fun.name().to_string();
            // A RANGE frame with an offset adds it to the ORDER BY value.
            let frame = &w.params.window_frame;
            let offset = |b: &WindowFrameBound| match b {
                WindowFrameBound::Preceding(v) | WindowFrameBound::Following(v) => !v.is_null(),
                WindowFrameBound::CurrentRow => false,
            };
            let mut changed = false;
            if frame.units == WindowFrameUnits::Range
                && (offset(&frame.start_bound) || offset(&frame.end_bound))
            {
                if let Some(key) = w.params.order_by.first_mut() {
                    if is_numeric(&key.expr.get_type(schema)?) && may_be_special(&key.expr, schema)?
                    {
                        let e = std::mem::replace(
                            &mut key.expr,
                            Expr::Literal(ScalarValue::Null, None),
                        );
                        key.expr = udf(Finite::new("a RANGE window frame with an offset"), vec![e]);
                        changed = true;
                    }
                }
            }
            if !AGGREGATES_AS_IS.contains(&&*name) {
                let (args, guarded_any) =
                    guarded(std::mem::take(&mut w.params.args), &name, schema)?;
                w.params.args = args;
                changed |= guarded_any;
            }
            Transformed::new_transformed(Expr::WindowFunction(w), changed)
        }
        e => Transformed::no(e),
    })
}

/// A cast (`safe`: TRY_CAST) of `expr` to `field`'s type: [`NumericCast`] from or to a
/// `numeric`; an array or record of numerics is guarded, as Arrow would cast its
/// elements.
fn rewrite_cast(
    expr: Expr,
    field: datafusion::arrow::datatypes::FieldRef,
    safe: bool,
    schema: &DFSchema,
) -> Result<Transformed<Expr>> {
    let from = expr.get_type(schema)?;
    let to = field.data_type();
    if is_numeric(&from) || (is_numeric(to) && (is_text(&from) || from.is_floating())) {
        let cast = NumericCast::new(to.clone(), safe);
        return Ok(Transformed::yes(udf(cast, vec![expr])));
    }
    let changed = holds_numeric(&from);
    let expr = Box::new(match changed {
        true => udf(Finite::new("a cast"), vec![expr]),
        false => expr,
    });
    let cast = match safe {
        true => Expr::TryCast(TryCast { expr, field }),
        false => Expr::Cast(Cast { expr, field }),
    };
    Ok(Transformed::new_transformed(cast, changed))
}

/// Whether an expression node may need [`rewrite`] (its types decide).
fn wanted(e: &Expr) -> bool {
    match e {
        Expr::Cast(_) | Expr::TryCast(_) | Expr::Negative(_) => true,
        Expr::BinaryExpr(b) => Op::of(b.op).is_some(),
        Expr::ScalarFunction(f) => !f.func.name().starts_with("__freshet_numeric"),
        Expr::AggregateFunction(AggregateFunction { func, .. }) => {
            !AGGREGATES_AS_IS.contains(&func.name()) && !is_special_sum(func)
        }
        Expr::WindowFunction(_) => true,
        _ => false,
    }
}

impl AnalyzerRule for NumericSpecials {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let deferred = self
            .deferred
            .as_ref()
            .is_some_and(|d| d.load(Ordering::SeqCst));
        if deferred || self.level.load(Ordering::SeqCst) < LEVEL {
            return Ok(plan);
        }
        crate::expr_rules::rewrite_expressions(plan, |_| false, wanted, rewrite)
    }

    fn name(&self) -> &str {
        "freshet_numeric_specials"
    }
}

/// The arrays of `args` (scalars repeated to `n` rows), and whether all were scalars.
fn arrays(args: &[ColumnarValue], n: usize) -> Result<(Vec<ArrayRef>, bool)> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let n = if scalar { 1 } else { n };
    let arrays = args
        .iter()
        .map(|a| a.to_array(n))
        .collect::<Result<Vec<_>>>()?;
    Ok((arrays, scalar))
}

fn finish(out: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    Ok(match scalar {
        true => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
        false => ColumnarValue::Array(out),
    })
}

/// The type of a function's one argument, which it returns.
fn first_type(args: &[DataType]) -> Result<DataType> {
    args.first()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("one argument expected".into()))
}

fn decimals(a: &ArrayRef) -> Result<&Decimal128Array> {
    a.as_primitive_opt::<Decimal128Type>().ok_or_else(|| {
        DataFusionError::Internal(format!("a numeric expected, not {}", a.data_type()))
    })
}

/// A cast from or to `numeric` that knows its special values (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericCast {
    signature: Signature,
    to: DataType,
    /// `TRY_CAST`: NULL where the cast fails.
    safe: bool,
}

impl NumericCast {
    fn new(to: DataType, safe: bool) -> Self {
        NumericCast {
            signature: Signature::any(1, Volatility::Immutable),
            to,
            safe,
        }
    }
}

impl ScalarUDFImpl for NumericCast {
    fn name(&self) -> &str {
        "__freshet_numeric_cast"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.to.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, scalar) = arrays(&args.args, args.number_rows)?;
        let [array] = arrays.as_slice() else {
            return Err(DataFusionError::Internal("one argument expected".into()));
        };
        let options = CastOptions {
            safe: self.safe,
            ..datafusion::common::format::DEFAULT_CAST_OPTIONS
        };
        finish(special::cast(array, &self.to, &options)?, scalar)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl Op {
    fn of(op: Operator) -> Option<Op> {
        Some(match op {
            Operator::Plus => Op::Add,
            Operator::Minus => Op::Sub,
            Operator::Multiply => Op::Mul,
            Operator::Divide => Op::Div,
            Operator::Modulo => Op::Mod,
            _ => return None,
        })
    }

    /// Postgres' name of its `numeric` function.
    fn name(self) -> &'static str {
        match self {
            Op::Add => "numeric_add",
            Op::Sub => "numeric_sub",
            Op::Mul => "numeric_mul",
            Op::Div => "numeric_div",
            Op::Mod => "numeric_mod",
        }
    }
}

/// An operand of [`special_result`]: a special value or a number (unscaled).
#[derive(Debug, Clone, Copy)]
enum Operand {
    Special(Special),
    Number(i128),
}

/// A result of [`special_result`].
#[derive(Debug, PartialEq)]
enum Outcome {
    Special(Special),
    /// 0.
    Zero,
    /// The left operand.
    Left,
}

fn division_by_zero() -> DataFusionError {
    SqlStateError::raise("22012", "division by zero", None)
}

/// `l op r` where one of them is special, as Postgres computes it.
fn special_result(op: Op, l: Operand, r: Operand) -> Result<Outcome> {
    use Operand::{Number, Special as S};
    use Special::{Infinity, NaN, NegInfinity};
    let sign = |o: Operand| match o {
        S(NegInfinity) => -1,
        S(_) => 1,
        Number(v) => v.signum() as i32,
    };
    if matches!(l, S(NaN)) || matches!(r, S(NaN)) {
        return Ok(Outcome::Special(NaN));
    }
    let infinity = |positive: bool| Outcome::Special(if positive { Infinity } else { NegInfinity });
    Ok(match op {
        Op::Add | Op::Sub => {
            let r_sign = if op == Op::Sub { -sign(r) } else { sign(r) };
            match (l, r) {
                (S(_), S(_)) if sign(l) != r_sign => Outcome::Special(NaN),
                (S(_), _) => infinity(sign(l) > 0),
                _ => infinity(r_sign > 0),
            }
        }
        Op::Mul => match sign(l) * sign(r) {
            0 => Outcome::Special(NaN),
            s => infinity(s > 0),
        },
        Op::Div => match (l, r) {
            (_, Number(0)) => return Err(division_by_zero()),
            (S(_), S(_)) => Outcome::Special(NaN),
            (S(_), _) => infinity(sign(l) * sign(r) > 0),
            _ => Outcome::Zero,
        },
        Op::Mod => match (l, r) {
            (_, Number(0)) => return Err(division_by_zero()),
            (S(_), _) => Outcome::Special(NaN),
            _ => Outcome::Left,
        },
    })
}

/// Postgres' `numeric` arithmetic (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericArith {
    signature: Signature,
    op: Op,
    ret: DataType,
}

impl NumericArith {
    fn new(op: Op, ret: DataType) -> Self {
        NumericArith {
            signature: Signature::any(2, Volatility::Immutable),
            op,
            ret,
        }
    }

    fn kernel(&self, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef> {
        Ok(match self.op {
            Op::Add => numeric::add(l, r)?,
            Op::Sub => numeric::sub(l, r)?,
            Op::Mul => numeric::mul(l, r)?,
            Op::Div => numeric::div(l, r)?,
            Op::Mod => numeric::rem(l, r)?,
        })
    }
}

/// `a`'s values with those of `rows` set to `v`.
fn with_values(a: &Decimal128Array, rows: &[bool], v: i128) -> ArrayRef {
    let values: Vec<i128> = a
        .values()
        .iter()
        .zip(rows)
        .map(|(x, r)| if *r { v } else { *x })
        .collect();
    Arc::new(
        Decimal128Array::new(values.into(), a.nulls().cloned())
            .with_data_type(a.data_type().clone()),
    )
}

/// Fails unless every value of `out` fits its precision.
fn check_range(out: &Decimal128Array, precision: u8) -> Result<()> {
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .unwrap_or(i128::MAX);
    let beyond =
        (0..out.len()).any(|i| out.is_valid(i) && out.value(i).unsigned_abs() >= limit as u128);
    if beyond {
        return Err(SqlStateError::raise(
            "22003",
            "value overflows numeric format",
            None,
        ));
    }
    Ok(())
}

impl ScalarUDFImpl for NumericArith {
    fn name(&self) -> &str {
        self.op.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, scalar) = arrays(&args.args, args.number_rows)?;
        let [la, ra] = arrays.as_slice() else {
            return Err(DataFusionError::Internal("two arguments expected".into()));
        };
        let (l, r) = (decimals(la)?, decimals(ra)?);
        let DataType::Decimal128(precision, out_scale) = self.ret else {
            return Err(DataFusionError::Internal(
                "a numeric result expected".into(),
            ));
        };
        // Rows with a special operand: computed below, and given operands here that
        // cannot fail (0 op 1).
        let rows: Vec<bool> = match special::has_specials(l) || special::has_specials(r) {
            false => vec![],
            true => (0..l.len())
                .map(|i| {
                    l.is_valid(i)
                        && r.is_valid(i)
                        && (Special::of(l.value(i)).is_some() || Special::of(r.value(i)).is_some())
                })
                .collect(),
        };
        let out = if rows.iter().any(|r| *r) {
            self.kernel(&with_values(l, &rows, 0), &with_values(r, &rows, 1))?
        } else {
            self.kernel(la, ra)?
        };
        let out = match out.data_type() == &self.ret {
            true => out,
            false => special::cast(
                &out,
                &self.ret,
                &datafusion::common::format::DEFAULT_CAST_OPTIONS,
            )?,
        };
        let out_decimals = decimals(&out)?;
        check_range(out_decimals, precision)?;
        if !rows.iter().any(|r| *r) {
            return finish(out, scalar);
        }
        let operand = |v: i128| match Special::of(v) {
            Some(s) => Operand::Special(s),
            None => Operand::Number(v),
        };
        let DataType::Decimal128(_, l_scale) = l.data_type() else {
            return Err(DataFusionError::Internal("a numeric expected".into()));
        };
        let mut values: Vec<i128> = out_decimals.values().to_vec();
        for (i, _) in rows.iter().enumerate().filter(|(_, r)| **r) {
            values[i] = match special_result(self.op, operand(l.value(i)), operand(r.value(i)))? {
                // A derived type: it holds the infinities (see `KeepSpecial`).
                Outcome::Special(s) => s.value(),
                Outcome::Zero => 0,
                Outcome::Left => {
                    let shift = i32::from(out_scale) - i32::from(*l_scale);
                    let v = l.value(i);
                    let overflow =
                        || SqlStateError::raise("22003", "value overflows numeric format", None);
                    let power = 10i128
                        .checked_pow(shift.unsigned_abs())
                        .ok_or_else(overflow)?;
                    let v = if shift >= 0 {
                        v.checked_mul(power).ok_or_else(overflow)?
                    } else {
                        v / power
                    };
                    let limit = 10i128
                        .checked_pow(u32::from(precision))
                        .unwrap_or(i128::MAX);
                    if v.unsigned_abs() >= limit.unsigned_abs() {
                        return Err(overflow());
                    }
                    v
                }
            };
        }
        let out: ArrayRef = Arc::new(
            Decimal128Array::new(values.into(), out_decimals.nulls().cloned())
                .with_data_type(self.ret.clone()),
        );
        finish(out, scalar)
    }
}

/// `-x` of a `numeric`: NaN stays NaN.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericNeg {
    signature: Signature,
}

impl NumericNeg {
    fn new() -> Self {
        NumericNeg {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NumericNeg {
    fn name(&self) -> &str {
        "numeric_uminus"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        first_type(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, scalar) = arrays(&args.args, args.number_rows)?;
        let [a] = arrays.as_slice() else {
            return Err(DataFusionError::Internal("one argument expected".into()));
        };
        let d = decimals(a)?;
        let out: Decimal128Array = d.unary(|v| match Special::of(v) {
            Some(s) => s.negated().value(),
            None => -v,
        });
        finish(Arc::new(out.with_data_type(d.data_type().clone())), scalar)
    }
}

/// A function (`round`, `ceil` …) whose value for a special first argument is that
/// argument; others it computes as it did.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KeepSpecial {
    inner: Arc<ScalarUDF>,
    ret: DataType,
}

impl KeepSpecial {
    fn new(inner: Arc<ScalarUDF>, ret: DataType) -> Self {
        KeepSpecial { inner, ret }
    }
}

impl ScalarUDFImpl for KeepSpecial {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let first = match args.args.first() {
            Some(a) => a.to_array(n)?,
            None => return self.inner.invoke_with_args(args),
        };
        let Some((specials, clean)) = first
            .as_primitive_opt::<Decimal128Type>()
            .and_then(special::split)
        else {
            return self.inner.invoke_with_args(args);
        };
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        args.args[0] = ColumnarValue::Array(Arc::new(clean));
        let out = self
            .inner
            .invoke_with_args(args)?
            .to_array(if scalar { 1 } else { n })?;
        finish(special::put_back(out, &specials, &self.ret)?, scalar)
    }
}

/// Its argument, unless a special value, for which `function` fails: it would compute
/// with it as with a number.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Finite {
    signature: Signature,
    function: String,
}

impl Finite {
    fn new(function: &str) -> Self {
        Finite {
            signature: Signature::any(1, Volatility::Immutable),
            function: function.to_string(),
        }
    }
}

impl ScalarUDFImpl for Finite {
    fn name(&self) -> &str {
        "__freshet_numeric_finite"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        first_type(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("one argument expected".into()));
        };
        let found = match arg {
            ColumnarValue::Scalar(s) => first_special(s.to_array()?.as_ref()),
            ColumnarValue::Array(a) => first_special(a.as_ref()),
        };
        match found {
            Some(s) => Err(SqlStateError::raise(
                "0A000",
                format!("{}() does not support numeric {}", self.function, s.text()),
                None,
            )),
            None => Ok(arg.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operand::{Number, Special as S};
    use Special::{Infinity, NaN, NegInfinity};

    /// Expected outcomes from PostgreSQL 15.
    #[test]
    fn special_arithmetic_as_postgres() {
        let r = |op, l, r| special_result(op, l, r).unwrap();
        assert_eq!(
            r(Op::Add, S(Infinity), S(NegInfinity)),
            Outcome::Special(NaN)
        );
        assert_eq!(r(Op::Sub, S(Infinity), S(Infinity)), Outcome::Special(NaN));
        assert_eq!(
            r(Op::Sub, S(Infinity), S(NegInfinity)),
            Outcome::Special(Infinity)
        );
        assert_eq!(
            r(Op::Sub, Number(1), S(Infinity)),
            Outcome::Special(NegInfinity)
        );
        assert_eq!(r(Op::Add, Number(1), S(NaN)), Outcome::Special(NaN));
        assert_eq!(r(Op::Mul, S(Infinity), Number(0)), Outcome::Special(NaN));
        assert_eq!(
            r(Op::Mul, S(Infinity), Number(-2)),
            Outcome::Special(NegInfinity)
        );
        assert_eq!(
            r(Op::Mul, S(NegInfinity), S(NegInfinity)),
            Outcome::Special(Infinity)
        );
        assert_eq!(r(Op::Div, Number(5), S(NegInfinity)), Outcome::Zero);
        assert_eq!(r(Op::Div, S(Infinity), S(Infinity)), Outcome::Special(NaN));
        assert_eq!(
            r(Op::Div, S(NegInfinity), Number(-3)),
            Outcome::Special(Infinity)
        );
        assert_eq!(r(Op::Div, S(NaN), Number(0)), Outcome::Special(NaN));
        assert!(special_result(Op::Div, S(Infinity), Number(0)).is_err());
        assert_eq!(r(Op::Mod, S(Infinity), Number(3)), Outcome::Special(NaN));
        assert_eq!(r(Op::Mod, Number(3), S(Infinity)), Outcome::Left);
        assert_eq!(r(Op::Mod, S(NaN), Number(0)), Outcome::Special(NaN));
        assert!(special_result(Op::Mod, S(Infinity), Number(0)).is_err());
    }
}
