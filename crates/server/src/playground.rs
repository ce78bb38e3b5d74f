//! `freshet playground`: a server on a temporary data directory with built-in demo data
//! and a few ready views, so Freshet can be tried with nothing but psql.
//!
//! Two `playback` sources generate a video service's events (plays and homepage
//! impressions: users, titles with skewed and drifting popularity, countries, devices,
//! some events out of order and a few late), with event time running `speedup` times
//! faster than the wall clock so that minute windows close every few seconds. A `titles`
//! table enriches them.

use std::time::Duration;

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::server::{shutdown_signal, Server};
use crate::session::{Output, Session};

const GENRES: &[&str] = &[
    "drama",
    "comedy",
    "documentary",
    "thriller",
    "kids",
    "anime",
];
/// The playback generator's title ids are 1..=2000.
const TITLES: usize = 2000;
/// Event time runs this many times faster than the wall clock.
const SPEEDUP: u32 = 10;

const VIEWS: &[(&str, &str)] = &[
    (
        "trending_titles",
        "SELECT p.window_start, p.window_end, p.title_id, t.name, count(*) AS plays \
         FROM HOP(plays, event_time, INTERVAL '1 minute', INTERVAL '10 minutes') p \
         JOIN titles t ON p.title_id = t.title_id \
         GROUP BY p.window_start, p.window_end, p.title_id, t.name",
    ),
    (
        "country_minutes",
        "SELECT window_start, country, count(*) AS plays, count(DISTINCT user_id) AS viewers \
         FROM TUMBLE(plays, event_time, INTERVAL '1 minute') \
         GROUP BY window_start, country EMIT ON WINDOW CLOSE",
    ),
    (
        "homepage_rows",
        "SELECT window_start, row_name, count(*) AS impressions, round(avg(position), 2) AS avg_position \
         FROM TUMBLE(impressions, event_time, INTERVAL '1 minute') \
         GROUP BY window_start, row_name",
    ),
    (
        "plays_per_genre",
        "SELECT t.genre, count(*) AS plays FROM plays p JOIN titles t ON p.title_id = t.title_id \
         GROUP BY t.genre",
    ),
];

async fn exec(session: &Session, sql: &str) -> Result<Output, String> {
    let mut last = Output::Empty;
    for stmt in freshet_planner::parser::parse(sql).map_err(|e| format!("{sql}: {e}"))? {
        last = session
            .execute(&stmt, &[])
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
    }
    Ok(last)
}

/// The first value of the first column of a one-row query result, as an integer.
async fn scalar(session: &Session, sql: &str) -> Option<i64> {
    let (_, batches) = exec(session, sql).await.ok()?.into_batches().await.ok()??;
    let b = batches.first()?;
    let col = b.column(0).as_any().downcast_ref::<Int64Array>()?;
    (!col.is_empty() && col.is_valid(0)).then(|| col.value(0))
}

/// The first value of the first column of a one-row query result, as text.
async fn text(session: &Session, sql: &str) -> Option<String> {
    let (_, batches) = exec(session, sql).await.ok()?.into_batches().await.ok()??;
    let b = batches.first()?;
    // Whatever string type the query gave (string_agg's is LargeUtf8).
    let col = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).ok()?;
    let col = col.as_any().downcast_ref::<StringArray>()?;
    (!col.is_empty() && col.is_valid(0)).then(|| col.value(0).to_string())
}

