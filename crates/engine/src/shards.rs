//! Shards of one operator: a stateful operator whose state is per key (a grouped
//! aggregate, an equi-join, a partitioned top-N) runs as N instances, each owning the keys
//! that hash to it, on N threads at once.
//!
//! - **State.** Shard `s` keeps its state tables under table numbers `s << 8 | n` (see
//!   [`shard_table_id`]): each shard's state is one contiguous key range, split off the
//!   engine's transaction while the shard runs ([`Txn::split_off`]) and merged back after
//!   ([`Txn::absorb`]), so a checkpoint still commits every shard's state, every view's rows
//!   and the offsets they reflect in one synced batch. A view with one shard is stored as
//!   before shards existed (an operator's own table numbers).
//! - **Exchange.** Each input chunk is split by a stable hash of the row's key (the group
//!   values, the join key, the partition values), encoded as the operator encodes it, so
//!   rows with equal keys, from either side of a join, meet in the same shard, today and
//!   after a restart ([`shard_of`] uses a fixed hash, not a per-process seeded one).
//! - **Barrier.** A chunk, a watermark or a tick is one step: every shard finishes it
//!   before the output (the shards' outputs in shard order) goes on. Within one key the
//!   order of changes is the sequential one; between keys it does not matter, since each
//!   shard's changelog is valid on its own and consumers add up weights.
//! - **Failures.** A shard's error fails the step, and a panic is re-raised, after every
//!   shard's transaction is merged back: a statement running in the engine's transaction
//!   undoes what every shard wrote.
//!
//! **Shards are vnodes; threads are the parallelism.** The shard count of a view is fixed
//! when it is created (`streaming_max_parallelism`, by default its `streaming_parallelism`)
//! and kept in the catalog: it decides where the state lives, like RisingWave's vnodes and
//! Flink's key groups (its maximum parallelism). The threads the shards run on are a
//! separate number, at most the shards (the view's parallelism): each thread runs whole
//! shards, so it can change while the view runs (`ALTER MATERIALIZED VIEW … SET
//! PARALLELISM`, [`Operator::set_threads`]) without moving any state.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use freshet_storage::{keys, Txn};

use crate::chunk::{Chunk, RowFormat};
use crate::operator::Operator;
use crate::operators::eval_all;
use crate::plan::PhysExpr;
use crate::stable_hash::stable_hash;
use crate::EngineError;

/// The most shards an operator can have (the high byte of a state table number).
pub const MAX_SHARDS: usize = 64;

/// Rows per thread a chunk's shards run on: a chunk of fewer than twice this runs shard
/// after shard on the calling thread (starting a thread would cost more than the work),
/// a larger one on up to one thread per this many rows (and per core).
pub(crate) const ROWS_PER_THREAD: usize = 256;

/// The cores, the most threads one step of an operator's shards runs on.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()))
}

/// The most state tables an operator run as shards may have besides its metadata table
/// (numbered `u16::MAX`): table numbers below this.
pub const MAX_TABLES: u16 = 0xFF;

/// The state table id of table `n` of shard `shard` of operator `op` of view `view`: its
/// number is `shard << 8 | n`, the metadata table's (`u16::MAX`) `shard << 8 | 0xFF`.
pub(crate) fn shard_table_id(view: u64, op: u16, shard: usize, n: u16) -> u64 {
    debug_assert!((n < MAX_TABLES || n == u16::MAX) && shard < MAX_SHARDS);
    let low = if n == u16::MAX { 0xFF } else { n & 0xFF };
    keys::state_table_id(view, op, ((shard as u16) << 8) | low)
}

/// The key range of shard `shard`'s state tables.
fn shard_range(view: u64, op: u16, shard: usize) -> (Vec<u8>, Vec<u8>) {
    let start = shard_table_id(view, op, shard, 0);
    // The next shard's first table; after the last possible shard, the next operator's.
    let end = keys::state_table_id(view, op, 0) + ((shard as u64 + 1) << 8);
    (keys::state_prefix(start), keys::state_prefix(end))
}

/// The shard, of `shards`, of a row whose key encodes to `key` ([`stable_hash`]: the
/// shard does not depend on the process or the build).
pub(crate) fn shard_of(key: &[u8], shards: usize) -> usize {
    ((u128::from(stable_hash(key)) * shards as u128) >> 64) as usize
}

/// An operator run as shards (see the module documentation).
pub(crate) struct Sharded {
    shards: Vec<Box<dyn Operator>>,
    /// Per input, the expressions of the key rows are routed by.
    keys: Vec<Vec<PhysExpr>>,
    /// Per shard, the key range of its state.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// The most threads the shards run on at once (the view's parallelism).
    threads: usize,
}

