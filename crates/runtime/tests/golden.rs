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
//!
//! Each case runs through the pipeline runtime (`Runner`), the loop every pipeline path
//! uses: the steps feed a scripted source, processing time is a manual clock set to each
//! step's `now`, and a micro-batch ends when the clock has moved by the trigger interval,
//! which the harness does at `batch` and `tick` steps only.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sluice_connect::record::BadEvent;
use sluice_connect::{Position, Source, SourceRecord};
use sluice_engine::pipeline::PipelineDef;
use sluice_engine::{LateEvent, WindowResult};
use sluice_runtime::{Engine, ManualClock, Outputs, RunOptions, Runner};

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

/// The runner's outputs, shared with the harness.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Emitted>>);

impl Outputs for Collect {
    fn result(&mut self, r: &WindowResult) -> anyhow::Result<()> {
        self.0.lock().unwrap().output.push(r.to_json());
        Ok(())
    }
    fn late(&mut self, l: &LateEvent) -> anyhow::Result<()> {
        self.0
            .lock()
            .unwrap()
            .late
            .push(l.event.original().into_owned());
        Ok(())
    }
    fn bad(&mut self, b: &BadEvent) -> anyhow::Result<()> {
        anyhow::bail!("golden input is valid: {}", b.reason)
    }
    fn commit(&mut self, _position: &Position) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The steps' events, handed out as the harness pushes them; a partition is caught up
/// from a `caught_up` step until its next event.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<ScriptState>>);

#[derive(Default)]
struct ScriptState {
    partitions: Vec<u32>,
    queue: VecDeque<SourceRecord>,
    offsets: BTreeMap<u32, i64>,
    caught_up: BTreeSet<u32>,
    ended: bool,
}

impl Script {
    fn push(&self, partition: u32, v: &Value) {
        let mut g = self.0.lock().unwrap();
        let off = g.offsets.entry(partition).or_insert(0);
        let offset = *off;
        *off += 1;
        g.caught_up.remove(&partition);
        let bytes = serde_json::to_vec(v).unwrap();
        g.queue
            .push_back(SourceRecord::value(partition, offset, Some(bytes)));
    }
}

impl Source for Script {
    fn partitions(&self) -> Vec<u32> {
        self.0.lock().unwrap().partitions.clone()
    }
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> sluice_connect::Result<usize> {
        let mut g = self.0.lock().unwrap();
        let n = g.queue.len().min(max);
        out.extend(g.queue.drain(..n));
        Ok(n)
    }
    fn caught_up(&self, partition: u32) -> bool {
        self.0.lock().unwrap().caught_up.contains(&partition)
    }
    fn is_exhausted(&self) -> bool {
        let g = self.0.lock().unwrap();
        g.ended && g.queue.is_empty()
    }
    fn commit(&mut self, _offsets: &BTreeMap<u32, i64>) -> sluice_connect::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "golden steps".into()
    }
}

fn run(case: &Case, mode: &str) -> Emitted {
    let mut def = PipelineDef::from_toml(&case.pipeline.join("\n")).expect("pipeline parses");
    def.execution.mode = match mode {
        "continuous" => sluice_engine::ExecutionMode::Continuous,
        "micro-batch" => sluice_engine::ExecutionMode::MicroBatch,
        other => panic!("unknown mode {other}"),
    };
    let interval = Duration::from_millis(def.execution.trigger_interval_ms);
    let micro = mode == "micro-batch";
    let clock = ManualClock::new(0);
    let script = Script::default();
    script.0.lock().unwrap().partitions = case.partitions.clone();
    let out = Collect::default();
    let mut source = script.clone();
    let engine = Engine {
        tracker: def.watermark_tracker().unwrap(),
        operator: def.window_operator().unwrap(),
        mode: def.execution.mode,
        trigger_interval: interval,
    };
    let opts = RunOptions {
        commit_every: Duration::MAX,
        ..RunOptions::default()
    };
    let decoder = sluice_runtime::Decoder::Json(def.event_fields());
    let mut r = Runner::from_parts(
        engine,
        decoder,
        &mut source,
        Box::new(out.clone()),
        opts,
        &clock,
    )
    .unwrap();
    let mut now = 0;
    for step in &case.input {
        now = step.now.or(step.tick).unwrap_or(now);
        clock.set_now_ms(now);
        if let Some(v) = &step.event {
            script.push(step.partition, v);
        }
        if let Some(p) = step.caught_up {
            script.0.lock().unwrap().caught_up.insert(p);
        }
        if micro && (step.batch || step.tick.is_some()) {
            // The trigger interval has passed: this step ends the batch.
            clock.advance(interval);
            clock.set_now_ms(now);
        }
        r.step().unwrap();
    }
    script.0.lock().unwrap().ended = true;
    while r.step().unwrap() != sluice_runtime::Step::Done {}
    r.finish().unwrap();
    std::mem::take(&mut *out.0.lock().unwrap())
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
