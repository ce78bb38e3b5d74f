//! Freshet's objects as Postgres' catalogs describe them.
//!
//! | Freshet | `relkind` | shown as |
//! |---|---|---|
//! | table | `r` | table |
//! | materialized view | `m` | materialized view |
//! | source (a stream read from Kafka or a generator) | `f` | foreign table, with a comment naming its connector |
//! | sink | `f` | foreign table, with a comment naming its connector |
//! | a plain view (`CREATE VIEW`) | `v` | view |
//! | a table's primary key | `i` | index `<table>_pkey` (and constraint `p`) |
//! | an index (`CREATE INDEX`) | `i` | index on its table or materialized view |
//! | `freshet_catalog.*`, `pg_catalog.*`, `information_schema.*` | `v` | views in their schemas |

use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::{oids, Snapshot};
use crate::catalog::Catalog;

/// One relation as `pg_class` lists it.
#[derive(Clone, Debug)]
pub struct Rel {
    pub oid: u32,
    pub name: String,
    pub namespace: u32,
    /// `r`, `m`, `f`, `v`, `i`.
    pub kind: char,
    pub columns: Vec<Col>,
    /// Column numbers (1-based) of the primary key; empty: none.
    pub pk: Vec<i16>,
    /// For an index: the relation it indexes.
    pub index_of: Option<u32>,
    /// For an index made by `CREATE INDEX`: the indexed relation's column numbers
    /// (1-based) it stores, its key columns first, and how many are key columns. Empty
    /// for a primary key's index, whose columns are its table's key.
    pub index_cols: Vec<i16>,
    pub index_keys: usize,
    /// The catalog id, for Freshet's own objects.
    pub id: Option<u64>,
    /// `obj_description`.
    pub comment: Option<String>,
    /// The defining query of a view.
    pub definition: Option<String>,
    /// For a source or sink (a foreign table): its connector, shown as its server.
    pub server: Option<&'static str>,
}

/// The connectors, shown as foreign servers (`pg_foreign_server`), with their OIDs.
pub const SERVERS: &[(u32, &str)] = &[
    (13201, "kafka"),
    (13202, "datagen"),
    (13203, "nexmark"),
    (13204, "playback"),
    (13205, "blackhole"),
];

pub fn server_oid(name: &str) -> u32 {
    SERVERS
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(SERVERS[0].0, |(o, _)| *o)
}

#[derive(Clone, Debug)]
pub struct Col {
    pub name: String,
    pub ty: DataType,
    pub not_null: bool,
    /// `DEFAULT` (tables' columns).
    pub default: Option<String>,
    /// Its Postgres type (`text` for a column declared TEXT, which Arrow does not tell
    /// from VARCHAR).
    pub type_oid: u32,
}

/// A namespace (schema).
#[derive(Clone, Debug)]
pub struct Namespace {
    pub oid: u32,
    pub name: String,
    pub comment: String,
}

/// The built-in namespaces: their OIDs, names and comments.
const BUILT_IN: &[(u32, &str, &str)] = &[
    (oids::NS_PG_CATALOG, "pg_catalog", "system catalog schema"),
    (oids::NS_PUBLIC, "public", "standard public schema"),
    (
        oids::NS_INFORMATION_SCHEMA,
        "information_schema",
        "the SQL standard's information schema",
    ),
    (
        oids::NS_FRESHET_CATALOG,
        "freshet_catalog",
        "Freshet's system tables: sources, views, dead letters, watermarks",
    ),
];

/// Every namespace: the built-in ones, then those `CREATE SCHEMA` made, in creation
/// order.
pub fn namespaces(c: &Catalog) -> Vec<Namespace> {
    let built_in = BUILT_IN.iter().map(|&(oid, name, comment)| Namespace {
        oid,
        name: name.to_string(),
        comment: comment.to_string(),
    });
    let created = c.schemas.iter().map(|s| Namespace {
        oid: oids::relation(s.id),
        name: s.name.clone(),
        comment: String::new(),
    });
    built_in.chain(created).collect()
}

/// The OID of namespace `name` (built-in or created).
pub fn namespace_oid(c: &Catalog, name: &str) -> Option<u32> {
    match BUILT_IN.iter().find(|n| n.1 == name) {
        Some(n) => Some(n.0),
        None => c.schema(name).map(|s| oids::relation(s.id)),
    }
}

/// The name of the namespace with OID `oid`.
pub fn namespace_name(namespaces: &[Namespace], oid: u32) -> Option<&str> {
    namespaces
        .iter()
        .find(|n| n.oid == oid)
        .map(|n| n.name.as_str())
}

