//! A lean Kafka-protocol producer for `bench produce`'s latency measurement: records fall
//! due at a fixed rate; whenever fewer than 4 requests are in flight on its one connection
//! it sends one Produce request with every record due by then and measures each record from the moment it was due to the
//! moment its response arrived (no coordinated omission). It shows what the broker adds,
//! without librdkafka's own queueing and thread hand-offs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_log::BatchBuilder;

const VERSION: i16 = 7;
const MAX_IN_FLIGHT: usize = 4;
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// One request on the wire: its correlation id and the records it carries.
struct InFlight {
    correlation_id: i32,
    first: u64,
    count: u64,
}

/// Latency (µs) of every record produced at `rate` records/s for `seconds` to partition 0
/// of `topic` with `acks`.
pub(crate) fn paced_latency(
    bootstrap: &str,
    topic: &str,
    size: usize,
    rate: f64,
    seconds: f64,
    acks: i16,
) -> anyhow::Result<Histogram<u64>> {
    let stream =
        TcpStream::connect(bootstrap).with_context(|| format!("connecting to {bootstrap}"))?;
    stream.set_nodelay(true)?;
    let mut reader = stream.try_clone()?;
    let mut writer = stream;
    let (tx, rx) = mpsc::channel::<InFlight>();
    // (requests in flight, reader gone): the reader frees a slot per response and marks
    // itself gone when it stops, so the writer never waits for a dead reader.
    let slots = Arc::new((Mutex::new((0usize, false)), Condvar::new()));
    let reader_slots = slots.clone();
    let start = Instant::now();
    let receiver = std::thread::spawn(move || -> anyhow::Result<Histogram<u64>> {
        let result = read_responses(&mut reader, &rx, &reader_slots, start, rate);
        let (n, cv) = &*reader_slots;
        n.lock().expect("slots").1 = true;
        cv.notify_all();
        result
    });
    let payload = vec![b'l'; size];
    let mut sent = 0u64;
    let mut correlation_id = 0;
    let result = (|| -> anyhow::Result<()> {
        while start.elapsed().as_secs_f64() < seconds {
            {
                let (n, cv) = &*slots;
                let mut n = n.lock().expect("slots");
                while n.0 >= MAX_IN_FLIGHT && !n.1 {
                    n = cv.wait(n).expect("slots");
                }
                if n.1 {
                    break; // the reader stopped: its error is reported below
                }
            }
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            if due <= sent {
                let next = Duration::from_secs_f64((sent + 1) as f64 / rate);
                let wait = next.saturating_sub(start.elapsed());
                std::thread::sleep(wait.min(Duration::from_micros(200)));
                continue;
            }
            // At most ~512 KiB per batch (topics default to max.message.bytes 1 MiB).
            let count = (due - sent).min((MAX_BATCH_BYTES / size.max(1)).max(1) as u64);
            correlation_id += 1;
            let frame = produce_frame(topic, &payload, count, acks, correlation_id)?;
            slots.0.lock().expect("slots").0 += 1;
            tx.send(InFlight {
                correlation_id,
                first: sent,
                count,
            })
            .context("the response reader stopped")?;
            writer.write_all(&frame)?;
            sent += count;
        }
        Ok(())
    })();
    drop(tx);
    let h = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("response reader panicked"))??;
    result?;
    Ok(h)
}

fn produce_frame(
    topic: &str,
    payload: &[u8],
    records: u64,
    acks: i16,
    correlation_id: i32,
) -> anyhow::Result<Vec<u8>> {
    let mut b = BatchBuilder::new();
    let now = crate::now_ms();
    for _ in 0..records {
        b.push(now, None, Some(payload), &[]);
    }
    let batch = b
        .build()
        .map_err(|e| anyhow::anyhow!("building a batch: {e}"))?;
    let mut pd = PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(Bytes::from(batch));
    let mut td = TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.to_string()));
    td.partition_data.push(pd);
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 30_000;
    req.topic_data.push(td);
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Produce as i16;
    header.request_api_version = VERSION;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("sluice-bench-lean"));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header.encode(&mut buf, ApiKey::Produce.request_header_version(VERSION))?;
    req.encode(&mut buf, VERSION)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.to_vec())
}

fn read_frame(r: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).context("reading a response")?;
    let len = i32::from_be_bytes(len);
    if !(0..=64 << 20).contains(&len) {
        bail!("bad response length {len}");
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// The reader side: one response per request sent, in order; each record's latency is
/// from its due time to its response.
fn read_responses(
    reader: &mut TcpStream,
    rx: &mpsc::Receiver<InFlight>,
    slots: &(Mutex<(usize, bool)>, Condvar),
    start: Instant,
    rate: f64,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    while let Ok(req) = rx.recv() {
        let body = read_frame(reader);
        {
            let (n, cv) = slots;
            n.lock().expect("slots").0 -= 1;
            cv.notify_one();
        }
        let body = body?;
        let done = start.elapsed().as_secs_f64();
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(VERSION))?;
        if header.correlation_id != req.correlation_id {
            bail!(
                "response {} where {} was expected",
                header.correlation_id,
                req.correlation_id
            );
        }
        let resp = ProduceResponse::decode(&mut body, VERSION)?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    bail!("produce failed with error code {}", p.error_code);
                }
            }
        }
        for i in req.first..req.first + req.count {
            let due = i as f64 / rate;
            h.record(((done - due) * 1e6).max(1.0) as u64)?;
        }
    }
    Ok(h)
}
