//! Transaction markers: only the coordinator's internal append may write control batches;
//! they read back with their type, survive a reopen, and `read_below` stops at a bound.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_log::{
    BatchBuilder, BatchHeader, ControlType, Error, Log, LogOptions, ManualClock, control_batch,
    control_type, frames,
};

fn opts() -> LogOptions {
    LogOptions {
        clock: Arc::new(ManualClock::new(0)),
        background: false,
        ..LogOptions::default()
    }
}

fn txn_batch(pid: i64, seq: i32, n: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(pid, 0, seq).transactional();
    for i in 0..n {
        b.push(i as i64, Some(b"k"), Some(b"v"), &[]);
    }
    let bytes = b.build().unwrap();
    assert!(BatchHeader::parse(&bytes).unwrap().is_transactional());
    bytes
}

#[test]
fn control_batches_round_trip_and_clients_cannot_write_them() {
    for kind in [ControlType::Abort, ControlType::Commit] {
        let b = control_batch(42, 3, kind, 0, 1000);
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 3, -1)
        );
        assert_eq!(control_type(&b).unwrap(), kind);
    }
    assert!(control_type(&BatchBuilder::new().build().unwrap()).is_err());

    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut forged = control_batch(1, 0, ControlType::Commit, 0, 0);
    assert!(matches!(
        p.append(&mut forged),
        Err(Error::InvalidBatch { .. })
    ));
    assert_eq!(
        p.log_end_offset(),
        0,
        "nothing of a refused batch is written"
    );
}

#[test]
fn markers_append_read_back_and_bound_reads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        log.create_topic("t", 1, BTreeMap::new()).unwrap();
        let p = log.partition("t", 0).unwrap();
        p.append(&mut txn_batch(7, 0, 3)).unwrap(); // 0..=2
        let (m, d) = p.append_marker(7, 0, ControlType::Abort, 0).unwrap();
        p.await_durable(d).unwrap();
        assert_eq!(m.base_offset, 3);
        p.append(&mut txn_batch(7, 3, 2)).unwrap(); // 4..=5
        let (m, d) = p.append_marker(7, 0, ControlType::Commit, 0).unwrap();
        p.await_durable(d).unwrap();
        assert_eq!(m.base_offset, 6);
        assert_eq!(p.marker_at(3).unwrap(), ControlType::Abort);
        assert_eq!(p.marker_at(6).unwrap(), ControlType::Commit);
        assert!(p.marker_at(0).is_err(), "a data batch is not a marker");
        assert!(p.marker_at(1).is_err(), "no batch starts at offset 1");

        // A bound on a batch boundary stops the read there.
        let r = p.read_below(0, 1 << 20, 4).unwrap();
        let bases: Vec<i64> = frames(&r.bytes).map(|f| f.unwrap().1.base_offset).collect();
        assert_eq!(bases, vec![0, 3]);
        assert_eq!(r.next_offset, 4);
        let r = p.read_below(4, 1 << 20, 4).unwrap();
        assert!(r.bytes.is_empty());
        assert_eq!(r.next_offset, 4);
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), opts()).unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut controls = Vec::new();
    p.for_each_batch_header(|h| {
        if h.is_control() {
            controls.push(h.base_offset)
        }
    })
    .unwrap();
    assert_eq!(controls, vec![3, 6]);
    assert_eq!(p.marker_at(6).unwrap(), ControlType::Commit);
}

/// Every (key, value) a read from the start returns, markers left out.
fn records(p: &sluice_log::Partition) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut at = p.log_start_offset();
    while at < p.high_watermark() {
        let r = p.read(at, 1 << 20).unwrap();
        for f in frames(&r.bytes) {
            let (pos, h) = f.unwrap();
            if h.is_control() {
                continue;
            }
            for rec in sluice_log::decode_records(&r.bytes[pos..pos + h.total_size()]).unwrap() {
                out.push((
                    String::from_utf8(rec.key.unwrap()).unwrap(),
                    String::from_utf8(rec.value.unwrap()).unwrap(),
                ));
            }
        }
        at = r.next_offset;
    }
    out
}

