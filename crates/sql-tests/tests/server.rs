//! Server behaviour that `.slt` files cannot express: the connection limit, graceful
//! shutdown flushing uncommitted writes, and real clients other than tokio-postgres (psql
//! and Python's psycopg) talking to the server.

use std::process::Command;

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::TestServer;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Connects, retrying while the server answers 53300 (a slot still held by a client that
/// has just left) for at most two seconds.
async fn connect_within_limit(conn: &str) -> tokio_postgres::Client {
    let mut last = String::new();
    for _ in 0..100 {
        match connect(conn).await {
            Ok(c) => return c,
            Err(e) if e.0.starts_with("53300") => last = e.0,
            Err(e) => panic!("connect: {}", e.0),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no slot within the limit: {last}");
}

#[test]
fn connections_over_the_limit_are_refused_with_53300() {
    let server = TestServer::start_with_args(&["--max-connections", "2"]);
    rt().block_on(async {
        // The readiness probe's TCP connection holds a slot until the server sees it close,
        // so the first two clients may have to wait for that slot.
        let a = connect_within_limit(&server.conn_str()).await;
        let b = connect_within_limit(&server.conn_str()).await;
        let err = match connect(&server.conn_str()).await {
            Ok(_) => panic!("a third client was accepted over a limit of 2"),
            Err(e) => e,
        };
        assert!(err.0.starts_with("53300"), "unexpected error: {}", err.0);
        // The two admitted sessions still work.
        a.simple_query("SELECT 1").await.expect("a works");
        b.simple_query("SELECT 1").await.expect("b works");
        drop(a);
        // A slot frees up once a client leaves.
        let mut ok = false;
        for _ in 0..100 {
            if connect(&server.conn_str()).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(ok, "no slot freed after a client disconnected");
    });
}

#[test]
fn graceful_shutdown_commits_buffered_writes() {
    let mut server = TestServer::start_with_args(&["--checkpoint-interval-ms", "600000"]);
    let runtime = rt();
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v INT);
             CREATE MATERIALIZED VIEW s AS SELECT sum(v) AS total FROM t;
             SET implicit_flush = false;
             INSERT INTO t VALUES (1, 10), (2, 32);",
        )
        .await
        .expect("setup");
    });
    // With a 10-minute checkpoint interval nothing is committed yet; SIGTERM must commit.
    server.restart();
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("reconnect");
        let rows = c
            .query_one("SELECT total FROM s", &[])
            .await
            .expect("query");
        let total: i64 = rows.get(0);
        assert_eq!(total, 42);
    });
}

