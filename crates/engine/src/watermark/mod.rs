//! Watermark generation: per-partition generators and their combination.

mod adaptive;
mod bounded;
mod tracker;

pub use adaptive::{AdaptiveConfig, AdaptiveStats, AdaptiveWatermark, DelaySample};
pub use bounded::BoundedOutOfOrderness;
pub use tracker::WatermarkTracker;

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// How watermarks are generated from event times (one generator per partition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WatermarkStrategy {
    /// Fixed delay: [`BoundedOutOfOrderness`].
    Bounded {
        /// Maximum expected out-of-orderness in ms.
        max_out_of_orderness_ms: u64,
    },
    /// Delay following observed lateness: [`AdaptiveWatermark`].
    Adaptive(AdaptiveConfig),
}

impl WatermarkStrategy {
    /// Bounded out-of-orderness with the given delay.
    pub fn bounded(max_out_of_orderness_ms: u64) -> Self {
        WatermarkStrategy::Bounded {
            max_out_of_orderness_ms,
        }
    }

    /// A fresh generator following this strategy.
    pub fn generator(&self) -> WatermarkGenerator {
        match self {
            WatermarkStrategy::Bounded {
                max_out_of_orderness_ms,
            } => WatermarkGenerator::Bounded(BoundedOutOfOrderness::new(*max_out_of_orderness_ms)),
            WatermarkStrategy::Adaptive(c) => {
                WatermarkGenerator::Adaptive(AdaptiveWatermark::new(c.clone()))
            }
        }
    }
}

/// A watermark generator of either kind (serializable, so it can be snapshotted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WatermarkGenerator {
    /// Fixed delay.
    Bounded(BoundedOutOfOrderness),
    /// Adaptive delay.
    Adaptive(AdaptiveWatermark),
}

impl WatermarkGenerator {
    /// Observes one event time.
    pub fn on_event(&mut self, event_time: Millis) {
        match self {
            WatermarkGenerator::Bounded(g) => g.on_event(event_time),
            WatermarkGenerator::Adaptive(g) => g.on_event(event_time),
        }
    }

    /// The current watermark (never decreasing).
    pub fn current(&self) -> Millis {
        match self {
            WatermarkGenerator::Bounded(g) => g.current(),
            WatermarkGenerator::Adaptive(g) => g.current(),
        }
    }

    /// The adaptive statistics, if this is an adaptive generator.
    pub fn adaptive_stats(&self) -> Option<AdaptiveStats> {
        match self {
            WatermarkGenerator::Bounded(_) => None,
            WatermarkGenerator::Adaptive(g) => Some(g.stats()),
        }
    }
}
