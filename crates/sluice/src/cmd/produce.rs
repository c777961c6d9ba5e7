//! `sluice produce TOPIC`: stdin lines become records.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use sluice_log::{BatchBuilder, Partition, partition_for_key};

use super::{now_ms, open_writer};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    pub topic: String,
    /// Split each line at the first SEP into key and value (a line without SEP is an error).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Send every record to this partition instead of the key's murmur2 partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Target batch size in bytes (capped by the topic's max.message.bytes).
    #[arg(long, default_value_t = 256 * 1024)]
    pub batch_bytes: usize,
}

#[derive(Default)]
struct PartitionStats {
    first: Option<i64>,
    last: i64,
    records: u64,
}

struct Producer<'a> {
    partitions: Vec<std::sync::Arc<Partition>>,
    builders: BTreeMap<i32, BatchBuilder>,
    stats: BTreeMap<i32, PartitionStats>,
    limit: usize,
    records: u64,
    bytes: u64,
    topic: &'a str,
}

impl Producer<'_> {
    fn flush(&mut self, p: i32) -> anyhow::Result<()> {
        let Some(b) = self.builders.remove(&p) else {
            return Ok(());
        };
        if b.is_empty() {
            return Ok(());
        }
        let mut bytes = b.build()?;
        let info = self.partitions[p as usize]
            .append(&mut bytes)
            .with_context(|| format!("appending to {}-{p}", self.topic))?;
        let s = self.stats.entry(p).or_default();
        s.first.get_or_insert(info.base_offset);
        s.last = info.last_offset;
        s.records += info.record_count as u64;
        self.records += info.record_count as u64;
        Ok(())
    }

    fn add(&mut self, p: i32, key: Option<&[u8]>, value: &[u8], ts: i64) -> anyhow::Result<()> {
        // Record overhead is at most ~25 bytes of varints and attributes.
        let need = key.map_or(0, <[u8]>::len) + value.len() + 32;
        if need + sluice_log::HEADER_SIZE > self.limit {
            bail!(
                "a record of {} bytes does not fit the topic's max.message.bytes ({})",
                need,
                self.limit
            );
        }
        if self
            .builders
            .get(&p)
            .is_some_and(|b| b.size_bytes() + need > self.limit)
        {
            self.flush(p)?;
        }
        self.builders
            .entry(p)
            .or_default()
            .push(ts, key, Some(value), &[]);
        self.bytes += (key.map_or(0, <[u8]>::len) + value.len()) as u64;
        Ok(())
    }
}

pub fn run(dir: &Path, args: ProduceArgs) -> anyhow::Result<()> {
    let log = open_writer(dir)?;
    let topic = log.topic(&args.topic)?;
    let partitions = topic.partitions();
    let n = partitions.len() as i32;
    if let Some(p) = args.partition
        && !(0..n).contains(&p)
    {
        bail!(
            "topic {} has partitions 0..{}; --partition {p} does not exist",
            args.topic,
            n - 1
        );
    }
    let limit = args
        .batch_bytes
        .min(topic.config().max_message_bytes)
        .max(sluice_log::HEADER_SIZE + 64);
    let mut prod = Producer {
        partitions,
        builders: BTreeMap::new(),
        stats: BTreeMap::new(),
        limit,
        records: 0,
        bytes: 0,
        topic: &args.topic,
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    // Unkeyed records stick to one partition per batch, then move on (Kafka's sticky
    // partitioner), so batches stay large.
    let mut sticky = 0i32;
    let mut failure: Option<anyhow::Error> = None;
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?;
        if read == 0 {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let (key, value): (Option<&[u8]>, &[u8]) = match &args.key_separator {
            None => (None, &line[..]),
            Some(sep) => match find(&line, sep.as_bytes()) {
                Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
                None => {
                    failure = Some(anyhow::anyhow!(
                        "line {line_no} has no key separator {sep:?}; it and later lines were not produced"
                    ));
                    break;
                }
            },
        };
        let p = match (args.partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => {
                let p = sticky;
                if prod
                    .builders
                    .get(&p)
                    .is_some_and(|b| b.size_bytes() >= limit / 2)
                {
                    prod.flush(p)?;
                    sticky = (sticky + 1) % n;
                }
                p
            }
        };
        if let Err(e) = prod.add(p, key, value, now_ms()) {
            failure = Some(e.context(format!(
                "line {line_no}; it and later lines were not produced"
            )));
            break;
        }
    }
    let parts: Vec<i32> = prod.builders.keys().copied().collect();
    for p in parts {
        prod.flush(p)?;
    }
    eprintln!(
        "produced {} records ({} bytes of keys and values) to {}",
        prod.records, prod.bytes, args.topic
    );
    for (p, s) in &prod.stats {
        eprintln!(
            "  partition {p}: {} records, offsets {}..={}",
            s.records,
            s.first.unwrap_or(0),
            s.last
        );
    }
    log.close()?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
