//! Hash aggregation over a changelog.
//!
//! State:
//! - table 0, `group key → accumulator row`: the group's row count, then per aggregate the
//!   running values that inserts and deletes can both update (counts, and for sum/avg the
//!   non-null count and the sum);
//! - one more table per aggregate that needs the values themselves, `group key | value →
//!   multiplicity`: min/max (after deleting the current minimum, the next one is the
//!   first key of the group's range) and DISTINCT aggregates (a value counts while its
//!   multiplicity is positive).
//!
//! Windowed aggregation: when a group column follows the watermark (a `window_start`,
//! `window_end` or event-time column, see `StreamNode::window_key`), group keys are stored
//! with that column first, so the groups the watermark makes final are one range scan.
//! Their state is then deleted; with `EMIT ON WINDOW CLOSE` their rows are emitted only
//! then, once. Rows for a group that is already final are ignored (they can only come from
//! a table joined to the stream, and a closed window does not change). The last watermark
//! is kept in state table `u16::MAX`, so this holds across restarts.
//!
//! For each group a chunk touches, the operator emits the group's old output row as a
//! delete and its new output row as an insert (nothing if they are equal). A group whose
//! row count drops to zero disappears; the global aggregate (no GROUP BY) always has
//! exactly one row, like SQL's `SELECT count(*) FROM t` over an empty table.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_storage::codec::{self, Decoder};
use freshet_storage::Txn;

use super::{add_count, agg_fold, eval_all, FastMap, StateTable};
use crate::chunk::{Chunk, Row};
use crate::operator::Operator;
use crate::plan::{AggCall, AggKind, PhysExpr};
use crate::EngineError;

pub struct HashAgg {
    group: Vec<PhysExpr>,
    aggs: Vec<AggCall>,
    schema: SchemaRef,
    groups: StateTable,
    /// Per aggregate, the value multiset table if it needs one.
    values: Vec<Option<StateTable>>,
    /// Per aggregate, the first accumulator slot.
    offsets: Vec<usize>,
    acc_types: Vec<DataType>,
    /// The group column groups close by, and its lag (see `StreamNode::window_key`).
    window: Option<(usize, i64)>,
    emit_on_close: bool,
    /// Holds the last watermark.
    meta: StateTable,
    /// The last watermark (`None` until loaded from state or received).
    wm: Option<Option<i64>>,
    /// Accumulators of groups read or written before, decoded, by stored group key
    /// (`None`: the group has no rows), so that the chunks touching a group again neither
    /// read nor decode it: each change is still written through to state. The groups of
    /// closed windows leave it (entries of groups that emptied stay until it is emptied);
    /// it is emptied when it outgrows [`CACHED_GROUPS`] and when the transaction drops
    /// writes (a statement rolled back), since it may hold what was dropped.
    cache: FastMap<Vec<u8>, Option<Row>>,
    /// A stored group key at least as large as every group key in state that is not in
    /// the cache (the largest key in state when the cache was last emptied): a group with
    /// a larger key that is not cached has no rows, without a read. New windows' groups
    /// (their keys start with the window) are found this way. `None`: not known yet.
    known_above: Option<Vec<u8>>,
    /// How many groups the cache may hold ([`CACHED_GROUPS`], shared out between shards).
    cache_cap: usize,
    /// A new group's accumulator (built once: every group starts from it).
    initial: Row,
    /// The transaction generation the cache (and `wm`) agree with (`Txn::generation`).
    generation: Option<u64>,
    /// Per aggregate with a value table and encoded value, the multiplicity the rows of
    /// the group being updated change, summed over the chunk's rows before the table is
    /// touched (`HashAgg::add_values`): a chunk that moves many rows of a group from one
    /// value to another, as the changes of a count feeding a `max` do, reads and writes
    /// each value once.
    pending: FastMap<(usize, Vec<u8>), i64>,
}

/// The input partial accumulators arrive on (two-phase aggregation, `crate::two_phase`):
/// rows of the group values followed by accumulator slots of some of the group's rows,
/// each with weight 1, merged into the group's. Rows arrive on input 0.
pub(crate) const PARTIALS: usize = 1;

/// At most this many cached groups (see `HashAgg::cache`; checked before each chunk). A
/// group costs its key and its accumulator's `ScalarValue`s (64 bytes each): about
/// 60–130 MiB per aggregate at the limit.
const CACHED_GROUPS: usize = 1 << 18;

/// The fewest cached groups of one shard of an aggregate.
const MIN_CACHED_GROUPS: usize = 1 << 12;

fn needs_values(a: &AggCall) -> bool {
    a.distinct || (a.kind.keeps_values() && !a.running)
}

/// Whether a value-table entry stores its value after the count (ordered aggregates,
/// whose key starts with the ORDER BY value) rather than as its key.
/// `v` in the type it is stored as (a `UInt64` as `Int64`, a nanosecond timestamp in
/// microseconds: `codec::storable_type`).
fn storable(v: &ScalarValue) -> Result<ScalarValue, EngineError> {
    Ok(match codec::storable_type(&v.data_type()) {
        Some(t) if t != v.data_type() && !v.is_null() => v.cast_to(&t)?,
        _ => v.clone(),
    })
}

/// One input row's values for each aggregate: its argument, its ORDER BY values, and
/// whether its FILTER drops the row.
#[derive(Clone, Copy)]
struct RowInputs<'a> {
    args: &'a [Option<ScalarValue>],
    orders: &'a [Vec<ScalarValue>],
    skip: &'a [bool],
}

fn value_in_entry(a: &AggCall) -> bool {
    !a.order.is_empty()
        || matches!(
            a.kind,
            AggKind::FirstValue | AggKind::LastValue | AggKind::ArrayAgg
        )
}

impl HashAgg {
    /// `table_id(n)` gives the id of the operator's state table number `n`.
    pub fn new(
        group: Vec<PhysExpr>,
        aggs: Vec<AggCall>,
        schema: SchemaRef,
        table_id: impl Fn(u16) -> u64,
    ) -> Result<HashAgg, EngineError> {
        let (offsets, acc_types) = agg_fold::layout(&aggs)?;
        let values = (0..aggs.len())
            .map(|i| needs_values(&aggs[i]).then(|| StateTable::new(table_id(i as u16 + 1))))
            .collect();
        let initial = Self::empty_acc(&aggs, &offsets, &acc_types)?;
        Ok(HashAgg {
            initial,
            group,
            aggs,
            schema,
            groups: StateTable::new(table_id(0)),
            values,
            offsets,
            acc_types,
            window: None,
            emit_on_close: false,
            meta: StateTable::new(table_id(u16::MAX)),
            wm: None,
            cache: FastMap::default(),
            known_above: None,
            cache_cap: CACHED_GROUPS,
            generation: None,
            pending: FastMap::default(),
        })
    }

    /// Makes the aggregate close groups by `window` (group column, lag) as the watermark
    /// passes; with `emit_on_close`, rows are emitted only then.
    pub fn windowed(mut self, window: Option<(usize, i64)>, emit_on_close: bool) -> HashAgg {
        self.window = window;
        self.emit_on_close = emit_on_close && window.is_some();
        self
    }

