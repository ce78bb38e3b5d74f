//! Materialize: keeps a view's rows, as a multiset (`encoded row → multiplicity`) under
//! the view's relation id, where queries read them. Passes its input through, so views
//! over this view see the same changelog.
//!
//! An insert-only view (its plan never deletes: Nexmark q0, q1, …) stores each inserted
//! row under its own key, `encoded row | sequence number → multiplicity` (see
//! [`RowSeq`]): a blind write instead of a read of the row's old multiplicity. Readers
//! decode a key's columns and ignore what follows them, so they see the same multiset.
//!
//! A view whose rows are a set (an aggregate's: one row per group) writes a row's
//! multiplicity, or deletes it, without reading it first.
//!
//! A `blackhole` sink's root is a Materialize that stores no rows: it counts the rows it
//! receives (inserted and deleted, with their multiplicity) in its state table, in the
//! same transaction as the sink's offsets, so the counts are exact across crashes.

use freshet_storage::{codec, keys, Txn};

use super::{add_count, change_count, encode_count, RowSeq, StateTable};
use crate::chunk::Chunk;
use crate::operator::Operator;
use crate::{sink_log, EngineError};

/// Where a view's rows go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Stored in the view's table, where queries read them (a materialized view).
    Table,
    /// Counted and dropped (a `blackhole` sink). `deletes`: whether deletes are sent too
    /// (`false` for `force_append_only`, which drops them uncounted).
    Blackhole { deletes: bool },
    /// Counted and written to the sink's outbox ([`crate::sink_log`]), from which its
    /// connector delivers them. `deletes` as for `Blackhole`.
    Log { deletes: bool },
    /// `CREATE SINK … INTO table`: counted and passed on; the coordinator writes each
    /// chunk into `table` (see `Coordinator::apply_sink_chunk`) in the same statement.
    /// While the sink is built (`staging`), its rows are kept as a view's are instead,
    /// and written into the table at once when it is done: a build that fails or is cut
    /// short by a crash leaves nothing in the table.
    IntoTable { table: u64, staging: bool },
}

/// The keys, in a sink root's state table, of its counts of inserted and deleted rows.
const SENT_INSERTS: &[u8] = b"i";
const SENT_DELETES: &[u8] = b"d";
/// The key, in a view root's state table, of the number of rows the view holds (with
/// their multiplicity), kept with every change so that nothing counts them by scanning.
const ROW_COUNT: &[u8] = b"c";

/// The root's own state table of view (or sink) `relation`.
fn root_table(relation: u64) -> StateTable {
    StateTable::new(keys::state_table_id(relation, 0, 0))
}

/// The counts blackhole sink `sink` keeps: rows inserted, rows deleted. Reads through
/// `get` (a transaction, or a snapshot).
pub fn sink_counts(
    sink: u64,
    mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, EngineError>,
) -> Result<(i64, i64), EngineError> {
    let t = root_table(sink);
    let mut read = |k: &[u8]| -> Result<i64, EngineError> {
        match get(&t.key(k))? {
            Some(v) => super::decode_count(&v),
            None => Ok(0),
        }
    };
    Ok((read(SENT_INSERTS)?, read(SENT_DELETES)?))
}

/// The key of view `view`'s row count (not operator state: `view_state` skips it).
pub fn row_count_key(view: u64) -> Vec<u8> {
    root_table(view).key(ROW_COUNT)
}

/// The number of rows view `view` holds, read through `get`; `None` for a view created
/// before the count was kept that has not changed since.
pub fn view_row_count(
    view: u64,
    mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, EngineError>,
) -> Result<Option<i64>, EngineError> {
    match get(&root_table(view).key(ROW_COUNT))? {
        Some(v) => super::decode_count(&v).map(Some),
        None => Ok(None),
    }
}

pub struct Materialize {
    relation: u64,
    /// Set for an insert-only view: rows get sequence numbers, and a delete is an
    /// internal error.
    seq: Option<RowSeq>,
    /// Set for a view whose rows are a set (`StreamNode::unique_key`): multiplicities
    /// are written without being read.
    distinct: bool,
    output: Output,
    /// The root's own state table: a sink's counts.
    own: StateTable,
}

impl Materialize {
    pub fn new(relation: u64) -> Materialize {
        Materialize {
            relation,
            seq: None,
            distinct: false,
            output: Output::Table,
            own: root_table(relation),
        }
    }

    /// Sends the rows to `output` instead of the view's table.
    pub fn output(mut self, output: Output) -> Materialize {
        self.output = output;
        self
    }

    /// Makes this an insert-only view's; `seq_table` holds its next row sequence number.
    pub fn insert_only(mut self, insert_only: bool, seq_table: u64) -> Materialize {
        self.seq = insert_only.then(|| RowSeq::new(seq_table));
        self
    }

