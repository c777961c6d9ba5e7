//! `serve --pipeline`: pipelines running on their own threads beside the broker, on its
//! log, in follow mode, until the supervisor stops them (each commits what its durable
//! output reflects before it ends).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use sluice_connect::config::{ConnectorsConfig, SourceConfig};
use sluice_connect::open::{Connectors, OpenOptions};
use sluice_engine::pipeline::PipelineDef;
use sluice_log::Log;

use crate::clock::SystemClock;
use crate::report::describe_pipeline;
use crate::runner::{RunOptions, execute};

/// A pipeline running on its own thread.
#[derive(Debug)]
struct RunningPipeline {
    name: String,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// Starts and stops the pipelines of one process.
#[derive(Debug)]
pub struct Supervisor {
    log: Arc<Log>,
    data_dir: PathBuf,
    stop: Arc<AtomicBool>,
    running: Vec<RunningPipeline>,
    commit_every: Duration,
}

impl Supervisor {
    /// A supervisor for pipelines over `log` (whose data directory is `data_dir`).
    pub fn new(log: Arc<Log>, data_dir: &Path) -> Self {
        Self {
            log,
            data_dir: data_dir.to_path_buf(),
            stop: Arc::new(AtomicBool::new(false)),
            running: Vec::new(),
            commit_every: Duration::from_secs(1),
        }
    }

    /// Creates a `topic` source's topic with `partitions` partitions when the log does
    /// not have it yet (as the broker would auto-create it), so a pipeline can start
    /// before anything was produced. Returns a note when it did.
    pub fn create_source_topic(
        &self,
        def: &PipelineDef,
        partitions: i32,
    ) -> anyhow::Result<Option<String>> {
        let SourceConfig::Topic { topic, .. } = ConnectorsConfig::from_pipeline(def)?.source else {
            return Ok(None);
        };
        let topic = topic.as_str();
        if self.log.topic(topic).is_ok() {
            return Ok(None);
        }
        self.log
            .create_topic(topic, partitions, BTreeMap::new())
            .with_context(|| format!("pipeline {}: creating source topic {topic}", def.name))?;
        Ok(Some(format!(
            "created topic {topic} ({partitions} partition{}) as the source of pipeline {}",
            if partitions == 1 { "" } else { "s" },
            def.name
        )))
    }

    /// Opens the pipeline's connectors and runs it on a new thread in follow mode until
    /// [`Supervisor::stop_all`]. Returns once the connectors are open, or with the error
    /// that prevented it.
    pub fn start(
        &mut self,
        file: &Path,
        def: PipelineDef,
        base_dir: PathBuf,
    ) -> anyhow::Result<()> {
        let open = OpenOptions {
            data_dir: self.data_dir.clone(),
            base_dir,
            follow: true,
            log: Some(self.log.clone()),
        };
        let opts = RunOptions {
            commit_every: self.commit_every,
            stop: Some(self.stop.clone()),
            ..RunOptions::default()
        };
        let name = def.name.clone();
        let what = format!("pipeline {} ({})", def.name, file.display());
        let (opened_tx, opened_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(format!("pipeline-{name}"))
            .spawn(move || -> anyhow::Result<()> {
                let mut c = Connectors::open(&def, &open).with_context(|| what.clone())?;
                for n in &c.notes {
                    eprintln!("note: {n}");
                }
                eprintln!(
                    "sluice serve: started {what}: {}: {} -> {}, late -> {}",
                    describe_pipeline(&def),
                    c.source.describe(),
                    c.sink.describe(),
                    c.late.describe()
                );
                let _ = opened_tx.send(());
                let clock = SystemClock::new();
                match execute(
                    &def,
                    c.source.as_mut(),
                    c.sink.as_mut(),
                    c.late.as_mut(),
                    opts,
                    &clock,
                ) {
                    Ok(report) => {
                        eprint!(
                            "sluice serve: stopped pipeline {}\n{}",
                            def.name,
                            report.summary(&def)
                        );
                        Ok(())
                    }
                    Err(e) => {
                        let e = e.context(what);
                        eprintln!("sluice serve: {e:#}");
                        Err(e)
                    }
                }
            })
            .context("spawning a pipeline thread")?;
        if opened_rx.recv().is_err() {
            // The thread ended without opening its connectors: its result says why.
            return Err(match handle.join() {
                Ok(Err(e)) => e,
                Ok(Ok(())) | Err(_) => anyhow::anyhow!("pipeline {name} stopped while starting"),
            });
        }
        self.running.push(RunningPipeline { name, handle });
        Ok(())
    }

    /// Stops every pipeline and waits for them; returns the names of those that failed.
    pub fn stop_all(&mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Release);
        let mut failed = Vec::new();
        for p in self.running.drain(..) {
            match p.handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(_)) => failed.push(p.name),
                Err(_) => {
                    eprintln!("sluice serve: pipeline {} panicked", p.name);
                    failed.push(p.name);
                }
            }
        }
        failed
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if !self.running.is_empty() {
            self.stop_all();
        }
    }
}
