//! Event time and watermark values.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (event time or processing time).
pub type Millis = i64;

/// The lowest possible event time: the watermark before any event has been seen.
pub const MIN_TIME: Millis = i64::MIN;

/// The highest possible event time: the watermark at the end of a bounded input (+∞).
pub const END_OF_TIME: Millis = i64::MAX;

/// A watermark: "no more events with event time ≤ this are expected".
///
/// `Idle` is a real value, not an absence: an idle input (a partition silent for longer than
/// its idle timeout, or one read up to its end offset) does not hold the combined watermark
/// back. Combining takes the minimum over non-idle inputs; if every input is idle the
/// combination is `Idle` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Watermark {
    /// Event time in epoch milliseconds; [`END_OF_TIME`] means the input has ended.
    EventTime(Millis),
    /// The input currently makes no claim and must not hold others back.
    Idle,
}

impl Watermark {
    /// The watermark before anything is known.
    pub const MIN: Watermark = Watermark::EventTime(MIN_TIME);
    /// The watermark at the end of a bounded input: every window fires.
    pub const END: Watermark = Watermark::EventTime(END_OF_TIME);

    /// The event time, or `None` when idle.
    pub fn event_time(self) -> Option<Millis> {
        match self {
            Watermark::EventTime(t) => Some(t),
            Watermark::Idle => None,
        }
    }

    /// Whether this watermark is `Idle`.
    pub fn is_idle(self) -> bool {
        matches!(self, Watermark::Idle)
    }

    /// Combines watermarks of parallel inputs: the minimum over the non-idle ones, or `Idle`
    /// when all are idle (or there are none).
    pub fn combine(items: impl IntoIterator<Item = Watermark>) -> Watermark {
        items
            .into_iter()
            .filter_map(Watermark::event_time)
            .min()
            .map_or(Watermark::Idle, Watermark::EventTime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_ignores_idle_and_takes_minimum() {
        use Watermark::*;
        assert_eq!(
            Watermark::combine([EventTime(5), Idle, EventTime(3)]),
            EventTime(3)
        );
        assert_eq!(Watermark::combine([Idle, Idle]), Idle);
        assert_eq!(Watermark::combine([]), Idle);
        assert_eq!(Watermark::combine([Idle, EventTime(7)]), EventTime(7));
    }
}
