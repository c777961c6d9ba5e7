//! The transaction coordinator: Kafka's transaction state machine (InitProducerId with a
//! transactional id, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn,
//! timeouts) as a pure state machine. It performs no I/O and reads no clock: the broker
//! persists the [`Write`]s it returns to `__transaction_state` before answering, and
//! carries out the [`Completion`]s (commit/abort markers, offsets) it hands out.

mod state;

pub use state::*;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;
