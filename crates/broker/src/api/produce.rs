//! Produce: batches go to the log as sent (only the base offset is rewritten); acks=all
//! (and acks=1) are answered once the append is durable under the topic's fsync policy.
//! Transactional batches are accepted only from the transactional id's current epoch and
//! only into partitions added to its open transaction.

use std::sync::Arc;
use std::sync::PoisonError;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_log::{AppendIf, Durability, Partition, SequenceCheck, SequenceError, frames};

use super::{Ctx, s};
use crate::broker::Broker;
use crate::codes;
use crate::txn::TxnError;

struct Outcome {
    code: i16,
    base_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
    message: Option<String>,
}

impl Outcome {
    fn err(code: i16, message: impl Into<String>) -> Self {
        Outcome {
            code,
            base_offset: -1,
            log_append_time: -1,
            log_start_offset: -1,
            message: Some(message.into()),
        }
    }
}

/// An appended partition still waiting for its durability before it may be acknowledged.
type Pending = Option<(Arc<Partition>, Durability)>;

/// Validate and append (without waiting for fdatasync): the append happens in request
/// order; the returned wait makes it durable.
fn append(
    b: &Broker,
    tid: Option<&str>,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
) -> (Outcome, Pending) {
    let Some(records) = records else {
        return (
            Outcome::err(ResponseError::CorruptMessage.code(), "no records"),
            None,
        );
    };
    if topic == crate::OFFSETS_TOPIC || topic == crate::txn_log::TXN_TOPIC {
        // As Kafka: only the broker writes its internal topics (a client's records there
        // would be read back as coordinator state at the next start).
        return (
            Outcome::err(
                ResponseError::InvalidTopicException.code(),
                format!("Cannot append to internal topic {topic}"),
            ),
            None,
        );
    }
    let part = match b.log.partition(topic, partition) {
        Ok(p) => p,
        Err(e) => return (Outcome::err(codes::log(&e), e.to_string()), None),
    };
    let (outcome, durability) = append_to(b, tid, &part, topic, partition, records);
    (outcome, durability.map(|d| (part, d)))
}

