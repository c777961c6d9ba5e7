//! Table-driven golden cases: every `testdata/*.json` file is one case.
//!
//! A case holds a pipeline (TOML lines, parsed by the real pipeline parser), input steps in
//! arrival order, and one or more expectations, each for a set of execution modes. The
//! expected outputs were worked out by hand from Flink's rules; each file's `comment`
//! explains them.
//!
//! Input steps:
//! * `{"event": {...}, "partition": 0, "now": 10}`: an event (partition defaults to 0,
//!   `now`, the processing time, to the previous step's). Offsets count per partition.
//! * `{"batch": true}`: end of a micro-batch (ignored in continuous mode).
//! * `{"tick": 121}`: processing time passes: continuous mode re-evaluates idleness;
//!   micro-batch mode ends the current batch (possibly empty) at that time.
//! * `{"caught_up": 1}`: partition 1 was read to its end offset.
//!
//! A micro-batch is processed at the `now` of its last step. The input ends with +∞.

use std::fs;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use sluice_engine::pipeline::PipelineDef;
use sluice_engine::{ContinuousDriver, Event, MicroBatchDriver, Output};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    comment: Vec<String>,
    pipeline: Vec<String>,
    #[serde(default)]
    partitions: Vec<u32>,
    input: Vec<Step>,
    expect: Vec<Expectation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    event: Option<Value>,
    #[serde(default)]
    partition: u32,
    now: Option<i64>,
    #[serde(default)]
    batch: bool,
    tick: Option<i64>,
    caught_up: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    modes: Vec<String>,
    output: Vec<Value>,
    late: Vec<Value>,
}

#[derive(Debug, Default, PartialEq)]
struct Emitted {
    output: Vec<Value>,
    late: Vec<Value>,
}

impl Emitted {
    fn take(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Result(r) => self.output.push(r.to_json()),
                Output::Late(l) => self.late.push(l.event.value),
            }
        }
    }
}

fn run(case: &Case, mode: &str) -> Emitted {
    let def = PipelineDef::from_toml(&case.pipeline.join("\n")).expect("pipeline parses");
    let fields = def.event_fields();
    let tracker = def.watermark_tracker().unwrap();
    let operator = def.window_operator().unwrap();
    let mut offsets = std::collections::BTreeMap::<u32, i64>::new();
    let mut now = 0;
    let mut emitted = Emitted::default();
    let mut to_event = |step: &Step, value: &Value| {
        let off = offsets.entry(step.partition).or_insert(0);
        *off += 1;
        Event::from_json(value.clone(), &fields, step.partition, *off - 1).expect("valid event")
    };
    match mode {
        "continuous" => {
            let mut d = ContinuousDriver::new(tracker, operator);
            for p in &case.partitions {
                d.add_partition(*p, 0);
            }
            for step in &case.input {
                now = step.now.or(step.tick).unwrap_or(now);
                if let Some(v) = &step.event {
                    let e = to_event(step, v);
                    emitted.take(d.process(e, now));
                }
                if step.tick.is_some() {
                    emitted.take(d.tick(now));
                }
                if let Some(p) = step.caught_up {
                    emitted.take(d.set_caught_up(p, true, now));
                }
            }
            emitted.take(d.finish());
        }
        "micro-batch" => {
            let mut d = MicroBatchDriver::new(tracker, operator);
            for p in &case.partitions {
                d.add_partition(*p, 0);
            }
            let mut batch = Vec::new();
            for step in &case.input {
                now = step.now.or(step.tick).unwrap_or(now);
                if let Some(v) = &step.event {
                    batch.push(to_event(step, v));
                }
                if let Some(p) = step.caught_up {
                    d.set_caught_up(p, true, now);
                }
                if step.batch || step.tick.is_some() {
                    emitted.take(d.process_batch(std::mem::take(&mut batch), now));
                }
            }
            if !batch.is_empty() {
                emitted.take(d.process_batch(batch, now));
            }
            emitted.take(d.finish());
        }
        other => panic!("unknown mode {other}"),
    }
    emitted
}

#[test]
fn golden_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected golden cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut runs = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(file).unwrap();
        let case: Case = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !case.comment.is_empty(),
            "{name}: explain the expected output"
        );
        assert!(!case.expect.is_empty(), "{name}: no expectations");
        for exp in &case.expect {
            for mode in &exp.modes {
                runs += 1;
                let got = run(&case, mode);
                let want = Emitted {
                    output: exp.output.clone(),
                    late: exp.late.clone(),
                };
                if got != want {
                    failures.push(format!(
                        "{name} [{mode}]\n  want output {}\n  got  output {}\n  want late {}\n  got  late {}",
                        serde_json::to_string(&want.output).unwrap(),
                        serde_json::to_string(&got.output).unwrap(),
                        serde_json::to_string(&want.late).unwrap(),
                        serde_json::to_string(&got.late).unwrap(),
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} golden runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
