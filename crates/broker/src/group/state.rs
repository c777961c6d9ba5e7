//! Group state, members and the transitions of the classic protocol.

use std::collections::{BTreeMap, HashMap};

/// Milliseconds (the caller's clock).
pub type Ms = i64;
/// Identifies a parked request so the caller can route its response later.
pub type Token = u64;

/// Group-level errors, mapped to Kafka error codes by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// No error.
    None,
    /// The member id is not (or no longer) in the group.
    UnknownMemberId,
    /// The generation is not the group's current one.
    IllegalGeneration,
    /// A rebalance is under way: rejoin.
    RebalanceInProgress,
    /// First join of a dynamic member: rejoin with the member id given.
    MemberIdRequired,
    /// The member's protocols do not match the group's.
    InconsistentGroupProtocol,
    /// Another member with the same group.instance.id replaced this one.
    FencedInstanceId,
    /// Session timeout outside the broker's limits.
    InvalidSessionTimeout,
    /// The group does not exist.
    GroupIdNotFound,
    /// The group still has members.
    NonEmptyGroup,
    /// The group id is empty.
    InvalidGroupId,
    /// The offsets are for a partition the group is consuming (OffsetDelete).
    GroupSubscribedToTopic,
}

/// Group states of the classic protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (may still hold offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members hold assignments.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker-side limits and defaults.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long an empty group waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `offsets.retention.minutes` in ms: offsets of a group empty this long expire.
    pub offsets_retention_ms: i64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id ("" on first join).
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// e.g. "consumer".
    pub protocol_type: String,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+: dynamic members must first obtain a member id.
    pub require_known_member_id: bool,
}

/// A member in a JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Protocol metadata for the chosen protocol.
    pub metadata: Vec<u8>,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// Error.
    pub error: GroupError,
    /// New generation.
    pub generation_id: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Members with metadata (leader only).
    pub members: Vec<JoinMember>,
}

impl JoinResult {
    fn error(error: GroupError, member_id: &str) -> Self {
        JoinResult {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: vec![],
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Assignments (leader only).
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// Error.
    pub error: GroupError,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Vec<u8>,
}

impl SyncResult {
    fn error(error: GroupError) -> Self {
        SyncResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: vec![],
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommittedOffset {
    /// Offset (next record to consume).
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
    /// Commit time.
    pub commit_ms: Ms,
}

/// An offset write for the `__consumer_offsets` log (value `None` deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// New value, or `None` to delete.
    pub value: Option<CommittedOffset>,
}

/// A member as persisted with its group (Kafka persists group metadata too, so a broker
/// restart does not force a rebalance).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberSnapshot {
    /// Member id.
    pub id: String,
    /// Static id (`group.instance.id`).
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Supported protocols with their metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Current assignment.
    pub assignment: Vec<u8>,
}

/// A group's membership as persisted once it is Stable (or Empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupSnapshot {
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// Members with their assignments (none: an Empty group).
    pub members: Vec<MemberSnapshot>,
}

/// A group metadata write for the `__consumer_offsets` log (`None` deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Group.
    pub group: String,
    /// New value, or `None` to delete.
    pub value: Option<GroupSnapshot>,
}

/// What the caller must do after a step.
#[derive(Debug, Default)]
pub struct Ready {
    /// Parked JoinGroup requests to answer now.
    pub joins: Vec<(Token, JoinResult)>,
    /// Parked SyncGroup requests to answer now.
    pub syncs: Vec<(Token, SyncResult)>,
    /// Offset records to persist (expiry tombstones).
    pub offset_writes: Vec<OffsetRecord>,
    /// Group membership to persist (groups that settled as Stable or Empty).
    pub group_writes: Vec<GroupRecord>,
}

impl Ready {
    fn extend(&mut self, o: Ready) {
        self.joins.extend(o.joins);
        self.syncs.extend(o.syncs);
        self.offset_writes.extend(o.offset_writes);
        self.group_writes.extend(o.group_writes);
    }
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
    last_heartbeat: Ms,
}

