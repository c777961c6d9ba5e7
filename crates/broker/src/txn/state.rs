use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::group::CommittedOffset;

/// Milliseconds since the epoch, as fed by the caller.
pub type Ms = i64;

/// Kafka's `TransactionState` (the names are Kafka's, as shown by DescribeTransactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// A producer id is assigned; no transaction is open.
    Empty,
    /// A transaction is open (partitions or offsets were added).
    Ongoing,
    /// EndTxn(commit) was accepted; markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing InitProducerId; markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset committed inside a transaction: visible to OffsetFetch only once the
/// transaction commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset to commit.
    pub value: CommittedOffset,
}

/// Everything the coordinator knows about one transactional id (the value stored in
/// `__transaction_state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// Producer id bound to the transactional id.
    pub producer_id: i64,
    /// Current epoch; lower epochs are fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Data partitions in the open (or completing) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets are part of the transaction (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// Offsets committed in the transaction (TxnOffsetCommit), applied at commit.
    pub offsets: Vec<PendingOffset>,
    /// When the open transaction started (-1: none).
    pub start_ms: Ms,
    /// Last state change.
    pub update_ms: Ms,
    /// A caller is writing this transaction's markers (not persisted: after a restart the
    /// completion is driven again).
    #[serde(skip)]
    pub completing: bool,
}

/// Why a request was refused (the handlers map these to Kafka error codes by version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// An older epoch than the transactional id's current one (PRODUCER_FENCED, or
    /// INVALID_PRODUCER_EPOCH for older request versions and Produce).
    Fenced,
    /// The producer id does not belong to the transactional id (INVALID_PRODUCER_ID_MAPPING).
    InvalidMapping,
    /// The request does not fit the transaction's state (INVALID_TXN_STATE).
    InvalidState,
    /// Markers of the previous transaction are being written: retry (CONCURRENT_TRANSACTIONS).
    Concurrent,
    /// transaction.timeout.ms outside (0, transaction.max.timeout.ms] (INVALID_TRANSACTION_TIMEOUT).
    InvalidTimeout,
}

/// A state record to persist before answering (`None` deletes the transactional id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Transactional id.
    pub transactional_id: String,
    /// New value.
    pub meta: Option<TxnMeta>,
}

/// Work for the caller: write a commit or abort marker to every partition, on commit
/// apply the offsets, then call [`TxnCoordinator::complete`] (or
/// [`TxnCoordinator::release`] when that failed, so a later tick drives it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id written in the markers.
    pub producer_id: i64,
    /// Epoch written in the markers.
    pub producer_epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
    /// Partitions that get a marker.
    pub partitions: Vec<(String, i32)>,
    /// Offsets to make visible (commit only).
    pub offsets: Vec<PendingOffset>,
}

/// Outcome of InitProducerId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Answer with this producer id and epoch once `write` is persisted.
    Ready {
        /// Producer id.
        producer_id: i64,
        /// Epoch.
        producer_epoch: i16,
        /// Persist first.
        write: Write,
    },
    /// A previous transaction must be completed first (persist `write` if any, drive the
    /// completion, then ask again).
    CompleteFirst(Completion, Option<Write>),
}

/// Limits (Kafka's broker settings).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: ids without a transaction for this long are removed.
    pub id_expiration_ms: Ms,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// What a tick asks for.
#[derive(Debug, Default)]
pub struct TickWork {
    /// Completions to drive (timed-out transactions being aborted, or stalled completions).
    pub completions: Vec<Completion>,
    /// Records to persist first.
    pub writes: Vec<Write>,
}

/// The transaction coordinator: Kafka's transaction state machine per transactional id.
/// Pure: no I/O, no clock; the caller persists the returned [`Write`]s (before answering)
/// and carries out the returned [`Completion`]s.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    cfg: TxnConfig,
    txns: BTreeMap<String, TxnMeta>,
}

fn write(tid: &str, meta: &TxnMeta) -> Write {
    Write {
        transactional_id: tid.to_string(),
        meta: Some(meta.clone()),
    }
}

