//! Differential test of windowed views: a random event stream with random disorder and
//! lateness goes through a real broker into TUMBLE, HOP and EMIT ON WINDOW CLOSE views,
//! with kill -9 restarts between bursts. After every burst each view must equal a
//! reference computed here, independently, from the same events and the same watermark
//! rule: one partition, watermark = largest event time so far − 10 s, an event below the
//! watermark when it arrives is late (not in any window, but in late_events). A copy of the
//! TUMBLE view created after the first burst joins the source's shared reader behind the
//! others and reads the topic from its beginning, with a watermark of its own: it must
//! classify every event as the reference does too.
//!
//! `FRESHET_WINDOW_SEED` replays a seed; `FRESHET_WINDOW_EVENTS` sets the stream length.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{KafkaBroker, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DELAY: i64 = 10_000_000;
const MIN: i64 = 60_000_000;

struct Event {
    k: String,
    v: i64,
    ts: i64,
}

fn floor(ts: i64, size: i64, offset: i64) -> i64 {
    (ts - offset).div_euclid(size) * size + offset
}

/// An event time as written in the JSON messages (microsecond precision).
fn fmt_event(us: i64) -> String {
    let t: DateTime<Utc> = Utc.timestamp_micros(us).single().expect("timestamp");
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// A window start as `::text` renders it (as Postgres prints a timestamp; window starts
/// here are whole minutes).
fn fmt(us: i64) -> String {
    let t: DateTime<Utc> = Utc.timestamp_micros(us).single().expect("timestamp");
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[derive(Default)]
struct Reference {
    max: Option<i64>,
    wm: Option<i64>,
    late: usize,
    /// (window_start, k) → (count, sum)
    tumble: BTreeMap<(i64, String), (i64, i64)>,
    /// window_start → count (hop 20 s / 1 min)
    hop: BTreeMap<i64, i64>,
    /// (window_start, k) → (count, max) (tumble 30 s offset 10 s)
    eowc: BTreeMap<(i64, String), (i64, i64)>,
}

impl Reference {
    fn take(&mut self, e: &Event) {
        if self.wm.is_some_and(|w| e.ts < w) {
            self.late += 1;
            return;
        }
        let t = self
            .tumble
            .entry((floor(e.ts, MIN, 0), e.k.clone()))
            .or_default();
        t.0 += 1;
        t.1 += e.v;
        let slide = 20_000_000;
        let mut s = floor(e.ts, slide, 0);
        while s + MIN > e.ts {
            *self.hop.entry(s).or_default() += 1;
            s -= slide;
        }
        let w = self
            .eowc
            .entry((floor(e.ts, 30_000_000, 10_000_000), e.k.clone()))
            .or_insert((0, i64::MIN));
        w.0 += 1;
        w.1 = w.1.max(e.v);
        if self.max.is_none_or(|m| e.ts > m) {
            self.max = Some(e.ts);
            self.wm = Some(e.ts - DELAY);
        }
    }
}

#[test]
fn windowed_views_equal_a_reference_fold() {
    let seed: u64 = std::env::var("FRESHET_WINDOW_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    let n: usize = std::env::var("FRESHET_WINDOW_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    eprintln!(
        "window differential: {n} events, seed {seed} (replay with FRESHET_WINDOW_SEED={seed})"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    // The views' keyed operators run on 1 to 4 threads, their state in that many shards
    // or up to 2 more, chosen by the seed; bursts change a view's parallelism.
    let threads = rng.gen_range(1..=4usize);
    let max_parallelism = threads + rng.gen_range(0..=2usize);
    let shards = threads.to_string();
    eprintln!(
        "window differential: views run on {shards} thread(s), as {max_parallelism} shard(s)"
    );
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("base")
        .timestamp_micros();
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let t = base + i as i64 * 700_000;
            let d = rng.gen::<f64>();
            let behind = if d < 0.7 {
                0
            } else if d < 0.95 {
                rng.gen_range(0..20_000_000)
            } else {
                rng.gen_range(30_000_000..200_000_000)
            };
            Event {
                k: ["a", "b", "c", "d", "e"][rng.gen_range(0..5)].to_string(),
                v: rng.gen_range(-100..1000),
                ts: t - behind,
            }
        })
        .collect();

    let broker = KafkaBroker::start();
    broker.create_topic("ev", 1);
    let mut server = TestServer::start_with_args(&["--streaming-parallelism", &shards]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(&format!(
            "SET streaming_max_parallelism = {max_parallelism};
             CREATE SOURCE ev (k VARCHAR, v BIGINT, ts TIMESTAMP,
               WATERMARK FOR ts AS ts - INTERVAL '10 seconds')
             WITH (connector = 'kafka', topic = 'ev', properties.bootstrap.server = '{}')
             FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW tumble AS SELECT window_start, k, count(*) AS n, sum(v) AS s
               FROM TUMBLE(ev, ts, INTERVAL '1 minute') GROUP BY window_start, k;
             CREATE MATERIALIZED VIEW hop AS SELECT window_start, count(*) AS n
               FROM HOP(ev, ts, INTERVAL '20 seconds', INTERVAL '1 minute') GROUP BY window_start;
             CREATE MATERIALIZED VIEW closed AS SELECT window_start, k, count(*) AS n, max(v) AS hi
               FROM TUMBLE(ev, ts, INTERVAL '30 seconds', INTERVAL '10 seconds')
               GROUP BY window_start, k EMIT ON WINDOW CLOSE;",
            broker.addr(),
        ))
        .await
        .expect("setup");
    });

    let mut reference = Reference::default();
    let mut done = 0;
    let mut burst = 0;
    while done < n {
        let len = rng.gen_range(1..=n / 4).min(n - done);
        let msgs: Vec<Option<Vec<u8>>> = events[done..done + len]
            .iter()
            .map(|e| {
                Some(
                    format!(
                        "{{\"k\": \"{}\", \"v\": {}, \"ts\": \"{}\"}}",
                        e.k,
                        e.v,
                        fmt_event(e.ts)
                    )
                    .into_bytes(),
                )
            })
            .collect();
        for e in &events[done..done + len] {
            reference.take(e);
        }
        broker.produce("ev", Some(0), None, &msgs);
        done += len;
        burst += 1;
        if burst == 1 {
            rt.block_on(async {
                let c = connect(&server.conn_str()).await.expect("connect");
                c.batch_execute(&format!(
                    "SET streaming_max_parallelism = {max_parallelism};
                     CREATE MATERIALIZED VIEW tumble_late AS SELECT window_start, k, count(*) AS n, sum(v) AS s
                       FROM TUMBLE(ev, ts, INTERVAL '1 minute') GROUP BY window_start, k",
                ))
                .await
                .expect("late view");
            });
        }
        if rng.gen_bool(0.5) {
            // Another parallelism for a view while events flow: its state stays put.
            let view = ["tumble", "hop", "closed"][rng.gen_range(0..3)];
            let p = rng.gen_range(1..=max_parallelism);
            rt.block_on(async {
                let c = connect(&server.conn_str()).await.expect("connect");
                c.batch_execute(&format!(
                    "ALTER MATERIALIZED VIEW {view} SET PARALLELISM = {p}"
                ))
                .await
                .expect("alter parallelism");
            });
        }
        if rng.gen_bool(0.5) {
            server.kill9_restart();
        }
        let wm = reference.wm.unwrap_or(i64::MIN);
        rt.block_on(async {
            let c = connect(&server.conn_str()).await.expect("connect");
            c.batch_execute("FLUSH").await.expect("flush");
            let rows = |q: &'static str| {
                let c = &c;
                async move { c.query(q, &[]).await.expect(q) }
            };
            let got: Vec<(String, String, i64, i64)> =
                rows("SELECT window_start::text, k, n, s::bigint FROM tumble ORDER BY 1, 2")
                    .await
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect();
            let want: Vec<(String, String, i64, i64)> = reference
                .tumble
                .iter()
                .map(|((w, k), (n, s))| (fmt(*w), k.clone(), *n, *s))
                .collect();
            assert_eq!(got, want, "tumble after burst {burst} (seed {seed})");
            if burst >= 1 {
                let late_view: Vec<(String, String, i64, i64)> =
                    rows("SELECT window_start::text, k, n, s::bigint FROM tumble_late ORDER BY 1, 2")
                        .await
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                        .collect();
                assert_eq!(
                    late_view, want,
                    "a view created later, after burst {burst} (seed {seed})"
                );
            }

            let got: Vec<(String, i64)> = rows("SELECT window_start::text, n FROM hop ORDER BY 1")
                .await
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let want: Vec<(String, i64)> =
                reference.hop.iter().map(|(w, n)| (fmt(*w), *n)).collect();
            assert_eq!(got, want, "hop after burst {burst} (seed {seed})");

            // Only windows the watermark has closed, each with its final values.
            let got: Vec<(String, String, i64, i64)> =
                rows("SELECT window_start::text, k, n, hi FROM closed ORDER BY 1, 2")
                    .await
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect();
            let want: Vec<(String, String, i64, i64)> = reference
                .eowc
                .iter()
                .filter(|((w, _), _)| w + 30_000_000 <= wm)
                .map(|((w, k), (n, hi))| (fmt(*w), k.clone(), *n, *hi))
                .collect();
            assert_eq!(
                got, want,
                "EMIT ON WINDOW CLOSE after burst {burst} (seed {seed})"
            );

            let late: i64 = c
                .query_one("SELECT count(*) FROM freshet_catalog.late_events", &[])
                .await
                .expect("late")
                .get(0);
            assert_eq!(
                late as usize, reference.late,
                "late events after burst {burst}"
            );

            // Closing windows free state by ranges: the count every commit keeps of each
            // view's state entries still equals a scan of it.
            let off: Vec<(String, i64, Option<i64>)> = c
                .query(
                    "SELECT v.view_name, s.state_rows, v.state_rows FROM freshet_catalog.view_state v
                       JOIN freshet_catalog.view_state_scan s ON v.view_name = s.view_name
                      WHERE coalesce(v.state_rows, 0) <> s.state_rows",
                    &[],
                )
                .await
                .expect("view_state")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert!(
                off.is_empty(),
                "state entry counts after burst {burst}: {off:?}"
            );
        });
    }
    eprintln!(
        "window differential: {burst} bursts, {} late events, {} tumble groups",
        reference.late,
        reference.tumble.len()
    );
}
