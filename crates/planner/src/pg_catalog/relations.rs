//! The `pg_catalog` relations, with the columns Postgres tools read.
//!
//! The relations describing Freshet's objects (`pg_class`, `pg_attribute`, `pg_index`,
//! `pg_constraint`, `pg_namespace`, `pg_roles`, `pg_database`, `pg_description`, …) are
//! built from the catalog; `pg_type`, `pg_am` and `pg_settings` hold what Freshet has.
//! Catalogs of features Freshet does not have (triggers, policies, publications,
//! inheritance, rules, extended statistics, extensions, sequences,
//! collations, column defaults) exist with their columns and no rows, so the queries
//! tools send about them run and find nothing.

use datafusion::arrow::datatypes::DataType;

use super::objects::{self, Rel};
use super::ty::{list, BOOL, F32, I16, I32, I64, OID, TEXT};
use super::types::{self, TYPES};
use super::v::{self, bool as b, i16, i32, oid, text};
use super::{oids, Relation, Snapshot, Table, PG_CATALOG};

macro_rules! rel {
    ($name:literal, $build:expr) => {
        Relation {
            schema: PG_CATALOG,
            name: $name,
            build: $build,
            always_empty: false,
        }
    };
    ($name:literal, $build:expr, empty) => {
        Relation {
            schema: PG_CATALOG,
            name: $name,
            build: $build,
            always_empty: true,
        }
    };
}

pub static RELATIONS: &[Relation] = &[
    rel!("pg_namespace", pg_namespace),
    rel!("pg_class", pg_class),
    rel!("pg_attribute", pg_attribute),
    rel!("pg_type", pg_type),
    rel!("pg_index", pg_index),
    rel!("pg_constraint", pg_constraint),
    rel!("pg_am", pg_am),
    rel!("pg_roles", pg_roles),
    rel!("pg_user", pg_user),
    rel!("pg_authid", pg_authid),
    rel!("pg_database", pg_database),
    rel!("pg_description", pg_description),
    rel!("pg_settings", pg_settings),
    rel!("pg_tables", pg_tables),
    rel!("pg_views", pg_views),
    rel!("pg_matviews", pg_matviews),
    rel!("pg_indexes", pg_indexes),
    rel!("pg_proc", pg_proc),
    rel!("pg_language", pg_language),
    rel!("pg_tablespace", pg_tablespace),
    rel!("pg_attrdef", pg_attrdef),
    rel!("pg_collation", pg_collation, empty),
    rel!("pg_inherits", pg_inherits, empty),
    rel!("pg_trigger", pg_trigger, empty),
    rel!("pg_policy", pg_policy, empty),
    rel!("pg_rewrite", pg_rewrite, empty),
    rel!("pg_statistic_ext", pg_statistic_ext, empty),
    rel!("pg_publication", pg_publication, empty),
    rel!("pg_publication_namespace", pg_publication_namespace, empty),
    rel!("pg_publication_rel", pg_publication_rel, empty),
    rel!("pg_sequence", pg_sequence, empty),
    rel!("pg_depend", pg_depend, empty),
    rel!("pg_shdescription", pg_shdescription, empty),
    rel!("pg_auth_members", pg_auth_members, empty),
    rel!("pg_extension", pg_extension, empty),
    rel!("pg_foreign_table", pg_foreign_table),
    rel!("pg_foreign_server", pg_foreign_server),
    rel!("pg_foreign_data_wrapper", pg_foreign_data_wrapper),
    rel!("pg_enum", pg_enum, empty),
    rel!("pg_range", pg_range, empty),
    rel!("pg_event_trigger", pg_event_trigger, empty),
    rel!("pg_stat_activity", pg_stat_activity),
    rel!("pg_locks", pg_locks, empty),
    rel!("pg_partitioned_table", pg_partitioned_table, empty),
    rel!("pg_opclass", pg_opclass, empty),
    rel!("pg_aggregate", pg_aggregate),
    rel!("pg_stat_user_tables", pg_stat_user_tables),
    // The function `pg_get_keywords()`, read as a relation (see `rewrite`).
    rel!("pg_get_keywords", pg_get_keywords),
];

fn all_rels(s: &Snapshot) -> Vec<Rel> {
    objects::relations(s)
}

fn pg_namespace(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("nspname", TEXT),
        ("nspowner", OID),
        ("nspacl", list(TEXT)),
    ]);
    for n in objects::namespaces(&s.catalog) {
        t.push(vec![
            oid(n.oid),
            text(n.name),
            oid(oids::BOOTSTRAP_ROLE),
            v::null_list(&TEXT),
        ]);
    }
    t
}

