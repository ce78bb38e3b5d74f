//! The operational relations of `freshet_catalog` (`source_partitions`, `views`,
//! `checkpoints`): the same figures as `GET /metrics`, for psql and dashboards. Each is
//! read from the metrics registry, counters kept with the views and RocksDB's estimates,
//! never by scanning a view or its state.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use freshet_engine::coordinator::view_row_count;
use freshet_engine::metrics::metrics;
use freshet_planner::catalog::Catalog;
use freshet_storage::{keys, prefix_end, Reader};

use super::system_tables::nullable_schema as schema;
use super::Db;
use crate::error::Result;

pub(super) const SOURCE_PARTITIONS_NAME: &str = "freshet_catalog.source_partitions";
pub(super) const VIEWS_NAME: &str = "freshet_catalog.views";
pub(super) const CHECKPOINTS_NAME: &str = "freshet_catalog.checkpoints";
pub(super) const JOBS_NAME: &str = "freshet_catalog.jobs";

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Seconds since the epoch as a `timestamptz` (NULL for 0: never).
fn at(secs: f64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(
        (secs > 0.0).then_some((secs * 1e6) as i64),
        Some("UTC".into()),
    )
}

/// Every series of metric family `name`: its labels and value (counters and gauges).
pub(crate) fn series(name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for f in metrics().registry.gather() {
        if f.name() != name {
            continue;
        }
        let counter = f.get_field_type() == prometheus::proto::MetricType::COUNTER;
        for m in f.get_metric() {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            let v = if counter {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            };
            out.push((labels, v));
        }
    }
    out
}

/// Series of `name` by the value of label `key`.
fn by_label(name: &str, key: &str) -> BTreeMap<String, f64> {
    series(name)
        .into_iter()
        .filter_map(|(l, v)| Some((l.get(key)?.clone(), v)))
        .collect()
}

/// A source partition: (source, relation, partition).
type PartitionKey = (String, String, i32);

fn partition_key(l: &BTreeMap<String, String>) -> PartitionKey {
    (
        l.get("source").cloned().unwrap_or_default(),
        l.get("relation").cloned().unwrap_or_default(),
        l.get("partition").and_then(|p| p.parse().ok()).unwrap_or(0),
    )
}

/// Rows read per second per source partition, over the last sampling interval.
#[derive(Default)]
pub(crate) struct Rates {
    state: std::sync::Mutex<RatesState>,
}

#[derive(Default)]
struct RatesState {
    last: Option<(std::time::Instant, BTreeMap<PartitionKey, f64>)>,
    rates: BTreeMap<PartitionKey, f64>,
}

impl Rates {
    /// Takes a sample of the row counters; the rates are over the time since the last.
    pub(crate) fn sample(&self) {
        let now = std::time::Instant::now();
        let rows: BTreeMap<PartitionKey, f64> = series("freshet_source_rows_total")
            .into_iter()
            .map(|(l, v)| (partition_key(&l), v))
            .collect();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((then, before)) = &st.last {
            let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
            let rates = rows
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        ((v - before.get(k).copied().unwrap_or(0.0)) / secs).max(0.0),
                    )
                })
                .collect();
            st.rates = rates;
        }
        st.last = Some((now, rows));
    }

    fn get(&self, key: &PartitionKey) -> Option<f64> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.rates.get(key).copied()
    }
}

/// `freshet_catalog.source_partitions`: per source, relation it feeds and partition:
/// messages and bytes read, lag, parse errors and late events since the server started,
/// and messages read per second over the last 2 s.
pub(super) fn source_partitions_rows(
    db: &Db,
    _catalog: &Catalog,
) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let s = schema(&[
        ("source_name", DataType::Utf8),
        ("relation_name", DataType::Utf8),
        ("partition", DataType::Int32),
        ("rows", DataType::Int64),
        ("bytes", DataType::Int64),
        ("lag", DataType::Int64),
        ("parse_errors", DataType::Int64),
        ("late_events", DataType::Int64),
        ("rows_per_second", DataType::Float64),
    ]);
    let mut table: BTreeMap<PartitionKey, [i64; 5]> = BTreeMap::new();
    let families = [
        "freshet_source_rows_total",
        "freshet_source_bytes_total",
        "freshet_source_lag_messages",
        "freshet_source_parse_errors_total",
        "freshet_source_late_events_total",
    ];
    for (i, f) in families.iter().enumerate() {
        for (l, v) in series(f) {
            table.entry(partition_key(&l)).or_default()[i] = v as i64;
        }
    }
    let rows = table
        .into_iter()
        .map(|(key, v)| {
            let rate = db.rates.get(&key).map(|r| (r * 10.0).round() / 10.0);
            let (source, relation, p) = key;
            let mut row = vec![
                ScalarValue::Utf8(Some(source)),
                ScalarValue::Utf8(Some(relation)),
                ScalarValue::Int32(Some(p)),
            ];
            row.extend(v.iter().map(|n| ScalarValue::Int64(Some(*n))));
            row.push(ScalarValue::Float64(rate));
            row
        })
        .collect();
    Ok((s, rows))
}

