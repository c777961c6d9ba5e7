//! Heartbeat: keeps a member alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use std::sync::PoisonError;

use super::Ctx;
use crate::broker::now_ms;
use crate::codes;

pub(crate) fn handle(ctx: Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let e = ctx
        .broker
        .groups
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .heartbeat(
            req.group_id.as_str(),
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            req.generation_id,
            now_ms(),
        );
    let mut resp = HeartbeatResponse::default();
    resp.error_code = codes::group(e);
    resp
}
