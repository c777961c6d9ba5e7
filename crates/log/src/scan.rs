//! Sequential, CRC-verifying scans over a segment file.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::batch::{self, BatchError, BatchHeader, HEADER_SIZE};

/// Why a scan stopped before the requested end.
#[derive(Debug)]
pub(crate) enum ScanError {
    /// The bytes at this position are not a valid batch.
    Batch(BatchError),
    /// Reading the file failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Batch(e) => e.fmt(f),
            ScanError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

/// Read exactly `buf.len()` bytes at `pos`, or fewer at end of file.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// How base offsets must progress during a scan (the base offset is outside the CRC, so
/// this is what catches a damaged one).
#[derive(Debug, Clone, Copy)]
pub(crate) enum OffsetCheck {
    /// No check.
    None,
    /// Each batch starts exactly where the previous ended, the first at this offset
    /// (segments that were never compacted).
    Dense(i64),
    /// Each batch starts at or after the previous one's end, the first at this offset or
    /// later (compacted segments have gaps).
    Increasing(i64),
}

/// Scan complete batches in `[start, end)`, verifying each CRC, calling `f(position,
/// header, batch_bytes)`. Returns the end position, or the position of the first byte
/// that is not a valid batch with the reason.
pub(crate) fn scan_batches(
    file: &File,
    start: u64,
    end: u64,
    mut check: OffsetCheck,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]),
) -> Result<u64, (u64, ScanError)> {
    const CHUNK: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = start; // file position of buf[0]
    let mut pos = start;
    while pos < end {
        let off = (pos - buf_pos) as usize;
        // Make sure the header is buffered.
        if buf.len() - off < HEADER_SIZE {
            buf.drain(..off);
            buf_pos = pos;
            let want = CHUNK.max(HEADER_SIZE).min((end - buf_pos) as usize);
            if let Err(e) = fill(file, &mut buf, buf_pos, want) {
                return Err((pos, ScanError::Io(e)));
            }
        }
        let off = (pos - buf_pos) as usize;
        let avail = &buf[off..];
        let h = match BatchHeader::parse(avail) {
            Ok(h) => h,
            Err(e) => return Err((pos, ScanError::Batch(e))),
        };
        let total = h.total_size();
        if pos + total as u64 > end {
            return Err((
                pos,
                ScanError::Batch(BatchError::Truncated {
                    needed: total,
                    available: (end - pos) as usize,
                }),
            ));
        }
        if avail.len() < total {
            buf.drain(..off);
            buf_pos = pos;
            let want = total.max(CHUNK).min((end - buf_pos) as usize);
            if let Err(e) = fill(file, &mut buf, buf_pos, want) {
                return Err((pos, ScanError::Io(e)));
            }
            if buf.len() < total {
                return Err((
                    pos,
                    ScanError::Batch(BatchError::Truncated {
                        needed: total,
                        available: buf.len(),
                    }),
                ));
            }
        }
        let off = (pos - buf_pos) as usize;
        let bytes = &buf[off..off + total];
        if let Err(e) = batch::verify_crc(bytes) {
            return Err((pos, ScanError::Batch(e)));
        }
        let offset_error = |want: &str| {
            Err((
                pos,
                ScanError::Batch(BatchError::Inconsistent(format!(
                    "batch base offset {} where {want} was expected",
                    h.base_offset
                ))),
            ))
        };
        match check {
            OffsetCheck::None => {}
            OffsetCheck::Dense(e) => {
                if h.base_offset != e {
                    return offset_error(&e.to_string());
                }
                check = OffsetCheck::Dense(h.next_offset());
            }
            OffsetCheck::Increasing(e) => {
                if h.base_offset < e || h.last_offset_delta < 0 {
                    return offset_error(&format!("{e} or more"));
                }
                check = OffsetCheck::Increasing(h.next_offset());
            }
        }
        f(pos, &h, bytes);
        pos += total as u64;
    }
    Ok(pos)
}

/// Ensure `buf` holds up to `want` bytes starting at file position `at` (`buf[0]` is `at`).
fn fill(file: &File, buf: &mut Vec<u8>, at: u64, want: usize) -> std::io::Result<()> {
    let have = buf.len();
    if have >= want {
        return Ok(());
    }
    buf.resize(want, 0);
    let n = read_full_at(file, &mut buf[have..], at + have as u64)?;
    buf.truncate(have + n);
    Ok(())
}