fn pg_class(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("relname", TEXT),
        ("relnamespace", OID),
        ("reltype", OID),
        ("reloftype", OID),
        ("relowner", OID),
        ("relam", OID),
        ("relfilenode", OID),
        ("reltablespace", OID),
        ("relpages", I32),
        ("reltuples", F32),
        ("relallvisible", I32),
        ("reltoastrelid", OID),
        ("relhasindex", BOOL),
        ("relisshared", BOOL),
        ("relpersistence", TEXT),
        ("relkind", TEXT),
        ("relnatts", I16),
        ("relchecks", I16),
        ("relhasrules", BOOL),
        ("relhastriggers", BOOL),
        ("relhassubclass", BOOL),
        ("relrowsecurity", BOOL),
        ("relforcerowsecurity", BOOL),
        ("relispopulated", BOOL),
        ("relreplident", TEXT),
        ("relispartition", BOOL),
        ("relrewrite", OID),
        ("relfrozenxid", I64),
        ("relminmxid", I64),
        ("relacl", list(TEXT)),
        ("reloptions", list(TEXT)),
        ("relpartbound", TEXT),
    ]);
    let rels = all_rels(s);
    let indexed = indexed(&rels);
    for r in &rels {
        let has_index = !r.pk.is_empty() || indexed.contains(&r.oid);
        let am = match r.kind {
            'i' => oids::AM_BTREE,
            'r' | 'm' => 2, // heap
            _ => 0,
        };
        let reltype = match r.id {
            Some(id) if r.kind != 'i' => oids::row_type(id),
            _ => 0,
        };
        t.push(vec![
            oid(r.oid),
            text(&r.name),
            oid(r.namespace),
            oid(reltype),
            oid(0),
            oid(oids::BOOTSTRAP_ROLE),
            oid(am),
            oid(r.oid),
            oid(0),
            i32(0),
            v::f32(-1.0),
            i32(0),
            oid(0),
            b(has_index),
            b(false),
            text("p"),
            text(r.kind.to_string()),
            i16(r.columns.len() as i16),
            i16(0),
            b(false),
            b(false),
            b(false),
            b(false),
            b(false),
            b(true),
            text(if r.kind == 'i' { "n" } else { "d" }),
            b(false),
            oid(0),
            v::i64(0),
            v::i64(0),
            v::null_list(&TEXT),
            v::null_list(&TEXT),
            v::null(),
        ]);
    }
    t
}

fn pg_attribute(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("attrelid", OID),
        ("attname", TEXT),
        ("atttypid", OID),
        ("attstattarget", I32),
        ("attlen", I16),
        ("attnum", I16),
        ("attndims", I32),
        ("attcacheoff", I32),
        ("atttypmod", I32),
        ("attbyval", BOOL),
        ("attalign", TEXT),
        ("attstorage", TEXT),
        ("attcompression", TEXT),
        ("attnotnull", BOOL),
        ("atthasdef", BOOL),
        ("atthasmissing", BOOL),
        ("attidentity", TEXT),
        ("attgenerated", TEXT),
        ("attisdropped", BOOL),
        ("attislocal", BOOL),
        ("attinhcount", I32),
        ("attcollation", OID),
        ("attacl", list(TEXT)),
        ("attoptions", list(TEXT)),
        ("attfdwoptions", list(TEXT)),
    ]);
    for r in all_rels(s) {
        for (i, c) in r.columns.iter().enumerate() {
            let ty = c.type_oid;
            let pt = types::by_oid(ty);
            let collation = if matches!(ty, 25 | 1043 | 1042 | 19) {
                100
            } else {
                0
            };
            t.push(vec![
                oid(r.oid),
                text(&c.name),
                oid(ty),
                i32(-1),
                i16(pt.map_or(-1, |p| p.len)),
                i16(i as i16 + 1),
                i32(if matches!(c.ty, DataType::List(_)) {
                    1
                } else {
                    0
                }),
                i32(-1),
                i32(types::typmod_of(&c.ty)),
                b(pt.is_some_and(|p| p.byval)),
                text("i"),
                text(if pt.is_some_and(|p| p.byval) {
                    "p"
                } else {
                    "x"
                }),
                text(""),
                b(c.not_null),
                b(c.default.is_some()),
                b(false),
                text(""),
                text(""),
                b(false),
                b(true),
                i32(0),
                oid(collation),
                v::null_list(&TEXT),
                v::null_list(&TEXT),
                v::null_list(&TEXT),
            ]);
        }
    }
    t
}

