//! The compaction planner: what [`crate::Partition::compact`] keeps, decided over plain
//! facts about batches and records (no files, no locks, no clock).
//!
//! A compaction runs in three steps, each a piece of this module:
//!
//! 1. [`Transactions::decide`] over the transactional batch headers of the log (with the
//!    types of the markers [`markers_to_read`] names): which data batches belong to
//!    aborted transactions, and the first unstable offset (the first offset of the
//!    earliest transaction without a decisive marker).
//! 2. [`LatestOffsets`], fed every record of the batches it [counts](LatestOffsets::counts)
//!    in offset order, the active segment included: the latest offset of every key.
//! 3. The resulting [`Plan`]: which segments may be rewritten
//!    ([`Plan::cleanable_segments`]), what happens to each of their batches
//!    ([`Plan::batch`]) and records ([`Plan::keeps`]), and so how a batch is written back
//!    ([`rewrite`]).
//!
//! The partition gathers the facts in its scans and executes the plan with its I/O.

use std::collections::{HashMap, HashSet};

use crate::batch::ControlType;

/// A transactional batch, as far as transaction outcomes go (non-transactional batches
/// take no part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnBatch {
    /// The batch's base offset.
    pub base_offset: i64,
    /// The producer that wrote it.
    pub producer_id: i64,
    /// A control batch (a commit or abort marker) rather than data.
    pub marker: bool,
}

/// Whether the marker at `base_offset` decides its transaction: a marker at or above the
/// high watermark (not yet synced) leaves the transaction undecided, and compaction waits
/// for it.
fn marker_decides(base_offset: i64, high_watermark: i64) -> bool {
    base_offset < high_watermark
}

/// The base offsets of the markers whose type [`Transactions::decide`] needs, in log
/// order: every marker below the high watermark. The others are not read.
pub(crate) fn markers_to_read(batches: &[TxnBatch], high_watermark: i64) -> Vec<i64> {
    batches
        .iter()
        .filter(|b| b.marker && marker_decides(b.base_offset, high_watermark))
        .map(|b| b.base_offset)
        .collect()
}

/// What the transactions of the log came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transactions {
    /// Base offsets of the data batches of aborted transactions.
    pub aborted: HashSet<i64>,
    /// The first offset of the earliest transaction without a decisive marker;
    /// `i64::MAX` when every transaction is decided.
    pub first_unstable: i64,
}

impl Transactions {
    /// Decide the transactions of `batches` (the transactional batches of the log, in
    /// offset order). A data batch belongs to its producer's open transaction; the
    /// producer's next marker below `high_watermark` decides every batch open at that
    /// point, by its type in `marker_types` (the markers of [`markers_to_read`]; one
    /// missing from the map counts as a commit). Batches still open at the end make the
    /// earliest of them the first unstable offset.
    pub(crate) fn decide(
        batches: &[TxnBatch],
        high_watermark: i64,
        marker_types: &HashMap<i64, ControlType>,
    ) -> Transactions {
        let mut open: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut aborted = HashSet::new();
        for b in batches {
            if !b.marker {
                open.entry(b.producer_id).or_default().push(b.base_offset);
            } else if marker_decides(b.base_offset, high_watermark) {
                let decided = open.remove(&b.producer_id).unwrap_or_default();
                if marker_types.get(&b.base_offset) == Some(&ControlType::Abort) {
                    aborted.extend(decided);
                }
            }
        }
        // Nothing at or above the high watermark is durable yet (a crash may take it
        // back): it must not supersede a durable value, so it bounds the stable part too.
        let first_unstable = open
            .values()
            .flatten()
            .copied()
            .min()
            .unwrap_or(i64::MAX)
            .min(high_watermark);
        Transactions {
            aborted,
            first_unstable,
        }
    }

    fn is_aborted(&self, b: BatchFacts) -> bool {
        self.aborted.contains(&b.base_offset)
    }

    fn is_stable(&self, b: BatchFacts) -> bool {
        b.base_offset < self.first_unstable
    }
}

