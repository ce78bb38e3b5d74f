//! Storage: everything Freshet persists lives in one RocksDB database in the data directory.
//!
//! Key spaces (first byte of every key, see [`keys`]):
//! - `0x01` catalog (one JSON document, written with the changes that go with it);
//! - `0x02` rows of tables and views, `relation id | encoded key`;
//! - `0x03` operator state, `state table id | encoded key`.
//!
//! The engine is the only writer. It buffers its writes in a [`Txn`] (reads see the buffer
//! on top of the committed data) and commits them in one synced RocksDB write batch: that
//! batch is the unit of durability and atomicity (a checkpoint). Queries read committed
//! data through [`Store::read_snapshot`], so they never see half of a checkpoint.
//!
//! [`Store::memory`] is an in-memory backend with the same behaviour, for unit tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

mod buffer;
pub mod codec;
mod entry_count;
pub mod jsonb;
pub mod keys;

pub use entry_count::{scan_count as scan_state_entries, state_entries};

use buffer::WriteBuffer;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the data directory is not writable ({}): the database was closed after a failed write and opens again once it is", if *.disk_full { "disk full" } else { "I/O error" })]
    Unavailable { disk_full: bool },
    #[error("I/O error in the data directory: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Whether the error is the disk (or quota) being full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Rocks(e) => disk_full_message(e.as_ref()),
            StorageError::Io(e) => disk_full_message(&e.to_string()),
            StorageError::Unavailable { disk_full } => *disk_full,
            _ => false,
        }
    }
}

fn disk_full_message(m: &str) -> bool {
    m.contains("No space left on device") || m.contains("Disk quota exceeded")
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone)]
enum Backend {
    Rocks(Arc<Rocks>),
    Memory(Arc<Mutex<Map>>),
}

/// The RocksDB database, which can be closed and opened again: once a write has failed
/// (a full disk, an I/O error), RocksDB refuses every later write until it is reopened,
/// so the next write after a failure reopens it first (see [`Store::write`]).
struct Rocks {
    path: std::path::PathBuf,
    /// `None` only while reopening failed (say, the disk is still full): reads then
    /// fail with [`StorageError::Unavailable`] until a write reopens it.
    db: std::sync::RwLock<Option<rocksdb::DB>>,
    /// A write failed since the database was opened.
    failed: std::sync::atomic::AtomicBool,
    /// The last failure was a full disk.
    disk_full: std::sync::atomic::AtomicBool,
}

/// Free space a reopen wants first: RocksDB replays its log into a new memtable file and
/// writes a new log and manifest.
const REOPEN_PROBE_BYTES: usize = 4 << 20;

impl Rocks {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<rocksdb::DB>> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    fn note_failure(&self, e: &StorageError) {
        use std::sync::atomic::Ordering;
        self.failed.store(true, Ordering::SeqCst);
        self.disk_full.store(e.is_disk_full(), Ordering::SeqCst);
    }

    /// After a failed write: once the data directory takes writes again (a probe file of
    /// [`REOPEN_PROBE_BYTES`] can be written), closes the database (waiting for its
    /// readers) and opens it again. A no-op while no write has failed.
    fn recover(&self) -> Result<()> {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let probe = self.path.join("freshet-space-probe");
        let written = std::fs::File::create(&probe).and_then(|mut f| {
            f.write_all(&vec![0u8; REOPEN_PROBE_BYTES])?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        if let Err(e) = written {
            let e = StorageError::Io(e);
            self.note_failure(&e);
            return Err(e);
        }
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        drop(slot.take());
        match rocksdb::DB::open(&rocks_options(), &self.path) {
            Ok(db) => {
                *slot = Some(db);
                self.failed.store(false, Ordering::SeqCst);
                tracing::info!(path = %self.path.display(), "the database was reopened after a failed write");
                Ok(())
            }
            Err(e) => {
                let e = StorageError::from(e);
                self.note_failure(&e);
                Err(e)
            }
        }
    }

    fn unavailable(&self) -> StorageError {
        StorageError::Unavailable {
            disk_full: self.disk_full.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

/// A consistent read-only view of committed data.
pub trait Reader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Whether each of `keys` (in key order) is present.
    fn exist(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
        keys.iter().map(|k| Ok(self.get(k)?.is_some())).collect()
    }
    /// All pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.visit_prefix(prefix, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }
    /// All pairs with `start <= key < end`, in key order.
    fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if start < end {
            self.walk(start, Some(end), false, &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                true
            })?;
        }
        Ok(out)
    }
    /// Calls `f` with the pairs with `start <= key < end` (no end: to the last key), in
    /// key order (descending with `rev`), until it returns false: reads only as far as
    /// needed.
    fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rev: bool,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
    /// [`Reader::walk`] over the keys starting with `prefix`.
    fn visit(
        &self,
        prefix: &[u8],
        rev: bool,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let end = prefix_end(prefix);
        self.walk(prefix, end.as_deref(), rev, f)
    }
    /// [`Reader::visit`] in ascending order.
    fn visit_prefix(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        self.visit(prefix, false, f)
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: there is none,
/// the prefix is all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Reads RocksDB either at a snapshot (queries) or at the latest committed state (the
/// engine, the only writer, whose reads need no snapshot: nothing commits under them).
struct RocksReader<'a> {
    db: &'a rocksdb::DB,
    snap: Option<rocksdb::Snapshot<'a>>,
}

impl RocksReader<'_> {
    fn opts(&self) -> rocksdb::ReadOptions {
        let mut o = rocksdb::ReadOptions::default();
        if let Some(s) = &self.snap {
            o.set_snapshot(s);
        }
        o
    }
}

impl Reader for RocksReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_opt(key, &self.opts())?)
    }
    fn exist(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
        // One batched lookup (RocksDB's MultiGet), not a read per key.
        self.db
            .multi_get_opt(keys, &self.opts())
            .into_iter()
            .map(|r| Ok(r?.is_some()))
            .collect()
    }
    fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rev: bool,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let mut o = self.opts();
        o.set_iterate_lower_bound(start.to_vec());
        if let Some(end) = end {
            o.set_iterate_upper_bound(end.to_vec());
        }
        let mode = if rev {
            rocksdb::IteratorMode::End
        } else {
            rocksdb::IteratorMode::Start
        };
        for kv in self.db.iterator_opt(mode, o) {
            let (k, v) = kv?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

/// The options Freshet opens RocksDB with.
fn rocks_options() -> rocksdb::Options {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.increase_parallelism(2);
    // Operators read state by point lookups, most of them for keys that do not exist
    // yet (a new group, a new row): a Bloom filter answers those without reading data
    // blocks. A larger block cache keeps hot state blocks in memory.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(128 << 20));
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Partitioned index and filters: a lookup loads the 4 KiB partition it needs, not a
    // file's whole filter (a megabyte or more once a relation has millions of keys). With
    // whole filters, a scan of a large table (a view being built over it) pushed them out
    // of the cache, and every lookup beside it read and checksummed one from disk again:
    // a 10 M-row backfill ran at ~11 K rows/s. The top-level index and filter stay pinned,
    // and the partitions are cached with high priority.
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(64 << 20);
    opts.set_max_write_buffer_number(3);
    opts
}

/// What reads see while the database is closed.
struct Unavailable {
    disk_full: bool,
}

impl Unavailable {
    fn err(&self) -> StorageError {
        StorageError::Unavailable {
            disk_full: self.disk_full,
        }
    }
}

impl Reader for Unavailable {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>> {
        Err(self.err())
    }
    fn walk(
        &self,
        _: &[u8],
        _: Option<&[u8]>,
        _: bool,
        _: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        Err(self.err())
    }
}

struct MemReader<'a> {
    map: &'a Map,
}

