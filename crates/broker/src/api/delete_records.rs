//! DeleteRecords: move a partition's log start offset forward.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{Ctx, blocking};
use crate::codes;

pub(crate) async fn handle(ctx: Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let b = ctx.broker;
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match b.log.partition(t.name.as_str(), p.partition_index) {
                Err(e) => pr.error_code = codes::log(&e),
                Ok(part) => {
                    let offset = p.offset;
                    match blocking(move || part.delete_records(offset)).await {
                        Ok(lw) => pr.low_watermark = lw,
                        Err(e) => pr.error_code = codes::log(&e),
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
