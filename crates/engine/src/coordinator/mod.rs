//! The coordinator: the single writer of a Freshet database.
//!
//! It runs on its own thread and owns the write buffer ([`Txn`]) and every view's
//! [`Dataflow`]. Commands arrive from sessions over a channel and are handled one at a
//! time, so statements are serializable:
//!
//! - a table write is validated (primary key, NOT NULL, the deleted rows are still the
//!   current ones), applied to the table's rows, and its changelog pushed through every
//!   view that reads the table, then through the views that read those views, and so on;
//!   if anything fails, the statement's writes are undone;
//! - a commit (checkpoint) writes the buffer — table rows, view rows, operator state and
//!   catalog changes — in one synced RocksDB batch. It happens when a session waits for its
//!   write (read-your-writes; all writers queued at that moment share the commit), on
//!   `FLUSH`, on DDL, and otherwise every `checkpoint_interval`.
//!
//! Queries read committed data only, so every view is consistent with every other view and
//! with the tables.
//!
//! This module is the command loop (commands, commits, rewinds after a failed commit,
//! ticks, subscriptions); the rest is split by concern: `dml` (table writes), `ingest`
//! (source and topic rows, and pushing changes through the views), `positions` (offsets
//! and watermarks) and `ddl` (definitions, and building a new view a step at a time).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use freshet_storage::{codec, keys, prefix_end, Store, Txn};
use tokio::sync::oneshot;

use crate::backfill::{Backfill, Inputs};
use crate::chunk::{batch_rows, column_types, Chunk, Row};
use crate::dataflow::Dataflow;
use crate::dead_letters::{DeadLetters, Policies, Retention};
use crate::operators::add_count;
pub use crate::operators::materialize::{row_count_key, sink_counts, view_row_count, Output};
use crate::plan::{RelationId, StreamNode};
use crate::subscriptions::{Subscribers, Subscription};
use crate::write_check::{check_row, display_value, duplicate_key, pk_row_key};
use crate::EngineError;

mod ddl;
mod dml;
mod ingest;
mod parallel;
mod positions;
mod sink_into;

pub use positions::{stored_offsets, stored_watermark};
use positions::{stored_watermark_in, window_close_error};

/// A table as the engine sees it.
#[derive(Clone, Debug)]
pub struct TableDesc {
    pub id: RelationId,
    pub name: String,
    pub schema: SchemaRef,
    /// Primary key column indexes; empty: the table is a multiset of rows.
    pub pk: Vec<usize>,
    /// Per column: NOT NULL (primary key columns included).
    pub not_null: Vec<bool>,
    /// `WATERMARK`: the event-time column and the delay (µs). The table's watermark is
    /// its largest event time minus the delay; rows below it are late.
    pub watermark: Option<(usize, i64)>,
    /// What a sink's row does to a row of the same key (`CREATE SINK … INTO`); DML
    /// resolves its own conflicts.
    pub sink_conflict: SinkConflict,
    /// `WITH TTL` on the watermark: rows the watermark passes are deleted from the table
    /// (not from the views over it), through the expiry index (`keys::expiry_key`).
    pub expires: bool,
    /// Its last column is the hidden `_row_id` (its primary key), which a row written
    /// without it gets here (see [`crate::row_ids`]).
    pub row_id: bool,
}

impl TableDesc {
    /// The number of its columns: its stored rows' without a hidden row id.
    pub fn column_count(&self) -> usize {
        self.schema.fields().len() - usize::from(self.row_id)
    }
}

/// How a row written into a keyed table by a sink meets the row it finds under its key:
/// the table's `ON CONFLICT` (RisingWave's default for sinks: it overwrites).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SinkConflict {
    /// It replaces the row, unless its version columns (may be none) are older.
    #[default]
    Overwrite,
    /// The row stays.
    Ignore,
    /// Its non-NULL values replace the row's, unless its version columns are older.
    UpdateNonNull,
    /// As `Overwrite` / `UpdateNonNull`, judged by these version columns.
    Versioned { merge: bool, columns: Vec<usize> },
}