fn pg_type(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("typname", TEXT),
        ("typnamespace", OID),
        ("typowner", OID),
        ("typlen", I16),
        ("typbyval", BOOL),
        ("typtype", TEXT),
        ("typcategory", TEXT),
        ("typispreferred", BOOL),
        ("typisdefined", BOOL),
        ("typdelim", TEXT),
        ("typrelid", OID),
        ("typsubscript", OID),
        ("typelem", OID),
        ("typarray", OID),
        ("typinput", OID),
        ("typoutput", OID),
        ("typreceive", OID),
        ("typsend", OID),
        ("typbasetype", OID),
        ("typtypmod", I32),
        ("typndims", I32),
        ("typnotnull", BOOL),
        ("typcollation", OID),
        ("typdefault", TEXT),
    ]);
    for ty in TYPES {
        let collation = if matches!(ty.oid, 25 | 1043 | 1042 | 19) {
            100
        } else {
            0
        };
        t.push(vec![
            oid(ty.oid),
            text(ty.name),
            oid(oids::NS_PG_CATALOG),
            oid(oids::BOOTSTRAP_ROLE),
            i16(ty.len),
            b(ty.byval),
            text("b"),
            text(ty.category.to_string()),
            b(matches!(ty.oid, 25 | 701 | 1184 | 16)),
            b(true),
            text(","),
            oid(0),
            oid(0),
            oid(ty.elem),
            oid(ty.array),
            oid(ty.input_function()),
            oid(0),
            oid(0),
            oid(0),
            oid(0),
            i32(-1),
            i32(0),
            b(false),
            oid(collation),
            v::null(),
        ]);
    }
    // Each relation's row type.
    for r in all_rels(s) {
        if let (Some(id), true) = (r.id, r.kind != 'i') {
            t.push(vec![
                oid(oids::row_type(id)),
                text(&r.name),
                oid(r.namespace),
                oid(oids::BOOTSTRAP_ROLE),
                i16(-1),
                b(false),
                text("c"),
                text("C"),
                b(false),
                b(true),
                text(","),
                oid(r.oid),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                oid(0),
                i32(-1),
                i32(0),
                b(false),
                oid(0),
                v::null(),
            ]);
        }
    }
    t
}

/// The OIDs of the relations that have an index.
fn indexed(rels: &[objects::Rel]) -> std::collections::HashSet<u32> {
    rels.iter().filter_map(|r| r.index_of).collect()
}

fn pg_index(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("indexrelid", OID),
        ("indrelid", OID),
        ("indnatts", I16),
        ("indnkeyatts", I16),
        ("indisunique", BOOL),
        ("indnullsnotdistinct", BOOL),
        ("indisprimary", BOOL),
        ("indisexclusion", BOOL),
        ("indimmediate", BOOL),
        ("indisclustered", BOOL),
        ("indisvalid", BOOL),
        ("indcheckxmin", BOOL),
        ("indisready", BOOL),
        ("indislive", BOOL),
        ("indisreplident", BOOL),
        ("indkey", list(I16)),
        ("indcollation", list(OID)),
        ("indclass", list(OID)),
        ("indoption", list(I16)),
        ("indexprs", TEXT),
        ("indpred", TEXT),
    ]);
    let rels = all_rels(s);
    for r in &rels {
        let Some(table) = r.index_of.and_then(|o| objects::by_oid(&rels, o)) else {
            continue;
        };
        // A primary key's index has its table's key; one made by CREATE INDEX its own.
        let primary = r.index_cols.is_empty();
        let (cols, keys) = match primary {
            true => (&table.pk, table.pk.len()),
            false => (&r.index_cols, r.index_keys),
        };
        let n = cols.len();
        t.push(vec![
            oid(r.oid),
            oid(table.oid),
            i16(n as i16),
            i16(keys as i16),
            b(primary),
            b(false),
            b(primary),
            b(false),
            b(true),
            b(false),
            b(true),
            b(false),
            b(true),
            b(true),
            b(false),
            v::i16s(cols),
            v::oids(&vec![0; n]),
            v::oids(&vec![0; n]),
            v::i16s(&vec![0; n]),
            v::null(),
            v::null(),
        ]);
    }
    t
}

fn pg_constraint(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("conname", TEXT),
        ("connamespace", OID),
        ("contype", TEXT),
        ("condeferrable", BOOL),
        ("condeferred", BOOL),
        ("convalidated", BOOL),
        ("conrelid", OID),
        ("contypid", OID),
        ("conindid", OID),
        ("conparentid", OID),
        ("confrelid", OID),
        ("confupdtype", TEXT),
        ("confdeltype", TEXT),
        ("confmatchtype", TEXT),
        ("conislocal", BOOL),
        ("coninhcount", I32),
        ("connoinherit", BOOL),
        ("conkey", list(I16)),
        ("confkey", list(I16)),
        ("conbin", TEXT),
    ]);
    for r in all_rels(s) {
        let (Some(id), false) = (r.id, r.pk.is_empty()) else {
            continue;
        };
        t.push(vec![
            oid(oids::pk_constraint(id)),
            text(format!("{}_pkey", r.name)),
            oid(r.namespace),
            text("p"),
            b(false),
            b(false),
            b(true),
            oid(r.oid),
            oid(0),
            oid(oids::pk_index(id)),
            oid(0),
            oid(0),
            text(" "),
            text(" "),
            text(" "),
            b(true),
            i32(0),
            b(true),
            v::i16s(&r.pk),
            v::null_list(&I16),
            v::null(),
        ]);
    }
    t
}

