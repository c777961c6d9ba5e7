//! Errors of the storage engine.

use std::path::PathBuf;

/// Result type of the storage engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("{context}: {cause}")]
    Io {
        /// What the log was doing.
        context: String,
        /// The underlying error (shown in the message, so not chained as a source).
        cause: std::io::Error,
    },
    /// A record batch handed to the log is malformed; nothing of it was written.
    #[error("invalid record batch at byte {position} of the request: {reason}")]
    InvalidBatch {
        /// Byte position of the bad batch inside the appended buffer.
        position: usize,
        /// What is wrong with it.
        reason: crate::batch::BatchError,
    },
    /// A batch (or a record inside one) is larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes = {max} of topic {topic}")]
    MessageTooLarge {
        /// Topic name.
        topic: String,
        /// Size of the batch in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A record without a key was appended to a compacted topic.
    #[error("topic {topic} is compacted (cleanup.policy=compact): every record needs a key")]
    MissingKeyForCompactedTopic {
        /// Topic name.
        topic: String,
    },
    /// Stored data failed verification in a place where a crash cannot explain it.
    #[error("corrupt log segment {}: {reason} at byte {position}; the log will not serve it (restore the file or delete the segment to truncate)", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the first bad byte or batch.
        position: u64,
        /// What verification found.
        reason: String,
    },
    /// The data directory is held by another process.
    #[error("data directory {} is locked by another process ({holder}); stop it or use another --data-dir", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// No topic by this name.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// No partition by this number in the topic.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Requested partition.
        partition: i32,
    },
    /// The topic name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A topic setting is unknown or has a bad value.
    #[error("invalid topic config {key}={value:?}: {reason}")]
    InvalidConfig {
        /// Config key.
        key: String,
        /// Offending value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A partition count was not positive or would shrink the topic.
    #[error("invalid partition count {requested}: {reason}")]
    InvalidPartitions {
        /// The requested count.
        requested: i32,
        /// Why it is rejected.
        reason: String,
    },
    /// A read asked for an offset outside `[log start, high watermark]`.
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: valid offsets are {start}..={end}"
    )]
    OffsetOutOfRange {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: i32,
        /// Requested offset.
        offset: i64,
        /// Log start offset.
        start: i64,
        /// High watermark (next offset to be written).
        end: i64,
    },
    /// An earlier fsync failed; the partition refuses writes because the page cache may
    /// have dropped data it claimed to hold (restart to recover from what is on disk).
    #[error(
        "partition {topic}-{partition} is failed after an I/O error ({reason}); restart to recover"
    )]
    PartitionFailed {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: i32,
        /// The original failure.
        reason: String,
    },
    /// The log was opened read-only and a write was attempted.
    #[error("the log is open read-only (another process may own it); writes need exclusive access")]
    ReadOnly,
    /// Stored metadata (topic.json and friends) cannot be parsed.
    #[error("bad metadata file {}: {reason}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            cause: source,
        }
    }
}

/// Attach context to I/O results.
pub(crate) trait IoContext<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
