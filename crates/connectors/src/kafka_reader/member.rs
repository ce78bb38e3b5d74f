//! A member of a reader: what one view (or fed table) takes from it, from its own
//! positions, with its own watermark, dead letters and late events.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::kafka::{DeadLetter, LateEvent, ReaderHandle, ReaderSpec, Sink, WatermarkSpec};
use crate::watermark::WatermarkTracker;

/// One partition's series, for one member.
pub(super) struct PartitionMeters {
    pub(super) rows: prometheus::IntCounter,
    pub(super) bytes: prometheus::IntCounter,
    pub(super) errors: prometheus::IntCounter,
    pub(super) late: prometheus::IntCounter,
    pub(super) lag: prometheus::IntGauge,
}

/// What a reader feeds, from its own positions.
pub(super) struct Member {
    /// The relation it feeds (a label of its metrics).
    pub(super) relation: String,
    pub(super) source: String,
    pub(super) sink: Sink,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) catch_rx: mpsc::Receiver<mpsc::Sender<()>>,
    pub(super) waiting: Vec<(Instant, mpsc::Sender<()>)>,
    /// Dropped when the member leaves: its handle's `stop` waits for that.
    pub(super) _left: mpsc::Sender<()>,
    pub(super) failure: Arc<Mutex<Option<String>>>,
    /// Next offset it takes, per partition; a partition it has none for it takes from
    /// the beginning (or, in a private reader, from where the startup mode puts it).
    pub(super) positions: BTreeMap<i32, i64>,
    pub(super) tracker: Option<WatermarkTracker>,
    pub(super) meters: BTreeMap<i32, PartitionMeters>,
    /// Per row of the reader's buffer: whether this member takes it.
    pub(super) taken: Vec<bool>,
    pub(super) errors: Vec<DeadLetter>,
    pub(super) late: Vec<LateEvent>,
    /// Its positions moved (or its watermark) since its last batch.
    pub(super) dirty: bool,
    /// See [`crate::kafka::ReaderSpec::hold`].
    pub(super) hold: Option<crate::kafka::Hold>,
    /// Held back as of the last look: it takes nothing, and catches up once let go.
    pub(super) held: bool,
}

impl Member {
    pub(super) fn new(spec: &ReaderSpec, sink: Sink) -> (Member, ReaderHandle) {
        let stop = Arc::new(AtomicBool::new(false));
        let (catch_tx, catch_rx) = mpsc::channel();
        let (left_tx, left_rx) = mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let member = Member {
            relation: spec.relation.clone(),
            source: spec.config.source_name.clone(),
            sink,
            stop: stop.clone(),
            catch_rx,
            waiting: Vec::new(),
            _left: left_tx,
            failure: failure.clone(),
            positions: spec.start.clone(),
            tracker: spec.watermark.as_ref().map(WatermarkSpec::tracker),
            meters: BTreeMap::new(),
            taken: Vec::new(),
            errors: Vec::new(),
            late: Vec::new(),
            dirty: false,
            hold: spec.hold.clone(),
            held: false,
        };
        let handle = ReaderHandle::member(stop, catch_tx, left_rx, failure);
        (member, handle)
    }

    /// Whether it takes message `offset` of partition `p` (it has not taken it yet).
    pub(super) fn takes(&self, p: i32, offset: i64) -> bool {
        !self.held && self.positions.get(&p).is_none_or(|&next| offset >= next)
    }

    /// Partition `p`'s series (created on first use).
    pub(super) fn meters(&mut self, p: i32) -> &PartitionMeters {
        let (source, relation) = (&self.source, &self.relation);
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

    /// Ends the member with `error` (its handle reports it).
    pub(super) fn fail(self, error: String) {
        tracing::warn!(source = %self.source, relation = %self.relation, %error, "source reader stopped");
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }
}
