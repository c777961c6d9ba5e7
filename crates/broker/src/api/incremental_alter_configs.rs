//! IncrementalAlterConfigs for topics: SET (0), DELETE (1), and APPEND (2) / SUBTRACT (3)
//! on Kafka's list configs (`cleanup.policy` and the replication throttles), whose value
//! is a comma-separated list starting from the current (or default) value.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use sluice_log::{LIST_CONFIG_KEYS, topic_config_default};

use super::alter_configs::{AlterError, alter_topic};
use super::{Ctx, s};

/// Apply one operation to a topic's overrides.
fn apply(configs: &mut BTreeMap<String, String>, c: &AlterableConfig) -> Result<(), AlterError> {
    let name = c.name.to_string();
    let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
    match c.config_operation {
        0 => {
            configs.insert(name, value);
        }
        1 => {
            configs.remove(&name);
        }
        op @ (2 | 3) => {
            if !LIST_CONFIG_KEYS.contains(&name.as_str()) {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!(
                        "{} applies to list configs only; {name} is not one",
                        if op == 2 { "APPEND" } else { "SUBTRACT" }
                    ),
                ));
            }
            let current = configs
                .get(&name)
                .cloned()
                .or_else(|| topic_config_default(&name).map(str::to_string))
                .unwrap_or_default();
            let mut items: Vec<String> = split(&current);
            for v in split(&value) {
                if op == 2 && !items.contains(&v) {
                    items.push(v);
                } else if op == 3 {
                    items.retain(|x| *x != v);
                }
            }
            configs.insert(name, items.join(","));
        }
        op => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown config operation {op} on {name}"),
            ));
        }
    }
    Ok(())
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) async fn handle(
    ctx: Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for r in req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        let result = alter_topic(
            ctx.broker,
            r.resource_type,
            r.resource_name.as_str(),
            req.validate_only,
            |configs| r.configs.iter().try_for_each(|c| apply(configs, c)),
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
