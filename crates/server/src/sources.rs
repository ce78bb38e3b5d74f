//! Sources: `CREATE SOURCE` validation and the readers that feed views.
//!
//! Each view that reads a source directly gets its own Kafka reader, starting from the
//! offsets the view committed (or the source's startup position for a new view, which is
//! how a view created after data was produced backfills it).

use std::collections::BTreeMap;

use freshet_connectors::decode::{Decoder, Format};
use freshet_connectors::generator;
use freshet_connectors::kafka::{self, Include, KafkaConfig, ReaderHandle, SourceBatch, Startup};
use freshet_connectors::kafka_reader::SharedReaders;
use freshet_engine::coordinator::{
    stored_offsets, stored_watermark, Engine, FeedData, Late, Pipeline, SourceData,
};
use freshet_engine::dead_letters::Retention;
use freshet_planner::catalog::{
    ColumnDef, ConnectorKind, Encoding, IncludeKind, SourceDef, SqlType, TableDef, TableFeed,
    WatermarkDef,
};
use freshet_planner::parser::CreateSource;
use freshet_planner::PlannerError;
use freshet_storage::Store;

use crate::error::ServerError;
use crate::session::ident_name;

/// Builds a source definition from `CREATE SOURCE`, checking every option.
/// Source `name` (its catalog name) as `cs` defines it.
pub fn source_def(id: u64, name: String, cs: &CreateSource) -> Result<SourceDef, ServerError> {
    let (dead_letters, options) = dead_letter_options(&cs.options)?;
    let cs = &CreateSource {
        options,
        ..cs.clone()
    };
    let mut columns: Vec<ColumnDef> = Vec::new();
    for c in &cs.columns {
        let cname = ident_name(&c.name);
        if columns.iter().any(|x| x.name == cname) {
            return Err(PlannerError::DuplicateColumn(cname).into());
        }
        if !c.options.is_empty() {
            return Err(ServerError::Unsupported(format!(
                "column constraints on source column \"{cname}\""
            )));
        }
        columns.push(ColumnDef {
            name: cname,
            ty: SqlType::from_ast(&c.data_type)?,
            not_null: false,
            default: None,
        });
    }
    let mut includes = Vec::new();
    for (what, alias) in &cs.includes {
        let kind = IncludeKind::parse(what).ok_or_else(|| {
            ServerError::Unsupported(format!(
                "INCLUDE {what}: expected partition, offset, timestamp or key"
            ))
        })?;
        let col = alias
            .as_ref()
            .map(ident_name)
            .unwrap_or_else(|| kind.default_name().to_string());
        if columns.iter().any(|x| x.name == col) || includes.iter().any(|(_, n)| n == &col) {
            return Err(PlannerError::DuplicateColumn(col).into());
        }
        includes.push((kind, col));
    }
    let watermark = parse_watermark(cs, &columns)?;
    let connector = match cs
        .options
        .iter()
        .find(|(k, _)| k == "connector")
        .map(|(_, v)| v.to_lowercase())
        .as_deref()
    {
        Some("datagen") => ConnectorKind::Datagen,
        Some("playback") => ConnectorKind::Playback,
        Some("nexmark") => ConnectorKind::Nexmark,
        _ => ConnectorKind::Kafka,
    };
    if connector != ConnectorKind::Kafka {
        if !includes.is_empty() {
            return Err(ServerError::Unsupported(
                "INCLUDE on a generator source (datagen, playback, nexmark)".into(),
            ));
        }
        let kind = generator_kind(connector);
        let prefix = kind.prefix();
        let mut options = cs.options.clone();
        let start_key = format!("{prefix}.start.millis");
        if !options.iter().any(|(k, _)| *k == start_key) {
            // Fixed now, so that a replay regenerates the same event times.
            options.push((start_key, chrono::Utc::now().timestamp_millis().to_string()));
        }
        let cols: Vec<_> = columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.to_arrow()))
            .collect();
        generator::GeneratorConfig::parse(kind, &cols, &options)
            .map_err(ServerError::InvalidOption)?;
        return Ok(SourceDef {
            id,
            name,
            columns,
            includes,
            topic: String::new(),
            properties: Vec::new(),
            startup: "earliest".into(),
            encoding: Encoding::Json,
            watermark,
            connector,
            generator_options: options,
            dead_letters,
        });
    }
    let TableFeed {
        topic,
        properties,
        startup,
        encoding,
        ..
    } = connector_options(cs)?;
    if cs.format != "plain" {
        return Err(ServerError::Unsupported(format!(
            "FORMAT {} for a source (sources are FORMAT PLAIN; upsert topics become tables)",
            cs.format.to_uppercase()
        )));
    }
    Ok(SourceDef {
        id,
        name,
        columns,
        includes,
        topic,
        properties,
        startup,
        encoding,
        watermark,
        connector,
        generator_options: Vec::new(),
        dead_letters,
    })
}

