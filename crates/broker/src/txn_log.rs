//! Transaction coordinator state in the internal compacted topic `__transaction_state`.
//!
//! One partition; each record's key is `{"t": transactional_id}` and its value the whole
//! [`TxnMeta`] as JSON (null deletes an expired id). Sluice's own JSON, like
//! `__consumer_offsets`: the topic is internal and only Sluice reads it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_log::{Durability, Log, Partition};

use crate::offsets;
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
    let encoded = offsets::json_records(writes.iter().map(|w| {
        let key = Key {
            t: w.transactional_id.clone(),
        };
        (key, w.meta.as_ref())
    }));
    offsets::append_records(p, &encoded, now)
}

/// Every stored record in order (later ones win). A record that does not parse is an
/// error: silently dropping a transaction's state could commit half of it.
pub fn load(p: &Partition) -> sluice_log::Result<Vec<(String, Option<TxnMeta>)>> {
    let bad = |position, reason: String| sluice_log::Error::InvalidBatch {
        position,
        reason: sluice_log::BatchError::BadRecord(reason),
    };
    let mut out = Vec::new();
    offsets::for_each_record(p, |pos, key, value| {
        let key: Key = key
            .and_then(|k| serde_json::from_slice(k).ok())
            .ok_or_else(|| bad(pos, format!("{TXN_TOPIC}: a record without a valid key")))?;
        let meta = match value {
            None => None,
            Some(v) => Some(
                serde_json::from_slice::<TxnMeta>(v)
                    .map_err(|e| bad(pos, format!("{TXN_TOPIC}: state of {:?}: {e}", key.t)))?,
            ),
        };
        out.push((key.t, meta));
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{TxnConfig, TxnCoordinator};

    #[test]
    fn state_round_trips_and_a_damaged_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), sluice_log::LogOptions::default()).unwrap();
        let p = open(&log).unwrap();
        let mut c = TxnCoordinator::new(TxnConfig::default());
        let mut writes = Vec::new();
        let outcome = c
            .init_producer_id("t1", 60_000, (-1, -1), 5, &mut || 42)
            .unwrap();
        let crate::txn::InitOutcome::Ready { write, .. } = outcome else {
            panic!("{outcome:?}")
        };
        writes.push(write);
        writes.push(
            c.add_partitions("t1", 42, 0, &[("a".into(), 3)], 6)
                .unwrap()
                .unwrap(),
        );
        writes.push(Write {
            transactional_id: "gone".into(),
            meta: None,
        });
        let d = append(&p, &writes, 7).unwrap();
        p.await_durable(d).unwrap();
        let loaded = load(&p).unwrap();
        assert_eq!(loaded.len(), 3);
        let mut restored = TxnCoordinator::new(TxnConfig::default());
        restored.load(loaded);
        let m = restored.get("t1").unwrap();
        assert_eq!(m.state, crate::txn::TxnState::Ongoing);
        assert!(m.partitions.contains(&("a".to_string(), 3)));
        assert!(restored.get("gone").is_none());

        // A record whose value is not a transaction state stops the load with its reason.
        let d = offsets::append_records(
            &p,
            &[(br#"{"t":"t2"}"#.to_vec(), Some(b"{not json".to_vec()))],
            8,
        )
        .unwrap();
        p.await_durable(d).unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("state of \"t2\""), "{err}");
    }
}
