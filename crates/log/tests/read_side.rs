//! The log's read-side facts, whoever appends: the committed-read view (last stable
//! offset, aborted-transaction index) kept by each partition, `append_if` under the
//! partition lock, the append notification, and the producer state surviving a reopen
//! (scanned after a crash, from the clean-shutdown snapshot otherwise).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice_log::{
    AbortFilter, AppendIf, BatchBuilder, ControlType, Log, LogOptions, SequenceCheck,
    SequenceError, decode_records, frames,
};

fn opts() -> LogOptions {
    LogOptions {
        background: false,
        ..LogOptions::default()
    }
}

fn batch(pid: i64, seq: i32, txn: bool, values: &[&str]) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(pid, 0, seq);
    if txn {
        b = b.transactional();
    }
    for v in values {
        b.push(0, None, Some(v.as_bytes()), &[]);
    }
    b.build().unwrap()
}

/// Values a read_committed reader sees from `offset`, with the last stable offset.
fn committed_values(p: &sluice_log::Partition, mut offset: i64) -> (Vec<String>, i64) {
    let mut out = Vec::new();
    let mut lso;
    loop {
        let r = p.read_committed(offset, 1 << 20).unwrap();
        lso = r.last_stable_offset;
        if r.read.bytes.is_empty() {
            break;
        }
        let filter = AbortFilter::new(&r.aborted);
        for f in frames(&r.read.bytes) {
            let (pos, h) = f.unwrap();
            if h.is_control() || filter.is_aborted(&h) {
                continue;
            }
            for rec in decode_records(&r.read.bytes[pos..pos + h.total_size()]).unwrap() {
                out.push(String::from_utf8(rec.value.unwrap()).unwrap());
            }
        }
        offset = r.read.next_offset;
    }
    (out, lso)
}

#[test]
fn read_committed_stops_at_open_transactions_and_drops_aborted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut batch(-1, -1, false, &["plain-0"])).unwrap(); // 0
    p.append(&mut batch(7, 0, true, &["aborted-1", "aborted-2"]))
        .unwrap(); // 1..=2
    p.append(&mut batch(8, 0, true, &["committed-3"])).unwrap(); // 3
    p.append(&mut batch(-1, -1, false, &["plain-4"])).unwrap(); // 4
    assert_eq!(
        p.last_stable_offset(),
        1,
        "held by producer 7's open transaction"
    );
    assert_eq!(committed_values(&p, 0), (vec!["plain-0".to_string()], 1));

    let _marker = p.append_marker(7, 0, ControlType::Abort, 0).unwrap(); // 5
    p.flush().unwrap();
    assert_eq!(p.last_stable_offset(), 3, "now held by producer 8");
    let _marker = p.append_marker(8, 0, ControlType::Commit, 0).unwrap(); // 6
    p.flush().unwrap();
    assert_eq!(p.last_stable_offset(), p.high_watermark());
    let want = ["plain-0", "committed-3", "plain-4"]
        .map(String::from)
        .to_vec();
    assert_eq!(committed_values(&p, 0), (want.clone(), 7));
    let aborted = p.aborted_between(0, 7);
    assert_eq!(
        aborted
            .iter()
            .map(|a| (a.producer_id, a.first_offset, a.last_offset))
            .collect::<Vec<_>>(),
        [(7, 1, 5)]
    );
    assert!(
        p.aborted_between(6, 7).is_empty(),
        "marker before the range"
    );

    // The same view after a crash (state rebuilt from the batch headers) and after a
    // clean shutdown (state from the snapshot).
    drop(p);
    drop(log);
    for crashed in [true, false] {
        if crashed {
            let _ = std::fs::remove_file(dir.path().join("topics/t/0/clean-shutdown"));
        }
        let log = Log::open(dir.path(), opts()).unwrap();
        let p = log.partition("t", 0).unwrap();
        assert_eq!(
            committed_values(&p, 0),
            (want.clone(), 7),
            "crashed {crashed}"
        );
        log.close().unwrap();
        assert!(dir.path().join("topics/t/0/producer-state.json").exists());
    }
}