/// A materialized view as the engine sees it.
#[derive(Clone, Debug)]
pub struct ViewDesc {
    pub id: RelationId,
    pub name: String,
    pub schema: SchemaRef,
    pub plan: StreamNode,
    /// The plan never deletes a row (its rows are stored under sequence numbers).
    pub append_only: bool,
    /// Where its rows go: its table, or a sink.
    pub output: Output,
    /// How its dataflow uses threads (shards, two-phase aggregation).
    pub parallelism: crate::dataflow::Parallelism,
    /// Planned before `numeric` had NaN and infinities (dialect level 11): its
    /// expressions would compute with them as with numbers, so a change carrying one is
    /// refused (`Dataflow::push`).
    pub refuses_specials: bool,
}

/// Rows to delete (as they currently are) and rows to insert, in the table's schema.
#[derive(Clone)]
pub struct TableWrite {
    pub table: RelationId,
    pub deletes: Vec<RecordBatch>,
    pub inserts: Vec<RecordBatch>,
}

pub enum Ddl {
    CreateTable(TableDesc),
    /// A source: no rows, only a schema for the views that read it.
    CreateSource {
        id: RelationId,
        schema: SchemaRef,
    },
    CreateView(ViewDesc),
    /// A view's shards run on at most `threads` threads from now on (`ALTER
    /// MATERIALIZED VIEW … SET PARALLELISM`): its state stays where it is.
    SetParallelism {
        view: RelationId,
        threads: usize,
    },
    Drop(RelationId),
    /// Only the catalog document changes (users, grants).
    Catalog,
}

/// The dead-letter table of sources (`freshet_catalog.source_errors`).
pub const SOURCE_ERRORS: RelationId = u64::MAX - 1;

/// Columns of [`SOURCE_ERRORS`].
pub fn source_errors_schema() -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("source_name", DataType::Utf8, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("offset", DataType::Int64, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, true),
    ]))
}

/// Events that came in below their source's watermark (`freshet_catalog.late_events`).
pub const LATE_EVENTS: RelationId = u64::MAX - 2;

/// Columns of [`LATE_EVENTS`].
pub fn late_events_schema() -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let ts = freshet_storage::codec::timestamptz();
    std::sync::Arc::new(Schema::new(vec![
        Field::new("source_name", DataType::Utf8, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("offset", DataType::Int64, true),
        Field::new("event_time", ts.clone(), true),
        Field::new("watermark", ts, true),
        Field::new("payload", DataType::Utf8, true),
    ]))
}

/// A late event: (partition, offset, event time µs, watermark µs, payload).
pub type Late = (i32, i64, i64, i64, String);

/// Rows read from a source for one view, with the offsets they reach.
pub struct SourceData {
    pub view: RelationId,
    pub source: RelationId,
    pub source_name: String,
    pub chunk: Chunk,
    /// Where each row of `chunk` was read: (partition, offset); empty if unknown.
    pub positions: Vec<(i32, i64)>,
    /// Next offset to read per partition.
    pub offsets: Vec<(i32, i64)>,
    /// Dead letters: (partition, offset, error, payload).
    pub errors: Vec<(i32, i64, String, String)>,
    /// The source's watermark after these rows, if it has one.
    pub watermark: Option<i64>,
    /// Largest event time per partition (stored with the offsets).
    pub maxima: Vec<(i32, i64)>,
    pub late: Vec<Late>,
}

