//! Hostile and buggy clients against an in-process broker over raw sockets: each probe
//! must be refused cleanly (logged, counted) while other clients are served throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_broker::{Broker, BrokerConfig, Server, ServerHandle};
use sluice_log::{Log, LogOptions};

struct Running {
    addr: SocketAddr,
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
    let broker = Arc::new(Broker::new(log, cfg).unwrap());
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
