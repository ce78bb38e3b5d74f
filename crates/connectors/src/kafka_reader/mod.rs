//! The Kafka reader thread: one consumer that reads a topic's partitions, decodes each
//! message once and hands the rows to its members, each from its own offsets.
//!
//! A member is what a reader feeds: a view reading the source, or the table a topic feeds.
//! A *private* reader has one member ([`crate::kafka::spawn`]). A *shared* reader
//! ([`SharedReaders::join`]) serves every view over one source: N views over a topic cost
//! one fetch and one decode, not N.
//!
//! Each member keeps its own position per partition (the offsets its view committed), its
//! own watermark and its own batches, so what it receives is exactly what a reader of its
//! own would have handed it: every message at or after its position, once. The consumer
//! reads each partition from the smallest position of the members; a member that joins
//! behind (a view created later, or one restarted after a failed commit) moves the
//! partition back, and the members already past a re-read message skip it. A member whose
//! sink fails (its view failed, or the engine rewound) leaves alone; the others go on.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};

use crate::kafka::{ReaderHandle, ReaderSpec, Sink, Startup};

mod consumer;
mod member;

use consumer::start;
use member::Member;

/// Shared readers by source (see [`SharedReaders::join`]); one per server.
#[derive(Default)]
pub struct SharedReaders {
    groups: Mutex<HashMap<String, Entry>>,
}

/// A running shared reader: where to send members that join it.
struct Entry {
    joins: mpsc::Sender<Member>,
    /// Tells this reader from a later one under the same key.
    id: u64,
}

impl SharedReaders {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member to the shared reader of `key` (a source and its settings), starting
    /// that reader if none runs. The reader is shared only by members whose partitions
    /// without a stored offset are read from the beginning (`scan.startup.mode` earliest)
    /// and that are not upsert feeds; `spec` of another kind gets a private reader.
    pub fn join(
        self: &Arc<Self>,
        key: String,
        spec: ReaderSpec,
        sink: Sink,
    ) -> Result<ReaderHandle, String> {
        if !Self::shares(&spec) {
            return crate::kafka::spawn(spec, sink);
        }
        let (member, handle) = Member::new(&spec, sink);
        let mut groups = self.lock();
        let member = match groups.get(&key) {
            Some(entry) => match entry.joins.send(member) {
                Ok(()) => return Ok(handle),
                // It ended without deregistering (it panicked): start another.
                Err(mpsc::SendError(m)) => m,
            },
            None => member,
        };
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let shared = Shared {
            readers: self.clone(),
            key: key.clone(),
            id,
            joins: rx,
        };
        start(spec, member, Some(shared))?;
        groups.insert(key, Entry { joins: tx, id });
        Ok(handle)
    }

    /// Whether a reader of `spec` is shared: its partitions without a stored offset are
    /// read from the beginning, and it is not an upsert feed. A private reader holds
    /// nothing back by itself ([`crate::kafka::ReaderSpec::hold`] is for shared ones):
    /// its sink waits instead.
    pub fn shares(spec: &ReaderSpec) -> bool {
        spec.config.startup == Startup::Earliest && spec.upsert_key.is_none()
    }

    /// How many shared readers run (one per source being read).
    pub fn running(&self) -> usize {
        self.lock().len()
    }
}

/// A shared reader's link to its registry.
struct Shared {
    readers: Arc<SharedReaders>,
    key: String,
    id: u64,
    joins: mpsc::Receiver<Member>,
}

/// Starts a reader thread with one member.
pub(crate) fn spawn(spec: ReaderSpec, sink: Sink) -> Result<ReaderHandle, String> {
    let (member, handle) = Member::new(&spec, sink);
    let thread = start(spec, member, None)?;
    Ok(handle.with_thread(thread))
}