    /// Forgets what is kept in memory if the transaction dropped writes since it was
    /// read (see [`HashAgg::cache`]).
    fn sync(&mut self, state: &Txn) {
        if self.generation != Some(state.generation()) {
            self.generation = Some(state.generation());
            self.forget();
            self.wm = None;
        }
    }

    /// Empties the cache of accumulators.
    fn forget(&mut self) {
        self.cache.clear();
        self.known_above = None;
    }

    /// A group's accumulator, from the cache or state (`None`: the group has no rows).
    /// A cached one is taken out: the caller puts it back.
    fn take_acc(&mut self, state: &Txn, gkey: &[u8]) -> Result<Option<Row>, EngineError> {
        if let Some(cached) = self.cache.remove(gkey) {
            return Ok(cached);
        }
        if self.known_above.is_none() {
            let prefix = self.groups.key(&[]);
            let last = state.first_with_prefix(&prefix, true)?;
            self.known_above = Some(match last {
                Some((k, _)) => k[prefix.len()..].to_vec(),
                None => Vec::new(),
            });
        }
        if self.known_above.as_deref().is_some_and(|b| gkey > b) {
            return Ok(None);
        }
        self.load(state, gkey)
    }

    fn watermark(&mut self, state: &Txn) -> Result<Option<i64>, EngineError> {
        if let Some(wm) = self.wm {
            return Ok(wm);
        }
        let wm = match state.get(&self.meta.key(&[]))? {
            Some(v) => Some(super::decode_count(&v)?),
            None => None,
        };
        self.wm = Some(wm);
        Ok(wm)
    }

    /// Whether a group with these values is final (its window closed).
    fn is_closed(&self, gvals: &Row, wm: Option<i64>) -> bool {
        self.window
            .is_some_and(|(k, lag)| super::closing::is_closed(&gvals[k], lag, wm))
    }

    /// The key below which groups are closed at watermark `wm` (see
    /// [`super::closing::open_bound`]).
    fn close_bound(&self, wtype: &DataType, lag: i64, wm: i64) -> Result<Vec<u8>, EngineError> {
        let bound = super::closing::open_bound(wtype, lag, wm)?;
        let mut end = self.groups.key(&[]);
        codec::encode_value(&bound, &mut end)?;
        Ok(end)
    }

    /// A new group's accumulator (see `HashAgg::initial`).
    fn initial_acc(&self) -> Result<Row, EngineError> {
        Ok(self.initial.clone())
    }

