//! The pipeline file (`PIPELINE.toml`): typed definition, parsing and validation.
//!
//! Parsing rejects unknown keys (`deny_unknown_fields`), so a typo is an error rather than
//! a silent default. [`PipelineDef::from_toml`] parses and validates; the `*_` methods
//! build the engine parts from a validated definition.

use serde::{Deserialize, Serialize};

use crate::aggregate::{AggOp, AggregateSpec, Aggregates};
use crate::driver::ExecutionMode;
use crate::event::EventFields;
use crate::operator::WindowOperator;
use crate::watermark::{AdaptiveConfig, WatermarkStrategy, WatermarkTracker};
use crate::window::WindowAssigner;
use crate::{Error, Result};

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDef {
    /// Pipeline name (used for default late-output and consumer-group names).
    pub name: String,
    /// Where events come from.
    pub source: SourceDef,
    /// How watermarks are generated.
    #[serde(default)]
    pub watermark: WatermarkDef,
    /// The window.
    pub window: WindowDef,
    /// The aggregates computed per window (`[[aggregate]]`).
    pub aggregate: Vec<AggregateDef>,
    /// Where results go: the `[sink]` table, read and validated by the connector that
    /// writes it (`sluice-connect`).
    pub sink: toml::Table,
    /// Where late events go: the `[late]` table (default chosen by the connectors).
    #[serde(default)]
    pub late: Option<toml::Table>,
    /// Execution mode.
    #[serde(default)]
    pub execution: ExecutionDef,
}

/// `[source]`: the engine reads the event-time keys; every other key (`kind`, `path`,
/// `topic`, ...) belongs to the source connector, which validates it (`sluice-connect`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDef {
    /// Event format; only "json".
    #[serde(default = "default_format")]
    pub format: String,
    /// Field holding epoch milliseconds.
    pub event_time: String,
    /// Group-by field.
    pub key: String,
    /// The connector's keys.
    #[serde(flatten)]
    pub connector: toml::Table,
}

fn default_format() -> String {
    "json".into()
}

/// Watermark strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    /// Fixed delay.
    #[default]
    Bounded,
    /// Delay following observed lateness.
    Adaptive,
}

/// `[watermark]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkDef {
    /// bounded | adaptive (default bounded).
    #[serde(default)]
    pub strategy: StrategyKind,
    /// bounded: the delay (default 0).
    pub max_out_of_orderness_ms: Option<u64>,
    /// adaptive: quantile of recent lateness (default 0.99).
    pub quantile: Option<f64>,
    /// adaptive: delay = factor × quantile (default 2.0).
    pub factor: Option<f64>,
    /// adaptive: lower delay bound (default 0).
    pub min_delay_ms: Option<u64>,
    /// adaptive: upper delay bound (default 600000).
    pub max_delay_ms: Option<u64>,
    /// adaptive: how many recent events the quantile covers (default 1000).
    pub horizon_events: Option<usize>,
    /// A partition silent for longer than this stops holding the watermark back
    /// (default: never).
    pub idle_timeout_ms: Option<u64>,
}

/// Window kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// size_ms.
    Tumbling,
    /// size_ms, slide_ms.
    Hopping,
    /// gap_ms.
    Session,
}

/// `[window]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDef {
    /// tumbling | hopping | session.
    pub kind: WindowKind,
    /// Window length (tumbling, hopping).
    pub size_ms: Option<u64>,
    /// Hop (hopping).
    pub slide_ms: Option<u64>,
    /// Inactivity gap (session).
    pub gap_ms: Option<u64>,
    /// How long after firing a window still accepts late events (default 0).
    #[serde(default)]
    pub allowed_lateness_ms: u64,
}

/// One `[[aggregate]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDef {
    /// count | sum | min | max | avg.
    pub op: String,
    /// Numeric field (all ops but count).
    pub field: Option<String>,
}

/// `[execution]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionDef {
    /// continuous | micro-batch (default continuous).
    #[serde(default = "default_mode")]
    pub mode: ExecutionMode,
    /// Micro-batch trigger interval (default 1000).
    #[serde(default = "default_trigger")]
    pub trigger_interval_ms: u64,
}

fn default_mode() -> ExecutionMode {
    ExecutionMode::Continuous
}

fn default_trigger() -> u64 {
    1000
}

impl Default for ExecutionDef {
    fn default() -> Self {
        Self {
            mode: default_mode(),
            trigger_interval_ms: default_trigger(),
        }
    }
}