impl Sharded {
    /// `make(table_id)` builds one instance over the given state table ids; `keys` are
    /// each input's key expressions; `threads` the most threads they run on at once.
    pub fn new(
        view: u64,
        op: u16,
        count: usize,
        threads: usize,
        keys: Vec<Vec<PhysExpr>>,
        mut make: impl FnMut(&dyn Fn(u16) -> u64) -> Result<Box<dyn Operator>, EngineError>,
    ) -> Result<Sharded, EngineError> {
        if !(2..=MAX_SHARDS).contains(&count) {
            return Err(EngineError::Internal(format!("{count} shards")));
        }
        let mut shards = Vec::with_capacity(count);
        for s in 0..count {
            let mut shard = make(&move |n| shard_table_id(view, op, s, n))?;
            shard.set_memory_share(count);
            shards.push(shard);
        }
        Ok(Sharded {
            shards,
            keys,
            ranges: (0..count).map(|s| shard_range(view, op, s)).collect(),
            threads: threads.clamp(1, count),
        })
    }

    /// The rows of `chunk` (from input `input`) each shard owns; `None` for shards that
    /// own none.
    fn exchange(&self, input: usize, chunk: Chunk) -> Result<Vec<Option<Chunk>>, EngineError> {
        let n = self.shards.len();
        let exprs = self.keys.get(input).ok_or_else(|| {
            EngineError::Internal(format!("sharded {} has no input {input}", self.name()))
        })?;
        let cols = eval_all(exprs, &chunk.batch)?;
        let encoded = RowFormat::of_arrays(&cols).encode_columns(&cols, chunk.len())?;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (r, key) in encoded.iter().enumerate() {
            rows[shard_of(key, n)].push(r as u32);
        }
        if let Some(only) = rows.iter().position(|r| r.len() == chunk.len()) {
            let mut out: Vec<Option<Chunk>> = (0..n).map(|_| None).collect();
            out[only] = Some(chunk);
            return Ok(out);
        }
        rows.into_iter()
            .map(|idx| {
                if idx.is_empty() {
                    return Ok(None);
                }
                let weights = idx.iter().map(|&r| chunk.weights[r as usize]).collect();
                let batch = take_record_batch(&chunk.batch, &UInt32Array::from(idx))?;
                Ok(Some(Chunk::new(batch, weights)))
            })
            .collect()
    }

