//! librdkafka (through the `rdkafka` crate) against a real `sluice serve` process.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{SluiceServer, create_topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// One delivery report: (key, partition, offset) or the error.
type Delivery = Result<(String, i32, i64), String>;

/// Records every delivery report.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<Delivery>>>);

impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let v = match r {
            Ok(m) => Ok((
                String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                m.partition(),
                m.offset(),
            )),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap().push(v);
    }
}

fn producer(bootstrap: &str, acks: &str, idempotent: bool) -> (BaseProducer<Acks>, Acks) {
    let acks_log = Acks::default();
    let p = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create_with_context(acks_log.clone())
        .unwrap();
    (p, acks_log)
}

fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

fn produce_n(p: &BaseProducer<Acks>, topic: &str, from: usize, n: usize) {
    for i in from..from + n {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        loop {
            match p.send(BaseRecord::to(topic).key(&key).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => {
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Poll until `want` records arrive (or panic after a timeout); returns key -> value.
fn consume_n(c: &BaseConsumer, want: usize) -> BTreeMap<String, String> {
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "got {} of {want} records",
            got.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            got.insert(
                String::from_utf8_lossy(m.key().unwrap()).to_string(),
                String::from_utf8_lossy(m.payload().unwrap()).to_string(),
            );
        }
    }
    got
}

#[test]
fn produce_acks_all_idempotent_and_acks_1_then_consume() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "orders", 3);
    let (p, acks) = producer(&b, "all", true);
    produce_n(&p, "orders", 0, 1000);
    let (p1, acks1) = producer(&b, "1", false);
    produce_n(&p1, "orders", 1000, 500);
    let all: Vec<_> = acks
        .0
        .lock()
        .unwrap()
        .iter()
        .chain(acks1.0.lock().unwrap().iter())
        .cloned()
        .collect();
    assert_eq!(all.len(), 1500);
    let mut per_partition: HashMap<i32, BTreeSet<i64>> = HashMap::new();
    for a in &all {
        let (key, partition, offset) = a.as_ref().expect("every record acknowledged");
        // librdkafka's default partitioner for keyed records is consistent_random (crc32);
        // whatever it picks, offsets per partition must be dense and unique.
        assert!(key.starts_with("key-"));
        assert!(
            per_partition.entry(*partition).or_default().insert(*offset),
            "duplicate offset"
        );
    }
    for offsets in per_partition.values() {
        let v: Vec<i64> = offsets.iter().copied().collect();
        assert_eq!(v, (0..v.len() as i64).collect::<Vec<_>>(), "dense offsets");
    }
    let c = consumer(&b, "orders-reader", &[]);
    c.subscribe(&["orders"]).unwrap();
    let got = consume_n(&c, 1500);
    for i in 0..1500 {
        assert_eq!(got[&format!("key-{i}")], format!("value-{i}"));
    }
}

fn assignment_of(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Poll both consumers until their assignments satisfy `pred`.
fn poll_until(cs: &[&BaseConsumer], what: &str, pred: impl Fn(&[BTreeSet<i32>]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for c in cs {
            if let Some(Err(e)) = c.poll(Duration::from_millis(50)) {
                eprintln!("poll: {e}");
            }
        }
        let a: Vec<_> = cs.iter().map(|c| assignment_of(c)).collect();
        if pred(&a) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: assignments stuck at {a:?}"
        );
    }
}

#[test]
fn consumer_group_rebalances_on_join_leave_and_member_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "events", 4);
    let all: BTreeSet<i32> = (0..4).collect();
    let a = consumer(&b, "grp", &[]);
    a.subscribe(&["events"]).unwrap();
    poll_until(&[&a], "single member owns all", |x| x[0] == all);
    // A second member joins: the partitions are split.
    let bc = consumer(&b, "grp", &[]);
    bc.subscribe(&["events"]).unwrap();
    poll_until(&[&a, &bc], "split between two", |x| {
        !x[0].is_empty()
            && !x[1].is_empty()
            && x[0].union(&x[1]).copied().collect::<BTreeSet<_>>() == all
            && x[0].is_disjoint(&x[1])
    });
    // It leaves cleanly: the first member gets everything back.
    bc.unsubscribe();
    drop(bc);
    poll_until(&[&a], "after leave", |x| x[0] == all);
    // A member in another process joins and is SIGKILLed: after its session times out
    // the survivor owns everything again.
    let mut kcat = std::process::Command::new("kcat")
        .args([
            "-b",
            &b,
            "-G",
            "grp",
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
            "-q",
            "events",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kcat (Debian package kcat) must be installed");
    poll_until(&[&a], "kcat member takes a share", |x| {
        !x[0].is_empty() && x[0] != all
    });
    kcat.kill().unwrap();
    kcat.wait().unwrap();
    poll_until(&[&a], "after SIGKILL of a member", |x| x[0] == all);
}

#[test]
fn committed_offsets_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "resume", 2);
    let (p, _) = producer(&b, "all", true);
    produce_n(&p, "resume", 0, 200);
    drop(p);
    {
        let c = consumer(&b, "resumer", &[]);
        c.subscribe(&["resume"]).unwrap();
        let got = consume_n(&c, 200);
        assert_eq!(got.len(), 200);
        c.commit_consumer_state(CommitMode::Sync).unwrap();
        let committed = c.committed(Duration::from_secs(10)).unwrap();
        let total: i64 = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                other => panic!("unexpected committed offset {other:?}"),
            })
            .sum();
        assert_eq!(total, 200);
        c.unsubscribe();
    }
    server.stop();
    server.restart();
    let (p, _) = producer(&b, "all", true);
    produce_n(&p, "resume", 200, 50);
    let c = consumer(&b, "resumer", &[]);
    c.subscribe(&["resume"]).unwrap();
    let got = consume_n(&c, 50);
    let keys: BTreeSet<usize> = got.keys().map(|k| k[4..].parse().unwrap()).collect();
    assert_eq!(
        keys,
        (200..250).collect(),
        "resumed exactly after the committed offsets"
    );
    // Nothing else arrives.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            panic!(
                "unexpected re-delivery of {:?}",
                m.key().map(String::from_utf8_lossy)
            );
        }
    }
    // An explicit partition list fetch sees the committed positions too.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("resume", 0);
    tpl.add_partition("resume", 1);
    let _ = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
}

