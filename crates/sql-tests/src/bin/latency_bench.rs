//! Freshness and serving benchmarks (not tests).
//!
//! ```sh
//! cargo build --release --bins && target/release/latency_bench [freshness|serving|all]
//!     [--seconds S] [--rate EVENTS_PER_S] [--clients N] [--checkpoints 1000,100]
//!     [--backfill ROWS] [--beside QUERY]
//! ```
//! It starts its own Tansu broker and `freshet serve` processes (the binary next to this
//! one, or `FRESHET_BIN`).
//!
//! **Freshness**: a 1-partition JSON topic carries background events at `--rate` and, every
//! 20 ms, a probe event with an increasing sequence number. A view keeps `max(seq)` per
//! kind. One client polls the probe row over the wire every 10 ms; a probe's latency is
//! from just before it was handed to the producer (`linger.ms` 5) to the first poll that
//! shows it. Run once per checkpoint interval (`--checkpoint-interval-ms`); the first
//! 3 s are warm-up. With `--backfill ROWS`, a table of ROWS rows is loaded first, and
//! right after the warm-up another session creates a view over it (a grouped count),
//! whose backfill then runs beside the measured view; the row also gives how long that
//! backfill took (make `--seconds` longer than it). With `--beside QUERY` (`q5`, say: a
//! file of `bench/nexmark/`), the query's view runs beside the measured one over the
//! built-in Nexmark generator, unthrottled for the whole run: a busy view over another
//! source, whose events/s the row also gives.
//!
//! **Serving**: a server ingests Nexmark bids at `--rate` into a per-auction aggregate
//! (`bids_per_auction`), while `--clients` connections each run, back to back, a prepared
//! point lookup (`WHERE auction = $1`, random auction) and then, in a second phase, a
//! small range (`WHERE auction BETWEEN $1 AND $1 + 9`). It prints queries/s and latency
//! percentiles per phase and the ingest rate over the run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freshet_sql_tests::percentile;
use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{KafkaBroker, TestServer};
use rand::Rng;
use rdkafka::producer::{BaseRecord, Producer};

