//! Deterministic join/sync/heartbeat/leave/timeout sequences.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn req(member: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), p.as_bytes().to_vec()))
            .collect(),
        require_known_member_id: true,
    }
}

/// A coordinator without the initial rebalance delay (most tests step one member).
fn coord() -> GroupCoordinator {
    GroupCoordinator::new(CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    })
}

#[test]
fn an_empty_group_waits_kafkas_initial_rebalance_delay() {
    assert_eq!(
        CoordinatorConfig::default().initial_rebalance_delay_ms,
        3_000,
        "Kafka's group.initial.rebalance.delay.ms"
    );
    let mut c = GroupCoordinator::new(CoordinatorConfig::default());
    let (_, ready) = join_new(&mut c, 1, 0);
    assert!(ready.joins.is_empty());
    assert!(c.tick(2_900).joins.is_empty(), "held for the delay");
    assert_eq!(
        c.tick(3_100).joins.len(),
        1,
        "then the first generation forms"
    );
}

/// First join round trip: MEMBER_ID_REQUIRED, then a join that completes at once.
fn join_new(c: &mut GroupCoordinator, token: Token, now: Ms) -> (String, Ready) {
    let (r, ready) = c.join(token, req("", &["range"]), now);
    let r = r.expect("immediate MEMBER_ID_REQUIRED");
    assert_eq!(r.error, GroupError::MemberIdRequired);
    assert!(ready.joins.is_empty());
    let id = r.member_id;
    let (r, ready) = c.join(token, req(&id, &["range"]), now);
    assert!(
        r.is_none(),
        "the join is parked until the rebalance completes"
    );
    (id, ready)
}

fn sync(
    c: &mut GroupCoordinator,
    token: Token,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Vec<u8>)>,
    now: Ms,
) -> (Option<SyncResult>, Ready) {
    c.sync(
        token,
        SyncRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            instance_id: None,
            assignments,
        },
        now,
    )
}

#[test]
fn single_member_joins_syncs_and_heartbeats() {
    let mut c = coord();
    let (a, ready) = join_new(&mut c, 1, 0);
    assert_eq!(ready.joins.len(), 1);
    let (t, r) = &ready.joins[0];
    assert_eq!(*t, 1);
    assert_eq!(r.error, GroupError::None);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, a);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1, "the leader gets the member list");
    let (r, ready) = sync(&mut c, 2, &a, 1, vec![(a.clone(), b"A".to_vec())], 10);
    assert!(r.is_none());
    assert_eq!(
        ready.syncs,
        vec![(
            2,
            SyncResult {
                error: GroupError::None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: b"A".to_vec()
            }
        )]
    );
    assert_eq!(c.heartbeat("g", &a, None, 1, 20), GroupError::None);
    assert_eq!(
        c.heartbeat("g", &a, None, 0, 20),
        GroupError::IllegalGeneration
    );
    assert_eq!(
        c.heartbeat("g", "nobody", None, 1, 20),
        GroupError::UnknownMemberId
    );
    assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
}

#[test]
fn second_member_triggers_rebalance_and_both_get_assignments() {
    let mut c = coord();
    let (a, _) = join_new(&mut c, 1, 0);
    sync(&mut c, 2, &a, 1, vec![(a.clone(), b"A-all".to_vec())], 0);
    let (b, ready) = join_new(&mut c, 3, 100);
    assert!(ready.joins.is_empty(), "B waits for A to rejoin");
    assert_eq!(
        c.describe("g").unwrap().state,
        GroupState::PreparingRebalance
    );
    assert_eq!(
        c.heartbeat("g", &a, None, 1, 200),
        GroupError::RebalanceInProgress
    );
    let (r, ready) = c.join(4, req(&a, &["range"]), 300);
    assert!(r.is_none());
    assert_eq!(ready.joins.len(), 2);
    let by_token: std::collections::HashMap<_, _> = ready.joins.into_iter().collect();
    assert_eq!(by_token[&3].generation_id, 2);
    assert_eq!(by_token[&4].leader, a, "the existing leader stays leader");
    assert_eq!(by_token[&4].members.len(), 2);
    assert!(
        by_token[&3].members.is_empty(),
        "followers get no member list"
    );
    // Follower syncs first and waits; the leader's sync releases both.
    let (r, ready) = sync(&mut c, 5, &b, 2, vec![], 400);
    assert!(r.is_none() && ready.syncs.is_empty());
    let (_, ready) = sync(
        &mut c,
        6,
        &a,
        2,
        vec![(a.clone(), b"A".to_vec()), (b.clone(), b"B".to_vec())],
        500,
    );
    let by_token: std::collections::HashMap<_, _> = ready.syncs.into_iter().collect();
    assert_eq!(by_token[&5].assignment, b"B");
    assert_eq!(by_token[&6].assignment, b"A");
    assert_eq!(c.describe("g").unwrap().members.len(), 2);
}