    /// The accumulator of a group with no rows: running min/max slots NULL, counts and
    /// sums zero.
    pub(crate) fn empty_acc(
        aggs: &[AggCall],
        offsets: &[usize],
        acc_types: &[DataType],
    ) -> Result<Row, EngineError> {
        let running: Vec<usize> = aggs
            .iter()
            .zip(offsets)
            .filter(|(a, _)| a.running)
            .map(|(_, off)| *off)
            .collect();
        acc_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if running.contains(&i) {
                    Ok(ScalarValue::try_from(t)?)
                } else if i == 0 || *t == DataType::Int64 {
                    Ok(ScalarValue::Int64(Some(0)))
                } else {
                    Ok(ScalarValue::new_zero(t)?)
                }
            })
            .collect()
    }

    fn load(&self, state: &Txn, gkey: &[u8]) -> Result<Option<Row>, EngineError> {
        match state.get(&self.groups.key(gkey))? {
            Some(v) => Ok(Some(codec::decode_row(&v, &self.acc_types)?)),
            None => Ok(None),
        }
    }

    /// The distinct values of aggregate `i` in group `gkey`, ascending.
    fn scan_values(
        &self,
        state: &Txn,
        i: usize,
        gkey: &[u8],
    ) -> Result<Vec<ScalarValue>, EngineError> {
        let table = self.values[i]
            .as_ref()
            .ok_or_else(|| EngineError::Internal("aggregate without value table".into()))?;
        let arg_type = self.aggs[i]
            .arg_type
            .as_ref()
            .ok_or_else(|| EngineError::Internal("aggregate without argument type".into()))?;
        let prefix = table.key(gkey);
        state
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(k, _)| Ok(Decoder::new(&k[prefix.len()..]).value(arg_type)?))
            .collect()
    }

    /// The entries of aggregate `i`'s value table in group `gkey`, in key order, with
    /// their multiplicities.
    fn scan_counted(
        &self,
        state: &Txn,
        i: usize,
        gkey: &[u8],
    ) -> Result<Vec<(ScalarValue, i64)>, EngineError> {
        let table = self.values[i]
            .as_ref()
            .ok_or_else(|| EngineError::Internal("aggregate without value table".into()))?;
        let prefix = table.key(gkey);
        state
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(k, v)| self.entry(i, &k[prefix.len()..], &v))
            .collect()
    }

    /// A value-table entry's value and multiplicity.
    fn entry(&self, i: usize, key: &[u8], val: &[u8]) -> Result<(ScalarValue, i64), EngineError> {
        let arg_type = self.aggs[i]
            .arg_type
            .as_ref()
            .ok_or_else(|| EngineError::Internal("aggregate without argument type".into()))?;
        let count = super::decode_count(val.get(..8).unwrap_or_default())?;
        let bytes = if value_in_entry(&self.aggs[i]) {
            &val[8..]
        } else {
            key
        };
        // Stored in the type a value of `arg_type` is stored as (see `storable`).
        let stored = codec::storable_type(arg_type).unwrap_or_else(|| arg_type.clone());
        let v = Decoder::new(bytes).value(&stored)?;
        let v = if &stored != arg_type && !v.is_null() {
            crate::numeric_special::cast_scalar(&v, arg_type)?
        } else {
            v
        };
        Ok((v, count))
    }

    fn first_value(
        &self,
        state: &Txn,
        i: usize,
        gkey: &[u8],
        last: bool,
    ) -> Result<Option<ScalarValue>, EngineError> {
        let table = self.values[i]
            .as_ref()
            .ok_or_else(|| EngineError::Internal("aggregate without value table".into()))?;
        let arg_type = self.aggs[i]
            .arg_type
            .as_ref()
            .ok_or_else(|| EngineError::Internal("aggregate without argument type".into()))?;
        let _ = arg_type;
        let prefix = table.key(gkey);
        match state.first_with_prefix(&prefix, last)? {
            Some((k, v)) => Ok(Some(self.entry(i, &k[prefix.len()..], &v)?.0)),
            None => Ok(None),
        }
    }

    /// The output row of a group.
    fn output(&self, state: &Txn, gkey: &[u8], gvals: &Row, acc: &Row) -> Result<Row, EngineError> {
        let mut out = gvals.clone();
        for (i, a) in self.aggs.iter().enumerate() {
            let off = self.offsets[i];
            let v = match (a.kind, a.distinct) {
                (AggKind::CountStar | AggKind::Count, _) => acc[off].clone(),
                (AggKind::ApproxCountDistinct, _) => {
                    let table = self.values[i].as_ref().ok_or_else(|| {
                        EngineError::Internal("aggregate without value table".into())
                    })?;
                    let sketch = if a.sketch {
                        crate::hll::Hll::from_bytes(
                            &state.get(&table.key(gkey))?.unwrap_or_default(),
                        )
                    } else {
                        let mut h = crate::hll::Hll::default();
                        for v in self.scan_values(state, i, gkey)? {
                            h.add(&v)?;
                        }
                        h
                    };
                    ScalarValue::Int64(Some(sketch.estimate()))
                }
                (AggKind::Min | AggKind::Max, _) if a.running => acc[off].clone(),
                (AggKind::Min | AggKind::FirstValue, _) => self
                    .first_value(state, i, gkey, false)?
                    .unwrap_or(ScalarValue::Null),
                (AggKind::Max | AggKind::LastValue, _) => self
                    .first_value(state, i, gkey, true)?
                    .unwrap_or(ScalarValue::Null),
                (AggKind::BitAnd | AggKind::BitOr | AggKind::BitXor, _) => {
                    let t = a.arg_type.as_ref().ok_or_else(|| {
                        EngineError::Internal("a bit aggregate without an argument type".into())
                    })?;
                    agg_fold::bits_result(a.kind, acc, off, t)?
                }
                (AggKind::BoolAnd | AggKind::BoolOr, _) => {
                    let (n, trues) = (agg_fold::count(acc, off), agg_fold::count(acc, off + 1));
                    match (n, a.kind) {
                        (0, _) => ScalarValue::Boolean(None),
                        (_, AggKind::BoolAnd) => ScalarValue::Boolean(Some(trues == n)),
                        _ => ScalarValue::Boolean(Some(trues > 0)),
                    }
                }
                (AggKind::StringAgg, _) => {
                    let sep = match &a.param {
                        Some(ScalarValue::Utf8(Some(s))) => s.as_str(),
                        _ => "",
                    };
                    let mut out: Option<String> = None;
                    for (v, n) in self.scan_counted(state, i, gkey)? {
                        let text = match v.cast_to(&DataType::Utf8)? {
                            ScalarValue::Utf8(Some(t)) => t,
                            _ => continue,
                        };
                        for _ in 0..n {
                            match &mut out {
                                Some(o) => {
                                    o.push_str(sep);
                                    o.push_str(&text);
                                }
                                None => out = Some(text.clone()),
                            }
                        }
                    }
                    ScalarValue::Utf8(out)
                }
                (AggKind::ArrayAgg, _) => {
                    let elem = a.arg_type.as_ref().ok_or_else(|| {
                        EngineError::Internal("array_agg without an argument type".into())
                    })?;
                    let mut values = Vec::new();
                    for (v, n) in self.scan_counted(state, i, gkey)? {
                        for _ in 0..n {
                            values.push(v.clone());
                        }
                    }
                    if values.is_empty() {
                        ScalarValue::try_from(&a.return_type)?
                    } else {
                        ScalarValue::List(ScalarValue::new_list_nullable(&values, elem))
                    }
                }
                (AggKind::Percentile, _) => {
                    let p = match a.param.as_ref().map(|p| p.cast_to(&DataType::Float64)) {
                        Some(Ok(ScalarValue::Float64(Some(p)))) => p,
                        _ => {
                            return Err(EngineError::Internal(
                                "percentile without a fraction".into(),
                            ))
                        }
                    };
                    percentile(&self.scan_counted(state, i, gkey)?, p)?
                }
                (AggKind::PercentileDisc { descending }, _) => {
                    let p = match a.param.as_ref().map(|p| p.cast_to(&DataType::Float64)) {
                        Some(Ok(ScalarValue::Float64(Some(p)))) => p,
                        _ => {
                            return Err(EngineError::Internal(
                                "percentile without a fraction".into(),
                            ))
                        }
                    };
                    let values = self.scan_counted(state, i, gkey)?;
                    percentile_disc(&values, p, descending, &a.return_type)?
                }
                (AggKind::Sum | AggKind::Avg, false) => {
                    let n = agg_fold::count(acc, off);
                    if let Some(s) = agg_fold::accumulated_special(a, off, acc) {
                        special_value(s, &a.return_type)
                    } else if n == 0 {
                        ScalarValue::Null
                    } else if a.kind == AggKind::Sum {
                        acc[off + 1].clone()
                    } else {
                        average(&acc[off + 1], n, &a.return_type)?
                    }
                }
                (AggKind::Sum | AggKind::Avg, true) => {
                    let vals = self.scan_values(state, i, gkey)?;
                    if vals.is_empty() {
                        ScalarValue::Null
                    } else {
                        let t = agg_fold::sum_type(&vals[0].data_type())?;
                        let mut sum = ScalarValue::new_zero(&t)?;
                        let mut specials = [0i64; 3];
                        let vals: Vec<ScalarValue> = vals
                            .into_iter()
                            .filter(|v| match (a.specials, v) {
                                (true, ScalarValue::Decimal128(Some(x), ..)) => {
                                    match crate::numeric_special::Special::of(*x) {
                                        Some(s) => {
                                            specials[s as usize] += 1;
                                            false
                                        }
                                        None => true,
                                    }
                                }
                                _ => true,
                            })
                            .collect();
                        let special = crate::numeric_special::sum_of(specials);
                        for v in &vals {
                            sum = agg_fold::add_weighted(
                                &sum,
                                &crate::numeric_special::cast_scalar(v, &t)?,
                                1,
                            )?;
                        }
                        if let Some(s) = special {
                            special_value(s, &a.return_type)
                        } else if a.kind == AggKind::Sum {
                            sum
                        } else {
                            average(&sum, vals.len() as i64, &a.return_type)?
                        }
                    }
                }
            };
            out.push(cast_or_null(v, &a.return_type)?);
        }
        Ok(out)
    }

    /// Adds the value multiplicities a group's rows in one chunk changed
    /// ([`HashAgg::pending`]) to the group's value tables.
    fn add_values(
        &mut self,
        state: &mut Txn,
        gkey: &[u8],
        acc: &mut Row,
    ) -> Result<(), EngineError> {
        for ((i, vk), w) in self.pending.drain() {
            let (Some(a), Some(Some(table))) = (self.aggs.get(i), self.values.get(i)) else {
                return Err(EngineError::Internal(format!("no value table {i}")));
            };
            if w == 0 {
                continue;
            }
            let (old, new) = add_count(state, table.key2(gkey, &vk), w)?;
            if new < 0 {
                return Err(EngineError::Internal("negative value multiplicity".into()));
            }
            if a.distinct && a.kind == AggKind::Count {
                let delta = match (old > 0, new > 0) {
                    (false, true) => 1,
                    (true, false) => -1,
                    _ => 0,
                };
                let off = self.offsets[i];
                acc[off] = ScalarValue::Int64(Some(agg_fold::count(acc, off) + delta));
            }
        }
        Ok(())
    }

    /// Merges partial accumulator `part` (of some of the group's rows, see `PARTIALS`)
    /// into the group's.
    fn merge(&self, acc: &mut Row, part: &Row, w: i64) -> Result<(), EngineError> {
        if w != 1 {
            return Err(EngineError::Internal(format!(
                "a partial accumulator of weight {w}"
            )));
        }
        acc[0] = ScalarValue::Int64(Some(agg_fold::count(acc, 0) + agg_fold::count(part, 0)));
        for (a, &off) in self.aggs.iter().zip(&self.offsets) {
            agg_fold::merge(a, off, acc, part)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        state: &mut Txn,
        gkey: &[u8],
        acc: &mut Row,
        row: RowInputs<'_>,
        w: i64,
    ) -> Result<(), EngineError> {
        let RowInputs { args, orders, skip } = row;
        acc[0] = ScalarValue::Int64(Some(agg_fold::count(acc, 0) + w));
        for (i, a) in self.aggs.iter().enumerate() {
            if skip[i] {
                continue; // its FILTER drops the row
            }
            let off = self.offsets[i];
            if agg_fold::stateless(a) {
                agg_fold::fold(a, off, &self.acc_types, acc, args[i].as_ref(), w)?;
                continue;
            }
            if matches!(
                a.kind,
                AggKind::FirstValue | AggKind::LastValue | AggKind::ArrayAgg
            ) || (a.kind == AggKind::StringAgg && !a.order.is_empty())
            {
                // Ordered: the key starts with the ORDER BY value, the value follows the
                // count. first_value/last_value and array_agg see NULL values too.
                let v = match &args[i] {
                    Some(v) if !(v.is_null() && a.kind == AggKind::StringAgg) => v,
                    Some(_) => continue,
                    None => &ScalarValue::Null,
                };
                let table = self.values[i].as_ref().ok_or_else(|| {
                    EngineError::Internal("ordered aggregate without value table".into())
                })?;
                let mut key = Vec::new();
                for (o, ov) in a.order.iter().zip(&orders[i]) {
                    super::encode_sort_value(ov, o.desc, o.nulls_first, &mut key)?;
                }
                let mut vbytes = Vec::new();
                codec::encode_value(&storable(v)?, &mut vbytes)?;
                key.extend_from_slice(&vbytes);
                let key = table.key2(gkey, &key);
                let old = match state.get(&key)? {
                    Some(e) => super::decode_count(e.get(..8).unwrap_or_default())?,
                    None => 0,
                };
                let new = old + w;
                if new < 0 {
                    return Err(EngineError::Internal("negative value multiplicity".into()));
                }
                if new == 0 {
                    state.delete(key);
                } else {
                    let mut e = new.to_be_bytes().to_vec();
                    e.extend_from_slice(&vbytes);
                    state.put(key, e);
                }
                continue;
            }
            let v = match &args[i] {
                Some(v) if !v.is_null() => v,
                _ => continue, // aggregates ignore NULL inputs
            };
            if a.kind == AggKind::ApproxCountDistinct && a.sketch {
                if w < 0 {
                    return Err(EngineError::Internal(
                        "approx_count_distinct sketch over an input that deletes".into(),
                    ));
                }
                let table = self.values[i]
                    .as_ref()
                    .ok_or_else(|| EngineError::Internal("sketch without value table".into()))?;
                let key = table.key(gkey);
                let mut h = crate::hll::Hll::from_bytes(&state.get(&key)?.unwrap_or_default());
                let before = h.clone();
                h.add(v)?;
                if h != before {
                    state.put(key, h.registers);
                }
                continue;
            }
            if self.values[i].is_some() {
                // Summed over the group's rows in the chunk first (see `add_values`).
                let mut vk = Vec::new();
                codec::encode_value(&storable(v)?, &mut vk)?;
                *self.pending.entry((i, vk)).or_insert(0) += w;
                continue;
            }
            return Err(EngineError::Internal(format!(
                "{:?} keeps neither an accumulator nor values",
                a.kind
            )));
        }
        Ok(())
    }
}