fn pg_am(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("amname", TEXT),
        ("amhandler", OID),
        ("amtype", TEXT),
    ]);
    t.push(vec![oid(2), text("heap"), oid(0), text("t")]);
    t.push(vec![oid(oids::AM_BTREE), text("btree"), oid(0), text("i")]);
    t
}

fn role_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("rolname", TEXT),
        ("rolsuper", BOOL),
        ("rolinherit", BOOL),
        ("rolcreaterole", BOOL),
        ("rolcreatedb", BOOL),
        ("rolcanlogin", BOOL),
        ("rolreplication", BOOL),
        ("rolconnlimit", I32),
        ("rolpassword", TEXT),
        ("rolvaliduntil", TEXT),
        ("rolbypassrls", BOOL),
        ("rolconfig", list(TEXT)),
        ("oid", OID),
    ]
}

fn roles_table(s: &Snapshot, password_mask: Option<&str>) -> Table {
    let mut t = Table::new(&role_columns());
    for r in objects::roles(s) {
        t.push(vec![
            text(&r.name),
            b(r.superuser),
            b(true),
            b(r.superuser),
            b(r.superuser),
            b(r.login),
            b(false),
            i32(r.connection_limit),
            // Never the password: Postgres shows ******** in pg_roles, NULL in pg_authid
            // to those who may not see it; Freshet never shows it.
            password_mask.map_or(v::null(), text),
            v::null(),
            b(r.superuser),
            v::null_list(&TEXT),
            oid(r.oid),
        ]);
    }
    t
}

fn pg_roles(s: &Snapshot) -> Table {
    roles_table(s, Some("********"))
}

fn pg_authid(s: &Snapshot) -> Table {
    roles_table(s, None)
}

fn pg_user(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("usename", TEXT),
        ("usesysid", OID),
        ("usecreatedb", BOOL),
        ("usesuper", BOOL),
        ("userepl", BOOL),
        ("usebypassrls", BOOL),
        ("passwd", TEXT),
        ("valuntil", TEXT),
        ("useconfig", list(TEXT)),
    ]);
    for r in objects::roles(s).into_iter().filter(|r| r.login) {
        t.push(vec![
            text(&r.name),
            oid(r.oid),
            b(r.superuser),
            b(r.superuser),
            b(false),
            b(r.superuser),
            text("********"),
            v::null(),
            v::null_list(&TEXT),
        ]);
    }
    t
}

fn pg_database(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("datname", TEXT),
        ("datdba", OID),
        ("encoding", I32),
        ("datlocprovider", TEXT),
        ("datistemplate", BOOL),
        ("datallowconn", BOOL),
        ("datconnlimit", I32),
        ("datfrozenxid", I64),
        ("datminmxid", I64),
        ("dattablespace", OID),
        ("datcollate", TEXT),
        ("datctype", TEXT),
        ("daticulocale", TEXT),
        ("datcollversion", TEXT),
        ("datacl", list(TEXT)),
    ]);
    t.push(vec![
        oid(oids::DATABASE),
        text(super::DATABASE_NAME),
        oid(oids::BOOTSTRAP_ROLE),
        i32(6),
        text("c"),
        b(false),
        b(true),
        i32(-1),
        v::i64(0),
        v::i64(0),
        oid(1663),
        text("C.UTF-8"),
        text("C.UTF-8"),
        v::null(),
        v::null(),
        v::null_list(&TEXT),
    ]);
    t
}

fn pg_description(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("objoid", OID),
        ("classoid", OID),
        ("objsubid", I32),
        ("description", TEXT),
    ]);
    for r in all_rels(s) {
        if let Some(c) = &r.comment {
            t.push(vec![oid(r.oid), oid(oids::PG_CLASS), i32(0), text(c)]);
        }
    }
    for n in objects::namespaces(&s.catalog) {
        if !n.comment.is_empty() {
            t.push(vec![oid(n.oid), oid(2615), i32(0), text(n.comment)]);
        }
    }
    t
}

fn pg_settings(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("name", TEXT),
        ("setting", TEXT),
        ("unit", TEXT),
        ("category", TEXT),
        ("short_desc", TEXT),
        ("extra_desc", TEXT),
        ("context", TEXT),
        ("vartype", TEXT),
        ("source", TEXT),
        ("min_val", TEXT),
        ("max_val", TEXT),
        ("enumvals", list(TEXT)),
        ("boot_val", TEXT),
        ("reset_val", TEXT),
        ("sourcefile", TEXT),
        ("sourceline", I32),
        ("pending_restart", BOOL),
    ]);
    for (k, val) in &s.settings {
        t.push(vec![
            text(k),
            text(val),
            v::null(),
            text("Freshet"),
            text(""),
            v::null(),
            text("user"),
            text("string"),
            text("default"),
            v::null(),
            v::null(),
            v::null_list(&TEXT),
            text(val),
            text(val),
            v::null(),
            v::null(),
            b(false),
        ]);
    }
    t
}

