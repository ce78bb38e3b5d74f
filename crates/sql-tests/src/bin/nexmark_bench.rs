//! Nexmark benchmark (not a test): runs queries of `bench/nexmark/` over the built-in
//! Nexmark generator and prints one Markdown table row per query.
//!
//! ```sh
//! cargo build --release --bins && \
//!   target/release/nexmark_bench [--events N] [--queries q0,q5|all] [--dir bench/nexmark]
//!                                [--source generator|kafka] [--sink] [--together]
//!                                [--set name=value]…
//! ```
//! `--set name=value` runs `SET name = value` in the session before the views are
//! created (`--set rw_enable_two_phase_agg=false`, say); it may be repeated.
//! With `--together` it then runs all the queries at once in one server (their views
//! created one after another, then one FLUSH), in a row "together" whose events are
//! every view's, and compares that time with the sum of the single runs': views apply
//! their batches side by side (`engine/src/coordinator/parallel.rs`), so with several
//! cores the together run takes less than the sum.
//! With `--sink` each query runs as `CREATE SINK … WITH (connector = 'blackhole')`
//! instead of a materialized view: its rows are counted and dropped, not stored, as in
//! Flink's and RisingWave's Nexmark runs (blackhole sinks); "view rows" is then the
//! sink's net rows (inserted minus deleted), which must equal the view's.
//! With `--source kafka` it first starts a Tansu broker, writes the same Nexmark events
//! (the same generator, row for row) as JSON to the topics `nexmark_person`,
//! `nexmark_auction` and `nexmark_bid` (one partition each), measures the ceiling (this
//! process only consuming the bid topic and decoding every message with Freshet's JSON
//! decoder), then runs each query over Kafka sources of those topics instead of the
//! built-in generator, and adds each query's share of the ceiling.
//! For each query it starts a fresh `freshet serve` (the binary next to this one, or
//! `FRESHET_BIN`), creates the three sources with `N` bids (persons and auctions in the
//! standard 1:3:46 proportion), then times `CREATE MATERIALIZED VIEW` followed by `FLUSH`,
//! which returns once the view has consumed and committed every generated event. Each
//! query file names the sources it reads in a `-- reads: bid, auction` line. It reports:
//! - events/s: events of the sources the query reads, over that wall-clock time;
//! - events/s per core: the same events over the server's CPU time (user + system) in
//!   that interval, read from `/proc`;
//! - peak RSS of the server (`VmHWM`), and the view's rows and state (from
//!   `freshet_catalog.view_state` and, for its state bytes, `view_state_scan`).

use std::path::PathBuf;
use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use freshet_connectors::decode::{Decoder, Format};
use freshet_connectors::generator::{GeneratorConfig, Kind};
use freshet_sql_tests::pgclient::{connect, DbError};
use freshet_sql_tests::{KafkaBroker, TestServer};

/// (user + system) CPU seconds of process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

struct Args {
    source: String,
    events: u64,
    queries: Vec<String>,
    dir: PathBuf,
    sink: bool,
    /// Also run all the queries in one server at once (`--together`).
    together: bool,
    /// `SET` statements run before the views are created (`--set name=value`).
    sets: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        source: "generator".into(),
        events: 1_000_000,
        queries: vec!["all".into()],
        dir: PathBuf::from("bench/nexmark"),
        sink: false,
        together: false,
        sets: Vec::new(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "--sink" || argv[i] == "--together" {
            a.sink |= argv[i] == "--sink";
            a.together |= argv[i] == "--together";
            i += 1;
            continue;
        }
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--events" => a.events = value.parse().expect("--events N"),
            "--queries" | "--query" => a.queries = value.split(',').map(String::from).collect(),
            "--dir" => a.dir = PathBuf::from(value),
            "--source" => a.source = value,
            "--set" => match value.split_once('=') {
                Some((name, v)) => a.sets.push(format!("SET {name} = '{v}';\n")),
                None => panic!("--set name=value"),
            },
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    if a.queries == ["all"] {
        let mut qs: Vec<String> = std::fs::read_dir(&a.dir)
            .expect("read the query directory")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_suffix(".sql")
                    .filter(|q| q.starts_with('q'))
                    .map(String::from)
            })
            .collect();
        qs.sort_by_key(|q| q[1..].parse::<u32>().unwrap_or(u32::MAX));
        a.queries = qs;
    }
    a
}

