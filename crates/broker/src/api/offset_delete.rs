//! OffsetDelete: remove a group's committed offsets, refused for topics it consumes.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use std::sync::PoisonError;

use super::Ctx;
use crate::codes;
use crate::group::{GroupError, OffsetRecord};

/// Topics named in the members' consumer-protocol subscriptions
/// (`version i16, [topic string], ...`).
pub(crate) fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if metadata.len() < 6 {
        return out;
    }
    let n = i32::from_be_bytes([metadata[2], metadata[3], metadata[4], metadata[5]]);
    let mut pos = 6usize;
    for _ in 0..n.max(0) {
        if pos + 2 > metadata.len() {
            break;
        }
        let len = i16::from_be_bytes([metadata[pos], metadata[pos + 1]]).max(0) as usize;
        pos += 2;
        if pos + len > metadata.len() {
            break;
        }
        out.push(String::from_utf8_lossy(&metadata[pos..pos + len]).to_string());
        pos += len;
    }
    out
}

pub(crate) async fn handle(ctx: Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let b = ctx.broker;
    let group = req.group_id.to_string();
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let mut resp = OffsetDeleteResponse::default();
    let result = {
        let mut g = b.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let subs: Vec<String> = g
            .describe(&group)
            .map(|d| {
                d.members
                    .iter()
                    .flat_map(|m| subscribed_topics(&m.metadata))
                    .collect()
            })
            .unwrap_or_default();
        g.delete_offsets(&group, &partitions, |t| subs.iter().any(|s| s == t))
    };
    let results = match result {
        Err(e) => {
            resp.error_code = codes::group(e);
            return resp;
        }
        Ok(r) => r,
    };
    let tombstones: Vec<OffsetRecord> = results
        .iter()
        .filter(|(_, _, e)| *e == GroupError::None)
        .map(|(t, p, _)| OffsetRecord {
            group: group.clone(),
            topic: t.clone(),
            partition: *p,
            value: None,
        })
        .collect();
    // Applied to the coordinator by the writer, in append order.
    if let Err(e) = b.persist_offsets(tombstones).await {
        tracing::error!("offset delete for {group}: {e}");
        resp.error_code = kafka_protocol::ResponseError::CoordinatorNotAvailable.code();
        return resp;
    }
    for (t, p, e) in results {
        let mut pr = OffsetDeleteResponsePartition::default();
        pr.partition_index = p;
        pr.error_code = codes::group(e);
        match resp.topics.iter_mut().find(|x| x.name.as_str() == t) {
            Some(x) => x.partitions.push(pr),
            None => {
                let mut tr = OffsetDeleteResponseTopic::default();
                tr.name = kafka_protocol::messages::TopicName(super::s(t));
                tr.partitions.push(pr);
                resp.topics.push(tr);
            }
        }
    }
    resp
}