fn pg_tables(s: &Snapshot) -> Table {
    let nss = objects::namespaces(&s.catalog);
    let mut t = Table::new(&[
        ("schemaname", TEXT),
        ("tablename", TEXT),
        ("tableowner", TEXT),
        ("tablespace", TEXT),
        ("hasindexes", BOOL),
        ("hasrules", BOOL),
        ("hastriggers", BOOL),
        ("rowsecurity", BOOL),
    ]);
    for r in all_rels(s).into_iter().filter(|r| r.kind == 'r') {
        t.push(vec![
            text(objects::namespace_name(&nss, r.namespace).unwrap_or("public")),
            text(&r.name),
            text(crate::users::BOOTSTRAP_USER),
            v::null(),
            b(!r.pk.is_empty()),
            b(false),
            b(false),
            b(false),
        ]);
    }
    t
}

fn pg_views(s: &Snapshot) -> Table {
    let nss = objects::namespaces(&s.catalog);
    let mut t = Table::new(&[
        ("schemaname", TEXT),
        ("viewname", TEXT),
        ("viewowner", TEXT),
        ("definition", TEXT),
    ]);
    for r in all_rels(s).into_iter().filter(|r| r.kind == 'v') {
        t.push(vec![
            text(objects::namespace_name(&nss, r.namespace).unwrap_or("public")),
            text(&r.name),
            text(crate::users::BOOTSTRAP_USER),
            r.definition.clone().map_or(v::null(), text),
        ]);
    }
    t
}

fn pg_matviews(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("schemaname", TEXT),
        ("matviewname", TEXT),
        ("matviewowner", TEXT),
        ("tablespace", TEXT),
        ("hasindexes", BOOL),
        ("ispopulated", BOOL),
        ("definition", TEXT),
    ]);
    let rels = all_rels(s);
    let indexed = indexed(&rels);
    let nss = objects::namespaces(&s.catalog);
    for r in rels.iter().filter(|r| r.kind == 'm') {
        t.push(vec![
            text(objects::namespace_name(&nss, r.namespace).unwrap_or("public")),
            text(&r.name),
            text(crate::users::BOOTSTRAP_USER),
            v::null(),
            b(indexed.contains(&r.oid)),
            b(true),
            r.definition.clone().map_or(v::null(), text),
        ]);
    }
    t
}

fn pg_indexes(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("schemaname", TEXT),
        ("tablename", TEXT),
        ("indexname", TEXT),
        ("tablespace", TEXT),
        ("indexdef", TEXT),
    ]);
    let rels = all_rels(s);
    let nss = objects::namespaces(&s.catalog);
    for r in &rels {
        let Some(table) = r.index_of.and_then(|o| objects::by_oid(&rels, o)) else {
            continue;
        };
        t.push(vec![
            text(objects::namespace_name(&nss, table.namespace).unwrap_or("public")),
            text(&table.name),
            text(&r.name),
            v::null(),
            text(super::functions::index_def(&rels, &nss, r.oid).unwrap_or_default()),
        ]);
    }
    t
}

/// Functions `pg_proc` lists: Postgres' OIDs for the common functions and aggregates
/// Freshet has (tools browse them: pgjdbc's `getFunctions`, Grafana's aggregate picker),
/// as `(oid, name, kind, return type, argument types)`.
const PROCS: &[(u32, &str, char, u32, &[u32])] = &[
    (870, "lower", 'f', 25, &[25]),
    (871, "upper", 'f', 25, &[25]),
    (1317, "length", 'f', 23, &[25]),
    (877, "substr", 'f', 25, &[25, 23, 23]),
    (885, "btrim", 'f', 25, &[25]),
    (3058, "concat", 'f', 25, &[2276]),
    (1299, "now", 'f', 1184, &[]),
    (2020, "date_trunc", 'f', 1114, &[25, 1114]),
    (1171, "date_part", 'f', 701, &[25, 1184]),
    (1395, "abs", 'f', 701, &[701]),
    (1342, "round", 'f', 701, &[701]),
    (2308, "ceil", 'f', 701, &[701]),
    (2309, "floor", 'f', 701, &[701]),
    (1344, "sqrt", 'f', 701, &[701]),
    (1376, "coalesce", 'f', 2283, &[2283]),
    (2147, "count", 'a', 20, &[2276]),
    (2803, "count", 'a', 20, &[]),
    (2105, "avg", 'a', 701, &[701]),
    (2111, "sum", 'a', 701, &[701]),
    (2107, "sum", 'a', 1700, &[20]),
    (2120, "max", 'a', 701, &[701]),
    (2136, "min", 'a', 701, &[701]),
    (2159, "stddev", 'a', 701, &[701]),
    (2727, "stddev_pop", 'a', 701, &[701]),
    (2713, "stddev_samp", 'a', 701, &[701]),
    (2721, "var_pop", 'a', 701, &[701]),
    (2641, "var_samp", 'a', 701, &[701]),
    (2148, "variance", 'a', 701, &[701]),
    (2335, "array_agg", 'a', 2277, &[2776]),
    (3538, "string_agg", 'a', 25, &[25, 25]),
];

