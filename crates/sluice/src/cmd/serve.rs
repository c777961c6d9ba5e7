//! `sluice serve`: the Kafka-protocol broker on the embedded data directory.
//!
//! Settings are layered: defaults, then a TOML config file (`--config`), then
//! environment variables (`SLUICE_*`), then flags. Unknown keys in the file are errors.
//!
//! `--pipeline FILE` (repeatable) runs stream-processing pipelines inside the broker
//! process, each on its own thread in follow mode, with `topic` sources and sinks on the
//! broker's own log (records produced through the Kafka protocol reach them directly).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use sluice_broker::{Broker, BrokerConfig, Server};
use sluice_connect::config::{ConnectorsConfig, SourceConfig};
use sluice_engine::pipeline::PipelineDef;
use sluice_log::{BatchBuilder, partition_for_key};

use super::{now_ms, open_writer_with};
use sluice_runtime::{Supervisor, load_pipeline};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (keys: listen, advertised, max_request_bytes,
    /// queued_max_request_bytes, max_connections, max_connections_per_ip,
    /// connections_max_idle_ms, request_read_timeout_ms, auto_create_topics,
    /// default_partitions, group_min_session_timeout_ms, group_max_session_timeout_ms,
    /// group_initial_rebalance_delay_ms, offsets_retention_minutes, log_level,
    /// [topic_defaults]).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:9092: loopback only).
    #[arg(long, env = "SLUICE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HOST:PORT given to clients (default: the listen address).
    #[arg(long, env = "SLUICE_ADVERTISED")]
    pub advertised: Option<String>,
    /// Largest request accepted, bytes (socket.request.max.bytes; default 104857600).
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Create unknown topics on Metadata requests (auto.create.topics.enable; default true).
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics (num.partitions; default 1).
    #[arg(long, env = "SLUICE_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// group.initial.rebalance.delay.ms: how long a new group waits for more members
    /// before its first generation (default 3000, as Kafka; `--demo` uses 0 unless set).
    #[arg(long, env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    /// Log level: error, warn, info, debug, trace (default info).
    #[arg(long, env = "SLUICE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Seed a "demo" topic with a few keyed records and print kcat commands to try.
    #[arg(long)]
    pub demo: bool,
    /// Run this pipeline file (as for `sluice run`) inside the broker, in follow mode, with
    /// topic sources and sinks on the broker's log; repeatable. Stopped with the server.
    #[arg(long = "pipeline", value_name = "FILE")]
    pub pipelines: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<SocketAddr>,
    advertised: Option<String>,
    max_request_bytes: Option<usize>,
    queued_max_request_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    request_read_timeout_ms: Option<u64>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<i32>,
    group_min_session_timeout_ms: Option<i32>,
    group_max_session_timeout_ms: Option<i32>,
    group_initial_rebalance_delay_ms: Option<i64>,
    offsets_retention_minutes: Option<i64>,
    log_level: Option<String>,
    #[serde(default)]
    topic_defaults: BTreeMap<String, String>,
}

/// Resolve the layered settings.
fn resolve(args: &ServeArgs) -> anyhow::Result<(BrokerConfig, String, BTreeMap<String, String>)> {
    let file: ServeFile = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("config {}", p.display()))?
        }
        None => ServeFile::default(),
    };
    let mut cfg = BrokerConfig::default();
    if let Some(l) = args.listen.or(file.listen) {
        cfg.listen = l;
    }
    let advertised = args
        .advertised
        .clone()
        .or(file.advertised)
        .unwrap_or_else(|| cfg.listen.to_string());
    let (host, port) = advertised
        .rsplit_once(':')
        .with_context(|| format!("advertised address {advertised:?} must be HOST:PORT"))?;
    cfg.advertised_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    cfg.advertised_port = port
        .parse()
        .with_context(|| format!("advertised port in {advertised:?}"))?;
    if let Some(v) = args.max_request_bytes.or(file.max_request_bytes) {
        cfg.max_request_bytes = v;
    }
    if let Some(v) = file.queued_max_request_bytes {
        cfg.queued_max_request_bytes = v;
    }
    if let Some(v) = file.max_connections {
        cfg.max_connections = v;
    }
    if let Some(v) = file.max_connections_per_ip {
        cfg.max_connections_per_ip = v;
    }
    if let Some(v) = file.connections_max_idle_ms {
        cfg.connections_max_idle_ms = v;
    }
    if let Some(v) = file.request_read_timeout_ms {
        cfg.request_read_timeout_ms = v;
    }
    if let Some(v) = args.auto_create_topics.or(file.auto_create_topics) {
        cfg.auto_create_topics = v;
    }
    if let Some(v) = args.default_partitions.or(file.default_partitions) {
        if v <= 0 {
            bail!("default_partitions must be positive, got {v}");
        }
        cfg.default_partitions = v;
    }
    if let Some(v) = args
        .group_initial_rebalance_delay_ms
        .or(file.group_initial_rebalance_delay_ms)
    {
        cfg.groups.initial_rebalance_delay_ms = v;
    } else if args.demo {
        // The quick start's single consumer gets its partitions at once.
        cfg.groups.initial_rebalance_delay_ms = 0;
    }
    if let Some(v) = file.group_min_session_timeout_ms {
        cfg.groups.min_session_timeout_ms = v;
    }
    if let Some(v) = file.group_max_session_timeout_ms {
        cfg.groups.max_session_timeout_ms = v;
    }
    if let Some(v) = file.offsets_retention_minutes {
        cfg.groups.offsets_retention_ms = v * 60_000;
    }
    for (k, v) in &file.topic_defaults {
        sluice_log::TopicConfig::validate_entry(k, v)?;
    }
    let level = args
        .log_level
        .clone()
        .or(file.log_level)
        .unwrap_or_else(|| "info".into());
    Ok((cfg, level, file.topic_defaults))
}