/// A stored batch, as far as compaction goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchFacts {
    /// The batch's base offset.
    pub base_offset: i64,
    /// A control batch (transaction marker).
    pub control: bool,
}

/// A record of a batch the plan filters ([`BatchPlan::Filter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordFacts<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// The record's time as stored (for `LogAppendTime` batches the batch's max
    /// timestamp, as `batch::RecordRef::position_in` gives it).
    pub timestamp: i64,
    /// The key; `None` for a record without one.
    pub key: Option<&'a [u8]>,
    /// A tombstone (null value).
    pub tombstone: bool,
}

/// The latest offset of every key (step 2): fed, in offset order, every record of the
/// batches it [counts](LatestOffsets::counts), across the whole log (the active segment
/// too).
#[derive(Debug)]
pub(crate) struct LatestOffsets {
    txns: Transactions,
    latest: HashMap<Vec<u8>, i64>,
}

impl LatestOffsets {
    /// An empty index over a log whose transactions came to `txns`.
    pub(crate) fn new(txns: Transactions) -> LatestOffsets {
        LatestOffsets {
            txns,
            latest: HashMap::new(),
        }
    }

    /// Whether the records of batch `b` are values of their keys, to be passed to
    /// [`LatestOffsets::observe`]: data (not a marker), below the first unstable offset,
    /// not of an aborted transaction. The records of other batches are never looked at.
    pub(crate) fn counts(&self, b: BatchFacts) -> bool {
        !b.control && self.txns.is_stable(b) && !self.txns.is_aborted(b)
    }

    /// A record of a counted batch: the value at `offset` becomes its key's latest (calls
    /// come in offset order, so the last one wins). A record without a key is no key's
    /// value.
    pub(crate) fn observe(&mut self, key: Option<&[u8]>, offset: i64) {
        if let Some(k) = key {
            self.latest.insert(k.to_vec(), offset);
        }
    }

    /// The plan for a compaction run at `now_ms` under `delete.retention.ms`
    /// `delete_retention_ms`: tombstones older than `now_ms - delete_retention_ms` expire.
    pub(crate) fn into_plan(self, now_ms: i64, delete_retention_ms: i64) -> Plan {
        Plan {
            txns: self.txns,
            latest: self.latest,
            tombstone_horizon: now_ms - delete_retention_ms,
        }
    }
}

/// What happens to one batch of a segment being rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchPlan {
    /// Kept as stored: control batches (markers), however old.
    Keep,
    /// Every record removed: data of an aborted transaction.
    Drop,
    /// Each record kept or removed by [`Plan::keeps`], then written back by [`rewrite`].
    Filter,
}

/// How a filtered batch is written back (see [`rewrite`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// Every record survived: the stored bytes are kept.
    Verbatim,
    /// Some survived: a batch like the original holding only those.
    Rebuild,
    /// None survived: the batch goes.
    Drop,
}

/// How a filtered batch of `total` records of which `kept` survived is written back.
pub(crate) fn rewrite(kept: u64, total: u64) -> Rewrite {
    if kept == total {
        Rewrite::Verbatim
    } else if kept > 0 {
        Rewrite::Rebuild
    } else {
        Rewrite::Drop
    }
}

/// The decisions of one compaction run (step 3).
#[derive(Debug)]
pub(crate) struct Plan {
    txns: Transactions,
    latest: HashMap<Vec<u8>, i64>,
    tombstone_horizon: i64,
}

impl Plan {
    /// How many segments, from the first, may be rewritten, given each segment's next
    /// offset in log order (the last entry is the active segment). The active segment
    /// never is; nor is the first segment running past the first unstable offset (it
    /// holds or follows an undecided transaction), nor any after it.
    pub(crate) fn cleanable_segments(&self, segment_ends: &[i64]) -> usize {
        let closed = segment_ends.len().saturating_sub(1);
        segment_ends[..closed]
            .iter()
            .take_while(|&&end| end <= self.txns.first_unstable)
            .count()
    }

