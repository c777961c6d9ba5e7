//! Topics of any Kafka-protocol cluster (`sluice serve`, Apache Kafka, ...) as a source and
//! a sink, through librdkafka (the `rdkafka` crate).
//!
//! * [`KafkaSource`]: a consumer-group member with `enable.auto.commit=false`; it commits
//!   to the group (synchronously) only the offsets the runtime says are reflected in
//!   durable output, and only for partitions it currently owns. Partitions are assigned by
//!   librdkafka's default rebalance handling. When a partition is revoked, the windows it
//!   fed stay in this run's state and fire at this run's watermark, but its uncommitted
//!   offsets are never committed by this member again: the new owner re-reads from the
//!   group's committed offset (at-least-once; such windows may be emitted twice).
//!   Connection trouble after start is retried by librdkafka and surfaced as notes; a
//!   failed commit (other than one refused by a rebalance) or a fatal client error fails
//!   the run.
//! * [`KafkaSink`]: an idempotent producer (`acks=all`, `enable.idempotence=true`,
//!   `partitioner=murmur2_random`, key = the window key); [`Sink::commit`] waits for every
//!   delivery report and fails on any delivery error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::Value;

use crate::{Error, Isolation, Position, Result, Sink, Source, SourceRecord};

/// How long metadata, watermark and commit requests may take before the run fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a poll waits for the first record when nothing is buffered.
const POLL_WAIT: Duration = Duration::from_millis(20);
/// librdkafka fails a delivery not acknowledged within this time.
const MESSAGE_TIMEOUT_MS: u64 = 30_000;

/// Errors librdkafka reports outside of calls (connection problems, fatal errors), kept
/// for the user: they become notes, a fatal one fails the run.
#[derive(Debug, Default, Clone)]
struct Reported {
    inner: Arc<Mutex<ReportedInner>>,
}

#[derive(Debug, Default)]
struct ReportedInner {
    notes: Vec<String>,
    last: Option<String>,
    fatal: Option<String>,
    /// Producer only: failed deliveries (count, first error).
    failed: u64,
    first_failure: Option<String>,
}

impl ClientContext for Reported {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::PartitionEOF) {
            return; // not an error: the consumer's poll reports it as the end of a partition
        }
        let mut g = self.inner.lock().expect("not poisoned");
        let text = format!("{error}: {reason}");
        if code == Some(RDKafkaErrorCode::Fatal) {
            g.fatal.get_or_insert_with(|| text.clone());
        }
        // Kept until drained (sinks never drain them: bounded).
        if g.last.as_deref() != Some(text.as_str()) && g.notes.len() < 100 {
            g.notes.push(format!("kafka client: {text}"));
            g.last = Some(text);
        }
    }
}

impl ConsumerContext for Reported {}

impl ProducerContext for Reported {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = r {
            let mut g = self.inner.lock().expect("not poisoned");
            g.failed += 1;
            if g.first_failure.is_none() {
                g.first_failure = Some(format!(
                    "record with key {:?} to {}: {e}",
                    m.key().map(String::from_utf8_lossy).unwrap_or_default(),
                    m.topic()
                ));
            }
        }
    }
}

impl Reported {
    fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut self.inner.lock().expect("not poisoned").notes)
    }
    fn fatal(&self) -> Option<String> {
        self.inner.lock().expect("not poisoned").fatal.clone()
    }
}

fn kafka(context: impl Into<String>, source: KafkaError) -> Error {
    Error::Kafka {
        context: context.into(),
        source,
    }
}

/// The partition ids of `topic`, or a clear error when the cluster cannot be reached or
/// does not have the topic.
fn topic_partitions<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    bootstrap: &str,
    topic: &str,
    role: &str,
) -> Result<Vec<u32>> {
    let md = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| kafka(format!("{role} topic {topic}: cannot reach {bootstrap}"), e))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| {
            Error::Config(format!(
                "{role} topic {topic}: {bootstrap} did not describe it"
            ))
        })?;
    if let Some(e) = t.error() {
        return Err(Error::Config(format!(
            "{role} topic {topic} on {bootstrap}: {} (create it first, e.g. `sluice --bootstrap {bootstrap} topic create {topic}`)",
            RDKafkaErrorCode::from(e)
        )));
    }
    let mut ps: Vec<u32> = t.partitions().iter().map(|p| p.id() as u32).collect();
    ps.sort_unstable();
    if ps.is_empty() {
        return Err(Error::Config(format!(
            "{role} topic {topic} on {bootstrap} has no partitions"
        )));
    }
    Ok(ps)
}

