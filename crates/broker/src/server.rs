//! The TCP server: Kafka framing (4-byte size prefix), request header decoding, dispatch
//! and response encoding. A connection's requests are handled in order by one reader task;
//! a produce request's response may wait for its fdatasync while the reader goes on with
//! the next request (up to 16 outstanding), and a writer task sends responses strictly in
//! request order, as Kafka requires. A malformed frame, an unknown API key, an
//! unsupported version (except for ApiVersions, which answers with an error and the
//! supported ranges) or an oversized request closes that connection only, with a logged
//! reason; the broker and every other connection carry on.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api;
use crate::broker::Broker;

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    listener: TcpListener,
}

/// Handle to stop a running server from elsewhere.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    stop: watch::Sender<bool>,
}

impl ServerHandle {
    /// Ask the server to stop accepting and finish in-flight requests.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl Server {
    /// Bind the listen address. Needs a multi-threaded tokio runtime: produce appends and
    /// durability waits run in place (`block_in_place`).
    pub async fn bind(broker: Arc<Broker>) -> std::io::Result<Server> {
        if tokio::runtime::Handle::current().runtime_flavor()
            != tokio::runtime::RuntimeFlavor::MultiThread
        {
            return Err(std::io::Error::other(
                "the Sluice broker needs a multi-threaded tokio runtime (appends run with block_in_place)",
            ));
        }
        let listener = TcpListener::bind(broker.cfg.listen).await?;
        Ok(Server { broker, listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` completes; then stop accepting, let each connection finish
    /// its current request (up to 10 s) and return.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let broker = self.broker.clone();
        let ticker = {
            let broker = broker.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = every.tick() => broker.tick().await,
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        // Transaction timeouts and stalled completions: blocking work (markers are synced),
        // on its own task so group timers are never held up by it.
        let txn_ticker = {
            let broker = broker.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            let b = broker.clone();
                            let _ = tokio::task::spawn_blocking(move || b.txn_tick()).await;
                        }
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Some(slot) = ConnectionSlot::take(&broker, peer) else {
                            drop(stream);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        conns.spawn(connection(broker.clone(), stream, peer, stop_rx.clone(), slot));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        let _ = ticker.await;
        let _ = txn_ticker.await;
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within 10 s; closing them");
            conns.abort_all();
        }
    }

    /// Run in the background; returns the address and a handle to stop it.
    pub fn spawn(self) -> std::io::Result<(SocketAddr, ServerHandle, tokio::task::JoinHandle<()>)> {
        let addr = self.local_addr()?;
        let (tx, mut rx) = watch::channel(false);
        let join = tokio::spawn(self.run(async move {
            let _ = rx.changed().await;
        }));
        Ok((addr, ServerHandle { stop: tx }, join))
    }
}

/// Responses a connection may have outstanding while it reads on (pipelined produce
/// requests whose appends are done and whose fdatasync is pending).
const MAX_PIPELINED: usize = 16;

/// Requests slower than this (read to response written) are logged at debug level.
const SLOW_REQUEST: Duration = Duration::from_millis(5);

/// A response in the connection's ordered output queue.
enum Out {
    /// Encoded (or none due).
    Ready(Option<Bytes>),
    /// Still waiting (for durability).
    Later(tokio::task::JoinHandle<Result<Option<Bytes>, String>>),
}

/// A connection's place under `max_connections` and `max_connections_per_ip`; given back
/// when dropped.
struct ConnectionSlot {
    broker: Arc<Broker>,
    ip: std::net::IpAddr,
}

impl ConnectionSlot {
    /// Take a slot for `peer`, or log and count the refusal.
    fn take(broker: &Arc<Broker>, peer: SocketAddr) -> Option<ConnectionSlot> {
        let mut conns = broker.connections.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = conns.values().sum();
        let from_ip = conns.get(&peer.ip()).copied().unwrap_or(0);
        let refuse = if total >= broker.cfg.max_connections {
            Some(format!("{total} connections are open (max_connections)"))
        } else if from_ip >= broker.cfg.max_connections_per_ip {
            Some(format!(
                "{from_ip} connections from {} are open (max_connections_per_ip)",
                peer.ip()
            ))
        } else {
            None
        };
        if let Some(why) = refuse {
            drop(conns);
            broker
                .refusals
                .connection_limit
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("refusing connection from {peer}: {why}");
            return None;
        }
        *conns.entry(peer.ip()).or_default() += 1;
        Some(ConnectionSlot {
            broker: broker.clone(),
            ip: peer.ip(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut conns = self
            .broker
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = conns.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&self.ip);
            }
        }
    }
}

/// Why reading the next request frame stopped.
enum FrameRead {
    /// The peer closed the connection (or reading failed) between frames.
    Closed,
    /// The server is stopping.
    Stopping,
    /// Close the connection for this reason (logged and counted by the caller).
    Refuse {
        reason: String,
        /// A bad frame (else an idle connection or a stalled frame).
        bad: bool,
    },
}

/// A request frame's bytes, counted in `request_bytes_buffered` and holding its share of
/// the request budget until dropped.
struct Frame {
    body: Vec<u8>,
    counted: usize,
    broker: Arc<Broker>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Frame {
    /// Count the body's capacity (what it really costs) in `request_bytes_buffered`.
    fn count_capacity(&mut self) {
        let more = self.body.capacity().saturating_sub(self.counted);
        self.counted += more;
        self.broker
            .request_bytes_buffered
            .fetch_add(more, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.broker
            .request_bytes_buffered
            .fetch_sub(self.counted, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Bytes read from the socket at a time while a frame arrives, so what a frame costs
/// grows with what the peer has really sent, not with what it announced.
const READ_CHUNK: usize = 64 * 1024;

/// Read one request frame: its size prefix (waiting at most `connections_max_idle_ms`),
/// a share of the broker-wide request budget for its announced size if it is larger than
/// `READ_CHUNK` (waiting while other connections' frames hold it), then its bytes
/// incrementally within `request_read_timeout_ms`. The permit is held until the request
/// has been handled.
async fn read_frame(
    broker: &Arc<Broker>,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    stop: &mut watch::Receiver<bool>,
) -> Result<Frame, FrameRead> {
    let cfg = &broker.cfg;
    let mut len_buf = [0u8; 4];
    let idle = Duration::from_millis(cfg.connections_max_idle_ms);
    tokio::select! {
        r = tokio::time::timeout(idle, rd.read_exact(&mut len_buf)) => match r {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(FrameRead::Closed),
            Err(_) => return Err(FrameRead::Refuse {
                reason: format!(
                    "no request for {} ms (connections_max_idle_ms)",
                    cfg.connections_max_idle_ms
                ),
                bad: false,
            }),
        },
        _ = stop.changed() => return Err(FrameRead::Stopping),
    }
    let len = i32::from_be_bytes(len_buf);
    let max = cfg.max_request_bytes;
    if len < 0 || len as usize > max {
        return Err(FrameRead::Refuse {
            reason: format!("request size {len} is outside 0..={max} (socket.request.max.bytes)"),
            bad: true,
        });
    }
    let len = len as usize;
    // Small frames (most requests) skip the budget, so a few stalled large frames cannot
    // hold up other clients' small requests: they cost at most max_connections x
    // READ_CHUNK bytes on top of queued_max_request_bytes.
    let permit = if len <= READ_CHUNK {
        None
    } else {
        tokio::select! {
            p = broker.request_memory.clone().acquire_many_owned(len as u32) => match p {
                Ok(p) => Some(p),
                Err(_) => return Err(FrameRead::Stopping),
            },
            _ = stop.changed() => return Err(FrameRead::Stopping),
        }
    };
    let deadline = Duration::from_millis(cfg.request_read_timeout_ms);
    let mut frame = Frame {
        body: Vec::new(),
        counted: 0,
        broker: broker.clone(),
        _permit: permit,
    };
    let read_body = async {
        while frame.body.len() < len {
            let left = len - frame.body.len();
            if frame.body.capacity() == frame.body.len() {
                frame.body.reserve(left.min(READ_CHUNK));
                frame.count_capacity();
            }
            match (&mut *rd).take(left as u64).read_buf(&mut frame.body).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    };
    match tokio::time::timeout(deadline, read_body).await {
        Ok(true) => Ok(frame),
        Ok(false) => Err(FrameRead::Closed),
        Err(_) => Err(FrameRead::Refuse {
            reason: format!(
                "a {len}-byte request did not arrive within {} ms (request_read_timeout_ms)",
                cfg.request_read_timeout_ms
            ),
            bad: false,
        }),
    }
}

async fn connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
    _slot: ConnectionSlot,
) {
    let (mut rd, mut wr) = stream.into_split();
    // Requests are read and handled in order by this task; responses are written in the
    // same order by the writer, which may lag behind while appends wait for fdatasync.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Out, std::time::Instant)>(MAX_PIPELINED);
    let writer = tokio::spawn(async move {
        while let Some((out, received)) = rx.recv().await {
            let bytes = match out {
                Out::Ready(b) => b,
                Out::Later(h) => match h.await {
                    Ok(Ok(b)) => b,
                    Ok(Err(reason)) => {
                        tracing::warn!("closing connection from {peer}: {reason}");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(
                            "closing connection from {peer}: response task failed: {e}"
                        );
                        return;
                    }
                },
            };
            if let Some(b) = bytes
                && wr.write_all(&b).await.is_err()
            {
                return;
            }
            let took = received.elapsed();
            if took > SLOW_REQUEST {
                tracing::debug!("slow request from {peer}: {took:?} from read to response written");
            } else {
                tracing::trace!("response to {peer} written {took:?} after the request was read");
            }
        }
    });
    loop {
        let mut frame = match read_frame(&broker, &mut rd, &mut stop).await {
            Ok(frame) => frame,
            Err(FrameRead::Closed | FrameRead::Stopping) => break,
            Err(FrameRead::Refuse { reason, bad }) => {
                let counter = if bad {
                    &broker.refusals.bad_request
                } else {
                    &broker.refusals.idle_or_stalled
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("closing connection from {peer}: {reason}");
                break;
            }
        };
        let received = std::time::Instant::now();
        let body = Bytes::from(std::mem::take(&mut frame.body));
        let handled = handle_frame(&broker, body, peer).await;
        drop(frame);
        match handled {
            Ok(out) => {
                if tx.send((out, received)).await.is_err() {
                    break;
                }
            }
            Err(reason) => {
                broker
                    .refusals
                    .bad_request
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("closing connection from {peer}: {reason}");
                break;
            }
        }
    }
    // Let the writer answer what was accepted before, then the socket closes.
    drop(tx);
    let _ = writer.await;
}

/// The most a request's decoded arrays may claim (elements x a conservative 256 bytes
/// each): requests asking for more are refused before they are decoded.
const DECODE_BUDGET: usize = 256 * 1024 * 1024;

/// A decoded request frame, or what to answer without a handler.
pub(crate) enum Decoded {
    /// A request to handle.
    Request(ApiKey, i16, RequestHeader, Box<RequestKind>),
    /// ApiVersions of an unsupported version: answer in v0 with this.
    UnsupportedApiVersions(i32),
}

/// Decode one request frame (without its size prefix). `Err` is the reason to close the
/// connection. Never panics, whatever the bytes (fuzzed).
pub(crate) fn decode_frame(mut body: Bytes) -> Result<Decoded, String> {
    if body.len() < 8 {
        return Err(format!(
            "request of {} bytes is too short for a header",
            body.len()
        ));
    }
    let raw_key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| format!("malformed request header ({api_key:?} v{version}): {e}"))?;
    let supported = api::supported(api_key);
    let in_range = supported.is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions(header.correlation_id));
        }
        return Err(match supported {
            Some((lo, hi)) => {
                format!("{api_key:?} v{version} is not supported (supported: v{lo}..=v{hi})")
            }
            None => format!("{api_key:?} is not supported by Sluice"),
        });
    }
    // kafka-protocol reserves arrays by the element count claimed on the wire before it
    // reads them: check every claim against the bytes really present first.
    crate::request_bounds::check_request(api_key, version, &body, DECODE_BUDGET)
        .map_err(|e| format!("refused {api_key:?} v{version} request: {e}"))?;
    let request = RequestKind::decode(api_key, &mut body, version)
        .map_err(|e| format!("malformed {api_key:?} v{version} request: {e}"))?;
    tracing::trace!("request {api_key:?} v{version}");
    Ok(Decoded::Request(
        api_key,
        version,
        header,
        Box::new(request),
    ))
}

/// Decode and handle one request frame (without its size prefix); the response is ready
/// or will be (a pipelined produce waiting for durability).
async fn handle_frame(broker: &Arc<Broker>, body: Bytes, peer: SocketAddr) -> Result<Out, String> {
    let (api_key, version, header, request) = match decode_frame(body)? {
        Decoded::Request(k, v, h, r) => (k, v, h, r),
        Decoded::UnsupportedApiVersions(correlation_id) => {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
            let resp = api::api_versions::unsupported();
            return encode(ApiKey::ApiVersions, 0, correlation_id, &resp)
                .map(|b| Out::Ready(Some(b)));
        }
    };
    let ctx = api::Ctx {
        broker,
        header: &header,
        version,
        peer,
    };
    let correlation_id = header.correlation_id;
    match api::handle(ctx, *request).await? {
        api::Reply::Now(Some(resp)) => {
            encode(api_key, version, correlation_id, &resp).map(|b| Out::Ready(Some(b)))
        }
        api::Reply::Now(None) => Ok(Out::Ready(None)),
        api::Reply::Later(fut) => Ok(Out::Later(tokio::spawn(async move {
            match fut.await {
                Some(resp) => encode(api_key, version, correlation_id, &resp).map(Some),
                None => Ok(None),
            }
        }))),
    }
}

fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &kafka_protocol::messages::ResponseKind,
) -> Result<Bytes, String> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|e| format!("encoding response header: {e}"))?;
    resp.encode(&mut out, version)
        .map_err(|e| format!("encoding {api_key:?} v{version} response: {e}"))?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}
