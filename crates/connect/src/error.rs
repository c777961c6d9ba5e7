//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in a source, a sink or the offset store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read, written or synced.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done (e.g. "reading").
        context: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Writing to standard output failed (e.g. a closed pipe).
    #[error("writing to stdout: {0}")]
    Stdout(#[source] std::io::Error),

    /// The embedded log refused an operation.
    #[error("{context}: {source}")]
    Log {
        /// What was being done, naming the topic.
        context: String,
        /// The log's error.
        #[source]
        source: sluice_log::Error,
    },

    /// A Kafka-protocol client (librdkafka) failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done, naming the topic and cluster.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// The stored offsets file cannot be used.
    #[error("offsets file {}: {reason}", path.display())]
    Offsets {
        /// The offsets file.
        path: PathBuf,
        /// What is wrong and how to recover.
        reason: String,
    },

    /// Another process runs the same pipeline on this data directory.
    #[error(
        "pipeline {name} is already running on this data directory (lock {} is held)",
        path.display()
    )]
    PipelineBusy {
        /// The pipeline name.
        name: String,
        /// The lock file.
        path: PathBuf,
    },

    /// A setting of the pipeline cannot be used by a connector.
    #[error("{0}")]
    Config(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn log(context: impl Into<String>, source: sluice_log::Error) -> Self {
        Error::Log {
            context: context.into(),
            source,
        }
    }

    /// True when the error is a closed pipe on stdout (the reader went away).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Stdout(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
