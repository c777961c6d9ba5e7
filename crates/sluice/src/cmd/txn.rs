//! `sluice txn`: inspect transactions on a broker (`list`, `describe`) and run an
//! exactly-once copier (`copy`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Transactions (need --bootstrap).
#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// List transactional ids with their producer id, epoch and state.
    List,
    /// A transactional id's state, timeout, start time and partitions.
    Describe {
        /// Transactional id.
        id: String,
    },
    /// Exactly-once copy: consume a topic as a group member and produce every record to
    /// another topic in transactions that also commit the consumed offsets.
    Copy(CopyArgs),
}

/// Options of `sluice txn copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Topic to read.
    #[arg(long)]
    pub from: String,
    /// Topic to write.
    #[arg(long)]
    pub to: String,
    /// Consumer group (its committed offsets are part of each transaction).
    #[arg(long)]
    pub group: String,
    /// transactional.id of the producer (a restarted copier with the same id fences the
    /// old one).
    #[arg(long)]
    pub transactional_id: String,
    /// Records per transaction (at most; a transaction also ends when input pauses).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Stop after this long without input (0: run until killed).
    #[arg(long, default_value_t = 0)]
    pub idle_exit_ms: u64,
}

/// Run a `txn` subcommand against `bootstrap`.
pub fn run(bootstrap: &str, c: TxnCommand) -> anyhow::Result<()> {
    match c {
        TxnCommand::List => super::txn_admin::list(bootstrap),
        TxnCommand::Describe { id } => super::txn_admin::describe(bootstrap, &id),
        TxnCommand::Copy(a) => copy(bootstrap, a),
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// The consume-transform-produce loop of Kafka's exactly-once pattern: each transaction
/// holds a batch of output records and the input offsets after them, so after any crash
/// (of the copier or of the broker) the output holds every input record exactly once for
/// read_committed readers. A restarted copier with the same transactional id fences the
/// old one and, as the same static group member, takes over its partitions at once.
fn copy(bootstrap: &str, a: CopyArgs) -> anyhow::Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &a.group)
        .set("group.instance.id", &a.transactional_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        .create()
        .context("creating the consumer")?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", &a.transactional_id)
        // A transaction's records are all sent before its commit waits for them: no
        // lingering for more.
        .set("linger.ms", "0")
        .create()
        .context("creating the transactional producer")?;
    producer
        .init_transactions(TIMEOUT)
        .context("init_transactions")?;
    consumer.subscribe(&[&a.from])?;
    let (mut copied, mut committed, mut aborted) = (0u64, 0u64, 0u64);
    let mut last_input = Instant::now();
    loop {
        let batch = next_batch(&consumer, a.batch);
        if batch.is_empty() {
            if a.idle_exit_ms > 0 && last_input.elapsed() >= Duration::from_millis(a.idle_exit_ms) {
                break;
            }
            continue;
        }
        last_input = Instant::now();
        match transact(&producer, &consumer, &a.to, &batch) {
            Ok(()) => {
                copied += batch.len() as u64;
                committed += 1;
            }
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                eprintln!("txn copy: aborting a transaction: {e}");
                producer
                    .abort_transaction(TIMEOUT)
                    .context("abort_transaction")?;
                aborted += 1;
                rewind(&consumer, &batch);
            }
            Err(e) => return Err(e).context("transaction failed"),
        }
    }
    eprintln!(
        "txn copy: {copied} records copied from {} to {} in {committed} transactions ({aborted} aborted)",
        a.from, a.to
    );
    Ok(())
}

/// Up to `max` records, waiting at most ~100 ms for more.
fn next_batch(consumer: &BaseConsumer, max: usize) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + Duration::from_millis(100);
    let mut batch = Vec::new();
    while batch.len() < max {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match consumer.poll(left) {
            Some(Ok(m)) => batch.push(m.detach()),
            Some(Err(e)) => eprintln!("txn copy: consumer: {e}"),
            None => {}
        }
    }
    batch
}

fn transact(
    producer: &BaseProducer,
    consumer: &BaseConsumer,
    to: &str,
    batch: &[OwnedMessage],
) -> Result<(), KafkaError> {
    producer.begin_transaction()?;
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e),
            }
        }
        producer.poll(Duration::ZERO);
        next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in &next {
        offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    let meta = consumer
        .group_metadata()
        .ok_or_else(|| KafkaError::Subscription("no consumer group metadata".into()))?;
    producer.send_offsets_to_transaction(&offsets, &meta, TIMEOUT)?;
    // Serve the delivery reports ourselves first: rdkafka's commit_transaction flushes in
    // 100 ms poll steps while any are outstanding (1 ms steps here).
    let deadline = Instant::now() + TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(1));
    }
    producer.commit_transaction(TIMEOUT)
}

/// After an abort, read the batch's records again.
fn rewind(consumer: &BaseConsumer, batch: &[OwnedMessage]) {
    let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        first
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(m.offset());
    }
    for ((topic, partition), offset) in first {
        if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(offset), TIMEOUT) {
            // Not assigned any more (a rebalance): its new owner starts from the committed
            // offset, which the aborted transaction did not move.
            eprintln!("txn copy: rewinding {topic}-{partition}: {e}");
        }
    }
}
