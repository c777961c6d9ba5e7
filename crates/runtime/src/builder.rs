//! A small Rust API over the engine: source → assign timestamps/watermarks → key_by →
//! window → aggregate → sink, with user `map`/`filter` closures.
//!
//! Items are JSON values; the whole pipeline runs synchronously when a sink is attached,
//! through the same [`crate::Runner`] as `sluice run` (an in-memory source, a manual clock
//! standing still: processing time plays no part).
//!
//! ```
//! use serde_json::json;
//! use sluice_runtime::builder::Stream;
//! use sluice_engine::{AggregateSpec, Aggregates, WatermarkStrategy, WindowAssigner};
//!
//! let clicks = vec![
//!     json!({"user": "ann", "ts": 1_000, "ms": 30}),
//!     json!({"user": "bob", "ts": 2_000, "ms": 10}),
//!     json!({"user": "ann", "ts": 9_000, "ms": 50}),
//!     json!({"user": "ann", "ts": 500, "ms": -1}),   // filtered out below
//!     json!({"user": "ann", "ts": 12_000, "ms": 5}),
//! ];
//! let mut results = Vec::new();
//! let report = Stream::source(clicks)
//!     .filter(|e| e["ms"].as_i64().is_some_and(|ms| ms >= 0))
//!     .map(|mut e| {
//!         e["seconds"] = json!(e["ms"].as_f64().unwrap_or(0.0) / 1000.0);
//!         e
//!     })
//!     .assign_timestamps(|e| e["ts"].as_i64(), WatermarkStrategy::bounded(1_000))
//!     .key_by(|e| e["user"].as_str().map(str::to_owned))
//!     .window(WindowAssigner::tumbling(10_000)?)
//!     .aggregate(Aggregates::new(vec![AggregateSpec::count(), AggregateSpec::max("ms")])?)
//!     .sink_into(&mut results)?;
//!
//! let lines: Vec<_> = results.iter().map(|r| r.to_json()).collect();
//! assert_eq!(lines, vec![
//!     json!({"key": "ann", "window_start": 0, "window_end": 10_000, "count": 2, "max": 50}),
//!     json!({"key": "bob", "window_start": 0, "window_end": 10_000, "count": 1, "max": 10}),
//!     json!({"key": "ann", "window_start": 10_000, "window_end": 20_000, "count": 1, "max": 5}),
//! ]);
//! assert!(report.late.is_empty());
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use sluice_connect::record::BadEvent;
use sluice_connect::{Position, Source, SourceRecord};
use sluice_engine::operator::OperatorStats;
use sluice_engine::{
    Aggregate, Event, ExecutionMode, LateEvent, Millis, WatermarkStrategy, WatermarkTracker,
    WindowAssigner, WindowOperator, WindowResult,
};

use crate::clock::ManualClock;
use crate::runner::{Decoder, Engine, Outputs, RunOptions, Runner};

type Items<'a> = Box<dyn Iterator<Item = Value> + 'a>;
type TimestampFn<'a> = Box<dyn Fn(&Value) -> Option<Millis> + 'a>;
type KeyFn<'a> = Box<dyn Fn(&Value) -> Option<String> + 'a>;

/// A stream of JSON items.
pub struct Stream<'a> {
    items: Items<'a>,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stream")
    }
}

impl<'a> Stream<'a> {
    /// A stream over any iterator of JSON items (in arrival order).
    pub fn source(items: impl IntoIterator<Item = Value> + 'a) -> Self {
        Self {
            items: Box::new(items.into_iter()),
        }
    }

    /// Transforms each item.
    pub fn map(self, f: impl FnMut(Value) -> Value + 'a) -> Self {
        Self {
            items: Box::new(self.items.map(f)),
        }
    }

    /// Keeps the items for which `f` is true.
    pub fn filter(self, mut f: impl FnMut(&Value) -> bool + 'a) -> Self {
        Self {
            items: Box::new(self.items.filter(move |v| f(v))),
        }
    }

    /// Reads each item's event time with `f` and generates watermarks with `strategy`.
    pub fn assign_timestamps(
        self,
        f: impl Fn(&Value) -> Option<Millis> + 'a,
        strategy: WatermarkStrategy,
    ) -> TimestampedStream<'a> {
        TimestampedStream {
            items: self.items,
            timestamp: Box::new(f),
            strategy,
        }
    }
}

/// A stream with event times and a watermark strategy.
pub struct TimestampedStream<'a> {
    items: Items<'a>,
    timestamp: TimestampFn<'a>,
    strategy: WatermarkStrategy,
}

impl std::fmt::Debug for TimestampedStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimestampedStream")
            .field("strategy", &self.strategy)
            .finish()
    }
}

