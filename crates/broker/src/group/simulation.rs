//! A seeded simulation of the group coordinator: clients that join, sync, heartbeat, leave
//! and crash at random moments on a simulated clock, with the protocol's invariants
//! checked after every step. The seed is printed; `SLUICE_SEED=<n>` replays a run.
//!
//! Invariants:
//! * every generation has one leader and one protocol, whoever is told about it;
//! * generations only grow;
//! * a parked JoinGroup or SyncGroup is answered exactly once, and once every client has
//!   left or timed out and the clock has passed every timeout, nothing is left parked;
//! * a successful SyncGroup hands a member exactly what its generation's leader assigned
//!   to it;
//! * a group is Stable only once its generation's leader has synced.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::sim_rng::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Not in the group (never joined, left, or told to start over).
    Out,
    /// A JoinGroup is parked under this token.
    Joining(Token),
    /// Joined `generation`; a SyncGroup is parked under this token.
    Syncing(Token, i32),
    /// Synced in `generation`.
    Stable(i32),
    /// Stopped talking (its session will time out).
    Crashed,
}

struct Client {
    member_id: String,
    phase: Phase,
}

const SESSION_MS: i32 = 6_000;
const REBALANCE_MS: i32 = 10_000;

fn join_req(member_id: &str) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        instance_id: None,
        client_id: "sim".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), b"m".to_vec())],
        require_known_member_id: true,
    }
}

struct World {
    c: GroupCoordinator,
    clients: Vec<Client>,
    now: Ms,
    next_token: Token,
    /// Tokens parked and not yet answered -> client.
    parked: BTreeMap<Token, usize>,
    answered: BTreeSet<Token>,
    /// generation -> (leader, protocol).
    generations: BTreeMap<i32, (String, Option<String>)>,
    /// generation -> member -> assignment, as the leader sent it.
    assigned: BTreeMap<i32, BTreeMap<String, Vec<u8>>>,
    /// Members that synced successfully, by generation.
    synced: BTreeMap<i32, BTreeSet<String>>,
    max_generation: i32,
}

impl World {
    fn token(&mut self, client: usize) -> Token {
        self.next_token += 1;
        self.parked.insert(self.next_token, client);
        self.next_token
    }

    fn answer(&mut self, token: Token) -> Option<usize> {
        assert!(self.answered.insert(token), "token {token} answered twice");
        self.parked.remove(&token)
    }

