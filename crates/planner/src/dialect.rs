//! Postgres behaviours that change a result's type, by dialect level.
//!
//! A materialized view stores its rows and state in the types it was planned with, and is
//! planned again from its SQL at every start. A change that gives an expression another
//! type would make a stored view read its rows in a type they were not written in. So
//! each such change comes with a level: a view keeps the level it was created at
//! ([`crate::catalog::ViewDef::dialect`], 0 for views from before levels), and the
//! context that plans it is set to that level ([`set_level`]). Queries and new views get
//! [`CURRENT`].
//!
//! Level 1: `round(numeric, s)` with a constant `s` returns scale `s` (at most the
//! argument's), as Postgres does: `round(0.333, 2)` is `0.33`, not `0.330`. DataFusion's
//! `round` computes that scale only when `s` reaches it as a literal, and its type
//! coercion had made `s` a cast to `int` first, so the result kept the argument's scale.
//!
//! Level 2: intervals compare by their spans (`crate::pg_interval`): `interval '24 hours'
//! = interval '1 day'`.
//!
//! Level 3: `sum(bigint)` and `avg` of integers are `numeric` (`crate::pg_aggregates`),
//! and a view's `numeric` divisions are widened as a query's (`crate::pg_values`).
//!
//! Level 4: an array cast to text is Postgres' `{1,NULL}` in views too
//! (`crate::pg_values`), not Arrow's `[1, ]`.
//!
//! Level 5: a `numeric` or float cast to an integer type is rounded, not truncated
//! (`crate::int_casts`); `generate_series(…)` in a select list is a set, and the one
//! column of `generate_series(…)`/`unnest(…)` in `FROM` is named after the function or
//! the alias (`crate::series`); a subquery in `FROM` names its unaliased expressions as
//! Postgres does (`crate::naming::name_subquery_items`); `string_agg` is `text`, not
//! `jsonb` (`crate::text_aggs`); `round(double precision)` rounds half to even. These
//! change a view's values, types or the names its query reads, so views from before keep
//! the old behaviour.
//!
//! Level 6: integer `+ - *` fail out of their type's range, and float `+ - * /` fail on
//! overflow, underflow and a zero divisor, as Postgres' do (`crate::checked_arith`),
//! instead of wrapping around or giving `Infinity`; an integer literal that fits is an
//! `integer` in arithmetic with an `integer` (`crate::int_literals`), so `n + 1` is an
//! `integer`, not a `bigint`; `date ± interval` is a `timestamp` (`crate::pg_interval`),
//! not a date without the interval's time; `to_char(timestamp, 'YYYY-MM')` reads
//! Postgres' patterns (`crate::pg_to_char`); `array_remove`/`array_replace` act on every
//! match; `SIMILAR TO` matches the whole string (`crate::similar_to`); `generate_series`
//! in `FROM` takes numeric and untyped arguments and runs dates as `timestamptz`
//! (`crate::pg_series`); `AT TIME ZONE` converts between `timestamptz` and wall-clock
//! `timestamp` (`crate::pg_at_time_zone`); `float` is `double precision`
//! (`crate::pg_types`); `extract(second …)` keeps the fraction (`crate::pg_date_part`);
//! a zone in text read as a `timestamp` is ignored (`crate::literals`). A view from before keeps its values and types.
//!
//! Level 7: `x op ANY(array)` is NULL where Postgres' is (`5 = ANY(ARRAY[1, NULL])`;
//! `crate::any_nulls`), not false; `encode(…, 'base64')` pads and breaks lines as
//! Postgres' does (`crate::pg_base64`); `ceil`, `floor` and `trunc` of a `numeric` are
//! integral `numeric`s of scale 0 (`crate::pg_ceil`).
//!
//! Level 8: `to_date(text, text)` and `to_timestamp(text, text)` read Postgres'
//! template patterns (`crate::pg_to_date`), not chrono's `%Y-%m-%d`; `make_time` takes
//! fractional seconds and gives microseconds (`crate::pg_functions`); `trunc(numeric,
//! s)` with a constant `s` has scale `s` (`crate::pg_ceil`).
//!
//! Level 9: `to_char` writes the era (`AD`, `B.C.` …) and the month in Roman numerals
//! (`RM`), and years before 1 AD as Postgres writes them (`crate::pg_to_char`); a
//! set-returning function inside `CASE` or `COALESCE` is refused
//! (`crate::srf_placement`); `to_timestamp(double precision)` is Postgres' (microseconds,
//! its range, errors for NaN and infinities: `crate::pg_to_date`); `x op ANY|ALL
//! (subquery)` over a relation of the outer query's name compares the outer `x`
//! (`crate::any_subqueries`); a float compared with a `numeric` is compared as a
//! `double precision` (`crate::float_numeric`); casts between `numeric` and floats are
//! Postgres' (`crate::numeric_casts`); a difference of timestamps compares with an
//! interval by its span (`crate::pg_interval`).
//!
//! Level 10: `*` over a `NATURAL JOIN` puts the common columns first, and a RIGHT or
//! FULL NATURAL JOIN is taken (`crate::natural_joins`); `double precision ^` fails on
//! overflow, underflow and the undefined cases as Postgres' `dpow` (`crate::pg_power`); a
//! cast to `varchar(n)` or `char(n)` cuts the text to `n` characters
//! (`crate::char_casts`).
//!
//! Level 11: a `numeric` holds NaN, Infinity and -Infinity, and expressions over one
//! compute with them as Postgres does or fail naming the function
//! (`crate::numeric_special`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::Field;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The level queries and new views are planned at.
pub const CURRENT: u32 = 11;