    /// What happens to batch `b` of a segment being rewritten: markers stay, aborted
    /// data goes, other batches are filtered record by record.
    pub(crate) fn batch(&self, b: BatchFacts) -> BatchPlan {
        if b.control {
            BatchPlan::Keep
        } else if self.txns.is_aborted(b) {
            BatchPlan::Drop
        } else {
            BatchPlan::Filter
        }
    }

    /// Whether a record of a filtered batch survives: it is its key's latest value, and
    /// not a tombstone whose timestamp is before `now - delete.retention.ms`. A record
    /// without a key never survives.
    pub(crate) fn keeps(&self, r: &RecordFacts<'_>) -> bool {
        let newest = r.key.and_then(|k| self.latest.get(k)) == Some(&r.offset);
        let expired_tombstone = r.tombstone && r.timestamp < self.tombstone_horizon;
        newest && !expired_tombstone
    }

    /// The first unstable offset the plan respects (`i64::MAX` when none).
    #[cfg(test)]
    pub(crate) fn first_unstable(&self) -> i64 {
        self.txns.first_unstable
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A record of a test log: key, timestamp, tombstone.
    #[derive(Debug, Clone)]
    struct Rec {
        key: Option<Vec<u8>>,
        ts: i64,
        tombstone: bool,
    }

    /// A batch of a test log. Offsets are `base..base + records.len()` (a marker holds
    /// its one control record).
    #[derive(Debug, Clone)]
    struct Batch {
        base: i64,
        /// The transactional producer, if any.
        producer: Option<i64>,
        /// For a marker, its type.
        marker: Option<ControlType>,
        records: Vec<Rec>,
    }

    impl Batch {
        fn next_offset(&self) -> i64 {
            self.base + self.records.len().max(1) as i64
        }

        fn facts(&self) -> BatchFacts {
            BatchFacts {
                base_offset: self.base,
                control: self.marker.is_some(),
            }
        }
    }

    /// A segment: its base offset and batches.
    #[derive(Debug, Clone)]
    struct Seg {
        base: i64,
        batches: Vec<Batch>,
    }

    impl Seg {
        fn next_offset(&self) -> i64 {
            self.batches.last().map_or(self.base, Batch::next_offset)
        }
    }

    /// Builds a test log with dense offsets; the last segment is the active one.
    #[derive(Debug, Default)]
    struct LogBuilder {
        segs: Vec<Seg>,
        next: i64,
    }

    fn rec(key: &str, ts: i64) -> Rec {
        Rec {
            key: Some(key.as_bytes().to_vec()),
            ts,
            tombstone: false,
        }
    }

    fn tomb(key: &str, ts: i64) -> Rec {
        Rec {
            key: Some(key.as_bytes().to_vec()),
            ts,
            tombstone: true,
        }
    }

    fn keyless(ts: i64) -> Rec {
        Rec {
            key: None,
            ts,
            tombstone: false,
        }
    }

    impl LogBuilder {
        fn new() -> LogBuilder {
            LogBuilder {
                segs: vec![Seg {
                    base: 0,
                    batches: Vec::new(),
                }],
                next: 0,
            }
        }

        fn push(&mut self, b: Batch) -> &mut Self {
            self.next = b.next_offset();
            self.segs.last_mut().unwrap().batches.push(b);
            self
        }

        /// A non-transactional batch.
        fn data(&mut self, records: Vec<Rec>) -> &mut Self {
            let base = self.next;
            self.push(Batch {
                base,
                producer: None,
                marker: None,
                records,
            })
        }

        /// A batch of `pid`'s transaction.
        fn txn(&mut self, pid: i64, records: Vec<Rec>) -> &mut Self {
            let base = self.next;
            self.push(Batch {
                base,
                producer: Some(pid),
                marker: None,
                records,
            })
        }

        /// A marker for `pid`'s transaction.
        fn marker(&mut self, pid: i64, kind: ControlType) -> &mut Self {
            let base = self.next;
            self.push(Batch {
                base,
                producer: Some(pid),
                marker: Some(kind),
                records: vec![keyless(0)],
            })
        }

        /// Close the active segment and start a new one.
        fn roll(&mut self) -> &mut Self {
            self.segs.push(Seg {
                base: self.next,
                batches: Vec::new(),
            });
            self
        }

        fn build(&self) -> Vec<Seg> {
            self.segs.clone()
        }
    }

    /// What a compaction of a test log came to.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        /// Segments the plan allows to be rewritten.
        cleanable: usize,
        /// The offsets each segment holds afterwards (untouched segments: all of them).
        kept: Vec<Vec<i64>>,
        /// Records removed.
        removed: u64,
    }

