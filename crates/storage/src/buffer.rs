//! The write buffer of a [`crate::Txn`]: the writes of one checkpoint, before they reach
//! RocksDB, in key order.
//!
//! It is an ordered map, since operators walk key ranges of what they just wrote, split
//! by key prefix: one map per state table or relation (a key's first [`PREFIX`] bytes,
//! its key space and table id), kept in prefix order. A table's map holds only its own
//! keys, so an insert searches a smaller tree; and cutting a range out of one table
//! (a window join freeing its oldest windows, which lead its keys) splits that table's
//! map alone, in logarithmic time when the range starts at the table's first key,
//! instead of rebuilding the whole buffer around the range.
//!
//! With a checkpoint's worth of writes, comparing whole keys on every insert did most of
//! the engine's work in Nexmark q7: the keys of one state table share a long prefix, and
//! each comparison read both keys from the heap. Each key therefore carries the
//! [`WORDS`] × 8 bytes after its table prefix as numbers, so most comparisons inside a
//! table's map settle on integers without following a pointer.
//!
//! A key put while known to be absent from committed state (a row under a new sequence
//! number) is marked fresh: deleting it before the commit drops the entry, so neither the
//! row nor a tombstone reaches RocksDB. An interval join's rows often live shorter than a
//! checkpoint.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

const WORDS: usize = 4;

/// The length of the prefix keys are grouped by: the key-space byte and a relation or
/// state table id (see `keys`). Shorter keys (the catalog's) are groups of their own.
const PREFIX: usize = 9;

/// The group of `key`: its first [`PREFIX`] bytes (all of a shorter key). Groups compare
/// as byte strings, and every key of a group starts with it, so groups in order hold
/// their keys in order.
fn group(key: &[u8]) -> &[u8] {
    &key[..key.len().min(PREFIX)]
}

/// A buffered key: its bytes, and the bytes after its group prefix (zero-padded) as
/// big-endian numbers. Within a group, ordered as the bytes are.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    words: [u64; WORDS],
    bytes: Vec<u8>,
}

impl Key {
    fn new(bytes: Vec<u8>) -> Key {
        let mut words = [0u64; WORDS];
        let rest = &bytes[group(&bytes).len()..];
        for (i, w) in words.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            let chunk = rest.get(i * 8..).unwrap_or(&[]);
            let n = chunk.len().min(8);
            b[..n].copy_from_slice(&chunk[..n]);
            *w = u64::from_be_bytes(b);
        }
        Key { words, bytes }
    }
}

impl Ord for Key {
    /// Only keys of one group are compared: their prefixes are equal.
    fn cmp(&self, other: &Key) -> Ordering {
        // Equal words: the first `n` bytes of both keys are equal (zero padding only
        // begins past a key's end), so the rest decides.
        self.words.cmp(&other.words).then_with(|| {
            let n = (PREFIX + WORDS * 8)
                .min(self.bytes.len())
                .min(other.bytes.len());
            self.bytes[n..].cmp(&other.bytes[n..])
        })
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Lookups by plain bytes compare bytes; within a group `Key`'s order is the bytes'
/// order.
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.bytes
    }
}

/// `None` marks a delete.
pub(crate) type Value = Option<Vec<u8>>;

/// A buffered write.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    value: Value,
    /// The key is absent from committed state.
    fresh: bool,
}

/// One group's buffered writes.
type Group = BTreeMap<Key, Entry>;

/// A group's prefix (see [`group`]), held inline: finding or adding a key's group
/// allocates nothing. Ordered as its bytes are.
#[derive(Clone, Copy, Default)]
struct Prefix {
    bytes: [u8; PREFIX],
    len: u8,
}

impl Prefix {
    fn of(key: &[u8]) -> Prefix {
        let g = group(key);
        let mut p = Prefix::default();
        p.bytes[..g.len()].copy_from_slice(g);
        // `group` is at most PREFIX (9) bytes long.
        p.len = g.len() as u8;
        p
    }
}

