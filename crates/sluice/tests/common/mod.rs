//! A real `sluice serve` process for client tests: started on a free loopback port over a
//! temporary data directory, restartable, killable with SIGKILL or SIGTERM.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub struct SluiceServer {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
    extra: Vec<String>,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SluiceServer {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut s = SluiceServer {
            dir: dir.to_path_buf(),
            addr,
            child: None,
            extra: extra.iter().map(|x| x.to_string()).collect(),
            log: dir.with_extension("serve.log"),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra)
            // Kafka's default 3 s initial rebalance delay would slow every group test;
            // a test that wants it passes the flag itself.
            .args(
                (!self
                    .extra
                    .iter()
                    .any(|a| a == "--group-initial-rebalance-delay-ms"))
                .then_some(["--group-initial-rebalance-delay-ms", "0"])
                .into_iter()
                .flatten(),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sluice serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sluice serve exited early with {status}: {}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sluice serve did not listen on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status()
                .unwrap();
            let status = c.wait().unwrap();
            assert!(
                status.success(),
                "sluice serve exited with {status}: {}",
                self.log_text()
            );
        }
    }

    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for SluiceServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run the `sluice` binary with `args`, feeding it `stdin` (closed at once when `None`).
pub fn run_sluice<I, S>(args: I, stdin: Option<&[u8]>) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        input.write_all(data).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for sluice")
}

/// Run kcat (Debian package `kcat`; `scripts/test` installs it), feeding `stdin`, and
/// return its stdout; fails the test if kcat fails.
pub fn kcat(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat (Debian package kcat) must be installed; scripts/test installs it");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait for kcat");
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Create a topic through the Kafka admin API (librdkafka).
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics");
    for r in res {
        r.expect("topic created");
    }
}

/// Run `sluice --data-dir DIR ARGS...`, feeding it `stdin`.
pub fn run_sluice_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut all = vec![std::ffi::OsString::from("--data-dir"), dir.into()];
    all.extend(args.iter().map(std::ffi::OsString::from));
    run_sluice(all, stdin)
}

/// A consumer assigned to every partition of `topic` from the beginning.
pub fn reader(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{isolation}-{topic}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    c
}

/// Values read until every partition reports end-of-partition (for read_committed, the
/// end is the last stable offset) and nothing more arrives for `quiet`.
pub fn read_all(c: &BaseConsumer, partitions: usize, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "read_all timed out: {out:?}");
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
                at_end.remove(&m.partition());
                last = Instant::now();
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("consumer error (retried): {e}"),
            None => {}
        }
        if at_end.len() == partitions && last.elapsed() >= quiet {
            return out;
        }
    }
}

/// A transactional producer, initialised (30 s timeouts).
pub fn txn_producer(bootstrap: &str, tid: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("transactional.id", tid)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let p: BaseProducer = c.create().unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p
}

/// A non-transactional producer without linger.
pub fn plain_producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .unwrap()
}

/// Send `value` (also the key) to one partition, waiting while the queue is full.
pub fn send(p: &BaseProducer, topic: &str, partition: i32, value: &str) {
    loop {
        match p.send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(value)
                .payload(value),
        ) {
            Ok(()) => break,
            Err(_) => {
                p.poll(Duration::from_millis(10));
            }
        }
    }
    p.poll(Duration::ZERO);
}

/// A seeded random generator for a randomized test: the seed comes from `SLUICE_SEED` when
/// set (to replay a failure), else from the clock, and is printed either way.
pub fn seeded_rng(test: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let seed = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: seed {seed} (replay with SLUICE_SEED={seed})");
    rand::rngs::StdRng::seed_from_u64(seed)
}