/// `percentile_cont(p)` over ascending values with multiplicities: linear interpolation
/// between the values at positions ⌊p·(n−1)⌋ and ⌈p·(n−1)⌉, as a double.
fn percentile(values: &[(ScalarValue, i64)], p: f64) -> Result<ScalarValue, EngineError> {
    let n: i64 = values.iter().map(|(_, c)| *c).sum();
    if n == 0 {
        return Ok(ScalarValue::Float64(None));
    }
    if !(0.0..=1.0).contains(&p) {
        return Err(EngineError::OutOfRange(format!(
            "percentile value {p} is not between 0 and 1"
        )));
    }
    let pos = p * (n - 1) as f64;
    let (lo, hi) = (pos.floor() as i64, pos.ceil() as i64);
    let at = |idx: i64| -> Result<f64, EngineError> {
        let mut seen = 0;
        for (v, c) in values {
            seen += c;
            if idx < seen {
                return match v.cast_to(&DataType::Float64)? {
                    ScalarValue::Float64(Some(f)) => Ok(f),
                    _ => Err(EngineError::Internal("percentile of a non-number".into())),
                };
            }
        }
        Err(EngineError::Internal(
            "percentile position out of range".into(),
        ))
    };
    let (a, b) = (at(lo)?, at(hi)?);
    Ok(ScalarValue::Float64(Some(a + (b - a) * (pos - lo as f64))))
}

/// Postgres' discrete percentile of `values` (ascending, with their counts): the value at
/// position `max(1, ceil(p · n))` in the aggregate's order.
fn percentile_disc(
    values: &[(ScalarValue, i64)],
    p: f64,
    descending: bool,
    ret: &DataType,
) -> Result<ScalarValue, EngineError> {
    let n: i64 = values.iter().map(|(_, c)| *c).sum();
    if n == 0 {
        return Ok(ScalarValue::try_from(ret)?);
    }
    if !(0.0..=1.0).contains(&p) {
        return Err(EngineError::OutOfRange(format!(
            "percentile value {p} is not between 0 and 1"
        )));
    }
    let k = ((p * n as f64).ceil() as i64).clamp(1, n);
    // The position from the bottom, from 0.
    let at = if descending { n - k } else { k - 1 };
    let mut seen = 0;
    for (v, c) in values {
        seen += c;
        if at < seen {
            return Ok(v.clone());
        }
    }
    Err(EngineError::Internal(
        "percentile position out of range".into(),
    ))
}

/// Special value `s` as a `numeric` of type `t`.
fn special_value(s: crate::numeric_special::Special, t: &DataType) -> ScalarValue {
    match t {
        DataType::Decimal128(p, scale) => ScalarValue::Decimal128(Some(s.value()), *p, *scale),
        _ => ScalarValue::Float64(Some(s.to_f64())),
    }
}

/// `sum / n` in the aggregate's return type.
fn average(sum: &ScalarValue, n: i64, ret: &DataType) -> Result<ScalarValue, EngineError> {
    match (sum, ret) {
        (ScalarValue::Decimal128(Some(s), _, in_scale), DataType::Decimal128(p, out_scale)) => {
            let shift = (*out_scale as i32 - *in_scale as i32).max(0) as u32;
            let scaled = s
                .checked_mul(10i128.pow(shift))
                .ok_or_else(|| EngineError::OutOfRange("numeric average".into()))?;
            Ok(ScalarValue::Decimal128(
                Some(scaled / n as i128),
                *p,
                *out_scale,
            ))
        }
        _ => {
            let f = match sum.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(f)) => f,
                _ => return Ok(ScalarValue::Null),
            };
            Ok(ScalarValue::Float64(Some(f / n as f64)))
        }
    }
}