/// A context's dialect level (a config extension), shared with the functions that
/// depend on it.
#[derive(Debug, Default)]
pub struct Level(Arc<AtomicU32>, Originals);

/// DataFusion's functions that [`Wrapped`] functions wrap, by name, kept from before
/// the first wrapping: a level's wrappers are registered again over the last level's.
#[derive(Debug, Default)]
struct Originals(std::sync::Mutex<std::collections::HashMap<String, Arc<ScalarUDF>>>);

/// Registers the level-dependent functions in `ctx`, whose config carries its [`Level`]
/// (see [`new_level`]).
pub fn register(ctx: &SessionContext) {
    let Some(level) = ctx.state().config().get_extension::<Level>() else {
        return;
    };
    {
        use datafusion::execution::FunctionRegistry;
        let planner = crate::pg_interval::IntervalPlanner::new(level.0.clone());
        if let Err(e) = ctx
            .state_ref()
            .write()
            .register_expr_planner(Arc::new(planner))
        {
            tracing::warn!(error = %e, "cannot register the interval operators");
        }
    }
    register_wrappers(ctx);
}

/// Registers the functions that behave by level ([`Wrapped`]) at `ctx`'s level, over
/// those of the level before. A plan keeps the functions it was planned with, so it
/// runs at its level, whatever level `ctx` plans at later.
fn register_wrappers(ctx: &SessionContext) {
    if let Some(round) = Wrapped::new(ctx, "round", 1) {
        ctx.register_udf(ScalarUDF::new_from_impl(PgRound {
            signature: Signature::user_defined(Volatility::Immutable),
            round,
        }));
    }
    crate::pg_to_char::register(ctx);
    crate::pg_date_part::register(ctx);
    crate::pg_base64::register(ctx);
    crate::pg_ceil::register(ctx);
    crate::pg_to_date::register(ctx);
    crate::pg_functions::register_wrapped(ctx);
}

/// A new switch at [`CURRENT`].
pub fn new_level() -> Level {
    Level(Arc::new(AtomicU32::new(CURRENT)), Originals::default())
}

impl Level {
    /// The level, shared with what depends on it (it changes with [`set_level`]).
    pub fn handle(&self) -> Arc<AtomicU32> {
        self.0.clone()
    }
}

/// `ctx`'s level, shared with what depends on it (functions that behave by level).
pub fn handle(ctx: &SessionContext) -> Arc<AtomicU32> {
    ctx.state()
        .config()
        .get_extension::<Level>()
        .map_or_else(|| Arc::new(AtomicU32::new(CURRENT)), |l| l.0.clone())
}

/// The level `ctx` plans at.
pub fn level(ctx: &SessionContext) -> u32 {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<Level>()
        .map_or(CURRENT, |l| l.0.load(Ordering::SeqCst))
}

/// Plans what `ctx` plans from now on at `level` (a stored view's).
pub fn set_level(ctx: &SessionContext, level: u32) {
    if let Some(l) = ctx.state().config().get_extension::<Level>() {
        if l.0.swap(level, Ordering::SeqCst) != level {
            register_wrappers(ctx);
        }
    }
}

