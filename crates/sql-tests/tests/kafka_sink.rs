//! Kafka sinks through the real broker: a source's events go through views into sinks of
//! each format, are read back from their topics with a plain Kafka consumer, and must
//! equal the views (and the events); across `kill -9` nothing is lost and duplicates
//! are only whole batches sent again (at-least-once); a broker that is cut off backs up
//! its sink only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{KafkaBroker, TestServer, TopicMessage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn runtime() -> tokio::runtime::Runtime {
    freshet_sql_tests::runtime()
}

fn seed() -> u64 {
    std::env::var("FRESHET_SINK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

/// `count` random events `{"k", "g", "n"}` with ids from `first`.
fn events(rng: &mut StdRng, first: i64, count: i64) -> Vec<(i64, String, i64)> {
    (first..first + count)
        .map(|k| {
            (
                k,
                format!("g{}", rng.gen_range(0..7)),
                rng.gen_range(-50..50),
            )
        })
        .collect()
}

fn produce(broker: &KafkaBroker, topic: &str, evs: &[(i64, String, i64)]) {
    let payloads: Vec<Option<Vec<u8>>> = evs
        .iter()
        .map(|(k, g, n)| Some(format!(r#"{{"k": {k}, "g": "{g}", "n": {n}}}"#).into_bytes()))
        .collect();
    broker.produce(topic, None, None, &payloads);
}

/// Waits until every Kafka sink delivered everything committed.
async fn drained(c: &tokio_postgres::Client) {
    c.batch_execute("FLUSH").await.expect("flush");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = c
            .query_one(
                "SELECT count(*) FROM freshet_catalog.sinks WHERE connector = 'kafka' AND backlog > 0",
                &[],
            )
            .await
            .expect("sinks");
        if row.get::<_, i64>(0) == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "sinks did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A view's rows keyed by `g`: (count, sum).
async fn view(c: &tokio_postgres::Client, name: &str) -> BTreeMap<String, (i64, i64)> {
    c.query(&format!("SELECT g, c, s::bigint FROM {name}"), &[])
        .await
        .expect("view")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON {s}: {e}"))
}

fn group_row(v: &Value) -> (String, (i64, i64)) {
    (
        v["g"].as_str().expect("g").to_string(),
        (
            v["c"].as_i64().expect("c"),
            // `s` is a sum of bigints, a numeric, which sinks send as a string (exact).
            v["s"]
                .as_i64()
                .or_else(|| v["s"].as_str()?.parse().ok())
                .expect("s"),
        ),
    )
}

/// An UPSERT topic applied in order: the last value per key, tombstones deleting.
fn apply_upserts(msgs: &[TopicMessage]) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for m in msgs {
        let key = json(m.key.as_deref().expect("upsert key"));
        let g = key["g"].as_str().expect("key g").to_string();
        match &m.value {
            Some(v) => {
                let (k, row) = group_row(&json(v));
                assert_eq!(k, g, "the key is the row's primary key");
                out.insert(g, row);
            }
            None => {
                out.remove(&g);
            }
        }
    }
    out
}

/// A DEBEZIUM topic applied in order.
fn apply_debezium(msgs: &[TopicMessage]) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for m in msgs {
        let Some(v) = &m.value else { continue }; // the tombstone after a delete
        let v = json(v);
        match v["op"].as_str().expect("op") {
            "c" | "u" => {
                let (g, row) = group_row(&v["after"]);
                if v["op"] == "u" {
                    assert_eq!(
                        group_row(&v["before"]).0,
                        g,
                        "before and after share the key"
                    );
                }
                out.insert(g, row);
            }
            "d" => {
                out.remove(&group_row(&v["before"]).0);
            }
            op => panic!("unexpected op {op}"),
        }
    }
    out
}

const SETUP: &str = "
    CREATE SOURCE events (k BIGINT, g VARCHAR, n BIGINT)
      WITH (connector = 'kafka', topic = 'events', properties.bootstrap.server = '{addr}')
      FORMAT PLAIN ENCODE JSON;
    -- Groups come and go (HAVING), so the keyed sinks see inserts, updates and deletes.
    CREATE MATERIALIZED VIEW groups AS
      SELECT g, count(*) AS c, sum(n) AS s FROM events GROUP BY g HAVING count(*) % 4 <> 0;";

#[test]
fn sinks_round_trip_through_the_broker() {
    let seed = seed();
    eprintln!("seed {seed} (replay with FRESHET_SINK_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let broker = KafkaBroker::start();
    broker.create_topic("events", 2);
    broker.create_topic("up", 3);
    broker.create_topic("dbz", 2);
    broker.create_topic("plain", 1);
    broker.create_topic("tx", 1);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = runtime();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let addr = broker.addr();
        c.batch_execute(&SETUP.replace("{addr}", &addr)).await.expect("setup");
        c.batch_execute(&format!(
            "CREATE SINK up FROM groups WITH (connector = 'kafka', topic = 'up',
               properties.bootstrap.server = '{addr}', primary_key = 'g') FORMAT UPSERT ENCODE JSON;
             CREATE SINK dbz FROM groups WITH (connector = 'kafka', topic = 'dbz',
               properties.bootstrap.server = '{addr}', primary_key = 'g') FORMAT DEBEZIUM ENCODE JSON;
             CREATE SINK plain AS SELECT k, g, n FROM events WITH (connector = 'kafka',
               topic = 'plain', properties.bootstrap.server = '{addr}') FORMAT PLAIN ENCODE JSON;
             CREATE SINK tx AS SELECT k, g, n FROM events WITH (connector = 'kafka',
               topic = 'tx', properties.bootstrap.server = '{addr}', sink.guarantee = 'exactly-once')
               FORMAT PLAIN ENCODE JSON;"
        ))
        .await
        .expect("sinks");
        let shown: Vec<String> = c
            .simple_query("SHOW SINKS")
            .await
            .expect("show")
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(shown, ["dbz", "plain", "tx", "up"]);
        let mut all = Vec::new();
        for round in 0..5 {
            let count = rng.gen_range(1..300);
            let evs = events(&mut rng, round * 300, count);
            produce(&broker, "events", &evs);
            all.extend(evs);
            if round % 2 == 1 {
                drained(&c).await;
            }
        }
        drained(&c).await;
        let groups = view(&c, "groups").await;
        assert!(!groups.is_empty());
        assert_eq!(apply_upserts(&broker.read_topic("up")), groups, "UPSERT topic");
        assert_eq!(apply_debezium(&broker.read_topic("dbz")), groups, "DEBEZIUM topic");
        let expected: BTreeSet<(i64, String, i64)> = all.iter().cloned().collect();
        for topic in ["plain", "tx"] {
            let msgs = broker.read_topic(topic);
            assert_eq!(msgs.len(), all.len(), "{topic}: one message per event");
            let got: BTreeSet<(i64, String, i64)> = msgs
                .iter()
                .map(|m| {
                    let v = json(m.value.as_deref().expect("value"));
                    (v["k"].as_i64().unwrap(), v["g"].as_str().unwrap().to_string(), v["n"].as_i64().unwrap())
                })
                .collect();
            assert_eq!(got, expected, "{topic}");
            // In outbox order: the sequence numbers count up from 1.
            let seqs: Vec<u64> = msgs.iter().map(|m| m.seq.expect("freshet_seq")).collect();
            assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>(), "{topic}");
        }
        let row = c
            .query_one(
                "SELECT rows_inserted, messages_sent, backlog, last_error IS NULL
                   FROM freshet_catalog.sinks WHERE sink_name = 'plain'",
                &[],
            )
            .await
            .expect("sinks");
        assert_eq!(row.get::<_, i64>(0), all.len() as i64);
        assert_eq!(row.get::<_, i64>(1), all.len() as i64);
        assert_eq!(row.get::<_, i64>(2), 0);
        assert!(row.get::<_, bool>(3));
        // DROP SINK stops its delivery; the others go on.
        c.batch_execute("DROP SINK dbz").await.expect("drop");
        let before = broker.read_topic("dbz").len();
        let evs = events(&mut rng, 10_000, 50);
        produce(&broker, "events", &evs);
        drained(&c).await;
        assert_eq!(broker.read_topic("dbz").len(), before, "a dropped sink sends nothing");
        assert_eq!(apply_upserts(&broker.read_topic("up")), view(&c, "groups").await);
    });
}

#[test]
fn sink_resumes_after_kill9_with_duplicates_only_from_resent_batches() {
    let seed = seed();
    eprintln!("seed {seed} (replay with FRESHET_SINK_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let broker = KafkaBroker::start();
    broker.create_topic("events", 2);
    broker.create_topic("up", 2);
    broker.create_topic("plain", 1);
    let mut server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = runtime();
    let addr = broker.addr();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&SETUP.replace("{addr}", &addr))
            .await
            .expect("setup");
        c.batch_execute(&format!(
            "CREATE SINK up FROM groups WITH (connector = 'kafka', topic = 'up',
               properties.bootstrap.server = '{addr}', primary_key = 'g') FORMAT UPSERT ENCODE JSON;
             CREATE SINK plain AS SELECT k, g, n FROM events WITH (connector = 'kafka',
               topic = 'plain', properties.bootstrap.server = '{addr}') FORMAT PLAIN ENCODE JSON;"
        ))
        .await
        .expect("sinks");
    });
    let mut all = Vec::new();
    let kills = 4;
    for round in 0..kills {
        let evs = events(&mut rng, round * 5_000, 5_000);
        produce(&broker, "events", &evs);
        all.extend(evs);
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..1200)));
        server.kill9_restart();
    }
    // And once exactly in the window at-least-once leaves: a batch the broker has,
    // whose position the server had not recorded when it died.
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        drained(&c).await;
    });
    server.stop();
    server.set_env("FRESHET_TEST_SINK_CRASH_AFTER_SEND", Some("1"));
    server.start_again(&["--checkpoint-interval-ms", "100"]);
    let evs = events(&mut rng, 100_000, 500);
    produce(&broker, "events", &evs);
    all.extend(evs);
    assert!(
        server.wait_exit(Duration::from_secs(60)),
        "the fault hook did not fire"
    );
    server.set_env("FRESHET_TEST_SINK_CRASH_AFTER_SEND", None);
    server.start_again(&["--checkpoint-interval-ms", "100"]);
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        drained(&c).await;
        assert_eq!(
            apply_upserts(&broker.read_topic("up")),
            view(&c, "groups").await
        );
    });
    let msgs = broker.read_topic("plain");
    let seqs: Vec<u64> = msgs.iter().map(|m| m.seq.expect("freshet_seq")).collect();
    // No gap: every change from 1 to the last, each with the event it was made from.
    let mut by_seq: BTreeMap<u64, String> = BTreeMap::new();
    for m in &msgs {
        let v = m.value.clone().expect("value");
        if let Some(old) = by_seq.insert(m.seq.unwrap(), v.clone()) {
            assert_eq!(old, v, "a change sent again is the same change");
        }
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "every change, no gap"
    );
    let got: BTreeSet<(i64, String, i64)> = by_seq
        .values()
        .map(|v| {
            let v = json(v);
            (
                v["k"].as_i64().unwrap(),
                v["g"].as_str().unwrap().to_string(),
                v["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        all.iter().cloned().collect::<BTreeSet<_>>(),
        "the events, each once"
    );
    // Duplicates only where a restart sent a batch again: the topic is runs of
    // consecutive changes, and a new run (a restart) begins at or below where the last
    // ended; there are at most as many restarts as kills.
    let restarts = seqs.windows(2).filter(|w| w[1] != w[0] + 1).count();
    for w in seqs.windows(2) {
        assert!(
            w[1] == w[0] + 1 || w[1] <= w[0],
            "a gap between {} and {}",
            w[0],
            w[1]
        );
    }
    assert!(
        restarts <= kills as usize + 1,
        "{restarts} re-sends for {} crashes",
        kills + 1
    );
    // The fault hook fired after one of the two sinks' batch reached the broker: that
    // batch is in its topic twice.
    let up_seqs: Vec<u64> = broker
        .read_topic("up")
        .iter()
        .filter_map(|m| m.seq)
        .collect();
    let up_resent = up_seqs.len() > up_seqs.iter().collect::<BTreeSet<_>>().len();
    assert!(
        seqs.len() > all.len() || up_resent,
        "the batch sent before the crash was not sent again"
    );
    eprintln!(
        "{} messages for {} events: {} duplicates over {restarts} re-sent batches",
        seqs.len(),
        all.len(),
        seqs.len() - all.len()
    );
}

#[test]
fn an_unreachable_broker_backs_up_its_sink_only() {
    let out = KafkaBroker::start_proxied();
    out.create_topic("out", 1);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = runtime();
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE TABLE t (k INT PRIMARY KEY, g VARCHAR, n INT);
             CREATE MATERIALIZED VIEW groups AS SELECT g, count(*) AS c, sum(n) AS s FROM t GROUP BY g;
             CREATE SINK up FROM groups WITH (connector = 'kafka', topic = 'out',
               properties.bootstrap.server = '{}', properties.message.timeout.ms = '2000',
               primary_key = 'g') FORMAT UPSERT ENCODE JSON;",
            out.addr()
        ))
        .await
        .expect("setup");
        c.batch_execute("INSERT INTO t VALUES (1, 'a', 1)").await.expect("insert");
        drained(&c).await;
        out.cut();
        for i in 2..200 {
            c.execute(&format!("INSERT INTO t VALUES ({i}, 'g{}', {i})", i % 5), &[])
                .await
                .expect("inserts go on while the broker is away");
        }
        // The view is current at once; the sink's backlog grows and says why.
        assert_eq!(
            c.query_one("SELECT sum(c)::bigint FROM groups", &[]).await.unwrap().get::<_, i64>(0),
            199
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = c
                .query_one("SELECT backlog, last_error FROM freshet_catalog.sinks", &[])
                .await
                .expect("sinks");
            let (backlog, err): (i64, Option<String>) = (r.get(0), r.get(1));
            if backlog > 0 && err.is_some() {
                eprintln!("while cut off: backlog {backlog}, error {err:?}");
                break;
            }
            assert!(Instant::now() < deadline, "no error while the broker was away");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out.heal();
        drained(&c).await;
        let r = c
            .query_one("SELECT last_error IS NULL FROM freshet_catalog.sinks", &[])
            .await
            .unwrap();
        assert!(r.get::<_, bool>(0), "the error clears once a batch is delivered");
        assert_eq!(apply_upserts(&out.read_topic("out")), view(&c, "groups").await);
        // Cut off again, with a batch on its way: DROP SINK does not wait out the broker.
        out.cut();
        c.execute("INSERT INTO t VALUES (1000, 'z', 1)", &[]).await.expect("insert");
        c.batch_execute("FLUSH").await.expect("flush");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        c.batch_execute("DROP SINK up").await.expect("drop");
        let took = started.elapsed();
        eprintln!("DROP SINK with the broker away took {took:?}");
        assert!(took < Duration::from_secs(10), "DROP SINK took {took:?}");
    });
}

