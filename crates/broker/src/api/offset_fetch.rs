//! OffsetFetch: committed offsets of a group (-1 where none), all or the listed ones.
//! With require_stable (v7, sent by read_committed consumers), a partition whose offset
//! waits in an open transaction answers UNSTABLE_OFFSET_COMMIT (the client retries).

use std::collections::BTreeMap;
use std::sync::PoisonError;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{Ctx, s};

pub(crate) fn handle(ctx: Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let committed = ctx
        .broker
        .groups
        .lock()
        .expect("groups")
        .committed(req.group_id.as_str());
    let wanted: Vec<(String, Vec<i32>)> = match &req.topics {
        Some(ts) => ts
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in committed.keys() {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            by_topic.into_iter().collect()
        }
    };
    let mut resp = OffsetFetchResponse::default();
    for (topic, parts) in wanted {
        let mut tr = OffsetFetchResponseTopic::default();
        tr.name = TopicName(s(topic.clone()));
        for p in parts {
            let mut pr = OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            if req.require_stable
                && ctx
                    .broker
                    .txns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .has_pending_offset(req.group_id.as_str(), &topic, p)
            {
                pr.committed_offset = -1;
                pr.committed_leader_epoch = -1;
                pr.metadata = Some(s(""));
                pr.error_code = kafka_protocol::ResponseError::UnstableOffsetCommit.code();
                tr.partitions.push(pr);
                continue;
            }
            match committed.get(&(topic.clone(), p)) {
                Some(c) => {
                    pr.committed_offset = c.offset;
                    pr.committed_leader_epoch = c.leader_epoch;
                    pr.metadata = Some(s(c.metadata.clone().unwrap_or_default()));
                }
                None => {
                    pr.committed_offset = -1;
                    pr.committed_leader_epoch = -1;
                    pr.metadata = Some(s(""));
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
