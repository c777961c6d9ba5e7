//! Transaction coordinator state in the internal compacted topic `__transaction_state`.
//!
//! One partition; each record's key is `{"t": transactional_id}` and its value the whole
//! [`TxnMeta`] as JSON (null deletes an expired id). Sluice's own JSON, like
//! `__consumer_offsets`: the topic is internal and only Sluice reads it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_log::{BatchBuilder, Durability, Log, Partition, decode_records, frames};

use crate::txn::{TxnMeta, Write};

/// The internal topic's name.
pub const TXN_TOPIC: &str = "__transaction_state";

#[derive(Serialize, Deserialize)]
struct Key {
    t: String,
}

/// Open (creating if needed) the transaction state topic.
pub fn open(log: &Log) -> sluice_log::Result<Arc<Partition>> {
    crate::offsets::open_internal(log, TXN_TOPIC)
}

/// Append state records; the returned durability is awaited by callers that must not
/// answer before the state is on disk.
pub fn append(p: &Partition, writes: &[Write], now: i64) -> sluice_log::Result<Durability> {
    let mut b = BatchBuilder::new();
    for w in writes {
        let key = serde_json::to_vec(&Key {
            t: w.transactional_id.clone(),
        })
        .expect("serializable");
        let value = w
            .meta
            .as_ref()
            .map(|m| serde_json::to_vec(m).expect("serializable"));
        b.push(now, Some(&key), value.as_deref(), &[]);
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

/// Every stored record in order (later ones win). A record that does not parse is an
/// error: silently dropping a transaction's state could commit half of it.
pub fn load(p: &Partition) -> sluice_log::Result<Vec<(String, Option<TxnMeta>)>> {
    let bad = |position, reason: String| sluice_log::Error::InvalidBatch {
        position,
        reason: sluice_log::BatchError::BadRecord(reason),
    };
    let mut out = Vec::new();
    let mut off = p.log_start_offset();
    loop {
        let r = p.read(off, 1 << 20)?;
        if r.bytes.is_empty() {
            break;
        }
        for f in frames(&r.bytes) {
            let (pos, h) = f.map_err(|reason| sluice_log::Error::InvalidBatch {
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
                let key: Key = rec
                    .key
                    .as_deref()
                    .and_then(|k| serde_json::from_slice(k).ok())
                    .ok_or_else(|| {
                        bad(pos, format!("{TXN_TOPIC}: a record without a valid key"))
                    })?;
                let meta = match rec.value.as_deref() {
                    None => None,
                    Some(v) => Some(serde_json::from_slice::<TxnMeta>(v).map_err(|e| {
                        bad(pos, format!("{TXN_TOPIC}: state of {:?}: {e}", key.t))
                    })?),
                };
                out.push((key.t, meta));
            }
        }
        off = r.next_offset;
    }
    Ok(out)
}
