//! DescribeGroups: state, protocol and members with their assignments.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use std::sync::PoisonError;

use super::{Ctx, s};

pub(crate) fn handle(ctx: Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let coord = ctx
        .broker
        .groups
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut dg = DescribedGroup::default();
        dg.group_id = id.clone();
        dg.authorized_operations = i32::MIN;
        match coord.describe(id.as_str()) {
            // Kafka answers an unknown group as "Dead" with no error.
            None => dg.group_state = s("Dead"),
            Some(g) => {
                dg.group_state = s(g.state.name());
                dg.protocol_type = s(g.protocol_type);
                dg.protocol_data = s(g.protocol);
                dg.members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = s(m.member_id);
                        dm.group_instance_id = m.instance_id.map(s);
                        dm.client_id = s(m.client_id);
                        dm.client_host = s(m.client_host);
                        dm.member_metadata = Bytes::from(m.metadata);
                        dm.member_assignment = Bytes::from(m.assignment);
                        dm
                    })
                    .collect();
            }
        }
        resp.groups.push(dg);
    }
    resp
}
