//! TxnOffsetCommit: offsets committed inside a transaction. The group's generation is
//! checked (KIP-447 fields, v3+) as for OffsetCommit; the offsets are held in the
//! transaction's durable state and reach `__consumer_offsets` (and OffsetFetch) only when
//! the transaction commits.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use std::sync::PoisonError;

use super::{Ctx, blocking};
use crate::broker::now_ms;
use crate::codes;
use crate::group::{CommittedOffset, GroupError};
use crate::txn::PendingOffset;

/// PRODUCER_FENCED is known from version 3.
const FENCED_CODE_V: i16 = 3;

pub(crate) async fn handle(ctx: Ctx<'_>, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let b = ctx.broker.clone();
    let now = now_ms();
    let group = req.group_id.to_string();
    let member = req.member_id.to_string();
    let check = if req.generation_id >= 0 || !member.is_empty() {
        b.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .validate_commit(
                &group,
                &member,
                req.group_instance_id.as_ref().map(|s| s.as_str()),
                req.generation_id,
                now,
            )
    } else {
        GroupError::None
    };
    let mut codes_out: Vec<(String, i32, i16)> = Vec::new();
    let mut pending = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let code = super::offset_commit::offset_check(
                &b,
                check,
                t.name.as_str(),
                p.partition_index,
                p.committed_metadata.as_deref(),
            );
            if code == codes::NONE {
                pending.push(PendingOffset {
                    group: group.clone(),
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    value: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if ctx.version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_ms: now,
                    },
                });
            }
            codes_out.push((t.name.to_string(), p.partition_index, code));
        }
    }
    if !pending.is_empty() {
        let tid = req.transactional_id.to_string();
        let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
        let result = blocking(move || {
            b.txn_step(true, |c, now| {
                Ok(((), vec![c.commit_offsets(&tid, pid, epoch, pending, now)?]))
            })
        })
        .await;
        if let Err(e) = result {
            let code = e.code(ctx.version, FENCED_CODE_V);
            for c in codes_out.iter_mut().filter(|c| c.2 == codes::NONE) {
                c.2 = code;
            }
        }
    }
    let mut resp = TxnOffsetCommitResponse::default();
    for (topic, partition, code) in codes_out {
        let mut pr = TxnOffsetCommitResponsePartition::default();
        pr.partition_index = partition;
        pr.error_code = code;
        match resp.topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partitions.push(pr),
            None => {
                let mut tr = TxnOffsetCommitResponseTopic::default();
                tr.name = kafka_protocol::messages::TopicName(super::s(topic));
                tr.partitions.push(pr);
                resp.topics.push(tr);
            }
        }
    }
    resp
}
