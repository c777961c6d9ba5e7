//! Compaction's I/O: the facts [`crate::compaction`] plans over, gathered from the
//! segments (transactional batch headers, marker types, record keys), and the plan
//! executed (closed segments rewritten or deleted).

use std::collections::HashMap;
use std::sync::Arc;

use super::Partition;
use crate::batch::{self, BatchBuilder, BatchHeader};
use crate::compaction::{
    self, BatchFacts, BatchPlan, LatestOffsets, RecordFacts, Rewrite, Transactions, TxnBatch,
};
use crate::error::{Error, Result};
use crate::segment::Segment;

/// What compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Bytes before and after for rewritten segments.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

/// The facts of a stored batch the compaction planner looks at.
fn batch_facts(h: &BatchHeader) -> BatchFacts {
    BatchFacts {
        base_offset: h.base_offset,
        control: h.is_control(),
    }
}

impl Partition {
    /// Keep the latest record per key in closed segments (topics with `compact`), and drop
    /// tombstones older than `delete.retention.ms`. The active segment is not rewritten.
    /// Control batches are kept as they are.
    ///
    /// The decisions are the compaction planner's (`crate::compaction`); this gathers the
    /// facts and does the I/O.
    pub fn compact(&self) -> Result<CompactionReport> {
        let cfg = self.config();
        let mut report = CompactionReport::default();
        if self.read_only || !cfg.cleanup_policy.compact {
            return Ok(report);
        }
        let _m = self.maintenance.lock().expect("maintenance lock");
        let now = self.clock.now_ms();
        let segments = self.lock().segments.clone();
        if segments.len() < 2 {
            // Only the active segment: nothing is cleanable.
            return Ok(report);
        }
        // Transactions first: batches of aborted transactions are dropped and never count as
        // a key's latest value; an undecided transaction bounds what may be cleaned (Kafka's
        // cleaner stops at the last stable offset), since it may still abort.
        let txns = self.transaction_outcomes(&segments)?;
        // Latest offset of every key, over the stable part of the log (active segment too).
        let mut index = LatestOffsets::new(txns);
        let mut decode_err: Option<Error> = None;
        for seg in &segments {
            seg.for_each_batch(|h, b| {
                if decode_err.is_some() || !index.counts(batch_facts(h)) {
                    return;
                }
                // Keys only: records are walked, never decoded (headers stay unread).
                let walked =
                    crate::decode_budget::stored_records(b).and_then(|(data, _reserved)| {
                        batch::walk_records(h, &data, |r| {
                            index.observe(r.key, r.position_in(h).0);
                            Ok(())
                        })
                    });
                match walked {
                    Ok(()) => {}
                    Err(e) => {
                        decode_err = Some(Error::Corrupt {
                            path: seg.path().to_path_buf(),
                            position: 0,
                            reason: format!(
                                "batch at offset {} cannot be decoded: {e}",
                                h.base_offset
                            ),
                        })
                    }
                }
            })?;
            if let Some(e) = decode_err.take() {
                return Err(e);
            }
        }
        let plan = index.into_plan(now, cfg.delete_retention_ms);
        let ends: Vec<i64> = segments.iter().map(|s| s.next_offset()).collect();
        let cleanable = plan.cleanable_segments(&ends);
        for seg in &segments[..cleanable] {
            let mut out: Vec<Vec<u8>> = Vec::new();
            let mut removed = 0u64;
            let mut err: Option<Error> = None;
            seg.for_each_batch(|h, b| {
                if err.is_some() {
                    return;
                }
                match plan.batch(batch_facts(h)) {
                    BatchPlan::Keep => {
                        out.push(b.to_vec());
                        return;
                    }
                    BatchPlan::Drop => {
                        removed += h.record_count.max(0) as u64;
                        return;
                    }
                    BatchPlan::Filter => {}
                }
                let (data, _reserved) = match crate::decode_budget::stored_records(b) {
                    Ok(d) => d,
                    Err(e) => {
                        err = Some(Error::Corrupt {
                            path: seg.path().to_path_buf(),
                            position: 0,
                            reason: e.to_string(),
                        });
                        return;
                    }
                };
                // Kept records are copied with their headers as stored (never decoded).
                let mut bb = match BatchBuilder::like(h) {
                    Ok(bb) => bb,
                    Err(e) => {
                        err = Some(Error::InvalidBatch {
                            position: 0,
                            reason: e,
                        });
                        return;
                    }
                };
                let (mut total, mut kept) = (0u64, 0u64);
                let walked = batch::walk_records(h, &data, |r| {
                    total += 1;
                    let (offset, timestamp) = r.position_in(h);
                    let facts = RecordFacts {
                        offset,
                        timestamp,
                        key: r.key,
                        tombstone: r.value.is_none(),
                    };
                    if plan.keeps(&facts) {
                        kept += 1;
                        bb.push_at_raw(r.offset_delta, timestamp, r.key, r.value, r.raw_headers());
                    }
                    Ok(())
                });
                if let Err(e) = walked {
                    err = Some(Error::Corrupt {
                        path: seg.path().to_path_buf(),
                        position: 0,
                        reason: e.to_string(),
                    });
                    return;
                }
                removed += total - kept;
                match compaction::rewrite(kept, total) {
                    Rewrite::Verbatim => out.push(b.to_vec()),
                    Rewrite::Rebuild => match bb.build() {
                        Ok(v) => out.push(v),
                        Err(e) => {
                            err = Some(Error::InvalidBatch {
                                position: 0,
                                reason: e,
                            });
                        }
                    },
                    Rewrite::Drop => {}
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            if removed == 0 {
                continue;
            }
            let before = seg.size();
            let replacement = if out.is_empty() {
                None
            } else {
                Some(Arc::new(seg.replace_with(&out)?))
            };
            let mut inner = self.lock();
            if let Some(i) = inner
                .segments
                .iter()
                .position(|s| s.base_offset == seg.base_offset)
            {
                match replacement {
                    Some(new) => {
                        report.bytes_after += new.size();
                        inner.segments[i] = new;
                    }
                    None => {
                        inner.segments.remove(i);
                        if i == 0 {
                            // Nothing is left below the next segment: the log starts
                            // there now, as it will after a reopen.
                            let first = inner.segments[0].base_offset;
                            inner.log_start_offset = inner.log_start_offset.max(first);
                        }
                        drop(inner);
                        seg.delete_files()?;
                    }
                }
            }
            report.segments_rewritten += 1;
            report.records_removed += removed;
            report.bytes_before += before;
        }
        Ok(report)
    }

    /// What the transactions in `segments` came to: the batches of aborted ones, and the
    /// first offset of the earliest transaction without a (readable) marker yet. Reads
    /// batch headers only, plus the few control batches [`compaction::markers_to_read`]
    /// names.
    fn transaction_outcomes(&self, segments: &[Arc<Segment>]) -> Result<Transactions> {
        let mut txn_batches = Vec::new();
        for seg in segments {
            seg.for_each_header(|h| {
                if h.is_transactional() {
                    txn_batches.push(TxnBatch {
                        base_offset: h.base_offset,
                        producer_id: h.producer_id,
                        marker: h.is_control(),
                    });
                }
            })?;
        }
        let hw = self.high_watermark();
        let mut marker_types = HashMap::new();
        for offset in compaction::markers_to_read(&txn_batches, hw) {
            marker_types.insert(offset, super::stored_marker(segments, offset)?);
        }
        Ok(Transactions::decide(&txn_batches, hw, &marker_types))
    }
}
