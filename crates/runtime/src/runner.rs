//! The run loop: poll the source, decode, drive the engine, write results and late/bad
//! events, commit positions. One [`Runner::step`] is one poll; [`Runner::run`] steps until
//! a bounded source is exhausted or the stop flag is set, waiting on the [`Clock`] when
//! nothing is available.
//!
//! Commit points (at-least-once): every [`RunOptions::commit_every`] of clock time, when
//! nothing polled is waiting in an unfinished micro-batch, the sinks commit the position
//! their output reflects (written output made durable, with the position for sinks that
//! store it) and then the source commits it. The position of a partition is the lowest
//! offset an open window still holds, or the next offset to read when it holds none: a
//! restart re-reads what open windows held and loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use sluice_connect::record::{BadEvent, bad_event_json, decode, late_event_json};
use sluice_connect::{Position, Sink, Source, SourceRecord};
use sluice_engine::pipeline::PipelineDef;
use sluice_engine::time::MIN_TIME;
use sluice_engine::{
    Aggregate, Aggregates, ContinuousDriver, Event, EventFields, ExecutionMode, LateEvent,
    MicroBatchDriver, Millis, Output, WatermarkTracker, WindowOperator, WindowResult,
};

use crate::clock::Clock;
use crate::report::RunReport;

/// Runtime knobs that are not part of the pipeline file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How often sinks are committed and source positions with them.
    pub commit_every: Duration,
    /// Progress lines on stderr at this interval.
    pub progress_every: Option<Duration>,
    /// Records per poll.
    pub poll_max: usize,
    /// When set (by another thread), the run stops: it polls no more, commits the sinks
    /// and the positions their output reflects. Windows still open are not fired (the
    /// next run re-reads their events).
    pub stop: Option<Arc<AtomicBool>>,
    /// How long to sleep when the source has nothing and cannot be waited on.
    pub idle_wait: Duration,
    /// How long at most to wait for a source that can be waited on
    /// ([`Source::wait_for_data`]: the embedded topic source in follow mode), bounded
    /// further by the next micro-batch trigger and the next commit.
    pub wait_for_data: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            commit_every: Duration::from_secs(1),
            progress_every: None,
            poll_max: 1024,
            stop: None,
            idle_wait: Duration::from_millis(1),
            wait_for_data: Duration::from_millis(20),
        }
    }
}

/// What one [`Runner::step`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Records were polled (or a batch is pending): step again.
    Busy,
    /// The source had nothing: [`Runner::run`] waits [`RunOptions::idle_wait`].
    Idle,
    /// A bounded source is exhausted or the run was stopped: call [`Runner::finish`].
    Done,
}

/// A caller's decoding function: an event, or a bad event with its reason.
pub type DecodeFn<'d> = Box<dyn FnMut(&SourceRecord) -> Result<Event, Box<BadEvent>> + 'd>;

/// How the runtime turns a source record into an event.
pub enum Decoder<'d> {
    /// JSON values with the pipeline's event-time, key and number fields.
    Json(EventFields),
    /// A caller's function (the builder API's closures). An error is a bad event.
    Custom(DecodeFn<'d>),
}

impl std::fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decoder::Json(fields) => f.debug_tuple("Json").field(fields).finish(),
            Decoder::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Where a run's outputs go: window results, late events and bad records, and the
/// commit of what was written with the position it reflects.
pub trait Outputs {
    /// A window result.
    fn result(&mut self, r: &WindowResult) -> anyhow::Result<()>;
    /// An event that arrived after every window it belongs to had closed.
    fn late(&mut self, l: &LateEvent) -> anyhow::Result<()>;
    /// A record that is not a valid event.
    fn bad(&mut self, b: &BadEvent) -> anyhow::Result<()>;
    /// Makes what was written durable with `position` (see [`Sink::commit`]).
    fn commit(&mut self, position: &Position) -> anyhow::Result<()>;
    /// The position stored by an earlier run's last commit, if the outputs store it.
    fn committed_position(&mut self) -> anyhow::Result<Option<Position>> {
        Ok(None)
    }
}

