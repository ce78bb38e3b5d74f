//! A view's parallelism across restarts with other server settings: a view created
//! without `SET streaming_parallelism` (or altered to `ADAPTIVE`) runs on the server's
//! `--streaming-parallelism` threads at every start, at most its shards
//! (`streaming_max_parallelism`); one created or altered with a number keeps it. The
//! views stay exact (against a fold in Rust) whatever they run on.

use std::collections::BTreeMap;

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::TestServer;

/// Per user: plays and seconds.
type Fold = BTreeMap<i64, (i64, i64)>;

/// The plays `from..=to` as the statement below inserts them.
fn fold(into: &mut Fold, from: i64, to: i64) {
    for id in from..=to {
        let e = into.entry(id * 7 % 101).or_default();
        e.0 += 1;
        e.1 += id % 600;
    }
}

fn insert(from: i64, to: i64) -> String {
    format!(
        "INSERT INTO plays SELECT value, value * 7 % 101, value % 600 \
         FROM generate_series({from}, {to}) AS g(value)"
    )
}

/// (parallelism, max_parallelism, adaptive) of each view, by name.
async fn settings(c: &tokio_postgres::Client) -> BTreeMap<String, (i64, i64, bool)> {
    c.query(
        "SELECT view_name, parallelism, max_parallelism, adaptive FROM freshet_catalog.views",
        &[],
    )
    .await
    .expect("views")
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
    .collect()
}

async fn check(c: &tokio_postgres::Client, expected: &Fold) {
    c.batch_execute("FLUSH").await.expect("flush");
    for view in ["adaptive_v", "fixed_v"] {
        let got: Fold = c
            .query(&format!("SELECT user_id, n, s::bigint FROM {view}"), &[])
            .await
            .expect("view")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        assert_eq!(&got, expected, "{view}");
    }
}

#[test]
fn adaptive_parallelism_follows_the_server_and_a_number_stays() {
    let mut server = TestServer::start_with_args(&["--streaming-parallelism", "1"]);
    let rt = freshet_sql_tests::runtime();
    let mut expected = Fold::new();
    let view = |name: &str| {
        format!(
            "CREATE MATERIALIZED VIEW {name} AS \
             SELECT user_id, count(*) AS n, sum(secs) AS s FROM plays GROUP BY user_id"
        )
    };
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE plays (id BIGINT PRIMARY KEY, user_id BIGINT, secs BIGINT);
             SET streaming_max_parallelism = 4;",
        )
        .await
        .expect("setup");
        c.batch_execute(&view("adaptive_v"))
            .await
            .expect("adaptive");
        c.batch_execute("SET streaming_parallelism = 2")
            .await
            .expect("set");
        c.batch_execute(&view("fixed_v")).await.expect("fixed");
        let s = settings(&c).await;
        assert_eq!(s["adaptive_v"], (1, 4, true));
        assert_eq!(s["fixed_v"], (2, 4, false));
        c.batch_execute(&insert(1, 20_000)).await.expect("insert");
        fold(&mut expected, 1, 20_000);
        check(&c, &expected).await;
    });

    // More threads for the server: the adaptive view takes them, the other keeps 2.
    server.stop();
    server.start_again(&["--streaming-parallelism", "3"]);
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let s = settings(&c).await;
        assert_eq!(s["adaptive_v"], (3, 4, true));
        assert_eq!(s["fixed_v"], (2, 4, false));
        check(&c, &expected).await;
        c.batch_execute(&insert(20_001, 45_000))
            .await
            .expect("insert");
        c.batch_execute("DELETE FROM plays WHERE id % 9 = 0")
            .await
            .expect("delete");
        fold(&mut expected, 20_001, 45_000);
        for id in (9..=45_000).step_by(9) {
            let e = expected.entry(id * 7 % 101).or_default();
            e.0 -= 1;
            e.1 -= id % 600;
        }
        expected.retain(|_, v| v.0 != 0);
        check(&c, &expected).await;
        // A number, then adaptive again.
        c.batch_execute("ALTER MATERIALIZED VIEW adaptive_v SET PARALLELISM = 1")
            .await
            .expect("alter");
        c.batch_execute("ALTER MATERIALIZED VIEW fixed_v SET PARALLELISM = ADAPTIVE")
            .await
            .expect("alter");
        let s = settings(&c).await;
        assert_eq!(s["adaptive_v"], (1, 4, false));
        assert_eq!(s["fixed_v"], (3, 4, true));
    });

    // More threads than the shards: an adaptive view runs on its 4 shards' worth.
    server.stop();
    server.start_again(&["--streaming-parallelism", "8"]);
    rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let s = settings(&c).await;
        assert_eq!(s["adaptive_v"], (1, 4, false));
        assert_eq!(s["fixed_v"], (4, 4, true));
        c.batch_execute(&insert(45_001, 60_000))
            .await
            .expect("insert");
        fold(&mut expected, 45_001, 60_000);
        check(&c, &expected).await;
    });
}
