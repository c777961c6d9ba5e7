//! `sluice run` over topics of the embedded log: offsets committed in
//! `DATA/pipelines/<name>/offsets.json`, restarts (bounded and after SIGKILL) that lose no
//! window (at-least-once: a window may be emitted again, the last emission per window
//! covers all its events).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::run_sluice_in as sluice;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Kafka's murmur2 puts a and b in partition 0, d and f in partition 1 (of 2).
const KEYS: [&str; 4] = ["a", "b", "d", "f"];

/// Event i: key KEYS[i % 4], ts = 2·i, v = i. Per key, event time only grows, and
/// keys are hashed to partitions, so each partition is in order: nothing is ever late.
fn produce(data: &Path, range: std::ops::Range<i64>) {
    let lines: String = range
        .map(|i| {
            let k = KEYS[(i % 4) as usize];
            format!("{k}|{{\"ts\": {}, \"key\": \"{k}\", \"v\": {i}}}\n", 2 * i)
        })
        .collect();
    ok(&sluice(
        data,
        &["produce", "events", "--key-separator", "|"],
        Some(lines.as_bytes()),
    ));
}

/// Expected (key, window_start) -> (count, sum) for tumbling windows of `size` over
/// events 0..n.
fn expected(n: i64, size: i64) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        let ts = 2 * i;
        let e = m
            .entry((KEYS[(i % 4) as usize].to_string(), ts - ts.rem_euclid(size)))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += i;
    }
    m
}

/// Every emission per window, in output order.
fn emissions(lines: &[Value]) -> BTreeMap<(String, i64), Vec<(i64, i64)>> {
    let mut m: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for r in lines {
        m.entry((
            r["key"].as_str().unwrap().to_string(),
            r["window_start"].as_i64().unwrap(),
        ))
        .or_default()
        .push((r["count"].as_i64().unwrap(), r["sum"].as_i64().unwrap()));
    }
    m
}

/// No window lost: every expected window was emitted, its last emission is complete, and
/// no emission is bigger than the window (no double counting inside one emission).
fn check_nothing_lost(lines: &[Value], n: i64, size: i64) {
    let got = emissions(lines);
    let want = expected(n, size);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "windows"
    );
    for (w, (count, sum)) in &want {
        let e = &got[w];
        assert_eq!(e.last(), Some(&(*count, *sum)), "window {w:?}: {e:?}");
        assert!(e.iter().all(|(c, _)| c <= count), "window {w:?}: {e:?}");
    }
}

fn pipeline(dir: &Path, sink: &str) -> String {
    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "per-key"
[source]
kind = "topic"
topic = "events"
event_time = "ts"
key = "key"
[watermark]
max_out_of_orderness_ms = 0
[window]
kind = "tumbling"
size_ms = 25
[[aggregate]]
op = "count"
[[aggregate]]
op = "sum"
field = "v"
{sink}
"#
        ),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn consume_all(data: &Path, topic: &str) -> Vec<Value> {
    let out = sluice(data, &["consume", topic, "--from-beginning"], None);
    ok(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn committed(data: &Path) -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(data.join("pipelines/per-key/offsets.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["topic"], "events");
    serde_json::from_value(v["offsets"].clone()).unwrap()
}

#[test]
fn topic_to_topic_restart_loses_no_window() {
    restart_loses_no_window("continuous");
}

#[test]
fn topic_to_topic_restart_loses_no_window_micro_batch() {
    restart_loses_no_window("micro-batch");
}

fn restart_loses_no_window(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&sluice(
        &data,
        &["topic", "create", "events", "--partitions", "2"],
        None,
    ));
    let p = pipeline(
        dir.path(),
        &format!(
            "[sink]\nkind = \"topic\"\ntopic = \"results\"\n[execution]\nmode = \"{mode}\"\ntrigger_interval_ms = 5"
        ),
    );
    // Run 1 over events 0..30 (ts 0..58): [50,75) is still open at the end of the input.
    produce(&data, 0..30);
    let err = ok(&sluice(&data, &["run", &p], None));
    assert!(err.contains("created topic results"), "{err}");
    assert!(err.contains("created topic per-key-late"), "{err}");
    let first = consume_all(&data, "results");
    check_nothing_lost(&first, 30, 25);
    // The end of a bounded run fires the open windows, but their events stay uncommitted:
    // the committed offsets are below the end (30 records over 2 partitions).
    let c1 = committed(&data);
    assert_eq!(c1.len(), 2, "both partitions have data: {c1:?}");
    assert!(c1.values().sum::<i64>() < 30, "{c1:?}");
    // Run 2 after 30 more events: resumes at the committed offsets and re-fires [50,75)
    // with all of its events.
    produce(&data, 30..60);
    let err = ok(&sluice(&data, &["run", &p], None));
    assert!(err.contains("late events        0"), "{err}");
    let all = consume_all(&data, "results");
    assert!(all.starts_with(&first));
    check_nothing_lost(&all, 60, 25);
    let em = emissions(&all);
    assert!(
        KEYS.iter().any(|k| em[&(k.to_string(), 50)].len() == 2),
        "[50,75) is emitted by both runs: {em:?}"
    );
    assert!(committed(&data).values().sum::<i64>() < 60);
    // Run 3 with nothing new: only the still-uncommitted tail is re-read.
    ok(&sluice(&data, &["run", &p], None));
    check_nothing_lost(&consume_all(&data, "results"), 60, 25);
    assert!(consume_all(&data, "per-key-late").is_empty());
}

#[test]
fn sigkill_during_follow_then_restart_loses_no_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&sluice(
        &data,
        &["topic", "create", "events", "--partitions", "2"],
        None,
    ));
    const N: i64 = 20_000;
    produce(&data, 0..N);
    // File sink: the source opens the log read-only, the file sink appends across runs.
    let p = pipeline(
        dir.path(),
        "[sink]\nkind = \"file\"\npath = \"results.jsonl\"\n[late]\nkind = \"file\"\npath = \"late.jsonl\"",
    );
    let out_path = dir.path().join("results.jsonl");
    for round in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(&data)
            .args(["run", &p, "--follow", "--commit-interval-ms", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill as soon as some output exists (round 0) or a little later (round 1).
        let deadline = Instant::now() + Duration::from_secs(60);
        let want_lines = if round == 0 { 1 } else { 2000 };
        loop {
            let lines = std::fs::read_to_string(&out_path)
                .map(|s| s.lines().count())
                .unwrap_or(0);
            if lines >= want_lines || Instant::now() > deadline {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "--follow never exits");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // A bounded run finishes the input.
    let err = ok(&sluice(&data, &["run", &p], None));
    assert!(err.contains("late events        0"), "{err}");
    let text = std::fs::read_to_string(&out_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    check_nothing_lost(&lines, N, 25);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("late.jsonl")).unwrap(),
        ""
    );
}
