//! The DataFusion session Freshet binds SQL with: Postgres dialect, lower-cased
//! identifiers, UTC as the time zone, and the catalog's relations registered as tables.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::sqlparser::ast::Statement;
use crate::PlannerError;

/// Limits of one statement's planning and execution.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The most windows one row may fall into: a `HOP` whose size is more than this many
    /// slides is refused (`22023`) before anything runs or is stored.
    pub max_hop_windows: u64,
    /// Memory one query may use (DataFusion's memory pool, plus the stored rows it
    /// loads); past it the query spills where DataFusion can, and fails with `53200`
    /// where it cannot.
    pub query_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_hop_windows: 1000,
            query_memory_bytes: 1 << 30,
        }
    }
}

/// A fresh session with the default [`Limits`].
pub fn new_session() -> SessionContext {
    new_session_with(&Limits::default())
}

/// A fresh session under `limits`. Relations are registered per statement with
/// [`register`].
pub fn new_session_with(limits: &Limits) -> SessionContext {
    let level = crate::dialect::new_level();
    let level_handle = level.handle();
    let int_casts = crate::int_casts::IntCasts::new(level.handle());
    let checked_arith = crate::checked_arith::CheckedArith::new(level.handle());
    let mut config = SessionConfig::new()
        .with_extension(Arc::new(limits.clone()))
        .with_extension(Arc::new(Loaded::default()))
        .with_extension(Arc::new(level))
        .with_extension(Arc::new(crate::session_zone::PlanZone::default()))
        .with_extension(Arc::new(crate::numeric_special::Deferral::default()))
        .with_target_partitions(2)
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(true);
    let opts = config.options_mut();
    opts.execution.time_zone = Some("+00:00".to_string());
    opts.sql_parser.enable_ident_normalization = true;
    // DataFusion 55's top-K aggregation (GROUP BY … ORDER BY … LIMIT) panics on a NaN
    // group key ("entered unreachable code"; found by tests/fuzz.rs).
    opts.optimizer.enable_topk_aggregation = false;
    let pool = datafusion::execution::memory_pool::TrackConsumersPool::new(
        datafusion::execution::memory_pool::GreedyMemoryPool::new(limits.query_memory_bytes),
        std::num::NonZeroUsize::new(3).unwrap_or(std::num::NonZeroUsize::MIN),
    );
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()
        .unwrap_or_default();
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_analyzer_rules(analyzer_rules(level_handle.clone()))
        .with_type_planner(Arc::new(crate::pg_types::PgTypes {
            level: level_handle,
        }))
        .with_query_planner(Arc::new(crate::window::WindowQueryPlanner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    // approx_count_distinct (alias approx_distinct) with the HyperLogLog views use.
    ctx.register_udaf(crate::hll_udaf::approx_count_distinct());
    crate::guarded_udfs::register(&ctx);
    crate::dialect::register(&ctx);
    crate::cast_names::register(&ctx);
    crate::pg_functions::register(&ctx);
    crate::pg_date_part::register_date_trunc(&ctx);
    crate::pg_array_length::register(&ctx);
    crate::jsonb::register(&ctx);
    crate::json_tables::register(&ctx);
    crate::pg_series::register(&ctx);
    crate::pg_at_time_zone::register(&ctx);
    crate::percentile_disc::register(&ctx);
    crate::single_row::register(&ctx);
    ctx.add_analyzer_rule(Arc::new(crate::literals::TimestampStrings {
        level: crate::dialect::handle(&ctx),
    }));
    ctx.add_analyzer_rule(Arc::new(crate::pg_input::PgTextInput));
    ctx.add_analyzer_rule(Arc::new(int_casts));
    ctx.add_analyzer_rule(Arc::new(checked_arith));
    ctx.add_analyzer_rule(Arc::new(crate::structs::PositionalCasts));
    ctx.add_analyzer_rule(Arc::new(crate::numeric_casts::NumericCasts::new(
        crate::dialect::handle(&ctx),
    )));
    if let Some(deferral) = ctx
        .state()
        .config()
        .get_extension::<crate::numeric_special::Deferral>()
    {
        ctx.add_analyzer_rule(Arc::new(crate::numeric_special::NumericSpecials::new(
            crate::dialect::handle(&ctx),
            &deferral,
        )));
    }
    ctx.add_analyzer_rule(Arc::new(crate::session_zone::SessionZone::new(
        crate::session_zone::handle(&ctx),
    )));
    ctx
}

/// DataFusion's analyzer rules, with `sum`/`avg` and integer literals in arithmetic
/// typed as Postgres types them (at the context's dialect level) before type coercion.
fn analyzer_rules(
    level: Arc<std::sync::atomic::AtomicU32>,
) -> Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Analyzer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "type_coercion")
        .unwrap_or(rules.len());
    // Integer literals first, so that `sum(n + 1)` of an `integer` n is typed as the
    // `sum` of an `integer` (a `bigint`, as in Postgres).
    rules.insert(
        at,
        Arc::new(crate::pg_aggregates::PgAggregateTypes {
            level: level.clone(),
        }),
    );
    rules.insert(
        at,
        Arc::new(crate::float_numeric::FloatNumeric::new(level.clone())),
    );
    rules.insert(
        at,
        Arc::new(crate::pg_interval::IntervalBetween::new(level.clone())),
    );
    rules.insert(at, Arc::new(crate::pg_power::PgPower::new(level.clone())));
    rules.insert(at, Arc::new(crate::int_literals::IntLiterals::new(level)));
    rules
}