fn pg_proc(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("proname", TEXT),
        ("pronamespace", OID),
        ("proowner", OID),
        ("prolang", OID),
        ("procost", F32),
        ("prorows", F32),
        ("provariadic", OID),
        ("prosupport", OID),
        ("prokind", TEXT),
        ("prosecdef", BOOL),
        ("proleakproof", BOOL),
        ("proisstrict", BOOL),
        ("proretset", BOOL),
        ("provolatile", TEXT),
        ("proparallel", TEXT),
        ("pronargs", I16),
        ("pronargdefaults", I16),
        ("prorettype", OID),
        ("proargtypes", list(OID)),
        ("proallargtypes", list(OID)),
        ("proargmodes", list(TEXT)),
        ("proargnames", list(TEXT)),
        ("prosrc", TEXT),
        ("probin", TEXT),
        ("proconfig", list(TEXT)),
        ("proacl", list(TEXT)),
    ]);
    for (o, name, kind, ret, args) in PROCS {
        t.push(vec![
            oid(*o),
            text(*name),
            oid(oids::NS_PG_CATALOG),
            oid(oids::BOOTSTRAP_ROLE),
            oid(12),
            super::v::f32(1.0),
            super::v::f32(0.0),
            oid(0),
            oid(0),
            text(kind.to_string()),
            b(false),
            b(false),
            b(true),
            b(false),
            text(if *name == "now" { "s" } else { "i" }),
            text("s"),
            i16(args.len() as i16),
            i16(0),
            oid(*ret),
            v::oids(args),
            v::null_list(&OID),
            v::null_list(&TEXT),
            v::null_list(&TEXT),
            text(*name),
            v::null(),
            v::null_list(&TEXT),
            v::null_list(&TEXT),
        ]);
    }
    t
}

fn pg_language(_: &Snapshot) -> Table {
    let mut t = Table::new(&[("oid", OID), ("lanname", TEXT), ("lanowner", OID)]);
    t.push(vec![oid(12), text("internal"), oid(oids::BOOTSTRAP_ROLE)]);
    t.push(vec![oid(14), text("sql"), oid(oids::BOOTSTRAP_ROLE)]);
    t
}

fn pg_tablespace(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("spcname", TEXT),
        ("spcowner", OID),
        ("spcacl", list(TEXT)),
        ("spcoptions", list(TEXT)),
    ]);
    t.push(vec![
        oid(1663),
        text("pg_default"),
        oid(oids::BOOTSTRAP_ROLE),
        v::null_list(&TEXT),
        v::null_list(&TEXT),
    ]);
    t
}

/// Column defaults: `adbin` holds the default's SQL text (which `pg_get_expr` returns).
fn pg_attrdef(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("adrelid", OID),
        ("adnum", I16),
        ("adbin", TEXT),
    ]);
    for r in all_rels(s) {
        for (i, c) in r.columns.iter().enumerate() {
            if let Some(d) = &c.default {
                t.push(vec![oid(0), oid(r.oid), i16(i as i16 + 1), text(d)]);
            }
        }
    }
    t
}

// Catalogs of features Freshet does not have: columns only.

fn pg_collation(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("collname", TEXT),
        ("collnamespace", OID),
        ("collprovider", TEXT),
        ("collcollate", TEXT),
        ("collctype", TEXT),
    ])
}

fn pg_inherits(_: &Snapshot) -> Table {
    Table::new(&[
        ("inhrelid", OID),
        ("inhparent", OID),
        ("inhseqno", I32),
        ("inhdetachpending", BOOL),
    ])
}

fn pg_trigger(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("tgrelid", OID),
        ("tgparentid", OID),
        ("tgname", TEXT),
        ("tgfoid", OID),
        ("tgtype", I16),
        ("tgenabled", TEXT),
        ("tgisinternal", BOOL),
        ("tgconstrrelid", OID),
        ("tgconstrindid", OID),
        ("tgconstraint", OID),
        ("tgdeferrable", BOOL),
        ("tginitdeferred", BOOL),
        ("tgnargs", I16),
    ])
}

fn pg_policy(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("polname", TEXT),
        ("polrelid", OID),
        ("polcmd", TEXT),
        ("polpermissive", BOOL),
        ("polroles", list(OID)),
        ("polqual", TEXT),
        ("polwithcheck", TEXT),
    ])
}

fn pg_rewrite(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("rulename", TEXT),
        ("ev_class", OID),
        ("ev_type", TEXT),
        ("ev_enabled", TEXT),
        ("is_instead", BOOL),
    ])
}

