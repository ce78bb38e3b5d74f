//! The state of the operators that see each group's rows in order (top-N and window
//! functions over `PARTITION BY … ORDER BY …`): every input row, keyed
//! `group | sort key | row → count, sort key length`, where the sort key is memcomparable
//! with each column's direction and NULL placement applied, so a group's rows are one
//! ordered prefix scan.
//!
//! Over windows (a partition column that follows the watermark, such as `window_start`:
//! see `StreamNode::window_key`) the group key is stored with that column first, and the
//! groups the watermark makes final are deleted as one range, as the windowed aggregate
//! does: state stays bounded on an endless stream. Their rows stay in the operator's
//! output; later changes to a closed group are ignored (a closed window does not
//! change). The last watermark is kept in state table `u16::MAX`, so this holds across
//! restarts.

use std::collections::BTreeMap;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_storage::Txn;

use super::{eval_all, StateTable};
use crate::chunk::{Chunk, Row, RowFormat};
use crate::plan::{PhysExpr, SortKey};
use crate::EngineError;

/// A change to one stored row of a group: its key after the group (sort key ++ row),
/// the sort key's length, and the weight.
pub(crate) type Change = (Vec<u8>, usize, i64);

pub(crate) struct OrderedGroups {
    pub partition: Vec<PhysExpr>,
    pub order: Vec<SortKey>,
    /// How input rows are stored.
    pub format: RowFormat,
    rows: StateTable,
    /// The partition column groups close by, its lag, and the type it is stored as.
    window: Option<(usize, i64, DataType)>,
    /// Holds the last watermark.
    meta: StateTable,
}