#[derive(Debug)]
struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: HashMap<String, Ms>,
    static_members: HashMap<String, String>,
    rebalance_deadline: Ms,
    /// An empty group that got its first member waits until then for more
    /// (`group.initial.rebalance.delay.ms`).
    hold_until: Ms,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    empty_since: Ms,
    join_order: u64,
    /// Membership changed since it was last persisted (written once the group settles).
    dirty: bool,
}

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

/// The coordinator for every group of this broker.
#[derive(Debug)]
pub struct GroupCoordinator {
    cfg: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    next_member: u64,
}

impl GroupCoordinator {
    /// An empty coordinator.
    pub fn new(cfg: CoordinatorConfig) -> Self {
        GroupCoordinator {
            cfg,
            groups: BTreeMap::new(),
            next_member: 0,
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        // Kafka uses client id + UUID; a counter plus a per-process random part is unique.
        format!(
            "{client_id}-{:016x}{:08x}",
            process_nonce(),
            self.next_member
        )
    }

    fn group_mut(&mut self, id: &str, now: Ms) -> &mut Group {
        self.groups.entry(id.to_string()).or_insert_with(|| Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: 0,
            hold_until: 0,
            offsets: BTreeMap::new(),
            empty_since: now,
            join_order: 0,
            dirty: false,
        })
    }

    /// JoinGroup. Either answers at once (`Some`) or parks the request until the
    /// rebalance completes, when the response comes back in a later [`Ready`].
    pub fn join(&mut self, token: Token, req: JoinRequest, now: Ms) -> (Option<JoinResult>, Ready) {
        let (r, mut ready) = self.join_step(token, req, now);
        self.collect_snapshots(&mut ready);
        (r, ready)
    }

