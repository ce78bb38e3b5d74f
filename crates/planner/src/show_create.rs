//! `SHOW CREATE {TABLE | MATERIALIZED VIEW | VIEW | SOURCE | SINK | INDEX} name`: the statement
//! that creates the object as it is now, written back from the catalog (so objects
//! created by any earlier version have one too).

use crate::catalog::{
    Catalog, ColumnDef, ConnectorKind, Encoding, IncludeKind, RelationKind, SourceDef, TableDef,
    TableFeed, ViewDef, WatermarkDef,
};
use crate::PlannerError;

/// What `SHOW CREATE` names: `TABLE`, `MATERIALIZED VIEW` (or `VIEW`), `SOURCE`, `SINK`.
pub fn kind_of(words: &str) -> Option<RelationKind> {
    Some(match words.to_ascii_uppercase().as_str() {
        "TABLE" => RelationKind::Table,
        "MATERIALIZED VIEW" | "VIEW" => RelationKind::View,
        "SOURCE" => RelationKind::Source,
        "SINK" => RelationKind::Sink,
        "INDEX" => RelationKind::Index,
        _ => return None,
    })
}

/// The `CREATE` statement of `name`, which must be of `kind`. With `redact`, connector
/// properties that hold secrets (passwords, keys, JAAS configurations) read `'***'`.
pub fn create_sql(
    catalog: &Catalog,
    kind: RelationKind,
    name: &str,
    redact: bool,
) -> Result<String, PlannerError> {
    let wrong = |expected: &'static str| PlannerError::WrongObjectType {
        name: name.to_string(),
        expected,
    };
    // SHOW CREATE VIEW names a plain view or a materialized one.
    let kind = match kind {
        RelationKind::View if catalog.plain_view(name).is_some() => RelationKind::PlainView,
        k => k,
    };
    match catalog.kind_of(name) {
        None => Err(PlannerError::UndefinedTable(name.to_string())),
        Some((found, _)) if found != kind => Err(wrong(match kind {
            RelationKind::Table => "table",
            RelationKind::View => "materialized view",
            RelationKind::Source => "source",
            RelationKind::Sink => "sink",
            RelationKind::Index => "index",
            RelationKind::PlainView => "view",
        })),
        Some(_) => Ok(match kind {
            RelationKind::Table => catalog.table(name).map(|t| table(t, redact)),
            RelationKind::View | RelationKind::Sink => catalog
                .views
                .iter()
                .find(|v| v.name == name)
                .map(|v| view(catalog, v)),
            RelationKind::Source => catalog.source(name).map(|x| source(x, redact)),
            RelationKind::Index => catalog.index(name).and_then(|v| index(catalog, v)),
            RelationKind::PlainView => catalog.plain_view(name).map(|v| {
                let cols = match v.columns.is_empty() {
                    true => String::new(),
                    false => format!(
                        " ({})",
                        v.columns
                            .iter()
                            .map(|c| ident(c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                format!(
                    "CREATE VIEW {}{cols} AS {}",
                    relation(&v.name),
                    crate::parser::show_lookups(&v.sql)
                )
            }),
        }
        .unwrap_or_default()),
    }
}

/// `CREATE INDEX name ON relation (columns) INCLUDE (columns) [DISTRIBUTED BY (…)]`.
pub fn index(catalog: &Catalog, v: &ViewDef) -> Option<String> {
    let i = v.index.as_ref()?;
    let list = |cols: &[String]| cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let mut s = format!(
        "CREATE INDEX {} ON {} ({})",
        // An index is in its relation's schema, and CREATE INDEX names it unqualified.
        ident(crate::schemas::split(&v.name).1),
        relation(catalog.name_of(i.on)?),
        list(&i.columns)
    );
    if !i.include.is_empty() {
        s.push_str(&format!(" INCLUDE ({})", list(&i.include)));
    }
    if !i.distributed_by.is_empty() {
        s.push_str(&format!(" DISTRIBUTED BY ({})", list(&i.distributed_by)));
    }
    Some(s)
}

/// A relation's name as SQL writes it: `t` or `s.t`, quoted where it must be.
fn relation(name: &str) -> String {
    crate::schemas::quote(name)
}

/// A name as SQL writes it (quoted when it must be), as `quote_ident` does.
fn ident(s: &str) -> String {
    crate::pg_catalog::functions::quote_ident(s)
}

/// Whether a connector property holds a secret.
fn secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "private", "token"]
        .iter()
        .any(|w| k.contains(w))
}

/// A duration option's value: `'7 days'`, `'30 seconds'`, `'250ms'`.
fn duration(ms: u64) -> String {
    for (unit, name) in [
        (86_400_000, "days"),
        (3_600_000, "hours"),
        (60_000, "minutes"),
        (1000, "seconds"),
    ] {
        if ms >= unit && ms.is_multiple_of(unit) {
            return format!("{} {name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// `dead_letter_retention` and `dead_letter_max_rows`, when they are not the server's.
fn dead_letter_options(r: &Option<freshet_engine::dead_letters::Retention>) -> Vec<String> {
    let Some(r) = r else {
        return Vec::new();
    };
    let age = r
        .max_age_micros
        .map_or("none".into(), |us| duration((us / 1000).max(0) as u64));
    let rows = r.max_rows.map_or("none".into(), |n| n.to_string());
    vec![
        format!("dead_letter_retention = {}", literal(&age)),
        format!("dead_letter_max_rows = {}", literal(&rows)),
    ]
}

/// `watermark_idle_timeout`, if set.
fn idle_timeout(w: &Option<WatermarkDef>) -> Option<String> {
    let ms = w.as_ref()?.idle_timeout_ms?;
    Some(format!(
        "watermark_idle_timeout = {}",
        literal(&duration(ms))
    ))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn column(c: &ColumnDef) -> String {
    let mut s = format!("{} {}", ident(&c.name), c.ty.sql_name());
    if let Some(d) = &c.default {
        s.push_str(&format!(" DEFAULT {d}"));
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s
}

fn watermark(w: &WatermarkDef) -> String {
    format!(
        "WATERMARK FOR {} AS {} - INTERVAL '{} seconds'{}",
        ident(&w.column),
        ident(&w.column),
        fractional_seconds(w.delay_micros),
        if w.ttl { " WITH TTL" } else { "" }
    )
}

fn fractional_seconds(micros: i64) -> String {
    if micros % 1_000_000 == 0 {
        (micros / 1_000_000).to_string()
    } else {
        let s = format!("{:.6}", micros as f64 / 1e6);
        s.trim_end_matches('0').to_string()
    }
}

/// The `WITH` options of a Kafka topic, beside `extra` ones.
struct Kafka<'a> {
    topic: &'a str,
    properties: &'a [(String, String)],
    startup: &'a str,
    encoding: &'a Encoding,
}

/// `WITH (…) FORMAT … ENCODE …` of a Kafka topic.
fn kafka_options(k: Kafka, format: &str, extra: Vec<String>, redact: bool) -> String {
    let Kafka {
        topic,
        properties,
        startup,
        encoding,
    } = k;
    let mut opts = vec![
        "connector = 'kafka'".to_string(),
        format!("topic = {}", literal(topic)),
    ];
    for (k, v) in properties {
        let v = if redact && secret(k) { "***" } else { v };
        opts.push(format!("properties.{k} = {}", literal(v)));
    }
    match startup.strip_prefix("timestamp:") {
        Some(ms) => opts.push(format!("scan.startup.timestamp.millis = {}", literal(ms))),
        None => opts.push(format!("scan.startup.mode = {}", literal(startup))),
    }
    opts.extend(extra);
    let encode = match encoding {
        Encoding::Json => "ENCODE JSON".to_string(),
        Encoding::Csv { delimiter, header } => format!(
            "ENCODE CSV (delimiter = {}, without_header = '{}')",
            literal(&(*delimiter as char).to_string()),
            !header
        ),
    };
    format!("WITH ({}) FORMAT {format} {encode}", opts.join(", "))
}

fn table(t: &TableDef, redact: bool) -> String {
    let mut parts: Vec<String> = t.columns.iter().map(column).collect();
    if !t.pk.is_empty() {
        let key: Vec<String> = t.pk.iter().map(|&i| ident(&t.columns[i].name)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    if let Some(w) = &t.watermark {
        parts.push(watermark(w));
    }
    let mut s = format!("CREATE TABLE {} ({})", relation(&t.name), parts.join(", "));
    if t.append_only {
        s.push_str(" APPEND ONLY");
    }
    if let Some(mode) = t.on_conflict {
        s.push(' ');
        s.push_str(mode.sql());
        if !t.version_columns.is_empty() {
            let cols: Vec<String> = t
                .version_columns
                .iter()
                .map(|&i| ident(&t.columns[i].name))
                .collect();
            s.push_str(&format!(" WITH VERSION COLUMN ({})", cols.join(", ")));
        }
    }
    if let Some(TableFeed {
        topic,
        properties,
        startup,
        encoding,
        upsert,
        dead_letters,
    }) = &t.feed
    {
        let format = if *upsert { "UPSERT" } else { "PLAIN" };
        let mut extra = dead_letter_options(dead_letters);
        extra.extend(idle_timeout(&t.watermark));
        let kafka = Kafka {
            topic,
            properties,
            startup,
            encoding,
        };
        s.push(' ');
        s.push_str(&kafka_options(kafka, format, extra, redact));
    }
    s
}

fn source(src: &SourceDef, redact: bool) -> String {
    let mut parts: Vec<String> = src.columns.iter().map(column).collect();
    if let Some(w) = &src.watermark {
        parts.push(watermark(w));
    }
    let mut s = format!(
        "CREATE SOURCE {} ({})",
        relation(&src.name),
        parts.join(", ")
    );
    for (kind, name) in &src.includes {
        let k = match kind {
            IncludeKind::Partition => "partition",
            IncludeKind::Offset => "offset",
            IncludeKind::Timestamp => "timestamp",
            IncludeKind::Key => "key",
        };
        s.push_str(&format!(" INCLUDE {k} AS {}", ident(name)));
    }
    s.push(' ');
    match src.connector {
        ConnectorKind::Kafka => {
            let mut extra = dead_letter_options(&src.dead_letters);
            extra.extend(idle_timeout(&src.watermark));
            let kafka = Kafka {
                topic: &src.topic,
                properties: &src.properties,
                startup: &src.startup,
                encoding: &src.encoding,
            };
            s.push_str(&kafka_options(kafka, "PLAIN", extra, redact))
        }
        other => {
            let name = match other {
                ConnectorKind::Datagen => "datagen",
                ConnectorKind::Playback => "playback",
                _ => "nexmark",
            };
            let mut opts = vec![format!("connector = '{name}'")];
            for (k, v) in src
                .generator_options
                .iter()
                .filter(|(k, _)| k != "connector")
            {
                opts.push(format!("{k} = {}", literal(v)));
            }
            opts.extend(dead_letter_options(&src.dead_letters));
            opts.extend(idle_timeout(&src.watermark));
            s.push_str(&format!("WITH ({})", opts.join(", ")));
        }
    }
    s
}

fn view(catalog: &Catalog, v: &ViewDef) -> String {
    let eowc = if v.emit_on_window_close {
        " EMIT ON WINDOW CLOSE"
    } else {
        ""
    };
    match &v.sink {
        Some(sink) if sink.into_table.is_some() => {
            let table = sink
                .into_table
                .and_then(|t| catalog.tables.iter().find(|x| x.id == t))
                .map(|t| relation(&t.name))
                .unwrap_or_default();
            format!(
                "CREATE SINK {} INTO {table} AS {}{eowc}",
                relation(&v.name),
                crate::parser::show_lookups(&v.sql)
            )
        }
        Some(sink) => {
            let opts: Vec<String> = sink
                .options
                .iter()
                .map(|(k, val)| format!("{k} = {}", literal(val)))
                .collect();
            format!(
                "CREATE SINK {} AS {}{eowc} WITH ({})",
                relation(&v.name),
                crate::parser::show_lookups(&v.sql),
                opts.join(", ")
            )
        }
        None => format!(
            "CREATE MATERIALIZED VIEW {} AS {}{eowc}",
            relation(&v.name),
            crate::parser::show_lookups(&v.sql)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(ident("plays"), "plays");
        assert_eq!(ident("Plays"), "\"Plays\"");
        assert_eq!(ident("a b"), "\"a b\"");
        assert_eq!(fractional_seconds(5_000_000), "5");
        assert_eq!(fractional_seconds(1_500_000), "1.5");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("order"), "\"order\"");
        assert_eq!(duration(7 * 86_400_000), "7 days");
        assert_eq!(duration(1500), "1500ms");
        assert!(secret("sasl.password") && secret("sasl.jaas.config"));
        assert!(!secret("bootstrap.server"));
    }
}
