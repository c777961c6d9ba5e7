//! One segment: a file of record batches plus its sparse offset and time indexes.
//!
//! File names follow Kafka: `<base offset, 20 digits>.log`, `.index`, `.timeindex`.
//! Index entries are big-endian: `.index` holds `(relative offset u32, position u32)`,
//! `.timeindex` holds `(max timestamp so far i64, relative offset u32, position u32)`.
//! Indexes of the active segment live in memory and are written when the segment is
//! rolled or the log is closed; missing or implausible index files are rebuilt by a
//! CRC-verifying scan.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::batch::{self, BatchHeader, HEADER_SIZE, TimestampType};
use crate::error::{Error, IoContext, Result};
use crate::scan::{OffsetCheck, ScanError, read_full_at, scan_batches};

const INDEX_ENTRY: usize = 8;
const TIME_ENTRY: usize = 16;

/// Path of a segment's log file.
pub(crate) fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}
fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}
fn time_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    rel_offset: u32,
    position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    timestamp: i64,
    rel_offset: u32,
    position: u32,
}

#[derive(Debug, Clone, Default)]
struct Meta {
    /// Bytes of verified batches.
    size: u64,
    /// One past the last offset stored (the base offset when empty).
    next_offset: i64,
    /// Largest batch max timestamp, -1 when none.
    max_timestamp: i64,
    /// Max timestamp of the first batch (Kafka's basis for `segment.ms`).
    first_batch_timestamp: Option<i64>,
    index: Vec<IndexEntry>,
    time_index: Vec<TimeEntry>,
    bytes_since_index: u64,
}

/// What recovery did to a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentRecovery {
    /// Bytes cut off a torn tail (only after an unclean shutdown, and only when no intact
    /// batch follows the damage).
    pub truncated_bytes: u64,
    /// Why the tail was cut.
    pub reason: Option<String>,
    /// The indexes were rebuilt by scanning.
    pub rebuilt_index: bool,
    /// Damaged byte ranges moved out of the segment into `.damaged` files beside it:
    /// damage followed by intact batches (corruption, not a torn write), or any damage
    /// found after a clean shutdown. Their offsets are never handed out again.
    pub quarantined: Vec<Quarantined>,
}

/// A damaged byte range taken out of a segment by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Byte position of the damage in the segment as it was found.
    pub position: u64,
    /// Length of the damaged range.
    pub bytes: u64,
    /// The offsets the damaged range held, `[first, end)` (an empty batch holds them
    /// now); empty when the damage held no offsets or they are unknown (a tail after a
    /// clean shutdown whose end offset was not recorded).
    pub offsets: std::ops::Range<i64>,
    /// Where the damaged bytes were kept.
    pub file: PathBuf,
    /// What was wrong at `position`.
    pub reason: String,
}

/// A segment file and its indexes.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    dir: PathBuf,
    path: PathBuf,
    file: File,
    index_interval: u64,
    meta: RwLock<Meta>,
}

/// Result of reading from a segment.
#[derive(Debug, Default)]
pub(crate) struct SegmentRead {
    pub(crate) bytes: Vec<u8>,
    /// One past the last offset returned.
    pub(crate) next_offset: i64,
}

