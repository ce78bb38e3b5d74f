//! Ingest benchmark (not a test): events/s from a JSON Kafka topic into a simple aggregate
//! view, next to the ceiling of the same process only consuming and decoding the topic.
//!
//! ```sh
//! cargo build --release --bins && \
//!   cargo run --release --bin ingest_bench -- [EVENTS] [PARTITIONS]
//! ```
//! It starts its own Tansu broker and `freshet serve` (the binary next to this one, or
//! `FRESHET_BIN`), produces EVENTS (default 1 000 000) JSON events over PARTITIONS
//! (default 4), and times:
//! 1. consume + decode only: an rdkafka consumer in this process decoding every message with
//!    Freshet's JSON decoder (the ceiling);
//! 2. Freshet: from `CREATE MATERIALIZED VIEW` until the view has counted every event;
//! 3. with VIEWS (2 to 4, default 1): the same for that many different views over the
//!    topic, created together in a new server (they share one reader: one fetch and one
//!    decode of each message), next to the one view's time.

use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use freshet_connectors::decode::{Decoder, Format};
use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{KafkaBroker, TestServer};

/// The views over the topic (name, query); each counts the events it saw in column `n`.
const VIEWS: [(&str, &str); 4] = [
    (
        "per_country",
        "SELECT country, count(*) AS n, sum(watch_seconds) AS watched FROM plays GROUP BY country",
    ),
    (
        "per_title",
        "SELECT title_id, count(*) AS n FROM plays GROUP BY title_id",
    ),
    (
        "total",
        "SELECT count(*) AS n, sum(watch_seconds) AS watched FROM plays",
    ),
    (
        "longest",
        "SELECT country, count(*) AS n, max(watch_seconds) AS longest FROM plays GROUP BY country",
    ),
];

/// Seconds from creating `views` (in a new server) until each has counted every event.
fn seconds_to_count(broker: &KafkaBroker, events: usize, views: &[(&str, &str)]) -> f64 {
    let server = TestServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE SOURCE plays (user_id BIGINT, title_id BIGINT, country VARCHAR, watch_seconds INT, event_time TIMESTAMPTZ)
               WITH (connector = 'kafka', topic = 'bench', properties.bootstrap.server = '{}')
               FORMAT PLAIN ENCODE JSON",
            broker.addr()
        ))
        .await
        .expect("source");
        let t = Instant::now();
        for (name, query) in views {
            c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                .await
                .expect("view");
        }
        for (name, _) in views {
            loop {
                let row = c
                    .query_one(&format!("SELECT coalesce(sum(n), 0)::bigint FROM {name}"), &[])
                    .await
                    .expect("progress");
                if row.get::<_, i64>(0) as usize >= events {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        t.elapsed().as_secs_f64()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let partitions: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let views: usize = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
        .clamp(1, VIEWS.len());
    let broker = KafkaBroker::start();
    broker.create_topic("bench", partitions);

    let started = Instant::now();
    let per_partition = events.div_ceil(partitions as usize);
    let mut produced = 0;
    for p in 0..partitions {
        let n = per_partition.min(events - produced);
        let msgs: Vec<Option<Vec<u8>>> = (produced..produced + n)
            .map(|i| {
                Some(
                    format!(
                        r#"{{"user_id": {}, "title_id": {}, "country": "C{}", "watch_seconds": {}, "event_time": "2026-11-28T12:{:02}:{:02}Z"}}"#,
                        i % 100_000,
                        i % 1000,
                        i % 40,
                        i % 7200,
                        (i / 60) % 60,
                        i % 60
                    )
                    .into_bytes(),
                )
            })
            .collect();
        broker.produce("bench", Some(p as i32), None, &msgs);
        produced += n;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    eprintln!("produced {events} events in {produce_secs:.1} s");

    // 1. The ceiling: consume and decode only.
    let decoder = Decoder::new(
        vec![
            ("user_id".into(), DataType::Int64),
            ("title_id".into(), DataType::Int64),
            ("country".into(), DataType::Utf8),
            ("watch_seconds".into(), DataType::Int32),
            ("event_time".into(), freshet_storage::codec::timestamptz()),
        ],
        Format::Json,
    );
    let ceiling = broker.consume_and_decode("bench", partitions, &decoder, events);

    // 2. Freshet, end to end: one view, then VIEWS views over the same topic.
    let one = seconds_to_count(&broker, events, &VIEWS[..1]);
    let freshet = events as f64 / one;
    let many = (views > 1).then(|| seconds_to_count(&broker, events, &VIEWS[..views]));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("| measure | events | events/s |");
    println!("|---|---|---|");
    println!("| consume + decode only (ceiling, 1 thread) | {events} | {ceiling:.0} |");
    println!("| Freshet: topic → JSON → count/sum view | {events} | {freshet:.0} |");
    if let Some(many) = many {
        println!(
            "| Freshet: {views} views over the topic | {events} | {:.0} |",
            events as f64 / many
        );
        println!(
            "\n{views} views took {many:.2} s, one view {one:.2} s: {:.2}×",
            many / one
        );
    }
    println!(
        "\nFreshet reached {:.0} % of the ceiling; machine: {cores} cores; profile: {}",
        100.0 * freshet / ceiling,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}
