//! How far long-running engine work has got, readable from any thread while the
//! coordinator does it: a new view's backfill from the tables and views it reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::plan::RelationId;

/// Rows done of a known total.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub finished: AtomicBool,
}

impl Progress {
    pub fn snapshot(&self) -> (u64, u64, bool) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
        )
    }
}

static BACKFILLS: LazyLock<Mutex<HashMap<RelationId, Arc<Progress>>>> =
    LazyLock::new(Default::default);

fn backfills() -> std::sync::MutexGuard<'static, HashMap<RelationId, Arc<Progress>>> {
    BACKFILLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The progress of view `view`'s backfill, started now.
pub fn start_backfill(view: RelationId) -> Arc<Progress> {
    let p = Arc::new(Progress::default());
    backfills().insert(view, p.clone());
    p
}

/// View `view`'s backfill, if one ran in this process.
pub fn backfill(view: RelationId) -> Option<Arc<Progress>> {
    backfills().get(&view).cloned()
}

/// Forgets view `view`'s backfill (the view was dropped).
pub fn forget_backfill(view: RelationId) {
    backfills().remove(&view);
}
