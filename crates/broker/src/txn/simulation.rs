//! A seeded simulation of the transaction coordinator: producer instances of a few
//! transactional ids (with zombies: an older instance keeps trying after a newer one
//! initialized) add partitions, produce, commit offsets, commit or abort, crash, and the
//! coordinator restarts from its persisted records, all on a simulated clock. The seed is
//! printed; `SLUICE_SEED=<n>` replays a run.
//!
//! Invariants:
//! * a fenced instance never gets a produce, offset commit or EndTxn accepted;
//! * every transaction that had data ends exactly once, with markers for every partition
//!   it produced to; one its producer asked to commit (EndTxn) is committed, never
//!   aborted;
//! * a coordinator rebuilt from the persisted records holds what the live one holds;
//! * once producers stop and the clock passes every timeout, no transaction stays open.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::group::CommittedOffset;
use crate::sim_rng::Rng;

/// Topic partitions.
type Partitions = BTreeSet<(String, i32)>;

/// One producer instance: the (id, epoch) InitProducerId gave it.
#[derive(Debug, Clone)]
struct Instance {
    tid: String,
    pid: i64,
    epoch: i16,
}

#[derive(Default)]
struct World {
    c: TxnCoordinator,
    /// `__transaction_state` as persisted: the last record per transactional id.
    persisted: BTreeMap<String, Option<TxnMeta>>,
    instances: Vec<Instance>,
    /// The newest epoch handed out per transactional id.
    newest: BTreeMap<String, (i64, i16)>,
    /// Partitions produced to in the open transaction of (tid, pid), by the coordinator's
    /// acceptance.
    /// The open transaction's number (one per transaction that produced data) with the
    /// partitions it produced to.
    produced: BTreeMap<(String, i64), (u64, Partitions)>,
    /// The outcome EndTxn asked for, by transaction number.
    requested: BTreeMap<u64, bool>,
    /// Transactions ended, by number -> committed?
    ended: BTreeMap<u64, bool>,
    next_txn: u64,
    next_id: i64,
    now: Ms,
}

const TIMEOUT_MS: i32 = 5_000;

impl World {
    fn persist(&mut self, w: Write) {
        if let Some(m) = &w.meta {
            // Whatever the record says is the id's epoch from now on (a fencing bump, a
            // timeout abort's bump, a new instance).
            self.newest.insert(
                w.transactional_id.clone(),
                (m.producer_id, m.producer_epoch),
            );
        }
        // Through the same JSON as `__transaction_state` (so what is not persisted, such
        // as `completing`, is lost on a restart as it would be).
        let meta = w.meta.map(|m| {
            serde_json::from_slice(&serde_json::to_vec(&m).expect("serializable"))
                .expect("round trip")
        });
        self.persisted.insert(w.transactional_id, meta);
    }

    fn fenced(&self, i: &Instance) -> bool {
        self.newest.get(&i.tid) != Some(&(i.pid, i.epoch))
    }

    /// Carries out a completion as the broker does: markers, then `complete`.
    fn drive(&mut self, c: Completion, rng: &mut Rng) {
        if rng.below(8) == 0 {
            // Writing the markers failed: released, a later tick drives it again.
            self.c.release(&c);
            return;
        }
        let key = (c.transactional_id.clone(), c.producer_id);
        if let Some((txn, produced)) = self.produced.remove(&key) {
            let marked: BTreeSet<_> = c.partitions.iter().cloned().collect();
            assert!(
                produced.is_subset(&marked),
                "{}: markers for {marked:?} miss partitions produced to: {produced:?}",
                c.transactional_id
            );
            if let Some(&commit) = self.requested.get(&txn) {
                assert_eq!(
                    c.commit, commit,
                    "{} transaction {txn}: EndTxn asked commit={commit}",
                    c.transactional_id
                );
            }
            let prev = self.ended.insert(txn, c.commit);
            assert!(
                prev.is_none(),
                "{} transaction {txn} ended twice",
                c.transactional_id
            );
        }
        if let Some(w) = self.c.complete(&c, self.now) {
            self.persist(w);
        }
    }

    fn init(&mut self, tid: &str, rng: &mut Rng) {
        let mut next_id = self.next_id;
        let r = self
            .c
            .init_producer_id(tid, TIMEOUT_MS, (-1, -1), self.now, &mut || {
                next_id += 1;
                next_id
            });
        self.next_id = next_id;
        match r {
            Ok(InitOutcome::Ready {
                producer_id,
                producer_epoch,
                write,
            }) => {
                self.persist(write);
                self.newest
                    .insert(tid.to_string(), (producer_id, producer_epoch));
                self.instances.push(Instance {
                    tid: tid.to_string(),
                    pid: producer_id,
                    epoch: producer_epoch,
                });
            }
            Ok(InitOutcome::CompleteFirst(c, w)) => {
                if let Some(w) = w {
                    // The fencing bump is durable: older instances are fenced now.
                    if let Some(m) = &w.meta {
                        self.newest
                            .insert(tid.to_string(), (m.producer_id, m.producer_epoch));
                    }
                    self.persist(w);
                }
                self.drive(c, rng);
            }
            Err(TxnError::Concurrent) => {}
            Err(e) => panic!("{tid}: InitProducerId failed: {e:?}"),
        }
    }

