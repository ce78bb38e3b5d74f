//! Faults and hostile input through the real server: statements too deep to plan, a view
//! that cannot be planned at start-up, SIGTERM under load, and a full disk.

use std::time::{Duration, Instant};

use freshet_sql_tests::pgclient::{connect, sqlstate_of, DbError};
use freshet_sql_tests::{KafkaBroker, TestServer};
use tokio_postgres::Client;

use freshet_sql_tests::runtime as rt;

async fn one_i64(c: &Client, sql: &str) -> i64 {
    let row = c.query_one(sql, &[]).await.expect(sql);
    row.get(0)
}

fn chain(op: &str, n: usize) -> String {
    let mut s = String::from("SELECT 1");
    for _ in 1..n {
        s.push_str(op);
        s.push('1');
    }
    s
}

#[test]
fn statements_too_deep_to_plan_get_54001_and_the_server_goes_on() {
    let server = TestServer::start();
    rt().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let deep = [
            chain(" + ", 50_000),
            chain("+", 1_000_000),
            chain(" OR 1 = ", 20_000),
            vec!["SELECT 1"; 20_000].join(" UNION ALL "),
            format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
            format!(
                "SELECT * FROM {}SELECT 1{}",
                "(".repeat(500),
                ") AS x".repeat(500)
            ),
            // sqlparser fails after building a deep chain: dropping it must not overflow.
            format!("{} +", chain(" + ", 200_000)),
            format!("CREATE MATERIALIZED VIEW v AS {}", chain(" * ", 30_000)),
        ];
        for sql in &deep {
            let code = sqlstate_of(&c, sql).await;
            assert!(
                code == "54001" || (sql.ends_with(" +") && code == "42601"),
                "{}…: {code}",
                &sql[..60.min(sql.len())]
            );
            // The extended protocol parses too.
            if !sql.ends_with(" +") {
                let err = c.prepare(sql).await.expect_err("prepared a deep statement");
                assert_eq!(DbError::from(err).0.split(':').next(), Some("54001"));
            }
        }
        // Wide is fine: a long IN list and a long select list are flat.
        let list: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
        let sql = format!("SELECT 7 IN ({})", list.join(", "));
        let rows = c.simple_query(&sql).await.expect("a long IN list");
        assert!(!rows.is_empty());
        // Deep but under the limit plans and runs.
        assert_eq!(
            one_i64(&c, &format!("{}::bigint", chain(" + ", 500))).await,
            500
        );
        // Integers add as Postgres' `integer`s.
        let row = c.query_one("SELECT 40 + 2", &[]).await.expect("40 + 2");
        assert_eq!(row.get::<_, i32>(0), 42);
    });
    assert!(
        !server.log().contains("overflowed its stack"),
        "{}",
        server.log()
    );
}

#[test]
fn sigterm_exits_zero_every_time() {
    let mut server = TestServer::start();
    let runtime = rt();
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT);
             CREATE MATERIALIZED VIEW s AS SELECT count(*) AS n, sum(v) AS total FROM t;
             CREATE SOURCE g (id BIGINT) WITH (connector = 'datagen',
               fields.id.kind = 'sequence', fields.id.start = '1', fields.id.end = '1000000000',
               datagen.rows.per.second = '20000');
             CREATE MATERIALIZED VIEW gc AS SELECT count(*) AS n FROM g;",
        )
        .await
        .expect("setup");
    });
    let mut next = 0i64;
    for round in 0..25 {
        // Load while it stops: a writer, and a generator feeding a view.
        let c = runtime.block_on(async { connect(&server.conn_str()).await.expect("connect") });
        let start = next;
        next += 1_000_000;
        let stop_writer = runtime.spawn(async move {
            let mut i = start;
            loop {
                if c.simple_query(&format!("INSERT INTO t VALUES ({i}, 1)"))
                    .await
                    .is_err()
                {
                    break;
                }
                i += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(150 + 40 * (round % 5)));
        let status = server.stop().expect("running");
        stop_writer.abort();
        assert!(
            status.success(),
            "round {round}: SIGTERM ended with {status}; log:\n{}",
            server.log()
        );
        server.start_again(&[]);
    }
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        // Every acknowledged insert is there, once.
        let n = one_i64(&c, "SELECT count(*) FROM t").await;
        assert_eq!(one_i64(&c, "SELECT n FROM s").await, n);
        assert_eq!(one_i64(&c, "SELECT total::bigint FROM s").await, n);
    });
}