#[test]
fn acknowledged_records_survive_broker_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "durable", 2);
    let (p, acks) = producer(&b, "all", true);
    let mut next = 0usize;
    let rounds = 4;
    for round in 0..rounds {
        // Produce continuously for a while, then SIGKILL the broker mid-stream.
        let until = Instant::now() + Duration::from_millis(300 + 200 * round as u64);
        while Instant::now() < until {
            let key = format!("key-{next}");
            let value = format!("value-{next}");
            if p.send(BaseRecord::to("durable").key(&key).payload(&value))
                .is_ok()
            {
                next += 1;
            }
            p.poll(Duration::from_millis(1));
        }
        server.kill();
        std::thread::sleep(Duration::from_millis(200));
        server.restart();
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let acked: Vec<(String, i32, i64)> = acks
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.clone().ok())
        .collect();
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
    // Read every partition back from the start.
    let c = consumer(&b, "checker", &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("durable", 0, Offset::Beginning)
        .unwrap();
    tpl.add_partition_offset("durable", 1, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let (_, hw0) = c
        .fetch_watermarks("durable", 0, Duration::from_secs(10))
        .unwrap();
    let (_, hw1) = c
        .fetch_watermarks("durable", 1, Duration::from_secs(10))
        .unwrap();
    let mut stored: HashMap<(i32, i64), String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (stored.len() as i64) < hw0 + hw1 {
        assert!(
            Instant::now() < deadline,
            "read {} of {}",
            stored.len(),
            hw0 + hw1
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            stored.insert(
                (m.partition(), m.offset()),
                String::from_utf8_lossy(m.key().unwrap()).to_string(),
            );
        }
    }
    for (key, partition, offset) in &acked {
        assert_eq!(
            stored.get(&(*partition, *offset)),
            Some(key),
            "acknowledged {key} at {partition}/{offset}"
        );
    }
    // Idempotence across restarts: no key is stored twice.
    let mut seen = BTreeSet::new();
    for key in stored.values() {
        assert!(seen.insert(key.clone()), "{key} stored twice");
    }
    eprintln!(
        "{rounds} SIGKILL rounds: {} acknowledged records verified, {} stored",
        acked.len(),
        stored.len()
    );
}

#[test]
fn compressed_batches_are_stored_as_sent_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = SluiceServer::start(&data);
    let b = server.bootstrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("z-{codec}");
        create_topic(&b, &topic, 1);
        let acks = Acks::default();
        let p: BaseProducer<Acks> = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("compression.type", codec)
            .set("linger.ms", "20")
            .create_with_context(acks.clone())
            .unwrap();
        for i in 0..200 {
            let v = format!("{codec}-value-{i}-{}", "x".repeat(100));
            p.send(BaseRecord::to(&topic).key(&format!("key-{i}")).payload(&v))
                .unwrap();
        }
        p.flush(Duration::from_secs(30)).unwrap();
        assert!(
            acks.0.lock().unwrap().iter().all(|r| r.is_ok()),
            "{codec}: delivery failed"
        );
        // librdkafka reads them back...
        let c = consumer(&b, &format!("z-reader-{codec}"), &[]);
        c.subscribe(&[&topic]).unwrap();
        let got = consume_n(&c, 200);
        assert_eq!(got["key-7"], format!("{codec}-value-7-{}", "x".repeat(100)));
        // ...and Sluice's own CLI decodes the stored batches (read-only, beside the server).
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(&data)
            .args([
                "consume",
                &topic,
                "--from-beginning",
                "--format",
                "%k=%v\\n",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 200, "{codec}");
        assert!(
            text.contains(&format!("key-199={codec}-value-199-")),
            "{codec}"
        );
    }
}

/// Member ids of a group, as DescribeGroups reports them.
fn member_ids(c: &BaseConsumer, group: &str) -> Vec<String> {
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap();
    list.groups()
        .iter()
        .flat_map(|g| g.members().iter().map(|m| m.id().to_string()))
        .collect()
}

#[test]
fn group_membership_survives_a_broker_restart_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "steady", 2);
    let all: BTreeSet<i32> = (0..2).collect();
    let c = consumer(&b, "steady-group", &[]);
    c.subscribe(&["steady"]).unwrap();
    poll_until(&[&c], "assigned", |x| x[0] == all);
    let before = member_ids(&c, "steady-group");
    assert_eq!(before.len(), 1);
    server.stop();
    server.restart();
    // The consumer reconnects and heartbeats; with the membership restored it keeps its
    // member id (a rebalance after UNKNOWN_MEMBER_ID would hand it a new one).
    let (p, _) = producer(&b, "all", true);
    produce_n(&p, "steady", 0, 20);
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < 20 {
        assert!(Instant::now() < deadline, "got {got} of 20 records");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => got += 1,
            // Transport errors while the broker was away are reported, then retried.
            Some(Err(e)) => eprintln!("poll: {e}"),
            None => {}
        }
    }
    assert_eq!(member_ids(&c, "steady-group"), before);
    assert_eq!(assignment_of(&c), all);
}
