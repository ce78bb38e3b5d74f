//! `SHOW CREATE {TABLE | MATERIALIZED VIEW | VIEW | SOURCE | SINK} name`: the statement
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
        _ => return None,
    })
}

/// The `CREATE` statement of `name`, which must be of `kind`.
pub fn create_sql(
    catalog: &Catalog,
    kind: RelationKind,
    name: &str,
) -> Result<String, PlannerError> {
    let wrong = |expected: &'static str| PlannerError::WrongObjectType {
        name: name.to_string(),
        expected,
    };
    match catalog.kind_of(name) {
        None => Err(PlannerError::UndefinedTable(name.to_string())),
        Some((found, _)) if found != kind => Err(wrong(match kind {
            RelationKind::Table => "table",
            RelationKind::View => "materialized view",
            RelationKind::Source => "source",
            RelationKind::Sink => "sink",
        })),
        Some(_) => Ok(match kind {
            RelationKind::Table => catalog.table(name).map(table),
            RelationKind::View | RelationKind::Sink => {
                catalog.views.iter().find(|v| v.name == name).map(view)
            }
            RelationKind::Source => catalog.source(name).map(source),
        }
        .unwrap_or_default()),
    }
}

fn ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn column(c: &ColumnDef) -> String {
    let mut s = format!("{} {}", ident(&c.name), c.ty.pg_name().to_uppercase());
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s
}

fn watermark(w: &WatermarkDef) -> String {
    format!(
        "WATERMARK FOR {} AS {} - INTERVAL '{} seconds'",
        ident(&w.column),
        ident(&w.column),
        fractional_seconds(w.delay_micros)
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

/// `WITH (…) FORMAT … ENCODE …` of a Kafka topic.
fn kafka_options(
    topic: &str,
    properties: &[(String, String)],
    startup: &str,
    format: &str,
    encoding: &Encoding,
) -> String {
    let mut opts = vec![
        "connector = 'kafka'".to_string(),
        format!("topic = {}", literal(topic)),
    ];
    for (k, v) in properties {
        opts.push(format!("properties.{k} = {}", literal(v)));
    }
    match startup.strip_prefix("timestamp:") {
        Some(ms) => opts.push(format!("scan.startup.timestamp.millis = {}", literal(ms))),
        None => opts.push(format!("scan.startup.mode = {}", literal(startup))),
    }
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

fn table(t: &TableDef) -> String {
    let mut parts: Vec<String> = t.columns.iter().map(column).collect();
    if !t.pk.is_empty() {
        let key: Vec<String> = t.pk.iter().map(|&i| ident(&t.columns[i].name)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    if let Some(w) = &t.watermark {
        parts.push(watermark(w));
    }
    let mut s = format!("CREATE TABLE {} ({})", ident(&t.name), parts.join(", "));
    if t.append_only {
        s.push_str(" APPEND ONLY");
    }
    if let Some(TableFeed {
        topic,
        properties,
        startup,
        encoding,
        upsert,
        ..
    }) = &t.feed
    {
        let format = if *upsert { "UPSERT" } else { "PLAIN" };
        s.push(' ');
        s.push_str(&kafka_options(topic, properties, startup, format, encoding));
    }
    s
}

fn source(src: &SourceDef) -> String {
    let mut parts: Vec<String> = src.columns.iter().map(column).collect();
    if let Some(w) = &src.watermark {
        parts.push(watermark(w));
    }
    let mut s = format!("CREATE SOURCE {} ({})", ident(&src.name), parts.join(", "));
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
        ConnectorKind::Kafka => s.push_str(&kafka_options(
            &src.topic,
            &src.properties,
            &src.startup,
            "PLAIN",
            &src.encoding,
        )),
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
            s.push_str(&format!("WITH ({})", opts.join(", ")));
        }
    }
    s
}

fn view(v: &ViewDef) -> String {
    let eowc = if v.emit_on_window_close {
        " EMIT ON WINDOW CLOSE"
    } else {
        ""
    };
    match &v.sink {
        Some(sink) => {
            let opts: Vec<String> = sink
                .options
                .iter()
                .map(|(k, val)| format!("{k} = {}", literal(val)))
                .collect();
            format!(
                "CREATE SINK {} AS {}{eowc} WITH ({})",
                ident(&v.name),
                v.sql,
                opts.join(", ")
            )
        }
        None => format!(
            "CREATE MATERIALIZED VIEW {} AS {}{eowc}",
            ident(&v.name),
            v.sql
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
    }
}
