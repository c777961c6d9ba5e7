//! Sluice's storage engine: a data directory of topics and partitions whose segment files
//! hold Kafka v2 record batches byte for byte.
//!
//! What it owns: offset assignment, CRC-32C validation on append, sparse offset and time
//! indexes, segment rolling, durability policies with group commit, crash recovery
//! (verify the tail, cut torn writes, rebuild indexes), retention, compaction,
//! `DeleteRecords`, topic metadata and the data-directory lock.
//!
//! It also keeps the read-side facts every reader needs, whoever wrote: each partition's
//! producer state (idempotent sequences, open transactions, the last stable offset and
//! the aborted-transaction index: [`Partition::read_committed`], [`AbortFilter`]), an
//! append that runs a caller's check under the partition lock ([`Partition::append_if`])
//! and an append notification ([`AppendNotifier`]).
//!
//! What it never does: networking, async runtimes, consumer groups or the transaction
//! coordinator (those are the broker's: it decides commits and aborts, the log stores the
//! markers and indexes them). It is synchronous; callers on an async runtime call it from
//! blocking threads. The only thread it starts is the optional background flusher.

mod atomic_file;
mod batch;
mod clock;
mod compaction;
mod compression;
mod config;
pub mod decode_budget;
mod error;
mod log;
mod notify;
mod partition;
mod partitioner;
mod producer_state;
mod scan;
mod segment;

pub use atomic_file::write_atomic;
pub use batch::{
    BatchBuilder, BatchError, BatchHeader, ControlType, HEADER_SIZE, Header, LOG_OVERHEAD, Record,
    TimestampType, control_batch, control_type, decode_records, frames, validate_batch, verify_crc,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compression::Compression;
pub use config::{
    CleanupPolicy, ConfigKind, FsyncPolicy, LIST_CONFIG_KEYS, MessageTimestampType,
    STORED_ONLY_KEYS, TOPIC_CONFIG_KEYS, TopicConfig, topic_config_default, topic_config_doc,
};
pub use error::{Error, Result};
pub use log::{Log, LogOptions, RecoveryNote, Topic, TopicMeta, validate_topic_name};
pub use notify::{AppendListener, AppendNotifier};
pub use partition::{
    AppendIf, AppendInfo, CommittedRead, CompactionReport, Durability, Partition, PartitionSummary,
    ReadResult, RetentionReport,
};
pub use partitioner::{murmur2, partition_for_key};
pub use producer_state::{AbortFilter, AbortedTxn, ProducerState, SequenceCheck, SequenceError};
pub use segment::{Quarantined, SegmentRecovery};

/// Entry points shared by the cargo-fuzz targets (`fuzz/`) and the bounded random-input
/// tests that run in CI. Each must never panic on any input.
pub mod testing {
    use std::path::Path;

    /// Open the segment with base offset `base` in `dir` as the active segment (full scan,
    /// torn tail cut off) and return the verified byte length.
    pub fn recover_segment(dir: &Path, base: i64) -> crate::Result<(u64, crate::SegmentRecovery)> {
        let (seg, rec) = crate::segment::Segment::open(dir, base, true, 4096, false, None)?;
        Ok((seg.size(), rec))
    }

    /// Decode arbitrary bytes as record batches. A batch that validates must decode.
    pub fn fuzz_batches(data: &[u8]) {
        for frame in crate::batch::frames(data) {
            let Ok((pos, h)) = frame else { break };
            let bytes = &data[pos..pos + h.total_size()];
            if let Ok(h) = crate::batch::validate_batch(bytes) {
                let decoded = crate::batch::decode_records(bytes);
                if h.compression() == Ok(crate::Compression::None) {
                    let recs = decoded.expect("a validated uncompressed batch decodes");
                    assert_eq!(recs.len(), h.record_count as usize);
                }
            }
        }
        for c in [
            crate::Compression::Gzip,
            crate::Compression::Snappy,
            crate::Compression::Lz4,
            crate::Compression::Zstd,
        ] {
            let _ = c.decompress(data, 1 << 20);
        }
    }

    /// Write `data` as a segment file in the empty directory `dir` and recover it (as
    /// after a crash): what recovery keeps must be whole valid batches with dense offsets,
    /// each intact batch kept verbatim and in order (a quarantined range is replaced by an
    /// empty placeholder batch, its bytes kept in a `.damaged` file), and recovering again
    /// must keep all of it.
    pub fn fuzz_recover(dir: &Path, data: &[u8]) {
        let path = crate::segment::log_path(dir, 0);
        std::fs::write(&path, data).expect("write segment");
        let (kept, rec) = recover_segment(dir, 0).expect("recovery of damage never fails");
        let on_disk = std::fs::read(&path).expect("read segment");
        assert_eq!(
            on_disk.len() as u64,
            kept,
            "the file holds what was verified"
        );
        let mut expect = 0i64;
        let mut searched_from = 0usize;
        for f in crate::batch::frames(&on_disk) {
            let (pos, h) = f.expect("kept bytes frame cleanly");
            let bytes = &on_disk[pos..pos + h.total_size()];
            crate::batch::verify_crc(bytes).expect("kept batches verify");
            assert_eq!(h.base_offset, expect, "kept offsets are dense");
            expect = h.next_offset();
            if h.record_count == 0
                && h.producer_id == -1
                && bytes.len() == crate::batch::HEADER_SIZE
            {
                continue; // a placeholder for quarantined offsets (or an empty batch)
            }
            // Every other kept batch appears in the input, in order (its base offset may
            // have been repaired: compare from the length field on).
            let found = data[searched_from..]
                .windows(bytes.len())
                .position(|w| w[8..] == bytes[8..])
                .unwrap_or_else(|| panic!("kept batch at {pos} is not in the input"));
            searched_from += found + bytes.len();
        }
        for q in &rec.quarantined {
            let damaged = std::fs::read(&q.file).expect("quarantined bytes are kept");
            assert_eq!(damaged.len() as u64, q.bytes);
            let _ = std::fs::remove_file(&q.file);
        }
        let (again, rec) = recover_segment(dir, 0).expect("second recovery");
        assert_eq!(again, kept);
        assert_eq!(rec.truncated_bytes, 0);
        assert!(rec.quarantined.is_empty(), "{rec:?}");
        let _ = std::fs::remove_file(&path);
    }
}