fn cast_or_null(v: ScalarValue, t: &DataType) -> Result<ScalarValue, EngineError> {
    if v.is_null() {
        return Ok(ScalarValue::try_from(t)?);
    }
    if &v.data_type() == t {
        Ok(v)
    } else {
        Ok(crate::numeric_special::cast_scalar(&v, t)?)
    }
}

impl Operator for HashAgg {
    fn name(&self) -> &'static str {
        "hash_agg"
    }

    fn set_memory_share(&mut self, shards: usize) {
        self.cache_cap = (CACHED_GROUPS / shards.max(1)).max(MIN_CACHED_GROUPS);
    }

    fn on_watermark(&mut self, wm: i64, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        let Some((k, lag)) = self.window else {
            return Ok(None);
        };
        self.sync(state);
        let old = self.watermark(state)?;
        if old.is_some_and(|old| old >= wm) {
            return Ok(None);
        }
        self.wm = Some(Some(wm));
        state.put(self.meta.key(&[]), super::encode_count(wm));
        let wtype = self.schema.field(k).data_type().clone();
        // The groups the previous watermark closed are gone already: start there, not at
        // the first group, so each advance reads only the newly closed windows (and not the
        // deleted entries of every window closed before).
        let start = match old {
            Some(old) => self.close_bound(&wtype, lag, old)?,
            None => self.groups.key(&[1u8]), // present (non-NULL) values
        };
        let end = self.close_bound(&wtype, lag, wm)?;
        if !self.emit_on_close {
            // Nothing to emit: the closed groups and their value tables go as ranges (a
            // group's values are stored under its key). Closed groups stay in the cache
            // (no chunk reads them again) until it is half full: then all of them leave it
            // at once, instead of a pass over the cache at every watermark.
            let plen = self.groups.prefix_len();
            let (gstart, gend) = (&start[plen..], &end[plen..]);
            if self.cache.len() > self.cache_cap / 2 {
                // Closed: a window (first byte 1: not NULL) below the bound.
                self.cache
                    .retain(|g, _| g.first() != Some(&1) || g.as_slice() >= gend);
            }
            state.delete_range(&start, &end)?;
            for t in self.values.iter().flatten() {
                state.delete_range(&t.key(gstart), &t.key(gend))?;
            }
            return Ok(None);
        }
        let closed = state.scan_range(&start, &end)?;
        let mut types = vec![wtype];
        types.extend(
            self.schema.fields()[..self.group.len()]
                .iter()
                .map(|f| f.data_type().clone()),
        );
        let mut out_rows = Vec::new();
        for (key, val) in closed {
            let gkey = key[self.groups.prefix_len()..].to_vec();
            self.cache.remove(&gkey);
            if self.emit_on_close {
                let acc = codec::decode_row(&val, &self.acc_types)?;
                if agg_fold::count(&acc, 0) > 0 {
                    let mut gvals = codec::decode_row(&gkey, &types)?;
                    gvals.remove(0);
                    out_rows.push(self.output(state, &gkey, &gvals, &acc)?);
                }
            }
            for t in self.values.iter().flatten() {
                state.delete_prefix(&t.key(&gkey))?;
            }
            state.delete(key);
        }
        if out_rows.is_empty() {
            return Ok(None);
        }
        let n = out_rows.len();
        Ok(Some(Chunk::from_rows(
            self.schema.clone(),
            &out_rows,
            vec![1; n],
        )?))
    }

    fn initial_output(&mut self, state: &mut Txn) -> Result<Option<Chunk>, EngineError> {
        if !self.group.is_empty() {
            return Ok(None);
        }
        let acc = self.initial_acc()?;
        let out = self.output(state, &[], &Vec::new(), &acc)?;
        state.put(self.groups.key(&[]), codec::encode_row(&acc)?);
        self.forget();
        Ok(Some(Chunk::from_rows(
            self.schema.clone(),
            &[out],
            vec![1],
        )?))
    }

    fn process(
        &mut self,
        input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let out = self.apply_chunk(input, chunk, state);
        if out.is_err() {
            // The cache may miss a group the failed chunk took out of it.
            self.forget();
        }
        out
    }
}

