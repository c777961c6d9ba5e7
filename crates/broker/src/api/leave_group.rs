//! LeaveGroup: one member (v0–2) or a batch by member or instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{Ctx, s};
use crate::broker::now_ms;
use crate::codes;

pub(crate) async fn handle(ctx: Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let b = ctx.broker;
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let (top, per, ready) =
        b.groups
            .lock()
            .expect("groups")
            .leave(req.group_id.as_str(), &members, now_ms());
    b.deliver(ready).await;
    let mut resp = LeaveGroupResponse::default();
    if ctx.version >= 3 {
        resp.error_code = codes::group(top);
        resp.members = members
            .into_iter()
            .zip(per)
            .map(|((m, i), e)| {
                let mut r = MemberResponse::default();
                r.member_id = s(m);
                r.group_instance_id = i.map(s);
                r.error_code = codes::group(e);
                r
            })
            .collect();
    } else {
        resp.error_code = codes::group(per.first().copied().unwrap_or(top));
    }
    resp
}
