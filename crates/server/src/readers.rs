//! The running source readers, and their supervision.
//!
//! A reader ends when its source fails for good (a decode bug, a panic) or when the engine
//! refuses its batches after a failed commit ([`freshet_engine::EngineError::Rewound`]).
//! Either way it is started again, with backoff (0.5 s doubling up to 30 s), from the
//! offsets its view committed, so nothing is lost and nothing counted twice. While it is
//! down, `freshet_catalog.source_status` and the log say so.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use freshet_connectors::kafka::ReaderHandle;

/// How long `FLUSH` waits for a reader a sink holds back before it gives up.
pub const HELD_FOR: Duration = Duration::from_secs(10);

/// Where a reader feeds: a view (reading a source), or a table fed by a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    View { view: u64, source: u64 },
    Table(u64),
}

struct Slot {
    owner: Owner,
    handle: ReaderHandle,
    /// The engine's epoch when the reader started (see `Engine::epoch`): a reader from
    /// before a failed commit restarts, even if it has nothing to send (its last batches
    /// may have been dropped).
    epoch: u64,
    started: Instant,
    /// Restarts since the reader last ran for [`STABLE`] without failing.
    restarts: u32,
    /// While down: why, since when, and when to try again.
    down: Option<Down>,
    /// The last failure, kept after a restart.
    last_error: Option<(String, SystemTime)>,
}

struct Down {
    error: String,
    since: SystemTime,
    retry_at: Instant,
}

/// A reader that ran this long without failing starts over at the shortest backoff.
const STABLE: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn backoff(restarts: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(1u32 << restarts.min(10))
        .min(MAX_BACKOFF)
}

/// One reader's state, for `freshet_catalog.source_status`.
pub struct Status {
    pub owner: Owner,
    /// `running`, or `restarting` while down.
    pub state: &'static str,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// When it went down (while down), or when the last error happened.
    pub since: Option<SystemTime>,
}

#[derive(Default)]
pub struct Readers {
    /// By the relation they feed (a view or a table).
    slots: Mutex<BTreeMap<u64, Vec<Slot>>>,
}

impl Readers {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the readers of relation `id`, started at engine epoch `epoch`.
    pub fn insert(&self, id: u64, epoch: u64, handles: Vec<(Owner, ReaderHandle)>) {
        let slots = handles
            .into_iter()
            .map(|(owner, handle)| Slot {
                owner,
                handle,
                epoch,
                started: Instant::now(),
                restarts: 0,
                down: None,
                last_error: None,
            })
            .collect();
        self.lock().insert(id, slots);
    }

    /// Takes the readers of relation `id` out (dropping them stops their threads).
    pub fn remove(&self, id: u64) -> Vec<ReaderHandle> {
        self.lock()
            .remove(&id)
            .map(|v| v.into_iter().map(|s| s.handle).collect())
            .unwrap_or_default()
    }

    /// Takes every reader out.
    pub fn take_all(&self) -> Vec<ReaderHandle> {
        std::mem::take(&mut *self.lock())
            .into_values()
            .flatten()
            .map(|s| s.handle)
            .collect()
    }

    /// Restarts the readers that failed and whose backoff has passed (`now`: restart
    /// every failed one at once, as `FLUSH` wants), and every reader started before the
    /// engine's current `epoch`. `start` starts a reader anew from its committed offsets.
    pub fn supervise(
        &self,
        now: bool,
        epoch: u64,
        start: impl Fn(Owner) -> Result<ReaderHandle, String>,
    ) {
        let mut slots = self.lock();
        for slot in slots.values_mut().flatten() {
            if slot.down.is_none() && slot.epoch != epoch {
                // A commit failed since it started: what it handed over since the last
                // commit is gone. Start again from the committed offsets, at once.
                slot.handle.stop();
                slot.down = Some(Down {
                    error: "a commit failed: restarting from the committed offsets".into(),
                    since: SystemTime::now(),
                    retry_at: Instant::now(),
                });
            }
            if slot.down.is_none() {
                if slot.restarts > 0 && slot.started.elapsed() >= STABLE {
                    slot.restarts = 0;
                }
                let Some(error) = slot.handle.failure() else {
                    continue;
                };
                let wait = backoff(slot.restarts);
                tracing::warn!(owner = ?slot.owner, %error, retry_in = ?wait, "source reader is down");
                slot.down = Some(Down {
                    error,
                    since: SystemTime::now(),
                    retry_at: Instant::now() + wait,
                });
            }
            let Some(down) = &mut slot.down else { continue };
            if !now && Instant::now() < down.retry_at {
                continue;
            }
            slot.restarts = slot.restarts.saturating_add(1);
            match start(slot.owner) {
                Ok(handle) => {
                    tracing::info!(owner = ?slot.owner, restarts = slot.restarts, "source reader restarted from its committed offsets");
                    slot.last_error = Some((down.error.clone(), down.since));
                    slot.handle = handle;
                    slot.epoch = epoch;
                    slot.started = Instant::now();
                    slot.down = None;
                }
                Err(e) => {
                    let wait = backoff(slot.restarts);
                    tracing::warn!(owner = ?slot.owner, error = %e, retry_in = ?wait, "source reader could not restart");
                    down.error = e;
                    down.retry_at = Instant::now() + wait;
                }
            }
        }
    }

    /// Waits until every running reader has handed over what its source holds now.
    /// `held`: why a relation's readers are held back (a Kafka sink they feed is over
    /// its backlog bound), if they are; a reader held back for [`HELD_FOR`] ends the wait
    /// with that reason instead of waiting out `timeout`.
    pub fn catch_up(
        &self,
        timeout: Duration,
        held: &dyn Fn(u64) -> Option<String>,
    ) -> Result<(), String> {
        let slots = self.lock();
        for slot in slots.values().flatten() {
            if let Some(down) = &slot.down {
                return Err(format!(
                    "a source reader is down and restarting: {}",
                    down.error
                ));
            }
            let rel = match slot.owner {
                Owner::View { view, .. } => view,
                Owner::Table(t) => t,
            };
            let mut since: Option<std::time::Instant> = None;
            slot.handle.catch_up_while(timeout, || match held(rel) {
                None => {
                    since = None;
                    Ok(())
                }
                Some(why) => {
                    let t = *since.get_or_insert_with(std::time::Instant::now);
                    if t.elapsed() >= HELD_FOR {
                        Err(why)
                    } else {
                        Ok(())
                    }
                }
            })?;
        }
        Ok(())
    }

    /// Every reader's state.
    pub fn status(&self) -> Vec<Status> {
        self.lock()
            .values()
            .flatten()
            .map(|s| match &s.down {
                Some(d) => Status {
                    owner: s.owner,
                    state: "restarting",
                    restarts: s.restarts,
                    last_error: Some(d.error.clone()),
                    since: Some(d.since),
                },
                None => Status {
                    owner: s.owner,
                    state: "running",
                    restarts: s.restarts,
                    last_error: s.last_error.as_ref().map(|(e, _)| e.clone()),
                    since: s.last_error.as_ref().map(|(_, t)| *t),
                },
            })
            .collect()
    }
}