#[test]
fn psql_and_psycopg_can_talk_to_freshet() {
    let server = TestServer::start();
    let psql = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "freshet",
            "-d",
            "freshet",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", "CREATE TABLE k (id INT PRIMARY KEY, name TEXT)"])
        .args(["-c", "INSERT INTO k VALUES (1, 'one'), (2, 'two')"])
        .args([
            "-c",
            "CREATE MATERIALIZED VIEW n AS SELECT count(*) AS c FROM k",
        ])
        .args(["-c", "SELECT c FROM n"])
        .output()
        .expect("psql must be installed (scripts/test.sh installs postgresql-client)");
    let out = String::from_utf8_lossy(&psql.stdout);
    assert!(
        psql.status.success(),
        "psql failed: {}{}",
        out,
        String::from_utf8_lossy(&psql.stderr)
    );
    assert!(out.lines().any(|l| l.trim() == "2"), "psql output: {out}");

    let script = format!(
        r#"
import psycopg
with psycopg.connect("host=127.0.0.1 port={port} user=freshet dbname=freshet", autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("INSERT INTO k VALUES (%s, %s)", (3, "three"))
    cur.execute("SELECT c FROM n")
    assert cur.fetchone()[0] == 3
    cur.execute("SELECT name FROM k WHERE id = %s", (2,))
    assert cur.fetchone()[0] == "two"
    # binary results
    cur = conn.cursor(binary=True)
    cur.execute("SELECT id, name FROM k ORDER BY id")
    assert cur.fetchall() == [(1, "one"), (2, "two"), (3, "three")]
    try:
        cur.execute("SELECT * FROM nope")
        raise SystemExit("expected an error")
    except psycopg.errors.UndefinedTable:
        pass
print("ok")
"#,
        port = server.port
    );
    let py = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 must be installed");
    assert!(
        py.status.success(),
        "psycopg script failed: {}{}\nserver log:\n{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr),
        server.log()
    );
}

#[test]
fn prepared_statements_with_binary_parameters_and_results() {
    use chrono::{NaiveDate, NaiveDateTime};
    let server = TestServer::start();
    rt().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE ev (id BIGINT PRIMARY KEY, small SMALLINT, name TEXT, score DOUBLE PRECISION,
                              ok BOOLEAN, day DATE, at TIMESTAMP, n INT);
             CREATE MATERIALIZED VIEW by_ok AS SELECT ok, count(*) AS c, sum(score) AS s FROM ev GROUP BY ok;",
        )
        .await
        .expect("setup");
        let insert = c
            .prepare("INSERT INTO ev VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .await
            .expect("prepare insert");
        let day = NaiveDate::from_ymd_opt(2026, 11, 28).expect("date");
        let at: NaiveDateTime = day.and_hms_micro_opt(12, 30, 5, 250_000).expect("time");
        for i in 0..10i64 {
            let n: Option<i32> = if i % 3 == 0 { None } else { Some(i as i32) };
            c.execute(&insert, &[&i, &(i as i16), &format!("e{i}"), &(i as f64 * 0.5), &(i % 2 == 0), &day, &at, &n])
                .await
                .expect("insert");
        }
        let select = c
            .prepare("SELECT id, name, score, ok, day, at, n FROM ev WHERE id >= $1 AND name <> $2 ORDER BY id")
            .await
            .expect("prepare select");
        let rows = c.query(&select, &[&7i64, &"e8"]).await.expect("select");
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, vec![7, 9]);
        let r = &rows[0];
        assert_eq!(r.get::<_, String>(1), "e7");
        assert_eq!(r.get::<_, f64>(2), 3.5);
        assert!(!r.get::<_, bool>(3));
        assert_eq!(r.get::<_, NaiveDate>(4), day);
        assert_eq!(r.get::<_, NaiveDateTime>(5), at);
        assert_eq!(r.get::<_, Option<i32>>(6), Some(7));
        assert_eq!(rows[1].get::<_, Option<i32>>(6), None);
        // Parameters in UPDATE/DELETE, and the view follows.
        let upd = c.prepare("UPDATE ev SET score = $1 WHERE id = $2").await.expect("prepare update");
        assert_eq!(c.execute(&upd, &[&100.0f64, &1i64]).await.expect("update"), 1);
        let del = c.prepare("DELETE FROM ev WHERE id < $1").await.expect("prepare delete");
        assert_eq!(c.execute(&del, &[&1i64]).await.expect("delete"), 1);
        let v = c
            .query("SELECT ok, c, s FROM by_ok ORDER BY ok", &[])
            .await
            .expect("view");
        let got: Vec<(bool, i64, f64)> = v.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        // ids 1..9: odd ids (ok=false) 1,3,5,7,9 with 1 updated to 100; even 2,4,6,8.
        assert_eq!(got, vec![(false, 5, 100.0 + 1.5 + 2.5 + 3.5 + 4.5), (true, 4, 1.0 + 2.0 + 3.0 + 4.0)]);
        // A bad statement fails at prepare time with its SQLSTATE; the session goes on.
        let err = c.prepare("SELECT nope FROM ev").await.expect_err("unknown column");
        assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("42703"));
        assert_eq!(c.query_one("SELECT count(*) FROM ev", &[]).await.expect("count").get::<_, i64>(0), 9);
    });
}

#[test]
fn explain_shows_the_streaming_plan() {
    let server = TestServer::start();
    rt().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute("CREATE TABLE a (id INT PRIMARY KEY, k INT, v INT); CREATE TABLE b (k INT PRIMARY KEY, name TEXT)")
            .await
            .expect("setup");
        let rows = c
            .simple_query(
                "EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT b.name, max(a.v) FROM a JOIN b ON a.k = b.k WHERE a.v > 0 GROUP BY b.name",
            )
            .await
            .expect("explain");
        let text: Vec<String> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        let text = text.join("\n");
        for op in ["StreamMaterialize", "StreamHashAgg", "StreamHashJoin", "StreamFilter", "StreamSource"] {
            assert!(text.contains(op), "{op} missing from:\n{text}");
        }
        // EXPLAIN creates nothing.
        let shown = c.simple_query("SHOW MATERIALIZED VIEWS").await.expect("show");
        assert!(!shown.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
    });
}