/// Rows read from a topic that feeds a table.
pub struct FeedData {
    pub table: RelationId,
    /// Rows to write; in a table with a primary key a row replaces the one with its key.
    pub rows: Chunk,
    /// Where each of `rows` was read: (partition, offset); empty if unknown.
    pub positions: Vec<(i32, i64)>,
    /// Primary keys to delete (upsert).
    pub deletes: Vec<Row>,
    pub offsets: Vec<(i32, i64)>,
    pub errors: Vec<(i32, i64, String, String)>,
    /// The table's watermark after these rows (tables with a `WATERMARK`).
    pub watermark: Option<i64>,
    /// Largest event time per partition (stored with the offsets).
    pub maxima: Vec<(i32, i64)>,
    pub late: Vec<Late>,
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

enum Command {
    Ddl {
        ddl: Box<Ddl>,
        catalog: Vec<u8>,
        reply: Reply<()>,
    },
    /// Table writes applied as one statement: all of them or none (a transaction).
    Write {
        writes: Vec<TableWrite>,
        wait: bool,
        /// The number of rows that were late (below the table's watermark) and so went
        /// to `late_events` instead of the table.
        reply: Reply<u64>,
    },
    Flush(Reply<()>),
    /// Rows read by a reader started at the given epoch (see [`Engine::epoch`]).
    Source(Box<SourceData>, u64, Reply<()>),
    Feed(Box<FeedData>, u64, Reply<()>),
    Subscribe(Box<SubscribeRequest>),
    Shutdown(Reply<()>),
}

/// See [`Engine::subscribe`].
struct SubscribeRequest {
    relation: RelationId,
    limit: usize,
    at_snapshot: Box<dyn FnOnce(i64) + Send>,
    reply: Reply<Subscription>,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub checkpoint_interval: Duration,
    /// Threads that apply the source batches of different views side by side (see
    /// `parallel`); 1: all on the coordinator thread.
    pub view_threads: usize,
    /// How long dead letters are kept, per source.
    pub dead_letters: Arc<Policies>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            checkpoint_interval: Duration::from_secs(1),
            view_threads: default_view_threads(),
            dead_letters: Policies::new(Retention::default()),
        }
    }
}

/// One per core: the default of [`EngineConfig::view_threads`].
pub fn default_view_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get())
}