fn forbid<T>(v: &Option<T>, setting: &str, why: &str) -> Result<()> {
    match v {
        Some(_) => Err(Error::pipeline(
            setting,
            format!("is not used {why}; remove it"),
        )),
        None => Ok(()),
    }
}

impl PipelineDef {
    /// Parses and validates a pipeline file's text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let def: PipelineDef = toml::from_str(text)?;
        def.validate()?;
        Ok(def)
    }

    /// Checks every setting, reporting the first problem with the setting's name.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::pipeline("name", "is empty; name the pipeline"));
        }
        let src = &self.source;
        if src.format != "json" {
            return Err(Error::pipeline(
                "source.format",
                format!("\"{}\" is not supported; use \"json\"", src.format),
            ));
        }
        if src.event_time.is_empty() {
            return Err(Error::pipeline(
                "source.event_time",
                "is empty; name the field holding epoch milliseconds",
            ));
        }
        if src.key.is_empty() {
            return Err(Error::pipeline(
                "source.key",
                "is empty; name the group-by field",
            ));
        }
        self.watermark_strategy()?;
        self.window_assigner()?;
        self.aggregates()?;
        if self.execution.mode == ExecutionMode::MicroBatch
            && self.execution.trigger_interval_ms == 0
        {
            return Err(Error::pipeline(
                "execution.trigger_interval_ms",
                "must be greater than 0 in micro-batch mode",
            ));
        }
        Ok(())
    }

    /// Which event fields hold the event time and the key, and which numeric fields the
    /// aggregates read (none when the aggregates are invalid: such a pipeline does not run).
    pub fn event_fields(&self) -> EventFields {
        EventFields {
            event_time: self.source.event_time.clone(),
            key: self.source.key.clone(),
            numbers: self
                .aggregates()
                .map(|a| a.numeric_fields().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The watermark strategy.
    pub fn watermark_strategy(&self) -> Result<WatermarkStrategy> {
        let w = &self.watermark;
        match w.strategy {
            StrategyKind::Bounded => {
                let why = "with strategy = \"bounded\" (it is an adaptive setting)";
                forbid(&w.quantile, "watermark.quantile", why)?;
                forbid(&w.factor, "watermark.factor", why)?;
                forbid(&w.min_delay_ms, "watermark.min_delay_ms", why)?;
                forbid(&w.max_delay_ms, "watermark.max_delay_ms", why)?;
                forbid(&w.horizon_events, "watermark.horizon_events", why)?;
                Ok(WatermarkStrategy::bounded(
                    w.max_out_of_orderness_ms.unwrap_or(0),
                ))
            }
            StrategyKind::Adaptive => {
                forbid(
                    &w.max_out_of_orderness_ms,
                    "watermark.max_out_of_orderness_ms",
                    "with strategy = \"adaptive\" (the delay is chosen from observed lateness; bound it with min_delay_ms / max_delay_ms)",
                )?;
                let d = AdaptiveConfig::default();
                let c = AdaptiveConfig {
                    quantile: w.quantile.unwrap_or(d.quantile),
                    factor: w.factor.unwrap_or(d.factor),
                    min_delay_ms: w.min_delay_ms.unwrap_or(d.min_delay_ms),
                    max_delay_ms: w.max_delay_ms.unwrap_or(d.max_delay_ms),
                    horizon_events: w.horizon_events.unwrap_or(d.horizon_events),
                    shrink_divisor: d.shrink_divisor,
                };
                if !(c.quantile > 0.0 && c.quantile <= 1.0) {
                    return Err(Error::pipeline(
                        "watermark.quantile",
                        "must be in (0, 1], e.g. 0.99",
                    ));
                }
                if !(c.factor.is_finite() && c.factor >= 0.0) {
                    return Err(Error::pipeline(
                        "watermark.factor",
                        "must be a finite number >= 0, e.g. 2.0",
                    ));
                }
                if c.min_delay_ms > c.max_delay_ms {
                    return Err(Error::pipeline(
                        "watermark.min_delay_ms",
                        format!(
                            "({}) is above watermark.max_delay_ms ({})",
                            c.min_delay_ms, c.max_delay_ms
                        ),
                    ));
                }
                if c.horizon_events == 0 {
                    return Err(Error::pipeline(
                        "watermark.horizon_events",
                        "must be greater than 0",
                    ));
                }
                Ok(WatermarkStrategy::Adaptive(c))
            }
        }
    }

    /// A watermark tracker for this pipeline.
    pub fn watermark_tracker(&self) -> Result<WatermarkTracker> {
        Ok(WatermarkTracker::new(
            self.watermark_strategy()?,
            self.watermark.idle_timeout_ms,
        ))
    }

    /// The window assigner.
    pub fn window_assigner(&self) -> Result<WindowAssigner> {
        let w = &self.window;
        let size = |w: &WindowDef| {
            w.size_ms.ok_or_else(|| {
                Error::pipeline(
                    "window.size_ms",
                    format!("is required for kind = \"{}\"", kind_name(w.kind)),
                )
            })
        };
        match w.kind {
            WindowKind::Tumbling => {
                forbid(
                    &w.slide_ms,
                    "window.slide_ms",
                    "by tumbling windows (use kind = \"hopping\")",
                )?;
                forbid(
                    &w.gap_ms,
                    "window.gap_ms",
                    "by tumbling windows (use kind = \"session\")",
                )?;
                WindowAssigner::tumbling(size(w)?)
            }
            WindowKind::Hopping => {
                forbid(
                    &w.gap_ms,
                    "window.gap_ms",
                    "by hopping windows (use kind = \"session\")",
                )?;
                let slide = w.slide_ms.ok_or_else(|| {
                    Error::pipeline(
                        "window.slide_ms",
                        "is required for kind = \"hopping\" (how often a new window starts)",
                    )
                })?;
                WindowAssigner::hopping(size(w)?, slide)
            }
            WindowKind::Session => {
                forbid(
                    &w.size_ms,
                    "window.size_ms",
                    "by session windows (they use gap_ms)",
                )?;
                forbid(
                    &w.slide_ms,
                    "window.slide_ms",
                    "by session windows (they use gap_ms)",
                )?;
                let gap = w.gap_ms.ok_or_else(|| {
                    Error::pipeline(
                        "window.gap_ms",
                        "is required for kind = \"session\" (the inactivity gap)",
                    )
                })?;
                WindowAssigner::session(gap)
            }
        }
    }

    /// The aggregates.
    pub fn aggregates(&self) -> Result<Aggregates> {
        let specs = self
            .aggregate
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let op = AggOp::parse(&a.op).ok_or_else(|| {
                    Error::pipeline(
                        format!("aggregate[{i}].op"),
                        format!(
                            "\"{}\" is not an aggregate; use one of count, sum, min, max, avg",
                            a.op
                        ),
                    )
                })?;
                Ok(AggregateSpec {
                    op,
                    field: a.field.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Aggregates::new(specs)
    }

    /// A window operator for this pipeline, with empty state.
    pub fn window_operator(&self) -> Result<WindowOperator<Aggregates>> {
        Ok(WindowOperator::new(
            self.window_assigner()?,
            self.window.allowed_lateness_ms,
            self.aggregates()?,
        ))
    }
}

fn kind_name(k: WindowKind) -> &'static str {
    match k {
        WindowKind::Tumbling => "tumbling",
        WindowKind::Hopping => "hopping",
        WindowKind::Session => "session",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
name = "clicks-per-user"

[source]
kind = "file"
path = "events.jsonl"
format = "json"
event_time = "ts"
key = "key"

[watermark]
strategy = "bounded"
max_out_of_orderness_ms = 5000
idle_timeout_ms = 30000

[window]
kind = "tumbling"
size_ms = 10000
allowed_lateness_ms = 0

[[aggregate]]
op = "count"
[[aggregate]]
op = "sum"
field = "value"

[sink]
kind = "file"
path = "out.jsonl"

[late]
kind = "file"
path = "late.jsonl"

[execution]
mode = "continuous"
trigger_interval_ms = 1000
"#;

    fn with(from: &str, to: &str) -> Result<PipelineDef> {
        assert!(ISSUE_EXAMPLE.contains(from), "{from}");
        PipelineDef::from_toml(&ISSUE_EXAMPLE.replacen(from, to, 1))
    }

    fn err(from: &str, to: &str) -> String {
        with(from, to).unwrap_err().to_string()
    }

    #[test]
    fn issue_example_parses() {
        let p = PipelineDef::from_toml(ISSUE_EXAMPLE).unwrap();
        assert_eq!(p.name, "clicks-per-user");
        assert_eq!(
            p.window_assigner().unwrap(),
            WindowAssigner::tumbling(10_000).unwrap()
        );
        assert_eq!(p.aggregates().unwrap().names(), ["count", "sum"]);
        assert_eq!(
            p.watermark_strategy().unwrap(),
            WatermarkStrategy::bounded(5000)
        );
        assert_eq!(p.execution.mode, ExecutionMode::Continuous);
        assert_eq!(
            p.late.as_ref().unwrap()["path"].as_str(),
            Some("late.jsonl")
        );
        assert_eq!(p.source.connector["path"].as_str(), Some("events.jsonl"));
        let m = with("mode = \"continuous\"", "mode = \"micro-batch\"").unwrap();
        assert_eq!(m.execution.mode, ExecutionMode::MicroBatch);
    }

    #[test]
    fn minimal_file_uses_defaults() {
        let p = PipelineDef::from_toml(
            r#"
name = "p"
source = { kind = "topic", topic = "clicks", event_time = "ts", key = "user" }
window = { kind = "session", gap_ms = 100 }
aggregate = [{ op = "count" }]
sink = { kind = "topic", topic = "out" }
"#,
        )
        .unwrap();
        assert_eq!(
            p.watermark_strategy().unwrap(),
            WatermarkStrategy::bounded(0)
        );
        assert_eq!(p.execution, ExecutionDef::default());
        assert!(p.late.is_none());
        assert_eq!(p.event_fields().key, "user");
    }

    #[test]
    fn typos_and_unknown_keys_are_errors() {
        assert!(
            err("size_ms = 10000", "size_ms = 10000\nsize = 3").contains("unknown field `size`")
        );
        assert!(err("kind = \"tumbling\"", "kind = \"rolling\"").contains("rolling"));
        assert!(err("mode = \"continuous\"", "mode = \"batch\"").contains("batch"));
    }

    #[test]
    fn actionable_validation_errors() {
        let e = err("kind = \"tumbling\"", "kind = \"hopping\"");
        assert_eq!(
            e,
            "pipeline setting `window.slide_ms` is required for kind = \"hopping\" (how often a new window starts)"
        );
        let e = err(
            "kind = \"tumbling\"\nsize_ms = 10000",
            "kind = \"hopping\"\nsize_ms = 10000\nslide_ms = 20000",
        );
        assert!(
            e.starts_with(
                "pipeline setting `window.slide_ms` (20000) is larger than window.size_ms (10000)"
            ),
            "{e}"
        );
        let e = err("size_ms = 10000", "size_ms = 0");
        assert!(e.contains("`window.size_ms` must be greater than 0"), "{e}");
        let e = err("op = \"count\"", "op = \"median\"");
        assert!(e.contains("`aggregate[0].op` \"median\" is not an aggregate; use one of count, sum, min, max, avg"), "{e}");
        let e = err("field = \"value\"\n", "");
        assert!(
            e.contains("`aggregate[1].field` is required for op = \"sum\""),
            "{e}"
        );
        let e = err(
            "kind = \"tumbling\"\nsize_ms = 10000",
            "kind = \"session\"\ngap_ms = 0",
        );
        assert!(e.contains("`window.gap_ms` must be greater than 0"), "{e}");
        let e = err(
            "kind = \"tumbling\"\nsize_ms = 10000",
            "kind = \"session\"\nsize_ms = 10",
        );
        assert!(
            e.contains("`window.size_ms` is not used by session windows"),
            "{e}"
        );
        let e = err("strategy = \"bounded\"", "strategy = \"adaptive\"");
        assert!(
            e.contains(
                "`watermark.max_out_of_orderness_ms` is not used with strategy = \"adaptive\""
            ),
            "{e}"
        );
        let e = err(
            "max_out_of_orderness_ms = 5000",
            "max_out_of_orderness_ms = 5000\nquantile = 0.5",
        );
        assert!(
            e.contains("`watermark.quantile` is not used with strategy = \"bounded\""),
            "{e}"
        );
        let e = err(
            "strategy = \"bounded\"\nmax_out_of_orderness_ms = 5000",
            "strategy = \"adaptive\"\nquantile = 1.5",
        );
        assert!(e.contains("`watermark.quantile` must be in (0, 1]"), "{e}");
        let e = err(
            "mode = \"continuous\"\ntrigger_interval_ms = 1000",
            "mode = \"micro-batch\"\ntrigger_interval_ms = 0",
        );
        assert!(
            e.contains("`execution.trigger_interval_ms` must be greater than 0"),
            "{e}"
        );
    }

    #[test]
    fn adaptive_settings_are_read() {
        let p = with(
            "strategy = \"bounded\"\nmax_out_of_orderness_ms = 5000",
            "strategy = \"adaptive\"\nfactor = 3.0\nmax_delay_ms = 100",
        )
        .unwrap();
        match p.watermark_strategy().unwrap() {
            WatermarkStrategy::Adaptive(c) => {
                assert_eq!(
                    (c.quantile, c.factor, c.min_delay_ms, c.max_delay_ms),
                    (0.99, 3.0, 0, 100)
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
