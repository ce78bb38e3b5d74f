//! Long work and how far it has got (`SHOW JOBS`, `freshet_catalog.jobs`): a new view's
//! backfill from the tables and views it reads (counted by the engine), its catch-up on
//! the Kafka backlog of its sources (rows read against the partitions' lag), `FLUSH`
//! (every reader's rows against all lag), and `CREATE MATERIALIZED VIEW` run in the
//! background (`SET background_ddl = true`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::session::ops_series;

/// How long finished jobs stay listed in `freshet_catalog.jobs`.
const KEEP_FINISHED: usize = 50;

#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Running,
    Done,
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    /// `backfill`, `catch up`, `create materialized view`, `create sink`.
    pub kind: &'static str,
    pub relation: String,
    /// The relation's id, once known.
    pub relation_id: Option<u64>,
    pub started: Instant,
    pub started_micros: i64,
    pub state: State,
    /// Rows read from sources when the job started (catch-up jobs).
    base_rows: f64,
}

/// A job's progress as shown.
#[derive(Clone, Debug)]
pub struct Shown {
    pub job: Job,
    pub done: u64,
    /// Rows still to do, if the end is known.
    pub remaining: Option<u64>,
    pub rows_per_second: f64,
}

impl Shown {
    pub fn percent(&self) -> Option<f64> {
        let total = self.done + self.remaining?;
        Some(if total == 0 {
            100.0
        } else {
            100.0 * self.done as f64 / total as f64
        })
    }

    pub fn eta_seconds(&self) -> Option<f64> {
        let r = self.remaining?;
        (self.rows_per_second > 0.0).then(|| r as f64 / self.rows_per_second)
    }
}

#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Job>>,
}

/// Whether series labels name `relation` (`*`: every relation).
fn of(labels: &BTreeMap<String, String>, relation: &str) -> bool {
    relation == "*" || labels.get("relation").is_some_and(|r| r == relation)
}

fn rows_read(relation: &str) -> f64 {
    ops_series("freshet_source_rows_total")
        .into_iter()
        .filter(|(l, _)| of(l, relation))
        .map(|(_, v)| v)
        .sum()
}

/// The relation's unread messages, if its readers have reported any lag yet.
fn lag(relation: &str) -> Option<u64> {
    let series: Vec<f64> = ops_series("freshet_source_lag_messages")
        .into_iter()
        .filter(|(l, _)| of(l, relation))
        .map(|(_, v)| v)
        .collect();
    (!series.is_empty()).then(|| series.iter().sum::<f64>() as u64)
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a running job; its id.
    pub fn start(&self, kind: &'static str, relation: &str, relation_id: Option<u64>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Job {
            id,
            kind,
            relation: relation.to_string(),
            relation_id,
            started: Instant::now(),
            started_micros: freshet_engine::wall_clock_micros(),
            state: State::Running,
            base_rows: rows_read(relation),
        };
        let mut jobs = self.lock();
        jobs.insert(id, job);
        // Keep the running ones and the latest finished ones.
        let finished: Vec<u64> = jobs
            .values()
            .filter(|j| j.state != State::Running)
            .map(|j| j.id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(KEEP_FINISHED))
        {
            jobs.remove(id);
        }
        id
    }

    pub fn finish(&self, id: u64, state: State, relation_id: Option<u64>) {
        if let Some(j) = self.lock().get_mut(&id) {
            j.state = state;
            if relation_id.is_some() {
                j.relation_id = relation_id;
            }
        }
    }

    /// Every job with its progress now; running catch-ups whose lag reached zero are
    /// marked done first.
    pub fn show(&self) -> Vec<Shown> {
        let mut jobs = self.lock();
        // A background CREATE shows the progress of its view's backfill.
        let building: std::collections::HashMap<String, u64> = jobs
            .values()
            .filter(|j| j.kind == "backfill" && j.state == State::Running)
            .filter_map(|j| Some((j.relation.clone(), j.relation_id?)))
            .collect();
        let mut out = Vec::new();
        for j in jobs.values_mut() {
            let secs = j.started.elapsed().as_secs_f64().max(1e-3);
            let shown = match j.kind {
                "catch up" | "flush" => {
                    let done = (rows_read(&j.relation) - j.base_rows).max(0.0) as u64;
                    let remaining = lag(&j.relation);
                    // librdkafka reports lag about once a second: give it time to.
                    if j.kind == "catch up"
                        && j.state == State::Running
                        && remaining == Some(0)
                        && secs > 2.0
                    {
                        j.state = State::Done;
                    }
                    Shown {
                        job: j.clone(),
                        done,
                        remaining,
                        rows_per_second: done as f64 / secs,
                    }
                }
                _ => {
                    let p = j
                        .relation_id
                        .or_else(|| building.get(&j.relation).copied())
                        .and_then(freshet_engine::progress::backfill);
                    let (done, total, finished) = p.map(|p| p.snapshot()).unwrap_or((0, 0, false));
                    let remaining = (total > 0 || finished).then(|| total.saturating_sub(done));
                    Shown {
                        job: j.clone(),
                        done,
                        remaining,
                        rows_per_second: done as f64 / secs,
                    }
                }
            };
            out.push(shown);
        }
        out
    }
}