/// A handle on the coordinator; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Command>,
    epoch: Arc<AtomicU64>,
    /// The coordinator thread, joined by [`Engine::shutdown`].
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Engine {
    /// Starts the coordinator over `store` with the existing tables and views (views in
    /// creation order, so that a view comes after everything it reads).
    pub fn start(
        store: Store,
        tables: Vec<TableDesc>,
        sources: Vec<(RelationId, SchemaRef)>,
        views: Vec<ViewDesc>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let epoch = Arc::new(AtomicU64::new(0));
        let mut c = Coordinator {
            epoch: epoch.clone(),
            committed: None,
            descs: Vec::new(),
            txn: Txn::new(store),
            tables: HashMap::new(),
            schemas: HashMap::new(),
            sources: std::collections::HashSet::new(),
            views: Vec::new(),
            waiters: Vec::new(),
            queued: VecDeque::new(),
            backfill: None,
            abandoned: Vec::new(),
            dead: DeadLetters::new(config.dead_letters.clone()),
            subscribers: Subscribers::default(),
            config,
        };
        c.schemas.insert(SOURCE_ERRORS, source_errors_schema());
        c.schemas.insert(LATE_EVENTS, late_events_schema());
        for t in tables {
            if t.row_id {
                if let Some(mark) = c.txn.get(&crate::row_ids::mark_key(t.id))? {
                    crate::row_ids::observe(crate::row_ids::decode_mark(&mark).unwrap_or(0));
                }
            }
            c.schemas.insert(t.id, t.schema.clone());
            c.tables.insert(t.id, t);
        }
        for (id, schema) in sources {
            c.schemas.insert(id, schema);
            c.sources.insert(id);
        }
        for v in views {
            c.schemas.insert(v.id, v.schema.clone());
            c.views.push(Dataflow::for_view(&v)?);
            c.descs.push(v);
        }
        // A backfill the server died in: its committed pages go.
        c.clean_abandoned_backfill()?;
        c.txn.commit()?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("freshet-coordinator".into())
            .stack_size(crate::STACK_SIZE)
            .spawn(move || c.run(rx))
            .map_err(|e| EngineError::Internal(format!("cannot start coordinator: {e}")))?;
        Ok(Engine {
            tx,
            epoch,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// Changes each time a failed commit drops the uncommitted work of every reader (see
    /// [`Coordinator::commit`]). A reader takes the epoch when it starts, from the
    /// offsets committed then; its batches are refused with [`EngineError::Rewound`] once
    /// the epoch moved on, and it starts again from the offsets committed now.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| EngineError::ShutDown)?;
        rx.await.map_err(|_| EngineError::ShutDown)?
    }

    /// Applies DDL and stores `catalog` (the new catalog document) in the same commit.
    pub async fn ddl(&self, ddl: Ddl, catalog: Vec<u8>) -> Result<(), EngineError> {
        self.call(|reply| Command::Ddl {
            ddl: Box::new(ddl),
            catalog,
            reply,
        })
        .await
    }

    /// Applies a table write. With `wait`, returns once it is committed (and so visible
    /// in every view); otherwise once it is applied (visible after the next checkpoint).
    /// Returns how many inserted rows were late (tables with a watermark).
    pub async fn write(&self, write: TableWrite, wait: bool) -> Result<u64, EngineError> {
        self.write_all(vec![write], wait).await
    }

    /// Applies several table writes as one statement (a transaction's, at `COMMIT`): all
    /// of them or, if one fails, none. Like [`Engine::write`] otherwise.
    pub async fn write_all(&self, writes: Vec<TableWrite>, wait: bool) -> Result<u64, EngineError> {
        self.call(|reply| Command::Write {
            writes,
            wait,
            reply,
        })
        .await
    }

    /// Queues rows read from a source for one view and returns at once; the returned
    /// [`Applied`] tells when (and whether) they were applied. One view's batches are
    /// applied in the order they were queued (another view's may come between, or run
    /// beside them: see `parallel`), so a reader may keep a few batches in flight (see
    /// [`Pipeline`]) and read on while the engine applies the previous ones.
    pub fn source_data_queued(&self, epoch: u64, data: SourceData) -> Result<Applied, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Source(Box::new(data), epoch, reply))
            .map_err(|_| EngineError::ShutDown)?;
        Ok(Applied(rx))
    }

    /// Queues rows read from the topic feeding a table, like
    /// [`Engine::source_data_queued`].
    pub fn feed_queued(&self, epoch: u64, data: FeedData) -> Result<Applied, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Feed(Box::new(data), epoch, reply))
            .map_err(|_| EngineError::ShutDown)?;
        Ok(Applied(rx))
    }

    /// Subscribes to the committed changes of table or view `relation`. The engine
    /// commits what it holds, then calls `at_snapshot` with that checkpoint's timestamp
    /// on its own thread, before anything else commits: a snapshot taken there (say, a
    /// storage snapshot to read the rows from) is exactly the state the first changes
    /// apply to. `limit`: changed rows the subscriber may leave unread before it is
    /// dropped ([`Event::Ended`]).
    pub async fn subscribe(
        &self,
        relation: RelationId,
        limit: usize,
        at_snapshot: impl FnOnce(i64) + Send + 'static,
    ) -> Result<Subscription, EngineError> {
        self.call(|reply| {
            Command::Subscribe(Box::new(SubscribeRequest {
                relation,
                limit,
                at_snapshot: Box::new(at_snapshot),
                reply,
            }))
        })
        .await
    }

    /// Returns once everything applied so far is committed.
    pub async fn flush(&self) -> Result<(), EngineError> {
        self.call(Command::Flush).await
    }

    /// Commits and stops the coordinator, and waits until its thread has ended (so that
    /// its state, and its handle on the database, are gone).
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        self.call(Command::Shutdown).await?;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            tokio::task::spawn_blocking(move || t.join())
                .await
                .map_err(|e| EngineError::Internal(format!("joining the coordinator: {e}")))?
                .map_err(|_| EngineError::Internal("the coordinator panicked".into()))?;
        }
        Ok(())
    }
}