fn pg_statistic_ext(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("stxrelid", OID),
        ("stxname", TEXT),
        ("stxnamespace", OID),
        ("stxowner", OID),
        ("stxstattarget", I32),
        ("stxkeys", list(I16)),
        ("stxkind", list(TEXT)),
    ])
}

fn pg_publication(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("pubname", TEXT),
        ("pubowner", OID),
        ("puballtables", BOOL),
        ("pubinsert", BOOL),
        ("pubupdate", BOOL),
        ("pubdelete", BOOL),
        ("pubtruncate", BOOL),
        ("pubviaroot", BOOL),
    ])
}

fn pg_publication_namespace(_: &Snapshot) -> Table {
    Table::new(&[("oid", OID), ("pnpubid", OID), ("pnnspid", OID)])
}

fn pg_publication_rel(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("prpubid", OID),
        ("prrelid", OID),
        ("prqual", TEXT),
        ("prattrs", list(I16)),
    ])
}

fn pg_sequence(_: &Snapshot) -> Table {
    Table::new(&[
        ("seqrelid", OID),
        ("seqtypid", OID),
        ("seqstart", I64),
        ("seqincrement", I64),
        ("seqmax", I64),
        ("seqmin", I64),
        ("seqcache", I64),
        ("seqcycle", BOOL),
    ])
}

fn pg_depend(_: &Snapshot) -> Table {
    Table::new(&[
        ("classid", OID),
        ("objid", OID),
        ("objsubid", I32),
        ("refclassid", OID),
        ("refobjid", OID),
        ("refobjsubid", I32),
        ("deptype", TEXT),
    ])
}

fn pg_shdescription(_: &Snapshot) -> Table {
    Table::new(&[("objoid", OID), ("classoid", OID), ("description", TEXT)])
}

fn pg_auth_members(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("roleid", OID),
        ("member", OID),
        ("grantor", OID),
        ("admin_option", BOOL),
    ])
}

fn pg_extension(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("extname", TEXT),
        ("extowner", OID),
        ("extnamespace", OID),
        ("extrelocatable", BOOL),
        ("extversion", TEXT),
    ])
}

/// Sources and sinks: foreign tables of their connector's server.
fn pg_foreign_table(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("ftrelid", OID),
        ("ftserver", OID),
        ("ftoptions", list(TEXT)),
    ]);
    for r in all_rels(s) {
        if let Some(server) = r.server {
            t.push(vec![
                oid(r.oid),
                oid(objects::server_oid(server)),
                v::null_list(&TEXT),
            ]);
        }
    }
    t
}

/// Freshet's connectors, one server each.
fn pg_foreign_server(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("srvname", TEXT),
        ("srvowner", OID),
        ("srvfdw", OID),
        ("srvtype", TEXT),
        ("srvversion", TEXT),
        ("srvacl", list(TEXT)),
        ("srvoptions", list(TEXT)),
    ]);
    for (o, name) in objects::SERVERS {
        t.push(vec![
            oid(*o),
            text(*name),
            oid(oids::BOOTSTRAP_ROLE),
            oid(FDW),
            v::null(),
            v::null(),
            v::null_list(&TEXT),
            v::null_list(&TEXT),
        ]);
    }
    t
}

/// The one foreign-data wrapper: Freshet's connectors.
const FDW: u32 = 13200;

fn pg_foreign_data_wrapper(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("oid", OID),
        ("fdwname", TEXT),
        ("fdwowner", OID),
        ("fdwhandler", OID),
        ("fdwvalidator", OID),
        ("fdwacl", list(TEXT)),
        ("fdwoptions", list(TEXT)),
    ]);
    t.push(vec![
        oid(FDW),
        text("freshet_connectors"),
        oid(oids::BOOTSTRAP_ROLE),
        oid(0),
        oid(0),
        v::null_list(&TEXT),
        v::null_list(&TEXT),
    ]);
    t
}

fn pg_enum(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("enumtypid", OID),
        ("enumsortorder", F32),
        ("enumlabel", TEXT),
    ])
}

fn pg_range(_: &Snapshot) -> Table {
    Table::new(&[
        ("rngtypid", OID),
        ("rngsubtype", OID),
        ("rngmultitypid", OID),
    ])
}

fn pg_event_trigger(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("evtname", TEXT),
        ("evtevent", TEXT),
        ("evtowner", OID),
        ("evtfoid", OID),
        ("evtenabled", TEXT),
    ])
}

