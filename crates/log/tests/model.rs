//! Model-based property test of the storage engine: random sequences of append, flush,
//! roll, crash (drop an unsynced tail, cut the file anywhere, flip a byte in the last
//! batch), reopen, read and retention, checked after every step against a simple
//! in-memory model. Invariants: every synced record survives a crash that only loses
//! unsynced bytes; recovery keeps exactly the whole batches before the damage; offsets
//! stay dense and monotonic; nothing unverified is ever served.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use sluice_log::{BatchBuilder, Log, LogOptions, ManualClock, decode_records, frames};

const SEGMENT_BYTES: u64 = 1500;

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, value_len: usize },
    Flush,
    Roll,
    CrashDropUnsynced { frac: f64 },
    CrashCut { frac: f64 },
    CrashFlip { frac: f64 },
    Reopen,
    Read { frac: f64, max_bytes: usize },
    Retain { bytes: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..300).prop_map(|(records, value_len)| Op::Append { records, value_len }),
        2 => Just(Op::Flush),
        1 => Just(Op::Roll),
        2 => (0.0f64..1.0).prop_map(|frac| Op::CrashDropUnsynced { frac }),
        1 => (0.0f64..1.0).prop_map(|frac| Op::CrashCut { frac }),
        1 => (0.0f64..1.0).prop_map(|frac| Op::CrashFlip { frac }),
        1 => Just(Op::Reopen),
        2 => (0.0f64..1.0, 1usize..4000).prop_map(|(frac, max_bytes)| Op::Read { frac, max_bytes }),
        1 => (0u64..5000).prop_map(|bytes| Op::Retain { bytes }),
    ]
}