    /// Runs the planner over `log` the way `Partition::compact` does (same steps, same
    /// order), with plain data instead of segment files.
    fn compact(log: &[Seg], high_watermark: i64, now: i64, delete_retention_ms: i64) -> Outcome {
        let txn_batches: Vec<TxnBatch> = log
            .iter()
            .flat_map(|s| &s.batches)
            .filter_map(|b| {
                b.producer.map(|pid| TxnBatch {
                    base_offset: b.base,
                    producer_id: pid,
                    marker: b.marker.is_some(),
                })
            })
            .collect();
        let all: HashMap<i64, ControlType> = log
            .iter()
            .flat_map(|s| &s.batches)
            .filter_map(|b| b.marker.map(|m| (b.base, m)))
            .collect();
        let types = markers_to_read(&txn_batches, high_watermark)
            .into_iter()
            .map(|o| (o, all[&o]))
            .collect();
        let txns = Transactions::decide(&txn_batches, high_watermark, &types);
        let mut index = LatestOffsets::new(txns);
        for b in log.iter().flat_map(|s| &s.batches) {
            if index.counts(b.facts()) {
                for (i, r) in b.records.iter().enumerate() {
                    index.observe(r.key.as_deref(), b.base + i as i64);
                }
            }
        }
        let plan = index.into_plan(now, delete_retention_ms);
        let ends: Vec<i64> = log.iter().map(Seg::next_offset).collect();
        let cleanable = plan.cleanable_segments(&ends);
        let mut kept = Vec::new();
        let mut removed = 0;
        for (si, seg) in log.iter().enumerate() {
            let mut offsets = Vec::new();
            for b in &seg.batches {
                let all_offsets = b.base..b.next_offset();
                if si >= cleanable {
                    offsets.extend(all_offsets);
                    continue;
                }
                match plan.batch(b.facts()) {
                    BatchPlan::Keep => offsets.extend(all_offsets),
                    BatchPlan::Drop => removed += b.records.len() as u64,
                    BatchPlan::Filter => {
                        let survivors: Vec<i64> = b
                            .records
                            .iter()
                            .enumerate()
                            .map(|(i, r)| (b.base + i as i64, r))
                            .filter(|(offset, r)| {
                                plan.keeps(&RecordFacts {
                                    offset: *offset,
                                    timestamp: r.ts,
                                    key: r.key.as_deref(),
                                    tombstone: r.tombstone,
                                })
                            })
                            .map(|(o, _)| o)
                            .collect();
                        let total = b.records.len() as u64;
                        let k = survivors.len() as u64;
                        removed += total - k;
                        match rewrite(k, total) {
                            Rewrite::Verbatim => offsets.extend(all_offsets),
                            Rewrite::Rebuild => offsets.extend(survivors),
                            Rewrite::Drop => {}
                        }
                    }
                }
            }
            kept.push(offsets);
        }
        Outcome {
            cleanable,
            kept,
            removed,
        }
    }

    const NOW: i64 = 1_000_000;
    const HW: i64 = i64::MAX;

