//! How a row that meets an existing row of its key is resolved, shared by RisingWave's
//! `ON CONFLICT` of tables (the server's INSERTs and COPY) and sinks into tables.

use crate::chunk::Row;

/// `old` with the non-NULL values of `new` (`DO UPDATE IF NOT NULL`).
pub fn merge_non_null(old: &Row, new: &Row) -> Row {
    old.iter()
        .zip(new)
        .map(|(o, n)| if n.is_null() { o.clone() } else { n.clone() })
        .collect()
}

/// Whether `new`'s version columns are not older than `old`'s: compared in order, NULL
/// lowest (RisingWave's `WITH VERSION COLUMN` rule); equal versions replace.
pub fn not_older(old: &Row, new: &Row, columns: &[usize]) -> bool {
    use std::cmp::Ordering;
    for &i in columns {
        let order = match (old[i].is_null(), new[i].is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => old[i].partial_cmp(&new[i]).unwrap_or(Ordering::Equal),
        };
        match order {
            Ordering::Less => return true,
            Ordering::Greater => return false,
            Ordering::Equal => {}
        }
    }
    true
}
