//! `sluice topic ...`

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;
use sluice_log::TopicConfig;

use super::{open_reader, open_writer};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name (letters, digits, '.', '_', '-').
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Config override, repeatable: --config retention.ms=3600000 --config fsync=never
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show partitions (offsets, bytes) and configs of a topic.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Parse `key=value` pairs, rejecting malformed ones.
pub fn parse_configs(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--config {p:?}: expected KEY=VALUE");
        };
        TopicConfig::validate_entry(k.trim(), v.trim())?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

pub fn run(dir: &Path, cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            configs,
        } => {
            let configs = parse_configs(&configs)?;
            let log = open_writer(dir)?;
            log.create_topic(&name, partitions, configs)?;
            log.close()?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List => {
            if !dir.join("topics").is_dir() {
                return Ok(());
            }
            let log = open_reader(dir)?;
            for name in log.topic_names() {
                let t = log.topic(&name)?;
                println!("{name}\tpartitions={}", t.partition_count());
            }
        }
        TopicCommand::Describe { name } => {
            let log = open_reader(dir)?;
            let topic = log.topic(&name)?;
            let meta = topic.meta();
            println!(
                "topic {name}  id {}  partitions {}",
                meta.id, meta.partitions
            );
            println!(
                "{:>9} {:>14} {:>14} {:>12} {:>12} {:>8}",
                "partition", "start-offset", "end-offset", "records", "bytes", "segments"
            );
            let mut total_bytes = 0;
            let mut total_records = 0;
            for s in log.describe(&name)? {
                total_bytes += s.size_bytes;
                total_records += s.high_watermark - s.log_start_offset;
                println!(
                    "{:>9} {:>14} {:>14} {:>12} {:>12} {:>8}",
                    s.partition,
                    s.log_start_offset,
                    s.high_watermark,
                    s.high_watermark - s.log_start_offset,
                    s.size_bytes,
                    s.segments
                );
            }
            println!(
                "{:>9} {:>14} {:>14} {:>12} {:>12}",
                "total", "", "", total_records, total_bytes
            );
            println!("configs (* = set for this topic):");
            for (k, v, over) in TopicConfig::describe(&meta.configs) {
                println!("  {}{k}={v}", if over { "*" } else { " " });
            }
        }
        TopicCommand::Delete { name } => {
            let log = open_writer(dir)?;
            log.delete_topic(&name)
                .with_context(|| format!("deleting {name}"))?;
            log.close()?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}