#[test]
fn a_view_that_cannot_be_planned_at_startup_is_marked_failed() {
    let mut server = TestServer::start();
    let runtime = rt();
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE e (id INT PRIMARY KEY, ts TIMESTAMP);
             INSERT INTO e VALUES (1, '2026-01-01 10:00:00');
             CREATE MATERIALIZED VIEW wide AS SELECT window_start, count(*) AS n
               FROM HOP(e, ts, INTERVAL '1 second', INTERVAL '100 seconds') GROUP BY window_start;
             CREATE MATERIALIZED VIEW over_wide AS SELECT count(*) AS n FROM wide;
             CREATE MATERIALIZED VIEW plain AS SELECT count(*) AS n FROM e;",
        )
        .await
        .expect("setup");
        assert_eq!(one_i64(&c, "SELECT count(*) FROM wide").await, 100);
    });
    // A later server refuses HOPs of more than 10 windows: `wide` (and the view over it)
    // cannot be planned, and everything else must still run.
    assert!(server.stop().expect("running").success());
    server.start_again(&["--max-hop-windows", "10"]);
    runtime.block_on(async {
        let c = connect(&server.conn_str())
            .await
            .expect("connect after restart");
        assert_eq!(sqlstate_of(&c, "SELECT * FROM wide").await, "55000");
        assert_eq!(sqlstate_of(&c, "SELECT * FROM over_wide").await, "55000");
        c.simple_query("INSERT INTO e VALUES (2, '2026-01-01 10:00:05')")
            .await
            .expect("insert");
        assert_eq!(one_i64(&c, "SELECT n FROM plain").await, 2);
        let failed = one_i64(
            &c,
            "SELECT count(*) FROM freshet_catalog.source_status WHERE state = 'failed' \
             AND relation_name IN ('wide', 'over_wide')",
        )
        .await;
        assert_eq!(failed, 2);
        let why = one_i64(
            &c,
            "SELECT count(*) FROM freshet_catalog.source_status WHERE relation_name = 'wide' \
             AND last_error LIKE '%max_hop_windows%'",
        )
        .await;
        assert_eq!(why, 1);
        c.batch_execute("DROP MATERIALIZED VIEW wide CASCADE")
            .await
            .expect("drop the failed view");
        assert_eq!(
            one_i64(&c, "SELECT count(*) FROM freshet_catalog.source_status").await,
            0
        );
    });
}

/// A tmpfs of `mb` MiB mounted for the test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u32) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("freshet-small-disk-")
            .tempdir()
            .expect("tempdir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a small tmpfs, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the disk (what is left of it) with a file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open filler");
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The view over the topic counts `produced` events; else the server's log, less its
/// noise, explains it.
async fn assert_source_view_count(c: &Client, server: &TestServer, produced: i64) {
    let n = one_i64(c, "SELECT n FROM ev").await;
    if n != produced {
        let log = server.log();
        let interesting: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("PartitionEOF") && !l.contains("checkpoint commit failed"))
            .collect();
        panic!(
            "the source's view has {n} events of {produced}; log:\n{}",
            interesting.join("\n")
        );
    }
}

fn produce_values(kafka: &KafkaBroker, topic: &str, from: i64, n: i64) -> i64 {
    let payloads: Vec<Option<Vec<u8>>> = (from..from + n)
        .map(|i| Some(format!("{{\"id\": {i}, \"v\": {}}}", i % 7).into_bytes()))
        .collect();
    kafka.produce(topic, None, None, &payloads);
    (from..from + n).map(|i| i % 7).sum()
}

