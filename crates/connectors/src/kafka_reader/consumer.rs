//! The reader thread's loop: one consumer, each message decoded once and handed to every
//! member that has not taken it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::BooleanArray;
use datafusion::common::ScalarValue;
use freshet_engine::chunk::{timestamp_micros, Chunk, Row};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::member::Member;
use super::Shared;
use crate::decode::Decoder;
use crate::kafka::ReaderSpec;
use crate::kafka::{
    log_client_error, partitions, payload_head, DeadLetter, Include, LateEvent, SourceBatch,
    Startup, FETCH_WAIT_MS, MAX_MESSAGE_BYTES,
};
use crate::watermark::WatermarkTracker;

const MAX_BATCH_ROWS: usize = 16384;
const MAX_BATCH_AGE: Duration = Duration::from_millis(50);
const METADATA_REFRESH: Duration = Duration::from_secs(5);
/// How often partition lag is updated (from the fetches' high watermarks).
const LAG_REFRESH: Duration = Duration::from_millis(500);
/// How often idle partitions are looked at.
const WATERMARK_TICK: Duration = Duration::from_millis(100);
/// Messages polled at most before they are decoded and taken.
const POLL_BATCH: usize = 4096;
/// Decoding threads at most for one batch of polled messages.
const DECODE_THREADS: usize = 4;
/// Messages per decoding thread at least: fewer are decoded on the reader's thread.
const DECODE_PER_THREAD: usize = 512;

/// A polled message decoded: `None` if no member takes it (or it is an upsert delete).
type Decoded = Option<Result<Option<Row>, String>>;

/// How many threads decode `n` messages (1: the reader's thread alone).
fn decode_threads(n: usize) -> usize {
    static CORES: std::sync::LazyLock<usize> =
        std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(1, |c| c.get()));
    (n / DECODE_PER_THREAD).clamp(1, DECODE_THREADS.min(*CORES))
}

pub(super) fn start(
    spec: ReaderSpec,
    first: Member,
    shared: Option<Shared>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let high = Arc::new(Mutex::new(BTreeMap::new()));
    let group_id = match &shared {
        Some(_) => format!("freshet-{}", spec.config.source_name),
        None => spec.group_id.clone(),
    };
    let consumer: BaseConsumer<Stats> = spec
        .config
        .client(&group_id)
        .set("statistics.interval.ms", "1000")
        .create_with_context(Stats { high: high.clone() })
        .map_err(|e| format!("invalid Kafka settings: {e}"))?;
    let fetched = freshet_engine::metrics::metrics()
        .source_fetched
        .with_label_values(&[spec.config.source_name.as_str()]);
    let mut reader = Reader {
        high,
        consumer,
        at_end: BTreeMap::new(),
        fetch: BTreeMap::new(),
        decoder: spec.decoder,
        includes: spec.includes,
        schema: spec.schema,
        upsert_key: spec.upsert_key,
        partition_view: spec.partition_view,
        config: spec.config,
        members: vec![first],
        takers: Vec::new(),
        fetched,
        rows: Vec::new(),
        positions: Vec::new(),
        deletes: Vec::new(),
        first_pending: None,
        shared,
    };
    let name = format!("freshet-src-{}", reader.config.source_name);
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.run()))
                .unwrap_or_else(|p| {
                    Err(format!(
                        "the reader panicked: {}",
                        freshet_engine::panic_message(p.as_ref())
                    ))
                });
            if let Err(e) = &res {
                tracing::warn!(reader = %name, error = %e, "source reader stopped");
            }
            reader.end(res.err());
        })
        .map_err(|e| format!("cannot start the source reader: {e}"))
}

