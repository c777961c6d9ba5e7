//! Sluice's benchmarks, behind the binary's thin `sluice bench` command: each prints
//! figures beside a peer or the machine's limit measured in the same run.
//!
//! * `sluice bench log` (this file): append and read throughput of the storage engine,
//!   beside the raw limit of the same file system;
//! * [`kafka`]: `bench produce` / `bench consume`, librdkafka against a broker beside
//!   Redis Streams and NATS JetStream, with [`lean`]'s paced-latency producer;
//! * [`window`]: `bench window`, window aggregation through the pipeline runtime in both
//!   execution modes, beside the engine core alone.

pub mod kafka;
pub mod lean;
pub mod window;

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_log::{BatchBuilder, FsyncPolicy, Log, LogOptions};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// In-process append/read throughput vs raw write+fdatasync of the same bytes.
    Log(LogBenchArgs),
    /// Window aggregation (tumbling, hopping, session) in both execution modes: events/s
    /// and ingest-to-emit latency side by side.
    Window(crate::window::WindowBenchArgs),
    /// librdkafka producing to a broker, beside Redis Streams and NATS JetStream.
    Produce(crate::kafka::ProduceBenchArgs),
    /// librdkafka consuming from a broker, beside the in-process log read figure.
    Consume(crate::kafka::ConsumeBenchArgs),
}

#[derive(Debug, Args)]
pub struct LogBenchArgs {
    /// Scratch directory (on the file system you want to measure); removed afterwards.
    #[arg(long, default_value = "./sluice-bench")]
    pub dir: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Stop a measurement after this many MiB even if time remains.
    #[arg(long, default_value_t = 512)]
    pub max_mib: u64,
    /// Record value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    pub record_sizes: Vec<usize>,
    /// Records per batch.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub batch_records: Vec<usize>,
    /// fsync policies.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "always,interval:100,never"
    )]
    pub fsync: Vec<String>,
    /// Concurrent writers for the group-commit row.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Log(a) => bench_log(a),
        BenchCommand::Window(a) => crate::window::bench_window(a),
        BenchCommand::Produce(a) => crate::kafka::bench_produce(a),
        BenchCommand::Consume(a) => crate::kafka::bench_consume(a),
    }
}

struct Measure {
    records: u64,
    bytes: u64,
    secs: f64,
}

impl Measure {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn rec_s(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

fn make_batch(record_size: usize, records: usize) -> anyhow::Result<Vec<u8>> {
    let mut b = BatchBuilder::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..records {
        let v: Vec<u8> = (0..record_size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        b.push(crate::now_ms(), None, Some(&v), &[]);
    }
    Ok(b.build()?)
}

fn open_log(dir: &Path) -> anyhow::Result<Log> {
    let _ = fs::remove_dir_all(dir);
    Ok(Log::open(
        dir,
        LogOptions {
            background: true,
            ..LogOptions::default()
        },
    )?)
}

fn topic_config(policy: &str) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    c.insert("fsync".to_string(), policy.to_string());
    c
}

fn sluice_append(
    dir: &Path,
    policy: &str,
    batch: &[u8],
    records: usize,
    writers: usize,
    a: &LogBenchArgs,
) -> anyhow::Result<Measure> {
    let log = Arc::new(open_log(dir)?);
    log.create_topic("bench", 1, topic_config(policy))?;
    let limit = a.max_mib << 20;
    let dur = Duration::from_secs_f64(a.seconds);
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|_| {
            let log = log.clone();
            let mut buf = batch.to_vec();
            std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
                let p = log.partition("bench", 0)?;
                let (mut n, mut bytes) = (0u64, 0u64);
                while start.elapsed() < dur && bytes * writers as u64 <= limit {
                    p.append(&mut buf)?;
                    n += records as u64;
                    bytes += buf.len() as u64;
                }
                Ok((n, bytes))
            })
        })
        .collect();
    let mut m = Measure {
        records: 0,
        bytes: 0,
        secs: 0.0,
    };
    for h in handles {
        let (n, b) = h.join().expect("bench writer panicked")?;
        m.records += n;
        m.bytes += b;
    }
    m.secs = start.elapsed().as_secs_f64();
    // Untimed: write back what is dirty so the next measurement starts from a quiet disk.
    Arc::try_unwrap(log)
        .map_err(|_| anyhow::anyhow!("writers still running"))?
        .close()?;
    let _ = fs::remove_dir_all(dir);
    Ok(m)
}

