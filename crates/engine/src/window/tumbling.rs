//! Tumbling windows: fixed size, no overlap.

use serde::{Deserialize, Serialize};

use super::{TimeWindow, positive, window_start};
use crate::Result;
use crate::time::Millis;

/// Windows `[k·size, (k+1)·size)`; every element belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TumblingWindows {
    size_ms: Millis,
}

impl TumblingWindows {
    /// Tumbling windows of `size_ms` (> 0).
    pub fn new(size_ms: u64) -> Result<Self> {
        Ok(Self {
            size_ms: positive(size_ms, "window.size_ms")?,
        })
    }

    /// The window size in ms.
    pub fn size_ms(&self) -> Millis {
        self.size_ms
    }

    /// The window containing `ts`.
    pub fn assign(&self, ts: Millis) -> TimeWindow {
        let start = window_start(ts, self.size_ms);
        TimeWindow::new(start, start.saturating_add(self.size_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn assigns_aligned_window() {
        let t = TumblingWindows::new(10).unwrap();
        assert_eq!(t.assign(0), TimeWindow::new(0, 10));
        assert_eq!(t.assign(19), TimeWindow::new(10, 20));
        assert_eq!(t.assign(-3), TimeWindow::new(-10, 0));
        assert!(TumblingWindows::new(0).is_err());
    }

    proptest! {
        #[test]
        fn window_contains_ts(ts in -1_000_000i64..1_000_000, size in 1u64..5000) {
            let w = TumblingWindows::new(size).unwrap().assign(ts);
            prop_assert!(w.start <= ts && ts < w.end);
            prop_assert_eq!(w.end - w.start, size as i64);
            prop_assert_eq!(w.start.rem_euclid(size as i64), 0);
        }
    }
}
