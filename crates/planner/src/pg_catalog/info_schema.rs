//! The SQL standard's `information_schema`: the views Grafana's pickers, Metabase and
//! generic SQL tools read.

use datafusion::arrow::datatypes::DataType;

use super::objects::{self, Rel};
use super::ty::{I32, TEXT};
use super::types;
use super::v::{self, i32, text};
use super::{Relation, Snapshot, Table, INFORMATION_SCHEMA};

macro_rules! rel {
    ($name:literal, $build:expr) => {
        Relation {
            schema: INFORMATION_SCHEMA,
            name: $name,
            build: $build,
            always_empty: false,
        }
    };
    ($name:literal, $build:expr, empty) => {
        Relation {
            schema: INFORMATION_SCHEMA,
            name: $name,
            build: $build,
            always_empty: true,
        }
    };
}

pub static RELATIONS: &[Relation] = &[
    rel!("schemata", schemata),
    rel!("tables", tables),
    rel!("columns", columns),
    rel!("views", views),
    rel!("table_constraints", table_constraints),
    rel!("key_column_usage", key_column_usage),
    rel!("constraint_column_usage", constraint_column_usage),
    rel!("referential_constraints", referential_constraints, empty),
    rel!("check_constraints", check_constraints, empty),
    rel!("routines", routines, empty),
    rel!("parameters", parameters, empty),
    rel!("triggers", triggers, empty),
    rel!("sequences", sequences, empty),
];

const DB: &str = super::DATABASE_NAME;

/// The name of the schema `r` is in.
fn schema_of(s: &Snapshot, r: &Rel) -> String {
    objects::namespace_name(&objects::namespaces(&s.catalog), r.namespace)
        .unwrap_or("public")
        .to_string()
}

/// The relations `information_schema.tables` lists: Freshet's own and the system views.
fn listed(s: &Snapshot) -> Vec<Rel> {
    objects::relations(s)
        .into_iter()
        .filter(|r| r.kind != 'i')
        .collect()
}

fn schemata(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("catalog_name", TEXT),
        ("schema_name", TEXT),
        ("schema_owner", TEXT),
        ("default_character_set_catalog", TEXT),
        ("default_character_set_schema", TEXT),
        ("default_character_set_name", TEXT),
        ("sql_path", TEXT),
    ]);
    for n in objects::namespaces(&s.catalog) {
        t.push(vec![
            text(DB),
            text(n.name),
            text(crate::users::BOOTSTRAP_USER),
            v::null(),
            v::null(),
            v::null(),
            v::null(),
        ]);
    }
    t
}

fn tables(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("table_catalog", TEXT),
        ("table_schema", TEXT),
        ("table_name", TEXT),
        ("table_type", TEXT),
        ("self_referencing_column_name", TEXT),
        ("reference_generation", TEXT),
        ("user_defined_type_catalog", TEXT),
        ("user_defined_type_schema", TEXT),
        ("user_defined_type_name", TEXT),
        ("is_insertable_into", TEXT),
        ("is_typed", TEXT),
        ("commit_action", TEXT),
    ]);
    for r in listed(s) {
        // Postgres lists materialized views in neither `tables` nor `views`; tools
        // (Grafana's table picker) then miss them, so they are listed as views here.
        let kind = match r.kind {
            'r' => "BASE TABLE",
            'f' => "FOREIGN",
            _ => "VIEW",
        };
        t.push(vec![
            text(DB),
            text(schema_of(s, &r)),
            text(&r.name),
            text(kind),
            v::null(),
            v::null(),
            v::null(),
            v::null(),
            v::null(),
            text(if r.kind == 'r' { "YES" } else { "NO" }),
            text("NO"),
            v::null(),
        ]);
    }
    t
}

