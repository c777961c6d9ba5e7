//! DeleteTopics (by name; v6 also by id). The internal offsets topic cannot be deleted.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{Ctx, blocking, s};
use crate::broker::topic_uuid;
use crate::codes;

pub(crate) async fn handle(ctx: Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let b = ctx.broker;
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
        .collect();
    for t in &req.topics {
        targets.push((t.name.as_ref().map(|n| n.to_string()), t.topic_id));
    }
    let mut resp = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        r.topic_id = id;
        let name = name.or_else(|| {
            b.log
                .topic_names()
                .into_iter()
                .find(|n| b.log.topic(n).is_ok_and(|t| topic_uuid(&t.meta().id) == id))
        });
        r.name = name.clone().map(|n| TopicName(s(n)));
        match name {
            None => r.error_code = ResponseError::UnknownTopicId.code(),
            Some(n) if n == crate::OFFSETS_TOPIC => {
                r.error_code = ResponseError::InvalidTopicException.code();
                r.error_message = Some(s("the internal offsets topic cannot be deleted"));
            }
            Some(n) => {
                let log = b.log.clone();
                let nn = n.clone();
                match blocking(move || log.delete_topic(&nn)).await {
                    Ok(()) => {}
                    Err(e) => {
                        r.error_code = codes::log(&e);
                        r.error_message = Some(s(e.to_string()));
                    }
                }
            }
        }
        resp.responses.push(r);
    }
    resp
}
