//! Catalog objects: tables and materialized views, persisted as one JSON document in the
//! storage catalog key (written in the same commit as the DDL's effects).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::sqlparser;
use crate::PlannerError;

/// The SQL types a table column can have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    Boolean,
    SmallInt,
    Int,
    BigInt,
    Real,
    Double,
    /// `numeric(precision, scale)`; plain `numeric` is `numeric(38, 10)`.
    Numeric(u8, i8),
    Varchar,
    Text,
    Date,
    Timestamp,
    TimestampTz,
    Interval,
    Bytea,
    /// Stored as its canonical text (`freshet_storage::jsonb`) in a `LargeUtf8` column.
    Jsonb,
    /// A one-dimensional array (`INT[]`) of a type that is not an array.
    Array(Box<SqlType>),
    /// RisingWave's `STRUCT<name type, …>`: named fields, each nullable (an Arrow struct).
    Struct(Vec<StructField>),
}

/// One field of a [`SqlType::Struct`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructField {
    pub name: String,
    pub ty: SqlType,
}

impl SqlType {
    pub fn to_arrow(&self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::SmallInt => DataType::Int16,
            SqlType::Int => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Real => DataType::Float32,
            SqlType::Double => DataType::Float64,
            SqlType::Numeric(p, s) => DataType::Decimal128(*p, *s),
            SqlType::Varchar | SqlType::Text => DataType::Utf8,
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")))
            }
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            SqlType::Bytea => DataType::Binary,
            SqlType::Jsonb => DataType::LargeUtf8,
            SqlType::Array(elem) => DataType::List(Arc::new(freshet_storage::codec::list_field(
                &elem.to_arrow(),
            ))),
            SqlType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|f| Field::new(&f.name, f.ty.to_arrow(), true))
                    .collect(),
            ),
        }
    }

    /// The type a table stores a query's column of Arrow type `t` as (`CREATE TABLE …
    /// AS`); `None` for a type no column has.
    pub fn from_arrow(t: &DataType) -> Option<SqlType> {
        Some(match t {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => SqlType::SmallInt,
            DataType::Int32 | DataType::UInt16 => SqlType::Int,
            DataType::Int64 | DataType::UInt32 => SqlType::BigInt,
            DataType::UInt64 => SqlType::Numeric(20, 0),
            DataType::Float16 | DataType::Float32 => SqlType::Real,
            DataType::Float64 => SqlType::Double,
            DataType::Decimal128(p, s) => SqlType::Numeric(*p, *s),
            // An untyped NULL is text, as in Postgres.
            DataType::Utf8 | DataType::Utf8View | DataType::Null => SqlType::Text,
            DataType::LargeUtf8 => SqlType::Jsonb,
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Timestamp(_, None) => SqlType::Timestamp,
            DataType::Timestamp(_, Some(_)) => SqlType::TimestampTz,
            DataType::Interval(_) => SqlType::Interval,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytea,
            DataType::List(f) | DataType::LargeList(f) => match SqlType::from_arrow(f.data_type())?
            {
                SqlType::Array(_) => return None,
                elem => SqlType::Array(Box::new(elem)),
            },
            DataType::Struct(fields) => SqlType::Struct(
                fields
                    .iter()
                    .map(|f| {
                        Some(StructField {
                            name: f.name().clone(),
                            ty: SqlType::from_arrow(f.data_type())?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        })
    }

    /// Converts a parsed SQL type.
    pub fn from_ast(t: &sqlparser::ast::DataType) -> Result<SqlType, PlannerError> {
        use sqlparser::ast::{DataType as D, ExactNumberInfo, TimezoneInfo};
        Ok(match t {
            D::Boolean | D::Bool => SqlType::Boolean,
            D::SmallInt(_) | D::Int2(_) => SqlType::SmallInt,
            D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Int,
            D::BigInt(_) | D::Int8(_) => SqlType::BigInt,
            D::Real | D::Float4 => SqlType::Real,
            D::Double(_) | D::DoublePrecision | D::Float8 | D::Float(_) => SqlType::Double,
            D::Numeric(info) | D::Decimal(info) | D::Dec(info) => match info {
                ExactNumberInfo::None => SqlType::Numeric(38, 10),
                ExactNumberInfo::Precision(p) => SqlType::Numeric(check_precision(*p)?, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => {
                    let p = check_precision(*p)?;
                    let s = i8::try_from(*s)
                        .ok()
                        .filter(|s| *s >= 0 && (*s as u8) <= p)
                        .ok_or_else(|| {
                            PlannerError::InvalidParameter(format!(
                                "NUMERIC scale {s} must be between 0 and precision {p}"
                            ))
                        })?;
                    SqlType::Numeric(p, s)
                }
            },
            D::Varchar(_) | D::CharacterVarying(_) | D::String(_) => SqlType::Varchar,
            D::Text => SqlType::Text,
            D::Date => SqlType::Date,
            D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                SqlType::Timestamp
            }
            D::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => SqlType::TimestampTz,
            D::Interval { .. } => SqlType::Interval,
            D::Bytea => SqlType::Bytea,
            D::JSONB | D::JSON => SqlType::Jsonb,
            D::Array(
                sqlparser::ast::ArrayElemTypeDef::SquareBracket(elem, _)
                | sqlparser::ast::ArrayElemTypeDef::AngleBracket(elem),
            ) => match SqlType::from_ast(elem)? {
                SqlType::Array(_) => {
                    return Err(PlannerError::Unsupported(format!(
                        "type {t} (multidimensional arrays) is not supported"
                    )))
                }
                elem => SqlType::Array(Box::new(elem)),
            },
            D::Struct(fields, _) => struct_type(t, fields)?,
            other => {
                return Err(PlannerError::Unsupported(format!(
                    "type {other} is not supported"
                )))
            }
        })
    }

    /// The name Postgres prints for the type.
    pub fn pg_name(&self) -> String {
        match self {
            SqlType::Boolean => "boolean".into(),
            SqlType::SmallInt => "smallint".into(),
            SqlType::Int => "integer".into(),
            SqlType::BigInt => "bigint".into(),
            SqlType::Real => "real".into(),
            SqlType::Double => "double precision".into(),
            SqlType::Numeric(p, s) => format!("numeric({p},{s})"),
            SqlType::Varchar => "character varying".into(),
            SqlType::Text => "text".into(),
            SqlType::Date => "date".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Interval => "interval".into(),
            SqlType::Bytea => "bytea".into(),
            SqlType::Jsonb => "jsonb".into(),
            SqlType::Array(elem) => format!("{}[]", elem.pg_name()),
            // RisingWave's spelling (Postgres has no anonymous struct types).
            SqlType::Struct(fields) => format!("struct<{}>", field_list(fields, SqlType::pg_name)),
        }
    }
}

impl SqlType {
    /// The type as `SHOW CREATE` writes it: Postgres' name in capitals, a struct's field
    /// names as they are.
    pub fn sql_name(&self) -> String {
        match self {
            SqlType::Array(elem) => format!("{}[]", elem.sql_name()),
            SqlType::Struct(fields) => format!("STRUCT<{}>", field_list(fields, SqlType::sql_name)),
            other => other.pg_name().to_uppercase(),
        }
    }
}

/// A struct's fields as `name type, …`, each type written by `type_name`.
fn field_list(fields: &[StructField], type_name: fn(&SqlType) -> String) -> String {
    fields
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                crate::pg_catalog::functions::quote_ident(&f.name),
                type_name(&f.ty)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `STRUCT<name type, …>` type: every field named, names unique.
fn struct_type(
    t: &sqlparser::ast::DataType,
    fields: &[sqlparser::ast::StructField],
) -> Result<SqlType, PlannerError> {
    if fields.is_empty() {
        return Err(PlannerError::Unsupported(format!(
            "type {t} (a struct without fields) is not supported"
        )));
    }
    let mut out: Vec<StructField> = Vec::with_capacity(fields.len());
    for f in fields {
        let name = f.field_name.as_ref().ok_or_else(|| {
            PlannerError::Unsupported(format!("type {t}: every struct field needs a name"))
        })?;
        let name = if name.quote_style.is_some() {
            name.value.clone()
        } else {
            name.value.to_lowercase()
        };
        if out.iter().any(|o| o.name == name) {
            return Err(PlannerError::DuplicateColumn(name));
        }
        out.push(StructField {
            name,
            ty: SqlType::from_ast(&f.field_type)?,
        });
    }
    Ok(SqlType::Struct(out))
}

fn check_precision(p: u64) -> Result<u8, PlannerError> {
    u8::try_from(p)
        .ok()
        .filter(|p| (1..=38).contains(p))
        .ok_or_else(|| {
            PlannerError::InvalidParameter(format!(
                "NUMERIC precision {p} must be between 1 and 38"
            ))
        })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    /// `DEFAULT expr`, as SQL text (see the server's `session::defaults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// RisingWave's `ON CONFLICT` clause of a table: what an INSERT of a key the table holds
/// does (instead of failing with `23505`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnConflictMode {
    /// `OVERWRITE` (also `DO UPDATE FULL`): the new row replaces the old.
    Overwrite,
    /// `IGNORE` (also `DO NOTHING`): the old row stays.
    Ignore,
    /// `DO UPDATE IF NOT NULL`: the new row's non-NULL values replace the old ones.
    UpdateNonNull,
}

impl OnConflictMode {
    /// The clause as `SHOW CREATE TABLE` writes it.
    pub fn sql(self) -> &'static str {
        match self {
            OnConflictMode::Overwrite => "ON CONFLICT OVERWRITE",
            OnConflictMode::Ignore => "ON CONFLICT IGNORE",
            OnConflictMode::UpdateNonNull => "ON CONFLICT DO UPDATE IF NOT NULL",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u64,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Primary key column indexes (empty: no primary key).
    pub pk: Vec<usize>,
    /// The topic feeding the table, if any.
    #[serde(default)]
    pub feed: Option<TableFeed>,
    /// `WATERMARK FOR column AS column - INTERVAL '…'` (append-only tables only).
    #[serde(default)]
    pub watermark: Option<WatermarkDef>,
    /// `APPEND ONLY`: no UPDATE or DELETE (required with a watermark).
    #[serde(default)]
    pub append_only: bool,
    /// `ON CONFLICT …`: how plain INSERTs and COPY treat a key the table holds.
    #[serde(default)]
    pub on_conflict: Option<OnConflictMode>,
    /// `ON CONFLICT … WITH VERSION COLUMN (v, …)`: a conflicting row replaces (or merges
    /// into) the old one only if its versions, compared in order with NULL lowest, are
    /// not older.
    #[serde(default)]
    pub version_columns: Vec<usize>,
    /// A table without a primary key created since row ids: its rows are stored under a
    /// hidden `_row_id` (RisingWave's), a `bigint` the server assigns, after the columns
    /// (see [`TableDef::stored_schema`]). Tables from before keep their rows as a
    /// multiset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub row_id: bool,
}

/// The hidden column of a table without a primary key.
pub const ROW_ID: &str = "_row_id";

/// A topic feeding a table: `FORMAT UPSERT` (the message key is the primary key, a later
/// message replaces the row, a null value deletes it) or `FORMAT PLAIN` (rows are
/// appended and kept).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableFeed {
    pub topic: String,
    pub properties: Vec<(String, String)>,
    pub startup: String,
    pub encoding: Encoding,
    pub upsert: bool,
    /// `dead_letter_retention` / `dead_letter_max_rows`; `None`: the server's default.
    #[serde(default)]
    pub dead_letters: Option<freshet_engine::dead_letters::Retention>,
}

impl TableDef {
    /// The position of column `name` (`42703` if the table has none).
    pub fn column_index(&self, name: &str) -> Result<usize, PlannerError> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| PlannerError::UndefinedColumn(name.to_string()))
    }

    /// `(column index, lag)` of the watermark column, for the streaming planner.
    pub fn watermark_cols(&self) -> Vec<(usize, i64)> {
        watermark_cols(&self.watermark, &self.columns)
    }

    /// The stored schema. Every field is nullable for the query engine; NOT NULL is
    /// enforced when rows are written.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields()))
    }

    /// The schema its rows are stored (and its changes sent) in: its columns, then
    /// `_row_id` if it has one.
    pub fn stored_schema(&self) -> SchemaRef {
        let mut fields = self.fields();
        if self.row_id {
            fields.push(Field::new(ROW_ID, DataType::Int64, true));
        }
        Arc::new(Schema::new(fields))
    }

    fn fields(&self) -> Vec<Field> {
        self.columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.to_arrow(), true))
            .collect()
    }

    /// The primary key of its stored rows: its own, or `_row_id`.
    pub fn stored_pk(&self) -> Vec<usize> {
        if self.row_id {
            vec![self.columns.len()]
        } else {
            self.pk.clone()
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViewDef {
    pub id: u64,
    pub name: String,
    /// The defining query, re-planned at startup.
    pub sql: String,
    /// The relations it reads directly.
    pub depends_on: Vec<u64>,
    /// Output columns that follow the watermark of what it reads: `(column, lag)`.
    #[serde(default)]
    pub watermark_cols: Vec<(usize, i64)>,
    /// `EMIT ON WINDOW CLOSE`.
    #[serde(default)]
    pub emit_on_window_close: bool,
    /// Its rows are only ever inserted (e.g. an EOWC windowed aggregate over a source),
    /// so views over it can use insert-only operators (lookup joins, interval-join state
    /// expiry, sketches).
    #[serde(default)]
    pub append_only: bool,
    /// Set for a sink (`CREATE SINK`): its rows go to the connector instead of being
    /// stored, and it cannot be queried.
    #[serde(default)]
    pub sink: Option<SinkDef>,
    /// Per source it reads, the columns its plan uses (`PlannedView::source_columns`); a
    /// source not listed is read whole.
    #[serde(default)]
    pub source_columns: Vec<(u64, Vec<usize>)>,
    /// Made for one `SUBSCRIBE TO (query)`: dropped when the subscription ends, or at
    /// start-up if the server stopped first.
    #[serde(default)]
    pub subscription: bool,
    /// Planned with Postgres' text casts (`pg_values::view_text_forms`); views created
    /// before them keep DataFusion's, which their stored rows and state hold.
    #[serde(default)]
    pub pg_text_casts: bool,
    /// The most threads its keyed stateful operators' shards run on
    /// (`streaming_parallelism` when it was created, then `ALTER … SET PARALLELISM`;
    /// views from before shards have one). At most [`ViewDef::shards`].
    #[serde(default = "one_shard")]
    pub parallelism: usize,
    /// The shards (vnodes) their state is split into (`streaming_max_parallelism` when it
    /// was created); `None` for views from before it was a setting of its own, whose
    /// shards are their `parallelism`. Fixed: it decides where their state is.
    #[serde(default)]
    pub max_parallelism: Option<usize>,
    /// Its parallelism follows the server's (`--streaming-parallelism`, at most its
    /// shards) at every start: it was created without `SET streaming_parallelism`, or
    /// altered to `ADAPTIVE` (RisingWave's adaptive parallelism). `parallelism` then holds
    /// what it was when last set.
    #[serde(default)]
    pub adaptive: bool,
    /// With several shards, aggregates whose partials combine run in two phases
    /// (`rw_enable_two_phase_agg` when it was created; on for views from before).
    #[serde(default = "two_phase_on")]
    pub two_phase_agg: bool,
    /// The dialect level it was planned at (`crate::dialect`): Postgres behaviours that
    /// change a result's type apply to views created after them only, since its rows
    /// and state are stored in its types. 0 for views from before levels.
    #[serde(default)]
    pub dialect: u32,
    /// Set for an index (`CREATE INDEX`): a view over one relation that stores its rows
    /// ordered by the index's columns first, which queries on that relation read instead
    /// of it when their filters bound those columns.
    #[serde(default)]
    pub index: Option<IndexDef>,
    /// The time zone of the session that created it (`crate::session_zone`), which its
    /// `timestamptz` calendar fields, `date_trunc` and text are computed in; `None`: UTC
    /// (also for views from before).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// What makes a view an index: the relation it indexes and the columns it is ordered by.
/// Its query is `SELECT <key columns>, <included columns> FROM <relation>`, so its rows
/// are the relation's (projected on those columns) and its stored key starts with the
/// index's columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// The table or materialized view it indexes.
    pub on: u64,
    /// The index's columns, in order: the view's first columns.
    pub columns: Vec<String>,
    /// The other columns it stores (all of the relation's others, without `INCLUDE`).
    pub include: Vec<String>,
    /// `DISTRIBUTED BY` as written (shown by `SHOW CREATE INDEX`; storage is not split
    /// by it).
    #[serde(default)]
    pub distributed_by: Vec<String>,
}

impl IndexDef {
    /// The index's stored columns, in order.
    pub fn stored_columns(&self) -> impl Iterator<Item = &String> {
        self.columns.iter().chain(&self.include)
    }
}

impl ViewDef {
    /// The zone it is planned in (see [`ViewDef::time_zone`]).
    pub fn zone(&self) -> crate::pg_text::Zone {
        self.time_zone
            .as_deref()
            .and_then(crate::pg_text::Zone::parse)
            .unwrap_or(crate::pg_text::Zone::Utc)
    }

    /// Whether it reads relation `id`, or (a sink into a table) writes into it.
    pub fn needs(&self, id: u64) -> bool {
        self.depends_on.contains(&id)
            || self.sink.as_ref().is_some_and(|s| s.into_table == Some(id))
    }

    /// The shards its keyed stateful operators' state is split into (see
    /// [`ViewDef::max_parallelism`]).
    pub fn shards(&self) -> usize {
        self.max_parallelism.unwrap_or(self.parallelism)
    }

    /// The most threads its shards run on, given the server's `streaming_parallelism`.
    pub fn threads(&self, server: usize) -> usize {
        match self.adaptive {
            true => server.clamp(1, self.shards()),
            false => self.parallelism,
        }
    }
}

fn two_phase_on() -> bool {
    true
}

fn one_shard() -> usize {
    1
}

pub use crate::sink_def::{KafkaSink, SinkDef, SinkFormat};

/// Metadata columns a source can add with `INCLUDE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncludeKind {
    Partition,
    Offset,
    Timestamp,
    Key,
}

impl IncludeKind {
    pub fn parse(s: &str) -> Option<IncludeKind> {
        Some(match s {
            "partition" => IncludeKind::Partition,
            "offset" => IncludeKind::Offset,
            "timestamp" => IncludeKind::Timestamp,
            "key" => IncludeKind::Key,
            _ => return None,
        })
    }

    pub fn sql_type(self) -> SqlType {
        match self {
            IncludeKind::Partition => SqlType::Int,
            IncludeKind::Offset => SqlType::BigInt,
            IncludeKind::Timestamp => SqlType::TimestampTz,
            IncludeKind::Key => SqlType::Varchar,
        }
    }

    pub fn default_name(self) -> &'static str {
        match self {
            IncludeKind::Partition => "_rw_kafka_partition",
            IncludeKind::Offset => "_rw_kafka_offset",
            IncludeKind::Timestamp => "_rw_kafka_timestamp",
            IncludeKind::Key => "_rw_kafka_key",
        }
    }
}

/// How a source's messages are encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    Json,
    Csv { delimiter: u8, header: bool },
}