    /// Marks a view whose rows are a set (no row is ever present twice).
    pub fn distinct(mut self, distinct: bool) -> Materialize {
        self.distinct = distinct;
        self
    }
}

impl Materialize {
    /// Adds the chunk's net rows to the view's row count. A view created before the count
    /// was kept is counted once, here, from its rows.
    fn count_rows(&mut self, chunk: &Chunk, state: &mut Txn) -> Result<(), EngineError> {
        let delta: i64 = chunk.weights.iter().sum();
        let key = self.own.key(ROW_COUNT);
        // Read each time, not cached: a statement rolled back undoes the stored count.
        let rows = match state.get(&key)? {
            Some(v) => super::decode_count(&v)?,
            None => {
                let mut n = 0i64;
                let mut bad = false;
                state.visit_prefix(&keys::rows_prefix(self.relation), |_, v| {
                    match <[u8; 8]>::try_from(v) {
                        Ok(b) => n += i64::from_be_bytes(b),
                        Err(_) => bad = true,
                    }
                    !bad
                })?;
                if bad {
                    return Err(EngineError::Internal(format!(
                        "bad stored multiplicity in view {}",
                        self.relation
                    )));
                }
                n
            }
        };
        state.put(key, encode_count(rows + delta));
        Ok(())
    }

    /// Appends the chunk's changes (its deletes only if `deletes`) to the sink's outbox.
    fn log(&mut self, chunk: &Chunk, deletes: bool, state: &mut Txn) -> Result<(), EngineError> {
        let last_key = sink_log::last_key(self.relation);
        // Read each time, not cached: a statement rolled back undoes the stored number,
        // and the next changes take the numbers it had used (no gap in the outbox).
        let mut seq = match state.get(&last_key)? {
            Some(v) => sink_log::decode_u64(&v)?,
            None => 0,
        };
        // The first change written since the last commit starts a commit.
        let mut commit_start = !state.is_written(&last_key);
        let encoded = codec::encode_rows(chunk.batch.columns(), chunk.len())?;
        let mut wrote = false;
        for (row, &w) in encoded.iter().zip(&chunk.weights) {
            if w == 0 || (w < 0 && !deletes) {
                continue;
            }
            seq += 1;
            state.put_fresh(
                sink_log::entry_key(self.relation, seq),
                sink_log::encode_entry(w, commit_start, row),
            );
            commit_start = false;
            wrote = true;
        }
        if wrote {
            state.put(last_key, seq.to_be_bytes().to_vec());
        }
        Ok(())
    }
}

