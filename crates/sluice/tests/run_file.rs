//! `sluice run` end to end with a file source and file sinks: tumbling, hopping and
//! session windows in both execution modes, allowed lateness, bad input, unsupported kinds.
//! Expected outputs are worked out by hand in the comments (Flink's rules).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Sorted by (window_start, window_end, key) so both modes compare regardless of firing
/// order; duplicates (re-firings) are kept.
fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|r| {
        (
            r["window_start"].as_i64(),
            r["window_end"].as_i64(),
            r["key"].as_str().map(str::to_owned),
            r["count"].as_i64(),
        )
    });
    v
}

fn r(key: &str, start: i64, end: i64, count: i64, sum: i64) -> Value {
    json!({"key": key, "window_start": start, "window_end": end, "count": count, "sum": sum})
}

struct Run {
    out: Vec<Value>,
    late: Vec<Value>,
    stderr: String,
}

/// Writes the pipeline and input into a temp dir and runs `sluice run`.
fn run_pipeline(window: &str, delay: u64, mode: &str, events: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        r#"name = "t"
[source]
kind = "file"
path = "in.jsonl"
format = "json"
event_time = "ts"
key = "key"
[watermark]
strategy = "bounded"
max_out_of_orderness_ms = {delay}
[window]
{window}
[[aggregate]]
op = "count"
[[aggregate]]
op = "sum"
field = "v"
[sink]
kind = "file"
path = "out/results.jsonl"
[late]
kind = "file"
path = "out/late.jsonl"
[execution]
mode = "{mode}"
trigger_interval_ms = 1000
"#
    );
    std::fs::write(dir.path().join("p.toml"), pipeline).unwrap();
    let mut input = events.join("\n");
    input.push('\n');
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let o = sluice(
        dir.path(),
        &["run", dir.path().join("p.toml").to_str().unwrap()],
    );
    let stderr = ok(&o);
    Run {
        out: read_jsonl(&dir.path().join("out/results.jsonl")),
        late: read_jsonl(&dir.path().join("out/late.jsonl")),
        stderr,
    }
}

fn late_ts(late: &[Value]) -> Vec<i64> {
    late.iter().map(|l| l["ts"].as_i64().unwrap()).collect()
}

const TUMBLING: &[&str] = &[
    r#"{"ts": 1, "key": "a", "v": 1}"#,
    r#"{"ts": 4, "key": "b", "v": 2}"#,
    r#"{"ts": 12, "key": "a", "v": 3}"#,
    r#"{"ts": 7, "key": "a", "v": 4}"#,
    r#"{"ts": 15, "key": "b", "v": 5}"#,
    r#"{"ts": 25, "key": "a", "v": 6}"#,
    r#"{"ts": 18, "key": "b", "v": 7}"#,
    r#"{"ts": 31, "key": "a", "v": 8}"#,
];

