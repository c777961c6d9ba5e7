//! Event-time windows: one file per kind.

mod hopping;
mod session;
mod tumbling;

pub use hopping::HoppingWindows;
pub use session::{SessionWindows, merge_sessions};
pub use tumbling::TumblingWindows;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::time::Millis;

/// A half-open event-time interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond inside the window.
    pub start: Millis,
    /// First millisecond after the window.
    pub end: Millis,
}

impl TimeWindow {
    /// The window `[start, end)`.
    pub fn new(start: Millis, end: Millis) -> Self {
        Self { start, end }
    }

    /// The last timestamp inside the window, `end − 1`: the window fires when the
    /// watermark reaches it.
    pub fn max_timestamp(&self) -> Millis {
        self.end.saturating_sub(1)
    }

    /// Whether two windows overlap or touch (Flink's `TimeWindow.intersects`:
    /// `start ≤ other.end && end ≥ other.start`), which is when sessions merge.
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window containing both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// The time after which the window's state is dropped: `max_timestamp + allowed
    /// lateness` (saturating at +∞).
    pub fn cleanup_time(&self, allowed_lateness_ms: Millis) -> Millis {
        self.max_timestamp().saturating_add(allowed_lateness_ms)
    }

    /// Whether the window is late at `watermark`: `end − 1 + allowed_lateness ≤ watermark`.
    /// Elements are not added to late windows.
    pub fn is_late(&self, allowed_lateness_ms: Millis, watermark: Millis) -> bool {
        self.cleanup_time(allowed_lateness_ms) <= watermark
    }
}

/// Start of the window of length `size` containing `ts`, aligned to multiples of `size`
/// (Flink's `getWindowStartWithOffset` with offset 0; correct for negative `ts`).
pub fn window_start(ts: Millis, size: Millis) -> Millis {
    debug_assert!(size > 0);
    ts.saturating_sub(ts.rem_euclid(size))
}

/// Assigns elements to windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows.
    Tumbling(TumblingWindows),
    /// Fixed-size windows starting every `slide`.
    Hopping(HoppingWindows),
    /// Per-key activity sessions separated by a gap.
    Session(SessionWindows),
}

impl WindowAssigner {
    /// Tumbling windows of `size_ms`.
    pub fn tumbling(size_ms: u64) -> Result<Self> {
        TumblingWindows::new(size_ms).map(WindowAssigner::Tumbling)
    }

    /// Hopping windows of `size_ms` every `slide_ms`.
    pub fn hopping(size_ms: u64, slide_ms: u64) -> Result<Self> {
        HoppingWindows::new(size_ms, slide_ms).map(WindowAssigner::Hopping)
    }

    /// Session windows with inactivity gap `gap_ms`.
    pub fn session(gap_ms: u64) -> Result<Self> {
        SessionWindows::new(gap_ms).map(WindowAssigner::Session)
    }

    /// Appends the windows an element at `ts` belongs to, in ascending start order (for
    /// sessions: the element's own window `[ts, ts + gap)`, before merging).
    pub fn assign(&self, ts: Millis, out: &mut Vec<TimeWindow>) {
        match self {
            WindowAssigner::Tumbling(w) => out.push(w.assign(ts)),
            WindowAssigner::Hopping(w) => w.assign(ts, out),
            WindowAssigner::Session(w) => out.push(w.assign(ts)),
        }
    }

    /// Whether windows of a key merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session(_))
    }
}

pub(crate) fn positive(ms: u64, setting: &str) -> Result<Millis> {
    match Millis::try_from(ms) {
        Ok(v) if v > 0 => Ok(v),
        Ok(_) => Err(crate::Error::pipeline(
            setting,
            "must be greater than 0 (a window needs a length)",
        )),
        Err(_) => Err(crate::Error::pipeline(setting, "is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersects_includes_touching() {
        let a = TimeWindow::new(0, 10);
        assert!(a.intersects(&TimeWindow::new(10, 20)));
        assert!(TimeWindow::new(10, 20).intersects(&a));
        assert!(!a.intersects(&TimeWindow::new(11, 20)));
        assert_eq!(a.cover(&TimeWindow::new(5, 30)), TimeWindow::new(0, 30));
    }

    #[test]
    fn lateness_rule() {
        let w = TimeWindow::new(0, 10);
        assert!(!w.is_late(0, 8));
        assert!(w.is_late(0, 9));
        assert!(!w.is_late(5, 13));
        assert!(w.is_late(5, 14));
        assert_eq!(w.cleanup_time(Millis::MAX), Millis::MAX);
    }

    #[test]
    fn window_start_handles_negatives() {
        assert_eq!(window_start(0, 10), 0);
        assert_eq!(window_start(9, 10), 0);
        assert_eq!(window_start(10, 10), 10);
        assert_eq!(window_start(-1, 10), -10);
        assert_eq!(window_start(-10, 10), -10);
        assert_eq!(window_start(-11, 10), -20);
    }
}
