//! Topics of the embedded log (`sluice_log::Log`) as a source and a sink.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_log::{
    AbortFilter, BatchBuilder, Log, Partition, decode_records, frames, partition_for_key,
};

use crate::{Error, Isolation, OffsetStore, Position, Result, Sink, Source, SourceRecord};

const READ_BYTES: usize = 256 * 1024;
const REFRESH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Cursor {
    part: Arc<Partition>,
    /// Next offset to read from the log.
    next: i64,
    /// Bounded mode: stop before this offset (the end offset seen at start: the last
    /// stable offset when reading committed, else the high watermark).
    stop: Option<i64>,
    /// Records read but not yet handed out.
    pending: usize,
    committed: bool,
}

impl Cursor {
    /// Where reading ends for now: the stop offset, else the last stable offset (read
    /// committed) or the high watermark.
    fn end(&self) -> i64 {
        self.stop.unwrap_or_else(|| {
            if self.committed {
                self.part.last_stable_offset()
            } else {
                self.part.high_watermark()
            }
        })
    }
}

/// Reads every partition of a topic, from the committed offsets (or the log start).
///
/// * Read committed (default, as a Kafka consumer with `isolation.level=read_committed`):
///   only records below the last stable offset, without the records of aborted
///   transactions (the log's committed-read view); control batches are never handed out.
///   [`Isolation::ReadUncommitted`] hands out everything below the high watermark.
/// * Bounded (default): stops at the end offsets seen when it was opened; it is exhausted
///   when every partition reached its end. Follow: keeps reading new records.
/// * [`Source::caught_up`] is exact: a partition whose records up to its end (bounded: the
///   stop offset; follow: the current high watermark) have all been handed out.
/// * [`Source::commit`] saves the offsets in the [`OffsetStore`].
///
/// With a read-only [`Log`] (no lock) it picks up what other processes append by
/// refreshing the log when it has caught up.
#[derive(Debug)]
pub struct TopicSource {
    log: Arc<Log>,
    topic: String,
    topic_name: Arc<str>,
    cursors: Vec<Cursor>,
    follow: bool,
    pending: VecDeque<SourceRecord>,
    store: Option<OffsetStore>,
    committed: BTreeMap<u32, i64>,
    notes: Vec<String>,
    last_refresh: Instant,
    /// The log's append generation before the last read (see [`Source::wait_for_data`]).
    seen_generation: u64,
}

impl TopicSource {
    /// Opens `topic` for reading, resuming at the offsets in `store` (partitions without a
    /// committed offset start at their log start offset).
    pub fn open(
        log: Arc<Log>,
        topic: &str,
        follow: bool,
        isolation: Isolation,
        store: Option<OffsetStore>,
    ) -> Result<Self> {
        let committed_reads = isolation == Isolation::ReadCommitted;
        let t = log
            .topic(topic)
            .map_err(|e| Error::log(format!("opening source topic {topic}"), e))?;
        let committed = match &store {
            Some(s) => s.load()?,
            None => BTreeMap::new(),
        };
        let mut notes = Vec::new();
        let mut cursors = Vec::new();
        for part in t.partitions() {
            let p = part.id() as u32;
            let start = part.log_start_offset();
            let hw = part.high_watermark();
            let mut cursor = Cursor {
                part,
                next: start,
                stop: None,
                pending: 0,
                committed: committed_reads,
            };
            // Bounded: the end seen now, by the isolation level.
            cursor.stop = (!follow).then(|| cursor.end());
            cursor.next = match committed.get(&p) {
                None => start,
                Some(&c) if c < start => {
                    notes.push(format!(
                        "partition {p}: committed offset {c} was deleted by retention; resuming at {start}"
                    ));
                    start
                }
                Some(&c) if c > hw => {
                    return Err(Error::Offsets {
                        path: store.as_ref().map(OffsetStore::path).unwrap_or_default(),
                        reason: format!(
                            "partition {p} has committed offset {c} beyond the end of {topic}-{p} ({hw}); was the topic recreated? delete the file to start over"
                        ),
                    });
                }
                Some(&c) => c,
            };
            cursors.push(cursor);
        }
        Ok(Self {
            log,
            topic: topic.to_owned(),
            topic_name: topic.into(),
            cursors,
            follow,
            pending: VecDeque::new(),
            store,
            committed,
            notes,
            last_refresh: Instant::now(),
            seen_generation: 0,
        })
    }

