//! `SUBSCRIBE`: a relation's rows at one checkpoint, then every change after it, as
//! they commit, until the client cancels or goes away.
//!
//! Each row is `(freshet_timestamp, freshet_diff, columns…)`: the checkpoint's timestamp
//! (milliseconds since the Unix epoch, rising with every checkpoint) and how many
//! copies of the row it added (positive) or removed (negative). The snapshot's rows carry
//! the snapshot's timestamp and their multiplicity; a checkpoint's changes are
//! consolidated (a row added and removed within it does not appear), removals first.
//!
//! `SUBSCRIBE TO (query)` runs the query as a materialized view of its own, flagged in
//! the catalog as the subscription's, dropped when the subscription ends (and at
//! start-up, if the server stopped first).
//!
//! Backpressure: the engine never waits for a subscriber. Changes the client has not
//! taken yet wait in the session, up to `subscribe_max_buffered_rows` rows; past that the
//! subscription ends with `53400` and the connection is closed (see `Session::execute`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use freshet_engine::chunk::{rows_to_batch, Chunk, Row};
use freshet_engine::subscriptions::{Event, Subscription};
use freshet_planner::parser::{self, Stmt, Subscribe, SubscribeTarget};
use freshet_planner::sqlparser::ast::Statement;
use futures::StreamExt;

use super::{relation_name, BatchStream, Db, Session};
use crate::error::{Result, ServerError};

/// The columns a subscription adds in front of the relation's.
pub const TIMESTAMP_COLUMN: &str = "freshet_timestamp";
pub const DIFF_COLUMN: &str = "freshet_diff";

/// Tells subscription views apart within this process.
static NEXT_VIEW: AtomicU64 = AtomicU64::new(1);

/// The query a subscription reads, as a statement (to authorize and describe it).
pub(super) fn subscribed_query(sub: &Subscribe) -> Result<Statement> {
    match &sub.target {
        SubscribeTarget::Query(q) => Ok(Statement::Query(q.clone())),
        SubscribeTarget::Relation(name) => {
            let sql = format!("SELECT * FROM {name}");
            match parser::parse(&sql)?.into_iter().next() {
                Some(Stmt::Sql(s)) => Ok(*s),
                _ => Err(ServerError::Internal("subscription query vanished".into())),
            }
        }
    }
}

/// The subscription's columns: timestamp, diff, then the relation's.
fn with_change_columns(schema: &Schema) -> SchemaRef {
    let mut fields = vec![
        Arc::new(Field::new(TIMESTAMP_COLUMN, DataType::Int64, false)),
        Arc::new(Field::new(DIFF_COLUMN, DataType::Int64, false)),
    ];
    fields.extend(schema.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// Drops a subscription's own view when the subscription ends.
struct OwnView {
    db: Arc<Db>,
    id: u64,
}

impl Drop for OwnView {
    fn drop(&mut self) {
        let (db, id) = (self.db.clone(), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = db.drop_subscription_view(id).await {
                    tracing::warn!(view = id, error = %e, "dropping a subscription's view failed; it goes at the next start");
                }
            });
        }
    }
}

impl Session {
    /// The columns `SUBSCRIBE` returns, without subscribing (for Describe).
    pub(super) async fn subscribe_schema(&self, sub: &Subscribe) -> Result<SchemaRef> {
        let catalog = self.db.catalog();
        let schema = match &sub.target {
            SubscribeTarget::Relation(name) => {
                let name = relation_name(&catalog, name)?;
                self.subscribable(&name)?;
                self.db
                    .relation_schema(&catalog, &name)
                    .map(|(_, s, _)| s)
                    .ok_or_else(|| ServerError::Internal(format!("{name} has no schema")))?
            }
            // Planned as its view will be, so the types told are the types sent.
            SubscribeTarget::Query(q) => {
                self.plan_new_view(&catalog, q, &[], false).await?.1.schema
            }
        };
        Ok(with_change_columns(&schema))
    }

