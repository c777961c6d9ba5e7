//! Shared broker state: the log, the group coordinator and its parked requests, producer
//! state, and the notification that wakes long-polling fetches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sluice_log::{Log, Partition};
use tokio::sync::{Notify, oneshot};

use crate::fetch_sessions::FetchSessions;
use crate::group::{
    CoordinatorConfig, GroupCoordinator, GroupRecord, JoinResult, OffsetRecord, Ready, SyncResult,
    Token,
};
use crate::producers::ProducerIds;
use crate::txn::{TxnConfig, TxnCoordinator};
use crate::{BrokerError, offsets, txn_log};

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Host and port given to clients in Metadata and FindCoordinator.
    pub advertised_host: String,
    /// See `advertised_host`.
    pub advertised_port: i32,
    /// This broker's node id.
    pub node_id: i32,
    /// Cluster id reported to clients.
    pub cluster_id: String,
    /// Largest request frame accepted (`socket.request.max.bytes`); larger closes the
    /// connection with a logged reason.
    pub max_request_bytes: usize,
    /// Bytes of request frames buffered across all connections at once (Kafka's
    /// `queued.max.request.bytes`, which Kafka leaves unbounded by default). A frame is
    /// read only once its announced size fits; until then its connection waits.
    pub queued_max_request_bytes: usize,
    /// Open client connections at most (`max.connections`); more are closed on accept.
    pub max_connections: usize,
    /// Open client connections from one IP address at most (`max.connections.per.ip`).
    pub max_connections_per_ip: usize,
    /// A connection with no request for this long is closed (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// A request frame whose bytes do not all arrive within this long after its size
    /// prefix closes the connection (so stalled frames cannot hold the request budget).
    pub request_read_timeout_ms: u64,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions` for auto-created topics and CreateTopics with -1.
    pub default_partitions: i32,
    /// Group coordinator limits.
    pub groups: CoordinatorConfig,
    /// Transaction coordinator limits.
    pub transactions: TxnConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:9092".parse().expect("valid"),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            node_id: 0,
            cluster_id: "sluice-cluster".into(),
            max_request_bytes: 100 * 1024 * 1024,
            queued_max_request_bytes: 256 * 1024 * 1024,
            max_connections: 2000,
            max_connections_per_ip: 1000,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
            auto_create_topics: true,
            default_partitions: 1,
            groups: CoordinatorConfig::default(),
            transactions: TxnConfig::default(),
        }
    }
}

/// Everything request handlers share.
#[derive(Debug)]
pub struct Broker {
    pub(crate) log: Arc<Log>,
    pub(crate) cfg: BrokerConfig,
    pub(crate) groups: Mutex<GroupCoordinator>,
    parked_joins: Mutex<HashMap<Token, oneshot::Sender<JoinResult>>>,
    parked_syncs: Mutex<HashMap<Token, oneshot::Sender<SyncResult>>>,
    next_token: AtomicU64,
    pub(crate) producers: ProducerIds,
    pub(crate) offsets: Arc<Partition>,
    /// Offset writes are applied to the group coordinator in the order they were appended
    /// to `__consumer_offsets` (see [`Broker::write_offsets`]): the next ticket to hand out,
    /// and the next ticket whose records may be applied.
    offsets_appended: Mutex<u64>,
    offsets_applied: (Mutex<u64>, std::sync::Condvar),
    /// The transaction coordinator.
    pub(crate) txns: Mutex<TxnCoordinator>,
    /// Serializes transaction steps with their state writes.
    pub(crate) txn_io: Mutex<()>,
    /// `__transaction_state`.
    pub(crate) txn_state: Arc<Partition>,
    /// Signalled after every successful append (wakes long-polling fetches).
    pub(crate) data_arrived: Arc<Notify>,
    /// Incremental fetch sessions (KIP-227).
    pub(crate) fetch_sessions: Mutex<FetchSessions>,
    /// Request bytes that may be buffered across connections (`queued_max_request_bytes`).
    pub(crate) request_memory: Arc<tokio::sync::Semaphore>,
    /// Bytes of request frames read into memory and not yet handled.
    pub(crate) request_bytes_buffered: std::sync::atomic::AtomicUsize,
    /// Open connections per peer IP.
    pub(crate) connections: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Refusals (connections and requests) for the operator to see.
    pub(crate) refusals: Refusals,
}

/// Counts of what the broker refused, by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Connections closed on accept: over `max_connections` or `max_connections_per_ip`.
    pub connection_limit: AtomicU64,
    /// Connections closed for a malformed, oversized or unsupported request.
    pub bad_request: AtomicU64,
    /// Connections closed idle or with a stalled request frame.
    pub idle_or_stalled: AtomicU64,
}

/// A snapshot of the broker's refusal counters ([`Broker::refusals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCounts {
    /// Connections closed on accept: over `max_connections` or `max_connections_per_ip`.
    pub connection_limit: u64,
    /// Connections closed for a malformed, oversized or unsupported request.
    pub bad_request: u64,
    /// Connections closed idle or with a stalled request frame.
    pub idle_or_stalled: u64,
}

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Broker {
    /// What the broker refused so far.
    pub fn refusals(&self) -> RefusalCounts {
        RefusalCounts {
            connection_limit: self.refusals.connection_limit.load(Ordering::Relaxed),
            bad_request: self.refusals.bad_request.load(Ordering::Relaxed),
            idle_or_stalled: self.refusals.idle_or_stalled.load(Ordering::Relaxed),
        }
    }

    /// Build the broker over an open log: restores committed offsets, group and
    /// transaction coordinator state (the log's partitions rebuilt their producer state
    /// when it opened) and completes transactions a crash interrupted.
    pub fn new(log: Arc<Log>, cfg: BrokerConfig) -> Result<Broker, BrokerError> {
        let offsets = offsets::open(&log)?;
        let mut coordinator = GroupCoordinator::new(cfg.groups.clone());
        let records = offsets::load(&offsets)?;
        coordinator.apply_offsets(&records, now_ms());
        coordinator.restore_groups(offsets::load_groups(&offsets)?, now_ms());
        let producers = ProducerIds::open(log.root().join("broker"))
            .map_err(|e| BrokerError::Io(format!("producer id block: {e}")))?;
        // Fetch long-polls wake on every partition's append, whoever wrote (Produce,
        // transaction markers, a pipeline's topic sink on this log).
        let data_arrived = Arc::new(Notify::new());
        {
            let wake = data_arrived.clone();
            log.notifier()
                .subscribe(Arc::new(move |_, _, _| wake.notify_waiters()));
        }
        let txn_state = txn_log::open(&log)?;
        let cfg_request_budget = cfg
            .queued_max_request_bytes
            .max(cfg.max_request_bytes)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let mut txns = TxnCoordinator::new(cfg.transactions.clone());
        txns.load(txn_log::load(&txn_state)?);
        let broker = Broker {
            log,
            txns: Mutex::new(txns),
            txn_io: Mutex::new(()),
            txn_state,
            cfg,
            groups: Mutex::new(coordinator),
            parked_joins: Mutex::new(HashMap::new()),
            parked_syncs: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            producers,
            offsets,
            offsets_appended: Mutex::new(0),
            offsets_applied: (Mutex::new(0), std::sync::Condvar::new()),
            data_arrived,
            fetch_sessions: Mutex::new(FetchSessions::default()),
            request_memory: Arc::new(tokio::sync::Semaphore::new(cfg_request_budget)),
            request_bytes_buffered: std::sync::atomic::AtomicUsize::new(0),
            connections: Mutex::new(HashMap::new()),
            refusals: Refusals::default(),
        };
        broker.recover_transactions()?;
        Ok(broker)
    }

    /// The log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    pub(crate) fn park_join(&self) -> (Token, oneshot::Receiver<JoinResult>) {
        let t = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.parked_joins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(t, tx);
        (t, rx)
    }

    pub(crate) fn park_sync(&self) -> (Token, oneshot::Receiver<SyncResult>) {
        let t = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.parked_syncs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(t, tx);
        (t, rx)
    }

    pub(crate) fn unpark_join(&self, t: Token) {
        self.parked_joins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&t);
    }

    pub(crate) fn unpark_sync(&self, t: Token) {
        self.parked_syncs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&t);
    }

    /// Carry out what the coordinator asked for.
    pub(crate) async fn deliver(self: &Arc<Self>, ready: Ready) {
        for (t, r) in ready.joins {
            if let Some(tx) = self
                .parked_joins
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&t)
            {
                let _ = tx.send(r);
            }
        }
        for (t, r) in ready.syncs {
            if let Some(tx) = self
                .parked_syncs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&t)
            {
                let _ = tx.send(r);
            }
        }
        if !ready.offset_writes.is_empty()
            && let Err(e) = self.persist_offsets(ready.offset_writes).await
        {
            tracing::warn!("persisting offset expiry failed: {e}");
        }
        if !ready.group_writes.is_empty()
            && let Err(e) = self.persist_groups(ready.group_writes).await
        {
            // Only a rebalance after a restart is lost.
            tracing::warn!("persisting group membership failed: {e}");
        }
    }

    /// Write offset records durably, then apply them to the group coordinator
    /// ([`Broker::write_offsets`]).
    pub(crate) async fn persist_offsets(
        self: &Arc<Self>,
        records: Vec<OffsetRecord>,
    ) -> Result<(), BrokerError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.write_offsets(&records, now_ms()))
            .await
            .map_err(|e| BrokerError::Io(format!("offset writer: {e}")))?
    }

    /// Appends offset records (commits, tombstones) to `__consumer_offsets`, waits until
    /// they are durable, and applies them to the group coordinator **in append order**:
    /// the coordinator then always holds what a restart would rebuild from the log, also
    /// when a commit and an OffsetDelete (or a DeleteGroups, an expiry, a transaction's
    /// offsets) for the same partition race. Syncs are still shared: only the append and
    /// the apply are ordered. Records that did not become durable are not applied.
    /// Blocking.
    pub(crate) fn write_offsets(
        &self,
        records: &[OffsetRecord],
        now: i64,
    ) -> Result<(), BrokerError> {
        if records.is_empty() {
            return Ok(());
        }
        let (turn, appended) = {
            let mut next = self
                .offsets_appended
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let turn = Turn {
                cell: &self.offsets_applied,
                ticket: *next,
            };
            *next += 1;
            (turn, offsets::append(&self.offsets, records, now))
        };
        let durable = appended.and_then(|d| self.offsets.await_durable(d));
        {
            // Every write appended before this one has been applied (or failed).
            let _mine = turn.wait();
            if durable.is_ok() {
                self.groups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply_offsets(records, now);
            }
        }
        drop(turn); // the next write's turn
        Ok(durable?)
    }

    /// Write group membership records durably.
    pub(crate) async fn persist_groups(
        self: &Arc<Self>,
        records: Vec<GroupRecord>,
    ) -> Result<(), BrokerError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || offsets::write_groups(&me.offsets, &records, now_ms()))
            .await
            .map_err(|e| BrokerError::Io(format!("group writer: {e}")))??;
        Ok(())
    }

    /// Advance group timers (called periodically).
    pub(crate) async fn tick(self: &Arc<Self>) {
        let ready = self
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tick(now_ms());
        self.deliver(ready).await;
    }
}

