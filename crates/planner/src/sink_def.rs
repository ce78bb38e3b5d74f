//! A sink's definition: where its rows go, checked from `CREATE SINK … WITH (…)
//! [FORMAT … ENCODE …]` (RisingWave's options and formats).

use serde::{Deserialize, Serialize};

/// Where a sink sends its rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDef {
    /// `connector = …` (`blackhole`, `kafka`).
    pub connector: String,
    /// `type = 'append-only'` with `force_append_only = 'true'`: deletes are dropped.
    pub drop_deletes: bool,
    /// The `WITH` options as written (for `SHOW CREATE`-like listings).
    pub options: Vec<(String, String)>,
    /// Set for `connector = 'kafka'`.
    #[serde(default)]
    pub kafka: Option<KafkaSink>,
    /// `CREATE SINK … INTO table`: the table its changes are written into.
    #[serde(default)]
    pub into_table: Option<u64>,
}

/// How a sink's changes are written as Kafka messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkFormat {
    /// `FORMAT PLAIN`: one message per inserted row (the sink is append-only).
    Plain,
    /// `FORMAT UPSERT`: keyed by the primary key; the row for an insert or update, a
    /// tombstone (null value) for a delete.
    Upsert,
    /// `FORMAT DEBEZIUM`: keyed by the primary key; Debezium's envelope
    /// (`before`, `after`, `op`: `c`, `u`, `d`).
    Debezium,
}

impl SinkFormat {
    pub fn name(self) -> &'static str {
        match self {
            SinkFormat::Plain => "PLAIN",
            SinkFormat::Upsert => "UPSERT",
            SinkFormat::Debezium => "DEBEZIUM",
        }
    }
}

/// A Kafka sink's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSink {
    pub topic: String,
    /// librdkafka settings: the `properties.*` options without their prefix
    /// (`properties.bootstrap.server` becomes `bootstrap.servers`).
    pub properties: Vec<(String, String)>,
    pub format: SinkFormat,
    /// `primary_key = 'a, b'`: the message key's columns (required by UPSERT and
    /// DEBEZIUM), as column positions of the sink's rows.
    pub key_columns: Vec<usize>,
    /// `sink.guarantee = 'exactly-once'`: each batch of checkpoints is written in one Kafka
    /// transaction (for brokers whose `read_committed` hides aborted ones: Apache Kafka,
    /// Redpanda; Tansu 0.6 does not); `'at-least-once'` (the default): idempotent writes,
    /// and a crash can send the last batch again.
    pub exactly_once: bool,
    /// `sink.max_backlog = n`: undelivered changes past which the readers feeding the
    /// sink wait for it (default: the server's, 1,000,000).
    #[serde(default)]
    pub max_backlog: Option<u64>,
}

/// The option keys a sink takes besides `properties.*`.
const SINK_OPTIONS: &[&str] = &[
    "connector",
    "type",
    "force_append_only",
    "topic",
    "primary_key",
    "sink.guarantee",
    "sink.max_backlog",
];

