//! Opening a partition from its directory (listing and recovering its segments, the log
//! start offset, the clean-shutdown marker, the producer state from the saved snapshot or
//! a header scan) and, for a read-only partition, following what a writer appends.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};

use super::{
    CLEAN_SHUTDOWN_FILE, Inner, LOG_START_FILE, PRODUCER_STATE_FILE, Partition, SyncState,
};
use crate::clock::Clock;
use crate::config::TopicConfig;
use crate::error::{Error, IoContext, Result};
use crate::notify::AppendNotifier;
use crate::producer_state::ProducerState;
use crate::segment::{self, Segment, SegmentRecovery};

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
            let kind = super::stored_marker(std::slice::from_ref(seg), h.base_offset);
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

fn parse_segment_name(name: &str) -> Option<i64> {
    let base = name.strip_suffix(".log")?;
    if base.len() != 20 || !base.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    base.parse().ok()
}

/// The stored log start offset, if one was written.
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
            syncs: std::sync::atomic::AtomicU64::new(0),
        };
        Ok((p, recoveries))
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
