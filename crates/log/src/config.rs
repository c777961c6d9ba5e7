//! Topic configuration: Kafka's topic config names and defaults, plus Sluice's `fsync`.
//!
//! A topic stores only its overrides (as Kafka does); [`TopicConfig`] is the parsed result
//! of defaults + overrides. Unknown keys and bad values are errors, never silent defaults.
//! Kafka's topic configs that have no meaning on one Sluice node (replication, tiered
//! storage, the cleaner's tuning, ...) are accepted, type-checked and stored, but change
//! nothing ([`STORED_ONLY_KEYS`]), so tools that set them work unchanged.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};

/// When appended bytes are forced to stable storage.
///
/// In every policy an append's bytes are written to the file (the OS page cache) before
/// the append returns, so a crash of the Sluice process alone (SIGKILL, panic) loses
/// nothing that was acknowledged. The policies differ on an OS crash or power loss:
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `always` (default): an append returns only after `fdatasync` covered its bytes.
    /// Concurrent appends share one `fdatasync` (group commit). Nothing acknowledged is
    /// lost on power loss. Readers see a record only once it is synced.
    Always,
    /// `interval:<ms>`: a background flusher (and any append that finds the last sync
    /// older than the interval) calls `fdatasync` at least every `ms` milliseconds while
    /// there is unsynced data. Power loss loses at most the last interval of
    /// acknowledged appends.
    Interval(u64),
    /// `never`: Sluice never calls `fdatasync` on appends (only when a segment is rolled
    /// or the log is closed); the OS writes back when it likes (typically within 30 s
    /// on Linux). Power loss can lose anything not yet written back.
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(ms) => write!(f, "interval:{ms}"),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval(ms)),
                _ => Err("expected always, never or interval:<milliseconds > 0>".into()),
            },
        }
    }
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Delete whole segments by time and size.
    pub delete: bool,
    /// Keep the latest record per key.
    pub compact: bool,
}

/// Timestamp stored in batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageTimestampType {
    /// Keep the producer's timestamps.
    CreateTime,
    /// Stamp batches with the append time.
    LogAppendTime,
}

/// Parsed topic configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `cleanup.policy`: `delete` (default), `compact`, or `compact,delete`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long tombstones survive compaction (default 1 day).
    pub delete_retention_ms: i64,
    /// `index.interval.bytes`: bytes between sparse index entries (default 4096).
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: largest batch accepted (default 1048588).
    pub max_message_bytes: usize,
    /// `message.timestamp.type`: `CreateTime` (default) or `LogAppendTime`.
    pub message_timestamp_type: MessageTimestampType,
    /// `retention.bytes`: size limit per partition, -1 for none (default).
    pub retention_bytes: i64,
    /// `retention.ms`: age limit, -1 for none (default 7 days).
    pub retention_ms: i64,
    /// `segment.bytes`: roll the active segment at this size (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment after this age (default 7 days).
    pub segment_ms: i64,
    /// `fsync`: Sluice's durability policy (default `always`).
    pub fsync: FsyncPolicy,
}

/// Known keys with their defaults and documentation, in display order.
pub const TOPIC_CONFIG_KEYS: &[(&str, &str, &str)] = &[
    (
        "cleanup.policy",
        "delete",
        "delete | compact | compact,delete",
    ),
    (
        "compression.type",
        "producer",
        "batches are stored as the producer compressed them (only 'producer' is supported)",
    ),
    (
        "delete.retention.ms",
        "86400000",
        "how long compaction keeps tombstones",
    ),
    (
        "fsync",
        "always",
        "always | interval:<ms> | never (Sluice's durability policy)",
    ),
    (
        "index.interval.bytes",
        "4096",
        "bytes between sparse index entries",
    ),
    (
        "max.message.bytes",
        "1048588",
        "largest record batch accepted",
    ),
    (
        "message.timestamp.type",
        "CreateTime",
        "CreateTime | LogAppendTime",
    ),
    (
        "retention.bytes",
        "-1",
        "per-partition size limit, -1 for none",
    ),
    ("retention.ms", "604800000", "age limit, -1 for none"),
    ("segment.bytes", "1073741824", "segment roll size"),
    ("segment.ms", "604800000", "segment roll age"),
];

