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
const EXPIRY: u8 = 0x05;

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

/// Prefix of table `id`'s expiry index (`WATERMARK … WITH TTL`): one key per stored
/// row, ordered by the row's event time, so the rows a watermark passes are one range.
pub fn expiry_prefix(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + 8 + 16);
    k.push(EXPIRY);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The first expiry key of table `id` at event time `ts` (µs): the keys below it are
/// of rows older than `ts`.
pub fn expiry_bound(id: u64, ts: i64) -> Vec<u8> {
    let mut k = expiry_prefix(id);
    // The sign bit flipped, so that negative times sort first.
    k.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// The expiry key of a row of table `id` at event time `ts` stored under `row_key`
/// (a [`row_key`] of the table); [`expired_row_key`] gives `row_key` back.
pub fn expiry_key(id: u64, ts: i64, row_key: &[u8]) -> Vec<u8> {
    let mut k = expiry_bound(id, ts);
    k.extend_from_slice(&row_key[rows_prefix(id).len().min(row_key.len())..]);
    k
}

/// The row key an [`expiry_key`] of table `id` points to.
pub fn expired_row_key(id: u64, expiry_key: &[u8]) -> Vec<u8> {
    row_key(id, expiry_key.get(9 + 8..).unwrap_or_default())
}

/// Every key prefix that holds something of relation `id`: its rows, its state tables
/// and its expiry index (a dropped relation's are deleted as ranges).
pub fn relation_prefixes(id: u64) -> [Vec<u8>; 3] {
    [rows_prefix(id), view_state_prefix(id), expiry_prefix(id)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_order_by_time_and_point_back() {
        let row = row_key(7, b"abc");
        let k = expiry_key(7, -5, &row);
        assert_eq!(expired_row_key(7, &k), row);
        assert!(expiry_bound(7, -6) < k && k < expiry_bound(7, -4));
        assert!(expiry_key(7, -1, &row) < expiry_key(7, 0, &row));
        assert!(expiry_key(7, 0, &row) < expiry_key(7, i64::MAX, &row));
        assert!(expiry_key(7, i64::MAX, &row) < expiry_prefix(8));
    }
}
