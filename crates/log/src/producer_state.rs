//! Per-partition producer and transaction state, kept by the partition itself.
//!
//! Every append goes through [`crate::Partition`], which records each batch header here
//! under its append lock, so this state is always the log's own view, for every writer
//! (the broker's Produce, transaction markers, pipeline sinks) and every reader:
//!
//! * idempotent producers' sequences: the last five batches per producer, to recognise a
//!   retried batch and to refuse gaps and fenced epochs ([`ProducerState::check`]);
//! * open transactions per producer, from which the **last stable offset** follows (the
//!   first offset of the earliest open transaction, or the high watermark);
//! * the **aborted-transaction index** (Kafka's `.txnindex`): for each aborted transaction
//!   its producer id, first offset and marker offset, which read_committed readers need to
//!   drop aborted records ([`AbortedTxn::covers`], [`AbortFilter`]).
//!
//! It is rebuilt from the stored batch headers when a partition opens (headers only, plus
//! the few control batches), or taken from the snapshot a clean shutdown wrote when the log
//! did not change since.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::batch::{BatchHeader, ControlType};

/// Kafka keeps the last five batches per producer for duplicate detection.
const CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// An aborted transaction's range in one partition (a Fetch response's
/// `aborted_transactions` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    /// Producer id.
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
}

impl AbortedTxn {
    /// Whether the data batch `h` belongs to this aborted transaction: a transactional
    /// batch of the same producer between the transaction's first batch and its marker (a
    /// producer has at most one open transaction per partition, so this is exact).
    pub fn covers(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && h.producer_id == self.producer_id
            && h.base_offset >= self.first_offset
            && h.base_offset < self.last_offset
    }
}

/// Drops the data batches of aborted transactions for a read_committed reader, given the
/// aborted transactions overlapping what it reads ([`crate::CommittedRead::aborted`]).
#[derive(Debug, Clone, Default)]
pub struct AbortFilter {
    by_producer: HashMap<i64, Vec<AbortedTxn>>,
}

impl AbortFilter {
    /// A filter over these aborted transactions.
    pub fn new(aborted: &[AbortedTxn]) -> Self {
        let mut by_producer: HashMap<i64, Vec<AbortedTxn>> = HashMap::new();
        for a in aborted {
            by_producer.entry(a.producer_id).or_default().push(*a);
        }
        Self { by_producer }
    }

    /// Whether the batch `h` is data of an aborted transaction.
    pub fn is_aborted(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && self
                .by_producer
                .get(&h.producer_id)
                .is_some_and(|v| v.iter().any(|a| a.covers(h)))
    }
}

/// Why [`ProducerState::check`] refused a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// The batch's epoch is older than the producer's (a fenced zombie): Kafka's
    /// INVALID_PRODUCER_EPOCH.
    FencedEpoch,
    /// The batch's first sequence does not follow the producer's last one (or a new epoch
    /// does not start at 0): OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder,
}

/// What to do with a batch, by its producer's sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already stored at this base offset: answer with it, append
    /// nothing.
    Duplicate(i64),
}

fn last_seq(h: &BatchHeader) -> i32 {
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

/// Sequence and transaction state of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
    /// Open transactions: producer id -> offset of its first transactional batch here.
    open_txns: BTreeMap<i64, i64>,
    /// Aborted transactions in marker order (the in-memory aborted-transaction index).
    aborted: Vec<AbortedTxn>,
    /// The log end offset this state reflects (every batch below it is recorded).
    #[serde(default)]
    reflects: i64,
}