impl HashAgg {
    fn apply_chunk(
        &mut self,
        input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        if chunk.is_empty() {
            return Ok(Chunk::empty(self.schema.clone()));
        }
        let n = chunk.len();
        self.sync(state);
        if self.cache.len() > self.cache_cap {
            self.forget();
        }
        let wm = self.watermark(state)?;
        // Partial accumulators (see `PARTIALS`): the group values, then the slots.
        let partial = input == PARTIALS;
        let g = self.group.len();
        if partial && !agg_fold::combinable(&self.aggs) {
            return Err(EngineError::Internal(
                "partial accumulators of aggregates that do not combine".into(),
            ));
        }
        if partial && chunk.batch.num_columns() != g + self.acc_types.len() {
            return Err(EngineError::Internal(format!(
                "{} columns of partial accumulators, not {}",
                chunk.batch.num_columns(),
                g + self.acc_types.len()
            )));
        }
        let gcols = match partial {
            true => chunk.batch.columns()[..g].to_vec(),
            false => eval_all(&self.group, &chunk.batch)?,
        };
        let pcols = match partial {
            true => chunk.batch.columns()[g..].to_vec(),
            false => Vec::new(),
        };
        // Arguments and ORDER BY values of rows (partials carry neither).
        let mut acols = Vec::with_capacity(self.aggs.len());
        let mut ocols = Vec::with_capacity(self.aggs.len());
        let mut fcols = Vec::with_capacity(self.aggs.len());
        let row_aggs = if partial { &[][..] } else { &self.aggs[..] };
        for a in row_aggs {
            acols.push(match &a.arg {
                Some(e) => Some(e.evaluate(&chunk.batch)?.into_array(n)?),
                None => None,
            });
            fcols.push(match &a.filter {
                Some(f) => Some(f.evaluate(&chunk.batch)?.into_array(n)?),
                None => None,
            });
            ocols.push(
                a.order
                    .iter()
                    .map(|o| Ok(o.expr.evaluate(&chunk.batch)?.into_array(n)?))
                    .collect::<Result<Vec<_>, EngineError>>()?,
            );
        }
        // The stored key of a group: its values, after the window column when windowed
        // (so closed windows are one range), encoded straight from the columns.
        let gkeys = match self.window {
            Some((k, _)) => {
                let mut cols = vec![gcols[k].clone()];
                cols.extend(gcols.iter().cloned());
                codec::encode_rows(&cols, n)?
            }
            None => codec::encode_rows(&gcols, n)?,
        };
        // Rows by group, groups in order of first appearance; `None` marks a closed group.
        let mut order: Vec<(Vec<u8>, Row, Vec<usize>)> = Vec::new();
        let mut index: FastMap<&[u8], Option<usize>> = FastMap::default();
        for (r, gkey) in gkeys.iter().enumerate() {
            match index.get(gkey) {
                Some(Some(g)) => order[*g].2.push(r),
                Some(None) => {}
                None => {
                    let gvals: Row = gcols
                        .iter()
                        .map(|c| ScalarValue::try_from_array(c, r))
                        .collect::<Result<_, _>>()?;
                    if self.is_closed(&gvals, wm) {
                        index.insert(gkey, None);
                        continue;
                    }
                    index.insert(gkey, Some(order.len()));
                    order.push((gkey.to_vec(), gvals, vec![r]));
                }
            }
        }
        let global = self.group.is_empty();
        let mut out_rows = Vec::new();
        let mut out_weights = Vec::new();
        // Per aggregate, a row's argument and ORDER BY values (reused across rows).
        let mut args: Vec<Option<ScalarValue>> = vec![None; self.aggs.len()];
        let mut orders: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.aggs.len()];
        let mut skip: Vec<bool> = vec![false; self.aggs.len()];
        let fill = |cols: &[Option<datafusion::arrow::array::ArrayRef>],
                    r: usize,
                    out: &mut [Option<ScalarValue>]|
         -> Result<(), EngineError> {
            for (o, c) in out.iter_mut().zip(cols) {
                if let Some(c) = c {
                    *o = Some(ScalarValue::try_from_array(c, r)?);
                }
            }
            Ok(())
        };
        for (gkey, gvals, rows_of) in order {
            let loaded = self.take_acc(state, &gkey)?;
            let old_out = match &loaded {
                Some(acc) if global || agg_fold::count(acc, 0) > 0 => {
                    Some(self.output(state, &gkey, &gvals, acc)?)
                }
                _ => None,
            };
            let mut acc = match loaded {
                Some(acc) => acc,
                None => self.initial_acc()?,
            };
            for &r in &rows_of {
                if partial {
                    let part: Row = pcols
                        .iter()
                        .map(|c| ScalarValue::try_from_array(c, r))
                        .collect::<Result<_, _>>()?;
                    self.merge(&mut acc, &part, chunk.weights[r])?;
                    continue;
                }
                fill(&acols, r, &mut args)?;
                for (o, cols) in orders.iter_mut().zip(&ocols) {
                    o.clear();
                    for c in cols {
                        o.push(ScalarValue::try_from_array(c, r)?);
                    }
                }
                for (s, f) in skip.iter_mut().zip(&fcols) {
                    *s = match f {
                        Some(f) => !matches!(
                            ScalarValue::try_from_array(f, r)?,
                            ScalarValue::Boolean(Some(true))
                        ),
                        None => false,
                    };
                }
                let row = RowInputs {
                    args: &args,
                    orders: &orders,
                    skip: &skip,
                };
                self.apply(state, &gkey, &mut acc, row, chunk.weights[r])?;
            }
            self.add_values(state, &gkey, &mut acc)?;
            let rows = agg_fold::count(&acc, 0);
            if rows < 0 {
                return Err(EngineError::Internal("negative group row count".into()));
            }
            let new_out = if global || rows > 0 {
                state.put(self.groups.key(&gkey), codec::encode_row(&acc)?);
                let out = self.output(state, &gkey, &gvals, &acc)?;
                self.cache.insert(gkey, Some(acc));
                Some(out)
            } else {
                state.delete(self.groups.key(&gkey));
                self.cache.insert(gkey, None);
                None
            };
            if self.emit_on_close {
                continue; // rows come out when their window closes
            }
            if old_out != new_out {
                if let Some(o) = old_out {
                    out_rows.push(o);
                    out_weights.push(-1);
                }
                if let Some(o) = new_out {
                    out_rows.push(o);
                    out_weights.push(1);
                }
            }
        }
        Chunk::from_rows(self.schema.clone(), &out_rows, out_weights)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::col;
    use freshet_storage::Store;

    use super::*;
    use crate::chunk::arc_schema;

    fn i(v: i64) -> ScalarValue {
        ScalarValue::Int64(Some(v))
    }

