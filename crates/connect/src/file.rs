//! JSON-lines files: a bounded source read in file order, and a durable sink.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Error, Position, Result, Sink, Source, SourceRecord};

/// Reads a file of JSON lines once, in file order (file order = arrival order).
///
/// One partition (0); a record's offset is its 0-based line number. Blank lines are
/// skipped (they still count as lines). The source is bounded: it is exhausted at the end
/// of the file. It has no resumable position: a run always reads the whole file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    line: i64,
    eof: bool,
    buf: Vec<u8>,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io("opening source file", &path, e))?;
        Ok(Self {
            path,
            reader: BufReader::with_capacity(1 << 16, file),
            line: 0,
            eof: false,
            buf: Vec::new(),
        })
    }
}

impl Source for FileSource {
    fn partitions(&self) -> Vec<u32> {
        vec![0]
    }

    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<usize> {
        let mut n = 0;
        while n < max && !self.eof {
            self.buf.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::io("reading source file", &self.path, e))?;
            if read == 0 {
                self.eof = true;
                break;
            }
            let offset = self.line;
            self.line += 1;
            let mut end = self.buf.len();
            while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            let bytes = &self.buf[..end];
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.push(SourceRecord::value(0, offset, Some(bytes.to_vec())));
            n += 1;
        }
        Ok(n)
    }

    fn caught_up(&self, _partition: u32) -> bool {
        self.eof
    }

    fn is_exhausted(&self) -> bool {
        self.eof
    }

    fn commit(&mut self, _offsets: &BTreeMap<u32, i64>) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// Writes one JSON value per line; [`Sink::commit`] flushes the buffer and fsyncs the file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    dirty: bool,
}

impl FileSink {
    /// Creates (or truncates, unless `append`) the file at `path`. The parent directory is
    /// created if missing.
    pub fn create(path: impl AsRef<Path>, append: bool) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        }
        let mut o = OpenOptions::new();
        o.create(true);
        if append {
            o.append(true).read(true);
        } else {
            o.write(true).truncate(true);
        }
        let file = o
            .open(&path)
            .map_err(|e| Error::io("opening sink file", &path, e))?;
        if append {
            cut_torn_line(&file).map_err(|e| Error::io("repairing the end of", &path, e))?;
        }
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 16, file),
            dirty: true,
        })
    }
}

/// A process killed while writing can leave a partial last line (written after the last
/// flush, so never covered by a commit: its result is produced again on restart). Cut it so
/// appended lines start on a line of their own. Returns the bytes cut.
fn cut_torn_line(file: &File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    let mut f = file;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(len - end)
}

impl Sink for FileSink {
    fn write(&mut self, _key: Option<&str>, value: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(|e| Error::io("writing", &self.path, e.into()))?;
        self.out
            .write_all(b"\n")
            .map_err(|e| Error::io("writing", &self.path, e))?;
        self.dirty = true;
        Ok(())
    }

    fn commit(&mut self, _position: &Position) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.out
            .flush()
            .map_err(|e| Error::io("writing", &self.path, e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io("syncing", &self.path, e))?;
        self.dirty = false;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_reads_lines_in_order_with_line_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, "{\"a\":1}\r\n\n  \nnot json\n{\"a\":2}").unwrap();
        let mut s = FileSource::open(&p).unwrap();
        let mut out = Vec::new();
        assert_eq!(s.poll(1, &mut out).unwrap(), 1);
        assert!(!s.is_exhausted());
        assert_eq!(s.poll(10, &mut out).unwrap(), 2);
        assert_eq!(s.poll(10, &mut out).unwrap(), 0);
        assert!(s.is_exhausted() && s.caught_up(0));
        let got: Vec<(i64, &[u8])> = out
            .iter()
            .map(|r| (r.offset, r.payload.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (0, &b"{\"a\":1}"[..]),
                (3, &b"not json"[..]),
                (4, &b"{\"a\":2}"[..])
            ]
        );
    }

    #[test]
    fn sink_writes_lines_and_appends_or_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.jsonl");
        let mut s = FileSink::create(&p, false).unwrap();
        s.write(None, &json!({"x": 1})).unwrap();
        s.commit(&Position::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"x\":1}\n");
        let mut s = FileSink::create(&p, true).unwrap();
        s.write(None, &json!(2)).unwrap();
        s.commit(&Position::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"x\":1}\n2\n");
        std::fs::write(&p, "{\"x\":1}\n{\"torn").unwrap();
        let mut s = FileSink::create(&p, true).unwrap();
        s.write(None, &json!(3)).unwrap();
        s.commit(&Position::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"x\":1}\n3\n");
        std::fs::write(&p, "torn").unwrap();
        FileSink::create(&p, true).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        let mut s = FileSink::create(&p, false).unwrap();
        s.commit(&Position::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }
}
