//! The connectors' sections of a pipeline file: `[source]` (all but the event-time keys,
//! which are the engine's), `[sink]` and `[late]`. Each connector kind owns its keys and
//! their validation here, so adding a connector never touches the engine; a key the chosen
//! kind does not use is an error that names it.

use serde::Deserialize;
use sluice_engine::pipeline::PipelineDef;

use crate::{Error, Isolation, Result};

/// `[source]` without the engine's keys (`event_time`, `key`, `format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    /// JSON lines from a file, read once in file order.
    File {
        /// The file (relative to the pipeline file's directory).
        path: String,
    },
    /// A topic of the embedded log.
    Topic {
        /// The topic.
        topic: String,
        /// Which records of transactional producers are read.
        isolation: Isolation,
    },
    /// A topic of a Kafka-protocol cluster, as a consumer-group member.
    Kafka {
        /// The topic.
        topic: String,
        /// Bootstrap servers.
        bootstrap: String,
        /// Consumer group (default: the pipeline name).
        group: String,
        /// Which records of transactional producers are read (`isolation.level`).
        isolation: Isolation,
    },
}

impl SourceConfig {
    /// The topic read, for topic and kafka sources.
    pub fn topic(&self) -> Option<&str> {
        match self {
            SourceConfig::File { .. } => None,
            SourceConfig::Topic { topic, .. } | SourceConfig::Kafka { topic, .. } => Some(topic),
        }
    }
}

/// `[sink]` or `[late]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// JSON lines to a file.
    File {
        /// The file (relative to the pipeline file's directory).
        path: String,
    },
    /// A topic of the embedded log (created with one partition when missing).
    Topic {
        /// The topic.
        topic: String,
    },
    /// A topic of a Kafka-protocol cluster.
    Kafka {
        /// The topic.
        topic: String,
        /// Bootstrap servers.
        bootstrap: String,
    },
    /// JSON lines on standard output.
    Stdout,
}

/// A pipeline's connector sections, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorsConfig {
    /// `[source]`.
    pub source: SourceConfig,
    /// `[sink]`.
    pub sink: SinkConfig,
    /// `[late]`, or the default: a file `<name>-late.jsonl` for file and stdout sinks, a
    /// topic `<name>-late` (on the same cluster) for topic and kafka sinks.
    pub late: SinkConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: String,
    path: Option<String>,
    topic: Option<String>,
    bootstrap: Option<String>,
    group: Option<String>,
    isolation: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: String,
    path: Option<String>,
    topic: Option<String>,
    bootstrap: Option<String>,
}

fn setting(section: &str, key: &str, problem: impl std::fmt::Display) -> Error {
    Error::Config(format!("pipeline setting `{section}.{key}` {problem}"))
}

fn need(v: Option<String>, section: &str, key: &str, kind: &str) -> Result<String> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(setting(section, key, "is empty")),
        None => Err(setting(
            section,
            key,
            format_args!("is required when kind = \"{kind}\""),
        )),
    }
}

fn need_bootstrap(v: Option<String>, section: &str) -> Result<String> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(setting(section, "bootstrap", "is empty")),
        None => Err(setting(
            section,
            "bootstrap",
            "is required when kind = \"kafka\" (e.g. \"127.0.0.1:9092\")",
        )),
    }
}

