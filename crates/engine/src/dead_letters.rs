//! Retention of the dead-letter tables (`freshet_catalog.source_errors` and
//! `freshet_catalog.late_events`).
//!
//! Their rows are kept so that no dropped event is lost silently, but an endless stream
//! of bad or late events must not grow the disk without bound. Each row is indexed by
//! source and arrival time (`index | source | arrival µs | row`), and each source's row
//! count is kept beside it. At most once a second, in the commit's write batch, every
//! source's oldest rows go while they are older than its `max_age` or while it holds
//! more than `max_rows`, and views over the tables see the deletions like any other.
//!
//! A source's retention comes from its `dead_letter_retention` and
//! `dead_letter_max_rows` options, else from the server's defaults.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use datafusion::common::ScalarValue;
use freshet_storage::{codec, keys, Txn};
use serde::{Deserialize, Serialize};

use crate::chunk::Row;
use crate::plan::RelationId;
use crate::EngineError;

/// How long, and how many, dead letters of one source are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Rows older than this (by arrival) go; `None`: kept however old.
    pub max_age_micros: Option<i64>,
    /// The oldest rows beyond this many go; `None`: no limit.
    pub max_rows: Option<u64>,
}

impl Default for Retention {
    /// 7 days, and 100,000 rows per source and table.
    fn default() -> Self {
        Retention {
            max_age_micros: Some(7 * 86_400 * 1_000_000),
            max_rows: Some(100_000),
        }
    }
}

/// The retention of every source: shared by the server (which sets a source's when it is
/// created or loaded) and the engine (which enforces them).
#[derive(Debug, Default)]
pub struct Policies {
    pub default: Retention,
    by_source: RwLock<HashMap<String, Retention>>,
}

impl Policies {
    pub fn new(default: Retention) -> Arc<Policies> {
        Arc::new(Policies {
            default,
            by_source: RwLock::new(HashMap::new()),
        })
    }

    /// The retention of every source or table that has its own (the rest get the
    /// default).
    pub fn replace(&self, by_source: HashMap<String, Retention>) {
        *self.by_source.write().unwrap_or_else(|p| p.into_inner()) = by_source;
    }

    pub fn of(&self, name: &str) -> Retention {
        let map = self.by_source.read().unwrap_or_else(|p| p.into_inner());
        map.get(name).copied().unwrap_or(self.default)
    }
}

/// Rows deleted in one pass over all sources at most (the rest go at the next pass).
const PASS_BUDGET: usize = 50_000;
/// Passes are at least this far apart (µs).
const PASS_EVERY: i64 = 1_000_000;

/// The engine's side: indexes new rows and expires old ones.
pub struct DeadLetters {
    policies: Arc<Policies>,
    /// (table, source) pairs that have rows; `None` until read from the counts.
    known: Option<BTreeSet<(RelationId, String)>>,
    last_pass: i64,
}

fn source_key(source: &str) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::new();
    codec::encode_value(&ScalarValue::Utf8(Some(source.to_string())), &mut out)?;
    Ok(out)
}

/// Prefix of the arrival index of `table`, and of one source in it.
fn index_prefix(table: RelationId) -> Vec<u8> {
    keys::state_prefix(keys::state_table_id(table, 0, 0))
}

/// Prefix of the row counts of `table`.
fn count_prefix(table: RelationId) -> Vec<u8> {
    keys::state_prefix(keys::state_table_id(table, 0, 1))
}

/// Arrival time as an order-preserving key part.
fn time_key(micros: i64) -> [u8; 8] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

fn read_count(txn: &Txn, key: &[u8]) -> Result<i64, EngineError> {
    match txn.get(key)? {
        Some(v) => crate::operators::decode_count(&v),
        None => Ok(0),
    }
}

impl DeadLetters {
    pub fn new(policies: Arc<Policies>) -> DeadLetters {
        DeadLetters {
            policies,
            known: None,
            last_pass: i64::MIN,
        }
    }

