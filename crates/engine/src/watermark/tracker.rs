//! Per-partition watermarks combined by minimum, with idleness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AdaptiveStats, WatermarkGenerator, WatermarkStrategy};
use crate::time::{END_OF_TIME, MIN_TIME, Millis, Watermark};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PartitionClock {
    generator: WatermarkGenerator,
    /// Processing time of the last event (or of registration).
    last_activity: Millis,
    /// Read up to its end offset ("exact idleness").
    caught_up: bool,
}

/// Tracks one watermark generator per source partition and combines them.
///
/// * A partition's watermark is its generator's, or [`Watermark::Idle`] when it has been
///   silent for longer than `idle_timeout` (processing time, supplied by the caller as
///   `now`) or when the caller marked it caught up to its end offset. The next event from
///   it makes it active again.
/// * The combined watermark is the minimum over the active partitions; it never decreases
///   (a partition returning from idleness with an older watermark cannot pull it back; its
///   events may then be late). When every partition is idle the combination is `Idle`.
/// * After [`WatermarkTracker::finish`] the combined watermark is +∞.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatermarkTracker {
    strategy: WatermarkStrategy,
    idle_timeout_ms: Option<Millis>,
    /// Per partition, sorted by partition (a short list: looked up and scanned per event).
    partitions: Vec<(u32, PartitionClock)>,
    combined: Millis,
    finished: bool,
}

impl WatermarkTracker {
    /// A tracker; `idle_timeout_ms = None` means partitions never time out.
    pub fn new(strategy: WatermarkStrategy, idle_timeout_ms: Option<u64>) -> Self {
        Self {
            strategy,
            idle_timeout_ms: idle_timeout_ms.map(|t| Millis::try_from(t).unwrap_or(Millis::MAX)),
            partitions: Vec::new(),
            combined: MIN_TIME,
            finished: false,
        }
    }

    /// Registers a partition before its first event, so it holds the watermark back (until
    /// it times out) from processing time `now`. Registering twice is harmless.
    pub fn add_partition(&mut self, partition: u32, now: Millis) {
        self.clock_index(partition, now);
    }

    /// The index of `partition`'s clock, added (silent since `now`) if new.
    fn clock_index(&mut self, partition: u32, now: Millis) -> usize {
        match self.partitions.binary_search_by_key(&partition, |p| p.0) {
            Ok(i) => i,
            Err(i) => {
                let clock = PartitionClock {
                    generator: self.strategy.generator(),
                    last_activity: now,
                    caught_up: false,
                };
                self.partitions.insert(i, (partition, clock));
                i
            }
        }
    }

    /// Observes an event of `partition` at processing time `now`. The partition becomes
    /// active (not idle, not caught up).
    pub fn observe(&mut self, partition: u32, event_time: Millis, now: Millis) {
        let i = self.clock_index(partition, now);
        let p = &mut self.partitions[i].1;
        p.generator.on_event(event_time);
        p.last_activity = p.last_activity.max(now);
        p.caught_up = false;
    }

    /// Marks a partition as read up to its end offset (`true`) so it cannot hold the
    /// watermark back, or as having more to read (`false`).
    pub fn set_caught_up(&mut self, partition: u32, caught_up: bool, now: Millis) {
        let i = self.clock_index(partition, now);
        let p = &mut self.partitions[i].1;
        p.caught_up = caught_up;
        if !caught_up {
            p.last_activity = p.last_activity.max(now);
        }
    }

    /// The watermark of one partition at processing time `now` (`None` if unknown).
    pub fn partition_watermark(&self, partition: u32, now: Millis) -> Option<Watermark> {
        self.partitions
            .binary_search_by_key(&partition, |p| p.0)
            .ok()
            .map(|i| self.clock_watermark(&self.partitions[i].1, now))
    }

    fn clock_watermark(&self, p: &PartitionClock, now: Millis) -> Watermark {
        let timed_out = self
            .idle_timeout_ms
            .is_some_and(|t| now.saturating_sub(p.last_activity) > t);
        if p.caught_up || timed_out {
            Watermark::Idle
        } else {
            Watermark::EventTime(p.generator.current())
        }
    }

