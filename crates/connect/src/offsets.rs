//! Committed source offsets of a pipeline, stored in the data directory until consumer
//! groups exist: `DATA/pipelines/<pipeline name>/offsets.json`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetsFile {
    /// The topic the offsets belong to.
    topic: String,
    /// Partition → next offset to read (everything below is reflected in durable output).
    offsets: BTreeMap<u32, i64>,
}

/// The offsets file of one pipeline reading one topic, plus a lock file so that two runs
/// of the same pipeline on one data directory cannot interleave their commits.
///
/// Writes are atomic: temp file, fsync, rename over `offsets.json`, fsync the directory.
#[derive(Debug)]
pub struct OffsetStore {
    dir: PathBuf,
    topic: String,
    _lock: File,
}

/// Checks that a pipeline name can be used as a directory name.
pub fn validate_pipeline_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 200
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "pipeline name {name:?} cannot name its offsets directory; use letters, digits, '.', '_' or '-'"
        )))
    }
}

impl OffsetStore {
    /// Opens (creating if needed) `DATA/pipelines/<pipeline>/` and takes its lock.
    pub fn open(data_dir: &Path, pipeline: &str, topic: &str) -> Result<Self> {
        validate_pipeline_name(pipeline)?;
        let dir = data_dir.join("pipelines").join(pipeline);
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating directory", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("opening", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::PipelineBusy {
                    name: pipeline.to_owned(),
                    path: lock_path,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("locking", &lock_path, e)),
        }
        Ok(Self {
            dir,
            topic: topic.to_owned(),
            _lock: lock,
        })
    }

    /// The offsets file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("offsets.json")
    }

    /// The committed offsets, or an empty map when nothing was committed yet.
    pub fn load(&self) -> Result<BTreeMap<u32, i64>> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
        let f: OffsetsFile = serde_json::from_slice(&bytes).map_err(|e| Error::Offsets {
            path: path.clone(),
            reason: format!("is not a valid offsets file ({e}); delete it to start over"),
        })?;
        if f.topic != self.topic {
            return Err(Error::Offsets {
                path,
                reason: format!(
                    "holds offsets of topic {:?} but the pipeline reads {:?}; delete it to start the pipeline over",
                    f.topic, self.topic
                ),
            });
        }
        Ok(f.offsets)
    }

    /// Stores `offsets` atomically and durably.
    pub fn save(&self, offsets: &BTreeMap<u32, i64>) -> Result<()> {
        let path = self.path();
        let body = serde_json::to_vec_pretty(&OffsetsFile {
            topic: self.topic.clone(),
            offsets: offsets.clone(),
        })
        .expect("offsets serialize");
        sluice_log::write_atomic(&path, &body).map_err(|e| Error::io("replacing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let s = OffsetStore::open(dir.path(), "p", "t").unwrap();
        assert!(s.load().unwrap().is_empty());
        s.save(&BTreeMap::from([(0, 5), (2, 9)])).unwrap();
        assert_eq!(s.load().unwrap(), BTreeMap::from([(0, 5), (2, 9)]));
        assert!(s.path().ends_with("pipelines/p/offsets.json"));
        assert!(matches!(
            OffsetStore::open(dir.path(), "p", "t"),
            Err(Error::PipelineBusy { .. })
        ));
        drop(s);
        let other = OffsetStore::open(dir.path(), "p", "u").unwrap();
        assert!(other.load().unwrap_err().to_string().contains("delete it"));
        assert!(OffsetStore::open(dir.path(), "../x", "t").is_err());
    }
}
