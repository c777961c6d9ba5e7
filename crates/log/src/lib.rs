//! Sluice's storage engine: a data directory of topics and partitions whose segment files
//! hold Kafka v2 record batches byte for byte.
//!
//! What it owns: offset assignment, CRC-32C validation on append, sparse offset and time
//! indexes, segment rolling, durability policies with group commit, crash recovery
//! (verify the tail, cut torn writes, rebuild indexes), retention, compaction,
//! `DeleteRecords`, topic metadata and the data-directory lock.
//!
//! What it never does: networking, async runtimes, consumer groups or transactions
//! (those are the broker's). It is synchronous; callers on an async runtime call it from
//! blocking threads. The only thread it starts is the optional background flusher.

mod batch;
mod clock;
mod compression;
mod config;
mod error;
mod log;
mod partition;
mod partitioner;
mod scan;
mod segment;

pub use batch::{
    BatchBuilder, BatchError, BatchHeader, HEADER_SIZE, Header, LOG_OVERHEAD, Record,
    TimestampType, decode_records, frames, validate_batch, verify_crc,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compression::Compression;
pub use config::{
    CleanupPolicy, FsyncPolicy, MessageTimestampType, TOPIC_CONFIG_KEYS, TopicConfig,
};
pub use error::{Error, Result};
pub use log::{Log, LogOptions, RecoveryNote, Topic, TopicMeta, validate_topic_name};
pub use partition::{
    AppendInfo, CompactionReport, Partition, PartitionSummary, ReadResult, RetentionReport,
};
pub use partitioner::{murmur2, partition_for_key};
pub use segment::SegmentRecovery;

/// Low-level helpers for fuzzing and tests: recovery of a single segment file.
pub mod testing {
    use std::path::Path;

    /// Open the segment with base offset `base` in `dir` as the active segment (full scan,
    /// torn tail cut off) and return the verified byte length.
    pub fn recover_segment(dir: &Path, base: i64) -> crate::Result<(u64, crate::SegmentRecovery)> {
        let (seg, rec) = crate::segment::Segment::open(dir, base, true, 4096, false)?;
        Ok((seg.size(), rec))
    }
}
