//! The consumer group coordinator: Kafka's classic rebalance protocol as a pure state
//! machine. It performs no I/O and reads no clock: the server feeds it requests and the
//! time, and carries out the [`Ready`] it returns (send parked responses, persist offset
//! records). Deterministic unit tests drive it through join/sync/leave/timeout sequences.

mod describe;
mod membership;
mod offsets;
mod state;
mod types;

pub use describe::{GroupDescription, MemberDescription};
pub use state::GroupCoordinator;
pub use types::*;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;
