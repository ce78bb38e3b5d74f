//! Exact counts of each view's operator state entries, kept by every commit, so that
//! metrics and system tables never count them by scanning.
//!
//! A commit knows what it changes but not what was there: its change to a view's count is
//! the operator state keys live after it ([`crate::Txn`]'s buffer) less those live before
//! it. Before it, a buffered key was live if it was committed, unless the buffer marked it
//! fresh (known absent) or a range deletion of the same commit covers it; what range
//! deletions remove is counted by walking the committed keys in them, except where a range
//! covers a whole view (a DROP, a rebuilt view): its count starts again from zero. The
//! committed keys are read in one batched lookup per commit, most of them from blocks the
//! operators just read.
//!
//! The count lives in the view's root state table (`keys::state_entries_key`), so it goes
//! with the view. A view created by a build that did not keep it gets it, by one scan of
//! its state, at its first commit.

use std::collections::{BTreeMap, BTreeSet};

use crate::buffer::WriteBuffer;
use crate::{keys, prefix_end, Reader, Result};

/// The operator state key space: `[0x03, 0x04)`.
const SPACE: (&[u8], &[u8]) = (&[0x03], &[0x04]);

/// The writes that bring the counts of the views a commit changes up to date: the commit
/// deletes `ranges`, then writes `pending`; `reader` reads what is committed.
pub(crate) fn count_writes(
    pending: &WriteBuffer,
    ranges: &[(Vec<u8>, Vec<u8>)],
    reader: &dyn Reader,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let ranges = merged(ranges);
    let mut delta: BTreeMap<u64, i64> = BTreeMap::new();
    // Views whose whole state a range deletes: their count starts from zero.
    let mut reset = BTreeSet::new();
    for (s, e) in &ranges {
        count_range(reader, s, e, &mut delta, &mut reset)?;
    }
    // Views with buffered operator state: they get a count even when it nets to zero.
    let mut touched = BTreeSet::new();
    let mut unknown: Vec<&[u8]> = Vec::new();
    for (k, value, fresh) in pending.range_fresh(SPACE.0, SPACE.1) {
        let Some(view) = keys::operator_state_view(k) else {
            continue;
        };
        touched.insert(view);
        *delta.entry(view).or_default() += i64::from(value.is_some());
        if !fresh && !crate::hidden(&ranges, k) {
            unknown.push(k);
        }
    }
    for (k, live) in unknown.iter().zip(reader.exist(&unknown)?) {
        if live {
            if let Some(view) = keys::operator_state_view(k) {
                *delta.entry(view).or_default() -= 1;
            }
        }
    }
    let mut out = Vec::new();
    for (view, d) in delta {
        let wiped = reset.contains(&view);
        if wiped && !touched.contains(&view) {
            // Dropped (or emptied): the count went with the rest.
            continue;
        }
        let before = if wiped {
            0
        } else {
            match reader.get(&keys::state_entries_key(view))? {
                Some(v) => decode(&v),
                None => scan_count(reader, view)?,
            }
        };
        out.push((
            keys::state_entries_key(view),
            (before + d).to_be_bytes().to_vec(),
        ));
    }
    Ok(out)
}

/// The count of view `view`'s operator state entries, read through `reader`; `None` for a
/// view created by a build that did not keep it, unchanged since.
pub fn state_entries(reader: &dyn Reader, view: u64) -> Result<Option<i64>> {
    Ok(reader
        .get(&keys::state_entries_key(view))?
        .map(|v| decode(&v)))
}

/// View `view`'s operator state entries, counted by reading them.
pub fn scan_count(reader: &dyn Reader, view: u64) -> Result<i64> {
    let mut n = 0;
    reader.visit_prefix(&keys::view_state_prefix(view), &mut |k, _| {
        n += i64::from(keys::operator_state_view(k).is_some());
        true
    })?;
    Ok(n)
}

fn decode(v: &[u8]) -> i64 {
    <[u8; 8]>::try_from(v).map_or(0, i64::from_be_bytes)
}

/// `ranges` sorted, overlapping ones joined: a key in two of them is deleted once.
fn merged(ranges: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(sorted.len());
    for (s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1 => {
                if e > last.1 {
                    last.1 = e;
                }
            }
            _ => out.push((s, e)),
        }
    }
    out
}