/// A pipeline's two sinks: results as JSON keyed by the window key; late and bad events
/// as their original JSON with a `reason`.
struct SinkOutputs<'a> {
    sink: &'a mut dyn Sink,
    late: &'a mut dyn Sink,
}

impl Outputs for SinkOutputs<'_> {
    fn result(&mut self, r: &WindowResult) -> anyhow::Result<()> {
        Ok(self.sink.write(Some(&r.key), &r.to_json())?)
    }
    fn late(&mut self, l: &LateEvent) -> anyhow::Result<()> {
        Ok(self.late.write(Some(&l.event.key), &late_event_json(l))?)
    }
    fn bad(&mut self, b: &BadEvent) -> anyhow::Result<()> {
        Ok(self.late.write(b.key.as_deref(), &bad_event_json(b))?)
    }
    fn commit(&mut self, position: &Position) -> anyhow::Result<()> {
        self.sink.commit(position)?;
        self.late.commit(position)?;
        Ok(())
    }
    fn committed_position(&mut self) -> anyhow::Result<Option<Position>> {
        Ok(self.sink.committed_position()?)
    }
}

enum Driver<A: Aggregate> {
    Continuous(ContinuousDriver<A>),
    MicroBatch(MicroBatchDriver<A>),
}

impl<A: Aggregate> Driver<A> {
    fn tracker(&self) -> &WatermarkTracker {
        match self {
            Driver::Continuous(d) => d.tracker(),
            Driver::MicroBatch(d) => d.tracker(),
        }
    }
    fn operator(&self) -> &WindowOperator<A> {
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
    /// Processing this event (ingested at that clock time) fired it.
    Event(Duration),
    /// A micro-batch: `(watermark after event i, ingest of event i)`; the result is
    /// attributed to the first event after which the watermark reached its window's end − 1.
    Batch(&'a [(Millis, Duration)]),
    /// Idleness, a caught-up partition or the end of input.
    None,
}

struct Emitter<'a> {
    out: Box<dyn Outputs + 'a>,
    clock: &'a dyn Clock,
    latency_us: Histogram<u64>,
    results: u64,
    untimed: u64,
    late_events: u64,
}

impl Emitter<'_> {
    fn emit(&mut self, outs: Vec<Output>, trigger: &Trigger<'_>) -> anyhow::Result<()> {
        if outs.is_empty() {
            return Ok(());
        }
        let now = self.clock.elapsed();
        for o in outs {
            match o {
                Output::Result(r) => {
                    self.out.result(&r)?;
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
                            let us = now.saturating_sub(t).as_micros().min(u64::MAX as u128);
                            self.latency_us.saturating_record(us as u64);
                        }
                        None => self.untimed += 1,
                    }
                }
                Output::Late(l) => {
                    self.out.late(&l)?;
                    self.late_events += 1;
                }
            }
        }
        Ok(())
    }
}

/// A pipeline being run: the engine's driver between a source and its outputs, stepped.
pub struct Runner<'a, A: Aggregate = Aggregates> {
    decoder: Decoder<'a>,
    mode: ExecutionMode,
    interval: Duration,
    opts: RunOptions,
    driver: Driver<A>,
    source: &'a mut dyn Source,
    em: Emitter<'a>,
    clock: &'a dyn Clock,
    lateness_ms: Histogram<u64>,
    max_seen: BTreeMap<u32, Millis>,
    global_max: Millis,
    caught: BTreeMap<u32, bool>,
    processed_next: BTreeMap<u32, i64>,
    events_in: u64,
    bad: u64,
    batches: u64,
    polled: Vec<SourceRecord>,
    batch: Vec<Event>,
    batch_ingest: Vec<Duration>,
    start: Duration,
    batch_start: Duration,
    last_commit: Duration,
    last_tick: Duration,
    last_progress: Duration,
    committed: BTreeMap<u32, i64>,
    stopped: bool,
    resumed_from: Option<Position>,
}

impl<A: Aggregate> std::fmt::Debug for Runner<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("mode", &self.mode)
            .field("source", &self.source.describe())
            .field("events_in", &self.events_in)
            .finish_non_exhaustive()
    }
}

