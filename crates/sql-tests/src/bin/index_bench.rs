//! Index benchmark (not a test): point and range lookups on a column that is not a
//! view's key, over the wire from concurrent clients, without and then with an index on
//! that column.
//!
//! ```sh
//! cargo build --release --bins && target/release/index_bench [--rows N] [--clients C]
//!     [--seconds S]
//! ```
//! It starts `freshet serve` (the binary next to this one, or `FRESHET_BIN`), loads a
//! table of N rows (default 10 000 000) in chunks of a million (`INSERT … SELECT … FROM
//! generate_series`), and builds a view of all of them, `SELECT id, user_id, title_id,
//! secs FROM plays`, whose stored key starts with `id`. `user_id` takes about N / 10
//! values (so a point lookup returns about 10 rows). Then C clients (default 16) each run,
//! back to back for S seconds (default 20; a query started before the end is waited for),
//! a prepared point lookup `WHERE user_id = $1` and then a range `WHERE user_id BETWEEN $1
//! AND $1 + 9`, with random keys; then `CREATE INDEX recent_user ON recent (user_id)` and
//! the same two phases again. It prints queries/s and latency percentiles per phase, how
//! long the index took to build, and checks that 20 lookups answer the same with the
//! index as without.

use std::time::{Duration, Instant};

use freshet_sql_tests::percentile;
use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::TestServer;
use rand::Rng;

struct Args {
    rows: i64,
    clients: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        rows: 10_000_000,
        clients: 16,
        seconds: 20,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--rows" => a.rows = value.parse().expect("--rows N"),
            "--clients" => a.clients = value.parse().expect("--clients N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds S"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

const POINT: &str = "SELECT id, title_id, secs FROM recent WHERE user_id = $1";
const RANGE: &str = "SELECT id, user_id FROM recent WHERE user_id BETWEEN $1 AND $1 + 9";

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = TestServer::start();
    let conn_str = server.conn_str();
    // user_id: a permutation of ids folded onto about rows / 10 values.
    let users = (a.rows / 10).max(1);
    let samples: Vec<i64> = (0..20).map(|i| i * users / 20).collect();
    let before = rt.block_on(async {
        let c = connect(&conn_str).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE plays (id BIGINT PRIMARY KEY, user_id BIGINT, title_id BIGINT, secs INT)",
        )
        .await
        .expect("create table");
        let t = Instant::now();
        let chunk = 1_000_000;
        let mut from = 1;
        while from <= a.rows {
            let to = (from + chunk - 1).min(a.rows);
            c.batch_execute(&format!(
                "INSERT INTO plays SELECT value, value * 7919 % {users}, value % 5000, \
                 CAST(value % 3600 AS INT) FROM generate_series({from}, {to}) AS g(value)"
            ))
            .await
            .expect("load");
            from = to + 1;
        }
        eprintln!(
            "{} rows loaded in {:.1} s",
            a.rows,
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        c.batch_execute(
            "CREATE MATERIALIZED VIEW recent AS SELECT id, user_id, title_id, secs FROM plays",
        )
        .await
        .expect("create view");
        eprintln!("view built in {:.1} s", t.elapsed().as_secs_f64());
        answers(&c, &samples).await
    });
    println!("| phase | clients | queries | queries/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (phase, sql) in [("no index, point", POINT), ("no index, range", RANGE)] {
        run_phase(&rt, &conn_str, phase, sql, a.clients, a.seconds, users);
    }
    let built = rt.block_on(async {
        let c = connect(&conn_str).await.expect("connect");
        let t = Instant::now();
        c.batch_execute("CREATE INDEX recent_user ON recent (user_id)")
            .await
            .expect("create index");
        let built = t.elapsed().as_secs_f64();
        let plan = c
            .simple_query("EXPLAIN SELECT id FROM recent WHERE user_id = 1")
            .await
            .expect("explain");
        let shown = plan.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get(1).is_some_and(|p| p.contains("IndexScanExec"))
            }
            _ => false,
        });
        assert!(shown, "the lookup does not read the index");
        assert_eq!(
            answers(&c, &samples).await,
            before,
            "the index answers differently"
        );
        built
    });
    for (phase, sql) in [("index, point", POINT), ("index, range", RANGE)] {
        run_phase(&rt, &conn_str, phase, sql, a.clients, a.seconds, users);
    }
    println!();
    println!(
        "{} rows, {users} user_id values; CREATE INDEX took {built:.1} s; 20 lookups \
         answered the same with and without it",
        a.rows
    );
}

/// The sorted answers of the point lookup for each of `keys`.
async fn answers(c: &tokio_postgres::Client, keys: &[i64]) -> Vec<Vec<(i64, i64, i32)>> {
    let stmt = c.prepare(POINT).await.expect("prepare");
    let mut out = Vec::new();
    for k in keys {
        let mut rows: Vec<(i64, i64, i32)> = c
            .query(&stmt, &[k])
            .await
            .expect("lookup")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        rows.sort();
        out.push(rows);
    }
    out
}

fn run_phase(
    rt: &tokio::runtime::Runtime,
    conn_str: &str,
    phase: &str,
    sql: &'static str,
    clients: usize,
    seconds: u64,
    users: i64,
) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let results: Vec<(Vec<f64>, usize)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let conn_str = conn_str.to_string();
            tasks.push(tokio::spawn(async move {
                let c = connect(&conn_str).await.expect("connect");
                let stmt = c.prepare(sql).await.expect("prepare");
                let (mut lat, mut rows) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    let key: i64 = rand::thread_rng().gen_range(0..users);
                    let t = Instant::now();
                    rows += c.query(&stmt, &[&key]).await.expect("query").len();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                (lat, rows)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();
    let rows: usize = results.iter().map(|(_, r)| r).sum();
    let mut all: Vec<f64> = results.into_iter().flat_map(|(l, _)| l).collect();
    all.sort_by(f64::total_cmp);
    println!(
        "| {phase} ({:.1} rows each) | {clients} | {} | {:.1} | {:.2} | {:.2} | {:.1} |",
        rows as f64 / all.len().max(1) as f64,
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or(f64::NAN),
    );
}
