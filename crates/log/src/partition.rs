//! One partition: an ordered list of segments, offset assignment, durability (group
//! commit), reads, retention, compaction and `DeleteRecords`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use crate::batch::{self, BatchBuilder, BatchHeader};
use crate::clock::Clock;
use crate::compaction::{
    self, BatchFacts, BatchPlan, LatestOffsets, RecordFacts, Rewrite, Transactions, TxnBatch,
};
use crate::config::{FsyncPolicy, MessageTimestampType, TopicConfig};
use crate::decode_budget;
use crate::error::{Error, IoContext, Result};
use crate::notify::AppendNotifier;
use crate::producer_state::{AbortedTxn, ProducerState};
use crate::segment::{self, Segment, SegmentRecovery};

const LOG_START_FILE: &str = "log-start-offset";
/// Written at a clean shutdown with the next offset; removed when the partition opens for
/// writing. Its presence means any damage found at open is not a torn write.
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Written at a clean shutdown beside `clean-shutdown`: the producer and transaction state
/// as of the log end, so the next open need not scan batch headers to rebuild it.
const PRODUCER_STATE_FILE: &str = "producer-state.json";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Records appended.
    pub record_count: i64,
    /// The stamped time for `LogAppendTime` topics, else -1.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// What an append still needs before it may be acknowledged (see
/// [`Partition::append_deferred`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "an append is acknowledged only after await_durable"]
pub struct Durability {
    wait_for: Option<i64>,
}

/// Bytes returned by a read.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Whole record batches, verbatim as stored.
    pub bytes: Vec<u8>,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// Log start offset at the time of the read.
    pub log_start_offset: i64,
    /// Offset to read next (one past the last returned record; the requested offset when
    /// nothing was returned).
    pub next_offset: i64,
}

/// What retention or `DeleteRecords` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes deleted.
    pub bytes_deleted: u64,
    /// Log start offset afterwards.
    pub log_start_offset: i64,
}

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

/// A summary of the partition for `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSummary {
    /// Partition number.
    pub partition: i32,
    /// First readable offset.
    pub log_start_offset: i64,
    /// Next offset to be written (the high watermark for readers).
    pub high_watermark: i64,
    /// Offset up to which data is synced to disk.
    pub durable_offset: i64,
    /// Bytes on disk (segment files).
    pub size_bytes: u64,
    /// Segment count.
    pub segments: usize,
}

#[derive(Debug)]
struct Inner {
    segments: Vec<Arc<Segment>>,
    next_offset: i64,
    log_start_offset: i64,
    failed: Option<String>,
    last_sync_ms: i64,
}

#[derive(Debug)]
struct SyncState {
    durable: i64,
    syncing: bool,
}

/// One partition of a topic.
#[derive(Debug)]
pub struct Partition {
    topic: String,
    id: i32,
    dir: PathBuf,
    read_only: bool,
    config: RwLock<Arc<TopicConfig>>,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    high_watermark: AtomicI64,
    maintenance: Mutex<bool>,
    /// Producer sequences, open transactions, aborted-transaction index. Locked after
    /// `inner` when both are held (appends record under both).
    producers: Mutex<ProducerState>,
    notifier: Arc<AppendNotifier>,
}

/// A read_committed read ([`Partition::read_committed`]): batches below the last stable
/// offset, and the aborted transactions overlapping them, whose data batches a reader
/// drops ([`crate::AbortFilter`]). Control batches are in `read.bytes` too (readers skip
/// them).
#[derive(Debug, Clone)]
pub struct CommittedRead {
    /// The batches (as [`Partition::read_below`] the last stable offset).
    pub read: ReadResult,
    /// The partition's last stable offset when read.
    pub last_stable_offset: i64,
    /// Aborted transactions overlapping `[offset, read.next_offset)`.
    pub aborted: Vec<AbortedTxn>,
}

/// What [`Partition::append_if`] did.
#[derive(Debug)]
pub enum AppendIf<T> {
    /// The check passed and the batches were appended.
    Appended(AppendInfo, Durability),
    /// The check refused; nothing was appended.
    Refused(T),
}

