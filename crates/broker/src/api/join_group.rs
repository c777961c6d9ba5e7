//! JoinGroup: hand the request to the coordinator; wait for the rebalance to complete.

use std::sync::PoisonError;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{Ctx, s};
use crate::broker::now_ms;
use crate::codes;
use crate::group::{GroupError, JoinRequest, JoinResult};

pub(crate) async fn handle(ctx: Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let b = ctx.broker;
    let rebalance_timeout = if ctx.version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let jr = JoinRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: rebalance_timeout,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let member_id = jr.member_id.clone();
    let (token, rx) = b.park_join();
    let (immediate, ready) = b
        .groups
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join(token, jr, now_ms());
    b.deliver(ready).await;
    let result = match immediate {
        Some(r) => {
            b.unpark_join(token);
            r
        }
        None => {
            let wait = Duration::from_millis(rebalance_timeout.max(0) as u64 + 5_000);
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(r)) => r,
                _ => {
                    b.unpark_join(token);
                    JoinResult {
                        error: GroupError::RebalanceInProgress,
                        generation_id: -1,
                        protocol_type: None,
                        protocol_name: None,
                        leader: String::new(),
                        member_id,
                        members: vec![],
                    }
                }
            }
        }
    };
    let mut resp = JoinGroupResponse::default();
    resp.error_code = codes::group(result.error);
    resp.generation_id = result.generation_id;
    resp.protocol_type = result.protocol_type.map(s);
    // Before v7 the protocol name is not nullable.
    resp.protocol_name = Some(s(result.protocol_name.unwrap_or_default()));
    resp.leader = s(result.leader);
    resp.member_id = s(result.member_id);
    resp.members = result
        .members
        .into_iter()
        .map(|m| {
            let mut jm = JoinGroupResponseMember::default();
            jm.member_id = s(m.member_id);
            jm.group_instance_id = m.instance_id.map(s);
            jm.metadata = Bytes::from(m.metadata);
            jm
        })
        .collect();
    resp
}
