//! Transaction admin APIs against a real `sluice serve`: `sluice txn list` / `txn describe`
//! (ListTransactions, DescribeTransactions) while an rdkafka transaction is open and after
//! it commits, plus DescribeProducers and filtered ListTransactions spoken directly.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{SluiceServer, create_topic, plain_producer, run_sluice, send, txn_producer};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, ListTransactionsRequest,
    ListTransactionsResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::producer::Producer;

const T: Duration = Duration::from_secs(30);

/// One request/response on a fresh connection.
fn call<Resp: Decodable>(addr: &str, key: ApiKey, version: i16, req: &impl Encodable) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = 42;
    h.client_id = Some(StrBytes::from_static_str("txn-admin-test"));
    h.encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&buf).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = Bytes::from(body);
    let rh = ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    assert_eq!(rh.correlation_id, 42);
    Resp::decode(&mut body, version).unwrap()
}

/// (partition, error code, [(producer id, epoch, last sequence, txn start offset)]).
type Producers = Vec<(i32, i16, Vec<(i64, i32, i32, i64)>)>;

fn describe_producers(addr: &str, topic: &str, partitions: &[i32]) -> Producers {
    let mut t = TopicRequest::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_indexes = partitions.to_vec();
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t];
    let resp: DescribeProducersResponse = call(addr, ApiKey::DescribeProducers, 0, &req);
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(resp.topics[0].name.as_str(), topic);
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.error_code,
                p.active_producers
                    .iter()
                    .map(|a| {
                        (
                            a.producer_id.0,
                            a.producer_epoch,
                            a.last_sequence,
                            a.current_txn_start_offset,
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

/// (transactional id, state) listed for these filters, and the unknown state filters.
fn list_transactions(
    addr: &str,
    version: i16,
    states: &[&str],
    duration_filter: i64,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut req = ListTransactionsRequest::default();
    req.state_filters = states
        .iter()
        .map(|s| StrBytes::from_string(s.to_string()))
        .collect();
    req.duration_filter = duration_filter;
    let resp: ListTransactionsResponse = call(addr, ApiKey::ListTransactions, version, &req);
    assert_eq!(resp.error_code, 0);
    (
        resp.transaction_states
            .iter()
            .map(|t| {
                (
                    t.transactional_id.to_string(),
                    t.transaction_state.to_string(),
                )
            })
            .collect(),
        resp.unknown_state_filters
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

fn sluice_ok(b: &str, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap", b];
    all.extend_from_slice(args);
    let out = run_sluice(&all, None);
    assert!(
        out.status.success(),
        "sluice {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `txn list` row of `tid` split into columns.
fn list_row(out: &str, tid: &str) -> Option<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(tid))
}

/// The value of `key:` in `txn describe` output.
fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key:?} in {out}"))
        .trim()
        .to_string()
}

#[test]
fn list_describe_and_producers_follow_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "adm", 2);

    // Two plain records first so the transaction does not start at offset 0.
    let plain = plain_producer(&b);
    send(&plain, "adm", 1, "plain-0");
    send(&plain, "adm", 1, "plain-1");
    plain.flush(T).unwrap();

    let p = txn_producer(&b, "admin-t1", &[("transaction.timeout.ms", "45000")]);

    // After InitProducerId: Empty, no start time, no partitions.
    let out = sluice_ok(&b, &["txn", "describe", "admin-t1"]);
    assert_eq!(field(&out, "state"), "Empty", "{out}");
    assert_eq!(field(&out, "start time"), "-", "{out}");
    assert_eq!(field(&out, "partitions"), "-", "{out}");

    p.begin_transaction().unwrap();
    for i in 0..3 {
        send(&p, "adm", 1, &format!("t-{i}"));
    }
    p.flush(T).unwrap();

    let out = sluice_ok(&b, &["txn", "list"]);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("TRANSACTIONAL ID  PRODUCER ID  STATE"),
        "{out}"
    );
    let row = list_row(&out, "admin-t1").unwrap_or_else(|| panic!("admin-t1 missing: {out}"));
    assert_eq!(row[2], "Ongoing", "{out}");
    let pid: i64 = row[1].parse().unwrap();

    let out = sluice_ok(&b, &["txn", "describe", "admin-t1"]);
    assert_eq!(field(&out, "transactional id"), "admin-t1", "{out}");
    assert_eq!(field(&out, "state"), "Ongoing", "{out}");
    assert_eq!(field(&out, "producer id"), pid.to_string(), "{out}");
    assert_eq!(field(&out, "timeout ms"), "45000", "{out}");
    assert_eq!(field(&out, "partitions"), "adm-1", "{out}");
    let start = field(&out, "start time");
    assert!(
        start.len() == 24 && start.ends_with('Z') && start.as_bytes()[10] == b'T',
        "ISO-8601 start time: {out}"
    );
    let epoch: i32 = field(&out, "epoch").parse().unwrap();

    // DescribeProducers: the open transaction starts after the two plain records.
    let producers = describe_producers(&b, "adm", &[0, 1, 7]);
    assert_eq!(producers[0], (0, 0, vec![]));
    let (idx, err, active) = &producers[1];
    assert_eq!((*idx, *err), (1, 0));
    let mine: Vec<_> = active.iter().filter(|a| a.0 == pid).collect();
    assert_eq!(mine, vec![&(pid, epoch, 2, 2)], "{active:?}");
    assert_eq!(
        producers[2],
        (7, 3, vec![]),
        "unknown partition: UNKNOWN_TOPIC_OR_PARTITION"
    );
    let unknown_topic = describe_producers(&b, "no-such-topic", &[0]);
    assert_eq!(unknown_topic[0].1, 3);

    // ListTransactions with state filters (v0) and a duration filter (v1).
    let (listed, unknown) = list_transactions(&b, 0, &["Ongoing", "Nope"], -1);
    assert_eq!(listed, vec![("admin-t1".into(), "Ongoing".into())]);
    assert_eq!(unknown, vec!["Nope".to_string()]);
    let (listed, unknown) = list_transactions(&b, 0, &["CompleteCommit"], -1);
    assert!(listed.is_empty() && unknown.is_empty(), "{listed:?}");
    std::thread::sleep(Duration::from_millis(5));
    let (listed, _) = list_transactions(&b, 1, &[], 0);
    assert_eq!(listed, vec![("admin-t1".into(), "Ongoing".into())]);
    let (listed, _) = list_transactions(&b, 1, &[], 3_600_000);
    assert!(listed.is_empty(), "not running for an hour: {listed:?}");

    p.commit_transaction(T).unwrap();

    // The commit completes (markers written): CompleteCommit, no partitions.
    let deadline = Instant::now() + T;
    loop {
        let out = sluice_ok(&b, &["txn", "list"]);
        let row = list_row(&out, "admin-t1").unwrap();
        if row[2] == "CompleteCommit" {
            assert_eq!(row[1], pid.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = sluice_ok(&b, &["txn", "describe", "admin-t1"]);
    assert_eq!(field(&out, "state"), "CompleteCommit", "{out}");
    assert_eq!(field(&out, "partitions"), "-", "{out}");
    let (listed, _) = list_transactions(&b, 0, &["CompleteCommit"], -1);
    assert_eq!(listed, vec![("admin-t1".into(), "CompleteCommit".into())]);
    let (listed, _) = list_transactions(&b, 1, &[], 0);
    assert!(listed.is_empty(), "no transaction is running: {listed:?}");

    // The commit marker closed the partition's open transaction.
    let producers = describe_producers(&b, "adm", &[1]);
    let mine: Vec<_> = producers[0].2.iter().filter(|a| a.0 == pid).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].3, -1, "{mine:?}");

    // An unknown id fails naming Kafka's error.
    let out = run_sluice(["--bootstrap", &b, "txn", "describe", "nope"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TRANSACTIONAL_ID_NOT_FOUND"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn txn_commands_report_an_unreachable_broker() {
    let out = run_sluice(["--bootstrap", "127.0.0.1:1", "txn", "list"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to 127.0.0.1:1"), "{err}");
}