/// The types `f`'s own signature coerces `arg_types` to: what a wrapper of `f` gives
/// for the calls it leaves to `f`.
pub fn coerce_as(f: &ScalarUDF, arg_types: &[DataType]) -> Result<Vec<DataType>> {
    let fields: Vec<FieldRef> = arg_types
        .iter()
        .map(|t| Arc::new(Field::new("", t.clone(), true)))
        .collect();
    Ok(fields_with_udf(&fields, f)?
        .iter()
        .map(|f| f.data_type().clone())
        .collect())
}

/// A DataFusion function that a function of Postgres' behaviour wraps, from dialect
/// level `from` on, at the level its context had when it was registered (the functions
/// are registered again at each [`set_level`]: a plan's functions keep its level while
/// it runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Wrapped {
    pub inner: Arc<ScalarUDF>,
    level: u32,
    from: u32,
}

impl Wrapped {
    /// DataFusion's function `name` of `ctx`, wrapped from level `from` on at `ctx`'s
    /// level; `None` if `ctx` has no such function.
    pub fn new(ctx: &SessionContext, name: &str, from: u32) -> Option<Wrapped> {
        let state = ctx.state();
        let Some(level) = state.config().get_extension::<Level>() else {
            let inner = state.scalar_functions().get(name).cloned()?;
            return Some(Wrapped {
                inner,
                level: CURRENT,
                from,
            });
        };
        let mut originals = level.1 .0.lock().unwrap_or_else(|e| e.into_inner());
        let inner = match originals.get(name) {
            Some(f) => f.clone(),
            None => {
                let f = state.scalar_functions().get(name).cloned()?;
                originals.insert(name.to_string(), f.clone());
                f
            }
        };
        Some(Wrapped {
            inner,
            level: level.0.load(Ordering::SeqCst),
            from,
        })
    }

    /// Whether the wrapper's behaviour applies (the context's level is `from` or above).
    pub fn on(&self) -> bool {
        self.level() >= self.from
    }

    /// The level it was registered at.
    pub fn level(&self) -> u32 {
        self.level
    }
}

/// DataFusion's `round`, typed as Postgres types it from level 1 on.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgRound {
    signature: Signature,
    round: Wrapped,
}

impl PgRound {
    fn postgres(&self) -> bool {
        self.round.on()
    }
}

