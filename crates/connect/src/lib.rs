//! Sluice's connectors: where a pipeline's events come from and where its results go.
//!
//! This crate owns the I/O around the pure engine core (`sluice-engine`):
//!
//! * [`Source`]s: [`FileSource`] (JSON lines, file order = arrival order, bounded),
//!   [`TopicSource`] (every partition of a topic of the embedded log, per-partition
//!   offsets, bounded to the end offsets seen at start or following new records, and
//!   telling the runtime when a partition is read to its end for exact idleness) and
//!   [`KafkaSource`] (a topic of any Kafka-protocol cluster, as a consumer-group member
//!   committing to the group);
//! * [`Sink`]s: [`FileSink`] (JSON lines, flushed and fsynced by [`Sink::flush`]),
//!   [`StdoutSink`], [`TopicSink`] and [`KafkaSink`] (one record per result, key = window
//!   key; the Kafka sink's flush waits for every acknowledgement);
//! * the [`OffsetStore`]: committed source offsets in `DATA/pipelines/<name>/offsets.json`,
//!   written atomically, for topic sources (Kafka sources commit to their group);
//! * [`record`]: turning raw records into engine events, and the JSON written to the
//!   late/error output for late and malformed events (never dropped);
//! * [`open`]: building sources and sinks from a pipeline file's `[source]`, `[sink]` and
//!   `[late]` sections.
//!
//! It never decides event-time semantics (watermarks, windows, lateness: the engine does)
//! and never runs the processing loop (the `sluice run` command does).

mod error;
pub mod file;
pub mod kafka;
pub mod offsets;
pub mod open;
pub mod record;
pub mod stdout;
pub mod topic;

use std::collections::BTreeMap;

use serde_json::Value;

pub use error::{Error, Result};
pub use file::{FileSink, FileSource};
pub use kafka::{KafkaSink, KafkaSource};
pub use offsets::OffsetStore;
pub use record::SourceRecord;
pub use stdout::StdoutSink;
pub use topic::{TopicSink, TopicSource};

/// Where events come from. Pull-based: the runtime polls, processes, then commits.
pub trait Source {
    /// The source partitions (0 only, for single-stream sources such as a file).
    fn partitions(&self) -> Vec<u32>;

    /// Appends up to `max` records to `out` in arrival order and returns how many were
    /// added. 0 means nothing is available right now (see [`Source::is_exhausted`]).
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<usize>;

    /// Whether `partition` has been handed out up to its current end (bounded: up to the
    /// end offset seen at start). Used for exact idleness: such a partition cannot hold
    /// the watermark back. Sources that cannot know this return `false`.
    fn caught_up(&self, partition: u32) -> bool;

    /// A bounded source that has handed out everything.
    fn is_exhausted(&self) -> bool;

    /// Durably records that for each partition every record below the given offset is
    /// fully reflected in durable output, so a restart resumes there. Sources without
    /// resumable positions (files) ignore it.
    fn commit(&mut self, offsets: &BTreeMap<u32, i64>) -> Result<()>;

    /// A short description for logs ("file events.jsonl", "topic clicks").
    fn describe(&self) -> String;

    /// Messages worth telling the user (e.g. offsets skipped after retention), drained.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// Where results (or late and bad events) go.
pub trait Sink {
    /// Writes one JSON value; `key` is used by keyed sinks (topics), ignored by others.
    /// The value may sit in a buffer until [`Sink::flush`].
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()>;

    /// Makes everything written so far durable (files: flushed and fsynced; topics:
    /// appended and synced). Offsets are committed only after this returns.
    fn flush(&mut self) -> Result<()>;

    /// A short description for logs.
    fn describe(&self) -> String;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()> {
        (**self).write(key, value)
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn partitions(&self) -> Vec<u32> {
        (**self).partitions()
    }
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<usize> {
        (**self).poll(max, out)
    }
    fn caught_up(&self, partition: u32) -> bool {
        (**self).caught_up(partition)
    }
    fn is_exhausted(&self) -> bool {
        (**self).is_exhausted()
    }
    fn commit(&mut self, offsets: &BTreeMap<u32, i64>) -> Result<()> {
        (**self).commit(offsets)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn take_notes(&mut self) -> Vec<String> {
        (**self).take_notes()
    }
}

/// A sink that keeps everything in memory (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Written `(key, value)` pairs, flushed or not.
    pub written: Vec<(Option<String>, Value)>,
    /// How many of `written` were covered by a flush.
    pub flushed: usize,
    /// Keep the values (false: only count them, for benchmarks).
    pub discard: bool,
    /// Values written (kept or not).
    pub count: u64,
}

impl Sink for MemorySink {
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()> {
        self.count += 1;
        if !self.discard {
            self.written.push((key.map(str::to_owned), value.clone()));
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.flushed = self.written.len();
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}
