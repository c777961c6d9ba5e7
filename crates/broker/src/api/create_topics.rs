//! CreateTopics: partitions, configs (validated), validate_only. One broker, so the
//! replication factor must be 1 (or -1 for the default).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use sluice_log::TopicConfig;

use super::{Ctx, blocking, s};
use crate::broker::topic_uuid;
use crate::codes;

pub(crate) async fn handle(ctx: Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let b = ctx.broker;
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let partitions = if t.num_partitions == -1 {
            if t.assignments.is_empty() {
                b.cfg.default_partitions
            } else {
                t.assignments.len() as i32
            }
        } else {
            t.num_partitions
        };
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let check = || -> Result<(), (i16, String)> {
            if !(t.replication_factor == -1 || t.replication_factor == 1) {
                return Err((
                    ResponseError::InvalidReplicationFactor.code(),
                    format!(
                        "replication factor {} is impossible: Sluice is a single broker",
                        t.replication_factor
                    ),
                ));
            }
            if t.assignments
                .iter()
                .any(|a| a.broker_ids.iter().any(|id| id.0 != b.cfg.node_id))
            {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    "assignments may only name this broker".into(),
                ));
            }
            sluice_log::validate_topic_name(&name).map_err(|e| (codes::log(&e), e.to_string()))?;
            if partitions <= 0 {
                return Err((
                    ResponseError::InvalidPartitions.code(),
                    format!("{partitions} partitions"),
                ));
            }
            TopicConfig::from_overrides(&configs).map_err(|e| (codes::log(&e), e.to_string()))?;
            b.log
                .check_partition_budget(partitions)
                .map_err(|e| (codes::log(&e), e.to_string()))?;
            if b.log.topic(&name).is_ok() {
                return Err((
                    ResponseError::TopicAlreadyExists.code(),
                    format!("topic {name} already exists"),
                ));
            }
            Ok(())
        };
        let outcome = match check() {
            Err(e) => Err(e),
            Ok(()) if req.validate_only => Ok(None),
            Ok(()) => {
                let log = b.log.clone();
                let (n, c) = (name.clone(), configs.clone());
                blocking(move || log.create_topic(&n, partitions, c))
                    .await
                    .map(Some)
                    .map_err(|e| (codes::log(&e), e.to_string()))
            }
        };
        match outcome {
            Err((code, msg)) => {
                r.error_code = code;
                r.error_message = Some(s(msg));
            }
            Ok(topic) => {
                if let Some(topic) = topic {
                    r.topic_id = topic_uuid(&topic.meta().id);
                }
                r.num_partitions = partitions;
                r.replication_factor = 1;
                r.configs = Some(
                    TopicConfig::describe(&configs)
                        .into_iter()
                        .map(|(k, v, over)| {
                            let mut c = CreatableTopicConfigs::default();
                            c.name = s(k);
                            c.value = Some(s(v));
                            c.config_source = if over { 1 } else { 5 };
                            c
                        })
                        .collect(),
                );
            }
        }
        resp.topics.push(r);
    }
    resp
}
