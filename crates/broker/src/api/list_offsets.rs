//! ListOffsets: earliest (-2), latest (-1; the last stable offset for read_committed) or
//! the first offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Ctx;
use crate::codes;

pub(crate) fn handle(ctx: Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let b = ctx.broker;
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            if ctx.version >= 4 {
                pr.leader_epoch = 0;
            }
            match b.log.partition(t.name.as_str(), p.partition_index) {
                Err(e) => pr.error_code = codes::log(&e),
                Ok(part) => match p.timestamp {
                    -2 => pr.offset = part.log_start_offset(),
                    -1 if req.isolation_level == 1 => pr.offset = part.last_stable_offset(),
                    -1 => pr.offset = part.high_watermark(),
                    ts if ts >= 0 => match part.offset_for_timestamp(ts) {
                        Ok(Some((o, t))) => {
                            pr.offset = o;
                            pr.timestamp = t;
                        }
                        Ok(None) => {}
                        Err(e) => pr.error_code = codes::log(&e),
                    },
                    _ => pr.error_code = kafka_protocol::ResponseError::InvalidRequest.code(),
                },
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