/// The engine's answer to a queued batch.
pub struct Applied(oneshot::Receiver<Result<(), EngineError>>);

impl Applied {
    /// Blocks until the batch is applied.
    pub fn wait(self) -> Result<(), EngineError> {
        self.0.blocking_recv().map_err(|_| EngineError::ShutDown)?
    }
}

/// A reader's batches in flight: at most `depth` queued and not yet applied, so the reader
/// works on the next batch while the engine applies the previous one, and still cannot run
/// ahead of it by more than `depth` batches. An error of any batch stops the reader (a
/// later batch may have been applied by then; each batch carries its own offsets, so what
/// is stored stays consistent).
pub struct Pipeline {
    depth: usize,
    in_flight: VecDeque<Applied>,
}

impl Pipeline {
    pub fn new(depth: usize) -> Pipeline {
        Pipeline {
            depth: depth.max(1),
            in_flight: VecDeque::new(),
        }
    }

    /// Adds a queued batch, waiting for the oldest ones while more than `depth` are in
    /// flight.
    pub fn push(&mut self, applied: Applied) -> Result<(), EngineError> {
        self.in_flight.push_back(applied);
        while self.in_flight.len() > self.depth {
            if let Some(a) = self.in_flight.pop_front() {
                a.wait()?;
            }
        }
        Ok(())
    }
}

/// What the coordinator knows of the catalog: restored from the last commit when a
/// commit fails.
#[derive(Clone)]
struct Definitions {
    tables: HashMap<RelationId, TableDesc>,
    schemas: HashMap<RelationId, SchemaRef>,
    sources: std::collections::HashSet<RelationId>,
    descs: Vec<ViewDesc>,
}

struct Coordinator {
    /// See [`Engine::epoch`].
    epoch: Arc<AtomicU64>,
    /// The definitions as of the last commit, if DDL changed them since (else `None`
    /// after a commit, and the current ones are the committed ones).
    committed: Option<Definitions>,
    /// The views' definitions, in the order of `views`, to build their dataflows anew.
    descs: Vec<ViewDesc>,
    txn: Txn,
    tables: HashMap<RelationId, TableDesc>,
    /// Schemas of all tables and views.
    schemas: HashMap<RelationId, SchemaRef>,
    /// Sources (no stored rows).
    sources: std::collections::HashSet<RelationId>,
    /// Views in creation order.
    views: Vec<Dataflow>,
    /// Replies to send once the buffer is committed.
    waiters: Vec<Waiter>,
    /// Commands taken off the channel and not handled yet (see
    /// [`Coordinator::handle_queued`]).
    queued: VecDeque<Command>,
    /// A view being built between other work (see [`crate::backfill`]), and who waits
    /// for it.
    backfill: Option<(Backfill, Waiter)>,
    /// Backfills a failed commit or an engine error stopped: to answer and clean up.
    abandoned: Vec<(Backfill, Waiter)>,
    /// The dead-letter tables' arrival index and retention.
    dead: DeadLetters,
    /// Who subscribed to what (`SUBSCRIBE`), and the changes to hand them.
    subscribers: Subscribers,
    config: EngineConfig,
}

/// Under load, how long the engine works on other commands between two steps of a view
/// being built (each step reads `backfill::STEP` rows).
const BACKFILL_SHARE: Duration = Duration::from_millis(50);
/// Steps of a view being built between two commits at most (4 × 16,384 input rows).
const BACKFILL_STEPS_PER_COMMIT: usize = 4;

/// Answers a caller once the commit it waits for is done (or failed).
type Waiter = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

