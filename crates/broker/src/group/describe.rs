//! Read-only views of the groups for DescribeGroups and ListGroups.

use super::state::GroupCoordinator;
use super::types::GroupState;

/// Member view for DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Vec<u8>,
    /// Current assignment.
    pub assignment: Vec<u8>,
}

/// Group view for DescribeGroups / ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Protocol type ("" when none).
    pub protocol_type: String,
    /// Chosen protocol ("" when none).
    pub protocol: String,
    /// Generation.
    pub generation: i32,
    /// Members.
    pub members: Vec<MemberDescription>,
}

impl GroupCoordinator {
    /// All groups.
    pub fn list(&self) -> Vec<GroupDescription> {
        self.groups
            .keys()
            .filter_map(|g| self.describe(g))
            .collect()
    }

    /// One group, if known.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        Some(GroupDescription {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol.clone().unwrap_or_default(),
            generation: g.generation,
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: g
                        .protocol
                        .as_ref()
                        .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }
}
