//! A Kafka sink's delivery: one thread per sink that reads the sink's outbox
//! (`freshet_engine::sink_log`) as committed, writes its changes to the topic and records
//! how far it got, so the engine never waits for the broker.
//!
//! Each round delivers everything committed and not yet delivered, as of one checkpoint
//! (the outbox's last sequence number read first bounds the batch), then records the
//! batch's end with one synced write and drops the delivered entries.
//!
//! Guarantees (see `docs/operations.md`):
//! - `exactly-once` (on request): each batch is one Kafka transaction (idempotent, fenced
//!   producer with a transactional id per sink). Every message carries the batch's end in
//!   the `freshet_batch` header; after a crash between the transaction's commit and the
//!   recorded position, the sink reads the end of its last committed transaction back
//!   from the topic, so nothing is sent twice to `read_committed` consumers.
//! - `at-least-once` (the default): idempotent writes without transactions; a crash before the position
//!   is recorded sends that last batch again. Every message carries its change's sequence
//!   number (`freshet_seq`), so a consumer can drop repeats, and UPSERT with a key is
//!   idempotent anyway.
//!
//! A broker that is slow or down only lets the outbox grow (`backlog`); past
//! `max_backlog` changes the sink asks its readers to pause ([`SinkStatus::paused`]).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use freshet_engine::sink_log::{self, Position};
use freshet_storage::Store;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::sink_encode::{Encoder, Fold, Format, Message as SinkMessage};

/// Outbox entries read at a time.
const PAGE: usize = 10_000;
/// The most changes one PLAIN batch (one transaction, one flush) carries.
const MAX_PLAIN_BATCH: u64 = 100_000;
/// How often an idle sink looks for newly committed changes.
const POLL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the sink's thread needs.
#[derive(Clone, Debug)]
pub struct SinkSpec {
    pub sink_id: u64,
    pub sink_name: String,
    pub topic: String,
    /// librdkafka settings (`bootstrap.servers` included).
    pub properties: Vec<(String, String)>,
    pub format: Format,
    pub names: Vec<String>,
    pub types: Vec<DataType>,
    pub key_columns: Vec<usize>,
    pub exactly_once: bool,
    /// Undelivered changes past which the sink's readers pause.
    pub max_backlog: u64,
}

/// A sink's live figures, shared with metrics and `freshet_catalog.sinks`.
#[derive(Debug, Default)]
pub struct SinkStatus {
    /// Last change committed to the outbox, and last delivered (sequence numbers).
    pub last_seq: AtomicU64,
    pub delivered_seq: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    /// When the last batch was delivered (epoch microseconds; 0: never).
    pub last_delivery_micros: AtomicI64,
    /// How long the last batch took, microseconds.
    pub last_batch_micros: AtomicU64,
    /// Readers feeding this sink should wait (its backlog is over the bound).
    pub paused: AtomicBool,
    /// The sink stopped: nobody should wait for it.
    pub closed: AtomicBool,
    pub last_error: Mutex<Option<(i64, String)>>,
}

impl SinkStatus {
    pub fn backlog(&self) -> u64 {
        self.last_seq
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered_seq.load(Ordering::Relaxed))
    }

    pub fn last_error(&self) -> Option<(i64, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn error(&self, e: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "sink delivery failed; retrying");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((freshet_engine::wall_clock_micros(), e.to_string()));
    }

    fn set_position(&self, p: Position, max_backlog: u64) {
        self.last_seq.store(p.last, Ordering::Relaxed);
        self.delivered_seq.store(p.delivered, Ordering::Relaxed);
        self.paused
            .store(p.backlog() > max_backlog, Ordering::Relaxed);
    }
}

