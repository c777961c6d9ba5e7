//! The broker side of transactions: persisting coordinator decisions to
//! `__transaction_state`, writing commit/abort markers, applying transactional offsets,
//! timeouts, and the start-up recovery that finishes what a crash interrupted.
//!
//! Ordering that makes a commit atomic across partitions:
//! 1. PrepareCommit/PrepareAbort is synced to `__transaction_state` before any marker.
//! 2. Each marker is synced (whatever the topic's fsync policy) before the transaction
//!    completes, and committed offsets are synced to `__consumer_offsets`.
//! 3. CompleteCommit/CompleteAbort is appended without waiting: it becomes durable with the
//!    next state write (the producer's next AddPartitionsToTxn); if a crash loses it, the
//!    restarted broker finds the Prepare state and writes the markers again (a second marker
//!    for a closed transaction is ignored by clients and by the partition state).

use sluice_log::ControlType;
use std::sync::PoisonError;

use crate::broker::{Broker, now_ms};
use crate::group::OffsetRecord;
use crate::txn::{Completion, Ms, TxnCoordinator, TxnError, Write};
use crate::{BrokerError, txn_log};

/// Why a transactional request failed.
#[derive(Debug)]
pub(crate) enum TxnFailure {
    /// Refused by the state machine.
    Refused(TxnError),
    /// The state could not be persisted.
    Storage(String),
}

impl From<TxnError> for TxnFailure {
    fn from(e: TxnError) -> Self {
        TxnFailure::Refused(e)
    }
}

impl TxnFailure {
    /// The Kafka error code. `fenced_code_v` is the first request version that knows
    /// PRODUCER_FENCED (KIP-588); older versions get INVALID_PRODUCER_EPOCH.
    pub(crate) fn code(&self, version: i16, fenced_code_v: i16) -> i16 {
        use kafka_protocol::ResponseError as E;
        match self {
            TxnFailure::Refused(TxnError::Fenced) if version >= fenced_code_v => {
                E::ProducerFenced.code()
            }
            TxnFailure::Refused(TxnError::Fenced) => E::InvalidProducerEpoch.code(),
            TxnFailure::Refused(TxnError::InvalidMapping) => E::InvalidProducerIdMapping.code(),
            TxnFailure::Refused(TxnError::InvalidState) => E::InvalidTxnState.code(),
            TxnFailure::Refused(TxnError::Concurrent) => E::ConcurrentTransactions.code(),
            TxnFailure::Refused(TxnError::InvalidTimeout) => E::InvalidTransactionTimeout.code(),
            TxnFailure::Storage(_) => E::CoordinatorNotAvailable.code(),
        }
    }
}

impl Broker {
    /// Run one coordinator step and persist the records it returns (synced when `sync`).
    /// Deciding and appending are serialized with every other step, so records land in
    /// decision order; the sync is awaited outside that lock, so concurrent steps share one
    /// `fdatasync` (a sync covers every earlier append of the file). Blocking.
    pub(crate) fn txn_step<T>(
        &self,
        sync: bool,
        f: impl FnOnce(&mut TxnCoordinator, Ms) -> Result<(T, Vec<Write>), TxnError>,
    ) -> Result<T, TxnFailure> {
        let (out, durability) = {
            let _order = self.txn_io.lock().unwrap_or_else(PoisonError::into_inner);
            let now = now_ms();
            // The coordinator stays locked until the step's records are appended, so no
            // request sees a decision the log does not hold.
            let mut coord = self.txns.lock().unwrap_or_else(PoisonError::into_inner);
            let (out, writes) = f(&mut coord, now)?;
            if writes.is_empty() {
                (out, None)
            } else {
                match txn_log::append(&self.txn_state, &writes, now) {
                    Ok(d) => (out, Some(d)),
                    Err(e) => {
                        self.reload_txns(&mut coord);
                        return Err(TxnFailure::Storage(e.to_string()));
                    }
                }
            }
        };
        if let Some(d) = durability.filter(|_| sync)
            && let Err(e) = self.txn_state.await_durable(d)
        {
            let _order = self.txn_io.lock().unwrap_or_else(PoisonError::into_inner);
            self.reload_txns(&mut self.txns.lock().unwrap_or_else(PoisonError::into_inner));
            return Err(TxnFailure::Storage(e.to_string()));
        }
        Ok(out)
    }

    /// Undo a step whose records did not become durable: rebuild the coordinator from
    /// `__transaction_state` (completions are handed out again by the next tick).
    fn reload_txns(&self, coord: &mut TxnCoordinator) {
        match txn_log::load(&self.txn_state) {
            Ok(records) => {
                let mut fresh = TxnCoordinator::new(self.cfg.transactions.clone());
                fresh.load(records);
                *coord = fresh;
            }
            Err(e) => {
                tracing::error!("transaction state could not be reloaded after a failed write: {e}")
            }
        }
    }