/// A `WITH` option: name and value.
type Opt = (String, String);

/// Takes the dead-letter retention options (`dead_letter_retention = '3 days'`,
/// `dead_letter_max_rows = 10000`; `'none'` for no limit) out of a source's or fed
/// table's options; returns the retention (`None` if neither is given) and the other
/// options.
pub fn dead_letter_options(options: &[Opt]) -> Result<(Option<Retention>, Vec<Opt>), ServerError> {
    let mut retention: Option<Retention> = None;
    let mut rest = Vec::new();
    for (k, v) in options {
        let none = v.trim().eq_ignore_ascii_case("none");
        match k.as_str() {
            "dead_letter_retention" => {
                let age = if none {
                    None
                } else {
                    let ms = parse_duration_ms(v)?;
                    if ms == 0 {
                        return Err(ServerError::InvalidOption(
                            "dead_letter_retention must be positive, or 'none'".into(),
                        ));
                    }
                    Some(i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX))
                };
                retention
                    .get_or_insert_with(Retention::default)
                    .max_age_micros = age;
            }
            "dead_letter_max_rows" => {
                let rows = if none {
                    None
                } else {
                    Some(v.trim().parse::<u64>().map_err(|_| {
                        ServerError::InvalidOption(format!(
                            "dead_letter_max_rows must be a number of rows or 'none', not \"{v}\""
                        ))
                    })?)
                };
                retention.get_or_insert_with(Retention::default).max_rows = rows;
            }
            _ => rest.push((k.clone(), v.clone())),
        }
    }
    Ok((retention, rest))
}

fn generator_kind(c: ConnectorKind) -> generator::Kind {
    match c {
        ConnectorKind::Datagen => generator::Kind::Datagen,
        ConnectorKind::Nexmark => generator::Kind::Nexmark,
        _ => generator::Kind::Playback,
    }
}

/// `WATERMARK FOR col AS col [- INTERVAL '…']`, and the `watermark_idle_timeout` option.
pub fn parse_watermark(
    cs: &CreateSource,
    columns: &[ColumnDef],
) -> Result<Option<WatermarkDef>, ServerError> {
    use freshet_planner::sqlparser::ast::{BinaryOperator, Expr};
    let idle = cs
        .options
        .iter()
        .find(|(k, _)| k == "watermark_idle_timeout")
        .map(|(_, v)| parse_duration_ms(v))
        .transpose()?;
    let Some((col, expr)) = &cs.watermark else {
        if idle.is_some() {
            return Err(ServerError::InvalidOption(
                "watermark_idle_timeout needs a WATERMARK FOR clause".into(),
            ));
        }
        return Ok(None);
    };
    let name = ident_name(col);
    let c = columns
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| PlannerError::UndefinedColumn(name.clone()))?;
    if !matches!(c.ty, SqlType::Timestamp | SqlType::TimestampTz) {
        return Err(ServerError::InvalidOption(format!(
            "the WATERMARK column \"{name}\" must be a timestamp"
        )));
    }
    let is_col = |e: &Expr| matches!(e, Expr::Identifier(i) if ident_name(i) == name);
    let delay_micros = match expr {
        e if is_col(e) => 0,
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if is_col(left) => freshet_planner::window::interval_micros(
            &datafusion::prelude::SessionContext::new(),
            right,
        )?,
        other => {
            return Err(ServerError::Unsupported(format!(
                "WATERMARK expression {other}: expected {name} or {name} - INTERVAL '…'"
            )))
        }
    };
    if delay_micros < 0 {
        return Err(ServerError::InvalidOption(
            "the WATERMARK delay must not be negative".into(),
        ));
    }
    Ok(Some(WatermarkDef {
        column: name,
        delay_micros,
        idle_timeout_ms: idle,
        ttl: cs.watermark_ttl,
    }))
}