/// A relation's namespace and its name there: `s.t` is `t` in schema `s`.
fn placed(c: &Catalog, name: &str) -> (u32, String) {
    match crate::schemas::split(name) {
        (Some(schema), rel) => (
            namespace_oid(c, schema).unwrap_or(oids::NS_PUBLIC),
            rel.to_string(),
        ),
        (None, rel) => (oids::NS_PUBLIC, rel.to_string()),
    }
}

/// The Postgres type of a table column as declared.
fn declared_oid(c: &crate::catalog::ColumnDef) -> u32 {
    use crate::catalog::SqlType;
    match &c.ty {
        SqlType::Text => 25,
        SqlType::Array(elem) if **elem == SqlType::Text => 1009,
        other => super::types::oid_of(&other.to_arrow()),
    }
}

fn cols(schema: &SchemaRef, not_null: &[bool]) -> Vec<Col> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Col {
            name: f.name().clone(),
            ty: f.data_type().clone(),
            not_null: not_null.get(i).copied().unwrap_or(false),
            default: None,
            type_oid: super::types::oid_of(f.data_type()),
        })
        .collect()
}

/// Every relation, Freshet's own first (in creation order), then the system ones.
pub fn relations(s: &Snapshot) -> Vec<Rel> {
    let c: &Catalog = &s.catalog;
    let mut out = Vec::new();
    for t in &c.tables {
        let schema = t.schema();
        let not_null: Vec<bool> = t.columns.iter().map(|c| c.not_null).collect();
        let pk: Vec<i16> = t.pk.iter().map(|&i| i as i16 + 1).collect();
        out.push(Rel {
            oid: oids::relation(t.id),
            name: placed(c, &t.name).1,
            namespace: placed(c, &t.name).0,
            kind: 'r',
            columns: cols(&schema, &not_null)
                .into_iter()
                .zip(&t.columns)
                .map(|(c, d)| Col {
                    type_oid: declared_oid(d),
                    default: d.default.clone(),
                    ..c
                })
                .collect(),
            pk: pk.clone(),
            index_of: None,
            index_cols: Vec::new(),
            index_keys: 0,
            id: Some(t.id),
            comment: t.feed.as_ref().map(|f| {
                format!(
                    "fed from Kafka topic {} ({})",
                    f.topic,
                    if f.upsert { "upsert" } else { "append" }
                )
            }),
            definition: None,
            server: None,
        });
        if !pk.is_empty() {
            let key: Vec<Col> =
                t.pk.iter()
                    .map(|&i| Col {
                        name: t.columns[i].name.clone(),
                        ty: t.columns[i].ty.to_arrow(),
                        not_null: true,
                        default: None,
                        type_oid: declared_oid(&t.columns[i]),
                    })
                    .collect();
            out.push(Rel {
                oid: oids::pk_index(t.id),
                name: format!("{}_pkey", placed(c, &t.name).1),
                namespace: placed(c, &t.name).0,
                kind: 'i',
                columns: key,
                pk: Vec::new(),
                index_of: Some(oids::relation(t.id)),
                index_cols: Vec::new(),
                index_keys: 0,
                id: Some(t.id),
                comment: None,
                definition: None,
                server: None,
            });
        }
    }
    for src in &c.sources {
        out.push(Rel {
            oid: oids::relation(src.id),
            name: placed(c, &src.name).1,
            namespace: placed(c, &src.name).0,
            kind: 'f',
            columns: cols(&src.schema(), &[]),
            pk: Vec::new(),
            index_of: None,
            index_cols: Vec::new(),
            index_keys: 0,
            id: Some(src.id),
            comment: Some(match src.connector {
                crate::catalog::ConnectorKind::Kafka => {
                    format!("source: Kafka topic {}", src.topic)
                }
                other => format!("source: {} generator", format!("{other:?}").to_lowercase()),
            }),
            definition: None,
            server: Some(match src.connector {
                crate::catalog::ConnectorKind::Kafka => "kafka",
                crate::catalog::ConnectorKind::Datagen => "datagen",
                crate::catalog::ConnectorKind::Nexmark => "nexmark",
                crate::catalog::ConnectorKind::Playback => "playback",
            }),
        });
    }
    for v in &c.views {
        let schema = s.view_schemas.get(&v.id);
        if let Some(i) = &v.index {
            // The indexed relation's column names, to number the index's columns by.
            let base: Vec<String> = match c.tables.iter().find(|t| t.id == i.on) {
                Some(t) => t.columns.iter().map(|c| c.name.clone()).collect(),
                None => s
                    .view_schemas
                    .get(&i.on)
                    .map(|s| s.fields().iter().map(|f| f.name().clone()).collect())
                    .unwrap_or_default(),
            };
            let index_cols = i
                .stored_columns()
                .filter_map(|n| base.iter().position(|b| b == n).map(|p| p as i16 + 1))
                .collect();
            out.push(Rel {
                oid: oids::relation(v.id),
                name: placed(c, &v.name).1,
                namespace: placed(c, &v.name).0,
                kind: 'i',
                columns: schema.map(|s| cols(s, &[])).unwrap_or_default(),
                pk: Vec::new(),
                index_of: Some(oids::relation(i.on)),
                index_cols,
                index_keys: i.columns.len(),
                id: Some(v.id),
                comment: None,
                definition: None,
                server: None,
            });
            continue;
        }
        let (kind, comment) = match &v.sink {
            Some(sink) => ('f', Some(format!("sink: {} connector", sink.connector))),
            None => ('m', None),
        };
        out.push(Rel {
            oid: oids::relation(v.id),
            name: placed(c, &v.name).1,
            namespace: placed(c, &v.name).0,
            kind,
            columns: schema.map(|s| cols(s, &[])).unwrap_or_default(),
            pk: Vec::new(),
            index_of: None,
            index_cols: Vec::new(),
            index_keys: 0,
            id: Some(v.id),
            comment,
            definition: Some(crate::parser::show_lookups(&v.sql)),
            server: v.sink.as_ref().map(|_| "blackhole"),
        });
    }
    for v in &c.plain_views {
        out.push(Rel {
            oid: oids::relation(v.id),
            name: placed(c, &v.name).1,
            namespace: placed(c, &v.name).0,
            kind: 'v',
            columns: s
                .view_schemas
                .get(&v.id)
                .map(|s| cols(s, &[]))
                .unwrap_or_default(),
            pk: Vec::new(),
            index_of: None,
            index_cols: Vec::new(),
            index_keys: 0,
            id: Some(v.id),
            comment: None,
            definition: Some(crate::parser::show_lookups(&v.sql)),
            server: None,
        });
    }
    // System relations, with OIDs from a fixed range below the user range: Freshet's
    // (columns and all), then the catalogs' own (by name only).
    for (i, (name, columns)) in s.freshet_catalog.iter().enumerate() {
        out.push(system_rel(
            12000 + i as u32,
            oids::NS_FRESHET_CATALOG,
            name,
            cols(columns, &[]),
        ));
    }
    for (i, r) in super::all().enumerate() {
        let ns = namespace_oid(c, r.schema).unwrap_or(oids::NS_PG_CATALOG);
        let oid = match r.name {
            "pg_class" => oids::PG_CLASS,
            _ => 12100 + i as u32,
        };
        out.push(system_rel(oid, ns, r.name, Vec::new()));
    }
    out
}

