//! `sluice run PIPELINE.toml`: the I/O runtime around the pure engine core.
//!
//! Reads records from a source (`sluice-connect`), decodes them into events, drives a
//! [`ContinuousDriver`] or [`MicroBatchDriver`] with wall-clock processing time, writes
//! results to the sink and late/bad events to the late output, and commits source offsets
//! only up to what durable output reflects (at-least-once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use sluice_connect::open::{Connectors, OpenOptions};
use sluice_connect::record::{bad_event_json, decode, late_event_json};
use sluice_connect::{Sink, Source, SourceRecord};
use sluice_engine::pipeline::{PipelineDef, SourceKind, WindowKind};
use sluice_engine::time::MIN_TIME;
use sluice_engine::watermark::AdaptiveStats;
use sluice_engine::{
    ContinuousDriver, Event, ExecutionMode, MicroBatchDriver, Millis, Output, WatermarkTracker,
    WindowOperator,
};

use super::now_ms;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file (TOML). Relative paths inside it are resolved against its
    /// directory.
    pub pipeline: PathBuf,
    /// Topic or kafka source: keep reading new records instead of stopping at the end offsets seen
    /// at start (runs until interrupted; offsets are committed every commit interval).
    #[arg(long)]
    pub follow: bool,
    /// How often output is made durable and source offsets are committed.
    #[arg(long, default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value_t = 5.0)]
    pub progress_secs: f64,
}

/// Reads and validates a pipeline file; returns it with the directory its relative paths
/// are resolved against.
pub fn load_pipeline(path: &Path) -> anyhow::Result<(PipelineDef, PathBuf)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading pipeline file {}", path.display()))?;
    let def = PipelineDef::from_toml(&text)
        .with_context(|| format!("pipeline file {}", path.display()))?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok((def, base_dir))
}

pub fn run(data_dir: &Path, args: RunArgs) -> anyhow::Result<()> {
    let (def, base_dir) = load_pipeline(&args.pipeline)?;
    let mut c = Connectors::open(
        &def,
        &OpenOptions {
            data_dir: data_dir.to_path_buf(),
            base_dir,
            follow: args.follow,
            log: None,
        },
    )
    .with_context(|| format!("pipeline {}", def.name))?;
    for n in &c.notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "running pipeline {} ({}): {} -> {}, late -> {}",
        def.name,
        describe_pipeline(&def),
        c.source.describe(),
        c.sink.describe(),
        c.late.describe()
    );
    let opts = RunOptions {
        commit_every: Duration::from_millis(args.commit_interval_ms),
        progress_every: (args.progress_secs > 0.0)
            .then(|| Duration::from_secs_f64(args.progress_secs)),
        poll_max: 1024,
        stop: None,
    };
    let report = execute(
        &def,
        c.source.as_mut(),
        c.sink.as_mut(),
        c.late.as_mut(),
        &opts,
    );
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<sluice_connect::Error>()
                    .is_some_and(sluice_connect::Error::is_broken_pipe)
            }) {
                return Ok(());
            }
            return Err(e);
        }
    };
    drop(c.source);
    drop(c.sink);
    drop(c.late);
    if let Some(log) = c.log.take()
        && let Ok(log) = std::sync::Arc::try_unwrap(log)
    {
        log.close().context("closing the data directory")?;
    }
    let mut report = report;
    if def.source.kind == SourceKind::File {
        report.committed.clear(); // files have no resumable position
    }
    eprint!("{}", report.summary(&def));
    Ok(())
}