/// `'5s'`, `'500ms'`, `'2 min'`, `'7 days'` or a number of milliseconds.
fn parse_duration_ms(v: &str) -> Result<u64, ServerError> {
    let t = v.trim().to_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| ServerError::InvalidOption(format!("invalid duration \"{v}\"")))?;
    let mult = match unit.trim() {
        "" | "ms" => 1,
        "s" | "sec" | "second" | "seconds" => 1000,
        "m" | "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => {
            return Err(ServerError::InvalidOption(format!(
                "invalid duration \"{v}\""
            )))
        }
    };
    Ok(n * mult)
}

/// The connector options shared by sources and fed tables: topic, librdkafka properties,
/// startup position and encoding.
fn connector_options(cs: &CreateSource) -> Result<TableFeed, ServerError> {
    let mut connector = None;
    let mut topic = None;
    let mut properties = Vec::new();
    let mut mode = "earliest".to_string();
    let mut ts = None;
    for (k, v) in &cs.options {
        match k.as_str() {
            "connector" => connector = Some(v.to_lowercase()),
            "topic" => topic = Some(v.clone()),
            "properties.bootstrap.server" | "properties.bootstrap.servers" => {
                properties.push(("bootstrap.servers".to_string(), v.clone()))
            }
            "scan.startup.mode" => mode = v.to_lowercase(),
            "scan.startup.timestamp.millis" => ts = Some(v.clone()),
            "watermark_idle_timeout" => {}
            other => match other.strip_prefix("properties.") {
                Some(p) => properties.push((p.to_string(), v.clone())),
                None => {
                    return Err(ServerError::InvalidOption(format!(
                        "unknown option \"{other}\" for a kafka source"
                    )))
                }
            },
        }
    }
    match connector.as_deref() {
        Some("kafka") => {}
        Some(other) => {
            return Err(ServerError::Unsupported(format!(
                "connector \"{other}\" is not supported yet (available: kafka)"
            )))
        }
        None => {
            return Err(ServerError::InvalidOption(
                "missing option \"connector\"".into(),
            ))
        }
    }
    let topic =
        topic.ok_or_else(|| ServerError::InvalidOption("missing option \"topic\"".into()))?;
    if !properties.iter().any(|(k, _)| k == "bootstrap.servers") {
        return Err(ServerError::InvalidOption(
            "missing option \"properties.bootstrap.server\"".into(),
        ));
    }
    let startup = Startup::parse(&mode, ts.as_deref()).map_err(ServerError::InvalidOption)?;
    let startup = match startup {
        Startup::Earliest => "earliest".to_string(),
        Startup::Latest => "latest".to_string(),
        Startup::Timestamp(t) => format!("timestamp:{t}"),
    };
    let encoding = match cs.encode.as_str() {
        "json" => {
            if let Some((k, _)) = cs.encode_options.first() {
                return Err(ServerError::InvalidOption(format!(
                    "unknown ENCODE JSON option \"{k}\""
                )));
            }
            Encoding::Json
        }
        "csv" => {
            let mut delimiter = b',';
            let mut header = true;
            for (k, v) in &cs.encode_options {
                match k.as_str() {
                    "delimiter" => {
                        delimiter = match v.as_bytes() {
                            [b] => *b,
                            _ if v == "\\t" => b'\t',
                            _ => {
                                return Err(ServerError::InvalidOption(format!(
                                    "CSV delimiter must be one character, not \"{v}\""
                                )))
                            }
                        }
                    }
                    "without_header" => {
                        header = !matches!(v.to_lowercase().as_str(), "true" | "1" | "yes")
                    }
                    other => {
                        return Err(ServerError::InvalidOption(format!(
                            "unknown ENCODE CSV option \"{other}\""
                        )))
                    }
                }
            }
            Encoding::Csv { delimiter, header }
        }
        other => {
            return Err(ServerError::Unsupported(format!(
                "ENCODE {} (available: JSON, CSV)",
                other.to_uppercase()
            )))
        }
    };
    Ok(TableFeed {
        topic,
        properties,
        startup,
        encoding,
        upsert: false,
        dead_letters: None,
    })
}

