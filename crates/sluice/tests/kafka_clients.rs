//! kcat, kafka-python, KafkaJS and raw protocol frames against a real `sluice serve`
//! process.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::{SluiceServer, kcat};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

#[test]
fn kcat_metadata_produce_consume_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start_with(&dir.path().join("data"), &["--default-partitions", "2"]);
    let b = server.bootstrap();
    let input: String = (0..500).map(|i| format!("k{i}:v{i}\n")).collect();
    kcat(&["-b", &b, "-P", "-t", "kc", "-K:"], Some(&input));
    let meta = kcat(&["-b", &b, "-L", "-J"], None);
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["brokers"][0]["name"], b.as_str());
    assert_eq!(meta["brokers"][0]["id"], 0);
    let topic = meta["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "kc")
        .expect("auto-created topic");
    assert_eq!(topic["partitions"].as_array().unwrap().len(), 2);
    let out = kcat(
        &["-b", &b, "-C", "-t", "kc", "-e", "-q", "-f", "%k=%s\n"],
        None,
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<String> = (0..500).map(|i| format!("k{i}=v{i}")).collect();
    want.sort_unstable();
    assert_eq!(lines, want);
    // A consumer group reads everything, commits, and a second run sees nothing new.
    let out = kcat(
        &[
            "-b",
            &b,
            "-G",
            "kg",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\n",
            "kc",
        ],
        None,
    );
    assert_eq!(out.lines().count(), 500);
    kcat(&["-b", &b, "-P", "-t", "kc"], Some("late-1\nlate-2\n"));
    let out = kcat(
        &["-b", &b, "-G", "kg", "-e", "-q", "-f", "%s\n", "kc"],
        None,
    );
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    assert_eq!(
        got,
        vec!["late-1", "late-2"],
        "resumes after the committed offsets"
    );
}

/// Run a script of tests/python against a fresh `sluice serve`.
fn run_python(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(&path)
        .arg(server.bootstrap())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{script} failed (scripts/test installs kafka-python):\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
}

#[test]
fn kafka_python_round_trip() {
    run_python("kafka_python_roundtrip.py");
}

#[test]
fn kafka_python_transactions_commit_abort_and_offsets() {
    run_python("kafka_python_transactions.py");
}

/// KafkaJS (npm `kafkajs`, installed into tests/node by scripts/test): admin with
/// AlterConfigs, a gzip idempotent producer, a committing consumer group, transactions.
#[test]
fn kafkajs_round_trip_configs_groups_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let node_dir = format!("{}/tests/node", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(format!("{node_dir}/kafkajs_roundtrip.mjs"))
        .arg(server.bootstrap())
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "kafkajs_roundtrip.mjs failed (scripts/test runs npm ci in {node_dir}):\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
}

fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = 7;
    h.client_id = Some(StrBytes::from_static_str("raw-test"));
    h.encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

fn roundtrip(stream: &mut TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
    stream.write_all(bytes).ok()?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

fn connect(server: &SluiceServer) -> TcpStream {
    let s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn closed(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn bad_requests_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        SluiceServer::start_with(&dir.path().join("data"), &["--max-request-bytes", "100000"]);
    let mut healthy = connect(&server);
    let api_versions = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(roundtrip(&mut healthy, &api_versions).is_some());

    // Oversized request.
    let mut c = connect(&server);
    c.write_all(&200_000_000i32.to_be_bytes()).unwrap();
    assert!(closed(&mut c), "oversized request closes the connection");
    // Unknown API key.
    let mut c = connect(&server);
    c.write_all(&[0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0, 0])
        .unwrap();
    assert!(closed(&mut c));
    // Garbage body after a valid Metadata v12 header.
    let mut c = connect(&server);
    let mut f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
    f.truncate(f.len() - 2);
    f.extend_from_slice(&[0xff; 9]);
    let len = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&len.to_be_bytes());
    c.write_all(&f).unwrap();
    assert!(closed(&mut c), "malformed body closes the connection");
    // An array count of i32::MAX in a tiny Metadata v0 request (kafka-protocol reserves
    // count x element size up front): the connection closes, the broker lives on.
    let mut c = connect(&server);
    c.write_all(&[
        0, 0, 0, 14, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff,
    ])
    .unwrap();
    assert!(closed(&mut c), "huge array count closes the connection");
    // Unsupported version of a non-ApiVersions request.
    let mut c = connect(&server);
    let mut f = frame(ApiKey::Metadata, 1, &MetadataRequest::default());
    f[6..8].copy_from_slice(&99i16.to_be_bytes());
    c.write_all(&f).unwrap();
    assert!(closed(&mut c));
    // ApiVersions of an unknown version is answered (v0) with UNSUPPORTED_VERSION.
    let mut c = connect(&server);
    let mut f = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    f[6..8].copy_from_slice(&99i16.to_be_bytes());
    let resp = roundtrip(&mut c, &f).expect("answered");
    assert_eq!(&resp[0..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(
        i16::from_be_bytes([resp[4], resp[5]]),
        35,
        "UNSUPPORTED_VERSION"
    );

    // A produce with a bad CRC gets CORRUPT_MESSAGE and nothing is stored.
    let mut b = sluice_log::BatchBuilder::new();
    b.push(0, Some(b"k"), Some(b"v"), &[]);
    let mut batch = b.build().unwrap();
    let n = batch.len();
    batch[n - 1] ^= 0xff;
    let mut pd = PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(batch.into());
    let mut td = TopicProduceData::default();
    td.name = TopicName(StrBytes::from_static_str("crc"));
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5000;
    req.topic_data = vec![td];
    // Create the topic first (Metadata auto-creates).
    let mut md = MetadataRequest::default();
    let mut t = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    t.name = Some(TopicName(StrBytes::from_static_str("crc")));
    md.topics = Some(vec![t]);
    md.allow_auto_topic_creation = true;
    assert!(roundtrip(&mut healthy, &frame(ApiKey::Metadata, 12, &md)).is_some());
    let resp = roundtrip(&mut healthy, &frame(ApiKey::Produce, 9, &req)).expect("produce answered");
    let mut body = bytes::Bytes::from(resp);
    use kafka_protocol::protocol::Decodable;
    let _header = kafka_protocol::messages::ResponseHeader::decode(
        &mut body,
        ApiKey::Produce.response_header_version(9),
    )
    .unwrap();
    let pr = kafka_protocol::messages::ProduceResponse::decode(&mut body, 9).unwrap();
    assert_eq!(
        pr.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    // The healthy connection and the broker carry on.
    assert!(roundtrip(&mut healthy, &api_versions).is_some());
    let out = kcat(
        &["-b", &server.bootstrap(), "-C", "-t", "crc", "-e", "-q"],
        None,
    );
    assert_eq!(out, "", "nothing of the corrupt batch was stored");
    let log = server.log_text();
    assert!(
        log.contains("closing connection from"),
        "reasons are logged: {log}"
    );
}

fn sluice_cli(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    common::run_sluice(args, stdin.map(str::as_bytes))
}

fn ok_out(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn cli_against_a_broker_topics_produce_consume_groups() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    let bs = ["--bootstrap", b.as_str()];
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut all: Vec<&str> = bs.to_vec();
        all.extend_from_slice(args);
        sluice_cli(&all, stdin)
    };
    ok_out(run(
        &[
            "topic",
            "create",
            "cli",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    ));
    let input: String = (0..300).map(|i| format!("k{i}:v{i}\n")).collect();
    ok_out(run(
        &["produce", "cli", "--key-separator", ":"],
        Some(&input),
    ));
    let out = ok_out(run(
        &[
            "consume",
            "cli",
            "--from-beginning",
            "--format",
            "%p %k %v\\n",
        ],
        None,
    ));
    assert_eq!(out.lines().count(), 300);
    for line in out.lines() {
        let mut f = line.split(' ');
        let (p, k) = (f.next().unwrap(), f.next().unwrap());
        // murmur2, as a Java producer would place the key.
        assert_eq!(
            p.parse::<i32>().unwrap(),
            sluice_log::partition_for_key(k.as_bytes(), 3),
            "{line}"
        );
    }
    let desc = ok_out(run(&["topic", "describe", "cli"], None));
    assert!(desc.contains("*retention.ms=3600000"), "{desc}");
    let list = ok_out(run(&["topic", "list"], None));
    assert!(list.contains("cli\tpartitions=3"), "{list}");
    // A group that consumed 120 of 300 records of a one-partition topic has lag 180.
    ok_out(run(&["topic", "create", "lagt", "--partitions", "1"], None));
    ok_out(run(&["produce", "lagt"], Some(&input)));
    kcat(
        &[
            "-b",
            &b,
            "-G",
            "lagging",
            "-o",
            "beginning",
            "-c",
            "120",
            "-q",
            "-f",
            "",
            "lagt",
        ],
        None,
    );
    let mut described = String::new();
    for _ in 0..50 {
        described = ok_out(run(&["group", "describe", "lagging"], None));
        if described.contains("total lag 180") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(described.contains("total lag 180"), "{described}");
    // Reset is refused while a member is active, then works once it is gone.
    let mut member = Command::new("kcat")
        .args(["-b", &b, "-G", "lagging", "-q", "lagt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut refused = String::new();
    for _ in 0..100 {
        let o = run(
            &[
                "group",
                "reset-offsets",
                "lagging",
                "--topic",
                "lagt",
                "--to-earliest",
            ],
            None,
        );
        refused = String::from_utf8_lossy(&o.stderr).to_string();
        if !o.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused.contains("active member"), "{refused}");
    member.kill().unwrap();
    member.wait().unwrap();
    // SIGKILLed member: wait for its session to expire (kcat's default 45 s is long, so
    // the group is deleted instead of waited on: rdkafka leaves nothing behind on kill).
    let mut reset = String::new();
    for _ in 0..700 {
        let o = run(
            &[
                "group",
                "reset-offsets",
                "lagging",
                "--topic",
                "lagt",
                "--to-latest",
            ],
            None,
        );
        if o.status.success() {
            reset = String::from_utf8(o.stdout).unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reset.contains("lagging lagt-0 -> 300"),
        "reset after the member's session expired: {reset}"
    );
    let described = ok_out(run(&["group", "describe", "lagging"], None));
    assert!(described.contains("total lag 0"), "{described}");
    let o = sluice_cli(&["group", "list"], None);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--bootstrap"));
}

/// One Fetch v12 on `stream` (partitions of topic "sess"): (partition, fetch offset).
fn session_fetch(
    stream: &mut TcpStream,
    session_id: i32,
    epoch: i32,
    parts: &[(i32, i64)],
    forgotten: &[i32],
) -> kafka_protocol::messages::FetchResponse {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;
    let mut req = FetchRequest::default();
    req.max_wait_ms = 0;
    req.min_bytes = 0;
    req.max_bytes = 1 << 20;
    req.session_id = session_id;
    req.session_epoch = epoch;
    if !parts.is_empty() {
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("sess"));
        for &(p, offset) in parts {
            let mut fp = FetchPartition::default();
            fp.partition = p;
            fp.fetch_offset = offset;
            fp.partition_max_bytes = 1 << 20;
            t.partitions.push(fp);
        }
        req.topics.push(t);
    }
    if !forgotten.is_empty() {
        let mut f = ForgottenTopic::default();
        f.topic = TopicName(StrBytes::from_static_str("sess"));
        f.partitions = forgotten.to_vec();
        req.forgotten_topics_data.push(f);
    }
    let body = roundtrip(stream, &frame(ApiKey::Fetch, 12, &req)).expect("a Fetch answer");
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(12)).unwrap();
    FetchResponse::decode(&mut body, 12).unwrap()
}

/// (partition, record bytes) of every partition an answer lists.
fn listed(r: &kafka_protocol::messages::FetchResponse) -> Vec<(i32, usize)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |b| b.len())))
        .collect()
}

#[test]
fn fetch_sessions_answer_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    common::create_topic(&b, "sess", 2);
    let produce = |partition: &str, lines: &str| {
        kcat(
            &["-P", "-b", &b, "-t", "sess", "-p", partition],
            Some(lines),
        );
    };
    produce("0", "a\nb\nc\n");
    let mut s = connect(&server);
    // Epoch 0 opens a session: a full answer with both partitions.
    let r = session_fetch(&mut s, 0, 0, &[(0, 0), (1, 0)], &[]);
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert_ne!(id, 0, "a session is granted");
    let l = listed(&r);
    assert_eq!(l.len(), 2);
    assert!(l.iter().any(|&(p, n)| p == 0 && n > 0));
    // Epoch 1: partition 0 moved past its records, nothing else changed -> empty answer.
    let r = session_fetch(&mut s, id, 1, &[(0, 3)], &[]);
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert_eq!(listed(&r), vec![]);
    // New records in partition 1 only: the answer lists partition 1 alone.
    produce("1", "x\ny\n");
    let r = session_fetch(&mut s, id, 2, &[], &[]);
    let l = listed(&r);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].0, 1);
    assert!(l[0].1 > 0);
    // A repeated epoch is refused.
    let r = session_fetch(&mut s, id, 2, &[], &[]);
    assert_eq!(r.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    // Forget partition 1: its news no longer appear.
    let r = session_fetch(&mut s, id, 3, &[], &[1]);
    assert_eq!(r.error_code, 0);
    produce("1", "z\n");
    let r = session_fetch(&mut s, id, 4, &[], &[]);
    assert_eq!(listed(&r), vec![]);
    // Epoch -1 closes the session with a full answer; the id is then unknown.
    let r = session_fetch(&mut s, id, -1, &[(1, 0)], &[]);
    assert_eq!(r.session_id, 0);
    assert_eq!(listed(&r).len(), 1);
    let r = session_fetch(&mut s, id, 5, &[], &[]);
    assert_eq!(r.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
}