impl Reader for MemReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }
    fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rev: bool,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if end.is_some_and(|e| e <= start) {
            return Ok(());
        }
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        let range = self.map.range::<[u8], _>((Bound::Included(start), end));
        let pairs: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for (k, v) in pairs {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
}

/// The layout of stored rows and operator state this build reads and writes. Bump it
/// whenever a change makes data written by an earlier build read differently (key
/// layouts, value encodings, operator state tables); a data directory of another format
/// is then refused at startup instead of misread.
///
/// 1: the first versioned format (rows of insert-only join inputs and views under
///    sequence numbers, running min/max in the accumulator, join time indexes over
///    updating inputs).
/// 2: equal subplans of a view are built once, which renumbers the operators (and so
///    the state tables) of views that have some.
/// 3: insert-only sides of interval joins bounded both ways are stored by time bucket
///    (`bucket | join key | row | sequence number`).
/// 4: a window join's keys start with its window (the equal times), wherever the ON
///    condition names them.
/// 5: a top-N over windows stores its groups window first (freed as a range when the
///    window closes); dead letters (`late_events`, `source_errors`) are indexed by
///    arrival per source, for their retention.
pub const FORMAT_VERSION: u32 = 5;

impl Store {
    /// Opens (creating if needed) the RocksDB database at `path`, and checks that its
    /// state format is this build's [`FORMAT_VERSION`] (a new database gets it).
    pub fn open(path: &Path) -> Result<Store> {
        let store = Store::open_unchecked(path)?;
        let Backend::Rocks(rocks) = &store.backend else {
            return Ok(store);
        };
        let guard = rocks.read();
        let Some(db) = guard.as_ref() else {
            return Err(rocks.unavailable());
        };
        let found = match db.get(keys::FORMAT_VERSION)? {
            Some(v) => Some(
                <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StorageError::Corrupt("bad state format version".into()))?,
            ),
            None => None,
        };
        match found {
            Some(v) if v == FORMAT_VERSION => {
                drop(guard);
                Ok(store)
            }
            None if db.iterator(rocksdb::IteratorMode::Start).next().is_none() => {
                let mut opts = rocksdb::WriteOptions::default();
                opts.set_sync(true);
                db.put_opt(keys::FORMAT_VERSION, FORMAT_VERSION.to_be_bytes(), &opts)?;
                drop(guard);
                Ok(store)
            }
            found => Err(StorageError::Unsupported(format!(
                "the state in {} has format {}, and this build of Freshet reads format \
                 {FORMAT_VERSION}; start it on a new data directory (and recreate the \
                 sources, tables and views there), or use the build that wrote it",
                path.display(),
                found.map_or("0 (written before format versions)".to_string(), |v| v
                    .to_string()),
            ))),
        }
    }

    fn open_unchecked(path: &Path) -> Result<Store> {
        let db = rocksdb::DB::open(&rocks_options(), path)?;
        Ok(Store {
            backend: Backend::Rocks(Arc::new(Rocks {
                path: path.to_path_buf(),
                db: std::sync::RwLock::new(Some(db)),
                failed: std::sync::atomic::AtomicBool::new(false),
                disk_full: std::sync::atomic::AtomicBool::new(false),
            })),
        })
    }

    /// An empty in-memory store (unit tests).
    pub fn memory() -> Store {
        Store {
            backend: Backend::Memory(Arc::new(Mutex::new(Map::new()))),
        }
    }

    /// Runs `f` over one consistent snapshot of the committed data.
    pub fn read_snapshot<R>(&self, f: impl FnOnce(&dyn Reader) -> R) -> R {
        self.read(true, f)
    }

    /// Runs `f` over the latest committed data, without taking a snapshot: for the engine,
    /// which is the only writer, so nothing commits while it reads.
    fn read_latest<R>(&self, f: impl FnOnce(&dyn Reader) -> R) -> R {
        self.read(false, f)
    }

    fn read<R>(&self, snapshot: bool, f: impl FnOnce(&dyn Reader) -> R) -> R {
        match &self.backend {
            Backend::Rocks(rocks) => {
                let guard = rocks.read();
                match guard.as_ref() {
                    Some(db) => f(&RocksReader {
                        db,
                        snap: snapshot.then(|| db.snapshot()),
                    }),
                    None => f(&Unavailable {
                        disk_full: rocks.disk_full.load(std::sync::atomic::Ordering::SeqCst),
                    }),
                }
            }
            Backend::Memory(m) => {
                let map = m.lock().unwrap_or_else(|p| p.into_inner());
                f(&MemReader { map: &map })
            }
        }
    }

    /// Applies `entries` (`None`: delete the key) atomically and durably (fsync of the
    /// WAL). `bytes`: the total length of the keys and values, to size the batch.
    /// Deletes `ranges` (`[start, end)`), then writes `entries` (`None`: a delete), in
    /// one atomic, synced batch.
    fn write(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        entries: impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
        records: usize,
        bytes: usize,
    ) -> Result<()> {
        match &self.backend {
            Backend::Rocks(rocks) => {
                rocks.recover()?;
                // Each record also holds a tag and two varint lengths.
                let mut wb = rocksdb::WriteBatch::with_capacity_bytes(bytes + 12 * records + 12);
                for (s, e) in ranges {
                    wb.delete_range(s, e);
                }
                for (k, v) in entries {
                    match v {
                        Some(v) => wb.put(k, v),
                        None => wb.delete(k),
                    }
                }
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                let guard = rocks.read();
                let db = guard.as_ref().ok_or_else(|| rocks.unavailable())?;
                if let Err(e) = db.write_opt(wb, &wo) {
                    let e = StorageError::from(e);
                    rocks.note_failure(&e);
                    return Err(e);
                }
            }
            Backend::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                for (s, e) in ranges {
                    let mut tail = map.split_off(s);
                    let mut rest = tail.split_off(e);
                    map.append(&mut rest);
                }
                for (k, v) in entries {
                    match v {
                        Some(v) => map.insert(k, v),
                        None => map.remove(&k),
                    };
                }
            }
        }
        Ok(())
    }

    /// Deletes `ranges` and writes `entries` in one synced batch, outside any [`Txn`]: for
    /// keys the engine's transaction never writes (a sink's delivery position, and the
    /// outbox entries it delivered; see `freshet_engine::sink_log`).
    pub fn write_outside(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let (records, bytes) = entries.iter().fold((ranges.len(), 0), |(n, b), (k, v)| {
            (n + 1, b + k.len() + v.as_ref().map_or(0, Vec::len))
        });
        self.write(ranges, entries.into_iter(), records, bytes)
    }

    /// After a failed write, opens the database again if the data directory takes writes
    /// again (see [`Store::write`]); a no-op while all is well. Called periodically, so
    /// that a closed database comes back even when nothing writes.
    pub fn recover(&self) -> Result<()> {
        match &self.backend {
            Backend::Rocks(rocks) => rocks.recover(),
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Stops RocksDB's flushes and compactions and waits for the running ones, so that
    /// nothing runs in its background threads when the process exits (their mutexes are
    /// destroyed with the process's statics). Called once everything is committed.
    pub fn quiesce(&self) {
        if let Backend::Rocks(rocks) = &self.backend {
            if let Some(db) = rocks.read().as_ref() {
                db.cancel_all_background_work(true);
            }
        }
    }

    /// RocksDB's estimate of the bytes each `[start, end)` range takes, in its files and
    /// its memtables (data not yet flushed counts too); the exact sizes for the
    /// in-memory store.
    pub fn approximate_sizes(&self, ranges: &[(Vec<u8>, Vec<u8>)]) -> Vec<u64> {
        match &self.backend {
            Backend::Rocks(rocks) => match rocks.read().as_ref() {
                Some(db) => approximate_sizes(db, ranges),
                None => vec![0; ranges.len()],
            },
            Backend::Memory(m) => {
                let map = m.lock().unwrap_or_else(|p| p.into_inner());
                ranges
                    .iter()
                    .map(|(s, e)| {
                        map.range(s.clone()..e.clone())
                            .map(|(k, v)| (k.len() + v.len()) as u64)
                            .sum()
                    })
                    .collect()
            }
        }
    }

    /// A RocksDB integer property (`rocksdb.cur-size-all-mem-tables`, …); `None` for the
    /// in-memory store or an unknown property.
    pub fn property(&self, name: &str) -> Option<u64> {
        match &self.backend {
            Backend::Rocks(rocks) => rocks
                .read()
                .as_ref()
                .and_then(|db| db.property_int_value(name).ok().flatten()),
            Backend::Memory(_) => None,
        }
    }

    /// Writes a RocksDB checkpoint of the database to `dir` (which must not exist): a
    /// consistent copy as of one moment, so of whole commits only, hard-linking the SST
    /// files where `dir` is on the same filesystem.
    pub fn checkpoint_to(&self, dir: &Path) -> Result<()> {
        match &self.backend {
            Backend::Rocks(rocks) => {
                let guard = rocks.read();
                let db = guard.as_ref().ok_or_else(|| rocks.unavailable())?;
                let cp = rocksdb::checkpoint::Checkpoint::new(db)?;
                cp.create_checkpoint(dir)?;
                Ok(())
            }
            Backend::Memory(_) => Err(StorageError::Unsupported(
                "the in-memory store has no checkpoints".into(),
            )),
        }
    }

    /// Size on disk of the live data, in bytes (an estimate for RocksDB).
    pub fn approximate_size(&self) -> u64 {
        match &self.backend {
            Backend::Rocks(rocks) => rocks
                .read()
                .as_ref()
                .and_then(|db| {
                    db.property_int_value("rocksdb.estimate-live-data-size")
                        .ok()
                        .flatten()
                })
                .unwrap_or(0),
            Backend::Memory(m) => m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum(),
        }
    }
}

/// A write-buffer entry: a key and its value (`None`: deleted).
type BufferedEntry<'a> = (&'a [u8], &'a Option<Vec<u8>>);

/// Whether committed key `key` lies in one of `ranges` (deleted since the commit).
fn hidden<'a>(ranges: impl IntoIterator<Item = &'a (Vec<u8>, Vec<u8>)>, key: &[u8]) -> bool {
    ranges
        .into_iter()
        .any(|(s, e)| s.as_slice() <= key && key < e.as_slice())
}

