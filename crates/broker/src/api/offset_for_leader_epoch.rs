//! OffsetForLeaderEpoch: Sluice has one leader epoch (0) per partition, so the end offset
//! of any requested epoch is the log end offset.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Ctx;
use crate::codes;

pub(crate) fn handle(
    ctx: Ctx<'_>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let b = ctx.broker;
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            match b.log.partition(t.topic.as_str(), p.partition) {
                Err(err) => e.error_code = codes::log(&err),
                Ok(part) => {
                    e.leader_epoch = 0;
                    e.end_offset = part.high_watermark();
                }
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    resp
}