    /// The next offset to read of each partition (what a commit right now would cover if
    /// every handed-out record were reflected in output).
    pub fn positions(&self) -> BTreeMap<u32, i64> {
        self.cursors
            .iter()
            .map(|c| (c.part.id() as u32, c.next - c.pending as i64))
            .collect()
    }

    fn fill(&mut self) -> Result<()> {
        // Taken before reading, so an append racing this read is not waited for later.
        self.seen_generation = self.log.notifier().generation();
        for c in &mut self.cursors {
            let end = c.end();
            if c.next >= end {
                continue;
            }
            let id = c.part.id();
            let read = if c.committed {
                c.part
                    .read_committed(c.next, READ_BYTES)
                    .map(|r| (r.read, AbortFilter::new(&r.aborted)))
            } else {
                c.part
                    .read(c.next, READ_BYTES)
                    .map(|r| (r, AbortFilter::default()))
            };
            let (r, aborted) = match read {
                Ok(r) => r,
                Err(sluice_log::Error::OffsetOutOfRange { start, .. }) if c.next < start => {
                    self.notes.push(format!(
                        "partition {id}: offsets {}..{start} were deleted by retention before they were read; skipping ahead",
                        c.next
                    ));
                    c.next = start;
                    continue;
                }
                Err(e) => return Err(Error::log(format!("reading {}-{id}", self.topic), e)),
            };
            for f in frames(&r.bytes) {
                let (pos, h) = f.map_err(|e| {
                    Error::log(
                        format!("framing batches of {}-{id}", self.topic),
                        sluice_log::Error::InvalidBatch {
                            position: 0,
                            reason: e,
                        },
                    )
                })?;
                if h.is_control() || aborted.is_aborted(&h) {
                    continue;
                }
                let recs = decode_records(&r.bytes[pos..pos + h.total_size()]).map_err(|e| {
                    Error::log(
                        format!(
                            "decoding batch at offset {} of {}-{id}",
                            h.base_offset, self.topic
                        ),
                        sluice_log::Error::InvalidBatch {
                            position: pos,
                            reason: e,
                        },
                    )
                })?;
                for rec in recs {
                    if rec.offset < c.next || rec.offset >= end {
                        continue;
                    }
                    self.pending.push_back(SourceRecord {
                        topic: Some(self.topic_name.clone()),
                        partition: id as u32,
                        offset: rec.offset,
                        key: rec.key,
                        headers: rec.headers,
                        timestamp: Some(rec.timestamp),
                        payload: rec.value,
                    });
                    c.pending += 1;
                }
            }
            c.next = r.next_offset.min(end).max(c.next);
        }
        Ok(())
    }
}

impl Source for TopicSource {
    fn partitions(&self) -> Vec<u32> {
        self.cursors.iter().map(|c| c.part.id() as u32).collect()
    }

    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<usize> {
        if self.pending.is_empty() {
            self.fill()?;
            if self.pending.is_empty()
                && self.follow
                && self.log.is_read_only()
                && self.last_refresh.elapsed() >= REFRESH_EVERY
            {
                self.last_refresh = Instant::now();
                self.log
                    .refresh()
                    .map_err(|e| Error::log(format!("refreshing {}", self.topic), e))?;
                self.fill()?;
            }
        }
        let mut n = 0;
        while n < max {
            let Some(r) = self.pending.pop_front() else {
                break;
            };
            if let Some(c) = self
                .cursors
                .iter_mut()
                .find(|c| c.part.id() as u32 == r.partition)
            {
                c.pending -= 1;
            }
            out.push(r);
            n += 1;
        }
        Ok(n)
    }

    fn caught_up(&self, partition: u32) -> bool {
        self.cursors
            .iter()
            .find(|c| c.part.id() as u32 == partition)
            .is_some_and(|c| c.pending == 0 && c.next >= c.end())
    }

    fn is_exhausted(&self) -> bool {
        !self.follow && self.pending.is_empty() && self.cursors.iter().all(|c| c.next >= c.end())
    }

    /// Partitions absent from `offsets` keep their previously committed offset.
    fn commit(&mut self, offsets: &BTreeMap<u32, i64>) -> Result<()> {
        let mut merged = self.committed.clone();
        merged.extend(offsets.iter().map(|(p, o)| (*p, *o)));
        if let Some(s) = &self.store {
            s.save(&merged)?;
        }
        self.committed = merged;
        Ok(())
    }

