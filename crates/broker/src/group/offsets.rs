//! Committed offsets and persisted membership: OffsetCommit checks, applying durable
//! offset records, group snapshots and their restore at startup, DeleteGroups and
//! OffsetDelete.

use std::collections::BTreeMap;

use super::state::{GroupCoordinator, Member};
use super::types::{
    CommittedOffset, GroupError, GroupRecord, GroupSnapshot, GroupState, MemberSnapshot, Ms,
    OffsetRecord, Ready,
};

impl GroupCoordinator {
    /// Check an OffsetCommit; `generation` -1 with an empty member id is a "simple"
    /// commit, allowed only for groups without members. Returns the records to persist
    /// (apply them with [`GroupCoordinator::apply_offsets`] once durable).
    pub fn validate_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Ms,
    ) -> GroupError {
        if group_id.is_empty() {
            return GroupError::InvalidGroupId;
        }
        let group = self.group_mut(group_id, now);
        if generation < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                GroupError::None
            } else {
                GroupError::UnknownMemberId
            };
        }
        if let Some(e) = group.touch_member(member_id, instance_id, generation, now) {
            return e;
        }
        match group.state {
            GroupState::CompletingRebalance => GroupError::RebalanceInProgress,
            _ => GroupError::None,
        }
    }

    /// Snapshots of groups whose membership changed and that have settled (Stable or
    /// Empty): persisting them lets a restarted broker keep its groups without a rebalance.
    pub(super) fn collect_snapshots(&mut self, ready: &mut Ready) {
        for g in self.groups.values_mut() {
            if !g.dirty || !matches!(g.state, GroupState::Stable | GroupState::Empty) {
                continue;
            }
            g.dirty = false;
            ready.group_writes.push(GroupRecord {
                group: g.id.clone(),
                value: Some(GroupSnapshot {
                    generation: g.generation,
                    protocol_type: g.protocol_type.clone(),
                    protocol: g.protocol.clone(),
                    leader: g.leader.clone(),
                    members: g
                        .members
                        .values()
                        .map(|m| MemberSnapshot {
                            id: m.id.clone(),
                            instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            protocols: m.protocols.clone(),
                            assignment: m.assignment.clone(),
                        })
                        .collect(),
                }),
            });
        }
    }

    /// Restore persisted group membership at startup (after the offsets). Members get a
    /// full session timeout from `now` to heartbeat again; a group with members is Stable
    /// in its stored generation, one without is Empty.
    pub fn restore_groups(
        &mut self,
        snapshots: impl IntoIterator<Item = (String, GroupSnapshot)>,
        now: Ms,
    ) {
        for (id, snap) in snapshots {
            let group = self.group_mut(&id, now);
            group.generation = snap.generation;
            group.protocol_type = snap.protocol_type;
            group.protocol = snap.protocol;
            group.members.clear();
            group.static_members.clear();
            for m in snap.members {
                if let Some(inst) = &m.instance_id {
                    group.static_members.insert(inst.clone(), m.id.clone());
                }
                group.members.insert(
                    m.id.clone(),
                    Member {
                        id: m.id,
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                        session_timeout_ms: m.session_timeout_ms,
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        protocols: m.protocols,
                        assignment: m.assignment,
                        awaiting_join: None,
                        awaiting_sync: None,
                        last_heartbeat: now,
                    },
                );
            }
            group.leader = snap
                .leader
                .filter(|l| group.members.contains_key(l))
                .or_else(|| group.members.keys().next().cloned());
            group.state = if group.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
            group.dirty = false;
        }
    }

    /// Apply durable offset records (also used to restore state at startup).
    pub fn apply_offsets(&mut self, records: &[OffsetRecord], now: Ms) {
        for r in records {
            let group = self.group_mut(&r.group, now);
            match &r.value {
                Some(v) => {
                    group
                        .offsets
                        .insert((r.topic.clone(), r.partition), v.clone());
                }
                None => {
                    group.offsets.remove(&(r.topic.clone(), r.partition));
                }
            }
            if group.members.is_empty() && group.state == GroupState::Empty {
                group.empty_since = group
                    .empty_since
                    .max(r.value.as_ref().map_or(0, |v| v.commit_ms));
            }
        }
    }

    /// Committed offsets of a group: all, or the listed partitions (missing ones absent).
    pub fn committed(&self, group_id: &str) -> BTreeMap<(String, i32), CommittedOffset> {
        self.groups
            .get(group_id)
            .map(|g| g.offsets.clone())
            .unwrap_or_default()
    }

    /// DeleteGroups: only empty groups; returns the tombstones to persist.
    pub fn delete_group(&mut self, group_id: &str) -> Result<Vec<OffsetRecord>, GroupError> {
        let Some(g) = self.groups.get(group_id) else {
            return Err(GroupError::GroupIdNotFound);
        };
        if !g.members.is_empty() || g.state != GroupState::Empty {
            return Err(GroupError::NonEmptyGroup);
        }
        let g = self.groups.remove(group_id).expect("present");
        Ok(g.offsets
            .into_keys()
            .map(|(t, p)| OffsetRecord {
                group: group_id.to_string(),
                topic: t,
                partition: p,
                value: None,
            })
            .collect())
    }

    /// OffsetDelete check: a group consuming the topic (per the caller's view of its
    /// subscriptions) refuses. Returns tombstones for the partitions that had offsets.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, i32, GroupError)>, GroupError> {
        let Some(g) = self.groups.get(group_id) else {
            return Err(GroupError::GroupIdNotFound);
        };
        let active = !g.members.is_empty();
        Ok(partitions
            .iter()
            .map(|(t, p)| {
                let e = if active && subscribed(t) {
                    GroupError::GroupSubscribedToTopic
                } else {
                    GroupError::None
                };
                (t.clone(), *p, e)
            })
            .collect())
    }
}