/// The rows view `id` holds: its counter, or (a view from before the counter that has
/// not changed since) its rows counted.
pub(super) fn view_rows(r: &dyn Reader, id: u64) -> Result<i64> {
    if let Some(n) = view_row_count(id, |k| Ok(r.get(k)?))? {
        return Ok(n);
    }
    let mut n = 0i64;
    r.visit_prefix(&keys::rows_prefix(id), &mut |_, v| {
        if let Ok(b) = <[u8; 8]>::try_from(v) {
            n += i64::from_be_bytes(b);
        }
        true
    })?;
    Ok(n)
}

/// RocksDB's estimate of the bytes view `id`'s rows and state take.
pub(crate) fn view_bytes(db: &Db, id: u64) -> u64 {
    let range = |p: Vec<u8>| {
        let end = prefix_end(&p).unwrap_or_default();
        (p, end)
    };
    db.store
        .approximate_sizes(&[
            range(keys::rows_prefix(id)),
            range(keys::view_state_prefix(id)),
        ])
        .iter()
        .sum()
}

/// `freshet_catalog.views`: per materialized view, sink and index: its kind, emit mode, state
/// (`running`, or `failed` with why), rows held and operator state entries (counters kept
/// by every commit, not scans), RocksDB's estimate of its bytes, changes in and out and failed batches since the server started,
/// and when a checkpoint last held a change of it; the most threads the shards of its keyed
/// operators run on, those shards (`max_parallelism`, fixed when it was created), and
/// whether the first follows the server's setting (`adaptive`).
pub(super) fn views_rows(db: &Db, catalog: &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let s = schema(&[
        ("view_name", DataType::Utf8),
        ("kind", DataType::Utf8),
        ("emit", DataType::Utf8),
        ("status", DataType::Utf8),
        ("rows", DataType::Int64),
        ("state_entries", DataType::Int64),
        ("state_bytes", DataType::Int64),
        ("rows_in", DataType::Int64),
        ("rows_out", DataType::Int64),
        ("failures", DataType::Int64),
        ("last_checkpoint", timestamptz()),
        ("error", DataType::Utf8),
        ("parallelism", DataType::Int64),
        ("max_parallelism", DataType::Int64),
        ("adaptive", DataType::Boolean),
    ]);
    let rows_in = by_label("freshet_view_rows_in_total", "view");
    let rows_out = by_label("freshet_view_rows_out_total", "view");
    let failures = by_label("freshet_view_failures_total", "view");
    let last = by_label("freshet_view_last_checkpoint_seconds", "view");
    let mut rows = Vec::new();
    db.store.read_snapshot(|r| -> Result<()> {
        for v in catalog.views.iter().filter(|v| !v.subscription) {
            let failed = db.failure(v.id);
            let n = |m: &BTreeMap<String, f64>| {
                ScalarValue::Int64(Some(m.get(&v.name).copied().unwrap_or(0.0) as i64))
            };
            rows.push(vec![
                ScalarValue::Utf8(Some(v.name.clone())),
                ScalarValue::Utf8(Some(
                    if v.sink.is_some() {
                        "sink"
                    } else if v.index.is_some() {
                        "index"
                    } else {
                        "materialized view"
                    }
                    .into(),
                )),
                ScalarValue::Utf8(Some(
                    if v.emit_on_window_close {
                        "on window close"
                    } else {
                        "on every change"
                    }
                    .into(),
                )),
                ScalarValue::Utf8(Some(
                    if failed.is_some() {
                        "failed"
                    } else {
                        "running"
                    }
                    .into(),
                )),
                ScalarValue::Int64(if v.sink.is_none() {
                    Some(view_rows(r, v.id)?)
                } else {
                    None
                }),
                ScalarValue::Int64(freshet_storage::state_entries(r, v.id)?),
                ScalarValue::Int64(Some(view_bytes(db, v.id) as i64)),
                n(&rows_in),
                n(&rows_out),
                n(&failures),
                at(last.get(&v.name).copied().unwrap_or(0.0)),
                ScalarValue::Utf8(failed),
                ScalarValue::Int64(Some(v.threads(db.streaming_parallelism) as i64)),
                ScalarValue::Int64(Some(v.shards() as i64)),
                ScalarValue::Boolean(Some(v.adaptive)),
            ]);
        }
        Ok(())
    })?;
    Ok((s, rows))
}

