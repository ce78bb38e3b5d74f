//! Operating Freshet: `/metrics` scraped while events arrive (every listed series there,
//! and moving), the `freshet_catalog` operational relations agreeing with it, the status
//! page rendered in headless Chromium, and a backup of a server taking a live stream
//! restored into a new data directory that resumes exactly from the backup's offsets.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{freshet_bin, http_get, KafkaBroker, TestServer};

/// The value of the series `name{labels…}` (labels as written by the encoder, sorted by
/// name), if present.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok())?
    })
}

/// Table `big` with rows 1..=n in 100 groups, and `SET background_ddl = true`.
async fn load_big(c: &tokio_postgres::Client, n: i64) {
    c.batch_execute(&format!(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, g INT, v BIGINT);
         INSERT INTO big SELECT value AS id, value % 100 AS g, value AS v FROM generate_series(1, {n}) AS s(value)"
    ))
    .await
    .expect("load");
    c.batch_execute("SET background_ddl = true")
        .await
        .expect("set");
}

fn scrape(server: &TestServer) -> String {
    let (status, body) = http_get(&format!("{}/metrics", server.http_url()));
    assert_eq!(status, 200, "{body}");
    body
}

fn produce(broker: &KafkaBroker, topic: &str, from: i64, to: i64, partitions: i32) {
    for p in 0..partitions {
        let payloads: Vec<Option<Vec<u8>>> = (from..to)
            .filter(|k| k % partitions as i64 == p as i64)
            .map(|k| {
                Some(
                    format!(
                        r#"{{"k": {k}, "g": "g{}", "n": {}, "ts": "2026-01-01T00:{:02}:00Z"}}"#,
                        k % 7,
                        k % 100,
                        (k / 50) % 60
                    )
                    .into_bytes(),
                )
            })
            .collect();
        broker.produce(topic, Some(p), None, &payloads);
    }
}

const SETUP: &str = "
    CREATE SOURCE ev (k BIGINT, g VARCHAR, n BIGINT, ts TIMESTAMPTZ)
      WITH (connector = 'kafka', topic = 'ev', properties.bootstrap.server = '{addr}')
      FORMAT PLAIN ENCODE JSON;
    CREATE MATERIALIZED VIEW per_g AS SELECT g, count(*) AS c, sum(n) AS s FROM ev GROUP BY g;";

