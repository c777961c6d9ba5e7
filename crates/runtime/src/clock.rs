//! The runtime's time: a monotonic clock for intervals and latency, processing time for
//! the engine (idleness), and the idle wait. Injected, so tests drive time by hand.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_engine::Millis;

/// Where the runtime reads time from.
pub trait Clock: Send + Sync {
    /// Monotonic time since the clock started (intervals, ingest-to-emit latency).
    fn elapsed(&self) -> Duration;
    /// Processing time in epoch milliseconds (the engine's `now`: idle timeouts).
    fn now_ms(&self) -> Millis;
    /// Waits `d` because nothing was available (a manual clock just advances).
    fn sleep(&self, d: Duration);
}

/// Real time: [`Instant`] and the system clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    fn now_ms(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Time that moves only when told ([`ManualClock::advance`]) or when the runtime waits
/// ([`Clock::sleep`] advances it by the wait). Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(Duration, Millis)>>,
}

impl ManualClock {
    /// A clock at elapsed 0 whose processing time starts at `epoch_ms`.
    pub fn new(epoch_ms: Millis) -> Self {
        Self {
            inner: Arc::new(Mutex::new((Duration::ZERO, epoch_ms))),
        }
    }

    /// Moves time forward by `d` (monotonic time and processing time alike).
    pub fn advance(&self, d: Duration) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += d;
    }

    /// Sets processing time to `epoch_ms` without moving monotonic time (a wall clock
    /// may jump; the golden cases give each step its processing time).
    pub fn set_now_ms(&self, epoch_ms: Millis) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.1 = epoch_ms - g.0.as_millis() as Millis;
    }
}

impl Clock for ManualClock {
    fn elapsed(&self) -> Duration {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).0
    }
    fn now_ms(&self) -> Millis {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.1 + g.0.as_millis() as Millis
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_time_moves_by_advance_and_sleep_only() {
        let c = ManualClock::new(1_000);
        let shared = c.clone();
        assert_eq!((c.elapsed(), c.now_ms()), (Duration::ZERO, 1_000));
        c.advance(Duration::from_millis(5));
        shared.sleep(Duration::from_millis(7));
        assert_eq!(
            (c.elapsed(), c.now_ms()),
            (Duration::from_millis(12), 1_012)
        );
    }
}