/// The server's sessions, with Postgres 15's columns.
fn pg_stat_activity(s: &Snapshot) -> Table {
    let ts = super::ty::timestamptz();
    let mut t = Table::new(&[
        ("datid", OID),
        ("datname", TEXT),
        ("pid", I32),
        ("leader_pid", I32),
        ("usesysid", OID),
        ("usename", TEXT),
        ("application_name", TEXT),
        ("client_addr", TEXT),
        ("client_hostname", TEXT),
        ("client_port", I32),
        ("backend_start", ts.clone()),
        ("xact_start", ts.clone()),
        ("query_start", ts.clone()),
        ("state_change", ts),
        ("wait_event_type", TEXT),
        ("wait_event", TEXT),
        ("state", TEXT),
        ("backend_xid", TEXT),
        ("backend_xmin", TEXT),
        ("query_id", I64),
        ("query", TEXT),
        ("backend_type", TEXT),
    ]);
    let roles = objects::roles(s);
    for a in &s.activity {
        let role = roles.iter().find(|r| r.name == a.user).map(|r| r.oid);
        t.push(vec![
            oid(oids::DATABASE),
            text(super::DATABASE_NAME),
            i32(a.pid),
            v::null(),
            role.map_or(v::null(), oid),
            text(&a.user),
            text(&a.application_name),
            a.client_addr.as_deref().map_or(v::null(), text),
            v::null(),
            a.client_port.map_or(v::null(), i32),
            v::timestamptz(Some(a.backend_start)),
            v::timestamptz(a.xact_start),
            v::timestamptz(a.query_start),
            v::timestamptz(Some(a.state_change)),
            v::null(),
            v::null(),
            text(&a.state),
            v::null(),
            v::null(),
            v::null(),
            text(&a.query),
            text("client backend"),
        ]);
    }
    t
}

fn pg_locks(_: &Snapshot) -> Table {
    Table::new(&[
        ("locktype", TEXT),
        ("database", OID),
        ("relation", OID),
        ("pid", I32),
        ("mode", TEXT),
        ("granted", BOOL),
    ])
}

fn pg_partitioned_table(_: &Snapshot) -> Table {
    Table::new(&[
        ("partrelid", OID),
        ("partstrat", TEXT),
        ("partnatts", I16),
        ("partattrs", list(I16)),
    ])
}

/// Operator classes: every index of Freshet's uses its type's default one, and tools ask
/// only for the others.
fn pg_opclass(_: &Snapshot) -> Table {
    Table::new(&[
        ("oid", OID),
        ("opcmethod", OID),
        ("opcname", TEXT),
        ("opcnamespace", OID),
        ("opcowner", OID),
        ("opcfamily", OID),
        ("opcintype", OID),
        ("opcdefault", BOOL),
        ("opckeytype", OID),
    ])
}

fn pg_aggregate(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("aggfnoid", OID),
        ("aggkind", TEXT),
        ("aggnumdirectargs", I16),
        ("aggtransfn", OID),
        ("aggfinalfn", OID),
        ("aggtranstype", OID),
        ("agginitval", TEXT),
    ]);
    for (o, _, _, ret, _) in PROCS.iter().filter(|p| p.2 == 'a') {
        t.push(vec![
            oid(*o),
            text("n"),
            i16(0),
            oid(0),
            oid(0),
            oid(*ret),
            v::null(),
        ]);
    }
    t
}

/// Tables and materialized views with their statistics (Metabase reads it for row-count
/// estimates): Freshet keeps no scan statistics, so the counts are 0.
fn pg_stat_user_tables(s: &Snapshot) -> Table {
    let nss = objects::namespaces(&s.catalog);
    let mut t = Table::new(&[
        ("relid", OID),
        ("schemaname", TEXT),
        ("relname", TEXT),
        ("seq_scan", I64),
        ("idx_scan", I64),
        ("n_tup_ins", I64),
        ("n_tup_upd", I64),
        ("n_tup_del", I64),
        ("n_live_tup", I64),
        ("n_dead_tup", I64),
        ("last_vacuum", super::ty::timestamptz()),
        ("last_analyze", super::ty::timestamptz()),
    ]);
    for r in all_rels(s)
        .into_iter()
        .filter(|r| matches!(r.kind, 'r' | 'm') && r.id.is_some())
    {
        let zero = || v::i64(0);
        t.push(vec![
            oid(r.oid),
            text(objects::namespace_name(&nss, r.namespace).unwrap_or("public")),
            text(&r.name),
            zero(),
            zero(),
            zero(),
            zero(),
            zero(),
            zero(),
            zero(),
            v::timestamptz(None),
            v::timestamptz(None),
        ]);
    }
    t
}

/// The SQL keywords Freshet's parser knows (`pg_get_keywords()`; pgjdbc's
/// `getSQLKeywords`).
fn pg_get_keywords(_: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("word", TEXT),
        ("catcode", TEXT),
        ("barelabel", BOOL),
        ("catdesc", TEXT),
        ("baredesc", TEXT),
    ]);
    for k in crate::sqlparser::keywords::ALL_KEYWORDS {
        t.push(vec![
            text(k.to_lowercase()),
            text("U"),
            b(true),
            text("unreserved"),
            text("can be bare label"),
        ]);
    }
    t
}