/// The feed of `CREATE TABLE … WITH (connector = 'kafka', …) FORMAT … ENCODE …`.
pub fn table_feed(cs: &CreateSource, has_pk: bool) -> Result<TableFeed, ServerError> {
    let (dead_letters, options) = dead_letter_options(&cs.options)?;
    let cs = &CreateSource {
        options,
        ..cs.clone()
    };
    let feed = TableFeed {
        dead_letters,
        ..connector_options(cs)?
    };
    let upsert = match cs.format.as_str() {
        "upsert" => {
            if !has_pk {
                return Err(ServerError::InvalidOption(
                    "a FORMAT UPSERT table needs a PRIMARY KEY (the message key)".into(),
                ));
            }
            if feed.encoding != Encoding::Json {
                return Err(ServerError::Unsupported(
                    "FORMAT UPSERT with ENCODE CSV".into(),
                ));
            }
            true
        }
        "plain" => false,
        other => {
            return Err(ServerError::Unsupported(format!(
                "FORMAT {} (available: PLAIN, UPSERT)",
                other.to_uppercase()
            )))
        }
    };
    Ok(TableFeed { upsert, ..feed })
}

fn feed_source(table: &TableDef) -> Option<SourceDef> {
    let f = table.feed.as_ref()?;
    Some(SourceDef {
        id: table.id,
        name: table.name.clone(),
        columns: table.columns.clone(),
        includes: vec![],
        topic: f.topic.clone(),
        properties: f.properties.clone(),
        startup: f.startup.clone(),
        encoding: f.encoding.clone(),
        watermark: table.watermark.clone(),
        connector: ConnectorKind::Kafka,
        generator_options: Vec::new(),
        dead_letters: f.dead_letters,
    })
}

/// Checks the topic of a fed table.
pub fn check_table(table: &TableDef) -> Result<(), ServerError> {
    match feed_source(table) {
        Some(src) => check(&src),
        None => Ok(()),
    }
}

/// What every reader starts from: the engine it feeds, the store holding its committed
/// offsets, and this process's share of the partitions.
#[derive(Clone, Copy)]
pub struct ReaderEnv<'a> {
    pub engine: &'a Engine,
    pub store: &'a Store,
    pub node: Option<crate::node::Node>,
    /// The readers views share, one per source.
    pub shared: &'a std::sync::Arc<freshet_connectors::kafka_reader::SharedReaders>,
}

/// Starts the reader of the topic feeding `table`.
pub fn start_table_reader(
    env: ReaderEnv<'_>,
    table: &TableDef,
    gate: std::sync::Arc<crate::sinks::Gate>,
) -> Result<ReaderHandle, ServerError> {
    let (engine, store, node) = (env.engine, env.store, env.node);
    let (Some(src), Some(feed)) = (feed_source(table), table.feed.as_ref()) else {
        return Err(ServerError::Protocol(format!(
            "table {} has no feed",
            table.name
        )));
    };
    let upsert_key = feed.upsert.then(|| {
        table
            .pk
            .iter()
            .map(|&i| {
                (
                    table.columns[i].name.clone(),
                    table.columns[i].ty.to_arrow(),
                )
            })
            .collect()
    });
    let engine = engine.clone();
    let epoch = engine.epoch();
    let spec = reader_spec(&src, table.id, &table.name, store, upsert_key, node)?;
    let table_id = table.id;
    let mut pipeline = Pipeline::new(READER_PIPELINE);
    let sink = Box::new(move |b: SourceBatch| {
        gate.wait();
        engine
            .feed_queued(
                epoch,
                FeedData {
                    table: table_id,
                    rows: b.chunk,
                    positions: b.positions,
                    deletes: b.deletes,
                    offsets: b.offsets,
                    errors: dead_letters(b.errors),
                    watermark: b.watermark,
                    maxima: b.maxima,
                    late: late_events(b.late),
                },
            )
            .and_then(|a| pipeline.push(a))
            .map_err(|e| e.to_string())
    });
    kafka::spawn(spec, sink).map_err(|message| ServerError::Connector {
        code: "58000",
        message,
    })
}