/// "continuous, tumbling 10000 ms, bounded 5000 ms".
pub fn describe_pipeline(def: &PipelineDef) -> String {
    let w = &def.window;
    let window = match w.kind {
        WindowKind::Tumbling => format!("tumbling {} ms", w.size_ms.unwrap_or(0)),
        WindowKind::Hopping => format!(
            "hopping {} ms every {} ms",
            w.size_ms.unwrap_or(0),
            w.slide_ms.unwrap_or(0)
        ),
        WindowKind::Session => format!("session gap {} ms", w.gap_ms.unwrap_or(0)),
    };
    let mode = match def.execution.mode {
        ExecutionMode::Continuous => "continuous".to_string(),
        ExecutionMode::MicroBatch => {
            format!("micro-batch every {} ms", def.execution.trigger_interval_ms)
        }
    };
    format!("{mode}, {window}")
}

/// Runtime knobs that are not part of the pipeline file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How often sinks are flushed and offsets committed.
    pub commit_every: Duration,
    /// Progress lines on stderr at this interval.
    pub progress_every: Option<Duration>,
    /// Records per poll.
    pub poll_max: usize,
    /// When set (by another thread), the run stops: it polls no more, flushes the sinks
    /// and commits what durable output reflects. Windows still open are not fired (the
    /// next run re-reads their events).
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a run did, for the summary and `bench window`.
#[derive(Debug)]
pub struct RunReport {
    pub mode: ExecutionMode,
    pub events_in: u64,
    pub bad_events: u64,
    pub results: u64,
    /// Results fired by idleness, caught-up partitions or the end of input (no
    /// triggering event, so not in the latency histogram).
    pub results_without_trigger: u64,
    pub late_events: u64,
    /// Max event time seen − watermark, before the end-of-input watermark.
    pub watermark_lag_ms: Option<Millis>,
    /// Lateness (ms) of every event: max event time seen before it in its partition − its
    /// event time, 0 when in order.
    pub lateness_ms: Histogram<u64>,
    /// Ingest-to-emit latency of results, in µs.
    pub latency_us: Histogram<u64>,
    pub elapsed: Duration,
    pub adaptive: BTreeMap<u32, AdaptiveStats>,
    pub committed: BTreeMap<u32, i64>,
    pub batches: u64,
}

impl RunReport {
    pub fn events_per_sec(&self) -> f64 {
        self.events_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency quantile in ms (`None` when nothing was measured).
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        (!self.latency_us.is_empty()).then(|| self.latency_us.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn summary(&self, def: &PipelineDef) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3} ms"));
        let _ = writeln!(
            s,
            "pipeline {} finished in {:.2} s ({})",
            def.name,
            self.elapsed.as_secs_f64(),
            describe_pipeline(def)
        );
        let _ = writeln!(
            s,
            "  events in          {} ({} bad, sent to the late/error output)",
            self.events_in, self.bad_events
        );
        let _ = writeln!(
            s,
            "  windows emitted    {} ({} fired by idleness or end of input)",
            self.results, self.results_without_trigger
        );
        let _ = writeln!(s, "  late events        {}", self.late_events);
        let _ = writeln!(
            s,
            "  watermark lag      {}",
            self.watermark_lag_ms
                .map_or("n/a (no watermark yet)".into(), |l| format!("{l} ms"))
        );
        if self.lateness_ms.is_empty() {
            let _ = writeln!(s, "  lateness p50/p99   n/a");
        } else {
            let _ = writeln!(
                s,
                "  lateness p50/p99   {} / {} ms (max {} ms)",
                self.lateness_ms.value_at_quantile(0.5),
                self.lateness_ms.value_at_quantile(0.99),
                self.lateness_ms.max()
            );
        }
        let _ = writeln!(
            s,
            "  throughput         {:.0} events/s",
            self.events_per_sec()
        );
        let _ = writeln!(
            s,
            "  latency p50/p99    {} / {} (ingest to emit, {} results)",
            ms(self.latency_ms(0.5)),
            ms(self.latency_ms(0.99)),
            self.latency_us.len()
        );
        if self.mode == ExecutionMode::MicroBatch {
            let _ = writeln!(s, "  batches            {}", self.batches);
        }
        for (p, a) in &self.adaptive {
            let hist: Vec<String> = thin(&a.delay_history, 12)
                .iter()
                .map(|d| format!("#{}:{}ms", d.event_index, d.delay_ms))
                .collect();
            let _ = writeln!(
                s,
                "  adaptive p{p}       delay now {} ms, late share {:.2}% ({} of {}), delay history {}",
                a.delay_ms,
                a.late_share() * 100.0,
                a.late_events,
                a.events,
                if hist.is_empty() {
                    "-".into()
                } else {
                    hist.join(" ")
                }
            );
        }
        if !self.committed.is_empty() {
            let offs: Vec<String> = self
                .committed
                .iter()
                .map(|(p, o)| format!("{p}:{o}"))
                .collect();
            let _ = writeln!(s, "  committed offsets  {}", offs.join(" "));
        }
        s
    }
}

