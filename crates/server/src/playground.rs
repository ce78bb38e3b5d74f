//! `freshet playground`: a server on a temporary data directory with built-in demo data —
//! a catalog of titles and a live stream of plays (inserted by a generator, with some
//! corrections deleted again) — and a few ready views, so Freshet can be tried with
//! nothing but psql.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
const COUNTRIES: &[&str] = &["US", "BR", "IN", "DE", "JP", "FR", "MX", "KR"];
const DEVICES: &[&str] = &["tv", "mobile", "web", "tablet"];
const TITLES: usize = 40;

const VIEWS: &[(&str, &str)] = &[
    (
        "top_titles",
        "SELECT t.title_id, t.name, t.genre, count(*) AS plays, count(DISTINCT p.user_id) AS viewers \
         FROM plays p JOIN titles t ON p.title_id = t.title_id GROUP BY t.title_id, t.name, t.genre",
    ),
    (
        "plays_per_country",
        "SELECT country, count(*) AS plays, count(DISTINCT user_id) AS users, \
         min(event_time) AS first_play, max(event_time) AS last_play FROM plays GROUP BY country",
    ),
    (
        "genre_by_device",
        "SELECT t.genre, p.device, count(*) AS plays, avg(p.watch_seconds) AS avg_watch_seconds \
         FROM plays p JOIN titles t ON p.title_id = t.title_id GROUP BY t.genre, p.device",
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

/// Runs the playground until Ctrl-C.
pub async fn run(listen: std::net::SocketAddr, rate: u64) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("freshet-playground-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary data directory: {e}"))?;
    let config = Config {
        listen,
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let server = Server::bind(config).await?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let session = Session::new(server.db());
    exec(
        &session,
        "CREATE TABLE titles (title_id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, genre VARCHAR, maturity VARCHAR);
         CREATE TABLE plays (play_id BIGINT PRIMARY KEY, user_id BIGINT, title_id BIGINT, country VARCHAR,
                             device VARCHAR, watch_seconds INT, event_time TIMESTAMPTZ)",
    )
    .await?;
    let mut rng = StdRng::seed_from_u64(42);
    let titles: Vec<String> = (1..=TITLES)
        .map(|i| {
            format!(
                "({i}, 'Title {i:02}', '{}', '{}')",
                GENRES[rng.gen_range(0..GENRES.len())],
                ["G", "PG", "PG-13", "R"][rng.gen_range(0..4)]
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
         Try:\n\
         \x20 SHOW TABLES;  SHOW MATERIALIZED VIEWS;\n\
         \x20 SELECT name, genre, plays, viewers FROM top_titles ORDER BY plays DESC LIMIT 10;\n\
         \x20 SELECT * FROM plays_per_country ORDER BY plays DESC;\n\
         \x20 SELECT * FROM genre_by_device ORDER BY genre, device;\n\
         \x20 UPDATE titles SET genre = 'comedy' WHERE title_id = 1;   -- views follow at once\n\
         \x20 CREATE MATERIALIZED VIEW mobile_plays AS SELECT title_id, count(*) AS n FROM plays WHERE device = 'mobile' GROUP BY title_id;\n\n\
         A generator inserts about {rate} plays/s (and deletes a few as corrections). Ctrl-C stops.\n",
        dir.path().display(),
        addr.ip(),
        addr.port()
    );
    let events = Arc::new(AtomicU64::new(0));
    let gen_session = Session::new(server.db());
    let counter = events.clone();
    let generator = tokio::spawn(async move {
        let mut next_id: i64 = 1;
        let tick = Duration::from_millis(200);
        let per_tick = (rate / 5).max(1);
        loop {
            let started = Instant::now();
            let rows: Vec<String> = (0..per_tick)
                .map(|_| {
                    // Skewed popularity: low title ids are played much more often.
                    let title =
                        ((rng.gen::<f64>().powi(3) * TITLES as f64) as usize).min(TITLES - 1) + 1;
                    let id = next_id;
                    next_id += 1;
                    format!(
                        "({id}, {}, {title}, '{}', '{}', {}, now())",
                        rng.gen_range(1..5000),
                        COUNTRIES[rng.gen_range(0..COUNTRIES.len())],
                        DEVICES[rng.gen_range(0..DEVICES.len())],
                        rng.gen_range(10..7200)
                    )
                })
                .collect();
            let mut sql = format!("INSERT INTO plays VALUES {}", rows.join(", "));
            if next_id > 100 && rng.gen_bool(0.2) {
                sql.push_str(&format!(
                    "; DELETE FROM plays WHERE play_id = {}",
                    rng.gen_range(1..next_id)
                ));
            }
            if let Err(e) = exec(&gen_session, &sql).await {
                eprintln!("generator stopped: {e}");
                return;
            }
            counter.fetch_add(per_tick, Ordering::Relaxed);
            tokio::time::sleep(tick.saturating_sub(started.elapsed())).await;
        }
    });
    let progress_events = events.clone();
    let progress = tokio::spawn(async move {
        let mut last = 0;
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        interval.tick().await;
        loop {
            interval.tick().await;
            let now = progress_events.load(Ordering::Relaxed);
            println!(
                "[playground] {now} plays ingested ({:.0}/s), {} views up to date",
                (now - last) as f64 / 5.0,
                VIEWS.len()
            );
            last = now;
        }
    });
    let result = server.run(shutdown_signal()).await;
    generator.abort();
    progress.abort();
    result
}
