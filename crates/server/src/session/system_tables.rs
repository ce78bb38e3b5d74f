//! The relations of `freshet_catalog`: the names of the stored dead-letter tables
//! (`source_errors`, `late_events`), and the relations computed when a query reads them
//! (`sinks`, `source_status`, `watermarks`, `view_state`, `view_state_scan`), each a function from the
//! database and catalog to a schema and rows (registered by `Db::context_for`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use freshet_engine::coordinator::{sink_counts, stored_watermark};
use freshet_engine::sink_log;
use freshet_planner::catalog::Catalog;

use super::Db;
use crate::error::Result;
use crate::readers::Owner;

/// The dead-letter table's SQL name.
pub(super) const SOURCE_ERRORS_NAME: &str = "freshet_catalog.source_errors";
/// Events that arrived below their source's watermark.
pub(super) const LATE_EVENTS_NAME: &str = "freshet_catalog.late_events";
/// Each view's watermark of each source it reads.
pub(super) const WATERMARKS_NAME: &str = "freshet_catalog.watermarks";
/// Each view's state size, from counters.
pub(super) const VIEW_STATE_NAME: &str = "freshet_catalog.view_state";
/// Each view's state size, counted by reading the state.
pub(super) const VIEW_STATE_SCAN_NAME: &str = "freshet_catalog.view_state_scan";
/// Each sink's connector and the rows it sent.
pub(super) const SINKS_NAME: &str = "freshet_catalog.sinks";
/// Each source reader's state, and the views that failed at start-up.
pub(super) const SOURCE_STATUS_NAME: &str = "freshet_catalog.source_status";

pub(super) type ComputedRelation = fn(&Db, &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)>;

/// Every relation of `freshet_catalog` computed when read.
pub(super) const COMPUTED: &[(&str, ComputedRelation)] = &[
    (WATERMARKS_NAME, watermarks_rows),
    (VIEW_STATE_NAME, view_state_rows),
    (VIEW_STATE_SCAN_NAME, view_state_scan_rows),
    (SINKS_NAME, sinks_rows),
    (SOURCE_STATUS_NAME, source_status_rows),
    (
        super::ops_tables::SOURCE_PARTITIONS_NAME,
        super::ops_tables::source_partitions_rows,
    ),
    (super::ops_tables::VIEWS_NAME, super::ops_tables::views_rows),
    (
        super::ops_tables::CHECKPOINTS_NAME,
        super::ops_tables::checkpoints_rows,
    ),
    (super::ops_tables::JOBS_NAME, super::ops_tables::jobs_rows),
];

