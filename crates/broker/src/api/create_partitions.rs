//! CreatePartitions: grow a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{Ctx, blocking, s};
use crate::codes;

pub(crate) async fn handle(ctx: Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let b = ctx.broker;
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let name = t.name.to_string();
        let current = b.log.topic(&name).map(|x| x.partition_count());
        let outcome = match current {
            Err(e) => Err(e),
            Ok(c) if t.count <= c => Err(sluice_log::Error::InvalidPartitions {
                requested: t.count,
                reason: format!("topic {name} has {c} partitions; counts only grow"),
            }),
            Ok(_) if req.validate_only => Ok(()),
            Ok(_) => {
                let log = b.log.clone();
                let count = t.count;
                blocking(move || log.add_partitions(&name, count)).await
            }
        };
        if let Err(e) = outcome {
            r.error_code = codes::log(&e);
            r.error_message = Some(s(e.to_string()));
        }
        resp.results.push(r);
    }
    resp
}