/// The value a stored-only config must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// A 64-bit integer at least this.
    Long(i64),
    /// A 32-bit integer at least this.
    Int(i32),
    /// `true` or `false` (any case, as Kafka).
    Bool,
    /// A number in 0..=1.
    Ratio,
    /// Any text (lists included).
    Text,
}

/// Kafka's topic configs that Sluice accepts and stores without acting on them, with
/// Kafka's defaults: (name, default, kind, why it changes nothing here).
pub const STORED_ONLY_KEYS: &[(&str, &str, ConfigKind, &str)] = &[
    (
        "compression.gzip.level",
        "-1",
        ConfigKind::Int(-1),
        "batches are stored as produced",
    ),
    (
        "compression.lz4.level",
        "9",
        ConfigKind::Int(1),
        "batches are stored as produced",
    ),
    (
        "compression.zstd.level",
        "3",
        ConfigKind::Int(-131072),
        "batches are stored as produced",
    ),
    (
        "file.delete.delay.ms",
        "60000",
        ConfigKind::Long(0),
        "deleted segments go at once",
    ),
    (
        "flush.messages",
        "9223372036854775807",
        ConfigKind::Long(1),
        "Sluice's fsync policy decides syncs",
    ),
    (
        "flush.ms",
        "9223372036854775807",
        ConfigKind::Long(0),
        "Sluice's fsync policy decides syncs",
    ),
    (
        "follower.replication.throttled.replicas",
        "",
        ConfigKind::Text,
        "one node: no replication",
    ),
    (
        "leader.replication.throttled.replicas",
        "",
        ConfigKind::Text,
        "one node: no replication",
    ),
    (
        "local.retention.bytes",
        "-2",
        ConfigKind::Long(-2),
        "no tiered storage",
    ),
    (
        "local.retention.ms",
        "-2",
        ConfigKind::Long(-2),
        "no tiered storage",
    ),
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigKind::Long(1),
        "compaction runs on the maintenance interval",
    ),
    (
        "message.downconversion.enable",
        "true",
        ConfigKind::Bool,
        "no down-conversion",
    ),
    (
        "message.format.version",
        "3.0-IV1",
        ConfigKind::Text,
        "batches are always v2",
    ),
    (
        "message.timestamp.after.max.ms",
        "9223372036854775807",
        ConfigKind::Long(0),
        "timestamps are not range-checked",
    ),
    (
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigKind::Long(0),
        "timestamps are not range-checked",
    ),
    (
        "message.timestamp.difference.max.ms",
        "9223372036854775807",
        ConfigKind::Long(0),
        "timestamps are not range-checked",
    ),
    (
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigKind::Ratio,
        "compaction runs on the maintenance interval",
    ),
    (
        "min.compaction.lag.ms",
        "0",
        ConfigKind::Long(0),
        "compaction runs on the maintenance interval",
    ),
    (
        "min.insync.replicas",
        "1",
        ConfigKind::Int(1),
        "one node: the only replica is always in sync",
    ),
    (
        "preallocate",
        "false",
        ConfigKind::Bool,
        "segments grow as written",
    ),
    (
        "remote.storage.enable",
        "false",
        ConfigKind::Bool,
        "no tiered storage",
    ),
    (
        "segment.index.bytes",
        "10485760",
        ConfigKind::Int(8),
        "indexes are sized by their entries",
    ),
    (
        "segment.jitter.ms",
        "0",
        ConfigKind::Long(0),
        "segments roll without jitter",
    ),
    (
        "unclean.leader.election.enable",
        "false",
        ConfigKind::Bool,
        "one node: no leader election",
    ),
];

/// Kafka's list-type topic configs (IncrementalAlterConfigs APPEND and SUBTRACT apply).
pub const LIST_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
];

