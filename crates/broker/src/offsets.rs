//! Committed offsets and group membership in the internal compacted topic
//! `__consumer_offsets`.
//!
//! One partition. An offset record's key is `{"g":group,"t":topic,"p":partition}` and its
//! value the committed offset as JSON; a membership record's key is `{"group":group}` and
//! its value the group's snapshot (generation, leader, members, assignments). A null value
//! deletes. Sluice's own JSON format, not Kafka's binary schema: the topic is internal and
//! only Sluice reads it. `__transaction_state` uses the same record reader and writer.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_log::{BatchBuilder, Durability, Log, Partition, decode_records, frames};

use crate::group::{CommittedOffset, GroupRecord, GroupSnapshot, OffsetRecord};

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Serialize, Deserialize)]
struct Key {
    g: String,
    t: String,
    p: i32,
}

/// Key of a group's membership record (`{"group": id}`), beside the offset records.
#[derive(Serialize, Deserialize)]
struct GroupKey {
    group: String,
}

/// Open (creating if needed) the offsets topic.
pub fn open(log: &Log) -> sluice_log::Result<Arc<Partition>> {
    open_internal(log, OFFSETS_TOPIC)
}

/// Open (creating if needed) an internal state topic: one compacted partition, synced on
/// every write.
pub(crate) fn open_internal(log: &Log, name: &str) -> sluice_log::Result<Arc<Partition>> {
    if log.topic(name).is_err() {
        let mut c = BTreeMap::new();
        c.insert("cleanup.policy".to_string(), "compact".to_string());
        c.insert("fsync".to_string(), "always".to_string());
        c.insert("segment.bytes".to_string(), (64u64 << 20).to_string());
        log.create_topic(name, 1, c)?;
    }
    log.partition(name, 0)
}

/// Append key/value records (JSON bytes; `None` value = tombstone) as one batch, without
/// waiting for the sync: the caller awaits the returned durability.
pub(crate) fn append_records(
    p: &Partition,
    records: &[(Vec<u8>, Option<Vec<u8>>)],
    now: i64,
) -> sluice_log::Result<Durability> {
    let mut b = BatchBuilder::new();
    for (key, value) in records {
        b.push(now, Some(key), value.as_deref(), &[]);
    }
    let mut bytes = b
        .build()
        .map_err(|reason| sluice_log::Error::InvalidBatch {
            position: 0,
            reason,
        })?;
    let (_, d) = p.append_deferred(&mut bytes)?;
    Ok(d)
}

/// Every stored data record's key and value in log order (control batches skipped).
pub(crate) fn for_each_record(
    p: &Partition,
    mut f: impl FnMut(usize, Option<&[u8]>, Option<&[u8]>) -> sluice_log::Result<()>,
) -> sluice_log::Result<()> {
    let mut off = p.log_start_offset();
    loop {
        let r = p.read(off, 1 << 20)?;
        if r.bytes.is_empty() {
            return Ok(());
        }
        for frame in frames(&r.bytes) {
            let (pos, h) = frame.map_err(|reason| sluice_log::Error::InvalidBatch {
                position: 0,
                reason,
            })?;
            if h.is_control() {
                continue;
            }
            let recs = decode_records(&r.bytes[pos..pos + h.total_size()]).map_err(|reason| {
                sluice_log::Error::InvalidBatch {
                    position: pos,
                    reason,
                }
            })?;
            for rec in recs {
                f(pos, rec.key.as_deref(), rec.value.as_deref())?;
            }
        }
        off = r.next_offset;
    }
}

/// Appends offset records (commits; `None` values are tombstones) without waiting for
/// durability: they are appended, in call order, when this returns. The broker's
/// `write_offsets` waits and applies them in order.
pub fn append(p: &Partition, records: &[OffsetRecord], now: i64) -> sluice_log::Result<Durability> {
    let encoded = json_records(records.iter().map(|r| {
        let key = Key {
            g: r.group.clone(),
            t: r.topic.clone(),
            p: r.partition,
        };
        (key, r.value.as_ref())
    }));
    append_records(p, &encoded, now)
}

/// Key/value pairs as JSON bytes for [`append_records`] (`None` stays a tombstone).
pub(crate) fn json_records<'a, K: Serialize, V: Serialize + 'a>(
    items: impl Iterator<Item = (K, Option<&'a V>)>,
) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    items
        .map(|(k, v)| {
            let key = serde_json::to_vec(&k).expect("serializable");
            (key, v.map(|v| serde_json::to_vec(v).expect("serializable")))
        })
        .collect()
}

/// Every stored record, in order (later ones win). Records that do not parse are skipped.
pub fn load(p: &Partition) -> sluice_log::Result<Vec<OffsetRecord>> {
    let mut out = Vec::new();
    for_each_record(p, |_, key, value| {
        let Some(k) = key.and_then(|k| serde_json::from_slice::<Key>(k).ok()) else {
            return Ok(());
        };
        let value = value.and_then(|v| serde_json::from_slice::<CommittedOffset>(v).ok());
        out.push(OffsetRecord {
            group: k.g,
            topic: k.t,
            partition: k.p,
            value,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Append group membership records durably (returns once synced).
pub fn write_groups(p: &Partition, records: &[GroupRecord], now: i64) -> sluice_log::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let encoded = json_records(records.iter().map(|r| {
        let key = GroupKey {
            group: r.group.clone(),
        };
        (key, r.value.as_ref())
    }));
    let d = append_records(p, &encoded, now)?;
    p.await_durable(d)
}

/// The last stored membership of every group that has one (deleted groups excluded).
pub fn load_groups(p: &Partition) -> sluice_log::Result<Vec<(String, GroupSnapshot)>> {
    let mut groups: BTreeMap<String, Option<GroupSnapshot>> = BTreeMap::new();
    for_each_record(p, |_, key, value| {
        let Some(k) = key.and_then(|k| serde_json::from_slice::<GroupKey>(k).ok()) else {
            return Ok(());
        };
        // An unreadable snapshot only costs a rebalance: the group starts without members.
        let snapshot = value.and_then(|v| serde_json::from_slice::<GroupSnapshot>(v).ok());
        groups.insert(k.group, snapshot);
        Ok(())
    })?;
    Ok(groups
        .into_iter()
        .filter_map(|(g, s)| s.map(|s| (g, s)))
        .collect())
}