impl<'a> Runner<'a, Aggregates> {
    /// Prepares a run of `def` (JSON events) from `source` to `sink` (results) and `late`
    /// (late and bad events). When `sink` stores its position with its output
    /// ([`Sink::committed_position`]), the source is first moved there.
    pub fn new(
        def: &PipelineDef,
        source: &'a mut dyn Source,
        sink: &'a mut dyn Sink,
        late: &'a mut dyn Sink,
        opts: RunOptions,
        clock: &'a dyn Clock,
    ) -> anyhow::Result<Self> {
        let decoder = Decoder::Json(def.event_fields());
        Runner::from_parts(
            Engine {
                tracker: def.watermark_tracker()?,
                operator: def.window_operator()?,
                mode: def.execution.mode,
                trigger_interval: Duration::from_millis(def.execution.trigger_interval_ms),
            },
            decoder,
            source,
            Box::new(SinkOutputs { sink, late }),
            opts,
            clock,
        )
    }
}

/// The engine parts a run drives.
#[derive(Debug)]
pub struct Engine<A: Aggregate = Aggregates> {
    /// Watermark generation per partition.
    pub tracker: WatermarkTracker,
    /// The window operator with its aggregate.
    pub operator: WindowOperator<A>,
    /// Continuous or micro-batch.
    pub mode: ExecutionMode,
    /// Micro-batch trigger interval.
    pub trigger_interval: Duration,
}

impl<'a, A: Aggregate> Runner<'a, A> {
    /// A run from engine parts and any [`Outputs`] (the builder API, which has no pipeline
    /// file and collects typed results).
    pub fn from_parts(
        engine: Engine<A>,
        decoder: Decoder<'a>,
        source: &'a mut dyn Source,
        mut out: Box<dyn Outputs + 'a>,
        opts: RunOptions,
        clock: &'a dyn Clock,
    ) -> anyhow::Result<Self> {
        let Engine {
            tracker,
            operator,
            mode,
            trigger_interval,
        } = engine;
        let resumed_from = out.committed_position()?;
        if let Some(p) = &resumed_from {
            source.seek(&p.offsets)?;
        }
        let mut driver = match mode {
            ExecutionMode::Continuous => {
                Driver::Continuous(ContinuousDriver::new(tracker, operator))
            }
            ExecutionMode::MicroBatch => {
                Driver::MicroBatch(MicroBatchDriver::new(tracker, operator))
            }
        };
        let partitions = source.partitions();
        let now = clock.now_ms();
        for p in &partitions {
            driver.add_partition(*p, now);
        }
        let start = clock.elapsed();
        Ok(Self {
            decoder,
            mode,
            interval: trigger_interval,
            driver,
            em: Emitter {
                out,
                clock,
                latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
                results: 0,
                untimed: 0,
                late_events: 0,
            },
            source,
            clock,
            lateness_ms: Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid bounds"),
            max_seen: BTreeMap::new(),
            global_max: MIN_TIME,
            caught: partitions.iter().map(|p| (*p, false)).collect(),
            processed_next: BTreeMap::new(),
            events_in: 0,
            bad: 0,
            batches: 0,
            polled: Vec::with_capacity(opts.poll_max),
            batch: Vec::new(),
            batch_ingest: Vec::new(),
            start,
            batch_start: start,
            last_commit: start,
            last_tick: start,
            last_progress: start,
            committed: BTreeMap::new(),
            stopped: false,
            resumed_from,
            opts,
        })
    }

    /// The position a commit right now would record: per partition, the lowest offset an
    /// open window holds, else the next offset after what was processed.
    pub fn position(&self) -> Position {
        let held = self.driver.operator().lowest_held_offsets();
        Position {
            offsets: self
                .processed_next
                .iter()
                .map(|(p, next)| (*p, held.get(p).map_or(*next, |h| (*h).min(*next))))
                .collect(),
        }
    }

    /// The position the sink held when the run started (it resumed there), if any.
    pub fn resumed_from(&self) -> Option<&Position> {
        self.resumed_from.as_ref()
    }

