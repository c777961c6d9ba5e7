//! `sluice run` with `kind = "kafka"` sources and sinks against a real `sluice serve`:
//! exact windows through Kafka in and out, bad events on the late topic, and a bounded
//! restart that loses no window while the group's committed offsets advance.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{SluiceServer, create_topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

const KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// Produces (key, value) records with Kafka's murmur2 partitioner and waits for all acks.
fn produce(bootstrap: &str, topic: &str, records: &[(String, String)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for (k, v) in records {
        p.send(BaseRecord::to(topic).key(k).payload(v)).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Event i: key KEYS[i % 4], ts = 2·i, v = i. Produced in ts order and each key lives in
/// one partition, so every partition is in event-time order: nothing is late.
fn events(range: std::ops::Range<i64>) -> Vec<(String, String)> {
    range
        .map(|i| {
            let k = KEYS[(i % 4) as usize];
            (
                k.to_string(),
                format!(r#"{{"ts": {}, "key": "{k}", "v": {i}}}"#, 2 * i),
            )
        })
        .collect()
}

/// Every record of `topic`, partition by partition in offset order.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Value> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut out = Vec::new();
    for p in md.topics()[0].partitions() {
        let (_, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next = 0;
        while next < high {
            assert!(Instant::now() < deadline, "reading {topic}-{}", p.id());
            if let Some(m) = c.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                next = m.offset() + 1;
                out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
            }
        }
    }
    out
}

fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

fn pipeline(dir: &Path, bootstrap: &str, group: &str, source: &str, sink: &str) -> String {
    let text = format!(
        r#"name = "kp"
[source]
kind = "kafka"
topic = "{source}"
bootstrap = "{bootstrap}"
group = "{group}"
event_time = "ts"
key = "key"
[watermark]
strategy = "bounded"
max_out_of_orderness_ms = 0
[window]
kind = "tumbling"
size_ms = 10
[[aggregate]]
op = "count"
[[aggregate]]
op = "sum"
field = "v"
[sink]
kind = "kafka"
topic = "{sink}"
bootstrap = "{bootstrap}"
[late]
kind = "kafka"
topic = "{sink}-late"
bootstrap = "{bootstrap}"
"#
    );
    let path = dir.join(format!("{group}.toml"));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn run(dir: &Path, pipeline: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(dir.join("run-data"))
        .args(["run", pipeline, "--progress-secs", "0"])
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "sluice run failed: {err}");
    err
}

/// A window line as (key, start, end, count, sum).
type Window = (String, i64, i64, i64, i64);

fn windows(vals: &[Value]) -> Vec<Window> {
    vals.iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap().to_string(),
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
                v["count"].as_i64().unwrap(),
                v["sum"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Events 0..20, tumbling 10 ms, worked out by hand: key a has ts 0,8 | 16 | 24 | 32
/// (v 0,4 | 8 | 12 | 16), b ts 2 | 10,18 | 26 | 34, c ts 4 | 12 | 20,28 | 36,
/// d ts 6 | 14 | 22 | 30,38.
fn expected() -> Vec<Window> {
    let rows = [
        ("a", 0, 2, 4),
        ("a", 10, 1, 8),
        ("a", 20, 1, 12),
        ("a", 30, 1, 16),
        ("b", 0, 1, 1),
        ("b", 10, 2, 14),
        ("b", 20, 1, 13),
        ("b", 30, 1, 17),
        ("c", 0, 1, 2),
        ("c", 10, 1, 6),
        ("c", 20, 2, 24),
        ("c", 30, 1, 18),
        ("d", 0, 1, 3),
        ("d", 10, 1, 7),
        ("d", 20, 1, 11),
        ("d", 30, 2, 34),
    ];
    rows.iter()
        .map(|(k, s, c, sum)| (k.to_string(), *s, s + 10, *c, *sum))
        .collect()
}

#[test]
fn kafka_source_to_kafka_sink_exact_windows_and_bad_events() {
    let tmp = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&tmp.path().join("broker"));
    let b = server.bootstrap();
    create_topic(&b, "clicks", 2);
    let mut input = events(0..20);
    input.insert(5, ("a".into(), "not json".into()));
    produce(&b, "clicks", &input);

    let p = pipeline(tmp.path(), &b, "g1", "clicks", "out1");
    let err = ok(&run(tmp.path(), &p));
    assert!(err.contains("events in          21 (1 bad"), "{err}");
    let mut got = windows(&read_topic(&b, "out1"));
    got.sort();
    assert_eq!(got, expected(), "{err}");

    let late = read_topic(&b, "out1-late");
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0]["raw"], "not json");
    assert!(
        late[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("bad event: not JSON"),
        "{late:?}"
    );
    let c = committed(&b, "g1", "clicks", 2);
    assert!(!c.is_empty(), "nothing committed: {err}");
    assert!(err.contains("committed offsets"), "{err}");

    // A source topic the cluster does not have is a clear error.
    let p = pipeline(tmp.path(), &b, "g2", "no-such-topic", "out2");
    let o = run(tmp.path(), &p);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("source topic no-such-topic"), "{err}");
}

#[test]
fn bounded_restart_loses_no_window_and_advances_group_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&tmp.path().join("broker"));
    let b = server.bootstrap();
    create_topic(&b, "clicks", 2);
    let p = pipeline(tmp.path(), &b, "g", "clicks", "out");

    produce(&b, "clicks", &events(0..12));
    let err1 = ok(&run(tmp.path(), &p));
    let c1 = committed(&b, "g", "clicks", 2);
    let first = read_topic(&b, "out").len();
    assert!(first > 0, "{err1}");
    assert!(
        c1.values().sum::<i64>() > 0,
        "run 1 committed {c1:?}: {err1}"
    );

    produce(&b, "clicks", &events(12..20));
    let err2 = ok(&run(tmp.path(), &p));
    let c2 = committed(&b, "g", "clicks", 2);
    for (part, o) in &c1 {
        assert!(c2[part] >= *o, "offsets went back: {c1:?} -> {c2:?}");
    }
    assert!(
        c2.values().sum::<i64>() > c1.values().sum::<i64>(),
        "offsets did not advance: {c1:?} -> {c2:?}\n{err1}\n{err2}"
    );
    // The last emission of every window is the complete one: nothing was lost.
    let all = windows(&read_topic(&b, "out"));
    assert!(all.len() > first);
    let mut last: BTreeMap<(String, i64), Window> = BTreeMap::new();
    for w in all {
        last.insert((w.0.clone(), w.1), w);
    }
    let got: Vec<_> = last.into_values().collect();
    assert_eq!(got, expected(), "{err1}\n{err2}");
}