/// Point lookups (`WHERE key = $1`, answered from storage without DataFusion) return what
/// the same query returns through the general path, for every key, with repeated rows,
/// NULLs, aliases, keyed tables and parameters of another integer type. The general path
/// is forced by a condition the fast path does not take (`AND true`).
#[test]
fn point_lookups_agree_with_the_general_path() {
    let server = TestServer::start();
    rt().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE ev (k BIGINT, name VARCHAR, v INT);
             CREATE TABLE dim (id INT PRIMARY KEY, label VARCHAR, w BIGINT);
             CREATE MATERIALIZED VIEW per_k AS SELECT k, name, count(*) AS n, sum(v) AS s FROM ev GROUP BY k, name;
             CREATE MATERIALIZED VIEW copy AS SELECT k, v, name FROM ev;",
        )
        .await
        .expect("schema");
        let mut inserts = Vec::new();
        for i in 0..300i64 {
            let name = if i % 7 == 0 { "NULL".to_string() } else { format!("'n{}'", i % 3) };
            inserts.push(format!("({}, {name}, {})", i % 40, i % 5));
        }
        c.batch_execute(&format!("INSERT INTO ev VALUES {}", inserts.join(", ")))
            .await
            .expect("insert");
        c.batch_execute(
            "INSERT INTO dim VALUES (1, 'one', 10), (2, NULL, 20), (3, 'three', NULL);
             DELETE FROM ev WHERE k = 5;",
        )
        .await
        .expect("dml");
        let canon = |rows: Vec<tokio_postgres::Row>| {
            let mut out: Vec<String> = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<_, Option<i64>>(i)
                                .map(|v| format!("{v:?}"))
                                .or_else(|_| r.try_get::<_, Option<i32>>(i).map(|v| format!("{v:?}")))
                                .or_else(|_| r.try_get::<_, Option<String>>(i).map(|v| format!("{v:?}")))
                                .unwrap_or_else(|e| format!("? {e}"))
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            out.sort();
            out
        };
        let cases: [(&str, &str); 6] = [
            ("SELECT * FROM per_k WHERE k = $1", "SELECT * FROM per_k WHERE k = $1 AND true"),
            ("SELECT n, s AS total FROM per_k WHERE k = $1 AND name = 'n1'", "SELECT n, s AS total FROM per_k WHERE k = $1 AND name = 'n1' AND true"),
            ("SELECT name FROM copy WHERE k = $1", "SELECT name FROM copy WHERE k = $1 AND true"),
            ("SELECT k, name FROM copy WHERE v = $1 AND k = 3", "SELECT k, name FROM copy WHERE v = $1 AND k = 3 AND true"),
            ("SELECT label, w FROM dim WHERE id = $1", "SELECT label, w FROM dim WHERE id = $1 AND true"),
            ("SELECT * FROM dim WHERE w = $1", "SELECT * FROM dim WHERE w = $1 AND true"),
        ];
        let mut nonempty = 0;
        for (fast, general) in cases {
            let f = c.prepare(fast).await.expect("prepare fast");
            let g = c.prepare(general).await.expect("prepare general");
            assert_eq!(f.columns().len(), g.columns().len(), "{fast}");
            for key in -1i64..42 {
                // Parameters arrive as the type the statement's description asks for.
                let a = match f.params()[0] {
                    tokio_postgres::types::Type::INT4 => c.query(&f, &[&(key as i32)]).await,
                    _ => c.query(&f, &[&key]).await,
                }
                .expect("fast query");
                let b = match g.params()[0] {
                    tokio_postgres::types::Type::INT4 => c.query(&g, &[&(key as i32)]).await,
                    _ => c.query(&g, &[&key]).await,
                }
                .expect("general query");
                for (x, y) in f.columns().iter().zip(g.columns()) {
                    assert_eq!((x.name(), x.type_()), (y.name(), y.type_()), "{fast}");
                }
                let (a, b) = (canon(a), canon(b));
                assert_eq!(a, b, "{fast} with {key}");
                nonempty += usize::from(!a.is_empty());
            }
        }
        assert!(nonempty > 60, "too few keys matched anything: {nonempty}");
        // Literals, including ones that do not convert exactly (the general path answers).
        for (fast, general) in [
            ("SELECT * FROM copy WHERE k = 3", "SELECT * FROM copy WHERE k = 3 AND true"),
            ("SELECT * FROM copy WHERE k = 2.5", "SELECT * FROM copy WHERE k = 2.5 AND true"),
            ("SELECT * FROM copy WHERE k = '3'", "SELECT * FROM copy WHERE k = '3' AND true"),
            ("SELECT * FROM per_k WHERE name = 'n2'", "SELECT * FROM per_k WHERE name = 'n2' AND true"),
        ] {
            let a = canon(c.query(fast, &[]).await.expect("fast literal"));
            let b = canon(c.query(general, &[]).await.expect("general literal"));
            assert_eq!(a, b, "{fast}");
        }
    });
}

