//! IncrementalAlterConfigs for topics: SET (0) and DELETE (1); APPEND/SUBTRACT (2/3) only
//! apply to list configs, which Sluice's topic configs are not.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use sluice_log::TopicConfig;

use super::describe_configs::RESOURCE_TOPIC;
use super::{Ctx, blocking, s};
use crate::codes;

pub(crate) async fn handle(
    ctx: Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let b = ctx.broker;
    let mut resp = IncrementalAlterConfigsResponse::default();
    for r in req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        let result: Result<(), (i16, String)> = async {
            if r.resource_type != RESOURCE_TOPIC {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    "only topic configs can be altered".into(),
                ));
            }
            let name = r.resource_name.to_string();
            let topic = b
                .log
                .topic(&name)
                .map_err(|e| (codes::log(&e), e.to_string()))?;
            let mut configs = topic.meta().configs;
            for c in &r.configs {
                match c.config_operation {
                    0 => {
                        let v = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                        configs.insert(c.name.to_string(), v);
                    }
                    1 => {
                        configs.remove(c.name.as_str());
                    }
                    op => {
                        return Err((
                            ResponseError::InvalidConfig.code(),
                            format!(
                                "operation {op} on {} is not supported (not a list config)",
                                c.name.as_str()
                            ),
                        ));
                    }
                }
            }
            TopicConfig::from_overrides(&configs).map_err(|e| (codes::log(&e), e.to_string()))?;
            if !req.validate_only {
                let log = b.log.clone();
                blocking(move || log.set_topic_config(&name, configs))
                    .await
                    .map_err(|e| (codes::log(&e), e.to_string()))?;
            }
            Ok(())
        }
        .await;
        if let Err((code, msg)) = result {
            out.error_code = code;
            out.error_message = Some(s(msg));
        }
        resp.responses.push(out);
    }
    resp
}