#[derive(Debug, Default, Clone, Copy)]
struct PartState {
    /// One past the last offset handed out since the partition was assigned.
    next: Option<i64>,
    /// librdkafka reported the end of the partition and nothing was handed out since.
    at_end: bool,
    /// Bounded: a record at or past the stop offset was seen.
    past_stop: bool,
}

/// A topic of a Kafka-protocol cluster, read as a member of a consumer group.
///
/// * Bounded (default): stops at the high watermarks seen when it was opened; it is
///   exhausted once it has been assigned partitions and every assigned partition reached
///   its stop offset (or its end). Follow: keeps consuming.
/// * [`Source::caught_up`]: a partition owned by this member whose records have all been
///   handed out (librdkafka's partition EOF, or the stop offset); a partition owned by
///   another member is reported caught up too (it cannot hold this member's watermark
///   back).
/// * [`Source::commit`]: a synchronous group commit of the given offsets, restricted to
///   the partitions currently assigned.
pub struct KafkaSource {
    consumer: BaseConsumer<Reported>,
    reported: Reported,
    topic: String,
    topic_name: std::sync::Arc<str>,
    bootstrap: String,
    group: String,
    follow: bool,
    partitions: Vec<u32>,
    /// Bounded: the high watermark of each partition when the source was opened.
    stop: BTreeMap<u32, i64>,
    assigned: BTreeSet<u32>,
    had_assignment: bool,
    state: BTreeMap<u32, PartState>,
    committed: BTreeMap<u32, i64>,
    notes: Vec<String>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KafkaSource {
    /// Joins `group` and subscribes to `topic` on `bootstrap`. The group's committed
    /// offsets are where reading starts; partitions without one start at the earliest
    /// offset.
    pub fn open(
        bootstrap: &str,
        topic: &str,
        group: &str,
        follow: bool,
        isolation: Isolation,
    ) -> Result<Self> {
        let reported = Reported::default();
        let consumer: BaseConsumer<Reported> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("client.id", format!("sluice-run-{group}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set(
                "isolation.level",
                match isolation {
                    Isolation::ReadCommitted => "read_committed",
                    Isolation::ReadUncommitted => "read_uncommitted",
                },
            )
            .create_with_context(reported.clone())
            .map_err(|e| kafka(format!("creating a consumer for {bootstrap}"), e))?;
        let partitions = topic_partitions(consumer.client(), bootstrap, topic, "source")?;
        let mut stop = BTreeMap::new();
        if !follow {
            for p in &partitions {
                let (_, high) = consumer
                    .fetch_watermarks(topic, *p as i32, REQUEST_TIMEOUT)
                    .map_err(|e| {
                        kafka(
                            format!("reading the end offset of {topic}-{p} on {bootstrap}"),
                            e,
                        )
                    })?;
                stop.insert(*p, high);
            }
        }
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka(format!("subscribing to {topic} on {bootstrap}"), e))?;
        Ok(Self {
            consumer,
            reported,
            topic: topic.to_owned(),
            topic_name: topic.into(),
            bootstrap: bootstrap.to_owned(),
            group: group.to_owned(),
            follow,
            partitions,
            stop,
            assigned: BTreeSet::new(),
            had_assignment: false,
            state: BTreeMap::new(),
            committed: BTreeMap::new(),
            notes: Vec::new(),
        })
    }

    /// Refreshes the set of assigned partitions, resetting the state of newly assigned
    /// ones (librdkafka resumes them at the group's committed offset).
    fn refresh_assignment(&mut self) -> Result<()> {
        let list = self
            .consumer
            .assignment()
            .map_err(|e| kafka(format!("reading the assignment of group {}", self.group), e))?;
        let now: BTreeSet<u32> = list
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition() as u32)
            .collect();
        if now == self.assigned {
            return Ok(());
        }
        let revoked: Vec<u32> = self.assigned.difference(&now).copied().collect();
        let added: Vec<u32> = now.difference(&self.assigned).copied().collect();
        if !revoked.is_empty() {
            self.notes.push(format!(
                "group {}: partitions {revoked:?} of {} were revoked; their uncommitted records will be re-read by the new owner (windows they fed may be emitted twice)",
                self.group, self.topic
            ));
        }
        if !added.is_empty() {
            self.notes.push(format!(
                "group {}: assigned partitions {added:?} of {}",
                self.group, self.topic
            ));
        }
        for p in &revoked {
            self.state.remove(p);
            self.committed.remove(p);
        }
        for p in &added {
            // Records and end-of-partition reports of a new assignment may have arrived
            // in the poll that assigned it: keep them.
            self.state.entry(*p).or_default();
        }
        self.had_assignment |= !now.is_empty();
        self.assigned = now;
        Ok(())
    }