/// Documentation of a topic config key (implemented or stored-only).
pub fn topic_config_doc(key: &str) -> Option<String> {
    TOPIC_CONFIG_KEYS
        .iter()
        .find(|(n, _, _)| *n == key)
        .map(|(_, _, d)| d.to_string())
        .or_else(|| {
            STORED_ONLY_KEYS
                .iter()
                .find(|(n, ..)| *n == key)
                .map(|(_, _, _, why)| format!("accepted and stored; no effect in Sluice ({why})"))
        })
}

/// The default of a topic config key.
pub fn topic_config_default(key: &str) -> Option<&'static str> {
    TOPIC_CONFIG_KEYS
        .iter()
        .find(|(n, _, _)| *n == key)
        .map(|(_, d, _)| *d)
        .or_else(|| {
            STORED_ONLY_KEYS
                .iter()
                .find(|(n, ..)| *n == key)
                .map(|(_, d, ..)| *d)
        })
}

fn check_kind(key: &str, value: &str, kind: ConfigKind) -> Result<()> {
    let v = value.trim();
    match kind {
        ConfigKind::Long(min) => {
            int(key, v, min)?;
        }
        ConfigKind::Int(min) => {
            let n = int(key, v, min as i64)?;
            if n > i32::MAX as i64 {
                return Err(bad(key, value, "must fit a 32-bit integer"));
            }
        }
        ConfigKind::Bool => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return Err(bad(key, value, "expected true or false"));
            }
        }
        ConfigKind::Ratio => match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => {}
            _ => return Err(bad(key, value, "expected a number from 0 to 1")),
        },
        ConfigKind::Text => {}
    }
    Ok(())
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig::from_overrides(&BTreeMap::new()).expect("defaults are valid")
    }
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn int(key: &str, value: &str, min: i64) -> Result<i64> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| bad(key, value, "not an integer"))?;
    if v < min {
        return Err(bad(key, value, format!("must be >= {min}")));
    }
    Ok(v)
}

impl TopicConfig {
    /// Check one key=value pair.
    pub fn validate_entry(key: &str, value: &str) -> Result<()> {
        let mut m = BTreeMap::new();
        m.insert(key.to_string(), value.to_string());
        TopicConfig::from_overrides(&m).map(|_| ())
    }

    /// Defaults with `overrides` applied.
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<Self> {
        let get = |k: &str| -> String {
            overrides.get(k).cloned().unwrap_or_else(|| {
                TOPIC_CONFIG_KEYS
                    .iter()
                    .find(|(n, _, _)| *n == k)
                    .map(|(_, d, _)| d.to_string())
                    .expect("known key")
            })
        };
        for (k, v) in overrides {
            if TOPIC_CONFIG_KEYS.iter().any(|(n, _, _)| n == k) {
                continue;
            }
            match STORED_ONLY_KEYS.iter().find(|(n, ..)| n == k) {
                Some((_, _, kind, _)) => check_kind(k, v, *kind)?,
                None => {
                    let known: Vec<_> = TOPIC_CONFIG_KEYS
                        .iter()
                        .map(|(n, _, _)| *n)
                        .chain(STORED_ONLY_KEYS.iter().map(|(n, ..)| *n))
                        .collect();
                    return Err(bad(
                        k,
                        v,
                        format!("unknown config; known: {}", known.join(", ")),
                    ));
                }
            }
        }
        let cp = get("cleanup.policy");
        let mut cleanup_policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in cp.split(',').map(str::trim) {
            match part {
                "delete" => cleanup_policy.delete = true,
                "compact" => cleanup_policy.compact = true,
                _ => {
                    return Err(bad(
                        "cleanup.policy",
                        &cp,
                        "expected delete, compact or both",
                    ));
                }
            }
        }
        let ct = get("compression.type");
        if ct != "producer" {
            return Err(bad(
                "compression.type",
                &ct,
                "Sluice stores batches as the producer compressed them; only 'producer' is supported",
            ));
        }
        let fsync_s = get("fsync");
        let fsync = fsync_s
            .parse()
            .map_err(|e: String| bad("fsync", &fsync_s, e))?;
        let tt = get("message.timestamp.type");
        let message_timestamp_type = match tt.as_str() {
            "CreateTime" => MessageTimestampType::CreateTime,
            "LogAppendTime" => MessageTimestampType::LogAppendTime,
            _ => {
                return Err(bad(
                    "message.timestamp.type",
                    &tt,
                    "expected CreateTime or LogAppendTime",
                ));
            }
        };
        let retention_ms = int("retention.ms", &get("retention.ms"), -1)?;
        let retention_bytes = int("retention.bytes", &get("retention.bytes"), -1)?;
        Ok(TopicConfig {
            cleanup_policy,
            delete_retention_ms: int("delete.retention.ms", &get("delete.retention.ms"), 0)?,
            index_interval_bytes: int("index.interval.bytes", &get("index.interval.bytes"), 0)?
                as u64,
            max_message_bytes: int("max.message.bytes", &get("max.message.bytes"), 0)? as usize,
            message_timestamp_type,
            retention_bytes,
            retention_ms,
            segment_bytes: {
                let v = int("segment.bytes", &get("segment.bytes"), 100)?;
                if v > u32::MAX as i64 {
                    return Err(bad(
                        "segment.bytes",
                        &get("segment.bytes"),
                        "must fit 32-bit file positions (<= 4294967295)",
                    ));
                }
                v as u64
            },
            segment_ms: int("segment.ms", &get("segment.ms"), 1)?,
            fsync,
        })
    }