/// A sink over a view, its broker cut off: past `sink.max_backlog` the readers feeding
/// the sink (through the view) wait, so its outbox stops growing near the bound, while a
/// view over the same topic that feeds no sink reads everything; once the broker is back,
/// all of it arrives.
#[test]
fn a_sink_behind_holds_back_the_readers_that_feed_it_through_a_view() {
    let broker = KafkaBroker::start();
    broker.create_topic("events", 1);
    let out = KafkaBroker::start_proxied();
    out.create_topic("out", 1);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = runtime();
    let n = 150_000i64;
    let bound = 1_000i64;
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE SOURCE events (k BIGINT, g VARCHAR, n BIGINT)
               WITH (connector = 'kafka', topic = 'events', properties.bootstrap.server = '{}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_k AS SELECT k, g, n FROM events;
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS c FROM events;
             CREATE SINK up FROM per_k WITH (connector = 'kafka', topic = 'out',
               properties.bootstrap.server = '{}', properties.message.timeout.ms = '2000',
               primary_key = 'k', sink.max_backlog = '{bound}') FORMAT UPSERT ENCODE JSON;",
            broker.addr(),
            out.addr()
        ))
        .await
        .expect("setup");
        out.cut();
        let mut rng = StdRng::seed_from_u64(7);
        produce(&broker, "events", &events(&mut rng, 0, n));
        // The view that feeds no sink reads the whole topic.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let r = c
                .query_one("SELECT c FROM total", &[])
                .await
                .expect("total");
            if r.get::<_, i64>(0) == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the other view did not read the topic"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The sink's readers wait: its outbox stays near the bound (what the readers had
        // handed over when it was passed, at most a few batches of 16,384 rows).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = c
            .query_one(
                "SELECT backlog, paused FROM freshet_catalog.sinks WHERE sink_name = 'up'",
                &[],
            )
            .await
            .expect("sinks");
        let (backlog, paused): (i64, bool) = (r.get(0), r.get(1));
        let held: i64 = c
            .query_one("SELECT count(*) FROM per_k", &[])
            .await
            .expect("per_k")
            .get(0);
        eprintln!("while cut off: backlog {backlog}, paused {paused}, per_k {held} of {n}");
        assert!(paused, "the sink says it holds back its readers");
        assert!(backlog > bound, "{backlog}");
        // The bound is checked against what is committed, so the readers pass it by
        // what they had handed over until a checkpoint showed it: a few batches, more on
        // a loaded machine (4.5 × 16,384 seen in CI). What matters is that it stops.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let later: i64 = c
            .query_one(
                "SELECT backlog FROM freshet_catalog.sinks WHERE sink_name = 'up'",
                &[],
            )
            .await
            .expect("sinks")
            .get(0);
        assert_eq!(later, backlog, "the outbox kept growing while cut off");
        assert!(held < n, "the view feeding the sink was held back");
        // FLUSH cannot finish while that lasts: it says why instead of waiting it out.
        let started = Instant::now();
        let e = c
            .batch_execute("FLUSH")
            .await
            .expect_err("FLUSH while held back");
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(msg.contains("Kafka sink \"up\""), "{e:?}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
        out.heal();
        drained(&c).await;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let held: i64 = c
                .query_one("SELECT count(*) FROM per_k", &[])
                .await
                .expect("per_k")
                .get(0);
            c.batch_execute("FLUSH").await.expect("flush");
            if held == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the held-back view did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drained(&c).await;
        let topic = out.read_topic("out");
        let keys: BTreeSet<String> = topic
            .iter()
            .filter(|m| m.value.is_some())
            .map(|m| m.key.clone().expect("key"))
            .collect();
        assert_eq!(
            keys.len() as i64,
            n,
            "every row reached the topic once the broker was back"
        );
        let r = c
            .query_one("SELECT paused, backlog FROM freshet_catalog.sinks", &[])
            .await
            .expect("sinks");
        assert!(!r.get::<_, bool>(0));
        assert_eq!(r.get::<_, i64>(1), 0);
    });
}
