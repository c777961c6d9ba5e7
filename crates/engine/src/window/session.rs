//! Session windows: per-key activity separated by an inactivity gap.

use serde::{Deserialize, Serialize};

use super::{TimeWindow, positive};
use crate::Result;
use crate::time::Millis;

/// Each element opens `[ts, ts + gap)`; a key's windows merge when they intersect
/// ([`TimeWindow::intersects`]: overlapping or touching), so one element can bridge two
/// sessions into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionWindows {
    gap_ms: Millis,
}

impl SessionWindows {
    /// Sessions with inactivity gap `gap_ms` (> 0).
    pub fn new(gap_ms: u64) -> Result<Self> {
        Ok(Self {
            gap_ms: positive(gap_ms, "window.gap_ms")?,
        })
    }

    /// The gap in ms.
    pub fn gap_ms(&self) -> Millis {
        self.gap_ms
    }

    /// The element's own window, before merging.
    pub fn assign(&self, ts: Millis) -> TimeWindow {
        TimeWindow::new(ts, ts.saturating_add(self.gap_ms))
    }
}

/// Merges `new` into a key's live sessions (pairwise non-intersecting): returns the merged
/// window (the cover of `new` and every live window it intersects) and those live windows.
pub fn merge_sessions<'a>(
    live: impl IntoIterator<Item = &'a TimeWindow>,
    new: TimeWindow,
) -> (TimeWindow, Vec<TimeWindow>) {
    let mut cover = new;
    let mut merged = Vec::new();
    for w in live {
        if w.intersects(&new) {
            cover = cover.cover(w);
            merged.push(*w);
        }
    }
    (cover, merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridging_window_merges_both_neighbours() {
        let live = [
            TimeWindow::new(0, 10),
            TimeWindow::new(15, 25),
            TimeWindow::new(40, 50),
        ];
        let (cover, merged) = merge_sessions(&live, TimeWindow::new(8, 18));
        assert_eq!(cover, TimeWindow::new(0, 25));
        assert_eq!(merged, vec![live[0], live[1]]);
        // touching merges
        let (cover, merged) = merge_sessions(&live, TimeWindow::new(30, 40));
        assert_eq!(cover, TimeWindow::new(30, 50));
        assert_eq!(merged, vec![live[2]]);
        // disjoint
        let (cover, merged) = merge_sessions(&live, TimeWindow::new(26, 29));
        assert_eq!(cover, TimeWindow::new(26, 29));
        assert!(merged.is_empty());
        assert!(SessionWindows::new(0).is_err());
    }
}