/// What a statement changed, to undo it.
enum UndoEntry {
    /// A key and what the write buffer held for it before (`None`: nothing buffered).
    Write(Vec<u8>, Option<buffer::Entry>),
    /// The last range of `Txn::deleted` was added.
    Range,
    /// Range number `.0` of `Txn::deleted` was extended: its end was `.1`.
    RangeEnd(usize, Vec<u8>),
}

/// The undo log capacity kept between statements (entries; a source chunk's writes fit).
const UNDO_KEPT: usize = 1 << 16;

/// Buffered writes on top of the committed data. Reads see the buffer; [`Txn::commit`]
/// writes it in one atomic, synced batch.
pub struct Txn {
    store: Store,
    pending: WriteBuffer,
    /// Whether a statement runs (see [`Txn::begin_statement`]).
    in_statement: bool,
    /// While a statement runs: the buffer entries it overwrote, to undo it if it fails.
    /// Emptied, not dropped, between statements: growing it anew for every statement was
    /// a visible share of a pass-through view's work. A statement that wrote more than
    /// [`UNDO_KEPT`] entries (a backfill, a large DELETE) gives its memory back.
    undo: Vec<UndoEntry>,
    /// Ranges deleted by [`Txn::delete_range`] since the last commit, `[start, end)`: they
    /// hide committed keys (the buffer holds only what was written into them since), and
    /// reach RocksDB as range deletions, before the buffered writes.
    deleted: Vec<(Vec<u8>, Vec<u8>)>,
    /// Counts the times writes made through this transaction were dropped (see
    /// [`Txn::generation`]).
    generation: u64,
}