fn raw_append(
    path: &Path,
    policy: FsyncPolicy,
    batch: &[u8],
    records: usize,
    a: &LogBenchArgs,
) -> anyhow::Result<Measure> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let limit = a.max_mib << 20;
    let dur = Duration::from_secs_f64(a.seconds);
    let start = Instant::now();
    let mut last_sync = Instant::now();
    let mut m = Measure {
        records: 0,
        bytes: 0,
        secs: 0.0,
    };
    while start.elapsed() < dur && m.bytes <= limit {
        f.write_all(batch)?;
        match policy {
            FsyncPolicy::Always => f.sync_data()?,
            FsyncPolicy::Interval(ms) if last_sync.elapsed() >= Duration::from_millis(ms) => {
                f.sync_data()?;
                last_sync = Instant::now();
            }
            _ => {}
        }
        m.records += records as u64;
        m.bytes += batch.len() as u64;
    }
    m.secs = start.elapsed().as_secs_f64();
    f.sync_all()?; // untimed, as for the log
    drop(f);
    let _ = fs::remove_file(path);
    Ok(m)
}

impl Measure {
    fn add(self, o: Measure) -> Measure {
        Measure {
            records: self.records + o.records,
            bytes: self.bytes + o.bytes,
            secs: self.secs + o.secs,
        }
    }
}

/// Measure raw and Sluice alternately, two halves each (raw, sluice, sluice, raw), so
/// neither side always runs first on a disk that is still writing back.
fn paired(
    a: &LogBenchArgs,
    mut raw: impl FnMut(&LogBenchArgs) -> anyhow::Result<Measure>,
    mut ours: impl FnMut(&LogBenchArgs) -> anyhow::Result<Measure>,
) -> anyhow::Result<(Measure, Measure)> {
    let half = LogBenchArgs {
        seconds: a.seconds / 2.0,
        max_mib: a.max_mib / 2,
        dir: a.dir.clone(),
        record_sizes: vec![],
        batch_records: vec![],
        fsync: vec![],
        writers: a.writers,
    };
    let r1 = raw(&half)?;
    let o1 = ours(&half)?;
    let o2 = ours(&half)?;
    let r2 = raw(&half)?;
    Ok((o1.add(o2), r1.add(r2)))
}

