//! Kafka sources: settings, what a reader hands its sink, and the handle on a running
//! reader. A reader (see [`crate::kafka_reader`]) consumes a topic's partitions from
//! given offsets, decodes messages into changelog chunks and hands them with the offsets
//! they reach to a sink (the engine), which commits offsets together with the view's
//! state. Offsets committed to the consumer group are for lag monitoring only; on restart
//! the reader resumes from the offsets the engine stored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use freshet_engine::chunk::{Chunk, Row};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::decode::Decoder;
use crate::watermark::WatermarkTracker;

/// Messages larger than this go to the dead-letter table.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// How much of a bad message's payload the dead-letter table keeps.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 256;
/// librdkafka's fetch wait; a catch-up check waits two of them for fresh watermarks.
pub(crate) const FETCH_WAIT_MS: u64 = 100;

/// Where a reader starts on partitions it has no stored offset for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    Earliest,
    Latest,
    /// The first message at or after this time (epoch milliseconds).
    Timestamp(i64),
}

impl Startup {
    pub fn parse(mode: &str, timestamp_millis: Option<&str>) -> Result<Startup, String> {
        if let Some(ts) = timestamp_millis {
            return ts
                .parse()
                .map(Startup::Timestamp)
                .map_err(|_| format!("invalid scan.startup.timestamp.millis: \"{ts}\""));
        }
        match mode {
            "earliest" => Ok(Startup::Earliest),
            "latest" => Ok(Startup::Latest),
            other => Err(format!(
                "invalid scan.startup.mode \"{other}\": expected earliest or latest"
            )),
        }
    }
}

/// Metadata columns appended after the payload columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    Partition,
    Offset,
    Timestamp,
    Key,
}

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub source_name: String,
    pub topic: String,
    /// librdkafka settings (`bootstrap.servers` included).
    pub properties: Vec<(String, String)>,
    pub startup: Startup,
}

impl KafkaConfig {
    pub(crate) fn client(&self, group: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
            .set("session.timeout.ms", "6000")
            .set("allow.auto.create.topics", "false")
            .set(
                "auto.offset.reset",
                if self.startup == Startup::Latest {
                    "latest"
                } else {
                    "earliest"
                },
            );
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Checks that the broker answers and the topic exists; returns its partitions.
    pub fn check(&self) -> Result<Vec<i32>, String> {
        let consumer: BaseConsumer = self
            .client("freshet-check")
            .create()
            .map_err(|e| format!("invalid Kafka settings: {e}"))?;
        partitions(&consumer, &self.topic)
    }
}

pub(crate) fn partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, String> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("cannot reach the Kafka broker: {e}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("topic \"{topic}\" does not exist"))?;
    if let Some(err) = t.error() {
        let err = format!("{err:?}");
        if err.contains("UNKNOWN_TOPIC") {
            return Err(format!("topic \"{topic}\" does not exist"));
        }
        return Err(format!("topic \"{topic}\" is not available: {err}"));
    }
    if t.partitions().is_empty() {
        return Err(format!("topic \"{topic}\" does not exist"));
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

/// A bad message, kept in the dead-letter table.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    /// The first bytes of the payload, lossily as text.
    pub payload: String,
}

/// What a reader hands the engine: rows, the offsets they reach (next offset to read per
/// partition) and the bad messages among them.
pub struct SourceBatch {
    pub chunk: Chunk,
    /// Where each row of `chunk` was read: (partition, offset). Empty where rows have
    /// no position (a generator's).
    pub positions: Vec<(i32, i64)>,
    /// Upsert mode: primary keys deleted by null-valued messages. A batch carries either
    /// rows or deletes, never both, so their order is kept.
    pub deletes: Vec<Row>,
    pub offsets: Vec<(i32, i64)>,
    pub errors: Vec<DeadLetter>,
    /// The source's watermark after this batch (sources with a `WATERMARK`).
    pub watermark: Option<i64>,
    /// Largest event time per partition, stored with the offsets.
    pub maxima: Vec<(i32, i64)>,
    pub late: Vec<LateEvent>,
}

/// Receives a reader's batches; an error stops the reader.
pub type Sink = Box<dyn FnMut(SourceBatch) -> Result<(), String> + Send>;