impl ScalarUDFImpl for PgRound {
    fn name(&self) -> &str {
        self.round.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.round.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let mut types = coerce_as(&self.round.inner, arg_types)?;
        // The places stay as written (an integer), so that a constant reaches
        // `return_field_from_args` as a literal; `invoke_with_args` casts it.
        if self.postgres() {
            if let (Some(t), Some(given)) = (types.get_mut(1), arg_types.get(1)) {
                if given.is_integer() {
                    *t = given.clone();
                }
            }
        }
        Ok(types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.round.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.round.inner.return_field_from_args(args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.round.inner.documentation()
    }
    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // From level 5, `round(double precision)` rounds half to even, as Postgres'
        // does (DataFusion's rounds half away from zero).
        let float = args
            .arg_fields
            .first()
            .is_some_and(|f| matches!(f.data_type(), DataType::Float32 | DataType::Float64));
        if float && args.args.len() == 1 && self.round.level() >= 5 {
            return Ok(match &args.args[0] {
                ColumnarValue::Array(a) => ColumnarValue::Array(crate::int_casts::round(a)?),
                ColumnarValue::Scalar(s) => {
                    let rounded = crate::int_casts::round(&s.to_array()?)?;
                    ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(
                        &rounded, 0,
                    )?)
                }
            });
        }
        // DataFusion's round takes its places as `int`.
        if let (Some(places), Some(field)) = (args.args.get_mut(1), args.arg_fields.get_mut(1)) {
            if field.data_type().is_integer() && field.data_type() != &DataType::Int32 {
                *places = places.cast_to(&DataType::Int32, None)?;
                *field = Arc::new(field.as_ref().clone().with_data_type(DataType::Int32));
            }
        }
        self.round.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The type of the first column of `sql`'s analyzed plan (types coerced), the one a
    /// result's columns and a view's rows are described with.
    fn result_type(ctx: &SessionContext, sql: &str) -> DataType {
        let state = ctx.state();
        let plan = futures::executor::block_on(state.create_logical_plan(sql)).expect("plans");
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .expect("analyzes");
        plan.schema().field(0).data_type().clone()
    }

    #[test]
    fn round_takes_its_scale_from_the_level() {
        let ctx = crate::context::new_session();
        let sql = "SELECT round(CAST(1.2345 AS DECIMAL(10, 4)), 2)";
        assert_eq!(result_type(&ctx, sql), DataType::Decimal128(10, 2));
        // Without places: scale 0; negative places: scale 0 too.
        assert_eq!(
            result_type(&ctx, "SELECT round(CAST(1.2345 AS DECIMAL(10, 4)))"),
            DataType::Decimal128(10, 0)
        );
        // A view from before level 1 keeps the argument's scale (and a digit more), as
        // it was planned.
        set_level(&ctx, 0);
        assert_eq!(result_type(&ctx, sql), DataType::Decimal128(11, 4));
        set_level(&ctx, CURRENT);
        assert_eq!(result_type(&ctx, sql), DataType::Decimal128(10, 2));
        // Floats are unchanged.
        assert_eq!(
            result_type(&ctx, "SELECT round(2.5e0, 1)"),
            DataType::Float64
        );
    }

    #[test]
    fn sum_and_avg_are_numeric_from_level_3() {
        use datafusion::arrow::datatypes::{Field, Schema};
        let ctx = crate::context::new_session();
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("j", DataType::Int32, true),
        ]));
        crate::context::register(&ctx, "t", schema, vec![]).expect("registers");
        let numeric = DataType::Decimal128(38, 0);
        assert_eq!(result_type(&ctx, "SELECT sum(i) FROM t"), numeric);
        assert_eq!(result_type(&ctx, "SELECT sum(j) FROM t"), DataType::Int64);
        assert_eq!(
            result_type(&ctx, "SELECT avg(j) FROM t"),
            DataType::Decimal128(38, 10)
        );
        assert_eq!(
            result_type(&ctx, "SELECT sum(i) OVER (ORDER BY j) FROM t"),
            numeric
        );
        // An explicit cast is the user's: a double's average.
        assert_eq!(
            result_type(&ctx, "SELECT avg(j::float8) FROM t"),
            DataType::Float64
        );
        // A view from before level 3 keeps DataFusion's types.
        set_level(&ctx, 2);
        assert_eq!(result_type(&ctx, "SELECT sum(i) FROM t"), DataType::Int64);
        assert_eq!(result_type(&ctx, "SELECT avg(j) FROM t"), DataType::Float64);
    }

    #[test]
    fn intervals_compare_by_span_from_level_2() {
        let ctx = crate::context::new_session();
        let plan = |ctx: &SessionContext| {
            let state = ctx.state();
            let sql = "SELECT interval '24 hours' = interval '1 day'";
            let p = futures::executor::block_on(state.create_logical_plan(sql)).expect("plans");
            format!("{p}")
        };
        assert!(plan(&ctx).contains("freshet_interval_span"));
        set_level(&ctx, 1);
        assert!(!plan(&ctx).contains("freshet_interval_span"));
    }

    #[test]
    fn level_5_rounds_integer_casts_and_names_series() {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int32Type;
        let bind = |ctx: &SessionContext, sql: &str| {
            let stmt = crate::parser::parse(sql).expect("parses").pop();
            let Some(crate::parser::Stmt::Sql(stmt)) = stmt else {
                panic!("a statement expected");
            };
            futures::executor::block_on(crate::context::bind(ctx, &stmt))
        };
        let int = |ctx: &SessionContext, sql: &str| -> i32 {
            let plan = bind(ctx, sql).expect("binds");
            let batches = futures::executor::block_on(async {
                ctx.execute_logical_plan(plan)
                    .await
                    .expect("plans")
                    .collect()
                    .await
                    .expect("runs")
            });
            batches[0].column(0).as_primitive::<Int32Type>().value(0)
        };
        let unnests = |ctx: &SessionContext, sql: &str| {
            format!("{}", bind(ctx, sql).expect("binds").display_indent()).contains("unnest")
        };
        let ctx = crate::context::new_session();
        let numeric = "SELECT CAST(CAST(2.5 AS DECIMAL(3, 1)) AS INT)";
        // A literal here is a double, rounded half to even.
        let float = "SELECT CAST(3.5 AS INT)";
        let series = "SELECT generate_series(1, 3)";
        assert_eq!(int(&ctx, numeric), 3);
        assert_eq!(int(&ctx, float), 4);
        assert!(unnests(&ctx, series));
        assert!(bind(&ctx, "SELECT g FROM generate_series(1, 3) g").is_ok());
        // A view from before level 5 truncates, gets generate_series' array, and reads
        // its column as `value`.
        set_level(&ctx, 4);
        assert_eq!(int(&ctx, numeric), 2);
        assert_eq!(int(&ctx, float), 3);
        assert!(!unnests(&ctx, series));
        assert!(bind(&ctx, "SELECT value FROM generate_series(1, 3)").is_ok());
    }

    #[test]
    fn level_6_checks_arithmetic() {
        let run = |ctx: &SessionContext, sql: &str| {
            let stmt = crate::parser::parse(sql).expect("parses").pop();
            let Some(crate::parser::Stmt::Sql(stmt)) = stmt else {
                panic!("a statement expected");
            };
            futures::executor::block_on(async {
                let plan = crate::context::bind(ctx, &stmt)
                    .await
                    .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
                ctx.execute_logical_plan(plan).await?.collect().await
            })
        };
        let ctx = crate::context::new_session();
        let add = "SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)";
        let err = run(&ctx, add).expect_err("overflows");
        assert!(err.to_string().contains("integer out of range"), "{err}");
        assert!(run(&ctx, "SELECT CAST(1 AS DOUBLE) / 0").is_err());
        // A view from before level 6 wraps around.
        set_level(&ctx, 5);
        assert!(run(&ctx, add).is_ok());
        assert!(run(&ctx, "SELECT CAST(1 AS DOUBLE) / 0").is_ok());
    }

    #[test]
    fn level_7_gives_any_its_nulls() {
        let ctx = crate::context::new_session();
        let found = |ctx: &SessionContext| -> Option<bool> {
            let stmt = crate::parser::parse("SELECT 5 = ANY(ARRAY[1, NULL])")
                .expect("parses")
                .pop();
            let Some(crate::parser::Stmt::Sql(stmt)) = stmt else {
                panic!("a statement expected");
            };
            let batches = futures::executor::block_on(async {
                let plan = crate::context::bind(ctx, &stmt).await.expect("binds");
                ctx.execute_logical_plan(plan)
                    .await
                    .expect("plans")
                    .collect()
                    .await
                    .expect("runs")
            });
            let column = batches[0].column(0);
            use datafusion::arrow::array::{Array, AsArray};
            (!column.is_null(0)).then(|| column.as_boolean().value(0))
        };
        assert_eq!(found(&ctx), None);
        // A view from before level 7 keeps DataFusion's false.
        set_level(&ctx, 6);
        assert_eq!(found(&ctx), Some(false));
    }

    /// A plan keeps the level it was planned at while it runs, whatever level the
    /// context plans at afterwards: views are planned one after another at their own
    /// levels on one context at start-up, and run long after.
    #[test]
    fn a_plan_runs_at_the_level_it_was_planned_at() {
        use datafusion::arrow::array::{Decimal128Array, RecordBatch};
        use datafusion::arrow::datatypes::Schema;
        let ctx = crate::context::new_session();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "x",
            DataType::Decimal128(3, 1),
            true,
        )]));
        let values = Decimal128Array::from(vec![21_i128])
            .with_precision_and_scale(3, 1)
            .expect("decimal");
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).expect("batch");
        crate::context::register(&ctx, "t", schema, vec![batch]).expect("registers");
        let run = |level: u32| {
            set_level(&ctx, level);
            let df =
                futures::executor::block_on(ctx.sql("SELECT ceil(x)::text FROM t")).expect("plans");
            let plan = futures::executor::block_on(df.create_physical_plan()).expect("physical");
            // Another view is planned at the current level before this one runs.
            set_level(&ctx, CURRENT + 6 - level);
            let task = ctx.task_ctx();
            let batches =
                futures::executor::block_on(datafusion::physical_plan::collect(plan, task))
                    .expect("runs");
            let text = datafusion::arrow::compute::cast(batches[0].column(0), &DataType::Utf8)
                .expect("text");
            text.as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .expect("strings")
                .value(0)
                .to_string()
        };
        assert_eq!(run(6), "3.0");
        assert_eq!(run(CURRENT), "3");
    }
}