impl ProducerState {
    /// Check a batch against its producer's state.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state aged out): accept and start tracking.
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < p.epoch {
            return Err(SequenceError::FencedEpoch);
        }
        if h.producer_epoch > p.epoch {
            return if h.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder)
            };
        }
        let last = last_seq(h);
        if let Some(b) = p
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(SequenceCheck::Duplicate(b.base_offset));
        }
        match p.batches.back() {
            Some(b) if h.base_sequence != next_seq(b.last_seq) => Err(SequenceError::OutOfOrder),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Remember an appended data batch (with its assigned base offset).
    pub(crate) fn record(&mut self, h: &BatchHeader) {
        self.reflects = self.reflects.max(h.next_offset());
        if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
            self.open_txns.entry(h.producer_id).or_insert(h.base_offset);
        }
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset: h.base_offset,
        });
        while p.batches.len() > CACHED_BATCHES {
            p.batches.pop_front();
        }
    }

    /// A commit or abort marker for `producer_id` was appended at `offset`: its open
    /// transaction here (if any) ends; an abort is indexed for read_committed readers. A
    /// marker's newer epoch (a fencing abort) becomes the producer's epoch here.
    pub(crate) fn record_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        kind: ControlType,
        offset: i64,
    ) {
        self.reflects = self.reflects.max(offset + 1);
        if let Some(first) = self.open_txns.remove(&producer_id)
            && kind == ControlType::Abort
        {
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset: first,
                last_offset: offset,
            });
        }
        let p = self.producers.entry(producer_id).or_default();
        if epoch > p.epoch {
            p.epoch = epoch;
            p.batches.clear();
        }
    }

    /// The log end offset this state reflects.
    pub fn reflects(&self) -> i64 {
        self.reflects
    }

    pub(crate) fn set_reflects(&mut self, end: i64) {
        self.reflects = end;
    }

    /// The first offset of the earliest open transaction (the last stable offset is this
    /// or the high watermark, whichever is lower).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open_txns.values().min().copied()
    }

    /// Open transactions: (producer id, first offset).
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.open_txns.iter().map(|(p, o)| (*p, *o)).collect()
    }

    /// Aborted transactions overlapping [from, to) (Kafka's rule: last offset >= from and
    /// first offset < to). Entries wholly below `log_start` are dropped for good.
    pub(crate) fn aborted_between(
        &mut self,
        from: i64,
        to: i64,
        log_start: i64,
    ) -> Vec<AbortedTxn> {
        if self
            .aborted
            .first()
            .is_some_and(|a| a.last_offset < log_start)
        {
            self.aborted.retain(|a| a.last_offset >= log_start);
        }
        let i = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[i..]
            .iter()
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Producers known here: (producer id, epoch, last sequence, base offset of last
    /// batch), by producer id.
    pub fn describe(&self) -> Vec<(i64, i16, i32, i64)> {
        let mut out: Vec<_> = self
            .producers
            .iter()
            .map(|(id, p)| {
                let last = p.batches.back();
                (
                    *id,
                    p.epoch,
                    last.map_or(-1, |b| b.last_seq),
                    last.map_or(-1, |b| b.base_offset),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The epoch the partition last saw from a producer.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|p| p.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut p = ProducerState::default();
        let b0 = header(7, 0, 0, 3, 100);
        assert_eq!(p.check(&b0), Ok(SequenceCheck::Append));
        p.record(&b0);
        let b1 = header(7, 0, 3, 2, 103);
        assert_eq!(p.check(&b1), Ok(SequenceCheck::Append));
        p.record(&b1);
        assert_eq!(p.reflects(), 105);
        // A retry of b0 is recognised and answered with its original offset.
        assert_eq!(
            p.check(&header(7, 0, 0, 3, -1)),
            Ok(SequenceCheck::Duplicate(100))
        );
        assert_eq!(
            p.check(&header(7, 0, 3, 2, -1)),
            Ok(SequenceCheck::Duplicate(103))
        );
        // A gap is refused.
        assert_eq!(
            p.check(&header(7, 0, 9, 1, -1)),
            Err(SequenceError::OutOfOrder)
        );
        // Old epochs are fenced; a new epoch must start at 0.
        assert_eq!(
            p.check(&header(7, -1, 5, 1, -1)),
            Err(SequenceError::FencedEpoch)
        );
        assert_eq!(
            p.check(&header(7, 1, 5, 1, -1)),
            Err(SequenceError::OutOfOrder)
        );
        assert_eq!(p.check(&header(7, 1, 0, 1, -1)), Ok(SequenceCheck::Append));
        // Non-idempotent batches pass.
        assert_eq!(
            p.check(&header(-1, -1, -1, 1, -1)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn transactions_open_close_and_index_aborts() {
        let mut p = ProducerState::default();
        let txn = |pid, seq, n, base| {
            let mut h = header(pid, 0, seq, n, base);
            h.attributes = 1 << 4;
            h
        };
        p.record(&txn(1, 0, 2, 10)); // 10..=11
        p.record(&txn(2, 0, 1, 12)); // 12
        p.record(&txn(1, 2, 1, 13)); // 13
        assert_eq!(p.first_unstable_offset(), Some(10));
        p.record_marker(1, 0, ControlType::Abort, 14);
        assert_eq!(p.first_unstable_offset(), Some(12));
        p.record_marker(2, 0, ControlType::Commit, 15);
        assert_eq!(p.first_unstable_offset(), None);
        // A marker without an open transaction (a repeated completion) changes nothing.
        p.record_marker(2, 0, ControlType::Abort, 16);
        let one = AbortedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 14,
        };
        assert_eq!(p.aborted_between(0, 100, 0), vec![one]);
        assert_eq!(p.aborted_between(14, 100, 0), vec![one]);
        assert_eq!(p.aborted_between(15, 100, 0), vec![]);
        assert_eq!(
            p.aborted_between(0, 10, 0),
            vec![],
            "ends before the transaction"
        );
        assert_eq!(p.aborted_between(0, 11, 0), vec![one]);
        // The filter drops exactly producer 1's transactional batches in [10, 14).
        let f = AbortFilter::new(&[one]);
        assert!(f.is_aborted(&txn(1, 0, 2, 10)) && f.is_aborted(&txn(1, 2, 1, 13)));
        assert!(!f.is_aborted(&txn(2, 0, 1, 12)), "another producer");
        assert!(!f.is_aborted(&txn(1, 3, 1, 17)), "after the marker");
        assert!(!f.is_aborted(&header(1, 0, 0, 1, 11)), "not transactional");
        // Retention past the marker drops the entry.
        assert_eq!(p.aborted_between(0, 100, 15), vec![]);
        // A fencing abort with a newer epoch fences the old epoch's batches.
        p.record(&txn(3, 0, 1, 20));
        p.record_marker(3, 1, ControlType::Abort, 21);
        assert_eq!(
            p.check(&header(3, 0, 1, 1, -1)),
            Err(SequenceError::FencedEpoch)
        );
        assert_eq!(p.check(&header(3, 2, 0, 1, -1)), Ok(SequenceCheck::Append));
        assert_eq!(p.reflects(), 22);
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut p = ProducerState::default();
        let b = header(1, 0, i32::MAX - 1, 2, 0);
        p.record(&b);
        assert_eq!(p.check(&header(1, 0, 0, 1, -1)), Ok(SequenceCheck::Append));
    }
}