impl Segment {
    /// Create an empty segment file (and make its directory entry durable).
    pub(crate) fn create(dir: &Path, base_offset: i64, index_interval: u64) -> Result<Segment> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(|| format!("creating segment {}", path.display()))?;
        sync_dir(dir)?;
        Ok(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            path,
            file,
            index_interval,
            meta: RwLock::new(Meta {
                next_offset: base_offset,
                max_timestamp: -1,
                ..Meta::default()
            }),
        })
    }

    /// Open an existing segment. The active (last) segment is fully scanned and a torn or
    /// corrupt tail is cut off (or, read-only, ignored). A closed segment trusts
    /// plausible index files and verifies the batches after the last index entry; a
    /// failure there is corruption, reported with file and position.
    ///
    /// In the active segment, damage followed by intact batches is corruption, not a torn
    /// write: the damaged range is quarantined (moved to a `.damaged` file) and the intact
    /// batches are kept. Only damage that runs to the end of the file after an unclean
    /// shutdown (`clean` is `None`; after a clean one it holds the next offset recorded
    /// then) is a torn tail and cut. A batch whose base offset alone is damaged (it is
    /// outside the CRC) is repaired in place when the batches around it prove the right
    /// value. A quarantined range is replaced by an empty batch holding its offsets, so the
    /// segment stays dense and no offset is handed out twice.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        active: bool,
        index_interval: u64,
        read_only: bool,
        clean: Option<i64>,
    ) -> Result<(Segment, SegmentRecovery)> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .ctx(|| format!("opening segment {}", path.display()))?;
        let file_len = file
            .metadata()
            .ctx(|| format!("stat {}", path.display()))?
            .len();
        let seg = Segment {
            base_offset,
            dir: dir.to_path_buf(),
            path,
            file,
            index_interval,
            meta: RwLock::new(Meta {
                next_offset: base_offset,
                max_timestamp: -1,
                ..Meta::default()
            }),
        };
        let mut rec = SegmentRecovery::default();
        if !active && let Some((index, time_index)) = seg.load_indexes(file_len) {
            // Verify from the last indexed batch to the end of the file.
            let (start, first) = index
                .last()
                .map(|e| (e.position as u64, base_offset + e.rel_offset as i64))
                .unwrap_or((0, base_offset));
            let mut meta = Meta {
                size: start,
                next_offset: base_offset,
                max_timestamp: time_index.last().map(|e| e.timestamp).unwrap_or(-1),
                first_batch_timestamp: None,
                index,
                time_index,
                bytes_since_index: 0,
            };
            let mut first_batch = true;
            let r = scan_batches(
                &seg.file,
                start,
                file_len,
                OffsetCheck::Increasing(first),
                |_, h, _| {
                    if first_batch && start == 0 {
                        meta.first_batch_timestamp = Some(h.max_timestamp);
                    }
                    first_batch = false;
                    meta.next_offset = h.next_offset();
                    meta.max_timestamp = meta.max_timestamp.max(h.max_timestamp);
                    meta.size += h.total_size() as u64;
                },
            );
            match r {
                Ok(_) => {
                    if meta.first_batch_timestamp.is_none() {
                        meta.first_batch_timestamp = seg.first_batch_timestamp_on_disk()?;
                    }
                    *seg.meta.write().expect("meta lock") = meta;
                    return Ok((seg, rec));
                }
                Err((pos, e)) => return Err(seg.corrupt(pos, e)),
            }
        }
        // Full scan: rebuild indexes.
        rec.rebuilt_index = !active;
        let mut meta = Meta {
            next_offset: base_offset,
            max_timestamp: -1,
            ..Meta::default()
        };
        let interval = seg.index_interval;
        // Only the active segment is known never to have been compacted.
        let check = if active {
            OffsetCheck::Dense(base_offset)
        } else {
            OffsetCheck::Increasing(base_offset)
        };
        let r = scan_batches(&seg.file, 0, file_len, check, |pos, h, _| {
            Self::note_batch(&mut meta, base_offset, interval, pos, h);
        });
        match r {
            Ok(_) => {}
            Err((pos, e)) if active && read_only => {
                // A reader beside a writer: serve what is intact before the damage.
                rec.reason = Some(format!("{e} at byte {pos}"));
            }
            Err((pos, e)) if active => {
                let damage = find_damage(
                    &seg.file,
                    pos,
                    e,
                    meta.next_offset,
                    meta.max_timestamp,
                    file_len,
                    clean,
                )?;
                if damage.repaired > 0 {
                    seg.file
                        .sync_all()
                        .ctx(|| format!("syncing {}", seg.path.display()))?;
                    // Scan again: the repaired batches now verify.
                    drop(seg);
                    let (seg, mut again) =
                        Segment::open(dir, base_offset, active, index_interval, read_only, clean)?;
                    let note = format!("repaired {} damaged base offset(s)", damage.repaired);
                    again.reason = Some(match again.reason {
                        Some(r) => format!("{note}; {r}"),
                        None => note,
                    });
                    return Ok((seg, again));
                }
                let tail = damage.ranges.last().filter(|r| r.end.is_none());
                let cut_tail = tail.filter(|_| clean.is_none());
                let quarantine: Vec<&DamagedRange> = damage
                    .ranges
                    .iter()
                    .filter(|r| r.end.is_some() || clean.is_some())
                    .collect();
                if quarantine.is_empty() {
                    let t = cut_tail.expect("damage is a range or a tail");
                    rec.truncated_bytes = file_len - t.start;
                    rec.reason = Some(format!("{} at byte {}", t.reason, t.start));
                    seg.file
                        .set_len(t.start)
                        .ctx(|| format!("truncating {}", seg.path.display()))?;
                    seg.file
                        .sync_all()
                        .ctx(|| format!("syncing {}", seg.path.display()))?;
                } else {
                    return seg.quarantine(&quarantine, cut_tail, file_len, clean, rec);
                }
            }
            Err((pos, e)) => return Err(seg.corrupt(pos, e)),
        }
        *seg.meta.write().expect("meta lock") = meta;
        if !active && !read_only {
            seg.write_indexes()?;
        }
        Ok((seg, rec))
    }

    /// Move the damaged `ranges` into `.damaged` files, rewrite the segment with an empty
    /// placeholder batch holding each range's offsets instead (and without `tail`, a torn
    /// tail to cut), and scan it again. `clean` is the next offset a clean shutdown
    /// recorded: the offsets a damaged tail held run up to it.
    fn quarantine(
        self,
        ranges: &[&DamagedRange],
        tail: Option<&DamagedRange>,
        file_len: u64,
        clean: Option<i64>,
        mut rec: SegmentRecovery,
    ) -> Result<(Segment, SegmentRecovery)> {
        let end = tail.map_or(file_len, |t| t.start);
        if let Some(t) = tail {
            rec.truncated_bytes = file_len - t.start;
            rec.reason = Some(format!("{} at byte {}", t.reason, t.start));
        }
        // (from, to) byte ranges to keep, each followed by a placeholder for offsets.
        let mut pieces: Vec<(u64, u64, Option<Vec<u8>>)> = Vec::new();
        let mut at = 0;
        for r in ranges {
            let r_end = r.end.unwrap_or(end);
            let resume = match r.end {
                Some(_) => r.resume_offset,
                None => clean.unwrap_or(r.first_offset).max(r.first_offset),
            };
            let file = self
                .dir
                .join(format!("{:020}-{}.damaged", self.base_offset, r.start));
            copy_range(&self.file, r.start, r_end, &file)?;
            let held = r.first_offset..resume;
            let placeholder = (!held.is_empty()).then(|| {
                batch::placeholder_batch(held.start, (held.end - held.start) as i32, r.timestamp)
            });
            rec.quarantined.push(Quarantined {
                position: r.start,
                bytes: r_end - r.start,
                offsets: held,
                file,
                reason: r.reason.clone(),
            });
            pieces.push((at, r.start, placeholder));
            at = r_end;
        }
        pieces.push((at, end, None));
        self.install_replacement(|out, tmp| {
            let mut pos = 0u64;
            for (from, to, placeholder) in pieces {
                let n = copy_bytes(&self.file, from, to, out, pos)
                    .ctx(|| format!("copying {} into {}", self.path.display(), tmp.display()))?;
                if n < to - from {
                    return Err(self.corrupt_read(from + n, "file shrank during recovery"));
                }
                pos += n;
                if let Some(b) = placeholder {
                    out.write_all_at(&b, pos)
                        .ctx(|| format!("writing {}", tmp.display()))?;
                    pos += b.len() as u64;
                }
            }
            Ok(())
        })?;
        let (dir, base, interval) = (self.dir.clone(), self.base_offset, self.index_interval);
        drop(self);
        let (seg, again) = Segment::open(&dir, base, true, interval, false, None)?;
        if again.truncated_bytes > 0 || !again.quarantined.is_empty() {
            return Err(Error::Corrupt {
                path: log_path(&dir, base),
                position: 0,
                reason: format!("recovery could not repair the segment: {again:?}"),
            });
        }
        Ok((seg, rec))
    }

    fn corrupt(&self, pos: u64, e: ScanError) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            position: pos,
            reason: e.to_string(),
        }
    }

    fn first_batch_timestamp_on_disk(&self) -> Result<Option<i64>> {
        let mut hdr = [0u8; HEADER_SIZE];
        let n = read_full_at(&self.file, &mut hdr, 0)
            .ctx(|| format!("reading {}", self.path.display()))?;
        if n < HEADER_SIZE {
            return Ok(None);
        }
        Ok(BatchHeader::parse(&hdr).ok().map(|h| h.max_timestamp))
    }

    fn note_batch(meta: &mut Meta, base: i64, interval: u64, pos: u64, h: &BatchHeader) {
        let size = h.total_size() as u64;
        if meta.first_batch_timestamp.is_none() {
            meta.first_batch_timestamp = Some(h.max_timestamp);
        }
        if meta.bytes_since_index >= interval {
            let rel = (h.base_offset - base) as u32;
            meta.index.push(IndexEntry {
                rel_offset: rel,
                position: pos as u32,
            });
            // Time entries hold the max timestamp of everything up to and including the
            // batch they point at, so every batch before an entry is older than it.
            let so_far = meta.max_timestamp.max(h.max_timestamp);
            if so_far > meta.time_index.last().map(|e| e.timestamp).unwrap_or(-1) {
                meta.time_index.push(TimeEntry {
                    timestamp: so_far,
                    rel_offset: rel,
                    position: pos as u32,
                });
            }
            meta.bytes_since_index = 0;
        }
        meta.bytes_since_index += size;
        meta.size = pos + size;
        meta.next_offset = h.next_offset();
        meta.max_timestamp = meta.max_timestamp.max(h.max_timestamp);
    }

    /// Load index files if they are present and plausible for a file of `file_len` bytes.
    fn load_indexes(&self, file_len: u64) -> Option<(Vec<IndexEntry>, Vec<TimeEntry>)> {
        let idx = fs::read(index_path(&self.dir, self.base_offset)).ok()?;
        let tidx = fs::read(time_index_path(&self.dir, self.base_offset)).ok()?;
        if idx.len() % INDEX_ENTRY != 0 || tidx.len() % TIME_ENTRY != 0 {
            return None;
        }
        let index: Vec<IndexEntry> = idx
            .chunks_exact(INDEX_ENTRY)
            .map(|c| IndexEntry {
                rel_offset: u32::from_be_bytes(c[0..4].try_into().expect("4")),
                position: u32::from_be_bytes(c[4..8].try_into().expect("4")),
            })
            .collect();
        let time_index: Vec<TimeEntry> = tidx
            .chunks_exact(TIME_ENTRY)
            .map(|c| TimeEntry {
                timestamp: i64::from_be_bytes(c[0..8].try_into().expect("8")),
                rel_offset: u32::from_be_bytes(c[8..12].try_into().expect("4")),
                position: u32::from_be_bytes(c[12..16].try_into().expect("4")),
            })
            .collect();
        let increasing = index
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position);
        let t_increasing = time_index
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp && w[0].position <= w[1].position);
        if !increasing || !t_increasing {
            return None;
        }
        if index.iter().any(|e| e.position as u64 >= file_len)
            || time_index
                .iter()
                .any(|e| e.position as u64 >= file_len.max(1))
        {
            return None;
        }
        // Every entry must point at a batch header with the offset it claims.
        for (rel, pos) in index
            .iter()
            .map(|e| (e.rel_offset, e.position))
            .chain(time_index.iter().map(|e| (e.rel_offset, e.position)))
        {
            let mut hdr = [0u8; HEADER_SIZE];
            match read_full_at(&self.file, &mut hdr, pos as u64) {
                Ok(HEADER_SIZE) => {}
                _ => return None,
            }
            match BatchHeader::parse(&hdr) {
                Ok(h) if h.base_offset == self.base_offset + rel as i64 => {}
                _ => return None,
            }
        }
        Some((index, time_index))
    }

    /// Write both index files (atomically via rename) and sync them.
    pub(crate) fn write_indexes(&self) -> Result<()> {
        let meta = self.meta.read().expect("meta lock");
        let mut idx = Vec::with_capacity(meta.index.len() * INDEX_ENTRY);
        for e in &meta.index {
            idx.extend_from_slice(&e.rel_offset.to_be_bytes());
            idx.extend_from_slice(&e.position.to_be_bytes());
        }
        let mut tidx = Vec::with_capacity((meta.time_index.len() + 1) * TIME_ENTRY);
        for e in &meta.time_index {
            tidx.extend_from_slice(&e.timestamp.to_be_bytes());
            tidx.extend_from_slice(&e.rel_offset.to_be_bytes());
            tidx.extend_from_slice(&e.position.to_be_bytes());
        }
        drop(meta);
        write_file_atomic(&index_path(&self.dir, self.base_offset), &idx)?;
        write_file_atomic(&time_index_path(&self.dir, self.base_offset), &tidx)?;
        Ok(())
    }

    /// Append already-validated batches (offsets assigned) at the end of the file. On a
    /// failed write the file is cut back so no partial batch stays behind.
    pub(crate) fn append(&self, bytes: &[u8], batches: &[(usize, BatchHeader)]) -> Result<()> {
        let start = self.meta.read().expect("meta lock").size;
        if let Err(e) = self.file.write_all_at(bytes, start) {
            let _ = self.file.set_len(start);
            return Err(Error::io(format!("writing {}", self.path.display()), e));
        }
        let mut meta = self.meta.write().expect("meta lock");
        for (rel, h) in batches {
            Self::note_batch(
                &mut meta,
                self.base_offset,
                self.index_interval,
                start + *rel as u64,
                h,
            );
        }
        Ok(())
    }

    /// Force written bytes to stable storage.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("fdatasync {}", self.path.display()))
    }

    /// Called when the segment stops being active: record the final max timestamp in the
    /// time index and persist both indexes.
    pub(crate) fn seal(&self) -> Result<()> {
        {
            let mut meta = self.meta.write().expect("meta lock");
            let last_ts = meta.time_index.last().map(|e| e.timestamp).unwrap_or(-1);
            if meta.max_timestamp > last_ts && meta.size > 0 {
                // Point the final entry at the last indexed position (or the start), which
                // is at or before the batch holding the max timestamp.
                let (rel, pos) = meta
                    .index
                    .last()
                    .map(|e| (e.rel_offset, e.position))
                    .unwrap_or((0, 0));
                let ts = meta.max_timestamp;
                if meta.time_index.last().is_none_or(|e| e.position <= pos) {
                    meta.time_index.push(TimeEntry {
                        timestamp: ts,
                        rel_offset: rel,
                        position: pos,
                    });
                }
            }
        }
        self.write_indexes()
    }

    pub(crate) fn size(&self) -> u64 {
        self.meta.read().expect("meta lock").size
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.meta.read().expect("meta lock").next_offset
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.meta.read().expect("meta lock").max_timestamp
    }
    pub(crate) fn first_batch_timestamp(&self) -> Option<i64> {
        self.meta.read().expect("meta lock").first_batch_timestamp
    }
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Read-only mode: pick up batches another process appended since the last look.
    /// Stops quietly at anything incomplete (the writer may be mid-write).
    pub(crate) fn refresh_tail(&self) -> Result<()> {
        let file_len = self
            .file
            .metadata()
            .ctx(|| format!("stat {}", self.path.display()))?
            .len();
        let mut meta = self.meta.write().expect("meta lock");
        if file_len <= meta.size {
            return Ok(());
        }
        let (base, interval) = (self.base_offset, self.index_interval);
        let start = meta.size;
        let expect = meta.next_offset;
        let _ = scan_batches(
            &self.file,
            start,
            file_len,
            OffsetCheck::Increasing(expect),
            |pos, h, _| {
                Self::note_batch(&mut meta, base, interval, pos, h);
            },
        );
        Ok(())
    }

    /// Position of the batch to start scanning at for `offset`.
    fn lookup(&self, offset: i64) -> u64 {
        let meta = self.meta.read().expect("meta lock");
        let rel = (offset - self.base_offset).max(0);
        let i = meta.index.partition_point(|e| e.rel_offset as i64 <= rel);
        if i == 0 {
            0
        } else {
            meta.index[i - 1].position as u64
        }
    }

    /// Whole batches holding `offset` and after, up to `max_bytes` (at least one batch),
    /// never including a batch at or past `limit_offset`. Every batch is CRC-checked.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        limit_offset: i64,
    ) -> Result<SegmentRead> {
        let end = self.size();
        let mut pos = self.lookup(offset);
        let mut out = SegmentRead {
            bytes: Vec::new(),
            next_offset: offset,
        };
        let mut hdr = [0u8; HEADER_SIZE];
        let mut min_base = self.base_offset;
        while pos < end {
            let n = read_full_at(&self.file, &mut hdr, pos)
                .ctx(|| format!("reading {}", self.path.display()))?;
            if n < HEADER_SIZE {
                return Err(self.corrupt_read(pos, "truncated batch header"));
            }
            let h = BatchHeader::parse(&hdr).map_err(|e| self.corrupt_read(pos, &e.to_string()))?;
            let total = h.total_size();
            if pos + total as u64 > end {
                return Err(self.corrupt_read(pos, "batch runs past the verified end"));
            }
            if h.base_offset < min_base || h.last_offset_delta < 0 {
                return Err(self.corrupt_read(
                    pos,
                    &format!("batch base offset {} below {min_base}", h.base_offset),
                ));
            }
            min_base = h.next_offset();
            if h.last_offset() < offset {
                pos += total as u64;
                continue;
            }
            if h.base_offset >= limit_offset {
                break;
            }
            if !out.bytes.is_empty() && out.bytes.len() + total > max_bytes {
                break;
            }
            let at = out.bytes.len();
            out.bytes.resize(at + total, 0);
            let n = read_full_at(&self.file, &mut out.bytes[at..], pos)
                .ctx(|| format!("reading {}", self.path.display()))?;
            if n < total {
                return Err(self.corrupt_read(pos, "batch shorter than its length"));
            }
            batch::verify_crc(&out.bytes[at..])
                .map_err(|e| self.corrupt_read(pos, &e.to_string()))?;
            out.next_offset = h.next_offset();
            pos += total as u64;
            if out.bytes.len() >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn corrupt_read(&self, pos: u64, reason: &str) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            position: pos,
            reason: reason.to_string(),
        }
    }

    /// First `(offset, timestamp)` whose timestamp is >= `ts`, if this segment has one.
    pub(crate) fn offset_for_timestamp(
        &self,
        ts: i64,
        limit_offset: i64,
    ) -> Result<Option<(i64, i64)>> {
        let (start, end, max_ts) = {
            let meta = self.meta.read().expect("meta lock");
            let i = meta.time_index.partition_point(|e| e.timestamp < ts);
            let start = if i == 0 {
                0
            } else {
                meta.time_index[i - 1].position as u64
            };
            (start, meta.size, meta.max_timestamp)
        };
        if max_ts < ts {
            return Ok(None);
        }
        let mut found: Option<Vec<u8>> = None;
        let r = scan_batches(&self.file, start, end, OffsetCheck::None, |_, h, bytes| {
            if found.is_none() && h.max_timestamp >= ts && h.base_offset < limit_offset {
                found = Some(bytes.to_vec());
            }
        });
        if let Err((pos, e)) = r {
            return Err(self.corrupt(pos, e));
        }
        let Some(bytes) = found else { return Ok(None) };
        let h = BatchHeader::parse(&bytes).map_err(|e| self.corrupt_read(0, &e.to_string()))?;
        if h.timestamp_type() == TimestampType::LogAppendTime {
            return Ok(Some((h.base_offset, h.max_timestamp)));
        }
        // Records are walked, not decoded: only offsets and timestamps are needed.
        let corrupt = |e: batch::BatchError| self.corrupt_read(0, &e.to_string());
        let (data, _reserved) = crate::decode_budget::stored_records(&bytes).map_err(corrupt)?;
        let mut hit = None;
        batch::walk_records(&h, &data, |r| {
            let (offset, t) = r.position_in(&h);
            if hit.is_none() && t >= ts {
                hit = Some((offset, t));
            }
            Ok(())
        })
        .map_err(corrupt)?;
        Ok(hit)
    }

    /// Every batch of the segment, CRC-verified, in order (used by compaction).
    pub(crate) fn for_each_batch(&self, mut f: impl FnMut(&BatchHeader, &[u8])) -> Result<()> {
        let end = self.size();
        scan_batches(
            &self.file,
            0,
            end,
            OffsetCheck::Increasing(self.base_offset),
            |_, h, b| f(h, b),
        )
        .map_err(|(pos, e)| self.corrupt(pos, e))?;
        Ok(())
    }

    /// Every batch header in order, reading only the 61 header bytes of each batch.
    pub(crate) fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let end = self.size();
        let mut pos = 0u64;
        let mut hdr = [0u8; HEADER_SIZE];
        while pos < end {
            let n = read_full_at(&self.file, &mut hdr, pos)
                .ctx(|| format!("reading {}", self.path.display()))?;
            if n < HEADER_SIZE {
                return Err(self.corrupt_read(pos, "truncated batch header"));
            }
            let h = BatchHeader::parse(&hdr).map_err(|e| self.corrupt_read(pos, &e.to_string()))?;
            f(&h);
            pos += h.total_size() as u64;
        }
        Ok(())
    }

    /// Delete the segment's files.
    pub(crate) fn delete_files(&self) -> Result<()> {
        for p in [
            self.path.clone(),
            index_path(&self.dir, self.base_offset),
            time_index_path(&self.dir, self.base_offset),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("deleting {}", p.display()), e)),
            }
        }
        Ok(())
    }

    /// Replace this segment's file with what `write` puts into a new file beside it
    /// (`.cleaned`): synced, the old indexes removed (so a crash never pairs them with the
    /// new file), renamed over the original, directory synced. The caller reopens it.
    fn install_replacement(&self, write: impl FnOnce(&File, &Path) -> Result<()>) -> Result<()> {
        let tmp = self.path.with_extension("log.cleaned");
        let _ = fs::remove_file(&tmp);
        {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .ctx(|| format!("creating {}", tmp.display()))?;
            write(&f, &tmp)?;
            f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
        }
        for p in [
            index_path(&self.dir, self.base_offset),
            time_index_path(&self.dir, self.base_offset),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("deleting {}", p.display()), e)),
            }
        }
        fs::rename(&tmp, &self.path).ctx(|| format!("renaming {}", tmp.display()))?;
        sync_dir(&self.dir)
    }

    /// Build a replacement segment from `batches` (compaction output): written beside the
    /// original as `.cleaned`, synced, then renamed over it. Returns the new segment.
    pub(crate) fn replace_with(&self, batches: &[Vec<u8>]) -> Result<Segment> {
        self.install_replacement(|f, tmp| {
            let mut pos = 0u64;
            for b in batches {
                f.write_all_at(b, pos)
                    .ctx(|| format!("writing {}", tmp.display()))?;
                pos += b.len() as u64;
            }
            Ok(())
        })?;
        let (seg, _) = Segment::open(
            &self.dir,
            self.base_offset,
            false,
            self.index_interval,
            false,
            None,
        )?;
        Ok(seg)
    }
}

