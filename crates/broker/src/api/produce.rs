//! Produce: batches go to the log as sent (only the base offset is rewritten); acks=all
//! (and acks=1) are answered once the append is durable under the topic's fsync policy.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_log::frames;

use super::{Ctx, blocking, s};
use crate::broker::Broker;
use crate::codes;
use crate::producers::SequenceCheck;

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

fn append(b: &Broker, topic: &str, partition: i32, records: Option<Bytes>) -> Outcome {
    let Some(records) = records else {
        return Outcome::err(ResponseError::CorruptMessage.code(), "no records");
    };
    let part = match b.log.partition(topic, partition) {
        Ok(p) => p,
        Err(e) => return Outcome::err(codes::log(&e), e.to_string()),
    };
    let mut buf = records.to_vec();
    let mut headers = Vec::new();
    for f in frames(&buf) {
        match f {
            Ok((_, h)) => headers.push(h),
            Err(e) => return Outcome::err(ResponseError::CorruptMessage.code(), e.to_string()),
        }
    }
    if headers.iter().any(|h| h.is_transactional()) {
        return Outcome::err(
            ResponseError::InvalidRecord.code(),
            "transactional batches are not supported yet by this Sluice build",
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
        return match part.append(&mut buf) {
            Ok(info) => ok(info),
            Err(e) => Outcome::err(codes::log(&e), e.to_string()),
        };
    }
    // Idempotent: check sequences and append under the partition's producer lock.
    let state = b.producers.partition(topic, partition);
    let mut state = state.lock().expect("producer state");
    for h in &headers {
        match state.check(h) {
            Ok(SequenceCheck::Append) => {}
            Ok(SequenceCheck::Duplicate(base)) if headers.len() == 1 => {
                return Outcome {
                    code: codes::NONE,
                    base_offset: base,
                    log_append_time: -1,
                    log_start_offset: part.log_start_offset(),
                    message: None,
                };
            }
            Ok(SequenceCheck::Duplicate(_)) => {
                return Outcome::err(
                    ResponseError::DuplicateSequenceNumber.code(),
                    "duplicate batch in a multi-batch request",
                );
            }
            Err(code) => {
                return Outcome::err(
                    code,
                    format!(
                        "producer {} epoch {} sequence {} rejected",
                        h.producer_id, h.producer_epoch, h.base_sequence
                    ),
                );
            }
        }
    }
    match part.append(&mut buf) {
        Ok(info) => {
            for (_, h) in frames(&buf).flatten() {
                state.record(&h);
            }
            ok(info)
        }
        Err(e) => Outcome::err(codes::log(&e), e.to_string()),
    }
}

pub(crate) async fn handle(ctx: Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let b = ctx.broker;
    let acks = req.acks;
    let transactional = req.transactional_id.is_some();
    let mut tasks = Vec::new();
    for t in req.topic_data {
        let name = t.name.to_string();
        for p in t.partition_data {
            let b: Arc<Broker> = b.clone();
            let topic = name.clone();
            let records = p.records;
            let index = p.index;
            let valid_acks = matches!(acks, -1..=1);
            tasks.push((
                name.clone(),
                index,
                tokio::spawn(async move {
                    if !valid_acks {
                        return Outcome::err(
                            ResponseError::InvalidRequiredAcks.code(),
                            format!("acks={acks}"),
                        );
                    }
                    if transactional {
                        return Outcome::err(
                            ResponseError::TransactionalIdAuthorizationFailed.code(),
                            "transactions are not supported yet by this Sluice build",
                        );
                    }
                    blocking(move || append(&b, &topic, index, records)).await
                }),
            ));
        }
    }
    let mut resp = ProduceResponse::default();
    let mut appended = false;
    for (topic, index, task) in tasks {
        let o = task.await.unwrap_or_else(|e| {
            Outcome::err(ResponseError::UnknownServerError.code(), e.to_string())
        });
        appended |= o.code == codes::NONE;
        if o.code != codes::NONE {
            tracing::debug!(
                "produce to {topic}-{index} from {} failed: {:?}",
                ctx.peer,
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
    if appended {
        b.data_arrived.notify_waiters();
    }
    (acks != 0).then_some(resp)
}