fn thin<T: Copy>(v: &[T], max: usize) -> Vec<T> {
    if v.len() <= max {
        return v.to_vec();
    }
    let step = v.len().div_ceil(max);
    let mut out: Vec<T> = v.iter().step_by(step).copied().collect();
    if let Some(last) = v.last()
        && v.len() % step != 1
    {
        out.push(*last);
    }
    out
}

enum Driver {
    Continuous(ContinuousDriver),
    MicroBatch(MicroBatchDriver),
}

impl Driver {
    fn tracker(&self) -> &WatermarkTracker {
        match self {
            Driver::Continuous(d) => d.tracker(),
            Driver::MicroBatch(d) => d.tracker(),
        }
    }
    fn operator(&self) -> &WindowOperator {
        match self {
            Driver::Continuous(d) => d.operator(),
            Driver::MicroBatch(d) => d.operator(),
        }
    }
    fn add_partition(&mut self, p: u32, now: Millis) {
        match self {
            Driver::Continuous(d) => d.add_partition(p, now),
            Driver::MicroBatch(d) => d.add_partition(p, now),
        }
    }
    fn set_caught_up(&mut self, p: u32, caught_up: bool, now: Millis) -> Vec<Output> {
        match self {
            Driver::Continuous(d) => d.set_caught_up(p, caught_up, now),
            Driver::MicroBatch(d) => {
                d.set_caught_up(p, caught_up, now);
                Vec::new()
            }
        }
    }
    fn finish(&mut self) -> Vec<Output> {
        match self {
            Driver::Continuous(d) => d.finish(),
            Driver::MicroBatch(d) => d.finish(),
        }
    }
}

/// What made a result fire, to measure ingest-to-emit latency.
enum Trigger<'a> {
    /// Processing this event (ingested at that instant) fired it.
    Event(Instant),
    /// A micro-batch: `(watermark after event i, ingest of event i)`; the result is
    /// attributed to the first event after which the watermark reached its window's end − 1.
    Batch(&'a [(Millis, Instant)]),
    /// Idleness, a caught-up partition or the end of input.
    None,
}

struct Emitter<'a> {
    sink: &'a mut dyn Sink,
    late: &'a mut dyn Sink,
    latency_us: Histogram<u64>,
    results: u64,
    untimed: u64,
    late_events: u64,
}

impl Emitter<'_> {
    fn emit(&mut self, outs: Vec<Output>, trigger: &Trigger<'_>) -> anyhow::Result<()> {
        for o in outs {
            match o {
                Output::Result(r) => {
                    self.sink.write(Some(&r.key), &r.to_json())?;
                    self.results += 1;
                    let ingest = match trigger {
                        Trigger::Event(t) => Some(*t),
                        Trigger::Batch(prog) => {
                            let max_ts = r.window.max_timestamp();
                            let i = prog.partition_point(|(wm, _)| *wm < max_ts);
                            // None: fired by idleness or a caught-up partition.
                            prog.get(i).map(|(_, t)| *t)
                        }
                        Trigger::None => None,
                    };
                    match ingest {
                        Some(t) => {
                            let us = t.elapsed().as_micros().min(u64::MAX as u128) as u64;
                            self.latency_us.saturating_record(us);
                        }
                        None => self.untimed += 1,
                    }
                }
                Output::Late(l) => {
                    self.late.write(Some(&l.event.key), &late_event_json(&l))?;
                    self.late_events += 1;
                }
            }
        }
        Ok(())
    }
}