/// The schema of a catalog relation: these columns, all nullable.
pub(super) fn nullable_schema(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, ty)| Field::new(*name, ty.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// `freshet_catalog.sinks`: per sink, the rows it took (`rows_inserted`, `rows_deleted`,
/// with their multiplicity, as committed with the offsets they came from, so a crash
/// neither loses nor repeats a count) and, for a Kafka sink, where it writes and how far
/// its delivery is: messages sent since the server started, changes committed and not
/// yet delivered (`backlog`), when a batch last reached the broker, and the last error
/// (cleared by the next delivered batch).
pub(super) fn sinks_rows(db: &Db, catalog: &Catalog) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let store = &db.store;
    let schema = nullable_schema(&[
        ("sink_name", DataType::Utf8),
        ("connector", DataType::Utf8),
        ("rows_inserted", DataType::Int64),
        ("rows_deleted", DataType::Int64),
        ("topic", DataType::Utf8),
        ("format", DataType::Utf8),
        ("guarantee", DataType::Utf8),
        ("messages_sent", DataType::Int64),
        ("backlog", DataType::Int64),
        ("delivered_seq", DataType::Int64),
        (
            "last_delivery",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        ("last_error", DataType::Utf8),
        ("paused", DataType::Boolean),
    ]);
    let mut rows = Vec::new();
    store.read_snapshot(|r| -> Result<()> {
        for v in catalog.sinks() {
            let connector = v.sink.as_ref().map(|s| s.connector.clone());
            let (ins, del) = sink_counts(v.id, |k| Ok(r.get(k)?))?;
            let kafka = v.sink.as_ref().and_then(|s| s.kafka.as_ref());
            let text = |s: Option<String>| ScalarValue::Utf8(s);
            let int = |n: Option<u64>| ScalarValue::Int64(n.map(|n| n as i64));
            let mut row = vec![
                text(Some(v.name.clone())),
                text(connector),
                ScalarValue::Int64(Some(ins)),
                ScalarValue::Int64(Some(del)),
                text(kafka.map(|k| k.topic.clone())),
                text(kafka.map(|k| k.format.name().to_string())),
                text(kafka.map(|k| {
                    if k.exactly_once {
                        "exactly-once"
                    } else {
                        "at-least-once"
                    }
                    .to_string()
                })),
            ];
            let pos = match kafka {
                Some(_) => Some(sink_log::position(r, v.id)?),
                None => None,
            };
            let live = db.sinks.status(v.id);
            let live = live.as_deref();
            row.extend([
                int(live.map(|s| s.messages_sent.load(Ordering::Relaxed))),
                int(pos.map(|p| p.backlog())),
                int(pos.map(|p| p.delivered)),
                ScalarValue::TimestampMicrosecond(
                    live.map(|s| s.last_delivery_micros.load(Ordering::Relaxed))
                        .filter(|t| *t > 0),
                    Some("UTC".into()),
                ),
                text(live.and_then(|s| s.last_error()).map(|(_, e)| e)),
                ScalarValue::Boolean(live.map(|s| s.paused.load(Ordering::Relaxed))),
            ]);
            rows.push(row);
        }
        Ok(())
    })?;
    Ok((schema, rows))
}

/// `freshet_catalog.source_status`: (relation_name, source_name, state, restarts,
/// last_error, since) per reader, `state` being `running` or `restarting`; and a row with
/// state `failed` for each view that could not be planned at start-up.
pub(super) fn source_status_rows(
    db: &Db,
    catalog: &Catalog,
) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let schema = nullable_schema(&[
        ("relation_name", DataType::Utf8),
        ("source_name", DataType::Utf8),
        ("state", DataType::Utf8),
        ("restarts", DataType::Int64),
        ("last_error", DataType::Utf8),
        ("since", freshet_storage::codec::timestamptz()),
    ]);
    let text = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
    let time = |t: Option<std::time::SystemTime>| {
        ScalarValue::TimestampMicrosecond(
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as i64),
            Some("+00:00".into()),
        )
    };
    let mut rows = Vec::new();
    if catalog.views.is_empty() && catalog.tables.is_empty() {
        return Ok((schema, rows));
    }
    for st in db.readers.status() {
        let (relation, source) = match st.owner {
            Owner::View { view, source } => (
                catalog.view_by_id(view).map(|v| v.name.clone()),
                catalog.source_by_id(source).map(|s| s.name.clone()),
            ),
            Owner::Table(id) => {
                let name = catalog
                    .tables
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| t.name.clone());
                (name.clone(), name)
            }
        };
        rows.push(vec![
            ScalarValue::Utf8(relation),
            ScalarValue::Utf8(source),
            text(st.state),
            ScalarValue::Int64(Some(i64::from(st.restarts))),
            ScalarValue::Utf8(st.last_error),
            time(st.since),
        ]);
    }
    let failed = db.failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (id, reason) in failed {
        if let Some(v) = catalog.view_by_id(id) {
            rows.push(vec![
                text(&v.name),
                ScalarValue::Utf8(None),
                text("failed"),
                ScalarValue::Int64(Some(0)),
                text(&reason),
                ScalarValue::TimestampMicrosecond(None, Some("+00:00".into())),
            ]);
        }
    }
    Ok((schema, rows))
}