fn size_label(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

fn bench_log(a: LogBenchArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let policies: Vec<(String, FsyncPolicy)> = a
        .fsync
        .iter()
        .map(|s| {
            s.parse()
                .map(|p| (s.clone(), p))
                .map_err(|e: String| anyhow::anyhow!("--fsync {s}: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut cases: Vec<(usize, usize, &(String, FsyncPolicy))> = Vec::new();
    for &r in &a.record_sizes {
        for &b in &a.batch_records {
            for p in &policies {
                cases.push((r, b, p));
            }
        }
    }
    let total = cases.len() + 2;
    eprintln!(
        "bench log: {} cases, each raw and sluice for {:.1}s (interleaved halves) in {}; raw = write(2) + fdatasync of the same batch bytes under the same policy, one writer",
        cases.len(),
        a.seconds,
        a.dir.display()
    );
    let mut rows = Vec::new();
    for (i, (rsize, brecs, (pname, policy))) in cases.iter().enumerate() {
        eprint!(
            "[{}/{}] {} x {} records, fsync={} ... ",
            i + 1,
            total,
            size_label(*rsize),
            brecs,
            pname
        );
        std::io::stderr().flush()?;
        let batch = make_batch(*rsize, *brecs)?;
        let (ours, raw) = paired(
            &a,
            |h| raw_append(&a.dir.join("raw.bin"), *policy, &batch, *brecs, h),
            |h| sluice_append(&a.dir.join("log"), pname, &batch, *brecs, 1, h),
        )?;
        eprintln!("{:.1} MB/s vs raw {:.1} MB/s", ours.mb_s(), raw.mb_s());
        rows.push((*rsize, *brecs, pname.clone(), ours, raw));
    }
    // Group commit: several writers sharing fdatasyncs vs one raw writer syncing each batch.
    let gc_size = *a.record_sizes.last().unwrap_or(&1024);
    eprint!(
        "[{}/{}] group commit: {} writers, {} x 1, fsync=always ... ",
        total - 1,
        total,
        a.writers,
        size_label(gc_size)
    );
    let batch = make_batch(gc_size, 1)?;
    let (gc, gc_raw) = paired(
        &a,
        |h| raw_append(&a.dir.join("raw.bin"), FsyncPolicy::Always, &batch, 1, h),
        |h| sluice_append(&a.dir.join("log"), "always", &batch, 1, a.writers, h),
    )?;
    eprintln!("{:.1} MB/s vs raw {:.1} MB/s", gc.mb_s(), gc_raw.mb_s());
    // Sequential read: the same segment file through the log and through read(2).
    eprint!("[{total}/{total}] sequential read ... ");
    let (read_ours, read_raw) = bench_read(&a)?;
    eprintln!(
        "{:.1} MB/s vs raw {:.1} MB/s",
        read_ours.mb_s(),
        read_raw.mb_s()
    );
    let _ = fs::remove_dir_all(&a.dir);

    println!();
    println!(
        "Sluice log append throughput vs the raw limit of this file system (same run, same batch bytes)"
    );
    println!(
        "{:>7} {:>6} {:>12} {:>14} {:>12} {:>12} {:>7}",
        "record", "batch", "fsync", "sluice rec/s", "sluice MB/s", "raw MB/s", "ratio"
    );
    for (rsize, brecs, pname, ours, raw) in &rows {
        println!(
            "{:>7} {:>6} {:>12} {:>14.0} {:>12.1} {:>12.1} {:>7.2}",
            size_label(*rsize),
            brecs,
            pname,
            ours.rec_s(),
            ours.mb_s(),
            raw.mb_s(),
            ours.mb_s() / raw.mb_s()
        );
    }
    println!(
        "{:>7} {:>6} {:>12} {:>14.0} {:>12.1} {:>12.1} {:>7.2}   <- {} writers, group commit vs one raw writer",
        size_label(gc_size),
        1,
        "always",
        gc.rec_s(),
        gc.mb_s(),
        gc_raw.mb_s(),
        gc.mb_s() / gc_raw.mb_s(),
        a.writers
    );
    println!();
    println!(
        "sequential read (1 MiB fetches, page cache warm): sluice {:.1} MB/s ({:.0} rec/s), raw read(2) {:.1} MB/s, ratio {:.2}",
        read_ours.mb_s(),
        read_ours.rec_s(),
        read_raw.mb_s(),
        read_ours.mb_s() / read_raw.mb_s()
    );
    Ok(())
}

fn bench_read(a: &LogBenchArgs) -> anyhow::Result<(Measure, Measure)> {
    let dir = a.dir.join("read");
    let log = open_log(&dir)?;
    log.create_topic("bench", 1, topic_config("never"))?;
    let p = log.partition("bench", 0)?;
    let mut batch = make_batch(1024, 64)?;
    let target = (a.max_mib.min(256)) << 20;
    let mut written = 0u64;
    while written < target {
        p.append(&mut batch)?;
        written += batch.len() as u64;
    }
    p.flush()?;
    let hw = p.high_watermark();
    // Raw: read(2) the segment file in 1 MiB chunks.
    let seg = dir.join("topics/bench/0/00000000000000000000.log");
    let start = Instant::now();
    let mut f = File::open(&seg)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut raw_bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw_bytes += n as u64;
    }
    let raw = Measure {
        records: hw as u64,
        bytes: raw_bytes,
        secs: start.elapsed().as_secs_f64(),
    };
    let start = Instant::now();
    let mut off = 0;
    let mut bytes = 0u64;
    while off < hw {
        let r = p.read(off, 1 << 20)?;
        bytes += r.bytes.len() as u64;
        off = r.next_offset;
    }
    let ours = Measure {
        records: hw as u64,
        bytes,
        secs: start.elapsed().as_secs_f64(),
    };
    drop(log);
    let _ = fs::remove_dir_all(&dir);
    Ok((ours, raw))
}

/// In-process append figure for `bench produce` (same sizes, one writer).
pub(crate) fn log_figure(
    dir: &Path,
    record_size: usize,
    batch_records: usize,
    policy: &str,
    seconds: f64,
) -> anyhow::Result<(f64, f64)> {
    let a = LogBenchArgs {
        dir: dir.to_path_buf(),
        seconds,
        max_mib: 512,
        record_sizes: vec![],
        batch_records: vec![],
        fsync: vec![],
        writers: 1,
    };
    let batch = make_batch(record_size, batch_records)?;
    let m = sluice_append(
        &dir.join("log-figure"),
        policy,
        &batch,
        batch_records,
        1,
        &a,
    )?;
    Ok((m.rec_s(), m.mb_s()))
}

/// In-process sequential read figure for `bench consume`: (sluice MB/s, raw read(2) MB/s).
pub(crate) fn read_figure(dir: &Path, mib: u64) -> anyhow::Result<(f64, f64)> {
    let a = LogBenchArgs {
        dir: dir.to_path_buf(),
        seconds: 1.0,
        max_mib: mib,
        record_sizes: vec![],
        batch_records: vec![],
        fsync: vec![],
        writers: 1,
    };
    let (ours, raw) = bench_read(&a)?;
    Ok((ours.mb_s(), raw.mb_s()))
}
