//! The classic rebalance protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the
//! timeouts driven by `tick`, with the per-group transitions (`impl Group`) behind them.

use std::collections::HashMap;

use super::state::{Group, GroupCoordinator, Member};
use super::types::{
    CoordinatorConfig, GroupError, GroupRecord, GroupState, JoinMember, JoinRequest, JoinResult,
    Ms, OffsetRecord, Ready, SyncRequest, SyncResult, Token,
};

impl GroupCoordinator {
    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        // Kafka uses client id + UUID; a counter plus a per-process random part is unique.
        format!(
            "{client_id}-{:016x}{:08x}",
            process_nonce(),
            self.next_member
        )
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
        if let Some(e) = group.touch_member(member_id, instance_id, generation, now) {
            return e;
        }
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
    /// A request from a member of this generation keeps it alive; `Some` says why the
    /// request is refused (unknown or fenced member, stale generation).
    pub(super) fn touch_member(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Ms,
    ) -> Option<GroupError> {
        if let Some(e) = self.check_member(member_id, instance_id) {
            return Some(e);
        }
        if generation != self.generation {
            return Some(GroupError::IllegalGeneration);
        }
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat = now;
        None
    }

    pub(super) fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<GroupError> {
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
