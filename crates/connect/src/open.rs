//! Building a pipeline's source and sinks from its definition.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_engine::pipeline::PipelineDef;
use sluice_log::{Log, LogOptions};

use crate::config::{ConnectorsConfig, SinkConfig, SourceConfig};
use crate::{
    Error, FileSink, FileSource, KafkaSink, KafkaSource, OffsetStore, Result, Sink, Source,
    StdoutSink, TopicSink, TopicSource,
};

/// Where and how to open the connectors.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Data directory of the embedded log (topics, `pipelines/<name>/offsets.json`).
    pub data_dir: PathBuf,
    /// Relative file paths in the pipeline are resolved against this directory (the
    /// pipeline file's directory).
    pub base_dir: PathBuf,
    /// Topic sources keep reading new records instead of stopping at the end offsets
    /// seen at start.
    pub follow: bool,
    /// An already open log to use for topic sources and sinks (e.g. the broker's, whose
    /// data directory lock it holds). `None`: the log in `data_dir` is opened when a topic
    /// is involved.
    pub log: Option<Arc<Log>>,
}

/// A pipeline's opened connectors.
#[derive(Debug)]
pub struct Connectors {
    /// Where events come from.
    pub source: Box<dyn Source>,
    /// Where window results go.
    pub sink: Box<dyn Sink>,
    /// Where late and bad events go.
    pub late: Box<dyn Sink>,
    /// The embedded log, when a topic is involved: [`OpenOptions::log`] when given, else
    /// opened here (writable, with the data directory's lock, when a sink is a topic;
    /// read-only otherwise).
    pub log: Option<Arc<Log>>,
    /// Things worth telling the user (topics created, ...).
    pub notes: Vec<String>,
}

impl std::fmt::Debug for dyn Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::fmt::Debug for dyn Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Connectors {
    /// Opens the source, the result sink and the late output of `def`.
    ///
    /// File sinks are truncated when the source is a file (a run re-reads the whole file)
    /// and appended to when the source is a topic or Kafka (a run resumes from committed
    /// offsets).
    pub fn open(def: &PipelineDef, opts: &OpenOptions) -> Result<Self> {
        let cfg = ConnectorsConfig::from_pipeline(def)?;
        Self::open_config(&cfg, &def.name, opts)
    }

    /// [`Connectors::open`] from already parsed connector sections of pipeline `name`.
    pub fn open_config(cfg: &ConnectorsConfig, name: &str, opts: &OpenOptions) -> Result<Self> {
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                opts.base_dir.join(p)
            }
        };
        let writes_topic = matches!(cfg.sink, SinkConfig::Topic { .. })
            || matches!(cfg.late, SinkConfig::Topic { .. });
        let reads_topic = matches!(cfg.source, SourceConfig::Topic { .. });
        let log = if !(writes_topic || reads_topic) {
            None
        } else if let Some(log) = &opts.log {
            Some(log.clone())
        } else {
            let options = LogOptions {
                read_only: !writes_topic,
                background: writes_topic,
                ..LogOptions::default()
            };
            let log = Log::open(&opts.data_dir, options).map_err(|e| {
                Error::log(
                    format!("opening data directory {}", opts.data_dir.display()),
                    e,
                )
            })?;
            Some(Arc::new(log))
        };
        let mut notes = Vec::new();
        let source: Box<dyn Source> = match &cfg.source {
            SourceConfig::File { path } => {
                if opts.follow {
                    return Err(Error::Config(
                        "--follow needs a topic or kafka source; a file source is read once to its end"
                            .into(),
                    ));
                }
                Box::new(FileSource::open(resolve(path))?)
            }
            SourceConfig::Topic { topic, isolation } => {
                let store = OffsetStore::open(&opts.data_dir, name, topic)?;
                let log = log.clone().expect("opened above");
                Box::new(TopicSource::open(
                    log,
                    topic,
                    opts.follow,
                    *isolation,
                    Some(store),
                )?)
            }
            SourceConfig::Kafka {
                topic,
                bootstrap,
                group,
                isolation,
            } => Box::new(KafkaSource::open(
                bootstrap,
                topic,
                group,
                opts.follow,
                *isolation,
            )?),
        };
        let append = !matches!(cfg.source, SourceConfig::File { .. });
        let mut open_sink = |d: &SinkConfig| -> Result<Box<dyn Sink>> {
            Ok(match d {
                SinkConfig::File { path } => Box::new(FileSink::create(resolve(path), append)?),
                SinkConfig::Stdout => Box::new(StdoutSink::new()),
                SinkConfig::Topic { topic } => {
                    let (s, note) =
                        TopicSink::open(log.as_deref().expect("opened above"), topic, true)?;
                    notes.extend(note);
                    Box::new(s)
                }
                SinkConfig::Kafka { topic, bootstrap } => {
                    Box::new(KafkaSink::open(bootstrap, topic)?)
                }
            })
        };
        let sink = open_sink(&cfg.sink)?;
        let late = open_sink(&cfg.late)?;
        Ok(Self {
            source,
            sink,
            late,
            log,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "p"
[source]
kind = "file"
path = "in.jsonl"
event_time = "ts"
key = "key"
[window]
kind = "tumbling"
size_ms = 10
[[aggregate]]
op = "count"
[sink]
kind = "file"
path = "out.jsonl"
"#;

    #[test]
    fn opens_file_connectors_relative_to_the_pipeline_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.jsonl"), "{}\n").unwrap();
        let def = PipelineDef::from_toml(BASE).unwrap();
        let opts = OpenOptions {
            data_dir: dir.path().join("data"),
            base_dir: dir.path().to_path_buf(),
            follow: false,
            log: None,
        };
        let c = Connectors::open(&def, &opts).unwrap();
        assert!(c.log.is_none());
        assert!(dir.path().join("out.jsonl").exists());
        assert!(dir.path().join("p-late.jsonl").exists());
        let follow = OpenOptions {
            follow: true,
            ..opts
        };
        assert!(Connectors::open(&def, &follow).is_err());
    }
}