    #[test]
    fn the_latest_value_of_each_key_wins() {
        // (log, kept offsets per segment)
        let cases: Vec<(Vec<Seg>, Vec<Vec<i64>>)> = vec![
            // Within one closed segment.
            (
                LogBuilder::new()
                    .data(vec![rec("a", NOW), rec("b", NOW)])
                    .data(vec![rec("a", NOW)])
                    .roll()
                    .data(vec![rec("c", NOW)])
                    .build(),
                vec![vec![1, 2], vec![3]],
            ),
            // Superseded by the active segment (which is read, never rewritten).
            (
                LogBuilder::new()
                    .data(vec![rec("a", NOW), rec("b", NOW)])
                    .roll()
                    .data(vec![rec("a", NOW), rec("a", NOW)])
                    .build(),
                vec![vec![1], vec![2, 3]],
            ),
            // Across closed segments: an older segment may empty out entirely.
            (
                LogBuilder::new()
                    .data(vec![rec("a", NOW)])
                    .roll()
                    .data(vec![rec("a", NOW), rec("b", NOW)])
                    .roll()
                    .data(vec![rec("b", NOW)])
                    .roll()
                    .build(),
                vec![vec![], vec![1], vec![3], vec![]],
            ),
            // Nothing superseded: every batch verbatim.
            (
                LogBuilder::new()
                    .data(vec![rec("a", NOW), rec("b", NOW)])
                    .roll()
                    .data(vec![rec("c", NOW)])
                    .build(),
                vec![vec![0, 1], vec![2]],
            ),
        ];
        for (i, (log, want)) in cases.into_iter().enumerate() {
            let got = compact(&log, HW, NOW, 1000);
            assert_eq!(got.kept, want, "case {i}: {log:?}");
        }
    }

    #[test]
    fn tombstones_stay_until_delete_retention_has_passed_since_their_timestamp() {
        // (tombstone timestamp, now, delete.retention.ms, kept)
        let cases = [
            (NOW, NOW, 1000, true),
            (NOW - 1000, NOW, 1000, true), // exactly delete.retention.ms old: kept
            (NOW - 1001, NOW, 1000, false),
            (NOW, NOW, 0, true),
            (NOW - 1, NOW, 0, false),
            (-1, NOW, 1000, false), // no timestamp: expired
            (NOW - 86_400_000, NOW, 86_400_000, true),
        ];
        for (ts, now, retention, kept) in cases {
            let log = LogBuilder::new()
                .data(vec![rec("k", ts), tomb("k", ts)])
                .roll()
                .data(vec![rec("other", now)])
                .build();
            let got = compact(&log, HW, now, retention);
            let want = if kept { vec![1] } else { vec![] };
            assert_eq!(
                got.kept[0], want,
                "tombstone at {ts}, now {now}, retention {retention}"
            );
            assert_eq!(got.removed, if kept { 1 } else { 2 });
        }
        // Only the record's own time counts: an old tombstone in a segment with newer
        // records still expires, a fresh one in an old segment stays.
        let log = LogBuilder::new()
            .data(vec![tomb("old", NOW - 5000), rec("x", NOW)])
            .data(vec![rec("y", NOW - 9000), tomb("new", NOW)])
            .roll()
            .build();
        assert_eq!(compact(&log, HW, NOW, 1000).kept[0], vec![1, 2, 3]);
        // A superseded tombstone goes regardless of its age; a value after a tombstone
        // is the key's value.
        let log = LogBuilder::new()
            .data(vec![tomb("k", NOW), rec("k", NOW - 9000)])
            .roll()
            .build();
        assert_eq!(compact(&log, HW, NOW, 1000).kept[0], vec![1]);
    }