/// Decodes the `wanted` messages of `msgs` on `threads` threads, each a contiguous share
/// (the answers in the messages' order).
fn decode_batch(
    decoder: &Decoder,
    msgs: &[Owned],
    wanted: &[bool],
    threads: usize,
) -> Vec<Decoded> {
    let decode = move |(m, wanted): (&Owned, &bool)| -> Decoded {
        if !*wanted {
            return None;
        }
        Some(match m.payload.as_deref() {
            None => Err("empty message (null value)".to_string()),
            Some(b) if b.len() > MAX_MESSAGE_BYTES => Err(format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                b.len()
            )),
            Some(b) => decoder.decode(b),
        })
    };
    if threads <= 1 || msgs.is_empty() {
        return msgs.iter().zip(wanted).map(decode).collect();
    }
    let per = msgs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = msgs
            .chunks(per)
            .zip(wanted.chunks(per))
            .map(|(part, w)| {
                scope.spawn(move || part.iter().zip(w).map(decode).collect::<Vec<_>>())
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| {
                // A decoder panic fails the reader, as it did on the reader's thread.
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    })
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
    /// High watermarks per partition (see [`Stats`]).
    high: Arc<Mutex<BTreeMap<i32, i64>>>,
    consumer: BaseConsumer<Stats>,
    /// Partitions whose end the reader has reached (and read nothing since).
    at_end: BTreeMap<i32, bool>,
    /// Per assigned partition: the next offset the consumer reads, if known (`None`: it
    /// was assigned from the beginning, or by the startup mode, and has read nothing).
    fetch: BTreeMap<i32, Option<i64>>,
    config: crate::kafka::KafkaConfig,
    decoder: Decoder,
    includes: Vec<Include>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    upsert_key: Option<Vec<(String, datafusion::arrow::datatypes::DataType)>>,
    partition_view: Option<crate::kafka::PartitionView>,
    members: Vec<Member>,
    /// See [`Reader::take`].
    takers: Vec<usize>,
    /// `freshet_source_fetched_total` of the source.
    fetched: prometheus::IntCounter,
    /// Rows decoded since the last batch; each member says which it takes.
    rows: Vec<Row>,
    /// Where each of `rows` was read: (partition, offset).
    positions: Vec<(i32, i64)>,
    /// Upsert mode (private readers only): keys deleted since the last batch.
    deletes: Vec<Row>,
    first_pending: Option<Instant>,
    shared: Option<Shared>,
}

impl Reader {
    fn topic(&self) -> &str {
        &self.config.topic
    }

