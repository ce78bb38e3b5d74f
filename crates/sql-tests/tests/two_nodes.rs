//! Two Freshet processes split one topic's partitions (`--node 0/2`, `--node 1/2`, see
//! `docs/scale-out.md`): one 4-partition topic keyed by user, and on each node a view
//! grouped by that key. Each node must hold exactly the same query run over the events of
//! its own partitions (0 and 2, or 1 and 3), and together the whole; a `kill -9` of one
//! node mid-stream leaves the other untouched and the killed one resumes exactly.

use std::collections::BTreeMap;

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{KafkaBroker, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 4;
const USERS: i64 = 300;
const BATCHES: usize = 8;
const PER_BATCH: usize = 2_000;

/// Per user: plays and seconds watched.
type Fold = BTreeMap<i64, (i64, i64)>;

async fn per_user(conn: &str) -> Fold {
    let c = connect(conn).await.expect("connect");
    c.batch_execute("FLUSH").await.expect("flush");
    c.query("SELECT user_id, n, s::bigint FROM per_user", &[])
        .await
        .expect("per_user")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

async fn partitions_read(conn: &str) -> Vec<i32> {
    let c = connect(conn).await.expect("connect");
    let mut ps: Vec<i32> = c
        .query(
            "SELECT DISTINCT partition FROM freshet_catalog.source_partitions WHERE source_name = 'plays'",
            &[],
        )
        .await
        .expect("source_partitions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    ps.sort();
    ps
}

#[test]
fn two_nodes_split_a_topics_partitions_each_exact_for_its_own() {
    let seed: u64 = std::env::var("FRESHET_NODES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("seed {seed} (replay with FRESHET_NODES_SEED={seed})");
    let broker = KafkaBroker::start();
    broker.create_topic("plays", PARTITIONS as u32);
    let mut nodes = [
        TestServer::start_with_args(&["--node", "0/2", "--checkpoint-interval-ms", "200"]),
        TestServer::start_with_args(&["--node", "1/2", "--checkpoint-interval-ms", "200"]),
    ];
    let rt = freshet_sql_tests::runtime();
    for node in &nodes {
        rt.block_on(async {
            let c = connect(&node.conn_str()).await.expect("connect");
            c.batch_execute(&format!(
                "CREATE SOURCE plays (user_id BIGINT, title BIGINT, secs BIGINT)
                   WITH (connector = 'kafka', topic = 'plays', properties.bootstrap.server = '{}')
                   FORMAT PLAIN ENCODE JSON;
                 CREATE MATERIALIZED VIEW per_user AS
                   SELECT user_id, count(*) AS n, sum(secs) AS s FROM plays GROUP BY user_id;",
                broker.addr()
            ))
            .await
            .expect("setup");
        });
    }
    // The reference: per node, a fold over the events of its partitions.
    let mut reference = [Fold::new(), Fold::new()];
    let mut rng = StdRng::seed_from_u64(seed);
    let kill_after = rng.gen_range(1..BATCHES - 1);
    for batch in 0..BATCHES {
        let mut by_partition: Vec<Vec<Option<Vec<u8>>>> = vec![Vec::new(); PARTITIONS as usize];
        for _ in 0..PER_BATCH {
            let user = rng.gen_range(0..USERS);
            let secs = rng.gen_range(1..3600);
            // Keyed by user: the producer puts a user's plays in one partition.
            let p = (user % PARTITIONS as i64) as usize;
            by_partition[p].push(Some(
                format!(
                    r#"{{"user_id": {user}, "title": {}, "secs": {secs}}}"#,
                    rng.gen_range(0..50)
                )
                .into_bytes(),
            ));
            let e = reference[p % 2].entry(user).or_insert((0, 0));
            e.0 += 1;
            e.1 += secs;
        }
        for (p, payloads) in by_partition.iter().enumerate() {
            broker.produce("plays", Some(p as i32), None, payloads);
        }
        if batch == kill_after {
            // Node 1 dies mid-stream and comes back; node 0 goes on.
            let before = rt.block_on(per_user(&nodes[0].conn_str()));
            nodes[1].kill9_restart();
            let after = rt.block_on(per_user(&nodes[0].conn_str()));
            assert!(
                after
                    .iter()
                    .all(|(u, v)| before.get(u).is_none_or(|b| b.0 <= v.0)),
                "node 0 lost rows when node 1 was killed"
            );
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let got = rt.block_on(per_user(&node.conn_str()));
        assert_eq!(
            got.len(),
            reference[i].len(),
            "node {i}/2 holds the users of its partitions only"
        );
        assert_eq!(got, reference[i], "node {i}/2 equals its partitions' fold");
        assert!(
            got.keys().all(|u| (u % PARTITIONS as i64) % 2 == i as i64),
            "node {i}/2 holds a user of another node's partition"
        );
        let expected: Vec<i32> = (0..PARTITIONS).filter(|p| p % 2 == i as i32).collect();
        assert_eq!(
            rt.block_on(partitions_read(&node.conn_str())),
            expected,
            "node {i}/2 reads its partitions"
        );
    }
    let total: i64 = reference.iter().flat_map(|r| r.values()).map(|v| v.0).sum();
    assert_eq!(
        total,
        (BATCHES * PER_BATCH) as i64,
        "the two nodes hold every event once"
    );
}