    fn join_step(
        &mut self,
        token: Token,
        req: JoinRequest,
        now: Ms,
    ) -> (Option<JoinResult>, Ready) {
        if req.group_id.is_empty() {
            return (
                Some(JoinResult::error(
                    GroupError::InvalidGroupId,
                    &req.member_id,
                )),
                Ready::default(),
            );
        }
        if req.session_timeout_ms < self.cfg.min_session_timeout_ms
            || req.session_timeout_ms > self.cfg.max_session_timeout_ms
        {
            return (
                Some(JoinResult::error(
                    GroupError::InvalidSessionTimeout,
                    &req.member_id,
                )),
                Ready::default(),
            );
        }
        let new_id = if req.member_id.is_empty() {
            Some(self.new_member_id(&req.client_id))
        } else {
            None
        };
        let cfg = self.cfg.clone();
        let group = self.group_mut(&req.group_id, now);
        // Protocol compatibility with the current group.
        if !group.members.is_empty() || group.state != GroupState::Empty {
            if let Some(pt) = &group.protocol_type
                && !group.members.is_empty()
                && pt != &req.protocol_type
            {
                return (
                    Some(JoinResult::error(
                        GroupError::InconsistentGroupProtocol,
                        &req.member_id,
                    )),
                    Ready::default(),
                );
            }
            if !group.members.is_empty() {
                let common = group
                    .candidate_protocols()
                    .into_iter()
                    .any(|p| req.protocols.iter().any(|(n, _)| *n == p));
                let only_member =
                    group.members.len() == 1 && group.members.contains_key(&req.member_id);
                if !common && !only_member {
                    return (
                        Some(JoinResult::error(
                            GroupError::InconsistentGroupProtocol,
                            &req.member_id,
                        )),
                        Ready::default(),
                    );
                }
            }
        }
        if req.protocols.is_empty() {
            return (
                Some(JoinResult::error(
                    GroupError::InconsistentGroupProtocol,
                    &req.member_id,
                )),
                Ready::default(),
            );
        }
        let mut ready = Ready::default();
        match new_id {
            Some(id) => {
                if let Some(instance) = &req.instance_id {
                    // Static member: no MEMBER_ID_REQUIRED round trip.
                    if let Some(old_id) = group.static_members.get(instance).cloned()
                        && let Some(mut old) = group.members.remove(&old_id)
                    {
                        // Replace the old member; fence its id.
                        if let Some(t) = old.awaiting_join.take() {
                            ready.joins.push((
                                t,
                                JoinResult::error(GroupError::FencedInstanceId, &old_id),
                            ));
                        }
                        if let Some(t) = old.awaiting_sync.take() {
                            ready
                                .syncs
                                .push((t, SyncResult::error(GroupError::FencedInstanceId)));
                        }
                        let protocols_same = old.protocols == req.protocols;
                        old.id = id.clone();
                        old.client_id = req.client_id.clone();
                        old.client_host = req.client_host.clone();
                        old.session_timeout_ms = req.session_timeout_ms;
                        old.rebalance_timeout_ms = req.rebalance_timeout_ms;
                        old.protocols = req.protocols.clone();
                        old.last_heartbeat = now;
                        group.static_members.insert(instance.clone(), id.clone());
                        group.dirty = true;
                        if group.leader.as_deref() == Some(old_id.as_str()) {
                            group.leader = Some(id.clone());
                        }
                        group.members.insert(id.clone(), old);
                        if group.state == GroupState::Stable && protocols_same {
                            // Kafka: a static member rejoining with the same metadata gets
                            // the current generation back without a rebalance.
                            let result = group.join_result_for(&id, false);
                            return (Some(result), ready);
                        }
                        let r = group.add_or_update_and_park(token, &id, &req, now, &cfg);
                        ready.extend(r);
                        return (None, ready);
                    }
                    group.static_members.insert(instance.clone(), id.clone());
                    let r = group.add_or_update_and_park(token, &id, &req, now, &cfg);
                    ready.extend(r);
                    return (None, ready);
                }
                if req.require_known_member_id {
                    group
                        .pending
                        .insert(id.clone(), now + req.session_timeout_ms as i64);
                    return (
                        Some(JoinResult::error(GroupError::MemberIdRequired, &id)),
                        ready,
                    );
                }
                let r = group.add_or_update_and_park(token, &id, &req, now, &cfg);
                ready.extend(r);
                (None, ready)
            }
            None => {
                let id = req.member_id.clone();
                let known = group.members.contains_key(&id);
                let pending = group.pending.remove(&id).is_some();
                if !known && !pending {
                    return (
                        Some(JoinResult::error(GroupError::UnknownMemberId, &id)),
                        ready,
                    );
                }
                if let Some(instance) = &req.instance_id
                    && group.static_members.get(instance).is_some_and(|m| *m != id)
                {
                    return (
                        Some(JoinResult::error(GroupError::FencedInstanceId, &id)),
                        ready,
                    );
                }
                if known
                    && group.state == GroupState::Stable
                    && group.leader.as_deref() != Some(id.as_str())
                    && group.members[&id].protocols == req.protocols
                {
                    // A follower rejoining with unchanged metadata in a stable group:
                    // Kafka answers with the current generation, no rebalance.
                    let m = group.members.get_mut(&id).expect("known");
                    m.last_heartbeat = now;
                    return (Some(group.join_result_for(&id, false)), ready);
                }
                let r = group.add_or_update_and_park(token, &id, &req, now, &cfg);
                ready.extend(r);
                (None, ready)
            }
        }
    }

    /// SyncGroup. Followers are parked until the leader's assignment arrives.
    pub fn sync(&mut self, token: Token, req: SyncRequest, now: Ms) -> (Option<SyncResult>, Ready) {
        let (r, mut ready) = self.sync_step(token, req, now);
        self.collect_snapshots(&mut ready);
        (r, ready)
    }

