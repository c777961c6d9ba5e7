//! `sluice bench produce` / `sluice bench consume`: librdkafka against a running broker
//! (one this command starts, or `--bootstrap`), beside the in-process log figure, the
//! machine's fsync latency, and peers measured in the same run: Redis Streams (XADD) and
//! NATS JetStream (file storage), each started here with fsync-per-write durability.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

#[derive(Debug, Args)]
pub struct ProduceBenchArgs {
    /// Use this broker instead of starting `sluice serve` here.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Record sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    pub sizes: Vec<usize>,
    /// Skip Redis Streams and NATS JetStream.
    #[arg(long)]
    pub no_peers: bool,
    /// redis-server binary.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    /// nats-server binary (2.10+ for `sync_interval: always`).
    #[arg(long, default_value = "nats-server")]
    pub nats_server: String,
    /// Scratch directory (data of the servers started here); removed afterwards.
    #[arg(long, default_value = "./sluice-bench")]
    pub dir: PathBuf,
    /// acks of the half-of-peak latency measurement.
    #[arg(long, default_value = "all")]
    pub half_acks: String,
    /// Rate (records/s) of the latency measurement instead of half of the measured peak.
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Measure transactional production instead (per transaction size, beside the
    /// idempotent acks=all figure of the same run); no peers, no half-load latency.
    #[arg(long)]
    pub transactional: bool,
    /// Records per transaction for --transactional.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub txn_sizes: Vec<usize>,
    /// Concurrent producers for --transactional, each with its own connection (and its own
    /// transactional.id), for the idempotent baseline and the transactions alike: one
    /// producer's transactions are sequential (AddPartitionsToTxn, records, EndTxn), so
    /// several show the broker's transactional throughput.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub producers: Vec<usize>,
    /// Rounds for --transactional: each runs the idempotent baseline, then every
    /// transaction size; the table shows each setting's median round.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// For --transactional: seconds of idempotent writing to a scratch topic before the
    /// rounds (untimed), so that a disk that bursts (this VM's writes at twice its sustained
    /// rate for a while) is measured in its steady state; 0 to skip.
    #[arg(long, default_value_t = 15.0)]
    pub warmup_secs: f64,
    /// Pin the load generator (this process, librdkafka's threads included) to CPU 0 and
    /// the servers it starts (sluice, Redis, NATS) to CPU 1 (with `taskset`), so client and
    /// server do not take each other's core.
    #[arg(long)]
    pub pin: bool,
}

#[derive(Debug, Args)]
pub struct ConsumeBenchArgs {
    /// Use this broker instead of starting `sluice serve` here.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Records to produce and then consume.
    #[arg(long, default_value_t = 500_000)]
    pub records: usize,
    /// Record size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Scratch directory; removed afterwards.
    #[arg(long, default_value = "./sluice-bench")]
    pub dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Spawned {
    child: Child,
    name: &'static str,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr, child: &mut Child, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        if let Some(st) = child.try_wait()? {
            bail!("{name} exited with {st} before listening on {addr}");
        }
        if Instant::now() > deadline {
            bail!("{name} did not listen on {addr} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Start `sluice serve` (this binary) on a scratch directory; returns it, its address and
/// its idle resident memory.
/// A command for a server this bench starts: on CPU 1 when pinning.
fn server_command(program: impl AsRef<std::ffi::OsStr>, pin: bool) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Pin this process (every thread, and threads started later inherit it) to CPU 0.
fn pin_self() -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-c", "-p", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux) for --pin")?;
    if !status.success() {
        bail!("taskset failed to pin the bench to CPU 0: {status}");
    }
    Ok(())
}

fn start_sluice(dir: &Path, pin: bool) -> anyhow::Result<(Spawned, String, Option<u64>)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut child = server_command(std::env::current_exe()?, pin)
        .arg("--data-dir")
        .arg(dir.join("sluice"))
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting sluice serve")?;
    wait_listening(addr, &mut child, "sluice serve")?;
    std::thread::sleep(Duration::from_millis(1000));
    let rss = rss_kib(child.id());
    Ok((
        Spawned {
            child,
            name: "sluice serve",
        },
        addr.to_string(),
        rss,
    ))
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Throughput and latency of one measurement.
struct Run {
    records: u64,
    bytes: u64,
    secs: f64,
    lat_us: Histogram<u64>,
}

impl Run {
    fn rec_s(&self) -> f64 {
        self.records as f64 / self.secs
    }
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn p(&self, q: f64) -> f64 {
        self.lat_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// fdatasync latency of 1 KiB appends on the scratch file system.
fn fsync_latency(dir: &Path, seconds: f64) -> anyhow::Result<Histogram<u64>> {
    let path = dir.join("fsync-probe");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let buf = vec![b'x'; 1024];
    let mut h = hist();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        h.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    drop(f);
    let _ = fs::remove_file(path);
    Ok(h)
}

/// The machine's limit for a paced load: records of `size` bytes fall due at `rate` per
/// second; one writer appends whatever is due with one write(2) and fdatasync, then
/// repeats (an ideal log with group commit and nothing else). A record's latency is from
/// its due time to the end of the fdatasync that covered it.
fn raw_paced_latency(
    dir: &Path,
    size: usize,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Histogram<u64>> {
    let path = dir.join("paced-probe");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let mut h = hist();
    let start = Instant::now();
    let mut done = 0u64;
    let chunk = vec![b'r'; size];
    let mut buf = Vec::new();
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        if due <= done {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        buf.clear();
        for _ in done..due {
            buf.extend_from_slice(&chunk);
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        let end = start.elapsed().as_secs_f64();
        for i in done..due {
            let due_at = i as f64 / rate;
            h.record(((end - due_at) * 1e6).max(1.0) as u64)?;
        }
        done = due;
    }
    drop(f);
    let _ = fs::remove_file(path);
    Ok(h)
}

#[derive(Clone)]
struct LatencyContext(Arc<Mutex<(Histogram<u64>, u64, u64)>>);

impl ClientContext for LatencyContext {}
impl ProducerContext for LatencyContext {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, r: &DeliveryResult<'_>, sent: Box<Instant>) {
        let mut g = self.0.lock().expect("latency");
        match r {
            Ok(m) => {
                let _ = g.0.record(sent.elapsed().as_micros().max(1) as u64);
                g.1 += 1;
                g.2 += m.payload_len() as u64;
            }
            Err((e, _)) => eprintln!("delivery failed: {e}"),
        }
    }
}

/// The transactional bench's records not yet acknowledged (a waiter is woken when none
/// are left) and its failed deliveries (there should be none).
#[derive(Default)]
struct TxnBenchContext {
    outstanding: Mutex<u64>,
    acked: std::sync::Condvar,
    failed: std::sync::atomic::AtomicU64,
}

impl TxnBenchContext {
    fn sent(&self) {
        *self.outstanding.lock().expect("outstanding") += 1;
    }

    fn unsent(&self) {
        *self.outstanding.lock().expect("outstanding") -= 1;
    }

    /// Blocks until every record sent so far is acknowledged.
    fn wait_acked(&self) {
        let mut n = self.outstanding.lock().expect("outstanding");
        while *n > 0 {
            n = self.acked.wait(n).expect("outstanding");
        }
    }
}

impl ClientContext for TxnBenchContext {}
impl ProducerContext for TxnBenchContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut n = self.outstanding.lock().expect("outstanding");
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.acked.notify_all();
        }
    }
}

fn create_topic(bootstrap: &str, name: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for r in rt.block_on(admin.create_topics(
        &[NewTopic::new(name, 1, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))? {
        if let Err((t, e)) = r
            && e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            bail!("creating {t}: {e}");
        }
    }
    Ok(())
}

/// Produce `size`-byte records for `seconds` (at most `rate` per second when given).
fn kafka_produce(
    bootstrap: &str,
    topic: &str,
    size: usize,
    acks: &str,
    seconds: f64,
    rate: Option<f64>,
) -> anyhow::Result<Run> {
    let ctx = LatencyContext(Arc::new(Mutex::new((hist(), 0, 0))));
    // Throughput runs batch (linger 5 ms, librdkafka's default); latency runs send at once.
    let linger = if rate.is_some() { "0" } else { "5" };
    let p: BaseProducer<LatencyContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if acks == "all" { "true" } else { "false" },
        )
        .set("linger.ms", linger)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("compression.type", "none")
        // TCP_NODELAY, as the Java client does (librdkafka leaves Nagle on by default).
        .set("socket.nagle.disable", "true")
        .create_with_context(ctx.clone())?;
    let payload = vec![b'p'; size];
    // Warm up (connections, metadata, the idempotent producer id) outside the timing.
    p.send(
        BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .payload(&payload[..])
            .key(""),
    )
    .map_err(|(e, _)| e)?;
    p.flush(Duration::from_secs(30))?;
    *ctx.0.lock().expect("latency") = (hist(), 0, 0);
    let start = Instant::now();
    let dur = Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while start.elapsed() < dur {
        if let Some(r) = rate {
            let due = start + Duration::from_secs_f64(sent as f64 / r);
            let now = Instant::now();
            if due > now {
                // librdkafka's poll timeout is in whole milliseconds: a shorter wait would
                // be a busy loop taking a core from the broker on this 2-core machine.
                if due - now >= Duration::from_millis(1) {
                    p.poll(due - now);
                } else {
                    std::thread::sleep(due - now);
                    p.poll(Duration::ZERO);
                }
                continue;
            }
        }
        let rec = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .payload(&payload[..])
            .key("");
        match p.send(rec) {
            Ok(()) => sent += 1,
            Err(_) => {
                p.poll(Duration::from_millis(1));
            }
        }
        // Delivery reports (and so the measured latency) are served by poll: poll after
        // every send when pacing, every 64 sends at full speed.
        if rate.is_some() || sent.is_multiple_of(64) {
            p.poll(Duration::ZERO);
        }
    }
    // Not `flush`: rdkafka's flush polls in 100 ms steps, which would add up to 100 ms.
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    while p.in_flight_count() > 0 {
        anyhow::ensure!(
            Instant::now() < drain_deadline,
            "records still unacknowledged after 120 s"
        );
        p.poll(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let g = ctx.0.lock().expect("latency");
    Ok(Run {
        records: g.1,
        bytes: g.2,
        secs,
        lat_us: g.0.clone(),
    })
}

/// Redis Streams: pipelined XADD (100 per round trip) against a redis-server started here
/// with `appendonly yes` and `appendfsync always` (an fsync before each reply batch).
fn redis_produce(a: &ProduceBenchArgs, size: usize) -> anyhow::Result<(Run, String)> {
    let port = free_port()?;
    let dir = a.dir.join(format!("redis-{size}"));
    fs::create_dir_all(&dir)?;
    let mut child = server_command(&a.redis_server, a.pin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", a.redis_server))?;
    wait_listening(
        format!("127.0.0.1:{port}").parse()?,
        &mut child,
        "redis-server",
    )?;
    let _guard = Spawned {
        child,
        name: "redis-server",
    };
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut con = client.get_connection()?;
    let payload = vec![b'p'; size];
    let mut h = hist();
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < Duration::from_secs_f64(a.seconds) {
        let mut pipe = redis::pipe();
        for _ in 0..100 {
            pipe.cmd("XADD")
                .arg("bench")
                .arg("*")
                .arg("v")
                .arg(&payload[..]);
        }
        let t = Instant::now();
        let _: Vec<String> = pipe.query(&mut con)?;
        let us = t.elapsed().as_micros().max(1) as u64;
        h.record_n(us, 100)?;
        n += 100;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((
        Run {
            records: n,
            bytes: n * size as u64,
            secs,
            lat_us: h,
        },
        "appendonly yes, appendfsync always; 100 XADDs per pipeline".into(),
    ))
}

/// NATS JetStream: async publishes with up to 256 acks outstanding, file storage, against
/// a nats-server started here with `sync_interval: always` (fsync per write).
fn nats_produce(a: &ProduceBenchArgs, size: usize) -> anyhow::Result<(Run, String)> {
    let port = free_port()?;
    let dir = a.dir.join(format!("nats-{size}"));
    fs::create_dir_all(&dir)?;
    let conf = dir.join("nats.conf");
    let write_conf = |sync: bool| -> anyhow::Result<()> {
        let store = dir.join("store");
        fs::write(
            &conf,
            format!(
                "jetstream {{\n  store_dir: \"{}\"\n{}}}\n",
                store.display(),
                if sync {
                    "  sync_interval: always\n"
                } else {
                    ""
                }
            ),
        )?;
        Ok(())
    };
    let start_server = || -> anyhow::Result<Child> {
        server_command(&a.nats_server, a.pin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", a.nats_server))
    };
    write_conf(true)?;
    let mut child = start_server()?;
    let mut durability =
        "file storage, sync_interval: always (fsync per write); 256 acks in flight".to_string();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    if wait_listening(addr, &mut child, "nats-server").is_err() {
        write_conf(false)?;
        child = start_server()?;
        wait_listening(addr, &mut child, "nats-server")?;
        durability = "file storage, default sync (every 2 min: this nats-server has no sync_interval); 256 acks in flight".into();
    }
    let _guard = Spawned {
        child,
        name: "nats-server",
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let seconds = a.seconds;
    let run = rt.block_on(async move {
        let client = async_nats::connect(addr.to_string()).await?;
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "bench".into(),
            subjects: vec!["bench".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        let payload = bytes::Bytes::from(vec![b'p'; size]);
        let mut h = hist();
        let mut inflight = VecDeque::new();
        let (mut n, start) = (0u64, Instant::now());
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            let ack = js.publish("bench", payload.clone()).await?;
            inflight.push_back((Instant::now(), ack));
            if inflight.len() >= 256 {
                let (t, ack) = inflight.pop_front().expect("non-empty");
                ack.await?;
                h.record(t.elapsed().as_micros().max(1) as u64)?;
                n += 1;
            }
        }
        while let Some((t, ack)) = inflight.pop_front() {
            ack.await?;
            h.record(t.elapsed().as_micros().max(1) as u64)?;
            n += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        anyhow::Ok(Run {
            records: n,
            bytes: n * size as u64,
            secs,
            lat_us: h,
        })
    })?;
    Ok((run, durability))
}

fn size_label(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

fn row(system: &str, size: usize, setting: &str, r: &Run) {
    println!(
        "{:<22} {:>7} {:>10} {:>12.0} {:>9.1} {:>9.2} {:>9.2} {:>9.2}",
        system,
        size_label(size),
        setting,
        r.rec_s(),
        r.mb_s(),
        r.p(0.5),
        r.p(0.99),
        r.p(0.999)
    );
}

/// Runs `run(i)` for producers `0..n` at once (one thread each) and adds up their records,
/// bytes and latencies; the time is the longest producer's.
fn concurrently<T: Send>(
    n: usize,
    run: impl Fn(usize) -> anyhow::Result<(Run, T)> + Sync,
) -> anyhow::Result<(Run, Vec<T>)> {
    let results: Vec<anyhow::Result<(Run, T)>> = std::thread::scope(|s| {
        let run = &run;
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || run(i))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("producer panicked")))
            })
            .collect()
    });
    let mut total = Run {
        records: 0,
        bytes: 0,
        secs: 0.0,
        lat_us: hist(),
    };
    let mut extra = Vec::with_capacity(n);
    for r in results {
        let (run, x) = r?;
        total.records += run.records;
        total.bytes += run.bytes;
        total.secs = total.secs.max(run.secs);
        total.lat_us.add(&run.lat_us)?;
        extra.push(x);
    }
    Ok((total, extra))
}

/// Transactions of `txn_size` records for `seconds`: throughput, and the latency of each
/// commit_transaction call (which first waits for the transaction's records).
fn kafka_produce_transactional(
    bootstrap: &str,
    topic: &str,
    txn_id: &str,
    size: usize,
    txn_size: usize,
    seconds: f64,
) -> anyhow::Result<(Run, u64)> {
    let timeout = Duration::from_secs(60);
    // A ThreadedProducer: its thread serves delivery reports the moment they arrive and
    // the context wakes us when the transaction's last record is acknowledged. (rdkafka's
    // BaseProducer::poll(t) always runs for the whole of t, so a loop polling it measures
    // whole milliseconds, and its commit_transaction flushes in 100 ms poll steps unless
    // nothing is left in flight.)
    let p: ThreadedProducer<TxnBenchContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", txn_id)
        // No linger: a transaction's tail would wait for it before the commit.
        .set("linger.ms", "0")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("compression.type", "none")
        .set("socket.nagle.disable", "true")
        .create_with_context(TxnBenchContext::default())?;
    p.init_transactions(timeout)?;
    let payload = vec![b'p'; size];
    let mut commits = hist();
    let (mut records, mut txns) = (0u64, 0u64);
    let start = Instant::now();
    let dur = Duration::from_secs_f64(seconds);
    let trace = std::env::var_os("SLUICE_BENCH_TXN_TRACE").is_some();
    while start.elapsed() < dur {
        let tb = Instant::now();
        p.begin_transaction()?;
        let mut sent = 0;
        while sent < txn_size {
            p.context().sent();
            match p.send(BaseRecord::to(topic).payload(&payload[..]).key("")) {
                Ok(()) => sent += 1,
                Err(_) => {
                    p.context().unsent();
                    std::thread::sleep(Duration::from_micros(200)); // queue full
                }
            }
        }
        let t0 = Instant::now();
        p.context().wait_acked();
        // The delivery callback has run; librdkafka releases the messages right after it.
        while p.in_flight_count() > 0 {
            std::thread::yield_now();
        }
        p.commit_transaction(timeout)?;
        let _ = commits.record(t0.elapsed().as_micros().max(1) as u64);
        if trace && txns % 50 == 0 {
            eprintln!(
                "txn {txns}: begin+send {:?}, commit (tail acknowledged + EndTxn) {:?}",
                t0 - tb,
                t0.elapsed()
            );
        }
        records += txn_size as u64;
        txns += 1;
    }
    let failed = p
        .context()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} transactional records failed delivery (their transactions committed?)");
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((
        Run {
            records,
            bytes: records * size as u64,
            secs,
            lat_us: commits,
        },
        txns,
    ))
}

/// The run with the median records/s, and the lowest and highest records/s.
fn median_run<T>(runs: &[(Run, T)]) -> (&(Run, T), f64, f64) {
    let mut by_rate: Vec<&(Run, T)> = runs.iter().collect();
    by_rate.sort_by(|x, y| x.0.rec_s().total_cmp(&y.0.rec_s()));
    let lo = by_rate.first().map_or(0.0, |r| r.0.rec_s());
    let hi = by_rate.last().map_or(0.0, |r| r.0.rec_s());
    (by_rate[by_rate.len() / 2], lo, hi)
}

fn bench_transactional(a: &ProduceBenchArgs, bootstrap: &str) -> anyhow::Result<()> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    if a.warmup_secs > 0.0 {
        let size = a.sizes.iter().copied().max().unwrap_or(1024);
        create_topic(bootstrap, "bench-warmup")?;
        eprint!("warm-up: idempotent writing for {} s ... ", a.warmup_secs);
        let r = kafka_produce(bootstrap, "bench-warmup", size, "all", a.warmup_secs, None)?;
        eprintln!("{:.0} MB/s", r.mb_s());
    }
    let mut rows = Vec::new();
    for &size in &a.sizes {
        for &producers in &a.producers {
            let producers = producers.max(1);
            let idem_topic = format!("bench-{size}-idempotent-{producers}");
            create_topic(bootstrap, &idem_topic)?;
            for &n in &a.txn_sizes {
                create_topic(bootstrap, &format!("bench-{size}-txn-{n}-{producers}"))?;
            }
            // Rounds alternate the idempotent run and the transactional ones, so that drift
            // of this VM's disk over a run (a burst allowance, then a lower steady rate)
            // reaches every setting alike; each setting reports its median round.
            let mut idem: Vec<(Run, u64)> = Vec::new();
            let mut txn: Vec<Vec<(Run, u64)>> = a.txn_sizes.iter().map(|_| Vec::new()).collect();
            for round in 1..=a.rounds {
                eprint!(
                    "round {round}: librdkafka -> sluice: {} acks=all idempotent, {producers} producer(s) ... ",
                    size_label(size)
                );
                let (run, _) = concurrently(producers, |_| {
                    Ok((
                        kafka_produce(bootstrap, &idem_topic, size, "all", a.seconds, None)?,
                        (),
                    ))
                })?;
                eprintln!("{:.0} rec/s", run.rec_s());
                idem.push((run, 0));
                for (k, &n) in a.txn_sizes.iter().enumerate() {
                    let topic = format!("bench-{size}-txn-{n}-{producers}");
                    eprint!(
                        "round {round}: librdkafka -> sluice: {} transactions of {n}, {producers} producer(s) ... ",
                        size_label(size)
                    );
                    let (r, txns) = concurrently(producers, |i| {
                        let id = format!("bench-{topic}-{i}");
                        kafka_produce_transactional(bootstrap, &topic, &id, size, n, a.seconds)
                    })?;
                    let txns: u64 = txns.iter().sum();
                    eprintln!("{:.0} rec/s, {txns} transactions", r.rec_s());
                    txn[k].push((r, txns));
                }
            }
            rows.push((size, producers, idem, txn));
        }
    }
    println!();
    println!(
        "Transactional produce (same run, 1 partition, fsync=always topics; N producers at once, each its own connection and transactional.id; median of {} alternating rounds{})",
        a.rounds,
        if a.warmup_secs > 0.0 {
            format!(", after a {} s write warm-up", a.warmup_secs)
        } else {
            String::new()
        }
    );
    println!(
        "{:<8} {:>3} {:>12} {:>10} {:>17} {:>8} {:>8} {:>11} {:>11} {:>9}",
        "record",
        "N",
        "setting",
        "records/s",
        "range",
        "MB/s",
        "txns/s",
        "commit p50",
        "commit p99",
        "vs idem."
    );
    for (size, producers, idem, txn) in &rows {
        let (base, lo, hi) = median_run(idem);
        println!(
            "{:<8} {:>3} {:>12} {:>10.0} {:>17} {:>8.1} {:>8} {:>11} {:>11} {:>9}",
            size_label(*size),
            producers,
            "idempotent",
            base.0.rec_s(),
            format!("{lo:.0}-{hi:.0}"),
            base.0.mb_s(),
            "-",
            "-",
            "-",
            "1.00x"
        );
        for (n, runs) in a.txn_sizes.iter().zip(txn) {
            let ((r, txns), lo, hi) = median_run(runs);
            println!(
                "{:<8} {:>3} {:>12} {:>10.0} {:>17} {:>8.1} {:>8.0} {:>8.2} ms {:>8.2} ms {:>8.2}x",
                size_label(*size),
                producers,
                format!("txn of {n}"),
                r.rec_s(),
                format!("{lo:.0}-{hi:.0}"),
                r.mb_s(),
                *txns as f64 / r.secs,
                r.p(0.5),
                r.p(0.99),
                r.rec_s() / base.0.rec_s()
            );
        }
    }
    println!(
        "vs idem. = median records/s over the idempotent median. commit = from the last send to commit_transaction's return: the transaction's last records are acknowledged, then EndTxn (PrepareCommit synced, markers written and synced)."
    );
    Ok(())
}

pub fn bench_produce(a: ProduceBenchArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    if a.pin {
        pin_self()?;
    }
    if a.transactional {
        let (server, bootstrap, _) = match &a.bootstrap {
            Some(b) => (None, b.clone(), None),
            None => {
                let (s, b, rss) = start_sluice(&a.dir, a.pin)?;
                (Some(s), b, rss)
            }
        };
        let result = bench_transactional(&a, &bootstrap);
        drop(server);
        let _ = fs::remove_dir_all(&a.dir);
        return result;
    }
    let (server, bootstrap, rss) = match &a.bootstrap {
        Some(b) => (None, b.clone(), None),
        None => {
            let (s, b, rss) = start_sluice(&a.dir, a.pin)?;
            (Some(s), b, rss)
        }
    };
    eprintln!(
        "bench produce: broker {bootstrap}; {:.1}s per measurement",
        a.seconds
    );
    eprint!("fsync latency of this file system (1 KiB write + fdatasync) ... ");
    let fsync = fsync_latency(&a.dir, 2.0)?;
    let fsync_p50 = fsync.value_at_quantile(0.5) as f64 / 1000.0;
    let fsync_p99 = fsync.value_at_quantile(0.99) as f64 / 1000.0;
    eprintln!("p50 {fsync_p50:.3} ms, p99 {fsync_p99:.3} ms");
    let mut kafka_rows = Vec::new();
    let mut log_rows = Vec::new();
    for &size in &a.sizes {
        for acks in ["1", "all"] {
            let topic = format!("bench-{size}-{acks}");
            create_topic(&bootstrap, &topic)?;
            eprint!(
                "librdkafka -> sluice: {} acks={acks} ... ",
                size_label(size)
            );
            let r = kafka_produce(&bootstrap, &topic, size, acks, a.seconds, None)?;
            eprintln!("{:.0} rec/s", r.rec_s());
            kafka_rows.push((size, acks, r));
        }
        eprint!(
            "in-process log append: {} x 256-record batches, fsync=always ... ",
            size_label(size)
        );
        let fig = crate::log_figure(&a.dir, size, 256, "always", a.seconds.min(2.0))?;
        eprintln!("{:.0} rec/s", fig.0);
        log_rows.push((size, fig));
    }
    // Latency at half of peak load (1 KiB, acks=all).
    let half_size = *a.sizes.last().unwrap_or(&1024);
    let peak = kafka_rows
        .iter()
        .find(|(s, acks, _)| *s == half_size && *acks == "all")
        .map(|(_, _, r)| r.rec_s())
        .unwrap_or(1000.0);
    let peak = a.latency_rate.map_or(peak, |r| r * 2.0);
    create_topic(&bootstrap, "bench-half")?;
    eprint!("latency at half of peak: {:.0} rec/s ... ", peak / 2.0);
    let half = kafka_produce(
        &bootstrap,
        "bench-half",
        half_size,
        &a.half_acks,
        a.seconds,
        Some(peak / 2.0),
    )?;
    eprintln!("p99 {:.2} ms", half.p(0.99));
    create_topic(&bootstrap, "bench-half-lean")?;
    eprint!("lean pipelined client at the same rate ... ");
    let lean = crate::lean::paced_latency(
        &bootstrap,
        "bench-half-lean",
        half_size,
        peak / 2.0,
        a.seconds,
        if a.half_acks == "all" { -1 } else { 1 },
    )?;
    let lean_ms = |q: f64| lean.value_at_quantile(q) as f64 / 1000.0;
    eprintln!("p99 {:.2} ms", lean_ms(0.99));
    eprint!("raw write+fdatasync paced at the same rate ... ");
    let paced = raw_paced_latency(&a.dir, half_size, peak / 2.0, a.seconds)?;
    let paced_p99 = paced.value_at_quantile(0.99) as f64 / 1000.0;
    eprintln!("p99 {paced_p99:.2} ms");
    let mut peers = Vec::new();
    if !a.no_peers {
        for &size in &a.sizes {
            eprint!("Redis Streams {} ... ", size_label(size));
            match redis_produce(&a, size) {
                Ok((r, d)) => {
                    eprintln!("{:.0} rec/s", r.rec_s());
                    peers.push(("Redis Streams", size, r, d));
                }
                Err(e) => eprintln!("skipped: {e:#}"),
            }
            eprint!("NATS JetStream {} ... ", size_label(size));
            match nats_produce(&a, size) {
                Ok((r, d)) => {
                    eprintln!("{:.0} rec/s", r.rec_s());
                    peers.push(("NATS JetStream", size, r, d));
                }
                Err(e) => eprintln!("skipped: {e:#}"),
            }
        }
    }
    drop(server);
    let _ = fs::remove_dir_all(&a.dir);

    println!();
    println!(
        "Produce throughput and latency (same run, same machine, 1 partition / stream, one producer)"
    );
    println!(
        "{:<22} {:>7} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "system", "record", "setting", "records/s", "MB/s", "p50 ms", "p99 ms", "p999 ms"
    );
    for (size, acks, r) in &kafka_rows {
        row("sluice (librdkafka)", *size, &format!("acks={acks}"), r);
    }
    for (name, size, r, _) in &peers {
        row(name, *size, "fsync/write", r);
    }
    for (size, (rec_s, mb_s)) in &log_rows {
        println!(
            "{:<22} {:>7} {:>10} {:>12.0} {:>9.1}   (in-process `bench log`, 256-record batches, fsync=always)",
            "sluice log in-process",
            size_label(*size),
            "always",
            rec_s,
            mb_s
        );
    }
    println!();
    for &size in &a.sizes {
        let ours = kafka_rows
            .iter()
            .find(|(s, acks, _)| *s == size && *acks == "all")
            .map(|(_, _, r)| r.rec_s());
        for (name, s, r, d) in &peers {
            if *s == size
                && let Some(o) = ours
            {
                println!(
                    "{} acks=all vs {name} ({d}): {:.1}x",
                    size_label(size),
                    o / r.rec_s()
                );
            }
        }
    }
    println!(
        "latency at half of peak ({:.0} rec/s, {} acks={}): p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms; this machine's fsync p99 {:.3} ms -> ratio {:.1}x",
        peak / 2.0,
        size_label(half_size),
        a.half_acks,
        half.p(0.5),
        half.p(0.99),
        half.p(0.999),
        fsync_p99,
        half.p(0.99) / fsync_p99
    );
    println!(
        "same rate, lean pipelined Kafka-protocol client (every due record in one request, up to 4 in flight; measured from each record's due time): p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms -> ratio to fsync p99 {:.1}x",
        lean_ms(0.5),
        lean_ms(0.99),
        lean_ms(0.999),
        lean_ms(0.99) / fsync_p99
    );
    println!(
        "raw write+fdatasync of the same bytes paced at the same rate (the machine's limit for this load): p50 {:.2} ms, p99 {:.2} ms -> sluice p99 / raw p99 = {:.1}x",
        paced.value_at_quantile(0.5) as f64 / 1000.0,
        paced_p99,
        half.p(0.99) / paced_p99
    );
    if let Some(kib) = rss {
        println!(
            "broker idle resident memory (VmRSS 1 s after start): {:.1} MB",
            kib as f64 / 1024.0
        );
    }
    println!(
        "Sluice topics use fsync=always: acks=all (and acks=1) are answered after fdatasync, as Redis appendfsync=always and NATS sync_interval=always."
    );
    Ok(())
}

pub fn bench_consume(a: ConsumeBenchArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let (server, bootstrap, _) = match &a.bootstrap {
        Some(b) => (None, b.clone(), None),
        None => {
            let (s, b, rss) = start_sluice(&a.dir, false)?;
            (Some(s), b, rss)
        }
    };
    create_topic(&bootstrap, "bench-consume")?;
    eprint!(
        "producing {} records of {} ... ",
        a.records,
        size_label(a.size)
    );
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .create()?;
    let payload = vec![b'c'; a.size];
    let mut sent = 0;
    while sent < a.records {
        match p.send(BaseRecord::<(), [u8]>::to("bench-consume").payload(&payload[..])) {
            Ok(()) => sent += 1,
            Err(_) => {
                p.poll(Duration::from_millis(1));
            }
        }
    }
    p.flush(Duration::from_secs(300))?;
    eprintln!("done");
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "bench-consume")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("bench-consume", 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let start = Instant::now();
    let (mut n, mut bytes) = (0usize, 0u64);
    while n < a.records {
        if let Some(m) = c.poll(Duration::from_secs(5)) {
            let m = m?;
            bytes += m.payload_len() as u64;
            n += 1;
        } else {
            bail!("consumer stalled after {n} records");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(c);
    drop(server);
    eprint!("in-process sequential read of the log ... ");
    let (ours, raw) = crate::read_figure(
        &a.dir,
        ((a.records as u64 * a.size as u64) >> 20).clamp(16, 256),
    )?;
    eprintln!("done");
    let _ = fs::remove_dir_all(&a.dir);
    println!();
    println!(
        "consume (librdkafka <- sluice serve, 1 partition, {} records of {}): {:.0} records/s, {:.1} MB/s",
        a.records,
        size_label(a.size),
        n as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    println!(
        "in-process log read, same run: {ours:.1} MB/s (raw read(2) {raw:.1} MB/s); network consume / in-process = {:.2}",
        bytes as f64 / secs / 1e6 / ours
    );
    Ok(())
}
