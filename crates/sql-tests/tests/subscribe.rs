//! `SUBSCRIBE` through the real server: a subscriber's snapshot plus its changes always
//! add up to the view (random writes, transactions, rollbacks), a subscriber that does
//! not read is cut off without holding anything else up, cancel stops it, and the view a
//! `SUBSCRIBE TO (query)` makes for itself goes away, also after `kill -9`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freshet_sql_tests::pgclient::{connect, sqlstate_of};
use freshet_sql_tests::runtime as rt;
use freshet_sql_tests::TestServer;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Rows as text, `\N` for NULL, with how many times each occurs.
type Multiset = HashMap<Vec<String>, i64>;

async fn rows_of(c: &Client, sql: &str) -> Multiset {
    let mut out = Multiset::new();
    for m in c.simple_query(sql).await.expect(sql) {
        if let SimpleQueryMessage::Row(r) = m {
            let row = (0..r.len())
                .map(|i| r.get(i).unwrap_or("\\N").to_string())
                .collect();
            *out.entry(row).or_default() += 1;
        }
    }
    out
}

/// The lines a `COPY (SUBSCRIBE …) TO STDOUT` has sent so far, read by a task.
fn subscribe_copy(c: Arc<Client>, sql: String) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        let stream = c.copy_out(sql.as_str()).await.expect("COPY (SUBSCRIBE …)");
        futures::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            let text = String::from_utf8_lossy(&chunk).to_string();
            sink.lock()
                .unwrap()
                .extend(text.lines().map(|l| l.to_string()));
        }
    });
    lines
}

/// Applies a subscription's lines (`timestamp, diff, columns…`) to a multiset, checking
/// that timestamps never go back, no diff is 0, and no row ever counts below zero at a
/// checkpoint's end.
fn fold(lines: &[String]) -> Multiset {
    let mut state = Multiset::new();
    let mut last_ts = i64::MIN;
    let check = |state: &Multiset, ts: i64| {
        for (row, n) in state {
            assert!(*n >= 0, "row {row:?} counts {n} after checkpoint {ts}");
        }
    };
    for line in lines {
        let mut fields = line.split('\t');
        let ts: i64 = fields.next().unwrap().parse().expect("timestamp");
        let diff: i64 = fields.next().unwrap().parse().expect("diff");
        assert!(ts >= last_ts, "timestamps went back: {ts} after {last_ts}");
        assert_ne!(diff, 0, "a zero diff: {line}");
        if ts != last_ts && last_ts != i64::MIN {
            check(&state, last_ts);
        }
        last_ts = ts;
        let row: Vec<String> = fields.map(|f| f.to_string()).collect();
        *state.entry(row).or_default() += diff;
    }
    check(&state, last_ts);
    state.retain(|_, n| *n != 0);
    state
}

/// Waits until what `lines` adds up to equals `sql`'s result.
async fn converges(c: &Client, lines: &Mutex<Vec<String>>, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = rows_of(c, sql).await;
        let got = fold(&lines.lock().unwrap());
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscription to {sql} does not add up:\n got  {got:?}\n want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn snapshot_plus_changes_always_equal_the_view() {
    let server = TestServer::start();
    rt().block_on(async {
        let w = connect(&server.conn_str()).await.expect("connect");
        w.batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, g INT, v INT);
             CREATE MATERIALIZED VIEW per_g AS
               SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g;
             CREATE MATERIALIZED VIEW threes AS SELECT id, v FROM t WHERE v % 3 = 0;",
        )
        .await
        .expect("setup");
        let mut rng = StdRng::seed_from_u64(20);
        let mut next_id = 0;
        let mut write =
            |rng: &mut StdRng| {
                let sql =
                    match rng.gen_range(0..10) {
                        0..=3 => {
                            next_id += 1;
                            format!(
                                "INSERT INTO t VALUES ({next_id}, {}, {})",
                                rng.gen_range(0..5),
                                rng.gen_range(0..30)
                            )
                        }
                        4..=5 => {
                            let rows: Vec<String> = (0..rng.gen_range(2..20))
                                .map(|_| {
                                    next_id += 1;
                                    format!("({next_id}, {}, NULL)", rng.gen_range(0..5))
                                })
                                .collect();
                            format!("INSERT INTO t VALUES {}", rows.join(", "))
                        }
                        6..=7 => format!(
                            "UPDATE t SET v = {}, g = {} WHERE id % 7 = {}",
                            rng.gen_range(0..30),
                            rng.gen_range(0..5),
                            rng.gen_range(0..7)
                        ),
                        8 => format!("DELETE FROM t WHERE id % 5 = {}", rng.gen_range(0..5)),
                        _ => format!(
                    "BEGIN; INSERT INTO t VALUES ({}, 9, 9); DELETE FROM t WHERE g = {}; {}",
                    {
                        next_id += 1;
                        next_id
                    },
                    rng.gen_range(0..5),
                    if rng.gen_bool(0.5) { "COMMIT" } else { "ROLLBACK" }
                ),
                    };
                sql
            };
        for _ in 0..40 {
            let sql = write(&mut rng);
            w.batch_execute(&sql).await.expect("write");
        }
        // Three subscribers, started at different times, one over a query of its own.
        let s1 = Arc::new(connect(&server.conn_str()).await.expect("connect"));
        let a = subscribe_copy(s1, "COPY (SUBSCRIBE TO per_g) TO STDOUT".into());
        for _ in 0..40 {
            let sql = write(&mut rng);
            w.batch_execute(&sql).await.expect("write");
        }
        let s2 = Arc::new(connect(&server.conn_str()).await.expect("connect"));
        let b = subscribe_copy(s2, "COPY (SUBSCRIBE threes) TO STDOUT".into());
        let s3 = Arc::new(connect(&server.conn_str()).await.expect("connect"));
        let q = "SELECT g, max(v) AS m, count(v) AS c FROM t GROUP BY g";
        let c = subscribe_copy(s3, format!("COPY (SUBSCRIBE TO ({q})) TO STDOUT"));
        for i in 0..200 {
            let sql = write(&mut rng);
            w.batch_execute(&sql).await.expect("write");
            if i % 50 == 0 {
                converges(&w, &a, "SELECT * FROM per_g").await;
            }
        }
        converges(&w, &a, "SELECT * FROM per_g").await;
        converges(&w, &b, "SELECT * FROM threes").await;
        converges(&w, &c, q).await;
        // The query's own view is listed while it runs.
        let own = rows_of(
            &w,
            "SELECT relname FROM pg_class WHERE relname LIKE 'subscribe\\_%'",
        )
        .await;
        assert_eq!(own.len(), 1, "{own:?}");
    });
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_alone() {
    let server = TestServer::start();
    rt().block_on(async {
        let w = connect(&server.conn_str()).await.expect("connect");
        w.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
            .await
            .expect("setup");
        let slow = connect(&server.conn_str()).await.expect("connect");
        slow.batch_execute(
            "SET subscribe_max_buffered_rows = 500;
             DECLARE c CURSOR WITH HOLD FOR SUBSCRIBE t WITH (snapshot = false)",
        )
        .await
        .expect("declare");
        // The subscriber reads nothing while 2,000 rows change, in 20 commits: writes go
        // on at their pace.
        let started = Instant::now();
        for i in 0..20 {
            let rows: Vec<String> = (0..100).map(|j| format!("({}, 1)", i * 100 + j)).collect();
            w.batch_execute(&format!("INSERT INTO t VALUES {}", rows.join(", ")))
                .await
                .expect("insert");
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        // Its next FETCH gets what was kept, then the error, and its connection ends.
        let mut got = 0;
        let err = loop {
            match slow.simple_query("FETCH 1000 c").await {
                Ok(msgs) => {
                    got += msgs
                        .iter()
                        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                        .count();
                    assert!(
                        got <= 500,
                        "{got} rows kept for a subscriber limited to 500"
                    );
                }
                Err(e) => break e,
            }
        };
        let code = err.code().map(|c| c.code().to_string());
        assert_eq!(code.as_deref(), Some("53400"), "{err:?}");
        assert!(
            slow.simple_query("SELECT 1").await.is_err(),
            "connection ended"
        );
        // Everyone else goes on.
        let n: i64 = w
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 2000);
    });
}

