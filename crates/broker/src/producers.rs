//! Idempotent producer state: producer id allocation and per-partition sequence tracking
//! that deduplicates retried batches and rejects gaps with Kafka's error codes.
//!
//! State survives restarts: producer ids come from a durably reserved block, and the
//! per-partition sequences are rebuilt at startup from the batch headers in the log
//! (every batch carries its producer id, epoch and sequences).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use kafka_protocol::ResponseError as E;
use serde::{Deserialize, Serialize};
use sluice_log::{BatchHeader, ControlType};

/// Kafka keeps the last five batches per producer for duplicate detection.
const CACHED_BATCHES: usize = 5;
const ID_BLOCK: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// An aborted transaction's range in one partition (Fetch's aborted_transactions entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    /// Producer id.
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
}

/// Sequence and transaction state of one partition (serializable: saved at a clean
/// shutdown so the next start need not scan the partition's batch headers).
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProducers {
    producers: HashMap<i64, Producer>,
    /// Open transactions: producer id -> offset of its first transactional batch here.
    open_txns: BTreeMap<i64, i64>,
    /// Aborted transactions in marker order (the in-memory aborted-transaction index).
    aborted: Vec<AbortedTxn>,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already stored at this base offset: answer with it, append nothing.
    Duplicate(i64),
}

