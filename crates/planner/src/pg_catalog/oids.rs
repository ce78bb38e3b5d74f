//! Object identifiers, stable across restarts.
//!
//! Postgres tools cache and join on OIDs (pgjdbc's column metadata, DBeaver's navigator,
//! psql's `\d` by OID), so each Freshet object gets one derived from its catalog id,
//! which never changes and is never reused:
//!
//! - relation `id` (table, view, source, sink): `FIRST + 4·id`; its primary-key index
//!   `+1`, its primary-key constraint `+2`, its row type `+3`;
//! - users: `FIRST + 4·id` of the id the catalog gave them (the bootstrap superuser is
//!   10, as Postgres' bootstrap superuser is);
//! - namespaces and built-in types: Postgres' own numbers.

/// The first OID Postgres gives user objects.
pub const FIRST: u32 = 16384;

pub const NS_PG_CATALOG: u32 = 11;
pub const NS_PUBLIC: u32 = 2200;
pub const NS_INFORMATION_SCHEMA: u32 = 13000;
pub const NS_FRESHET_CATALOG: u32 = 13100;

/// The bootstrap superuser.
pub const BOOTSTRAP_ROLE: u32 = 10;
/// The one database, `freshet`.
pub const DATABASE: u32 = 16383;
/// The btree access method (every index Freshet has is a btree over a sorted key).
pub const AM_BTREE: u32 = 403;
/// `pg_class` itself, for `obj_description(oid, 'pg_class')`-style references.
pub const PG_CLASS: u32 = 1259;

fn base(id: u64) -> u32 {
    u32::try_from(id)
        .ok()
        .and_then(|id| id.checked_mul(4))
        .and_then(|x| x.checked_add(FIRST))
        .unwrap_or(u32::MAX - 3)
}

/// The OID of relation `id`.
pub fn relation(id: u64) -> u32 {
    base(id)
}

/// The OID of relation `id`'s primary-key index.
pub fn pk_index(id: u64) -> u32 {
    base(id) + 1
}

/// The OID of relation `id`'s primary-key constraint.
pub fn pk_constraint(id: u64) -> u32 {
    base(id) + 2
}

/// The OID of relation `id`'s row type.
pub fn row_type(id: u64) -> u32 {
    base(id) + 3
}

/// The catalog id and what of it an OID names, if it is one of Freshet's objects.
pub fn object(oid: u32) -> Option<(u64, u32)> {
    let off = oid.checked_sub(FIRST)?;
    Some(((off / 4) as u64, off % 4))
}

/// A role's OID: the bootstrap superuser's, else from the id the catalog gave it.
pub fn role(id: u64, bootstrap: bool) -> u32 {
    if bootstrap {
        BOOTSTRAP_ROLE
    } else {
        base(id)
    }
}