fn append_to(
    b: &Broker,
    tid: Option<&str>,
    part: &Partition,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (Outcome, Option<Durability>) {
    let mut buf = records.to_vec();
    let mut headers = Vec::new();
    for f in frames(&buf) {
        match f {
            Ok((_, h)) => headers.push(h),
            Err(e) => {
                return (
                    Outcome::err(ResponseError::CorruptMessage.code(), e.to_string()),
                    None,
                );
            }
        }
    }
    if tid.is_none() && headers.iter().any(|h| h.is_transactional()) {
        return (
            Outcome::err(
                ResponseError::InvalidRecord.code(),
                "a transactional batch in a request without a transactional id",
            ),
            None,
        );
    }
    let ok = |info: sluice_log::AppendInfo| Outcome {
        code: codes::NONE,
        base_offset: info.base_offset,
        log_append_time: info.log_append_time,
        log_start_offset: info.log_start_offset,
        message: None,
    };
    if !headers.iter().any(|h| h.producer_id >= 0) {
        return match part.append_deferred(&mut buf) {
            Ok((info, d)) => (ok(info), Some(d)),
            Err(e) => (Outcome::err(codes::log(&e), e.to_string()), None),
        };
    }
    // Idempotent or transactional: check sequences (and the transaction) and append under
    // the partition's append lock, so a concurrent produce or a marker written by the
    // coordinator lands wholly before or after this append.
    enum Refusal {
        Error(Outcome),
        Duplicate(i64),
    }
    let verdict = part.append_if(&mut buf, |state| {
        for h in &headers {
            if let Some(tid) = tid.filter(|_| h.is_transactional()) {
                let verdict = b
                    .txns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .verify_produce(tid, h.producer_id, h.producer_epoch, topic, partition);
                if let Err(e) = verdict {
                    let code = match e {
                        TxnError::Fenced => ResponseError::InvalidProducerEpoch.code(),
                        TxnError::InvalidMapping => ResponseError::InvalidProducerIdMapping.code(),
                        _ => ResponseError::InvalidTxnState.code(),
                    };
                    let msg = format!(
                        "transactional producer {} epoch {} may not write to {topic}-{partition}: {e:?}",
                        h.producer_id, h.producer_epoch
                    );
                    return Err(Refusal::Error(Outcome::err(code, msg)));
                }
            }
            match state.check(h) {
                Ok(SequenceCheck::Append) => {}
                Ok(SequenceCheck::Duplicate(base)) if headers.len() == 1 => {
                    return Err(Refusal::Duplicate(base));
                }
                Ok(SequenceCheck::Duplicate(_)) => {
                    return Err(Refusal::Error(Outcome::err(
                        ResponseError::DuplicateSequenceNumber.code(),
                        "duplicate batch in a multi-batch request",
                    )));
                }
                Err(e) => {
                    let code = match e {
                        SequenceError::FencedEpoch => ResponseError::InvalidProducerEpoch.code(),
                        SequenceError::OutOfOrder => {
                            ResponseError::OutOfOrderSequenceNumber.code()
                        }
                    };
                    let msg = format!(
                        "producer {} epoch {} sequence {} rejected",
                        h.producer_id, h.producer_epoch, h.base_sequence
                    );
                    return Err(Refusal::Error(Outcome::err(code, msg)));
                }
            }
        }
        Ok(())
    });
    match verdict {
        Ok(AppendIf::Appended(info, d)) => (ok(info), Some(d)),
        Ok(AppendIf::Refused(Refusal::Error(o))) => (o, None),
        Ok(AppendIf::Refused(Refusal::Duplicate(base))) => {
            // The original may still be waiting for its sync: answer only once it (and
            // everything before the end) is durable.
            if let Err(e) = part.flush() {
                return (Outcome::err(codes::log(&e), e.to_string()), None);
            }
            let dup = Outcome {
                code: codes::NONE,
                base_offset: base,
                log_append_time: -1,
                log_start_offset: part.log_start_offset(),
                message: None,
            };
            (dup, None)
        }
        Err(e) => (Outcome::err(codes::log(&e), e.to_string()), None),
    }
}

/// Phase one (awaited by the connection, so appends keep request order): validate and
/// append every partition. The returned future is phase two: wait for durability, then
/// build the response (`None` for acks=0).
pub(crate) async fn handle(
    ctx: Ctx<'_>,
    req: ProduceRequest,
) -> impl std::future::Future<Output = Option<ProduceResponse>> + Send + 'static {
    let b = ctx.broker.clone();
    let peer = ctx.peer;
    let acks = req.acks;
    let tid = req.transactional_id.as_ref().map(|t| t.to_string());
    // Appends only write to the page cache (their fdatasync is awaited in phase two), so
    // they run in place, in request order, without a thread hand-off per partition.
    let valid_acks = matches!(acks, -1..=1);
    let mut appended = Vec::new();
    for t in req.topic_data {
        let topic = t.name.to_string();
        for p in t.partition_data {
            let index = p.index;
            let (o, pending) = if !valid_acks {
                (
                    Outcome::err(
                        ResponseError::InvalidRequiredAcks.code(),
                        format!("acks={acks}"),
                    ),
                    None,
                )
            } else {
                let records = p.records;
                tokio::task::block_in_place(|| append(&b, tid.as_deref(), &topic, index, records))
            };
            appended.push((topic.clone(), index, o, pending));
        }
    }
    async move {
        let mut resp = ProduceResponse::default();
        for (topic, index, mut o, pending) in appended {
            if let Some((part, d)) = pending
                && let Err(e) = {
                    let t0 = std::time::Instant::now();
                    let r = tokio::task::block_in_place(|| part.await_durable(d));
                    tracing::trace!("durability wait {:?}", t0.elapsed());
                    r
                }
            {
                o = Outcome::err(codes::log(&e), e.to_string());
            }
            if o.code != codes::NONE {
                tracing::debug!(
                    "produce to {topic}-{index} from {peer} failed: {:?}",
                    o.message
                );
            }
            let mut pr = PartitionProduceResponse::default();
            pr.index = index;
            pr.error_code = o.code;
            pr.base_offset = o.base_offset;
            pr.log_append_time_ms = o.log_append_time;
            pr.log_start_offset = o.log_start_offset;
            pr.error_message = o.message.map(s);
            match resp.responses.iter_mut().find(|r| r.name.as_str() == topic) {
                Some(tr) => tr.partition_responses.push(pr),
                None => {
                    let mut tr = TopicProduceResponse::default();
                    tr.name = kafka_protocol::messages::TopicName(s(topic));
                    tr.partition_responses.push(pr);
                    resp.responses.push(tr);
                }
            }
        }
        (acks != 0).then_some(resp)
    }
}