    fn done(&self, p: u32) -> bool {
        let Some(s) = self.state.get(&p) else {
            return false;
        };
        if self.follow {
            return s.at_end;
        }
        let stop = self.stop.get(&p).copied().unwrap_or(0);
        s.at_end || s.past_stop || s.next.is_some_and(|n| n >= stop) || stop == 0
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> Vec<u32> {
        self.partitions.clone()
    }

    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<usize> {
        if let Some(f) = self.reported.fatal() {
            return Err(Error::Config(format!(
                "kafka consumer of {} on {}: fatal error: {f}",
                self.topic, self.bootstrap
            )));
        }
        let mut n = 0;
        let mut wait = POLL_WAIT;
        while n < max {
            let Some(m) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let m = match m {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    self.state.entry(p as u32).or_default().at_end = true;
                    continue;
                }
                // Connection trouble: librdkafka reconnects and retries by itself; the
                // client context has already turned it into a note for the user.
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Resolve
                    | RDKafkaErrorCode::BrokerNotAvailable,
                )) => continue,
                Err(e) => {
                    return Err(kafka(
                        format!("consuming {} from {}", self.topic, self.bootstrap),
                        e,
                    ));
                }
            };
            if m.topic() != self.topic {
                continue;
            }
            let p = m.partition() as u32;
            let offset = m.offset();
            let st = self.state.entry(p).or_default();
            if !self.follow && offset >= self.stop.get(&p).copied().unwrap_or(0) {
                // Beyond the end seen at start: not handed out, never committed.
                st.past_stop = true;
                continue;
            }
            st.at_end = false;
            st.next = Some(st.next.map_or(offset + 1, |x| x.max(offset + 1)));
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| sluice_log::Header {
                            key: h.key.to_owned(),
                            value: h.value.map(<[u8]>::to_vec),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(SourceRecord {
                topic: Some(self.topic_name.clone()),
                partition: p,
                offset,
                key: m.key().map(<[u8]>::to_vec),
                headers,
                timestamp: m.timestamp().to_millis(),
                payload: m.payload().map(<[u8]>::to_vec),
            });
            n += 1;
        }
        self.refresh_assignment()?;
        Ok(n)
    }

    fn caught_up(&self, partition: u32) -> bool {
        if !self.had_assignment {
            return false;
        }
        if !self.assigned.contains(&partition) {
            return true; // owned by another member (or by nobody right now)
        }
        self.done(partition)
    }

    fn is_exhausted(&self) -> bool {
        !self.follow
            && self.had_assignment
            && !self.assigned.is_empty()
            && self.assigned.iter().all(|p| self.done(*p))
    }

    /// Commits to the group, synchronously, the offsets of partitions this member owns
    /// that changed since the last commit. A commit refused because the group is
    /// rebalancing is reported as a note (the new owner re-reads: at-least-once).
    fn commit(&mut self, offsets: &BTreeMap<u32, i64>) -> Result<()> {
        self.refresh_assignment()?;
        let mut tpl = TopicPartitionList::new();
        let mut batch = BTreeMap::new();
        for (p, o) in offsets {
            if self.assigned.contains(p) && self.committed.get(p) != Some(o) {
                tpl.add_partition_offset(&self.topic, *p as i32, Offset::Offset(*o))
                    .map_err(|e| kafka("building the commit", e))?;
                batch.insert(*p, *o);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.committed.extend(batch);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::RebalanceInProgress
                            | RDKafkaErrorCode::IllegalGeneration
                            | RDKafkaErrorCode::UnknownMemberId
                    )
                ) =>
            {
                self.notes.push(format!(
                    "group {}: commit of {batch:?} refused during a rebalance ({e}); those records will be re-read",
                    self.group
                ));
                Ok(())
            }
            Err(e) => Err(kafka(
                format!(
                    "committing offsets {batch:?} of {} to group {} on {}",
                    self.topic, self.group, self.bootstrap
                ),
                e,
            )),
        }
    }

    fn describe(&self) -> String {
        format!(
            "kafka {} at {} (group {}, {} partitions, {})",
            self.topic,
            self.bootstrap,
            self.group,
            self.partitions.len(),
            if self.follow { "follow" } else { "bounded" }
        )
    }

    fn take_notes(&mut self) -> Vec<String> {
        let mut n = std::mem::take(&mut self.notes);
        n.extend(self.reported.take_notes());
        n
    }
}