    fn seek(&mut self, offsets: &BTreeMap<u32, i64>) -> Result<()> {
        for (p, off) in offsets {
            let Some(c) = self.cursors.iter_mut().find(|c| c.part.id() as u32 == *p) else {
                return Err(Error::Config(format!(
                    "a stored position names partition {p}, which topic {} does not have",
                    self.topic
                )));
            };
            let (start, hw) = (c.part.log_start_offset(), c.part.high_watermark());
            if *off > hw {
                return Err(Error::Config(format!(
                    "a stored position {off} is beyond the end of {}-{p} ({hw}); was the topic recreated?",
                    self.topic
                )));
            }
            if *off < start {
                self.notes.push(format!(
                    "partition {p}: stored position {off} was deleted by retention; resuming at {start}"
                ));
            }
            c.next = (*off).max(start);
            c.pending = 0;
            self.pending.retain(|r| r.partition != *p);
        }
        Ok(())
    }

    /// Follow mode on a writable log: blocks until any partition of the log advanced
    /// since the last read (the log's append notification), so an idle pipeline neither
    /// spins nor waits out a poll interval. A read-only log (another process appends)
    /// cannot be notified: the runtime sleeps and the next poll refreshes it.
    fn wait_for_data(&mut self, timeout: Duration) -> bool {
        if !self.follow || self.log.is_read_only() {
            return false;
        }
        self.log.notifier().wait(self.seen_generation, timeout);
        true
    }