/// A stream read from Kafka: not stored; each view over it reads the topic itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceDef {
    pub id: u64,
    pub name: String,
    /// Payload columns.
    pub columns: Vec<ColumnDef>,
    /// Metadata columns, after the payload columns.
    pub includes: Vec<(IncludeKind, String)>,
    pub topic: String,
    /// `properties.*` options without the prefix (librdkafka settings).
    pub properties: Vec<(String, String)>,
    /// `earliest`, `latest`, or `timestamp:<millis>`.
    pub startup: String,
    pub encoding: Encoding,
    /// `WATERMARK FOR column AS column - INTERVAL '…'`.
    #[serde(default)]
    pub watermark: Option<WatermarkDef>,
    /// Where the events come from.
    #[serde(default)]
    pub connector: ConnectorKind,
    /// The generator's `WITH` options (datagen, playback), as written.
    #[serde(default)]
    pub generator_options: Vec<(String, String)>,
    /// `dead_letter_retention` / `dead_letter_max_rows`; `None`: the server's default.
    #[serde(default)]
    pub dead_letters: Option<freshet_engine::dead_letters::Retention>,
}

/// A source's event-time column and how far its watermark trails the largest event time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkDef {
    pub column: String,
    pub delay_micros: i64,
    /// `watermark_idle_timeout` (default 5 s).
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// `WITH TTL`: a table's rows below its watermark are deleted from it (not from the
    /// views over it, which never see a delete for them). A source stores no rows.
    #[serde(default)]
    pub ttl: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectorKind {
    #[default]
    Kafka,
    /// `connector = 'datagen'`: rows generated from `fields.<col>.*` options.
    Datagen,
    /// `connector = 'playback'`: a video service's plays and impressions.
    Playback,
    /// `connector = 'nexmark'`: the Nexmark benchmark's persons, auctions or bids.
    Nexmark,
}