/// Runs the playground until Ctrl-C.
pub async fn run(
    listen: std::net::SocketAddr,
    http_listen: Option<std::net::SocketAddr>,
    rate: u64,
) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("freshet-playground-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary data directory: {e}"))?;
    let config = Config {
        listen,
        http_listen,
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let server = Server::bind(config).await?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let session = Session::new(server.db());
    let rate = rate.max(1);
    exec(
        &session,
        &format!(
            "CREATE TABLE titles (title_id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, genre VARCHAR);
             CREATE SOURCE plays (user_id BIGINT, title_id BIGINT, country VARCHAR, device VARCHAR,
                                  duration_sec BIGINT, event_time TIMESTAMPTZ,
                                  WATERMARK FOR event_time AS event_time - INTERVAL '5 seconds')
               WITH (connector = 'playback', playback.stream = 'plays',
                     playback.rows.per.second = '{rate}', playback.speedup = '{SPEEDUP}');
             CREATE SOURCE impressions (user_id BIGINT, title_id BIGINT, row_name VARCHAR,
                                        position INT, event_time TIMESTAMPTZ,
                                        WATERMARK FOR event_time AS event_time - INTERVAL '5 seconds')
               WITH (connector = 'playback', playback.stream = 'impressions',
                     playback.rows.per.second = '{}', playback.speedup = '{SPEEDUP}')",
            rate * 3
        ),
    )
    .await?;
    let mut rng = StdRng::seed_from_u64(42);
    let titles: Vec<String> = (1..=TITLES)
        .map(|i| {
            format!(
                "({i}, 'Title {i:04}', '{}')",
                GENRES[rng.gen_range(0..GENRES.len())]
            )
        })
        .collect();
    exec(
        &session,
        &format!("INSERT INTO titles VALUES {}", titles.join(", ")),
    )
    .await?;
    for (name, query) in VIEWS {
        exec(
            &session,
            &format!("CREATE MATERIALIZED VIEW {name} AS {query}"),
        )
        .await?;
    }
    println!(
        "Freshet playground is running (data in {}, removed on exit).\n\n\
         Connect:   psql -h {} -p {} -U freshet freshet\n\n\
         Two playback sources generate plays ({rate}/s) and homepage impressions ({}/s); event time\n\
         runs {SPEEDUP}x faster than the clock, so one-minute windows close every few seconds.\n\n\
         Try:\n\
         \x20 SHOW SOURCES;  SHOW MATERIALIZED VIEWS;\n\
         \x20 -- trending now: top titles of the latest 10-minute hopping window\n\
         \x20 SELECT name, plays FROM trending_titles\n\
         \x20   WHERE window_start = (SELECT max(window_start) FROM trending_titles) ORDER BY plays DESC LIMIT 10;\n\
         \x20 -- final per-minute counts (EMIT ON WINDOW CLOSE: rows appear once, never change)\n\
         \x20 SELECT * FROM country_minutes ORDER BY window_start DESC, plays DESC LIMIT 10;\n\
         \x20 SELECT * FROM homepage_rows ORDER BY window_start DESC, impressions DESC LIMIT 6;\n\
         \x20 -- late-event audit: events that arrived below the watermark\n\
         \x20 SELECT source_name, count(*) AS late, max(watermark - event_time) AS worst\n\
         \x20   FROM freshet_catalog.late_events GROUP BY source_name;\n\
         \x20 SELECT * FROM freshet_catalog.watermarks;  SELECT * FROM freshet_catalog.view_state;\n\
         \x20 UPDATE titles SET genre = 'comedy' WHERE title_id = 1;   -- plays_per_genre follows\n\n\
         Ctrl-C stops.\n",
        dir.path().display(),
        addr.ip(),
        addr.port(),
        rate * 3
    );
    let progress_session = Session::new(server.db());
    let progress = tokio::spawn(async move {
        let mut last: Option<i64> = None;
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        interval.tick().await;
        loop {
            interval.tick().await;
            let plays = scalar(
                &progress_session,
                "SELECT sum(plays)::bigint FROM plays_per_genre",
            )
            .await
            .unwrap_or(0);
            let late = scalar(
                &progress_session,
                "SELECT count(*) FROM freshet_catalog.late_events",
            )
            .await
            .unwrap_or(0);
            let closed = scalar(
                &progress_session,
                "SELECT count(DISTINCT window_start) FROM country_minutes",
            )
            .await
            .unwrap_or(0);
            let trending = scalar(&progress_session, "SELECT count(*) FROM trending_titles")
                .await
                .unwrap_or(0);
            let per_s = last.map_or(0.0, |l| (plays - l) as f64 / 5.0);
            // Long work under way (a view created over a large table, a FLUSH): its
            // progress, as SHOW JOBS gives it.
            let jobs = text(
                &progress_session,
                "SELECT string_agg(kind || ' ' || relation || ' ' || progress
                                   || coalesce(', ETA ' || eta_seconds::bigint || ' s', ''), '; ')
                   FROM freshet_catalog.jobs WHERE state = 'running'",
            )
            .await
            .map(|j| format!("; running: {j}"))
            .unwrap_or_default();
            println!(
                "[playground] {plays} plays in views ({per_s:.0}/s), {late} late events, \
                 {closed} minutes closed, trending_titles {trending} rows{jobs}"
            );
            last = Some(plays);
        }
    });
    let result = server.run(shutdown_signal()).await;
    progress.abort();
    result
}
