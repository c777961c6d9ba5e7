//! DescribeCluster: one broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Ctx, s};

pub(crate) fn handle(ctx: Ctx<'_>, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let b = ctx.broker;
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = s(b.cfg.cluster_id.clone());
    resp.controller_id = BrokerId(b.cfg.node_id);
    resp.endpoint_type = 1;
    resp.cluster_authorized_operations = i32::MIN;
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(b.cfg.node_id);
    broker.host = s(b.cfg.advertised_host.clone());
    broker.port = b.cfg.advertised_port;
    resp.brokers = vec![broker];
    resp
}
