//! Sluice's event-time dataflow core: watermarks, windows, keyed window state and the two
//! execution modes, as pure synchronous code stepped by its caller.
//!
//! This crate **performs no I/O** and starts no threads or timers: the runtime reads
//! sources, calls [`ContinuousDriver::process`] / [`MicroBatchDriver::process_batch`] (or
//! the [`WindowOperator`] directly) with events and processing time, writes the returned
//! [`Output`]s to sinks, and commits source offsets below
//! [`WindowOperator::lowest_held_offsets`]. All state is serde-serializable for snapshots.
//!
//! Semantics follow Apache Flink's DataStream event-time windows with the default
//! `EventTimeTrigger`: windows are `[start, end)`, a window fires when the watermark
//! reaches `end − 1`, and an element is late for a window when
//! `end − 1 + allowed_lateness ≤ watermark`. See [`WindowOperator`].
//!
//! # Driving it from a runtime
//!
//! Build the parts from a pipeline file: [`pipeline::PipelineDef::from_toml`], then
//! `watermark_tracker()` and `window_operator()`; parse each record with
//! [`Event::from_json`] (an `Err` with [`Error::is_event_error`] goes to the DLQ).
//!
//! * **Continuous** ([`ContinuousDriver`]): `add_partition(p, now)` for every assigned
//!   partition; for each record `process(event, now)`; while no records arrive call
//!   `tick(now)` periodically (idle timeouts); when a partition is read to its end offset
//!   call `set_caught_up(p, true, now)`; at the end of a bounded input `finish()`.
//! * **Micro-batch** ([`MicroBatchDriver`]): `add_partition` likewise; collect records for
//!   the trigger interval, then `process_batch(batch, now)` (an empty batch is fine: it
//!   applies idleness and caught-up marks); `finish()` at the end.
//!
//! Write every returned [`Output`] (results to the sink, late events to the late output);
//! once that output is durable, commit for each partition the offset
//! `WindowOperator::lowest_held_offsets()[p]` (or, if absent, one past the last processed
//! record). Snapshot `tracker()` and `operator().state()` (both serde) with those offsets.
//!
//! Module map: [`time`] (watermark values), [`watermark`] (bounded, adaptive, per-partition
//! tracker), [`window`] (tumbling, hopping, session), [`aggregate`], [`operator`],
//! [`driver`] (continuous and micro-batch), [`pipeline`] (the TOML pipeline file). The
//! run loop around it (and the builder API) is `sluice-runtime`.

pub mod aggregate;
pub mod driver;
mod error;
pub mod event;
pub mod operator;
pub mod pipeline;
pub mod time;
pub mod watermark;
pub mod window;

pub use aggregate::{AggOp, Aggregate, AggregateSpec, Aggregates, Num};
pub use driver::{ContinuousDriver, ExecutionMode, MicroBatchDriver};
pub use error::{Error, Result};
pub use event::{Event, EventFields, Numbers};
pub use operator::{LateEvent, Output, WindowOperator, WindowResult};
pub use time::{Millis, Watermark};
pub use watermark::{WatermarkStrategy, WatermarkTracker};
pub use window::{TimeWindow, WindowAssigner};