impl<'a> TimestampedStream<'a> {
    /// Groups by the key `f` returns.
    pub fn key_by(self, f: impl Fn(&Value) -> Option<String> + 'a) -> KeyedStream<'a> {
        KeyedStream {
            inner: self,
            key: Box::new(f),
        }
    }
}

/// A keyed stream.
pub struct KeyedStream<'a> {
    inner: TimestampedStream<'a>,
    key: KeyFn<'a>,
}

impl std::fmt::Debug for KeyedStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStream")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<'a> KeyedStream<'a> {
    /// Windows the keyed stream.
    pub fn window(self, assigner: WindowAssigner) -> WindowedStream<'a> {
        WindowedStream {
            keyed: self,
            assigner,
            allowed_lateness_ms: 0,
        }
    }
}

/// A windowed keyed stream.
#[derive(Debug)]
pub struct WindowedStream<'a> {
    keyed: KeyedStream<'a>,
    assigner: WindowAssigner,
    allowed_lateness_ms: u64,
}

impl<'a> WindowedStream<'a> {
    /// Keeps windows open for late events this long after they fire (default 0).
    pub fn allowed_lateness(mut self, ms: u64) -> Self {
        self.allowed_lateness_ms = ms;
        self
    }

    /// Aggregates each window with `aggregate` (built-in [`sluice_engine::Aggregates`] or a user
    /// [`Aggregate`]).
    pub fn aggregate<A: Aggregate>(self, aggregate: A) -> AggregatedStream<'a, A> {
        AggregatedStream {
            windowed: self,
            aggregate,
            batch_size: None,
        }
    }
}

/// A windowed aggregation ready to run.
pub struct AggregatedStream<'a, A: Aggregate> {
    windowed: WindowedStream<'a>,
    aggregate: A,
    batch_size: Option<usize>,
}

impl<A: Aggregate> std::fmt::Debug for AggregatedStream<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatedStream")
            .field("windowed", &self.windowed)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

/// What a run produced besides the results.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Events sent to the late output.
    pub late: Vec<Event>,
    /// Operator counters.
    pub stats: OperatorStats,
}

impl<A: Aggregate> AggregatedStream<'_, A> {
    /// Runs in micro-batch mode with batches of `events` items instead of continuously.
    pub fn micro_batch(mut self, events: usize) -> Self {
        self.batch_size = Some(events.max(1));
        self
    }

    /// Runs the pipeline to the end of its input, appending window results to `sink`.
    /// Fails on the first item without an event time or key.
    pub fn sink_into(self, sink: &mut Vec<WindowResult>) -> anyhow::Result<RunReport> {
        let AggregatedStream {
            windowed,
            aggregate,
            batch_size,
        } = self;
        let KeyedStream { inner, key } = windowed.keyed;
        let engine = Engine {
            tracker: WatermarkTracker::new(inner.strategy, None),
            operator: WindowOperator::new(
                windowed.assigner,
                windowed.allowed_lateness_ms,
                aggregate,
            ),
            mode: if batch_size.is_some() {
                ExecutionMode::MicroBatch
            } else {
                ExecutionMode::Continuous
            },
            // Every poll is one batch (of at most `batch_size` items).
            trigger_interval: Duration::ZERO,
        };
        let timestamp = inner.timestamp;
        let decoder = Decoder::Custom(Box::new(move |rec: &SourceRecord| {
            let i = rec.offset;
            let bad = |reason: String| {
                Box::new(BadEvent {
                    original: Value::Null,
                    key: None,
                    reason,
                    partition: rec.partition,
                    offset: rec.offset,
                })
            };
            let v: Value = rec
                .payload
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .ok_or_else(|| bad(format!("item {i} is not JSON")))?;
            let ts = timestamp(&v).ok_or_else(|| {
                bad(format!(
                    "(assign_timestamps) gave no event time for item {i}"
                ))
            })?;
            let k = key(&v).ok_or_else(|| bad(format!("(key_by) gave no key for item {i}")))?;
            Ok(Event::new(k, ts, v).at(0, i))
        }));
        let mut items = inner.items;
        let mut source = ItemSource {
            ahead: items.next(),
            items,
            next: 0,
        };
        let mut late = Vec::new();
        let outputs = Collect {
            results: sink,
            late: &mut late,
        };
        let clock = ManualClock::new(0);
        let opts = RunOptions {
            commit_every: Duration::MAX,
            poll_max: batch_size.unwrap_or(1024),
            ..RunOptions::default()
        };
        let runner = Runner::from_parts(
            engine,
            decoder,
            &mut source,
            Box::new(outputs),
            opts,
            &clock,
        )?;
        let report = runner.run()?;
        Ok(RunReport {
            late,
            stats: report.operator,
        })
    }
}

/// The builder's items as a single-partition source, serialized as the JSON a topic
/// would hold.
struct ItemSource<'a> {
    items: Items<'a>,
    /// The next item (read ahead, so exhaustion is known).
    ahead: Option<Value>,
    next: i64,
}

