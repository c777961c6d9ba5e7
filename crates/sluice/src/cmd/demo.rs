//! `sluice demo`: the quick start's first command.

use std::collections::BTreeMap;
use std::path::Path;

use clap::Args;
use sluice_log::{BatchBuilder, decode_records, frames, partition_for_key};

use super::{now_ms, open_writer};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Topic the demo writes to (created with 3 partitions if missing).
    #[arg(long, default_value = "demo")]
    pub topic: String,
    /// Records to produce.
    #[arg(long, default_value_t = 12)]
    pub records: usize,
}

pub fn run(dir: &Path, args: DemoArgs) -> anyhow::Result<()> {
    let log = open_writer(dir)?;
    println!("data directory: {}", dir.display());
    let topic = match log.topic(&args.topic) {
        Ok(t) => {
            println!(
                "1. topic {} exists ({} partitions)",
                args.topic,
                t.partition_count()
            );
            t
        }
        Err(_) => {
            let t = log.create_topic(&args.topic, 3, BTreeMap::new())?;
            println!(
                "1. created topic {} with 3 partitions (fsync=always)",
                args.topic
            );
            t
        }
    };
    let n = topic.partition_count();
    let mut per_partition: BTreeMap<i32, BatchBuilder> = BTreeMap::new();
    for i in 0..args.records {
        let key = format!("user-{}", i % 4);
        let value = format!(
            "{{\"user\":\"{key}\",\"page\":\"/item/{i}\",\"ts\":{}}}",
            now_ms()
        );
        let p = partition_for_key(key.as_bytes(), n);
        per_partition.entry(p).or_default().push(
            now_ms(),
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[],
        );
    }
    println!(
        "2. produced {} keyed records (murmur2 partitioning, like a Kafka client):",
        args.records
    );
    for (p, b) in per_partition {
        let info = topic
            .partition(p)
            .expect("partition")
            .append(&mut b.build()?)?;
        println!(
            "   partition {p}: offsets {}..={} (synced before this line)",
            info.base_offset, info.last_offset
        );
    }
    println!("3. consumed from the beginning:");
    for part in topic.partitions() {
        let mut off = part.log_start_offset();
        loop {
            let r = part.read(off, 1 << 20)?;
            if r.bytes.is_empty() {
                break;
            }
            for f in frames(&r.bytes) {
                let (pos, h) = f?;
                for rec in decode_records(&r.bytes[pos..pos + h.total_size()])? {
                    if rec.offset >= off {
                        println!(
                            "   p{} @{:<4} {} => {}",
                            part.id(),
                            rec.offset,
                            String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()),
                            String::from_utf8_lossy(rec.value.as_deref().unwrap_or_default())
                        );
                    }
                }
            }
            off = r.next_offset;
        }
    }
    println!("4. partitions:");
    for s in log.describe(&args.topic)? {
        println!(
            "   partition {}: start {} end {} ({} bytes)",
            s.partition, s.log_start_offset, s.high_watermark, s.size_bytes
        );
    }
    log.close()?;
    println!(
        "try: sluice --data-dir {} consume {} --from-beginning --format '%p %o %k %v\\n'",
        dir.display(),
        args.topic
    );
    Ok(())
}