#[derive(Debug, Clone)]
struct MBatch {
    base: i64,
    len: u64,
    values: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct MSeg {
    base: i64,
    batches: Vec<MBatch>,
}

impl MSeg {
    fn size(&self) -> u64 {
        self.batches.iter().map(|b| b.len).sum()
    }
}

#[derive(Debug)]
struct Model {
    segs: Vec<MSeg>,
    next: i64,
    durable: i64,
    log_start: i64,
}

fn configs(retention_bytes: i64) -> BTreeMap<String, String> {
    [
        ("segment.bytes", SEGMENT_BYTES.to_string()),
        ("index.interval.bytes", "256".to_string()),
        ("fsync", "never".to_string()),
        ("retention.ms", "-1".to_string()),
        ("retention.bytes", retention_bytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn open(dir: &Path) -> Log {
    Log::open(
        dir,
        LogOptions {
            clock: Arc::new(ManualClock::new(1_000)),
            background: false,
            ..LogOptions::default()
        },
    )
    .unwrap()
}

fn seg_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("topics/t/0/{base:020}.log"))
}

fn value_for(offset: i64, len: usize) -> Vec<u8> {
    let mut v = format!("{offset}:").into_bytes();
    v.resize(v.len() + len, b'a' + (offset % 26) as u8);
    v
}

/// Keep only the active segment's batches that end at or before byte `cut`.
fn cut_active(model: &mut Model, cut: u64) {
    let active = model.segs.last_mut().unwrap();
    let mut end = 0;
    active.batches.retain(|b| {
        end += b.len;
        end <= cut
    });
    model.next = active
        .batches
        .last()
        .map(|b| b.base + b.values.len() as i64)
        .unwrap_or(active.base);
    model.durable = model.next;
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    let p = log.partition("t", 0).unwrap();
    prop_assert_eq!(p.high_watermark(), model.next);
    prop_assert_eq!(p.log_end_offset(), model.next);
    prop_assert_eq!(p.log_start_offset(), model.log_start);
    prop_assert_eq!(p.durable_offset(), model.durable);
    prop_assert_eq!(p.summary().segments, model.segs.len());
    let expected: Vec<(i64, Vec<u8>)> = model
        .segs
        .iter()
        .flat_map(|s| s.batches.iter())
        .flat_map(|b| {
            b.values
                .iter()
                .enumerate()
                .map(move |(i, v)| (b.base + i as i64, v.clone()))
        })
        .filter(|(o, _)| *o >= model.log_start)
        .collect();
    let mut got = Vec::new();
    let mut off = model.log_start;
    loop {
        let r = p.read(off, 2000).unwrap();
        if r.bytes.is_empty() {
            break;
        }
        for f in frames(&r.bytes) {
            let (pos, h) = f.unwrap();
            for rec in decode_records(&r.bytes[pos..pos + h.total_size()]).unwrap() {
                if rec.offset >= off {
                    got.push((rec.offset, rec.value.unwrap()));
                }
            }
        }
        prop_assert!(r.next_offset > off, "reads make progress");
        off = r.next_offset;
    }
    prop_assert_eq!(got, expected);
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut log = open(root);
    log.create_topic("t", 1, configs(-1)).unwrap();
    let mut model = Model {
        segs: vec![MSeg {
            base: 0,
            batches: vec![],
        }],
        next: 0,
        durable: 0,
        log_start: 0,
    };
    let mut retention = -1i64;
    for op in ops {
        let p = log.partition("t", 0).unwrap();
        match op {
            Op::Append { records, value_len } => {
                let mut b = BatchBuilder::new();
                let values: Vec<Vec<u8>> = (0..records)
                    .map(|i| value_for(model.next + i as i64, value_len))
                    .collect();
                for v in &values {
                    b.push(1_000, Some(b"k"), Some(v), &[]);
                }
                let mut bytes = b.build().unwrap();
                let len = bytes.len() as u64;
                let info = p.append(&mut bytes).unwrap();
                prop_assert_eq!(info.base_offset, model.next);
                let active = model.segs.last().unwrap();
                if active.size() > 0 && active.size() + len > SEGMENT_BYTES {
                    model.durable = model.next;
                    model.segs.push(MSeg {
                        base: model.next,
                        batches: vec![],
                    });
                }
                model.segs.last_mut().unwrap().batches.push(MBatch {
                    base: model.next,
                    len,
                    values,
                });
                model.next += records as i64;
            }
            Op::Flush => {
                p.flush().unwrap();
                model.durable = model.next;
            }
            Op::Roll => {
                p.roll().unwrap();
                if model.segs.last().unwrap().size() > 0 {
                    model.durable = model.next;
                    model.segs.push(MSeg {
                        base: model.next,
                        batches: vec![],
                    });
                }
            }
            Op::CrashDropUnsynced { frac } | Op::CrashCut { frac } | Op::CrashFlip { frac } => {
                drop(p);
                drop(log);
                // Dropping the log shut it down cleanly; a crash leaves no such record.
                fs::remove_file(root.join("topics/t/0/clean-shutdown")).unwrap();
                let active = model.segs.last().unwrap().clone();
                let path = seg_path(root, active.base);
                let size = active.size();
                prop_assert_eq!(fs::metadata(&path).unwrap().len(), size);
                let durable_before = model.durable;
                match op {
                    Op::CrashDropUnsynced { .. } => {
                        let durable_pos: u64 = active
                            .batches
                            .iter()
                            .filter(|b| b.base < model.durable)
                            .map(|b| b.len)
                            .sum();
                        let cut = durable_pos + ((size - durable_pos + 1) as f64 * frac) as u64;
                        let cut = cut.min(size);
                        OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .unwrap()
                            .set_len(cut)
                            .unwrap();
                        cut_active(&mut model, cut);
                        prop_assert!(model.next >= durable_before, "synced records must survive");
                    }
                    Op::CrashCut { .. } => {
                        let cut = (((size + 1) as f64 * frac) as u64).min(size);
                        OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .unwrap()
                            .set_len(cut)
                            .unwrap();
                        cut_active(&mut model, cut);
                    }
                    _ => {
                        if let Some(last) = active.batches.last() {
                            let start = size - last.len;
                            // Bytes 12..16 (leader epoch) are outside the CRC and unused.
                            let choices: Vec<u64> =
                                (0..last.len).filter(|i| !(12..16).contains(i)).collect();
                            let i =
                                choices[((choices.len() as f64) * frac) as usize % choices.len()];
                            let mut data = fs::read(&path).unwrap();
                            data[(start + i) as usize] ^= 0x10;
                            fs::write(&path, data).unwrap();
                            cut_active(&mut model, start);
                        }
                        model.durable = model.next;
                    }
                }
                log = open(root);
            }
            Op::Reopen => {
                drop(p);
                log.close().unwrap();
                log = open(root);
                model.durable = model.next;
            }
            Op::Read { frac, max_bytes } => {
                let span = (model.next - model.log_start + 1) as f64;
                let off = model.log_start + (span * frac) as i64;
                let off = off.min(model.next);
                let r = p.read(off, max_bytes).unwrap();
                let batch = model
                    .segs
                    .iter()
                    .flat_map(|s| s.batches.iter())
                    .find(|b| b.base + b.values.len() as i64 > off);
                match batch {
                    None => prop_assert!(r.bytes.is_empty()),
                    Some(b) => {
                        let h = sluice_log::BatchHeader::parse(&r.bytes).unwrap();
                        prop_assert_eq!(
                            h.base_offset,
                            b.base,
                            "read starts at the batch holding the offset"
                        );
                        prop_assert!(r.bytes.len() as u64 <= (max_bytes as u64).max(b.len));
                    }
                }
            }
            Op::Retain { bytes } => {
                if retention != bytes as i64 {
                    retention = bytes as i64;
                    log.set_topic_config("t", configs(retention)).unwrap();
                }
                p.apply_retention().unwrap();
                let mut total: u64 = model.segs.iter().map(|s| s.size()).sum();
                while model.segs.len() > 1 && total - model.segs[0].size() >= bytes {
                    total -= model.segs[0].size();
                    model.segs.remove(0);
                    model.log_start = model.log_start.max(model.segs[0].base);
                }
            }
        }
        check(&log, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
