//! Deterministic sequences through the transaction state machine.

use super::*;
use crate::group::CommittedOffset;

fn ids() -> impl FnMut() -> i64 {
    let mut next = 100;
    move || {
        next += 1;
        next
    }
}

fn ready(o: InitOutcome) -> (i64, i16, Write) {
    match o {
        InitOutcome::Ready {
            producer_id,
            producer_epoch,
            write,
        } => (producer_id, producer_epoch, write),
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn tp(t: &str, p: i32) -> (String, i32) {
    (t.to_string(), p)
}

fn offset(group: &str, topic: &str, partition: i32, offset: i64) -> PendingOffset {
    PendingOffset {
        group: group.into(),
        topic: topic.into(),
        partition,
        value: CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_ms: 0,
        },
    }
}

#[test]
fn commit_cycle_writes_markers_to_every_partition_and_applies_offsets() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut fresh = ids();
    let (pid, epoch, w) = ready(
        c.init_producer_id("t1", 60_000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    assert_eq!((pid, epoch), (101, 0));
    assert_eq!(w.meta.as_ref().unwrap().state, TxnState::Empty);

    let w = c
        .add_partitions("t1", pid, epoch, &[tp("a", 0), tp("b", 1)], 10)
        .unwrap();
    assert_eq!(w.unwrap().meta.unwrap().state, TxnState::Ongoing);
    // Adding what is already there changes nothing and needs no write.
    assert_eq!(
        c.add_partitions("t1", pid, epoch, &[tp("a", 0)], 11)
            .unwrap(),
        None
    );
    c.add_offsets("t1", pid, epoch, "g", 12).unwrap().unwrap();
    c.commit_offsets("t1", pid, epoch, vec![offset("g", "in", 0, 5)], 13)
        .unwrap();
    c.commit_offsets("t1", pid, epoch, vec![offset("g", "in", 0, 7)], 14)
        .unwrap();
    assert!(c.has_pending_offset("g", "in", 0));
    assert!(!c.has_pending_offset("g", "in", 1));
    assert!(c.verify_produce("t1", pid, epoch, "a", 0).is_ok());
    assert_eq!(
        c.verify_produce("t1", pid, epoch, "c", 0),
        Err(TxnError::InvalidState),
        "a partition not added to the transaction"
    );

    let (done, w) = c.end_txn("t1", pid, epoch, true, 20).unwrap().unwrap();
    assert_eq!(w.meta.unwrap().state, TxnState::PrepareCommit);
    assert!(done.commit);
    assert_eq!(done.partitions, vec![tp("a", 0), tp("b", 1)]);
    assert_eq!(
        done.offsets.len(),
        1,
        "the later offset replaced the earlier"
    );
    assert_eq!(done.offsets[0].value.offset, 7);
    // While markers are written, new work waits.
    assert_eq!(
        c.add_partitions("t1", pid, epoch, &[tp("a", 0)], 21),
        Err(TxnError::Concurrent)
    );
    assert_eq!(
        c.end_txn("t1", pid, epoch, true, 21),
        Err(TxnError::Concurrent)
    );
    assert!(
        c.has_pending_offset("g", "in", 0),
        "still pending until complete"
    );
    let w = c.complete(&done, 22).unwrap();
    let m = w.meta.unwrap();
    assert_eq!(m.state, TxnState::CompleteCommit);
    assert!(m.partitions.is_empty() && m.offsets.is_empty());
    assert!(!c.has_pending_offset("g", "in", 0));
    // A retried EndTxn(commit) succeeds; an abort now is refused.
    assert_eq!(c.end_txn("t1", pid, epoch, true, 23).unwrap(), None);
    assert_eq!(
        c.end_txn("t1", pid, epoch, false, 23),
        Err(TxnError::InvalidState)
    );
    // The next transaction starts clean.
    c.add_partitions("t1", pid, epoch, &[tp("b", 0)], 30)
        .unwrap();
    let (done, _) = c.end_txn("t1", pid, epoch, false, 31).unwrap().unwrap();
    assert!(!done.commit);
    assert_eq!(done.partitions, vec![tp("b", 0)]);
    assert!(done.offsets.is_empty());
}

#[test]
fn abort_discards_pending_offsets() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut fresh = ids();
    let (pid, e, _) = ready(
        c.init_producer_id("t", 1000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    c.add_offsets("t", pid, e, "g", 1).unwrap();
    c.commit_offsets("t", pid, e, vec![offset("g", "x", 0, 9)], 2)
        .unwrap();
    let (done, _) = c.end_txn("t", pid, e, false, 3).unwrap().unwrap();
    assert!(done.offsets.is_empty());
    assert!(!c.has_pending_offset("g", "x", 0));
    c.complete(&done, 4).unwrap();
    assert_eq!(c.get("t").unwrap().state, TxnState::CompleteAbort);
}

#[test]
fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut fresh = ids();
    let (pid, e0, _) = ready(
        c.init_producer_id("t", 60_000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    c.add_partitions("t", pid, e0, &[tp("out", 0)], 1).unwrap();
    // The new instance's InitProducerId: the open transaction is aborted under a bumped
    // epoch first.
    let (done, w) = match c
        .init_producer_id("t", 60_000, (-1, -1), 2, &mut fresh)
        .unwrap()
    {
        InitOutcome::CompleteFirst(done, w) => (done, w),
        other => panic!("{other:?}"),
    };
    assert!(!done.commit);
    assert_eq!(done.producer_id, pid);
    assert_eq!(done.producer_epoch, e0 + 1);
    assert_eq!(done.partitions, vec![tp("out", 0)]);
    assert_eq!(w.unwrap().meta.unwrap().state, TxnState::PrepareAbort);
    // Another InitProducerId while the abort is in flight waits.
    assert_eq!(
        c.init_producer_id("t", 60_000, (-1, -1), 3, &mut fresh),
        Err(TxnError::Concurrent)
    );
    c.complete(&done, 4).unwrap();
    let (pid2, e2, _) = ready(
        c.init_producer_id("t", 60_000, (-1, -1), 5, &mut fresh)
            .unwrap(),
    );
    assert_eq!(pid2, pid, "same producer id, newer epoch");
    assert_eq!(e2, e0 + 2);
    // The zombie is fenced everywhere.
    assert_eq!(
        c.add_partitions("t", pid, e0, &[tp("out", 0)], 6),
        Err(TxnError::Fenced)
    );
    assert_eq!(c.end_txn("t", pid, e0, true, 6), Err(TxnError::Fenced));
    assert_eq!(
        c.verify_produce("t", pid, e0, "out", 0),
        Err(TxnError::Fenced)
    );
    assert_eq!(
        c.add_partitions("t", pid + 1, e2, &[tp("out", 0)], 6),
        Err(TxnError::InvalidMapping)
    );
    // KIP-360 resume with a stale epoch is fenced; with the current one it bumps.
    assert_eq!(
        c.init_producer_id("t", 60_000, (pid, e0), 7, &mut fresh),
        Err(TxnError::Fenced)
    );
    let (_, e3, _) = ready(
        c.init_producer_id("t", 60_000, (pid, e2), 8, &mut fresh)
            .unwrap(),
    );
    assert_eq!(e3, e2 + 1);
}

#[test]
fn timeouts_abort_and_fence_and_stalled_completions_are_driven_again() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut fresh = ids();
    let (pid, e, _) = ready(
        c.init_producer_id("t", 1000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    c.add_partitions("t", pid, e, &[tp("a", 0)], 100).unwrap();
    assert!(
        c.tick(1100).completions.is_empty(),
        "not yet past the timeout"
    );
    let work = c.tick(1101);
    assert_eq!(work.completions.len(), 1);
    assert_eq!(work.writes.len(), 1);
    let done = &work.completions[0];
    assert!(!done.commit);
    assert_eq!(done.producer_epoch, e + 1, "the producer is fenced");
    assert!(
        c.tick(1200).completions.is_empty(),
        "in flight: not handed out twice"
    );
    c.release(done);
    let again = c.tick(1300);
    assert_eq!(again.completions, vec![done.clone()]);
    c.complete(done, 1301).unwrap();
    assert_eq!(c.end_txn("t", pid, e, true, 1302), Err(TxnError::Fenced));
}

#[test]
fn restart_drives_prepared_transactions_to_completion() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut fresh = ids();
    let mut log = Vec::new();
    let (pid, e, w) = ready(
        c.init_producer_id("t", 60_000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    log.push(w);
    log.push(
        c.add_partitions("t", pid, e, &[tp("a", 0)], 1)
            .unwrap()
            .unwrap(),
    );
    let (_, w) = c.end_txn("t", pid, e, true, 2).unwrap().unwrap();
    log.push(w);
    // The broker dies before the markers are written.
    let mut restarted = TxnCoordinator::new(TxnConfig::default());
    // Through the stored form (JSON), as the broker reloads it.
    restarted.load(log.into_iter().map(|w| {
        let json = serde_json::to_vec(&w.meta).unwrap();
        (w.transactional_id, serde_json::from_slice(&json).unwrap())
    }));
    let m = restarted.get("t").unwrap();
    assert_eq!(m.state, TxnState::PrepareCommit);
    assert!(restarted.covers(pid, "a", 0));
    let work = restarted.tick(3);
    assert_eq!(work.completions.len(), 1);
    assert!(work.completions[0].commit);
    assert!(work.writes.is_empty());
    restarted.complete(&work.completions[0], 4).unwrap();
    assert!(!restarted.covers(pid, "a", 0));
}

#[test]
fn bad_requests_are_refused() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut fresh = ids();
    assert_eq!(
        c.init_producer_id("t", 0, (-1, -1), 0, &mut fresh),
        Err(TxnError::InvalidTimeout)
    );
    assert_eq!(
        c.init_producer_id("t", 900_001, (-1, -1), 0, &mut fresh),
        Err(TxnError::InvalidTimeout)
    );
    assert_eq!(
        c.add_partitions("nope", 1, 0, &[tp("a", 0)], 0),
        Err(TxnError::InvalidMapping)
    );
    let (pid, e, _) = ready(
        c.init_producer_id("t", 1000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    assert_eq!(c.end_txn("t", pid, e, true, 1), Err(TxnError::InvalidState));
    assert_eq!(
        c.commit_offsets("t", pid, e, vec![offset("g", "a", 0, 1)], 1),
        Err(TxnError::InvalidState)
    );
    assert_eq!(
        c.verify_produce("t", pid, e, "a", 0),
        Err(TxnError::InvalidState)
    );
}

#[test]
fn idle_ids_expire() {
    let cfg = TxnConfig {
        id_expiration_ms: 1000,
        ..TxnConfig::default()
    };
    let mut c = TxnCoordinator::new(cfg);
    let mut fresh = ids();
    ready(
        c.init_producer_id("t", 60_000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    let (pid, e, _) = ready(
        c.init_producer_id("u", 60_000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    c.add_partitions("u", pid, e, &[tp("a", 0)], 0).unwrap();
    assert!(c.tick(1000).writes.is_empty());
    let work = c.tick(1001);
    // "t" expires (a tombstone is written); "u" has an open transaction and stays.
    assert_eq!(
        work.writes,
        vec![Write {
            transactional_id: "t".into(),
            meta: None
        }]
    );
    assert!(c.get("t").is_none());
    assert_eq!(c.get("u").unwrap().state, TxnState::Ongoing);
}

#[test]
fn epoch_exhaustion_moves_to_a_new_producer_id() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut fresh = ids();
    let (pid, _, _) = ready(
        c.init_producer_id("t", 1000, (-1, -1), 0, &mut fresh)
            .unwrap(),
    );
    let mut stored = c.get("t").unwrap().clone();
    stored.producer_epoch = i16::MAX - 1;
    c.load([("t".to_string(), Some(stored))]);
    let (pid2, e2, _) = ready(
        c.init_producer_id("t", 1000, (-1, -1), 1, &mut fresh)
            .unwrap(),
    );
    assert_ne!(pid2, pid);
    assert_eq!(e2, 0);
}