fn keyed(pid: i64, seq: i32, key: &str, value: &str, txn: bool) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    if pid >= 0 {
        b = b.producer(pid, 0, seq);
    }
    if txn {
        b = b.transactional();
    }
    b.push(0, Some(key.as_bytes()), Some(value.as_bytes()), &[]);
    b.build().unwrap()
}

#[test]
fn compaction_drops_aborted_records_and_stops_at_an_undecided_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut c = BTreeMap::new();
    c.insert("cleanup.policy".to_string(), "compact".to_string());
    log.create_topic("t", 1, c).unwrap();
    let p = log.partition("t", 0).unwrap();
    // k: committed "v1", then an aborted transactional "bad" that must not supersede it.
    p.append(&mut keyed(-1, -1, "k", "v1", false)).unwrap();
    p.append(&mut keyed(7, 0, "k", "bad", true)).unwrap();
    let (_, d) = p.append_marker(7, 0, ControlType::Abort, 0).unwrap();
    p.await_durable(d).unwrap();
    // j: "j1" then a committed transactional "j2" that does supersede it.
    p.append(&mut keyed(-1, -1, "j", "j1", false)).unwrap();
    p.append(&mut keyed(8, 0, "j", "j2", true)).unwrap();
    let (_, d) = p.append_marker(8, 0, ControlType::Commit, 0).unwrap();
    p.await_durable(d).unwrap();
    p.roll().unwrap();
    // m: "m1" in a closed segment, then an undecided transaction writes "m?" and the log
    // rolls again: nothing from the undecided transaction on may be cleaned.
    p.append(&mut keyed(-1, -1, "m", "m1", false)).unwrap();
    p.roll().unwrap();
    p.append(&mut keyed(9, 0, "m", "m?", true)).unwrap();
    p.roll().unwrap();
    p.append(&mut keyed(-1, -1, "z", "z1", false)).unwrap();

    let report = p.compact().unwrap();
    assert_eq!(
        report.records_removed, 2,
        "the aborted record and j1: {report:?}"
    );
    assert_eq!(
        records(&p),
        vec![
            ("k".to_string(), "v1".to_string()),
            ("j".to_string(), "j2".to_string()),
            ("m".to_string(), "m1".to_string()),
            ("m".to_string(), "m?".to_string()),
            ("z".to_string(), "z1".to_string()),
        ]
    );
    // Once the transaction aborts, m1 stays the value and m? goes.
    let (_, d) = p.append_marker(9, 0, ControlType::Abort, 0).unwrap();
    p.await_durable(d).unwrap();
    p.roll().unwrap();
    p.compact().unwrap();
    let after: Vec<(String, String)> = records(&p);
    assert!(
        after.contains(&("m".to_string(), "m1".to_string())),
        "{after:?}"
    );
    assert!(!after.iter().any(|(_, v)| v == "m?"), "{after:?}");
}

#[test]
fn compaction_still_runs_after_delete_records_moved_the_start_past_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut c = BTreeMap::new();
    c.insert("cleanup.policy".to_string(), "compact".to_string());
    log.create_topic("t", 1, c).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut keyed(-1, -1, "k", "v1", false)).unwrap(); // 0
    p.append(&mut keyed(7, 0, "k", "v2", true)).unwrap(); // 1
    let (_, d) = p.append_marker(7, 0, ControlType::Commit, 0).unwrap(); // 2
    p.await_durable(d).unwrap();
    p.append(&mut keyed(-1, -1, "j", "j1", false)).unwrap(); // 3
    p.append(&mut keyed(-1, -1, "j", "j2", false)).unwrap(); // 4
    p.roll().unwrap();
    p.append(&mut keyed(-1, -1, "z", "z1", false)).unwrap(); // 5
    // The log start moves past the marker at 2, inside the closed segment.
    assert_eq!(p.delete_records(3).unwrap(), 3);
    let report = p
        .compact()
        .expect("the marker below the log start is still read");
    assert_eq!(report.records_removed, 2, "v1 and j1: {report:?}");
}
