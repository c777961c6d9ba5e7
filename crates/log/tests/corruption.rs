//! Damaged files: a torn tail is cut off at open after a crash; damage followed by intact
//! batches, or any damage after a clean shutdown, is quarantined (the intact batches and
//! every offset kept); damage inside a closed segment is an error naming the file and
//! position; missing or bad indexes are rebuilt.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_log::{BatchBuilder, Error, Log, LogOptions, ManualClock, decode_records, frames};

fn opts() -> LogOptions {
    LogOptions {
        clock: Arc::new(ManualClock::new(0)),
        background: false,
        ..LogOptions::default()
    }
}

/// A topic "t" with one partition of several segments of 10-record batches; returns the
/// sorted segment paths and the batch size.
fn fill(dir: &Path, batches: i64) -> (Vec<PathBuf>, usize) {
    let log = Log::open(dir, opts()).unwrap();
    let mut c = BTreeMap::new();
    c.insert("segment.bytes".to_string(), "2000".to_string());
    c.insert("index.interval.bytes".to_string(), "200".to_string());
    log.create_topic("t", 1, c).unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut size = 0;
    for i in 0..batches {
        let mut b = BatchBuilder::new();
        for j in 0..10 {
            b.push(
                i * 10 + j,
                Some(b"key"),
                Some(format!("value-{i:04}-{j}").as_bytes()),
                &[],
            );
        }
        let mut bytes = b.build().unwrap();
        size = bytes.len();
        p.append(&mut bytes).unwrap();
    }
    log.close().unwrap();
    (segments(dir), size)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("topics/t/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn count_all(log: &Log) -> Result<i64, Error> {
    let p = log.partition("t", 0)?;
    let mut off = p.log_start_offset();
    let mut n = 0;
    loop {
        let r = p.read(off, 1 << 16)?;
        if r.bytes.is_empty() {
            return Ok(n);
        }
        n += r.next_offset - off;
        off = r.next_offset;
    }
}

/// Records (not offsets) readable from the start.
fn records_all(log: &Log) -> Vec<(i64, Vec<u8>)> {
    let p = log.partition("t", 0).unwrap();
    let mut off = p.log_start_offset();
    let mut out = Vec::new();
    loop {
        let r = p.read(off, 1 << 16).unwrap();
        if r.bytes.is_empty() {
            return out;
        }
        for f in frames(&r.bytes) {
            let (pos, h) = f.unwrap();
            for rec in decode_records(&r.bytes[pos..pos + h.total_size()]).unwrap() {
                if rec.offset >= off {
                    out.push((rec.offset, rec.value.unwrap()));
                }
            }
        }
        off = r.next_offset;
    }
}

/// Forget that the last shutdown was clean, as if the process had been killed.
fn as_after_crash(dir: &Path) {
    fs::remove_file(dir.join("topics/t/0/clean-shutdown")).unwrap();
}

fn append_one(log: &Log) -> i64 {
    let p = log.partition("t", 0).unwrap();
    let mut b = BatchBuilder::new();
    b.push(0, Some(b"k"), Some(b"v"), &[]);
    p.append(&mut b.build().unwrap()).unwrap().base_offset
}

fn flip(path: &Path, pos: u64) {
    let mut data = fs::read(path).unwrap();
    data[pos as usize] ^= 0x5a;
    fs::write(path, data).unwrap();
}

#[test]
fn flipped_byte_in_closed_segment_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, size) = fill(dir.path(), 40);
    assert!(segs.len() >= 3);
    // Damage the value bytes of the second batch of the first (closed) segment.
    let pos = size as u64 + 100;
    flip(&segs[0], pos);
    let err = match Log::open(dir.path(), opts()) {
        Err(e) => e,
        Ok(log) => count_all(&log).unwrap_err(),
    };
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
    assert!(msg.contains(&segs[0].display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("at byte {size}")),
        "names the batch position: {msg}"
    );
    // Reads before the damage still work; verify() reports it too.
    let log = Log::open(dir.path(), opts()).unwrap();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.read(0, 10).unwrap().next_offset, 10);
    assert!(matches!(p.verify(), Err(Error::Corrupt { .. })));
}

