//! AddPartitionsToTxn (client versions 0-3): partitions join the producer's open
//! transaction (starting one), persisted before the answer so a restart knows which
//! partitions need markers. Unknown partitions fail the whole request, as in Kafka
//! (the others get OPERATION_NOT_ATTEMPTED).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::{Ctx, blocking};
use crate::codes;

/// PRODUCER_FENCED is known from version 2 (KIP-588).
const FENCED_CODE_V: i16 = 2;

pub(crate) async fn handle(
    ctx: Ctx<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let b = ctx.broker.clone();
    let tid = req.v3_and_below_transactional_id.to_string();
    let (pid, epoch) = (
        req.v3_and_below_producer_id.0,
        req.v3_and_below_producer_epoch,
    );
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.v3_and_below_topics {
        for &p in &t.partitions {
            let tp = (t.name.to_string(), p);
            match b.log.partition(&tp.0, p) {
                Ok(_) => wanted.push(tp),
                Err(e) => unknown.push((tp, codes::log(&e))),
            }
        }
    }
    let code_for_all = if !unknown.is_empty() {
        None
    } else {
        let parts = wanted.clone();
        let result = blocking(move || {
            b.txn_step(true, |c, now| {
                Ok((
                    (),
                    c.add_partitions(&tid, pid, epoch, &parts, now)?
                        .into_iter()
                        .collect(),
                ))
            })
        })
        .await;
        Some(match result {
            Ok(()) => codes::NONE,
            Err(e) => e.code(ctx.version, FENCED_CODE_V),
        })
    };
    let mut results: Vec<((String, i32), i16)> = wanted
        .into_iter()
        .map(|tp| {
            let code = code_for_all.unwrap_or(ResponseError::OperationNotAttempted.code());
            (tp, code)
        })
        .collect();
    results.extend(unknown);
    let mut resp = AddPartitionsToTxnResponse::default();
    for ((topic, partition), code) in results {
        let mut pr = AddPartitionsToTxnPartitionResult::default();
        pr.partition_index = partition;
        pr.partition_error_code = code;
        match resp
            .results_by_topic_v3_and_below
            .iter_mut()
            .find(|t| t.name.as_str() == topic)
        {
            Some(t) => t.results_by_partition.push(pr),
            None => {
                let mut tr = AddPartitionsToTxnTopicResult::default();
                tr.name = kafka_protocol::messages::TopicName(super::s(topic));
                tr.results_by_partition.push(pr);
                resp.results_by_topic_v3_and_below.push(tr);
            }
        }
    }
    resp
}
