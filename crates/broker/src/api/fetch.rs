//! Fetch: stored batches served as stored, with long polling (max_wait_ms / min_bytes)
//! over many partitions and Kafka's byte limits (soft: the first batch always comes whole).
//! Every partition reports its last stable offset (the first offset of the earliest open
//! transaction, or the high watermark); a read_committed fetch (isolation level 1) returns
//! only batches below it plus the aborted transactions overlapping what it returns, so the
//! client drops aborted records (control batches are skipped by clients). Incremental
//! fetch sessions (KIP-227, v7+) are kept in `fetch_sessions.rs`.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};

use super::{Ctx, blocking, s};
use crate::broker::now_ms;
use crate::fetch_sessions::Resolved;

/// Kafka's `fetch.max.bytes` default: the most one Fetch response carries (beyond one
/// oversized first batch), whatever the request asks for.
pub(crate) const FETCH_MAX_BYTES: usize = 55 * 1024 * 1024;

/// (partition, fetch offset, partition max bytes) per topic, in request order.
type FetchPlan = Vec<(String, Vec<(i32, i64, i32)>)>;
use crate::codes;

fn read_all(
    b: &crate::broker::Broker,
    topics: &FetchPlan,
    max_bytes: i32,
    read_committed: bool,
) -> (FetchResponse, usize, bool) {
    let mut resp = FetchResponse::default();
    let mut total = 0usize;
    let mut any_error = false;
    // Kafka caps the request's max_bytes at the broker's fetch.max.bytes.
    let max_bytes = (max_bytes.max(0) as usize).min(FETCH_MAX_BYTES);
    for (name, parts) in topics {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = TopicName(s(name.clone()));
        for &(partition, offset, partition_max) in parts {
            let mut pd = PartitionData::default();
            pd.partition_index = partition;
            pd.aborted_transactions = None;
            match b.log.partition(name, partition) {
                Err(e) => {
                    pd.error_code = codes::log(&e);
                    pd.high_watermark = -1;
                    pd.last_stable_offset = -1;
                    pd.log_start_offset = -1;
                    any_error = true;
                }
                Ok(p) => {
                    let lso = p.last_stable_offset();
                    let upper = if read_committed { lso } else { i64::MAX };
                    let remaining = max_bytes.saturating_sub(total);
                    let limit = (partition_max.max(0) as usize).min(remaining);
                    let result = if limit == 0 && total > 0 {
                        // The response is full: report positions without data.
                        Ok(sluice_log::ReadResult {
                            high_watermark: p.high_watermark(),
                            log_start_offset: p.log_start_offset(),
                            next_offset: offset,
                            bytes: Vec::new(),
                        })
                    } else {
                        p.read_below(offset, limit.max(1), upper)
                    };
                    // Only the response's first batch may exceed the limits (KIP-74);
                    // a later partition's batch that does not fit is left for the next
                    // fetch.
                    let result = result.map(|mut r| {
                        if total > 0 && r.bytes.len() > limit {
                            r.bytes = Vec::new();
                            r.next_offset = offset;
                        }
                        r
                    });
                    match result {
                        Ok(r) => {
                            pd.high_watermark = r.high_watermark;
                            pd.last_stable_offset = lso;
                            pd.log_start_offset = r.log_start_offset;
                            if read_committed {
                                let aborted = p.aborted_between(offset, r.next_offset);
                                pd.aborted_transactions = Some(
                                    aborted
                                        .into_iter()
                                        .map(|a| {
                                            let mut t = AbortedTransaction::default();
                                            t.producer_id = ProducerId(a.producer_id);
                                            t.first_offset = a.first_offset;
                                            t
                                        })
                                        .collect(),
                                );
                            }
                            total += r.bytes.len();
                            pd.records = Some(Bytes::from(r.bytes));
                        }
                        Err(e) => {
                            pd.error_code = codes::log(&e);
                            pd.high_watermark = p.high_watermark();
                            pd.last_stable_offset = lso;
                            pd.log_start_offset = p.log_start_offset();
                            any_error = true;
                            if !matches!(e, sluice_log::Error::OffsetOutOfRange { .. }) {
                                tracing::error!("fetch {name}-{partition} at {offset}: {e}");
                            }
                        }
                    }
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    (resp, total, any_error)
}

pub(crate) async fn handle(ctx: Ctx<'_>, req: FetchRequest) -> FetchResponse {
    let b = ctx.broker.clone();
    let requested: Vec<(String, i32, i64, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic.to_string(),
                    p.partition,
                    p.fetch_offset,
                    p.partition_max_bytes,
                )
            })
        })
        .collect();
    // Fetch sessions (KIP-227) from version 7; older requests are full fetches.
    let resolved = if ctx.version >= 7 {
        let forgotten: Vec<(String, i32)> = req
            .forgotten_topics_data
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect();
        b.fetch_sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .resolve(
                req.session_id,
                req.session_epoch,
                &requested,
                &forgotten,
                now_ms(),
            )
    } else {
        Ok(Resolved {
            session_id: 0,
            incremental: false,
            partitions: requested,
        })
    };
    let resolved = match resolved {
        Ok(r) if r.session_id != 0 && req.session_epoch == 0 => {
            tracing::debug!("fetch session {} opened for {}", r.session_id, ctx.peer);
            r
        }
        Ok(r) => r,
        Err(code) => {
            let mut resp = FetchResponse::default();
            resp.error_code = code;
            return resp;
        }
    };
    let mut topics: FetchPlan = Vec::new();
    for (t, p, offset, max) in &resolved.partitions {
        match topics.last_mut() {
            Some((name, parts)) if name == t => parts.push((*p, *offset, *max)),
            _ => topics.push((t.clone(), vec![(*p, *offset, *max)])),
        }
    }
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX
    } else {
        req.max_bytes
    };
    // min_bytes 0 answers at once; otherwise wait for that much (or the deadline).
    let min_bytes = req.min_bytes.max(0) as usize;
    let read_committed = req.isolation_level == 1;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    loop {
        let notified = b.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (bb, tt) = (b.clone(), topics.clone());
        let (resp, total, any_error) =
            blocking(move || read_all(&bb, &tt, max_bytes, read_committed)).await;
        if total >= min_bytes || any_error || Instant::now() >= deadline || topics.is_empty() {
            let mut resp = resp;
            if resolved.session_id != 0 {
                session_answer(&b, &resolved, &mut resp);
            }
            return resp;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

/// Record what a session's answer reports; an incremental answer keeps only partitions
/// with records, an error or new positions.
fn session_answer(b: &crate::broker::Broker, resolved: &Resolved, resp: &mut FetchResponse) {
    let mut sessions = b
        .fetch_sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    resp.session_id = resolved.session_id;
    for t in resp.responses.iter_mut() {
        t.partitions.retain(|p| {
            let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
            let news = sessions.report(
                resolved.session_id,
                t.topic.as_str(),
                p.partition_index,
                (p.high_watermark, p.last_stable_offset, p.log_start_offset),
                has_records,
                p.error_code != codes::NONE,
            );
            news || !resolved.incremental
        });
    }
    resp.responses.retain(|t| !t.partitions.is_empty());
}