/// A writer's place in the order offset writes are applied. Dropping it (also by a
/// panic) waits for its turn and passes the turn on, so no later writer waits forever.
struct Turn<'a> {
    cell: &'a (Mutex<u64>, std::sync::Condvar),
    ticket: u64,
}

impl Turn<'_> {
    fn wait(&self) -> std::sync::MutexGuard<'_, u64> {
        let (lock, turn) = self.cell;
        let mut applied = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while *applied != self.ticket {
            applied = turn.wait(applied).unwrap_or_else(PoisonError::into_inner);
        }
        applied
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.wait() += 1;
        self.cell.1.notify_all();
    }
}

/// Kafka topic ids are UUIDs; Sluice stores them as 32 hex digits.
pub fn topic_uuid(hex: &str) -> uuid::Uuid {
    u128::from_str_radix(hex, 16)
        .map(uuid::Uuid::from_u128)
        .unwrap_or(uuid::Uuid::nil())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker over a fresh log in a temporary directory (kept alive by the first value).
    fn broker() -> (tempfile::TempDir, Arc<Broker>) {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            Log::open(
                dir.path(),
                sluice_log::LogOptions {
                    background: false,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let broker = Arc::new(Broker::new(log, BrokerConfig::default()).unwrap());
        (dir, broker)
    }

    /// A panic while a handler holds a coordinator lock fails that request only: later
    /// requests of the same family still get the lock (no poisoning cascade).
    #[test]
    fn a_panic_under_a_coordinator_lock_does_not_poison_later_requests() {
        let (_dir, broker) = broker();
        for m in [
            &broker.groups as &dyn Poison,
            &broker.txns,
            &broker.fetch_sessions,
        ] {
            m.poison();
        }
        assert!(broker.groups.is_poisoned() && broker.txns.is_poisoned());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(broker.tick());
        broker.txn_tick();
        assert!(broker.txns.lock().is_err(), "still poisoned, yet usable");
    }

    trait Poison: Sync {
        fn poison(&self);
    }
    impl<T: Send> Poison for Mutex<T> {
        fn poison(&self) {
            std::thread::scope(|s| {
                let _ = s
                    .spawn(|| {
                        let _g = self.lock();
                        panic!("a handler bug while holding the lock");
                    })
                    .join();
            });
        }
    }

    /// Commits and tombstones for the same partitions, racing from several threads: the
    /// coordinator must end up holding exactly what a restart rebuilds from the log.
    #[test]
    fn racing_offset_writes_are_applied_in_log_order() {
        use crate::group::{CommittedOffset, OffsetRecord};
        let (_dir, broker) = broker();
        let threads: Vec<_> = (0..4i64)
            .map(|w| {
                let b = broker.clone();
                std::thread::spawn(move || {
                    for i in 0..500i64 {
                        let partition = (i % 3) as i32;
                        let value = ((i + w) % 5 != 0).then(|| CommittedOffset {
                            offset: w * 1000 + i,
                            leader_epoch: -1,
                            metadata: None,
                            commit_ms: 0,
                        });
                        let r = OffsetRecord {
                            group: "g".into(),
                            topic: "t".into(),
                            partition,
                            value,
                        };
                        b.write_offsets(&[r], now_ms()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let in_memory = broker
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .committed("g");
        let mut rebuilt = GroupCoordinator::new(Default::default());
        rebuilt.apply_offsets(&offsets::load(&broker.offsets).unwrap(), now_ms());
        assert_eq!(in_memory, rebuilt.committed("g"));
    }
}
