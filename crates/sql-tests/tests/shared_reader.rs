//! One reader per source, shared by every view over it (`connectors/src/kafka_reader/`),
//! and views applying their batches side by side (`engine/src/coordinator/parallel.rs`).
//!
//! Five views over one 3-partition topic (one rejecting some rows, which become dead
//! letters) fetch each message once (`freshet_source_fetched_total` counts the
//! messages, not five times them), apply their batches side by side, and each
//! still equals the same query over every event, bad messages kept once in
//! `source_errors`. A sixth view created later starts from the beginning: the shared
//! reader goes back for it while the others skip what they have. A view dropped leaves the
//! reader to the others. A `kill -9` while events flow, with the views at different
//! committed offsets, ends with every view exact.

use std::collections::BTreeMap;
use std::time::Duration;

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{http_get, BrokerAddr, KafkaBroker, TestServer};

const PARTITIONS: i32 = 3;

/// The events `produce_events` writes for `k` in `0..n`: (k, g, n).
fn events(n: i64) -> Vec<(i64, String, i64)> {
    (0..n)
        .map(|k| (k, format!("g{}", k % 7), k % 100))
        .collect()
}

/// The views' answers, computed by folds over the events.
fn reference(n: i64) -> BTreeMap<&'static str, Vec<String>> {
    let ev = events(n);
    let mut by_g: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut big: BTreeMap<String, i64> = BTreeMap::new();
    let mut max_by_g: BTreeMap<String, i64> = BTreeMap::new();
    for (_, g, v) in &ev {
        let e = by_g.entry(g.clone()).or_default();
        e.0 += 1;
        e.1 += v;
        if *v >= 50 {
            *big.entry(g.clone()).or_default() += 1;
        }
        let m = max_by_g.entry(g.clone()).or_insert(*v);
        *m = (*m).max(*v);
    }
    let mut out = BTreeMap::new();
    out.insert(
        "per_g",
        by_g.iter()
            .map(|(g, (c, s))| format!("{g} {c} {s}"))
            .collect(),
    );
    out.insert(
        "big_per_g",
        big.iter().map(|(g, c)| format!("{g} {c}")).collect(),
    );
    out.insert("total", vec![format!("{}", ev.len())]);
    out.insert(
        "max_per_g",
        max_by_g.iter().map(|(g, m)| format!("{g} {m}")).collect(),
    );
    // 100 / (n % 10) fails where n % 10 = 0: those rows are dead letters instead.
    out.insert(
        "ratio",
        vec![format!(
            "{}",
            ev.iter().filter(|(_, _, v)| v % 10 != 0).count()
        )],
    );
    out.insert(
        "late_comer",
        by_g.iter().map(|(g, (c, _))| format!("{g} {c}")).collect(),
    );
    out
}

const QUERIES: [(&str, &str); 6] = [
    (
        "per_g",
        "SELECT g || ' ' || c || ' ' || s::bigint FROM per_g ORDER BY g",
    ),
    (
        "big_per_g",
        "SELECT g || ' ' || c FROM big_per_g ORDER BY g",
    ),
    ("total", "SELECT c::text FROM total"),
    (
        "max_per_g",
        "SELECT g || ' ' || m FROM max_per_g ORDER BY g",
    ),
    (
        "late_comer",
        "SELECT g || ' ' || c FROM late_comer ORDER BY g",
    ),
    ("ratio", "SELECT count(*)::text FROM ratio"),
];

async fn check(server: &TestServer, n: i64, views: &[&str], when: &str) {
    let c = connect(&server.conn_str()).await.expect("connect");
    c.batch_execute("FLUSH").await.expect("flush");
    let want = reference(n);
    for (view, q) in QUERIES {
        if !views.contains(&view) {
            continue;
        }
        let got: Vec<String> = c
            .query(q, &[])
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want[view], "{view} {when}");
    }
    // Each bad message is one dead letter, whatever the number of views reading it.
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM freshet_catalog.source_errors
              WHERE source_name = 'ev' AND error NOT LIKE 'view %'",
            &[],
        )
        .await
        .expect("source_errors")
        .get(0);
    assert_eq!(bad, 2, "dead letters {when}");
    // And each row the ratio view rejects, once, with the partition and offset it was
    // read at.
    let rejected: i64 = c
        .query_one(
            "SELECT count(*) FROM freshet_catalog.source_errors
              WHERE source_name = 'ev' AND error LIKE 'view ratio rejected the row: division by zero'
                AND partition >= 0 AND \"offset\" >= 0",
            &[],
        )
        .await
        .expect("source_errors")
        .get(0);
    assert_eq!(
        rejected as usize,
        events(n).iter().filter(|(_, _, v)| v % 10 == 0).count(),
        "rows the ratio view rejected {when}"
    );
}

fn metric(server: &TestServer, series: &str) -> f64 {
    let (status, body) = http_get(&format!("{}/metrics", server.http_url()));
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().ok())?
        })
        .unwrap_or(0.0)
}

