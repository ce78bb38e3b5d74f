//! Stored rows streamed from one snapshot, a batch at a time, with backpressure: a query
//! (or a cursor) over a 50-million-row view holds two batches, not the view.
//!
//! A RocksDB snapshot cannot outlive the closure that reads it, and a stream is polled
//! from a task that comes and goes. So each scan runs on a thread of its own inside one
//! `Store::read_snapshot`, decoding rows into batches and handing them over a channel of
//! two; when the consumer is slow the thread waits, when it goes away (the query ended,
//! was cancelled, its client left) the thread stops. [`Scans`] counts the threads, so
//! that shutdown can stop them and wait for them before the database closes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use freshet_engine::chunk::rows_to_batch;
use freshet_storage::{decode_pair, RowLayout, Store};
use tokio::sync::mpsc;

/// Rows per batch a scan hands over.
const BATCH_ROWS: usize = 8192;

/// The scan threads running, and the flag that stops them.
#[derive(Default, Debug)]
pub struct Scans {
    closing: AtomicBool,
    active: AtomicUsize,
}

impl Scans {
    /// Stops every scan and waits (up to `timeout`) until their threads have ended.
    pub fn close(&self, timeout: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let until = Instant::now() + timeout;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

/// One key range of a stored relation, read from a snapshot when executed.
pub struct ScanPartition {
    pub store: Store,
    pub schema: SchemaRef,
    pub layout: RowLayout,
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
    pub prefix_len: usize,
    pub scans: Arc<Scans>,
    pub deadline: Option<Instant>,
    /// A `SUBSCRIBE` snapshot taken at this checkpoint timestamp: each distinct row once,
    /// after two columns, the timestamp and its multiplicity (`schema` has them first).
    pub counted_at: Option<i64>,
    /// The query wants at most this many rows (`LIMIT` pushed down): the scan stops
    /// after them, and its first batch is no larger.
    pub limit: Option<usize>,
}

impl std::fmt::Debug for ScanPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPartition")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

/// Counts a scan thread while it lives.
struct Running(Arc<Scans>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Hands `item` to the consumer, waiting while its buffer is full; false if the
/// consumer is gone, the server is closing or the deadline passed.
fn hand_over(
    tx: &mpsc::Sender<DfResult<RecordBatch>>,
    mut item: DfResult<RecordBatch>,
    scans: &Scans,
    deadline: Option<Instant>,
) -> bool {
    let mut wait = Duration::from_micros(200);
    loop {
        match tx.try_send(item) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(back)) => {
                if scans.closing.load(Ordering::SeqCst)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    return false;
                }
                item = back;
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(20));
            }
        }
    }
}

impl ScanPartition {
    /// The thread's work: walks the range in the snapshot, a batch at a time; `taken`
    /// hears once the snapshot is taken.
    fn run(
        &self,
        tx: mpsc::Sender<DfResult<RecordBatch>>,
        taken: Option<std::sync::mpsc::SyncSender<()>>,
    ) {
        let skip = if self.counted_at.is_some() { 2 } else { 0 };
        let types: Vec<DataType> = self
            .schema
            .fields()
            .iter()
            .skip(skip)
            .map(|f| f.data_type().clone())
            .collect();
        let batch_rows = self.limit.map_or(BATCH_ROWS, |l| l.clamp(1, BATCH_ROWS));
        let mut rows = Vec::with_capacity(batch_rows);
        let mut sent = 0usize;
        let mut failed: Option<DataFusionError> = None;
        let mut stopped = false;
        let walked = self.store.read_snapshot(|r| {
            if let Some(taken) = taken {
                let _ = taken.send(());
            }
            r.walk(&self.start, self.end.as_deref(), false, &mut |k, v| {
                let (row, n) = match decode_pair(k, v, self.prefix_len, &types, self.layout) {
                    Ok(x) => x,
                    Err(e) => {
                        failed = Some(DataFusionError::External(Box::new(e)));
                        return false;
                    }
                };
                if let Some(ts) = self.counted_at {
                    let mut counted = Vec::with_capacity(row.len() + 2);
                    counted.push(ScalarValue::Int64(Some(ts)));
                    counted.push(ScalarValue::Int64(Some(n.max(1))));
                    counted.extend(row);
                    rows.push(counted);
                } else {
                    for _ in 1..n.max(1) {
                        rows.push(row.clone());
                    }
                    rows.push(row);
                }
                if rows.len() >= batch_rows {
                    sent += rows.len();
                    let batch = rows_to_batch(self.schema.clone(), &rows)
                        .map_err(|e| DataFusionError::External(Box::new(e)));
                    rows.clear();
                    if !hand_over(&tx, batch, &self.scans, self.deadline) {
                        stopped = true;
                        return false;
                    }
                    // Enough for the query: the rest is never read.
                    if self.limit.is_some_and(|l| sent >= l) {
                        return false;
                    }
                }
                true
            })
        });
        if stopped {
            return;
        }
        if let Err(e) = walked {
            failed = Some(DataFusionError::External(Box::new(e)));
        }
        let last = match failed {
            Some(e) => Err(e),
            None if rows.is_empty() => return,
            None => rows_to_batch(self.schema.clone(), &rows)
                .map_err(|e| DataFusionError::External(Box::new(e))),
        };
        hand_over(&tx, last, &self.scans, self.deadline);
    }
}

impl PartitionStream for ScanPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let me = ScanPartition {
            store: self.store.clone(),
            schema: self.schema.clone(),
            layout: self.layout,
            start: self.start.clone(),
            end: self.end.clone(),
            prefix_len: self.prefix_len,
            scans: self.scans.clone(),
            deadline: self.deadline,
            counted_at: self.counted_at,
            limit: self.limit,
        };
        me.start(None)
    }
}

impl ScanPartition {
    /// Starts the scan's thread; `taken` hears once its snapshot is taken (or the scan
    /// could not start).
    pub fn start(
        self,
        taken: Option<std::sync::mpsc::SyncSender<()>>,
    ) -> SendableRecordBatchStream {
        let (tx, rx) = mpsc::channel(2);
        let schema = self.schema.clone();
        let me = self;
        if me.scans.closing.load(Ordering::SeqCst) {
            let _ = tx.try_send(Err(DataFusionError::Execution(
                "the server is shutting down".into(),
            )));
        } else {
            me.scans.active.fetch_add(1, Ordering::SeqCst);
            let running = Running(me.scans.clone());
            let on_error = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("freshet-scan".into())
                .spawn(move || {
                    let _running = running;
                    me.run(tx, taken)
                });
            if let Err(e) = spawned {
                let _ = on_error.try_send(Err(DataFusionError::Execution(format!(
                    "cannot start a scan thread: {e}"
                ))));
            }
        }
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}
