//! Hostile and buggy clients against an in-process broker over raw sockets: each probe
//! must be refused cleanly (logged, counted) while other clients are served throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_broker::{Broker, BrokerConfig, Server, ServerHandle};
use sluice_log::{Log, LogOptions};

struct Running {
    addr: SocketAddr,
    log: Arc<Log>,
    broker: Arc<Broker>,
    handle: ServerHandle,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn start(tune: impl FnOnce(&mut BrokerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Log::open(
            dir.path(),
            LogOptions {
                background: false,
                ..LogOptions::default()
            },
        )
        .unwrap(),
    );
    let mut cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    };
    tune(&mut cfg);
    let broker = Arc::new(Broker::new(log.clone(), cfg).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, handle) = rt.block_on(async {
        let server = Server::bind(broker.clone()).await.unwrap();
        let (addr, handle, _join) = server.spawn().unwrap();
        (addr, handle)
    });
    Running {
        addr,
        log,
        broker,
        handle,
        _rt: rt,
        _dir: dir,
    }
}

/// An ApiVersions v3 request frame with its size prefix.
fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    let mut body = BytesMut::new();
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::ApiVersions as i16;
    header.request_api_version = 3;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("probe"));
    header.encode(&mut body, 2).unwrap();
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = StrBytes::from_static_str("probe");
    req.client_software_version = StrBytes::from_static_str("1");
    req.encode(&mut body, 3).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Send an ApiVersions request on a new connection and read the answer's correlation id.
fn served(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(&api_versions_frame(77)).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).is_ok() && body[..4] == 77i32.to_be_bytes()
}

/// Whether the broker closed the connection (read returns end of file) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
        || matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[test]
fn stalled_large_frames_hold_a_bounded_budget_and_small_requests_pass() {
    let r = start(|c| {
        c.max_request_bytes = 100 * 1024 * 1024;
        c.queued_max_request_bytes = 200 * 1024 * 1024;
        c.request_read_timeout_ms = 1500;
    });
    // 20 connections announce 90 MB frames and send a few bytes only: at most two fit the
    // budget, the rest wait without reading, and nobody allocates 90 MB up front.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(r.addr).unwrap();
        s.write_all(&(90_000_000i32).to_be_bytes()).unwrap();
        s.write_all(&[0u8; 100]).unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        served(r.addr),
        "small requests are served beside stalled frames"
    );
    let buffered = sluice_broker::testing::request_bytes_buffered(&r.broker);
    assert!(
        buffered <= 2 * 64 * 1024,
        "two stalled frames fit the budget and read what arrived; the others wait: {buffered} bytes buffered"
    );
    // The stalled frames are closed after request_read_timeout_ms, freeing the budget.
    let start = Instant::now();
    for s in &mut stalled[..2] {
        assert!(
            closed_within(s, Duration::from_secs(10)),
            "a stalled frame is closed"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(r.broker.refusals().idle_or_stalled >= 2);
    assert!(served(r.addr));
}

#[test]
fn connections_over_the_per_ip_cap_are_closed_on_accept() {
    let r = start(|c| c.max_connections_per_ip = 3);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(r.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = TcpStream::connect(r.addr).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(5)),
        "the 4th connection is closed"
    );
    assert_eq!(r.broker.refusals().connection_limit, 1);
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        served(r.addr),
        "slots are given back when connections close"
    );
}

#[test]
fn idle_connections_are_closed() {
    let r = start(|c| c.connections_max_idle_ms = 300);
    let mut s = TcpStream::connect(r.addr).unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert_eq!(r.broker.refusals().idle_or_stalled, 1);
}

#[test]
fn an_oversized_or_negative_size_prefix_closes_only_that_connection() {
    let r = start(|c| c.max_request_bytes = 1024 * 1024);
    for len in [i32::MIN, -1, 1024 * 1024 + 1, i32::MAX] {
        let mut s = TcpStream::connect(r.addr).unwrap();
        s.write_all(&len.to_be_bytes()).unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(5)), "size {len}");
    }
    assert_eq!(r.broker.refusals().bad_request, 4);
    assert!(served(r.addr));
}

/// Send one request (header v1/v2 as the API version needs) and return the response body
/// after its header.
fn roundtrip<R: Encodable>(addr: SocketAddr, key: ApiKey, version: i16, req: &R) -> bytes::Bytes {
    let mut body = BytesMut::new();
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = 9;
    header.client_id = Some(StrBytes::from_static_str("probe"));
    header
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    let mut resp = bytes::Bytes::from(resp);
    kafka_protocol::messages::ResponseHeader::decode(
        &mut resp,
        key.response_header_version(version),
    )
    .unwrap();
    resp
}

