//! ListGroups: every group, optionally filtered by state (v4+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use std::sync::PoisonError;

use super::{Ctx, s};

pub(crate) fn handle(ctx: Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = ctx
        .broker
        .groups
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .list();
    let mut resp = ListGroupsResponse::default();
    for g in groups {
        let state = g.state.name();
        if !req.states_filter.is_empty()
            && !req
                .states_filter
                .iter()
                .any(|f| f.as_str().eq_ignore_ascii_case(state))
        {
            continue;
        }
        let mut lg = ListedGroup::default();
        lg.group_id = GroupId(s(g.group_id));
        lg.protocol_type = s(g.protocol_type);
        lg.group_state = s(state);
        lg.group_type = s("classic");
        resp.groups.push(lg);
    }
    resp
}