/// A running reader.
pub struct ReaderHandle {
    stop: Arc<AtomicBool>,
    catch_up: mpsc::Sender<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// A member of a reader thread that others share (see [`crate::kafka_reader`]):
    /// disconnected once the member has left it.
    left: Option<mpsc::Receiver<()>>,
    /// Why the thread ended, if it ended without being stopped.
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl ReaderHandle {
    /// Runs `body` on a thread named `name`, which answers catch-up requests sent on
    /// `catch_up` and ends when `stop` is set. An error it returns, or a panic, is kept
    /// for [`ReaderHandle::failure`].
    pub fn spawn(
        name: String,
        stop: Arc<AtomicBool>,
        catch_up: mpsc::Sender<mpsc::Sender<()>>,
        body: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Result<ReaderHandle, String> {
        let failure = Arc::new(std::sync::Mutex::new(None));
        let failure2 = failure.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
                    .unwrap_or_else(|p| {
                        Err(format!(
                            "the reader panicked: {}",
                            freshet_engine::panic_message(p.as_ref())
                        ))
                    });
                if let Err(e) = res {
                    tracing::warn!(reader = %name, error = %e, "source reader stopped");
                    *failure2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            })
            .map_err(|e| format!("cannot start the source reader: {e}"))?;
        Ok(ReaderHandle {
            stop,
            catch_up,
            thread: Some(thread),
            left: None,
            failure,
        })
    }

    /// The handle on a member of a reader thread (see [`crate::kafka_reader`]): it ends
    /// when `left` disconnects, and reports `failure`.
    pub(crate) fn member(
        stop: Arc<AtomicBool>,
        catch_up: mpsc::Sender<mpsc::Sender<()>>,
        left: mpsc::Receiver<()>,
        failure: Arc<std::sync::Mutex<Option<String>>>,
    ) -> ReaderHandle {
        ReaderHandle {
            stop,
            catch_up,
            thread: None,
            left: Some(left),
            failure,
        }
    }

    /// The member of a reader thread of its own: stopping it also waits for the thread.
    pub(crate) fn with_thread(mut self, thread: JoinHandle<()>) -> ReaderHandle {
        self.thread = Some(thread);
        self
    }

    /// Whether the reader (or the member) has ended.
    fn ended(&self) -> bool {
        if let Some(left) = &self.left {
            return matches!(left.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        }
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Why the reader ended, if it failed (an error of its source or of the engine, a
    /// panic); `None` while it runs.
    pub fn failure(&self) -> Option<String> {
        if !self.ended() || self.stop.load(Ordering::SeqCst) {
            return None;
        }
        Some(
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| "the reader ended".into()),
        )
    }

    /// Blocks until the reader has handed over everything the topic held when called.
    pub fn catch_up(&self, timeout: Duration) -> Result<(), String> {
        self.catch_up_while(timeout, || Ok(()))
    }

    /// [`ReaderHandle::catch_up`], asking `go_on` about once a second whether to wait
    /// longer (its error ends the wait).
    pub fn catch_up_while(
        &self,
        timeout: Duration,
        mut go_on: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.catch_up
            .send(tx)
            .map_err(|_| "the source reader has stopped".to_string())?;
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(()) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the source reader has stopped".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err("timed out waiting for the source to catch up".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => go_on()?,
            }
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(left) = self.left.take() {
            // Until the reader has let the member go: it sends nothing after this.
            let _ = left.recv();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Everything a reader needs.
pub struct ReaderSpec {
    pub config: KafkaConfig,
    pub group_id: String,
    /// The name of the relation it feeds (a label of its metrics).
    pub relation: String,
    pub decoder: Decoder,
    pub includes: Vec<Include>,
    /// Payload columns then include columns.
    pub schema: SchemaRef,
    /// Next offset to read, per partition, as last committed.
    pub start: BTreeMap<i32, i64>,
    /// Upsert mode: the primary key columns, decoded from the message key of a null-valued
    /// message (a JSON object with those fields, or for a one-column key its plain text).
    pub upsert_key: Option<Vec<(String, datafusion::arrow::datatypes::DataType)>>,
    /// Filters the partition list the broker reports at each metadata refresh: the server's
    /// share of the partitions (`--node i/N`), if it has one; tests also use it to show
    /// partitions appearing on a broker that cannot add partitions to a topic (Tansu has
    /// no CreatePartitions).
    pub partition_view: Option<PartitionView>,
    /// The source's `WATERMARK`, if it has one.
    pub watermark: Option<WatermarkSpec>,
    /// While it returns true, the reader hands this member nothing (a Kafka sink
    /// downstream is over its backlog bound); let go, the member catches up from where
    /// it stopped, while the other members of a shared reader go on meanwhile.
    pub hold: Option<Hold>,
}

/// See [`ReaderSpec::hold`].
pub type Hold = Arc<dyn Fn() -> bool + Send + Sync>;

/// How a reader tracks its source's watermark, and where it resumes.
#[derive(Clone, Debug)]
pub struct WatermarkSpec {
    /// Index of the event-time column in a row.
    pub column: usize,
    pub delay_micros: i64,
    pub idle_timeout: Duration,
    /// Largest event time per partition, as last committed.
    pub maxima: BTreeMap<i32, i64>,
    /// The watermark as last committed.
    pub watermark: Option<i64>,
}

impl WatermarkSpec {
    pub fn tracker(&self) -> WatermarkTracker {
        WatermarkTracker::new(
            self.column,
            self.delay_micros,
            self.idle_timeout,
            &self.maxima,
            self.watermark,
        )
    }
}

/// An event older than the watermark: kept in `freshet_catalog.late_events`, not in views.
#[derive(Clone, Debug)]
pub struct LateEvent {
    pub partition: i32,
    pub offset: i64,
    pub event_time: i64,
    pub watermark: i64,
    /// The first bytes of the payload, lossily as text.
    pub payload: String,
}

/// The first bytes of a payload, lossily as text: what dead-letter and late-event
/// tables keep of a message.
pub fn payload_head(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(DEAD_LETTER_PAYLOAD_BYTES)]).into_owned()
}

/// See [`ReaderSpec::partition_view`].
pub type PartitionView = Arc<dyn Fn(Vec<i32>) -> Vec<i32> + Send + Sync>;

/// Starts a reader thread feeding `sink` alone (see [`crate::kafka_reader`]).
pub fn spawn(spec: ReaderSpec, sink: Sink) -> Result<ReaderHandle, String> {
    crate::kafka_reader::spawn(spec, sink)
}

/// Logs an error librdkafka reports outside a call: a partition's end at debug level
/// (the readers expect it), the rest as warnings (librdkafka retries by itself).
pub fn log_client_error(error: rdkafka::error::KafkaError, reason: &str) {
    if matches!(
        error.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
    ) || matches!(error, rdkafka::error::KafkaError::PartitionEOF(_))
    {
        tracing::debug!(%reason, "librdkafka: end of partition");
    } else {
        tracing::warn!(error = %error, %reason, "librdkafka");
    }
}
