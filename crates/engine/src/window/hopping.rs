//! Hopping (sliding) windows: fixed size, a new window every `slide`.

use serde::{Deserialize, Serialize};

use super::{TimeWindow, positive, window_start};
use crate::time::Millis;
use crate::{Error, Result};

/// Windows `[k·slide, k·slide + size)`; an element at `ts` belongs to every window whose
/// start is a multiple of `slide` with `start ≤ ts < start + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoppingWindows {
    size_ms: Millis,
    slide_ms: Millis,
}

impl HoppingWindows {
    /// Hopping windows of `size_ms` every `slide_ms` (both > 0, slide ≤ size).
    pub fn new(size_ms: u64, slide_ms: u64) -> Result<Self> {
        let size_ms = positive(size_ms, "window.size_ms")?;
        let slide_ms = positive(slide_ms, "window.slide_ms")?;
        if slide_ms > size_ms {
            return Err(Error::pipeline(
                "window.slide_ms",
                format!(
                    "({slide_ms}) is larger than window.size_ms ({size_ms}), which would leave \
                     gaps no window covers; use slide_ms <= size_ms"
                ),
            ));
        }
        Ok(Self { size_ms, slide_ms })
    }

    /// The window size in ms.
    pub fn size_ms(&self) -> Millis {
        self.size_ms
    }

    /// The slide in ms.
    pub fn slide_ms(&self) -> Millis {
        self.slide_ms
    }

    /// Appends the windows containing `ts`, in ascending start order.
    pub fn assign(&self, ts: Millis, out: &mut Vec<TimeWindow>) {
        let last_start = window_start(ts, self.slide_ms);
        let first = out.len();
        let mut start = last_start;
        while start > ts.saturating_sub(self.size_ms) {
            out.push(TimeWindow::new(start, start.saturating_add(self.size_ms)));
            match start.checked_sub(self.slide_ms) {
                Some(s) => start = s,
                None => break,
            }
        }
        out[first..].reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn windows(size: u64, slide: u64, ts: i64) -> Vec<(i64, i64)> {
        let mut v = vec![];
        HoppingWindows::new(size, slide).unwrap().assign(ts, &mut v);
        v.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn assigns_every_covering_window() {
        assert_eq!(windows(10, 5, 7), vec![(0, 10), (5, 15)]);
        assert_eq!(windows(10, 5, 10), vec![(5, 15), (10, 20)]);
        assert_eq!(windows(10, 3, 0), vec![(-9, 1), (-6, 4), (-3, 7), (0, 10)]);
        assert_eq!(windows(10, 10, -1), vec![(-10, 0)]);
        assert!(HoppingWindows::new(5, 10).is_err());
        assert!(HoppingWindows::new(5, 0).is_err());
    }

    proptest! {
        #[test]
        fn matches_definition(ts in -10_000i64..10_000, size in 1u64..200, slide_frac in 1u64..200) {
            let slide = 1 + slide_frac % size;
            let got = windows(size, slide, ts);
            let (size, slide) = (size as i64, slide as i64);
            let expected: Vec<(i64, i64)> = ((ts - size - slide)..=ts)
                .filter(|s| s.rem_euclid(slide) == 0 && *s <= ts && ts < s + size)
                .map(|s| (s, s + size))
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