#[test]
fn damage_near_the_end_of_a_closed_segment_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, _) = fill(dir.path(), 40);
    let len = fs::metadata(&segs[0]).unwrap().len();
    flip(&segs[0], len - 3);
    let err = Log::open(dir.path(), opts()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&segs[0].display().to_string()));
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, size) = fill(dir.path(), 40);
    let last = segs.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    // Cut the last batch in half, as a crash during write() would.
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - size as u64 / 2)
        .unwrap();
    as_after_crash(dir.path());
    let log = Log::open(dir.path(), opts()).unwrap();
    let notes = log.recovery_notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].segment.truncated_bytes, (size - size / 2) as u64);
    assert_eq!(count_all(&log).unwrap(), 390);
    let p = log.partition("t", 0).unwrap();
    let mut b = BatchBuilder::new();
    b.push(0, Some(b"k"), Some(b"v"), &[]);
    assert_eq!(p.append(&mut b.build().unwrap()).unwrap().base_offset, 390);
}

#[test]
fn garbage_and_bad_offsets_at_the_tail_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, size) = fill(dir.path(), 40);
    let last = segs.last().unwrap().clone();
    // A damaged base offset (outside the CRC) in the last batch is caught by density.
    let len = fs::metadata(&last).unwrap().len();
    flip(&last, len - size as u64 + 3);
    as_after_crash(dir.path());
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(count_all(&log).unwrap(), 390);
    drop(log);
    // Random garbage after the data.
    let mut data = fs::read(&last).unwrap();
    data.extend_from_slice(&[7u8; 500]);
    fs::write(&last, data).unwrap();
    as_after_crash(dir.path());
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.recovery_notes()[0].segment.truncated_bytes, 500);
    assert_eq!(count_all(&log).unwrap(), 390);
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, _) = fill(dir.path(), 40);
    let idx0 = segs[0].with_extension("index");
    let tidx1 = segs[1].with_extension("timeindex");
    let idx1 = segs[1].with_extension("index");
    assert!(idx0.exists() && tidx1.exists());
    let expected_ts = {
        let log = Log::open(dir.path(), opts()).unwrap();
        log.partition("t", 0)
            .unwrap()
            .offset_for_timestamp(123)
            .unwrap()
    };
    assert_eq!(expected_ts, Some((123, 123)));
    fs::remove_file(&idx0).unwrap();
    fs::write(&tidx1, b"not an index at all!").unwrap();
    // Plausible-looking but wrong: entries pointing into the middle of batches.
    let mut bogus = Vec::new();
    for i in 0..3u32 {
        bogus.extend_from_slice(&(i * 3).to_be_bytes());
        bogus.extend_from_slice(&(i * 77 + 5).to_be_bytes());
    }
    let idx2 = segs[2].with_extension("index");
    fs::write(&idx2, &bogus).unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let rebuilt: Vec<_> = log
        .recovery_notes()
        .iter()
        .filter(|n| n.segment.rebuilt_index)
        .collect();
    assert_eq!(rebuilt.len(), 3, "{:?}", log.recovery_notes());
    assert_eq!(count_all(&log).unwrap(), 400);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.offset_for_timestamp(123).unwrap(), expected_ts);
    assert!(
        idx0.exists() && idx1.exists(),
        "rebuilt indexes are written back"
    );
}

/// Offsets and values `fill` wrote, minus the batches listed.
fn expected_records(batches: i64, lost: &[i64]) -> Vec<(i64, Vec<u8>)> {
    (0..batches)
        .filter(|i| !lost.contains(i))
        .flat_map(|i| (0..10).map(move |j| (i * 10 + j, format!("value-{i:04}-{j}").into_bytes())))
        .collect()
}

/// Byte position of each batch in a segment file.
fn batch_positions(path: &Path) -> Vec<(usize, i64)> {
    let data = fs::read(path).unwrap();
    frames(&data)
        .map(|f| f.unwrap())
        .map(|(p, h)| (p, h.base_offset))
        .collect()
}