    /// The combined watermark at processing time `now`.
    pub fn current(&mut self, now: Millis) -> Watermark {
        if self.finished {
            return Watermark::END;
        }
        let min = Watermark::combine(
            self.partitions
                .iter()
                .map(|(_, p)| self.clock_watermark(p, now)),
        );
        match min {
            Watermark::EventTime(t) => {
                self.combined = self.combined.max(t);
                Watermark::EventTime(self.combined)
            }
            Watermark::Idle => Watermark::Idle,
        }
    }

    /// The highest combined event-time watermark returned so far.
    pub fn last_combined(&self) -> Millis {
        self.combined
    }

    /// Declares the input ended: the watermark becomes +∞.
    pub fn finish(&mut self) -> Watermark {
        self.finished = true;
        self.combined = END_OF_TIME;
        Watermark::END
    }

    /// Adaptive statistics of each partition (empty for the bounded strategy).
    pub fn adaptive_stats(&self) -> BTreeMap<u32, AdaptiveStats> {
        self.partitions
            .iter()
            .filter_map(|(k, p)| p.generator.adaptive_stats().map(|s| (*k, s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(idle: Option<u64>) -> WatermarkTracker {
        WatermarkTracker::new(WatermarkStrategy::bounded(0), idle)
    }

    #[test]
    fn minimum_over_partitions() {
        let mut t = tracker(None);
        t.observe(0, 100, 0);
        t.observe(1, 50, 0);
        assert_eq!(t.current(0), Watermark::EventTime(49));
        t.observe(1, 200, 0);
        assert_eq!(t.current(0), Watermark::EventTime(99));
    }

    #[test]
    fn registered_silent_partition_holds_back_until_idle_timeout() {
        let mut t = tracker(Some(1000));
        t.add_partition(1, 0);
        t.observe(0, 100, 900);
        assert_eq!(t.current(500), Watermark::EventTime(MIN_TIME));
        assert_eq!(t.current(1000), Watermark::EventTime(MIN_TIME)); // not longer than timeout
        assert_eq!(t.partition_watermark(1, 1001), Some(Watermark::Idle));
        assert_eq!(t.current(1001), Watermark::EventTime(99));
        // Partition 1 speaks again with an old event: it is active, but the combined
        // watermark does not move backwards.
        t.observe(1, 10, 1002);
        assert_eq!(
            t.partition_watermark(1, 1002),
            Some(Watermark::EventTime(9))
        );
        assert_eq!(t.current(1002), Watermark::EventTime(99));
        t.observe(0, 300, 1003);
        assert_eq!(t.current(1003), Watermark::EventTime(99)); // held at 99 by partition 1
        t.observe(1, 150, 1004);
        assert_eq!(t.current(1004), Watermark::EventTime(149));
        // Both silent for longer than the timeout: all idle.
        assert_eq!(t.current(2004), Watermark::EventTime(149));
        assert_eq!(t.current(2005), Watermark::Idle);
    }

    #[test]
    fn survives_a_json_round_trip() {
        let mut t = WatermarkTracker::new(WatermarkStrategy::Adaptive(Default::default()), Some(5));
        t.observe(3, 100, 0);
        t.observe(7, 90, 1);
        let json = serde_json::to_string(&t).unwrap();
        let mut back: WatermarkTracker = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.current(2), t.current(2));
        assert_eq!(back.adaptive_stats().len(), 2);
    }

    #[test]
    fn exact_idleness_and_all_idle() {
        let mut t = tracker(None);
        t.observe(0, 100, 0);
        t.observe(1, 10, 0);
        assert_eq!(t.current(0), Watermark::EventTime(9));
        t.set_caught_up(1, true, 0);
        assert_eq!(t.current(0), Watermark::EventTime(99));
        t.set_caught_up(0, true, 0);
        assert_eq!(t.current(0), Watermark::Idle);
        assert_eq!(t.last_combined(), 99);
        t.observe(1, 20, 1); // speaking again clears caught-up
        assert_eq!(t.partition_watermark(1, 1), Some(Watermark::EventTime(19)));
        assert_eq!(t.finish(), Watermark::END);
        assert_eq!(t.current(2), Watermark::END);
    }
}
