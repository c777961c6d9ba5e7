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
//! * [`Sink`]s: [`FileSink`] (JSON lines, flushed and fsynced by [`Sink::commit`]),
//!   [`StdoutSink`], [`TopicSink`] and [`KafkaSink`] (one record per result, key = window
//!   key; the Kafka sink's flush waits for every acknowledgement);
//! * the [`OffsetStore`]: committed source offsets in `DATA/pipelines/<name>/offsets.json`,
//!   written atomically, for topic sources (Kafka sources commit to their group);
//! * [`record`]: turning raw records into engine events, and the JSON written to the
//!   late/error output for late and malformed events (never dropped);
//! * [`open`]: building sources and sinks from a pipeline file's `[source]`, `[sink]` and
//!   `[late]` sections.
//!
//! * [`config`]: each connector kind's section of the pipeline file, parsed and
//!   validated here (the engine keeps only the event-time keys).
//!
//! The contract: a [`Source`] hands out [`SourceRecord`]s (topic, partition, offset, key,
//! headers, timestamp, value), commits positions and can seek; a [`Sink`] takes writes and
//! commits them with the [`Position`] they reflect.
//!
//! It never decides event-time semantics (watermarks, windows, lateness: the engine does)
//! and never runs the processing loop (`sluice-runtime` does).

pub mod config;
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

/// Which records of transactional producers a log source hands out (Kafka's
/// `isolation.level`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed records: nothing at or above the last stable offset, nothing of
    /// aborted transactions (the default, as for Kafka Streams and Flink's exactly-once
    /// readers).
    #[default]
    ReadCommitted,
    /// Every record below the high watermark, also of open and aborted transactions.
    ReadUncommitted,
}

impl Isolation {
    /// Parses `read_committed` / `read_uncommitted`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "read_committed" => Ok(Self::ReadCommitted),
            "read_uncommitted" => Ok(Self::ReadUncommitted),
            other => Err(Error::Config(format!(
                "source.isolation must be read_committed or read_uncommitted, not {other:?}"
            ))),
        }
    }
}

/// The source positions output reflects: for each source partition, the next offset to
/// read (every record below it is fully reflected in the output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// Source partition -> next offset.
    pub offsets: BTreeMap<u32, i64>,
}

impl Position {
    /// A position from `(partition, next offset)` pairs.
    pub fn new(offsets: impl IntoIterator<Item = (u32, i64)>) -> Self {
        Self {
            offsets: offsets.into_iter().collect(),
        }
    }
}

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

    /// Moves the read positions to `offsets` (partitions absent keep theirs): a restart
    /// resuming from a position a sink stored with its output
    /// ([`Sink::committed_position`]). Sources without resumable positions refuse.
    fn seek(&mut self, offsets: &BTreeMap<u32, i64>) -> Result<()> {
        let _ = offsets;
        Err(Error::Config(format!(
            "{} cannot resume from a stored position",
            self.describe()
        )))
    }

    /// Nothing was available: waits up to `timeout` for records to arrive and returns
    /// true, or returns false at once when this source cannot be waited on (the runtime
    /// then sleeps briefly and polls again).
    fn wait_for_data(&mut self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        false
    }

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
    /// The value may sit in a buffer until [`Sink::commit`]: the values written between
    /// two commits are one batch.
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()>;

    /// Makes everything written so far durable (files: flushed and fsynced; topics:
    /// appended and synced; Kafka: acknowledged) together with `position`, the source
    /// position that output reflects. A sink that can store the position atomically with
    /// its output (a database in the same transaction, a transactional producer with its
    /// offsets) does so and returns it from [`Sink::committed_position`]; the others
    /// ignore it, and the runtime commits the position to the source after this returns
    /// (at-least-once).
    fn commit(&mut self, position: &Position) -> Result<()>;

    /// The position stored by the last [`Sink::commit`] of an earlier run, for sinks that
    /// store it with their output: the runtime resumes the source there. Default: none.
    fn committed_position(&mut self) -> Result<Option<Position>> {
        Ok(None)
    }

    /// A short description for logs.
    fn describe(&self) -> String;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()> {
        (**self).write(key, value)
    }
    fn commit(&mut self, position: &Position) -> Result<()> {
        (**self).commit(position)
    }
    fn committed_position(&mut self) -> Result<Option<Position>> {
        (**self).committed_position()
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
    fn seek(&mut self, offsets: &BTreeMap<u32, i64>) -> Result<()> {
        (**self).seek(offsets)
    }
    fn wait_for_data(&mut self, timeout: std::time::Duration) -> bool {
        (**self).wait_for_data(timeout)
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
    /// Written `(key, value)` pairs, committed or not.
    pub written: Vec<(Option<String>, Value)>,
    /// How many of `written` were covered by a commit.
    pub flushed: usize,
    /// Keep the values (false: only count them, for benchmarks).
    pub discard: bool,
    /// Values written (kept or not).
    pub count: u64,
    /// Store the committed position with the output (as a database sink does in the same
    /// transaction) and hand it back from [`Sink::committed_position`].
    pub stores_position: bool,
    /// The positions of every commit, in order.
    pub commits: Vec<Position>,
}

impl Sink for MemorySink {
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()> {
        self.count += 1;
        if !self.discard {
            self.written.push((key.map(str::to_owned), value.clone()));
        }
        Ok(())
    }
    fn commit(&mut self, position: &Position) -> Result<()> {
        self.flushed = self.written.len();
        if !self.discard {
            self.commits.push(position.clone());
        }
        Ok(())
    }
    fn committed_position(&mut self) -> Result<Option<Position>> {
        Ok(self
            .commits
            .last()
            .filter(|_| self.stores_position)
            .cloned())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}