/// Rebuilds producer state from the batches at or above `from` (headers only, plus each
/// control batch's marker type).
fn scan_producers(segments: &[Arc<Segment>], from: i64, st: &mut ProducerState) -> Result<()> {
    for seg in segments {
        if seg.next_offset() <= from {
            continue;
        }
        let mut failed = None;
        seg.for_each_header(|h| {
            if h.base_offset < from || failed.is_some() {
                return;
            }
            if !h.is_control() {
                st.record(h);
                return;
            }
            let kind = seg.read(h.base_offset, 1, i64::MAX).and_then(|r| {
                batch::control_type(&r.bytes).map_err(|reason| Error::InvalidBatch {
                    position: 0,
                    reason,
                })
            });
            match kind {
                Ok(kind) => st.record_marker(h.producer_id, h.producer_epoch, kind, h.base_offset),
                Err(e) => failed = Some(e),
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

/// The producer state a clean shutdown saved, if it reflects exactly `end`.
fn read_producer_snapshot(dir: &Path, end: i64) -> Option<ProducerState> {
    let bytes = fs::read(dir.join(PRODUCER_STATE_FILE)).ok()?;
    let st: ProducerState = serde_json::from_slice(&bytes).ok()?;
    (st.reflects() == end).then_some(st)
}

/// The next offset recorded by the last clean shutdown, if the last run ended cleanly.
fn read_clean_shutdown(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| Error::Corrupt {
            path,
            position: 0,
            reason: format!("not an offset: {:?}", text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The facts of a stored batch the compaction planner looks at.
fn batch_facts(h: &BatchHeader) -> BatchFacts {
    BatchFacts {
        base_offset: h.base_offset,
        control: h.is_control(),
    }
}

fn parse_segment_name(name: &str) -> Option<i64> {
    let base = name.strip_suffix(".log")?;
    if base.len() != 20 || !base.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    base.parse().ok()
}

impl Partition {
    /// Open (or, when the directory is new, create) a partition, recovering its segments.
    pub(crate) fn open(
        dir: &Path,
        topic: &str,
        id: i32,
        config: Arc<TopicConfig>,
        clock: Arc<dyn Clock>,
        read_only: bool,
        notifier: Arc<AppendNotifier>,
    ) -> Result<(Partition, Vec<SegmentRecovery>)> {
        if !read_only {
            fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(b) = parse_segment_name(&name) {
                bases.push(b);
            } else if !read_only && (name.ends_with(".cleaned") || name.ends_with(".tmp")) {
                // Leftovers of an interrupted compaction or metadata write.
                fs::remove_file(entry.path()).ctx(|| format!("removing {name}"))?;
            }
        }
        bases.sort_unstable();
        let stored_start = read_log_start(dir)?;
        let clean = read_clean_shutdown(dir)?;
        let interval = config.index_interval_bytes;
        let mut segments = Vec::with_capacity(bases.len());
        let mut recoveries = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (seg, rec) = Segment::open(
                dir,
                base,
                active,
                interval,
                read_only,
                clean.filter(|_| active),
            )?;
            if let Some(prev) = segments.last().map(|s: &Arc<Segment>| s.next_offset())
                && prev > base
            {
                return Err(Error::Corrupt {
                    path: seg.path().to_path_buf(),
                    position: 0,
                    reason: format!(
                        "segment starts at offset {base} but the previous one runs to {}",
                        prev - 1
                    ),
                });
            }
            recoveries.push(rec);
            segments.push(Arc::new(seg));
        }
        if segments.is_empty() && !read_only {
            let base = stored_start.unwrap_or(0);
            segments.push(Arc::new(Segment::create(dir, base, interval)?));
        }
        let recovered_next = segments
            .last()
            .map(|s| s.next_offset())
            .unwrap_or(stored_start.unwrap_or(0));
        // Offsets handed out before a clean shutdown are never handed out again (recovery
        // keeps them in a placeholder batch; this is the backstop).
        let floor = clean.unwrap_or(recovered_next).max(recovered_next);
        if !read_only
            && floor > recovered_next
            && let Some(last) = segments.last()
            && (last.size() > 0 || last.base_offset != floor)
        {
            last.seal()?;
            segments.push(Arc::new(Segment::create(dir, floor, interval)?));
        }
        let next_offset = if read_only {
            recovered_next
        } else {
            segments.last().map_or(floor, |s| s.next_offset())
        };
        let first_base = segments
            .first()
            .map(|s| s.base_offset)
            .unwrap_or(next_offset);
        let log_start_offset = stored_start
            .unwrap_or(first_base)
            .max(first_base)
            .min(next_offset);
        if !read_only && let Some(s) = segments.last() {
            // Whatever recovery kept is made durable before it is served.
            s.sync()?;
        }
        // After a clean shutdown the saved producer state spares the scan, if the log
        // still ends where it did.
        let saved = clean
            .filter(|&c| c == next_offset)
            .and_then(|_| read_producer_snapshot(dir, next_offset));
        let producers = match saved {
            Some(st) => st,
            None => {
                let mut st = ProducerState::default();
                scan_producers(&segments, i64::MIN, &mut st)?;
                st.set_reflects(next_offset);
                st
            }
        };
        if !read_only {
            // The snapshot is valid once: appends from here on make it stale.
            match fs::remove_file(dir.join(PRODUCER_STATE_FILE)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("removing {}/{PRODUCER_STATE_FILE}", dir.display()),
                        e,
                    ));
                }
            }
        }
        if !read_only && clean.is_some() {
            // From here on a crash is unclean again.
            fs::remove_file(dir.join(CLEAN_SHUTDOWN_FILE))
                .ctx(|| format!("removing {}/{CLEAN_SHUTDOWN_FILE}", dir.display()))?;
            segment::sync_dir(dir)?;
        }
        let p = Partition {
            topic: topic.to_string(),
            id,
            dir: dir.to_path_buf(),
            read_only,
            config: RwLock::new(config),
            clock,
            inner: Mutex::new(Inner {
                segments,
                next_offset,
                log_start_offset,
                failed: None,
                last_sync_ms: 0,
            }),
            sync: Mutex::new(SyncState {
                durable: next_offset,
                syncing: false,
            }),
            synced: Condvar::new(),
            high_watermark: AtomicI64::new(next_offset),
            maintenance: Mutex::new(false),
            producers: Mutex::new(producers),
            notifier,
        };
        Ok((p, recoveries))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("partition lock poisoned")
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition number.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The config in force.
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config.read().expect("config lock").clone()
    }

    pub(crate) fn set_config(&self, c: Arc<TopicConfig>) {
        *self.config.write().expect("config lock") = c;
    }

    /// Next offset readers may not yet see; everything below it is readable.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// First readable offset.
    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().next_offset
    }

    /// Offset below which all data has been `fdatasync`ed (or was found on disk at open).
    pub fn durable_offset(&self) -> i64 {
        self.sync.lock().expect("sync lock").durable
    }

    /// Totals for `describe`.
    pub fn summary(&self) -> PartitionSummary {
        let inner = self.lock();
        PartitionSummary {
            partition: self.id,
            log_start_offset: inner.log_start_offset,
            high_watermark: self.high_watermark(),
            durable_offset: self.durable_offset(),
            size_bytes: inner.segments.iter().map(|s| s.size()).sum(),
            segments: inner.segments.len(),
        }
    }

    /// Validate and append a buffer of one or more v2 record batches, assigning offsets.
    ///
    /// The buffer is rewritten in place (base offsets; for `LogAppendTime` topics also the
    /// timestamp and CRC). Returns once the append is durable under the topic's fsync
    /// policy. Nothing of an invalid buffer is written.
    pub fn append(&self, buf: &mut [u8]) -> Result<AppendInfo> {
        let (info, durability) = self.append_deferred(buf)?;
        self.await_durable(durability)?;
        Ok(info)
    }

    /// [`Partition::append`] without the durability wait: the bytes are written and the
    /// offsets assigned when this returns, in call order; wait with
    /// [`Partition::await_durable`] before acknowledging. Lets a server start the next
    /// append of a connection while the previous one's `fdatasync` is in flight, so
    /// pipelined requests share syncs (group commit).
    pub fn append_deferred(&self, buf: &mut [u8]) -> Result<(AppendInfo, Durability)> {
        self.append_checked(buf, false)
    }

    /// Append a transaction marker (commit or abort) for `producer_id`'s open transaction:
    /// only the transaction coordinator writes these; clients' control batches are refused
    /// by [`Partition::append`]. Returns once the marker is written, not synced.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        kind: batch::ControlType,
        coordinator_epoch: i32,
    ) -> Result<(AppendInfo, Durability)> {
        let mut buf = batch::control_batch(
            producer_id,
            producer_epoch,
            kind,
            coordinator_epoch,
            self.clock.now_ms(),
        );
        self.append_checked(&mut buf, true)
    }

    /// [`Partition::append_deferred`] if `check` passes: `check` runs under the
    /// partition's append lock with its producer state, so nothing is appended between
    /// the check and the append (the shape of an idempotent producer's sequence check, a
    /// transactional producer's verification and an event store's expected-version
    /// check). `check` must be quick and must not call into this partition.
    pub fn append_if<T>(
        &self,
        buf: &mut [u8],
        check: impl FnOnce(&ProducerState) -> std::result::Result<(), T>,
    ) -> Result<AppendIf<T>> {
        self.append_guarded(buf, false, check)
    }

    fn append_checked(
        &self,
        buf: &mut [u8],
        allow_control: bool,
    ) -> Result<(AppendInfo, Durability)> {
        match self.append_guarded(buf, allow_control, |_| {
            Ok::<(), std::convert::Infallible>(())
        })? {
            AppendIf::Appended(info, d) => Ok((info, d)),
            AppendIf::Refused(never) => match never {},
        }
    }

    fn append_guarded<T>(
        &self,
        buf: &mut [u8],
        allow_control: bool,
        check: impl FnOnce(&ProducerState) -> std::result::Result<(), T>,
    ) -> Result<AppendIf<T>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let cfg = self.config();
        let mut batches = self.validate(buf, &cfg, allow_control)?;
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if let Some(reason) = &inner.failed {
            return Err(self.failed_error(reason));
        }
        let mut producers = self
            .producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(refusal) = check(&producers) {
            return Ok(AppendIf::Refused(refusal));
        }
        let base_offset = inner.next_offset;
        let mut next = base_offset;
        let mut records = 0i64;
        let mut max_ts = -1;
        for (pos, h) in &mut batches {
            let total = h.total_size();
            let bytes = &mut buf[*pos..*pos + total];
            batch::set_base_offset(bytes, next);
            h.base_offset = next;
            if cfg.message_timestamp_type == MessageTimestampType::LogAppendTime {
                batch::stamp_log_append_time(bytes, now);
                *h = BatchHeader::parse(bytes).expect("just validated");
                h.base_offset = next;
            }
            next = h.next_offset();
            records += h.record_count as i64;
            max_ts = max_ts.max(h.max_timestamp);
        }
        let active = inner
            .segments
            .last()
            .expect("a writable partition has a segment")
            .clone();
        if self.should_roll(&active, buf.len(), next, max_ts, &cfg) {
            self.roll_locked(&mut inner, &cfg)?;
        }
        let active = inner.segments.last().expect("segment").clone();
        active.append(buf, &batches)?;
        inner.next_offset = next;
        for (pos, h) in &batches {
            if h.is_control() {
                let kind = batch::control_type(&buf[*pos..*pos + h.total_size()])
                    .expect("validated control batch");
                producers.record_marker(h.producer_id, h.producer_epoch, kind, h.base_offset);
            } else {
                producers.record(h);
            }
        }
        let info = AppendInfo {
            base_offset,
            last_offset: next - 1,
            record_count: records,
            log_append_time: if cfg.message_timestamp_type == MessageTimestampType::LogAppendTime {
                now
            } else {
                -1
            },
            log_start_offset: inner.log_start_offset,
        };
        let wait = match cfg.fsync {
            FsyncPolicy::Always => Some(next),
            FsyncPolicy::Interval(ms) => {
                self.advance_high_watermark(next);
                (now - inner.last_sync_ms >= ms as i64).then_some(next)
            }
            FsyncPolicy::Never => {
                self.advance_high_watermark(next);
                None
            }
        };
        Ok(AppendIf::Appended(info, Durability { wait_for: wait }))
    }

    /// Raises the high watermark to `to` and tells the listeners when it moved.
    fn advance_high_watermark(&self, to: i64) {
        if self.high_watermark.fetch_max(to, Ordering::AcqRel) < to {
            self.notifier.advanced(&self.topic, self.id, to);
        }
    }

    /// Block until an append made with [`Partition::append_deferred`] is durable under
    /// its topic's fsync policy (one caller syncs for all waiters).
    pub fn await_durable(&self, d: Durability) -> Result<()> {
        match d.wait_for {
            Some(target) => self.wait_durable(target),
            None => Ok(()),
        }
    }

    fn failed_error(&self, reason: &str) -> Error {
        Error::PartitionFailed {
            topic: self.topic.clone(),
            partition: self.id,
            reason: reason.to_string(),
        }
    }

    fn validate(
        &self,
        buf: &[u8],
        cfg: &TopicConfig,
        allow_control: bool,
    ) -> Result<Vec<(usize, BatchHeader)>> {
        let mut batches = Vec::new();
        let mut at = 0usize;
        for frame in batch::frames(buf) {
            let (pos, _) = frame.map_err(|reason| Error::InvalidBatch {
                position: at,
                reason,
            })?;
            let total = BatchHeader::parse(&buf[pos..])
                .expect("framed")
                .total_size();
            let bytes = &buf[pos..pos + total];
            if total > cfg.max_message_bytes {
                return Err(Error::MessageTooLarge {
                    topic: self.topic.clone(),
                    size: total,
                    max: cfg.max_message_bytes,
                });
            }
            let h = batch::validate_batch(bytes).map_err(|reason| Error::InvalidBatch {
                position: pos,
                reason,
            })?;
            if h.is_control() && !allow_control {
                return Err(Error::InvalidBatch {
                    position: pos,
                    reason: batch::BatchError::Inconsistent(
                        "control batches are written by the transaction coordinator only".into(),
                    ),
                });
            }
            let compressed = h.compression().ok() != Some(crate::Compression::None);
            if compressed || cfg.cleanup_policy.compact {
                // Compressed records are checked as Kafka checks them (uncompressed ones
                // were walked by validate_batch); a compacted topic needs every key.
                let invalid = |reason| Error::InvalidBatch {
                    position: pos,
                    reason,
                };
                let _reserved = compressed
                    .then(|| decode_budget::reserve(decode_budget::APPEND_MAX_DECOMPRESSED));
                let data = batch::record_bytes(bytes, decode_budget::APPEND_MAX_DECOMPRESSED)
                    .map_err(invalid)?;
                let mut keyless = false;
                batch::walk_records(&h, &data, |r| {
                    keyless |= r.key.is_none();
                    Ok(())
                })
                .map_err(invalid)?;
                if keyless && cfg.cleanup_policy.compact {
                    return Err(Error::MissingKeyForCompactedTopic {
                        topic: self.topic.clone(),
                    });
                }
            }
            batches.push((pos, h));
            at = pos + total;
        }
        if batches.is_empty() {
            return Err(Error::InvalidBatch {
                position: 0,
                reason: batch::BatchError::Truncated {
                    needed: batch::HEADER_SIZE,
                    available: buf.len(),
                },
            });
        }
        Ok(batches)
    }

    fn should_roll(
        &self,
        active: &Segment,
        len: usize,
        next: i64,
        max_ts: i64,
        cfg: &TopicConfig,
    ) -> bool {
        let size = active.size();
        if size == 0 {
            return false;
        }
        if size + len as u64 > cfg.segment_bytes || size + len as u64 > u32::MAX as u64 {
            return true;
        }
        if next - active.base_offset > i32::MAX as i64 {
            return true;
        }
        // Kafka rolls on the gap between this batch's timestamp and the segment's first.
        match active.first_batch_timestamp() {
            Some(first) if first >= 0 && max_ts >= 0 => max_ts - first > cfg.segment_ms,
            _ => false,
        }
    }

    fn roll_locked(&self, inner: &mut Inner, cfg: &TopicConfig) -> Result<()> {
        let old = inner.segments.last().expect("segment").clone();
        if let Err(e) = old.sync() {
            inner.failed = Some(e.to_string());
            return Err(e);
        }
        old.seal()?;
        let new = Segment::create(&self.dir, inner.next_offset, cfg.index_interval_bytes)?;
        inner.segments.push(Arc::new(new));
        inner.last_sync_ms = self.clock.now_ms();
        let mut s = self.sync.lock().expect("sync lock");
        s.durable = s.durable.max(inner.next_offset);
        self.advance_high_watermark(s.durable);
        Ok(())
    }

    /// Roll the active segment now (if it holds anything).
    pub fn roll(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let cfg = self.config();
        let mut inner = self.lock();
        if inner.segments.last().is_some_and(|s| s.size() > 0) {
            self.roll_locked(&mut inner, &cfg)?;
        }
        Ok(())
    }

    /// Block until everything below `target` is synced; one caller syncs for all waiters.
    fn wait_durable(&self, target: i64) -> Result<()> {
        let mut s = self.sync.lock().expect("sync lock");
        loop {
            if s.durable >= target {
                return Ok(());
            }
            if !s.syncing {
                s.syncing = true;
                drop(s);
                let (seg, end) = {
                    let inner = self.lock();
                    if let Some(reason) = &inner.failed {
                        let e = self.failed_error(reason);
                        drop(inner);
                        let mut s = self.sync.lock().expect("sync lock");
                        s.syncing = false;
                        self.synced.notify_all();
                        return Err(e);
                    }
                    (
                        inner.segments.last().expect("segment").clone(),
                        inner.next_offset,
                    )
                };
                let r = seg.sync();
                let now = self.clock.now_ms();
                if let Err(e) = &r {
                    // After a failed fsync the page cache may have dropped our pages:
                    // refuse further writes rather than acknowledge lost data.
                    self.lock().failed = Some(e.to_string());
                } else {
                    self.lock().last_sync_ms = now;
                }
                s = self.sync.lock().expect("sync lock");
                s.syncing = false;
                if r.is_ok() {
                    s.durable = s.durable.max(end);
                    self.advance_high_watermark(s.durable);
                }
                self.synced.notify_all();
                r?;
            } else {
                s = self.synced.wait(s).expect("sync lock");
            }
        }
    }

    /// Sync everything written so far.
    pub fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let end = self.lock().next_offset;
        self.wait_durable(end)
    }

    /// For `interval:<ms>` topics: sync if data is waiting and the interval has passed.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        if let FsyncPolicy::Interval(ms) = self.config().fsync {
            let (end, last) = {
                let inner = self.lock();
                (inner.next_offset, inner.last_sync_ms)
            };
            if end > self.durable_offset() && now_ms - last >= ms as i64 {
                self.wait_durable(end)?;
            }
        }
        Ok(())
    }

    /// Sync and write the active segment's indexes (clean shutdown).
    pub(crate) fn close(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.flush()?;
        let inner = self.lock();
        if inner.failed.is_some() {
            return Ok(());
        }
        if let Some(s) = inner.segments.last() {
            s.seal()?;
        }
        let producers = self
            .producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if producers.reflects() == inner.next_offset {
            let json = serde_json::to_vec(&*producers).expect("serializable");
            segment::write_file_atomic(&self.dir.join(PRODUCER_STATE_FILE), &json)?;
        }
        segment::write_file_atomic(
            &self.dir.join(CLEAN_SHUTDOWN_FILE),
            format!("{}\n", inner.next_offset).as_bytes(),
        )
    }

    /// Read whole batches starting with the one holding `offset`, up to `max_bytes`
    /// (always at least one batch when any is available), below the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        self.read_below(offset, max_bytes, i64::MAX)
    }

    /// [`Partition::read`] returning only batches that start below `limit` (as well as
    /// below the high watermark): a read_committed fetch passes the last stable offset.
    pub fn read_below(&self, offset: i64, max_bytes: usize, limit: i64) -> Result<ReadResult> {
        let hw = self.high_watermark();
        let (segments, start) = {
            let inner = self.lock();
            (inner.segments.clone(), inner.log_start_offset)
        };
        let mut out = ReadResult {
            bytes: Vec::new(),
            high_watermark: hw,
            log_start_offset: start,
            next_offset: offset,
        };
        if offset < start || offset > hw {
            return Err(Error::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.id,
                offset,
                start,
                end: hw,
            });
        }
        let i = segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        let mut cursor = offset;
        let limit = limit.min(hw);
        for seg in &segments[i..] {
            if seg.base_offset >= limit {
                break;
            }
            cursor = cursor.max(seg.base_offset);
            let r = seg.read(cursor, max_bytes, limit)?;
            if !r.bytes.is_empty() {
                out.bytes = r.bytes;
                out.next_offset = r.next_offset;
                break;
            }
        }
        Ok(out)
    }

    /// First offset whose timestamp is >= `ts` with its timestamp, or `None` when every
    /// record is older (Kafka's ListOffsets by timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        let hw = self.high_watermark();
        let (segments, start) = {
            let inner = self.lock();
            (inner.segments.clone(), inner.log_start_offset)
        };
        for seg in segments {
            if seg.next_offset() <= start {
                continue;
            }
            if let Some((off, t)) = seg.offset_for_timestamp(ts, hw)? {
                return Ok(Some((off.max(start), t)));
            }
        }
        Ok(None)
    }

    /// Read-only mode: pick up what another process appended since the last look.
    pub fn refresh(&self) -> Result<()> {
        if !self.read_only {
            return Ok(());
        }
        let mut bases = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx(|| format!("listing {}", self.dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", self.dir.display()))?;
            if let Some(b) = parse_segment_name(&entry.file_name().to_string_lossy()) {
                bases.push(b);
            }
        }
        bases.sort_unstable();
        let cfg = self.config();
        let mut inner = self.lock();
        inner
            .segments
            .retain(|s| bases.binary_search(&s.base_offset).is_ok());
        if let Some(last) = inner.segments.last() {
            last.refresh_tail()?;
        }
        let known_last = inner.segments.last().map(|s| s.base_offset);
        for b in bases {
            if known_last.is_none_or(|k| b > k) {
                // Whatever came before the new segment is closed now: finish reading it.
                if let Some(last) = inner.segments.last() {
                    last.refresh_tail()?;
                }
                match Segment::open(&self.dir, b, true, cfg.index_interval_bytes, true, None) {
                    Ok((seg, _)) => inner.segments.push(Arc::new(seg)),
                    Err(Error::Io { cause: source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let next = inner
            .segments
            .last()
            .map(|s| s.next_offset())
            .unwrap_or(inner.next_offset);
        inner.next_offset = next;
        let first = inner
            .segments
            .first()
            .map(|s| s.base_offset)
            .unwrap_or(next);
        let stored = read_log_start(&self.dir)?.unwrap_or(first);
        inner.log_start_offset = stored.max(first).min(next);
        let segments = inner.segments.clone();
        // The producer state catches up before the new high watermark is visible (its
        // readers take this lock to read the high watermark), so the last stable offset
        // never covers an open transaction it has not seen.
        let mut producers = self
            .producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(inner);
        if next > producers.reflects() {
            let from = producers.reflects();
            scan_producers(&segments, from, &mut producers)?;
            producers.set_reflects(next);
        }
        let before = self.high_watermark.swap(next, Ordering::AcqRel);
        drop(producers);
        if next > before {
            self.notifier.advanced(&self.topic, self.id, next);
        }
        Ok(())
    }

    /// The last stable offset: the first offset of the earliest open transaction, or the
    /// high watermark when none is open (read_committed readers see only what is below).
    pub fn last_stable_offset(&self) -> i64 {
        let st = self
            .producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let hw = self.high_watermark();
        st.first_unstable_offset().map_or(hw, |f| f.min(hw))
    }

    /// Aborted transactions overlapping `[from, to)` (Kafka's rule: marker at or after
    /// `from`, first batch before `to`).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.log_start_offset();
        self.producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .aborted_between(from, to, start)
    }

    /// A read_committed read: whole batches from the one holding `offset`, below the last
    /// stable offset, with the aborted transactions a reader needs to drop their data
    /// (Kafka's Fetch with isolation level 1).
    pub fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<CommittedRead> {
        let lso = self.last_stable_offset();
        let read = self.read_below(offset, max_bytes, lso)?;
        let aborted = if read.bytes.is_empty() {
            Vec::new()
        } else {
            self.aborted_between(offset, read.next_offset)
        };
        Ok(CommittedRead {
            read,
            last_stable_offset: lso,
            aborted,
        })
    }

    /// A look at the producer state (sequences, open transactions, epochs) under its lock.
    pub fn with_producers<R>(&self, f: impl FnOnce(&ProducerState) -> R) -> R {
        f(&self
            .producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// The log-wide append notifier this partition reports to.
    pub fn notifier(&self) -> &Arc<AppendNotifier> {
        &self.notifier
    }

    fn persist_log_start(&self, start: i64) -> Result<()> {
        segment::write_file_atomic(&self.dir.join(LOG_START_FILE), start.to_string().as_bytes())
    }

    /// Delete whole segments past `retention.ms` / `retention.bytes` (for topics whose
    /// cleanup policy includes `delete`), advancing the log start offset.
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        let cfg = self.config();
        let mut report = RetentionReport {
            log_start_offset: self.log_start_offset(),
            ..Default::default()
        };
        if self.read_only || !cfg.cleanup_policy.delete {
            return Ok(report);
        }
        let _m = self.maintenance.lock().expect("maintenance lock");
        let now = self.clock.now_ms();
        loop {
            let mut inner = self.lock();
            let total: u64 = inner.segments.iter().map(|s| s.size()).sum();
            let oldest = inner.segments[0].clone();
            let expired = |s: &Segment| {
                cfg.retention_ms >= 0
                    && s.max_timestamp() >= 0
                    && s.max_timestamp() < now - cfg.retention_ms
            };
            if inner.segments.len() == 1 {
                // Kafka rolls an expired active segment so that it can be deleted.
                if oldest.size() > 0 && expired(&oldest) {
                    self.roll_locked(&mut inner, &cfg)?;
                    continue;
                }
                break;
            }
            let over_size = cfg.retention_bytes >= 0
                && total.saturating_sub(oldest.size()) >= cfg.retention_bytes as u64;
            if !(expired(&oldest) || over_size) {
                break;
            }
            inner.segments.remove(0);
            let new_start = inner.segments[0].base_offset.max(inner.log_start_offset);
            inner.log_start_offset = new_start;
            self.persist_log_start(new_start)?;
            drop(inner);
            report.segments_deleted += 1;
            report.bytes_deleted += oldest.size();
            report.log_start_offset = new_start;
            oldest.delete_files()?;
        }
        Ok(report)
    }

    /// Kafka's DeleteRecords: make `offset` the new log start (`-1` means the high
    /// watermark) and delete segments wholly below it. Returns the new log start offset.
    pub fn delete_records(&self, offset: i64) -> Result<i64> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let hw = self.high_watermark();
        let offset = if offset == -1 { hw } else { offset };
        let _m = self.maintenance.lock().expect("maintenance lock");
        let mut inner = self.lock();
        if offset < 0 || offset > hw {
            return Err(Error::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.id,
                offset,
                start: inner.log_start_offset,
                end: hw,
            });
        }
        if offset <= inner.log_start_offset {
            return Ok(inner.log_start_offset);
        }
        inner.log_start_offset = offset;
        self.persist_log_start(offset)?;
        let mut doomed = Vec::new();
        while inner.segments.len() > 1 && inner.segments[1].base_offset <= offset {
            doomed.push(inner.segments.remove(0));
        }
        drop(inner);
        for s in doomed {
            s.delete_files()?;
        }
        Ok(offset)
    }

    /// Keep the latest record per key in closed segments (topics with `compact`), and drop
    /// tombstones older than `delete.retention.ms`. The active segment is not rewritten.
    /// Control batches are kept as they are.
    ///
    /// The decisions are [`crate::compaction`]'s; this gathers the facts and does the I/O.
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
                    batch::record_bytes(b, batch::DEFAULT_MAX_DECOMPRESSED).and_then(|data| {
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
                let data = match batch::record_bytes(b, batch::DEFAULT_MAX_DECOMPRESSED) {
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

    /// Every stored batch header in offset order (headers only: cheap). Used to rebuild
    /// producer state at startup.
    pub fn for_each_batch_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let segments = self.lock().segments.clone();
        for s in segments {
            s.for_each_header(&mut f)?;
        }
        Ok(())
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
            marker_types.insert(offset, self.marker_at(offset)?);
        }
        Ok(Transactions::decide(&txn_batches, hw, &marker_types))
    }

    /// The marker type of the control batch starting at `offset` (used when rebuilding
    /// transaction state from batch headers).
    pub fn marker_at(&self, offset: i64) -> Result<batch::ControlType> {
        let r = self.read(offset, 1)?;
        let bad = |reason| Error::InvalidBatch {
            position: 0,
            reason,
        };
        let h = BatchHeader::parse(&r.bytes).map_err(bad)?;
        if h.base_offset != offset {
            return Err(bad(batch::BatchError::Inconsistent(format!(
                "no batch starts at offset {offset}"
            ))));
        }
        batch::control_type(&r.bytes).map_err(bad)
    }

    /// Verify every stored batch's CRC (closed segments are otherwise verified lazily, on
    /// read). Returns the number of batches checked.
    pub fn verify(&self) -> Result<u64> {
        let segments = self.lock().segments.clone();
        let mut n = 0u64;
        for s in segments {
            s.for_each_batch(|_, _| n += 1)?;
        }
        Ok(n)
    }
}

fn read_log_start(dir: &Path) -> Result<Option<i64>> {
    let p = dir.join(LOG_START_FILE);
    match fs::read_to_string(&p) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| Error::BadMetadata {
            path: p.clone(),
            reason: format!("expected an offset, found {s:?}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::{BatchBuilder, BatchHeader, Log, LogOptions, ProducerState};

    /// Forges a snapshot holding a producer the log never saw (only a restored snapshot
    /// can bring it back, a scan cannot), reflecting `end`.
    fn forge_snapshot(path: &std::path::Path, end: i64) {
        let mut st: ProducerState = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let ghost = BatchHeader::parse(&{
            let mut b = BatchBuilder::new().producer(55, 3, 0);
            b.push(0, None, Some(b"x"), &[]);
            b.build().unwrap()
        })
        .unwrap();
        st.record(&ghost);
        st.set_reflects(end);
        std::fs::write(path, serde_json::to_vec(&st).unwrap()).unwrap();
    }

    #[test]
    fn a_clean_shutdown_snapshot_is_used_once_and_only_for_an_unchanged_log() {
        let dir = tempfile::tempdir().unwrap();
        let opts = || LogOptions {
            background: false,
            ..LogOptions::default()
        };
        let log = Log::open(dir.path(), opts()).unwrap();
        log.create_topic("t", 1, BTreeMap::new()).unwrap();
        let mut b = BatchBuilder::new();
        b.push(0, None, Some(b"v"), &[]);
        log.partition("t", 0)
            .unwrap()
            .append(&mut b.build().unwrap())
            .unwrap();
        log.close().unwrap();
        let snap = dir.path().join("topics/t/0/producer-state.json");
        let ghost_epoch = || {
            let log = Log::open(dir.path(), opts()).unwrap();
            let e = log
                .partition("t", 0)
                .unwrap()
                .with_producers(|st| st.epoch_of(55));
            log.close().unwrap();
            e
        };
        forge_snapshot(&snap, 1);
        assert_eq!(ghost_epoch(), Some(3), "restored from the snapshot");
        assert_eq!(ghost_epoch(), Some(3), "carried by the next clean shutdown");
        forge_snapshot(&snap, 0);
        assert_eq!(
            ghost_epoch(),
            None,
            "a snapshot of another log end is ignored"
        );
        forge_snapshot(&snap, 1);
        std::fs::remove_file(dir.path().join("topics/t/0/clean-shutdown")).unwrap();
        assert_eq!(ghost_epoch(), None, "after a crash the log is scanned");
    }
}