    /// Events polled so far.
    pub fn events_in(&self) -> u64 {
        self.events_in
    }

    /// The current event-time watermark (`MIN_TIME` before the first).
    pub fn watermark(&self) -> Millis {
        self.driver.operator().watermark()
    }

    fn commit(&mut self, position: Position) -> anyhow::Result<()> {
        self.em.out.commit(&position)?;
        self.source.commit(&position.offsets)?;
        self.committed.extend(position.offsets);
        Ok(())
    }

    /// One poll and what follows from it: processing, batch triggers, idleness, a due
    /// commit and progress line.
    pub fn step(&mut self) -> anyhow::Result<Step> {
        for n in self.source.take_notes() {
            eprintln!("note: {n}");
        }
        self.polled.clear();
        let stopping = self
            .opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Acquire));
        let n = if stopping {
            0
        } else {
            self.source.poll(self.opts.poll_max, &mut self.polled)?
        };
        let ingest = self.clock.elapsed();
        let now = self.clock.now_ms();
        for rec in self.polled.drain(..) {
            self.events_in += 1;
            let e = self
                .processed_next
                .entry(rec.partition)
                .or_insert(rec.offset + 1);
            *e = (*e).max(rec.offset + 1);
            let decoded = match &mut self.decoder {
                Decoder::Json(fields) => decode(&rec, fields),
                Decoder::Custom(f) => f(&rec),
            };
            let ev = match decoded {
                Ok(ev) => ev,
                Err(b) => {
                    self.bad += 1;
                    self.em.out.bad(&b)?;
                    continue;
                }
            };
            let m = self.max_seen.entry(ev.partition).or_insert(ev.event_time);
            self.lateness_ms
                .saturating_record(m.saturating_sub(ev.event_time).max(0) as u64);
            *m = (*m).max(ev.event_time);
            self.global_max = self.global_max.max(ev.event_time);
            match &mut self.driver {
                Driver::Continuous(d) => {
                    let outs = d.process(ev, now);
                    self.em.emit(outs, &Trigger::Event(ingest))?;
                }
                Driver::MicroBatch(_) => {
                    self.batch.push(ev);
                    self.batch_ingest.push(ingest);
                }
            }
        }
        let exhausted = self.source.is_exhausted();
        let mut settled = true; // nothing polled is waiting in a batch
        let t = self.clock.elapsed();
        match &mut self.driver {
            Driver::Continuous(d) => {
                if n == 0 || t.saturating_sub(self.last_tick) >= Duration::from_millis(50) {
                    self.last_tick = t;
                    let outs = d.tick(now);
                    self.em.emit(outs, &Trigger::None)?;
                }
            }
            Driver::MicroBatch(d) => {
                if t.saturating_sub(self.batch_start) >= self.interval || exhausted || stopping {
                    self.batch_start = t;
                    self.batches += 1;
                    let now = self.clock.now_ms();
                    let mut tr = d.tracker().clone();
                    let prog: Vec<(Millis, Duration)> = self
                        .batch
                        .iter()
                        .zip(&self.batch_ingest)
                        .map(|(e, i)| {
                            tr.observe(e.partition, e.event_time, now);
                            let wm = tr.current(now).event_time().unwrap_or(tr.last_combined());
                            (wm, *i)
                        })
                        .collect();
                    let outs = d.process_batch(self.batch.drain(..), now);
                    self.batch_ingest.clear();
                    self.em.emit(outs, &Trigger::Batch(&prog))?;
                } else {
                    settled = self.batch.is_empty();
                }
            }
        }
        if settled {
            // Exact idleness: a partition read to its end cannot hold the watermark back.
            let now = self.clock.now_ms();
            for (p, c) in self.caught.iter_mut() {
                let up = self.source.caught_up(*p);
                // Marking `false` refreshes the partition's activity, so only on a change.
                if up || *c {
                    let outs = self.driver.set_caught_up(*p, up, now);
                    self.em.emit(outs, &Trigger::None)?;
                }
                *c = up;
            }
        }
        if exhausted && self.batch.is_empty() {
            return Ok(Step::Done);
        }
        if stopping {
            self.stopped = true;
            return Ok(Step::Done);
        }
        let t = self.clock.elapsed();
        if settled && t.saturating_sub(self.last_commit) >= self.opts.commit_every {
            self.last_commit = t;
            let pos = self.position();
            self.commit(pos)?;
        }
        if let Some(every) = self.opts.progress_every
            && t.saturating_sub(self.last_progress) >= every
        {
            self.last_progress = t;
            eprintln!("{}", self.progress_line());
        }
        Ok(if n == 0 && !exhausted {
            Step::Idle
        } else {
            Step::Busy
        })
    }

    /// How long an idle run may wait for data before something else falls due: the next
    /// commit or the next micro-batch trigger.
    fn wait_budget(&self) -> Duration {
        let t = self.clock.elapsed();
        let mut wait = self.opts.wait_for_data.min(
            self.opts
                .commit_every
                .saturating_sub(t.saturating_sub(self.last_commit)),
        );
        if matches!(self.driver, Driver::MicroBatch(_)) {
            wait = wait.min(
                self.interval
                    .saturating_sub(t.saturating_sub(self.batch_start)),
            );
        }
        wait
    }

    fn progress_line(&self) -> String {
        let secs = self
            .clock
            .elapsed()
            .saturating_sub(self.start)
            .as_secs_f64();
        let wm = self.driver.operator().watermark();
        format!(
            "progress: {secs:.1} s, {} events ({:.0}/s), {} windows, {} late, {} bad, watermark lag {}",
            self.events_in,
            self.events_in as f64 / secs.max(1e-9),
            self.em.results,
            self.em.late_events,
            self.bad,
            if wm == MIN_TIME {
                "n/a".into()
            } else {
                format!("{} ms", self.global_max.saturating_sub(wm))
            }
        )
    }

    /// Steps until done, waiting on the clock whenever the source has nothing, then
    /// finishes.
    pub fn run(mut self) -> anyhow::Result<RunReport> {
        loop {
            match self.step()? {
                Step::Busy => {}
                Step::Idle => {
                    let wait = self.wait_budget();
                    if wait.is_zero() || !self.source.wait_for_data(wait) {
                        self.clock.sleep(self.opts.idle_wait);
                    }
                }
                Step::Done => break,
            }
        }
        self.finish()
    }

    /// Ends the run. After a bounded input: the position is committed as it was before
    /// the final watermark, so the windows it fires now are re-read and re-fired by the
    /// next run (which may see more of their events) and a bounded run over part of a
    /// topic loses nothing. A stopped run fires nothing more: its open windows are
    /// recomputed by the next run.
    pub fn finish(mut self) -> anyhow::Result<RunReport> {
        let wm = self.driver.operator().watermark();
        let watermark_lag_ms = (wm != MIN_TIME).then(|| self.global_max.saturating_sub(wm));
        let before_finish = self.position();
        if !self.stopped {
            let outs = self.driver.finish();
            self.em.emit(outs, &Trigger::None)?;
        }
        self.commit(before_finish)?;
        Ok(RunReport {
            mode: self.mode,
            events_in: self.events_in,
            bad_events: self.bad,
            results: self.em.results,
            results_without_trigger: self.em.untimed,
            late_events: self.em.late_events,
            watermark_lag_ms,
            lateness_ms: self.lateness_ms,
            latency_us: self.em.latency_us,
            elapsed: self.clock.elapsed().saturating_sub(self.start),
            adaptive: self.driver.tracker().adaptive_stats(),
            committed: self.committed,
            batches: self.batches,
            operator: self.driver.operator().stats(),
        })
    }
}

/// Runs `def` from `source` to `sink` / `late` until a bounded source is exhausted or
/// [`RunOptions::stop`] is set (forever when neither happens).
pub fn execute(
    def: &PipelineDef,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    late: &mut dyn Sink,
    opts: RunOptions,
    clock: &dyn Clock,
) -> anyhow::Result<RunReport> {
    Runner::new(def, source, sink, late, opts, clock)?.run()
}
