//! SIGKILL drills: a child process appends with fsync=always from several threads and
//! prints each acknowledged batch; we kill it at random moments, reopen the log and check
//! that every acknowledged record is there, byte for byte, and offsets are dense.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sluice_log::{Log, LogOptions, decode_records, frames};

struct Ack {
    partition: i32,
    base: i64,
    last: i64,
    tag: String,
}

fn value(tag: &str, i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{tag}-{i}").into_bytes();
    if v.len() < size {
        v.resize(size, b'.');
    }
    v
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::seeded_rng("acknowledged_records_survive_sigkill");
    let mut all_acks: Vec<Ack> = Vec::new();
    let rounds = 6;
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "debug",
                "append-loop",
                "--topic",
                "crash",
                "--partitions",
                "2",
                "--threads",
                "3",
                "--records-per-batch",
                "3",
                "--value-size",
                "300",
                "--segment-bytes",
                "30000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sluice");
        let stdout = child.stdout.take().unwrap();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let f: Vec<&str> = line.split(' ').collect();
                    if f.len() == 5 && f[0] == "ack" {
                        acks.lock().unwrap().push(Ack {
                            partition: f[1].parse().unwrap(),
                            base: f[2].parse().unwrap(),
                            last: f[3].parse().unwrap(),
                            tag: f[4].to_string(),
                        });
                    }
                }
            })
        };
        // Wait for the first acknowledgement so the kill lands mid-stream, then a bit.
        for _ in 0..500 {
            if !acks.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        let got = std::mem::take(&mut *acks.lock().unwrap());
        assert!(
            !got.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        all_acks.extend(got);

        // Reopen (recovery runs) and check every acknowledged record of every round.
        let log = Log::open(
            dir.path(),
            LogOptions {
                background: false,
                ..LogOptions::default()
            },
        )
        .expect("reopen after SIGKILL");
        let mut stored: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
        for p in 0..2 {
            let part = log.partition("crash", p).unwrap();
            let mut off = part.log_start_offset();
            assert_eq!(off, 0);
            let hw = part.high_watermark();
            while off < hw {
                let r = part.read(off, 1 << 20).unwrap();
                assert!(!r.bytes.is_empty());
                for f in frames(&r.bytes) {
                    let (pos, h) = f.unwrap();
                    for rec in decode_records(&r.bytes[pos..pos + h.total_size()]).unwrap() {
                        assert_eq!(rec.offset, off, "offsets are dense");
                        stored.insert((p, rec.offset), rec.value.unwrap());
                        off += 1;
                    }
                }
            }
        }
        for a in &all_acks {
            for (i, o) in (a.base..=a.last).enumerate() {
                let v = stored.get(&(a.partition, o)).unwrap_or_else(|| {
                    panic!(
                        "round {round}: acknowledged offset {}-{o} ({}) is missing",
                        a.partition, a.tag
                    )
                });
                assert_eq!(v, &value(&a.tag, i, 300), "record at {}-{o}", a.partition);
            }
        }
        eprintln!(
            "round {round}: {} acknowledged batches verified, {} records stored",
            all_acks.len(),
            stored.len()
        );
        log.close().unwrap();
    }
}