/// Runs a pipeline from `source` to `sink` / `late` until a bounded source is exhausted
/// or [`RunOptions::stop`] is set (forever when neither happens).
pub fn execute(
    def: &PipelineDef,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    late: &mut dyn Sink,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    let fields = def.event_fields();
    let tracker = def.watermark_tracker()?;
    let operator = def.window_operator()?;
    let mode = def.execution.mode;
    let mut driver = match mode {
        ExecutionMode::Continuous => Driver::Continuous(ContinuousDriver::new(tracker, operator)),
        ExecutionMode::MicroBatch => Driver::MicroBatch(MicroBatchDriver::new(tracker, operator)),
    };
    let interval = Duration::from_millis(def.execution.trigger_interval_ms);
    let partitions = source.partitions();
    let start = Instant::now();
    let now = now_ms();
    for p in &partitions {
        driver.add_partition(*p, now);
    }
    let mut em = Emitter {
        sink,
        late,
        latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        results: 0,
        untimed: 0,
        late_events: 0,
    };
    let mut lateness_ms = Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid bounds");
    let mut max_seen: BTreeMap<u32, Millis> = BTreeMap::new();
    let mut global_max = MIN_TIME;
    let mut caught: BTreeMap<u32, bool> = partitions.iter().map(|p| (*p, false)).collect();
    let mut processed_next: BTreeMap<u32, i64> = BTreeMap::new();
    let mut events_in = 0u64;
    let mut bad = 0u64;
    let mut batches = 0u64;
    let mut polled: Vec<SourceRecord> = Vec::with_capacity(opts.poll_max);
    let mut batch: Vec<Event> = Vec::new();
    let mut batch_ingest: Vec<Instant> = Vec::new();
    let mut batch_start = Instant::now();
    let mut last_commit = Instant::now();
    let mut last_tick = Instant::now();
    let mut last_progress = Instant::now();
    let mut committed: BTreeMap<u32, i64> = BTreeMap::new();
    let mut stopped = false;

    let commit_map = |driver: &Driver, processed_next: &BTreeMap<u32, i64>| {
        let held = driver.operator().lowest_held_offsets();
        processed_next
            .iter()
            .map(|(p, next)| (*p, held.get(p).map_or(*next, |h| (*h).min(*next))))
            .collect::<BTreeMap<u32, i64>>()
    };

    loop {
        for n in source.take_notes() {
            eprintln!("note: {n}");
        }
        polled.clear();
        let stopping = opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Acquire));
        let n = if stopping {
            0
        } else {
            source.poll(opts.poll_max, &mut polled)?
        };
        let ingest = Instant::now();
        let now = now_ms();
        for rec in polled.drain(..) {
            events_in += 1;
            let e = processed_next
                .entry(rec.partition)
                .or_insert(rec.offset + 1);
            *e = (*e).max(rec.offset + 1);
            let ev = match decode(&rec, &fields) {
                Ok(ev) => ev,
                Err(b) => {
                    bad += 1;
                    em.late.write(b.key.as_deref(), &bad_event_json(&b))?;
                    continue;
                }
            };
            let m = max_seen.entry(ev.partition).or_insert(ev.event_time);
            lateness_ms.saturating_record(m.saturating_sub(ev.event_time).max(0) as u64);
            *m = (*m).max(ev.event_time);
            global_max = global_max.max(ev.event_time);
            match &mut driver {
                Driver::Continuous(d) => {
                    let outs = d.process(ev, now);
                    em.emit(outs, &Trigger::Event(ingest))?;
                }
                Driver::MicroBatch(_) => {
                    batch.push(ev);
                    batch_ingest.push(ingest);
                }
            }
        }
        let exhausted = source.is_exhausted();
        let mut settled = true; // nothing polled is waiting in a batch
        match &mut driver {
            Driver::Continuous(d) => {
                if n == 0 || last_tick.elapsed() >= Duration::from_millis(50) {
                    last_tick = Instant::now();
                    let outs = d.tick(now);
                    em.emit(outs, &Trigger::None)?;
                }
            }
            Driver::MicroBatch(d) => {
                if batch_start.elapsed() >= interval || exhausted || stopping {
                    batch_start = Instant::now();
                    batches += 1;
                    let now = now_ms();
                    let mut t = d.tracker().clone();
                    let prog: Vec<(Millis, Instant)> = batch
                        .iter()
                        .zip(&batch_ingest)
                        .map(|(e, i)| {
                            t.observe(e.partition, e.event_time, now);
                            let wm = t.current(now).event_time().unwrap_or(t.last_combined());
                            (wm, *i)
                        })
                        .collect();
                    let outs = d.process_batch(batch.drain(..), now);
                    batch_ingest.clear();
                    em.emit(outs, &Trigger::Batch(&prog))?;
                } else {
                    settled = batch.is_empty();
                }
            }
        }
        if settled {
            // Exact idleness: a partition read to its end cannot hold the watermark back.
            let now = now_ms();
            for (p, c) in caught.iter_mut() {
                let up = source.caught_up(*p);
                // Marking `false` refreshes the partition's activity, so only on a change.
                if up || *c {
                    let outs = driver.set_caught_up(*p, up, now);
                    em.emit(outs, &Trigger::None)?;
                }
                *c = up;
            }
        }
        if exhausted && batch.is_empty() {
            break;
        }
        if stopping {
            stopped = true;
            break;
        }
        if settled && last_commit.elapsed() >= opts.commit_every {
            last_commit = Instant::now();
            em.sink.flush()?;
            em.late.flush()?;
            let m = commit_map(&driver, &processed_next);
            source.commit(&m)?;
            committed.extend(m);
        }
        if let Some(every) = opts.progress_every
            && last_progress.elapsed() >= every
        {
            last_progress = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            let wm = driver.operator().watermark();
            eprintln!(
                "progress: {secs:.1} s, {events_in} events ({:.0}/s), {} windows, {} late, {bad} bad, watermark lag {}",
                events_in as f64 / secs.max(1e-9),
                em.results,
                em.late_events,
                if wm == MIN_TIME {
                    "n/a".into()
                } else {
                    format!("{} ms", global_max.saturating_sub(wm))
                }
            );
        }
        if n == 0 && !exhausted {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // End of a bounded input. Commit only what was reflected in output before the final
    // watermark: the windows it fires now are re-read and re-fired by the next run (which
    // may see more of their events), so a bounded run over part of a topic loses nothing.
    // A stopped run fires nothing more: its open windows are recomputed by the next run.
    let wm = driver.operator().watermark();
    let watermark_lag_ms = (wm != MIN_TIME).then(|| global_max.saturating_sub(wm));
    let before_finish = commit_map(&driver, &processed_next);
    if !stopped {
        let outs = driver.finish();
        em.emit(outs, &Trigger::None)?;
    }
    em.sink.flush()?;
    em.late.flush()?;
    source.commit(&before_finish)?;
    committed.extend(before_finish);
    let elapsed = start.elapsed();
    Ok(RunReport {
        mode,
        events_in,
        bad_events: bad,
        results: em.results,
        results_without_trigger: em.untimed,
        late_events: em.late_events,
        watermark_lag_ms,
        lateness_ms,
        latency_us: em.latency_us,
        elapsed,
        adaptive: driver.tracker().adaptive_stats(),
        committed,
        batches,
    })
}