/// Memory held by the stored rows a query loaded (they are not in DataFusion's operators,
/// so the pool would not see them otherwise); released with the session.
#[derive(Debug, Default)]
pub struct Loaded(std::sync::Mutex<Vec<datafusion::execution::memory_pool::MemoryReservation>>);

/// Counts `bytes` of loaded rows against the query's memory limit, for as long as the
/// session that `config` and `runtime` belong to lives: fails with DataFusion's
/// "resources exhausted" (`53200`) past the limit.
pub fn reserve_loaded(
    config: &SessionConfig,
    runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    bytes: usize,
) -> datafusion::error::Result<()> {
    let r = datafusion::execution::memory_pool::MemoryConsumer::new("stored rows")
        .register(&runtime.memory_pool);
    r.try_grow(bytes)?;
    if let Some(held) = config.get_extension::<Loaded>() {
        held.0.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
    Ok(())
}

/// The limits `ctx` was made with.
pub fn limits_of(ctx: &SessionContext) -> Arc<Limits> {
    ctx.state()
        .config()
        .get_extension::<Limits>()
        .unwrap_or_default()
}

/// Registers `name` with the given rows (none when only planning).
pub fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(), PlannerError> {
    let table = MemTable::try_new(schema, vec![batches])?;
    crate::schemas::register(ctx, name, Arc::new(table))
}

/// `plan` after the analyzer rules, typed as it runs: some rules give an expression
/// Postgres' type (`sum(bigint)` is `numeric`, `n + 1` of an `integer` is an
/// `integer`), so a bound plan's own schema may not be what execution produces.
pub fn analyzed(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan, PlannerError> {
    let state = ctx.state();
    Ok(state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?)
}

/// Binds a parsed statement into DataFusion's logical plan (unoptimized).
pub async fn bind(ctx: &SessionContext, stmt: &Statement) -> Result<LogicalPlan, PlannerError> {
    let mut stmt = stmt.clone();
    // An INSERT's ON CONFLICT (and the alias it names the table by) is resolved by the
    // server; DataFusion plans the rows to insert.
    if let Statement::Insert(insert) = &mut stmt {
        insert.on = None;
        insert.table_alias = None;
    }
    if crate::dialect::level(ctx) >= crate::srf_placement::LEVEL {
        crate::srf_placement::check(&stmt)?;
    }
    crate::pg_functions::rewrite(&mut stmt);
    if crate::dialect::level(ctx) >= crate::char_casts::LEVEL {
        crate::char_casts::rewrite(&mut stmt);
    }
    if crate::dialect::level(ctx) >= 5 {
        crate::series::normalize(&mut stmt);
        crate::naming::name_subquery_items(&mut stmt);
        crate::text_aggs::normalize(&mut stmt);
    }
    if crate::dialect::level(ctx) >= 6 {
        postgres_meanings(&mut stmt);
        crate::similar_to::rewrite(&mut stmt);
        crate::pg_at_time_zone::rewrite(&mut stmt);
        crate::pg_date_part::rewrite(&mut stmt);
    }
    if crate::dialect::level(ctx) >= crate::any_nulls::LEVEL {
        crate::any_nulls::rewrite(&mut stmt);
    }
    if crate::dialect::level(ctx) >= crate::any_subqueries::LEVEL {
        crate::any_subqueries::rewrite(&mut stmt);
    }
    let zone = crate::session_zone::handle(ctx);
    crate::session_zone::offset_literals(&mut stmt, &crate::session_zone::read(&zone));
    crate::asof::hide_matched_times(&mut stmt);
    let exposed = crate::hidden_columns::expose(ctx, &mut stmt)?;
    if crate::dialect::level(ctx) >= crate::natural_joins::LEVEL {
        crate::natural_joins::rewrite(ctx, &mut stmt).await;
    }
    if exposed {
        crate::hidden_columns::check_natural_joins(&stmt)?;
    }
    crate::structs::expand_fields(ctx, &mut stmt).await?;
    crate::window::rewrite_windows(ctx, &mut stmt).await?;
    crate::lateral_limit::rewrite(ctx, &mut stmt).await;
    crate::using_join::rewrite(&mut stmt)?;
    crate::hidden_columns::hide_in_wildcards(&mut stmt)?;
    crate::select_subqueries::rewrite(&mut stmt);
    crate::select_subqueries::from_less_scalars(&mut stmt);
    crate::single_row::rewrite(ctx, &mut stmt).await;
    crate::scalar_subqueries::rewrite(&mut stmt);
    crate::structs::field_names(&mut stmt);
    crate::structs::record_texts(ctx, &mut stmt).await;
    crate::corresponding::resolve(ctx, &mut stmt).await?;
    let planned = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            stmt.clone(),
        )))
        .await;
    let plan = match planned {
        // Aggregates of a column and of a cast of it have one name in DataFusion.
        Err(e) if crate::cast_names::is_duplicate_name(&e) => {
            let mut stmt = stmt;
            if !crate::cast_names::name_casts(ctx, &mut stmt) {
                return Err(e.into());
            }
            let stmt = datafusion::sql::parser::Statement::Statement(Box::new(stmt));
            ctx.state().statement_to_plan(stmt).await?
        }
        planned => planned?,
    };
    let plan = crate::set_ops::count_copies(plan)?;
    Ok(crate::params::infer_placeholder_types(plan)?)
}

