//! Adaptive watermark: the delay follows the lateness actually observed.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::{MIN_TIME, Millis};

/// Settings of [`AdaptiveWatermark`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveConfig {
    /// Quantile of recent lateness the delay is based on, in (0, 1]. Default 0.99.
    pub quantile: f64,
    /// Delay = factor × quantile. Default 2.0.
    pub factor: f64,
    /// Lower bound of the delay in ms. Default 0.
    pub min_delay_ms: u64,
    /// Upper bound of the delay in ms. Default 600 000 (10 minutes).
    pub max_delay_ms: u64,
    /// How many of the most recent events the quantile is computed over. Default 1000.
    pub horizon_events: usize,
    /// How gradually the delay shrinks: on each event the delay moves
    /// `1/shrink_divisor` of the way down to its target (at least 1 ms). Default 64.
    pub shrink_divisor: u32,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            quantile: 0.99,
            factor: 2.0,
            min_delay_ms: 0,
            max_delay_ms: 600_000,
            horizon_events: 1000,
            shrink_divisor: 64,
        }
    }
}

/// One point of the delay-over-time history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelaySample {
    /// 1-based index of the event after which the delay took this value.
    pub event_index: u64,
    /// Highest event time seen at that point.
    pub max_event_time: Millis,
    /// The delay chosen, in ms.
    pub delay_ms: Millis,
}

/// What an [`AdaptiveWatermark`] has observed, for run summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveStats {
    /// Events observed.
    pub events: u64,
    /// Events with lateness > 0 (older than an event seen before them).
    pub out_of_order_events: u64,
    /// Events whose time was ≤ the watermark when they arrived (late for any window
    /// ending at or before them).
    pub late_events: u64,
    /// Median lateness over the horizon (ms).
    pub lateness_p50: Millis,
    /// 99th percentile lateness over the horizon (ms).
    pub lateness_p99: Millis,
    /// The current delay (ms).
    pub delay_ms: Millis,
    /// Delay changes over the run, thinned to at most a few hundred samples.
    pub delay_history: Vec<DelaySample>,
}

impl AdaptiveStats {
    /// Share of observed events that arrived behind the watermark, in [0, 1].
    pub fn late_share(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.late_events as f64 / self.events as f64
        }
    }
}

const MAX_HISTORY: usize = 256;

/// A watermark whose delay adapts to observed lateness.
///
/// * An event's lateness is `max event time seen before it − its event time`, or 0 when it
///   is in order.
/// * The lateness of the last [`AdaptiveConfig::horizon_events`] events is kept; the
///   quantile is the nearest-rank quantile over them (sorted ascending, index
///   `ceil(q × n) − 1`), so with fewer than 100 events the 0.99 quantile is their maximum.
/// * target delay = clamp(ceil(factor × quantile), min_delay, max_delay). When the target is
///   above the current delay the delay jumps to it at once; when below, it moves down
///   gradually (see [`AdaptiveConfig::shrink_divisor`]).
/// * watermark = max(previous watermark, max event time − delay − 1): it never moves
///   backwards even when the delay grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveWatermark {
    config: AdaptiveConfig,
    recent: VecDeque<Millis>,
    max_event_time: Option<Millis>,
    delay_ms: Millis,
    watermark: Millis,
    events: u64,
    out_of_order_events: u64,
    late_events: u64,
    history: Vec<DelaySample>,
    history_stride: u64,
}

fn to_millis(v: u64) -> Millis {
    Millis::try_from(v).unwrap_or(Millis::MAX)
}

/// Nearest-rank quantile of `values` (need not be sorted). 0 for an empty slice.
pub(crate) fn nearest_rank(values: &mut [Millis], q: f64) -> Millis {
    if values.is_empty() {
        return 0;
    }
    let n = values.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    let (_, v, _) = values.select_nth_unstable(rank - 1);
    *v
}

impl AdaptiveWatermark {
    /// A generator with the given settings. The delay starts at `min_delay_ms`.
    pub fn new(config: AdaptiveConfig) -> Self {
        let delay_ms = to_millis(config.min_delay_ms);
        Self {
            config,
            recent: VecDeque::new(),
            max_event_time: None,
            delay_ms,
            watermark: MIN_TIME,
            events: 0,
            out_of_order_events: 0,
            late_events: 0,
            history: Vec::new(),
            history_stride: 1,
        }
    }

    /// Observes one event's time, updates the delay and the watermark.
    pub fn on_event(&mut self, event_time: Millis) {
        self.events += 1;
        if event_time <= self.watermark {
            self.late_events += 1;
        }
        let lateness = match self.max_event_time {
            Some(max) if max > event_time => max.saturating_sub(event_time),
            _ => 0,
        };
        if lateness > 0 {
            self.out_of_order_events += 1;
        }
        let max = self
            .max_event_time
            .map_or(event_time, |m| m.max(event_time));
        self.max_event_time = Some(max);

        let horizon = self.config.horizon_events.max(1);
        if self.recent.len() == horizon {
            self.recent.pop_front();
        }
        self.recent.push_back(lateness);

        let mut scratch: Vec<Millis> = self.recent.iter().copied().collect();
        let q = nearest_rank(&mut scratch, self.config.quantile);
        let min = to_millis(self.config.min_delay_ms);
        let max_delay = to_millis(self.config.max_delay_ms).max(min);
        let target = ((self.config.factor * q as f64).ceil() as Millis).clamp(min, max_delay);
        let before = self.delay_ms;
        if target >= self.delay_ms {
            self.delay_ms = target;
        } else {
            let step =
                ((self.delay_ms - target) / Millis::from(self.config.shrink_divisor.max(1))).max(1);
            self.delay_ms -= step;
        }
        if self.delay_ms != before || self.events == 1 {
            self.record(max);
        }
        let candidate = max.saturating_sub(self.delay_ms).saturating_sub(1);
        self.watermark = self.watermark.max(candidate);
    }

