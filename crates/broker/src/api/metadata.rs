//! Metadata: this broker, and topics with their partitions (auto-creating on request).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{Ctx, blocking, s};
use crate::broker::topic_uuid;

pub(crate) async fn handle(ctx: Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let b = ctx.broker;
    let mut resp = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(b.cfg.node_id);
    broker.host = s(b.cfg.advertised_host.clone());
    broker.port = b.cfg.advertised_port;
    resp.brokers = vec![broker];
    resp.cluster_id = Some(s(b.cfg.cluster_id.clone()));
    resp.controller_id = BrokerId(b.cfg.node_id);
    // v0 has no null topic list: empty means all.
    let names: Vec<String> = match &req.topics {
        None => b.log.topic_names(),
        Some(t) if t.is_empty() && ctx.version == 0 => b.log.topic_names(),
        Some(t) => t
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect(),
    };
    // Auto-create (auto.create.topics.enable), as Kafka does for Metadata with
    // allow_auto_topic_creation (always true before v4).
    let allow = b.cfg.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
    for name in &names {
        if allow && b.log.topic(name).is_err() && sluice_log::validate_topic_name(name).is_ok() {
            let log = b.log.clone();
            let (n, parts) = (name.clone(), b.cfg.default_partitions);
            let r = blocking(move || log.create_topic(&n, parts, Default::default())).await;
            match r {
                Ok(_) => tracing::info!("auto-created topic {name} with {parts} partition(s)"),
                Err(sluice_log::Error::TopicExists(_)) => {}
                Err(e) => tracing::warn!("auto-creating topic {name}: {e}"),
            }
        }
    }
    for name in names {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(s(name.clone())));
        match b.log.topic(&name) {
            Ok(topic) => {
                t.topic_id = topic_uuid(&topic.meta().id);
                t.is_internal = name == crate::OFFSETS_TOPIC;
                t.partitions = (0..topic.partition_count())
                    .map(|p| {
                        let mut mp = MetadataResponsePartition::default();
                        mp.partition_index = p;
                        mp.leader_id = BrokerId(b.cfg.node_id);
                        mp.leader_epoch = 0;
                        mp.replica_nodes = vec![BrokerId(b.cfg.node_id)];
                        mp.isr_nodes = vec![BrokerId(b.cfg.node_id)];
                        mp
                    })
                    .collect();
            }
            Err(_) => {
                t.error_code = if sluice_log::validate_topic_name(&name).is_err() {
                    ResponseError::InvalidTopicException.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
            }
        }
        resp.topics.push(t);
    }
    resp
}
