//! Subcommand implementations.

use std::path::Path;

use anyhow::Context;
use sluice_log::{Log, LogOptions};

pub mod consume;
pub mod debug;
pub mod demo;
pub mod group;
pub mod produce;
pub mod remote;
pub mod run;
pub mod serve;
pub mod topic;
pub mod txn;
pub mod txn_admin;

/// Open the data directory for writing (takes the exclusive lock).
pub fn open_writer(dir: &Path) -> anyhow::Result<Log> {
    open_writer_with(dir, std::collections::BTreeMap::new())
}

/// [`open_writer`] with topic config defaults applied to every topic created later.
pub fn open_writer_with(
    dir: &Path,
    default_topic_config: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Log> {
    let log = Log::open(
        dir,
        LogOptions {
            background: true,
            default_topic_config,
            ..LogOptions::default()
        },
    )
    .with_context(|| format!("opening data directory {}", dir.display()))?;
    for n in log.recovery_notes() {
        let mut what = Vec::new();
        for q in &n.segment.quarantined {
            what.push(format!(
                "CORRUPTION: {} damaged bytes at byte {} (offsets {:?}: {}) moved to {}; intact batches after them kept",
                q.bytes,
                q.position,
                q.offsets,
                q.reason,
                q.file.display()
            ));
        }
        if n.segment.truncated_bytes > 0 {
            what.push(format!(
                "cut {} bytes of torn tail ({})",
                n.segment.truncated_bytes,
                n.segment.reason.clone().unwrap_or_default()
            ));
        }
        if n.segment.rebuilt_index {
            what.push("rebuilt index".to_string());
        }
        eprintln!("recovery: {}-{}: {}", n.topic, n.partition, what.join("; "));
    }
    Ok(log)
}

/// Open the data directory read-only (no lock; works beside a running writer).
pub fn open_reader(dir: &Path) -> anyhow::Result<Log> {
    Log::open(
        dir,
        LogOptions {
            read_only: true,
            background: false,
            ..LogOptions::default()
        },
    )
    .with_context(|| format!("opening data directory {} read-only", dir.display()))
}

/// True when the error chain ends in a closed pipe (e.g. `sluice consume | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