    /// Write the markers of `c` (and apply its offsets on commit), then complete it. On
    /// failure the completion is released so a later tick drives it again. Blocking.
    pub(crate) fn finish_txn(&self, c: &Completion) -> Result<(), BrokerError> {
        match self.write_markers(c) {
            Ok(()) => {
                let done = self.txn_step(false, |coord, now| {
                    Ok(((), coord.complete(c, now).into_iter().collect()))
                });
                done.map_err(|e| BrokerError::Io(format!("completing a transaction: {e:?}")))
            }
            Err(e) => {
                self.txns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .release(c);
                tracing::error!(
                    "transaction {:?}: writing {} markers failed (retried by the next tick): {e}",
                    c.transactional_id,
                    if c.commit { "commit" } else { "abort" }
                );
                Err(e)
            }
        }
    }

    fn write_markers(&self, c: &Completion) -> Result<(), BrokerError> {
        let kind = if c.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        for (topic, partition) in &c.partitions {
            let part = match self.log.partition(topic, *partition) {
                Ok(p) => p,
                Err(
                    sluice_log::Error::UnknownTopic(_) | sluice_log::Error::UnknownPartition { .. },
                ) => {
                    tracing::warn!(
                        "transaction {:?}: {topic}-{partition} no longer exists; no marker written",
                        c.transactional_id
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            write_marker(&part, c.producer_id, c.producer_epoch, kind)?;
        }
        if c.commit && !c.offsets.is_empty() {
            let now = now_ms();
            let records: Vec<OffsetRecord> = c
                .offsets
                .iter()
                .map(|o| OffsetRecord {
                    group: o.group.clone(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                    value: Some(o.value.clone()),
                })
                .collect();
            // Durable, then applied to the group coordinator in append order.
            self.write_offsets(&records, now)?;
        }
        Ok(())
    }

    /// Time out transactions and drive stalled completions. Blocking.
    pub(crate) fn txn_tick(&self) {
        let work = match self.txn_step(true, |coord, now| {
            let w = coord.tick(now);
            Ok((w.completions, w.writes))
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("transaction coordinator tick: {e:?}");
                return;
            }
        };
        for c in work {
            if !c.commit {
                tracing::info!(
                    "aborting transaction {:?} (producer {} epoch {}) on {} partitions",
                    c.transactional_id,
                    c.producer_id,
                    c.producer_epoch,
                    c.partitions.len()
                );
            }
            let _ = self.finish_txn(&c);
        }
    }

    /// Start-up: finish transactions a crash left in PrepareCommit/PrepareAbort, then abort
    /// transactions a partition holds open that the coordinator does not know (a producer
    /// wrote after a state record was lost), so no partition's stable offset stays stuck.
    pub(crate) fn recover_transactions(&self) -> Result<(), BrokerError> {
        let pending = self
            .txn_step(true, |coord, now| {
                let w = coord.tick(now);
                Ok((w.completions, w.writes))
            })
            .map_err(|e| BrokerError::Io(format!("transaction recovery: {e:?}")))?;
        for c in &pending {
            tracing::info!(
                "completing transaction {:?} ({}) interrupted by a restart",
                c.transactional_id,
                if c.commit { "commit" } else { "abort" }
            );
            self.finish_txn(c)?;
        }
        for topic in self.log.topic_names() {
            for part in self.log.topic(&topic)?.partitions() {
                let partition = part.id();
                for (pid, first) in part.with_producers(|st| st.open_transactions()) {
                    if self
                        .txns
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .covers(pid, &topic, partition)
                    {
                        continue;
                    }
                    let epoch = part.with_producers(|st| st.epoch_of(pid).unwrap_or(0));
                    tracing::warn!(
                        "{topic}-{partition}: producer {pid} left a transaction open at offset {first} that no coordinator state covers; aborting it"
                    );
                    write_marker(&part, pid, epoch, ControlType::Abort)?;
                }
            }
        }
        Ok(())
    }
}

/// Append one marker (the partition indexes it: the transaction's records become
/// readable to read_committed readers, or are dropped by them) and sync it.
fn write_marker(
    part: &sluice_log::Partition,
    pid: i64,
    epoch: i16,
    kind: ControlType,
) -> Result<(), BrokerError> {
    // Synced whatever the topic's fsync policy (a marker decides what readers see).
    let (_, _synced_by_flush) = part.append_marker(pid, epoch, kind, 0)?;
    part.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use sluice_log::{BatchBuilder, ControlType, Log, LogOptions, frames};

    use crate::broker::{Broker, BrokerConfig};
    use crate::txn::{TxnMeta, TxnState, Write};
    use crate::txn_log;

    fn opts() -> LogOptions {
        LogOptions {
            background: false,
            ..LogOptions::default()
        }
    }

    /// Control batches in a partition: (offset, producer id, type).
    fn markers(log: &Log, topic: &str) -> Vec<(i64, i64, ControlType)> {
        let p = log.partition(topic, 0).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while at < p.high_watermark() {
            let r = p.read(at, 1 << 20).unwrap();
            for f in frames(&r.bytes) {
                let (_, h) = f.unwrap();
                if h.is_control() {
                    out.push((
                        h.base_offset,
                        h.producer_id,
                        p.marker_at(h.base_offset).unwrap(),
                    ));
                }
            }
            at = r.next_offset;
        }
        out
    }

    fn txn_data(log: &Log, topic: &str, pid: i64) {
        let mut b = BatchBuilder::new().producer(pid, 0, 0).transactional();
        b.push(0, Some(b"k"), Some(b"v"), &[]);
        b.push(0, Some(b"k"), Some(b"v"), &[]);
        log.partition(topic, 0)
            .unwrap()
            .append(&mut b.build().unwrap())
            .unwrap();
    }

    fn meta(pid: i64, state: TxnState, partitions: &[&str]) -> TxnMeta {
        TxnMeta {
            producer_id: pid,
            producer_epoch: 0,
            timeout_ms: 60_000,
            state,
            partitions: partitions.iter().map(|t| (t.to_string(), 0)).collect(),
            groups: BTreeSet::new(),
            offsets: Vec::new(),
            start_ms: crate::broker::now_ms(),
            update_ms: crate::broker::now_ms(),
            completing: false,
        }
    }

    /// A step whose record cannot be written leaves no trace in the coordinator: the
    /// state stays what `__transaction_state` holds, and the next step works.
    #[test]
    fn a_failed_state_write_leaves_the_coordinator_as_the_log_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path(), opts()).unwrap());
        let broker = Broker::new(log.clone(), BrokerConfig::default()).unwrap();
        let init = |tid: &str| {
            broker.txn_step(true, |c, now| {
                match c.init_producer_id(tid, 60_000, (-1, -1), now, &mut || 42)? {
                    crate::txn::InitOutcome::Ready { write, .. } => Ok(((), vec![write])),
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        // Appends to __transaction_state fail: every batch is over its size limit.
        let mut small = BTreeMap::new();
        small.insert("cleanup.policy".to_string(), "compact".to_string());
        small.insert("max.message.bytes".to_string(), "20".to_string());
        log.set_topic_config(txn_log::TXN_TOPIC, small).unwrap();
        assert!(matches!(init("t1"), Err(super::TxnFailure::Storage(_))));
        assert!(
            broker.txns.lock().unwrap().get("t1").is_none(),
            "the decision was undone"
        );
        log.set_topic_config(
            txn_log::TXN_TOPIC,
            BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        )
        .unwrap();
        init("t1").unwrap();
        assert!(broker.txns.lock().unwrap().get("t1").is_some());
    }

    #[test]
    fn a_restart_completes_a_prepared_commit_and_aborts_an_unknown_open_transaction() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), opts()).unwrap();
            for t in ["a", "b", "c"] {
                log.create_topic(t, 1, BTreeMap::new()).unwrap();
            }
            // Producer 7 was committing to a and b when the broker died: PrepareCommit is
            // durable, no marker was written yet.
            txn_data(&log, "a", 7);
            txn_data(&log, "b", 7);
            // Producer 9 wrote to c, but no coordinator state covers it.
            txn_data(&log, "c", 9);
            // Producer 8 has an ordinary open transaction on b: it must stay open.
            txn_data(&log, "b", 8);
            let state = txn_log::open(&log).unwrap();
            let d = txn_log::append(
                &state,
                &[
                    Write {
                        transactional_id: "seven".into(),
                        meta: Some(meta(7, TxnState::PrepareCommit, &["a", "b"])),
                    },
                    Write {
                        transactional_id: "eight".into(),
                        meta: Some(meta(8, TxnState::Ongoing, &["b"])),
                    },
                ],
                0,
            )
            .unwrap();
            state.await_durable(d).unwrap();
            log.close().unwrap();
        }
        let log = Arc::new(Log::open(dir.path(), opts()).unwrap());
        let broker = Broker::new(log.clone(), BrokerConfig::default()).unwrap();
        assert_eq!(markers(&log, "a"), vec![(2, 7, ControlType::Commit)]);
        assert_eq!(markers(&log, "b"), vec![(4, 7, ControlType::Commit)]);
        assert_eq!(markers(&log, "c"), vec![(2, 9, ControlType::Abort)]);
        let txns = broker
            .txns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert_eq!(txns.get("seven").unwrap().state, TxnState::CompleteCommit);
        assert_eq!(txns.get("eight").unwrap().state, TxnState::Ongoing);
        drop(txns);
        // Last stable offsets: a and c are settled; b is held by producer 8 at offset 2.
        let lso = |t: &str| log.partition(t, 0).unwrap().last_stable_offset();
        assert_eq!((lso("a"), lso("b"), lso("c")), (3, 2, 3));
        // c's abort is indexed for read_committed fetches.
        let aborted = log.partition("c", 0).unwrap().aborted_between(0, 3);
        assert_eq!(aborted.len(), 1);
        assert_eq!((aborted[0].producer_id, aborted[0].first_offset), (9, 0));
    }
}
