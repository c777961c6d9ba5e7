//! Producer id allocation: ids are handed out from a durably reserved block, so no id is
//! ever handed out twice, also across crashes.
//!
//! The per-partition producer state (sequences that deduplicate retried batches, open
//! transactions, the aborted-transaction index) lives in the log
//! ([`sluice_log::ProducerState`]): each partition records every batch it appends and
//! rebuilds the state at open.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use sluice_log::Log;

const ID_BLOCK: i64 = 1000;

/// Producer id allocation.
#[derive(Debug)]
pub struct ProducerIds {
    ids: Mutex<IdAllocator>,
}

#[derive(Debug)]
struct IdAllocator {
    path: PathBuf,
    next: i64,
    reserved_until: i64,
}

impl ProducerIds {
    /// Load the id block file under `dir`.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("producer-id-block");
        let reserved = match std::fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        // A producer-state.json of older versions (one file for all partitions) is
        // obsolete: partitions keep their own state now.
        let _ = std::fs::remove_file(dir.join("producer-state.json"));
        Ok(ProducerIds {
            // Ids below the stored reservation may have been handed out before a crash.
            ids: Mutex::new(IdAllocator {
                path,
                next: reserved,
                reserved_until: reserved,
            }),
        })
    }

    /// A new producer id, never handed out before (durably reserved in blocks).
    pub fn allocate_id(&self) -> std::io::Result<i64> {
        let mut a = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if a.next >= a.reserved_until {
            let until = a.next + ID_BLOCK;
            sluice_log::write_atomic(&a.path, until.to_string().as_bytes())?;
            a.reserved_until = until;
        }
        let id = a.next;
        a.next += 1;
        Ok(id)
    }
}

/// The highest epoch any partition of `log` saw for `producer_id`.
pub fn known_epoch(log: &Log, producer_id: i64) -> Option<i16> {
    log.topic_names()
        .iter()
        .filter_map(|n| log.topic(n).ok())
        .flat_map(|t| t.partitions())
        .filter_map(|p| p.with_producers(|st| st.epoch_of(producer_id)))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = std::env::temp_dir().join(format!("sluice-pid-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = ProducerIds::open(dir.clone()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate_id().unwrap()).collect();
        drop(a);
        let b = ProducerIds::open(dir.clone()).unwrap();
        let next = b.allocate_id().unwrap();
        assert!(first.iter().all(|&i| i < next), "{first:?} then {next}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
