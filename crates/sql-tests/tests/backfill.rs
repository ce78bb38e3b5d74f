//! A view built over large inputs while they change: the engine builds it a step at a
//! time between its other work, so other views keep moving, and changes to the inputs
//! made meanwhile (below and above where the build has read, in tables with and without
//! a key and in an insert-only view fed by a generator) must leave the view equal to its
//! query once it is done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Rows = BTreeMap<String, i64>;

/// A query's rows as `text of the row → how many times`.
async fn rows(c: &tokio_postgres::Client, sql: &str) -> Rows {
    let mut out = Rows::new();
    for m in c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let text: Vec<String> = (0..r.len())
                .map(|i| r.get(i).unwrap_or("NULL").to_string())
                .collect();
            *out.entry(text.join("|")).or_default() += 1;
        }
    }
    out
}

/// Waits until the backfill of `view` is no longer running.
async fn built(c: &tokio_postgres::Client, view: &str) -> Vec<f64> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = c
            .query_opt(
                "SELECT state, percent FROM freshet_catalog.jobs
                  WHERE kind = 'backfill' AND relation = $1 ORDER BY id DESC LIMIT 1",
                &[&view],
            )
            .await
            .expect("jobs");
        if let Some(r) = r {
            let state: String = r.get(0);
            if state != "running" {
                assert_eq!(state, "done", "the backfill of {view} failed");
                return seen;
            }
            if let Some(p) = r.get::<_, Option<f64>>(1) {
                seen.push(p);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the backfill of {view} did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_view_built_while_its_inputs_change_equals_its_query() {
    let seed: u64 = std::env::var("FRESHET_BACKFILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("seed {seed} (replay with FRESHET_BACKFILL_SEED={seed})");
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "200"]);
    let rt = freshet_sql_tests::runtime();
    let n = 200_000i64;
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE TABLE big (id BIGINT PRIMARY KEY, g INT, v BIGINT);
             INSERT INTO big SELECT value AS id, value % 50 AS g, value AS v FROM generate_series(1, {n}) AS s(value);
             CREATE TABLE bag (g INT, v BIGINT);
             INSERT INTO bag SELECT value % 50 AS g, value % 7 AS v FROM generate_series(1, {n}) AS s(value);
             CREATE TABLE dim (g INT PRIMARY KEY, name VARCHAR);
             INSERT INTO dim SELECT value AS g, 'n' || value::varchar AS name FROM generate_series(0, 49) AS s(value);
             CREATE SOURCE bid (auction BIGINT, price BIGINT) WITH (connector = 'nexmark',
               nexmark.table.type = 'Bid', nexmark.event.num = '100000000',
               nexmark.min.event.gap.in.ns = '200000');
             CREATE MATERIALIZED VIEW bids AS SELECT auction, price FROM bid;
             CREATE MATERIALIZED VIEW live AS SELECT count(*) AS n FROM bids;"
        ))
        .await
        .expect("setup");
        // Writers change the inputs all through the builds: keys below and above where
        // the build reads, inserts, updates and deletes.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let conn = server.conn_str();
            let stop = stop.clone();
            tokio::spawn(async move {
                let w = connect(&conn).await.expect("connect");
                let mut rng = StdRng::seed_from_u64(seed);
                let mut next_new = n + 1;
                let mut statements = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sql = match rng.gen_range(0..8) {
                        0 | 1 => format!(
                            "UPDATE big SET v = v + 1, g = {} WHERE id = {}",
                            rng.gen_range(0..50),
                            rng.gen_range(1..=n)
                        ),
                        2 => format!("DELETE FROM big WHERE id = {}", rng.gen_range(1..=n)),
                        3 => {
                            // New keys at both ends of the key range.
                            next_new += 1;
                            let id = if rng.gen_bool(0.5) { next_new } else { -next_new };
                            format!("INSERT INTO big VALUES ({id}, {}, 7)", rng.gen_range(0..50))
                        }
                        4 => format!(
                            "INSERT INTO bag VALUES ({}, {})",
                            rng.gen_range(0..50),
                            rng.gen_range(0..7)
                        ),
                        5 => format!(
                            "DELETE FROM bag WHERE g = {} AND v = {}",
                            rng.gen_range(0..50),
                            rng.gen_range(0..7)
                        ),
                        6 => format!(
                            "UPDATE dim SET name = 'm{}' WHERE g = {}",
                            rng.gen_range(0..1000),
                            rng.gen_range(0..50)
                        ),
                        _ => format!(
                            "UPDATE big SET v = v - 1 WHERE id BETWEEN {0} AND {0} + 20",
                            rng.gen_range(1..=n)
                        ),
                    };
                    if w.batch_execute(&sql).await.is_err() {
                        return statements;
                    }
                    statements += 1;
                }
                statements
            })
        };
        c.batch_execute("SET background_ddl = true").await.expect("set");
        let live_before: i64 = c.query_one("SELECT n FROM live", &[]).await.expect("live").get(0);
        let views = [
            (
                "j",
                "SELECT b.g, d.name, count(*) AS c, sum(b.v) AS s FROM big b JOIN dim d ON b.g = d.g GROUP BY b.g, d.name",
            ),
            ("bagged", "SELECT g, v, count(*) AS c FROM bag GROUP BY g, v"),
            (
                "hot",
                "SELECT auction % 10 AS a, count(*) AS c, sum(price) AS s FROM bids GROUP BY auction % 10",
            ),
        ];
        for (name, query) in views {
            c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                .await
                .expect("create");
            let percents = built(&c, name).await;
            eprintln!("{name}: {} progress samples", percents.len());
        }
        let live_after: i64 = c.query_one("SELECT n FROM live", &[]).await.expect("live").get(0);
        eprintln!("the generator's view moved from {live_before} to {live_after} during the builds");
        assert!(live_after > live_before, "other views kept moving");
        // The writer stops after its statement completes (an aborted task could leave one
        // running on the server, landing between the two reads below).
        stop.store(true, Ordering::Relaxed);
        let statements = writer.await.expect("writer");
        eprintln!("the writer made {statements} changes");
        c.batch_execute("FLUSH").await.expect("flush");
        for (name, query) in views.iter().take(2) {
            assert_eq!(
                rows(&c, &format!("SELECT * FROM {name}")).await,
                rows(&c, query).await,
                "{name} equals its query"
            );
        }
        // The generator goes on: compare within one snapshot (one query).
        let diff = rows(
            &c,
            "SELECT count(*) FROM (
               (SELECT a, c, s FROM hot EXCEPT ALL
                SELECT auction % 10, count(*), sum(price) FROM bids GROUP BY auction % 10)
               UNION ALL
               (SELECT auction % 10, count(*), sum(price) FROM bids GROUP BY auction % 10
                EXCEPT ALL SELECT a, c, s FROM hot)) d",
        )
        .await;
        assert_eq!(diff, Rows::from([("0".to_string(), 1)]), "hot equals its query");
        // Built in steps, each committed: each view's kept count of its state entries
        // equals a scan of its state (the generator's views keep as many entries).
        let off = rows(
            &c,
            "SELECT v.view_name FROM freshet_catalog.view_state v
               JOIN freshet_catalog.view_state_scan s ON v.view_name = s.view_name
              WHERE coalesce(v.state_rows, 0) <> s.state_rows",
        )
        .await;
        assert!(off.is_empty(), "state entry counts differ: {off:?}");
    });
}
