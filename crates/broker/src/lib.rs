//! Sluice's Kafka-protocol broker: the TCP server, one handler per Kafka API (in `api/`),
//! the consumer group coordinator (a pure state machine in [`group`]), the transaction
//! coordinator (a pure state machine in [`txn`]), idempotent and transactional producer
//! state (last stable offsets, aborted transactions), committed offsets in the internal
//! `__consumer_offsets` topic and transaction state in `__transaction_state`.
//!
//! Wire messages are decoded and encoded with the `kafka-protocol` crate; record batches
//! are opaque bytes on the hot path: Produce hands them to the log as sent and Fetch serves
//! stored batches as stored.

mod api;
mod broker;
mod codes;
mod fetch_sessions;
pub mod group;
mod offsets;
mod producers;
mod request_bounds;
mod server;
#[cfg(test)]
mod sim_rng;
mod transactions;
pub mod txn;
mod txn_log;

pub use broker::{Broker, BrokerConfig, RefusalCounts, now_ms};
pub use offsets::OFFSETS_TOPIC;
pub use server::{Server, ServerHandle};
pub use txn_log::TXN_TOPIC;

/// Errors of the broker shell.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The storage engine failed.
    #[error(transparent)]
    Log(#[from] sluice_log::Error),
    /// An I/O operation of the server failed.
    #[error("{0}")]
    Io(String),
}

/// Entry points for fuzzing (`fuzz/`) and bounded random-input tests.
pub mod testing {
    /// Decode arbitrary bytes as a request frame body (as the server does); must never
    /// panic. Returns whether the frame decoded.
    pub fn decode_request(data: &[u8]) -> bool {
        crate::server::decode_frame(bytes::Bytes::copy_from_slice(data)).is_ok()
    }

    /// Bytes of request frames in memory right now (read, not yet handled).
    pub fn request_bytes_buffered(broker: &crate::Broker) -> usize {
        broker
            .request_bytes_buffered
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
