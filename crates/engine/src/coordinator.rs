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

use std::collections::{HashMap, VecDeque};
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
use crate::write_check::{check_not_null, display_value, duplicate_key, pk_row_key};
use crate::EngineError;

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

/// The dead letter of a failure to close windows at watermark `wm` (µs) downstream of
/// `what` (a view, or a table's readers).
fn window_close_error(what: &str, wm: i64, e: &EngineError) -> (i32, i64, String, String) {
    let at = display_value(&ScalarValue::TimestampMicrosecond(
        Some(wm),
        Some("+00:00".into()),
    ));
    (
        -1,
        -1,
        format!("{what} failed to close windows at watermark {at}: {e}"),
        String::new(),
    )
}

/// A late event: (partition, offset, event time µs, watermark µs, payload).
pub type Late = (i32, i64, i64, i64, String);

/// Rows read from a source for one view, with the offsets they reach.
pub struct SourceData {
    pub view: RelationId,
    pub source: RelationId,
    pub source_name: String,
    pub chunk: Chunk,
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

fn offsets_prefix(view: RelationId, source: RelationId) -> Vec<u8> {
    let mut k = keys::state_prefix(keys::state_table_id(view, u16::MAX, 0));
    k.extend_from_slice(&source.to_be_bytes());
    k
}

/// A partition number as a key suffix (sign bit flipped, so partitions sort in order).
fn partition_key(p: i32) -> [u8; 4] {
    ((p as u32) ^ 0x8000_0000).to_be_bytes()
}

fn parse_partition_key(b: [u8; 4]) -> i32 {
    (u32::from_be_bytes(b) ^ 0x8000_0000) as i32
}

fn watermark_key(view: RelationId, source: RelationId) -> Vec<u8> {
    let mut k = keys::state_prefix(keys::state_table_id(view, u16::MAX, 1));
    k.extend_from_slice(&source.to_be_bytes());
    k
}

/// The committed-or-buffered watermark `view` holds for `source` (for a table, `view` is
/// the table itself).
fn stored_watermark_in(
    txn: &Txn,
    view: RelationId,
    source: RelationId,
) -> Result<Option<i64>, EngineError> {
    match txn.get(&watermark_key(view, source))? {
        Some(v) => Ok(Some(crate::operators::decode_count(&v)?)),
        None => Ok(None),
    }
}

/// What a view has committed of a source's watermark: the largest event time per
/// partition, and the watermark itself.
pub fn stored_watermark(
    store: &Store,
    view: RelationId,
    source: RelationId,
) -> Result<(std::collections::BTreeMap<i32, i64>, Option<i64>), EngineError> {
    let prefix = offsets_prefix(view, source);
    let pairs = store.read_snapshot(|r| r.scan_prefix(&prefix))?;
    let mut maxima = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        let (Some(p), Some(m)) = (
            k.get(prefix.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok()),
            v.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()),
        ) else {
            continue;
        };
        maxima.insert(parse_partition_key(p), i64::from_be_bytes(m));
    }
    let wm = store
        .read_snapshot(|r| r.get(&watermark_key(view, source)))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(i64::from_be_bytes);
    Ok((maxima, wm))
}