#[test]
fn append_if_checks_under_the_lock_and_refuses_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    let p = log.partition("t", 0).unwrap();
    let seq_check = |buf: &[u8]| {
        let h = frames(buf).next().unwrap().unwrap().1;
        move |st: &sluice_log::ProducerState| match st.check(&h) {
            Ok(SequenceCheck::Append) => Ok(()),
            Ok(SequenceCheck::Duplicate(base)) => Err(Ok(base)),
            Err(e) => Err(Err(e)),
        }
    };
    let mut first = batch(3, 0, false, &["a", "b"]);
    let check = seq_check(&first);
    assert!(matches!(
        p.append_if(&mut first, check).unwrap(),
        AppendIf::Appended(info, _) if info.base_offset == 0
    ));
    // A retry of the same batch is recognised; a gap is refused; neither writes.
    let mut retry = batch(3, 0, false, &["a", "b"]);
    let check = seq_check(&retry);
    assert!(matches!(
        p.append_if(&mut retry, check).unwrap(),
        AppendIf::Refused(Ok(0))
    ));
    let mut gap = batch(3, 5, false, &["c"]);
    let check = seq_check(&gap);
    assert!(matches!(
        p.append_if(&mut gap, check).unwrap(),
        AppendIf::Refused(Err(SequenceError::OutOfOrder))
    ));
    assert_eq!(p.log_end_offset(), 2);
    let mut next = batch(3, 2, false, &["c"]);
    let check = seq_check(&next);
    assert!(matches!(
        p.append_if(&mut next, check).unwrap(),
        AppendIf::Appended(info, _) if info.base_offset == 2
    ));
    // Producer state survives a crash (rebuilt by the scan): the retry is still known.
    drop(p);
    drop(log);
    std::fs::remove_file(dir.path().join("topics/t/0/clean-shutdown")).unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut retry = batch(3, 2, false, &["c"]);
    let check = seq_check(&retry);
    assert!(matches!(
        p.append_if(&mut retry, check).unwrap(),
        AppendIf::Refused(Ok(2))
    ));
}

#[test]
fn appends_notify_listeners_and_waiters_whoever_writes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.create_topic("t", 2, BTreeMap::new()).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    log.notifier()
        .subscribe(Arc::new(move |topic, partition, hw| {
            assert_eq!((topic, partition), ("t", 1));
            assert!(hw > 0);
            s.fetch_add(1, Ordering::SeqCst);
        }));
    let g = log.notifier().generation();
    let p = log.partition("t", 1).unwrap();
    let waiter = {
        let n = log.notifier().clone();
        std::thread::spawn(move || n.wait(g, Duration::from_secs(600)))
    };
    p.append(&mut batch(-1, -1, false, &["x"])).unwrap();
    assert!(waiter.join().unwrap() > g);
    let _marker = p.append_marker(9, 0, ControlType::Abort, 0).unwrap();
    p.flush().unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 2, "a data batch and a marker");
}

#[test]
fn a_read_only_log_follows_the_writers_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut batch(-1, -1, false, &["a"])).unwrap();
    let reader = Log::open(
        dir.path(),
        LogOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    let rp = reader.partition("t", 0).unwrap();
    assert_eq!(committed_values(&rp, 0).0, ["a"]);
    p.append(&mut batch(4, 0, true, &["t1"])).unwrap();
    p.append(&mut batch(-1, -1, false, &["b"])).unwrap();
    reader.refresh().unwrap();
    assert_eq!(
        rp.last_stable_offset(),
        1,
        "the writer's open transaction holds it"
    );
    let _marker = p.append_marker(4, 0, ControlType::Abort, 0).unwrap();
    p.flush().unwrap();
    reader.refresh().unwrap();
    assert_eq!(committed_values(&rp, 0), (vec!["a".into(), "b".into()], 4));
}