/// Records bytes per partition of a Fetch v11 of every partition of `topic` from 0.
fn fetch_sizes(r: &Running, topic: &str, partitions: i32, max_bytes: i32) -> Vec<usize> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    let mut req = FetchRequest::default();
    req.max_wait_ms = 0;
    req.min_bytes = 1;
    req.max_bytes = max_bytes;
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_string()));
    for p in 0..partitions {
        let mut fp = FetchPartition::default();
        fp.partition = p;
        fp.fetch_offset = 0;
        fp.partition_max_bytes = i32::MAX;
        t.partitions.push(fp);
    }
    req.topics.push(t);
    let mut body = roundtrip(r.addr, ApiKey::Fetch, 11, &req);
    let resp = FetchResponse::decode(&mut body, 11).unwrap();
    resp.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
        .collect()
}

/// A topic whose partitions each hold `batches` batches of one `value_len`-byte record.
fn big_topic(r: &Running, name: &str, partitions: i32, batches: usize, value_len: usize) {
    let mut c = std::collections::BTreeMap::new();
    c.insert("fsync".to_string(), "never".to_string());
    r.log.create_topic(name, partitions, c).unwrap();
    let value = vec![b'v'; value_len];
    for p in 0..partitions {
        let part = r.log.partition(name, p).unwrap();
        for _ in 0..batches {
            let mut b = sluice_log::BatchBuilder::new();
            b.push(0, None, Some(&value), &[]);
            part.append(&mut b.build().unwrap()).unwrap();
        }
    }
}

#[test]
fn fetch_respects_the_request_max_bytes_beyond_the_first_batch() {
    let r = start(|_| {});
    big_topic(&r, "big", 3, 2, 600_000);
    let sizes = fetch_sizes(&r, "big", 3, 1_000_000);
    let total: usize = sizes.iter().sum();
    // The first batch may exceed the limit alone; nothing else may join it past the limit.
    assert!(sizes[0] > 600_000 && total <= 1_000_000, "{sizes:?}");
    let sizes = fetch_sizes(&r, "big", 3, 2_000_000);
    assert!(sizes.iter().sum::<usize>() <= 2_000_000, "{sizes:?}");
    assert!(
        sizes[0] > 1_200_000 && sizes[1] > 600_000,
        "three 600 KB batches fit 2 MB: {sizes:?}"
    );
}

#[test]
fn fetch_max_bytes_is_capped_at_fetch_max_bytes() {
    let r = start(|_| {});
    // 64 partitions x 1 MB: a fetch asking for 2 GiB gets at most Kafka's 55 MiB.
    big_topic(&r, "huge", 64, 1, 1_000_000);
    let total: usize = fetch_sizes(&r, "huge", 64, i32::MAX).iter().sum();
    assert!(total <= 55 * 1024 * 1024, "{total}");
    assert!(total > 50 * 1024 * 1024, "{total}");
}

#[test]
fn an_array_claiming_two_billion_elements_is_refused_before_decoding() {
    let r = start(|_| {});
    // Metadata v1: header (key 3, version 1, correlation id, client id "p"), then a topics
    // array claiming 2^31 - 1 elements in a 21-byte frame. kafka-protocol alone would
    // reserve ~150 GB for it.
    let mut body = vec![0, 3, 0, 1, 0, 0, 0, 5, 0, 1, b'p'];
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    body.extend_from_slice(&[0u8; 6]);
    let mut s = TcpStream::connect(r.addr).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert_eq!(r.broker.refusals().bad_request, 1);
    assert!(served(r.addr), "the broker serves on");
}

fn overrides(r: &Running, topic: &str) -> std::collections::BTreeMap<String, String> {
    r.log.topic(topic).unwrap().meta().configs
}

