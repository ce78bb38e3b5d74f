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

#[test]
fn connections_over_the_limit_are_refused_with_53300() {
    let server = TestServer::start_with_args(&["--max-connections", "2"]);
    rt().block_on(async {
        let a = connect(&server.conn_str()).await.expect("first client");
        let b = connect(&server.conn_str()).await.expect("second client");
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