fn unused<T>(v: &Option<T>, section: &str, key: &str, kind: &str) -> Result<()> {
    match v {
        Some(_) => Err(setting(
            section,
            key,
            format_args!("is not used when kind = \"{kind}\"; remove it"),
        )),
        None => Ok(()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(table: &toml::Table, section: &str) -> Result<T> {
    T::deserialize(toml::Value::Table(table.clone()))
        .map_err(|e| Error::Config(format!("pipeline section [{section}]: {e}")))
}

impl SourceConfig {
    /// Parses `[source]`'s connector keys (the table without the engine's keys).
    pub fn from_table(table: &toml::Table, pipeline: &str) -> Result<Self> {
        let r: RawSource = parse(table, "source")?;
        let s = "source";
        let kind = r.kind.as_str();
        let isolation = |v: Option<String>| {
            v.as_deref()
                .map_or(Ok(Isolation::default()), Isolation::parse)
        };
        Ok(match kind {
            "file" => {
                unused(&r.topic, s, "topic", kind)?;
                unused(&r.bootstrap, s, "bootstrap", kind)?;
                unused(&r.group, s, "group", kind)?;
                unused(&r.isolation, s, "isolation", kind)?;
                SourceConfig::File {
                    path: need(r.path, s, "path", kind)?,
                }
            }
            "topic" => {
                unused(&r.path, s, "path", kind)?;
                unused(&r.bootstrap, s, "bootstrap", kind)?;
                unused(&r.group, s, "group", kind)?;
                SourceConfig::Topic {
                    topic: need(r.topic, s, "topic", kind)?,
                    isolation: isolation(r.isolation)?,
                }
            }
            "kafka" => {
                unused(&r.path, s, "path", kind)?;
                SourceConfig::Kafka {
                    topic: need(r.topic, s, "topic", kind)?,
                    bootstrap: need_bootstrap(r.bootstrap, s)?,
                    group: r.group.unwrap_or_else(|| pipeline.to_owned()),
                    isolation: isolation(r.isolation)?,
                }
            }
            other => {
                return Err(setting(
                    s,
                    "kind",
                    format_args!("\"{other}\" is not a source; use file, topic or kafka"),
                ));
            }
        })
    }
}

impl SinkConfig {
    /// Parses a `[sink]` or `[late]` table (`section` names it in errors).
    pub fn from_table(table: &toml::Table, section: &str) -> Result<Self> {
        let r: RawSink = parse(table, section)?;
        let s = section;
        let kind = r.kind.as_str();
        Ok(match kind {
            "file" => {
                unused(&r.topic, s, "topic", kind)?;
                unused(&r.bootstrap, s, "bootstrap", kind)?;
                SinkConfig::File {
                    path: need(r.path, s, "path", kind)?,
                }
            }
            "topic" => {
                unused(&r.path, s, "path", kind)?;
                unused(&r.bootstrap, s, "bootstrap", kind)?;
                SinkConfig::Topic {
                    topic: need(r.topic, s, "topic", kind)?,
                }
            }
            "kafka" => {
                unused(&r.path, s, "path", kind)?;
                let bootstrap = need_bootstrap(r.bootstrap, s)?;
                SinkConfig::Kafka {
                    topic: need(r.topic, s, "topic", kind)?,
                    bootstrap,
                }
            }
            "stdout" => {
                unused(&r.path, s, "path", kind)?;
                unused(&r.topic, s, "topic", kind)?;
                unused(&r.bootstrap, s, "bootstrap", kind)?;
                SinkConfig::Stdout
            }
            other => {
                return Err(setting(
                    s,
                    "kind",
                    format_args!("\"{other}\" is not a sink; use file, topic, kafka or stdout"),
                ));
            }
        })
    }
}

impl ConnectorsConfig {
    /// The connector sections of `def`, parsed and validated.
    pub fn from_pipeline(def: &PipelineDef) -> Result<Self> {
        let source = SourceConfig::from_table(&def.source.connector, &def.name)?;
        let sink = SinkConfig::from_table(&def.sink, "sink")?;
        let late = match &def.late {
            Some(t) => SinkConfig::from_table(t, "late")?,
            None => {
                let name = format!("{}-late", def.name);
                match &sink {
                    SinkConfig::File { .. } | SinkConfig::Stdout => SinkConfig::File {
                        path: format!("{name}.jsonl"),
                    },
                    SinkConfig::Topic { .. } => SinkConfig::Topic { topic: name },
                    SinkConfig::Kafka { bootstrap, .. } => SinkConfig::Kafka {
                        topic: name,
                        bootstrap: bootstrap.clone(),
                    },
                }
            }
        };
        if let (SinkConfig::File { path: a }, SinkConfig::File { path: b }) = (&sink, &late)
            && a == b
        {
            return Err(Error::Config(
                "sink.path and late.path name the same file; give the late output its own".into(),
            ));
        }
        Ok(Self { source, sink, late })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(source: &str, sink: &str, late: &str) -> PipelineDef {
        PipelineDef::from_toml(&format!(
            "name = \"p\"\n[source]\nevent_time = \"ts\"\nkey = \"k\"\n{source}\n[window]\nkind = \"tumbling\"\nsize_ms = 10\n[[aggregate]]\nop = \"count\"\n[sink]\n{sink}\n{late}"
        ))
        .unwrap()
    }

    fn err(source: &str, sink: &str, late: &str) -> String {
        ConnectorsConfig::from_pipeline(&def(source, sink, late))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn each_kind_reads_its_own_keys_with_defaults() {
        let c = ConnectorsConfig::from_pipeline(&def(
            "kind = \"kafka\"\ntopic = \"t\"\nbootstrap = \"b:9092\"\nisolation = \"read_uncommitted\"",
            "kind = \"kafka\"\ntopic = \"out\"\nbootstrap = \"c:9092\"",
            "",
        ))
        .unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Kafka {
                topic: "t".into(),
                bootstrap: "b:9092".into(),
                group: "p".into(),
                isolation: Isolation::ReadUncommitted
            }
        );
        assert_eq!(
            c.late,
            SinkConfig::Kafka {
                topic: "p-late".into(),
                bootstrap: "c:9092".into()
            }
        );
        let c = ConnectorsConfig::from_pipeline(&def(
            "kind = \"topic\"\ntopic = \"t\"",
            "kind = \"stdout\"",
            "",
        ))
        .unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Topic {
                topic: "t".into(),
                isolation: Isolation::ReadCommitted
            }
        );
        assert_eq!(
            c.late,
            SinkConfig::File {
                path: "p-late.jsonl".into()
            }
        );
    }

    #[test]
    fn missing_unused_and_unknown_keys_are_errors_that_name_them() {
        let e = err("kind = \"file\"", "kind = \"stdout\"", "");
        assert_eq!(
            e,
            "pipeline setting `source.path` is required when kind = \"file\""
        );
        let e = err(
            "kind = \"file\"\npath = \"x\"\ntopic = \"t\"",
            "kind = \"stdout\"",
            "",
        );
        assert!(
            e.contains("`source.topic` is not used when kind = \"file\""),
            "{e}"
        );
        let e = err(
            "kind = \"topic\"\ntopic = \"t\"\nisolation = \"dirty\"",
            "kind = \"stdout\"",
            "",
        );
        assert!(e.contains("read_committed or read_uncommitted"), "{e}");
        let e = err(
            "kind = \"topic\"\ntopic = \"t\"",
            "kind = \"kafka\"\ntopic = \"t\"",
            "",
        );
        assert!(
            e.contains("`sink.bootstrap` is required when kind = \"kafka\""),
            "{e}"
        );
        let e = err(
            "kind = \"topic\"\ntopic = \"t\"",
            "kind = \"stdout\"\nsize = 3",
            "",
        );
        assert!(e.contains("unknown field `size`"), "{e}");
        let e = err("kind = \"topic\"\ntopic = \"t\"", "kind = \"s3\"", "");
        assert!(e.contains("\"s3\" is not a sink"), "{e}");
        let e = err(
            "kind = \"file\"\npath = \"in\"",
            "kind = \"file\"\npath = \"o\"",
            "[late]\nkind = \"file\"\npath = \"o\"",
        );
        assert!(e.contains("name the same file"), "{e}");
        let e = err("kind = \"kafka\"\ntopic = \"t\"", "kind = \"stdout\"", "");
        assert!(
            e.contains("`source.bootstrap` is required when kind = \"kafka\" (e.g."),
            "{e}"
        );
    }
}
