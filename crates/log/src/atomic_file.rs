//! Atomic, durable replacement of small files (metadata, offsets, index snapshots): the
//! one write-temp / fsync / rename / fsync-directory sequence the log, the broker and
//! connect share.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Replace the file at `path` with `data`, atomically and durably.
///
/// The bytes go to `<name>.tmp` next to `path` (created, or truncated if a failed write
/// left one), which is fsynced and renamed over `path`; then the directory is fsynced so
/// the rename itself survives a crash. Readers, and a restart after a crash, see the old
/// contents or the new ones in full, never a mix; once this returns `Ok` the new contents
/// are durable. A path without a directory part lives in the current directory.
///
/// On failure `path` is unchanged (unless only the final directory fsync failed: then the
/// new contents are in place but may not survive a crash) and a `<name>.tmp` may remain
/// (the next write replaces it; opening a partition removes stray ones from its
/// directory). Errors keep the [`io::ErrorKind`] of the failed call and say which step
/// failed on which file.
///
/// Concurrent writers of the same `path` would share the temp file: callers serialize them.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        ));
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = File::create(&tmp).map_err(|e| step(e, "creating", &tmp))?;
        f.write_all(data).map_err(|e| step(e, "writing", &tmp))?;
        f.sync_all().map_err(|e| step(e, "syncing", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(|e| {
        let what = format!("renaming {} over", tmp.display());
        step(e, &what, path)
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| step(e, "syncing directory", dir))
}

/// `e` with the step and file in its message, its kind kept.
fn step(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_overwrites_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        write_atomic(&path, b"first, longer contents").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first, longer contents");
        write_atomic(&path, b"second").unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            b"second",
            "replaced, not overwritten in place"
        );
        write_atomic(&path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(names(dir.path()), ["meta.json"]);
    }

    #[test]
    fn temp_name_appends_to_the_whole_file_name() {
        let dir = tempfile::tempdir().unwrap();
        // A sibling with the same stem is not the temp file (`with_extension` would make
        // both "state.tmp"), and a name without an extension works.
        fs::write(dir.path().join("state.tmp"), b"unrelated").unwrap();
        write_atomic(&dir.path().join("state.json"), b"{}").unwrap();
        write_atomic(&dir.path().join("clean-shutdown"), b"7\n").unwrap();
        assert_eq!(
            names(dir.path()),
            ["clean-shutdown", "state.json", "state.tmp"]
        );
        assert_eq!(
            fs::read(dir.path().join("state.tmp")).unwrap(),
            b"unrelated"
        );
    }

    #[test]
    fn replaces_a_stale_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.json");
        fs::write(
            dir.path().join("offsets.json.tmp"),
            b"left by a crash, and long",
        )
        .unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["offsets.json"]);
    }

    #[test]
    fn failure_keeps_kind_and_names_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("f");
        let e = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().starts_with("creating "), "{e}");
        assert!(e.to_string().contains("f.tmp"), "{e}");
        let e = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
