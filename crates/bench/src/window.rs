//! `sluice bench window`: generated events through tumbling, hopping and session
//! count+sum aggregation in both execution modes, in process, through the same runtime
//! loop as `sluice run` (JSON decoding included, no files): events/s and ingest-to-emit
//! latency side by side.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Args;
use sluice_connect::{MemorySink, Source, SourceRecord};
use sluice_engine::pipeline::PipelineDef;
use sluice_engine::{ContinuousDriver, Event, Num};

use sluice_runtime::{RunOptions, RunReport, SystemClock, execute};

#[derive(Debug, Args)]
pub struct WindowBenchArgs {
    /// Events per case.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Events per millisecond of event time.
    #[arg(long, default_value_t = 10)]
    pub events_per_ms: u64,
    /// Disorder: a share of events is moved back in event time by up to this many ms (the
    /// watermark bound is set to it, so nothing is late).
    #[arg(long, default_value_t = 200)]
    pub disorder_ms: u64,
    /// Share of events moved back in event time.
    #[arg(long, default_value_t = 0.2)]
    pub disorder_share: f64,
    /// Arrival rate in events/s (0 = as fast as the pipeline takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Micro-batch trigger interval.
    #[arg(long, default_value_t = 100)]
    pub trigger_ms: u64,
    /// Window kinds to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tumbling,hopping,session"
    )]
    pub kinds: Vec<String>,
}

/// Generated JSON events: event time advances `events_per_ms` events per ms, active 700 ms
/// of every 1000 ms (so sessions close), with bounded disorder; random keys and values.
struct Generator {
    total: u64,
    next: u64,
    keys: u64,
    per_ms: u64,
    disorder_ms: u64,
    disorder_share: f64,
    rate: u64,
    started: Option<Instant>,
    rng: u64,
}

impl Generator {
    fn new(a: &WindowBenchArgs, rate: u64) -> Self {
        Generator {
            total: a.events,
            next: 0,
            keys: a.keys.max(1),
            per_ms: a.events_per_ms.max(1),
            disorder_ms: a.disorder_ms,
            disorder_share: a.disorder_share,
            rate,
            started: None,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The next event's (offset, event time, key number, value).
    fn next_event(&mut self) -> (u64, i64, u64, u64) {
        let i = self.next;
        self.next += 1;
        let t = i / self.per_ms;
        let mut ts = 1_700_000_000_000 + t + (t / 700) * 300;
        if (self.rand() % 10_000) as f64 / 10_000.0 < self.disorder_share {
            ts -= self.rand() % (self.disorder_ms + 1);
        }
        let key = self.rand() % self.keys;
        let v = self.rand() % 100;
        (i, ts as i64, key, v)
    }
}

impl Source for Generator {
    fn partitions(&self) -> Vec<u32> {
        vec![0]
    }

    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> sluice_connect::Result<usize> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let mut n = (max as u64).min(self.total - self.next);
        if self.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * self.rate as f64) as u64;
            n = n.min(due.saturating_sub(self.next));
        }
        for _ in 0..n {
            let (i, ts, key, v) = self.next_event();
            out.push(SourceRecord::value(
                0,
                i as i64,
                Some(format!(r#"{{"ts":{ts},"key":"k{key}","v":{v}}}"#).into_bytes()),
            ));
        }
        Ok(n as usize)
    }

    fn caught_up(&self, _partition: u32) -> bool {
        self.next >= self.total
    }

    fn is_exhausted(&self) -> bool {
        self.next >= self.total
    }

    fn commit(&mut self, _offsets: &BTreeMap<u32, i64>) -> sluice_connect::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "generator".into()
    }
}

fn pipeline(kind: &str, mode: &str, a: &WindowBenchArgs) -> anyhow::Result<PipelineDef> {
    let window = match kind {
        "tumbling" => "kind = \"tumbling\"\nsize_ms = 1000".to_string(),
        "hopping" => "kind = \"hopping\"\nsize_ms = 1000\nslide_ms = 250".to_string(),
        "session" => "kind = \"session\"\ngap_ms = 200".to_string(),
        other => anyhow::bail!("unknown window kind {other:?}; use tumbling, hopping, session"),
    };
    let text = format!(
        r#"name = "bench-{kind}"
[source]
kind = "file"
path = "-"
event_time = "ts"
key = "key"
[watermark]
max_out_of_orderness_ms = {disorder}
[window]
{window}
[[aggregate]]
op = "count"
[[aggregate]]
op = "sum"
field = "v"
[sink]
kind = "stdout"
[execution]
mode = "{mode}"
trigger_interval_ms = {trigger}
"#,
        disorder = a.disorder_ms,
        trigger = a.trigger_ms,
    );
    Ok(PipelineDef::from_toml(&text)?)
}