fn main() {
    let a = args();
    let bids = a.events;
    let persons = bids / 46;
    let auctions = bids * 3 / 46;
    let sources = std::fs::read_to_string(a.dir.join("sources.sql"))
        .expect("bench/nexmark/sources.sql")
        .replace("{person}", &persons.to_string())
        .replace("{auction}", &auctions.to_string())
        .replace("{bid}", &bids.to_string());
    // With --source kafka: the broker (kept for the whole run), the sources over its
    // topics, and the consume + decode ceiling.
    let mut kafka = None;
    let mut ceiling = None;
    let sources = if a.source == "kafka" {
        let broker = KafkaBroker::start();
        for (ty, n) in [("person", persons), ("auction", auctions), ("bid", bids)] {
            let t = Instant::now();
            produce_json(&broker, ty, n);
            eprintln!(
                "wrote {n} {ty} events as JSON to nexmark_{ty} in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let decoder = Decoder::new(nexmark_columns("bid"), Format::Json);
        let c = broker.consume_and_decode("nexmark_bid", 1, &decoder, bids as usize);
        println!("Ceiling (consume + decode only, topic nexmark_bid): {c:.0} events/s\n");
        ceiling = Some(c);
        let sql = kafka_sources(&sources, &broker.addr());
        kafka = Some(broker);
        sql
    } else {
        sources
    };
    let _broker = kafka;
    let sources = a.sets.concat() + &sources;
    println!(
        "| query | events | seconds | events/s | CPU s | events/s per core | peak RSS MiB | view rows | state MiB |{}",
        if ceiling.is_some() { " share of ceiling |" } else { "" }
    );
    println!(
        "|---|---|---|---|---|---|---|---|---|{}",
        if ceiling.is_some() { "---|" } else { "" }
    );
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let counts = [("person", persons), ("auction", auctions), ("bid", bids)];
    let mut alone_secs = 0.0;
    let mut all = Vec::new();
    for q in &a.queries {
        let sql = std::fs::read_to_string(a.dir.join(format!("{q}.sql")))
            .unwrap_or_else(|_| panic!("no {q}.sql in {}", a.dir.display()));
        let sql = if a.sink { as_sink(&sql) } else { sql };
        let run = run_queries(&rt, &sources, std::slice::from_ref(&sql), &counts, a.sink);
        if let Ok(r) = &run {
            alone_secs += r.secs;
            all.push(sql);
        }
        print_row(q, run, ceiling);
    }
    if a.together && all.len() > 1 {
        let run = run_queries(&rt, &sources, &all, &counts, a.sink);
        let secs = run.as_ref().map(|r| r.secs).unwrap_or(0.0);
        print_row("together", run, ceiling);
        println!(
            "\nThe {} queries together, in one server: {secs:.1} s; one after another: {alone_secs:.1} s ({:.2}×).",
            all.len(),
            alone_secs / secs.max(0.001)
        );
    }
}

/// What one run measured (see the module documentation).
struct Run {
    events: u64,
    secs: f64,
    cpu: f64,
    rows: i64,
    state: i64,
    peak_rss: f64,
}

/// Starts a server with `sources`, then times creating the views of `sqls` and a FLUSH.
/// `counts`: the events of each source, to add up those the queries read.
fn run_queries(
    rt: &tokio::runtime::Runtime,
    sources: &str,
    sqls: &[String],
    counts: &[(&str, u64)],
    sink: bool,
) -> Result<Run, String> {
    let server = TestServer::start();
    let pid = server.pid().expect("server pid");
    rt.block_on(async {
        let c = connect(&server.conn_str())
            .await
            .map_err(|e| e.to_string())?;
        c.batch_execute(sources)
            .await
            .map_err(|e| DbError::from(e).to_string())?;
        // Events of the sources each query reads (its `-- reads: …` line).
        let mut events = 0;
        for sql in sqls {
            let reads_line = sql
                .lines()
                .find_map(|l| l.trim().strip_prefix("-- reads:"))
                .unwrap_or("");
            let reads = |s: &str| reads_line.split(',').any(|w| w.trim() == s);
            events += counts
                .iter()
                .filter(|(s, _)| reads(s))
                .map(|(_, n)| n)
                .sum::<u64>();
        }
        let cpu0 = cpu_seconds(pid);
        let t0 = Instant::now();
        for sql in sqls {
            c.batch_execute(sql)
                .await
                .map_err(|e| DbError::from(e).to_string())?;
        }
        // FLUSH waits up to 10 minutes for the sources to catch up; long runs take
        // several.
        loop {
            match c.batch_execute("FLUSH").await {
                Ok(()) => break,
                Err(e) => {
                    let e = DbError::from(e).to_string();
                    if !e.contains("timed out waiting for the source to catch up") {
                        return Err(e);
                    }
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu0;
        let row = c
            .query_one(
                "SELECT coalesce(sum(view_rows), 0)::bigint, coalesce(sum(s.state_bytes), 0)::bigint \
                 FROM freshet_catalog.view_state v \
                 JOIN freshet_catalog.view_state_scan s ON v.view_name = s.view_name",
                &[],
            )
            .await
            .map_err(|e| DbError::from(e).to_string())?;
        let (mut rows, state): (i64, i64) = (row.get(0), row.get(1));
        if sink {
            let row = c
                .query_one(
                    "SELECT coalesce(sum(rows_inserted - rows_deleted), 0)::bigint \
                     FROM freshet_catalog.sinks",
                    &[],
                )
                .await
                .map_err(|e| DbError::from(e).to_string())?;
            rows = row.get(0);
        }
        Ok(Run {
            events,
            secs,
            cpu,
            rows,
            state,
            peak_rss: peak_rss_mib(pid),
        })
    })
}

/// One Markdown row of the results table.
fn print_row(q: &str, run: Result<Run, String>, ceiling: Option<f64>) {
    match run {
        Ok(r) => println!(
            "| {q} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} | {} | {:.1} |{}",
            r.events,
            r.secs,
            r.events as f64 / r.secs,
            r.cpu,
            r.events as f64 / r.cpu.max(0.001),
            r.peak_rss,
            r.rows,
            r.state as f64 / (1024.0 * 1024.0),
            match ceiling {
                Some(c) => format!(" {:.0} % |", 100.0 * r.events as f64 / r.secs / c),
                None => String::new(),
            }
        ),
        Err(e) => println!(
            "| {q} | not supported: {} | | | | | | | |",
            e.replace('|', "/")
        ),
    }
}

/// A query file with its view created as a blackhole sink instead.
fn as_sink(sql: &str) -> String {
    sql.split(';')
        .filter(|stmt| !stmt.trim().is_empty())
        .map(|stmt| match stmt.find("CREATE MATERIALIZED VIEW") {
            Some(at) => format!(
                "{}CREATE SINK{} WITH (connector = 'blackhole');",
                &stmt[..at],
                stmt[at + "CREATE MATERIALIZED VIEW".len()..].trim_end()
            ),
            None => format!("{stmt};"),
        })
        .collect()
}

/// The columns of each Nexmark event type, as `bench/nexmark/sources.sql` declares them.
fn nexmark_columns(ty: &str) -> Vec<(String, DataType)> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let cols: Vec<(&str, DataType)> = match ty {
        "person" => vec![
            ("id", DataType::Int64),
            ("name", DataType::Utf8),
            ("email_address", DataType::Utf8),
            ("credit_card", DataType::Utf8),
            ("city", DataType::Utf8),
            ("state", DataType::Utf8),
            ("date_time", ts),
            ("extra", DataType::Utf8),
        ],
        "auction" => vec![
            ("id", DataType::Int64),
            ("item_name", DataType::Utf8),
            ("description", DataType::Utf8),
            ("initial_bid", DataType::Int64),
            ("reserve", DataType::Int64),
            ("date_time", ts.clone()),
            ("expires", ts),
            ("seller", DataType::Int64),
            ("category", DataType::Int64),
            ("extra", DataType::Utf8),
        ],
        _ => vec![
            ("auction", DataType::Int64),
            ("bidder", DataType::Int64),
            ("price", DataType::Int64),
            ("channel", DataType::Utf8),
            ("url", DataType::Utf8),
            ("date_time", ts),
            ("extra", DataType::Utf8),
        ],
    };
    cols.into_iter().map(|(n, t)| (n.to_string(), t)).collect()
}

/// One generated row as a JSON object (timestamps as `YYYY-MM-DD HH:MM:SS.ffffff`).
fn to_json(columns: &[(String, DataType)], row: &[ScalarValue]) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    for ((name, _), v) in columns.iter().zip(row) {
        let j = match v {
            ScalarValue::Int64(Some(x)) => serde_json::Value::from(*x),
            ScalarValue::Utf8(Some(t)) => serde_json::Value::from(t.as_str()),
            ScalarValue::TimestampMicrosecond(Some(us), _) => {
                let t = chrono::DateTime::from_timestamp_micros(*us).unwrap_or_default();
                serde_json::Value::from(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
            }
            _ => serde_json::Value::Null,
        };
        m.insert(name.clone(), j);
    }
    serde_json::to_vec(&m).unwrap_or_default()
}

/// Writes `n` events of type `ty` (the built-in generator's, row for row) as JSON to topic
/// `nexmark_<ty>`.
fn produce_json(broker: &KafkaBroker, ty: &str, n: u64) {
    let topic = format!("nexmark_{ty}");
    broker.create_topic(&topic, 1);
    let columns = nexmark_columns(ty);
    let table_type = format!("{}{}", ty[..1].to_uppercase(), &ty[1..]);
    let opts = vec![
        ("nexmark.table.type".to_string(), table_type),
        // The base time sources.sql fixes, so the topics hold the same events.
        (
            "nexmark.start.millis".to_string(),
            "1700000000000".to_string(),
        ),
        ("nexmark.event.num".to_string(), n.to_string()),
    ];
    let cfg = GeneratorConfig::parse(Kind::Nexmark, &columns, &opts).expect("nexmark generator");
    let end = cfg.max_rows().unwrap_or(n as i64);
    let mut from = 0;
    while from < end {
        let to = (from + 100_000).min(end);
        let rows = cfg.rows(from, to, &columns).expect("generate");
        let msgs: Vec<Option<Vec<u8>>> = rows.iter().map(|r| Some(to_json(&columns, r))).collect();
        broker.produce(&topic, Some(0), None, &msgs);
        from = to;
    }
}

/// `sources.sql` with each `connector = 'nexmark'` source turned into a Kafka source of
/// the topic with the same events as JSON (same columns and watermarks).
fn kafka_sources(sql: &str, addr: &str) -> String {
    let mut out = String::new();
    for stmt in sql.split(';') {
        let Some(with) = stmt.find("WITH (connector = 'nexmark'") else {
            out.push_str(stmt);
            if !stmt.trim().is_empty() {
                out.push(';');
            }
            continue;
        };
        let ty = stmt
            .split("nexmark.table.type = '")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .unwrap_or("Bid")
            .to_lowercase();
        out.push_str(&stmt[..with]);
        out.push_str(&format!(
            "WITH (connector = 'kafka', topic = 'nexmark_{ty}', properties.bootstrap.server = '{addr}') FORMAT PLAIN ENCODE JSON;"
        ));
    }
    out
}
