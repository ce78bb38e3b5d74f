//! Authentication and authorization through the real server and real clients
//! (tokio-postgres, psql, psycopg): SCRAM, MD5, trust, the bootstrap superuser, TLS, and
//! GRANT/REVOKE.

use std::path::Path;
use std::process::Command;

use freshet_sql_tests::pgclient::{connect, sqlstate_of};
use freshet_sql_tests::{certificate, TestServer};

use freshet_sql_tests::runtime as rt;

fn conn(server: &TestServer, user: &str, password: Option<&str>) -> String {
    let mut s = format!(
        "host=127.0.0.1 port={} user={user} dbname=freshet",
        server.port
    );
    if let Some(p) = password {
        s.push_str(&format!(" password={p}"));
    }
    s
}

/// The SQLSTATE of a failed connection or statement ("ok" if it worked).
async fn connect_code(conn_str: &str) -> String {
    match connect(conn_str).await {
        Ok(_) => "ok".into(),
        Err(e) => e.sqlstate().to_string(),
    }
}

/// psql with `conninfo`; returns (success, stdout + stderr).
fn psql(conninfo: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql must be installed (scripts/test.sh installs postgresql-client)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every byte of every file under `dir` (RocksDB's log and tables included).
fn contains_bytes(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if contains_bytes(&p, needle) {
                return true;
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }
    false
}

#[test]
fn scram_users_grants_and_revokes() {
    let server = TestServer::start();
    rt().block_on(async {
        // The bootstrap superuser connects from loopback without a password.
        let admin = connect(&server.conn_str())
            .await
            .expect("freshet from loopback");
        admin
            .batch_execute(
                "CREATE USER alice WITH PASSWORD 'wonderland-42';
                 CREATE ROLE bob LOGIN PASSWORD 'builder-7';
                 CREATE USER nopass;
                 CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT);
                 INSERT INTO t VALUES (1, 10);
                 CREATE MATERIALIZED VIEW total AS SELECT sum(v) AS s FROM t;",
            )
            .await
            .expect("setup");
        assert_eq!(sqlstate_of(&admin, "CREATE USER alice").await, "42710");
        assert_eq!(
            sqlstate_of(&admin, "CREATE USER IF NOT EXISTS alice").await,
            "ok"
        );

        // Passwords: right, wrong, missing; unknown users; users without a password.
        let alice = conn(&server, "alice", Some("wonderland-42"));
        assert_eq!(connect_code(&alice).await, "ok");
        assert_eq!(
            connect_code(&conn(&server, "alice", Some("wrong"))).await,
            "28P01"
        );
        assert_ne!(connect_code(&conn(&server, "alice", None)).await, "ok");
        assert_eq!(
            connect_code(&conn(&server, "mallory", Some("x"))).await,
            "28000"
        );
        assert_eq!(connect_code(&conn(&server, "nopass", None)).await, "28P01");

        // A user without privileges reads and writes nothing, and runs no DDL.
        let a = connect(&alice).await.expect("alice");
        assert_eq!(sqlstate_of(&a, "SELECT * FROM t").await, "42501");
        assert_eq!(sqlstate_of(&a, "SELECT * FROM total").await, "42501");
        assert_eq!(
            sqlstate_of(&a, "INSERT INTO t VALUES (2, 20)").await,
            "42501"
        );
        assert_eq!(sqlstate_of(&a, "CREATE TABLE mine (x INT)").await, "42501");
        assert_eq!(sqlstate_of(&a, "DROP TABLE t").await, "42501");
        assert_eq!(sqlstate_of(&a, "CREATE USER eve").await, "42501");
        assert_eq!(sqlstate_of(&a, "GRANT SELECT ON t TO alice").await, "42501");
        // … but may use the session and the catalog relations.
        assert_eq!(sqlstate_of(&a, "SET statement_timeout = '10s'").await, "ok");
        assert_eq!(sqlstate_of(&a, "SELECT 1").await, "ok");

        admin
            .batch_execute("GRANT SELECT ON total TO alice; GRANT SELECT, INSERT ON t TO alice")
            .await
            .expect("grant");
        assert_eq!(sqlstate_of(&a, "SELECT * FROM total").await, "ok");
        assert_eq!(sqlstate_of(&a, "INSERT INTO t VALUES (2, 20)").await, "ok");
        assert_eq!(sqlstate_of(&a, "UPDATE t SET v = 0").await, "42501");
        let s: i64 = a
            .query_one("SELECT s::bigint FROM total", &[])
            .await
            .expect("read the view")
            .get(0);
        assert_eq!(s, 30);
        // A join needs SELECT on every relation it reads.
        admin
            .batch_execute("CREATE TABLE secret (id BIGINT PRIMARY KEY)")
            .await
            .expect("secret");
        assert_eq!(
            sqlstate_of(&a, "SELECT * FROM t JOIN secret ON t.id = secret.id").await,
            "42501"
        );
        admin
            .batch_execute("REVOKE SELECT ON total FROM alice")
            .await
            .expect("revoke");
        assert_eq!(sqlstate_of(&a, "SELECT * FROM total").await, "42501");

        // A user changes its own password, not its privileges.
        assert_eq!(sqlstate_of(&a, "ALTER USER alice SUPERUSER").await, "42501");
        assert_eq!(
            sqlstate_of(&a, "ALTER USER alice WITH PASSWORD 'through-the-glass'").await,
            "ok"
        );
        assert_eq!(connect_code(&alice).await, "28P01");
        assert_eq!(
            connect_code(&conn(&server, "alice", Some("through-the-glass"))).await,
            "ok"
        );
        // A superuser made by a superuser may do anything.
        admin
            .batch_execute("ALTER USER bob SUPERUSER")
            .await
            .expect("alter");
        let b = connect(&conn(&server, "bob", Some("builder-7")))
            .await
            .expect("bob");
        assert_eq!(sqlstate_of(&b, "CREATE TABLE bobs (x INT)").await, "ok");
        assert_eq!(sqlstate_of(&b, "DROP USER nopass").await, "ok");
        assert_eq!(sqlstate_of(&admin, "DROP USER bob").await, "ok");
        assert_eq!(
            connect_code(&conn(&server, "bob", Some("builder-7"))).await,
            "28000"
        );
        assert_eq!(sqlstate_of(&admin, "DROP USER freshet").await, "22023");
    });

    // psql speaks SCRAM too, and says why it was refused.
    let (ok, out) = psql(
        &format!(
            "host=127.0.0.1 port={} user=alice password=through-the-glass dbname=freshet",
            server.port
        ),
        "SELECT 1",
    );
    assert!(ok && out.trim() == "1", "{out}");
    let (ok, out) = psql(
        &format!(
            "host=127.0.0.1 port={} user=alice password=nope dbname=freshet",
            server.port
        ),
        "SELECT 1",
    );
    assert!(
        !ok && out.contains("password authentication failed for user \"alice\""),
        "{out}"
    );
    // No password is kept, in any file of the data directory or the log.
    for p in ["wonderland-42", "through-the-glass", "builder-7"] {
        assert!(
            !contains_bytes(server.data_dir(), p.as_bytes()),
            "password {p} found in the data directory"
        );
        assert!(!server.log().contains(p), "password {p} in the log");
    }
}

#[test]
fn md5_trust_and_a_bootstrap_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("freshet.toml");
    std::fs::write(
        &config,
        "superuser_password = \"root-pw\"\nauth = \"md5\"\n",
    )
    .expect("toml");
    let config_arg = config.to_string_lossy().to_string();
    let mut server = TestServer::start_with_args(&["--config", &config_arg]);
    rt().block_on(async {
        // With a password configured, the bootstrap superuser needs it, even from loopback.
        // (The server asks for the password; the client has none to give.)
        assert_ne!(connect_code(&conn(&server, "freshet", None)).await, "ok");
        assert_eq!(
            connect_code(&conn(&server, "freshet", Some("guess"))).await,
            "28P01"
        );
        let admin = connect(&conn(&server, "freshet", Some("root-pw")))
            .await
            .expect("freshet with its password");
        admin
            .batch_execute("CREATE USER carol PASSWORD 'md5-pw'; CREATE USER dave")
            .await
            .expect("users");
        assert_eq!(
            connect_code(&conn(&server, "carol", Some("md5-pw"))).await,
            "ok"
        );
        assert_eq!(
            connect_code(&conn(&server, "carol", Some("bad"))).await,
            "28P01"
        );
        assert_eq!(connect_code(&conn(&server, "dave", None)).await, "28P01");
    });
    let (ok, out) = psql(
        &format!(
            "host=127.0.0.1 port={} user=carol password=md5-pw dbname=freshet",
            server.port
        ),
        "SELECT 2",
    );
    assert!(ok && out.trim() == "2", "md5 from psql: {out}");

    // --auth trust lets users without a password in; users with one still give it.
    assert!(server.stop().expect("running").success());
    server.start_again(&["--config", &config_arg, "--auth", "trust"]);
    rt().block_on(async {
        assert_eq!(connect_code(&conn(&server, "dave", None)).await, "ok");
        assert_eq!(
            connect_code(&conn(&server, "carol", Some("bad"))).await,
            "28P01"
        );
        assert_eq!(
            connect_code(&conn(&server, "carol", Some("md5-pw"))).await,
            "ok"
        );
        assert_eq!(
            connect_code(&conn(&server, "freshet", Some("root-pw"))).await,
            "ok"
        );
    });
}

