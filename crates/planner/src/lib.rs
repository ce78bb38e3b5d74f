//! Planning: SQL text to catalog changes, query plans and streaming plans.
//!
//! - [`parser`]: splits a query string into statements (sqlparser, Postgres dialect, plus
//!   Freshet's own statements such as `FLUSH`);
//! - [`catalog`]: tables and views, persisted as one document;
//! - [`context`]: the DataFusion session used to bind and type SQL against the catalog;
//! - [`stream_planner`]: DataFusion's logical plan of a view's query → the engine's
//!   streaming plan (incremental operators);
//! - [`window`]: `TUMBLE`/`HOP`; [`temporal`]: `now()` in a view's filters.

pub mod any_nulls;
pub mod any_subqueries;
pub mod asof;
pub mod cast_names;
pub mod catalog;
pub mod char_casts;
pub mod checked_arith;
pub mod complexity;
pub mod context;
pub mod corresponding;
pub mod dialect;
pub mod expr_rules;
pub mod float_numeric;
pub mod guarded_udfs;
pub mod hidden_columns;
pub mod hll_udaf;
pub mod index_stmt;
pub mod int_casts;
pub mod int_literals;
pub mod interval_input;
pub mod json_aggs;
pub mod json_sets;
pub mod json_tables;
pub mod jsonb;
pub mod jsonpath;
pub mod lateral_limit;
pub mod lateral_sets;
pub mod literals;
pub mod naming;
pub mod natural_joins;
pub mod numeric_casts;
pub mod numeric_special;
pub mod numeric_sums;
pub mod params;
pub mod parser;
pub mod percentile_disc;
pub mod pg_aggregates;
pub mod pg_array_length;
pub mod pg_at_time_zone;
pub mod pg_base64;
pub mod pg_catalog;
pub mod pg_ceil;
pub mod pg_date_part;
pub mod pg_epoch;
pub mod pg_functions;
pub mod pg_input;
pub mod pg_interval;
pub mod pg_power;
pub mod pg_series;
pub mod pg_text;
pub mod pg_to_char;
pub mod pg_to_date;
pub mod pg_types;
pub mod pg_values;
pub mod plain_views;
pub mod scalar_subqueries;
pub mod schemas;
pub mod select_subqueries;
pub mod series;
pub mod session_zone;
pub mod set_ops;
pub mod show_create;
pub mod similar_to;
pub mod single_row;
pub mod sink_def;
pub mod sql_dialect;
pub mod srf_placement;
pub mod stream_planner;
pub mod structs;
pub mod subquery_scope;
pub mod temporal;
pub mod text_aggs;
pub mod users;
pub mod using_join;
pub mod window;

pub use datafusion::sql::sqlparser;

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("{message}")]
    Syntax {
        message: String,
        /// 1-based character position in the query string.
        position: Option<usize>,
    },
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    #[error("cannot drop {kind} {name} because other objects depend on it")]
    DependentObjects {
        kind: &'static str,
        name: String,
        detail: String,
    },
    #[error("\"{name}\" is not a {expected}")]
    WrongObjectType {
        name: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// `54001`: nested too deeply to plan (see [`complexity`]).
    #[error("{0}")]
    TooComplex(String),
    #[error("internal error: {0}")]
    Internal(String),
}