/// `freshet_catalog.watermarks`: (view_name, source_name, watermark), as committed. A
/// source's watermark is tracked per view (each view has its own reader); a table's is
/// the table's own, shared by every view over it, and listed with a NULL view_name.
pub(super) fn watermarks_rows(
    db: &Db,
    catalog: &Catalog,
) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let store = &db.store;
    let schema = nullable_schema(&[
        ("view_name", DataType::Utf8),
        ("source_name", DataType::Utf8),
        ("watermark", freshet_storage::codec::timestamptz()),
    ]);
    let mut rows = Vec::new();
    for v in &catalog.views {
        for dep in &v.depends_on {
            let Some(src) = catalog.source_by_id(*dep) else {
                continue;
            };
            if src.watermark.is_none() {
                continue;
            }
            let (_, wm) = stored_watermark(store, v.id, src.id)?;
            rows.push(vec![
                ScalarValue::Utf8(Some(v.name.clone())),
                ScalarValue::Utf8(Some(src.name.clone())),
                ScalarValue::TimestampMicrosecond(wm, Some("+00:00".into())),
            ]);
        }
    }
    for t in catalog.tables.iter().filter(|t| t.watermark.is_some()) {
        let (_, wm) = stored_watermark(store, t.id, t.id)?;
        rows.push(vec![
            ScalarValue::Utf8(None),
            ScalarValue::Utf8(Some(t.name.clone())),
            ScalarValue::TimestampMicrosecond(wm, Some("+00:00".into())),
        ]);
    }
    Ok((schema, rows))
}

/// `freshet_catalog.view_state`: (view_name, view_rows, state_rows, state_bytes): the
/// view's rows (multiplicities summed) and its operators' state entries, both counters
/// that every commit keeps (NULL for a view created by an older build that has not changed
/// since), and RocksDB's estimate of the bytes its rows and state take. Reads no state.
pub(super) fn view_state_rows(
    db: &Db,
    catalog: &Catalog,
) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let schema = nullable_schema(&[
        ("view_name", DataType::Utf8),
        ("view_rows", DataType::Int64),
        ("state_rows", DataType::Int64),
        ("state_bytes", DataType::Int64),
    ]);
    let mut rows = Vec::new();
    db.store.read_snapshot(|r| -> Result<()> {
        for v in &catalog.views {
            rows.push(vec![
                ScalarValue::Utf8(Some(v.name.clone())),
                ScalarValue::Int64(Some(super::ops_tables::view_rows(r, v.id)?)),
                ScalarValue::Int64(freshet_storage::state_entries(r, v.id)?),
                ScalarValue::Int64(Some(super::ops_tables::view_bytes(db, v.id) as i64)),
            ]);
        }
        Ok(())
    })?;
    Ok((schema, rows))
}

/// `freshet_catalog.view_state_scan`: (view_name, state_rows, state_bytes): each view's
/// operator state entries and their bytes (keys and values), counted exactly by reading
/// the state: a diagnostic for state clean-up, and for the counters of `view_state`.
pub(super) fn view_state_scan_rows(
    db: &Db,
    catalog: &Catalog,
) -> Result<(SchemaRef, Vec<Vec<ScalarValue>>)> {
    let schema = nullable_schema(&[
        ("view_name", DataType::Utf8),
        ("state_rows", DataType::Int64),
        ("state_bytes", DataType::Int64),
    ]);
    let mut rows = Vec::new();
    db.store.read_snapshot(|r| -> Result<()> {
        for v in &catalog.views {
            let (mut state_rows, mut bytes) = (0i64, 0i64);
            r.visit_prefix(
                &freshet_storage::keys::view_state_prefix(v.id),
                &mut |k, v| {
                    // Operator state only: not the root's counts and outbox, nor the
                    // offsets and watermarks of the sources it reads.
                    if freshet_storage::keys::operator_state_view(k).is_some() {
                        state_rows += 1;
                        bytes += (k.len() + v.len()) as i64;
                    }
                    true
                },
            )?;
            rows.push(vec![
                ScalarValue::Utf8(Some(v.name.clone())),
                ScalarValue::Int64(Some(state_rows)),
                ScalarValue::Int64(Some(bytes)),
            ]);
        }
        Ok(())
    })?;
    Ok((schema, rows))
}