#[test]
fn alter_configs_replaces_and_incremental_appends_to_list_configs() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::incremental_alter_configs_request as inc;
    use kafka_protocol::messages::{
        AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
    };
    let r = start(|_| {});
    let mut c = std::collections::BTreeMap::new();
    c.insert("retention.ms".to_string(), "1000".to_string());
    r.log.create_topic("cfg", 1, c).unwrap();
    let alter = |kv: &[(&str, &str)], validate_only: bool| {
        let mut res = AlterConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = StrBytes::from_static_str("cfg");
        for (k, v) in kv {
            let mut a = AlterableConfig::default();
            a.name = StrBytes::from_string(k.to_string());
            a.value = Some(StrBytes::from_string(v.to_string()));
            res.configs.push(a);
        }
        let mut req = AlterConfigsRequest::default();
        req.resources.push(res);
        req.validate_only = validate_only;
        let mut body = roundtrip(r.addr, ApiKey::AlterConfigs, 1, &req);
        AlterConfigsResponse::decode(&mut body, 1)
            .unwrap()
            .responses[0]
            .error_code
    };
    // Replace semantics: the overrides become exactly what was sent; Kafka configs that
    // mean nothing on one node are accepted.
    assert_eq!(
        alter(
            &[("min.insync.replicas", "2"), ("segment.ms", "5000")],
            false
        ),
        0
    );
    let want: std::collections::BTreeMap<String, String> =
        [("min.insync.replicas", "2"), ("segment.ms", "5000")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(overrides(&r, "cfg"), want);
    assert_ne!(
        alter(&[("segment.ms", "soon")], false),
        0,
        "a bad value is refused"
    );
    assert_eq!(alter(&[("retention.ms", "5")], true), 0, "validate_only");
    assert_eq!(overrides(&r, "cfg"), want, "nothing changed");

    let incremental = |name: &str, op: i8, value: &str| {
        let mut res = inc::AlterConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = StrBytes::from_static_str("cfg");
        let mut a = inc::AlterableConfig::default();
        a.name = StrBytes::from_string(name.to_string());
        a.config_operation = op;
        a.value = Some(StrBytes::from_string(value.to_string()));
        res.configs.push(a);
        let mut req = IncrementalAlterConfigsRequest::default();
        req.resources.push(res);
        let mut body = roundtrip(r.addr, ApiKey::IncrementalAlterConfigs, 1, &req);
        IncrementalAlterConfigsResponse::decode(&mut body, 1)
            .unwrap()
            .responses[0]
            .error_code
    };
    assert_eq!(incremental("cleanup.policy", 2, "compact"), 0, "APPEND");
    assert_eq!(overrides(&r, "cfg")["cleanup.policy"], "delete,compact");
    assert_eq!(incremental("cleanup.policy", 3, "delete"), 0, "SUBTRACT");
    assert_eq!(overrides(&r, "cfg")["cleanup.policy"], "compact");
    assert_ne!(
        incremental("segment.ms", 2, "1"),
        0,
        "APPEND on a non-list config"
    );
}

/// A Produce v9 of one small batch to `topic`-0; returns the partition's error code.
fn produce_code(r: &Running, topic: &str) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    let mut b = sluice_log::BatchBuilder::new();
    b.push(0, Some(b"k"), Some(b"forged"), &[]);
    let mut pd = PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(bytes::Bytes::from(b.build().unwrap()));
    let mut td = TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.to_string()));
    td.partition_data.push(pd);
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5000;
    req.topic_data.push(td);
    let mut body = roundtrip(r.addr, ApiKey::Produce, 9, &req);
    let resp = ProduceResponse::decode(&mut body, 9).unwrap();
    resp.responses[0].partition_responses[0].error_code
}

#[test]
fn clients_cannot_produce_to_the_internal_topics() {
    let r = start(|_| {});
    r.log.create_topic("plain", 1, Default::default()).unwrap();
    assert_eq!(produce_code(&r, "plain"), 0);
    for t in ["__consumer_offsets", "__transaction_state"] {
        let before = r.log.partition(t, 0).unwrap().log_end_offset();
        assert_eq!(produce_code(&r, t), 17, "{t}: INVALID_TOPIC_EXCEPTION");
        assert_eq!(r.log.partition(t, 0).unwrap().log_end_offset(), before);
    }
}

#[test]
fn an_append_by_another_writer_of_the_log_wakes_a_parked_fetch() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    let r = start(|_| {});
    r.log.create_topic("out", 1, Default::default()).unwrap();
    let addr = r.addr;
    let fetch = std::thread::spawn(move || {
        let mut req = FetchRequest::default();
        // Far longer than the test: only a wake-up returns data.
        req.max_wait_ms = 120_000;
        req.min_bytes = 1;
        req.max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("out"));
        let mut fp = FetchPartition::default();
        fp.partition = 0;
        fp.partition_max_bytes = 1 << 20;
        t.partitions.push(fp);
        req.topics.push(t);
        let mut body = roundtrip(addr, ApiKey::Fetch, 11, &req);
        let resp = FetchResponse::decode(&mut body, 11).unwrap();
        resp.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, |b| b.len())
    });
    // Let the fetch park, then append as a pipeline's topic sink does: straight to the
    // broker's log, not through Produce.
    std::thread::sleep(Duration::from_millis(300));
    let mut b = sluice_log::BatchBuilder::new();
    b.push(0, None, Some(b"window result"), &[]);
    r.log
        .partition("out", 0)
        .unwrap()
        .append(&mut b.build().unwrap())
        .unwrap();
    assert!(
        fetch.join().unwrap() > 0,
        "the parked fetch returned the record"
    );
}