fn kafka_config(src: &SourceDef) -> KafkaConfig {
    let startup = match src.startup.as_str() {
        "latest" => Startup::Latest,
        s => match s.strip_prefix("timestamp:").and_then(|t| t.parse().ok()) {
            Some(t) => Startup::Timestamp(t),
            None => Startup::Earliest,
        },
    };
    KafkaConfig {
        source_name: src.name.clone(),
        topic: src.topic.clone(),
        properties: src.properties.clone(),
        startup,
    }
}

/// How many batches a reader keeps queued at the engine (see [`Pipeline`]): two lets the
/// reader fetch and decode the next batch while the engine applies the previous one.
const READER_PIPELINE: usize = 2;

/// Checks that the broker answers and the topic exists (blocking, up to ~10 s).
pub fn check(src: &SourceDef) -> Result<(), ServerError> {
    if src.connector != ConnectorKind::Kafka {
        return Ok(());
    }
    kafka_config(src).check().map(|_| ()).map_err(|message| {
        let code = if message.contains("does not exist") {
            "42704"
        } else {
            "08001"
        };
        ServerError::Connector { code, message }
    })
}

/// A reader of `src` for `owner` (a view, or the fed table itself), from the offsets the
/// owner committed.
fn reader_spec(
    src: &SourceDef,
    owner: u64,
    owner_name: &str,
    store: &Store,
    upsert_key: Option<Vec<(String, datafusion::arrow::datatypes::DataType)>>,
    node: Option<crate::node::Node>,
) -> Result<kafka::ReaderSpec, ServerError> {
    let start: BTreeMap<i32, i64> = stored_offsets(store, owner, src.id)?;
    let format = match &src.encoding {
        Encoding::Json => Format::Json,
        Encoding::Csv { delimiter, header } => Format::Csv {
            delimiter: *delimiter,
            header: *header,
        },
    };
    let decoder = Decoder::new(
        src.columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.to_arrow()))
            .collect(),
        format,
    );
    let includes = src
        .includes
        .iter()
        .map(|(k, _)| match k {
            IncludeKind::Partition => Include::Partition,
            IncludeKind::Offset => Include::Offset,
            IncludeKind::Timestamp => Include::Timestamp,
            IncludeKind::Key => Include::Key,
        })
        .collect();
    Ok(kafka::ReaderSpec {
        config: kafka_config(src),
        group_id: format!("freshet-{}-{owner}", src.name),
        relation: owner_name.to_string(),
        decoder,
        includes,
        schema: src.schema(),
        start,
        upsert_key,
        partition_view: node.map(crate::node::Node::partition_view),
        watermark: watermark_spec(src, owner, store)?,
        hold: None,
    })
}

/// Where a view's reader of `src` resumes tracking the watermark.
fn watermark_spec(
    src: &SourceDef,
    owner: u64,
    store: &Store,
) -> Result<Option<kafka::WatermarkSpec>, ServerError> {
    let Some(w) = &src.watermark else {
        return Ok(None);
    };
    let Some(column) = src.columns.iter().position(|c| c.name == w.column) else {
        return Ok(None);
    };
    let (maxima, watermark) = stored_watermark(store, owner, src.id)?;
    Ok(Some(kafka::WatermarkSpec {
        column,
        delay_micros: w.delay_micros,
        idle_timeout: w
            .idle_timeout_ms
            .map(std::time::Duration::from_millis)
            .unwrap_or(freshet_connectors::watermark::DEFAULT_IDLE_TIMEOUT),
        maxima,
        watermark,
    }))
}

/// Dead letters as the engine stores them.
fn dead_letters(errors: Vec<kafka::DeadLetter>) -> Vec<(i32, i64, String, String)> {
    errors
        .into_iter()
        .map(|d| (d.partition, d.offset, d.error, d.payload))
        .collect()
}

/// Late events as the engine stores them.
fn late_events(late: Vec<kafka::LateEvent>) -> Vec<Late> {
    late.into_iter()
        .map(|l| (l.partition, l.offset, l.event_time, l.watermark, l.payload))
        .collect()
}