fn fetched(server: &TestServer) -> f64 {
    metric(server, r#"freshet_source_fetched_total{source="ev"}"#)
}

#[test]
fn views_over_one_source_share_its_reader_and_each_stays_exact() {
    let broker = KafkaBroker::start();
    broker.create_topic("ev", PARTITIONS as u32);
    let mut server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = freshet_sql_tests::runtime();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE SOURCE ev (k BIGINT, g VARCHAR, n BIGINT, ts TIMESTAMPTZ)
               WITH (connector = 'kafka', topic = 'ev', properties.bootstrap.server = '{}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_g AS SELECT g, count(*) AS c, sum(n) AS s FROM ev GROUP BY g;
             CREATE MATERIALIZED VIEW big_per_g AS SELECT g, count(*) AS c FROM ev WHERE n >= 50 GROUP BY g;
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS c FROM ev;
             CREATE MATERIALIZED VIEW max_per_g AS SELECT g, max(n) AS m FROM ev GROUP BY g;
             CREATE MATERIALIZED VIEW ratio AS SELECT k, 100 / (n % 10) AS r FROM ev;",
            broker.addr()
        ))
        .await
        .expect("setup");
    });
    let five = ["per_g", "big_per_g", "total", "max_per_g", "ratio"];
    let b = BrokerAddr(broker.port);
    b.produce_events("ev", 0, 3_000, PARTITIONS);
    // Two bad messages, in different partitions.
    broker.produce("ev", Some(0), None, &[Some(b"{not json".to_vec())]);
    broker.produce("ev", Some(2), None, &[Some(br#"{"k": "x"}"#.to_vec())]);
    rt.block_on(check(&server, 3_000, &five, "after the first events"));
    assert_eq!(
        fetched(&server),
        3_002.0,
        "five views over one topic fetch each message once"
    );
    assert!(
        metric(&server, "freshet_parallel_batches_total") > 0.0,
        "the views applied batches side by side"
    );

    // A view created now reads from the beginning: the reader goes back for it alone.
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE MATERIALIZED VIEW late_comer AS SELECT g, count(*) AS c FROM ev GROUP BY g",
        )
        .await
        .expect("late view");
    });
    b.produce_events("ev", 3_000, 4_000, PARTITIONS);
    let six = [
        "per_g",
        "big_per_g",
        "total",
        "max_per_g",
        "ratio",
        "late_comer",
    ];
    rt.block_on(check(&server, 4_000, &six, "after a view joined late"));
    let f = fetched(&server);
    // 3,002 before; then the 1,000 new messages and one pass over the whole topic (4,002)
    // for the late view: 7,004 if the reader went back before it fetched the new ones,
    // 8,004 if after (the new ones then come twice). More would be another re-read.
    assert!(
        (4_002.0..=8_004.0).contains(&f),
        "the late view re-read the topic once, the others did not: fetched {f}"
    );

    // Killed while events flow: the views restart from their own committed offsets.
    let producer = {
        let port = broker.port;
        std::thread::spawn(move || {
            let b = BrokerAddr(port);
            for i in 0..10 {
                b.produce_events("ev", 4_000 + i * 400, 4_400 + i * 400, PARTITIONS);
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    server.kill9_restart();
    producer.join().expect("producer");
    rt.block_on(check(&server, 8_000, &six, "after kill -9"));

    // A dropped view leaves; the others read on.
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute("DROP MATERIALIZED VIEW big_per_g")
            .await
            .expect("drop");
    });
    b.produce_events("ev", 8_000, 9_000, PARTITIONS);
    let five_left = ["per_g", "total", "max_per_g", "ratio", "late_comer"];
    rt.block_on(check(
        &server,
        9_000,
        &five_left,
        "after a view was dropped",
    ));
}

/// With the broker unreachable when the server starts, the shared reader keeps trying to
/// reach it; a view dropped meanwhile leaves it at once (it does not wait for the broker),
/// and once the broker is back the other view reads on, exact.
#[test]
fn a_view_dropped_while_the_broker_is_away_leaves_at_once() {
    let broker = KafkaBroker::start_proxied();
    broker.create_topic("ev", 2);
    // All on the coordinator thread here (see the last assertion).
    let mut server =
        TestServer::start_with_args(&["--checkpoint-interval-ms", "100", "--view-threads", "1"]);
    let rt = freshet_sql_tests::runtime();
    let count = |server: &TestServer| {
        rt.block_on(async {
            let c = connect(&server.conn_str()).await.expect("connect");
            c.batch_execute("FLUSH").await.expect("flush");
            c.query_one("SELECT c FROM total", &[])
                .await
                .expect("total")
                .get::<_, i64>(0)
        })
    };
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE SOURCE ev (k BIGINT, g VARCHAR, n BIGINT, ts TIMESTAMPTZ)
               WITH (connector = 'kafka', topic = 'ev', properties.bootstrap.server = '{}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS c FROM ev;
             CREATE MATERIALIZED VIEW per_g AS SELECT g, count(*) AS c FROM ev GROUP BY g;",
            broker.addr()
        ))
        .await
        .expect("setup");
    });
    let b = BrokerAddr(broker.port);
    b.produce_events("ev", 0, 1_000, 2);
    assert_eq!(count(&server), 1_000);

    broker.cut();
    server.restart();
    let started = std::time::Instant::now();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let drop = c.batch_execute("DROP MATERIALIZED VIEW per_g");
        tokio::time::timeout(Duration::from_secs(60), drop)
            .await
            .expect("DROP waited for the broker")
            .expect("drop");
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "DROP waited for the broker: {took:?}"
    );
    broker.heal();
    b.produce_events("ev", 1_000, 2_000, 2);
    assert_eq!(count(&server), 2_000, "the other view read on, exact");
    assert_eq!(
        metric(&server, "freshet_parallel_batches_total"),
        0.0,
        "--view-threads 1 applies every batch on the coordinator thread"
    );
}