    /// Assigns the partitions the topic has and the reader does not read yet, each from
    /// the smallest position of the members.
    fn assign_new(&mut self) -> Result<(), String> {
        let mut parts = partitions(&self.consumer, self.topic())?;
        if let Some(view) = &self.partition_view {
            parts = view(parts);
        }
        let new: Vec<i32> = parts
            .into_iter()
            .filter(|p| !self.fetch.contains_key(p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        let first_assignment = self.fetch.is_empty();
        for p in &new {
            let from = self.smallest_position(*p);
            let offset = match from {
                Some(o) => Offset::Offset(o),
                // Partitions added after the view started are read from their beginning.
                None if !first_assignment => Offset::Beginning,
                None => match self.config.startup {
                    Startup::Earliest => Offset::Beginning,
                    Startup::Latest => Offset::End,
                    Startup::Timestamp(ts) => self.offset_for_time(*p, ts),
                },
            };
            tpl.add_partition_offset(self.topic(), *p, offset)
                .map_err(|e| e.to_string())?;
            self.fetch.insert(*p, from);
            for m in &mut self.members {
                if let Some(t) = &mut m.tracker {
                    t.add_partition(*p);
                }
            }
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| format!("cannot assign partitions: {e}"))?;
        tracing::info!(source = %self.config.source_name, partitions = ?new, "reading partitions");
        Ok(())
    }

    /// The smallest next offset of the members for partition `p`; `None` if a member has
    /// none (it reads the partition from the beginning).
    fn smallest_position(&self, p: i32) -> Option<i64> {
        let mut min: Option<i64> = None;
        for m in &self.members {
            let o = m.positions.get(&p)?;
            min = Some(min.map_or(*o, |x| x.min(*o)));
        }
        min
    }

    fn offset_for_time(&self, partition: i32, ts: i64) -> Offset {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(self.topic(), partition, Offset::Offset(ts))
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

    /// Adds members that joined a running shared reader, and reads again what they are
    /// behind on. If moving back fails, the reader ends, and each of its members starts
    /// again from its committed offsets: none may read on past messages it missed.
    fn add_members(&mut self, joined: Vec<Member>) -> Result<(), String> {
        let first = self.members.len();
        for mut m in joined {
            for &p in self.fetch.keys() {
                if let Some(t) = &mut m.tracker {
                    t.add_partition(p);
                }
            }
            self.members.push(m);
        }
        for i in first..self.members.len() {
            self.move_back_for(i)?;
        }
        Ok(())
    }

    /// Every partition member `i` is behind on is read again from its position (the
    /// members already past a message skip it): a member that joined late, or one let go
    /// after being held back.
    fn move_back_for(&mut self, i: usize) -> Result<(), String> {
        let mut back = TopicPartitionList::new();
        for (&p, &fetch) in &self.fetch {
            let behind = match (self.members[i].positions.get(&p), fetch) {
                // Nothing read yet: the consumer is at the start of the partition, or at
                // an offset every member had reached.
                (_, None) => None,
                (None, Some(_)) => Some(Offset::Beginning),
                (Some(&o), Some(f)) => (o < f).then_some(Offset::Offset(o)),
            };
            if let Some(offset) = behind {
                back.add_partition_offset(self.topic(), p, offset)
                    .map_err(|e| e.to_string())?;
            }
        }
        if back.count() == 0 {
            return Ok(());
        }
        // Re-assigned at the new offset, librdkafka drops what it had fetched beyond.
        self.consumer
            .incremental_unassign(&back)
            .map_err(|e| format!("cannot move back on partitions: {e}"))?;
        self.consumer
            .incremental_assign(&back)
            .map_err(|e| format!("cannot move back on partitions: {e}"))?;
        for e in back.elements() {
            let p = e.partition();
            let from = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            self.fetch.insert(p, from);
            self.at_end.insert(p, false);
            // The members past `from` see nothing of `p` until the consumer is back
            // where they are: the partition must not turn idle for them meanwhile.
            for m in &mut self.members {
                if let Some(t) = &mut m.tracker {
                    t.touch(p);
                }
            }
        }
        Ok(())
    }

    /// Looks whether held members are still held; those let go catch up.
    fn check_holds(&mut self) -> Result<(), String> {
        let mut failed = Vec::new();
        for i in 0..self.members.len() {
            let m = &mut self.members[i];
            let Some(hold) = &m.hold else { continue };
            let held = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hold())) {
                Ok(held) => held,
                Err(p) => {
                    let why = freshet_engine::panic_message(p.as_ref());
                    failed.push((
                        i,
                        format!("looking whether a sink holds the view back panicked: {why}"),
                    ));
                    continue;
                }
            };
            let released = m.held && !held;
            m.held = held;
            if released {
                // It saw nothing while held: its partitions did not go idle.
                if let Some(t) = &mut m.tracker {
                    for p in self.fetch.keys() {
                        t.touch(*p);
                    }
                }
                self.move_back_for(i)?;
            }
        }
        for (i, e) in failed.into_iter().rev() {
            self.members.remove(i).fail(e);
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        // The broker may be down at startup: keep trying rather than give up on the view.
        while let Err(e) = self.assign_new() {
            tracing::warn!(source = %self.config.source_name, error = %e, "cannot read the topic yet; retrying");
            for _ in 0..10 {
                // Members join and leave meanwhile (nothing is assigned: no seeking).
                self.drop_stopped();
                self.take_joins()?;
                if self.members.is_empty() && self.leave_registry()? {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let mut last_refresh = Instant::now();
        let mut last_commit = Instant::now();
        let mut last_tick = Instant::now();
        let mut last_lag = Instant::now();
        loop {
            self.drop_stopped();
            self.take_joins()?;
            if self.members.is_empty() && self.leave_registry()? {
                return Ok(());
            }
            for m in &mut self.members {
                while let Ok(w) = m.catch_rx.try_recv() {
                    m.waiting.push((Instant::now(), w));
                }
            }
            // Before each poll: a sink over its bound stops the reader's hand-overs to
            // what feeds it within one poll, not a tick later.
            self.check_holds()?;
            let idle = self.poll_and_take();
            // Idleness is measured in seconds: re-evaluate it now and then, not per message.
            if last_tick.elapsed() >= WATERMARK_TICK {
                last_tick = Instant::now();
                for m in &mut self.members {
                    if m.held {
                        continue;
                    }
                    if let Some(t) = &mut m.tracker {
                        // A partition the consumer reads again for another member is not
                        // idle for one already past it: it waits for the consumer to come
                        // back to it, as its own reader would have read it live.
                        for (p, f) in &self.fetch {
                            let ahead =
                                m.positions.get(p).is_some_and(|&o| f.is_none_or(|f| o > f));
                            if ahead {
                                t.touch(*p);
                            }
                        }
                    }
                    if m.tracker.as_mut().is_some_and(|t| t.tick()) {
                        m.dirty = true;
                        self.first_pending.get_or_insert_with(Instant::now);
                    }
                }
            }
            let full = self.rows.len() >= MAX_BATCH_ROWS;
            let old = self
                .first_pending
                .is_some_and(|t| t.elapsed() >= MAX_BATCH_AGE);
            if self.first_pending.is_some() && (full || old || idle) {
                self.send();
            }
            if idle {
                self.answer_catch_ups();
            }
            if last_refresh.elapsed() >= METADATA_REFRESH {
                last_refresh = Instant::now();
                if let Err(e) = self.assign_new() {
                    tracing::warn!(source = %self.config.source_name, error = %e, "metadata refresh failed");
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
    }

    /// Polls what librdkafka has ready (waiting up to 20 ms for the first message), up
    /// to [`POLL_BATCH`] messages, decodes them (on several threads when there are many)
    /// and takes them in order. Returns whether nothing came (the reader is idle).
    fn poll_and_take(&mut self) -> bool {
        let mut msgs = Vec::new();
        let mut end = None;
        let mut wait = Duration::from_millis(20);
        while msgs.len() < POLL_BATCH {
            let polled = self.consumer.poll(wait);
            wait = Duration::ZERO;
            match polled.map(|r| r.map(|m| Owned::from(&m))) {
                None => break,
                Some(Ok(msg)) => msgs.push(msg),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    end = Some(p);
                    break;
                }
                Some(Err(e)) => {
                    tracing::warn!(source = %self.config.source_name, error = %e, "kafka error");
                    break;
                }
            }
        }
        let idle = msgs.is_empty() && end.is_none();
        let decoded = self.decode_all(&msgs);
        for (msg, row) in msgs.into_iter().zip(decoded) {
            self.take(msg, row);
        }
        // After the messages before it: taking a message marks its partition not at its end.
        if let Some(p) = end {
            self.at_end.insert(p, true);
        }
        idle
    }

    /// Decodes the messages some member takes (`None` for the others, and for an upsert
    /// reader's deletes), spread over up to [`DECODE_THREADS`] threads when there are
    /// many. Which member takes a message depends only on the messages of its partition
    /// before it, so it is known before they are taken.
    fn decode_all(&self, msgs: &[Owned]) -> Vec<Decoded> {
        let wanted: Vec<bool> = msgs
            .iter()
            .map(|m| {
                let delete = self.upsert_key.is_some() && m.payload.is_none();
                !delete && self.members.iter().any(|x| x.takes(m.partition, m.offset))
            })
            .collect();
        decode_batch(&self.decoder, msgs, &wanted, decode_threads(msgs.len()))
    }

    /// Members whose handle stopped them leave.
    fn drop_stopped(&mut self) {
        self.members.retain(|m| !m.stop.load(Ordering::SeqCst));
    }

    /// Members that joined a shared reader since the last look.
    fn take_joins(&mut self) -> Result<(), String> {
        let joined: Vec<Member> = match &self.shared {
            Some(s) => s.joins.try_iter().collect(),
            None => Vec::new(),
        };
        self.add_members(joined)
    }

    /// With no member left: a shared reader deregisters, unless a member is joining (it
    /// then reads on for it); returns whether the reader ends.
    fn leave_registry(&mut self) -> Result<bool, String> {
        let Some(s) = &self.shared else {
            return Ok(true);
        };
        let readers = s.readers.clone();
        let mut groups = readers.lock();
        let joined: Vec<Member> = s.joins.try_iter().collect();
        if joined.is_empty() {
            if groups.get(&s.key).is_some_and(|e| e.id == s.id) {
                groups.remove(&s.key);
            }
            return Ok(true);
        }
        drop(groups);
        self.add_members(joined)?;
        Ok(false)
    }

    /// The reader ended (`error`: why, if it failed): every member still in it, and any
    /// still joining, ends with that error.
    fn end(&mut self, error: Option<String>) {
        let error = error.unwrap_or_else(|| "the reader ended".into());
        if let Some(s) = &self.shared {
            let mut groups = s.readers.lock();
            if groups.get(&s.key).is_some_and(|e| e.id == s.id) {
                groups.remove(&s.key);
            }
            drop(groups);
            self.members.extend(s.joins.try_iter());
        }
        for m in self.members.drain(..) {
            if !m.stop.load(Ordering::SeqCst) {
                m.fail(error.clone());
            }
        }
    }

    /// Answers the members waiting to catch up once every partition is read to its end
    /// and what they took is handed over.
    fn answer_catch_ups(&mut self) {
        if self.members.iter().all(|m| m.waiting.is_empty()) {
            return;
        }
        let caught_up = self
            .fetch
            .keys()
            .all(|p| self.at_end.get(p).copied().unwrap_or(false));
        for m in &mut self.members {
            // A held member is not caught up: it waits (see `Readers::catch_up`).
            let done = caught_up && !m.dirty && !m.held;
            m.waiting.retain(|(since, tx)| {
                let fresh = since.elapsed() >= Duration::from_millis(3 * FETCH_WAIT_MS);
                if fresh && done {
                    let _ = tx.send(());
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Commits, for lag monitoring only, what every member has read.
    fn commit_for_monitoring(&self) {
        let mut tpl = TopicPartitionList::new();
        for p in self.fetch.keys() {
            let pos = self
                .members
                .iter()
                .map(|m| m.positions.get(p).copied())
                .min()
                .flatten();
            if let Some(o) = pos {
                let _ = tpl.add_partition_offset(self.topic(), *p, Offset::Offset(o));
            }
        }
        if tpl.count() > 0 {
            let _ = self.consumer.commit(&tpl, CommitMode::Async);
        }
    }

    /// Sets each member's lag per partition from the high watermarks of the latest fetches.
    fn update_lag(&mut self) {
        let high = self.high.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for m in &mut self.members {
            let parts: Vec<(i32, i64)> = m.positions.iter().map(|(p, o)| (*p, *o)).collect();
            for (p, pos) in parts {
                if let Some(h) = high.get(&p) {
                    m.meters(p).lag.set((h - pos).max(0));
                }
            }
        }
    }

    /// Takes one message: decoded once, handed to every member that has not taken it.
    fn take(&mut self, msg: Owned, decoded: Decoded) {
        let (p, off) = (msg.partition, msg.offset);
        self.fetched.inc();
        self.at_end.insert(p, false);
        self.fetch.insert(p, Some(off + 1));
        // Upsert mode (private readers): rows and deletes keep their order, each batch
        // holding one kind, its offsets ending before the message of the other kind.
        let delete = self.upsert_key.is_some() && msg.payload.is_none();
        if (delete && !self.rows.is_empty()) || (!delete && !self.deletes.is_empty()) {
            self.send();
        }
        // The members that take it (a buffer kept between messages).
        let mut takers = std::mem::take(&mut self.takers);
        takers.clear();
        takers.extend((0..self.members.len()).filter(|&i| self.members[i].takes(p, off)));
        if !takers.is_empty() {
            self.take_for(&takers, msg, decoded);
        }
        self.takers = takers;
    }

    /// [`Reader::take`] for the members `takers`.
    fn take_for(&mut self, takers: &[usize], msg: Owned, decoded: Decoded) {
        let (p, off) = (msg.partition, msg.offset);
        if self.upsert_key.is_some() && msg.payload.is_none() {
            // A null value deletes the row with this key.
            self.mark(takers, &msg);
            let key_cols = self.upsert_key.as_deref().unwrap_or_default();
            match decode_key(msg.key.as_deref(), key_cols) {
                Ok(key) => self.deletes.push(key),
                Err(error) => self.dead_letter(takers, p, off, error, &[], false),
            }
            return;
        }
        self.mark(takers, &msg);
        let payload = msg.payload.as_deref();
        let Some(result) = decoded else {
            // Only if a message's takers changed since it was decoded: a bug.
            tracing::error!(source = %self.config.source_name, partition = p, offset = off, "a message taken was not decoded");
            return;
        };
        let mut row = match result {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(error) => {
                self.dead_letter(takers, p, off, error, payload.unwrap_or_default(), true);
                return;
            }
        };
        for inc in &self.includes {
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
        let at = self.rows.len();
        let mut any = false;
        for &i in takers {
            let m = &mut self.members[i];
            // Rows before this one that the member did not take.
            m.taken.resize(at, false);
            let on_time = match &mut m.tracker {
                None => Ok(()),
                Some(t) => {
                    let ts = row.get(t.column).and_then(timestamp_micros);
                    t.observe(p, ts).map_err(|wm| (ts, wm))
                }
            };
            match on_time {
                Ok(()) => {
                    m.taken.push(true);
                    any = true;
                }
                Err((ts, watermark)) => {
                    m.meters(p).late.inc();
                    m.late.push(LateEvent {
                        partition: p,
                        offset: off,
                        event_time: ts.unwrap_or_default(),
                        watermark,
                        payload: payload_head(payload.unwrap_or_default()),
                    });
                }
            }
        }
        if any {
            self.rows.push(row);
            self.positions.push((p, off));
        }
    }

    /// Notes that the takers took `msg`.
    fn mark(&mut self, takers: &[usize], msg: &Owned) {
        let bytes = msg.payload.as_ref().map_or(0, Vec::len) as u64;
        for &i in takers {
            let m = &mut self.members[i];
            m.positions.insert(msg.partition, msg.offset + 1);
            m.dirty = true;
            let meters = m.meters(msg.partition);
            meters.rows.inc();
            meters.bytes.inc_by(bytes);
        }
        self.first_pending.get_or_insert_with(Instant::now);
    }

    /// A message the takers could not read: a dead letter for each of them.
    fn dead_letter(
        &mut self,
        takers: &[usize],
        p: i32,
        offset: i64,
        error: String,
        payload: &[u8],
        count: bool,
    ) {
        let payload = payload_head(payload);
        for &i in takers {
            let m = &mut self.members[i];
            if count {
                m.meters(p).errors.inc();
            }
            m.errors.push(DeadLetter {
                partition: p,
                offset,
                error: error.clone(),
                payload: payload.clone(),
            });
        }
    }

    /// Hands every member with news its batch: the rows it took, its offsets, dead
    /// letters and watermark. A member whose sink fails leaves the reader.
    fn send(&mut self) {
        let rows = std::mem::take(&mut self.rows);
        let positions = std::mem::take(&mut self.positions);
        let deletes = std::mem::take(&mut self.deletes);
        self.first_pending = None;
        let n = rows.len();
        let chunk = Chunk::from_rows(self.schema.clone(), &rows, vec![1; n]);
        let mut failed = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            let mut taken = std::mem::take(&mut m.taken);
            if !m.dirty {
                continue;
            }
            m.dirty = false;
            taken.resize(n, false);
            let mine_positions: Vec<(i32, i64)> = positions
                .iter()
                .zip(&taken)
                .filter(|(_, t)| **t)
                .map(|(p, _)| *p)
                .collect();
            let mine = match &chunk {
                Ok(c) if taken.iter().all(|t| *t) => Ok(c.clone()),
                Ok(c) => c
                    .filter(&BooleanArray::from(taken))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let res = mine.and_then(|chunk| {
                let batch = SourceBatch {
                    chunk,
                    positions: mine_positions,
                    deletes: deletes.clone(),
                    offsets: m.positions.iter().map(|(p, o)| (*p, *o)).collect(),
                    errors: std::mem::take(&mut m.errors),
                    watermark: m.tracker.as_ref().and_then(WatermarkTracker::watermark),
                    maxima: m
                        .tracker
                        .as_ref()
                        .map(WatermarkTracker::maxima)
                        .unwrap_or_default(),
                    late: std::mem::take(&mut m.late),
                };
                // A panic in one view's sink fails that view only.
                let sink = &mut m.sink;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(batch)))
                    .unwrap_or_else(|p| {
                        Err(format!(
                            "the source reader's sink panicked: {}",
                            freshet_engine::panic_message(p.as_ref())
                        ))
                    })
            });
            if let Err(e) = res {
                failed.push((i, e));
            }
        }
        for (i, e) in failed.into_iter().rev() {
            self.members.remove(i).fail(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;

    use super::*;
    use crate::decode::Format;

    /// Spread over threads, decoding answers what one thread does, in the same order:
    /// rows, bad JSON, wrong types, null and oversized payloads, and unwanted messages.
    #[test]
    fn decoding_on_several_threads_answers_as_one_thread() {
        let decoder = Decoder::new(
            vec![("k".into(), DataType::Int64), ("g".into(), DataType::Utf8)],
            Format::Json,
        );
        let msgs: Vec<Owned> = (0..5_000i64)
            .map(|i| Owned {
                partition: (i % 3) as i32,
                offset: i,
                payload: match i % 11 {
                    0 => None,
                    1 => Some(b"{not json".to_vec()),
                    2 => Some(br#"{"k": "x"}"#.to_vec()),
                    3 if i % 2 == 0 => Some(vec![b' '; MAX_MESSAGE_BYTES + 1]),
                    _ => Some(format!(r#"{{"k": {i}, "g": "g{}"}}"#, i % 7).into_bytes()),
                },
                key: None,
                timestamp_ms: None,
            })
            .collect();
        let wanted: Vec<bool> = (0..msgs.len()).map(|i| i % 13 != 0).collect();
        let one = decode_batch(&decoder, &msgs, &wanted, 1);
        for threads in [2, 3, 4] {
            let many = decode_batch(&decoder, &msgs, &wanted, threads);
            assert_eq!(one, many, "{threads} threads");
        }
        assert_eq!(one.len(), msgs.len());
        assert!(one.iter().filter(|d| d.is_none()).count() > 300);
        assert!(one.iter().any(|d| matches!(d, Some(Err(_)))));
        assert!(one.iter().any(|d| matches!(d, Some(Ok(Some(_))))));
        assert_eq!(decode_threads(100), 1);
    }
}