    /// Starts a subscription: its columns and its rows, as they come.
    pub(super) async fn subscribe(&self, sub: &Subscribe) -> Result<(SchemaRef, BatchStream)> {
        let (id, own) = match &sub.target {
            SubscribeTarget::Relation(name) => (
                self.subscribable(&relation_name(&self.db.catalog(), name)?)?,
                None,
            ),
            SubscribeTarget::Query(q) => {
                let name = format!(
                    "subscribe_{}_{}",
                    self.backend().pid,
                    NEXT_VIEW.fetch_add(1, Ordering::Relaxed)
                );
                let id = self.create_subscription_view(&name, q).await?;
                let own = OwnView {
                    db: self.db.clone(),
                    id,
                };
                (id, Some(own))
            }
        };
        let catalog = self.db.catalog();
        let name = catalog
            .view_by_id(id)
            .map(|v| v.name.clone())
            .or_else(|| {
                catalog
                    .tables
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| t.name.clone())
            })
            .ok_or_else(|| ServerError::Internal(format!("relation {id} vanished")))?;
        let (_, schema, layout) = self
            .db
            .relation_schema(&catalog, &name)
            .ok_or_else(|| ServerError::Internal(format!("relation {name} has no schema")))?;
        let out = with_change_columns(&schema);
        let snapshot: Arc<Mutex<Option<SendableRecordBatchStream>>> = Arc::default();
        let hook = {
            let slot = snapshot.clone();
            let prefix = freshet_storage::keys::rows_prefix(id);
            let part = sub.snapshot.then(|| crate::scan::ScanPartition {
                store: self.db.store.clone(),
                schema: out.clone(),
                layout,
                end: freshet_storage::prefix_end(&prefix),
                prefix_len: prefix.len(),
                start: prefix,
                scans: self.db.scans.clone(),
                deadline: None,
                counted_at: None,
                limit: None,
                snapshot: None,
            });
            move |timestamp: i64| {
                let Some(mut part) = part else { return };
                part.counted_at = Some(timestamp);
                // Taken before this returns: the engine commits nothing more until then.
                part.snapshot = Some(crate::scan::Snapshot::take(&part.store, &part.scans));
                let stream = part.start();
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
            }
        };
        let subscription = self
            .db
            .engine
            .subscribe(id, self.subscribe_limit(), hook)
            .await?;
        let head: BatchStream = match snapshot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(s) => Box::pin(s.map(|b| b.map_err(ServerError::from))),
            None => Box::pin(futures::stream::empty()),
        };
        let changes = changes(subscription, out.clone(), own);
        Ok((out, Box::pin(head.chain(changes))))
    }

    /// The id of table or view `name`, if it can be subscribed to.
    fn subscribable(&self, name: &str) -> Result<u64> {
        let catalog = self.db.catalog();
        if catalog.source(name).is_some() {
            return Err(ServerError::WrongObjectType(format!(
                "\"{name}\" is a source, which keeps no rows: SUBSCRIBE to a materialized \
                 view over it, or to (SELECT … FROM {name})"
            )));
        }
        if catalog.sinks().any(|s| s.name == name) {
            return Err(ServerError::WrongObjectType(format!(
                "\"{name}\" is a sink, which cannot be read"
            )));
        }
        match catalog.kind_of(name) {
            Some((_, id)) => match self.db.failure(id) {
                Some(why) => Err(ServerError::ViewFailed(format!(
                    "materialized view \"{name}\" failed at start-up and cannot be read: {why}"
                ))),
                None => Ok(id),
            },
            None => Err(freshet_planner::PlannerError::UndefinedTable(name.to_string()).into()),
        }
    }
}

/// The changes of `subscription` as batches of `schema`, consolidated per checkpoint.
fn changes(subscription: Subscription, schema: SchemaRef, own: Option<OwnView>) -> BatchStream {
    Box::pin(futures::stream::unfold(
        Some((subscription, own)),
        move |state| {
            let schema = schema.clone();
            async move {
                let (mut sub, own) = state?;
                loop {
                    let item = match sub.next().await {
                        None => Err(ServerError::ShuttingDown),
                        Some(Event::Ended(why)) => {
                            if why.contains("fell too far behind") {
                                Err(ServerError::SubscriberTooSlow(why))
                            } else {
                                Err(ServerError::ObjectState(format!(
                                    "subscription ended: {why}"
                                )))
                            }
                        }
                        Some(Event::Changes { timestamp, chunks }) => {
                            match consolidate(&schema, timestamp, &chunks) {
                                Ok(None) => continue,
                                Ok(Some(b)) => return Some((Ok(b), Some((sub, own)))),
                                Err(e) => Err(e),
                            }
                        }
                    };
                    return Some((item, None));
                }
            }
        },
    ))
}

/// One checkpoint's changes: each row once with its net diff, removals first; `None` if
/// they cancel out.
fn consolidate(
    schema: &SchemaRef,
    timestamp: i64,
    chunks: &[Chunk],
) -> Result<Option<RecordBatch>> {
    let mut index: HashMap<Row, usize> = HashMap::new();
    let mut net: Vec<(Row, i64)> = Vec::new();
    for chunk in chunks {
        for (row, w) in chunk.rows()?.into_iter().zip(&chunk.weights) {
            match index.get(&row) {
                Some(&i) => net[i].1 += w,
                None => {
                    index.insert(row.clone(), net.len());
                    net.push((row, *w));
                }
            }
        }
    }
    let (removed, added): (Vec<_>, Vec<_>) = net
        .into_iter()
        .filter(|(_, d)| *d != 0)
        .partition(|(_, d)| *d < 0);
    let rows: Vec<Row> = removed
        .into_iter()
        .chain(added)
        .map(|(row, diff)| {
            let mut out = Vec::with_capacity(row.len() + 2);
            out.push(ScalarValue::Int64(Some(timestamp)));
            out.push(ScalarValue::Int64(Some(diff)));
            out.extend(row);
            out
        })
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(rows_to_batch(schema.clone(), &rows)?))
}