    /// Indexes a new row of `table` (stored under `rows | table | row_bytes`) that came
    /// from `source` at `now`.
    pub fn record(
        &mut self,
        txn: &mut Txn,
        table: RelationId,
        source: &str,
        row_bytes: &[u8],
        now: i64,
    ) -> Result<(), EngineError> {
        let src = source_key(source)?;
        let mut k = index_prefix(table);
        k.extend_from_slice(&src);
        k.extend_from_slice(&time_key(now));
        k.extend_from_slice(row_bytes);
        txn.put(k, Vec::new());
        let mut ck = count_prefix(table);
        ck.extend_from_slice(&src);
        let n = read_count(txn, &ck)?;
        txn.put(ck, crate::operators::encode_count(n + 1));
        if let Some(known) = &mut self.known {
            known.insert((table, source.to_string()));
        }
        Ok(())
    }

    /// Deletes what the retention of each source lets go at `now` (if a second passed
    /// since the last pass), and returns the deleted rows per table, decoded with
    /// `types`, for the views over the tables.
    pub fn expire(
        &mut self,
        txn: &mut Txn,
        now: i64,
        types: impl Fn(RelationId) -> Option<Vec<datafusion::arrow::datatypes::DataType>>,
        tables: &[RelationId],
    ) -> Result<Vec<(RelationId, Vec<Row>)>, EngineError> {
        if now.saturating_sub(self.last_pass) < PASS_EVERY {
            return Ok(Vec::new());
        }
        self.last_pass = now;
        if self.known.is_none() {
            let mut known = BTreeSet::new();
            for &t in tables {
                let prefix = count_prefix(t);
                for (k, _) in txn.scan_prefix(&prefix)? {
                    let mut d = codec::Decoder::new(&k[prefix.len()..]);
                    if let ScalarValue::Utf8(Some(s)) =
                        d.value(&datafusion::arrow::datatypes::DataType::Utf8)?
                    {
                        known.insert((t, s));
                    }
                }
            }
            self.known = Some(known);
        }
        let pairs: Vec<(RelationId, String)> = self.known.iter().flatten().cloned().collect();
        let mut budget = PASS_BUDGET;
        let mut out: Vec<(RelationId, Vec<Row>)> = Vec::new();
        for (table, source) in pairs {
            if budget == 0 {
                break;
            }
            let Some(types) = types(table) else { continue };
            let policy = self.policies.of(&source);
            let src = source_key(&source)?;
            let mut prefix = index_prefix(table);
            prefix.extend_from_slice(&src);
            let mut ck = count_prefix(table);
            ck.extend_from_slice(&src);
            let count = read_count(txn, &ck)?;
            let cutoff = policy
                .max_age_micros
                .map(|age| now.saturating_sub(age))
                .unwrap_or(i64::MIN);
            let cutoff = time_key(cutoff);
            let keep = policy.max_rows.unwrap_or(u64::MAX);
            // Oldest first: take while too old or too many.
            let mut taken: Vec<Vec<u8>> = Vec::new();
            let mut left = count.max(0) as u64;
            txn.visit_prefix(&prefix, |k, _| {
                let rest = &k[prefix.len()..];
                let Some(at) = rest.get(..8) else {
                    return false;
                };
                let old = at < cutoff.as_slice();
                if (!old && left <= keep) || taken.len() >= budget {
                    return false;
                }
                taken.push(k.to_vec());
                left = left.saturating_sub(1);
                true
            })?;
            if taken.is_empty() {
                if count <= 0 {
                    if let Some(known) = &mut self.known {
                        known.remove(&(table, source.clone()));
                    }
                }
                continue;
            }
            budget -= taken.len();
            let mut rows = Vec::with_capacity(taken.len());
            for k in &taken {
                let row_bytes = &k[prefix.len() + 8..];
                let rk = keys::row_key(table, row_bytes);
                if txn.get(&rk)?.is_some() {
                    txn.delete(rk);
                    rows.push(codec::decode_row(row_bytes, &types)?);
                }
            }
            // The taken index entries are the first ones of the source: one range.
            if let Some(last) = taken.last() {
                let mut end = last.clone();
                end.push(0);
                txn.delete_range(&prefix, &end)?;
            }
            let remaining = count - taken.len() as i64;
            if remaining > 0 {
                txn.put(ck, crate::operators::encode_count(remaining));
            } else {
                txn.delete(ck);
                if let Some(known) = &mut self.known {
                    known.remove(&(table, source.clone()));
                }
            }
            match out.iter_mut().find(|(t, _)| *t == table) {
                Some((_, r)) => r.extend(rows),
                None => out.push((table, rows)),
            }
        }
        Ok(out)
    }
}