#[test]
fn cancel_ends_a_subscription_and_its_view_goes_away() {
    let mut server = TestServer::start();
    rt().block_on(async {
        let w = connect(&server.conn_str()).await.expect("connect");
        w.batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, v INT);
             INSERT INTO t VALUES (1, 1), (2, 2);
             CREATE MATERIALIZED VIEW m AS SELECT sum(v) AS s FROM t;",
        )
        .await
        .expect("setup");
        let s = connect(&server.conn_str()).await.expect("connect");
        let cancel = s.cancel_token();
        let run = tokio::spawn(async move {
            let r = s
                .simple_query("SUBSCRIBE TO (SELECT id FROM t WHERE v > 0)")
                .await;
            (r.map(|_| ()), s)
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        let own = "SELECT count(*) FROM pg_class WHERE relname LIKE 'subscribe\\_%'";
        let n: i64 = w.query_one(own, &[]).await.expect(own).get(0);
        assert_eq!(n, 1);
        cancel
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel");
        let (res, s) = run.await.expect("join");
        let err = res.expect_err("canceled");
        assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err:?}");
        // The session goes on; the subscription's view is gone.
        assert_eq!(sqlstate_of(&s, "SELECT 1").await, "ok");
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.query_one(own, &[]).await.expect(own).get::<_, i64>(0) != 0 {
            assert!(Instant::now() < deadline, "the subscription's view stayed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Dropping a view ends the subscriptions to it.
        w.batch_execute("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE m")
            .await
            .expect("declare");
        let other = connect(&server.conn_str()).await.expect("connect");
        other
            .batch_execute("DROP MATERIALIZED VIEW m")
            .await
            .expect("drop");
        let mut rows = 0;
        let err = loop {
            match w.simple_query("FETCH ALL c").await {
                Ok(msgs) => {
                    rows += msgs
                        .iter()
                        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                        .count();
                }
                Err(e) => break e,
            }
        };
        assert_eq!(rows, 1, "the snapshot's one row ({err:?})");
        assert_eq!(err.code().map(|c| c.code()), Some("55000"), "{err:?}");
        w.batch_execute("ROLLBACK").await.expect("rollback");
        // A subscription running when the server is killed leaves no view behind.
        w.batch_execute("DECLARE k CURSOR WITH HOLD FOR SUBSCRIBE TO (SELECT v FROM t)")
            .await
            .expect("declare");
        let n: i64 = w.query_one(own, &[]).await.expect(own).get(0);
        assert_eq!(n, 1);
    });
    server.kill9_restart();
    rt().block_on(async {
        let w = connect(&server.conn_str()).await.expect("connect");
        let own = "SELECT count(*) FROM pg_class WHERE relname LIKE 'subscribe\\_%'";
        let n: i64 = w.query_one(own, &[]).await.expect(own).get(0);
        assert_eq!(n, 0, "the killed subscription's view stayed");
        let n: i64 = w
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 2);
    });
}
