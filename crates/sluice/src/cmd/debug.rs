//! Hidden helpers for crash drills (`sluice debug ...`), used by the SIGKILL tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use clap::Subcommand;
use sluice_log::BatchBuilder;

use super::open_writer;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Append records forever from several threads; after each append returns, print
    /// `ack <partition> <base offset> <last offset> <tag>`; record i of the batch has
    /// value `<tag>-<i>` padded with '.' to --value-size.
    AppendLoop {
        /// Topic (created with --partitions and fsync=always if missing).
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 3)]
        threads: usize,
        #[arg(long, default_value_t = 4)]
        records_per_batch: usize,
        #[arg(long, default_value_t = 200)]
        value_size: usize,
        /// Segment size (small values exercise rolling under crashes).
        #[arg(long, default_value_t = 65536)]
        segment_bytes: u64,
    },
}

/// The value of record `i` of the batch tagged `tag`.
pub fn drill_value(tag: &str, i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{tag}-{i}").into_bytes();
    if v.len() < size {
        v.resize(size, b'.');
    }
    v
}

pub fn run(dir: &Path, cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::AppendLoop {
            topic,
            partitions,
            threads,
            records_per_batch,
            value_size,
            segment_bytes,
        } => {
            let log = std::sync::Arc::new(open_writer(dir)?);
            if log.topic(&topic).is_err() {
                let mut c = BTreeMap::new();
                c.insert("fsync".to_string(), "always".to_string());
                c.insert("segment.bytes".to_string(), segment_bytes.to_string());
                log.create_topic(&topic, partitions, c)?;
            }
            let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let log = log.clone();
                    let out = out.clone();
                    let topic = topic.clone();
                    std::thread::spawn(move || -> anyhow::Result<()> {
                        let n = log.topic(&topic)?.partition_count();
                        for seq in 0u64.. {
                            let tag = format!("t{t}s{seq}");
                            let p = ((seq as usize + t) % n as usize) as i32;
                            let mut b = BatchBuilder::new();
                            for i in 0..records_per_batch {
                                b.push(
                                    super::now_ms(),
                                    Some(tag.as_bytes()),
                                    Some(&drill_value(&tag, i, value_size)),
                                    &[],
                                );
                            }
                            let info = log.partition(&topic, p)?.append(&mut b.build()?)?;
                            let mut o = out.lock().expect("stdout lock");
                            writeln!(o, "ack {p} {} {} {tag}", info.base_offset, info.last_offset)?;
                            o.flush()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("append thread panicked")?;
            }
            Ok(())
        }
    }
}