impl OrderedGroups {
    pub fn new(
        partition: Vec<PhysExpr>,
        order: Vec<SortKey>,
        input: &SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> OrderedGroups {
        OrderedGroups {
            partition,
            order,
            format: RowFormat::of(input),
            rows: StateTable::new(table_id(0)),
            window: None,
            meta: StateTable::new(table_id(u16::MAX)),
        }
    }

    /// Makes the groups of closed windows free: `window` is the partition column they
    /// close by and its lag (`StreamNode::window_key`).
    pub fn windowed(
        mut self,
        window: Option<(usize, i64)>,
        input: &SchemaRef,
    ) -> Result<OrderedGroups, EngineError> {
        self.window = match window {
            Some((k, lag)) => {
                let t = self.partition[k].data_type(input)?;
                let stored = freshet_storage::codec::storable_type(&t).unwrap_or(t);
                Some((k, lag, stored))
            }
            None => None,
        };
        Ok(self)
    }

    fn watermark(&self, state: &Txn) -> Result<Option<i64>, EngineError> {
        super::closing::stored_watermark(&self.meta, state)
    }

    /// The key of the first group still open at watermark `wm`.
    fn open_bound(&self, wtype: &DataType, lag: i64, wm: i64) -> Result<Vec<u8>, EngineError> {
        super::closing::open_key(&self.rows, wtype, lag, wm)
    }

    /// The sort key of row `i` (see [`super::encode_sort_value`]).
    fn sort_key(&self, cols: &[ArrayRef], i: usize) -> Result<Vec<u8>, EngineError> {
        let mut out = Vec::new();
        for (k, col) in self.order.iter().zip(cols) {
            let v = ScalarValue::try_from_array(col, i)?;
            super::encode_sort_value(&v, k.desc, k.nulls_first, &mut out)?;
        }
        Ok(out)
    }

    /// A chunk's changes per group it touches, leaving out the groups of closed windows.
    pub fn changes(
        &self,
        chunk: &Chunk,
        state: &Txn,
    ) -> Result<BTreeMap<Vec<u8>, Vec<Change>>, EngineError> {
        let group_cols = eval_all(&self.partition, &chunk.batch)?;
        let order_exprs: Vec<_> = self.order.iter().map(|k| k.expr.clone()).collect();
        let order_cols = eval_all(&order_exprs, &chunk.batch)?;
        let rows = chunk.rows()?;
        let wm = match self.window {
            Some(_) => self.watermark(state)?,
            None => None,
        };
        let mut groups: BTreeMap<Vec<u8>, Vec<Change>> = BTreeMap::new();
        // A windowed group's key: the window value, then the partition values.
        let mut key_cols = Vec::with_capacity(group_cols.len() + 1);
        if let Some((k, _, _)) = &self.window {
            key_cols.push(group_cols[*k].clone());
        }
        key_cols.extend(group_cols.iter().cloned());
        let group_format = RowFormat::of_arrays(&key_cols);
        for (i, row) in rows.iter().enumerate() {
            let g: Row = key_cols
                .iter()
                .map(|c| ScalarValue::try_from_array(c, i))
                .collect::<Result<_, _>>()?;
            if let Some((_, lag, _)) = &self.window {
                if super::closing::is_closed(&g[0], *lag, wm) {
                    continue;
                }
            }
            let g = group_format.encode(&g)?;
            let sort = self.sort_key(&order_cols, i)?;
            let mut k = sort.clone();
            k.extend_from_slice(&self.format.encode(row)?);
            groups
                .entry(g)
                .or_default()
                .push((k, sort.len(), chunk.weights[i]));
        }
        Ok(groups)
    }

    /// Applies one group's changes to the stored rows.
    pub fn apply(
        &self,
        state: &mut Txn,
        group: &[u8],
        changes: Vec<Change>,
    ) -> Result<(), EngineError> {
        for (k, sort_len, w) in changes {
            let key = self.rows.key2(group, &k);
            let old = match state.get(&key)? {
                Some(v) => decode_value(&v)?.0,
                None => 0,
            };
            let new = old + w;
            if new < 0 {
                return Err(EngineError::Internal(
                    "negative multiplicity of an ordered row".into(),
                ));
            }
            if new == 0 {
                state.delete(key);
            } else {
                let mut v = new.to_be_bytes().to_vec();
                v.extend_from_slice(&(sort_len as u32).to_be_bytes());
                state.put(key, v);
            }
        }
        Ok(())
    }

    /// Applies a chunk, group by group, and returns what changed in `read`'s view of
    /// each group it touches (read before and after: see [`multiset_diff`]).
    pub fn apply_chunk<K: std::hash::Hash + Ord>(
        &self,
        chunk: &Chunk,
        state: &mut Txn,
        mut read: impl FnMut(&Txn, &[u8]) -> Result<Vec<K>, EngineError>,
    ) -> Result<Vec<(K, i64)>, EngineError> {
        let mut out = Vec::new();
        for (g, changes) in self.changes(chunk, state)? {
            let before = read(state, &g)?;
            self.apply(state, &g, changes)?;
            let after = read(state, &g)?;
            out.extend(multiset_diff(before, after));
        }
        Ok(out)
    }

    /// Visits a group's rows in order as `(sort key, encoded row, count)` until `f`
    /// returns false.
    pub fn visit(
        &self,
        state: &Txn,
        group: &[u8],
        mut f: impl FnMut(&[u8], &[u8], i64) -> bool,
    ) -> Result<(), EngineError> {
        let prefix = self.rows.key(group);
        let mut err = None;
        state.visit_prefix(&prefix, |key, val| {
            let (count, sort_len) = match decode_value(val) {
                Ok(v) => v,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            };
            let rest = &key[prefix.len()..];
            let Some(sort) = rest.get(..sort_len) else {
                err = Some(EngineError::Internal("bad ordered-row key".into()));
                return false;
            };
            f(sort, &rest[sort_len..], count)
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Deletes the groups of the windows the watermark closed.
    pub fn on_watermark(&self, wm: i64, state: &mut Txn) -> Result<(), EngineError> {
        let Some((_, lag, wtype)) = &self.window else {
            return Ok(());
        };
        let old = self.watermark(state)?;
        if old.is_some_and(|old| old >= wm) {
            return Ok(());
        }
        state.put(self.meta.key(&[]), super::encode_count(wm));
        // Groups closed by the previous watermark are gone already.
        let start = match old {
            Some(old) => self.open_bound(wtype, *lag, old)?,
            None => self.rows.key(&[1u8]), // present (non-NULL) window values
        };
        let end = self.open_bound(wtype, *lag, wm)?;
        state.delete_range(&start, &end)?;
        Ok(())
    }
}

/// The changes from multiset `before` to multiset `after`: each element whose count
/// differs, with the difference, in order.
fn multiset_diff<K: std::hash::Hash + Ord>(before: Vec<K>, after: Vec<K>) -> Vec<(K, i64)> {
    let mut diff: std::collections::HashMap<K, i64> = std::collections::HashMap::new();
    for e in before {
        *diff.entry(e).or_default() -= 1;
    }
    for e in after {
        *diff.entry(e).or_default() += 1;
    }
    let mut diff: Vec<_> = diff.into_iter().filter(|(_, w)| *w != 0).collect();
    diff.sort();
    diff
}

fn decode_value(v: &[u8]) -> Result<(i64, usize), EngineError> {
    let bad = || EngineError::Internal("bad ordered-row state value".into());
    let count = i64::from_be_bytes(v.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?);
    let len = u32::from_be_bytes(
        v.get(8..12)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?,
    );
    Ok((count, len as usize))
}
