//! AlterConfigs (key 33) for topics, with Kafka's replace semantics: the topic's overrides
//! become exactly the configs given (a null value sets nothing), after validation;
//! `validate_only` checks without changing anything. KafkaJS speaks only this API for
//! config changes. Also the shared step of both alter APIs.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use sluice_log::TopicConfig;

use super::describe_configs::RESOURCE_TOPIC;
use super::{Ctx, blocking, s};
use crate::broker::Broker;
use crate::codes;

/// A failed alteration: the Kafka error code and a message.
pub(crate) type AlterError = (i16, String);

/// Alter topic `name`'s overrides with `change` (given the current ones), validate the
/// result and store it unless `validate_only`.
pub(crate) async fn alter_topic(
    b: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), AlterError>,
) -> Result<(), AlterError> {
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest.code(),
            "only topic configs can be altered".into(),
        ));
    }
    let topic = b
        .log
        .topic(name)
        .map_err(|e| (codes::log(&e), e.to_string()))?;
    let mut configs = topic.meta().configs;
    change(&mut configs)?;
    TopicConfig::from_overrides(&configs).map_err(|e| (codes::log(&e), e.to_string()))?;
    if !validate_only {
        let log = b.log.clone();
        let name = name.to_string();
        blocking(move || log.set_topic_config(&name, configs))
            .await
            .map_err(|e| (codes::log(&e), e.to_string()))?;
    }
    Ok(())
}

pub(crate) async fn handle(ctx: Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for r in req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        let given: BTreeMap<String, String> = r
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let result = alter_topic(
            ctx.broker,
            r.resource_type,
            r.resource_name.as_str(),
            req.validate_only,
            |configs| {
                *configs = given;
                Ok(())
            },
        )
        .await;
        if let Err((code, msg)) = result {
            out.error_code = code;
            out.error_message = Some(s(msg));
        }
        resp.responses.push(out);
    }
    resp
}