fn system_rel(oid: u32, namespace: u32, name: &str, columns: Vec<Col>) -> Rel {
    Rel {
        oid,
        name: name.to_string(),
        namespace,
        kind: 'v',
        columns,
        pk: Vec::new(),
        index_of: None,
        index_cols: Vec::new(),
        index_keys: 0,
        id: None,
        comment: None,
        definition: None,
        server: None,
    }
}

/// One role as `pg_roles` lists it.
pub struct Role {
    pub oid: u32,
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    pub connection_limit: i32,
}

pub fn roles(s: &Snapshot) -> Vec<Role> {
    let boot = crate::users::BOOTSTRAP_USER;
    let mut out = vec![Role {
        oid: oids::BOOTSTRAP_ROLE,
        name: boot.to_string(),
        superuser: true,
        login: true,
        connection_limit: -1,
    }];
    for u in &s.catalog.users {
        if u.name == boot {
            continue;
        }
        let oid = if u.id == 0 {
            // A user from before ids were kept: a fixed OID from its name.
            let h = u
                .name
                .bytes()
                .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
            15000 + h % 1000
        } else {
            oids::role(u.id, false)
        };
        out.push(Role {
            oid,
            name: u.name.clone(),
            superuser: u.superuser,
            login: u.login,
            connection_limit: u.connection_limit.map_or(-1, |n| n as i32),
        });
    }
    out
}

/// The relation with OID `oid`, among `rels`.
pub fn by_oid(rels: &[Rel], oid: u32) -> Option<&Rel> {
    rels.iter().find(|r| r.oid == oid)
}