    #[test]
    fn aborted_transaction_data_is_dropped_and_markers_stay() {
        let log = LogBuilder::new()
            .data(vec![rec("k", NOW)]) // 0
            .txn(7, vec![rec("k", NOW), rec("j", NOW)]) // 1, 2: aborted
            .txn(8, vec![rec("m", NOW)]) // 3: committed
            .marker(7, ControlType::Abort) // 4
            .txn(7, vec![rec("k", NOW)]) // 5: a new transaction of 7, committed
            .marker(8, ControlType::Commit) // 6
            .marker(7, ControlType::Commit) // 7
            .roll()
            .data(vec![rec("z", NOW)])
            .build();
        let got = compact(&log, HW, NOW, 1000);
        assert_eq!(got.kept, vec![vec![3, 4, 5, 6, 7], vec![8]]);
        assert_eq!(got.removed, 3, "the aborted batch (2) and k@0 (1)");

        // An aborted value never counts as the latest: the value before it stays.
        let log = LogBuilder::new()
            .data(vec![rec("k", NOW)])
            .roll()
            .txn(7, vec![rec("k", NOW)])
            .marker(7, ControlType::Abort)
            .roll()
            .build();
        assert_eq!(
            compact(&log, HW, NOW, 1000).kept,
            vec![vec![0], vec![2], vec![]]
        );

        // Markers stay however old and even with nothing else left around them.
        let log = LogBuilder::new()
            .txn(3, vec![tomb("k", 0)])
            .marker(3, ControlType::Commit)
            .roll()
            .build();
        assert_eq!(compact(&log, HW, NOW, 1000).kept[0], vec![1]);
    }

    #[test]
    fn a_value_not_yet_durable_never_supersedes_a_durable_one() {
        // k=v1 at 0 in a closed segment; k=v2 at 1 in the active segment, not yet synced
        // (the high watermark is 1): a crash could take v2 back, so v1 stays.
        let log = LogBuilder::new()
            .data(vec![rec("k", NOW)]) // 0
            .roll()
            .data(vec![rec("k", NOW)]) // 1
            .build();
        assert_eq!(compact(&log, 1, NOW, 1000).kept[0], vec![0]);
        // Once v2 is durable, v1 goes.
        assert_eq!(compact(&log, 2, NOW, 1000).kept[0], Vec::<i64>::new());
    }

    #[test]
    fn nothing_at_or_above_the_first_unstable_offset_is_touched() {
        // pid 9's transaction at offset 2 is undecided (no marker).
        let log = LogBuilder::new()
            .data(vec![rec("a", NOW), rec("a", NOW)]) // 0, 1
            .roll()
            .txn(9, vec![rec("a", NOW)]) // 2
            .data(vec![rec("b", NOW), rec("b", NOW)]) // 3, 4
            .roll()
            .data(vec![rec("a", NOW), rec("b", NOW)]) // 5, 6
            .roll()
            .data(vec![rec("c", NOW)]) // 7
            .build();
        let got = compact(&log, HW, NOW, 1000);
        assert_eq!(
            got.cleanable, 1,
            "only the segment ending at the unstable offset"
        );
        assert_eq!(
            got.kept,
            vec![vec![1], vec![2, 3, 4], vec![5, 6], vec![7]],
            "a@1 is not superseded by values at or above the first unstable offset"
        );

        // A marker at or above the high watermark decides nothing yet.
        let log = LogBuilder::new()
            .data(vec![rec("a", NOW)]) // 0
            .txn(9, vec![rec("a", NOW)]) // 1
            .roll()
            .marker(9, ControlType::Abort) // 2
            .roll()
            .build();
        let below = compact(&log, 3, NOW, 1000);
        assert_eq!(
            below.kept,
            vec![vec![0], vec![2], vec![]],
            "decided: aborted"
        );
        let above = compact(&log, 2, NOW, 1000);
        assert_eq!(above.cleanable, 0);
        assert_eq!(above.kept, vec![vec![0, 1], vec![2], vec![]], "undecided");

        // A transaction undecided after an unsynced marker stays open into the next
        // one: data after it joins it.
        let batches = [
            TxnBatch {
                base_offset: 5,
                producer_id: 1,
                marker: false,
            },
            TxnBatch {
                base_offset: 6,
                producer_id: 1,
                marker: true,
            },
            TxnBatch {
                base_offset: 7,
                producer_id: 1,
                marker: false,
            },
        ];
        assert_eq!(markers_to_read(&batches, 6), Vec::<i64>::new());
        let txns = Transactions::decide(&batches, 6, &HashMap::new());
        assert_eq!(txns.first_unstable, 5);
        let types = HashMap::from([(6, ControlType::Abort)]);
        assert_eq!(markers_to_read(&batches, 7), vec![6]);
        let txns = Transactions::decide(&batches, 7, &types);
        assert_eq!((txns.first_unstable, txns.aborted), (7, HashSet::from([5])));
    }