fn stable_pair(c: &mut GroupCoordinator) -> (String, String) {
    let (a, _) = join_new(c, 1, 0);
    sync(c, 2, &a, 1, vec![], 0);
    let (b, _) = join_new(c, 3, 0);
    c.join(4, req(&a, &["range"]), 0);
    sync(c, 5, &b, 2, vec![], 0);
    sync(
        c,
        6,
        &a,
        2,
        vec![(a.clone(), b"A".to_vec()), (b.clone(), b"B".to_vec())],
        0,
    );
    assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
    (a, b)
}

#[test]
fn session_timeout_removes_a_silent_member() {
    let mut c = coord();
    let (a, b) = stable_pair(&mut c);
    assert_eq!(c.heartbeat("g", &a, None, 2, 9_000), GroupError::None);
    let ready = c.tick(SESSION as i64 + 1);
    assert!(ready.joins.is_empty());
    let d = c.describe("g").unwrap();
    assert_eq!(d.state, GroupState::PreparingRebalance);
    assert!(d.members.iter().all(|m| m.member_id != b), "B expired");
    assert_eq!(
        c.heartbeat("g", &b, None, 2, 10_002),
        GroupError::UnknownMemberId
    );
    let (_, ready) = c.join(7, req(&a, &["range"]), 10_003);
    assert_eq!(ready.joins.len(), 1);
    assert_eq!(ready.joins[0].1.generation_id, 3);
    assert_eq!(ready.joins[0].1.members.len(), 1);
}

#[test]
fn leave_triggers_rebalance_and_last_leave_empties_the_group() {
    let mut c = coord();
    let (a, b) = stable_pair(&mut c);
    let (e, per, _) = c.leave("g", &[(b.clone(), None)], 10);
    assert_eq!((e, per), (GroupError::None, vec![GroupError::None]));
    assert_eq!(
        c.describe("g").unwrap().state,
        GroupState::PreparingRebalance
    );
    let (_, ready) = c.join(7, req(&a, &["range"]), 20);
    assert_eq!(ready.joins[0].1.generation_id, 3);
    let (_, per, _) = c.leave("g", &[(a.clone(), None), ("ghost".into(), None)], 30);
    assert_eq!(per, vec![GroupError::None, GroupError::UnknownMemberId]);
    let d = c.describe("g").unwrap();
    assert_eq!(d.state, GroupState::Empty);
    assert_eq!(d.generation, 4);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut c = coord();
    let (a, b) = stable_pair(&mut c);
    let (_cc, ready) = join_new(&mut c, 10, 1_000);
    assert!(ready.joins.is_empty());
    c.join(11, req(&a, &["range"]), 1_100);
    // B keeps heartbeating (and is told to rejoin) but never does.
    for t in (2_000..31_000).step_by(2_000) {
        assert_eq!(
            c.heartbeat("g", &b, None, 2, t),
            GroupError::RebalanceInProgress
        );
        assert_eq!(
            c.heartbeat("g", &a, None, 2, t),
            GroupError::RebalanceInProgress
        );
        assert!(c.tick(t).joins.is_empty());
    }
    let ready = c.tick(1_000 + REBALANCE as i64 + 1);
    assert_eq!(ready.joins.len(), 2);
    let d = c.describe("g").unwrap();
    assert_eq!(d.members.len(), 2);
    assert!(d.members.iter().all(|m| m.member_id != b));
    assert_eq!(d.generation, 3);
}

#[test]
fn static_member_restart_keeps_generation_and_fences_the_old_id() {
    let mut c = coord();
    let mut r1 = req("", &["range"]);
    r1.instance_id = Some("host-1".into());
    let (r, ready) = c.join(1, r1.clone(), 0);
    assert!(r.is_none(), "static members skip MEMBER_ID_REQUIRED");
    let old = ready.joins[0].1.member_id.clone();
    sync(&mut c, 2, &old, 1, vec![(old.clone(), b"P0".to_vec())], 0);
    // The process restarts and joins again with the same instance id.
    let (r, _) = c.join(3, r1.clone(), 5_000);
    let r = r.expect("immediate answer, no rebalance");
    assert_eq!(r.error, GroupError::None);
    assert_eq!(r.generation_id, 1);
    let new = r.member_id.clone();
    assert_ne!(new, old);
    assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
    let (r, _) = c.sync(
        4,
        SyncRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: new.clone(),
            instance_id: Some("host-1".into()),
            assignments: vec![],
        },
        5_001,
    );
    assert_eq!(r.unwrap().assignment, b"P0", "the assignment carries over");
    assert_eq!(
        c.heartbeat("g", &old, Some("host-1"), 1, 5_002),
        GroupError::FencedInstanceId
    );
}

#[test]
fn protocol_is_chosen_by_vote_among_common_ones() {
    let mut c = coord();
    let (a, _) = {
        let (r, _) = c.join(1, req("", &["range", "roundrobin"]), 0);
        let id = r.unwrap().member_id;
        let (_, ready) = c.join(1, req(&id, &["range", "roundrobin"]), 0);
        (id, ready)
    };
    sync(&mut c, 2, &a, 1, vec![], 0);
    let (r, _) = c.join(3, req("", &["roundrobin", "sticky"]), 0);
    let b = r.unwrap().member_id;
    c.join(3, req(&b, &["roundrobin", "sticky"]), 0);
    let (_, ready) = c.join(4, req(&a, &["range", "roundrobin"]), 0);
    assert!(
        ready
            .joins
            .iter()
            .all(|(_, r)| r.protocol_name.as_deref() == Some("roundrobin"))
    );
    // A member with nothing in common is refused.
    let (r, _) = c.join(5, req("", &["sticky"]), 0);
    let id = r.unwrap().member_id;
    let (r, _) = c.join(5, req(&id, &["sticky"]), 0);
    assert_eq!(r.unwrap().error, GroupError::InconsistentGroupProtocol);
}

