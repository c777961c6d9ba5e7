//! Fetch: stored batches served as stored, with long polling (max_wait_ms / min_bytes)
//! over many partitions and Kafka's byte limits (soft: the first batch always comes whole).
//! Every partition reports its last stable offset (the first offset of the earliest open
//! transaction, or the high watermark); a read_committed fetch (isolation level 1) returns
//! only batches below it plus the aborted transactions overlapping what it returns, so the
//! client drops aborted records (control batches are skipped by clients).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};

use super::{Ctx, blocking, s};

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
    let max_bytes = max_bytes.max(0) as usize;
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
                    let lso = b.last_stable_offset(&p);
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
                    match result {
                        Ok(r) => {
                            pd.high_watermark = r.high_watermark;
                            pd.last_stable_offset = lso;
                            pd.log_start_offset = r.log_start_offset;
                            if read_committed {
                                let txns = b.producers.partition(name, partition);
                                let aborted = txns.lock().expect("producers").aborted_between(
                                    offset,
                                    r.next_offset,
                                    r.log_start_offset,
                                );
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
    let topics: FetchPlan = req
        .topics
        .iter()
        .map(|t| {
            (
                t.topic.to_string(),
                t.partitions
                    .iter()
                    .map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes))
                    .collect(),
            )
        })
        .collect();
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
            if req.session_id != 0 || req.session_epoch > 0 {
                // Sluice does not keep fetch sessions (KIP-227): full fetches only.
                resp.error_code = ResponseError::FetchSessionIdNotFound.code();
                resp.responses.clear();
            }
            return resp;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}