    fn sync_step(
        &mut self,
        token: Token,
        req: SyncRequest,
        now: Ms,
    ) -> (Option<SyncResult>, Ready) {
        let mut ready = Ready::default();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return (Some(SyncResult::error(GroupError::UnknownMemberId)), ready);
        };
        if let Some(e) = group.check_member(&req.member_id, req.instance_id.as_deref()) {
            return (Some(SyncResult::error(e)), ready);
        }
        if req.generation_id != group.generation {
            return (
                Some(SyncResult::error(GroupError::IllegalGeneration)),
                ready,
            );
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                (Some(SyncResult::error(GroupError::UnknownMemberId)), ready)
            }
            GroupState::PreparingRebalance => (
                Some(SyncResult::error(GroupError::RebalanceInProgress)),
                ready,
            ),
            GroupState::Stable => {
                let m = group.members.get_mut(&req.member_id).expect("checked");
                m.last_heartbeat = now;
                let assignment = m.assignment.clone();
                (Some(group.sync_ok(assignment)), ready)
            }
            GroupState::CompletingRebalance => {
                let m = group.members.get_mut(&req.member_id).expect("checked");
                m.last_heartbeat = now;
                m.awaiting_sync = Some(token);
                if group.leader.as_deref() == Some(req.member_id.as_str()) {
                    let assigned: HashMap<String, Vec<u8>> = req.assignments.into_iter().collect();
                    let ok = group.sync_ok(vec![]);
                    for m in group.members.values_mut() {
                        m.assignment = assigned.get(&m.id).cloned().unwrap_or_default();
                        if let Some(t) = m.awaiting_sync.take() {
                            let mut r = ok.clone();
                            r.assignment = m.assignment.clone();
                            ready.syncs.push((t, r));
                        }
                    }
                    group.state = GroupState::Stable;
                    group.dirty = true;
                }
                (None, ready)
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Ms,
    ) -> GroupError {
        let Some(group) = self.groups.get_mut(group_id) else {
            return GroupError::UnknownMemberId;
        };
        if let Some(e) = group.check_member(member_id, instance_id) {
            return e;
        }
        if generation != group.generation {
            return GroupError::IllegalGeneration;
        }
        group
            .members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat = now;
        match group.state {
            GroupState::PreparingRebalance => GroupError::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => GroupError::None,
            _ => GroupError::UnknownMemberId,
        }
    }

    /// LeaveGroup for one or more members (v3+ batches by member or instance id).
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: Ms,
    ) -> (GroupError, Vec<GroupError>, Ready) {
        let (e, errors, mut ready) = self.leave_step(group_id, members, now);
        self.collect_snapshots(&mut ready);
        (e, errors, ready)
    }

    fn leave_step(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: Ms,
    ) -> (GroupError, Vec<GroupError>, Ready) {
        let mut ready = Ready::default();
        let cfg = self.cfg.clone();
        let Some(group) = self.groups.get_mut(group_id) else {
            return (
                GroupError::UnknownMemberId,
                vec![GroupError::UnknownMemberId; members.len()],
                ready,
            );
        };
        let mut errors = Vec::new();
        let mut removed_any = false;
        for (member_id, instance) in members {
            let id = match instance {
                Some(inst) => match group.static_members.get(inst) {
                    Some(cur) if member_id.is_empty() || cur == member_id => cur.clone(),
                    Some(_) => {
                        errors.push(GroupError::FencedInstanceId);
                        continue;
                    }
                    None => {
                        errors.push(GroupError::UnknownMemberId);
                        continue;
                    }
                },
                None => member_id.clone(),
            };
            if group.remove_member(&id, &mut ready) {
                removed_any = true;
                errors.push(GroupError::None);
            } else if group.pending.remove(&id).is_some() {
                errors.push(GroupError::None);
            } else {
                errors.push(GroupError::UnknownMemberId);
            }
        }
        if removed_any {
            ready.extend(group.membership_changed(now, &cfg));
        }
        (GroupError::None, errors, ready)
    }

    /// Advance time: session and rebalance timeouts, pending member expiry, offset expiry.
    pub fn tick(&mut self, now: Ms) -> Ready {
        let mut ready = self.tick_step(now);
        self.collect_snapshots(&mut ready);
        ready
    }

    fn tick_step(&mut self, now: Ms) -> Ready {
        let mut ready = Ready::default();
        let cfg = self.cfg.clone();
        let mut dead = Vec::new();
        for group in self.groups.values_mut() {
            group.pending.retain(|_, exp| *exp > now);
            match group.state {
                GroupState::PreparingRebalance => {
                    // Members that have not rejoined still time out by session.
                    let expired: Vec<String> = group
                        .members
                        .values()
                        .filter(|m| {
                            m.awaiting_join.is_none()
                                && now - m.last_heartbeat > m.session_timeout_ms as i64
                        })
                        .map(|m| m.id.clone())
                        .collect();
                    for id in expired {
                        group.remove_member(&id, &mut ready);
                    }
                    if group.all_joined() && now >= group.hold_until {
                        ready.extend(group.complete_join(now, false));
                    } else if now >= group.rebalance_deadline {
                        ready.extend(group.complete_join(now, true));
                    }
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    let expired: Vec<String> = group
                        .members
                        .values()
                        .filter(|m| now - m.last_heartbeat > m.session_timeout_ms as i64)
                        .map(|m| m.id.clone())
                        .collect();
                    let mut changed = false;
                    for id in expired {
                        changed |= group.remove_member(&id, &mut ready);
                    }
                    if changed {
                        ready.extend(group.membership_changed(now, &cfg));
                    }
                }
                GroupState::Empty => {
                    if now - group.empty_since > cfg.offsets_retention_ms {
                        for ((t, p), _) in std::mem::take(&mut group.offsets) {
                            ready.offset_writes.push(OffsetRecord {
                                group: group.id.clone(),
                                topic: t,
                                partition: p,
                                value: None,
                            });
                        }
                        // Its membership record goes too, or a restart would bring it back.
                        ready.group_writes.push(GroupRecord {
                            group: group.id.clone(),
                            value: None,
                        });
                        dead.push(group.id.clone());
                    }
                }
                GroupState::Dead => dead.push(group.id.clone()),
            }
        }
        for d in dead {
            self.groups.remove(&d);
        }
        ready
    }

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
        if let Some(e) = group.check_member(member_id, instance_id) {
            return e;
        }
        if generation != group.generation {
            return GroupError::IllegalGeneration;
        }
        group
            .members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat = now;
        match group.state {
            GroupState::CompletingRebalance => GroupError::RebalanceInProgress,
            _ => GroupError::None,
        }
    }

    /// Snapshots of groups whose membership changed and that have settled (Stable or
    /// Empty): persisting them lets a restarted broker keep its groups without a rebalance.
    fn collect_snapshots(&mut self, ready: &mut Ready) {
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

fn process_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    })
}