    fn act(&mut self, rng: &mut Rng) {
        let tids = ["a", "b", "c"];
        if self.instances.is_empty() || rng.below(10) == 0 {
            let tid = tids[rng.below(tids.len() as u64) as usize];
            self.init(tid, rng);
            return;
        }
        let i = self.instances[rng.below(self.instances.len() as u64) as usize].clone();
        let fenced = self.fenced(&i);
        let part = (format!("t{}", rng.below(3)), rng.below(2) as i32);
        match rng.below(6) {
            0 | 1 => {
                // AddPartitionsToTxn, then the produce itself.
                if let Ok(w) = self.c.add_partitions(
                    &i.tid,
                    i.pid,
                    i.epoch,
                    std::slice::from_ref(&part),
                    self.now,
                ) {
                    assert!(!fenced, "fenced {i:?} added partitions");
                    if let Some(w) = w {
                        self.persist(w);
                    }
                    let ok = self
                        .c
                        .verify_produce(&i.tid, i.pid, i.epoch, &part.0, part.1);
                    assert!(ok.is_ok(), "{i:?}: produce after add refused: {ok:?}");
                    let next = &mut self.next_txn;
                    self.produced
                        .entry((i.tid.clone(), i.pid))
                        .or_insert_with(|| {
                            *next += 1;
                            (*next, BTreeSet::new())
                        })
                        .1
                        .insert(part);
                }
            }
            2 => {
                let ok = self
                    .c
                    .verify_produce(&i.tid, i.pid, i.epoch, &part.0, part.1);
                if ok.is_ok() {
                    assert!(!fenced, "fenced {i:?} produced");
                    let open = self.produced.get(&(i.tid.clone(), i.pid));
                    assert!(
                        open.is_some_and(|(_, p)| p.contains(&part)),
                        "{i:?} produced to {part:?} outside its transaction"
                    );
                }
            }
            3 => {
                let added = self.c.add_offsets(&i.tid, i.pid, i.epoch, "g", self.now);
                if let Ok(w) = added {
                    assert!(!fenced, "fenced {i:?} added offsets");
                    if let Some(w) = w {
                        self.persist(w);
                    }
                    let o = PendingOffset {
                        group: "g".into(),
                        topic: part.0,
                        partition: part.1,
                        value: CommittedOffset {
                            offset: self.now,
                            leader_epoch: -1,
                            metadata: None,
                            commit_ms: self.now,
                        },
                    };
                    match self
                        .c
                        .commit_offsets(&i.tid, i.pid, i.epoch, vec![o], self.now)
                    {
                        Ok(w) => self.persist(w),
                        Err(e) => panic!("{i:?}: offsets after AddOffsets refused: {e:?}"),
                    }
                }
            }
            4 => {
                let commit = rng.below(2) == 0;
                match self.c.end_txn(&i.tid, i.pid, i.epoch, commit, self.now) {
                    Ok(Some((c, w))) => {
                        assert!(!fenced, "fenced {i:?} ended a transaction");
                        if let Some((txn, _)) = self.produced.get(&(i.tid.clone(), i.pid)) {
                            self.requested.insert(*txn, commit);
                        }
                        self.persist(w);
                        self.drive(c, rng);
                    }
                    Ok(None) => assert!(!fenced, "fenced {i:?} ended a transaction"),
                    Err(_) => {}
                }
            }
            _ => {
                // The instance crashes (a zombie may still be in the list: its newer
                // sibling fences it).
                self.instances
                    .retain(|x| !(x.pid == i.pid && x.epoch == i.epoch));
            }
        }
    }

    fn tick(&mut self, rng: &mut Rng) {
        let work = self.c.tick(self.now);
        for w in work.writes {
            if let Some(m) = &w.meta {
                // A timeout abort bumps the epoch: the producer is fenced from here.
                self.newest.insert(
                    w.transactional_id.clone(),
                    (m.producer_id, m.producer_epoch),
                );
            }
            self.persist(w);
        }
        for c in work.completions {
            self.drive(c, rng);
        }
    }

    fn restart(&mut self) {
        let mut fresh = TxnCoordinator::new(TxnConfig::default());
        fresh.load(self.persisted.clone());
        let view = |c: &TxnCoordinator| {
            c.all()
                .map(|(k, v)| (k.clone(), v.clone()))
                .map(|(k, mut v)| {
                    v.completing = false; // not persisted: driven again after a restart
                    (k, v)
                })
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            view(&fresh),
            view(&self.c),
            "the persisted records rebuild the coordinator"
        );
        self.c = fresh;
    }
}

#[test]
fn random_producers_keep_the_transaction_invariants() {
    let (mut rng, seed) = Rng::seeded("transaction coordinator simulation");
    let mut ended = 0usize;
    for round in 0..20 {
        let mut w = World::default();
        for _ in 0..300 {
            w.act(&mut rng);
            w.now += rng.below(400) as Ms;
            if rng.below(5) == 0 {
                w.tick(&mut rng);
            }
            if rng.below(40) == 0 {
                w.restart();
            }
        }
        // Producers stop; timeouts abort what is open, ticks drive every completion.
        w.instances.clear();
        for _ in 0..20 {
            w.now += TIMEOUT_MS as Ms;
            w.tick(&mut rng);
        }
        for (tid, m) in w.c.all() {
            assert!(
                !matches!(
                    m.state,
                    TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
                ),
                "seed {seed} round {round}: {tid} still {:?}: {m:?}",
                m.state
            );
        }
        assert!(
            w.produced.is_empty(),
            "seed {seed} round {round}: data never decided: {:?}",
            w.produced
        );
        ended += w.ended.len();
    }
    eprintln!("{ended} transactions with data ended");
    assert!(ended > 20, "the simulation exercised transactions");
}
