//! The runtime in process, on a manual clock: idleness, micro-batch triggers, commit
//! points, stop, restart from a position a sink stored with its output, and a topic
//! source that never counts aborted transactions. Deterministic: time moves only when a
//! test moves it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_connect::{Isolation, MemorySink, Position, Source, SourceRecord, TopicSource};
use sluice_engine::pipeline::PipelineDef;
use sluice_log::{BatchBuilder, ControlType, Log, LogOptions};
use sluice_runtime::{ManualClock, RunOptions, Runner, Step};

/// An in-memory source: records per partition, released as a test pushes them; bounded
/// when `end` is set (exhausted once everything pushed was handed out). Seekable. Clones
/// share the records, so a test pushes while a runner holds the source.
#[derive(Debug, Default, Clone)]
struct MemSource(Arc<Mutex<MemInner>>);

#[derive(Debug, Default)]
struct MemInner {
    parts: BTreeMap<u32, Vec<Value>>,
    next: BTreeMap<u32, usize>,
    queue: VecDeque<(u32, usize)>,
    end: bool,
    commits: Vec<BTreeMap<u32, i64>>,
}

impl MemSource {
    fn new(partitions: &[u32]) -> Self {
        let s = Self::default();
        {
            let mut g = s.0.lock().unwrap();
            for p in partitions {
                g.parts.insert(*p, Vec::new());
                g.next.insert(*p, 0);
            }
        }
        s
    }
    fn push(&self, p: u32, v: Value) {
        let mut g = self.0.lock().unwrap();
        let part = g.parts.get_mut(&p).unwrap();
        part.push(v);
        let i = part.len() - 1;
        g.queue.push_back((p, i));
    }
    fn end(&self) {
        self.0.lock().unwrap().end = true;
    }
    fn commits(&self) -> Vec<BTreeMap<u32, i64>> {
        self.0.lock().unwrap().commits.clone()
    }
    /// Every record pushed again, as a restarted reader would find them.
    fn reopened(&self) -> Self {
        let g = self.0.lock().unwrap();
        let s = Self::new(&g.parts.keys().copied().collect::<Vec<_>>());
        for (p, vs) in &g.parts {
            for v in vs {
                s.push(*p, v.clone());
            }
        }
        s.0.lock().unwrap().end = g.end;
        s
    }
}

