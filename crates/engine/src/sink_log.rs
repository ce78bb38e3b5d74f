//! A sink's outbox: the changes a connector sink (`connector = 'kafka'`) is to deliver,
//! written by its root operator ([`crate::operators::materialize::Output::Log`]) in the
//! same transaction as the offsets they came from, and read, delivered and trimmed by
//! the sink's own delivery thread, outside the engine.
//!
//! So the engine never waits for a broker: a slow or unreachable one lets the outbox
//! grow (on disk), and after a crash the delivery starts again from the last position it
//! recorded, re-sending at most what it sent after that (see `docs/operations.md`).
//!
//! Keys, in the sink's root state table: `l | seq` (u64, big-endian) → `flags | weight |
//! row` (the change, its multiplicity signed; flag [`COMMIT_START`]: the first change of
//! a commit); `n` → the last sequence number given; `p` → the last sequence number
//! delivered. Only the engine writes `l` entries and `n`; only the delivery writes `p` and
//! deletes `l` entries, so the two never write the same key.
//!
//! Commit boundaries matter to keyed sinks: within one commit a key's changes come in any
//! order (an update's insert may precede its delete), and only each commit's net effect
//! is a state the view was in (see `freshet_connectors::sink_encode`).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use freshet_storage::{codec, keys, prefix_end, Reader, Store};

use crate::EngineError;

const ENTRY: u8 = b'l';
const LAST: &[u8] = b"n";
const DELIVERED: &[u8] = b"p";

/// The root state table's key `k` of sink `sink` (same table as the sink's counts).
fn key(sink: u64, k: &[u8]) -> Vec<u8> {
    let mut out = keys::state_prefix(keys::state_table_id(sink, 0, 0));
    out.extend_from_slice(k);
    out
}

/// The key of entry `seq` of sink `sink`'s outbox.
pub fn entry_key(sink: u64, seq: u64) -> Vec<u8> {
    let mut k = [0u8; 9];
    k[0] = ENTRY;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    key(sink, &k)
}

/// The key holding the last sequence number given (written by the engine).
pub fn last_key(sink: u64) -> Vec<u8> {
    key(sink, LAST)
}

/// Entry flag: the first change of its commit.
pub const COMMIT_START: u8 = 1;

/// An entry's stored value.
pub fn encode_entry(weight: i64, commit_start: bool, row: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + row.len());
    v.push(if commit_start { COMMIT_START } else { 0 });
    v.extend_from_slice(&weight.to_be_bytes());
    v.extend_from_slice(row);
    v
}

pub fn decode_u64(v: &[u8]) -> Result<u64, EngineError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| EngineError::Internal("bad stored sink position".into()))
}

/// One change to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub seq: u64,
    /// Positive: inserted (that many times); negative: deleted.
    pub weight: i64,
    /// The first change of its commit (the changes before it were committed earlier).
    pub commit_start: bool,
    pub row: Vec<ScalarValue>,
}

/// How far a sink's outbox is: the last change given and the last one delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub last: u64,
    pub delivered: u64,
}

impl Position {
    /// Changes committed and not yet delivered.
    pub fn backlog(&self) -> u64 {
        self.last.saturating_sub(self.delivered)
    }
}

/// Sink `sink`'s position, as committed, read through `r`.
pub fn position(r: &dyn Reader, sink: u64) -> Result<Position, EngineError> {
    let read = |k: Vec<u8>| -> Result<u64, EngineError> {
        match r.get(&k)? {
            Some(v) => decode_u64(&v),
            None => Ok(0),
        }
    };
    Ok(Position {
        last: read(key(sink, LAST))?,
        delivered: read(key(sink, DELIVERED))?,
    })
}

/// Up to `limit` committed changes of sink `sink` after sequence number `after`, in order,
/// all from one snapshot (so they end at a commit), decoded with the sink's column types.
pub fn read(
    store: &Store,
    sink: u64,
    after: u64,
    limit: usize,
    types: &[DataType],
) -> Result<Vec<Change>, EngineError> {
    let start = entry_key(sink, after.saturating_add(1));
    let end = prefix_end(&key(sink, &[ENTRY])).unwrap_or_default();
    let mut out = Vec::new();
    let mut err = None;
    store.read_snapshot(|r| {
        r.walk(&start, Some(&end), false, &mut |k, v| {
            match decode(k, v, types) {
                Ok(c) => out.push(c),
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            }
            out.len() < limit
        })
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn decode(k: &[u8], v: &[u8], types: &[DataType]) -> Result<Change, EngineError> {
    let bad = || EngineError::Internal("bad sink outbox entry".into());
    let seq = k.len().checked_sub(8).ok_or_else(bad)?;
    let seq = decode_u64(&k[seq..])?;
    if v.len() < 9 {
        return Err(bad());
    }
    let commit_start = v[0] & COMMIT_START != 0;
    let weight = i64::from_be_bytes(v[1..9].try_into().map_err(|_| bad())?);
    let row = codec::decode_row(&v[9..], types)?;
    Ok(Change {
        seq,
        weight,
        commit_start,
        row,
    })
}

/// Records that sink `sink` delivered every change up to `upto` and removes them from
/// its outbox, in one synced write outside the engine's transaction.
pub fn mark_delivered(store: &Store, sink: u64, upto: u64) -> Result<(), EngineError> {
    let start = key(sink, &[ENTRY]);
    let end = entry_key(sink, upto.saturating_add(1));
    store.write_outside(
        &[(start, end)],
        vec![(key(sink, DELIVERED), Some(upto.to_be_bytes().to_vec()))],
    )?;
    Ok(())
}