#[test]
fn commits_are_checked_against_membership_and_generation() {
    let mut c = coord();
    assert_eq!(
        c.validate_commit("solo", "", None, -1, 0),
        GroupError::None,
        "simple commit to an empty group"
    );
    let (a, b) = stable_pair(&mut c);
    assert_eq!(
        c.validate_commit("g", "", None, -1, 0),
        GroupError::UnknownMemberId
    );
    assert_eq!(
        c.validate_commit("g", &a, None, 1, 0),
        GroupError::IllegalGeneration
    );
    assert_eq!(c.validate_commit("g", &b, None, 2, 0), GroupError::None);
    assert_eq!(
        c.validate_commit("g", "stranger", None, 2, 0),
        GroupError::UnknownMemberId
    );
    let rec = OffsetRecord {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        value: Some(CommittedOffset {
            offset: 42,
            leader_epoch: -1,
            metadata: None,
            commit_ms: 0,
        }),
    };
    c.apply_offsets(&[rec], 0);
    assert_eq!(c.committed("g")[&("t".to_string(), 0)].offset, 42);
    assert_eq!(c.delete_group("g"), Err(GroupError::NonEmptyGroup));
}

#[test]
fn offsets_of_long_empty_groups_expire() {
    let mut c = GroupCoordinator::new(CoordinatorConfig {
        offsets_retention_ms: 1_000,
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    });
    c.validate_commit("old", "", None, -1, 0);
    c.apply_offsets(
        &[OffsetRecord {
            group: "old".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(CommittedOffset {
                offset: 7,
                leader_epoch: -1,
                metadata: None,
                commit_ms: 0,
            }),
        }],
        0,
    );
    assert!(c.tick(500).offset_writes.is_empty());
    let ready = c.tick(1_001);
    assert_eq!(
        ready.offset_writes,
        vec![OffsetRecord {
            group: "old".into(),
            topic: "t".into(),
            partition: 3,
            value: None
        }]
    );
    assert_eq!(
        ready.group_writes,
        vec![GroupRecord {
            group: "old".into(),
            value: None
        }],
        "the membership record is deleted too"
    );
    assert!(c.describe("old").is_none());
}

#[test]
fn invalid_session_timeouts_are_refused() {
    let mut c = coord();
    let mut r = req("", &["range"]);
    r.session_timeout_ms = 10;
    assert_eq!(
        c.join(1, r, 0).0.unwrap().error,
        GroupError::InvalidSessionTimeout
    );
}

#[test]
fn settled_membership_is_persisted_and_a_restored_group_needs_no_rebalance() {
    let mut c = coord();
    let (a, _) = join_new(&mut c, 1, 0);
    let (_, ready) = sync(&mut c, 2, &a, 1, vec![(a.clone(), b"A".to_vec())], 10);
    assert_eq!(
        ready.group_writes.len(),
        1,
        "Stable: the membership is written"
    );
    let snap = ready.group_writes[0].value.clone().expect("a snapshot");
    assert_eq!(ready.group_writes[0].group, "g");
    assert_eq!(snap.generation, 1);
    assert_eq!(snap.members.len(), 1);
    assert_eq!(snap.members[0].assignment, b"A".to_vec());
    // Heartbeats and ticks while nothing changes write nothing.
    assert_eq!(c.heartbeat("g", &a, None, 1, 100), GroupError::None);
    assert!(c.tick(200).group_writes.is_empty());

    // A restarted broker restores the group: the member carries on in its generation.
    let json = serde_json::to_vec(&snap).unwrap();
    let mut restarted = coord();
    restarted.restore_groups(
        [("g".to_string(), serde_json::from_slice(&json).unwrap())],
        1_000,
    );
    let d = restarted.describe("g").unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.generation, 1);
    assert_eq!(d.members[0].assignment, b"A".to_vec());
    assert_eq!(
        restarted.heartbeat("g", &a, None, 1, 1_500),
        GroupError::None
    );
    assert_eq!(
        restarted.heartbeat("g", &a, None, 0, 1_500),
        GroupError::IllegalGeneration
    );
    // Its session runs on from its last heartbeat: silent past it, the member is removed and the
    // now empty group is written again.
    let ready = restarted.tick(1_500 + SESSION as i64 + 1);
    assert_eq!(restarted.describe("g").unwrap().state, GroupState::Empty);
    assert_eq!(ready.group_writes.len(), 1);
    assert!(
        ready.group_writes[0]
            .value
            .as_ref()
            .unwrap()
            .members
            .is_empty()
    );
}