fn waiter<T: Send + 'static>(reply: Reply<T>, value: T) -> Waiter {
    Box::new(move |res| {
        let _ = reply.send(res.map(|()| value));
    })
}

impl Coordinator {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut next_checkpoint = Instant::now() + self.config.checkpoint_interval;
        let mut steps_since_commit = 0usize;
        loop {
            // A view being built takes a step whenever the queue is empty, and at least
            // every `BACKFILL_SHARE` under load.
            let building = self.backfill.is_some();
            let timeout = if building {
                Duration::ZERO
            } else {
                next_checkpoint.saturating_duration_since(Instant::now())
            };
            let until = if building {
                next_checkpoint.min(Instant::now() + BACKFILL_SHARE)
            } else {
                next_checkpoint
            };
            // Commands gathered last time and left for after the checkpoint come first.
            let next = match self.queued.pop_front() {
                Some(cmd) => Ok(cmd),
                None => rx.recv_timeout(timeout),
            };
            match next {
                Ok(cmd) => {
                    if self.handle_queued(cmd, &rx, until) {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.commit();
                    return;
                }
            }
            let mut built_enough = false;
            if self.backfill.is_some() {
                self.backfill_step();
                steps_since_commit += 1;
                // Its work is committed every few steps too, whatever the interval, so
                // the buffer stays bounded by rows.
                built_enough = steps_since_commit >= BACKFILL_STEPS_PER_COMMIT;
            }
            self.answer_abandoned();
            if !self.waiters.is_empty() || built_enough || Instant::now() >= next_checkpoint {
                steps_since_commit = 0;
                let _ = self.commit();
                next_checkpoint = Instant::now() + self.config.checkpoint_interval;
            }
        }
    }

    /// Handles `first` and the commands queued behind it, to let every writer queued right
    /// now share one commit, but not past `until` (the checkpoint): readers keep batches
    /// queued (see `Pipeline`), so under load the queue is never empty. Source batches
    /// queued together are applied together, those of different views side by side (see
    /// `parallel`), one per view a round. Commands gathered and not handled by `until` wait in
    /// [`Coordinator::queued`]. Returns true to stop.
    fn handle_queued(
        &mut self,
        first: Command,
        rx: &mpsc::Receiver<Command>,
        until: Instant,
    ) -> bool {
        let mut queued = std::mem::take(&mut self.queued);
        queued.push_front(first);
        loop {
            while queued.len() < parallel::GATHER && Instant::now() < until {
                match rx.try_recv() {
                    Ok(cmd) => queued.push_back(cmd),
                    Err(_) => break,
                }
            }
            let sources = queued
                .iter()
                .take_while(|c| matches!(c, Command::Source(..)))
                .count();
            if sources >= 2 {
                // One batch per view a round: a round ends when its slowest view is done,
                // so a busy view's second batch waits for the next round instead of
                // holding back the others' (its batches stay in order, ahead of the
                // commands behind them).
                let mut views = HashSet::new();
                let (mut batches, mut later) = (Vec::new(), Vec::new());
                for c in queued.drain(..sources) {
                    match c {
                        Command::Source(data, epoch, reply) if views.insert(data.view) => {
                            batches.push((data, epoch, reply))
                        }
                        other => later.push(other),
                    }
                }
                for c in later.into_iter().rev() {
                    queued.push_front(c);
                }
                self.apply_sources(batches);
            } else if let Some(cmd) = queued.pop_front() {
                if self.handle(cmd) {
                    return true;
                }
            }
            if Instant::now() >= until {
                self.queued = queued;
                return false;
            }
            if queued.is_empty() {
                match rx.try_recv() {
                    Ok(cmd) => queued.push_back(cmd),
                    Err(_) => return false,
                }
            }
        }
    }