fn columns(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("table_catalog", TEXT),
        ("table_schema", TEXT),
        ("table_name", TEXT),
        ("column_name", TEXT),
        ("ordinal_position", I32),
        ("column_default", TEXT),
        ("is_nullable", TEXT),
        ("data_type", TEXT),
        ("character_maximum_length", I32),
        ("character_octet_length", I32),
        ("numeric_precision", I32),
        ("numeric_precision_radix", I32),
        ("numeric_scale", I32),
        ("datetime_precision", I32),
        ("interval_type", TEXT),
        ("udt_catalog", TEXT),
        ("udt_schema", TEXT),
        ("udt_name", TEXT),
        ("is_identity", TEXT),
        ("is_generated", TEXT),
        ("is_updatable", TEXT),
    ]);
    for r in listed(s) {
        for (i, c) in r.columns.iter().enumerate() {
            let oid = c.type_oid;
            let pt = types::by_oid(oid);
            let (precision, radix, scale) = match &c.ty {
                DataType::Int16 => (Some(16), Some(2), Some(0)),
                DataType::Int32 => (Some(32), Some(2), Some(0)),
                DataType::Int64 => (Some(64), Some(2), Some(0)),
                DataType::Float32 => (Some(24), Some(2), None),
                DataType::Float64 => (Some(53), Some(2), None),
                DataType::Decimal128(p, s) => (Some(*p as i32), Some(10), Some(*s as i32)),
                _ => (None, None, None),
            };
            let opt = |x: Option<i32>| x.map_or(v::null(), i32);
            t.push(vec![
                text(DB),
                text(schema_of(s, &r)),
                text(&r.name),
                text(&c.name),
                i32(i as i32 + 1),
                c.default.as_deref().map_or(v::null(), text),
                text(if c.not_null { "NO" } else { "YES" }),
                text(match oid {
                    1043 => "character varying".to_string(),
                    _ if pt.is_some_and(|p| p.category == 'A') => "ARRAY".to_string(),
                    _ => pt.map_or("text", |p| p.sql_name).to_string(),
                }),
                v::null(),
                if matches!(oid, 25 | 1043) {
                    i32(1 << 30)
                } else {
                    v::null()
                },
                opt(precision),
                opt(radix),
                opt(scale),
                if matches!(oid, 1114 | 1184 | 1083 | 1186) {
                    i32(6)
                } else if oid == 1082 {
                    i32(0)
                } else {
                    v::null()
                },
                v::null(),
                text(DB),
                text("pg_catalog"),
                text(pt.map_or("text", |p| p.name)),
                text("NO"),
                text("NEVER"),
                text(if r.kind == 'r' { "YES" } else { "NO" }),
            ]);
        }
    }
    t
}

fn views(s: &Snapshot) -> Table {
    let mut t = Table::new(&[
        ("table_catalog", TEXT),
        ("table_schema", TEXT),
        ("table_name", TEXT),
        ("view_definition", TEXT),
        ("check_option", TEXT),
        ("is_updatable", TEXT),
        ("is_insertable_into", TEXT),
    ]);
    for r in listed(s)
        .into_iter()
        .filter(|r| matches!(r.kind, 'v' | 'm'))
    {
        t.push(vec![
            text(DB),
            text(schema_of(s, &r)),
            text(&r.name),
            r.definition.clone().map_or(v::null(), text),
            text("NONE"),
            text("NO"),
            text("NO"),
        ]);
    }
    t
}

fn constraint_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("constraint_catalog", TEXT),
        ("constraint_schema", TEXT),
        ("constraint_name", TEXT),
        ("table_catalog", TEXT),
        ("table_schema", TEXT),
        ("table_name", TEXT),
    ]
}

fn table_constraints(s: &Snapshot) -> Table {
    let mut cols = constraint_columns();
    cols.extend([
        ("constraint_type", TEXT),
        ("is_deferrable", TEXT),
        ("initially_deferred", TEXT),
        ("enforced", TEXT),
        ("nulls_distinct", TEXT),
    ]);
    let mut t = Table::new(&cols);
    for r in listed(s).into_iter().filter(|r| !r.pk.is_empty()) {
        t.push(vec![
            text(DB),
            text(schema_of(s, &r)),
            text(format!("{}_pkey", r.name)),
            text(DB),
            text(schema_of(s, &r)),
            text(&r.name),
            text("PRIMARY KEY"),
            text("NO"),
            text("NO"),
            text("YES"),
            v::null(),
        ]);
    }
    t
}