/// Produces each value as a record to a topic of a Kafka-protocol cluster: key = the given
/// key (placed by murmur2 as a Java producer would), value = the JSON text.
pub struct KafkaSink {
    producer: BaseProducer<Reported>,
    reported: Reported,
    topic: String,
    bootstrap: String,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KafkaSink {
    /// Connects to `bootstrap` and checks that `topic` exists (a broker with automatic
    /// topic creation, such as `sluice serve` by default, creates it here).
    pub fn open(bootstrap: &str, topic: &str) -> Result<Self> {
        let reported = Reported::default();
        let producer: BaseProducer<Reported> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "sluice-run")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string())
            .create_with_context(reported.clone())
            .map_err(|e| kafka(format!("creating a producer for {bootstrap}"), e))?;
        topic_partitions(producer.client(), bootstrap, topic, "sink")?;
        Ok(Self {
            producer,
            reported,
            topic: topic.to_owned(),
            bootstrap: bootstrap.to_owned(),
        })
    }

    fn check_deliveries(&self) -> Result<()> {
        let g = self.reported.inner.lock().expect("not poisoned");
        if let Some(first) = &g.first_failure {
            return Err(Error::Config(format!(
                "{} record(s) could not be delivered to {} on {}; first: {first}",
                g.failed, self.topic, self.bootstrap
            )));
        }
        if let Some(f) = &g.fatal {
            return Err(Error::Config(format!(
                "kafka producer for {} on {}: fatal error: {f}",
                self.topic, self.bootstrap
            )));
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(value).expect("JSON values serialize");
        loop {
            let mut rec = BaseRecord::<str, [u8]>::to(&self.topic).payload(&bytes[..]);
            rec.key = key;
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    return Err(kafka(
                        format!("producing to {} on {}", self.topic, self.bootstrap),
                        e,
                    ));
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    /// Waits until every record written so far is acknowledged (acks=all) or failed;
    /// any failure is an error, so offsets are not committed past undelivered output.
    fn commit(&mut self, _position: &Position) -> Result<()> {
        self.producer
            .flush(Duration::from_millis(MESSAGE_TIMEOUT_MS + 15_000))
            .map_err(|e| {
                kafka(
                    format!(
                        "waiting for deliveries to {} on {}",
                        self.topic, self.bootstrap
                    ),
                    e,
                )
            })?;
        self.check_deliveries()
    }

    fn describe(&self) -> String {
        format!("kafka {} at {}", self.topic, self.bootstrap)
    }
}