    fn describe(&self) -> String {
        format!(
            "topic {} ({} partitions, {}, {})",
            self.topic,
            self.cursors.len(),
            if self.follow { "follow" } else { "bounded" },
            if self.cursors.first().is_none_or(|c| c.committed) {
                "read_committed"
            } else {
                "read_uncommitted"
            }
        )
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

/// Appends each value as a record to a topic: key = the given key (murmur2-partitioned as
/// Kafka would), value = the JSON text, timestamp = the wall clock. Records are buffered
/// in batches; [`Sink::commit`] appends them and syncs the touched partitions.
#[derive(Debug)]
pub struct TopicSink {
    topic: String,
    parts: Vec<Arc<Partition>>,
    builders: BTreeMap<usize, BatchBuilder>,
    touched: BTreeSet<usize>,
    limit: usize,
    unkeyed: usize,
}

impl TopicSink {
    /// Opens `topic` for appending; when it does not exist and `create` is set, creates it
    /// with one partition (and returns a note saying so).
    pub fn open(log: &Log, topic: &str, create: bool) -> Result<(Self, Option<String>)> {
        let mut note = None;
        let t = match log.topic(topic) {
            Ok(t) => t,
            Err(sluice_log::Error::UnknownTopic(_)) if create => {
                note = Some(format!("created topic {topic} (1 partition) for output"));
                log.create_topic(topic, 1, BTreeMap::new())
                    .map_err(|e| Error::log(format!("creating sink topic {topic}"), e))?
            }
            Err(e) => return Err(Error::log(format!("opening sink topic {topic}"), e)),
        };
        let limit = t
            .config()
            .max_message_bytes
            .clamp(sluice_log::HEADER_SIZE + 64, 256 * 1024);
        Ok((
            Self {
                topic: topic.to_owned(),
                parts: t.partitions(),
                builders: BTreeMap::new(),
                touched: BTreeSet::new(),
                limit,
                unkeyed: 0,
            },
            note,
        ))
    }

    fn append(&mut self, p: usize) -> Result<()> {
        let Some(b) = self.builders.remove(&p) else {
            return Ok(());
        };
        if b.is_empty() {
            return Ok(());
        }
        let mut bytes = b.build().map_err(|e| {
            Error::log(
                format!("building a batch for {}-{p}", self.topic),
                sluice_log::Error::InvalidBatch {
                    position: 0,
                    reason: e,
                },
            )
        })?;
        self.parts[p]
            .append(&mut bytes)
            .map_err(|e| Error::log(format!("appending to {}-{p}", self.topic), e))?;
        self.touched.insert(p);
        Ok(())
    }
}

impl Sink for TopicSink {
    fn write(&mut self, key: Option<&str>, value: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(value).expect("JSON values serialize");
        let n = self.parts.len() as i32;
        let p = match key {
            Some(k) => partition_for_key(k.as_bytes(), n) as usize,
            None => self.unkeyed % self.parts.len(),
        };
        let need = bytes.len() + key.map_or(0, str::len) + 32;
        if need + sluice_log::HEADER_SIZE > self.limit {
            return Err(Error::Config(format!(
                "an output record of {} bytes does not fit max.message.bytes of topic {}",
                need, self.topic
            )));
        }
        if self
            .builders
            .get(&p)
            .is_some_and(|b| b.size_bytes() + need > self.limit)
        {
            self.append(p)?;
            if key.is_none() {
                self.unkeyed += 1;
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.builders
            .entry(p)
            .or_default()
            .push(now, key.map(str::as_bytes), Some(&bytes), &[]);
        Ok(())
    }

    fn commit(&mut self, _position: &Position) -> Result<()> {
        let ps: Vec<usize> = self.builders.keys().copied().collect();
        for p in ps {
            self.append(p)?;
        }
        for p in std::mem::take(&mut self.touched) {
            self.parts[p]
                .flush()
                .map_err(|e| Error::log(format!("syncing {}-{p}", self.topic), e))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("topic {}", self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_log::LogOptions;

    fn log(dir: &std::path::Path) -> Arc<Log> {
        Arc::new(
            Log::open(
                dir,
                LogOptions {
                    background: false,
                    ..LogOptions::default()
                },
            )
            .unwrap(),
        )
    }

    fn drain(s: &mut TopicSource) -> Vec<(u32, i64, Value)> {
        let mut out = Vec::new();
        while s.poll(3, &mut out).unwrap() > 0 {}
        out.into_iter()
            .map(|r| {
                (
                    r.partition,
                    r.offset,
                    serde_json::from_slice(&r.payload.unwrap()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn sink_then_bounded_source_round_trip_with_commit_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        log.create_topic("t", 2, BTreeMap::new()).unwrap();
        let (mut sink, note) = TopicSink::open(&log, "t", false).unwrap();
        assert!(note.is_none());
        for i in 0..10 {
            sink.write(Some(&format!("k{i}")), &json!({"i": i}))
                .unwrap();
        }
        sink.commit(&Position::default()).unwrap();
        let store = OffsetStore::open(dir.path(), "p", "t").unwrap();
        let mut src =
            TopicSource::open(log.clone(), "t", false, Isolation::default(), Some(store)).unwrap();
        assert_eq!(src.partitions(), [0, 1]);
        assert!(!src.caught_up(0) && !src.is_exhausted());
        let got = drain(&mut src);
        assert_eq!(got.len(), 10);
        assert!(src.is_exhausted() && src.caught_up(0) && src.caught_up(1));
        let mut seen: Vec<i64> = got
            .iter()
            .map(|(_, _, v)| v["i"].as_i64().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // Commit 2 in partition 0, everything in partition 1; new records after that.
        let ends = src.positions();
        src.commit(&BTreeMap::from([(0, 2), (1, ends[&1])]))
            .unwrap();
        drop(src);
        for i in 10..12 {
            sink.write(Some(&format!("k{i}")), &json!({"i": i}))
                .unwrap();
        }
        sink.commit(&Position::default()).unwrap();
        let store = OffsetStore::open(dir.path(), "p", "t").unwrap();
        let mut src =
            TopicSource::open(log.clone(), "t", false, Isolation::default(), Some(store)).unwrap();
        let again = drain(&mut src);
        let expect_p0 = ends[&0] - 2
            + (10..12)
                .filter(|i| partition_for_key(format!("k{i}").as_bytes(), 2) == 0)
                .count() as i64;
        assert_eq!(again.iter().filter(|r| r.0 == 0).count() as i64, expect_p0);
        assert!(again.iter().filter(|r| r.0 == 0).all(|r| r.1 >= 2));
        assert_eq!(again.len() as i64, ends[&0] - 2 + 2);
    }

    #[test]
    fn sink_creates_missing_topic_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        assert!(TopicSink::open(&log, "late", false).is_err());
        let (_, note) = TopicSink::open(&log, "late", true).unwrap();
        assert!(note.unwrap().contains("created topic late"));
        assert_eq!(log.topic("late").unwrap().partition_count(), 1);
    }
}
