//! Stored rows streamed from one snapshot, a batch at a time, with backpressure: a query
//! (or a cursor) over a 50-million-row view holds two batches, not the view.
//!
//! A RocksDB snapshot cannot outlive the closure that reads it, and a stream is polled
//! from a task that comes and goes. So a [`Snapshot`] is a thread of its own inside one
//! `Store::read_snapshot`, serving every scan of one query: it decodes rows into batches
//! and hands each scan's over a channel of two, a batch whenever there is room (each
//! batch resumes after the previous one's last key, so the scans of a join advance side
//! by side). When a consumer is slow its scan waits; when it goes away (the query ended,
//! was cancelled, its client left) its scan stops. [`Scans`] counts the threads, so that
//! shutdown can stop them and wait for them before the database closes.

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
use freshet_storage::{decode_pair, Reader, RowLayout, Store};
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
#[derive(Clone)]
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
    /// The snapshot of the query this scan belongs to; `None`: a snapshot of its own,
    /// taken when the scan starts.
    pub snapshot: Option<Snapshot>,
}

impl std::fmt::Debug for ScanPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPartition")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

/// Counts a snapshot's thread while it lives.
struct Running(Arc<Scans>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One RocksDB snapshot, held by a thread of its own, that every scan of one query reads:
/// a query over several relations (a join, a self-join, a CTE read twice) sees them all
/// at the same checkpoint, and streams each of them a batch at a time instead of loading
/// them. The snapshot is taken when the handle is made; the thread serves the scans
/// started on it round-robin, a batch whenever the scan's consumer has room for one, and
/// ends (letting the snapshot go) once every handle is dropped and its scans are done or
/// abandoned.
#[derive(Clone)]
pub struct Snapshot {
    scans: std::sync::mpsc::Sender<Cursor>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

/// A scan in progress on a snapshot's thread.
struct Cursor {
    part: ScanPartition,
    tx: mpsc::Sender<DfResult<RecordBatch>>,
    /// Where the next batch starts; `None` once the range is read.
    next: Option<Vec<u8>>,
    sent: usize,
    /// The types of the stored columns it decodes.
    types: Vec<DataType>,
}

impl Snapshot {
    /// Takes a snapshot of `store` on a new thread; returns once it is taken (or the
    /// thread could not start: scans on the handle then fail).
    pub fn take(store: &Store, scans: &Arc<Scans>) -> Snapshot {
        let (tx, rx) = std::sync::mpsc::channel::<Cursor>();
        if scans.closing.load(Ordering::SeqCst) {
            return Snapshot { scans: tx };
        }
        scans.active.fetch_add(1, Ordering::SeqCst);
        let running = Running(scans.clone());
        let (taken, wait) = std::sync::mpsc::sync_channel(1);
        let (store, scans) = (store.clone(), scans.clone());
        let spawned = std::thread::Builder::new()
            .name("freshet-scan".into())
            .spawn(move || {
                let _running = running;
                store.read_snapshot(|r| {
                    let _ = taken.send(());
                    serve(r, &rx, &scans)
                })
            });
        if spawned.is_ok() {
            let _ = wait.recv();
        }
        Snapshot { scans: tx }
    }

    /// Streams `part`'s range from this snapshot.
    fn scan(&self, part: ScanPartition) -> SendableRecordBatchStream {
        let (tx, rx) = mpsc::channel(2);
        let schema = part.schema.clone();
        let skip = if part.counted_at.is_some() { 2 } else { 0 };
        let types = part
            .schema
            .fields()
            .iter()
            .skip(skip)
            .map(|f| f.data_type().clone())
            .collect();
        let cursor = Cursor {
            next: Some(part.start.clone()),
            part,
            tx: tx.clone(),
            sent: 0,
            types,
        };
        if self.scans.send(cursor).is_err() {
            let _ = tx.try_send(Err(DataFusionError::Execution(
                "cannot scan: the server is shutting down, or could not start a scan thread".into(),
            )));
        }
        drop(tx);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// A snapshot thread's work: takes new scans as they come, and hands each scan's next
/// batch over whenever its consumer has room, until no handle and no scan is left (or
/// the server closes).
fn serve(r: &dyn Reader, requests: &std::sync::mpsc::Receiver<Cursor>, scans: &Scans) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut active: Vec<Cursor> = Vec::new();
    let mut handles_gone = false;
    let mut wait = Duration::from_micros(200);
    loop {
        if scans.closing.load(Ordering::SeqCst) {
            // Each stream ends in an error, not as if its rows were all read.
            for c in &active {
                let _ = c.tx.try_send(Err(DataFusionError::Execution(
                    "the server is shutting down".into(),
                )));
            }
            return;
        }
        loop {
            match requests.try_recv() {
                Ok(c) => active.push(c),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    handles_gone = true;
                    break;
                }
            }
        }
        if active.is_empty() {
            if handles_gone {
                return;
            }
            match requests.recv_timeout(Duration::from_millis(100)) {
                Ok(c) => active.push(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            continue;
        }
        let mut progressed = false;
        active.retain_mut(|c| {
            if c.tx.is_closed() {
                // The consumer went away (the query ended, was cancelled or timed out).
                return false;
            }
            if c.part.deadline.is_some_and(|d| Instant::now() >= d) {
                // The stream ends in 57014, not as if its rows were all read; kept until
                // the consumer has room for the error (or goes away).
                let timeout = DataFusionError::External(Box::new(crate::stored::Canceled));
                return c.tx.try_send(Err(timeout)).is_err() && !c.tx.is_closed();
            }
            if c.tx.capacity() == 0 {
                return true;
            }
            progressed = true;
            let batch = c.read_batch(r);
            let more = batch.as_ref().is_ok_and(|b| b.is_some()) && c.next.is_some();
            match batch {
                Ok(Some(b)) => {
                    let _ = c.tx.try_send(Ok(b));
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = c.tx.try_send(Err(e));
                }
            }
            more
        });
        if progressed {
            wait = Duration::from_micros(200);
        } else {
            // Every consumer is full: wait for one of them to take a batch.
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(20));
        }
    }
}

impl Cursor {
    /// Reads the next batch from `r`, moving `next` on (to `None` at the end of the range,
    /// or once the query's limit is reached); `None` if no row was left.
    fn read_batch(&mut self, r: &dyn Reader) -> DfResult<Option<RecordBatch>> {
        let Some(from) = self.next.take() else {
            return Ok(None);
        };
        let (part, types) = (&self.part, &self.types);
        let batch_rows = part.limit.map_or(BATCH_ROWS, |l| l.clamp(1, BATCH_ROWS));
        let mut rows = Vec::with_capacity(batch_rows);
        let mut failed: Option<DataFusionError> = None;
        let mut last: Option<Vec<u8>> = None;
        r.walk(&from, part.end.as_deref(), false, &mut |k, v| {
            let (row, n) = match decode_pair(k, v, part.prefix_len, types, part.layout) {
                Ok(x) => x,
                Err(e) => {
                    failed = Some(DataFusionError::External(Box::new(e)));
                    return false;
                }
            };
            if let Some(ts) = part.counted_at {
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
                last = Some(k.to_vec());
                return false;
            }
            true
        })
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.sent += rows.len();
        // A full batch: the next one starts just after its last key, unless the query
        // has all the rows it wants.
        self.next = last
            .filter(|_| part.limit.is_none_or(|l| self.sent < l))
            .map(|mut k| {
                k.push(0);
                k
            });
        if rows.is_empty() {
            return Ok(None);
        }
        rows_to_batch(part.schema.clone(), &rows)
            .map(Some)
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

impl PartitionStream for ScanPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.clone().start()
    }
}

impl ScanPartition {
    /// Starts the scan on its query's snapshot, or on a snapshot of its own taken now.
    pub fn start(self) -> SendableRecordBatchStream {
        match self.snapshot.clone() {
            Some(s) => s.scan(self),
            None => Snapshot::take(&self.store, &self.scans).scan(self),
        }
    }
}