impl Source for MemSource {
    fn partitions(&self) -> Vec<u32> {
        self.0.lock().unwrap().parts.keys().copied().collect()
    }
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> sluice_connect::Result<usize> {
        let mut g = self.0.lock().unwrap();
        let mut n = 0;
        while n < max {
            let Some((p, i)) = g.queue.pop_front() else {
                break;
            };
            if i < g.next[&p] {
                continue; // behind a seek
            }
            g.next.insert(p, i + 1);
            let bytes = serde_json::to_vec(&g.parts[&p][i]).unwrap();
            out.push(SourceRecord::value(p, i as i64, Some(bytes)));
            n += 1;
        }
        Ok(n)
    }
    fn caught_up(&self, _partition: u32) -> bool {
        false
    }
    fn is_exhausted(&self) -> bool {
        let g = self.0.lock().unwrap();
        g.end && g.queue.is_empty()
    }
    fn commit(&mut self, offsets: &BTreeMap<u32, i64>) -> sluice_connect::Result<()> {
        self.0.lock().unwrap().commits.push(offsets.clone());
        Ok(())
    }
    fn seek(&mut self, offsets: &BTreeMap<u32, i64>) -> sluice_connect::Result<()> {
        let mut g = self.0.lock().unwrap();
        for (p, o) in offsets {
            g.next.insert(*p, *o as usize);
            let items = g.parts[p].len();
            g.queue.retain(|(q, _)| q != p);
            for i in *o as usize..items {
                g.queue.push_back((*p, i));
            }
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

fn pipeline(extra_watermark: &str, execution: &str) -> PipelineDef {
    PipelineDef::from_toml(&format!(
        r#"
name = "p"
[source]
kind = "topic"
topic = "in"
event_time = "ts"
key = "k"
[watermark]
max_out_of_orderness_ms = 0
{extra_watermark}
[window]
kind = "tumbling"
size_ms = 10
[[aggregate]]
op = "count"
[sink]
kind = "stdout"
{execution}
"#
    ))
    .unwrap()
}

fn ev(ts: i64) -> Value {
    json!({"ts": ts, "k": "a"})
}

fn counts(sink: &MemorySink) -> Vec<(i64, i64)> {
    sink.written
        .iter()
        .map(|(_, v)| {
            (
                v["window_start"].as_i64().unwrap(),
                v["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn step_n(r: &mut Runner<'_>, n: usize) {
    for _ in 0..n {
        r.step().unwrap();
    }
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_after_its_timeout_of_clock_time() {
    let def = pipeline("idle_timeout_ms = 100", "");
    let clock = ManualClock::new(1_000_000);
    let src = MemSource::new(&[0, 1]);
    for ts in [1, 5, 15] {
        src.push(0, ev(ts));
    }
    let (mut sink, mut late) = (MemorySink::default(), MemorySink::default());
    let opts = RunOptions::default();
    let mut reader = src.clone();
    let mut r = Runner::new(&def, &mut reader, &mut sink, &mut late, opts, &clock).unwrap();
    step_n(&mut r, 5);
    assert_eq!(
        r.watermark(),
        sluice_engine::time::MIN_TIME,
        "partition 1 holds it"
    );
    clock.advance(Duration::from_millis(99));
    src.push(0, ev(16)); // partition 0 stays active
    step_n(&mut r, 2);
    assert_eq!(
        r.watermark(),
        sluice_engine::time::MIN_TIME,
        "not idle yet at 99 ms"
    );
    clock.advance(Duration::from_millis(2));
    step_n(&mut r, 2);
    assert_eq!(
        r.watermark(),
        15,
        "partition 1 idle: partition 0 alone (16 - 0 - 1)"
    );
    drop(r);
    assert_eq!(counts(&sink), [(0, 2)]);
}

#[test]
fn a_micro_batch_runs_when_its_trigger_interval_of_clock_time_has_passed() {
    let def = pipeline(
        "",
        "[execution]\nmode = \"micro-batch\"\ntrigger_interval_ms = 100",
    );
    let clock = ManualClock::new(0);
    let src = MemSource::new(&[0]);
    for ts in [1, 2, 12] {
        src.push(0, ev(ts));
    }
    let (mut sink, mut late) = (MemorySink::default(), MemorySink::default());
    let opts = RunOptions {
        commit_every: Duration::from_millis(10),
        ..RunOptions::default()
    };
    let mut reader = src.clone();
    let mut r = Runner::new(&def, &mut reader, &mut sink, &mut late, opts, &clock).unwrap();
    step_n(&mut r, 3);
    clock.advance(Duration::from_millis(50));
    step_n(&mut r, 3);
    assert_eq!(r.events_in(), 3);
    assert_eq!(
        r.watermark(),
        sluice_engine::time::MIN_TIME,
        "batch not run yet"
    );
    clock.advance(Duration::from_millis(50));
    assert_eq!(r.step().unwrap(), Step::Idle);
    assert_eq!(r.watermark(), 11);
    let report = r.finish().unwrap();
    assert_eq!(report.batches, 1);
    // No commit while the batch waited (its events were not reflected in any output);
    // the first commit came with the batch, holding the open window [10, 20) at offset 2.
    assert_eq!(sink.commits[0], Position::new([(0, 2)]));
    assert_eq!(counts(&sink), [(0, 2), (10, 1)]);
}

#[test]
fn commits_come_every_commit_interval_with_the_lowest_offset_an_open_window_holds() {
    let def = pipeline("", "");
    let clock = ManualClock::new(0);
    let src = MemSource::new(&[0]);
    let (mut sink, mut late) = (MemorySink::default(), MemorySink::default());
    let opts = RunOptions {
        commit_every: Duration::from_secs(1),
        ..RunOptions::default()
    };
    let mut reader = src.clone();
    let mut r = Runner::new(&def, &mut reader, &mut sink, &mut late, opts, &clock).unwrap();
    let push = |v| src.push(0, v);
    for ts in [1, 3, 11] {
        push(ev(ts));
    }
    step_n(&mut r, 3);
    clock.advance(Duration::from_millis(999));
    step_n(&mut r, 2);
    assert!(
        r.position().offsets[&0] == 2,
        "window [10,20) holds offset 2"
    );
    clock.advance(Duration::from_millis(1));
    r.step().unwrap();
    push(ev(25));
    clock.advance(Duration::from_secs(1));
    step_n(&mut r, 2);
    drop(r);
    assert_eq!(
        sink.commits,
        [Position::new([(0, 2)]), Position::new([(0, 3)])],
        "one commit per second of clock time; [20,30) holds offset 3"
    );
    assert_eq!(
        late.commits, sink.commits,
        "the late output commits with it"
    );
    assert_eq!(
        src.commits(),
        [BTreeMap::from([(0, 2)]), BTreeMap::from([(0, 3)])]
    );
}

#[test]
fn a_stopped_run_fires_nothing_more_and_commits_what_its_output_reflects() {
    let def = pipeline("", "");
    let clock = ManualClock::new(0);
    let src = MemSource::new(&[0]);
    for ts in [1, 11, 12] {
        src.push(0, ev(ts));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (mut sink, mut late) = (MemorySink::default(), MemorySink::default());
    let opts = RunOptions {
        stop: Some(stop.clone()),
        ..RunOptions::default()
    };
    let mut reader = src.clone();
    let mut r = Runner::new(&def, &mut reader, &mut sink, &mut late, opts, &clock).unwrap();
    step_n(&mut r, 2);
    stop.store(true, Ordering::Release);
    assert_eq!(r.step().unwrap(), Step::Done);
    let report = r.finish().unwrap();
    assert_eq!(
        report.results, 1,
        "[0,10) fired by the watermark; [10,20) not fired"
    );
    assert_eq!(sink.commits.last(), Some(&Position::new([(0, 1)])));
    assert_eq!(src.commits().last(), Some(&BTreeMap::from([(0, 1)])));
}

#[test]
fn a_restart_resumes_at_the_position_the_sink_stored_with_its_output() {
    let def = pipeline("", "");
    let clock = ManualClock::new(0);
    let src = MemSource::new(&[0]);
    for ts in [1, 2, 11, 12, 21] {
        src.push(0, ev(ts));
    }
    let mut sink = MemorySink {
        stores_position: true,
        ..MemorySink::default()
    };
    let mut late = MemorySink::default();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunOptions {
        commit_every: Duration::from_millis(1),
        stop: Some(stop.clone()),
        ..RunOptions::default()
    };
    {
        let mut reader = src.clone();
        let mut r = Runner::new(
            &def,
            &mut reader,
            &mut sink,
            &mut late,
            opts.clone(),
            &clock,
        )
        .unwrap();
        r.step().unwrap();
        clock.advance(Duration::from_millis(1));
        r.step().unwrap();
        stop.store(true, Ordering::Release);
        r.run().unwrap();
    }
    // [0,10) and [10,20) fired; [20,30) (offset 4) was open when the run stopped.
    assert_eq!(counts(&sink), [(0, 2), (10, 2)]);
    assert_eq!(sink.commits.last(), Some(&Position::new([(0, 4)])));

    // The source lost its own commits (a fresh reader from offset 0): the stored position
    // decides where the second run starts.
    stop.store(false, Ordering::Release);
    let again = src.reopened();
    again.end();
    let mut reader = again.clone();
    let r = Runner::new(&def, &mut reader, &mut sink, &mut late, opts, &clock).unwrap();
    assert_eq!(r.resumed_from(), Some(&Position::new([(0, 4)])));
    let report = r.run().unwrap();
    assert_eq!(
        report.events_in, 1,
        "only the record the open window held is re-read"
    );
    assert_eq!(counts(&sink), [(0, 2), (10, 2), (20, 1)]);
}

fn txn_batch(pid: i64, seq: i32, values: std::ops::Range<i64>) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(pid, 0, seq).transactional();
    for i in values {
        let v = serde_json::to_vec(&json!({"ts": 5, "k": "a", "i": i})).unwrap();
        b.push(0, None, Some(&v), &[]);
    }
    b.build().unwrap()
}

#[test]
fn a_topic_source_never_counts_aborted_records_unless_asked_to_read_uncommitted() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Log::open(
            dir.path(),
            LogOptions {
                background: false,
                ..LogOptions::default()
            },
        )
        .unwrap(),
    );
    log.create_topic("in", 1, BTreeMap::new()).unwrap();
    let p = log.partition("in", 0).unwrap();
    // 50 committed, 70 aborted interleaved with them, then 30 more committed.
    p.append(&mut txn_batch(1, 0, 0..25)).unwrap();
    p.append(&mut txn_batch(2, 0, 100..135)).unwrap();
    p.append(&mut txn_batch(1, 25, 25..50)).unwrap();
    p.append(&mut txn_batch(2, 35, 135..170)).unwrap();
    let _m = p.append_marker(1, 0, ControlType::Commit, 0).unwrap();
    let _m = p.append_marker(2, 0, ControlType::Abort, 0).unwrap();
    p.append(&mut txn_batch(1, 50, 50..80)).unwrap();
    let _m = p.append_marker(1, 0, ControlType::Commit, 0).unwrap();
    p.flush().unwrap();

    let def = pipeline("", "");
    for (isolation, want) in [
        (Isolation::ReadCommitted, 80),
        (Isolation::ReadUncommitted, 150),
    ] {
        let clock = ManualClock::new(0);
        let mut src = TopicSource::open(log.clone(), "in", false, isolation, None).unwrap();
        let (mut sink, mut late) = (MemorySink::default(), MemorySink::default());
        let r = Runner::new(
            &def,
            &mut src,
            &mut sink,
            &mut late,
            RunOptions::default(),
            &clock,
        )
        .unwrap();
        let report = r.run().unwrap();
        assert_eq!(report.events_in, want, "{isolation:?}");
        assert_eq!(counts(&sink), [(0, want as i64)], "{isolation:?}");
    }

    // An open transaction holds a read_committed bounded run at its first offset.
    p.append(&mut txn_batch(3, 0, 200..210)).unwrap();
    let mut tail = sluice_log::BatchBuilder::new();
    tail.push(0, None, Some(br#"{"ts": 5, "k": "a"}"#), &[]);
    p.append(&mut tail.build().unwrap()).unwrap();
    let clock = ManualClock::new(0);
    let mut src =
        TopicSource::open(log.clone(), "in", false, Isolation::ReadCommitted, None).unwrap();
    let (mut sink, mut late) = (MemorySink::default(), MemorySink::default());
    let report = Runner::new(
        &def,
        &mut src,
        &mut sink,
        &mut late,
        RunOptions::default(),
        &clock,
    )
    .unwrap()
    .run()
    .unwrap();
    assert_eq!(
        report.events_in, 80,
        "nothing at or after the open transaction"
    );
}