/// A query that names relations more than once (self-joins, subqueries) or several
/// relations reads them all from one committed checkpoint: with a writer moving value
/// between two rows (their sum stays 100) and a view over them, every read sees the
/// sum whole and the view equal to its table.
#[test]
fn each_query_reads_one_snapshot() {
    let server = TestServer::start();
    let runtime = rt();
    runtime.block_on(async {
        let setup = connect(&server.conn_str()).await.expect("connect");
        setup
            .batch_execute(
                "CREATE TABLE acct (id INT PRIMARY KEY, v BIGINT);
                 INSERT INTO acct VALUES (1, 50), (2, 50);
                 CREATE MATERIALIZED VIEW total AS SELECT sum(v) AS s FROM acct;
                 CREATE MATERIALIZED VIEW mirror AS SELECT id, v FROM acct;",
            )
            .await
            .expect("setup");
        let writer = connect(&server.conn_str()).await.expect("writer");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_w = stop.clone();
        let writes = tokio::spawn(async move {
            let mut n = 0u64;
            while !stop_w.load(std::sync::atomic::Ordering::SeqCst) {
                writer
                    .simple_query(
                        "UPDATE acct SET v = v + CASE WHEN id = 1 THEN 7 ELSE -7 END",
                    )
                    .await
                    .expect("update");
                n += 1;
            }
            n
        });
        let reader = connect(&server.conn_str()).await.expect("reader");
        let checks = [
            ("a self-join", "SELECT (a.v + b.v)::bigint FROM acct a, acct b WHERE a.id = 1 AND b.id = 2", 100),
            (
                "two subqueries over one table",
                "SELECT ((SELECT v FROM acct WHERE id = 1) + (SELECT v FROM acct WHERE id = 2))::bigint",
                100,
            ),
            ("a view and its table", "SELECT ((SELECT s FROM total) - (SELECT sum(v) FROM acct))::bigint", 0),
            (
                "a view joined with its table",
                "SELECT (sum(m.v - a.v) + count(*))::bigint FROM mirror m JOIN acct a USING (id)",
                2,
            ),
        ];
        for i in 0..400 {
            let (what, sql, want) = checks[i % checks.len()];
            let row = reader.query_one(sql, &[]).await.expect(what);
            let got: i64 = row.try_get(0).expect(what);
            assert_eq!(got, want, "{what} read two checkpoints: {sql}");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let n = writes.await.expect("writer task");
        assert!(n > 0, "the writer wrote nothing");
    });
}

/// Every relation of `pg_catalog`, `information_schema` and `freshet_catalog` reads
/// without error over a catalog with each kind of object (a catalog relation whose rows
/// mix NULLs and values once failed to build).
#[test]
fn every_catalog_relation_reads() {
    let server = TestServer::start();
    rt().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR NOT NULL, note TEXT, at TIMESTAMP);
             CREATE TABLE bag (x DOUBLE PRECISION);
             CREATE MATERIALIZED VIEW v AS SELECT name, count(*) AS n FROM t GROUP BY name;
             CREATE SOURCE bid (auction BIGINT, price BIGINT) WITH (connector = 'nexmark',
               nexmark.table.type = 'Bid', nexmark.event.num = '10');
             CREATE SINK s FROM v WITH (connector = 'blackhole');
             CREATE USER reader WITH PASSWORD 'pw';
             GRANT SELECT ON v TO reader;",
        )
        .await
        .expect("setup");
        let rels = c
            .query(
                "SELECT n.nspname, c.relname FROM pg_class c \
                 JOIN pg_namespace n ON c.relnamespace = n.oid \
                 WHERE n.nspname IN ('pg_catalog', 'information_schema', 'freshet_catalog') \
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .expect("catalog relations");
        assert!(rels.len() > 50, "only {} catalog relations", rels.len());
        let mut failed = Vec::new();
        for r in &rels {
            let (ns, name): (String, String) = (r.get(0), r.get(1));
            let sql = format!("SELECT * FROM {ns}.{name}");
            if let Err(e) = c.simple_query(&sql).await {
                failed.push(format!("{sql}: {e:?}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    });
}