#[test]
fn tumbling_continuous() {
    // size 10, delay 5: watermark = max ts − 6.
    // ts 12 -> wm 6; ts 7 is in [0,10) (max ts 9 > 6): accepted.
    // ts 15 -> wm 9: [0,10) fires: a {1,7} = 2/5, b {4} = 1/2.
    // ts 25 -> wm 19: [10,20) fires: a {12} = 1/3, b {15} = 1/5.
    // ts 18 (b): [10,20) max ts 19 <= wm 19: late.
    // ts 31 -> wm 25. End of input: [20,30) a {25} = 1/6, [30,40) a {31} = 1/8.
    let run = run_pipeline(
        "kind = \"tumbling\"\nsize_ms = 10",
        5,
        "continuous",
        TUMBLING,
    );
    assert_eq!(
        run.out,
        [
            r("a", 0, 10, 2, 5),
            r("b", 0, 10, 1, 2),
            r("a", 10, 20, 1, 3),
            r("b", 10, 20, 1, 5),
            r("a", 20, 30, 1, 6),
            r("a", 30, 40, 1, 8),
        ]
    );
    assert_eq!(late_ts(&run.late), [18]);
    assert!(
        run.late[0]["reason"]
            .as_str()
            .unwrap()
            .contains("watermark 19"),
        "{:?}",
        run.late
    );
    assert!(
        run.stderr.contains("late events        1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("windows emitted    6"),
        "{}",
        run.stderr
    );
}

#[test]
fn tumbling_micro_batch() {
    // The whole file is one batch, processed at the initial watermark: nothing is late, so
    // ts 18 joins b's [10,20) (this is where the modes differ), then the end of input fires
    // every window.
    let run = run_pipeline(
        "kind = \"tumbling\"\nsize_ms = 10",
        5,
        "micro-batch",
        TUMBLING,
    );
    assert_eq!(
        sorted(run.out),
        [
            r("a", 0, 10, 2, 5),
            r("b", 0, 10, 1, 2),
            r("a", 10, 20, 1, 3),
            r("b", 10, 20, 2, 12),
            r("a", 20, 30, 1, 6),
            r("a", 30, 40, 1, 8),
        ]
    );
    assert!(run.late.is_empty(), "{:?}", run.late);
    assert!(
        run.stderr.contains("batches            1"),
        "{}",
        run.stderr
    );
}

const HOPPING: &[&str] = &[
    r#"{"ts": 1, "key": "a", "v": 1}"#,
    r#"{"ts": 6, "key": "a", "v": 2}"#,
    r#"{"ts": 3, "key": "a", "v": 4}"#,
    r#"{"ts": 12, "key": "a", "v": 8}"#,
    r#"{"ts": 7, "key": "b", "v": 16}"#,
];

#[test]
fn hopping_continuous() {
    // size 10, slide 5, delay 0 (wm = max ts − 1); ts is in [⌊ts⌋₅ − 5, +10) and [⌊ts⌋₅, +10).
    // ts 1 -> [-5,5), [0,10); wm 0.
    // ts 6 -> [0,10), [5,15); wm 5: [-5,5) fires a {1} = 1/1.
    // ts 3 -> late for [-5,5) (max 4 <= 5) but not for [0,10): accepted there.
    // ts 12 -> [5,15), [10,20); wm 11: [0,10) fires a {1,6,3} = 3/7.
    // ts 7 (b) -> late for [0,10) (9 <= 11), accepted by [5,15).
    // End: [5,15) a {6,12} = 2/10, [5,15) b {7} = 1/16, [10,20) a {12} = 1/8.
    let window = "kind = \"hopping\"\nsize_ms = 10\nslide_ms = 5";
    let run = run_pipeline(window, 0, "continuous", HOPPING);
    assert_eq!(
        run.out,
        [
            r("a", -5, 5, 1, 1),
            r("a", 0, 10, 3, 7),
            r("a", 5, 15, 2, 10),
            r("b", 5, 15, 1, 16),
            r("a", 10, 20, 1, 8),
        ]
    );
    assert!(run.late.is_empty(), "{:?}", run.late);
}

#[test]
fn hopping_micro_batch() {
    // One batch at the initial watermark: every element goes into both its windows.
    let window = "kind = \"hopping\"\nsize_ms = 10\nslide_ms = 5";
    let run = run_pipeline(window, 0, "micro-batch", HOPPING);
    assert_eq!(
        sorted(run.out),
        [
            r("a", -5, 5, 2, 5),
            r("a", 0, 10, 3, 7),
            r("b", 0, 10, 1, 16),
            r("a", 5, 15, 2, 10),
            r("b", 5, 15, 1, 16),
            r("a", 10, 20, 1, 8),
        ]
    );
    assert!(run.late.is_empty());
}

const SESSION: &[&str] = &[
    r#"{"ts": 0, "key": "a", "v": 1}"#,
    r#"{"ts": 5, "key": "a", "v": 2}"#,
    r#"{"ts": 40, "key": "c", "v": 4}"#,
    r#"{"ts": 60, "key": "c", "v": 8}"#,
    r#"{"ts": 50, "key": "c", "v": 16}"#,
    r#"{"ts": 100, "key": "a", "v": 32}"#,
    r#"{"ts": 45, "key": "c", "v": 64}"#,
];

#[test]
fn session_continuous() {
    // gap 10, delay 20 (wm = max ts − 21). Each event opens [ts, ts+10).
    // a: [0,10) + [5,15) intersect -> [0,15).
    // ts 40 -> wm 19: [0,15) fires a = 2/3.
    // c: [40,50) and [60,70); ts 50 opens [50,60), which touches both (Flink's intersects:
    // start <= other.end && end >= other.start) and bridges them into [40,70) (wm 39).
    // ts 100 -> wm 79: [40,70) fires c = 3/28 and is purged.
    // ts 45 (c): its session [45,55) has max ts 54 <= 79: late.
    // End: a [100,110) = 1/32.
    let run = run_pipeline("kind = \"session\"\ngap_ms = 10", 20, "continuous", SESSION);
    assert_eq!(
        run.out,
        [
            r("a", 0, 15, 2, 3),
            r("c", 40, 70, 3, 28),
            r("a", 100, 110, 1, 32)
        ]
    );
    assert_eq!(late_ts(&run.late), [45]);
}

#[test]
fn session_micro_batch() {
    // One batch: ts 45 is not late and merges into c's [40,70) = 4/92.
    let run = run_pipeline(
        "kind = \"session\"\ngap_ms = 10",
        20,
        "micro-batch",
        SESSION,
    );
    assert_eq!(
        sorted(run.out),
        [
            r("a", 0, 15, 2, 3),
            r("c", 40, 70, 4, 92),
            r("a", 100, 110, 1, 32)
        ]
    );
    assert!(run.late.is_empty());
}

#[test]
fn allowed_lateness_refires_then_drops() {
    // tumbling 10, delay 0, allowed lateness 5.
    // ts 1; ts 12 -> wm 11: [0,10) fires a = 1/1 (kept until wm >= 9 + 5 = 14).
    // ts 3: late but allowed (14 > 11): [0,10) fires again with 2/5.
    // ts 16 -> wm 15: [0,10) is purged. ts 5: 9 + 5 = 14 <= 15: late.
    // End: [10,20) a {12,16} = 2/10.
    let events = [
        r#"{"ts": 1, "key": "a", "v": 1}"#,
        r#"{"ts": 12, "key": "a", "v": 2}"#,
        r#"{"ts": 3, "key": "a", "v": 4}"#,
        r#"{"ts": 16, "key": "a", "v": 8}"#,
        r#"{"ts": 5, "key": "a", "v": 16}"#,
    ];
    let window = "kind = \"tumbling\"\nsize_ms = 10\nallowed_lateness_ms = 5";
    let run = run_pipeline(window, 0, "continuous", &events);
    assert_eq!(
        run.out,
        [
            r("a", 0, 10, 1, 1),
            r("a", 0, 10, 2, 5),
            r("a", 10, 20, 2, 10)
        ]
    );
    assert_eq!(late_ts(&run.late), [5]);
}

#[test]
fn bad_input_goes_to_the_late_output_with_a_reason_and_is_counted() {
    let events = [
        r#"{"ts": 1, "key": "a", "v": 1}"#,
        r#"this is not json"#,
        r#"[1, 2]"#,
        r#"{"key": "a", "v": 5}"#,
        r#"{"ts": "soon", "key": "a"}"#,
        r#"{"ts": 2, "v": 1}"#,
        r#"{"ts": 1.5, "key": "a"}"#,
        r#"{"ts": 3, "key": "a", "v": 2}"#,
    ];
    for mode in ["continuous", "micro-batch"] {
        let run = run_pipeline("kind = \"tumbling\"\nsize_ms = 10", 0, mode, &events);
        assert_eq!(run.out, [r("a", 0, 10, 2, 3)], "{mode}");
        assert_eq!(run.late.len(), 6, "{mode}: {:?}", run.late);
        let reasons: Vec<&str> = run
            .late
            .iter()
            .map(|l| l["reason"].as_str().unwrap())
            .collect();
        assert!(reasons[0].contains("not JSON"), "{reasons:?}");
        assert_eq!(run.late[0]["raw"], "this is not json");
        assert_eq!(run.late[0]["offset"], 1);
        assert!(reasons[1].contains("not a JSON object"), "{reasons:?}");
        assert_eq!(run.late[1]["raw"], json!([1, 2]));
        assert!(reasons[2].contains("no field `ts`"), "{reasons:?}");
        assert_eq!(run.late[2]["v"], 5, "original fields are kept");
        assert!(reasons[3].contains("epoch milliseconds"), "{reasons:?}");
        assert!(reasons[4].contains("no field `key`"), "{reasons:?}");
        assert!(reasons[5].contains("fractional"), "{reasons:?}");
        assert!(
            run.stderr.contains("events in          8 (6 bad"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("late events        0"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn unreachable_kafka_cluster_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pipeline = r#"name = "k"
[source]
kind = "kafka"
topic = "clicks"
bootstrap = "127.0.0.1:PORT"
event_time = "ts"
key = "key"
[window]
kind = "tumbling"
size_ms = 10
[[aggregate]]
op = "count"
[sink]
kind = "stdout"
"#;
    let pipeline = pipeline.replace("PORT", &port.to_string());
    std::fs::write(dir.path().join("p.toml"), pipeline).unwrap();
    let o = sluice(
        dir.path(),
        &["run", dir.path().join("p.toml").to_str().unwrap()],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "source topic clicks: cannot reach 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[test]
fn stdout_sink_and_pipeline_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"ts\": 1, \"key\": \"a\"}\n{\"ts\": 2, \"key\": \"a\"}\n",
    )
    .unwrap();
    let pipeline = r#"name = "s"
[source]
kind = "file"
path = "in.jsonl"
event_time = "ts"
key = "key"
[window]
kind = "tumbling"
size_ms = 10
[[aggregate]]
op = "count"
[sink]
kind = "stdout"
"#;
    std::fs::write(dir.path().join("p.toml"), pipeline).unwrap();
    let o = sluice(
        dir.path(),
        &["run", dir.path().join("p.toml").to_str().unwrap()],
    );
    ok(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{\"key\":\"a\",\"window_start\":0,\"window_end\":10,\"count\":2}\n"
    );
    // The default late output is <name>-late.jsonl beside the pipeline file.
    assert!(dir.path().join("s-late.jsonl").exists());
    std::fs::write(
        dir.path().join("bad.toml"),
        pipeline.replace("size_ms = 10", "size_ms = 10\nslide_ms = 5"),
    )
    .unwrap();
    let o = sluice(
        dir.path(),
        &["run", dir.path().join("bad.toml").to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("window.slide_ms"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
