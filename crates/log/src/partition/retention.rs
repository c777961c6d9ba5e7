//! Retention and `DeleteRecords`: whole segments deleted from the start of a partition,
//! the log start offset advanced and persisted.

use super::{LOG_START_FILE, Partition};
use crate::error::{Error, Result};
use crate::segment::{self, Segment};

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

impl Partition {
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
}