#[test]
fn metrics_and_system_tables_move_as_events_arrive() {
    let broker = KafkaBroker::start();
    broker.create_topic("ev", 2);
    broker.create_topic("out", 1);
    broker.create_topic("lw", 1);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = freshet_sql_tests::runtime();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let addr = broker.addr();
        c.batch_execute(&SETUP.replace("{addr}", &addr)).await.expect("setup");
        c.batch_execute(&format!(
            "CREATE SINK out_g FROM per_g WITH (connector = 'kafka', topic = 'out',
               properties.bootstrap.server = '{addr}', primary_key = 'g') FORMAT UPSERT ENCODE JSON;
             CREATE SOURCE lw (k BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '1 minute')
               WITH (connector = 'kafka', topic = 'lw', properties.bootstrap.server = '{addr}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW lw_n AS SELECT count(*) AS n FROM lw;"
        ))
        .await
        .expect("sink");
        produce(&broker, "ev", 0, 1000, 2);
        // A message that does not decode; an event, then one far below the watermark.
        broker.produce("ev", Some(0), None, &[Some(b"{\"k\": ".to_vec())]);
        broker.produce(
            "lw",
            Some(0),
            None,
            &[
                Some(br#"{"k": 1, "ts": "2026-01-01T01:00:00Z"}"#.to_vec()),
                Some(br#"{"k": 2, "ts": "2025-01-01T00:00:00Z"}"#.to_vec()),
            ],
        );
        c.batch_execute("FLUSH").await.expect("flush");
        let first = scrape(&server);
        // Every series the operations guide lists.
        for name in [
            "freshet_source_rows_total",
            "freshet_source_bytes_total",
            "freshet_source_lag_messages",
            "freshet_source_parse_errors_total",
            "freshet_source_late_events_total",
            "freshet_source_watermark_seconds",
            "freshet_view_rows_in_total",
            "freshet_view_rows_out_total",
            "freshet_view_rows",
            "freshet_view_state_bytes",
            "freshet_view_state_entries",
            "freshet_view_last_checkpoint_seconds",
            "freshet_sink_messages_total",
            "freshet_sink_bytes_total",
            "freshet_sink_backlog_changes",
            "freshet_sink_failures_total",
            "freshet_sink_paused",
            "freshet_sink_last_delivery_seconds",
            "freshet_sink_batch_seconds_bucket",
            "freshet_checkpoint_seconds_bucket",
            "freshet_checkpoints_total",
            "freshet_checkpoint_failures_total",
            "freshet_last_checkpoint_seconds",
            "freshet_connections",
            "freshet_queries_total",
            "freshet_query_seconds_bucket",
            "freshet_rocksdb",
            "freshet_disk_free_bytes",
            "freshet_disk_total_bytes",
            "process_resident_memory_bytes",
        ] {
            assert!(
                first.lines().any(|l| l.starts_with(name) && !l.starts_with('#')),
                "{name} missing from /metrics:\n{first}"
            );
        }
        let rows = |m: &str, p: i32| {
            value(m, &format!(r#"freshet_source_rows_total{{partition="{p}",relation="per_g",source="ev"}}"#))
                .unwrap_or(0.0)
        };
        assert_eq!(rows(&first, 0) + rows(&first, 1), 1001.0, "every message counted");
        assert_eq!(
            value(&first, r#"freshet_source_parse_errors_total{partition="0",relation="per_g",source="ev"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(&first, r#"freshet_source_late_events_total{partition="0",relation="lw_n",source="lw"}"#),
            Some(1.0)
        );
        assert!(
            value(&first, r#"freshet_source_watermark_seconds{relation="lw_n",source="lw"}"#)
                .is_some_and(|w| w > 1.7e9),
            "the watermark gauge"
        );
        assert_eq!(value(&first, r#"freshet_view_rows{view="per_g"}"#), Some(7.0));
        // The relations say the same.
        let r = c
            .query_one(
                "SELECT sum(rows)::bigint, sum(parse_errors)::bigint, sum(late_events)::bigint
                   FROM freshet_catalog.source_partitions",
                &[],
            )
            .await
            .expect("source_partitions");
        assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)), (1003, 1, 1));
        let r = c
            .query_one(
                "SELECT rows, status, rows_in > 0, last_checkpoint IS NOT NULL, state_bytes > 0
                   FROM freshet_catalog.views WHERE view_name = 'per_g'",
                &[],
            )
            .await
            .expect("views");
        assert_eq!(r.get::<_, i64>(0), 7);
        assert_eq!(r.get::<_, String>(1), "running");
        assert!(r.get::<_, bool>(2) && r.get::<_, bool>(3));
        // Counted from RocksDB's memtables too: nothing here was flushed to a file yet.
        assert!(r.get::<_, bool>(4), "state_bytes of a view not yet flushed");
        // Its operator state entries: a count every commit keeps, equal to a scan of
        // the state, and the same in /metrics.
        let r = c
            .query_one(
                "SELECT v.state_entries, s.state_rows, vs.state_rows
                   FROM freshet_catalog.views v
                   JOIN freshet_catalog.view_state_scan s ON v.view_name = s.view_name
                   JOIN freshet_catalog.view_state vs ON v.view_name = vs.view_name
                  WHERE v.view_name = 'per_g'",
                &[],
            )
            .await
            .expect("state entries");
        let entries: i64 = r.get(0);
        assert!(entries > 0, "per_g keeps state");
        assert_eq!((r.get::<_, i64>(1), r.get::<_, i64>(2)), (entries, entries));
        assert_eq!(
            value(&scrape(&server), r#"freshet_view_state_entries{view="per_g"}"#),
            Some(entries as f64)
        );
        let r = c
            .query_one("SELECT checkpoints > 0, failures FROM freshet_catalog.checkpoints", &[])
            .await
            .expect("checkpoints");
        assert!(r.get::<_, bool>(0));
        assert_eq!(r.get::<_, i64>(1), 0);
        // The rates come from samples 2 s apart.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = c
                .query_one(
                    "SELECT count(*) FILTER (WHERE rows_per_second IS NULL) FROM freshet_catalog.source_partitions",
                    &[],
                )
                .await
                .expect("rates");
            if r.get::<_, i64>(0) == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no rates in source_partitions");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // More events: the counters move.
        produce(&broker, "ev", 1000, 1500, 2);
        c.batch_execute("FLUSH").await.expect("flush");
        let deadline = Instant::now() + Duration::from_secs(30);
        let second = loop {
            let m = scrape(&server);
            if value(&m, r#"freshet_sink_backlog_changes{sink="out_g"}"#) == Some(0.0) {
                break m;
            }
            assert!(Instant::now() < deadline, "the sink did not drain");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(rows(&second, 0) + rows(&second, 1), 1501.0);
        let moved = |series: &str| {
            let (a, b) = (value(&first, series).unwrap_or(0.0), value(&second, series).unwrap_or(0.0));
            assert!(b > a, "{series} did not move: {a} then {b}");
        };
        moved(r#"freshet_view_rows_in_total{view="per_g"}"#);
        moved(r#"freshet_view_rows_out_total{view="per_g"}"#);
        moved("freshet_checkpoints_total");
        moved("freshet_checkpoint_seconds_count");
        moved(r#"freshet_sink_messages_total{sink="out_g"}"#);
        moved(r#"freshet_queries_total{kind="select",outcome="ok"}"#);
        // The view's row count is a counter, and it is exact.
        let n = c
            .query_one("SELECT count(*) FROM per_g", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(value(&second, r#"freshet_view_rows{view="per_g"}"#), Some(n as f64));
        // DROP forgets a relation's series.
        c.batch_execute("DROP SINK out_g").await.expect("drop");
        let third = scrape(&server);
        assert!(!third.contains(r#"sink="out_g""#), "a dropped sink's series stay");
    });
}

#[test]
fn the_http_port_can_be_turned_off() {
    let server = TestServer::start_with_args(&["--http-listen", "off"]);
    let port = server.http_port;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let log = server.log();
    assert!(!log.contains("metrics at"), "{log}");
}

/// Headless Chromium (Debian's `chromium`), if installed; `scripts/clients.sh` installs it.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn status_page_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        panic!("chromium is not installed: run scripts/clients.sh");
    };
    let broker = KafkaBroker::start();
    broker.create_topic("ev", 2);
    broker.create_topic("out", 1);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = freshet_sql_tests::runtime();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let addr = broker.addr();
        c.batch_execute(&SETUP.replace("{addr}", &addr))
            .await
            .expect("setup");
        c.batch_execute(&format!(
            "CREATE SINK out_g FROM per_g WITH (connector = 'kafka', topic = 'out',
               properties.bootstrap.server = '{addr}', primary_key = 'g') FORMAT UPSERT ENCODE JSON"
        ))
        .await
        .expect("sink");
        produce(&broker, "ev", 0, 300, 2);
        broker.produce("ev", Some(0), None, &[Some(b"not json".to_vec())]);
        c.batch_execute("FLUSH").await.expect("flush");
    });
    let url = format!("{}/", server.http_url());
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let profile = tempfile::tempdir().expect("profile");
    let run = |extra: &[&str]| {
        let out = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The DOM after the page's script ran.
    let dom = run(&["--dump-dom", "--virtual-time-budget=2000"]);
    for needle in [
        "<title>Freshet status</title>",
        r#"id="sources""#,
        r#"id="views""#,
        r#"id="sinks""#,
        r#"id="dead-letters""#,
        r#"id="last-checkpoint""#,
        "rows per second",
        "per_g",
        "out_g",
        "StreamHashAgg",
        "not json",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the status page:\n{dom}"
        );
    }
    // The autorefresh box exists and the script set it (checked by default).
    assert!(dom.contains(r#"id="autorefresh""#));
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,1000",
        "--hide-scrollbars",
    ]);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    eprintln!("status page screenshot: {}", shot.display());
}

#[test]
fn backup_of_a_live_stream_restores_and_resumes_exactly() {
    let broker = KafkaBroker::start();
    broker.create_topic("ev", 2);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = freshet_sql_tests::runtime();
    let addr = broker.addr();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&SETUP.replace("{addr}", &addr)).await.expect("setup");
        c.batch_execute("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR); INSERT INTO notes VALUES (1, 'before')")
            .await
            .expect("table");
    });
    // The stream keeps flowing while the backup is taken.
    let total = 20_000i64;
    let producer = {
        let port = broker.port;
        std::thread::spawn(move || {
            let b = freshet_sql_tests::BrokerAddr(port);
            for chunk in 0..20 {
                b.produce_events("ev", chunk * 1000, (chunk + 1) * 1000, 2);
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().expect("dir");
    let backup_dir = dir.path().join("backup");
    let out = Command::new(freshet_bin())
        .args(["backup", "--to"])
        .arg(&backup_dir)
        .args(["--http", &format!("127.0.0.1:{}", server.http_port)])
        .output()
        .expect("freshet backup");
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("\"bytes\""), "{said}");
    // A second backup to the same place is refused.
    let again = Command::new(freshet_bin())
        .args(["backup", "--to"])
        .arg(&backup_dir)
        .args(["--http", &format!("127.0.0.1:{}", server.http_port)])
        .output()
        .expect("freshet backup");
    assert!(!again.status.success());
    producer.join().expect("producer");
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute("INSERT INTO notes VALUES (2, 'after')")
            .await
            .expect("insert");
    });
    let restored_dir = dir.path().join("restored");
    let out = Command::new(freshet_bin())
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(&restored_dir)
        .output()
        .expect("freshet restore");
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restoring over a data directory that holds something is refused.
    let out = Command::new(freshet_bin())
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(&restored_dir)
        .output()
        .expect("freshet restore");
    assert!(!out.status.success());
    let restored = TestServer::start_in(Some(restored_dir), &["--checkpoint-interval-ms", "100"]);
    // The reference: every produced event, counted once.
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for k in 0..total {
        let e = expected.entry(format!("g{}", k % 7)).or_default();
        e.0 += 1;
        e.1 += k % 100;
    }
    rt.block_on(async {
        for s in [&server, &restored] {
            let c = connect(&s.conn_str()).await.expect("connect");
            c.batch_execute("FLUSH").await.expect("flush");
            let got: BTreeMap<String, (i64, i64)> = c
                .query("SELECT g, c, s::bigint FROM per_g", &[])
                .await
                .expect("per_g")
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect();
            assert_eq!(
                got, expected,
                "per_g after the stream (server on port {})",
                s.http_port
            );
        }
        // The restored table holds what was committed before the backup only.
        let c = connect(&restored.conn_str()).await.expect("connect");
        let notes: Vec<i32> = c
            .query("SELECT id FROM notes ORDER BY id", &[])
            .await
            .expect("notes")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(notes, vec![1]);
    });
}

#[test]
fn show_jobs_follows_a_background_backfill_and_a_kafka_catch_up() {
    let broker = KafkaBroker::start();
    broker.create_topic("ev", 2);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = freshet_sql_tests::runtime();
    let n = 300_000i64;
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        load_big(&c, n).await;
        let started = Instant::now();
        c.batch_execute("CREATE MATERIALIZED VIEW bg AS SELECT g, count(*) AS c, sum(v) AS s FROM big GROUP BY g")
            .await
            .expect("create");
        let returned = started.elapsed();
        // Poll SHOW JOBS until the backfill is listed no more.
        let mut seen = Vec::new();
        let mut percents = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let rows: Vec<(String, String)> = c
                .simple_query("SHOW JOBS")
                .await
                .expect("show jobs")
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((r.get(1)?.to_string(), r.get(3)?.to_string()))
                    }
                    _ => None,
                })
                .collect();
            if rows.is_empty() {
                break;
            }
            seen.extend(rows);
            // The total is counted before the backfill starts, so its share done shows.
            for m in c
                .simple_query(
                    "SELECT percent FROM freshet_catalog.jobs
                      WHERE kind = 'backfill' AND relation = 'bg' AND state = 'running'",
                )
                .await
                .expect("jobs")
            {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    if let Some(p) = r.get(0).and_then(|p| p.parse::<f64>().ok()) {
                        percents.push(p);
                    }
                }
            }
            assert!(Instant::now() < deadline, "the background CREATE did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("CREATE returned after {returned:?}; SHOW JOBS saw {} rows, e.g. {:?}", seen.len(), seen.last());
        assert!(
            seen.iter().any(|(kind, _)| kind == "backfill"),
            "SHOW JOBS never listed the backfill: {seen:?}"
        );
        assert!(
            percents.iter().any(|p| *p > 0.0 && *p < 100.0),
            "no share done seen while the backfill ran: {percents:?}"
        );
        let r = c
            .query_one(
                "SELECT state, rows_done, rows_remaining, percent FROM freshet_catalog.jobs
                  WHERE kind = 'backfill' AND relation = 'bg'",
                &[],
            )
            .await
            .expect("jobs");
        assert_eq!(r.get::<_, String>(0), "done");
        assert_eq!(r.get::<_, i64>(1), n);
        assert_eq!(r.get::<_, i64>(2), 0);
        assert_eq!(r.get::<_, f64>(3), 100.0);
        let r = c.query_one("SELECT count(*), sum(c)::bigint FROM bg", &[]).await.expect("bg");
        assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (100, n));
        // A bad query fails at once, not in the background.
        assert!(c.batch_execute("CREATE MATERIALIZED VIEW nope AS SELECT x FROM nothing").await.is_err());

        // A view over a topic's backlog: its catch-up is a job that ends when the lag is 0.
        c.batch_execute("SET background_ddl = false").await.expect("set");
        produce(&broker, "ev", 0, 20_000, 2);
        c.batch_execute(&SETUP.replace("{addr}", &broker.addr())).await.expect("setup");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = c
                .query_one(
                    "SELECT state, rows_done FROM freshet_catalog.jobs WHERE kind = 'catch up' AND relation = 'per_g'",
                    &[],
                )
                .await
                .expect("jobs");
            if r.get::<_, String>(0) == "done" {
                assert_eq!(r.get::<_, i64>(1), 20_000);
                break;
            }
            assert!(Instant::now() < deadline, "the catch-up job did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// A backfill's work is committed with the checkpoints before the view itself (its memory
/// stays bounded): killed in the middle, the server comes back without the view and
/// without its partial state, and the same view created again (it gets the same id)
/// equals its query.
#[test]
fn a_backfill_killed_midway_leaves_nothing_behind() {
    let mut server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = freshet_sql_tests::runtime();
    let n = 600_000i64;
    let view =
        "CREATE MATERIALIZED VIEW bg AS SELECT g, count(*) AS c, sum(v) AS s FROM big GROUP BY g";
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        load_big(&c, n).await;
        c.batch_execute(view).await.expect("create");
        // Well into it: with checkpoints every 100 ms, some of its work is committed.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = c
                .query_opt(
                    "SELECT rows_done FROM freshet_catalog.jobs
                      WHERE kind = 'backfill' AND relation = 'bg' AND state = 'running'",
                    &[],
                )
                .await
                .expect("jobs");
            if r.is_some_and(|r| r.get::<_, i64>(0) > 2 * 65_536) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the backfill never got past two pages"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    server.kill9_restart();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let e = c.query("SELECT * FROM bg", &[]).await.expect_err("no view");
        assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e}");
        assert!(
            server
                .log()
                .contains("removing the state of a backfill that did not finish"),
            "{}",
            server.log()
        );
        c.batch_execute(view).await.expect("create again");
        let got: BTreeMap<i32, (i64, i64)> = c
            .query("SELECT g, c, s::bigint FROM bg", &[])
            .await
            .expect("bg")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let want: BTreeMap<i32, (i64, i64)> = c
            .query(
                "SELECT g, count(*), sum(v)::bigint FROM big GROUP BY g",
                &[],
            )
            .await
            .expect("batch")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get::<_, i64>(2))))
            .collect();
        assert_eq!(got.len(), 100);
        assert_eq!(got, want, "the view equals its query");
    });
}
