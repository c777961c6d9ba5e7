//! The data directory: topics, their partitions, the directory lock and the background
//! flusher for `interval` topics.
//!
//! Layout:
//!
//! ```text
//! DATA/.lock                         exclusive lock; holds the owner's pid and command
//! DATA/topics/NAME/topic.json        partition count, config overrides, topic id
//! DATA/topics/NAME/P/*.log|.index|.timeindex|log-start-offset
//! DATA/trash/                        topics being deleted (emptied on open)
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::config::TopicConfig;
use crate::error::{Error, IoContext, Result};
use crate::notify::AppendNotifier;
use crate::partition::{CompactionReport, Partition, PartitionSummary, RetentionReport};
use crate::segment::{self, SegmentRecovery};

/// How to open a data directory.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Open without the lock, never writing (CLI readers beside a running writer).
    pub read_only: bool,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Run a background thread that syncs `interval:<ms>` topics and applies retention
    /// and compaction every `maintenance_interval`.
    pub background: bool,
    /// How often the background thread runs retention and compaction.
    pub maintenance_interval: Duration,
    /// Config overrides applied to every new topic before its own (broker defaults).
    pub default_topic_config: BTreeMap<String, String>,
    /// Partitions the data directory may hold in all (each keeps an open file per
    /// segment): creating topics or partitions beyond it is refused with a clear error,
    /// so the process always stays within its file-descriptor limit and can restart.
    pub max_partitions: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            read_only: false,
            clock: Arc::new(SystemClock),
            background: true,
            maintenance_interval: Duration::from_secs(300),
            default_topic_config: BTreeMap::new(),
            max_partitions: DEFAULT_MAX_PARTITIONS,
        }
    }
}

/// Default for [`LogOptions::max_partitions`].
pub const DEFAULT_MAX_PARTITIONS: usize = 10_000;

/// Stored per topic in `topic.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// 16-byte topic id (Kafka's topic UUID), hex.
    pub id: String,
    /// Partition count.
    pub partitions: i32,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Creation time, epoch ms.
    pub created_ms: i64,
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    meta: RwLock<TopicMeta>,
    dir: PathBuf,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    /// Name.
    pub fn name(&self) -> String {
        self.meta.read().expect("meta lock").name.clone()
    }
    /// Stored metadata.
    pub fn meta(&self) -> TopicMeta {
        self.meta.read().expect("meta lock").clone()
    }
    /// Partition count.
    pub fn partition_count(&self) -> i32 {
        self.partitions.read().expect("partitions lock").len() as i32
    }
    /// One partition.
    pub fn partition(&self, p: i32) -> Option<Arc<Partition>> {
        if p < 0 {
            return None;
        }
        self.partitions
            .read()
            .expect("partitions lock")
            .get(p as usize)
            .cloned()
    }
    /// All partitions.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().expect("partitions lock").clone()
    }
    /// Parsed config.
    pub fn config(&self) -> Arc<TopicConfig> {
        self.partitions()
            .first()
            .map(|p| p.config())
            .unwrap_or_default()
    }
}

/// Per-partition recovery findings from [`Log::open`].
#[derive(Debug, Clone)]
pub struct RecoveryNote {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// What happened to the segment.
    pub segment: SegmentRecovery,
}

/// A data directory of topics.
#[derive(Debug)]
pub struct Log {
    root: PathBuf,
    options: LogOptions,
    _lock: Option<File>,
    topics: Arc<RwLock<BTreeMap<String, Arc<Topic>>>>,
    recovery: Vec<RecoveryNote>,
    stop: Arc<AtomicBool>,
    background: Option<JoinHandle<()>>,
    notifier: Arc<AppendNotifier>,
}