impl SinkDef {
    /// Checks a sink's `WITH` options and `FORMAT … ENCODE …`; `append_only`: whether its
    /// query only inserts; `columns`: its column names.
    pub fn parse(
        options: &[(String, String)],
        format: Option<&(String, String)>,
        append_only: bool,
        columns: &[String],
    ) -> Result<SinkDef, String> {
        let get = |k: &str| {
            options
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_string())
        };
        let lower = |k: &str| get(k).map(|v| v.to_ascii_lowercase());
        for (k, _) in options {
            if !SINK_OPTIONS.contains(&k.as_str()) && !k.starts_with("properties.") {
                return Err(format!("unknown sink option \"{k}\""));
            }
        }
        let connector = lower("connector").ok_or("a sink needs WITH (connector = …)")?;
        let force = match lower("force_append_only").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "force_append_only must be 'true' or 'false', not '{other}'"
                ))
            }
        };
        // `FORMAT x ENCODE y` or the older `type = …`.
        let kind = match format {
            Some((f, e)) => {
                if !e.eq_ignore_ascii_case("json") {
                    return Err(format!(
                        "sinks encode JSON only (ENCODE JSON), not ENCODE {e}"
                    ));
                }
                if get("type").is_some() {
                    return Err("give either FORMAT … ENCODE … or type = …, not both".into());
                }
                match f.to_ascii_lowercase().as_str() {
                    "plain" => Some("append-only".to_string()),
                    "upsert" => Some("upsert".into()),
                    "debezium" => Some("debezium".into()),
                    other => {
                        return Err(format!(
                            "sink format must be PLAIN, UPSERT or DEBEZIUM, not {other}"
                        ))
                    }
                }
            }
            None => lower("type"),
        };
        let drop_deletes = match kind.as_deref() {
            None | Some("upsert") | Some("retract") | Some("debezium") if !force => false,
            None | Some("upsert") | Some("retract") | Some("debezium") => {
                return Err("force_append_only needs type = 'append-only' (FORMAT PLAIN)".into())
            }
            Some("append-only") if append_only => false,
            Some("append-only") if force => true,
            Some("append-only") => {
                return Err(
                    "the sink's query can update or delete rows, so the sink cannot \
                     be append-only (set force_append_only = 'true' to drop its deletes, \
                     or use FORMAT UPSERT or DEBEZIUM with a primary_key)"
                        .into(),
                )
            }
            Some(other) => {
                return Err(format!(
                    "sink type must be 'append-only', 'upsert', 'debezium' or 'retract', \
                     not '{other}'"
                ))
            }
        };
        let kafka = match connector.as_str() {
            "blackhole" => None,
            "kafka" => Some(kafka_sink(
                options,
                kind.as_deref(),
                columns,
                get("topic"),
                get("primary_key"),
                lower("sink.guarantee"),
                get("sink.max_backlog"),
            )?),
            other => {
                return Err(format!(
                    "sink connector \"{other}\" is not supported: 'kafka', or 'blackhole' \
                     (which counts the rows and drops them)"
                ))
            }
        };
        if kafka.is_none() {
            if let Some((k, _)) = options.iter().find(|(k, _)| {
                k.starts_with("properties.")
                    || matches!(
                        k.as_str(),
                        "topic" | "primary_key" | "sink.guarantee" | "sink.max_backlog"
                    )
            }) {
                return Err(format!("option \"{k}\" is for Kafka sinks"));
            }
        }
        Ok(SinkDef {
            connector,
            drop_deletes,
            options: options.to_vec(),
            kafka,
            into_table: None,
        })
    }
}

