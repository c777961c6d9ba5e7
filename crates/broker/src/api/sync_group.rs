//! SyncGroup: the leader's assignment is handed to every member.

use std::sync::PoisonError;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{Ctx, s};
use crate::broker::now_ms;
use crate::codes;
use crate::group::{GroupError, SyncRequest};

pub(crate) async fn handle(ctx: Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let b = ctx.broker;
    let sr = SyncRequest {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
            .collect(),
    };
    let (token, rx) = b.park_sync();
    let (immediate, ready) = b
        .groups
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .sync(token, sr, now_ms());
    b.deliver(ready).await;
    let result = match immediate {
        Some(r) => {
            b.unpark_sync(token);
            Some(r)
        }
        None => match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(r)) => Some(r),
            _ => {
                b.unpark_sync(token);
                None
            }
        },
    };
    let mut resp = SyncGroupResponse::default();
    match result {
        Some(r) => {
            resp.error_code = codes::group(r.error);
            resp.protocol_type = r.protocol_type.map(s);
            resp.protocol_name = r.protocol_name.map(s);
            resp.assignment = Bytes::from(r.assignment);
        }
        None => resp.error_code = codes::group(GroupError::RebalanceInProgress),
    }
    resp
}