impl Operator for Materialize {
    fn name(&self) -> &'static str {
        "materialize"
    }

    fn process(
        &mut self,
        _input: usize,
        chunk: Chunk,
        state: &mut Txn,
    ) -> Result<Chunk, EngineError> {
        let passed = match self.output {
            Output::Blackhole { deletes } | Output::Log { deletes } => Some(deletes),
            Output::IntoTable { staging: false, .. } => Some(true),
            _ => None,
        };
        if let Some(deletes) = passed {
            if matches!(self.output, Output::Log { .. }) {
                self.log(&chunk, deletes, state)?;
            }
            let (mut ins, mut del) = (0i64, 0i64);
            for &w in &chunk.weights {
                if w > 0 {
                    ins += w;
                } else {
                    del -= w;
                }
            }
            if ins != 0 {
                add_count(state, self.own.key(SENT_INSERTS), ins)?;
            }
            if deletes && del != 0 {
                add_count(state, self.own.key(SENT_DELETES), del)?;
            }
            return Ok(chunk);
        }
        if !matches!(self.output, Output::IntoTable { .. }) {
            self.count_rows(&chunk, state)?;
        }
        let encoded = codec::encode_rows(chunk.batch.columns(), chunk.len())?;
        if let Some(seq) = &mut self.seq {
            let prefix = keys::rows_prefix(self.relation);
            for (row, &w) in encoded.iter().zip(&chunk.weights) {
                if w <= 0 {
                    return Err(EngineError::Internal(format!(
                        "a delete reached insert-only view {}",
                        self.relation
                    )));
                }
                let mut key = Vec::with_capacity(prefix.len() + row.len() + 8);
                key.extend_from_slice(&prefix);
                key.extend_from_slice(row);
                seq.append(state, &mut key)?;
                state.put(key, encode_count(w));
            }
            seq.save(state);
            return Ok(chunk);
        }
        let prefix = keys::rows_prefix(self.relation);
        for (row, w) in encoded.iter().zip(&chunk.weights) {
            let mut key = Vec::with_capacity(prefix.len() + row.len());
            key.extend_from_slice(&prefix);
            key.extend_from_slice(row);
            let (_, new) = change_count(state, key, *w, self.distinct)?;
            if new < 0 {
                return Err(EngineError::Internal(format!(
                    "view {} would hold a row {} times",
                    self.relation, new
                )));
            }
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;
    use freshet_storage::{decode_relation, keys, RowLayout, Store, Txn};

    use super::*;
    use crate::chunk::arc_schema;

    #[test]
    fn keeps_rows_as_a_multiset() {
        let schema = arc_schema(vec![Field::new("a", DataType::Utf8, true)]);
        let s = |v: &str| vec![ScalarValue::Utf8(Some(v.into()))];
        let mut m = Materialize::new(9);
        let mut txn = Txn::new(Store::memory());
        let c = Chunk::from_rows(schema.clone(), &[s("x"), s("x"), s("y")], vec![1, 1, 1]).unwrap();
        let out = m.process(0, c, &mut txn).unwrap();
        assert_eq!(out.len(), 3, "input passes through");
        let c = Chunk::from_rows(schema.clone(), &[s("x"), s("y")], vec![-1, -1]).unwrap();
        m.process(0, c, &mut txn).unwrap();
        let prefix = keys::rows_prefix(9);
        let rows = decode_relation(
            txn.scan_prefix(&prefix).unwrap(),
            prefix.len(),
            &[DataType::Utf8],
            RowLayout::Multiset,
        )
        .unwrap();
        assert_eq!(rows, vec![(s("x"), 1)]);
        // Deleting a row that is not there is an internal error, not a silent negative count.
        let c = Chunk::from_rows(schema, &[s("z")], vec![-1]).unwrap();
        assert!(m.process(0, c, &mut txn).is_err());
    }

    /// An insert-only view stores each row under its own key; readers see the same
    /// multiset, also after a restart (sequence numbers are not reused).
    #[test]
    fn insert_only_rows_keep_their_multiplicity() {
        let schema = arc_schema(vec![Field::new("a", DataType::Utf8, true)]);
        let s = |v: &str| vec![ScalarValue::Utf8(Some(v.into()))];
        let mut txn = Txn::new(Store::memory());
        let chunk = |rows: &[Vec<ScalarValue>], w: Vec<i64>| {
            Chunk::from_rows(schema.clone(), rows, w).unwrap()
        };
        let mut m = Materialize::new(9).insert_only(true, 77);
        m.process(0, chunk(&[s("x"), s("x"), s("y")], vec![1, 1, 2]), &mut txn)
            .unwrap();
        // A restart: the next sequence number comes from state.
        let mut m = Materialize::new(9).insert_only(true, 77);
        m.process(0, chunk(&[s("x")], vec![1]), &mut txn).unwrap();
        let prefix = keys::rows_prefix(9);
        let pairs = txn.scan_prefix(&prefix).unwrap();
        assert_eq!(pairs.len(), 4, "one key per inserted row");
        let mut rows = std::collections::BTreeMap::new();
        for (row, n) in
            decode_relation(pairs, prefix.len(), &[DataType::Utf8], RowLayout::Multiset).unwrap()
        {
            *rows.entry(format!("{row:?}")).or_insert(0) += n;
        }
        assert_eq!(
            rows.into_values().collect::<Vec<_>>(),
            vec![3, 2],
            "x three times, y twice"
        );
        assert!(m.process(0, chunk(&[s("x")], vec![-1]), &mut txn).is_err());
    }

    /// A sink's outbox marks the first change of each commit (keyed sinks fold per
    /// commit), also when a statement that wrote changes is rolled back.
    #[test]
    fn the_outbox_marks_where_each_commit_starts() {
        let schema = arc_schema(vec![Field::new("a", DataType::Int64, true)]);
        let chunk = |vals: &[i64], w: Vec<i64>| {
            let rows: Vec<_> = vals
                .iter()
                .map(|v| vec![ScalarValue::Int64(Some(*v))])
                .collect();
            Chunk::from_rows(schema.clone(), &rows, w).unwrap()
        };
        let store = Store::memory();
        let mut txn = Txn::new(store.clone());
        let mut m = Materialize::new(9).output(Output::Log { deletes: true });
        m.process(0, chunk(&[1, 2], vec![1, 1]), &mut txn).unwrap();
        m.process(0, chunk(&[1], vec![-1]), &mut txn).unwrap();
        txn.commit().unwrap();
        // A statement that writes and is rolled back, then one that stays.
        txn.begin_statement();
        m.process(0, chunk(&[7], vec![1]), &mut txn).unwrap();
        txn.rollback_statement();
        m.process(0, chunk(&[3], vec![1]), &mut txn).unwrap();
        txn.commit().unwrap();
        let changes = sink_log::read(&store, 9, 0, 100, &[DataType::Int64]).unwrap();
        let got: Vec<_> = changes
            .iter()
            .map(|c| (c.seq, c.weight, c.commit_start))
            .collect();
        assert_eq!(
            got,
            vec![(1, 1, true), (2, 1, false), (3, -1, false), (4, 1, true)]
        );
    }
}
