//! Sluice's pipeline runtime: the one run loop every pipeline path uses (`sluice run`,
//! `serve --pipeline`, `sluice bench window`, the engine's builder API through
//! [`builder`]).
//!
//! * [`Runner`]: polls a [`sluice_connect::Source`], decodes records into events, drives
//!   the engine's continuous or micro-batch driver, writes results and late/bad events to
//!   their [`sluice_connect::Sink`]s, and at commit points commits the sinks with the
//!   [`sluice_connect::Position`] their output reflects, then the source. Stepped
//!   ([`Runner::step`]) or run to the end ([`Runner::run`]).
//! * [`Clock`]: all time the runtime reads (intervals, latency, the engine's processing
//!   time, idle waits) comes from an injected clock, so tests drive it by hand
//!   ([`ManualClock`]) and stay deterministic.
//! * [`RunReport`]: counters, lateness and latency histograms, committed positions and
//!   the summary `sluice run` prints.
//! * [`Supervisor`]: pipelines on their own threads inside `sluice serve`.
//! * [`load_pipeline`]: a pipeline file and the directory its relative paths resolve
//!   against.
//!
//! It decides no event-time semantics (the engine does) and owns no connector (the
//! connect crate does).

pub mod builder;
mod clock;
mod report;
mod runner;
mod supervisor;

use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice_engine::pipeline::PipelineDef;

pub use clock::{Clock, ManualClock, SystemClock};
pub use report::{RunReport, describe_pipeline};
pub use runner::{DecodeFn, Decoder, Engine, Outputs, RunOptions, Runner, Step, execute};
pub use supervisor::Supervisor;

/// Reads and validates a pipeline file; returns it with the directory its relative paths
/// are resolved against.
pub fn load_pipeline(path: &Path) -> anyhow::Result<(PipelineDef, PathBuf)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading pipeline file {}", path.display()))?;
    let def = PipelineDef::from_toml(&text)
        .with_context(|| format!("pipeline file {}", path.display()))?;
    // The connectors' sections are theirs to check; a pipeline file is valid only whole.
    sluice_connect::config::ConnectorsConfig::from_pipeline(&def)
        .with_context(|| format!("pipeline file {}", path.display()))?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok((def, base_dir))
}