/// `(column index, lag)` of a relation's watermark column, for the streaming planner: a
/// later row's event time is at least the watermark, so the column has lag 1 µs.
fn watermark_cols(watermark: &Option<WatermarkDef>, columns: &[ColumnDef]) -> Vec<(usize, i64)> {
    watermark
        .as_ref()
        .and_then(|w| columns.iter().position(|c| c.name == w.column))
        .map(|i| vec![(i, 1)])
        .unwrap_or_default()
}

impl SourceDef {
    /// `(column index, lag)` of the watermark column, for the streaming planner.
    pub fn watermark_cols(&self) -> Vec<(usize, i64)> {
        watermark_cols(&self.watermark, &self.columns)
    }

    /// Payload columns then `INCLUDE` columns.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.to_arrow(), true))
            .collect();
        for (k, name) in &self.includes {
            fields.push(Field::new(name, k.sql_type().to_arrow(), true));
        }
        Arc::new(Schema::new(fields))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub next_id: u64,
    #[serde(default)]
    pub sources: Vec<SourceDef>,
    pub tables: Vec<TableDef>,
    /// In creation order: a view only reads relations created before it. Sinks are kept
    /// here too (`ViewDef::sink`): they run as views whose rows are not stored.
    pub views: Vec<ViewDef>,
    /// Users other than a password-less bootstrap superuser (see [`crate::users`]).
    #[serde(default)]
    pub users: Vec<crate::users::UserDef>,
    /// Plain (not materialized) views, in creation order: expanded into the statements
    /// that name them (see [`crate::plain_views`]).
    #[serde(default)]
    pub plain_views: Vec<PlainViewDef>,
    /// Schemas other than `public` (`CREATE SCHEMA`), in creation order. A relation in
    /// one is named `schema.name` everywhere in the catalog (see [`crate::schemas`]).
    #[serde(default)]
    pub schemas: Vec<SchemaDef>,
}

