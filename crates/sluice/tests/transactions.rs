//! Kafka transactions with librdkafka (through the `rdkafka` crate) against a real
//! `sluice serve`: commit and abort visibility, the last stable offset, zombie fencing,
//! transaction timeouts, and transactional offsets.

mod common;

use std::time::{Duration, Instant};

use common::{SluiceServer, create_topic, plain_producer, read_all, reader, send, txn_producer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);

#[test]
fn commit_and_abort_are_visible_only_as_committed_to_read_committed_readers() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "tx", 2);
    let p = txn_producer(&b, "writer-1", &[]);

    p.begin_transaction().unwrap();
    for i in 0..10 {
        send(&p, "tx", i % 2, &format!("c1-{i}"));
    }
    p.commit_transaction(T).unwrap();

    p.begin_transaction().unwrap();
    for i in 0..6 {
        send(&p, "tx", i % 2, &format!("a-{i}"));
    }
    p.flush(T).unwrap();
    p.abort_transaction(T).unwrap();

    p.begin_transaction().unwrap();
    for i in 0..3 {
        send(&p, "tx", 1, &format!("c2-{i}"));
    }
    p.commit_transaction(T).unwrap();

    let mut committed = read_all(&reader(&b, "tx", 2, "read_committed"), 2, Duration::ZERO);
    committed.sort();
    let mut want: Vec<String> = (0..10)
        .map(|i| format!("c1-{i}"))
        .chain((0..3).map(|i| format!("c2-{i}")))
        .collect();
    want.sort();
    assert_eq!(
        committed, want,
        "read_committed sees exactly the committed records"
    );

    let mut all = read_all(&reader(&b, "tx", 2, "read_uncommitted"), 2, Duration::ZERO);
    all.sort();
    let mut want_all = want.clone();
    want_all.extend((0..6).map(|i| format!("a-{i}")));
    want_all.sort();
    assert_eq!(
        all, want_all,
        "read_uncommitted sees aborted records too, no markers"
    );

    // Markers take offsets: partition 1 holds 5 + 3 + 3 records and 3 markers.
    let c = reader(&b, "tx", 2, "read_uncommitted");
    let (lo, hi) = c.fetch_watermarks("tx", 1, T).unwrap();
    assert_eq!((lo, hi), (0, 14));
}

#[test]
fn an_open_transaction_holds_back_read_committed_readers_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "lso", 1);
    let plain = plain_producer(&b);
    send(&plain, "lso", 0, "before");
    plain.flush(T).unwrap();

    let p = txn_producer(&b, "slow-writer", &[]);
    p.begin_transaction().unwrap();
    send(&p, "lso", 0, "in-txn");
    p.flush(T).unwrap();
    // Written after the transaction's first record: above the last stable offset.
    send(&plain, "lso", 0, "after");
    plain.flush(T).unwrap();

    let rc = reader(&b, "lso", 1, "read_committed");
    // librdkafka's watermark query carries the consumer's isolation level: a read_committed
    // consumer's "end" is the last stable offset (what a bounded kafka source stops at).
    assert_eq!(
        rc.fetch_watermarks("lso", 0, T).unwrap(),
        (0, 1),
        "read_committed: the end is the open transaction's first offset"
    );
    assert_eq!(
        read_all(&rc, 1, Duration::from_millis(500)),
        vec!["before"],
        "nothing past the open transaction's first offset"
    );
    let ru = reader(&b, "lso", 1, "read_uncommitted");
    assert_eq!(ru.fetch_watermarks("lso", 0, T).unwrap(), (0, 3));
    assert_eq!(
        read_all(&ru, 1, Duration::ZERO),
        vec!["before", "in-txn", "after"]
    );

    p.commit_transaction(T).unwrap();
    // The same read_committed consumer goes on past the committed transaction.
    assert_eq!(
        read_all(&rc, 1, Duration::from_millis(200)),
        vec!["in-txn", "after"]
    );
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "fence", 1);
    let zombie = txn_producer(&b, "shared-id", &[]);
    zombie.begin_transaction().unwrap();
    send(&zombie, "fence", 0, "zombie-1");
    zombie.flush(T).unwrap();

    // The new instance's init aborts the zombie's open transaction and fences it.
    let fresh = txn_producer(&b, "shared-id", &[]);
    fresh.begin_transaction().unwrap();
    send(&fresh, "fence", 0, "fresh-1");
    fresh.commit_transaction(T).unwrap();

    send(&zombie, "fence", 0, "zombie-2");
    let _ = zombie.flush(Duration::from_secs(10));
    let err = zombie
        .commit_transaction(T)
        .expect_err("the zombie's commit must fail");
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("fenced") || text.contains("epoch"),
        "expected a fencing error, got {text}"
    );
    assert_eq!(
        read_all(&reader(&b, "fence", 1, "read_committed"), 1, Duration::ZERO),
        vec!["fresh-1"]
    );
}

#[test]
fn an_abandoned_transaction_times_out_and_the_stable_offset_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "abandon", 1);
    let p = txn_producer(
        &b,
        "forgetful",
        &[
            ("transaction.timeout.ms", "2000"),
            ("message.timeout.ms", "2000"),
        ],
    );
    p.begin_transaction().unwrap();
    send(&p, "abandon", 0, "never-committed");
    p.flush(T).unwrap();
    let plain = plain_producer(&b);
    send(&plain, "abandon", 0, "later");
    plain.flush(T).unwrap();

    // The coordinator aborts after 2 s; the committed reader then reaches "later".
    let rc = reader(&b, "abandon", 1, "read_committed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.contains(&"later".to_string()) {
        assert!(Instant::now() < deadline, "LSO never moved: {seen:?}");
        seen.extend(read_all(&rc, 1, Duration::from_millis(100)));
    }
    assert_eq!(seen, vec!["later"], "the aborted record is never delivered");
    assert!(
        p.commit_transaction(T).is_err(),
        "the timed-out producer was fenced"
    );
}

#[test]
fn offsets_sent_in_a_transaction_become_visible_at_commit_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "src", 1);
    create_topic(&b, "dst", 1);
    let group = "copier";
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let committed_offset = |c: &BaseConsumer| -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("src", 0);
        match c.committed_offsets(tpl, T).unwrap().elements()[0].offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    };
    let p = txn_producer(&b, "copier-1", &[]);
    let meta = consumer.group_metadata().unwrap();

    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("src", 0, Offset::Offset(5))
        .unwrap();
    p.begin_transaction().unwrap();
    send(&p, "dst", 0, "out-1");
    p.send_offsets_to_transaction(&offsets, &meta, T).unwrap();
    p.flush(T).unwrap();
    p.abort_transaction(T).unwrap();
    assert_eq!(committed_offset(&consumer), None, "aborted: no offset");

    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("src", 0, Offset::Offset(7))
        .unwrap();
    p.begin_transaction().unwrap();
    send(&p, "dst", 0, "out-2");
    p.send_offsets_to_transaction(&offsets, &meta, T).unwrap();
    p.commit_transaction(T).unwrap();
    assert_eq!(committed_offset(&consumer), Some(7));
}