impl Group {
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<GroupError> {
        if let Some(inst) = instance_id
            && let Some(cur) = self.static_members.get(inst)
            && cur != member_id
        {
            return Some(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Some(GroupError::UnknownMemberId);
        }
        None
    }

    fn candidate_protocols(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else {
            return vec![];
        };
        let mut cands: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            cands.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        cands
    }

    fn select_protocol(&self) -> Option<String> {
        let cands = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = cands.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| cands.contains(n))
                && let Some(v) = votes.iter_mut().find(|(c, _)| c == n)
            {
                v.1 += 1;
            }
        }
        // Most votes; ties go to the earlier candidate (the first member's preference).
        let mut best: Option<(String, usize)> = None;
        for (c, v) in votes {
            if best.as_ref().is_none_or(|(_, bv)| v > *bv) {
                best = Some((c, v));
            }
        }
        best.map(|(c, _)| c)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn add_or_update_and_park(
        &mut self,
        token: Token,
        id: &str,
        req: &JoinRequest,
        now: Ms,
        cfg: &CoordinatorConfig,
    ) -> Ready {
        let mut ready = Ready::default();
        self.join_order += 1;
        let m = self
            .members
            .entry(id.to_string())
            .or_insert_with(|| Member {
                id: id.to_string(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: vec![],
                assignment: vec![],
                awaiting_join: None,
                awaiting_sync: None,
                last_heartbeat: now,
            });
        if let Some(old) = m.awaiting_join.replace(token) {
            // A duplicate join from the same member: the newer request wins.
            ready
                .joins
                .push((old, JoinResult::error(GroupError::RebalanceInProgress, id)));
        }
        if let Some(t) = m.awaiting_sync.take() {
            ready
                .syncs
                .push((t, SyncResult::error(GroupError::RebalanceInProgress)));
        }
        m.protocols = req.protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.client_id = req.client_id.clone();
        m.last_heartbeat = now;
        if self.protocol_type.is_none() || self.members.len() == 1 {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.to_string());
        }
        match self.state {
            GroupState::Empty => {
                self.state = GroupState::PreparingRebalance;
                self.hold_until = now + cfg.initial_rebalance_delay_ms.max(0);
                self.rebalance_deadline =
                    self.hold_until.max(now + req.rebalance_timeout_ms as i64);
                ready.extend(self.maybe_complete(now));
            }
            GroupState::PreparingRebalance => ready.extend(self.maybe_complete(now)),
            GroupState::CompletingRebalance | GroupState::Stable => {
                ready.extend(self.prepare_rebalance(now));
                ready.extend(self.maybe_complete(now));
            }
            GroupState::Dead => {}
        }
        ready
    }