/// `CREATE SCHEMA name`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SchemaDef {
    pub id: u64,
    pub name: String,
}

/// `CREATE VIEW name [(columns)] AS query`: nothing is stored or maintained; a statement
/// that names it reads its query instead, as a subquery.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlainViewDef {
    pub id: u64,
    pub name: String,
    /// The query, with the plain views it named already expanded (a view captures its
    /// definition when it is created, as Postgres does).
    pub sql: String,
    /// Its column names, when `CREATE VIEW` gave them.
    pub columns: Vec<String>,
}

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
    Source,
    Sink,
    Index,
    /// A plain (not materialized) view.
    PlainView,
}

impl Catalog {
    pub fn from_json(bytes: &[u8]) -> Result<Catalog, PlannerError> {
        serde_json::from_slice(bytes)
            .map_err(|e| PlannerError::Internal(format!("cannot read the catalog: {e}")))
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data structures cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn allocate_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The schema called `name` (`CREATE SCHEMA`; `public` is not one of them).
    pub fn schema(&self, name: &str) -> Option<&SchemaDef> {
        self.schemas.iter().find(|s| s.name == name)
    }

    /// The names of every table, source, view, sink, index and plain view in schema
    /// `schema`, in creation order within each kind.
    pub fn relations_in(&self, schema: &str) -> Vec<(RelationKind, String)> {
        let mine = |n: &str| crate::schemas::split(n).0 == Some(schema);
        let mut out: Vec<(RelationKind, String)> = Vec::new();
        for v in &self.views {
            if mine(&v.name) {
                let kind = if v.sink.is_some() {
                    RelationKind::Sink
                } else if v.index.is_some() {
                    RelationKind::Index
                } else {
                    RelationKind::View
                };
                out.push((kind, v.name.clone()));
            }
        }
        out.extend(
            self.plain_views
                .iter()
                .filter(|v| mine(&v.name))
                .map(|v| (RelationKind::PlainView, v.name.clone())),
        );
        out.extend(
            self.tables
                .iter()
                .filter(|t| mine(&t.name))
                .map(|t| (RelationKind::Table, t.name.clone())),
        );
        out.extend(
            self.sources
                .iter()
                .filter(|t| mine(&t.name))
                .map(|t| (RelationKind::Source, t.name.clone())),
        );
        out
    }

    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// A materialized view (not a sink, not an index) called `name`.
    pub fn view(&self, name: &str) -> Option<&ViewDef> {
        self.views
            .iter()
            .find(|v| v.name == name && v.sink.is_none() && v.index.is_none())
    }

    /// The plain view called `name`.
    pub fn plain_view(&self, name: &str) -> Option<&PlainViewDef> {
        self.plain_views.iter().find(|v| v.name == name)
    }

    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&ViewDef> {
        self.views
            .iter()
            .find(|v| v.name == name && v.index.is_some())
    }

    /// The indexes on relation `id`, in creation order.
    pub fn indexes_on(&self, id: u64) -> impl Iterator<Item = (&ViewDef, &IndexDef)> {
        self.views
            .iter()
            .filter_map(move |v| v.index.as_ref().filter(|i| i.on == id).map(|i| (v, i)))
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&crate::users::UserDef> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The view or sink with id `id`.
    pub fn view_by_id(&self, id: u64) -> Option<&ViewDef> {
        self.views.iter().find(|v| v.id == id)
    }

    /// A sink called `name`.
    pub fn sink(&self, name: &str) -> Option<&ViewDef> {
        self.views
            .iter()
            .find(|v| v.name == name && v.sink.is_some())
    }

    /// Materialized views, in creation order (without sinks and indexes).
    pub fn materialized_views(&self) -> impl Iterator<Item = &ViewDef> {
        self.views
            .iter()
            .filter(|v| v.sink.is_none() && v.index.is_none())
    }

    /// Sinks, in creation order.
    pub fn sinks(&self) -> impl Iterator<Item = &ViewDef> {
        self.views.iter().filter(|v| v.sink.is_some())
    }

    pub fn kind_of(&self, name: &str) -> Option<(RelationKind, u64)> {
        if let Some(t) = self.table(name) {
            return Some((RelationKind::Table, t.id));
        }
        if let Some(s) = self.source(name) {
            return Some((RelationKind::Source, s.id));
        }
        if let Some(s) = self.sink(name) {
            return Some((RelationKind::Sink, s.id));
        }
        if let Some(i) = self.index(name) {
            return Some((RelationKind::Index, i.id));
        }
        if let Some(v) = self.plain_view(name) {
            return Some((RelationKind::PlainView, v.id));
        }
        self.view(name).map(|v| (RelationKind::View, v.id))
    }

    pub fn source(&self, name: &str) -> Option<&SourceDef> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn source_by_id(&self, id: u64) -> Option<&SourceDef> {
        self.sources.iter().find(|s| s.id == id)
    }

    pub fn name_of(&self, id: u64) -> Option<&str> {
        self.tables
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.name.as_str())
            .or_else(|| {
                self.views
                    .iter()
                    .find(|v| v.id == id)
                    .map(|v| v.name.as_str())
            })
            .or_else(|| self.source_by_id(id).map(|s| s.name.as_str()))
    }

    /// Views that read relation `id` directly.
    pub fn dependents(&self, id: u64) -> Vec<&ViewDef> {
        self.views.iter().filter(|v| v.needs(id)).collect()
    }
}
