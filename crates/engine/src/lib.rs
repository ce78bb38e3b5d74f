//! The dataflow runtime: changelog chunks flow from tables through operators into views.
//!
//! - [`chunk`]: a changelog batch (Arrow rows plus weights);
//! - [`plan`]: the streaming plan the planner produces;
//! - [`operator`]: the operator contract; [`operators`]: one file per operator;
//! - [`dataflow`]: a view's operators wired together from its plan;
//! - [`coordinator`]: the single writer task: applies table writes, pushes their changes
//!   through every dependent view and commits everything in one RocksDB batch per checkpoint;
//! - [`subscriptions`]: the committed changes of a relation, handed to `SUBSCRIBE`rs.

mod backfill;
pub mod chunk;
pub mod conflict;
pub mod coordinator;
pub mod dataflow;
pub mod dead_letters;
pub mod hll;
pub mod metrics;
pub mod numeric_special;
pub mod operator;
pub mod operators;
pub mod plan;
pub mod progress;
pub mod row_ids;
pub mod shards;
pub mod sink_log;
pub mod stable_hash;
pub mod subscriptions;
pub mod two_phase;
pub mod write_check;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use freshet_storage::StorageError;

/// Processing time: microseconds since the Unix epoch by the wall clock.
pub fn wall_clock_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A small seeded generator for the operators' randomized tests (no extra crate):
/// `rnd(n)` is uniform in `0..n`.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("duplicate key value violates unique constraint \"{table}_pkey\"")]
    DuplicateKey { table: String, detail: String },
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNull { table: String, column: String },
    #[error("value out of range: {0}")]
    OutOfRange(String),
    #[error("could not serialize access due to concurrent update")]
    Conflict,
    #[error("relation with id {0} does not exist")]
    UnknownRelation(u64),
    #[error("the engine has shut down")]
    ShutDown,
    /// A commit failed (`true`: the disk is full); nothing since the last one happened.
    #[error("could not commit to the data directory: {0}")]
    CommitFailed(String, bool),
    /// A reader's batch from before a failed commit: it starts again from its committed
    /// offsets.
    #[error("a commit failed since this reader started: it restarts from its committed offsets")]
    Rewound,
    #[error("internal error: {0}")]
    Internal(String),
    /// A statement panicked in the engine (a bug); it was undone.
    #[error("internal error: the engine failed on this statement ({0}); it was undone and the server goes on")]
    Panicked(String),
}

impl EngineError {
    /// The message as Postgres words it (`integer out of range`, `division by zero`),
    /// without DataFusion's wrapping: the text kept with a dead letter. The server maps
    /// errors it answers with on its own.
    pub fn row_message(&self) -> String {
        fn inner(e: &DataFusionError) -> String {
            match e {
                DataFusionError::Context(_, e) | DataFusionError::Diagnostic(_, e) => inner(e),
                DataFusionError::Shared(e) => inner(e),
                DataFusionError::Execution(m) => m.clone(),
                // A function's error with its SQLSTATE (`SqlStateError`) and others raised
                // outside DataFusion: their own message.
                DataFusionError::External(e) => e.to_string(),
                DataFusionError::ArrowError(a, _) => match a.as_ref() {
                    ArrowError::DivideByZero => "division by zero".into(),
                    ArrowError::ArithmeticOverflow(m)
                    | ArrowError::CastError(m)
                    | ArrowError::ComputeError(m) => m.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            }
        }
        match self {
            EngineError::DataFusion(e) => inner(e),
            other => other.to_string(),
        }
    }
}

impl From<ArrowError> for EngineError {
    fn from(e: ArrowError) -> Self {
        EngineError::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}

/// The coordinator thread's stack: it evaluates views' expressions, which recurse as
/// deep as a statement may nest (see `freshet_planner::complexity`).
pub const STACK_SIZE: usize = 16 * 1024 * 1024;

/// The message of a caught panic (`catch_unwind`'s payload).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}