/// The running sink; dropping it stops the thread (after its current batch).
pub struct SinkHandle {
    stop: Arc<AtomicBool>,
    wake: Arc<(Mutex<()>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    pub status: Arc<SinkStatus>,
}

impl SinkHandle {
    /// Asks the thread to stop, without waiting for it.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.status.closed.store(true, Ordering::SeqCst);
        // Under the lock: the thread checks `stop` under it before it waits.
        let _guard = self.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.1.notify_all();
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Counts delivery reports of the current batch.
#[derive(Default)]
struct Reports {
    failed: AtomicU64,
    error: Mutex<Option<String>>,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::log_client_error(error, reason);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

/// Whether librdkafka takes `spec`'s settings (a producer can be made), before the sink
/// is created.
pub fn check(spec: &SinkSpec) -> Result<(), String> {
    producer(spec)
        .map(drop)
        .map_err(|e| format!("invalid Kafka settings: {e}"))
}

/// Checks the settings (a producer can be made) and starts the sink's thread.
pub fn spawn(spec: SinkSpec, store: Store) -> Result<SinkHandle, String> {
    producer(&spec).map_err(|e| format!("invalid Kafka settings: {e}"))?;
    let status = Arc::new(SinkStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new((Mutex::new(()), Condvar::new()));
    let (s, st, w) = (status.clone(), stop.clone(), wake.clone());
    let thread = std::thread::Builder::new()
        .name(format!("freshet-sink-{}", spec.sink_id))
        .spawn(move || Delivery::new(spec, store, s, st, w).run())
        .map_err(|e| format!("cannot start the sink's thread: {e}"))?;
    Ok(SinkHandle {
        stop,
        wake,
        thread: Some(thread),
        status,
    })
}

fn producer(spec: &SinkSpec) -> Result<BaseProducer<Reports>, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    if spec.exactly_once {
        c.set("transactional.id", transactional_id(spec))
            .set("transaction.timeout.ms", "60000");
    }
    for (k, v) in &spec.properties {
        c.set(k, v);
    }
    c.create_with_context(Reports::default())
}

/// Stable across restarts of the sink, distinct between sinks.
fn transactional_id(spec: &SinkSpec) -> String {
    format!("freshet-sink-{}-{}", spec.sink_id, spec.sink_name)
}

struct Delivery {
    spec: SinkSpec,
    store: Store,
    status: Arc<SinkStatus>,
    stop: Arc<AtomicBool>,
    wake: Arc<(Mutex<()>, Condvar)>,
    encoder: Encoder,
    producer: Option<BaseProducer<Reports>>,
    meters: SinkMeters,
}

/// The sink's series (`freshet_sink_*`).
struct SinkMeters {
    messages: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    failures: prometheus::IntCounter,
    batch: prometheus::Histogram,
    last_delivery: prometheus::Gauge,
}

impl Delivery {
    fn new(
        spec: SinkSpec,
        store: Store,
        status: Arc<SinkStatus>,
        stop: Arc<AtomicBool>,
        wake: Arc<(Mutex<()>, Condvar)>,
    ) -> Delivery {
        let encoder = Encoder::new(
            spec.format,
            spec.names.clone(),
            spec.key_columns.clone(),
            &spec.sink_name,
        );
        let m = freshet_engine::metrics::metrics();
        let l = [spec.sink_name.as_str()];
        let meters = SinkMeters {
            messages: m.sink_messages.with_label_values(&l),
            bytes: m.sink_bytes.with_label_values(&l),
            failures: m.sink_failures.with_label_values(&l),
            batch: m.sink_batch_seconds.with_label_values(&l),
            last_delivery: m.sink_last_delivery.with_label_values(&l),
        };
        Delivery {
            spec,
            store,
            status,
            stop,
            wake,
            encoder,
            producer: None,
            meters,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) {
        let guard = self.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        if !self.stopping() {
            let _ = self.wake.1.wait_timeout(guard, d);
        }
    }

    fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        while !self.stopping() {
            match self.round() {
                Ok(true) => backoff = Duration::from_millis(100),
                Ok(false) => self.sleep(POLL),
                Err(e) => {
                    self.status.error(&e);
                    self.meters.failures.inc();
                    // A fresh producer next time: after a failed transaction or a fenced
                    // one, librdkafka's needs recovering anyway.
                    self.producer = None;
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn position(&self) -> Result<Position, String> {
        let id = self.spec.sink_id;
        self.store
            .read_snapshot(|r| sink_log::position(r, id))
            .map_err(|e| e.to_string())
    }

    /// Delivers one batch if there is one; whether there was.
    fn round(&mut self) -> Result<bool, String> {
        // The figures (and the bound on the backlog) stay current while the broker is away.
        let pos = self.position()?;
        self.status.set_position(pos, self.spec.max_backlog);
        if self.producer.is_none() {
            self.connect()?;
        }
        let pos = self.position()?;
        self.status.set_position(pos, self.spec.max_backlog);
        if pos.backlog() == 0 {
            return Ok(false);
        }
        // A PLAIN batch may end anywhere; a keyed one must end at a checkpoint (see
        // `sink_encode`), so it takes everything committed.
        let pos = Position {
            last: if self.encoder.keyed() {
                pos.last
            } else {
                pos.last.min(pos.delivered.saturating_add(MAX_PLAIN_BATCH))
            },
            delivered: pos.delivered,
        };
        let started = Instant::now();
        tracing::debug!(sink = %self.spec.sink_name, after = pos.delivered, to = pos.last, "delivering a batch");
        self.deliver(pos)?;
        if crash_after_send() {
            // Fault injection for the crash tests: the broker has the batch, and its
            // position is not recorded.
            tracing::error!("FRESHET_TEST_SINK_CRASH_AFTER_SEND: aborting");
            std::process::abort();
        }
        sink_log::mark_delivered(&self.store, self.spec.sink_id, pos.last)
            .map_err(|e| e.to_string())?;
        let took = started.elapsed();
        self.meters.batch.observe(took.as_secs_f64());
        self.meters
            .last_delivery
            .set(freshet_engine::wall_clock_micros() as f64 / 1e6);
        let s = &self.status;
        s.set_position(
            Position {
                last: pos.last,
                delivered: pos.last,
            },
            self.spec.max_backlog,
        );
        s.batches.fetch_add(1, Ordering::Relaxed);
        s.last_delivery_micros
            .store(freshet_engine::wall_clock_micros(), Ordering::Relaxed);
        s.last_batch_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        *s.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(true)
    }

    /// A new producer; with transactions, fences off any earlier one of this sink (its
    /// open transaction is aborted) and takes the position its last committed
    /// transaction reached, if that is past the recorded one.
    fn connect(&mut self) -> Result<(), String> {
        let p = producer(&self.spec).map_err(|e| format!("invalid Kafka settings: {e}"))?;
        if self.spec.exactly_once {
            p.init_transactions(BROKER_TIMEOUT)
                .map_err(|e| format!("cannot start a Kafka transaction: {e}"))?;
            let committed = self.committed_in_topic()?;
            let pos = self.position()?;
            if committed > pos.last {
                // The topic holds batches this database never made: another database's
                // sink with the same id (a restored backup running beside its original,
                // a new data directory). Trusting them would skip changes.
                tracing::error!(
                    sink = %self.spec.sink_name,
                    committed,
                    last = pos.last,
                    "the topic holds batches past this sink's outbox (from another data directory?); they are ignored"
                );
            } else if committed > pos.delivered {
                tracing::info!(
                    sink = %self.spec.sink_name,
                    recorded = pos.delivered,
                    committed,
                    "the sink's last transaction committed after its position was recorded; going on from it"
                );
                sink_log::mark_delivered(&self.store, self.spec.sink_id, committed)
                    .map_err(|e| e.to_string())?;
            }
        }
        self.producer = Some(p);
        Ok(())
    }

    /// The end of the last batch this sink committed to the topic (0: none found), read
    /// from the `freshet_batch` headers of each partition's last committed messages.
    fn committed_in_topic(&self) -> Result<u64, String> {
        let mut c = ClientConfig::new();
        c.set(
            "group.id",
            format!("freshet-sink-recovery-{}", self.spec.sink_id),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
        for (k, v) in &self.spec.properties {
            c.set(k, v);
        }
        let consumer: BaseConsumer = c.create().map_err(|e| e.to_string())?;
        let topic = &self.spec.topic;
        let md = consumer
            .fetch_metadata(Some(topic), BROKER_TIMEOUT)
            .map_err(|e| format!("cannot reach the Kafka broker: {e}"))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        let me = self.spec.sink_id.to_string();
        let mut best = 0u64;
        for p in parts {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, BROKER_TIMEOUT)
                .map_err(|e| format!("cannot read the topic's offsets: {e}"))?;
            // Look back further until one of this sink's messages turns up.
            let mut window = 256i64;
            loop {
                let start = (high - window).max(low);
                let found = read_batch_headers(&consumer, topic, p, start, high, &me)?;
                if let Some(b) = found {
                    best = best.max(b);
                    break;
                }
                if start == low {
                    break;
                }
                window *= 8;
            }
        }
        Ok(best)
    }

    /// Produces every change in `(pos.delivered, pos.last]`; returns once the broker has
    /// them all (with transactions: once the transaction committed).
    fn deliver(&mut self, pos: Position) -> Result<(), String> {
        let spec = &self.spec;
        let p = self.producer.as_ref().ok_or("no producer")?;
        p.context().failed.store(0, Ordering::Relaxed);
        if spec.exactly_once {
            p.begin_transaction()
                .map_err(|e| format!("cannot begin a Kafka transaction: {e}"))?;
        }
        let mut after = pos.delivered;
        let mut fold = Fold::default();
        let mut out = Vec::new();
        while after < pos.last {
            let mut page = sink_log::read(&self.store, spec.sink_id, after, PAGE, &spec.types)
                .map_err(|e| e.to_string())?;
            page.retain(|c| c.seq <= pos.last);
            let Some(last) = page.last() else { break };
            after = last.seq;
            if self.encoder.keyed() {
                self.encoder.fold(&page, &mut fold);
            } else {
                self.encoder.plain(&page, &mut out);
                self.send(p, &mut out, pos.last)?;
            }
            if self.stopping() {
                return Err("the sink is stopping".into());
            }
        }
        if self.encoder.keyed() {
            self.encoder
                .finish(fold, freshet_engine::wall_clock_micros() / 1000, &mut out);
            self.send(p, &mut out, pos.last)?;
        }
        if spec.exactly_once {
            p.commit_transaction(BROKER_TIMEOUT)
                .map_err(|e| format!("cannot commit the Kafka transaction: {e}"))?;
        } else {
            // In slices, so that a sink being dropped does not wait out a broker away.
            let until = Instant::now() + BROKER_TIMEOUT;
            while let Err(e) = p.flush(Duration::from_secs(1)) {
                if self.stopping() {
                    return Err("the sink is stopping".into());
                }
                if Instant::now() >= until {
                    return Err(format!("the broker did not take the batch: {e}"));
                }
            }
        }
        let failed = p.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            let e = p
                .context()
                .error
                .lock()
                .unwrap_or_else(|x| x.into_inner())
                .clone();
            return Err(format!(
                "{failed} messages were not delivered: {}",
                e.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Produces `msgs` (draining it), waiting while librdkafka's queue is full.
    fn send(
        &self,
        p: &BaseProducer<Reports>,
        msgs: &mut Vec<SinkMessage>,
        batch_end: u64,
    ) -> Result<(), String> {
        let batch = batch_end.to_string();
        let sink = self.spec.sink_id.to_string();
        for m in msgs.drain(..) {
            let seq = m.seq.to_string();
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: "freshet_sink",
                    value: Some(sink.as_bytes()),
                })
                .insert(Header {
                    key: "freshet_seq",
                    value: Some(seq.as_bytes()),
                })
                .insert(Header {
                    key: "freshet_batch",
                    value: Some(batch.as_bytes()),
                });
            let bytes = m.value.as_ref().map_or(0, Vec::len) + m.key.as_ref().map_or(0, Vec::len);
            let mut rec: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.spec.topic).headers(headers);
            if let Some(k) = &m.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &m.value {
                rec = rec.payload(v.as_slice());
            }
            let deadline = Instant::now() + BROKER_TIMEOUT;
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        if Instant::now() > deadline {
                            return Err("the broker takes no messages (queue full)".into());
                        }
                        if self.stop.load(Ordering::SeqCst) {
                            return Err("the sink is stopping".into());
                        }
                        rec = r;
                        p.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => return Err(format!("cannot send to the topic: {e}")),
                }
            }
            self.status.messages_sent.fetch_add(1, Ordering::Relaxed);
            self.status
                .bytes_sent
                .fetch_add(bytes as u64, Ordering::Relaxed);
            self.meters.messages.inc();
            self.meters.bytes.inc_by(bytes as u64);
        }
        p.poll(Duration::ZERO);
        Ok(())
    }
}

/// Whether the test hook `FRESHET_TEST_SINK_CRASH_AFTER_SEND=1` is set: the process
/// aborts after a batch reached the broker and before its position is recorded, the
/// moment at-least-once delivery sends a batch twice (see `tests/kafka_sink.rs`).
fn crash_after_send() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| std::env::var("FRESHET_TEST_SINK_CRASH_AFTER_SEND").is_ok_and(|v| v == "1"))
}

/// The largest `freshet_batch` header of sink `me` in partition `p` from `start` to the
/// partition's end (committed messages only). Reads to the end the fetches report, not to
/// `end` (which ListOffsets gave: Tansu's can be short of the last batch).
fn read_batch_headers(
    consumer: &BaseConsumer,
    topic: &str,
    p: i32,
    start: i64,
    end: i64,
    me: &str,
) -> Result<Option<u64>, String> {
    if start >= end {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(start))
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + BROKER_TIMEOUT;
    let mut best = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(format!("cannot read the topic back: {e}")),
            Some(Ok(m)) => {
                if let Some(h) = m.headers() {
                    let get = |k: &str| {
                        h.iter()
                            .find(|x| x.key == k)
                            .and_then(|x| x.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                    };
                    if get("freshet_sink") == Some(me) {
                        if let Some(b) = get("freshet_batch").and_then(|b| b.parse::<u64>().ok()) {
                            best = Some(best.map_or(b, |x: u64| x.max(b)));
                        }
                    }
                }
            }
        }
    }
    Ok(best)
}
