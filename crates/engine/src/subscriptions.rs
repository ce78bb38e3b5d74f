//! Change streams (`SUBSCRIBE`): every committed change of a table or view, handed to the
//! sessions that subscribed to it, checkpoint by checkpoint.
//!
//! The coordinator captures the changes of a watched relation as they flow through
//! `propagate_all` (a failed statement takes back what it captured), and at each
//! successful commit hands them to each subscriber with the checkpoint's timestamp. A
//! subscriber registers between two commits, right after one (see
//! `Engine::subscribe`), so its snapshot and its changes meet exactly: nothing missed,
//! nothing twice.
//!
//! The engine never waits for a subscriber. What a subscriber has not read yet is counted
//! in rows; past its limit it is dropped with [`Event::Ended`] and the engine goes on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::chunk::Chunk;
use crate::plan::RelationId;

/// What a subscriber receives.
pub enum Event {
    /// The changes one checkpoint committed (weights: +n inserted, −n deleted).
    Changes { timestamp: i64, chunks: Vec<Chunk> },
    /// The stream ends: the relation was dropped, or the subscriber fell too far behind.
    Ended(String),
}

/// The receiving end, held by a session.
pub struct Subscription {
    /// The timestamp of the checkpoint the snapshot was taken at.
    pub timestamp: i64,
    rx: mpsc::UnboundedReceiver<Event>,
    queued: Arc<AtomicUsize>,
}

impl Subscription {
    /// The next event; `None` once the engine has shut down.
    pub async fn next(&mut self) -> Option<Event> {
        let e = self.rx.recv().await?;
        if let Event::Changes { chunks, .. } = &e {
            self.queued.fetch_sub(rows(chunks), Ordering::SeqCst);
        }
        Some(e)
    }
}

fn rows(chunks: &[Chunk]) -> usize {
    chunks.iter().map(|c| c.weights.len()).sum()
}

struct Subscriber {
    tx: mpsc::UnboundedSender<Event>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// The coordinator's side: who watches what, and what the open checkpoint changed.
#[derive(Default)]
pub(crate) struct Subscribers {
    watching: HashMap<RelationId, Vec<Subscriber>>,
    /// Changes of watched relations since the last commit, in the order they happened.
    captured: Vec<(RelationId, Chunk)>,
    /// The last checkpoint's timestamp (milliseconds since the epoch; strictly rising).
    timestamp: i64,
}

impl Subscribers {
    /// Registers a subscriber to `relation` at the checkpoint just committed.
    pub(crate) fn add(&mut self, relation: RelationId, limit: usize) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        self.watching.entry(relation).or_default().push(Subscriber {
            tx,
            queued: queued.clone(),
            limit,
        });
        Subscription {
            timestamp: self.timestamp,
            rx,
            queued,
        }
    }

    pub(crate) fn watches(&self, relation: RelationId) -> bool {
        self.watching.contains_key(&relation)
    }

    pub(crate) fn capture(&mut self, relation: RelationId, chunk: &Chunk) {
        if !chunk.weights.is_empty() {
            self.captured.push((relation, chunk.clone()));
        }
    }

    /// Where a statement starts; [`Subscribers::undo_to`] takes back what it captured.
    pub(crate) fn mark(&self) -> usize {
        self.captured.len()
    }

    pub(crate) fn undo_to(&mut self, mark: usize) {
        self.captured.truncate(mark);
    }

    /// A commit failed: what it would have committed did not happen.
    pub(crate) fn discard(&mut self) {
        self.captured.clear();
    }

    /// Stamps a checkpoint just committed; `now_ms` is the wall clock.
    pub(crate) fn committed(&mut self, now_ms: i64, exists: impl Fn(RelationId) -> bool) {
        self.timestamp = now_ms.max(self.timestamp + 1);
        let mut by_relation: HashMap<RelationId, Vec<Chunk>> = HashMap::new();
        for (rel, chunk) in self.captured.drain(..) {
            by_relation.entry(rel).or_default().push(chunk);
        }
        let timestamp = self.timestamp;
        self.watching.retain(|rel, subs| {
            let chunks = by_relation.remove(rel).unwrap_or_default();
            if !exists(*rel) {
                for s in subs.drain(..) {
                    let _ = s.tx.send(Event::Ended(
                        "the relation was dropped while subscribed to".into(),
                    ));
                }
                return false;
            }
            if !chunks.is_empty() {
                let n = rows(&chunks);
                subs.retain(|s| {
                    // One checkpoint's changes always go to a subscriber that has read
                    // everything (however many there are): only a backlog counts.
                    let queued = s.queued.load(Ordering::SeqCst);
                    if queued > 0 && queued + n > s.limit {
                        let _ = s.tx.send(Event::Ended(format!(
                            "the subscriber fell too far behind: {queued} changed rows not \
                             read yet and {n} more (subscribe_max_buffered_rows is {})",
                            s.limit
                        )));
                        return false;
                    }
                    s.queued.fetch_add(n, Ordering::SeqCst);
                    s.tx.send(Event::Changes {
                        timestamp,
                        chunks: chunks.clone(),
                    })
                    .is_ok()
                });
            }
            // Subscribers that went away (their stream was dropped) leave on the next
            // commit that has something for them, or now if it had nothing.
            subs.retain(|s| !s.tx.is_closed());
            !subs.is_empty()
        });
    }
}