    #[test]
    fn the_active_segment_is_never_compacted() {
        // A single (active) segment full of duplicates and expired tombstones.
        let log = LogBuilder::new()
            .data(vec![rec("a", 0), rec("a", 0), tomb("a", 0), keyless(0)])
            .build();
        let got = compact(&log, HW, NOW, 0);
        assert_eq!((got.cleanable, got.removed), (0, 0));
        assert_eq!(got.kept, vec![vec![0, 1, 2, 3]]);
        // Behind a closed segment: the closed one is cleaned against it, it stays.
        let log = LogBuilder::new()
            .data(vec![rec("a", 0)])
            .roll()
            .data(vec![rec("a", 0), rec("a", 0), tomb("a", 0)])
            .build();
        let got = compact(&log, HW, NOW, 0);
        assert_eq!(got.cleanable, 1);
        assert_eq!(got.kept, vec![vec![], vec![1, 2, 3]]);
        // An empty log, and a log of one empty segment.
        let plan =
            LatestOffsets::new(Transactions::decide(&[], HW, &HashMap::new())).into_plan(NOW, 0);
        assert_eq!(plan.cleanable_segments(&[]), 0);
        assert_eq!(plan.cleanable_segments(&[0]), 0);
        assert_eq!(plan.first_unstable(), i64::MAX);
    }

    #[test]
    fn records_without_a_key_are_removed_from_cleaned_segments_and_supersede_nothing() {
        let log = LogBuilder::new()
            .data(vec![rec("a", NOW), keyless(NOW)]) // 0, 1
            .data(vec![keyless(NOW)]) // 2
            .roll()
            .data(vec![keyless(NOW)]) // 3
            .build();
        let got = compact(&log, HW, NOW, 1000);
        assert_eq!(got.kept, vec![vec![0], vec![3]]);
        assert_eq!(got.removed, 2);
    }

    #[test]
    fn filtered_batches_are_written_back_verbatim_rebuilt_or_dropped() {
        for (kept, total, want) in [
            (3, 3, Rewrite::Verbatim),
            (0, 0, Rewrite::Verbatim),
            (1, 3, Rewrite::Rebuild),
            (0, 3, Rewrite::Drop),
        ] {
            assert_eq!(rewrite(kept, total), want, "{kept} of {total}");
        }
    }

    /// The seed for randomized tests: `SLUICE_SEED` when set, else the clock.
    fn seed() -> u64 {
        match std::env::var("SLUICE_SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .expect("SLUICE_SEED must be an unsigned integer"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64,
        }
    }

    /// A random log: a few segments of batches from a few producers, keys from a small
    /// set, some tombstones and keyless records, timestamps around `NOW`.
    fn random_log(rng: &mut StdRng) -> Vec<Seg> {
        let mut b = LogBuilder::new();
        let keys = ["a", "b", "c", "d", "e"];
        let batches = rng.gen_range(0..24);
        for _ in 0..batches {
            let roll = rng.gen_bool(0.2);
            if roll {
                b.roll();
            }
            let pid = rng.gen_range(1..4);
            if rng.gen_bool(0.15) {
                let kind = if rng.gen_bool(0.5) {
                    ControlType::Abort
                } else {
                    ControlType::Commit
                };
                b.marker(pid, kind);
                continue;
            }
            let n = rng.gen_range(1..5);
            let records = (0..n)
                .map(|_| {
                    // Coarse times, so a tombstone exactly at the horizon is common.
                    let ts = NOW - 100 * rng.gen_range(-1..30);
                    match rng.gen_range(0..10) {
                        0 => keyless(ts),
                        1 | 2 => tomb(keys[rng.gen_range(0..keys.len())], ts),
                        _ => rec(keys[rng.gen_range(0..keys.len())], ts),
                    }
                })
                .collect();
            if rng.gen_bool(0.3) {
                b.txn(pid, records);
            } else {
                b.data(records);
            }
        }
        b.build()
    }