    fn record(&mut self, max_event_time: Millis) {
        if !self.events.is_multiple_of(self.history_stride) && self.events != 1 {
            return;
        }
        self.history.push(DelaySample {
            event_index: self.events,
            max_event_time,
            delay_ms: self.delay_ms,
        });
        if self.history.len() >= MAX_HISTORY {
            // Keep the run's shape: drop every other sample and record half as often.
            let mut i = 0;
            self.history.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.history_stride *= 2;
        }
    }

    /// The current watermark.
    pub fn current(&self) -> Millis {
        self.watermark
    }

    /// The current delay in ms.
    pub fn delay_ms(&self) -> Millis {
        self.delay_ms
    }

    /// The settings.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// Statistics for a run summary.
    pub fn stats(&self) -> AdaptiveStats {
        let mut scratch: Vec<Millis> = self.recent.iter().copied().collect();
        let p50 = nearest_rank(&mut scratch, 0.5);
        let p99 = nearest_rank(&mut scratch, 0.99);
        AdaptiveStats {
            events: self.events,
            out_of_order_events: self.out_of_order_events,
            late_events: self.late_events,
            lateness_p50: p50,
            lateness_p99: p99,
            delay_ms: self.delay_ms,
            delay_history: self.history.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(horizon: usize) -> AdaptiveWatermark {
        AdaptiveWatermark::new(AdaptiveConfig {
            horizon_events: horizon,
            shrink_divisor: 2,
            ..AdaptiveConfig::default()
        })
    }

    #[test]
    fn nearest_rank_quantiles() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!(nearest_rank(&mut v, 0.5), 3);
        assert_eq!(nearest_rank(&mut v, 0.99), 5);
        assert_eq!(nearest_rank(&mut v, 0.2), 1);
        assert_eq!(nearest_rank(&mut [], 0.5), 0);
    }

    #[test]
    fn in_order_events_keep_zero_delay() {
        let mut g = small(10);
        for t in [10, 20, 30] {
            g.on_event(t);
        }
        assert_eq!(g.delay_ms(), 0);
        assert_eq!(g.current(), 29);
    }

    #[test]
    fn delay_grows_at_once_and_shrinks_gradually_watermark_monotone() {
        let mut g = small(3);
        g.on_event(100);
        g.on_event(90); // lateness 10 -> target 20, delay jumps to 20
        assert_eq!(g.delay_ms(), 20);
        assert_eq!(g.current(), 99); // max(99 from first event, 100-20-1) - never backwards
        g.on_event(130);
        assert_eq!(g.current(), 109);
        // Push the lateness out of the horizon with in-order events.
        let mut last_wm = g.current();
        let mut delays = vec![];
        for t in [140, 150, 160, 170, 180] {
            g.on_event(t);
            assert!(g.current() >= last_wm);
            last_wm = g.current();
            delays.push(g.delay_ms());
        }
        // Horizon of 3: at 150 the lateness-10 sample is gone; target 0; halve each event.
        assert_eq!(delays, vec![20, 10, 5, 3, 2]);
        let s = g.stats();
        assert_eq!(s.events, 8);
        assert_eq!(s.out_of_order_events, 1);
        assert_eq!(s.late_events, 1); // 90 arrived behind watermark 99
        assert!(s.delay_history.iter().any(|d| d.delay_ms == 20));
    }

    #[test]
    fn delay_is_clamped_and_late_share_counts_events_behind_watermark() {
        let mut g = AdaptiveWatermark::new(AdaptiveConfig {
            min_delay_ms: 5,
            max_delay_ms: 50,
            ..AdaptiveConfig::default()
        });
        g.on_event(1000);
        assert_eq!(g.delay_ms(), 5);
        assert_eq!(g.current(), 994);
        g.on_event(900); // lateness 100 -> 200 -> clamped to 50; 900 <= 994 so late
        assert_eq!(g.delay_ms(), 50);
        assert_eq!(g.current(), 994);
        let s = g.stats();
        assert_eq!(s.late_events, 1);
        assert!((s.late_share() - 0.5).abs() < 1e-9);
        assert_eq!(s.lateness_p99, 100);
    }

    #[test]
    fn history_is_bounded() {
        let mut g = small(1);
        for i in 0..10_000i64 {
            // alternate big and no lateness so the delay keeps changing
            g.on_event(if i % 2 == 0 { i * 100 } else { i * 100 - 1000 });
        }
        assert!(g.stats().delay_history.len() < MAX_HISTORY);
    }
}
