//! Exactly-once consume-transform-produce under crashes (the equivalent of Kafka's
//! transactions system test): `sluice txn copy` copies an input topic to an output topic in
//! transactions that also commit the consumed offsets. The copier is SIGKILLed
//! mid-stream and restarted, and separately the broker is SIGKILLed and restarted, many
//! rounds; the output read read_committed must hold every input record exactly once.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SluiceServer, create_topic, read_all, reader};
use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const T: Duration = Duration::from_secs(30);

fn copier(bootstrap: &str, idle_exit_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--bootstrap", bootstrap, "txn", "copy"])
        .args(["--from", "in", "--to", "out", "--group", "eos"])
        .args(["--transactional-id", "eos-copier", "--batch", "50"])
        .args(["--idle-exit-ms", &idle_exit_ms.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sluice txn copy")
}

fn produce_input(bootstrap: &str, from: usize, n: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in from..from + n {
        let v = format!("v-{i}");
        while p.send(BaseRecord::to("in").key(&v).payload(&v)).is_err() {
            p.poll(Duration::from_millis(10));
        }
        p.poll(Duration::ZERO);
    }
    p.flush(T).unwrap();
}

/// Every value in `topic`, read to the end (the last stable offset for read_committed).
fn read_topic(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    read_all(
        &reader(bootstrap, topic, partitions, isolation),
        partitions as usize,
        Duration::ZERO,
    )
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn copier_and_broker_crashes_leave_exactly_one_copy_of_each_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = SluiceServer::start(&dir.path().join("data"));
    let b = server.bootstrap();
    create_topic(&b, "in", 2);
    create_topic(&b, "out", 2);
    let mut rng = common::seeded_rng("copier_and_broker_crashes");
    let mut total = 0usize;
    const PER_ROUND: usize = 1500;

    // Copier crashes: SIGKILL at a random moment while it copies.
    let copier_rounds = 5;
    for _ in 0..copier_rounds {
        produce_input(&b, total, PER_ROUND);
        total += PER_ROUND;
        let c = copier(&b, 0);
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        kill(c);
    }

    // Broker crashes: SIGKILL the broker under a running copier, restart it; the copier
    // rides it out or exits with an error, and is restarted if so.
    let broker_rounds = 4;
    for _ in 0..broker_rounds {
        produce_input(&b, total, PER_ROUND);
        total += PER_ROUND;
        let mut c = copier(&b, 0);
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        server.kill();
        std::thread::sleep(Duration::from_millis(200));
        server.restart();
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..1500)));
        if c.try_wait().unwrap().is_some() {
            c = copier(&b, 0);
            std::thread::sleep(Duration::from_millis(500));
        }
        kill(c);
    }

    // Let a final copier finish the rest and exit once idle.
    let mut last = copier(&b, 5000);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = last.try_wait().unwrap() {
            if status.success() {
                break;
            }
            // A fenced or failed run: start another, as an operator would.
            last = copier(&b, 5000);
        }
        assert!(Instant::now() < deadline, "the final copier did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }

    let committed = read_topic(&b, "out", 2, "read_committed");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in &committed {
        *counts.entry(v.clone()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..total)
        .filter(|i| !counts.contains_key(&format!("v-{i}")))
        .collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} records missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        duplicated.is_empty(),
        "{} records duplicated: {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(20)]
    );
    assert_eq!(committed.len(), total);
    let uncommitted = read_topic(&b, "out", 2, "read_uncommitted");
    eprintln!(
        "exactly-once: {total} input records, {copier_rounds} copier kills, {broker_rounds} broker kills; \
         output read_committed {} records (each once), read_uncommitted {} (aborted copies: {})",
        committed.len(),
        uncommitted.len(),
        uncommitted.len() - committed.len()
    );
}