/// Starts the reader that feeds `view` from `src`; `used_columns`: the columns the view uses,
/// if not all (a Nexmark generator leaves the others NULL instead of generating them).
pub fn start_reader(
    env: ReaderEnv<'_>,
    view: u64,
    view_name: &str,
    src: &SourceDef,
    used_columns: Option<&[usize]>,
    gate: std::sync::Arc<crate::sinks::Gate>,
) -> Result<ReaderHandle, ServerError> {
    let (engine, store, node) = (env.engine, env.store, env.node);
    let engine = engine.clone();
    let (source, source_name) = (src.id, src.name.clone());
    let mut pipeline = Pipeline::new(READER_PIPELINE);
    // Taken before the committed offsets are read (below): a commit failing in between
    // makes this reader's first batch stale, and it starts again.
    let epoch = engine.epoch();
    let m = freshet_engine::metrics::metrics();
    let watermark_gauge = m
        .source_watermark
        .with_label_values(&[src.name.as_str(), view_name]);
    // Kafka readers count per partition themselves; a generator is one partition.
    let generated = (src.connector != ConnectorKind::Kafka).then(|| {
        m.source_rows
            .with_label_values(&[src.name.as_str(), view_name, "0"])
    });
    let spec = match src.connector {
        ConnectorKind::Kafka => Some(reader_spec(src, view, view_name, store, None, node)?),
        _ => None,
    };
    // A Kafka reader shared by several views holds back only this view while a sink
    // downstream is over its bound (see `ReaderSpec::hold`); a reader of its own (and a
    // generator) waits in its sink.
    let shared = spec.as_ref().is_some_and(SharedReaders::shares);
    let hold: kafka::Hold = {
        let gate = gate.clone();
        std::sync::Arc::new(move || gate.is_held())
    };
    let sink = Box::new(move |b: SourceBatch| {
        if !shared {
            gate.wait();
        }
        if let Some(wm) = b.watermark {
            watermark_gauge.set(wm as f64 / 1e6);
        }
        if let Some(c) = &generated {
            c.inc_by(b.chunk.len() as u64);
        }
        engine
            .source_data_queued(
                epoch,
                SourceData {
                    view,
                    source,
                    source_name: source_name.clone(),
                    chunk: b.chunk,
                    positions: b.positions,
                    offsets: b.offsets,
                    errors: dead_letters(b.errors),
                    watermark: b.watermark,
                    maxima: b.maxima,
                    late: late_events(b.late),
                },
            )
            .and_then(|a| pipeline.push(a))
            .map_err(|e| e.to_string())
    });
    let started = if let Some(mut spec) = spec {
        // Views over one source share its reader: one fetch and one decode for all.
        if shared {
            spec.hold = Some(hold);
        }
        let key = format!("{}|{:?}", src.id, spec.config);
        env.shared.join(key, spec, sink)
    } else {
        let columns: Vec<_> = src
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.to_arrow()))
            .collect();
        let config = generator::GeneratorConfig::parse(
            generator_kind(src.connector),
            &columns,
            &src.generator_options,
        )
        .map_err(ServerError::InvalidOption)?;
        let start = stored_offsets(store, view, src.id)?
            .get(&0)
            .copied()
            .unwrap_or(0);
        let watermark = watermark_spec(src, view, store)?;
        // Nexmark fields are generated by name, so a subset is the same values (datagen
        // and playback draw theirs by column position). The event-time column is always
        // generated: the watermark reads it.
        let used = used_columns
            .filter(|_| src.connector == ConnectorKind::Nexmark)
            .map(|cols| {
                let mut used = cols.to_vec();
                if let Some(w) = &watermark {
                    used.push(w.column);
                }
                if used.is_empty() {
                    // count(*) reads no column, but a batch needs one for its rows.
                    used.push(0);
                }
                used.sort_unstable();
                used.dedup();
                used
            });
        generator::spawn(
            generator::GeneratorSpec {
                source_name: src.name.clone(),
                config,
                columns,
                schema: src.schema(),
                start,
                watermark,
                used,
            },
            sink,
        )
    };
    started.map_err(|message| ServerError::Connector {
        code: "58000",
        message,
    })
}
