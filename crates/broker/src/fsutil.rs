//! Small durable-file helpers.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Write a file atomically and durably: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