fn last_seq(h: &BatchHeader) -> i32 {
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

impl PartitionProducers {
    /// Check a batch against the producer's state (Kafka error code on refusal).
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, i16> {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state aged out): accept and start tracking.
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < p.epoch {
            return Err(E::InvalidProducerEpoch.code());
        }
        if h.producer_epoch > p.epoch {
            return if h.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(E::OutOfOrderSequenceNumber.code())
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
            Some(b) if h.base_sequence != next_seq(b.last_seq) => {
                Err(E::OutOfOrderSequenceNumber.code())
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Remember an appended batch (with its assigned base offset). Transaction markers go
    /// through [`PartitionProducers::record_marker`].
    pub fn record(&mut self, h: &BatchHeader) {
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
    /// transaction here (if any) ends; an abort is indexed for read_committed fetches.
    /// A marker's newer epoch (a fencing abort) becomes the producer's epoch here.
    pub fn record_marker(&mut self, producer_id: i64, epoch: i16, kind: ControlType, offset: i64) {
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
    pub fn aborted_between(&mut self, from: i64, to: i64, log_start: i64) -> Vec<AbortedTxn> {
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

    /// Producers known here: (producer id, epoch, last sequence, base offset of last batch).
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

/// (topic, partition).
pub type TopicPartition = (String, i32);

#[derive(Serialize, Deserialize)]
struct SnapshotEntry {
    topic: String,
    partition: i32,
    end: i64,
    state: PartitionProducers,
}
type PartitionMap = HashMap<TopicPartition, Arc<Mutex<PartitionProducers>>>;

/// All partitions' producer state plus producer id allocation.
#[derive(Debug)]
pub struct ProducerStates {
    partitions: Mutex<PartitionMap>,
    ids: Mutex<IdAllocator>,
}

#[derive(Debug)]
struct IdAllocator {
    path: PathBuf,
    next: i64,
    reserved_until: i64,
}

impl ProducerStates {
    /// Load the id block file under `dir`.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("producer-id-block");
        let reserved = match std::fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerStates {
            partitions: Mutex::new(HashMap::new()),
            // Ids below the stored reservation may have been handed out before a crash.
            ids: Mutex::new(IdAllocator {
                path,
                next: reserved,
                reserved_until: reserved,
            }),
        })
    }

    /// State of one partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Arc<Mutex<PartitionProducers>> {
        self.partitions
            .lock()
            .expect("producer map")
            .entry((topic.to_string(), partition))
            .or_default()
            .clone()
    }

    /// Every partition's state.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<Mutex<PartitionProducers>>)> {
        self.partitions
            .lock()
            .expect("producer map")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Save every partition's state with the log end offset it reflects (`ends`) to
    /// `producer-state.json` beside the id block: called at a clean shutdown, after the
    /// last append.
    pub fn save_snapshot(&self, ends: &HashMap<TopicPartition, i64>) -> std::io::Result<()> {
        let mut entries = Vec::new();
        for ((topic, partition), st) in self.all() {
            let Some(&end) = ends.get(&(topic.clone(), partition)) else {
                continue;
            };
            let state = serde_json::to_value(&*st.lock().unwrap_or_else(PoisonError::into_inner))
                .map_err(std::io::Error::other)?;
            entries.push(serde_json::json!({
                "topic": topic, "partition": partition, "end": end, "state": state
            }));
        }
        let json = serde_json::to_vec(&entries).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&self.snapshot_path(), &json)
    }

    /// Take the saved snapshot (the file is removed: it is valid once, for the start right
    /// after the shutdown that wrote it): per partition, the log end offset it reflects and
    /// the state. A damaged file is reported and ignored (the caller scans instead).
    pub fn take_snapshot(&self) -> HashMap<TopicPartition, (i64, PartitionProducers)> {
        let path = self.snapshot_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => return HashMap::new(),
        };
        let _ = std::fs::remove_file(&path);
        match serde_json::from_slice::<Vec<SnapshotEntry>>(&bytes) {
            Ok(entries) => entries
                .into_iter()
                .map(|e| ((e.topic, e.partition), (e.end, e.state)))
                .collect(),
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; rebuilding producer state from the log",
                    path.display()
                );
                HashMap::new()
            }
        }
    }

    fn snapshot_path(&self) -> PathBuf {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.path.with_file_name("producer-state.json")
    }

    /// Forget a deleted topic's state.
    pub fn forget_topic(&self, topic: &str) {
        self.partitions
            .lock()
            .expect("producer map")
            .retain(|(t, _), _| t != topic);
    }

    /// A new producer id, never handed out before (durably reserved in blocks).
    pub fn allocate_id(&self) -> std::io::Result<i64> {
        let mut a = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if a.next >= a.reserved_until {
            let until = a.next + ID_BLOCK;
            crate::fsutil::write_atomic(&a.path, until.to_string().as_bytes())?;
            a.reserved_until = until;
        }
        let id = a.next;
        a.next += 1;
        Ok(id)
    }

    /// The highest epoch any partition saw for `producer_id`.
    pub fn known_epoch(&self, producer_id: i64) -> Option<i16> {
        let parts: Vec<_> = self
            .partitions
            .lock()
            .expect("producer map")
            .values()
            .cloned()
            .collect();
        parts
            .iter()
            .filter_map(|p| {
                p.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .epoch_of(producer_id)
            })
            .max()
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
        let mut p = PartitionProducers::default();
        let b0 = header(7, 0, 0, 3, 100);
        assert_eq!(p.check(&b0), Ok(SequenceCheck::Append));
        p.record(&b0);
        let b1 = header(7, 0, 3, 2, 103);
        assert_eq!(p.check(&b1), Ok(SequenceCheck::Append));
        p.record(&b1);
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
            Err(E::OutOfOrderSequenceNumber.code())
        );
        // Old epochs are fenced; a new epoch must start at 0.
        assert_eq!(
            p.check(&header(7, -1, 5, 1, -1)).unwrap_err(),
            E::InvalidProducerEpoch.code()
        );
        assert_eq!(
            p.check(&header(7, 1, 5, 1, -1)).unwrap_err(),
            E::OutOfOrderSequenceNumber.code()
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
        let mut p = PartitionProducers::default();
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
        // Retention past the marker drops the entry.
        assert_eq!(p.aborted_between(0, 100, 15), vec![]);
        // A fencing abort with a newer epoch fences the old epoch's batches.
        p.record(&txn(3, 0, 1, 20));
        p.record_marker(3, 1, ControlType::Abort, 21);
        assert_eq!(
            p.check(&header(3, 0, 1, 1, -1)).unwrap_err(),
            E::InvalidProducerEpoch.code()
        );
        assert_eq!(p.check(&header(3, 2, 0, 1, -1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut p = PartitionProducers::default();
        let b = header(1, 0, i32::MAX - 1, 2, 0);
        p.record(&b);
        assert_eq!(p.check(&header(1, 0, 0, 1, -1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = std::env::temp_dir().join(format!("sluice-pid-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = ProducerStates::open(dir.clone()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate_id().unwrap()).collect();
        drop(a);
        let b = ProducerStates::open(dir.clone()).unwrap();
        let next = b.allocate_id().unwrap();
        assert!(first.iter().all(|&i| i < next), "{first:?} then {next}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