#[test]
fn flipped_byte_in_the_middle_of_the_active_segment_keeps_every_intact_batch() {
    for crashed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (segs, _) = fill(dir.path(), 40);
        let last = segs.last().unwrap();
        let batches = batch_positions(last);
        assert!(
            batches.len() >= 4,
            "the active segment holds several batches"
        );
        // Damage a value byte of the second batch: intact batches follow it.
        let (pos, base) = batches[1];
        flip(last, pos as u64 + 80);
        if crashed {
            as_after_crash(dir.path());
        }
        let log = Log::open(dir.path(), opts()).unwrap();
        let p = log.partition("t", 0).unwrap();
        assert_eq!(
            p.high_watermark(),
            400,
            "no acknowledged offset is taken back"
        );
        let notes = log.recovery_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].segment.truncated_bytes, 0, "nothing is cut");
        let q = &notes[0].segment.quarantined;
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].offsets, base..base + 10);
        assert_eq!(q[0].position, pos as u64);
        assert!(
            q[0].file.exists(),
            "the damaged bytes are kept for inspection"
        );
        assert!(q[0].reason.contains("CRC"), "{}", q[0].reason);
        let lost = base / 10;
        assert_eq!(records_all(&log), expected_records(40, &[lost]));
        // A read at a quarantined offset moves on to the next intact batch.
        assert!(p.read(base + 3, 1 << 16).unwrap().next_offset > base + 10);
        assert_eq!(append_one(&log), 400, "offsets are never handed out twice");
        drop(log);
        // The repaired segment opens cleanly, after a crash too.
        as_after_crash(dir.path());
        let log = Log::open(dir.path(), opts()).unwrap();
        assert!(
            log.recovery_notes().is_empty(),
            "{:?}",
            log.recovery_notes()
        );
        assert_eq!(records_all(&log).len(), 391);
    }
}

#[test]
fn after_a_clean_shutdown_nothing_is_cut() {
    // A damaged last batch and a torn half batch: after a clean shutdown neither is a torn
    // write, so both are quarantined and their offsets kept.
    for torn in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (segs, size) = fill(dir.path(), 40);
        let last = segs.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        if torn {
            OpenOptions::new()
                .write(true)
                .open(last)
                .unwrap()
                .set_len(len - size as u64 / 2)
                .unwrap();
        } else {
            flip(last, len - 5);
        }
        let log = Log::open(dir.path(), opts()).unwrap();
        let notes = log.recovery_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].segment.quarantined.len(), 1, "{notes:?}");
        assert_eq!(notes[0].segment.quarantined[0].offsets, 390..400);
        assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 400);
        assert_eq!(records_all(&log), expected_records(40, &[39]));
        assert_eq!(append_one(&log), 400);
    }
}

#[test]
fn a_damaged_base_offset_in_the_middle_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, _) = fill(dir.path(), 40);
    let last = segs.last().unwrap();
    let (pos, _) = batch_positions(last)[1];
    // The base offset is outside the CRC; the next batch proves its right value.
    flip(last, pos as u64 + 6);
    as_after_crash(dir.path());
    let log = Log::open(dir.path(), opts()).unwrap();
    let notes = log.recovery_notes();
    assert!(
        notes
            .iter()
            .all(|n| n.segment.quarantined.is_empty() && n.segment.truncated_bytes == 0),
        "{notes:?}"
    );
    assert_eq!(records_all(&log), expected_records(40, &[]));
    assert_eq!(append_one(&log), 400);
}

#[test]
fn damage_in_several_places_keeps_everything_between() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, _) = fill(dir.path(), 40);
    let last = segs.last().unwrap();
    let batches = batch_positions(last);
    let n = batches.len();
    assert!(n >= 5);
    flip(last, batches[1].0 as u64 + 70);
    flip(last, batches[n - 2].0 as u64 + 70);
    as_after_crash(dir.path());
    let log = Log::open(dir.path(), opts()).unwrap();
    let q = &log.recovery_notes()[0].segment.quarantined;
    assert_eq!(q.len(), 2, "{q:?}");
    let lost = [batches[1].1 / 10, batches[n - 2].1 / 10];
    assert_eq!(records_all(&log), expected_records(40, &lost));
    assert_eq!(append_one(&log), 400);
}