/// fsync a directory so entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// Write a small file atomically ([`crate::write_atomic`]) with the log's error type.
pub(crate) fn write_file_atomic(path: &Path, data: &[u8]) -> Result<()> {
    crate::atomic_file::write_atomic(path, data).ctx(|| format!("replacing {}", path.display()))
}

/// A damaged range of the active segment: from `start` to where intact, densely numbered
/// batches resume (`end`), or to the end of the file (`None`).
#[derive(Debug)]
struct DamagedRange {
    start: u64,
    end: Option<u64>,
    /// The offset the damaged range starts at.
    first_offset: i64,
    /// The base offset of the batch at `end`.
    resume_offset: i64,
    /// Max timestamp of the last intact batch before the damage (for the placeholder).
    timestamp: i64,
    reason: String,
}

/// The damaged ranges found from a first bad position, in file order; a last one that runs
/// to the end of the file (`end == None`) is a tail. `repaired` counts base offsets fixed
/// in place (the caller scans again).
#[derive(Debug)]
struct Damage {
    ranges: Vec<DamagedRange>,
    repaired: usize,
}

/// From the first bad byte at `pos` (where a batch holding `expected` should start, after
/// a batch with max timestamp `timestamp`), find every damaged range and where intact,
/// densely numbered batches resume after it. A CRC-valid batch at a bad position has a
/// damaged base offset: it is repaired in place when the next batch (or, for the last
/// batch, the clean shutdown's recorded end) proves the right value.
fn find_damage(
    file: &File,
    mut pos: u64,
    mut err: ScanError,
    mut expected: i64,
    mut timestamp: i64,
    file_len: u64,
    clean: Option<i64>,
) -> Result<Damage> {
    let io = |e| Error::io("scanning for intact batches after damage", e);
    let mut ranges = Vec::new();
    let mut repaired = 0;
    loop {
        let mut found = None;
        if let Some(h) = intact_batch_at(file, pos, file_len).map_err(io)?
            && h.base_offset != expected
        {
            let count = h.last_offset_delta as i64 + 1;
            let end = pos + h.total_size() as u64;
            let proven = match header_at(file, end, file_len).map_err(io)? {
                Some(next) => next.base_offset == expected + count,
                None => end == file_len && clean == Some(expected + count),
            };
            if proven {
                file.write_all_at(&expected.to_be_bytes(), pos)
                    .map_err(|e| Error::io("repairing a damaged base offset", e))?;
                repaired += 1;
                found = Some((pos, expected));
            }
        }
        if found.is_none() {
            found = find_resync(file, pos, expected, file_len).map_err(io)?;
        }
        let reason = err.to_string();
        let Some((q, base)) = found else {
            ranges.push(DamagedRange {
                start: pos,
                end: None,
                first_offset: expected,
                resume_offset: expected,
                timestamp,
                reason,
            });
            return Ok(Damage { ranges, repaired });
        };
        if q != pos {
            ranges.push(DamagedRange {
                start: pos,
                end: Some(q),
                first_offset: expected,
                resume_offset: base,
                timestamp,
                reason,
            });
        }
        let mut next = base;
        let r = scan_batches(file, q, file_len, OffsetCheck::Dense(base), |_, h, _| {
            next = h.next_offset();
            timestamp = timestamp.max(h.max_timestamp);
        });
        match r {
            Ok(_) => return Ok(Damage { ranges, repaired }),
            Err((p, e)) => {
                pos = p;
                err = e;
                expected = next;
            }
        }
    }
}