    /// Runs `work` on each shard that has some (`work[s]`), on up to `threads` threads
    /// (and cores, and the operator's parallelism; shards shared out between them), and
    /// returns their outputs in shard order.
    fn run<T: Send>(
        &mut self,
        state: &mut Txn,
        work: Vec<Option<T>>,
        threads: usize,
        f: impl Fn(&mut dyn Operator, T, &mut Txn) -> Result<Option<Chunk>, EngineError> + Sync,
    ) -> Result<Vec<Chunk>, EngineError> {
        let busy = work.iter().filter(|w| w.is_some()).count();
        let workers = threads.min(self.threads).min(busy).min(cores());
        if workers < 2 {
            // Shards own disjoint ranges: on one thread they share the transaction.
            let mut out = Vec::new();
            for (op, w) in self.shards.iter_mut().zip(work) {
                if let Some(w) = w {
                    out.extend(f(op.as_mut(), w, state)?);
                }
            }
            return Ok(out);
        }
        struct Job<'a, T> {
            op: &'a mut dyn Operator,
            txn: Txn,
            work: Option<T>,
            result: Option<std::thread::Result<Result<Option<Chunk>, EngineError>>>,
        }
        let mut jobs: Vec<Mutex<Job<'_, T>>> = Vec::with_capacity(busy);
        for ((op, w), range) in self.shards.iter_mut().zip(work).zip(&self.ranges) {
            if let Some(w) = w {
                jobs.push(Mutex::new(Job {
                    op: op.as_mut(),
                    txn: state.split_off(std::slice::from_ref(range)),
                    work: Some(w),
                    result: None,
                }));
            }
        }
        let run = |job: &Mutex<Job<'_, T>>| {
            let mut job = job.lock().unwrap_or_else(|p| p.into_inner());
            let Job { op, txn, work, .. } = &mut *job;
            let Some(w) = work.take() else { return };
            // The transaction stays outside the unwinding: it holds writes made before.
            let r = catch_unwind(AssertUnwindSafe(|| f(&mut **op, w, txn)));
            job.result = Some(r);
        };
        // Worker `w` runs jobs w, w + workers, …; worker 0 is this thread.
        let share = |w: usize| jobs.iter().skip(w).step_by(workers);
        std::thread::scope(|scope| {
            let mut unstarted = Vec::new();
            for w in 1..workers {
                let started = std::thread::Builder::new()
                    .name("freshet-shard".into())
                    .spawn_scoped(scope, move || share(w).for_each(run));
                if started.is_err() {
                    unstarted.push(w);
                }
            }
            share(0).for_each(run);
            // The shards of a worker whose thread could not start run here.
            for w in unstarted {
                share(w).for_each(run);
            }
        });
        let mut out = Vec::new();
        let mut failure: Option<EngineError> = None;
        let mut panic = None;
        for job in jobs {
            let job = job.into_inner().unwrap_or_else(|p| p.into_inner());
            state.absorb(job.txn);
            match job.result {
                Some(Ok(Ok(c))) => out.extend(c),
                Some(Ok(Err(e))) => failure = failure.or(Some(e)),
                Some(Err(p)) => panic = panic.or(Some(p)),
                None => {
                    failure = failure.or(Some(EngineError::Internal("a shard did not run".into())))
                }
            }
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// `f` of each item, in order: the first on this thread, each other on a thread of its
/// own (or here, if the thread cannot start). A panic goes on as a panic.
pub(crate) fn on_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let Some((first, rest)) = items.split_first() else {
        return Vec::new();
    };
    if rest.is_empty() {
        return vec![f(first)];
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .iter()
            .map(|item| {
                std::thread::Builder::new()
                    .name("freshet-part".into())
                    .spawn_scoped(scope, move || f(item))
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        out.push(f(first));
        for (h, item) in handles.into_iter().zip(rest) {
            out.push(match h {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(_) => f(item),
            });
        }
        out
    })
}

/// The chunks as one (`None` if there are none).
fn concat(chunks: Vec<Chunk>) -> Result<Option<Chunk>, EngineError> {
    let mut chunks: Vec<Chunk> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
    if chunks.len() <= 1 {
        return Ok(chunks.pop());
    }
    let schema = chunks[0].schema();
    let batches: Vec<_> = chunks.iter().map(|c| c.batch.clone()).collect();
    let batch = concat_batches(&schema, &batches)?;
    let weights = chunks.into_iter().flat_map(|c| c.weights).collect();
    Ok(Some(Chunk::new(batch, weights)))
}

impl Operator for Sharded {
    fn name(&self) -> &'static str {
        self.shards[0].name()
    }

    fn process(
        &mut self,
        input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let threads = chunk.len() / ROWS_PER_THREAD;
        let empty = chunk.schema();
        let work = self.exchange(input, chunk)?;
        let outs = self.run(state, work, threads, |op, c, txn| {
            op.process(input, c, txn).map(Some)
        })?;
        // Every shard's output has the operator's output schema; with no shard run, the
        // empty input stands for an empty output of the first shard.
        let schema = outs.first().map(Chunk::schema);
        match (concat(outs)?, schema) {
            (Some(c), _) => Ok(c),
            (None, Some(schema)) => Ok(Chunk::empty(schema)),
            (None, None) => self.shards[0].process(input, Chunk::empty(empty), state),
        }
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        state: &mut Txn,
    ) -> Result<Option<Chunk>, EngineError> {
        let work = vec![Some(()); self.shards.len()];
        concat(self.run(state, work, usize::MAX, |op, (), txn| {
            op.on_watermark(watermark, txn)
        })?)
    }

    fn on_tick(&mut self, now: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let work = vec![Some(()); self.shards.len()];
        concat(self.run(state, work, usize::MAX, |op, (), txn| op.on_tick(now, txn))?)
    }

    fn set_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, self.shards.len());
    }

    fn uses_time(&self) -> bool {
        self.shards[0].uses_time()
    }

    fn initial_output(&mut self, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let work = vec![Some(()); self.shards.len()];
        concat(self.run(state, work, 1, |op, (), txn| op.initial_output(txn))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shard ranges are disjoint, in order, and hold exactly their shard's tables.
    #[test]
    fn shard_ranges_hold_their_tables() {
        for s in 0..MAX_SHARDS {
            let (start, end) = shard_range(7, 3, s);
            assert!(start < end);
            for n in [0u16, 1, 5, MAX_TABLES - 1, u16::MAX] {
                let k = keys::state_prefix(shard_table_id(7, 3, s, n));
                assert!(start <= k && k < end, "shard {s} table {n}");
            }
            if s + 1 < MAX_SHARDS {
                assert_eq!(end, shard_range(7, 3, s + 1).0);
            }
        }
    }

    /// The hash spreads keys over every shard, about evenly, and is fixed.
    #[test]
    fn shard_of_spreads_and_is_stable() {
        let mut counts = [0usize; 4];
        for i in 0..40_000u64 {
            counts[shard_of(&i.to_be_bytes(), 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of(b"freshet", 1), 0);
        assert_eq!(shard_of(b"freshet", 64), shard_of(b"freshet", 64));
    }
}