    /// count(*), sum(v), min(v), max(v), count(DISTINCT v) grouped by k.
    fn agg() -> (HashAgg, SchemaRef) {
        let input = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]);
        let out = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("c", DataType::Int64, true),
            Field::new("s", DataType::Int64, true),
            Field::new("mn", DataType::Int64, true),
            Field::new("mx", DataType::Int64, true),
            Field::new("cd", DataType::Int64, true),
        ]);
        let v = col("v", &input).unwrap();
        let call = |kind, distinct| AggCall {
            distinct,
            ..AggCall::int64(kind, v.clone())
        };
        let aggs = vec![
            AggCall::count_star(),
            call(AggKind::Sum, false),
            call(AggKind::Min, false),
            call(AggKind::Max, false),
            call(AggKind::Count, true),
        ];
        let a = HashAgg::new(vec![col("k", &input).unwrap()], aggs, out, |n| {
            100 + n as u64
        })
        .unwrap();
        (a, input)
    }

    fn feed(
        a: &mut HashAgg,
        input: &SchemaRef,
        txn: &mut Txn,
        rows: &[(i64, i64, i64)],
    ) -> Vec<(Row, i64)> {
        let r: Vec<Row> = rows.iter().map(|(k, v, _)| vec![i(*k), i(*v)]).collect();
        let w = rows.iter().map(|(_, _, w)| *w).collect();
        let out = a
            .process(0, Chunk::from_rows(input.clone(), &r, w).unwrap(), txn)
            .unwrap();
        out.rows().unwrap().into_iter().zip(out.weights).collect()
    }

    /// min/max over an insert-only input kept as running values (no value table) give
    /// the same output changes as the multiset version, chunk by chunk (NULLs, repeated
    /// values, several groups); a delete reaching them is an error, not a wrong result.
    #[test]
    fn running_min_max_equal_the_multiset_version() {
        let input = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]);
        let out = arc_schema(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("mn", DataType::Int64, true),
            Field::new("mx", DataType::Int64, true),
        ]);
        let make = |running: bool| {
            let call = |kind| AggCall {
                running,
                ..AggCall::int64(kind, col("v", &input).unwrap())
            };
            HashAgg::new(
                vec![col("k", &input).unwrap()],
                vec![call(AggKind::Min), call(AggKind::Max)],
                out.clone(),
                |n| 300 + n as u64 + if running { 100 } else { 0 },
            )
            .unwrap()
        };
        let (mut running, mut multiset) = (make(true), make(false));
        let mut txn = Txn::new(Store::memory());
        let mut rnd = crate::test_rng(77);
        for _ in 0..200 {
            let rows: Vec<Row> = (0..1 + rnd(6))
                .map(|_| {
                    let v = match rnd(5) {
                        0 => ScalarValue::Int64(None),
                        _ => i(rnd(40) as i64 - 20),
                    };
                    vec![i(rnd(4) as i64), v]
                })
                .collect();
            let w = vec![1; rows.len()];
            let c = Chunk::from_rows(input.clone(), &rows, w).unwrap();
            let a = running.process(0, c.clone(), &mut txn).unwrap();
            let b = multiset.process(0, c, &mut txn).unwrap();
            assert_eq!(a.rows().unwrap(), b.rows().unwrap());
            assert_eq!(a.weights, b.weights);
        }
        assert_eq!(
            txn.scan_prefix(&freshet_storage::keys::state_prefix(401))
                .unwrap()
                .len(),
            0,
            "no value table"
        );
        let c = Chunk::from_rows(input.clone(), &[vec![i(1), i(1)]], vec![-1]).unwrap();
        assert!(running.process(0, c, &mut txn).is_err());
    }

    /// Value changes summed over a chunk (`HashAgg::pending`) store and output what the
    /// same rows do one chunk each: rows moved from one value to the next in one chunk
    /// (a count's changes feeding a max), inserts and deletes of one value that cancel,
    /// the group's maximum and minimum among them, and several groups.
    #[test]
    fn value_changes_summed_over_a_chunk_equal_row_by_row() {
        let (mut whole, input) = agg();
        let (mut single, _) = agg();
        let (mut t1, mut t2) = (Txn::new(Store::memory()), Txn::new(Store::memory()));
        let mut rnd = crate::test_rng(5);
        let mut live: Vec<(i64, i64)> = Vec::new();
        for step in 0..150 {
            let mut rows = Vec::new();
            for _ in 0..1 + rnd(40) {
                match rnd(4) {
                    // Move a row to the next value, as a count's change does.
                    0 | 1 if !live.is_empty() => {
                        let (k, v) = live.swap_remove(rnd(live.len() as u64) as usize);
                        rows.push((k, v, -1));
                        rows.push((k, v + 1, 1));
                        live.push((k, v + 1));
                    }
                    // An insert and a delete of the same value.
                    2 => {
                        let (k, v) = (rnd(3) as i64, rnd(8) as i64);
                        rows.push((k, v, 1));
                        rows.push((k, v, -1));
                    }
                    _ => {
                        let (k, v) = (rnd(3) as i64, rnd(8) as i64);
                        rows.push((k, v, 1));
                        live.push((k, v));
                    }
                }
            }
            let mut changes: std::collections::BTreeMap<String, i64> = Default::default();
            for (r, w) in feed(&mut whole, &input, &mut t1, &rows) {
                *changes.entry(format!("{r:?}")).or_default() += w;
            }
            for row in &rows {
                for (r, w) in feed(&mut single, &input, &mut t2, std::slice::from_ref(row)) {
                    *changes.entry(format!("{r:?}")).or_default() -= w;
                }
            }
            changes.retain(|_, w| *w != 0);
            assert!(
                changes.is_empty(),
                "step {step}: net output differs: {changes:?}"
            );
            assert_eq!(
                t1.scan_prefix(&freshet_storage::keys::state_prefix(100))
                    .unwrap(),
                t2.scan_prefix(&freshet_storage::keys::state_prefix(100))
                    .unwrap(),
                "step {step}: groups"
            );
            for table in 101..=105 {
                assert_eq!(
                    t1.scan_prefix(&freshet_storage::keys::state_prefix(table))
                        .unwrap(),
                    t2.scan_prefix(&freshet_storage::keys::state_prefix(table))
                        .unwrap(),
                    "step {step}: value table {table}"
                );
            }
        }
    }

    #[test]
    fn min_max_and_distinct_survive_deletes() {
        let (mut a, input) = agg();
        let mut txn = Txn::new(Store::memory());
        let out = feed(
            &mut a,
            &input,
            &mut txn,
            &[(1, 5, 1), (1, 3, 1), (1, 9, 1), (1, 3, 1)],
        );
        assert_eq!(out, vec![(vec![i(1), i(4), i(20), i(3), i(9), i(3)], 1)]);
        // Delete one of the two 3s: min stays 3, distinct count stays 3.
        let out = feed(&mut a, &input, &mut txn, &[(1, 3, -1)]);
        assert_eq!(out[1], (vec![i(1), i(3), i(17), i(3), i(9), i(3)], 1));
        // Delete the other 3 and the 9: min and max fall back to 5.
        let out = feed(&mut a, &input, &mut txn, &[(1, 3, -1), (1, 9, -1)]);
        assert_eq!(out[0].1, -1);
        assert_eq!(out[1], (vec![i(1), i(1), i(5), i(5), i(5), i(1)], 1));
        // Delete the last row: the group disappears.
        let out = feed(&mut a, &input, &mut txn, &[(1, 5, -1)]);
        assert_eq!(out, vec![(vec![i(1), i(1), i(5), i(5), i(5), i(1)], -1)]);
        assert!(txn
            .scan_prefix(&freshet_storage::keys::state_prefix(100))
            .unwrap()
            .is_empty());
    }

    /// Random inserts and deletes over a few groups: the output changes, summed, equal the
    /// aggregates of the live rows after every chunk, while chunks are also processed in
    /// statements that roll back (their writes undone, their output dropped: the cached
    /// accumulators they changed must not survive), commits happen, and the operator
    /// restarts (an empty cache reads state), with a cache small enough to be emptied often.
    #[test]
    fn equals_recompute_across_rollbacks_commits_and_restarts() {
        use std::collections::BTreeMap;

        // A small cache, emptied often.
        let small = || {
            let (mut a, input) = agg();
            a.cache_cap = 3;
            (a, input)
        };
        let (mut a, input) = small();
        let mut txn = Txn::new(Store::memory());
        let mut rnd = crate::test_rng(0x5eed);
        let mut live: Vec<(i64, i64)> = Vec::new();
        let mut view: BTreeMap<String, i64> = BTreeMap::new();
        let mut rollbacks = 0;
        for step in 0..400 {
            if step % 97 == 96 {
                a = small().0;
            }
            if rnd(10) == 0 {
                txn.commit().unwrap();
            }
            let mut next = live.clone();
            let mut rows = Vec::new();
            for _ in 0..1 + rnd(5) {
                if !next.is_empty() && rnd(3) == 0 {
                    let (k, v) = next.swap_remove(rnd(next.len() as u64) as usize);
                    rows.push((k, v, -1));
                } else {
                    // Keys grow over time, so new groups often sort after every stored one.
                    let (k, v) = (rnd(4) as i64 + step / 50, rnd(6) as i64);
                    next.push((k, v));
                    rows.push((k, v, 1));
                }
            }
            if rnd(5) == 0 {
                txn.begin_statement();
                feed(&mut a, &input, &mut txn, &rows);
                txn.rollback_statement();
                rollbacks += 1;
                continue;
            }
            for (row, w) in feed(&mut a, &input, &mut txn, &rows) {
                *view.entry(format!("{row:?}")).or_default() += w;
            }
            view.retain(|_, w| *w != 0);
            live = next;
            let mut want: BTreeMap<String, i64> = BTreeMap::new();
            let mut groups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for (k, v) in &live {
                groups.entry(*k).or_default().push(*v);
            }
            for (k, vs) in groups {
                let distinct: std::collections::BTreeSet<_> = vs.iter().collect();
                let row = vec![
                    i(k),
                    i(vs.len() as i64),
                    i(vs.iter().sum()),
                    i(*vs.iter().min().unwrap()),
                    i(*vs.iter().max().unwrap()),
                    i(distinct.len() as i64),
                ];
                want.insert(format!("{row:?}"), 1);
            }
            assert_eq!(view, want, "step {step}");
        }
        assert!(rollbacks > 40);
    }

    /// A windowed count and sum (groups `(window, k)`, closed by the watermark), with and
    /// without EMIT ON WINDOW CLOSE, under random inserts and deletes (negative window
    /// times too), watermark advances, chunks and watermarks in statements that roll back,
    /// commits, restarts and a three-group cache: after every step the output equals the
    /// aggregates of the rows the operator accepted (those of windows still open when they
    /// arrived), all of them or, with EMIT ON WINDOW CLOSE, the closed windows' only; at
    /// the end no group state is left.
    #[test]
    fn windowed_equals_recompute_across_rollbacks_and_closes() {
        use datafusion::arrow::datatypes::TimeUnit;
        use std::collections::BTreeMap;

        const LAG: i64 = 3;
        let ts = |t: i64| ScalarValue::TimestampMicrosecond(Some(t), None);
        let input = arc_schema(vec![
            Field::new("w", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]);
        let out = arc_schema(vec![
            Field::new("w", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("k", DataType::Int64, true),
            Field::new("c", DataType::Int64, true),
            Field::new("s", DataType::Int64, true),
        ]);
        for eowc in [false, true] {
            let make = || {
                let mut a = HashAgg::new(
                    vec![col("w", &input).unwrap(), col("k", &input).unwrap()],
                    vec![
                        AggCall::count_star(),
                        AggCall::int64(AggKind::Sum, col("v", &input).unwrap()),
                    ],
                    out.clone(),
                    |n| 500 + n as u64,
                )
                .unwrap()
                .windowed(Some((0, LAG)), eowc);
                a.cache_cap = 3;
                a
            };
            let mut a = make();
            let mut txn = Txn::new(Store::memory());
            let mut rnd = crate::test_rng(0x77 + eowc as u64);
            let mut wm = -20i64;
            assert!(a.on_watermark(wm, &mut txn).unwrap().is_none());
            // Accepted live rows: (window, k, v).
            let mut live: Vec<(i64, i64, i64)> = Vec::new();
            let mut view: BTreeMap<String, i64> = BTreeMap::new();
            let add = |view: &mut BTreeMap<String, i64>, c: Option<Chunk>| {
                let Some(c) = c else { return };
                for (row, w) in c.rows().unwrap().into_iter().zip(c.weights) {
                    *view.entry(format!("{row:?}")).or_default() += w;
                }
                view.retain(|_, w| *w != 0);
            };
            for step in 0..600 {
                if step == 300 {
                    a = make();
                }
                if rnd(10) == 0 {
                    txn.commit().unwrap();
                }
                let open = |w: i64, wm: i64| w + LAG > wm;
                match rnd(6) {
                    0 => {
                        wm += rnd(4) as i64;
                        let o = a.on_watermark(wm, &mut txn).unwrap();
                        add(&mut view, o);
                    }
                    1 => {
                        txn.begin_statement();
                        a.on_watermark(wm + 1 + rnd(6) as i64, &mut txn).unwrap();
                        txn.rollback_statement();
                    }
                    _ => {
                        let mut next = live.clone();
                        let mut rows = Vec::new();
                        let mut ws = Vec::new();
                        for _ in 0..1 + rnd(5) {
                            let del = !eowc && !next.is_empty() && rnd(3) == 0;
                            let (w, k, v, weight) = if del {
                                let (w, k, v) = next[rnd(next.len() as u64) as usize];
                                (w, k, v, -1)
                            } else {
                                (wm - 4 + rnd(12) as i64, rnd(3) as i64, rnd(5) as i64, 1)
                            };
                            if open(w, wm) {
                                // Accepted: the window is open.
                                if weight > 0 {
                                    next.push((w, k, v));
                                } else if let Some(at) = next.iter().position(|r| *r == (w, k, v)) {
                                    next.swap_remove(at);
                                }
                            }
                            rows.push(vec![ts(w), i(k), i(v)]);
                            ws.push(weight);
                        }
                        let c = Chunk::from_rows(input.clone(), &rows, ws).unwrap();
                        if rnd(5) == 0 {
                            txn.begin_statement();
                            a.process(0, c, &mut txn).unwrap();
                            txn.rollback_statement();
                            continue;
                        }
                        let o = a.process(0, c, &mut txn).unwrap();
                        add(&mut view, Some(o));
                        live = next;
                    }
                }
                let mut groups: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
                for (w, k, v) in &live {
                    if eowc && open(*w, wm) {
                        continue;
                    }
                    let g = groups.entry((*w, *k)).or_default();
                    g.0 += 1;
                    g.1 += v;
                }
                let want: BTreeMap<String, i64> = groups
                    .into_iter()
                    .map(|((w, k), (c, s))| (format!("{:?}", vec![ts(w), i(k), i(c), i(s)]), 1))
                    .collect();
                assert_eq!(view, want, "eowc {eowc} step {step}");
            }
            a.on_watermark(wm + 100, &mut txn).unwrap();
            let left = txn
                .scan_prefix(&freshet_storage::keys::state_prefix(500))
                .unwrap();
            assert!(left.is_empty(), "eowc {eowc}: groups left");
        }
    }

    #[test]
    fn no_output_when_group_unchanged() {
        let (mut a, input) = agg();
        let mut txn = Txn::new(Store::memory());
        feed(&mut a, &input, &mut txn, &[(2, 1, 1)]);
        // insert and delete of the same row in one chunk: nothing changes
        let out = feed(&mut a, &input, &mut txn, &[(2, 7, 1), (2, 7, -1)]);
        assert!(out.is_empty());
    }

    #[test]
    fn global_aggregate_has_one_row_when_empty() {
        let input = arc_schema(vec![Field::new("v", DataType::Int64, true)]);
        let out = arc_schema(vec![
            Field::new("c", DataType::Int64, true),
            Field::new("s", DataType::Int64, true),
        ]);
        let v = col("v", &input).unwrap();
        let aggs = vec![AggCall::count_star(), AggCall::int64(AggKind::Sum, v)];
        let mut a = HashAgg::new(vec![], aggs, out, |n| 7 + n as u64).unwrap();
        let mut txn = Txn::new(Store::memory());
        let init = a.initial_output(&mut txn).unwrap().unwrap();
        assert_eq!(
            init.rows().unwrap(),
            vec![vec![i(0), ScalarValue::Int64(None)]]
        );
        let c = Chunk::from_rows(input.clone(), &[vec![i(4)]], vec![1]).unwrap();
        let o = a.process(0, c, &mut txn).unwrap();
        assert_eq!(
            o.rows().unwrap(),
            vec![vec![i(0), ScalarValue::Int64(None)], vec![i(1), i(4)]]
        );
        assert_eq!(o.weights, vec![-1, 1]);
        let c = Chunk::from_rows(input, &[vec![i(4)]], vec![-1]).unwrap();
        let o = a.process(0, c, &mut txn).unwrap();
        assert_eq!(o.rows().unwrap()[1], vec![i(0), ScalarValue::Int64(None)]);
    }
}