fn kafka_sink(
    options: &[(String, String)],
    kind: Option<&str>,
    columns: &[String],
    topic: Option<String>,
    primary_key: Option<String>,
    guarantee: Option<String>,
    max_backlog: Option<String>,
) -> Result<KafkaSink, String> {
    let topic = topic
        .filter(|t| !t.is_empty())
        .ok_or("a Kafka sink needs topic = '…'")?;
    let format = match kind {
        Some("append-only") => SinkFormat::Plain,
        Some("upsert") => SinkFormat::Upsert,
        Some("debezium") => SinkFormat::Debezium,
        _ => return Err("a Kafka sink needs FORMAT PLAIN, UPSERT or DEBEZIUM ENCODE JSON".into()),
    };
    let mut properties = Vec::new();
    for (k, v) in options {
        if let Some(p) = k.strip_prefix("properties.") {
            let p = match p {
                "bootstrap.server" => "bootstrap.servers",
                p => p,
            };
            if matches!(p, "transactional.id" | "enable.idempotence") {
                return Err(format!(
                    "properties.{p} is set by Freshet (see sink.guarantee)"
                ));
            }
            properties.push((p.to_string(), v.clone()));
        }
    }
    if !properties.iter().any(|(k, _)| k == "bootstrap.servers") {
        return Err("a Kafka sink needs properties.bootstrap.server = 'host:port'".into());
    }
    let key_columns = match primary_key {
        None => Vec::new(),
        Some(pk) => pk
            .split(',')
            .map(|c| {
                let c = c.trim();
                columns.iter().position(|n| n == c).ok_or_else(|| {
                    format!("primary_key column \"{c}\" is not a column of the sink")
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if key_columns.is_empty() && format != SinkFormat::Plain {
        return Err(format!(
            "FORMAT {} needs primary_key = '…' (the columns of the message key)",
            format.name()
        ));
    }
    let exactly_once = match guarantee.as_deref() {
        Some("exactly-once") | Some("exactly_once") => true,
        None | Some("at-least-once") | Some("at_least_once") => false,
        Some(other) => {
            return Err(format!(
                "sink.guarantee must be 'exactly-once' or 'at-least-once', not '{other}'"
            ))
        }
    };
    let max_backlog = match max_backlog {
        None => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "sink.max_backlog must be a positive number of changes, not '{v}'"
                ))
            }
        },
    };
    Ok(KafkaSink {
        topic,
        properties,
        format,
        key_columns,
        exactly_once,
        max_backlog,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[(&str, &str)]) -> Vec<(String, String)> {
        o.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cols() -> Vec<String> {
        vec!["k".into(), "n".into()]
    }

    #[test]
    fn kafka_sinks() {
        let base = [
            ("connector", "kafka"),
            ("topic", "out"),
            ("properties.bootstrap.server", "127.0.0.1:9092"),
            ("primary_key", "k"),
        ];
        let up = ("upsert".to_string(), "json".to_string());
        let s = SinkDef::parse(&opts(&base), Some(&up), false, &cols()).unwrap();
        let k = s.kafka.unwrap();
        assert_eq!(k.format, SinkFormat::Upsert);
        assert_eq!(k.key_columns, vec![0]);
        assert_eq!(
            k.properties,
            vec![("bootstrap.servers".into(), "127.0.0.1:9092".into())]
        );
        assert!(!k.exactly_once, "at-least-once unless asked");
        // PLAIN needs an append-only query or force_append_only.
        let plain = ("plain".to_string(), "json".to_string());
        let e = SinkDef::parse(&opts(&base), Some(&plain), false, &cols()).unwrap_err();
        assert!(e.contains("cannot be append-only"), "{e}");
        assert!(SinkDef::parse(&opts(&base), Some(&plain), true, &cols()).is_ok());
        // Key columns must exist; UPSERT needs them.
        let mut bad = opts(&base);
        bad[3].1 = "nope".into();
        assert!(SinkDef::parse(&bad, Some(&up), false, &cols())
            .unwrap_err()
            .contains("nope"));
        bad.pop();
        assert!(SinkDef::parse(&bad, Some(&up), false, &cols())
            .unwrap_err()
            .contains("primary_key"));
        // Other encodings, missing topic, and Kafka options on a blackhole are refused.
        let avro = ("upsert".to_string(), "avro".to_string());
        assert!(SinkDef::parse(&opts(&base), Some(&avro), false, &cols()).is_err());
        assert!(SinkDef::parse(&opts(&base[..1]), Some(&up), false, &cols()).is_err());
        let bh = opts(&[("connector", "blackhole"), ("topic", "x")]);
        assert!(SinkDef::parse(&bh, None, false, &cols()).is_err());
        let g = opts(&[
            ("connector", "kafka"),
            ("topic", "out"),
            ("properties.bootstrap.server", "b:1"),
            ("sink.guarantee", "exactly-once"),
            ("type", "append-only"),
        ]);
        assert!(
            SinkDef::parse(&g, None, true, &cols())
                .unwrap()
                .kafka
                .unwrap()
                .exactly_once
        );
    }
}