/// Check a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl Log {
    /// Open (creating if needed) the data directory at `root`.
    pub fn open(root: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        let root = root.as_ref().to_path_buf();
        let lock = if options.read_only {
            if !root.join("topics").is_dir() {
                return Err(Error::io(
                    format!("opening {}", root.display()),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no Sluice data directory here",
                    ),
                ));
            }
            None
        } else {
            fs::create_dir_all(root.join("topics"))
                .ctx(|| format!("creating {}", root.display()))?;
            Some(lock_dir(&root)?)
        };
        if !options.read_only {
            let trash = root.join("trash");
            if trash.exists() {
                fs::remove_dir_all(&trash).ctx(|| format!("emptying {}", trash.display()))?;
            }
            // Half-created topics never got renamed into place.
            for e in fs::read_dir(root.join("topics")).ctx(|| "listing topics".to_string())? {
                let e = e.ctx(|| "listing topics".to_string())?;
                if e.file_name().to_string_lossy().starts_with(".creating-") {
                    fs::remove_dir_all(e.path())
                        .ctx(|| format!("removing {}", e.path().display()))?;
                }
            }
        }
        let mut topics = BTreeMap::new();
        let mut recovery = Vec::new();
        let notifier = Arc::new(AppendNotifier::default());
        for e in fs::read_dir(root.join("topics")).ctx(|| "listing topics".to_string())? {
            let e = e.ctx(|| "listing topics".to_string())?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".creating-") && !options.read_only && e.path().is_dir() {
                // A topic creation that never reached its commit point.
                fs::remove_dir_all(e.path()).ctx(|| format!("removing {}", e.path().display()))?;
                continue;
            }
            if name.starts_with('.') || !e.path().is_dir() {
                continue;
            }
            let (topic, notes) = Self::open_topic(&e.path(), &options, &notifier)?;
            for (p, seg) in notes {
                if seg.truncated_bytes > 0 || seg.rebuilt_index || !seg.quarantined.is_empty() {
                    recovery.push(RecoveryNote {
                        topic: name.clone(),
                        partition: p,
                        segment: seg,
                    });
                }
            }
            topics.insert(name, Arc::new(topic));
        }
        let mut log = Log {
            root,
            options,
            _lock: lock,
            topics: Arc::new(RwLock::new(topics)),
            recovery,
            stop: Arc::new(AtomicBool::new(false)),
            background: None,
            notifier,
        };
        if log.options.background && !log.options.read_only {
            log.background = Some(log.spawn_background());
        }
        Ok(log)
    }

    fn open_topic(
        dir: &Path,
        options: &LogOptions,
        notifier: &Arc<AppendNotifier>,
    ) -> Result<(Topic, Vec<(i32, SegmentRecovery)>)> {
        let meta_path = dir.join("topic.json");
        let raw = fs::read(&meta_path).ctx(|| format!("reading {}", meta_path.display()))?;
        let meta: TopicMeta = serde_json::from_slice(&raw).map_err(|e| Error::BadMetadata {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        let config = Arc::new(TopicConfig::from_overrides(&meta.configs)?);
        let mut partitions = Vec::new();
        let mut notes = Vec::new();
        for p in 0..meta.partitions {
            let (part, recs) = Partition::open(
                &dir.join(p.to_string()),
                &meta.name,
                p,
                config.clone(),
                options.clock.clone(),
                options.read_only,
                notifier.clone(),
            )?;
            partitions.push(Arc::new(part));
            notes.extend(recs.into_iter().map(|r| (p, r)));
        }
        Ok((
            Topic {
                meta: RwLock::new(meta),
                dir: dir.to_path_buf(),
                partitions: RwLock::new(partitions),
            },
            notes,
        ))
    }

    fn spawn_background(&self) -> JoinHandle<()> {
        let topics = self.topics.clone();
        let stop = self.stop.clone();
        let clock = self.options.clock.clone();
        let every = self.options.maintenance_interval;
        std::thread::Builder::new()
            .name("sluice-log-flusher".into())
            .spawn(move || {
                let mut last_maintenance = std::time::Instant::now();
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(5));
                    let parts: Vec<Arc<Partition>> = topics
                        .read()
                        .expect("topics lock")
                        .values()
                        .flat_map(|t| t.partitions())
                        .collect();
                    let now = clock.now_ms();
                    for p in &parts {
                        // A failed sync marks the partition failed; appends report it.
                        let _ = p.flush_if_due(now);
                    }
                    if last_maintenance.elapsed() >= every {
                        last_maintenance = std::time::Instant::now();
                        for p in &parts {
                            let _ = p.apply_retention();
                            let _ = p.compact();
                        }
                    }
                }
            })
            .expect("spawn flusher thread")
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Told of every partition's high-watermark advance (whoever appended; in read-only
    /// mode, what [`Log::refresh`] picks up).
    pub fn notifier(&self) -> &Arc<AppendNotifier> {
        &self.notifier
    }

    /// True when opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.options.read_only
    }

    /// What recovery found at open (truncated tails, rebuilt indexes).
    pub fn recovery_notes(&self) -> &[RecoveryNote] {
        &self.recovery
    }

    /// Refuse `more` partitions if the data directory would then hold more than
    /// [`LogOptions::max_partitions`].
    fn check_budget(&self, topics: &BTreeMap<String, Arc<Topic>>, more: i32) -> Result<()> {
        let now: usize = topics.values().map(|t| t.partition_count() as usize).sum();
        let max = self.options.max_partitions;
        if now.saturating_add(more.max(0) as usize) > max {
            return Err(Error::InvalidPartitions {
                requested: more,
                reason: format!(
                    "the data directory holds {now} partitions and may hold at most {max} (max_partitions)"
                ),
            });
        }
        Ok(())
    }

    /// Whether `more` partitions would fit [`LogOptions::max_partitions`] now.
    pub fn check_partition_budget(&self, more: i32) -> Result<()> {
        self.check_budget(&self.topics.read().expect("topics lock"), more)
    }

    /// Move a directory into `DATA/trash` (emptied at the next open, if its deletion does
    /// not finish before) and return where it went.
    fn move_to_trash(&self, dir: &Path) -> Result<PathBuf> {
        let trash = self.root.join("trash");
        fs::create_dir_all(&trash).ctx(|| format!("creating {}", trash.display()))?;
        let target = trash.join(random_id());
        fs::rename(dir, &target).ctx(|| format!("moving {} to trash", dir.display()))?;
        if let Some(parent) = dir.parent() {
            segment::sync_dir(parent)?;
        }
        Ok(target)
    }

    /// Create a topic with `partitions` partitions and config overrides.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>> {
        if self.options.read_only {
            return Err(Error::ReadOnly);
        }
        validate_topic_name(name)?;
        if partitions <= 0 {
            return Err(Error::InvalidPartitions {
                requested: partitions,
                reason: "a topic needs at least one partition".into(),
            });
        }
        let mut merged = self.options.default_topic_config.clone();
        merged.extend(configs);
        let config = Arc::new(TopicConfig::from_overrides(&merged)?);
        let mut topics = self.topics.write().expect("topics lock");
        if topics.contains_key(name) {
            return Err(Error::TopicExists(name.to_string()));
        }
        self.check_budget(&topics, partitions)?;
        let meta = TopicMeta {
            name: name.to_string(),
            id: random_id(),
            partitions,
            configs: merged,
            created_ms: self.options.clock.now_ms(),
        };
        let tdir = self.root.join("topics");
        // Staged under a short name (a 249-character topic name plus a prefix would pass
        // the file-name limit), then renamed: the rename is the commit point.
        let staging = tdir.join(format!(".creating-{}", random_id()));
        fs::create_dir_all(&staging).ctx(|| format!("creating {}", staging.display()))?;
        let json = serde_json::to_vec_pretty(&meta).expect("serializable");
        segment::write_file_atomic(&staging.join("topic.json"), &json)?;
        let final_dir = tdir.join(name);
        if final_dir.exists() {
            // Left by a creation that failed before it was registered: not a topic.
            let _ = fs::remove_dir_all(self.move_to_trash(&final_dir)?);
        }
        fs::rename(&staging, &final_dir)
            .ctx(|| format!("renaming into {}", final_dir.display()))?;
        segment::sync_dir(&tdir)?;
        let mut parts = Vec::new();
        let opened = (0..partitions).try_for_each(|p| {
            let (part, _) = Partition::open(
                &final_dir.join(p.to_string()),
                name,
                p,
                config.clone(),
                self.options.clock.clone(),
                false,
                self.notifier.clone(),
            )?;
            parts.push(Arc::new(part));
            Ok::<_, Error>(())
        });
        if let Err(e) = opened.and_then(|_| segment::sync_dir(&final_dir)) {
            // All or nothing: the half-made topic goes to the trash.
            drop(parts);
            if let Ok(t) = self.move_to_trash(&final_dir) {
                let _ = fs::remove_dir_all(t);
            }
            return Err(e);
        }
        let topic = Arc::new(Topic {
            meta: RwLock::new(meta),
            dir: final_dir,
            partitions: RwLock::new(parts),
        });
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Grow a topic to `count` partitions (Kafka's CreatePartitions; never shrinks).
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<()> {
        if self.options.read_only {
            return Err(Error::ReadOnly);
        }
        let topic = self.topic(name)?;
        let current = topic.partition_count();
        if count <= current {
            return Err(Error::InvalidPartitions {
                requested: count,
                reason: format!("topic {name} already has {current} partitions; counts only grow"),
            });
        }
        self.check_budget(&self.topics.read().expect("topics lock"), count - current)?;
        let config = topic.config();
        let mut parts = topic.partitions.write().expect("partitions lock");
        for p in current..count {
            let (part, _) = Partition::open(
                &topic.dir.join(p.to_string()),
                name,
                p,
                config.clone(),
                self.options.clock.clone(),
                false,
                self.notifier.clone(),
            )?;
            parts.push(Arc::new(part));
        }
        let mut meta = topic.meta.write().expect("meta lock");
        meta.partitions = count;
        let json = serde_json::to_vec_pretty(&*meta).expect("serializable");
        segment::write_file_atomic(&topic.dir.join("topic.json"), &json)
    }

    /// Replace a topic's config overrides with `configs` (validated first).
    pub fn set_topic_config(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        if self.options.read_only {
            return Err(Error::ReadOnly);
        }
        let topic = self.topic(name)?;
        let config = Arc::new(TopicConfig::from_overrides(&configs)?);
        let mut meta = topic.meta.write().expect("meta lock");
        meta.configs = configs;
        let json = serde_json::to_vec_pretty(&*meta).expect("serializable");
        segment::write_file_atomic(&topic.dir.join("topic.json"), &json)?;
        for p in topic.partitions() {
            p.set_config(config.clone());
        }
        Ok(())
    }

    /// Delete a topic and all its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        if self.options.read_only {
            return Err(Error::ReadOnly);
        }
        let mut topics = self.topics.write().expect("topics lock");
        let Some(topic) = topics.get(name).cloned() else {
            return Err(Error::UnknownTopic(name.to_string()));
        };
        let target = self.move_to_trash(&topic.dir)?;
        topics.remove(name);
        drop(topics);
        fs::remove_dir_all(&target).ctx(|| format!("removing {}", target.display()))?;
        Ok(())
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// Topic names in order.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics
            .read()
            .expect("topics lock")
            .keys()
            .cloned()
            .collect()
    }

    /// One partition of a topic.
    pub fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>> {
        self.topic(topic)?
            .partition(partition)
            .ok_or(Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    /// Summaries of every partition of a topic.
    pub fn describe(&self, topic: &str) -> Result<Vec<PartitionSummary>> {
        Ok(self
            .topic(topic)?
            .partitions()
            .iter()
            .map(|p| p.summary())
            .collect())
    }

    /// Read-only mode: pick up topics and data another process wrote since open.
    pub fn refresh(&self) -> Result<()> {
        if !self.options.read_only {
            return Ok(());
        }
        for e in fs::read_dir(self.root.join("topics")).ctx(|| "listing topics".to_string())? {
            let e = e.ctx(|| "listing topics".to_string())?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || self.topics.read().expect("topics lock").contains_key(&name)
            {
                continue;
            }
            if let Ok((t, _)) = Self::open_topic(&e.path(), &self.options, &self.notifier) {
                self.topics
                    .write()
                    .expect("topics lock")
                    .insert(name, Arc::new(t));
            }
        }
        for t in self.topics.read().expect("topics lock").values() {
            for p in t.partitions() {
                p.refresh()?;
            }
        }
        Ok(())
    }

    /// Run retention and compaction on every partition now.
    pub fn run_maintenance(&self) -> Result<(RetentionReport, CompactionReport)> {
        let mut r = RetentionReport::default();
        let mut c = CompactionReport::default();
        let parts: Vec<_> = self
            .topics
            .read()
            .expect("topics lock")
            .values()
            .flat_map(|t| t.partitions())
            .collect();
        for p in parts {
            let x = p.apply_retention()?;
            r.segments_deleted += x.segments_deleted;
            r.bytes_deleted += x.bytes_deleted;
            let y = p.compact()?;
            c.segments_rewritten += y.segments_rewritten;
            c.records_removed += y.records_removed;
            c.bytes_before += y.bytes_before;
            c.bytes_after += y.bytes_after;
        }
        Ok((r, c))
    }

    /// Sync everything, write indexes and stop the background thread.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
        let parts: Vec<_> = self
            .topics
            .read()
            .expect("topics lock")
            .values()
            .flat_map(|t| t.partitions())
            .collect();
        let mut first_err = None;
        for p in parts {
            if let Err(e) = p.close() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn lock_dir(root: &Path) -> Result<File> {
    let path = root.join(".lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Locked {
                path: root.to_path_buf(),
                holder: if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io(format!("locking {}", path.display()), e));
        }
    }
    let cmd: Vec<String> = std::env::args().collect();
    f.set_len(0).ctx(|| format!("writing {}", path.display()))?;
    writeln!(f, "pid {} ({})", std::process::id(), cmd.join(" "))
        .ctx(|| format!("writing {}", path.display()))?;
    Ok(f)
}
