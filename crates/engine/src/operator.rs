//! The operator contract.

use freshet_storage::Txn;

use crate::chunk::Chunk;
use crate::EngineError;

/// One step of a view's dataflow.
///
/// An operator takes changelog chunks from its inputs (numbered from 0) and returns the
/// changelog of its output. It keeps its state in the engine's [`Txn`] under its own state
/// tables (key prefixes allocated by the dataflow), so it is committed with everything else
/// at the next checkpoint and restored by simply reading it again after a restart.
///
/// Rules: `process` consumes deletes as well as inserts (weights may be any non-zero
/// integer); it must not emit a row it did not derive from its inputs or its initial
/// output; errors are returned, never panicked.
///
/// Shards (`crate::shards`): an operator whose plan node has a key (a grouped aggregate's
/// groups, an equi-join's keys, a partitioned top-N's partition) may be built several
/// times, each instance seeing only the rows whose key hashes to it, over its own state
/// tables, on its own thread. Such an operator must keep nothing that spans keys: its
/// output for a key depends only on that key's rows, the watermark and time, and it reads
/// and writes only its own state tables (numbered below `shards::MAX_TABLES`, or
/// `u16::MAX`). Its output's order within a chunk may differ from one instance's: the
/// changes of different keys are concatenated shard by shard.
pub trait Operator: Send {
    /// Short name for EXPLAIN and errors.
    fn name(&self) -> &'static str;

    /// Processes one chunk from input `input` and returns the output changelog.
    fn process(
        &mut self,
        input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError>;

    /// The watermark of the operator's input advanced to `watermark` (for several inputs,
    /// the smallest of theirs): rows whose watermark columns are below it are final.
    /// Returns output the operator releases because of it (e.g. windows that closed).
    fn on_watermark(
        &mut self,
        _watermark: i64,
        _state: &mut Txn,
    ) -> Result<Option<Chunk>, EngineError> {
        Ok(None)
    }

    /// Processing time advanced to `now` (µs since the epoch); returns the rows that
    /// enter or leave the output because of it. Operators whose output does not depend
    /// on time ([`Operator::uses_time`]) ignore it.
    fn on_tick(&mut self, _now: i64, _state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        Ok(None)
    }

    /// Whether the operator's output depends on processing time.
    fn uses_time(&self) -> bool {
        false
    }

    /// Run on at most `threads` threads from the next step on (operators that run parts
    /// of their work side by side: shards, the first phase of an aggregate). What the
    /// operator outputs and stores must not depend on it.
    fn set_threads(&mut self, _threads: usize) {}

    /// The operator is one of `shards` instances of one operator (`crate::shards`): it
    /// keeps what it caches in memory to its share of one instance's budget, so that the
    /// shards together hold what one would.
    fn set_memory_share(&mut self, _shards: usize) {}

    /// Output the operator has before any input (e.g. a global aggregate's row over zero
    /// rows). Called once, when the view is created.
    fn initial_output(&mut self, _state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        Ok(None)
    }
}