    /// The model: a transaction's data batch is decided by its producer's next marker
    /// after it, if that marker is below the high watermark; the latest offset of each key
    /// over decided, non-aborted data below the first undecided batch; a cleanable
    /// segment keeps markers and each key's latest record unless it is an expired
    /// tombstone.
    fn model(log: &[Seg], hw: i64, now: i64, retention: i64) -> Outcome {
        let batches: Vec<&Batch> = log.iter().flat_map(|s| &s.batches).collect();
        let mut aborted = BTreeSet::new();
        let mut first_unstable = i64::MAX;
        for (i, b) in batches.iter().enumerate() {
            let Some(pid) = b.producer else { continue };
            if b.marker.is_some() {
                continue;
            }
            let next_marker = batches[i + 1..]
                .iter()
                .find(|m| m.producer == Some(pid) && m.marker.is_some());
            match next_marker {
                Some(m) if m.base < hw => {
                    if m.marker == Some(ControlType::Abort) {
                        aborted.insert(b.base);
                    }
                }
                _ => first_unstable = first_unstable.min(b.base),
            }
        }
        // Nothing at or above the high watermark is durable yet.
        let first_unstable = first_unstable.min(hw);
        let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for b in &batches {
            if b.marker.is_none() && b.base < first_unstable && !aborted.contains(&b.base) {
                for (i, r) in b.records.iter().enumerate() {
                    if let Some(k) = &r.key {
                        latest.insert(k.clone(), b.base + i as i64);
                    }
                }
            }
        }
        let mut cleanable = 0;
        while cleanable + 1 < log.len() && log[cleanable].next_offset() <= first_unstable {
            cleanable += 1;
        }
        let mut kept = Vec::new();
        let mut removed = 0;
        for (si, seg) in log.iter().enumerate() {
            let mut offsets = Vec::new();
            for b in &seg.batches {
                if si >= cleanable || b.marker.is_some() {
                    offsets.extend(b.base..b.next_offset());
                    continue;
                }
                for (i, r) in b.records.iter().enumerate() {
                    let offset = b.base + i as i64;
                    let is_latest = r.key.as_ref().and_then(|k| latest.get(k)) == Some(&offset);
                    let expired = r.tombstone && now - r.ts > retention;
                    if !aborted.contains(&b.base) && is_latest && !expired {
                        offsets.push(offset);
                    } else {
                        removed += 1;
                    }
                }
            }
            kept.push(offsets);
        }
        Outcome {
            cleanable,
            kept,
            removed,
        }
    }

    #[test]
    fn random_logs_compact_as_the_model_says() {
        let seed = seed();
        eprintln!("compaction planner: SLUICE_SEED={seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        for round in 0..2000 {
            let log = random_log(&mut rng);
            let end = log.last().map_or(0, Seg::next_offset);
            let hw = rng.gen_range(0..=end + 1);
            let retention = 100 * rng.gen_range(0..20);
            let got = compact(&log, hw, NOW, retention);
            let want = model(&log, hw, NOW, retention);
            assert_eq!(
                got, want,
                "seed {seed}, round {round}, hw {hw}, retention {retention}: {log:#?}"
            );
            // Independent of the model: at most one surviving record per key in the
            // cleaned segments, and nothing appears that was not there.
            let mut seen = BTreeSet::new();
            for (seg, kept) in log.iter().zip(&got.kept).take(got.cleanable) {
                for b in seg.batches.iter().filter(|b| b.marker.is_none()) {
                    for (i, r) in b.records.iter().enumerate() {
                        if kept.contains(&(b.base + i as i64)) {
                            let k = r.key.clone().expect("keyless records go");
                            assert!(seen.insert(k), "seed {seed}, round {round}");
                        }
                    }
                }
            }
        }
    }
}
