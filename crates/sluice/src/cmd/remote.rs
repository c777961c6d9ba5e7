//! The CLI against a running broker (`--bootstrap HOST:PORT`): `sluice serve` or any
//! Kafka-protocol cluster, through librdkafka (the `rdkafka` crate).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::consume::{ConsumeArgs, Format};
use super::group::{GroupCommand, parse_datetime};
use super::produce::ProduceArgs;
use super::topic::{TopicCommand, parse_configs};

const TIMEOUT: Duration = Duration::from_secs(30);

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "sluice-cli");
    c
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(config(bootstrap).create()?)
}

fn metadata_consumer(bootstrap: &str, group: Option<&str>) -> anyhow::Result<BaseConsumer> {
    let mut c = config(bootstrap);
    c.set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    if let Some(g) = group {
        c.set("group.id", g);
    }
    Ok(c.create()?)
}

fn partitions_of(c: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = c
        .fetch_metadata(Some(topic), TIMEOUT)
        .context("fetching metadata")?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .context("topic missing from metadata")?;
    if let Some(e) = t.error() {
        let code: rdkafka::types::RDKafkaErrorCode = e.into();
        bail!("topic {topic}: {code}");
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

pub fn topic(bootstrap: &str, cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            configs,
        } => {
            let configs = parse_configs(&configs)?;
            let mut nt = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
            for (k, v) in &configs {
                nt = nt.set(k, v);
            }
            let r = block_on(
                admin(bootstrap)?
                    .create_topics(&[nt], &AdminOptions::new().operation_timeout(Some(TIMEOUT))),
            )?;
            for x in r {
                x.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
            }
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List => {
            let c = metadata_consumer(bootstrap, None)?;
            let md = c.fetch_metadata(None, TIMEOUT)?;
            let mut names: Vec<_> = md
                .topics()
                .iter()
                .map(|t| (t.name().to_string(), t.partitions().len()))
                .collect();
            names.sort();
            for (n, p) in names {
                println!("{n}\tpartitions={p}");
            }
        }
        TopicCommand::Describe { name } => {
            let c = metadata_consumer(bootstrap, None)?;
            let parts = partitions_of(&c, &name)?;
            println!("topic {name}  partitions {}", parts.len());
            println!(
                "{:>9} {:>14} {:>14} {:>12}",
                "partition", "start-offset", "end-offset", "records"
            );
            for p in parts {
                let (lo, hi) = c.fetch_watermarks(&name, p, TIMEOUT)?;
                println!("{p:>9} {lo:>14} {hi:>14} {:>12}", hi - lo);
            }
            let r = block_on(
                admin(bootstrap)?
                    .describe_configs(&[ResourceSpecifier::Topic(&name)], &AdminOptions::new()),
            )?;
            println!("configs (* = set for this topic):");
            for res in r {
                let res = res.map_err(|e| anyhow::anyhow!("describe configs: {e}"))?;
                for e in res.entries {
                    let over = matches!(e.source, rdkafka::admin::ConfigSource::DynamicTopic);
                    println!(
                        "  {}{}={}",
                        if over { "*" } else { " " },
                        e.name,
                        e.value.unwrap_or_default()
                    );
                }
            }
        }
        TopicCommand::Delete { name } => {
            let r = block_on(admin(bootstrap)?.delete_topics(
                &[&name],
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            ))?;
            for x in r {
                x.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
            }
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

/// Per partition (first offset, last offset, count), plus delivery errors.
#[derive(Default)]
struct DeliveryLog {
    per_partition: BTreeMap<i32, (i64, i64, u64)>,
    errors: Vec<String>,
}

#[derive(Clone, Default)]
struct Deliveries(std::sync::Arc<std::sync::Mutex<DeliveryLog>>);

impl ClientContext for Deliveries {}
impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let mut g = self.0.lock().expect("deliveries");
        match r {
            Ok(m) => {
                let e = g
                    .per_partition
                    .entry(m.partition())
                    .or_insert((i64::MAX, -1, 0));
                e.0 = e.0.min(m.offset());
                e.1 = e.1.max(m.offset());
                e.2 += 1;
            }
            Err((e, _)) => g.errors.push(e.to_string()),
        }
    }
}

pub fn produce(bootstrap: &str, args: ProduceArgs) -> anyhow::Result<()> {
    let ctx = Deliveries::default();
    let p: BaseProducer<Deliveries> = config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Java's default partitioner: keys land where a Kafka cluster would put them.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "10")
        .create_with_context(ctx.clone())?;
    let stdin = std::io::stdin();
    let mut failure = None;
    let mut n = 0u64;
    for (i, line) in stdin.lock().split(b'\n').enumerate() {
        let mut line = line.context("reading stdin")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let (key, value): (Option<&[u8]>, &[u8]) = match &args.key_separator {
            None => (None, &line[..]),
            Some(sep) => match line.windows(sep.len()).position(|w| w == sep.as_bytes()) {
                Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
                None => {
                    failure = Some(anyhow::anyhow!(
                        "line {} has no key separator {sep:?}; it and later lines were not produced",
                        i + 1
                    ));
                    break;
                }
            },
        };
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&args.topic).payload(value);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(part) = args.partition {
            rec = rec.partition(part);
        }
        let mut rec = rec;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        bail!("producing line {}: {e}", i + 1);
                    }
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        n += 1;
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).context("flushing")?;
    let g = ctx.0.lock().expect("deliveries");
    let delivered: u64 = g.per_partition.values().map(|x| x.2).sum();
    eprintln!("produced {delivered} of {n} records to {}", args.topic);
    for (part, (lo, hi, cnt)) in &g.per_partition {
        eprintln!("  partition {part}: {cnt} records, offsets {lo}..={hi}");
    }
    if let Some(e) = g.errors.first() {
        bail!("{} records failed: {e}", g.errors.len());
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn consume(bootstrap: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    let c = metadata_consumer(bootstrap, Some("sluice-cli-unused"))?;
    let parts = partitions_of(&c, &args.topic)?;
    let selected: Vec<i32> = match args.partition {
        Some(p) if parts.contains(&p) => vec![p],
        Some(p) => bail!(
            "topic {} has partitions 0..{}; --partition {p} does not exist",
            args.topic,
            parts.len() - 1
        ),
        None => parts,
    };
    let start = if args.from_beginning {
        Offset::Beginning
    } else if let Some(o) = args.offset {
        Offset::Offset(o)
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in &selected {
        tpl.add_partition_offset(&args.topic, *p, start)?;
    }
    c.assign(&tpl)?;
    let format = Format::parse(&args.format);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let limit = args.max_messages.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut at_end = std::collections::BTreeSet::new();
    let mut idle_since = Instant::now();
    while printed < limit {
        match c.poll(Duration::from_millis(200)) {
            None => {
                if !args.follow && idle_since.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if !args.follow && at_end.len() == selected.len() {
                    break;
                }
            }
            Some(Err(e)) => bail!("consuming {}: {e}", args.topic),
            Some(Ok(m)) => {
                idle_since = Instant::now();
                at_end.remove(&m.partition());
                let rec = sluice_log::Record {
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| sluice_log::Header {
                                    key: x.key.to_string(),
                                    value: x.value.map(<[u8]>::to_vec),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                format.write(&mut out, &args.topic, m.partition(), &rec)?;
                printed += 1;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn decode_assignment(bytes: &[u8]) -> String {
    // ConsumerProtocolAssignment: version i16, [topic string, [partition i32]], user data.
    let mut out = Vec::new();
    let rd16 = |b: &[u8], p: usize| b.get(p..p + 2).map(|x| i16::from_be_bytes([x[0], x[1]]));
    let rd32 = |b: &[u8], p: usize| {
        b.get(p..p + 4)
            .map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    };
    let mut pos = 2;
    let Some(n) = rd32(bytes, pos) else {
        return String::new();
    };
    pos += 4;
    for _ in 0..n.max(0) {
        let Some(len) = rd16(bytes, pos) else { break };
        pos += 2;
        let Some(name) = bytes.get(pos..pos + len.max(0) as usize) else {
            break;
        };
        pos += len.max(0) as usize;
        let Some(cnt) = rd32(bytes, pos) else { break };
        pos += 4;
        let mut ps = Vec::new();
        for _ in 0..cnt.max(0) {
            let Some(p) = rd32(bytes, pos) else { break };
            pos += 4;
            ps.push(p.to_string());
        }
        out.push(format!(
            "{}:{}",
            String::from_utf8_lossy(name),
            ps.join(",")
        ));
    }
    out.join(" ")
}

pub fn group(bootstrap: &str, cmd: GroupCommand) -> anyhow::Result<()> {
    let c = metadata_consumer(bootstrap, None)?;
    match cmd {
        GroupCommand::List => {
            let list = c.fetch_group_list(None, TIMEOUT)?;
            for g in list.groups() {
                println!("{}\t{}\tmembers={}", g.name(), g.state(), g.members().len());
            }
        }
        GroupCommand::Describe { group } => {
            let list = c.fetch_group_list(Some(&group), TIMEOUT)?;
            let g = list
                .groups()
                .iter()
                .find(|g| g.name() == group)
                .context("group not found")?;
            println!(
                "group {}  state {}  protocol {} {}",
                g.name(),
                g.state(),
                g.protocol_type(),
                g.protocol()
            );
            println!("members ({}):", g.members().len());
            for m in g.members() {
                println!(
                    "  {}  client {}  host {}  assigned {}",
                    m.id(),
                    m.client_id(),
                    m.client_host(),
                    m.assignment().map(decode_assignment).unwrap_or_default()
                );
            }
            let gc = metadata_consumer(bootstrap, Some(&group))?;
            let md = gc.fetch_metadata(None, TIMEOUT)?;
            let mut tpl = TopicPartitionList::new();
            for t in md.topics() {
                if t.name().starts_with("__") {
                    continue;
                }
                for p in t.partitions() {
                    tpl.add_partition(t.name(), p.id());
                }
            }
            let committed = gc.committed_offsets(tpl, TIMEOUT)?;
            let with_commits: std::collections::BTreeSet<String> = committed
                .elements()
                .iter()
                .filter(|e| matches!(e.offset(), Offset::Offset(_)))
                .map(|e| e.topic().to_string())
                .collect();
            println!(
                "{:<24} {:>9} {:>12} {:>12} {:>10}",
                "topic", "partition", "committed", "end-offset", "lag"
            );
            let mut total_lag = 0;
            for e in committed.elements() {
                if !with_commits.contains(e.topic()) {
                    continue;
                }
                let (_, hi) = gc.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
                match e.offset() {
                    Offset::Offset(o) => {
                        total_lag += (hi - o).max(0);
                        println!(
                            "{:<24} {:>9} {:>12} {:>12} {:>10}",
                            e.topic(),
                            e.partition(),
                            o,
                            hi,
                            (hi - o).max(0)
                        );
                    }
                    // As Kafka's tool: no commit yet, lag unknown.
                    _ => println!(
                        "{:<24} {:>9} {:>12} {:>12} {:>10}",
                        e.topic(),
                        e.partition(),
                        "-",
                        hi,
                        "-"
                    ),
                }
            }
            println!("total lag {total_lag}");
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
        } => {
            let list = c.fetch_group_list(Some(&group), TIMEOUT)?;
            if let Some(g) = list.groups().iter().find(|g| g.name() == group)
                && !g.members().is_empty()
            {
                bail!(
                    "group {group} has {} active member(s) (state {}); stop its consumers before resetting offsets",
                    g.members().len(),
                    g.state()
                );
            }
            let parts = partitions_of(&c, &topic)?;
            let gc = metadata_consumer(bootstrap, Some(&group))?;
            let mut tpl = TopicPartitionList::new();
            if let Some(dt) = to_datetime {
                let ts = parse_datetime(&dt)?;
                let mut q = TopicPartitionList::new();
                for p in &parts {
                    q.add_partition_offset(&topic, *p, Offset::Offset(ts))?;
                }
                let found = gc.offsets_for_times(q, TIMEOUT)?;
                for e in found.elements() {
                    let o = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => gc.fetch_watermarks(&topic, e.partition(), TIMEOUT)?.1,
                    };
                    tpl.add_partition_offset(&topic, e.partition(), Offset::Offset(o))?;
                }
            } else {
                for p in &parts {
                    let (lo, hi) = gc.fetch_watermarks(&topic, *p, TIMEOUT)?;
                    let o = if to_earliest {
                        lo
                    } else if to_latest {
                        hi
                    } else if let Some(o) = to_offset {
                        o.clamp(lo, hi)
                    } else {
                        bail!(
                            "choose one of --to-earliest, --to-latest, --to-offset N, --to-datetime T"
                        );
                    };
                    tpl.add_partition_offset(&topic, *p, Offset::Offset(o))?;
                }
            }
            gc.commit(&tpl, CommitMode::Sync)
                .context("committing the new offsets")?;
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    println!("{group} {}-{} -> {o}", e.topic(), e.partition());
                }
            }
            let _ = std::io::stdout().flush();
        }
    }
    Ok(())
}
