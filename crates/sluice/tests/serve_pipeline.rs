//! `sluice serve --pipeline FILE`: a pipeline running inside the broker on its own log.
//! Events produced with kcat (Kafka protocol) reach its topic source; its windows land in
//! a topic read back with kcat; SIGTERM stops it cleanly (offsets committed, open windows
//! left for the next run) and a restart loses no window.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{SluiceServer, kcat};
use serde_json::{Value, json};

const PIPELINE: &str = r#"
name = "clicks-per-user"

[source]
kind = "topic"
topic = "clicks"
event_time = "ts"
key = "key"

[watermark]
strategy = "bounded"
max_out_of_orderness_ms = 0

[window]
kind = "tumbling"
size_ms = 10

[[aggregate]]
op = "count"
[[aggregate]]
op = "sum"
field = "v"

[sink]
kind = "topic"
topic = "windows"
"#;

fn produce(server: &SluiceServer, topic: &str, lines: &str) {
    kcat(&["-b", &server.bootstrap(), "-P", "-t", topic], Some(lines));
}

/// Every record of `topic`, values parsed as JSON.
fn read_topic(server: &SluiceServer, topic: &str) -> Vec<Value> {
    kcat(
        &[
            "-b",
            &server.bootstrap(),
            "-C",
            "-t",
            topic,
            "-e",
            "-q",
            "-f",
            "%s\\n",
        ],
        None,
    )
    .lines()
    .filter(|l| !l.is_empty())
    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
    .collect()
}

/// Reads `topic` until it holds at least `n` records (or 60 s pass).
fn wait_for(server: &SluiceServer, topic: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = read_topic(server, topic);
        if got.len() >= n {
            // Give a wrongly repeated emission a moment to show up too.
            std::thread::sleep(Duration::from_millis(1500));
            return read_topic(server, topic);
        }
        assert!(
            Instant::now() < deadline,
            "{topic} has {} of {n} records: {got:?}\n{}",
            got.len(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn window(key: &str, start: i64, count: i64, sum: i64) -> Value {
    json!({"key": key, "window_start": start, "window_end": start + 10, "count": count, "sum": sum})
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|w| {
        (
            w["window_start"].as_i64(),
            w["key"].as_str().map(str::to_owned),
        )
    });
    v
}

fn committed(data: &Path) -> Value {
    let p = data.join("pipelines/clicks-per-user/offsets.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str::<Value>(&text).unwrap()["offsets"].clone()
}

#[test]
fn pipeline_in_serve_processes_kafka_produced_events_and_resumes_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pipeline = dir.path().join("clicks.toml");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    let mut server = SluiceServer::start_with(&data, &["--pipeline", pipeline.to_str().unwrap()]);

    // Tumbling 10 ms, no delay: watermark = max event time − 1.
    // ts 12 moves it to 11: [0,10) fires (a: 1+3 at ts 1, 7; b: 2 at ts 4).
    // ts 23 moves it to 22: [10,20) fires (a: 4 at ts 12; b: 5 at ts 15).
    // [20,30) (a: 6 at ts 23, offset 5) stays open.
    produce(
        &server,
        "clicks",
        concat!(
            "{\"ts\": 1, \"key\": \"a\", \"v\": 1}\n",
            "{\"ts\": 4, \"key\": \"b\", \"v\": 2}\n",
            "{\"ts\": 7, \"key\": \"a\", \"v\": 3}\n",
            "{\"ts\": 12, \"key\": \"a\", \"v\": 4}\n",
            "{\"ts\": 15, \"key\": \"b\", \"v\": 5}\n",
            "{\"ts\": 23, \"key\": \"a\", \"v\": 6}\n",
        ),
    );
    let first = vec![
        window("a", 0, 2, 4),
        window("b", 0, 1, 2),
        window("a", 10, 1, 4),
        window("b", 10, 1, 5),
    ];
    assert_eq!(sorted(wait_for(&server, "windows", 4)), first);

    server.stop(); // SIGTERM; asserts exit status 0
    let log = server.log_text();
    assert!(
        log.contains("started pipeline clicks-per-user")
            && log.contains("stopped pipeline clicks-per-user")
            && log.contains("windows emitted    4")
            && log.contains("sluice serve: stopped cleanly"),
        "{log}"
    );
    // The open window [20,30) holds offset 5: it is re-read after the restart.
    assert_eq!(committed(&data), json!({"0": 5}), "{log}");

    server.restart();
    // Re-read ts 23 (a, 6); ts 27 joins it; ts 31 moves the watermark to 30: [20,30)
    // fires with both events. ts 45 moves it to 44: [30,40) fires (b: 8); [40,50) stays open.
    produce(
        &server,
        "clicks",
        concat!(
            "{\"ts\": 27, \"key\": \"a\", \"v\": 7}\n",
            "{\"ts\": 31, \"key\": \"b\", \"v\": 8}\n",
            "{\"ts\": 45, \"key\": \"a\", \"v\": 9}\n",
        ),
    );
    let mut all = first;
    all.push(window("a", 20, 2, 13));
    all.push(window("b", 30, 1, 8));
    assert_eq!(sorted(wait_for(&server, "windows", 6)), all);
    assert_eq!(
        read_topic(&server, "clicks-per-user-late"),
        Vec::<Value>::new()
    );
    server.stop();
    assert_eq!(committed(&data), json!({"0": 8}), "{}", server.log_text());
}

/// Runs `sluice serve` expecting it to exit at once with an error; returns its stderr.
fn serve_fails(data: &Path, pipeline: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--pipeline"])
        .arg(pipeline)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve kept running with {}: {}",
                pipeline.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("Kafka protocol on"), "listened: {err}");
    err
}

#[test]
fn serve_refuses_a_broken_pipeline_file_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        PIPELINE.replace("size_ms = 10", "size_ms = 10\nsize_msec = 5"),
    )
    .unwrap();
    let err = serve_fails(&data, &bad);
    assert!(
        err.contains("bad.toml") && err.contains("size_msec"),
        "{err}"
    );

    let missing = dir.path().join("missing.toml");
    let err = serve_fails(&data, &missing);
    assert!(
        err.contains("reading pipeline file") && err.contains("missing.toml"),
        "{err}"
    );

    let file_source = dir.path().join("file-source.toml");
    std::fs::write(
        &file_source,
        PIPELINE.replace(
            "kind = \"topic\"\ntopic = \"clicks\"",
            "kind = \"file\"\npath = \"events.jsonl\"",
        ),
    )
    .unwrap();
    let err = serve_fails(&data, &file_source);
    assert!(
        err.contains("file-source.toml") && err.contains("follow mode"),
        "{err}"
    );
}