impl Borrow<[u8]> for Prefix {
    fn borrow(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl PartialEq for Prefix {
    fn eq(&self, other: &Prefix) -> bool {
        Borrow::<[u8]>::borrow(self) == Borrow::<[u8]>::borrow(other)
    }
}

impl Eq for Prefix {}

impl Ord for Prefix {
    fn cmp(&self, other: &Prefix) -> Ordering {
        Borrow::<[u8]>::borrow(self).cmp(Borrow::<[u8]>::borrow(other))
    }
}

impl PartialOrd for Prefix {
    fn partial_cmp(&self, other: &Prefix) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
pub(crate) struct WriteBuffer {
    /// By group prefix (see [`group`]); no group is empty.
    groups: BTreeMap<Prefix, Group>,
    /// Buffered entries in all groups.
    len: usize,
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value> {
        self.groups
            .get(group(key))
            .and_then(|g| g.get(key))
            .map(|e| &e.value)
    }

    /// The map of `key`'s group, created if absent.
    fn group_mut(&mut self, key: &[u8]) -> &mut Group {
        self.groups.entry(Prefix::of(key)).or_default()
    }

    /// Removes `key`'s group if it is empty.
    fn drop_if_empty(&mut self, key: &[u8]) {
        let prefix = group(key);
        if self.groups.get(prefix).is_some_and(Group::is_empty) {
            self.groups.remove(prefix);
        }
    }

    /// Buffers `value` for `key` (`fresh`: the caller knows the key is absent from
    /// committed state); returns what was buffered before (`None`: nothing). Deleting a
    /// fresh key removes its entry instead of buffering a tombstone.
    pub(crate) fn set(&mut self, key: Vec<u8>, value: Value, fresh: bool) -> Option<Entry> {
        use std::collections::btree_map::Entry as Slot;
        let g = self.group_mut(&key);
        match g.entry(Key::new(key)) {
            Slot::Occupied(o) if value.is_none() && o.get().fresh => {
                let (k, old) = o.remove_entry();
                self.len -= 1;
                self.drop_if_empty(&k.bytes);
                Some(old)
            }
            Slot::Occupied(mut o) => {
                // Still absent from committed state if it was when first buffered.
                let fresh = fresh || o.get().fresh;
                Some(o.insert(Entry { value, fresh }))
            }
            Slot::Vacant(v) => {
                v.insert(Entry { value, fresh });
                self.len += 1;
                None
            }
        }
    }

    /// Puts back what [`WriteBuffer::set`] returned (undoing it).
    pub(crate) fn restore(&mut self, key: Vec<u8>, old: Option<Entry>) {
        match old {
            Some(e) => {
                if self.group_mut(&key).insert(Key::new(key), e).is_none() {
                    self.len += 1;
                }
            }
            None => {
                let removed = self
                    .groups
                    .get_mut(group(&key))
                    .and_then(|g| g.remove(key.as_slice()));
                if removed.is_some() {
                    self.len -= 1;
                    self.drop_if_empty(&key);
                }
            }
        }
    }

    /// Takes the buffered entries with `start <= key < end` out of the buffer, in key
    /// order. Each group the range touches is split around it and joined again, which
    /// costs that group's size at most (a search, when the range starts at the group's
    /// first key), instead of a search per key.
    pub(crate) fn take_range(&mut self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        let prefixes: Vec<Prefix> = self
            .groups
            .range::<[u8], _>((Bound::Included(group(start)), Bound::Excluded(end)))
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in prefixes {
            let Some(g) = self.groups.get_mut(&p) else {
                continue;
            };
            let mut rest = g.split_off(end);
            let taken = g.split_off(start);
            g.append(&mut rest);
            if g.is_empty() {
                self.groups.remove(&p);
            }
            self.len -= taken.len();
            out.extend(taken.into_iter().map(|(k, e)| (k.bytes, e)));
        }
        out
    }

    /// The buffered entries with `start <= key < end` (no end: to the last key), in
    /// ascending key order.
    pub(crate) fn range<'a>(
        &'a self,
        start: &'a [u8],
        end: Option<&'a [u8]>,
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a Value)> + 'a {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        // A group before `start`'s holds only smaller keys; one at or after `end`, only
        // larger ones.
        self.groups
            .range::<[u8], _>((Bound::Included(group(start)), upper))
            .flat_map(move |(_, g)| g.range::<[u8], _>((Bound::Included(start), upper)))
            .map(|(k, e)| (k.bytes.as_slice(), &e.value))
    }

    /// The buffered entries with `start <= key < end`, in key order, each with whether
    /// it is fresh (its key absent from committed state).
    pub(crate) fn range_fresh<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a Value, bool)> + 'a {
        self.groups
            .range::<[u8], _>((Bound::Included(group(start)), Bound::Excluded(end)))
            .flat_map(move |(_, g)| {
                g.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            })
            .map(|(k, e)| (k.bytes.as_slice(), &e.value, e.fresh))
    }

    /// Moves the groups whose prefix lies in `[start, end)` into a new buffer: whole
    /// groups, so `start` and `end` must fall on group boundaries (a view's rows or
    /// state prefix, say).
    pub(crate) fn split_groups(&mut self, start: &[u8], end: &[u8]) -> WriteBuffer {
        let prefixes: Vec<Prefix> = self
            .groups
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(p, _)| *p)
            .collect();
        let mut out = WriteBuffer::default();
        for p in prefixes {
            if let Some(g) = self.groups.remove(&p) {
                self.len -= g.len();
                out.len += g.len();
                out.groups.insert(p, g);
            }
        }
        out
    }

    /// Moves every entry of `other` into this buffer (a key buffered in both keeps
    /// `other`'s entry).
    pub(crate) fn append(&mut self, other: WriteBuffer) {
        for (p, mut g) in other.groups {
            match self.groups.get_mut(&p) {
                None => {
                    self.len += g.len();
                    self.groups.insert(p, g);
                }
                Some(mine) => {
                    let before = mine.len();
                    mine.append(&mut g);
                    self.len += mine.len() - before;
                }
            }
        }
    }

    /// Every buffered entry in key order, emptying the buffer.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Value)> {
        self.len = 0;
        std::mem::take(&mut self.groups)
            .into_values()
            .flatten()
            .map(|(k, e)| (k.bytes, e.value))
    }

    /// The number of buffered entries, and the total length of their keys and values.
    pub(crate) fn size(&self) -> (usize, usize) {
        let bytes = self
            .groups
            .values()
            .flatten()
            .map(|(k, e)| k.bytes.len() + e.value.as_ref().map_or(0, Vec::len))
            .sum();
        (self.len, bytes)
    }
}