/// The header at `pos` if a whole batch with a valid CRC is there.
fn intact_batch_at(file: &File, pos: u64, file_len: u64) -> std::io::Result<Option<BatchHeader>> {
    let Some(h) = header_at(file, pos, file_len)? else {
        return Ok(None);
    };
    let total = h.total_size() as u64;
    if pos + total > file_len || !crc_matches(file, pos, total, h.crc)? {
        return Ok(None);
    }
    Ok(Some(h))
}

/// The parsed batch header at `pos`, if one is there.
fn header_at(file: &File, pos: u64, file_len: u64) -> std::io::Result<Option<BatchHeader>> {
    if pos + HEADER_SIZE as u64 > file_len {
        return Ok(None);
    }
    let mut hdr = [0u8; HEADER_SIZE];
    if read_full_at(file, &mut hdr, pos)? < HEADER_SIZE {
        return Ok(None);
    }
    Ok(BatchHeader::parse(&hdr).ok())
}

/// The first position after `from` where a whole, CRC-valid batch starts whose base offset
/// is plausible for a batch following damage that began at offset `expected` (at least
/// `expected`, and at most one offset per damaged byte beyond it). Reads the file in
/// chunks; memory is bounded by the chunk and the largest batch the file holds.
fn find_resync(
    file: &File,
    from: u64,
    expected: i64,
    file_len: u64,
) -> std::io::Result<Option<(u64, i64)>> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK + HEADER_SIZE];
    let mut chunk_start = from + 1;
    while chunk_start + HEADER_SIZE as u64 <= file_len {
        let want = ((file_len - chunk_start) as usize).min(buf.len());
        let got = read_full_at(file, &mut buf[..want], chunk_start)?;
        let scan_to = got.saturating_sub(HEADER_SIZE - 1).min(CHUNK);
        for i in 0..scan_to {
            if buf[i + 16] != 2 {
                continue;
            }
            let Ok(h) = BatchHeader::parse(&buf[i..i + HEADER_SIZE]) else {
                continue;
            };
            let p = chunk_start + i as u64;
            let total = h.total_size() as u64;
            if h.base_offset < expected
                || h.last_offset_delta < 0
                || (h.base_offset - expected) as u64 > p - from
                || p + total > file_len
            {
                continue;
            }
            if crc_matches(file, p, total, h.crc)? {
                return Ok(Some((p, h.base_offset)));
            }
        }
        chunk_start += CHUNK as u64;
    }
    Ok(None)
}