impl Source for ItemSource<'_> {
    fn partitions(&self) -> Vec<u32> {
        vec![0]
    }
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> sluice_connect::Result<usize> {
        let mut n = 0;
        while n < max {
            let Some(v) = self.ahead.take() else { break };
            self.ahead = self.items.next();
            let bytes = serde_json::to_vec(&v).expect("JSON values serialize");
            out.push(SourceRecord::value(0, self.next, Some(bytes)));
            self.next += 1;
            n += 1;
        }
        Ok(n)
    }
    fn caught_up(&self, _partition: u32) -> bool {
        false
    }
    fn is_exhausted(&self) -> bool {
        self.ahead.is_none()
    }
    fn commit(&mut self, _offsets: &BTreeMap<u32, i64>) -> sluice_connect::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "builder items".into()
    }
}

/// Results and late events kept typed; a bad item ends the run with its reason.
struct Collect<'a> {
    results: &'a mut Vec<WindowResult>,
    late: &'a mut Vec<Event>,
}

impl Outputs for Collect<'_> {
    fn result(&mut self, r: &WindowResult) -> anyhow::Result<()> {
        self.results.push(r.clone());
        Ok(())
    }
    fn late(&mut self, l: &LateEvent) -> anyhow::Result<()> {
        self.late.push(l.event.clone());
        Ok(())
    }
    fn bad(&mut self, b: &BadEvent) -> anyhow::Result<()> {
        anyhow::bail!("{}", b.reason)
    }
    fn commit(&mut self, _position: &Position) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_engine::{AggregateSpec, Aggregates};

    /// A user aggregate: distinct values of a field.
    #[derive(Debug)]
    struct Distinct(&'static str);

    impl Aggregate for Distinct {
        type Acc = std::collections::BTreeSet<String>;
        fn create(&self) -> Self::Acc {
            Default::default()
        }
        fn add(&self, acc: &mut Self::Acc, event: &Event) {
            acc.insert(event.value[self.0].to_string());
        }
        fn merge(&self, into: &mut Self::Acc, other: Self::Acc) {
            into.extend(other);
        }
        fn output_names(&self) -> Vec<String> {
            vec!["distinct".to_owned()]
        }
        fn result(&self, acc: &Self::Acc) -> Vec<Value> {
            vec![json!(acc.len())]
        }
    }

    fn input() -> Vec<Value> {
        vec![
            json!({"k": "a", "t": 1, "page": "x"}),
            json!({"k": "a", "t": 3, "page": "y"}),
            json!({"k": "a", "t": 4, "page": "x"}),
            json!({"k": "a", "t": 30, "page": "z"}),
            json!({"k": "a", "t": 2, "page": "w"}), // late: session [1,14) closed at watermark 29
        ]
    }

    #[test]
    fn user_aggregate_over_sessions_with_late_output() {
        let mut out = Vec::new();
        let report = Stream::source(input())
            .assign_timestamps(|v| v["t"].as_i64(), WatermarkStrategy::bounded(0))
            .key_by(|v| v["k"].as_str().map(str::to_owned))
            .window(WindowAssigner::session(10).unwrap())
            .aggregate(Distinct("page"))
            .sink_into(&mut out)
            .unwrap();
        let lines: Vec<Value> = out.iter().map(WindowResult::to_json).collect();
        assert_eq!(
            lines,
            [
                json!({"key": "a", "window_start": 1, "window_end": 14, "distinct": 2}),
                json!({"key": "a", "window_start": 30, "window_end": 40, "distinct": 1}),
            ]
        );
        assert_eq!(report.late.len(), 1);
        assert_eq!(report.late[0].value["page"], "w");
    }

    #[test]
    fn micro_batch_builder_and_missing_timestamps() {
        // One batch of everything: the watermark stays at -inf while processing, nothing late.
        let mut out = Vec::new();
        let report = Stream::source(input())
            .assign_timestamps(|v| v["t"].as_i64(), WatermarkStrategy::bounded(0))
            .key_by(|v| v["k"].as_str().map(str::to_owned))
            .window(WindowAssigner::session(10).unwrap())
            .aggregate(Aggregates::new(vec![AggregateSpec::count()]).unwrap())
            .micro_batch(100)
            .sink_into(&mut out)
            .unwrap();
        assert!(report.late.is_empty());
        assert_eq!(out[0].get("count"), Some(&json!(4)));

        let err = Stream::source(input())
            .assign_timestamps(|v| v["missing"].as_i64(), WatermarkStrategy::bounded(0))
            .key_by(|v| v["k"].as_str().map(str::to_owned))
            .window(WindowAssigner::tumbling(10).unwrap())
            .aggregate(Aggregates::new(vec![AggregateSpec::count()]).unwrap())
            .sink_into(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("gave no event time for item 0"));
    }
}
