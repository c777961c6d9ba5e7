//! The consumer group coordinator: Kafka's classic rebalance protocol as a pure state
//! machine. It performs no I/O and reads no clock: the server feeds it requests and the
//! time, and carries out the [`Ready`] it returns (send parked responses, persist offset
//! records). Deterministic unit tests drive it through join/sync/leave/timeout sequences.

mod state;

pub use state::*;

#[cfg(test)]
mod tests;