    /// Handles one command; returns true to stop.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Write {
                writes,
                wait,
                reply,
            } => {
                let mut late = 0;
                let applied = self.statement(|c| {
                    writes
                        .into_iter()
                        .try_for_each(|w| c.apply_write(w, &mut late))
                });
                match applied {
                    Ok(()) if wait => self.waiters.push(waiter(reply, late)),
                    res => {
                        let _ = reply.send(res.map(|()| late));
                    }
                }
            }
            Command::Flush(reply) => self.waiters.push(waiter(reply, ())),
            Command::Source(data, epoch, reply) => {
                let view = data.view;
                let res = self.current(epoch).and_then(|()| self.apply_source(*data));
                if let Err(e) = &res {
                    if !matches!(e, EngineError::Rewound) {
                        self.count_failure(view);
                    }
                }
                let _ = reply.send(res);
            }
            Command::Feed(data, epoch, reply) => {
                let _ = reply.send(self.current(epoch).and_then(|()| self.apply_feed(*data)));
            }
            Command::Ddl {
                ddl,
                catalog,
                reply,
            } => {
                // One DDL at a time: a view still being built is finished first.
                self.finish_backfill();
                if self.committed.is_none() {
                    self.committed = Some(self.definitions());
                }
                if let Ddl::CreateView(v) = *ddl {
                    let mut started = None;
                    let res = self.statement(|c| {
                        started = Some(c.start_view(v, catalog)?);
                        Ok(())
                    });
                    match (res, started) {
                        (Ok(()), Some(b)) => self.backfill = Some((b, waiter(reply, ()))),
                        (Err(e), _) => {
                            let _ = reply.send(Err(e));
                        }
                        (Ok(()), None) => {
                            let _ = reply.send(Err(EngineError::Internal(
                                "the view's backfill did not start".into(),
                            )));
                        }
                    }
                    return false;
                }
                let res = self.statement(|c| c.apply_ddl(*ddl, catalog));
                match res {
                    Ok(()) => self.waiters.push(waiter(reply, ())),
                    Err(e) => {
                        // A backfill that failed after committing a page leaves state.
                        if let Err(e) = self.statement(|c| c.clean_abandoned_backfill()) {
                            tracing::error!(error = %e, "removing a failed backfill's state failed");
                        }
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Subscribe(req) => self.subscribe(*req),
            Command::Shutdown(reply) => {
                let _ = self.commit();
                let _ = reply.send(Ok(()));
                return true;
            }
        }
        false
    }

    /// Counts a batch view `view` refused (`freshet_view_failures_total`).
    fn count_failure(&self, view: RelationId) {
        if let Some(d) = self.descs.iter().find(|d| d.id == view) {
            crate::metrics::metrics()
                .view_failures
                .with_label_values(&[d.name.as_str()])
                .inc();
        }
    }

    /// [`EngineError::Rewound`] for a batch of a reader started before the current epoch.
    fn current(&self, epoch: u64) -> Result<(), EngineError> {
        if epoch == self.epoch.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(EngineError::Rewound)
        }
    }

    /// Runs `f` as one statement: all its writes or none.
    fn statement(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.txn.begin_statement();
        let captured = self.subscribers.mark();
        // A panic (a bug, an overflow on some input) fails this statement only: its writes
        // are undone and every view's dataflow is built anew from its state, so nothing
        // half-applied stays in memory, and the engine goes on.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)))
            .unwrap_or_else(|p| {
                let what = crate::panic_message(p.as_ref());
                tracing::error!(panic = %what, "a statement panicked in the engine; it is undone");
                Err(EngineError::Panicked(what))
            });
        match res {
            Ok(()) => {
                self.txn.end_statement();
                Ok(())
            }
            Err(e) => {
                self.txn.rollback_statement();
                self.subscribers.undo_to(captured);
                if matches!(e, EngineError::Panicked(_)) {
                    if let Err(e) = self.rebuild_views() {
                        tracing::error!(error = %e, "rebuilding the views failed");
                    }
                }
                Err(e)
            }
        }
    }

    /// Writes the checkpoint. If that fails (a full disk, an I/O error), everything since
    /// the last commit is dropped, as a restart would: the buffer, the views' state in
    /// memory, DDL not yet committed. The writers waiting for this commit get the error
    /// (their statements did not happen), and every reader's later batches are refused
    /// ([`EngineError::Rewound`]), so each starts again from the offsets committed with
    /// the last checkpoint: nothing is lost, nothing counted twice, and once the disk
    /// takes writes again the pipeline goes on by itself.
    fn commit(&mut self) -> Result<(), EngineError> {
        if let Err(e) = self.statement(|c| c.tick(crate::wall_clock_micros())) {
            tracing::error!(error = %e, "advancing temporal filters failed");
        }
        if let Err(e) = self.statement(|c| c.expire_dead_letters(crate::wall_clock_micros())) {
            tracing::error!(error = %e, "expiring dead letters failed");
        }
        self.write_buffer()
    }

    /// Registers a subscriber right after a commit (see [`Engine::subscribe`]).
    fn subscribe(&mut self, req: SubscribeRequest) {
        let SubscribeRequest {
            relation,
            limit,
            at_snapshot,
            reply,
        } = req;
        if !self.schemas.contains_key(&relation) || self.sources.contains(&relation) {
            let _ = reply.send(Err(EngineError::UnknownRelation(relation)));
            return;
        }
        if let Err(e) = self.commit() {
            let _ = reply.send(Err(e));
            return;
        }
        let sub = self.subscribers.add(relation, limit);
        at_snapshot(sub.timestamp);
        let _ = reply.send(Ok(sub));
    }

    /// The definitions as they are now.
    fn definitions(&self) -> Definitions {
        Definitions {
            tables: self.tables.clone(),
            schemas: self.schemas.clone(),
            sources: self.sources.clone(),
            descs: self.descs.clone(),
        }
    }

    /// Back to the last commit: its definitions, and every view's dataflow built anew (its
    /// state is read from what is committed, as at start-up).
    fn rewind(&mut self) -> Result<(), EngineError> {
        // What a view being built had made since the last commit is gone, and its scan
        // position with it: it stops (its caller is answered, what was committed of it
        // removed).
        if let Some(b) = self.backfill.take() {
            self.abandoned.push(b);
        }
        if let Some(d) = self.committed.take() {
            self.tables = d.tables;
            self.schemas = d.schemas;
            self.sources = d.sources;
            self.descs = d.descs;
        }
        self.rebuild_views()
    }

    /// Deletes the dead letters their sources' retention lets go (see
    /// [`crate::dead_letters`]), and passes the deletions on to the views over them.
    fn expire_dead_letters(&mut self, now: i64) -> Result<(), EngineError> {
        let Coordinator {
            dead, txn, schemas, ..
        } = self;
        let removed = dead.expire(
            txn,
            now,
            |t| schemas.get(&t).map(column_types),
            &[SOURCE_ERRORS, LATE_EVENTS],
        )?;
        for (table, rows) in removed {
            if rows.is_empty() || !self.any_reads(table) {
                continue;
            }
            let schema = self
                .schemas
                .get(&table)
                .cloned()
                .ok_or(EngineError::UnknownRelation(table))?;
            let n = rows.len();
            self.propagate(table, Chunk::from_rows(schema, &rows, vec![-1; n])?)?;
        }
        Ok(())
    }

    /// Moves processing time forward in every view with a temporal filter, and passes the
    /// rows that entered or left on to the views that read them.
    fn tick(&mut self, now: i64) -> Result<(), EngineError> {
        for i in 0..self.views.len() {
            if !self.views[i].has_timers() {
                continue;
            }
            let view = self.views[i].view();
            let out = self.views[i].tick(now, &mut self.txn)?;
            self.propagate_all(out.into_iter().map(|c| (view, c)).collect())?;
        }
        Ok(())
    }
}