/// Calls of names DataFusion gives another meaning than Postgres, as DataFusion's
/// function of Postgres' meaning: `array_remove(a, x)` and `array_replace(a, x, y)` act
/// on every element equal to `x` in Postgres, on the first one in DataFusion (its
/// `…_all` functions act on all). From dialect level 6 on; names are kept (the result
/// column is still `array_remove`).
fn postgres_meanings(stmt: &mut Statement) {
    use crate::sqlparser::ast::{Expr, Ident, ObjectName, ObjectNamePart};
    crate::naming::keep_call_names(stmt, renamed_call);
    let _ = crate::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        let to = renamed_call(e).and_then(|f| renamed_to(&f.name));
        if let (Some(to), Expr::Function(f)) = (to, &mut *e) {
            f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(to))]);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Postgres' names with another meaning in DataFusion, and DataFusion's name of
/// Postgres' meaning.
const RENAMED: &[(&str, &str)] = &[
    ("array_remove", "array_remove_all"),
    ("array_replace", "array_replace_all"),
    // A float here for numeric arguments too (Postgres: numeric for numeric).
    ("sign", "signum"),
];

fn renamed_to(name: &crate::sqlparser::ast::ObjectName) -> Option<&'static str> {
    if name.0.len() != 1 {
        return None;
    }
    let n = name.to_string().to_lowercase();
    RENAMED
        .iter()
        .find(|(from, _)| *from == n)
        .map(|(_, to)| *to)
}

fn renamed_call(e: &crate::sqlparser::ast::Expr) -> Option<&crate::sqlparser::ast::Function> {
    match e {
        crate::sqlparser::ast::Expr::Function(f) if renamed_to(&f.name).is_some() => Some(f),
        _ => None,
    }
}

/// The names of the relations a statement reads or writes, identifiers folded as Postgres
/// does, qualified names joined with `.` (`public.` dropped).
pub fn referenced_tables(stmt: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    let _ = crate::sqlparser::ast::visit_relations(stmt, |name| {
        if let Some(n) = crate::schemas::catalog_name(name) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let windows = crate::window::window_relations(stmt);
    if !windows.is_empty() {
        out.retain(|n| n != "tumble" && n != "hop" && n != "session");
        for w in windows {
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// Registers a table in a schema other than the default one (e.g. `freshet_catalog`).
pub fn register_in_schema(
    ctx: &SessionContext,
    schema_name: &str,
    table: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(), PlannerError> {
    crate::schemas::ensure(ctx, schema_name)?;
    let table_ref = TableReference::partial(schema_name, table);
    ctx.register_table(
        table_ref,
        Arc::new(MemTable::try_new(schema, vec![batches])?),
    )?;
    Ok(())
}
