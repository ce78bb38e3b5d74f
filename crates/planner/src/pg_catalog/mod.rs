//! Postgres' system catalogs (`pg_catalog`) and the SQL standard's `information_schema`,
//! answered from Freshet's catalog, so that psql's `\d`, SQLAlchemy's reflection, pgjdbc's
//! `DatabaseMetaData` (Metabase, DBeaver) and Grafana's pickers work.
//!
//! - [`oids`]: object identifiers, derived from catalog ids (stable across restarts);
//! - [`types`]: the Postgres types shown for Arrow types;
//! - [`objects`]: Freshet's objects as Postgres sees them (relations with their kind,
//!   columns, keys; roles; namespaces);
//! - [`relations`]: the `pg_catalog` relations; [`info_schema`]: `information_schema`;
//! - [`functions`]: `version()`, `format_type`, `pg_get_indexdef`, `has_table_privilege`, …;
//! - [`rewrite`]: what Postgres tools write that DataFusion does not take as is
//!   (`OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`, `pg_catalog.`-qualified calls,
//!   scalar subqueries over catalogs that are always empty here).
//!
//! Each relation is built (from a [`Snapshot`] of the catalog) only when a statement names
//! it, like the `freshet_catalog` relations.

pub mod functions;
pub mod info_schema;
pub mod objects;
pub mod oids;
pub mod relations;
pub mod rewrite;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::catalog::Catalog;
use crate::PlannerError;

/// The one database Freshet serves (`current_database()`, `pg_database`).
pub const DATABASE_NAME: &str = "freshet";

/// What the catalog relations and functions are answered from: the catalog, the views'
/// column types, and the session asking.
#[derive(Clone)]
pub struct Snapshot {
    pub catalog: Arc<Catalog>,
    /// Output schemas of views by id.
    pub view_schemas: BTreeMap<u64, SchemaRef>,
    /// The user the session is logged in as.
    pub user: String,
    /// The session's settings (`current_setting`, `pg_settings`).
    pub settings: Vec<(String, String)>,
    /// The server's version as `version()` says it.
    pub version: String,
    /// The session's process id (`pg_backend_pid()`).
    pub backend_pid: i32,
    /// Freshet's system relations (`freshet_catalog.*`) with their columns.
    pub freshet_catalog: Vec<(String, SchemaRef)>,
    /// The server's sessions (`pg_stat_activity`).
    pub activity: Vec<SessionActivity>,
    /// Cancels or ends other sessions (`pg_cancel_backend`, `pg_terminate_backend`).
    pub signals: Option<Arc<dyn Signals>>,
    /// Where `set_config(name, value, is_local)` leaves the settings it makes, for the
    /// session to apply when the statement ends.
    pub set_configs: Option<SetConfigs>,
}

/// `set_config` calls: name, value, and whether local to the transaction.
pub type SetConfigs = Arc<std::sync::Mutex<Vec<(String, String, bool)>>>;

/// One session as `pg_stat_activity` shows it. Times are microseconds since the epoch.
#[derive(Clone, Debug)]
pub struct SessionActivity {
    pub pid: i32,
    pub user: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub client_port: Option<i32>,
    pub backend_start: i64,
    pub xact_start: Option<i64>,
    pub query_start: Option<i64>,
    pub state_change: i64,
    pub state: String,
    pub query: String,
}

/// What `pg_cancel_backend` and `pg_terminate_backend` do, given by the server.
pub trait Signals: Send + Sync {
    /// Cancels `pid`'s running statement (or, with `terminate`, ends the session) on
    /// behalf of the session's user: `Ok(false)` if there is no such session.
    fn signal(&self, pid: i32, terminate: bool) -> Result<bool, SqlStateError>;
}

/// An error with its SQLSTATE (and Postgres' detail and hint), raised by a function.
pub use freshet_engine::numeric_special::SqlStateError;

impl Snapshot {
    pub fn setting(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.settings
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A relation's columns and rows, built for one statement.
pub struct Table {
    pub fields: Vec<Field>,
    pub rows: Vec<Vec<ScalarValue>>,
}

/// Column types of catalog relations.
pub mod ty {
    use datafusion::arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    /// `oid`, `regclass`, `regproc`, …
    pub const OID: DataType = DataType::UInt32;
    /// `name`, `text`, `"char"`
    pub const TEXT: DataType = DataType::Utf8;
    pub const BOOL: DataType = DataType::Boolean;
    pub const I16: DataType = DataType::Int16;
    pub const I32: DataType = DataType::Int32;
    pub const I64: DataType = DataType::Int64;
    pub const F32: DataType = DataType::Float32;
    /// `timestamptz` (microseconds, UTC).
    pub fn timestamptz() -> DataType {
        DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some(Arc::from("+00:00")),
        )
    }

    pub fn list(of: DataType) -> DataType {
        DataType::List(Arc::new(Field::new("item", of, true)))
    }
}

impl Table {
    pub fn new(columns: &[(&str, DataType)]) -> Table {
        Table {
            fields: columns
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<ScalarValue>) {
        debug_assert_eq!(row.len(), self.fields.len());
        self.rows.push(row);
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.clone()))
    }

