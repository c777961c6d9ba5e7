//! What a run did: counters, lateness and latency histograms, committed positions, and
//! the summary `sluice run` prints.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use sluice_engine::operator::OperatorStats;
use sluice_engine::pipeline::{PipelineDef, WindowKind};
use sluice_engine::watermark::AdaptiveStats;
use sluice_engine::{ExecutionMode, Millis};

/// "continuous, tumbling 10000 ms, bounded 5000 ms".
pub fn describe_pipeline(def: &PipelineDef) -> String {
    let w = &def.window;
    let window = match w.kind {
        WindowKind::Tumbling => format!("tumbling {} ms", w.size_ms.unwrap_or(0)),
        WindowKind::Hopping => format!(
            "hopping {} ms every {} ms",
            w.size_ms.unwrap_or(0),
            w.slide_ms.unwrap_or(0)
        ),
        WindowKind::Session => format!("session gap {} ms", w.gap_ms.unwrap_or(0)),
    };
    let mode = match def.execution.mode {
        ExecutionMode::Continuous => "continuous".to_string(),
        ExecutionMode::MicroBatch => {
            format!("micro-batch every {} ms", def.execution.trigger_interval_ms)
        }
    };
    format!("{mode}, {window}")
}

/// What a run did, for the summary and `bench window`.
#[derive(Debug)]
pub struct RunReport {
    pub mode: ExecutionMode,
    pub events_in: u64,
    pub bad_events: u64,
    pub results: u64,
    /// Results fired by idleness, caught-up partitions or the end of input (no
    /// triggering event, so not in the latency histogram).
    pub results_without_trigger: u64,
    pub late_events: u64,
    /// Max event time seen − watermark, before the end-of-input watermark.
    pub watermark_lag_ms: Option<Millis>,
    /// Lateness (ms) of every event: max event time seen before it in its partition − its
    /// event time, 0 when in order.
    pub lateness_ms: Histogram<u64>,
    /// Ingest-to-emit latency of results, in µs.
    pub latency_us: Histogram<u64>,
    pub elapsed: Duration,
    pub adaptive: BTreeMap<u32, AdaptiveStats>,
    pub committed: BTreeMap<u32, i64>,
    pub batches: u64,
    /// The window operator's counters at the end.
    pub operator: OperatorStats,
}

impl RunReport {
    pub fn events_per_sec(&self) -> f64 {
        self.events_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency quantile in ms (`None` when nothing was measured).
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        (!self.latency_us.is_empty()).then(|| self.latency_us.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn summary(&self, def: &PipelineDef) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3} ms"));
        let _ = writeln!(
            s,
            "pipeline {} finished in {:.2} s ({})",
            def.name,
            self.elapsed.as_secs_f64(),
            describe_pipeline(def)
        );
        let _ = writeln!(
            s,
            "  events in          {} ({} bad, sent to the late/error output)",
            self.events_in, self.bad_events
        );
        let _ = writeln!(
            s,
            "  windows emitted    {} ({} fired by idleness or end of input)",
            self.results, self.results_without_trigger
        );
        let _ = writeln!(s, "  late events        {}", self.late_events);
        let _ = writeln!(
            s,
            "  watermark lag      {}",
            self.watermark_lag_ms
                .map_or("n/a (no watermark yet)".into(), |l| format!("{l} ms"))
        );
        if self.lateness_ms.is_empty() {
            let _ = writeln!(s, "  lateness p50/p99   n/a");
        } else {
            let _ = writeln!(
                s,
                "  lateness p50/p99   {} / {} ms (max {} ms)",
                self.lateness_ms.value_at_quantile(0.5),
                self.lateness_ms.value_at_quantile(0.99),
                self.lateness_ms.max()
            );
        }
        let _ = writeln!(
            s,
            "  throughput         {:.0} events/s",
            self.events_per_sec()
        );
        let _ = writeln!(
            s,
            "  latency p50/p99    {} / {} (ingest to emit, {} results)",
            ms(self.latency_ms(0.5)),
            ms(self.latency_ms(0.99)),
            self.latency_us.len()
        );
        if self.mode == ExecutionMode::MicroBatch {
            let _ = writeln!(s, "  batches            {}", self.batches);
        }
        for (p, a) in &self.adaptive {
            let hist: Vec<String> = thin(&a.delay_history, 12)
                .iter()
                .map(|d| format!("#{}:{}ms", d.event_index, d.delay_ms))
                .collect();
            let _ = writeln!(
                s,
                "  adaptive p{p}       delay now {} ms, late share {:.2}% ({} of {}), delay history {}",
                a.delay_ms,
                a.late_share() * 100.0,
                a.late_events,
                a.events,
                if hist.is_empty() {
                    "-".into()
                } else {
                    hist.join(" ")
                }
            );
        }
        if !self.committed.is_empty() {
            let offs: Vec<String> = self
                .committed
                .iter()
                .map(|(p, o)| format!("{p}:{o}"))
                .collect();
            let _ = writeln!(s, "  committed offsets  {}", offs.join(" "));
        }
        s
    }
}

fn thin<T: Copy>(v: &[T], max: usize) -> Vec<T> {
    if v.len() <= max {
        return v.to_vec();
    }
    let step = v.len().div_ceil(max);
    let mut out: Vec<T> = v.iter().step_by(step).copied().collect();
    if let Some(last) = v.last()
        && v.len() % step != 1
    {
        out.push(*last);
    }
    out
}