    /// Every key with its effective value and whether it is an override.
    pub fn describe(overrides: &BTreeMap<String, String>) -> Vec<(String, String, bool)> {
        TOPIC_CONFIG_KEYS
            .iter()
            .map(|(k, d, _)| (*k, *d))
            .chain(STORED_ONLY_KEYS.iter().map(|(k, d, ..)| (*k, *d)))
            .map(|(k, d)| match overrides.get(k) {
                Some(v) => (k.to_string(), v.clone(), true),
                None => (k.to_string(), d.to_string(), false),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_kafka() {
        let c = TopicConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.retention_ms, 7 * 24 * 3600 * 1000);
        assert_eq!(c.max_message_bytes, 1048588);
        assert!(c.cleanup_policy.delete && !c.cleanup_policy.compact);
        assert_eq!(c.fsync, FsyncPolicy::Always);
    }

    #[test]
    fn parses_overrides() {
        let c = TopicConfig::from_overrides(&map(&[
            ("cleanup.policy", "compact,delete"),
            ("fsync", "interval:250"),
            ("message.timestamp.type", "LogAppendTime"),
        ]))
        .unwrap();
        assert!(c.cleanup_policy.compact && c.cleanup_policy.delete);
        assert_eq!(c.fsync, FsyncPolicy::Interval(250));
        assert_eq!(
            c.message_timestamp_type,
            MessageTimestampType::LogAppendTime
        );
    }

    #[test]
    fn kafka_configs_without_meaning_here_are_accepted_and_checked() {
        let c = TopicConfig::from_overrides(&map(&[
            ("min.insync.replicas", "2"),
            ("flush.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("unclean.leader.election.enable", "TRUE"),
            ("leader.replication.throttled.replicas", "0:1,1:1"),
        ]))
        .unwrap();
        assert_eq!(c, TopicConfig::default(), "stored only: nothing changes");
        for (k, v) in [
            ("min.insync.replicas", "0"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("preallocate", "yes"),
            ("flush.messages", "soon"),
        ] {
            let e = TopicConfig::from_overrides(&map(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
        let described = TopicConfig::describe(&map(&[("flush.ms", "5")]));
        assert!(described.contains(&("flush.ms".into(), "5".into(), true)));
        assert!(described.contains(&("min.insync.replicas".into(), "1".into(), false)));
        assert!(topic_config_doc("flush.ms").unwrap().contains("no effect"));
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        for (k, v) in [
            ("retention.msec", "1"),
            ("fsync", "sometimes"),
            ("fsync", "interval:0"),
            ("segment.bytes", "-5"),
            ("cleanup.policy", "shred"),
            ("compression.type", "gzip"),
        ] {
            let e = TopicConfig::from_overrides(&map(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}
