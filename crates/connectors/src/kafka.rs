//! The Kafka source reader: one thread per (view, source) that consumes the topic's
//! partitions from given offsets, decodes messages into changelog chunks and hands them
//! with the offsets they reach to a sink (the engine), which commits offsets together
//! with the view's state. Offsets committed to the consumer group are for lag monitoring
//! only; on restart the reader resumes from the offsets the engine stored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use freshet_engine::chunk::{timestamp_micros, Chunk, Row};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::decode::Decoder;
use crate::watermark::WatermarkTracker;

/// Messages larger than this go to the dead-letter table.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// How much of a bad message's payload the dead-letter table keeps.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 256;
const MAX_BATCH_ROWS: usize = 16384;
const MAX_BATCH_AGE: Duration = Duration::from_millis(50);
const METADATA_REFRESH: Duration = Duration::from_secs(5);
/// How often partition lag is updated (from the fetches' high watermarks).
const LAG_REFRESH: Duration = Duration::from_millis(500);
/// How often idle partitions are looked for.
const WATERMARK_TICK: Duration = Duration::from_millis(100);
/// librdkafka's fetch wait; a catch-up check waits two of them for fresh watermarks.
const FETCH_WAIT_MS: u64 = 100;

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
    fn client(&self, group: &str) -> ClientConfig {
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

fn partitions<C: rdkafka::consumer::ConsumerContext>(
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
            failure,
        })
    }

    /// Why the reader ended, if it failed (an error of its source or of the engine, a
    /// panic); `None` while it runs.
    pub fn failure(&self) -> Option<String> {
        let done = self.thread.as_ref().is_none_or(|t| t.is_finished());
        if !done || self.stop.load(Ordering::SeqCst) {
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
}

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

/// Starts a reader thread.
pub fn spawn(spec: ReaderSpec, sink: Sink) -> Result<ReaderHandle, String> {
    let high = Arc::new(Mutex::new(BTreeMap::new()));
    let consumer: BaseConsumer<Stats> = spec
        .config
        .client(&spec.group_id)
        .set("statistics.interval.ms", "1000")
        .create_with_context(Stats { high: high.clone() })
        .map_err(|e| format!("invalid Kafka settings: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (catch_tx, catch_rx) = mpsc::channel();
    let tracker = spec.watermark.as_ref().map(WatermarkSpec::tracker);
    let mut reader = Reader {
        meters: BTreeMap::new(),
        high,
        tracker,
        late: Vec::new(),
        consumer,
        at_end: BTreeMap::new(),
        spec,
        sink,
        positions: BTreeMap::new(),
        rows: Vec::new(),
        deletes: Vec::new(),
        errors: Vec::new(),
        dirty: false,
        first_pending: None,
    };
    let stop2 = stop.clone();
    let name = format!("freshet-src-{}", reader.spec.config.source_name);
    ReaderHandle::spawn(name, stop, catch_tx, move || reader.run(&stop2, catch_rx))
}

/// The primary key of a null-valued upsert message, from its key.
fn decode_key(
    key: Option<&[u8]>,
    cols: &[(String, datafusion::arrow::datatypes::DataType)],
) -> Result<Row, String> {
    let key = key.ok_or_else(|| "null value without a key: nothing to delete".to_string())?;
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(key) {
        let json = serde_json::Value::Object(obj).to_string();
        let d = Decoder::new(cols.to_vec(), crate::decode::Format::Json);
        return match d.decode(json.as_bytes())? {
            Some(row) => Ok(row),
            None => Err("empty key".into()),
        };
    }
    match cols {
        [(_, dt)] => {
            let text = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
            let text = text.trim_matches('"');
            Ok(vec![crate::decode::parse_text(text, dt)?])
        }
        _ => Err("the key of a table with a composite primary key must be a JSON object".into()),
    }
}

/// A message copied out of librdkafka's buffer.
struct Owned {
    partition: i32,
    offset: i64,
    payload: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
}

impl From<&rdkafka::message::BorrowedMessage<'_>> for Owned {
    fn from(m: &rdkafka::message::BorrowedMessage<'_>) -> Owned {
        Owned {
            partition: m.partition(),
            offset: m.offset(),
            payload: m.payload().map(<[u8]>::to_vec),
            key: m.key().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
        }
    }
}

/// One partition's series.
struct PartitionMeters {
    rows: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    errors: prometheus::IntCounter,
    late: prometheus::IntCounter,
    lag: prometheus::IntGauge,
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

/// Takes each partition's high watermark from librdkafka's statistics (of its fetches;
/// ListOffsets is not used: Tansu answers it short of the last batch).
struct Stats {
    high: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl rdkafka::ClientContext for Stats {
    /// librdkafka reports reaching a partition's end as an error; it is not one (the
    /// reader handles it), so it is logged at debug level, everything else as a warning.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        log_client_error(error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut high = self.high.lock().unwrap_or_else(|p| p.into_inner());
        for t in statistics.topics.values() {
            for (p, s) in &t.partitions {
                if *p >= 0 && s.hi_offset >= 0 {
                    high.insert(*p, s.hi_offset);
                }
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Stats {}

struct Reader {
    /// Its partitions' series.
    meters: BTreeMap<i32, PartitionMeters>,
    /// High watermarks per partition (see [`Stats`]).
    high: Arc<Mutex<BTreeMap<i32, i64>>>,
    tracker: Option<WatermarkTracker>,
    late: Vec<LateEvent>,
    consumer: BaseConsumer<Stats>,
    /// Partitions whose end the reader has reached (and read nothing since).
    at_end: BTreeMap<i32, bool>,
    spec: ReaderSpec,
    sink: Sink,
    /// Next offset per assigned partition (as read, not yet committed).
    positions: BTreeMap<i32, Option<i64>>,
    rows: Vec<Row>,
    deletes: Vec<Row>,
    errors: Vec<DeadLetter>,
    /// Offsets moved since the last batch.
    dirty: bool,
    first_pending: Option<Instant>,
}

impl Reader {
    fn assign_new(&mut self) -> Result<(), String> {
        let mut parts = partitions(&self.consumer, &self.spec.config.topic)?;
        if let Some(view) = &self.spec.partition_view {
            parts = view(parts);
        }
        let new: Vec<i32> = parts
            .into_iter()
            .filter(|p| !self.positions.contains_key(p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        let first_assignment = self.positions.is_empty();
        for p in &new {
            let offset = match self.spec.start.get(p) {
                Some(o) => Offset::Offset(*o),
                // Partitions added after the view started are read from their beginning.
                None if !first_assignment => Offset::Beginning,
                None => match self.spec.config.startup {
                    Startup::Earliest => Offset::Beginning,
                    Startup::Latest => Offset::End,
                    Startup::Timestamp(ts) => self.offset_for_time(*p, ts),
                },
            };
            tpl.add_partition_offset(&self.spec.config.topic, *p, offset)
                .map_err(|e| e.to_string())?;
            self.positions.insert(*p, self.spec.start.get(p).copied());
            if let Some(t) = &mut self.tracker {
                t.add_partition(*p);
            }
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| format!("cannot assign partitions: {e}"))?;
        tracing::info!(source = %self.spec.config.source_name, partitions = ?new, "reading partitions");
        Ok(())
    }

    fn offset_for_time(&self, partition: i32, ts: i64) -> Offset {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.spec.config.topic, partition, Offset::Offset(ts))
            .is_err()
        {
            return Offset::Beginning;
        }
        match self
            .consumer
            .offsets_for_times(tpl, Duration::from_secs(10))
        {
            Ok(res) => res
                .elements()
                .first()
                .map(|e| e.offset())
                .filter(|o| matches!(o, Offset::Offset(_)))
                .unwrap_or(Offset::End),
            Err(_) => Offset::Beginning,
        }
    }

    fn run(
        &mut self,
        stop: &AtomicBool,
        catch_rx: mpsc::Receiver<mpsc::Sender<()>>,
    ) -> Result<(), String> {
        // The broker may be down at startup: keep trying rather than give up on the view.
        while let Err(e) = self.assign_new() {
            tracing::warn!(source = %self.spec.config.source_name, error = %e, "cannot read the topic yet; retrying");
            for _ in 0..10 {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let mut last_refresh = Instant::now();
        let mut last_commit = Instant::now();
        let mut last_tick = Instant::now();
        let mut last_lag = Instant::now();
        let mut waiting: Vec<(Instant, mpsc::Sender<()>)> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            while let Ok(w) = catch_rx.try_recv() {
                waiting.push((Instant::now(), w));
            }
            let polled = self.consumer.poll(Duration::from_millis(20));
            let idle = polled.is_none();
            match polled.map(|r| r.map(|m| Owned::from(&m))) {
                None => {}
                Some(Ok(msg)) => self.take(msg)?,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    self.at_end.insert(p, true);
                }
                Some(Err(e)) => {
                    tracing::warn!(source = %self.spec.config.source_name, error = %e, "kafka error")
                }
            }
            // Idleness is measured in seconds: re-evaluate it now and then, not per message.
            if last_tick.elapsed() >= WATERMARK_TICK {
                last_tick = Instant::now();
                if self.tracker.as_mut().is_some_and(|t| t.tick()) {
                    self.dirty = true;
                    self.first_pending.get_or_insert_with(Instant::now);
                }
            }
            let full = self.rows.len() >= MAX_BATCH_ROWS;
            let old = self
                .first_pending
                .is_some_and(|t| t.elapsed() >= MAX_BATCH_AGE);
            if self.dirty && (full || old || idle) {
                self.send()?;
            }
            if !waiting.is_empty() && idle {
                let caught_up = self.caught_up();
                waiting.retain(|(since, tx)| {
                    let fresh = since.elapsed() >= Duration::from_millis(3 * FETCH_WAIT_MS);
                    if fresh && caught_up {
                        let _ = tx.send(());
                        false
                    } else {
                        true
                    }
                });
            }
            if last_refresh.elapsed() >= METADATA_REFRESH {
                last_refresh = Instant::now();
                if let Err(e) = self.assign_new() {
                    tracing::warn!(source = %self.spec.config.source_name, error = %e, "metadata refresh failed");
                }
            }
            if last_commit.elapsed() >= METADATA_REFRESH {
                last_commit = Instant::now();
                self.commit_for_monitoring();
            }
            if last_lag.elapsed() >= LAG_REFRESH {
                last_lag = Instant::now();
                self.update_lag();
            }
        }
        Ok(())
    }

    /// Whether every partition has been read to its end (librdkafka reports the end of a
    /// partition from the high watermark of its latest fetch).
    fn caught_up(&self) -> bool {
        self.positions
            .keys()
            .all(|p| self.at_end.get(p).copied().unwrap_or(false))
    }

    fn commit_for_monitoring(&self) {
        let mut tpl = TopicPartitionList::new();
        for (p, pos) in &self.positions {
            if let Some(o) = pos {
                let _ = tpl.add_partition_offset(&self.spec.config.topic, *p, Offset::Offset(*o));
            }
        }
        if tpl.count() > 0 {
            let _ = self.consumer.commit(&tpl, CommitMode::Async);
        }
    }

    /// Partition `p`'s series (created on first use).
    fn meters(&mut self, p: i32) -> &PartitionMeters {
        let (source, relation) = (&self.spec.config.source_name, &self.spec.relation);
        self.meters.entry(p).or_insert_with(|| {
            let m = freshet_engine::metrics::metrics();
            let labels = [source.as_str(), relation.as_str(), &p.to_string()];
            PartitionMeters {
                rows: m.source_rows.with_label_values(&labels),
                bytes: m.source_bytes.with_label_values(&labels),
                errors: m.source_parse_errors.with_label_values(&labels),
                late: m.source_late_events.with_label_values(&labels),
                lag: m.source_lag.with_label_values(&labels),
            }
        })
    }

    /// Sets each partition's lag from the high watermarks of its latest fetches.
    fn update_lag(&mut self) {
        let parts: Vec<(i32, i64)> = self
            .positions
            .iter()
            .filter_map(|(p, o)| o.map(|o| (*p, o)))
            .collect();
        let high = self.high.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (p, pos) in parts {
            if let Some(h) = high.get(&p) {
                self.meters(p).lag.set((h - pos).max(0));
            }
        }
    }

    fn take(&mut self, msg: Owned) -> Result<(), String> {
        let (p, off) = (msg.partition, msg.offset);
        self.at_end.insert(p, false);
        {
            let bytes = msg.payload.as_ref().map_or(0, Vec::len) as u64;
            let m = self.meters(p);
            m.rows.inc();
            m.bytes.inc_by(bytes);
        }
        if let (Some(key_cols), None) = (&self.spec.upsert_key, &msg.payload) {
            // A null value deletes the row with this key.
            match decode_key(msg.key.as_deref(), key_cols) {
                Ok(key) => {
                    if !self.rows.is_empty() {
                        self.send()?;
                    }
                    self.deletes.push(key);
                }
                Err(error) => self.errors.push(DeadLetter {
                    partition: p,
                    offset: off,
                    error,
                    payload: String::new(),
                }),
            }
            self.mark(p, off);
            return Ok(());
        }
        if !self.deletes.is_empty() {
            self.send()?;
        }
        self.mark(p, off);
        let payload = msg.payload.as_deref();
        let result = match payload {
            None => Err("empty message (null value)".to_string()),
            Some(b) if b.len() > MAX_MESSAGE_BYTES => Err(format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                b.len()
            )),
            Some(b) => self.spec.decoder.decode(b),
        };
        match result {
            Ok(Some(mut row)) => {
                for inc in &self.spec.includes {
                    row.push(match inc {
                        Include::Partition => ScalarValue::Int32(Some(p)),
                        Include::Offset => ScalarValue::Int64(Some(off)),
                        Include::Timestamp => ScalarValue::TimestampMicrosecond(
                            msg.timestamp_ms.map(|ms| ms * 1000),
                            Some("+00:00".into()),
                        ),
                        Include::Key => ScalarValue::Utf8(
                            msg.key
                                .as_deref()
                                .map(|k| String::from_utf8_lossy(k).into_owned()),
                        ),
                    });
                }
                if let Some(t) = &mut self.tracker {
                    let ts = row.get(t.column).and_then(timestamp_micros);
                    if let Err(watermark) = t.observe(p, ts) {
                        self.meters(p).late.inc();
                        self.late.push(LateEvent {
                            partition: p,
                            offset: off,
                            event_time: ts.unwrap_or_default(),
                            watermark,
                            payload: payload_head(payload.unwrap_or_default()),
                        });
                        return Ok(());
                    }
                }
                self.rows.push(row);
            }
            Ok(None) => {}
            Err(error) => {
                self.meters(p).errors.inc();
                self.errors.push(DeadLetter {
                    partition: p,
                    offset: off,
                    error,
                    payload: payload_head(payload.unwrap_or_default()),
                });
            }
        }
        Ok(())
    }

    /// Notes that `offset` of `partition` was read.
    fn mark(&mut self, partition: i32, offset: i64) {
        self.positions.insert(partition, Some(offset + 1));
        self.dirty = true;
        self.first_pending.get_or_insert_with(Instant::now);
    }

    fn send(&mut self) -> Result<(), String> {
        let rows = std::mem::take(&mut self.rows);
        let weights = vec![1; rows.len()];
        let chunk = Chunk::from_rows(self.spec.schema.clone(), &rows, weights)
            .map_err(|e| e.to_string())?;
        let offsets = self
            .positions
            .iter()
            .filter_map(|(p, o)| o.map(|o| (*p, o)))
            .collect();
        let batch = SourceBatch {
            chunk,
            deletes: std::mem::take(&mut self.deletes),
            offsets,
            errors: std::mem::take(&mut self.errors),
            watermark: self.tracker.as_ref().and_then(WatermarkTracker::watermark),
            maxima: self
                .tracker
                .as_ref()
                .map(WatermarkTracker::maxima)
                .unwrap_or_default(),
            late: std::mem::take(&mut self.late),
        };
        self.dirty = false;
        self.first_pending = None;
        (self.sink)(batch)
    }
}
