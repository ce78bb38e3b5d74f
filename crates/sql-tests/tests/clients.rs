//! Real Postgres clients against a real server: psql, psycopg 3, psycopg2, SQLAlchemy
//! with pandas, node-postgres with pg-cursor, pgjdbc, and the queries Grafana's
//! PostgreSQL data source sends. Each client's script lives in `crates/sql-tests/clients/`
//! and asserts what its users see; `scripts/clients.sh` (run by `scripts/test.sh`)
//! installs the clients. A client that is not installed fails its test, pointing there.

use std::path::{Path, PathBuf};
use std::process::Command;

use freshet_sql_tests::TestServer;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The virtualenv's python, which has the Python clients.
fn python() -> PathBuf {
    let cache = std::env::var("FRESHET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/freshet")
        });
    let py = cache.join("venv/bin/python");
    assert!(
        py.exists(),
        "{} not found: run scripts/clients.sh (scripts/test.sh does) to install the clients",
        py.display()
    );
    py
}

/// Runs a client command against `server`; its output if it succeeded, else a panic with
/// its output and the server's log.
fn run(server: &TestServer, cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(clients_dir())
        .env(
            "FRESHET_DSN",
            format!(
                "host=127.0.0.1 port={} user=freshet dbname=freshet",
                server.port
            ),
        )
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", server.port.to_string())
        .env("PGUSER", "freshet")
        .env("PGDATABASE", "freshet")
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/clients.sh installs it)"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}\n--- server log ---\n{}",
        out.status,
        server.log()
    );
    stdout + &stderr
}

/// Runs `psql -X -f psql/<script>.sql` and compares its output (errors in place) with
/// `psql/<script>.out`.
fn psql_script(script: &str) {
    let server = TestServer::start();
    let out = run(
        &server,
        Command::new("sh").args(["-c", &format!("psql -X -f psql/{script}.sql 2>&1")]),
    );
    let want = std::fs::read_to_string(clients_dir().join(format!("psql/{script}.out")))
        .expect("expected psql output");
    if out != want {
        let diff: Vec<String> = want
            .lines()
            .zip(out.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  want: {a}\n  got:  {b}", i + 1))
            .collect();
        panic!(
            "psql's output differs from psql/{script}.out:\n{}\n--- got ---\n{out}",
            diff.join("\n")
        );
    }
}

/// psql's meta-commands (`\d` and its family, `\l`, `\dn`, `\du`, `\df`) and the queries
/// its tab completion sends.
#[test]
fn psql_describes_freshets_objects() {
    psql_script("describe");
}

/// The NOTICEs of `IF [NOT] EXISTS` statements that do nothing, as Postgres words them.
#[test]
fn psql_shows_notices() {
    psql_script("notices");
}

/// `\copy` and `COPY` in text and CSV: into tables (all columns or some), out of tables,
/// views and queries; a bad line, a bad CSV quote or a duplicate key refuses the whole
/// COPY with its line.
#[test]
fn psql_copies_in_and_out() {
    psql_script("copy");
}

/// SQLAlchemy 2 over psycopg 3 and psycopg2: connect, reflection (tables, views,
/// materialized views, columns, primary keys), Core inserts, pandas' read_sql,
/// read_sql_table and to_sql.
#[test]
fn sqlalchemy_and_pandas() {
    let server = TestServer::start();
    let out = run(
        &server,
        Command::new(python()).args(["python/test_sqlalchemy.py", "psycopg", "psycopg2"]),
    );
    assert!(out.contains("sqlalchemy+psycopg: ok") && out.contains("sqlalchemy+psycopg2: ok"));
}

/// psycopg 3: server-side cursors, COPY, transactions and savepoints, statements
/// auto-prepared after an error, cancel (conn.cancel(), pg_cancel_backend),
/// statement_timeout, pg_terminate_backend, pg_stat_activity, big results.
#[test]
fn psycopg3() {
    let server = TestServer::start();
    let out = run(
        &server,
        Command::new(python()).arg("python/test_psycopg.py"),
    );
    assert!(out.contains("psycopg: ok"), "{out}");
}

/// psycopg2: named cursors, copy_expert/copy_from/copy_to, execute_values, transactions
/// and savepoints, conn.cancel(), statement_timeout.
#[test]
fn psycopg2() {
    let server = TestServer::start();
    let out = run(
        &server,
        Command::new(python()).arg("python/test_psycopg2.py"),
    );
    assert!(out.contains("psycopg2: ok"), "{out}");
}

/// node-postgres and pg-cursor: types as Postgres gives them (`SELECT 1` a number),
/// parameterized and named statements, `= ANY($1)` with an array, several statements in
/// one query, errors with their SQLSTATE, transactions, a cursor read in pieces through
/// a named portal with Flush, and a pool with `statement_timeout` in its startup packet.
#[test]
fn node_postgres() {
    let server = TestServer::start();
    let out = run(&server, Command::new("node").args(["node/test_pg.js"]));
    assert!(out.contains("node-postgres: ok"), "{out}");
}

/// pgjdbc (Debian's libpostgresql-jdbc-java), as Metabase and DBeaver use it:
/// DatabaseMetaData (schemas, tables, columns, primary keys, indexes, types, keys,
/// functions, keywords), ResultSetMetaData with nullability and table names, statements
/// prepared past prepareThreshold with binary transfer, fetch-size portals,
/// transactions, isolation levels and read-only transactions.
#[test]
fn pgjdbc() {
    let server = TestServer::start();
    let jar = "/usr/share/java/postgresql.jar";
    assert!(
        Path::new(jar).exists(),
        "{jar} not found: run scripts/clients.sh (scripts/test.sh does)"
    );
    let classes = tempfile::tempdir().expect("tempdir");
    let classes = classes.path().to_string_lossy().to_string();
    run(
        &server,
        Command::new("javac").args(["-cp", jar, "-d", &classes, "java/FreshetJdbc.java"]),
    );
    let out = run(
        &server,
        Command::new("java").args(["-cp", &format!("{jar}:{classes}"), "FreshetJdbc"]),
    );
    assert!(out.contains("pgjdbc: ok"), "{out}");
}

/// The SQL Grafana's PostgreSQL data source sends, taken from Grafana's source and
/// replayed as its Go driver sends it: version detection, the schema, table and column
/// pickers, and panel queries with `$__timeFilter`, `$__timeGroupAlias` and the other
/// macros expanded as Grafana expands them.
#[test]
fn grafana_queries() {
    let server = TestServer::start();
    let out = run(&server, Command::new(python()).arg("grafana/replay.py"));
    assert!(out.contains("grafana: ok"), "{out}");
}