fn measure(kind: &str, mode: &str, a: &WindowBenchArgs) -> anyhow::Result<RunReport> {
    let def = pipeline(kind, mode, a)?;
    let mut source = Generator::new(a, a.rate);
    let mut sink = MemorySink {
        discard: true,
        ..MemorySink::default()
    };
    let mut late = MemorySink::default();
    execute(
        &def,
        &mut source,
        &mut sink,
        &mut late,
        RunOptions::default(),
        &SystemClock::new(),
    )
}

pub fn bench_window(a: WindowBenchArgs) -> anyhow::Result<()> {
    println!(
        "Sluice window aggregation (count + sum), in process, JSON decoding included: {} events, {} keys, {} events/ms of event time, {}% of events up to {} ms out of order, rate {}, micro-batch trigger {} ms",
        a.events,
        a.keys,
        a.events_per_ms,
        a.disorder_share * 100.0,
        a.disorder_ms,
        if a.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{} events/s", a.rate)
        },
        a.trigger_ms
    );
    println!(
        "{:>9} | {:>12} {:>9} {:>9} {:>8} | {:>12} {:>9} {:>9} {:>8}",
        "window",
        "cont. ev/s",
        "p50 ms",
        "p99 ms",
        "results",
        "m-b ev/s",
        "p50 ms",
        "p99 ms",
        "results"
    );
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    for kind in &a.kinds {
        let c = measure(kind, "continuous", &a)?;
        let m = measure(kind, "micro-batch", &a)?;
        for r in [&c, &m] {
            if r.late_events > 0 || r.bad_events > 0 {
                eprintln!(
                    "warning: {kind}: {} late, {} bad events",
                    r.late_events, r.bad_events
                );
            }
        }
        println!(
            "{:>9} | {:>12.0} {:>9} {:>9} {:>8} | {:>12.0} {:>9} {:>9} {:>8}",
            kind,
            c.events_per_sec(),
            f(c.latency_ms(0.5)),
            f(c.latency_ms(0.99)),
            c.results,
            m.events_per_sec(),
            f(m.latency_ms(0.5)),
            f(m.latency_ms(0.99)),
            m.results
        );
    }
    println!(
        "engine core alone (typed events generated in process, continuous driver, results dropped; Flink's datagen -> window -> blackhole counterpart):"
    );
    for kind in &a.kinds {
        let (eps, results) = core_typed(kind, &a)?;
        println!("{kind:>9} | {eps:>12.0} ev/s ({results} results)");
    }
    println!(
        "latency = ingest (the source hands the event over) to emit (result written to the sink), for results fired by an event; results fired at the end of input are not timed"
    );
    Ok(())
}

/// The engine core alone: the same generated events, typed (no JSON text, no runtime
/// loop), straight into a continuous driver, results dropped: the counterpart of Flink's
/// `datagen -> TUMBLE -> blackhole`, where rows are generated typed. Returns events/s and
/// the number of results.
#[inline(never)]
fn core_typed(kind: &str, a: &WindowBenchArgs) -> anyhow::Result<(f64, u64)> {
    let def = pipeline(kind, "continuous", a)?;
    anyhow::ensure!(
        def.aggregates()?.numeric_fields() == ["v"],
        "the typed events below carry exactly the field `v`"
    );
    let mut driver = ContinuousDriver::new(def.watermark_tracker()?, def.window_operator()?);
    driver.add_partition(0, 0);
    let keys: Vec<String> = (0..a.keys.max(1)).map(|k| format!("k{k}")).collect();
    let mut g = Generator::new(a, 0);
    let start = Instant::now();
    let mut results = 0u64;
    while g.next < g.total {
        let (i, ts, key, v) = g.next_event();
        // The pipeline's aggregates read one numeric field, `v` (count + sum of v).
        let e = Event::typed(keys[key as usize].clone(), ts, [Some(Num::Int(v as i64))])
            .at(0, i as i64);
        // Processing time is irrelevant here (no idle timeout fires within a run).
        results += driver.process(e, 0).len() as u64;
    }
    results += driver.finish().len() as u64;
    Ok((a.events as f64 / start.elapsed().as_secs_f64(), results))
}
