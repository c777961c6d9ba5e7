//! `sluice run PIPELINE.toml`: opens the pipeline's connectors (`sluice-connect`) and runs
//! it with the runtime (`sluice-runtime`, on the system clock); prints notes, the header
//! line and the run summary.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_connect::config::{ConnectorsConfig, SourceConfig};
use sluice_connect::open::{Connectors, OpenOptions};
use sluice_runtime::SystemClock;
pub use sluice_runtime::{RunOptions, describe_pipeline, execute, load_pipeline};

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
        ..RunOptions::default()
    };
    let report = execute(
        &def,
        c.source.as_mut(),
        c.sink.as_mut(),
        c.late.as_mut(),
        opts,
        &SystemClock::new(),
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
    if matches!(
        ConnectorsConfig::from_pipeline(&def)?.source,
        SourceConfig::File { .. }
    ) {
        report.committed.clear(); // files have no resumable position
    }
    eprint!("{}", report.summary(&def));
    Ok(())
}
