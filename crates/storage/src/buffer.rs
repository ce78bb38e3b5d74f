//! The write buffer of a [`crate::Txn`]: the writes of one checkpoint, before they reach
//! RocksDB, in key order.
//!
//! It is an ordered map, since operators walk key ranges of what they just wrote. With a
//! checkpoint's worth of writes, comparing whole keys on every insert did most of the
//! engine's work in Nexmark q7: the keys of one state table share a long prefix, and each
//! comparison read both keys from the heap. Each key therefore carries its first
//! [`WORDS`] × 8 bytes as numbers, so most comparisons inside the map's nodes settle on
//! integers without following a pointer.
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

/// A buffered key: its bytes, and their first bytes (zero-padded) as big-endian numbers.
/// Ordered as the bytes are.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    words: [u64; WORDS],
    bytes: Vec<u8>,
}

impl Key {
    fn new(bytes: Vec<u8>) -> Key {
        let mut words = [0u64; WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            let chunk = bytes.get(i * 8..).unwrap_or(&[]);
            let n = chunk.len().min(8);
            b[..n].copy_from_slice(&chunk[..n]);
            *w = u64::from_be_bytes(b);
        }
        Key { words, bytes }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        // Equal words: the first `n` bytes of both keys are equal (zero padding only
        // begins past a key's end), so the rest decides.
        self.words.cmp(&other.words).then_with(|| {
            let n = (WORDS * 8).min(self.bytes.len()).min(other.bytes.len());
            self.bytes[n..].cmp(&other.bytes[n..])
        })
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Lookups by plain bytes compare bytes; `Key`'s order is the bytes' order.
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

#[derive(Default)]
pub(crate) struct WriteBuffer {
    map: BTreeMap<Key, Entry>,
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value> {
        self.map.get(key).map(|e| &e.value)
    }

    /// Buffers `value` for `key` (`fresh`: the caller knows the key is absent from
    /// committed state); returns what was buffered before (`None`: nothing). Deleting a
    /// fresh key removes its entry instead of buffering a tombstone.
    pub(crate) fn set(&mut self, key: Vec<u8>, value: Value, fresh: bool) -> Option<Entry> {
        use std::collections::btree_map::Entry as Slot;
        match self.map.entry(Key::new(key)) {
            Slot::Occupied(o) if value.is_none() && o.get().fresh => Some(o.remove()),
            Slot::Occupied(mut o) => {
                // Still absent from committed state if it was when first buffered.
                let fresh = fresh || o.get().fresh;
                Some(o.insert(Entry { value, fresh }))
            }
            Slot::Vacant(v) => {
                v.insert(Entry { value, fresh });
                None
            }
        }
    }

    /// Puts back what [`WriteBuffer::set`] returned (undoing it).
    pub(crate) fn restore(&mut self, key: Vec<u8>, old: Option<Entry>) {
        match old {
            Some(e) => {
                self.map.insert(Key::new(key), e);
            }
            None => {
                self.map.remove(key.as_slice());
            }
        }
    }

    /// The number of buffered entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Takes the buffered entries with `start <= key < end` out of the buffer, in key
    /// order. It splits the map around the range and joins the rest again, which costs
    /// the size of the buffer once, instead of a search per key.
    pub(crate) fn take_range(&mut self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        let mut taken = self.map.split_off(start);
        let mut rest = taken.split_off(end);
        self.map.append(&mut rest);
        taken.into_iter().map(|(k, e)| (k.bytes, e)).collect()
    }

    /// The buffered entries with `start <= key < end` (no end: to the last key), in
    /// ascending key order.
    pub(crate) fn range<'a>(
        &'a self,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a Value)> + 'a {
        self.map
            .range::<[u8], _>((
                Bound::Included(start),
                end.map_or(Bound::Unbounded, Bound::Excluded),
            ))
            .map(|(k, e)| (k.bytes.as_slice(), &e.value))
    }

    /// Every buffered entry in key order, emptying the buffer.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Value)> {
        std::mem::take(&mut self.map)
            .into_iter()
            .map(|(k, e)| (k.bytes, e.value))
    }

    /// The number of buffered entries, and the total length of their keys and values.
    pub(crate) fn size(&self) -> (usize, usize) {
        let bytes = self
            .map
            .iter()
            .map(|(k, e)| k.bytes.len() + e.value.as_ref().map_or(0, Vec::len))
            .sum();
        (self.map.len(), bytes)
    }
}