fn completion(tid: &str, m: &TxnMeta) -> Completion {
    let commit = m.state == TxnState::PrepareCommit;
    Completion {
        transactional_id: tid.to_string(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit,
        partitions: m.partitions.iter().cloned().collect(),
        offsets: if commit {
            m.offsets.clone()
        } else {
            Vec::new()
        },
    }
}

impl TxnCoordinator {
    /// An empty coordinator.
    pub fn new(cfg: TxnConfig) -> Self {
        TxnCoordinator {
            cfg,
            txns: BTreeMap::new(),
        }
    }

    /// Restore from stored records, in log order (later records win; `None` deletes).
    pub fn load(&mut self, records: impl IntoIterator<Item = (String, Option<TxnMeta>)>) {
        for (tid, meta) in records {
            match meta {
                Some(m) => {
                    self.txns.insert(tid, m);
                }
                None => {
                    self.txns.remove(&tid);
                }
            }
        }
    }

    /// One transactional id's state.
    pub fn get(&self, tid: &str) -> Option<&TxnMeta> {
        self.txns.get(tid)
    }

    /// Every transactional id with its state.
    pub fn all(&self) -> impl Iterator<Item = (&String, &TxnMeta)> {
        self.txns.iter()
    }

    /// InitProducerId with a transactional id. `expected` is the (producer id, epoch) a
    /// KIP-360 client sends to resume (-1 when absent); `fresh_id` allocates a new
    /// producer id.
    pub fn init_producer_id(
        &mut self,
        tid: &str,
        timeout_ms: i32,
        expected: (i64, i16),
        now: Ms,
        fresh_id: &mut dyn FnMut() -> i64,
    ) -> Result<InitOutcome, TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.cfg.max_timeout_ms {
            return Err(TxnError::InvalidTimeout);
        }
        let Some(m) = self.txns.get_mut(tid) else {
            let meta = TxnMeta {
                producer_id: fresh_id(),
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                offsets: Vec::new(),
                start_ms: -1,
                update_ms: now,
                completing: false,
            };
            let w = write(tid, &meta);
            let (producer_id, producer_epoch) = (meta.producer_id, meta.producer_epoch);
            self.txns.insert(tid.to_string(), meta);
            return Ok(InitOutcome::Ready {
                producer_id,
                producer_epoch,
                write: w,
            });
        };
        if m.state.is_prepare() {
            if m.completing {
                return Err(TxnError::Concurrent);
            }
            m.completing = true;
            return Ok(InitOutcome::CompleteFirst(completion(tid, m), None));
        }
        if expected.0 >= 0 {
            if expected.0 != m.producer_id {
                return Err(TxnError::InvalidMapping);
            }
            if expected.1 != m.producer_epoch {
                return Err(TxnError::Fenced);
            }
        }
        if m.state == TxnState::Ongoing {
            // Fence the current producer (its epoch is bumped; the markers carry the new
            // epoch under the same producer id) and abort its transaction.
            if m.producer_epoch < i16::MAX - 1 {
                m.producer_epoch += 1;
            }
            m.state = TxnState::PrepareAbort;
            m.offsets.clear();
            m.update_ms = now;
            m.completing = true;
            return Ok(InitOutcome::CompleteFirst(
                completion(tid, m),
                Some(write(tid, m)),
            ));
        }
        bump_epoch(m, fresh_id);
        m.timeout_ms = timeout_ms;
        m.state = TxnState::Empty;
        m.partitions.clear();
        m.groups.clear();
        m.offsets.clear();
        m.start_ms = -1;
        m.update_ms = now;
        Ok(InitOutcome::Ready {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            write: write(tid, m),
        })
    }

    /// The transactional id's state, checked against the producer's id and epoch.
    fn producer(&mut self, tid: &str, pid: i64, epoch: i16) -> Result<&mut TxnMeta, TxnError> {
        let m = self.txns.get_mut(tid).ok_or(TxnError::InvalidMapping)?;
        if m.producer_id != pid {
            return Err(TxnError::InvalidMapping);
        }
        if epoch != m.producer_epoch {
            return Err(TxnError::Fenced);
        }
        Ok(m)
    }

    /// Move to Ongoing (a new transaction starts unless one is open).
    fn ongoing(m: &mut TxnMeta, now: Ms) -> Result<(), TxnError> {
        match m.state {
            TxnState::Ongoing => Ok(()),
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::Concurrent),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                m.state = TxnState::Ongoing;
                m.partitions.clear();
                m.groups.clear();
                m.offsets.clear();
                m.start_ms = now;
                Ok(())
            }
        }
    }

    /// AddPartitionsToTxn. Returns the record to persist (`None`: nothing changed).
    pub fn add_partitions(
        &mut self,
        tid: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: Ms,
    ) -> Result<Option<Write>, TxnError> {
        let m = self.producer(tid, pid, epoch)?;
        if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
            return Ok(None);
        }
        Self::ongoing(m, now)?;
        m.partitions.extend(partitions.iter().cloned());
        m.update_ms = now;
        Ok(Some(write(tid, m)))
    }

    /// AddOffsetsToTxn.
    pub fn add_offsets(
        &mut self,
        tid: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        now: Ms,
    ) -> Result<Option<Write>, TxnError> {
        let m = self.producer(tid, pid, epoch)?;
        if m.state == TxnState::Ongoing && m.groups.contains(group) {
            return Ok(None);
        }
        Self::ongoing(m, now)?;
        m.groups.insert(group.to_string());
        m.update_ms = now;
        Ok(Some(write(tid, m)))
    }

    /// TxnOffsetCommit: offsets held until the transaction ends (applied on commit).
    pub fn commit_offsets(
        &mut self,
        tid: &str,
        pid: i64,
        epoch: i16,
        offsets: Vec<PendingOffset>,
        now: Ms,
    ) -> Result<Write, TxnError> {
        let m = self.producer(tid, pid, epoch)?;
        if m.state != TxnState::Ongoing {
            return Err(TxnError::InvalidState);
        }
        for o in offsets {
            m.groups.insert(o.group.clone());
            m.offsets.retain(|x| {
                (x.group.as_str(), x.topic.as_str(), x.partition)
                    != (o.group.as_str(), o.topic.as_str(), o.partition)
            });
            m.offsets.push(o);
        }
        m.update_ms = now;
        Ok(write(tid, m))
    }

    /// EndTxn. `Ok(None)`: already done (a retry); otherwise persist the write, then drive
    /// the completion.
    pub fn end_txn(
        &mut self,
        tid: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        now: Ms,
    ) -> Result<Option<(Completion, Write)>, TxnError> {
        let m = self.producer(tid, pid, epoch)?;
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                m.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                if !commit {
                    m.offsets.clear();
                }
                m.update_ms = now;
                m.completing = true;
                Ok(Some((completion(tid, m), write(tid, m))))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::Concurrent)
            }
            _ => Err(TxnError::InvalidState),
        }
    }

    /// The markers of `c` are written (and its offsets applied): finish the transaction.
    pub fn complete(&mut self, c: &Completion, now: Ms) -> Option<Write> {
        let m = self.txns.get_mut(&c.transactional_id)?;
        if !m.state.is_prepare() || m.producer_id != c.producer_id {
            return None;
        }
        m.state = if m.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        m.partitions.clear();
        m.groups.clear();
        m.offsets.clear();
        m.start_ms = -1;
        m.update_ms = now;
        m.completing = false;
        Some(write(&c.transactional_id, m))
    }

    /// Driving `c` failed: a later tick hands it out again.
    pub fn release(&mut self, c: &Completion) {
        if let Some(m) = self.txns.get_mut(&c.transactional_id) {
            m.completing = false;
        }
    }

    /// May `pid`/`epoch` of `tid` write transactional data to this partition now?
    pub fn verify_produce(
        &self,
        tid: &str,
        pid: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let m = self.txns.get(tid).ok_or(TxnError::InvalidMapping)?;
        if m.producer_id != pid {
            return Err(TxnError::InvalidMapping);
        }
        if epoch != m.producer_epoch {
            return Err(TxnError::Fenced);
        }
        if m.state != TxnState::Ongoing || !m.partitions.contains(&(topic.to_string(), partition)) {
            return Err(TxnError::InvalidState);
        }
        Ok(())
    }

    /// Is an offset for this group partition waiting in an open transaction?
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.txns.values().any(|m| {
            matches!(m.state, TxnState::Ongoing | TxnState::PrepareCommit)
                && m.offsets
                    .iter()
                    .any(|o| o.group == group && o.topic == topic && o.partition == partition)
        })
    }

    /// Is (`pid`, partition) part of a transaction the coordinator has open or is
    /// completing? Used to close transactions a crash left open in a partition.
    pub fn covers(&self, pid: i64, topic: &str, partition: i32) -> bool {
        self.txns.values().any(|m| {
            m.producer_id == pid
                && matches!(
                    m.state,
                    TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
                )
                && m.partitions.contains(&(topic.to_string(), partition))
        })
    }

    /// Advance time: abort transactions open longer than their timeout (fencing the
    /// producer, as Kafka does), hand out completions nobody is driving (after a restart or
    /// a failed attempt) and expire long-idle transactional ids.
    pub fn tick(&mut self, now: Ms) -> TickWork {
        let mut work = TickWork::default();
        let mut expired = Vec::new();
        for (tid, m) in self.txns.iter_mut() {
            match m.state {
                TxnState::Ongoing if now - m.start_ms > m.timeout_ms as i64 => {
                    if m.producer_epoch < i16::MAX - 1 {
                        m.producer_epoch += 1;
                    }
                    m.state = TxnState::PrepareAbort;
                    m.offsets.clear();
                    m.update_ms = now;
                    m.completing = true;
                    work.writes.push(write(tid, m));
                    work.completions.push(completion(tid, m));
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort if !m.completing => {
                    m.completing = true;
                    work.completions.push(completion(tid, m));
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if now - m.update_ms > self.cfg.id_expiration_ms =>
                {
                    expired.push(tid.clone());
                }
                _ => {}
            }
        }
        for tid in expired {
            self.txns.remove(&tid);
            work.writes.push(Write {
                transactional_id: tid,
                meta: None,
            });
        }
        work
    }
}

/// Next epoch; a new producer id once the epoch space is used up (Kafka does the same).
fn bump_epoch(m: &mut TxnMeta, fresh_id: &mut dyn FnMut() -> i64) {
    if m.producer_epoch >= i16::MAX - 1 {
        m.producer_id = fresh_id();
        m.producer_epoch = 0;
    } else {
        m.producer_epoch += 1;
    }
}
