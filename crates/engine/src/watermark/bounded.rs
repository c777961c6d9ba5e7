//! Bounded out-of-orderness: the watermark trails the highest event time by a fixed delay.

use serde::{Deserialize, Serialize};

use crate::time::{MIN_TIME, Millis};

/// Watermark = highest event time seen − delay − 1, never decreasing
/// (Flink's `BoundedOutOfOrdernessWatermarks`). Before any event it is [`MIN_TIME`].
///
/// An event with event time `t` is therefore "on time" as long as no event later than
/// `t + delay` has been seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundedOutOfOrderness {
    delay_ms: Millis,
    max_event_time: Option<Millis>,
    watermark: Millis,
}

impl BoundedOutOfOrderness {
    /// A generator tolerating events up to `delay_ms` behind the highest event time seen.
    pub fn new(delay_ms: u64) -> Self {
        Self {
            delay_ms: Millis::try_from(delay_ms).unwrap_or(Millis::MAX),
            max_event_time: None,
            watermark: MIN_TIME,
        }
    }

    /// The configured delay in milliseconds.
    pub fn delay_ms(&self) -> Millis {
        self.delay_ms
    }

    /// Observes one event's time and advances the watermark if possible.
    pub fn on_event(&mut self, event_time: Millis) {
        let max = self
            .max_event_time
            .map_or(event_time, |m| m.max(event_time));
        self.max_event_time = Some(max);
        let candidate = max.saturating_sub(self.delay_ms).saturating_sub(1);
        self.watermark = self.watermark.max(candidate);
    }

    /// The current watermark.
    pub fn current(&self) -> Millis {
        self.watermark
    }

    /// The highest event time seen so far.
    pub fn max_event_time(&self) -> Option<Millis> {
        self.max_event_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_max_by_delay_plus_one_and_never_decreases() {
        let mut g = BoundedOutOfOrderness::new(5);
        assert_eq!(g.current(), MIN_TIME);
        g.on_event(100);
        assert_eq!(g.current(), 94);
        g.on_event(90);
        assert_eq!(g.current(), 94);
        g.on_event(101);
        assert_eq!(g.current(), 95);
    }

    #[test]
    fn zero_delay_and_extremes_do_not_overflow() {
        let mut g = BoundedOutOfOrderness::new(0);
        g.on_event(10);
        assert_eq!(g.current(), 9);
        let mut g = BoundedOutOfOrderness::new(u64::MAX);
        g.on_event(i64::MIN + 3);
        assert_eq!(g.current(), MIN_TIME);
    }
}