    fn on_join(&mut self, i: usize, r: JoinResult) {
        if self.clients[i].phase == Phase::Crashed {
            return;
        }
        match r.error {
            GroupError::None => {
                assert!(
                    r.generation_id >= self.max_generation,
                    "generation went back: {} after {}",
                    r.generation_id,
                    self.max_generation
                );
                self.max_generation = r.generation_id;
                let seen = self
                    .generations
                    .entry(r.generation_id)
                    .or_insert_with(|| (r.leader.clone(), r.protocol_name.clone()));
                assert_eq!(
                    seen,
                    &(r.leader.clone(), r.protocol_name.clone()),
                    "generation {} has one leader and one protocol",
                    r.generation_id
                );
                self.clients[i].member_id = r.member_id.clone();
                let assignments = if r.leader == r.member_id {
                    r.members
                        .iter()
                        .map(|m| {
                            let a = format!("{}:{}", r.generation_id, m.member_id).into_bytes();
                            (m.member_id.clone(), a)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                if !assignments.is_empty() {
                    self.assigned
                        .insert(r.generation_id, assignments.iter().cloned().collect());
                }
                let t = self.token(i);
                self.clients[i].phase = Phase::Syncing(t, r.generation_id);
                let (res, ready) = self.c.sync(
                    t,
                    SyncRequest {
                        group_id: "g".into(),
                        generation_id: r.generation_id,
                        member_id: r.member_id,
                        instance_id: None,
                        assignments,
                    },
                    self.now,
                );
                if let Some(res) = res {
                    self.answer(t);
                    self.on_sync(i, res);
                }
                self.deliver(ready);
            }
            GroupError::MemberIdRequired => {
                self.clients[i].member_id = r.member_id;
                self.clients[i].phase = Phase::Out;
            }
            GroupError::UnknownMemberId => {
                self.clients[i].member_id.clear();
                self.clients[i].phase = Phase::Out;
            }
            _ => self.clients[i].phase = Phase::Out,
        }
    }

    fn on_sync(&mut self, i: usize, r: SyncResult) {
        let Phase::Syncing(_, generation) = self.clients[i].phase else {
            return; // crashed meanwhile
        };
        match r.error {
            GroupError::None => {
                let me = self.clients[i].member_id.clone();
                let want = self
                    .assigned
                    .get(&generation)
                    .and_then(|a| a.get(&me))
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(
                    r.assignment, want,
                    "member {me} of generation {generation} gets what its leader assigned"
                );
                self.synced.entry(generation).or_default().insert(me);
                self.clients[i].phase = Phase::Stable(generation);
            }
            GroupError::UnknownMemberId => {
                self.clients[i].member_id.clear();
                self.clients[i].phase = Phase::Out;
            }
            _ => self.clients[i].phase = Phase::Out,
        }
    }

    fn deliver(&mut self, ready: Ready) {
        for (t, r) in ready.joins {
            if let Some(i) = self.answer(t) {
                self.on_join(i, r);
            }
        }
        for (t, r) in ready.syncs {
            if let Some(i) = self.answer(t) {
                self.on_sync(i, r);
            }
        }
    }

    fn act(&mut self, i: usize, rng: &mut Rng) {
        let phase = self.clients[i].phase.clone();
        match phase {
            Phase::Crashed | Phase::Joining(_) | Phase::Syncing(..) => {}
            Phase::Out => {
                if rng.below(3) == 0 {
                    return; // not every idle client rejoins at once
                }
                let t = self.token(i);
                self.clients[i].phase = Phase::Joining(t);
                let (r, ready) = self
                    .c
                    .join(t, join_req(&self.clients[i].member_id), self.now);
                if let Some(r) = r {
                    self.answer(t);
                    self.on_join(i, r);
                }
                self.deliver(ready);
            }
            Phase::Stable(generation) => match rng.below(20) {
                0 => {
                    let id = self.clients[i].member_id.clone();
                    let (_, _, ready) = self.c.leave("g", &[(id, None)], self.now);
                    self.clients[i].member_id.clear();
                    self.clients[i].phase = Phase::Out;
                    self.deliver(ready);
                }
                1 => self.clients[i].phase = Phase::Crashed,
                _ => {
                    let e = self.c.heartbeat(
                        "g",
                        &self.clients[i].member_id,
                        None,
                        generation,
                        self.now,
                    );
                    match e {
                        GroupError::None => {}
                        GroupError::UnknownMemberId => {
                            self.clients[i].member_id.clear();
                            self.clients[i].phase = Phase::Out;
                        }
                        _ => self.clients[i].phase = Phase::Out,
                    }
                }
            },
        }
    }

    /// Kafka's group turns Stable when its leader's SyncGroup brings the assignment
    /// (followers may sync later): a Stable generation's leader synced in it.
    fn check_stable(&self) {
        let Some(d) = self.c.describe("g") else {
            return;
        };
        if d.state == GroupState::Stable {
            let (leader, _) = &self.generations[&d.generation];
            assert!(
                self.synced
                    .get(&d.generation)
                    .is_some_and(|s| s.contains(leader)),
                "Stable generation {} before its leader {leader} synced",
                d.generation
            );
        }
    }
}

#[test]
fn random_clients_keep_the_protocol_invariants() {
    let (mut rng, seed) = Rng::seeded("group coordinator simulation");
    let (mut generations, mut syncs) = (0usize, 0usize);
    for round in 0..20 {
        let mut w = World {
            c: GroupCoordinator::new(CoordinatorConfig {
                initial_rebalance_delay_ms: (rng.below(2) * 3_000) as i64,
                ..CoordinatorConfig::default()
            }),
            clients: (0..1 + rng.below(6))
                .map(|_| Client {
                    member_id: String::new(),
                    phase: Phase::Out,
                })
                .collect(),
            now: 0,
            next_token: 0,
            parked: BTreeMap::new(),
            answered: BTreeSet::new(),
            generations: BTreeMap::new(),
            assigned: BTreeMap::new(),
            synced: BTreeMap::new(),
            max_generation: -1,
        };
        for _ in 0..400 {
            let i = rng.below(w.clients.len() as u64) as usize;
            w.act(i, &mut rng);
            w.now += rng.below(1_500) as Ms;
            let ready = w.c.tick(w.now);
            w.deliver(ready);
            w.check_stable();
        }
        // Everyone goes quiet; past every timeout nothing may stay parked.
        for c in &mut w.clients {
            c.phase = Phase::Crashed;
        }
        for _ in 0..10 {
            w.now += (REBALANCE_MS + SESSION_MS) as Ms;
            let ready = w.c.tick(w.now);
            w.deliver(ready);
        }
        assert!(
            w.parked.is_empty(),
            "seed {seed} round {round}: still parked: {:?}",
            w.parked
        );
        assert!(
            w.c.describe("g").is_none_or(|d| d.members.is_empty()),
            "seed {seed} round {round}: every member timed out"
        );
        generations += w.generations.len();
        syncs += w.synced.values().map(BTreeSet::len).sum::<usize>();
    }
    eprintln!("{generations} generations formed, {syncs} successful syncs");
    assert!(
        generations > 20 && syncs > 20,
        "the simulation exercised rebalances"
    );
}
