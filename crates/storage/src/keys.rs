//! Key layout. Every key starts with a key-space byte; ids are big-endian so that the rows
//! of one relation (or one state table) are contiguous and ordered.

/// The state format version of the data directory (see `Store::open`).
pub const FORMAT_VERSION: &[u8] = &[0x00];
/// The catalog document.
pub const CATALOG: &[u8] = &[0x01];
/// The id of the view being built, while what it made so far is committed before the
/// view itself (see the engine's `backfill` module).
pub const BACKFILL: &[u8] = &[0x04];
const ROWS: u8 = 0x02;
const STATE: u8 = 0x03;

/// Prefix of all rows of relation (table or view) `id`.
pub fn rows_prefix(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + 16);
    k.push(ROWS);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Key of one row of relation `id`; `key` is the encoded primary key (tables) or the
/// encoded row (views, where the value is the row's multiplicity).
pub fn row_key(id: u64, key: &[u8]) -> Vec<u8> {
    let mut k = rows_prefix(id);
    k.extend_from_slice(key);
    k
}

/// Prefix of state table `id` (operator state; ids are allocated per view and operator).
pub fn state_prefix(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + 16);
    k.push(STATE);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Prefix of all state tables of view `view_id` (see [`state_table_id`]).
pub fn view_state_prefix(view_id: u64) -> Vec<u8> {
    let mut k = vec![STATE];
    k.extend_from_slice(&(view_id as u32).to_be_bytes());
    k
}

/// The state table id of table number `n` of operator number `op` of view `view_id`:
/// `view id (32 bits) | operator (16 bits) | table (16 bits)`, so that all state of a
/// view shares a prefix and is dropped with one range.
pub fn state_table_id(view_id: u64, op: u16, n: u16) -> u64 {
    ((view_id & 0xFFFF_FFFF) << 32) | ((op as u64) << 16) | n as u64
}

/// The key, in view `view_id`'s root state table (operator 0, table 0), of the number of
/// its operators' state entries, which every commit keeps (see `entry_count`).
pub fn state_entries_key(view_id: u64) -> Vec<u8> {
    let mut k = state_prefix(state_table_id(view_id, 0, 0));
    k.push(b'e');
    k
}

/// The view whose operators' state `key` belongs to: a key of a state table of an
/// operator numbered 1 to `u16::MAX - 1`. The root's table (operator 0: row counts, a
/// sink's outbox) and the source bookkeeping (operator `u16::MAX`: offsets, watermarks)
/// are not operator state.
pub fn operator_state_view(key: &[u8]) -> Option<u64> {
    if key.len() < 9 || key[0] != STATE {
        return None;
    }
    let op = u16::from_be_bytes([key[5], key[6]]);
    if op == 0 || op == u16::MAX {
        return None;
    }
    Some(u32::from_be_bytes([key[1], key[2], key[3], key[4]]) as u64)
}
