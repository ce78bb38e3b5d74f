//! One file per operator.

pub mod agg_fold;
pub mod closing;
pub mod constant;
pub mod emit_on_close;
pub mod filter;
pub mod hash_agg;
pub mod hash_join;
pub mod materialize;
pub mod ordered_groups;
pub mod over_window;
pub mod project;
pub mod session;
pub mod temporal_filter;
pub mod top_n;
pub mod union;
pub mod unnest;
pub mod window;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use freshet_storage::keys;

use crate::plan::PhysExpr;
use crate::EngineError;

/// Hash maps and sets of the per-row paths: a fast hasher (seeded per process) instead
/// of SipHash, which showed up in aggregation profiles.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Evaluates expressions over a batch into arrays.
pub(crate) fn eval_all(
    exprs: &[PhysExpr],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>, EngineError> {
    exprs
        .iter()
        .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
        .collect()
}

/// A state table: a key prefix in the engine's key-value state.
#[derive(Clone, Debug)]
pub struct StateTable {
    prefix: Vec<u8>,
}

impl StateTable {
    pub fn new(id: u64) -> StateTable {
        StateTable {
            prefix: keys::state_prefix(id),
        }
    }

    pub fn key(&self, k: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + k.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(k);
        out
    }

    pub fn key2(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        // Room for a sequence number after the parts (rows of insert-only inputs).
        let mut out = Vec::with_capacity(self.prefix.len() + a.len() + b.len() + 8);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out
    }

    pub fn key3(&self, a: &[u8], b: &[u8], c: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + a.len() + b.len() + c.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out.extend_from_slice(c);
        out
    }

    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }
}

/// Sequence numbers that give each row of an insert-only input its own stored key
/// (`… | encoded row | number`), so storing the row is a blind write instead of a read of
/// its old multiplicity (a point read of a key that almost never exists yet). Equal rows
/// become separate entries, which readers count the same way. The next number is kept in
/// a state table and saved with every chunk that took one, in the same transaction as the
/// rows, so numbers are never reused across restarts.
pub(crate) struct RowSeq {
    table: StateTable,
    /// The next number (`None` until loaded from state).
    next: Option<u64>,
    /// Whether numbers were taken since the last save.
    dirty: bool,
}

impl RowSeq {
    pub fn new(table_id: u64) -> RowSeq {
        RowSeq {
            table: StateTable::new(table_id),
            next: None,
            dirty: false,
        }
    }

    /// Appends the next number to `bytes` (the first call after a start reads it from
    /// state).
    pub fn append(
        &mut self,
        state: &freshet_storage::Txn,
        bytes: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let next = match self.next {
            Some(n) => n,
            None => match state.get(&self.table.key(&[]))? {
                Some(v) => decode_count(&v)? as u64,
                None => 0,
            },
        };
        bytes.extend_from_slice(&next.to_be_bytes());
        self.next = Some(next + 1);
        self.dirty = true;
        Ok(())
    }

    /// Writes the next number if numbers were taken (call once per chunk).
    pub fn save(&mut self, state: &mut freshet_storage::Txn) {
        if let (true, Some(next)) = (self.dirty, self.next) {
            state.put(self.table.key(&[]), encode_count(next as i64));
            self.dirty = false;
        }
    }

    /// `bytes` without the number [`RowSeq::append`] added.
    pub fn strip(bytes: &[u8]) -> Result<&[u8], EngineError> {
        bytes
            .len()
            .checked_sub(8)
            .map(|n| &bytes[..n])
            .ok_or_else(|| EngineError::Internal("stored row without its sequence number".into()))
    }
}

/// Appends `v` as one column of a memcomparable sort key: a placement byte (NULLs first
/// or last), then the value's encoding, bit-inverted for descending order. Value
/// encodings are prefix-free, so inverting them reverses their order.
pub(crate) fn encode_sort_value(
    v: &datafusion::common::ScalarValue,
    desc: bool,
    nulls_first: bool,
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    if v.is_null() {
        out.push(if nulls_first { 0 } else { 2 });
        return Ok(());
    }
    out.push(1);
    let v = match freshet_storage::codec::storable_type(&v.data_type()) {
        Some(t) if t != v.data_type() => v.cast_to(&t)?,
        _ => v.clone(),
    };
    let start = out.len();
    freshet_storage::codec::encode_value(&v, out)?;
    if desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
    Ok(())
}

/// An order-preserving key for a signed integer (a time in µs).
pub(crate) fn order_key(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// The integer an [`order_key`] at the start of `b` encodes.
pub(crate) fn order_from_key(b: &[u8]) -> Result<i64, EngineError> {
    let a: [u8; 8] = b
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| EngineError::Internal("bad order key".into()))?;
    Ok((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

/// Encodes a signed count as a stored value.
pub(crate) fn encode_count(n: i64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

pub(crate) fn decode_count(v: &[u8]) -> Result<i64, EngineError> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| EngineError::Internal("bad stored count".into()))?;
    Ok(i64::from_be_bytes(a))
}

/// Adds `delta` to the count stored at `key`; deletes the key when it reaches zero.
/// Returns the old and new counts.
pub(crate) fn add_count(
    txn: &mut freshet_storage::Txn,
    key: Vec<u8>,
    delta: i64,
) -> Result<(i64, i64), EngineError> {
    let old = match txn.get(&key)? {
        Some(v) => decode_count(&v)?,
        None => 0,
    };
    let new = old + delta;
    if new == 0 {
        txn.delete(key);
    } else {
        txn.put(key, encode_count(new));
    }
    Ok((old, new))
}

/// [`add_count`] for a row of a set (see `StreamNode::unique_key`) when `distinct`: an
/// insert finds the row absent and a delete finds it present, so the multiplicity is
/// written (or the key deleted) without reading it. Other weights, and rows of a
/// multiset, go through [`add_count`].
pub(crate) fn change_count(
    txn: &mut freshet_storage::Txn,
    key: Vec<u8>,
    delta: i64,
    distinct: bool,
) -> Result<(i64, i64), EngineError> {
    match (distinct, delta) {
        (true, 1) => {
            txn.put(key, encode_count(1));
            Ok((0, 1))
        }
        (true, -1) => {
            txn.delete(key);
            Ok((1, 0))
        }
        _ => add_count(txn, key, delta),
    }
}