#[test]
fn tls_required_from_psql_and_psycopg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = certificate(dir.path());
    let (cert, key, ca) = (&certs.cert, &certs.key, &certs.ca);
    let server =
        TestServer::start_with_args(&["--tls-cert", cert, "--tls-key", key, "--tls-required"]);
    let base = format!(
        "host=127.0.0.1 port={} user=freshet dbname=freshet",
        server.port
    );
    let (ok, out) = psql(&format!("{base} sslmode=require"), "SELECT 3");
    assert!(ok && out.trim() == "3", "sslmode=require: {out}");
    let (ok, out) = psql(
        &format!(
            "host=localhost port={} user=freshet dbname=freshet sslmode=verify-full sslrootcert={ca}",
            server.port
        ),
        "SELECT 4",
    );
    assert!(ok && out.trim() == "4", "sslmode=verify-full: {out}");
    let (ok, out) = psql(&format!("{base} sslmode=disable"), "SELECT 5");
    assert!(!ok && out.contains("requires TLS"), "without TLS: {out}");

    let script = format!(
        r#"
import psycopg
with psycopg.connect("{base} sslmode=verify-full sslrootcert={ca}".replace("127.0.0.1", "localhost"), autocommit=True) as c:
    assert getattr(c.pgconn, "ssl_in_use", True)
    assert c.execute("SELECT 6").fetchone()[0] == 6
try:
    psycopg.connect("{base} sslmode=disable")
    raise SystemExit("connected without TLS")
except psycopg.OperationalError as e:
    assert "requires TLS" in str(e), e
print("ok")
"#
    );
    let py = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "psycopg over TLS: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
}
