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

use crate::broker::{Broker, now_ms};
use crate::group::OffsetRecord;
use crate::txn::{Completion, Ms, TxnCoordinator, TxnError, Write};
use crate::{BrokerError, offsets, txn_log};

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
            let _order = self.txn_io.lock().expect("txn io");
            let now = now_ms();
            let (out, writes) = f(&mut self.txns.lock().expect("txns"), now)?;
            if writes.is_empty() {
                (out, None)
            } else {
                let d = txn_log::append(&self.txn_state, &writes, now)
                    .map_err(|e| TxnFailure::Storage(e.to_string()))?;
                (out, Some(d))
            }
        };
        if let Some(d) = durability.filter(|_| sync) {
            self.txn_state
                .await_durable(d)
                .map_err(|e| TxnFailure::Storage(e.to_string()))?;
        }
        Ok(out)
    }

    /// Write the markers of `c` (and apply its offsets on commit), then complete it. On
    /// failure the completion is released so a later tick drives it again. Blocking.
    pub(crate) fn finish_txn(&self, c: &Completion) -> Result<(), BrokerError> {
        match self.write_markers(c) {
            Ok(()) => {
                let done = self.txn_step(false, |coord, now| {
                    Ok(((), coord.complete(c, now).into_iter().collect()))
                });
                self.data_arrived.notify_waiters();
                done.map_err(|e| BrokerError::Io(format!("completing a transaction: {e:?}")))
            }
            Err(e) => {
                self.txns.lock().expect("txns").release(c);
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
            write_marker(
                self,
                &part,
                topic,
                *partition,
                c.producer_id,
                c.producer_epoch,
                kind,
            )?;
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
            offsets::write(&self.offsets, &records, now)?;
            self.groups
                .lock()
                .expect("groups")
                .apply_offsets(&records, now);
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
        for ((topic, partition), state) in self.producers.all() {
            let open = state.lock().expect("producers").open_transactions();
            for (pid, first) in open {
                if self
                    .txns
                    .lock()
                    .expect("txns")
                    .covers(pid, &topic, partition)
                {
                    continue;
                }
                let epoch = state.lock().expect("producers").epoch_of(pid).unwrap_or(0);
                tracing::warn!(
                    "{topic}-{partition}: producer {pid} left a transaction open at offset {first} that no coordinator state covers; aborting it"
                );
                let part = self.log.partition(&topic, partition)?;
                write_marker(
                    self,
                    &part,
                    &topic,
                    partition,
                    pid,
                    epoch,
                    ControlType::Abort,
                )?;
            }
        }
        Ok(())
    }
}

/// Append one marker under the partition's producer lock (so a concurrent produce lands
/// wholly before or after it), index it, and sync it.
fn write_marker(
    b: &Broker,
    part: &sluice_log::Partition,
    topic: &str,
    partition: i32,
    pid: i64,
    epoch: i16,
    kind: ControlType,
) -> Result<(), BrokerError> {
    let state = b.producers.partition(topic, partition);
    {
        let mut st = state.lock().expect("producers");
        let (info, _) = part.append_marker(pid, epoch, kind, 0)?;
        st.record_marker(pid, epoch, kind, info.base_offset);
    }
    part.flush()?;
    Ok(())
}