/// `freshet_catalog.checkpoints`: one row: checkpoints committed and failed since the
/// server started, when the last one committed, and their mean and largest recent
/// duration bucket.
pub(super) fn checkpoints_rows(
    _db: &Db,
    _catalog: &Catalog,
) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let s = schema(&[
        ("checkpoints", DataType::Int64),
        ("failures", DataType::Int64),
        ("last_checkpoint", timestamptz()),
        ("mean_seconds", DataType::Float64),
    ]);
    let m = metrics();
    let h = &m.checkpoint_seconds;
    let count = h.get_sample_count();
    let mean = (count > 0).then(|| h.get_sample_sum() / count as f64);
    let row = vec![
        ScalarValue::Int64(Some(m.checkpoints.get() as i64)),
        ScalarValue::Int64(Some(m.checkpoint_failures.get() as i64)),
        at(m.last_checkpoint.get()),
        ScalarValue::Float64(mean),
    ];
    Ok((s, vec![row]))
}

/// `freshet_catalog.jobs`: long work of this server run, running or recently finished
/// (`SHOW JOBS` lists the running ones): its kind, relation, state (`running`, `done`,
/// `failed` with the error), rows done and left where the end is known, the progress as
/// text, the rate, and the time left at that rate.
pub(super) fn jobs_rows(db: &Db, _catalog: &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let s = schema(&[
        ("id", DataType::Int64),
        ("kind", DataType::Utf8),
        ("relation", DataType::Utf8),
        ("state", DataType::Utf8),
        ("error", DataType::Utf8),
        ("rows_done", DataType::Int64),
        ("rows_remaining", DataType::Int64),
        ("percent", DataType::Float64),
        ("progress", DataType::Utf8),
        ("rows_per_second", DataType::Float64),
        ("eta_seconds", DataType::Float64),
        ("started", timestamptz()),
    ]);
    let rows = db
        .jobs
        .show()
        .into_iter()
        .map(|j| {
            let (state, error) = match &j.job.state {
                crate::jobs::State::Running => ("running", None),
                crate::jobs::State::Done => ("done", None),
                crate::jobs::State::Failed(e) => ("failed", Some(e.clone())),
            };
            let percent = j.percent();
            let progress = match percent {
                Some(p) => format!("{p:.2}%"),
                None => format!("{} rows", j.done),
            };
            vec![
                ScalarValue::Int64(Some(j.job.id as i64)),
                ScalarValue::Utf8(Some(j.job.kind.to_string())),
                ScalarValue::Utf8(Some(j.job.relation.clone())),
                ScalarValue::Utf8(Some(state.to_string())),
                ScalarValue::Utf8(error),
                ScalarValue::Int64(Some(j.done as i64)),
                ScalarValue::Int64(j.remaining.map(|r| r as i64)),
                ScalarValue::Float64(percent),
                ScalarValue::Utf8(Some(progress)),
                ScalarValue::Float64(Some((j.rows_per_second * 10.0).round() / 10.0)),
                ScalarValue::Float64(j.eta_seconds().map(|e| (e * 10.0).round() / 10.0)),
                ScalarValue::TimestampMicrosecond(Some(j.job.started_micros), Some("UTC".into())),
            ]
        })
        .collect();
    Ok((s, rows))
}
