//! One partition: the type, an ordered list of segments, offset assignment, appends,
//! durability (group commit) and reads. Opening and following the directory
//! (`recovery`), retention and `DeleteRecords` (`retention`) and compaction's I/O
//! (`compact`, planned by [`crate::compaction`]) are in the submodules.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use crate::batch::{self, BatchHeader};
use crate::clock::Clock;
use crate::config::{FsyncPolicy, MessageTimestampType, TopicConfig};
use crate::decode_budget;
use crate::error::{Error, Result};
use crate::notify::AppendNotifier;
use crate::producer_state::{AbortedTxn, ProducerState};
use crate::segment::{self, Segment};

mod compact;
mod recovery;
mod retention;

pub use self::compact::CompactionReport;
pub use self::retention::RetentionReport;

/// Holds the log start offset as retention or `DeleteRecords` last advanced it.
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
    /// Producer sequences, open transactions, aborted-transaction index. Changed only by
    /// appends (under `inner`) and by a read-only refresh; locked after `inner` when both
    /// are held, never across a write.
    producers: Mutex<ProducerState>,
    notifier: Arc<AppendNotifier>,
    /// `fdatasync`s made for appends (group commit shares them).
    syncs: std::sync::atomic::AtomicU64,
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

/// The marker type of the control batch at the start of `bytes`, which must start at
/// `offset`.
fn marker_type(bytes: &[u8], offset: i64) -> Result<batch::ControlType> {
    let bad = |reason| Error::InvalidBatch {
        position: 0,
        reason,
    };
    let h = BatchHeader::parse(bytes).map_err(bad)?;
    if h.base_offset != offset {
        return Err(bad(batch::BatchError::Inconsistent(format!(
            "no batch starts at offset {offset}"
        ))));
    }
    batch::control_type(bytes).map_err(bad)
}

/// The marker type of the control batch at `offset`, read from the segment holding it
/// (also below the log start offset: recovery and compaction look at every stored
/// marker, whatever DeleteRecords or retention made unreadable to clients).
pub(crate) fn stored_marker(segments: &[Arc<Segment>], offset: i64) -> Result<batch::ControlType> {
    let i = segments
        .partition_point(|s| s.base_offset <= offset)
        .saturating_sub(1);
    let seg = segments.get(i).ok_or_else(|| Error::InvalidBatch {
        position: 0,
        reason: batch::BatchError::Inconsistent(format!("no segment holds offset {offset}")),
    })?;
    let r = seg.read(offset, 1, i64::MAX)?;
    marker_type(&r.bytes, offset)
}

impl Partition {
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

    /// `fdatasync` calls made for appends since the partition opened (one covers every
    /// append waiting when it starts: group commit).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
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
        // The producer state changes only under `inner` (appends hold it), so the check
        // and the record below are atomic with the append without holding the state's
        // own lock across the write: readers of the last stable offset never wait for I/O.
        {
            let producers = self
                .producers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Err(refusal) = check(&producers) {
                return Ok(AppendIf::Refused(refusal));
            }
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
        // Recorded before the high watermark moves (below), so a reader taking this lock
        // never sees a batch it has not recorded.
        let mut producers = self
            .producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
        self.syncs.fetch_add(1, Ordering::Relaxed);
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
                    self.syncs.fetch_add(1, Ordering::Relaxed);
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

    /// Every stored batch header in offset order (headers only: cheap). Used to rebuild
    /// producer state at startup.
    pub fn for_each_batch_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let segments = self.lock().segments.clone();
        for s in segments {
            s.for_each_header(&mut f)?;
        }
        Ok(())
    }

    /// The marker type of the control batch starting at `offset` (readable offsets only).
    pub fn marker_at(&self, offset: i64) -> Result<batch::ControlType> {
        let r = self.read(offset, 1)?;
        marker_type(&r.bytes, offset)
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
