//! DescribeConfigs: topic configs with their real defaults (source DEFAULT_CONFIG or
//! DYNAMIC_TOPIC_CONFIG); the broker resource answers with no entries.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use sluice_log::{TopicConfig, topic_config_doc};

use super::{Ctx, s};

/// Kafka's resource types.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

pub(crate) fn handle(ctx: Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let b = ctx.broker;
    let mut resp = DescribeConfigsResponse::default();
    for r in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        match r.resource_type {
            RESOURCE_TOPIC => match b.log.topic(r.resource_name.as_str()) {
                Err(e) => {
                    out.error_code = ResponseError::UnknownTopicOrPartition.code();
                    out.error_message = Some(s(e.to_string()));
                }
                Ok(t) => {
                    let meta = t.meta();
                    for (k, v, over) in TopicConfig::describe(&meta.configs) {
                        if let Some(keys) = &r.configuration_keys
                            && !keys.iter().any(|x| x.as_str() == k)
                        {
                            continue;
                        }
                        let mut c = DescribeConfigsResourceResult::default();
                        c.documentation = req
                            .include_documentation
                            .then(|| topic_config_doc(&k).map(s))
                            .flatten();
                        c.name = s(k);
                        c.value = Some(s(v));
                        c.config_source = if over { 1 } else { 5 };
                        out.configs.push(c);
                    }
                }
            },
            RESOURCE_BROKER => {}
            other => {
                out.error_code = ResponseError::InvalidRequest.code();
                out.error_message = Some(s(format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(out);
    }
    resp
}