pub fn run(dir: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let (cfg, level, topic_defaults) = resolve(&args)?;
    let level: tracing::Level = level
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown log level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let mut defs: Vec<(PathBuf, PipelineDef, PathBuf)> = Vec::new();
    for file in &args.pipelines {
        let (def, base_dir) = load_pipeline(file)?;
        if matches!(
            ConnectorsConfig::from_pipeline(&def)?.source,
            SourceConfig::File { .. }
        ) {
            bail!(
                "pipeline file {}: `sluice serve` runs pipelines in follow mode, which needs a topic or kafka source (a file source is read once: use `sluice run`)",
                file.display()
            );
        }
        if let Some((other, _, _)) = defs.iter().find(|(_, d, _)| d.name == def.name) {
            bail!(
                "pipeline files {} and {} both name a pipeline {:?}; names must differ",
                other.display(),
                file.display(),
                def.name
            );
        }
        defs.push((file.clone(), def, base_dir));
    }
    // One open (recovery scans each active segment once), with the topic defaults.
    let log = Arc::new(open_writer_with(dir, topic_defaults)?);
    if args.demo {
        seed_demo(&log)?;
    }
    let mut pipelines = Supervisor::new(log.clone(), dir);
    for (file, def, base_dir) in defs {
        if let Some(note) = pipelines.create_source_topic(&def, cfg.default_partitions)? {
            eprintln!("sluice serve: {note}");
        }
        // On an error the supervisor stops those already started as it drops.
        pipelines.start(&file, def, base_dir)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-broker")
        .build()?;
    let result: anyhow::Result<()> = rt.block_on(async {
        let broker = Arc::new(Broker::new(log.clone(), cfg.clone())?);
        let server = Server::bind(broker.clone())
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = server.local_addr()?;
        eprintln!(
            "sluice serve: Kafka protocol on {addr} (advertised {}:{}), data directory {}",
            cfg.advertised_host,
            cfg.advertised_port,
            dir.display()
        );
        if args.demo {
            eprintln!("try:  kcat -b {addr} -L");
            eprintln!("      kcat -b {addr} -C -t demo -e -f '%p %o %k=%s\\n'");
            eprintln!("      echo 'user-9:hello' | kcat -b {addr} -P -t demo -K:");
        }
        server.run(shutdown_signal()).await;
        // Each partition saves its producer state when the log closes (clean shutdown).
        Ok(())
    });
    drop(rt);
    // Pipelines stop before the log closes: they commit their sinks and offsets.
    let failed = pipelines.stop_all();
    drop(pipelines);
    result?;
    match Arc::try_unwrap(log) {
        Ok(log) => log.close()?,
        Err(log) => {
            // Something still holds the log; syncing is still owed to acknowledged data.
            for name in log.topic_names() {
                for p in log.topic(&name)?.partitions() {
                    p.flush()?;
                }
            }
        }
    }
    if !failed.is_empty() {
        bail!("pipeline(s) failed: {}", failed.join(", "));
    }
    eprintln!("sluice serve: stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn seed_demo(log: &sluice_log::Log) -> anyhow::Result<()> {
    if log.topic("demo").is_ok() {
        return Ok(());
    }
    let topic = log.create_topic("demo", 3, BTreeMap::new())?;
    let mut builders: BTreeMap<i32, BatchBuilder> = BTreeMap::new();
    for i in 0..12 {
        let key = format!("user-{}", i % 5);
        let value = format!("{{\"user\":\"{key}\",\"page\":\"/item/{i}\"}}");
        let p = partition_for_key(key.as_bytes(), 3);
        builders.entry(p).or_default().push(
            now_ms(),
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[],
        );
    }
    for (p, b) in builders {
        topic
            .partition(p)
            .expect("partition")
            .append(&mut b.build()?)?;
    }
    eprintln!("seeded topic demo (3 partitions, 12 keyed records)");
    Ok(())
}