fn key_column_usage(s: &Snapshot) -> Table {
    let mut cols = constraint_columns();
    cols.extend([
        ("column_name", TEXT),
        ("ordinal_position", I32),
        ("position_in_unique_constraint", I32),
    ]);
    let mut t = Table::new(&cols);
    for r in listed(s) {
        for (pos, &n) in r.pk.iter().enumerate() {
            let Some(c) = r.columns.get(n as usize - 1) else {
                continue;
            };
            t.push(vec![
                text(DB),
                text(schema_of(s, &r)),
                text(format!("{}_pkey", r.name)),
                text(DB),
                text(schema_of(s, &r)),
                text(&r.name),
                text(&c.name),
                i32(pos as i32 + 1),
                v::null(),
            ]);
        }
    }
    t
}

fn constraint_column_usage(s: &Snapshot) -> Table {
    let mut cols = vec![
        ("table_catalog", TEXT),
        ("table_schema", TEXT),
        ("table_name", TEXT),
        ("column_name", TEXT),
    ];
    cols.extend([
        ("constraint_catalog", TEXT),
        ("constraint_schema", TEXT),
        ("constraint_name", TEXT),
    ]);
    let mut t = Table::new(&cols);
    for r in listed(s) {
        for &n in &r.pk {
            let Some(c) = r.columns.get(n as usize - 1) else {
                continue;
            };
            t.push(vec![
                text(DB),
                text(schema_of(s, &r)),
                text(&r.name),
                text(&c.name),
                text(DB),
                text(schema_of(s, &r)),
                text(format!("{}_pkey", r.name)),
            ]);
        }
    }
    t
}

fn referential_constraints(_: &Snapshot) -> Table {
    Table::new(&[
        ("constraint_catalog", TEXT),
        ("constraint_schema", TEXT),
        ("constraint_name", TEXT),
        ("unique_constraint_catalog", TEXT),
        ("unique_constraint_schema", TEXT),
        ("unique_constraint_name", TEXT),
        ("match_option", TEXT),
        ("update_rule", TEXT),
        ("delete_rule", TEXT),
    ])
}

fn check_constraints(_: &Snapshot) -> Table {
    Table::new(&[
        ("constraint_catalog", TEXT),
        ("constraint_schema", TEXT),
        ("constraint_name", TEXT),
        ("check_clause", TEXT),
    ])
}

fn routines(_: &Snapshot) -> Table {
    Table::new(&[
        ("specific_catalog", TEXT),
        ("specific_schema", TEXT),
        ("specific_name", TEXT),
        ("routine_catalog", TEXT),
        ("routine_schema", TEXT),
        ("routine_name", TEXT),
        ("routine_type", TEXT),
        ("data_type", TEXT),
    ])
}

fn parameters(_: &Snapshot) -> Table {
    Table::new(&[
        ("specific_catalog", TEXT),
        ("specific_schema", TEXT),
        ("specific_name", TEXT),
        ("ordinal_position", I32),
        ("parameter_mode", TEXT),
        ("parameter_name", TEXT),
        ("data_type", TEXT),
    ])
}

fn triggers(_: &Snapshot) -> Table {
    Table::new(&[
        ("trigger_catalog", TEXT),
        ("trigger_schema", TEXT),
        ("trigger_name", TEXT),
        ("event_manipulation", TEXT),
        ("event_object_schema", TEXT),
        ("event_object_table", TEXT),
    ])
}

fn sequences(_: &Snapshot) -> Table {
    Table::new(&[
        ("sequence_catalog", TEXT),
        ("sequence_schema", TEXT),
        ("sequence_name", TEXT),
        ("data_type", TEXT),
    ])
}