/// The offsets a view has committed for a source: next offset to read per partition.
pub fn stored_offsets(
    store: &Store,
    view: RelationId,
    source: RelationId,
) -> Result<std::collections::BTreeMap<i32, i64>, EngineError> {
    let prefix = offsets_prefix(view, source);
    let pairs = store.read_snapshot(|r| r.scan_prefix(&prefix))?;
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        let p: [u8; 4] = k[prefix.len()..]
            .try_into()
            .map_err(|_| EngineError::Internal("bad offset key".into()))?;
        let o: [u8; 8] = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| EngineError::Internal("bad offset value".into()))?;
        out.insert(parse_partition_key(p), i64::from_be_bytes(o));
    }
    Ok(out)
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
    /// How long dead letters are kept, per source.
    pub dead_letters: Arc<Policies>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            checkpoint_interval: Duration::from_secs(1),
            dead_letters: Policies::new(Retention::default()),
        }
    }
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
            backfill: None,
            abandoned: Vec::new(),
            dead: DeadLetters::new(config.dead_letters.clone()),
            subscribers: Subscribers::default(),
            config,
        };
        c.schemas.insert(SOURCE_ERRORS, source_errors_schema());
        c.schemas.insert(LATE_EVENTS, late_events_schema());
        for t in tables {
            c.schemas.insert(t.id, t.schema.clone());
            c.tables.insert(t.id, t);
        }
        for (id, schema) in sources {
            c.schemas.insert(id, schema);
            c.sources.insert(id);
        }
        for v in views {
            c.schemas.insert(v.id, v.schema.clone());
            c.views
                .push(Dataflow::build(v.id, &v.plan, v.append_only, v.output)?.metered(&v.name));
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
    /// [`Applied`] tells when (and whether) they were applied. Commands are applied in
    /// the order they were queued, so a reader may keep a few batches in flight (see
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
            match rx.recv_timeout(timeout) {
                Ok(cmd) => {
                    if self.handle(cmd) {
                        return;
                    }
                    // Let every writer queued right now share one commit, but not past
                    // the checkpoint: readers keep batches queued (see `Pipeline`), so
                    // under load the queue is never empty.
                    while Instant::now() < until {
                        let Ok(cmd) = rx.try_recv() else { break };
                        if self.handle(cmd) {
                            return;
                        }
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

    /// Every view's dataflow built anew from its definition (its state is read from the
    /// write buffer and what is committed).
    fn rebuild_views(&mut self) -> Result<(), EngineError> {
        // A view being built is rebuilt too (its state is read back the same way; where
        // its scan is stays right, since a statement never moves it).
        if let Some((b, _)) = &mut self.backfill {
            let v = &b.desc;
            b.df = Dataflow::build(v.id, &v.plan, v.append_only, v.output)?.metered(&v.name);
        }
        self.views = self
            .descs
            .iter()
            .map(|v| {
                Dataflow::build(v.id, &v.plan, v.append_only, v.output).map(|d| d.metered(&v.name))
            })
            .collect::<Result<_, _>>()?;
        Ok(())
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

    /// Starts building view `v` (see [`crate::backfill`]): its dataflow, its initial
    /// output, the mark on its state until it is done, and the count of rows to read.
    fn start_view(&mut self, v: ViewDesc, catalog: Vec<u8>) -> Result<Backfill, EngineError> {
        if self.schemas.contains_key(&v.id) {
            return Err(EngineError::Internal(format!(
                "relation id {} is taken: the view was not created",
                v.id
            )));
        }
        self.clean_slate(v.id)?;
        let mut df = Dataflow::build(v.id, &v.plan, v.append_only, v.output)?.metered(&v.name);
        df.init(&mut self.txn)?;
        let progress = crate::progress::start_backfill(v.id);
        self.txn
            .put(keys::BACKFILL.to_vec(), v.id.to_be_bytes().to_vec());
        let mut total = 0;
        for rel in df.source_entries() {
            total += self.count_stored(rel)?;
        }
        progress.total.store(total, Ordering::Relaxed);
        Ok(Backfill::new(v, df, catalog, progress))
    }

    /// Nothing stored under a new relation's id: an earlier build of a view that got it
    /// may have left state behind (its DDL failed at the last commit, say), and ids are
    /// handed out again when the catalog did not commit.
    fn clean_slate(&mut self, id: RelationId) -> Result<(), EngineError> {
        self.clean_abandoned_backfill()?;
        for p in [keys::rows_prefix(id), keys::view_state_prefix(id)] {
            if let Some(end) = prefix_end(&p) {
                self.txn.delete_range(&p, &end)?;
            }
        }
        Ok(())
    }

    /// One step of the view being built; once it has read everything, it joins the
    /// views (committed with the next checkpoint, which answers its DDL).
    fn backfill_step(&mut self) {
        let Some((mut b, w)) = self.backfill.take() else {
            return;
        };
        let res = self.statement(|c| {
            let inputs = Inputs {
                schemas: &c.schemas,
                tables: &c.tables,
                sources: &c.sources,
                views: &c.descs,
            };
            b.step(&mut c.txn, &inputs)
        });
        if let Err(e) = res {
            crate::progress::forget_backfill(b.desc.id);
            w(Err(e));
            self.clean_after_backfill();
            return;
        }
        if !b.done() {
            self.backfill = Some((b, w));
            return;
        }
        let id = b.desc.id;
        match self.statement(|c| c.complete_view(b)) {
            Ok(()) => self.waiters.push(w),
            Err(e) => {
                // Not a view after all: out of memory too, then its state goes.
                self.views.retain(|d| d.view() != id);
                self.descs.retain(|d| d.id != id);
                self.schemas.remove(&id);
                crate::progress::forget_backfill(id);
                w(Err(e));
                self.clean_after_backfill();
            }
        }
    }

    /// The view built: it joins the others, and its catalog entry is written.
    fn complete_view(&mut self, b: Backfill) -> Result<(), EngineError> {
        if self.committed.is_none() {
            self.committed = Some(self.definitions());
        }
        let v = b.desc;
        b.progress.finished.store(true, Ordering::Relaxed);
        self.schemas.insert(v.id, v.schema.clone());
        self.views.push(b.df);
        self.descs.push(v.clone());
        self.txn.delete(keys::BACKFILL.to_vec());
        self.txn.put(keys::CATALOG.to_vec(), b.catalog);
        // Tables with a watermark: the new view starts at the table's.
        for rel in self.views[self.views.len() - 1].inputs() {
            if self.tables.get(&rel).is_some_and(|t| t.watermark.is_some()) {
                if let Some(wm) = stored_watermark_in(&self.txn, rel, rel)? {
                    self.push_watermark(v.id, rel, wm)?;
                }
            }
        }
        Ok(())
    }

    /// Builds the view under way to the end, now (before another DDL runs).
    fn finish_backfill(&mut self) {
        while self.backfill.is_some() {
            self.backfill_step();
            // Commit as it goes: its memory stays bounded.
            if let Err(e) = self.commit() {
                tracing::error!(error = %e, "a checkpoint during a backfill failed");
            }
        }
        self.answer_abandoned();
    }

    /// Answers the DDL of each backfill stopped by a failed commit or an engine error,
    /// and removes what it had made.
    fn answer_abandoned(&mut self) {
        if self.abandoned.is_empty() {
            return;
        }
        for (b, w) in std::mem::take(&mut self.abandoned) {
            crate::progress::forget_backfill(b.desc.id);
            tracing::warn!(view = %b.desc.name, "a view's backfill was stopped by a failed commit or an engine error");
            w(Err(EngineError::Internal(format!(
                "building materialized view \"{}\" was stopped by a failed commit or an \
                 engine error; create it again",
                b.desc.name
            ))));
        }
        self.clean_after_backfill();
    }

    fn clean_after_backfill(&mut self) {
        if let Err(e) = self.statement(|c| c.clean_abandoned_backfill()) {
            tracing::error!(error = %e, "removing a stopped backfill's state failed");
        }
    }

    /// Whether any view, or the view being built, reads `rel`.
    fn any_reads(&self, rel: RelationId) -> bool {
        self.views.iter().any(|d| d.reads(rel))
            || self.backfill.as_ref().is_some_and(|(b, _)| b.reads(rel))
    }

    /// The partial state of a view whose backfill did not finish (the server died, or
    /// its DDL failed after a page was committed) goes, in range deletions.
    fn clean_abandoned_backfill(&mut self) -> Result<(), EngineError> {
        let Some(v) = self.txn.get(keys::BACKFILL)? else {
            return Ok(());
        };
        let id = <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| EngineError::Internal("bad stored backfill marker".into()))?;
        if !self.schemas.contains_key(&id) {
            tracing::warn!(
                view = id,
                "removing the state of a backfill that did not finish"
            );
            for p in [keys::rows_prefix(id), keys::view_state_prefix(id)] {
                if let Some(end) = prefix_end(&p) {
                    self.txn.delete_range(&p, &end)?;
                }
            }
        }
        self.txn.delete(keys::BACKFILL.to_vec());
        Ok(())
    }

    /// The rows of an input of a backfill (`weights` not summed: stored entries).
    fn count_stored(&self, id: RelationId) -> Result<u64, EngineError> {
        if self.sources.contains(&id) {
            return Ok(0);
        }
        let mut n = 0u64;
        self.txn.visit_prefix(&keys::rows_prefix(id), |_, _| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// Writes the buffer as a checkpoint; see [`Coordinator::commit`].
    fn write_buffer(&mut self) -> Result<(), EngineError> {
        let m = crate::metrics::metrics();
        let timer = m.checkpoint_seconds.start_timer();
        let res = self.txn.commit();
        timer.observe_duration();
        match &res {
            Ok(()) => {
                let now = crate::wall_clock_micros() as f64 / 1e6;
                m.checkpoints.inc();
                m.last_checkpoint.set(now);
                for df in &mut self.views {
                    df.checkpointed(now);
                }
                self.committed = None;
                let schemas = &self.schemas;
                self.subscribers
                    .committed(crate::wall_clock_micros() / 1000, |r| {
                        schemas.contains_key(&r)
                    });
            }
            Err(e) => {
                m.checkpoint_failures.inc();
                self.subscribers.discard();
                tracing::error!(error = %e, "checkpoint commit failed: uncommitted work dropped; readers restart from their committed offsets");
                self.epoch.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = self.rewind() {
                    tracing::error!(error = %e, "rebuilding the views after a failed commit failed");
                }
            }
        }
        let res = res.map_err(|e| EngineError::CommitFailed(e.to_string(), e.is_disk_full()));
        for w in self.waiters.drain(..) {
            w(match &res {
                Ok(()) => Ok(()),
                Err(EngineError::CommitFailed(m, full)) => {
                    Err(EngineError::CommitFailed(m.clone(), *full))
                }
                Err(e) => Err(EngineError::Internal(e.to_string())),
            });
        }
        res
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

    fn table(&self, id: RelationId) -> Result<&TableDesc, EngineError> {
        self.tables.get(&id).ok_or(EngineError::UnknownRelation(id))
    }

    /// Applies a DML statement's rows. In a table with a watermark, inserted rows below
    /// it go to `late_events` instead (counted in `late`), and the watermark then moves
    /// to the largest event time minus the delay.
    fn apply_write(&mut self, write: TableWrite, late: &mut u64) -> Result<(), EngineError> {
        let desc = self.table(write.table)?.clone();
        let mut changes: Vec<Row> = Vec::new();
        let mut weights = Vec::new();
        for b in &write.deletes {
            for row in batch_rows(b)? {
                self.delete_row(&desc, &row)?;
                changes.push(row);
                weights.push(-1);
            }
        }
        let wm = match desc.watermark {
            Some(_) => stored_watermark_in(&self.txn, desc.id, desc.id)?,
            None => None,
        };
        let mut max_ts: Option<i64> = None;
        for b in &write.inserts {
            for row in batch_rows(b)? {
                if let Some((col, _)) = desc.watermark {
                    let ts = row.get(col).and_then(crate::chunk::timestamp_micros);
                    if let (Some(ts), Some(wm)) = (ts, wm) {
                        if ts < wm {
                            *late += 1;
                            let text: Vec<String> = row.iter().map(display_value).collect();
                            self.put_late(
                                &desc.name,
                                None,
                                ts,
                                wm,
                                format!("({})", text.join(", ")),
                            )?;
                            continue;
                        }
                    }
                    max_ts = max_ts.max(ts);
                }
                self.insert_row(&desc, &row)?;
                changes.push(row);
                weights.push(1);
            }
        }
        self.propagate_rows(&desc, &changes, weights)?;
        if let (Some((_, delay)), Some(max_ts)) = (desc.watermark, max_ts) {
            let new = max_ts.saturating_sub(delay);
            if wm.is_none_or(|wm| new > wm) {
                self.table_watermark(desc.id, new)?;
            }
        }
        Ok(())
    }

    /// Records an event that arrived below its watermark; `at` is its partition and
    /// offset (none for rows inserted by DML).
    fn put_late(
        &mut self,
        source_name: &str,
        at: Option<(i32, i64)>,
        ts: i64,
        wm: i64,
        payload: String,
    ) -> Result<(), EngineError> {
        let tz = Some(std::sync::Arc::from("+00:00"));
        self.put_event_row(
            LATE_EVENTS,
            vec![
                ScalarValue::Utf8(Some(source_name.to_string())),
                ScalarValue::Int32(at.map(|a| a.0)),
                ScalarValue::Int64(at.map(|a| a.1)),
                ScalarValue::TimestampMicrosecond(Some(ts), tz.clone()),
                ScalarValue::TimestampMicrosecond(Some(wm), tz),
                ScalarValue::Utf8(Some(payload)),
            ],
        )
    }

    /// A table's watermark advanced: stores it and passes it to every view over it.
    fn table_watermark(&mut self, table: RelationId, wm: i64) -> Result<(), EngineError> {
        self.txn
            .put(watermark_key(table, table), wm.to_be_bytes().to_vec());
        for v in self.readers_of(table) {
            self.push_watermark(v, table, wm)?;
        }
        Ok(())
    }

    /// The views that read `relation` directly.
    fn readers_of(&self, relation: RelationId) -> Vec<RelationId> {
        self.views
            .iter()
            .filter(|d| d.reads(relation))
            .map(|d| d.view())
            .collect()
    }

    fn delete_row(&mut self, desc: &TableDesc, row: &Row) -> Result<(), EngineError> {
        if desc.pk.is_empty() {
            let key = keys::row_key(desc.id, &codec::encode_row(row)?);
            let (old, _) = add_count(&mut self.txn, key, -1)?;
            if old <= 0 {
                return Err(EngineError::Conflict);
            }
        } else {
            let key = pk_row_key(desc, row)?;
            match self.txn.get(&key)? {
                Some(cur) if cur == codec::encode_row(row)? => self.txn.delete(key),
                _ => return Err(EngineError::Conflict),
            }
        }
        Ok(())
    }

    fn insert_row(&mut self, desc: &TableDesc, row: &Row) -> Result<(), EngineError> {
        check_not_null(desc, row)?;
        if desc.pk.is_empty() {
            let key = keys::row_key(desc.id, &codec::encode_row(row)?);
            add_count(&mut self.txn, key, 1)?;
        } else {
            let key = pk_row_key(desc, row)?;
            if self.txn.get(&key)?.is_some() {
                return Err(duplicate_key(desc, row));
            }
            self.txn.put(key, codec::encode_row(row)?);
        }
        Ok(())
    }

    /// Applies a source batch to one view; rows that make the view fail (say, a division
    /// by zero in its query) are retried one by one and the failing ones become dead
    /// letters, so one bad event never stops the stream.
    fn apply_source(&mut self, data: SourceData) -> Result<(), EngineError> {
        let SourceData {
            view,
            source,
            source_name,
            chunk,
            offsets,
            mut errors,
            watermark,
            maxima,
            late,
        } = data;
        if !self.views.iter().any(|d| d.view() == view) {
            return Err(EngineError::UnknownRelation(view));
        }
        let whole = self.statement(|c| c.push_source(view, source, chunk.clone()));
        if whole.is_err() {
            let rows = chunk.rows()?;
            let schema = chunk.schema();
            for (row, w) in rows.iter().zip(&chunk.weights) {
                let one = Chunk::from_rows(schema.clone(), std::slice::from_ref(row), vec![*w])?;
                if let Err(e) = self.statement(|c| c.push_source(view, source, one)) {
                    let text: Vec<String> = row.iter().map(display_value).collect();
                    errors.push((
                        -1,
                        -1,
                        format!("view {view} rejected the row: {e}"),
                        format!("({})", text.join(", ")),
                    ));
                }
            }
        }
        // After the rows: they were on time when read, and may sit in windows that this
        // watermark closes.
        if let Some(wm) = watermark {
            // A view can fail while closing windows (an expression over a closed window's
            // aggregates divides by zero): that is the view's error, not the source's.
            // It becomes a dead letter, and the batch's rows, offsets and watermark still
            // commit together, so the reader goes on and a restart re-reads nothing.
            if let Err(e) = self.statement(|c| c.push_watermark(view, source, wm)) {
                errors.push(window_close_error(&format!("view {view}"), wm, &e));
            }
            self.txn
                .put(watermark_key(view, source), wm.to_be_bytes().to_vec());
        }
        for (p, o, ts, wm, payload) in late {
            self.put_late(&source_name, Some((p, o)), ts, wm, payload)?;
        }
        self.record_progress(view, source, &source_name, offsets, &maxima, errors)
    }

    /// Passes a source's watermark to a view, then each view's output watermark to the
    /// views that read it. A view's own output (windows that closed) reaches its readers
    /// before its watermark does.
    fn push_watermark(
        &mut self,
        view: RelationId,
        source: RelationId,
        wm: i64,
    ) -> Result<(), EngineError> {
        let mut pending = VecDeque::from([(view, source, wm)]);
        while let Some((v, rel, wm)) = pending.pop_front() {
            let Some(df) = self.views.iter_mut().find(|d| d.view() == v) else {
                continue;
            };
            let (chunks, out_wm) = df.watermark(rel, wm, &mut self.txn)?;
            let queue: VecDeque<(RelationId, Chunk)> = chunks.into_iter().map(|c| (v, c)).collect();
            self.propagate_all(queue)?;
            if let Some(w) = out_wm {
                for d in &self.views {
                    if d.reads(v) {
                        pending.push_back((d.view(), v, w));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a topic's rows to the table it feeds, then to every view over the table.
    /// Rows the table or a view rejects become dead letters, one by one.
    fn apply_feed(&mut self, data: FeedData) -> Result<(), EngineError> {
        let FeedData {
            table,
            rows,
            deletes,
            offsets,
            mut errors,
            watermark,
            maxima,
            late,
        } = data;
        let desc = self.table(table)?.clone();
        let whole = self.statement(|c| c.feed_rows(&desc, &rows, &deletes));
        if whole.is_err() {
            for key in &deletes {
                if let Err(e) = self.statement(|c| {
                    c.feed_rows(
                        &desc,
                        &Chunk::empty(desc.schema.clone()),
                        std::slice::from_ref(key),
                    )
                }) {
                    errors.push((-1, -1, format!("delete rejected: {e}"), format!("{key:?}")));
                }
            }
            for (row, w) in rows.rows()?.iter().zip(&rows.weights) {
                let one =
                    Chunk::from_rows(desc.schema.clone(), std::slice::from_ref(row), vec![*w])?;
                if let Err(e) = self.statement(|c| c.feed_rows(&desc, &one, &[])) {
                    let text: Vec<String> = row.iter().map(display_value).collect();
                    errors.push((
                        -1,
                        -1,
                        format!("row rejected: {e}"),
                        format!("({})", text.join(", ")),
                    ));
                }
            }
        }
        if let Some(wm) = watermark {
            let old = stored_watermark_in(&self.txn, table, table)?;
            if old.is_none_or(|old| wm > old) {
                // As for a source (`apply_source`): a view failing to close windows is a
                // dead letter, not a reason to stop the feed. Each view over the table
                // closes its windows in its own statement, so one view's failure does
                // not hold back the others.
                self.txn
                    .put(watermark_key(table, table), wm.to_be_bytes().to_vec());
                for v in self.readers_of(table) {
                    if let Err(e) = self.statement(|c| c.push_watermark(v, table, wm)) {
                        errors.push(window_close_error(&format!("view {v}"), wm, &e));
                    }
                }
            }
        }
        for (p, o, ts, wm, payload) in late {
            self.put_late(&desc.name, Some((p, o)), ts, wm, payload)?;
        }
        self.record_progress(table, table, &desc.name, offsets, &maxima, errors)
    }

    fn feed_rows(
        &mut self,
        desc: &TableDesc,
        rows: &Chunk,
        deletes: &[Row],
    ) -> Result<(), EngineError> {
        let mut changes: Vec<Row> = Vec::new();
        let mut weights = Vec::new();
        for key in deletes {
            let k = keys::row_key(desc.id, &codec::encode_row(key)?);
            if let Some(old) = self.txn.get(&k)? {
                changes.push(codec::decode_row(&old, &column_types(&desc.schema))?);
                weights.push(-1);
                self.txn.delete(k);
            }
        }
        for row in rows.rows()? {
            if !desc.pk.is_empty() {
                let k = pk_row_key(desc, &row)?;
                if let Some(old) = self.txn.get(&k)? {
                    if old == codec::encode_row(&row)? {
                        continue;
                    }
                    changes.push(codec::decode_row(&old, &column_types(&desc.schema))?);
                    weights.push(-1);
                    self.txn.delete(k);
                }
            }
            self.insert_row(desc, &row)?;
            changes.push(row);
            weights.push(1);
        }
        self.propagate_rows(desc, &changes, weights)
    }

    /// Stores a reader's offsets (each with its partition's largest event time, for
    /// sources with a watermark) and dead letters in the write buffer.
    fn record_progress(
        &mut self,
        owner: RelationId,
        source: RelationId,
        source_name: &str,
        offsets: Vec<(i32, i64)>,
        maxima: &[(i32, i64)],
        errors: Vec<(i32, i64, String, String)>,
    ) -> Result<(), EngineError> {
        for (p, o) in offsets {
            let mut k = offsets_prefix(owner, source);
            k.extend_from_slice(&partition_key(p));
            let mut v = o.to_be_bytes().to_vec();
            if let Some((_, m)) = maxima.iter().find(|(mp, _)| *mp == p) {
                v.extend_from_slice(&m.to_be_bytes());
            }
            self.txn.put(k, v);
        }
        for (p, o, error, payload) in errors {
            self.put_event_row(
                SOURCE_ERRORS,
                vec![
                    ScalarValue::Utf8(Some(source_name.to_string())),
                    ScalarValue::Int32(Some(p)),
                    ScalarValue::Int64(Some(o)),
                    ScalarValue::Utf8(Some(error)),
                    ScalarValue::Utf8(Some(payload)),
                ],
            )?;
        }
        Ok(())
    }

    /// Records a row of a dead-letter table (source errors, late events). Put, not add:
    /// several views reading the same source record the same message once. A new row
    /// goes on to the views over the table (audits).
    fn put_event_row(&mut self, table: RelationId, row: Row) -> Result<(), EngineError> {
        let bytes = codec::encode_row(&row)?;
        let key = keys::row_key(table, &bytes);
        if self.txn.get(&key)?.is_some() {
            return Ok(());
        }
        self.txn.put(key, 1i64.to_be_bytes().to_vec());
        let source = match row.first() {
            Some(ScalarValue::Utf8(Some(s))) => s.as_str(),
            _ => "",
        };
        self.dead.record(
            &mut self.txn,
            table,
            source,
            &bytes,
            crate::wall_clock_micros(),
        )?;
        if self.any_reads(table) {
            let schema = self
                .schemas
                .get(&table)
                .cloned()
                .ok_or(EngineError::UnknownRelation(table))?;
            let chunk = Chunk::from_rows(schema, &[row], vec![1])?;
            if self.txn.in_statement() {
                self.propagate(table, chunk)?;
            } else {
                // Views over the event table change all or not at all.
                self.statement(|c| c.propagate(table, chunk))?;
            }
        }
        Ok(())
    }

    fn push_source(
        &mut self,
        view: RelationId,
        source: RelationId,
        chunk: Chunk,
    ) -> Result<(), EngineError> {
        let mut queue = VecDeque::new();
        if let Some(df) = self.views.iter_mut().find(|d| d.view() == view) {
            for out in df.push(source, &chunk, &mut self.txn)? {
                queue.push_back((view, out));
            }
        }
        self.propagate_all(queue)
    }

    /// Pushes a table's changed rows (weight −1 deleted, +1 inserted) through its views.
    fn propagate_rows(
        &mut self,
        desc: &TableDesc,
        rows: &[Row],
        weights: Vec<i64>,
    ) -> Result<(), EngineError> {
        if rows.is_empty() {
            return Ok(());
        }
        let chunk = Chunk::from_rows(desc.schema.clone(), rows, weights)?;
        self.propagate(desc.id, chunk)
    }

    /// Pushes a relation's changes through every view that reads it, transitively.
    fn propagate(&mut self, relation: RelationId, chunk: Chunk) -> Result<(), EngineError> {
        self.propagate_all(VecDeque::from([(relation, chunk)]))
    }

    fn propagate_all(
        &mut self,
        mut queue: VecDeque<(RelationId, Chunk)>,
    ) -> Result<(), EngineError> {
        while let Some((rel, chunk)) = queue.pop_front() {
            if self.subscribers.watches(rel) {
                self.subscribers.capture(rel, &chunk);
            }
            for df in self.views.iter_mut() {
                if df.reads(rel) {
                    for out in df.push(rel, &chunk, &mut self.txn)? {
                        queue.push_back((df.view(), out));
                    }
                }
            }
            if let Some((b, _)) = &mut self.backfill {
                if b.reads(rel) {
                    let inputs = Inputs {
                        schemas: &self.schemas,
                        tables: &self.tables,
                        sources: &self.sources,
                        views: &self.descs,
                    };
                    b.feed(rel, &chunk, &mut self.txn, &inputs)?;
                }
            }
        }
        Ok(())
    }

    fn apply_ddl(&mut self, ddl: Ddl, catalog: Vec<u8>) -> Result<(), EngineError> {
        match ddl {
            Ddl::CreateTable(t) => {
                self.clean_slate(t.id)?;
                self.schemas.insert(t.id, t.schema.clone());
                self.tables.insert(t.id, t);
            }
            Ddl::CreateSource { id, schema } => {
                self.clean_slate(id)?;
                self.schemas.insert(id, schema);
                self.sources.insert(id);
            }
            Ddl::CreateView(v) => {
                // Built step by step (see `Command::Ddl`); here only if called directly.
                return Err(EngineError::Internal(format!(
                    "view {} must be built through a backfill",
                    v.name
                )));
            }
            Ddl::Drop(id) => {
                self.tables.remove(&id);
                self.sources.remove(&id);
                self.schemas.remove(&id);
                self.views.retain(|df| df.view() != id);
                self.descs.retain(|v| v.id != id);
                // Range deletions: nothing is read, one tombstone per range.
                for p in [keys::rows_prefix(id), keys::view_state_prefix(id)] {
                    if let Some(end) = prefix_end(&p) {
                        self.txn.delete_range(&p, &end)?;
                    }
                }
                crate::progress::forget_backfill(id);
            }
            Ddl::Catalog => {}
        }
        self.txn.put(keys::CATALOG.to_vec(), catalog);
        Ok(())
    }
}
