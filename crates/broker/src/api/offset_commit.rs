//! OffsetCommit: validated by the coordinator, written durably to `__consumer_offsets`,
//! then visible to OffsetFetch.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use std::sync::PoisonError;

use super::Ctx;
use crate::broker::now_ms;
use crate::codes;
use crate::group::{CommittedOffset, GroupError, OffsetRecord};

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA: usize = 4096;

/// The error code for one offset of an OffsetCommit or TxnOffsetCommit: the group's
/// verdict, then an existing partition, then the metadata size.
pub(super) fn offset_check(
    b: &crate::broker::Broker,
    group: GroupError,
    topic: &str,
    partition: i32,
    metadata: Option<&str>,
) -> i16 {
    if group != GroupError::None {
        codes::group(group)
    } else if b.log.partition(topic, partition).is_err() {
        ResponseError::UnknownTopicOrPartition.code()
    } else if metadata.is_some_and(|m| m.len() > MAX_METADATA) {
        ResponseError::OffsetMetadataTooLarge.code()
    } else {
        codes::NONE
    }
}

pub(crate) async fn handle(ctx: Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let b = ctx.broker;
    let now = now_ms();
    let group = req.group_id.to_string();
    let check = b
        .groups
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .validate_commit(
            &group,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            req.generation_id_or_member_epoch,
            now,
        );
    let mut codes_out: Vec<(String, i32, i16)> = Vec::new();
    let mut records = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let code = offset_check(
                b,
                check,
                t.name.as_str(),
                p.partition_index,
                p.committed_metadata.as_deref(),
            );
            if code == codes::NONE {
                records.push(OffsetRecord {
                    group: group.clone(),
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    value: Some(CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if ctx.version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_ms: now,
                    }),
                });
            }
            codes_out.push((t.name.to_string(), p.partition_index, code));
        }
    }
    if !records.is_empty() {
        // Applied to the coordinator by the writer, in append order.
        match b.persist_offsets(records).await {
            Ok(()) => {}
            Err(e) => {
                tracing::error!("offset commit for group {group}: {e}");
                for c in codes_out.iter_mut().filter(|c| c.2 == codes::NONE) {
                    c.2 = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
    }
    let mut resp = OffsetCommitResponse::default();
    for (topic, partition, code) in codes_out {
        let mut pr = OffsetCommitResponsePartition::default();
        pr.partition_index = partition;
        pr.error_code = code;
        match resp.topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partitions.push(pr),
            None => {
                let mut tr = OffsetCommitResponseTopic::default();
                tr.name = kafka_protocol::messages::TopicName(super::s(topic));
                tr.partitions.push(pr);
                resp.topics.push(tr);
            }
        }
    }
    resp
}
