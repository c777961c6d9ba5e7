//! FindCoordinator: this broker coordinates every group.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{Ctx, s};

pub(crate) fn handle(ctx: Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let b = ctx.broker;
    let mut resp = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let mut c = Coordinator::default();
                c.key = k.clone();
                c.node_id = BrokerId(b.cfg.node_id);
                c.host = s(b.cfg.advertised_host.clone());
                c.port = b.cfg.advertised_port;
                c
            })
            .collect();
    } else {
        resp.node_id = BrokerId(b.cfg.node_id);
        resp.host = s(b.cfg.advertised_host.clone());
        resp.port = b.cfg.advertised_port;
    }
    resp
}