struct Args {
    mode: String,
    seconds: u64,
    rate: u64,
    clients: usize,
    checkpoints: Vec<u64>,
    backfill: u64,
    /// A Nexmark query whose view runs beside the measured one.
    beside: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        mode: "all".into(),
        seconds: 20,
        rate: 0,
        clients: 16,
        checkpoints: vec![1000, 100],
        backfill: 0,
        beside: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |v: &str| -> u64 { v.parse().unwrap_or_else(|_| panic!("not a number: {v}")) };
        match argv[i].as_str() {
            "--seconds" => a.seconds = num(&value),
            "--rate" => a.rate = num(&value),
            "--clients" => a.clients = num(&value) as usize,
            "--checkpoints" => a.checkpoints = value.split(',').map(num).collect(),
            "--backfill" => a.backfill = num(&value),
            "--beside" => a.beside = Some(value.clone()),
            m if !m.starts_with("--") => {
                a.mode = m.to_string();
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if a.mode == "freshness" || a.mode == "all" {
        let rate = if a.rate == 0 { 10_000 } else { a.rate };
        println!(
            "| checkpoint interval | background events/s | probes | p50 ms | p99 ms | max ms | backfill | beside |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for &ms in &a.checkpoints {
            freshness(&rt, ms, rate, a.seconds, a.backfill, a.beside.as_deref());
        }
        println!();
    }
    if a.mode == "serving" || a.mode == "all" {
        let rate = if a.rate == 0 { 20_000 } else { a.rate };
        serving(&rt, rate, a.clients, a.seconds);
    }
}

fn freshness(
    rt: &tokio::runtime::Runtime,
    checkpoint_ms: u64,
    rate: u64,
    seconds: u64,
    backfill: u64,
    beside: Option<&str>,
) {
    let broker = KafkaBroker::start();
    broker.create_topic("fresh", 1);
    let server =
        TestServer::start_with_args(&["--checkpoint-interval-ms", &checkpoint_ms.to_string()]);
    let addr = broker.addr();
    let client = rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE SOURCE events (kind VARCHAR, seq BIGINT, v BIGINT)
               WITH (connector = 'kafka', topic = 'fresh', properties.bootstrap.server = '{addr}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW fresh AS
               SELECT kind, max(seq) AS seq, count(*) AS n FROM events GROUP BY kind"
        ))
        .await
        .expect("create source and view");
        if backfill > 0 {
            c.batch_execute("CREATE TABLE big (id BIGINT, k BIGINT)")
                .await
                .expect("create table");
            let loading = Instant::now();
            let step = 1_000_000;
            for from in (1..=backfill).step_by(step as usize) {
                let to = (from + step - 1).min(backfill);
                c.batch_execute(&format!(
                    "INSERT INTO big SELECT value, value % 100000 FROM generate_series({from}, {to}) AS g(value)"
                ))
                .await
                .expect("load the table");
            }
            eprintln!("loaded {backfill} rows in {:.1?}", loading.elapsed());
        }
        if let Some(q) = beside {
            // Endless for the run: about a billion bids, persons and auctions in
            // proportion (1:3:46).
            let bids: u64 = 1_000_000_000;
            let sources = std::fs::read_to_string("bench/nexmark/sources.sql")
                .expect("bench/nexmark/sources.sql (run from the repository's root)")
                .replace("{person}", &(bids / 46).to_string())
                .replace("{auction}", &(bids * 3 / 46).to_string())
                .replace("{bid}", &bids.to_string());
            let query = std::fs::read_to_string(format!("bench/nexmark/{q}.sql"))
                .unwrap_or_else(|e| panic!("bench/nexmark/{q}.sql: {e}"));
            c.batch_execute(&sources).await.expect("nexmark sources");
            c.batch_execute(&query).await.expect("the view beside");
        }
        c
    });
    let beside_from = Instant::now();
    // The view over the loaded table, created after the warm-up: its build time.
    let build = (backfill > 0).then(|| {
        let conn_str = server.conn_str();
        rt.spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let c = connect(&conn_str).await.expect("connect");
            let started = Instant::now();
            c.batch_execute(
                "CREATE MATERIALIZED VIEW big_per_k AS SELECT k, count(*) AS n FROM big GROUP BY k",
            )
            .await
            .expect("build the view over the table");
            started.elapsed()
        })
    });
    // Producer thread: background load plus a probe every 20 ms.
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer_thread = {
        let (sent, stop, addr) = (sent.clone(), stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let producer: rdkafka::producer::BaseProducer = rdkafka::config::ClientConfig::new()
                .set("bootstrap.servers", addr)
                .set("linger.ms", "5")
                .create()
                .expect("producer");
            let start = Instant::now();
            let (mut load, mut probes) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while load < due {
                    let p = format!(r#"{{"kind": "load", "seq": {load}, "v": {}}}"#, load % 97);
                    if producer
                        .send(BaseRecord::<(), _>::to("fresh").payload(&p))
                        .is_err()
                    {
                        break;
                    }
                    load += 1;
                }
                if start.elapsed() >= Duration::from_millis(20 * probes) {
                    let p = format!(r#"{{"kind": "probe", "seq": {probes}, "v": 0}}"#);
                    sent.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Instant::now());
                    if producer
                        .send(BaseRecord::<(), _>::to("fresh").payload(&p))
                        .is_ok()
                    {
                        probes += 1;
                    } else {
                        sent.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    }
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = producer.flush(Duration::from_secs(10));
        })
    };
    let mut latencies = Vec::new();
    let mut seen: i64 = -1;
    let started = Instant::now();
    let warmup = Duration::from_secs(3);
    rt.block_on(async {
        while started.elapsed() < Duration::from_secs(seconds) + warmup {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let rows = client
                .query("SELECT seq FROM fresh WHERE kind = 'probe'", &[])
                .await
                .expect("poll");
            let now = Instant::now();
            if let Some(row) = rows.first() {
                let v: Option<i64> = row.get(0);
                let v = v.unwrap_or(-1);
                if v > seen {
                    let sent = sent.lock().unwrap_or_else(|p| p.into_inner());
                    for i in (seen + 1)..=v {
                        if let Some(t) = sent.get(i as usize) {
                            if t.duration_since(started) >= warmup {
                                latencies.push(now.duration_since(*t).as_secs_f64() * 1000.0);
                            }
                        }
                    }
                    seen = v;
                }
            }
        }
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = producer_thread.join();
    latencies.sort_by(f64::total_cmp);
    let built = match build {
        Some(b) => match rt.block_on(b) {
            Ok(d) => format!("{backfill} rows in {:.1} s", d.as_secs_f64()),
            Err(e) => format!("failed: {e}"),
        },
        None => "none".into(),
    };
    // The view beside: the changes it took in over the run.
    let beside = match beside {
        Some(q) => {
            let n: i64 = rt.block_on(async {
                client
                    .query_one(
                        &format!(
                            "SELECT rows_in FROM freshet_catalog.views WHERE view_name = 'nexmark_{q}'"
                        ),
                        &[],
                    )
                    .await
                    .expect("the view beside")
                    .get(0)
            });
            format!(
                "{q}: {:.0} rows in/s",
                n as f64 / beside_from.elapsed().as_secs_f64()
            )
        }
        None => "none".into(),
    };
    println!(
        "| {checkpoint_ms} ms | {rate} | {} | {:.0} | {:.0} | {:.0} | {built} | {beside} |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
}

fn serving(rt: &tokio::runtime::Runtime, rate: u64, clients: usize, seconds: u64) {
    let server = TestServer::start();
    let gap_ns = 1_000_000_000 / rate.max(1);
    let conn_str = server.conn_str();
    let (lo, hi, ingested_before) = rt.block_on(async {
        let c = connect(&conn_str).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
                                url VARCHAR, date_time TIMESTAMPTZ, extra VARCHAR)
               WITH (connector = 'nexmark', nexmark.table.type = 'bid',
                     nexmark.min.event.gap.in.ns = '{gap_ns}');
             CREATE MATERIALIZED VIEW bids_per_auction AS
               SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction"
        ))
        .await
        .expect("create source and view");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let row = c
            .query_one(
                "SELECT min(auction), max(auction), sum(bids)::bigint FROM bids_per_auction",
                &[],
            )
            .await
            .expect("key range");
        let lo: i64 = row.get(0);
        let hi: i64 = row.get(1);
        let n: i64 = row.get(2);
        (lo, hi, n)
    });
    let ingest_started = Instant::now();
    println!("| phase | clients | queries | queries/s | p50 ms | p99 ms | max ms | view keys |");
    println!("|---|---|---|---|---|---|---|---|");
    for (phase, sql) in [
        (
            "point lookup",
            "SELECT bids, top FROM bids_per_auction WHERE auction = $1",
        ),
        (
            "range of 10 keys",
            "SELECT auction, bids FROM bids_per_auction WHERE auction BETWEEN $1 AND $1 + 9",
        ),
    ] {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let results: Vec<Vec<f64>> = rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let conn_str = conn_str.clone();
                tasks.push(tokio::spawn(async move {
                    let c = connect(&conn_str).await.expect("connect");
                    let stmt = c.prepare(sql).await.expect("prepare");
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let key: i64 = rand::thread_rng().gen_range(lo..=hi);
                        let t = Instant::now();
                        c.query(&stmt, &[&key]).await.expect("query");
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    lat
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("client task"));
            }
            out
        });
        let elapsed = started.elapsed().as_secs_f64();
        let mut all: Vec<f64> = results.into_iter().flatten().collect();
        all.sort_by(f64::total_cmp);
        println!(
            "| {phase} | {clients} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} |",
            all.len(),
            all.len() as f64 / elapsed,
            percentile(&all, 50.0),
            percentile(&all, 99.0),
            all.last().copied().unwrap_or(f64::NAN),
            hi - lo + 1
        );
    }
    let ingested_after = rt.block_on(async {
        let c = connect(&conn_str).await.expect("connect");
        let row = c
            .query_one("SELECT sum(bids)::bigint FROM bids_per_auction", &[])
            .await
            .expect("count");
        let n: i64 = row.get(0);
        n
    });
    println!();
    println!(
        "ingest while serving: {:.0} bids/s (target rate {rate})",
        (ingested_after - ingested_before) as f64 / ingest_started.elapsed().as_secs_f64()
    );
}