#[test]
fn a_full_disk_fails_writes_cleanly_and_everything_resumes_once_space_is_back() {
    let disk = SmallDisk::mount(48);
    let kafka = KafkaBroker::start();
    kafka.create_topic("events", 2);
    let mut server = TestServer::start_in(Some(disk.path().join("data")), &[]);
    let runtime = rt();
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, pad VARCHAR);
             CREATE MATERIALIZED VIEW tv AS SELECT count(*) AS n, sum(length(pad)) AS bytes FROM t;
             CREATE SOURCE events (id BIGINT, v BIGINT) WITH (connector = 'kafka',
               topic = 'events', properties.bootstrap.server = '{}',
               scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW ev AS SELECT count(*) AS n, sum(v) AS total FROM events;",
            kafka.addr()
        ))
        .await
        .expect("setup");
        let mut produced = 0i64;
        let mut total = produce_values(&kafka, "events", 0, 2000);
        produced += 2000;
        let mut acked: Vec<(i64, usize)> = Vec::new();
        let pad = "x".repeat(4000);
        for id in 0..50 {
            c.simple_query(&format!("INSERT INTO t VALUES ({id}, '{pad}')"))
                .await
                .expect("insert before the disk is full");
            acked.push((id, pad.len()));
        }
        c.simple_query("FLUSH").await.expect("flush");
        assert_source_view_count(&c, &server, produced).await;

        // Fill the disk: writes must fail with 53100, and nothing else may break.
        let filler = disk.fill();
        let mut disk_full = 0;
        let mut other = Vec::new();
        // RocksDB frees space of its own when it is reopened after a failed write (its
        // preallocated log): keep the disk full.
        for id in 1000..6000 {
            match c
                .simple_query(&format!("INSERT INTO t VALUES ({id}, '{pad}')"))
                .await
            {
                Ok(_) => {
                    acked.push((id, pad.len()));
                    if id % 20 == 0 {
                        disk.fill();
                    }
                }
                Err(e) => {
                    let e = DbError::from(e).0;
                    if e.starts_with("53100") {
                        disk_full += 1;
                    } else {
                        other.push(e);
                    }
                }
            }
            if disk_full >= 5 {
                break;
            }
        }
        assert!(
            disk_full >= 5,
            "no write failed with 53100; other errors: {other:?}"
        );
        assert!(other.is_empty(), "writes failed otherwise: {other:?}");
        // Events keep arriving while the disk is full; queries still answer.
        total += produce_values(&kafka, "events", produced, 3000);
        produced += 3000;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = one_i64(&c, "SELECT count(*) FROM t").await;
        assert!(n as usize <= acked.len());

        // Space is back: with no restart, writes work again and every view catches up.
        std::fs::remove_file(&filler).expect("free the disk");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut id = 5000;
        loop {
            match c
                .simple_query(&format!("INSERT INTO t VALUES ({id}, 'after')"))
                .await
            {
                Ok(_) => {
                    acked.push((id, 5));
                    break;
                }
                Err(e) => {
                    let e = DbError::from(e).0;
                    assert!(
                        Instant::now() < deadline,
                        "writes still fail 60 s after space came back: {e}\n{}",
                        server.log()
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    id += 1;
                }
            }
        }
        total += produce_values(&kafka, "events", produced, 1000);
        produced += 1000;
        loop {
            match c.simple_query("FLUSH").await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "FLUSH still fails: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        // Exactly the acknowledged rows, and every produced event counted once.
        let mut want: Vec<i64> = acked.iter().map(|(id, _)| *id).collect();
        want.sort_unstable();
        let got: Vec<i64> = c
            .query("SELECT id FROM t ORDER BY id", &[])
            .await
            .expect("ids")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "the table is not exactly the acknowledged rows");
        assert_eq!(one_i64(&c, "SELECT n FROM tv").await, want.len() as i64);
        let bytes: i64 = acked.iter().map(|(_, b)| *b as i64).sum();
        assert_eq!(one_i64(&c, "SELECT bytes FROM tv").await, bytes);
        assert_source_view_count(&c, &server, produced).await;
        assert_eq!(one_i64(&c, "SELECT total::bigint FROM ev").await, total);
    });
    // And it all survives a restart.
    server.restart();
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("reconnect");
        let n = one_i64(&c, "SELECT count(*) FROM t").await;
        assert_eq!(one_i64(&c, "SELECT n FROM tv").await, n);
    });
}

/// The broker becomes unreachable (connections reset, new ones refused, its data intact:
/// a broker restart or a network partition), Freshet is killed and started again while it
/// is, then the broker comes back: the reader recovers by itself, and the view counts
/// every event once.
#[test]
fn readers_recover_by_themselves_from_a_broker_outage() {
    let kafka = KafkaBroker::start_proxied();
    kafka.create_topic("ev", 2);
    let mut server = TestServer::start();
    let rt = rt();
    let mut sum = produce_values(&kafka, "ev", 0, 1000);
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE SOURCE src (id BIGINT, v BIGINT) WITH (connector = 'kafka', topic = 'ev',
               properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW ev AS SELECT count(*) AS n, sum(v) AS s FROM src;
             FLUSH;",
            kafka.addr()
        ))
        .await
        .expect("setup");
        assert_source_view_count(&c, &server, 1000).await;
    });
    kafka.cut();
    std::thread::sleep(Duration::from_secs(3));
    // Queries go on while the broker is away.
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        assert_source_view_count(&c, &server, 1000).await;
    });
    // Freshet starts again while the broker is still away.
    server.kill9_restart();
    std::thread::sleep(Duration::from_secs(2));
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        assert_source_view_count(&c, &server, 1000).await;
    });
    kafka.heal();
    sum += produce_values(&kafka, "ev", 1000, 1000);
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        tokio::time::timeout(Duration::from_secs(120), c.batch_execute("FLUSH"))
            .await
            .expect("FLUSH within 2 minutes of the broker's return")
            .expect("FLUSH");
        assert_source_view_count(&c, &server, 2000).await;
        assert_eq!(one_i64(&c, "SELECT s::bigint FROM ev").await, sum);
        let states = c
            .simple_query(
                "SELECT state FROM freshet_catalog.source_status WHERE source_name = 'src'",
            )
            .await
            .expect("source_status");
        let running = states.iter().any(|m| {
            matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("running"))
        });
        assert!(running, "the reader is not running again: {states:?}");
    });
}