/// Whether the CRC-32C of the batch at `pos` (`total` bytes) is `crc`, computed in pieces
/// so a damaged length claim costs no memory.
fn crc_matches(file: &File, pos: u64, total: u64, crc: u32) -> std::io::Result<bool> {
    let mut buf = vec![0u8; (1usize << 20).min(total as usize)];
    let mut p = pos + batch::ATTRIBUTES_OFFSET as u64;
    let end = pos + total;
    let mut sum = 0u32;
    while p < end {
        let n = ((end - p) as usize).min(buf.len());
        if read_full_at(file, &mut buf[..n], p)? < n {
            return Ok(false);
        }
        sum = crc32c::crc32c_append(sum, &buf[..n]);
        p += n as u64;
    }
    Ok(sum == crc)
}

/// Copy `[from, to)` of `src` into a new file at `dest`, synced.
fn copy_range(src: &File, from: u64, to: u64, dest: &Path) -> Result<()> {
    let out = File::create(dest).ctx(|| format!("creating {}", dest.display()))?;
    copy_bytes(src, from, to, &out, 0).ctx(|| format!("writing {}", dest.display()))?;
    out.sync_all().ctx(|| format!("syncing {}", dest.display()))
}

/// Copy `[from, to)` of `src` to `out` at position `at` in 1 MiB pieces, stopping early at
/// the end of `src`. Returns the bytes copied.
fn copy_bytes(src: &File, from: u64, to: u64, out: &File, at: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; (1usize << 20).min(to.saturating_sub(from) as usize)];
    let mut p = from;
    while p < to {
        let n = ((to - p) as usize).min(buf.len());
        let got = read_full_at(src, &mut buf[..n], p)?;
        if got == 0 {
            break;
        }
        out.write_all_at(&buf[..got], at + (p - from))?;
        p += got as u64;
    }
    Ok(p - from)
}