    fn prepare_rebalance(&mut self, now: Ms) -> Ready {
        let mut ready = Ready::default();
        // Members waiting for an assignment must rejoin.
        for m in self.members.values_mut() {
            if let Some(t) = m.awaiting_sync.take() {
                ready
                    .syncs
                    .push((t, SyncResult::error(GroupError::RebalanceInProgress)));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0);
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = now + timeout;
        ready
    }

    fn maybe_complete(&mut self, now: Ms) -> Ready {
        if self.state == GroupState::PreparingRebalance
            && self.all_joined()
            && now >= self.hold_until
        {
            return self.complete_join(now, false);
        }
        Ready::default()
    }

    /// End the join phase: drop members that did not rejoin, bump the generation, answer.
    fn complete_join(&mut self, now: Ms, timed_out: bool) -> Ready {
        let mut ready = Ready::default();
        if timed_out {
            let missing: Vec<String> = self
                .members
                .values()
                .filter(|m| m.awaiting_join.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in missing {
                self.remove_member(&id, &mut ready);
            }
            self.pending.clear();
        }
        self.generation += 1;
        self.hold_until = 0;
        self.dirty = true;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.empty_since = now;
            return ready;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result_for(&id, is_leader);
            let m = self.members.get_mut(&id).expect("member");
            m.last_heartbeat = now;
            if let Some(t) = m.awaiting_join.take() {
                ready.joins.push((t, result));
            }
        }
        ready
    }

    fn join_result_for(&self, id: &str, with_members: bool) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(id);
        JoinResult {
            error: GroupError::None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members: if with_members && is_leader {
                self.members
                    .values()
                    .map(|m| JoinMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: self
                            .protocol
                            .as_ref()
                            .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                            .map(|(_, md)| md.clone())
                            .unwrap_or_default(),
                    })
                    .collect()
            } else {
                vec![]
            },
        }
    }

    fn sync_ok(&self, assignment: Vec<u8>) -> SyncResult {
        SyncResult {
            error: GroupError::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    /// Remove a member, answering its parked requests. Returns whether it existed.
    fn remove_member(&mut self, id: &str, ready: &mut Ready) -> bool {
        let Some(m) = self.members.remove(id) else {
            return false;
        };
        if let Some(t) = m.awaiting_join {
            ready
                .joins
                .push((t, JoinResult::error(GroupError::UnknownMemberId, id)));
        }
        if let Some(t) = m.awaiting_sync {
            ready
                .syncs
                .push((t, SyncResult::error(GroupError::UnknownMemberId)));
        }
        if let Some(inst) = &m.instance_id
            && self.static_members.get(inst).is_some_and(|cur| cur == id)
        {
            self.static_members.remove(inst);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        true
    }

    fn membership_changed(&mut self, now: Ms, _cfg: &CoordinatorConfig) -> Ready {
        let mut ready = Ready::default();
        if self.members.is_empty() && self.pending.is_empty() {
            if self.state != GroupState::Empty {
                self.generation += 1;
                self.dirty = true;
            }
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.empty_since = now;
            return ready;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                ready.extend(self.prepare_rebalance(now));
                ready.extend(self.maybe_complete(now));
            }
            GroupState::PreparingRebalance => ready.extend(self.maybe_complete(now)),
            _ => {}
        }
        ready
    }
}