impl Txn {
    pub fn new(store: Store) -> Txn {
        Txn {
            store,
            pending: WriteBuffer::default(),
            in_statement: false,
            undo: Vec::new(),
            deleted: Vec::new(),
            generation: 0,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Changes whenever writes made through this transaction are dropped: a statement
    /// rolled back, a commit failed. An operator that keeps copies of its state in memory
    /// discards them when this changes, since they may hold what was dropped.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty() || !self.deleted.is_empty()
    }

    /// Whether `key` was written (or deleted) in this transaction, since its last commit.
    pub fn is_written(&self, key: &[u8]) -> bool {
        self.pending.get(key).is_some()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None if hidden(&self.deleted, key) => Ok(None),
            None => self.store.read_latest(|r| r.get(key)),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value), false);
    }

    /// [`Txn::put`] of a key the caller knows is absent from committed state (a row under
    /// a sequence number never used before): if it is deleted before the commit, neither
    /// the pair nor a tombstone is written.
    pub fn put_fresh(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value), true);
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None, false);
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, fresh: bool) {
        if self.in_statement {
            let old = self.pending.set(key.clone(), value, fresh);
            self.undo.push(UndoEntry::Write(key, old));
        } else {
            self.pending.set(key, value, fresh);
        }
    }

    /// All live pairs whose key starts with `prefix`, in key order, buffer included.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.visit_prefix(prefix, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Calls `f` with the live pairs whose key starts with `prefix` (buffer included), in
    /// key order, until it returns false; reads committed data only as far as needed.
    pub fn visit_prefix(&self, prefix: &[u8], f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        self.visit(prefix, false, f)
    }

    /// [`Txn::visit_prefix`] in ascending key order, or descending with `rev`.
    pub fn visit(
        &self,
        prefix: &[u8],
        rev: bool,
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let end = prefix_end(prefix);
        self.walk(prefix, end.as_deref(), rev, f)
    }

    /// Calls `f` with the live pairs with `start <= key < end` (no end: to the last key),
    /// buffer included, in key order (descending with `rev`), until it returns false.
    /// Committed data and the buffer are merged as they are read, so a scan that stops
    /// early reads only what it used.
    pub fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rev: bool,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if end.is_some_and(|e| e <= start) {
            return Ok(());
        }
        let range = self.pending.range(start, end);
        let mut buffered: Box<dyn Iterator<Item = BufferedEntry<'_>>> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut peeked = buffered.next();
        // The deleted ranges this walk meets.
        let deleted: Vec<&(Vec<u8>, Vec<u8>)> = self
            .deleted
            .iter()
            .filter(|(s, e)| end.is_none_or(|end| s.as_slice() < end) && start < e.as_slice())
            .collect();
        // Whether buffered key `bk` comes before committed key `k` in the walk's order.
        let before = |bk: &[u8], k: &[u8]| if rev { bk > k } else { bk < k };
        let mut go = true;
        self.store.read_latest(|r| {
            r.walk(start, end, rev, &mut |k, v| {
                // Buffered keys before this one come first.
                while let Some((bk, bv)) = peeked {
                    if !before(bk, k) {
                        break;
                    }
                    if let Some(bv) = bv {
                        if !f(bk, bv) {
                            go = false;
                            return false;
                        }
                    }
                    peeked = buffered.next();
                }
                match peeked {
                    Some((bk, bv)) if bk == k => {
                        let keep = match bv {
                            Some(bv) => f(k, bv),
                            None => true, // deleted in the buffer
                        };
                        peeked = buffered.next();
                        go = keep;
                        keep
                    }
                    _ if !deleted.is_empty() && hidden(deleted.iter().copied(), k) => true,
                    _ => {
                        go = f(k, v);
                        go
                    }
                }
            })
        })?;
        if go {
            while let Some((bk, bv)) = peeked {
                if let Some(bv) = bv {
                    if !f(bk, bv) {
                        break;
                    }
                }
                peeked = buffered.next();
            }
        }
        Ok(())
    }

    /// All live pairs with `start <= key < end`, in key order, buffer included.
    pub fn scan_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.walk(start, Some(end), false, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// The first live pair (in key order) whose key starts with `prefix`; the last one
    /// when `last` is set.
    pub fn first_with_prefix(
        &self,
        prefix: &[u8],
        last: bool,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut first = None;
        self.visit(prefix, last, |k, v| {
            first = Some((k.to_vec(), v.to_vec()));
            false
        })?;
        Ok(first)
    }

    /// Deletes every live key with `start <= key < end`: the same as a delete of each key
    /// a scan of the range finds, without the scan. The range is cut out of the write
    /// buffer in one piece, hides the committed keys in it from reads, and reaches
    /// RocksDB as one range deletion: no tombstone per key (a window join frees a
    /// window's rows this way; tombstones for them in the buffer cost as much again to
    /// insert, and made every later cut rebuild the table's buffer around them).
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        // The buffered entries go, and the range hides committed keys until the commit
        // deletes them.
        let taken = self.pending.take_range(start, end);
        if self.in_statement {
            // Undone in reverse: the range goes, then these come back.
            self.undo
                .extend(taken.into_iter().map(|(k, e)| UndoEntry::Write(k, Some(e))));
        }
        self.note_deleted(start.to_vec(), end.to_vec());
        Ok(())
    }

    /// Adds `[start, end)` to the pending range deletions.
    fn note_deleted(&mut self, start: Vec<u8>, end: Vec<u8>) {
        // A range that meets one already pending extends it (windows close one after
        // another): the pending ranges, which every read checks, stay few.
        let meets = self
            .deleted
            .iter()
            .position(|(s, e)| s.as_slice() <= start.as_slice() && start <= *e);
        match meets {
            Some(i) => {
                if self.deleted[i].1 < end {
                    let old = std::mem::replace(&mut self.deleted[i].1, end);
                    if self.in_statement {
                        self.undo.push(UndoEntry::RangeEnd(i, old));
                    }
                }
            }
            None => {
                self.deleted.push((start, end));
                if self.in_statement {
                    self.undo.push(UndoEntry::Range);
                }
            }
        }
    }

    /// Deletes every live key starting with `prefix`.
    pub fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        for (k, _) in self.scan_prefix(prefix)? {
            self.delete(k);
        }
        Ok(())
    }

    /// Writes the buffer in one synced batch. The buffer is empty afterwards either way:
    /// if the write failed, what it held is dropped (and [`Txn::generation`] moves on), and
    /// the caller starts again from what is committed.
    pub fn commit(&mut self) -> Result<()> {
        self.end_statement();
        if !self.is_dirty() {
            return Ok(());
        }
        let counts = self
            .store
            .read_latest(|r| entry_count::count_writes(&self.pending, &self.deleted, r));
        match counts {
            Ok(counts) => {
                for (k, v) in counts {
                    self.pending.set(k, Some(v), false);
                }
            }
            Err(e) => {
                self.pending = WriteBuffer::default();
                self.deleted.clear();
                self.generation += 1;
                return Err(e);
            }
        }
        let (records, bytes) = self.pending.size();
        let deleted = std::mem::take(&mut self.deleted);
        let res = self
            .store
            .write(&deleted, self.pending.drain(), records, bytes);
        if res.is_err() {
            self.generation += 1;
        }
        res
    }

    /// Moves the writes buffered for keys in `ranges` into a new transaction over the same
    /// store, to be written on another thread and merged back with [`Txn::absorb`] (a
    /// view's dataflow applying a batch beside the others', an operator's shards). Each
    /// range must start and end on a key group boundary (see `buffer`): a view's rows
    /// prefix, a view's or a shard's state tables. The new transaction's reads see its own
    /// writes and committed data only: the caller makes sure it reads no key outside
    /// `ranges` meanwhile, and that this one neither reads nor writes inside them.
    ///
    /// Split off while a statement runs, the new transaction runs one too, and absorbing
    /// it makes its writes part of this statement: rolling this one back undoes them.
    pub fn split_off(&mut self, ranges: &[(Vec<u8>, Vec<u8>)]) -> Txn {
        let meets = |(s, e): &(Vec<u8>, Vec<u8>)| {
            ranges
                .iter()
                .any(|(rs, re)| s.as_slice() < re.as_slice() && rs.as_slice() < e.as_slice())
        };
        let mut child = Txn::new(self.store.clone());
        child.generation = self.generation;
        // Pending range deletions stay here (they reach RocksDB from here); the child
        // gets a copy of those that hide keys it may read.
        child.deleted = self.deleted.iter().filter(|d| meets(d)).cloned().collect();
        for (start, end) in ranges {
            child.pending.append(self.pending.split_groups(start, end));
        }
        if self.in_statement {
            child.begin_statement();
        }
        child
    }

    /// Merges back a transaction made by [`Txn::split_off`]: its writes and deleted
    /// ranges, and (if a statement runs here) what undoes them.
    pub fn absorb(&mut self, mut child: Txn) {
        self.pending.append(std::mem::take(&mut child.pending));
        if self.in_statement && child.in_statement {
            // The ranges' changes are recorded again below, by `note_deleted`; the
            // buffer's undo entries hold for the merged buffer, whose keys in the child's
            // ranges are the child's.
            self.undo.extend(
                child
                    .undo
                    .drain(..)
                    .filter(|u| matches!(u, UndoEntry::Write(..))),
            );
        }
        // The copies of this one's ranges are found again and change nothing, unless the
        // child extended them.
        for (start, end) in std::mem::take(&mut child.deleted) {
            self.note_deleted(start, end);
        }
        self.generation = self.generation.max(child.generation);
    }

    /// Starts recording what the buffer looked like, so that a failing statement can be
    /// undone with [`Txn::rollback_statement`].
    pub fn begin_statement(&mut self) {
        self.undo.clear();
        self.in_statement = true;
    }

    /// Whether a statement runs (its writes can still be undone).
    pub fn in_statement(&self) -> bool {
        self.in_statement
    }

    /// Keeps the statement's writes.
    pub fn end_statement(&mut self) {
        self.in_statement = false;
        self.reset_undo();
    }

    fn reset_undo(&mut self) {
        if self.undo.capacity() > UNDO_KEPT {
            self.undo = Vec::new();
        } else {
            self.undo.clear();
        }
    }

    /// Undoes every write since [`Txn::begin_statement`].
    pub fn rollback_statement(&mut self) {
        if self.in_statement {
            for u in self.undo.drain(..).rev() {
                match u {
                    UndoEntry::Write(k, old) => self.pending.restore(k, old),
                    UndoEntry::Range => {
                        self.deleted.pop();
                    }
                    UndoEntry::RangeEnd(i, end) => {
                        if let Some(r) = self.deleted.get_mut(i) {
                            r.1 = end;
                        }
                    }
                }
            }
            self.in_statement = false;
            self.reset_undo();
            self.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new database gets this build's format version; one of another version, or with
    /// data and no version (written before versions existed), is refused.
    #[test]
    fn open_checks_the_format_version() {
        let write = |store: Store, k: &[u8], v: &[u8]| {
            let mut t = Txn::new(store);
            t.put(k.to_vec(), v.to_vec());
            t.commit().unwrap();
        };
        let dir = tempfile::tempdir().unwrap();
        write(Store::open(dir.path()).unwrap(), b"a", b"x");
        let store = Store::open(dir.path()).expect("same version reopens");
        assert_eq!(
            store
                .read_snapshot(|r| r.get(keys::FORMAT_VERSION))
                .unwrap(),
            Some(FORMAT_VERSION.to_be_bytes().to_vec())
        );
        write(store, keys::FORMAT_VERSION, &7u32.to_be_bytes());
        let err = Store::open(dir.path())
            .err()
            .expect("another version is refused");
        assert!(err.to_string().contains("has format 7"), "{err}");

        let old = tempfile::tempdir().unwrap();
        write(Store::open_unchecked(old.path()).unwrap(), b"a", b"x");
        let err = Store::open(old.path())
            .err()
            .expect("unversioned data is refused");
        assert!(err.to_string().contains("format 0"), "{err}");
    }

    /// Writes to two views' key ranges made in transactions split off the main one (and
    /// merged back) commit exactly what the same writes made in the main one commit:
    /// puts, fresh puts, deletes and range deletions, over committed and buffered data.
    #[test]
    fn split_off_and_absorb_equal_writing_in_place() {
        use rand::{Rng, SeedableRng};
        let view_rows = |v: u64| {
            let s = keys::rows_prefix(v);
            let e = prefix_end(&s).unwrap();
            (s, e)
        };
        let view_state = |v: u64| {
            let s = keys::view_state_prefix(v);
            let e = prefix_end(&s).unwrap();
            (s, e)
        };
        for seed in 0..5u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = |rng: &mut rand::rngs::StdRng, v: u64| {
                let mut k = if rng.gen_bool(0.5) {
                    keys::rows_prefix(v)
                } else {
                    keys::state_prefix(keys::state_table_id(v, rng.gen_range(0..3), 0))
                };
                k.push(rng.gen_range(0..40u8));
                k
            };
            // Committed data, then buffered writes, in both stores alike.
            let (a, b) = (Store::memory(), Store::memory());
            let (mut ta, mut tb) = (Txn::new(a.clone()), Txn::new(b.clone()));
            for _ in 0..200 {
                let v = rng.gen_range(1..4);
                let k = key(&mut rng, v);
                ta.put(k.clone(), vec![1]);
                tb.put(k, vec![1]);
            }
            ta.commit().unwrap();
            tb.commit().unwrap();
            for i in 0..100 {
                let v = rng.gen_range(1..4);
                let k = key(&mut rng, v);
                if i % 10 == 0 {
                    // Pending range deletions move with the view they fall in.
                    let mut end = k.clone();
                    end.push(0xff);
                    ta.delete_range(&k, &end).unwrap();
                    tb.delete_range(&k, &end).unwrap();
                    continue;
                }
                ta.put(k.clone(), vec![2]);
                tb.put(k, vec![2]);
            }
            // Ops on views 1 and 2: applied to `ta` in place, and to children split off
            // `tb` (view 3's buffered writes stay in `tb`).
            let ops: Vec<(u64, u8, Vec<u8>)> = (0..400)
                .map(|_| {
                    let v = rng.gen_range(1..3);
                    (v, rng.gen_range(0..4u8), key(&mut rng, v))
                })
                .collect();
            let apply = |t: &mut Txn, (_, op, k): &(u64, u8, Vec<u8>)| match op {
                0 => t.put(k.clone(), vec![3]),
                1 => t.put_fresh(k.clone(), vec![4]),
                2 => t.delete(k.clone()),
                _ => {
                    let mut end = k.clone();
                    end.push(0xff);
                    t.delete_range(k, &end).unwrap();
                }
            };
            for op in &ops {
                apply(&mut ta, op);
            }
            let mut children: Vec<Txn> = (1..3)
                .map(|v| tb.split_off(&[view_rows(v), view_state(v)]))
                .collect();
            for op in &ops {
                apply(&mut children[op.0 as usize - 1], op);
            }
            for (i, c) in children.iter().enumerate() {
                let v = i as u64 + 1;
                assert_eq!(
                    c.scan_prefix(&keys::rows_prefix(v)).unwrap(),
                    ta.scan_prefix(&keys::rows_prefix(v)).unwrap(),
                    "a child reads its writes (seed {seed})"
                );
            }
            for c in children {
                tb.absorb(c);
            }
            assert_eq!(ta.scan_prefix(&[]).unwrap(), tb.scan_prefix(&[]).unwrap());
            ta.commit().unwrap();
            tb.commit().unwrap();
            let all = |s: &Store| s.read_snapshot(|r| r.scan_prefix(&[])).unwrap();
            assert_eq!(all(&a), all(&b), "seed {seed}");
        }
    }

    /// Writes made in transactions split off during a statement are part of it: a
    /// rollback undoes them (puts over buffered and committed keys, deletes, range
    /// deletions new and extended), an end keeps them.
    #[test]
    fn split_off_in_a_statement_rolls_back_with_it() {
        let table = |n: u16| keys::state_prefix(keys::state_table_id(1, 1, n));
        let range = |n: u16| {
            let s = table(n);
            let e = prefix_end(&s).unwrap();
            (s, e)
        };
        let key = |n: u16, b: u8| {
            let mut k = table(n);
            k.push(b);
            k
        };
        let store = Store::memory();
        let mut t = Txn::new(store.clone());
        for n in 0..2 {
            for b in 0..10 {
                t.put(key(n, b), vec![b]);
            }
        }
        t.commit().unwrap();
        t.put(key(0, 20), vec![20]);
        t.put(key(1, 21), vec![21]);
        t.delete_range(&key(1, 0), &key(1, 2)).unwrap();
        let before = t.scan_prefix(&[]).unwrap();
        for keep in [false, true] {
            t.begin_statement();
            let mut kids: Vec<Txn> = (0..2).map(|n| t.split_off(&[range(n)])).collect();
            for (n, c) in kids.iter_mut().enumerate() {
                let n = n as u16;
                if n == 1 {
                    assert_eq!(c.get(&key(1, 1)).unwrap(), None, "a copied range hides");
                }
                c.put(key(n, 3), vec![99]);
                c.put(key(n, 20), vec![98]);
                c.delete(key(n, 5));
                c.delete_range(&key(n, 7), &key(n, 9)).unwrap();
                // Extends the pending range of table 1.
                c.delete_range(&key(n, 2), &key(n, 3)).unwrap();
                c.put(key(n, 8), vec![97]);
            }
            let mut expect = Txn::new(store.clone());
            expect.delete_range(&key(1, 0), &key(1, 2)).unwrap();
            for (k, v) in &before {
                expect.put(k.clone(), v.clone());
            }
            for n in 0..2 {
                expect.put(key(n, 3), vec![99]);
                expect.put(key(n, 20), vec![98]);
                expect.delete(key(n, 5));
                expect.delete(key(n, 7));
                expect.delete(key(n, 2));
                expect.put(key(n, 8), vec![97]);
            }
            for c in kids {
                t.absorb(c);
            }
            if keep {
                t.end_statement();
                assert_eq!(
                    t.scan_prefix(&[]).unwrap(),
                    expect.scan_prefix(&[]).unwrap()
                );
            } else {
                t.rollback_statement();
                assert_eq!(t.scan_prefix(&[]).unwrap(), before, "rolled back");
            }
        }
        // (The commit updates the view's count of state entries.)
        let ops = keys::state_prefix(keys::state_table_id(1, 1, 0));
        let ops = &ops[..7];
        let want = t.scan_prefix(ops).unwrap();
        t.commit().unwrap();
        assert_eq!(store.read_snapshot(|r| r.scan_prefix(ops)).unwrap(), want);
    }

    #[test]
    fn txn_overlay_and_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut t = Txn::new(store.clone());
        t.put(b"a1".to_vec(), b"x".to_vec());
        t.put(b"a2".to_vec(), b"y".to_vec());
        assert_eq!(t.get(b"a1").unwrap(), Some(b"x".to_vec()));
        assert_eq!(store.read_snapshot(|r| r.get(b"a1")).unwrap(), None);
        t.commit().unwrap();
        assert_eq!(
            store.read_snapshot(|r| r.get(b"a1")).unwrap(),
            Some(b"x".to_vec())
        );
        t.delete(b"a1".to_vec());
        t.put(b"a3".to_vec(), b"z".to_vec());
        let keys: Vec<_> = t
            .scan_prefix(b"a")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a2".to_vec(), b"a3".to_vec()]);
        t.commit().unwrap();
        drop(t);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let all = store.read_snapshot(|r| r.scan_prefix(b"a")).unwrap();
        assert_eq!(all.len(), 2);
    }

    /// The generation moves when writes are dropped (a statement rolled back), and only
    /// then; a statement's undo log memory is given back after a large statement.
    #[test]
    fn generation_moves_when_writes_are_dropped() {
        let mut t = Txn::new(Store::memory());
        let g = t.generation();
        t.put(b"a".to_vec(), b"1".to_vec());
        t.begin_statement();
        t.put(b"b".to_vec(), b"2".to_vec());
        t.end_statement();
        t.rollback_statement(); // no statement runs: nothing to undo
        t.commit().unwrap();
        assert_eq!(t.generation(), g);
        t.begin_statement();
        for i in 0..(UNDO_KEPT as u32 + 1) {
            t.put(i.to_be_bytes().to_vec(), vec![]);
        }
        assert!(t.in_statement());
        t.rollback_statement();
        assert!(!t.in_statement());
        assert_eq!(t.generation(), g + 1);
        assert_eq!(t.get(&0u32.to_be_bytes()).unwrap(), None);
        assert_eq!(t.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert!(
            t.undo.capacity() <= UNDO_KEPT,
            "a large statement's undo log is freed"
        );
    }

    /// Random writes, deletes, commits and rolled-back statements over keys of several
    /// key spaces, against a plain ordered map: every point read and every walk (random
    /// bounds, both directions, stopping early) agrees.
    #[test]
    fn buffer_agrees_with_a_model() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for store in [Store::memory(), {
            let dir = tempfile::tempdir().unwrap();
            Store::open(&dir.keep()).unwrap()
        }] {
            let mut t = Txn::new(store);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            // Keys of a few tables (space byte, 8-byte id), short and long (the write
            // buffer compares the first 32 bytes as numbers), differing near the start,
            // past 32 bytes, or only in length.
            let key = |rnd: &mut dyn FnMut(u64) -> u64| {
                let space = [0x01u8, 0x02, 0x02, 0x03][rnd(4) as usize];
                let mut k = vec![space, 0, 0, 0, 0, 0, 0, 0, rnd(3) as u8];
                k.extend([rnd(4) as u8, rnd(6) as u8]);
                k.extend([0; 23]);
                k.push(rnd(3) as u8);
                k.truncate([1, 5, 9, 10, 11, 11, 32, 33, 35, 35][rnd(10) as usize]);
                k
            };
            let committed =
                |t: &Txn, k: &[u8]| t.store().read_latest(|r| r.get(k)).unwrap().is_some();
            for step in 0..20000 {
                match rnd(22) {
                    0 => t.commit().unwrap(),
                    1 => {
                        // A statement that fails halfway: none of its writes stay.
                        t.begin_statement();
                        for _ in 0..rnd(5) {
                            let k = key(&mut rnd);
                            match rnd(4) {
                                0 => t.put(k, vec![rnd(9) as u8]),
                                1 if committed(&t, &k) => t.delete(k),
                                1 => t.put_fresh(k, vec![rnd(9) as u8]),
                                2 => t.delete_range(&k, &key(&mut rnd)).unwrap(),
                                _ => t.delete(k),
                            }
                        }
                        t.rollback_statement();
                    }
                    16 | 17 => {
                        // A key known to be absent from committed state: its delete
                        // before the commit drops the entry (no tombstone).
                        let k = key(&mut rnd);
                        if !committed(&t, &k) {
                            let v = vec![step as u8, 1];
                            t.put_fresh(k.clone(), v.clone());
                            model.insert(k, v);
                        }
                    }
                    2..=9 => {
                        let k = key(&mut rnd);
                        let v = vec![step as u8];
                        t.put(k.clone(), v.clone());
                        model.insert(k, v);
                    }
                    10..=12 => {
                        let k = key(&mut rnd);
                        t.delete(k.clone());
                        model.remove(&k);
                    }
                    13..=15 => {
                        let k = key(&mut rnd);
                        assert_eq!(t.get(&k).unwrap().as_ref(), model.get(&k), "get {k:?}");
                    }
                    20 | 21 => {
                        // Wide ranges cut the buffer; narrow ones delete key by key.
                        let (start, end) = (key(&mut rnd), key(&mut rnd));
                        let in_statement = rnd(2) == 0;
                        if in_statement {
                            t.begin_statement();
                        }
                        t.delete_range(&start, &end).unwrap();
                        if in_statement {
                            t.end_statement();
                        }
                        model.retain(|k, _| *k < start || *k >= end);
                    }
                    _ => {
                        let start = key(&mut rnd);
                        let end = (rnd(4) > 0).then(|| key(&mut rnd));
                        let rev = rnd(2) == 0;
                        let limit = 1 + rnd(12) as usize;
                        let mut seen = Vec::new();
                        t.walk(&start, end.as_deref(), rev, |k, v| {
                            seen.push((k.to_vec(), v.to_vec()));
                            seen.len() < limit
                        })
                        .unwrap();
                        let mut want: Vec<(Vec<u8>, Vec<u8>)> = model
                            .iter()
                            .filter(|(k, _)| **k >= start && end.as_ref().is_none_or(|e| *k < e))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if rev {
                            want.reverse();
                        }
                        want.truncate(limit);
                        assert_eq!(seen, want, "walk {start:?}..{end:?} rev={rev}");
                    }
                }
            }
        }
    }

    /// `visit_prefix` sees what `scan_prefix` sees (committed, buffered, overwritten and
    /// deleted keys interleaved), and stops when asked.
    #[test]
    fn visit_prefix_merges_buffer_and_stops_early() {
        for store in [Store::memory(), {
            let dir = tempfile::tempdir().unwrap();
            Store::open(&dir.keep()).unwrap()
        }] {
            let mut t = Txn::new(store);
            for k in ["p1", "p3", "p5", "p7", "q1"] {
                t.put(k.as_bytes().to_vec(), b"old".to_vec());
            }
            t.commit().unwrap();
            t.put(b"p0".to_vec(), b"new".to_vec());
            t.put(b"p3".to_vec(), b"new".to_vec());
            t.delete(b"p5".to_vec());
            t.put(b"p6".to_vec(), b"new".to_vec());
            t.put(b"p9".to_vec(), b"new".to_vec());
            let mut seen = Vec::new();
            t.visit_prefix(b"p", |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
            assert_eq!(seen, t.scan_prefix(b"p").unwrap());
            let keys: Vec<&[u8]> = seen.iter().map(|(k, _)| k.as_slice()).collect();
            assert_eq!(keys, vec![&b"p0"[..], b"p1", b"p3", b"p6", b"p7", b"p9"]);
            let mut first_two = Vec::new();
            t.visit_prefix(b"p", |k, _| {
                first_two.push(k.to_vec());
                first_two.len() < 2
            })
            .unwrap();
            assert_eq!(first_two, vec![b"p0".to_vec(), b"p1".to_vec()]);
            assert_eq!(t.first_with_prefix(b"p", false).unwrap().unwrap().0, b"p0");
            assert_eq!(t.first_with_prefix(b"p", true).unwrap().unwrap().0, b"p9");
            let mut backwards = Vec::new();
            t.visit(b"p", true, |k, v| {
                backwards.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
            backwards.reverse();
            assert_eq!(backwards, seen);
            // The last live key may be committed, with buffered deletes after it.
            t.delete(b"p9".to_vec());
            t.put(b"p8".to_vec(), b"new".to_vec());
            t.delete(b"p8".to_vec());
            assert_eq!(t.first_with_prefix(b"p", true).unwrap().unwrap().0, b"p7");
            assert_eq!(t.first_with_prefix(b"q", true).unwrap().unwrap().0, b"q1");
            assert_eq!(t.first_with_prefix(b"r", true).unwrap(), None);
            let range: Vec<Vec<u8>> = t
                .scan_range(b"p1", b"p7")
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(range, vec![b"p1".to_vec(), b"p3".to_vec(), b"p6".to_vec()]);
            assert!(t.scan_range(b"p7", b"p1").unwrap().is_empty());
        }
    }
}

/// How a relation's rows are laid out under its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLayout {
    /// `primary key → row` (tables with a primary key).
    Keyed,
    /// `row → multiplicity` (tables without a primary key, and views).
    Multiset,
}

/// `GetApproximateSizes` with memtables included, which the rocksdb crate's
/// `get_approximate_sizes` leaves out (so a view's bytes read 0 until a flush). On an
/// error, the files-only estimate.
#[allow(unsafe_code)]
fn approximate_sizes(db: &rocksdb::DB, ranges: &[(Vec<u8>, Vec<u8>)]) -> Vec<u64> {
    use rocksdb::AsRawPtr;
    use std::os::raw::c_char;
    let n = ranges.len();
    let starts: Vec<*const c_char> = ranges.iter().map(|(s, _)| s.as_ptr().cast()).collect();
    let start_lens: Vec<usize> = ranges.iter().map(|(s, _)| s.len()).collect();
    let ends: Vec<*const c_char> = ranges.iter().map(|(_, e)| e.as_ptr().cast()).collect();
    let end_lens: Vec<usize> = ranges.iter().map(|(_, e)| e.len()).collect();
    let mut sizes = vec![0u64; n];
    let Ok(count) = i32::try_from(n) else {
        return sizes;
    };
    let mut err: *mut c_char = std::ptr::null_mut();
    let flags = (librocksdb_sys::rocksdb_size_approximation_flags_include_memtable
        | librocksdb_sys::rocksdb_size_approximation_flags_include_files) as u8;
    // SAFETY: `db` outlives the call (it is borrowed); the handle of the default column
    // family is "immortal" (destroying it frees the wrapper only); every array holds `n`
    // entries pointing into `ranges`, which outlives the call; `sizes` has room for `n`.
    unsafe {
        let raw = db.as_raw_ptr();
        let cf = librocksdb_sys::rocksdb_get_default_column_family_handle(raw);
        librocksdb_sys::rocksdb_approximate_sizes_cf_with_flags(
            raw,
            cf,
            count,
            starts.as_ptr(),
            start_lens.as_ptr(),
            ends.as_ptr(),
            end_lens.as_ptr(),
            flags,
            sizes.as_mut_ptr(),
            &mut err,
        );
        librocksdb_sys::rocksdb_column_family_handle_destroy(cf);
        if !err.is_null() {
            librocksdb_sys::rocksdb_free(err.cast());
            let r: Vec<rocksdb::Range<'_>> = ranges
                .iter()
                .map(|(s, e)| rocksdb::Range::new(s, e))
                .collect();
            return db.get_approximate_sizes(&r);
        }
    }
    sizes
}

/// Decodes the rows of one relation from its key-value pairs (keys include the
/// `prefix_len`-byte relation prefix). Returns each distinct row with its multiplicity.
pub fn decode_relation(
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    prefix_len: usize,
    types: &[datafusion::arrow::datatypes::DataType],
    layout: RowLayout,
) -> Result<Vec<(Vec<datafusion::common::ScalarValue>, i64)>> {
    pairs
        .into_iter()
        .map(|(k, v)| decode_pair(&k, &v, prefix_len, types, layout))
        .collect()
}

/// One stored row of a relation and its multiplicity, from its key and value.
pub fn decode_pair(
    k: &[u8],
    v: &[u8],
    prefix_len: usize,
    types: &[datafusion::arrow::datatypes::DataType],
    layout: RowLayout,
) -> Result<(Vec<datafusion::common::ScalarValue>, i64)> {
    match layout {
        RowLayout::Keyed => Ok((codec::decode_row(v, types)?, 1)),
        RowLayout::Multiset => {
            let n: [u8; 8] = v
                .try_into()
                .map_err(|_| StorageError::Corrupt("bad row multiplicity".into()))?;
            let key = k
                .get(prefix_len..)
                .ok_or_else(|| StorageError::Corrupt("short row key".into()))?;
            Ok((codec::decode_row(key, types)?, i64::from_be_bytes(n)))
        }
    }
}

/// Reads all rows of relation `id` from a snapshot.
pub fn read_relation(
    reader: &dyn Reader,
    id: u64,
    types: &[datafusion::arrow::datatypes::DataType],
    layout: RowLayout,
) -> Result<Vec<(Vec<datafusion::common::ScalarValue>, i64)>> {
    let prefix = keys::rows_prefix(id);
    decode_relation(reader.scan_prefix(&prefix)?, prefix.len(), types, layout)
}