/// Subtracts the committed operator state keys in `[start, end)` from their views'
/// counts, view by view; a view the range covers whole goes to `reset` unread.
fn count_range(
    reader: &dyn Reader,
    start: &[u8],
    end: &[u8],
    delta: &mut BTreeMap<u64, i64>,
    reset: &mut BTreeSet<u64>,
) -> Result<()> {
    let end = end.min(SPACE.1);
    let mut cur = start.max(SPACE.0).to_vec();
    while cur.as_slice() < end {
        // The next committed key in the range, and the view it belongs to.
        let mut next = None;
        reader.walk(&cur, Some(end), false, &mut |k, _| {
            next = Some(k.to_vec());
            false
        })?;
        let Some(k) = next else {
            break;
        };
        if k.len() < 5 {
            cur = k;
            cur.push(0);
            continue;
        }
        let view_prefix = &k[..5];
        let view = u64::from(u32::from_be_bytes([k[1], k[2], k[3], k[4]]));
        let view_end = prefix_end(view_prefix).unwrap_or_else(|| SPACE.1.to_vec());
        let seg_end = view_end.as_slice().min(end).to_vec();
        if start <= view_prefix && view_end.as_slice() <= end {
            reset.insert(view);
        } else {
            let mut n = 0;
            reader.walk(&k, Some(&seg_end), false, &mut |k, _| {
                n += i64::from(keys::operator_state_view(k).is_some());
                true
            })?;
            // A range that deletes the count itself (not the whole view) makes the commit
            // write it again.
            let count_key = keys::state_entries_key(view);
            let deletes_count = start <= count_key.as_slice()
                && count_key.as_slice() < end
                && reader.get(&count_key)?.is_some();
            if n > 0 || deletes_count {
                *delta.entry(view).or_default() -= n;
            }
        }
        cur = seg_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{keys, Store, Txn};

    /// A key of state table `n` of operator `op` of view `view`.
    fn key(view: u64, op: u16, n: u16, rest: &[u8]) -> Vec<u8> {
        let mut k = keys::state_prefix(keys::state_table_id(view, op, n));
        k.extend_from_slice(rest);
        k
    }

    fn counts(t: &Txn, view: u64) -> (Option<i64>, i64) {
        t.store().read_snapshot(|r| {
            (
                super::state_entries(r, view).unwrap(),
                super::scan_count(r, view).unwrap(),
            )
        })
    }

    /// Random puts (plain and fresh), deletes, statements rolled back, range deletions
    /// within a table, across tables and over whole views, of operator state and of the
    /// keys that are not (the root's table, source bookkeeping) of three views: after
    /// every commit each view's count equals its state counted by reading it.
    #[test]
    fn counts_equal_a_scan_after_every_commit() {
        let stores = [1u64, 2, 3, 4]
            .map(|s| (s, Store::memory()))
            .into_iter()
            .chain([(5, {
                let dir = tempfile::tempdir().unwrap();
                Store::open(&dir.keep()).unwrap()
            })]);
        for (n, store) in stores {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(n);
            let mut rnd = move |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            let mut t = Txn::new(store);
            let random_key = |rnd: &mut dyn FnMut(u64) -> u64| {
                let op = [0, 1, 1, 2, 3, u16::MAX][rnd(6) as usize];
                key(1 + rnd(3), op, rnd(2) as u16, &[rnd(8) as u8, rnd(3) as u8])
            };
            let committed =
                |t: &Txn, k: &[u8]| t.store().read_latest(|r| r.get(k)).unwrap().is_some();
            let mut commits = 0;
            for step in 0..6000u64 {
                match rnd(20) {
                    0 | 1 => {
                        t.commit().unwrap();
                        commits += 1;
                        for view in 1..=3 {
                            let (count, scanned) = counts(&t, view);
                            assert_eq!(count.unwrap_or(0), scanned, "view {view}, step {step}");
                        }
                    }
                    2..=8 => t.put(random_key(&mut rnd), vec![step as u8]),
                    9 | 10 => {
                        let k = random_key(&mut rnd);
                        if !committed(&t, &k) {
                            t.put_fresh(k, vec![1]);
                        }
                    }
                    11..=13 => t.delete(random_key(&mut rnd)),
                    14 => {
                        t.begin_statement();
                        for _ in 0..rnd(4) {
                            t.put(random_key(&mut rnd), vec![2]);
                            t.delete(random_key(&mut rnd));
                        }
                        t.rollback_statement();
                    }
                    15 | 16 => {
                        // Within one view: part of a table, or across tables.
                        let (a, b) = (random_key(&mut rnd), random_key(&mut rnd));
                        let (a, b) = if a <= b { (a, b) } else { (b, a) };
                        t.delete_range(&a, &b).unwrap();
                    }
                    17 => {
                        // A whole view, as DROP does, sometimes with writes after it.
                        let p = keys::view_state_prefix(1 + rnd(3));
                        t.delete_range(&p, &crate::prefix_end(&p).unwrap()).unwrap();
                    }
                    18 => {
                        // Across views.
                        let (a, b) = (keys::view_state_prefix(1), random_key(&mut rnd));
                        t.delete_range(&a, &b).unwrap();
                    }
                    _ => {
                        let k = random_key(&mut rnd);
                        let _ = t.get(&k).unwrap();
                    }
                }
            }
            assert!(commits > 300);
        }
    }

    /// A view written by a build that kept no count gets it at its first commit.
    #[test]
    fn a_view_without_a_count_is_counted_once() {
        let store = Store::memory();
        let old: Vec<_> = (0..5u8)
            .map(|i| (key(7, 1, 0, &[i]), Some(vec![i])))
            .chain([(key(7, 0, 0, b"c"), Some(vec![0; 8]))])
            .collect();
        store.write_outside(&[], old).unwrap();
        let mut t = Txn::new(store);
        assert_eq!(counts(&t, 7), (None, 5));
        t.put(key(7, 2, 0, b"x"), vec![1]);
        t.put(key(7, 1, 0, &[0]), vec![9]);
        t.commit().unwrap();
        assert_eq!(counts(&t, 7), (Some(6), 6));
    }
}
