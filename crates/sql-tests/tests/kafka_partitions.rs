//! Partitions that appear while a reader runs are picked up and read from their beginning.
//!
//! Tansu 0.6 cannot add partitions to a topic (no CreatePartitions), and deleting and
//! re-creating a topic crashes librdkafka on Tansu's metadata. So the topic is created with
//! four partitions on a real broker, and the reader is shown only two of them through
//! `ReaderSpec::partition_view` until the test "adds" the other two. Everything else — the
//! broker, the fetches, the offsets — is real.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use freshet_connectors::decode::{Decoder, Format};
use freshet_connectors::kafka::{self, Include, KafkaConfig, ReaderSpec, SourceBatch, Startup};
use freshet_sql_tests::KafkaBroker;

type Seen = Arc<Mutex<BTreeMap<i32, Vec<i64>>>>;

fn wait_for(seen: &Seen, what: &str, pred: impl Fn(&BTreeMap<i32, Vec<i64>>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if pred(&seen.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; seen {:?}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn new_partitions_are_read_from_their_beginning() {
    let broker = KafkaBroker::start();
    broker.create_topic("grow", 4);
    for p in 0..4 {
        let msgs: Vec<Option<Vec<u8>>> = (0..5)
            .map(|i| Some(format!("{{\"v\": {}}}", p * 100 + i).into_bytes()))
            .collect();
        broker.produce("grow", Some(p), None, &msgs);
    }

    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, true),
        Field::new("p", DataType::Int32, true),
    ]));
    let added = Arc::new(AtomicBool::new(false));
    let added2 = added.clone();
    let spec = ReaderSpec {
        config: KafkaConfig {
            source_name: "grow".into(),
            topic: "grow".into(),
            properties: vec![("bootstrap.servers".into(), broker.addr())],
            // 'latest' would skip what is already there: partitions that appear later must
            // still be read from their beginning.
            startup: Startup::Earliest,
        },
        group_id: "freshet-test-grow".into(),
        relation: "grow".into(),
        decoder: Decoder::new(vec![("v".into(), DataType::Int64)], Format::Json),
        includes: vec![Include::Partition],
        schema,
        start: BTreeMap::new(),
        upsert_key: None,
        watermark: None,
        hold: None,
        partition_view: Some(Arc::new(move |parts: Vec<i32>| {
            if added2.load(Ordering::SeqCst) {
                parts
            } else {
                parts.into_iter().filter(|p| *p < 2).collect()
            }
        })),
    };
    let seen: Seen = Arc::default();
    let offsets: Arc<Mutex<BTreeMap<i32, i64>>> = Arc::default();
    let (seen2, offsets2) = (seen.clone(), offsets.clone());
    let sink = Box::new(move |b: SourceBatch| {
        let rows = b.chunk.rows().map_err(|e| e.to_string())?;
        let mut seen = seen2.lock().unwrap();
        for r in rows {
            let (ScalarValue::Int64(Some(v)), ScalarValue::Int32(Some(p))) = (&r[0], &r[1]) else {
                return Err(format!("unexpected row {r:?}"));
            };
            seen.entry(*p).or_default().push(*v);
        }
        offsets2.lock().unwrap().extend(b.offsets);
        Ok(())
    });
    let mut reader = kafka::spawn(spec, sink).expect("spawn reader");

    wait_for(&seen, "partitions 0 and 1", |s| {
        s.get(&0).map_or(0, Vec::len) == 5 && s.get(&1).map_or(0, Vec::len) == 5
    });
    reader
        .catch_up(Duration::from_secs(30))
        .expect("catch up on two partitions");
    assert_eq!(
        seen.lock().unwrap().keys().copied().collect::<Vec<_>>(),
        vec![0, 1],
        "hidden partitions must not be read"
    );

    // More data on an old partition, then two partitions "appear".
    broker.produce("grow", Some(1), None, &[Some(b"{\"v\": 105}".to_vec())]);
    added.store(true, Ordering::SeqCst);
    // The reader refreshes metadata every 5 s.
    wait_for(&seen, "partitions 2 and 3", |s| {
        s.get(&2).map_or(0, Vec::len) == 5 && s.get(&3).map_or(0, Vec::len) == 5
    });
    reader
        .catch_up(Duration::from_secs(30))
        .expect("catch up on four partitions");

    let seen = seen.lock().unwrap().clone();
    let want: BTreeMap<i32, Vec<i64>> = (0..4)
        .map(|p: i32| {
            let n = if p == 1 { 6 } else { 5 };
            (p, (0..n).map(|i| i64::from(p) * 100 + i).collect())
        })
        .collect();
    assert_eq!(seen, want, "every message exactly once, in partition order");
    let offsets = offsets.lock().unwrap().clone();
    assert_eq!(
        offsets,
        BTreeMap::from([(0, 5), (1, 6), (2, 5), (3, 5)]),
        "offsets handed to the engine cover the new partitions"
    );
    reader.stop();
}
