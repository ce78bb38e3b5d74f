//! Nexmark benchmark (not a test): runs queries of `bench/nexmark/` over the built-in
//! Nexmark generator and prints one Markdown table row per query.
//!
//! ```sh
//! cargo build --release --bins && \
//!   target/release/nexmark_bench [--events N] [--queries q0,q5|all] [--dir bench/nexmark]
//! ```
//! For each query it starts a fresh `freshet serve` (the binary next to this one, or
//! `FRESHET_BIN`), creates the three sources with `N` bids (persons and auctions in the
//! standard 1:3:46 proportion), then times `CREATE MATERIALIZED VIEW` followed by `FLUSH`,
//! which returns once the view has consumed and committed every generated event. Each
//! query file names the sources it reads in a `-- reads: bid, auction` line. It reports:
//! - events/s: events of the sources the query reads, over that wall-clock time;
//! - events/s per core: the same events over the server's CPU time (user + system) in
//!   that interval, read from `/proc`;
//! - peak RSS of the server (`VmHWM`), and the view's rows and state (from
//!   `freshet_catalog.view_state`).

use std::path::PathBuf;
use std::time::Instant;

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::TestServer;

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
    events: u64,
    queries: Vec<String>,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        queries: vec!["all".into()],
        dir: PathBuf::from("bench/nexmark"),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--events" => a.events = value.parse().expect("--events N"),
            "--queries" | "--query" => a.queries = value.split(',').map(String::from).collect(),
            "--dir" => a.dir = PathBuf::from(value),
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
    println!(
        "| query | events | seconds | events/s | CPU s | events/s per core | peak RSS MiB | distinct view rows | state MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for q in &a.queries {
        let sql = std::fs::read_to_string(a.dir.join(format!("{q}.sql")))
            .unwrap_or_else(|_| panic!("no {q}.sql in {}", a.dir.display()));
        let server = TestServer::start();
        let pid = server.pid().expect("server pid");
        let res = rt.block_on(async {
            let c = connect(&server.conn_str())
                .await
                .map_err(|e| e.to_string())?;
            c.batch_execute(&sources).await.map_err(|e| e.to_string())?;
            // Events of the sources this query reads (its `-- reads: …` line).
            let reads_line = sql
                .lines()
                .find_map(|l| l.trim().strip_prefix("-- reads:"))
                .unwrap_or("");
            let reads = |s: &str| reads_line.split(',').any(|w| w.trim() == s);
            let events = [("person", persons), ("auction", auctions), ("bid", bids)]
                .iter()
                .filter(|(s, _)| reads(s))
                .map(|(_, n)| n)
                .sum::<u64>();
            let cpu0 = cpu_seconds(pid);
            let t0 = Instant::now();
            c.batch_execute(&sql).await.map_err(|e| e.to_string())?;
            c.batch_execute("FLUSH").await.map_err(|e| e.to_string())?;
            let secs = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds(pid) - cpu0;
            let row = c
                .query_one(
                    "SELECT coalesce(sum(view_rows), 0), coalesce(sum(state_bytes), 0) \
                     FROM freshet_catalog.view_state",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            let (rows, state): (i64, i64) = (row.get(0), row.get(1));
            Ok::<_, String>((events, secs, cpu, rows, state))
        });
        match res {
            Ok((events, secs, cpu, rows, state)) => println!(
                "| {q} | {events} | {secs:.1} | {:.0} | {cpu:.1} | {:.0} | {:.0} | {rows} | {:.1} |",
                events as f64 / secs,
                events as f64 / cpu.max(0.001),
                peak_rss_mib(pid),
                state as f64 / (1024.0 * 1024.0)
            ),
            Err(e) => println!("| {q} | not supported: {} | | | | | | | |", e.replace('|', "/")),
        }
        drop(server);
    }
}