    pub fn into_batches(self) -> Result<(SchemaRef, Vec<RecordBatch>), PlannerError> {
        let schema = self.schema();
        if self.rows.is_empty() {
            return Ok((schema, vec![]));
        }
        let batch = freshet_engine::chunk::rows_to_batch(schema.clone(), &self.rows)
            .map_err(|e| PlannerError::Internal(format!("building a catalog relation: {e}")))?;
        Ok((schema, vec![batch]))
    }
}

/// Values of catalog rows.
pub mod v {
    use datafusion::common::ScalarValue;
    use std::sync::Arc;

    pub fn oid(o: u32) -> ScalarValue {
        ScalarValue::UInt32(Some(o))
    }
    pub fn text(s: impl Into<String>) -> ScalarValue {
        ScalarValue::Utf8(Some(s.into()))
    }
    pub fn bool(b: bool) -> ScalarValue {
        ScalarValue::Boolean(Some(b))
    }
    pub fn i16(n: i16) -> ScalarValue {
        ScalarValue::Int16(Some(n))
    }
    pub fn i32(n: i32) -> ScalarValue {
        ScalarValue::Int32(Some(n))
    }
    pub fn i64(n: i64) -> ScalarValue {
        ScalarValue::Int64(Some(n))
    }
    /// A `timestamptz` from microseconds since the epoch (NULL for none).
    pub fn timestamptz(micros: Option<i64>) -> ScalarValue {
        ScalarValue::TimestampMicrosecond(micros, Some(Arc::from("+00:00")))
    }
    pub fn f32(n: f32) -> ScalarValue {
        ScalarValue::Float32(Some(n))
    }
    /// A NULL of the column's type (rows_to_batch casts a typeless NULL).
    pub fn null() -> ScalarValue {
        ScalarValue::Null
    }
    pub fn i16s(ns: &[i16]) -> ScalarValue {
        let values: Vec<ScalarValue> = ns.iter().map(|n| i16(*n)).collect();
        ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &datafusion::arrow::datatypes::DataType::Int16,
        ))
    }
    pub fn oids(ns: &[u32]) -> ScalarValue {
        let values: Vec<ScalarValue> = ns.iter().map(|n| oid(*n)).collect();
        ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &datafusion::arrow::datatypes::DataType::UInt32,
        ))
    }
    pub fn texts(ss: &[&str]) -> ScalarValue {
        let values: Vec<ScalarValue> = ss.iter().map(|s| text(*s)).collect();
        ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &datafusion::arrow::datatypes::DataType::Utf8,
        ))
    }
    /// A NULL list of `of` elements.
    pub fn null_list(of: &datafusion::arrow::datatypes::DataType) -> ScalarValue {
        ScalarValue::List(Arc::new(datafusion::arrow::array::ListArray::new_null(
            Arc::new(datafusion::arrow::datatypes::Field::new(
                "item",
                of.clone(),
                true,
            )),
            1,
        )))
    }
}

/// The schemas catalog relations live in, with their names.
pub const PG_CATALOG: &str = "pg_catalog";
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// A catalog relation: where it lives, how it is built, and whether Freshet ever has
/// rows in it (a scalar subquery over an always-empty relation is NULL; see
/// [`rewrite`]).
pub struct Relation {
    pub schema: &'static str,
    pub name: &'static str,
    pub build: fn(&Snapshot) -> Table,
    pub always_empty: bool,
}

/// Every catalog relation.
pub fn all() -> impl Iterator<Item = &'static Relation> {
    relations::RELATIONS.iter().chain(info_schema::RELATIONS)
}

/// The relation `schema.name` (`schema` is `pg_catalog` or `information_schema`).
pub fn find(schema: &str, name: &str) -> Option<&'static Relation> {
    all().find(|r| r.schema == schema && r.name == name)
}

/// Whether `name` (unqualified) is a `pg_catalog` relation: Postgres searches
/// `pg_catalog` before the user's schemas.
pub fn is_pg_catalog_name(name: &str) -> bool {
    relations::RELATIONS.iter().any(|r| r.name == name)
}

/// Builds relation `rel` for `snapshot`.
pub fn build(
    rel: &Relation,
    snapshot: &Snapshot,
) -> Result<(SchemaRef, Vec<RecordBatch>), PlannerError> {
    (rel.build)(snapshot).into_batches()
}

/// The type an empty relation's column has, for callers that only need the shape.
pub fn column_type(rel: &Relation, column: &str) -> Option<DataType> {
    let t = (rel.build)(&Snapshot {
        catalog: Arc::new(Catalog::default()),
        view_schemas: BTreeMap::new(),
        user: String::new(),
        settings: Vec::new(),
        version: String::new(),
        backend_pid: 0,
        freshet_catalog: Vec::new(),
        activity: Vec::new(),
        signals: None,
        set_configs: None,
    });
    t.fields
        .iter()
        .find(|f| f.name() == column)
        .map(|f| f.data_type().clone())
}
